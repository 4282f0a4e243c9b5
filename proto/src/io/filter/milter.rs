//! Asking milters, as Postfix does: one connection to each milter per SMTP session,
//! opened when the client connects; each step of the session reported to each milter
//! in order (connect, HELO, MAIL, each RCPT, then at the message's end DATA, the header
//! fields, the body in chunks of at most 64 KiB, and the end of the message), each
//! bounded by its time-out (`GSMTP_MILTER_CONNECT_TIMEOUT` for connecting and the
//! negotiation, `GSMTP_MILTER_COMMAND_TIMEOUT` for a step,
//! `GSMTP_MILTER_CONTENT_TIMEOUT` for the message's content; a milter's progress
//! report restarts it). The protocol is [`crate::milter`]; what the answers mean,
//! [`crate::filter::milter`].
//!
//! A milter that cannot be asked (down, silent past its time-out, breaking the protocol)
//! follows `GSMTP_FILTER_ON_ERROR`: the step is deferred, or the milter is left out for
//! the rest of the session and the message's `milter` result is `temperror`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::config::{Config, FilterConfig, OnError, StreamAddr};
use crate::filter::milter::{Changes, Effect, effect, header_for_milter};
use crate::header;
use crate::io::deliver::spool::Frozen;
use crate::io::filter::Head;
use crate::io::runtime::Runtime;
use crate::io::time::with_timeout;
use crate::milter::{Answer, Event, Options, Peer, Session, Stage, Step, UsageError};
use crate::reply::ReplyBuf;
use crate::verdict::{self, Outcome};

/// A stream to a milter: TCP or a Unix socket.
trait Duplex: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Duplex for T {}

/// One milter, for one SMTP session.
struct Link {
    /// `inet:host:port` or `unix:/path`, for the log.
    name: String,
    session: Session,
    stream: Box<dyn Duplex>,
    /// Left out after a failure (under `GSMTP_FILTER_ON_ERROR=accept`).
    dead: bool,
}

/// The milters of one SMTP session.
pub(crate) struct Milters {
    links: Vec<Link>,
    cfg: FilterConfig,
    host: String,
    /// The largest replacement body taken (`GSMTP_MAX_SIZE`).
    max_body: usize,
    /// Milters that failed and were left out, and why, for the verdict.
    failed: Vec<String>,
    /// A milter's reason for a quarantine of the current message.
    quarantine: Option<String>,
}

impl std::fmt::Debug for Milters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.links.iter().map(|l| l.name.as_str()).collect();
        f.debug_struct("Milters")
            .field("links", &names)
            .finish_non_exhaustive()
    }
}

/// What the milters said of a message they let through.
#[derive(Debug, Default)]
pub(crate) struct Passed {
    /// Their changes, all milters' in order.
    pub(crate) changes: Changes,
    /// A milter said to throw the message away (and answer `250`).
    pub(crate) discard: bool,
}

/// `addr` as the configuration writes it.
fn named(addr: &StreamAddr) -> String {
    match addr {
        StreamAddr::Tcp(a) => format!("inet:{a}"),
        StreamAddr::Unix(p) => format!("unix:{}", p.display()),
    }
}

