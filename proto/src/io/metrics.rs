//! `GSMTP_METRICS_LISTEN`: `/metrics` in the Prometheus text format and `/healthz` (`200`
//! while accepting, `503` once shutdown began or while the destination is failing, see
//! the README's Monitoring), over HTTP/1.1 (hyper).
//!
//! The counters are one set per process ([`metrics`]), like the log: the sessions, the
//! accept loops and the destinations add to them wherever they are.

use std::convert::Infallible;
use std::net::TcpListener;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

use super::drive::{Signal, bounded};
use super::runtime::Runtime;
use crate::delivery::{DeliveryError, ErrorKind};
use crate::reply::ReplyBuf;

/// Every series the server keeps.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Sessions open now.
    pub(crate) open: IntGauge,
    /// Connections accepted, by outcome: `served`, `busy` (over `GM_MAX_CLIENTS`),
    /// `client_limit` (over `GM_MAX_CLIENTS_PER_IP`), `bad_proxy_header`.
    pub(crate) connections: IntCounterVec,
    /// Sessions ended, by reason (`quit`, `eof`, `timeout`, ...).
    pub(crate) closed: IntCounterVec,
    /// Replies `4xx` and `5xx`, by reason and code.
    pub(crate) refusals: IntCounterVec,
    /// Messages answered at their end, by reply code (`250`, `451`, `552`, ...).
    pub(crate) messages: IntCounterVec,
    /// Octets received from clients.
    pub(crate) received: IntCounter,
    /// How long the destination took to commit a message, by destination.
    pub(crate) delivery: HistogramVec,
    /// Messages per Maildir group commit (one sync for the batch).
    pub(crate) batch: Histogram,
    /// TLS handshakes, by version (`TLSv1.2`, `TLSv1.3`) or `failed`.
    pub(crate) tls: IntCounterVec,
    /// Messages the destination did not commit, by destination and error.
    pub(crate) destination_errors: IntCounterVec,
    /// Whether the destination takes mail, for `/healthz`.
    pub(crate) health: Health,
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

impl Metrics {
    fn new() -> Self {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("a valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("registered once");
            c
        };
        let open =
            IntGauge::new("smtp_sessions_open", "SMTP sessions open now.").expect("a valid metric");
        registry
            .register(Box::new(open.clone()))
            .expect("registered once");
        let received = IntCounter::new(
            "smtp_received_bytes_total",
            "Octets received from SMTP clients.",
        )
        .expect("a valid metric");
        registry
            .register(Box::new(received.clone()))
            .expect("registered once");
        // From 0.5 ms to about 33 s.
        let seconds = prometheus::exponential_buckets(0.0005, 2.0, 17).expect("valid buckets");
        let delivery = HistogramVec::new(
            HistogramOpts::new(
                "smtp_delivery_seconds",
                "Time the destination took to commit a message.",
            )
            .buckets(seconds),
            &["destination"],
        )
        .expect("a valid metric");
        registry
            .register(Box::new(delivery.clone()))
            .expect("registered once");
        let sizes = prometheus::exponential_buckets(1.0, 2.0, 12).expect("valid buckets");
        let batch = Histogram::with_opts(
            HistogramOpts::new(
                "smtp_maildir_commit_batch_messages",
                "Messages made durable by one Maildir group commit.",
            )
            .buckets(sizes),
        )
        .expect("a valid metric");
        registry
            .register(Box::new(batch.clone()))
            .expect("registered once");
        Self {
            open,
            connections: counter(
                "smtp_connections_total",
                "Connections accepted, by outcome.",
                &["outcome"],
            ),
            closed: counter(
                "smtp_sessions_closed_total",
                "SMTP sessions ended, by reason.",
                &["reason"],
            ),
            refusals: counter(
                "smtp_refusals_total",
                "Replies 4xx and 5xx, by reason and code.",
                &["reason", "code"],
            ),
            messages: counter(
                "smtp_messages_total",
                "Messages answered at their end, by reply code.",
                &["code"],
            ),
            received,
            delivery,
            batch,
            tls: counter(
                "smtp_tls_handshakes_total",
                "TLS handshakes, by version, or failed.",
                &["version"],
            ),
            destination_errors: counter(
                "smtp_destination_errors_total",
                "Messages the destination did not commit, by destination and error.",
                &["destination", "error"],
            ),
            health: Health::default(),
            registry,
        }
    }

