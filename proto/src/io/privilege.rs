//! Dropping root after the listeners are bound and the key files read (`SGID`, `GUID`),
//! with what the server needs made beforehand and handed to the unprivileged user.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

use nix::unistd::{Gid, Group, Uid, User, setgid, setgroups, setuid};

use crate::config::{Config, ConfigError, Storage};

fn fail(key: &str, message: String) -> ConfigError {
    ConfigError {
        key: key.into(),
        message,
    }
}

/// The user and group to switch to, resolved from `SGID` and `GUID` (numbers or names).
#[derive(Debug)]
pub(crate) struct Target {
    user: Option<Account>,
    group: Option<Gid>,
}

impl Target {
    /// Resolves `SGID` and `GUID`. Without `SGID`, the user's own group is taken when
    /// starting as root.
    pub(crate) fn resolve(cfg: &Config) -> Result<Self, ConfigError> {
        let user = cfg.user.as_deref().map(resolve_user).transpose()?;
        let group = match (cfg.group.as_deref(), &user) {
            (Some(g), _) => Some(resolve_group(g)?),
            (None, Some(u)) if Uid::effective().is_root() => Some(u.gid),
            _ => None,
        };
        Ok(Self { user, group })
    }

    /// Whether privileges will be dropped: running as root with a user to switch to.
    pub(crate) fn drops_root(&self) -> bool {
        Uid::effective().is_root() && self.user.as_ref().is_some_and(|u| !u.uid.is_root())
    }

    /// Before the drop, makes what the server needs and hands it to the target user:
    /// the Maildir root (with any missing parent made here), and the log and PID files.
    /// What exists already stays as it is, but for the log and PID files, which are the
    /// server's own.
    pub(crate) fn prepare(&self, cfg: &Config) -> Result<(), ConfigError> {
        if !self.drops_root() {
            return Ok(());
        }
        let (uid, gid) = (self.user.as_ref().map(|u| u.uid), self.group);
        if cfg.storage == Storage::Maildir {
            create_owned(&cfg.maildir, cfg.maildir_folder_mode(), uid, gid).map_err(|e| {
                fail(
                    "GSMTP_MAILDIR",
                    format!("cannot create {}: {e}", cfg.maildir.display()),
                )
            })?;
        }
        let log = Path::new(&cfg.log_file);
        if super::log::is_file(&cfg.log_file) {
            chown(log, uid, gid).map_err(|e| {
                fail(
                    "GSMTP_LOG_FILE",
                    format!("cannot hand {} over: {e}", log.display()),
                )
            })?;
        }
        if let Some(pid) = &cfg.pid_file {
            chown(pid, uid, gid).map_err(|e| {
                fail(
                    "PID_FILE",
                    format!("cannot hand {} over: {e}", pid.display()),
                )
            })?;
        }
        Ok(())
    }

    /// Switches to the group, then the user (supplementary groups first), and checks that
    /// root cannot be regained. Without `SGID`/`GUID`, or when already running as them,
    /// it does nothing. Any failure stops startup.
    pub(crate) fn switch(&self) -> Result<(), ConfigError> {
        if let Some(gid) = self.group {
            if Uid::effective().is_root() {
                setgroups(&[gid])
                    .map_err(|e| fail("SGID", format!("cannot set supplementary groups: {e}")))?;
            }
            if Gid::current() != gid || Gid::effective() != gid {
                setgid(gid)
                    .map_err(|e| fail("SGID", format!("cannot switch to group {gid}: {e}")))?;
            }
        }
        if let Some(u) = &self.user {
            if Uid::current() != u.uid || Uid::effective() != u.uid {
                setuid(u.uid)
                    .map_err(|e| fail("GUID", format!("cannot switch to user {}: {e}", u.uid)))?;
            }
            if !u.uid.is_root() && setuid(Uid::from_raw(0)).is_ok() {
                return Err(fail(
                    "GUID",
                    "root could be regained after dropping privileges".into(),
                ));
            }
            tracing::info!(uid = %u.uid, gid = %Gid::effective(), "dropped privileges");
        }
        Ok(())
    }
}

/// Makes `path` and any missing parent (`mode` for the last, whatever the umask; 0755
/// above it), giving each one it made to `uid`/`gid`.
fn create_owned(path: &Path, mode: u32, uid: Option<Uid>, gid: Option<Gid>) -> std::io::Result<()> {
    let mut missing = Vec::new();
    let mut at = Some(path);
    while let Some(p) = at.filter(|p| !p.as_os_str().is_empty() && !p.exists()) {
        missing.push(p);
        at = p.parent();
    }
    for (i, dir) in missing.iter().rev().enumerate() {
        let last = i + 1 == missing.len();
        std::fs::DirBuilder::new()
            .mode(if last { mode } else { 0o755 })
            .create(dir)?;
        if last {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))?;
        }
        chown(dir, uid, gid)?;
    }
    Ok(())
}

fn chown(path: &Path, uid: Option<Uid>, gid: Option<Gid>) -> std::io::Result<()> {
    nix::unistd::chown(path, uid, gid).map_err(std::io::Error::from)
}

/// The user's id and primary group.
#[derive(Debug)]
struct Account {
    uid: Uid,
    gid: Gid,
}

fn resolve_user(spec: &str) -> Result<Account, ConfigError> {
    let found = match spec.parse::<u32>() {
        Ok(n) => User::from_uid(Uid::from_raw(n))
            .map(|u| u.map(|u| (u.uid, u.gid)))
            .map(|u| {
                // A numeric id needs no passwd entry; its group is then its own number.
                Some(u.unwrap_or_else(|| (Uid::from_raw(n), Gid::from_raw(n))))
            }),
        Err(_) => User::from_name(spec).map(|u| u.map(|u| (u.uid, u.gid))),
    };
    match found {
        Ok(Some((uid, gid))) => Ok(Account { uid, gid }),
        Ok(None) => Err(fail("GUID", format!("no such user {spec:?}"))),
        Err(e) => Err(fail("GUID", format!("cannot look up user {spec:?}: {e}"))),
    }
}

fn resolve_group(spec: &str) -> Result<Gid, ConfigError> {
    if let Ok(n) = spec.parse::<u32>() {
        return Ok(Gid::from_raw(n));
    }
    match Group::from_name(spec) {
        Ok(Some(g)) => Ok(g.gid),
        Ok(None) => Err(fail("SGID", format!("no such group {spec:?}"))),
        Err(e) => Err(fail("SGID", format!("cannot look up group {spec:?}: {e}"))),
    }
}

/// After the drop, the server may not be allowed to remove its PID file (`/run` belongs
/// to root). So a small helper, started while still root, waits for the server's end (its
/// standard input, a pipe from the server, closes when the server exits, whatever the
/// way) and then removes the file, if it still names the server. It ignores the signals
/// that stop the server (a terminal's Ctrl-C, systemd's SIGTERM to the whole group).
pub(crate) fn keep_pid_file(path: &Path) -> Result<std::process::ChildStdin, ConfigError> {
    const SCRIPT: &str = "trap '' HUP INT TERM; read -r _; [ \"$(cat -- \"$1\" 2>/dev/null)\" = \"$2\" ] && rm -f -- \"$1\"";
    let child = std::process::Command::new("/bin/sh")
        .args(["-c", SCRIPT, "guerrilla-pid-file"])
        .arg(path)
        .arg(std::process::id().to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    child
        .ok()
        .and_then(|mut c| c.stdin.take())
        .ok_or_else(|| ConfigError {
            key: "PID_FILE".into(),
            message: "cannot start the helper that removes it at exit".into(),
        })
}
