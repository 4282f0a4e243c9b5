//! The configuration model: the original's flat JSON file, its keys and their defaults.
//!
//! The file is a JSON object of keys to values. As in the original, values may be strings
//! (`"GSMTP_MAX_SIZE": "131072"`, `"NGINX_AUTH_ENABLED": "Y"`); native numbers and
//! booleans work too. `//` and `/* */` comments, as in the seed README's annotated example,
//! are allowed. Keys of the original's MySQL and Redis storage are accepted and reported
//! as ignored; other unknown keys are reported too, so that a typo does not pass unseen.
//!
//! Parsing is pure: it reads no files. Paths are checked by the frontends.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::policy::{AllowedHosts, IpNet};

mod handoff;
mod show;
pub use handoff::{
    HttpConfig, HttpUrl, LmtpAddr, LmtpConfig, PipeConfig, S3Config, Secret, valid_bucket,
};
pub use show::{KEYS, MASK, nearest_key};

/// What to do with a bare LF or bare CR (see Postfix's `smtpd_forbid_bare_newline`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BareNewline {
    /// A line ended by a bare LF counts as one line and is stored with CRLF; a bare CR is
    /// content. Neither ever ends DATA.
    #[default]
    Normalize,
    /// Refuse the command or message with `550 5.5.2`; nothing is stored.
    Reject,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// `key=value` text lines.
    #[default]
    Text,
    /// One JSON object per line, with the same fields.
    Json,
}

/// Where accepted messages go.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Storage {
    /// Maildir folders under `GSMTP_MAILDIR`, one per recipient.
    #[default]
    Maildir,
    /// Accept and drop every message (for load tests only).
    Discard,
    /// Run `GSMTP_PIPE_COMMAND` with each message on its standard input.
    Pipe,
    /// POST each message to `GSMTP_HTTP_URL`.
    Http,
    /// Hand each message to the LMTP server at `GSMTP_LMTP_ADDR`.
    Lmtp,
    /// Put each message as an object in the S3 bucket `GSMTP_S3_BUCKET`.
    S3,
}

impl std::fmt::Display for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Maildir => "maildir",
            Self::Discard => "discard",
            Self::Pipe => "pipe",
            Self::Http => "http",
            Self::Lmtp => "lmtp",
            Self::S3 => "s3",
        })
    }
}

