//! Property tests of the milter client ([`proto::milter`]).
//!
//! Each property would fail if the feature it names broke. The number of cases comes from
//! `PROPTEST_CASES` (256 by default); failing seeds are kept in
//! `proto/proptest-regressions/milter_props.txt`.
//!
//! ```text
//! PROPTEST_CASES=10000 cargo test -p proto --release --test milter_props
//! ```

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use proto::milter::{
    Actions, Answer, Command, Decoder, Event, Family, MAX_CHUNK, Modification, Options, Packet,
    Peer, Phase, Protocol, Reply, Session, Stage, State, Step, UsageError,
};

fn proptest_config() -> ProptestConfig {
    ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/milter_props.txt",
        ))),
        ..ProptestConfig::default()
    }
}

/// The packets in `bytes`, which must hold whole, well-formed packets only.
fn packets(bytes: &[u8]) -> Vec<Packet> {
    let mut decoder = Decoder::new();
    let (mut out, mut rest) = (Vec::new(), bytes);
    while !rest.is_empty() {
        let (used, found) = decoder.decode(rest);
        rest = &rest[used..];
        out.extend(found.map(|p| p.expect("a well-formed packet")));
    }
    assert!(!decoder.is_partial(), "a packet cut short");
    out
}

// ---------------------------------------------------------------------------------------
// Packets of every kind
// ---------------------------------------------------------------------------------------

/// A string the protocol can carry (no NUL).
fn text() -> impl Strategy<Value = String> {
    "[^\u{0}]{0,12}"
}

/// One that must not be empty (a header name, an address).
fn name() -> impl Strategy<Value = String> {
    "[^\u{0}]{1,12}"
}

fn octets() -> impl Strategy<Value = Vec<u8>> {
    vec(1u8..=255, 0..16)
}

fn modification() -> impl Strategy<Value = Modification> {
    prop_oneof![
        (name(), text()).prop_map(|(name, value)| Modification::AddHeader { name, value }),
        (any::<u32>(), name(), text())
            .prop_map(|(index, name, value)| Modification::InsertHeader { index, name, value }),
        (any::<u32>(), name(), text())
            .prop_map(|(index, name, value)| Modification::ChangeHeader { index, name, value }),
        name().prop_map(Modification::AddRecipient),
        (name(), proptest::option::of(text()))
            .prop_map(|(recipient, args)| Modification::AddRecipientArgs { recipient, args }),
        name().prop_map(Modification::DeleteRecipient),
        (name(), proptest::option::of(text()))
            .prop_map(|(sender, args)| Modification::ChangeSender { sender, args }),
        vec(any::<u8>(), 0..64).prop_map(Modification::ReplaceBody),
        text().prop_map(Modification::Quarantine),
    ]
}

fn reply() -> impl Strategy<Value = Reply> {
    prop_oneof![
        (
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            vec((any::<u32>(), text()), 0..3)
        )
            .prop_map(|(version, actions, protocol, macros)| Reply::Negotiate {
                version,
                actions: Actions(actions),
                protocol: Protocol(protocol),
                macros,
            }),
        Just(Reply::Continue),
        Just(Reply::Accept),
        Just(Reply::Reject),
        Just(Reply::Tempfail),
        Just(Reply::Discard),
        Just(Reply::Skip),
        Just(Reply::Progress),
        Just(Reply::Shutdown),
        Just(Reply::ConnFail),
        text().prop_map(Reply::ReplyCode),
        "[45][0-9]{2} [45]\\.[0-9]\\.[0-9] [a-z ]{0,10}".prop_map(Reply::ReplyCode),
        modification().prop_map(Reply::Modify),
    ]
}

/// An MTA command, owning its strings (a [`Command`] borrows them).
#[derive(Clone, Debug)]
enum Owned {
    Negotiate(u32, u32, u32),
    Macro(u8, Vec<(Vec<u8>, Vec<u8>)>),
    Connect(Vec<u8>, u8, u16, Vec<u8>),
    Helo(Vec<u8>),
    Mail(Vec<Vec<u8>>),
    Rcpt(Vec<Vec<u8>>),
    Header(Vec<u8>, Vec<u8>),
    Body(Vec<u8>),
    Unknown(Vec<u8>),
    Bare(u8),
}

