//! The content filters' settings: rspamd over HTTP and milters, and what a failure of
//! either does to the message.

use std::time::Duration;

use super::{HttpUrl, Secret, StreamAddr};

/// What a filter that cannot be asked (down, too slow, answering nonsense) does to the
/// message (`GSMTP_FILTER_ON_ERROR`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnError {
    /// `451 4.7.1`: the client keeps the message and tries again.
    #[default]
    Tempfail,
    /// Accepted, with the filter's result `temperror` (`PROCESSING_FAILED`) recorded.
    Accept,
}

impl OnError {
    /// The value as the file writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tempfail => "tempfail",
            Self::Accept => "accept",
        }
    }
}

/// `GSMTP_RSPAMD_*`, `GSMTP_MILTER*`, `GSMTP_GREYLIST` and `GSMTP_FILTER_ON_ERROR`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterConfig {
    /// `GSMTP_RSPAMD_URL`: rspamd's normal worker (`http://127.0.0.1:11333`); off when
    /// unset.
    pub rspamd_url: Option<HttpUrl>,
    /// `GSMTP_RSPAMD_TIMEOUT`: how long rspamd may take over a message (15 s).
    pub rspamd_timeout: Duration,
    /// `GSMTP_RSPAMD_PASSWORD`: sent as rspamd's `Password` header.
    pub rspamd_password: Option<Secret>,
    /// `GSMTP_GREYLIST`: answer rspamd's `greylist` with `451 4.7.1` (off: accept).
    pub greylist: bool,
    /// `GSMTP_MILTERS`: milters asked in order, each `inet:host:port` or `unix:/path`.
    pub milters: Vec<StreamAddr>,
    /// `GSMTP_MILTER_CONNECT_TIMEOUT`: connecting to a milter, and its negotiation (30 s).
    pub milter_connect_timeout: Duration,
    /// `GSMTP_MILTER_COMMAND_TIMEOUT`: a milter's answer to a step (30 s).
    pub milter_command_timeout: Duration,
    /// `GSMTP_MILTER_CONTENT_TIMEOUT`: a milter's answer to the message's content and end
    /// (300 s).
    pub milter_content_timeout: Duration,
    /// `GSMTP_FILTER_ON_ERROR`: what a failed filter does to the message.
    pub on_error: OnError,
}

impl Default for FilterConfig {
    fn default() -> Self {
        Self {
            rspamd_url: None,
            rspamd_timeout: Duration::from_secs(15),
            rspamd_password: None,
            greylist: false,
            milters: Vec::new(),
            milter_connect_timeout: Duration::from_secs(30),
            milter_command_timeout: Duration::from_secs(30),
            milter_content_timeout: Duration::from_secs(300),
            on_error: OnError::Tempfail,
        }
    }
}

impl FilterConfig {
    /// Whether a message is filtered at all.
    pub fn any(&self) -> bool {
        self.rspamd_url.is_some() || !self.milters.is_empty()
    }
}

/// Parses a milter's address: `inet:host:port` or `unix:/path` (Postfix's spelling), or
/// sendmail's `inet:port@host`.
pub fn milter_addr(s: &str) -> Option<StreamAddr> {
    if s.starts_with("unix:") {
        return StreamAddr::parse(s);
    }
    let rest = s.strip_prefix("inet:")?;
    match rest.split_once('@') {
        Some((port, host)) => StreamAddr::parse(&format!("{host}:{port}")),
        None => StreamAddr::parse(rest),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milter_addresses() {
        assert_eq!(
            milter_addr("inet:127.0.0.1:8891"),
            Some(StreamAddr::Tcp("127.0.0.1:8891".into()))
        );
        assert_eq!(
            milter_addr("inet:8891@localhost"),
            Some(StreamAddr::Tcp("localhost:8891".into()))
        );
        assert_eq!(
            milter_addr("unix:/run/x.sock"),
            Some(StreamAddr::Unix("/run/x.sock".into()))
        );
        assert_eq!(milter_addr("127.0.0.1:8891"), None);
        assert_eq!(milter_addr("inet:nope"), None);
    }
}
