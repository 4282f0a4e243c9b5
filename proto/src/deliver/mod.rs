//! The pure halves of the destinations, one file each, mirroring `proto::io::deliver`:
//! what each hands on (the trace headers, the envelope in its own rendering) and what
//! each answer becomes. The I/O lives in `proto::io::deliver`.
//!
//! Every answer maps to [`Ok`] (the destination committed: `250`) or a
//! [`DeliveryError`]; a fault, a timeout or an answer that cannot be read is always a
//! `4xx`, and a `5xx` only ever comes from a deliberate refusal.
//!
//! The envelope reaches every hand-off as the same facts ([`envelope_fields`]), each
//! rendering giving them its own names ([`Field`]) and one encoding ([`Value::encoded`]).

pub mod http;
pub mod lmtp;
pub mod maildir;
pub mod pipe;
pub mod s3;

use std::fmt::Write as _;
use std::time::SystemTime;

use crate::delivery::{DeliveryError, Envelope};
use crate::reply::ReplyBuf;
use crate::syntax::ReversePath;
use crate::trace::{self, Trace};
use crate::verdict::Verdict;

/// What a hand-off puts before the message: `Return-Path` (unless the destination is a
/// final delivery agent that writes its own, as an LMTP server does) and our `Received`
/// header, whose `for` clause names the recipient when there is only one. Returns the
/// bytes and where the Received header begins in them: the verdict's
/// `Authentication-Results` field goes there.
pub fn prefix(env: &Envelope, host: &str, date: SystemTime, return_path: bool) -> (Vec<u8>, usize) {
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
        ..Trace::new(env, host, &env.recipients[0], date)
    };
    let received = out.len();
    trace::write_received(&mut out, &t);
    (out, received)
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
    /// The user the client authenticated as (AUTH, or a proxy's XCLIENT `LOGIN`);
    /// present only then.
    AUTH_USER = "SMTP_AUTH_USER" "X-Smtp-Auth-User" "x-amz-meta-auth-user" "auth_user";
}

fields! {
    /// SPF's result: `pass smtp.mailfrom=a@b.example`, the result word first.
    VERDICT_SPF = "SMTP_VERDICT_SPF" "X-Smtp-Verdict-Spf" "x-amz-meta-verdict-spf" "spf";
    /// DKIM's result (the first passing signature, else the first).
    VERDICT_DKIM = "SMTP_VERDICT_DKIM" "X-Smtp-Verdict-Dkim" "x-amz-meta-verdict-dkim" "dkim";
    /// DMARC's result, with the domain's policy.
    VERDICT_DMARC = "SMTP_VERDICT_DMARC" "X-Smtp-Verdict-Dmarc" "x-amz-meta-verdict-dmarc" "dmarc";
    /// ARC's result.
    VERDICT_ARC = "SMTP_VERDICT_ARC" "X-Smtp-Verdict-Arc" "x-amz-meta-verdict-arc" "arc";
    /// The spam filter's (rspamd's) result: `fail action=reject score=16.00 ...`.
    VERDICT_SPAM = "SMTP_VERDICT_SPAM" "X-Smtp-Verdict-Spam" "x-amz-meta-verdict-spam" "spam";
    /// The virus scan's result (an antivirus symbol of rspamd's).
    VERDICT_VIRUS = "SMTP_VERDICT_VIRUS" "X-Smtp-Verdict-Virus" "x-amz-meta-verdict-virus" "virus";
    /// The milters' result: `pass`, or `temperror` when one failed and was passed over.
    VERDICT_MILTER = "SMTP_VERDICT_MILTER" "X-Smtp-Verdict-Milter" "x-amz-meta-verdict-milter" "milter";
    /// The DNS blocklists' result: `neutral score=1 listed="zen.test=127.0.0.2*1"`.
    VERDICT_DNSBL = "SMTP_VERDICT_DNSBL" "X-Smtp-Verdict-Dnsbl" "x-amz-meta-verdict-dnsbl" "dnsbl";
    /// The `From:` domain, present only when DMARC passed for it.
    AUTHENTICATED_FROM = "SMTP_AUTHENTICATED_FROM" "X-Smtp-Authenticated-From"
        "x-amz-meta-authenticated-from" "authenticated_from";
}

/// The verdict's facts for the text renderings (the environment, HTTP headers, S3
/// metadata): each check that ran, described with its result word first
/// ([`Verdict::described`]), and [`AUTHENTICATED_FROM`] when the `From:`
/// is authenticated. Values are one line of text: octets outside visible ASCII and the
/// space, and `%`, written `%XX`. Empty when no check ran.
pub fn verdict_fields(verdict: &Verdict) -> Vec<(Field, String)> {
    let described = verdict.described();
    let checks = [
        VERDICT_SPF,
        VERDICT_DKIM,
        VERDICT_DMARC,
        VERDICT_ARC,
        VERDICT_SPAM,
        VERDICT_VIRUS,
        VERDICT_MILTER,
        VERDICT_DNSBL,
    ];
    let mut out: Vec<(Field, String)> = checks
        .into_iter()
        .filter_map(|f| {
            let (_, text) = described.iter().find(|(name, _)| *name == f.json)?;
            Some((f, encode_text(text)))
        })
        .collect();
    if let Some(from) = &verdict.authenticated_from {
        out.push((AUTHENTICATED_FROM, encode(from)));
    }
    out
}

/// `s` with every octet that is not visible ASCII or a space written `%XX`, and `%`
/// itself: a line of text for a header, a variable or metadata.
pub fn encode_text(s: &str) -> String {
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
    let mut fields = vec![
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
    ];
    if let Some(user) = &env.auth_user {
        fields.push((AUTH_USER, Value::One(user.clone())));
    }
    fields
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

/// A destination's refusal, cleaned by [`ReplyBuf::new`]; a code that is not a refusal
/// (`2xx` where one was due, `999`) is a fault, `451 4.3.0`.
pub(crate) fn refusal(code: u16, status: &str, text: &str, default: &'static str) -> DeliveryError {
    ReplyBuf::new(code, status, text, default).map_or_else(
        || {
            DeliveryError::transient()
                .with_text("Error: the destination answered nonsense, try again later")
        },
        DeliveryError::reply,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding() {
        assert_eq!(encode("josé@x y%"), "jos%C3%A9@x%20y%25");
    }
}
