//! What an operator's trial found, each driven through the real binary: the envelope of
//! a message with the most recipients of the longest addresses reaches an ordinary HTTP
//! receiver, a pipe command never reads a cut message, a reload applies
//! `GSMTP_MAILDIR_MODE`, a failing destination shows in `/healthz` and in
//! `--check-config --live`, a command is never started after its deadline, every
//! destination fault is one log line that says what the destination answered, and the
//! reply's text says what failed.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;

use super::daemon::{Daemon, Settings, free_port, queued_id, run, wait_until};
use super::handoff::http_receiver;
use super::operate::http_get;
use crate::{Client, TempDir};

fn session(d: &Daemon) -> Client {
    let mut c = Client::connect(d.smtp);
    assert_eq!(c.reply().code, 220);
    c.ehlo("client.example");
    c
}

/// `n` distinct addresses of the longest length a path allows (254 octets: a 64-octet
/// local part, a 189-octet domain), and one whose quoted local part holds a space.
fn longest_addresses(n: usize) -> Vec<String> {
    let domain = format!(
        "{}.{}.{}.test",
        "d".repeat(63),
        "e".repeat(63),
        "f".repeat(56)
    );
    assert_eq!(domain.len(), 189);
    let mut all: Vec<String> = (0..n - 1)
        .map(|i| format!("{i:03}{}@{domain}", "x".repeat(61)))
        .collect();
    all.push("\"a b\"@example.com".into());
    assert!(all[..n - 1].iter().all(|a| a.len() == 254));
    all
}

/// Sends one message from `a@example.net` to every address of `to` and returns the
/// reply to its end.
fn send_to_all(d: &Daemon, to: &[String], body: &[u8]) -> crate::Reply {
    let mut c = session(d);
    let refs: Vec<&str> = to.iter().map(String::as_str).collect();
    c.send_mail("a@example.net", &refs, body)
}

/// The JSON envelope the test receiver stored for queue id `id`.
fn stored_envelope(out: &Path, id: &str) -> serde_json::Value {
    let meta = fs::read_to_string(out.join(format!("{id}.json"))).expect("the receiver's notes");
    let meta: serde_json::Value = serde_json::from_str(&meta).expect("JSON");
    meta["envelope"].clone()
}

/// `GSMTP_STORAGE=http` with `GSMTP_MAX_RCPT` (100) recipients of the longest length:
/// Python's `http.server`, which refuses requests of more than 100 header fields, takes
/// the request, and every recipient arrives, exactly as given, in the JSON envelope (a
/// quoted local part with a space included); the header fields stay few.
pub fn http_envelope_at_the_recipient_limit(bin: &str) {
    let out = TempDir::new("receiver");
    let port = free_port();
    let _rx = http_receiver(port, out.path(), false);
    let d = Daemon::start(bin, |s| {
        s.set("GSMTP_STORAGE", "http")
            .set("GSMTP_HTTP_URL", &format!("http://127.0.0.1:{port}/in"))
            .set("GM_ALLOWED_HOSTS", "*");
    });
    let to = longest_addresses(100);
    let r = send_to_all(&d, &to, b"Subject: many\r\n\r\nbody\r\n");
    assert_eq!(r.code, 250, "{r:?}");
    let id = queued_id(&r.wire());
    let env = stored_envelope(out.path(), &id);
    assert_eq!(
        env["rcpt_to"],
        serde_json::json!(to),
        "every recipient, in order"
    );
    assert_eq!(env["mail_from"], "a@example.net");
    let meta = fs::read_to_string(out.path().join(format!("{id}.json"))).expect("notes");
    let meta: serde_json::Value = serde_json::from_str(&meta).expect("JSON");
    let headers = meta["headers"].as_array().expect("headers").len();
    assert!(headers <= 14, "{headers} header fields: {meta}");
    assert!(
        meta["headers"]
            .to_string()
            .contains("[\"x-smtp-rcpt-count\",\"100\"]"),
        "{meta}"
    );
}

