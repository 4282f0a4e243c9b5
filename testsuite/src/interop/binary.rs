//! The binaries' command line, configuration errors, signals and log file. These need no
//! outside program and run with every `cargo test`.

use std::ffi::OsString;
use std::fs::{self, Permissions};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::Uid;

use super::daemon::{
    Daemon, Settings, Trace, check_stored, free_addr, queued_id, run, wait_for_line, wait_until,
};
use super::message;
use crate::{Client, TempDir};

/// How long a binary that should refuse to start may take.
const EXIT_LIMIT: Duration = Duration::from_secs(10);

/// The binary's name, as it prints it.
fn name(bin: &str) -> String {
    std::path::Path::new(bin)
        .file_name()
        .expect("a file name")
        .to_string_lossy()
        .into_owned()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `bin --config <file>` with `settings` (and no AWS credentials in its
/// environment) and expects it to refuse to start: exit status 2 and exactly one line on
/// standard error, which is returned.
pub(crate) fn refuses(bin: &str, dir: &TempDir, settings: &Settings) -> String {
    let config = dir.path().join("bad.conf");
    settings.write(&config);
    let out: Output = run(
        Command::new(bin)
            .arg("--config")
            .arg(&config)
            .current_dir(dir.path())
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY"),
        b"",
        EXIT_LIMIT,
    );
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}\nstderr: {stderr}\nstdout: {}",
        out.status,
        text(&out.stdout)
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr:?}");
    assert!(stderr.ends_with('\n'), "{stderr:?}");
    assert!(
        stderr.starts_with(&format!("{}: ", name(bin))),
        "{stderr:?}"
    );
    stderr
}

/// `--version` prints `<name> <version>` and `--help` (also the original's `-help`)
/// describes the flags; both exit 0.
pub fn version_and_help(bin: &str) {
    let out = run(Command::new(bin).arg("--version"), b"", EXIT_LIMIT);
    assert!(out.status.success(), "{}", out.status);
    assert_eq!(
        text(&out.stdout),
        format!("{} {}\n", name(bin), env!("CARGO_PKG_VERSION"))
    );
    for flag in ["--help", "-help"] {
        let out = run(Command::new(bin).arg(flag), b"", EXIT_LIMIT);
        assert!(out.status.success(), "{flag}: {}", out.status);
        let help = text(&out.stdout);
        for part in [
            "--config <FILE>",
            "--if <ADDR>",
            "-v",
            "--version",
            "--help",
            "--check-config",
            "It never sends or relays mail",
        ] {
            assert!(help.contains(part), "{flag}: no {part} in {help}");
        }
    }
    let out = run(Command::new(bin).arg("--bogus"), b"", EXIT_LIMIT);
    assert_eq!(out.status.code(), Some(2), "an unknown flag");
}

/// A value that cannot be used (`"GSMTP_MAX_SIZE": "lots"`) stops startup: status 2,
/// one line on standard error naming the key, nothing on standard output.
pub fn bad_value_exits_2(bin: &str) {
    let dir = TempDir::new("bin");
    let mut s = Settings::defaults(dir.path());
    s.set("GSMTP_MAX_SIZE", "lots");
    let line = refuses(bin, &dir, &s);
    assert!(line.contains("GSMTP_MAX_SIZE"), "{line}");
    let mut s = Settings::defaults(dir.path());
    s.set("GSMTP_BARE_NEWLINE", "sometimes");
    assert!(refuses(bin, &dir, &s).contains("GSMTP_BARE_NEWLINE"));
    let mut s = Settings::defaults(dir.path());
    s.set("GSTMP_LISTEN_INTERFACE", "nowhere");
    assert!(refuses(bin, &dir, &s).contains("GSTMP_LISTEN_INTERFACE"));
    // Not JSON at all.
    let config = dir.path().join("broken.conf");
    fs::write(&config, "{\"GSMTP_MAX_SIZE\": ").expect("write");
    let out = run(
        Command::new(bin).arg("--config").arg(&config),
        b"",
        EXIT_LIMIT,
    );
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr).lines().count(),
        1,
        "{}",
        text(&out.stderr)
    );
}

