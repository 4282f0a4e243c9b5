//! Known-answer tables for the command parser.

use super::*;
use crate::syntax::{Body, Mailbox};
use std::borrow::Cow;

fn mb<'a>(l: &'a str, d: &'a str) -> Mailbox<'a> {
    Mailbox {
        local_part: Cow::Borrowed(l),
        domain: Cow::Borrowed(d),
    }
}

#[test]
fn commands() {
    let table: Vec<(&str, Command<'_>)> = vec![
        ("HELO client.example", Command::Helo("client.example")),
        ("ehlo [192.0.2.1]", Command::Ehlo("[192.0.2.1]")),
        ("EHLO my_host ", Command::Ehlo("my_host")),
        (
            "MAIL FROM:<>",
            Command::Mail {
                from: ReversePath::Null,
                params: MailParams::default(),
            },
        ),
        (
            "mail from: <a@b.c> SIZE=10",
            Command::Mail {
                from: ReversePath::Mailbox(mb("a", "b.c")),
                params: MailParams {
                    size: Some(10),
                    ..Default::default()
                },
            },
        ),
        (
            "MAIL FROM:<a@b> BODY=8BITMIME SMTPUTF8",
            Command::Mail {
                from: ReversePath::Mailbox(mb("a", "b")),
                params: MailParams {
                    size: None,
                    body: Some(Body::EightBitMime),
                    smtputf8: true,
                },
            },
        ),
        (
            "RCPT TO:<postmaster>",
            Command::Rcpt {
                to: ForwardPath::Postmaster,
            },
        ),
        (
            "RCPT TO:<Postmaster@x.y>",
            Command::Rcpt {
                to: ForwardPath::Mailbox(mb("Postmaster", "x.y")),
            },
        ),
        (
            "rcpt to:<\"a b\"@x.y>",
            Command::Rcpt {
                to: ForwardPath::Mailbox(mb("\"a b\"", "x.y")),
            },
        ),
        ("DATA", Command::Data),
        ("data  ", Command::Data),
        (
            "BDAT 100",
            Command::Bdat {
                size: 100,
                last: false,
            },
        ),
        (
            "BDAT 0 LAST",
            Command::Bdat {
                size: 0,
                last: true,
            },
        ),
        ("RSET", Command::Rset),
        ("NOOP anything at all", Command::Noop),
        ("QUIT", Command::Quit),
        ("VRFY root", Command::Vrfy("root")),
        ("EXPN list", Command::Expn("list")),
        ("HELP", Command::Help(None)),
        ("HELP DATA", Command::Help(Some("DATA"))),
        ("STARTTLS", Command::StartTls),
        (
            "AUTH PLAIN AGEAYg==",
            Command::Auth {
                mechanism: "PLAIN",
                initial: Some("AGEAYg=="),
            },
        ),
        (
            "auth login",
            Command::Auth {
                mechanism: "login",
                initial: None,
            },
        ),
        (
            "AUTH PLAIN =",
            Command::Auth {
                mechanism: "PLAIN",
                initial: Some("="),
            },
        ),
        (
            "XCLIENT ADDR=192.0.2.7 NAME=[UNAVAILABLE]",
            Command::Xclient(vec![("ADDR", "192.0.2.7"), ("NAME", "[UNAVAILABLE]")]),
        ),
    ];
    for (line, expected) in table {
        assert_eq!(parse_command(line.as_bytes()), Ok(expected), "{line}");
    }
}

#[test]
fn errors() {
    use ParseError::*;
    let table = [
        ("", Unrecognized),
        ("QUITTER", Unrecognized),
        ("HELOfoo", Unrecognized),
        ("DATAX", Unrecognized),
        ("MAILFROM:<a@b>", Unrecognized),
        ("\u{7f}", Unrecognized),
        ("TURN", NotImplemented),
        ("AUTH", Syntax(Verb::Auth)),
        ("AUTH PLAIN AA AA", Syntax(Verb::Auth)),
        ("AUTH PLAIN A*A", Syntax(Verb::Auth)),
        ("AUTH PL@IN", Syntax(Verb::Auth)),
        ("HELO", Syntax(Verb::Helo)),
        ("EHLO a b", Syntax(Verb::Ehlo)),
        ("EHLO a\u{1}b", Syntax(Verb::Ehlo)),
        ("MAIL TO:<a@b>", Syntax(Verb::Mail)),
        ("MAIL FROM:a@b", Syntax(Verb::Mail)),
        ("MAIL FROM:<a@>", BadSender),
        ("MAIL FROM:<a@b> FOO=bar", UnsupportedParameter),
        ("MAIL FROM:<a@b> AUTH", Syntax(Verb::Mail)),
        ("MAIL FROM:<a@b> AUTH=<> AUTH=<>", Syntax(Verb::Mail)),
        ("RCPT TO:<a@b> NOTIFY=NEVER", UnsupportedParameter),
        ("RCPT TO:<a..b@c>", BadRecipient),
        ("RCPT FROM:<a@b>", Syntax(Verb::Rcpt)),
        ("DATA now", Syntax(Verb::Data)),
        ("QUIT now", Syntax(Verb::Quit)),
        ("BDAT", Syntax(Verb::Bdat)),
        ("BDAT -1", Syntax(Verb::Bdat)),
        ("BDAT 10 FIRST", Syntax(Verb::Bdat)),
        ("BDAT 99999999999999999999", Syntax(Verb::Bdat)),
        ("VRFY", Syntax(Verb::Vrfy)),
        ("STARTTLS now", Syntax(Verb::StartTls)),
        ("XCLIENT", Syntax(Verb::Xclient)),
        ("XCLIENT ADDR", Syntax(Verb::Xclient)),
        ("XCLIENT ADDR=+zz", Syntax(Verb::Xclient)),
    ];
    for (line, expected) in table {
        assert_eq!(parse_command(line.as_bytes()), Err(expected), "{line:?}");
    }
    assert_eq!(parse_command(b"HELO \xff"), Err(Unrecognized));
}

#[test]
fn xtext() {
    assert_eq!(decode_xtext("a+2Bb").as_deref(), Some("a+b"));
    assert_eq!(decode_xtext("+4"), None);
    assert_eq!(decode_xtext("+-1"), None);
}

#[test]
fn encode_round_trips() {
    for line in [
        "MAIL FROM:<a@b> SIZE=5 SMTPUTF8",
        "RCPT TO:<Postmaster>",
        "BDAT 7 LAST",
        "HELP x",
    ] {
        let cmd = parse_command(line.as_bytes()).unwrap();
        let mut out = Vec::new();
        cmd.encode(&mut out);
        assert_eq!(out, format!("{line}\r\n").as_bytes());
    }
}
