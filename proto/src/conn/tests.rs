//! Session tests as transcripts (the dialect of [`crate::transcript`]): `C:` lines are
//! sent (pipelined until the next `S:`), `S:` lines must match the replies in order (`*`
//! at the end matches any rest), and no reply may come that no `S:` line expects.

use std::time::Duration;

use crate::CloseReason;
use crate::config::{BareNewline, Config};
use crate::sim::Sim;
use crate::transcript::{Chunks, replay};

/// Runs a transcript against a fresh session and returns the simulation.
fn run(cfg: Config, script: &str) -> Sim {
    let mut sim = Sim::new(cfg);
    replay(&mut sim, script, Chunks::Whole);
    sim
}

const GREETING: &str =
    "S: 220 localhost SMTP Guerrilla-SMTPd #1 (1) Thu, 01 Jan 1970 00:00:00 +0000";

#[test]
fn full_session() {
    let sim = run(
        Config::default(),
        &format!(
            "{GREETING}
        C: EHLO client.example
        S: 250-localhost Hello client.example [192.0.2.1]
        S: 250-SIZE 10240000
        S: 250-PIPELINING
        S: 250-8BITMIME
        S: 250-SMTPUTF8
        S: 250-ENHANCEDSTATUSCODES
        S: 250-CHUNKING
        S: 250 HELP
        C: MAIL FROM:<a@b.example> SIZE=100
        S: 250 2.1.0 Ok
        C: RCPT TO:<User@Example.com>
        S: 250 2.1.5 Accepted
        C: RCPT TO:<postmaster>
        S: 250 2.1.5 Accepted
        C: DATA
        S: 354 Enter message, ending with \".\" on a line by itself
        C: Subject: hi
        C:
        C: ..dotted
        C: .
        S: 250 2.0.0 OK : queued as *
        C: NOOP
        C: RSET
        C: VRFY x
        C: HELP
        C: QUIT
        S: 250 2.0.0 OK
        S: 250 2.0.0 OK
        S: 252 2.5.0 *
        S: 214 2.0.0 *
        S: 221 2.0.0 Bye"
        ),
    );
    assert_eq!(sim.closed, Some(CloseReason::Quit));
    assert_eq!(sim.stored.len(), 1);
    let m = &sim.stored[0];
    assert_eq!(m.body, b"Subject: hi\r\n\r\n.dotted\r\n");
    let rcpts: Vec<_> = m
        .envelope
        .recipients
        .iter()
        .map(|r| r.address.as_str())
        .collect();
    assert_eq!(rcpts, ["User@Example.com", "postmaster@localhost"]);
}

#[test]
fn sequencing_errors() {
    run(
        Config::default(),
        &format!(
            "{GREETING}
        C: MAIL FROM:<a@b>
        S: 503 5.5.1 Error: send HELO/EHLO first
        C: HELO x
        S: 250 localhost Hello x
        C: RCPT TO:<a@b>
        S: 503 5.5.1 Error: need MAIL command
        C: DATA
        S: 503 5.5.1 Error: need MAIL command
        C: MAIL FROM:<>
        S: 250 2.1.0 Ok
        C: MAIL FROM:<>
        S: 503 5.5.1 Error: nested MAIL command
        C: DATA
        S: 503 5.5.1 Error: need RCPT command
        C: STARTTLS
        S: 502 5.5.1 Error: STARTTLS not offered
        C: QUITTER
        S: 500 5.5.1 Error: command not recognized
        C: MAIL FROM:<a@b> FOO=1
        S: 555 5.5.4 *
        C: RSET
        S: 250 2.0.0 OK
        C: MAIL FROM:<a@b> FOO=1
        S: 555 5.5.4 Error: unsupported parameter
        C: MAIL FROM:<a@@b>
        S: 501 5.1.7 Error: bad sender address syntax
        C: MAIL FROM:a@b
        S: 501 5.5.4 Syntax: MAIL FROM:<address> *
        C: AUTH LOGIN
        S: 502 5.5.1 Error: command not implemented
        C: EXPN list
        S: 502 5.5.1 Error: EXPN not available"
        ),
    );
}

