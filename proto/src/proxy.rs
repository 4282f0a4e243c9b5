//! HAProxy's PROXY protocol, versions 1 (text) and 2 (binary), as a pure parser.
//!
//! A proxy in front of the server (HAProxy with `send-proxy` or `send-proxy-v2`, nginx
//! with `proxy_protocol on`) starts each connection with a header that names the real
//! client. The server accepts it only from trusted proxy addresses (`GSMTP_XCLIENT_HOSTS`)
//! and closes the connection on a malformed one.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The v2 signature: `\r\n\r\n\0\r\nQUIT\n`.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The longest v1 header, CRLF included.
pub const V1_MAX: usize = 107;
/// The longest v2 header accepted (16 octets plus the address block and TLVs).
pub const V2_MAX: usize = 16 + 1024;

/// The result of looking at the start of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Header {
    /// More bytes are needed.
    Incomplete,
    /// A whole header of `len` octets. `source` is the client it names, or `None` for
    /// `UNKNOWN`/`LOCAL` (a health check: keep the connection's own address).
    Complete {
        /// Octets the header takes.
        len: usize,
        /// The real client.
        source: Option<SocketAddr>,
    },
}

/// Why a header was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// Neither a v1 nor a v2 header.
    NotProxy,
    /// A header that breaks the specification.
    Malformed,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::NotProxy => "no PROXY protocol header",
            Self::Malformed => "malformed PROXY protocol header",
        })
    }
}

impl std::error::Error for Error {}

/// Parses a header at the start of `buf`.
pub fn parse(buf: &[u8]) -> Result<Header, Error> {
    let n = buf.len().min(12);
    if buf[..n] == V2_SIGNATURE[..n] {
        return if n < 12 {
            Ok(Header::Incomplete)
        } else {
            parse_v2(buf)
        };
    }
    let n = buf.len().min(6);
    if buf[..n] == b"PROXY "[..n] {
        return if n < 6 {
            Ok(Header::Incomplete)
        } else {
            parse_v1(buf)
        };
    }
    Err(Error::NotProxy)
}

/// `PROXY TCP4|TCP6 <src> <dst> <sport> <dport>\r\n` or `PROXY UNKNOWN ...\r\n`.
fn parse_v1(buf: &[u8]) -> Result<Header, Error> {
    let Some(lf) = buf.iter().take(V1_MAX).position(|&b| b == b'\n') else {
        return if buf.len() >= V1_MAX {
            Err(Error::Malformed)
        } else {
            Ok(Header::Incomplete)
        };
    };
    let line = buf[..lf].strip_suffix(b"\r").ok_or(Error::Malformed)?;
    let line = std::str::from_utf8(line).map_err(|_| Error::Malformed)?;
    let mut parts = line.split(' ');
    parts.next(); // "PROXY"
    let family = parts.next().ok_or(Error::Malformed)?;
    if family == "UNKNOWN" {
        return Ok(Header::Complete {
            len: lf + 1,
            source: None,
        });
    }
    let fields: Vec<&str> = parts.collect();
    let [src, dst, sport, dport] = fields[..] else {
        return Err(Error::Malformed);
    };
    // Both addresses must be of the family named.
    let address = |s: &str| -> Result<IpAddr, Error> {
        match family {
            "TCP4" => s.parse::<Ipv4Addr>().map(IpAddr::from),
            "TCP6" => s.parse::<Ipv6Addr>().map(IpAddr::from),
            _ => return Err(Error::Malformed),
        }
        .map_err(|_| Error::Malformed)
    };
    let ip = address(src)?;
    address(dst)?;
    let source_port = port(sport)?;
    port(dport)?;
    Ok(Header::Complete {
        len: lf + 1,
        source: Some(SocketAddr::new(ip, source_port)),
    })
}

fn port(s: &str) -> Result<u16, Error> {
    if s.is_empty()
        || s.len() > 5
        || (s.len() > 1 && s.starts_with('0'))
        || !s.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(Error::Malformed);
    }
    s.parse().map_err(|_| Error::Malformed)
}

