//! Where accepted mail goes: the [`Deliver`] interface, and the destinations built in.
//!
//! A destination sees each mail transaction in the shape SMTP gives it (as maddy's
//! `DeliveryTarget` does), each step owned by the value the step before gave:
//! [`Deliver::start`] at MAIL gives a [`Transaction`]; [`Transaction::add_recipient`] at
//! each RCPT; [`Transaction::begin`] when the text begins gives a [`Message`];
//! [`Message::write`] for each piece of it; then [`Message::commit`], or `abort` of
//! whichever is open. The types leave no state to check: a message cannot be written
//! before it began, nor committed twice. Each step may refuse, and its refusal is the
//! client's reply:
//!
//! | the destination says | the client gets |
//! |---|---|
//! | `commit` returns `Ok` | `250 2.0.0 OK : queued as <id>` |
//! | [`DeliveryError::transient()`], any I/O fault | `451 4.3.0` |
//! | [`DeliveryError::timeout()`] | `451 4.4.7` |
//! | [`DeliveryError::insufficient_storage()`] | `452 4.3.1 Insufficient system storage` |
//! | [`DeliveryError::mailbox_unavailable()`] (at RCPT) | `450 4.2.0` |
//! | [`DeliveryError::permanent()`] | `554 5.3.0` (`550 5.1.1` at RCPT) |
//! | [`DeliveryError::reply()`] | that reply, `4xx` or `5xx` |
//! | a panic | `451 4.3.0`, and the message is dropped |
//!
//! [`DeliveryError::with_text`] gives a fault's reply a text that says what failed (no
//! secrets, no internal addresses), and [`DeliveryError::because`] says what happened:
//! the server logs it once, with the session's `conn` and `queue_id` and the
//! destination's name, on the line of the refusal.
//!
//! **`250` means committed.** The reply to the final `.` is only sent once `commit` has
//! returned, so a destination must return `Ok` only once the message is safe where it
//! goes, and must never let a message it answered `Err` for be committed later (remove the
//! file, abort the upload). A remote destination that may still commit a request already
//! in flight when it gave up (a timeout) can at worst cause a duplicate when the client
//! retries; never a loss.
//!
//! The destinations built in, one file each, are chosen by `GSMTP_STORAGE`
//! ([`Destination`]); a Rust program can bring its own through `start_with`.

pub(crate) mod client;
mod discard;
mod http;
mod lmtp;
mod maildir;
mod pipe;
pub(crate) mod pool;
mod s3;
pub(crate) mod spool;

use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures_lite::FutureExt as _;

use super::runtime::Runtime;
use crate::config::{Config, ConfigError, Storage};
use crate::delivery::{DeliveryError, Envelope, Recipient};
use crate::syntax::{MailParams, ReversePath};
use crate::verdict::Verdict;

pub use discard::{Discard, Discarded};
pub use http::{Http, HttpMessage, HttpTransaction};
pub use lmtp::{Lmtp, LmtpMessage, LmtpTransaction};
pub use maildir::{Maildir, MaildirMessage, MaildirTransaction, SYNCFS_BATCH};
pub use pipe::{Pipe, PipeMessage, PipeTransaction};
pub use s3::{S3, S3Message, S3Transaction};
pub use spool::MEMORY as SPOOL_MEMORY;

/// A destination for accepted mail: where each mail transaction goes. See the module
/// docs for the order of calls and what each result becomes.
///
/// Every method may be written as an `async fn` in the implementation. The futures must
/// be `Send`; they run on the session's task, so a method that blocks (file I/O of some
/// size, a synchronous client) should hand its work to a thread pool.
pub trait Deliver: Send + Sync + 'static {
    /// A transaction begun at MAIL: it takes recipients, then its message.
    type Transaction: Transaction;

    /// The destination's name in the logs and metrics (`destination=...`).
    fn name(&self) -> &'static str {
        "custom"
    }

    /// Checks, without delivering anything, that the destination can take mail now: the
    /// server answers, the credentials are taken, the command starts. `--check-config
    /// --live` calls it; its error names what failed in its cause. Succeeds by default.
    fn probe(&self) -> impl Future<Output = Result<(), DeliveryError>> + Send {
        std::future::ready(Ok(()))
    }

    /// MAIL: a transaction begins. Refuse here what can be refused before any recipient
    /// (a declared `SIZE=` that cannot fit, a server that is down).
    fn start(
        &self,
        from: &ReversePath<'static>,
        params: &MailParams,
    ) -> impl Future<Output = Result<Self::Transaction, DeliveryError>> + Send;
}

