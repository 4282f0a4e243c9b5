//! The content filters between a message's end and its commit: rspamd over HTTP
//! ([`rspamd`]) and milters. Each has an explicit failure policy
//! (`GSMTP_FILTER_ON_ERROR`): a filter that cannot be asked either defers the message
//! (`451 4.7.1`) or lets it through with its result `temperror` recorded in the
//! verdict; it is never silently skipped.
//!
//! While filters are on, the text is held whole (in memory up to 64 KiB, then in an
//! unnamed file of `GSMTP_SPOOL_DIR`) until they have answered, since they may edit any
//! header field; the destination gets the edited text after.

mod hold;
pub(crate) mod milter;
pub(crate) mod rspamd;

use std::path::PathBuf;
use std::sync::Arc;

pub(crate) use self::hold::{Edited, Head, Hold};
use self::rspamd::Rspamd;
use crate::config::{Config, ConfigError, FilterConfig, OnError};
use crate::delivery::Envelope;
use crate::filter::rspamd::Decision;
use crate::header::Edit;
use crate::io::deliver::spool::Frozen;
use crate::io::runtime::Runtime;
use crate::reply::ReplyBuf;
use crate::verdict::{self, Outcome, Verdict};

/// The filters of one configuration's generation.
#[derive(Debug)]
pub(crate) struct Filters<R: Runtime> {
    rspamd: Option<Rspamd<R>>,
    cfg: FilterConfig,
    spool_dir: PathBuf,
}

impl<R: Runtime> Filters<R> {
    /// The filters `cfg` names, if any.
    pub(crate) fn open(rt: &R, cfg: &Config) -> Result<Option<Self>, ConfigError> {
        if !cfg.filter.any() {
            return Ok(None);
        }
        Ok(Some(Self {
            rspamd: Rspamd::open(rt, cfg)?,
            cfg: cfg.filter.clone(),
            spool_dir: crate::io::deliver::spool_dir(cfg)?,
        }))
    }

    /// Where a message's text waits for the filters.
    pub(crate) fn hold(&self) -> Hold {
        Hold::new(self.spool_dir.clone())
    }

    /// Asks the filters about the message `text`: the header edits to make, or the
    /// reply that refuses it. Their results go into `verdict`.
    pub(crate) async fn check(
        &self,
        env: &Envelope,
        text: &Arc<Frozen>,
        verdict: &mut Verdict,
    ) -> Result<Vec<Edit>, ReplyBuf> {
        let mut edits = Vec::new();
        if let Some(rspamd) = &self.rspamd {
            // Our own spam fields go at the top; a sender's were taken out on the way in
            // (`verdict::own_fields`).
            match rspamd.check(env, text).await {
                Ok(answer) => {
                    verdict.spam = Some(answer.spam());
                    verdict.virus = answer.virus();
                    match answer.decide(self.cfg.greylist) {
                        Decision::Accept(more) => edits.extend(more),
                        Decision::Refuse(reply) => return Err(reply),
                    }
                }
                Err(cause) => {
                    let failed = self.failed("rspamd", &rspamd.name(), &cause)?;
                    verdict.spam = Some(failed);
                }
            }
        }
        Ok(edits)
    }

    /// A filter that could not be asked: logged and counted; under `tempfail` the
    /// message's refusal, under `accept` its `temperror` result.
    fn failed(&self, filter: &str, at: &str, cause: &str) -> Result<verdict::Result, ReplyBuf> {
        tracing::warn!(
            filter = %filter,
            at = %at,
            cause = %cause,
            policy = %self.cfg.on_error.as_str(),
            "filter failed"
        );
        super::observe::metrics()
            .filter_errors
            .with_label_values(&[filter])
            .inc();
        match self.cfg.on_error {
            OnError::Tempfail => Err(crate::reply::FILTER_FAILED.into()),
            OnError::Accept => {
                Ok(verdict::Result::new(Outcome::TempError).because(format!("{at}: {cause}")))
            }
        }
    }
}
