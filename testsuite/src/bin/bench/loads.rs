//! The throughput loads: one checked `smtp-source` run, its sample, and counting the
//! messages a Maildir holds.

use std::fs;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::bare;
use crate::memory::{children_cpu_secs, cpu_secs};
use crate::opts::{Impl, Load, Target};
use crate::servers::{Env, Running};
use testsuite::Client;

// ---------------------------------------------------------------------------------------
// Maildir
// ---------------------------------------------------------------------------------------

/// Files under every `new/` and every `tmp/` below `root`.
pub(crate) fn maildir_files(root: &Path) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let (mut new, mut tmp) = (Vec::new(), Vec::new());
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = fs::read_dir(&dir) else { continue };
        let leaf = dir.file_name().and_then(|n| n.to_str()).unwrap_or("");
        for e in rd.flatten() {
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                stack.push(e.path());
            } else if leaf == "new" {
                new.push(e.path());
            } else if leaf == "tmp" {
                tmp.push(e.path());
            }
        }
    }
    (new, tmp)
}

// ---------------------------------------------------------------------------------------
// Throughput
// ---------------------------------------------------------------------------------------

/// The smtp-source flags of a load (without the address).
pub(crate) fn source_args(load: &Load) -> Vec<String> {
    let mut a: Vec<String> = vec!["-c".into()];
    if load.reuse {
        a.push("-d".into());
    }
    a.extend(
        [
            "-s",
            &load.sessions.to_string(),
            "-m",
            &load.messages.to_string(),
            "-l",
            &load.bytes.to_string(),
            "-M",
            "client.example",
            "-f",
            "bench@client.example",
            "-t",
            "user@example.com",
        ]
        .map(String::from),
    );
    a
}

#[derive(Clone, Debug)]
pub(crate) struct Sample {
    pub(crate) target: Target,
    pub(crate) load: Load,
    pub(crate) rep: usize,
    pub(crate) secs: f64,
    pub(crate) rate: f64,
    pub(crate) server_cpu: f64,
    pub(crate) source_cpu: f64,
}

/// Runs smtp-source with `load` against `addr` (speaking LMTP when `lmtp`), checked to
/// have completed every message. Returns its wall-clock seconds and its CPU seconds.
pub(crate) fn run_source(
    env: &Env,
    load: &Load,
    addr: SocketAddr,
    lmtp: bool,
    timeout: Duration,
) -> Result<(f64, f64), String> {
    let children_before = children_cpu_secs();
    let mut cmd = Command::new(&env.source);
    if lmtp {
        cmd.arg("-L");
    }
    cmd.args(source_args(load))
        .arg(addr.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run smtp-source: {e}"))?;
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    let status = loop {
        if let Some(st) = child.try_wait().map_err(|e| e.to_string())? {
            break st;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("smtp-source did not finish within {timeout:?}"));
        }
        thread::sleep(Duration::from_millis(2));
    };
    let secs = start.elapsed().as_secs_f64();
    let source_cpu = children_cpu_secs() - children_before;
    let out = out.join().unwrap_or_default();
    let err = err.join().unwrap_or_default();
    let counted = String::from_utf8_lossy(&out)
        .split(['\r', '\n'])
        .filter_map(|t| t.trim().parse::<usize>().ok())
        .next_back()
        .unwrap_or(0);
    if !status.success() || counted != load.messages {
        return Err(format!(
            "smtp-source: {status}, {counted} of {} messages completed; {}",
            load.messages,
            String::from_utf8_lossy(&err).trim()
        ));
    }
    Ok((secs, source_cpu))
}

