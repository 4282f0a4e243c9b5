//! The report: medians, number formats, the markdown tables, the issue 6 targets check,
//! the CSV and the SVG chart.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::Path;

use crate::loads::Sample;
use crate::memory::MemFigure;
use crate::opts::{Impl, Load, Mode, Target};
use crate::servers::now_secs;

pub(crate) fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// 12,345 (no decimals).
pub(crate) fn group(x: f64) -> String {
    let s = format!("{:.0}", x.abs());
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if x < 0.0 && out != "0" {
        out.insert(0, '-');
    }
    out
}

pub(crate) fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{} {what}s", group(n as f64))
    }
}

pub(crate) fn size_label(bytes: usize) -> String {
    if bytes.is_multiple_of(1024 * 1024) {
        format!("{} MiB", bytes / (1024 * 1024))
    } else if bytes.is_multiple_of(1024) {
        format!("{} KiB", bytes / 1024)
    } else {
        format!("{bytes} B")
    }
}

pub(crate) fn mem_label(bytes: f64) -> String {
    if bytes.abs() >= 1024.0 * 1024.0 {
        format!("{:.2} MiB", bytes / 1024.0 / 1024.0)
    } else if bytes.abs() >= 1024.0 {
        format!("{:.2} KiB", bytes / 1024.0)
    } else {
        format!("{bytes:.0} B")
    }
}

/// YYYY-MM-DD and HH:MM:SS, UTC.
pub(crate) fn utc_now() -> (String, String) {
    let secs = now_secs();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        format!("{y:04}-{m:02}-{d:02}"),
        format!("{:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60),
    )
}

/// Medians of the samples, by load id and target.
type Medians = BTreeMap<(String, Target), f64>;

pub(crate) fn medians(samples: &[Sample]) -> Medians {
    let mut by: BTreeMap<(String, Target), Vec<f64>> = BTreeMap::new();
    for s in samples {
        by.entry((s.load.key(), s.target)).or_default().push(s.rate);
    }
    by.into_iter()
        .filter_map(|(k, v)| Some((k, median(&v)?)))
        .collect()
}

/// The bare-maildir target, the reference of our Maildir figures.
const BARE: Target = Target::new(Impl::Bare, Mode::Maildir);

/// Our Maildir servers among `targets`, when bare-maildir is among them too: those shown
/// as a ratio to it.
fn against_bare(targets: &[Target]) -> Vec<Target> {
    if !targets.contains(&BARE) {
        return Vec::new();
    }
    targets
        .iter()
        .filter(|t| t.mode == Mode::Maildir && t.imp != Impl::Bare)
        .copied()
        .collect()
}

/// One row per load: each target's median with its ratio to smtp-sink, then (with
/// bare-maildir) a column `<maildir server> / bare-maildir` per Maildir server.
pub(crate) fn throughput_table(
    loads: &[Load],
    targets: &[Target],
    samples: &[Sample],
    med: &Medians,
) -> String {
    let vs_bare = against_bare(targets);
    let mut s = String::new();
    let _ = write!(s, "| load |");
    for t in targets {
        let _ = write!(s, " {} |", t.label());
    }
    for t in &vs_bare {
        let _ = write!(s, " {} / {} |", t.label(), BARE.label());
    }
    let _ = write!(s, "\n|---|");
    for _ in targets.iter().chain(&vs_bare) {
        let _ = write!(s, "--:|");
    }
    s.push('\n');
    for load in loads {
        let reps = samples
            .iter()
            .filter(|x| x.load.key() == load.key())
            .map(|x| x.rep)
            .max();
        let Some(reps) = reps else { continue };
        let _ = write!(s, "| {}: {} (n={}) |", load.id, load.label(), reps + 1);
        let sink = med.get(&(load.key(), Target::ALL[0])).copied();
        for t in targets {
            match med.get(&(load.key(), *t)) {
                None => s.push_str(" failed |"),
                Some(&m) if t.imp == Impl::Sink => {
                    let _ = write!(s, " {} |", group(m));
                }
                Some(&m) => match sink {
                    Some(k) if k > 0.0 => {
                        let _ = write!(s, " {} ({:.2}x) |", group(m), m / k);
                    }
                    _ => {
                        let _ = write!(s, " {} |", group(m));
                    }
                },
            }
        }
        let bare = med.get(&(load.key(), BARE)).copied();
        for t in &vs_bare {
            match (med.get(&(load.key(), *t)), bare) {
                (Some(&m), Some(b)) if b > 0.0 => {
                    let _ = write!(s, " {:.2}x |", m / b);
                }
                _ => s.push_str(" - |"),
            }
        }
        s.push('\n');
    }
    s
}

