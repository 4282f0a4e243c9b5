//! The one table of the file's keys. Each entry gives a key's name and other spellings,
//! whether its value is secret, what a reload does with it, how its value is read and how
//! it is shown back. [`Config::set_json`], [`Config::effective`], "did you mean", and the
//! reload's restart-only and destination checks all follow the table, so a new key is one
//! entry here (besides its field in [`Config`] and that field's default).

use std::path::PathBuf;
use std::time::Duration;

use super::value::{Value, parse_addr};
use super::{BareNewline, Config, ConfigError, LogFormat, MASK, Secret, Storage};
use crate::policy::{AllowedHosts, IpNet};
use Reload::{Destination, Live, Log, Restart};

/// What a reload (SIGHUP) does with a key's new value.
#[derive(Clone, Copy)]
pub enum Reload {
    /// Taken by the sessions accepted after the reload.
    Live,
    /// A setting of the destination: a reload that changes one opens the destination
    /// again ([`Config::same_destination`]).
    Destination,
    /// Read by the log, which follows a reload itself (`io/log.rs`): another
    /// `GSMTP_LOG_FILE` is opened, another `GSMTP_LOG_FORMAT` is named as needing a
    /// restart.
    Log,
    /// Only a restart changes it: a reload names the key ([`Config::restart_needed`]) and
    /// keeps the running value, which the function copies from the running configuration
    /// (its second argument) into the reloaded one ([`Config::keep_restart_only`]).
    Restart(fn(&mut Config, &Config)),
}

impl std::fmt::Debug for Reload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Live => "Live",
            Destination => "Destination",
            Log => "Log",
            Restart(_) => "Restart",
        })
    }
}

/// One key of the file.
#[derive(Clone, Copy)]
pub struct Key {
    /// Its name, as [`Config::effective`] shows it and a reload names it.
    pub name: &'static str,
    /// Other spellings the file may use for it.
    pub aliases: &'static [&'static str],
    /// Whether its value is never shown: once set, it is shown as [`MASK`].
    pub secret: bool,
    /// What a reload does with it.
    pub reload: Reload,
    /// Reads the value into the configuration, or says what is wrong with it.
    pub(super) parse: fn(&mut Config, &Value<'_>) -> Result<(), ConfigError>,
    /// The value as the file would write it, empty when unset; a secret unmasked.
    pub(super) show: fn(&Config) -> String,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("name", &self.name)
            .field("aliases", &self.aliases)
            .field("secret", &self.secret)
            .field("reload", &self.reload)
            .finish_non_exhaustive()
    }
}

impl Key {
    /// The key `name` spells: its name or one of its aliases, case and all.
    pub fn find(name: &str) -> Option<&'static Self> {
        TABLE
            .iter()
            .find(|k| k.name == name || k.aliases.contains(&name))
    }

    /// Its value in `cfg` as [`Config::effective`] shows it: as the file would write it,
    /// empty when unset, [`MASK`] for a secret that is set.
    pub fn shown(&self, cfg: &Config) -> String {
        let value = (self.show)(cfg);
        if self.secret && !value.is_empty() {
            MASK.into()
        } else {
            value
        }
    }

    /// The same key under other spellings too.
    const fn alias(mut self, aliases: &'static [&'static str]) -> Self {
        self.aliases = aliases;
        self
    }

    /// The same key, its value secret.
    const fn masked(mut self) -> Self {
        self.secret = true;
        self
    }
}

