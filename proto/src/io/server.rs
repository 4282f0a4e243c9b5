//! Starting and stopping a server: listeners, the max-clients gate, privilege drop, and
//! graceful shutdown. Generic over the [`Runtime`], so both frontends share all of it.

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use futures_lite::future;
use futures_rustls::TlsAcceptor;

use super::deliver::{Deliver, Destination};
use super::drive::{Signal, drive};
use super::runtime::{Plain, Runtime, accept};
use crate::config::{Config, ConfigError};
use crate::conn::{Accept, CloseReason, Connection};
use crate::policy::{ClientCounts, ClientKey};

/// What the sessions of one configuration share. A session keeps the generation it was
/// accepted under to its end; a reload (SIGHUP) makes a new generation for the sessions
/// that follow, with the same counters and signals.
pub(crate) struct Shared<R: Runtime, D: Deliver> {
    pub(crate) rt: R,
    pub(crate) cfg: Arc<Config>,
    /// Where accepted mail goes (kept across a reload that does not change it).
    pub(crate) deliver: Arc<D>,
    pub(crate) tls: Option<TlsAcceptor>,
    /// Fired at the end of the shutdown grace period: remaining sessions get `421`.
    pub(crate) force: Signal,
    /// Fired when shutdown begins: listeners close.
    stopping: Signal,
    active: Arc<AtomicUsize>,
    next_id: Arc<AtomicU64>,
    /// Sessions per client, for `GM_MAX_CLIENTS_PER_IP`.
    clients: Arc<Mutex<ClientCounts>>,
}

impl<R: Runtime, D: Deliver> Shared<R, D> {
    /// Sessions open now.
    pub(crate) fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// A new connection number, from 1.
    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The generation after this one: `cfg`, `deliver` and `tls` for the sessions accepted
    /// from now on; the same counters and signals.
    fn next(&self, cfg: Config, deliver: Arc<D>, tls: Option<TlsAcceptor>) -> Self {
        Self {
            rt: self.rt.clone(),
            cfg: Arc::new(cfg),
            deliver,
            tls,
            force: self.force.clone(),
            stopping: self.stopping.clone(),
            active: Arc::clone(&self.active),
            next_id: Arc::clone(&self.next_id),
            clients: Arc::clone(&self.clients),
        }
    }
}

/// The generation new sessions are accepted under.
pub(crate) struct Current<R: Runtime, D: Deliver>(RwLock<Arc<Shared<R, D>>>);

impl<R: Runtime, D: Deliver> Current<R, D> {
    pub(crate) fn get(&self) -> Arc<Shared<R, D>> {
        Arc::clone(
            &self
                .0
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    fn set(&self, next: Shared<R, D>) {
        *self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(next);
    }
}

impl<R: Runtime, D: Deliver> std::fmt::Debug for Shared<R, D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("listen", &self.cfg.listen)
            .field("active", &self.active)
            .finish_non_exhaustive()
    }
}

/// Counts a session while it lives.
pub(crate) struct ActiveGuard<R: Runtime, D: Deliver>(Arc<Shared<R, D>>);

impl<R: Runtime, D: Deliver> ActiveGuard<R, D> {
    fn new(shared: Arc<Shared<R, D>>) -> Self {
        super::metrics::metrics().open.inc();
        Self(shared)
    }
}

impl<R: Runtime, D: Deliver> Drop for ActiveGuard<R, D> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
        super::metrics::metrics().open.dec();
    }
}

/// A session's place in the per-client count (`GM_MAX_CLIENTS_PER_IP`), given back when
/// the session ends. It counts nobody until [`ClientSlot::move_to`] names the client.
pub(crate) struct ClientSlot<R: Runtime, D: Deliver> {
    shared: Arc<Shared<R, D>>,
    key: Option<ClientKey>,
}

impl<R: Runtime, D: Deliver> ClientSlot<R, D> {
    /// A slot that counts nobody yet.
    pub(crate) fn new(shared: Arc<Shared<R, D>>) -> Self {
        Self { shared, key: None }
    }

