//! Options: the usage text, the servers under test (targets), the loads, and their parsing.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::report::{group, plural, size_label};

const USAGE: &str = "\
bench: our servers and Postfix's smtp-sink side by side (issue 6)

usage: cargo run --release -p testsuite --bin bench -- [options]

It first runs `cargo build --release -p frontend-smol -p frontend-async-std` (skip with
--no-build, after `cargo build --release --workspace`), and needs Postfix's smtp-source
and smtp-sink (Debian: apt-get install postfix). See bench/README.md.

options:
  --quick               smoke run: tiny message counts, 1 repetition, 1,000 idle
                        connections; results go to target/bench-smoke/ unless --out
  --reps N              repetitions of each throughput load (default 5; --quick: 1)
  --curve-reps N        repetitions of each curve point (default 3; --quick: 1)
  --loads LIST          comma-separated, from: a (50 sessions x 20,000 x 4 KiB),
                        b (1 session x 5,000 x 4 KiB), c (50 sessions x 2,000 x 100 KiB),
                        curve, idle (RSS per idle connection), big (one 25 MiB message);
                        also `throughput` (a,b,c,curve), `mem` (idle,big), `all` (default)
  --servers LIST        comma-separated, from: sink, smol-discard, smol-maildir,
                        async-std-discard, async-std-maildir, bare-maildir (no
                        server: the bench's own writer making our Maildir's file
                        operations, the reference for the Maildir figures); also
                        smol, async-std, discard, maildir (the Maildir servers and
                        bare-maildir), all (default); with --baseline also
                        baseline-discard, baseline-maildir, baseline
  --baseline BIN        another build of guerrilla-smol (an older commit's, say), run
                        beside this one as the baseline-* servers; when --servers names
                        none of them, both are added
  --curve LIST          sessions of the curve (default 1,10,50,200,1000)
  --curve-messages N    messages per curve point (default 5,000 x --scale, at least one
                        per session)
  --scale X             multiply the message counts of a, b, c and the curve by X
                        (default 1; --quick: 0.05, so a is 50 x 1,000)
  --idle N              idle connections for the memory figure (default 10000)
  --big-mib N           size of the large message in MiB (default 25)
  --connections WHICH   new: smtp-source's default, a new connection for every message;
                        reuse: smtp-source -d, several messages per connection;
                        both (default): every throughput load in both ways
  --reuse               the same as --connections reuse
  --sink-backlog N      smtp-sink's listen backlog (default net.core.somaxconn, the
                        largest the kernel allows, as our listeners use)
  --sink-user USER      user smtp-sink switches to when run as root (default nobody)
  --no-build            do not run `cargo build --release` first
  --no-wait             do not wait out the 5 minutes after a previous run deleted its
                        stored messages (see bench/README.md)
  --out DIR             where the CSV and SVG go (default bench/results)
  --tmp DIR             Maildirs, configs and logs (default target/bench-tmp, on the
                        same disk as the workspace); removed afterwards
  --run-timeout SECS    give up on one smtp-source run after this long (default 900)
  --handoff LIST        instead of the loads above, compare the hand-off destinations
                        with bare clients of the same destination (issue 11): lmtp
                        (Dovecot; smtp-source -L), http (nginx; ab -k), pipe (the command
                        itself), s3 (3-node Garage; curl PUTs, issue 12), or all;
                        50 sessions, connections reused
  --handoff-messages N  messages per hand-off run (default 5,000; --quick: 500)
  --verdicts            instead of the loads above, compare guerrilla-smol with
                        GSMTP_VERIFY=all and with the checks off (issue 18): 50 sessions
                        of DKIM-signed 4 KiB messages, a private dnsmasq, warm cache,
                        discard and Maildir (needs dnsmasq and python3-dkim)
  --verdict-messages N  messages per verdicts run (default 10,000; --quick: 1,000)
  --filters             instead of the loads above, compare guerrilla-smol asking a
                        private rspamd over HTTP (GSMTP_RSPAMD_URL) with the same binary
                        without filters and with Postfix's smtpd asking the same rspamd
                        as a milter (issue 19): 50 sessions of 4 KiB messages,
                        connections reused, each storing to Maildir (needs rspamd,
                        dnsmasq and Postfix; without the postfix user, Postfix is skipped)
  --filter-messages N   messages per filters run (default 10,000; --quick: 1,000)
  --trash-limit-gib N   stored test messages are moved aside after each run and deleted
                        when a server stops, or once one server's exceed N GiB (default 8;
                        a full run stores about 5 GiB per Maildir server)
  -h, --help            this text
