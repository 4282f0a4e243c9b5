//! The wire format, with known answers.

use super::super::event::reply_code;
use super::*;

/// Encodes a command.
fn command(c: &Command<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    c.encode(&mut out);
    out
}

#[test]
fn commands_encode_as_specified() {
    let cases: Vec<(Command<'_>, Vec<u8>)> = vec![
        (
            Command::Negotiate {
                version: 6,
                actions: Actions::ALL,
                protocol: Protocol(0xFF7FF),
            },
            packet(b'O', &[0, 0, 0, 6, 0, 0, 1, 0xFF, 0, 0x0F, 0xF7, 0xFF]),
        ),
        (
            Command::Macro {
                stage: b'C',
                pairs: vec![(b"j", b"mx.example"), (b"{daemon_name}", b"gsmtp")],
            },
            packet(b'D', b"Cj\0mx.example\0{daemon_name}\0gsmtp\0"),
        ),
        (
            Command::Connect {
                hostname: b"c.example",
                family: Family::Inet {
                    port: 4000,
                    address: b"192.0.2.1",
                },
            },
            packet(b'C', b"c.example\x004\x0f\xa0192.0.2.1\0"),
        ),
        (
            Command::Connect {
                hostname: b"[2001:db8::1]",
                family: Family::Inet6 {
                    port: 25,
                    address: b"2001:db8::1",
                },
            },
            packet(b'C', b"[2001:db8::1]\x006\x00\x192001:db8::1\0"),
        ),
        (
            Command::Connect {
                hostname: b"localhost",
                family: Family::Unix {
                    port: 0,
                    path: b"/run/s",
                },
            },
            packet(b'C', b"localhost\0L\0\0/run/s\0"),
        ),
        (
            Command::Connect {
                hostname: b"unknown",
                family: Family::Unknown,
            },
            packet(b'C', b"unknown\0U"),
        ),
        (Command::Helo(b"c.example"), packet(b'H', b"c.example\0")),
        (
            Command::Mail(vec![b"<a@b.example>", b"SIZE=10", b"BODY=8BITMIME"]),
            packet(b'M', b"<a@b.example>\0SIZE=10\0BODY=8BITMIME\0"),
        ),
        (Command::Rcpt(vec![b"<c@d>"]), packet(b'R', b"<c@d>\0")),
        (Command::Data, packet(b'T', b"")),
        (
            Command::Header {
                name: b"Subject",
                value: b"Hi",
            },
            packet(b'L', b"Subject\0Hi\0"),
        ),
        (Command::EndOfHeaders, packet(b'N', b"")),
        (Command::Body(b"a\r\nb"), packet(b'B', b"a\r\nb")),
        (Command::EndOfMessage, packet(b'E', b"")),
        (Command::Abort, packet(b'A', b"")),
        (Command::Quit, packet(b'Q', b"")),
        (Command::QuitNewConnection, packet(b'K', b"")),
        (Command::Unknown(b"XYZZY 1"), packet(b'U', b"XYZZY 1\0")),
    ];
    for (c, bytes) in cases {
        assert_eq!(command(&c), bytes, "{c:?}");
        let decoded = packets(&bytes);
        assert_eq!(decoded.len(), 1);
        assert_eq!(Command::decode(&decoded[0]), Ok(c));
    }
}

