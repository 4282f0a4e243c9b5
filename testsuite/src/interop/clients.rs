//! Real SMTP clients against the real binary: swaks, Python's smtplib, curl, Postfix's
//! smtp-source, and `openssl s_client` for the TLS versions.

use std::collections::HashSet;
use std::fs;
use std::process::Command;
use std::time::Duration;

use super::daemon::{Daemon, RUN_LIMIT, Trace, check_stored, queued_id, run, run_ok, wait_until};
use super::message;
use crate::cert_dir;

/// The recipient every client sends to.
const RCPT: &str = "u@example.com";
/// The folder it is stored in.
const FOLDER: &str = "example.com/u";

fn ca() -> String {
    cert_dir().join("ca.pem").display().to_string()
}

/// swaks sends `--data` followed by CRLF and the final dot, so a file without the last
/// CRLF of `msg` makes it send exactly `msg`.
fn swaks_file(d: &Daemon, msg: &[u8]) -> String {
    let path = d.dir().join("swaks.eml");
    fs::write(&path, msg.strip_suffix(b"\r\n").expect("ends with CRLF")).expect("write");
    path.display().to_string()
}

/// swaks sends `message(tag)` to `rcpts`, in one transaction; each recipient's copy is
/// checked byte for byte.
fn swaks(d: &Daemon, tls: bool, pipeline: bool, rcpts: &[&str]) {
    let msg = message("swaks");
    let file = swaks_file(d, &msg);
    let mut cmd = Command::new("swaks");
    cmd.args(["--server", &d.smtp.to_string()])
        .args(["--ehlo", "client.example", "--from", "a@example.net"])
        .args(["--to", &rcpts.join(","), "--data", &format!("@{file}")])
        .args(["--timeout", "20"]);
    if tls {
        // The chain is verified against the test CA (swaks does not check the name).
        cmd.args(["--tls", "--tls-verify", "--tls-ca-path", &ca()]);
    }
    if pipeline {
        cmd.arg("--pipeline");
    }
    let out = run_ok(&mut cmd);
    if tls {
        assert!(out.contains("=== TLS started with cipher TLSv1."), "{out}");
    }
    let id = queued_id(&out);
    for rcpt in rcpts {
        let (user, domain) = rcpt.split_once('@').expect("an address");
        let stored = d.stored(&format!("{domain}/{user}"));
        assert_eq!(stored.len(), 1, "{rcpt}: {out}");
        let trace = Trace {
            rcpt,
            helo: "client.example",
            ip: "127.0.0.1",
            with: if tls { "ESMTPS" } else { "ESMTP" },
            id: Some(&id),
        };
        check_stored(&stored[0], &trace, &msg);
    }
}

/// swaks over plain SMTP, message from a file: stored byte for byte with its queue id.
/// Then with `--pipeline` (RFC 2920) to two recipients: one copy each, each with its own
/// `Delivered-To`.
pub fn swaks_plain(bin: &str) {
    let d = Daemon::start(bin, |_| {});
    swaks(&d, false, false, &[RCPT]);
    let d = Daemon::start(bin, |_| {});
    swaks(&d, false, true, &["v@example.com", "w@sub.example.org"]);
}

/// swaks with STARTTLS, verifying the certificate with the test CA: stored byte for byte
/// with `ESMTPS` and the cipher in the Received header. (Without the CA the verification
/// fails, so it is real.)
pub fn swaks_starttls(bin: &str) {
    let d = Daemon::start(bin, |_| {});
    let out = run(
        Command::new("swaks")
            .args(["--server", &d.smtp.to_string(), "--to", RCPT])
            .args(["--tls", "--tls-verify", "--quit-after", "TLS"]),
        b"",
        RUN_LIMIT,
    );
    assert!(!out.status.success(), "verified without the CA");
    swaks(&d, true, false, &[RCPT]);
}

/// The Python client: connects to 127.0.0.1 under the name mx.test (so TLS checks that
/// name against the test CA), sends the file as bytes, prints the reply to the final dot
/// and, with TLS, the negotiated version.
const SMTPLIB: &str = r#"
import smtplib, socket, ssl, sys
port, mode, ca, path = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
class Loopback(smtplib.SMTP):
    def _get_socket(self, host, port, timeout):
        return socket.create_connection(("127.0.0.1", port), timeout)
