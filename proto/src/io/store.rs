//! Storage: Maildir delivery with group commit, or discard.
//!
//! A message is spooled in memory while it is small; past [`SPOOL_MEMORY`] octets it is
//! streamed to a file in the first recipient's `tmp/`, so a 25 MiB message never sits in
//! memory whole. When the body is complete, the spool goes to the **committer**, one
//! thread per store, which takes every spool waiting at that moment as one batch:
//!
//! 1. write each recipient's file in its `tmp/` (`Delivered-To` and `Received` first);
//! 2. make the files' data durable;
//! 3. rename each file into its `new/`;
//! 4. make the directory entries durable;
//! 5. only then report success, and the session answers `250`.
//!
//! Steps 2 and 4 sync every file (`fdatasync`) and then every `new/` directory (`fsync`)
//! of the batch at once, on up to [`SYNC_THREADS`] threads, and the file system folds
//! concurrent syncs into shared journal commits: under load one or two commits carry a
//! whole batch. This is group commit. (A `syncfs` of the whole file system would be one
//! call, but it also waits for every other program's dirty data.) Any failure removes the message's files from `tmp/` and `new/`
//! and reports it (`451 4.3.0`). `GSMTP_FSYNC=N` skips the flushes: faster, and unsafe.

use std::collections::{BTreeSet, HashSet};
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, SystemTime};

use super::runtime::Runtime;
use crate::config::{Config, Storage};
use crate::conn::{DeliveryError, Envelope};
use crate::maildir::{self, MailboxPath};
use crate::trace;

/// Bodies up to this size are spooled in memory; larger ones stream to `tmp/`.
pub const SPOOL_MEMORY: usize = 64 * 1024;
/// The most threads syncing one batch at a time.
pub const SYNC_THREADS: usize = 16;

/// Where accepted messages go. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Store(Option<Arc<Maildir>>);

/// A Maildir root and the way to its committer thread, which ends when the last
/// [`Store`] clone is dropped.
#[derive(Debug)]
struct Maildir {
    dir: Arc<Dir>,
    jobs: mpsc::Sender<Job>,
}

/// What both the sessions and the committer know of the Maildir.
#[derive(Debug)]
struct Dir {
    root: PathBuf,
    host: String,
    fsync: bool,
    pid: u32,
    seq: AtomicU64,
}

/// One recipient folder's copy: where it goes and the headers it starts with.
#[derive(Debug)]
struct Target {
    path: MailboxPath,
    prefix: Vec<u8>,
}

/// A message being received. Created by [`Store::begin`].
#[derive(Debug)]
pub struct Spool {
    targets: Vec<Target>,
    /// Bytes not yet written: the first target's prefix, then body bytes.
    buf: Vec<u8>,
    /// The file in the first target's `tmp/`, once the body outgrew memory.
    file: Option<(File, PathBuf)>,
    failed: bool,
}

/// A file written in `tmp/`, still open for its sync.
type OpenTmp = (File, PathBuf);

/// A spool on its way to the committer, with the channel for the outcome.
#[derive(Debug)]
struct Job {
    spool: Spool,
    done: async_channel::Sender<Result<(), DeliveryError>>,
}

