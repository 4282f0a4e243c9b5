//! Running the server as an operator does (issue 13): `--check-config`, reloading on
//! SIGHUP, the metrics endpoint, JSON logs. These need no outside program except where
//! noted, and run with every `cargo test`.

use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;

use super::daemon::{Daemon, Settings, run, wait_until};
use crate::{Client, TempDir};

/// How long `--check-config` may take.
const CHECK_LIMIT: Duration = Duration::from_secs(10);

/// `bin --check-config --config <settings>`: its exit code, standard output and error.
fn check_config(bin: &str, dir: &TempDir, settings: &Settings) -> (Option<i32>, String, String) {
    let config = dir.path().join("check.conf");
    settings.write(&config);
    let out = run(
        Command::new(bin)
            .arg("--check-config")
            .arg("--config")
            .arg(&config)
            .current_dir(dir.path()),
        b"",
        CHECK_LIMIT,
    );
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `--check-config` on a good file prints every key with its effective value, secrets
/// masked, as JSON that is itself a usable configuration, warns about a misspelt key with
/// the nearest known one, and exits 0. Nothing is started: the listen port stays free.
pub fn check_config_reports_a_good_file(bin: &str) {
    let dir = TempDir::new("check");
    let mut s = Settings::defaults(dir.path());
    s.set("GM_ALLOWED_HOST", "typo.example")
        .set("GSMTP_HTTP_SECRET", "sesame-1234")
        .set("GSMTP_S3_SECRET_KEY", "sesame-5678");
    let (code, out, err) = check_config(bin, &dir, &s);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("GM_ALLOWED_HOST is unknown and ignored (did you mean GM_ALLOWED_HOSTS?)"),
        "{err}"
    );
    assert!(
        !out.contains("sesame") && !err.contains("sesame"),
        "a secret was shown"
    );
    let shown: serde_json::Value = serde_json::from_str(&out).expect("JSON on stdout");
    assert_eq!(shown["GSMTP_HTTP_SECRET"], proto::config::MASK);
    assert_eq!(shown["GM_ALLOWED_HOSTS"], "example.com,*.example.org");
    assert_eq!(
        shown["GSTMP_LISTEN_INTERFACE"],
        s.get("GSTMP_LISTEN_INTERFACE").unwrap()
    );
    assert_eq!(
        shown.as_object().map(|o| o.len()),
        Some(proto::config::KEYS.len())
    );
    // What it printed is a configuration the server takes as it is.
    let printed = dir.path().join("printed.conf");
    std::fs::write(&printed, &out).expect("write");
    let again = run(
        Command::new(bin)
            .arg("--check-config")
            .arg("--config")
            .arg(&printed),
        b"",
        CHECK_LIMIT,
    );
    assert_eq!(again.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&again.stdout), out);
    assert!(
        std::net::TcpListener::bind(s.listen()).is_ok(),
        "nothing listened"
    );
}

/// `--check-config` on a malformed `GM_ALLOWED_HOSTS`, a certificate that does not load,
/// or a user that does not exist names the key (and the value) and exits 2, printing
/// nothing on standard output.
pub fn check_config_names_a_bad_key(bin: &str) {
    let dir = TempDir::new("check");
    for (key, value, named) in [
        (
            "GM_ALLOWED_HOSTS",
            "example.com, exa mple.org",
            "\"exa mple.org\"",
        ),
        (
            "GSMTP_PUB_KEY",
            "/nonexistent/cert.pem",
            "/nonexistent/cert.pem",
        ),
        ("GUID", "no-such-user-here", "no-such-user-here"),
    ] {
        let mut bad = Settings::defaults(dir.path());
        bad.set(key, value);
        let (code, out, err) = check_config(bin, &dir, &bad);
        assert_eq!(code, Some(2), "{key}: {err}");
        assert!(out.is_empty(), "{key}: {out}");
        let line = err.lines().last().unwrap_or_default();
        assert!(
            line.contains(&format!("config key {key}: ")),
            "{key}: {err}"
        );
        assert!(line.contains(named), "{key}: {err}");
    }
}

