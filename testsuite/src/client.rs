//! A small blocking SMTP client over `std::net` and rustls, so the suite depends on no
//! async runtime. Every read has a timeout; a test never hangs.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

/// How long any read may wait.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// One reply: its code and the text of each line (after `ddd-` or `ddd `).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit code.
    pub code: u16,
    /// Each line's text.
    pub lines: Vec<String>,
}

impl Reply {
    /// The text of the first line.
    pub fn text(&self) -> &str {
        self.lines.first().map_or("", String::as_str)
    }

    /// The reply as sent: `code-line` ... `code line`, CRLFs included.
    pub fn wire(&self) -> String {
        let n = self.lines.len();
        self.lines
            .iter()
            .enumerate()
            .map(|(i, l)| format!("{}{}{l}\r\n", self.code, if i + 1 < n { '-' } else { ' ' }))
            .collect()
    }
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
    Gone,
}

/// A blocking SMTP client.
pub struct Client {
    stream: Stream,
    buf: Vec<u8>,
    /// Every reply line received, for transcripts.
    pub log: Vec<String>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("buffered", &self.buf.len())
            .finish_non_exhaustive()
    }
}

/// A TLS client that trusts only the test CA, for TLS 1.2 and 1.3 or just `versions`.
pub fn tls_config(versions: &[&'static rustls::SupportedProtocolVersion]) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    let ca =
        rustls::pki_types::CertificateDer::from_pem_file(crate::fixture::cert_dir().join("ca.pem"))
            .expect("the test CA is readable");
    roots.add(ca).expect("the test CA is valid");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("valid TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(cfg)
}

fn handshake(
    tcp: TcpStream,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> io::Result<StreamOwned<ClientConnection, TcpStream>> {
    let name = ServerName::try_from("mx.test").expect("a valid name");
    let conn = ClientConnection::new(tls_config(versions), name).map_err(io::Error::other)?;
    let mut tls = StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    Ok(tls)
}

/// A TCP connection to `addr` from the local address `source`.
pub fn tcp_from(source: std::net::IpAddr, addr: SocketAddr) -> io::Result<TcpStream> {
    use nix::sys::socket::{
        AddressFamily, SockFlag, SockType, SockaddrStorage, bind, connect, socket,
    };
    use std::os::fd::AsRawFd;
    let family = if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd = socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    bind(
        fd.as_raw_fd(),
        &SockaddrStorage::from(SocketAddr::new(source, 0)),
    )?;
    connect(fd.as_raw_fd(), &SockaddrStorage::from(addr))?;
    Ok(TcpStream::from(fd))
}

impl Client {
    /// Connects over plain TCP.
    pub fn connect(addr: SocketAddr) -> Self {
        let tcp = TcpStream::connect_timeout(&addr, READ_TIMEOUT)
            .unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"));
        tcp.set_read_timeout(Some(READ_TIMEOUT))
            .expect("set a read timeout");
        tcp.set_nodelay(true).expect("set nodelay");
        Self::from_stream(tcp)
    }

    /// Connects over plain TCP from the local address `source` (any of 127.0.0.0/8 works
    /// on loopback), to stand for another client.
    pub fn connect_from(source: std::net::IpAddr, addr: SocketAddr) -> Self {
        let tcp = tcp_from(source, addr)
            .unwrap_or_else(|e| panic!("cannot connect to {addr} from {source}: {e}"));
        tcp.set_read_timeout(Some(READ_TIMEOUT))
            .expect("set a read timeout");
        tcp.set_nodelay(true).expect("set nodelay");
        Self::from_stream(tcp)
    }

    /// Wraps a connected stream (its read timeout is left as it is).
    pub fn from_stream(tcp: TcpStream) -> Self {
        Self {
            stream: Stream::Plain(tcp),
            buf: Vec::new(),
            log: Vec::new(),
        }
    }

    /// Connects and does the TLS handshake first (RFC 8314 implicit TLS).
    pub fn connect_tls(addr: SocketAddr) -> Self {
        let mut c = Self::connect(addr);
        c.upgrade().expect("the implicit-TLS handshake");
        c
    }

    /// Does the TLS handshake on the current connection (after `220 Ready to start TLS`).
    pub fn upgrade(&mut self) -> io::Result<()> {
        self.upgrade_with(&[&rustls::version::TLS13, &rustls::version::TLS12])
    }

    /// The TLS handshake, offering only `versions`.
    pub fn upgrade_with(
        &mut self,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> io::Result<()> {
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Gone) else {
            return Err(io::Error::other("not a plain connection"));
        };
        assert!(
            self.buf.is_empty(),
            "plaintext left unread before the handshake"
        );
        self.stream = Stream::Tls(Box::new(handshake(tcp, versions)?));
        Ok(())
    }

    /// Whether the connection runs over TLS, and its version.
    pub fn tls_version(&self) -> Option<rustls::ProtocolVersion> {
        match &self.stream {
            Stream::Tls(t) => t.conn.protocol_version(),
            _ => None,
        }
    }

    /// Sends raw bytes in one write.
    pub fn send(&mut self, bytes: &[u8]) {
        let result = match &mut self.stream {
            Stream::Plain(s) => s.write_all(bytes).and_then(|()| s.flush()),
            Stream::Tls(s) => s.write_all(bytes).and_then(|()| s.flush()),
            Stream::Gone => Err(io::ErrorKind::NotConnected.into()),
        };
        result.unwrap_or_else(|e| panic!("cannot send: {e}"));
    }

    /// Sends raw bytes; `false` if the server has closed the connection.
    pub fn try_send(&mut self, bytes: &[u8]) -> bool {
        match &mut self.stream {
            Stream::Plain(s) => s.write_all(bytes).and_then(|()| s.flush()).is_ok(),
            Stream::Tls(s) => s.write_all(bytes).and_then(|()| s.flush()).is_ok(),
            Stream::Gone => false,
        }
    }

    /// Sends `line` with CRLF and reads the reply.
    pub fn cmd(&mut self, line: &str) -> Reply {
        self.send(format!("{line}\r\n").as_bytes());
        self.reply()
    }

    /// EHLO, checked to succeed.
    pub fn ehlo(&mut self, name: &str) -> Reply {
        let r = self.cmd(&format!("EHLO {name}"));
        assert_eq!(r.code, 250, "{r:?}");
        r
    }

    fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 8192];
        let n = match &mut self.stream {
            Stream::Plain(s) => s.read(&mut chunk),
            Stream::Tls(s) => s.read(&mut chunk),
            Stream::Gone => Ok(0),
        }?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// Reads one line without its CRLF; `None` at end of stream. Panics if nothing comes
    /// within the read timeout.
    pub fn read_line(&mut self) -> Option<String> {
        match self.next_line() {
            Ok(line) => line,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                panic!(
                    "no reply within {READ_TIMEOUT:?}; have {:?}",
                    String::from_utf8_lossy(&self.buf)
                )
            }
            Err(_) => None,
        }
    }

    fn next_line(&mut self) -> io::Result<Option<String>> {
        loop {
            if let Some(p) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..p]).into_owned();
                self.buf.drain(..p + 2);
                self.log.push(line.clone());
                return Ok(Some(line));
            }
            if self.fill()? == 0 {
                return Ok(None);
            }
        }
    }

    /// Reads one reply, single- or multi-line. Panics at end of stream.
    pub fn reply(&mut self) -> Reply {
        let mut lines = Vec::new();
        loop {
            let line = self
                .read_line()
                .unwrap_or_else(|| panic!("connection closed; replies so far {lines:?}"));
            let code: u16 = line
                .get(..3)
                .and_then(|c| c.parse().ok())
                .unwrap_or_else(|| panic!("not a reply line: {line:?}"));
            let sep = line.as_bytes().get(3).copied();
            lines.push(line.get(4..).unwrap_or("").to_string());
            match sep {
                Some(b'-') => continue,
                Some(b' ') | None => return Reply { code, lines },
                _ => panic!("bad reply line {line:?}"),
            }
        }
    }

    /// Reads one reply; `None` if the connection ends, fails or times out first, or
    /// what comes is not a reply. Never panics (for clients of a server being killed).
    pub fn try_reply(&mut self) -> Option<Reply> {
        let mut lines = Vec::new();
        loop {
            let line = self.next_line().ok()??;
            let code: u16 = line.get(..3)?.parse().ok()?;
            let sep = line.as_bytes().get(3).copied();
            lines.push(line.get(4..).unwrap_or("").to_string());
            match sep {
                Some(b'-') => continue,
                Some(b' ') | None => return Some(Reply { code, lines }),
                _ => return None,
            }
        }
    }

    /// Sends `line` with CRLF and reads the reply, as [`Client::try_reply`].
    pub fn try_cmd(&mut self, line: &str) -> Option<Reply> {
        if !self.try_send(format!("{line}\r\n").as_bytes()) {
            return None;
        }
        self.try_reply()
    }

    /// One whole transaction, as [`Client::try_reply`]: the reply to the final dot, or
    /// `None` when anything before it fails.
    pub fn try_mail(&mut self, from: &str, to: &[&str], body: &[u8]) -> Option<Reply> {
        if self.try_cmd(&format!("MAIL FROM:<{from}>"))?.code != 250 {
            return None;
        }
        for rcpt in to {
            if self.try_cmd(&format!("RCPT TO:<{rcpt}>"))?.code != 250 {
                return None;
            }
        }
        if self.try_cmd("DATA")?.code != 354 || !self.try_send(&dot_stuff(body)) {
            return None;
        }
        self.try_reply()
    }

    /// Whether the server closes the connection (end of stream or reset) within the
    /// read timeout, with nothing more to read.
    pub fn is_closed(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        matches!(self.fill(), Ok(0) | Err(_)) && self.buf.is_empty()
    }

    /// Reads and throws away whatever comes (a TLS alert, say) until the server closes;
    /// false if it is still open after the read timeout.
    pub fn drains_to_close(&mut self) -> bool {
        loop {
            self.buf.clear();
            match self.fill() {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) => {
                    return !matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    );
                }
            }
        }
    }

    /// Whether nothing at all arrives within `wait` (the connection stays open).
    pub fn silent_for(&mut self, wait: Duration) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        self.set_timeout(wait);
        let quiet = match self.fill() {
            Ok(0) => false,
            Ok(_) => false,
            Err(e) => matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
        };
        self.set_timeout(READ_TIMEOUT);
        quiet
    }

    fn set_timeout(&self, t: Duration) {
        let sock = match &self.stream {
            Stream::Plain(s) => s,
            Stream::Tls(s) => &s.sock,
            Stream::Gone => return,
        };
        sock.set_read_timeout(Some(t)).expect("set a read timeout");
    }

    /// MAIL, RCPT for each recipient, DATA and the dot-stuffed body, all checked to
    /// succeed up to DATA. Returns the reply to the final dot.
    pub fn send_mail(&mut self, from: &str, to: &[&str], body: &[u8]) -> Reply {
        let r = self.cmd(&format!("MAIL FROM:<{from}>"));
        assert_eq!(r.code, 250, "MAIL: {r:?}");
        for rcpt in to {
            let r = self.cmd(&format!("RCPT TO:<{rcpt}>"));
            assert_eq!(r.code, 250, "RCPT {rcpt}: {r:?}");
        }
        let r = self.cmd("DATA");
        assert_eq!(r.code, 354, "DATA: {r:?}");
        self.send(&dot_stuff(body));
        self.reply()
    }

    /// Waits until `deadline` for the connection to close; true if it did.
    pub fn closes_before(&mut self, deadline: Instant) -> bool {
        self.set_timeout(
            deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1)),
        );
        let closed = self.is_closed();
        self.set_timeout(READ_TIMEOUT);
        closed
    }
}

/// Dot-stuffs `body` as a client does and appends the terminator (and a CRLF before it
/// when the body does not end with one).
pub fn dot_stuff(body: &[u8]) -> Vec<u8> {
    let mut out = proto::command::dot_stuff(body);
    if !body.is_empty() && !body.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}