";

/// The fewest messages a hand-off run may send: one per session.
const SESSIONS_MIN: usize = 50;

/// A server implementation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Impl {
    Sink,
    Smol,
    AsyncStd,
    /// Another build of guerrilla-smol (`--baseline`), to compare two versions.
    Baseline,
    /// No server: the bench's own durable writer (`bare.rs`), the reference for the
    /// Maildir figures (issue 21).
    Bare,
}

impl Impl {
    fn name(self) -> &'static str {
        match self {
            Self::Sink => "smtp-sink",
            Self::Smol => "smol",
            Self::AsyncStd => "async-std",
            Self::Baseline => "baseline",
            Self::Bare => "bare",
        }
    }

    /// The program to start (none for [`Impl::Bare`], which runs in the bench).
    pub(crate) fn binary(self) -> &'static str {
        match self {
            Self::Sink => "smtp-sink",
            Self::Smol => "guerrilla-smol",
            Self::AsyncStd => "guerrilla-async-std",
            Self::Baseline => "guerrilla-baseline",
            Self::Bare => "",
        }
    }
}

/// What our servers do with a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Mode {
    Discard,
    Maildir,
}

/// One server under test: an implementation in a mode (smtp-sink always discards).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Target {
    pub(crate) imp: Impl,
    pub(crate) mode: Mode,
}

impl Target {
    /// Every target, in the tables' order: smtp-sink first, bare-maildir last.
    pub(crate) const ALL: [Self; 8] = [
        Self::new(Impl::Sink, Mode::Discard),
        Self::new(Impl::Smol, Mode::Discard),
        Self::new(Impl::Baseline, Mode::Discard),
        Self::new(Impl::AsyncStd, Mode::Discard),
        Self::new(Impl::Smol, Mode::Maildir),
        Self::new(Impl::Baseline, Mode::Maildir),
        Self::new(Impl::AsyncStd, Mode::Maildir),
        Self::new(Impl::Bare, Mode::Maildir),
    ];

    pub(crate) const fn new(imp: Impl, mode: Mode) -> Self {
        Self { imp, mode }
    }

    /// `sink`, `smol-discard`, `async-std-maildir`, ...: the name in the CSV and options.
    pub(crate) fn id(self) -> String {
        match (self.imp, self.mode) {
            (Impl::Sink, _) => "sink".into(),
            (Impl::Bare, _) => "bare-maildir".into(),
            (imp, Mode::Discard) => format!("{}-discard", imp.name()),
            (imp, Mode::Maildir) => format!("{}-maildir", imp.name()),
        }
    }

    /// `smtp-sink`, `smol discard`, `async-std maildir`: the name in tables.
    pub(crate) fn label(self) -> String {
        match (self.imp, self.mode) {
            (Impl::Sink, _) => "smtp-sink".into(),
            (Impl::Bare, _) => "bare-maildir".into(),
            (imp, Mode::Discard) => format!("{} discard", imp.name()),
            (imp, Mode::Maildir) => format!("{} maildir+fsync", imp.name()),
        }
    }
}

/// One smtp-source load.
#[derive(Clone, Debug)]
pub(crate) struct Load {
    /// `a`, `b`, `c`, `curve-50`, ...
    pub(crate) id: String,
    pub(crate) sessions: usize,
    pub(crate) messages: usize,
    pub(crate) bytes: usize,
    /// smtp-source -d: several messages per connection.
    pub(crate) reuse: bool,
}

impl Load {
    /// The load and the connection mode: `a`, `a -d`, `curve-50 -d`.
    pub(crate) fn key(&self) -> String {
        if self.reuse {
            format!("{} -d", self.id)
        } else {
            self.id.clone()
        }
    }

    pub(crate) fn label(&self) -> String {
        format!(
            "{} x {} x {}",
            plural(self.sessions, "session"),
            group(self.messages as f64),
            size_label(self.bytes)
        )
    }
}

