//! The pure half of the hand-off destinations (pipe, HTTP, LMTP): what each passes on,
//! and what each answer becomes. The I/O lives in `proto::io::deliver`.
//!
//! Every answer maps to [`Ok`] (the destination committed: `250`) or a
//! [`DeliveryError`]; a fault, a timeout or an answer that cannot be read is always a
//! `4xx`, and a `5xx` only ever comes from a deliberate refusal.

use std::fmt::Write as _;
use std::time::SystemTime;

use crate::conn::Envelope;
use crate::delivery::DeliveryError;
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

/// One fact of the envelope, under the name each rendering gives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    /// In a pipe command's environment: `SMTP_MAIL_FROM`.
    pub env: &'static str,
    /// As an HTTP request header: `X-Smtp-Mail-From`.
    pub header: &'static str,
    /// As S3 object metadata: `x-amz-meta-mail-from`.
    pub meta: &'static str,
    /// In the HTTP request's JSON envelope: `mail_from`.
    pub json: &'static str,
}

macro_rules! fields {
    ($($(#[$doc:meta])* $name:ident = $env:literal $header:literal $meta:literal $json:literal;)*) => {
        $($(#[$doc])* pub const $name: Field = Field {
            env: $env, header: $header, meta: $meta, json: $json,
        };)*
    };
}

fields! {
    /// The envelope sender, empty for the null sender `<>`.
    MAIL_FROM = "SMTP_MAIL_FROM" "X-Smtp-Mail-From" "x-amz-meta-mail-from" "mail_from";
    /// The accepted recipients, in order: a list.
    RCPT_TO = "SMTP_RCPT_TO" "X-Smtp-Rcpt-To" "x-amz-meta-rcpt-to" "rcpt_to";
    /// The client's address (the real client, after PROXY or XCLIENT).
    CLIENT_ADDR = "SMTP_CLIENT_ADDR" "X-Smtp-Client-Addr" "x-amz-meta-client-addr" "client_addr";
    /// The client's name when a proxy named it, else `unknown`.
    CLIENT_NAME = "SMTP_CLIENT_NAME" "X-Smtp-Client-Name" "x-amz-meta-client-name" "client_name";
    /// The HELO or EHLO name.
    HELO = "SMTP_HELO" "X-Smtp-Helo" "x-amz-meta-helo" "helo";
    /// The queue id (also in the `250` reply and the Received header).
    QUEUE_ID = "SMTP_QUEUE_ID" "X-Smtp-Queue-Id" "x-amz-meta-queue-id" "queue_id";
    /// The TLS version, or `none`.
    TLS = "SMTP_TLS" "X-Smtp-Tls" "x-amz-meta-tls" "tls";
}

/// A fact's value: one string, or a list (the recipients).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// One string, exactly as received.
    One(String),
    /// Several, in order, each exactly as received.
    List(Vec<String>),
}

impl Value {
    /// The value as one line of visible ASCII, the same in every text rendering (the
    /// environment, HTTP headers, S3 metadata): each string [`encode`]d, so it holds no
    /// space, and a list's strings joined by single spaces. Split a list on spaces, then
    /// decode each item's `%XX`: that gives the strings back exactly, whatever they held.
    pub fn encoded(&self) -> String {
        match self {
            Self::One(s) => encode(s),
            Self::List(items) => {
                let encoded: Vec<String> = items.iter().map(|s| encode(s)).collect();
                encoded.join(" ")
            }
        }
    }

    /// The value as JSON: a string, or an array of strings, exactly as received.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Self::One(s) => serde_json::Value::from(s.as_str()),
            Self::List(items) => serde_json::Value::from(items.clone()),
        }
    }
}

/// The envelope's facts, in one order, for every rendering: the pipe's environment
/// (`SMTP_*`), the HTTP request (`X-Smtp-*` headers and its JSON envelope), and S3
/// metadata (`x-amz-meta-*`). Every rendering carries the same facts.
pub fn envelope_fields(env: &Envelope) -> Vec<(Field, Value)> {
    let tls = env
        .tls
        .as_ref()
        .map_or_else(|| "none".into(), |t| t.version.clone());
    vec![
        (MAIL_FROM, Value::One(sender_address(&env.from))),
        (
            RCPT_TO,
            Value::List(env.recipients.iter().map(|r| r.address.clone()).collect()),
        ),
        (CLIENT_ADDR, Value::One(env.client_ip.to_string())),
        (
            CLIENT_NAME,
            Value::One(env.client_name.clone().unwrap_or_else(|| "unknown".into())),
        ),
        (HELO, Value::One(env.helo.clone())),
        (QUEUE_ID, Value::One(env.id.to_string())),
        (TLS, Value::One(tls)),
    ]
}

/// The envelope as a pipe command's environment: `SMTP_MAIL_FROM`, `SMTP_RCPT_TO`,
/// `SMTP_CLIENT_ADDR`, `SMTP_CLIENT_NAME`, `SMTP_HELO`, `SMTP_QUEUE_ID`, `SMTP_TLS`,
/// each [`Value::encoded`].
pub fn environment(env: &Envelope) -> Vec<(&'static str, String)> {
    envelope_fields(env)
        .into_iter()
        .map(|(f, v)| (f.env, v.encoded()))
        .collect()
}

