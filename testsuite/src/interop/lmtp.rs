//! `GSMTP_STORAGE=lmtp` against a private Dovecot, and `dovecot-lda` as a pipe command:
//! every message fetched back over IMAP.

use std::fs;

use super::daemon::{Daemon, queued_id};
use super::dovecot::Dovecot;
use super::handoff::{acknowledged_until_killed, big_body, peak_rss_kib};
use super::message;
use crate::{Client, TempDir};

/// nobody / nogroup: the owner of the test mail.
const MAIL_OWNER: (u32, u32) = (65534, 65534);

fn session(d: &Daemon) -> Client {
    let mut c = Client::connect(d.smtp);
    assert_eq!(c.reply().code, 220);
    c.ehlo("client.example");
    c
}

/// Whether a fetched message is `sent` as we passed it on: Dovecot's trace headers, then
/// ours (naming `id`), then the text exactly as the client sent it.
fn delivered(fetched: &[u8], sent: &[u8], id: &str) -> bool {
    let text = String::from_utf8_lossy(fetched);
    fetched.ends_with(sent)
        && text.contains(&format!("by mx.test (Guerrilla-SMTPd) with ESMTP id {id}"))
}

/// LMTP into Dovecot: messages for two users land in both mailboxes, fetched over IMAP
/// byte for byte after the trace headers; an unknown user is refused at RCPT with
/// Dovecot's own `550 5.1.1` while the others go through; a BDAT message without a final
/// line end is delivered whole; 25 MiB pass with bounded memory; a Unix socket works;
/// Dovecot stopped is `451` (before the transaction and in the middle of its text), the
/// server stays up and delivers again once Dovecot is back; and nothing acknowledged is
/// ever missing, even when our server is killed with SIGKILL under load.
pub fn lmtp_to_dovecot(bin: &str) {
    let dir = TempDir::new("lmtp");
    let mut dc = Dovecot::start(&dir, &["u@example.com", "v@example.com"], None, MAIL_OWNER);
    let lmtp = dc.lmtp.to_string();
    let mut d = Daemon::start(bin, |s| {
        s.set("GSMTP_STORAGE", "lmtp")
            .set("GSMTP_LMTP_ADDR", &lmtp)
            .set("GSMTP_LMTP_TIMEOUT", "5")
            .set("GSMTP_MAX_SIZE", "30000000");
    });
    let mut c = session(&d);
    let msg = message("lmtp");
    let r = c.send_mail("a@example.net", &["u@example.com", "v@example.com"], &msg);
    assert_eq!(r.code, 250, "{r:?}");
    let id = queued_id(&r.wire());
    for user in ["u@example.com", "v@example.com"] {
        let got = dc.fetch(user);
        assert_eq!(got.len(), 1, "{user}");
        assert!(
            delivered(&got[0], &msg, &id),
            "{user}: {}",
            String::from_utf8_lossy(&got[0])
        );
    }

    // An unknown user: Dovecot's refusal at RCPT, the others delivered.
    assert_eq!(c.cmd("MAIL FROM:<a@example.net>").code, 250);
    let r = c.cmd("RCPT TO:<nobody@example.com>");
    assert_eq!(r.code, 550, "{r:?}");
    assert!(r.text().starts_with("5.1.1 "), "{r:?}");
    assert_eq!(c.cmd("RCPT TO:<u@example.com>").code, 250);
    assert_eq!(c.cmd("DATA").code, 354);
    c.send(b"Subject: two\r\n\r\nsecond\r\n.\r\n");
    assert_eq!(c.reply().code, 250);
    assert_eq!(dc.fetch("u@example.com").len(), 2);
    assert!(dc.fetch("v@example.com").len() == 1);

    // BDAT, the text not ending with CRLF: delivered with one added.
    assert_eq!(c.cmd("MAIL FROM:<a@example.net>").code, 250);
    assert_eq!(c.cmd("RCPT TO:<v@example.com>").code, 250);
    c.send(b"BDAT 22 LAST\r\nSubject: bdat\r\n\r\n.tail");
    assert_eq!(c.reply().code, 250);
    let got = dc.fetch("v@example.com");
    assert!(
        got[1].ends_with(b"Subject: bdat\r\n\r\n.tail\r\n"),
        "{:?}",
        String::from_utf8_lossy(&got[1])
    );

    // 25 MiB, streamed through.
    let before = peak_rss_kib(d.pid());
    let body = big_body(25);
    let r = c.send_mail("a@example.net", &["u@example.com"], &body);
    assert_eq!(r.code, 250, "{r:?}");
    let grown = peak_rss_kib(d.pid()).saturating_sub(before);
    assert!(
        grown < 8 * 1024,
        "the server grew by {grown} KiB for a 25 MiB message"
    );
    assert!(dc.fetch("u@example.com")[2].ends_with(&body));

    // Dovecot stops: 451 at MAIL; back: delivered again.
    dc.stop();
    let r = c.cmd("MAIL FROM:<a@example.net>");
    assert_eq!(r.code, 451, "{r:?}");
    dc.restart();
    assert_eq!(
        c.send_mail("a@example.net", &["u@example.com"], b"back\r\n")
            .code,
        250
    );
    // Stopped in the middle of a message's text: 451, and nothing half-delivered.
    assert_eq!(c.cmd("MAIL FROM:<a@example.net>").code, 250);
    assert_eq!(c.cmd("RCPT TO:<u@example.com>").code, 250);
    assert_eq!(c.cmd("DATA").code, 354);
    c.send(b"Subject: cut\r\n\r\nfirst half\r\n");
    dc.stop();
    c.send(b"second half\r\n.\r\n");
    let r = c.reply();
    assert!(r.code == 451, "{r:?}");
    assert_eq!(c.cmd("NOOP").code, 250, "the session goes on");
    dc.restart();
    let got = dc.fetch("u@example.com");
    assert_eq!(got.len(), 4, "the cut message was not delivered");
    assert!(
        got.iter()
            .all(|m| !String::from_utf8_lossy(m).contains("first half"))
    );
    drop(c);

    // SIGKILL under load: every acknowledged message is in the mailbox.
    let acked = acknowledged_until_killed(&mut d, 40);
    let got = dc.fetch("u@example.com");
    for id in &acked {
        assert!(
            got.iter()
                .any(|m| String::from_utf8_lossy(m).contains(&format!(" id {id}"))),
            "acknowledged {id} is missing"
        );
    }
    drop(d);

    // The same over the Unix socket.
    let socket = format!("unix:{}", dc.lmtp_socket().display());
    let d = Daemon::start(bin, |s| {
        s.set("GSMTP_STORAGE", "lmtp")
            .set("GSMTP_LMTP_ADDR", &socket);
    });
    let mut c = session(&d);
    let r = c.send_mail("a@example.net", &["v@example.com"], b"unix\r\n");
    assert_eq!(r.code, 250, "{r:?}");
    assert!(
        dc.fetch("v@example.com")
            .last()
            .is_some_and(|m| m.ends_with(b"unix\r\n"))
    );
}

