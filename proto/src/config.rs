//! The configuration model: the original's flat JSON file, its keys and their defaults.
//!
//! The file is a JSON object of keys to values. As in the original, values may be strings
//! (`"GSMTP_MAX_SIZE": "131072"`, `"NGINX_AUTH_ENABLED": "Y"`); native numbers and
//! booleans work too. `//` and `/* */` comments, as in the seed README's annotated example,
//! are allowed. Keys of the original's MySQL and Redis storage are accepted and reported
//! as ignored; other unknown keys are reported too, so that a typo does not pass unseen.
//!
//! Every key is one entry of [`TABLE`]: its name and other spellings, whether it is secret,
//! what a reload does with it, how it is read and shown. Reading a file, showing the
//! configuration back and the reload's checks all follow that table.
//!
//! Parsing is pure: it reads no files. Paths are checked by the frontends.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::policy::{AllowedHosts, IpNet};

mod filter;
mod handoff;
mod keys;
mod show;
mod value;
pub use filter::{FilterConfig, OnError, milter_addr};
pub use handoff::{
    HttpConfig, HttpUrl, LmtpConfig, PipeConfig, S3Config, Secret, StreamAddr, valid_bucket,
};
use keys::IGNORED;
pub use keys::{KEYS, Key, Reload, TABLE};
pub use show::{MASK, nearest_key};
use value::Value;
pub use value::{parse_addr, strip_comments};

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
    /// `GSMTP_STORAGE`: `maildir`, `discard`, `pipe`, `http`, `lmtp` or `s3`.
    pub storage: Storage,
    /// `GSMTP_PIPE_*`, for `GSMTP_STORAGE=pipe`.
    pub pipe: PipeConfig,
    /// `GSMTP_HTTP_*`: for `GSMTP_STORAGE=http`, and the timeout, connections and CA of `s3`.
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
    /// `GSMTP_THREADS`: the threads that run sessions; `0` (the default) is half the
    /// cores, at least one ([`Config::session_threads`]).
    pub threads: usize,
    /// `GSMTP_METRICS_LISTEN`: where `/metrics` (Prometheus) and `/healthz` are served;
    /// off by default.
    pub metrics_listen: Option<SocketAddr>,
    /// `GSMTP_VERIFY`: the checks run on every message (`spf`, `dkim`, `dmarc`, `arc`, or
    /// `all`); none by default.
    pub verify: crate::verdict::Checks,
    /// `GSMTP_DNS_SERVERS`: the DNS servers the checks ask (`addr` or `addr:port`); empty:
    /// the system's resolv.conf.
    pub dns_servers: Vec<SocketAddr>,
    /// `GSMTP_DNS_TIMEOUT`: how long one DNS query may take.
    pub dns_timeout: Duration,
    /// `GSMTP_DNSBL`, `GSMTP_DNSBL_THRESHOLD`, `GSMTP_DNSBL_ACTION`: the DNS blocklists
    /// asked about every client, over the resolver of `GSMTP_DNS_SERVERS`.
    pub dnsbl: crate::dnsbl::DnsblConfig,
    /// `GSMTP_DMARC_REJECT`: refuse a message whose DMARC fails under `p=reject`
    /// (`550 5.7.1`).
    pub dmarc_reject: bool,
    /// `GSMTP_VERIFY_TEMPFAIL`: answer `451 4.7.0` when a check could not complete
    /// (`temperror`), rather than accept the message with `temperror` recorded.
    pub verify_tempfail: bool,
    /// The content filters: rspamd, milters, and their failure policy.
    pub filter: FilterConfig,
    /// `GSMTP_GREET_PAUSE`: unset, no early-talker test; `0`, a client that writes before
    /// the greeting is refused; more, the greeting's last line comes that much later, and
    /// a client that writes before it is refused (`554 5.5.1`).
    pub greet_pause: Option<Duration>,
    /// `GSMTP_AUTH`: whether AUTH is offered, and how its passwords are checked.
    pub auth: AuthMode,
    /// `GSMTP_AUTH_FILE`: the `user:hash` file of `GSMTP_AUTH=file`.
    pub auth_file: Option<PathBuf>,
    /// `GSMTP_AUTH_INSECURE`: offer AUTH without TLS too.
    pub auth_insecure: bool,
}

/// `GSMTP_AUTH`: whether clients may log in (RFC 4954, PLAIN and LOGIN).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AuthMode {
    /// AUTH is not offered (`502 5.5.1`), as the original.
    #[default]
    Off,
    /// Any user and password is accepted (as Mailpit's `--smtp-auth-accept-any`); MAIL
    /// does not need it.
    AcceptAny,
    /// Users and password hashes come from `GSMTP_AUTH_FILE`, and MAIL needs AUTH first
    /// (`530 5.7.0`).
    File,
}

impl AuthMode {
    /// The value as the file writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::AcceptAny => "accept-any",
            Self::File => "file",
        }
    }
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
            threads: 0,
            metrics_listen: None,
            verify: crate::verdict::Checks::default(),
            dns_servers: Vec::new(),
            dns_timeout: Duration::from_secs(5),
            dnsbl: crate::dnsbl::DnsblConfig::default(),
            dmarc_reject: false,
            verify_tempfail: false,
            filter: FilterConfig::default(),
            greet_pause: None,
            auth: AuthMode::Off,
            auth_file: None,
            auth_insecure: false,
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
            if !cfg.set_json(key, value)? {
                let hint = nearest_key(key)
                    .map(|k| format!(" (did you mean {k}?)"))
                    .unwrap_or_default();
                warnings.push(format!("config key {key} is unknown and ignored{hint}"));
            }
        }
        cfg.validate()?;
        Ok((cfg, warnings))
    }

    /// Sets one key (by its name or an alias) from its JSON value, as its [`TABLE`] entry
    /// reads it. Returns `Ok(false)` for an unknown key.
    pub fn set_json(&mut self, key: &str, value: &serde_json::Value) -> Result<bool, ConfigError> {
        let Some(k) = Key::find(key) else {
            return Ok(false);
        };
        (k.parse)(self, &Value { key, value })?;
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
        if self.auth == AuthMode::File && self.auth_file.is_none() {
            return Err(ConfigError {
                key: "GSMTP_AUTH_FILE".into(),
                message: "GSMTP_AUTH=file needs a file of user:hash lines".into(),
            });
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

    /// How many threads run sessions on a machine of `cores` cores: `GSMTP_THREADS`, or
    /// when it is `0` half the cores, at least one. Every thread waits on the one
    /// reactor, so each one more adds wake-ups from thread to thread; the other half of
    /// the cores is left to the kernel's network stack, the syncs and the checks.
    pub fn session_threads(&self, cores: usize) -> usize {
        if self.threads > 0 {
            self.threads
        } else {
            (cores / 2).max(1)
        }
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

#[cfg(test)]
mod tests;