/// `s` with every octet that is not visible ASCII written `%XX`, and `%` itself: a
/// space, a control character or a UTF-8 octet never reaches a header, a variable or a
/// list as it is, and decoding `%XX` gives `s` back exactly.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_graphic() && b != b'%' {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
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

/// A destination's refusal, cleaned by [`ReplyBuf::new`]; a code that is not a refusal
/// (`2xx` where one was due, `999`) is a fault, `451 4.3.0`.
fn refusal(code: u16, status: &str, text: &str, default: &'static str) -> DeliveryError {
    ReplyBuf::new(code, status, text, default).map_or_else(
        || {
            DeliveryError::transient()
                .with_text("Error: the destination answered nonsense, try again later")
        },
        DeliveryError::reply,
    )
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

/// The envelope as HTTP request headers: every fact of [`envelope_fields`] but the
/// recipients (`X-Smtp-Mail-From`, `X-Smtp-Client-Addr`, `X-Smtp-Client-Name`,
/// `X-Smtp-Helo`, `X-Smtp-Queue-Id`, `X-Smtp-Tls`), each [`Value::encoded`], and
/// `X-Smtp-Rcpt-Count`. Their number and size are bounded whatever the message: the
/// recipients, up to `GSMTP_MAX_RCPT` of them of any length, travel in the body's JSON
/// envelope ([`http_envelope`]), which any receiver takes.
pub fn http_headers(env: &Envelope) -> Vec<(&'static str, String)> {
    let mut h: Vec<(&'static str, String)> = envelope_fields(env)
        .into_iter()
        .filter(|(f, _)| *f != RCPT_TO)
        .map(|(f, v)| (f.header, v.encoded()))
        .collect();
    h.push(("X-Smtp-Rcpt-Count", env.recipients.len().to_string()));
    h
}

/// The JSON envelope of an HTTP request: every fact of [`envelope_fields`] by its JSON
/// name, strings exactly as received (`"rcpt_to": ["u@example.com", ...]`).
pub fn http_envelope(env: &Envelope) -> Vec<u8> {
    // Written by hand to keep the fields in their order (serde_json's map sorts them).
    let mut out = b"{".to_vec();
    for (i, (f, v)) in envelope_fields(env).into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut out, f.json).expect("JSON of a string");
        out.push(b':');
        serde_json::to_writer(&mut out, &v.to_json()).expect("JSON of strings");
    }
    out.push(b'}');
    out
}

/// An HTTP request body in `multipart/form-data` (RFC 7578), as SendGrid's and Mailgun's
/// inbound webhooks post: the part `envelope` (`application/json`, [`http_envelope`]),
/// then the part `message` (`message/rfc822`, file name `<queue id>.eml`), then the
/// closing delimiter. Returns what goes before the message and what goes after it.
///
/// The boundary must not occur in the message: the caller draws it at random once the
/// client has no more say in the message's text (128 bits, never disclosed to the
/// client), so no sender can end the part early.
pub fn multipart(env: &Envelope, boundary: &str) -> (Vec<u8>, Vec<u8>) {
    let mut head = format!(
        "--{boundary}\r\n\
         Content-Disposition: form-data; name=\"envelope\"\r\n\
         Content-Type: application/json\r\n\r\n"
    )
    .into_bytes();
    head.extend_from_slice(&http_envelope(env));
    head.extend_from_slice(
        format!(
            "\r\n--{boundary}\r\n\
             Content-Disposition: form-data; name=\"message\"; filename=\"{}.eml\"\r\n\
             Content-Type: message/rfc822\r\n\r\n",
            env.id
        )
        .as_bytes(),
    );
    let tail = format!("\r\n--{boundary}--\r\n").into_bytes();
    (head, tail)
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

/// The object's signed headers: `content-type: message/rfc822` and every fact of
/// [`envelope_fields`] as metadata (`x-amz-meta-mail-from`, `-rcpt-to`, `-client-addr`,
/// `-client-name`, `-helo`, `-queue-id`, `-tls`), each [`Value::encoded`].
pub fn s3_metadata(env: &Envelope) -> Vec<(String, String)> {
    let mut meta = vec![("content-type".to_string(), "message/rfc822".to_string())];
    meta.extend(
        envelope_fields(env)
            .into_iter()
            .map(|(f, v)| (f.meta.to_string(), v.encoded())),
    );
    meta
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
            Err(e) => crate::reply::for_delivery_error(&e, crate::reply::Stage::Data).to_string(),
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
            Err(e) => crate::reply::for_delivery_error(&e, crate::reply::Stage::Data).to_string(),
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
        assert_eq!(encode("josé@x y%"), "jos%C3%A9@x%20y%25");
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
            DeliveryError::reply(
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
        let r = |e: DeliveryError| {
            crate::reply::for_delivery_error(&e, crate::reply::Stage::Data).to_string()
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
