//! The Maildir's folders: made with the configured mode, opened to the group when a
//! narrower mode made them, and cleared of `tmp/` files that dead processes left.

use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use nix::errno::Errno;

use super::context;
use crate::deliver::maildir::parse_unique_name;

/// The files' mode unless `GSMTP_MAILDIR_MODE` says otherwise.
pub(super) const DEFAULT_MODE: u32 = 0o600;

/// A folder's mode for files of mode `file`: search where read is allowed (0600 gives
/// 0700, 0640 gives 0750, 0660 gives 0770).
pub(super) fn folder_mode(file: u32) -> u32 {
    file | ((file & 0o444) >> 2)
}

pub(super) fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| context(e, "cannot set the mode of", path))
}

/// Makes a mailbox folder (and its domain folder) with whichever of its `tmp`, `new`
/// and `cur` is missing. With a mode other than the default, what it made is given that
/// mode exactly (the umask aside).
pub(super) fn make_folder(folder: &Path, mode: u32) -> io::Result<()> {
    let dirs = folder_mode(mode);
    let mut b = DirBuilder::new();
    b.recursive(true).mode(dirs);
    let fresh: Vec<PathBuf> = [folder.parent(), Some(folder)]
        .into_iter()
        .flatten()
        .filter(|d| !d.exists())
        .map(Path::to_path_buf)
        .collect();
    for sub in ["tmp", "new", "cur"] {
        let dir = folder.join(sub);
        let new = !dir.exists();
        b.create(&dir)
            .map_err(|e| context(e, "cannot create", &dir))?;
        if new && mode != DEFAULT_MODE {
            set_mode(&dir, dirs)?;
        }
    }
    if mode != DEFAULT_MODE {
        fresh.iter().try_for_each(|d| set_mode(d, dirs))?;
    }
    Ok(())
}

/// Removes `tmp/` files left by processes that are gone (ours are named `...P<pid>Q...`),
/// and any `tmp/` file older than 36 hours, as the Maildir spec advises.
pub(super) fn clean_stale_tmp(root: &Path) {
    // Once per root and process: a reload opens the root again while this process still
    // writes into its `tmp/` folders (files that carry its own pid).
    static CLEANED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
    {
        let mut cleaned = CLEANED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if cleaned.iter().any(|r| r == root) {
            return;
        }
        cleaned.push(root.to_path_buf());
    }
    let me = std::process::id();
    let old = SystemTime::now() - Duration::from_secs(36 * 3600);
    let dirs = fs::read_dir(root).into_iter().flatten().flatten();
    for domain in dirs {
        for mailbox in fs::read_dir(domain.path()).into_iter().flatten().flatten() {
            for entry in fs::read_dir(mailbox.path().join("tmp"))
                .into_iter()
                .flatten()
                .flatten()
            {
                let name = entry.file_name();
                let pid = name.to_str().and_then(parse_unique_name).map(|n| n.pid);
                let dead = pid.is_some_and(|p| p == me || !process_alive(p));
                let stale = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t < old);
                if dead || stale {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
    }
}

/// Brings a Maildir that an earlier, narrower `GSMTP_MAILDIR_MODE` made up to `mode`'s
/// group bits, so that "set 0660, then reload (or restart)" lets a reader in the
/// server's group (Dovecot) in at once, old mail included. The root's mode tells: when
/// it lacks the group bits, its folders (domains, mailboxes, `tmp`, `new`, `cur`) and
/// the files in `new/` and `cur/` get them added, in a thread of its own (a large store
/// takes a while), and the root last, so an interrupted run is done again at the next
/// start. Bits are only ever added, never taken away; what is not ours is left alone.
pub(super) fn widen_modes(root: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let folders = folder_mode(mode) & 0o070;
    let files = mode & 0o060;
    let have = fs::metadata(root)?.permissions().mode();
    if folders == 0 || have & folders == folders {
        return Ok(());
    }
    let root = root.to_path_buf();
    std::thread::Builder::new()
        .name("maildir-modes".into())
        .spawn(move || {
            // Whether it changed `path`'s mode.
            let add = |path: &Path, bits: u32| -> bool {
                match fs::symlink_metadata(path) {
                    Ok(m) if !m.file_type().is_symlink() => {
                        let now = m.permissions().mode() & 0o7777;
                        now & bits != bits
                            && fs::set_permissions(path, fs::Permissions::from_mode(now | bits))
                                .is_ok()
                    }
                    _ => false,
                }
            };
            let (mut dirs, mut changed) = (0u64, 0u64);
            let list = |p: &Path| fs::read_dir(p).into_iter().flatten().flatten();
            for domain in list(&root) {
                if !domain.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                add(&domain.path(), folders);
                for mailbox in list(&domain.path()) {
                    if !mailbox.file_type().is_ok_and(|t| t.is_dir()) {
                        continue;
                    }
                    add(&mailbox.path(), folders);
                    dirs += 1;
                    for sub in ["tmp", "new", "cur"] {
                        let sub = mailbox.path().join(sub);
                        add(&sub, folders);
                        if sub.ends_with("tmp") {
                            continue;
                        }
                        for file in list(&sub) {
                            changed += u64::from(add(&file.path(), files));
                        }
                    }
                }
            }
            add(&root, folders);
            tracing::info!(
                root = %root.display(),
                mailboxes = dirs,
                files = changed,
                "Maildir opened to the group as GSMTP_MAILDIR_MODE asks"
            );
        })?;
    Ok(())
}

fn process_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    !matches!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
        Err(Errno::ESRCH)
    )
}
