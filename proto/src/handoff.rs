//! The pure half of the hand-off destinations (pipe, HTTP, LMTP): what each passes on,
//! and what each answer becomes. The I/O lives in `proto::io::deliver`.
//!
//! Every answer maps to [`Ok`] (the destination committed: `250`) or a
//! [`DeliveryError`]; a fault, a timeout or an answer that cannot be read is always a
//! `4xx`, and a `5xx` only ever comes from a deliberate refusal.

use std::fmt::Write as _;
use std::time::SystemTime;

use crate::conn::{DeliveryError, Envelope};
use crate::reply::{ReplyBuf, parse_status};
use crate::syntax::ReversePath;
use crate::trace::{self, Trace};

/// What a hand-off puts before the message: `Return-Path` (unless the destination is a
/// final delivery agent that writes its own, as an LMTP server does) and our `Received`
/// header, whose `for` clause names the recipient when there is only one.
pub fn prefix(env: &Envelope, host: &str, date: SystemTime, return_path: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(300);
    if return_path {
        trace::write_return_path(&mut out, &env.from);
    }
    let only = match env.recipients.as_slice() {
        [one] => Some(one.address.as_str()),
        _ => None,
    };
    let t = Trace {
        recipient: only,
        ..env.trace(host, &env.recipients[0], date)
    };
    trace::write_received(&mut out, &t);
    out
}

/// The sender as a bare address (`a@b.example`), empty for the null sender `<>`.
pub fn sender_address(from: &ReversePath<'_>) -> String {
    match from {
        ReversePath::Null => String::new(),
        ReversePath::Mailbox(m) => m.to_string(),
    }
}

/// The envelope as `(name, value)` pairs, named for a pipe command's environment
/// (`SMTP_MAIL_FROM`, `SMTP_RCPT_TO` space-separated, `SMTP_CLIENT_ADDR`,
/// `SMTP_CLIENT_NAME`, `SMTP_HELO`, `SMTP_QUEUE_ID`, `SMTP_TLS`). `SMTP_CLIENT_NAME` is
/// `unknown` unless a proxy named the client; `SMTP_TLS` is the TLS version, or `none`.
pub fn envelope_fields(env: &Envelope) -> Vec<(&'static str, String)> {
    let rcpts: Vec<&str> = env.recipients.iter().map(|r| r.address.as_str()).collect();
    vec![
        ("SMTP_MAIL_FROM", sender_address(&env.from)),
        ("SMTP_RCPT_TO", rcpts.join(" ")),
        ("SMTP_CLIENT_ADDR", env.client_ip.to_string()),
        (
            "SMTP_CLIENT_NAME",
            env.client_name.clone().unwrap_or_else(|| "unknown".into()),
        ),
        ("SMTP_HELO", env.helo.clone()),
        ("SMTP_QUEUE_ID", env.id.to_string()),
        (
            "SMTP_TLS",
            env.tls
                .as_ref()
                .map_or_else(|| "none".into(), |t| t.version.clone()),
        ),
    ]
}

// ---------------------------------------------------------------------------------------
// Pipe
// ---------------------------------------------------------------------------------------

/// How a pipe command ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// It exited with this status.
    Status(i32),
    /// A signal killed it.
    Signal(i32),
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Status(s) => write!(f, "status {s}"),
            Self::Signal(s) => write!(f, "signal {s}"),
        }
    }
}

/// `EX_DATAERR` (sysexits.h): the input data was incorrect.
pub const EX_DATAERR: i32 = 65;
/// `EX_NOUSER`: addressee unknown.
pub const EX_NOUSER: i32 = 67;
/// `EX_TEMPFAIL`: temporary failure, try again.
pub const EX_TEMPFAIL: i32 = 75;
/// `EX_NOPERM`: permission denied.
pub const EX_NOPERM: i32 = 77;