/// A key with no alias, its value not secret.
const fn key(
    name: &'static str,
    reload: Reload,
    parse: fn(&mut Config, &Value<'_>) -> Result<(), ConfigError>,
    show: fn(&Config) -> String,
) -> Key {
    Key {
        name,
        aliases: &[],
        secret: false,
        reload,
        parse,
        show,
    }
}

/// Every key, in the order [`Config::effective`] shows them.
#[rustfmt::skip]
pub const TABLE: &[Key] = &[
    // Empty: the machine's name (the command line fills it in).
    key("GSMTP_HOST_NAME", Destination,
        |c, v| v.opt(Value::host_name).map(|n| if let Some(n) = n { c.host_name = n }),
        |c| c.host_name.clone()),
    key("GSTMP_LISTEN_INTERFACE", Restart(|c, old| c.listen = old.listen),
        |c, v| v.addr().map(|a| c.listen = a),
        |c| c.listen.to_string())
        .alias(&["GSMTP_LISTEN_INTERFACE"]),
    key("GSMTP_TLS_LISTEN_INTERFACE", Restart(|c, old| c.tls_listen = old.tls_listen),
        |c, v| v.opt(Value::addr).map(|a| c.tls_listen = a),
        |c| opt(&c.tls_listen)),
    key("GSMTP_MAX_SIZE", Live,
        |c, v| v.number(1, u64::MAX).map(|n| c.max_size = n),
        |c| c.max_size.to_string()),
    key("GSMTP_TIMEOUT", Live,
        |c, v| v.seconds().map(|d| c.timeout = d),
        |c| secs(c.timeout)),
    key("GSMTP_SESSION_TIMEOUT", Live,
        |c, v| v.seconds().map(|d| c.session_timeout = d),
        |c| secs(c.session_timeout)),
    key("GSMTP_VERBOSE", Live,
        |c, v| v.yes_no().map(|b| c.verbose = b),
        |c| yn(c.verbose)),
    key("GSMTP_LOG_FILE", Log,
        |c, v| v.string().map(|s| c.log_file = s),
        |c| c.log_file.clone()),
    key("GSMTP_LOG_FORMAT", Log,
        |c, v| v.one_of(LOG_FORMATS, "expected text or json").map(|f| c.log_format = f),
        |c| name_of(LOG_FORMATS, c.log_format)),
    key("GSMTP_PUB_KEY", Live,
        |c, v| v.opt(Value::path).map(|p| c.tls_cert = p),
        |c| path(&c.tls_cert)),
    key("GSMTP_PRV_KEY", Live,
        |c, v| v.opt(Value::path).map(|p| c.tls_key = p),
        |c| path(&c.tls_key)),
    key("GM_ALLOWED_HOSTS", Live,
        |c, v| v.allowed_hosts().map(|a| c.allowed_hosts = a),
        |c| show_allowed_hosts(&c.allowed_hosts)),
    key("GM_PRIMARY_MAIL_HOST", Live,
        |c, v| v.opt(Value::mail_host).map(|h| c.primary_mail_host = h),
        |c| opt(&c.primary_mail_host)),
    key("GSMTP_RECIPIENT_DELIMITER", Live,
        |c, v| v.opt(Value::recipient_delimiter).map(|d| c.recipient_delimiter = d),
        |c| opt(&c.recipient_delimiter)),
    key("GM_MAX_CLIENTS", Live,
        |c, v| v.number(1, 1 << 20).map(|n| c.max_clients = n as usize),
        |c| c.max_clients.to_string()),
    key("GM_MAX_CLIENTS_PER_IP", Live,
        |c, v| v.number(0, 1 << 20).map(|n| c.max_clients_per_ip = n as u32),
        |c| c.max_clients_per_ip.to_string()),
    key("GSMTP_MAILDIR", Destination,
        |c, v| v.non_empty().map(|p| c.maildir = PathBuf::from(p)),
        |c| c.maildir.display().to_string()),
    key("GSMTP_MAILDIR_MODE", Destination,
        |c, v| v.maildir_mode().map(|m| c.maildir_mode = m),
        |c| format!("{:04o}", c.maildir_mode)),
    key("GSMTP_STORAGE", Destination,
        |c, v| {
            let expected = "expected maildir, discard, pipe, http, lmtp or s3";
            v.one_of(STORAGES, expected).map(|s| c.storage = s)
        },
        |c| c.storage.to_string()),
    key("GSMTP_PIPE_COMMAND", Destination,
        |c, v| v.opt(Value::command_line).map(|a| c.pipe.command = a.unwrap_or_default()),
        |c| shlex::try_join(c.pipe.command.iter().map(String::as_str)).unwrap_or_default()),
    key("GSMTP_PIPE_TIMEOUT", Destination,
        |c, v| v.seconds().map(|d| c.pipe.timeout = d),
        |c| secs(c.pipe.timeout)),
    key("GSMTP_PIPE_PER_RECIPIENT", Destination,
        |c, v| v.yes_no().map(|b| c.pipe.per_recipient = b),
        |c| yn(c.pipe.per_recipient)),
    key("GSMTP_PIPE_CONCURRENCY", Destination,
        |c, v| v.number(1, 10_000).map(|n| c.pipe.concurrency = n as usize),
        |c| c.pipe.concurrency.to_string()),
    key("GSMTP_HTTP_URL", Destination,
        |c, v| v.opt(Value::http_url).map(|u| c.http.url = u),
        |c| opt(&c.http.url)),
    key("GSMTP_HTTP_CA", Destination,
        |c, v| v.opt(Value::path).map(|p| c.http.ca = p),
        |c| path(&c.http.ca)),
    key("GSMTP_HTTP_SECRET", Destination,
        |c, v| v.opt(Value::string).map(|s| c.http.secret = s.map(Secret::new)),
        |c| secret(&c.http.secret))
        .masked(),
    key("GSMTP_HTTP_TIMEOUT", Destination,
        |c, v| v.seconds().map(|d| c.http.timeout = d),
        |c| secs(c.http.timeout)),
    key("GSMTP_HTTP_CONNECTIONS", Destination,
        |c, v| v.number(1, 10_000).map(|n| c.http.connections = n as usize),
        |c| c.http.connections.to_string()),
    key("GSMTP_LMTP_ADDR", Destination,
        |c, v| v.opt(Value::lmtp_addr).map(|a| c.lmtp.addr = a),
        |c| opt(&c.lmtp.addr)),
    key("GSMTP_LMTP_TIMEOUT", Destination,
        |c, v| v.seconds().map(|d| c.lmtp.timeout = d),
        |c| secs(c.lmtp.timeout)),
    key("GSMTP_LMTP_CONNECTIONS", Destination,
        |c, v| v.number(1, 10_000).map(|n| c.lmtp.connections = n as usize),
        |c| c.lmtp.connections.to_string()),
    key("GSMTP_S3_ENDPOINT", Destination,
        |c, v| v.opt(Value::s3_endpoint).map(|u| c.s3.endpoint = u),
        |c| opt(&c.s3.endpoint)),
    key("GSMTP_S3_BUCKET", Destination,
        |c, v| v.opt(Value::bucket).map(|b| c.s3.bucket = b),
        |c| opt(&c.s3.bucket)),
    key("GSMTP_S3_REGION", Destination,
        |c, v| v.non_empty().map(|r| c.s3.region = r),
        |c| c.s3.region.clone()),
    key("GSMTP_S3_PREFIX", Destination,
        s3_prefix,
        |c| c.s3.prefix.clone()),
    key("GSMTP_S3_PATH_STYLE", Destination,
        |c, v| v.yes_no().map(|b| c.s3.path_style = b),
        |c| yn(c.s3.path_style)),
    key("GSMTP_S3_ACCESS_KEY", Destination,
        |c, v| v.opt(Value::string).map(|s| c.s3.access_key = s),
        |c| opt(&c.s3.access_key)),
    key("GSMTP_S3_SECRET_KEY", Destination,
        |c, v| v.opt(Value::string).map(|s| c.s3.secret_key = s.map(Secret::new)),
        |c| secret(&c.s3.secret_key))
        .masked(),
    key("GSMTP_SPOOL_DIR", Destination,
        |c, v| v.opt(|v| v.non_empty().map(PathBuf::from)).map(|p| c.spool_dir = p),
        |c| path(&c.spool_dir)),
    key("GSMTP_FSYNC", Destination,
        |c, v| v.yes_no().map(|b| c.fsync = b),
        |c| yn(c.fsync)),
    key("GSMTP_MAX_RCPT", Live,
        |c, v| v.number(1, 100_000).map(|n| c.max_recipients = n as usize),
        |c| c.max_recipients.to_string()),
    key("GSMTP_MAX_COMMAND_LENGTH", Live,
        |c, v| v.number(512, 65_536).map(|n| c.max_command_line = n as usize),
        |c| c.max_command_line.to_string()),
    key("GSMTP_MAX_LINE_LENGTH", Live,
        max_line_length,
        |c| c.max_text_line.to_string()),
    key("GSMTP_MAX_ERRORS", Live,
        |c, v| v.number(1, 10_000).map(|n| c.max_errors = n as u32),
        |c| c.max_errors.to_string()),
    key("GSMTP_BARE_NEWLINE", Live,
        |c, v| v.one_of(BARE_NEWLINES, "expected normalize or reject").map(|b| c.bare_newline = b),
        |c| name_of(BARE_NEWLINES, c.bare_newline)),
    // Shutdown takes the running generation's value.
    key("GSMTP_SHUTDOWN_GRACE", Live,
        |c, v| v.seconds().map(|d| c.shutdown_grace = d),
        |c| secs(c.shutdown_grace)),
    key("NGINX_AUTH_ENABLED", Restart(|c, old| c.nginx_auth_enabled = old.nginx_auth_enabled),
        |c, v| v.yes_no().map(|b| c.nginx_auth_enabled = b),
        |c| yn(c.nginx_auth_enabled)),
    key("NGINX_AUTH", Restart(|c, old| c.nginx_auth = old.nginx_auth),
        |c, v| v.addr().map(|a| c.nginx_auth = a),
        |c| c.nginx_auth.to_string()),
    key("NGINX_AUTH_BACKENDS",
        Restart(|c, old| c.nginx_auth_backends.clone_from(&old.nginx_auth_backends)),
        |c, v| v.list(parse_addr).map(|l| c.nginx_auth_backends = l),
        |c| list(&c.nginx_auth_backends)),
    key("GSMTP_XCLIENT_HOSTS", Live,
        |c, v| v.list(|s| s.parse::<IpNet>().ok()).map(|l| c.trusted_proxies = l),
        |c| list(&c.trusted_proxies)),
    key("GSMTP_PROXY_PROTOCOL", Live,
        |c, v| v.yes_no().map(|b| c.proxy_protocol = b),
        |c| yn(c.proxy_protocol)),
    key("SGID", Restart(|c, old| c.group.clone_from(&old.group)),
        |c, v| v.opt(Value::account).map(|g| c.group = g),
        |c| opt(&c.group)),
    key("GUID", Restart(|c, old| c.user.clone_from(&old.user)),
        |c, v| v.opt(Value::account).map(|u| c.user = u),
        |c| opt(&c.user))
        .alias(&["SUID"]),
    key("PID_FILE", Restart(|c, old| c.pid_file.clone_from(&old.pid_file)),
        |c, v| v.opt(Value::path).map(|p| c.pid_file = p),
        |c| path(&c.pid_file)),
    key("GSMTP_THREADS", Restart(|c, old| c.threads = old.threads),
        |c, v| v.number(0, 1024).map(|n| c.threads = n as usize),
        |c| c.threads.to_string()),
    key("GSMTP_METRICS_LISTEN", Restart(|c, old| c.metrics_listen = old.metrics_listen),
        |c, v| v.opt(Value::addr).map(|a| c.metrics_listen = a),
        |c| opt(&c.metrics_listen)),
    // A destination holds a message for the checks' verdict (LMTP) when they run.
    key("GSMTP_VERIFY", Destination,
        |c, v| v.checks().map(|k| c.verify = k),
        |c| c.verify.to_string()),
    key("GSMTP_DNS_SERVERS", Restart(|c, old| c.dns_servers.clone_from(&old.dns_servers)),
        |c, v| v.list(dns_server).map(|l| c.dns_servers = l),
        |c| list(&c.dns_servers)),
    key("GSMTP_DNS_TIMEOUT", Restart(|c, old| c.dns_timeout = old.dns_timeout),
        |c, v| v.seconds().map(|d| c.dns_timeout = d),
        |c| secs(c.dns_timeout)),
    // The blocklists' thread is made again when a reload changes one of these.
    key("GSMTP_DNSBL", Live,
        |c, v| crate::dnsbl::Site::parse_list(&v.string()?)
            .map(|l| c.dnsbl.sites = l)
            .map_err(|e| v.error(&format!("{e} (expected zone[=filter][*weight], ...)"))),
        |c| list(&c.dnsbl.sites)),
    key("GSMTP_DNSBL_THRESHOLD", Live,
        |c, v| v.number(1, 1000).map(|n| c.dnsbl.threshold = n as i32),
        |c| c.dnsbl.threshold.to_string()),
    key("GSMTP_DNSBL_ACTION", Live,
        |c, v| v.one_of(DNSBL_ACTIONS, "expected reject or reject-rcpt").map(|a| c.dnsbl.action = a),
        |c| c.dnsbl.action.as_str().to_string()),
    key("GSMTP_DMARC_REJECT", Live,
        |c, v| v.yes_no().map(|b| c.dmarc_reject = b),
        |c| yn(c.dmarc_reject)),
    key("GSMTP_VERIFY_TEMPFAIL", Live,
        |c, v| v.yes_no().map(|b| c.verify_tempfail = b),
        |c| yn(c.verify_tempfail)),
    key("GSMTP_RSPAMD_URL", Live,
        |c, v| v.opt(Value::http_url).map(|u| c.filter.rspamd_url = u),
        |c| opt(&c.filter.rspamd_url)),
    key("GSMTP_RSPAMD_TIMEOUT", Live,
        |c, v| v.seconds().map(|d| c.filter.rspamd_timeout = d),
        |c| secs(c.filter.rspamd_timeout)),
    key("GSMTP_RSPAMD_PASSWORD", Live,
        |c, v| v.opt(Value::string).map(|s| c.filter.rspamd_password = s.map(Secret::new)),
        |c| secret(&c.filter.rspamd_password))
        .masked(),
    key("GSMTP_GREYLIST", Live,
        |c, v| v.yes_no().map(|b| c.filter.greylist = b),
        |c| yn(c.filter.greylist)),
    key("GSMTP_MILTERS", Live,
        |c, v| v.list(crate::config::milter_addr).map(|l| c.filter.milters = l),
        |c| c.filter.milters.iter().map(|m| match m {
            crate::config::StreamAddr::Tcp(a) => format!("inet:{a}"),
            crate::config::StreamAddr::Unix(p) => format!("unix:{}", p.display()),
        }).collect::<Vec<_>>().join(",")),
    key("GSMTP_MILTER_CONNECT_TIMEOUT", Live,
        |c, v| v.seconds().map(|d| c.filter.milter_connect_timeout = d),
        |c| secs(c.filter.milter_connect_timeout)),
    key("GSMTP_MILTER_COMMAND_TIMEOUT", Live,
        |c, v| v.seconds().map(|d| c.filter.milter_command_timeout = d),
        |c| secs(c.filter.milter_command_timeout)),
    key("GSMTP_MILTER_CONTENT_TIMEOUT", Live,
        |c, v| v.seconds().map(|d| c.filter.milter_content_timeout = d),
        |c| secs(c.filter.milter_content_timeout)),
    key("GSMTP_FILTER_ON_ERROR", Live,
        |c, v| v.on_error().map(|e| c.filter.on_error = e),
        |c| c.filter.on_error.as_str().to_string()),
    key("GSMTP_GREET_PAUSE", Live,
        |c, v| v.opt(|v| v.number(0, 60)).map(|n| c.greet_pause = n.map(Duration::from_secs)),
        |c| c.greet_pause.map(secs).unwrap_or_default()),
    key("GSMTP_AUTH", Live,
        |c, v| v.auth_mode().map(|m| c.auth = m),
        |c| c.auth.as_str().to_string()),
    // Read at start and at each reload (SIGHUP), by the server (`io/shared.rs`).
    key("GSMTP_AUTH_FILE", Live,
        |c, v| v.opt(Value::path).map(|p| c.auth_file = p),
        |c| path(&c.auth_file)),
    key("GSMTP_AUTH_INSECURE", Live,
        |c, v| v.yes_no().map(|b| c.auth_insecure = b),
        |c| yn(c.auth_insecure)),
];

/// A DNS server: `addr:port`, `[v6]:port`, or an address alone (port 53).
fn dns_server(s: &str) -> Option<std::net::SocketAddr> {
    parse_addr(s).or_else(|| {
        let ip = s.trim_start_matches('[').trim_end_matches(']');
        ip.parse::<std::net::IpAddr>()
            .ok()
            .map(|ip| std::net::SocketAddr::new(ip, 53))
    })
}

/// Every key's name, in [`TABLE`]'s order (aliases and the original's ignored keys aside).
pub const KEYS: &[&str] = &names::<{ TABLE.len() }>();

/// The names of [`TABLE`]'s keys.
const fn names<const N: usize>() -> [&'static str; N] {
    let mut out = [""; N];
    let mut i = 0;
    while i < N {
        out[i] = TABLE[i].name;
        i += 1;
    }
    out
}

/// Keys of the original that this server accepts and ignores, with the reason.
pub(super) const IGNORED: [(&str, &str); 12] = [
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
    /// Whether `other` asks for the same destination as this configuration: the same
    /// value (a secret's included) for every [`Reload::Destination`] key. A reload that
    /// keeps it keeps the destination, with its connections and its committer.
    pub fn same_destination(&self, other: &Self) -> bool {
        TABLE
            .iter()
            .filter(|k| matches!(k.reload, Destination))
            .all(|k| (k.show)(self) == (k.show)(other))
    }

    /// The [`Reload::Restart`] keys whose value `new` changes from this (running)
    /// configuration's, in [`TABLE`]'s order.
    pub fn restart_needed(&self, new: &Self) -> Vec<&'static str> {
        TABLE
            .iter()
            .filter(|k| matches!(k.reload, Restart(_)) && (k.show)(self) != (k.show)(new))
            .map(|k| k.name)
            .collect()
    }

    /// Puts the values of `running` back for every [`Reload::Restart`] key, which only a
    /// restart may change.
    pub fn keep_restart_only(&mut self, running: &Self) {
        for k in TABLE {
            if let Restart(keep) = k.reload {
                keep(self, running);
            }
        }
    }
}

