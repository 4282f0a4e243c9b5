//! The content filters the server talks to, each a private instance on free loopback
//! ports in its own temporary directory with its own configuration, stopped when dropped
//! (logs printed if the test fails): rspamd 3.4 ([`Rspamd`]: its HTTP API and its milter
//! proxy), clamd with a hand-made EICAR signature and clamav-milter in front of it
//! ([`Clamd`], [`ClamavMilter`]), and opendkim verifying signatures ([`OpenDkim`]). None
//! of them reaches past loopback: their DNS server is the one the caller gives
//! ([`Zones`]), and nothing is fetched (no freshclam, no fuzzy hashes, no RBLs).
//!
//! A bare milter client ([`milter_run`]) speaks the MTA's side of the protocol to check
//! the fixtures; the marker strings below make rspamd give each of its actions.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::{Group, User, chown, geteuid};

use super::daemon::{Proc, free_addr};
use super::verdicts::{Zones, text};
use crate::TempDir;

/// The GTUBE test string: rspamd answers `reject` (and its milter `554 5.7.1`).
pub const GTUBE: &str = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";
/// rspamd's GTUBE variant for `add header` (a test pattern, on in [`Rspamd`]).
pub const GTUBE_ADD_HEADER: &str =
    "YJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";
/// rspamd's GTUBE variant for `rewrite subject` (a test pattern, on in [`Rspamd`]).
pub const GTUBE_REWRITE_SUBJECT: &str =
    "ZJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";
/// rspamd's GTUBE variant for `no action`, with no symbol at all (a test pattern).
pub const GTUBE_NO_ACTION: &str =
    "AJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";
/// Our marker for `soft reject` (rspamd 3.4 has no test pattern for it): a prefilter of
/// [`Rspamd`]'s configuration forces the action when the message holds it.
pub const RSPAMD_SOFT_REJECT: &str = "GSMTPD-RSPAMD-TEST-SOFT-REJECT";
/// Our marker for `greylist`, forced the same way.
pub const RSPAMD_GREYLIST: &str = "GSMTPD-RSPAMD-TEST-GREYLIST";
/// Our marker for a check that never ends: a symbol asks a listener that never answers,
/// so rspamd's own task time-out (2 s here) cuts the check short.
pub const RSPAMD_HANG: &str = "GSMTPD-RSPAMD-TEST-HANG";
/// Every marker and the rspamd action it gives.
pub const RSPAMD_MARKERS: &[(&str, &str)] = &[
    (GTUBE, "reject"),
    (GTUBE_ADD_HEADER, "add header"),
    (GTUBE_REWRITE_SUBJECT, "rewrite subject"),
    (RSPAMD_SOFT_REJECT, "soft reject"),
    (RSPAMD_GREYLIST, "greylist"),
    (GTUBE_NO_ACTION, "no action"),
];
/// The EICAR anti-virus test file; [`Clamd`] finds `Eicar-Test-Signature.UNOFFICIAL` in
/// it, raw or in a base64 attachment.
pub const EICAR: &str = r"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
/// The authserv-id of [`OpenDkim`]'s `Authentication-Results`.
pub const OPENDKIM_AUTHSERV_ID: &str = "opendkim.test";

/// How long one filter may take over one exchange.
const EXCHANGE_LIMIT: Duration = Duration::from_secs(30);

/// Creates `dir` for a daemon that runs as `owner` (when we are root).
fn owned_dir(dir: &Path, owner: Option<(&User, &Group)>) {
    fs::create_dir_all(dir).unwrap_or_else(|e| panic!("cannot make {}: {e}", dir.display()));
    if let Some((user, group)) = owner {
        chown(dir, Some(user.uid), Some(group.gid))
            .unwrap_or_else(|e| panic!("cannot chown {}: {e}", dir.display()));
    }
}

