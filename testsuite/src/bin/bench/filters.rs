//! The content filters' cost (issue 19): `guerrilla-smol` asking a private rspamd 3.4
//! over HTTP (`GSMTP_RSPAMD_URL`) next to the same binary without filters, and next to
//! Postfix's `smtpd` asking the same rspamd as a milter (its proxy worker), in one run,
//! alternating. 50 sessions, connections reused, 4 KiB plain messages (rspamd says
//! `no action`); every server stores to a Maildir: ours durably (`GSMTP_FSYNC=Y`),
//! Postfix through its queue (fsynced before `250`) and `virtual(8)`.
//!
//! Each session names its client `192.0.2.25` by XCLIENT (both servers allow it from
//! loopback), so rspamd checks it as a remote client rather than skipping the checks it
//! skips for local ones; its DNS is the private dnsmasq of [`Zones`].
//!
//! Every run is checked: every message answered `250`; ours counted it in its log and
//! stored as many files, and with rspamd a stored message carries our `X-Spam-Status`;
//! Postfix delivered as many files to its Maildir; rspamd logged one scan per message
//! when it was asked, and none when it was not. Besides the rate, each run gives the
//! server's CPU time per message and rspamd's (from `/proc/<pid>/stat`, the process and
//! its children, those that exited included).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::{Group, Pid, Uid, User, chown};
use testsuite::interop::{Rspamd, Zones, text};

use crate::loads::{drive, maildir_files};
use crate::opts::{Impl, Mode, Opts, Target};
use crate::report::{group, median};
use crate::servers::{Env, Running, find_tool, now_secs};

/// Sessions at once.
const SESSIONS: usize = 50;
/// The client every session names by XCLIENT: a documentation address, so that rspamd
/// does not treat it as local.
const CLIENT_IP: &str = "192.0.2.25";
/// The envelope sender (no records in the private zones: SPF and DMARC find nothing).
const SENDER: &str = "a@example.net";
/// The recipient; `example.com` is Postfix's virtual mailbox domain.
const RECIPIENT: &str = "u@example.com";

/// The three servers, in the table's order.
const SERVERS: [&str; 3] = [OURS, OURS_RSPAMD, POSTFIX];
/// Ours without filters.
const OURS: &str = "ours, no filter";
/// Ours asking rspamd over HTTP.
const OURS_RSPAMD: &str = "ours + rspamd (HTTP)";
/// Postfix's smtpd asking rspamd as a milter.
const POSTFIX: &str = "Postfix smtpd + rspamd (milter)";

/// The message: plain headers and about 4 KiB of numbered lines, no rspamd marker.
fn message() -> Vec<u8> {
    let mut m = text("Bench <a@example.net>", "bench", "");
    for i in 0..52 {
        m.extend_from_slice(format!("{i:04} {}\r\n", "abcdefghij".repeat(7)).as_bytes());
    }
    m
}

/// One figure: a server, one repetition.
#[derive(Clone, Debug)]
struct Figure {
    server: &'static str,
    rep: usize,
    /// Messages per second, until the last one was stored.
    rate: f64,
    /// Messages per second, until the last `250` (the same as `rate` for ours).
    accepted_rate: f64,
    /// The server's CPU time per message, in microseconds.
    cpu_us: f64,
    /// rspamd's CPU time per message, in microseconds.
    rspamd_us: f64,
}

/// A server under test.
enum Server<'a> {
    /// Ours; whether it asks rspamd.
    Ours(&'a Running, bool),
    Postfix(&'a Postfix),
}

impl Server<'_> {
    fn addr(&self) -> SocketAddr {
        match self {
            Self::Ours(r, _) => r.addr(),
            Self::Postfix(p) => p.addr(),
        }
    }

    fn filtered(&self) -> bool {
        !matches!(self, Self::Ours(_, false))
    }

    /// CPU microseconds so far of the server and every process under it.
    fn cpu_us(&self) -> Result<f64, String> {
        match self {
            Self::Ours(r, _) => tree_cpu_us(r.pid()),
            Self::Postfix(p) => tree_cpu_us(p.master_pid()?),
        }
    }
}

