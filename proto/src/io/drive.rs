//! The pump: moves bytes between a [`Transport`] and a [`Connection`], carries out its
//! actions, and races every wait against the connection's deadline and the shutdown
//! signal. It is the only loop in the server; STARTTLS and implicit TLS run it twice.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::future;
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};

use super::deliver::{Deliver, guarded};
use super::runtime::{Runtime, Transport};
use super::server::{ClientSlot, Shared};
use crate::conn::{Action, Check, CloseReason, Connection, Event};
use crate::delivery::DeliveryError;

/// How a run of the pump ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The client asked for STARTTLS and the `220` has been sent.
    StartTls,
    /// The session is over.
    Closed(CloseReason),
}

/// What interrupted a wait.
#[derive(Debug)]
pub(crate) enum Interrupt {
    /// The connection's deadline passed.
    Deadline,
    /// The server is closing the remaining sessions.
    Stop,
}

/// A level-triggered signal: once fired, every wait on it returns at once.
#[derive(Clone, Debug)]
pub(crate) struct Signal {
    rx: async_channel::Receiver<()>,
    tx: Arc<std::sync::Mutex<Option<async_channel::Sender<()>>>>,
}

impl Signal {
    pub(crate) fn new() -> Self {
        let (tx, rx) = async_channel::bounded(1);
        Self {
            rx,
            tx: Arc::new(std::sync::Mutex::new(Some(tx))),
        }
    }

    /// Fires the signal (closes the channel).
    pub(crate) fn fire(&self) {
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
    }

    /// Whether the signal has fired.
    pub(crate) fn fired(&self) -> bool {
        self.tx.lock().map_or(true, |tx| tx.is_none())
    }

    /// Resolves once the signal has fired.
    pub(crate) async fn wait(&self) {
        let _ = self.rx.recv().await;
    }
}

/// Runs `fut` until it completes, `deadline` passes, or `stop` fires.
pub(crate) fn bounded<'a, T: 'a>(
    deadline: Option<Instant>,
    stop: &'a Signal,
    fut: impl Future<Output = io::Result<T>> + 'a,
) -> impl Future<Output = io::Result<Result<T, Interrupt>>> + 'a {
    race(deadline, stop, async move { fut.await.map(Ok) })
}

/// [`bounded`] for a future that already gives `Ok(Ok(_))`, with a fresh timer.
fn race<'a, T: 'a>(
    deadline: Option<Instant>,
    stop: &'a Signal,
    fut: impl Future<Output = io::Result<Result<T, Interrupt>>> + 'a,
) -> impl Future<Output = io::Result<Result<T, Interrupt>>> + 'a {
    let timer = async move {
        match deadline {
            Some(at) => drop(async_io::Timer::at(at).await),
            None => future::pending::<()>().await,
        }
    };
    race_with(timer, stop, fut)
}

/// Runs `fut` until it completes, `timer` resolves, or `stop` fires. It is a plain
/// function, not an `async fn`, so `fut` is moved once into the result instead of being
/// kept twice (as an argument and as the awaited value) in the caller's future: this is
/// what keeps an idle session's task small.
fn race_with<'a, T: 'a>(
    timer: impl Future<Output = ()> + 'a,
    stop: &'a Signal,
    fut: impl Future<Output = io::Result<Result<T, Interrupt>>> + 'a,
) -> impl Future<Output = io::Result<Result<T, Interrupt>>> + 'a {
    let timer = async move {
        timer.await;
        Ok(Err(Interrupt::Deadline))
    };
    let stopped = async move {
        stop.wait().await;
        Ok(Err(Interrupt::Stop))
    };
    future::or(fut, future::or(timer, stopped))
}

/// The session's timer, kept from one wait to the next and re-armed only when the
/// deadline moves earlier. Input pushes the idle deadline later on every command; rather
/// than registering a new timer each time (a few system calls per command), the old one
/// is left to fire early, which costs one spurious wake per `GSMTP_TIMEOUT`:
/// [`Connection::handle_timeout`] does nothing before the deadline, and the timer is
/// re-armed then.
#[derive(Debug)]
struct Deadline {
    timer: async_io::Timer,
    at: Option<Instant>,
}