/// Writes `text` to `dir/name`.
fn write(dir: &Path, name: &str, text: &str) {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).expect("make a folder");
    }
    fs::write(&path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

/// A private rspamd 3.4: the normal worker (`/checkv2`, `/ping`), the proxy worker in
/// milter mode scanning by itself, and the controller, each on a free loopback port. Its
/// local configuration (`local.d`, `override.d`, `rspamd.local.lua`), database, run and
/// temporary directories are in its own directory; the stock module defaults are read
/// from the package's `/etc/rspamd` (its `local.d` is not). DNS goes to the server it is
/// given; fuzzy checks, RBLs, ASN lookups and the DNS-driven `hfilter` heuristics are
/// off, and no Redis is needed. The GTUBE test patterns are on, so [`RSPAMD_MARKERS`]
/// give each action; a plain message gets `no action` (with
/// `IP: 192.0.2.x`: rspamd treats private and loopback addresses as local). The public
/// suffix list is cut to a few names (`com`, `net`, `org`, `example`, `test`, ...):
/// compiling the whole of it takes rspamd 15 seconds at each start.
#[derive(Debug)]
pub struct Rspamd {
    proc: Proc,
    /// The normal worker: `POST /checkv2`, `GET /ping`.
    pub http: SocketAddr,
    /// The proxy worker in milter mode (protocol version 6).
    pub milter: SocketAddr,
    /// The controller (no password; `secure_ip` 127.0.0.1).
    pub controller: SocketAddr,
    dir: TempDir,
    /// What [`RSPAMD_HANG`]'s symbol asks: it accepts and never answers.
    _hang: std::net::TcpListener,
}

/// The prefilter behind [`RSPAMD_SOFT_REJECT`] and [`RSPAMD_GREYLIST`]: the action of
/// the first marker the message holds, as a pre-result (no score, no other check).
fn rspamd_local_lua(hang: SocketAddr) -> String {
    format!(
        r"local rspamd_http = require 'rspamd_http'
rspamd_config:register_symbol({{
  name = 'GSMTPD_TEST_HANG',
  score = 0.0,
  callback = function(task)
    if tostring(task:get_content()):find('{RSPAMD_HANG}', 1, true) then
      rspamd_http.request({{
        task = task,
        url = 'http://{hang}/',
        timeout = 60.0,
        callback = function() end,
      }})
    end
  end,
}})
local markers = {{
  {{'{RSPAMD_SOFT_REJECT}', 'soft reject'}},
  {{'{RSPAMD_GREYLIST}', 'greylist'}},
}}
rspamd_config:register_symbol({{
  name = 'GSMTPD_TEST_MARKER',
  type = 'prefilter',
  priority = 10,
  score = 0.0,
  callback = function(task)
    local content = tostring(task:get_content())
    for _, m in ipairs(markers) do
      if content:find(m[1], 1, true) then
        task:insert_result('GSMTPD_TEST_MARKER', 1.0, m[2])
        task:set_pre_result(m[2], 'test marker: ' .. m[2], 'gsmtpd_test')
        return
      end
    end
  end,
}})
"
    )
}

impl Rspamd {
    /// Starts it with `dns` as its only name server and waits until its three workers
    /// accept connections.
    pub fn start(dns: SocketAddr) -> Self {
        let dir = TempDir::new("rspamd");
        let root = dir.path();
        let (http, milter, controller) = (free_addr(), free_addr(), free_addr());
        // rspamd refuses to run its workers as root: as root, they run as the package's
        // user, which must own what they write.
        let account = geteuid().is_root().then(|| {
            let user = User::from_name("_rspamd")
                .ok()
                .flatten()
                .expect("the user _rspamd (Debian's rspamd package)");
            let group = Group::from_name("_rspamd")
                .ok()
                .flatten()
                .expect("the group _rspamd");
            (user, group)
        });
        let owner = account.as_ref().map(|(u, g)| (u, g));
        for sub in ["db", "run", "tmp"] {
            owned_dir(&root.join(sub), owner);
        }
        let r = root.display();
        write(
            root,
            "rspamd.conf",
            &format!(
                r#".include "$CONFDIR/common.conf"
options {{
    pidfile = "$RUNDIR/rspamd.pid";
    .include "$CONFDIR/options.inc"
    .include(try=true; priority=1,duplicate=merge) "$LOCAL_CONFDIR/local.d/options.inc"
}}
logging {{
    type = "console";
    level = "info";
}}
worker "normal" {{
    bind_socket = "{http}";
    mime = true;
    count = 1;
}}
worker "controller" {{
    bind_socket = "{controller}";
    count = 1;
    secure_ip = "127.0.0.1";
    static_dir = "${{WWWDIR}}";
}}
worker "rspamd_proxy" {{
    bind_socket = "{milter}";
    milter = yes;
    timeout = 120s;
    upstream "local" {{
        default = yes;
        self_scan = yes;
    }}
    count = 1;
    discard_on_reject = false;
    quarantine_on_reject = false;
    spam_header = "X-Spam";
    reject_message = "Spam message rejected";
}}
"#
            ),
        );
        write(
            root,
            "local.d/options.inc",
            &format!(
                r#"filters = "chartable,dkim,regexp";
enable_test_patterns = true;
task_timeout = 2s;
soft_reject_on_timeout = true;
url_tld = "{r}/tld.dat";
tempdir = "{r}/tmp";
dns {{
    nameserver = ["{dns}"];
    timeout = 1s;
    retransmits = 1;
}}
"#
            ),
        );
        for module in ["fuzzy_check", "rbl", "asn", "hfilter"] {
            write(
                root,
                &format!("override.d/{module}.conf"),
                "enabled = false;\n",
            );
        }
        let hang = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let hang_addr = hang.local_addr().expect("an address");
        write(root, "rspamd.local.lua", &rspamd_local_lua(hang_addr));
        write(
            root,
            "tld.dat",
            "com\nnet\norg\nedu\ngov\nio\nde\nuk\nco.uk\nexample\ntest\ninvalid\nlocalhost\n",
        );
        let mut cmd = Command::new("rspamd");
        cmd.arg("--no-fork");
        if let Some((user, group)) = &account {
            cmd.args(["-u", &user.name, "-g", &group.name]);
        }
        cmd.arg("-c")
            .arg(root.join("rspamd.conf"))
            .arg("--var")
            .arg(format!("LOCAL_CONFDIR={r}"))
            .arg("--var")
            .arg(format!("DBDIR={r}/db"))
            .arg("--var")
            .arg(format!("RUNDIR={r}/run"))
            .arg("--var")
            .arg(format!("LOGDIR={r}/run"))
            .current_dir(root);
        let mut proc = Proc::spawn("rspamd", &mut cmd, &root.join("rspamd.log"));
        for addr in [http, milter, controller] {
            proc.wait_listening(addr);
        }
        Self {
            proc,
            http,
            milter,
            controller,
            dir,
            _hang: hang,
        }
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        self.proc.log()
    }

    /// Sends `signal` to rspamd's main process and every worker it forked (SIGSTOP makes
    /// it a filter that accepts connections and never answers; SIGCONT wakes it).
    pub fn signal_all(&self, signal: Signal) {
        let main = self.proc.pid();
        let mut pids = vec![main];
        for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
            let stat = fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            // The parent's pid is the second field after the command's closing parenthesis.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if ppid == Some(main)
                && let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse().ok())
            {
                pids.push(pid);
            }
        }
        for pid in pids {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal);
        }
    }

    /// `GET path` from the normal worker: the status and the body.
    pub fn get(&self, path: &str) -> (u16, Vec<u8>) {
        http_request(self.http, "GET", path, &[], b"")
    }

    /// `POST /checkv2` of `message` from client `ip`, HELO `client.example`, MAIL FROM
    /// `a@example.net`, RCPT TO `u@example.com`: the JSON reply.
    pub fn check(&self, ip: &str, message: &[u8]) -> serde_json::Value {
        let headers = [
            ("IP", ip),
            ("Helo", "client.example"),
            ("From", "a@example.net"),
            ("Rcpt", "u@example.com"),
        ];
        let (status, body) = http_request(self.http, "POST", "/checkv2", &headers, message);
        assert_eq!(
            status,
            200,
            "/checkv2 answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
        serde_json::from_slice(&body).unwrap_or_else(|e| {
            panic!(
                "/checkv2 answered no JSON ({e}): {}",
                String::from_utf8_lossy(&body)
            )
        })
    }
}

