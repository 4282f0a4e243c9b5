//! `GSMTP_DNSBL` against private blocklists: dnsmasq on a loopback port serving five
//! zones, each a defect or a case: `one.test` (weight 2) and `two.test` (filter
//! `127.0.0.[2..11]`, weight 1) list a few documentation addresses, IPv4 and IPv6;
//! `err.test` (weight 5) answers one client with Spamhaus's error code `127.255.255.254`;
//! `all.test` (weight 5) lists everything, `127.0.0.1` included; `dead.test` (weight 5)
//! is forwarded to a UDP socket that never answers. Clients are named by PROXY headers
//! (swaks's `--proxy`) or XCLIENT (swaks's `--xclient-addr`) and talk to the real
//! binary; what was stored is read back from the Maildir.

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use super::daemon::{Daemon, Proc, Settings, free_port, run};
use crate::TempDir;

/// The sites every test asks, threshold 3 (the default).
const SITES: &str = "one.test*2, two.test=127.0.0.[2..11]*1, err.test*5, all.test*5, dead.test*5";

/// The blocklists' DNS server.
#[derive(Debug)]
pub struct Blocklists {
    dns: Proc,
    /// Where it answers.
    pub addr: SocketAddr,
    /// The socket `dead.test` is forwarded to: it never answers.
    _dead: UdpSocket,
    _dir: TempDir,
}

/// The nibble name of `2001:db8::10` (one.test and two.test list it: score 3).
const V6_LISTED: &str = "0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2";

/// The A records: name, answer.
const RECORDS: &[(&str, &str)] = &[
    // Every working zone's test entry (RFC 5782 §5).
    ("2.0.0.127.one.test", "127.0.0.2"),
    ("2.0.0.127.two.test", "127.0.0.2"),
    ("2.0.0.127.err.test", "127.0.0.2"),
    // 192.0.2.10: one.test only (score 2, accepted).
    ("10.2.0.192.one.test", "127.0.0.2"),
    // 192.0.2.20: both (score 3, blocked, the refusal naming one.test, the heavier).
    ("20.2.0.192.one.test", "127.0.0.3"),
    ("20.2.0.192.two.test", "127.0.0.4"),
    // 192.0.2.40: err.test's error code, which is no listing.
    ("40.2.0.192.err.test", "127.255.255.254"),
    // 192.0.2.50: an answer outside two.test's filter.
    ("50.2.0.192.two.test", "127.0.0.50"),
];

impl Blocklists {
    /// Starts dnsmasq on a free loopback port with the zones.
    pub fn start() -> Self {
        let dir = TempDir::new("dnsbl");
        let dead = UdpSocket::bind("127.0.0.1:0").expect("a silent socket");
        let dead_port = dead.local_addr().expect("its port").port();
        let port = free_port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut cmd = super::verdicts::dnsmasq(port, "test");
        cmd.arg("--address=/all.test/127.0.0.2")
            .arg(format!("--server=/dead.test/127.0.0.1#{dead_port}"));
        for (name, answer) in RECORDS {
            cmd.arg(format!("--host-record={name},{answer}"));
        }
        for zone in ["one.test", "two.test"] {
            cmd.arg(format!("--host-record={V6_LISTED}.{zone},127.0.0.2"));
        }
        let mut dns = Proc::spawn("dnsmasq", &mut cmd, &dir.path().join("dnsmasq.log"));
        dns.wait_listening(addr);
        Self {
            dns,
            addr,
            _dead: dead,
            _dir: dir,
        }
    }

    /// The queries it was asked so far.
    pub fn queries(&self) -> String {
        self.dns.log()
    }
}

/// An instance asking [`SITES`] of `z`, expecting PROXY headers (and taking XCLIENT)
/// from loopback,
/// with a DNS time-out of 1 s and `/metrics` served.
fn server(bin: &str, z: &Blocklists, tweak: impl FnOnce(&mut Settings)) -> (Daemon, SocketAddr) {
    let metrics = super::daemon::free_addr();
    let d = Daemon::start(bin, |s| {
        s.set("GSMTP_DNSBL", SITES)
            .set("GSMTP_DNS_SERVERS", &z.addr.to_string())
            .set("GSMTP_DNS_TIMEOUT", "1")
            .set("GSMTP_XCLIENT_HOSTS", "127.0.0.1")
            .set("GSMTP_PROXY_PROTOCOL", "Y")
            .set("GSMTP_METRICS_LISTEN", &metrics.to_string());
        tweak(s);
    });
    (d, metrics)
}