/// The binary header: signature, version/command, family/protocol, length, addresses.
fn parse_v2(buf: &[u8]) -> Result<Header, Error> {
    if buf.len() < 16 {
        return Ok(Header::Incomplete);
    }
    let (ver_cmd, fam, len) = (
        buf[12],
        buf[13],
        usize::from(u16::from_be_bytes([buf[14], buf[15]])),
    );
    if ver_cmd >> 4 != 2 || 16 + len > V2_MAX {
        return Err(Error::Malformed);
    }
    if buf.len() < 16 + len {
        return Ok(Header::Incomplete);
    }
    let total = 16 + len;
    let body = &buf[16..total];
    let source = match (ver_cmd & 0xF, fam) {
        (0, _) => None, // LOCAL: the proxy's own connection
        (1, 0x11) | (1, 0x12) if body.len() >= 12 => {
            let ip = Ipv4Addr::new(body[0], body[1], body[2], body[3]);
            Some(SocketAddr::new(
                ip.into(),
                u16::from_be_bytes([body[8], body[9]]),
            ))
        }
        (1, 0x21) | (1, 0x22) if body.len() >= 36 => {
            let octets: [u8; 16] = body[..16].try_into().map_err(|_| Error::Malformed)?;
            Some(SocketAddr::new(
                Ipv6Addr::from(octets).into(),
                u16::from_be_bytes([body[32], body[33]]),
            ))
        }
        (1, 0x00) => None, // UNSPEC
        // AF_UNIX: valid, but without an IP address to use; the specification asks a
        // receiver that does not support a valid family to fall back to UNSPEC.
        (1, 0x31) | (1, 0x32) if body.len() >= 216 => None,
        _ => return Err(Error::Malformed),
    };
    Ok(Header::Complete { len: total, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1() {
        let table: [(&[u8], Result<Header, Error>); 11] = [
            (
                b"PROXY TCP4 192.0.2.1 198.51.100.2 5000 25\r\nEHLO",
                Ok(Header::Complete {
                    len: 43,
                    source: Some("192.0.2.1:5000".parse().unwrap()),
                }),
            ),
            (
                b"PROXY TCP6 2001:db8::1 2001:db8::2 5000 25\r\n",
                Ok(Header::Complete {
                    len: 44,
                    source: Some("[2001:db8::1]:5000".parse().unwrap()),
                }),
            ),
            (
                b"PROXY UNKNOWN\r\n",
                Ok(Header::Complete {
                    len: 15,
                    source: None,
                }),
            ),
            (b"PROXY TCP4 192.0.2.1", Ok(Header::Incomplete)),
            (b"PRO", Ok(Header::Incomplete)),
            (
                b"PROXY TCP4 192.0.2.1 198.51.100.2 5000\r\n",
                Err(Error::Malformed),
            ),
            (
                b"PROXY TCP4 999.0.2.1 198.51.100.2 5000 25\r\n",
                Err(Error::Malformed),
            ),
            (
                b"PROXY TCP4 192.0.2.1 198.51.100.2 99999 25\r\n",
                Err(Error::Malformed),
            ),
            (b"EHLO x\r\n", Err(Error::NotProxy)),
            (
                b"PROXY TCP4 192.0.2.1 2001:db8::2 5000 25\r\n",
                Err(Error::Malformed),
            ),
            (
                b"PROXY TCP6 2001:db8::1 198.51.100.2 5000 25\r\n",
                Err(Error::Malformed),
            ),
        ];
        for (input, expected) in table {
            assert_eq!(parse(input), expected, "{}", String::from_utf8_lossy(input));
        }
        let long = [b"PROXY ".as_slice(), &[b'x'; 200]].concat();
        assert_eq!(parse(&long), Err(Error::Malformed));
    }

    #[test]
    fn v2() {
        let mut h = V2_SIGNATURE.to_vec();
        h.extend_from_slice(&[
            0x21, 0x11, 0, 12, 192, 0, 2, 1, 198, 51, 100, 2, 0x13, 0x88, 0, 25,
        ]);
        assert_eq!(
            parse(&h),
            Ok(Header::Complete {
                len: 28,
                source: Some("192.0.2.1:5000".parse().unwrap())
            })
        );
        assert_eq!(parse(&h[..20]), Ok(Header::Incomplete));
        let mut local = V2_SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0, 0]);
        assert_eq!(
            parse(&local),
            Ok(Header::Complete {
                len: 16,
                source: None
            })
        );
        let mut bad = h.clone();
        bad[12] = 0x11;
        assert_eq!(parse(&bad), Err(Error::Malformed));
        let mut unix = V2_SIGNATURE.to_vec();
        unix.extend_from_slice(&[0x21, 0x31, 0, 216]);
        unix.extend_from_slice(&[b'/'; 216]);
        assert_eq!(
            parse(&unix),
            Ok(Header::Complete {
                len: 232,
                source: None
            })
        );
        unix[15] = 100;
        unix.truncate(116);
        assert_eq!(parse(&unix), Err(Error::Malformed));
        let mut short = V2_SIGNATURE.to_vec();
        short.extend_from_slice(&[0x21, 0x11, 0, 4, 1, 2, 3, 4]);
        assert_eq!(parse(&short), Err(Error::Malformed));
    }
}