s = Loopback("mx.test", port, local_hostname="client.example", timeout=20)
if mode == "tls":
    ctx = ssl.create_default_context(cafile=ca)
    assert ctx.check_hostname and ctx.verify_mode == ssl.CERT_REQUIRED
    code, _ = s.starttls(context=ctx)
    assert code == 220, code
    print("TLS", s.sock.version(), s.sock.server_hostname)
s.ehlo("client.example")
assert s.mail("a@example.net")[0] == 250
assert s.rcpt("u@example.com")[0] == 250
code, text = s.data(open(path, "rb").read())
print(code, text.decode())
s.quit()
"#;

fn smtplib(d: &Daemon, tls: bool) {
    let msg = message("smtplib");
    let path = d.dir().join("smtplib.eml");
    fs::write(&path, &msg).expect("write");
    let out = run_ok(
        Command::new("python3")
            .args(["-c", SMTPLIB, &d.smtp.port().to_string()])
            .args([if tls { "tls" } else { "plain" }, &ca()])
            .arg(&path),
    );
    if tls {
        assert!(out.contains("TLS TLSv1.3 mx.test"), "{out}");
    }
    let id = queued_id(&out);
    let stored = d.stored(FOLDER);
    assert_eq!(stored.len(), 1, "{out}");
    let trace = Trace {
        rcpt: RCPT,
        helo: "client.example",
        ip: "127.0.0.1",
        with: if tls { "ESMTPS" } else { "ESMTP" },
        id: Some(&id),
    };
    check_stored(&stored[0], &trace, &msg);
}

/// Python's smtplib over plain SMTP, bytes with leading dots: stored byte for byte.
pub fn smtplib_plain(bin: &str) {
    let d = Daemon::start(bin, |_| {});
    smtplib(&d, false);
}

/// Python's smtplib with STARTTLS and a default SSL context that trusts only the test CA
/// and checks the name `mx.test`: stored byte for byte over TLS 1.3.
pub fn smtplib_starttls(bin: &str) {
    let d = Daemon::start(bin, |_| {});
    smtplib(&d, true);
}

fn curl(d: &Daemon, tls: bool, msg: &[u8]) {
    let path = d.dir().join("curl.eml");
    fs::write(&path, msg).expect("write");
    let port = d.smtp.port();
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-v", "--max-time", "20"])
        .args(["--mail-from", "a@example.net", "--mail-rcpt", RCPT])
        .arg("--upload-file")
        .arg(&path);
    if tls {
        // The name mx.test, resolved to loopback, checked against the test CA.
        cmd.args(["--ssl-reqd", "--cacert", &ca()])
            .args(["--resolve", &format!("mx.test:{port}:127.0.0.1")])
            .arg(format!("smtp://mx.test:{port}/client.example"));
    } else {
        cmd.arg(format!("smtp://127.0.0.1:{port}/client.example"));
    }
    let out = run_ok(&mut cmd);
    if tls {
        assert!(out.contains("SSL connection using TLSv1.3"), "{out}");
        assert!(out.contains("> STARTTLS"), "{out}");
    }
    let id = queued_id(&out);
    let stored = d.stored(FOLDER);
    assert_eq!(stored.len(), 1, "{out}");
    let trace = Trace {
        rcpt: RCPT,
        helo: "client.example",
        ip: "127.0.0.1",
        with: if tls { "ESMTPS" } else { "ESMTP" },
        id: Some(&id),
    };
    check_stored(&stored[0], &trace, msg);
}

/// curl's SMTP upload over plain SMTP: stored byte for byte. Then a 4 MB message with
/// thousands of dot-stuffed lines, streamed to disk and stored byte for byte too.
pub fn curl_plain(bin: &str) {
    let d = Daemon::start(bin, |_| {});
    curl(&d, false, &message("curl"));
    let d = Daemon::start(bin, |_| {});
    let mut big = message("curl-large");
    for i in 0..52_000 {
        let dot = if i % 7 == 0 { "." } else { "" };
        big.extend_from_slice(format!("{dot}{i:08} {}\r\n", "x".repeat(66)).as_bytes());
    }
    assert!(big.len() > 4_000_000 && big.len() < 10_240_000);
    curl(&d, false, &big);
}

/// curl with `--ssl-reqd --cacert`: STARTTLS, the certificate checked for `mx.test`,
/// stored byte for byte.
pub fn curl_starttls(bin: &str) {
    let d = Daemon::start(bin, |_| {});
    curl(&d, true, &message("curl"));
}