/// Runs the comparison; prints the report and writes a CSV. Returns whether every run
/// passed its checks.
pub(crate) fn run(o: &Opts, env: &Env, date: &str) -> Result<bool, String> {
    let spread = spread(&env.tmp);
    let zones = Zones::start();
    let rspamd = Rspamd::start(zones.addr);
    let rspamd_pid = rspamd_main_pid()?;
    let mut rspamd_log = LogCounter::new(rspamd.dir().join("rspamd.log"));
    let message = Arc::new(message());
    let messages = o.filter_messages;
    let target = Target {
        imp: Impl::Smol,
        mode: Mode::Maildir,
    };
    let xclient = ("GSMTP_XCLIENT_HOSTS", "127.0.0.1".to_string());
    let off = Running::start_with(env, target, "filters-off", std::slice::from_ref(&xclient))?;
    let on = Running::start_with(
        env,
        target,
        "filters-rspamd",
        &[
            xclient.clone(),
            ("GSMTP_RSPAMD_URL", format!("http://{}", rspamd.http)),
        ],
    )?;
    let mut failures = Vec::new();
    let (postfix, skipped) = match Postfix::start(&env.tmp.join("filters-postfix"), rspamd.milter) {
        Ok(Ok(p)) => {
            eprintln!(
                "bench: started Postfix on port {} (master pid {})",
                p.port,
                p.master_pid().unwrap_or(0)
            );
            (Some(p), None)
        }
        Ok(Err(why)) => {
            eprintln!("bench: Postfix skipped: {why}");
            (None, Some(why))
        }
        Err(e) => {
            eprintln!("bench: FAILED Postfix: {e}");
            failures.push(format!("Postfix: {e}"));
            (None, None)
        }
    };
    let mut servers: Vec<(&'static str, Server<'_>)> = vec![
        (OURS, Server::Ours(&off, false)),
        (OURS_RSPAMD, Server::Ours(&on, true)),
    ];
    if let Some(p) = &postfix {
        servers.push((POSTFIX, Server::Postfix(p)));
    }
    // Warm up every server (its first connections, rspamd's first scans).
    for (name, srv) in &servers {
        if let Err(e) = load(srv, &message, SESSIONS, rspamd_pid, &mut rspamd_log) {
            failures.push(format!("{name} warm-up: {e}"));
        }
    }
    let mut figures = Vec::new();
    for rep in 0..o.reps {
        for (name, srv) in &servers {
            // A short pause so that one run's closing connections and syncs do not
            // overlap the next.
            thread::sleep(Duration::from_millis(300));
            match load(srv, &message, messages, rspamd_pid, &mut rspamd_log) {
                Ok(f) => {
                    eprintln!(
                        "bench: filters {name:<32} rep {}/{}: {:>6} msg/s ({} msg/s accepted), server {:.0} us CPU/msg, rspamd {:.0} us CPU/msg",
                        rep + 1,
                        o.reps,
                        group(f.rate),
                        group(f.accepted_rate),
                        f.cpu_us,
                        f.rspamd_us
                    );
                    figures.push(Figure {
                        server: name,
                        rep,
                        ..f
                    });
                }
                Err(e) => {
                    eprintln!("bench: FAILED filters {name} rep {}: {e}", rep + 1);
                    failures.push(format!("{name} rep {}: {e}", rep + 1));
                }
            }
        }
    }
    drop(servers);
    off.stop();
    on.stop();
    if let Some(p) = postfix {
        p.stop();
    }
    println!(
        "{}",
        report(
            &figures,
            messages,
            o.reps,
            skipped.as_deref(),
            spread.as_ref().err().map(String::as_str),
            &failures
        )
    );
    let csv = o.out.join(format!("{date}-filters.csv"));
    let mut text = String::from(
        "date,server,rep,messages_per_s,accepted_per_s,server_cpu_us_per_message,rspamd_cpu_us_per_message\n",
    );
    for f in &figures {
        let _ = writeln!(
            text,
            "{date},{},{},{:.1},{:.1},{:.1},{:.1}",
            f.server,
            f.rep + 1,
            f.rate,
            f.accepted_rate,
            f.cpu_us,
            f.rspamd_us
        );
    }
    fs::write(&csv, text).map_err(|e| format!("cannot write {}: {e}", csv.display()))?;
    println!("CSV: {}", csv.display());
    Ok(failures.is_empty())
}