    /// Counts the session for `ip`'s client instead of the one before. Returns false, and
    /// changes nothing, when that client has its limit of sessions already.
    pub(crate) fn move_to(&mut self, ip: IpAddr) -> bool {
        let limit = self.shared.cfg.max_clients_per_ip;
        let key = ClientKey::of(ip);
        if limit == 0 || self.key == Some(key) {
            return true;
        }
        let mut counts = lock(&self.shared.clients);
        if !counts.try_add(key, limit) {
            tracing::info!(client = %ip, limit, "too many connections from this client");
            return false;
        }
        if let Some(old) = self.key.replace(key) {
            counts.remove(old);
        }
        true
    }

    /// Gives the slot back before the session's last reply is sent, so that a client
    /// that reconnects as soon as it reads `221` finds its slot free.
    pub(crate) fn release(&mut self) {
        if let Some(key) = self.key.take() {
            lock(&self.shared.clients).remove(key);
        }
    }
}

impl<R: Runtime, D: Deliver> Drop for ClientSlot<R, D> {
    fn drop(&mut self) {
        self.release();
    }
}

/// This process's part of every queue id ([`Accept::instance`]): drawn once, from the
/// standard library's per-process random hash keys, the pid and the clock.
pub(crate) fn instance() -> u32 {
    use std::hash::BuildHasher;
    static INSTANCE: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *INSTANCE.get_or_init(|| {
        let keys = std::collections::hash_map::RandomState::new();
        keys.hash_one((std::process::id(), SystemTime::now())) as u32
    })
}

/// The counts, even if a thread panicked while holding the lock (they stay consistent:
/// each change is one call).
fn lock(m: &Mutex<ClientCounts>) -> std::sync::MutexGuard<'_, ClientCounts> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

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
                super::metrics::metrics().health.reset();
                new
            }
            _ => Arc::clone(&old.deliver),
        };
        let restart = old.cfg.restart_needed(&cfg);
        cfg.keep_restart_only(&old.cfg);
        self.current.set(old.next(cfg, deliver, tls));
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

/// Binds a listener with the kernel's largest accept backlog (std's is 128, too few for
/// bursts of connections) and `SO_REUSEADDR`, as std does.
fn bind(addr: SocketAddr, key: &str) -> Result<TcpListener, ConfigError> {
    use std::os::fd::AsRawFd;

    use nix::sys::socket::{
        self, AddressFamily, Backlog, SockFlag, SockType, SockaddrStorage, sockopt,
    };
    let fail = |e: nix::Error| ConfigError {
        key: key.into(),
        message: format!("cannot listen on {addr}: {e}"),
    };
    let family = if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd =
        socket::socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).map_err(fail)?;
    socket::setsockopt(&fd, sockopt::ReuseAddr, &true).map_err(fail)?;
    socket::bind(fd.as_raw_fd(), &SockaddrStorage::from(addr)).map_err(fail)?;
    socket::listen(&fd, Backlog::MAXALLOWABLE).map_err(fail)?;
    Ok(TcpListener::from(fd))
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

