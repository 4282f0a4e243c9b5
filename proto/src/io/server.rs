//! Starting, reloading and stopping a server: its listeners and their accept loops, the
//! privilege drop, the reload's new generation, and graceful shutdown. Generic over the
//! [`Runtime`], so both frontends share all of it.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::deliver::{Deliver, Destination};
use super::dnsbl::Screen;
use super::filter::Filters;
use super::listen::{accept_loop, bind, raise_fd_limit, reactor};
use super::login::Logins;
use super::runtime::Runtime;
use super::shared::{Current, Shared};
use super::time::{Signal, Timers};
use super::verify::Verifier;
use crate::config::{Config, ConfigError};

/// Makes the destination again for a reloaded configuration.
type Reopen<D> = Box<dyn Fn(&Config) -> Result<D, ConfigError> + Send + Sync>;

/// A running server. Dropping it does not stop it; call [`Server::shutdown`].
pub struct Server<R: Runtime, D: Deliver = Destination<R>> {
    current: Arc<Current<R, D>>,
    /// `None` for a destination of the caller's, which a reload keeps.
    reopen: Option<Reopen<D>>,
    metrics_addr: Option<SocketAddr>,
    addr: SocketAddr,
    tls_addr: Option<SocketAddr>,
    auth_addr: Option<SocketAddr>,
    /// The pipe to the helper that removes the PID file once the server is gone.
    _pid_keeper: Option<std::process::ChildStdin>,
}

impl<R: Runtime, D: Deliver> std::fmt::Debug for Server<R, D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.addr)
            .field("active", &self.active())
            .finish_non_exhaustive()
    }
}

impl<R: Runtime, D: Deliver> Server<R, D> {
    /// Where the SMTP listener is (useful when the config asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where the implicit-TLS listener is, if configured.
    pub fn tls_local_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    /// Where the nginx `auth_http` service is, if enabled.
    pub fn auth_local_addr(&self) -> Option<SocketAddr> {
        self.auth_addr
    }

    /// Sessions open now.
    pub fn active(&self) -> usize {
        self.current.get().active()
    }

    /// Where `/metrics` and `/healthz` are served, if enabled.
    pub fn metrics_local_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The configuration new sessions get.
    pub fn config(&self) -> Arc<Config> {
        Arc::clone(&self.current.get().cfg)
    }

    /// Takes `cfg` for the sessions accepted from now on; open sessions keep theirs to
    /// their end. The TLS certificate and key are loaded, and the destination is made
    /// again if its settings changed (one of the caller's is kept), before anything
    /// changes: on an error, naming the key, the running configuration stays. Settings
    /// only a restart can change keep their running values; their keys are returned.
    pub fn reload(&self, mut cfg: Config) -> Result<Vec<&'static str>, ConfigError> {
        let old = self.current.get();
        let tls = match (&cfg.tls_cert, &cfg.tls_key) {
            (Some(cert), Some(key)) => Some(super::tls::acceptor(cert, key)?),
            _ => None,
        };
        if cfg.tls_listen.is_some() && tls.is_none() {
            return Err(ConfigError {
                key: "GSMTP_PUB_KEY".into(),
                message: "the implicit-TLS listener needs a certificate and key".into(),
            });
        }
        let deliver = match &self.reopen {
            Some(reopen) if !old.cfg.same_destination(&cfg) => {
                let new = Arc::new(reopen(&cfg)?);
                super::observe::metrics().health.reset();
                new
            }
            _ => Arc::clone(&old.deliver),
        };
        let restart = old.cfg.restart_needed(&cfg);
        cfg.keep_restart_only(&old.cfg);
        // The checks' thread outlives the reload that started it; its DNS settings are
        // restart-only.
        let verifier = match &old.verifier {
            Some(v) => Some(Arc::clone(v)),
            None => verifier(&cfg)?,
        };
        // The blocklists' thread is kept while their settings are (its pass cache and
        // the zones' health with it).
        let dnsbl = match &old.dnsbl {
            Some(s) if s.serves(&cfg) => Some(Arc::clone(s)),
            _ => Screen::start(&cfg)?,
        };
        let filters = Filters::open(&old.rt, &cfg)?;
        let logins = Logins::open(&cfg)?;
        let mut next = old.next(cfg, deliver, tls, verifier, filters);
        next.logins = logins.map(Arc::new);
        next.dnsbl = dnsbl;
        self.current.set(next);
        Ok(restart)
    }

    /// Stops accepting, lets open sessions finish for up to `grace`, then sends `421 4.3.2`
    /// to the rest and waits (a few seconds at most) for them to close. A message being
    /// stored is finished first; one being received is thrown away. Blocks the caller.
    pub fn shutdown(&self, grace: Duration) {
        let shared = self.current.get();
        shared.stopping.fire();
        if !wait_for(|| shared.active() == 0, grace) {
            shared.force.fire();
            wait_for(|| shared.active() == 0, Duration::from_secs(10));
        }
    }
}