impl Deadline {
    fn new() -> Self {
        Self {
            timer: async_io::Timer::never(),
            at: None,
        }
    }

    /// Makes the timer fire at `deadline`, or earlier.
    fn arm(&mut self, deadline: Option<Instant>) {
        match deadline {
            Some(d) if self.at.is_none_or(|at| d < at) => {
                self.timer.set_at(d);
                self.at = Some(d);
            }
            Some(_) => {}
            None if self.at.take().is_some() => self.timer = async_io::Timer::never(),
            None => {}
        }
    }

    /// Resolves when the timer fires; it is then disarmed.
    async fn fired(&mut self) {
        (&mut self.timer).await;
        self.at = None;
    }
}

/// The destination's transaction of a session, from MAIL to its commit or abort.
struct Txn<M> {
    message: Option<M>,
    /// Set when the body or a write failed: the rest of the text is dropped, and the
    /// message is refused with this at its end.
    failed: Option<DeliveryError>,
    /// Text not yet handed to the destination: the connection gives it a line or a read
    /// at a time; the destination gets it [`WRITE_BATCH`] at a time.
    pending: Vec<u8>,
}

/// How much text is gathered before [`Deliver::write`] is called.
const WRITE_BATCH: usize = 32 * 1024;

impl<M> Txn<M> {
    /// Hands the gathered text to the destination (unless the message already failed).
    async fn write<D: Deliver<Message = M>>(&mut self, deliver: &D) {
        if self.pending.is_empty() {
            return;
        }
        if self.failed.is_none()
            && let Some(m) = self.message.as_mut()
        {
            self.failed = match guarded("write", deliver.write(m, &self.pending)).await {
                Some(Ok(())) => None,
                Some(Err(e)) => Some(e),
                None => panicked(self),
            };
        }
        self.pending.clear();
    }
}

/// Runs the pump until the session closes or asks for TLS. A transaction still open when
/// it stops (an I/O error mid-body) is aborted.
pub(crate) async fn drive<R: Runtime, D: Deliver, T: Transport>(
    shared: &Shared<R, D>,
    conn: &mut Connection,
    io: &mut T,
    slot: &mut ClientSlot<R, D>,
) -> io::Result<Outcome> {
    let mut txn = Txn {
        message: None,
        failed: None,
        pending: Vec::new(),
    };
    let result = pump(shared, conn, io, &mut txn, slot).await;
    if let Some(message) = txn.message.take() {
        Box::pin(guarded("abort", shared.deliver.abort(message))).await;
    }
    result
}

