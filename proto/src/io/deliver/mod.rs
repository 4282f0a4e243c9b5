//! Where accepted mail goes: the [`Deliver`] interface, and the destinations built in.
//!
//! A destination sees each mail transaction in the shape SMTP gives it (as maddy's
//! `DeliveryTarget` does): [`Deliver::start`] at MAIL, [`Deliver::add_recipient`] at each
//! RCPT, [`Deliver::body`] when the message's text begins, [`Deliver::write`] for each
//! piece of it, then [`Deliver::commit`] or [`Deliver::abort`]. Each step may refuse, and
//! its refusal is the client's reply:
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

mod client;
mod discard;
mod http;
mod lmtp;
pub mod maildir;
mod pipe;
mod s3;
mod spool;

use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures_lite::FutureExt as _;

use super::runtime::Runtime;
use crate::config::{Config, ConfigError, Storage};
use crate::delivery::DeliveryError;
use crate::delivery::Envelope;
use crate::delivery::Recipient;
use crate::syntax::{MailParams, ReversePath};

pub use discard::Discard;
pub use http::{Http, HttpMessage};
pub use lmtp::{Lmtp, LmtpMessage};
pub use maildir::Maildir;
pub use pipe::{Pipe, PipeMessage};
pub use s3::{S3, S3Message};

/// A destination for accepted mail. See the module docs for the order of calls and what
/// each result becomes.
///
/// Every method may be written as an `async fn` in the implementation. The futures must
/// be `Send`; they run on the session's task, so a method that blocks (file I/O of some
/// size, a synchronous client) should hand its work to a thread pool.
pub trait Deliver: Send + Sync + 'static {
    /// One transaction in progress: from [`Deliver::start`] to [`Deliver::commit`] or
    /// [`Deliver::abort`].
    type Message: Send + 'static;

    /// The destination's name in the metrics (`smtp_delivery_seconds{destination=...}`).
    fn name(&self) -> &'static str {
        "custom"
    }

    /// MAIL: a transaction begins. Refuse here what can be refused before any recipient
    /// (a declared `SIZE=` that cannot fit, say).
    fn start(
        &self,
        from: &ReversePath<'static>,
        params: &MailParams,
    ) -> impl Future<Output = Result<Self::Message, DeliveryError>> + Send;

    /// RCPT: can this recipient take the message? Its domain is already one the server
    /// accepts mail for. A refusal refuses only this recipient. Accepts by default.
    fn add_recipient(
        &self,
        message: &mut Self::Message,
        recipient: &Recipient,
    ) -> impl Future<Output = Result<(), DeliveryError>> + Send {
        let _ = (message, recipient);
        std::future::ready(Ok(()))
    }

    /// The message's text begins (after DATA's `354`, or with the first BDAT chunk).
    /// `envelope` is complete: sender, accepted recipients, client, queue id. An error
    /// here, in [`Deliver::write`], refuses the message at its end, after the rest of
    /// its text was read (and dropped).
    fn body(
        &self,
        message: &mut Self::Message,
        envelope: &Envelope,
    ) -> impl Future<Output = Result<(), DeliveryError>> + Send;

    /// The next piece of the message's text, dot-unstuffed, CRLF line ends, exactly as
    /// received, in pieces of up to about 32 KiB (the whole of a small message at
    /// once, just before [`Deliver::commit`]).
    fn write(
        &self,
        message: &mut Self::Message,
        bytes: &[u8],
    ) -> impl Future<Output = Result<(), DeliveryError>> + Send;

    /// The message is complete: make it safe where it goes. `Ok` means committed, and
    /// is answered `250`.
    fn commit(
        &self,
        message: Self::Message,
    ) -> impl Future<Output = Result<(), DeliveryError>> + Send;

    /// Checks, without delivering anything, that the destination can take mail now: the
    /// server answers, the credentials are taken, the command starts. `--check-config
    /// --live` calls it; its error names what failed in its cause. Succeeds by default.
    fn probe(&self) -> impl Future<Output = Result<(), DeliveryError>> + Send {
        std::future::ready(Ok(()))
    }

    /// The transaction ended without a message (RSET, a refused body, a lost client):
    /// throw away whatever was started. Nothing of it may ever be committed.
    fn abort(&self, message: Self::Message) -> impl Future<Output = ()> + Send {
        drop(message);
        std::future::ready(())
    }
}

