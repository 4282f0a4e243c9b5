//! `GSMTP_STORAGE=s3` against a real three-node Garage cluster with replication factor 3:
//! objects and metadata read back, nodes killed and stopped under load, our instances
//! killed, two instances behind HAProxy, and no upload ever left unfinished.

use std::collections::HashSet;
use std::process::Command;
use std::time::{Duration, SystemTime};

use super::daemon::{Daemon, Settings, queued_id, run_ok};
use super::garage::{BUCKET, Garage};
use super::handoff::{acknowledged_until_killed, big_body, peak_rss_kib};
use super::message;
use super::proxies::Haproxy;
use crate::{Client, TempDir, transcript};

/// The key prefix the tests use.
const PREFIX: &str = "mail/";

/// Our server writing into `g`'s bucket through node `via`.
fn s3_daemon(bin: &str, g: &Garage, via: usize) -> Daemon {
    s3_daemon_with(bin, g, via, |s| {
        s.set("GSMTP_MAX_SIZE", "30000000");
    })
}

/// [`s3_daemon`] with the test defaults, then `tweak`.
pub(super) fn s3_daemon_with(
    bin: &str,
    g: &Garage,
    via: usize,
    tweak: impl FnOnce(&mut Settings),
) -> Daemon {
    let endpoint = format!("http://{}", g.s3(via));
    let (key, secret) = (g.key_id.clone(), g.secret.clone());
    Daemon::start(bin, |s| {
        s.set("GSMTP_STORAGE", "s3")
            .set("GSMTP_S3_ENDPOINT", &endpoint)
            .set("GSMTP_S3_BUCKET", BUCKET)
            .set("GSMTP_S3_PREFIX", PREFIX)
            .set("GSMTP_S3_ACCESS_KEY", &key)
            .set("GSMTP_S3_SECRET_KEY", &secret);
        // GSMTP_HTTP_TIMEOUT stays at its default, 30 s: a request in flight when a node
        // dies waits for Garage to give up on that node (seen: more than 5 s under load).
        tweak(s);
    })
}

/// The key of message `id`, stored today.
pub(super) fn key_of(id: &str) -> String {
    let today = proto::deliver::s3::key(PREFIX, SystemTime::now(), proto::QueueId(0));
    let day = today.rsplit_once('/').map_or("", |(d, _)| d);
    format!("{day}/{id}.eml")
}

fn session(d: &Daemon) -> Client {
    let mut c = Client::connect(d.smtp);
    assert_eq!(c.reply().code, 220);
    c.ehlo("client.example");
    c
}

/// Every queue id stored under the prefix (all days).
fn stored_ids(g: &Garage, via: usize) -> HashSet<String> {
    g.list(via, PREFIX)
        .iter()
        .filter_map(|k| k.rsplit('/').next())
        .filter_map(|f| f.strip_suffix(".eml"))
        .map(str::to_string)
        .collect()
}

/// While alive, names its scenario in the test's output if the test fails, for tests
/// that run several scenarios on one cluster.
struct Scenario(&'static str);

impl Drop for Scenario {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("failed in the S3 scenario: {}", self.0);
        }
    }
}

