//! Unit tests: the codec with known answers, and a session against a scripted fake
//! milter (replies fed as bytes, what the session sends checked octet by octet).

mod codec;
mod decisions;
mod replies;
mod session;

use super::*;

/// A session and the fake milter at the other end.
struct Fake {
    session: Session,
}

impl Fake {
    /// A session offering `options`, whose milter answered the negotiation with
    /// `version`, `actions` and `protocol`.
    fn negotiated(options: Options, version: u32, actions: Actions, protocol: Protocol) -> Self {
        let mut fake = Self {
            session: Session::new(options),
        };
        let _ = fake.sent(); // the negotiation, checked on its own
        fake.reply(&[Reply::Negotiate {
            version,
            actions,
            protocol,
            macros: vec![],
        }]);
        let events = fake.events();
        assert!(matches!(&events[..], [Event::Negotiated(_)]), "{events:?}");
        fake
    }

    /// The default offer, answered by a version 6 milter with `actions` and `protocol`.
    fn new(actions: Actions, protocol: Protocol) -> Self {
        Self::negotiated(Options::default(), 6, actions, protocol)
    }

    /// The same, for a milter of protocol `version`.
    fn with(version: u32, actions: Actions, protocol: Protocol) -> Self {
        Self::negotiated(Options::default(), version, actions, protocol)
    }

    /// A session past connect, with every action granted and every step answered.
    fn connected() -> Self {
        Self::new(Actions::ALL, Protocol::default()).then_connect()
    }

    /// The same, inside a message: MAIL and one RCPT answered.
    fn in_envelope() -> Self {
        Self::connected().then_envelope()
    }

    /// The same, in the body: DATA and end of headers answered.
    fn in_body() -> Self {
        Self::in_envelope().then_body()
    }

    /// Connect, answered.
    fn then_connect(mut self) -> Self {
        self.step_ok(|s| s.connect("c.example", Peer::Unknown), Stage::Connect);
        self
    }

    /// MAIL and RCPT, answered.
    fn then_envelope(mut self) -> Self {
        self.step_ok(|s| s.mail("<a@b.example>", &[]), Stage::Mail);
        self.step_ok(|s| s.rcpt("<c@d.example>", &[]), Stage::Rcpt);
        self
    }

    /// DATA and end of headers, answered.
    fn then_body(mut self) -> Self {
        self.step_ok(|s| s.data(), Stage::Data);
        self.step_ok(|s| s.end_of_headers(), Stage::EndOfHeaders);
        self
    }

    /// Takes a step the milter answers with `Continue`.
    fn step_ok(&mut self, f: impl FnOnce(&mut Session) -> Result<Step, UsageError>, stage: Stage) {
        assert_eq!(f(&mut self.session), Ok(Step::Sent));
        let _ = self.sent();
        self.reply(&[Reply::Continue]);
        assert_eq!(
            self.events(),
            [Event::Answer {
                stage,
                answer: Answer::Continue
            }]
        );
    }

    /// The octets the session wants to send.
    fn sent(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        self.session.poll_transmit(&mut out);
        out
    }

    /// Feeds the milter's replies, in one piece.
    fn reply(&mut self, replies: &[Reply]) {
        let mut bytes = Vec::new();
        replies.iter().for_each(|r| r.encode(&mut bytes));
        self.session.handle_received(&bytes);
    }

    /// Every event so far.
    fn events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.session.poll_event()).collect()
    }

    /// The one event so far, which must be an answer to `stage`.
    fn answer(&mut self, stage: Stage) -> Answer {
        match &self.events()[..] {
            [Event::Answer { stage: s, answer }] if *s == stage => answer.clone(),
            other => panic!("expected one answer to {stage}, got {other:?}"),
        }
    }

    /// The one event so far, which must be a failure.
    fn failure(&mut self) -> ProtocolError {
        match &self.events()[..] {
            [Event::Failed(e)] => {
                assert_eq!(self.session.state(), State::Failed);
                assert_eq!(self.session.error(), Some(e));
                e.clone()
            }
            other => panic!("expected a failure, got {other:?}"),
        }
    }
}

/// A packet as octets: length, code, data.
fn packet(code: u8, data: &[u8]) -> Vec<u8> {
    let mut out = u32::try_from(data.len() + 1)
        .expect("a short packet")
        .to_be_bytes()
        .to_vec();
    out.push(code);
    out.extend_from_slice(data);
    out
}

/// The packets in `bytes`, which must hold whole packets only.
fn packets(bytes: &[u8]) -> Vec<Packet> {
    let mut decoder = Decoder::new();
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let (used, found) = decoder.decode(rest);
        rest = &rest[used..];
        if let Some(found) = found {
            out.push(found.expect("a well-formed packet"));
        }
    }
    assert!(!decoder.is_partial());
    out
}
