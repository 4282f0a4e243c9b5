//! Guerrilla SMTPd on [smol]: the [`proto::io::Runtime`] for smol, and [`start`].
//!
//! Everything but the runtime glue lives in `proto` (the protocol) and `proto::io` (the
//! runtime-neutral server, on async-io's reactor, which smol runs on); this crate only
//! says how smol spawns tasks and runs blocking code.
//!
//! [smol]: https://docs.rs/smol

use std::future::Future;
use std::sync::{Arc, Once, OnceLock};

use smol::Executor;

pub use proto::Config;
pub use proto::config::ConfigError;
pub use proto::io::{Deliver, Message, Transaction};

/// A running server on smol, delivering to `D` (by default the destination
/// `GSMTP_STORAGE` names).
pub type Server<D = proto::io::Destination<Smol>> = proto::io::Server<Smol, D>;

/// smol, with one executor whose threads start with the first server
/// (`GSMTP_THREADS`, by default half the cores).
#[derive(Clone, Debug)]
pub struct Smol {
    executor: Arc<Executor<'static>>,
    threads: Arc<Once>,
}

impl Smol {
    /// The process-wide runtime.
    pub fn global() -> Self {
        static GLOBAL: OnceLock<Smol> = OnceLock::new();
        GLOBAL
            .get_or_init(|| Self {
                executor: Arc::new(Executor::new()),
                threads: Arc::new(Once::new()),
            })
            .clone()
    }

    /// Starts the executor's threads, `n()` of them, unless they are running already.
    fn start_threads_with(&self, n: impl FnOnce() -> usize) {
        self.threads.call_once(|| {
            for i in 0..n().max(1) {
                let ex = Arc::clone(&self.executor);
                std::thread::Builder::new()
                    .name(format!("smol-{i}"))
                    .spawn(move || smol::block_on(ex.run(std::future::pending::<()>())))
                    .expect("cannot start the executor threads");
            }
        });
    }
}

impl proto::io::Runtime for Smol {
    fn start_threads(&self, n: usize) {
        self.start_threads_with(|| n);
    }

    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        // The default count is worked out only the first time: it reads the cgroup's
        // CPU quota, which is not something to do for every connection.
        self.start_threads_with(|| proto::io::session_threads(&Config::default()));
        self.executor.spawn(task).detach();
    }

    fn unblock<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> impl Future<Output = T> + Send + 'static {
        smol::unblock(f)
    }
}

/// Starts a server with `cfg` on the global smol runtime. See [`proto::io::start`].
pub fn start(cfg: Config) -> Result<Server, ConfigError> {
    proto::io::start(Smol::global(), cfg)
}

/// Starts a server that hands every accepted message to `deliver`, a destination of your
/// own (see [`Deliver`]). See [`proto::io::start_with`].
pub fn start_with<D: Deliver>(cfg: Config, deliver: D) -> Result<Server<D>, ConfigError> {
    proto::io::start_with(Smol::global(), cfg, deliver)
}