/// async-std / smol for every load and mode.
pub(crate) fn parity_table(loads: &[Load], med: &Medians, mem: &[MemFigure]) -> String {
    let mut s = String::from(
        "| figure | discard: async-std / smol | maildir: async-std / smol |\n|---|--:|--:|\n",
    );
    let mut rows = 0;
    // One row: async-std over smol in each mode, unless neither mode was measured.
    let mut row = |what: &str, get: &dyn Fn(Impl, Mode) -> Option<f64>| {
        let [d, m] = [Mode::Discard, Mode::Maildir].map(|mode| {
            match (get(Impl::AsyncStd, mode), get(Impl::Smol, mode)) {
                (Some(a), Some(b)) if b != 0.0 => format!("{:.2}", a / b),
                _ => "-".into(),
            }
        });
        if d != "-" || m != "-" {
            let _ = writeln!(s, "| {what} | {d} | {m} |");
            rows += 1;
        }
    };
    for load in loads {
        row(&format!("{}: msg/s", load.key()), &|imp, mode| {
            med.get(&(load.key(), Target::new(imp, mode))).copied()
        });
    }
    for (kind, what) in [
        ("idle", "RSS per idle session"),
        ("big", "peak growth, big message"),
    ] {
        row(what, &|imp, mode| {
            mem.iter()
                .find(|f| f.kind == kind && f.target == Target::new(imp, mode))
                .map(|f| f.value)
        });
    }
    if rows == 0 { String::new() } else { s }
}

pub(crate) fn memory_table(mem: &[MemFigure], idle_n: usize, big_mib: usize) -> String {
    let mut targets: Vec<Target> = mem.iter().map(|f| f.target).collect();
    targets.sort_by_key(|t| Target::ALL.iter().position(|a| a == t));
    targets.dedup();
    let mut s = format!(
        "| server | RSS per idle session ({} after EHLO) | peak RSS growth, one {big_mib} MiB message |\n|---|--:|--:|\n",
        group(idle_n as f64)
    );
    for t in targets {
        let cell = |kind: &str| {
            mem.iter()
                .find(|f| f.kind == kind && f.target == t)
                .map_or_else(
                    || "-".to_string(),
                    |f| {
                        format!(
                            "{} ({} -> {} KiB)",
                            mem_label(f.value),
                            group(f.before_kib as f64),
                            group(f.after_kib as f64)
                        )
                    },
                )
        };
        let _ = writeln!(s, "| {} | {} | {} |", t.label(), cell("idle"), cell("big"));
    }
    s
}

/// The issue 6 targets, checked against the medians, in every connection mode run.
pub(crate) fn targets_check(
    med: &Medians,
    mem: &[MemFigure],
    loads: &[Load],
    modes: &[bool],
) -> String {
    let mut s = String::new();
    let mut line = |ok: bool, text: String| {
        let mark = if ok { "met" } else { "MISSED" };
        let _ = writeln!(s, "- [{mark}] {text}");
    };
    let get = |key: &str, t: Target| med.get(&(key.to_string(), t)).copied();
    for &reuse in modes {
        let (a, b, how) = if reuse {
            ("a -d", "b -d", "smtp-source -d")
        } else {
            ("a", "b", "a connection per message")
        };
        let sink = get(a, Target::ALL[0]);
        for imp in [Impl::Smol, Impl::AsyncStd] {
            for (mode, want) in [(Mode::Discard, 1.0), (Mode::Maildir, 0.5)] {
                let t = Target::new(imp, mode);
                if let (Some(k), Some(v)) = (sink, get(a, t)) {
                    let r = v / k;
                    line(
                        r >= want,
                        format!(
                            "{}: {r:.3}x smtp-sink at 50 sessions, {how} (target {want:.1}x)",
                            t.label()
                        ),
                    );
                }
            }
            let t = Target::new(imp, Mode::Maildir);
            if let Some(v) = get(b, t) {
                line(
                    v >= 1000.0,
                    format!(
                        "{}: {} msg/s in one session, {how} (target 1,000)",
                        t.label(),
                        group(v)
                    ),
                );
            }
        }
    }
    for f in mem.iter().filter(|f| f.target.imp != Impl::Sink) {
        let (ok, what, limit) = match f.kind {
            "idle" => (f.value <= 2048.0, "per idle session", "2 KiB"),
            _ => (
                f.value <= 1024.0 * 1024.0,
                "peak growth for the big message",
                "1 MiB",
            ),
        };
        line(
            ok,
            format!(
                "{}: {} {what} (target at most {limit})",
                f.target.label(),
                mem_label(f.value)
            ),
        );
    }
    // Frontends within 10%, on every throughput figure and both memory figures.
    let mut gaps: Vec<(f64, String)> = Vec::new();
    for load in loads {
        for mode in [Mode::Discard, Mode::Maildir] {
            if let (Some(a), Some(b)) = (
                get(&load.key(), Target::new(Impl::AsyncStd, mode)),
                get(&load.key(), Target::new(Impl::Smol, mode)),
            ) {
                gaps.push(((a / b - 1.0).abs(), format!("{} {mode:?}", load.key())));
            }
        }
    }
    for kind in ["idle", "big"] {
        for mode in [Mode::Discard, Mode::Maildir] {
            let get = |imp| {
                mem.iter()
                    .find(|f| f.kind == kind && f.target == Target::new(imp, mode))
                    .map(|f| f.value)
            };
            if let (Some(a), Some(b)) = (get(Impl::AsyncStd), get(Impl::Smol)) {
                // Memory figures this small are dominated by page granularity; compare
                // them only where both are above 64 KiB or 1 KiB per session.
                let floor = if kind == "idle" { 1024.0 } else { 65_536.0 };
                if a.max(b) >= floor && b > 0.0 {
                    gaps.push(((a / b - 1.0).abs(), format!("{kind} {mode:?}")));
                }
            }
        }
    }
    if !gaps.is_empty() {
        let over: Vec<String> = gaps
            .iter()
            .filter(|g| g.0 > 0.10)
            .map(|g| format!("{} {:.0}%", g.1, g.0 * 100.0))
            .collect();
        let worst = gaps.iter().map(|g| g.0).fold(0.0, f64::max);
        line(
            over.is_empty(),
            format!(
                "frontends within 10% of each other: {} of {} figures apart by more (largest gap {:.0}%){}",
                over.len(),
                gaps.len(),
                worst * 100.0,
                if over.is_empty() {
                    String::new()
                } else {
                    format!(": {}", over.join(", "))
                }
            ),
        );
    }
    s
}

