//! Logging with tracing: one line per connection and per message, the transcript with
//! `GSMTP_VERBOSE=Y`, appended to `GSMTP_LOG_FILE`.

use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Mutex;

use crate::config::{Config, ConfigError};

/// Installs the global subscriber. `/dev/stdout` (the default), `-` and an empty value
/// log to standard output, `/dev/stderr` to standard error; anything else is a file,
/// created with mode 0600 if needed and appended to.
pub fn init(cfg: &Config) -> Result<(), ConfigError> {
    let builder = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_target(false);
    let result = match cfg.log_file.as_str() {
        "" | "-" | "/dev/stdout" => builder.with_writer(io::stdout).try_init(),
        "/dev/stderr" => builder.with_writer(io::stderr).try_init(),
        path => {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| ConfigError {
                    key: "GSMTP_LOG_FILE".into(),
                    message: format!("cannot open {path}: {e}"),
                })?;
            builder.with_writer(Mutex::new(file)).try_init()
        }
    };
    // Already installed (a second server in one process): keep the first.
    let _ = result;
    Ok(())
}
