//! The fixtures of the interop tests: a server binary started as a child process with a
//! configuration file in the original's format ([`Daemon`]), any other child process
//! ([`Proc`]), bounded runs of outside programs ([`run`]), and checks of stored files.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::{TempDir, cert_dir, folder_files, split_trace};

/// How long a child may take to start accepting connections.
pub const START_LIMIT: Duration = Duration::from_secs(10);
/// How long a child may take to exit after SIGTERM before it is killed.
pub const STOP_LIMIT: Duration = Duration::from_secs(10);
/// How long one run of an outside client may take.
pub const RUN_LIMIT: Duration = Duration::from_secs(30);

/// A loopback port nothing listens on, below the kernel's ephemeral range (32768 and up
/// by default) so that no outgoing connection takes it between now and its use. Each
/// call in a process returns a different port.
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // Spread processes apart so two test binaries run at once rarely meet.
    let base = (std::process::id() % 400) * 30;
    for _ in 0..12_000 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 20_000 + (base + n) % 12_000;
        let port = u16::try_from(port).expect("below 32000");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port between 20000 and 32000");
}

/// A free `127.0.0.1` address; see [`free_port`].
pub fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// Waits until `addr` accepts a TCP connection, or `alive` says the server is gone, or
/// `limit` passes. Returns whether it accepted.
fn wait_accepting(addr: SocketAddr, limit: Duration, mut alive: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok() {
            return true;
        }
        if !alive() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Polls `done` every 20 ms until it holds or `limit` passes; returns whether it held.
pub fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A child process whose standard output and error go to a log file. Dropping it sends
/// SIGTERM, waits up to [`STOP_LIMIT`] and then kills it; if the test is failing, its
/// logs are printed first.
#[derive(Debug)]
pub struct Proc {
    name: String,
    child: Option<Child>,
    status: Option<ExitStatus>,
    logs: Vec<PathBuf>,
}

impl Proc {
    /// Spawns `cmd` with its output appended to `log` and no standard input.
    pub fn spawn(name: &str, cmd: &mut Command, log: &Path) -> Self {
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", log.display()));
        let err = out.try_clone().expect("cannot duplicate a file handle");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        Self {
            name: name.to_string(),
            child: Some(child),
            status: None,
            logs: vec![log.to_path_buf()],
        }
    }

    /// Also print `path` when the test fails.
    pub fn add_log(&mut self, path: &Path) {
        self.logs.push(path.to_path_buf());
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Its exit status, if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none()
            && let Some(child) = self.child.as_mut()
        {
            self.status = child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Waits until `addr` accepts connections; panics, with the logs, if the process
    /// exits or [`START_LIMIT`] passes first.
    pub fn wait_listening(&mut self, addr: SocketAddr) {
        if !wait_accepting(addr, START_LIMIT, || self.exited().is_none()) {
            let status = self.exited();
            panic!(
                "{} does not accept connections on {addr} (exit status {status:?})",
                self.name
            );
        }
    }

    /// Waits up to `limit` for the process to exit by itself.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        wait_until(limit, || self.exited().is_some());
        self.exited()
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: Signal) {
        let pid = Pid::from_raw(i32::try_from(self.pid()).expect("a pid fits in i32"));
        kill(pid, signal).unwrap_or_else(|e| panic!("cannot signal {}: {e}", self.name));
    }

    /// SIGTERM, then up to [`STOP_LIMIT`] to exit, then SIGKILL. Returns the exit status.
    pub fn stop(&mut self) -> ExitStatus {
        if let Some(status) = self.exited() {
            return status;
        }
        self.signal(Signal::SIGTERM);
        if let Some(status) = self.wait_exit(STOP_LIMIT) {
            return status;
        }
        eprintln!(
            "{} did not exit within {STOP_LIMIT:?} of SIGTERM; killing it",
            self.name
        );
        let child = self.child.as_mut().expect("a child");
        let _ = child.kill();
        let status = child.wait().expect("cannot wait for a killed child");
        self.status = Some(status);
        status
    }

    /// Everything in its first log file so far.
    pub fn log(&self) -> String {
        fs::read(&self.logs[0])
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Prints its logs to standard error.
    pub fn dump(&self) {
        for path in &self.logs {
            let text = fs::read(path).unwrap_or_default();
            eprintln!(
                "----- {} ({}) -----\n{}----- end -----",
                self.name,
                path.display(),
                String::from_utf8_lossy(&text)
            );
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.child.is_none() {
            return;
        }
        let status = self.stop();
        if std::thread::panicking() {
            eprintln!("{} exited with {status}", self.name);
            self.dump();
        }
    }
}

/// The keys of a configuration file, written as the original writes them: a flat JSON
/// object of string values.
#[derive(Clone, Debug, Default)]
pub struct Settings(BTreeMap<String, String>);

impl Settings {
    /// The configuration every interop test starts from: host `mx.test` on a free port,
    /// mail for `example.com` and `*.example.org` into `<dir>/maildir`, STARTTLS with the
    /// test certificate, and short timeouts.
    pub fn defaults(dir: &Path) -> Self {
        let certs = cert_dir();
        let mut s = Self::default();
        s.set("GSMTP_HOST_NAME", "mx.test")
            .set("GSTMP_LISTEN_INTERFACE", &free_addr().to_string())
            .set("GSMTP_MAILDIR", &dir.join("maildir").to_string_lossy())
            .set("GSMTP_PUB_KEY", &certs.join("cert.pem").to_string_lossy())
            .set("GSMTP_PRV_KEY", &certs.join("key.pem").to_string_lossy())
            .set("GM_ALLOWED_HOSTS", "example.com,*.example.org")
            .set("GSMTP_MAX_SIZE", "10240000")
            .set("GSMTP_TIMEOUT", "20")
            .set("GSMTP_SHUTDOWN_GRACE", "2")
            .set("GM_MAX_CLIENTS", "100");
        s
    }

    /// Sets `key` to `value`.
    pub fn set(&mut self, key: &str, value: &str) -> &mut Self {
        self.0.insert(key.to_string(), value.to_string());
        self
    }

    /// Removes `key`.
    pub fn remove(&mut self, key: &str) -> &mut Self {
        self.0.remove(key);
        self
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// The SMTP listen address.
    pub fn listen(&self) -> SocketAddr {
        let addr = self
            .get("GSTMP_LISTEN_INTERFACE")
            .or_else(|| self.get("GSMTP_LISTEN_INTERFACE"))
            .expect("a listen address");
        addr.parse()
            .unwrap_or_else(|e| panic!("bad listen address {addr:?}: {e}"))
    }

    /// The `auth_http` address, when the service is enabled.
    pub fn auth(&self) -> Option<SocketAddr> {
        let on = self
            .get("NGINX_AUTH_ENABLED")
            .is_some_and(|v| v.eq_ignore_ascii_case("y"));
        on.then(|| {
            self.get("NGINX_AUTH")
                .expect("NGINX_AUTH with NGINX_AUTH_ENABLED")
                .parse()
                .expect("NGINX_AUTH is an address")
        })
    }

    /// The JSON text.
    pub fn to_json(&self) -> String {
        let fields: Vec<String> = self
            .0
            .iter()
            .map(|(k, v)| format!("    {}: {}", json_string(k), json_string(v)))
            .collect();
        format!("{{\n{}\n}}\n", fields.join(",\n"))
    }

    /// Writes the JSON file.
    pub fn write(&self, path: &Path) {
        fs::write(path, self.to_json())
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }
}

/// `s` as a JSON string literal.
fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A server binary running as a child process in its own temporary directory, with its
/// configuration file, its Maildir (`<dir>/maildir`) and its log (`<dir>/daemon.log`,
/// its standard output and error). Stopped with SIGTERM when dropped, which fails the
/// test unless it exits with status 0 and logged no panic; the log is printed if the
/// test fails.
#[derive(Debug)]
pub struct Daemon {
    proc: Proc,
    /// The SMTP listener.
    pub smtp: SocketAddr,
    /// The `auth_http` service, when enabled.
    pub auth: Option<SocketAddr>,
    /// The configuration it was started with.
    pub settings: Settings,
    dir: TempDir,
    /// Killed on purpose ([`Daemon::kill`]): its exit status is not checked.
    killed: bool,
}

impl Daemon {
    /// Kills it with SIGKILL (a crash) and waits for it to be gone.
    pub fn kill(&mut self) {
        self.killed = true;
        self.proc.signal(Signal::SIGKILL);
        self.proc.wait_exit(STOP_LIMIT);
    }

    /// Starts `bin --config <dir>/guerrilla.conf` with [`Settings::defaults`] changed by
    /// `tweak`, and waits until it accepts connections.
    pub fn start(bin: &str, tweak: impl FnOnce(&mut Settings)) -> Self {
        Self::start_in(bin, TempDir::new("interop"), tweak)
    }

    /// [`Daemon::start`] in a directory the caller prepared.
    pub fn start_in(bin: &str, dir: TempDir, tweak: impl FnOnce(&mut Settings)) -> Self {
        Self::start_env(bin, dir, &[], tweak)
    }

    /// [`Daemon::start_in`] with `env` added to the process's environment.
    pub fn start_env(
        bin: &str,
        dir: TempDir,
        env: &[(&str, &str)],
        tweak: impl FnOnce(&mut Settings),
    ) -> Self {
        let mut settings = Settings::defaults(dir.path());
        tweak(&mut settings);
        let config = dir.path().join("guerrilla.conf");
        settings.write(&config);
        let listen = settings.listen();
        let args = vec![OsString::from("--config"), config.into_os_string()];
        let mut cmd = Command::new(bin);
        cmd.envs(env.iter().copied());
        Self::launch_cmd(cmd, dir, settings, &args, listen)
    }

    /// Runs `bin args...` in `dir` (its working directory), taking `settings` as the
    /// configuration it will read, and waits until `listen` (and the `auth_http`
    /// service, if `settings` enable it) accepts connections.
    pub fn launch(
        bin: &str,
        dir: TempDir,
        settings: Settings,
        args: &[OsString],
        listen: SocketAddr,
    ) -> Self {
        Self::launch_cmd(Command::new(bin), dir, settings, args, listen)
    }

    fn launch_cmd(
        mut cmd: Command,
        dir: TempDir,
        settings: Settings,
        args: &[OsString],
        listen: SocketAddr,
    ) -> Self {
        let log = dir.path().join("daemon.log");
        let name = format!("{} {args:?}", cmd.get_program().to_string_lossy());
        let mut proc = Proc::spawn(&name, cmd.args(args).current_dir(dir.path()), &log);
        proc.wait_listening(listen);
        let auth = settings.auth();
        if let Some(a) = auth {
            proc.wait_listening(a);
        }
        Self {
            proc,
            smtp: listen,
            auth,
            settings,
            dir,
            killed: false,
        }
    }

    /// Its temporary directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The Maildir root.
    pub fn maildir(&self) -> PathBuf {
        self.dir.path().join("maildir")
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// The process, to signal it or wait for it.
    pub fn process(&mut self) -> &mut Proc {
        &mut self.proc
    }

    /// Its standard output and error so far.
    pub fn log(&self) -> String {
        self.proc.log()
    }

    /// Waits up to five seconds for a log line that contains every one of `parts`;
    /// panics if none comes. Returns the line.
    pub fn wait_log(&self, parts: &[&str]) -> String {
        wait_for_line(&self.dir.path().join("daemon.log"), parts)
    }

    /// SIGTERM, and the exit status (killed after [`STOP_LIMIT`]).
    pub fn stop(&mut self) -> ExitStatus {
        self.proc.stop()
    }

    /// The files in `<maildir>/<folder>/<sub>` (sub is tmp, new or cur), sorted by name.
    pub fn files(&self, folder: &str, sub: &str) -> Vec<PathBuf> {
        folder_files(&self.maildir(), folder, sub)
    }

    /// The contents of the messages in `<folder>/new`.
    pub fn stored(&self, folder: &str) -> Vec<Vec<u8>> {
        self.files(folder, "new")
            .iter()
            .map(|p| fs::read(p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display())))
            .collect()
    }

    /// Every regular file under the Maildir root, relative to it.
    pub fn all_files(&self) -> Vec<String> {
        fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
            for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
                let p = entry.path();
                if p.is_dir() {
                    walk(&p, root, out);
                } else {
                    out.push(p.strip_prefix(root).unwrap_or(&p).display().to_string());
                }
            }
        }
        let mut out = Vec::new();
        let root = self.maildir();
        walk(&root, &root, &mut out);
        out.sort();
        out
    }
}

impl Drop for Daemon {
    /// Stops the server; unless the test is failing already, fails it if the server did
    /// not exit with status 0 or logged a panic.
    fn drop(&mut self) {
        let status = self.proc.stop();
        if std::thread::panicking() || self.killed {
            return;
        }
        assert!(
            status.success(),
            "the server exited with {status} after SIGTERM"
        );
        assert!(
            !self.log().contains("panicked"),
            "the server panicked (see its log)"
        );
    }
}

/// Waits up to five seconds for a line of the file at `path` that contains every one of
/// `parts`; panics if none comes. Returns the line.
pub fn wait_for_line(path: &Path, parts: &[&str]) -> String {
    let mut found = None;
    let ok = wait_until(Duration::from_secs(5), || {
        let text = fs::read(path).unwrap_or_default();
        found = String::from_utf8_lossy(&text)
            .lines()
            .find(|l| parts.iter().all(|p| l.contains(p)))
            .map(str::to_string);
        found.is_some()
    });
    assert!(ok, "no line with {parts:?} in {}", path.display());
    found.expect("found")
}

/// Runs a command to its end (at most `limit`, then it is killed and the test fails),
/// feeding it `input`, and returns its output.
pub fn run(cmd: &mut Command, input: &[u8], limit: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = input.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let reader = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            buf
        })
    };
    let out = reader(Box::new(child.stdout.take().expect("piped stdout")));
    let err = reader(Box::new(child.stderr.take().expect("piped stderr")));
    let end = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("cannot wait for a child") {
            break Some(status);
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let _ = feeder.join();
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    let Some(status) = status else {
        panic!(
            "{cmd:?} did not finish within {limit:?}\nstdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&stderr)
        );
    };
    Output {
        status,
        stdout,
        stderr,
    }
}

/// [`run`] with no input, checked to exit 0; returns standard output and error together.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = run(cmd, b"", RUN_LIMIT);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{text}",
        out.status
    );
    text
}