    /// Counts a reply that refused a command or a message.
    pub(crate) fn refused(&self, reply: &ReplyBuf, message_end: bool) {
        let code = reply.code.to_string();
        self.refusals
            .with_label_values(&[crate::reply::reason(reply.code, &reply.status), &code])
            .inc();
        if message_end {
            self.messages.with_label_values(&[&code]).inc();
        }
    }

    /// Counts a destination's failure to commit.
    pub(crate) fn destination_error(&self, destination: &str, e: &DeliveryError) {
        let error = match e.kind() {
            ErrorKind::InsufficientStorage => "insufficient_storage",
            ErrorKind::MailboxUnavailable => "mailbox_unavailable",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Permanent => "permanent",
            ErrorKind::Reply(r) if r.code >= 500 => "refused_permanent",
            ErrorKind::Reply(_) => "refused_temporary",
            _ => "transient",
        };
        self.destination_errors
            .with_label_values(&[destination, error])
            .inc();
    }

    /// Everything, in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        TextEncoder::new()
            .encode_utf8(&self.registry.gather(), &mut out)
            .expect("text encoding does not fail");
        out
    }
}

/// `/healthz`'s view of the destination: it is failing when at least [`FAULTS`]
/// deliveries in a row met a fault (a `4xx` of any kind but one mailbox's: a server that
/// is down, refused credentials, a timeout, a full disk), none succeeded for
/// [`QUIET`], and the last fault is more recent than [`MEMORY`]. A deliberate refusal
/// (a `5xx`, an unknown user) is not a fault. One success makes it healthy again; so
/// does [`MEMORY`] without a fault, so that a server a load balancer drained is tried
/// again.
#[derive(Debug, Default)]
pub(crate) struct Health(std::sync::Mutex<HealthState>);

#[derive(Debug, Default)]
struct HealthState {
    /// Faults since the last success.
    faults: u64,
    last_fault: Option<Instant>,
    last_success: Option<Instant>,
    /// The last fault: the destination and what it said.
    last_cause: String,
}

/// Faults in a row before `/healthz` says the destination is failing.
pub(crate) const FAULTS: u64 = 3;
/// How long without a success before it says so.
pub(crate) const QUIET: Duration = Duration::from_secs(30);
/// How long a fault is remembered.
pub(crate) const MEMORY: Duration = Duration::from_secs(60);

impl Health {
    fn lock(&self) -> std::sync::MutexGuard<'_, HealthState> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A message was committed.
    pub(crate) fn success(&self, now: Instant) {
        let mut h = self.lock();
        h.faults = 0;
        h.last_success = Some(now);
    }

    /// The destination failed a call; counted if it is a fault.
    pub(crate) fn failure(&self, now: Instant, destination: &str, e: &DeliveryError) {
        if !e.is_fault() {
            return;
        }
        let mut h = self.lock();
        h.faults += 1;
        h.last_fault = Some(now);
        h.last_cause = format!("{destination}: {e}");
    }

    /// Forgets everything (the destination was replaced by a reload).
    pub(crate) fn reset(&self) {
        *self.lock() = HealthState::default();
    }

    /// Why the destination is failing, if it is (see [`Health`]).
    pub(crate) fn failing(&self, now: Instant) -> Option<String> {
        let h = self.lock();
        let quiet = h.last_success.is_none_or(|t| now - t >= QUIET);
        let recent = h.last_fault.is_some_and(|t| now - t < MEMORY);
        (h.faults >= FAULTS && quiet && recent).then(|| {
            format!(
                "destination failing: the last {} deliveries failed; last: {}",
                h.faults, h.last_cause
            )
        })
    }
}

/// How long one metrics request (and its connection) may take.
const REQUEST_LIMIT: Duration = Duration::from_secs(10);

/// Serves `/metrics` and `/healthz` on `listener` until the process ends. `stopping`
/// fires when shutdown begins: `/healthz` answers `503` from then on.
pub(crate) async fn serve<R: Runtime>(
    rt: R,
    listener: async_io::Async<TcpListener>,
    stopping: Signal,
) {
    loop {
        let (tcp, _) = match super::runtime::accept(&listener).await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "metrics accept failed");
                async_io::Timer::after(Duration::from_millis(50)).await;
                continue;
            }
        };
        let stopping = stopping.clone();
        rt.spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let stopping = stopping.clone();
                async move { Ok::<_, Infallible>(respond(&req, &stopping)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(smol_hyper::rt::FuturesIo::new(tcp), service);
            let deadline = Some(Instant::now() + REQUEST_LIMIT);
            let _ = bounded(deadline, &Signal::never(), async {
                conn.await.map_err(std::io::Error::other)
            })
            .await;
        });
    }
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