/// The subject line of the certificate `addr` presents after STARTTLS (`openssl s_client`).
fn starttls_subject(addr: std::net::SocketAddr) -> String {
    let out = run(
        Command::new("openssl").args([
            "s_client",
            "-starttls",
            "smtp",
            "-connect",
            &addr.to_string(),
            "-servername",
            "mx.test",
        ]),
        b"QUIT\r\n",
        CHECK_LIMIT,
    );
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find(|l| l.starts_with("subject="))
        .unwrap_or_else(|| panic!("no certificate in {text}"))
        .to_string()
}

/// Waits until the log holds `n` lines with `part`.
fn wait_lines(d: &Daemon, part: &str, n: usize) {
    let ok = wait_until(Duration::from_secs(10), || {
        d.log().matches(part).count() >= n
    });
    assert!(ok, "fewer than {n} lines with {part:?} in\n{}", d.log());
}

/// SIGHUP reloads the configuration file: a session open during the reload completes
/// under the configuration it started with (its domains), while a new one gets the new
/// domains and the new certificate.
pub fn sighup_applies_to_new_sessions_only(bin: &str) {
    let mut d = Daemon::start(bin, |s| {
        s.set("GM_ALLOWED_HOSTS", "example.com");
    });
    let config = d.dir().join("guerrilla.conf");
    assert!(
        starttls_subject(d.smtp).contains("CN"),
        "the test certificate"
    );
    let before = starttls_subject(d.smtp);

    // A second certificate, for the reload.
    let (cert, key) = (d.dir().join("new-cert.pem"), d.dir().join("new-key.pem"));
    let made = run(
        Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ])
            .args([
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=reloaded.test",
                "-keyout",
            ])
            .arg(&key)
            .arg("-out")
            .arg(&cert),
        b"",
        CHECK_LIMIT,
    );
    assert!(
        made.status.success(),
        "openssl req: {}",
        String::from_utf8_lossy(&made.stderr)
    );

    // A session in the middle of a transaction.
    let mut old = Client::connect(d.smtp);
    assert_eq!(old.reply().code, 220);
    old.ehlo("client.example");
    assert_eq!(old.cmd("MAIL FROM:<a@example.net>").code, 250);
    assert_eq!(old.cmd("RCPT TO:<u@example.com>").code, 250);

    let mut s = d.settings.clone();
    s.set("GM_ALLOWED_HOSTS", "new.example")
        .set("GSMTP_PUB_KEY", &cert.to_string_lossy())
        .set("GSMTP_PRV_KEY", &key.to_string_lossy());
    s.write(&config);
    d.process().signal(Signal::SIGHUP);
    wait_lines(&d, "configuration reloaded", 1);

    // The open session keeps its configuration to its end.
    assert_eq!(old.cmd("RCPT TO:<v@example.com>").code, 250);
    assert_eq!(old.cmd("RCPT TO:<w@new.example>").code, 550);
    assert_eq!(old.cmd("DATA").code, 354);
    old.send(b"Subject: before the reload\r\n\r\nbody\r\n.\r\n");
    assert_eq!(old.reply().code, 250, "the open session completes");
    assert_eq!(old.cmd("QUIT").code, 221);

    // A new session gets the new domains and certificate.
    let mut new = Client::connect(d.smtp);
    assert_eq!(new.reply().code, 220);
    new.ehlo("client.example");
    assert_eq!(new.cmd("MAIL FROM:<a@example.net>").code, 250);
    assert_eq!(new.cmd("RCPT TO:<u@example.com>").code, 550);
    assert_eq!(new.cmd("RCPT TO:<x@new.example>").code, 250);
    assert_eq!(new.cmd("QUIT").code, 221);
    let after = starttls_subject(d.smtp);
    assert!(after.contains("reloaded.test"), "{after}");
    assert_ne!(before, after);
}

/// A daemon for `example.com` reloaded once to `new.example`, and the settings it runs
/// with now: where the refused reloads start from.
fn reloaded_once(bin: &str) -> (Daemon, Settings) {
    let mut d = Daemon::start(bin, |s| {
        s.set("GM_ALLOWED_HOSTS", "example.com");
    });
    let mut s = d.settings.clone();
    s.set("GM_ALLOWED_HOSTS", "new.example");
    s.write(&d.dir().join("guerrilla.conf"));
    d.process().signal(Signal::SIGHUP);
    wait_lines(&d, "configuration reloaded", 1);
    (d, s)
}

