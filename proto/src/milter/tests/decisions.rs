//! What each answer decides (for the connection, the message or one command), abort,
//! quit, and the caller's mistakes.

use super::*;

#[test]
fn a_refused_connection_leaves_only_quit() {
    for reply in [
        Reply::Reject,
        Reply::Tempfail,
        Reply::ReplyCode("421 4.7.0 go".into()),
        Reply::Shutdown,
        Reply::ConnFail,
    ] {
        let mut fake = Fake::new(Actions::ALL, Protocol::default());
        assert_eq!(fake.session.connect("c", Peer::Unknown), Ok(Step::Sent));
        let _ = fake.sent();
        fake.reply(std::slice::from_ref(&reply));
        let _ = fake.answer(Stage::Connect);
        let s = &mut fake.session;
        assert!(Stage::ALL.iter().all(|st| !s.wants(*st)), "{reply:?}");
        assert_eq!(s.helo("c"), Err(UsageError::Decided));
        assert_eq!(s.mail("<a@b>", &[]), Err(UsageError::Decided));
        assert_eq!(
            s.macros(Stage::Helo, &[("a", "b")]),
            Err(UsageError::Decided)
        );
        assert_eq!(s.abort(), Ok(false));
        s.quit();
        assert_eq!(fake.sent(), packet(b'Q', b""));
    }
    // At HELO too.
    let mut fake = Fake::connected();
    assert_eq!(fake.session.helo("c"), Ok(Step::Sent));
    fake.reply(&[Reply::Reject]);
    assert_eq!(fake.answer(Stage::Helo), Answer::Reject);
    assert_eq!(fake.session.helo("c"), Err(UsageError::Decided));
}

#[test]
fn an_accepted_connection_skips_everything() {
    let mut fake = Fake::new(Actions::ALL, Protocol::default());
    assert_eq!(fake.session.connect("c", Peer::Unknown), Ok(Step::Sent));
    let _ = fake.sent();
    fake.reply(&[Reply::Accept]);
    assert_eq!(fake.answer(Stage::Connect), Answer::Accept);
    let s = &mut fake.session;
    assert_eq!(s.macros(Stage::Helo, &[("a", "b")]), Ok(false));
    assert_eq!(s.helo("c"), Ok(Step::Skipped));
    assert_eq!(s.mail("<a@b>", &[]), Ok(Step::Skipped));
    assert_eq!(s.rcpt("<c@d>", &[]), Ok(Step::Skipped));
    assert_eq!(s.data(), Ok(Step::Skipped));
    assert_eq!(s.end_of_headers(), Ok(Step::Skipped));
    assert_eq!(s.end_of_message(), Ok(Step::Skipped));
    assert_eq!(fake.sent(), b"");
    assert_eq!(fake.events().len(), 6);
}

#[test]
fn discard_at_connect_means_nothing() {
    let mut fake = Fake::new(Actions::ALL, Protocol::default());
    assert_eq!(fake.session.connect("c", Peer::Unknown), Ok(Step::Sent));
    fake.reply(&[Reply::Discard]);
    assert_eq!(fake.answer(Stage::Connect), Answer::Continue);
    assert!(fake.session.wants(Stage::Helo));
}

#[test]
fn an_accepted_message_skips_its_steps_only() {
    for (at_rcpt, reply, answer) in [
        (false, Reply::Accept, Answer::Accept),
        (true, Reply::Accept, Answer::Accept),
        (false, Reply::Discard, Answer::Discard),
        (true, Reply::Discard, Answer::Discard),
    ] {
        let mut fake = Fake::connected();
        if at_rcpt {
            fake.step_ok(|s| s.mail("<a@b>", &[]), Stage::Mail);
            assert_eq!(fake.session.rcpt("<c@d>", &[]), Ok(Step::Sent));
        } else {
            assert_eq!(fake.session.mail("<a@b>", &[]), Ok(Step::Sent));
        }
        let _ = fake.sent();
        fake.reply(&[reply]);
        let stage = if at_rcpt { Stage::Rcpt } else { Stage::Mail };
        assert_eq!(fake.answer(stage), answer);
        let s = &mut fake.session;
        assert!(!s.wants(Stage::Rcpt) && !s.wants(Stage::EndOfMessage));
        assert!(s.wants(Stage::Helo) && s.wants(Stage::Unknown));
        assert_eq!(s.macros(Stage::Rcpt, &[("a", "b")]), Ok(false));
        assert_eq!(s.rcpt("<e@f>", &[]), Ok(Step::Skipped));
        assert_eq!(s.data(), Ok(Step::Skipped));
        assert_eq!(s.header("A", b"1"), Ok(Step::Skipped));
        assert_eq!(s.end_of_headers(), Ok(Step::Skipped));
        assert_eq!(s.body(b"x"), Ok(Step::Skipped));
        assert_eq!(s.end_of_message(), Ok(Step::Skipped));
        assert_eq!(fake.sent(), b"");
        assert_eq!(fake.events().len(), 6);
        // The next message is sent again.
        assert_eq!(fake.session.mail("<a@b>", &[]), Ok(Step::Sent));
        assert_eq!(fake.sent(), packet(b'M', b"<a@b>\0"));
    }
}

