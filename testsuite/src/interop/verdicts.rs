//! `GSMTP_VERIFY` against a private DNS server: dnsmasq on a loopback port publishing
//! the zones of every case (SPF pass, fail, softfail, an include chain, a loop; DKIM keys
//! made by `dknewkey`, rsa-sha256 and ed25519; DMARC `p=none`, `p=quarantine`,
//! `p=reject`; an ARC sealer), messages signed by `dkimsign` and sealed by `arcsign`
//! (Debian's python3-dkim), each sent over SMTP to the real binary and read back where
//! its destination put it: Maildir, an HTTP receiver (verdict headers, the signature),
//! S3 metadata, a pipe's environment, Dovecot over LMTP. No lookup leaves loopback: a
//! name the zones do not hold is NXDOMAIN.

use std::fs;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::daemon::{Daemon, Proc, Settings, free_port, queued_id, run, run_ok};
use crate::{Client, TempDir};

/// Our host name in the tests, and so the authserv-id of our `Authentication-Results`.
const HOST: &str = "mx.test";

/// The private DNS server and the keys its zones publish.
#[derive(Debug)]
pub struct Zones {
    dns: Proc,
    /// Where it answers, over UDP and TCP.
    pub addr: SocketAddr,
    dir: TempDir,
}

/// The TXT records of the zones, but for the DKIM keys (added from `dknewkey`'s output).
/// The client is 127.0.0.1.
const RECORDS: &[(&str, &str)] = &[
    ("spf-pass.example", "v=spf1 ip4:127.0.0.1 -all"),
    ("_dmarc.spf-pass.example", "v=DMARC1; p=quarantine"),
    ("spf-fail.example", "v=spf1 ip4:192.0.2.1 -all"),
    ("spf-soft.example", "v=spf1 ~all"),
    ("spf-include.example", "v=spf1 include:a.inc.example -all"),
    ("a.inc.example", "v=spf1 include:b.inc.example -all"),
    ("b.inc.example", "v=spf1 ip4:127.0.0.0/8 -all"),
    ("spf-loop.example", "v=spf1 include:spf-loop.example -all"),
    ("helo-pass.example", "v=spf1 ip4:127.0.0.1 -all"),
    ("dkim.example", "v=spf1 -all"),
    ("_dmarc.dkim.example", "v=DMARC1; p=reject"),
    ("_dmarc.reject.example", "v=DMARC1; p=reject"),
    ("_dmarc.quarantine.example", "v=DMARC1; p=quarantine"),
    ("_dmarc.none.example", "v=DMARC1; p=none"),
];

/// The user dnsmasq keeps running as (it would switch to `nobody` when started as root).
fn user() -> String {
    run_ok(Command::new("id").arg("-un")).trim().to_string()
}

/// dnsmasq in the foreground on loopback port `port`, logging its queries to standard
/// error, answering from its own records only: authoritative for the domain `local`
/// (any other name under it is NXDOMAIN, not REFUSED), with a TTL of 300 s.
pub(super) fn dnsmasq(port: u16, local: &str) -> Command {
    let mut cmd = Command::new("dnsmasq");
    cmd.args([
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        "--bind-interfaces",
        "--listen-address=127.0.0.1",
        "--pid-file=",
        // dnsmasq's own records have no TTL unless told: a cache would keep nothing.
        "--local-ttl=300",
        "--log-queries",
        "--log-facility=-",
    ])
    .arg(format!("--local=/{local}/"))
    .arg(format!("--port={port}"))
    .arg(format!("--user={}", user()));
    cmd
}

impl Zones {
    /// Makes the keys and starts dnsmasq on a free loopback port.
    pub fn start() -> Self {
        let dir = TempDir::new("zones");
        for (name, kind) in [("rsa", "rsa"), ("ed", "ed25519")] {
            run_ok(
                Command::new("dknewkey")
                    .args(["--ktype", kind, name])
                    .current_dir(dir.path()),
            );
        }
        let key = |name: &str| {
            let path = dir.path().join(format!("{name}.dns"));
            let text = fs::read_to_string(&path).expect("dknewkey's record");
            text.trim().to_string()
        };
        let mut records: Vec<(String, String)> = RECORDS
            .iter()
            .map(|(n, t)| ((*n).to_string(), (*t).to_string()))
            .collect();
        records.push(("rsa._domainkey.dkim.example".into(), key("rsa")));
        records.push(("ed._domainkey.dkim.example".into(), key("ed")));
        records.push(("arc._domainkey.arc.example".into(), key("rsa")));
        let port = free_port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut cmd = dnsmasq(port, "example");
        for (name, text) in &records {
            // A TXT string holds 255 octets at most: a long record is several strings.
            let parts: Vec<&str> = text
                .as_bytes()
                .chunks(200)
                .map(|c| std::str::from_utf8(c).expect("ASCII"))
                .collect();
            cmd.arg(format!("--txt-record={name},{}", parts.join(",")));
        }
        let mut dns = Proc::spawn("dnsmasq", &mut cmd, &dir.path().join("dnsmasq.log"));
        dns.wait_listening(addr);
        Self { dns, addr, dir }
    }