/// A new session is still served under the reloaded domains (`new.example`).
fn still_the_reloaded_domains(d: &Daemon) {
    let mut c = Client::connect(d.smtp);
    assert_eq!(c.reply().code, 220);
    c.ehlo("client.example");
    assert_eq!(c.cmd("MAIL FROM:<a@example.net>").code, 250);
    assert_eq!(
        c.cmd("RCPT TO:<x@new.example>").code,
        250,
        "still the reloaded domains"
    );
    assert_eq!(c.cmd("QUIT").code, 221);
}

/// SIGHUP with a file that does not load (not JSON): refused with one log line, and the
/// running configuration stays.
pub fn sighup_refuses_a_file_that_does_not_load(bin: &str) {
    let (mut d, _) = reloaded_once(bin);
    std::fs::write(d.dir().join("guerrilla.conf"), b"{ not json").expect("write");
    d.process().signal(Signal::SIGHUP);
    wait_lines(&d, "configuration not reloaded", 1);
    still_the_reloaded_domains(&d);
}

/// SIGHUP with a value that cannot be used: refused, naming the key, and the running
/// configuration stays.
pub fn sighup_refuses_a_value_that_cannot_be_used(bin: &str) {
    let (mut d, s) = reloaded_once(bin);
    let mut bad = s.clone();
    bad.set("GM_ALLOWED_HOSTS", "new.example, bad host");
    bad.write(&d.dir().join("guerrilla.conf"));
    d.process().signal(Signal::SIGHUP);
    wait_lines(&d, "configuration not reloaded", 1);
    assert!(
        d.log().contains("config key GM_ALLOWED_HOSTS"),
        "{}",
        d.log()
    );
    still_the_reloaded_domains(&d);
}

/// SIGHUP with a new listen address: a change that needs a restart is named in the log
/// and not applied; the server stays on the old address and stops cleanly.
pub fn sighup_names_a_change_that_needs_a_restart(bin: &str) {
    let (mut d, s) = reloaded_once(bin);
    let mut moved = s.clone();
    moved.set(
        "GSTMP_LISTEN_INTERFACE",
        &super::daemon::free_addr().to_string(),
    );
    moved.write(&d.dir().join("guerrilla.conf"));
    d.process().signal(Signal::SIGHUP);
    wait_lines(&d, "configuration reloaded", 2);
    let line = d.wait_log(&["restart_needed=GSTMP_LISTEN_INTERFACE"]);
    assert!(line.contains("configuration reloaded"), "{line}");
    let mut c = Client::connect(d.smtp);
    assert_eq!(c.reply().code, 220, "still on the old address");
    assert_eq!(d.stop().code(), Some(0));
}

/// Reloads under load drop nothing: three clients send 40 messages each while the
/// configuration is reloaded six times, the destination's settings (`GSMTP_FSYNC`)
/// changing every other time, so that the Maildir is opened again under open sessions.
/// Every message is answered `250` and stored once; nothing is left in `tmp/`.
pub fn reload_under_load_drops_nothing(bin: &str) {
    let mut d = Daemon::start(bin, |_| {});
    let config = d.dir().join("guerrilla.conf");
    let addr = d.smtp;
    let clients: Vec<_> = (0..3)
        .map(|_| {
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                assert_eq!(c.reply().code, 220);
                c.ehlo("client.example");
                for i in 0..40 {
                    let body = format!("Subject: {i}\r\n\r\nunder reload\r\n");
                    let r = c.send_mail("a@example.net", &["u@example.com"], body.as_bytes());
                    assert_eq!(r.code, 250, "{r:?}");
                }
                assert_eq!(c.cmd("QUIT").code, 221);
            })
        })
        .collect();
    for round in 0..6 {
        let mut s = d.settings.clone();
        s.set("GSMTP_FSYNC", if round % 2 == 0 { "N" } else { "Y" })
            .set("GM_MAX_CLIENTS", &(100 + round).to_string());
        s.write(&config);
        d.process().signal(Signal::SIGHUP);
        wait_lines(&d, "configuration reloaded", round + 1);
    }
    for c in clients {
        c.join().expect("a client");
    }
    let new = crate::folder_files(&d.maildir(), "example.com/u", "new");
    assert_eq!(new.len(), 120, "every message stored once");
    assert!(crate::folder_files(&d.maildir(), "example.com/u", "tmp").is_empty());
    assert_eq!(d.stop().code(), Some(0));
}