#[test]
fn replies_decode_as_specified() {
    let m = Reply::Modify;
    let cases: Vec<(Vec<u8>, Reply)> = vec![
        (
            packet(
                b'O',
                b"\0\0\0\x06\0\0\0\x11\0\0\0\x01\0\0\0\x02{auth_type} i\0",
            ),
            Reply::Negotiate {
                version: 6,
                actions: Actions::ADDHDRS | Actions::CHGHDRS,
                protocol: Protocol::NOCONNECT,
                macros: vec![(2, "{auth_type} i".into())],
            },
        ),
        (packet(b'c', b""), Reply::Continue),
        (packet(b'a', b""), Reply::Accept),
        (packet(b'r', b""), Reply::Reject),
        (packet(b't', b""), Reply::Tempfail),
        (packet(b'd', b""), Reply::Discard),
        (packet(b's', b""), Reply::Skip),
        (packet(b'p', b""), Reply::Progress),
        (packet(b'4', b""), Reply::Shutdown),
        (packet(b'f', b""), Reply::ConnFail),
        (
            packet(b'y', b"550 5.7.1 No\0"),
            Reply::ReplyCode("550 5.7.1 No".into()),
        ),
        (
            packet(b'h', b"X-Spam\0Yes\0"),
            m(Modification::AddHeader {
                name: "X-Spam".into(),
                value: "Yes".into(),
            }),
        ),
        (
            packet(b'i', b"\0\0\0\0DKIM-Signature\0v=1\0"),
            m(Modification::InsertHeader {
                index: 0,
                name: "DKIM-Signature".into(),
                value: "v=1".into(),
            }),
        ),
        (
            packet(b'm', b"\0\0\0\x02Subject\0\0"),
            m(Modification::ChangeHeader {
                index: 2,
                name: "Subject".into(),
                value: String::new(),
            }),
        ),
        (
            packet(b'+', b"<x@y>\0"),
            m(Modification::AddRecipient("<x@y>".into())),
        ),
        (
            packet(b'-', b"<x@y>\0"),
            m(Modification::DeleteRecipient("<x@y>".into())),
        ),
        (
            packet(b'2', b"<x@y>\0NOTIFY=NEVER\0"),
            m(Modification::AddRecipientArgs {
                recipient: "<x@y>".into(),
                args: Some("NOTIFY=NEVER".into()),
            }),
        ),
        (
            packet(b'e', b"<>\0"),
            m(Modification::ChangeSender {
                sender: "<>".into(),
                args: None,
            }),
        ),
        (
            packet(b'b', b"new\r\nbody"),
            m(Modification::ReplaceBody(b"new\r\nbody".to_vec())),
        ),
        (packet(b'b', b""), m(Modification::ReplaceBody(Vec::new()))),
        (
            packet(b'q', b"virus\0"),
            m(Modification::Quarantine("virus".into())),
        ),
    ];
    for (bytes, reply) in cases {
        let decoded = packets(&bytes);
        assert_eq!(Reply::decode(&decoded[0]).as_ref(), Ok(&reply), "{bytes:?}");
        let mut again = Vec::new();
        reply.encode(&mut again);
        assert_eq!(again, bytes);
    }
}

#[test]
fn malformed_replies_are_refused() {
    let bad = |code: u8, data: &[u8]| {
        Reply::decode(&Packet {
            code,
            data: data.to_vec(),
        })
        .expect_err("malformed")
    };
    let malformed = |code, why| ProtocolError::Malformed { code, why };
    assert_eq!(
        bad(b'c', b"x"),
        malformed(b'c', "data after the last field")
    );
    assert_eq!(
        bad(b'h', b"X\0Yes"),
        malformed(b'h', "string without its NUL")
    );
    assert_eq!(
        bad(b'h', b"\0Yes\0"),
        malformed(b'h', "empty name or address")
    );
    assert_eq!(bad(b'm', b"\0\0\0"), malformed(b'm', "too short"));
    assert_eq!(
        bad(b'+', b"a\0b\0"),
        malformed(b'+', "data after the last field")
    );
    assert_eq!(bad(b'O', b"\0\0\0\x06\0\0"), malformed(b'O', "too short"));
    assert_eq!(
        bad(b'O', &[0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0, 1]),
        malformed(b'O', "too short")
    );
    assert_eq!(
        bad(b'y', b"550 x"),
        malformed(b'y', "string without its NUL")
    );
    assert_eq!(bad(b'x', b""), ProtocolError::UnknownCode(b'x'));
    assert_eq!(bad(b'l', b""), ProtocolError::UnknownCode(b'l'));
    // Invalid UTF-8 is kept, replaced.
    let reply = Reply::decode(&Packet {
        code: b'q',
        data: b"\xffx\0".to_vec(),
    });
    assert_eq!(
        reply,
        Ok(Reply::Modify(Modification::Quarantine("\u{fffd}x".into())))
    );
}

#[test]
fn decoder_takes_any_pieces() {
    let mut stream = packet(b'c', b"");
    stream.extend(packet(b'h', b"A\0B\0"));
    stream.extend(packet(b'b', &[7; 70_000]));
    let whole = packets(&stream);
    assert_eq!(whole.len(), 3);
    let mut decoder = Decoder::new();
    let mut found = Vec::new();
    for octet in &stream {
        let (used, packet) = decoder.decode(std::slice::from_ref(octet));
        assert_eq!(used, 1);
        found.extend(packet.map(|p| p.expect("well formed")));
        assert!(decoder.buffered() <= MAX_PACKET + 4);
    }
    assert_eq!(found, whole);
    assert_eq!(decoder.buffered(), 0);
}

