//! One accepted connection from start to end: the `GM_MAX_CLIENTS` gate, the optional
//! PROXY header, the per-client limit, the DNS blocklists, the optional implicit-TLS
//! handshake, the pump, STARTTLS, and the log line at the end.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use futures_rustls::server::TlsStream;

use super::deliver::Deliver;
use super::dnsbl::Decision;
use super::filter::milter::Milters;
use super::observe::{self, metrics};
use super::pump::{self, Outcome};
use super::runtime::{Plain, Runtime, Transport};
use super::shared::{ActiveGuard, ClientSlot, Current, Shared, instance};
use super::time::{Interrupt, bounded};
use crate::conn::{Accept, CloseReason, Connection};
use crate::delivery::TlsInfo;

/// Takes a connection the accept loop of an SMTP listener accepted. Over
/// `GM_MAX_CLIENTS`, it is answered `421 4.3.2` and closed at once, so waiting clients
/// never pile up unanswered; else it is served on a task of its own.
pub(crate) fn admit<R: Runtime, D: Deliver>(
    current: &Current<R, D>,
    tcp: async_io::Async<std::net::TcpStream>,
    peer: SocketAddr,
    implicit_tls: bool,
) {
    let shared = current.get();
    let n = shared
        .active
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        + 1;
    let guard = ActiveGuard::new(Arc::clone(&shared));
    if n > shared.cfg.max_clients {
        metrics().connection("busy");
        shared.rt.spawn(async move {
            let plain = Plain::new(tcp);
            refuse(&guard.0, plain, peer, CloseReason::Busy).await;
            drop(guard);
        });
    } else {
        // No wrapping `async` block: it would hold the session future twice. The
        // accepted socket comes boxed: a future keeps its arguments to its end, and these
        // are only needed until the greeting.
        let accepted = Box::new((tcp, peer, implicit_tls));
        shared.rt.spawn(serve(Arc::clone(&shared), accepted, guard));
    }
}

/// Serves one connection. `implicit_tls` is set for the RFC 8314 listener.
///
/// Everything before the greeting happens in [`open`], boxed, so that what the task of a
/// session keeps while it waits for its client (what every idle session costs) is only
/// the session itself: its stream, its client slot, its connection and the pump. A plain
/// function around one `async move` block: an `async fn` would keep its arguments twice.
#[allow(
    clippy::manual_async_fn,
    reason = "an async fn keeps its arguments twice"
)]
fn serve<R: Runtime, D: Deliver>(
    shared: Arc<Shared<R, D>>,
    accepted: Box<(async_io::Async<std::net::TcpStream>, SocketAddr, bool)>,
    active: ActiveGuard<R, D>,
) -> impl Future<Output = ()> + Send + 'static {
    async move {
        let started = Instant::now();
        let (tcp, peer, implicit_tls) = *accepted;
        let Some(Opened {
            mut plain,
            mut slot,
            mut conn,
            mut milters,
        }) = Box::pin(open(&shared, tcp, peer, started, implicit_tls)).await
        else {
            return;
        };
        let result = match pump::run(&shared, &mut conn, &mut plain, &mut slot, &mut milters).await
        {
            Ok(Outcome::StartTls) => {
                Box::pin(start_tls(
                    &shared,
                    &mut conn,
                    plain,
                    &mut slot,
                    &mut milters,
                ))
                .await
            }
            other => other,
        };
        let peer = SocketAddr::new(conn.client_ip(), 0);
        Box::pin(finish(
            milters,
            conn.id(),
            peer,
            started,
            result,
            Some(conn),
        ))
        .await;
        // Held to the end: the session counts against GM_MAX_CLIENTS until its log line.
        drop(active);
    }
}

/// A plaintext session ready for its pump: the greeting (or the refusal that replaces
/// it) is queued in `conn`.
struct Opened<R: Runtime, D: Deliver> {
    plain: Plain,
    slot: ClientSlot<R, D>,
    conn: Connection,
    milters: Option<Box<Milters>>,
}

/// The start of a session: the PROXY header, the per-client limit, the DNS blocklists
/// and the milters' connect step; then the connection is made, or refused. Sessions
/// refused here, and implicit-TLS sessions, are served to their end here (`None`).
async fn open<R: Runtime, D: Deliver>(
    shared: &Arc<Shared<R, D>>,
    tcp: async_io::Async<std::net::TcpStream>,
    peer: SocketAddr,
    started: Instant,
    implicit_tls: bool,
) -> Option<Opened<R, D>> {
    let id = shared.next_id();
    let mut plain = Plain::new(tcp);
    let header = if shared.cfg.proxy_protocol {
        super::proxy::read_header(shared, &mut plain, peer).await
    } else {
        Ok(peer)
    };
    let peer = match header {
        Ok(p) => p,
        Err(e) => {
            metrics().connection("bad_proxy_header");
            tracing::info!(conn = id, client = %peer.ip(), error = %e, "connection refused: bad PROXY header");
            return None;
        }
    };
    // The client counts against GM_MAX_CLIENTS_PER_IP from now on, unless it is a trusted
    // proxy: then the client it names with XCLIENT does.
    let mut slot = ClientSlot::new(Arc::clone(shared));
    if !shared.cfg.is_trusted_proxy(peer.ip()) && !slot.move_to(peer.ip()) {
        drop(slot);
        metrics().connection("client_limit");
        refuse(shared, plain, peer, CloseReason::ClientLimit).await;
        return None;
    }
    metrics().connection("served");
    let accept = Accept {
        peer,
        id,
        active: shared.active(),
        wall: SystemTime::now(),
        instance: instance(),
        tls: None,
    };
    // The DNS blocklists are asked about the client before it is greeted (a block under
    // GSMTP_DNSBL_ACTION=reject is the answer instead of the greeting)...
    let screened = match &shared.dnsbl {
        Some(screen) => Some(Box::new(Box::pin(screen.decide(id, peer.ip())).await)),
        None => None,
    };
    // ...and the milters hear of it, and may refuse it.
    let (mut milters, refused) = match screened.as_deref().and_then(Decision::refused_now) {
        Some(blocked) => (None, Some(blocked)),
        None => match Box::pin(Milters::open(&shared.rt, &shared.cfg, peer)).await {
            Some((m, answer)) => (Some(Box::new(m)), answer.err()),
            None => (None, None),
        },
    };
    let conn = match refused {
        Some(reply) => {
            Connection::refuse_with(Arc::clone(&shared.cfg), Instant::now(), accept, &reply)
        }
        None if implicit_tls => {
            let session =
                serve_implicit_tls(shared, plain, accept, &mut slot, (&mut milters, screened));
            let (result, conn) = Box::pin(session).await;
            Box::pin(finish(milters, id, peer, started, result, conn)).await;
            return None;
        }
        None => {
            let mut conn = Connection::new(Arc::clone(&shared.cfg), Instant::now(), accept);
            if let Some(d) = screened {
                d.apply(&mut conn);
            }
            conn
        }
    };
    Some(Opened {
        plain,
        slot,
        conn,
        milters,
    })
}

