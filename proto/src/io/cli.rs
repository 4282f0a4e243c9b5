//! The command line both binaries share: `--config FILE`, `--if ADDR`, `-v`, `--help`,
//! `--version`, and the original's single-dash forms `-config=FILE`, `-if=ADDR`, `-v=y`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser};

use super::runtime::Runtime;
use crate::config::{Config, ConfigError, parse_addr};

/// The file read when `--config` is not given, if it exists (the original's default).
pub const DEFAULT_CONFIG: &str = "goguerrilla.conf";

/// Command-line arguments.
#[derive(Parser, Debug)]
#[command(
    version,
    about = "Guerrilla SMTPd: a receive-only SMTP server. It takes mail for its own domains \
             and stores it (Maildir folders, or a pipe, HTTP, LMTP or S3 destination). \
             It never sends or relays mail."
)]
pub struct Args {
    /// The configuration file, in the original's JSON format [default: goguerrilla.conf if present]
    #[arg(long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The interface and port to listen on, such as 127.0.0.1:2525 (overrides GSTMP_LISTEN_INTERFACE)
    #[arg(long = "if", value_name = "ADDR")]
    pub interface: Option<String>,
    /// Log each session's transcript: -v, -v=y or -v=n
    #[arg(short = 'v', long = "verbose", value_name = "y|n", num_args = 0..=1, default_missing_value = "y", require_equals = true)]
    pub verbose: Option<String>,
    /// Check the configuration (keys, values, TLS files, user and group, the destination's
    /// settings), print it with secrets masked, and exit: 0 if it can be used, 2 if not
    #[arg(long = "check-config")]
    pub check_config: bool,
    /// With --check-config: also try the destination now, delivering nothing (Maildir: a
    /// file is written and removed; pipe: the command starts; http: the receiver
    /// answers; lmtp: LHLO; s3: the bucket takes these credentials)
    #[arg(long = "live", requires = "check_config")]
    pub live: bool,
}

/// Rewrites the original's Go-style flags (`-config=x`, `-if x`) to clap's (`--config=x`).
pub fn rewrite_args(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    args.into_iter()
        .enumerate()
        .map(|(i, arg)| {
            let Some(s) = arg.to_str().filter(|_| i > 0) else {
                return arg;
            };
            for long in [
                "config",
                "if",
                "verbose",
                "help",
                "version",
                "check-config",
                "live",
            ] {
                let single = format!("-{long}");
                if s == single || s.starts_with(&format!("{single}=")) {
                    return OsString::from(format!("-{s}"));
                }
            }
            arg
        })
        .collect()
}

/// Loads the configuration the arguments point to, with the CLI overrides applied.
/// Returns it with the warnings to log.
pub fn load(args: &Args) -> Result<(Config, Vec<String>), ConfigError> {
    let path = args.config.clone().or_else(|| {
        Path::new(DEFAULT_CONFIG)
            .exists()
            .then(|| DEFAULT_CONFIG.into())
    });
    let (mut cfg, warnings, host_set) = match &path {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
                key: String::new(),
                message: format!("cannot read config file {}: {e}", path.display()),
            })?;
            let (cfg, warnings) = Config::from_json(&text)?;
            // Named, not empty, and not in a comment: else the machine's name is used.
            let named =
                serde_json::from_str::<serde_json::Value>(&crate::config::strip_comments(&text))
                    .ok()
                    .and_then(|v| v.get("GSMTP_HOST_NAME").cloned())
                    .is_some_and(|v| match v {
                        serde_json::Value::Null => false,
                        serde_json::Value::String(s) => !s.trim().is_empty(),
                        _ => true,
                    });
            (cfg, warnings, named)
        }
        None => (Config::default(), Vec::new(), false),
    };
    if !host_set && let Some(name) = system_host_name() {
        cfg.host_name = name;
    }
    if let Some(addr) = &args.interface {
        cfg.listen = parse_addr(addr).ok_or_else(|| ConfigError {
            key: "--if".into(),
            message: format!("expected an address such as 127.0.0.1:2525, got {addr:?}"),
        })?;
    }
    if let Some(v) = &args.verbose {
        cfg.set_json("GSMTP_VERBOSE", &serde_json::Value::String(v.clone()))
            .map_err(|e| ConfigError {
                key: "-v".into(),
                message: e.message,
            })?;
    }
    cfg.validate()?;
    Ok((cfg, warnings))
}