/// One HTTP/1.1 request with `Connection: close`: the status and the body (rspamd
/// answers with a `Content-Length`, never chunked).
fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<u8>) {
    let mut stream = connect(addr);
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).expect("send a request");
    stream.write_all(body).expect("send a request body");
    let mut reply = Vec::new();
    stream
        .read_to_end(&mut reply)
        .unwrap_or_else(|e| panic!("no reply from {addr}{path}: {e}"));
    let end = reply
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| {
            panic!(
                "a reply without a head: {}",
                String::from_utf8_lossy(&reply)
            )
        });
    let head = String::from_utf8_lossy(&reply[..end]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("a bad status line in {head:?}"));
    (status, reply[end + 4..].to_vec())
}

/// A connection with [`EXCHANGE_LIMIT`] on every read and write.
fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"));
    stream
        .set_read_timeout(Some(EXCHANGE_LIMIT))
        .expect("a read timeout");
    stream
        .set_write_timeout(Some(EXCHANGE_LIMIT))
        .expect("a write timeout");
    stream
}

/// A private clamd on a free loopback port whose database directory holds one
/// hand-made signature, for [`EICAR`] (`eicar.ndb`): no freshclam, no network, and it
/// starts in well under a second.
#[derive(Debug)]
pub struct Clamd {
    proc: Proc,
    /// Where it listens (clamd's protocol: `zINSTREAM`, `zPING`, ...).
    pub addr: SocketAddr,
    dir: TempDir,
}

impl Clamd {
    /// Starts it and waits until it accepts connections.
    pub fn start() -> Self {
        let dir = TempDir::new("clamd");
        let root = dir.path();
        let addr = free_addr();
        let hex: String = EICAR.bytes().map(|b| format!("{b:02x}")).collect();
        write(
            root,
            "db/eicar.ndb",
            &format!("Eicar-Test-Signature:0:*:{hex}\n"),
        );
        fs::create_dir_all(root.join("tmp")).expect("make tmp/");
        let r = root.display();
        write(
            root,
            "clamd.conf",
            &format!(
                "Foreground yes\n\
                 LogFile {r}/clamd.log\n\
                 LogTime no\n\
                 LogVerbose yes\n\
                 PidFile {r}/clamd.pid\n\
                 DatabaseDirectory {r}/db\n\
                 TemporaryDirectory {r}/tmp\n\
                 TCPSocket {}\n\
                 TCPAddr 127.0.0.1\n\
                 Bytecode no\n\
                 SelfCheck 0\n",
                addr.port()
            ),
        );
        let mut cmd = Command::new("clamd");
        cmd.arg(format!("--config-file={r}/clamd.conf"))
            .current_dir(root);
        let mut proc = Proc::spawn("clamd", &mut cmd, &root.join("clamd.out"));
        proc.add_log(&root.join("clamd.log"));
        proc.wait_listening(addr);
        Self { proc, addr, dir }
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Its standard output and error so far.
    pub fn log(&self) -> String {
        self.proc.log()
    }

    /// clamd's answer to `zINSTREAM` of `data`: `stream: OK`, or
    /// `stream: <name> FOUND`.
    pub fn scan(&self, data: &[u8]) -> String {
        let mut stream = connect(self.addr);
        let mut request = b"zINSTREAM\0".to_vec();
        for chunk in data.chunks(65_536) {
            let len = u32::try_from(chunk.len()).expect("a chunk fits in u32");
            request.extend_from_slice(&len.to_be_bytes());
            request.extend_from_slice(chunk);
        }
        request.extend_from_slice(&0u32.to_be_bytes());
        stream.write_all(&request).expect("send to clamd");
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).expect("clamd's answer");
        String::from_utf8_lossy(&reply)
            .trim_end_matches('\0')
            .to_string()
    }
}