/// The whole configuration, with the original's key for each field.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// `GSMTP_HOST_NAME`: the name in the greeting, EHLO reply and trace headers.
    pub host_name: String,
    /// `GSTMP_LISTEN_INTERFACE` (the original's spelling) or `GSMTP_LISTEN_INTERFACE`.
    pub listen: SocketAddr,
    /// `GSMTP_TLS_LISTEN_INTERFACE`: an implicit-TLS listener (RFC 8314), off by default.
    pub tls_listen: Option<SocketAddr>,
    /// `GSMTP_MAX_SIZE`: the largest message in octets, counted as RFC 1870 does.
    pub max_size: u64,
    /// `GSMTP_TIMEOUT`: seconds a client may stay silent, per command and per data block.
    pub timeout: Duration,
    /// `GSMTP_SESSION_TIMEOUT`: the longest a whole session may last.
    pub session_timeout: Duration,
    /// `GSMTP_VERBOSE`: log the transcript of every session.
    pub verbose: bool,
    /// `GSMTP_LOG_FILE`: where log lines go (appended).
    pub log_file: String,
    /// `GSMTP_LOG_FORMAT`: `text` or `json`.
    pub log_format: LogFormat,
    /// `GSMTP_PUB_KEY`: PEM certificate chain; with the key, enables STARTTLS.
    pub tls_cert: Option<PathBuf>,
    /// `GSMTP_PRV_KEY`: PEM private key.
    pub tls_key: Option<PathBuf>,
    /// `GM_ALLOWED_HOSTS`: recipient domains accepted; `*` for any.
    pub allowed_hosts: AllowedHosts,
    /// `GM_PRIMARY_MAIL_HOST`: when set, every recipient is stored as `user@<this>`.
    pub primary_mail_host: Option<String>,
    /// `GSMTP_RECIPIENT_DELIMITER`: characters that end the mailbox part of a local
    /// part (`+`: `user+tag@` is stored in `user`'s mailbox), as Postfix's
    /// `recipient_delimiter`; none by default.
    pub recipient_delimiter: Option<String>,
    /// `GSMTP_MAILDIR_MODE`: the mode of the Maildir's files, `0600` (the default),
    /// `0640` or `0660`; folders get the matching search bits (`0700`, `0750`, `0770`),
    /// so that a mail reader in the server's group (`SGID`) can read them.
    pub maildir_mode: u32,
    /// `GM_MAX_CLIENTS`: concurrent sessions; one more gets `421 4.3.2`.
    pub max_clients: usize,
    /// `GM_MAX_CLIENTS_PER_IP`: concurrent sessions from one client (an IPv4 address or
    /// an IPv6 /64, after XCLIENT or a PROXY header); one more gets `421 4.7.0`. 0: no
    /// limit.
    pub max_clients_per_ip: u32,
    /// `GSMTP_MAILDIR`: the Maildir root.
    pub maildir: PathBuf,
    /// `GSMTP_STORAGE`: `maildir`, `discard`, `pipe`, `http` or `lmtp`.
    pub storage: Storage,
    /// `GSMTP_PIPE_*`, for `GSMTP_STORAGE=pipe`.
    pub pipe: PipeConfig,
    /// `GSMTP_HTTP_*`, for `GSMTP_STORAGE=http`.
    pub http: HttpConfig,
    /// `GSMTP_LMTP_*`, for `GSMTP_STORAGE=lmtp`.
    pub lmtp: LmtpConfig,
    /// `GSMTP_S3_*`, for `GSMTP_STORAGE=s3`.
    pub s3: S3Config,
    /// `GSMTP_SPOOL_DIR`: where a hand-off destination keeps a message larger than
    /// memory's share until it is sent (an unnamed file); the system's temporary
    /// directory by default.
    pub spool_dir: Option<PathBuf>,
    /// `GSMTP_FSYNC`: sync files and directories before answering 250. `N` is unsafe.
    pub fsync: bool,
    /// `GSMTP_MAX_RCPT`: recipients per message.
    pub max_recipients: usize,
    /// `GSMTP_MAX_COMMAND_LENGTH`: the longest command line, CRLF included.
    pub max_command_line: usize,
    /// `GSMTP_MAX_LINE_LENGTH`: the longest message text line, CRLF included; 0 for none.
    pub max_text_line: usize,
    /// `GSMTP_MAX_ERRORS`: bad commands in a session before `421` and close.
    pub max_errors: u32,
    /// `GSMTP_BARE_NEWLINE`: `normalize` or `reject`.
    pub bare_newline: BareNewline,
    /// `GSMTP_SHUTDOWN_GRACE`: seconds sessions may finish in after SIGTERM.
    pub shutdown_grace: Duration,
    /// `NGINX_AUTH_ENABLED`: serve nginx's `auth_http` protocol.
    pub nginx_auth_enabled: bool,
    /// `NGINX_AUTH`: where the `auth_http` service listens.
    pub nginx_auth: SocketAddr,
    /// `NGINX_AUTH_BACKENDS`: the SMTP instances nginx is sent to, in turn; empty means
    /// this instance's listen address.
    pub nginx_auth_backends: Vec<SocketAddr>,
    /// `GSMTP_XCLIENT_HOSTS`: proxies trusted to send XCLIENT and PROXY headers; none by
    /// default.
    pub trusted_proxies: Vec<IpNet>,
    /// `GSMTP_PROXY_PROTOCOL`: expect a HAProxy PROXY header (v1 or v2) on every connection.
    pub proxy_protocol: bool,
    /// `SGID`: the group (number or name) to switch to after binding.
    pub group: Option<String>,
    /// `GUID` (or the original code's `SUID`): the user (number or name) to switch to
    /// after binding.
    pub user: Option<String>,
    /// `PID_FILE`: where to write the process id.
    pub pid_file: Option<PathBuf>,
    /// `GSMTP_METRICS_LISTEN`: where `/metrics` (Prometheus) and `/healthz` are served;
    /// off by default.
    pub metrics_listen: Option<SocketAddr>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            host_name: "localhost".into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 2525)),
            tls_listen: None,
            max_size: 10_240_000,
            timeout: Duration::from_secs(100),
            session_timeout: Duration::from_secs(1800),
            verbose: false,
            log_file: "/dev/stdout".into(),
            log_format: LogFormat::Text,
            tls_cert: None,
            tls_key: None,
            allowed_hosts: AllowedHosts::Any,
            primary_mail_host: None,
            recipient_delimiter: None,
            maildir_mode: 0o600,
            max_clients: 500,
            max_clients_per_ip: 50,
            maildir: PathBuf::from("./maildir"),
            storage: Storage::Maildir,
            pipe: PipeConfig::default(),
            http: HttpConfig::default(),
            lmtp: LmtpConfig::default(),
            s3: S3Config::default(),
            spool_dir: None,
            fsync: true,
            max_recipients: 100,
            max_command_line: 512,
            max_text_line: 1000,
            max_errors: 20,
            bare_newline: BareNewline::Normalize,
            shutdown_grace: Duration::from_secs(10),
            nginx_auth_enabled: false,
            nginx_auth: SocketAddr::from(([127, 0, 0, 1], 8025)),
            nginx_auth_backends: Vec::new(),
            trusted_proxies: Vec::new(),
            proxy_protocol: false,
            group: None,
            user: None,
            pid_file: None,
            metrics_listen: None,
        }
    }
}

