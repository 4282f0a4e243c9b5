//! `bench`: our two servers and Postfix's `smtp-sink` side by side, in one run (issue 6).
//!
//! Starts `smtp-sink` (the reference ceiling) and `guerrilla-smol` / `guerrilla-async-std`,
//! each in `GSMTP_STORAGE=discard` and in durable Maildir mode (`GSMTP_FSYNC=Y`), each on
//! its own loopback port; drives them in turn (A, B, C, A, B, C, ...) with the same
//! `smtp-source` load; checks that every message was accepted (and, in Maildir mode,
//! stored) before it keeps a figure; measures resident memory per idle connection and the
//! peak growth while one large message is received; writes a CSV and an SVG chart and
//! prints a markdown table of medians and ratios to `smtp-sink`.
//!
//! ```sh
//! cargo run --release -p testsuite --bin bench -- --help
//! cargo run --release -p testsuite --bin bench -- --quick      # a smoke run, under a minute
//! cargo run --release -p testsuite --bin bench                 # the full run, 15-25 minutes
//! ```
//!
//! See `bench/README.md` for what each figure means.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::resource::{Resource, UsageWho, getrlimit, getrusage, setrlimit};
use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid, Uid};

const USAGE: &str = "\
bench: our servers and Postfix's smtp-sink side by side (issue 6)

usage: cargo run --release -p testsuite --bin bench -- [options]

It first runs `cargo build --release -p frontend-smol -p frontend-async-std` (skip with
--no-build, after `cargo build --release --workspace`), and needs Postfix's smtp-source
and smtp-sink (Debian: apt-get install postfix). See bench/README.md.

options:
  --quick               smoke run: tiny message counts, 1 repetition, 1,000 idle
                        connections; results go to target/bench-smoke/ unless --out
  --reps N              repetitions of each throughput load (default 5; --quick: 1)
  --curve-reps N        repetitions of each curve point (default 3; --quick: 1)
  --loads LIST          comma-separated, from: a (50 sessions x 20,000 x 4 KiB),
                        b (1 session x 5,000 x 4 KiB), c (50 sessions x 2,000 x 100 KiB),
                        curve, idle (RSS per idle connection), big (one 25 MiB message);
                        also `throughput` (a,b,c,curve), `mem` (idle,big), `all` (default)
  --servers LIST        comma-separated, from: sink, smol-discard, smol-maildir,
                        async-std-discard, async-std-maildir; also smol, async-std,
                        discard, maildir, all (default)
  --curve LIST          sessions of the curve (default 1,10,50,200,1000)
  --curve-messages N    messages per curve point (default 5,000 x --scale, at least one
                        per session)
  --scale X             multiply the message counts of a, b, c and the curve by X
                        (default 1; --quick: 0.05, so a is 50 x 1,000)
  --idle N              idle connections for the memory figure (default 10000)
  --big-mib N           size of the large message in MiB (default 25)
  --connections WHICH   new: smtp-source's default, a new connection for every message;
                        reuse: smtp-source -d, several messages per connection;
                        both (default): every throughput load in both ways
  --reuse               the same as --connections reuse
  --sink-backlog N      smtp-sink's listen backlog (default net.core.somaxconn, the
                        largest the kernel allows, as our listeners use)
  --sink-user USER      user smtp-sink switches to when run as root (default nobody)
  --no-build            do not run `cargo build --release` first
  --no-wait             do not wait out the 5 minutes after a previous run deleted its
                        stored messages (see bench/README.md)
  --out DIR             where the CSV and SVG go (default bench/results)
  --tmp DIR             Maildirs, configs and logs (default target/bench-tmp, on the
                        same disk as the workspace); removed afterwards
  --run-timeout SECS    give up on one smtp-source run after this long (default 900)
  --trash-limit-gib N   stored test messages are moved aside after each run and deleted
                        when a server stops, or once one server's exceed N GiB (default 8;
                        a full run stores about 5 GiB per Maildir server)
  -h, --help            this text
";

// ---------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------

/// A server implementation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Impl {
    Sink,
    Smol,
    AsyncStd,
}

impl Impl {
    fn name(self) -> &'static str {
        match self {
            Self::Sink => "smtp-sink",
            Self::Smol => "smol",
            Self::AsyncStd => "async-std",
        }
    }

    fn binary(self) -> &'static str {
        match self {
            Self::Sink => "smtp-sink",
            Self::Smol => "guerrilla-smol",
            Self::AsyncStd => "guerrilla-async-std",
        }
    }
}

/// What our servers do with a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Mode {
    Discard,
    Maildir,
}

/// One server under test: an implementation in a mode (smtp-sink always discards).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Target {
    imp: Impl,
    mode: Mode,
}

impl Target {
    const ALL: [Self; 5] = [
        Self::new(Impl::Sink, Mode::Discard),
        Self::new(Impl::Smol, Mode::Discard),
        Self::new(Impl::AsyncStd, Mode::Discard),
        Self::new(Impl::Smol, Mode::Maildir),
        Self::new(Impl::AsyncStd, Mode::Maildir),
    ];

    const fn new(imp: Impl, mode: Mode) -> Self {
        Self { imp, mode }
    }

    /// `sink`, `smol-discard`, `async-std-maildir`, ...: the name in the CSV and options.
    fn id(self) -> String {
        match (self.imp, self.mode) {
            (Impl::Sink, _) => "sink".into(),
            (imp, Mode::Discard) => format!("{}-discard", imp.name()),
            (imp, Mode::Maildir) => format!("{}-maildir", imp.name()),
        }
    }

    /// `smtp-sink`, `smol discard`, `async-std maildir`: the name in tables.
    fn label(self) -> String {
        match (self.imp, self.mode) {
            (Impl::Sink, _) => "smtp-sink".into(),
            (imp, Mode::Discard) => format!("{} discard", imp.name()),
            (imp, Mode::Maildir) => format!("{} maildir+fsync", imp.name()),
        }
    }
}

/// One smtp-source load.
#[derive(Clone, Debug)]
struct Load {
    /// `a`, `b`, `c`, `curve-50`, ...
    id: String,
    sessions: usize,
    messages: usize,
    bytes: usize,
    /// smtp-source -d: several messages per connection.
    reuse: bool,
}

impl Load {
    /// The load and the connection mode: `a`, `a -d`, `curve-50 -d`.
    fn key(&self) -> String {
        if self.reuse {
            format!("{} -d", self.id)
        } else {
            self.id.clone()
        }
    }

    fn label(&self) -> String {
        format!(
            "{} x {} x {}",
            plural(self.sessions, "session"),
            group(self.messages as f64),
            size_label(self.bytes)
        )
    }
}

#[derive(Debug)]
struct Opts {
    quick: bool,
    reps: usize,
    curve_reps: usize,
    loads: Vec<String>,
    targets: Vec<Target>,
    curve: Vec<usize>,
    curve_messages: usize,
    /// Multiplies the message counts of loads a, b, c and the curve.
    scale: f64,
    idle: usize,
    big_mib: usize,
    /// The connection modes to run: `false` a connection per message, `true` smtp-source -d.
    modes: Vec<bool>,
    sink_backlog: usize,
    sink_user: String,
    build: bool,
    out: PathBuf,
    tmp: PathBuf,
    run_timeout: Duration,
    trash_limit_gib: u64,
    wait: bool,
    root: PathBuf,
}

