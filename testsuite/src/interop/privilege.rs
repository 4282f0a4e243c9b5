//! Dropping root: `SGID` and `GUID` applied after binding and reading the key files.

use std::fs::{self, Permissions};
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use nix::unistd::Uid;

use super::daemon::{Daemon, Trace, check_stored, queued_id, wait_for_line};
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
    // Only root may write the folder: the Maildir root is made before the drop.
    fs::set_permissions(dir.path(), Permissions::from_mode(0o755)).expect("chmod");
    let key = dir.path().join("key.pem");
    fs::copy(cert_dir().join("key.pem"), &key).expect("copy the key");
    fs::set_permissions(&key, Permissions::from_mode(0o600)).expect("chmod");
    let d = Daemon::start_in(bin, dir, |s| {
        s.set("SGID", "65534")
            .set("GUID", "65534")
            .set("GSMTP_PRV_KEY", &key.display().to_string());
    });
    // The listener accepts (into the kernel's backlog) as soon as it is bound, which is
    // before the drop: wait for the drop's log line before reading the ids.
    d.wait_log(&["dropped privileges", "uid=65534", "gid=65534"]);
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

/// The seed README's annotated configuration (MySQL keys, `SGID` 508 and `GUID` 504,
/// ids with no passwd entry), with only its listen address and key files made local,
/// started as root in a folder that only root may write: it runs. The Maildir root
/// (`./maildir`, a key the file never sets), the log file and the PID file are made
/// before the drop and belong to 504:508; mail is stored. SIGHUP after a rotation: with
/// the log's folder not writable by 504, the old file is kept and says so once, and no
/// false "log file reopened" is written; with a folder 504 may write, a fresh file is
/// opened. The PID file is removed at exit, although 504 may not remove it. Skipped
/// unless the tests run as root.
pub fn sample_config_starts_as_shipped(bin: &str) {
    if !Uid::effective().is_root() {
        eprintln!("skipped sample_config_starts_as_shipped: the tests do not run as root");
        return;
    }
    for log_dir_writable in [false, true] {
        let dir = TempDir::new("shipped");
        fs::set_permissions(dir.path(), Permissions::from_mode(0o755)).expect("chmod");
        let logs = dir.path().join("logs");
        fs::create_dir(&logs).expect("make the log folder");
        if log_dir_writable {
            nix::unistd::chown(&logs, Some(504.into()), Some(508.into())).expect("chown");
        }
        let log = logs.join("guerrilla.log");
        let pid = dir.path().join("guerrilla.pid");
        let (log_s, pid_s) = (log.display().to_string(), pid.display().to_string());
        let mut d = Daemon::start_in(bin, dir, |s| {
            s.remove("GSMTP_MAILDIR")
                .set("GM_MAIL_TABLE", "new_mail")
                .set("GM_PRIMARY_MAIL_HOST", "mail.example.com")
                .set("GSMTP_LOG_FILE", &log_s)
                .set("GSMTP_VERBOSE", "N")
                .set("MYSQL_DB", "gmail_mail")
                .set("MYSQL_HOST", "127.0.0.1:3306")
                .set("MYSQL_PASS", "$ecure1t")
                .set("MYSQL_USER", "gmail_mail")
                .set("GM_MAX_CLIENTS", "500")
                .set("NGINX_AUTH_ENABLED", "N")
                .set("NGINX_AUTH", "127.0.0.1:8025")
                .set("SGID", "508")
                .set("GUID", "504")
                .set("PID_FILE", &pid_s);
        });
        wait_for_line(&log, &["dropped privileges", "uid=504", "gid=508"]);
        let owner = |p: &std::path::Path| {
            let m = fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (m.uid(), m.gid())
        };
        for path in [d.maildir(), log.clone(), pid.clone()] {
            assert_eq!(owner(&path), (504, 508), "{}", path.display());
        }
        let mut c = Client::connect(d.smtp);
        assert_eq!(c.reply().code, 220);
        c.ehlo("client.example");
        let msg = message("shipped");
        let r = c.send_mail("a@example.net", &["u@example.com"], &msg);
        assert_eq!(r.code, 250, "{r:?}");
        assert_eq!(c.cmd("QUIT").code, 221);
        let files = d.files("mail.example.com/u", "new");
        assert_eq!(files.len(), 1, "{:?}", d.all_files());
        assert_eq!(owner(&files[0]), (504, 508));

        // logrotate: move the file away, then SIGHUP.
        let rotated = logs.join("guerrilla.log.1");
        fs::rename(&log, &rotated).expect("rotate");
        d.process().signal(nix::sys::signal::Signal::SIGHUP);
        if log_dir_writable {
            wait_for_line(&log, &["log file reopened"]);
            assert_eq!(owner(&log), (504, 508));
        } else {
            let line = wait_for_line(&rotated, &["cannot reopen the log file"]);
            assert!(
                line.contains("WARN") && line.contains("Permission denied"),
                "{line}"
            );
            assert!(!log.exists(), "no new file where 504 may not write");
        }
        let old = fs::read_to_string(&rotated).expect("read the old log");
        assert_eq!(
            old.matches("cannot reopen").count(),
            usize::from(!log_dir_writable),
            "{old}"
        );
        assert!(
            !old.contains("log file reopened"),
            "a false reopened line:\n{old}"
        );

        assert!(pid.exists());
        assert_eq!(d.stop().code(), Some(0));
        let gone = super::daemon::wait_until(std::time::Duration::from_secs(5), || !pid.exists());
        assert!(gone, "the PID file is removed at exit");
    }
}