    /// `text` with a DKIM signature of `dkim.example` by key `selector` (`rsa`, or `ed`
    /// for ed25519), made by `dkimsign`.
    pub fn sign(&self, text: &[u8], selector: &str) -> Vec<u8> {
        let alg = if selector == "ed" {
            "ed25519-sha256"
        } else {
            "rsa-sha256"
        };
        self.tool(
            Command::new("dkimsign")
                .args(["--signalg", alg, selector, "dkim.example"])
                .arg(self.dir.path().join(format!("{selector}.key"))),
            text,
        )
    }

    /// `text`, which carries `relay.example`'s `Authentication-Results`, sealed by
    /// `arc.example` (ARC, instance 1), made by `arcsign`.
    pub fn seal(&self, text: &[u8]) -> Vec<u8> {
        self.tool(
            Command::new("arcsign")
                .args(["arc", "arc.example"])
                .arg(self.dir.path().join("rsa.key"))
                .arg("relay.example"),
            text,
        )
    }

    fn tool(&self, cmd: &mut Command, text: &[u8]) -> Vec<u8> {
        let out = run(cmd, text, Duration::from_secs(60));
        assert!(
            out.status.success() && !out.stdout.is_empty(),
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// The queries it was asked so far.
    pub fn queries(&self) -> String {
        self.dns.log()
    }
}

/// One case: a message, its envelope, and what the verdict must say of it.
#[derive(Debug)]
pub struct Case {
    /// Its name, and the local part of its recipient (`<name>@example.com`).
    pub name: &'static str,
    /// HELO name.
    pub helo: &'static str,
    /// MAIL FROM, empty for `<>`.
    pub mail_from: &'static str,
    /// The message.
    pub text: Vec<u8>,
    /// The message as stored after our trace fields: the text without the
    /// `Authentication-Results` that claim our authserv-id.
    pub kept: Vec<u8>,
    /// What our `Authentication-Results` must hold, unfolded (`dkim=pass header.d=...`).
    pub expect: Vec<&'static str>,
    /// The authenticated `From:` domain, if any.
    pub authenticated_from: Option<&'static str>,
}

/// A message from `from`, with `extra` header fields (CRLF-terminated) after the usual
/// ones, and a body with a dotted line.
pub fn text(from: &str, subject: &str, extra: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\n\
         To: <u@example.com>\r\n\
         Subject: {subject}\r\n\
         Message-ID: <{subject}@client.example>\r\n\
         Date: Fri, 04 Dec 2026 12:00:00 +0000\r\n\
         {extra}\
         \r\n\
         Hello.\r\n\
         .A line that starts with a dot\r\n\
         Bye.\r\n"
    )
    .into_bytes()
}

/// A case with HELO `client.example`.
fn case(
    name: &'static str,
    mail_from: &'static str,
    text: Vec<u8>,
    expect: &[&'static str],
    authenticated_from: Option<&'static str>,
) -> Case {
    Case {
        name,
        helo: "client.example",
        mail_from,
        kept: text.clone(),
        text,
        expect: expect.to_vec(),
        authenticated_from,
    }
}

/// Every case, with messages signed and sealed by `z`'s keys.
pub fn cases(z: &Zones) -> Vec<Case> {
    let signed =
        |selector: &str, name: &str| z.sign(&text("News <news@dkim.example>", name, ""), selector);
    let mut altered = signed("rsa", "altered");
    let at = altered.len() - "Bye.\r\n".len();
    altered.splice(at.., b"Bye, changed on the way.\r\n".iter().copied());
    let sealed = z.seal(&text(
        "a@arc.example",
        "arc",
        "Authentication-Results: relay.example; spf=pass smtp.mailfrom=a@arc.example\r\n",
    ));
    let other =
        "Authentication-Results: other.example;\r\n\tspf=pass smtp.mailfrom=x@other.example\r\n";
    let forged = text(
        "a@spf-pass.example",
        "forged",
        &format!(
            "Authentication-Results: mx.test; dkim=pass header.d=bank.example\r\n\
             {other}\
             Authentication-Results: MX.TEST;\r\n dmarc=pass header.from=bank.example\r\n\
             Authentication-Results:\r\n mx.test; arc=pass header.d=bank.example\r\n\
             Authentication-Results: (trust me) mx.test 1; spf=pass smtp.mailfrom=bank.example\r\n\
             X-Note: a bare CR ends a line for some readers\r\
             Authentication-Results: mx.test; dmarc=pass header.from=bank.example\r\n"
        ),
    );
    let forged_kept = text("a@spf-pass.example", "forged", other);
    vec![
        case(
            "spf-pass",
            "a@spf-pass.example",
            text("a@spf-pass.example", "spf-pass", ""),
            &[
                "spf=pass smtp.mailfrom=a@spf-pass.example",
                "dkim=none",
                "dmarc=pass (p=quarantine) header.from=spf-pass.example",
                "arc=none",
            ],
            Some("spf-pass.example"),
        ),
        case(
            "spf-fail",
            "a@spf-fail.example",
            text("a@spf-fail.example", "spf-fail", ""),
            &["spf=fail smtp.mailfrom=a@spf-fail.example", "dmarc=none"],
            None,
        ),
        case(
            "spf-softfail",
            "a@spf-soft.example",
            text("a@spf-soft.example", "spf-softfail", ""),
            &["spf=softfail smtp.mailfrom=a@spf-soft.example"],
            None,
        ),
        case(
            "spf-include",
            "a@spf-include.example",
            text("a@spf-include.example", "spf-include", ""),
            &["spf=pass smtp.mailfrom=a@spf-include.example"],
            None,
        ),
        case(
            "spf-loop",
            "a@spf-loop.example",
            text("a@spf-loop.example", "spf-loop", ""),
            &["spf=permerror", "smtp.mailfrom=a@spf-loop.example"],
            None,
        ),
        case(
            "spf-none",
            "a@nothing.example",
            text("a@nothing.example", "spf-none", ""),
            &["spf=none smtp.mailfrom=a@nothing.example", "dmarc=none"],
            None,
        ),
        Case {
            helo: "helo-pass.example",
            ..case(
                "null-sender",
                "",
                text("postmaster@helo-pass.example", "null-sender", ""),
                &["spf=pass smtp.helo=helo-pass.example"],
                None,
            )
        },
        case(
            "dkim-rsa",
            "bounce@spf-pass.example",
            signed("rsa", "dkim-rsa"),
            &[
                "spf=pass smtp.mailfrom=bounce@spf-pass.example",
                "dkim=pass header.d=dkim.example header.s=rsa header.b=",
                "dmarc=pass (p=reject) header.from=dkim.example",
            ],
            Some("dkim.example"),
        ),
        case(
            "dkim-ed25519",
            "bounce@spf-pass.example",
            signed("ed", "dkim-ed25519"),
            &[
                "dkim=pass header.d=dkim.example header.s=ed header.b=",
                "dmarc=pass (p=reject) header.from=dkim.example",
            ],
            Some("dkim.example"),
        ),
        case(
            "dkim-altered",
            "bounce@spf-pass.example",
            altered,
            &[
                "dkim=fail (body hash did not verify) header.d=dkim.example header.s=rsa",
                "dmarc=fail (p=reject; ",
                "header.from=dkim.example",
            ],
            None,
        ),
        case(
            "dmarc-reject",
            "a@spf-pass.example",
            text("Boss <boss@reject.example>", "dmarc-reject", ""),
            &[
                "spf=pass smtp.mailfrom=a@spf-pass.example",
                "dmarc=fail (p=reject; ",
                "header.from=reject.example",
            ],
            None,
        ),
        case(
            "dmarc-quarantine",
            "a@spf-pass.example",
            text("a@quarantine.example", "dmarc-quarantine", ""),
            &[
                "dmarc=fail (p=quarantine; ",
                "header.from=quarantine.example",
            ],
            None,
        ),
        case(
            "dmarc-none",
            "a@spf-pass.example",
            text("a@none.example", "dmarc-none", ""),
            &["dmarc=fail (p=none; ", "header.from=none.example"],
            None,
        ),
        case(
            "arc",
            "a@spf-pass.example",
            sealed,
            &["arc=pass arc.chain=1"],
            None,
        ),
        Case {
            kept: forged_kept,
            ..case(
                "forged",
                "a@spf-pass.example",
                forged,
                &[
                    "spf=pass smtp.mailfrom=a@spf-pass.example",
                    "dkim=none",
                    "dmarc=pass (p=quarantine) header.from=spf-pass.example",
                ],
                Some("spf-pass.example"),
            )
        },
    ]
}

/// The expectations of `case` about one check each, as `(check, what its rendering
/// starts with)`: `("dkim", "pass header.d=dkim.example ...")`.
fn renderings(case: &Case) -> impl Iterator<Item = (&'static str, &'static str)> + '_ {
    case.expect.iter().filter_map(|want| {
        let (check, rest) = want.split_once('=')?;
        ["spf", "dkim", "dmarc", "arc"]
            .contains(&check)
            .then_some((check, rest))
    })
}

/// The checks' settings: every check, resolving through `dns` with a 2 s timeout.
fn verify_all(s: &mut Settings, dns: SocketAddr) {
    s.set("GSMTP_VERIFY", "all")
        .set("GSMTP_DNS_SERVERS", &dns.to_string())
        .set("GSMTP_DNS_TIMEOUT", "2")
        .set("GSMTP_MAX_SIZE", "30000000");
}

/// Sends `case` in a new session; the reply.
fn send(d: &Daemon, case: &Case) -> crate::Reply {
    let mut c = Client::connect(d.smtp);
    assert_eq!(c.reply().code, 220);
    c.ehlo(case.helo);
    let to = format!("{}@example.com", case.name);
    c.send_mail(case.mail_from, &[&to], &case.text)
}

/// The header fields of `stored` named `name` (case-insensitive), unfolded.
pub fn fields(stored: &[u8], name: &str) -> Vec<String> {
    let text = String::from_utf8_lossy(stored);
    let head = text.split("\r\n\r\n").next().unwrap_or_default();
    let mut out: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            if let Some(c) = current.as_mut() {
                c.push(' ');
                c.push_str(line.trim());
            }
            continue;
        }
        out.extend(current.take());
        let is_it = line
            .split_once(':')
            .is_some_and(|(n, _)| n.eq_ignore_ascii_case(name));
        current = is_it.then(|| line.to_string());
    }
    out.extend(current);
    out
}

