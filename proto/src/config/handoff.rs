//! The settings of the hand-off destinations: `GSMTP_STORAGE=pipe`, `http`, `lmtp` and `s3`.

use std::path::PathBuf;
use std::time::Duration;

/// `GSMTP_PIPE_*`: run a command once per message (or per recipient).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PipeConfig {
    /// `GSMTP_PIPE_COMMAND`, split into arguments as a shell would (no shell runs it);
    /// `${recipient}`, `${user}`, `${domain}`, `${sender}` and `${queue_id}` in an
    /// argument are replaced.
    pub command: Vec<String>,
    /// `GSMTP_PIPE_TIMEOUT`: how long a run may take; then its process group is killed
    /// and the message gets `451 4.4.7`.
    pub timeout: Duration,
    /// `GSMTP_PIPE_PER_RECIPIENT`: one recipient per transaction, so one run per
    /// recipient (`452 4.5.3` to a second RCPT, which clients send again later).
    pub per_recipient: bool,
    /// `GSMTP_PIPE_CONCURRENCY`: the most runs at once; more wait their turn.
    pub concurrency: usize,
}

impl Default for PipeConfig {
    fn default() -> Self {
        Self {
            command: Vec::new(),
            timeout: Duration::from_secs(60),
            per_recipient: false,
            concurrency: 20,
        }
    }
}

/// Where the HTTP destination posts: `http://host[:port][/path]` or `https://...`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpUrl {
    /// `https`.
    pub tls: bool,
    /// The host name or address (an IPv6 address without its brackets).
    pub host: String,
    /// The port, 80 or 443 unless given.
    pub port: u16,
    /// The path and query, `/` at least.
    pub path: String,
}

impl HttpUrl {
    /// Parses an `http` or `https` URL with no user information or fragment.
    pub fn parse(s: &str) -> Option<Self> {
        let (tls, rest) = if let Some(r) = strip_prefix_ignore_case(s, "https://") {
            (true, r)
        } else {
            (false, strip_prefix_ignore_case(s, "http://")?)
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_string()
        };
        if authority.contains('@') || path.contains('#') || path.chars().any(char::is_whitespace) {
            return None;
        }
        let default = if tls { 443 } else { 80 };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (addr, after) = v6.split_once(']')?;
            addr.parse::<std::net::Ipv6Addr>().ok()?;
            match after.strip_prefix(':') {
                Some(p) => (addr.to_string(), p.parse().ok()?),
                None if after.is_empty() => (addr.to_string(), default),
                None => return None,
            }
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), p.parse().ok()?),
                None => (authority.to_string(), default),
            }
        };
        let host_ok = !host.is_empty()
            && (host.parse::<std::net::IpAddr>().is_ok()
                || matches!(crate::syntax::domain(&host), Ok(("", _))));
        host_ok.then_some(Self {
            tls,
            host,
            port,
            path,
        })
    }

    /// `host:port` as a `Host` header writes it (brackets around an IPv6 address).
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl std::fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://{}{}", self.authority(), self.path)
    }
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    s.get(..prefix.len())
        .filter(|p| p.eq_ignore_ascii_case(prefix))
        .map(|_| &s[prefix.len()..])
}

/// `GSMTP_HTTP_*`: POST each message to a URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpConfig {
    /// `GSMTP_HTTP_URL`.
    pub url: Option<HttpUrl>,
    /// `GSMTP_HTTP_CA`: a PEM file of certificates to trust for `https` (a private CA),
    /// besides the system's.
    pub ca: Option<PathBuf>,
    /// `GSMTP_HTTP_SECRET`: when set, each request is signed (`X-Smtp-Signature`).
    /// Never shown.
    pub secret: Option<Secret>,
    /// `GSMTP_HTTP_TIMEOUT`: how long one request may take (connect, send, answer);
    /// for the S3 destination too.
    pub timeout: Duration,
    /// `GSMTP_HTTP_CONNECTIONS`: the most requests at once, and connections kept open;
    /// for the S3 destination too.
    pub connections: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            url: None,
            ca: None,
            secret: None,
            timeout: Duration::from_secs(30),
            connections: 20,
        }
    }
}

/// Where a stream server listens (an LMTP server, a milter): a TCP `host:port` or a Unix
/// socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamAddr {
    /// `host:port` (a name, or an address; IPv6 in brackets).
    Tcp(String),
    /// `unix:/path` to a socket.
    Unix(PathBuf),
}