/// A `GSMTP_PUB_KEY` that cannot be read (missing, not a certificate, or, when not
/// running as root, not readable) stops startup with status 2 and a line naming it.
pub fn unreadable_pub_key_exits_2(bin: &str) {
    let dir = TempDir::new("bin");
    let garbage = dir.path().join("garbage.pem");
    fs::write(&garbage, "not a certificate\n").expect("write");
    let locked = dir.path().join("locked.pem");
    fs::copy(crate::cert_dir().join("cert.pem"), &locked).expect("copy");
    fs::set_permissions(&locked, Permissions::from_mode(0o000)).expect("chmod");
    let mut files = vec![dir.path().join("missing.pem"), garbage];
    if !Uid::effective().is_root() {
        files.push(locked);
    }
    for file in files {
        let mut s = Settings::defaults(dir.path());
        s.set("GSMTP_PUB_KEY", &file.display().to_string());
        let line = refuses(bin, &dir, &s);
        assert!(line.contains("GSMTP_PUB_KEY"), "{}: {line}", file.display());
    }
    let mut s = Settings::defaults(dir.path());
    s.set(
        "GSMTP_PRV_KEY",
        &dir.path().join("missing.pem").display().to_string(),
    );
    assert!(refuses(bin, &dir, &s).contains("GSMTP_PRV_KEY"));
}

/// A listen address already in use stops startup with status 2 and a line naming the
/// key (the SMTP listener, and the `auth_http` one).
pub fn port_in_use_exits_2(bin: &str) {
    let dir = TempDir::new("bin");
    let taken = TcpListener::bind(free_addr()).expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let mut s = Settings::defaults(dir.path());
    s.set("GSTMP_LISTEN_INTERFACE", &addr);
    let line = refuses(bin, &dir, &s);
    assert!(
        line.contains("GSTMP_LISTEN_INTERFACE") && line.contains(&addr),
        "{line}"
    );
    let mut s = Settings::defaults(dir.path());
    s.set("NGINX_AUTH_ENABLED", "Y").set("NGINX_AUTH", &addr);
    let line = refuses(bin, &dir, &s);
    assert!(
        line.contains("NGINX_AUTH") && line.contains(&addr),
        "{line}"
    );
}

/// The original's Go-style flags: `-config=FILE -if=ADDR -v=y`. The file is read (its
/// host name is in the greeting), `-if` overrides its listen address, and `-v=y` logs
/// the transcript.
pub fn original_single_dash_flags(bin: &str) {
    let dir = TempDir::new("bin");
    let mut settings = Settings::defaults(dir.path());
    settings.set("GSMTP_HOST_NAME", "flags.example");
    let config = dir.path().join("original.conf");
    settings.write(&config);
    let unused = settings.listen();
    let listen = free_addr();
    let args: Vec<OsString> = vec![
        format!("-config={}", config.display()).into(),
        format!("-if={listen}").into(),
        "-v=y".into(),
    ];
    let d = Daemon::launch(bin, dir, settings, &args, listen);
    let mut c = Client::connect(d.smtp);
    let greeting = c.reply();
    assert!(
        greeting
            .text()
            .starts_with("flags.example SMTP Guerrilla-SMTPd #"),
        "{greeting:?}"
    );
    c.ehlo("client.example");
    assert_eq!(c.cmd("QUIT").code, 221);
    d.wait_log(&["C: EHLO client.example"]);
    d.wait_log(&["S: 221 2.0.0 Bye"]);
    assert!(
        TcpStream::connect_timeout(&unused, Duration::from_secs(1)).is_err(),
        "the configured address is in use although -if overrides it"
    );
}

/// `--if localhost:<port>` listens on the IPv4 loopback; an `--if` address that cannot
/// be used is reported under the flag's name, not a configuration key.
pub fn listen_flag_localhost_and_errors(bin: &str) {
    let dir = TempDir::new("bin");
    let settings = Settings::defaults(dir.path());
    let config = dir.path().join("g.conf");
    settings.write(&config);
    let listen = free_addr();
    let args: Vec<OsString> = vec![
        "--config".into(),
        config.clone().into(),
        "--if".into(),
        format!("localhost:{}", listen.port()).into(),
    ];
    let d = Daemon::launch(bin, dir, settings, &args, listen);
    let mut c = Client::connect(d.smtp);
    assert_eq!(c.reply().code, 220);
    drop(c);
    // The port is taken now (by that server): the error names --if.
    let out = run(
        Command::new(bin)
            .arg("--config")
            .arg(&config)
            .args(["--if", &listen.to_string()]),
        b"",
        EXIT_LIMIT,
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "{}: option --if: cannot listen on {listen}",
            name(bin)
        )),
        "{stderr}"
    );
    let out = run(Command::new(bin).args(["--if", "nowhere"]), b"", EXIT_LIMIT);
    assert!(text(&out.stderr).contains("option --if: expected an address"));
}