/// The same request through nginx as a reverse proxy with its default buffers (8 KiB per
/// header line), in front of the Python receiver: delivered, every recipient intact.
pub fn http_envelope_through_nginx(bin: &str) {
    let out = TempDir::new("receiver");
    let port = free_port();
    let _rx = http_receiver(port, out.path(), false);
    let front = free_port();
    let conf = out.path().join("nginx.conf");
    fs::write(
        &conf,
        format!(
            "daemon off;\nworker_processes 1;\npid {dir}/nginx.pid;\nerror_log {dir}/nginx-error.log;\n\
             events {{}}\nhttp {{\n  access_log off;\n  client_body_temp_path {dir};\n  proxy_temp_path {dir};\n\
             server {{\n    listen 127.0.0.1:{front};\n    client_max_body_size 30m;\n\
             location / {{ proxy_pass http://127.0.0.1:{port}; proxy_http_version 1.1; }}\n  }}\n}}\n",
            dir = out.path().display()
        ),
    )
    .expect("write nginx.conf");
    let mut cmd = Command::new("nginx");
    cmd.arg("-c").arg(&conf).arg("-p").arg(out.path());
    let mut nginx = super::daemon::Proc::spawn("nginx", &mut cmd, &out.path().join("nginx.out"));
    nginx.wait_listening(SocketAddr::from(([127, 0, 0, 1], front)));
    let d = Daemon::start(bin, |s| {
        s.set("GSMTP_STORAGE", "http")
            .set("GSMTP_HTTP_URL", &format!("http://127.0.0.1:{front}/in"))
            .set("GM_ALLOWED_HOSTS", "*");
    });
    let to = longest_addresses(100);
    let r = send_to_all(&d, &to, b"Subject: many, through nginx\r\n\r\nbody\r\n");
    assert_eq!(r.code, 250, "{r:?}");
    let id = queued_id(&r.wire());
    assert_eq!(
        stored_envelope(out.path(), &id)["rcpt_to"],
        serde_json::json!(to)
    );
}

/// Every rendering of a list encodes one way: a quoted local part with a space reaches
/// the pipe's `SMTP_RCPT_TO` as `%20`, never as a bare space that would split it.
pub fn pipe_envelope_lists_are_unambiguous(bin: &str) {
    let out = TempDir::new("hook");
    let hook = out.path().join("hook.sh");
    fs::write(
        &hook,
        "#!/bin/sh\nenv | grep '^SMTP_' | sort > \"$1/$SMTP_QUEUE_ID.env\"\ncat >/dev/null\n",
    )
    .expect("hook");
    let d = Daemon::start(bin, |s| {
        s.set("GSMTP_STORAGE", "pipe").set(
            "GSMTP_PIPE_COMMAND",
            &format!("sh {} {}", hook.display(), out.path().display()),
        );
    });
    let mut c = session(&d);
    let r = c.send_mail(
        "\"s p\"@example.net",
        &["\"a b\"@example.com", "u@example.com", "jos%e@example.com"],
        b"x\r\n",
    );
    assert_eq!(r.code, 250, "{r:?}");
    let id = queued_id(&r.wire());
    let env = fs::read_to_string(out.path().join(format!("{id}.env"))).expect("env");
    for line in [
        "SMTP_MAIL_FROM=\"s%20p\"@example.net",
        "SMTP_RCPT_TO=\"a%20b\"@example.com u@example.com jos%25e@example.com",
    ] {
        assert!(env.lines().any(|l| l == line), "no {line} in\n{env}");
    }
}

/// A hook that takes its time before it reads its input (`sleep 0.4`), then stores it
/// as `<queue id>.eml` with a write-then-rename, as a careful delivery program does.
const SLOW_READER: &str = "#!/bin/sh\nsleep 0.4\ncat > \"$1/$SMTP_QUEUE_ID.tmp\" && mv \"$1/$SMTP_QUEUE_ID.tmp\" \"$1/$SMTP_QUEUE_ID.eml\"\n";

/// The end of every message the load sends: a stored copy without it was cut.
const END: &[u8] = b"END-OF-MESSAGE\r\n";