#[test]
fn a_refused_message_is_over() {
    for stage in [
        Stage::Mail,
        Stage::Data,
        Stage::Header,
        Stage::EndOfHeaders,
        Stage::Body,
    ] {
        let mut fake = Fake::connected();
        if stage != Stage::Mail {
            fake = fake.then_envelope();
        }
        if matches!(stage, Stage::Header | Stage::EndOfHeaders | Stage::Body) {
            fake.step_ok(|s| s.data(), Stage::Data);
        }
        if stage == Stage::Body {
            fake.step_ok(|s| s.end_of_headers(), Stage::EndOfHeaders);
        }
        let s = &mut fake.session;
        let step = match stage {
            Stage::Mail => s.mail("<a@b>", &[]),
            Stage::Data => s.data(),
            Stage::Header => s.header("A", b"1"),
            Stage::EndOfHeaders => s.end_of_headers(),
            _ => s.body(b"x"),
        };
        assert_eq!(step, Ok(Step::Sent));
        fake.reply(&[Reply::Tempfail]);
        assert_eq!(fake.answer(stage), Answer::Tempfail);
        assert_eq!(
            fake.session.state(),
            State::Idle(Phase::Connected),
            "{stage}"
        );
        assert_eq!(fake.session.rcpt("<c@d>", &[]), Err(UsageError::OutOfOrder));
        assert_eq!(fake.session.body(b"x"), Err(UsageError::OutOfOrder));
        // No abort is owed: the milter ended the message itself.
        let _ = fake.sent();
        assert_eq!(fake.session.abort(), Ok(false));
        assert_eq!(fake.sent(), b"");
        assert_eq!(fake.session.mail("<a@b>", &[]), Ok(Step::Sent));
    }
}

#[test]
fn a_refused_recipient_or_command_is_only_that() {
    let mut fake = Fake::in_envelope();
    assert_eq!(fake.session.rcpt("<x@y>", &[]), Ok(Step::Sent));
    fake.reply(&[Reply::ReplyCode("550 5.1.1 No such user".into())]);
    assert_eq!(
        fake.answer(Stage::Rcpt),
        Answer::ReplyCode {
            code: 550,
            lines: vec!["5.1.1 No such user".into()]
        }
    );
    assert_eq!(fake.session.state(), State::Idle(Phase::Envelope));
    assert_eq!(fake.session.unknown(b"XFOO"), Ok(Step::Sent));
    fake.reply(&[Reply::Reject]);
    assert_eq!(fake.answer(Stage::Unknown), Answer::Reject);
    assert_eq!(fake.session.state(), State::Idle(Phase::Envelope));
    let _ = fake.sent();
    assert_eq!(
        fake.session.rcpt("<z@y>", &["NOTIFY=NEVER"]),
        Ok(Step::Sent)
    );
    assert_eq!(fake.sent(), packet(b'R', b"<z@y>\0NOTIFY=NEVER\0"));
    // Between messages, an accepted unknown command decides nothing.
    let mut fake = Fake::connected();
    assert_eq!(fake.session.unknown(b"XFOO"), Ok(Step::Sent));
    fake.reply(&[Reply::Accept]);
    assert_eq!(fake.answer(Stage::Unknown), Answer::Accept);
    assert!(fake.session.wants(Stage::Mail));
}

