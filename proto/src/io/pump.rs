//! The pump: moves bytes between a [`Transport`] and a [`Connection`], carries out its
//! actions on the destination, and races every wait against the connection's deadline
//! and the shutdown signal. It is the only loop of a session; STARTTLS and implicit TLS
//! run it twice.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use event_listener::EventListener;

use futures_lite::io::{AsyncReadExt, AsyncWriteExt};

use super::deliver::{Deliver, Message, Transaction, guarded};
use super::dnsbl::at_xclient;
use super::filter::milter::Milters;
use super::filter::{Edited, Hold};
use super::observe::{log_event, metrics};
use super::runtime::{Runtime, Transport};
use super::shared::{ClientSlot, Shared};
use super::time::{Deadline, Interrupt, Signal, bounded, race_timer};
use super::verify::{Request, reading::Reading};
use crate::conn::{Action, Check, CloseReason, Connection};
use crate::delivery::{DeliveryError, Envelope};
use crate::reply::{Reply, ReplyBuf};
use crate::verdict::Verdict;

/// How a run of the pump ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The client asked for STARTTLS and the `220` has been sent.
    StartTls,
    /// The session is over.
    Closed(CloseReason),
}

/// The destination's side of a session's mail transaction. Each payload is boxed: the
/// session's task holds this for the whole session, and only a transaction needs more.
enum Held<T: Transaction> {
    /// No transaction.
    Nothing,
    /// From a MAIL the destination took until the text begins.
    Transaction(Box<T>),
    /// The text, on its way into the destination.
    Message(Box<T::Message>),
    /// The text failed ([`Transaction::begin`] or [`Message::write`] refused, or the
    /// destination panicked): the rest is dropped, and this is the answer at its end.
    Failed(Box<DeliveryError>),
    /// A milter said to throw the message away: it is answered `250` and stored nowhere.
    Discarded,
}

/// A session's transaction with the destination.
struct Txn<D: Deliver> {
    held: Held<D::Transaction>,
    /// Text not yet handed to the destination: the connection gives it a line or a read
    /// at a time; the destination gets it [`WRITE_BATCH`] at a time.
    pending: Vec<u8>,
    /// The text read for the checks on its way, when `GSMTP_VERIFY` asks for any.
    reading: Option<Box<Reading>>,
    /// The text held whole for the content filters, when there are any: the destination
    /// gets it once they have answered.
    hold: Option<Box<Hold>>,
}

/// How much text is gathered before [`Message::write`] is called.
const WRITE_BATCH: usize = 32 * 1024;

/// Adds `bytes` to the text gathered for the destination; `true` once a batch is due.
fn gather(pending: &mut Vec<u8>, bytes: &[u8]) -> bool {
    if pending.capacity() == 0 {
        // Most messages fit: one allocation instead of a growing one.
        pending.reserve(8 * 1024);
    }
    pending.extend_from_slice(bytes);
    pending.len() >= WRITE_BATCH
}

impl<D: Deliver> Txn<D> {
    /// Hands the gathered text to the message. A refusal (or a panic) aborts the message
    /// and is the answer at its end.
    async fn write(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        if let Held::Message(m) = &mut self.held {
            match guarded("write", m.write(&self.pending)).await {
                Some(Ok(())) => {}
                Some(Err(e)) => {
                    if let Held::Message(m) =
                        std::mem::replace(&mut self.held, Held::Failed(Box::new(e)))
                    {
                        guarded("abort", m.abort()).await;
                    }
                }
                None => self.held = Held::Failed(Box::new(panic_error())),
            }
        }
        self.pending.clear();
    }

    /// The message begins.
    async fn begin(&mut self, envelope: &Envelope) {
        self.held = match std::mem::replace(&mut self.held, Held::Nothing) {
            Held::Transaction(t) => match guarded("begin", t.begin(envelope)).await {
                Some(Ok(m)) => Held::Message(Box::new(m)),
                Some(Err(e)) => Held::Failed(Box::new(e)),
                None => Held::Failed(Box::new(panic_error())),
            },
            other => other,
        };
    }

    /// Takes the next piece of the text, through the checks' reading if any, when the
    /// filters hold the text (which may wait). [`Txn::take_now`] is the common case.
    async fn take<R: Runtime>(&mut self, rt: &R, bytes: &[u8]) {
        if matches!(self.held, Held::Failed(_)) {
            return;
        }
        let bytes = match &mut self.reading {
            Some(r) => r.feed(bytes),
            None => std::borrow::Cow::Borrowed(bytes),
        };
        self.put(rt, &bytes).await;
    }

