//! The delivery vocabulary: the words the engine and every destination share, in one
//! place. A destination (a [`crate::io::Deliver`] of the `io` feature, or one of your
//! own) needs nothing else: the [`Envelope`] of a message (its [`QueueId`], its sender,
//! its [`Recipient`]s with their [`MailboxPath`]s, the client and its [`TlsInfo`]), and
//! [`DeliveryError`], what a refusal or a fault becomes.
//!
//! | the engine asks ([`crate::Action`]) | the destination does |
//! |---|---|
//! | `Check(Sender)` at MAIL | `Deliver::start`, which gives a transaction |
//! | `Check(Recipient)` at RCPT | `Transaction::add_recipient` |
//! | `Begin(envelope)` when the text begins | `Transaction::begin`, which gives a message |
//! | `Write(bytes)` for each piece of text | `Message::write` |
//! | `Commit` at the end | `Message::commit`, answered with `handle_delivery` |
//! | `Abort` (RSET, a refused text, a lost client) | `abort` of either |

use std::fmt;
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::reply::{self, ReplyBuf};
use crate::syntax::{MailParams, ReversePath};

/// A message's queue id: 32 hex digits, as long as the original's MD5 ids: the time its
/// `MAIL` command arrived (so ids, and the S3 keys made of them, sort by when messages
/// began), the instance, the connection and the message's number in it. Unique per
/// process, across restarts, and across instances sharing one store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct QueueId(pub u128);

impl QueueId {
    /// The id of message `seq` of connection `conn` of `instance` (a number drawn once
    /// per process: 24 bits are kept), which began at `start`. Two ids can only be equal
    /// if all four are (the connection and message numbers are kept to 24 and 16 bits,
    /// which the time, moving on, makes enough).
    pub fn new(start: SystemTime, instance: u32, conn: u64, seq: u32) -> Self {
        let nanos = start
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Self(
            (u128::from(nanos) << 64)
                | (u128::from(instance & 0xFF_FFFF) << 40)
                | (u128::from(conn & 0xFF_FFFF) << 16)
                | u128::from(seq & 0xFFFF),
        )
    }
}

impl fmt::Display for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// Where one recipient's mail is stored, relative to the Maildir root.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MailboxPath {
    /// The escaped domain folder.
    pub domain: String,
    /// The escaped mailbox folder inside it.
    pub mailbox: String,
}

impl fmt::Display for MailboxPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.domain, self.mailbox)
    }
}

/// An accepted recipient: its address as received, and its folder.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Recipient {
    /// The address as the client gave it (`local@domain`, its quoting kept), for the
    /// Received header's `for` clause and the logs.
    pub address: String,
    /// The address for `Delivered-To`: [`Recipient::address`], with its domain replaced
    /// by `GM_PRIMARY_MAIL_HOST` when that is set.
    pub delivered_to: String,
    /// The address for `X-Original-To`, when `GM_PRIMARY_MAIL_HOST` changed it.
    pub original_to: Option<String>,
    /// The folder its mail goes to.
    pub path: MailboxPath,
}

/// How the message came in: the `with` clause of the Received header (RFC 3848, RFC 6531).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// After HELO.
    Smtp,
    /// After EHLO.
    Esmtp,
    /// After EHLO, over TLS.
    Esmtps,
    /// After EHLO, with SMTPUTF8.
    Utf8Smtp,
    /// After EHLO, with SMTPUTF8, over TLS.
    Utf8Smtps,
    /// After EHLO and AUTH.
    Esmtpa,
    /// After EHLO and AUTH, over TLS.
    Esmtpsa,
    /// After EHLO and AUTH, with SMTPUTF8.
    Utf8Smtpa,
    /// After EHLO and AUTH, with SMTPUTF8, over TLS.
    Utf8Smtpsa,
}

impl Protocol {
    /// The keyword written in the header.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Smtp => "SMTP",
            Self::Esmtp => "ESMTP",
            Self::Esmtps => "ESMTPS",
            Self::Utf8Smtp => "UTF8SMTP",
            Self::Utf8Smtps => "UTF8SMTPS",
            Self::Esmtpa => "ESMTPA",
            Self::Esmtpsa => "ESMTPSA",
            Self::Utf8Smtpa => "UTF8SMTPA",
            Self::Utf8Smtpsa => "UTF8SMTPSA",
        }
    }

    /// The same after a successful AUTH (RFC 3848: `A` appended). AUTH needs EHLO, so
    /// HELO's `SMTP` stays as it is.
    pub fn authenticated(self) -> Self {
        match self {
            Self::Esmtp => Self::Esmtpa,
            Self::Esmtps => Self::Esmtpsa,
            Self::Utf8Smtp => Self::Utf8Smtpa,
            Self::Utf8Smtps => Self::Utf8Smtpsa,
            other => other,
        }
    }
}

