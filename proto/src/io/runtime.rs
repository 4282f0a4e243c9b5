//! The few things a frontend provides: its runtime's sockets, timers, tasks and thread
//! pool. Modelled on quinn's `Runtime` trait; each frontend implements it in about
//! forty lines.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use futures_io::{AsyncRead, AsyncWrite};

/// An async runtime, as the server needs it.
pub trait Runtime: Clone + Send + Sync + Unpin + 'static {
    /// A listening TCP socket.
    type Listener: Send + Sync + 'static;
    /// An accepted TCP stream.
    type Tcp: AsyncRead + AsyncWrite + Unpin + Send + Sync + 'static;

    /// Wraps a bound std listener (already listening, any mode).
    fn listener(&self, listener: std::net::TcpListener) -> io::Result<Self::Listener>;

    /// Accepts the next connection.
    fn accept<'a>(
        &'a self,
        listener: &'a Self::Listener,
    ) -> impl Future<Output = io::Result<(Self::Tcp, SocketAddr)>> + Send + 'a;

    /// Resolves once `stream` has input (or end of input, or an error) to read, without
    /// holding a read buffer: this is what keeps idle sessions small.
    fn readable<'a>(
        &'a self,
        stream: &'a Self::Tcp,
    ) -> impl Future<Output = io::Result<()>> + Send + 'a;

    /// Resolves at `deadline`.
    fn sleep_until(&self, deadline: Instant) -> impl Future<Output = ()> + Send;

    /// Runs a task in the background.
    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static);

    /// Runs blocking code on the runtime's thread pool.
    fn unblock<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> impl Future<Output = T> + Send + 'static;
}

/// A stream the pump reads from and writes to: plain TCP, or TLS over it.
pub trait Transport: AsyncRead + AsyncWrite + Unpin + Send {
    /// Resolves once a read would not block. Plain TCP waits without a buffer; TLS
    /// returns at once and lets the read wait.
    fn readable(&mut self) -> impl Future<Output = io::Result<()>> + Send {
        std::future::ready(Ok(()))
    }
}

/// Plain TCP from runtime `R`, with bytes read ahead (after a PROXY header) served first.
#[derive(Debug)]
pub struct Plain<R: Runtime> {
    /// The runtime, for [`Runtime::readable`].
    pub rt: R,
    /// The stream.
    pub tcp: R::Tcp,
    /// Bytes already read from `tcp` that belong to what follows.
    pub pending: Vec<u8>,
}

impl<R: Runtime> Plain<R> {
    /// Wraps an accepted stream.
    pub fn new(rt: R, tcp: R::Tcp) -> Self {
        Self {
            rt,
            tcp,
            pending: Vec::new(),
        }
    }
}

impl<R: Runtime> Transport for Plain<R> {
    async fn readable(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            self.rt.readable(&self.tcp).await
        } else {
            Ok(())
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Transport for futures_rustls::server::TlsStream<S> {}

impl<R: Runtime> AsyncRead for Plain<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        if !self.pending.is_empty() {
            let n = buf.len().min(self.pending.len());
            buf[..n].copy_from_slice(&self.pending[..n]);
            self.pending.drain(..n);
            return Poll::Ready(Ok(n));
        }
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl<R: Runtime> AsyncWrite for Plain<R> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_close(cx)
    }
}