/// Issue 21: each Maildir server at least 0.85x bare-maildir in loads a and b, in every
/// connection mode run (empty without bare-maildir).
pub(crate) fn bare_check(med: &Medians, targets: &[Target], modes: &[bool]) -> String {
    let mut s = String::new();
    for &reuse in modes {
        for id in ["a", "b"] {
            let key = if reuse { format!("{id} -d") } else { id.into() };
            let how = if reuse {
                "smtp-source -d"
            } else {
                "a connection per message"
            };
            let Some(&b) = med.get(&(key.clone(), BARE)) else {
                continue;
            };
            for t in against_bare(targets) {
                if let Some(&m) = med.get(&(key.clone(), t)) {
                    let r = m / b;
                    let _ = writeln!(
                        s,
                        "- [{}] {}: {r:.3}x bare-maildir ({} against {} msg/s), load {id}, {how} (target 0.85x)",
                        if r >= 0.85 { "met" } else { "MISSED" },
                        t.label(),
                        group(m),
                        group(b)
                    );
                }
            }
        }
    }
    s
}

pub(crate) fn write_csv(
    path: &Path,
    date: &str,
    samples: &[Sample],
    mem: &[MemFigure],
) -> io::Result<()> {
    let mut s = String::from(
        "date,server,load,sessions,messages,message_bytes,reuse_connection,rep,seconds,metric,value,unit,server_cpu_s,source_cpu_s,rss_before_kib,rss_after_kib\n",
    );
    for x in samples {
        let _ = writeln!(
            s,
            "{date},{},{},{},{},{},{},{},{:.3},throughput,{:.1},msg/s,{:.2},{:.2},,",
            x.target.id(),
            x.load.id,
            x.load.sessions,
            x.load.messages,
            x.load.bytes,
            if x.load.reuse { "yes" } else { "no" },
            x.rep + 1,
            x.secs,
            x.rate,
            x.server_cpu,
            x.source_cpu,
        );
    }
    for f in mem {
        let (load, metric, unit) = match f.kind {
            "idle" => ("idle", "rss_per_idle_session", "B"),
            _ => ("big", "peak_rss_growth", "B"),
        };
        let _ = writeln!(
            s,
            "{date},{},{load},,,,,1,,{metric},{:.0},{unit},,,{},{}",
            f.target.id(),
            f.value,
            f.before_kib,
            f.after_kib
        );
    }
    fs::write(path, s)
}

/// The medians of one curve point, by target.
fn curve_key(n: usize, reuse: bool) -> String {
    if reuse {
        format!("curve-{n} -d")
    } else {
        format!("curve-{n}")
    }
}