const LOG_FORMATS: &[(&str, LogFormat)] = &[
    ("text", LogFormat::Text),
    ("json", LogFormat::Json),
    ("", LogFormat::Text),
];

const STORAGES: &[(&str, Storage)] = &[
    ("maildir", Storage::Maildir),
    ("discard", Storage::Discard),
    ("pipe", Storage::Pipe),
    ("http", Storage::Http),
    ("lmtp", Storage::Lmtp),
    ("s3", Storage::S3),
];

const DNSBL_ACTIONS: &[(&str, crate::dnsbl::Action)] = &[
    ("reject", crate::dnsbl::Action::Reject),
    ("reject-rcpt", crate::dnsbl::Action::RejectRcpt),
];

const BARE_NEWLINES: &[(&str, BareNewline)] = &[
    ("normalize", BareNewline::Normalize),
    ("reject", BareNewline::Reject),
];

/// The first name `choices` gives `value`.
fn name_of<T: PartialEq>(choices: &[(&str, T)], value: T) -> String {
    choices
        .iter()
        .find(|(_, t)| *t == value)
        .map(|(name, _)| name.to_string())
        .unwrap_or_default()
}

fn secs(d: Duration) -> String {
    d.as_secs().to_string()
}

fn yn(b: bool) -> String {
    if b { "Y" } else { "N" }.to_string()
}

