//! `GSMTP_STORAGE=maildir` (the default): Maildir delivery with group commit.
//!
//! A message is spooled in memory while it is small; past [`super::SPOOL_MEMORY`] octets it
//! is streamed to a file in the first recipient's `tmp/` (the spool all destinations
//! share), so a 25 MiB message never sits in
//! memory whole. When the body is complete:
//!
//! 1. the session writes each recipient's file in its `tmp/` (`Delivered-To` and
//!    `Received` first), into the page cache: at once for a small message, on the
//!    runtime's blocking pool for a large one;
//! 2. it hands the files to the **committer**, one thread per store, which takes every
//!    message waiting at that moment as one batch and makes their data durable;
//! 3. renames each file into its folder's `new/`;
//! 4. makes the directory entries durable;
//! 5. and only then lets each session answer `250`.
//!
//! Steps 2 and 4 are shared by all the messages of the batch: this is the group commit.
//! Step 2 syncs a lone file with `fdatasync`, so that a message on a quiet server does not
//! wait for other programs' dirty data, and a batch of [`SYNCFS_BATCH`] files or more with
//! one `syncfs` of the Maildir's file system: each sync costs a flush of the device's
//! cache, so syncing ten files one by one took twice as long as one `syncfs` here. Step 4
//! does the same for the `new/` directories the batch renamed into. While the committer
//! syncs one batch, sessions write the next.
//! Any failure removes the message's files from `tmp/` and `new/` and reports it: a full
//! file system or quota (`ENOSPC`, `EDQUOT`) as `452 4.3.1`, anything else as
//! `451 4.3.0`. `GSMTP_FSYNC=N` skips the syncs: faster, and unsafe.
//!
//! Before that, the transaction is checked: at MAIL, whether a declared
//! `SIZE=` fits in the file system's free space; at RCPT, whether the recipient's folder
//! can take mail, making whichever of its `tmp/`, `new/` and `cur/` is missing. A folder
//! that cannot be written refuses only its recipient (`450 4.2.0`).

mod commit;
mod folders;

use self::folders::{DEFAULT_MODE, make_folder, set_mode};
use std::collections::HashSet;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::SystemTime;

use nix::errno::Errno;
use nix::unistd::AccessFlags;

use super::spool::Spool;
use super::{Deliver, Message, Transaction};
use crate::config::Config;
use crate::deliver::maildir;
use crate::delivery::DeliveryError;
use crate::delivery::Envelope;
use crate::delivery::{MailboxPath, Recipient};
use crate::io::runtime::Runtime;
use crate::syntax::{MailParams, ReversePath};
use crate::trace;
use crate::verdict::Verdict;

/// From this many files (or `new/` directories), a batch is synced with one `syncfs`
/// rather than one by one.
pub const SYNCFS_BATCH: usize = 2;

/// The Maildir destination (`GSMTP_STORAGE=maildir`): a root and the way to its
/// committer thread, which ends when the destination is dropped.
#[derive(Debug)]
pub struct Maildir<R: Runtime>(Arc<Inner<R>>);

/// What the Maildir's transactions share.
#[derive(Debug)]
struct Inner<R: Runtime> {
    rt: R,
    dir: Arc<Dir>,
    jobs: mpsc::Sender<Job>,
}

/// What both the sessions and the committer know of the Maildir.
#[derive(Debug)]
struct Dir {
    root: PathBuf,
    /// The root, open, for `syncfs`.
    root_fd: File,
    host: String,
    fsync: bool,
    pid: u32,
    /// Files' mode (`GSMTP_MAILDIR_MODE`); folders get the matching search bits.
    mode: u32,
    /// Where the committer records the size of each batch.
    batch: prometheus::Histogram,
}

/// One recipient folder's copy: where it goes and the headers it starts with.
#[derive(Debug)]
struct Target {
    path: MailboxPath,
    prefix: Vec<u8>,
    /// Where the verdict's `Authentication-Results` field goes in `prefix`.
    results_at: usize,
}

/// A transaction of the Maildir: its recipients' folders are checked as they come.
#[derive(Debug)]
pub struct MaildirTransaction<R: Runtime>(Arc<Inner<R>>);

/// A message of the Maildir: its copies' folders and headers, and its text, in memory
/// or streaming into the first copy's `tmp/` file.
#[derive(Debug)]
pub struct MaildirMessage<R: Runtime> {
    maildir: Arc<Inner<R>>,
    targets: Vec<Target>,
    spool: Spool<(File, PathBuf)>,
}

