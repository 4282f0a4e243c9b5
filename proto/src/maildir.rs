//! The pure half of Maildir delivery: which folder a recipient's mail goes to, how each
//! file is named, and what headers are put before the body.
//!
//! # Layout
//!
//! ```text
//! <GSMTP_MAILDIR>/<domain>/<mailbox>/{tmp,new,cur}/<unique name>
//! ```
//!
//! # The mailbox mapping
//!
//! A recipient address becomes two path components through two steps:
//!
//! 1. **Canonical address.** The local part loses its quoting (`"bob"@x` is `bob@x`),
//!    and both parts are lower-cased (Unicode lower case). With `GM_PRIMARY_MAIL_HOST`
//!    set, the domain is replaced by it, as the original did. `<Postmaster>` without a
//!    domain becomes `postmaster@<primary host or GSMTP_HOST_NAME>`.
//! 2. **Escaping**, octet by octet over the UTF-8 text: `a`-`z`, `0`-`9`, `-`, `_`, `+`,
//!    `=` and `.` stay as they are, except a `.` in first position; every other octet is
//!    written `%XX` in upper-case hex. An empty part is written `%`.
//!
//! The escaped form never holds `/` or NUL, never starts with `.` (so it is never `.` or
//! `..`), and is never empty: no address can name a path outside the Maildir root.
//! Escaping is injective (`%` is itself escaped), so two canonical addresses never share
//! a folder. A part longer than 255 octets once escaped is refused at RCPT.

use std::borrow::Cow;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::Config;
use crate::syntax::{ForwardPath, quote_local_part};

/// The longest file name component on common file systems.
pub const MAX_COMPONENT: usize = 255;

/// Where one recipient's mail is stored, relative to the Maildir root.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MailboxPath {
    /// The escaped domain folder.
    pub domain: String,
    /// The escaped mailbox folder inside it.
    pub mailbox: String,
}

impl fmt::Display for MailboxPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.domain, self.mailbox)
    }
}

/// An accepted recipient: its canonical address and its folder.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Recipient {
    /// The canonical address (`local@domain`, quoted where needed), as in `Delivered-To`.
    pub address: String,
    /// The folder its mail goes to.
    pub path: MailboxPath,
}

/// Why a recipient cannot be given a folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// A part is longer than [`MAX_COMPONENT`] octets once escaped.
    TooLong,
}

/// Maps a recipient to its canonical address and folder (see the module docs).
pub fn recipient(to: &ForwardPath<'_>, cfg: &Config) -> Result<Recipient, MapError> {
    let (local, domain): (Cow<'_, str>, String) = match to {
        ForwardPath::Postmaster => (Cow::Borrowed("postmaster"), cfg.host_name.to_lowercase()),
        ForwardPath::Mailbox(m) => (m.local_part_unquoted(), m.domain.to_lowercase()),
    };
    let local = local.to_lowercase();
    let domain = cfg.primary_mail_host.clone().unwrap_or(domain);
    let path = MailboxPath {
        domain: escape(&domain),
        mailbox: escape(&local),
    };
    if path.domain.len() > MAX_COMPONENT || path.mailbox.len() > MAX_COMPONENT {
        return Err(MapError::TooLong);
    }
    Ok(Recipient {
        address: format!("{}@{domain}", quote_local_part(&local)),
        path,
    })
}