/// `GSMTP_LOG_FORMAT=json`: every line of the log file is one JSON object, with the same
/// fields as the text lines (the message's queue id, envelope and size; the connection's
/// end and reason).
pub fn json_log_lines(bin: &str) {
    let mut d = Daemon::start(bin, |s| {
        s.set("GSMTP_LOG_FORMAT", "json");
    });
    one_message(&d);
    d.wait_log(&["connection closed"]);
    assert_eq!(d.stop().code(), Some(0));
    let log = d.log();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let find = |message: &str| {
        lines
            .iter()
            .find(|l| l["message"] == message)
            .unwrap_or_else(|| panic!("no {message:?} line in {log}"))
    };
    let queued = find("message queued");
    assert_eq!(queued["level"], "INFO");
    assert_eq!(queued["from"], "<a@example.net>");
    assert_eq!(queued["to"], "<u@example.com>");
    assert_eq!(queued["helo"], "client.example");
    assert_eq!(queued["queue_id"].as_str().map(str::len), Some(32));
    assert!(queued["size"].as_u64().is_some_and(|n| n > 0), "{queued}");
    assert!(queued["timestamp"].is_string());
    // The readiness probe's connection closed first (`eof`); then the client's.
    let closed = lines
        .iter()
        .rfind(|l| l["message"] == "connection closed")
        .expect("a connection closed line");
    assert_eq!(closed["reason"], "quit", "{closed}");
    assert_eq!(closed["messages"], 1);
    find("stopped");
}

/// `GSMTP_THREADS` sizes the pool that runs sessions (3 here; unset, half the cores, at
/// least one), the start line says how many, and mail flows on it.
pub fn threads_follow_gsmtp_threads(bin: &str) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    for (setting, want) in [(Some("3"), 3), (None, (cores / 2).max(1))] {
        let mut d = Daemon::start(bin, |s| {
            if let Some(n) = setting {
                s.set("GSMTP_THREADS", n);
            }
        });
        d.wait_log(&["started", &format!("threads={want}")]);
        one_message(&d);
        // Thread names are cut to 15 bytes: `smol-0`, `async-std/runti`.
        let pool = std::fs::read_dir(format!("/proc/{}/task", d.pid()))
            .expect("read /proc/<pid>/task")
            .flatten()
            .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
            .filter(|name| name.starts_with("smol-") || name.starts_with("async-std/run"))
            .count();
        assert_eq!(pool, want, "GSMTP_THREADS={setting:?} on {cores} cores");
        assert_eq!(d.stop().code(), Some(0));
    }
}

/// One session: a message for `u@example.com` answered `250`, then QUIT.
fn one_message(d: &Daemon) {
    let mut c = Client::connect(d.smtp);
    assert_eq!(c.reply().code, 220);
    c.ehlo("client.example");
    let r = c.send_mail(
        "a@example.net",
        &["u@example.com"],
        b"Subject: j\r\n\r\nx\r\n",
    );
    assert_eq!(r.code, 250, "{r:?}");
    assert_eq!(c.cmd("QUIT").code, 221);
}