/// Marks `dir` as the top of a hierarchy (`chattr +T`), so that ext4 puts each server's
/// folder in its own block group, and the inodes Postfix frees (a queue file per message)
/// do not slow the creation of our Maildir files: ext4 without a journal, as here, skips
/// recently freed inodes one by one when it allocates in their group (see
/// [`Running::clear_maildir`]).
fn spread(dir: &Path) -> Result<(), String> {
    let out = Command::new("chattr")
        .arg("+T")
        .arg(dir)
        .output()
        .map_err(|e| format!("cannot run chattr: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "chattr +T {}: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Sends `n` messages over [`SESSIONS`] reused connections to `srv`, waits until all are
/// stored, and checks them (see the module's text); moves them aside. Returns the figure
/// (without its server and repetition).
fn load(
    srv: &Server<'_>,
    message: &Arc<Vec<u8>>,
    n: usize,
    rspamd_pid: u32,
    rspamd_log: &mut LogCounter,
) -> Result<Figure, String> {
    let before = match srv {
        Server::Ours(r, _) => r.accepted_count().unwrap_or(0),
        Server::Postfix(_) => 0,
    };
    let scans0 = rspamd_log.count();
    let cpu0 = srv.cpu_us()?;
    let rspamd0 = tree_cpu_us(rspamd_pid)?;
    let started = Instant::now();
    let xclient = format!("XCLIENT ADDR={CLIENT_IP} NAME=client.example HELO=client.example");
    drive(
        srv.addr(),
        SESSIONS,
        n,
        message,
        (SENDER, RECIPIENT),
        Some(&xclient),
    )?;
    let accepted = started.elapsed().as_secs_f64();
    let (maildir, stored) = match srv {
        Server::Ours(r, _) => {
            let counted = r.accepted_count().unwrap_or(0) - before;
            if counted != n as u64 {
                return Err(format!("{counted} of {n} messages counted in the log"));
            }
            (r.maildir.clone().ok_or("no Maildir")?, accepted)
        }
        Server::Postfix(p) => {
            // Postfix answers once the queue file is safe; delivery follows.
            let limit = Instant::now() + Duration::from_secs(120 + n as u64 / 20);
            let new = p.maildir.join("new");
            loop {
                let count = fs::read_dir(&new).map_or(0, Iterator::count);
                if count >= n {
                    break;
                }
                if Instant::now() > limit {
                    return Err(format!("Postfix delivered {count} of {n} in time"));
                }
                thread::sleep(Duration::from_millis(20));
            }
            (p.maildir.clone(), started.elapsed().as_secs_f64())
        }
    };
    let cpu = srv.cpu_us()? - cpu0;
    // rspamd logs each scan once done; its log may trail the reply a little.
    let expect_scans = if srv.filtered() { n as u64 } else { 0 };
    let limit = Instant::now() + Duration::from_secs(10);
    let since = |(a, b): (u64, u64)| (a - scans0.0, b - scans0.1);
    let mut scans = since(rspamd_log.count());
    while scans.0 < expect_scans && Instant::now() < limit {
        thread::sleep(Duration::from_millis(50));
        scans = since(rspamd_log.count());
    }
    let rspamd_cpu = tree_cpu_us(rspamd_pid)? - rspamd0;
    if scans != (expect_scans, expect_scans) {
        return Err(format!(
            "rspamd logged {} scans, {} of them `no action`, for {n} messages (expected {expect_scans})",
            scans.0, scans.1
        ));
    }
    let (new, tmp) = maildir_files(&maildir);
    if new.len() != n || !tmp.is_empty() {
        return Err(format!(
            "{} stored, {} in tmp/, of {n}",
            new.len(),
            tmp.len()
        ));
    }
    let sample = new
        .first()
        .and_then(|f| fs::read(f).ok())
        .unwrap_or_default();
    let sample = String::from_utf8_lossy(&sample);
    let head = sample
        .split("\r\n\r\n")
        .next()
        .and_then(|h| h.split("\n\n").next())
        .unwrap_or_default();
    match srv {
        Server::Ours(r, rspamd) => {
            let verdict =
                head.contains("X-Spam-Status: No, score=") && head.contains("action=\"no action\"");
            if verdict != *rspamd {
                return Err(format!("a stored message, rspamd {rspamd}:\n{head}"));
            }
            r.clear_maildir(new, 8 << 30)?;
        }
        Server::Postfix(p) => {
            if !head.contains("Subject: bench") {
                return Err(format!("a stored message:\n{head}"));
            }
            p.clear_maildir(new)?;
        }
    }
    Ok(Figure {
        server: "",
        rep: 0,
        rate: n as f64 / stored,
        accepted_rate: n as f64 / accepted,
        cpu_us: cpu / n as f64,
        rspamd_us: rspamd_cpu / n as f64,
    })
}

// ---------------------------------------------------------------------------------------
// CPU time
// ---------------------------------------------------------------------------------------

/// A process's parent and CPU times in clock ticks: its own (user and system) and its
/// waited-for children's.
fn stat(pid: u32) -> Option<(u32, f64, f64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command's closing parenthesis: the state, the parent's pid,
    // ... utime, stime, cutime and cstime are the 12th to the 15th of them.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let ppid = f.get(1)?.parse().ok()?;
    Some((ppid, num(11) + num(12), num(13) + num(14)))
}

/// The CPU time so far of `root` and every process under it, those that exited and were
/// waited for included (their times are in their parent's children's times), in
/// microseconds.
fn tree_cpu_us(root: u32) -> Result<f64, String> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for entry in fs::read_dir("/proc").map_err(|e| e.to_string())?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse().ok()) else {
            continue;
        };
        if let Some((ppid, _, _)) = stat(pid) {
            children.entry(ppid).or_default().push(pid);
        }
    }
    let (_, own, waited) = stat(root).ok_or_else(|| format!("process {root} is gone"))?;
    let mut ticks = own + waited;
    let mut stack = children.get(&root).cloned().unwrap_or_default();
    while let Some(pid) = stack.pop() {
        if let Some((_, own, waited)) = stat(pid) {
            ticks += own + waited;
        }
        stack.extend(children.get(&pid).into_iter().flatten());
    }
    // USER_HZ is 100 on Linux.
    Ok(ticks * 10_000.0)
}