    /// [`Txn::take`] without a wait, when no filter holds the text: the piece is gathered,
    /// and `true` says a batch is due for [`Txn::write`]. A plain function, so that the
    /// pump's future keeps no room for it: a message's text is taken a line or a read at
    /// a time, and an idle session's task is only as large as its largest wait.
    fn take_now(&mut self, bytes: &[u8]) -> bool {
        debug_assert!(self.hold.is_none());
        if matches!(self.held, Held::Failed(_)) {
            return false;
        }
        match &mut self.reading {
            Some(r) => gather(&mut self.pending, &r.feed(bytes)),
            None => gather(&mut self.pending, bytes),
        }
    }

    /// Hands a piece of text on: to the filters' hold while there is one, else to the
    /// destination, [`WRITE_BATCH`] at a time.
    async fn put<R: Runtime>(&mut self, rt: &R, bytes: &[u8]) {
        if let Some(hold) = &mut self.hold {
            // Boxed, as every cold path: an idle session's task stays small.
            if let Err(e) = Box::pin(hold.write(rt, bytes)).await {
                self.hold = None;
                Box::pin(self.fail(e)).await;
            }
            return;
        }
        if gather(&mut self.pending, bytes) {
            Box::pin(self.write()).await;
        }
    }

    /// The message failed with `e`: the destination's message is aborted, and `e` is the
    /// answer at its end.
    async fn fail(&mut self, e: DeliveryError) {
        if let Held::Message(m) = std::mem::replace(&mut self.held, Held::Failed(Box::new(e))) {
            guarded("abort", m.abort()).await;
        }
    }

    /// The text is complete and the checks have run: asks the content filters, if any
    /// (rspamd, then the session's milters), and hands the text, with their edits, to
    /// the destination. `Ok(true)`: a milter said to throw the message away. `Err` is
    /// the filters' refusal.
    async fn filter<R: Runtime>(
        &mut self,
        shared: &Shared<R, D>,
        milters: &mut Option<Box<Milters>>,
        envelope: Option<&Envelope>,
        verdict: &mut Verdict,
    ) -> Result<bool, ReplyBuf> {
        let Some(hold) = self.hold.take() else {
            return Ok(false);
        };
        let text = hold.freeze();
        let Some(envelope) = envelope else {
            return Ok(false);
        };
        if !matches!(self.held, Held::Message(_)) {
            return Ok(false);
        }
        let rt = &shared.rt;
        let mut edits = match &shared.filters {
            Some(filters) => filters.check(envelope, &text, verdict).await?,
            None => Vec::new(),
        };
        let mut body = None;
        if let Some(m) = milters {
            let passed = m.message(rt, &text, &envelope.id.to_string()).await;
            verdict.milter = Some(m.verdict());
            let passed = passed?;
            if passed.discard {
                tracing::info!(queue_id = %envelope.id, "message discarded by a milter");
                return Ok(true);
            }
            // A milter's edits name fields as it saw them: they go first.
            edits.splice(0..0, passed.changes.edits);
            body = passed.changes.body;
        }
        let mut edited = match Edited::new(rt, &text, &edits, body).await {
            Ok(e) => e,
            Err(e) => {
                self.fail(DeliveryError::transient().because(format!("the held text: {e}")))
                    .await;
                return Ok(false);
            }
        };
        loop {
            match edited.next(rt).await {
                Ok(Some(piece)) => {
                    self.pending = piece;
                    self.write().await;
                }
                Ok(None) => return Ok(false),
                Err(e) => {
                    self.fail(DeliveryError::transient().because(format!("the held text: {e}")))
                        .await;
                    return Ok(false);
                }
            }
            if !matches!(self.held, Held::Message(_)) {
                return Ok(false);
            }
        }
    }

    /// The text is complete: runs the checks, if any, on what was read. `None` when
    /// there were none, or the message already failed; the refusal when its header
    /// section was too long to remove fields forged in our name from.
    async fn verify<R: Runtime>(
        &mut self,
        shared: &Shared<R, D>,
        envelope: Option<&Envelope>,
    ) -> Result<Option<Verdict>, Reply> {
        let Some(reading) = self.reading.take() else {
            return Ok(None);
        };
        let (rest, read) = reading.finish();
        if read.too_long {
            return Err(crate::reply::HEADER_TOO_BIG);
        }
        self.put(&shared.rt, &rest).await;
        let (Some(verifier), Some(envelope)) = (shared.verifier.as_ref(), envelope) else {
            return Ok(None);
        };
        if !matches!(self.held, Held::Message(_)) {
            return Ok(None);
        }
        let request = Request {
            checks: shared.cfg.verify,
            client_ip: envelope.client_ip,
            helo: envelope.helo.clone(),
            mail_from: crate::deliver::sender_address(&envelope.from),
            host: shared.cfg.host_name.clone(),
            read,
        };
        Ok(Some(verifier.verify(request).await))
    }

