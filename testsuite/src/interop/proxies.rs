//! Proxies in front of the binary: nginx's mail proxy (with this server as its
//! `auth_http` service and XCLIENT towards the backends) and HAProxy with the PROXY
//! protocol, versions 1 and 2.

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::daemon::{
    Daemon, Proc, RUN_LIMIT, Trace, check_stored, free_addr, queued_id, run, run_ok, wait_until,
};
use super::message;
use crate::{Client, TempDir, cert_dir};

const RCPT: &str = "u@example.com";
const FOLDER: &str = "example.com/u";

fn ca() -> String {
    cert_dir().join("ca.pem").display().to_string()
}

/// The nginx configuration: the mail module, `auth_http` at `auth`, XCLIENT, and one
/// SMTP server on `listen` (and the same port on `[::1]`) with STARTTLS (the test
/// certificate) and `smtp_auth none`.
pub fn nginx_conf(dir: &Path, listen: SocketAddr, auth: SocketAddr) -> String {
    let certs = cert_dir();
    format!(
        "load_module /usr/lib/nginx/modules/ngx_mail_module.so;\n\
         pid {dir}/nginx.pid;\n\
         error_log {dir}/error.log info;\n\
         worker_processes 1;\n\
         events {{}}\n\
         mail {{\n\
         \x20   auth_http {auth}/auth;\n\
         \x20   xclient on;\n\
         \x20   server {{\n\
         \x20       listen {listen};\n\
         \x20       listen [::1]:{port};\n\
         \x20       protocol smtp;\n\
         \x20       smtp_auth none;\n\
         \x20       smtp_capabilities \"SIZE 10240000\" 8BITMIME;\n\
         \x20       starttls on;\n\
         \x20       ssl_protocols TLSv1.2 TLSv1.3;\n\
         \x20       ssl_certificate {cert};\n\
         \x20       ssl_certificate_key {key};\n\
         \x20       proxy on;\n\
         \x20   }}\n\
         }}\n",
        dir = dir.display(),
        port = listen.port(),
        cert = certs.join("cert.pem").display(),
        key = certs.join("key.pem").display(),
    )
}

/// nginx in the foreground (`daemon off`), everything in its own temporary directory.
#[derive(Debug)]
pub struct Nginx {
    _proc: Proc,
    /// Where it listens for SMTP.
    pub listen: SocketAddr,
    _dir: TempDir,
}

impl Nginx {
    /// Starts nginx in front of the `auth_http` service at `auth`; waits until it listens.
    pub fn start(auth: SocketAddr) -> Self {
        let dir = TempDir::new("nginx");
        let listen = free_addr();
        let conf = dir.path().join("nginx.conf");
        fs::write(&conf, nginx_conf(dir.path(), listen, auth)).expect("write nginx.conf");
        let errors = dir.path().join("error.log");
        let mut proc = Proc::spawn(
            "nginx",
            Command::new("nginx")
                .arg("-p")
                .arg(dir.path())
                .arg("-c")
                .arg(&conf)
                .arg("-e")
                .arg(&errors)
                .args(["-g", "daemon off;"]),
            &dir.path().join("nginx.out"),
        );
        proc.add_log(&errors);
        proc.wait_listening(listen);
        Self {
            _proc: proc,
            listen,
            _dir: dir,
        }
    }
}

/// Where nginx connects to the backends from.
const NGINX_HOSTS: &str = "127.0.0.1,::1";

/// Two instances of the binary behind nginx: A serves `auth_http` and names A and B as
/// its backends.
fn nginx_pair(bin: &str) -> (Daemon, Daemon, Nginx) {
    // nginx connects from 127.0.0.1 (or ::1): the backends trust it with XCLIENT, as
    // each operator must say explicitly.
    let b = Daemon::start(bin, |s| {
        s.set("GSMTP_XCLIENT_HOSTS", NGINX_HOSTS);
    });
    let a_addr = free_addr();
    let auth = free_addr();
    let backends = format!("{a_addr},{}", b.smtp);
    let a = Daemon::start(bin, |s| {
        s.set("GSTMP_LISTEN_INTERFACE", &a_addr.to_string())
            .set("NGINX_AUTH_ENABLED", "Y")
            .set("NGINX_AUTH", &auth.to_string())
            .set("NGINX_AUTH_BACKENDS", &backends)
            .set("GSMTP_XCLIENT_HOSTS", NGINX_HOSTS);
    });
    let nginx = Nginx::start(auth);
    (a, b, nginx)
}