impl Owned {
    fn command(&self) -> Command<'_> {
        match self {
            Self::Negotiate(v, a, p) => Command::Negotiate {
                version: *v,
                actions: Actions(*a),
                protocol: Protocol(*p),
            },
            Self::Macro(stage, pairs) => Command::Macro {
                stage: *stage,
                pairs: pairs.iter().map(|(n, v)| (&n[..], &v[..])).collect(),
            },
            Self::Connect(hostname, family, port, address) => Command::Connect {
                hostname,
                family: match family % 4 {
                    0 => Family::Unknown,
                    1 => Family::Unix {
                        port: *port,
                        path: address,
                    },
                    2 => Family::Inet {
                        port: *port,
                        address,
                    },
                    _ => Family::Inet6 {
                        port: *port,
                        address,
                    },
                },
            },
            Self::Helo(s) => Command::Helo(s),
            Self::Mail(args) => Command::Mail(args.iter().map(|a| &a[..]).collect()),
            Self::Rcpt(args) => Command::Rcpt(args.iter().map(|a| &a[..]).collect()),
            Self::Header(name, value) => Command::Header { name, value },
            Self::Body(chunk) => Command::Body(chunk),
            Self::Unknown(s) => Command::Unknown(s),
            Self::Bare(n) => [
                Command::Data,
                Command::EndOfHeaders,
                Command::EndOfMessage,
                Command::Abort,
                Command::Quit,
                Command::QuitNewConnection,
            ][usize::from(*n) % 6]
                .clone(),
        }
    }
}

fn owned() -> impl Strategy<Value = Owned> {
    prop_oneof![
        (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(v, a, p)| Owned::Negotiate(v, a, p)),
        (any::<u8>(), vec((octets(), octets()), 0..3)).prop_map(|(s, p)| Owned::Macro(s, p)),
        (octets(), any::<u8>(), any::<u16>(), octets())
            .prop_map(|(h, f, p, a)| Owned::Connect(h, f, p, a)),
        octets().prop_map(Owned::Helo),
        vec(octets(), 1..4).prop_map(Owned::Mail),
        vec(octets(), 1..4).prop_map(Owned::Rcpt),
        (octets(), octets()).prop_map(|(n, v)| Owned::Header(n, v)),
        vec(any::<u8>(), 0..64).prop_map(Owned::Body),
        octets().prop_map(Owned::Unknown),
        any::<u8>().prop_map(Owned::Bare),
    ]
}

proptest! {
    #![proptest_config(proptest_config())]

    /// Every reply a milter can send decodes to itself, whatever pieces it arrives in.
    #[test]
    fn replies_round_trip(replies in vec(reply(), 1..6), cut in any::<prop::sample::Index>()) {
        let mut bytes = Vec::new();
        replies.iter().for_each(|r| r.encode(&mut bytes));
        let (a, b) = bytes.split_at(cut.index(bytes.len() + 1));
        let mut decoder = Decoder::new();
        let mut decoded = Vec::new();
        for mut piece in [a, b] {
            while !piece.is_empty() {
                let (used, found) = decoder.decode(piece);
                piece = &piece[used..];
                if let Some(p) = found {
                    let p = p.expect("well formed");
                    decoded.push(Reply::decode(&p).expect("decodes"));
                }
            }
        }
        prop_assert!(!decoder.is_partial());
        prop_assert_eq!(decoded, replies);
    }

    /// Every command the MTA can send decodes to itself.
    #[test]
    fn commands_round_trip(commands in vec(owned(), 1..6)) {
        let mut bytes = Vec::new();
        commands.iter().for_each(|c| c.command().encode(&mut bytes));
        let decoded = packets(&bytes);
        prop_assert_eq!(decoded.len(), commands.len());
        for (packet, owned) in decoded.iter().zip(&commands) {
            prop_assert_eq!(Command::decode(packet), Ok(owned.command()));
        }
    }
}

// ---------------------------------------------------------------------------------------
// Sessions
// ---------------------------------------------------------------------------------------

/// Something done to a session.
#[derive(Clone, Debug)]
enum Op {
    /// A step, a macro list, abort or quit (by number), whether or not it is in order.
    Call(u8),
    /// Octets from the milter: well-formed replies, then any octets.
    Feed(Vec<Reply>, Vec<u8>),
    Eof,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => any::<u8>().prop_map(Op::Call),
        4 => (vec(reply(), 0..4), prop_oneof![3 => Just(Vec::new()), 1 => vec(any::<u8>(), 0..12)])
            .prop_map(|(r, junk)| Op::Feed(r, junk)),
        1 => Just(Op::Eof),
    ]
}