/// A message's copies, at its end: the first target's file (if the text outgrew memory)
/// and the rest of its text.
#[derive(Debug)]
struct Copies {
    targets: Vec<Target>,
    /// Bytes not yet written: the first target's prefix, then body bytes.
    buf: Vec<u8>,
    /// The file in the first target's `tmp/`, once the body outgrew memory.
    file: Option<(File, PathBuf)>,
}

/// A message's synced `tmp/` files on their way to the committer, with the channel for
/// the outcome.
#[derive(Debug)]
struct Job {
    tmp: Vec<(File, PathBuf)>,
    done: async_channel::Sender<Result<(), DeliveryError>>,
}

impl<R: Runtime> Maildir<R> {
    /// Opens the Maildir `cfg` names: creates the root, removes stale `tmp/` files left
    /// by dead processes, and starts the committer thread. Blocking work (large files)
    /// runs on `rt`'s thread pool.
    pub fn open(rt: R, cfg: &Config) -> io::Result<Self> {
        let made = !cfg.maildir.exists();
        DirBuilder::new()
            .recursive(true)
            .mode(cfg.maildir_folder_mode())
            .create(&cfg.maildir)?;
        if made {
            set_mode(&cfg.maildir, cfg.maildir_folder_mode())?;
        }
        let root = fs::canonicalize(&cfg.maildir)?;
        folders::clean_stale_tmp(&root);
        folders::widen_modes(&root, cfg.maildir_mode)?;
        let (jobs, rx) = mpsc::channel();
        let dir = Arc::new(Dir {
            root_fd: File::open(&root)?,
            root,
            host: cfg.host_name.clone(),
            fsync: cfg.fsync,
            pid: std::process::id(),
            mode: cfg.maildir_mode,
            batch: crate::io::observe::metrics().batch.clone(),
        });
        let committer = Arc::clone(&dir);
        std::thread::Builder::new()
            .name("maildir-commit".into())
            .spawn(move || committer.run(rx))?;
        Ok(Self(Arc::new(Inner { rt, dir, jobs })))
    }
}

impl<R: Runtime> Deliver for Maildir<R> {
    type Transaction = MaildirTransaction<R>;

    fn name(&self) -> &'static str {
        "maildir"
    }

    /// A file can be made, written, synced and removed in the root.
    async fn probe(&self) -> Result<(), DeliveryError> {
        let dir = &self.0.dir;
        let path = dir
            .root
            .join(format!(".guerrilla-probe-{}", std::process::id()));
        let made = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(dir.mode)
                .open(&path)?;
            f.write_all(b"probe\r\n")?;
            f.sync_data()
        })();
        let _ = fs::remove_file(&path);
        made.map_err(|e| classify(&context(e, "cannot write a file in", &dir.root)))
    }

    /// A declared `SIZE=` must fit in the file system's free space.
    async fn start(
        &self,
        _: &ReversePath<'static>,
        params: &MailParams,
    ) -> Result<MaildirTransaction<R>, DeliveryError> {
        params.size.map_or(Ok(()), |n| self.0.dir.room(n))?;
        Ok(MaildirTransaction(Arc::clone(&self.0)))
    }
}

impl<R: Runtime> Transaction for MaildirTransaction<R> {
    type Message = MaildirMessage<R>;

    /// The recipient's folder must take mail; missing parts of it are made.
    async fn add_recipient(&mut self, r: &Recipient) -> Result<(), DeliveryError> {
        self.0.dir.check_folder(&r.path)
    }

    /// One target per distinct recipient folder, each with its own `Return-Path`,
    /// `Delivered-To` and `Received` headers dated now.
    async fn begin(self, env: &Envelope) -> Result<MaildirMessage<R>, DeliveryError> {
        let now = SystemTime::now();
        let mut seen = HashSet::new();
        let targets: Vec<Target> = env
            .recipients
            .iter()
            .filter(|r| seen.insert(r.path.clone()))
            .map(|r| {
                let mut prefix = Vec::with_capacity(300);
                let trace = trace::Trace::new(env, &self.0.dir.host, r, now);
                let results_at = trace::write_prefix(
                    &mut prefix,
                    r.original_to.as_deref(),
                    &r.delivered_to,
                    &trace,
                );
                Target {
                    path: r.path.clone(),
                    prefix,
                    results_at,
                }
            })
            .collect();
        let Some(first) = targets.first() else {
            return Err(DeliveryError::permanent().because("a message without recipients"));
        };
        let mut buf = Vec::with_capacity(8 * 1024);
        buf.extend_from_slice(&first.prefix);
        Ok(MaildirMessage {
            maildir: self.0,
            targets,
            spool: Spool::new(buf),
        })
    }
}