#[derive(Debug)]
pub(crate) struct Opts {
    pub(crate) quick: bool,
    pub(crate) reps: usize,
    pub(crate) curve_reps: usize,
    pub(crate) loads: Vec<String>,
    pub(crate) targets: Vec<Target>,
    pub(crate) curve: Vec<usize>,
    pub(crate) curve_messages: usize,
    /// Multiplies the message counts of loads a, b, c and the curve.
    pub(crate) scale: f64,
    pub(crate) idle: usize,
    pub(crate) big_mib: usize,
    /// The connection modes to run: `false` a connection per message, `true` smtp-source -d.
    pub(crate) modes: Vec<bool>,
    pub(crate) sink_backlog: usize,
    pub(crate) sink_user: String,
    pub(crate) build: bool,
    pub(crate) out: PathBuf,
    pub(crate) tmp: PathBuf,
    pub(crate) run_timeout: Duration,
    pub(crate) trash_limit_gib: u64,
    pub(crate) wait: bool,
    pub(crate) root: PathBuf,
    /// The hand-off destinations to compare with their bare clients (issue 11); when
    /// set, only they run.
    pub(crate) handoff: Vec<String>,
    /// Messages per hand-off run.
    pub(crate) handoff_messages: usize,
    /// Another build of guerrilla-smol to run beside this one (`baseline-*` servers).
    pub(crate) baseline: Option<PathBuf>,
    /// Compare the sender checks on and off (issue 18); when set, only that runs.
    pub(crate) verdicts: bool,
    /// Messages per verdicts run.
    pub(crate) verdict_messages: usize,
    /// Compare the content filters' cost, ours and Postfix's (issue 19); when set, only
    /// that runs.
    pub(crate) filters: bool,
    /// Messages per filters run.
    pub(crate) filter_messages: usize,
}

pub(crate) fn parse_opts() -> Result<Opts, String> {
    let root = workspace_root();
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let mut o = Opts {
        quick,
        reps: if quick { 1 } else { 5 },
        curve_reps: if quick { 1 } else { 3 },
        loads: ["a", "b", "c", "curve", "idle", "big"]
            .map(String::from)
            .to_vec(),
        targets: Target::ALL
            .into_iter()
            .filter(|t| t.imp != Impl::Baseline)
            .collect(),
        curve: vec![1, 10, 50, 200, 1000],
        curve_messages: 0,
        scale: if quick { 0.05 } else { 1.0 },
        idle: if quick { 1000 } else { 10_000 },
        big_mib: 25,
        modes: vec![false, true],
        // Ours listen with the largest backlog the kernel allows; give smtp-sink the same.
        sink_backlog: fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(4096),
        sink_user: "nobody".into(),
        build: true,
        out: if quick {
            root.join("target/bench-smoke")
        } else {
            root.join("bench/results")
        },
        tmp: root.join("target/bench-tmp"),
        run_timeout: Duration::from_secs(900),
        trash_limit_gib: 8,
        wait: true,
        root,
        handoff: Vec::new(),
        handoff_messages: if quick { 500 } else { 5000 },
        baseline: None,
        verdicts: false,
        verdict_messages: if quick { 1000 } else { 10_000 },
        filters: false,
        filter_messages: if quick { 1000 } else { 10_000 },
    };
    args.reverse();
    let mut curve_messages = None;
    while let Some(arg) = args.pop() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.pop())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        let num = |v: String| {
            v.replace(['_', ','], "")
                .parse::<usize>()
                .map_err(|_| format!("{flag}: not a number: {v}"))
        };
        match flag.as_str() {
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            "--quick" => {}
            "--reps" => o.reps = num(value()?)?.max(1),
            "--curve-reps" => o.curve_reps = num(value()?)?.max(1),
            "--loads" => o.loads = parse_loads(&value()?)?,
            "--servers" => o.targets = parse_targets(&value()?)?,
            "--curve" => {
                o.curve = value()?
                    .split(',')
                    .map(|s| num(s.trim().to_string()))
                    .collect::<Result<_, _>>()?;
                o.curve.retain(|&n| n > 0);
                o.curve.sort_unstable();
                o.curve.dedup();
            }
            "--curve-messages" => curve_messages = Some(num(value()?)?.max(1)),
            "--scale" => {
                let v = value()?;
                o.scale = v
                    .parse::<f64>()
                    .ok()
                    .filter(|x| *x > 0.0)
                    .ok_or_else(|| format!("--scale: not a positive number: {v}"))?;
            }
            "--idle" => o.idle = num(value()?)?.max(1),
            "--big-mib" => o.big_mib = num(value()?)?.max(1),
            "--reuse" => o.modes = vec![true],
            "--connections" => {
                o.modes = match value()?.as_str() {
                    "new" => vec![false],
                    "reuse" => vec![true],
                    "both" => vec![false, true],
                    v => return Err(format!("--connections: new, reuse or both, not {v}")),
                }
            }
            "--sink-backlog" => o.sink_backlog = num(value()?)?.max(1),
            "--sink-user" => o.sink_user = value()?,
            "--no-build" => o.build = false,
            "--no-wait" => o.wait = false,
            "--handoff" => {
                o.handoff = match value()?.as_str() {
                    "all" => ["lmtp", "http", "pipe", "s3"].map(String::from).to_vec(),
                    list => list.split(',').map(str::to_string).collect(),
                };
                if let Some(bad) = o
                    .handoff
                    .iter()
                    .find(|d| !["lmtp", "http", "pipe", "s3"].contains(&d.as_str()))
                {
                    return Err(format!("--handoff: unknown destination {bad}"));
                }
            }
            "--handoff-messages" => o.handoff_messages = num(value()?)?.max(SESSIONS_MIN),
            "--baseline" => o.baseline = Some(PathBuf::from(value()?)),
            "--verdicts" => o.verdicts = true,
            "--verdict-messages" => o.verdict_messages = num(value()?)?.max(SESSIONS_MIN),
            "--filters" => o.filters = true,
            "--filter-messages" => o.filter_messages = num(value()?)?.max(SESSIONS_MIN),
            "--out" => o.out = PathBuf::from(value()?),
            "--tmp" => o.tmp = PathBuf::from(value()?),
            "--run-timeout" => o.run_timeout = Duration::from_secs(num(value()?)? as u64),
            "--trash-limit-gib" => o.trash_limit_gib = num(value()?)? as u64,
            _ => return Err(format!("unknown option {arg} (see --help)")),
        }
    }
    if o.baseline.is_some() && !o.targets.iter().any(|t| t.imp == Impl::Baseline) {
        o.targets.extend([
            Target::new(Impl::Baseline, Mode::Discard),
            Target::new(Impl::Baseline, Mode::Maildir),
        ]);
        o.targets
            .sort_by_key(|t| Target::ALL.iter().position(|a| a == t));
    }
    o.curve_messages =
        curve_messages.unwrap_or_else(|| ((5000.0 * o.scale).round() as usize).max(1));
    Ok(o)
}

