//! A message's text kept whole for a destination that sends it at the end (a pipe
//! command, an HTTP request with its `Content-Length`): in memory up to
//! [`SPOOL_MEMORY`] octets, then in an unnamed file of `GSMTP_SPOOL_DIR`, which the
//! kernel removes when it is closed, whatever happens to the process. A 25 MiB message
//! never sits in memory whole.

use std::fs::File;
use std::io::{self, Seek, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use crate::delivery::DeliveryError;
use crate::io::runtime::Runtime;

use super::maildir::SPOOL_MEMORY;

/// How much of the spool is read at a time when it is sent.
pub(crate) const CHUNK: usize = 64 * 1024;

/// A message's text, in memory or in an unnamed file.
#[derive(Debug)]
pub(crate) struct Spool {
    /// Octets not yet in the file (all of them while there is no file).
    buf: Vec<u8>,
    /// The file, once the text outgrew memory, and how much of it is written.
    file: Option<(File, u64)>,
}

impl Spool {
    /// A spool that starts with `prefix` (the trace headers).
    pub(crate) fn new(prefix: Vec<u8>) -> Self {
        Self {
            buf: prefix,
            file: None,
        }
    }

    /// Appends `bytes`; past [`SPOOL_MEMORY`] held in memory, they go to the file in
    /// `dir` (made on first use), on `rt`'s thread pool. A full disk is
    /// [`DeliveryError::insufficient_storage()`].
    pub(crate) async fn write<R: Runtime>(
        &mut self,
        rt: &R,
        dir: &Path,
        bytes: &[u8],
    ) -> Result<(), DeliveryError> {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() < SPOOL_MEMORY {
            return Ok(());
        }
        let buf = std::mem::take(&mut self.buf);
        let file = self.file.take();
        let in_dir = dir.to_path_buf();
        let written = rt
            .unblock(move || -> io::Result<((File, u64), Vec<u8>)> {
                let (mut f, n) = match file {
                    Some(f) => f,
                    None => (unnamed_file(&in_dir)?, 0),
                };
                f.write_all(&buf)?;
                Ok(((f, n + buf.len() as u64), buf))
            })
            .await;
        match written {
            Ok((file, mut buf)) => {
                buf.clear();
                self.buf = buf;
                self.file = Some(file);
                Ok(())
            }
            Err(e) => Err(spool_error(&e, dir)),
        }
    }

    /// The whole text as one file, positioned at its start, for a reader that must get
    /// a complete text or none (a pipe command's standard input: if the server dies
    /// while the command reads, the command still reads all of it). The spool's file
    /// with the rest written to it, or, for a text that stayed in memory, a file in
    /// memory (`memfd_create`). On `rt`'s thread pool.
    pub(crate) async fn into_file<R: Runtime>(self, rt: &R) -> io::Result<File> {
        let Self { buf, file } = self;
        rt.unblock(move || {
            let mut f = match file {
                Some((f, _)) => f,
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