/// Calls the step numbered `n` (of 14), or for `n` of 128 and more the step that comes
/// next in a plain session (so that runs reach the body often); returns the stage it
/// reports, if it has one.
fn call(s: &mut Session, n: u8) -> (Option<Stage>, Result<Option<Step>, UsageError>) {
    let some = |r: Result<Step, UsageError>| r.map(Some);
    let peer = Peer::Inet("192.0.2.1:4000".parse().expect("an address"));
    let n = match (n, s.state()) {
        (0..128, _) => n,
        (_, State::Idle(Phase::Connect)) => 0,
        (_, State::Idle(Phase::Connected)) => [1, 2, 9][usize::from(n) % 3],
        (_, State::Idle(Phase::Envelope)) => [3, 4][usize::from(n) % 2],
        (_, State::Idle(Phase::Headers)) => [5, 6][usize::from(n) % 2],
        (_, State::Idle(Phase::Body)) => [7, 7, 8][usize::from(n) % 3],
        _ => 11,
    };
    match n % 14 {
        0 => (Some(Stage::Connect), some(s.connect("c.example", peer))),
        1 => (Some(Stage::Helo), some(s.helo("c.example"))),
        2 => (
            Some(Stage::Mail),
            some(s.mail("<a@b.example>", &["SIZE=5"])),
        ),
        3 => (Some(Stage::Rcpt), some(s.rcpt("<c@d.example>", &[]))),
        4 => (Some(Stage::Data), some(s.data())),
        5 => (Some(Stage::Header), some(s.header("Subject", b"hi"))),
        6 => (Some(Stage::EndOfHeaders), some(s.end_of_headers())),
        7 => (Some(Stage::Body), some(s.body(b"Hello\r\n"))),
        8 => (Some(Stage::EndOfMessage), some(s.end_of_message())),
        9 => (Some(Stage::Unknown), some(s.unknown(b"XFOO"))),
        10 => (None, s.macros(Stage::Mail, &[("i", "Q1")]).map(|_| None)),
        11 => (None, s.abort().map(|_| None)),
        12 => {
            s.quit();
            (None, Ok(None))
        }
        _ => (Some(Stage::EndOfMessage), some(s.end_of_message())),
    }
}

/// Everything a run shows: step results, events, octets sent, in order.
#[derive(Debug, PartialEq)]
enum Seen {
    Called(Result<Option<Step>, UsageError>),
    Event(Event),
    Sent(Vec<u8>),
}

/// Runs `ops`, feeding each run of octets cut at `cuts` (positions taken modulo its
/// length), and checks the invariants every run keeps.
fn run(negotiate: &Reply, ops: &[Op], cuts: &[usize]) -> Vec<Seen> {
    let mut s = Session::new(Options::default());
    let mut seen = Vec::new();
    let mut failed = false;
    let mut collect = |s: &mut Session, seen: &mut Vec<Seen>| {
        let mut out = Vec::new();
        s.poll_transmit(&mut out);
        if !out.is_empty() {
            seen.push(Seen::Sent(out));
        }
        while let Some(e) = s.poll_event() {
            assert!(!failed, "an event after the failure: {e:?}");
            failed = matches!(e, Event::Failed(_));
            seen.push(Seen::Event(e));
        }
        assert_eq!(failed, s.error().is_some());
        if failed {
            assert!(s.is_closed());
        }
    };
    let feeds = std::iter::once(Op::Feed(vec![negotiate.clone()], Vec::new()));
    for (i, op) in feeds.chain(ops.iter().cloned()).enumerate() {
        match op {
            Op::Call(n) => {
                let (_, result) = call(&mut s, n);
                seen.push(Seen::Called(result));
            }
            Op::Feed(replies, junk) => {
                let mut bytes = Vec::new();
                replies.iter().for_each(|r| r.encode(&mut bytes));
                bytes.extend_from_slice(&junk);
                let mut at = 0;
                let mut cuts: Vec<usize> =
                    cuts.iter().map(|c| (c + i) % (bytes.len() + 1)).collect();
                cuts.sort_unstable();
                for cut in cuts {
                    if cut > at {
                        s.handle_received(&bytes[at..cut]);
                        at = cut;
                    }
                }
                s.handle_received(&bytes[at..]);
            }
            Op::Eof => s.handle_eof(),
        }
        collect(&mut s, &mut seen);
    }
    seen
}

/// A negotiation answer the default offer allows, mostly: often one that takes every
/// step and every action, so that runs go deep.
fn negotiation() -> impl Strategy<Value = Reply> {
    let offer = Options::default();
    let bits = || prop_oneof![1 => Just(u32::MAX), 1 => Just(0), 2 => any::<u32>()];
    prop_oneof![
        6 => (2u32..=6, bits(), bits()).prop_map(move |(version, a, p)| {
            Reply::Negotiate {
                version,
                actions: Actions(a & offer.actions.0 & !Actions::SETSYMLIST.0),
                protocol: Protocol(p & offer.protocol.0),
                macros: vec![],
            }
        }),
        1 => reply(),
    ]
}

