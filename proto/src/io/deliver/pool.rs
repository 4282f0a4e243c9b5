//! Connections to one server, for the destinations that keep them (the HTTP client, the
//! LMTP link): made by [`connect`], kept alive between uses in a [`Pool`].

use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Mutex;

use async_io::Async;

use crate::io::runtime::Runtime;

/// Connections kept alive between uses, at most as many as given.
#[derive(Debug)]
pub(crate) struct Pool<T> {
    idle: Mutex<Vec<T>>,
    max: usize,
}

impl<T> Pool<T> {
    /// A pool that keeps at most `max` connections.
    pub(crate) fn new(max: usize) -> Self {
        Self {
            idle: Mutex::new(Vec::new()),
            max,
        }
    }

    /// The most recently kept connection that is still `usable`; the others met on
    /// the way are dropped.
    pub(crate) fn take(&self, usable: impl Fn(&T) -> bool) -> Option<T> {
        let mut idle = self.idle.lock().ok()?;
        while let Some(c) = idle.pop() {
            if usable(&c) {
                return Some(c);
            }
        }
        None
    }

    /// Keeps `c` for the next use, unless the pool is full.
    pub(crate) fn put(&self, c: T) {
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < self.max
        {
            idle.push(c);
        }
    }
}

/// A TCP connection to `to` (a `host:port`, the name resolved on `rt`'s thread pool),
/// trying each of its addresses in turn, with Nagle's algorithm off (requests and
/// commands are written whole).
pub(crate) async fn connect<R: Runtime>(
    rt: &R,
    to: impl ToSocketAddrs + Send + 'static,
) -> io::Result<Async<TcpStream>> {
    let addrs: Vec<SocketAddr> = rt
        .unblock(move || to.to_socket_addrs().map(Iterator::collect::<Vec<_>>))
        .await?;
    let mut last = io::Error::other("no address for the server");
    for addr in addrs {
        match Async::<TcpStream>::connect(addr).await {
            Ok(tcp) => {
                let _ = tcp.get_ref().set_nodelay(true);
                return Ok(tcp);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}