/// kill -9 under load, with commands that read their input slowly: every copy a command
/// stored is the whole message (small ones held in memory and large ones spooled to a
/// file alike), so a crash can only ever cause a duplicate, never a cut or empty copy.
pub fn pipe_input_is_never_cut(bin: &str) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    let out = TempDir::new("slow");
    let hook = out.path().join("hook.sh");
    fs::write(&hook, SLOW_READER).expect("hook");
    let mut d = Daemon::start(bin, |s| {
        s.set("GSMTP_STORAGE", "pipe")
            .set(
                "GSMTP_PIPE_COMMAND",
                &format!("sh {} {}", hook.display(), out.path().display()),
            )
            .set("GSMTP_PIPE_CONCURRENCY", "50");
    });
    let acked = Arc::new(Mutex::new(Vec::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..6)
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
                    // Even threads send 300 KiB (spooled to a file), odd ones 2 KiB.
                    let lines = if t % 2 == 0 { 3000 } else { 20 };
                    let mut body = format!("Subject: load {t}-{i}\r\n\r\n").into_bytes();
                    for n in 0..lines {
                        body.extend_from_slice(format!("{n:08} {}\r\n", "y".repeat(90)).as_bytes());
                    }
                    body.extend_from_slice(END);
                    let Some(r) = c.try_mail("a@example.net", &["u@example.com"], &body) else {
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
    wait_until(Duration::from_secs(60), || {
        count.load(Ordering::Relaxed) >= 40
    });
    d.kill();
    for t in threads {
        let _ = t.join();
    }
    // The commands outlive the server: wait until the last has stored its copy.
    let settled = wait_until(Duration::from_secs(20), || {
        let names: Vec<String> = fs::read_dir(out.path())
            .expect("the hook's folder")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        !names.iter().any(|n| n.ends_with(".tmp"))
    });
    assert!(settled, "commands still running");
    std::thread::sleep(Duration::from_millis(800));
    let mut stored = 0;
    for entry in fs::read_dir(out.path()).expect("folder").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".eml") {
            continue;
        }
        let copy = fs::read(entry.path()).expect("a stored copy");
        assert!(
            copy.ends_with(END),
            "{name} was cut: {} octets, ending {:?}",
            copy.len(),
            String::from_utf8_lossy(&copy[copy.len().saturating_sub(40)..])
        );
        stored += 1;
    }
    for id in acked.lock().expect("acked").iter() {
        assert!(
            out.path().join(format!("{id}.eml")).exists(),
            "acknowledged {id} is missing"
        );
    }
    assert!(stored >= 40, "only {stored} copies");
}

/// A hook that notes each start, then never ends on its own.
const STARTS_THEN_WAITS: &str =
    "#!/bin/sh\necho \"$SMTP_QUEUE_ID\" >> \"$1/starts\"\nexec sleep 30\n";

/// With every `GSMTP_PIPE_CONCURRENCY` slot taken, messages whose time runs out while
/// they wait are answered `451 4.4.7` without their command ever being started, even
/// when their deadlines and the slot's release come at the same moment (the server is
/// stopped past every deadline, then let go).
pub fn pipe_never_starts_after_its_deadline(bin: &str) {
    let out = TempDir::new("late");
    let hook = out.path().join("hook.sh");
    fs::write(&hook, STARTS_THEN_WAITS).expect("hook");
    let mut d = Daemon::start(bin, |s| {
        s.set("GSMTP_STORAGE", "pipe")
            .set(
                "GSMTP_PIPE_COMMAND",
                &format!("sh {} {}", hook.display(), out.path().display()),
            )
            .set("GSMTP_PIPE_TIMEOUT", "2")
            .set("GSMTP_PIPE_CONCURRENCY", "1");
    });
    let senders: Vec<_> = (0..6)
        .map(|i| {
            let addr = d.smtp;
            let t = std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                c.reply();
                c.ehlo("client.example");
                c.send_mail(
                    "a@example.net",
                    &["u@example.com"],
                    format!("m{i}\r\n").as_bytes(),
                )
                .wire()
            });
            // The first one takes the slot; the others queue behind it.
            if i == 0 {
                let starts = out.path().join("starts");
                assert!(wait_until(Duration::from_secs(5), || starts.exists()));
            }
            t
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    // Past every deadline at once: the slot comes free just as the queued ones expire.
    d.process().signal(Signal::SIGSTOP);
    std::thread::sleep(Duration::from_secs(3));
    d.process().signal(Signal::SIGCONT);
    for t in senders {
        let reply = t.join().expect("a sender");
        assert_eq!(
            reply,
            "451 4.4.7 Error: delivery timed out, try again later\r\n"
        );
    }
    let starts = fs::read_to_string(out.path().join("starts")).expect("starts");
    assert_eq!(
        starts.lines().count(),
        1,
        "only the first command ran: {starts}"
    );
    let log = d.log();
    let waited = log.matches("the command was not started").count();
    assert_eq!(waited, 5, "{log}");
}

