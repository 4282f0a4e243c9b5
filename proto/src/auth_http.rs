//! nginx's mail proxy `auth_http` protocol, server side, as pure functions.
//!
//! nginx asks, with an HTTP/1.0 `GET` whose headers describe the session
//! (`Auth-Protocol`, `Client-IP`, `Auth-SMTP-Helo`, `Auth-SMTP-From`, `Auth-SMTP-To`, ...),
//! where to proxy an SMTP session. The answer is in the response headers: `Auth-Status:
//! OK` with `Auth-Server` (an IP address) and `Auth-Port`, or an error text with
//! `Auth-Error-Code` (the SMTP reply nginx gives the client) and maybe `Auth-Wait`.
//!
//! Beyond the original, which always said OK: a recipient outside `GM_ALLOWED_HOSTS` is
//! refused here, before nginx opens a backend connection, and the backend is chosen from
//! a pool by the caller. Malformed or oversized requests get `400`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::command::Command;
use crate::config::Config;
use crate::syntax::{ForwardPath, parse_command};

/// The largest request accepted, headers included.
pub const MAX_REQUEST: usize = 8 * 1024;
/// The most headers accepted.
pub const MAX_HEADERS: usize = 64;
/// After this many login attempts nginx is told to stop retrying (its docs advise it).
pub const MAX_ATTEMPTS: u32 = 10;

/// The parts of nginx's request that matter here.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthRequest {
    /// `Auth-Method`: `none` with `smtp_auth none`.
    pub method: String,
    /// `Auth-Protocol`: `smtp`, `imap` or `pop3`.
    pub protocol: String,
    /// `Auth-Login-Attempt`.
    pub attempt: u32,
    /// `Client-IP`.
    pub client_ip: Option<IpAddr>,
    /// `Auth-SMTP-Helo`.
    pub helo: Option<String>,
    /// `Auth-SMTP-From`: the whole MAIL command line.
    pub from: Option<String>,
    /// `Auth-SMTP-To`: the whole RCPT command line.
    pub to: Option<String>,
}

/// A request that cannot be answered, which gets `400 Bad Request`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpError {
    /// Larger than [`MAX_REQUEST`] or with more than [`MAX_HEADERS`] headers.
    TooLarge,
    /// Not an HTTP/1.x `GET` with well-formed headers.
    Malformed,
}

/// Parses a request from the start of `buf`: `Ok(None)` until the blank line arrives.
pub fn parse_request(buf: &[u8]) -> Result<Option<AuthRequest>, HttpError> {
    let Some((end, total)) = head_end(buf) else {
        return if buf.len() >= MAX_REQUEST {
            Err(HttpError::TooLarge)
        } else {
            Ok(None)
        };
    };
    if total > MAX_REQUEST {
        return Err(HttpError::TooLarge);
    }
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| HttpError::Malformed)?;
    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let request_line = lines.next().ok_or(HttpError::Malformed)?;
    match request_line.split(' ').collect::<Vec<_>>()[..] {
        ["GET", uri, "HTTP/1.0" | "HTTP/1.1"] if uri.starts_with('/') => {}
        _ => return Err(HttpError::Malformed),
    }
    let mut req = AuthRequest::default();
    for (n, line) in lines.enumerate() {
        if n >= MAX_HEADERS {
            return Err(HttpError::TooLarge);
        }
        let (name, value) = line.split_once(':').ok_or(HttpError::Malformed)?;
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(HttpError::Malformed);
        }
        let value = value.trim();
        if value.chars().any(char::is_control) {
            return Err(HttpError::Malformed);
        }
        let is = |h: &str| name.eq_ignore_ascii_case(h);
        if is("Auth-Method") {
            req.method = value.to_ascii_lowercase();
        } else if is("Auth-Protocol") {
            req.protocol = value.to_ascii_lowercase();
        } else if is("Auth-Login-Attempt") {
            req.attempt = value.parse().map_err(|_| HttpError::Malformed)?;
        } else if is("Client-IP") {
            req.client_ip = Some(value.parse().map_err(|_| HttpError::Malformed)?);
        } else if is("Auth-SMTP-Helo") {
            req.helo = Some(value.to_string());
        } else if is("Auth-SMTP-From") {
            req.from = Some(value.to_string());
        } else if is("Auth-SMTP-To") {
            req.to = Some(value.to_string());
        }
    }
    Ok(Some(req))
}