/// Postfix's smtp-source: 2,000 messages over 20 parallel sessions (several messages per
/// session). Every message is acknowledged and stored exactly once, byte for byte: 2,000
/// files in `new/`, none in `tmp/`, and 2,000 distinct queue ids in the log.
pub fn smtp_source_2000(bin: &str) {
    const N: usize = 2000;
    let d = Daemon::start(bin, |_| {});
    // smtp-source sends each line of the file with CRLF (dot-stuffed), then an empty
    // line, then the final dot.
    let text = "From: <a@example.net>\nTo: <u@example.com>\nSubject: load\n\n.leading dot\n..two\nlast line\n";
    let path = d.dir().join("source.txt");
    fs::write(&path, text).expect("write");
    let sent = format!("{}\r\n", text.replace('\n', "\r\n"));
    let out = run(
        Command::new("smtp-source")
            .args(["-s", "20", "-m", &N.to_string(), "-d"])
            .args(["-M", "client.example", "-f", "a@example.net", "-t", RCPT])
            .arg("-F")
            .arg(&path)
            .arg(format!("127.0.0.1:{}", d.smtp.port())),
        b"",
        Duration::from_secs(50),
    );
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "smtp-source failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let files = d.files(FOLDER, "new");
    assert_eq!(files.len(), N, "messages in new/");
    assert_eq!(d.files(FOLDER, "tmp"), Vec::<std::path::PathBuf>::new());
    assert_eq!(d.all_files().len(), N, "files anywhere under the Maildir");
    let mut stored_ids = HashSet::new();
    for f in &files {
        let bytes = fs::read(f).expect("read");
        let trace = Trace {
            rcpt: RCPT,
            helo: "client.example",
            ip: "127.0.0.1",
            // smtp-source says HELO, not EHLO.
            with: "SMTP",
            id: None,
        };
        stored_ids.insert(check_stored(&bytes, &trace, sent.as_bytes()));
    }
    assert_eq!(stored_ids.len(), N, "distinct ids in the stored files");
    let queued = || d.log().matches("message queued").count();
    wait_until(Duration::from_secs(5), || queued() >= N);
    let log = d.log();
    let logged: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("message queued"))
        .map(|l| {
            let at = l
                .find(" queue_id=")
                .unwrap_or_else(|| panic!("no id in {l:?}"));
            &l[at + 10..at + 42]
        })
        .collect();
    assert_eq!(logged.len(), N, "message queued lines");
    let logged: HashSet<String> = logged.into_iter().map(str::to_string).collect();
    assert_eq!(logged.len(), N, "distinct queue ids in the log");
    assert_eq!(logged, stored_ids, "the log names the stored messages");
}

/// `openssl s_client -starttls smtp`: TLS 1.2 and TLS 1.3 handshakes succeed (the
/// certificate verified for mx.test); a TLS 1.1 or 1.0 ClientHello (with OpenSSL's
/// security level lowered so that it really offers them) is answered with an alert.
pub fn openssl_tls_versions(bin: &str) {
    let d = Daemon::start(bin, |_| {});
    let s_client = |version: &str| {
        let out = run(
            Command::new("openssl")
                .args(["s_client", "-starttls", "smtp", "-crlf", "-ign_eof"])
                .args(["-connect", &d.smtp.to_string(), version])
                .args(["-CAfile", &ca(), "-verify_hostname", "mx.test"])
                .args(["-verify_return_error", "-cipher", "DEFAULT:@SECLEVEL=0"]),
            b"EHLO client.example\nQUIT\n",
            RUN_LIMIT,
        );
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    for (flag, name) in [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")] {
        let (ok, text) = s_client(flag);
        assert!(ok, "{flag}: {text}");
        assert!(text.contains(&format!("New, {name}, Cipher is ")), "{text}");
        assert!(text.contains("Verify return code: 0 (ok)"), "{text}");
        // The session goes on over TLS: EHLO again, then QUIT.
        assert!(text.contains("250-mx.test Hello client.example"), "{text}");
        assert!(text.contains("221 2.0.0 Bye"), "{text}");
    }
    for old in ["-tls1_1", "-tls1"] {
        let (ok, text) = s_client(old);
        assert!(!ok, "{old} was accepted: {text}");
        // The server answered the ClientHello with an alert (the client did offer it).
        assert!(text.contains("SSL alert number"), "{old}: {text}");
        assert!(text.contains("Cipher is (NONE)"), "{old}: {text}");
    }
    // The server lives on.
    let (ok, text) = s_client("-tls1_3");
    assert!(ok, "{text}");
}
