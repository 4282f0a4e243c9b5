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
pub use proto::io::{Deliver, Message, Transaction};

/// A running server on async-std, delivering to `D` (by default the destination
/// `GSMTP_STORAGE` names).
pub type Server<D = proto::io::Destination<AsyncStd>> = proto::io::Server<AsyncStd, D>;

/// async-std's global runtime (its pool sized by `GSMTP_THREADS`).
#[derive(Clone, Copy, Debug, Default)]
pub struct AsyncStd;

impl proto::io::Runtime for AsyncStd {
    /// Sizes async-std's pool before its first task starts it; `ASYNC_STD_THREAD_COUNT`,
    /// when set, still wins, as it does for async-std itself.
    fn start_threads(&self, n: usize) {
        async_global_executor::init_with_config(
            async_global_executor::GlobalExecutorConfig::default()
                .with_env_var("ASYNC_STD_THREAD_COUNT")
                .with_min_threads(n.max(1))
                .with_thread_name_fn(|| "async-std/runtime".into()),
        );
    }

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

/// Starts a server that hands every accepted message to `deliver`, a destination of your
/// own (see [`Deliver`]). See [`proto::io::start_with`].
pub fn start_with<D: Deliver>(cfg: Config, deliver: D) -> Result<Server<D>, ConfigError> {
    proto::io::start_with(AsyncStd, cfg, deliver)
}