/// One smtp-source run against `srv`, checked; for bare-maildir, one run of the bench's
/// own writer with the load's sessions, messages and size (the connection mode does not
/// apply to it). Returns the wall-clock seconds, the server's CPU seconds (bare-maildir:
/// its threads') and smtp-source's.
pub(crate) fn run_load(
    env: &Env,
    srv: &Running,
    load: &Load,
    timeout: Duration,
) -> Result<(f64, f64, f64), String> {
    if let Some(m) = &srv.maildir {
        let (new, tmp) = maildir_files(m);
        if !new.is_empty() || !tmp.is_empty() {
            return Err(format!("{} not empty before the run", m.display()));
        }
    }
    if srv.target.imp == Impl::Bare {
        let root = srv
            .maildir
            .as_deref()
            .ok_or("bare-maildir without a Maildir")?;
        let (secs, cpu) = bare::run(root, load.sessions, load.messages, load.bytes)?;
        check_stored(env, srv, load)?;
        return Ok((secs, cpu, 0.0));
    }
    let accepted_before = srv.accepted_count();
    let cpu_before = cpu_secs(srv.pid()).unwrap_or(0.0);
    let (secs, source_cpu) = run_source(env, load, srv.addr(), false, timeout)?;
    // The server's own count.
    if let Some(before) = accepted_before {
        let want = before + load.messages as u64;
        let end = Instant::now() + Duration::from_secs(5);
        let mut got = srv.accepted_count().unwrap_or(0);
        while got < want && Instant::now() < end {
            thread::sleep(Duration::from_millis(20));
            got = srv.accepted_count().unwrap_or(0);
        }
        if got != want {
            return Err(format!(
                "the server counted {} accepted messages, expected {}",
                got - before,
                load.messages
            ));
        }
    }
    check_stored(env, srv, load)?;
    let server_cpu = cpu_secs(srv.pid()).unwrap_or(0.0) - cpu_before;
    Ok((secs, server_cpu, source_cpu))
}

/// Maildir mode: exactly the load's messages in `new/` and none in `tmp/`; then moves
/// them to the trash.
fn check_stored(env: &Env, srv: &Running, load: &Load) -> Result<(), String> {
    if let Some(m) = &srv.maildir {
        let (new, tmp) = maildir_files(m);
        if new.len() != load.messages || !tmp.is_empty() {
            return Err(format!(
                "{} files in new/ and {} in tmp/, expected {} and 0",
                new.len(),
                tmp.len(),
                load.messages
            ));
        }
        srv.clear_maildir(new, env.trash_limit)?;
    }
    Ok(())
}

fn drain(r: Option<impl Read + Send + 'static>) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(mut r) = r {
            let _ = r.read_to_end(&mut v);
        }
        v
    })
}

/// Sends `n` copies of `message` from `from` to `to` over `sessions` connections at once,
/// each reused for its share: greeting, EHLO, then `xclient` (a command a trusted client
/// may send, answered `220`, then EHLO again) when given. Checks that every message was
/// answered `250`. The client side of the in-process benchmarks (`--verdicts`,
/// `--filters`).
pub(crate) fn drive(
    addr: SocketAddr,
    sessions: usize,
    n: usize,
    message: &Arc<Vec<u8>>,
    (from, to): (&'static str, &'static str),
    xclient: Option<&str>,
) -> Result<(), String> {
    let workers: Vec<_> = (0..sessions)
        .map(|i| {
            let count = n / sessions + usize::from(i < n % sessions);
            let message = Arc::clone(message);
            let xclient = xclient.map(str::to_string);
            thread::spawn(move || -> Result<(), String> {
                if count == 0 {
                    return Ok(());
                }
                let mut c = Client::connect(addr);
                if c.reply().code != 220 {
                    return Err("no greeting".into());
                }
                c.ehlo("client.example");
                if let Some(x) = &xclient {
                    let r = c.cmd(x);
                    if r.code != 220 {
                        return Err(format!("XCLIENT: {r:?}"));
                    }
                    c.ehlo("client.example");
                }
                for _ in 0..count {
                    let r = c.send_mail(from, &[to], &message);
                    if r.code != 250 {
                        return Err(format!("{r:?}"));
                    }
                }
                c.cmd("QUIT");
                Ok(())
            })
        })
        .collect();
    for w in workers {
        w.join().map_err(|_| "a client panicked")??;
    }
    Ok(())
}
