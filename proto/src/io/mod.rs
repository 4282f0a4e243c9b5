//! Runtime-neutral I/O shared by both frontends (the opt-in `io` feature).
//!
//! Everything here is written once against [`futures_io`] traits and the small
//! [`Runtime`] trait, so each frontend only supplies its runtime's spawner and thread
//! pool; sockets and timers come from async-io, which both runtimes run on.
//!
//! # The path of an accepted socket
//!
//! 1. `listen.rs`: [`start`] binds each listener and runs the one accept loop on it.
//! 2. `serve.rs`: each SMTP connection is admitted (or refused over `GM_MAX_CLIENTS`),
//!    its PROXY header read, its client counted, TLS set up, and at its end logged.
//! 3. `pump.rs`: the session's only loop moves bytes between the socket and a
//!    [`crate::Connection`], and carries out its actions on the destination.
//! 4. [`deliver`]: the destination, a [`Deliver`] that gives a [`Transaction`] at MAIL,
//!    then a [`Message`] for its text, committed before `250`.
//!
//! Around them: `shared.rs` (what a configuration's sessions share: counters, signals,
//! the per-client count), `time.rs` (deadlines, signals, one `with_timeout`),
//! `observe.rs` (every log line and metric), `server.rs` (start, reload, shutdown),
//! and the services beside SMTP: `auth.rs` (nginx's `auth_http`), [`metrics`]
//! (`/metrics`, `/healthz`), with `proxy.rs`, `tls.rs`, `privilege.rs`, [`log`] and
//! [`cli`].

mod auth;
pub mod cli;
pub mod deliver;
mod dnsbl;
mod filter;
mod listen;
pub mod log;
mod login;
pub mod metrics;
mod observe;
mod privilege;
mod proxy;
mod pump;
mod runtime;
mod serve;
mod server;
mod shared;
mod time;
mod tls;
mod verify;

pub use deliver::{Deliver, Destination, Message, Transaction};
pub use runtime::{Plain, Runtime, Transport};
pub use server::{Server, session_threads, start, start_with};
pub use tls::acceptor;