/// A key with a value that cannot be used. Startup stops with this one line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The key at fault (empty when the file itself does not parse).
    pub key: String,
    /// What is wrong with its value.
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.key.is_empty() {
            write!(f, "config: {}", self.message)
        } else if self.key.starts_with('-') {
            // A command-line flag, such as `--if`.
            write!(f, "option {}: {}", self.key, self.message)
        } else {
            write!(f, "config key {}: {}", self.key, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Keys of the original that this server accepts and ignores, with the reason.
const IGNORED: [(&str, &str); 12] = [
    ("MYSQL_HOST", "no MySQL: GSMTP_STORAGE says where mail goes"),
    ("MYSQL_USER", "no MySQL: GSMTP_STORAGE says where mail goes"),
    ("MYSQL_PASS", "no MySQL: GSMTP_STORAGE says where mail goes"),
    ("MYSQL_DB", "no MySQL: GSMTP_STORAGE says where mail goes"),
    (
        "GM_MAIL_TABLE",
        "no MySQL: GSMTP_STORAGE says where mail goes",
    ),
    ("REDIS_HOST", "no Redis: GSMTP_STORAGE says where mail goes"),
    ("REDIS_PORT", "no Redis: GSMTP_STORAGE says where mail goes"),
    (
        "GSMTP_MAIL_EXPIRE_SECONDS",
        "no Redis: GSMTP_STORAGE says where mail goes",
    ),
    ("GM_SAVE_WORKERS", "storage runs on a fixed committer"),
    ("GM_CONN_BACKLOG", "the kernel's listen backlog is used"),
    (
        "MAX_SMTP_CLIENTS",
        "unused in the original too; see GM_MAX_CLIENTS",
    ),
    ("GSMTP_GID", "unused in the original; see SGID"),
];

impl Config {
    /// Parses the original's JSON file over the defaults. Returns the configuration and
    /// warnings (ignored and unknown keys), or the first key with a bad value.
    pub fn from_json(text: &str) -> Result<(Self, Vec<String>), ConfigError> {
        let stripped = strip_comments(text);
        let value: serde_json::Value =
            serde_json::from_str(&stripped).map_err(|e| ConfigError {
                key: String::new(),
                message: format!("not a JSON object: {e}"),
            })?;
        let serde_json::Value::Object(map) = value else {
            return Err(ConfigError {
                key: String::new(),
                message: "not a JSON object".into(),
            });
        };
        let mut cfg = Self::default();
        let mut warnings = Vec::new();
        for (key, value) in &map {
            if let Some((_, why)) = IGNORED.iter().find(|(k, _)| k == key) {
                // The original's sample lists them empty: nothing to say then.
                let empty = value.is_null() || value.as_str().is_some_and(|s| s.trim().is_empty());
                if !empty {
                    warnings.push(format!("config key {key} is ignored: {why}"));
                }
                continue;
            }
            let v = Value { key, value };
            if !cfg.set(key, v)? {
                let hint = nearest_key(key)
                    .map(|k| format!(" (did you mean {k}?)"))
                    .unwrap_or_default();
                warnings.push(format!("config key {key} is unknown and ignored{hint}"));
            }
        }
        cfg.validate()?;
        Ok((cfg, warnings))
    }

    /// Sets one key from its JSON value. Returns `Ok(false)` for an unknown key.
    pub fn set_json(&mut self, key: &str, value: &serde_json::Value) -> Result<bool, ConfigError> {
        self.set(key, Value { key, value })
    }

    fn set(&mut self, key: &str, v: Value<'_>) -> Result<bool, ConfigError> {
        match key {
            // Empty: the machine's name (the command line fills it in).
            "GSMTP_HOST_NAME" => {
                if let Some(name) = v.opt(Value::host_name)? {
                    self.host_name = name;
                }
            }
            "GSTMP_LISTEN_INTERFACE" | "GSMTP_LISTEN_INTERFACE" => self.listen = v.addr()?,
            "GSMTP_TLS_LISTEN_INTERFACE" => self.tls_listen = v.opt(|v| v.addr())?,
            "GSMTP_MAX_SIZE" => self.max_size = v.number(1, u64::MAX)?,
            "GSMTP_TIMEOUT" => self.timeout = v.seconds()?,
            "GSMTP_SESSION_TIMEOUT" => self.session_timeout = v.seconds()?,
            "GSMTP_VERBOSE" => self.verbose = v.yes_no()?,
            "GSMTP_LOG_FILE" => self.log_file = v.string()?,
            "GSMTP_LOG_FORMAT" => {
                self.log_format = match v.string()?.to_ascii_lowercase().as_str() {
                    "text" | "" => LogFormat::Text,
                    "json" => LogFormat::Json,
                    _ => return Err(v.error("expected text or json")),
                }
            }
            "GSMTP_PUB_KEY" => self.tls_cert = v.opt(|v| v.string().map(PathBuf::from))?,
            "GSMTP_PRV_KEY" => self.tls_key = v.opt(|v| v.string().map(PathBuf::from))?,
            "GM_ALLOWED_HOSTS" => {
                self.allowed_hosts =
                    AllowedHosts::parse(&v.string()?).map_err(|e| ConfigError {
                        key: key.into(),
                        message: e,
                    })?;
            }
            "GM_PRIMARY_MAIL_HOST" => {
                self.primary_mail_host =
                    v.opt(|v| v.host_name().map(|h| h.to_ascii_lowercase()))?;
            }
            "GSMTP_RECIPIENT_DELIMITER" => {
                self.recipient_delimiter = v.opt(|v| {
                    let d = v.string()?;
                    if d.chars().all(|c| c.is_ascii_graphic() && !"@\"\\<>".contains(c)) {
                        Ok(d)
                    } else {
                        Err(v.error("expected characters such as + or +- (printable ASCII, not @ or quotes)"))
                    }
                })?;
            }
            "GSMTP_MAILDIR_MODE" => {
                self.maildir_mode = match v.string()?.trim_start_matches('0') {
                    "600" => 0o600,
                    "640" => 0o640,
                    "660" => 0o660,
                    _ => return Err(v.error("expected 0600, 0640 or 0660")),
                }
            }
            "GM_MAX_CLIENTS" => self.max_clients = v.number(1, 1 << 20)? as usize,
            "GM_MAX_CLIENTS_PER_IP" => self.max_clients_per_ip = v.number(0, 1 << 20)? as u32,
            "GSMTP_MAILDIR" => self.maildir = PathBuf::from(v.non_empty()?),
            "GSMTP_STORAGE" => {
                self.storage = match v.string()?.to_ascii_lowercase().as_str() {
                    "maildir" => Storage::Maildir,
                    "discard" => Storage::Discard,
                    "pipe" => Storage::Pipe,
                    "http" => Storage::Http,
                    "lmtp" => Storage::Lmtp,
                    "s3" => Storage::S3,
                    _ => {
                        return Err(v.error("expected maildir, discard, pipe, http, lmtp or s3"));
                    }
                }
            }
            "GSMTP_PIPE_COMMAND" => {
                self.pipe.command = v
                    .opt(|v| {
                        shlex::split(&v.string()?)
                            .filter(|args| !args.is_empty())
                            .ok_or_else(|| v.error("expected a command line (quotes balanced)"))
                    })?
                    .unwrap_or_default();
            }
            "GSMTP_PIPE_TIMEOUT" => self.pipe.timeout = v.seconds()?,
            "GSMTP_PIPE_PER_RECIPIENT" => self.pipe.per_recipient = v.yes_no()?,
            "GSMTP_PIPE_CONCURRENCY" => self.pipe.concurrency = v.number(1, 10_000)? as usize,
            "GSMTP_HTTP_URL" => {
                self.http.url = v.opt(|v| {
                    HttpUrl::parse(&v.string()?)
                        .ok_or_else(|| v.error("expected an http:// or https:// URL"))
                })?;
            }
            "GSMTP_HTTP_CA" => self.http.ca = v.opt(|v| v.string().map(PathBuf::from))?,
            "GSMTP_HTTP_SECRET" => {
                self.http.secret = v.opt(Value::string)?.map(Secret::new);
            }
            "GSMTP_HTTP_TIMEOUT" => self.http.timeout = v.seconds()?,
            "GSMTP_HTTP_CONNECTIONS" => self.http.connections = v.number(1, 10_000)? as usize,
            "GSMTP_LMTP_ADDR" => {
                self.lmtp.addr = v.opt(|v| {
                    LmtpAddr::parse(&v.string()?)
                        .ok_or_else(|| v.error("expected host:port or unix:/path"))
                })?;
            }
            "GSMTP_LMTP_TIMEOUT" => self.lmtp.timeout = v.seconds()?,
            "GSMTP_LMTP_CONNECTIONS" => self.lmtp.connections = v.number(1, 10_000)? as usize,
            "GSMTP_SPOOL_DIR" => self.spool_dir = v.opt(|v| v.non_empty().map(PathBuf::from))?,
            "GSMTP_S3_ENDPOINT" => {
                self.s3.endpoint = v.opt(|v| {
                    HttpUrl::parse(&v.string()?)
                        .filter(|u| u.path == "/")
                        .ok_or_else(|| v.error("expected an http:// or https:// URL with no path"))
                })?;
            }
            "GSMTP_S3_BUCKET" => {
                self.s3.bucket = v.opt(|v| {
                    Some(v.string()?)
                        .filter(|b| valid_bucket(b))
                        .ok_or_else(|| v.error("expected a bucket name (a-z, 0-9, '.', '-')"))
                })?;
            }
            "GSMTP_S3_REGION" => self.s3.region = v.non_empty()?,
            "GSMTP_S3_PREFIX" => {
                self.s3.prefix = v.opt(Value::string)?.unwrap_or_default();
                if self.s3.prefix.starts_with('/') || self.s3.prefix.chars().any(char::is_control) {
                    return Err(v.error("expected a key prefix such as mail/ (no leading /)"));
                }
            }
            "GSMTP_S3_PATH_STYLE" => self.s3.path_style = v.yes_no()?,
            "GSMTP_S3_ACCESS_KEY" => self.s3.access_key = v.opt(Value::string)?,
            "GSMTP_S3_SECRET_KEY" => self.s3.secret_key = v.opt(Value::string)?.map(Secret::new),
            "GSMTP_FSYNC" => self.fsync = v.yes_no()?,
            "GSMTP_MAX_RCPT" => self.max_recipients = v.number(1, 100_000)? as usize,
            "GSMTP_MAX_COMMAND_LENGTH" => self.max_command_line = v.number(512, 65_536)? as usize,
            "GSMTP_MAX_LINE_LENGTH" => {
                self.max_text_line = v.number(0, u32::MAX.into())? as usize;
                if (1..1000).contains(&self.max_text_line) {
                    return Err(
                        v.error("expected 0 (no limit) or at least 1000 (RFC 5321 §4.5.3.1.6)")
                    );
                }
            }
            "GSMTP_MAX_ERRORS" => self.max_errors = v.number(1, 10_000)? as u32,
            "GSMTP_BARE_NEWLINE" => {
                self.bare_newline = match v.string()?.to_ascii_lowercase().as_str() {
                    "normalize" => BareNewline::Normalize,
                    "reject" => BareNewline::Reject,
                    _ => return Err(v.error("expected normalize or reject")),
                }
            }
            "GSMTP_SHUTDOWN_GRACE" => self.shutdown_grace = v.seconds()?,
            "NGINX_AUTH_ENABLED" => self.nginx_auth_enabled = v.yes_no()?,
            "NGINX_AUTH" => self.nginx_auth = v.addr()?,
            "NGINX_AUTH_BACKENDS" => self.nginx_auth_backends = v.list(parse_addr)?,
            "GSMTP_XCLIENT_HOSTS" => self.trusted_proxies = v.list(|s| s.parse::<IpNet>().ok())?,
            "GSMTP_PROXY_PROTOCOL" => self.proxy_protocol = v.yes_no()?,
            "SGID" => self.group = v.opt(Value::account)?,
            "GUID" | "SUID" => self.user = v.opt(Value::account)?,
            "PID_FILE" => self.pid_file = v.opt(|v| v.string().map(PathBuf::from))?,
            "GSMTP_METRICS_LISTEN" => self.metrics_listen = v.opt(|v| v.addr())?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Checks the rules that span several keys.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            let key = if self.tls_cert.is_some() {
                "GSMTP_PRV_KEY"
            } else {
                "GSMTP_PUB_KEY"
            };
            return Err(ConfigError {
                key: key.into(),
                message: "TLS needs both GSMTP_PUB_KEY and GSMTP_PRV_KEY".into(),
            });
        }
        let missing = |key: &str, what: &str| ConfigError {
            key: key.into(),
            message: format!("GSMTP_STORAGE={} needs {what}", self.storage),
        };
        match self.storage {
            Storage::Pipe if self.pipe.command.is_empty() => {
                return Err(missing("GSMTP_PIPE_COMMAND", "a command"));
            }
            Storage::Pipe if !self.pipe.per_recipient => {
                let named = crate::deliver::pipe::RECIPIENT_MACROS
                    .iter()
                    .find(|m| self.pipe.command.iter().any(|a| a.contains(*m)));
                if let Some(m) = named {
                    return Err(ConfigError {
                        key: "GSMTP_PIPE_COMMAND".into(),
                        message: format!("{m} names one recipient: set GSMTP_PIPE_PER_RECIPIENT=Y"),
                    });
                }
            }
            Storage::Http if self.http.url.is_none() => {
                return Err(missing("GSMTP_HTTP_URL", "a URL"));
            }
            Storage::Lmtp if self.lmtp.addr.is_none() => {
                return Err(missing("GSMTP_LMTP_ADDR", "an address"));
            }
            Storage::S3 if self.s3.endpoint.is_none() => {
                return Err(missing("GSMTP_S3_ENDPOINT", "an endpoint"));
            }
            Storage::S3 if self.s3.bucket.is_none() => {
                return Err(missing("GSMTP_S3_BUCKET", "a bucket"));
            }
            _ => {}
        }
        if self.tls_listen.is_some() && self.tls_cert.is_none() {
            return Err(ConfigError {
                key: "GSMTP_TLS_LISTEN_INTERFACE".into(),
                message: "an implicit-TLS listener needs GSMTP_PUB_KEY and GSMTP_PRV_KEY".into(),
            });
        }
        Ok(())
    }

    /// The mode of the Maildir's folders: [`Config::maildir_mode`] with search allowed
    /// where reading is (`0600` gives `0700`, `0640` gives `0750`, `0660` gives `0770`).
    pub fn maildir_folder_mode(&self) -> u32 {
        self.maildir_mode | ((self.maildir_mode & 0o444) >> 2)
    }

    /// Whether STARTTLS can be offered.
    pub fn tls_enabled(&self) -> bool {
        self.tls_cert.is_some() && self.tls_key.is_some()
    }

    /// Whether `ip` is a proxy trusted to send XCLIENT or a PROXY header.
    pub fn is_trusted_proxy(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|net| net.contains(ip))
    }
}

/// Parses `ip:port`, `[v6]:port`, `localhost:port` (the IPv4 loopback, as Go's
/// listener takes it), or Go's `:port` (every interface).
pub fn parse_addr(s: &str) -> Option<SocketAddr> {
    let s = s.trim();
    let any = |port: &str| {
        port.parse()
            .ok()
            .map(|p| SocketAddr::from(([0, 0, 0, 0], p)))
    };
    if let Some(port) = s.strip_prefix(':') {
        return any(port);
    }
    if let Some((host, port)) = s.rsplit_once(':')
        && host.eq_ignore_ascii_case("localhost")
    {
        return port
            .parse()
            .ok()
            .map(|p| SocketAddr::from(([127, 0, 0, 1], p)));
    }
    s.parse().ok()
}

/// A number with its thousands grouped: `1,048,576`.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// One value in the file, with its key for error messages.
struct Value<'a> {
    key: &'a str,
    value: &'a serde_json::Value,
}

