//! The servers under test: finding the Postfix tools, building ours, free ports, and
//! starting, checking and stopping a server (`Env`, `Running`).

use std::fs;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::TRASHED;
use crate::opts::{Impl, Mode, Target};

// ---------------------------------------------------------------------------------------
// Tools and binaries
// ---------------------------------------------------------------------------------------

/// Finds a Postfix test program in PATH or where Debian puts it.
pub(crate) fn find_tool(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(
        [
            "/usr/sbin",
            "/usr/bin",
            "/usr/local/sbin",
            "/usr/lib/postfix/sbin",
        ]
        .map(PathBuf::from),
    );
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

pub(crate) fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from)
}

pub(crate) fn build(root: &Path) -> Result<(), String> {
    eprintln!("bench: cargo build --release -p frontend-smol -p frontend-async-std");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "-p",
            "frontend-smol",
            "-p",
            "frontend-async-std",
        ])
        .current_dir(root)
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("cargo build failed: {status}"))
    }
}

/// Raises this process's open-file limit to its hard limit; children inherit it.
pub(crate) fn raise_nofile() -> u64 {
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) => {
            if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
                hard
            } else {
                soft
            }
        }
        Err(_) => 1024,
    }
}

/// A free loopback port below the ephemeral range (so no client socket takes it).
fn free_port() -> u16 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let seed = u64::from(std::process::id()) * 7919 + now_secs() % 1000;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 20_000 + ((seed + n * 37) % 12_000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

// ---------------------------------------------------------------------------------------
// Servers
// ---------------------------------------------------------------------------------------

/// Paths and settings every server start needs.
#[derive(Debug)]
pub(crate) struct Env {
    pub(crate) sink: PathBuf,
    pub(crate) source: PathBuf,
    pub(crate) bin_dir: PathBuf,
    pub(crate) tmp: PathBuf,
    pub(crate) sink_backlog: usize,
    pub(crate) sink_user: Option<String>,
    pub(crate) max_clients: usize,
    pub(crate) max_size: usize,
    /// Octets of stored test messages a server may keep before they are deleted.
    pub(crate) trash_limit: u64,
}

/// A running server under test (for bare-maildir, only its Maildir: the writer runs in
/// the bench, per load).
#[derive(Debug)]
pub(crate) struct Running {
    pub(crate) target: Target,
    /// The server's process; `None` for bare-maildir.
    child: Option<Child>,
    pub(crate) port: u16,
    dir: PathBuf,
    /// Our servers in Maildir mode: the Maildir root.
    pub(crate) maildir: Option<PathBuf>,
    /// Our servers: the log file.
    log: Option<PathBuf>,
    /// smtp-sink: its `-c` message counter.
    sink_messages: Option<Arc<AtomicU64>>,
    /// Our servers: how far the log has been read, and the messages counted in it.
    log_seen: Mutex<(u64, u64)>,
    /// Maildir mode: runs moved to the trash so far, and their octets.
    trash: Mutex<(u64, u64)>,
    /// How the server was started, for the report.
    pub(crate) command: String,
}

impl Running {
    /// The server's process id (the bench's own for bare-maildir).
    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().map_or_else(std::process::id, Child::id)
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Starts `target` under `env` in its own directory `name` of the temp dir.
    pub(crate) fn start(env: &Env, target: Target, name: &str) -> Result<Self, String> {
        Self::start_with(env, target, name, &[])
    }

    /// [`Running::start`] with more configuration keys for our servers (`extra` may set
    /// `GSMTP_STORAGE` to another destination).
    pub(crate) fn start_with(
        env: &Env,
        target: Target,
        name: &str,
        extra: &[(&str, String)],
    ) -> Result<Self, String> {
        let mut last = String::new();
        for _ in 0..4 {
            match Self::try_start(env, target, name, extra) {
                Ok(r) => return Ok(r),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn try_start(
        env: &Env,
        target: Target,
        name: &str,
        extra: &[(&str, String)],
    ) -> Result<Self, String> {
        let port = free_port();
        let dir = env.tmp.join(name);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        if target.imp == Impl::Bare {
            // Where our servers keep their Maildir: the same file system, the same depth.
            let maildir = dir.join("Maildir");
            fs::create_dir_all(&maildir).map_err(|e| e.to_string())?;
            return Ok(Self {
                target,
                child: None,
                port: 0,
                dir,
                maildir: Some(maildir),
                log: None,
                sink_messages: None,
                log_seen: Mutex::new((0, 0)),
                trash: Mutex::new((0, 0)),
                command: "no server: bare.rs in the bench, one writer thread per session and one committer".into(),
            });
        }
        let stderr_path = dir.join("stderr");
        let stderr = fs::File::create(&stderr_path).map_err(|e| e.to_string())?;
        let (mut cmd, maildir, log) = if target.imp == Impl::Sink {
            let mut cmd = Command::new(&env.sink);
            // -c: count messages (checked after every run); -m: serve this many sessions
            // at once (the default, 256, would queue the 1,000-session point).
            cmd.arg("-c").arg("-m").arg(env.max_clients.to_string());
            if let Some(user) = &env.sink_user {
                cmd.arg("-u").arg(user);
            }
            cmd.arg(format!("127.0.0.1:{port}"))
                .arg(env.sink_backlog.to_string());
            (cmd, None, None)
        } else {
            let maildir = dir.join("Maildir");
            fs::create_dir_all(&maildir).map_err(|e| e.to_string())?;
            let log = dir.join("server.log");
            let storage = match target.mode {
                Mode::Discard => "discard",
                Mode::Maildir => "maildir",
            };
            let storage = extra
                .iter()
                .find(|(k, _)| *k == "GSMTP_STORAGE")
                .map_or(storage, |(_, v)| v.as_str());
            let more: String = extra
                .iter()
                .filter(|(k, _)| *k != "GSMTP_STORAGE")
                .map(|(k, v)| format!("  {}: {},\n", json_str(k), json_str(v)))
                .collect();
            let config = format!(
                "{{\n{more}  \"GSMTP_HOST_NAME\": \"bench.example\",\n  \"GSTMP_LISTEN_INTERFACE\": \"127.0.0.1:{port}\",\n  \"GSMTP_STORAGE\": \"{storage}\",\n  \"GSMTP_MAILDIR\": {},\n  \"GSMTP_FSYNC\": \"Y\",\n  \"GM_MAX_CLIENTS\": \"{}\",\n  \"GM_MAX_CLIENTS_PER_IP\": \"0\",\n  \"GSMTP_MAX_SIZE\": \"{}\",\n  \"GSMTP_LOG_FILE\": {}\n}}\n",
                json_str(&maildir.display().to_string()),
                env.max_clients,
                env.max_size,
                json_str(&log.display().to_string()),
            );
            let conf = dir.join("bench.conf");
            fs::write(&conf, config).map_err(|e| e.to_string())?;
            let mut cmd = Command::new(env.bin_dir.join(target.imp.binary()));
            cmd.arg("--config").arg(&conf).current_dir(&dir);
            (
                cmd,
                (target.mode == Mode::Maildir).then_some(maildir),
                Some(log),
            )
        };
        let command = describe(&cmd);
        cmd.stdin(Stdio::null()).stderr(stderr);
        cmd.stdout(if target.imp == Impl::Sink {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {command}: {e}"))?;
        let sink_messages = child.stdout.take().map(|out| {
            let counter = Arc::new(AtomicU64::new(0));
            let c = Arc::clone(&counter);
            thread::spawn(move || read_sink_counter(out, &c));
            counter
        });
        let mut r = Self {
            target,
            child: Some(child),
            port,
            dir,
            maildir,
            log,
            sink_messages,
            log_seen: Mutex::new((0, 0)),
            trash: Mutex::new((0, 0)),
            command,
        };
        r.wait_ready().map_err(|e| {
            let err = fs::read_to_string(&stderr_path).unwrap_or_default();
            let log = r
                .log
                .as_ref()
                .and_then(|l| fs::read_to_string(l).ok())
                .unwrap_or_default();
            format!(
                "{} did not start: {e}\n{}{}",
                r.command,
                tail(&err, 10),
                tail(&log, 10)
            )
        })?;
        Ok(r)
    }

    /// Waits until the server answers `220`.
    fn wait_ready(&mut self) -> Result<(), String> {
        let end = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                return Err(format!("exited with {status}"));
            }
            if let Ok(s) = TcpStream::connect_timeout(&self.addr(), Duration::from_millis(200)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let mut s = BufReader::new(s);
                if let Ok((code, _)) = read_reply(&mut s) {
                    let _ = s.get_mut().write_all(b"QUIT\r\n");
                    let _ = read_reply(&mut s);
                    if code == 220 {
                        return Ok(());
                    }
                    return Err(format!("greeting {code}"));
                }
            }
            if Instant::now() > end {
                return Err("no greeting within 15 s".into());
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Messages the server says it accepted so far: smtp-sink's `-c` counter, or our
    /// log's `message queued` lines.
    pub(crate) fn accepted_count(&self) -> Option<u64> {
        if let Some(c) = &self.sink_messages {
            return Some(c.load(Ordering::Relaxed));
        }
        // Read on from where the last call stopped, whole lines only.
        let mut seen = self.log_seen.lock().ok()?;
        let mut f = fs::File::open(self.log.as_ref()?).ok()?;
        f.seek(SeekFrom::Start(seen.0)).ok()?;
        let mut new = Vec::new();
        f.read_to_end(&mut new).ok()?;
        let whole = new.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        seen.0 += whole as u64;
        seen.1 += count_occurrences(&new[..whole], b"message queued") as u64;
        Some(seen.1)
    }

    /// Empties `new/` after a run by moving the files into a trash folder, deleted when
    /// the server stops or when it holds more than `limit` octets. Deleting at once would
    /// slow the next runs down: ext4 without a journal (as here) skips recently freed
    /// inodes one by one when it allocates new ones (`recently_deleted` in ialloc.c, for
    /// 60 to 300 s), which made later Maildir runs up to 3.5 times slower.
    pub(crate) fn clear_maildir(&self, files: Vec<PathBuf>, limit: u64) -> Result<(), String> {
        let mut trash = self.trash.lock().map_err(|_| "poisoned")?;
        trash.0 += 1;
        let dir = self.dir.join("trash").join(trash.0.to_string());
        fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        TRASHED.fetch_add(files.len() as u64, Ordering::Relaxed);
        for (i, f) in files.iter().enumerate() {
            trash.1 += f.metadata().map_or(0, |m| m.len().div_ceil(4096) * 4096);
            fs::rename(f, dir.join(i.to_string()))
                .map_err(|e| format!("cannot move {}: {e}", f.display()))?;
        }
        if trash.1 > limit {
            eprintln!(
                "bench: deleting {} MiB of stored test messages of {} (--trash-limit-gib)",
                trash.1 >> 20,
                self.target.label()
            );
            let _ = fs::remove_dir_all(self.dir.join("trash"));
            trash.1 = 0;
        }
        Ok(())
    }

    /// If the server has died: its exit status and the end of its stderr and log.
    pub(crate) fn exited(&mut self) -> Option<String> {
        let status = self.child.as_mut()?.try_wait().ok()??;
        let err = fs::read_to_string(self.dir.join("stderr")).unwrap_or_default();
        let log = self
            .log
            .as_ref()
            .and_then(|l| fs::read_to_string(l).ok())
            .unwrap_or_default();
        Some(
            format!("{status}; {}{}", tail(&err, 5), tail(&log, 5))
                .trim()
                .to_string(),
        )
    }

    pub(crate) fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        if let Some(child) = &mut self.child
            && let Ok(None) = child.try_wait()
        {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
            let end = Instant::now() + Duration::from_secs(15);
            while Instant::now() < end {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn describe(cmd: &Command) -> String {
    let mut s = Path::new(cmd.get_program())
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

fn tail(text: &str, lines: usize) -> String {
    let v: Vec<&str> = text.lines().collect();
    let mut s = v[v.len().saturating_sub(lines)..].join("\n");
    if !s.is_empty() {
        s.push('\n');
    }
    s
}

/// Follows smtp-sink's `-c` output (`sess=N quit=N mesg=N`, one per CR).
fn read_sink_counter(mut out: impl Read, counter: &AtomicU64) {
    let mut buf = [0u8; 8192];
    let mut line = Vec::new();
    loop {
        let n = match out.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        for &b in &buf[..n] {
            if b == b'\r' || b == b'\n' {
                if let Some(m) = parse_mesg(&line) {
                    counter.store(m, Ordering::Relaxed);
                }
                line.clear();
            } else if line.len() < 200 {
                line.push(b);
            }
        }
    }
}

fn parse_mesg(line: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(line).ok()?;
    s.split_whitespace()
        .find_map(|w| w.strip_prefix("mesg="))?
        .parse()
        .ok()
}

fn count_occurrences(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).filter(|w| w == &needle).count()
}

/// Reads one SMTP reply (all its lines); returns the code and the text.
pub(crate) fn read_reply(r: &mut impl BufRead) -> io::Result<(u16, String)> {
    let mut text = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        text.push_str(&line);
        let b = line.as_bytes();
        if b.len() < 4 || b[3] != b'-' {
            let code = line
                .get(..3)
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, line.clone()))?;
            return Ok((code, text));
        }
    }
}