impl Store {
    /// The store `cfg` asks for. For Maildir: creates the root, removes stale `tmp/`
    /// files left by dead processes, and starts the committer thread.
    pub fn open(cfg: &Config) -> io::Result<Self> {
        if cfg.storage == Storage::Discard {
            return Ok(Self(None));
        }
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&cfg.maildir)?;
        let root = fs::canonicalize(&cfg.maildir)?;
        clean_stale_tmp(&root);
        let (jobs, rx) = mpsc::channel();
        let dir = Arc::new(Dir {
            root,
            host: cfg.host_name.clone(),
            fsync: cfg.fsync,
            pid: std::process::id(),
            seq: AtomicU64::new(0),
        });
        let committer = Arc::clone(&dir);
        std::thread::Builder::new()
            .name("maildir-commit".into())
            .spawn(move || committer.run(rx))?;
        Ok(Self(Some(Arc::new(Maildir { dir, jobs }))))
    }

    /// Whether messages are thrown away.
    pub fn is_discard(&self) -> bool {
        self.0.is_none()
    }

    /// Starts a spool for `env`: one target per distinct recipient folder, each with its
    /// own `Delivered-To` and `Received` headers dated now.
    pub fn begin(&self, env: &Envelope) -> Option<Spool> {
        let dir = &self.0.as_ref()?.dir;
        let now = SystemTime::now();
        let mut seen = HashSet::new();
        let targets: Vec<Target> = env
            .recipients
            .iter()
            .filter(|r| seen.insert(r.path.clone()))
            .map(|r| {
                let mut prefix = Vec::with_capacity(300);
                trace::write_prefix(&mut prefix, &r.address, &env.trace(&dir.host, r, now));
                Target {
                    path: r.path.clone(),
                    prefix,
                }
            })
            .collect();
        let mut buf = Vec::with_capacity(8 * 1024);
        buf.extend_from_slice(&targets.first()?.prefix);
        Some(Spool {
            targets,
            buf,
            file: None,
            failed: false,
        })
    }

    /// Appends body bytes. Returns true when the spool has outgrown memory and should be
    /// [flushed](Store::flush) to its `tmp/` file.
    pub fn write(&self, spool: &mut Spool, bytes: &[u8]) -> bool {
        if self.0.is_none() || spool.failed {
            return false;
        }
        spool.buf.extend_from_slice(bytes);
        spool.buf.len() >= SPOOL_MEMORY
    }

    /// Writes what the spool holds to its file in the first recipient's `tmp/`, creating
    /// it on first use, on the runtime's thread pool.
    pub async fn flush<R: Runtime>(&self, rt: &R, spool: &mut Spool) {
        let Some(dir) = &self.0 else { return };
        let buf = std::mem::take(&mut spool.buf);
        let file = spool.file.take();
        let dir = Arc::clone(&dir.dir);
        let first = spool.targets[0].path.clone();
        let written = rt
            .unblock(move || -> io::Result<((File, PathBuf), Vec<u8>)> {
                let (mut f, path) = match file {
                    Some(f) => f,
                    None => dir.create_tmp(&first, true)?,
                };
                f.write_all(&buf)?;
                Ok(((f, path), buf))
            })
            .await;
        match written {
            Ok((file, mut buf)) => {
                buf.clear();
                spool.buf = buf;
                spool.file = Some(file);
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot write to the Maildir spool");
                spool.failed = true;
                spool.buf = Vec::new();
            }
        }
    }

    /// Makes the message durable in every recipient's `new/`; `Ok` means on disk.
    pub async fn commit<R: Runtime>(
        &self,
        rt: &R,
        spool: Option<Spool>,
    ) -> Result<(), DeliveryError> {
        let (Some(dir), Some(spool)) = (&self.0, spool) else {
            return if self.0.is_none() {
                Ok(())
            } else {
                Err(DeliveryError::Transient)
            };
        };
        if spool.failed {
            self.abort(rt, Some(spool)).await;
            return Err(DeliveryError::Transient);
        }
        let (done, outcome) = async_channel::bounded(1);
        if dir.jobs.send(Job { spool, done }).is_err() {
            return Err(DeliveryError::Transient);
        }
        outcome
            .recv()
            .await
            .unwrap_or(Err(DeliveryError::Transient))
    }

    /// Throws a spool away, removing its `tmp/` file if it has one.
    pub async fn abort<R: Runtime>(&self, rt: &R, spool: Option<Spool>) {
        if let Some((file, path)) = spool.and_then(|s| s.file) {
            rt.unblock(move || {
                drop(file);
                let _ = fs::remove_file(path);
            })
            .await;
        }
    }
}

impl Dir {
    /// `<root>/<domain>/<mailbox>`.
    fn folder(&self, path: &MailboxPath) -> PathBuf {
        self.root.join(&path.domain).join(&path.mailbox)
    }

    /// Creates `<folder>/{tmp,new,cur}` if needed.
    fn ensure_folder(&self, path: &MailboxPath) -> io::Result<()> {
        let folder = self.folder(path);
        let mut b = DirBuilder::new();
        b.recursive(true).mode(0o700);
        for sub in ["tmp", "new", "cur"] {
            b.create(folder.join(sub))?;
        }
        Ok(())
    }