/// What `--check-config` checks beyond the keys' values, without starting anything: the
/// TLS certificate and key load, the user and group exist, the destination's settings
/// hold (a hand-off's command, URL, CA file or credentials; for Maildir, that the root
/// or the folder it would be made in is writable). Run as the invoking user, which may
/// not be the one the server drops to. With `live`, the destination is opened as the
/// server would and asked to [`super::Deliver::probe`] itself, within a minute; an error
/// names the destination's key and what failed.
pub fn check<R: Runtime>(rt: &R, cfg: &Config, live: bool) -> Result<(), ConfigError> {
    if let (Some(cert), Some(key)) = (&cfg.tls_cert, &cfg.tls_key) {
        super::tls::acceptor(cert, key)?;
    }
    super::privilege::Target::resolve(cfg)?;
    if live {
        use super::Deliver as _;
        use crate::config::Storage;
        let key = match cfg.storage {
            Storage::Maildir => "GSMTP_MAILDIR",
            Storage::Pipe => "GSMTP_PIPE_COMMAND",
            Storage::Http => "GSMTP_HTTP_URL",
            Storage::Lmtp => "GSMTP_LMTP_ADDR",
            Storage::S3 => "GSMTP_S3_ENDPOINT",
            Storage::Discard => "GSMTP_STORAGE",
        };
        let destination = super::deliver::Destination::open(rt, cfg)?;
        let limit = async {
            async_io::Timer::after(std::time::Duration::from_secs(60)).await;
            Err(crate::DeliveryError::timeout().because("no answer within 60 s"))
        };
        let probed = async_io::block_on(futures_lite::future::or(destination.probe(), limit));
        return probed.map_err(|e| ConfigError {
            key: key.into(),
            message: format!(
                "the {} destination failed a live check: {}",
                cfg.storage,
                e.cause().map_or_else(|| e.to_string(), str::to_string)
            ),
        });
    }
    if cfg.storage == crate::config::Storage::Maildir {
        let mut dir = cfg.maildir.as_path();
        while !dir.exists() {
            dir = dir
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or_else(|| Path::new("."));
        }
        let flags = nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK;
        nix::unistd::access(dir, flags).map_err(|e| ConfigError {
            key: "GSMTP_MAILDIR".into(),
            message: format!("cannot write in {}: {e}", dir.display()),
        })?;
    } else {
        super::deliver::Destination::open(rt, cfg)?;
    }
    Ok(())
}

/// SIGHUP: reopens the log file (logrotate's postrotate), then reads the configuration
/// file again and gives it to the sessions that start from now on. A file that does not
/// load, or settings that cannot be used, are refused with one log line: the running
/// configuration stays.
fn reload<R: Runtime>(args: &Args, server: &super::server::Server<R>, log: &super::log::Log) {
    match log.reopen() {
        Ok(true) => tracing::info!("log file reopened"),
        Ok(false) => {}
        Err(e) => tracing::warn!(
            error = %e,
            "cannot reopen the log file; still writing to the old one"
        ),
    }
    let applied = load(args).and_then(|(cfg, warnings)| {
        let restart = server.reload(cfg)?;
        Ok((warnings, restart))
    });
    let (warnings, mut restart) = match applied {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "configuration not reloaded; the running one stays");
            return;
        }
    };
    for w in &warnings {
        tracing::warn!("{w}");
    }
    match log.follow(&server.config()) {
        Ok(more) => restart.extend(more),
        Err(e) => tracing::warn!(error = %e, "log file not changed"),
    }
    if restart.is_empty() {
        tracing::info!(active = server.active(), "configuration reloaded");
    } else {
        tracing::info!(
            active = server.active(),
            restart_needed = %restart.join(","),
            "configuration reloaded; changes to restart_needed keys take effect after a restart"
        );
    }
}

/// This machine's name, if it is a valid domain.
fn system_host_name() -> Option<String> {
    let name = nix::unistd::gethostname().ok()?.into_string().ok()?;
    matches!(crate::syntax::domain(&name), Ok(("", _))).then_some(name)
}

