//! `GSMTP_STORAGE=lmtp`: each transaction is relayed, live, to an LMTP server (RFC 2033),
//! the way mail reaches Dovecot or Cyrus.
//!
//! MAIL opens an LMTP session's transaction (one kept alive, or a new one), each RCPT is
//! asked of the LMTP server there and then, so an unknown user is refused at RCPT with the
//! server's own reply (`550 5.1.1`), and the text is streamed to it as it arrives
//! (dot-stuffed, with our `Received` header first; the LMTP server writes its own
//! `Return-Path` and `Delivered-To`). After the final dot it answers once per accepted
//! recipient, and [`crate::deliver::lmtp_outcome`] turns those answers into the one SMTP
//! reply: all delivered is `250`; all refused alike is that refusal; a mix is `451`, so
//! that no copy is ever lost or claimed, at the price of a duplicate for the recipients
//! that had theirs when the client sends it again.
//!
//! Every wait on the server is bounded by `GSMTP_LMTP_TIMEOUT`; a server that is down,
//! slow or talks nonsense is `451`, and a transaction it had not finished is dropped with
//! its connection (an LMTP server delivers nothing of a DATA that did not end with its
//! dot). At most `GSMTP_LMTP_CONNECTIONS` sessions are open at once; each transaction
//! holds one from MAIL to its end.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use async_lock::{Semaphore, SemaphoreGuardArc};
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use futures_lite::{AsyncRead, AsyncWrite, FutureExt as _};

use super::Deliver;
use crate::config::{Config, ConfigError, LmtpAddr, LmtpConfig};
use crate::deliver as handoff;
use crate::deliver::lmtp::{DotStuffer, ServerReply};
use crate::delivery::DeliveryError;
use crate::delivery::Envelope;
use crate::delivery::Recipient;
use crate::io::runtime::Runtime;
use crate::syntax::{MailParams, ReversePath};

/// How much stuffed text is gathered before it is written.
const WRITE_CHUNK: usize = 64 * 1024;

/// A stream to the LMTP server: TCP or a Unix socket.
trait Duplex: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Duplex for T {}

/// An LMTP session after its LHLO, between transactions.
struct Session {
    stream: Box<dyn Duplex>,
    /// Read but not yet parsed.
    buf: Vec<u8>,
    /// What the server offered at LHLO.
    size: bool,
    eight_bit: bool,
    utf8: bool,
}

/// The LMTP destination.
pub struct Lmtp<R: Runtime> {
    rt: R,
    addr: LmtpAddr,
    cfg: LmtpConfig,
    host: String,
    idle: Mutex<Vec<Session>>,
    slots: Arc<Semaphore>,
}

impl<R: Runtime> std::fmt::Debug for Lmtp<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lmtp")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// A transaction relayed to the LMTP server.
pub struct LmtpMessage {
    session: Option<Session>,
    _slot: SemaphoreGuardArc,
    /// Recipients the server accepted: as many answers come after the dot.
    accepted: usize,
    /// Set once DATA was answered `354`.
    in_data: bool,
    stuffer: DotStuffer,
    out: Vec<u8>,
}