/// Checks the message stored for `case`: our `Authentication-Results` is its first such
/// field, one of ours only, and it says what the case expects; any other authserv-id's
/// is kept; the text follows as sent (less the fields forged in our name).
fn check_stored(case: &Case, stored: &[u8]) {
    let results = fields(stored, "Authentication-Results");
    let ours: Vec<&String> = results
        .iter()
        .filter(|f| {
            let id = f.split_once(':').map_or("", |(_, v)| v).trim_start();
            id.split(';')
                .next()
                .is_some_and(|i| i.trim().eq_ignore_ascii_case(HOST))
        })
        .collect();
    let text = String::from_utf8_lossy(stored);
    assert_eq!(ours.len(), 1, "{}: one of ours only:\n{text}", case.name);
    assert!(
        results[0].starts_with(&format!("Authentication-Results: {HOST}; ")),
        "{}: ours first:\n{text}",
        case.name
    );
    for part in ["spf=", "dkim=", "dmarc=", "arc="] {
        assert!(
            ours[0].contains(part),
            "{}: no {part} in {}",
            case.name,
            ours[0]
        );
    }
    for want in &case.expect {
        assert!(
            ours[0].contains(want),
            "{}: no {want:?} in\n{}",
            case.name,
            ours[0]
        );
    }
    let others = results.len() - 1;
    let kept = text
        .matches("Authentication-Results: other.example;")
        .count()
        + text
            .matches("Authentication-Results: relay.example;")
            .count();
    assert_eq!(others, kept, "{}: others kept:\n{text}", case.name);
    assert!(
        !text.contains("bank.example"),
        "{}: forged results stored",
        case.name
    );
    assert!(
        stored.ends_with(&case.kept),
        "{}: the text as sent",
        case.name
    );
}

