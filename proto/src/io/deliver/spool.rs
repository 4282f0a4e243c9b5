//! A message's text while it arrives: in memory up to [`MEMORY`] octets, then in a file,
//! so that a 25 MiB message never sits in memory whole. Every destination that keeps the
//! text spools it here: the hand-offs that send it at the end (a pipe command, an HTTP
//! request or an S3 object with its length) in an unnamed file of `GSMTP_SPOOL_DIR`,
//! which the kernel removes when it is closed whatever happens to the process
//! ([`unnamed_file`]); the Maildir in its first recipient's `tmp/` file, which becomes
//! the stored copy.

use std::fs::File;
use std::io::{self, Seek, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::delivery::DeliveryError;
use crate::io::runtime::Runtime;

/// Texts up to this size stay in memory; the rest of a larger one goes to its file.
pub const MEMORY: usize = 64 * 1024;

/// How much of the spool is read at a time when it is sent.
pub(crate) const CHUNK: usize = 64 * 1024;

/// The file a spool writes to once its text outgrows memory.
pub(crate) trait Backing: Send + 'static {
    /// The open file.
    fn file(&mut self) -> &mut File;
    /// Throws the file away after a failure.
    fn discard(self);
}

impl Backing for File {
    fn file(&mut self) -> &mut File {
        self
    }
    fn discard(self) {}
}

/// A named file (a Maildir `tmp/` file): removed when thrown away.
impl Backing for (File, PathBuf) {
    fn file(&mut self) -> &mut File {
        &mut self.0
    }
    fn discard(self) {
        drop(self.0);
        let _ = std::fs::remove_file(&self.1);
    }
}

/// A message's text, in memory or in memory and a file.
#[derive(Debug)]
pub(crate) struct Spool<F = File> {
    /// Octets not yet in the file (all of them while there is no file).
    buf: Vec<u8>,
    /// The file, once the text outgrew memory, and how much of it is written.
    file: Option<(F, u64)>,
}

impl<F: Backing> Spool<F> {
    /// A spool that starts with `prefix` (the trace headers).
    pub(crate) fn new(prefix: Vec<u8>) -> Self {
        Self {
            buf: prefix,
            file: None,
        }
    }

    /// Whether the text outgrew memory.
    pub(crate) fn spilled(&self) -> bool {
        self.file.is_some()
    }

    /// Appends `bytes` if they stay in memory (no file yet, and fewer than [`MEMORY`]
    /// octets held then): the cheap path, which needs no future. Returns whether it did.
    pub(crate) fn hold(&mut self, bytes: &[u8]) -> bool {
        let fits = self.file.is_none() && self.buf.len() + bytes.len() < MEMORY;
        if fits {
            self.buf.extend_from_slice(bytes);
        }
        fits
    }

    /// Appends `bytes`; once more than [`MEMORY`] octets are held, they go to the file,
    /// on `rt`'s thread pool. The file is made on first use by what `maker` gives
    /// (called only then, so that a text that stays in memory costs the caller nothing
    /// to prepare). On failure the file is thrown away ([`Backing::discard`]) and the
    /// spool holds nothing more.
    pub(crate) async fn write<R: Runtime, M>(
        &mut self,
        rt: &R,
        bytes: &[u8],
        maker: impl FnOnce() -> M,
    ) -> io::Result<()>
    where
        M: FnOnce() -> io::Result<F> + Send + 'static,
    {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() < MEMORY {
            return Ok(());
        }
        let make = maker();
        let buf = std::mem::take(&mut self.buf);
        let file = self.file.take();
        let written = rt
            .unblock(move || {
                let (mut f, n) = match file {
                    Some(f) => f,
                    None => (make()?, 0),
                };
                match f.file().write_all(&buf) {
                    Ok(()) => Ok(((f, n + buf.len() as u64), buf)),
                    Err(e) => {
                        f.discard();
                        Err(e)
                    }
                }
            })
            .await;
        let (file, mut buf) = written?;
        buf.clear();
        self.buf = buf;
        self.file = Some(file);
        Ok(())
    }

