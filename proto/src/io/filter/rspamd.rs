//! Asking rspamd: the message POSTed to `/checkv2` with the envelope in rspamd's request
//! headers, over the HTTP client the destinations share, bounded by
//! `GSMTP_RSPAMD_TIMEOUT`. What the answer means is [`crate::filter::rspamd`].

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{Config, ConfigError, HttpUrl};
use crate::delivery::Envelope;
use crate::filter::rspamd::{self as pure, Answer};
use crate::io::deliver::client::Client;
use crate::io::deliver::spool::Frozen;
use crate::io::runtime::Runtime;
use crate::io::time::with_timeout;

/// How much of rspamd's answer is read.
const MAX_ANSWER: usize = 1024 * 1024;

/// Connections kept to rspamd (and requests at once).
const CONNECTIONS: usize = 50;

/// rspamd's normal worker.
pub(crate) struct Rspamd<R: Runtime> {
    url: HttpUrl,
    timeout: Duration,
    password: Option<String>,
    host: String,
    client: Client<R>,
}

impl<R: Runtime> std::fmt::Debug for Rspamd<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rspamd")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl<R: Runtime> Rspamd<R> {
    /// rspamd at `GSMTP_RSPAMD_URL`, if set.
    pub(crate) fn open(rt: &R, cfg: &Config) -> Result<Option<Self>, ConfigError> {
        let Some(url) = cfg.filter.rspamd_url.clone() else {
            return Ok(None);
        };
        let client = Client::new(
            rt.clone(),
            &url,
            "GSMTP_RSPAMD_URL",
            cfg.http.ca.as_deref(),
            CONNECTIONS,
        )?;
        Ok(Some(Self {
            url,
            timeout: cfg.filter.rspamd_timeout,
            password: cfg
                .filter
                .rspamd_password
                .as_ref()
                .map(|s| s.expose().to_string()),
            host: cfg.host_name.clone(),
            client,
        }))
    }

    /// Where it is, for the log.
    pub(crate) fn name(&self) -> String {
        format!("rspamd at {}", self.url)
    }

    /// Asks about `text` (the message as received); an error says what failed.
    pub(crate) async fn check(&self, env: &Envelope, text: &Arc<Frozen>) -> Result<Answer, String> {
        let deadline = Instant::now() + self.timeout;
        match with_timeout(deadline, self.post(env, text)).await {
            Ok(Ok((200, body))) => pure::parse(&body),
            Ok(Ok((status, body))) => Err(format!(
                "answered {status} {}",
                String::from_utf8_lossy(&body).lines().next().unwrap_or("")
            )),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {} s", self.timeout.as_secs())),
        }
    }

    async fn post(&self, env: &Envelope, text: &Arc<Frozen>) -> io::Result<(u16, Vec<u8>)> {
        let path = format!(
            "{}checkv2",
            self.url.path.trim_end_matches('/').to_owned() + "/"
        );
        let mut req = hyper::Request::post(path.as_str())
            .header(hyper::header::HOST, self.url.authority())
            .header(hyper::header::CONTENT_LENGTH, text.len())
            .header(hyper::header::USER_AGENT, "Guerrilla-SMTPd");
        for (name, value) in pure::request_headers(env, &self.host, self.password.as_deref()) {
            req = req.header(name, value);
        }
        let body = self.client.stream(text.reader(0..text.len()));
        let req = req.body(body).map_err(io::Error::other)?;
        let answer = self.client.send(req, MAX_ANSWER).await?;
        Ok((answer.status, answer.body))
    }
}
