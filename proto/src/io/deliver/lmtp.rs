//! `GSMTP_STORAGE=lmtp`: each transaction is relayed, live, to an LMTP server (RFC 2033),
//! the way mail reaches Dovecot or Cyrus.
//!
//! MAIL opens a transaction on a link to the LMTP server (one kept alive, or a new one),
//! each RCPT is asked of the LMTP server there and then, so an unknown user is refused at
//! RCPT with the server's own reply (`550 5.1.1`), and the text is streamed to it as it
//! arrives (dot-stuffed, with our `Received` header first; the LMTP server writes its own
//! `Return-Path` and `Delivered-To`). After the final dot it answers once per accepted
//! recipient, and [`crate::deliver::lmtp::outcome`] turns those answers into the one SMTP
//! reply: all delivered is `250`; all refused alike is that refusal; a mix is `451`, so
//! that no copy is ever lost or claimed, at the price of a duplicate for the recipients
//! that had theirs when the client sends it again.
//!
//! Every wait on the server is bounded by `GSMTP_LMTP_TIMEOUT`; a server that is down,
//! slow or talks nonsense is `451`, and a transaction it had not finished is dropped with
//! its link (an LMTP server delivers nothing of a DATA that did not end with its dot). At
//! most `GSMTP_LMTP_CONNECTIONS` links are open at once; each transaction holds one from
//! MAIL to its end.

use std::io;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use async_lock::{Semaphore, SemaphoreGuardArc};
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use futures_lite::{AsyncRead, AsyncWrite};

use super::pool::{self, Pool};
use super::spool::Spool;
use super::{Deliver, Message, Transaction};
use crate::config::{Config, ConfigError, LmtpConfig, StreamAddr};
use crate::deliver::lmtp::{self as pure, Capabilities, DotStuffer, ServerReply};
use crate::delivery::{DeliveryError, Envelope, Recipient};
use crate::io::runtime::Runtime;
use crate::io::time::with_timeout;
use crate::syntax::{MailParams, ReversePath};
use crate::verdict::Verdict;

/// How much stuffed text is gathered before it is written.
const WRITE_CHUNK: usize = 64 * 1024;

/// The reply's text when the LMTP server fails (down, silent, breaking off).
const FAILED: &str = "Error: the delivery agent failed, try again later";

/// A stream to the LMTP server: TCP or a Unix socket.
trait Duplex: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Duplex for T {}

/// A connection to the LMTP server after its LHLO.
struct Link {
    stream: Box<dyn Duplex>,
    /// Read but not yet parsed.
    buf: Vec<u8>,
    caps: Capabilities,
}

/// The LMTP destination.
#[derive(Debug)]
pub struct Lmtp<R: Runtime>(Arc<Inner<R>>);

/// What the LMTP destination's transactions share.
struct Inner<R: Runtime> {
    rt: R,
    addr: StreamAddr,
    cfg: LmtpConfig,
    host: String,
    idle: Pool<Link>,
    slots: Arc<Semaphore>,
    /// Where messages are held while the checks run (`GSMTP_VERIFY` on), else `None`:
    /// the text streams through.
    hold_in: Option<std::path::PathBuf>,
}

impl<R: Runtime> Inner<R> {
    /// Where held messages are spooled (only asked while holding).
    fn hold_dir(&self) -> &std::path::Path {
        self.hold_in
            .as_deref()
            .unwrap_or_else(|| std::path::Path::new("."))
    }
}

impl<R: Runtime> std::fmt::Debug for Inner<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lmtp")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// A transaction relayed to the LMTP server: MAIL accepted, recipients being asked.
pub struct LmtpTransaction<R: Runtime> {
    lmtp: Arc<Inner<R>>,
    /// `None` once the link broke: the transaction can only fail from then on.
    link: Option<Link>,
    _slot: SemaphoreGuardArc,
    /// Recipients the server accepted: as many answers come after the dot.
    accepted: usize,
}

