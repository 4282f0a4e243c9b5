//! The two things a frontend provides: its executor and its thread pool for blocking
//! code. Sockets and timers come from async-io, the reactor both smol and async-std run
//! on (as quinn's former `async_io` runtime did for both); so each frontend is a
//! [`Runtime`] of a few lines.

use std::future::Future;
use std::io;
use std::net::TcpStream;
use std::pin::Pin;
use std::task::{Context, Poll};

use async_io::Async;
use futures_io::{AsyncRead, AsyncWrite};

/// An async runtime, as the server needs it.
pub trait Runtime: Clone + Send + Sync + Unpin + 'static {
    /// Starts `n` threads to run tasks. Only the first call counts: a process runs one
    /// pool, and a task spawned before any call starts the default count.
    fn start_threads(&self, n: usize);

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
    /// Ready once a read would not block. Plain TCP waits without a buffer, which is
    /// what keeps idle sessions small; TLS is ready at once and lets the read wait.
    fn poll_readable(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Plain TCP, with bytes read ahead (after a PROXY header) served first.
#[derive(Debug)]
pub struct Plain {
    /// The stream.
    pub tcp: Async<TcpStream>,
    /// Bytes already read from `tcp` that belong to what follows, never empty. Boxed:
    /// only a PROXY header's session may have any, and every idle session keeps this.
    pub pending: Option<Box<Vec<u8>>>,
}

impl Plain {
    /// Wraps an accepted stream.
    pub fn new(tcp: Async<TcpStream>) -> Self {
        Self { tcp, pending: None }
    }
}

impl Transport for Plain {
    fn poll_readable(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.pending.is_none() {
            self.tcp.poll_readable(cx)
        } else {
            Poll::Ready(Ok(()))
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Transport for futures_rustls::server::TlsStream<S> {}

impl AsyncRead for Plain {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        if let Some(pending) = &mut self.pending {
            let n = buf.len().min(pending.len());
            buf[..n].copy_from_slice(&pending[..n]);
            pending.drain(..n);
            if pending.is_empty() {
                self.pending = None;
            }
            return Poll::Ready(Ok(n));
        }
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Plain {
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