/// clamav-milter in the foreground on a free loopback port, asking a [`Clamd`]:
/// infected mail is rejected (`OnInfected Reject`, with no `RejectMsg`: a bare
/// `SMFIR_REJECT`, the MTA's own text), clean mail accepted, a failure deferred; it adds
/// no header (`AddHeader No`).
#[derive(Debug)]
pub struct ClamavMilter {
    proc: Proc,
    /// Where it listens (milter protocol).
    pub milter: SocketAddr,
    dir: TempDir,
}

impl ClamavMilter {
    /// Starts it in front of `clamd` and waits until it accepts connections.
    pub fn start(clamd: &Clamd) -> Self {
        let dir = TempDir::new("clamav-milter");
        let root = dir.path();
        let milter = free_addr();
        let r = root.display();
        write(
            root,
            "clamav-milter.conf",
            &format!(
                "MilterSocket inet:{}@127.0.0.1\n\
                 Foreground yes\n\
                 PidFile {r}/clamav-milter.pid\n\
                 TemporaryDirectory {r}\n\
                 ClamdSocket tcp:127.0.0.1:{}\n\
                 ReadTimeout 30\n\
                 OnClean Accept\n\
                 OnInfected Reject\n\
                 OnFail Defer\n\
                 AddHeader No\n\
                 LogFile {r}/clamav-milter.log\n\
                 LogTime no\n\
                 LogVerbose yes\n\
                 LogInfected Basic\n\
                 LogClean Basic\n",
                milter.port(),
                clamd.addr.port()
            ),
        );
        let mut cmd = Command::new("clamav-milter");
        cmd.arg(format!("--config-file={r}/clamav-milter.conf"))
            .current_dir(root);
        let mut proc = Proc::spawn("clamav-milter", &mut cmd, &root.join("clamav-milter.out"));
        proc.add_log(&root.join("clamav-milter.log"));
        proc.wait_listening(milter);
        Self { proc, milter, dir }
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Its standard output and error so far.
    pub fn log(&self) -> String {
        self.proc.log()
    }
}

impl Drop for ClamavMilter {
    /// Kills it: libmilter would take up to five seconds over SIGTERM.
    fn drop(&mut self) {
        kill_milter(&mut self.proc);
    }
}

/// Kills a libmilter daemon: it notices SIGTERM only at its listener's next poll, up to
/// five seconds on, and nothing of it outlives its directory. [`Proc`] then reaps it.
fn kill_milter(proc: &mut Proc) {
    if proc.exited().is_none() {
        proc.signal(Signal::SIGKILL);
    }
}

/// opendkim in the foreground on a free loopback port, verifying only (`Mode v`), its
/// DNS queries sent to the server it is given (`Nameservers`, libunbound's `ip@port`),
/// with no DNSSEC trust anchor, no pid file and no syslog. It adds
/// `Authentication-Results: opendkim.test; dkim=...` to every message, signed or not
/// (`AlwaysAddARHeader`).
#[derive(Debug)]
pub struct OpenDkim {
    proc: Proc,
    /// Where it listens (milter protocol).
    pub milter: SocketAddr,
    dir: TempDir,
}

impl OpenDkim {
    /// Starts it with `dns` as its only name server and waits until it accepts
    /// connections.
    pub fn start(dns: SocketAddr) -> Self {
        let dir = TempDir::new("opendkim");
        let root = dir.path();
        let milter = free_addr();
        write(
            root,
            "opendkim.conf",
            &format!(
                "Mode v\n\
                 Socket inet:{}@127.0.0.1\n\
                 Nameservers {}@{}\n\
                 AuthservID {OPENDKIM_AUTHSERV_ID}\n\
                 AlwaysAddARHeader yes\n\
                 Background no\n\
                 Syslog no\n\
                 LogWhy yes\n",
                milter.port(),
                dns.ip(),
                dns.port()
            ),
        );
        let mut cmd = Command::new("opendkim");
        cmd.arg("-f")
            .arg("-x")
            .arg(root.join("opendkim.conf"))
            .current_dir(root);
        let mut proc = Proc::spawn("opendkim", &mut cmd, &root.join("opendkim.log"));
        proc.wait_listening(milter);
        Self { proc, milter, dir }
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Its standard output and error so far.
    pub fn log(&self) -> String {
        self.proc.log()
    }
}

impl Drop for OpenDkim {
    /// Kills it: libmilter would take up to five seconds over SIGTERM.
    fn drop(&mut self) {
        kill_milter(&mut self.proc);
    }
}

/// The milter protocol version we speak.
pub const MILTER_VERSION: u32 = 6;
/// Every action a milter may ask for (`SMFIF_ADDHDRS` ... `SMFIF_SETSYMLIST`).
pub const MILTER_ACTIONS: u32 = 0x1ff;
/// Every protocol step we offer to leave out or not wait for (`SMFIP_NOCONNECT` ...
/// `SMFIP_NR_BODY`; not `SMFIP_HDR_LEADSPC`).
pub const MILTER_PROTOCOL: u32 = 0x0f_ffff;

const NOCONNECT: u32 = 0x1;
const NOHELO: u32 = 0x2;
const NOMAIL: u32 = 0x4;
const NORCPT: u32 = 0x8;
const NOBODY: u32 = 0x10;
const NOHDRS: u32 = 0x20;
const NOEOH: u32 = 0x40;
const NR_HDR: u32 = 0x80;
const NODATA: u32 = 0x200;
const NR_CONN: u32 = 0x1000;
const NR_HELO: u32 = 0x2000;
const NR_MAIL: u32 = 0x4000;
const NR_RCPT: u32 = 0x8000;
const NR_DATA: u32 = 0x1_0000;
const NR_EOH: u32 = 0x4_0000;
const NR_BODY: u32 = 0x8_0000;

/// One packet of the milter protocol: its command or reply letter and its data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MilterPacket {
    /// `O`, `c`, `a`, `r`, `t`, `y`, `h`, `i`, `m`, ...
    pub code: u8,
    /// What follows the letter.
    pub data: Vec<u8>,
}

impl MilterPacket {
    /// The data as text, NULs shown as `|`.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).replace('\0', "|")
    }
}