/// Every case into Maildir: the stored message carries our `Authentication-Results`
/// (forged ones with our authserv-id gone, another's kept), the log line of each message
/// its verdict, `/metrics` a count per check and result; and a reload keeps the checks.
pub fn verdicts_in_maildir(bin: &str) {
    let z = Zones::start();
    let metrics = super::daemon::free_addr();
    let d = Daemon::start(bin, |s| {
        verify_all(s, z.addr);
        s.set("GSMTP_METRICS_LISTEN", &metrics.to_string());
    });
    for case in cases(&z) {
        let r = send(&d, &case);
        assert_eq!(r.code, 250, "{}: {r:?}", case.name);
        let stored = d.stored(&format!("example.com/{}", case.name));
        assert_eq!(stored.len(), 1, "{}", case.name);
        check_stored(&case, &stored[0]);
        let id = queued_id(&r.wire());
        let line = d.wait_log(&["message queued", &id]);
        let first = case.expect[0]
            .split_once(' ')
            .map_or(case.expect[0], |p| p.0);
        assert!(line.contains(first), "{}: {line}", case.name);
        match case.authenticated_from {
            Some(from) => assert!(
                line.contains(&format!("authenticated_from={from}")),
                "{line}"
            ),
            None => assert!(!line.contains("authenticated_from"), "{line}"),
        }
    }
    let (status, text) = super::operate::http_get(metrics, "/metrics");
    assert_eq!(status, 200);
    for series in [
        "smtp_verdicts_total{check=\"spf\",result=\"permerror\"} 1",
        "smtp_verdicts_total{check=\"dkim\",result=\"fail\"} 1",
        "smtp_verdicts_total{check=\"dmarc\",result=\"pass\"} 4",
        "smtp_verdicts_total{check=\"arc\",result=\"pass\"} 1",
    ] {
        assert!(text.contains(series), "no {series} in\n{text}");
    }
    assert!(
        z.queries()
            .contains("query[TXT] rsa._domainkey.dkim.example")
    );
}

