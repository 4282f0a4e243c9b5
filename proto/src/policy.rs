//! Who may send what: the recipient domains accepted (`GM_ALLOWED_HOSTS`) and the proxy
//! addresses trusted with XCLIENT and PROXY headers.

use std::collections::HashSet;
use std::net::IpAddr;
use std::str::FromStr;

/// The recipient domains this server accepts mail for. It never relays: a recipient in
/// any other domain is refused at RCPT with `550 5.7.1`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AllowedHosts {
    /// Every domain (`*`, or an empty list).
    Any,
    /// Listed domains: `example.com` matches itself, `*.example.com` its subdomains,
    /// `[192.0.2.1]` that address literal. Matching ignores ASCII case and a final dot.
    List {
        /// Exact names, lower-cased.
        exact: HashSet<String>,
        /// Suffixes from `*.x` entries, stored as `.x`, lower-cased.
        suffixes: Vec<String>,
    },
}

impl AllowedHosts {
    /// Parses the comma-separated `GM_ALLOWED_HOSTS` value.
    pub fn parse(list: &str) -> Self {
        let mut exact = HashSet::new();
        let mut suffixes = Vec::new();
        for item in list
            .split(',')
            .map(|s| s.trim().trim_end_matches('.'))
            .filter(|s| !s.is_empty())
        {
            let item = item.to_lowercase();
            if item == "*" {
                return Self::Any;
            }
            match item.strip_prefix("*.") {
                Some(suffix) => suffixes.push(format!(".{suffix}")),
                None => {
                    exact.insert(item);
                }
            }
        }
        if exact.is_empty() && suffixes.is_empty() {
            return Self::Any;
        }
        Self::List { exact, suffixes }
    }

    /// Whether mail for `domain` is accepted.
    pub fn allows(&self, domain: &str) -> bool {
        match self {
            Self::Any => true,
            Self::List { exact, suffixes } => {
                let d = domain.trim_end_matches('.').to_lowercase();
                exact.contains(&d) || suffixes.iter().any(|s| d.ends_with(s.as_str()))
            }
        }
    }
}

/// An IP network such as `10.0.0.0/8` or `::1/128`; a bare address is a single host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
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
        let list = AllowedHosts::parse(" example.com, *.sub.example ,[192.0.2.1],Upper.ORG. ");
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
        assert_eq!(AllowedHosts::parse("*"), AllowedHosts::Any);
        assert_eq!(AllowedHosts::parse(" , "), AllowedHosts::Any);
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
