//! The hand-off destinations against the real binary: `GSMTP_STORAGE=pipe` with shell
//! scripts as commands. (HTTP and LMTP, with their receivers, are further down.) Each
//! scenario is its own test with its own daemon, so that a failure names it.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use super::binary::refuses;
use super::daemon::{Daemon, Settings, queued_id, wait_until};
use super::message;
use crate::{Client, TempDir};

/// A hook for `GSMTP_PIPE_COMMAND`: saves its input and environment under `$1`, named
/// by the queue id, and exits as its first recipient's local part says (`exit67@` exits
/// 67, `sleep@` waits, `crash@` kills itself, `full@` prints an RFC 3463 code); its
/// arguments after `$1` are saved too.
const HOOK: &str = r#"#!/bin/sh
out=$1; shift
cat > "$out/$SMTP_QUEUE_ID.eml"
env | grep '^SMTP_' | sort > "$out/$SMTP_QUEUE_ID.env"
echo "$@" > "$out/$SMTP_QUEUE_ID.args"
rcpt=${SMTP_RCPT_TO%% *}
case "$rcpt" in
  exit*@*) code=${rcpt#exit}; code=${code%%@*}; echo "exiting $code"; exit "$code" ;;
  sleep@*) sleep 30 & echo $! > "$out/sleeper.pid"; wait; exit 0 ;;
  crash@*) kill -9 $$ ;;
  full@*) echo "5.2.2 mailbox full"; exit 1 ;;
  slow@*) mkdir "$out/lock" || exit 99; sleep 0.3; rmdir "$out/lock"; exit 0 ;;
esac
exit 0
"#;

/// A daemon with `GSMTP_STORAGE=pipe` running [`HOOK`] (as `sh <hook> <out> <args>`),
/// and the folder it writes to.
pub(super) fn pipe_daemon(
    bin: &str,
    args: &str,
    tweak: impl FnOnce(&mut Settings),
) -> (Daemon, TempDir) {
    let out = TempDir::new("hook");
    let hook = out.path().join("hook.sh");
    fs::write(&hook, HOOK).expect("write the hook");
    let command = format!("sh {} {} {args}", hook.display(), out.path().display());
    let d = Daemon::start(bin, |s| {
        s.set("GSMTP_STORAGE", "pipe")
            .set("GSMTP_PIPE_COMMAND", &command)
            .set("GSMTP_MAX_SIZE", "30000000");
        tweak(s);
    });
    (d, out)
}

fn session(d: &Daemon) -> Client {
    let mut c = Client::connect(d.smtp);
    assert_eq!(c.reply().code, 220);
    c.ehlo("client.example");
    c
}

/// The peak resident memory of a process, in KiB.
pub fn peak_rss_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/<pid>/status")
}

/// A body of about `mib` MiB of numbered lines.
pub fn big_body(mib: usize) -> Vec<u8> {
    let mut body = Vec::with_capacity(mib << 20);
    let mut i = 0u32;
    while body.len() < mib << 20 {
        body.extend_from_slice(format!("{i:08} {}\r\n", "abcdefghij".repeat(9)).as_bytes());
        i += 1;
    }
    body
}

/// The arguments the pipe tests give [`HOOK`] after its folder.
const PIPE_ARGS: &str = "--flag 'two words'";

/// `GSMTP_STORAGE=pipe`: the message (with `Return-Path` and `Received` first) on the
/// command's standard input, the envelope in its environment, and its arguments split as
/// a shell would, run without one.
pub fn pipe_message_environment_and_arguments(bin: &str) {
    let (_d, out, mut c) = pipe_session(bin);
    let msg = message("pipe");
    let r = c.send_mail("a@example.net", &["u@example.com", "v@example.com"], &msg);
    assert_eq!(r.code, 250, "{r:?}");
    let id = queued_id(&r.wire());
    let stored = fs::read(out.path().join(format!("{id}.eml"))).expect("the hook's copy");
    let text = String::from_utf8_lossy(&stored);
    assert!(text.starts_with("Return-Path: <a@example.net>\r\nReceived: from client.example (unknown [127.0.0.1])\r\n"), "{text}");
    assert!(!text.contains("Delivered-To"), "{text}");
    assert!(stored.ends_with(&msg));
    let env = fs::read_to_string(out.path().join(format!("{id}.env"))).expect("env");
    for line in [
        "SMTP_MAIL_FROM=a@example.net",
        "SMTP_RCPT_TO=u@example.com v@example.com",
        "SMTP_CLIENT_ADDR=127.0.0.1",
        "SMTP_CLIENT_NAME=unknown",
        "SMTP_HELO=client.example",
        &format!("SMTP_QUEUE_ID={id}"),
        "SMTP_TLS=none",
    ] {
        assert!(env.lines().any(|l| l == line), "no {line} in\n{env}");
    }
    let args = fs::read_to_string(out.path().join(format!("{id}.args"))).expect("args");
    assert_eq!(
        args, "--flag two words\n",
        "split as a shell would, run without one"
    );
}

