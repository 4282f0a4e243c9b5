//! Runtime-neutral I/O shared by both frontends (the opt-in `io` feature).
//!
//! Everything here is written once against [`futures_io`] traits and the small
//! [`Runtime`] trait, so each frontend only supplies its runtime's sockets, timers,
//! spawner and thread pool:
//!
//! - the pump between a stream and a [`crate::Connection`] (`drive.rs`);
//! - [`deliver`]: where accepted mail goes: the [`Deliver`] interface, and the built-in
//!   destinations (Maildir with group commit, discard);
//! - [`start`] and [`Server`]: listeners, the max-clients gate, privilege drop, graceful
//!   shutdown;
//! - TLS set-up, PROXY headers, the nginx `auth_http` service, logging and the CLI.

mod auth;
pub mod cli;
pub mod deliver;
mod drive;
pub mod log;
pub mod metrics;
mod privilege;
mod proxy;
mod runtime;
mod server;
mod session;
mod tls;

pub use deliver::{Deliver, Destination};
pub use runtime::{Plain, Runtime, Transport};
pub use server::{Server, start, start_with};
pub use tls::acceptor;