/// swaks to `server` from the local address `source`, with STARTTLS if `tls` (verified
/// with the test CA), sending `msg` to `rcpt`. Returns whether it succeeded, and its
/// output.
fn swaks_via(
    server: SocketAddr,
    source: &str,
    tls: bool,
    rcpt: &str,
    msg: &[u8],
) -> (bool, String) {
    let dir = TempDir::new("swaks");
    let file = dir.path().join("m.eml");
    fs::write(&file, msg.strip_suffix(b"\r\n").expect("ends with CRLF")).expect("write");
    let mut cmd = Command::new("swaks");
    cmd.args(["--server", &server.ip().to_string()])
        .args([
            "--port",
            &server.port().to_string(),
            "--local-interface",
            source,
        ])
        .args([
            "--ehlo",
            "client.example",
            "--from",
            "a@example.net",
            "--to",
            rcpt,
        ])
        .args(["--timeout", "20"])
        .arg("--data")
        .arg(format!("@{}", file.display()));
    if tls {
        cmd.args(["--tls", "--tls-verify", "--tls-ca-path", &ca()]);
    }
    let out = run(&mut cmd, b"", RUN_LIMIT);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The id in a stored file's `with ... id <id>` line.
fn stored_id(file: &[u8]) -> String {
    let text = String::from_utf8_lossy(file);
    let at = text.find(" id ").expect("an id in the Received header");
    text[at + 4..at + 36].to_string()
}

/// nginx's mail proxy with STARTTLS in front of two instances: this server answers
/// nginx's `auth_http` requests and sends it to A and B in turn; nginx passes the client
/// address by XCLIENT. Ten messages from 127.0.0.2 are each stored once, byte for byte,
/// by one of the two backends (both get some), with `[127.0.0.2]`, not nginx's own
/// address, in the Received header.
pub fn nginx_xclient_round_robin(bin: &str) {
    let (a, b, nginx) = nginx_pair(bin);
    let mut sent = HashMap::new();
    for i in 0..10 {
        let msg = message(&format!("nginx-{i}"));
        let (ok, out) = swaks_via(nginx.listen, "127.0.0.2", true, RCPT, &msg);
        assert!(ok, "{out}");
        assert!(out.contains("=== TLS started with cipher TLSv1.3"), "{out}");
        sent.insert(queued_id(&out), msg);
    }
    assert_eq!(sent.len(), 10, "distinct queue ids");
    let mut per_backend = Vec::new();
    for d in [&a, &b] {
        let stored = d.stored(FOLDER);
        for file in &stored {
            let id = stored_id(file);
            let msg = sent
                .remove(&id)
                .unwrap_or_else(|| panic!("stored twice or never sent: {id}"));
            let trace = Trace {
                rcpt: RCPT,
                helo: "client.example",
                ip: "127.0.0.2",
                // nginx talks plain SMTP to the backends.
                with: "ESMTP",
                id: Some(&id),
            };
            check_stored(file, &trace, &msg);
        }
        per_backend.push(stored.len());
    }
    assert!(sent.is_empty(), "acknowledged but not stored: {sent:?}");
    assert!(
        per_backend.iter().all(|&n| n > 0),
        "not round robin: {per_backend:?}"
    );
    drop(nginx);
}

/// One raw HTTP exchange with the `auth_http` service: sends `request`, reads to the end.
fn http(addr: SocketAddr, request: &[u8]) -> String {
    let mut tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    tcp.write_all(request).expect("send the request");
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

/// A request as nginx sends it with `smtp_auth none`, with the client's RCPT line.
fn nginx_request(rcpt_line: &str) -> String {
    format!(
        "GET /auth HTTP/1.0\r\nHost: 127.0.0.1\r\nAuth-Method: none\r\nAuth-User: \r\n\
         Auth-Pass: \r\nAuth-Protocol: smtp\r\nAuth-Login-Attempt: 1\r\n\
         Client-IP: 127.0.0.2\r\nClient-Host: [UNAVAILABLE]\r\n\
         Auth-SMTP-Helo: client.example\r\nAuth-SMTP-From: MAIL FROM:<a@example.net>\r\n\
         Auth-SMTP-To: {rcpt_line}\r\n\r\n"
    )
}

/// The `auth_http` service (behind nginx, with two backends): malformed, oversized and
/// over-long requests get `HTTP/1.0 400` and the service keeps answering, as nginx
/// expects, bare LF line ends included.
pub fn auth_http_refuses_malformed_requests(bin: &str) {
    let (a, b, _nginx) = nginx_pair(bin);
    let auth = a.auth.expect("auth_http enabled");
    let max = proto::auth_http::MAX_REQUEST;
    let mut oversized = b"GET /auth HTTP/1.0\r\n".to_vec();
    while oversized.len() < max {
        oversized.extend_from_slice(b"X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    }
    oversized.truncate(max); // all of it read, and still no end of the headers
    let many = format!("GET /auth HTTP/1.0\r\n{}\r\n", "X-A: b\r\n".repeat(100));
    let bad: [(&str, &[u8]); 5] = [
        ("garbage", b"GARBAGE\r\n\r\n"),
        ("not GET", b"POST /auth HTTP/1.0\r\n\r\n"),
        ("bad header", b"GET /auth HTTP/1.0\r\nno colon here\r\n\r\n"),
        ("oversized", &oversized),
        ("too many headers", many.as_bytes()),
    ];
    for (what, request) in bad {
        let answer = http(auth, request);
        assert!(answer.starts_with("HTTP/1.0 400 "), "{what}: {answer:?}");
    }
    // Still answering, and as nginx expects.
    let ok = http(auth, nginx_request(&format!("RCPT TO:<{RCPT}>")).as_bytes());
    assert!(ok.starts_with("HTTP/1.0 200 OK\r\n"), "{ok}");
    assert!(ok.contains("\r\nAuth-Status: OK\r\n"), "{ok}");
    assert!(ok.contains("\r\nAuth-Server: 127.0.0.1\r\n"), "{ok}");
    let port = |d: &Daemon| format!("\r\nAuth-Port: {}\r\n", d.smtp.port());
    assert!(ok.contains(&port(&a)) || ok.contains(&port(&b)), "{ok}");
    // Bare LF line ends are accepted too (RFC 9112 §2.2).
    let lf = nginx_request(&format!("RCPT TO:<{RCPT}>")).replace("\r\n", "\n");
    let ok = http(auth, lf.as_bytes());
    assert!(ok.contains("\r\nAuth-Status: OK\r\n"), "{ok}");
}

/// The `auth_http` service refuses a recipient outside `GM_ALLOWED_HOSTS` with
/// `550 5.7.1` (and no `Auth-Wait`), whether nginx passes the client's line with a space
/// after the colon or not.
pub fn auth_http_refuses_a_relay_recipient(bin: &str) {
    let (a, _b, _nginx) = nginx_pair(bin);
    let auth = a.auth.expect("auth_http enabled");
    // nginx passes the client's line as it came, space after the colon or not.
    for line in ["RCPT TO:<u@evil.example>", "rcpt to: <U@Evil.Example>"] {
        let denied = http(auth, nginx_request(line).as_bytes());
        assert!(
            denied.contains(
                "\r\nAuth-Status: Error: relay access denied\r\nAuth-Error-Code: 550 5.7.1\r\n"
            ),
            "{line}: {denied}"
        );
        assert!(!denied.contains("Auth-Wait"), "{denied}");
    }
}

/// Through nginx, a recipient the `auth_http` service refuses: the client gets
/// `550 5.7.1` at RCPT, no backend ever sees the session, and nothing is stored.
pub fn nginx_auth_http_refusal_reaches_the_client(bin: &str) {
    let (a, b, nginx) = nginx_pair(bin);
    let (ok, out) = swaks_via(
        nginx.listen,
        "127.0.0.2",
        true,
        "u@evil.example",
        &message("evil"),
    );
    assert!(!ok, "{out}");
    assert!(out.contains("550 5.7.1"), "{out}");
    for d in [&a, &b] {
        assert_eq!(d.all_files(), Vec::<String>::new(), "stored something");
        // The auth_http service names the client in its own lines; no session did.
        assert!(
            !d.log()
                .lines()
                .any(|l| l.contains("connection") && l.contains("client=127.0.0.2")),
            "a backend saw the refused session:\n{}",
            d.log()
        );
    }
}

/// Through nginx over IPv6, from `::1`: delivered once, with `[::1]` in the Received
/// header (nginx's `XCLIENT ADDR=IPV6:::1`).
pub fn nginx_over_ipv6_names_the_client(bin: &str) {
    let (a, b, nginx) = nginx_pair(bin);
    let msg = message("after");
    let v6 = SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, nginx.listen.port()));
    let (ok, out) = swaks_via(v6, "::1", true, RCPT, &msg);
    assert!(ok, "{out}");
    let id = queued_id(&out);
    let stored: Vec<Vec<u8>> = [&a, &b].iter().flat_map(|d| d.stored(FOLDER)).collect();
    assert_eq!(stored.len(), 1);
    let trace = Trace {
        rcpt: RCPT,
        helo: "client.example",
        ip: "::1",
        with: "ESMTP",
        id: Some(&id),
    };
    check_stored(&stored[0], &trace, &msg);
}

/// The HAProxy configuration: TCP mode, one frontend on `listen`, round robin over the
/// servers at `backends` with `send_proxy` (`send-proxy`, `send-proxy-v2`, or empty for
/// none), each checked every 500 ms with an SMTP health check (EHLO, QUIT) that also
/// starts with a PROXY header when they get one, and the stats socket at
/// `<dir>/haproxy.sock`.
pub fn haproxy_cfg(
    dir: &Path,
    listen: SocketAddr,
    backends: &[SocketAddr],
    send_proxy: &str,
) -> String {
    let check = if send_proxy.is_empty() {
        "check"
    } else {
        "check check-send-proxy"
    };
    let servers: String = backends
        .iter()
        .enumerate()
        .map(|(i, b)| {
            format!(
                "\x20   server s{} {b} {send_proxy} {check} inter 500ms\n",
                i + 1
            )
        })
        .collect();
    format!(
        "global\n\
         \x20   maxconn 200\n\
         \x20   stats socket {dir}/haproxy.sock mode 600 level user\n\
         defaults\n\
         \x20   mode tcp\n\
         \x20   timeout connect 5s\n\
         \x20   timeout client 30s\n\
         \x20   timeout server 30s\n\
         frontend smtp\n\
         \x20   bind {listen}\n\
         \x20   default_backend guerrilla\n\
         backend guerrilla\n\
         \x20   balance roundrobin\n\
         \x20   option smtpchk EHLO haproxy.test\n\
         {servers}",
        dir = dir.display()
    )
}

/// HAProxy in the foreground (`-db`), everything in its own temporary directory.
#[derive(Debug)]
pub struct Haproxy {
    _proc: Proc,
    /// Where it listens.
    pub listen: SocketAddr,
    dir: TempDir,
}

impl Haproxy {
    /// Starts HAProxy in front of `backends`; waits until it listens.
    pub fn start(backends: &[SocketAddr], send_proxy: &str) -> Self {
        let dir = TempDir::new("haproxy");
        let listen = free_addr();
        let cfg = dir.path().join("haproxy.cfg");
        fs::write(&cfg, haproxy_cfg(dir.path(), listen, backends, send_proxy))
            .expect("write haproxy.cfg");
        let mut proc = Proc::spawn(
            "haproxy",
            Command::new("haproxy").arg("-f").arg(&cfg).arg("-db"),
            &dir.path().join("haproxy.log"),
        );
        proc.wait_listening(listen);
        Self {
            _proc: proc,
            listen,
            dir,
        }
    }
}

/// The server's `status` and `check_status` in HAProxy's `show stat`.
fn haproxy_check(dir: &Path) -> (String, String) {
    let Ok(mut sock) = UnixStream::connect(dir.join("haproxy.sock")) else {
        return Default::default();
    };
    let _ = sock.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = sock.write_all(b"show stat\n");
    let mut csv = String::new();
    let _ = sock.read_to_string(&mut csv);
    let mut lines = csv.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or("")
        .trim_start_matches("# ")
        .split(',')
        .collect();
    let column = |row: &[&str], name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .and_then(|i| row.get(i))
            .map(|s| s.to_string())
            .unwrap_or_default()
    };
    lines
        .map(|l| l.split(',').collect::<Vec<_>>())
        .find(|row| row.len() > 2 && row[0] == "guerrilla" && row[1] == "s1")
        .map(|row| (column(&row, "status"), column(&row, "check_status")))
        .unwrap_or_default()
}

/// A PROXY header naming 192.0.2.7:40000 as the client, in version 1 or 2.
fn proxy_header(v2: bool, server: SocketAddr) -> Vec<u8> {
    if !v2 {
        return format!("PROXY TCP4 192.0.2.7 127.0.0.1 40000 {}\r\n", server.port()).into_bytes();
    }
    let mut h = proto::proxy::V2_SIGNATURE.to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0, 12, 192, 0, 2, 7, 127, 0, 0, 1]);
    h.extend_from_slice(&40000u16.to_be_bytes());
    h.extend_from_slice(&server.port().to_be_bytes());
    h
}

