//! Dropping root: `SGID` and `GUID` applied after binding and reading the key files.

use std::fs::{self, Permissions};
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use nix::unistd::Uid;

use super::daemon::{Daemon, Trace, check_stored, queued_id};
use super::message;
use crate::{Client, TempDir, cert_dir};

/// nobody / nogroup.
const NOBODY: u32 = 65534;

/// Started as root with `SGID` and `GUID` 65534, every thread of the process runs as
/// 65534 (real, effective, saved and file-system ids; supplementary groups just 65534);
/// the private key, readable only by root, was read before the drop (STARTTLS works);
/// and a stored message, its file and its folders belong to 65534. Skipped unless the
/// tests run as root.
pub fn privilege_drop(bin: &str) {
    if !Uid::effective().is_root() {
        eprintln!("skipped privilege_drop: the tests do not run as root");
        return;
    }
    let dir = TempDir::new("privilege");
    // The Maildir is created after the drop, so its parent must be writable by nobody.
    fs::set_permissions(dir.path(), Permissions::from_mode(0o777)).expect("chmod");
    let key = dir.path().join("key.pem");
    fs::copy(cert_dir().join("key.pem"), &key).expect("copy the key");
    fs::set_permissions(&key, Permissions::from_mode(0o600)).expect("chmod");
    let d = Daemon::start_in(bin, dir, |s| {
        s.set("SGID", "65534")
            .set("GUID", "65534")
            .set("GSMTP_PRV_KEY", &key.display().to_string());
    });
    let ids = format!("\t{NOBODY}\t{NOBODY}\t{NOBODY}\t{NOBODY}");
    let tasks: Vec<_> = fs::read_dir(format!("/proc/{}/task", d.pid()))
        .expect("read /proc/<pid>/task")
        .flatten()
        .collect();
    assert!(!tasks.is_empty());
    for task in tasks {
        let status = fs::read_to_string(task.path().join("status")).expect("read status");
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .unwrap_or_else(|| panic!("no {name} in {status}"))
                .trim_end()
                .to_string()
        };
        assert_eq!(field("Uid:"), ids, "{:?}: {status}", task.path());
        assert_eq!(field("Gid:"), ids, "{:?}: {status}", task.path());
        assert_eq!(field("Groups:").trim(), NOBODY.to_string(), "{status}");
    }
    d.wait_log(&["dropped privileges", "uid=65534", "gid=65534"]);

    let mut c = Client::connect(d.smtp);
    assert_eq!(c.reply().code, 220);
    c.ehlo("client.example");
    assert_eq!(c.cmd("STARTTLS").code, 220);
    c.upgrade()
        .expect("the TLS handshake, with the key read as root");
    c.ehlo("client.example");
    let msg = message("privilege");
    let r = c.send_mail("a@example.net", &["u@example.com"], &msg);
    assert_eq!(r.code, 250, "{r:?}");
    let id = queued_id(&r.wire());
    assert_eq!(c.cmd("QUIT").code, 221);

    let files = d.files("example.com/u", "new");
    assert_eq!(files.len(), 1);
    for path in [
        files[0].clone(),
        d.maildir().join("example.com/u/new"),
        d.maildir().join("example.com/u"),
        d.maildir(),
    ] {
        let meta = fs::metadata(&path).expect("stat");
        assert_eq!(
            (meta.uid(), meta.gid()),
            (NOBODY, NOBODY),
            "{}",
            path.display()
        );
    }
    let trace = Trace {
        rcpt: "u@example.com",
        helo: "client.example",
        ip: "127.0.0.1",
        with: "ESMTPS",
        id: Some(&id),
    };
    check_stored(&fs::read(&files[0]).expect("read"), &trace, &msg);
}
