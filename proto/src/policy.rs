//! Who may send what: the recipient domains accepted (`GM_ALLOWED_HOSTS`) and the proxy
//! addresses trusted with XCLIENT and PROXY headers.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::str::FromStr;

use crate::syntax::fold_domain;

/// The recipient domains this server accepts mail for. It never relays: a recipient in
/// any other domain is refused at RCPT with `550 5.7.1`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AllowedHosts {
    /// Every domain (`*`, or an empty list).
    Any,
    /// Listed domains: `example.com` matches itself, `*.example.com` its subdomains,
    /// `[192.0.2.1]` that address literal. Names are compared folded as the mailbox
    /// mapping folds them ([`crate::syntax::fold_domain`]: IDNA, so case, a final dot,
    /// and a Unicode name against its `xn--` form do not matter).
    List {
        /// Exact names, folded.
        exact: HashSet<String>,
        /// Suffixes from `*.x` entries, stored as `.x`, folded.
        suffixes: Vec<String>,
    },
}

impl AllowedHosts {
    /// Parses the comma-separated `GM_ALLOWED_HOSTS` value. An entry that is not `*`, a
    /// domain name, `*.` and a domain name, or an address literal such as `[192.0.2.1]`
    /// is an error naming it (a typo must not silently accept or refuse mail).
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut exact = HashSet::new();
        let mut suffixes = Vec::new();
        let mut any = false;
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if item == "*" {
                any = true;
                continue;
            }
            let (wild, name) = match item.strip_prefix("*.") {
                Some(suffix) => (true, suffix),
                None => (false, item),
            };
            let folded = fold_domain(name);
            if !valid_host(&folded) || (wild && folded.starts_with('[')) {
                return Err(format!(
                    "{item:?} is not a domain, *.domain or [address literal]"
                ));
            }
            if wild {
                suffixes.push(format!(".{folded}"));
            } else {
                exact.insert(folded);
            }
        }
        if any || (exact.is_empty() && suffixes.is_empty()) {
            return Ok(Self::Any);
        }
        Ok(Self::List { exact, suffixes })
    }

    /// Whether mail for `domain` is accepted.
    pub fn allows(&self, domain: &str) -> bool {
        match self {
            Self::Any => true,
            Self::List { exact, suffixes } => {
                let d = fold_domain(domain);
                exact.contains(&d) || suffixes.iter().any(|s| d.ends_with(s.as_str()))
            }
        }
    }
}

/// Whether a folded `GM_ALLOWED_HOSTS` name is a domain (RFC 5321 syntax, in its ASCII
/// form) or an address literal.
fn valid_host(folded: &str) -> bool {
    if let Some(inner) = folded.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
        return match inner.get(..5) {
            Some(tag) if tag.eq_ignore_ascii_case("ipv6:") => {
                inner[5..].parse::<std::net::Ipv6Addr>().is_ok()
            }
            _ => inner.parse::<std::net::Ipv4Addr>().is_ok(),
        };
    }
    folded.is_ascii() && matches!(crate::syntax::domain(folded), Ok(("", _)))
}

/// An IP network such as `10.0.0.0/8` or `::1/128`; a bare address is a single host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl std::fmt::Display for IpNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl IpNet {
    /// The network holding just `addr`.
    pub fn host(addr: IpAddr) -> Self {
        let prefix = if addr.is_ipv4() { 32 } else { 128 };
        Self { addr, prefix }
    }

    /// Whether `ip` is in this network. IPv4-mapped IPv6 addresses count as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// What the per-client connection limit (`GM_MAX_CLIENTS_PER_IP`) counts: an IPv4
/// address, or an IPv6 /64 (one site's or one host's usual share, so that a client
/// cannot dodge the limit by rotating addresses inside its prefix).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClientKey(IpAddr);

impl ClientKey {
    /// The key `ip` counts under. IPv4-mapped IPv6 addresses count as IPv4.
    pub fn of(ip: IpAddr) -> Self {
        match canonical(ip) {
            IpAddr::V6(v6) => {
                let net = u128::from(v6) & !u128::from(u64::MAX);
                Self(IpAddr::V6(net.into()))
            }
            v4 => Self(v4),
        }
    }
}

impl std::fmt::Display for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V6(net) => write!(f, "{net}/64"),
            v4 => write!(f, "{v4}"),
        }
    }
}

/// Sessions open per [`ClientKey`], against a limit. Pure bookkeeping: the server keeps
/// one behind a lock, adds a session when it starts (or when XCLIENT or a PROXY header
/// names its real client) and removes it when it ends.
#[derive(Debug, Default)]
pub struct ClientCounts {
    open: HashMap<ClientKey, u32>,
}