/// A message on its way to the LMTP server: streamed after its DATA was answered `354`,
/// or, when the checks of `GSMTP_VERIFY` run, held in a spool until they are done (the
/// verdict's `Authentication-Results` field goes at the top) and sent at the commit.
pub struct LmtpMessage<R: Runtime> {
    lmtp: Arc<Inner<R>>,
    /// `None` once the link broke.
    link: Option<Link>,
    _slot: SemaphoreGuardArc,
    accepted: usize,
    stuffer: DotStuffer,
    out: Vec<u8>,
    /// The held text and where the `Authentication-Results` field goes in it.
    held: Option<(Spool, usize)>,
}

impl<R: Runtime> std::fmt::Debug for LmtpTransaction<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LmtpTransaction")
            .field("accepted", &self.accepted)
            .finish_non_exhaustive()
    }
}

impl<R: Runtime> std::fmt::Debug for LmtpMessage<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LmtpMessage")
            .field("accepted", &self.accepted)
            .finish_non_exhaustive()
    }
}

impl<R: Runtime> Lmtp<R> {
    /// Takes the settings; the server need not be up yet.
    pub fn open(rt: R, cfg: &Config) -> Result<Self, ConfigError> {
        let addr = cfg.lmtp.addr.clone().ok_or_else(|| ConfigError {
            key: "GSMTP_LMTP_ADDR".into(),
            message: "GSMTP_STORAGE=lmtp needs an address".into(),
        })?;
        let hold_in = if cfg.verify.any() {
            Some(super::spool_dir(cfg)?)
        } else {
            None
        };
        Ok(Self(Arc::new(Inner {
            rt,
            addr,
            cfg: cfg.lmtp.clone(),
            host: cfg.host_name.clone(),
            idle: Pool::new(cfg.lmtp.connections),
            slots: Arc::new(Semaphore::new(cfg.lmtp.connections)),
            hold_in,
        })))
    }
}

impl<R: Runtime> Inner<R> {
    /// A link: one kept alive (`true`), or a new one, greeted and LHLO done.
    async fn link(&self, deadline: Instant) -> io::Result<(Link, bool)> {
        if let Some(l) = self.idle.take(|_| true) {
            return Ok((l, true));
        }
        let stream: Box<dyn Duplex> = match &self.addr {
            StreamAddr::Unix(path) => {
                Box::new(async_io::Async::<std::os::unix::net::UnixStream>::connect(path).await?)
            }
            StreamAddr::Tcp(hostport) => Box::new(pool::connect(&self.rt, hostport.clone()).await?),
        };
        let mut l = Link {
            stream,
            buf: Vec::new(),
            caps: Capabilities::default(),
        };
        expect(read_reply(&mut l, deadline).await?, 220)?;
        send(
            &mut l,
            format!("LHLO {}\r\n", self.host).as_bytes(),
            deadline,
        )
        .await?;
        let lines = read_lines(&mut l, deadline).await?;
        if !lines.last().is_some_and(|l| l.starts_with("250")) {
            return Err(io::Error::other(format!("LHLO refused: {lines:?}")));
        }
        l.caps = Capabilities::parse(lines.iter().map(String::as_str));
        Ok((l, false))
    }

    /// A link with a transaction open: MAIL accepted. A kept-alive link the server has
    /// closed meanwhile is replaced (nothing of this transaction reached it).
    async fn open_transaction(
        &self,
        from: &ReversePath<'static>,
        params: &MailParams,
    ) -> Result<Link, DeliveryError> {
        let deadline = Instant::now() + self.cfg.timeout;
        loop {
            let (mut l, reused) = self
                .link(deadline)
                .await
                .map_err(|e| self.fault("connect and LHLO", &e))?;
            let cmd = l.caps.mail_command(from, params);
            let reply = match send(&mut l, cmd.as_bytes(), deadline).await {
                Ok(()) => read_reply(&mut l, deadline).await,
                Err(e) => Err(e),
            };
            match reply {
                Ok(r) if r.is_ok() => return Ok(l),
                // A kept link the server is closing (Dovecot says 421 as it stops).
                Ok(r) if r.code == 421 && reused => continue,
                Ok(r) if r.code == 421 => return Err(self.refused("MAIL", &r)),
                Ok(r) => {
                    self.keep(l, deadline).await;
                    return Err(self.refused("MAIL", &r));
                }
                Err(_) if reused => continue,
                Err(e) => return Err(self.fault("MAIL", &e)),
            }
        }
    }

