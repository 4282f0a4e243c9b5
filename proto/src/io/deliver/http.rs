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
//! HTTP/1.1 is hyper's, through the shared [`Client`]: no hand-written HTTP. Connections
//! are kept alive and reused; at most `GSMTP_HTTP_CONNECTIONS` requests run at once. A request
//! that takes longer than `GSMTP_HTTP_TIMEOUT` (connecting included) is dropped, with
//! its connection: `451 4.3.0`. A receiver that committed the message but whose answer
//! did not arrive in time may get it again when the client retries: a duplicate, never a
//! loss.

use std::io;
use std::path::PathBuf;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use futures_lite::FutureExt as _;

use super::Deliver;
use super::client::Client;
use super::spool::Spool;
use crate::config::{Config, ConfigError, HttpConfig, HttpUrl};
use crate::conn::{DeliveryError, Envelope};
use crate::handoff;
use crate::io::runtime::Runtime;
use crate::syntax::{MailParams, ReversePath};

/// How much of the receiver's answer is read for its first line.
const MAX_ANSWER: usize = 16 * 1024;

/// The HTTP destination.
pub struct Http<R: Runtime> {
    rt: R,
    url: HttpUrl,
    cfg: HttpConfig,
    host: String,
    spool_dir: PathBuf,
    secret: Option<ring::hmac::Key>,
    client: Client<R>,
}

impl<R: Runtime> std::fmt::Debug for Http<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret is never shown.
        f.debug_struct("Http")
            .field("url", &self.url)
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
        let client = Client::new(
            rt.clone(),
            &url,
            "GSMTP_HTTP_URL",
            cfg.http.ca.as_deref(),
            cfg.http.connections,
        )?;
        let secret = cfg
            .http
            .secret
            .as_ref()
            .map(|s| ring::hmac::Key::new(ring::hmac::HMAC_SHA256, s.expose().as_bytes()));
        Ok(Self {
            rt,
            url,
            cfg: cfg.http.clone(),
            host: cfg.host_name.clone(),
            spool_dir: super::spool_dir(cfg)?,
            secret,
            client,
        })
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
        let req = req
            .body(self.client.stream(spool.reader()))
            .map_err(io::Error::other)?;
        let answer = self.client.send(req, MAX_ANSWER).await?;
        let first = String::from_utf8_lossy(&answer.body)
            .lines()
            .next()
            .unwrap_or("")
            .to_string();
        Ok((answer.status, first))
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
        let sent = self.post(text);
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