impl Value<'_> {
    fn error(&self, what: &str) -> ConfigError {
        ConfigError {
            key: self.key.to_string(),
            message: format!("{what}, got {}", self.value),
        }
    }

    fn string(&self) -> Result<String, ConfigError> {
        match self.value {
            serde_json::Value::String(s) => Ok(s.trim().to_string()),
            serde_json::Value::Number(n) => Ok(n.to_string()),
            serde_json::Value::Bool(b) => Ok(if *b { "Y" } else { "N" }.into()),
            _ => Err(self.error("expected a string")),
        }
    }

    fn non_empty(&self) -> Result<String, ConfigError> {
        Some(self.string()?)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| self.error("expected a value"))
    }

    /// An empty string or `null` means "not set".
    fn opt<T>(
        &self,
        f: impl FnOnce(&Self) -> Result<T, ConfigError>,
    ) -> Result<Option<T>, ConfigError> {
        match self.value {
            serde_json::Value::Null => Ok(None),
            serde_json::Value::String(s) if s.trim().is_empty() => Ok(None),
            _ => f(self).map(Some),
        }
    }

    fn number(&self, min: u64, max: u64) -> Result<u64, ConfigError> {
        let n = match self.value {
            serde_json::Value::Number(n) => n.as_u64(),
            serde_json::Value::String(s) => s.trim().parse().ok(),
            _ => None,
        };
        let range = if max >= u64::from(u32::MAX) {
            format!("expected a whole number of at least {}", grouped(min))
        } else {
            format!(
                "expected a whole number from {} to {}",
                grouped(min),
                grouped(max)
            )
        };
        n.filter(|n| (min..=max).contains(n))
            .ok_or_else(|| self.error(&range))
    }

    fn seconds(&self) -> Result<Duration, ConfigError> {
        self.number(1, 1 << 32).map(Duration::from_secs)
    }

    fn yes_no(&self) -> Result<bool, ConfigError> {
        match self.value {
            serde_json::Value::Bool(b) => Ok(*b),
            serde_json::Value::String(s) => match s.trim().to_ascii_uppercase().as_str() {
                "Y" | "YES" | "TRUE" | "1" | "ON" => Ok(true),
                "N" | "NO" | "FALSE" | "0" | "OFF" => Ok(false),
                _ => Err(self.error("expected Y or N")),
            },
            _ => Err(self.error("expected Y or N")),
        }
    }

    fn addr(&self) -> Result<SocketAddr, ConfigError> {
        parse_addr(&self.string()?)
            .ok_or_else(|| self.error("expected an address such as 127.0.0.1:2525"))
    }

    fn host_name(&self) -> Result<String, ConfigError> {
        let s = self.non_empty()?;
        match crate::syntax::domain(&s) {
            Ok(("", _)) if s.is_ascii() => Ok(s),
            _ => Err(self.error("expected a host name")),
        }
    }

    /// A numeric id or a user/group name.
    fn account(&self) -> Result<String, ConfigError> {
        let s = self.non_empty()?;
        let name_ok = s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
            && s.len() <= 32;
        if name_ok {
            Ok(s)
        } else {
            Err(self.error("expected a numeric id or a name"))
        }
    }

    fn list<T>(&self, parse: impl Fn(&str) -> Option<T>) -> Result<Vec<T>, ConfigError> {
        let text = self.string()?;
        text.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| parse(s).ok_or_else(|| self.error(&format!("cannot use {s:?} in this list"))))
            .collect()
    }
}

/// Removes `//` line comments and `/* */` block comments outside JSON strings, and commas
/// left before a closing brace, so that the seed README's annotated example parses.
pub fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match c {
                '\\' => out.extend(chars.next()),
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match (c, chars.peek()) {
            ('"', _) => {
                in_string = true;
                out.push(c);
            }
            ('/', Some('/')) => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            ('/', Some('*')) => {
                chars.next();
                let mut prev = ' ';
                for c in chars.by_ref() {
                    if prev == '*' && c == '/' {
                        break;
                    }
                    prev = c;
                }
                out.push(' ');
            }
            ('}', _) | (']', _) => {
                let trimmed = out.trim_end().len();
                if out[..trimmed].ends_with(',') {
                    out.truncate(trimmed - 1);
                }
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests;