/// Where the head ends: the length of the header lines and of the head with its blank
/// line. Lines end in CRLF, or in a bare LF, which RFC 9112 §2.2 lets a server accept.
fn head_end(buf: &[u8]) -> Option<(usize, usize)> {
    memchr::memchr_iter(b'\n', buf).find_map(|lf| match buf.get(lf + 1..) {
        Some([b'\n', ..]) => Some((lf, lf + 2)),
        Some([b'\r', b'\n', ..]) => Some((lf, lf + 3)),
        _ => None,
    })
}

/// What to tell nginx.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Proxy the session to this backend.
    Proxy(SocketAddr),
    /// Refuse: nginx sends `<code> <status>` to the client; with `wait` it lets the
    /// client retry after that many seconds, without it it closes.
    Refuse {
        /// `Auth-Status` text.
        status: &'static str,
        /// `Auth-Error-Code`, such as `550 5.7.1`.
        code: &'static str,
        /// `Auth-Wait` seconds.
        wait: Option<u32>,
    },
}

impl std::fmt::Display for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Proxy(backend) => write!(f, "proxy to {backend}"),
            Self::Refuse { code, .. } => write!(f, "refuse with {code}"),
        }
    }
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::TooLarge => "request too large",
            Self::Malformed => "malformed request",
        })
    }
}

/// The refusals that do not depend on the backends: another protocol, a login method,
/// a recipient domain outside `GM_ALLOWED_HOSTS`. `None` means proxy the session.
pub fn refusal(req: &AuthRequest, cfg: &Config) -> Option<Decision> {
    let refuse = |status, code| {
        Some(Decision::Refuse {
            status,
            code,
            wait: None,
        })
    };
    if req.protocol != "smtp" {
        return refuse("Error: only SMTP is served here", "502 5.5.1");
    }
    if !matches!(req.method.as_str(), "none" | "") {
        return refuse("Error: authentication not supported", "535 5.7.8");
    }
    if let Some(line) = &req.to
        && let Ok(Command::Rcpt {
            to: ForwardPath::Mailbox(m),
        }) = parse_command(line.as_bytes())
        && !cfg.allowed_hosts.allows(&m.domain)
    {
        return refuse("Error: relay access denied", "550 5.7.1");
    }
    None
}

/// Decides what to answer: a [`refusal`], or the backend the caller picked from its pool
/// (`None` when none answers, which nginx is told to retry).
pub fn decide(req: &AuthRequest, cfg: &Config, backend: Option<SocketAddr>) -> Decision {
    if let Some(refused) = refusal(req, cfg) {
        return refused;
    }
    match backend {
        Some(addr) => Decision::Proxy(routable(addr)),
        None => Decision::Refuse {
            status: "Temporary server problem, try again later",
            code: "451 4.3.0",
            wait: (req.attempt < MAX_ATTEMPTS).then_some(3),
        },
    }
}

/// nginx needs an address it can connect to: a wildcard listen address becomes loopback.
pub fn routable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port())
        }
        _ => addr,
    }
}

/// The HTTP response for a decision.
pub fn response(decision: &Decision) -> Vec<u8> {
    let headers = match decision {
        Decision::Proxy(addr) => format!(
            "Auth-Status: OK\r\nAuth-Server: {}\r\nAuth-Port: {}\r\n",
            addr.ip(),
            addr.port()
        ),
        Decision::Refuse { status, code, wait } => {
            let wait = wait
                .map(|w| format!("Auth-Wait: {w}\r\n"))
                .unwrap_or_default();
            format!("Auth-Status: {status}\r\nAuth-Error-Code: {code}\r\n{wait}")
        }
    };
    format!("HTTP/1.0 200 OK\r\n{headers}Content-Length: 0\r\nConnection: close\r\n\r\n")
        .into_bytes()
}

