//! The door: early talkers (`GSMTP_GREET_PAUSE`) and AUTH (`GSMTP_AUTH`), against real
//! clients: swaks, Python's smtplib, curl and Postfix's smtp-source must get through, a
//! client that writes before the greeting must not, and the password file is made by
//! `htpasswd -B` (bcrypt) and `argon2` (Argon2id PHC strings).

use std::fs;
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use super::daemon::{Daemon, Settings, free_addr, queued_id, run_ok};
use super::operate::{http_get, series};
use crate::{Client, cert_dir};

/// The recipient of every message here, and its folder.
const RCPT: &str = "u@example.com";
const FOLDER: &str = "example.com/u";

fn ca() -> String {
    cert_dir().join("ca.pem").display().to_string()
}

/// Our server with `pause` (seconds) as `GSMTP_GREET_PAUSE`, the metrics on, and
/// `tweak` applied; and the metrics' address.
fn with_pause(bin: &str, pause: &str, tweak: impl FnOnce(&mut Settings)) -> (Daemon, SocketAddr) {
    let metrics = free_addr();
    let d = Daemon::start(bin, |s| {
        s.set("GSMTP_GREET_PAUSE", pause)
            .set("GSMTP_METRICS_LISTEN", &metrics.to_string());
        tweak(s);
    });
    (d, metrics)
}

/// A client that writes `what` before reading anything, then reads all it is sent
/// until the server closes: the text, and how long the server took to close.
fn early_talker(addr: SocketAddr, what: &[u8]) -> (String, Duration) {
    use std::io::{Read, Write};
    let started = Instant::now();
    let mut tcp = std::net::TcpStream::connect(addr).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(15)))
        .expect("a timeout");
    tcp.write_all(what).expect("send");
    let mut got = Vec::new();
    let _ = tcp.read_to_end(&mut got);
    (
        String::from_utf8_lossy(&got).into_owned(),
        started.elapsed(),
    )
}

/// Real clients wait for the greeting: swaks (with pipelining), smtplib, curl and
/// smtp-source all deliver with `pause`; nothing is counted as an early talker.
fn real_clients_pass(bin: &str, pause: &str) {
    let (d, metrics) = with_pause(bin, pause, |_| {});
    let addr = d.smtp.to_string();
    let out = run_ok(
        Command::new("swaks")
            .args(["--server", &addr, "--to", RCPT, "--pipeline"])
            .args(["--ehlo", "client.example", "--timeout", "20"]),
    );
    queued_id(&out);
    let script = "import smtplib, sys\n\
        s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]), timeout=20)\n\
        s.ehlo('client.example')\n\
        s.sendmail('a@example.net', ['u@example.com'], b'Subject: smtplib\\r\\n\\r\\nhi\\r\\n')\n\
        s.quit()\n";
    run_ok(Command::new("python3").args(["-c", script, &d.smtp.port().to_string()]));
    let eml = d.dir().join("curl.eml");
    fs::write(&eml, b"Subject: curl\r\n\r\nhi\r\n").expect("write");
    run_ok(
        Command::new("curl")
            .args(["-sS", "--max-time", "20", "--mail-from", "a@example.net"])
            .args(["--mail-rcpt", RCPT, "--upload-file"])
            .arg(&eml)
            .arg(format!("smtp://{addr}/client.example")),
    );
    // Postfix's SMTP client engine: 20 messages over 4 sessions, pipelining.
    run_ok(
        Command::new("smtp-source")
            .args(["-s", "4", "-m", "20", "-f", "a@example.net", "-t", RCPT])
            .arg(&addr),
    );
    let stored = d.stored(FOLDER).len();
    assert_eq!(stored, 23, "pause {pause}: {}", d.log());
    let (_, text) = http_get(metrics, "/metrics");
    let early = series(&text, "smtp_sessions_closed_total{reason=\"early-talker\"}");
    assert_eq!(early, 0.0, "pause {pause}: {text}");
}