/// From 127.0.0.3, through the proxy at 127.0.0.1:<port>: EHLO, then XCLIENT.
const XCLIENT_FROM: &str = r#"
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), 20, ("127.0.0.3", 0))
f = s.makefile("rb")
def reply():
    lines = [f.readline().decode().rstrip("\r\n")]
    while lines[-1][3:4] == "-":
        lines.append(f.readline().decode().rstrip("\r\n"))
    return lines
assert reply()[0].startswith("220 ")
s.sendall(b"EHLO client.example\r\n")
print("EHLO offers XCLIENT:", any("XCLIENT" in l for l in reply()))
s.sendall(b"XCLIENT ADDR=10.1.2.3\r\n")
print(reply()[0])
"#;

/// An instance with `GSMTP_PROXY_PROTOCOL=Y` (trusting 127.0.0.1 with XCLIENT) behind
/// HAProxy sending PROXY headers of version 2 (`v2`) or 1. Fields drop in order:
/// HAProxy stops first.
struct Behind {
    haproxy: Haproxy,
    d: Daemon,
}

impl Behind {
    fn start(bin: &str, v2: bool) -> Self {
        let d = Daemon::start(bin, |s| {
            s.set("GSMTP_PROXY_PROTOCOL", "Y")
                .set("GSMTP_XCLIENT_HOSTS", "127.0.0.1");
        });
        let haproxy = Haproxy::start(&[d.smtp], if v2 { "send-proxy-v2" } else { "send-proxy" });
        Self { haproxy, d }
    }