    /// The message is complete: commit it with the checks' `verdict`, or give the answer
    /// its text earned.
    async fn commit(&mut self, verdict: &Verdict) -> Result<(), DeliveryError> {
        self.write().await;
        self.pending = Vec::new();
        match std::mem::replace(&mut self.held, Held::Nothing) {
            Held::Message(m) => guarded("commit", m.commit(verdict))
                .await
                .unwrap_or_else(|| Err(panic_error())),
            Held::Failed(e) => Err(*e),
            Held::Transaction(t) => {
                guarded("abort", t.abort()).await;
                Err(DeliveryError::transient().because("the message never began"))
            }
            Held::Nothing => Err(DeliveryError::transient().because("no transaction")),
            Held::Discarded => Ok(()),
        }
    }

    /// Throws away whatever the destination holds.
    async fn abort(&mut self) {
        match std::mem::replace(&mut self.held, Held::Nothing) {
            Held::Transaction(t) => drop(guarded("abort", t.abort()).await),
            Held::Message(m) => drop(guarded("abort", m.abort()).await),
            Held::Failed(_) | Held::Nothing | Held::Discarded => {}
        }
        self.pending = Vec::new();
        self.reading = None;
        self.hold = None;
    }
}

/// Runs the pump until the session closes or asks for TLS. A transaction still open when
/// it stops (an I/O error mid-body) is aborted.
///
/// A plain function around one `async move` block, so that the session's parts are kept
/// once in its future (an `async fn` keeps its arguments twice: what every idle session
/// costs).
pub(crate) fn run<'a, R: Runtime, D: Deliver, T: Transport>(
    shared: &'a Shared<R, D>,
    conn: &'a mut Connection,
    io: &'a mut T,
    slot: &'a mut ClientSlot<R, D>,
    milters: &'a mut Option<Box<Milters>>,
) -> impl Future<Output = io::Result<Outcome>> + Send + 'a {
    let mut pump = Pump {
        shared,
        id: conn.id(),
        conn,
        io,
        slot,
        milters,
        txn: Txn::<D> {
            held: Held::Nothing,
            pending: Vec::new(),
            reading: None,
            hold: None,
        },
        deadline: Deadline::new(&shared.timers),
        stop: None,
    };
    async move {
        let result = pump.run().await;
        // The result goes through the boxed end, so it takes no room in this future.
        Box::pin(pump.end(result)).await
    }
}

/// One run of the pump: the session's parts, its transaction with the destination and
/// its timer.
struct Pump<'a, R: Runtime, D: Deliver, T: Transport> {
    shared: &'a Shared<R, D>,
    /// The connection's number, for the log.
    id: u64,
    conn: &'a mut Connection,
    io: &'a mut T,
    slot: &'a mut ClientSlot<R, D>,
    milters: &'a mut Option<Box<Milters>>,
    txn: Txn<D>,
    deadline: Deadline<'a>,
    /// The wait on the shutdown signal, kept from one read to the next.
    stop: Option<EventListener>,
}

