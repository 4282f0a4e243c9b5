//! The sender checks' cost (issue 18): `guerrilla-smol` with `GSMTP_VERIFY=all` next to
//! the same binary with the checks off, in discard and in durable Maildir mode, in one
//! run, alternating. 50 sessions, connections reused, each sending 4 KiB messages signed
//! with rsa-sha256 by `dkimsign` (From `dkim.example`, DMARC `p=reject`, aligned), the
//! envelope sender's SPF passing; the records come from a private dnsmasq and are in
//! the cache before the first timed run (a warm cache, as a busy server has).
//!
//! Every run is checked: every message answered `250` and counted in the log; in Maildir
//! mode, as many files stored, and with the checks on, a stored message says
//! `dkim=pass` and `dmarc=pass`. Besides the rate, each run's server CPU time per
//! message (from `/proc/<pid>/stat`) gives the cost of the checks per message.

use std::fmt::Write as _;
use std::fs;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use testsuite::interop::{Zones, text};

use crate::loads::{drive, maildir_files};
use crate::memory::cpu_secs;
use crate::opts::{Impl, Mode, Opts, Target};
use crate::report::{group, median};
use crate::servers::{Env, Running};

/// Sessions at once.
const SESSIONS: usize = 50;
/// The body of each message, about 4 KiB of numbered lines.
fn body() -> String {
    (0..52).fold(String::new(), |mut s, i| {
        let _ = write!(s, "{i:04} {}\r\n", "abcdefghij".repeat(7));
        s
    })
}

/// One figure: a mode, checks on or off, one repetition.
#[derive(Clone, Debug)]
struct Figure {
    mode: &'static str,
    checks: bool,
    rate: f64,
    /// Server CPU time per message, in microseconds.
    cpu_us: f64,
}

/// Runs the comparison; prints the report and writes a CSV. Returns whether every run
/// passed its checks.
pub(crate) fn run(o: &Opts, env: &Env, date: &str) -> Result<bool, String> {
    let zones = Zones::start();
    let message = zones.sign(
        format!(
            "{}{}",
            String::from_utf8_lossy(&text("News <news@dkim.example>", "bench", "")),
            body()
        )
        .as_bytes(),
        "rsa",
    );
    let message = Arc::new(message);
    let messages = o.verdict_messages;
    let mut figures = Vec::new();
    let mut failures = Vec::new();
    for (mode, label) in [(Mode::Discard, "discard"), (Mode::Maildir, "maildir+fsync")] {
        let target = Target {
            imp: Impl::Smol,
            mode,
        };
        let on_keys = [
            ("GSMTP_VERIFY", "all".to_string()),
            ("GSMTP_DNS_SERVERS", zones.addr.to_string()),
        ];
        let off = Running::start(env, target, &format!("verdicts-off-{label}"))?;
        let on = Running::start_with(env, target, &format!("verdicts-on-{label}"), &on_keys)?;
        // Warm the caches (and the connections' first allocations) of both.
        for (srv, checks) in [(&off, false), (&on, true)] {
            if let Err(e) = load(srv, &message, SESSIONS, mode, checks) {
                failures.push(format!("{label} warm-up: {e}"));
            }
        }
        for rep in 0..o.reps {
            for (srv, checks) in [(&off, false), (&on, true)] {
                match load(srv, &message, messages, mode, checks) {
                    Ok((rate, cpu_us)) => {
                        eprintln!(
                            "bench: verdicts {label} checks {} rep {}: {rate:.0} msg/s, {cpu_us:.0} us CPU/msg",
                            if checks { "on" } else { "off" },
                            rep + 1
                        );
                        figures.push(Figure {
                            mode: label,
                            checks,
                            rate,
                            cpu_us,
                        });
                    }
                    Err(e) => failures.push(format!("{label} rep {}: {e}", rep + 1)),
                }
            }
        }
        off.stop();
        on.stop();
    }
    println!("{}", report(&figures, messages, &failures));
    let csv = o.out.join(format!("{date}-verdicts.csv"));
    let mut text = String::from("date,mode,checks,messages_per_s,cpu_us_per_message\n");
    for f in &figures {
        let checks = if f.checks { "all" } else { "off" };
        let _ = writeln!(
            text,
            "{date},{},{checks},{:.1},{:.1}",
            f.mode, f.rate, f.cpu_us
        );
    }
    fs::write(&csv, text).map_err(|e| format!("cannot write {}: {e}", csv.display()))?;
    println!("CSV: {}", csv.display());
    Ok(failures.is_empty())
}