/// On a healthy three-node cluster (shared by the scenarios that leave it healthy, as a
/// cluster start takes seconds; those that kill nodes or our instance have their own; a
/// failure names its scenario in the output): mail sent by swaks lands as one object,
/// under `mail/YYYY/MM/DD/<queue id>.eml`, read back through another node byte for byte
/// (`Return-Path` and our `Received` first), with `message/rfc822` and the envelope in
/// its metadata; the conformance transcripts pass in S3 mode; smtp-source's 200 messages
/// are 200 objects; a 25 MiB message goes up in parts with the server's memory growing
/// by less than 1 MiB, and no multipart upload is ever left unfinished, not even by an
/// abandoned message.
pub fn s3_garage_objects_and_metadata(bin: &str) {
    let dir = TempDir::new("garage");
    let g = Garage::start(&dir, 3);
    let d = s3_daemon(bin, &g, 0);

    // swaks.
    let scenario = Scenario("swaks: one object, its metadata");
    let msg = message("s3");
    let file = d.dir().join("swaks.eml");
    std::fs::write(&file, msg.strip_suffix(b"\r\n").expect("CRLF")).expect("write");
    let out = run_ok(
        Command::new("swaks")
            .args(["--server", &d.smtp.to_string(), "--ehlo", "client.example"])
            .args([
                "--from",
                "a@example.net",
                "--to",
                "u@example.com,v@example.com",
            ])
            .args(["--data", &format!("@{}", file.display()), "--timeout", "20"]),
    );
    let id = queued_id(&out);
    let (head, body) = g
        .get(1, &key_of(&id))
        .expect("the object, read through another node");
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.starts_with("Return-Path: <a@example.net>\r\nReceived: from client.example (unknown [127.0.0.1])\r\n"),
        "{text}"
    );
    assert!(body.ends_with(&msg), "byte for byte");
    for header in [
        "content-type: message/rfc822",
        "x-amz-meta-mail-from: a@example.net",
        "x-amz-meta-rcpt-to: u@example.com v@example.com",
        "x-amz-meta-client-addr: 127.0.0.1",
        "x-amz-meta-client-name: unknown",
        "x-amz-meta-helo: client.example",
        &format!("x-amz-meta-queue-id: {id}"),
        "x-amz-meta-tls: none",
    ] {
        assert!(head.contains(header), "no {header} in\n{head}");
    }
    drop(scenario);

    s3_transcripts(bin, &g);
    s3_smtp_source(&g, &d);
    s3_big_and_abandoned(&g, &d);
}

/// The conformance transcripts pass in S3 mode, each on a new connection to one S3-mode
/// instance with the settings the conformance suite uses.
fn s3_transcripts(bin: &str, g: &Garage) {
    let _scenario = Scenario("the conformance transcripts in S3 mode");
    let t = s3_daemon_with(bin, g, 0, |_| {});
    for (name, script) in transcript::vectors::ALL {
        eprintln!("transcript {name} in S3 mode");
        let mut c = Client::connect(t.smtp);
        transcript::run(&mut c, script);
    }
    assert!(
        t.log().contains("message queued"),
        "the transcripts stored mail"
    );
}

/// smtp-source: 200 messages over 10 sessions, each one object.
fn s3_smtp_source(g: &Garage, d: &Daemon) {
    let _scenario = Scenario("smtp-source: 200 messages, one object each");
    let before = stored_ids(g, 0).len();
    run_ok(
        Command::new("smtp-source")
            .args([
                "-s",
                "10",
                "-m",
                "200",
                "-l",
                "2000",
                "-M",
                "client.example",
            ])
            .args([
                "-f",
                "a@example.net",
                "-t",
                "u@example.com",
                &d.smtp.to_string(),
            ]),
    );
    assert_eq!(stored_ids(g, 2).len(), before + 200);
}

/// 25 MiB: a multipart upload from the spool, the server's memory growing by less than
/// 1 MiB; an abandoned message starts nothing, and no multipart upload is left
/// unfinished.
fn s3_big_and_abandoned(g: &Garage, d: &Daemon) {
    let _scenario = Scenario("25 MiB in bounded memory, an abandoned message");
    let mut c = session(d);
    let big = big_body(25);
    let rss = peak_rss_kib(d.pid());
    let r = c.send_mail("a@example.net", &["u@example.com"], &big);
    assert_eq!(r.code, 250, "{r:?}");
    let grown = peak_rss_kib(d.pid()).saturating_sub(rss);
    assert!(
        grown <= 1024,
        "the server grew by {grown} KiB for a 25 MiB message"
    );
    let (_, body) = g
        .get(2, &key_of(&queued_id(&r.wire())))
        .expect("the big object");
    assert!(body.ends_with(&big) && body.len() < big.len() + 1000);
    // An abandoned message starts nothing.
    assert_eq!(c.cmd("MAIL FROM:<a@example.net>").code, 250);
    assert_eq!(c.cmd("RCPT TO:<u@example.com>").code, 250);
    assert_eq!(c.cmd("DATA").code, 354);
    c.send(&big[..10 << 20]);
    drop(c);
    d.wait_log(&["connection closed", "reason=eof"]);
    assert_eq!(g.unfinished_uploads(0), 0, "no upload left unfinished");
}

