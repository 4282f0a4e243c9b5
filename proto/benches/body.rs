//! DATA body throughput through a [`Connection`]: one session (EHLO, MAIL, RCPT, DATA),
//! then 256 MiB of text in reads of 4 KiB and of 64 KiB, then `.`.
//!
//! The text has lines of about 70 octets, some starting with a dot (stuffed on the wire).
//! Stored chunks are counted, not copied, so this measures the connection alone: framing,
//! dot-unstuffing, the end-of-data search and the action loop. Each size is run 5 times and
//! the best run is reported, as GB/s of input.
//!
//! ```text
//! cargo bench -p proto --bench body
//! BODY_BENCH_MIB=64 cargo bench -p proto --bench body   # a shorter run
//! ```

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proto::sim::Sim;
use proto::{Action, Config, Connection};

/// Runs per read size; the best one counts.
const RUNS: usize = 5;

/// A deterministic xorshift generator, so that every run sees the same text.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// About `len` octets of dot-stuffed text ending in CRLF, and how many octets it stores
/// once unstuffed.
fn text(len: usize) -> (Vec<u8>, usize) {
    const WORDS: [&str; 16] = [
        "the",
        "message",
        "server",
        "receive",
        "of",
        "and",
        "Guerrilla",
        "SMTP",
        "to",
        "delivery",
        "a",
        "mailbox",
        "from",
        "header",
        "body",
        "line",
    ];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut out = Vec::with_capacity(len + 128);
    let mut stuffing = 0;
    while out.len() < len {
        let target = 50 + rng.below(40) as usize;
        let start = out.len();
        if rng.below(16) == 0 {
            out.extend_from_slice(b"..");
            stuffing += 1;
        }
        while out.len() - start < target {
            out.extend_from_slice(WORDS[rng.below(16) as usize].as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(b"\r\n");
    }
    let stored = out.len() - stuffing;
    (out, stored)
}

/// Hands the connection its pending replies and actions until it wants input; returns the
/// number of body octets it gave to store.
fn drain(conn: &mut Connection, now: Instant, out: &mut Vec<u8>) -> usize {
    let mut stored = 0;
    loop {
        conn.poll_transmit(out);
        out.clear();
        match conn.poll_action() {
            Action::Read => return stored,
            Action::Begin(env) => {
                black_box(env);
            }
            Action::Write(bytes) => stored += black_box(bytes).len(),
            Action::Check(_) => conn.handle_check(now, Ok(())),
            Action::Commit => conn.handle_delivery(now, Ok(())),
            Action::Abort => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// One session that sends `text` `repeat` times in reads of `read` octets. Returns the
/// time spent on the body (from the first body read to the commit) and the octets stored.
fn session(text: &[u8], repeat: usize, read: usize) -> (Duration, usize) {
    let mut cfg = Config::default();
    cfg.max_size = u64::MAX;
    let now = Instant::now();
    let mut conn = Connection::new(Arc::new(cfg), now, Sim::accept());
    let mut out = Vec::new();
    drain(&mut conn, now, &mut out);
    conn.handle_input(
        now,
        b"EHLO bench.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n",
    );
    drain(&mut conn, now, &mut out);

    let start = Instant::now();
    let mut stored = 0;
    for _ in 0..repeat {
        for chunk in text.chunks(read) {
            conn.handle_input(now, black_box(chunk));
            stored += drain(&mut conn, now, &mut out);
        }
    }
    conn.handle_input(now, b".\r\n");
    stored += drain(&mut conn, now, &mut out);
    let elapsed = start.elapsed();
    assert_eq!(conn.stats().messages, 1, "the message was not committed");
    (elapsed, stored)
}

fn main() {
    let mib: usize = std::env::var("BODY_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    // 4 MiB of text, sent as many times as it takes to reach the total.
    let (text, stored_once) = text(4 << 20);
    let repeat = (mib << 20).div_ceil(text.len());
    let input = (text.len() * repeat + 3) as f64;
    for (name, read) in [("4KiB", 4 << 10), ("64KiB", 64 << 10)] {
        let mut best = Duration::MAX;
        for _ in 0..RUNS {
            let (elapsed, stored) = session(&text, repeat, read);
            assert_eq!(stored, stored_once * repeat, "body octets lost or added");
            best = best.min(elapsed);
        }
        let gbps = input / best.as_secs_f64() / 1e9;
        println!("body/{name}: {gbps:.2} GB/s ({mib} MiB, best of {RUNS})");
    }
}
