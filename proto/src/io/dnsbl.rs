//! The DNS blocklists of `GSMTP_DNSBL`, asked about every client at its connection (after
//! a PROXY header named it) and again when XCLIENT names another. What the answers mean
//! is decided in [`crate::dnsbl`]; this module asks.
//!
//! The lookups run on a thread of their own with a current-thread Tokio runtime
//! (hickory's resolver needs one), as the sender checks' do ([`super::verify`]): a
//! session hands it the client's address over a channel and waits, at most
//! `GSMTP_DNS_TIMEOUT`, for the score; the zones are asked in parallel, so a slow zone
//! never holds another, nor any other session. A zone that does not answer in time
//! counts 0, logged and counted (`smtp_dnsbl_lookups_total{result="failed"}`).
//!
//! hickory's cache is off: a listing must be asked again for every connection. A client
//! that passes, with every zone answering, is remembered for the shortest TTL of the
//! answers, kept within [`MIN_TTL`] and [`MAX_TTL`] (postscreen's rule: a client that
//! failed is never remembered). Each zone's health is checked at start and every
//! [`HEALTH_EVERY`]: a broken one is logged, shown in `smtp_dnsbl_zone_broken`, and
//! ignored until it is healthy again.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use mail_auth::hickory_resolver::TokioResolver;
use mail_auth::hickory_resolver::net::runtime::TokioRuntimeProvider;
use mail_auth::hickory_resolver::net::{DnsError, NetError};
use mail_auth::hickory_resolver::proto::rr::RData;

use super::observe::metrics;
use super::time::with_timeout;
use super::verify::{resolver_config, start_thread};
use crate::config::{Config, ConfigError};
use crate::conn::Connection;
use crate::delivery::DeliveryError;
use crate::dnsbl::{self, Action, Answer, DnsblConfig, Health, Screening, Site};
use crate::reply::ReplyBuf;

/// A passing client is remembered for at least this long.
pub(crate) const MIN_TTL: Duration = Duration::from_secs(60);
/// A passing client is remembered for at most this long.
pub(crate) const MAX_TTL: Duration = Duration::from_secs(3600);
/// How often each zone's health is checked.
pub(crate) const HEALTH_EVERY: Duration = Duration::from_secs(300);
/// The most passing clients remembered (past it, the expired go, else all).
const MAX_REMEMBERED: usize = 100_000;

type Job = (IpAddr, async_channel::Sender<Screening>);

/// The blocklists' thread, for one setting of `GSMTP_DNSBL*`.
#[derive(Debug)]
pub(crate) struct Screen {
    jobs: async_channel::Sender<Job>,
    cfg: DnsblConfig,
    timeout: Duration,
}

