//! A server on an ephemeral loopback port with its own Maildir, and ways to look at what
//! it stored.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use proto::Config;
use proto::policy::AllowedHosts;

use crate::{Client, Running, Start};

/// A directory removed when dropped.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// A new empty directory under the system's temporary directory.
    pub fn new(tag: &str) -> Self {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("gsmtpd-{tag}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("cannot create a temporary directory");
        Self(path)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The directory of the test certificates (`ca.pem`, `cert.pem`, `key.pem`).
pub fn cert_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("certs")
}

/// The configuration every case starts from: host `mx.test` on `127.0.0.1:0`, mail
/// accepted for `example.com` and `*.example.org`, STARTTLS with the test certificate,
/// and the Maildir at `maildir`.
pub fn test_config(maildir: &Path) -> Config {
    let mut cfg = Config::default();
    cfg.host_name = "mx.test".into();
    cfg.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    cfg.maildir = maildir.to_path_buf();
    cfg.allowed_hosts = AllowedHosts::parse("example.com,*.example.org").expect("valid");
    cfg.tls_cert = Some(cert_dir().join("cert.pem"));
    cfg.tls_key = Some(cert_dir().join("key.pem"));
    cfg.timeout = Duration::from_secs(10);
    cfg.shutdown_grace = Duration::from_secs(2);
    cfg
}

/// A running server and its Maildir. Shut down (briefly) when dropped.
pub struct Fixture {
    /// The server.
    pub server: Box<dyn Running>,
    /// The configuration it runs with.
    pub cfg: Config,
    dir: TempDir,
}

impl std::fmt::Debug for Fixture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fixture")
            .field("smtp", &self.server.smtp())
            .field("dir", &self.dir)
            .finish()
    }
}

impl Fixture {
    /// Starts a server with [`test_config`] changed by `tweak`.
    pub fn start(start: Start, tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = TempDir::new("case");
        let mut cfg = test_config(&dir.path().join("maildir"));
        tweak(&mut cfg);
        let server = start(cfg.clone()).unwrap_or_else(|e| panic!("the server did not start: {e}"));
        Self { server, cfg, dir }
    }

    /// A new plain connection, greeting not yet read.
    pub fn connect(&self) -> Client {
        Client::connect(self.server.smtp())
    }

    /// A new connection with its greeting read and EHLO done.
    pub fn session(&self) -> Client {
        let mut c = self.connect();
        let greeting = c.reply();
        assert_eq!(greeting.code, 220, "{greeting:?}");
        c.ehlo("client.example");
        c
    }

    /// A new connection to the implicit-TLS listener, handshake done, greeting not read.
    pub fn connect_tls(&self) -> Client {
        Client::connect_tls(
            self.server
                .tls()
                .expect("no implicit-TLS listener configured"),
        )
    }

    /// The Maildir root.
    pub fn maildir(&self) -> &Path {
        &self.cfg.maildir
    }

    /// The files in `<root>/<folder>/<sub>`, sorted by name (`sub` is tmp, new or cur).
    pub fn files(&self, folder: &str, sub: &str) -> Vec<PathBuf> {
        folder_files(self.maildir(), folder, sub)
    }

    /// The messages in `<folder>/new`, in the order they were stored.
    pub fn stored(&self, folder: &str) -> Vec<Vec<u8>> {
        let mut files: Vec<(std::time::SystemTime, PathBuf)> = self
            .files(folder, "new")
            .into_iter()
            .map(|p| {
                (
                    fs::metadata(&p)
                        .and_then(|m| m.modified())
                        .unwrap_or(std::time::UNIX_EPOCH),
                    p,
                )
            })
            .collect();
        files.sort();
        files
            .into_iter()
            .map(|(_, p)| fs::read(p).expect("cannot read a stored file"))
            .collect()
    }

    /// Every regular file under the Maildir root, relative to it, sorted.
    pub fn all_files(&self) -> Vec<String> {
        fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
            for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
                let p = entry.path();
                if p.is_dir() {
                    walk(&p, root, out);
                } else {
                    out.push(
                        p.strip_prefix(root)
                            .unwrap_or(&p)
                            .to_string_lossy()
                            .into_owned(),
                    );
                }
            }
        }
        let mut out = Vec::new();
        walk(self.maildir(), self.maildir(), &mut out);
        out.sort();
        out
    }

    /// Files in any `tmp/` under the root.
    pub fn tmp_files(&self) -> Vec<String> {
        self.all_files()
            .into_iter()
            .filter(|f| f.split('/').rev().nth(1) == Some("tmp"))
            .collect()
    }

    /// Waits (up to five seconds) until the server has no open session.
    pub fn wait_idle(&self) {
        let end = Instant::now() + Duration::from_secs(5);
        while self.server.active() > 0 && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The directory holding the Maildir and anything else the case needs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.server.shutdown(Duration::from_millis(200));
    }
}

/// The files in `<root>/<folder>/<sub>` of a Maildir, sorted by name; none if it is not
/// there.
pub fn folder_files(root: &Path, folder: &str, sub: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(root.join(folder).join(sub))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    files
}

/// Splits a stored message into its three trace headers and the body after them.
pub fn split_trace(message: &[u8]) -> (String, Vec<u8>) {
    let text = String::from_utf8_lossy(message);
    let mut end = 0;
    let mut lines = 0;
    // Return-Path, X-Original-To when the address was rewritten, Delivered-To, then
    // Received with its continuation lines.
    let headers = if text.contains("\r\nX-Original-To: ") {
        4
    } else {
        3
    };
    for line in text.split_inclusive("\r\n") {
        let continuation = line.starts_with('\t') || line.starts_with(' ');
        if lines >= headers && !continuation {
            break;
        }
        if !continuation {
            lines += 1;
        }
        end += line.len();
    }
    (text[..end].to_string(), message[end..].to_vec())
}
