//! `GSMTP_STORAGE=http`: each message is POSTed to `GSMTP_HTTP_URL`, and the receiver's
//! status is the reply ([`crate::deliver::http_result`]): `250` only after it answered
//! `2xx`.
//!
//! The message (`Return-Path` and `Received` first) is spooled while it arrives, then
//! sent as a `multipart/form-data` body with its `Content-Length`
//! ([`crate::deliver::multipart`]): the part `envelope` holds the envelope as JSON, every
//! recipient included, and the part `message` the message, read back from the spool in
//! pieces (a 25 MiB message is never whole in memory). The single-valued facts are in
//! `X-Smtp-*` headers too ([`crate::deliver::http_headers`]), a fixed and small number of
//! them whatever the number of recipients, so any receiver takes the request. With
//! `GSMTP_HTTP_SECRET`, `X-Smtp-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of the
//! `X-Smtp-*` headers and the body ([`crate::deliver::http::signed`])>` lets the receiver
//! check where it came from and that nothing of it (the verdict's headers included) was
//! changed, as Stripe's and Postmark's webhooks are signed.
//!
//! HTTP/1.1 is hyper's, through the shared [`Client`]: no hand-written HTTP. Connections
//! are kept alive and reused; at most `GSMTP_HTTP_CONNECTIONS` requests run at once. A request
//! that takes longer than `GSMTP_HTTP_TIMEOUT` (connecting included) is dropped, with
//! its connection: `451 4.3.0`. A receiver that committed the message but whose answer
//! did not arrive in time may get it again when the client retries: a duplicate, never a
//! loss.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use futures_lite::FutureExt as _;

use super::client::Client;
use super::spool::Spool;
use super::{Deliver, Message, Transaction};
use crate::config::{Config, ConfigError, HttpConfig, HttpUrl};
use crate::deliver as pure;
use crate::delivery::DeliveryError;
use crate::delivery::Envelope;
use crate::io::runtime::Runtime;
use crate::syntax::{MailParams, ReversePath};
use crate::verdict::Verdict;

/// How much of the receiver's answer is read for its first line.
const MAX_ANSWER: usize = 16 * 1024;

/// The HTTP destination.
#[derive(Debug)]
pub struct Http<R: Runtime>(Arc<Inner<R>>);

/// What the HTTP destination's transactions share.
struct Inner<R: Runtime> {
    rt: R,
    url: HttpUrl,
    cfg: HttpConfig,
    host: String,
    spool_dir: PathBuf,
    secret: Option<ring::hmac::Key>,
    client: Client<R>,
}

impl<R: Runtime> std::fmt::Debug for Inner<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret is never shown.
        f.debug_struct("Http")
            .field("url", &self.url)
            .field("signed", &self.secret.is_some())
            .finish_non_exhaustive()
    }
}

/// A transaction of the HTTP destination.
#[derive(Debug)]
pub struct HttpTransaction<R: Runtime>(Arc<Inner<R>>);

/// A message of the HTTP destination: its envelope and its text, spooled.
#[derive(Debug)]
pub struct HttpMessage<R: Runtime> {
    http: Arc<Inner<R>>,
    env: Box<Envelope>,
    spool: Spool,
    /// Where the verdict's `Authentication-Results` field goes in the spool.
    results_at: usize,
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
        Ok(Self(Arc::new(Inner {
            rt,
            url,
            cfg: cfg.http.clone(),
            host: cfg.host_name.clone(),
            spool_dir: super::spool_dir(cfg)?,
            secret,
            client,
        })))
    }
}

impl<R: Runtime> Inner<R> {
    /// Sends the message and reads the answer: its status and its first line. The body
    /// is `multipart/form-data`: the JSON envelope, then the message read from the
    /// spool, between delimiters drawn at random now that the message is complete.
    async fn post(
        &self,
        env: &Envelope,
        verdict: &Verdict,
        spool: Spool,
    ) -> io::Result<(u16, String)> {
        let boundary = boundary()?;
        let (head, tail) = pure::http::multipart(env, verdict, &boundary);
        let spool = spool.freeze();
        let len = head.len() as u64 + spool.len() + tail.len() as u64;
        let mut req = hyper::Request::post(self.url.path.as_str())
            .header(hyper::header::HOST, self.url.authority())
            .header(
                hyper::header::CONTENT_TYPE,
                format!("multipart/form-data; boundary={boundary}"),
            )
            .header(hyper::header::CONTENT_LENGTH, len)
            .header(hyper::header::USER_AGENT, "Guerrilla-SMTPd");
        let headers = pure::http::headers(env, verdict);
        for (name, value) in &headers {
            req = req.header(*name, value.as_str());
        }
        if let Some(key) = &self.secret {
            let t = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let mut ctx = ring::hmac::Context::with_key(key);
            ctx.update(&pure::http::signed(t, &headers));
            ctx.update(&head);
            let mut reader = spool.reader(0..spool.len());
            while let Some(piece) = reader.next(&self.rt).await? {
                ctx.update(&piece);
            }
            ctx.update(&tail);
            let mac = ctx.sign();
            req = req.header(
                "X-Smtp-Signature",
                pure::http::signature_value(t, mac.as_ref()),
            );
        }
        let body = self
            .client
            .stream_between(head, spool.reader(0..spool.len()), tail);
        let req = req.body(body).map_err(io::Error::other)?;
        let answer = self.client.send(req, MAX_ANSWER).await?;
        let first = String::from_utf8_lossy(&answer.body)
            .lines()
            .next()
            .unwrap_or("")
            .to_string();
        Ok((answer.status, first))
    }
}

