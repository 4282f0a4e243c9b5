//! Everything the server tells its operator: the metrics (one set per process, served by
//! `GSMTP_METRICS_LISTEN`'s `/metrics`), `/healthz`'s view of the destination, and the
//! log lines of connections and messages. The rest of the server reports what happens
//! here and nowhere else; a destination is handed what it feeds (the Maildir committer
//! its batch histogram), not the global.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

use crate::conn::{CloseReason, Connection, Event};
use crate::delivery::{DeliveryError, ErrorKind};
use crate::reply::ReplyBuf;

/// Every series the server keeps.
#[derive(Debug)]
pub(crate) struct Metrics {
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
    /// Verdicts of `GSMTP_VERIFY`'s checks and the filters, by check and RFC 8601 result.
    pub(crate) verdicts: IntCounterVec,
    /// Filters that could not be asked, by filter (`rspamd`, `milter`).
    pub(crate) filter_errors: IntCounterVec,
    /// DNS blocklist lookups, by zone and result (`listed`, `clean`, `failed`).
    pub(crate) dnsbl_lookups: IntCounterVec,
    /// Clients a blocklist's score refused, by the zone the refusal named.
    pub(crate) dnsbl_blocked: IntCounterVec,
    /// Whether a zone is broken (1: its health check failed, it is ignored), by zone.
    pub(crate) dnsbl_broken: prometheus::IntGaugeVec,
    /// AUTH exchanges that reached a password check, by result (`ok`, `failed`).
    pub(crate) auth: IntCounterVec,
    /// Whether the destination takes mail, for `/healthz`.
    pub(crate) health: Health,
}