impl StreamAddr {
    /// Parses `host:port` or `unix:/path`.
    pub fn parse(s: &str) -> Option<Self> {
        if let Some(path) = s.strip_prefix("unix:") {
            return (!path.is_empty()).then(|| Self::Unix(PathBuf::from(path)));
        }
        let (host, port) = s.rsplit_once(':')?;
        port.parse::<u16>().ok()?;
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let ok = host.parse::<std::net::IpAddr>().is_ok()
            || matches!(crate::syntax::domain(host), Ok(("", _)));
        ok.then(|| Self::Tcp(s.to_string()))
    }
}

impl std::fmt::Display for StreamAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tcp(a) => f.write_str(a),
            Self::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// `GSMTP_LMTP_*`: hand each message to an LMTP server (Dovecot, Cyrus).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LmtpConfig {
    /// `GSMTP_LMTP_ADDR`.
    pub addr: Option<StreamAddr>,
    /// `GSMTP_LMTP_TIMEOUT`: how long the server may take for any one answer.
    pub timeout: Duration,
    /// `GSMTP_LMTP_CONNECTIONS`: the most LMTP sessions at once. Each transaction holds
    /// one from MAIL to its end (recipients are checked live); a MAIL that finds none free
    /// waits for one, up to the timeout.
    pub connections: usize,
}

impl Default for LmtpConfig {
    fn default() -> Self {
        Self {
            addr: None,
            timeout: Duration::from_secs(60),
            connections: 50,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = HttpUrl::parse("https://hooks.example.com/mail?k=1").unwrap();
        assert_eq!(
            (u.tls, u.host.as_str(), u.port, u.path.as_str()),
            (true, "hooks.example.com", 443, "/mail?k=1")
        );
        let u = HttpUrl::parse("HTTP://127.0.0.1:8080").unwrap();
        assert_eq!((u.tls, u.port, u.path.as_str()), (false, 8080, "/"));
        assert_eq!(u.authority(), "127.0.0.1:8080");
        let u = HttpUrl::parse("http://[::1]:9/in").unwrap();
        assert_eq!(
            (u.host.as_str(), u.authority()),
            ("::1", "[::1]:9".to_string())
        );
        for bad in [
            "ftp://x/",
            "http://",
            "http://user@host/",
            "http://host:port/",
            "http://ho st/",
            "http://[::1/",
            "http://x/#frag",
        ] {
            assert_eq!(HttpUrl::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn lmtp_addrs() {
        assert_eq!(
            StreamAddr::parse("unix:/run/dovecot/lmtp"),
            Some(StreamAddr::Unix("/run/dovecot/lmtp".into()))
        );
        assert_eq!(
            StreamAddr::parse("127.0.0.1:24"),
            Some(StreamAddr::Tcp("127.0.0.1:24".into()))
        );
        assert!(StreamAddr::parse("[::1]:24").is_some());
        assert!(StreamAddr::parse("mail.example:24").is_some());
        for bad in ["unix:", "host", "host:x", "bad host:24"] {
            assert_eq!(StreamAddr::parse(bad), None, "{bad}");
        }
    }
}

/// A setting that is never shown: its `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place that needs it (a signature).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// `GSMTP_S3_*`: one object per message in an S3-compatible bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Config {
    /// `GSMTP_S3_ENDPOINT`: `http://` or `https://` (`GSMTP_HTTP_CA` is trusted too).
    pub endpoint: Option<HttpUrl>,
    /// `GSMTP_S3_BUCKET`.
    pub bucket: Option<String>,
    /// `GSMTP_S3_REGION`, `us-east-1` by default.
    pub region: String,
    /// `GSMTP_S3_PREFIX`, put before every key (`mail/`); empty by default.
    pub prefix: String,
    /// `GSMTP_S3_PATH_STYLE`: `https://endpoint/bucket/key` (the default, as MinIO,
    /// Garage and Ceph want) rather than `https://bucket.endpoint/key`.
    pub path_style: bool,
    /// `GSMTP_S3_ACCESS_KEY`, else `AWS_ACCESS_KEY_ID` from the environment.
    pub access_key: Option<String>,
    /// `GSMTP_S3_SECRET_KEY`, else `AWS_SECRET_ACCESS_KEY`. Never shown.
    pub secret_key: Option<Secret>,
}

impl Default for S3Config {
    fn default() -> Self {
        Self {
            endpoint: None,
            bucket: None,
            region: "us-east-1".into(),
            prefix: String::new(),
            path_style: true,
            access_key: None,
            secret_key: None,
        }
    }
}

/// Whether `name` is a valid S3 bucket name: 3 to 63 of lower-case letters, digits, `.`
/// and `-`, starting and ending with a letter or digit.
pub fn valid_bucket(name: &str) -> bool {
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && edge(name.chars().next())
        && edge(name.chars().last())
}
