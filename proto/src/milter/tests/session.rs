//! Negotiation, the octets of each step, skipped and unanswered steps, and input in
//! pieces.

use super::*;

#[test]
fn negotiation_offers_and_reads() {
    let mut session = Session::new(Options::default());
    assert_eq!(session.state(), State::Negotiating);
    let mut out = Vec::new();
    assert_eq!(session.poll_transmit(&mut out), 17);
    assert_eq!(
        out,
        packet(b'O', &[0, 0, 0, 6, 0, 0, 1, 0xFF, 0, 0x0F, 0xF7, 0xFF])
    );
    assert_eq!(session.connect("c", Peer::Unknown), Err(UsageError::Busy));
    // A narrower offer; bits outside version 6 are dropped.
    let options = Options {
        actions: Actions::ADDHDRS | Actions(0x8000_0000),
        protocol: Protocol::NOCONNECT | Protocol::NR_HDR | Protocol(0x4000_0000),
    };
    let mut narrow = Session::new(options);
    out.clear();
    narrow.poll_transmit(&mut out);
    assert_eq!(out, packet(b'O', &[0, 0, 0, 6, 0, 0, 0, 1, 0, 0, 0, 0x81]));
    // The milter's answer, with macro lists.
    let mut bytes = Vec::new();
    Reply::Negotiate {
        version: 6,
        actions: Actions::ADDHDRS | Actions::SETSYMLIST,
        protocol: Protocol::NOHELO | Protocol::NR_RCPT,
        macros: vec![(0, "j {client_addr}".into()), (5, "i".into())],
    }
    .encode(&mut bytes);
    session.handle_received(&bytes);
    let expected = Negotiated {
        version: 6,
        actions: Actions::ADDHDRS | Actions::SETSYMLIST,
        protocol: Protocol::NOHELO | Protocol::NR_RCPT,
        macros: vec![
            (Stage::Connect, "j {client_addr}".into()),
            (Stage::EndOfMessage, "i".into()),
        ],
    };
    assert_eq!(
        session.poll_event(),
        Some(Event::Negotiated(expected.clone()))
    );
    assert_eq!(session.negotiated(), Some(&expected));
    assert_eq!(session.state(), State::Idle(Phase::Connect));
    assert!(session.wants(Stage::Connect) && !session.wants(Stage::Helo));
}

#[test]
fn negotiation_refuses_what_was_not_offered() {
    let fail = |reply: Reply| {
        let mut session = Session::new(Options {
            actions: Actions::ADDHDRS | Actions::SETSYMLIST,
            protocol: Protocol::NOCONNECT,
        });
        let mut bytes = Vec::new();
        reply.encode(&mut bytes);
        session.handle_received(&bytes);
        assert!(session.is_closed());
        match session.poll_event() {
            Some(Event::Failed(e)) => e,
            other => panic!("{other:?}"),
        }
    };
    let answer = |version, actions, protocol, macros| Reply::Negotiate {
        version,
        actions,
        protocol,
        macros,
    };
    let none = || Actions::default();
    let flat = Protocol::default();
    assert_eq!(
        fail(answer(7, none(), flat, vec![])),
        ProtocolError::Version(7)
    );
    assert_eq!(
        fail(answer(1, none(), flat, vec![])),
        ProtocolError::Version(1)
    );
    assert_eq!(
        fail(answer(6, Actions::ADDHDRS | Actions::CHGBODY, flat, vec![])),
        ProtocolError::Actions(Actions::CHGBODY)
    );
    assert_eq!(
        fail(answer(
            6,
            none(),
            Protocol::NOCONNECT | Protocol::NOHELO,
            vec![]
        )),
        ProtocolError::Protocol(Protocol::NOHELO)
    );
    assert_eq!(
        fail(answer(6, Actions::ADDHDRS, flat, vec![(0, "j".into())])),
        ProtocolError::NotNegotiated { code: b'l' }
    );
    assert_eq!(
        fail(answer(6, Actions::SETSYMLIST, flat, vec![(7, "j".into())])),
        ProtocolError::Malformed {
            code: b'O',
            why: "unknown macro class"
        }
    );
    assert_eq!(
        fail(Reply::Continue),
        ProtocolError::Unexpected {
            code: b'c',
            during: "negotiation"
        }
    );
}