/// Each exit status of the pipe command gives its reply, an RFC 3463 code in its output
/// takes precedence, a crash is `451`; the session goes on after each, and the refusal
/// is logged with the status and the output.
pub fn pipe_exit_statuses_give_their_replies(bin: &str) {
    let (d, _out, mut c) = pipe_session(bin);
    let table = [
        ("exit65", "554 5.6.0 exiting 65"),
        ("exit67", "550 5.1.1 exiting 67"),
        ("exit77", "550 5.7.1 exiting 77"),
        ("exit75", "451 4.3.0 exiting 75"),
        ("exit1", "451 4.3.0 exiting 1"),
        ("exit42", "451 4.3.0 exiting 42"),
        ("crash", "451 4.3.0 Error: delivery command failed"),
        ("full", "550 5.2.2 mailbox full"),
    ];
    for (user, want) in table {
        let r = c.send_mail("a@example.net", &[&format!("{user}@example.com")], b"x\r\n");
        assert_eq!(r.wire(), format!("{want}\r\n"), "{user}");
        assert_eq!(c.cmd("NOOP").code, 250, "the session goes on");
    }
    d.wait_log(&[
        "refused",
        "code=550",
        "status=5.1.1",
        "destination=pipe",
        "ended with status 67",
        "output: exiting 67",
    ]);
}

/// A 25 MiB message reaches the pipe command whole, spooled to disk: the server's memory
/// grows by far less than its size.
pub fn pipe_big_message_in_bounded_memory(bin: &str) {
    let (d, out, mut c) = pipe_session(bin);
    warm_up(&mut c);
    let before = peak_rss_kib(d.pid());
    let body = big_body(25);
    let r = c.send_mail("a@example.net", &["u@example.com"], &body);
    assert_eq!(r.code, 250, "{r:?}");
    let id = queued_id(&r.wire());
    let stored = fs::read(out.path().join(format!("{id}.eml"))).expect("the hook's copy");
    assert!(stored.ends_with(&body) && stored.len() < body.len() + 1000);
    let grown = peak_rss_kib(d.pid()).saturating_sub(before);
    assert!(
        grown < 8 * 1024,
        "the server grew by {grown} KiB for a 25 MiB message"
    );
}

/// SIGKILL under load: every message acknowledged by the server reached the pipe command.
pub fn pipe_acknowledged_survive_sigkill(bin: &str) {
    let (mut d, out) = pipe_daemon(bin, PIPE_ARGS, |_| {});
    for id in acknowledged_until_killed(&mut d, 30) {
        assert!(
            out.path().join(format!("{id}.eml")).exists(),
            "acknowledged {id} is missing"
        );
    }
}

/// A pipe command that is not found stops startup, naming the key and the command.
pub fn pipe_missing_command_stops_startup(bin: &str) {
    let dir = TempDir::new("nopipe");
    let mut s = Settings::defaults(dir.path());
    s.set("GSMTP_STORAGE", "pipe")
        .set("GSMTP_PIPE_COMMAND", "no-such-command-here -x");
    let err = refuses(bin, &dir, &s);
    assert!(
        err.contains("config key GSMTP_PIPE_COMMAND: no-such-command-here: no such executable"),
        "{err}"
    );
}

/// A daemon running [`HOOK`] with [`PIPE_ARGS`], its folder, and a session with it.
fn pipe_session(bin: &str) -> (Daemon, TempDir, Client) {
    let (d, out) = pipe_daemon(bin, PIPE_ARGS, |_| {});
    let c = session(&d);
    (d, out, c)
}

/// One small message first, so that a memory measurement after it sees what a big
/// message adds, not what the first message of a process sets up.
fn warm_up(c: &mut Client) {
    let r = c.send_mail("a@example.net", &["u@example.com"], &message("warm-up"));
    assert_eq!(r.code, 250, "{r:?}");
}