/// The destinations built in, chosen by `GSMTP_STORAGE`.
#[derive(Debug)]
#[non_exhaustive]
#[allow(clippy::large_enum_variant, reason = "one per server, never moved")]
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

/// A message of one of the [`Destination`]s.
#[derive(Debug)]
pub enum DestinationMessage<R: Runtime> {
    /// For [`Destination::Maildir`].
    Maildir(<Maildir<R> as Deliver>::Message),
    /// For [`Destination::Discard`].
    Discard(<Discard as Deliver>::Message),
    /// For [`Destination::Pipe`].
    Pipe(PipeMessage),
    /// For [`Destination::Http`].
    Http(HttpMessage),
    /// For [`Destination::Lmtp`].
    Lmtp(LmtpMessage),
    /// For [`Destination::S3`].
    S3(S3Message),
}

/// Calls the same method on whichever destination this is, with its own message; a
/// message of another destination (which cannot happen) gets `$other`. The hand-offs'
/// futures are large (buffers, requests, timers): they are boxed, so that every
/// destination's calls do not carry, and copy, the largest one's size.
macro_rules! dispatch {
    ($self:ident, $message:expr, |$d:ident, $m:ident| $call:expr, $other:expr) => {
        match ($self, $message) {
            (Destination::Maildir($d), DestinationMessage::Maildir($m)) => $call,
            (Destination::Discard($d), DestinationMessage::Discard($m)) => $call,
            (Destination::Pipe($d), DestinationMessage::Pipe($m)) => {
                Box::pin(async move { $call }).await
            }
            (Destination::Http($d), DestinationMessage::Http($m)) => {
                Box::pin(async move { $call }).await
            }
            (Destination::Lmtp($d), DestinationMessage::Lmtp($m)) => {
                Box::pin(async move { $call }).await
            }
            (Destination::S3($d), DestinationMessage::S3($m)) => {
                Box::pin(async move { $call }).await
            }
            #[allow(unreachable_patterns)]
            _ => $other,
        }
    };
}

impl<R: Runtime> Deliver for Destination<R> {
    type Message = DestinationMessage<R>;

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
        match self {
            Self::Maildir(d) => d.probe().await,
            Self::Discard(d) => d.probe().await,
            Self::Pipe(d) => Box::pin(d.probe()).await,
            Self::Http(d) => Box::pin(d.probe()).await,
            Self::Lmtp(d) => Box::pin(d.probe()).await,
            Self::S3(d) => Box::pin(d.probe()).await,
        }
    }

    async fn start(
        &self,
        from: &ReversePath<'static>,
        params: &MailParams,
    ) -> Result<Self::Message, DeliveryError> {
        match self {
            Self::Maildir(d) => d.start(from, params).await.map(DestinationMessage::Maildir),
            Self::Discard(d) => d.start(from, params).await.map(DestinationMessage::Discard),
            Self::Pipe(d) => d.start(from, params).await.map(DestinationMessage::Pipe),
            Self::Http(d) => d.start(from, params).await.map(DestinationMessage::Http),
            Self::Lmtp(d) => Box::pin(d.start(from, params))
                .await
                .map(DestinationMessage::Lmtp),
            Self::S3(d) => d.start(from, params).await.map(DestinationMessage::S3),
        }
    }

    async fn add_recipient(
        &self,
        message: &mut Self::Message,
        recipient: &Recipient,
    ) -> Result<(), DeliveryError> {
        let wrong = Err(DeliveryError::transient());
        dispatch!(
            self,
            message,
            |d, m| d.add_recipient(m, recipient).await,
            wrong
        )
    }

    async fn body(
        &self,
        message: &mut Self::Message,
        envelope: &Envelope,
    ) -> Result<(), DeliveryError> {
        let wrong = Err(DeliveryError::transient());
        dispatch!(self, message, |d, m| d.body(m, envelope).await, wrong)
    }

    async fn write(&self, message: &mut Self::Message, bytes: &[u8]) -> Result<(), DeliveryError> {
        let wrong = Err(DeliveryError::transient());
        dispatch!(self, message, |d, m| d.write(m, bytes).await, wrong)
    }

    async fn commit(&self, message: Self::Message) -> Result<(), DeliveryError> {
        let wrong = Err(DeliveryError::transient());
        dispatch!(self, message, |d, m| d.commit(m).await, wrong)
    }

    async fn abort(&self, message: Self::Message) {
        dispatch!(self, message, |d, m| d.abort(m).await, ())
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