#[test]
fn a_whole_session_octet_by_octet() {
    let mut fake = Fake::new(Actions::ALL, Protocol::default());
    let s = &mut fake.session;
    assert_eq!(s.macros(Stage::Connect, &[("j", "mx.example")]), Ok(true));
    let peer = Peer::Inet("192.0.2.1:4000".parse().expect("an address"));
    assert_eq!(s.connect("c.example", peer), Ok(Step::Sent));
    assert_eq!(
        s.state(),
        State::Awaiting {
            stage: Stage::Connect,
            then: Phase::Connected
        }
    );
    let mut expected = packet(b'D', b"Cj\0mx.example\0");
    expected.extend(packet(b'C', b"c.example\x004\x0f\xa0192.0.2.1\0"));
    assert_eq!(fake.sent(), expected);
    assert_eq!(fake.session.helo("x"), Err(UsageError::Busy));
    fake.reply(&[Reply::Continue]);
    assert_eq!(fake.answer(Stage::Connect), Answer::Continue);

    let steps: Vec<(Stage, Vec<u8>)> = vec![
        (Stage::Helo, packet(b'H', b"c.example\0")),
        (Stage::Mail, packet(b'M', b"<a@b.example>\0SIZE=10\0")),
        (Stage::Rcpt, packet(b'R', b"<c@d.example>\0")),
        (Stage::Data, packet(b'T', b"")),
        (Stage::Header, packet(b'L', b"Subject\0Hi\0")),
        (Stage::EndOfHeaders, packet(b'N', b"")),
        (Stage::Body, packet(b'B', b"Hello\r\n")),
    ];
    for (stage, bytes) in steps {
        let s = &mut fake.session;
        let step = match stage {
            Stage::Helo => s.helo("c.example"),
            Stage::Mail => s.mail("<a@b.example>", &["SIZE=10"]),
            Stage::Rcpt => s.rcpt("<c@d.example>", &[]),
            Stage::Data => s.data(),
            Stage::Header => s.header("Subject", b"Hi"),
            Stage::EndOfHeaders => s.end_of_headers(),
            _ => s.body(b"Hello\r\n"),
        };
        assert_eq!(step, Ok(Step::Sent), "{stage}");
        assert_eq!(fake.sent(), bytes, "{stage}");
        fake.reply(&[Reply::Progress, Reply::Continue]);
        assert_eq!(
            fake.events(),
            [
                Event::Progress,
                Event::Answer {
                    stage,
                    answer: Answer::Continue
                }
            ]
        );
    }
    assert_eq!(fake.session.state(), State::Idle(Phase::Body));

    assert_eq!(fake.session.end_of_message(), Ok(Step::Sent));
    assert_eq!(fake.sent(), packet(b'E', b""));
    assert_eq!(fake.session.state(), State::EndOfMessage);
    let modifications = vec![
        Modification::AddHeader {
            name: "X-Spam".into(),
            value: "Yes".into(),
        },
        Modification::InsertHeader {
            index: 0,
            name: "X-First".into(),
            value: "1".into(),
        },
        Modification::ChangeHeader {
            index: 1,
            name: "Subject".into(),
            value: String::new(),
        },
        Modification::AddRecipient("<e@f>".into()),
        Modification::AddRecipientArgs {
            recipient: "<g@h>".into(),
            args: None,
        },
        Modification::DeleteRecipient("<c@d.example>".into()),
        Modification::ChangeSender {
            sender: "<>".into(),
            args: Some("SIZE=1".into()),
        },
        Modification::ReplaceBody(b"new ".to_vec()),
        Modification::ReplaceBody(b"body\r\n".to_vec()),
        Modification::Quarantine("suspicious".into()),
    ];
    let mut replies: Vec<Reply> = modifications.iter().cloned().map(Reply::Modify).collect();
    replies.insert(3, Reply::Progress);
    replies.push(Reply::Accept);
    fake.reply(&replies);
    let mut expected: Vec<Event> = modifications.into_iter().map(Event::Modify).collect();
    expected.insert(3, Event::Progress);
    expected.push(Event::Answer {
        stage: Stage::EndOfMessage,
        answer: Answer::Accept,
    });
    assert_eq!(fake.events(), expected);
    assert_eq!(fake.session.state(), State::Idle(Phase::Connected));

    // The next message needs no abort; quit ends it all.
    assert_eq!(fake.session.mail("<>", &[]), Ok(Step::Sent));
    assert_eq!(fake.sent(), packet(b'M', b"<>\0"));
    fake.session.quit();
    assert_eq!(fake.sent(), packet(b'Q', b""));
    assert_eq!(fake.session.state(), State::Closed);
    fake.reply(&[Reply::Continue]);
    fake.session.handle_eof();
    assert_eq!(fake.events(), []);
    assert_eq!(fake.session.data(), Err(UsageError::Closed));
}