/// Every case over HTTP: the verdict in `X-Smtp-Verdict-*` headers (result word first)
/// covered by the signature, which still verifies; `X-Smtp-Authenticated-From` only when
/// authenticated; the verdict in the JSON envelope; our field atop the message.
pub fn verdicts_over_http(bin: &str) {
    let z = Zones::start();
    let h = super::handoff::HttpSetup::start_with(bin, |s| verify_all(s, z.addr));
    for case in cases(&z) {
        let r = send(&h.d, &case);
        assert_eq!(r.code, 250, "{}: {r:?}", case.name);
        let id = queued_id(&r.wire());
        let stored = fs::read(h.out.path().join(format!("{id}.eml"))).expect("the message");
        check_stored(&case, &stored);
        let meta = fs::read_to_string(h.out.path().join(format!("{id}.json"))).expect("meta");
        let meta: serde_json::Value = serde_json::from_str(&meta).expect("JSON");
        assert_eq!(meta["verified"], true, "{}: the signature", case.name);
        let header = |name: &str| {
            meta["headers"].as_array().and_then(|hs| {
                hs.iter()
                    .find(|h| h[0].as_str().is_some_and(|n| n.eq_ignore_ascii_case(name)))
                    .and_then(|h| h[1].as_str().map(str::to_string))
            })
        };
        for (check, rest) in renderings(&case) {
            let name = format!("X-Smtp-Verdict-{check}");
            let value = header(&name).unwrap_or_else(|| panic!("{}: no {name}", case.name));
            assert!(value.starts_with(rest), "{}: {name}: {value}", case.name);
        }
        assert_eq!(
            header("X-Smtp-Authenticated-From").as_deref(),
            case.authenticated_from,
            "{}",
            case.name
        );
        let verdict = &meta["envelope"]["verdict"];
        assert_eq!(
            verdict["authenticated_from"].as_str(),
            case.authenticated_from,
            "{}: {verdict}",
            case.name
        );
        let dmarc = verdict["dmarc"]["result"].as_str().unwrap_or_default();
        assert!(["pass", "fail", "none"].contains(&dmarc), "{verdict}");
        assert_eq!(
            verdict["dmarc"]["summary"],
            match dmarc {
                "pass" => "PASS",
                "fail" => "FAIL",
                _ => "GRAY",
            }
        );
    }
}

/// The verdict in S3 object metadata, for a passing and a failing DKIM signature, and
/// our field atop the object.
pub fn verdicts_in_s3_metadata(bin: &str) {
    let z = Zones::start();
    let dir = TempDir::new("garage");
    let g = super::garage::Garage::start(&dir, 1);
    let d = super::s3::s3_daemon_with(bin, &g, 0, |s| verify_all(s, z.addr));
    let all = cases(&z);
    for name in ["dkim-rsa", "dkim-altered"] {
        let case = all.iter().find(|c| c.name == name).expect("the case");
        let r = send(&d, case);
        assert_eq!(r.code, 250, "{name}: {r:?}");
        let id = queued_id(&r.wire());
        let (head, body) = g.get(0, &super::s3::key_of(&id)).expect("the object");
        check_stored(case, &body);
        let head = head.to_lowercase();
        for (check, rest) in renderings(case) {
            let line = format!("x-amz-meta-verdict-{check}: {rest}").to_lowercase();
            assert!(head.contains(&line), "{name}: no {line} in\n{head}");
        }
        let from = "x-amz-meta-authenticated-from: dkim.example";
        assert_eq!(
            head.contains(from),
            case.authenticated_from.is_some(),
            "{head}"
        );
    }
}

/// The verdict in a pipe command's environment (`SMTP_VERDICT_*`,
/// `SMTP_AUTHENTICATED_FROM`), and our field atop its input.
pub fn verdicts_in_pipe_environment(bin: &str) {
    let z = Zones::start();
    let (d, out) = super::handoff::pipe_daemon(bin, "", |s| verify_all(s, z.addr));
    let all = cases(&z);
    for name in ["dkim-ed25519", "spf-fail"] {
        let case = all.iter().find(|c| c.name == name).expect("the case");
        let r = send(&d, case);
        assert_eq!(r.code, 250, "{name}: {r:?}");
        let id = queued_id(&r.wire());
        let input = fs::read(out.path().join(format!("{id}.eml"))).expect("its input");
        check_stored(case, &input);
        let env = fs::read_to_string(out.path().join(format!("{id}.env"))).expect("its env");
        for (check, rest) in renderings(case) {
            let line = format!("SMTP_VERDICT_{}={rest}", check.to_uppercase());
            assert!(env.contains(&line), "{name}: no {line} in\n{env}");
        }
        let from = case
            .authenticated_from
            .map(|f| format!("SMTP_AUTHENTICATED_FROM={f}\n"));
        assert_eq!(
            env.contains("SMTP_AUTHENTICATED_FROM="),
            from.is_some(),
            "{env}"
        );
        if let Some(from) = from {
            assert!(env.contains(&from), "{env}");
        }
    }
}

