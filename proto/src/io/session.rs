//! One accepted connection from start to end: the optional PROXY header, the optional
//! implicit-TLS handshake, the pump, STARTTLS, and the log line at the end.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use futures_rustls::server::TlsStream;

use super::deliver::Deliver;
use super::drive::{Interrupt, Outcome, bounded, drive};
use super::runtime::{Plain, Runtime, Transport};
use super::server::{ActiveGuard, ClientSlot, Shared, instance, refuse};
use crate::conn::{Accept, CloseReason, Connection};
use crate::delivery::TlsInfo;

/// Serves one connection. `implicit_tls` is set for the RFC 8314 listener.
pub(crate) async fn serve<R: Runtime, D: Deliver>(
    shared: Arc<Shared<R, D>>,
    tcp: async_io::Async<std::net::TcpStream>,
    peer: SocketAddr,
    implicit_tls: bool,
    _active: ActiveGuard<R, D>,
) {
    let started = Instant::now();
    let id = shared.next_id();
    let mut plain = Plain::new(tcp);
    let metrics = super::metrics::metrics();
    let peer = match super::proxy::read_header(&shared, &mut plain, peer).await {
        Ok(p) => p,
        Err(e) => {
            metrics
                .connections
                .with_label_values(&["bad_proxy_header"])
                .inc();
            tracing::info!(conn = id, client = %peer.ip(), error = %e, "connection refused: bad PROXY header");
            return;
        }
    };
    // The client counts against GM_MAX_CLIENTS_PER_IP from now on, unless it is a trusted
    // proxy: then the client it names with XCLIENT does.
    let mut slot = ClientSlot::new(Arc::clone(&shared));
    if !shared.cfg.is_trusted_proxy(peer.ip()) && !slot.move_to(peer.ip()) {
        drop(slot);
        metrics
            .connections
            .with_label_values(&["client_limit"])
            .inc();
        metrics
            .refusals
            .with_label_values(&["client_limit", "421"])
            .inc();
        return refuse(&shared, plain, peer, CloseReason::ClientLimit).await;
    }
    metrics.connections.with_label_values(&["served"]).inc();
    let accept = Accept {
        peer,
        id,
        active: shared.active(),
        wall: SystemTime::now(),
        instance: instance(),
        tls: None,
    };
    let (result, conn) = if implicit_tls {
        Box::pin(serve_implicit_tls(&shared, plain, accept, &mut slot)).await
    } else {
        let mut conn = Connection::new(Arc::clone(&shared.cfg), Instant::now(), accept);
        let result = match drive(&shared, &mut conn, &mut plain, &mut slot).await {
            Ok(Outcome::StartTls) => {
                Box::pin(start_tls(&shared, &mut conn, plain, &mut slot)).await
            }
            other => other,
        };
        (result, Some(conn))
    };
    let secs = format!("{:.2}", started.elapsed().as_secs_f64());
    let Some(conn) = conn else {
        // The implicit-TLS handshake did not complete.
        let error = result.err().map(tracing::field::display);
        tracing::info!(conn = id, client = %peer.ip(), %secs, error, "connection closed before the TLS handshake completed");
        return;
    };
    let stats = conn.stats();
    let (reason, error) = match &result {
        Ok(Outcome::Closed(reason)) => (Some(reason.as_str()), None),
        Ok(Outcome::StartTls) => (None, None),
        Err(e) => (None, Some(e)),
    };
    metrics
        .closed
        .with_label_values(&[reason.unwrap_or("error")])
        .inc();
    if let Ok(Outcome::Closed(r @ (CloseReason::Timeout | CloseReason::TooManyErrors))) = &result {
        metrics
            .refusals
            .with_label_values(&[r.as_str(), "421"])
            .inc();
    }
    tracing::info!(
        conn = id,
        client = %conn.client_ip(),
        client_name = %conn.client_name().unwrap_or("unknown"),
        helo = %conn.helo().unwrap_or("-"),
        tls = %conn.tls().map_or("no", |t| t.version.as_str()),
        cipher = conn.tls().map(|t| tracing::field::display(&t.cipher)),
        messages = stats.messages,
        refusals = stats.refusals,
        commands = stats.commands,
        bytes = stats.bytes_in,
        %secs,
        reason = reason.map(tracing::field::display),
        error = error.map(tracing::field::display),
        "{}", if error.is_some() { "connection lost" } else { "connection closed" }
    );
}

/// The RFC 3207 upgrade: the handshake (bounded by the idle deadline), then the pump
/// again on the TLS stream with a fresh session.
async fn start_tls<R: Runtime, D: Deliver>(
    shared: &Shared<R, D>,
    conn: &mut Connection,
    plain: Plain,
    slot: &mut ClientSlot<R, D>,
) -> io::Result<Outcome> {
    let Some(acceptor) = shared.tls.clone() else {
        return Err(io::Error::other("STARTTLS accepted without a certificate"));
    };
    let handshake = bounded(conn.poll_timeout(), &shared.force, acceptor.accept(plain)).await;
    count_handshake(&handshake);
    match handshake? {
        Ok(mut tls) => {
            conn.handle_tls_established(Instant::now(), tls_info(&tls));
            drive(shared, conn, &mut tls, slot).await
        }
        Err(Interrupt::Deadline) => Ok(Outcome::Closed(CloseReason::Timeout)),
        Err(Interrupt::Stop) => Ok(Outcome::Closed(CloseReason::Shutdown)),
    }
}

/// An implicit-TLS session (RFC 8314): the handshake comes first, then the greeting.
async fn serve_implicit_tls<R: Runtime, D: Deliver>(
    shared: &Shared<R, D>,
    plain: Plain,
    mut accept: Accept,
    slot: &mut ClientSlot<R, D>,
) -> (io::Result<Outcome>, Option<Connection>) {
    let Some(acceptor) = shared.tls.clone() else {
        return (
            Err(io::Error::other("implicit TLS without a certificate")),
            None,
        );
    };
    let deadline = Instant::now() + shared.cfg.timeout;
    let handshake = bounded(Some(deadline), &shared.force, acceptor.accept(plain)).await;
    count_handshake(&handshake);
    let mut tls = match handshake {
        Ok(Ok(tls)) => tls,
        Ok(Err(_)) => return (Err(io::ErrorKind::TimedOut.into()), None),
        Err(e) => return (Err(e), None),
    };
    accept.tls = Some(tls_info(&tls));
    let mut conn = Connection::new(Arc::clone(&shared.cfg), Instant::now(), accept);
    let result = drive(shared, &mut conn, &mut tls, slot).await;
    (result, Some(conn))
}

/// Counts a TLS handshake by the version it agreed on, or as `failed`.
fn count_handshake<S: Transport, I>(handshake: &io::Result<Result<TlsStream<S>, I>>) {
    let version = match handshake {
        Ok(Ok(tls)) => tls_info(tls).version,
        _ => "failed".into(),
    };
    super::metrics::metrics()
        .tls
        .with_label_values(&[&version])
        .inc();
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
        .map(|s| crate::trace::openssl_cipher_name(&format!("{:?}", s.suite())))
        .unwrap_or_default();
    TlsInfo { version, cipher }
}
