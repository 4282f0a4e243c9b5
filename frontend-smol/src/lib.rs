//! Guerrilla SMTPd on [smol]: the [`proto::io::Runtime`] for smol, and [`start`].
//!
//! Everything but the runtime glue lives in `proto` (the protocol) and `proto::io` (the
//! runtime-neutral server, on async-io's reactor, which smol runs on); this crate only
//! says how smol spawns tasks and runs blocking code.
//!
//! [smol]: https://docs.rs/smol

use std::future::Future;
use std::sync::{Arc, OnceLock};

use smol::Executor;

pub use proto::Config;
pub use proto::config::ConfigError;
pub use proto::io::{Deliver, Message, Transaction};

/// A running server on smol, delivering to `D` (by default the destination
/// `GSMTP_STORAGE` names).
pub type Server<D = proto::io::Destination<Smol>> = proto::io::Server<Smol, D>;

/// smol, with an executor that runs on one thread per core.
#[derive(Clone, Debug)]
pub struct Smol {
    executor: Arc<Executor<'static>>,
}

impl Smol {
    /// The process-wide runtime; its threads start on first use.
    pub fn global() -> Self {
        static GLOBAL: OnceLock<Smol> = OnceLock::new();
        GLOBAL
            .get_or_init(|| {
                let executor = Arc::new(Executor::new());
                let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
                for i in 0..threads {
                    let ex = Arc::clone(&executor);
                    std::thread::Builder::new()
                        .name(format!("smol-{i}"))
                        .spawn(move || smol::block_on(ex.run(std::future::pending::<()>())))
                        .expect("cannot start the executor threads");
                }
                Self { executor }
            })
            .clone()
    }
}

impl proto::io::Runtime for Smol {
    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
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
