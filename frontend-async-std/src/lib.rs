//! Guerrilla SMTPd on [async-std]: the [`proto::io::Runtime`] for async-std, and
//! [`start`].
//!
//! async-std is discontinued upstream (RUSTSEC-2025-0052); `frontend-smol` is the one we
//! recommend. This crate is kept to a runtime adapter so that carrying it costs little.
//!
//! [async-std]: https://docs.rs/async-std

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use async_std::net::{TcpListener, TcpStream};
use async_std::task;

pub use proto::Config;
pub use proto::config::ConfigError;

/// A running server on async-std.
pub type Server = proto::io::Server<AsyncStd>;

/// async-std's global runtime.
#[derive(Clone, Copy, Debug, Default)]
pub struct AsyncStd;

impl proto::io::Runtime for AsyncStd {
    type Listener = TcpListener;
    type Tcp = TcpStream;

    fn listener(&self, listener: std::net::TcpListener) -> io::Result<Self::Listener> {
        Ok(TcpListener::from(listener))
    }

    async fn accept(&self, listener: &Self::Listener) -> io::Result<(Self::Tcp, SocketAddr)> {
        let (stream, peer) = listener.accept().await?;
        stream.set_nodelay(true)?;
        Ok((stream, peer))
    }

    async fn readable(&self, stream: &Self::Tcp) -> io::Result<()> {
        // async-std has no readiness call; peeking one byte waits the same way.
        stream.peek(&mut [0u8; 1]).await.map(drop)
    }

    async fn sleep_until(&self, deadline: Instant) {
        task::sleep(deadline.saturating_duration_since(Instant::now())).await;
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
