//! A private Dovecot (Debian's `dovecot-imapd` and `dovecot-lmtpd`) on loopback ports,
//! with its own configuration and users, started and stopped by the tests; and a way to
//! fetch a user's messages over IMAP (Python's `imaplib`).

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::daemon::{Proc, free_addr, run, wait_until};
use crate::TempDir;

/// The password of every test user.
pub const PASSWORD: &str = "secret";

/// A running Dovecot: IMAP and LMTP on loopback, mail in `mail_location`.
#[derive(Debug)]
pub struct Dovecot {
    proc: Option<Proc>,
    /// The IMAP listener.
    pub imap: SocketAddr,
    /// The LMTP listener.
    pub lmtp: SocketAddr,
    /// Its configuration file (for `dovecot-lda -c`).
    pub config: PathBuf,
    dir: PathBuf,
}

impl Dovecot {
    /// Starts Dovecot for `users` (full addresses), their mail under `mail_location`
    /// (Dovecot's syntax; `%d` is the domain, `%n` the user part), or by default in
    /// its own `mail/<domain>/<user>` Maildirs; all of it owned by `owner` (uid, gid).
    pub fn start(
        dir: &TempDir,
        users: &[&str],
        mail_location: Option<&str>,
        owner: (u32, u32),
    ) -> Self {
        let root = dir.path().join("dovecot");
        fs::create_dir_all(root.join("run")).expect("make run/");
        for owned in ["home", "mail"] {
            fs::create_dir_all(root.join(owned)).expect("make a folder");
            nix::unistd::chown(
                &root.join(owned),
                Some(owner.0.into()),
                Some(owner.1.into()),
            )
            .expect("chown");
        }
        let default_location = format!("maildir:{}/mail/%d/%n", root.display());
        let mail_location = mail_location.unwrap_or(&default_location);
        let users_file = root.join("users");
        let lines: String = users
            .iter()
            .map(|u| format!("{u}:{{PLAIN}}{PASSWORD}::::::\n"))
            .collect();
        fs::write(&users_file, lines).expect("write users");
        let (imap, lmtp) = (free_addr(), free_addr());
        let config = root.join("dovecot.conf");
        let text = format!(
            r#"
base_dir = {run}
state_dir = {root}/state
log_path = {root}/dovecot.log
info_log_path = {root}/dovecot.log
protocols = imap lmtp
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
first_valid_uid = 1
mail_location = {mail_location}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {users}
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {users}
  default_fields = uid={uid} gid={gid} home={root}/home/%d/%n
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp_port}
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = 0
  }}
}}
"#,
            run = root.join("run").display(),
            root = root.display(),
            users = users_file.display(),
            uid = owner.0,
            gid = owner.1,
            imap_port = imap.port(),
            lmtp_port = lmtp.port(),
        );
        fs::write(&config, text).expect("write dovecot.conf");
        let mut d = Self {
            proc: None,
            imap,
            lmtp,
            config,
            dir: root,
        };
        d.restart();
        d
    }

    /// Starts it again after [`Dovecot::stop`] (or the first time).
    pub fn restart(&mut self) {
        let mut cmd = Command::new("dovecot");
        cmd.arg("-F").arg("-c").arg(&self.config);
        let mut p = Proc::spawn("dovecot", &mut cmd, &self.dir.join("dovecot.out"));
        p.add_log(&self.dir.join("dovecot.log"));
        p.wait_listening(self.imap);
        p.wait_listening(self.lmtp);
        self.proc = Some(p);
    }

    /// Stops it (SIGTERM, then waits).
    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.stop();
        }
        let lmtp = self.lmtp;
        wait_until(Duration::from_secs(5), || {
            std::net::TcpStream::connect_timeout(&lmtp, Duration::from_millis(200)).is_err()
        });
    }

    /// The unix socket of its LMTP service.
    pub fn lmtp_socket(&self) -> PathBuf {
        self.dir.join("run").join("lmtp")
    }

    /// Every message in `user`'s INBOX, fetched over IMAP, in order.
    pub fn fetch(&self, user: &str) -> Vec<Vec<u8>> {
        fetch_imap(self.imap, user)
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("dovecot.log")).unwrap_or_default()
    }

    /// Its folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Lists and fetches a mailbox with Python's imaplib; each message is written as an
/// 8-octet length and its octets.
const FETCH: &str = r#"
import imaplib, sys
m = imaplib.IMAP4("127.0.0.1", int(sys.argv[1]))
m.login(sys.argv[2], sys.argv[3])
m.select("INBOX", readonly=True)
typ, data = m.search(None, "ALL")
for num in data[0].split():
    typ, msg = m.fetch(num, "(BODY.PEEK[])")
    body = msg[0][1]
    sys.stdout.buffer.write(len(body).to_bytes(8, "big") + body)
m.logout()
"#;

/// Every message of `user`'s INBOX on the IMAP server at `addr`.
pub fn fetch_imap(addr: SocketAddr, user: &str) -> Vec<Vec<u8>> {
    let out = run(
        Command::new("python3").args(["-c", FETCH, &addr.port().to_string(), user, PASSWORD]),
        b"",
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "IMAP fetch for {user} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut messages = Vec::new();
    let mut rest = out.stdout.as_slice();
    while rest.len() >= 8 {
        let (len, tail) = rest.split_at(8);
        let len = u64::from_be_bytes(len.try_into().expect("8 octets")) as usize;
        messages.push(tail[..len].to_vec());
        rest = &tail[len..];
    }
    messages
}