/// The pipe daemon the timeout and concurrency tests use: `GSMTP_PIPE_TIMEOUT=1`,
/// `GSMTP_PIPE_CONCURRENCY=1`.
fn pipe_daemon_one_at_a_time(bin: &str) -> (Daemon, TempDir) {
    pipe_daemon(bin, "", |s| {
        s.set("GSMTP_PIPE_TIMEOUT", "1")
            .set("GSMTP_PIPE_CONCURRENCY", "1");
    })
}

/// `GSMTP_PIPE_TIMEOUT`: a command that does not finish in time gets its whole process
/// group killed (its children too) and the message `451 4.4.7`.
pub fn pipe_timeout_kills_the_group(bin: &str) {
    let (d, out) = pipe_daemon_one_at_a_time(bin);
    let mut c = session(&d);
    let started = Instant::now();
    let r = c.send_mail("a@example.net", &["sleep@example.com"], b"x\r\n");
    assert_eq!(
        r.wire(),
        "451 4.4.7 Error: delivery timed out, try again later\r\n"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let pid = fs::read_to_string(out.path().join("sleeper.pid")).expect("the sleeper's pid");
    let gone = wait_until(Duration::from_secs(5), || {
        !Path::new(&format!("/proc/{}", pid.trim())).exists()
    });
    assert!(gone, "the command's child was killed with its group");
}

/// `GSMTP_PIPE_CONCURRENCY` bounds the runs at once: two sessions at once with one run
/// allowed, and the hook's lock never collides.
pub fn pipe_concurrency_bounds_the_runs(bin: &str) {
    let (d, _out) = pipe_daemon_one_at_a_time(bin);
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let addr = d.smtp;
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                c.reply();
                c.ehlo("client.example");
                c.send_mail("a@example.net", &["slow@example.com"], b"x\r\n")
                    .code
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().expect("a session"), 250);
    }
}

/// With `GSMTP_PIPE_PER_RECIPIENT`, a second RCPT gets `452 4.5.3` and `${recipient}`
/// names the one recipient; the client sends the other one in its own transaction.
pub fn pipe_per_recipient_transactions(bin: &str) {
    let (d, out) = pipe_daemon(bin, "-d ${recipient} -u ${user} -f ${sender}", |s| {
        s.set("GSMTP_PIPE_PER_RECIPIENT", "Y");
    });
    let mut c = session(&d);
    assert_eq!(c.cmd("MAIL FROM:<a@example.net>").code, 250);
    assert_eq!(c.cmd("RCPT TO:<u@example.com>").code, 250);
    assert_eq!(
        c.cmd("RCPT TO:<v@example.com>").wire(),
        "452 4.5.3 Error: too many recipients\r\n"
    );
    assert_eq!(c.cmd("DATA").code, 354);
    c.send(b"one\r\n.\r\n");
    let r = c.reply();
    assert_eq!(r.code, 250);
    let id = queued_id(&r.wire());
    let args = fs::read_to_string(out.path().join(format!("{id}.args"))).expect("args");
    assert_eq!(args, "-d u@example.com -u u -f a@example.net\n");
    // The client sends the other recipient again, in its own transaction.
    assert_eq!(
        c.send_mail("a@example.net", &["v@example.com"], b"two\r\n")
            .code,
        250
    );
}