fn parse_loads(list: &str) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let names: &[&str] = match item {
            "all" => &["a", "b", "c", "curve", "idle", "big"],
            "throughput" => &["a", "b", "c", "curve"],
            "mem" | "memory" => &["idle", "big"],
            "a" | "b" | "c" | "curve" | "idle" | "big" => &[item],
            _ => return Err(format!("unknown load {item:?} (see --help)")),
        };
        for n in names {
            if !out.iter().any(|o| o == n) {
                out.push((*n).to_string());
            }
        }
    }
    Ok(out)
}

fn parse_targets(list: &str) -> Result<Vec<Target>, String> {
    let mut out = Vec::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let matched: Vec<Target> = Target::ALL
            .into_iter()
            .filter(|t| match item {
                "all" => t.imp != Impl::Baseline,
                "sink" | "smtp-sink" => t.imp == Impl::Sink,
                "bare" => t.imp == Impl::Bare,
                "smol" => t.imp == Impl::Smol,
                "async-std" => t.imp == Impl::AsyncStd,
                "baseline" => t.imp == Impl::Baseline,
                "discard" => {
                    matches!(t.imp, Impl::Smol | Impl::AsyncStd) && t.mode == Mode::Discard
                }
                "maildir" => t.imp != Impl::Baseline && t.mode == Mode::Maildir,
                _ => t.id() == item,
            })
            .collect();
        if matched.is_empty() {
            return Err(format!("unknown server {item:?} (see --help)"));
        }
        out.extend(matched);
    }
    out.sort();
    out.dedup();
    // The table order: the reference first.
    out.sort_by_key(|t| Target::ALL.iter().position(|a| a == t));
    Ok(out)
}

fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}