/// Without `--config`, `goguerrilla.conf` in the working directory is read.
pub fn default_config_in_working_dir(bin: &str) {
    let dir = TempDir::new("bin");
    let mut settings = Settings::defaults(dir.path());
    settings.set("GSMTP_HOST_NAME", "default.example");
    settings.write(&dir.path().join("goguerrilla.conf"));
    let listen = settings.listen();
    let d = Daemon::launch(bin, dir, settings, &[], listen);
    let mut c = Client::connect(d.smtp);
    let greeting = c.reply();
    assert!(
        greeting
            .text()
            .starts_with("default.example SMTP Guerrilla-SMTPd #"),
        "{greeting:?}"
    );
}

/// The original's MySQL (and Redis) keys are accepted: one warning line each, and the
/// server runs and stores mail as usual.
pub fn mysql_keys_are_ignored_with_a_warning(bin: &str) {
    let keys = [
        ("MYSQL_HOST", "127.0.0.1:3306"),
        ("MYSQL_USER", "gmail_mail"),
        ("MYSQL_PASS", "ok"),
        ("MYSQL_DB", "gmail_mail"),
        ("GM_MAIL_TABLE", "new_mail"),
        ("REDIS_HOST", "127.0.0.1"),
    ];
    let d = Daemon::start(bin, |s| {
        for (k, v) in keys {
            s.set(k, v);
        }
    });
    for (k, _) in keys {
        let line = d.wait_log(&[k]);
        assert!(line.contains("WARN") && line.contains("ignored"), "{line}");
        assert_eq!(d.log().matches(k).count(), 1, "{}", d.log());
    }
    let mut c = Client::connect(d.smtp);
    assert_eq!(c.reply().code, 220);
    c.ehlo("client.example");
    let msg = message("mysql");
    let r = c.send_mail("a@example.net", &["u@example.com"], &msg);
    assert_eq!(r.code, 250, "{r:?}");
    let trace = Trace {
        rcpt: "u@example.com",
        helo: "client.example",
        ip: "127.0.0.1",
        with: "ESMTP",
        id: Some(&queued_id(&r.wire())),
    };
    check_stored(&d.stored("example.com/u")[0], &trace, &msg);
}

/// SIGTERM: the listener closes at once, an open session may still finish its message
/// within `GSMTP_SHUTDOWN_GRACE`, then the process logs and exits with status 0.
pub fn sigterm_shuts_down_with_status_0(bin: &str) {
    let mut d = Daemon::start(bin, |s| {
        s.set("GSMTP_SHUTDOWN_GRACE", "10");
    });
    let mut c = Client::connect(d.smtp);
    assert_eq!(c.reply().code, 220);
    c.ehlo("client.example");
    d.process().signal(Signal::SIGTERM);
    d.wait_log(&["shutting down"]);
    let addr = d.smtp;
    assert!(
        wait_until(Duration::from_secs(5), || TcpStream::connect_timeout(
            &addr,
            Duration::from_millis(200)
        )
        .is_err()),
        "still accepting after SIGTERM"
    );
    let msg = message("sigterm");
    let r = c.send_mail("a@example.net", &["u@example.com"], &msg);
    assert_eq!(r.code, 250, "{r:?}");
    assert_eq!(c.cmd("QUIT").code, 221);
    let status = d
        .process()
        .wait_exit(Duration::from_secs(10))
        .expect("exited after the last session ended");
    assert_eq!(status.code(), Some(0), "{status}");
    let log = d.log();
    assert!(log.trim_end().ends_with("stopped"), "{log}");
    assert_eq!(d.stored("example.com/u").len(), 1);
}