proptest! {
    #![proptest_config(proptest_config())]

    /// Any replies and octets, at any stage, in any pieces: nothing panics, nothing
    /// follows a failure, and the pieces change nothing.
    #[test]
    fn any_pieces_give_the_same_run(
        negotiate in negotiation(),
        ops in vec(op(), 0..24),
        cuts in vec(any::<usize>(), 0..8),
    ) {
        let whole = run(&negotiate, &ops, &[]);
        let bytewise = run(&negotiate, &ops, &(0..64).collect::<Vec<_>>());
        let cut = run(&negotiate, &ops, &cuts);
        prop_assert_eq!(&whole, &bytewise);
        prop_assert_eq!(&whole, &cut);
    }

    /// Against a milter that answers every step it gets (with any answer allowed there),
    /// each step taken is answered exactly once, the milter gets exactly the steps
    /// reported sent, and never one it asked to skip.
    #[test]
    fn every_step_is_answered_once(
        negotiate in negotiation(),
        plan in vec((any::<u8>(), any::<u8>()), 0..40),
    ) {
        let mut s = Session::new(Options::default());
        let mut out = Vec::new();
        s.poll_transmit(&mut out);
        let mut bytes = Vec::new();
        negotiate.encode(&mut bytes);
        s.handle_received(&bytes);
        let Some(Event::Negotiated(negotiated)) = s.poll_event() else {
            return Ok(()); // a refused negotiation: covered above
        };
        for (n, pick) in plan {
            let (stage, result) = call(&mut s, n);
            out.clear();
            s.poll_transmit(&mut out);
            let sent: Vec<u8> = packets(&out).iter().map(|p| p.code).collect();
            for stage in Stage::ALL {
                prop_assert!(!negotiated.skips(stage) || !sent.contains(&stage.code()));
            }
            let mut events: Vec<Event> = std::iter::from_fn(|| s.poll_event()).collect();
            let Some(stage) = stage else {
                prop_assert!(events.is_empty());
                continue;
            };
            match result {
                Ok(Some(Step::Sent)) => {
                    prop_assert_eq!(sent.last(), Some(&stage.code()));
                    prop_assert!(events.is_empty());
                    let mut replies = Vec::new();
                    if stage == Stage::EndOfMessage && negotiated.actions.contains(Actions::ADDHDRS) {
                        replies.push(Reply::Modify(Modification::AddHeader {
                            name: "X-Milter".into(),
                            value: "yes".into(),
                        }));
                    }
                    replies.push(Reply::Progress);
                    replies.push(match pick % 8 {
                        0 => Reply::Accept,
                        1 => Reply::Reject,
                        2 => Reply::Tempfail,
                        3 => Reply::Discard,
                        4 => Reply::ReplyCode("550 5.7.1 no".into()),
                        5 if stage == Stage::Body => Reply::Skip,
                        _ => Reply::Continue,
                    });
                    bytes.clear();
                    replies.iter().for_each(|r| r.encode(&mut bytes));
                    s.handle_received(&bytes);
                    events = std::iter::from_fn(|| s.poll_event())
                        .filter(|e| !matches!(e, Event::Progress | Event::Modify(_)))
                        .collect();
                    prop_assert!(s.state() != State::Failed, "{:?}", events);
                }
                Ok(Some(Step::NoReply)) => {
                    prop_assert_eq!(sent.last(), Some(&stage.code()));
                    prop_assert!(negotiated.no_reply(stage));
                }
                Ok(Some(Step::Skipped)) => prop_assert!(!sent.contains(&stage.code())),
                Ok(_) | Err(_) => {
                    prop_assert!(sent.is_empty() && events.is_empty());
                    continue;
                }
            }
            prop_assert_eq!(events.len(), 1, "{:?}", events);
            let answered = matches!(&events[0], Event::Answer { stage: s, .. } if *s == stage);
            prop_assert!(answered, "{:?}", events);
            if !matches!(result, Ok(Some(Step::Sent))) {
                let continued = Event::Answer { stage, answer: Answer::Continue };
                prop_assert_eq!(&events[0], &continued);
            }
        }
    }

    /// A chunk is taken up to the limit and refused past it.
    #[test]
    fn chunks_are_bounded(len in 0..MAX_CHUNK * 2) {
        let mut s = Session::new(Options::default());
        let mut bytes = Vec::new();
        Reply::Negotiate {
            version: 6,
            actions: Actions::default(),
            protocol: Protocol::NO_REPLIES,
            macros: vec![],
        }
        .encode(&mut bytes);
        s.handle_received(&bytes);
        for n in [0u8, 2, 3, 4, 6] {
            let (_, result) = call(&mut s, n);
            prop_assert_eq!(result, Ok(Some(Step::NoReply)));
        }
        let chunk = vec![b'x'; len];
        let expected = if len <= MAX_CHUNK { Ok(Step::NoReply) } else { Err(UsageError::TooLarge) };
        prop_assert_eq!(s.body(&chunk), expected);
    }
}