impl Screen {
    /// Starts the blocklists' thread when `cfg` names any, over the resolver of
    /// `GSMTP_DNS_SERVERS`, and checks every zone's health once before it returns.
    pub(crate) fn start(cfg: &Config) -> Result<Option<Arc<Self>>, ConfigError> {
        if !cfg.dnsbl.any() {
            return Ok(None);
        }
        let (config, mut opts) = resolver_config(&cfg.dns_servers, cfg.dns_timeout)?;
        // One attempt: the session waits GSMTP_DNS_TIMEOUT at most. No cache: see the
        // module docs.
        opts.attempts = 1;
        opts.cache_size = 0;
        let (jobs, rx) = async_channel::unbounded::<Job>();
        let zones = Arc::new(Zones {
            broken: Mutex::new(vec![false; cfg.dnsbl.sites.len()]),
            sites: cfg.dnsbl.sites.clone(),
            threshold: cfg.dnsbl.threshold,
            timeout: cfg.dns_timeout,
            passed: Mutex::new(HashMap::new()),
        });
        start_thread("dnsbl", "GSMTP_DNSBL", move |started| async move {
            let resolver =
                match TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
                    .with_options(opts)
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => return drop(started.send(Err(e.to_string()))),
                };
            zones.check_health(&resolver).await;
            let _ = started.send(Ok(()));
            let (z, r) = (Arc::clone(&zones), resolver.clone());
            tokio::spawn(async move {
                loop {
                    async_io::Timer::after(HEALTH_EVERY).await;
                    z.check_health(&r).await;
                }
            });
            while let Ok((client, done)) = rx.recv().await {
                let (zones, resolver) = (Arc::clone(&zones), resolver.clone());
                tokio::spawn(async move {
                    let _ = done.send(zones.screen(&resolver, client).await).await;
                });
            }
        })?;
        Ok(Some(Arc::new(Self {
            jobs,
            cfg: cfg.dnsbl.clone(),
            timeout: cfg.dns_timeout,
        })))
    }

    /// Whether this thread serves `cfg`'s blocklists (a reload keeps it then).
    pub(crate) fn serves(&self, cfg: &Config) -> bool {
        self.cfg == cfg.dnsbl
    }

    /// What the blocklists say of `client`, within `GSMTP_DNS_TIMEOUT` (and a little
    /// more for the hop): past it, or if the thread is gone, every zone is unanswered.
    async fn ask(&self, client: IpAddr) -> Screening {
        let unanswered = || Screening {
            unanswered: self.cfg.sites.iter().map(|s| s.zone.clone()).collect(),
            ..Screening::default()
        };
        let (done, screening) = async_channel::bounded(1);
        let limit = Instant::now() + self.timeout + Duration::from_millis(500);
        if self.jobs.send((client, done)).await.is_err() {
            return unanswered();
        }
        match with_timeout(limit, screening.recv()).await {
            Ok(Ok(s)) => s,
            _ => unanswered(),
        }
    }

    /// Screens `client` for session `conn`: asks the blocklists, logs and counts a block.
    pub(crate) async fn decide(&self, conn: u64, client: IpAddr) -> Decision {
        let screening = self.ask(client).await;
        let threshold = self.cfg.threshold;
        let refusal = screening.refusal(client, threshold);
        if let Some(listing) = screening.blocked(threshold) {
            metrics()
                .dnsbl_blocked
                .with_label_values(&[listing.zone.as_str()])
                .inc();
            let listed: Vec<String> = screening.listings.iter().map(ToString::to_string).collect();
            tracing::info!(
                conn,
                %client,
                zone = %listing.zone,
                score = screening.score,
                threshold,
                listed = %listed.join(","),
                action = self.cfg.action.as_str(),
                "client blocked by DNS blocklists"
            );
        }
        Decision {
            result: screening.result(threshold),
            refusal,
            action: self.cfg.action,
        }
    }
}

/// What the blocklists decided for a client.
#[derive(Debug)]
pub(crate) struct Decision {
    result: crate::verdict::Result,
    refusal: Option<ReplyBuf>,
    action: Action,
}

impl Decision {
    /// The reply instead of the greeting, when the client is blocked and
    /// `GSMTP_DNSBL_ACTION=reject`.
    pub(crate) fn refused_now(&self) -> Option<ReplyBuf> {
        self.refusal
            .clone()
            .filter(|_| self.action == Action::Reject)
    }

    /// Hands the result (and, under `reject-rcpt`, the refusal) to the session.
    pub(crate) fn apply(self, conn: &mut Connection) {
        let at_rcpt = self.refusal.filter(|_| self.action == Action::RejectRcpt);
        conn.handle_dnsbl(self.result, at_rcpt);
    }
}

/// Screens the client XCLIENT named, once its per-client count said yes (`result`):
/// blocked under `reject`, `result` becomes the refusal, and the session ends with it.
pub(crate) async fn at_xclient(
    screen: Option<&Screen>,
    conn: u64,
    client: Option<IpAddr>,
    result: &mut Result<(), DeliveryError>,
) -> Option<Decision> {
    let (Some(screen), Some(client), Ok(())) = (screen, client, &*result) else {
        return None;
    };
    let decision = screen.decide(conn, client).await;
    if let Some(reply) = decision.refused_now() {
        *result = Err(DeliveryError::reply(reply));
    }
    Some(decision)
}

/// The zones, their health, and the clients remembered as passing: shared by the
/// thread's tasks.
#[derive(Debug)]
struct Zones {
    sites: Vec<Site>,
    /// Per site, in order: whether its last health check found it broken.
    broken: Mutex<Vec<bool>>,
    threshold: i32,
    timeout: Duration,
    /// Clients that passed, until when.
    passed: Mutex<HashMap<IpAddr, (Screening, Instant)>>,
}