/// With `GSMTP_LOG_FILE`, the log lines go to that file (mode 0600), not to standard
/// output: one per connection and one per message, with its id, size, sender,
/// recipient and whether it came over TLS.
pub fn log_file_lines(bin: &str) {
    let dir = TempDir::new("bin");
    let log = dir.path().join("guerrilla.log");
    let log_setting = log.display().to_string();
    let d = Daemon::start_in(bin, dir, |s| {
        s.set("GSMTP_LOG_FILE", &log_setting);
    });
    let msg = message("log");
    let mut ids = Vec::new();
    for tls in [false, true] {
        let mut c = Client::connect(d.smtp);
        assert_eq!(c.reply().code, 220);
        c.ehlo("client.example");
        if tls {
            assert_eq!(c.cmd("STARTTLS").code, 220);
            c.upgrade().expect("handshake");
            c.ehlo("client.example");
        }
        let r = c.send_mail("a@example.net", &["u@example.com"], &msg);
        assert_eq!(r.code, 250, "{r:?}");
        ids.push(queued_id(&r.wire()));
        assert_eq!(c.cmd("QUIT").code, 221);
        assert!(c.is_closed());
    }
    for (id, tls) in ids.iter().zip([false, true]) {
        let line = wait_for_line(&log, &["message queued", &format!("queue_id={id}")]);
        for part in [
            "INFO ".to_string(),
            "client=127.0.0.1".to_string(),
            "helo=client.example".to_string(),
            format!("size={}", msg.len()),
            "from=<a@example.net>".to_string(),
            "to=<u@example.com>".to_string(),
            "nrcpt=1".to_string(),
            format!("tls={}", if tls { "TLSv1.3" } else { "no" }),
            "delivery_ms=".to_string(),
        ] {
            assert!(line.contains(&part), "no {part} in {line}");
        }
    }
    // Readiness probe, then the two sessions.
    let closed = || {
        let text = fs::read_to_string(&log).unwrap_or_default();
        text.lines()
            .filter(|l| l.contains("connection closed") || l.contains("connection lost"))
            .count()
    };
    assert!(
        wait_until(Duration::from_secs(5), || closed() == 3),
        "{}",
        closed()
    );
    for tls in [false, true] {
        let version = if tls {
            "tls=TLSv1.3 cipher=TLS_AES_"
        } else {
            "tls=no "
        };
        let line = wait_for_line(
            &log,
            &["connection closed", "messages=1", version, "reason=quit"],
        );
        for part in [
            "client=127.0.0.1",
            "helo=client.example",
            "refusals=0",
            "conn=",
        ] {
            assert!(line.contains(part), "no {part} in {line}");
        }
        let secs = line
            .split(' ')
            .find_map(|f| f.strip_prefix("secs="))
            .unwrap_or_else(|| panic!("no secs= in {line}"));
        assert!(
            secs.len() >= 4 && secs.as_bytes()[secs.len() - 3] == b'.',
            "secs rounded to two decimals: {line}"
        );
    }
    let text = fs::read_to_string(&log).unwrap_or_default();
    for debug in ["None", "Some(", " tls=false", " tls=true"] {
        assert!(
            !text.contains(debug),
            "a Rust debug value ({debug}) in\n{text}"
        );
    }
    wait_for_line(&log, &["started", &d.smtp.to_string()]);
    let stdout = d.log();
    assert!(!stdout.contains("message queued"), "{stdout}");
    let mode = fs::metadata(&log).expect("stat").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

/// An operator's log without `-v`: each refused command leaves one INFO line with its
/// code, enhanced code, reason, sender and recipient; `grep <queue id>` follows the
/// message from its refused recipients to its 250 (with the client, HELO and TLS); a
/// mailbox that cannot be written is named with its path and cause.
pub fn operator_log(bin: &str) {
    let d = Daemon::start(bin, |s| {
        s.set("GSMTP_MAX_RCPT", "2").set("GSMTP_MAX_SIZE", "100000");
    });
    fs::create_dir_all(d.maildir()).expect("make the root");
    fs::write(d.maildir().join("bad.example.org"), b"in the way").expect("block a domain");
    let mut c = Client::connect(d.smtp);
    assert_eq!(c.reply().code, 220);
    c.ehlo("client.example");
    assert_eq!(c.cmd("MAIL FROM:<big@example.net> SIZE=200000").code, 552);
    assert_eq!(c.cmd("MAIL FROM:<a@example.net>").code, 250);
    assert_eq!(c.cmd("RCPT TO:<u@evil.example>").code, 550);
    assert_eq!(c.cmd("RCPT TO:<w@x.example.org>").code, 250);
    assert_eq!(c.cmd("RCPT TO:<v@bad.example.org>").code, 450);
    assert_eq!(c.cmd("RCPT TO:<u@example.com>").code, 250);
    assert_eq!(c.cmd("RCPT TO:<v@example.com>").code, 452);
    assert_eq!(c.cmd("FROB").code, 500);
    assert_eq!(c.cmd("DATA").code, 354);
    c.send(b"logged\r\n.\r\n");
    let r = c.reply();
    assert_eq!(r.code, 250);
    let id = queued_id(&r.wire());
    assert_eq!(c.cmd("QUIT").code, 221);
    d.wait_log(&["connection closed", "refusals=5"]);
    let log = d.log();
    let with_id: Vec<&str> = log.lines().filter(|l| l.contains(&id)).collect();
    // The readiness probe took a connection number too: find ours.
    let conn = conn_of(with_id.first().copied().unwrap_or_default());
    let expect = [
        "refused conn=2 queue_id=ID client=127.0.0.1 command=RCPT code=550 status=5.7.1 reason=\"Error: relay access denied\" from=<a@example.net> to=<u@evil.example>",
        "refused conn=2 queue_id=ID client=127.0.0.1 command=RCPT code=450 status=4.2.0 reason=\"Error: mailbox unavailable\" from=<a@example.net> to=<v@bad.example.org>",
        "refused conn=2 queue_id=ID client=127.0.0.1 command=RCPT code=452 status=4.5.3 reason=\"Error: too many recipients\" from=<a@example.net> to=<v@example.com>",
        "refused conn=2 queue_id=ID client=127.0.0.1 command=- code=500 status=5.5.1 reason=\"Error: command not recognized\" from=<a@example.net>",
        "message queued conn=2 queue_id=ID client=127.0.0.1 client_name=unknown helo=client.example from=<a@example.net> to=<w@x.example.org>,<u@example.com> nrcpt=2 size=8 tls=no delivery_ms=",
    ];
    assert_eq!(with_id.len(), expect.len(), "{log}");
    for (line, want) in with_id.iter().zip(expect) {
        let want = want
            .replace("ID", &id)
            .replace("conn=2 ", &format!("conn={conn} "));
        assert!(
            line.contains(" INFO ") && line.contains(&want),
            "{line}\nwanted {want}"
        );
    }
    let size = log
        .lines()
        .find(|l| l.contains("code=552"))
        .unwrap_or_else(|| panic!("no SIZE refusal in {log}"));
    assert!(
        size.contains("command=MAIL code=552 status=5.3.4") && !size.contains("queue_id"),
        "{size}"
    );
    // The destination's refusal is the same line, with what the destination said.
    let folder = log
        .lines()
        .find(|l| l.contains("code=450") && l.contains("destination=maildir"))
        .unwrap_or_else(|| panic!("no storage line in {log}"));
    assert!(
        folder.contains("cause=\"") && folder.contains("bad.example.org/v: ENOTDIR"),
        "{folder}"
    );
}

/// With `-v` (`GSMTP_VERBOSE`), the transcript in the log names its connection and
/// escapes control bytes.
pub fn verbose_transcript_names_its_connection(bin: &str) {
    let v = Daemon::start(bin, |s| {
        s.set("GSMTP_VERBOSE", "Y");
    });
    let mut c = Client::connect(v.smtp);
    assert_eq!(c.reply().code, 220);
    c.send(b"NOOP \x1b[2J\x07\r\nQUIT\r\n");
    assert_eq!(c.reply().code, 250);
    let line = v.wait_log(&["C: NOOP"]);
    let conn = conn_of(&line);
    let escaped = format!("C: NOOP \\x1b[2J\\x07 conn={conn} client=127.0.0.1");
    assert!(line.contains(&escaped), "{line}");
    v.wait_log(&[&format!("S: 221 2.0.0 Bye conn={conn} ")]);
    assert!(!v.log().contains('\x1b'), "a raw escape byte in the log");
}

/// The connection number in a log line's `conn=` field.
fn conn_of(line: &str) -> u64 {
    line.split(' ')
        .find_map(|f| f.strip_prefix("conn="))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no conn= in {line:?}"))
}