/// A session's end: the milters told, the log line of its close (`id` and `peer` name
/// the connection when `conn` is `None`: its implicit-TLS handshake did not complete).
async fn finish(
    mut milters: Option<Box<Milters>>,
    id: u64,
    peer: SocketAddr,
    started: Instant,
    result: io::Result<Outcome>,
    conn: Option<Connection>,
) {
    if let Some(m) = &mut milters {
        Box::pin(m.quit()).await;
    }
    let (reason, error) = match &result {
        Ok(Outcome::Closed(reason)) => (Some(*reason), None),
        Ok(Outcome::StartTls) => (None, None),
        Err(e) => (None, Some(e)),
    };
    match conn {
        Some(conn) => observe::closed(&conn, started.elapsed(), reason, error),
        // The implicit-TLS handshake did not complete.
        None => observe::closed_before_tls(id, peer, started.elapsed(), error),
    }
}

/// The RFC 3207 upgrade: the handshake (bounded by the idle deadline), then the pump
/// again on the TLS stream with a fresh session.
async fn start_tls<R: Runtime, D: Deliver>(
    shared: &Shared<R, D>,
    conn: &mut Connection,
    plain: Plain,
    slot: &mut ClientSlot<R, D>,
    milters: &mut Option<Box<Milters>>,
) -> io::Result<Outcome> {
    let Some(acceptor) = shared.tls.clone() else {
        return Err(io::Error::other("STARTTLS accepted without a certificate"));
    };
    let handshake = bounded(conn.poll_timeout(), &shared.force, acceptor.accept(plain)).await;
    count_handshake(&handshake);
    match handshake? {
        Ok(mut tls) => {
            conn.handle_tls_established(Instant::now(), tls_info(&tls));
            pump::run(shared, conn, &mut tls, slot, milters).await
        }
        Err(Interrupt::Deadline) => Ok(Outcome::Closed(CloseReason::Timeout)),
        Err(Interrupt::Stop) => Ok(Outcome::Closed(CloseReason::Shutdown)),
    }
}

/// An implicit-TLS session (RFC 8314): the handshake comes first, then the greeting.
/// `screened` is what the DNS blocklists said of the client.
async fn serve_implicit_tls<R: Runtime, D: Deliver>(
    shared: &Shared<R, D>,
    plain: Plain,
    mut accept: Accept,
    slot: &mut ClientSlot<R, D>,
    (milters, screened): (&mut Option<Box<Milters>>, Option<Box<Decision>>),
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
    if let Some(d) = screened {
        d.apply(&mut conn);
    }
    let result = pump::run(shared, &mut conn, &mut tls, slot, milters).await;
    (result, Some(conn))
}

/// Counts a TLS handshake by the version it agreed on, or as `failed`.
fn count_handshake<S: Transport, I>(handshake: &io::Result<Result<TlsStream<S>, I>>) {
    let version = match handshake {
        Ok(Ok(tls)) => tls_info(tls).version,
        _ => "failed".into(),
    };
    metrics().handshake(&version);
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

/// Answers a connection with `421` and closes it: `why` is [`CloseReason::Busy`] over
/// `GM_MAX_CLIENTS` (`4.3.2`), [`CloseReason::ClientLimit`] over `GM_MAX_CLIENTS_PER_IP`
/// (`4.7.0`).
async fn refuse<R: Runtime, D: Deliver>(
    shared: &Arc<Shared<R, D>>,
    mut plain: Plain,
    peer: SocketAddr,
    why: CloseReason,
) {
    let accept = Accept {
        peer,
        id: 0,
        active: shared.active(),
        wall: SystemTime::now(),
        instance: instance(),
        tls: None,
    };
    let mut conn = Connection::refuse(Arc::clone(&shared.cfg), Instant::now(), accept, why);
    let mut slot = ClientSlot::new(Arc::clone(shared));
    let _ = pump::run(shared, &mut conn, &mut plain, &mut slot, &mut None).await;
    tracing::info!(client = %peer.ip(), reason = %why, "connection refused");
}