/// A multipart boundary no sender can guess: 128 random bits.
fn boundary() -> io::Result<String> {
    use ring::rand::SecureRandom as _;
    let mut bits = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bits)
        .map_err(|_| io::Error::other("no random numbers"))?;
    let mut out = String::from("guerrilla-");
    for b in bits {
        out.push_str(&format!("{b:02x}"));
    }
    Ok(out)
}

impl<R: Runtime> Deliver for Http<R> {
    type Transaction = HttpTransaction<R>;

    fn name(&self) -> &'static str {
        "http"
    }

    /// The receiver answers a `HEAD` of the URL (within `GSMTP_HTTP_TIMEOUT`), whatever
    /// it answers but `502`, `503` and `504`, which say it is not there.
    async fn probe(&self) -> Result<(), DeliveryError> {
        let http = &self.0;
        let req = hyper::Request::head(http.url.path.as_str())
            .header(hyper::header::HOST, http.url.authority())
            .header(hyper::header::USER_AGENT, "Guerrilla-SMTPd")
            .body(Client::<R>::full(""))
            .map_err(|e| DeliveryError::transient().because(e))?;
        let timer = async {
            async_io::Timer::after(http.cfg.timeout).await;
            Err(io::Error::from(io::ErrorKind::TimedOut))
        };
        let fail = |why: String| {
            let err = pure::http::result(0, "").unwrap_err();
            err.because(format_args!("HEAD {}: {why}", http.url))
        };
        match Box::pin(http.client.send(req, MAX_ANSWER).or(timer)).await {
            Ok(a) if matches!(a.status, 502..=504) => Err(fail(format!("answered {}", a.status))),
            Ok(_) => Ok(()),
            Err(e) => Err(fail(e.to_string())),
        }
    }

    async fn start(
        &self,
        _: &ReversePath<'static>,
        _: &MailParams,
    ) -> Result<HttpTransaction<R>, DeliveryError> {
        Ok(HttpTransaction(Arc::clone(&self.0)))
    }
}

impl<R: Runtime> Transaction for HttpTransaction<R> {
    type Message = HttpMessage<R>;

    async fn begin(self, env: &Envelope) -> Result<HttpMessage<R>, DeliveryError> {
        let (prefix, results_at) = pure::prefix(env, &self.0.host, SystemTime::now(), true);
        Ok(HttpMessage {
            http: self.0,
            env: Box::new(env.clone()),
            spool: Spool::new(prefix),
            results_at,
        })
    }
}

impl<R: Runtime> Message for HttpMessage<R> {
    async fn write(&mut self, bytes: &[u8]) -> Result<(), DeliveryError> {
        let http = &self.http;
        self.spool.write_in(&http.rt, &http.spool_dir, bytes).await
    }

    async fn commit(self, verdict: &Verdict) -> Result<(), DeliveryError> {
        let Self {
            http,
            env,
            mut spool,
            results_at,
        } = self;
        let results = verdict.header_fields(&http.host);
        if !results.is_empty() {
            spool
                .insert_in(&http.rt, &http.spool_dir, results_at, &results)
                .await?;
        }
        let timer = async {
            async_io::Timer::after(http.cfg.timeout).await;
            Err(io::Error::from(io::ErrorKind::TimedOut))
        };
        let sent = http.post(&env, verdict, spool);
        let (status, first) = match Box::pin(sent.or(timer)).await {
            Ok(answer) => answer,
            Err(e) => {
                let err = pure::http::result(0, "").unwrap_err();
                return Err(err.because(format_args!("POST {}: {e}", http.url)));
            }
        };
        pure::http::result(status, &first).map_err(|e| {
            e.because(format_args!(
                "POST {} answered {status}: {}",
                http.url,
                crate::syntax::escape_for_log(first.as_bytes())
            ))
        })
    }
}
