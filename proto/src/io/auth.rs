//! The nginx `auth_http` service (`NGINX_AUTH_ENABLED`, `NGINX_AUTH`): one short HTTP
//! exchange per SMTP session nginx proxies, answered by [`crate::auth_http`], with the
//! backend chosen round robin from `NGINX_AUTH_BACKENDS`, skipping instances that do not
//! accept connections.

use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_lite::io::{AsyncReadExt, AsyncWriteExt};

use super::runtime::Runtime;
use super::time::with_timeout;
use crate::auth_http::{self, MAX_REQUEST};
use crate::config::Config;

/// How long nginx has to send its request and read the answer.
const EXCHANGE: Duration = Duration::from_secs(10);
/// How long a backend found up or down is believed without asking again.
const REMEMBER: Duration = Duration::from_secs(2);
/// How long a probe may take to connect.
const PROBE: Duration = Duration::from_secs(1);

/// The backend instances, picked in turn.
#[derive(Debug)]
pub(crate) struct Backends {
    backends: Vec<SocketAddr>,
    next: AtomicUsize,
    /// Per backend: when it was last probed, and whether it answered.
    health: Mutex<Vec<Option<(Instant, bool)>>>,
}

impl Backends {
    /// `NGINX_AUTH_BACKENDS` of `cfg`, or this instance (`own`) alone.
    pub(crate) fn of(cfg: &Config, own: SocketAddr) -> Self {
        let backends = if cfg.nginx_auth_backends.is_empty() {
            vec![own]
        } else {
            cfg.nginx_auth_backends.clone()
        };
        Self::new(backends)
    }

    fn new(backends: Vec<SocketAddr>) -> Self {
        let health = Mutex::new(vec![None; backends.len()]);
        Self {
            backends,
            next: AtomicUsize::new(0),
            health,
        }
    }

    /// The next backend that accepts connections, trying each at most once.
    async fn pick<R: Runtime>(&self, rt: &R) -> Option<SocketAddr> {
        let n = self.backends.len();
        for _ in 0..n {
            let i = self.next.fetch_add(1, Ordering::Relaxed) % n;
            let addr = auth_http::routable(self.backends[i]);
            let known = self
                .health
                .lock()
                .ok()
                .and_then(|h| h[i])
                .filter(|(at, _)| at.elapsed() < REMEMBER);
            let up = match known {
                Some((_, up)) => up,
                None => {
                    let up = rt
                        .unblock(move || TcpStream::connect_timeout(&addr, PROBE).is_ok())
                        .await;
                    if let Ok(mut h) = self.health.lock() {
                        h[i] = Some((Instant::now(), up));
                    }
                    up
                }
            };
            if up {
                return Some(addr);
            }
        }
        None
    }
}

/// One request and its answer, all within [`EXCHANGE`].
pub(crate) async fn exchange<R: Runtime>(
    rt: R,
    cfg: Arc<Config>,
    pool: Arc<Backends>,
    mut tcp: async_io::Async<TcpStream>,
    peer: SocketAddr,
) {
    let deadline = Instant::now() + EXCHANGE;
    let mut buf = vec![0u8; MAX_REQUEST];
    let mut filled = 0;
    let parsed = loop {
        match auth_http::parse_request(&buf[..filled]) {
            Ok(None) if filled < buf.len() => {}
            Ok(None) => break Err(auth_http::HttpError::TooLarge),
            other => break other.map(|r| r.expect("Some, since None was matched above")),
        }
        match with_timeout(deadline, tcp.read(&mut buf[filled..])).await {
            Ok(Ok(n)) if n > 0 => filled += n,
            _ => return, // closed, timed out or failed before a whole request
        }
    };
    let response = match parsed {
        Ok(req) => {
            // Refusals first: they need no backend, so they take no turn and probe none.
            let decision = match auth_http::refusal(&req, &cfg) {
                Some(refused) => refused,
                None => auth_http::decide(&req, &cfg, pool.pick(&rt).await),
            };
            let to = req
                .to
                .as_deref()
                .map(|t| crate::syntax::escape_for_log(t.as_bytes()));
            tracing::info!(
                proxy = %peer,
                client = req.client_ip.map(tracing::field::display),
                to = to.map(tracing::field::display),
                %decision,
                "auth_http"
            );
            auth_http::response(&decision)
        }
        Err(e) => {
            tracing::info!(proxy = %peer, error = %e, "auth_http: bad request");
            auth_http::bad_request().to_vec()
        }
    };
    let write = async {
        tcp.write_all(&response).await?;
        tcp.close().await
    };
    let _ = with_timeout(deadline, write).await;
}
