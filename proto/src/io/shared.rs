//! What the sessions of a server share: the configuration's generation, the counters,
//! the shutdown signals, and each session's place in the per-client count.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use futures_rustls::TlsAcceptor;

use super::deliver::Deliver;
use super::filter::Filters;
use super::runtime::Runtime;
use super::time::{Signal, Timers};
use super::verify::Verifier;
use crate::config::Config;
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
    /// The checks' thread, when `GSMTP_VERIFY` asks for checks (kept across reloads).
    pub(crate) verifier: Option<Arc<Verifier>>,
    /// The DNS blocklists' thread, when `GSMTP_DNSBL` names any (set after
    /// [`Shared::new`] and [`Shared::next`], which leave it off).
    pub(crate) dnsbl: Option<Arc<super::dnsbl::Screen>>,
    /// The content filters (rspamd, milters), when configured.
    pub(crate) filters: Option<Arc<Filters<R>>>,
    /// Who may log in, when `GSMTP_AUTH` is on (set after [`Shared::new`] and
    /// [`Shared::next`], which leave it off).
    pub(crate) logins: Option<Arc<super::login::Logins>>,
    /// Fired at the end of the shutdown grace period: remaining sessions get `421`.
    pub(crate) force: Signal,
    /// Fired when shutdown begins: listeners close.
    pub(crate) stopping: Signal,
    /// Sessions open now.
    pub(crate) active: Arc<AtomicUsize>,
    /// The sessions' deadlines.
    pub(crate) timers: Arc<Timers>,
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

    /// The first generation of a server.
    pub(crate) fn new(
        rt: R,
        cfg: Config,
        deliver: D,
        tls: Option<TlsAcceptor>,
        verifier: Option<Arc<Verifier>>,
        filters: Option<Filters<R>>,
        timers: Timers,
    ) -> Self {
        Self {
            timers: Arc::new(timers),
            rt,
            cfg: Arc::new(cfg),
            deliver: Arc::new(deliver),
            tls,
            verifier,
            dnsbl: None,
            filters: filters.map(Arc::new),
            logins: None,
            force: Signal::new(),
            stopping: Signal::new(),
            active: Arc::new(AtomicUsize::new(0)),
            next_id: Arc::new(AtomicU64::new(0)),
            clients: Arc::new(Mutex::new(ClientCounts::default())),
        }
    }

    /// The generation after this one: `cfg`, `deliver`, `tls`, `verifier` and `filters`
    /// for the sessions accepted from now on; the same counters and signals.
    pub(crate) fn next(
        &self,
        cfg: Config,
        deliver: Arc<D>,
        tls: Option<TlsAcceptor>,
        verifier: Option<Arc<Verifier>>,
        filters: Option<Filters<R>>,
    ) -> Self {
        Self {
            rt: self.rt.clone(),
            cfg: Arc::new(cfg),
            deliver,
            tls,
            verifier,
            dnsbl: None,
            filters: filters.map(Arc::new),
            logins: None,
            force: self.force.clone(),
            stopping: self.stopping.clone(),
            active: Arc::clone(&self.active),
            timers: Arc::clone(&self.timers),
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

    /// The generation of a new server.
    pub(crate) fn new(first: Shared<R, D>) -> Self {
        Self(RwLock::new(Arc::new(first)))
    }

    /// Makes `next` the generation new sessions are accepted under.
    pub(crate) fn set(&self, next: Shared<R, D>) {
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
pub(crate) struct ActiveGuard<R: Runtime, D: Deliver>(pub(crate) Arc<Shared<R, D>>);

impl<R: Runtime, D: Deliver> ActiveGuard<R, D> {
    /// Counts a session of `shared`'s (already added to `active`) until dropped.
    pub(crate) fn new(shared: Arc<Shared<R, D>>) -> Self {
        super::observe::metrics().open.inc();
        Self(shared)
    }
}

impl<R: Runtime, D: Deliver> Drop for ActiveGuard<R, D> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
        super::observe::metrics().open.dec();
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