/// A milter's answer to `SMFIC_OPTNEG`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MilterOptions {
    /// The version it speaks.
    pub version: u32,
    /// The actions it may take.
    pub actions: u32,
    /// The steps it leaves out or answers not (`SMFIP_*`).
    pub protocol: u32,
}

/// A milter connection, the MTA's side.
#[derive(Debug)]
pub struct MilterConn {
    stream: TcpStream,
    /// What was negotiated.
    pub options: MilterOptions,
}

impl MilterConn {
    /// Connects to `addr` and negotiates: version 6, every action and protocol step.
    /// Panics unless a well-formed `O` comes back within the subset offered.
    pub fn open(addr: SocketAddr) -> Self {
        let stream = connect(addr);
        let mut conn = Self {
            stream,
            options: MilterOptions {
                version: 0,
                actions: 0,
                protocol: 0,
            },
        };
        let mut offer = Vec::new();
        for n in [MILTER_VERSION, MILTER_ACTIONS, MILTER_PROTOCOL] {
            offer.extend_from_slice(&n.to_be_bytes());
        }
        conn.send(b'O', &offer);
        let reply = conn.read();
        assert_eq!(reply.code, b'O', "{addr} answered {reply:?} to OPTNEG");
        assert!(reply.data.len() >= 12, "{addr}: a short OPTNEG {reply:?}");
        let word = |i: usize| {
            u32::from_be_bytes(reply.data[i * 4..i * 4 + 4].try_into().expect("4 octets"))
        };
        conn.options = MilterOptions {
            version: word(0),
            actions: word(1),
            protocol: word(2),
        };
        let o = conn.options;
        assert!(
            (2..=MILTER_VERSION).contains(&o.version),
            "{addr}: version {o:?}"
        );
        assert_eq!(o.actions & !MILTER_ACTIONS, 0, "{addr}: actions {o:?}");
        assert_eq!(o.protocol & !MILTER_PROTOCOL, 0, "{addr}: protocol {o:?}");
        conn
    }

    /// Sends one packet.
    pub fn send(&mut self, code: u8, data: &[u8]) {
        let len = u32::try_from(data.len() + 1).expect("a packet fits in u32");
        let mut packet = len.to_be_bytes().to_vec();
        packet.push(code);
        packet.extend_from_slice(data);
        self.stream
            .write_all(&packet)
            .unwrap_or_else(|e| panic!("cannot send {:?} to the milter: {e}", code as char));
    }

