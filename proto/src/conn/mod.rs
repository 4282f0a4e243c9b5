//! [`Connection`]: one SMTP session as a pure state machine.
//!
//! # Run loop
//!
//! The driver owns the socket, the clock and the files; the connection owns everything
//! else. After **every** input (`handle_*`), the driver:
//!
//! 1. takes the reply bytes with [`Connection::poll_transmit`] and sends them;
//! 2. calls [`Connection::poll_action`] and does what it says, until it says
//!    [`Action::Read`] (or closes);
//! 3. waits for input, or for [`Connection::poll_timeout`] to pass, and hands over what
//!    happened: [`handle_input`](Connection::handle_input) or
//!    [`handle_received`](Connection::handle_received), [`handle_eof`](Connection::handle_eof),
//!    [`handle_timeout`](Connection::handle_timeout).
//!
//! Before it answers MAIL, RCPT or an XCLIENT that names a new client, the connection may
//! ask the driver a question only the destination or the server can answer (is there room
//! for a message this size, can this recipient's mailbox take mail, may this client open
//! another session): [`Action::Check`], answered with
//! [`handle_check`](Connection::handle_check). Commands pipelined behind it wait.
//!
//! A message arrives as [`Action::Begin`], any number of [`Action::Write`], then either
//! [`Action::Commit`] (make it durable, then call
//! [`handle_delivery`](Connection::handle_delivery)) or [`Action::Abort`] (throw it away).
//! The reply to the final `.` is only queued once `handle_delivery` says the message is
//! stored: `250` means on disk.
//!
//! # Methods by kind (as in quinn-proto)
//!
//! - (A) getters: [`is_closed`](Connection::is_closed), [`stats`](Connection::stats),
//!   [`envelope`](Connection::envelope), [`poll_timeout`](Connection::poll_timeout).
//! - (B) inputs: `handle_*`. `now` always comes from the caller; the connection never
//!   reads a clock.
//! - (D) outputs: [`poll_transmit`](Connection::poll_transmit),
//!   [`poll_action`](Connection::poll_action), [`poll_event`](Connection::poll_event).

mod body;
mod commands;
mod framer;
mod recv;
mod screen;
#[cfg(test)]
mod tests;
mod transaction;

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use self::framer::BodyOut;
use self::recv::RecvBuf;
use self::transaction::{Owed, Txn};
use crate::config::{BareNewline, Config};
use crate::delivery::{DeliveryError, Envelope, Protocol, QueueId, Recipient, TlsInfo};
use crate::reply::{self, Reply, ReplyBuf};
use crate::syntax::{MailParams, ReversePath, Verb};
use crate::timer::{Timer, TimerTable};

/// How much the connection reads at a time while receiving a body.
const BODY_READ: usize = 32 * 1024;
/// How much it reads at a time between commands.
const COMMAND_READ: usize = 4 * 1024;

/// What the driver knows about a new connection.
#[derive(Clone, Debug)]
pub struct Accept {
    /// The client's address (or the one a PROXY header gave).
    pub peer: SocketAddr,
    /// A process-wide connection number, shown in the greeting (`#<id>`).
    pub id: u64,
    /// Sessions active now, this one included, shown in the greeting (`(<n>)`).
    pub active: usize,
    /// The wall-clock time of the accept, for the greeting's date and the queue ids.
    pub wall: SystemTime,
    /// A number drawn once per process, part of every queue id, so that instances
    /// writing into one store never make the same id.
    pub instance: u32,
    /// Set when the connection is already TLS (an implicit-TLS listener).
    pub tls: Option<TlsInfo>,
}

