//! The configuration shown back: every key with its effective value, secrets masked
//! (`--check-config`), and the nearest known key to a misspelt one.

use std::time::Duration;

use super::{BareNewline, Config, HttpUrl, IGNORED, LogFormat};
use crate::policy::AllowedHosts;

/// What a set secret is shown as.
pub const MASK: &str = "********";

/// Every key the file may hold, as [`Config::effective`] lists them (aliases and the
/// original's ignored keys aside).
pub const KEYS: &[&str] = &[
    "GSMTP_HOST_NAME",
    "GSTMP_LISTEN_INTERFACE",
    "GSMTP_TLS_LISTEN_INTERFACE",
    "GSMTP_MAX_SIZE",
    "GSMTP_TIMEOUT",
    "GSMTP_SESSION_TIMEOUT",
    "GSMTP_VERBOSE",
    "GSMTP_LOG_FILE",
    "GSMTP_LOG_FORMAT",
    "GSMTP_PUB_KEY",
    "GSMTP_PRV_KEY",
    "GM_ALLOWED_HOSTS",
    "GM_PRIMARY_MAIL_HOST",
    "GSMTP_RECIPIENT_DELIMITER",
    "GM_MAX_CLIENTS",
    "GM_MAX_CLIENTS_PER_IP",
    "GSMTP_MAILDIR",
    "GSMTP_MAILDIR_MODE",
    "GSMTP_STORAGE",
    "GSMTP_PIPE_COMMAND",
    "GSMTP_PIPE_TIMEOUT",
    "GSMTP_PIPE_PER_RECIPIENT",
    "GSMTP_PIPE_CONCURRENCY",
    "GSMTP_HTTP_URL",
    "GSMTP_HTTP_CA",
    "GSMTP_HTTP_SECRET",
    "GSMTP_HTTP_TIMEOUT",
    "GSMTP_HTTP_CONNECTIONS",
    "GSMTP_LMTP_ADDR",
    "GSMTP_LMTP_TIMEOUT",
    "GSMTP_LMTP_CONNECTIONS",
    "GSMTP_S3_ENDPOINT",
    "GSMTP_S3_BUCKET",
    "GSMTP_S3_REGION",
    "GSMTP_S3_PREFIX",
    "GSMTP_S3_PATH_STYLE",
    "GSMTP_S3_ACCESS_KEY",
    "GSMTP_S3_SECRET_KEY",
    "GSMTP_SPOOL_DIR",
    "GSMTP_FSYNC",
    "GSMTP_MAX_RCPT",
    "GSMTP_MAX_COMMAND_LENGTH",
    "GSMTP_MAX_LINE_LENGTH",
    "GSMTP_MAX_ERRORS",
    "GSMTP_BARE_NEWLINE",
    "GSMTP_SHUTDOWN_GRACE",
    "NGINX_AUTH_ENABLED",
    "NGINX_AUTH",
    "NGINX_AUTH_BACKENDS",
    "GSMTP_XCLIENT_HOSTS",
    "GSMTP_PROXY_PROTOCOL",
    "SGID",
    "GUID",
    "PID_FILE",
    "GSMTP_METRICS_LISTEN",
];

/// Other spellings `set` takes for the same settings.
const ALIASES: &[&str] = &["GSMTP_LISTEN_INTERFACE", "SUID"];

impl Config {
    /// Every key ([`KEYS`], in that order) with its effective value as the file would
    /// write it; a set secret is [`MASK`], an unset optional value empty. Fed back to
    /// [`Config::from_json`], it gives the same configuration (secrets aside).
    pub fn effective(&self) -> Vec<(&'static str, String)> {
        let secs = |d: Duration| d.as_secs().to_string();
        let yn = |b: bool| if b { "Y" } else { "N" }.to_string();
        let path = |p: &Option<std::path::PathBuf>| {
            p.as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        };
        let opt = |o: Option<String>| o.unwrap_or_default();
        let url = |u: &Option<HttpUrl>| u.as_ref().map(HttpUrl::to_string).unwrap_or_default();
        let secret = |s: bool| if s { MASK.to_string() } else { String::new() };
        let list = |v: Vec<String>| v.join(",");
        let values = [
            self.host_name.clone(),
            self.listen.to_string(),
            opt(self.tls_listen.map(|a| a.to_string())),
            self.max_size.to_string(),
            secs(self.timeout),
            secs(self.session_timeout),
            yn(self.verbose),
            self.log_file.clone(),
            match self.log_format {
                LogFormat::Text => "text".into(),
                LogFormat::Json => "json".into(),
            },
            path(&self.tls_cert),
            path(&self.tls_key),
            allowed_hosts(&self.allowed_hosts),
            opt(self.primary_mail_host.clone()),
            opt(self.recipient_delimiter.clone()),
            self.max_clients.to_string(),
            self.max_clients_per_ip.to_string(),
            self.maildir.display().to_string(),
            format!("{:04o}", self.maildir_mode),
            self.storage.to_string(),
            shlex::try_join(self.pipe.command.iter().map(String::as_str)).unwrap_or_default(),
            secs(self.pipe.timeout),
            yn(self.pipe.per_recipient),
            self.pipe.concurrency.to_string(),
            url(&self.http.url),
            path(&self.http.ca),
            secret(self.http.secret.is_some()),
            secs(self.http.timeout),
            self.http.connections.to_string(),
            opt(self.lmtp.addr.as_ref().map(ToString::to_string)),
            secs(self.lmtp.timeout),
            self.lmtp.connections.to_string(),
            url(&self.s3.endpoint),
            opt(self.s3.bucket.clone()),
            self.s3.region.clone(),
            self.s3.prefix.clone(),
            yn(self.s3.path_style),
            opt(self.s3.access_key.clone()),
            secret(self.s3.secret_key.is_some()),
            path(&self.spool_dir),
            yn(self.fsync),
            self.max_recipients.to_string(),
            self.max_command_line.to_string(),
            self.max_text_line.to_string(),
            self.max_errors.to_string(),
            match self.bare_newline {
                BareNewline::Normalize => "normalize".into(),
                BareNewline::Reject => "reject".into(),
            },
            secs(self.shutdown_grace),
            yn(self.nginx_auth_enabled),
            self.nginx_auth.to_string(),
            list(
                self.nginx_auth_backends
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
            ),
            list(
                self.trusted_proxies
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
            ),
            yn(self.proxy_protocol),
            opt(self.group.clone()),
            opt(self.user.clone()),
            path(&self.pid_file),
            opt(self.metrics_listen.map(|a| a.to_string())),
        ];
        KEYS.iter().copied().zip(values).collect()
    }