#[test]
fn size_limits() {
    let cfg = Config {
        max_size: 10,
        ..Config::default()
    };
    let sim = run(
        cfg,
        &format!(
            "{GREETING}
        C: HELO x
        S: 250 *
        C: MAIL FROM:<a@b> SIZE=11
        S: 552 5.3.4 *
        C: MAIL FROM:<a@b> SIZE=10
        C: RCPT TO:<c@d>
        C: DATA
        S: 250 2.1.0 Ok
        S: 250 2.1.5 Accepted
        S: 354 *
        C: 12345678
        C: .
        S: 250 2.0.0 OK : queued as *
        C: MAIL FROM:<a@b>
        C: RCPT TO:<c@d>
        C: DATA
        S: 250 2.1.0 Ok
        S: 250 2.1.5 Accepted
        S: 354 *
        C: 123456789
        C: more lines that are drained
        C: .
        S: 552 5.3.4 Error: message size exceeds fixed maximum message size
        C: NOOP
        S: 250 2.0.0 OK"
        ),
    );
    assert_eq!(sim.stored.len(), 1, "exactly the limit is accepted");
    assert_eq!(sim.stored[0].body, b"12345678\r\n");
    assert_eq!(sim.aborted, 1);
}

#[test]
fn recipient_limit_and_allowed_hosts() {
    let mut cfg = Config {
        max_recipients: 2,
        ..Config::default()
    };
    cfg.allowed_hosts = crate::policy::AllowedHosts::parse("ok.example").unwrap();
    run(
        cfg,
        &format!(
            "{GREETING}
        C: EHLO x
        S: 250-*
        S: 250-*
        S: 250-*
        S: 250-*
        S: 250-*
        S: 250-*
        S: 250-*
        S: 250 HELP
        C: MAIL FROM:<a@b>
        C: RCPT TO:<a@evil.example>
        C: RCPT TO:<a@OK.example>
        C: RCPT TO:<postmaster>
        C: RCPT TO:<b@ok.example>
        C: RCPT TO:<ü@ok.example>
        S: 250 2.1.0 Ok
        S: 550 5.7.1 Error: relay access denied
        S: 250 2.1.5 Accepted
        S: 250 2.1.5 Accepted
        S: 452 4.5.3 Error: too many recipients
        S: 452 4.5.3 Error: too many recipients"
        ),
    );
}

#[test]
fn smtputf8_addresses() {
    run(
        Config::default(),
        &format!(
            "{GREETING}
        C: HELO x
        S: 250 *
        C: MAIL FROM:<ü@b>
        S: 553 5.6.7 *
        C: MAIL FROM:<ü@b> SMTPUTF8
        C: RCPT TO:<用户@例子.广告>
        S: 250 2.1.0 Ok
        S: 250 2.1.5 Accepted"
        ),
    );
}

#[test]
fn overlong_command_line_is_answered_and_skipped() {
    let mut sim = Sim::new(Config::default());
    sim.take_output();
    let mut long = b"NOOP ".to_vec();
    long.resize(5000, b'x');
    sim.send(&long[..3000]);
    assert_eq!(sim.take_output(), "");
    sim.send(&long[3000..]);
    sim.send(b"\r\nNOOP\r\n");
    assert_eq!(
        sim.take_output(),
        "500 5.5.2 Error: line too long\r\n250 2.0.0 OK\r\n"
    );
    assert!(sim.max_buffered <= 512, "{}", sim.max_buffered);
    let mut exact = b"NOOP ".to_vec();
    exact.resize(510, b'y');
    exact.extend_from_slice(b"\r\n");
    sim.send(&exact);
    assert_eq!(
        sim.take_output(),
        "250 2.0.0 OK\r\n",
        "512 octets with CRLF is allowed"
    );
}

#[test]
fn too_many_errors_close() {
    let cfg = Config {
        max_errors: 3,
        ..Config::default()
    };
    let sim = run(
        cfg,
        &format!(
            "{GREETING}
        C: bad
        C: bad
        C: bad
        C: NOOP
        S: 500 *
        S: 500 *
        S: 500 *
        S: 421 4.7.0 localhost Error: too many errors"
        ),
    );
    assert_eq!(sim.closed, Some(CloseReason::TooManyErrors));
}

