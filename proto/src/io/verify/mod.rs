//! The checks of `GSMTP_VERIFY`: SPF, DKIM, DMARC and ARC, by Stalwart's `mail-auth`,
//! between the end of a message and its commit.
//!
//! `mail-auth` resolves through hickory's resolver, which needs a Tokio reactor. That is
//! kept in one place: one thread runs a current-thread Tokio runtime, and sessions hand
//! it their messages' header sections and body hashes over a channel ([`Verifier`]);
//! each message's checks run as a task of their own there, so a slow lookup never blocks
//! a session's task, nor the other messages' checks. The cost: one thread and Tokio's
//! runtime in the binary, and a channel hop per message. (Polling the checks in the
//! session's own task, inside the runtime's context, saves the hop but measured 15%
//! slower under load: the signatures' cryptography then competes with the sessions'
//! I/O on their threads, where one thread kept for it runs it back to back.)
//!
//! Every lookup is bounded by `GSMTP_DNS_TIMEOUT` (hickory's per-query timeout, two
//! attempts); the whole of a message's checks by [`OVERALL`] times that. Records are
//! cached for their TTLs ([`cache`]). A check that cannot complete is `temperror`, never
//! a silent pass.

mod cache;
pub(crate) mod reading;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mail_auth::dkim::DkimError;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts,
};
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{
    AuthenticatedMessage, DkimResult, DmarcResult, Error, MessageAuthenticator, Parameters,
    SpfResult,
};

use self::cache::Caches;
use self::reading::Read;
use super::time::with_timeout;
use crate::config::ConfigError;
use crate::verdict::{self, Checks, Outcome, Verdict};

/// How long an answer that a name has no such record is kept when it says nothing of
/// its own TTL (no SOA).
const NEGATIVE_MIN_TTL: Duration = Duration::from_secs(30);

/// A message's checks may take this many times `GSMTP_DNS_TIMEOUT` in all.
pub(crate) const OVERALL: u32 = 4;

/// What a message's checks are about.
#[derive(Debug)]
pub(crate) struct Request {
    /// The checks to run.
    pub(crate) checks: Checks,
    /// The real client (after PROXY or XCLIENT).
    pub(crate) client_ip: IpAddr,
    /// Its HELO or EHLO name.
    pub(crate) helo: String,
    /// The envelope sender, bare (`a@b.example`), empty for `<>`.
    pub(crate) mail_from: String,
    /// Our host name, as SPF's `%{r}` and the authserv-id.
    pub(crate) host: String,
    /// The message as read.
    pub(crate) read: Read,
}

type Job = (Request, async_channel::Sender<Verdict>);

/// The checks' thread: see the module docs.
#[derive(Debug)]
pub(crate) struct Verifier {
    jobs: async_channel::Sender<Job>,
    timeout: Duration,
}

impl Verifier {
    /// Starts the checks' thread, resolving through `servers` (`host:port`; empty: the
    /// system's resolv.conf) with `timeout` per query. An error names the key at fault.
    pub(crate) fn start(servers: &[SocketAddr], timeout: Duration) -> Result<Self, ConfigError> {
        let (config, mut opts) = resolver_config(servers, timeout)?;
        opts.attempts = 2;
        // Our own caches keep what mail-auth parsed, for the records' TTLs; hickory's
        // keeps the answers that there is no such record (mail-auth caches only what it
        // found), for their SOA's TTL, and at least NEGATIVE_MIN_TTL when they name none:
        // DMARC's walk up the From: domain asks for such names with every message.
        opts.cache_size = 4096;
        opts.negative_min_ttl = Some(NEGATIVE_MIN_TTL);
        let (jobs, rx) = async_channel::unbounded::<Job>();
        start_thread("verify", "GSMTP_VERIFY", move |started| async move {
            let auth = match MessageAuthenticator::new(config, opts) {
                Ok(a) => Arc::new(a),
                Err(e) => return drop(started.send(Err(e.to_string()))),
            };
            let _ = started.send(Ok(()));
            let caches = Arc::new(Caches::default());
            while let Ok((req, done)) = rx.recv().await {
                let (auth, caches) = (Arc::clone(&auth), Arc::clone(&caches));
                tokio::spawn(async move {
                    let _ = done.send(check(&auth, &caches, req).await).await;
                });
            }
        })?;
        Ok(Self { jobs, timeout })
    }