/// A reload that changes `GSMTP_MAILDIR_MODE` applies it: folders and files made after
/// it get the new mode, and what was stored before is opened to the group too, so a
/// reader in the server's group (Dovecot) can read old and new mail alike.
pub fn maildir_mode_follows_a_reload(bin: &str) {
    let mode = |p: &Path| fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
    let mut d = Daemon::start(bin, |_| {});
    let mut c = session(&d);
    assert_eq!(
        c.send_mail("a@example.net", &["old@example.com"], b"before\r\n")
            .code,
        250
    );
    let old = d.files("example.com/old", "new");
    assert_eq!(mode(&old[0]), 0o600);
    assert_eq!(mode(&d.maildir().join("example.com/old")), 0o700);
    drop(c);

    let mut s = d.settings.clone();
    s.set("GSMTP_MAILDIR_MODE", "0660");
    s.write(&d.dir().join("guerrilla.conf"));
    d.process().signal(Signal::SIGHUP);
    d.wait_log(&["configuration reloaded"]);
    let mut c = session(&d);
    assert_eq!(
        c.send_mail("a@example.net", &["new@example.com"], b"after\r\n")
            .code,
        250
    );
    assert_eq!(
        c.send_mail("a@example.net", &["old@example.com"], b"again\r\n")
            .code,
        250
    );
    let new = d.files("example.com/new", "new");
    assert_eq!(mode(&new[0]), 0o660, "a file made after the reload");
    assert_eq!(mode(&d.maildir().join("example.com/new")), 0o770);
    assert_eq!(mode(&d.maildir().join("example.com/new/cur")), 0o770);
    let widened = wait_until(Duration::from_secs(5), || {
        mode(&old[0]) == 0o660
            && mode(&d.maildir().join("example.com/old/new")) == 0o770
            && mode(&d.maildir()) == 0o770
    });
    assert!(widened, "what was stored before is opened to the group");
    for f in d.files("example.com/old", "new") {
        assert_eq!(mode(&f), 0o660, "{}", f.display());
    }
    d.wait_log(&["Maildir opened to the group", "files=1"]);
}

