//! The conformance suite for Guerrilla SMTPd, written once and run unchanged against every
//! frontend over real TCP and TLS sockets.
//!
//! A frontend runs the whole suite with one line in its `tests/conformance.rs`:
//!
//! ```ignore
//! testsuite::conformance!(frontend_smol::start);
//! ```
//!
//! which expands to one `#[test]` per case in [`cases`] and per transcript in `vectors/`.
//! A frontend that cannot pass a case lists it, with the reason, in
//! `conformance!(start, skip: [case_name: "why"])`; the lists are empty today.
//!
//! Each case starts its own server on an ephemeral loopback port with a temporary
//! Maildir ([`Fixture`]), talks to it with a blocking client ([`Client`]) and checks the
//! replies and the stored files. Transcripts (`vectors/*.smtp`) are `C:`/`S:` scripts
//! run by [`transcript::run`].

pub mod cases;
mod client;
mod fixture;
pub mod interop;
pub mod transcript;

use std::net::SocketAddr;
use std::time::Duration;

pub use client::{Client, READ_TIMEOUT, Reply, dot_stuff, tcp_from, tls_config};
pub use fixture::{Fixture, TempDir, cert_dir, folder_files, split_trace, test_config};
pub use proto::Config;
pub use proto::config::ConfigError;

/// A running server, whatever its runtime.
pub trait Running: Send + Sync {
    /// The SMTP listener.
    fn smtp(&self) -> SocketAddr;
    /// The implicit-TLS listener, if configured.
    fn tls(&self) -> Option<SocketAddr>;
    /// The `auth_http` service, if enabled.
    fn auth(&self) -> Option<SocketAddr>;
    /// Sessions open now.
    fn active(&self) -> usize;
    /// Graceful shutdown; blocks until done.
    fn shutdown(&self, grace: Duration);
}

impl<R: proto::io::Runtime, D: proto::io::Deliver> Running for proto::io::Server<R, D> {
    fn smtp(&self) -> SocketAddr {
        self.local_addr()
    }
    fn tls(&self) -> Option<SocketAddr> {
        self.tls_local_addr()
    }
    fn auth(&self) -> Option<SocketAddr> {
        self.auth_local_addr()
    }
    fn active(&self) -> usize {
        Self::active(self)
    }
    fn shutdown(&self, grace: Duration) {
        Self::shutdown(self, grace);
    }
}

/// How a frontend starts a server.
pub type Start = fn(Config) -> Result<Box<dyn Running>, ConfigError>;

/// Runs one case unless the frontend's skip list names it.
pub fn run_case(name: &str, skip: &[(&str, &str)], start: Start, case: fn(Start)) {
    if let Some((_, why)) = skip.iter().find(|(n, _)| *n == name) {
        eprintln!("skipped {name}: {why}");
        return;
    }
    case(start);
}

/// Runs one transcript from `vectors/` against a fresh server with [`test_config`].
pub fn run_vector(name: &str, skip: &[(&str, &str)], start: Start, text: &str) {
    if let Some((_, why)) = skip.iter().find(|(n, _)| *n == name) {
        eprintln!("skipped {name}: {why}");
        return;
    }
    let fx = Fixture::start(start, |_| {});
    let mut c = fx.connect();
    transcript::run(&mut c, text);
}

/// Expands to one `#[test]` per conformance case and per transcript, against `start`
/// (a `fn(Config) -> Result<Server, ConfigError>` of the frontend).
#[macro_export]
macro_rules! conformance {
    ($start:path) => {
        $crate::conformance!($start, skip: []);
    };
    ($start:path, skip: [$($skip:ident: $why:literal),* $(,)?]) => {
        const __SKIP: &[(&str, &str)] = &[$((stringify!($skip), $why)),*];
        fn __start(cfg: $crate::Config) -> ::std::result::Result<::std::boxed::Box<dyn $crate::Running>, $crate::ConfigError> {
            $start(cfg).map(|s| ::std::boxed::Box::new(s) as ::std::boxed::Box<dyn $crate::Running>)
        }
        $crate::for_each_case!($crate::__case_test);
        $crate::for_each_vector!($crate::__vector_test);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __case_test {
    ($name:ident) => {
        #[test]
        fn $name() {
            $crate::run_case(stringify!($name), __SKIP, __start, $crate::cases::$name);
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __vector_test {
    ($name:ident) => {
        #[test]
        fn $name() {
            $crate::run_vector(
                stringify!($name),
                __SKIP,
                __start,
                $crate::transcript::vectors::$name,
            );
        }
    };
}