    /// Runs `req`'s checks. Past [`OVERALL`] times the DNS timeout, or if the checks'
    /// thread is gone, every check asked for is `temperror`.
    pub(crate) async fn verify(&self, req: Request) -> Verdict {
        let checks = req.checks;
        let (done, verdict) = async_channel::bounded(1);
        let limit = Instant::now() + self.timeout * OVERALL;
        if self.jobs.send((req, done)).await.is_err() {
            return unfinished(checks, "the checks' thread is gone");
        }
        match with_timeout(limit, verdict.recv()).await {
            Ok(Ok(v)) => v,
            Ok(Err(_)) => unfinished(checks, "the checks' thread is gone"),
            Err(_) => unfinished(checks, "the checks took too long"),
        }
    }
}

/// The resolver's settings: `servers` (`host:port`, over UDP and TCP; empty: the
/// system's resolv.conf), `timeout` per query.
pub(crate) fn resolver_config(
    servers: &[SocketAddr],
    timeout: Duration,
) -> Result<(ResolverConfig, ResolverOpts), ConfigError> {
    let (config, mut opts) = if servers.is_empty() {
        mail_auth::hickory_resolver::system_conf::read_system_conf().map_err(|e| ConfigError {
            key: "GSMTP_DNS_SERVERS".into(),
            message: format!("cannot read the system's resolver configuration: {e}"),
        })?
    } else {
        let mut config = ResolverConfig::default();
        for s in servers {
            let mut udp = ConnectionConfig::udp();
            udp.port = s.port();
            let mut tcp = ConnectionConfig::tcp();
            tcp.port = s.port();
            let mut server = NameServerConfig::udp_and_tcp(s.ip());
            server.connections = vec![udp, tcp];
            config.add_name_server(server);
        }
        (config, ResolverOpts::default())
    };
    opts.timeout = timeout;
    Ok((config, opts))
}

/// How a thread of [`start_thread`]'s tells that it started, or why it could not.
pub(crate) type Started = std::sync::mpsc::Sender<Result<(), String>>;

/// Starts thread `name`, which runs `main` on a current-thread Tokio runtime of its own
/// (hickory's resolver needs one), and returns once `main` said it started. An error
/// names `key` when the thread cannot start, `GSMTP_DNS_SERVERS` when `main` could not
/// (its resolver).
pub(crate) fn start_thread<F, Fut>(name: &str, key: &str, main: F) -> Result<(), ConfigError>
where
    F: FnOnce(Started) -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let (started, ready) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(main(started)),
                Err(e) => drop(started.send(Err(e.to_string()))),
            }
        })
        .map_err(|e| ConfigError {
            key: key.into(),
            message: format!("cannot start the {name} thread: {e}"),
        })?;
    match ready.recv() {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(ConfigError {
            key: "GSMTP_DNS_SERVERS".into(),
            message: format!("cannot make the resolver: {e}"),
        }),
        Err(_) => Err(ConfigError {
            key: key.into(),
            message: format!("the {name} thread ended at its start"),
        }),
    }
}

/// Every check of `checks` as `temperror`, for `why`.
fn unfinished(checks: Checks, why: &str) -> Verdict {
    let t = || Some(verdict::Result::new(Outcome::TempError).because(why));
    Verdict {
        spf: checks.spf.then(t).flatten(),
        dkim: checks.dkim.then(|| t().into_iter().collect()),
        dmarc: checks.dmarc.then(t).flatten(),
        dmarc_policy: None,
        arc: checks.arc.then(t).flatten(),
        ..Verdict::default()
    }
}