/// `bin --check-config --live --config <settings>` (in a folder of its own): its exit
/// code and standard error.
fn live_check(bin: &str, settings: &Settings) -> (Option<i32>, String) {
    let dir = TempDir::new("live");
    let config = dir.path().join("live.conf");
    settings.write(&config);
    let o = run(
        Command::new(bin)
            .args(["--check-config", "--live", "--config"])
            .arg(&config),
        b"",
        Duration::from_secs(70),
    );
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// `/healthz` says when the destination fails every delivery (an HTTP receiver that is
/// not there: every message `451`), with the reason, and is `200` again after the first
/// success; `--check-config --live` tries the destination and names what failed.
pub fn healthz_and_live_check_see_a_failing_http_receiver(bin: &str) {
    let out = TempDir::new("receiver");
    let port = free_port();
    let metrics = super::daemon::free_addr();
    let url = format!("http://127.0.0.1:{port}/in");
    let d = Daemon::start(bin, |s| {
        s.set("GSMTP_STORAGE", "http")
            .set("GSMTP_HTTP_URL", &url)
            .set("GSMTP_METRICS_LISTEN", &metrics.to_string());
    });
    assert_eq!(http_get(metrics, "/healthz"), (200, "ok\n".to_string()));
    let mut c = session(&d);
    for i in 0..3 {
        let r = c.send_mail("a@example.net", &["u@example.com"], b"x\r\n");
        assert_eq!(r.code, 451, "{r:?}");
        let (status, _) = http_get(metrics, "/healthz");
        assert_eq!(
            status,
            if i < 2 { 200 } else { 503 },
            "after {} faults",
            i + 1
        );
    }
    let (_, why) = http_get(metrics, "/healthz");
    assert!(
        why.starts_with("destination failing: the last 3 deliveries failed; last: http: ")
            && why.contains(&format!("POST {url}")),
        "{why}"
    );
    let live = |settings: &Settings| live_check(bin, settings);
    let (code, err) = live(&d.settings);
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("config key GSMTP_HTTP_URL: the http destination failed a live check: HEAD "),
        "{err}"
    );

    let _rx = http_receiver(port, out.path(), false);
    let (code, err) = live(&d.settings);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        c.send_mail("a@example.net", &["u@example.com"], b"x\r\n")
            .code,
        250
    );
    assert_eq!(http_get(metrics, "/healthz"), (200, "ok\n".to_string()));
}

/// `--check-config --live` on the other destinations names what failed: a pipe command
/// whose interpreter is gone, an LMTP server that is not there, a Maildir root that
/// cannot be made; a command that runs passes.
pub fn live_check_names_other_failing_destinations(bin: &str) {
    let live = |settings: &Settings| live_check(bin, settings);
    let dir = TempDir::new("cmds");
    let broken = dir.path().join("broken");
    fs::write(&broken, "#!/nonexistent/interpreter\n").expect("write");
    fs::set_permissions(&broken, fs::Permissions::from_mode(0o755)).expect("chmod");
    let blocker = dir.path().join("a-file");
    fs::write(&blocker, "").expect("write");
    let (broken_s, root_s) = (
        broken.to_string_lossy().into_owned(),
        blocker.join("maildir").to_string_lossy().into_owned(),
    );
    let lmtp_s = format!("127.0.0.1:{}", free_port());
    let cases: [(&[(&str, &str)], &str); 3] = [
        (
            &[("GSMTP_STORAGE", "pipe"), ("GSMTP_PIPE_COMMAND", &broken_s)],
            "config key GSMTP_PIPE_COMMAND: the pipe destination failed a live check: cannot run ",
        ),
        (
            &[("GSMTP_STORAGE", "lmtp"), ("GSMTP_LMTP_ADDR", &lmtp_s)],
            "config key GSMTP_LMTP_ADDR: the lmtp destination failed a live check: LMTP server 127.0.0.1:",
        ),
        (&[("GSMTP_MAILDIR", &root_s)], "config key GSMTP_MAILDIR: "),
    ];
    for (settings, want) in cases {
        let mut s = Settings::defaults(dir.path());
        for (k, v) in settings {
            s.set(k, v);
        }
        let (code, err) = live(&s);
        assert_eq!(code, Some(2), "{settings:?}: {err}");
        assert!(err.contains(want), "{settings:?}: {err}");
    }
    let mut s = Settings::defaults(dir.path());
    s.set("GSMTP_STORAGE", "pipe")
        .set("GSMTP_PIPE_COMMAND", "cat");
    assert_eq!(live(&s).0, Some(0), "a command that runs");
}