/// An HTTP receiver, in Python's standard library: takes each request's
/// `multipart/form-data` body apart (the part `envelope`, JSON, and the part `message`),
/// stores the message of each request it answers `2xx` as `<queue id>.eml`, synced before
/// it answers (its headers, its envelope, and whether the signature checked out, in
/// `<queue id>.json`), logs each request's client port to `conns.log`, and answers as
/// the first recipient's local part says (`status403@` gets 403 with a text, `slow@`
/// waits 5 s first). Arguments: port, folder, secret, and for HTTPS the certificate and
/// key files.
pub const RECEIVER: &str = r#"
import hashlib, hmac, http.server, json, os, socketserver, ssl, sys, threading, time
port, out, secret = int(sys.argv[1]), sys.argv[2], sys.argv[3].encode()
requests, lock = 0, threading.Lock()
def form_parts(ctype, body):
    """The parts of a multipart/form-data body, by name (RFC 7578), octet for octet."""
    if not ctype.startswith("multipart/form-data") or "boundary=" not in ctype:
        return {}
    delim = b"--" + ctype.split("boundary=", 1)[1].strip('"').encode()
    if not body.startswith(delim + b"\r\n"):
        return {}
    parts = {}
    for seg in body[len(delim) + 2:].split(b"\r\n" + delim):
        if seg.startswith(b"--"):
            break
        seg = seg[2:] if seg.startswith(b"\r\n") else seg
        head, _, content = seg.partition(b"\r\n\r\n")
        name = head.split(b'name="', 1)[1].split(b'"', 1)[0].decode()
        parts[name] = content
    return parts
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *args):
        pass
    def do_HEAD(self):
        self.send_response(405)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n)
        global requests
        with lock:
            requests += 1
            n = requests
        # Named by queue id; requests without one (a bare load) by their number.
        qid = self.headers.get("X-Smtp-Queue-Id", "request-%d" % n)
        sig = self.headers.get("X-Smtp-Signature", "")
        verified = False
        if sig:
            parts = dict(p.split("=", 1) for p in sig.split(","))
            covered = sorted("%s:%s\n" % (k.lower(), v) for k, v in self.headers.items()
                             if k.lower().startswith("x-smtp-") and k.lower() != "x-smtp-signature")
            signed = parts["t"].encode() + b"." + "".join(covered).encode() + b"\n"
            mac = hmac.new(secret, signed + body, hashlib.sha256).hexdigest()
            verified = hmac.compare_digest(mac, parts["v1"])
        form = form_parts(self.headers.get("Content-Type", ""), body)
        envelope = json.loads(form["envelope"]) if "envelope" in form else {}
        message = form.get("message", body)
        rcpts = envelope.get("rcpt_to") or [""]
        local = rcpts[0].split("@")[0]
        with open(os.path.join(out, "conns.log"), "a") as f:
            f.write("%d\n" % self.client_address[1])
        status, text = 200, b"stored\n"
        if local.startswith("status"):
            status, text = int(local[6:]), b"spam, go away\nsecond line\n"
        if local == "slow":
            time.sleep(5)
        if status // 100 == 2:
            with open(os.path.join(out, qid + ".eml"), "wb") as f:
                f.write(message)
                f.flush()
                os.fsync(f.fileno())
            with open(os.path.join(out, qid + ".json"), "w") as f:
                json.dump({"headers": [[k, v] for k, v in self.headers.items()],
                           "verified": verified, "envelope": envelope,
                           "parts": sorted(form)}, f)
        self.send_response(status)
        if status in (301, 302):
            self.send_header("Location", "http://example.invalid/")
        self.send_header("Content-Length", str(len(text)))
        if self.headers.get("Connection", "").lower() == "keep-alive":
            self.send_header("Connection", "keep-alive")  # for HTTP/1.0 clients (ab)
        self.end_headers()
        self.wfile.write(text)
class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024
server = Server(("127.0.0.1", port), Handler)
if len(sys.argv) > 4:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(sys.argv[4], sys.argv[5])
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
server.serve_forever()
"#;

/// The secret both the server and the receiver know.
const SECRET: &str = "s3cret-for-tests";