async fn pump<R: Runtime, D: Deliver, T: Transport>(
    shared: &Shared<R, D>,
    conn: &mut Connection,
    io: &mut T,
    txn: &mut Txn<D::Message>,
    slot: &mut ClientSlot<R, D>,
) -> io::Result<Outcome> {
    let deliver = &*shared.deliver;
    let mut deadline = Deadline::new();
    loop {
        match conn.poll_action() {
            Action::Read => {
                if !flush(shared, conn, io, &mut deadline).await? {
                    return Ok(Outcome::Closed(CloseReason::Timeout));
                }
                deadline.arm(conn.poll_timeout());
                let read = async {
                    io.readable().await?;
                    io.read(conn.recv_buf()).await.map(Ok)
                };
                let woke = race_with(deadline.fired(), &shared.force, read).await?;
                let now = Instant::now();
                match woke {
                    Ok(0) => conn.handle_eof(now),
                    Ok(n) => {
                        super::metrics::metrics().received.inc_by(n as u64);
                        conn.handle_received(now, n);
                    }
                    Err(Interrupt::Deadline) => conn.handle_timeout(now),
                    Err(Interrupt::Stop) => conn.handle_shutdown(now),
                }
            }
            Action::StartTls => {
                flush(shared, conn, io, &mut deadline).await?;
                return Ok(Outcome::StartTls);
            }
            Action::Check(check) => {
                // Big futures on cold paths are boxed so that an idle session's task
                // stays small.
                let result = Box::pin(answer(deliver, txn, slot, check)).await;
                conn.handle_check(Instant::now(), result);
            }
            Action::Begin(envelope) => {
                if let Some(m) = txn.message.as_mut() {
                    txn.failed = match Box::pin(guarded("body", deliver.body(m, envelope))).await {
                        Some(Ok(())) => None,
                        Some(Err(e)) => Some(e),
                        None => panicked(txn),
                    };
                }
            }
            Action::Store(bytes) => {
                if txn.failed.is_none() {
                    if txn.pending.capacity() == 0 {
                        // Most messages fit: one allocation instead of a growing one.
                        txn.pending.reserve(8 * 1024);
                    }
                    txn.pending.extend_from_slice(bytes);
                    if txn.pending.len() >= WRITE_BATCH {
                        Box::pin(txn.write(deliver)).await;
                    }
                }
            }
            Action::Commit => {
                let started = Instant::now();
                let result = Box::pin(commit(deliver, txn)).await;
                let now = Instant::now();
                let m = super::metrics::metrics();
                let result = match result {
                    Ok(()) => {
                        m.delivery
                            .with_label_values(&[deliver.name()])
                            .observe((now - started).as_secs_f64());
                        m.health.success(now);
                        Ok(())
                    }
                    Err(e) => {
                        m.destination_error(deliver.name(), &e);
                        Err(noted(deliver, e))
                    }
                };
                conn.handle_delivery(now, result);
                while let Some(event) = conn.poll_event() {
                    log_event(conn, &event, now - started, deliver.name());
                }
            }
            Action::Abort => {
                if let Some(m) = txn.message.take() {
                    Box::pin(guarded("abort", deliver.abort(m))).await;
                }
                txn.failed = None;
                txn.pending = Vec::new();
            }
            Action::AwaitDelivery => {
                return Err(io::Error::other("a delivery was left unreported"));
            }
            Action::Close(reason) => {
                slot.release();
                if flush(shared, conn, io, &mut deadline).await? {
                    let deadline = Some(Instant::now() + CLOSE_WAIT);
                    let _ = Box::pin(bounded(deadline, &Signal::never(), io.close())).await;
                }
                return Ok(Outcome::Closed(reason));
            }
        }
    }
}

/// Answers the connection's question: the destination's for MAIL and RCPT (MAIL opens
/// its transaction), the per-client count's for a client XCLIENT names.
async fn answer<R: Runtime, D: Deliver>(
    deliver: &D,
    txn: &mut Txn<D::Message>,
    slot: &mut ClientSlot<R, D>,
    check: Check<'_>,
) -> Result<(), DeliveryError> {
    match check {
        Check::Client(ip) if slot.move_to(ip) => Ok(()),
        Check::Client(_) => Err(DeliveryError::transient()),
        Check::Sender { from, params } => {
            let message = guarded("start", deliver.start(from, params))
                .await
                .unwrap_or_else(|| Err(panic_error()))
                .map_err(|e| noted(deliver, e))?;
            txn.message = Some(message);
            txn.failed = None;
            Ok(())
        }
        Check::Recipient { recipient, .. } => match txn.message.as_mut() {
            Some(m) => match guarded("add_recipient", deliver.add_recipient(m, recipient)).await {
                Some(result) => result.map_err(|e| noted(deliver, e)),
                None => panicked(txn).map_or(Ok(()), Err),
            },
            None => Err(DeliveryError::transient()),
        },
    }
}

/// A destination's error on its way to the client's reply and the log: counted for
/// `/healthz`, and given a cause if the destination gave none, so that every refusal
/// and fault of a destination is logged with what it said.
fn noted<D: Deliver>(deliver: &D, e: DeliveryError) -> DeliveryError {
    super::metrics::metrics()
        .health
        .failure(Instant::now(), deliver.name(), &e);
    if e.cause().is_some() {
        return e;
    }
    let cause = e.to_string();
    e.because(cause)
}

/// What a panic in a destination becomes.
fn panic_error() -> DeliveryError {
    DeliveryError::transient().because("the destination panicked")
}

