//! Guerrilla SMTPd's core: the pure SMTP engine (bytes in, replies and actions out), the
//! delivery contract a destination implements, and, behind the opt-in `io` feature, the
//! runtime-neutral server both frontends run.
//!
//! The default build decides everything about a session that can be decided without the
//! operating system: parsing (with nom), the RFC 5321 state machine, limits, reply texts,
//! the Received header, the mailbox mapping, the configuration model, what each
//! destination hands on and what its answers mean, and nginx's `auth_http` protocol. It
//! reads no clock, opens no socket or file and spawns nothing: every instant comes from
//! the caller, so tests run in virtual time.
//!
//! The modules, by role:
//!
//! - **the engine**: [`Connection`] (`conn`), [`command`], [`syntax`], [`reply`],
//!   [`config`], [`policy`], [`trace`], [`proxy`] (PROXY headers), [`auth_http`],
//!   [`dnsbl`] (what blocklists' answers mean);
//! - **the delivery contract**: [`delivery`] (the envelope and [`DeliveryError`], one
//!   place for a destination's words);
//! - **the pure halves of the `io` features**: [`deliver`] (what each destination hands
//!   on and what its answers mean, one file per destination, mirroring `io::deliver`);
//! - **testing helpers**: [`sim`] (a connection driven in memory, in virtual time) and
//!   [`transcript`] (the `C:`/`S:` scripts tests are written in);
//! - **`io`** (feature): the server the frontends (`frontend-smol`,
//!   `frontend-async-std`) run, which drives a [`Connection`] per accepted socket.
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
//!   ([`deliver::maildir`]).
#![warn(missing_docs)]

// The engine.
pub mod auth_http;
pub mod command;
pub mod config;
mod conn;
pub mod dnsbl;
pub mod filter;
pub mod header;
pub mod milter;
pub mod policy;
pub mod proxy;
pub mod reply;
pub mod sasl;
pub mod syntax;
mod timer;
pub mod trace;
pub mod verdict;

// The delivery contract.
pub mod delivery;

// The pure halves of the io features.
pub mod deliver;

// Testing helpers.
pub mod sim;
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
pub use verdict::Verdict;
