//! Sessions end to end: greeting, EHLO, delivery, TLS, BDAT, XCLIENT.

use std::net::SocketAddr;

use proto::policy::IpNet;

use crate::fixture::split_trace;
use crate::{Fixture, Start};

/// `Ddd, DD Mmm YYYY HH:MM:SS +0000`.
fn is_rfc5322_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 31
        && s[..3].chars().all(|c| c.is_ascii_alphabetic())
        && &s[3..5] == ", "
        && b[5..7].iter().all(u8::is_ascii_digit)
        && s.ends_with(" +0000")
        && b[12..16].iter().all(u8::is_ascii_digit)
}

/// `250 2.0.0 OK : queued as <32 hex digits>`: returns the id.
pub(crate) fn queued_id(text: &str) -> String {
    let id = text
        .strip_prefix("2.0.0 OK : queued as ")
        .unwrap_or_else(|| panic!("not a queued reply: {text:?}"));
    assert!(
        id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "bad queue id {id:?}"
    );
    id.to_string()
}

/// The original's greeting: `220 <host> SMTP Guerrilla-SMTPd #<id> (<active>) <date>`.
pub fn greeting_shape(start: Start) {
    let fx = Fixture::start(start, |_| {});
    let mut c = fx.connect();
    let r = c.reply();
    assert_eq!(r.code, 220);
    let rest = r
        .text()
        .strip_prefix("mx.test SMTP Guerrilla-SMTPd #")
        .unwrap_or_else(|| panic!("{r:?}"));
    let (id, rest) = rest.split_once(" (").expect("an id");
    let (active, date) = rest.split_once(") ").expect("an active count");
    assert!(id.parse::<u64>().is_ok_and(|n| n >= 1), "{id}");
    assert_eq!(active, "1");
    assert!(is_rfc5322_date(date), "{date:?}");
}

/// SIZE shows the configured limit; STARTTLS is offered only with a certificate.
pub fn ehlo_advertises_size_and_starttls(start: Start) {
    let fx = Fixture::start(start, |c| c.max_size = 5000);
    let mut c = fx.session();
    let r = c.ehlo("client.example");
    assert!(r.lines.contains(&"SIZE 5000".to_string()), "{r:?}");
    assert!(r.lines.contains(&"STARTTLS".to_string()), "{r:?}");
    let plain = Fixture::start(start, |c| {
        c.tls_cert = None;
        c.tls_key = None;
    });
    let r = plain.session().ehlo("client.example");
    assert!(!r.lines.iter().any(|l| l == "STARTTLS"), "{r:?}");
    let mut c = plain.session();
    assert_eq!(
        c.cmd("STARTTLS").wire(),
        "502 5.5.1 Error: STARTTLS not offered\r\n"
    );
}

/// A message is stored, acknowledged with its queue id, and QUIT closes the session.
pub fn delivery_and_quit(start: Start) {
    let fx = Fixture::start(start, |_| {});
    let mut c = fx.session();
    let r = c.send_mail(
        "a@example.net",
        &["u@example.com"],
        b"Subject: t\r\n\r\nhello\r\n",
    );
    assert_eq!(r.code, 250);
    let id = queued_id(r.text());
    assert_eq!(c.cmd("QUIT").wire(), "221 2.0.0 Bye\r\n");
    assert!(c.is_closed());
    let stored = fx.stored("example.com/u");
    assert_eq!(stored.len(), 1);
    let (trace, body) = split_trace(&stored[0]);
    assert!(trace.contains(&format!(" id {id}\r\n")), "{trace}");
    assert_eq!(body, b"Subject: t\r\n\r\nhello\r\n");
}

/// Two messages on one connection: two files, two ids, no state carried over.
pub fn two_messages_one_session(start: Start) {
    let fx = Fixture::start(start, |_| {});
    let mut c = fx.session();
    let a = c.send_mail("a@example.net", &["u@example.com"], b"first\r\n");
    let b = c.send_mail("b@example.net", &["v@example.com"], b"second\r\n");
    assert_ne!(queued_id(a.text()), queued_id(b.text()));
    assert_eq!(
        c.cmd("DATA").code,
        503,
        "the transaction ended with the message"
    );
    assert_eq!(fx.stored("example.com/u").len(), 1);
    assert_eq!(fx.stored("example.com/v").len(), 1);
}

/// Bounces (`MAIL FROM:<>`) to `<Postmaster>` and to postmaster at the server's own name
/// (not an allowed domain here) are accepted and stored in one mailbox, with the null
/// sender in `Return-Path`.
pub fn null_sender_and_postmaster(start: Start) {
    let fx = Fixture::start(start, |_| {});
    let mut c = fx.session();
    let r = c.send_mail("", &["Postmaster"], b"bounce\r\n");
    assert_eq!(r.code, 250, "{r:?}");
    let r = c.send_mail("", &["PostMaster@MX.test"], b"bounce\r\n");
    assert_eq!(r.code, 250, "{r:?}");
    assert_eq!(c.cmd("MAIL FROM:<>").code, 250);
    assert_eq!(c.cmd("RCPT TO:<postmaster@other.test>").code, 550);
    assert_eq!(c.cmd("RSET").code, 250);
    let stored = fx.stored("mx.test/postmaster");
    assert_eq!(stored.len(), 2);
    for s in &stored {
        assert!(s.starts_with(b"Return-Path: <>\r\nDelivered-To: postmaster@mx.test\r\n"));
    }
}