/// What a pipe command's end means, as Postfix's pipe(8) reads it, except that an unknown
/// status is temporary (we answer the sender now; Postfix would bounce later):
///
/// | exit | reply |
/// |---|---|
/// | 0 | `250` |
/// | 65 `EX_DATAERR` | `554 5.6.0` |
/// | 67 `EX_NOUSER` | `550 5.1.1` |
/// | 77 `EX_NOPERM` | `550 5.7.1` |
/// | 75 `EX_TEMPFAIL`, any other status, a signal | `451 4.3.0` |
///
/// For a non-zero status, an RFC 3463 code at the start of the output (`5.2.2 mailbox
/// full`) takes precedence over the status, as in pipe(8): class 4 gives `451`, class 5
/// gives `550` (`554` for subjects other than addressing, mailbox and policy). The
/// output's first line, cleaned and bounded, is the reply's text. A signal is a crash:
/// its output is not believed.
pub fn pipe_result(exit: Exit, output: &[u8]) -> Result<(), DeliveryError> {
    let status = match exit {
        Exit::Status(0) => return Ok(()),
        Exit::Status(s) => s,
        Exit::Signal(_) => {
            return Err(refusal(451, "4.3.0", "", "Error: delivery command failed"));
        }
    };
    let text = String::from_utf8_lossy(output);
    let first = text.lines().next().unwrap_or("").trim();
    let (code, rest) = match first.split_once(' ') {
        Some((c, rest)) => (c, rest),
        None => (first, ""),
    };
    if let Some(class) = parse_status(code).filter(|c| *c != '2') {
        let subject = code.split('.').nth(1).unwrap_or("0");
        let reply = match (class, subject) {
            ('4', _) => 451,
            (_, "1" | "2" | "7") => 550,
            _ => 554,
        };
        return Err(refusal(reply, code, rest, "Error: delivery command failed"));
    }
    let (reply, status) = match status {
        EX_DATAERR => (554, "5.6.0"),
        EX_NOUSER => (550, "5.1.1"),
        EX_NOPERM => (550, "5.7.1"),
        _ => (451, "4.3.0"),
    };
    Err(refusal(
        reply,
        status,
        first,
        "Error: delivery command failed",
    ))
}

/// A destination's refusal, cleaned by [`ReplyBuf::new`] (`code` is always `4xx` or
/// `5xx` here).
fn refusal(code: u16, status: &str, text: &str, default: &'static str) -> DeliveryError {
    ReplyBuf::new(code, status, text, default)
        .map_or(DeliveryError::Transient, DeliveryError::Reply)
}

