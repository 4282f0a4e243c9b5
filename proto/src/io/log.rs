//! Logging with tracing: one line per connection and per message, the transcript with
//! `GSMTP_VERBOSE=Y`, appended to `GSMTP_LOG_FILE`, which SIGHUP reopens (for logrotate).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::config::{Config, ConfigError};

/// The log file, reopened by [`LogFile::reopen`] after it was rotated.
#[derive(Debug)]
pub struct LogFile {
    path: String,
    file: Mutex<File>,
}

impl LogFile {
    fn open(path: &str) -> io::Result<File> {
        OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
    }

    /// Opens the file again under its name (after logrotate moved the old one away). On
    /// failure (its folder is not writable by the user the server runs as, say) the old
    /// file stays in use.
    pub fn reopen(&self) -> io::Result<()> {
        let fresh = Self::open(&self.path)?;
        *self.lock() = fresh;
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, File> {
        self.file
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One log line's writer: the file, locked for the line.
#[derive(Debug)]
pub struct LogLine<'a>(MutexGuard<'a, File>);

impl Write for LogLine<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// A `MakeWriter` for a shared [`LogFile`].
#[derive(Clone, Debug)]
struct Shared(Arc<LogFile>);

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Shared {
    type Writer = LogLine<'a>;
    fn make_writer(&'a self) -> Self::Writer {
        LogLine(self.0.lock())
    }
}

/// Whether the `GSMTP_LOG_FILE` setting names a file of the server's own (not standard
/// output or error).
pub(crate) fn is_file(setting: &str) -> bool {
    !matches!(setting, "" | "-" | "/dev/stdout" | "/dev/stderr")
}

/// Installs the global subscriber. `/dev/stdout` (the default), `-` and an empty value
/// log to standard output, `/dev/stderr` to standard error; anything else is a file,
/// created with mode 0600 if needed and appended to, returned so that SIGHUP can reopen
/// it. A second call in one process keeps the first subscriber.
pub fn init(cfg: &Config) -> Result<Option<Arc<LogFile>>, ConfigError> {
    let builder = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_target(false);
    match cfg.log_file.as_str() {
        _ if !is_file(&cfg.log_file) && cfg.log_file != "/dev/stderr" => {
            let _ = builder.with_writer(io::stdout).try_init();
            Ok(None)
        }
        "/dev/stderr" => {
            let _ = builder.with_writer(io::stderr).try_init();
            Ok(None)
        }
        path => {
            let file = LogFile::open(path).map_err(|e| ConfigError {
                key: "GSMTP_LOG_FILE".into(),
                message: format!("cannot open {path}: {e}"),
            })?;
            let log = Arc::new(LogFile {
                path: path.to_string(),
                file: Mutex::new(file),
            });
            let _ = builder.with_writer(Shared(Arc::clone(&log))).try_init();
            Ok(Some(log))
        }
    }
}