impl Milters {
    /// Connects to every milter of `cfg`, negotiates, and reports the client at `peer`.
    /// `None` when no milter is configured; else the milters and their answer to the
    /// connection (`Err`: the reply that refuses it).
    pub(crate) async fn open<R: Runtime>(
        rt: &R,
        cfg: &Config,
        peer: SocketAddr,
    ) -> Option<(Self, Result<(), ReplyBuf>)> {
        if cfg.filter.milters.is_empty() {
            return None;
        }
        let mut m = Self {
            links: Vec::new(),
            cfg: cfg.filter.clone(),
            host: cfg.host_name.clone(),
            max_body: usize::try_from(cfg.max_size).unwrap_or(usize::MAX),
            failed: Vec::new(),
            quarantine: None,
        };
        for addr in &cfg.filter.milters {
            let name = named(addr);
            let deadline = Instant::now() + m.cfg.milter_connect_timeout;
            match with_timeout(deadline, Link::open(rt, addr, name.clone())).await {
                Ok(Ok(link)) => m.links.push(link),
                Ok(Err(e)) => {
                    if let Err(r) = m.failure(&name, &e) {
                        return Some((m, Err(r)));
                    }
                }
                Err(_) => {
                    let why = "no answer to the negotiation in time";
                    if let Err(r) = m.failure(&name, why) {
                        return Some((m, Err(r)));
                    }
                }
            }
        }
        let hostname = format!("[{}]", peer.ip());
        let macros = [("j", m.host.clone()), ("{daemon_name}", "guerrilla".into())];
        let answer = m
            .ask(Stage::Connect, |s| {
                s.macros(Stage::Connect, &pairs(&macros)).ok();
                s.connect(&hostname, Peer::Inet(peer))
            })
            .await;
        Some((m, answer))
    }

    /// HELO or EHLO.
    pub(crate) async fn helo(&mut self, name: &str) -> Result<(), ReplyBuf> {
        self.ask(Stage::Helo, |s| s.helo(name)).await
    }

    /// MAIL, with its ESMTP arguments.
    pub(crate) async fn mail(&mut self, from: &str, args: &[String]) -> Result<(), ReplyBuf> {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let from = format!("<{from}>");
        self.quarantine = None;
        self.ask(Stage::Mail, |s| s.mail(&from, &args)).await
    }

    /// RCPT: a refusal refuses this recipient only.
    pub(crate) async fn rcpt(&mut self, to: &str) -> Result<(), ReplyBuf> {
        let to = format!("<{to}>");
        self.ask(Stage::Rcpt, |s| s.rcpt(&to, &[])).await
    }

    /// The message, complete: DATA, its header fields, its body, its end. Returns the
    /// changes the milters asked for, or the reply that refuses the message.
    pub(crate) async fn message<R: Runtime>(
        &mut self,
        rt: &R,
        text: &Arc<Frozen>,
        queue_id: &str,
    ) -> Result<Passed, ReplyBuf> {
        let id = [("i", queue_id.to_string())];
        let mut passed = Passed::default();
        self.ask(Stage::Data, |s| {
            s.macros(Stage::Data, &pairs(&id)).ok();
            s.data()
        })
        .await?;
        // The header section (read whole, bounded), field by field.
        let head = match Head::read(rt, text).await {
            Ok(h) => h,
            Err(e) => {
                return self
                    .all_failed(&format!("the held text: {e}"))
                    .map(|()| passed);
            }
        };
        let Some((section, _, rest)) = head.parts() else {
            return self
                .all_failed("the header section is too long to hand over")
                .map(|()| passed);
        };
        let fields: Vec<(String, Vec<u8>)> = header::fields(section)
            .into_iter()
            .map(header_for_milter)
            .collect();
        let rest = rest.to_vec();
        let mut reader = head.reader;
        for (name, value) in &fields {
            self.ask_content(Stage::Header, &mut passed, |s| s.header(name, value))
                .await?;
        }
        self.ask_content(Stage::EndOfHeaders, &mut passed, Session::end_of_headers)
            .await?;
        // The body, in chunks.
        let mut body = rest;
        loop {
            for chunk in body.chunks(crate::milter::MAX_CHUNK) {
                self.ask_content(Stage::Body, &mut passed, |s| s.body(chunk))
                    .await?;
            }
            match reader.next(rt).await {
                Ok(Some(piece)) => body = piece,
                Ok(None) => break,
                Err(e) => {
                    return self
                        .all_failed(&format!("the held text: {e}"))
                        .map(|()| passed);
                }
            }
        }
        self.ask_content(Stage::EndOfMessage, &mut passed, |s| {
            s.macros(Stage::EndOfMessage, &pairs(&id)).ok();
            s.end_of_message()
        })
        .await?;
        if !passed.changes.refused.is_empty() {
            tracing::info!(queue_id = %queue_id, refused = ?passed.changes.refused, "milter changes not made: we do not relay");
        }
        self.quarantine = passed.changes.quarantine.clone();
        Ok(passed)
    }