fn opt<T: std::fmt::Display>(o: &Option<T>) -> String {
    o.as_ref().map(ToString::to_string).unwrap_or_default()
}

fn path(p: &Option<PathBuf>) -> String {
    p.as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

fn secret(s: &Option<Secret>) -> String {
    s.as_ref()
        .map(|s| s.expose().to_string())
        .unwrap_or_default()
}

fn list<T: std::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// `GM_ALLOWED_HOSTS` as the file would write it.
fn show_allowed_hosts(a: &AllowedHosts) -> String {
    match a {
        AllowedHosts::Any => "*".into(),
        AllowedHosts::List { exact, suffixes } => {
            let mut names: Vec<String> = exact.iter().cloned().collect();
            names.sort();
            names.extend(suffixes.iter().map(|s| format!("*{s}")));
            names.join(",")
        }
    }
}

/// `GSMTP_S3_PREFIX`: stored, then checked.
fn s3_prefix(c: &mut Config, v: &Value<'_>) -> Result<(), ConfigError> {
    c.s3.prefix = v.opt(Value::string)?.unwrap_or_default();
    if c.s3.prefix.starts_with('/') || c.s3.prefix.chars().any(char::is_control) {
        return Err(v.error("expected a key prefix such as mail/ (no leading /)"));
    }
    Ok(())
}

/// `GSMTP_MAX_LINE_LENGTH`: stored, then checked.
fn max_line_length(c: &mut Config, v: &Value<'_>) -> Result<(), ConfigError> {
    c.max_text_line = v.number(0, u32::MAX.into())? as usize;
    if (1..1000).contains(&c.max_text_line) {
        return Err(v.error("expected 0 (no limit) or at least 1000 (RFC 5321 §4.5.3.1.6)"));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