/// rspamd's main process: the child of this one running rspamd (its workers are its
/// children).
fn rspamd_main_pid() -> Result<u32, String> {
    let me = std::process::id();
    fs::read_dir("/proc")
        .map_err(|e| e.to_string())?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .find(|&pid| {
            stat(pid).is_some_and(|(ppid, _, _)| ppid == me)
                && fs::read_link(format!("/proc/{pid}/exe"))
                    .is_ok_and(|exe| exe.file_name().is_some_and(|n| n == "rspamd"))
        })
        .ok_or_else(|| "rspamd's main process not found".into())
}

/// Counts rspamd's scans in its log (one `rspamd_task_write_log` line per message) and
/// those among them that ended in `no action`, reading on from where the last call
/// stopped.
struct LogCounter {
    path: PathBuf,
    offset: u64,
    count: (u64, u64),
    /// A line not yet ended.
    partial: Vec<u8>,
}

impl LogCounter {
    fn new(path: PathBuf) -> Self {
        let offset = fs::metadata(&path).map_or(0, |m| m.len());
        Self {
            path,
            offset,
            count: (0, 0),
            partial: Vec::new(),
        }
    }

    fn count(&mut self) -> (u64, u64) {
        let Ok(mut f) = fs::File::open(&self.path) else {
            return self.count;
        };
        if f.seek(SeekFrom::Start(self.offset)).is_err() {
            return self.count;
        }
        let mut new = Vec::new();
        if f.read_to_end(&mut new).is_err() {
            return self.count;
        }
        self.offset += new.len() as u64;
        self.partial.extend_from_slice(&new);
        let whole = self
            .partial
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        let has = |l: &[u8], needle: &[u8]| l.windows(needle.len()).any(|w| w == needle);
        for line in self.partial[..whole].split(|&b| b == b'\n') {
            if has(line, b"rspamd_task_write_log") {
                self.count.0 += 1;
                self.count.1 += u64::from(has(line, b"(no action)"));
            }
        }
        self.partial.drain(..whole);
        self.count
    }
}

