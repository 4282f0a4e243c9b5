//! `bare-maildir`: the file operations of our Maildir destination with no SMTP (issue 21).
//!
//! The reference for the durable figures: what the disk allows for our sequence of file
//! operations, at the load's concurrency. One thread per session writes its share of the
//! load's messages one at a time, and for each message makes the calls our server makes
//! (`proto/src/io/deliver/maildir/`):
//!
//! 1. the folder check of `RCPT`: `access` on `tmp/.` and `new/.` (write and search) and
//!    `cur/.` (existence);
//! 2. `open(tmp/<unique name>, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600)`, the name made
//!    by `proto::deliver::maildir::unique_name`;
//! 3. one `write` of the stored file's bytes (the message plus the `Return-Path`,
//!    `Delivered-To` and `Received` fields our server adds: [`STORED_OVERHEAD`] octets
//!    more than smtp-source's payload);
//! 4. hands the open file to the one committer thread and waits for its answer.
//!
//! The committer does what ours does: it takes every message waiting at that moment (up
//! to 4,096) as one batch; syncs their data with one `syncfs` of the Maildir's file system
//! when the batch has [`SYNCFS_BATCH`] files or more, else `fdatasync` on each; `rename`s
//! each file from `tmp/` into `new/`; syncs the `new/` directories the batch renamed into
//! (one `syncfs` from [`SYNCFS_BATCH`] directories on, else `open` and `fsync` each);
//! answers every writer; and closes the files.
//!
//! Nothing is clever: no `io_uring`, no `O_TMPFILE`, the same calls in the same order.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Instant, SystemTime};

use nix::sys::resource::{UsageWho, getrusage};
use nix::unistd::{AccessFlags, access, syncfs};
use proto::deliver::maildir::unique_name;
use proto::io::deliver::SYNCFS_BATCH;

/// Octets a stored file has beyond smtp-source's `-l` payload: smtp-source's own header
/// (`From`, `To`, `Date`, `Message-Id`, the blank line) and our `Return-Path`,
/// `Delivered-To` and `Received` fields. Measured on files our server stored for
/// `smtp-source -l 4096` and `-l 102400` (4,509 and 102,813 octets; a day of the month
/// with two digits makes it one octet more or less).
pub(crate) const STORED_OVERHEAD: usize = 413;

/// The host name in the file names, as our servers in the bench are configured.
const HOST: &str = "bench.example";

/// The biggest batch the committer takes at once, as ours.
const MAX_BATCH: usize = 4096;

/// The recipient's folder under the Maildir root, as our server stores
/// `user@example.com`: `<root>/example.com/user`.
pub(crate) fn folder(root: &Path) -> PathBuf {
    root.join("example.com").join("user")
}

/// One message's open `tmp/` file on its way to the committer, and where to answer.
struct Job {
    file: File,
    tmp: PathBuf,
    done: mpsc::Sender<io::Result<()>>,
}

/// Writes `messages` messages of `bytes` payload octets into the Maildir at `root` with
/// `sessions` writer threads and one committer. Returns the wall-clock seconds from the
/// first thread's start to the last message's answer, and the CPU seconds (user plus
/// system) of those threads, each read with `getrusage(RUSAGE_THREAD)` as it ends.
pub(crate) fn run(
    root: &Path,
    sessions: usize,
    messages: usize,
    bytes: usize,
) -> Result<(f64, f64), String> {
    let folder = folder(root);
    for sub in ["tmp", "new", "cur"] {
        // As our server makes a missing folder: mode 0700.
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(folder.join(sub))
            .map_err(|e| format!("cannot create {}: {e}", folder.join(sub).display()))?;
    }
    let text = message_text(bytes + STORED_OVERHEAD);
    let root_fd = File::open(root).map_err(|e| format!("cannot open {}: {e}", root.display()))?;
    let sessions = sessions.max(1);
    let start = Instant::now();
    let (jobs, rx) = mpsc::channel::<Job>();
    let committer = thread::Builder::new()
        .name("bare-commit".into())
        .spawn(move || commit(&root_fd, &rx).map(|()| thread_cpu()))
        .map_err(|e| format!("cannot start the committer: {e}"))?;
    let mut writers = Vec::with_capacity(sessions);
    for i in 0..sessions {
        let share = messages / sessions + usize::from(i < messages % sessions);
        let (jobs, folder, text) = (jobs.clone(), folder.clone(), text.clone());
        let writer = thread::Builder::new()
            .name(format!("bare-{i}"))
            .stack_size(256 * 1024)
            .spawn(move || {
                (0..share)
                    .try_for_each(|_| write_one(&folder, &text, &jobs))
                    .map(|()| thread_cpu())
            })
            .map_err(|e| format!("cannot start writer {i}: {e}"))?;
        writers.push(writer);
    }
    drop(jobs);
    let mut cpu = 0.0;
    let mut failed = None;
    for w in writers {
        match w.join() {
            Ok(Ok(c)) => cpu += c,
            Ok(Err(e)) => failed = Some(e.to_string()),
            Err(_) => failed = Some("a writer panicked".into()),
        }
    }
    // The committer ends when the last writer has gone.
    match committer.join() {
        Ok(Ok(c)) => cpu += c,
        Ok(Err(e)) => failed = Some(format!("committer: {e}")),
        Err(_) => failed = Some("the committer panicked".into()),
    }
    let secs = start.elapsed().as_secs_f64();
    match failed {
        Some(e) => Err(format!("bare-maildir: {e}")),
        None => Ok((secs, cpu)),
    }
}