/// swaks through `d` as the client `proxy` names (a PROXY v1 header's body: `TCP4 ...`),
/// or, with `xclient`, as the client that XCLIENT names; its transcript.
fn swaks(d: &Daemon, proxy: Option<&str>, xclient: Option<&str>, to: &str) -> String {
    let mut cmd = Command::new("swaks");
    cmd.args(["--server", &d.smtp.to_string()])
        .args(["--ehlo", "client.example", "--from", "a@example.net"])
        .args(["--to", to, "--timeout", "20"])
        .args(["--header", &format!("Subject: dnsbl {to}")])
        // A sender's forgery of our verdict, never stored.
        .args(["--add-header", "X-Dnsbl: pass score=0 (forged)"]);
    if let Some(p) = proxy {
        cmd.args(["--proxy", p]);
    }
    if let Some(a) = xclient {
        cmd.args(["--xclient-addr", a]);
    }
    let out = run(&mut cmd, b"", Duration::from_secs(60));
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// The refusal of `client` naming one.test, as swaks shows a reply that refused.
fn refusal(client: &str) -> String {
    format!("<** 554 5.7.1 Service unavailable; client [{client}] blocked using one.test")
}

/// A PROXY v1 body naming IPv4 client `ip`.
fn tcp4(ip: &str) -> String {
    format!("TCP4 {ip} 127.0.0.1 40000 25")
}

/// The one message stored for `user@example.com`, as text.
fn stored(d: &Daemon, user: &str) -> String {
    let all = d.stored(&format!("example.com/{user}"));
    assert_eq!(all.len(), 1, "{user}: {:?}", d.all_files());
    String::from_utf8_lossy(&all[0]).into_owned()
}

/// `/metrics`.
fn metrics_text(at: SocketAddr) -> String {
    let (status, text) = super::operate::http_get(at, "/metrics");
    assert_eq!(status, 200);
    text
}

/// A client whose score reaches the threshold (one.test 2 + two.test 1) is answered
/// `554 5.7.1` naming the heavier zone instead of the greeting, logged and counted by
/// zone; all.test, which lists everything, is found broken at start (log, metric) and
/// never counted, else every client would be blocked.
pub fn dnsbl_listed_client_refused_at_greeting(bin: &str) {
    let z = Blocklists::start();
    let (d, metrics) = server(bin, &z, |_| {});
    let out = swaks(&d, Some(&tcp4("192.0.2.20")), None, "blocked@example.com");
    assert_eq!(out.matches(&refusal("192.0.2.20")).count(), 1, "{out}");
    assert!(!out.contains("220 mx.test"), "no greeting: {out}");
    assert!(d.all_files().is_empty(), "{:?}", d.all_files());
    let line = d.wait_log(&["client blocked by DNS blocklists", "192.0.2.20"]);
    assert!(line.contains("zone=one.test"), "{line}");
    assert!(line.contains("score=3"), "{line}");
    assert!(
        line.contains("one.test=127.0.0.3*2,two.test=127.0.0.4*1"),
        "{line}"
    );
    d.wait_log(&["DNS blocklist broken", "all.test", "127.0.0.1"]);
    let text = metrics_text(metrics);
    for series in [
        "smtp_dnsbl_blocked_total{zone=\"one.test\"} 1",
        "smtp_dnsbl_zone_broken{zone=\"all.test\"} 1",
        "smtp_dnsbl_zone_broken{zone=\"one.test\"} 0",
        "smtp_dnsbl_lookups_total{result=\"listed\",zone=\"two.test\"} 1",
    ] {
        assert!(text.contains(series), "no {series} in\n{text}");
    }
    assert!(
        !text.contains("smtp_dnsbl_lookups_total{result=\"listed\",zone=\"all.test\"}"),
        "a broken zone is not asked:\n{text}"
    );
}

/// Below the threshold (one.test alone, 2 of 3) the client is accepted, and the listing
/// is recorded in the stored message (`X-Dnsbl`) and in the log line; an answer outside
/// a zone's filter and a zone's error code `127.255.255.254` are no listings.
pub fn dnsbl_below_threshold_accepted_with_listings(bin: &str) {
    let z = Blocklists::start();
    let (d, _) = server(bin, &z, |_| {});
    let out = swaks(&d, Some(&tcp4("192.0.2.10")), None, "listed@example.com");
    assert!(out.contains("250 2.0.0 OK : queued as"), "{out}");
    let text = stored(&d, "listed");
    assert!(
        text.contains(
            "X-Dnsbl: neutral (no answer from dead.test) score=2 listed=one.test=127.0.0.2*2\r\n"
        ),
        "{text}"
    );
    assert_eq!(
        text.matches("X-Dnsbl:").count(),
        1,
        "the forged one is kept:\n{text}"
    );
    let line = d.wait_log(&["message queued", "listed@example.com"]);
    assert!(line.contains("dnsbl=neutral"), "{line}");
    assert!(line.contains("dnsbl_listed=one.test=127.0.0.2*2"), "{line}");
    // err.test (weight 5) answers 192.0.2.40 with its error code: not listed.
    let out = swaks(&d, Some(&tcp4("192.0.2.40")), None, "errcode@example.com");
    assert!(out.contains("250 2.0.0 OK : queued as"), "{out}");
    let text = stored(&d, "errcode");
    assert!(
        text.contains("X-Dnsbl: temperror (no answer from dead.test) score=0\r\n"),
        "{text}"
    );
    // two.test answers 192.0.2.50 with 127.0.0.50, outside its filter [2..11].
    let out = swaks(&d, Some(&tcp4("192.0.2.50")), None, "filtered@example.com");
    assert!(out.contains("250 2.0.0 OK : queued as"), "{out}");
    assert!(stored(&d, "filtered").contains("score=0\r\n"));
    assert!(
        z.queries().contains("query[A] 40.2.0.192.err.test"),
        "{}",
        z.queries()
    );
}

/// A zone that never answers counts 0 and is logged: the greeting still comes within
/// `GSMTP_DNS_TIMEOUT` (1 s, and a little for the hop), and the failure is counted.
pub fn dnsbl_dead_zone_counts_zero_within_the_timeout(bin: &str) {
    let z = Blocklists::start();
    let (d, metrics) = server(bin, &z, |s| {
        s.set("GSMTP_DNSBL", "dead.test*5, one.test*2");
    });
    let mut c = crate::Client::connect(d.smtp);
    let started = Instant::now();
    c.send(format!("PROXY {}\r\n", tcp4("192.0.2.30")).as_bytes());
    let greeting = c.reply();
    let took = started.elapsed();
    assert_eq!(greeting.code, 220, "{greeting:?}");
    assert!(took < Duration::from_millis(2500), "greeted after {took:?}");
    assert!(took >= Duration::from_millis(900), "did it wait? {took:?}");
    drop(c);
    d.wait_log(&["DNS blocklist did not answer", "dead.test", "192.0.2.30"]);
    let text = metrics_text(metrics);
    let series = "smtp_dnsbl_lookups_total{result=\"failed\",zone=\"dead.test\"} 1";
    assert!(text.contains(series), "no {series} in\n{text}");
}

/// With `GSMTP_DNSBL_ACTION=reject-rcpt` the blocked client is greeted, and every RCPT
/// is answered with the refusal.
pub fn dnsbl_reject_rcpt_answers_every_rcpt(bin: &str) {
    let z = Blocklists::start();
    let (d, _) = server(bin, &z, |s| {
        s.set("GSMTP_DNSBL_ACTION", "reject-rcpt");
    });
    let out = swaks(
        &d,
        Some(&tcp4("192.0.2.20")),
        None,
        "a@example.com,b@example.com",
    );
    assert!(out.contains("<-  220 mx.test"), "{out}");
    assert_eq!(out.matches(&refusal("192.0.2.20")).count(), 2, "{out}");
    assert!(d.all_files().is_empty(), "{:?}", d.all_files());
}

/// XCLIENT naming a listed client: screened again, and refused; one naming a client
/// that is not listed: accepted, with its own (empty) result recorded. The passing
/// client is remembered (asked once for two sessions); the blocked one never is.
pub fn dnsbl_screens_the_client_xclient_names(bin: &str) {
    let z = Blocklists::start();
    let (d, _) = server(bin, &z, |s| {
        s.set("GSMTP_DNSBL", "one.test*2, two.test*1")
            .remove("GSMTP_PROXY_PROTOCOL");
    });
    let out = swaks(&d, None, Some("192.0.2.20"), "x@example.com");
    assert_eq!(out.matches(&refusal("192.0.2.20")).count(), 1, "{out}");
    let out = swaks(&d, None, Some("192.0.2.30"), "clean@example.com");
    assert!(out.contains("250 2.0.0 OK : queued as"), "{out}");
    assert!(
        stored(&d, "clean").contains("X-Dnsbl: pass score=0\r\n"),
        "the client XCLIENT named, not the proxy"
    );
    let again = swaks(&d, None, Some("192.0.2.30"), "clean@example.com");
    assert!(again.contains("250 2.0.0 OK : queued as"), "{again}");
    let again = swaks(&d, None, Some("192.0.2.20"), "x@example.com");
    assert!(again.contains("554 5.7.1"), "{again}");
    let q = z.queries();
    assert_eq!(q.matches("query[A] 30.2.0.192.one.test").count(), 1, "{q}");
    assert_eq!(q.matches("query[A] 20.2.0.192.one.test").count(), 2, "{q}");
}

/// An IPv6 client (a PROXY TCP6 header) is asked by its reversed nibbles, and blocked
/// by the two zones that list it.
pub fn dnsbl_ipv6_client_by_nibbles(bin: &str) {
    let z = Blocklists::start();
    let (d, _) = server(bin, &z, |s| {
        s.set("GSMTP_DNSBL", "one.test*2, two.test*1");
    });
    let out = swaks(
        &d,
        Some("TCP6 2001:db8::10 ::1 40000 25"),
        None,
        "v6@example.com",
    );
    assert_eq!(out.matches(&refusal("2001:db8::10")).count(), 1, "{out}");
    assert!(
        z.queries()
            .contains(&format!("query[A] {V6_LISTED}.two.test")),
        "{}",
        z.queries()
    );
}
