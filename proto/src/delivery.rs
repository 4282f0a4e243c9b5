//! The delivery vocabulary shared by the engine and every destination: why a destination
//! did not take a recipient or a message ([`DeliveryError`]).

use std::fmt;

use crate::reply::ReplyBuf;

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