/// What the driver must do next. Returned by [`Connection::poll_action`].
#[must_use = "the connection cannot make progress until the action is carried out"]
#[derive(Debug)]
#[non_exhaustive]
pub enum Action<'a> {
    /// Send what [`Connection::poll_transmit`] gives, then wait for input, end of input,
    /// or [`Connection::poll_timeout`].
    Read,
    /// Send the pending `220`, then run the TLS server handshake on this stream and call
    /// [`Connection::handle_tls_established`] (or close the stream if it fails).
    StartTls,
    /// A message begins: open a spool for this envelope. Body bytes follow.
    Begin(&'a Envelope),
    /// The next piece of the message's text, already dot-unstuffed: hand it to the
    /// message ([`crate::io::Message::write`]).
    Write(&'a [u8]),
    /// The body is complete: make it durable, then call [`Connection::handle_delivery`].
    Commit,
    /// Throw the open spool away: the message was refused or the client went away.
    Abort,
    /// Answer this question with [`Connection::handle_check`]; the command that asked it
    /// is answered then.
    Check(Check<'a>),
    /// Nothing to do until [`Connection::handle_delivery`] or
    /// [`Connection::handle_check`] is called.
    AwaitDelivery,
    /// Send what [`Connection::poll_transmit`] gives, then close the stream.
    Close(CloseReason),
}

/// A question the connection asks the driver before it answers a command. Returned in
/// [`Action::Check`]; answer with [`Connection::handle_check`].
#[derive(Debug)]
#[non_exhaustive]
pub enum Check<'a> {
    /// MAIL: can the destination take a message from this sender? `params.size` is the
    /// size the client declared (RFC 1870), if it did: a store without room for it
    /// answers [`crate::ErrorKind::InsufficientStorage`].
    Sender {
        /// The sender.
        from: &'a ReversePath<'static>,
        /// The MAIL parameters.
        params: &'a MailParams,
    },
    /// RCPT: can this recipient's mailbox take mail now? Its domain is already known to
    /// be one the server accepts mail for.
    Recipient {
        /// The transaction's sender.
        from: &'a ReversePath<'static>,
        /// The recipient, with its folder.
        recipient: &'a Recipient,
    },
    /// XCLIENT named a new client address: may it open one more session? An error means
    /// it has too many, and the session ends with `421 4.7.0`; an error with a reply of
    /// its own ([`crate::ErrorKind::Reply`]: the DNS blocklists blocked it) is answered
    /// with that reply, and the session ends.
    Client(IpAddr),
    /// HELO or EHLO, asked only when milters are configured (they may refuse a client
    /// by its HELO name): an error is the reply, and the session ends.
    Helo {
        /// The name the client gave.
        name: &'a str,
    },
    /// AUTH (`GSMTP_AUTH`): are this user and password right? An error is the reply
    /// (`535 5.7.8` when they are wrong, `454 4.7.0` when they could not be checked).
    Auth {
        /// The user name.
        user: &'a str,
        /// The password, as sent. Never log it.
        password: &'a [u8],
    },
}

/// Why a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// The client sent QUIT.
    Quit,
    /// The client closed its side.
    Eof,
    /// A timer ran out (`421 4.4.2`).
    Timeout,
    /// Too many bad commands (`421 4.7.0`).
    TooManyErrors,
    /// The server was full when it connected (`421 4.3.2`).
    Busy,
    /// Its address (an IPv4 address or an IPv6 /64) had `GM_MAX_CLIENTS_PER_IP` sessions
    /// open already (`421 4.7.0`).
    ClientLimit,
    /// The server is shutting down (`421 4.3.2`).
    Shutdown,
    /// The client broke the framing in a way that cannot be recovered from, or spoke
    /// another protocol (HTTP).
    Protocol,
    /// A filter refused the client at its connection or its HELO (`554 5.7.1`, or `421`
    /// for a temporary refusal).
    Refused,
    /// The client wrote before the greeting's last line (`GSMTP_GREET_PAUSE`):
    /// `554 5.5.1`.
    EarlyTalker,
}

