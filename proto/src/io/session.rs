//! One accepted connection from start to end: the optional PROXY header, the optional
//! implicit-TLS handshake, the pump, STARTTLS, and the log line at the end.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use futures_rustls::server::TlsStream;

use super::drive::{Interrupt, Outcome, bounded, drive};
use super::runtime::{Plain, Runtime, Transport};
use super::server::{ActiveGuard, Shared};
use crate::conn::{Accept, CloseReason, Connection};
use crate::trace::TlsInfo;

/// Serves one connection. `implicit_tls` is set for the RFC 8314 listener.
pub(crate) async fn serve<R: Runtime>(
    shared: Arc<Shared<R>>,
    tcp: async_io::Async<std::net::TcpStream>,
    peer: SocketAddr,
    implicit_tls: bool,
    _active: ActiveGuard<R>,
) {
    let started = Instant::now();
    let id = shared.next_id();
    let mut plain = Plain::new(tcp);
    let peer = match super::proxy::read_header(&shared, &mut plain, peer).await {
        Ok(p) => p,
        Err(e) => {
            tracing::info!(%peer, id, error = %e, "connection refused: bad PROXY header");
            return;
        }
    };
    let fallback_ip = peer.ip();
    let accept = Accept {
        peer,
        id,
        active: shared.active(),
        wall: SystemTime::now(),
        tls: None,
    };
    let (result, conn) = if implicit_tls {
        Box::pin(serve_implicit_tls(&shared, plain, accept)).await
    } else {
        let mut conn = Connection::new(Arc::clone(&shared.cfg), Instant::now(), accept);
        let result = match drive(&shared, &mut conn, &mut plain).await {
            Ok(Outcome::StartTls) => Box::pin(start_tls(&shared, &mut conn, plain)).await,
            other => other,
        };
        (result, Some(conn))
    };
    let secs = started.elapsed().as_secs_f64();
    let (tls, messages, bytes) = conn.as_ref().map_or((implicit_tls, 0, 0), |c| {
        (c.is_tls(), c.stats().messages, c.stats().bytes_in)
    });
    let ip = conn
        .as_ref()
        .map_or_else(|| fallback_ip, Connection::client_ip);
    match result {
        Ok(Outcome::Closed(reason)) => {
            tracing::info!(peer = %ip, id, tls, messages, bytes, secs, ?reason, "connection closed");
        }
        Ok(Outcome::StartTls) => {}
        Err(e) => {
            tracing::info!(peer = %ip, id, tls, messages, bytes, secs, error = %e, "connection lost")
        }
    }
}

/// The RFC 3207 upgrade: the handshake (bounded by the idle deadline), then the pump
/// again on the TLS stream with a fresh session.
async fn start_tls<R: Runtime>(
    shared: &Shared<R>,
    conn: &mut Connection,
    plain: Plain,
) -> io::Result<Outcome> {
    let Some(acceptor) = shared.tls.clone() else {
        return Err(io::Error::other("STARTTLS accepted without a certificate"));
    };
    match bounded(conn.poll_timeout(), &shared.force, acceptor.accept(plain)).await? {
        Ok(mut tls) => {
            conn.handle_tls_established(Instant::now(), tls_info(&tls));
            drive(shared, conn, &mut tls).await
        }
        Err(Interrupt::Deadline) => Ok(Outcome::Closed(CloseReason::Timeout)),
        Err(Interrupt::Stop) => Ok(Outcome::Closed(CloseReason::Shutdown)),
    }
}

/// An implicit-TLS session (RFC 8314): the handshake comes first, then the greeting.
async fn serve_implicit_tls<R: Runtime>(
    shared: &Shared<R>,
    plain: Plain,
    mut accept: Accept,
) -> (io::Result<Outcome>, Option<Connection>) {
    let Some(acceptor) = shared.tls.clone() else {
        return (
            Err(io::Error::other("implicit TLS without a certificate")),
            None,
        );
    };
    let deadline = Instant::now() + shared.cfg.timeout;
    let mut tls = match bounded(Some(deadline), &shared.force, acceptor.accept(plain)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(_)) => return (Ok(Outcome::Closed(CloseReason::Timeout)), None),
        Err(e) => return (Err(e), None),
    };
    accept.tls = Some(tls_info(&tls));
    let mut conn = Connection::new(Arc::clone(&shared.cfg), Instant::now(), accept);
    let result = drive(shared, &mut conn, &mut tls).await;
    (result, Some(conn))
}

/// The negotiated version and cipher suite, named as OpenSSL and Postfix name them.
fn tls_info<S: Transport>(tls: &TlsStream<S>) -> TlsInfo {
    let (_, server) = tls.get_ref();
    let version = match server.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_string(),
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_string(),
        Some(v) => format!("{v:?}"),
        None => "TLS".to_string(),
    };
    let cipher = server
        .negotiated_cipher_suite()
        .map(|s| format!("{:?}", s.suite()))
        .unwrap_or_default();
    TlsInfo { version, cipher }
}
