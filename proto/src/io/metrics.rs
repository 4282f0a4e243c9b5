//! `GSMTP_METRICS_LISTEN`: `/metrics` in the Prometheus text format and `/healthz` (`200`
//! while accepting, `503` once shutdown began or while the destination is failing, see
//! the README's Monitoring), over HTTP/1.1 (hyper).
//!
//! The counters themselves are kept in `observe.rs`.

use std::convert::Infallible;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

use super::observe::metrics;
use super::time::{Signal, with_timeout};

/// How long one metrics request (and its connection) may take.
const REQUEST_LIMIT: Duration = Duration::from_secs(10);

/// Answers one connection's requests for `/metrics` and `/healthz`, within
/// [`REQUEST_LIMIT`]. `stopping` fires when shutdown begins: `/healthz` answers `503`
/// from then on (the listener keeps accepting until the process ends, for a load
/// balancer to see it drain).
pub(crate) async fn answer(tcp: async_io::Async<TcpStream>, stopping: Signal) {
    let service = hyper::service::service_fn(move |req| {
        let stopping = stopping.clone();
        async move { Ok::<_, Infallible>(respond(&req, &stopping)) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(smol_hyper::rt::FuturesIo::new(tcp), service);
    let _ = with_timeout(Instant::now() + REQUEST_LIMIT, conn).await;
}

fn respond(req: &Request<Incoming>, stopping: &Signal) -> Response<String> {
    let (status, kind, body) = match (req.method(), req.uri().path()) {
        (&hyper::Method::GET, "/metrics") => {
            (StatusCode::OK, prometheus::TEXT_FORMAT, metrics().render())
        }
        (&hyper::Method::GET, "/healthz") if stopping.fired() => (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "shutting down\n".to_string(),
        ),
        (&hyper::Method::GET, "/healthz") => match metrics().health.failing(Instant::now()) {
            Some(why) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                format!("{}\n", crate::syntax::escape_for_log(why.as_bytes())),
            ),
            None => (StatusCode::OK, "text/plain", "ok\n".to_string()),
        },
        (&hyper::Method::GET, _) => (StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
        _ => (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".into(),
        ),
    };
    Response::builder()
        .status(status)
        .header(hyper::header::CONTENT_TYPE, kind)
        .body(body)
        .expect("a valid response")
}