    /// A new, uniquely named file in the folder's `tmp/`.
    fn create_tmp(&self, path: &MailboxPath, ensure: bool) -> io::Result<(File, PathBuf)> {
        if ensure {
            self.ensure_folder(path)?;
        }
        let name = maildir::unique_name(
            SystemTime::now(),
            self.pid,
            self.seq.fetch_add(1, Ordering::Relaxed),
            &self.host,
        );
        let tmp = self.folder(path).join("tmp").join(name);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        Ok((file, tmp))
    }

    /// The committer: takes every waiting job as one batch (see the module docs).
    fn run(&self, jobs: mpsc::Receiver<Job>) {
        let mut ready: HashSet<MailboxPath> = HashSet::new();
        while let Ok(first) = jobs.recv() {
            let mut batch = vec![first];
            batch.extend(jobs.try_iter().take(4095));
            if ready.len() > 100_000 {
                ready.clear();
            }
            // Phase 1: every recipient's file in its tmp/.
            let staged: Vec<(Job, io::Result<Vec<OpenTmp>>)> = batch
                .into_iter()
                .map(|mut job| {
                    let files = self.write_files(&mut job.spool, &mut ready);
                    (job, files)
                })
                .collect();
            // Phase 2: their data on disk.
            let files: Vec<&File> = staged
                .iter()
                .filter_map(|(_, r)| r.as_ref().ok())
                .flatten()
                .map(|(f, _)| f)
                .collect();
            let data_synced = self.sync_files(&files);
            // Phase 3: into new/.
            let published: Vec<(Job, io::Result<Vec<PathBuf>>)> = staged
                .into_iter()
                .map(|(job, files)| {
                    let tmp: io::Result<Vec<PathBuf>> =
                        files.map(|f| f.into_iter().map(|(_, p)| p).collect());
                    let new = match (tmp, &data_synced) {
                        (Ok(tmp), Ok(())) => self.publish(tmp),
                        (Ok(tmp), Err(e)) => {
                            tmp.iter().for_each(|p| drop(fs::remove_file(p)));
                            Err(io::Error::new(e.kind(), e.to_string()))
                        }
                        (Err(e), _) => Err(e),
                    };
                    (job, new)
                })
                .collect();
            // Phase 4: the directory entries on disk.
            let dirs: BTreeSet<&Path> = published
                .iter()
                .filter_map(|(_, r)| r.as_ref().ok())
                .flatten()
                .filter_map(|p| p.parent())
                .collect();
            let dirs_synced = self.sync_dirs(&dirs);
            // Phase 5: answer.
            for (job, new) in published {
                let outcome = match (new, &dirs_synced) {
                    (Ok(_), Ok(())) => Ok(()),
                    (Ok(new), Err(e)) => {
                        tracing::error!(error = %e, "cannot sync the Maildir");
                        new.iter().for_each(|p| drop(fs::remove_file(p)));
                        Err(DeliveryError::Transient)
                    }
                    (Err(e), _) => {
                        tracing::error!(error = %e, "cannot store a message in the Maildir");
                        Err(DeliveryError::Transient)
                    }
                };
                let _ = job.done.try_send(outcome);
            }
        }
    }

    /// Phase 1: writes every target's file in its `tmp/`. Returns them, still open; on
    /// error removes what it wrote.
    fn write_files(
        &self,
        spool: &mut Spool,
        ready: &mut HashSet<MailboxPath>,
    ) -> io::Result<Vec<(File, PathBuf)>> {
        let mut written = Vec::with_capacity(spool.targets.len());
        let result = self.write_files_into(spool, ready, &mut written);
        if result.is_err() {
            written.iter().for_each(|(_, p)| drop(fs::remove_file(p)));
        }
        result.map(|()| written)
    }

    fn write_files_into(
        &self,
        spool: &mut Spool,
        ready: &mut HashSet<MailboxPath>,
        written: &mut Vec<OpenTmp>,
    ) -> io::Result<()> {
        let body_start = spool.targets[0].prefix.len();
        // The first target's file: the spool file, or a new one from memory.
        let streamed = spool.file.is_some();
        let (mut first, first_path) = match spool.file.take() {
            Some(f) => f,
            None => self.tmp_in(&spool.targets[0].path, ready)?,
        };
        first.write_all(&spool.buf)?;
        written.push((first, first_path.clone()));
        for target in &spool.targets[1..] {
            let (mut f, path) = self.tmp_in(&target.path, ready)?;
            f.write_all(&target.prefix)?;
            if streamed {
                let mut src = File::open(&first_path)?;
                src.seek(SeekFrom::Start(body_start as u64))?;
                io::copy(&mut src, &mut f)?; // copy_file_range on Linux
            } else {
                f.write_all(&spool.buf[body_start..])?;
            }
            written.push((f, path));
        }
        Ok(())
    }