/// Replaces `${name}` in a pipe command's argument by its value among `vars`
/// (`${recipient}`, `${user}`, `${domain}`, `${sender}`, `${queue_id}`), as Postfix's
/// pipe(8) does. An unknown name is left as it is. The value is one argument whatever it
/// holds: no shell ever sees it.
pub fn expand(arg: &str, vars: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(arg.len());
    let mut rest = arg;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find('}') {
            Some(end) => {
                let name = &after[..end];
                match vars.iter().find(|(n, _)| *n == name) {
                    Some((_, v)) => out.push_str(v),
                    None => out.push_str(&rest[start..start + 3 + end]),
                }
                rest = &after[end + 1..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// The names [`expand`] knows, which need one recipient per transaction
/// (`GSMTP_PIPE_PER_RECIPIENT`) when they name the recipient.
pub const RECIPIENT_MACROS: [&str; 3] = ["${recipient}", "${user}", "${domain}"];

/// The values [`expand`] takes for a message with one recipient (or none, for
/// `${sender}` and `${queue_id}` alone).
pub fn macro_values(env: &Envelope) -> Vec<(&'static str, String)> {
    let mut vars = vec![
        ("sender", sender_address(&env.from)),
        ("queue_id", env.id.to_string()),
    ];
    if let [only] = env.recipients.as_slice() {
        let (user, domain) = only
            .address
            .rsplit_once('@')
            .map_or((only.address.as_str(), ""), |(u, d)| (u, d));
        let user = crate::syntax::unquote(user).into_owned();
        vars.push(("recipient", only.address.clone()));
        vars.push(("user", user));
        vars.push(("domain", domain.to_string()));
    }
    vars
}

// ---------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------

/// The envelope as HTTP request headers: `X-Smtp-Mail-From`, one `X-Smtp-Rcpt-To` per
/// recipient, `X-Smtp-Client-Addr`, `X-Smtp-Helo`, `X-Smtp-Queue-Id`, `X-Smtp-Tls`.
/// Values are visible ASCII or spaces (addresses with UTF-8 are percent-encoded), so
/// they are valid header values.
pub fn http_headers(env: &Envelope) -> Vec<(&'static str, String)> {
    let mut h = vec![("X-Smtp-Mail-From", header_value(&sender_address(&env.from)))];
    for r in &env.recipients {
        h.push(("X-Smtp-Rcpt-To", header_value(&r.address)));
    }
    h.push(("X-Smtp-Client-Addr", env.client_ip.to_string()));
    h.push(("X-Smtp-Helo", header_value(&env.helo)));
    h.push(("X-Smtp-Queue-Id", env.id.to_string()));
    h.push((
        "X-Smtp-Tls",
        env.tls
            .as_ref()
            .map_or_else(|| "none".into(), |t| t.version.clone()),
    ));
    h
}

/// `s` with every octet that is not visible ASCII or a space written `%XX` (and `%`
/// itself), so that a UTF-8 address travels in a header and can be decoded exactly.
pub fn header_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (b.is_ascii_graphic() || b == b' ') && b != b'%' {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// `X-Smtp-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>." + body>`'s value.
pub fn signature_value(t: u64, mac: &[u8]) -> String {
    let mut out = format!("t={t},v1=");
    for b in mac {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// What an HTTP receiver's status means: `2xx` is committed (`250`); `403`, `406` and
/// `422` are deliberate refusals (`550 5.7.1`, with the response's first line as text);
/// `413` is `552 5.3.4`; anything else (`5xx`, redirects, `404`, ...) is `451 4.3.0`, as
/// a timeout or a refused connection is.
pub fn http_result(status: u16, first_line: &str) -> Result<(), DeliveryError> {
    match status {
        200..=299 => Ok(()),
        403 | 406 | 422 => Err(refusal(
            550,
            "5.7.1",
            first_line,
            "Error: refused by the receiver",
        )),
        413 => Err(refusal(
            552,
            "5.3.4",
            first_line,
            "Error: message too big for the receiver",
        )),
        _ => Err(refusal(
            451,
            "4.3.0",
            "",
            "Error: the receiver failed, try again later",
        )),
    }
}

// ---------------------------------------------------------------------------------------
// S3
// ---------------------------------------------------------------------------------------

/// A message's object key: `<prefix><YYYY>/<MM>/<DD>/<queue id>.eml`, the date in UTC,
/// so that keys sort by time and a consumer lists new mail with `start-after`.
pub fn s3_key(prefix: &str, date: SystemTime, id: crate::maildir::QueueId) -> String {
    let (y, m, d) = trace::utc_date(date);
    format!("{prefix}{y:04}/{m:02}/{d:02}/{id}.eml")
}

/// The object's signed headers: `content-type: message/rfc822` and the envelope as
/// metadata (`x-amz-meta-mail-from`, `-rcpt-to` space-separated, `-client-addr`,
/// `-helo`, `-tls`), visible ASCII only ([`header_value`]).
pub fn s3_metadata(env: &Envelope) -> Vec<(String, String)> {
    let rcpts: Vec<&str> = env.recipients.iter().map(|r| r.address.as_str()).collect();
    let tls = env
        .tls
        .as_ref()
        .map_or_else(|| "none".into(), |t| t.version.clone());
    [
        ("content-type", "message/rfc822".to_string()),
        (
            "x-amz-meta-mail-from",
            header_value(&sender_address(&env.from)),
        ),
        ("x-amz-meta-rcpt-to", header_value(&rcpts.join(" "))),
        ("x-amz-meta-client-addr", env.client_ip.to_string()),
        ("x-amz-meta-helo", header_value(&env.helo)),
        ("x-amz-meta-tls", tls),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

// ---------------------------------------------------------------------------------------
// LMTP
// ---------------------------------------------------------------------------------------

/// One reply read from an LMTP (or SMTP) server: its code and the text of its last line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerReply {
    /// The three-digit code.
    pub code: u16,
    /// The enhanced status code at the start of the last line, if there is one.
    pub status: String,
    /// The rest of the last line.
    pub text: String,
}

impl ServerReply {
    /// As a [`DeliveryError`]: the server's own reply when it refused (`4xx`, `5xx`);
    /// anything else it could say here is a protocol fault, `451`.
    pub fn refusal(&self) -> DeliveryError {
        refusal(
            self.code,
            &self.status,
            &self.text,
            "Error: refused by the delivery agent",
        )
    }

    /// Whether it is a positive completion (`2xx`).
    pub fn is_ok(&self) -> bool {
        (200..300).contains(&self.code)
    }
}

/// The longest reply line accepted from a server.
pub const MAX_REPLY_LINE: usize = 2048;
/// The most lines accepted in one reply.
pub const MAX_REPLY_LINES: usize = 100;

/// Reads one reply from the start of `buf`: `Ok(Some((reply, consumed)))`, `Ok(None)`
/// until it is complete, or `Err(())` for bytes that are not a reply (or a reply too
/// long), after which the connection is not to be trusted.
#[allow(clippy::result_unit_err)]
pub fn parse_reply(buf: &[u8]) -> Result<Option<(ServerReply, usize)>, ()> {
    let mut at = 0;
    for _ in 0..MAX_REPLY_LINES {
        let Some(lf) = memchr::memchr(b'\n', &buf[at..]) else {
            return if buf.len() - at > MAX_REPLY_LINE {
                Err(())
            } else {
                Ok(None)
            };
        };
        let line = &buf[at..at + lf];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        at += lf + 1;
        if line.len() < 3
            || line.len() > MAX_REPLY_LINE
            || !line[..3].iter().all(u8::is_ascii_digit)
        {
            return Err(());
        }
        let code = u16::from(line[0] - b'0') * 100
            + u16::from(line[1] - b'0') * 10
            + u16::from(line[2] - b'0');
        match line.get(3) {
            Some(b'-') => continue,
            None | Some(b' ') => {
                let text = String::from_utf8_lossy(line.get(4..).unwrap_or_default());
                let (status, text) = match text.split_once(' ') {
                    Some((s, t)) if parse_status(s).is_some() => (s.to_string(), t.to_string()),
                    _ if parse_status(&text).is_some() => (text.to_string(), String::new()),
                    _ => (String::new(), text.into_owned()),
                };
                return Ok(Some((ServerReply { code, status, text }, at)));
            }
            Some(_) => return Err(()),
        }
    }
    Err(())
}

/// Dot-stuffing for text sent after DATA, across pieces: a `.` at the start of a line is
/// doubled (RFC 5321 §4.5.2).
#[derive(Clone, Copy, Debug)]
pub struct DotStuffer {
    at_line_start: bool,
}

impl Default for DotStuffer {
    fn default() -> Self {
        Self {
            at_line_start: true,
        }
    }
}

impl DotStuffer {
    /// Appends `bytes`, stuffed, to `out`.
    pub fn stuff(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        for &b in bytes {
            if self.at_line_start && b == b'.' {
                out.push(b'.');
            }
            out.push(b);
            self.at_line_start = b == b'\n';
        }
    }

    /// The end of the text: a CRLF if the text did not end with one (a BDAT message
    /// may not), then `.` CRLF.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if !self.at_line_start {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
        self.at_line_start = true;
    }
}

/// What an LMTP server's replies after the final dot (one per accepted recipient, RFC
/// 2033 §4.2) mean for the single SMTP reply: all `2xx` is committed; all refusals with
/// the same reply is that reply; a mix (some copies delivered, some not) is `451 4.3.0`,
/// so that no copy is lost and no `250` claims a copy that was not delivered, at the
/// price of a duplicate for the recipients that got theirs when the client retries.
pub fn lmtp_outcome(replies: &[ServerReply]) -> Result<(), DeliveryError> {
    if replies.iter().all(ServerReply::is_ok) {
        return Ok(());
    }
    let first = &replies[0];
    let alike = replies
        .iter()
        .all(|r| !r.is_ok() && r.code == first.code && r.status == first.status);
    if alike {
        return Err(first.refusal());
    }
    Err(refusal(
        451,
        "4.3.0",
        "",
        "Error: delivered to some recipients only, try again later",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipe_exit_statuses() {
        let code = |e: Exit, out: &str| match pipe_result(e, out.as_bytes()) {
            Ok(()) => "250".to_string(),
            Err(DeliveryError::Reply(r)) => r.to_string(),
            Err(e) => format!("{e:?}"),
        };
        let table = [
            (Exit::Status(0), "5.1.1 ignored on success", "250"),
            (
                Exit::Status(65),
                "",
                "554 5.6.0 Error: delivery command failed",
            ),
            (
                Exit::Status(67),
                "no such user: bob",
                "550 5.1.1 no such user: bob",
            ),
            (
                Exit::Status(77),
                "",
                "550 5.7.1 Error: delivery command failed",
            ),
            (Exit::Status(75), "busy\nmore", "451 4.3.0 busy"),
            (
                Exit::Status(1),
                "",
                "451 4.3.0 Error: delivery command failed",
            ),
            (
                Exit::Status(127),
                "",
                "451 4.3.0 Error: delivery command failed",
            ),
            (
                Exit::Signal(9),
                "5.1.1 lies",
                "451 4.3.0 Error: delivery command failed",
            ),
            (
                Exit::Status(1),
                "5.2.2 mailbox full",
                "550 5.2.2 mailbox full",
            ),
            (Exit::Status(75), "5.3.0 odd", "554 5.3.0 odd"),
            (Exit::Status(67), "4.2.1 try later", "451 4.2.1 try later"),
            (Exit::Status(1), "2.0.0 fine?", "451 4.3.0 2.0.0 fine?"),
            (Exit::Status(1), "bad \x1b[1m\r\n", "451 4.3.0 bad ?[1m"),
        ];
        for (exit, out, want) in table {
            assert_eq!(code(exit, out), want, "{exit:?} {out:?}");
        }
    }

    #[test]
    fn macros() {
        let vars = [("recipient", "a b@x"), ("user", "a b")];
        assert_eq!(expand("-d", &vars), "-d");
        assert_eq!(expand("${user}", &vars), "a b");
        assert_eq!(expand("to=${recipient};${nope}", &vars), "to=a b@x;${nope}");
        assert_eq!(expand("${unclosed", &vars), "${unclosed");
    }

    #[test]
    fn http_statuses() {
        let r = |status, line: &str| match http_result(status, line) {
            Ok(()) => "250".into(),
            Err(DeliveryError::Reply(r)) => r.to_string(),
            Err(e) => format!("{e:?}"),
        };
        assert_eq!(r(200, ""), "250");
        assert_eq!(r(204, ""), "250");
        assert_eq!(r(403, "spam, go away"), "550 5.7.1 spam, go away");
        assert_eq!(r(406, ""), "550 5.7.1 Error: refused by the receiver");
        assert_eq!(r(422, "x"), "550 5.7.1 x");
        assert_eq!(
            r(413, ""),
            "552 5.3.4 Error: message too big for the receiver"
        );
        for status in [301, 400, 404, 429, 500, 502, 503] {
            assert!(r(status, "5.1.1 no").starts_with("451 4.3.0 "), "{status}");
        }
        assert_eq!(header_value("josé@x y%"), "jos%C3%A9@x y%25");
        assert_eq!(signature_value(5, &[0, 255]), "t=5,v1=00ff");
    }

    #[test]
    fn s3_keys_sort_by_date() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_796_083_200);
        let id = crate::maildir::QueueId(0xabc);
        assert_eq!(
            s3_key("mail/", t, id),
            "mail/2026/12/01/00000000000000000000000000000abc.eml"
        );
        assert_eq!(
            s3_key("", t, id),
            "2026/12/01/00000000000000000000000000000abc.eml"
        );
    }

    #[test]
    fn server_replies() {
        let (r, n) = parse_reply(b"250-first\r\n250 2.1.5 Ok\r\nrest")
            .unwrap()
            .unwrap();
        assert_eq!(
            (r.code, r.status.as_str(), r.text.as_str(), n),
            (250, "2.1.5", "Ok", 25)
        );
        assert_eq!(parse_reply(b"250-first\r\n250 2.1").unwrap(), None);
        let (r, _) = parse_reply(b"550 5.1.1 <u@x> User doesn't exist\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(
            r.refusal(),
            DeliveryError::Reply(
                ReplyBuf::new(550, "5.1.1", "<u@x> User doesn't exist", "").unwrap()
            )
        );
        let (r, _) = parse_reply(b"354\r\n").unwrap().unwrap();
        assert_eq!((r.code, r.text.as_str()), (354, ""));
        assert!(parse_reply(b"HTTP/1.1 200 OK\r\n").is_err());
        assert!(parse_reply(b"25\r\n").is_err());
        assert!(parse_reply(&vec![b'2'; 5000]).is_err());
    }

    #[test]
    fn stuffing_across_pieces() {
        let mut s = DotStuffer::default();
        let mut out = Vec::new();
        for piece in [&b".a\r"[..], b"\n", b".", b"b\r\n..c\r\n", b"end"] {
            s.stuff(piece, &mut out);
        }
        s.finish(&mut out);
        assert_eq!(out, b"..a\r\n..b\r\n...c\r\nend\r\n.\r\n");
        let mut out = Vec::new();
        let mut s = DotStuffer::default();
        s.stuff(b"x\r\n", &mut out);
        s.finish(&mut out);
        assert_eq!(out, b"x\r\n.\r\n");
    }

    #[test]
    fn lmtp_outcomes() {
        let ok = ServerReply {
            code: 250,
            status: "2.0.0".into(),
            text: "ok".into(),
        };
        let full = ServerReply {
            code: 452,
            status: "4.2.2".into(),
            text: "full".into(),
        };
        let gone = ServerReply {
            code: 550,
            status: "5.1.1".into(),
            text: "gone".into(),
        };
        assert_eq!(lmtp_outcome(&[ok.clone(), ok.clone()]), Ok(()));
        let r = |e: DeliveryError| match e {
            DeliveryError::Reply(r) => r.to_string(),
            e => format!("{e:?}"),
        };
        assert_eq!(
            r(lmtp_outcome(&[full.clone(), full.clone()]).unwrap_err()),
            "452 4.2.2 full"
        );
        assert_eq!(
            r(lmtp_outcome(std::slice::from_ref(&gone)).unwrap_err()),
            "550 5.1.1 gone"
        );
        assert!(r(lmtp_outcome(&[ok, gone.clone()]).unwrap_err()).starts_with("451 4.3.0 "));
        assert!(r(lmtp_outcome(&[full, gone]).unwrap_err()).starts_with("451 4.3.0 "));
    }
}