/// The whole program: parse arguments, load the configuration, start, run until SIGTERM
/// or SIGINT, shut down gracefully. Exits with status 2 on a configuration error.
pub fn main<R: Runtime>(rt: R, name: &'static str) -> ExitCode {
    let argv = rewrite_args(std::env::args_os());
    let matches = Args::command()
        .name(name)
        .bin_name(name)
        .get_matches_from(argv);
    let args = match Args::from_arg_matches(&matches) {
        Ok(a) => a,
        Err(e) => e.exit(),
    };
    let fail = |e: ConfigError| {
        eprintln!("{name}: {e}");
        ExitCode::from(2)
    };
    let (cfg, warnings) = match load(&args) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    if args.check_config {
        for w in &warnings {
            eprintln!("{name}: warning: {w}");
        }
        return match check(&rt, &cfg, args.live) {
            Ok(()) => {
                print!("{}", cfg.effective_json());
                eprintln!("{name}: the configuration can be used");
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        };
    }
    let log = match super::log::init(&cfg) {
        Ok(log) => log,
        Err(e) => return fail(e),
    };
    for w in &warnings {
        tracing::warn!("{w}");
    }
    let pid_file = cfg.pid_file.clone();
    // Caught from before the listeners open: a SIGHUP (a reload) or SIGTERM that comes as
    // soon as the port answers must not find the default action, which ends the process.
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = match signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{name}: cannot wait for signals: {e}");
            return ExitCode::FAILURE;
        }
    };
    let server = match super::server::start(rt, cfg) {
        Ok(s) => s,
        // The listen address came from the command line: name the flag, not the key.
        Err(mut e) if e.key == "GSTMP_LISTEN_INTERFACE" && args.interface.is_some() => {
            e.key = "--if".into();
            return fail(e);
        }
        Err(e) => return fail(e),
    };
    let c = server.config();
    tracing::info!(
        smtp = %server.local_addr(),
        implicit_tls = server.tls_local_addr().map(tracing::field::display),
        auth_http = server.auth_local_addr().map(tracing::field::display),
        metrics = server.metrics_local_addr().map(tracing::field::display),
        host = %c.host_name,
        storage = %c.storage,
        maildir = %c.maildir.display(),
        starttls = c.tls_enabled(),
        threads = super::server::session_threads(&c),
        "{name} {} started", env!("CARGO_PKG_VERSION")
    );
    for sig in signals.forever() {
        if sig == SIGHUP {
            reload(&args, &server, &log);
            continue;
        }
        tracing::info!(signal = sig, active = server.active(), "shutting down");
        break;
    }
    server.shutdown(server.config().shutdown_grace);
    if let Some(path) = &pid_file {
        let _ = std::fs::remove_file(path);
    }
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        let argv = rewrite_args(args.iter().map(OsString::from));
        Args::try_parse_from(argv)
    }

    #[test]
    fn original_and_modern_flags() {
        let a = parse(&["x", "-config=/etc/g.conf", "-if=127.0.0.1:25", "-v=n"]).unwrap();
        assert_eq!(a.config.as_deref(), Some(Path::new("/etc/g.conf")));
        assert_eq!(a.interface.as_deref(), Some("127.0.0.1:25"));
        assert_eq!(a.verbose.as_deref(), Some("n"));
        let b = parse(&["x", "--config", "c.json", "--if", ":2525", "-v"]).unwrap();
        assert_eq!(b.config.as_deref(), Some(Path::new("c.json")));
        assert_eq!(b.verbose.as_deref(), Some("y"));
        let c = parse(&["x", "-config", "c.json"]).unwrap();
        assert_eq!(c.config.as_deref(), Some(Path::new("c.json")));
        assert!(parse(&["x", "--bogus"]).is_err());
    }

    #[test]
    fn host_name_commented_out_or_empty_is_the_machines() {
        let dir = std::env::temp_dir().join(format!("gsmtpd-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let machine = system_host_name().unwrap_or_else(|| "localhost".into());
        for (text, want) in [
            (
                "{\n// \"GSMTP_HOST_NAME\": \"commented.example\",\n}",
                machine.as_str(),
            ),
            ("{\"GSMTP_HOST_NAME\": \"\"}", machine.as_str()),
            ("{\"GSMTP_HOST_NAME\": \"mx.example\"}", "mx.example"),
        ] {
            let file = dir.join("g.conf");
            std::fs::write(&file, text).unwrap();
            let args = Args {
                config: Some(file),
                interface: None,
                verbose: None,
                check_config: false,
                live: false,
            };
            assert_eq!(load(&args).unwrap().0.host_name, want, "{text}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bad_overrides_name_the_flag() {
        let args = Args {
            config: None,
            interface: Some("nowhere".into()),
            verbose: None,
            check_config: false,
            live: false,
        };
        let e = load(&args).unwrap_err();
        assert_eq!(e.key, "--if");
        assert!(e.to_string().starts_with("option --if: "), "{e}");
        let args = Args {
            config: Some("/nonexistent/g.conf".into()),
            interface: None,
            verbose: None,
            check_config: false,
            live: false,
        };
        assert!(
            load(&args)
                .unwrap_err()
                .to_string()
                .contains("cannot read config file")
        );
    }
}
