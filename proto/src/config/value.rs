//! The values of the file: strings, numbers, yes/no, addresses, lists, each read with its
//! key so that an error names it; and the comments the file may hold.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::{ConfigError, HttpUrl, StreamAddr, valid_bucket};
use crate::policy::AllowedHosts;

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
pub(super) fn grouped(n: u64) -> String {
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

/// One value in the file, with its key (as the file spells it) for error messages.
pub(super) struct Value<'a> {
    /// The key, as the file spells it (an alias included).
    pub(super) key: &'a str,
    /// Its value.
    pub(super) value: &'a serde_json::Value,
}

impl Value<'_> {
    pub(super) fn error(&self, what: &str) -> ConfigError {
        ConfigError {
            key: self.key.to_string(),
            message: format!("{what}, got {}", self.value),
        }
    }

    pub(super) fn string(&self) -> Result<String, ConfigError> {
        match self.value {
            serde_json::Value::String(s) => Ok(s.trim().to_string()),
            serde_json::Value::Number(n) => Ok(n.to_string()),
            serde_json::Value::Bool(b) => Ok(if *b { "Y" } else { "N" }.into()),
            _ => Err(self.error("expected a string")),
        }
    }

    pub(super) fn non_empty(&self) -> Result<String, ConfigError> {
        Some(self.string()?)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| self.error("expected a value"))
    }

    /// An empty string or `null` means "not set".
    pub(super) fn opt<T>(
        &self,
        f: impl FnOnce(&Self) -> Result<T, ConfigError>,
    ) -> Result<Option<T>, ConfigError> {
        match self.value {
            serde_json::Value::Null => Ok(None),
            serde_json::Value::String(s) if s.trim().is_empty() => Ok(None),
            _ => f(self).map(Some),
        }
    }

    pub(super) fn number(&self, min: u64, max: u64) -> Result<u64, ConfigError> {
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

    pub(super) fn seconds(&self) -> Result<Duration, ConfigError> {
        self.number(1, 1 << 32).map(Duration::from_secs)
    }

    pub(super) fn yes_no(&self) -> Result<bool, ConfigError> {
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

    pub(super) fn addr(&self) -> Result<SocketAddr, ConfigError> {
        parse_addr(&self.string()?)
            .ok_or_else(|| self.error("expected an address such as 127.0.0.1:2525"))
    }

    pub(super) fn host_name(&self) -> Result<String, ConfigError> {
        let s = self.non_empty()?;
        match crate::syntax::domain(&s) {
            Ok(("", _)) if s.is_ascii() => Ok(s),
            _ => Err(self.error("expected a host name")),
        }
    }

    /// A numeric id or a user/group name.
    pub(super) fn account(&self) -> Result<String, ConfigError> {
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

    pub(super) fn list<T>(&self, parse: impl Fn(&str) -> Option<T>) -> Result<Vec<T>, ConfigError> {
        let text = self.string()?;
        text.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| parse(s).ok_or_else(|| self.error(&format!("cannot use {s:?} in this list"))))
            .collect()
    }

    /// `GSMTP_VERIFY`'s list of checks.
    pub(super) fn checks(&self) -> Result<crate::verdict::Checks, ConfigError> {
        crate::verdict::Checks::parse(&self.string()?).map_err(|e| self.error(&e))
    }

    /// `GSMTP_FILTER_ON_ERROR`: `tempfail` or `accept`.
    pub(super) fn on_error(&self) -> Result<crate::config::OnError, ConfigError> {
        use crate::config::OnError;
        self.one_of(
            &[("tempfail", OnError::Tempfail), ("accept", OnError::Accept)],
            "tempfail or accept",
        )
    }

    pub(super) fn auth_mode(&self) -> Result<crate::config::AuthMode, ConfigError> {
        use crate::config::AuthMode;
        self.one_of(
            &[
                ("off", AuthMode::Off),
                ("accept-any", AuthMode::AcceptAny),
                ("file", AuthMode::File),
            ],
            "off, accept-any or file",
        )
    }

    /// One of `choices`, case aside; else an error saying what was `expected`.
    pub(super) fn one_of<T: Copy>(
        &self,
        choices: &[(&str, T)],
        expected: &str,
    ) -> Result<T, ConfigError> {
        let s = self.string()?.to_ascii_lowercase();
        choices
            .iter()
            .find(|(name, _)| *name == s)
            .map(|(_, t)| *t)
            .ok_or_else(|| self.error(expected))
    }

    /// A file's path.
    pub(super) fn path(&self) -> Result<PathBuf, ConfigError> {
        self.string().map(PathBuf::from)
    }

    /// `GM_ALLOWED_HOSTS`: `*`, or domains and `*.suffixes`.
    pub(super) fn allowed_hosts(&self) -> Result<AllowedHosts, ConfigError> {
        AllowedHosts::parse(&self.string()?).map_err(|e| ConfigError {
            key: self.key.into(),
            message: e,
        })
    }

    /// A host name, in lower case.
    pub(super) fn mail_host(&self) -> Result<String, ConfigError> {
        self.host_name().map(|h| h.to_ascii_lowercase())
    }

    /// Characters that may end a local part's mailbox.
    pub(super) fn recipient_delimiter(&self) -> Result<String, ConfigError> {
        const EXPECTED: &str =
            "expected characters such as + or +- (printable ASCII, not @ or quotes)";
        let d = self.string()?;
        let ok = d
            .chars()
            .all(|c| c.is_ascii_graphic() && !"@\"\\<>".contains(c));
        if ok { Ok(d) } else { Err(self.error(EXPECTED)) }
    }

    /// A Maildir file mode: `0600`, `0640` or `0660`.
    pub(super) fn maildir_mode(&self) -> Result<u32, ConfigError> {
        match self.string()?.trim_start_matches('0') {
            "600" => Ok(0o600),
            "640" => Ok(0o640),
            "660" => Ok(0o660),
            _ => Err(self.error("expected 0600, 0640 or 0660")),
        }
    }

    /// A command line, split as a shell would.
    pub(super) fn command_line(&self) -> Result<Vec<String>, ConfigError> {
        shlex::split(&self.string()?)
            .filter(|args| !args.is_empty())
            .ok_or_else(|| self.error("expected a command line (quotes balanced)"))
    }

    /// An `http://` or `https://` URL.
    pub(super) fn http_url(&self) -> Result<HttpUrl, ConfigError> {
        HttpUrl::parse(&self.string()?)
            .ok_or_else(|| self.error("expected an http:// or https:// URL"))
    }

    /// `host:port` or `unix:/path`.
    pub(super) fn lmtp_addr(&self) -> Result<StreamAddr, ConfigError> {
        StreamAddr::parse(&self.string()?)
            .ok_or_else(|| self.error("expected host:port or unix:/path"))
    }

    /// An `http://` or `https://` URL with no path.
    pub(super) fn s3_endpoint(&self) -> Result<HttpUrl, ConfigError> {
        HttpUrl::parse(&self.string()?)
            .filter(|u| u.path == "/")
            .ok_or_else(|| self.error("expected an http:// or https:// URL with no path"))
    }

    /// An S3 bucket's name.
    pub(super) fn bucket(&self) -> Result<String, ConfigError> {
        Some(self.string()?)
            .filter(|b| valid_bucket(b))
            .ok_or_else(|| self.error("expected a bucket name (a-z, 0-9, '.', '-')"))
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
