//! Milters against the real binary: rspamd's proxy in milter mode, opendkim verifying,
//! clamav-milter with a private clamd, all three in a chain; and a scripted milter for
//! what real ones do rarely: refusing at connect, at HELO or one recipient, dying in
//! the middle of a message, answering garbage, never answering.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use proto::milter::{Actions, Command, Decoder, Modification, Protocol, Reply};

use super::daemon::{Daemon, Settings, queued_id};
use super::filtering::send_as_client;
use super::filters::{
    ClamavMilter, Clamd, GTUBE, GTUBE_ADD_HEADER, OPENDKIM_AUTHSERV_ID, OpenDkim, Rspamd,
    eicar_message, marked_message,
};
use super::verdicts::{Zones, fields, text};
use crate::Client;

/// Our server asking the milters at `milters` (comma-separated), trusting loopback for
/// XCLIENT, with short time-outs.
fn milter_daemon(bin: &str, milters: &str, tweak: impl FnOnce(&mut Settings)) -> Daemon {
    Daemon::start(bin, |s| {
        s.set("GSMTP_MILTERS", milters)
            .set("GSMTP_XCLIENT_HOSTS", "127.0.0.1")
            .set("GSMTP_MILTER_CONNECT_TIMEOUT", "2")
            .set("GSMTP_MILTER_COMMAND_TIMEOUT", "2")
            .set("GSMTP_MILTER_CONTENT_TIMEOUT", "3");
        tweak(s);
    })
}

fn inet(addr: SocketAddr) -> String {
    format!("inet:{addr}")
}

/// rspamd's proxy as a milter: GTUBE is refused with its reply, the add-header marker
/// gets `X-Spam: Yes` from rspamd, a plain message is stored.
pub fn milter_rspamd_proxy(bin: &str) {
    let z = Zones::start();
    let rspamd = Rspamd::start(z.addr);
    let d = milter_daemon(bin, &inet(rspamd.milter), |_| {});
    let r = send_as_client(&d, "gtube", &marked_message(GTUBE));
    assert_eq!(r.code, 554, "{r:?}");
    assert!(r.lines[0].starts_with("5.7.1 "), "{r:?}");
    assert!(d.files("example.com/gtube", "new").is_empty());
    let r = send_as_client(&d, "add", &marked_message(GTUBE_ADD_HEADER));
    assert_eq!(r.code, 250, "{r:?}");
    let stored = d.stored("example.com/add");
    assert_eq!(fields(&stored[0], "X-Spam"), ["X-Spam: Yes"]);
    let r = send_as_client(&d, "plain", &marked_message("hello"));
    assert_eq!(r.code, 250, "{r:?}");
    let id = queued_id(&r.wire());
    let line = d.wait_log(&["message queued", &id]);
    assert!(line.contains("milter=pass"), "{line}");
}

/// opendkim verifying and clamav-milter scanning, in a chain: a DKIM-signed message is
/// stored with opendkim's `Authentication-Results` (`dkim=pass`), one altered after
/// signing with `dkim=fail`; the EICAR test virus is refused and not stored.
pub fn milter_chain_opendkim_and_clamav(bin: &str) {
    let z = Zones::start();
    let dkim = OpenDkim::start(z.addr);
    let clamd = Clamd::start();
    let clamav = ClamavMilter::start(&clamd);
    let chain = format!("{},{}", inet(dkim.milter), inet(clamav.milter));
    let d = milter_daemon(bin, &chain, |_| {});
    let signed = z.sign(&text("News <news@dkim.example>", "milter-dkim", ""), "rsa");
    let r = send_as_client(&d, "signed", &signed);
    assert_eq!(r.code, 250, "{r:?}");
    let stored = d.stored("example.com/signed");
    let theirs: Vec<String> = fields(&stored[0], "Authentication-Results")
        .into_iter()
        .filter(|f| f.contains(OPENDKIM_AUTHSERV_ID))
        .collect();
    assert_eq!(theirs.len(), 1, "{}", String::from_utf8_lossy(&stored[0]));
    assert!(theirs[0].contains("dkim=pass"), "{theirs:?}");
    assert!(stored[0].ends_with(&signed[signed.len() - 40..]));
    let mut altered = signed.clone();
    let at = altered.len() - "Bye.\r\n".len();
    altered.splice(at.., b"Bye, changed.\r\n".iter().copied());
    let r = send_as_client(&d, "altered", &altered);
    assert_eq!(r.code, 250, "{r:?}");
    let stored = d.stored("example.com/altered");
    let ar = fields(&stored[0], "Authentication-Results").join("\n");
    assert!(ar.contains("dkim=fail"), "{ar}");
    let r = send_as_client(&d, "virus", &eicar_message());
    assert_eq!(
        r.wire(),
        "550 5.7.1 Error: rejected by a content filter\r\n"
    );
    assert!(d.files("example.com/virus", "new").is_empty());
    d.wait_log(&["refused", "code=550", "command=DATA"]);
}

