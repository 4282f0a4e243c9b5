//! Faults an operator meets: one client flooding the server, and a full disk. These need
//! no outside program; the full-disk test needs root (to mount a small file system) and
//! is skipped, saying so, without it.

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::unistd::Uid;

use super::daemon::{Daemon, run};
use crate::{Client, TempDir, folder_files};

fn ip(s: &str) -> IpAddr {
    s.parse().expect("an address")
}

/// Reads one reply from a fresh connection: its code and text.
fn greeting(c: &mut Client) -> (u16, String) {
    let r = c.reply();
    (r.code, r.text().to_string())
}

/// `GM_MAX_CLIENTS_PER_IP` (default 50): one address holding 600 connections against a
/// global limit of 500 gets 50 sessions and `421 4.7.0` for the rest, and another address
/// still completes every transaction, quickly; closing the flood's sessions gives its
/// slots back.
pub fn per_client_limit_stops_a_flood(bin: &str) {
    let d = Daemon::start(bin, |s| {
        s.set("GM_MAX_CLIENTS", "500");
    });
    let flooder = ip("127.0.0.1");
    let mut held = Vec::new();
    let (mut served, mut refused) = (0, 0);
    for _ in 0..600 {
        let mut c = Client::connect_from(flooder, d.smtp);
        let (code, text) = greeting(&mut c);
        match code {
            220 => {
                served += 1;
                held.push(c);
            }
            421 => {
                assert!(
                    text.starts_with("4.7.0 mx.test Error: too many connections from your address"),
                    "{text}"
                );
                assert!(c.is_closed(), "closed after its 421");
                refused += 1;
            }
            other => panic!("unexpected {other} {text}"),
        }
    }
    assert_eq!((served, refused), (50, 550));
    let started = Instant::now();
    for i in 0..20 {
        let mut c = Client::connect_from(ip("127.0.0.2"), d.smtp);
        assert_eq!(c.reply().code, 220, "session {i} from another address");
        c.ehlo("other.example");
        let r = c.send_mail("a@example.net", &["u@example.com"], b"still served\r\n");
        assert_eq!(r.code, 250, "{r:?}");
        assert_eq!(c.cmd("QUIT").code, 221);
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(d.stored("example.com/u").len(), 20);
    d.wait_log(&[
        "connection refused",
        "client=127.0.0.1",
        "reason=client-limit",
    ]);
    // Closing the flood's sessions gives its slots back.
    drop(held);
    let ok = super::daemon::wait_until(Duration::from_secs(5), || {
        let mut c = Client::connect_from(flooder, d.smtp);
        c.reply().code == 220
    });
    assert!(ok, "the address is served again once its sessions closed");
}

/// An instance trusting the proxy at 127.0.0.3 with XCLIENT, and a limit of 2 sessions
/// per client.
fn behind_xclient_proxy(bin: &str) -> Daemon {
    Daemon::start(bin, |s| {
        s.set("GM_MAX_CLIENTS_PER_IP", "2")
            .set("GSMTP_XCLIENT_HOSTS", "127.0.0.3");
    })
}

/// Behind a trusted proxy (127.0.0.3), with a limit of 2: the clients it names by
/// XCLIENT are counted, IPv6 by /64; the proxy itself is not counted (three more
/// sessions of its own, without XCLIENT, are not limited).
pub fn per_client_limit_counts_xclient_clients(bin: &str) {
    let proxied = behind_xclient_proxy(bin);
    let proxy = ip("127.0.0.3");
    let mut sessions = Vec::new();
    for (addr, expected) in [
        ("IPV6:2001:db8::1", 220),
        ("IPV6:2001:db8::2", 220),
        ("IPV6:2001:db8::3", 421),
        ("IPV6:2001:db8:0:1::1", 220),
        ("192.0.2.7", 220),
    ] {
        let mut c = Client::connect_from(proxy, proxied.smtp);
        assert_eq!(c.reply().code, 220);
        c.ehlo("proxy.example");
        let r = c.cmd(&format!("XCLIENT ADDR={addr}"));
        assert_eq!(r.code, expected, "{addr}: {r:?}");
        if expected == 421 {
            assert!(r.text().starts_with("4.7.0 "), "{r:?}");
            assert!(c.is_closed());
        }
        sessions.push(c);
    }
    // Three more sessions of the proxy's own, without XCLIENT: not limited.
    for _ in 0..3 {
        let mut c = Client::connect_from(proxy, proxied.smtp);
        assert_eq!(c.reply().code, 220);
        sessions.push(c);
    }
}

/// At its limit (2), a client that reconnects as soon as it reads 221 is served: the
/// slot is given back before the last reply is sent.
pub fn per_client_limit_frees_the_slot_before_221(bin: &str) {
    let proxied = behind_xclient_proxy(bin);
    let steady = ip("127.0.0.4");
    let mut first = Client::connect_from(steady, proxied.smtp);
    assert_eq!(first.reply().code, 220);
    for i in 0..30 {
        let mut c = Client::connect_from(steady, proxied.smtp);
        assert_eq!(c.reply().code, 220, "reconnection {i}");
        assert_eq!(c.cmd("QUIT").code, 221);
    }
    assert_eq!(first.cmd("NOOP").code, 250);
}

/// With PROXY headers (from a trusted address, a limit of 2): the header's source counts.
pub fn per_client_limit_counts_proxy_header_clients(bin: &str) {
    let haproxy = Daemon::start(bin, |s| {
        s.set("GM_MAX_CLIENTS_PER_IP", "2")
            .set("GSMTP_PROXY_PROTOCOL", "Y")
            .set("GSMTP_XCLIENT_HOSTS", "127.0.0.1");
    });
    let mut held = Vec::new();
    for (i, expected) in [220, 220, 421].into_iter().enumerate() {
        let mut c = Client::connect(haproxy.smtp);
        c.send(format!("PROXY TCP4 198.51.100.9 192.0.2.1 {} 25\r\n", 4000 + i).as_bytes());
        assert_eq!(c.reply().code, expected, "PROXY session {i}");
        held.push(c);
    }
}

/// A small file system mounted for a test, unmounted when dropped.
struct Mount {
    at: PathBuf,
}

impl Mount {
    /// A tmpfs of `size` (`1m`) at `at`.
    fn tmpfs(at: &Path, size: &str) -> Option<Self> {
        fs::create_dir_all(at).expect("make the mount point");
        let opts = format!("size={size},mode=0755");
        let out = run(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o", &opts, "tmpfs"])
                .arg(at),
            b"",
            Duration::from_secs(10),
        );
        if !out.status.success() {
            eprintln!(
                "cannot mount a tmpfs: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            return None;
        }
        Some(Self {
            at: at.to_path_buf(),
        })
    }

    /// An ext4 file system of `mib` MiB in an image file, loop-mounted at `at`.
    fn ext4(image: &Path, at: &Path, mib: u32) -> Option<Self> {
        fs::create_dir_all(at).expect("make the mount point");
        let file = fs::File::create(image).expect("create the image");
        file.set_len(u64::from(mib) << 20).expect("size the image");
        drop(file);
        let mut mkfs = Command::new("mkfs.ext4");
        mkfs.args(["-q", "-F", "-m", "0"]).arg(image);
        let mut mount = Command::new("mount");
        mount.args(["-o", "loop"]).arg(image).arg(at);
        for cmd in [&mut mkfs, &mut mount] {
            let out = run(cmd, b"", Duration::from_secs(30));
            if !out.status.success() {
                eprintln!(
                    "cannot make or mount ext4 ({cmd:?}): {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                return None;
            }
        }
        Some(Self {
            at: at.to_path_buf(),
        })
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.at).status();
    }
}

/// A full disk, on a real small file system (here a 1 MiB tmpfs): a declared SIZE
/// larger than the free space is refused at MAIL with `452 4.3.1`; mail is accepted until
/// the disk fills, then every message, large (streamed to `tmp/`) or small (held in
/// memory), gets `452 4.3.1 Insufficient system storage` and leaves nothing in `tmp/`;
/// the session goes on; once files are removed, mail is accepted again without a
/// restart. Needs root; skipped otherwise.
pub fn full_tmpfs_is_452_and_recovers(bin: &str) {
    if !can_mount("full_tmpfs_is_452_and_recovers") {
        return;
    }
    let dir = TempDir::new("fulldisk");
    if let Some(m) = Mount::tmpfs(&dir.path().join("tmpfs"), "1m") {
        fill_and_recover(bin, &m.at, 1 << 20);
    }
}

/// The same on a 6 MiB ext4 image, loop-mounted. Needs root, a loop device and
/// `mkfs.ext4`; skipped otherwise.
pub fn full_ext4_is_452_and_recovers(bin: &str) {
    if !can_mount("full_ext4_is_452_and_recovers") {
        return;
    }
    let dir = TempDir::new("fulldisk");
    match Mount::ext4(&dir.path().join("ext4.img"), &dir.path().join("ext4"), 6) {
        Some(m) => fill_and_recover(bin, &m.at, 6 << 20),
        None => {
            eprintln!("skipped full_ext4_is_452_and_recovers: no loop device or mkfs.ext4 here")
        }
    }
}

/// Whether this process may mount a small file system (it runs as root); says so if not.
fn can_mount(test: &str) -> bool {
    let root = Uid::effective().is_root();
    if !root {
        eprintln!("skipped {test}: mounting a small file system needs root");
    }
    root
}

fn fill_and_recover(bin: &str, fs_root: &Path, fs_size: u64) {
    let maildir = fs_root.join("maildir");
    let setting = maildir.display().to_string();
    let d = Daemon::start(bin, |s| {
        s.set("GSMTP_MAILDIR", &setting);
    });
    let tmp_files = || {
        let mut all = folder_files(&maildir, "example.com/u", "tmp");
        all.extend(folder_files(&maildir, "example.com/v", "tmp"));
        all
    };
    let mut c = Client::connect(d.smtp);
    assert_eq!(c.reply().code, 220);
    c.ehlo("client.example");
    let r = c.cmd(&format!("MAIL FROM:<a@example.net> SIZE={}", fs_size + 1));
    assert_eq!(r.wire(), "452 4.3.1 Insufficient system storage\r\n");

    // Large messages (past the in-memory spool) to two folders, until the disk is full.
    let big = b"0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz\r\n"
        .repeat((fs_size as usize / 6) / 74);
    let mut accepted = 0;
    let refusal = loop {
        let r = c.send_mail("a@example.net", &["u@example.com", "v@example.com"], &big);
        assert!(
            tmp_files().is_empty(),
            "left in tmp/ after {r:?}: {:?}",
            tmp_files()
        );
        if r.code != 250 {
            break r;
        }
        accepted += 1;
        assert!(accepted < 20, "the disk never filled");
    };
    assert!(accepted >= 1, "{refusal:?}");
    assert_eq!(refusal.wire(), "452 4.3.1 Insufficient system storage\r\n");
    // Small messages (held in memory, written at the end) too, once the rest is used up.
    let small = b"small message\r\n".repeat(2000);
    let mut refused_small = false;
    for _ in 0..200 {
        let r = c.send_mail("a@example.net", &["u@example.com"], &small);
        assert!(
            tmp_files().is_empty(),
            "left in tmp/ after {r:?}: {:?}",
            tmp_files()
        );
        if r.code != 250 {
            assert_eq!(r.wire(), "452 4.3.1 Insufficient system storage\r\n");
            refused_small = true;
            break;
        }
    }
    assert!(refused_small, "small messages were never refused");
    assert_eq!(c.cmd("NOOP").code, 250, "the session goes on");
    d.wait_log(&["refused", "code=452", "status=4.3.1"]);

    // Space again, without a restart.
    for folder in ["example.com/u", "example.com/v"] {
        for f in folder_files(&maildir, folder, "new") {
            fs::remove_file(f).expect("free some space");
        }
    }
    let r = c.send_mail("a@example.net", &["u@example.com", "v@example.com"], &big);
    assert_eq!(r.code, 250, "{r:?}");
    assert_eq!(folder_files(&maildir, "example.com/u", "new").len(), 1);
    assert!(tmp_files().is_empty());
}
