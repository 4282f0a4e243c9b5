//! `GSMTP_STORAGE=pipe`: each message is handed to a command on its standard input, the
//! envelope in its environment, as Postfix's pipe(8) and chasquid's hooks do.
//!
//! The message is spooled while it arrives; the command runs once it is complete, so its
//! lifetime does not depend on the client's speed, and its standard input is a file that
//! already holds the whole message (the spool's file, or a file in memory), never a pipe
//! the server writes into: if the server dies while the command reads, the command still
//! reads all of it, so a crash can only ever cause a duplicate, not a cut copy. It runs
//! without a shell (its arguments split as a shell would, `${recipient}` and the other
//! macros of [`crate::deliver::expand`] replaced), as the user the server runs as, in a
//! process group of its own, with an environment of `PATH` and the `SMTP_*` variables of
//! [`crate::deliver::environment`] alone. Its exit status (or an RFC 3463 code at the
//! start of its output) is the reply ([`crate::deliver::pipe_result`]). Past
//! `GSMTP_PIPE_TIMEOUT` its whole process group is killed: `451 4.4.7`. At most
//! `GSMTP_PIPE_CONCURRENCY` commands run at once, and a message whose time is up when its
//! turn comes never starts its command.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use async_lock::Semaphore;
use futures_lite::io::AsyncReadExt;
use futures_lite::{FutureExt as _, future};

use super::spool::Spool;
use super::{Deliver, Message, Transaction};
use crate::config::{Config, ConfigError, PipeConfig};
use crate::deliver::{self as pure, pipe::Exit};
use crate::delivery::DeliveryError;
use crate::delivery::Envelope;
use crate::delivery::Recipient;
use crate::io::runtime::Runtime;
use crate::reply;
use crate::syntax::{MailParams, ReversePath};
use crate::verdict::Verdict;

/// How much of a command's output is kept (the rest is read and dropped).
const MAX_OUTPUT: usize = 4096;

/// The pipe destination.
#[derive(Debug)]
pub struct Pipe<R: Runtime>(Arc<Inner<R>>);

/// What the pipe destination's transactions share.
#[derive(Debug)]
struct Inner<R: Runtime> {
    rt: R,
    cfg: PipeConfig,
    host: String,
    spool_dir: PathBuf,
    /// The program, found on `PATH` at start.
    program: PathBuf,
    path_env: String,
    slots: Arc<Semaphore>,
}

/// A transaction of the pipe destination: how many recipients it has.
#[derive(Debug)]
pub struct PipeTransaction<R: Runtime> {
    pipe: Arc<Inner<R>>,
    recipients: usize,
}

/// A message of the pipe destination: its envelope and its text, spooled.
#[derive(Debug)]
pub struct PipeMessage<R: Runtime> {
    pipe: Arc<Inner<R>>,
    env: Box<Envelope>,
    spool: Spool,
    /// Where the verdict's `Authentication-Results` field goes in the spool.
    results_at: usize,
}

impl<R: Runtime> Pipe<R> {
    /// Checks that the command can be run (found, executable) and the spool directory
    /// is there; errors name the key at fault.
    pub fn open(rt: R, cfg: &Config) -> Result<Self, ConfigError> {
        let fail = |key: &str, message: String| ConfigError {
            key: key.into(),
            message,
        };
        let path_env = std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into());
        let name = cfg.pipe.command.first().ok_or_else(|| {
            fail(
                "GSMTP_PIPE_COMMAND",
                "GSMTP_STORAGE=pipe needs a command".into(),
            )
        })?;
        let program = find_program(name, &path_env).ok_or_else(|| {
            fail(
                "GSMTP_PIPE_COMMAND",
                format!("{name}: no such executable file (searched PATH={path_env})"),
            )
        })?;
        let spool_dir = super::spool_dir(cfg)?;
        Ok(Self(Arc::new(Inner {
            rt,
            cfg: cfg.pipe.clone(),
            host: cfg.host_name.clone(),
            spool_dir,
            program,
            path_env,
            slots: Arc::new(Semaphore::new(cfg.pipe.concurrency)),
        })))
    }
}

