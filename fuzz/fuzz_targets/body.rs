//! A message body of any octets, cut into reads anywhere, gives the same session as sent
//! in one read: replies, stored messages, aborts and close reason. When the client
//! dot-stuffs the body (as it must), what is stored is the body with each bare LF made
//! CRLF (the default `normalize` policy) and the CRLF the client adds before `.`.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use proto::Config;
use proto::command::dot_stuff;
use proto::config::BareNewline;
use proto::sim::Sim;

#[derive(Arbitrary, Debug)]
struct Input {
    body: Vec<u8>,
    /// Offsets into the session's input where a read ends.
    cuts: Vec<u16>,
    /// Send the body as BDAT chunks of these sizes rather than DATA.
    bdat: Option<Vec<u8>>,
    /// Dot-stuff the body, as a client must (otherwise the raw octets go on the wire).
    stuffed: bool,
    reject: bool,
    no_line_limit: bool,
}

const OPEN: &[u8] = b"EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\n";


fn normalize_lf(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut prev = 0;
    for &b in body {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    out
}

#[derive(Debug, PartialEq)]
struct Outcome {
    out: Vec<u8>,
    stored: Vec<proto::sim::Stored>,
    aborted: usize,
    closed: Option<proto::CloseReason>,
}

fn run(cfg: &Config, input: &[u8], cuts: &[usize]) -> Outcome {
    let mut sim = Sim::new(cfg.clone());
    let mut at = 0;
    for &cut in cuts {
        sim.send(&input[at..cut]);
        at = cut;
    }
    sim.send(&input[at..]);
    Outcome {
        out: sim.out,
        stored: sim.stored,
        aborted: sim.aborted,
        closed: sim.closed,
    }
}

fuzz_target!(|input: Input| {
    let mut cfg = Config::default();
    if input.reject {
        cfg.bare_newline = BareNewline::Reject;
    }
    if input.no_line_limit {
        cfg.max_text_line = 0;
    }
    let mut wire = OPEN.to_vec();
    // The body as it should be stored, when that is known.
    let mut expected = None;
    match &input.bdat {
        Some(sizes) => {
            let mut rest = &input.body[..];
            for &size in sizes {
                let (chunk, tail) = rest.split_at(usize::from(size).min(rest.len()));
                wire.extend_from_slice(format!("BDAT {}\r\n", chunk.len()).as_bytes());
                wire.extend_from_slice(chunk);
                rest = tail;
            }
            wire.extend_from_slice(format!("BDAT {} LAST\r\n", rest.len()).as_bytes());
            wire.extend_from_slice(rest);
            expected = Some(normalize_lf(&input.body));
        }
        None => {
            wire.extend_from_slice(b"DATA\r\n");
            if input.stuffed {
                let mut body = input.body.clone();
                if !body.is_empty() && !body.ends_with(b"\r\n") {
                    body.extend_from_slice(b"\r\n");
                }
                wire.extend_from_slice(&dot_stuff(&body));
                expected = Some(normalize_lf(&body));
            } else {
                wire.extend_from_slice(&input.body);
                wire.extend_from_slice(b"\r\n");
            }
            wire.extend_from_slice(b".\r\n");
        }
    }
    wire.extend_from_slice(b"QUIT\r\n");

    let whole = run(&cfg, &wire, &[]);
    let mut cuts: Vec<usize> = input
        .cuts
        .iter()
        .map(|&c| usize::from(c) % (wire.len() + 1))
        .collect();
    cuts.sort_unstable();
    let split = run(&cfg, &wire, &cuts);
    assert_eq!(whole, split, "cut at {cuts:?}");

    // Only a body that breaks no rule is stored; then it must be stored exactly.
    if let (Some(expected), [stored]) = (&expected, &whole.stored[..]) {
        assert_eq!(&stored.body, expected);
    }
    // Under `normalize` and with no line limit, such a body breaks no rule at all.
    if expected.is_some() && !input.reject && input.no_line_limit {
        assert_eq!(whole.stored.len(), 1, "a valid body was not stored");
    }
});