impl CloseReason {
    /// A short name for logs: `quit`, `eof`, `timeout`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Quit => "quit",
            Self::Eof => "eof",
            Self::Timeout => "timeout",
            Self::TooManyErrors => "too-many-errors",
            Self::Busy => "busy",
            Self::ClientLimit => "client-limit",
            Self::Shutdown => "shutdown",
            Self::Protocol => "protocol",
            Self::Refused => "refused",
            Self::EarlyTalker => "early-talker",
        }
    }
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Things worth logging. Returned by [`Connection::poll_event`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A command line as received (only with `GSMTP_VERBOSE`), with control characters
    /// and non-UTF-8 octets escaped (`\r`, `\x1b`), so it is safe to log.
    Command(String),
    /// A message was stored and acknowledged.
    Queued {
        /// Its queue id.
        id: QueueId,
        /// Its size, as RFC 1870 counts it.
        size: u64,
        /// Its sender, as `<a@b>` or `<>`.
        from: String,
        /// Its recipients, as the client gave them.
        recipients: Vec<String>,
    },
    /// A command, or a message at its end, was answered with a `4xx` or `5xx` reply.
    Refused {
        /// The reply sent.
        reply: ReplyBuf,
        /// The command refused; `None` when the line did not parse.
        verb: Option<Verb>,
        /// The transaction's queue id, if a transaction was open.
        id: Option<QueueId>,
        /// The transaction's sender, as `<a@b>` or `<>`, if one was given.
        from: Option<String>,
        /// The recipient refused, for RCPT.
        to: Option<String>,
        /// What the destination said happened, when it refused or failed
        /// ([`DeliveryError::cause`]).
        cause: Option<String>,
    },
    /// An AUTH exchange ended: the user (escaped for logs) and whether the password was
    /// right. The password is never in an event.
    Auth {
        /// The user name the client gave, escaped as [`Event::Command`] is.
        user: String,
        /// Whether it was accepted.
        ok: bool,
    },
    /// The client wrote before the greeting's last line: what it sent, escaped and cut
    /// to 100 octets. The session is refused and closed.
    EarlyTalker(String),
}

/// Counters over the life of a connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Octets received.
    pub bytes_in: u64,
    /// Octets queued for sending.
    pub bytes_out: u64,
    /// Command lines processed.
    pub commands: u64,
    /// Messages stored and acknowledged.
    pub messages: u64,
    /// Commands and messages answered with a `4xx` or `5xx` reply.
    pub refusals: u64,
}

/// What the connection is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Reading command lines.
    Command,
    /// Throwing away an overlong command line, up to its LF.
    DiscardLine,
    /// Receiving a DATA body.
    Data,
    /// Receiving a BDAT chunk. `refused` chunks are read and thrown away, then answered
    /// with that reply.
    Chunk {
        remaining: u64,
        last: bool,
        refused: Option<&'static Reply>,
    },
    /// Waiting for [`Connection::handle_delivery`].
    Delivering,
    /// Waiting for [`Connection::handle_check`] (the question is owed until
    /// [`Action::Check`] asks it).
    Checking,
    /// Waiting for [`Connection::handle_tls_established`].
    Handshake,
    /// The greeting's last line is not written yet (`GSMTP_GREET_PAUSE`): it is due at
    /// `until`, or, once queued (`None`), written with the next
    /// [`Connection::poll_transmit`]. Any input before then is an early talker's.
    Greeting { until: Option<Instant> },
    /// Finished.
    Closed(CloseReason),
}

/// Where a session began: what the greeting shows and queue ids are made of.
#[derive(Clone, Copy, Debug)]
struct Origin {
    /// The connection number.
    id: u64,
    /// Sessions active at accept.
    active: u32,
    /// [`Accept::instance`].
    instance: u32,
    /// The accept's wall-clock time.
    wall: SystemTime,
    /// The accept's monotonic time.
    start: Instant,
}

/// The client's HELO or EHLO.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Helo {
    /// The name it gave.
    name: Box<str>,
    /// EHLO (or a proxy's `PROTO=ESMTP`), not HELO.
    esmtp: bool,
}

/// One SMTP session: bytes in, replies and storage actions out. See the module docs.
#[derive(Debug)]
pub struct Connection {
    cfg: Arc<Config>,
    origin: Origin,
    /// When input last arrived: with `origin`, the wall-clock time of a command, so that
    /// a queue id tells when its message began (S3 keys sort by it).
    last_input: Instant,
    /// The client as the Received header shows it (XCLIENT and PROXY may change it).
    client_ip: IpAddr,
    client_name: Option<Box<str>>,
    /// The client's address is a trusted proxy (XCLIENT allowed).
    trusted: bool,
    // Rarely set or large, so boxed: an idle connection stays small.
    tls: Option<Box<TlsInfo>>,
    helo: Option<Helo>,
    /// The user an AUTH exchange (or a proxy's XCLIENT `LOGIN`) named.
    auth_user: Option<Box<str>>,
    /// The AUTH exchange waiting for the client's next response line.
    sasl: Option<Box<crate::sasl::Exchange>>,
    /// The mail transaction.
    txn: Txn,
    /// What a command waiting for [`Connection::handle_check`] will do once answered.
    pending: Option<Box<commands::Pending>>,
    /// The actions owed to the driver.
    owed: Owed,
    /// The verb of the command being run, for [`Event::Refused`].
    verb: Option<Verb>,
    messages_started: u32,
    errors: u32,
    mode: Mode,
    rx: RecvBuf,
    tx: Vec<u8>,
    timers: TimerTable,
    events: VecDeque<Event>,
    stats: Stats,
    /// What the DNS blocklists said of the client ([`Connection::handle_dnsbl`]).
    dnsbl: Option<Box<screen::Screened>>,
}