impl<R: Runtime, D: Deliver, T: Transport> Pump<'_, R, D, T> {
    /// The end of a run: a transaction still open is aborted (and the milters told), and
    /// `result` is passed on.
    async fn end(&mut self, result: io::Result<Outcome>) -> io::Result<Outcome> {
        if !matches!(self.txn.held, Held::Nothing)
            && let Some(m) = self.milters
        {
            m.abort().await;
        }
        self.txn.abort().await;
        result
    }

    /// The loop: carries out the connection's actions until it closes or asks for TLS.
    /// Fields are named by path, never bound to locals, for the same reason as [`run`].
    async fn run(&mut self) -> io::Result<Outcome> {
        loop {
            match self.conn.poll_action() {
                Action::Read => {
                    if self.conn.awaits_greeting() {
                        // Whatever is here already was sent before the greeting's last line.
                        let early =
                            futures_lite::future::poll_once(self.io.read(self.conn.recv_buf()))
                                .await;
                        if let Some(Ok(n @ 1..)) = early {
                            self.conn.handle_received(Instant::now(), n);
                            continue;
                        }
                    }
                    if !flush(self.shared, self.conn, self.io, &mut self.deadline).await? {
                        return Ok(Outcome::Closed(CloseReason::Timeout));
                    }
                    self.deadline.arm(self.conn.poll_timeout());
                    let woke = next_input(
                        self.io,
                        self.conn,
                        &mut self.deadline,
                        &self.shared.force,
                        &mut self.stop,
                    )
                    .await?;
                    let now = Instant::now();
                    match woke {
                        Ok(0) => self.conn.handle_eof(now),
                        Ok(n) => {
                            metrics().received.inc_by(n as u64);
                            self.conn.handle_received(now, n);
                        }
                        Err(Interrupt::Deadline) => self.conn.handle_timeout(now),
                        Err(Interrupt::Stop) => self.conn.handle_shutdown(now),
                    }
                }
                Action::StartTls => {
                    flush(self.shared, self.conn, self.io, &mut self.deadline).await?;
                    return Ok(Outcome::StartTls);
                }
                Action::Check(Check::Auth { user, password }) => {
                    let result = match &self.shared.logins {
                        Some(l) => Box::pin(l.check(&self.shared.rt, user, password)).await,
                        None => Err(DeliveryError::transient()),
                    };
                    metrics().auth(result.is_ok());
                    self.conn.handle_check(Instant::now(), result);
                }
                Action::Check(check) => {
                    // Big futures on cold paths are boxed so that an idle session's task
                    // stays small; what they give back is not kept across a wait.
                    let (result, screened) = Box::pin(answer_and_screen(
                        self.shared,
                        self.id,
                        &mut self.txn,
                        self.slot,
                        self.milters,
                        check,
                    ))
                    .await;
                    self.conn.handle_check(Instant::now(), result);
                    if let Some(d) = screened {
                        d.apply(self.conn);
                    }
                }
                Action::Begin(envelope) => {
                    // The header section is read when a verdict is made: for the checks, and
                    // to strip what would forge the verdict's header fields.
                    let own = crate::verdict::own_fields(
                        self.shared.cfg.filter.rspamd_url.is_some(),
                        self.shared.dnsbl.is_some(),
                    );
                    if self.shared.verifier.is_some() || !own.is_empty() {
                        let checks = self.shared.verifier.is_some();
                        let reading = Reading::new(&self.shared.cfg.host_name, own, checks);
                        self.txn.reading = Some(Box::new(reading));
                    }
                    self.txn.hold = self.shared.filters.as_ref().map(|f| Box::new(f.hold()));
                    Box::pin(self.txn.begin(envelope)).await;
                }
                // No match guard here: a guard keeps the whole action alive across the
                // arm's waits, a slot every idle session's task would pay for.
                Action::Write(bytes) => {
                    if self.txn.hold.is_some() {
                        Box::pin(self.txn.take(&self.shared.rt, bytes)).await
                    } else if self.txn.take_now(bytes) {
                        Box::pin(self.txn.write()).await;
                    }
                }
                Action::Commit => {
                    Box::pin(commit(self.shared, self.conn, &mut self.txn, self.milters)).await
                }
                Action::Abort => {
                    if let Some(m) = self.milters {
                        Box::pin(m.abort()).await;
                    }
                    Box::pin(self.txn.abort()).await;
                }
                Action::AwaitDelivery => {
                    return Err(io::Error::other("a delivery was left unreported"));
                }
                Action::Close(reason) => {
                    self.slot.release();
                    if flush(self.shared, self.conn, self.io, &mut self.deadline).await? {
                        let deadline = Some(Instant::now() + CLOSE_WAIT);
                        let _ =
                            Box::pin(bounded(deadline, &Signal::never(), self.io.close())).await;
                    }
                    return Ok(Outcome::Closed(reason));
                }
            }
        }
    }
}

