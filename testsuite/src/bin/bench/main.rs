//! `bench`: our two servers and Postfix's `smtp-sink` side by side, in one run (issue 6).
//!
//! Starts `smtp-sink` (the reference ceiling) and `guerrilla-smol` / `guerrilla-async-std`,
//! each in `GSMTP_STORAGE=discard` and in durable Maildir mode (`GSMTP_FSYNC=Y`), each on
//! its own loopback port; drives them in turn (A, B, C, A, B, C, ...) with the same
//! `smtp-source` load; checks that every message was accepted (and, in Maildir mode,
//! stored) before it keeps a figure; measures resident memory per idle connection and the
//! peak growth while one large message is received; writes a CSV and an SVG chart and
//! prints a markdown table of medians and ratios to `smtp-sink`.
//!
//! ```sh
//! cargo run --release -p testsuite --bin bench -- --help
//! cargo run --release -p testsuite --bin bench -- --quick      # a smoke run, under a minute
//! cargo run --release -p testsuite --bin bench                 # the full run, 15-25 minutes
//! ```
//!
//! See `bench/README.md` for what each figure means.

mod bare;
mod filters;
mod handoff;
mod loads;
mod memory;
mod opts;
mod report;
mod servers;
mod verdicts;

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use nix::unistd::Uid;

use crate::loads::{Sample, maildir_files, run_load, source_args};
use crate::memory::{MemFigure, big_memory, idle_memory};
use crate::opts::{Impl, Load, Mode, Opts, Target, parse_opts};
use crate::report::{
    bare_check, curve_svg, group, medians, mem_label, memory_table, parity_table, targets_check,
    throughput_table, utc_now, write_csv,
};
use crate::servers::{Env, Running, build, find_tool, now_secs, raise_nofile, target_dir};

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("bench: {e}");
            ExitCode::from(2)
        }
    }
}

/// Runs everything; returns whether every run passed its checks.
fn run() -> Result<bool, String> {
    let o = parse_opts()?;
    let nofile = raise_nofile();
    let source = find_tool("smtp-source");
    let sink = find_tool("smtp-sink");
    let (Some(source), Some(sink)) = (source, sink) else {
        return Err(
            "smtp-source and smtp-sink not found; install Postfix (Debian: \
                    DEBIAN_FRONTEND=noninteractive apt-get install -y postfix)"
                .into(),
        );
    };
    if o.build {
        build(&o.root)?;
    }
    let bin_dir = target_dir(&o.root).join("release");
    if let Some(baseline) = &o.baseline {
        let to = bin_dir.join(Impl::Baseline.binary());
        fs::copy(baseline, &to).map_err(|e| {
            format!(
                "cannot copy {} to {}: {e}",
                baseline.display(),
                to.display()
            )
        })?;
    }
    for t in &o.targets {
        if !matches!(t.imp, Impl::Sink | Impl::Bare) && !bin_dir.join(t.imp.binary()).is_file() {
            return Err(format!(
                "{} not found; run `cargo build --release --workspace` first",
                bin_dir.join(t.imp.binary()).display()
            ));
        }
    }
    let tmp = o.tmp.join(format!("run-{}", std::process::id()));
    fs::create_dir_all(&tmp).map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
    fs::create_dir_all(&o.out).map_err(|e| format!("cannot create {}: {e}", o.out.display()))?;
    let max_curve = o.curve.iter().copied().max().unwrap_or(1);
    let env = Env {
        sink,
        source,
        bin_dir,
        tmp: tmp.clone(),
        sink_backlog: o.sink_backlog,
        sink_user: Uid::effective().is_root().then(|| o.sink_user.clone()),
        max_clients: (o.idle + 100).max(max_curve * 2).max(1000),
        max_size: (o.big_mib + 8) * 1024 * 1024,
        trash_limit: o.trash_limit_gib << 30,
    };
    if (o.idle + 64) as u64 > nofile || (max_curve * 2 + 64) as u64 > nofile {
        eprintln!(
            "bench: warning: the open-file limit is {nofile}; the idle or curve figures may fail"
        );
    }
    if o.verdicts {
        let (date, _) = utc_now();
        let result = verdicts::run(&o, &env, &date);
        let _ = fs::remove_dir_all(&tmp);
        return result;
    }
    if o.filters {
        let (date, _) = utc_now();
        let result = filters::run(&o, &env, &date);
        let _ = fs::remove_dir_all(&tmp);
        return result;
    }
    if !o.handoff.is_empty() {
        let (date, _) = utc_now();
        let result = handoff::run(&o, &env, &date);
        let _ = fs::remove_dir_all(&tmp);
        return result;
    }
    let marker = o.tmp.with_extension("deleted-at");
    let maildir_runs = o.targets.iter().any(|t| t.mode == Mode::Maildir)
        && o.loads
            .iter()
            .any(|l| ["a", "b", "c", "curve"].contains(&l.as_str()));
    if maildir_runs && o.wait {
        wait_after_deletion(&marker);
    }
    let (date, time) = utc_now();
    let result = measure(&o, &env, &date, &time);
    let _ = fs::remove_dir_all(&tmp);
    let _ = fs::remove_dir(&o.tmp);
    if TRASHED.load(Ordering::Relaxed) >= 10_000 {
        let _ = fs::write(&marker, format!("{}\n", now_secs()));
    }
    result
}

