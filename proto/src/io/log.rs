//! Logging with tracing: one line per connection and per message, the transcript with
//! `GSMTP_VERBOSE=Y`, as text or (`GSMTP_LOG_FORMAT=json`) one JSON object per line,
//! appended to `GSMTP_LOG_FILE`, which SIGHUP reopens (for logrotate) or, when the
//! reloaded configuration names another, replaces.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::config::{Config, ConfigError, LogFormat};

/// Where log lines go now.
#[derive(Debug)]
enum Sink {
    Stdout,
    Stderr,
    File { path: String, file: File },
}

impl Sink {
    /// The sink a `GSMTP_LOG_FILE` value names: `/dev/stdout` (the default), `-` and an
    /// empty value are standard output, `/dev/stderr` standard error, anything else a
    /// file, created with mode 0600 if needed and appended to.
    fn open(setting: &str) -> io::Result<Self> {
        Ok(match setting {
            "/dev/stderr" => Self::Stderr,
            s if !is_file(s) => Self::Stdout,
            path => Self::File {
                path: path.to_string(),
                file: OpenOptions::new()
                    .create(true)
                    .append(true)
                    .mode(0o600)
                    .open(path)?,
            },
        })
    }

    fn setting(&self) -> &str {
        match self {
            Self::Stdout => "/dev/stdout",
            Self::Stderr => "/dev/stderr",
            Self::File { path, .. } => path,
        }
    }
}

/// The log's destination, shared by every line and changed by SIGHUP.
#[derive(Debug)]
pub struct Log {
    sink: Mutex<Sink>,
    format: LogFormat,
}

impl Log {
    /// Opens the file again under its name (after logrotate moved the old one away).
    /// Returns whether there is a file to reopen. On failure (its folder is not writable
    /// by the user the server runs as, say) the old file stays in use.
    pub fn reopen(&self) -> io::Result<bool> {
        let setting = self.lock().setting().to_string();
        if !is_file(&setting) {
            return Ok(false);
        }
        *self.lock() = Sink::open(&setting)?;
        Ok(true)
    }

    /// Follows a reloaded configuration: another `GSMTP_LOG_FILE` is opened and used from
    /// now on (on failure the old one stays, and the error names the key). Returns the
    /// settings that only a restart can change, if `cfg` changes them.
    pub fn follow(&self, cfg: &Config) -> Result<Vec<&'static str>, ConfigError> {
        if self.lock().setting() != cfg.log_file {
            let sink = Sink::open(&cfg.log_file).map_err(|e| ConfigError {
                key: "GSMTP_LOG_FILE".into(),
                message: format!("cannot open {}: {e}", cfg.log_file),
            })?;
            *self.lock() = sink;
        }
        Ok(if cfg.log_format == self.format {
            Vec::new()
        } else {
            vec!["GSMTP_LOG_FORMAT"]
        })
    }

    fn lock(&self) -> MutexGuard<'_, Sink> {
        self.sink
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One log line's writer: the sink, locked for the line.
#[derive(Debug)]
pub struct LogLine<'a>(MutexGuard<'a, Sink>);

impl Write for LogLine<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut *self.0 {
            Sink::Stdout => io::stdout().write(buf),
            Sink::Stderr => io::stderr().write(buf),
            Sink::File { file, .. } => file.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match &mut *self.0 {
            Sink::Stdout => io::stdout().flush(),
            Sink::Stderr => io::stderr().flush(),
            Sink::File { file, .. } => file.flush(),
        }
    }
}

/// A `MakeWriter` for the shared [`Log`].
#[derive(Clone, Debug)]
struct Shared(Arc<Log>);

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

/// Installs the global subscriber, writing text or JSON lines to `GSMTP_LOG_FILE`; the
/// returned [`Log`] is what SIGHUP reopens or points elsewhere. A second call in one
/// process keeps the first subscriber.
pub fn init(cfg: &Config) -> Result<Arc<Log>, ConfigError> {
    let sink = Sink::open(&cfg.log_file).map_err(|e| ConfigError {
        key: "GSMTP_LOG_FILE".into(),
        message: format!("cannot open {}: {e}", cfg.log_file),
    })?;
    let log = Arc::new(Log {
        sink: Mutex::new(sink),
        format: cfg.log_format,
    });
    let builder = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_target(false)
        .with_writer(Shared(Arc::clone(&log)));
    let _ = match cfg.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    Ok(log)
}