    /// [`Config::effective`] as a JSON object, one key per line.
    pub fn effective_json(&self) -> String {
        let mut out = String::from("{\n");
        let all = self.effective();
        for (i, (key, value)) in all.iter().enumerate() {
            let comma = if i + 1 < all.len() { "," } else { "" };
            let value = serde_json::Value::String(value.clone());
            out.push_str(&format!("  \"{key}\": {value}{comma}\n"));
        }
        out.push_str("}\n");
        out
    }
}

/// `GM_ALLOWED_HOSTS` as the file would write it.
fn allowed_hosts(a: &AllowedHosts) -> String {
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

/// The known key nearest to `unknown` (case aside, at most a few edits away), for "did
/// you mean".
pub fn nearest_key(unknown: &str) -> Option<&'static str> {
    let wanted = unknown.to_ascii_uppercase();
    let candidates = KEYS
        .iter()
        .chain(ALIASES)
        .chain(IGNORED.iter().map(|(k, _)| k));
    let (best, distance) = candidates
        .map(|k| (*k, edit_distance(&wanted, k)))
        .min_by_key(|(_, d)| *d)?;
    (distance <= 3 && distance * 3 <= wanted.len()).then_some(best)
}

/// Levenshtein distance, in bytes.
fn edit_distance(a: &str, b: &str) -> usize {
    let b = b.as_bytes();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.bytes().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_key_is_known() {
        let mut cfg = Config::default();
        for key in KEYS.iter().chain(ALIASES) {
            // A wrong value is an error about the key, never "unknown".
            let r = cfg.set_json(key, &serde_json::Value::Array(Vec::new()));
            assert!(!matches!(r, Ok(false)), "{key} is listed but unknown");
        }
        assert_eq!(cfg.set_json("GSMTP_NOPE", &"1".into()), Ok(false));
    }

    #[test]
    fn effective_round_trips() {
        let text = r#"{"GM_ALLOWED_HOSTS": "b.example,a.example,*.c.example",
            "GSMTP_STORAGE": "pipe", "GSMTP_PIPE_COMMAND": "deliver -f '${sender}' --x \"a b\"",
            "GSMTP_XCLIENT_HOSTS": "10.0.0.0/8,::1", "NGINX_AUTH_BACKENDS": "127.0.0.1:1,[::1]:2",
            "GSMTP_HTTP_URL": "https://h.example:8443/in?x=1", "GSMTP_HTTP_SECRET": "hush",
            "GSMTP_S3_SECRET_KEY": "hush2", "GSMTP_TLS_LISTEN_INTERFACE": "",
            "GSMTP_LMTP_ADDR": "unix:/run/dovecot/lmtp", "GUID": "mail", "GSMTP_MAX_SIZE": 5}"#;
        let (cfg, _) = Config::from_json(text).unwrap();
        let shown = cfg.effective_json();
        assert!(!shown.contains("hush"), "{shown}");
        assert!(shown.contains(&format!("\"GSMTP_HTTP_SECRET\": \"{MASK}\"")));
        let (again, warnings) = Config::from_json(&shown).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(again.effective(), cfg.effective());
        let keys: Vec<&str> = cfg.effective().iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, KEYS);
    }

    #[test]
    fn nearest_keys() {
        assert_eq!(nearest_key("GM_ALLOWED_HOST"), Some("GM_ALLOWED_HOSTS"));
        assert_eq!(nearest_key("gsmtp_maxsize"), Some("GSMTP_MAX_SIZE"));
        assert_eq!(
            nearest_key("GSMTP_LISTEN_INTERFAC"),
            Some("GSMTP_LISTEN_INTERFACE")
        );
        assert_eq!(nearest_key("MYSQL_PASSWORD"), None);
        assert_eq!(nearest_key("TOTALLY_DIFFERENT"), None);
        assert_eq!(nearest_key("X"), None);
    }
}