#[test]
fn decoder_refuses_bad_lengths_at_once() {
    for (head, len) in [
        ([0u8; 4], 0),
        ([0, 0x10, 0x04, 0x01], 0x0010_0401),
        ([0xFF; 4], u32::MAX),
    ] {
        let mut decoder = Decoder::new();
        let mut input = head.to_vec();
        input.extend_from_slice(b"more");
        let (used, found) = decoder.decode(&input);
        assert_eq!((used, found), (4, Some(Err(ProtocolError::Length(len)))));
        assert_eq!(decoder.decode(b"more"), (0, None));
    }
    // The longest packet allowed is taken.
    let mut decoder = Decoder::new();
    let mut input = u32::try_from(MAX_PACKET)
        .expect("fits")
        .to_be_bytes()
        .to_vec();
    input.push(b'b');
    input.resize(MAX_PACKET + 4, 0);
    let (used, found) = decoder.decode(&input);
    assert_eq!(used, input.len());
    assert!(matches!(found, Some(Ok(p)) if p.data.len() == MAX_PACKET - 1));
}

#[test]
fn reply_codes_are_checked() {
    let ok = |text: &str| reply_code(text).expect(text);
    assert_eq!(ok("550 5.7.1 Go away"), (550, vec!["5.7.1 Go away".into()]));
    assert_eq!(ok("451 Later"), (451, vec!["Later".into()]));
    assert_eq!(ok("554"), (554, vec![String::new()]));
    assert_eq!(
        ok("550 Spam: 100%% sure, 5%s"),
        (550, vec!["Spam: 100% sure, 5s".into()])
    );
    assert_eq!(
        ok("550-5.7.1 one\r\n550-5.7.1 two\r\n550 5.7.1 three"),
        (
            550,
            vec!["5.7.1 one".into(), "5.7.1 two".into(), "5.7.1 three".into()]
        )
    );
    for bad in [
        "250 OK",
        "650 x",
        "55",
        "5x0 x",
        "550 4.7.1 class differs",
        "550x",
        "550-no last line",
        "550 one\r\n550 two",
        "550-one\r\n551 two",
        "550 bare\nLF",
        "",
        "5é0 x",
    ] {
        assert_eq!(reply_code(bad), None, "{bad:?}");
    }
}

#[test]
fn flag_sets_are_what_they_name() {
    let no = [
        Protocol::NOCONNECT,
        Protocol::NOHELO,
        Protocol::NOMAIL,
        Protocol::NORCPT,
        Protocol::NOBODY,
        Protocol::NOHDRS,
        Protocol::NOEOH,
        Protocol::NOUNKNOWN,
        Protocol::NODATA,
    ];
    let nr = [
        Protocol::NR_CONN,
        Protocol::NR_HELO,
        Protocol::NR_MAIL,
        Protocol::NR_RCPT,
        Protocol::NR_DATA,
        Protocol::NR_UNKN,
        Protocol::NR_HDR,
        Protocol::NR_EOH,
        Protocol::NR_BODY,
    ];
    let union = |bits: &[Protocol]| bits.iter().fold(Protocol(0), |a, b| a | *b);
    assert_eq!(union(&no), Protocol::NO_STEPS);
    assert_eq!(union(&nr), Protocol::NO_REPLIES);
    let all = union(&no) | union(&nr) | Protocol::SKIP | Protocol::RCPT_REJ;
    assert_eq!(all | Protocol::HDR_LEADSPC, Protocol::ALL);
    assert_eq!(Options::default().protocol.0, 0x000F_F7FF);
    // Each stage but end of message has its own skip and no-reply bits.
    for stage in Stage::ALL {
        let negotiated = |protocol| Negotiated {
            version: 6,
            actions: Actions::default(),
            protocol,
            macros: vec![],
        };
        let skipping = no.iter().filter(|b| negotiated(**b).skips(stage)).count();
        let silent = nr
            .iter()
            .filter(|b| negotiated(**b).no_reply(stage))
            .count();
        let expected = usize::from(stage != Stage::EndOfMessage);
        assert_eq!((skipping, silent), (expected, expected), "{stage}");
        assert_eq!(
            stage.macro_class().and_then(Stage::from_macro_class),
            stage.macro_class().map(|_| stage)
        );
    }
}
