//! Hostile input: SMTP smuggling, bare newlines, header injection, abandoned sessions and
//! garbage. The server answers, stays up, and stores nothing it did not acknowledge.

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use proto::config::BareNewline;

use crate::fixture::split_trace;
use crate::{Fixture, Start};

/// Each smuggling end-of-data variant is message text: one message, forged part inside.
pub fn smuggling_variants_are_content(start: Start) {
    let fx = Fixture::start(start, |_| {});
    let variants: [&[u8]; 6] = [
        b"\n.\n",
        b"\n.\r\n",
        b"\r\n.\n",
        b"\r.\r\n",
        b"\r.\r",
        b"\r\n\x00.\r\n",
    ];
    for (i, sep) in variants.iter().enumerate() {
        let mut c = fx.session();
        c.cmd("MAIL FROM:<a@example.net>");
        c.cmd(&format!("RCPT TO:<s{i}@example.com>"));
        assert_eq!(c.cmd("DATA").code, 354);
        let mut payload = b"Subject: real\r\n\r\nreal body".to_vec();
        payload.extend_from_slice(sep);
        payload.extend_from_slice(
            b"MAIL FROM:<ceo@example.net>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\nforged\r\n",
        );
        c.send(&payload);
        assert!(
            c.silent_for(Duration::from_millis(300)),
            "variant {i}: the message ended early"
        );
        c.send(b".\r\n");
        assert_eq!(c.reply().code, 250, "variant {i}");
        assert!(
            c.silent_for(Duration::from_millis(100)),
            "variant {i}: more replies than one"
        );
        let stored = fx.stored(&format!("example.com/s{i}"));
        assert_eq!(stored.len(), 1);
        let (_, body) = split_trace(&stored[0]);
        let text = String::from_utf8_lossy(&body);
        assert!(
            text.contains("MAIL FROM:<ceo@example.net>") && text.ends_with("forged\r\n"),
            "variant {i}: {text:?}"
        );
    }
    assert!(fx.stored("example.com/victim").is_empty());
}

/// Under the default `normalize` policy a bare LF ends a line stored with CRLF.
pub fn bare_lf_is_normalized(start: Start) {
    let fx = Fixture::start(start, |_| {});
    let mut c = fx.session();
    c.cmd("MAIL FROM:<a@example.net>");
    c.cmd("RCPT TO:<u@example.com>");
    c.cmd("DATA");
    c.send(b"Subject: lf\n\nline one\nline two\r\n.\r\n");
    assert_eq!(c.reply().code, 250);
    let (_, body) = split_trace(&fx.stored("example.com/u")[0]);
    assert_eq!(body, b"Subject: lf\r\n\r\nline one\r\nline two\r\n");
}

/// Under `reject`, a bare LF refuses the message with 550 5.5.2; nothing is stored.
pub fn bare_lf_reject_policy(start: Start) {
    let fx = Fixture::start(start, |c| c.bare_newline = BareNewline::Reject);
    let mut c = fx.session();
    c.cmd("MAIL FROM:<a@example.net>");
    c.cmd("RCPT TO:<u@example.com>");
    c.cmd("DATA");
    c.send(b"line one\nline two\r\n.\r\n");
    assert_eq!(c.reply().wire(), "550 5.5.2 Error: bare <LF> received\r\n");
    assert_eq!(c.cmd("NOOP").code, 250);
    c.send(b"NOOP\n");
    assert_eq!(c.reply().wire(), "550 5.5.2 Error: bare <LF> received\r\n");
    assert!(fx.all_files().is_empty(), "{:?}", fx.all_files());
}

/// Whatever the HELO name holds, the trace headers stay two headers.
pub fn received_header_cannot_be_injected(start: Start) {
    let fx = Fixture::start(start, |_| {});
    let mut c = fx.connect();
    c.reply();
    c.send(b"HELO evil)(;<x>\nX-Injected: yes\r\n");
    assert_eq!(c.reply().code, 250);
    let r = c.reply();
    assert_eq!(
        r.code, 500,
        "the second line is its own (bad) command: {r:?}"
    );
    assert_eq!(
        c.send_mail("a@example.net", &["u@example.com"], b"body\r\n")
            .code,
        250
    );
    let message = &fx.stored("example.com/u")[0];
    let (trace, body) = split_trace(message);
    assert!(
        trace.starts_with(
            "Return-Path: <a@example.net>\r\nDelivered-To: u@example.com\r\n\
             Received: from evil????x? (unknown [127.0.0.1])\r\n"
        ),
        "{trace}"
    );
    assert!(!String::from_utf8_lossy(message).contains("X-Injected"));
    assert_eq!(body, b"body\r\n");
}

/// A client that disappears in the middle of DATA leaves nothing behind.
pub fn disconnect_mid_data_stores_nothing(start: Start) {
    let fx = Fixture::start(start, |_| {});
    for size in [100, 200_000] {
        let mut c = fx.session();
        c.cmd("MAIL FROM:<a@example.net>");
        c.cmd("RCPT TO:<u@example.com>");
        c.cmd("DATA");
        c.send(&b"unfinished line\r\n".repeat(size / 17 + 1));
        drop(c);
    }
    fx.wait_idle();
    assert!(fx.stored("example.com/u").is_empty());
    assert!(fx.tmp_files().is_empty(), "{:?}", fx.tmp_files());
}

/// Binary junk, a TLS ClientHello on the plain port, NULs and endless lines: each gets
/// an answer or a close, and the server keeps serving.
pub fn garbage_does_not_kill_the_server(start: Start) {
    let fx = Fixture::start(start, |_| {});
    let junk: [&[u8]; 5] = [
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage",
        b"\x00\x00\x00\x00\r\n\xff\xfe\r\n",
        &[b'A'; 100_000],
        b"XCLIENT\r\nXCLIENT ADDR=1.2.3.4\r\nXCLIENT ADDR=\r\n",
        b"MAIL FROM:<\xff@example.net>\r\nRCPT TO:<\x00@example.com>\r\nBDAT 99999999999999999999\r\n",
    ];
    for bytes in junk {
        let mut tcp = TcpStream::connect(fx.server.smtp()).expect("connect");
        let _ = tcp.write_all(bytes);
        let _ = tcp.write_all(b"\r\nQUIT\r\n");
        drop(tcp);
    }
    let mut c = fx.session();
    assert_eq!(
        c.send_mail("a@example.net", &["u@example.com"], b"still here\r\n")
            .code,
        250
    );
}

/// A connection that opens like an HTTP request (a browser or proxy tricked into
/// talking to SMTP: a cross-protocol attack) is answered once and closed at once; the
/// lines after it are never run. Postfix does the same.
pub fn http_request_is_closed_at_once(start: Start) {
    let fx = Fixture::start(start, |_| {});
    for request in [
        "GET / HTTP/1.1",
        "POST /mail HTTP/1.1",
        "CONNECT mx.test:25 HTTP/1.1",
    ] {
        let mut c = fx.connect();
        assert_eq!(c.reply().code, 220);
        c.send(
            format!("{request}\r\nHost: mx.test\r\n\r\nMAIL FROM:<a@example.net>\r\n").as_bytes(),
        );
        let r = c.reply();
        assert_eq!(
            (r.code, r.text().starts_with("2.7.0 ")),
            (221, true),
            "{request}: {r:?}"
        );
        assert!(
            c.is_closed(),
            "{request}: closed at once, nothing more answered"
        );
    }
    // After EHLO too.
    let mut c = fx.session();
    c.send(b"GET /x HTTP/1.0\r\n");
    assert_eq!(c.reply().code, 221);
    assert!(c.is_closed());
}