/// The process's metrics.
pub(crate) fn metrics() -> &'static Metrics {
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
            verdicts: counter(
                "smtp_verdicts_total",
                "Results of the sender checks and content filters, by check and result.",
                &["check", "result"],
            ),
            filter_errors: counter(
                "smtp_filter_errors_total",
                "Content filters that could not be asked, by filter.",
                &["filter"],
            ),
            dnsbl_lookups: counter(
                "smtp_dnsbl_lookups_total",
                "DNS blocklist lookups, by zone and result.",
                &["zone", "result"],
            ),
            dnsbl_blocked: counter(
                "smtp_dnsbl_blocked_total",
                "Clients refused by the DNS blocklists, by the zone named in the refusal.",
                &["zone"],
            ),
            dnsbl_broken: {
                let opts = Opts::new(
                    "smtp_dnsbl_zone_broken",
                    "Whether a DNS blocklist failed its health check and is ignored.",
                );
                let g = prometheus::IntGaugeVec::new(opts, &["zone"]).expect("a valid metric");
                registry
                    .register(Box::new(g.clone()))
                    .expect("registered once");
                g
            },
            auth: counter(
                "smtp_auth_total",
                "AUTH exchanges that reached a password check, by result.",
                &["result"],
            ),
            health: Health::default(),
            registry,
        }
    }

    /// Counts an accepted connection by what became of it: `served`, `busy` (over
    /// `GM_MAX_CLIENTS`), `client_limit` (over `GM_MAX_CLIENTS_PER_IP`: these two are
    /// `421` refusals too), `bad_proxy_header`.
    pub(crate) fn connection(&self, outcome: &str) {
        self.connections.with_label_values(&[outcome]).inc();
        if matches!(outcome, "busy" | "client_limit") {
            self.refusals.with_label_values(&[outcome, "421"]).inc();
        }
    }

    /// Counts a password check of AUTH.
    pub(crate) fn auth(&self, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.auth.with_label_values(&[result]).inc();
    }

    /// Counts a TLS handshake by the version agreed on, or `failed`.
    pub(crate) fn handshake(&self, version: &str) {
        self.tls.with_label_values(&[version]).inc();
    }

    /// Records how long `destination` took to commit a message.
    pub(crate) fn delivered(&self, destination: &str, took: Duration) {
        self.delivery
            .with_label_values(&[destination])
            .observe(took.as_secs_f64());
    }

    /// Counts a message's verdict: each check that ran, by its result (DKIM: each
    /// signature).
    pub(crate) fn verdict(&self, verdict: &crate::verdict::Verdict) {
        let one = |check: &str, r: &crate::verdict::Result| {
            self.verdicts
                .with_label_values(&[check, r.outcome.as_str()])
                .inc();
        };
        for name in crate::verdict::CHECKS {
            match name {
                "dkim" => verdict.dkim.iter().flatten().for_each(|r| one(name, r)),
                _ => verdict.result(name).into_iter().for_each(|r| one(name, r)),
            }
        }
    }

    /// Counts a reply that refused a command or a message.
    pub(crate) fn refused(&self, reply: &ReplyBuf, message_end: bool) {
        let code = reply.code.to_string();
        // At a message's end, a security status is the checks' policy (at RCPT, 5.7.1
        // is relaying).
        let reason = match reply.status.get(1..3) {
            Some(".7") if message_end => "policy",
            _ => crate::reply::reason(reply.code, &reply.status),
        };
        self.refusals.with_label_values(&[reason, &code]).inc();
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
    pub(crate) fn render(&self) -> String {
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

/// One log line for an event of the connection. `done` is, at a message's end, how long
/// its checks and store took and the checks' verdict (logged by check: `spf=pass`, ...,
/// and `authenticated_from`); `destination` names the destination, logged with what it
/// said when a refusal came from it. Field names mean one thing each: `conn` is the
/// connection number, `queue_id` the message's id.
pub(crate) fn log_event(
    conn: &Connection,
    event: &Event,
    done: Option<(Duration, &crate::verdict::Verdict)>,
    destination: &str,
) {
    use tracing::field::display as shown;
    let client = conn.client_ip();
    let delivery = done.map_or(Duration::ZERO, |d| d.0);
    let verdict = done.map(|d| d.1).filter(|v| !v.is_empty());
    let check = |name: &str| {
        verdict
            .and_then(|v| v.result(name))
            .map(|r| shown(r.outcome.as_str()))
    };
    let authenticated_from = verdict.and_then(|v| v.authenticated_from.as_deref().map(shown));
    let dnsbl_listed = verdict
        .and_then(|v| v.dnsbl.as_ref()?.property("listed"))
        .map(shown);
    match event {
        Event::Command(line) => {
            tracing::info!(target: "transcript", conn = conn.id(), %client, "C: {line}");
        }
        Event::Auth { user, ok: true } => {
            tracing::info!(conn = conn.id(), %client, %user, "authenticated");
        }
        Event::Auth { user, ok: false } => {
            tracing::info!(conn = conn.id(), %client, %user, "authentication failed");
        }
        Event::EarlyTalker(sent) => {
            tracing::info!(conn = conn.id(), %client, sent = ?sent, "early talker: wrote before the greeting");
        }
        Event::Queued {
            id,
            size,
            from,
            recipients,
        } => {
            metrics().messages.with_label_values(&["250"]).inc();
            let to = recipients
                .iter()
                .map(|r| format!("<{r}>"))
                .collect::<Vec<_>>()
                .join(",");
            tracing::info!(
                conn = conn.id(),
                queue_id = %id,
                %client,
                client_name = %conn.client_name().unwrap_or("unknown"),
                helo = %conn.helo().unwrap_or("-"),
                %from,
                %to,
                nrcpt = recipients.len(),
                size,
                tls = %conn.tls().map_or("no", |t| t.version.as_str()),
                auth_user = conn.auth_user().map(shown),
                delivery_ms = %format_args!("{:.1}", delivery.as_secs_f64() * 1000.0),
                spf = check("spf"),
                dkim = check("dkim"),
                dmarc = check("dmarc"),
                arc = check("arc"),
                spam = check("spam"),
                virus = check("virus"),
                milter = check("milter"),
                dnsbl = check("dnsbl"),
                dnsbl_listed,
                authenticated_from,
                "message queued"
            );
        }
        Event::Refused {
            reply,
            verb,
            id,
            from,
            to,
            cause,
        } => {
            // The answer to a message's end, not to a DATA out of sequence.
            let message_end = matches!(
                verb,
                Some(crate::command::Verb::Data | crate::command::Verb::Bdat)
            ) && !matches!(
                crate::reply::reason(reply.code, &reply.status),
                "sequence" | "syntax"
            );
            metrics().refused(reply, message_end);
            tracing::info!(
                conn = conn.id(),
                queue_id = id.as_ref().map(shown),
                %client,
                command = %verb.map_or("-", |v| v.as_str()),
                code = reply.code,
                status = %reply.status,
                reason = ?reply.text,
                from = from.as_deref().map(shown),
                to = to.as_deref().map(shown),
                destination = cause.is_some().then_some(shown(destination)),
                cause = cause.as_deref(),
                spf = check("spf"),
                dkim = check("dkim"),
                dmarc = check("dmarc"),
                arc = check("arc"),
                spam = check("spam"),
                virus = check("virus"),
                milter = check("milter"),
                dnsbl = check("dnsbl"),
                dnsbl_listed,
                "refused"
            );
        }
    }
}

/// The line of a connection's end, and its count by reason: `reason` when the session
/// ended, `error` when the connection was lost.
pub(crate) fn closed(
    conn: &Connection,
    elapsed: Duration,
    reason: Option<CloseReason>,
    error: Option<&std::io::Error>,
) {
    let m = metrics();
    let label = reason.map_or("error", CloseReason::as_str);
    m.closed.with_label_values(&[label]).inc();
    match reason {
        Some(r @ (CloseReason::Timeout | CloseReason::TooManyErrors)) => {
            m.refusals.with_label_values(&[r.as_str(), "421"]).inc();
        }
        Some(r @ CloseReason::EarlyTalker) => {
            m.refusals.with_label_values(&[r.as_str(), "554"]).inc();
        }
        _ => {}
    }
    let stats = conn.stats();
    let secs = format!("{:.2}", elapsed.as_secs_f64());
    tracing::info!(
        conn = conn.id(),
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

/// The line of a connection that ended before its implicit-TLS handshake completed.
pub(crate) fn closed_before_tls(
    id: u64,
    peer: std::net::SocketAddr,
    elapsed: Duration,
    error: Option<&std::io::Error>,
) {
    let secs = format!("{:.2}", elapsed.as_secs_f64());
    let error = error.map(tracing::field::display);
    tracing::info!(conn = id, client = %peer.ip(), %secs, error, "connection closed before the TLS handshake completed");
}