#[test]
fn timeouts() {
    let cfg = Config {
        timeout: Duration::from_secs(10),
        session_timeout: Duration::from_secs(25),
        ..Config::default()
    };
    let mut sim = Sim::new(cfg);
    sim.take_output();
    sim.advance(Duration::from_secs(9));
    assert_eq!(sim.closed, None, "an early timeout call is a no-op");
    sim.send(b"HELO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\npartial body\r\n");
    sim.advance(Duration::from_secs(9));
    sim.send(b"more\r\n");
    sim.advance(Duration::from_secs(6));
    sim.send(b"more\r\n");
    assert_eq!(sim.closed, None);
    sim.advance(Duration::from_secs(1));
    assert_eq!(sim.closed, Some(CloseReason::Timeout), "the session limit");
    assert!(
        sim.take_output()
            .ends_with("421 4.4.2 localhost Error: timeout exceeded\r\n")
    );
    assert_eq!((sim.aborted, sim.stored.len()), (1, 0));
}

#[test]
fn eof_mid_data_stores_nothing() {
    let mut sim = Sim::new(Config::default());
    sim.send(b"HELO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nhalf a message");
    sim.eof();
    assert_eq!(
        (sim.closed, sim.aborted, sim.stored.len()),
        (Some(CloseReason::Eof), 1, 0)
    );
}

#[test]
fn failed_store_gives_451() {
    let mut sim = Sim::new(Config::default());
    sim.delivery = Err(crate::DeliveryError::transient());
    sim.send(
        b"HELO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nx\r\n.\r\nMAIL FROM:<a@b>\r\n",
    );
    let out = sim.take_output();
    assert!(out.ends_with("354 Enter message, ending with \".\" on a line by itself\r\n451 4.3.0 Error: queue file write error\r\n250 2.1.0 Ok\r\n"), "{out}");
}

#[test]
fn smuggling_variants_stay_in_the_body() {
    for sep in ["\n.\n", "\n.\r\n", "\r\n.\n", "\r.\r\n", "\r.\r"] {
        let mut sim = Sim::new(Config::default());
        let smuggled = format!(
            "HELO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nbody{sep}MAIL FROM:<evil@x>\r\nRCPT TO:<c@d>\r\nDATA\r\nforged\r\n.\r\n"
        );
        sim.send(smuggled.as_bytes());
        assert_eq!(sim.stored.len(), 1, "{sep:?}");
        let body = String::from_utf8_lossy(&sim.stored[0].body).into_owned();
        assert!(
            body.contains("MAIL FROM:<evil@x>") && body.ends_with("forged\r\n"),
            "{sep:?}: {body:?}"
        );
        let out = sim.take_output();
        assert_eq!(out.matches("queued as").count(), 1, "{sep:?}: {out}");
    }
}

#[test]
fn bare_newline_policies() {
    let msg = b"HELO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nline one\nline two\r\n.\r\n";
    let mut sim = Sim::new(Config::default());
    sim.send(msg);
    assert_eq!(sim.stored[0].body, b"line one\r\nline two\r\n");
    let mut sim = Sim::new(Config {
        bare_newline: BareNewline::Reject,
        ..Config::default()
    });
    sim.send(msg);
    assert!(sim.stored.is_empty());
    assert!(
        sim.take_output()
            .ends_with("550 5.5.2 Error: bare <LF> received\r\n")
    );
    sim.send(b"NOOP\n");
    assert!(
        sim.take_output()
            .ends_with("550 5.5.2 Error: bare <LF> received\r\n")
    );
}

#[test]
fn starttls_drops_injected_commands_and_resets() {
    let cfg = Config {
        tls_cert: Some("c".into()),
        tls_key: Some("k".into()),
        ..Config::default()
    };
    let mut sim = Sim::new(cfg);
    sim.send(b"EHLO x\r\nMAIL FROM:<a@b>\r\n");
    assert!(sim.take_output().contains("250-STARTTLS\r\n"));
    sim.send(b"STARTTLS\r\nRSET\r\nMAIL FROM:<evil@x>\r\n");
    assert_eq!(sim.handshakes, 1);
    assert_eq!(
        sim.take_output(),
        "220 2.0.0 Ready to start TLS\r\n",
        "nothing injected is answered"
    );
    sim.send(b"MAIL FROM:<a@b>\r\n");
    assert_eq!(
        sim.take_output(),
        "503 5.5.1 Error: send HELO/EHLO first\r\n",
        "the session was reset"
    );
    sim.send(b"EHLO x\r\nSTARTTLS\r\n");
    let out = sim.take_output();
    assert!(!out.contains("STARTTLS"), "not offered twice: {out}");
    assert!(out.ends_with("503 5.5.1 Error: TLS already active\r\n"));
}