/// The checks' thread, if `cfg` asks for checks.
fn verifier(cfg: &Config) -> Result<Option<Arc<Verifier>>, ConfigError> {
    if !cfg.verify.any() {
        return Ok(None);
    }
    Verifier::start(&cfg.dns_servers, cfg.dns_timeout).map(|v| Some(Arc::new(v)))
}

/// Polls `done` until it holds or `limit` passes; returns whether it held.
fn wait_for(done: impl Fn() -> bool, limit: Duration) -> bool {
    let end = Instant::now() + limit;
    while !done() {
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

/// Starts a server: loads the TLS files, binds every listener, writes the pid file, makes
/// the Maildir root and hands it (with the log and PID files) to the unprivileged user,
/// drops privileges, opens the Maildir as that user, and starts accepting. Every error
/// names the configuration key at fault.
pub fn start<R: Runtime>(rt: R, cfg: Config) -> Result<Server<R>, ConfigError> {
    let (first, again) = (rt.clone(), rt.clone());
    let mut server =
        start_with_opener(rt, cfg, move |cfg: &Config| Destination::open(&first, cfg))?;
    server.reopen = Some(Box::new(move |cfg: &Config| Destination::open(&again, cfg)));
    Ok(server)
}

/// [`start`] with a destination of the caller's: every accepted message goes to
/// `deliver` (`GSMTP_STORAGE` and the Maildir keys are not used).
pub fn start_with<R: Runtime, D: Deliver>(
    rt: R,
    cfg: Config,
    deliver: D,
) -> Result<Server<R, D>, ConfigError> {
    start_with_opener(rt, cfg, |_: &Config| Ok(deliver))
}

/// How many threads run sessions here ([`Config::session_threads`] of this machine's
/// cores).
pub fn session_threads(cfg: &Config) -> usize {
    cfg.session_threads(std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Starts a server whose destination `open` makes once privileges are dropped.
fn start_with_opener<R: Runtime, D: Deliver>(
    rt: R,
    cfg: Config,
    open: impl FnOnce(&Config) -> Result<D, ConfigError>,
) -> Result<Server<R, D>, ConfigError> {
    raise_fd_limit();
    rt.start_threads(session_threads(&cfg));
    let target = super::privilege::Target::resolve(&cfg)?;
    let tls = match (&cfg.tls_cert, &cfg.tls_key) {
        (Some(cert), Some(key)) => Some(super::tls::acceptor(cert, key)?),
        _ => None,
    };
    let smtp = bind(cfg.listen, "GSTMP_LISTEN_INTERFACE")?;
    let implicit = cfg
        .tls_listen
        .map(|a| bind(a, "GSMTP_TLS_LISTEN_INTERFACE"))
        .transpose()?;
    let auth = cfg
        .nginx_auth_enabled
        .then(|| bind(cfg.nginx_auth, "NGINX_AUTH"))
        .transpose()?;
    let metrics = cfg
        .metrics_listen
        .map(|a| bind(a, "GSMTP_METRICS_LISTEN"))
        .transpose()?;
    if let Some(path) = &cfg.pid_file {
        std::fs::write(path, format!("{}\n", std::process::id())).map_err(|e| ConfigError {
            key: "PID_FILE".into(),
            message: format!("cannot write {}: {e}", path.display()),
        })?;
    }
    target.prepare(&cfg)?;
    let pid_keeper = match &cfg.pid_file {
        Some(path) if target.drops_root() => Some(super::privilege::keep_pid_file(path)?),
        _ => None,
    };
    target.switch()?;
    let deliver = open(&cfg)?;
    let local = |l: &TcpListener, key: &str| {
        l.local_addr().map_err(|e| ConfigError {
            key: key.into(),
            message: e.to_string(),
        })
    };
    let addr = local(&smtp, "GSTMP_LISTEN_INTERFACE")?;
    let tls_addr = implicit
        .as_ref()
        .map(|l| local(l, "GSMTP_TLS_LISTEN_INTERFACE"))
        .transpose()?;
    let auth_addr = auth.as_ref().map(|l| local(l, "NGINX_AUTH")).transpose()?;
    let metrics_addr = metrics
        .as_ref()
        .map(|l| local(l, "GSMTP_METRICS_LISTEN"))
        .transpose()?;
    let verifier = verifier(&cfg)?;
    let dnsbl = Screen::start(&cfg)?;
    let filters = Filters::open(&rt, &cfg)?;
    let logins = Logins::open(&cfg)?;
    let timers = Timers::start().map_err(|e| ConfigError {
        key: "GSMTP_TIMEOUT".into(),
        message: format!("cannot start the timer thread: {e}"),
    })?;
    let mut shared = Shared::new(rt.clone(), cfg, deliver, tls, verifier, filters, timers);
    shared.logins = logins.map(Arc::new);
    shared.dnsbl = dnsbl;
    let stopping_signal = shared.stopping.clone();
    let current = Arc::new(Current::new(shared));
    let listeners = [
        (Some(smtp), false, "GSTMP_LISTEN_INTERFACE"),
        (implicit, true, "GSMTP_TLS_LISTEN_INTERFACE"),
    ];
    for (listener, implicit_tls, key) in listeners {
        if let Some(l) = listener {
            let generations = Arc::clone(&current);
            rt.spawn(accept_loop(
                reactor(l, key)?,
                stopping_signal.clone(),
                "smtp",
                move |tcp, peer| super::serve::admit(&generations, tcp, peer, implicit_tls),
            ));
        }
    }
    if let Some(l) = auth {
        let generations = Arc::clone(&current);
        let backends = Arc::new(super::auth::Backends::of(&generations.get().cfg, addr));
        let rt2 = rt.clone();
        rt.spawn(accept_loop(
            reactor(l, "NGINX_AUTH")?,
            stopping_signal.clone(),
            "auth_http",
            move |tcp, peer| {
                let cfg = Arc::clone(&generations.get().cfg);
                let exchange =
                    super::auth::exchange(rt2.clone(), cfg, Arc::clone(&backends), tcp, peer);
                rt2.spawn(exchange);
            },
        ));
    }
    if let Some(l) = metrics {
        // It keeps answering during shutdown: /healthz says 503 then.
        let rt2 = rt.clone();
        let stopping = stopping_signal.clone();
        rt.spawn(accept_loop(
            reactor(l, "GSMTP_METRICS_LISTEN")?,
            Signal::never(),
            "metrics",
            move |tcp, _| rt2.spawn(super::metrics::answer(tcp, stopping.clone())),
        ));
    }
    Ok(Server {
        current,
        reopen: None,
        metrics_addr,
        addr,
        tls_addr,
        auth_addr,
        _pid_keeper: pid_keeper,
    })
}
