//! The hand-off destinations (issue 11), each next to a bare client driving the same
//! destination at the same concurrency, alternating, in one run:
//!
//! - `lmtp`: smtp-source into our server in LMTP mode, in front of a private Dovecot,
//!   against `smtp-source -L` straight into that Dovecot's LMTP;
//! - `http`: smtp-source into our server in HTTP mode, in front of an nginx that answers
//!   `200` to every POST, against ApacheBench (`ab -k`) posting a message of the same size
//!   to that nginx;
//! - `pipe`: smtp-source into our server in pipe mode running `dd of=/dev/null`, against
//!   the bench running that command with a message on its standard input, as many at once;
//! - `s3` (issue 12): smtp-source into our server in S3 mode, in front of a private
//!   three-node Garage cluster with replication factor 3, against curl putting objects of
//!   the same size, with the same signed headers, as many at once, into that cluster;
//!   then the memory a 25 MiB message costs a fresh instance.
//!
//! Every run is checked: smtp-source, ab and curl complete every message, our server
//! counts them, Dovecot's mailbox, nginx's access log and the bucket grow by as many.

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Instant;

use rusty_s3::actions::PutObject;
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};
use testsuite::interop::{BUCKET, Dovecot, Garage, Proc, REGION, free_addr, peak_rss_kib};
use testsuite::{Client, TempDir};

use crate::loads::{run_load, run_source};
use crate::memory::{children_cpu_secs, cpu_secs};
use crate::opts::{Impl, Load, Mode, Opts, Target};
use crate::report::{group, median};
use crate::servers::{Env, Running, find_tool};

/// Sessions (and the bare clients' concurrency).
const SESSIONS: usize = 50;
/// smtp-source's payload per message.
const BYTES: usize = 4096;
/// The pipe command, which reads its input and keeps nothing.
const PIPE_COMMAND: &str = "dd of=/dev/null status=none";

/// One figure: a destination, bare or through our server, one repetition.
#[derive(Clone, Debug)]
struct Figure {
    dest: &'static str,
    ours: bool,
    rep: usize,
    rate: f64,
}

/// Runs the hand-off comparisons `o.handoff` names; prints the report and writes a CSV.
/// Returns whether every run passed its checks.
pub(crate) fn run(o: &Opts, env: &Env, date: &str) -> Result<bool, String> {
    let load = Load {
        id: "handoff".into(),
        sessions: SESSIONS,
        messages: o.handoff_messages,
        bytes: BYTES,
        reuse: true,
    };
    let mut figures = Vec::new();
    let mut failures = Vec::new();
    let mut notes = Vec::new();
    for dest in &o.handoff {
        let result = match dest.as_str() {
            "lmtp" => lmtp(o, env, &load, &mut figures),
            "http" => http(o, env, &load, &mut figures),
            "pipe" => pipe(o, env, &load, &mut figures),
            "s3" => s3(o, env, &load, &mut figures, &mut notes),
            other => Err(format!("unknown destination {other}")),
        };
        if let Err(e) = result {
            eprintln!("bench: FAILED {dest}: {e}");
            failures.push(format!("{dest}: {e}"));
        }
    }
    let report = report(&figures, &load, &failures, &notes);
    println!("{report}");
    let csv = o.out.join(format!("{date}-handoff.csv"));
    let mut text = String::from("date,destination,client,rep,messages_per_s\n");
    for f in &figures {
        let client = if f.ours { "guerrilla-smol" } else { "bare" };
        let _ = writeln!(text, "{date},{},{client},{},{:.1}", f.dest, f.rep, f.rate);
    }
    fs::write(&csv, text).map_err(|e| format!("cannot write {}: {e}", csv.display()))?;
    println!("CSV: {}", csv.display());
    Ok(failures.is_empty())
}