/// A mail transaction of a [`Deliver`], from MAIL until its message begins (or it is
/// aborted). It holds what it needs of its destination (an `Arc`, a connection), so the
/// session keeps it on its own.
pub trait Transaction: Send + 'static {
    /// The message this transaction's text goes into.
    type Message: Message;

    /// RCPT: can this recipient take the message? Its domain is already one the server
    /// accepts mail for. A refusal refuses only this recipient. Accepts by default.
    fn add_recipient(
        &mut self,
        recipient: &Recipient,
    ) -> impl Future<Output = Result<(), DeliveryError>> + Send {
        let _ = recipient;
        std::future::ready(Ok(()))
    }

    /// The message's text begins (after DATA's `354`, or with the first BDAT chunk).
    /// `envelope` is complete: sender, accepted recipients, client, queue id. An error
    /// here refuses the message at its end, after the rest of its text was read (and
    /// dropped).
    fn begin(
        self,
        envelope: &Envelope,
    ) -> impl Future<Output = Result<Self::Message, DeliveryError>> + Send;

    /// The transaction ended without a message (RSET, a lost client, no recipient):
    /// throw away whatever was started.
    fn abort(self) -> impl Future<Output = ()> + Send
    where
        Self: Sized,
    {
        drop(self);
        std::future::ready(())
    }
}

/// A message's text on its way into a destination, from [`Transaction::begin`] to
/// [`Message::commit`] or [`Message::abort`].
pub trait Message: Send + 'static {
    /// The next piece of the message's text, dot-unstuffed, CRLF line ends, exactly as
    /// received, in pieces of up to about 32 KiB (the whole of a small message at
    /// once, just before [`Message::commit`]). An error refuses the message at its end.
    fn write(&mut self, bytes: &[u8]) -> impl Future<Output = Result<(), DeliveryError>> + Send;

    /// The text is complete: make it safe where it goes. `Ok` means committed, and is
    /// answered `250`. It may fail, and must be able to: the commit is where a store
    /// gives its final word (a sync that finds the disk full, an S3 upload's Complete,
    /// an LMTP server's answers after the dot), and that word is the client's reply.
    ///
    /// `verdict` is what the checks of `GSMTP_VERIFY` found (empty when none ran): a
    /// destination puts its `Authentication-Results` field
    /// ([`Verdict::authentication_results`]) at the top of the stored message, and hands
    /// its facts on where it can.
    fn commit(self, verdict: &Verdict) -> impl Future<Output = Result<(), DeliveryError>> + Send;

    /// The message was refused, or the client went away: nothing of it may ever be
    /// committed.
    fn abort(self) -> impl Future<Output = ()> + Send
    where
        Self: Sized,
    {
        drop(self);
        std::future::ready(())
    }
}

/// The destinations built in, chosen by `GSMTP_STORAGE`.
#[derive(Debug)]
#[non_exhaustive]
pub enum Destination<R: Runtime> {
    /// `maildir`: Maildir folders on the local disk, synced before `250`.
    Maildir(Maildir<R>),
    /// `discard`: accept and drop (for load tests).
    Discard(Discard),
    /// `pipe`: run a command with each message on its standard input.
    Pipe(Pipe<R>),
    /// `http`: POST each message to a URL.
    Http(Http<R>),
    /// `lmtp`: relay each transaction to an LMTP server.
    Lmtp(Lmtp<R>),
    /// `s3`: one object per message in an S3-compatible bucket.
    S3(S3<R>),
}

impl<R: Runtime> Destination<R> {
    /// The destination `cfg` asks for, ready to take mail. Runs as the user the server
    /// runs as (after the privilege drop); an error names the key at fault.
    pub fn open(rt: &R, cfg: &Config) -> Result<Self, ConfigError> {
        Ok(match cfg.storage {
            Storage::Maildir => {
                Self::Maildir(Maildir::open(rt.clone(), cfg).map_err(|e| ConfigError {
                    key: "GSMTP_MAILDIR".into(),
                    message: format!("cannot use {}: {e}", cfg.maildir.display()),
                })?)
            }
            Storage::Discard => Self::Discard(Discard),
            Storage::Pipe => Self::Pipe(Pipe::open(rt.clone(), cfg)?),
            Storage::Http => Self::Http(Http::open(rt.clone(), cfg)?),
            Storage::Lmtp => Self::Lmtp(Lmtp::open(rt.clone(), cfg)?),
            Storage::S3 => Self::S3(S3::open(rt.clone(), cfg)?),
        })
    }
}

/// The directory where hand-off destinations spool large messages: `GSMTP_SPOOL_DIR`, or
/// the system's temporary directory. It must be a directory the server may write.
pub(crate) fn spool_dir(cfg: &Config) -> Result<std::path::PathBuf, ConfigError> {
    let dir = cfg.spool_dir.clone().unwrap_or_else(std::env::temp_dir);
    let flags = nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK;
    match nix::unistd::access(&dir.join("."), flags) {
        Ok(()) => Ok(dir),
        Err(e) => Err(ConfigError {
            key: "GSMTP_SPOOL_DIR".into(),
            message: format!("cannot use {}: {e}", dir.display()),
        }),
    }
}