/// The response to a request that could not be parsed.
pub fn bad_request() -> &'static [u8] {
    b"HTTP/1.0 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::AllowedHosts;

    const NGINX: &str = "GET /auth HTTP/1.0\r\nHost: 127.0.0.1\r\nAuth-Method: none\r\nAuth-User: \r\n\
        Auth-Pass: \r\nAuth-Protocol: smtp\r\nAuth-Login-Attempt: 1\r\nClient-IP: 192.0.2.9\r\n\
        Client-Host: [UNAVAILABLE]\r\nAuth-SMTP-Helo: client.example\r\nAuth-SMTP-From: MAIL FROM:<a@b.example>\r\n\
        Auth-SMTP-To: RCPT TO:<u@ok.example>\r\n\r\n";

    #[test]
    fn parses_what_nginx_sends() {
        assert_eq!(parse_request(&NGINX.as_bytes()[..40]), Ok(None));
        let req = parse_request(NGINX.as_bytes()).unwrap().unwrap();
        assert_eq!(req.method, "none");
        assert_eq!(req.client_ip, Some("192.0.2.9".parse().unwrap()));
        assert_eq!(req.to.as_deref(), Some("RCPT TO:<u@ok.example>"));
        // Bare LF line ends (RFC 9112 §2.2), and a mix, parse the same.
        let lf = NGINX.replace("\r\n", "\n");
        assert_eq!(parse_request(lf.as_bytes()), Ok(Some(req.clone())));
        let mixed = NGINX
            .replacen("\r\n", "\n", 3)
            .replace("\r\n\r\n", "\r\n\n");
        assert_eq!(parse_request(mixed.as_bytes()), Ok(Some(req)));
        // A bare CR inside a line is not a line end.
        let cr = NGINX.replace("Auth-Method: none", "Auth-Method: no\rne");
        assert_eq!(parse_request(cr.as_bytes()), Err(HttpError::Malformed));
    }

    #[test]
    fn malformed_requests() {
        let table: [(&[u8], HttpError); 5] = [
            (b"POST / HTTP/1.0\r\n\r\n", HttpError::Malformed),
            (b"GET / HTTP/2\r\n\r\n", HttpError::Malformed),
            (b"GET / HTTP/1.0\r\nno colon\r\n\r\n", HttpError::Malformed),
            (
                b"GET / HTTP/1.0\r\nClient-IP: nowhere\r\n\r\n",
                HttpError::Malformed,
            ),
            (&[b'a'; MAX_REQUEST], HttpError::TooLarge),
        ];
        for (input, e) in table {
            assert_eq!(
                parse_request(input),
                Err(e),
                "{}",
                String::from_utf8_lossy(&input[..input.len().min(40)])
            );
        }
        let many = format!("GET / HTTP/1.0\r\n{}\r\n", "X-A: b\r\n".repeat(100));
        assert_eq!(parse_request(many.as_bytes()), Err(HttpError::TooLarge));
    }

    #[test]
    fn decisions() {
        let cfg = Config {
            allowed_hosts: AllowedHosts::parse("ok.example").unwrap(),
            ..Config::default()
        };
        let req = parse_request(NGINX.as_bytes()).unwrap().unwrap();
        let backend: SocketAddr = "0.0.0.0:2525".parse().unwrap();
        let ok = decide(&req, &cfg, Some(backend));
        assert_eq!(ok, Decision::Proxy("127.0.0.1:2525".parse().unwrap()));
        assert_eq!(
            String::from_utf8(response(&ok)).unwrap(),
            "HTTP/1.0 200 OK\r\nAuth-Status: OK\r\nAuth-Server: 127.0.0.1\r\nAuth-Port: 2525\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        let denied = AuthRequest {
            to: Some("RCPT TO:<u@evil.example>".into()),
            ..req.clone()
        };
        let text = String::from_utf8(response(&decide(&denied, &cfg, Some(backend)))).unwrap();
        assert!(
            text.contains(
                "Auth-Status: Error: relay access denied\r\nAuth-Error-Code: 550 5.7.1\r\n"
            ),
            "{text}"
        );
        assert!(!text.contains("Auth-Wait"));
        let down = decide(&req, &cfg, None);
        assert!(matches!(
            down,
            Decision::Refuse {
                code: "451 4.3.0",
                wait: Some(3),
                ..
            }
        ));
        let imap = AuthRequest {
            protocol: "imap".into(),
            ..req
        };
        assert!(matches!(
            decide(&imap, &cfg, Some(backend)),
            Decision::Refuse { wait: None, .. }
        ));
    }
}