    /// Reads one packet (each read bounded by 30 seconds).
    pub fn read(&mut self) -> MilterPacket {
        let mut len = [0u8; 4];
        self.stream
            .read_exact(&mut len)
            .unwrap_or_else(|e| panic!("no reply from the milter: {e}"));
        let len = u32::from_be_bytes(len) as usize;
        assert!(
            (1..=1 << 20).contains(&len),
            "a milter packet of {len} octets"
        );
        let mut data = vec![0u8; len];
        self.stream
            .read_exact(&mut data)
            .unwrap_or_else(|e| panic!("a cut milter reply: {e}"));
        let code = data.remove(0);
        MilterPacket { code, data }
    }

    /// Sends a command unless the milter left its step out (`no`), then reads its answer
    /// unless it said it would not answer (`nr`); skips progress packets. `None` when
    /// nothing was sent or is awaited.
    fn step(&mut self, code: u8, data: &[u8], no: u32, nr: u32) -> Option<MilterPacket> {
        if self.options.protocol & no != 0 {
            return None;
        }
        self.send(code, data);
        if self.options.protocol & nr != 0 {
            return None;
        }
        loop {
            let reply = self.read();
            if reply.code != b'p' {
                return Some(reply);
            }
        }
    }
}

/// What a milter made of one message.
#[derive(Clone, Debug)]
pub struct MilterOutcome {
    /// The changes it asked for at the message's end (`h` add header, `i` insert, `m`
    /// change, `b` body, `+`/`-` recipients, `e` sender, `q` quarantine).
    pub changes: Vec<MilterPacket>,
    /// Its last word: `c` continue or `a` accept (both deliver), `r` reject, `t`
    /// tempfail, `y` a reply of its own (`554 5.7.1 ...`), `d` discard.
    pub verdict: MilterPacket,
    /// The step it came at: `connect`, `helo`, `mail`, `rcpt`, `data`, `header`, `eoh`,
    /// `body` or `eom`.
    pub at: &'static str,
}

impl MilterOutcome {
    /// Whether the message would be delivered.
    pub fn delivered(&self) -> bool {
        matches!(self.verdict.code, b'c' | b'a')
    }

    /// The value the milter gives the header `name` (added, inserted, or changed, which
    /// adds it when the message has none), if it does.
    pub fn header(&self, name: &str) -> Option<String> {
        self.changes.iter().find_map(|p| {
            let data = match p.code {
                b'h' => &p.data[..],
                b'i' | b'm' if p.data.len() > 4 => &p.data[4..],
                _ => return None,
            };
            let mut parts = data.split(|&b| b == 0);
            let n = parts.next()?;
            let v = parts.next()?;
            n.eq_ignore_ascii_case(name.as_bytes())
                .then(|| String::from_utf8_lossy(v).into_owned())
        })
    }
}

/// Runs one message through the milter at `addr` as an MTA would: connect from `ip`
/// (HELO `client.example`), MAIL FROM `<from>`, one RCPT TO per recipient, the headers,
/// the body in 65535-octet chunks, the end; then QUIT. Stops at the first answer that
/// is not `continue`.
pub fn milter_run(
    addr: SocketAddr,
    ip: &str,
    from: &str,
    rcpts: &[&str],
    message: &[u8],
) -> MilterOutcome {
    let mut conn = MilterConn::open(addr);
    let outcome = milter_message(&mut conn, ip, from, rcpts, message);
    conn.send(b'Q', b"");
    outcome
}