impl ClientCounts {
    /// Counts one more session for `key` unless it has `limit` already; returns whether
    /// it was counted. A limit of 0 means no limit.
    pub fn try_add(&mut self, key: ClientKey, limit: u32) -> bool {
        let n = self.open.entry(key).or_insert(0);
        if limit != 0 && *n >= limit {
            if *n == 0 {
                self.open.remove(&key);
            }
            return false;
        }
        *n += 1;
        true
    }

    /// Counts one session less for `key`.
    pub fn remove(&mut self, key: ClientKey) {
        if let Some(n) = self.open.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                self.open.remove(&key);
            }
        }
    }

    /// Sessions counted for `key`.
    pub fn get(&self, key: ClientKey) -> u32 {
        self.open.get(&key).copied().unwrap_or(0)
    }
}

/// Turns an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) into the IPv4 address.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl FromStr for IpNet {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr = canonical(addr.parse::<IpAddr>().map_err(|_| ())?);
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or(())?,
            None => max,
        };
        Ok(Self { addr, prefix })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_hosts() {
        let list =
            AllowedHosts::parse(" example.com, *.sub.example ,[192.0.2.1],Upper.ORG. ").unwrap();
        let table = [
            ("example.com", true),
            ("EXAMPLE.com.", true),
            ("x.example.com", false),
            ("a.sub.example", true),
            ("sub.example", false),
            ("[192.0.2.1]", true),
            ("upper.org", true),
            ("evil.com", false),
        ];
        for (domain, ok) in table {
            assert_eq!(list.allows(domain), ok, "{domain}");
        }
        let list = AllowedHosts::parse("exämple.de,*.XN--FSQU00A.xn--4rr70v").unwrap();
        let table = [
            ("EXÄMPLE.de", true),
            ("xn--exmple-cua.de", true),
            ("example.de", false),
            ("a.例子.广告", true),
            ("例子.广告", false),
        ];
        for (domain, ok) in table {
            assert_eq!(list.allows(domain), ok, "{domain}");
        }
        assert_eq!(AllowedHosts::parse("*"), Ok(AllowedHosts::Any));
        assert_eq!(AllowedHosts::parse(" , "), Ok(AllowedHosts::Any));
        assert_eq!(
            AllowedHosts::parse("example.com,[IPv6:2001:db8::1]")
                .map(|l| l.allows("[ipv6:2001:db8::1]")),
            Ok(true)
        );
        for bad in [
            "exa mple.com",
            "example..com",
            "@example.com",
            "example.com:25",
            "http://example.com",
            "user@example.com",
            "*.[192.0.2.1]",
            "[192.0.2.300]",
            "-example.com",
            "*example.com",
        ] {
            let e = AllowedHosts::parse(&format!("ok.example, {bad}")).unwrap_err();
            assert!(e.contains(&format!("{bad:?}")), "{bad}: {e}");
        }
    }

    #[test]
    fn client_keys_and_counts() {
        let key = |s: &str| ClientKey::of(s.parse().unwrap());
        assert_eq!(key("2001:db8:1:2::5"), key("2001:db8:1:2:ffff::9"));
        assert_ne!(key("2001:db8:1:2::5"), key("2001:db8:1:3::5"));
        assert_eq!(key("::ffff:192.0.2.1"), key("192.0.2.1"));
        assert_ne!(key("192.0.2.1"), key("192.0.2.2"));
        assert_eq!(key("2001:db8:1:2::5").to_string(), "2001:db8:1:2::/64");
        let mut counts = ClientCounts::default();
        let a = key("192.0.2.1");
        assert!(counts.try_add(a, 2) && counts.try_add(a, 2));
        assert!(!counts.try_add(a, 2));
        assert!(counts.try_add(key("192.0.2.2"), 2));
        counts.remove(a);
        assert!(counts.try_add(a, 2));
        assert_eq!(counts.get(a), 2);
        assert!(!counts.try_add(key("192.0.2.3"), 0) || counts.get(key("192.0.2.3")) == 1);
        counts.remove(a);
        counts.remove(a);
        assert_eq!(counts.get(a), 0);
        assert!(
            counts.open.len() <= 2,
            "no entry is kept for a client with none open"
        );
    }

    #[test]
    fn networks() {
        let net: IpNet = "10.1.0.0/16".parse().unwrap();
        assert!(net.contains("10.1.2.3".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.9.9".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        let all: IpNet = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        let v6: IpNet = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains("2001:db8::5".parse().unwrap()));
        assert!(!v6.contains("2001:db9::5".parse().unwrap()));
        for bad in ["10.0.0.0/33", "x", "::/129", "1.2.3.4/"] {
            assert!(bad.parse::<IpNet>().is_err(), "{bad}");
        }
    }
}