impl Connection {
    /// A new session: queues the greeting and arms the timers. With
    /// `GSMTP_GREET_PAUSE`, only the greeting's first line (`220-`) when the pause is not
    /// zero; the last comes after it, and input before it is an early talker's.
    pub fn new(cfg: Arc<Config>, now: Instant, accept: Accept) -> Self {
        let mut c = Self::blank(cfg, now, accept);
        match c.cfg.greet_pause {
            None => c.write_greeting(),
            Some(pause) if pause.is_zero() => {
                c.write_greeting();
                c.mode = Mode::Greeting { until: None };
            }
            Some(pause) => {
                // Only the first line now: the last is written when the pause is over.
                let first = format!("220-{}\r\n", c.greeting_text());
                c.tx.extend_from_slice(first.as_bytes());
                c.mode = Mode::Greeting {
                    until: Some(now + pause),
                };
            }
        }
        c
    }

    /// A session refused at once, `why` being [`CloseReason::Busy`] (the server is full:
    /// `421 4.3.2`) or [`CloseReason::ClientLimit`] (this client has too many sessions:
    /// `421 4.7.0`). Queues the reply, then closes.
    pub fn refuse(cfg: Arc<Config>, now: Instant, accept: Accept, why: CloseReason) -> Self {
        let mut c = Self::blank(cfg, now, accept);
        match why {
            CloseReason::ClientLimit => reply::write_client_limit(&mut c.tx, &c.cfg.host_name),
            _ => reply::write_busy(&mut c.tx, &c.cfg.host_name),
        }
        c.stats.refusals += 1;
        c.mode = Mode::Closed(why);
        c
    }

    /// A connection answered `reply` instead of the greeting and closed: a filter
    /// refused the client (`554 5.7.1`, or `421 4.7.1` when it may try again later).
    pub fn refuse_with(cfg: Arc<Config>, now: Instant, accept: Accept, reply: &ReplyBuf) -> Self {
        let mut c = Self::blank(cfg, now, accept);
        let code = if reply.code < 500 { 421 } else { 554 };
        reply::write_line(&mut c.tx, code, &reply.status, &reply.text);
        c.stats.refusals += 1;
        c.mode = Mode::Closed(CloseReason::Refused);
        c
    }

    fn blank(cfg: Arc<Config>, now: Instant, accept: Accept) -> Self {
        let mut timers = TimerTable::default();
        timers.set(Timer::Idle, now + cfg.timeout);
        timers.set(Timer::Session, now + cfg.session_timeout);
        let client_ip = crate::policy::canonical(accept.peer.ip());
        Self {
            trusted: cfg.is_trusted_proxy(client_ip),
            tls: accept.tls.map(Box::new),
            cfg,
            origin: Origin {
                id: accept.id,
                active: u32::try_from(accept.active).unwrap_or(u32::MAX),
                instance: accept.instance,
                wall: accept.wall,
                start: now,
            },
            last_input: now,
            client_ip,
            client_name: None,
            helo: None,
            auth_user: None,
            sasl: None,
            txn: Txn::Idle,
            pending: None,
            owed: Owed::default(),
            verb: None,
            messages_started: 0,
            errors: 0,
            mode: Mode::Command,
            rx: RecvBuf::default(),
            tx: Vec::new(),
            timers,
            events: VecDeque::new(),
            stats: Stats::default(),
            dnsbl: None,
        }
    }

    // (A) getters

    /// Whether the session is over (the last action was, or will be, [`Action::Close`]).
    pub fn is_closed(&self) -> bool {
        matches!(self.mode, Mode::Closed(_))
    }