impl<R: Runtime> Inner<R> {
    /// Runs the command over the message; the whole of it is bounded by the timeout
    /// (waiting for a turn included). A command whose time is up by the time its turn
    /// comes is never started: the timer is asked first, and the clock again once the
    /// turn is taken, so no command can deliver after its `451` went out.
    async fn run(
        &self,
        env: &Envelope,
        verdict: &Verdict,
        spool: Spool,
    ) -> Result<(), DeliveryError> {
        let started = Instant::now();
        let deadline = started + self.cfg.timeout;
        let input = spool
            .into_file(&self.rt)
            .await
            .map_err(|e| super::spool::spool_error(&e, &self.spool_dir))?;
        // Whether the command was started: a message whose time ran out while it waited
        // for its turn says so in the log.
        let spawned = std::sync::atomic::AtomicBool::new(false);
        let late = || {
            let cause = if spawned.load(std::sync::atomic::Ordering::Relaxed) {
                format!(
                    "{} did not finish within GSMTP_PIPE_TIMEOUT ({} s)",
                    self.program.display(),
                    self.cfg.timeout.as_secs_f64()
                )
            } else {
                format!(
                    "GSMTP_PIPE_TIMEOUT ({} s) passed while the message waited for one of \
                     the GSMTP_PIPE_CONCURRENCY ({}) runs: the command was not started",
                    self.cfg.timeout.as_secs_f64(),
                    self.cfg.concurrency
                )
            };
            DeliveryError::timeout().because(cause)
        };
        let timer = async {
            async_io::Timer::at(deadline).await;
            Err(late())
        };
        let run = async {
            let _slot = self.slots.acquire().await;
            if Instant::now() >= deadline {
                return Err(late());
            }
            spawned.store(true, std::sync::atomic::Ordering::Relaxed);
            self.spawn_and_wait(env, verdict, input, started).await
        };
        timer.or(run).await
    }

    /// Starts the command with `input` (complete, at its start) as its standard input,
    /// and waits for its end.
    async fn spawn_and_wait(
        &self,
        env: &Envelope,
        verdict: &Verdict,
        input: std::fs::File,
        started: Instant,
    ) -> Result<(), DeliveryError> {
        let vars = pure::pipe::macro_values(env);
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut std_cmd = std::process::Command::new(&self.program);
        std_cmd
            .args(
                self.cfg.command[1..]
                    .iter()
                    .map(|a| pure::pipe::expand(a, &vars)),
            )
            .env_clear()
            .env("PATH", &self.path_env)
            .envs(pure::pipe::environment(env, verdict));
        std::os::unix::process::CommandExt::process_group(&mut std_cmd, 0);
        let mut cmd = async_process::Command::from(std_cmd);
        cmd.stdin(Stdio::from(input))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let program = self.program.display();
        let mut child = cmd.spawn().map_err(|e| {
            DeliveryError::transient()
                .with_text(CANNOT_RUN)
                .because(format_args!("cannot run {program}: {e}"))
        })?;
        let pgid = child.id();
        // The group is killed whatever happens next: on a timeout (this future is then
        // dropped) or when the command left children behind.
        let _group = KillGroup(pgid);
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(DeliveryError::transient()
                .with_text(CANNOT_RUN)
                .because(format_args!("{program}: no pipe for its output")));
        };
        let (mut out, err) = future::zip(read_bounded(stdout), read_bounded(stderr)).await;
        let status = child.status().await.map_err(|e| {
            DeliveryError::transient()
                .with_text(CANNOT_RUN)
                .because(format_args!("cannot wait for {program}: {e}"))
        })?;
        out.extend_from_slice(&err);
        let exit = match (
            status.code(),
            std::os::unix::process::ExitStatusExt::signal(&status),
        ) {
            (Some(code), _) => Exit::Status(code),
            (None, Some(sig)) => Exit::Signal(sig),
            (None, None) => Exit::Signal(0),
        };
        pure::pipe::result(exit, &out).map_err(|e| {
            let first = out.split(|b| *b == b'\n').next().unwrap_or_default();
            e.because(format_args!(
                "{program} ended with {exit} after {:.2} s; output: {}",
                started.elapsed().as_secs_f64(),
                crate::syntax::escape_for_log(first)
            ))
        })
    }
}

/// The reply's text when the command cannot be run at all (it was removed, it lost its
/// execute bit, the system is out of processes).
const CANNOT_RUN: &str = "Error: cannot run the delivery command, try again later";