/// A command, its data, the `SMFIP_NO*` bit that leaves it out, the `SMFIP_NR_*` bit
/// that leaves out its answer, and the name of its step.
type Step = (u8, Vec<u8>, u32, u32, &'static str);

fn milter_message(
    conn: &mut MilterConn,
    ip: &str,
    from: &str,
    rcpts: &[&str],
    message: &[u8],
) -> MilterOutcome {
    let stop = |verdict: MilterPacket, at| MilterOutcome {
        changes: Vec::new(),
        verdict,
        at,
    };
    let nul = |parts: &[&[u8]]| -> Vec<u8> {
        let mut out = Vec::new();
        for p in parts {
            out.extend_from_slice(p);
            out.push(0);
        }
        out
    };
    let family = if ip.contains(':') { b'6' } else { b'4' };
    let mut connect = b"client.example\0".to_vec();
    connect.push(family);
    connect.extend_from_slice(&25_000u16.to_be_bytes());
    connect.extend_from_slice(&nul(&[ip.as_bytes()]));
    let mut steps: Vec<Step> = vec![
        (b'C', connect, NOCONNECT, NR_CONN, "connect"),
        (b'H', nul(&[b"client.example"]), NOHELO, NR_HELO, "helo"),
        (
            b'M',
            nul(&[format!("<{from}>").as_bytes()]),
            NOMAIL,
            NR_MAIL,
            "mail",
        ),
    ];
    for rcpt in rcpts {
        steps.push((
            b'R',
            nul(&[format!("<{rcpt}>").as_bytes()]),
            NORCPT,
            NR_RCPT,
            "rcpt",
        ));
    }
    if conn.options.version >= 4 {
        steps.push((b'T', Vec::new(), NODATA, NR_DATA, "data"));
    }
    let (headers, body) = split_message(message);
    for (name, value) in headers {
        steps.push((b'L', nul(&[&name, &value]), NOHDRS, NR_HDR, "header"));
    }
    steps.push((b'N', Vec::new(), NOEOH, NR_EOH, "eoh"));
    for (code, data, no, nr, at) in steps {
        if let Some(reply) = conn.step(code, &data, no, nr)
            && reply.code != b'c'
        {
            return stop(reply, at);
        }
    }
    for chunk in body.chunks(65_535) {
        match conn.step(b'B', chunk, NOBODY, NR_BODY) {
            Some(reply) if reply.code == b's' => break,
            Some(reply) if reply.code != b'c' => return stop(reply, "body"),
            _ => {}
        }
    }
    conn.send(b'E', b"");
    let mut changes = Vec::new();
    loop {
        let reply = conn.read();
        match reply.code {
            b'c' | b'a' | b'r' | b't' | b'y' | b'd' => {
                return MilterOutcome {
                    changes,
                    verdict: reply,
                    at: "eom",
                };
            }
            b'p' => {}
            _ => changes.push(reply),
        }
    }
}

/// A header field: its name and its value.
type Field = (Vec<u8>, Vec<u8>);

/// The header fields (name, value without the space after the colon, folded lines
/// joined by `\n` as sendmail sends them) and the body of `message`.
fn split_message(message: &[u8]) -> (Vec<Field>, Vec<u8>) {
    let end = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(message.len(), |i| i + 2);
    let body = message.get(end + 2..).unwrap_or_default().to_vec();
    let mut fields: Vec<Field> = Vec::new();
    for line in message[..end].split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        if matches!(line[0], b' ' | b'\t') {
            if let Some((_, value)) = fields.last_mut() {
                value.push(b'\n');
                value.extend_from_slice(line);
            }
            continue;
        }
        let colon = line.iter().position(|&b| b == b':').unwrap_or(line.len());
        let value = line.get(colon + 1..).unwrap_or_default();
        let value = value.strip_prefix(b" ").unwrap_or(value);
        fields.push((line[..colon].to_vec(), value.to_vec()));
    }
    (fields, body)
}

/// A plain message with `marker` on a line of its body.
pub fn marked_message(marker: &str) -> Vec<u8> {
    format!(
        "From: Sender <a@example.net>\r\n\
         To: <u@example.com>\r\n\
         Subject: filter test\r\n\
         Message-ID: <filter-test@client.example>\r\n\
         \r\n\
         Hello,\r\n\
         {marker}\r\n\
         Bye.\r\n"
    )
    .into_bytes()
}

/// A message with [`EICAR`] as a base64 attachment.
pub fn eicar_message() -> Vec<u8> {
    use base64::Engine as _;
    let attachment = base64::engine::general_purpose::STANDARD.encode(EICAR);
    format!(
        "From: Sender <a@example.net>\r\n\
         To: <u@example.com>\r\n\
         Subject: an attachment\r\n\
         Message-ID: <eicar@client.example>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b1\"\r\n\
         \r\n\
         --b1\r\n\
         Content-Type: text/plain\r\n\
         \r\n\
         See the attachment.\r\n\
         --b1\r\n\
         Content-Type: application/octet-stream\r\n\
         Content-Transfer-Encoding: base64\r\n\
         Content-Disposition: attachment; filename=\"eicar.com\"\r\n\
         \r\n\
         {attachment}\r\n\
         --b1--\r\n"
    )
    .into_bytes()
}

/// Starts `what`, printing how long it took (the tests' output shows it).
fn timed<T>(name: &str, what: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let value = what();
    eprintln!("{name} started in {:?}", start.elapsed());
    value
}