/// A fake LMTP server: greets, takes LHLO, MAIL, RCPT and DATA, and answers the end of
/// the message with `final` (one line for every recipient).
fn fake_lmtp(final_reply: &'static str) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || {
                let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                let mut w = s.try_clone().expect("clone");
                let mut r = BufReader::new(s);
                let _ = w.write_all(b"220 fake LMTP\r\n");
                let mut line = String::new();
                let mut in_data = false;
                while r.read_line(&mut line).unwrap_or(0) > 0 {
                    let answer: &[u8] = if in_data {
                        if line == ".\r\n" {
                            in_data = false;
                            final_reply.as_bytes()
                        } else {
                            b""
                        }
                    } else if line.starts_with("LHLO") {
                        b"250-fake\r\n250 PIPELINING\r\n"
                    } else if line.starts_with("DATA") {
                        in_data = true;
                        b"354 go on\r\n"
                    } else if line.starts_with("QUIT") {
                        let _ = w.write_all(b"221 bye\r\n");
                        break;
                    } else {
                        b"250 2.0.0 ok\r\n"
                    };
                    let _ = w.write_all(answer);
                    line.clear();
                }
            });
        }
    });
    addr
}

/// Every fault and refusal of a destination is one log line with `conn=`, `queue_id=`,
/// the destination and what it answered, and the reply's text says what failed: here an
/// LMTP server answering nonsense (`999`) after the dot.
pub fn lmtp_nonsense_is_traced_and_named(bin: &str) {
    let lmtp = fake_lmtp("999 what is this\r\n");
    let d = Daemon::start(bin, |s| {
        s.set("GSMTP_STORAGE", "lmtp")
            .set("GSMTP_LMTP_ADDR", &lmtp.to_string());
    });
    let mut c = session(&d);
    let r = c.send_mail("a@example.net", &["u@example.com"], b"x\r\n");
    assert_eq!(
        r.wire(),
        "451 4.3.0 Error: the destination answered nonsense, try again later\r\n"
    );
    let line = d.wait_log(&[
        "refused",
        "conn=",
        "queue_id=",
        "destination=lmtp",
        &format!("LMTP server {lmtp} answered the end of DATA with 999"),
    ]);
    assert!(line.contains("what is this"), "{line}");
}

/// An LMTP server that is not there: a fault at MAIL, one log line that names it, and a
/// reply that says the delivery agent failed.
pub fn lmtp_not_there_is_traced_and_named(bin: &str) {
    let gone = format!("127.0.0.1:{}", free_port());
    let d = Daemon::start(bin, |s| {
        s.set("GSMTP_STORAGE", "lmtp").set("GSMTP_LMTP_ADDR", &gone);
    });
    let mut c = session(&d);
    assert_eq!(
        c.cmd("MAIL FROM:<a@example.net>").wire(),
        "451 4.3.0 Error: the delivery agent failed, try again later\r\n"
    );
    d.wait_log(&[
        "refused",
        "command=MAIL",
        "destination=lmtp",
        &format!("LMTP server {gone} during connect"),
    ]);
}

/// A pipe command removed while the server runs: the next message's reply says the
/// command cannot run, and the log line names it and the cause.
pub fn removed_pipe_command_is_traced_and_named(bin: &str) {
    let dir = TempDir::new("gone");
    let program = dir.path().join("deliver");
    fs::write(&program, "#!/bin/sh\ncat >/dev/null\n").expect("write");
    fs::set_permissions(&program, fs::Permissions::from_mode(0o755)).expect("chmod");
    let d = Daemon::start(bin, |s| {
        s.set("GSMTP_STORAGE", "pipe")
            .set("GSMTP_PIPE_COMMAND", &program.to_string_lossy());
    });
    let mut c = session(&d);
    assert_eq!(
        c.send_mail("a@example.net", &["u@example.com"], b"x\r\n")
            .code,
        250
    );
    fs::remove_file(&program).expect("remove");
    let r = c.send_mail("a@example.net", &["u@example.com"], b"x\r\n");
    assert_eq!(
        r.wire(),
        "451 4.3.0 Error: cannot run the delivery command, try again later\r\n"
    );
    d.wait_log(&[
        "refused",
        "destination=pipe",
        &format!("cause=\"cannot run {}: No such file", program.display()),
    ]);
}