fn parse_opts() -> Result<Opts, String> {
    let root = workspace_root();
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let mut o = Opts {
        quick,
        reps: if quick { 1 } else { 5 },
        curve_reps: if quick { 1 } else { 3 },
        loads: ["a", "b", "c", "curve", "idle", "big"]
            .map(String::from)
            .to_vec(),
        targets: Target::ALL.to_vec(),
        curve: vec![1, 10, 50, 200, 1000],
        curve_messages: 0,
        scale: if quick { 0.05 } else { 1.0 },
        idle: if quick { 1000 } else { 10_000 },
        big_mib: 25,
        modes: vec![false, true],
        // Ours listen with the largest backlog the kernel allows; give smtp-sink the same.
        sink_backlog: fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(4096),
        sink_user: "nobody".into(),
        build: true,
        out: if quick {
            root.join("target/bench-smoke")
        } else {
            root.join("bench/results")
        },
        tmp: root.join("target/bench-tmp"),
        run_timeout: Duration::from_secs(900),
        trash_limit_gib: 8,
        wait: true,
        root,
    };
    args.reverse();
    let mut curve_messages = None;
    while let Some(arg) = args.pop() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.pop())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        let num = |v: String| {
            v.replace(['_', ','], "")
                .parse::<usize>()
                .map_err(|_| format!("{flag}: not a number: {v}"))
        };
        match flag.as_str() {
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            "--quick" => {}
            "--reps" => o.reps = num(value()?)?.max(1),
            "--curve-reps" => o.curve_reps = num(value()?)?.max(1),
            "--loads" => o.loads = parse_loads(&value()?)?,
            "--servers" => o.targets = parse_targets(&value()?)?,
            "--curve" => {
                o.curve = value()?
                    .split(',')
                    .map(|s| num(s.trim().to_string()))
                    .collect::<Result<_, _>>()?;
                o.curve.retain(|&n| n > 0);
                o.curve.sort_unstable();
                o.curve.dedup();
            }
            "--curve-messages" => curve_messages = Some(num(value()?)?.max(1)),
            "--scale" => {
                let v = value()?;
                o.scale = v
                    .parse::<f64>()
                    .ok()
                    .filter(|x| *x > 0.0)
                    .ok_or_else(|| format!("--scale: not a positive number: {v}"))?;
            }
            "--idle" => o.idle = num(value()?)?.max(1),
            "--big-mib" => o.big_mib = num(value()?)?.max(1),
            "--reuse" => o.modes = vec![true],
            "--connections" => {
                o.modes = match value()?.as_str() {
                    "new" => vec![false],
                    "reuse" => vec![true],
                    "both" => vec![false, true],
                    v => return Err(format!("--connections: new, reuse or both, not {v}")),
                }
            }
            "--sink-backlog" => o.sink_backlog = num(value()?)?.max(1),
            "--sink-user" => o.sink_user = value()?,
            "--no-build" => o.build = false,
            "--no-wait" => o.wait = false,
            "--out" => o.out = PathBuf::from(value()?),
            "--tmp" => o.tmp = PathBuf::from(value()?),
            "--run-timeout" => o.run_timeout = Duration::from_secs(num(value()?)? as u64),
            "--trash-limit-gib" => o.trash_limit_gib = num(value()?)? as u64,
            _ => return Err(format!("unknown option {arg} (see --help)")),
        }
    }
    o.curve_messages =
        curve_messages.unwrap_or_else(|| ((5000.0 * o.scale).round() as usize).max(1));
    Ok(o)
}

fn parse_loads(list: &str) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let names: &[&str] = match item {
            "all" => &["a", "b", "c", "curve", "idle", "big"],
            "throughput" => &["a", "b", "c", "curve"],
            "mem" | "memory" => &["idle", "big"],
            "a" | "b" | "c" | "curve" | "idle" | "big" => &[item],
            _ => return Err(format!("unknown load {item:?} (see --help)")),
        };
        for n in names {
            if !out.iter().any(|o| o == n) {
                out.push((*n).to_string());
            }
        }
    }
    Ok(out)
}

fn parse_targets(list: &str) -> Result<Vec<Target>, String> {
    let mut out = Vec::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let matched: Vec<Target> = Target::ALL
            .into_iter()
            .filter(|t| match item {
                "all" => true,
                "sink" | "smtp-sink" => t.imp == Impl::Sink,
                "smol" => t.imp == Impl::Smol,
                "async-std" => t.imp == Impl::AsyncStd,
                "discard" => t.imp != Impl::Sink && t.mode == Mode::Discard,
                "maildir" => t.mode == Mode::Maildir,
                _ => t.id() == item,
            })
            .collect();
        if matched.is_empty() {
            return Err(format!("unknown server {item:?} (see --help)"));
        }
        out.extend(matched);
    }
    out.sort();
    out.dedup();
    // The table order: the reference first.
    out.sort_by_key(|t| Target::ALL.iter().position(|a| a == t));
    Ok(out)
}

fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

// ---------------------------------------------------------------------------------------
// Tools and binaries
// ---------------------------------------------------------------------------------------

/// Finds a Postfix test program in PATH or where Debian puts it.
fn find_tool(name: &str) -> Option<PathBuf> {
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

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from)
}