/// Nodes failing: one node killed with SIGKILL under load does not stop the mail (the
/// quorum of two stays), and every acknowledged message is there; then every node
/// stopped is `451` while the server and the session stay up, and mail is accepted
/// again once they are back.
pub fn s3_garage_node_failures(bin: &str) {
    let dir = TempDir::new("garage");
    let mut g = Garage::start(&dir, 3);
    let d = s3_daemon(bin, &g, 0);

    // One node killed under load: mail keeps flowing on the quorum.
    let threads: Vec<_> = (0..3)
        .map(|_| {
            let addr = d.smtp;
            std::thread::spawn(move || {
                let mut ids = Vec::new();
                let mut c = Client::connect(addr);
                c.reply();
                c.ehlo("client.example");
                for _ in 0..40 {
                    let r = c.send_mail("a@example.net", &["u@example.com"], b"quorum\r\n");
                    assert_eq!(r.code, 250, "{r:?}");
                    ids.push(queued_id(&r.wire()));
                }
                ids
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    g.kill(2);
    let acked: Vec<String> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("a client"))
        .collect();
    let stored = stored_ids(&g, 1);
    for id in &acked {
        if !stored.contains(id) {
            let k = key_of(id);
            panic!(
                "acknowledged {id} is missing ({} acked, {} stored); get via 0: {:?}, via 1: {:?}; list via 0 has it: {}",
                acked.len(),
                stored.len(),
                g.get(0, &k).map(|x| x.0),
                g.get(1, &k).map(|x| x.0),
                stored_ids(&g, 0).contains(id)
            );
        }
    }

    // Every node stopped: 451, the server stays up; back: accepted again.
    g.stop_all();
    let mut c = session(&d);
    let r = c.send_mail("a@example.net", &["u@example.com"], b"nowhere to go\r\n");
    assert_eq!(r.code, 451, "{r:?}");
    assert!(r.text().starts_with("4.3.0 "), "{r:?}");
    assert_eq!(c.cmd("NOOP").code, 250, "the session goes on");
    g.start_all();
    let r = c.send_mail("a@example.net", &["u@example.com"], b"back\r\n");
    assert_eq!(r.code, 250, "{r:?}");
}

/// Our instance killed with SIGKILL under load, three times (a new one started after
/// each): every acknowledged message is in the bucket, and no multipart upload is left
/// unfinished.
pub fn s3_garage_instance_killed_under_load(bin: &str) {
    let dir = TempDir::new("garage");
    let g = Garage::start(&dir, 3);
    let mut d = s3_daemon(bin, &g, 0);
    for round in 0..3 {
        let acked = acknowledged_until_killed(&mut d, 20);
        let stored = stored_ids(&g, round % 3);
        for id in &acked {
            assert!(
                stored.contains(id),
                "round {round}: acknowledged {id} is missing"
            );
        }
        d = s3_daemon(bin, &g, 0);
    }
    assert_eq!(g.unfinished_uploads(1), 0, "no upload left unfinished");
}

/// Two instances behind HAProxy write into the same bucket: every message sent through
/// HAProxy is an object, and both instances took some. The second takes its credentials
/// from `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`.
pub fn s3_two_instances_behind_haproxy(bin: &str) {
    let dir = TempDir::new("garage-ha");
    let g = Garage::start(&dir, 3);
    let a = s3_daemon(bin, &g, 0);
    let env = [
        ("AWS_ACCESS_KEY_ID", g.key_id.as_str()),
        ("AWS_SECRET_ACCESS_KEY", g.secret.as_str()),
    ];
    let endpoint = format!("http://{}", g.s3(1));
    let b = Daemon::start_env(bin, TempDir::new("interop"), &env, |s| {
        s.set("GSMTP_STORAGE", "s3")
            .set("GSMTP_S3_ENDPOINT", &endpoint)
            .set("GSMTP_S3_BUCKET", BUCKET)
            .set("GSMTP_S3_PREFIX", PREFIX);
    });
    let haproxy = Haproxy::start(&[a.smtp, b.smtp], "");
    let mut ids = HashSet::new();
    for _ in 0..20 {
        let mut c = Client::connect(haproxy.listen);
        assert_eq!(c.reply().code, 220);
        c.ehlo("client.example");
        let r = c.send_mail("a@example.net", &["u@example.com"], b"balanced\r\n");
        assert_eq!(r.code, 250, "{r:?}");
        ids.insert(queued_id(&r.wire()));
        assert_eq!(c.cmd("QUIT").code, 221);
    }
    let stored = stored_ids(&g, 2);
    assert!(ids.is_subset(&stored), "every message is an object");
    for d in [&a, &b] {
        assert!(
            d.log().contains("message queued"),
            "both instances took mail"
        );
    }
}

/// A store that refuses every delivery (a wrong secret key) is seen: each message gets
/// `451` with a text that says the store failed (and nothing of the store's address or
/// the secret), one log line names the store and its answer, `/healthz` turns `503`
/// after three, and `--check-config --live` names the failure (and passes with the right
/// key). A recipient whose quoted local part holds a space reaches the metadata encoded.
pub fn s3_refusing_store_is_seen(bin: &str) {
    const WRONG: &str = "wrong-secret-never-shown";
    let dir = TempDir::new("garage");
    let g = Garage::start(&dir, 1);
    let metrics = super::daemon::free_addr();
    let d = s3_daemon_with(bin, &g, 0, |s| {
        s.set("GSMTP_S3_SECRET_KEY", WRONG)
            .set("GSMTP_METRICS_LISTEN", &metrics.to_string());
    });
    let mut c = session(&d);
    for _ in 0..3 {
        let r = c.send_mail("a@example.net", &["u@example.com"], b"x\r\n");
        assert_eq!(
            r.wire(),
            "451 4.3.0 Error: the object store failed, try again later\r\n"
        );
    }
    let line = d.wait_log(&["refused", "command=DATA", "queue_id=", "destination=s3"]);
    assert!(
        line.contains(&format!("http://{}/ key mail/", g.s3(0))),
        "{line}"
    );
    assert!(line.contains("answered 403"), "{line}");
    let (status, why) = super::operate::http_get(metrics, "/healthz");
    assert_eq!(status, 503, "{why}");
    assert!(why.contains("last: s3: "), "{why}");
    assert!(!d.log().contains(WRONG), "the secret was logged");

    let live = |settings: &Settings| {
        let config = d.dir().join("live.conf");
        settings.write(&config);
        let o = super::daemon::run(
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
    };
    let (code, err) = live(&d.settings);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("config key GSMTP_S3_ENDPOINT: the s3 destination failed a live check: ")
            && err.contains("HEAD answered 403"),
        "{err}"
    );
    assert!(!err.contains(WRONG), "{err}");
    let mut right = d.settings.clone();
    right.set("GSMTP_S3_SECRET_KEY", &g.secret);
    let (code, err) = live(&right);
    assert_eq!(code, Some(0), "{err}");
    drop(c);
    drop(d);

    let d = s3_daemon(bin, &g, 0);
    let mut c = session(&d);
    let r = c.send_mail(
        "a@example.net",
        &["\"a b\"@example.com", "u@example.com"],
        b"x\r\n",
    );
    assert_eq!(r.code, 250, "{r:?}");
    let id = queued_id(&r.wire());
    let (head, _) = g.get(0, &key_of(&id)).expect("the object");
    assert!(
        head.contains("x-amz-meta-rcpt-to: \"a%20b\"@example.com u@example.com"),
        "{head}"
    );
}
