//! Replies that are only valid somewhere: modifications (end of message, negotiated),
//! skip (body chunks, offered), and packets that kill the session.

use super::*;

#[test]
fn modifications_need_negotiation_and_end_of_message() {
    // Before end of message.
    let mut fake = Fake::in_envelope();
    fake.step_ok(|s| s.data(), Stage::Data);
    assert_eq!(fake.session.header("A", b"1"), Ok(Step::Sent));
    fake.reply(&[Reply::Modify(Modification::AddRecipient("<x@y>".into()))]);
    assert_eq!(
        fake.failure(),
        ProtocolError::Unexpected {
            code: b'+',
            during: "header"
        }
    );
    // Not negotiated: each action is checked.
    let all = [
        (
            Actions::ADDHDRS,
            Modification::AddHeader {
                name: "A".into(),
                value: "1".into(),
            },
        ),
        (
            Actions::ADDHDRS,
            Modification::InsertHeader {
                index: 0,
                name: "A".into(),
                value: "1".into(),
            },
        ),
        (
            Actions::CHGHDRS,
            Modification::ChangeHeader {
                index: 1,
                name: "A".into(),
                value: "".into(),
            },
        ),
        (Actions::ADDRCPT, Modification::AddRecipient("<a@b>".into())),
        (
            Actions::ADDRCPT_PAR,
            Modification::AddRecipientArgs {
                recipient: "<a@b>".into(),
                args: None,
            },
        ),
        (
            Actions::DELRCPT,
            Modification::DeleteRecipient("<a@b>".into()),
        ),
        (
            Actions::CHGFROM,
            Modification::ChangeSender {
                sender: "<a@b>".into(),
                args: None,
            },
        ),
        (Actions::CHGBODY, Modification::ReplaceBody(b"x".to_vec())),
        (Actions::QUARANTINE, Modification::Quarantine("why".into())),
    ];
    for (action, modification) in all {
        let code = Reply::Modify(modification.clone()).code();
        let granted = Actions(Actions::ALL.0 & !action.0);
        let fake = Fake::new(granted, Protocol::default());
        let mut fake = fake.then_connect().then_envelope().then_body();
        assert_eq!(fake.session.end_of_message(), Ok(Step::Sent));
        fake.reply(&[Reply::Modify(modification)]);
        assert_eq!(fake.failure(), ProtocolError::NotNegotiated { code });
    }
}

#[test]
fn skip_is_for_body_chunks_only() {
    let mut fake = Fake::in_body();
    assert_eq!(fake.session.body(b"part 1"), Ok(Step::Sent));
    fake.reply(&[Reply::Skip]);
    assert_eq!(fake.answer(Stage::Body), Answer::Skip);
    assert!(!fake.session.wants(Stage::Body));
    let _ = fake.sent();
    assert_eq!(fake.session.body(b"part 2"), Ok(Step::Skipped));
    assert_eq!(fake.answer(Stage::Body), Answer::Continue);
    assert_eq!(fake.sent(), b"");
    assert_eq!(fake.session.end_of_message(), Ok(Step::Sent));
    assert_eq!(fake.sent(), packet(b'E', b""));
    fake.reply(&[Reply::Continue]);
    assert_eq!(fake.answer(Stage::EndOfMessage), Answer::Continue);
    // The next message's body is wanted again.
    assert!(fake.session.wants(Stage::Body));

    // Skip at RCPT, or at end of message.
    let mut fake = Fake::in_envelope();
    assert_eq!(fake.session.rcpt("<e@f>", &[]), Ok(Step::Sent));
    fake.reply(&[Reply::Skip]);
    assert_eq!(
        fake.failure(),
        ProtocolError::Unexpected {
            code: b's',
            during: "rcpt"
        }
    );
    let mut fake = Fake::in_body();
    assert_eq!(fake.session.end_of_message(), Ok(Step::Sent));
    fake.reply(&[Reply::Skip]);
    assert_eq!(
        fake.failure(),
        ProtocolError::Unexpected {
            code: b's',
            during: "end-of-message"
        }
    );
    // Not offered.
    let options = Options {
        protocol: Protocol::NO_STEPS,
        ..Options::default()
    };
    let fake = Fake::negotiated(options, 6, Actions::ALL, Protocol::default());
    let mut fake = fake.then_connect().then_envelope().then_body();
    assert_eq!(fake.session.body(b"x"), Ok(Step::Sent));
    fake.reply(&[Reply::Skip]);
    assert_eq!(fake.failure(), ProtocolError::NotNegotiated { code: b's' });
}

#[test]
fn bad_packets_kill_the_session() {
    let mut fake = Fake::connected();
    fake.session.handle_received(&[0, 0, 0, 0]);
    assert_eq!(fake.failure(), ProtocolError::Length(0));
    assert_eq!(fake.session.helo("x"), Err(UsageError::Closed));
    assert!(!fake.session.wants(Stage::Helo));

    let mut fake = Fake::connected();
    fake.session.handle_received(&[0, 0x20, 0, 0]);
    assert_eq!(fake.failure(), ProtocolError::Length(0x0020_0000));

    let mut fake = Fake::connected();
    assert_eq!(fake.session.helo("x"), Ok(Step::Sent));
    fake.session.handle_received(&packet(b'y', b"250 fine\0"));
    assert_eq!(
        fake.failure(),
        ProtocolError::Malformed {
            code: b'y',
            why: "not a 4xx or 5xx reply"
        }
    );
    // Queued octets are dropped: the socket is to be closed.
    assert_eq!(fake.sent(), b"");
    fake.session.quit();
    assert_eq!(fake.sent(), b"");

    let mut fake = Fake::connected();
    fake.session.handle_received(&packet(b'c', b"")[..3]);
    fake.session.handle_eof();
    assert_eq!(fake.failure(), ProtocolError::Eof);
}
