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
//! 1. **Folding.** The local part loses its quoting (`"bob"@x` is `bob@x`) and its ASCII
//!    letters are lower-cased; every other character is kept exactly as received, so no
//!    non-ASCII local part can ever fold into an ASCII one (`\u{212A}elvin`, with a
//!    KELVIN SIGN, is not `kelvin`). The domain is folded by the IDNA rules (UTS #46) to
//!    its ASCII form: `EXÄMPLE.de` and `exämple.de` are both `xn--exmple-cua.de`, as DNS
//!    would have them; an address literal, or a domain IDNA rejects, has its ASCII letters
//!    lower-cased. With `GM_PRIMARY_MAIL_HOST` set, the domain is replaced by it, as the
//!    original did. With `GSMTP_RECIPIENT_DELIMITER` set (such as `+`), the local part
//!    ends before the first of its characters (`user+tag` is `user`, as Postfix's
//!    `recipient_delimiter` does; a local part that starts with one is kept whole).
//!    `<Postmaster>` without a domain is `postmaster@<GSMTP_HOST_NAME>`.
//! 2. **Escaping**, octet by octet over the UTF-8 text: `a`-`z`, `0`-`9`, `-`, `_`, `+`,
//!    `=` and `.` stay as they are, except a `.` in first position; every other octet is
//!    written `%XX` in upper-case hex. An empty part is written `%`.
//!
//! The escaped form never holds `/` or NUL, never starts with `.` (so it is never `.` or
//! `..`), and is never empty: no address can name a path outside the Maildir root.
//! Escaping is injective (`%` is itself escaped), so two addresses share a folder only
//! when they are equal after folding. A part longer than 255 octets once escaped is
//! refused at RCPT.
//!
//! The headers keep the address as the client gave it: `Delivered-To` (with the domain
//! replaced when `GM_PRIMARY_MAIL_HOST` is set, and then `X-Original-To` with the address
//! as received, as Postfix writes it) and the Received header's `for` clause.

use std::borrow::Cow;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::Config;
use crate::delivery::{MailboxPath, Recipient};
use crate::syntax::{ForwardPath, fold_domain};

/// The longest file name component on common file systems.
pub const MAX_COMPONENT: usize = 255;

/// Why a recipient cannot be given a folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// A part is longer than [`MAX_COMPONENT`] octets once escaped.
    TooLong,
}

/// Maps a recipient to its folder (see the module docs).
pub fn recipient(to: &ForwardPath<'_>, cfg: &Config) -> Result<Recipient, MapError> {
    let (local, domain, address) = match to {
        ForwardPath::Postmaster => {
            let address = format!("postmaster@{}", cfg.host_name);
            (Cow::Borrowed("postmaster"), cfg.host_name.as_str(), address)
        }
        ForwardPath::Mailbox(m) => (m.local_part_unquoted(), &*m.domain, m.to_string()),
    };
    let delivered_to = match (&cfg.primary_mail_host, to) {
        (Some(host), ForwardPath::Mailbox(m)) => format!("{}@{host}", m.local_part),
        _ => address.clone(),
    };
    let original_to = (delivered_to != address).then(|| address.clone());
    let local = match (&cfg.recipient_delimiter, to) {
        (Some(delims), ForwardPath::Mailbox(_)) => match local.find(|c| delims.contains(c)) {
            Some(at) if at > 0 => Cow::Owned(local[..at].to_string()),
            _ => local,
        },
        _ => local,
    };
    let folded = cfg
        .primary_mail_host
        .clone()
        .unwrap_or_else(|| fold_domain(domain));
    let path = MailboxPath {
        domain: escape(&folded),
        mailbox: escape(&fold_local_part(&local)),
    };
    if path.domain.len() > MAX_COMPONENT || path.mailbox.len() > MAX_COMPONENT {
        return Err(MapError::TooLong);
    }
    Ok(Recipient {
        address,
        delivered_to,
        original_to,
        path,
    })
}

/// Folds an unquoted local part: ASCII letters lower-cased, everything else kept.
pub fn fold_local_part(local: &str) -> String {
    local.to_ascii_lowercase()
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

/// The parts of a Maildir file name made by [`unique_name`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UniqueName<'a> {
    /// Seconds since 1970.
    pub secs: u64,
    /// Microseconds within that second.
    pub micros: u32,
    /// The process that made it.
    pub pid: u32,
    /// The process's sequence number.
    pub seq: u64,
    /// The host name, escaped as [`unique_name`] does.
    pub host: &'a str,
}