    /// The milters' result for the message: `temperror` when one was left out after a
    /// failure, else `pass`; with the quarantine a milter asked for.
    pub(crate) fn verdict(&self) -> verdict::Result {
        let mut r = if self.failed.is_empty() {
            verdict::Result::new(Outcome::Pass)
        } else {
            verdict::Result::new(Outcome::TempError).because(self.failed.join("; "))
        };
        if let Some(q) = &self.quarantine {
            r = r.with("quarantine", q.clone());
        }
        r
    }

    /// The transaction ends without a message (RSET, a new MAIL, a refusal).
    pub(crate) async fn abort(&mut self) {
        for link in self.links.iter_mut().filter(|l| !l.dead) {
            if link.session.abort().is_ok() {
                let _ = link.flush(self.cfg.milter_command_timeout).await;
            }
        }
    }

    /// The SMTP session ends.
    pub(crate) async fn quit(&mut self) {
        for link in self.links.iter_mut().filter(|l| !l.dead) {
            link.session.quit();
            let _ = link.flush(Duration::from_secs(1)).await;
        }
    }

    /// A step of the envelope, asked of each milter in order, bounded by the command
    /// time-out.
    async fn ask(
        &mut self,
        stage: Stage,
        mut call: impl FnMut(&mut Session) -> Result<Step, UsageError> + Send,
    ) -> Result<(), ReplyBuf> {
        let mut passed = Passed::default();
        self.run(
            stage,
            self.cfg.milter_command_timeout,
            &mut passed,
            &mut call,
        )
        .await
    }

    /// A step of the message's content, bounded by the content time-out.
    async fn ask_content(
        &mut self,
        stage: Stage,
        passed: &mut Passed,
        mut call: impl FnMut(&mut Session) -> Result<Step, UsageError> + Send,
    ) -> Result<(), ReplyBuf> {
        self.run(stage, self.cfg.milter_content_timeout, passed, &mut call)
            .await
    }

    async fn run(
        &mut self,
        stage: Stage,
        timeout: Duration,
        passed: &mut Passed,
        call: &mut (dyn FnMut(&mut Session) -> Result<Step, UsageError> + Send),
    ) -> Result<(), ReplyBuf> {
        for i in 0..self.links.len() {
            let link = &mut self.links[i];
            if link.dead || link.session.is_closed() {
                continue;
            }
            // Every step is offered to the session, which sends what the milter wants
            // (and answers `Continue` for the rest itself).
            let outcome = match call(&mut link.session) {
                Ok(_) => {
                    link.exchange(timeout, &mut passed.changes, self.max_body)
                        .await
                }
                // The milter already accepted (or refused) this message or connection.
                Err(UsageError::Decided) => continue,
                Err(e) => Err(format!("cannot send {}: {e:?}", stage.as_str())),
            };
            match outcome {
                Ok(answer) => match effect(stage, &answer) {
                    Effect::Continue | Effect::Done => {}
                    Effect::Refuse(reply) => return Err(reply),
                    Effect::Discard => passed.discard = true,
                    Effect::Shutdown => return Err(crate::reply::MILTER_DEFERRED.into()),
                },
                Err(why) => {
                    let name = link.name.clone();
                    self.links[i].dead = true;
                    self.failure(&name, &why)?;
                }
            }
        }
        Ok(())
    }

    /// Every milter failed at once (the held text could not be read).
    fn all_failed(&mut self, why: &str) -> Result<(), ReplyBuf> {
        for l in &mut self.links {
            l.dead = true;
        }
        self.failure("milters", why)
    }