/// Files moved to the trash (and deleted at the end) by this run.
static TRASHED: AtomicU64 = AtomicU64::new(0);

/// How long ext4 without a journal keeps skipping freed inodes (RECENTCY_DIRTY).
const RECENTCY: u64 = 300;

/// Waits until the previous run's deleted messages no longer slow file creation (see
/// [`Running::clear_maildir`]).
fn wait_after_deletion(marker: &Path) {
    let Some(at) = fs::read_to_string(marker)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
    else {
        return;
    };
    let left = (at + RECENTCY).saturating_sub(now_secs());
    if left > 0 {
        eprintln!(
            "bench: the previous run deleted its stored messages {} s ago; waiting {left} s \
             so that ext4's reuse of freed inodes does not slow the Maildir runs (--no-wait to skip)",
            now_secs().saturating_sub(at)
        );
        thread::sleep(Duration::from_secs(left));
    }
}

fn measure(o: &Opts, env: &Env, date: &str, time: &str) -> Result<bool, String> {
    let q = o.quick;
    let k4 = 4096;
    let mut loads: Vec<Load> = Vec::new();
    let scaled = |n: usize| ((n as f64 * o.scale).round() as usize).max(1);
    let fixed = [
        ("a", 50, scaled(20_000), k4),
        ("b", 1, scaled(5_000), k4),
        ("c", 50, scaled(2_000), 100 * 1024),
    ];
    for (id, sessions, messages, bytes) in fixed {
        if o.loads.iter().any(|l| l == id) {
            for &reuse in &o.modes {
                loads.push(Load {
                    id: id.into(),
                    sessions,
                    messages,
                    bytes,
                    reuse,
                });
            }
        }
    }
    let mut curve_loads: Vec<Load> = Vec::new();
    if o.loads.iter().any(|l| l == "curve") {
        for &n in &o.curve {
            for &reuse in &o.modes {
                curve_loads.push(Load {
                    id: format!("curve-{n}"),
                    sessions: n,
                    messages: o.curve_messages.max(n),
                    bytes: k4,
                    reuse,
                });
            }
        }
    }
    let throughput_targets = o.targets.clone();
    let mut header = String::new();
    let _ = writeln!(
        header,
        "## Benchmark, {date} {time} UTC{}\n",
        if q { " (quick smoke run)" } else { "" }
    );
    let _ = writeln!(
        header,
        "- machine: {} cores, {}; smtp-source shares it",
        thread::available_parallelism().map_or(0, |n| n.get()),
        fs::read_to_string("/proc/loadavg")
            .map(|l| format!(
                "load average at start {}",
                l.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
            ))
            .unwrap_or_default()
    );
    for &reuse in &o.modes {
        let flags = source_args(&Load {
            id: String::new(),
            sessions: 0,
            messages: 0,
            bytes: 0,
            reuse,
        })
        .join(" ")
        .replace("-s 0 -m 0 -l 0", "-s SESSIONS -m MESSAGES -l BYTES");
        let how = if reuse {
            "several messages per connection"
        } else {
            "a new connection (greeting, HELO, MAIL, RCPT, DATA, QUIT) for every message"
        };
        let _ = writeln!(header, "- load: smtp-source {flags} 127.0.0.1:PORT ({how})");
    }
    let sink_flags = format!(
        "smtp-sink -c -m {}{} 127.0.0.1:PORT {}",
        env.max_clients,
        env.sink_user
            .as_ref()
            .map(|u| format!(" -u {u}"))
            .unwrap_or_default(),
        env.sink_backlog
    );
    let _ = writeln!(header, "- reference: {sink_flags}");
    let _ = writeln!(
        header,
        "- ours: `--config FILE` with GSMTP_STORAGE=discard, or GSMTP_STORAGE=maildir with GSMTP_FSYNC=Y \
         (Maildir under {}), GM_MAX_CLIENTS={}, GM_MAX_CLIENTS_PER_IP=0 (every load comes from one address), GSMTP_MAX_SIZE={}, GSMTP_LOG_FILE=a temp file",
        env.tmp.display(),
        env.max_clients,
        env.max_size
    );
    if throughput_targets.iter().any(|t| t.imp == Impl::Bare) {
        let _ = writeln!(
            header,
            "- bare-maildir: no server and no SMTP: the bench's own threads, one per session, \
             and one committer make our Maildir destination's file operations for each message \
             (access checks, open O_CREAT|O_EXCL 0600 in tmp/, one write of the stored size, \
             group commit: syncfs from {} files or fdatasync, rename into new/, fsync of new/), \
             under {}; run in each connection mode, which does not apply to it; CPU: its threads' \
             (getrusage RUSAGE_THREAD)",
            proto::io::deliver::SYNCFS_BATCH,
            env.tmp.display()
        );
    }
    let _ = writeln!(
        header,
        "- each figure: median of the repetitions, runs alternating between the servers; \
         every run checked (smtp-source exit status and count, the server's count, the files in new/)"
    );

    let mut samples: Vec<Sample> = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    if !loads.is_empty() || !curve_loads.is_empty() {
        let mut servers = Vec::new();
        for t in &throughput_targets {
            let r = Running::start(env, *t, &t.id())?;
            if t.imp == Impl::Bare {
                eprintln!("bench: {}: {}", t.label(), r.command);
                servers.push(r);
                continue;
            }
            eprintln!(
                "bench: started {} on port {} (pid {}): {}",
                t.label(),
                r.port,
                r.pid(),
                r.command
            );
            servers.push(r);
        }
        let plan: Vec<(&Load, usize)> = loads
            .iter()
            .map(|l| (l, o.reps))
            .chain(curve_loads.iter().map(|l| (l, o.curve_reps)))
            .collect();
        for (load, reps) in plan {
            for rep in 0..reps {
                for srv in servers.iter_mut() {
                    // A short pause so that one run's closing connections and syncs do not
                    // overlap the next.
                    thread::sleep(Duration::from_millis(300));
                    if let Some(death) = srv.exited() {
                        let msg = format!(
                            "{} had exited before {} rep {}: {death}; restarted",
                            srv.target.label(),
                            load.key(),
                            rep + 1
                        );
                        eprintln!("bench: FAILED {msg}");
                        failures.push(msg);
                        let target = srv.target;
                        *srv = Running::start(env, target, &format!("{}-{}", target.id(), rep))?;
                    }
                    match run_load(env, srv, load, o.run_timeout) {
                        Ok((secs, server_cpu, source_cpu)) => {
                            let rate = load.messages as f64 / secs;
                            eprintln!(
                                "bench: {:<14} rep {}/{reps} {:<24} {:>9} msg/s  {:7.2} s  server cpu {:6.2} s  smtp-source cpu {:6.2} s",
                                load.key(),
                                rep + 1,
                                srv.target.label(),
                                group(rate),
                                secs,
                                server_cpu,
                                source_cpu
                            );
                            samples.push(Sample {
                                target: srv.target,
                                load: load.clone(),
                                rep,
                                secs,
                                rate,
                                server_cpu,
                                source_cpu,
                            });
                        }
                        Err(e) => {
                            let msg = format!(
                                "{} rep {} {}: {e}",
                                load.key(),
                                rep + 1,
                                srv.target.label()
                            );
                            eprintln!("bench: FAILED {msg}");
                            failures.push(msg);
                            // Clean up whatever the failed run left.
                            if let Some(m) = &srv.maildir {
                                let (new, tmp) = maildir_files(m);
                                let _ = srv.clear_maildir(new, env.trash_limit);
                                for f in tmp {
                                    let _ = fs::remove_file(f);
                                }
                            }
                        }
                    }
                }
            }
        }
        for s in servers {
            s.stop();
        }
    }

    let mut mem: Vec<MemFigure> = Vec::new();
    if o.loads.iter().any(|l| l == "idle") {
        // Storage plays no part in an idle session: each implementation once, discarding.
        let mut imps: Vec<Impl> = o
            .targets
            .iter()
            .map(|t| t.imp)
            .filter(|&i| i != Impl::Bare)
            .collect();
        imps.sort();
        imps.dedup();
        for imp in imps {
            let t = Target::new(imp, Mode::Discard);
            match idle_memory(env, t, o.idle) {
                Ok(f) => {
                    eprintln!(
                        "bench: idle   {:<24} {} per session ({} -> {} KiB with {} sessions)",
                        t.label(),
                        mem_label(f.value),
                        f.before_kib,
                        f.after_kib,
                        o.idle
                    );
                    mem.push(f);
                }
                Err(e) => {
                    let msg = format!("idle {}: {e}", t.label());
                    eprintln!("bench: FAILED {msg}");
                    failures.push(msg);
                }
            }
            thread::sleep(Duration::from_secs(1));
        }
    }
    if o.loads.iter().any(|l| l == "big") {
        for t in o.targets.iter().filter(|t| t.imp != Impl::Bare) {
            match big_memory(env, *t, o.big_mib) {
                Ok(f) => {
                    eprintln!(
                        "bench: big    {:<24} peak growth {} ({} KiB before, VmHWM {} KiB; {})",
                        t.label(),
                        mem_label(f.value),
                        f.before_kib,
                        f.after_kib,
                        f.note
                    );
                    mem.push(f);
                }
                Err(e) => {
                    let msg = format!("big {}: {e}", t.label());
                    eprintln!("bench: FAILED {msg}");
                    failures.push(msg);
                }
            }
        }
    }

    // Reports.
    let med = medians(&samples);
    let all_loads: Vec<Load> = loads.iter().chain(curve_loads.iter()).cloned().collect();
    let suffix = if q { "-quick" } else { "" };
    let csv = o.out.join(format!("{date}{suffix}.csv"));
    write_csv(&csv, date, &samples, &mem)
        .map_err(|e| format!("cannot write {}: {e}", csv.display()))?;
    let mut report = header;
    report.push('\n');
    for &reuse in &o.modes {
        let these: Vec<Load> = all_loads
            .iter()
            .filter(|l| l.reuse == reuse)
            .cloned()
            .collect();
        if samples.iter().any(|x| x.load.reuse == reuse) {
            let _ = writeln!(
                report,
                "### Throughput, {}: messages/s, median (ratio to smtp-sink)\n\n{}",
                if reuse {
                    "connections reused (smtp-source -d)"
                } else {
                    "a new connection per message (smtp-source without -d)"
                },
                throughput_table(&these, &throughput_targets, &samples, &med)
            );
        }
    }
    if !mem.is_empty() {
        let _ = writeln!(
            report,
            "### Memory (VmRSS from /proc; idle: growth over the baseline divided by the sessions; big: VmHWM after minus VmRSS before)\n\n{}",
            memory_table(&mem, o.idle, o.big_mib)
        );
    }
    let parity = parity_table(&all_loads, &med, &mem);
    if !parity.is_empty() {
        let _ = writeln!(report, "### Frontend parity\n\n{parity}");
    }
    let checks = targets_check(&med, &mem, &all_loads, &o.modes);
    if !checks.is_empty() {
        let _ = writeln!(report, "### Issue 6 targets\n\n{checks}");
    }
    let vs_bare = bare_check(&med, &throughput_targets, &o.modes);
    if !vs_bare.is_empty() {
        let _ = writeln!(
            report,
            "### Issue 21: Maildir against bare-maildir\n\n{vs_bare}"
        );
    }
    let _ = writeln!(report, "CSV: {}", csv.display());
    if !curve_loads.is_empty() {
        let svg_path = o.out.join(format!("curve{suffix}.svg"));
        let svg = curve_svg(
            &o.curve,
            &throughput_targets,
            &med,
            &o.modes,
            "Messages/s vs parallel sessions, 4 KiB messages",
            &format!(
                "{date}, median of {}, {} messages per point (or one per session)",
                o.curve_reps,
                group(o.curve_messages as f64),
            ),
        );
        fs::write(&svg_path, svg)
            .map_err(|e| format!("cannot write {}: {e}", svg_path.display()))?;
        let _ = writeln!(report, "Chart: {}", svg_path.display());
    }
    if !failures.is_empty() {
        let _ = writeln!(report, "\n### Failed runs (not counted)\n");
        for f in &failures {
            let _ = writeln!(report, "- {f}");
        }
    }
    println!("{report}");
    Ok(failures.is_empty())
}