/// `GSMTP_GREET_PAUSE` 0 and 2: swaks, smtplib, curl and smtp-source are never taken for
/// early talkers.
pub fn greet_pause_lets_real_clients_through(bin: &str) {
    real_clients_pass(bin, "0");
    real_clients_pass(bin, "2");
}

/// With a pause of 2 s, a client that writes at once gets the greeting's first line,
/// then `554 5.5.1` and the close, well before the pause would have ended; what it
/// wrote is logged (escaped) and counted. A patient client gets the last line after
/// the pause and a normal session.
pub fn greet_pause_refuses_early_talkers(bin: &str) {
    let (d, metrics) = with_pause(bin, "2", |_| {});
    let (got, took) = early_talker(d.smtp, b"EHLO bot\r\nMAIL FROM:<a@b>\r\n");
    assert!(
        got.ends_with("554 5.5.1 Protocol error: talked before the greeting\r\n"),
        "{got:?}"
    );
    assert!(!got.contains("\r\n220 "), "the last line was sent: {got:?}");
    assert!(took < Duration::from_millis(1500), "{took:?}");
    d.wait_log(&["early talker", "EHLO bot\\\\r\\\\nMAIL FROM:<a@b>"]);
    let (_, text) = http_get(metrics, "/metrics");
    let early = series(&text, "smtp_sessions_closed_total{reason=\"early-talker\"}");
    assert_eq!(early, 1.0, "{text}");

    let started = Instant::now();
    let mut c = Client::connect(d.smtp);
    let greeting = c.reply();
    assert_eq!(greeting.code, 220);
    assert_eq!(greeting.lines.len(), 2, "{greeting:?}");
    assert!(started.elapsed() >= Duration::from_secs(2), "{greeting:?}");
    assert_eq!(c.ehlo("client.example").code, 250);
    let r = c.send_mail("a@example.net", &[RCPT], b"Subject: patient\r\n\r\nhi\r\n");
    assert_eq!(r.code, 250, "{r:?}");
}

/// With a pause of 0, input already there when the greeting would be written is an
/// early talker's: behind a PROXY header, sent in the same packet as the header.
pub fn greet_pause_zero_refuses_input_before_the_greeting(bin: &str) {
    let (d, _) = with_pause(bin, "0", |s| {
        s.set("GSMTP_PROXY_PROTOCOL", "Y")
            .set("GSMTP_XCLIENT_HOSTS", "127.0.0.1");
    });
    let (got, _) = early_talker(
        d.smtp,
        b"PROXY TCP4 192.0.2.7 127.0.0.1 40000 25\r\nEHLO bot\r\n",
    );
    assert_eq!(
        got, "554 5.5.1 Protocol error: talked before the greeting\r\n",
        "the greeting was sent: {got:?}"
    );
    d.wait_log(&["early talker", "client=192.0.2.7"]);
}

/// Behind PROXY the pause starts after the header: a header sent 1.5 s after the
/// connection, then a command 1 s later (2.5 s after connecting, after a pause counted
/// from the connection would have ended) is still early.
pub fn greet_pause_starts_after_the_proxy_header(bin: &str) {
    use std::io::{Read, Write};
    let (d, _) = with_pause(bin, "2", |s| {
        s.set("GSMTP_PROXY_PROTOCOL", "Y")
            .set("GSMTP_XCLIENT_HOSTS", "127.0.0.1");
    });
    let mut tcp = std::net::TcpStream::connect(d.smtp).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(15)))
        .expect("a timeout");
    std::thread::sleep(Duration::from_millis(1500));
    tcp.write_all(b"PROXY TCP4 192.0.2.8 127.0.0.1 40000 25\r\n")
        .expect("send");
    std::thread::sleep(Duration::from_secs(1));
    tcp.write_all(b"EHLO impatient\r\n").expect("send");
    let mut got = Vec::new();
    let _ = tcp.read_to_end(&mut got);
    let got = String::from_utf8_lossy(&got);
    assert!(got.starts_with("220-mx.test"), "{got:?}");
    assert!(
        got.ends_with("554 5.5.1 Protocol error: talked before the greeting\r\n"),
        "{got:?}"
    );
    d.wait_log(&["early talker", "client=192.0.2.8"]);
}