/// A transaction of one of the [`Destination`]s.
#[derive(Debug)]
pub enum DestinationTransaction<R: Runtime> {
    /// Of [`Destination::Maildir`].
    Maildir(MaildirTransaction<R>),
    /// Of [`Destination::Discard`].
    Discard(Discarded),
    /// Of [`Destination::Pipe`].
    Pipe(PipeTransaction<R>),
    /// Of [`Destination::Http`].
    Http(HttpTransaction<R>),
    /// Of [`Destination::Lmtp`].
    Lmtp(LmtpTransaction<R>),
    /// Of [`Destination::S3`].
    S3(S3Transaction<R>),
}

/// A message of one of the [`Destination`]s.
#[derive(Debug)]
pub enum DestinationMessage<R: Runtime> {
    /// Of [`Destination::Maildir`].
    Maildir(MaildirMessage<R>),
    /// Of [`Destination::Discard`].
    Discard(Discarded),
    /// Of [`Destination::Pipe`].
    Pipe(PipeMessage<R>),
    /// Of [`Destination::Http`].
    Http(HttpMessage<R>),
    /// Of [`Destination::Lmtp`].
    Lmtp(LmtpMessage<R>),
    /// Of [`Destination::S3`].
    S3(S3Message<R>),
}

/// Runs `$call` on whichever variant `$value` is, with `$v` bound to its content, and
/// wraps what it gives in `$wrap`'s same variant; the hand-offs' calls are boxed.
macro_rules! dispatch {
    ($value:expr, $ty:ident, |$v:ident| $call:expr) => {
        match $value {
            $ty::Maildir($v) => $call,
            $ty::Discard($v) => $call,
            $ty::Pipe($v) => Box::pin(async move { $call }).await,
            $ty::Http($v) => Box::pin(async move { $call }).await,
            $ty::Lmtp($v) => Box::pin(async move { $call }).await,
            $ty::S3($v) => Box::pin(async move { $call }).await,
        }
    };
    ($value:expr, $ty:ident, |$v:ident| $call:expr, wrap $wrap:ident) => {
        match $value {
            $ty::Maildir($v) => $call.map($wrap::Maildir),
            $ty::Discard($v) => $call.map($wrap::Discard),
            $ty::Pipe($v) => Box::pin(async move { $call }).await.map($wrap::Pipe),
            $ty::Http($v) => Box::pin(async move { $call }).await.map($wrap::Http),
            $ty::Lmtp($v) => Box::pin(async move { $call }).await.map($wrap::Lmtp),
            $ty::S3($v) => Box::pin(async move { $call }).await.map($wrap::S3),
        }
    };
}

impl<R: Runtime> Deliver for Destination<R> {
    type Transaction = DestinationTransaction<R>;

    fn name(&self) -> &'static str {
        match self {
            Self::Maildir(_) => "maildir",
            Self::Discard(_) => "discard",
            Self::Pipe(_) => "pipe",
            Self::Http(_) => "http",
            Self::Lmtp(_) => "lmtp",
            Self::S3(_) => "s3",
        }
    }

    async fn probe(&self) -> Result<(), DeliveryError> {
        dispatch!(self, Self, |d| d.probe().await)
    }

    async fn start(
        &self,
        from: &ReversePath<'static>,
        params: &MailParams,
    ) -> Result<Self::Transaction, DeliveryError> {
        dispatch!(self, Self, |d| d.start(from, params).await, wrap DestinationTransaction)
    }
}

impl<R: Runtime> Transaction for DestinationTransaction<R> {
    type Message = DestinationMessage<R>;

    async fn add_recipient(&mut self, recipient: &Recipient) -> Result<(), DeliveryError> {
        dispatch!(self, Self, |t| t.add_recipient(recipient).await)
    }

    async fn begin(self, envelope: &Envelope) -> Result<Self::Message, DeliveryError> {
        dispatch!(self, Self, |t| t.begin(envelope).await, wrap DestinationMessage)
    }

    async fn abort(self) {
        dispatch!(self, Self, |t| Transaction::abort(t).await)
    }
}

impl<R: Runtime> Message for DestinationMessage<R> {
    async fn write(&mut self, bytes: &[u8]) -> Result<(), DeliveryError> {
        dispatch!(self, Self, |m| m.write(bytes).await)
    }

    async fn commit(self, verdict: &Verdict) -> Result<(), DeliveryError> {
        dispatch!(self, Self, |m| m.commit(verdict).await)
    }

    async fn abort(self) {
        dispatch!(self, Self, |m| Message::abort(m).await)
    }
}

/// Runs a destination's future, turning a panic in it into `None` (and a log line): a
/// broken destination costs the client a `451`, never the server.
pub(crate) async fn guarded<T>(what: &str, fut: impl Future<Output = T>) -> Option<T> {
    match AssertUnwindSafe(fut).catch_unwind().await {
        Ok(v) => Some(v),
        Err(panic) => {
            let why = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(call = what, panic = %why, "the destination panicked");
            None
        }
    }
}