/// The checks of one message, on the checks' thread.
async fn check(auth: &MessageAuthenticator, caches: &Caches, req: Request) -> Verdict {
    let Request {
        checks,
        client_ip,
        helo,
        mail_from,
        host,
        read,
    } = req;
    let Some(mut message) = AuthenticatedMessage::parse_with_opts(&read.header, None, true) else {
        return permanent(checks, "no header section");
    };
    // The body hashes were computed as the body went by.
    for (c, h, l, bh) in &mut message.body_hashes {
        if let Some((_, hash)) = read.hashes.iter().find(|(k, _)| *k == (*c, *h, *l)) {
            bh.clone_from(hash);
        }
    }
    // DMARC needs SPF and DKIM: they run when it does.
    let (run_spf, run_dkim) = (checks.spf || checks.dmarc, checks.dkim || checks.dmarc);
    let helo_domain = helo.trim_start_matches('[').trim_end_matches(']');
    let spf = if run_spf {
        let params = if mail_from.is_empty() {
            SpfParameters::verify_ehlo(client_ip, helo_domain, &host)
        } else {
            SpfParameters::verify_mail_from(client_ip, helo_domain, &host, &mail_from)
        };
        Some(auth.verify_spf(caches.params(params)).await)
    } else {
        None
    };
    let dkim = if run_dkim {
        auth.verify_dkim(caches.params(&message)).await
    } else {
        Vec::new()
    };
    let arc = if checks.arc {
        Some(auth.verify_arc(caches.params(&message)).await)
    } else {
        None
    };
    let mut v = Verdict::default();
    if let Some(out) = &spf {
        let identity = if mail_from.is_empty() {
            ("smtp.helo", helo.clone())
        } else {
            ("smtp.mailfrom", mail_from.clone())
        };
        let outcome = match out.result() {
            SpfResult::Pass => Outcome::Pass,
            SpfResult::Fail => Outcome::Fail,
            SpfResult::SoftFail => Outcome::SoftFail,
            SpfResult::Neutral => Outcome::Neutral,
            SpfResult::TempError => Outcome::TempError,
            SpfResult::PermError => Outcome::PermError,
            SpfResult::None => Outcome::None,
        };
        let mut r = verdict::Result::new(outcome).with(identity.0, identity.1);
        if let Some(e) = out.explanation().filter(|_| outcome != Outcome::Pass) {
            r = r.because(e);
        }
        v.spf = Some(r);
    }
    if run_dkim {
        let mut all: Vec<verdict::Result> = dkim.iter().map(dkim_result).collect();
        if all.is_empty() {
            all.push(verdict::Result::new(Outcome::None).because("no signature"));
        }
        v.dkim = Some(all);
    }
    if let Some(out) = &arc {
        let (outcome, reason) = dkim_outcome(out.result());
        let mut r = verdict::Result::new(outcome);
        if !out.sets().is_empty() {
            r = r.with("arc.chain", out.sets().len().to_string());
        }
        if let Some(reason) = reason {
            r = r.because(reason);
        }
        v.arc = Some(r);
    }
    if checks.dmarc {
        let spf_out = spf.as_ref().expect("SPF runs with DMARC");
        let sender_domain = mail_from.rsplit_once('@').map_or(helo_domain, |(_, d)| d);
        let params = DmarcParameters {
            message: &message,
            dkim_output: &dkim,
            dkim2_output: None,
            rfc5321_mail_from_domain: sender_domain,
            spf_output: spf_out,
        };
        let out = auth.verify_dmarc(caches.params(params)).await;
        let (outcome, reason) = match out.result() {
            DmarcResult::Pass => (Outcome::Pass, None),
            DmarcResult::Fail(e) => (Outcome::Fail, Some(e.to_string())),
            DmarcResult::TempError(e) => (Outcome::TempError, Some(e.to_string())),
            DmarcResult::PermError(e) => (Outcome::PermError, Some(e.to_string())),
            DmarcResult::None => (Outcome::None, None),
        };
        let from = out.domain().to_string();
        let policy = match out.policy() {
            mail_auth::dmarc::Policy::Reject => Some(verdict::Policy::Reject),
            mail_auth::dmarc::Policy::Quarantine => Some(verdict::Policy::Quarantine),
            mail_auth::dmarc::Policy::None => Some(verdict::Policy::None),
            mail_auth::dmarc::Policy::Unspecified => None,
        }
        .filter(|_| out.dmarc_record().is_some());
        let mut r = verdict::Result::new(outcome);
        if !from.is_empty() {
            r = r.with("header.from", from.clone());
        }
        if let Some(reason) = reason {
            r = r.because(reason);
        }
        if outcome == Outcome::Pass && !from.is_empty() {
            v.authenticated_from = Some(from);
        }
        v.dmarc = Some(r);
        v.dmarc_policy = policy;
    }
    // What was run only for DMARC's sake is not reported.
    if !checks.spf {
        v.spf = None;
    }
    if !checks.dkim {
        v.dkim = None;
    }
    v
}

