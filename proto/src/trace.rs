//! Trace headers (RFC 5321 §4.4) and dates (RFC 5322 §3.3), put before each stored message.
//!
//! Each stored file starts with `Return-Path:`, which RFC 5321 §4.4 asks of the server
//! that makes the final delivery (so that a Maildir reader can tell a bounce, `<>`, from
//! other mail), then the original's two headers, `Delivered-To:` and `Received:`. Nothing
//! a client sends can break out of them: names are visible ASCII by the time they get
//! here (the parser sees to that), and any character that could end a clause is replaced
//! by `?`. Addresses are written as RFC 5321 spells them (a quoted local part keeps its
//! quotes), with only control characters, which the parser never lets through, replaced.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::delivery::{Envelope, Protocol, QueueId, Recipient, TlsInfo};
use crate::syntax::ReversePath;

/// The name OpenSSL (and so Postfix, in its Received headers and logs) gives a cipher
/// suite, from the name rustls gives it: `TLS13_AES_256_GCM_SHA384` is
/// `TLS_AES_256_GCM_SHA384`, `TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256` is
/// `ECDHE-RSA-AES128-GCM-SHA256`. A name it does not know is returned as it is.
pub fn openssl_cipher_name(rustls_name: &str) -> String {
    if let Some(rest) = rustls_name.strip_prefix("TLS13_") {
        return format!("TLS_{rest}");
    }
    let Some(rest) = rustls_name.strip_prefix("TLS_ECDHE_") else {
        return rustls_name.to_string();
    };
    let Some((auth, cipher)) = rest.split_once("_WITH_") else {
        return rustls_name.to_string();
    };
    let cipher = match cipher {
        "AES_128_GCM_SHA256" => "AES128-GCM-SHA256",
        "AES_256_GCM_SHA384" => "AES256-GCM-SHA384",
        "CHACHA20_POLY1305_SHA256" => "CHACHA20-POLY1305",
        _ => return rustls_name.to_string(),
    };
    format!("ECDHE-{auth}-{cipher}")
}

/// Everything a Received header says.
#[derive(Clone, Debug)]
pub struct Trace<'a> {
    /// The HELO/EHLO name the client gave (or XCLIENT's HELO).
    pub helo: &'a str,
    /// The client's address (or XCLIENT's / PROXY's).
    pub client_ip: IpAddr,
    /// The client's verified name, if a proxy told us one.
    pub client_name: Option<&'a str>,
    /// This server's name.
    pub host: &'a str,
    /// The `with` keyword.
    pub protocol: Protocol,
    /// The TLS parameters, when the session used TLS.
    pub tls: Option<&'a TlsInfo>,
    /// The queue id, also given in the 250 reply.
    pub id: QueueId,
    /// The sender, for `Return-Path:`.
    pub sender: &'a ReversePath<'a>,
    /// The recipient this copy is for.
    pub recipient: Option<&'a str>,
    /// When the message was received.
    pub date: SystemTime,
}

impl<'a> Trace<'a> {
    /// The trace data for `env`'s copy for `recipient`, received at `date` by `host`.
    pub fn new(
        env: &'a Envelope,
        host: &'a str,
        recipient: &'a Recipient,
        date: SystemTime,
    ) -> Self {
        Self {
            helo: &env.helo,
            client_ip: env.client_ip,
            client_name: env.client_name.as_deref(),
            host,
            protocol: env.protocol,
            tls: env.tls.as_ref(),
            id: env.id,
            sender: &env.from,
            recipient: Some(&recipient.address),
            date,
        }
    }
}

/// Appends `Return-Path: <sender>`, `X-Original-To: <address>` when the address was
/// rewritten, `Delivered-To: <address>` and the Received header, each ending in CRLF: the
/// headers of a final delivery (a Maildir file), in the order Postfix's local(8) writes
/// them. Returns where the Received header begins in `out`: an `Authentication-Results`
/// field goes there, between the delivery's headers and ours.
pub fn write_prefix(
    out: &mut Vec<u8>,
    original_to: Option<&str>,
    delivered_to: &str,
    trace: &Trace<'_>,
) -> usize {
    write_return_path(out, trace.sender);
    if let Some(original) = original_to {
        out.extend_from_slice(format!("X-Original-To: {}\r\n", clean_address(original)).as_bytes());
    }
    out.extend_from_slice(format!("Delivered-To: {}\r\n", clean_address(delivered_to)).as_bytes());
    let received = out.len();
    write_received(out, trace);
    received
}

/// Appends `Return-Path: <sender>` and CRLF (RFC 5321 §4.4).
pub fn write_return_path(out: &mut Vec<u8>, sender: &ReversePath<'_>) {
    let sender = sender.to_string();
    out.extend_from_slice(format!("Return-Path: {}\r\n", clean_address(&sender)).as_bytes());
}

/// Appends the Received header (RFC 5321 §4.4), its last line ending in CRLF.
pub fn write_received(out: &mut Vec<u8>, trace: &Trace<'_>) {
    let mut s = String::with_capacity(256);
    // Writing to a String cannot fail.
    let name = trace.client_name.map_or(Cow::Borrowed("unknown"), clean);
    let _ = write!(
        s,
        "Received: from {} ({name} [{}])\r\n",
        clean(trace.helo),
        trace.client_ip
    );
    if let Some(tls) = trace.tls {
        let _ = write!(
            s,
            "\t(using {} with cipher {})\r\n",
            clean(&tls.version),
            clean(&tls.cipher)
        );
    }
    let _ = write!(
        s,
        "\tby {} (Guerrilla-SMTPd) with {} id {}",
        clean(trace.host),
        trace.protocol.as_str(),
        trace.id
    );
    if let Some(rcpt) = trace.recipient {
        let _ = write!(s, "\r\n\tfor <{}>", clean_address(rcpt));
    }
    let _ = write!(s, ";\r\n\t{}\r\n", rfc5322_date(trace.date));
    out.extend_from_slice(s.as_bytes());
}