    fn tmp_in(
        &self,
        path: &MailboxPath,
        ready: &mut HashSet<MailboxPath>,
    ) -> io::Result<(File, PathBuf)> {
        if !ready.contains(path) {
            self.ensure_folder(path)?;
            ready.insert(path.clone());
        }
        match self.create_tmp(path, false) {
            // The folder went away since it was made (a cleanup job, an operator):
            // make it again.
            Err(e) if e.kind() == io::ErrorKind::NotFound => self.create_tmp(path, true),
            other => other,
        }
    }

    /// Phase 3: renames each `tmp/` file into `new/`; on error undoes the message's
    /// renames and removes its files.
    fn publish(&self, tmp: Vec<PathBuf>) -> io::Result<Vec<PathBuf>> {
        let mut new = Vec::with_capacity(tmp.len());
        for (i, t) in tmp.iter().enumerate() {
            let target = t
                .parent()
                .and_then(Path::parent)
                .zip(t.file_name())
                .map(|(f, n)| f.join("new").join(n));
            let Some(target) = target else {
                return Err(io::Error::other("a tmp path without a folder"));
            };
            if let Err(e) = fs::rename(t, &target) {
                new.iter().for_each(|p| drop(fs::remove_file(p)));
                tmp[i..].iter().for_each(|p| drop(fs::remove_file(p)));
                return Err(e);
            }
            new.push(target);
        }
        Ok(new)
    }

    /// Phase 2: file data. The whole batch is synced at once, by up to [`SYNC_THREADS`]
    /// threads, so that the file system folds the syncs into a few journal commits.
    fn sync_files(&self, files: &[&File]) -> io::Result<()> {
        if !self.fsync {
            return Ok(());
        }
        parallel_sync(files, File::sync_data)
    }

    /// Phase 4: the `new/` directories the batch renamed into, likewise.
    fn sync_dirs(&self, dirs: &BTreeSet<&Path>) -> io::Result<()> {
        if !self.fsync || dirs.is_empty() {
            return Ok(());
        }
        let dirs: Vec<File> = dirs.iter().map(File::open).collect::<io::Result<_>>()?;
        parallel_sync(&dirs.iter().collect::<Vec<_>>(), File::sync_all)
    }
}

/// Runs `sync` on every file, spread over up to [`SYNC_THREADS`] threads; the first
/// error wins. One file is synced on the calling thread.
fn parallel_sync(files: &[&File], sync: fn(&File) -> io::Result<()>) -> io::Result<()> {
    if files.len() <= 1 {
        return files.iter().try_for_each(|f| sync(f));
    }
    let threads = files.len().min(SYNC_THREADS);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    files
                        .iter()
                        .skip(t)
                        .step_by(threads)
                        .try_for_each(|f| sync(f))
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|_| Err(io::Error::other("a sync thread panicked")))
            })
            .collect::<io::Result<Vec<()>>>()
            .map(drop)
    })
}

/// Removes `tmp/` files left by processes that are gone (ours are named `...P<pid>Q...`),
/// and any `tmp/` file older than 36 hours, as the Maildir spec advises.
fn clean_stale_tmp(root: &Path) {
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
                let pid = name.to_str().and_then(owner_pid);
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

/// The pid in a name made by [`maildir::unique_name`].
fn owner_pid(name: &str) -> Option<u32> {
    let after = &name[name.find(".M")? + 2..];
    let p = after.find('P')?;
    let q = after[p..].find('Q')? + p;
    after[p + 1..q].parse().ok()
}

fn process_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    !matches!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
        Err(nix::errno::Errno::ESRCH)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_from_name() {
        assert_eq!(owner_pid("1700000000.M123P4567Q8.host"), Some(4567));
        assert_eq!(
            owner_pid("1700000000.M123P4567Q8.host.with.Pdots"),
            Some(4567)
        );
        assert_eq!(owner_pid("dovecot-style.name"), None);
    }
}