    /// Resets a link and keeps it for the next transaction (or drops it, if it does not
    /// answer).
    async fn keep(&self, mut l: Link, deadline: Instant) {
        let reset = async {
            send(&mut l, b"RSET\r\n", deadline).await?;
            expect(read_reply(&mut l, deadline).await?, 250)
        };
        if reset.await.is_ok() {
            self.idle.put(l);
        }
    }

    /// An I/O failure with the LMTP server during `what`: a `451` naming the server in
    /// its cause.
    fn fault(&self, what: &str, e: &io::Error) -> DeliveryError {
        let err = if e.kind() == io::ErrorKind::TimedOut {
            DeliveryError::timeout()
        } else {
            DeliveryError::transient().with_text(FAILED)
        };
        err.because(format_args!("LMTP server {} during {what}: {e}", self.addr))
    }

    /// DATA, answered `354`: the link, ready for the text.
    async fn data(&self, mut l: Link) -> Result<Link, DeliveryError> {
        let deadline = Instant::now() + self.cfg.timeout;
        let reply = match send(&mut l, b"DATA\r\n", deadline).await {
            Ok(()) => read_reply(&mut l, deadline).await,
            Err(e) => Err(e),
        };
        match reply {
            Ok(r) if r.code == 354 => Ok(l),
            Ok(r) => {
                self.keep(l, deadline).await;
                Err(self.refused("DATA", &r))
            }
            Err(e) => Err(self.fault("DATA", &e)),
        }
    }

    /// The link broke earlier in this transaction.
    fn broken(&self) -> DeliveryError {
        DeliveryError::transient()
            .with_text(FAILED)
            .because(format_args!(
                "the link to the LMTP server {} broke earlier in this transaction",
                self.addr
            ))
    }

    /// The LMTP server's refusal of `what`, as the client's reply, naming the server
    /// and its answer in its cause.
    fn refused(&self, what: &str, r: &ServerReply) -> DeliveryError {
        r.refusal().because(format_args!(
            "LMTP server {} answered {what} with {} {} {}",
            self.addr, r.code, r.status, r.text
        ))
    }
}

fn expect(r: ServerReply, code: u16) -> io::Result<ServerReply> {
    if r.code == code {
        Ok(r)
    } else {
        Err(io::Error::other(format!(
            "expected {code}, got {} {} {}",
            r.code, r.status, r.text
        )))
    }
}

/// Writes `bytes`, by `deadline`.
async fn send(l: &mut Link, bytes: &[u8], deadline: Instant) -> io::Result<()> {
    let write = async {
        l.stream.write_all(bytes).await?;
        l.stream.flush().await
    };
    with_timeout(deadline, write).await?
}

