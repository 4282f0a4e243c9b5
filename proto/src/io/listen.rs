//! Listening: binding an address, and the one accept loop every listener runs (SMTP,
//! implicit TLS, the `auth_http` service, `/metrics`).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use async_io::Async;
use futures_lite::future;

use super::time::Signal;
use crate::config::ConfigError;

/// Binds a listener with the kernel's largest accept backlog (std's is 128, too few for
/// bursts of connections) and `SO_REUSEADDR`, as std does.
pub(crate) fn bind(addr: SocketAddr, key: &str) -> Result<TcpListener, ConfigError> {
    use std::os::fd::AsRawFd;

    use nix::sys::socket::{
        self, AddressFamily, Backlog, SockFlag, SockType, SockaddrStorage, sockopt,
    };
    let fail = |e: nix::Error| ConfigError {
        key: key.into(),
        message: format!("cannot listen on {addr}: {e}"),
    };
    let family = if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd =
        socket::socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).map_err(fail)?;
    socket::setsockopt(&fd, sockopt::ReuseAddr, &true).map_err(fail)?;
    socket::bind(fd.as_raw_fd(), &SockaddrStorage::from(addr)).map_err(fail)?;
    socket::listen(&fd, Backlog::MAXALLOWABLE).map_err(fail)?;
    Ok(TcpListener::from(fd))
}

/// Accepts on `listener` until `stopping` fires, handing each connection, with Nagle's
/// algorithm off (replies are written whole), to `handle`. A failed accept (out of
/// descriptors, most likely) is logged and backed off from, instead of spun on.
pub(crate) async fn accept_loop(
    listener: Async<TcpListener>,
    stopping: Signal,
    what: &'static str,
    mut handle: impl FnMut(Async<TcpStream>, SocketAddr),
) {
    loop {
        let next = future::or(async { Some(listener.accept().await) }, async {
            stopping.wait().await;
            None
        });
        match next.await {
            None => break,
            Some(Ok((tcp, peer))) => {
                let _ = tcp.get_ref().set_nodelay(true);
                handle(tcp, peer);
            }
            Some(Err(e)) => {
                tracing::warn!(listener = what, error = %e, "accept failed");
                async_io::Timer::after(Duration::from_millis(50)).await;
            }
        }
    }
}

/// `l`, registered with the reactor; an error names `key`.
pub(crate) fn reactor(l: TcpListener, key: &str) -> Result<Async<TcpListener>, ConfigError> {
    Async::new(l).map_err(|e| ConfigError {
        key: key.into(),
        message: e.to_string(),
    })
}

/// Lifts the soft limit on open files to the hard limit, so `GM_MAX_CLIENTS` is not
/// capped by a small default.
pub(crate) fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
    {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}