/// The markdown report: medians and the ratio of ours to bare.
fn report(figures: &[Figure], load: &Load, failures: &[String], notes: &[String]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "### Hand-offs: {} sessions x {} messages x {} KiB, connections reused; messages/s, median (ratio to bare)\n",
        SESSIONS,
        group(load.messages as f64),
        BYTES / 1024
    );
    let _ = writeln!(
        s,
        "| destination | bare client | through guerrilla-smol | ratio |"
    );
    let _ = writeln!(s, "|---|--:|--:|--:|");
    for (dest, bare_name) in [
        ("lmtp", "smtp-source -L into Dovecot"),
        ("http-null", "ab -k into nginx answering 200 at once"),
        (
            "http-sync",
            "ab -k into a receiver that syncs each message (Python)",
        ),
        ("pipe", "the command, 50 at once"),
        (
            "s3",
            "curl, 50 PUTs at once into 3-node Garage, replication 3",
        ),
    ] {
        let rates = |ours: bool| -> Vec<f64> {
            figures
                .iter()
                .filter(|f| f.dest == dest && f.ours == ours)
                .map(|f| f.rate)
                .collect()
        };
        let (Some(bare), Some(ours)) = (median(&rates(false)), median(&rates(true))) else {
            continue;
        };
        let _ = writeln!(
            s,
            "| {dest} ({bare_name}) | {} | {} | {:.2}x |",
            group(bare),
            group(ours),
            ours / bare
        );
    }
    for n in notes {
        let _ = writeln!(s, "\n- {n}");
    }
    for f in failures {
        let _ = writeln!(s, "\n- FAILED {f}");
    }
    s
}

/// Our server (smol), with `extra` settings, named `name` in the temp dir.
fn ours(env: &Env, name: &str, extra: &[(&str, String)]) -> Result<Running, String> {
    let target = Target {
        imp: Impl::Smol,
        mode: Mode::Discard,
    };
    Running::start_with(env, target, name, extra)
}

/// Bare client first in odd repetitions, ours first in even ones, so that whatever
/// drifts during a run (a mailbox growing, a disk filling) weighs on both alike.
fn order(rep: usize) -> [bool; 2] {
    if rep % 2 == 1 {
        [false, true]
    } else {
        [true, false]
    }
}

/// Removes the messages (and Dovecot's index files) of a mailbox, so that every run
/// delivers into an empty one.
fn empty_mailbox(dir: &Path) {
    for sub in ["new", "cur"] {
        for f in fs::read_dir(dir.join(sub)).into_iter().flatten().flatten() {
            let _ = fs::remove_file(f.path());
        }
    }
    for f in fs::read_dir(dir).into_iter().flatten().flatten() {
        if f.file_name().to_string_lossy().starts_with("dovecot") && f.path().is_file() {
            let _ = fs::remove_file(f.path());
        }
    }
}

/// Files in a Maildir's `new/` and `cur/`.
fn mailbox_count(dir: &Path) -> usize {
    ["new", "cur"]
        .iter()
        .map(|sub| fs::read_dir(dir.join(sub)).map_or(0, |d| d.count()))
        .sum()
}

fn lmtp(o: &Opts, env: &Env, load: &Load, figures: &mut Vec<Figure>) -> Result<(), String> {
    let dir = TempDir::new("bench-dovecot");
    let dc = Dovecot::start(&dir, &["user@example.com"], None, (65534, 65534));
    let mailbox = dc.dir().join("mail/example.com/user");
    let srv = ours(
        env,
        "handoff-lmtp",
        &[
            ("GSMTP_STORAGE", "lmtp".into()),
            ("GSMTP_LMTP_ADDR", dc.lmtp.to_string()),
            ("GSMTP_LMTP_CONNECTIONS", (SESSIONS + 10).to_string()),
        ],
    )?;
    for rep in 1..=o.reps {
        for via_ours in order(rep) {
            empty_mailbox(&mailbox);
            let before = mailbox_count(&mailbox);
            let secs = if via_ours {
                run_load(env, &srv, load, o.run_timeout)?.0
            } else {
                run_source(env, load, dc.lmtp, true, o.run_timeout)?.0
            };
            let delivered = mailbox_count(&mailbox) - before;
            if delivered != load.messages {
                return Err(format!("Dovecot stored {delivered} of {}", load.messages));
            }
            record(figures, "lmtp", via_ours, rep, o.reps, load, secs);
        }
    }
    srv.stop();
    Ok(())
}