/// Reads one reply, by `deadline`.
async fn read_reply(l: &mut Link, deadline: Instant) -> io::Result<ServerReply> {
    let read = async {
        loop {
            match pure::parse_reply(&l.buf) {
                Ok(Some((reply, n))) => {
                    l.buf.drain(..n);
                    return Ok(reply);
                }
                Ok(None) => {}
                Err(()) => return Err(io::Error::other("not an LMTP reply")),
            }
            if fill(l).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    };
    with_timeout(deadline, read).await?
}

/// Reads what the server sent next onto the link's buffer (no buffer on the stack: it
/// would make every future that reads large). Returns how much came; 0 at its end.
async fn fill(l: &mut Link) -> io::Result<usize> {
    let had = l.buf.len();
    l.buf.resize(had + 4096, 0);
    let n = l.stream.read(&mut l.buf[had..]).await;
    l.buf.truncate(had + *n.as_ref().unwrap_or(&0));
    n
}

/// Reads one multi-line reply's lines (for LHLO's capabilities).
async fn read_lines(l: &mut Link, deadline: Instant) -> io::Result<Vec<String>> {
    let mut lines = Vec::new();
    loop {
        while let Some(lf) = memchr::memchr(b'\n', &l.buf) {
            let line: Vec<u8> = l.buf.drain(..=lf).collect();
            let line = String::from_utf8_lossy(&line).trim_end().to_string();
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line);
            if last || lines.len() > pure::MAX_REPLY_LINES {
                return Ok(lines);
            }
        }
        if l.buf.len() > pure::MAX_REPLY_LINE {
            return Err(io::Error::other("an overlong LHLO reply"));
        }
        if with_timeout(deadline, fill(l)).await?? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
}

impl<R: Runtime> Deliver for Lmtp<R> {
    type Transaction = LmtpTransaction<R>;

    fn name(&self) -> &'static str {
        "lmtp"
    }

    /// The server greets and answers LHLO (within `GSMTP_LMTP_TIMEOUT`); then QUIT.
    async fn probe(&self) -> Result<(), DeliveryError> {
        let lmtp = &self.0;
        let deadline = Instant::now() + lmtp.cfg.timeout;
        let (mut l, _) = Box::pin(lmtp.link(deadline))
            .await
            .map_err(|e| lmtp.fault("connect and LHLO", &e))?;
        let _ = send(&mut l, b"QUIT\r\n", deadline).await;
        Ok(())
    }

    async fn start(
        &self,
        from: &ReversePath<'static>,
        params: &MailParams,
    ) -> Result<LmtpTransaction<R>, DeliveryError> {
        let lmtp = &self.0;
        let deadline = Instant::now() + lmtp.cfg.timeout;
        let slot = with_timeout(deadline, lmtp.slots.acquire_arc())
            .await
            .map_err(|_| {
                DeliveryError::timeout().because(format_args!(
                    "all GSMTP_LMTP_CONNECTIONS ({}) links to {} stayed busy",
                    lmtp.cfg.connections, lmtp.addr
                ))
            })?;
        let link = Box::pin(lmtp.open_transaction(from, params)).await?;
        Ok(LmtpTransaction {
            lmtp: Arc::clone(lmtp),
            link: Some(link),
            _slot: slot,
            accepted: 0,
        })
    }
}

impl<R: Runtime> Transaction for LmtpTransaction<R> {
    type Message = LmtpMessage<R>;

    /// Asks the LMTP server: its refusal is the client's reply.
    async fn add_recipient(&mut self, r: &Recipient) -> Result<(), DeliveryError> {
        let lmtp = &self.lmtp;
        let deadline = Instant::now() + lmtp.cfg.timeout;
        let Some(l) = self.link.as_mut() else {
            return Err(lmtp.broken());
        };
        let cmd = format!("RCPT TO:<{}>\r\n", r.delivered_to);
        let reply = match send(l, cmd.as_bytes(), deadline).await {
            Ok(()) => read_reply(l, deadline).await,
            Err(e) => Err(e),
        };
        match reply {
            Ok(reply) if reply.is_ok() => {
                self.accepted += 1;
                Ok(())
            }
            Ok(reply) => Err(lmtp.refused(&format!("RCPT TO:<{}>", r.delivered_to), &reply)),
            Err(e) => {
                self.link = None;
                Err(lmtp.fault("RCPT", &e))
            }
        }
    }

    /// DATA, then our `Received` header; or, when the checks run, the text is held.
    async fn begin(self, env: &Envelope) -> Result<LmtpMessage<R>, DeliveryError> {
        let Self {
            lmtp,
            link,
            _slot,
            accepted,
        } = self;
        let Some(l) = link else {
            return Err(lmtp.broken());
        };
        let (prefix, results_at) =
            crate::deliver::prefix(env, &lmtp.host, SystemTime::now(), false);
        let mut m = LmtpMessage {
            link: None,
            lmtp,
            _slot,
            accepted,
            stuffer: DotStuffer::default(),
            out: Vec::new(),
            held: None,
        };
        if m.lmtp.hold_in.is_some() {
            m.link = Some(l);
            m.held = Some((Spool::new(prefix), results_at));
        } else {
            m.link = Some(m.lmtp.data(l).await?);
            m.stuffer.stuff(&prefix, &mut m.out);
        }
        Ok(m)
    }