    /// Counters over the life of the session.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The envelope of the message being received or delivered, if any.
    pub fn envelope(&self) -> Option<&Envelope> {
        match &self.txn {
            Txn::Text(t) => Some(&t.envelope),
            Txn::Delivering(d) => Some(&d.0),
            Txn::Idle | Txn::Open(_) => None,
        }
    }

    /// Whether the session runs over TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The client's address as logged and traced (XCLIENT or PROXY may have changed it).
    pub fn client_ip(&self) -> IpAddr {
        self.client_ip
    }

    /// The client's name, if a proxy told us one (XCLIENT `NAME`).
    pub fn client_name(&self) -> Option<&str> {
        self.client_name.as_deref()
    }

    /// The HELO or EHLO name the client gave, if any.
    pub fn helo(&self) -> Option<&str> {
        self.helo.as_ref().map(|h| &*h.name)
    }

    /// The user the client authenticated as (AUTH, or a proxy's XCLIENT `LOGIN`).
    pub fn auth_user(&self) -> Option<&str> {
        self.auth_user.as_deref()
    }

    /// Whether the greeting's last line is not written yet (`GSMTP_GREET_PAUSE`): input
    /// already waiting now was sent before it. A driver reads without waiting before it
    /// sends what [`Connection::poll_transmit`] gives, and hands over what it got.
    pub fn awaits_greeting(&self) -> bool {
        matches!(self.mode, Mode::Greeting { .. })
    }

    /// The TLS parameters, when the session runs over TLS.
    pub fn tls(&self) -> Option<&TlsInfo> {
        self.tls.as_deref()
    }

    /// The connection number given at accept (shown in the greeting as `#<id>`).
    pub fn id(&self) -> u64 {
        self.origin.id
    }

    /// How many received bytes are buffered and not yet consumed.
    pub fn buffered_len(&self) -> usize {
        self.rx.len()
    }