impl<R: Runtime> Message for MaildirMessage<R> {
    /// Held in memory up to [`super::SPOOL_MEMORY`], then streamed to the first folder's
    /// `tmp/`.
    async fn write(&mut self, bytes: &[u8]) -> Result<(), DeliveryError> {
        if self.spool.hold(bytes) {
            return Ok(());
        }
        let (maildir, targets) = (&self.maildir, &self.targets);
        let maker = || {
            let dir = Arc::clone(&maildir.dir);
            let first = targets[0].path.clone();
            move || dir.create_tmp(&first)
        };
        // Big futures on cold paths are boxed so that an idle session's task stays small.
        Box::pin(self.spool.write(&maildir.rt, bytes, maker))
            .await
            .map_err(|e| classify(&e))
    }

    /// Makes the message durable in every recipient's `new/`; `Ok` means on disk. See
    /// the module docs for the steps.
    /// With a verdict, its `Authentication-Results` field goes into every copy's
    /// headers first (for a text already in its `tmp/` file, into a new file with the
    /// rest copied by the kernel).
    async fn commit(self, verdict: &Verdict) -> Result<(), DeliveryError> {
        let Self {
            maildir,
            mut targets,
            mut spool,
        } = self;
        let results = verdict.header_fields(&maildir.dir.host);
        if !results.is_empty() {
            let maker = || {
                let dir = Arc::clone(&maildir.dir);
                let first = targets[0].path.clone();
                move || dir.create_tmp(&first)
            };
            let at = targets[0].results_at;
            Box::pin(spool.insert(&maildir.rt, at, &results, maker))
                .await
                .map_err(|e| classify(&e))?;
            for t in &mut targets {
                t.prefix
                    .splice(t.results_at..t.results_at, results.iter().copied());
            }
        }
        let (file, buf) = spool.into_parts();
        let copies = Copies { targets, buf, file };
        let dir = Arc::clone(&maildir.dir);
        // On the blocking pool, even for a small message held in memory: creating a file
        // can wait on the disk (ext4's inode allocator reads its tables), and the
        // session threads must never wait on the disk.
        let staged = maildir.rt.unblock(move || dir.stage(copies)).await;
        let tmp = match staged {
            Ok(tmp) => tmp,
            Err(e) => return Err(classify(&e)),
        };
        let (done, outcome) = async_channel::bounded(1);
        if let Err(mpsc::SendError(job)) = maildir.jobs.send(Job { tmp, done }) {
            job.tmp.iter().for_each(|(_, p)| drop(fs::remove_file(p)));
            return Err(DeliveryError::transient().because("the Maildir committer is gone"));
        }
        outcome.recv().await.unwrap_or_else(|_| {
            Err(DeliveryError::transient().because("the Maildir committer is gone"))
        })
    }

    /// Removes the message's `tmp/` file, if it has one.
    async fn abort(self) {
        if self.spool.spilled() {
            let spool = self.spool;
            self.maildir.rt.unblock(move || spool.discard()).await;
        }
    }
}

impl Dir {
    /// `<root>/<domain>/<mailbox>`.
    fn folder(&self, path: &MailboxPath) -> PathBuf {
        self.root.join(&path.domain).join(&path.mailbox)
    }

    /// Whether a message of `size` octets fits in the free space of the Maildir's file
    /// system (as an unprivileged user may use it). A failed probe does not refuse.
    fn room(&self, size: u64) -> Result<(), DeliveryError> {
        match nix::sys::statvfs::fstatvfs(&self.root_fd) {
            Ok(fs) => {
                let free = fs.blocks_available().saturating_mul(fs.fragment_size());
                if size > free {
                    return Err(DeliveryError::insufficient_storage().because(format_args!(
                        "the declared SIZE={size} exceeds the Maildir's free space ({free})"
                    )));
                }
                Ok(())
            }
            Err(_) => Ok(()),
        }
    }