impl std::fmt::Debug for LmtpMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LmtpMessage")
            .field("accepted", &self.accepted)
            .field("in_data", &self.in_data)
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
        Ok(Self {
            rt,
            addr,
            cfg: cfg.lmtp.clone(),
            host: cfg.host_name.clone(),
            idle: Mutex::new(Vec::new()),
            slots: Arc::new(Semaphore::new(cfg.lmtp.connections)),
        })
    }

    /// A session: one kept alive (`true`), or a new one, greeted and LHLO done.
    async fn session(&self, deadline: Instant) -> io::Result<(Session, bool)> {
        if let Some(s) = self.idle.lock().ok().and_then(|mut idle| idle.pop()) {
            return Ok((s, true));
        }
        let stream: Box<dyn Duplex> = match &self.addr {
            LmtpAddr::Unix(path) => {
                Box::new(async_io::Async::<std::os::unix::net::UnixStream>::connect(path).await?)
            }
            LmtpAddr::Tcp(hostport) => {
                let hostport = hostport.clone();
                let addrs: Vec<SocketAddr> = self
                    .rt
                    .unblock(move || std::net::ToSocketAddrs::to_socket_addrs(&hostport))
                    .await?
                    .collect();
                let mut last = io::Error::other("no address for the LMTP server");
                let mut connected = None;
                for addr in addrs {
                    match async_io::Async::<std::net::TcpStream>::connect(addr).await {
                        Ok(tcp) => {
                            let _ = tcp.get_ref().set_nodelay(true);
                            connected = Some(tcp);
                            break;
                        }
                        Err(e) => last = e,
                    }
                }
                Box::new(connected.ok_or(last)?)
            }
        };
        let mut s = Session {
            stream,
            buf: Vec::new(),
            size: false,
            eight_bit: false,
            utf8: false,
        };
        expect(read_reply(&mut s, deadline).await?, 220)?;
        send(
            &mut s,
            format!("LHLO {}\r\n", self.host).as_bytes(),
            deadline,
        )
        .await?;
        let lines = read_lines(&mut s, deadline).await?;
        for line in &lines {
            let word = line.get(4..).unwrap_or("").split(' ').next().unwrap_or("");
            match word.to_ascii_uppercase().as_str() {
                "SIZE" => s.size = true,
                "8BITMIME" => s.eight_bit = true,
                "SMTPUTF8" => s.utf8 = true,
                _ => {}
            }
        }
        if !lines.last().is_some_and(|l| l.starts_with("250")) {
            return Err(io::Error::other(format!("LHLO refused: {lines:?}")));
        }
        Ok((s, false))
    }

    /// Bounds `fut` by the LMTP timeout from now; a timeout is an error of its own.
    async fn bounded<T>(
        &self,
        fut: impl Future<Output = Result<T, DeliveryError>>,
    ) -> Result<T, DeliveryError> {
        let timer = async {
            async_io::Timer::after(self.cfg.timeout).await;
            Err(DeliveryError::timeout())
        };
        fut.or(timer).await
    }
}

/// The reply's text when the LMTP server fails (down, silent, talking nonsense).
const FAILED: &str = "Error: the delivery agent failed, try again later";