    /// HAProxy's SMTP health checks, each with its own PROXY header, pass.
    fn health_checks_pass(&self) {
        let mut check = Default::default();
        let up = wait_until(Duration::from_secs(10), || {
            check = haproxy_check(self.haproxy.dir.path());
            check == ("UP".to_string(), "L7OK".to_string())
        });
        assert!(up, "HAProxy's health check: {check:?}");
    }
}

/// HAProxy's SMTP health checks, each with its own PROXY header, pass.
fn haproxy_health_checks(bin: &str, v2: bool) {
    Behind::start(bin, v2).health_checks_pass();
}

/// Malformed headers, and none at all, straight to the server: closed unanswered.
fn haproxy_malformed_headers(bin: &str, v2: bool) {
    let behind = Behind::start(bin, v2);
    let d = &behind.d;
    let mut bad_v2 = proto::proxy::V2_SIGNATURE.to_vec();
    bad_v2.extend_from_slice(&[0x21, 0x11, 0, 4, 1, 2, 3, 4]); // too short for TCP4
    let malformed: [&[u8]; 4] = [
        b"PROXY TCP4 999.0.2.1 127.0.0.1 5000 25\r\nEHLO client.example\r\n",
        b"PROXY TCP4 192.0.2.1 127.0.0.1 5000\r\n",
        &bad_v2,
        b"EHLO client.example\r\n",
    ];
    for bytes in malformed {
        let mut c = Client::connect(d.smtp);
        c.send(bytes);
        assert!(
            c.is_closed(),
            "not closed after {:?}",
            String::from_utf8_lossy(bytes)
        );
    }
    d.wait_log(&["bad PROXY header"]);
}