    /// The next deadline, if any: when it passes, call [`Connection::handle_timeout`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.mode {
            Mode::Delivering | Mode::Checking | Mode::Closed(_) => None,
            Mode::Greeting { until: Some(at) } => {
                Some(self.timers.next().map_or(at, |t| t.min(at)))
            }
            _ => self.timers.next(),
        }
    }

    // (B) inputs

    /// Hands over received bytes (a copy is kept until they are consumed).
    pub fn handle_input(&mut self, now: Instant, data: &[u8]) {
        self.rx.extend(data);
        self.received(now, data.len());
    }

    /// Free space to read into, for drivers that read straight into the connection's
    /// buffer; follow with [`Connection::handle_received`].
    pub fn recv_buf(&mut self) -> &mut [u8] {
        let want = match self.mode {
            Mode::Data | Mode::Chunk { .. } => BODY_READ,
            _ => COMMAND_READ.max(self.cfg.max_command_line + 1),
        };
        self.rx.spare(want)
    }

    /// Records that `n` bytes were read into [`Connection::recv_buf`].
    pub fn handle_received(&mut self, now: Instant, n: usize) {
        self.rx.filled(n);
        self.received(now, n);
    }

    fn received(&mut self, now: Instant, n: usize) {
        self.stats.bytes_in += n as u64;
        self.last_input = now;
        if self.awaits_greeting() && n > 0 {
            return self.early_talker();
        }
        if !self.is_closed() {
            self.timers.set(Timer::Idle, now + self.cfg.timeout);
        }
    }

    /// The client wrote before the greeting's last line: what it wrote is logged, the
    /// greeting's unsent part dropped, and the session refused and closed.
    fn early_talker(&mut self) {
        let seen = self.rx.data();
        let cut = &seen[..seen.len().min(100)];
        let what = crate::syntax::escape_for_log(cut);
        self.events.push_back(Event::EarlyTalker(what));
        self.tx.clear();
        reply::EARLY_TALKER.encode(&mut self.tx);
        self.stats.refusals += 1;
        self.mode = Mode::Closed(CloseReason::EarlyTalker);
    }

    /// The client closed its side. A message in progress is aborted.
    pub fn handle_eof(&mut self, _now: Instant) {
        if !self.is_closed() {
            self.reset_transaction();
            self.mode = Mode::Closed(CloseReason::Eof);
        }
    }

    /// A deadline may have passed. Calling it early is a no-op.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Mode::Greeting { until: Some(at) } = self.mode
            && at <= now
        {
            // The pause is over: the greeting's last line.
            let text = self.greeting_text();
            reply::write_line(&mut self.tx, 220, "", text);
            self.mode = Mode::Greeting { until: None };
            return;
        }
        if matches!(
            self.mode,
            Mode::Delivering | Mode::Checking | Mode::Closed(_)
        ) || self.timers.expired(now).is_none()
        {
            return;
        }
        if self.mode != Mode::Handshake {
            reply::write_timeout(&mut self.tx, &self.cfg.host_name);
        }
        self.reset_transaction();
        self.mode = Mode::Closed(CloseReason::Timeout);
    }

    /// The server is shutting down: a session not in the middle of storing a message
    /// gets `421 4.3.2` and is closed; a message being received is aborted.
    pub fn handle_shutdown(&mut self, _now: Instant) {
        if matches!(
            self.mode,
            Mode::Delivering | Mode::Checking | Mode::Closed(_)
        ) {
            return;
        }
        if self.mode != Mode::Handshake {
            reply::write_shutdown(&mut self.tx, &self.cfg.host_name);
        }
        self.reset_transaction();
        self.mode = Mode::Closed(CloseReason::Shutdown);
    }

    /// The TLS handshake that [`Action::StartTls`] asked for succeeded. The session starts
    /// over, as RFC 3207 §4.2 requires: the client must send EHLO again.
    pub fn handle_tls_established(&mut self, now: Instant, info: TlsInfo) {
        self.tls = Some(Box::new(info));
        self.helo = None;
        self.auth_user = None;
        self.sasl = None;
        self.reset_transaction();
        self.rx.clear();
        self.mode = Mode::Command;
        self.timers.set(Timer::Idle, now + self.cfg.timeout);
    }

    /// The result of the store that [`Action::Commit`] asked for. Queues the reply to the
    /// final `.` (or `BDAT LAST`): `250` only on success.
    pub fn handle_delivery(&mut self, now: Instant, result: Result<(), DeliveryError>) {
        if self.mode != Mode::Delivering {
            return;
        }
        self.mode = Mode::Command;
        self.timers.set(Timer::Idle, now + self.cfg.timeout);
        match result {
            Ok(()) => {
                if let Txn::Delivering(d) = std::mem::take(&mut self.txn) {
                    let (env, size) = *d;
                    reply::write_line(
                        &mut self.tx,
                        250,
                        "2.0.0",
                        format_args!("OK : queued as {}", env.id),
                    );
                    self.stats.messages += 1;
                    let recipients = env.recipients.into_iter().map(|r| r.address).collect();
                    let from = env.from.to_string();
                    self.events.push_back(Event::Queued {
                        id: env.id,
                        size,
                        from,
                        recipients,
                    });
                }
            }
            Err(e) => {
                let r = e.reply_at(crate::Stage::Data);
                self.reject_because(r, None, e.cause());
            }
        }
        self.end_transaction();
    }

    /// The answer to the question [`Action::Check`] asked. Queues the reply to the command
    /// that asked it; the commands pipelined behind it run next.
    pub fn handle_check(&mut self, now: Instant, result: Result<(), DeliveryError>) {
        if self.mode != Mode::Checking {
            return;
        }
        self.mode = Mode::Command;
        self.timers.set(Timer::Idle, now + self.cfg.timeout);
        if let Some(pending) = self.pending.take() {
            self.checked(*pending, result);
        }
    }

    // (D) outputs

    /// Moves the reply bytes waiting to be sent into `out` (without copying when `out` is
    /// empty). Returns how many bytes were added.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) -> usize {
        if self.mode == (Mode::Greeting { until: None }) {
            // The greeting's last line goes out now: the session proper begins.
            self.mode = Mode::Command;
        }
        let n = self.tx.len();
        self.stats.bytes_out += n as u64;
        if out.is_empty() {
            std::mem::swap(out, &mut self.tx);
        } else {
            out.append(&mut self.tx);
        }
        n
    }

    /// The next thing worth logging, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// What the driver must do next. See the module docs for the loop around it.
    pub fn poll_action(&mut self) -> Action<'_> {
        loop {
            if std::mem::take(&mut self.owed.abort) {
                return Action::Abort;
            }
            // Borrowing only on the path that returns keeps NLL happy (its "problem case
            // #3"): `if let` here would not compile.
            if std::mem::take(&mut self.owed.check) && self.pending_check().is_some() {
                #[allow(clippy::unnecessary_unwrap)]
                return Action::Check(self.pending_check().expect("checked just above"));
            }
            if std::mem::take(&mut self.owed.begin) && self.envelope().is_some() {
                return Action::Begin(self.envelope().expect("checked just above"));
            }
            match self.mode {
                Mode::Closed(reason) => {
                    self.rx.clear();
                    self.rx.release();
                    return Action::Close(reason);
                }
                Mode::Handshake => return Action::StartTls,
                Mode::Greeting { .. } => return Action::Read,
                Mode::Delivering | Mode::Checking => return Action::AwaitDelivery,
                Mode::Command => {
                    if !self.next_command() {
                        self.rx.release();
                        return Action::Read;
                    }
                }
                Mode::DiscardLine => {
                    if !self.discard_line() {
                        return Action::Read;
                    }
                }
                Mode::Data | Mode::Chunk { .. } => match self.body_step() {
                    BodyOut::Write(range) => return Action::Write(self.rx.abs(range)),
                    BodyOut::Crlf => return Action::Write(b"\r\n"),
                    BodyOut::Commit => return Action::Commit,
                    BodyOut::NeedInput => return Action::Read,
                    BodyOut::Continue => {}
                },
            }
        }
    }

    // Replies

    fn reply(&mut self, r: Reply) {
        r.encode(&mut self.tx);
    }

    /// Queues a `4xx` or `5xx` reply to the command being run, reports it as an
    /// [`Event::Refused`] and counts it; too many `5xx` end the session.
    fn reject(&mut self, r: impl Into<ReplyBuf>) {
        self.reject_because(r, None, None);
    }

    /// [`Connection::reject`] for a RCPT (naming the recipient refused) or for a
    /// destination's refusal or fault (with what it said happened).
    fn reject_because(&mut self, r: impl Into<ReplyBuf>, to: Option<String>, cause: Option<&str>) {
        let r = r.into();
        r.encode(&mut self.tx);
        self.stats.refusals += 1;
        let (id, from) = match self.txn.id_and_sender() {
            Some((id, from)) => (Some(id), Some(from.to_string())),
            None => (None, None),
        };
        let code = r.code;
        self.events.push_back(Event::Refused {
            reply: r,
            verb: self.verb,
            id,
            from,
            to,
            cause: cause.map(str::to_string),
        });
        if code >= 500 && code != 552 {
            self.errors += 1;
            if self.errors >= self.cfg.max_errors && !self.is_closed() {
                reply::write_too_many_errors(&mut self.tx, &self.cfg.host_name);
                self.reset_transaction();
                self.mode = Mode::Closed(CloseReason::TooManyErrors);
            }
        }
    }

    fn write_greeting(&mut self) {
        let text = self.greeting_text();
        reply::write_line(&mut self.tx, 220, "", text);
    }

    /// The greeting's text (the original's).
    fn greeting_text(&self) -> String {
        let Origin {
            id, active, wall, ..
        } = self.origin;
        let date = crate::trace::rfc5322_date(wall);
        format!(
            "{} SMTP Guerrilla-SMTPd #{id} ({active}) {date}",
            self.cfg.host_name
        )
    }

    fn bare_newline_rejected(&self) -> bool {
        self.cfg.bare_newline == BareNewline::Reject
    }

    /// The `with` keyword of a message's Received header: HELO or EHLO, TLS or not,
    /// SMTPUTF8 or not, authenticated or not (RFC 3848).
    fn protocol(&self, smtputf8: bool) -> Protocol {
        let esmtp = self.helo.as_ref().is_some_and(|h| h.esmtp);
        let plain = match (esmtp, self.tls.is_some(), smtputf8) {
            (false, false, _) => Protocol::Smtp,
            (_, false, false) => Protocol::Esmtp,
            (_, true, false) | (false, true, true) => Protocol::Esmtps,
            (true, false, true) => Protocol::Utf8Smtp,
            (true, true, true) => Protocol::Utf8Smtps,
        };
        if self.auth_user.is_some() {
            plain.authenticated()
        } else {
            plain
        }
    }
}