/// A password file with `alice` (bcrypt, by `htpasswd -B`) and `bob` (Argon2id, by the
/// `argon2` tool), in `dir`.
fn password_file(dir: &std::path::Path) -> std::path::PathBuf {
    let alice = run_ok(Command::new("htpasswd").args(["-nbB", "alice", "alice pw"]));
    let hash = run_ok(
        Command::new("sh")
            .arg("-c")
            .arg("printf %s 'bob pw' | argon2 0123456789abcdef -id -e"),
    );
    let path = dir.join("users");
    fs::write(
        &path,
        format!("# test users\n{}\nbob:{}\n", alice.trim(), hash.trim()),
    )
    .expect("write the password file");
    path
}

/// Our server with `GSMTP_AUTH=<mode>` (and the password file for `file`), the metrics
/// on; and the metrics' address.
fn with_auth(bin: &str, mode: &str, tweak: impl FnOnce(&mut Settings)) -> (Daemon, SocketAddr) {
    let metrics = free_addr();
    let dir = crate::TempDir::new("auth");
    let users = password_file(dir.path());
    let d = Daemon::start_in(bin, dir, |s| {
        s.set("GSMTP_AUTH", mode)
            .set("GSMTP_AUTH_FILE", &users.display().to_string())
            .set("GSMTP_METRICS_LISTEN", &metrics.to_string());
        tweak(s);
    });
    (d, metrics)
}

/// swaks logs in with `mechanism` over STARTTLS and sends one message; the output.
fn swaks_auth(d: &Daemon, mechanism: &str, user: &str, password: &str) -> std::process::Output {
    super::daemon::run(
        Command::new("swaks")
            .args(["--server", &d.smtp.to_string(), "--to", RCPT])
            .args(["--ehlo", "client.example", "--timeout", "20"])
            .args(["--tls", "--tls-verify", "--tls-ca-path", &ca()])
            .args(["--auth", mechanism, "--auth-user", user])
            .args(["--auth-password", password]),
        b"",
        super::daemon::RUN_LIMIT,
    )
}

/// smtplib's `login()` as `bob` after STARTTLS, the name `mx.test` checked against the
/// test CA, then one message.
const SMTPLIB_LOGIN: &str = r#"
import smtplib, socket, ssl, sys
port, ca = int(sys.argv[1]), sys.argv[2]
class Loopback(smtplib.SMTP):
    def _get_socket(self, host, port, timeout):
        return socket.create_connection(("127.0.0.1", port), timeout)
s = Loopback("mx.test", port, local_hostname="client.example", timeout=20)
s.starttls(context=ssl.create_default_context(cafile=ca))
s.login("bob", "bob pw")
s.sendmail("a@example.net", ["u@example.com"], b"Subject: smtplib\r\n\r\nhi\r\n")
s.quit()
"#;