    /// A milter that could not be asked: logged and counted; under `tempfail` the step's
    /// refusal, under `accept` it is left out and recorded.
    fn failure(&mut self, name: &str, why: &str) -> Result<(), ReplyBuf> {
        tracing::warn!(
            filter = %"milter",
            at = %name,
            cause = %why,
            policy = %self.cfg.on_error.as_str(),
            "filter failed"
        );
        crate::io::observe::metrics()
            .filter_errors
            .with_label_values(&["milter"])
            .inc();
        match self.cfg.on_error {
            OnError::Tempfail => Err(crate::reply::FILTER_FAILED.into()),
            OnError::Accept => {
                self.failed.push(format!("{name}: {why}"));
                Ok(())
            }
        }
    }
}

/// Macro pairs as the session takes them.
fn pairs<'a>(list: &'a [(&'a str, String)]) -> Vec<(&'a str, &'a str)> {
    list.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

impl Link {
    /// Connects to `addr` and negotiates.
    async fn open<R: Runtime>(rt: &R, addr: &StreamAddr, name: String) -> Result<Self, String> {
        let stream: Box<dyn Duplex> = match addr {
            StreamAddr::Unix(path) => Box::new(
                async_io::Async::<std::os::unix::net::UnixStream>::connect(path)
                    .await
                    .map_err(|e| format!("cannot connect: {e}"))?,
            ),
            StreamAddr::Tcp(hostport) => Box::new(
                crate::io::deliver::pool::connect(rt, hostport.clone())
                    .await
                    .map_err(|e| format!("cannot connect: {e}"))?,
            ),
        };
        let mut link = Self {
            name,
            session: Session::new(Options::default()),
            stream,
            dead: false,
        };
        link.write_out().await?;
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match link.session.poll_event() {
                Some(Event::Negotiated(_)) => return Ok(link),
                Some(Event::Failed(e)) => return Err(format!("negotiation: {e}")),
                Some(_) => {}
                None => {
                    let n = link
                        .stream
                        .read(&mut buf)
                        .await
                        .map_err(|e| e.to_string())?;
                    if n == 0 {
                        link.session.handle_eof();
                    } else {
                        link.session.handle_received(&buf[..n]);
                    }
                }
            }
        }
    }

    /// Writes what the session has to send.
    async fn write_out(&mut self) -> Result<(), String> {
        let mut out = Vec::new();
        self.session.poll_transmit(&mut out);
        if !out.is_empty() {
            self.stream
                .write_all(&out)
                .await
                .map_err(|e| e.to_string())?;
            self.stream.flush().await.map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// [`Link::write_out`] within `timeout`.
    async fn flush(&mut self, timeout: Duration) -> Result<(), String> {
        with_timeout(Instant::now() + timeout, self.write_out())
            .await
            .map_err(|_| "no room to write in time".to_string())?
    }

    /// Sends what is queued and reads until the step's answer (the milter's progress
    /// reports restart the time-out); modifications go into `changes`.
    async fn exchange(
        &mut self,
        timeout: Duration,
        changes: &mut Changes,
        max_body: usize,
    ) -> Result<Answer, String> {
        self.flush(timeout).await?;
        let mut deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match self.session.poll_event() {
                Some(Event::Answer { answer, .. }) => return Ok(answer),
                Some(Event::Modify(m)) => changes.add(m, max_body),
                Some(Event::Progress) => deadline = Instant::now() + timeout,
                Some(Event::Failed(e)) => return Err(e.to_string()),
                Some(_) => {}
                None => match with_timeout(deadline, self.stream.read(&mut buf)).await {
                    Ok(Ok(0)) => self.session.handle_eof(),
                    Ok(Ok(n)) => self.session.handle_received(&buf[..n]),
                    Ok(Err(e)) => return Err(e.to_string()),
                    Err(_) => {
                        return Err(format!("no answer within {} s", timeout.as_secs()));
                    }
                },
            }
        }
    }
}