/// The server's CPU time so far (user and system), in microseconds.
fn cpu_us(pid: u32) -> Result<f64, String> {
    cpu_secs(pid)
        .map(|s| s * 1e6)
        .ok_or_else(|| format!("no CPU figure for process {pid}"))
}

/// Sends `n` messages over [`SESSIONS`] reused connections; returns messages/s and the
/// server's CPU microseconds per message, after checking that every one was accepted
/// (and, in Maildir mode, stored, with the verdict when `checks`, then moved aside).
fn load(
    srv: &Running,
    message: &Arc<Vec<u8>>,
    n: usize,
    mode: Mode,
    checks: bool,
) -> Result<(f64, f64), String> {
    let before = srv.accepted_count().unwrap_or(0);
    let cpu0 = cpu_us(srv.pid())?;
    let addr: SocketAddr = srv.addr();
    let started = Instant::now();
    let pair = ("bounce@spf-pass.example", "user@example.com");
    drive(addr, SESSIONS, n, message, pair, None)?;
    let took = started.elapsed().as_secs_f64();
    let cpu = cpu_us(srv.pid())? - cpu0;
    let counted = srv.accepted_count().unwrap_or(0) - before;
    if counted != n as u64 {
        return Err(format!("{counted} of {n} messages counted in the log"));
    }
    if mode == Mode::Maildir
        && let Some(m) = &srv.maildir
    {
        let (new, tmp) = maildir_files(m);
        if new.len() != n || !tmp.is_empty() {
            return Err(format!(
                "{} stored, {} in tmp/, of {n}",
                new.len(),
                tmp.len()
            ));
        }
        let sample = new
            .first()
            .and_then(|f| fs::read(f).ok())
            .unwrap_or_default();
        let sample = String::from_utf8_lossy(&sample);
        let head = sample.split("\r\n\r\n").next().unwrap_or_default();
        let verdict =
            head.contains("dkim=pass header.d=dkim.example") && head.contains("dmarc=pass");
        if verdict != checks {
            return Err(format!("a stored message, checks {checks}:\n{head}"));
        }
        srv.clear_maildir(new, 8 << 30)?;
    }
    Ok((n as f64 / took, cpu / n as f64))
}

/// The markdown report: per mode, the median rate and CPU per message, off and on.
fn report(figures: &[Figure], messages: usize, failures: &[String]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "### Sender checks: {SESSIONS} sessions x {} DKIM-signed 4 KiB messages, connections reused, warm cache; guerrilla-smol, median\n",
        group(messages as f64)
    );
    let _ = writeln!(
        s,
        "| destination | checks off msg/s | GSMTP_VERIFY=all msg/s | ratio | CPU/msg off | CPU/msg all | the checks' cost |"
    );
    let _ = writeln!(s, "|---|--:|--:|--:|--:|--:|--:|");
    for mode in ["discard", "maildir+fsync"] {
        let pick = |checks: bool, f: fn(&Figure) -> f64| {
            let v: Vec<f64> = figures
                .iter()
                .filter(|x| x.mode == mode && x.checks == checks)
                .map(f)
                .collect();
            median(&v)
        };
        let (Some(off), Some(on)) = (pick(false, |f| f.rate), pick(true, |f| f.rate)) else {
            continue;
        };
        let cpu_off = pick(false, |f| f.cpu_us).unwrap_or(0.0);
        let cpu_on = pick(true, |f| f.cpu_us).unwrap_or(0.0);
        let _ = writeln!(
            s,
            "| {mode} | {} | {} | {:.2}x | {cpu_off:.0} us | {cpu_on:.0} us | {:.0} us |",
            group(off),
            group(on),
            on / off,
            cpu_on - cpu_off
        );
    }
    for f in failures {
        let _ = writeln!(s, "\nFAILED: {f}");
    }
    s
}