#[test]
fn abort_is_sent_inside_a_message_only() {
    let mut fake = Fake::connected();
    assert_eq!(fake.session.abort(), Ok(false));
    let mut fake = fake.then_envelope();
    let _ = fake.sent();
    assert_eq!(fake.session.abort(), Ok(true));
    assert_eq!(fake.sent(), packet(b'A', b""));
    assert_eq!(fake.session.state(), State::Idle(Phase::Connected));
    assert_eq!(fake.events(), []);
    // It has no answer.
    fake.reply(&[Reply::Continue]);
    assert_eq!(
        fake.failure(),
        ProtocolError::Unexpected {
            code: b'c',
            during: "idle"
        }
    );
    // Not while an answer is due, nor before connect.
    let mut fake = Fake::in_body();
    assert_eq!(fake.session.body(b"x"), Ok(Step::Sent));
    assert_eq!(fake.session.abort(), Err(UsageError::Busy));
    let mut fake = Fake::new(Actions::ALL, Protocol::default());
    assert_eq!(fake.session.abort(), Ok(false));
    assert_eq!(fake.session.state(), State::Idle(Phase::Connect));
    // An abort inside the headers, then a new HELO.
    let mut fake = Fake::in_envelope();
    fake.step_ok(|s| s.data(), Stage::Data);
    let _ = fake.sent();
    assert_eq!(fake.session.helo("x"), Err(UsageError::OutOfOrder));
    assert_eq!(fake.session.abort(), Ok(true));
    assert_eq!(fake.session.helo("x"), Ok(Step::Sent));
    let mut expected = packet(b'A', b"");
    expected.extend(packet(b'H', b"x\0"));
    assert_eq!(fake.sent(), expected);
}

#[test]
fn steps_out_of_order_change_nothing() {
    let mut fake = Fake::connected();
    let s = &mut fake.session;
    assert_eq!(s.connect("c", Peer::Unknown), Err(UsageError::OutOfOrder));
    assert_eq!(s.rcpt("<c@d>", &[]), Err(UsageError::OutOfOrder));
    assert_eq!(s.data(), Err(UsageError::OutOfOrder));
    assert_eq!(s.header("A", b"1"), Err(UsageError::OutOfOrder));
    assert_eq!(s.end_of_headers(), Err(UsageError::OutOfOrder));
    assert_eq!(s.body(b"x"), Err(UsageError::OutOfOrder));
    assert_eq!(s.end_of_message(), Err(UsageError::OutOfOrder));
    assert_eq!(s.body(&[0; MAX_CHUNK + 1]), Err(UsageError::TooLarge));
    assert_eq!(s.helo("a\0b"), Err(UsageError::Nul));
    assert_eq!(s.mail("<a@b>", &["X=\0"]), Err(UsageError::Nul));
    assert_eq!(s.macros(Stage::Body, &[]), Err(UsageError::NoMacros));
    assert_eq!(s.macros(Stage::Helo, &[("a\0", "b")]), Err(UsageError::Nul));
    assert_eq!(s.macros(Stage::Helo, &[]), Ok(false));
    assert_eq!(s.state(), State::Idle(Phase::Connected));
    assert_eq!(fake.sent(), b"");
    assert_eq!(fake.events(), []);
    // A command over the packet limit.
    let mut fake = Fake::in_envelope();
    fake.step_ok(|s| s.data(), Stage::Data);
    let huge = vec![b'x'; MAX_PACKET];
    assert_eq!(fake.session.header("A", &huge), Err(UsageError::TooLarge));
    assert_eq!(fake.sent(), b"");
    assert_eq!(fake.session.state(), State::Idle(Phase::Headers));
    // A full chunk is fine.
    let mut fake = Fake::in_body();
    assert_eq!(fake.session.body(&[b'x'; MAX_CHUNK]), Ok(Step::Sent));
    assert_eq!(fake.sent().len(), 5 + MAX_CHUNK);
}

#[test]
fn answers_when_none_is_due_are_errors() {
    let mut fake = Fake::connected();
    fake.reply(&[Reply::Progress]);
    assert_eq!(
        fake.failure(),
        ProtocolError::Unexpected {
            code: b'p',
            during: "idle"
        }
    );
    let mut fake = Fake::connected();
    assert_eq!(fake.session.helo("x"), Ok(Step::Sent));
    fake.reply(&[Reply::Continue, Reply::Continue]);
    assert_eq!(
        fake.events(),
        [
            Event::Answer {
                stage: Stage::Helo,
                answer: Answer::Continue
            },
            Event::Failed(ProtocolError::Unexpected {
                code: b'c',
                during: "idle"
            }),
        ]
    );
    // A second negotiation.
    let mut fake = Fake::connected();
    assert_eq!(fake.session.helo("x"), Ok(Step::Sent));
    fake.reply(&[Reply::Negotiate {
        version: 6,
        actions: Actions::default(),
        protocol: Protocol::default(),
        macros: vec![],
    }]);
    assert_eq!(
        fake.failure(),
        ProtocolError::Unexpected {
            code: b'O',
            during: "helo"
        }
    );
}