/// `dovecot-lda` as the pipe command, one recipient per transaction: delivered into
/// Dovecot's store and fetched over IMAP; an unknown user gets `550 5.1.1` (its exit
/// status 67).
pub fn dovecot_lda_pipe(bin: &str) {
    let dir = TempDir::new("lda");
    let dc = Dovecot::start(&dir, &["u@example.com"], None, MAIL_OWNER);
    let command = format!(
        "/usr/lib/dovecot/dovecot-lda -c {} -d ${{recipient}} -f ${{sender}}",
        dc.config.display()
    );
    let d = Daemon::start(bin, |s| {
        s.set("GSMTP_STORAGE", "pipe")
            .set("GSMTP_PIPE_COMMAND", &command)
            .set("GSMTP_PIPE_PER_RECIPIENT", "Y");
    });
    let mut c = session(&d);
    let msg = message("lda");
    let r = c.send_mail("a@example.net", &["u@example.com"], &msg);
    assert_eq!(r.code, 250, "{r:?} {}", dc.log());
    let id = queued_id(&r.wire());
    let got = dc.fetch("u@example.com");
    assert_eq!(got.len(), 1);
    assert!(
        delivered(&got[0], &msg, &id),
        "{}",
        String::from_utf8_lossy(&got[0])
    );
    let r = c.send_mail("a@example.net", &["nobody@example.com"], b"x\r\n");
    assert_eq!(r.code, 550, "{r:?}");
    assert!(r.text().starts_with("5.1.1 "), "{r:?}");
    let _ = fs::read_dir(dc.dir());
}