/// `GSMTP_AUTH=file`: swaks with PLAIN and LOGIN, smtplib's `login()` and curl's
/// `--user`, each over STARTTLS, with a bcrypt and an Argon2 user; each message stored
/// with `ESMTPSA` and the user in the log. A wrong password and an unknown user get
/// `535 5.7.8`.
pub fn auth_file_users_log_in(bin: &str) {
    let (d, metrics) = with_auth(bin, "file", |_| {});
    for (mech, user, password) in [("PLAIN", "alice", "alice pw"), ("LOGIN", "bob", "bob pw")] {
        let out = swaks_auth(&d, mech, user, password);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{mech} {user}: {text}");
        assert!(
            text.contains("235 2.7.0 Authentication successful"),
            "{text}"
        );
    }
    run_ok(Command::new("python3").args(["-c", SMTPLIB_LOGIN, &d.smtp.port().to_string(), &ca()]));
    let eml = d.dir().join("curl.eml");
    fs::write(&eml, b"Subject: curl\r\n\r\nhi\r\n").expect("write");
    let port = d.smtp.port();
    run_ok(
        Command::new("curl")
            .args(["-sS", "--max-time", "20", "--ssl-reqd", "--cacert", &ca()])
            .args(["--resolve", &format!("mx.test:{port}:127.0.0.1")])
            .args(["--user", "alice:alice pw"])
            .args(["--mail-from", "a@example.net", "--mail-rcpt", RCPT])
            .arg("--upload-file")
            .arg(&eml)
            .arg(format!("smtp://mx.test:{port}/client.example")),
    );
    let stored = d.stored(FOLDER);
    assert_eq!(stored.len(), 4, "{}", d.log());
    for m in &stored {
        let text = String::from_utf8_lossy(m);
        assert!(text.contains(" with ESMTPSA id "), "{text}");
    }
    d.wait_log(&["message queued", "auth_user=bob"]);
    d.wait_log(&["message queued", "auth_user=alice"]);

    for (user, password) in [("alice", "bob pw"), ("mallory", "alice pw")] {
        let out = swaks_auth(&d, "PLAIN", user, password);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{user}: {text}");
        assert!(text.contains("535 5.7.8"), "{user}: {text}");
    }
    let log = d.log();
    assert!(
        !log.contains("alice pw") && !log.contains("bob pw"),
        "{log}"
    );
    let (_, text) = http_get(metrics, "/metrics");
    assert_eq!(
        series(&text, "smtp_auth_total{result=\"ok\"}"),
        4.0,
        "{text}"
    );
    assert_eq!(
        series(&text, "smtp_auth_total{result=\"failed\"}"),
        2.0,
        "{text}"
    );
}

/// Before TLS, AUTH is neither offered nor accepted (`538 5.7.11`), and in `file` mode
/// MAIL needs it (`530 5.7.0`); with `GSMTP_AUTH_INSECURE=Y` it is offered in plain.
/// Logging in never makes us a relay: a domain we do not take mail for is refused.
pub fn auth_needs_tls_and_never_relays(bin: &str) {
    let (d, _) = with_auth(bin, "file", |_| {});
    let mut c = Client::connect(d.smtp);
    c.reply();
    let offers_auth = |r: &crate::Reply| r.lines.iter().any(|l| l == "AUTH PLAIN LOGIN");
    let ehlo = c.ehlo("client.example");
    assert!(!offers_auth(&ehlo), "{ehlo:?}");
    assert!(ehlo.lines.iter().any(|l| l == "STARTTLS"), "{ehlo:?}");
    let r = c.cmd("AUTH PLAIN AGFsaWNlAGFsaWNlIHB3");
    assert_eq!(
        (r.code, r.text()),
        (
            538,
            "5.7.11 Encryption required for requested authentication mechanism"
        ),
        "{r:?}"
    );
    let r = c.cmd("MAIL FROM:<a@example.net>");
    assert_eq!(
        (r.code, r.text()),
        (530, "5.7.0 Authentication required"),
        "{r:?}"
    );
    c.cmd("STARTTLS");
    c.upgrade().expect("TLS");
    let ehlo = c.ehlo("client.example");
    assert!(offers_auth(&ehlo), "{ehlo:?}");
    assert_eq!(c.cmd("AUTH PLAIN AGFsaWNlAGFsaWNlIHB3").code, 235);
    c.cmd("MAIL FROM:<a@example.net>");
    let r = c.cmd("RCPT TO:<someone@elsewhere.example>");
    assert_eq!(
        (r.code, r.text()),
        (550, "5.7.1 Error: relay access denied"),
        "{r:?}"
    );
    drop(c);

    let (d, _) = with_auth(bin, "accept-any", |s| {
        s.set("GSMTP_AUTH_INSECURE", "Y");
    });
    let mut c = Client::connect(d.smtp);
    c.reply();
    assert!(offers_auth(&c.ehlo("client.example")));
    // accept-any: MAIL needs no AUTH, and any password passes.
    assert_eq!(c.cmd("MAIL FROM:<a@example.net>").code, 250);
    assert_eq!(c.cmd("RSET").code, 250);
    assert_eq!(c.cmd("AUTH LOGIN").code, 334);
    assert_eq!(c.cmd("YW55b25l").code, 334);
    assert_eq!(c.cmd("YW55dGhpbmc=").code, 235);
    let r = c.send_mail("a@example.net", &[RCPT], b"Subject: any\r\n\r\nhi\r\n");
    assert_eq!(r.code, 250, "{r:?}");
    let stored = d.stored(FOLDER);
    assert!(String::from_utf8_lossy(&stored[0]).contains(" with ESMTPA id "));
}