/// A correct header straight from a trusted address: served, and stored with the client
/// the header names.
fn haproxy_direct_header(bin: &str, v2: bool) {
    let behind = Behind::start(bin, v2);
    let d = &behind.d;
    let mut c = Client::connect(d.smtp);
    c.send(&proxy_header(v2, d.smtp));
    assert_eq!(c.reply().code, 220);
    c.ehlo("client.example");
    let msg = message("proxy-direct");
    let r = c.send_mail("a@example.net", &[RCPT], &msg);
    assert_eq!(r.code, 250, "{r:?}");
    let direct_id = queued_id(&r.wire());
    assert_eq!(c.cmd("QUIT").code, 221);
    let stored = d.stored(FOLDER);
    assert_eq!(stored.len(), 1);
    assert_eq!(stored_id(&stored[0]), direct_id);
    let trace = Trace {
        rcpt: RCPT,
        helo: "client.example",
        ip: "192.0.2.7",
        with: "ESMTP",
        id: Some(&direct_id),
    };
    check_stored(&stored[0], &trace, &msg);
}

/// swaks from 127.0.0.3 through HAProxy (with STARTTLS over v2): stored with
/// `[127.0.0.3]`.
fn haproxy_swaks_through(bin: &str, v2: bool) {
    let behind = Behind::start(bin, v2);
    behind.health_checks_pass();
    let msg2 = message("haproxy");
    let (ok, out) = swaks_via(behind.haproxy.listen, "127.0.0.3", v2, RCPT, &msg2);
    assert!(ok, "{out}");
    let id = queued_id(&out);
    let stored = behind.d.stored(FOLDER);
    assert_eq!(stored.len(), 1);
    assert_eq!(stored_id(&stored[0]), id);
    let trace = Trace {
        rcpt: RCPT,
        helo: "client.example",
        ip: "127.0.0.3",
        with: if v2 { "ESMTPS" } else { "ESMTP" },
        id: Some(&id),
    };
    check_stored(&stored[0], &trace, &msg2);
}