/// Kills a process group when dropped (if it is still there).
struct KillGroup(u32);

impl Drop for KillGroup {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.0) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// Reads a stream to its end, keeping its first [`MAX_OUTPUT`] octets.
async fn read_bounded(mut r: impl futures_lite::AsyncRead + Unpin) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut buf = vec![0u8; 4096];
    while let Ok(n) = r.read(&mut buf).await {
        if n == 0 {
            break;
        }
        let room = MAX_OUTPUT.saturating_sub(kept.len());
        kept.extend_from_slice(&buf[..n.min(room)]);
    }
    kept
}

/// `name` itself when it holds a `/`, else the first executable file of that name in
/// `path` (as a shell finds commands).
fn find_program(name: &str, path: &str) -> Option<PathBuf> {
    let executable =
        |p: &Path| nix::unistd::access(p, nix::unistd::AccessFlags::X_OK).is_ok() && p.is_file();
    if name.contains('/') {
        let p = PathBuf::from(name);
        return executable(&p).then_some(p);
    }
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(name))
        .find(|p| executable(p))
}

impl<R: Runtime> Deliver for Pipe<R> {
    type Transaction = PipeTransaction<R>;

    fn name(&self) -> &'static str {
        "pipe"
    }

    /// The command starts: it is run with an empty environment but `PATH` and an input
    /// that never ends, and its process group is killed at once, before it can have
    /// read anything (a command that stores what it reads stores nothing).
    async fn probe(&self) -> Result<(), DeliveryError> {
        let pipe = &self.0;
        let program = pipe.program.display();
        let mut cmd = std::process::Command::new(&pipe.program);
        cmd.args(
            pipe.cfg.command[1..]
                .iter()
                .map(|a| pure::pipe::expand(a, &[])),
        )
        .env_clear()
        .env("PATH", &pipe.path_env)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut child = cmd.spawn().map_err(|e| {
            DeliveryError::transient()
                .with_text(CANNOT_RUN)
                .because(format_args!("cannot run {program}: {e}"))
        })?;
        drop(KillGroup(child.id()));
        let _ = child.wait();
        Ok(())
    }

    async fn start(
        &self,
        _: &ReversePath<'static>,
        _: &MailParams,
    ) -> Result<PipeTransaction<R>, DeliveryError> {
        Ok(PipeTransaction {
            pipe: Arc::clone(&self.0),
            recipients: 0,
        })
    }
}

impl<R: Runtime> Transaction for PipeTransaction<R> {
    type Message = PipeMessage<R>;

    /// With `GSMTP_PIPE_PER_RECIPIENT=Y`, a second recipient gets `452 4.5.3` (RFC 5321
    /// §4.5.3.1.10: the client sends it again in another transaction).
    async fn add_recipient(&mut self, _: &Recipient) -> Result<(), DeliveryError> {
        if self.pipe.cfg.per_recipient && self.recipients >= 1 {
            return Err(DeliveryError::reply(reply::TOO_MANY_RCPTS));
        }
        self.recipients += 1;
        Ok(())
    }

    async fn begin(self, env: &Envelope) -> Result<PipeMessage<R>, DeliveryError> {
        let (prefix, results_at) = pure::prefix(env, &self.pipe.host, SystemTime::now(), true);
        Ok(PipeMessage {
            pipe: self.pipe,
            env: Box::new(env.clone()),
            spool: Spool::new(prefix),
            results_at,
        })
    }
}

impl<R: Runtime> Message for PipeMessage<R> {
    async fn write(&mut self, bytes: &[u8]) -> Result<(), DeliveryError> {
        let pipe = &self.pipe;
        self.spool.write_in(&pipe.rt, &pipe.spool_dir, bytes).await
    }

    async fn commit(mut self, verdict: &Verdict) -> Result<(), DeliveryError> {
        let pipe = &self.pipe;
        let results = verdict.header_fields(&pipe.host);
        if !results.is_empty() {
            self.spool
                .insert_in(&pipe.rt, &pipe.spool_dir, self.results_at, &results)
                .await?;
        }
        Box::pin(pipe.run(&self.env, verdict, self.spool)).await
    }
}