// ---------------------------------------------------------------------------------------
// Postfix
// ---------------------------------------------------------------------------------------

/// A private Postfix instance: its own configuration, queue and data directories under
/// `dir`, smtpd on a free loopback port asking rspamd's milter, delivering every message
/// for `example.com` to one Maildir by `virtual(8)`.
struct Postfix {
    dir: PathBuf,
    conf: PathBuf,
    port: u16,
    /// The Maildir `virtual(8)` delivers to.
    maildir: PathBuf,
    /// Runs moved aside so far.
    trash: std::cell::Cell<u64>,
}

/// The services of the private instance: no chroot, smtpd on `port` only.
fn master_cf(port: u16) -> String {
    let services = [
        (format!("127.0.0.1:{port}"), "inet", "n", "-", "-", "smtpd"),
        ("pickup".into(), "unix", "n", "60", "1", "pickup"),
        ("cleanup".into(), "unix", "n", "-", "0", "cleanup"),
        ("qmgr".into(), "unix", "n", "300", "1", "qmgr"),
        ("rewrite".into(), "unix", "-", "-", "-", "trivial-rewrite"),
        ("bounce".into(), "unix", "-", "-", "0", "bounce"),
        ("defer".into(), "unix", "-", "-", "0", "bounce"),
        ("trace".into(), "unix", "-", "-", "0", "bounce"),
        ("verify".into(), "unix", "-", "-", "1", "verify"),
        ("flush".into(), "unix", "n", "1000?", "0", "flush"),
        ("proxymap".into(), "unix", "-", "-", "-", "proxymap"),
        ("smtp".into(), "unix", "-", "-", "-", "smtp"),
        ("showq".into(), "unix", "n", "-", "-", "showq"),
        ("error".into(), "unix", "-", "-", "-", "error"),
        ("retry".into(), "unix", "-", "-", "-", "error"),
        ("discard".into(), "unix", "-", "-", "-", "discard"),
        ("virtual".into(), "unix", "-", "-", "-", "virtual"),
        ("anvil".into(), "unix", "-", "-", "1", "anvil"),
        ("scache".into(), "unix", "-", "-", "1", "scache"),
        ("postlog".into(), "unix-dgram", "n", "-", "1", "postlogd"),
    ];
    // service type private unpriv chroot wakeup maxproc command
    services
        .iter()
        .map(|(name, kind, private, wakeup, maxproc, command)| {
            let unpriv = if *command == "virtual" { "n" } else { "-" };
            format!("{name} {kind} {private} {unpriv} n {wakeup} {maxproc} {command}\n")
        })
        .collect()
}