/// The wait of an idle session: the client's next bytes, read into the connection, or
/// the deadline, or the shutdown signal, whichever comes first. A poll function over the
/// session's own parts, so that waiting keeps no state of its own: the buffer is only
/// taken once the socket is readable, and nothing else is held but these references.
fn next_input<'a, T: Transport>(
    io: &'a mut T,
    conn: &'a mut Connection,
    deadline: &'a mut Deadline<'_>,
    stop: &'a Signal,
    listener: &'a mut Option<EventListener>,
) -> impl Future<Output = io::Result<Result<usize, Interrupt>>> + 'a {
    std::future::poll_fn(move |cx| {
        match io.poll_readable(cx) {
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Ready(Ok(())) => {
                if let Poll::Ready(read) = Pin::new(&mut *io).poll_read(cx, conn.recv_buf()) {
                    return Poll::Ready(read.map(Ok));
                }
            }
            Poll::Pending => {}
        }
        if deadline.poll_fired(cx).is_ready() {
            return Poll::Ready(Ok(Err(Interrupt::Deadline)));
        }
        if stop.poll_wait(listener, cx).is_ready() {
            return Poll::Ready(Ok(Err(Interrupt::Stop)));
        }
        Poll::Pending
    })
}

/// [`answer`], then, for a client XCLIENT names, the DNS blocklists' decision on it
/// (whose block becomes the answer).
async fn answer_and_screen<R: Runtime, D: Deliver>(
    shared: &Shared<R, D>,
    id: u64,
    txn: &mut Txn<D>,
    slot: &mut ClientSlot<R, D>,
    milters: &mut Option<Box<Milters>>,
    check: Check<'_>,
) -> (
    Result<(), DeliveryError>,
    Option<crate::io::dnsbl::Decision>,
) {
    let xclient = if let Check::Client(ip) = check {
        Some(ip)
    } else {
        None
    };
    let mut result = answer(&*shared.deliver, txn, slot, milters, check).await;
    let screen = shared.dnsbl.as_deref();
    let screened = at_xclient(screen, id, xclient, &mut result).await;
    (result, screened)
}

/// Answers the connection's question: the destination's for MAIL (which begins its
/// transaction) and RCPT, the per-client count's for a client XCLIENT names.
async fn answer<R: Runtime, D: Deliver>(
    deliver: &D,
    txn: &mut Txn<D>,
    slot: &mut ClientSlot<R, D>,
    milters: &mut Option<Box<Milters>>,
    check: Check<'_>,
) -> Result<(), DeliveryError> {
    match check {
        // Answered by the pump itself.
        Check::Auth { .. } => Err(DeliveryError::transient()),
        Check::Client(ip) if slot.move_to(ip) => Ok(()),
        Check::Client(_) => Err(DeliveryError::transient()),
        Check::Helo { name } => match milters {
            Some(m) => m.helo(name).await.map_err(DeliveryError::reply),
            None => Ok(()),
        },
        Check::Sender { from, params } => {
            txn.abort().await;
            if let Some(m) = milters {
                m.abort().await;
                let mut encoded = Vec::new();
                params.encode(&mut encoded);
                let args: Vec<String> = String::from_utf8_lossy(&encoded)
                    .split_whitespace()
                    .map(str::to_string)
                    .collect();
                m.mail(&crate::deliver::sender_address(from), &args)
                    .await
                    .map_err(DeliveryError::reply)?;
            }
            let t = guarded("start", deliver.start(from, params))
                .await
                .unwrap_or_else(|| Err(panic_error()))
                .map_err(|e| noted(deliver, e))?;
            txn.held = Held::Transaction(Box::new(t));
            Ok(())
        }
        Check::Recipient { recipient, .. } => {
            if let Some(m) = milters {
                m.rcpt(&recipient.address)
                    .await
                    .map_err(DeliveryError::reply)?;
            }
            match &mut txn.held {
                Held::Transaction(t) => {
                    match guarded("add_recipient", t.add_recipient(recipient)).await {
                        Some(result) => result.map_err(|e| noted(deliver, e)),
                        None => {
                            txn.held = Held::Failed(Box::new(panic_error()));
                            Err(panic_error())
                        }
                    }
                }
                Held::Failed(e) => Err(DeliveryError::clone(e)),
                Held::Message(_) | Held::Nothing | Held::Discarded => {
                    Err(DeliveryError::transient().because("no transaction"))
                }
            }
        }
    }
}