/// rspamd's fixture: `/ping` is `pong`; each marker gives its action over `/checkv2`
/// (from 192.0.2.1), a plain message `no action`; over its milter, GTUBE is refused
/// with `554 5.7.1`, soft reject is `451 4.7.1`, add header adds `X-Spam: Yes`, rewrite
/// subject changes the Subject, and a plain message passes.
pub fn rspamd_fixture_actions(_bin: &str) {
    let zones = Zones::start();
    let rspamd = timed("rspamd", || Rspamd::start(zones.addr));
    let (status, body) = rspamd.get("/ping");
    assert_eq!(
        (status, String::from_utf8_lossy(&body).trim()),
        (200, "pong")
    );
    let plain = text("Sender <a@example.net>", "plain", "");
    let mut cases: Vec<(Vec<u8>, &str)> = RSPAMD_MARKERS
        .iter()
        .map(|(marker, action)| (marked_message(marker), *action))
        .collect();
    cases.push((plain.clone(), "no action"));
    for (message, action) in &cases {
        let reply = rspamd.check("192.0.2.1", message);
        assert_eq!(
            reply["action"],
            *action,
            "{}\n{reply:#}",
            String::from_utf8_lossy(message)
        );
    }
    let reply = rspamd.check("192.0.2.1", &marked_message(GTUBE_REWRITE_SUBJECT));
    assert_eq!(reply["subject"], "*** SPAM *** filter test", "{reply:#}");

    let run = |message: &[u8]| {
        milter_run(
            rspamd.milter,
            "192.0.2.1",
            "a@example.net",
            &["u@example.com"],
            message,
        )
    };
    let o = run(&marked_message(GTUBE));
    assert_eq!(o.verdict.code, b'y', "{o:?}");
    assert!(o.verdict.text().starts_with("554 5.7.1 "), "{o:?}");
    let o = run(&marked_message(RSPAMD_SOFT_REJECT));
    assert_eq!(o.verdict.code, b'y', "{o:?}");
    assert!(o.verdict.text().starts_with("451 4.7.1 "), "{o:?}");
    let o = run(&marked_message(GTUBE_ADD_HEADER));
    assert!(o.delivered(), "{o:?}");
    assert_eq!(o.header("X-Spam").as_deref(), Some("Yes"), "{o:?}");
    let o = run(&marked_message(GTUBE_REWRITE_SUBJECT));
    assert!(o.delivered(), "{o:?}");
    assert!(
        o.changes
            .iter()
            .any(|p| p.code == b'm' && p.text().contains("Subject|*** SPAM *** filter test")),
        "{o:?}"
    );
    for message in [marked_message(RSPAMD_GREYLIST), plain] {
        let o = run(&message);
        assert!(o.delivered(), "{o:?}");
    }
}

/// Each milter fixture (rspamd's proxy, clamav-milter, opendkim) answers a version 6
/// option negotiation with a well-formed `O` within what was offered.
pub fn milter_fixtures_answer(_bin: &str) {
    let zones = Zones::start();
    let rspamd = timed("rspamd", || Rspamd::start(zones.addr));
    let clamd = timed("clamd", Clamd::start);
    let clamav = timed("clamav-milter", || ClamavMilter::start(&clamd));
    let opendkim = timed("opendkim", || OpenDkim::start(zones.addr));
    for (name, addr) in [
        ("rspamd", rspamd.milter),
        ("clamav-milter", clamav.milter),
        ("opendkim", opendkim.milter),
    ] {
        let conn = MilterConn::open(addr);
        eprintln!("{name}: {:x?}", conn.options);
    }
}

/// clamd finds EICAR raw and in a base64 attachment; clamav-milter refuses a message
/// carrying it (a bare reject, no header added) and lets a clean one through.
pub fn milter_fixtures_clamav_rejects_eicar(_bin: &str) {
    let clamd = Clamd::start();
    assert_eq!(
        clamd.scan(EICAR.as_bytes()),
        "stream: Eicar-Test-Signature.UNOFFICIAL FOUND"
    );
    assert_eq!(
        clamd.scan(&eicar_message()),
        "stream: Eicar-Test-Signature.UNOFFICIAL FOUND"
    );
    assert_eq!(clamd.scan(&marked_message("clean")), "stream: OK");
    let milter = ClamavMilter::start(&clamd);
    let run = |message: &[u8]| {
        milter_run(
            milter.milter,
            "192.0.2.1",
            "a@example.net",
            &["u@example.com"],
            message,
        )
    };
    let o = run(&eicar_message());
    assert_eq!(o.verdict.code, b'r', "{o:?}");
    let o = run(&marked_message("clean"));
    assert!(o.delivered(), "{o:?}");
    assert!(o.changes.is_empty(), "{o:?}");
}

/// opendkim, asking the private DNS server, passes a message signed by `dkim.example`
/// (rsa-sha256 and ed25519), fails one altered after signing, and says `dkim=none` of an
/// unsigned one, in its `Authentication-Results: opendkim.test`.
pub fn milter_fixtures_opendkim_verifies(_bin: &str) {
    let zones = Zones::start();
    let opendkim = OpenDkim::start(zones.addr);
    let unsigned = text("News <news@dkim.example>", "dkim", "");
    let mut altered = zones.sign(&unsigned, "rsa");
    let at = altered.len() - "Bye.\r\n".len();
    altered.splice(at.., b"Bye, changed on the way.\r\n".iter().copied());
    for (message, expect) in [
        (zones.sign(&unsigned, "rsa"), "dkim=pass"),
        (zones.sign(&unsigned, "ed"), "dkim=pass"),
        (altered, "dkim=fail"),
        (unsigned, "dkim=none"),
    ] {
        let o = milter_run(
            opendkim.milter,
            "192.0.2.1",
            "news@dkim.example",
            &["u@example.com"],
            &message,
        );
        assert!(o.delivered(), "{o:?}");
        let ar = o
            .header("Authentication-Results")
            .unwrap_or_else(|| panic!("no Authentication-Results in {o:?}"));
        assert!(
            ar.starts_with(&format!("{OPENDKIM_AUTHSERV_ID};")) && ar.contains(expect),
            "{expect} wanted: {ar:?}\n{}",
            zones.queries()
        );
    }
}