/// `GET path` on `addr` over HTTP/1.1: the status code and the body.
pub fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut tcp = std::net::TcpStream::connect(addr).expect("connect to the metrics port");
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("a timeout");
    write!(
        tcp,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).expect("an answer");
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {answer:?}"));
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// The value of the series `name` (with its labels, as the text format writes them).
pub fn series(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Our server with the metrics endpoint on, and that endpoint's address.
fn with_metrics(bin: &str) -> (Daemon, std::net::SocketAddr) {
    let addr = super::daemon::free_addr();
    let d = Daemon::start(bin, |s| {
        s.set("GSMTP_METRICS_LISTEN", &addr.to_string())
            .set("GSMTP_MAX_SIZE", "2000");
    });
    (d, addr)
}

/// Traffic of known kinds moves the metrics by as much: two messages stored (one over
/// STARTTLS), a relay refusal, a message over the size limit, a syntax error; the
/// delivery histogram counts the two stored messages for `maildir`, the bytes received
/// cover what was sent, and the TLS handshake is counted by version.
pub fn metrics_count_traffic(bin: &str) {
    let (mut d, addr) = with_metrics(bin);
    let (status, before) = http_get(addr, "/metrics");
    assert_eq!(status, 200);
    // The readiness probe's connection is the only one so far.
    assert_eq!(series(&before, "smtp_messages_total{code=\"250\"}"), 0.0);

    let mut c = Client::connect(d.smtp);
    assert_eq!(c.reply().code, 220);
    c.ehlo("client.example");
    let body = b"Subject: m\r\n\r\nsmall\r\n";
    assert_eq!(
        c.send_mail("a@example.net", &["u@example.com"], body).code,
        250
    );
    assert_eq!(c.cmd("MAIL FROM:<a@example.net>").code, 250);
    assert_eq!(c.cmd("RCPT TO:<u@elsewhere.example>").code, 550);
    assert_eq!(c.cmd("RSET").code, 250);
    let mut text = b"Subject: big\r\n\r\n".to_vec();
    for _ in 0..50 {
        text.extend_from_slice(&[b'x'; 60]);
        text.extend_from_slice(b"\r\n");
    }
    assert_eq!(
        c.send_mail("a@example.net", &["u@example.com"], &text).code,
        552
    );
    assert_eq!(c.cmd("BOGUS").code, 500);
    assert_eq!(c.cmd("STARTTLS").code, 220);
    c.upgrade().expect("the handshake");
    c.ehlo("client.example");
    assert_eq!(
        c.send_mail("a@example.net", &["u@example.com"], body).code,
        250
    );
    assert_eq!(c.cmd("QUIT").code, 221);
    d.wait_log(&["connection closed", "reason=quit"]);

    let (_, m) = http_get(addr, "/metrics");
    for (name, want) in [
        ("smtp_messages_total{code=\"250\"}", 2.0),
        ("smtp_messages_total{code=\"552\"}", 1.0),
        ("smtp_refusals_total{code=\"550\",reason=\"relay\"}", 1.0),
        ("smtp_refusals_total{code=\"552\",reason=\"size\"}", 1.0),
        ("smtp_refusals_total{code=\"500\",reason=\"syntax\"}", 1.0),
        ("smtp_delivery_seconds_count{destination=\"maildir\"}", 2.0),
        ("smtp_tls_handshakes_total{version=\"TLSv1.3\"}", 1.0),
        ("smtp_sessions_closed_total{reason=\"quit\"}", 1.0),
        ("smtp_connections_total{outcome=\"served\"}", 2.0),
    ] {
        assert_eq!(series(&m, name), want, "{name} in\n{m}");
    }
    assert_eq!(series(&m, "smtp_sessions_open"), 0.0, "{m}");
    assert!(
        series(&m, "smtp_received_bytes_total") > (2 * body.len() + 3000) as f64,
        "{m}"
    );
    assert!(
        series(&m, "smtp_maildir_commit_batch_messages_count") >= 1.0,
        "{m}"
    );
    assert_eq!(d.stop().code(), Some(0));
}

/// `/healthz` answers `200`, then `503` once shutdown began (while a session keeps the
/// server in its grace period, and `/metrics` still counts it); other paths `404`.
pub fn healthz_turns_503_at_shutdown(bin: &str) {
    let (mut d, addr) = with_metrics(bin);
    assert_eq!(http_get(addr, "/healthz").0, 200);
    assert_eq!(http_get(addr, "/nothing").0, 404);
    // An open session holds the server in its grace period after SIGTERM.
    let mut open = Client::connect(d.smtp);
    assert_eq!(open.reply().code, 220);
    open.ehlo("client.example");
    d.process().signal(Signal::SIGTERM);
    let unhealthy = wait_until(Duration::from_secs(5), || {
        http_get(addr, "/healthz").0 == 503
    });
    assert!(unhealthy, "/healthz while shutting down");
    assert_eq!(
        series(&http_get(addr, "/metrics").1, "smtp_sessions_open"),
        1.0
    );
    drop(open);
    assert_eq!(d.stop().code(), Some(0));
}

/// `promtool check metrics` (Debian `prometheus`) accepts what `/metrics` serves after
/// traffic of every kind.
pub fn metrics_pass_promtool(bin: &str) {
    let (d, addr) = with_metrics(bin);
    let mut c = Client::connect(d.smtp);
    assert_eq!(c.reply().code, 220);
    c.ehlo("client.example");
    assert_eq!(
        c.send_mail("a@example.net", &["u@example.com"], b"x\r\n")
            .code,
        250
    );
    assert_eq!(c.cmd("RCPT TO:<u@example.com>").code, 503);
    assert_eq!(c.cmd("QUIT").code, 221);
    d.wait_log(&["connection closed", "reason=quit"]);
    let (_, m) = http_get(addr, "/metrics");
    let out = run(
        Command::new("promtool").args(["check", "metrics"]),
        m.as_bytes(),
        CHECK_LIMIT,
    );
    assert!(
        out.status.success(),
        "promtool: {}\n{}{}\n{m}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// nobody / nogroup: the user our server runs as (when the tests run as root).
const NOBODY: (u32, u32) = (65534, 65534);

/// Dovecot reads our Maildir as it is: with `mail_location = maildir:<GSMTP_MAILDIR>/%d/%n`
/// a message sent by swaks (to `u+news@`, with `GSMTP_RECIPIENT_DELIMITER=+`) is fetched
/// over IMAP byte for byte as we stored it, our trace headers and the text as sent;
/// here with Dovecot's mail user the one our server runs as (`GUID`, `SGID`).
pub fn dovecot_imap_reads_our_maildir_as_its_owner(bin: &str) {
    dovecot_reads(bin, "0600", NOBODY);
}

/// The same with another user (Debian's `daemon`) in the server's group reading, and
/// `GSMTP_MAILDIR_MODE=0660`.
pub fn dovecot_imap_reads_our_maildir_as_a_group_member(bin: &str) {
    // Another user (Debian's `daemon`) in nobody's group.
    const GROUP_READER: (u32, u32) = (1, 65534);
    dovecot_reads(bin, "0660", GROUP_READER);
}

/// Dovecot, as `reader`, reads over IMAP what our server stored with
/// `GSMTP_MAILDIR_MODE=mode`.
fn dovecot_reads(bin: &str, mode: &str, reader: (u32, u32)) {
    let mut d = Daemon::start(bin, |s| {
        s.set("GSMTP_RECIPIENT_DELIMITER", "+")
            .set("GSMTP_MAILDIR_MODE", mode);
        if nix::unistd::Uid::effective().is_root() {
            s.set("GUID", &NOBODY.0.to_string())
                .set("SGID", &NOBODY.1.to_string());
        }
    });
    let dir = TempDir::new("dovecot-reads");
    let location = format!("maildir:{}/%d/%n", d.maildir().display());
    let dc = super::dovecot::Dovecot::start(&dir, &["u@example.com"], Some(&location), reader);
    let msg = super::message("dovecot");
    let file = d.dir().join("swaks.eml");
    std::fs::write(&file, msg.strip_suffix(b"\r\n").expect("CRLF")).expect("write");
    let out = super::daemon::run_ok(
        Command::new("swaks")
            .args(["--server", &d.smtp.to_string(), "--ehlo", "client.example"])
            .args(["--from", "a@example.net", "--to", "u+news@example.com"])
            .args(["--data", &format!("@{}", file.display()), "--timeout", "20"]),
    );
    assert!(out.contains("<-  250 "), "{out}");
    let stored = crate::folder_files(&d.maildir(), "example.com/u", "new");
    assert_eq!(stored.len(), 1, "{mode}: stored in u's mailbox");
    let on_disk = std::fs::read(&stored[0]).expect("read");
    let fetched = dc.fetch("u@example.com");
    assert_eq!(fetched.len(), 1, "{mode}: {}", dc.log());
    assert_eq!(
        fetched[0], on_disk,
        "{mode}: IMAP gives the file byte for byte"
    );
    let (head, body) = crate::split_trace(&fetched[0]);
    assert!(
        head.contains("\r\nDelivered-To: u+news@example.com\r\n"),
        "{head}"
    );
    assert_eq!(body, msg, "{mode}: the text as sent");
    assert_eq!(d.stop().code(), Some(0));
}