/// The client behind HAProxy is not a trusted proxy: XCLIENT is neither offered nor
/// accepted (trust follows the address the PROXY header names, not HAProxy's).
fn haproxy_xclient_behind(bin: &str, v2: bool) {
    let behind = Behind::start(bin, v2);
    behind.health_checks_pass();
    let front = behind.haproxy.listen;
    let out = run_ok(Command::new("python3").args(["-c", XCLIENT_FROM, &front.port().to_string()]));
    assert_eq!(
        out,
        "EHLO offers XCLIENT: False\n550 5.7.0 Error: insufficient authorization\n",
    );
}

/// HAProxy with `send-proxy-v2` in front of an instance with `GSMTP_PROXY_PROTOCOL=Y`:
/// its SMTP health checks (with a `LOCAL` header) pass.
pub fn haproxy_proxy_v2_health_checks(bin: &str) {
    haproxy_health_checks(bin, true);
}

/// Malformed v1 and v2 headers, or none, sent straight to the instance that HAProxy
/// (`send-proxy-v2`) fronts, get the connection closed.
pub fn haproxy_proxy_v2_malformed_headers(bin: &str) {
    haproxy_malformed_headers(bin, true);
}

/// A correct v2 header straight from a trusted address is served, with its client.
pub fn haproxy_proxy_v2_direct_header(bin: &str) {
    haproxy_direct_header(bin, true);
}

/// swaks from 127.0.0.3 through HAProxy (`send-proxy-v2`, STARTTLS passed through) is
/// stored with `[127.0.0.3]`.
pub fn haproxy_proxy_v2_swaks_through(bin: &str) {
    haproxy_swaks_through(bin, true);
}

/// XCLIENT from the client behind HAProxy (`send-proxy-v2`) is refused: 127.0.0.3 is not
/// a trusted proxy, although HAProxy's address 127.0.0.1 is.
pub fn haproxy_proxy_v2_xclient_behind(bin: &str) {
    haproxy_xclient_behind(bin, true);
}

/// The same as [`haproxy_proxy_v2_health_checks`] with `send-proxy` (version 1, text).
pub fn haproxy_proxy_v1_health_checks(bin: &str) {
    haproxy_health_checks(bin, false);
}

/// The same as [`haproxy_proxy_v2_malformed_headers`] with `send-proxy` (version 1).
pub fn haproxy_proxy_v1_malformed_headers(bin: &str) {
    haproxy_malformed_headers(bin, false);
}

/// The same as [`haproxy_proxy_v2_direct_header`] with a version 1 header.
pub fn haproxy_proxy_v1_direct_header(bin: &str) {
    haproxy_direct_header(bin, false);
}

/// The same as [`haproxy_proxy_v2_swaks_through`] with `send-proxy` (version 1), plain
/// SMTP.
pub fn haproxy_proxy_v1_swaks_through(bin: &str) {
    haproxy_swaks_through(bin, false);
}

/// The same as [`haproxy_proxy_v2_xclient_behind`] with `send-proxy` (version 1).
pub fn haproxy_proxy_v1_xclient_behind(bin: &str) {
    haproxy_xclient_behind(bin, false);
}