/// Guessing passwords: each failure is `535 5.7.8` and counts towards
/// `GSMTP_MAX_ERRORS`; the session ends with `421 4.7.0` at the limit.
pub fn auth_brute_force_is_cut_off(bin: &str) {
    let (d, metrics) = with_auth(bin, "file", |s| {
        s.set("GSMTP_MAX_ERRORS", "3")
            .set("GSMTP_AUTH_INSECURE", "Y");
    });
    let mut c = Client::connect(d.smtp);
    c.reply();
    c.ehlo("client.example");
    for guess in ["Z3Vlc3Mx", "Z3Vlc3My"] {
        assert_eq!(c.cmd("AUTH LOGIN YWxpY2U=").code, 334);
        let r = c.cmd(guess);
        assert_eq!(
            (r.code, r.text()),
            (535, "5.7.8 Error: authentication failed")
        );
    }
    c.cmd("AUTH LOGIN YWxpY2U=");
    let r = c.cmd("Z3Vlc3Mz");
    assert_eq!(r.code, 535);
    let r = c.reply();
    assert_eq!(r.code, 421, "{r:?}");
    assert!(c.read_line().is_none(), "still open");
    let (_, text) = http_get(metrics, "/metrics");
    assert_eq!(
        series(&text, "smtp_auth_total{result=\"failed\"}"),
        3.0,
        "{text}"
    );
    d.wait_log(&["authentication failed", "user=alice"]);
}

/// The password file is read again at SIGHUP: a user added to it can log in after the
/// reload; a file with a plain-text password stops the start with exit status 2.
pub fn auth_file_follows_a_reload(bin: &str) {
    let (mut d, _) = with_auth(bin, "file", |s| {
        s.set("GSMTP_AUTH_INSECURE", "Y");
    });
    let login = |d: &Daemon| {
        let mut c = Client::connect(d.smtp);
        c.reply();
        c.ehlo("client.example");
        // carol / carol pw
        c.cmd("AUTH PLAIN AGNhcm9sAGNhcm9sIHB3").code
    };
    assert_eq!(login(&d), 535);
    let carol = run_ok(Command::new("htpasswd").args(["-nbB", "carol", "carol pw"]));
    let users = d.dir().join("users");
    let mut text = fs::read_to_string(&users).expect("the file");
    text.push_str(carol.trim());
    text.push('\n');
    fs::write(&users, text).expect("write");
    d.process().signal(nix::sys::signal::Signal::SIGHUP);
    d.wait_log(&["configuration reloaded"]);
    assert_eq!(login(&d), 235);

    let dir = crate::TempDir::new("auth-plain");
    let plain = dir.path().join("users");
    fs::write(&plain, "dave:secret\n").expect("write");
    let mut s = Settings::defaults(dir.path());
    s.set("GSMTP_AUTH", "file")
        .set("GSMTP_AUTH_FILE", &plain.display().to_string());
    let cfg = dir.path().join("goguerrilla.conf.json");
    s.write(&cfg);
    let out = super::daemon::run(
        Command::new(bin).arg("--config").arg(&cfg),
        b"",
        Duration::from_secs(20),
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("GSMTP_AUTH_FILE") && err.contains("plain-text"),
        "{err}"
    );
}