/// Starts a server whose destination `open` makes once privileges are dropped.
fn start_with_opener<R: Runtime, D: Deliver>(
    rt: R,
    cfg: Config,
    open: impl FnOnce(&Config) -> Result<D, ConfigError>,
) -> Result<Server<R, D>, ConfigError> {
    raise_fd_limit();
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
        Some(path) if target.drops_root() => Some(keep_pid_file(path)?),
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
    let shared = Arc::new(Shared {
        rt: rt.clone(),
        cfg: Arc::new(cfg),
        deliver: Arc::new(deliver),
        tls,
        force: Signal::new(),
        stopping: Signal::new(),
        active: Arc::new(AtomicUsize::new(0)),
        next_id: Arc::new(AtomicU64::new(0)),
        clients: Arc::new(Mutex::new(ClientCounts::default())),
    });
    let current = Arc::new(Current(RwLock::new(Arc::clone(&shared))));
    let wrap = |l: TcpListener, key: &str| {
        async_io::Async::new(l).map_err(|e| ConfigError {
            key: key.into(),
            message: e.to_string(),
        })
    };
    let listeners = [
        (Some(smtp), false, "GSTMP_LISTEN_INTERFACE"),
        (implicit, true, "GSMTP_TLS_LISTEN_INTERFACE"),
    ];
    for (listener, implicit_tls, key) in listeners {
        if let Some(l) = listener {
            let l = wrap(l, key)?;
            rt.spawn(accept_loop(Arc::clone(&current), l, implicit_tls));
        }
    }
    if let Some(l) = auth {
        let l = wrap(l, "NGINX_AUTH")?;
        let generations = Arc::clone(&current);
        rt.spawn(super::auth::serve(
            Box::new(move || Arc::clone(&generations.get().cfg)),
            rt.clone(),
            l,
            addr,
            shared.stopping.clone(),
        ));
    }
    if let Some(l) = metrics {
        let l = wrap(l, "GSMTP_METRICS_LISTEN")?;
        rt.spawn(super::metrics::serve(
            rt.clone(),
            l,
            shared.stopping.clone(),
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

/// After the drop, the server may not be allowed to remove its PID file (`/run` belongs
/// to root). So a small helper, started while still root, waits for the server's end (its
/// standard input, a pipe from the server, closes when the server exits, whatever the
/// way) and then removes the file, if it still names the server. It ignores the signals
/// that stop the server (a terminal's Ctrl-C, systemd's SIGTERM to the whole group).
fn keep_pid_file(path: &std::path::Path) -> Result<std::process::ChildStdin, ConfigError> {
    const SCRIPT: &str = "trap '' HUP INT TERM; read -r _; [ \"$(cat -- \"$1\" 2>/dev/null)\" = \"$2\" ] && rm -f -- \"$1\"";
    let child = std::process::Command::new("/bin/sh")
        .args(["-c", SCRIPT, "guerrilla-pid-file"])
        .arg(path)
        .arg(std::process::id().to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    child
        .ok()
        .and_then(|mut c| c.stdin.take())
        .ok_or_else(|| ConfigError {
            key: "PID_FILE".into(),
            message: "cannot start the helper that removes it at exit".into(),
        })
}

/// Accepts until shutdown begins. Over `GM_MAX_CLIENTS`, a connection is answered
/// `421 4.3.2` and closed at once, so waiting clients never pile up unanswered.
async fn accept_loop<R: Runtime, D: Deliver>(
    current: Arc<Current<R, D>>,
    listener: async_io::Async<TcpListener>,
    implicit_tls: bool,
) {
    let stopping = current.get().stopping.clone();
    loop {
        let next = future::or(async { Some(accept(&listener).await) }, async {
            stopping.wait().await;
            None
        });
        let Some(accepted) = next.await else { break };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of descriptors, most likely: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                async_io::Timer::after(Duration::from_millis(50)).await;
                continue;
            }
        };
        let shared = current.get();
        let n = shared.active.fetch_add(1, Ordering::Relaxed) + 1;
        let guard = ActiveGuard::new(Arc::clone(&shared));
        if n > shared.cfg.max_clients {
            let m = super::metrics::metrics();
            m.connections.with_label_values(&["busy"]).inc();
            m.refusals.with_label_values(&["busy", "421"]).inc();
            shared.rt.spawn(async move {
                let _guard = guard;
                let plain = Plain::new(tcp);
                refuse(&_guard.0, plain, peer, CloseReason::Busy).await;
            });
        } else {
            // No wrapping `async` block: it would hold the session future twice.
            shared.rt.spawn(super::session::serve(
                Arc::clone(&shared),
                tcp,
                peer,
                implicit_tls,
                guard,
            ));
        }
    }
}

/// Answers a connection with `421` and closes it: `why` is [`CloseReason::Busy`] over
/// `GM_MAX_CLIENTS` (`4.3.2`), [`CloseReason::ClientLimit`] over `GM_MAX_CLIENTS_PER_IP`
/// (`4.7.0`).
pub(crate) async fn refuse<R: Runtime, D: Deliver>(
    shared: &Arc<Shared<R, D>>,
    mut plain: Plain,
    peer: SocketAddr,
    why: CloseReason,
) {
    let accept = Accept {
        peer,
        id: 0,
        active: shared.active(),
        wall: SystemTime::now(),
        instance: instance(),
        tls: None,
    };
    let mut conn = Connection::refuse(Arc::clone(&shared.cfg), Instant::now(), accept, why);
    let mut slot = ClientSlot::new(Arc::clone(shared));
    let _ = drive(shared, &mut conn, &mut plain, &mut slot).await;
    tracing::info!(client = %peer.ip(), reason = %why, "connection refused");
}

/// Lifts the soft limit on open files to the hard limit, so `GM_MAX_CLIENTS` is not
/// capped by a small default.
fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
    {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}