/// What the trace headers of a stored message must say.
#[derive(Clone, Copy, Debug)]
pub struct Trace<'a> {
    /// The recipient (`Delivered-To` and `for <...>`).
    pub rcpt: &'a str,
    /// The HELO/EHLO name.
    pub helo: &'a str,
    /// The client address in brackets.
    pub ip: &'a str,
    /// The `with` keyword: `SMTP` after HELO, `ESMTP` after EHLO, `ESMTPS` over TLS
    /// (which also needs the `(using ...)` line).
    pub with: &'a str,
    /// The queue id the client was given, if known.
    pub id: Option<&'a str>,
}

/// The envelope sender every interop client uses, expected in `Return-Path`.
pub const SENDER: &str = "a@example.net";

/// Checks one stored file byte for byte: `Return-Path: <SENDER>`, `Delivered-To: <rcpt>`,
/// then the Received
/// header as `trace` says (only the date and the cipher may vary), then exactly `body`.
/// Returns the queue id in the header.
pub fn check_stored(file: &[u8], trace: &Trace<'_>, body: &[u8]) -> String {
    let (head, rest) = split_trace(file);
    if rest != body {
        let at = rest
            .iter()
            .zip(body)
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| rest.len().min(body.len()));
        let around = |b: &[u8]| {
            let from = at.saturating_sub(80);
            String::from_utf8_lossy(&b[from.min(b.len())..(at + 80).min(b.len())]).into_owned()
        };
        panic!(
            "the stored message differs from what the client sent, first at octet {at} \
             (stored {} octets, sent {})\nstored: {:?}\nsent:   {:?}\nheaders: {head:?}",
            rest.len(),
            body.len(),
            around(&rest),
            around(body)
        );
    }
    let lines: Vec<&str> = head.split("\r\n").collect();
    let mut it = lines.iter().copied();
    let mut next = |what: &str| {
        it.next()
            .unwrap_or_else(|| panic!("no {what} line in {head:?}"))
    };
    assert_eq!(next("Return-Path"), format!("Return-Path: <{SENDER}>"));
    assert_eq!(
        next("Delivered-To"),
        format!("Delivered-To: {}", trace.rcpt)
    );
    assert_eq!(
        next("Received"),
        format!("Received: from {} (unknown [{}])", trace.helo, trace.ip),
        "{head}"
    );
    if trace.with.ends_with('S') {
        let using = next("using");
        assert!(
            using.starts_with("\t(using TLSv1.3 with cipher TLS_")
                || using.starts_with("\t(using TLSv1.2 with cipher ECDHE-"),
            "{head}"
        );
    }
    let by = next("by");
    let id = by
        .strip_prefix(&format!(
            "\tby mx.test (Guerrilla-SMTPd) with {} id ",
            trace.with
        ))
        .unwrap_or_else(|| panic!("bad by line {by:?} in {head}"));
    assert!(
        id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "bad id in {head}"
    );
    if let Some(expected) = trace.id {
        assert_eq!(id, expected, "{head}");
    }
    assert_eq!(next("for"), format!("\tfor <{}>;", trace.rcpt), "{head}");
    let date = next("date");
    assert!(
        date.len() == 32 && date.starts_with('\t') && date.ends_with(" +0000"),
        "bad date line {date:?}"
    );
    assert_eq!(next("end"), "", "{head}");
    assert!(it.next().is_none(), "{head}");
    id.to_string()
}

/// The queue id in a `250 2.0.0 OK : queued as <id>` line of `text`; panics if none.
pub fn queued_id(text: &str) -> String {
    let ids = queued_ids(text);
    assert_eq!(ids.len(), 1, "expected one queued reply in:\n{text}");
    ids[0].clone()
}

/// Every queue id in `250 2.0.0 OK : queued as <id>` lines of `text`.
pub fn queued_ids(text: &str) -> Vec<String> {
    text.match_indices("250 2.0.0 OK : queued as ")
        .map(|(i, m)| text[i + m.len()..].chars().take(32).collect())
        .collect()
}