/// The TLS parameters of a session, as the frontend's TLS library names them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsInfo {
    /// For example `TLSv1.3`.
    pub version: String,
    /// As OpenSSL names it, for example `TLS_AES_256_GCM_SHA384` or
    /// `ECDHE-RSA-AES256-GCM-SHA384` ([`crate::trace::openssl_cipher_name`]).
    pub cipher: String,
}

/// A message's envelope, handed to the driver with [`crate::Action::Begin`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// The queue id, also given in the `250` reply and the Received header.
    pub id: QueueId,
    /// The sender.
    pub from: ReversePath<'static>,
    /// The MAIL parameters.
    pub params: MailParams,
    /// The accepted recipients, in order; several may share a folder.
    pub recipients: Vec<Recipient>,
    /// The HELO/EHLO name.
    pub helo: String,
    /// The client's address (or what XCLIENT/PROXY said it is).
    pub client_ip: IpAddr,
    /// The client's name, if a proxy told us one.
    pub client_name: Option<String>,
    /// The `with` keyword for the Received header.
    pub protocol: Protocol,
    /// The TLS parameters, when the session used TLS.
    pub tls: Option<TlsInfo>,
    /// The user the client authenticated as (AUTH, or a proxy's XCLIENT `LOGIN`).
    pub auth_user: Option<String>,
}

/// What kind of failure a [`DeliveryError`] is: this decides the client's reply. Only a
/// deliberate refusal ([`ErrorKind::Permanent`], or a destination's own `5xx` in
/// [`ErrorKind::Reply`]) gives a `5xx`; every fault is a `4xx`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A fault that may pass (an I/O error, a server that is down): `451 4.3.0`.
    Transient,
    /// No room: the file system is full or a quota is reached (`ENOSPC`, `EDQUOT`):
    /// `452 4.3.1 Insufficient system storage` (RFC 3463).
    InsufficientStorage,
    /// This recipient's mailbox cannot take mail now (its folder is not writable):
    /// `450 4.2.0`.
    MailboxUnavailable,
    /// The destination did not answer in time: `451 4.4.7`.
    Timeout,
    /// The destination refused for good: `554 5.3.0` (`550 5.1.1` at RCPT).
    Permanent,
    /// The destination's own reply, `4xx` or `5xx`, already cleaned
    /// ([`ReplyBuf::new`]).
    Reply(ReplyBuf),
}

/// Why a destination did not take a recipient or a message: its [`ErrorKind`] (what the
/// client is told), optionally the reply's text, and what happened, for the log.
///
/// As with [`std::io::Error`], the kind is what callers match on; the rest is for people.
/// The reply's text ([`DeliveryError::with_text`]) is sent to the client, so it must
/// name what failed without secrets or internal addresses (`Error: the object store
/// failed, try again later`); the cause ([`DeliveryError::because`]) goes only to the
/// log, with the destination's name and the session's `conn=` and `queue_id=`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryError {
    kind: ErrorKind,
    text: Option<&'static str>,
    cause: Option<Box<str>>,
}

impl DeliveryError {
    /// An error of `kind`, with the kind's own reply text and no cause.
    pub fn new(kind: ErrorKind) -> Self {
        Self {
            kind,
            text: None,
            cause: None,
        }
    }

    /// [`ErrorKind::Transient`].
    pub fn transient() -> Self {
        Self::new(ErrorKind::Transient)
    }

    /// [`ErrorKind::Timeout`].
    pub fn timeout() -> Self {
        Self::new(ErrorKind::Timeout)
    }

    /// [`ErrorKind::InsufficientStorage`].
    pub fn insufficient_storage() -> Self {
        Self::new(ErrorKind::InsufficientStorage)
    }

    /// [`ErrorKind::MailboxUnavailable`].
    pub fn mailbox_unavailable() -> Self {
        Self::new(ErrorKind::MailboxUnavailable)
    }

    /// [`ErrorKind::Permanent`].
    pub fn permanent() -> Self {
        Self::new(ErrorKind::Permanent)
    }

    /// [`ErrorKind::Reply`]: the destination's own reply.
    pub fn reply(reply: impl Into<ReplyBuf>) -> Self {
        Self::new(ErrorKind::Reply(reply.into()))
    }

    /// The reply's text instead of the kind's own (not for [`ErrorKind::Reply`], which
    /// has its text). It is sent to the client: no secrets, no internal addresses.
    #[must_use]
    pub fn with_text(mut self, text: &'static str) -> Self {
        self.text = Some(text);
        self
    }

    /// What happened, for the log only: the destination's answer, the address it was
    /// asked at, the system's error.
    #[must_use]
    pub fn because(mut self, cause: impl fmt::Display) -> Self {
        self.cause = Some(cause.to_string().into_boxed_str());
        self
    }