    /// Inserts `bytes` at offset `at` of the text (within its first [`MEMORY`] octets:
    /// the trace headers). In memory, a splice; once the text has a file, a new file
    /// (made by what `maker` gives) gets the first `at` octets, `bytes`, and the rest
    /// of the old file, copied by the kernel (`copy_file_range`), on `rt`'s thread pool;
    /// the old file is thrown away. How a header known only at the end (the verdict's)
    /// goes at the top of a message already spooled, in bounded memory.
    pub(crate) async fn insert<R: Runtime, M>(
        &mut self,
        rt: &R,
        at: usize,
        bytes: &[u8],
        maker: impl FnOnce() -> M,
    ) -> io::Result<()>
    where
        M: FnOnce() -> io::Result<F> + Send + 'static,
    {
        let Some((old, n)) = self.file.take() else {
            let at = at.min(self.buf.len());
            self.buf.splice(at..at, bytes.iter().copied());
            return Ok(());
        };
        let make = maker();
        let bytes = bytes.to_vec();
        let moved = rt
            .unblock(move || {
                let mut old = old;
                let copied = (|| -> io::Result<(F, u64)> {
                    let mut new = make()?;
                    let at = (at as u64).min(n);
                    let mut head = vec![0; at as usize];
                    old.file().read_exact_at(&mut head, 0)?;
                    let file = new.file();
                    file.write_all(&head)?;
                    file.write_all(&bytes)?;
                    old.file().seek(io::SeekFrom::Start(at))?;
                    let mut rest = io::Read::take(&*old.file(), n - at);
                    io::copy(&mut rest, file)?;
                    Ok((new, n + bytes.len() as u64))
                })();
                old.discard();
                copied
            })
            .await;
        self.file = Some(moved?);
        Ok(())
    }

    /// The file, if the text outgrew memory, and what is still only in memory.
    pub(crate) fn into_parts(self) -> (Option<F>, Vec<u8>) {
        (self.file.map(|(f, _)| f), self.buf)
    }

    /// Throws the text away, its file included.
    pub(crate) fn discard(self) {
        if let Some((f, _)) = self.file {
            f.discard();
        }
    }
}

impl Spool<File> {
    /// [`Spool::write`] into an unnamed file of `dir`, with a fault named for the client:
    /// no room is `452 4.3.1`, anything else `451 4.3.0`.
    pub(crate) async fn write_in<R: Runtime>(
        &mut self,
        rt: &R,
        dir: &Path,
        bytes: &[u8],
    ) -> Result<(), DeliveryError> {
        let maker = || {
            let in_dir = dir.to_path_buf();
            move || unnamed_file(&in_dir)
        };
        self.write(rt, bytes, maker)
            .await
            .map_err(|e| spool_error(&e, dir))
    }

    /// [`Spool::insert`] with a new file, if one is needed, in `dir`; a fault named as
    /// [`Spool::write_in`]'s.
    pub(crate) async fn insert_in<R: Runtime>(
        &mut self,
        rt: &R,
        dir: &Path,
        at: usize,
        bytes: &[u8],
    ) -> Result<(), DeliveryError> {
        let maker = || {
            let in_dir = dir.to_path_buf();
            move || unnamed_file(&in_dir)
        };
        self.insert(rt, at, bytes, maker)
            .await
            .map_err(|e| spool_error(&e, dir))
    }

    /// The whole text as one file, positioned at its start, for a reader that must get
    /// a complete text or none (a pipe command's standard input: if the server dies
    /// while the command reads, the command still reads all of it). The spool's file
    /// with the rest written to it, or, for a text that stayed in memory, a file in
    /// memory (`memfd_create`). On `rt`'s thread pool.
    pub(crate) async fn into_file<R: Runtime>(self, rt: &R) -> io::Result<File> {
        let (file, buf) = self.into_parts();
        rt.unblock(move || {
            let mut f = match file {
                Some(f) => f,
                None => {
                    use nix::sys::memfd::{MFdFlags, memfd_create};
                    File::from(memfd_create(c"guerrilla-message", MFdFlags::MFD_CLOEXEC)?)
                }
            };
            f.write_all(&buf)?;
            f.seek(io::SeekFrom::Start(0))?;
            Ok(f)
        })
        .await
    }

