//! Reading a PROXY protocol header (v1 or v2) before the session starts.

use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use futures_lite::io::AsyncReadExt;

use super::deliver::Deliver;
use super::runtime::{Plain, Runtime};
use super::shared::Shared;
use super::time::bounded;
use crate::proxy::{self, Header};

/// With `GSMTP_PROXY_PROTOCOL=Y`, reads the header and returns the client it names; bytes
/// read past it stay in `plain.pending`. Without it, returns `peer` untouched. Headers are
/// taken only from trusted proxies; anything else is an error and the caller closes.
pub(crate) async fn read_header<R: Runtime, D: Deliver>(
    shared: &Shared<R, D>,
    plain: &mut Plain,
    peer: SocketAddr,
) -> io::Result<SocketAddr> {
    if !shared.cfg.proxy_protocol {
        return Ok(peer);
    }
    if !shared.cfg.is_trusted_proxy(peer.ip()) {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "PROXY header expected from an untrusted address",
        ));
    }
    let deadline = Instant::now() + shared.cfg.timeout;
    let mut buf = vec![0u8; proxy::V2_MAX];
    let mut filled = 0;
    loop {
        match proxy::parse(&buf[..filled]) {
            Ok(Header::Complete { len, source }) => {
                plain.pending = (filled > len).then(|| Box::new(buf[len..filled].to_vec()));
                return Ok(source.unwrap_or(peer));
            }
            Ok(Header::Incomplete) if filled < buf.len() => {}
            Ok(Header::Incomplete) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    proxy::Error::Malformed,
                ));
            }
            Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
        }
        let read = plain.tcp.read(&mut buf[filled..]);
        match bounded(Some(deadline), &shared.force, read).await? {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => filled += n,
            Err(_) => return Err(io::ErrorKind::TimedOut.into()),
        }
    }
}
