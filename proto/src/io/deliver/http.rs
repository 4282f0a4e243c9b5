//! `GSMTP_STORAGE=http`: each message is POSTed to `GSMTP_HTTP_URL`, and the receiver's
//! status is the reply ([`crate::handoff::http_result`]): `250` only after it answered
//! `2xx`.
//!
//! The message (`Return-Path` and `Received` first) is spooled while it arrives, then
//! sent as the request body, `Content-Type: message/rfc822` with its `Content-Length`,
//! read back from the spool in pieces (a 25 MiB message is never whole in memory). The
//! envelope travels in `X-Smtp-*` headers ([`crate::handoff::http_headers`]); with
//! `GSMTP_HTTP_SECRET`, `X-Smtp-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of
//! "<t>." + body>` lets the receiver check where it came from, as Stripe's and Postmark's
//! webhooks are signed. The HMAC is computed as the body arrives.
//!
//! HTTP/1.1 is hyper's (its client connection, over async-io through smol-hyper's
//! adapter, TLS through futures-rustls): no hand-written HTTP. Connections are kept
//! alive and reused; at most `GSMTP_HTTP_CONNECTIONS` requests run at once. A request
//! that takes longer than `GSMTP_HTTP_TIMEOUT` (connecting included) is dropped, with
//! its connection: `451 4.3.0`. A receiver that committed the message but whose answer
//! did not arrive in time may get it again when the client retries: a duplicate, never a
//! loss.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use async_lock::Semaphore;
use bytes::Bytes;
use futures_lite::FutureExt as _;
use futures_rustls::TlsConnector;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::client::conn::http1::SendRequest;
use rustls_pki_types::ServerName;
use smol_hyper::rt::FuturesIo;

use super::Deliver;
use super::spool::Spool;
use crate::config::{Config, ConfigError, HttpConfig, HttpUrl};
use crate::conn::{DeliveryError, Envelope};
use crate::handoff;
use crate::io::runtime::Runtime;
use crate::syntax::{MailParams, ReversePath};

/// The request body: the spool, read in pieces.
type Body = UnsyncBoxBody<Bytes, io::Error>;

/// How much of the receiver's answer is read for its first line; a longer answer costs
/// the connection (it is not reused).
const MAX_ANSWER: usize = 16 * 1024;

/// The HTTP destination.
pub struct Http<R: Runtime> {
    rt: R,
    url: HttpUrl,
    cfg: HttpConfig,
    host: String,
    spool_dir: PathBuf,
    secret: Option<ring::hmac::Key>,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    /// Connections kept alive between requests.
    idle: Mutex<Vec<SendRequest<Body>>>,
    slots: Semaphore,
}

impl<R: Runtime> std::fmt::Debug for Http<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret is never shown.
        f.debug_struct("Http")
            .field("url", &self.url)
            .field("tls", &self.tls.is_some())
            .field("signed", &self.secret.is_some())
            .finish_non_exhaustive()
    }
}

/// A transaction for the HTTP destination.
#[derive(Debug, Default)]
pub struct HttpMessage {
    text: Option<Box<Text>>,
}

/// A message's text on its way: its envelope, its spool, and its running signature.
struct Text {
    env: Envelope,
    spool: Spool,
    signed: Option<(u64, ring::hmac::Context)>,
}

impl std::fmt::Debug for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Text")
            .field("id", &self.env.id)
            .field("len", &self.spool.len())
            .finish_non_exhaustive()
    }
}

impl<R: Runtime> Http<R> {
    /// Checks the settings (the URL, the CA file); errors name the key at fault. The
    /// receiver need not be up yet.
    pub fn open(rt: R, cfg: &Config) -> Result<Self, ConfigError> {
        let url = cfg.http.url.clone().ok_or_else(|| ConfigError {
            key: "GSMTP_HTTP_URL".into(),
            message: "GSMTP_STORAGE=http needs a URL".into(),
        })?;
        let tls = match url.tls {
            true => {
                let connector = crate::io::tls::connector(cfg.http.ca.as_deref(), "GSMTP_HTTP_CA")?;
                let name = ServerName::try_from(url.host.clone()).map_err(|e| ConfigError {
                    key: "GSMTP_HTTP_URL".into(),
                    message: format!("{}: {e}", url.host),
                })?;
                Some((connector, name))
            }
            false => None,
        };
        let secret = cfg
            .http
            .secret
            .as_ref()
            .map(|s| ring::hmac::Key::new(ring::hmac::HMAC_SHA256, s.as_bytes()));
        Ok(Self {
            rt,
            url,
            cfg: cfg.http.clone(),
            host: cfg.host_name.clone(),
            spool_dir: super::spool_dir(cfg)?,
            secret,
            tls,
            idle: Mutex::new(Vec::new()),
            slots: Semaphore::new(cfg.http.connections),
        })
    }