    /// The text, complete: to be read in parts, as often as needed.
    pub(crate) fn freeze(self) -> Arc<Frozen> {
        Arc::new(Frozen {
            file: self.file.map(|(f, n)| (Arc::new(f), n)),
            tail: self.buf,
        })
    }
}

/// A spool file's fault: no room is `452 4.3.1`, anything else `451 4.3.0`; the cause
/// names the folder.
pub(crate) fn spool_error(e: &io::Error, dir: &Path) -> DeliveryError {
    let err = match e.kind() {
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => {
            DeliveryError::insufficient_storage()
        }
        _ => DeliveryError::transient(),
    };
    err.because(format_args!(
        "cannot spool the message in {}: {e}",
        dir.display()
    ))
}

/// A complete spool: its file (the first octets) and what follows in memory.
#[derive(Debug)]
pub(crate) struct Frozen {
    file: Option<(Arc<File>, u64)>,
    tail: Vec<u8>,
}

impl Frozen {
    /// The text's length.
    pub(crate) fn len(&self) -> u64 {
        self.file.as_ref().map_or(0, |(_, n)| *n) + self.tail.len() as u64
    }

    /// A reader of the octets in `range`, in pieces of up to [`CHUNK`].
    pub(crate) fn reader(self: &Arc<Self>, range: std::ops::Range<u64>) -> SpoolReader {
        SpoolReader {
            spool: Arc::clone(self),
            at: range.start,
            end: range.end.min(self.len()),
        }
    }
}

/// Reads part of a [`Frozen`] spool.
#[derive(Debug)]
pub(crate) struct SpoolReader {
    spool: Arc<Frozen>,
    at: u64,
    end: u64,
}

impl SpoolReader {
    /// The next piece, or `None` at the end. File reads run on `rt`'s thread pool.
    pub(crate) async fn next<R: Runtime>(&mut self, rt: &R) -> io::Result<Option<Vec<u8>>> {
        if self.at >= self.end {
            return Ok(None);
        }
        let in_file = self.spool.file.as_ref().map_or(0, |(_, n)| *n);
        let piece = if self.at < in_file {
            let (file, at) = (
                Arc::clone(&self.spool.file.as_ref().expect("in the file").0),
                self.at,
            );
            let want = CHUNK.min((self.end.min(in_file) - at) as usize);
            rt.unblock(move || -> io::Result<Vec<u8>> {
                let mut piece = vec![0; want];
                file.read_exact_at(&mut piece, at)?;
                Ok(piece)
            })
            .await?
        } else {
            let from = (self.at - in_file) as usize;
            let to = (self.end - in_file) as usize;
            self.spool.tail[from..to.min(from + CHUNK)].to_vec()
        };
        self.at += piece.len() as u64;
        Ok(Some(piece))
    }
}

/// A file with no name in `dir` (`O_TMPFILE`), or, where the file system cannot make
/// one, a named file removed at once.
fn unnamed_file(dir: &Path) -> io::Result<File> {
    use nix::fcntl::{OFlag, open};
    use nix::sys::stat::Mode;
    let flags = OFlag::O_TMPFILE | OFlag::O_RDWR | OFlag::O_CLOEXEC;
    match open(dir, flags, Mode::from_bits_truncate(0o600)) {
        Ok(fd) => Ok(File::from(fd)),
        Err(nix::errno::Errno::EOPNOTSUPP | nix::errno::Errno::EISDIR) => {
            static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let path = dir.join(format!(".guerrilla-spool-{}-{n}", std::process::id()));
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)?;
            std::fs::remove_file(&path)?;
            Ok(f)
        }
        Err(e) => Err(io::Error::new(
            io::Error::from(e).kind(),
            format!("cannot make a spool file in {}: {e}", dir.display()),
        )),
    }
}