/// LMTP holds its hand-off until the checks are done: Dovecot stores our field atop a
/// DKIM-signed 25 MiB message whose signature passes, and the server's memory grows by
/// far less than the message.
pub fn verdicts_through_lmtp_held(bin: &str) {
    let z = Zones::start();
    let h = super::lmtp::LmtpSetup::start_with(bin, |s| verify_all(s, z.addr));
    let all = cases(&z);
    let small = all.iter().find(|c| c.name == "dkim-rsa").expect("the case");
    let mut c = Client::connect(h.d.smtp);
    assert_eq!(c.reply().code, 220);
    c.ehlo("client.example");
    let r = c.send_mail(small.mail_from, &["u@example.com"], &small.text);
    assert_eq!(r.code, 250, "{r:?}");
    let before = super::handoff::peak_rss_kib(h.d.pid());
    let big = z.sign(
        &[
            text("News <news@dkim.example>", "big", ""),
            super::handoff::big_body(25),
        ]
        .concat(),
        "rsa",
    );
    let r = c.send_mail(small.mail_from, &["u@example.com"], &big);
    assert_eq!(r.code, 250, "{r:?}");
    let grown = super::handoff::peak_rss_kib(h.d.pid()).saturating_sub(before);
    let fetched = h.dc.fetch("u@example.com");
    assert_eq!(fetched.len(), 2);
    check_stored(small, &fetched[0]);
    let big_case = case(
        "big",
        small.mail_from,
        big.clone(),
        &small.expect,
        Some("dkim.example"),
    );
    check_stored(&big_case, &fetched[1]);
    assert!(fetched[1].ends_with(&big), "the text as sent");
    assert!(
        grown < 8 * 1024,
        "the server grew by {grown} KiB for a 25 MiB message"
    );
}

/// A DKIM-signed 25 MiB message into Maildir with every check on: the signature passes
/// (the body hashed as it streamed) and the server's memory grows by far less than the
/// message, the same as with the checks off.
pub fn verdicts_big_message_in_bounded_memory(bin: &str) {
    let z = Zones::start();
    let d = Daemon::start(bin, |s| verify_all(s, z.addr));
    let mut c = Client::connect(d.smtp);
    assert_eq!(c.reply().code, 220);
    c.ehlo("client.example");
    let warm = z.sign(&text("news@dkim.example", "warm", ""), "rsa");
    assert_eq!(
        c.send_mail("b@spf-pass.example", &["u@example.com"], &warm)
            .code,
        250
    );
    let before = super::handoff::peak_rss_kib(d.pid());
    let big = z.sign(
        &[
            text("news@dkim.example", "big", ""),
            super::handoff::big_body(25),
        ]
        .concat(),
        "rsa",
    );
    let r = c.send_mail("b@spf-pass.example", &["u@example.com"], &big);
    assert_eq!(r.code, 250, "{r:?}");
    let grown = super::handoff::peak_rss_kib(d.pid()).saturating_sub(before);
    let stored = d.stored("example.com/u");
    let big_stored = stored
        .iter()
        .find(|m| m.len() > big.len())
        .expect("the big message");
    let results = fields(big_stored, "Authentication-Results");
    assert!(
        results[0].contains("dkim=pass header.d=dkim.example"),
        "{results:?}"
    );
    assert!(big_stored.ends_with(&big));
    assert!(
        grown < 1024,
        "the server grew by {grown} KiB for a 25 MiB message"
    );
}

/// `GSMTP_DMARC_REJECT=Y`: DMARC failing under `p=reject` is `550 5.7.1` and nothing is
/// stored; under `p=quarantine` it is only recorded; a pass is accepted.
pub fn dmarc_reject_refuses_only_p_reject(bin: &str) {
    let z = Zones::start();
    let d = Daemon::start(bin, |s| {
        verify_all(s, z.addr);
        s.set("GSMTP_DMARC_REJECT", "Y");
    });
    let all = cases(&z);
    for case in &all {
        let r = send(&d, case);
        let rejects = case
            .expect
            .iter()
            .any(|e| e.starts_with("dmarc=fail (p=reject"));
        if rejects {
            assert_eq!(
                r.wire(),
                "550 5.7.1 Error: the From: domain's DMARC policy rejects this message\r\n",
                "{}",
                case.name
            );
            let folder = format!("example.com/{}", case.name);
            assert!(d.files(&folder, "new").is_empty(), "{}: stored", case.name);
            assert!(d.files(&folder, "tmp").is_empty(), "{}: left", case.name);
            d.wait_log(&["refused", "code=550", "dmarc=fail"]);
        } else {
            assert_eq!(r.code, 250, "{}: {r:?}", case.name);
        }
    }
    assert_eq!(
        all.iter()
            .filter(|c| c
                .expect
                .iter()
                .any(|e| e.starts_with("dmarc=fail (p=reject")))
            .count(),
        2,
        "the unaligned and the altered message"
    );
}