/// Hand-written SVG: messages/s against sessions (log scale), one line per server, one
/// panel per connection mode.
pub(crate) fn curve_svg(
    points: &[usize],
    targets: &[Target],
    med: &Medians,
    modes: &[bool],
    title: &str,
    subtitle: &str,
) -> String {
    let (w, panel_h) = (800.0, 400.0);
    let (left, right, head, top, bottom) = (80.0, 210.0, 50.0, 36.0, 56.0);
    let h = head + panel_h * modes.len() as f64;
    let (pw, ph) = (w - left - right, panel_h - top - bottom);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{left}" y="24" font-size="16" font-weight="bold">{}</text>"#,
        xml(title)
    );
    let _ = writeln!(
        s,
        r##"<text x="{left}" y="42" fill="#555">{}</text>"##,
        xml(subtitle)
    );
    let (lo, hi) = (
        (*points.first().unwrap_or(&1) as f64).log10(),
        (*points.last().unwrap_or(&1000) as f64).log10(),
    );
    let x = |n: usize| {
        if hi > lo {
            left + ((n as f64).log10() - lo) / (hi - lo) * pw
        } else {
            left + pw / 2.0
        }
    };
    for (p, &reuse) in modes.iter().enumerate() {
        let top = head + p as f64 * panel_h + top;
        let value = |n: usize, t: &Target| med.get(&(curve_key(n, reuse), *t)).copied();
        let max = points
            .iter()
            .flat_map(|&n| targets.iter().filter_map(move |t| value(n, t)))
            .fold(0.0_f64, f64::max)
            .max(1.0);
        let raw_step = max / 5.0;
        let mag = 10f64.powf(raw_step.log10().floor());
        let step = [1.0, 2.0, 2.5, 5.0, 10.0]
            .iter()
            .map(|m| m * mag)
            .find(|s| *s >= raw_step)
            .unwrap_or(10.0 * mag);
        let ymax = (max / step).ceil() * step;
        let y = |v: f64| top + ph - v / ymax * ph;
        let _ = writeln!(
            s,
            r#"<text x="{left}" y="{:.1}" font-size="13" font-weight="bold">{}</text>"#,
            top - 10.0,
            if reuse {
                "connections reused: smtp-source -d"
            } else {
                "a new connection for every message: smtp-source without -d"
            }
        );
        let mut v = 0.0;
        while v <= ymax + step / 2.0 {
            let yy = y(v);
            let _ = writeln!(
                s,
                r##"<line x1="{left}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
                left + pw,
                left - 8.0,
                yy + 4.0,
                group(v)
            );
            v += step;
        }
        for &n in points {
            let xx = x(n);
            let _ = writeln!(
                s,
                r##"<line x1="{xx:.1}" y1="{top}" x2="{xx:.1}" y2="{:.1}" stroke="#eee"/><text x="{xx:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
                top + ph,
                top + ph + 18.0,
                group(n as f64)
            );
        }
        let _ = writeln!(
            s,
            r##"<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>"##
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">parallel smtp-source sessions (log scale)</text>"#,
            left + pw / 2.0,
            top + ph + 38.0
        );
        let _ = writeln!(
            s,
            r#"<text transform="translate(20 {:.1}) rotate(-90)" text-anchor="middle">messages/s (median)</text>"#,
            top + ph / 2.0
        );
        for (i, t) in targets.iter().enumerate() {
            let color = match t.imp {
                Impl::Sink => "#222222",
                Impl::Smol => "#1f77b4",
                Impl::AsyncStd => "#d62728",
                Impl::Baseline => "#7f7f7f",
                Impl::Bare => "#2ca02c",
            };
            let dash = if t.mode == Mode::Maildir {
                r#" stroke-dasharray="7 4""#
            } else {
                ""
            };
            let pts: Vec<(f64, f64)> = points
                .iter()
                .filter_map(|&n| value(n, t).map(|v| (x(n), y(v))))
                .collect();
            if pts.is_empty() {
                continue;
            }
            let poly: Vec<String> = pts.iter().map(|(a, b)| format!("{a:.1},{b:.1}")).collect();
            let _ = writeln!(
                s,
                r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"{dash}/>"#,
                poly.join(" ")
            );
            for (a, b) in &pts {
                let _ = writeln!(
                    s,
                    r#"<circle cx="{a:.1}" cy="{b:.1}" r="3.5" fill="{color}"/>"#
                );
            }
            let ly = top + 10.0 + i as f64 * 22.0;
            let lx = left + pw + 16.0;
            let _ = writeln!(
                s,
                r#"<line x1="{lx}" y1="{ly}" x2="{:.1}" y2="{ly}" stroke="{color}" stroke-width="2"{dash}/><text x="{:.1}" y="{:.1}">{}</text>"#,
                lx + 28.0,
                lx + 36.0,
                ly + 4.0,
                xml(&t.label())
            );
        }
    }
    s.push_str("</svg>\n");
    s
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