/// Every check of `checks` as `permerror`, for `why`.
fn permanent(checks: Checks, why: &str) -> Verdict {
    let p = || Some(verdict::Result::new(Outcome::PermError).because(why));
    Verdict {
        spf: checks.spf.then(p).flatten(),
        dkim: checks.dkim.then(|| p().into_iter().collect()),
        dmarc: checks.dmarc.then(p).flatten(),
        dmarc_policy: None,
        arc: checks.arc.then(p).flatten(),
        ..Verdict::default()
    }
}

/// One DKIM signature's result, with `header.d`, `header.s` and `header.b` (its first
/// eight base64 characters, as RFC 6008 suggests).
fn dkim_result(out: &mail_auth::DkimOutput<'_>) -> verdict::Result {
    let (outcome, reason) = dkim_outcome(out.result());
    let mut r = verdict::Result::new(outcome);
    if let Some(sig) = out.signature() {
        use base64::Engine as _;
        let b = base64::engine::general_purpose::STANDARD.encode(&sig.b);
        r = r
            .with("header.d", sig.d.clone())
            .with("header.s", sig.s.clone())
            .with("header.b", b.chars().take(8).collect::<String>());
    }
    if let Some(reason) = reason {
        r = r.because(reason);
    }
    r
}

/// A DKIM (or ARC) result as an outcome and a reason. A body altered after signing is
/// `fail` (RFC 6376 calls it PERMFAIL; mail-auth says neutral), with "body hash did not
/// verify".
fn dkim_outcome(result: &DkimResult) -> (Outcome, Option<String>) {
    match result {
        DkimResult::Pass => (Outcome::Pass, None),
        DkimResult::Neutral(Error::Dkim(DkimError::FailedBodyHashMatch)) => {
            (Outcome::Fail, Some("body hash did not verify".into()))
        }
        DkimResult::Neutral(e) => (Outcome::Neutral, Some(e.to_string())),
        DkimResult::Fail(e) => (Outcome::Fail, Some(e.to_string())),
        DkimResult::PermError(e) => (Outcome::PermError, Some(e.to_string())),
        DkimResult::TempError(e) => (Outcome::TempError, Some(e.to_string())),
        DkimResult::None => (Outcome::None, None),
    }
}

/// A check's parameters with [`Caches`] for its lookups.
type Cached<'x, P> = Parameters<
    'x,
    P,
    cache::Ttl<Box<str>, mail_auth::Txt>,
    cache::Ttl<Box<str>, mail_auth::RecordSet<mail_auth::MX>>,
    cache::Ttl<Box<str>, mail_auth::RecordSet<std::net::Ipv4Addr>>,
    cache::Ttl<Box<str>, mail_auth::RecordSet<std::net::Ipv6Addr>>,
    cache::Ttl<IpAddr, mail_auth::RecordSet<Box<str>>>,
>;

impl Caches {
    /// `params` with every lookup going through these caches first.
    fn params<'x, P>(&'x self, params: P) -> Cached<'x, P> {
        Parameters::new(params)
            .with_txt_cache(&self.txt)
            .with_mx_cache(&self.mx)
            .with_ipv4_cache(&self.ipv4)
            .with_ipv6_cache(&self.ipv6)
            .with_ptr_cache(&self.ptr)
    }
}