/// A DNS server that never answers: held open (UDP bound, TCP listening) and never read.
struct Silent {
    _udp: UdpSocket,
    _tcp: TcpListener,
    addr: SocketAddr,
}

impl Silent {
    fn new() -> Self {
        let tcp = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = tcp.local_addr().expect("an address");
        let udp = UdpSocket::bind(addr).expect("bind UDP beside TCP");
        Self {
            _udp: udp,
            _tcp: tcp,
            addr,
        }
    }
}

/// DNS that never answers: each check is `temperror` after the timeout and the message
/// is accepted, even with `GSMTP_DMARC_REJECT=Y` (a `temperror` never earns a `5xx`);
/// with `GSMTP_VERIFY_TEMPFAIL=Y` it is `451 4.7.0`, nothing stored.
pub fn dns_down_is_temperror_never_5xx(bin: &str) {
    let silent = Silent::new();
    let z = Zones::start();
    let all = cases(&z);
    let case = all.iter().find(|c| c.name == "dkim-rsa").expect("the case");
    let start = |tempfail: &str| {
        Daemon::start(bin, |s| {
            verify_all(s, silent.addr);
            s.set("GSMTP_DNS_TIMEOUT", "1")
                .set("GSMTP_DMARC_REJECT", "Y")
                .set("GSMTP_VERIFY_TEMPFAIL", tempfail);
        })
    };
    let d = start("N");
    let began = Instant::now();
    let r = send(&d, case);
    let took = began.elapsed();
    assert_eq!(r.code, 250, "{r:?}");
    assert!(took < Duration::from_secs(8), "the checks took {took:?}");
    let stored = d.stored(&format!("example.com/{}", case.name));
    let ours = &fields(&stored[0], "Authentication-Results")[0];
    for part in ["spf=temperror", "dkim=temperror", "dmarc=temperror"] {
        assert!(ours.contains(part), "no {part} in {ours}");
    }
    drop(d);
    let d = start("Y");
    let r = send(&d, case);
    assert_eq!(
        r.wire(),
        "451 4.7.0 Error: sender authentication could not complete, try again later\r\n"
    );
    assert!(
        d.files(&format!("example.com/{}", case.name), "new")
            .is_empty()
    );
}

/// The header section is held up to 256 KiB to remove fields forged in our name; a
/// longer one, carrying such a field, is refused with `552 5.3.4` and nothing is stored,
/// and the session goes on. Just under the limit, the forged field is removed.
pub fn a_header_too_long_to_clean_is_refused(bin: &str) {
    let silent = Silent::new();
    let d = Daemon::start(bin, |s| {
        verify_all(s, silent.addr);
        s.set("GSMTP_DNS_TIMEOUT", "1");
    });
    let forged = format!("Authentication-Results:\r\n {HOST}; dkim=pass header.d=bank.example\r\n");
    let padded = |kib: usize| {
        let pad = "X-Pad: 0123456789012345678901234567890123456789012345678901234567\r\n";
        let extra = format!("{forged}{}", pad.repeat(kib * 1024 / pad.len()));
        text("a@spf-pass.example", "padded", &extra)
    };
    let mut c = Client::connect(d.smtp);
    assert_eq!(c.reply().code, 220);
    c.ehlo("client.example");
    let r = c.send_mail("a@spf-pass.example", &["big@example.com"], &padded(600));
    assert_eq!(
        r.wire(),
        "552 5.3.4 Error: the header section exceeds 256 KiB\r\n"
    );
    assert!(d.files("example.com/big", "new").is_empty());
    assert!(d.files("example.com/big", "tmp").is_empty());
    let r = c.send_mail("a@spf-pass.example", &["fits@example.com"], &padded(200));
    assert_eq!(r.code, 250, "{r:?}");
    let stored = d.stored("example.com/fits");
    let text = String::from_utf8_lossy(&stored[0]);
    assert!(!text.contains("bank.example"), "a forged field stored");
    assert_eq!(fields(&stored[0], "Authentication-Results").len(), 1);
}

/// A UDP relay to `to` that answers each query `delay` late, on a thread of its own per
/// query; stops when dropped.
struct SlowDns {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl SlowDns {
    fn new(to: SocketAddr, delay: Duration) -> Self {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("a timeout");
        let addr = sock.local_addr().expect("an address");
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        std::thread::spawn(move || {
            let sock = Arc::new(sock);
            let mut buf = [0u8; 4096];
            while !stopped.load(Ordering::Relaxed) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let (query, sock) = (buf[..n].to_vec(), Arc::clone(&sock));
                std::thread::spawn(move || {
                    let up = UdpSocket::bind("127.0.0.1:0").expect("bind");
                    up.set_read_timeout(Some(Duration::from_secs(5)))
                        .expect("a timeout");
                    let mut answer = [0u8; 4096];
                    if up.send_to(&query, to).is_ok()
                        && let Ok(n) = up.recv(&mut answer)
                    {
                        std::thread::sleep(delay);
                        let _ = sock.send_to(&answer[..n], from);
                    }
                });
            }
        });
        Self { addr, stop }
    }
}

