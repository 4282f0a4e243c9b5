//! A milter client (`proto::milter::Session`) fed any octets as the milter's replies, at
//! any stage the steps reach: well-formed replies (any kind, any order) and raw octets,
//! each read cut anywhere. Nothing panics; the cuts change nothing (every event and every
//! octet sent are the same as with each read whole); at most one answer is due at a time,
//! and every answer is to a step that was taken; nothing follows a failure.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use proto::milter::{
    Actions, Event, Modification, Options, Peer, Protocol, Reply, Session, Stage, Step,
};

/// A reply to encode, so that the fuzzer reaches deep states quickly.
#[derive(Arbitrary, Debug)]
enum Wire {
    Continue,
    Accept,
    Reject,
    Tempfail,
    Discard,
    Skip,
    Progress,
    Shutdown,
    Code(String),
    AddHeader(String, String),
    ChangeHeader(u32, String, String),
    AddRecipient(String),
    Body(Vec<u8>),
    Quarantine(String),
    Negotiate(u32, u32, u32),
}

impl Wire {
    fn reply(&self) -> Reply {
        let m = Reply::Modify;
        match self {
            Self::Continue => Reply::Continue,
            Self::Accept => Reply::Accept,
            Self::Reject => Reply::Reject,
            Self::Tempfail => Reply::Tempfail,
            Self::Discard => Reply::Discard,
            Self::Skip => Reply::Skip,
            Self::Progress => Reply::Progress,
            Self::Shutdown => Reply::Shutdown,
            Self::Code(text) => Reply::ReplyCode(text.clone()),
            Self::AddHeader(name, value) => m(Modification::AddHeader {
                name: name.clone(),
                value: value.clone(),
            }),
            Self::ChangeHeader(index, name, value) => m(Modification::ChangeHeader {
                index: *index,
                name: name.clone(),
                value: value.clone(),
            }),
            Self::AddRecipient(r) => m(Modification::AddRecipient(r.clone())),
            Self::Body(b) => m(Modification::ReplaceBody(b.clone())),
            Self::Quarantine(r) => m(Modification::Quarantine(r.clone())),
            Self::Negotiate(v, a, p) => Reply::Negotiate {
                version: *v,
                actions: Actions(*a),
                protocol: Protocol(*p),
                macros: vec![],
            },
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Op {
    /// A step (or macros, abort, quit), by number, in order or not.
    Call(u8),
    Replies(Vec<Wire>),
    Octets(Vec<u8>),
    Eof,
}

#[derive(Arbitrary, Debug)]
struct Input {
    /// The milter's negotiation answer (masked to the default offer when `fit`).
    version: u8,
    actions: u32,
    protocol: u32,
    fit: bool,
    ops: Vec<Op>,
    /// Where reads end, within each run of octets.
    cuts: Vec<u16>,
}

fn call(s: &mut Session, n: u8) -> (bool, Result<Option<Step>, ()>) {
    let step = |r: Result<Step, _>| (true, r.map(Some).map_err(|_| ()));
    match n % 13 {
        0 => step(s.connect("c.example", Peer::Unix("/run/smtp"))),
        1 => step(s.helo("c.example")),
        2 => step(s.mail("<a@b.example>", &["BODY=8BITMIME"])),
        3 => step(s.rcpt("<c@d.example>", &[])),
        4 => step(s.data()),
        5 => step(s.header("Subject", b"hi")),
        6 => step(s.end_of_headers()),
        7 => step(s.body(b"Hello\r\n")),
        8 => step(s.end_of_message()),
        9 => step(s.unknown(b"XFOO")),
        10 => (
            false,
            s.macros(Stage::Rcpt, &[("i", "Q1")])
                .map(|_| None)
                .map_err(|_| ()),
        ),
        11 => (false, s.abort().map(|_| None).map_err(|_| ())),
        _ => {
            s.quit();
            (false, Ok(None))
        }
    }
}

/// Runs the input with reads cut at `cuts` (or whole); returns everything seen.
fn run(input: &Input, cuts: &[u16]) -> Vec<String> {
    let mut s = Session::new(Options::default());
    let mut seen = Vec::new();
    let offer = Options::default();
    let (mut a, mut p) = (input.actions, input.protocol);
    if input.fit {
        a &= offer.actions.0 & !Actions::SETSYMLIST.0;
        p &= offer.protocol.0;
    }
    let mut first = Vec::new();
    Wire::Negotiate(u32::from(input.version % 8), a, p)
        .reply()
        .encode(&mut first);
    let mut due = false; // an answer is due
    let mut failed = false;
    let feed = |s: &mut Session, bytes: &[u8]| {
        let mut at = 0;
        for &cut in cuts {
            let cut = usize::from(cut).min(bytes.len());
            if cut > at {
                s.handle_received(&bytes[at..cut]);
                at = cut;
            }
        }
        s.handle_received(&bytes[at..]);
    };
    let mut check = |s: &mut Session, seen: &mut Vec<String>, due: &mut bool| {
        let mut out = Vec::new();
        s.poll_transmit(&mut out);
        seen.push(format!("sent {out:?}"));
        while let Some(e) = s.poll_event() {
            assert!(!failed, "an event after the failure: {e:?}");
            match &e {
                Event::Answer { .. } => {
                    assert!(*due, "an answer to nothing: {e:?}");
                    *due = false;
                }
                Event::Failed(_) => failed = true,
                _ => {}
            }
            seen.push(format!("{e:?}"));
        }
        assert_eq!(failed, s.error().is_some());
        assert!(!failed || s.is_closed());
    };
    feed(&mut s, &first);
    check(&mut s, &mut seen, &mut due);
    for op in &input.ops {
        match op {
            Op::Call(n) => {
                let (is_step, result) = call(&mut s, *n);
                if is_step && result.is_ok() {
                    assert!(!due, "a step was taken while an answer was due");
                    due = true;
                }
                if *n % 13 == 12 {
                    due = false; // quit: nothing is awaited any more
                }
                seen.push(format!("{result:?}"));
            }
            Op::Replies(replies) => {
                let mut bytes = Vec::new();
                replies.iter().for_each(|r| r.reply().encode(&mut bytes));
                feed(&mut s, &bytes);
            }
            Op::Octets(bytes) => feed(&mut s, bytes),
            Op::Eof => s.handle_eof(),
        }
        check(&mut s, &mut seen, &mut due);
    }
    seen
}

fuzz_target!(|input: Input| {
    let whole = run(&input, &[]);
    let mut cuts = input.cuts.clone();
    cuts.sort_unstable();
    assert_eq!(whole, run(&input, &cuts));
});
