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

/// A private Dovecot with users `u@` and `v@example.com` (in its own folder), and our
/// server delivering to its LMTP port (5 s timeout, room for 25 MiB). Fields drop in
/// order: the server stops first.
pub(super) struct LmtpSetup {
    pub(super) d: Daemon,
    pub(super) dc: Dovecot,
    _dir: TempDir,
}

impl LmtpSetup {
    fn start(bin: &str) -> Self {
        Self::start_with(bin, |_| {})
    }

    /// [`LmtpSetup::start`] with `tweak` applied to the server's settings last.
    pub(super) fn start_with(bin: &str, tweak: impl FnOnce(&mut super::Settings)) -> Self {
        let dir = TempDir::new("lmtp");
        let dc = Dovecot::start(&dir, &["u@example.com", "v@example.com"], None, MAIL_OWNER);
        let lmtp = dc.lmtp.to_string();
        let d = Daemon::start(bin, |s| {
            s.set("GSMTP_STORAGE", "lmtp")
                .set("GSMTP_LMTP_ADDR", &lmtp)
                .set("GSMTP_LMTP_TIMEOUT", "5")
                .set("GSMTP_MAX_SIZE", "30000000");
            tweak(s);
        });
        Self { d, dc, _dir: dir }
    }
}

/// LMTP into Dovecot: a message for two users lands in both mailboxes, fetched over IMAP
/// byte for byte after the trace headers.
pub fn lmtp_to_dovecot_two_users(bin: &str) {
    let h = LmtpSetup::start(bin);
    let (d, dc) = (&h.d, &h.dc);
    let mut c = session(d);
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
}

/// An unknown user: Dovecot's own `550 5.1.1` at RCPT, the other recipient delivered.
pub fn lmtp_unknown_user_refused_at_rcpt(bin: &str) {
    let h = LmtpSetup::start(bin);
    let (d, dc) = (&h.d, &h.dc);
    let mut c = session(d);
    assert_eq!(c.cmd("MAIL FROM:<a@example.net>").code, 250);
    let r = c.cmd("RCPT TO:<nobody@example.com>");
    assert_eq!(r.code, 550, "{r:?}");
    assert!(r.text().starts_with("5.1.1 "), "{r:?}");
    assert_eq!(c.cmd("RCPT TO:<u@example.com>").code, 250);
    assert_eq!(c.cmd("DATA").code, 354);
    c.send(b"Subject: two\r\n\r\nsecond\r\n.\r\n");
    assert_eq!(c.reply().code, 250);
    assert_eq!(dc.fetch("u@example.com").len(), 1);
    assert!(dc.fetch("v@example.com").is_empty());
}

/// BDAT, the text not ending with CRLF: delivered whole, with one added.
pub fn lmtp_bdat_without_a_final_line_end(bin: &str) {
    let h = LmtpSetup::start(bin);
    let (d, dc) = (&h.d, &h.dc);
    let mut c = session(d);
    assert_eq!(c.cmd("MAIL FROM:<a@example.net>").code, 250);
    assert_eq!(c.cmd("RCPT TO:<v@example.com>").code, 250);
    c.send(b"BDAT 22 LAST\r\nSubject: bdat\r\n\r\n.tail");
    assert_eq!(c.reply().code, 250);
    let got = dc.fetch("v@example.com");
    assert_eq!(got.len(), 1);
    assert!(
        got[0].ends_with(b"Subject: bdat\r\n\r\n.tail\r\n"),
        "{:?}",
        String::from_utf8_lossy(&got[0])
    );
}

/// 25 MiB, streamed through to Dovecot, with the server's memory growing by far less
/// than the message.
pub fn lmtp_big_message_in_bounded_memory(bin: &str) {
    let h = LmtpSetup::start(bin);
    let (d, dc) = (&h.d, &h.dc);
    let mut c = session(d);
    // One small message first, so that the measurement sees what a big message adds.
    let r = c.send_mail("a@example.net", &["u@example.com"], &message("warm-up"));
    assert_eq!(r.code, 250, "{r:?}");
    let before = peak_rss_kib(d.pid());
    let body = big_body(25);
    let r = c.send_mail("a@example.net", &["u@example.com"], &body);
    assert_eq!(r.code, 250, "{r:?}");
    let grown = peak_rss_kib(d.pid()).saturating_sub(before);
    assert!(
        grown < 8 * 1024,
        "the server grew by {grown} KiB for a 25 MiB message"
    );
    assert!(dc.fetch("u@example.com")[1].ends_with(&body));
}

/// Dovecot stopped: `451` at MAIL, the server stays up; once it is back, delivered again.
pub fn lmtp_dovecot_stopped_at_mail_and_back(bin: &str) {
    let mut h = LmtpSetup::start(bin);
    let (d, dc) = (&h.d, &mut h.dc);
    let mut c = session(d);
    dc.stop();
    let r = c.cmd("MAIL FROM:<a@example.net>");
    assert_eq!(r.code, 451, "{r:?}");
    dc.restart();
    assert_eq!(
        c.send_mail("a@example.net", &["u@example.com"], b"back\r\n")
            .code,
        250
    );
}

/// Dovecot stopped in the middle of a message's text: `451`, the session goes on, and
/// nothing half-delivered.
pub fn lmtp_dovecot_stopped_mid_text(bin: &str) {
    let mut h = LmtpSetup::start(bin);
    let (d, dc) = (&h.d, &mut h.dc);
    let mut c = session(d);
    assert_eq!(
        c.send_mail("a@example.net", &["u@example.com"], b"before\r\n")
            .code,
        250
    );
    let before = dc.fetch("u@example.com").len();
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
    assert_eq!(got.len(), before, "the cut message was not delivered");
    assert!(
        got.iter()
            .all(|m| !String::from_utf8_lossy(m).contains("first half"))
    );
}

/// SIGKILL under load: every acknowledged message is in the mailbox.
pub fn lmtp_acknowledged_survive_sigkill(bin: &str) {
    let mut h = LmtpSetup::start(bin);
    let (d, dc) = (&mut h.d, &h.dc);
    let acked = acknowledged_until_killed(d, 40);
    let got = dc.fetch("u@example.com");
    for id in &acked {
        assert!(
            got.iter()
                .any(|m| String::from_utf8_lossy(m).contains(&format!(" id {id}"))),
            "acknowledged {id} is missing"
        );
    }
}

/// LMTP over Dovecot's Unix socket (`GSMTP_LMTP_ADDR=unix:<path>`).
pub fn lmtp_over_a_unix_socket(bin: &str) {
    let dir = TempDir::new("lmtp");
    let dc = Dovecot::start(&dir, &["u@example.com", "v@example.com"], None, MAIL_OWNER);
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