/// Starts the test HTTP receiver (Python's `http.server`, storing and syncing each
/// message it answers `2xx` as `<queue id>.eml`) on `port`, storing into `out`; with
/// `tls`, over HTTPS with the test certificate.
pub fn http_receiver(port: u16, out: &Path, tls: bool) -> super::daemon::Proc {
    let mut cmd = std::process::Command::new("python3");
    cmd.args(["-c", RECEIVER, &port.to_string()])
        .arg(out)
        .arg(SECRET);
    if tls {
        cmd.arg(crate::cert_dir().join("cert.pem"))
            .arg(crate::cert_dir().join("key.pem"));
    }
    let mut p = super::daemon::Proc::spawn("http receiver", &mut cmd, &out.join("receiver.log"));
    p.wait_listening(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    p
}

/// A test HTTP receiver (plain HTTP) and the folder it stores into, with a daemon
/// delivering to it with the secret, a 2 s timeout and room for 25 MiB.
pub(super) struct HttpSetup {
    pub(super) d: Daemon,
    rx: super::daemon::Proc,
    port: u16,
    pub(super) out: TempDir,
}

impl HttpSetup {
    fn start(bin: &str) -> Self {
        Self::start_with(bin, |_| {})
    }

    /// [`HttpSetup::start`] with `tweak` applied to the server's settings last.
    pub(super) fn start_with(bin: &str, tweak: impl FnOnce(&mut Settings)) -> Self {
        let out = TempDir::new("receiver");
        let port = super::daemon::free_port();
        let rx = http_receiver(port, out.path(), false);
        let url = format!("http://127.0.0.1:{port}/inbound");
        let d = Daemon::start(bin, |s| {
            s.set("GSMTP_STORAGE", "http")
                .set("GSMTP_HTTP_URL", &url)
                .set("GSMTP_HTTP_SECRET", SECRET)
                .set("GSMTP_HTTP_TIMEOUT", "2")
                .set("GSMTP_MAX_SIZE", "30000000");
            tweak(s);
        });
        Self { d, rx, port, out }
    }

    /// The secret is never logged, whatever the test did.
    fn secret_never_logged(&self) {
        assert!(!self.d.log().contains(SECRET), "the secret was logged");
    }
}

/// `GSMTP_STORAGE=http` against a real receiver: the message (trace headers first) in
/// the `message` part, the envelope as JSON in the `envelope` part and in `X-Smtp-*`
/// headers, the signature checked on the receiver's side.
pub fn http_message_envelope_and_signature(bin: &str) {
    let h = HttpSetup::start(bin);
    let mut c = session(&h.d);
    let msg = message("http");
    let r = c.send_mail("a@example.net", &["u@example.com", "v@example.com"], &msg);
    assert_eq!(r.code, 250, "{r:?}");
    let id = queued_id(&r.wire());
    let stored = fs::read(h.out.path().join(format!("{id}.eml"))).expect("the receiver's copy");
    let text = String::from_utf8_lossy(&stored);
    assert!(text.starts_with("Return-Path: <a@example.net>\r\nReceived: from client.example (unknown [127.0.0.1])\r\n"), "{text}");
    assert!(stored.ends_with(&msg));
    let meta = fs::read_to_string(h.out.path().join(format!("{id}.json"))).expect("headers");
    assert!(
        meta.contains("\"verified\": true"),
        "the signature checks out: {meta}"
    );
    assert!(
        meta.contains(&format!(
            "\"envelope\": {{\"mail_from\": \"a@example.net\", \"rcpt_to\": [\"u@example.com\", \"v@example.com\"], \
             \"client_addr\": \"127.0.0.1\", \"client_name\": \"unknown\", \"helo\": \"client.example\", \
             \"queue_id\": \"{id}\", \"tls\": \"none\"}}"
        )),
        "the JSON envelope: {meta}"
    );
    assert!(
        meta.contains("\"parts\": [\"envelope\", \"message\"]"),
        "{meta}"
    );
    for header in [
        "[\"Content-Type\", \"multipart/form-data; boundary=guerrilla-".to_string(),
        "[\"X-Smtp-Mail-From\", \"a@example.net\"]".into(),
        "[\"X-Smtp-Rcpt-Count\", \"2\"]".into(),
        "[\"X-Smtp-Client-Addr\", \"127.0.0.1\"]".into(),
        "[\"X-Smtp-Client-Name\", \"unknown\"]".into(),
        "[\"X-Smtp-Helo\", \"client.example\"]".into(),
        format!("[\"X-Smtp-Queue-Id\", \"{id}\"]"),
        "[\"X-Smtp-Tls\", \"none\"]".into(),
    ] {
        // Header names are case-insensitive (hyper sends them in lower case).
        assert!(
            meta.to_lowercase().contains(&header.to_lowercase()),
            "no {header} in {meta}"
        );
    }
    h.secret_never_logged();
}

/// Five messages in one session go over one kept-alive connection to the receiver.
pub fn http_connections_are_reused(bin: &str) {
    let h = HttpSetup::start(bin);
    let mut c = session(&h.d);
    let r = c.send_mail(
        "a@example.net",
        &["u@example.com", "v@example.com"],
        &message("http"),
    );
    assert_eq!(r.code, 250, "{r:?}");
    for _ in 0..4 {
        assert_eq!(
            c.send_mail("a@example.net", &["u@example.com"], b"again\r\n")
                .code,
            250
        );
    }
    let conns = fs::read_to_string(h.out.path().join("conns.log")).expect("conns.log");
    let ports: std::collections::HashSet<&str> = conns.lines().collect();
    assert_eq!(
        (conns.lines().count(), ports.len()),
        (5, 1),
        "one kept-alive connection"
    );
    h.secret_never_logged();
}

/// Each status class of the receiver gives its reply (its text for a refusal), and a
/// receiver slower than `GSMTP_HTTP_TIMEOUT` is `451`.
pub fn http_status_classes_give_their_replies(bin: &str) {
    let h = HttpSetup::start(bin);
    let mut c = session(&h.d);
    let table = [
        ("status403", "550 5.7.1 spam, go away"),
        ("status406", "550 5.7.1 spam, go away"),
        ("status422", "550 5.7.1 spam, go away"),
        ("status413", "552 5.3.4 spam, go away"),
        (
            "status500",
            "451 4.3.0 Error: the receiver failed, try again later",
        ),
        (
            "status503",
            "451 4.3.0 Error: the receiver failed, try again later",
        ),
        (
            "status404",
            "451 4.3.0 Error: the receiver failed, try again later",
        ),
        (
            "status302",
            "451 4.3.0 Error: the receiver failed, try again later",
        ),
        (
            "slow",
            "451 4.3.0 Error: the receiver failed, try again later",
        ),
    ];
    for (user, want) in table {
        let r = c.send_mail("a@example.net", &[&format!("{user}@example.com")], b"x\r\n");
        assert_eq!(r.wire(), format!("{want}\r\n"), "{user}");
    }
    h.secret_never_logged();
}

/// The receiver goes away, then comes back: `451` meanwhile, then `250` again, the
/// server recovering on its own.
pub fn http_receiver_away_and_back(bin: &str) {
    let mut h = HttpSetup::start(bin);
    let mut c = session(&h.d);
    let r = c.send_mail("a@example.net", &["u@example.com"], b"before\r\n");
    assert_eq!(r.code, 250, "{r:?}");
    h.rx.stop();
    let r = c.send_mail("a@example.net", &["u@example.com"], b"nobody there\r\n");
    assert_eq!(r.code, 451, "{r:?}");
    let _rx = http_receiver(h.port, h.out.path(), false);
    let r = c.send_mail("a@example.net", &["u@example.com"], b"back\r\n");
    assert_eq!(r.code, 250, "{r:?}");
    h.secret_never_logged();
}

/// A 25 MiB message is streamed from the spool to the receiver, with the server's memory
/// growing by far less than its size.
pub fn http_big_message_in_bounded_memory(bin: &str) {
    let h = HttpSetup::start(bin);
    let mut c = session(&h.d);
    warm_up(&mut c);
    let before = peak_rss_kib(h.d.pid());
    let body = big_body(25);
    let r = c.send_mail("a@example.net", &["u@example.com"], &body);
    assert_eq!(r.code, 250, "{r:?}");
    let id = queued_id(&r.wire());
    let stored = fs::read(h.out.path().join(format!("{id}.eml"))).expect("the receiver's copy");
    assert!(stored.ends_with(&body));
    let grown = peak_rss_kib(h.d.pid()).saturating_sub(before);
    assert!(
        grown < 8 * 1024,
        "the server grew by {grown} KiB for a 25 MiB message"
    );
    h.secret_never_logged();
}

/// SIGKILL under load: every message the server acknowledged is at the receiver.
pub fn http_acknowledged_survive_sigkill(bin: &str) {
    let mut h = HttpSetup::start(bin);
    h.secret_never_logged();
    for id in acknowledged_until_killed(&mut h.d, 30) {
        assert!(
            h.out.path().join(format!("{id}.eml")).exists(),
            "acknowledged {id} is missing"
        );
    }
}

/// HTTPS, the receiver's certificate signed by a private CA (`GSMTP_HTTP_CA`).
pub fn http_over_https_with_a_private_ca(bin: &str) {
    let tls_out = TempDir::new("receiver-tls");
    let tls_port = super::daemon::free_port();
    let _tls_rx = http_receiver(tls_port, tls_out.path(), true);
    let url = format!("https://127.0.0.1:{tls_port}/");
    let ca = crate::cert_dir().join("ca.pem").display().to_string();
    let d = Daemon::start(bin, |s| {
        s.set("GSMTP_STORAGE", "http")
            .set("GSMTP_HTTP_URL", &url)
            .set("GSMTP_HTTP_CA", &ca);
    });
    let mut c = session(&d);
    let r = c.send_mail("a@example.net", &["u@example.com"], b"over TLS\r\n");
    assert_eq!(r.code, 250, "{r:?}");
    let id = queued_id(&r.wire());
    assert!(
        fs::read(tls_out.path().join(format!("{id}.eml")))
            .expect("stored")
            .ends_with(b"over TLS\r\n")
    );
}

/// HTTP settings that cannot work (a missing or bad URL, a CA file that is not there)
/// stop startup, naming the key; an unreachable receiver at start is fine.
pub fn http_settings_that_cannot_work(bin: &str) {
    for (url, key) in [
        ("", "GSMTP_HTTP_URL"),
        ("ftp://x/", "GSMTP_HTTP_URL"),
        ("https://127.0.0.1:1/", ""),
    ] {
        let dir = TempDir::new("badhttp");
        let mut s = Settings::defaults(dir.path());
        s.set("GSMTP_STORAGE", "http").set("GSMTP_HTTP_URL", url);
        if key.is_empty() {
            // An unreachable receiver at start is fine: the server starts.
            s.set("GSMTP_HTTP_CA", "/nonexistent/ca.pem");
        }
        let err = refuses(bin, &dir, &s);
        let key = if key.is_empty() { "GSMTP_HTTP_CA" } else { key };
        assert!(err.contains(&format!("config key {key}")), "{url}: {err}");
    }
}

/// Four clients send messages to `d` as fast as they can; once `after` have been
/// acknowledged, the server is killed with SIGKILL. Returns the queue ids of every
/// message acknowledged (`250`) before the kill.
pub fn acknowledged_until_killed(d: &mut Daemon, after: usize) -> Vec<String> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    let acked = Arc::new(Mutex::new(Vec::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (addr, acked, count) = (d.smtp, Arc::clone(&acked), Arc::clone(&count));
            std::thread::spawn(move || {
                let Ok(tcp) = std::net::TcpStream::connect(addr) else {
                    return;
                };
                let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
                let mut c = Client::from_stream(tcp);
                if c.try_reply().map(|r| r.code) != Some(220) {
                    return;
                }
                let _ = c.try_cmd("EHLO client.example");
                for i in 0.. {
                    let body = format!("Subject: load {t}-{i}\r\n\r\nline\r\n");
                    let Some(r) = c.try_mail("a@example.net", &["u@example.com"], body.as_bytes())
                    else {
                        return;
                    };
                    if r.code == 250 {
                        acked.lock().expect("acked").push(queued_id(&r.wire()));
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    wait_until(Duration::from_secs(30), || {
        count.load(Ordering::Relaxed) >= after
    });
    d.kill();
    for t in threads {
        let _ = t.join();
    }
    let ids = acked.lock().expect("acked").clone();
    assert!(ids.len() >= after, "only {} acknowledged", ids.len());
    ids
}

/// A fake destination on loopback that serves every connection with `answer` (after
/// reading what comes, if `read`), then keeps it open for three seconds.
fn liar(answer: &'static [u8], read: bool) -> std::net::SocketAddr {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut s = s;
                let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
                if read {
                    let _ = s.read(&mut [0u8; 65536]);
                }
                let _ = s.write_all(answer);
                std::thread::sleep(Duration::from_secs(3));
            });
        }
    });
    addr
}

/// A destination of kind `storage` (`lmtp` or `http`) at `addr` that answers nonsense or
/// nothing: the reply (to MAIL for LMTP, to the message for HTTP) starts with `want`,
/// and the session and the server go on.
fn garbage_destination(bin: &str, storage: &str, addr: std::net::SocketAddr, want: &str) {
    let d = Daemon::start(bin, |s| {
        s.set("GSMTP_STORAGE", storage)
            .set("GSMTP_LMTP_ADDR", &addr.to_string())
            .set("GSMTP_LMTP_TIMEOUT", "1")
            .set("GSMTP_HTTP_URL", &format!("http://{addr}/"))
            .set("GSMTP_HTTP_TIMEOUT", "1");
    });
    let mut c = session(&d);
    let r = match storage {
        "lmtp" => c.cmd("MAIL FROM:<a@example.net>"),
        _ => c.send_mail("a@example.net", &["u@example.com"], b"x\r\n"),
    };
    assert!(r.wire().starts_with(want), "{storage} at {addr}: {r:?}");
    assert_eq!(c.cmd("NOOP").code, 250, "the session goes on");
    let mut other = session(&d);
    assert_eq!(other.cmd("QUIT").code, 221, "the server goes on");
}

/// An "LMTP server" that speaks HTTP: `451 4.3.0` at MAIL; the session and the server
/// go on.
pub fn lmtp_speaking_http_is_4xx(bin: &str) {
    let addr = liar(b"HTTP/1.1 400 Bad Request\r\n\r\n", false);
    garbage_destination(bin, "lmtp", addr, "451 4.3.0 ");
}

/// An LMTP server that never answers: `451 4.4.7` at MAIL after `GSMTP_LMTP_TIMEOUT`;
/// the session and the server go on.
pub fn lmtp_never_answering_is_4xx(bin: &str) {
    let addr = liar(b"", false);
    garbage_destination(bin, "lmtp", addr, "451 4.4.7 ");
}

/// An "HTTP receiver" that speaks SMTP: `451 4.3.0` for the message; the session and the
/// server go on.
pub fn http_speaking_smtp_is_4xx(bin: &str) {
    let addr = liar(b"220 mx.test ESMTP not HTTP\r\n", true);
    garbage_destination(bin, "http", addr, "451 4.3.0 ");
}

/// LMTP settings that cannot work (no address, an address that is not one) stop
/// startup, naming the key.
pub fn lmtp_settings_that_cannot_work(bin: &str) {
    for (addr, key) in [("", "GSMTP_LMTP_ADDR"), ("nowhere", "GSMTP_LMTP_ADDR")] {
        let dir = TempDir::new("badlmtp");
        let mut s = Settings::defaults(dir.path());
        s.set("GSMTP_STORAGE", "lmtp").set("GSMTP_LMTP_ADDR", addr);
        let err = refuses(bin, &dir, &s);
        assert!(err.contains(&format!("config key {key}")), "{addr}: {err}");
    }
}

/// The S3 secret key the tests below give, never to be shown.
const S3_SECRET_KEY: &str = "never-shown-secret";

/// S3 settings that cannot work stop startup with one line naming the key, and never
/// show the secret.
pub fn s3_settings_that_cannot_work(bin: &str) {
    const SECRET_KEY: &str = S3_SECRET_KEY;
    let cases: [(&[(&str, &str)], &str); 5] = [
        (&[("GSMTP_S3_BUCKET", "mail")], "GSMTP_S3_ENDPOINT"),
        (
            &[("GSMTP_S3_ENDPOINT", "http://127.0.0.1:1")],
            "GSMTP_S3_BUCKET",
        ),
        (
            &[
                ("GSMTP_S3_ENDPOINT", "http://127.0.0.1:1/path"),
                ("GSMTP_S3_BUCKET", "mail"),
            ],
            "GSMTP_S3_ENDPOINT",
        ),
        (
            &[
                ("GSMTP_S3_ENDPOINT", "http://127.0.0.1:1"),
                ("GSMTP_S3_BUCKET", "Bad_Bucket"),
            ],
            "GSMTP_S3_BUCKET",
        ),
        (
            &[
                ("GSMTP_S3_ENDPOINT", "http://127.0.0.1:1"),
                ("GSMTP_S3_BUCKET", "mail"),
                ("GSMTP_S3_SECRET_KEY", SECRET_KEY),
            ],
            "GSMTP_S3_ACCESS_KEY",
        ),
    ];
    for (settings, key) in cases {
        let dir = TempDir::new("bads3");
        let mut s = Settings::defaults(dir.path());
        s.set("GSMTP_STORAGE", "s3");
        for (k, v) in settings {
            s.set(k, v);
        }
        let err = refuses(bin, &dir, &s);
        assert!(
            err.contains(&format!("config key {key}")),
            "{settings:?}: {err}"
        );
        assert!(!err.contains(SECRET_KEY), "the secret was shown: {err}");
    }
}

/// A store that is down at start is fine: the server starts, answers `451` (until it is
/// up), logs the cause, and never logs the secret.
pub fn s3_store_down_at_start_is_451(bin: &str) {
    const SECRET_KEY: &str = S3_SECRET_KEY;
    let d = Daemon::start(bin, |s| {
        s.set("GSMTP_STORAGE", "s3")
            .set("GSMTP_S3_ENDPOINT", "http://127.0.0.1:1")
            .set("GSMTP_S3_BUCKET", "mail")
            .set("GSMTP_S3_ACCESS_KEY", "GKtest")
            .set("GSMTP_S3_SECRET_KEY", SECRET_KEY);
    });
    let mut c = session(&d);
    let r = c.send_mail("a@example.net", &["u@example.com"], b"x\r\n");
    assert_eq!(
        r.wire(),
        "451 4.3.0 Error: the object store failed, try again later\r\n"
    );
    d.wait_log(&[
        "refused",
        "destination=s3",
        "cause=\"http://127.0.0.1:1/ key ",
    ]);
    assert!(!d.log().contains(SECRET_KEY), "the secret was logged");
}