impl Zones {
    /// Asks every healthy zone about `client` in parallel, unless it passed lately.
    async fn screen(&self, resolver: &TokioResolver, client: IpAddr) -> Screening {
        let client = crate::policy::canonical(client);
        let now = Instant::now();
        if let Some((s, until)) = lock(&self.passed).get(&client)
            && *until > now
        {
            return s.clone();
        }
        let broken = lock(&self.broken).clone();
        let asked: Vec<(&Site, _)> = self
            .sites
            .iter()
            .zip(broken)
            .filter(|(_, broken)| !broken)
            .map(|(site, _)| {
                let (resolver, timeout) = (resolver.clone(), self.timeout);
                let name = dnsbl::query_name(client, &site.zone);
                (
                    site,
                    tokio::spawn(async move { lookup(&resolver, &name, timeout).await }),
                )
            })
            .collect();
        let mut answers = Vec::with_capacity(asked.len());
        let mut until = now + MAX_TTL;
        for (site, task) in asked {
            let (answer, expires) = task
                .await
                .unwrap_or_else(|e| (Err(e.to_string()), Instant::now()));
            until = until.min(expires);
            count(site, &answer, client);
            answers.push((site, answer));
        }
        let screening = Screening::of(answers.iter().map(|(s, a)| (*s, a)));
        if screening.cacheable(self.threshold) {
            let until = until.clamp(now + MIN_TTL, now + MAX_TTL);
            let mut passed = lock(&self.passed);
            if passed.len() >= MAX_REMEMBERED {
                passed.retain(|_, (_, u)| *u > now);
                if passed.len() >= MAX_REMEMBERED {
                    passed.clear();
                }
            }
            passed.insert(client, (screening.clone(), until));
        }
        screening
    }

    /// Asks every zone about its test addresses and marks it broken or healthy.
    async fn check_health(&self, resolver: &TokioResolver) {
        let tests: Vec<_> = self
            .sites
            .iter()
            .map(|site| {
                let (resolver, timeout) = (resolver.clone(), self.timeout);
                let listed = dnsbl::query_name(IpAddr::V4(dnsbl::TEST_LISTED), &site.zone);
                let unlisted = dnsbl::query_name(IpAddr::V4(dnsbl::TEST_UNLISTED), &site.zone);
                tokio::spawn(async move {
                    let (a, b) = futures_lite::future::zip(
                        lookup(&resolver, &listed, timeout),
                        lookup(&resolver, &unlisted, timeout),
                    )
                    .await;
                    dnsbl::health(&a.0, &b.0)
                })
            })
            .collect();
        for (i, (site, test)) in self.sites.iter().zip(tests).enumerate() {
            let health = test.await.unwrap_or(Health::Unknown);
            let zone = site.zone.as_str();
            let gauge = metrics().dnsbl_broken.with_label_values(&[zone]);
            let was = lock(&self.broken)[i];
            match health {
                Health::Healthy => {
                    if was {
                        tracing::info!(zone, "DNS blocklist healthy again: used");
                    }
                    lock(&self.broken)[i] = false;
                    gauge.set(0);
                }
                Health::Broken(why) => {
                    if !was {
                        tracing::warn!(zone, why = %why, "DNS blocklist broken: ignored until healthy");
                    }
                    lock(&self.broken)[i] = true;
                    gauge.set(1);
                }
                Health::Unknown => {
                    tracing::warn!(zone, "DNS blocklist's health check got no answer");
                    gauge.set(i64::from(was));
                }
            }
        }
    }
}

/// Counts one zone's answer about `client`, and logs one that did not come.
fn count(site: &Site, answer: &Answer, client: IpAddr) {
    let result = match answer {
        Ok(records) if site.listing(records).is_some() => "listed",
        Ok(_) => "clean",
        Err(e) => {
            tracing::warn!(zone = %site.zone, %client, error = %e, "DNS blocklist did not answer: counts 0");
            "failed"
        }
    };
    metrics()
        .dnsbl_lookups
        .with_label_values(&[site.zone.as_str(), result])
        .inc();
}

/// The A records of `name`, and until when the answer holds (now for a failure): none
/// for NXDOMAIN or no A record, an error when the zone did not answer within `timeout`.
async fn lookup(resolver: &TokioResolver, name: &str, timeout: Duration) -> (Answer, Instant) {
    let now = Instant::now();
    let found = with_timeout(now + timeout, resolver.ipv4_lookup(name)).await;
    match found {
        Ok(Ok(lookup)) => {
            let records: Vec<Ipv4Addr> = lookup
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::A(a) => Some(a.0),
                    _ => None,
                })
                .collect();
            (Ok(records), lookup.valid_until())
        }
        Ok(Err(NetError::Dns(DnsError::NoRecordsFound(none)))) => {
            let ttl = none
                .negative_ttl
                .map_or(MIN_TTL, |s| Duration::from_secs(s.into()));
            (Ok(Vec::new()), now + ttl)
        }
        Ok(Err(e)) => (Err(e.to_string()), now),
        Err(_) => (Err("timed out".into()), now),
    }
}

/// The guarded value, even if a task panicked while holding the lock (each change is one
/// assignment).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