/// One message, as a session of ours stores it: the folder check, the file created in
/// `tmp/` and written, then handed to the committer; returns once it is in `new/` and
/// synced.
fn write_one(folder: &Path, text: &[u8], jobs: &mpsc::Sender<Job>) -> io::Result<()> {
    // The order and names of our `check_folder`, at RCPT.
    let write = AccessFlags::W_OK | AccessFlags::X_OK;
    access(&folder.join("tmp").join("."), write)?;
    access(&folder.join("new").join("."), write)?;
    access(&folder.join("cur").join("."), AccessFlags::F_OK)?;
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let name = unique_name(SystemTime::now(), std::process::id(), seq, HOST);
    let tmp = folder.join("tmp").join(name);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(text)?;
    let (done, answer) = mpsc::channel();
    jobs.send(Job { file, tmp, done })
        .map_err(|_| io::Error::other("the committer is gone"))?;
    answer
        .recv()
        .map_err(|_| io::Error::other("the committer is gone"))?
}

/// The committer: batches as ours makes them, until every writer has gone.
fn commit(root_fd: &File, jobs: &mpsc::Receiver<Job>) -> io::Result<()> {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        batch.extend(jobs.try_iter().take(MAX_BATCH - 1));
        // Step 2: the files' data.
        if batch.len() >= SYNCFS_BATCH {
            syncfs(root_fd)?;
        } else {
            for job in &batch {
                job.file.sync_data()?;
            }
        }
        // Step 3: into new/.
        let mut dirs = BTreeSet::new();
        for job in &batch {
            let folder = job.tmp.parent().and_then(Path::parent);
            let (Some(folder), Some(name)) = (folder, job.tmp.file_name()) else {
                return Err(io::Error::other("a tmp path without a folder"));
            };
            fs::rename(&job.tmp, folder.join("new").join(name))?;
            dirs.insert(folder.join("new"));
        }
        // Step 4: the directory entries.
        if dirs.len() >= SYNCFS_BATCH {
            syncfs(root_fd)?;
        } else {
            for dir in &dirs {
                File::open(dir)?.sync_all()?;
            }
        }
        // Step 5: the answers; the files close when the batch is dropped, as ours.
        for job in &batch {
            let _ = job.done.send(Ok(()));
        }
    }
    Ok(())
}

/// `len` octets of text in smtp-source's style: numbered 78-character lines with CRLF.
fn message_text(len: usize) -> Vec<u8> {
    let mut text = Vec::with_capacity(len + 80);
    let mut n = 1;
    while text.len() < len {
        let number = n.to_string();
        text.extend_from_slice(number.as_bytes());
        text.resize(text.len() + 78 - number.len().min(78), b'X');
        text.extend_from_slice(b"\r\n");
        n += 1;
    }
    text.truncate(len);
    text
}

/// The calling thread's CPU seconds so far, user plus system.
fn thread_cpu() -> f64 {
    getrusage(UsageWho::RUSAGE_THREAD).map_or(0.0, |u| {
        let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
        t(u.user_time()) + t(u.system_time())
    })
}
