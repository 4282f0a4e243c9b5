//! Memory figures (resident memory per idle session, peak growth for one large message)
//! and the readings from `/proc` they and the CPU figures rest on.

use std::fs;
use std::io::{self, BufReader, BufWriter, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::Duration;

use nix::sys::resource::{UsageWho, getrusage};

use crate::loads::maildir_files;
use crate::opts::Target;
use crate::report::group;
use crate::servers::{Env, Running, read_reply};

// ---------------------------------------------------------------------------------------
// /proc
// ---------------------------------------------------------------------------------------

/// A `kB` field of `/proc/<pid>/status`, such as `VmRSS` or `VmHWM`.
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// User plus system CPU seconds the process has used.
pub(crate) fn cpu_secs(pid: u32) -> Option<f64> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of stat(5), counted from the state (field 3) here; in USER_HZ.
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// CPU seconds used by reaped children (the smtp-source runs).
pub(crate) fn children_cpu_secs() -> f64 {
    getrusage(UsageWho::RUSAGE_CHILDREN).map_or(0.0, |u| {
        let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
        t(u.user_time()) + t(u.system_time())
    })
}

// ---------------------------------------------------------------------------------------
// Memory
// ---------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
pub(crate) struct MemFigure {
    pub(crate) target: Target,
    /// `idle` or `big`.
    pub(crate) kind: &'static str,
    pub(crate) before_kib: u64,
    pub(crate) after_kib: u64,
    /// Bytes per connection (idle) or bytes of peak growth (big).
    pub(crate) value: f64,
    pub(crate) note: String,
}

/// Opens a session and says EHLO; returns the stream with nothing buffered.
fn open_session(addr: SocketAddr) -> Result<TcpStream, String> {
    let s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(10)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let mut r = BufReader::with_capacity(512, s);
    let (code, text) = read_reply(&mut r).map_err(|e| format!("greeting: {e}"))?;
    if code != 220 {
        return Err(format!("greeting: {}", text.trim()));
    }
    r.get_mut()
        .write_all(b"EHLO client.example\r\n")
        .map_err(|e| e.to_string())?;
    let (code, text) = read_reply(&mut r).map_err(|e| format!("EHLO: {e}"))?;
    if code != 250 {
        return Err(format!("EHLO: {}", text.trim()));
    }
    Ok(r.into_inner())
}

/// Resident memory per idle plaintext session after EHLO, with `n` of them open.
pub(crate) fn idle_memory(env: &Env, target: Target, n: usize) -> Result<MemFigure, String> {
    let srv = Running::start(env, target, &format!("idle-{}", target.id()))?;
    // One whole session first, so that one-time allocations are in the baseline.
    drop(open_session(srv.addr())?);
    thread::sleep(Duration::from_millis(500));
    let before = status_kib(srv.pid(), "VmRSS").ok_or("no VmRSS")?;
    let mut conns = Vec::with_capacity(n);
    for i in 0..n {
        conns.push(open_session(srv.addr()).map_err(|e| format!("session {}: {e}", i + 1))?);
    }
    thread::sleep(Duration::from_secs(1));
    let after = status_kib(srv.pid(), "VmRSS").ok_or("no VmRSS")?;
    let value = (after as f64 - before as f64) * 1024.0 / n as f64;
    drop(conns);
    srv.stop();
    Ok(MemFigure {
        target,
        kind: "idle",
        before_kib: before,
        after_kib: after,
        value,
        note: format!("{n} sessions"),
    })
}

/// Peak resident growth while one message of `mib` MiB is received (VmHWM after, minus
/// VmRSS before, with the high-water mark reset through clear_refs).
pub(crate) fn big_memory(env: &Env, target: Target, mib: usize) -> Result<MemFigure, String> {
    let srv = Running::start(env, target, &format!("big-{}", target.id()))?;
    let size = mib * 1024 * 1024;
    let io_err = |e: io::Error| e.to_string();
    let stream = open_session(srv.addr())?;
    let mut r = BufReader::new(stream.try_clone().map_err(io_err)?);
    let mut w = BufWriter::with_capacity(64 * 1024, stream);
    let mut step = |w: &mut BufWriter<TcpStream>, cmd: String, want: u16| -> Result<(), String> {
        w.write_all(cmd.as_bytes()).map_err(io_err)?;
        w.flush().map_err(io_err)?;
        let (code, text) = read_reply(&mut r).map_err(io_err)?;
        if code == want {
            Ok(())
        } else {
            Err(format!("{}: {}", cmd.trim(), text.trim()))
        }
    };
    step(
        &mut w,
        format!("MAIL FROM:<bench@client.example> SIZE={size}\r\n"),
        250,
    )?;
    step(&mut w, "RCPT TO:<user@example.com>\r\n".into(), 250)?;
    step(&mut w, "DATA\r\n".into(), 354)?;
    thread::sleep(Duration::from_millis(300));
    // Reset the high-water mark to the current RSS (Linux 4.0+), so that earlier peaks
    // (startup) do not count.
    let reset = fs::write(format!("/proc/{}/clear_refs", srv.pid()), "5").is_ok();
    let before = status_kib(srv.pid(), "VmRSS").ok_or("no VmRSS")?;
    let hwm_before = status_kib(srv.pid(), "VmHWM").ok_or("no VmHWM")?;
    // 76 characters and CRLF a line; every 40th line starts with a dot (and is stuffed).
    let header = "From: <bench@client.example>\r\nTo: <user@example.com>\r\nSubject: big\r\n\r\n";
    w.write_all(header.as_bytes()).map_err(io_err)?;
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut sent = header.len();
    let mut line = [0u8; 79];
    let mut i: usize = 0;
    while sent < size {
        for (k, b) in line[..76].iter_mut().enumerate() {
            *b = alphabet[(i * 31 + k * 7) % 64];
        }
        if i.is_multiple_of(40) {
            line[0] = b'.';
        }
        line[76] = b'\r';
        line[77] = b'\n';
        if line[0] == b'.' {
            w.write_all(b".").map_err(io_err)?;
        }
        w.write_all(&line[..78]).map_err(io_err)?;
        sent += 78;
        i += 1;
    }
    w.write_all(b".\r\n").map_err(io_err)?;
    w.flush().map_err(io_err)?;
    let (code, text) = read_reply(&mut r).map_err(io_err)?;
    if code != 250 {
        return Err(format!("end of data: {}", text.trim()));
    }
    let after = status_kib(srv.pid(), "VmHWM").ok_or("no VmHWM")?;
    let _ = w.write_all(b"QUIT\r\n");
    let _ = w.flush();
    let _ = read_reply(&mut r);
    let mut note = format!("{} octets", group(sent as f64));
    if !reset && hwm_before > before {
        note.push_str("; clear_refs failed, the peak may include startup");
    }
    if let Some(m) = &srv.maildir {
        let (new, _) = maildir_files(m);
        let stored: u64 = new
            .iter()
            .filter_map(|f| f.metadata().ok())
            .map(|m| m.len())
            .sum();
        if new.len() != 1 || stored < sent as u64 {
            return Err(format!(
                "{} files of {stored} octets in new/, expected one of at least {sent}",
                new.len()
            ));
        }
    }
    srv.stop();
    Ok(MemFigure {
        target,
        kind: "big",
        before_kib: before,
        after_kib: after,
        value: (after as f64 - before as f64) * 1024.0,
        note,
    })
}