    /// RSET keeps the link for the next transaction.
    async fn abort(self) {
        if let Some(l) = self.link {
            let deadline = Instant::now() + self.lmtp.cfg.timeout;
            self.lmtp.keep(l, deadline).await;
        }
    }
}

impl<R: Runtime> LmtpMessage<R> {
    /// Writes the stuffed text gathered so far.
    async fn flush(&mut self) -> Result<(), DeliveryError> {
        let deadline = Instant::now() + self.lmtp.cfg.timeout;
        let Some(l) = self.link.as_mut() else {
            return Err(self.lmtp.broken());
        };
        let result = send(l, &self.out, deadline).await;
        self.out.clear();
        result.map_err(|e| {
            self.link = None;
            self.lmtp.fault("DATA", &e)
        })
    }
}

impl<R: Runtime> LmtpMessage<R> {
    /// The held text: the verdict's field put in, DATA, and the text streamed through.
    async fn send_held(&mut self, verdict: &Verdict) -> Result<(), DeliveryError> {
        let Some((mut spool, results_at)) = self.held.take() else {
            return Ok(());
        };
        let lmtp = Arc::clone(&self.lmtp);
        let dir = lmtp.hold_dir();
        let results = verdict.header_fields(&lmtp.host);
        if !results.is_empty() {
            spool.insert_in(&lmtp.rt, dir, results_at, &results).await?;
        }
        let Some(l) = self.link.take() else {
            return Err(lmtp.broken());
        };
        self.link = Some(lmtp.data(l).await?);
        let spool = spool.freeze();
        let mut reader = spool.reader(0..spool.len());
        loop {
            let piece = reader
                .next(&lmtp.rt)
                .await
                .map_err(|e| super::spool::spool_error(&e, dir))?;
            let Some(piece) = piece else { break };
            self.stuffer.stuff(&piece, &mut self.out);
            if self.out.len() >= WRITE_CHUNK {
                self.flush().await?;
            }
        }
        Ok(())
    }
}

impl<R: Runtime> Message for LmtpMessage<R> {
    async fn write(&mut self, bytes: &[u8]) -> Result<(), DeliveryError> {
        if let Some((spool, _)) = self.held.as_mut() {
            let lmtp = &self.lmtp;
            let dir = lmtp.hold_dir();
            return Box::pin(spool.write_in(&lmtp.rt, dir, bytes)).await;
        }
        self.stuffer.stuff(bytes, &mut self.out);
        if self.out.len() < WRITE_CHUNK {
            return Ok(());
        }
        Box::pin(self.flush()).await
    }

    /// The final dot, then one answer per accepted recipient.
    async fn commit(mut self, verdict: &Verdict) -> Result<(), DeliveryError> {
        Box::pin(self.send_held(verdict)).await?;
        self.stuffer.finish(&mut self.out);
        Box::pin(self.flush()).await?;
        let lmtp = &self.lmtp;
        let deadline = Instant::now() + lmtp.cfg.timeout;
        let Some(mut l) = self.link.take() else {
            return Err(lmtp.broken());
        };
        let mut replies = Vec::with_capacity(self.accepted);
        for _ in 0..self.accepted {
            match read_reply(&mut l, deadline).await {
                Ok(r) => replies.push(r),
                // The server may have delivered some copies: 451, and a duplicate at
                // worst when the client retries.
                Err(e) => return Err(lmtp.fault("the end of DATA", &e)),
            }
        }
        lmtp.idle.put(l);
        pure::outcome(&replies).map_err(|e| {
            let answers: Vec<String> = replies
                .iter()
                .map(|r| format!("{} {} {}", r.code, r.status, r.text))
                .collect();
            e.because(format_args!(
                "LMTP server {} answered the end of DATA with {}",
                lmtp.addr,
                answers.join(" | ")
            ))
        })
    }

    /// The link is dropped, which throws the unfinished message away on the server's
    /// side (a held text never reached it: the link is reset and kept).
    async fn abort(mut self) {
        if self.held.is_some()
            && let Some(l) = self.link.take()
        {
            let deadline = Instant::now() + self.lmtp.cfg.timeout;
            self.lmtp.keep(l, deadline).await;
        }
    }
}