/// A destination's error on its way to the client's reply and the log: counted for
/// `/healthz`, and given a cause if the destination gave none, so that every refusal
/// and fault of a destination is logged with what it said.
fn noted<D: Deliver>(deliver: &D, e: DeliveryError) -> DeliveryError {
    metrics().health.failure(Instant::now(), deliver.name(), &e);
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

/// How long closing a stream (a TLS close_notify, say) may take.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Sends the pending replies, bounded by the connection's deadline (a client that does
/// not read cannot hold a session forever). `Ok(false)` means the deadline passed.
fn flush<'a, R: Runtime, D: Deliver, T: Transport>(
    shared: &'a Shared<R, D>,
    conn: &'a mut Connection,
    io: &'a mut T,
    deadline: &'a mut Deadline<'_>,
) -> Flush<impl Future<Output = io::Result<bool>> + 'a> {
    // A fresh buffer each time (no copy: it is swapped with the connection's), so that
    // no buffer is kept while idle.
    let mut out = Vec::new();
    while let Some(event) = conn.poll_event() {
        log_event(conn, &event, None, shared.deliver.name());
    }
    conn.poll_transmit(&mut out);
    if out.is_empty() {
        // A read in the middle of a message's text: nothing to send, nothing allocated.
        return Flush::Done;
    }
    // Boxed: the write's wait is larger than an idle session's read, and is only needed
    // while replies go out.
    Flush::Sending(Box::pin(send(shared, conn, io, deadline, out)))
}

/// What [`flush`] gives: `Ok(true)` at once when there was nothing to send, or the
/// write. A named future (one pointer) rather than an `async fn`, whose state would hold
/// its arguments in the pump's future for every wait.
enum Flush<F> {
    /// Nothing to send.
    Done,
    /// The replies' write, boxed.
    Sending(Pin<Box<F>>),
}

impl<F: Future<Output = io::Result<bool>>> Future for Flush<F> {
    type Output = io::Result<bool>;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Self::Done => Poll::Ready(Ok(true)),
            Self::Sending(write) => write.as_mut().poll(cx),
        }
    }
}

/// Writes `out`, the replies [`flush`] gathered, bounded as it says.
async fn send<R: Runtime, D: Deliver, T: Transport>(
    shared: &Shared<R, D>,
    conn: &Connection,
    io: &mut T,
    deadline: &mut Deadline<'_>,
    out: Vec<u8>,
) -> io::Result<bool> {
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
        match race_timer(deadline.fired(), step).await? {
            Ok(_) if done => return Ok(true),
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => sent += n,
            Err(_) if Instant::now() >= bound => return Ok(false),
            Err(_) => {}
        }
    }
}

/// The end of a message: the checks, the filters, then the destination's commit (or the
/// refusal), and the reply. Boxed by the pump: its locals (the verdict above all) then
/// take room only while a message ends, not in every idle session's task.
async fn commit<R: Runtime, D: Deliver>(
    shared: &Shared<R, D>,
    conn: &mut Connection,
    txn: &mut Txn<D>,
    milters: &mut Option<Box<Milters>>,
) {
    let deliver = &*shared.deliver;
    let started = Instant::now();
    let (verdict, unreadable) = match txn.verify(shared, conn.envelope()).await {
        Ok(verdict) => (verdict, None),
        Err(refusal) => (None, Some(refusal)),
    };
    let mut verdict = verdict.unwrap_or_default();
    verdict.dnsbl = conn.dnsbl().cloned();
    let refusal = unreadable
        .or_else(|| verdict.refusal(shared.cfg.dmarc_reject, shared.cfg.verify_tempfail))
        .map(ReplyBuf::from);
    let refusal = match refusal {
        Some(r) => Some(r),
        None => {
            match txn
                .filter(shared, milters, conn.envelope(), &mut verdict)
                .await
            {
                Ok(true) => {
                    // Thrown away, as a milter said: answered 250, stored nowhere.
                    txn.abort().await;
                    txn.held = Held::Discarded;
                    None
                }
                Ok(false) => None,
                Err(r) => Some(r),
            }
        }
    };
    metrics().verdict(&verdict);
    let refused = refusal.is_some();
    let result = match refusal {
        Some(reply) => {
            txn.abort().await;
            Err(DeliveryError::reply(reply))
        }
        None => txn.commit(&verdict).await,
    };
    let now = Instant::now();
    let m = metrics();
    let result = match result {
        Ok(()) => {
            m.delivered(deliver.name(), now - started);
            m.health.success(now);
            Ok(())
        }
        Err(e) if refused => Err(e),
        Err(e) => {
            m.destination_error(deliver.name(), &e);
            Err(noted(deliver, e))
        }
    };
    conn.handle_delivery(now, result);
    while let Some(event) = conn.poll_event() {
        let done = (now - started, &verdict);
        log_event(conn, &event, Some(done), deliver.name());
    }
}