    /// Whether the folder can take mail: its `tmp/` and `new/` writable, its `cur/`
    /// there. Whichever is missing is made (mode 0700).
    fn check_folder(&self, path: &MailboxPath) -> Result<(), DeliveryError> {
        let folder = self.folder(path);
        let usable = || -> nix::Result<()> {
            // `<sub>/.` fails with ENOTDIR when something else stands in its place.
            let write = AccessFlags::W_OK | AccessFlags::X_OK;
            nix::unistd::access(&folder.join("tmp").join("."), write)?;
            nix::unistd::access(&folder.join("new").join("."), write)?;
            nix::unistd::access(&folder.join("cur").join("."), AccessFlags::F_OK)
        };
        let result = match usable() {
            Err(Errno::ENOENT) => make_folder(&folder, self.mode)
                .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(Errno::EIO as i32)))
                .and_then(|()| usable()),
            other => other,
        };
        result.map_err(|e| {
            let err = match e {
                Errno::ENOSPC | Errno::EDQUOT => DeliveryError::insufficient_storage(),
                Errno::EACCES | Errno::EPERM | Errno::EROFS | Errno::ENOTDIR | Errno::ELOOP => {
                    DeliveryError::mailbox_unavailable()
                }
                _ => DeliveryError::transient(),
            };
            err.because(format_args!("{}: {e}", folder.display()))
        })
    }

    /// A new, uniquely named file in the folder's `tmp/`, making the folder (with its
    /// `tmp`, `new` and `cur`) when it is not there: on first delivery, or after a clean-up
    /// job removed it.
    fn create_tmp(&self, path: &MailboxPath) -> io::Result<(File, PathBuf)> {
        // One count for the whole process: a reload opens the Maildir again while the
        // old one still finishes its messages, and their names must not meet.
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let name = maildir::unique_name(SystemTime::now(), self.pid, seq, &self.host);
        let folder = self.folder(path);
        let tmp = folder.join("tmp").join(name);
        let open = || {
            // Readable too: a verdict's field is put in by copying the text to a new file.
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(self.mode)
                .open(&tmp)
                .map_err(|e| context(e, "cannot create", &tmp))?;
            if self.mode != DEFAULT_MODE {
                // The umask may have taken the group's bits away.
                file.set_permissions(fs::Permissions::from_mode(self.mode))?;
            }
            Ok::<File, io::Error>(file)
        };
        let file = match open() {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                make_folder(&folder, self.mode)?;
                open()?
            }
            other => other?,
        };
        Ok((file, tmp))
    }

    /// Step 1: every target's file in its `tmp/`, written
    /// but not synced. On error removes what it wrote.
    fn stage(&self, mut spool: Copies) -> io::Result<Vec<(File, PathBuf)>> {
        let mut written = Vec::with_capacity(spool.targets.len());
        let result = self.write_files(&mut spool, &mut written);
        if result.is_err() {
            written.iter().for_each(|(_, p)| drop(fs::remove_file(p)));
        }
        result.map(|()| written)
    }

    fn write_files(
        &self,
        spool: &mut Copies,
        written: &mut Vec<(File, PathBuf)>,
    ) -> io::Result<()> {
        let body_start = spool.targets[0].prefix.len();
        // The first target's file: the spool file, or a new one from memory.
        let streamed = spool.file.is_some();
        let first = match spool.file.take() {
            Some(f) => f,
            None => self.create_tmp(&spool.targets[0].path)?,
        };
        let first_path = first.1.clone();
        written.push(first);
        written[0]
            .0
            .write_all(&spool.buf)
            .map_err(|e| context(e, "cannot write", &first_path))?;
        for target in &spool.targets[1..] {
            written.push(self.create_tmp(&target.path)?);
            let (f, path) = written.last_mut().expect("pushed just above");
            let copied = f.write_all(&target.prefix).and_then(|()| {
                if streamed {
                    let mut src = File::open(&first_path)?;
                    src.seek(SeekFrom::Start(body_start as u64))?;
                    io::copy(&mut src, f).map(drop) // copy_file_range on Linux
                } else {
                    f.write_all(&spool.buf[body_start..])
                }
            });
            copied.map_err(|e| context(e, "cannot write", path))?;
        }
        Ok(())
    }
}

/// `e`, saying what failed where; its kind is kept, so [`classify`] still works.
fn context(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

/// The reply class of a failed store: a full file system or quota is
/// [`DeliveryError::insufficient_storage()`], anything else [`DeliveryError::transient()`].
fn classify(e: &io::Error) -> DeliveryError {
    let err = match e.kind() {
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => {
            DeliveryError::insufficient_storage()
        }
        _ => DeliveryError::transient(),
    };
    err.because(e)
}