/// An nginx that answers `200 stored` to every request, logging each.
fn nginx_receiver(dir: &Path, addr: SocketAddr) -> Result<Proc, String> {
    let nginx = find_tool("nginx").ok_or("nginx not found (Debian: nginx-light)")?;
    let conf = dir.join("nginx.conf");
    let text = format!(
        "daemon off;\nworker_processes 1;\nerror_log {d}/error.log;\npid {d}/nginx.pid;\n\
         events {{ worker_connections 4096; }}\n\
         http {{\n  access_log {d}/access.log;\n  client_body_temp_path {d}/body;\n\
           server {{\n    listen {addr};\n    keepalive_requests 1000000;\n\
             location / {{\n      client_max_body_size 50m;\n      client_body_buffer_size 256k;\n\
               return 200 \"stored\\n\";\n    }}\n  }}\n}}\n",
        d = dir.display()
    );
    fs::write(&conf, text).map_err(|e| e.to_string())?;
    let mut cmd = Command::new(nginx);
    cmd.arg("-c").arg(&conf).arg("-p").arg(dir);
    let mut p = Proc::spawn("nginx", &mut cmd, &dir.join("nginx.out"));
    p.wait_listening(addr);
    Ok(p)
}

fn access_count(dir: &Path) -> usize {
    fs::read_to_string(dir.join("access.log"))
        .map_or(0, |t| t.lines().filter(|l| l.contains("\" 200 ")).count())
}

fn http(o: &Opts, env: &Env, load: &Load, figures: &mut Vec<Figure>) -> Result<(), String> {
    let ab = find_tool("ab").ok_or("ab not found (Debian: apache2-utils)")?;
    let dir = TempDir::new("bench-http");
    // What our server posts: its trace headers, then smtp-source's message.
    let body = dir.path().join("message.eml");
    fs::write(&body, sample_message()).map_err(|e| e.to_string())?;
    // Two receivers: nginx answering 200 to everything at once (the SMTP side is then
    // the limit), and one that stores and syncs each message before it answers (as a
    // receiver that must not lose mail does; then it is the limit).
    for receiver in ["http-null", "http-sync"] {
        let rx_dir = dir.path().join(receiver);
        fs::create_dir_all(&rx_dir).map_err(|e| e.to_string())?;
        let addr = free_addr();
        let _rx = match receiver {
            "http-null" => nginx_receiver(&rx_dir, addr)?,
            _ => testsuite::interop::http_receiver(addr.port(), &rx_dir, false),
        };
        let answered = || match receiver {
            "http-null" => access_count(&rx_dir),
            _ => fs::read_dir(&rx_dir).map_or(0, |d| {
                d.flatten()
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".eml"))
                    .count()
            }),
        };
        let url = format!("http://{addr}/inbound");
        let srv = ours(
            env,
            &format!("handoff-{receiver}"),
            &[
                ("GSMTP_STORAGE", "http".into()),
                ("GSMTP_HTTP_URL", url.clone()),
                ("GSMTP_HTTP_CONNECTIONS", SESSIONS.to_string()),
            ],
        )?;
        for rep in 1..=o.reps {
            for via_ours in order(rep) {
                let before = answered();
                let secs = if via_ours {
                    run_load(env, &srv, load, o.run_timeout)?.0
                } else {
                    run_ab(&ab, &body, &url, load.messages)?
                };
                let got = answered() - before;
                if got != load.messages {
                    return Err(format!("{receiver} stored {got} of {}", load.messages));
                }
                let dest = if receiver == "http-null" {
                    "http-null"
                } else {
                    "http-sync"
                };
                record(figures, dest, via_ours, rep, o.reps, load, secs);
            }
        }
        srv.stop();
    }
    Ok(())
}