#[test]
fn bdat_chunks() {
    let mut sim = Sim::new(Config::default());
    sim.send(
        b"EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 5\r\nab\r\n.BDAT 3 LAST\r\n\r\n.",
    );
    sim.take_output();
    assert_eq!(sim.stored[0].body, b"ab\r\n.\r\n.");
    sim.send(b"BDAT 4 LAST\r\nabcd");
    assert_eq!(
        sim.take_output(),
        "503 5.5.1 Error: need MAIL command\r\n",
        "the data was drained"
    );
    sim.send(b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 3\r\nabcDATA\r\nBDAT 0 LAST\r\n");
    let out = sim.take_output();
    assert!(out.contains("250 2.0.0 3 octets received\r\n503 5.5.1 Error: DATA cannot follow BDAT\r\n250 2.0.0 OK : queued"), "{out}");
}

#[test]
fn unparsable_bdat_closes_the_session() {
    for bad in [
        "BDAT  3",
        "BDAT +3",
        "BDAT 3 LASTX",
        "BDAT",
        "BDAT 123456789012345678901",
    ] {
        let mut sim = Sim::new(Config::default());
        sim.send(b"EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n");
        sim.take_output();
        sim.send(format!("{bad}\r\nabcNOOP\r\n").as_bytes());
        assert_eq!(
            sim.take_output(),
            "501 5.5.4 Syntax: BDAT size [LAST]\r\n",
            "{bad}: the chunk is never read as commands"
        );
        assert_eq!(sim.closed, Some(CloseReason::Protocol), "{bad}");
        assert_eq!((sim.stored.len(), sim.aborted), (0, 0), "{bad}");
    }
}

#[test]
fn bdat_oversize_is_drained_and_refused() {
    let cfg = Config {
        max_size: 4,
        ..Config::default()
    };
    let mut sim = Sim::new(cfg);
    sim.send(
        b"EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 3\r\nabcBDAT 3 LAST\r\ndefNOOP\r\n",
    );
    let out = sim.take_output();
    assert!(out.ends_with("250 2.0.0 3 octets received\r\n552 5.3.4 Error: message size exceeds fixed maximum message size\r\n250 2.0.0 OK\r\n"), "{out}");
    assert_eq!((sim.stored.len(), sim.aborted), (0, 1));
}

#[test]
fn xclient_needs_trust() {
    let mut sim = Sim::new(Config::default());
    sim.send(b"XCLIENT ADDR=10.0.0.1\r\n");
    assert!(
        sim.take_output()
            .ends_with("550 5.7.0 Error: insufficient authorization\r\n")
    );
    let accept = crate::Accept {
        peer: "127.0.0.1:5000".parse().unwrap(),
        id: 7,
        active: 2,
        wall: std::time::SystemTime::UNIX_EPOCH,
        instance: 0,
        tls: None,
    };
    let trusting = || Config {
        trusted_proxies: vec!["127.0.0.1".parse().unwrap()],
        ..Config::default()
    };
    let mut sim = Sim::with_accept(Config::default(), accept.clone());
    sim.send(b"EHLO proxy\r\nXCLIENT ADDR=10.0.0.1\r\n");
    let out = sim.take_output();
    assert!(
        !out.contains("XCLIENT"),
        "nothing is trusted by default: {out}"
    );
    assert!(out.ends_with("550 5.7.0 Error: insufficient authorization\r\n"));
    let mut sim = Sim::with_accept(trusting(), accept.clone());
    sim.take_output();
    sim.send(b"EHLO proxy\r\nXCLIENT ADDR=IPV6:2001:db8::1 NAME=client.example\r\nEHLO real\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nx\r\n.\r\n");
    let out = sim.take_output();
    assert!(out.contains("250-XCLIENT ADDR NAME"), "{out}");
    assert!(
        out.contains("\r\n220 localhost SMTP Guerrilla-SMTPd #7 (2) "),
        "{out}"
    );
    assert!(
        out.contains("250-localhost Hello real [2001:db8::1]"),
        "{out}"
    );
    assert!(
        !out.contains(
            "250-XCLIENT ADDR NAME HELO PROTO PORT LOGIN DESTADDR DESTPORT\r\n250 HELP\r\n250 2.1.0"
        ),
        "the client is not offered XCLIENT: {out}"
    );
    assert_eq!(
        sim.checks, 3,
        "the new client, the sender and the recipient"
    );
    let env = &sim.stored[0].envelope;
    assert_eq!(
        env.client_ip,
        "2001:db8::1".parse::<std::net::IpAddr>().unwrap()
    );
    assert_eq!(env.client_name.as_deref(), Some("client.example"));
    // The client behind the proxy cannot claim yet another identity.
    sim.send(b"XCLIENT ADDR=10.9.9.9\r\n");
    assert_eq!(
        sim.take_output(),
        "550 5.7.0 Error: insufficient authorization\r\n"
    );
    let mut sim = Sim::with_accept(trusting(), accept.clone());
    sim.send(b"XCLIENT HELO=proxied.example PROTO=SMTP\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nx\r\n.\r\n");
    let env = &sim.stored[0].envelope;
    assert_eq!(
        (env.helo.as_str(), env.protocol),
        ("proxied.example", crate::Protocol::Smtp)
    );
    // A new address over its per-client limit ends the session.
    let mut sim = Sim::with_accept(trusting(), accept.clone());
    sim.check = |c| match c {
        crate::conn::Check::Client(_) => Err(crate::DeliveryError::transient()),
        _ => Ok(()),
    };
    sim.take_output();
    sim.send(b"XCLIENT ADDR=192.0.2.9\r\nNOOP\r\n");
    assert_eq!(
        sim.take_output(),
        "421 4.7.0 localhost Error: too many connections from your address, try again later\r\n"
    );
    assert_eq!(sim.closed, Some(CloseReason::ClientLimit));
    let mut sim = Sim::with_accept(trusting(), accept);
    sim.take_output();
    sim.send(b"XCLIENT ADDR=nonsense\r\nXCLIENT\r\n");
    assert_eq!(
        sim.take_output(),
        "501 5.5.4 Error: bad XCLIENT attribute value\r\n501 5.5.4 Syntax: XCLIENT attribute=value ...\r\n"
    );
}

/// A queue id starts with the time its `MAIL` arrived, not the connection's: on a
/// reused connection ids (and S3 keys) follow the order in which messages began.
#[test]
fn queue_ids_follow_mail_time() {
    let mut sim = Sim::new(Config::default());
    let mut ids = Vec::new();
    sim.send(b"EHLO client.example\r\n");
    for _ in 0..2 {
        sim.advance(Duration::from_secs(5));
        sim.send(b"MAIL FROM:<a@example.net>\r\nRCPT TO:<u@example.com>\r\nDATA\r\n");
        sim.send(b"Subject: x\r\n\r\nbody\r\n.\r\n");
        let out = sim.take_output();
        let id = out
            .split("queued as ")
            .nth(1)
            .and_then(|rest| rest.get(..32))
            .unwrap_or_else(|| panic!("no queue id in {out}"))
            .to_string();
        ids.push(u128::from_str_radix(&id, 16).expect("hex"));
    }
    let secs = |id: u128| Duration::from_nanos((id >> 64) as u64);
    assert_eq!(secs(ids[0]), Duration::from_secs(5));
    assert_eq!(secs(ids[1]), Duration::from_secs(10));
}

/// `GSMTP_GREET_PAUSE`: the greeting's first line at once, the last after the pause; a
/// client that writes before the last line is refused, what it wrote logged.
#[test]
fn greet_pause_catches_early_talkers() {
    let cfg = Config {
        greet_pause: Some(Duration::from_secs(2)),
        ..Config::default()
    };
    let mut sim = Sim::new(cfg.clone());
    let first = sim.take_output();
    assert!(
        first.starts_with("220-localhost SMTP Guerrilla-SMTPd"),
        "{first}"
    );
    assert!(!first.contains("220 "), "{first}");
    sim.advance(Duration::from_secs(1));
    sim.send(b"EHLO bot\r\n");
    assert_eq!(
        sim.take_output(),
        "554 5.5.1 Protocol error: talked before the greeting\r\n"
    );
    assert_eq!(sim.closed, Some(CloseReason::EarlyTalker));
    let events: Vec<_> = std::iter::from_fn(|| sim.conn.poll_event()).collect();
    assert_eq!(events, [crate::Event::EarlyTalker("EHLO bot\\r\\n".into())]);

    // A patient client gets the last line after the pause, and a normal session.
    let mut sim = Sim::new(cfg);
    sim.take_output();
    sim.advance(Duration::from_millis(1999));
    assert_eq!(sim.take_output(), "");
    sim.advance(Duration::from_millis(1));
    let last = sim.take_output();
    assert!(
        last.starts_with("220 localhost SMTP Guerrilla-SMTPd"),
        "{last}"
    );
    sim.send(b"HELO client\r\n");
    assert_eq!(sim.take_output(), "250 localhost Hello client\r\n");
}

/// With a pause of 0, input already waiting before the greeting is written is an early
/// talker's: the greeting is never sent.
#[test]
fn greet_pause_zero_catches_input_before_the_greeting() {
    let cfg = std::sync::Arc::new(Config {
        greet_pause: Some(Duration::ZERO),
        ..Config::default()
    });
    let now = std::time::Instant::now(); // purity: the origin of the test's clock
    let mut conn = crate::Connection::new(cfg.clone(), now, Sim::accept());
    assert!(conn.awaits_greeting());
    conn.handle_input(now, b"EHLO fast\r\n");
    let mut out = Vec::new();
    conn.poll_transmit(&mut out);
    assert_eq!(
        out,
        b"554 5.5.1 Protocol error: talked before the greeting\r\n"
    );
    assert!(matches!(
        conn.poll_action(),
        crate::Action::Close(CloseReason::EarlyTalker)
    ));
    // Once the greeting is taken for sending, input is commands as usual.
    let mut conn = crate::Connection::new(cfg, now, Sim::accept());
    let mut out = Vec::new();
    conn.poll_transmit(&mut out);
    assert!(!conn.awaits_greeting());
    conn.handle_input(now, b"NOOP\r\n");
    assert!(matches!(conn.poll_action(), crate::Action::Read));
    out.clear();
    conn.poll_transmit(&mut out);
    assert_eq!(out, b"250 2.0.0 OK\r\n");
}

fn auth_config(mode: crate::config::AuthMode, insecure: bool) -> Config {
    Config {
        auth: mode,
        auth_file: Some("/dev/null".into()),
        auth_insecure: insecure,
        tls_cert: Some("cert.pem".into()),
        tls_key: Some("key.pem".into()),
        ..Config::default()
    }
}

/// The password check of the tests: `right` is right.
fn check_password(c: &crate::Check<'_>) -> Result<(), crate::DeliveryError> {
    match c {
        crate::Check::Auth { password, .. } if *password != b"right" => Err(
            crate::DeliveryError::reply(crate::reply::ReplyBuf::from(crate::reply::AUTH_FAILED)),
        ),
        _ => Ok(()),
    }
}

#[test]
fn auth_plain_and_login_over_tls() {
    use crate::config::AuthMode;
    let mut sim = Sim::new(auth_config(AuthMode::File, false));
    sim.check = check_password;
    replay(
        &mut sim,
        "S: 220 *
        C: EHLO c
        S: 250-localhost Hello c [192.0.2.1]
        S: 250-SIZE 10240000
        S: 250-PIPELINING
        S: 250-8BITMIME
        S: 250-SMTPUTF8
        S: 250-ENHANCEDSTATUSCODES
        S: 250-CHUNKING
        S: 250-STARTTLS
        S: 250 HELP
        C: AUTH PLAIN AGFsaWNlAHJpZ2h0
        S: 538 5.7.11 Encryption required for requested authentication mechanism
        C: MAIL FROM:<a@b.example>
        S: 530 5.7.0 Authentication required
        C: STARTTLS
        S: 220 2.0.0 Ready to start TLS
        C: AUTH PLAIN AGFsaWNlAHJpZ2h0
        S: 503 5.5.1 Error: send HELO/EHLO first
        C: EHLO c
        S: 250-localhost Hello c [192.0.2.1]
        S: 250-SIZE 10240000
        S: 250-PIPELINING
        S: 250-8BITMIME
        S: 250-SMTPUTF8
        S: 250-ENHANCEDSTATUSCODES
        S: 250-CHUNKING
        S: 250-AUTH PLAIN LOGIN
        S: 250 HELP
        C: AUTH PLAIN AGFsaWNlAHdyb25n
        S: 535 5.7.8 Error: authentication failed
        C: AUTH CRAM-MD5
        S: 504 5.5.4 Error: unrecognized authentication type
        C: AUTH LOGIN
        S: 334 VXNlcm5hbWU6
        C: *
        S: 501 5.7.0 Error: authentication cancelled
        C: AUTH LOGIN
        S: 334 VXNlcm5hbWU6
        C: YWxpY2U=
        S: 334 UGFzc3dvcmQ6
        C: cmlnaHQ=
        S: 235 2.7.0 Authentication successful
        C: AUTH PLAIN AGFsaWNlAHJpZ2h0
        S: 503 5.5.1 Error: already authenticated
        C: MAIL FROM:<a@b.example>
        S: 250 2.1.0 Ok
        C: RCPT TO:<x@y.example>
        S: 250 2.1.5 Accepted
        C: DATA
        S: 354 *
        C: Subject: hi
        C:
        C: .
        S: 250 2.0.0 OK : queued as *",
        Chunks::Whole,
    );
    let env = &sim.stored[0].envelope;
    assert_eq!(env.auth_user.as_deref(), Some("alice"));
    assert_eq!(env.protocol.as_str(), "ESMTPSA");
}

#[test]
fn auth_accept_any_insecure_and_the_log() {
    use crate::config::AuthMode;
    let cfg = Config {
        verbose: true,
        ..auth_config(AuthMode::AcceptAny, true)
    };
    let mut sim = Sim::new(cfg);
    replay(
        &mut sim,
        "S: 220 *
        C: EHLO c
        S: 250-*
        S: 250-*
        S: 250-*
        S: 250-*
        S: 250-*
        S: 250-*
        S: 250-*
        S: 250-STARTTLS
        S: 250-AUTH PLAIN LOGIN
        S: 250 HELP
        C: MAIL FROM:<a@b.example>
        S: 250 2.1.0 Ok
        C: RSET
        S: 250 2.0.0 OK
        C: AUTH PLAIN
        S: 334 
        C: AGJvYgBhbnl0aGluZw==
        S: 235 2.7.0 Authentication successful
        C: MAIL FROM:<a@b.example>
        S: 250 2.1.0 Ok
        C: RCPT TO:<x@y.example>
        S: 250 2.1.5 Accepted
        C: DATA
        S: 354 *
        C: .
        S: 250 2.0.0 OK : queued as *",
        Chunks::Whole,
    );
    assert_eq!(sim.stored[0].envelope.protocol.as_str(), "ESMTPA");
    let logged: Vec<String> = std::iter::from_fn(|| sim.conn.poll_event())
        .map(|e| format!("{e:?}"))
        .collect();
    let all = logged.join("\n");
    assert!(all.contains("AUTH PLAIN"), "{all}");
    assert!(all.contains("user: \"bob\", ok: true"), "{all}");
    assert!(
        !all.contains("AGJvYgBhbnl0aGluZw"),
        "the password is logged: {all}"
    );
}

/// Failed logins count towards `GSMTP_MAX_ERRORS`.
#[test]
fn auth_failures_end_the_session() {
    use crate::config::AuthMode;
    let cfg = Config {
        max_errors: 3,
        ..auth_config(AuthMode::File, true)
    };
    let mut sim = Sim::new(cfg);
    sim.check = check_password;
    replay(
        &mut sim,
        "S: 220 *
        C: EHLO c
        S: 250-*
        S: 250-*
        S: 250-*
        S: 250-*
        S: 250-*
        S: 250-*
        S: 250-*
        S: 250-*
        S: 250-*
        S: 250 HELP
        C: AUTH PLAIN AGEAeA==
        S: 535 5.7.8 Error: authentication failed
        C: AUTH PLAIN AGEAeQ==
        S: 535 5.7.8 Error: authentication failed
        C: AUTH PLAIN AGEAeg==
        S: 535 5.7.8 Error: authentication failed
        S: 421 4.7.0 localhost Error: too many errors",
        Chunks::Whole,
    );
    assert_eq!(sim.closed, Some(CloseReason::TooManyErrors));
}

/// Every idle session keeps its `Connection` (the README's memory figure counts it):
/// what is rare or large is boxed, so that this stays put.
#[test]
#[cfg(target_pointer_width = "64")]
fn an_idle_connection_stays_small() {
    let size = size_of::<super::Connection>();
    assert!(size <= 400, "Connection is {size} bytes");
}