    /// A connection to the receiver: one kept alive (`true`), or a new one.
    async fn connection(&self) -> io::Result<(SendRequest<Body>, bool)> {
        loop {
            let kept = self.idle.lock().ok().and_then(|mut idle| idle.pop());
            match kept {
                Some(sender) if !sender.is_closed() => return Ok((sender, true)),
                Some(_) => continue,
                None => break,
            }
        }
        let host = self.url.host.clone();
        let port = self.url.port;
        let addrs: Vec<SocketAddr> = self
            .rt
            .unblock(move || std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port)))
            .await?
            .collect();
        let mut last = io::Error::other("no address for the receiver");
        for addr in addrs {
            match async_io::Async::<std::net::TcpStream>::connect(addr).await {
                Ok(tcp) => {
                    let _ = tcp.get_ref().set_nodelay(true);
                    let sender = match &self.tls {
                        Some((connector, name)) => {
                            let tls = connector.connect(name.clone(), tcp).await?;
                            self.handshake(tls).await
                        }
                        None => self.handshake(tcp).await,
                    };
                    return sender.map(|s| (s, false));
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// hyper's HTTP/1.1 handshake over `stream`; the connection's task runs on the
    /// runtime until the connection ends.
    async fn handshake<S>(&self, stream: S) -> io::Result<SendRequest<Body>>
    where
        S: futures_lite::AsyncRead + futures_lite::AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, conn) = hyper::client::conn::http1::handshake(FuturesIo::new(stream))
            .await
            .map_err(io::Error::other)?;
        self.rt.spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }

    /// Sends the message and reads the answer: its status and its first line.
    async fn post(&self, text: Text) -> io::Result<(u16, String)> {
        let Text { env, spool, signed } = text;
        let mut req = hyper::Request::post(self.url.path.as_str())
            .header(hyper::header::HOST, self.url.authority())
            .header(hyper::header::CONTENT_TYPE, "message/rfc822")
            .header(hyper::header::CONTENT_LENGTH, spool.len())
            .header(hyper::header::USER_AGENT, "Guerrilla-SMTPd");
        for (name, value) in handoff::http_headers(&env) {
            req = req.header(name, value);
        }
        if let Some((t, ctx)) = signed {
            let mac = ctx.sign();
            req = req.header(
                "X-Smtp-Signature",
                handoff::signature_value(t, mac.as_ref()),
            );
        }
        let rt = self.rt.clone();
        let pieces = futures_lite::stream::unfold(Some(spool.reader()), move |reader| {
            let rt = rt.clone();
            async move {
                let mut reader = reader?;
                match reader.next(&rt).await {
                    Ok(Some(piece)) => Some((Ok(Frame::data(Bytes::from(piece))), Some(reader))),
                    Ok(None) => None,
                    Err(e) => Some((Err(e), None)),
                }
            }
        });
        let body: Body = StreamBody::new(pieces).boxed_unsync();
        let mut req = req.body(body).map_err(io::Error::other)?;
        // A kept-alive connection the receiver has closed meanwhile gives the request back
        // unsent: it goes again on a new connection. Once sent, it never goes twice.
        let (sender, response) = loop {
            let (mut sender, reused) = self.connection().await?;
            if sender.ready().await.is_err() {
                if reused {
                    continue;
                }
                return Err(io::Error::other("the connection closed before the request"));
            }
            match sender.try_send_request(req).await {
                Ok(response) => break (sender, response),
                Err(mut e) => match e.take_message() {
                    Some(unsent) if reused => req = unsent,
                    _ => return Err(io::Error::other(e.into_error())),
                },
            }
        };
        let status = response.status().as_u16();
        let mut answer = Vec::new();
        let mut body = response.into_body();
        let mut whole = true;
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.map_err(io::Error::other)?.into_data() {
                answer.extend_from_slice(&data);
            }
            if answer.len() > MAX_ANSWER {
                whole = false;
                break;
            }
        }
        if whole
            && !sender.is_closed()
            && let Ok(mut idle) = self.idle.lock()
            && idle.len() < self.cfg.connections
        {
            idle.push(sender);
        }
        let first = String::from_utf8_lossy(&answer)
            .lines()
            .next()
            .unwrap_or("")
            .to_string();
        Ok((status, first))
    }
}

impl<R: Runtime> Deliver for Http<R> {
    type Message = HttpMessage;

    async fn start(
        &self,
        _: &ReversePath<'static>,
        _: &MailParams,
    ) -> Result<HttpMessage, DeliveryError> {
        Ok(HttpMessage::default())
    }

    async fn body(&self, m: &mut HttpMessage, env: &Envelope) -> Result<(), DeliveryError> {
        let prefix = handoff::prefix(env, &self.host, SystemTime::now(), true);
        let signed = self.secret.as_ref().map(|key| {
            let t = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let mut ctx = ring::hmac::Context::with_key(key);
            ctx.update(format!("{t}.").as_bytes());
            ctx.update(&prefix);
            (t, ctx)
        });
        m.text = Some(Box::new(Text {
            env: env.clone(),
            spool: Spool::new(prefix),
            signed,
        }));
        Ok(())
    }

    async fn write(&self, m: &mut HttpMessage, bytes: &[u8]) -> Result<(), DeliveryError> {
        let Some(text) = m.text.as_deref_mut() else {
            return Err(DeliveryError::Transient);
        };
        if let Some((_, ctx)) = text.signed.as_mut() {
            ctx.update(bytes);
        }
        text.spool.write(&self.rt, &self.spool_dir, bytes).await
    }

    async fn commit(&self, m: HttpMessage) -> Result<(), DeliveryError> {
        let Some(text) = m.text.map(|t| *t) else {
            return Err(DeliveryError::Transient);
        };
        let id = text.env.id;
        let started = Instant::now();
        let timer = async {
            async_io::Timer::at(started + self.cfg.timeout).await;
            Err(io::Error::from(io::ErrorKind::TimedOut))
        };
        let sent = async {
            let _slot = self.slots.acquire().await;
            self.post(text).await
        };
        let (status, first) = match Box::pin(sent.or(timer)).await {
            Ok(answer) => answer,
            Err(e) => {
                tracing::warn!(queue_id = %id, url = %self.url.authority(), error = %e, "the HTTP receiver failed");
                return Err(handoff::http_result(0, "").unwrap_err());
            }
        };
        let result = handoff::http_result(status, &first);
        if result.is_err() {
            let first = crate::syntax::escape_for_log(first.as_bytes());
            tracing::info!(queue_id = %id, status, answer = %first, "the HTTP receiver refused");
        }
        result
    }
}