/// Replaces control characters by `?`: an address, valid RFC 5321 syntax, may hold
/// quotes, backslashes and brackets inside a quoted local part, which a header may too.
fn clean_address(s: &str) -> Cow<'_, str> {
    if s.contains(char::is_control) {
        Cow::Owned(s.replace(char::is_control, "?"))
    } else {
        Cow::Borrowed(s)
    }
}

/// Replaces anything that could end a header clause or the header itself by `?`.
fn clean(s: &str) -> Cow<'_, str> {
    let bad = |c: char| c.is_control() || matches!(c, '(' | ')' | '<' | '>' | ';' | '\\' | '"');
    if s.contains(bad) {
        Cow::Owned(s.chars().map(|c| if bad(c) { '?' } else { c }).collect())
    } else {
        Cow::Borrowed(s)
    }
}

/// Formats a time as RFC 5322 `date-time` in UTC, like Go's RFC1123Z:
/// `Tue, 20 Nov 2012 10:00:00 +0000`.
pub fn rfc5322_date(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days as i64);
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} +0000",
        DAYS[(days % 7) as usize],
        d,
        MONTHS[(m - 1) as usize],
        y,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The UTC calendar date of `t`: (year, month 1-12, day 1-31).
pub fn utc_date(t: SystemTime) -> (i64, u32, u32) {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    civil_from_days((secs / 86_400) as i64)
}

/// Days since 1970-01-01 to (year, month, day), from Howard Hinnant's `civil_from_days`.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn dates() {
        let table = [
            (0, "Thu, 01 Jan 1970 00:00:00 +0000"),
            (1_353_405_600, "Tue, 20 Nov 2012 10:00:00 +0000"),
            (951_782_400, "Tue, 29 Feb 2000 00:00:00 +0000"),
            (1_795_910_399, "Sat, 28 Nov 2026 23:59:59 +0000"),
        ];
        for (secs, text) in table {
            assert_eq!(rfc5322_date(UNIX_EPOCH + Duration::from_secs(secs)), text);
        }
    }

    #[test]
    fn cipher_names_as_openssl_writes_them() {
        let table = [
            ("TLS13_AES_256_GCM_SHA384", "TLS_AES_256_GCM_SHA384"),
            (
                "TLS13_CHACHA20_POLY1305_SHA256",
                "TLS_CHACHA20_POLY1305_SHA256",
            ),
            (
                "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
                "ECDHE-RSA-AES128-GCM-SHA256",
            ),
            (
                "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
                "ECDHE-ECDSA-AES256-GCM-SHA384",
            ),
            (
                "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
                "ECDHE-RSA-CHACHA20-POLY1305",
            ),
            ("Unknown(0x1234)", "Unknown(0x1234)"),
        ];
        for (rustls, openssl) in table {
            assert_eq!(openssl_cipher_name(rustls), openssl);
        }
    }

    #[test]
    fn prefix_shape_and_injection() {
        let tls = TlsInfo {
            version: "TLSv1.3".into(),
            cipher: "TLS13_AES_128_GCM_SHA256".into(),
        };
        let trace = Trace {
            helo: "evil)\r\nX-Injected: 1",
            client_ip: "192.0.2.7".parse().unwrap(),
            client_name: None,
            host: "mx.example",
            protocol: Protocol::Esmtps,
            tls: Some(&tls),
            id: QueueId(0xabc),
            sender: &ReversePath::Null,
            recipient: Some("u@example.com"),
            date: UNIX_EPOCH,
        };
        let mut out = Vec::new();
        write_prefix(&mut out, None, "u@example.com", &trace);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "Return-Path: <>\r\n\
             Delivered-To: u@example.com\r\n\
             Received: from evil???X-Injected: 1 (unknown [192.0.2.7])\r\n\
             \t(using TLSv1.3 with cipher TLS13_AES_128_GCM_SHA256)\r\n\
             \tby mx.example (Guerrilla-SMTPd) with ESMTPS id 00000000000000000000000000000abc\r\n\
             \tfor <u@example.com>;\r\n\
             \tThu, 01 Jan 1970 00:00:00 +0000\r\n"
        );
    }

    #[test]
    fn addresses_keep_their_quoting() {
        let from = crate::syntax::parse_command(b"MAIL FROM:<\"s (x)\"@example.net>")
            .expect("a valid command");
        let crate::command::Command::Mail { from, .. } = from else {
            panic!("not MAIL")
        };
        let rcpt = r#""a\"b <c>;"@example.com"#;
        let trace = Trace {
            helo: "client.example",
            client_ip: "192.0.2.7".parse().unwrap(),
            client_name: None,
            host: "mx.example",
            protocol: Protocol::Esmtp,
            tls: None,
            id: QueueId(1),
            sender: &from,
            recipient: Some(rcpt),
            date: UNIX_EPOCH,
        };
        let mut out = Vec::new();
        write_prefix(&mut out, None, rcpt, &trace);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with(
            "Return-Path: <\"s (x)\"@example.net>\r\nDelivered-To: \"a\\\"b <c>;\"@example.com\r\n"
        ), "{text}");
        assert!(
            text.contains("\tfor <\"a\\\"b <c>;\"@example.com>;\r\n"),
            "{text}"
        );
    }
}