/// Mail over STARTTLS says so in its Received header.
pub fn starttls_delivery_is_traced(start: Start) {
    let fx = Fixture::start(start, |_| {});
    let mut c = fx.session();
    assert_eq!(c.cmd("STARTTLS").wire(), "220 2.0.0 Ready to start TLS\r\n");
    c.upgrade().expect("handshake");
    c.ehlo("client.example");
    assert_eq!(
        c.send_mail("a@example.net", &["u@example.com"], b"secret\r\n")
            .code,
        250
    );
    let (trace, _) = split_trace(&fx.stored("example.com/u")[0]);
    assert!(
        trace.contains("\t(using TLSv1.3 with cipher TLS_AES_"),
        "{trace}"
    );
    assert!(trace.contains(" with ESMTPS id "), "{trace}");
}

/// The RFC 8314 listener: TLS first, then the greeting; STARTTLS is not offered.
pub fn implicit_tls_listener(start: Start) {
    let fx = Fixture::start(start, |c| {
        c.tls_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)))
    });
    let mut c = fx.connect_tls();
    assert_eq!(c.reply().code, 220);
    let r = c.ehlo("client.example");
    assert!(!r.lines.iter().any(|l| l == "STARTTLS"), "{r:?}");
    assert_eq!(
        c.send_mail("a@example.net", &["u@example.com"], b"x\r\n")
            .code,
        250
    );
    let (trace, _) = split_trace(&fx.stored("example.com/u")[0]);
    assert!(trace.contains(" with ESMTPS id "), "{trace}");
}

/// TLS 1.2 and TLS 1.3 both work (older versions are not offered at all).
pub fn tls12_and_tls13(start: Start) {
    let fx = Fixture::start(start, |_| {});
    for (version, expected) in [
        (&rustls::version::TLS12, rustls::ProtocolVersion::TLSv1_2),
        (&rustls::version::TLS13, rustls::ProtocolVersion::TLSv1_3),
    ] {
        let mut c = fx.session();
        assert_eq!(c.cmd("STARTTLS").code, 220);
        c.upgrade_with(&[version]).expect("handshake");
        assert_eq!(c.tls_version(), Some(expected));
        c.ehlo("client.example");
        assert_eq!(c.cmd("NOOP").code, 250);
    }
}

/// A client that sends garbage instead of a ClientHello is dropped; the server lives on.
pub fn failed_handshake_does_not_crash(start: Start) {
    let fx = Fixture::start(start, |_| {});
    let mut c = fx.session();
    assert_eq!(c.cmd("STARTTLS").code, 220);
    c.send(b"this is not a TLS record\r\n");
    assert!(c.drains_to_close(), "the server kept the connection open");
    let mut again = fx.session();
    assert_eq!(again.cmd("NOOP").code, 250);
}

/// BDAT chunks are stored byte for byte, without dot-stuffing.
pub fn bdat_delivery(start: Start) {
    let fx = Fixture::start(start, |_| {});
    let mut c = fx.session();
    c.cmd("MAIL FROM:<a@example.net>");
    c.cmd("RCPT TO:<u@example.com>");
    let part1 = b"Subject: chunks\r\n\r\n.leading dot\r\n";
    c.send(format!("BDAT {}\r\n", part1.len()).as_bytes());
    c.send(part1);
    assert_eq!(
        c.reply().text(),
        format!("2.0.0 {} octets received", part1.len())
    );
    c.send(b"BDAT 5 LAST\r\n.\r\n\r\n");
    assert_eq!(c.reply().code, 250);
    let (_, body) = split_trace(&fx.stored("example.com/u")[0]);
    assert_eq!(body, b"Subject: chunks\r\n\r\n.leading dot\r\n.\r\n\r\n");
}

/// XCLIENT from a trusted proxy changes the client in the trace; from others, 550; and
/// no host is trusted by default.
pub fn xclient_changes_client_identity(start: Start) {
    let fx = Fixture::start(start, |c| {
        c.trusted_proxies = vec!["127.0.0.1".parse::<IpNet>().expect("an address")]
    });
    let mut c = fx.session();
    let r = c.cmd("XCLIENT ADDR=192.0.2.50 NAME=client.example.org");
    assert_eq!(r.code, 220, "a fresh greeting: {r:?}");
    c.ehlo("real-client.example");
    assert_eq!(
        c.send_mail("a@example.net", &["u@example.com"], b"x\r\n")
            .code,
        250
    );
    let (trace, _) = split_trace(&fx.stored("example.com/u")[0]);
    assert!(
        trace.contains("Received: from real-client.example (client.example.org [192.0.2.50])"),
        "{trace}"
    );
    // The client behind the proxy cannot claim another identity in turn.
    assert_eq!(
        c.cmd("XCLIENT ADDR=192.0.2.51").wire(),
        "550 5.7.0 Error: insufficient authorization\r\n"
    );
    let strict = Fixture::start(start, |c| {
        c.trusted_proxies = vec!["10.9.9.9".parse::<IpNet>().expect("an address")]
    });
    let by_default = Fixture::start(start, |_| {});
    assert!(by_default.cfg.trusted_proxies.is_empty());
    for fx in [strict, by_default] {
        let mut c = fx.session();
        assert!(!c.ehlo("x").lines.iter().any(|l| l.starts_with("XCLIENT")));
        assert_eq!(
            c.cmd("XCLIENT ADDR=192.0.2.50").wire(),
            "550 5.7.0 Error: insufficient authorization\r\n"
        );
    }
}

/// An IPv6 listener; the client's address is traced as such.
pub fn ipv6_listener(start: Start) {
    let fx = Fixture::start(start, |c| c.listen = "[::1]:0".parse().expect("an address"));
    let mut c = fx.session();
    assert_eq!(
        c.send_mail("a@example.net", &["u@example.com"], b"v6\r\n")
            .code,
        250
    );
    let (trace, _) = split_trace(&fx.stored("example.com/u")[0]);
    assert!(trace.contains("(unknown [::1])"), "{trace}");
}
