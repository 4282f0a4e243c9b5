//! Guerrilla SMTPd on [async-std]: the [`proto::io::Runtime`] for async-std, and
//! [`start`].
//!
//! async-std is discontinued upstream (RUSTSEC-2025-0052); `frontend-smol` is the one we
//! recommend. This crate is kept to a runtime adapter (sockets and timers come from
//! async-io, the reactor async-std runs on) so that carrying it costs little.
//!
//! [async-std]: https://docs.rs/async-std

use std::future::Future;

use async_std::task;

pub use proto::Config;
pub use proto::config::ConfigError;

/// A running server on async-std.
pub type Server = proto::io::Server<AsyncStd>;

/// async-std's global runtime.
#[derive(Clone, Copy, Debug, Default)]
pub struct AsyncStd;

impl proto::io::Runtime for AsyncStd {
    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        task::spawn(task);
    }

    fn unblock<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> impl Future<Output = T> + Send + 'static {
        task::spawn_blocking(f)
    }
}

/// Starts a server with `cfg` on async-std's runtime. See [`proto::io::start`].
pub fn start(cfg: Config) -> Result<Server, ConfigError> {
    proto::io::start(AsyncStd, cfg)
}