/// Escapes one path component (step 2 of the module docs).
pub fn escape(part: &str) -> String {
    if part.is_empty() {
        return "%".into();
    }
    let mut out = String::with_capacity(part.len());
    for (i, b) in part.bytes().enumerate() {
        let keep = b.is_ascii_lowercase()
            || b.is_ascii_digit()
            || matches!(b, b'-' | b'_' | b'+' | b'=')
            || (b == b'.' && i > 0);
        if keep {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A message's queue id: 32 hex digits, as long as the original's MD5 ids, unique per
/// process and distinct across restarts (it starts with the connection's start time).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct QueueId(pub u128);

impl QueueId {
    /// The id of message `seq` of connection `conn`, which began at `start`.
    pub fn new(start: SystemTime, conn: u64, seq: u32) -> Self {
        let nanos = start
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Self(
            (u128::from(nanos) << 64)
                | (u128::from(conn & 0xFF_FFFF_FFFF) << 24)
                | u128::from(seq & 0xFF_FFFF),
        )
    }
}

impl fmt::Display for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// A Maildir file name, `<secs>.M<usecs>P<pid>Q<seq>.<host>` (the Courier/Dovecot form),
/// unique as long as `(pid, seq)` is unique on this host.
pub fn unique_name(wall: SystemTime, pid: u32, seq: u64, host: &str) -> String {
    let since = wall.duration_since(UNIX_EPOCH).unwrap_or_default();
    // Maildir names may not hold `/` or `:`; the spec escapes them as octal.
    let host = host.replace('/', "\\057").replace(':', "\\072");
    format!(
        "{}.M{}P{pid}Q{seq}.{host}",
        since.as_secs(),
        since.subsec_micros()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syntax::forward_path;

    fn map(addr: &str, cfg: &Config) -> Result<Recipient, MapError> {
        let (_, fp) = forward_path(addr).unwrap();
        recipient(&fp, cfg)
    }

    #[test]
    fn mapping_table() {
        let cfg = Config::default();
        let table = [
            ("<Bob@Example.COM>", "bob@example.com", "example.com/bob"),
            (
                "<\"bob\"@example.com>",
                "bob@example.com",
                "example.com/bob",
            ),
            (
                "<\"../../etc\"@x.y>",
                "\"../../etc\"@x.y",
                "x.y/%2E.%2F..%2Fetc",
            ),
            ("<\"a/b\"@x.y>", "a/b@x.y", "x.y/a%2Fb"),
            ("<\"a b\"@x.y>", "\"a b\"@x.y", "x.y/a%20b"),
            ("<\".hidden\"@x.y>", "\".hidden\"@x.y", "x.y/%2Ehidden"),
            ("<\"\"@x.y>", "\"\"@x.y", "x.y/%"),
            ("<%41@x.y>", "%41@x.y", "x.y/%2541"),
            ("<u@[192.0.2.1]>", "u@[192.0.2.1]", "%5B192.0.2.1%5D/u"),
            (
                "<Postmaster>",
                "postmaster@localhost",
                "localhost/postmaster",
            ),
            (
                "<josé@exämple.de>",
                "josé@exämple.de",
                "ex%C3%A4mple.de/jos%C3%A9",
            ),
        ];
        for (addr, canonical, path) in table {
            let r = map(addr, &cfg).unwrap();
            assert_eq!(
                (r.address.as_str(), r.path.to_string().as_str()),
                (canonical, path),
                "{addr}"
            );
        }
    }

    #[test]
    fn primary_host_rewrites_domain() {
        let cfg = Config {
            primary_mail_host: Some("mail.example.com".into()),
            ..Config::default()
        };
        let r = map("<u@other.example>", &cfg).unwrap();
        assert_eq!(r.address, "u@mail.example.com");
        assert_eq!(r.path.to_string(), "mail.example.com/u");
    }

    #[test]
    fn escaped_components_are_safe() {
        for part in [
            "", ".", "..", "a/b", "\0", "%", ".a", "a.", "\u{7f}", "über",
        ] {
            let e = escape(part);
            assert!(
                !e.is_empty() && !e.starts_with('.') && !e.contains('/') && !e.contains('\0'),
                "{part:?} -> {e}"
            );
        }
        assert_ne!(escape("%2F"), escape("/"));
    }

    #[test]
    fn names() {
        let t = UNIX_EPOCH + std::time::Duration::from_micros(1_700_000_000_123_456);
        assert_eq!(
            unique_name(t, 42, 7, "mx/a:b"),
            "1700000000.M123456P42Q7.mx\\057a\\072b"
        );
        let id = QueueId::new(t, 1, 2);
        assert_eq!(id.to_string().len(), 32);
        assert_ne!(id, QueueId::new(t, 1, 3));
        assert_ne!(id, QueueId::new(t, 2, 2));
    }
}