#[test]
fn peers_of_each_family() {
    let cases: [(Peer<'_>, &[u8]); 3] = [
        (
            Peer::Inet("[2001:db8::1]:25".parse().expect("an address")),
            b"h\x006\x00\x192001:db8::1\0",
        ),
        (Peer::Unix("/run/smtp"), b"h\0L\0\0/run/smtp\0"),
        (Peer::Unknown, b"h\0U"),
    ];
    for (peer, data) in cases {
        let mut fake = Fake::new(Actions::ALL, Protocol::default());
        assert_eq!(fake.session.connect("h", peer), Ok(Step::Sent));
        assert_eq!(fake.sent(), packet(b'C', data));
    }
}

#[test]
fn skipped_steps_are_not_sent_and_answered_continue() {
    let skip = Protocol::NOCONNECT
        | Protocol::NOHELO
        | Protocol::NOMAIL
        | Protocol::NORCPT
        | Protocol::NODATA
        | Protocol::NOHDRS
        | Protocol::NOEOH
        | Protocol::NOBODY
        | Protocol::NOUNKNOWN;
    let mut fake = Fake::new(Actions::ALL, skip);
    let s = &mut fake.session;
    for stage in Stage::ALL {
        assert_eq!(s.wants(stage), stage == Stage::EndOfMessage, "{stage}");
    }
    assert_eq!(s.connect("c", Peer::Unknown), Ok(Step::Skipped));
    assert_eq!(s.helo("c"), Ok(Step::Skipped));
    assert_eq!(s.unknown(b"FOO"), Ok(Step::Skipped));
    // Macros still go, for the stages the milter reads them at.
    assert_eq!(s.macros(Stage::Mail, &[("{mail_addr}", "a@b")]), Ok(true));
    assert_eq!(s.mail("<a@b>", &[]), Ok(Step::Skipped));
    assert_eq!(s.rcpt("<c@d>", &[]), Ok(Step::Skipped));
    assert_eq!(s.data(), Ok(Step::Skipped));
    assert_eq!(s.header("A", b"b"), Ok(Step::Skipped));
    assert_eq!(s.end_of_headers(), Ok(Step::Skipped));
    assert_eq!(s.body(b"x"), Ok(Step::Skipped));
    assert_eq!(fake.sent(), packet(b'D', b"M{mail_addr}\0a@b\0"));
    let answers: Vec<Stage> = fake
        .events()
        .into_iter()
        .map(|e| match e {
            Event::Answer {
                stage,
                answer: Answer::Continue,
            } => stage,
            other => panic!("{other:?}"),
        })
        .collect();
    let order = [0, 1, 9, 2, 3, 4, 5, 6, 7].map(|i| Stage::ALL[i]);
    assert_eq!(answers, order);
    // End of message is always sent.
    assert_eq!(fake.session.end_of_message(), Ok(Step::Sent));
    assert_eq!(fake.sent(), packet(b'E', b""));
    fake.reply(&[Reply::Continue]);
    assert_eq!(fake.answer(Stage::EndOfMessage), Answer::Continue);
}

#[test]
fn old_versions_get_no_data_or_unknown() {
    for (version, data, unknown) in [(2, false, false), (3, false, true), (4, true, true)] {
        let fake = Fake::with(version, Actions::default(), Protocol::default());
        assert_eq!(fake.session.wants(Stage::Data), data, "v{version}");
        assert_eq!(fake.session.wants(Stage::Unknown), unknown, "v{version}");
    }
}

#[test]
fn unanswered_steps_are_sent_and_answered_continue() {
    let mut fake = Fake::new(
        Actions::ALL,
        Protocol::NR_CONN | Protocol::NR_HDR | Protocol::NR_BODY,
    );
    let s = &mut fake.session;
    assert_eq!(s.connect("c", Peer::Unknown), Ok(Step::NoReply));
    assert_eq!(s.state(), State::Idle(Phase::Connected));
    assert_eq!(fake.answer(Stage::Connect), Answer::Continue);
    assert_eq!(fake.sent(), packet(b'C', b"c\0U"));
    let nr = Protocol::NR_HDR | Protocol::NR_BODY;
    let mut fake = Fake::new(Actions::ALL, nr).then_connect().then_envelope();
    fake.step_ok(|s| s.data(), Stage::Data);
    let s = &mut fake.session;
    assert_eq!(s.header("A", b"1"), Ok(Step::NoReply));
    assert_eq!(s.header("B", b"2"), Ok(Step::NoReply));
    let mut expected = packet(b'L', b"A\x001\0");
    expected.extend(packet(b'L', b"B\x002\0"));
    assert_eq!(fake.sent(), expected);
    let continued = |stage| Event::Answer {
        stage,
        answer: Answer::Continue,
    };
    assert_eq!(
        fake.events(),
        [continued(Stage::Header), continued(Stage::Header)]
    );
    // A milter that answers anyway breaks the protocol.
    fake.reply(&[Reply::Continue]);
    assert_eq!(
        fake.failure(),
        ProtocolError::Unexpected {
            code: b'c',
            during: "idle"
        }
    );
}

#[test]
fn replies_in_any_pieces_give_the_same_events() {
    let script = |session: &mut Session, feed: &dyn Fn(&mut Session, &[u8])| -> Vec<Event> {
        let mut bytes = Vec::new();
        let replies = [
            Reply::Negotiate {
                version: 6,
                actions: Actions::ALL,
                protocol: Protocol::NOHELO,
                macros: vec![],
            },
            Reply::Progress,
            Reply::Continue,
        ];
        replies.iter().for_each(|r| r.encode(&mut bytes));
        let (first, rest) = bytes.split_at(17);
        feed(session, first);
        assert_eq!(session.connect("c", Peer::Unknown), Ok(Step::Sent));
        feed(session, rest);
        let mut tail = Vec::new();
        assert_eq!(session.mail("<a@b>", &[]), Ok(Step::Sent));
        Reply::ReplyCode("550 5.7.1 no".into()).encode(&mut tail);
        feed(session, &tail);
        std::iter::from_fn(|| session.poll_event()).collect()
    };
    let whole = script(&mut Session::new(Options::default()), &|s, b| {
        s.handle_received(b)
    });
    let bytewise = script(&mut Session::new(Options::default()), &|s, b| {
        b.iter()
            .for_each(|o| s.handle_received(std::slice::from_ref(o)));
    });
    assert_eq!(whole.len(), 4, "{whole:?}");
    assert_eq!(
        whole[3],
        Event::Answer {
            stage: Stage::Mail,
            answer: Answer::ReplyCode {
                code: 550,
                lines: vec!["5.7.1 no".into()]
            }
        }
    );
    assert_eq!(whole, bytewise);
}