fn build(root: &Path) -> Result<(), String> {
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
fn raise_nofile() -> u64 {
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

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

// ---------------------------------------------------------------------------------------
// Servers
// ---------------------------------------------------------------------------------------

/// Paths and settings every server start needs.
#[derive(Debug)]
struct Env {
    sink: PathBuf,
    source: PathBuf,
    bin_dir: PathBuf,
    tmp: PathBuf,
    sink_backlog: usize,
    sink_user: Option<String>,
    max_clients: usize,
    max_size: usize,
    /// Octets of stored test messages a server may keep before they are deleted.
    trash_limit: u64,
}

/// A running server under test.
#[derive(Debug)]
struct Running {
    target: Target,
    child: Child,
    port: u16,
    dir: PathBuf,
    /// Our servers in Maildir mode: the Maildir root.
    maildir: Option<PathBuf>,
    /// Our servers: the log file.
    log: Option<PathBuf>,
    /// smtp-sink: its `-c` message counter.
    sink_messages: Option<Arc<AtomicU64>>,
    /// Our servers: how far the log has been read, and the messages counted in it.
    log_seen: Mutex<(u64, u64)>,
    /// Maildir mode: runs moved to the trash so far, and their octets.
    trash: Mutex<(u64, u64)>,
    /// How the server was started, for the report.
    command: String,
}

impl Running {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Starts `target` under `env` in its own directory `name` of the temp dir.
    fn start(env: &Env, target: Target, name: &str) -> Result<Self, String> {
        let mut last = String::new();
        for _ in 0..4 {
            match Self::try_start(env, target, name) {
                Ok(r) => return Ok(r),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn try_start(env: &Env, target: Target, name: &str) -> Result<Self, String> {
        let port = free_port();
        let dir = env.tmp.join(name);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
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
            let config = format!(
                "{{\n  \"GSMTP_HOST_NAME\": \"bench.example\",\n  \"GSTMP_LISTEN_INTERFACE\": \"127.0.0.1:{port}\",\n  \"GSMTP_STORAGE\": \"{storage}\",\n  \"GSMTP_MAILDIR\": {},\n  \"GSMTP_FSYNC\": \"Y\",\n  \"GM_MAX_CLIENTS\": \"{}\",\n  \"GM_MAX_CLIENTS_PER_IP\": \"0\",\n  \"GSMTP_MAX_SIZE\": \"{}\",\n  \"GSMTP_LOG_FILE\": {}\n}}\n",
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
            child,
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
            if let Ok(Some(status)) = self.child.try_wait() {
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
    fn accepted_count(&self) -> Option<u64> {
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
    fn clear_maildir(&self, files: Vec<PathBuf>, limit: u64) -> Result<(), String> {
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
    fn exited(&mut self) -> Option<String> {
        let status = self.child.try_wait().ok()??;
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

    fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = kill(Pid::from_raw(self.pid() as i32), Signal::SIGTERM);
            let end = Instant::now() + Duration::from_secs(15);
            while Instant::now() < end {
                if let Ok(Some(_)) = self.child.try_wait() {
                    break;
                }
                thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
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
fn read_reply(r: &mut impl BufRead) -> io::Result<(u16, String)> {
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

// ---------------------------------------------------------------------------------------
// /proc
// ---------------------------------------------------------------------------------------

/// A `kB` field of `/proc/<pid>/status`, such as `VmRSS` or `VmHWM`.
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// User plus system CPU seconds the process has used.
fn cpu_secs(pid: u32) -> Option<f64> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of stat(5), counted from the state (field 3) here; in USER_HZ.
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// CPU seconds used by reaped children (the smtp-source runs).
fn children_cpu_secs() -> f64 {
    getrusage(UsageWho::RUSAGE_CHILDREN).map_or(0.0, |u| {
        let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
        t(u.user_time()) + t(u.system_time())
    })
}

// ---------------------------------------------------------------------------------------
// Maildir
// ---------------------------------------------------------------------------------------

/// Files under every `new/` and every `tmp/` below `root`.
fn maildir_files(root: &Path) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let (mut new, mut tmp) = (Vec::new(), Vec::new());
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = fs::read_dir(&dir) else { continue };
        let leaf = dir.file_name().and_then(|n| n.to_str()).unwrap_or("");
        for e in rd.flatten() {
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                stack.push(e.path());
            } else if leaf == "new" {
                new.push(e.path());
            } else if leaf == "tmp" {
                tmp.push(e.path());
            }
        }
    }
    (new, tmp)
}

// ---------------------------------------------------------------------------------------
// Throughput
// ---------------------------------------------------------------------------------------

/// The smtp-source flags of a load (without the address).
fn source_args(load: &Load) -> Vec<String> {
    let mut a: Vec<String> = vec!["-c".into()];
    if load.reuse {
        a.push("-d".into());
    }
    a.extend(
        [
            "-s",
            &load.sessions.to_string(),
            "-m",
            &load.messages.to_string(),
            "-l",
            &load.bytes.to_string(),
            "-M",
            "client.example",
            "-f",
            "bench@client.example",
            "-t",
            "user@example.com",
        ]
        .map(String::from),
    );
    a
}

#[derive(Clone, Debug)]
struct Sample {
    target: Target,
    load: Load,
    rep: usize,
    secs: f64,
    rate: f64,
    server_cpu: f64,
    source_cpu: f64,
}

/// One smtp-source run against `srv`, checked.
fn run_load(
    env: &Env,
    srv: &Running,
    load: &Load,
    timeout: Duration,
) -> Result<(f64, f64, f64), String> {
    if let Some(m) = &srv.maildir {
        let (new, tmp) = maildir_files(m);
        if !new.is_empty() || !tmp.is_empty() {
            return Err(format!("{} not empty before the run", m.display()));
        }
    }
    let accepted_before = srv.accepted_count();
    let cpu_before = cpu_secs(srv.pid()).unwrap_or(0.0);
    let children_before = children_cpu_secs();
    let mut cmd = Command::new(&env.source);
    cmd.args(source_args(load))
        .arg(format!("127.0.0.1:{}", srv.port))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run smtp-source: {e}"))?;
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    let status = loop {
        if let Some(st) = child.try_wait().map_err(|e| e.to_string())? {
            break st;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("smtp-source did not finish within {timeout:?}"));
        }
        thread::sleep(Duration::from_millis(2));
    };
    let secs = start.elapsed().as_secs_f64();
    let source_cpu = children_cpu_secs() - children_before;
    let out = out.join().unwrap_or_default();
    let err = err.join().unwrap_or_default();
    let counted = String::from_utf8_lossy(&out)
        .split(['\r', '\n'])
        .filter_map(|t| t.trim().parse::<usize>().ok())
        .next_back()
        .unwrap_or(0);
    if !status.success() || counted != load.messages {
        return Err(format!(
            "smtp-source: {status}, {counted} of {} messages completed; {}",
            load.messages,
            String::from_utf8_lossy(&err).trim()
        ));
    }
    // The server's own count.
    if let Some(before) = accepted_before {
        let want = before + load.messages as u64;
        let end = Instant::now() + Duration::from_secs(5);
        let mut got = srv.accepted_count().unwrap_or(0);
        while got < want && Instant::now() < end {
            thread::sleep(Duration::from_millis(20));
            got = srv.accepted_count().unwrap_or(0);
        }
        if got != want {
            return Err(format!(
                "the server counted {} accepted messages, expected {}",
                got - before,
                load.messages
            ));
        }
    }
    if let Some(m) = &srv.maildir {
        let (new, tmp) = maildir_files(m);
        if new.len() != load.messages || !tmp.is_empty() {
            return Err(format!(
                "{} files in new/ and {} in tmp/, expected {} and 0",
                new.len(),
                tmp.len(),
                load.messages
            ));
        }
        srv.clear_maildir(new, env.trash_limit)?;
    }
    let server_cpu = cpu_secs(srv.pid()).unwrap_or(0.0) - cpu_before;
    Ok((secs, server_cpu, source_cpu))
}

fn drain(r: Option<impl Read + Send + 'static>) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(mut r) = r {
            let _ = r.read_to_end(&mut v);
        }
        v
    })
}

// ---------------------------------------------------------------------------------------
// Memory
// ---------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct MemFigure {
    target: Target,
    /// `idle` or `big`.
    kind: &'static str,
    before_kib: u64,
    after_kib: u64,
    /// Bytes per connection (idle) or bytes of peak growth (big).
    value: f64,
    note: String,
}

/// Opens a session and says EHLO; returns the stream with nothing buffered.
fn open_session(addr: SocketAddr) -> Result<TcpStream, String> {
    let s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(10)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let mut r = BufReader::with_capacity(512, s);
    let (code, text) = read_reply(&mut r).map_err(|e| format!("greeting: {e}"))?;
    if code != 220 {
        return Err(format!("greeting: {}", text.trim()));
    }
    r.get_mut()
        .write_all(b"EHLO client.example\r\n")
        .map_err(|e| e.to_string())?;
    let (code, text) = read_reply(&mut r).map_err(|e| format!("EHLO: {e}"))?;
    if code != 250 {
        return Err(format!("EHLO: {}", text.trim()));
    }
    Ok(r.into_inner())
}

/// Resident memory per idle plaintext session after EHLO, with `n` of them open.
fn idle_memory(env: &Env, target: Target, n: usize) -> Result<MemFigure, String> {
    let srv = Running::start(env, target, &format!("idle-{}", target.id()))?;
    // One whole session first, so that one-time allocations are in the baseline.
    drop(open_session(srv.addr())?);
    thread::sleep(Duration::from_millis(500));
    let before = status_kib(srv.pid(), "VmRSS").ok_or("no VmRSS")?;
    let mut conns = Vec::with_capacity(n);
    for i in 0..n {
        conns.push(open_session(srv.addr()).map_err(|e| format!("session {}: {e}", i + 1))?);
    }
    thread::sleep(Duration::from_secs(1));
    let after = status_kib(srv.pid(), "VmRSS").ok_or("no VmRSS")?;
    let value = (after as f64 - before as f64) * 1024.0 / n as f64;
    drop(conns);
    srv.stop();
    Ok(MemFigure {
        target,
        kind: "idle",
        before_kib: before,
        after_kib: after,
        value,
        note: format!("{n} sessions"),
    })
}

/// Peak resident growth while one message of `mib` MiB is received (VmHWM after, minus
/// VmRSS before, with the high-water mark reset through clear_refs).
fn big_memory(env: &Env, target: Target, mib: usize) -> Result<MemFigure, String> {
    let srv = Running::start(env, target, &format!("big-{}", target.id()))?;
    let size = mib * 1024 * 1024;
    let io_err = |e: io::Error| e.to_string();
    let stream = open_session(srv.addr())?;
    let mut r = BufReader::new(stream.try_clone().map_err(io_err)?);
    let mut w = BufWriter::with_capacity(64 * 1024, stream);
    let mut step = |w: &mut BufWriter<TcpStream>, cmd: String, want: u16| -> Result<(), String> {
        w.write_all(cmd.as_bytes()).map_err(io_err)?;
        w.flush().map_err(io_err)?;
        let (code, text) = read_reply(&mut r).map_err(io_err)?;
        if code == want {
            Ok(())
        } else {
            Err(format!("{}: {}", cmd.trim(), text.trim()))
        }
    };
    step(
        &mut w,
        format!("MAIL FROM:<bench@client.example> SIZE={size}\r\n"),
        250,
    )?;
    step(&mut w, "RCPT TO:<user@example.com>\r\n".into(), 250)?;
    step(&mut w, "DATA\r\n".into(), 354)?;
    thread::sleep(Duration::from_millis(300));
    // Reset the high-water mark to the current RSS (Linux 4.0+), so that earlier peaks
    // (startup) do not count.
    let reset = fs::write(format!("/proc/{}/clear_refs", srv.pid()), "5").is_ok();
    let before = status_kib(srv.pid(), "VmRSS").ok_or("no VmRSS")?;
    let hwm_before = status_kib(srv.pid(), "VmHWM").ok_or("no VmHWM")?;
    // 76 characters and CRLF a line; every 40th line starts with a dot (and is stuffed).
    let header = "From: <bench@client.example>\r\nTo: <user@example.com>\r\nSubject: big\r\n\r\n";
    w.write_all(header.as_bytes()).map_err(io_err)?;
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut sent = header.len();
    let mut line = [0u8; 79];
    let mut i: usize = 0;
    while sent < size {
        for (k, b) in line[..76].iter_mut().enumerate() {
            *b = alphabet[(i * 31 + k * 7) % 64];
        }
        if i.is_multiple_of(40) {
            line[0] = b'.';
        }
        line[76] = b'\r';
        line[77] = b'\n';
        if line[0] == b'.' {
            w.write_all(b".").map_err(io_err)?;
        }
        w.write_all(&line[..78]).map_err(io_err)?;
        sent += 78;
        i += 1;
    }
    w.write_all(b".\r\n").map_err(io_err)?;
    w.flush().map_err(io_err)?;
    let (code, text) = read_reply(&mut r).map_err(io_err)?;
    if code != 250 {
        return Err(format!("end of data: {}", text.trim()));
    }
    let after = status_kib(srv.pid(), "VmHWM").ok_or("no VmHWM")?;
    let _ = w.write_all(b"QUIT\r\n");
    let _ = w.flush();
    let _ = read_reply(&mut r);
    let mut note = format!("{} octets", group(sent as f64));
    if !reset && hwm_before > before {
        note.push_str("; clear_refs failed, the peak may include startup");
    }
    if let Some(m) = &srv.maildir {
        let (new, _) = maildir_files(m);
        let stored: u64 = new
            .iter()
            .filter_map(|f| f.metadata().ok())
            .map(|m| m.len())
            .sum();
        if new.len() != 1 || stored < sent as u64 {
            return Err(format!(
                "{} files of {stored} octets in new/, expected one of at least {sent}",
                new.len()
            ));
        }
    }
    srv.stop();
    Ok(MemFigure {
        target,
        kind: "big",
        before_kib: before,
        after_kib: after,
        value: (after as f64 - before as f64) * 1024.0,
        note,
    })
}

// ---------------------------------------------------------------------------------------
// Reporting
// ---------------------------------------------------------------------------------------

fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// 12,345 (no decimals).
fn group(x: f64) -> String {
    let s = format!("{:.0}", x.abs());
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if x < 0.0 && out != "0" {
        out.insert(0, '-');
    }
    out
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{} {what}s", group(n as f64))
    }
}

fn size_label(bytes: usize) -> String {
    if bytes.is_multiple_of(1024 * 1024) {
        format!("{} MiB", bytes / (1024 * 1024))
    } else if bytes.is_multiple_of(1024) {
        format!("{} KiB", bytes / 1024)
    } else {
        format!("{bytes} B")
    }
}

fn mem_label(bytes: f64) -> String {
    if bytes.abs() >= 1024.0 * 1024.0 {
        format!("{:.2} MiB", bytes / 1024.0 / 1024.0)
    } else if bytes.abs() >= 1024.0 {
        format!("{:.2} KiB", bytes / 1024.0)
    } else {
        format!("{bytes:.0} B")
    }
}

/// YYYY-MM-DD and HH:MM:SS, UTC.
fn utc_now() -> (String, String) {
    let secs = now_secs();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        format!("{y:04}-{m:02}-{d:02}"),
        format!("{:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60),
    )
}

/// Medians of the samples, by load id and target.
type Medians = BTreeMap<(String, Target), f64>;

fn medians(samples: &[Sample]) -> Medians {
    let mut by: BTreeMap<(String, Target), Vec<f64>> = BTreeMap::new();
    for s in samples {
        by.entry((s.load.key(), s.target)).or_default().push(s.rate);
    }
    by.into_iter()
        .filter_map(|(k, v)| Some((k, median(&v)?)))
        .collect()
}

fn throughput_table(
    loads: &[Load],
    targets: &[Target],
    samples: &[Sample],
    med: &Medians,
) -> String {
    let mut s = String::new();
    let _ = write!(s, "| load |");
    for t in targets {
        let _ = write!(s, " {} |", t.label());
    }
    let _ = write!(s, "\n|---|");
    for _ in targets {
        let _ = write!(s, "--:|");
    }
    s.push('\n');
    for load in loads {
        let reps = samples
            .iter()
            .filter(|x| x.load.key() == load.key())
            .map(|x| x.rep)
            .max();
        let Some(reps) = reps else { continue };
        let _ = write!(s, "| {}: {} (n={}) |", load.id, load.label(), reps + 1);
        let sink = med.get(&(load.key(), Target::ALL[0])).copied();
        for t in targets {
            match med.get(&(load.key(), *t)) {
                None => s.push_str(" failed |"),
                Some(&m) if t.imp == Impl::Sink => {
                    let _ = write!(s, " {} |", group(m));
                }
                Some(&m) => match sink {
                    Some(k) if k > 0.0 => {
                        let _ = write!(s, " {} ({:.2}x) |", group(m), m / k);
                    }
                    _ => {
                        let _ = write!(s, " {} |", group(m));
                    }
                },
            }
        }
        s.push('\n');
    }
    s
}

/// async-std / smol for every load and mode.
fn parity_table(loads: &[Load], med: &Medians, mem: &[MemFigure]) -> String {
    let mut s = String::from(
        "| figure | discard: async-std / smol | maildir: async-std / smol |\n|---|--:|--:|\n",
    );
    let mut rows = 0;
    // One row: async-std over smol in each mode, unless neither mode was measured.
    let mut row = |what: &str, get: &dyn Fn(Impl, Mode) -> Option<f64>| {
        let [d, m] = [Mode::Discard, Mode::Maildir].map(|mode| {
            match (get(Impl::AsyncStd, mode), get(Impl::Smol, mode)) {
                (Some(a), Some(b)) if b != 0.0 => format!("{:.2}", a / b),
                _ => "-".into(),
            }
        });
        if d != "-" || m != "-" {
            let _ = writeln!(s, "| {what} | {d} | {m} |");
            rows += 1;
        }
    };
    for load in loads {
        row(&format!("{}: msg/s", load.key()), &|imp, mode| {
            med.get(&(load.key(), Target::new(imp, mode))).copied()
        });
    }
    for (kind, what) in [
        ("idle", "RSS per idle session"),
        ("big", "peak growth, big message"),
    ] {
        row(what, &|imp, mode| {
            mem.iter()
                .find(|f| f.kind == kind && f.target == Target::new(imp, mode))
                .map(|f| f.value)
        });
    }
    if rows == 0 { String::new() } else { s }
}

fn memory_table(mem: &[MemFigure], idle_n: usize, big_mib: usize) -> String {
    let mut targets: Vec<Target> = mem.iter().map(|f| f.target).collect();
    targets.sort_by_key(|t| Target::ALL.iter().position(|a| a == t));
    targets.dedup();
    let mut s = format!(
        "| server | RSS per idle session ({} after EHLO) | peak RSS growth, one {big_mib} MiB message |\n|---|--:|--:|\n",
        group(idle_n as f64)
    );
    for t in targets {
        let cell = |kind: &str| {
            mem.iter()
                .find(|f| f.kind == kind && f.target == t)
                .map_or_else(
                    || "-".to_string(),
                    |f| {
                        format!(
                            "{} ({} -> {} KiB)",
                            mem_label(f.value),
                            group(f.before_kib as f64),
                            group(f.after_kib as f64)
                        )
                    },
                )
        };
        let _ = writeln!(s, "| {} | {} | {} |", t.label(), cell("idle"), cell("big"));
    }
    s
}

/// The issue 6 targets, checked against the medians, in every connection mode run.
fn targets_check(med: &Medians, mem: &[MemFigure], loads: &[Load], modes: &[bool]) -> String {
    let mut s = String::new();
    let mut line = |ok: bool, text: String| {
        let mark = if ok { "met" } else { "MISSED" };
        let _ = writeln!(s, "- [{mark}] {text}");
    };
    let get = |key: &str, t: Target| med.get(&(key.to_string(), t)).copied();
    for &reuse in modes {
        let (a, b, how) = if reuse {
            ("a -d", "b -d", "smtp-source -d")
        } else {
            ("a", "b", "a connection per message")
        };
        let sink = get(a, Target::ALL[0]);
        for imp in [Impl::Smol, Impl::AsyncStd] {
            for (mode, want) in [(Mode::Discard, 1.0), (Mode::Maildir, 0.5)] {
                let t = Target::new(imp, mode);
                if let (Some(k), Some(v)) = (sink, get(a, t)) {
                    let r = v / k;
                    line(
                        r >= want,
                        format!(
                            "{}: {r:.3}x smtp-sink at 50 sessions, {how} (target {want:.1}x)",
                            t.label()
                        ),
                    );
                }
            }
            let t = Target::new(imp, Mode::Maildir);
            if let Some(v) = get(b, t) {
                line(
                    v >= 1000.0,
                    format!(
                        "{}: {} msg/s in one session, {how} (target 1,000)",
                        t.label(),
                        group(v)
                    ),
                );
            }
        }
    }
    for f in mem.iter().filter(|f| f.target.imp != Impl::Sink) {
        let (ok, what, limit) = match f.kind {
            "idle" => (f.value <= 2048.0, "per idle session", "2 KiB"),
            _ => (
                f.value <= 1024.0 * 1024.0,
                "peak growth for the big message",
                "1 MiB",
            ),
        };
        line(
            ok,
            format!(
                "{}: {} {what} (target at most {limit})",
                f.target.label(),
                mem_label(f.value)
            ),
        );
    }
    // Frontends within 10%, on every throughput figure and both memory figures.
    let mut gaps: Vec<(f64, String)> = Vec::new();
    for load in loads {
        for mode in [Mode::Discard, Mode::Maildir] {
            if let (Some(a), Some(b)) = (
                get(&load.key(), Target::new(Impl::AsyncStd, mode)),
                get(&load.key(), Target::new(Impl::Smol, mode)),
            ) {
                gaps.push(((a / b - 1.0).abs(), format!("{} {mode:?}", load.key())));
            }
        }
    }
    for kind in ["idle", "big"] {
        for mode in [Mode::Discard, Mode::Maildir] {
            let get = |imp| {
                mem.iter()
                    .find(|f| f.kind == kind && f.target == Target::new(imp, mode))
                    .map(|f| f.value)
            };
            if let (Some(a), Some(b)) = (get(Impl::AsyncStd), get(Impl::Smol)) {
                // Memory figures this small are dominated by page granularity; compare
                // them only where both are above 64 KiB or 1 KiB per session.
                let floor = if kind == "idle" { 1024.0 } else { 65_536.0 };
                if a.max(b) >= floor && b > 0.0 {
                    gaps.push(((a / b - 1.0).abs(), format!("{kind} {mode:?}")));
                }
            }
        }
    }
    if !gaps.is_empty() {
        let over: Vec<String> = gaps
            .iter()
            .filter(|g| g.0 > 0.10)
            .map(|g| format!("{} {:.0}%", g.1, g.0 * 100.0))
            .collect();
        let worst = gaps.iter().map(|g| g.0).fold(0.0, f64::max);
        line(
            over.is_empty(),
            format!(
                "frontends within 10% of each other: {} of {} figures apart by more (largest gap {:.0}%){}",
                over.len(),
                gaps.len(),
                worst * 100.0,
                if over.is_empty() {
                    String::new()
                } else {
                    format!(": {}", over.join(", "))
                }
            ),
        );
    }
    s
}

fn write_csv(path: &Path, date: &str, samples: &[Sample], mem: &[MemFigure]) -> io::Result<()> {
    let mut s = String::from(
        "date,server,load,sessions,messages,message_bytes,reuse_connection,rep,seconds,metric,value,unit,server_cpu_s,source_cpu_s,rss_before_kib,rss_after_kib\n",
    );
    for x in samples {
        let _ = writeln!(
            s,
            "{date},{},{},{},{},{},{},{},{:.3},throughput,{:.1},msg/s,{:.2},{:.2},,",
            x.target.id(),
            x.load.id,
            x.load.sessions,
            x.load.messages,
            x.load.bytes,
            if x.load.reuse { "yes" } else { "no" },
            x.rep + 1,
            x.secs,
            x.rate,
            x.server_cpu,
            x.source_cpu,
        );
    }
    for f in mem {
        let (load, metric, unit) = match f.kind {
            "idle" => ("idle", "rss_per_idle_session", "B"),
            _ => ("big", "peak_rss_growth", "B"),
        };
        let _ = writeln!(
            s,
            "{date},{},{load},,,,,1,,{metric},{:.0},{unit},,,{},{}",
            f.target.id(),
            f.value,
            f.before_kib,
            f.after_kib
        );
    }
    fs::write(path, s)
}

/// The medians of one curve point, by target.
fn curve_key(n: usize, reuse: bool) -> String {
    if reuse {
        format!("curve-{n} -d")
    } else {
        format!("curve-{n}")
    }
}

/// Hand-written SVG: messages/s against sessions (log scale), one line per server, one
/// panel per connection mode.
fn curve_svg(
    points: &[usize],
    targets: &[Target],
    med: &Medians,
    modes: &[bool],
    title: &str,
    subtitle: &str,
) -> String {
    let (w, panel_h) = (800.0, 400.0);
    let (left, right, head, top, bottom) = (80.0, 210.0, 50.0, 36.0, 56.0);
    let h = head + panel_h * modes.len() as f64;
    let (pw, ph) = (w - left - right, panel_h - top - bottom);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{left}" y="24" font-size="16" font-weight="bold">{}</text>"#,
        xml(title)
    );
    let _ = writeln!(
        s,
        r##"<text x="{left}" y="42" fill="#555">{}</text>"##,
        xml(subtitle)
    );
    let (lo, hi) = (
        (*points.first().unwrap_or(&1) as f64).log10(),
        (*points.last().unwrap_or(&1000) as f64).log10(),
    );
    let x = |n: usize| {
        if hi > lo {
            left + ((n as f64).log10() - lo) / (hi - lo) * pw
        } else {
            left + pw / 2.0
        }
    };
    for (p, &reuse) in modes.iter().enumerate() {
        let top = head + p as f64 * panel_h + top;
        let value = |n: usize, t: &Target| med.get(&(curve_key(n, reuse), *t)).copied();
        let max = points
            .iter()
            .flat_map(|&n| targets.iter().filter_map(move |t| value(n, t)))
            .fold(0.0_f64, f64::max)
            .max(1.0);
        let raw_step = max / 5.0;
        let mag = 10f64.powf(raw_step.log10().floor());
        let step = [1.0, 2.0, 2.5, 5.0, 10.0]
            .iter()
            .map(|m| m * mag)
            .find(|s| *s >= raw_step)
            .unwrap_or(10.0 * mag);
        let ymax = (max / step).ceil() * step;
        let y = |v: f64| top + ph - v / ymax * ph;
        let _ = writeln!(
            s,
            r#"<text x="{left}" y="{:.1}" font-size="13" font-weight="bold">{}</text>"#,
            top - 10.0,
            if reuse {
                "connections reused: smtp-source -d"
            } else {
                "a new connection for every message: smtp-source without -d"
            }
        );
        let mut v = 0.0;
        while v <= ymax + step / 2.0 {
            let yy = y(v);
            let _ = writeln!(
                s,
                r##"<line x1="{left}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
                left + pw,
                left - 8.0,
                yy + 4.0,
                group(v)
            );
            v += step;
        }
        for &n in points {
            let xx = x(n);
            let _ = writeln!(
                s,
                r##"<line x1="{xx:.1}" y1="{top}" x2="{xx:.1}" y2="{:.1}" stroke="#eee"/><text x="{xx:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
                top + ph,
                top + ph + 18.0,
                group(n as f64)
            );
        }
        let _ = writeln!(
            s,
            r##"<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>"##
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">parallel smtp-source sessions (log scale)</text>"#,
            left + pw / 2.0,
            top + ph + 38.0
        );
        let _ = writeln!(
            s,
            r#"<text transform="translate(20 {:.1}) rotate(-90)" text-anchor="middle">messages/s (median)</text>"#,
            top + ph / 2.0
        );
        for (i, t) in targets.iter().enumerate() {
            let color = match t.imp {
                Impl::Sink => "#222222",
                Impl::Smol => "#1f77b4",
                Impl::AsyncStd => "#d62728",
            };
            let dash = if t.mode == Mode::Maildir {
                r#" stroke-dasharray="7 4""#
            } else {
                ""
            };
            let pts: Vec<(f64, f64)> = points
                .iter()
                .filter_map(|&n| value(n, t).map(|v| (x(n), y(v))))
                .collect();
            if pts.is_empty() {
                continue;
            }
            let poly: Vec<String> = pts.iter().map(|(a, b)| format!("{a:.1},{b:.1}")).collect();
            let _ = writeln!(
                s,
                r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"{dash}/>"#,
                poly.join(" ")
            );
            for (a, b) in &pts {
                let _ = writeln!(
                    s,
                    r#"<circle cx="{a:.1}" cy="{b:.1}" r="3.5" fill="{color}"/>"#
                );
            }
            let ly = top + 10.0 + i as f64 * 22.0;
            let lx = left + pw + 16.0;
            let _ = writeln!(
                s,
                r#"<line x1="{lx}" y1="{ly}" x2="{:.1}" y2="{ly}" stroke="{color}" stroke-width="2"{dash}/><text x="{:.1}" y="{:.1}">{}</text>"#,
                lx + 28.0,
                lx + 36.0,
                ly + 4.0,
                xml(&t.label())
            );
        }
    }
    s.push_str("</svg>\n");
    s
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

// ---------------------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------------------

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("bench: {e}");
            ExitCode::from(2)
        }
    }
}

/// Runs everything; returns whether every run passed its checks.
fn run() -> Result<bool, String> {
    let o = parse_opts()?;
    let nofile = raise_nofile();
    let source = find_tool("smtp-source");
    let sink = find_tool("smtp-sink");
    let (Some(source), Some(sink)) = (source, sink) else {
        return Err(
            "smtp-source and smtp-sink not found; install Postfix (Debian: \
                    DEBIAN_FRONTEND=noninteractive apt-get install -y postfix)"
                .into(),
        );
    };
    if o.build {
        build(&o.root)?;
    }
    let bin_dir = target_dir(&o.root).join("release");
    for t in &o.targets {
        if t.imp != Impl::Sink && !bin_dir.join(t.imp.binary()).is_file() {
            return Err(format!(
                "{} not found; run `cargo build --release --workspace` first",
                bin_dir.join(t.imp.binary()).display()
            ));
        }
    }
    let tmp = o.tmp.join(format!("run-{}", std::process::id()));
    fs::create_dir_all(&tmp).map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
    fs::create_dir_all(&o.out).map_err(|e| format!("cannot create {}: {e}", o.out.display()))?;
    let max_curve = o.curve.iter().copied().max().unwrap_or(1);
    let env = Env {
        sink,
        source,
        bin_dir,
        tmp: tmp.clone(),
        sink_backlog: o.sink_backlog,
        sink_user: Uid::effective().is_root().then(|| o.sink_user.clone()),
        max_clients: (o.idle + 100).max(max_curve * 2).max(1000),
        max_size: (o.big_mib + 8) * 1024 * 1024,
        trash_limit: o.trash_limit_gib << 30,
    };
    if (o.idle + 64) as u64 > nofile || (max_curve * 2 + 64) as u64 > nofile {
        eprintln!(
            "bench: warning: the open-file limit is {nofile}; the idle or curve figures may fail"
        );
    }
    let marker = o.tmp.with_extension("deleted-at");
    let maildir_runs = o.targets.iter().any(|t| t.mode == Mode::Maildir)
        && o.loads
            .iter()
            .any(|l| ["a", "b", "c", "curve"].contains(&l.as_str()));
    if maildir_runs && o.wait {
        wait_after_deletion(&marker);
    }
    let (date, time) = utc_now();
    let result = measure(&o, &env, &date, &time);
    let _ = fs::remove_dir_all(&tmp);
    let _ = fs::remove_dir(&o.tmp);
    if TRASHED.load(Ordering::Relaxed) >= 10_000 {
        let _ = fs::write(&marker, format!("{}\n", now_secs()));
    }
    result
}

/// Files moved to the trash (and deleted at the end) by this run.
static TRASHED: AtomicU64 = AtomicU64::new(0);

/// How long ext4 without a journal keeps skipping freed inodes (RECENTCY_DIRTY).
const RECENTCY: u64 = 300;

/// Waits until the previous run's deleted messages no longer slow file creation (see
/// [`Running::clear_maildir`]).
fn wait_after_deletion(marker: &Path) {
    let Some(at) = fs::read_to_string(marker)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
    else {
        return;
    };
    let left = (at + RECENTCY).saturating_sub(now_secs());
    if left > 0 {
        eprintln!(
            "bench: the previous run deleted its stored messages {} s ago; waiting {left} s \
             so that ext4's reuse of freed inodes does not slow the Maildir runs (--no-wait to skip)",
            now_secs().saturating_sub(at)
        );
        thread::sleep(Duration::from_secs(left));
    }
}

fn measure(o: &Opts, env: &Env, date: &str, time: &str) -> Result<bool, String> {
    let q = o.quick;
    let k4 = 4096;
    let mut loads: Vec<Load> = Vec::new();
    let scaled = |n: usize| ((n as f64 * o.scale).round() as usize).max(1);
    let fixed = [
        ("a", 50, scaled(20_000), k4),
        ("b", 1, scaled(5_000), k4),
        ("c", 50, scaled(2_000), 100 * 1024),
    ];
    for (id, sessions, messages, bytes) in fixed {
        if o.loads.iter().any(|l| l == id) {
            for &reuse in &o.modes {
                loads.push(Load {
                    id: id.into(),
                    sessions,
                    messages,
                    bytes,
                    reuse,
                });
            }
        }
    }
    let mut curve_loads: Vec<Load> = Vec::new();
    if o.loads.iter().any(|l| l == "curve") {
        for &n in &o.curve {
            for &reuse in &o.modes {
                curve_loads.push(Load {
                    id: format!("curve-{n}"),
                    sessions: n,
                    messages: o.curve_messages.max(n),
                    bytes: k4,
                    reuse,
                });
            }
        }
    }
    let throughput_targets = o.targets.clone();
    let mut header = String::new();
    let _ = writeln!(
        header,
        "## Benchmark, {date} {time} UTC{}\n",
        if q { " (quick smoke run)" } else { "" }
    );
    let _ = writeln!(
        header,
        "- machine: {} cores, {}; smtp-source shares it",
        thread::available_parallelism().map_or(0, |n| n.get()),
        fs::read_to_string("/proc/loadavg")
            .map(|l| format!(
                "load average at start {}",
                l.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
            ))
            .unwrap_or_default()
    );
    for &reuse in &o.modes {
        let flags = source_args(&Load {
            id: String::new(),
            sessions: 0,
            messages: 0,
            bytes: 0,
            reuse,
        })
        .join(" ")
        .replace("-s 0 -m 0 -l 0", "-s SESSIONS -m MESSAGES -l BYTES");
        let how = if reuse {
            "several messages per connection"
        } else {
            "a new connection (greeting, HELO, MAIL, RCPT, DATA, QUIT) for every message"
        };
        let _ = writeln!(header, "- load: smtp-source {flags} 127.0.0.1:PORT ({how})");
    }
    let sink_flags = format!(
        "smtp-sink -c -m {}{} 127.0.0.1:PORT {}",
        env.max_clients,
        env.sink_user
            .as_ref()
            .map(|u| format!(" -u {u}"))
            .unwrap_or_default(),
        env.sink_backlog
    );
    let _ = writeln!(header, "- reference: {sink_flags}");
    let _ = writeln!(
        header,
        "- ours: `--config FILE` with GSMTP_STORAGE=discard, or GSMTP_STORAGE=maildir with GSMTP_FSYNC=Y \
         (Maildir under {}), GM_MAX_CLIENTS={}, GM_MAX_CLIENTS_PER_IP=0 (every load comes from one address), GSMTP_MAX_SIZE={}, GSMTP_LOG_FILE=a temp file",
        env.tmp.display(),
        env.max_clients,
        env.max_size
    );
    let _ = writeln!(
        header,
        "- each figure: median of the repetitions, runs alternating between the servers; \
         every run checked (smtp-source exit status and count, the server's count, the files in new/)"
    );

    let mut samples: Vec<Sample> = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    if !loads.is_empty() || !curve_loads.is_empty() {
        let mut servers = Vec::new();
        for t in &throughput_targets {
            let r = Running::start(env, *t, &t.id())?;
            eprintln!(
                "bench: started {} on port {} (pid {}): {}",
                t.label(),
                r.port,
                r.pid(),
                r.command
            );
            servers.push(r);
        }
        let plan: Vec<(&Load, usize)> = loads
            .iter()
            .map(|l| (l, o.reps))
            .chain(curve_loads.iter().map(|l| (l, o.curve_reps)))
            .collect();
        for (load, reps) in plan {
            for rep in 0..reps {
                for srv in servers.iter_mut() {
                    // A short pause so that one run's closing connections and syncs do not
                    // overlap the next.
                    thread::sleep(Duration::from_millis(300));
                    if let Some(death) = srv.exited() {
                        let msg = format!(
                            "{} had exited before {} rep {}: {death}; restarted",
                            srv.target.label(),
                            load.key(),
                            rep + 1
                        );
                        eprintln!("bench: FAILED {msg}");
                        failures.push(msg);
                        let target = srv.target;
                        *srv = Running::start(env, target, &format!("{}-{}", target.id(), rep))?;
                    }
                    match run_load(env, srv, load, o.run_timeout) {
                        Ok((secs, server_cpu, source_cpu)) => {
                            let rate = load.messages as f64 / secs;
                            eprintln!(
                                "bench: {:<14} rep {}/{reps} {:<24} {:>9} msg/s  {:7.2} s  server cpu {:6.2} s  smtp-source cpu {:6.2} s",
                                load.key(),
                                rep + 1,
                                srv.target.label(),
                                group(rate),
                                secs,
                                server_cpu,
                                source_cpu
                            );
                            samples.push(Sample {
                                target: srv.target,
                                load: load.clone(),
                                rep,
                                secs,
                                rate,
                                server_cpu,
                                source_cpu,
                            });
                        }
                        Err(e) => {
                            let msg = format!(
                                "{} rep {} {}: {e}",
                                load.key(),
                                rep + 1,
                                srv.target.label()
                            );
                            eprintln!("bench: FAILED {msg}");
                            failures.push(msg);
                            // Clean up whatever the failed run left.
                            if let Some(m) = &srv.maildir {
                                let (new, tmp) = maildir_files(m);
                                let _ = srv.clear_maildir(new, env.trash_limit);
                                for f in tmp {
                                    let _ = fs::remove_file(f);
                                }
                            }
                        }
                    }
                }
            }
        }
        for s in servers {
            s.stop();
        }
    }

    let mut mem: Vec<MemFigure> = Vec::new();
    if o.loads.iter().any(|l| l == "idle") {
        // Storage plays no part in an idle session: each implementation once, discarding.
        let mut imps: Vec<Impl> = o.targets.iter().map(|t| t.imp).collect();
        imps.sort();
        imps.dedup();
        for imp in imps {
            let t = Target::new(imp, Mode::Discard);
            match idle_memory(env, t, o.idle) {
                Ok(f) => {
                    eprintln!(
                        "bench: idle   {:<24} {} per session ({} -> {} KiB with {} sessions)",
                        t.label(),
                        mem_label(f.value),
                        f.before_kib,
                        f.after_kib,
                        o.idle
                    );
                    mem.push(f);
                }
                Err(e) => {
                    let msg = format!("idle {}: {e}", t.label());
                    eprintln!("bench: FAILED {msg}");
                    failures.push(msg);
                }
            }
            thread::sleep(Duration::from_secs(1));
        }
    }
    if o.loads.iter().any(|l| l == "big") {
        for t in &o.targets {
            match big_memory(env, *t, o.big_mib) {
                Ok(f) => {
                    eprintln!(
                        "bench: big    {:<24} peak growth {} ({} KiB before, VmHWM {} KiB; {})",
                        t.label(),
                        mem_label(f.value),
                        f.before_kib,
                        f.after_kib,
                        f.note
                    );
                    mem.push(f);
                }
                Err(e) => {
                    let msg = format!("big {}: {e}", t.label());
                    eprintln!("bench: FAILED {msg}");
                    failures.push(msg);
                }
            }
        }
    }

    // Reports.
    let med = medians(&samples);
    let all_loads: Vec<Load> = loads.iter().chain(curve_loads.iter()).cloned().collect();
    let suffix = if q { "-quick" } else { "" };
    let csv = o.out.join(format!("{date}{suffix}.csv"));
    write_csv(&csv, date, &samples, &mem)
        .map_err(|e| format!("cannot write {}: {e}", csv.display()))?;
    let mut report = header;
    report.push('\n');
    for &reuse in &o.modes {
        let these: Vec<Load> = all_loads
            .iter()
            .filter(|l| l.reuse == reuse)
            .cloned()
            .collect();
        if samples.iter().any(|x| x.load.reuse == reuse) {
            let _ = writeln!(
                report,
                "### Throughput, {}: messages/s, median (ratio to smtp-sink)\n\n{}",
                if reuse {
                    "connections reused (smtp-source -d)"
                } else {
                    "a new connection per message (smtp-source without -d)"
                },
                throughput_table(&these, &throughput_targets, &samples, &med)
            );
        }
    }
    if !mem.is_empty() {
        let _ = writeln!(
            report,
            "### Memory (VmRSS from /proc; idle: growth over the baseline divided by the sessions; big: VmHWM after minus VmRSS before)\n\n{}",
            memory_table(&mem, o.idle, o.big_mib)
        );
    }
    let parity = parity_table(&all_loads, &med, &mem);
    if !parity.is_empty() {
        let _ = writeln!(report, "### Frontend parity\n\n{parity}");
    }
    let checks = targets_check(&med, &mem, &all_loads, &o.modes);
    if !checks.is_empty() {
        let _ = writeln!(report, "### Issue 6 targets\n\n{checks}");
    }
    let _ = writeln!(report, "CSV: {}", csv.display());
    if !curve_loads.is_empty() {
        let svg_path = o.out.join(format!("curve{suffix}.svg"));
        let svg = curve_svg(
            &o.curve,
            &throughput_targets,
            &med,
            &o.modes,
            "Messages/s vs parallel sessions, 4 KiB messages",
            &format!(
                "{date}, median of {}, {} messages per point (or one per session)",
                o.curve_reps,
                group(o.curve_messages as f64),
            ),
        );
        fs::write(&svg_path, svg)
            .map_err(|e| format!("cannot write {}: {e}", svg_path.display()))?;
        let _ = writeln!(report, "Chart: {}", svg_path.display());
    }
    if !failures.is_empty() {
        let _ = writeln!(report, "\n### Failed runs (not counted)\n");
        for f in &failures {
            let _ = writeln!(report, "- {f}");
        }
    }
    println!("{report}");
    Ok(failures.is_empty())
}