    /// The kind, which decides the reply.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// The reply's text given by [`DeliveryError::with_text`], if any.
    pub fn text(&self) -> Option<&'static str> {
        self.text
    }

    /// What happened, if the destination said.
    pub fn cause(&self) -> Option<&str> {
        self.cause.as_deref()
    }

    /// Whether this is a fault of the destination (it could not take the message now)
    /// rather than its deliberate refusal of one message or one mailbox: a transient
    /// fault, a timeout, no room, or a temporary reply of its own.
    pub fn is_fault(&self) -> bool {
        match &self.kind {
            ErrorKind::Transient | ErrorKind::Timeout | ErrorKind::InsufficientStorage => true,
            ErrorKind::Reply(r) => r.code < 500,
            ErrorKind::MailboxUnavailable | ErrorKind::Permanent => false,
        }
    }
}

impl From<ErrorKind> for DeliveryError {
    fn from(kind: ErrorKind) -> Self {
        Self::new(kind)
    }
}

impl fmt::Display for DeliveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ErrorKind::Transient => f.write_str("transient failure")?,
            ErrorKind::InsufficientStorage => f.write_str("insufficient storage")?,
            ErrorKind::MailboxUnavailable => f.write_str("mailbox unavailable")?,
            ErrorKind::Timeout => f.write_str("timed out")?,
            ErrorKind::Permanent => f.write_str("refused")?,
            ErrorKind::Reply(r) => write!(f, "{r}")?,
        }
        match &self.cause {
            Some(c) => write!(f, ": {c}"),
            None => Ok(()),
        }
    }
}

impl std::error::Error for DeliveryError {}

/// Where a [`DeliveryError`] happened, which decides its reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// The check of MAIL.
    Mail,
    /// The check of a RCPT.
    Rcpt,
    /// The store at the end of the message.
    Data,
}

impl DeliveryError {
    /// The reply for this failure at `stage`. The one place that maps [`DeliveryError`] to
    /// replies: only a deliberate refusal ([`ErrorKind::Permanent`], or a destination's
    /// own `5xx` in [`ErrorKind::Reply`]) is a `5xx`.
    pub fn reply_at(&self, stage: Stage) -> ReplyBuf {
        let e = self;
        let mut reply = match (e.kind(), stage) {
            (ErrorKind::Reply(r), _) => return r.clone(),
            (ErrorKind::InsufficientStorage, _) => reply::NO_SPACE,
            (ErrorKind::MailboxUnavailable, Stage::Rcpt | Stage::Data) => {
                reply::MAILBOX_UNAVAILABLE
            }
            (ErrorKind::Timeout, _) => reply::DESTINATION_TIMEOUT,
            (ErrorKind::Permanent, Stage::Rcpt) => reply::RCPT_REFUSED,
            (ErrorKind::Permanent, _) => reply::STORE_REFUSED,
            (_, Stage::Data) => reply::STORE_FAILED,
            (_, Stage::Mail | Stage::Rcpt) => reply::CHECK_FAILED,
        };
        if let Some(text) = e.text() {
            reply.text = text;
        }
        reply.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_errors_are_4xx_unless_permanent() {
        use ErrorKind::*;
        for stage in [Stage::Mail, Stage::Rcpt, Stage::Data] {
            for kind in [
                Transient,
                InsufficientStorage,
                MailboxUnavailable,
                Timeout,
                Permanent,
            ] {
                let e = DeliveryError::new(kind.clone());
                let r = e.reply_at(stage);
                assert_eq!(r.code >= 500, kind == Permanent, "{e:?} at {stage:?}: {r}");
                assert!(r.code >= 400, "{e:?} at {stage:?}: {r}");
            }
        }
        assert_eq!(
            DeliveryError::insufficient_storage()
                .reply_at(Stage::Mail)
                .to_string(),
            "452 4.3.1 Insufficient system storage"
        );
        assert_eq!(
            DeliveryError::mailbox_unavailable()
                .reply_at(Stage::Rcpt)
                .to_string(),
            "450 4.2.0 Error: mailbox unavailable"
        );
        let own = ReplyBuf::new(550, "5.1.1", "user unknown", "x").unwrap();
        assert_eq!(DeliveryError::reply(own.clone()).reply_at(Stage::Rcpt), own);
        // A destination names what failed; the cause stays in the log.
        let e = DeliveryError::transient()
            .with_text("Error: the object store failed, try again later")
            .because("PUT 403 InvalidAccessKeyId at http://10.0.0.5:3900");
        assert_eq!(
            e.reply_at(Stage::Data).to_string(),
            "451 4.3.0 Error: the object store failed, try again later"
        );
    }
}
