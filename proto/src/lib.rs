//! The pure SMTP engine of Guerrilla SMTPd: bytes in, replies and storage actions out.
//!
//! This crate decides everything about an SMTP session that can be decided without the
//! operating system: parsing (with nom), the RFC 5321 state machine, limits, reply texts,
//! the Received header, Maildir naming and the mailbox mapping, the configuration model,
//! and nginx's `auth_http` protocol. It reads no clock, opens no socket or file and
//! spawns nothing: every instant comes from the caller, so tests run in virtual time.
//!
//! The frontends (`frontend-smol`, `frontend-async-std`) drive a [`Connection`] with a
//! socket, a timer and a Maildir. What both need and is not runtime-specific lives in the
//! opt-in `io` feature (`proto::io`); the default build stays pure.
//!
//! # Run loop
//!
//! ```
//! use std::sync::Arc;
//! use std::time::{Instant, SystemTime};
//! use proto::{Accept, Action, Config, Connection};
//!
//! let now = Instant::now();
//! let accept = Accept { peer: "192.0.2.1:4000".parse().unwrap(), id: 1, active: 1,
//!                       wall: SystemTime::UNIX_EPOCH, instance: 0, tls: None };
//! let mut conn = Connection::new(Arc::new(Config::default()), now, accept);
//! let mut out = Vec::new();
//! conn.handle_input(now, b"EHLO client.example\r\nMAIL FROM:<a@b.example>\r\n\
//!                         RCPT TO:<c@d.example>\r\nDATA\r\nHello\r\n.\r\nQUIT\r\n");
//! let mut body = Vec::new();
//! loop {
//!     conn.poll_transmit(&mut out);
//!     match conn.poll_action() {
//!         Action::Check(_) => conn.handle_check(now, Ok(())), // room, and the mailbox is fine
//!         Action::Begin(envelope) => assert_eq!(envelope.recipients.len(), 1),
//!         Action::Write(bytes) => body.extend_from_slice(bytes),
//!         Action::Commit => conn.handle_delivery(now, Ok(())), // the file is on disk
//!         Action::Close(_) => break,
//!         other => panic!("unexpected {other:?}"),
//!     }
//! }
//! conn.poll_transmit(&mut out); // the 221 queued with the Close
//! assert_eq!(body, b"Hello\r\n");
//! let text = String::from_utf8(out).unwrap();
//! assert!(text.contains("250 2.0.0 OK : queued as "));
//! assert!(text.ends_with("221 2.0.0 Bye\r\n"));
//! ```
//!
//! # Security
//!
//! - **SMTP smuggling**: a DATA body ends only at `<CRLF>.<CRLF>`; see the body decoder.
//! - **STARTTLS injection** (CVE-2011-0411): bytes received after `STARTTLS` and before
//!   the handshake are dropped, and the session restarts after it.
//! - **Limits**: command lines, text lines, message size, recipients, errors and time are
//!   all bounded here; buffers never hold more than one read beyond the line limit.
//! - **Paths**: no recipient address can name a folder outside the Maildir root
//!   ([`maildir`]).
#![warn(missing_docs)]

pub mod auth_http;
pub mod command;
pub mod config;
mod conn;
pub mod deliver;
pub mod delivery;
pub mod policy;
pub mod proxy;
pub mod reply;
pub mod sim;
pub mod syntax;
mod timer;
pub mod trace;
pub mod transcript;

#[cfg(feature = "io")]
pub mod io;

pub use command::{Command, Verb};
pub use config::Config;
pub use conn::{Accept, Action, Check, CloseReason, Connection, Event, Stats};
pub use delivery::{
    DeliveryError, Envelope, ErrorKind, MailboxPath, Protocol, QueueId, Recipient, Stage, TlsInfo,
};
pub use syntax::{ParseError, parse_command};
pub use timer::Timer;