impl Postfix {
    /// Writes the configuration and starts the instance; `Ok(Err(why))` when it cannot
    /// run here (not root, or no `postfix` user or `postdrop` group).
    fn start(dir: &Path, milter: SocketAddr) -> Result<Result<Self, String>, String> {
        if !Uid::effective().is_root() {
            return Ok(Err("a private Postfix instance needs root".into()));
        }
        let Some(user) = User::from_name("postfix").ok().flatten() else {
            return Ok(Err("no user postfix".into()));
        };
        if Group::from_name("postdrop").ok().flatten().is_none() {
            return Ok(Err("no group postdrop".into()));
        }
        let Some(postfix) = find_tool("postfix") else {
            return Ok(Err("no postfix command".into()));
        };
        let _ = fs::remove_dir_all(dir);
        let conf = dir.join("conf");
        let (queue, data, mail) = (dir.join("queue"), dir.join("data"), dir.join("mail"));
        for d in [&conf, &queue, &data, &mail] {
            fs::create_dir_all(d).map_err(|e| format!("cannot create {}: {e}", d.display()))?;
        }
        for d in [&data, &mail] {
            chown(d, Some(user.uid), Some(user.gid))
                .map_err(|e| format!("cannot chown {}: {e}", d.display()))?;
        }
        let port = free_port();
        let d = dir.display();
        let main_cf = format!(
            "compatibility_level = 3.6
queue_directory = {d}/queue
data_directory = {d}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix.bench.example
mydomain = bench.example
myorigin = $myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_authorized_xclient_hosts = 127.0.0.1
virtual_mailbox_domains = example.com
virtual_mailbox_base = {d}/mail
virtual_mailbox_maps = static:Maildir/
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{gid}
alias_maps =
alias_database =
local_recipient_maps =
biff = no
maillog_file = {d}/maillog
maillog_file_prefixes = {d}
smtpd_milters = inet:{milter}
milter_default_action = tempfail
milter_protocol = 6
smtpd_client_connection_rate_limit = 0
smtpd_client_connection_count_limit = 0
default_process_limit = 100
smtpd_tls_security_level = none
smtp_tls_security_level = none
",
            uid = user.uid,
            gid = user.gid,
        );
        fs::write(conf.join("main.cf"), main_cf).map_err(|e| e.to_string())?;
        fs::write(conf.join("master.cf"), master_cf(port)).map_err(|e| e.to_string())?;
        let p = Self {
            dir: dir.to_path_buf(),
            conf,
            port,
            maildir: mail.join("Maildir"),
            trash: std::cell::Cell::new(0),
        };
        let out = Command::new(&postfix)
            .arg("-c")
            .arg(&p.conf)
            .arg("start")
            .output()
            .map_err(|e| format!("cannot run postfix: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "postfix -c {} start: {}\n{}{}",
                p.conf.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr),
                p.log_tail()
            ));
        }
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            if greets(p.addr()) {
                break;
            }
            if Instant::now() > end {
                return Err(format!(
                    "Postfix's smtpd did not answer on {}\n{}",
                    p.addr(),
                    p.log_tail()
                ));
            }
            thread::sleep(Duration::from_millis(100));
        }
        Ok(Ok(p))
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The master process, from its pid file.
    fn master_pid(&self) -> Result<u32, String> {
        let path = self.dir.join("queue/pid/master.pid");
        fs::read_to_string(&path)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| format!("no pid in {}", path.display()))
    }

    /// The end of its log.
    fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.dir.join("maillog")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }

    /// Moves the delivered messages into a trash folder (see [`Running::clear_maildir`]).
    fn clear_maildir(&self, files: Vec<PathBuf>) -> Result<(), String> {
        self.trash.set(self.trash.get() + 1);
        let dir = self.dir.join("trash").join(self.trash.get().to_string());
        fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        for (i, f) in files.iter().enumerate() {
            fs::rename(f, dir.join(i.to_string()))
                .map_err(|e| format!("cannot move {}: {e}", f.display()))?;
        }
        Ok(())
    }

    /// `postfix stop`; kills the master if it is still there after 15 s; removes `dir`.
    fn stop(self) {
        drop(self);
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let master = self.master_pid().ok();
        if let Some(postfix) = find_tool("postfix") {
            let _ = Command::new(postfix)
                .arg("-c")
                .arg(&self.conf)
                .arg("stop")
                .output();
        }
        if let Some(pid) = master {
            let pid = Pid::from_raw(pid as i32);
            let end = Instant::now() + Duration::from_secs(15);
            while kill(pid, None).is_ok() && Instant::now() < end {
                thread::sleep(Duration::from_millis(50));
            }
            let _ = kill(pid, Signal::SIGKILL);
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Whether an SMTP server at `addr` greets with `220`.
fn greets(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(300)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = [0u8; 512];
    let ok = s.read(&mut buf).is_ok_and(|n| buf[..n].starts_with(b"220"));
    let _ = std::io::Write::write_all(&mut s, b"QUIT\r\n");
    ok
}

/// A free loopback port below the ephemeral range (so no client socket takes it).
fn free_port() -> u16 {
    let seed = u64::from(std::process::id()) * 7919 + now_secs() % 1000 + 5003;
    (0..12_000u64)
        .map(|n| 20_000 + ((seed + n * 41) % 12_000) as u16)
        .find(|&port| TcpListener::bind(("127.0.0.1", port)).is_ok())
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------

/// The markdown report: per server, the median rate, the ratio to ours without filters,
/// and the CPU per message of the server and of rspamd; then the two ratios issue 19
/// asks for.
fn report(
    figures: &[Figure],
    messages: usize,
    reps: usize,
    skipped: Option<&str>,
    spread: Option<&str>,
    failures: &[String],
) -> String {
    let pick = |server: &str, f: fn(&Figure) -> f64| {
        let v: Vec<f64> = figures
            .iter()
            .filter(|x| x.server == server)
            .map(f)
            .collect();
        median(&v)
    };
    let mut s = String::new();
    let _ = writeln!(
        s,
        "### Content filters: {SESSIONS} sessions x {} 4 KiB messages, connections reused; median of {reps} reps\n",
        group(messages as f64)
    );
    let _ = writeln!(
        s,
        "| server | msg/s | ratio to ours, no filter | server CPU/msg | rspamd CPU/msg |"
    );
    let _ = writeln!(s, "|---|--:|--:|--:|--:|");
    let base = pick(OURS, |f| f.rate);
    for server in SERVERS {
        let Some(rate) = pick(server, |f| f.rate) else {
            let why = if server == POSTFIX {
                skipped.unwrap_or("failed")
            } else {
                "failed"
            };
            let _ = writeln!(s, "| {server} | {why} | | | |");
            continue;
        };
        let ratio = base.map_or_else(|| "-".into(), |b| format!("{:.2}x", rate / b));
        let cpu = pick(server, |f| f.cpu_us).unwrap_or(0.0);
        let rspamd = pick(server, |f| f.rspamd_us).unwrap_or(0.0);
        let _ = writeln!(
            s,
            "| {server} | {} | {ratio} | {cpu:.0} us | {rspamd:.0} us |",
            group(rate)
        );
    }
    let on = pick(OURS_RSPAMD, |f| f.rate);
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => format!("{:.2}x", a / b),
        _ => "-".into(),
    };
    let _ = writeln!(
        s,
        "\nours + rspamd / ours without: **{}**; ours + rspamd / Postfix + rspamd milter: **{}**",
        ratio(on, base),
        ratio(on, pick(POSTFIX, |f| f.rate))
    );
    let _ = writeln!(
        s,
        "\n- every server stores to a Maildir on the same disk: ours with GSMTP_FSYNC=Y; Postfix \
         fsyncs its queue file before `250`, then `virtual(8)` delivers (no chroot, \
         milter_default_action = tempfail, milter_protocol = 6)"
    );
    if let Some(accepted) = pick(POSTFIX, |f| f.accepted_rate) {
        let _ = writeln!(
            s,
            "- Postfix's msg/s counts until the last message is in its Maildir; until the last \
             `250`: {} msg/s",
            group(accepted)
        );
    }
    let _ = writeln!(
        s,
        "- server CPU: ours, its one process; Postfix, master and every process under it \
         (smtpd, cleanup, qmgr, trivial-rewrite, virtual, anvil, postlogd, ...), exited ones \
         included; rspamd CPU: its main process and workers (one normal worker for HTTP, one \
         proxy worker scanning milter sessions itself), its info-level log included"
    );
    let _ = writeln!(
        s,
        "- each session names its client {CLIENT_IP} by XCLIENT; rspamd answers `no action`; \
         its DNS is a private dnsmasq"
    );
    match spread {
        None => {
            let _ = writeln!(
                s,
                "- each server's folder in its own ext4 block group (`chattr +T` on their parent), \
                 so that Postfix's freed queue files do not slow our file creation; Postfix's own may \
                 still slow its own on this journal-less ext4 (not measured)"
            );
        }
        Some(e) => {
            let _ = writeln!(
                s,
                "- the servers' folders may share ext4 block groups ({e}): Postfix's freed queue \
                 files may slow every server's file creation"
            );
        }
    }
    for f in failures {
        let _ = writeln!(s, "\nFAILED: {f}");
    }
    s
}