/// Reads a name [`unique_name`] made (`<secs>.M<usecs>P<pid>Q<seq>.<host>`, maybe with
/// a Maildir info suffix `:2,...` after it); `None` for a name of another form (other
/// programs' files in the same folders).
pub fn parse_unique_name(name: &str) -> Option<UniqueName<'_>> {
    let (secs, rest) = name.split_once(".M")?;
    let (micros, rest) = rest.split_once('P')?;
    let (pid, rest) = rest.split_once('Q')?;
    let (seq, host) = rest.split_once('.')?;
    let host = host.split_once(':').map_or(host, |(h, _)| h);
    Some(UniqueName {
        secs: secs.parse().ok()?,
        micros: micros.parse().ok()?,
        pid: pid.parse().ok()?,
        seq: seq.parse().ok()?,
        host,
    })
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
            ("<Bob@Example.COM>", "Bob@Example.COM", "example.com/bob"),
            (
                "<\"bob\"@example.com>",
                "\"bob\"@example.com",
                "example.com/bob",
            ),
            (
                "<\"../../etc\"@x.y>",
                "\"../../etc\"@x.y",
                "x.y/%2E.%2F..%2Fetc",
            ),
            ("<\"a/b\"@x.y>", "\"a/b\"@x.y", "x.y/a%2Fb"),
            ("<\"a b\"@x.y>", "\"a b\"@x.y", "x.y/a%20b"),
            ("<\".hidden\"@x.y>", "\".hidden\"@x.y", "x.y/%2Ehidden"),
            ("<\"\"@x.y>", "\"\"@x.y", "x.y/%"),
            ("<%41@x.y>", "%41@x.y", "x.y/%2541"),
            ("<u@[192.0.2.1]>", "u@[192.0.2.1]", "%5B192.0.2.1%5D/u"),
            (
                "<u@[IPv6:2001:DB8::1]>",
                "u@[IPv6:2001:DB8::1]",
                "%5Bipv6%3A2001%3Adb8%3A%3A1%5D/u",
            ),
            (
                "<Postmaster>",
                "postmaster@localhost",
                "localhost/postmaster",
            ),
            (
                "<José@EXÄMPLE.de>",
                "José@EXÄMPLE.de",
                "xn--exmple-cua.de/jos%C3%A9",
            ),
            (
                "<\u{212A}elvin@example.com>",
                "\u{212A}elvin@example.com",
                "example.com/%E2%84%AAelvin",
            ),
        ];
        for (addr, received, path) in table {
            let r = map(addr, &cfg).unwrap();
            assert_eq!(
                (r.address.as_str(), r.path.to_string().as_str()),
                (received, path),
                "{addr}"
            );
            assert_eq!(r.delivered_to, r.address);
        }
    }

    #[test]
    fn primary_host_rewrites_domain() {
        let cfg = Config {
            primary_mail_host: Some("mail.example.com".into()),
            ..Config::default()
        };
        let r = map("<U@other.example>", &cfg).unwrap();
        assert_eq!(r.address, "U@other.example");
        assert_eq!(r.delivered_to, "U@mail.example.com");
        assert_eq!(r.original_to.as_deref(), Some("U@other.example"));
        assert_eq!(r.path.to_string(), "mail.example.com/u");
        let same = map("<u@mail.example.com>", &cfg).unwrap();
        assert_eq!(same.original_to, None);
    }

    #[test]
    fn recipient_delimiter_strips_the_extension() {
        let cfg = Config {
            recipient_delimiter: Some("+-".into()),
            ..Config::default()
        };
        for (addr, folder) in [
            ("<User+Tag@example.com>", "example.com/user"),
            ("<u-list-x@example.com>", "example.com/u"),
            ("<u@example.com>", "example.com/u"),
            ("<+tag@example.com>", "example.com/+tag"),
            ("<\"u+x y\"@example.com>", "example.com/u"),
            ("<Postmaster>", "localhost/postmaster"),
        ] {
            let r = map(addr, &cfg).unwrap();
            assert_eq!(r.path.to_string(), folder, "{addr}");
            assert_eq!(
                r.delivered_to, r.address,
                "{addr}: the full address is kept"
            );
            assert_eq!(r.original_to, None);
        }
        assert_eq!(
            map("<u+t@example.com>", &Config::default())
                .unwrap()
                .path
                .mailbox,
            "u+t"
        );
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
        let name = unique_name(t, 4567, 8, "host.with.Pdots");
        assert_eq!(
            parse_unique_name(&name),
            Some(UniqueName {
                secs: 1_700_000_000,
                micros: 123_456,
                pid: 4567,
                seq: 8,
                host: "host.with.Pdots"
            })
        );
        assert_eq!(
            parse_unique_name("1700000000.M1P2Q3.h:2,S").map(|n| (n.pid, n.host)),
            Some((2, "h"))
        );
        assert_eq!(parse_unique_name("dovecot-style.name"), None);
        assert_eq!(parse_unique_name("1.M1PxQ3.h"), None);
        let id = crate::QueueId::new(t, 9, 1, 2);
        assert_eq!(id.to_string(), "17979cfe3d85ca000000090000010002");
        assert_ne!(id, crate::QueueId::new(t, 9, 1, 3));
        assert_ne!(id, crate::QueueId::new(t, 9, 2, 2));
        assert_ne!(id, crate::QueueId::new(t, 8, 1, 2));
        let later = crate::QueueId::new(t + std::time::Duration::from_nanos(1), 0, 0, 0);
        assert!(id.to_string() < later.to_string(), "ids sort by time first");
    }
}