impl<R: Runtime> Lmtp<R> {
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
async fn send(s: &mut Session, bytes: &[u8], deadline: Instant) -> io::Result<()> {
    let write = async {
        s.stream.write_all(bytes).await?;
        s.stream.flush().await
    };
    let timer = async {
        async_io::Timer::at(deadline).await;
        Err(io::ErrorKind::TimedOut.into())
    };
    write.or(timer).await
}

/// Reads one reply, by `deadline`.
async fn read_reply(s: &mut Session, deadline: Instant) -> io::Result<ServerReply> {
    let read = async {
        loop {
            match handoff::lmtp::parse_reply(&s.buf) {
                Ok(Some((reply, n))) => {
                    s.buf.drain(..n);
                    return Ok(reply);
                }
                Ok(None) => {}
                Err(()) => return Err(io::Error::other("not an LMTP reply")),
            }
            if fill(s).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    };
    let timer = async {
        async_io::Timer::at(deadline).await;
        Err(io::ErrorKind::TimedOut.into())
    };
    read.or(timer).await
}

/// Reads what the server sent next onto the session's buffer (no buffer on the stack:
/// it would make every future that reads large). Returns how much came; 0 at its end.
async fn fill(s: &mut Session) -> io::Result<usize> {
    let had = s.buf.len();
    s.buf.resize(had + 4096, 0);
    let n = s.stream.read(&mut s.buf[had..]).await;
    s.buf.truncate(had + *n.as_ref().unwrap_or(&0));
    n
}

/// Reads one multi-line reply's lines (for LHLO's capabilities).
async fn read_lines(s: &mut Session, deadline: Instant) -> io::Result<Vec<String>> {
    let mut lines = Vec::new();
    loop {
        while let Some(lf) = memchr::memchr(b'\n', &s.buf) {
            let line: Vec<u8> = s.buf.drain(..=lf).collect();
            let line = String::from_utf8_lossy(&line).trim_end().to_string();
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line);
            if last || lines.len() > handoff::lmtp::MAX_REPLY_LINES {
                return Ok(lines);
            }
        }
        if s.buf.len() > handoff::lmtp::MAX_REPLY_LINE {
            return Err(io::Error::other("an overlong LHLO reply"));
        }
        let timer = async {
            async_io::Timer::at(deadline).await;
            Err(io::ErrorKind::TimedOut.into())
        };
        if fill(s).or(timer).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
}

/// The MAIL command for `from`, with the parameters the server offered.
fn mail_command(s: &Session, from: &ReversePath<'static>, params: &MailParams) -> String {
    let mut cmd = format!("MAIL FROM:{from}");
    if let (true, Some(n)) = (s.size, params.size) {
        cmd.push_str(&format!(" SIZE={n}"));
    }
    if s.eight_bit && params.body == Some(crate::syntax::Body::EightBitMime) {
        cmd.push_str(" BODY=8BITMIME");
    }
    if s.utf8 && params.smtputf8 {
        cmd.push_str(" SMTPUTF8");
    }
    cmd.push_str("\r\n");
    cmd
}

impl<R: Runtime> Lmtp<R> {
    /// Opens a transaction: a session, then MAIL. A kept-alive session the server has
    /// closed meanwhile is replaced once (nothing of this transaction reached it).
    async fn open_transaction(
        &self,
        from: &ReversePath<'static>,
        params: &MailParams,
    ) -> Result<Session, DeliveryError> {
        let deadline = Instant::now() + self.cfg.timeout;
        loop {
            let (mut s, reused) = self
                .session(deadline)
                .await
                .map_err(|e| self.fault("connect and LHLO", &e))?;
            let cmd = mail_command(&s, from, params);
            let reply = match send(&mut s, cmd.as_bytes(), deadline).await {
                Ok(()) => read_reply(&mut s, deadline).await,
                Err(e) => Err(e),
            };
            match reply {
                Ok(r) if r.is_ok() => return Ok(s),
                // A kept session the server is closing (Dovecot says 421 as it stops).
                Ok(r) if r.code == 421 && reused => continue,
                Ok(r) if r.code == 421 => return Err(self.refused("MAIL", &r)),
                Ok(r) => {
                    self.keep(s, deadline).await;
                    return Err(self.refused("MAIL", &r));
                }
                Err(_) if reused => continue,
                Err(e) => return Err(self.fault("MAIL", &e)),
            }
        }
    }

    /// Resets a session and keeps it for the next transaction (or drops it, if it does
    /// not answer).
    async fn keep(&self, mut s: Session, deadline: Instant) {
        let reset = async {
            send(&mut s, b"RSET\r\n", deadline).await?;
            expect(read_reply(&mut s, deadline).await?, 250)
        };
        if reset.await.is_ok() {
            self.park(s);
        }
    }

    /// Keeps a session that is between transactions.
    fn park(&self, s: Session) {
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < self.cfg.connections
        {
            idle.push(s);
        }
    }

    /// Writes the stuffed text gathered so far.
    async fn flush(&self, m: &mut LmtpMessage) -> Result<(), DeliveryError> {
        let deadline = Instant::now() + self.cfg.timeout;
        let Some(s) = m.session.as_mut() else {
            return Err(DeliveryError::transient());
        };
        let result = send(s, &m.out, deadline).await;
        m.out.clear();
        result.map_err(|e| {
            m.session = None;
            self.fault("DATA", &e)
        })
    }
}

impl<R: Runtime> Deliver for Lmtp<R> {
    type Message = LmtpMessage;

    async fn start(
        &self,
        from: &ReversePath<'static>,
        params: &MailParams,
    ) -> Result<LmtpMessage, DeliveryError> {
        let slot = self
            .bounded(async { Ok(self.slots.acquire_arc().await) })
            .await?;
        let session = Box::pin(self.open_transaction(from, params)).await?;
        Ok(LmtpMessage {
            session: Some(session),
            _slot: slot,
            accepted: 0,
            in_data: false,
            stuffer: DotStuffer::default(),
            out: Vec::new(),
        })
    }

    /// The server greets and answers LHLO (within `GSMTP_LMTP_TIMEOUT`); then QUIT.
    async fn probe(&self) -> Result<(), DeliveryError> {
        let deadline = Instant::now() + self.cfg.timeout;
        let timer = async {
            async_io::Timer::at(deadline).await;
            Err(io::Error::from(io::ErrorKind::TimedOut))
        };
        let (mut s, _) = Box::pin(self.session(deadline).or(timer))
            .await
            .map_err(|e| self.fault("connect and LHLO", &e))?;
        let _ = send(&mut s, b"QUIT\r\n", deadline).await;
        Ok(())
    }

    /// Asks the LMTP server: its refusal is the client's reply.
    async fn add_recipient(&self, m: &mut LmtpMessage, r: &Recipient) -> Result<(), DeliveryError> {
        let deadline = Instant::now() + self.cfg.timeout;
        let Some(s) = m.session.as_mut() else {
            return Err(DeliveryError::transient());
        };
        let cmd = format!("RCPT TO:<{}>\r\n", r.delivered_to);
        let reply = match send(s, cmd.as_bytes(), deadline).await {
            Ok(()) => read_reply(s, deadline).await,
            Err(e) => Err(e),
        };
        match reply {
            Ok(reply) if reply.is_ok() => {
                m.accepted += 1;
                Ok(())
            }
            Ok(reply) => Err(self.refused(&format!("RCPT TO:<{}>", r.delivered_to), &reply)),
            Err(e) => {
                m.session = None;
                Err(self.fault("RCPT", &e))
            }
        }
    }

    /// DATA, then our `Received` header.
    async fn body(&self, m: &mut LmtpMessage, env: &Envelope) -> Result<(), DeliveryError> {
        let deadline = Instant::now() + self.cfg.timeout;
        let Some(s) = m.session.as_mut() else {
            return Err(DeliveryError::transient());
        };
        let reply = match send(s, b"DATA\r\n", deadline).await {
            Ok(()) => read_reply(s, deadline).await,
            Err(e) => Err(e),
        };
        match reply {
            Ok(r) if r.code == 354 => {}
            Ok(r) => return Err(self.refused("DATA", &r)),
            Err(e) => {
                m.session = None;
                return Err(self.fault("DATA", &e));
            }
        }
        m.in_data = true;
        let prefix = handoff::prefix(env, &self.host, SystemTime::now(), false);
        m.stuffer.stuff(&prefix, &mut m.out);
        Ok(())
    }

    async fn write(&self, m: &mut LmtpMessage, bytes: &[u8]) -> Result<(), DeliveryError> {
        m.stuffer.stuff(bytes, &mut m.out);
        if m.out.len() < WRITE_CHUNK {
            return Ok(());
        }
        Box::pin(self.flush(m)).await
    }

    /// The final dot, then one answer per accepted recipient.
    async fn commit(&self, mut m: LmtpMessage) -> Result<(), DeliveryError> {
        m.stuffer.finish(&mut m.out);
        Box::pin(self.flush(&mut m)).await?;
        let deadline = Instant::now() + self.cfg.timeout;
        let Some(mut s) = m.session.take() else {
            return Err(DeliveryError::transient());
        };
        let mut replies = Vec::with_capacity(m.accepted);
        for _ in 0..m.accepted {
            match read_reply(&mut s, deadline).await {
                Ok(r) => replies.push(r),
                // The server may have delivered some copies: 451, and a duplicate at
                // worst when the client retries.
                Err(e) => return Err(self.fault("the end of DATA", &e)),
            }
        }
        self.park(s);
        handoff::lmtp::outcome(&replies).map_err(|e| {
            let answers: Vec<String> = replies
                .iter()
                .map(|r| format!("{} {} {}", r.code, r.status, r.text))
                .collect();
            e.because(format_args!(
                "LMTP server {} answered the end of DATA with {}",
                self.addr,
                answers.join(" | ")
            ))
        })
    }

    /// Before DATA, RSET keeps the session; during DATA, the session is dropped, which
    /// throws the unfinished message away on the server's side.
    async fn abort(&self, mut m: LmtpMessage) {
        if let Some(s) = m.session.take()
            && !m.in_data
        {
            let deadline = Instant::now() + self.cfg.timeout;
            self.keep(s, deadline).await;
        }
    }
}