impl Drop for SlowDns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// With every DNS answer 1 s late, ten sessions' messages are checked at once (their
/// lookups overlap: the ten take about as long as one), and a session doing other
/// things meanwhile gets every reply at once.
pub fn slow_dns_leaves_other_sessions_alone(bin: &str) {
    let z = Zones::start();
    let slow = SlowDns::new(z.addr, Duration::from_secs(1));
    let d = Daemon::start(bin, |s| {
        verify_all(s, slow.addr);
        s.set("GSMTP_DNS_TIMEOUT", "5");
    });
    let smtp = d.smtp;
    let began = Instant::now();
    let senders: Vec<_> = (0..10)
        .map(|i| {
            std::thread::spawn(move || {
                let mut c = Client::connect(smtp);
                assert_eq!(c.reply().code, 220);
                c.ehlo("client.example");
                // A domain of its own: nothing is cached.
                let from = format!("a@n{i}.slow.example");
                let msg = text(&from, &format!("slow-{i}"), "");
                c.send_mail(&from, &["u@example.com"], &msg)
            })
        })
        .collect();
    let mut probe = Client::connect(smtp);
    assert_eq!(probe.reply().code, 220);
    let mut worst = Duration::ZERO;
    while began.elapsed() < Duration::from_secs(2) {
        for line in ["EHLO probe.example", "NOOP", "RSET"] {
            let t = Instant::now();
            let r = if line.starts_with("EHLO") {
                probe.ehlo("probe.example")
            } else {
                probe.cmd(line)
            };
            assert_eq!(r.code, 250, "{r:?}");
            worst = worst.max(t.elapsed());
        }
    }
    for s in senders {
        let r = s.join().expect("a sender");
        assert_eq!(r.code, 250, "{r:?}");
    }
    let all = began.elapsed();
    assert!(
        worst < Duration::from_millis(300),
        "a reply took {worst:?} while lookups waited"
    );
    assert!(all < Duration::from_secs(15), "ten messages took {all:?}");
    let stored = d.stored("example.com/u");
    assert_eq!(stored.len(), 10);
    for m in &stored {
        let ours = &fields(m, "Authentication-Results")[0];
        assert!(ours.contains("spf=none"), "{ours}");
    }
}

/// A reload turns the checks on for the sessions that follow (the checks' thread starts
/// then), and `GSMTP_DMARC_REJECT` with them; one turning them off again stops adding
/// the field.
pub fn verify_follows_a_reload(bin: &str) {
    let z = Zones::start();
    let mut d = Daemon::start(bin, |s| {
        s.set("GSMTP_DNS_SERVERS", &z.addr.to_string());
    });
    let all = cases(&z);
    let pick = |name: &str| all.iter().find(|c| c.name == name).expect("the case");
    let (signed, unaligned) = (pick("dkim-rsa"), pick("dmarc-reject"));
    let folder = format!("example.com/{}", signed.name);
    assert_eq!(send(&d, signed).code, 250);
    let reload = |d: &mut Daemon, s: &Settings, n: usize| {
        s.write(&d.dir().join("guerrilla.conf"));
        d.process().signal(nix::sys::signal::Signal::SIGHUP);
        assert!(
            super::daemon::wait_until(Duration::from_secs(5), || {
                d.log().matches("configuration reloaded").count() == n
            }),
            "reload {n}: {}",
            d.log()
        );
    };
    let mut on = d.settings.clone();
    verify_all(&mut on, z.addr);
    on.set("GSMTP_DMARC_REJECT", "Y");
    reload(&mut d, &on, 1);
    assert_eq!(send(&d, signed).code, 250);
    assert_eq!(
        send(&d, unaligned).code,
        550,
        "the policy came with the reload"
    );
    let mut off = on.clone();
    off.remove("GSMTP_VERIFY").remove("GSMTP_DMARC_REJECT");
    reload(&mut d, &off, 2);
    assert_eq!(send(&d, signed).code, 250);
    assert_eq!(send(&d, unaligned).code, 250);
    let mut results: Vec<usize> = d
        .files(&folder, "new")
        .iter()
        .map(|p| fields(&fs::read(p).expect("read"), "Authentication-Results").len())
        .collect();
    results.sort_unstable();
    assert_eq!(
        results,
        [0, 0, 1],
        "only the message sent while the checks were on"
    );
}