/// Commits the transaction's message, unless its text failed: then it is aborted and
/// the failure is the answer.
async fn commit<D: Deliver>(deliver: &D, txn: &mut Txn<D::Message>) -> Result<(), DeliveryError> {
    txn.write(deliver).await;
    txn.pending = Vec::new();
    let Some(message) = txn.message.take() else {
        return Err(txn.failed.take().unwrap_or_else(DeliveryError::transient));
    };
    if let Some(e) = txn.failed.take() {
        guarded("abort", deliver.abort(message)).await;
        return Err(e);
    }
    guarded("commit", deliver.commit(message))
        .await
        .unwrap_or_else(|| Err(panic_error()))
}

/// After a panic, the message is dropped as it is (it may be in any state), and what is
/// left of the transaction fails.
fn panicked<M>(txn: &mut Txn<M>) -> Option<DeliveryError> {
    txn.message = None;
    Some(panic_error())
}

/// How long closing a stream (a TLS close_notify, say) may take.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

impl Signal {
    /// A signal that never fires, shared by all sessions.
    pub(crate) fn never() -> Self {
        static NEVER: std::sync::OnceLock<Signal> = std::sync::OnceLock::new();
        NEVER.get_or_init(Self::new).clone()
    }
}

/// Sends the pending replies, bounded by the connection's deadline (a client that does
/// not read cannot hold a session forever). `Ok(false)` means the deadline passed.
async fn flush<R: Runtime, D: Deliver, T: Transport>(
    shared: &Shared<R, D>,
    conn: &mut Connection,
    io: &mut T,
    deadline: &mut Deadline,
) -> io::Result<bool> {
    // A fresh buffer each time (no copy: it is swapped with the connection's), so that
    // no buffer is kept while idle.
    let mut out = Vec::new();
    let out = &mut out;
    while let Some(event) = conn.poll_event() {
        log_event(conn, &event, Duration::ZERO, shared.deliver.name());
    }
    conn.poll_transmit(out);
    if out.is_empty() {
        return Ok(true);
    }
    if shared.cfg.verbose {
        for line in out.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let line = crate::syntax::escape_for_log(line.strip_suffix(b"\r").unwrap_or(line));
            tracing::info!(target: "transcript", conn = conn.id(), client = %conn.client_ip(), "S: {line}");
        }
    }
    // A client that does not read cannot hold a session: the write, too, is bounded by
    // the deadline (or, while a message is being stored, by GSMTP_TIMEOUT from now). The
    // shared timer may fire early (see `Deadline`), so each step is retried until the
    // real bound; a write cut short by the race has written nothing.
    let bound = conn
        .poll_timeout()
        .unwrap_or_else(|| Instant::now() + shared.cfg.timeout);
    let never = Signal::never();
    let mut sent = 0;
    loop {
        deadline.arm(Some(bound));
        let done = sent == out.len();
        let step = async {
            if done {
                io.flush().await.map(|()| Ok(0))
            } else {
                io.write(&out[sent..]).await.map(Ok)
            }
        };
        match race_with(deadline.fired(), &never, step).await? {
            Ok(_) if done => return Ok(true),
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => sent += n,
            Err(_) if Instant::now() >= bound => return Ok(false),
            Err(_) => {}
        }
    }
}

/// One log line for an event of the connection. `delivery` is how long the store took,
/// for [`Event::Queued`]; `destination` names the destination, logged with what it said
/// when a refusal came from it. Field names mean one thing each: `conn` is the
/// connection number, `queue_id` the message's id.
fn log_event(conn: &Connection, event: &Event, delivery: Duration, destination: &str) {
    use tracing::field::display as shown;
    let client = conn.client_ip();
    match event {
        Event::Command(line) => {
            tracing::info!(target: "transcript", conn = conn.id(), %client, "C: {line}");
        }
        Event::Queued {
            id,
            size,
            from,
            recipients,
        } => {
            super::metrics::metrics()
                .messages
                .with_label_values(&["250"])
                .inc();
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
                delivery_ms = %format_args!("{:.1}", delivery.as_secs_f64() * 1000.0),
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
            super::metrics::metrics().refused(reply, message_end);
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
                "refused"
            );
        }
    }
}