/// `ab -k -c 50 -n N -p body`, checked to have no failure; returns its seconds.
fn run_ab(ab: &Path, body: &Path, url: &str, n: usize) -> Result<f64, String> {
    let start = Instant::now();
    let out = Command::new(ab)
        .args([
            "-q",
            "-k",
            "-c",
            &SESSIONS.to_string(),
            "-n",
            &n.to_string(),
        ])
        .arg("-p")
        .arg(body)
        .args(["-T", "message/rfc822", url])
        .output()
        .map_err(|e| format!("cannot run ab: {e}"))?;
    let secs = start.elapsed().as_secs_f64();
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().split(' ').next())
            .and_then(|v| v.parse::<usize>().ok())
    };
    let complete = field("Complete requests:").unwrap_or(0);
    let failed = field("Failed requests:").unwrap_or(usize::MAX);
    if !out.status.success() || complete != n || failed != 0 || text.contains("Non-2xx") {
        return Err(format!(
            "ab: {}, {complete} of {n} complete, {failed} failed\n{text}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(secs)
}

/// A message the size of what our server hands on for smtp-source's `-l 4096`: trace
/// headers, smtp-source's headers and its payload.
fn sample_message() -> Vec<u8> {
    sample_message_numbered(0)
}

/// [`sample_message`] with message number `i` in its `Message-Id` (same length for all).
fn sample_message_numbered(i: usize) -> Vec<u8> {
    let mut m = format!("Return-Path: <bench@client.example>\r\nReceived: from client.example (unknown [127.0.0.1])\r\n\tby bench.example (Guerrilla-SMTPd) with SMTP id 00000000000000000000000000000000\r\n\tfor <user@example.com>;\r\n\tTue, 01 Dec 2026 00:00:00 +0000\r\nFrom: <bench@client.example>\r\nTo: <user@example.com>\r\nDate: Tue, 01 Dec 2026 00:00:00 +0000\r\nMessage-Id: <{i:08}@client.example>\r\n\r\n").into_bytes();
    while m.len() < 4096 + 400 {
        m.extend_from_slice(&[b'X'; 78]);
        m.extend_from_slice(b"\r\n");
    }
    m
}

fn pipe(o: &Opts, env: &Env, load: &Load, figures: &mut Vec<Figure>) -> Result<(), String> {
    let srv = ours(
        env,
        "handoff-pipe",
        &[
            ("GSMTP_STORAGE", "pipe".into()),
            ("GSMTP_PIPE_COMMAND", PIPE_COMMAND.into()),
            ("GSMTP_PIPE_CONCURRENCY", SESSIONS.to_string()),
        ],
    )?;
    let message = Arc::new(sample_message());
    for rep in 1..=o.reps {
        for via_ours in order(rep) {
            let secs = if via_ours {
                run_load(env, &srv, load, o.run_timeout)?.0
            } else {
                run_commands(&message, load.messages)?
            };
            record(figures, "pipe", via_ours, rep, o.reps, load, secs);
        }
    }
    srv.stop();
    Ok(())
}

/// Runs [`PIPE_COMMAND`] `n` times, 50 at once, each with `message` on its standard
/// input; checked to exit 0 every time. Returns the seconds it took.
fn run_commands(message: &Arc<Vec<u8>>, n: usize) -> Result<f64, String> {
    let args: Vec<String> = shlex_split(PIPE_COMMAND);
    let next = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let threads: Vec<_> = (0..SESSIONS)
        .map(|_| {
            let (args, next, failed, message) = (
                args.clone(),
                Arc::clone(&next),
                Arc::clone(&failed),
                Arc::clone(message),
            );
            thread::spawn(move || {
                while next.fetch_add(1, Ordering::Relaxed) < n {
                    let ok = Command::new(&args[0])
                        .args(&args[1..])
                        .stdin(Stdio::piped())
                        .stdout(Stdio::null())
                        .spawn()
                        .and_then(|mut c| {
                            if let Some(mut stdin) = c.stdin.take() {
                                stdin.write_all(&message)?;
                            }
                            c.wait()
                        })
                        .is_ok_and(|s| s.success());
                    if !ok {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
    let secs = start.elapsed().as_secs_f64();
    match failed.load(Ordering::Relaxed) {
        0 => Ok(secs),
        f => Err(format!("{f} of {n} runs of {PIPE_COMMAND} failed")),
    }
}

fn s3(
    o: &Opts,
    env: &Env,
    load: &Load,
    figures: &mut Vec<Figure>,
    notes: &mut Vec<String>,
) -> Result<(), String> {
    if !testsuite::interop::garage_installed() {
        return Err("garage not installed (.ci/run builds it)".into());
    }
    let dir = TempDir::new("bench-garage");
    let g = Garage::start(&dir, 3);
    let garage_cpu = || g.pids().into_iter().filter_map(cpu_secs).sum::<f64>();
    // CPU seconds per run: Garage's three nodes, and the sender's side (curl, or our
    // server and smtp-source), to say where a difference in rate comes from.
    let mut cpu: Vec<S3Cpu> = Vec::new();
    let settings = |prefix: &str| {
        vec![
            ("GSMTP_STORAGE", "s3".to_string()),
            ("GSMTP_S3_ENDPOINT", format!("http://{}", g.s3(0))),
            ("GSMTP_S3_BUCKET", BUCKET.into()),
            ("GSMTP_S3_PREFIX", prefix.into()),
            ("GSMTP_S3_ACCESS_KEY", g.key_id.clone()),
            ("GSMTP_S3_SECRET_KEY", g.secret.clone()),
            ("GSMTP_HTTP_CONNECTIONS", SESSIONS.to_string()),
            ("GSMTP_MAX_SIZE", "30000000".into()),
        ]
    };
    for rep in 1..=o.reps {
        for via_ours in order(rep) {
            // Each run writes under its own prefix, through a fresh instance.
            let prefix = format!("{}/{rep}/", if via_ours { "ours" } else { "bare" });
            let garage_before = garage_cpu();
            let (secs, sender, source) = if via_ours {
                let srv = ours(env, "handoff-s3", &settings(&prefix))?;
                let run = run_load(env, &srv, load, o.run_timeout)?;
                srv.stop();
                run
            } else {
                let before = children_cpu_secs();
                let secs = run_puts(&g, dir.path(), &prefix, load.messages)?;
                (secs, children_cpu_secs() - before, 0.0)
            };
            cpu.push(S3Cpu {
                ours: via_ours,
                garage: garage_cpu() - garage_before,
                sender,
                source,
            });
            let stored = g.list(1, &prefix).len();
            if stored != load.messages {
                return Err(format!("the bucket holds {stored} of {}", load.messages));
            }
            record(figures, "s3", via_ours, rep, o.reps, load, secs);
        }
    }
    let per_object = |ours: bool, pick: fn(&S3Cpu) -> f64| {
        let v: Vec<f64> = cpu
            .iter()
            .filter(|c| c.ours == ours)
            .map(|c| pick(c) * 1e6 / load.messages as f64)
            .collect();
        median(&v).unwrap_or(0.0)
    };
    let note = format!(
        "s3: CPU per object, medians: Garage's three nodes {:.0} us with curl, {:.0} us \
         through guerrilla-smol; curl {:.0} us; our server {:.0} us and smtp-source {:.0} us",
        per_object(false, |c| c.garage),
        per_object(true, |c| c.garage),
        per_object(false, |c| c.sender),
        per_object(true, |c| c.sender),
        per_object(true, |c| c.source),
    );
    eprintln!("bench: {note}");
    notes.push(note);
    // A fresh instance, one small message to settle, then 25 MiB: what does it cost?
    let srv = ours(env, "handoff-s3-big", &settings("big/"))?;
    let mut c = Client::connect(srv.addr());
    c.reply();
    c.ehlo("client.example");
    let to = ["user@example.com"];
    let r = c.send_mail("bench@client.example", &to, b"settle\r\n");
    if r.code != 250 {
        return Err(format!("a small message: {r:?}"));
    }
    let before = peak_rss_kib(srv.pid());
    let big = testsuite::interop::big_body(25);
    let r = c.send_mail("bench@client.example", &to, &big);
    if r.code != 250 {
        return Err(format!("the 25 MiB message: {r:?}"));
    }
    let after = peak_rss_kib(srv.pid());
    let note = format!(
        "s3: a 25 MiB message (multipart upload) raised a fresh instance's peak RSS from {before} KiB to {after} KiB: {} KiB",
        after.saturating_sub(before)
    );
    eprintln!("bench: {note}");
    notes.push(note);
    srv.stop();
    Ok(())
}

/// CPU seconds of one S3 run, through our server or curl.
struct S3Cpu {
    ours: bool,
    /// Garage's three nodes.
    garage: f64,
    /// curl, or our server.
    sender: f64,
    /// smtp-source (0 for curl's runs).
    source: f64,
}

/// PUTs `n` distinct messages the size of `body` (each with its own `Message-Id`, as
/// Garage stores identical content once), under `prefix`, 50 at once over kept
/// connections (curl's parallel mode), each request signed by rusty-s3 with the headers
/// our server signs (type, Content-MD5 and the envelope's metadata); checked to be `200`
/// every time. Returns the seconds it took, signing included.
fn run_puts(g: &Garage, dir: &Path, prefix: &str, n: usize) -> Result<f64, String> {
    use base64::Engine as _;
    use md5::Digest as _;
    let files = dir.join(prefix.replace('/', "-"));
    fs::create_dir_all(&files).map_err(|e| e.to_string())?;
    let mut bodies = Vec::with_capacity(n);
    for i in 0..n {
        let path = files.join(format!("{i}.eml"));
        let body = sample_message_numbered(i);
        fs::write(&path, &body).map_err(|e| e.to_string())?;
        bodies.push((path, body));
    }
    let url = format!("http://{}/", g.s3(0))
        .parse()
        .map_err(|e| format!("{e}"))?;
    let bucket = Bucket::new(url, UrlStyle::Path, BUCKET, REGION).map_err(|e| e.to_string())?;
    let creds = Credentials::new(g.key_id.clone(), g.secret.clone());
    let start = Instant::now();
    let mut config = String::new();
    for (i, (path, body)) in bodies.iter().enumerate() {
        if i > 0 {
            config.push_str("next\n");
        }
        let md5 = base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(body));
        let headers = [
            ("content-type", "message/rfc822"),
            ("content-md5", &md5),
            ("x-amz-meta-mail-from", "bench@client.example"),
            ("x-amz-meta-rcpt-to", "user@example.com"),
            ("x-amz-meta-client-addr", "127.0.0.1"),
            ("x-amz-meta-helo", "client.example"),
            ("x-amz-meta-tls", "none"),
        ];
        let key = format!("{prefix}{i:08}.eml");
        let mut put = PutObject::new(&bucket, Some(&creds), &key);
        for (name, value) in headers {
            put.headers_mut().insert(name, value.to_string());
        }
        let signed = put.sign(std::time::Duration::from_secs(3600));
        for (name, value) in headers {
            let _ = writeln!(config, "header = \"{name}: {value}\"");
        }
        let _ = writeln!(
            config,
            "upload-file = \"{}\"\nurl = \"{signed}\"\noutput = \"/dev/null\"\n\
             silent\nshow-error\nwrite-out = \"%{{http_code}}\\n\"",
            path.display()
        );
    }
    let file = dir.join(format!("{}.curl", prefix.replace('/', "-")));
    fs::write(&file, config).map_err(|e| e.to_string())?;
    let out = Command::new("curl")
        .args(["--parallel", "--parallel-max", &SESSIONS.to_string(), "-K"])
        .arg(&file)
        .output()
        .map_err(|e| format!("cannot run curl: {e}"))?;
    let secs = start.elapsed().as_secs_f64();
    let text = String::from_utf8_lossy(&out.stdout);
    let ok = text.lines().filter(|l| *l == "200").count();
    let _ = fs::remove_dir_all(&files);
    if !out.status.success() || ok != n {
        return Err(format!(
            "curl: {}, {ok} of {n} PUTs answered 200\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(secs)
}

/// The command's words (it holds no quotes).
fn shlex_split(s: &str) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

fn record(
    figures: &mut Vec<Figure>,
    dest: &'static str,
    ours: bool,
    rep: usize,
    reps: usize,
    load: &Load,
    secs: f64,
) {
    let rate = load.messages as f64 / secs;
    let who = if ours { "guerrilla-smol" } else { "bare" };
    eprintln!(
        "bench: handoff {dest:<5} rep {rep}/{reps} {who:<15} {:>8} msg/s {secs:>8.2} s",
        group(rate)
    );
    figures.push(Figure {
        dest,
        ours,
        rep,
        rate,
    });
}