/// What the scripted milter does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Script {
    /// Rejects the connection.
    RejectConnect,
    /// Refuses the HELO name with `554 5.7.1 go away`.
    RejectHelo,
    /// Rejects recipients whose address holds `blocked`; adds a header at the end.
    RejectBlockedRcpt,
    /// Closes the connection in the middle of the body.
    DieInBody,
    /// Answers the end of the message with octets that are not the protocol.
    Garbage,
    /// Accepts connections and never says a word.
    Silent,
}

/// A milter that follows a [`Script`], one thread per connection, on a free loopback
/// port; it stops accepting when dropped.
struct ScriptedMilter {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl ScriptedMilter {
    fn start(script: Script) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("an address");
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut held = Vec::new();
            while !stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((tcp, _)) if script == Script::Silent => held.push(tcp),
                    Ok((tcp, _)) => {
                        std::thread::spawn(move || serve(tcp, script));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Self { addr, stop }
    }
}

impl Drop for ScriptedMilter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// One scripted milter session.
fn serve(mut tcp: TcpStream, script: Script) {
    tcp.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let mut decoder = Decoder::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut input: Vec<u8> = Vec::new();
    loop {
        let Ok(n) = tcp.read(&mut buf) else { return };
        if n == 0 {
            return;
        }
        input.extend_from_slice(&buf[..n]);
        loop {
            let (used, packet) = decoder.decode(&input);
            input.drain(..used);
            let Some(Ok(packet)) = packet else { break };
            let Ok(command) = Command::decode(&packet) else {
                return;
            };
            let mut out = Vec::new();
            let reply = match command {
                Command::Negotiate { .. } => Some(Reply::Negotiate {
                    version: 6,
                    actions: Actions::ADDHDRS
                        | Actions::CHGHDRS
                        | Actions::CHGBODY
                        | Actions::ADDRCPT
                        | Actions::QUARANTINE,
                    protocol: Protocol(0),
                    macros: Vec::new(),
                }),
                Command::Connect { .. } if script == Script::RejectConnect => Some(Reply::Reject),
                Command::Helo(_) if script == Script::RejectHelo => {
                    Some(Reply::ReplyCode("554 5.7.1 go away".into()))
                }
                Command::Rcpt(args)
                    if script == Script::RejectBlockedRcpt
                        && args
                            .first()
                            .is_some_and(|a| a.windows(7).any(|w| w == b"blocked")) =>
                {
                    Some(Reply::Reject)
                }
                Command::Body(_) if script == Script::DieInBody => return,
                Command::EndOfMessage if script == Script::Garbage => {
                    let _ = tcp.write_all(b"\x00\x00\x00\x05zzzzz");
                    None
                }
                Command::EndOfMessage => {
                    for m in [
                        Modification::AddHeader {
                            name: "X-Scripted-Milter".into(),
                            value: "seen".into(),
                        },
                        Modification::ChangeHeader {
                            index: 1,
                            name: "Subject".into(),
                            value: "[milter] changed".into(),
                        },
                        Modification::ReplaceBody(b"A new body.\r\n".to_vec()),
                        Modification::AddRecipient("<extra@elsewhere.example>".into()),
                        Modification::Quarantine("looks odd".into()),
                    ] {
                        Reply::Modify(m).encode(&mut out);
                    }
                    Some(Reply::Accept)
                }
                Command::Macro { .. } | Command::Abort => None,
                Command::Quit | Command::QuitNewConnection => return,
                _ => Some(Reply::Continue),
            };
            if let Some(r) = reply {
                r.encode(&mut out);
            }
            if !out.is_empty() && tcp.write_all(&out).is_err() {
                return;
            }
        }
    }
}

/// A milter refusing at connect: the greeting is `554 5.7.1` and the session ends; one
/// refusing the HELO name ends the session after its reply; one refusing a recipient
/// refuses that recipient only, and the message goes to the others with the milter's
/// changes: a header added, the subject changed, the body replaced, a quarantine
/// recorded; its added recipient is not (we do not relay), and the log says so.
pub fn milter_refusals_at_each_step(bin: &str) {
    let m = ScriptedMilter::start(Script::RejectConnect);
    let d = milter_daemon(bin, &inet(m.addr), |_| {});
    let mut c = Client::connect(d.smtp);
    let r = c.reply();
    assert_eq!(r.code, 554, "{r:?}");
    assert!(c.is_closed());
    d.wait_log(&["connection closed", "reason=refused"]);
    drop(d);

    let m = ScriptedMilter::start(Script::RejectHelo);
    let d = milter_daemon(bin, &inet(m.addr), |_| {});
    let mut c = Client::connect(d.smtp);
    assert_eq!(c.reply().code, 220);
    let r = c.cmd("EHLO bad.example");
    assert_eq!(r.wire(), "554 5.7.1 go away\r\n");
    assert!(c.is_closed());
    drop(d);

    let m = ScriptedMilter::start(Script::RejectBlockedRcpt);
    let d = milter_daemon(bin, &inet(m.addr), |_| {});
    let mut c = Client::connect(d.smtp);
    assert_eq!(c.reply().code, 220);
    c.ehlo("client.example");
    assert_eq!(c.cmd("MAIL FROM:<a@example.net>").code, 250);
    assert_eq!(c.cmd("RCPT TO:<u@example.com>").code, 250);
    let r = c.cmd("RCPT TO:<blocked@example.com>");
    assert_eq!(
        r.wire(),
        "550 5.7.1 Error: rejected by a content filter\r\n"
    );
    assert_eq!(c.cmd("DATA").code, 354);
    c.send(b"Subject: two recipients, one refused\r\n\r\nbody\r\n.\r\n");
    let r = c.reply();
    assert_eq!(r.code, 250, "{r:?}");
    let stored = d.stored("example.com/u");
    let text = String::from_utf8_lossy(&stored[0]).into_owned();
    assert_eq!(
        fields(&stored[0], "X-Scripted-Milter"),
        ["X-Scripted-Milter: seen"],
        "{text}"
    );
    assert_eq!(
        fields(&stored[0], "Subject"),
        ["Subject: [milter] changed"],
        "{text}"
    );
    assert!(text.ends_with("\r\n\r\nA new body.\r\n"), "{text}");
    assert!(d.files("example.com/blocked", "new").is_empty());
    assert!(!d.all_files().iter().any(|f| f.contains("elsewhere")));
    d.wait_log(&[
        "milter changes not made",
        "add recipient <extra@elsewhere.example>",
    ]);
    d.wait_log(&["message queued", "milter=pass"]);
}

/// Milters that die in the middle of a message, answer garbage, or never answer: `451
/// 4.7.1` by default, nothing stored; with `GSMTP_FILTER_ON_ERROR=accept` the message is
/// stored and its `milter` result is `temperror`. The server stays up throughout.
pub fn milter_failures_follow_the_policy(bin: &str) {
    for script in [Script::DieInBody, Script::Garbage, Script::Silent] {
        let m = ScriptedMilter::start(script);
        let d = milter_daemon(bin, &inet(m.addr), |_| {});
        let mut c = Client::connect(d.smtp);
        let greeting = c.reply();
        if script == Script::Silent {
            // The negotiation never ends: the connection itself is deferred.
            assert_eq!(greeting.code, 421, "{script:?}: {greeting:?}");
            assert!(greeting.lines[0].starts_with("4.7.1 "), "{greeting:?}");
        } else {
            assert_eq!(greeting.code, 220);
            c.ehlo("client.example");
            let r = c.send_mail("a@example.net", &["u@example.com"], &marked_message("x"));
            assert_eq!(
                r.wire(),
                "451 4.7.1 Error: the content filter failed, try again later\r\n",
                "{script:?}"
            );
            assert!(d.files("example.com/u", "new").is_empty());
        }
        d.wait_log(&["filter failed", "filter=milter"]);
        drop(d);
        let d = milter_daemon(bin, &inet(m.addr), |s| {
            s.set("GSMTP_FILTER_ON_ERROR", "accept");
        });
        let mut c = Client::connect(d.smtp);
        assert_eq!(c.reply().code, 220, "{script:?}");
        c.ehlo("client.example");
        let r = c.send_mail("a@example.net", &["u@example.com"], &marked_message("x"));
        assert_eq!(r.code, 250, "{script:?}: {r:?}");
        let id = queued_id(&r.wire());
        let line = d.wait_log(&["message queued", &id]);
        assert!(line.contains("milter=temperror"), "{script:?}: {line}");
        assert_eq!(d.stored("example.com/u").len(), 1);
    }
}
