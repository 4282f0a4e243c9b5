//! The content filters against the real binary: a private rspamd over its HTTP protocol
//! (each action's reply and stored headers, the failure policy when it is down or
//! hangs), and milters (rspamd's proxy, opendkim, clamav-milter, and broken ones).
//! Fixtures are in `filters.rs`.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::daemon::{Daemon, Settings, queued_id};
use super::filters::{
    GTUBE, GTUBE_ADD_HEADER, GTUBE_NO_ACTION, GTUBE_REWRITE_SUBJECT, RSPAMD_GREYLIST,
    RSPAMD_SOFT_REJECT, Rspamd, marked_message,
};
use super::verdicts::{Zones, fields};
use crate::{Client, Reply};

/// The client every filter test sends as: a documentation address, named by XCLIENT
/// (rspamd treats loopback clients as local and skips checks for them).
const CLIENT_IP: &str = "192.0.2.25";

/// Sends `text` to `<to>@example.com` from `a@example.net` as [`CLIENT_IP`].
pub(super) fn send_as_client(d: &Daemon, to: &str, text: &[u8]) -> Reply {
    let mut c = Client::connect(d.smtp);
    assert_eq!(c.reply().code, 220);
    c.ehlo("proxy.example");
    let r = c.cmd(&format!(
        "XCLIENT ADDR={CLIENT_IP} NAME=client.example HELO=client.example"
    ));
    assert_eq!(r.code, 220, "{r:?}");
    let to = format!("{to}@example.com");
    c.send_mail("a@example.net", &[&to], text)
}

/// Our server asking `rspamd`, trusting loopback for XCLIENT.
fn rspamd_daemon(bin: &str, rspamd: &Rspamd, tweak: impl FnOnce(&mut Settings)) -> Daemon {
    let url = format!("http://{}", rspamd.http);
    Daemon::start(bin, |s| {
        s.set("GSMTP_RSPAMD_URL", &url)
            .set("GSMTP_XCLIENT_HOSTS", "127.0.0.1");
        tweak(s);
    })
}

/// A marked message that also carries a sender's forged spam fields.
fn forged(marker: &str) -> Vec<u8> {
    let text = marked_message(marker);
    [
        b"X-Spam: No\r\nX-Spam-Status: No, score=-100\r\n".to_vec(),
        text,
    ]
    .concat()
}

/// Each of rspamd's actions gives its reply, and what is stored carries the verdict:
/// `reject` is `550 5.7.1` with rspamd's text and nothing is stored; `soft reject` is
/// `451 4.7.1`; `add header` adds `X-Spam: Yes`; `rewrite subject` rewrites the subject;
/// `greylist` and `no action` are accepted (greylist is `451 4.7.1` with
/// `GSMTP_GREYLIST=Y`). Every stored message has our `X-Spam-Status` at the top and no
/// longer the sender's forged spam fields; the log line carries `spam=`.
pub fn rspamd_actions_give_their_replies(bin: &str) {
    let z = Zones::start();
    let rspamd = Rspamd::start(z.addr);
    let d = rspamd_daemon(bin, &rspamd, |_| {});
    let r = send_as_client(&d, "reject", &forged(GTUBE));
    assert_eq!(r.wire(), "550 5.7.1 Gtube pattern\r\n", "{}", rspamd.log());
    assert!(d.files("example.com/reject", "new").is_empty());
    d.wait_log(&["refused", "code=550", "spam=fail"]);
    let r = send_as_client(&d, "soft", &forged(RSPAMD_SOFT_REJECT));
    assert_eq!(r.code, 451, "{r:?}");
    assert_eq!(r.lines[0].split(' ').next(), Some("4.7.1"), "{r:?}");
    for (to, marker, spam) in [
        ("add", GTUBE_ADD_HEADER, true),
        ("rewrite", GTUBE_REWRITE_SUBJECT, true),
        ("grey", RSPAMD_GREYLIST, false),
        ("clean", GTUBE_NO_ACTION, false),
    ] {
        let r = send_as_client(&d, to, &forged(marker));
        assert_eq!(r.code, 250, "{to}: {r:?}");
        let stored = d.stored(&format!("example.com/{to}"));
        let text = String::from_utf8_lossy(&stored[0]).into_owned();
        let status = fields(&stored[0], "X-Spam-Status");
        assert_eq!(status.len(), 1, "{to}: ours only:\n{text}");
        let yes_no = if spam { "Yes" } else { "No" };
        assert!(
            status[0].starts_with(&format!("X-Spam-Status: {yes_no}, score=")),
            "{to}: {text}"
        );
        let x_spam = fields(&stored[0], "X-Spam");
        assert_eq!(
            x_spam,
            if spam {
                vec!["X-Spam: Yes".to_string()]
            } else {
                vec![]
            },
            "{to}: the forged one is gone:\n{text}"
        );
        let id = queued_id(&r.wire());
        let line = d.wait_log(&["message queued", &id]);
        assert!(
            line.contains(if spam { "spam=fail" } else { "spam=" }),
            "{line}"
        );
    }
    let subject = fields(&d.stored("example.com/rewrite")[0], "Subject");
    assert!(
        subject[0].contains("SPAM") && subject[0].contains("filter test"),
        "{subject:?}"
    );
    drop(d);
    let d = rspamd_daemon(bin, &rspamd, |s| {
        s.set("GSMTP_GREYLIST", "Y");
    });
    let r = send_as_client(&d, "grey", &forged(RSPAMD_GREYLIST));
    assert_eq!(r.wire(), "451 4.7.1 Error: greylisted, try again later\r\n");
}

/// rspamd down or hanging: `451 4.7.1` by default (`GSMTP_FILTER_ON_ERROR=tempfail`),
/// accepted with the spam result `temperror` under `accept`; never `no action`. While
/// rspamd hangs, another session's replies stay prompt.
pub fn rspamd_down_or_hanging_follows_the_failure_policy(bin: &str) {
    let z = Zones::start();
    let rspamd = Rspamd::start(z.addr);
    let d = rspamd_daemon(bin, &rspamd, |s| {
        s.set("GSMTP_RSPAMD_TIMEOUT", "2");
    });
    let accepting = rspamd_daemon(bin, &rspamd, |s| {
        s.set("GSMTP_RSPAMD_TIMEOUT", "2")
            .set("GSMTP_FILTER_ON_ERROR", "accept");
    });
    assert_eq!(
        send_as_client(&d, "before", &marked_message("hello")).code,
        250
    );

    // Hanging: it accepts connections and never answers.
    rspamd.signal_all(Signal::SIGSTOP);
    let smtp = d.smtp;
    let prober = std::thread::spawn(move || {
        let mut c = Client::connect(smtp);
        assert_eq!(c.reply().code, 220);
        let mut worst = Duration::ZERO;
        let began = Instant::now();
        while began.elapsed() < Duration::from_millis(1500) {
            let t = Instant::now();
            assert_eq!(c.cmd("NOOP").code, 250);
            worst = worst.max(t.elapsed());
        }
        worst
    });
    let began = Instant::now();
    let r = send_as_client(&d, "hung", &marked_message("hello"));
    let took = began.elapsed();
    assert_eq!(
        r.wire(),
        "451 4.7.1 Error: the content filter failed, try again later\r\n"
    );
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(6),
        "{took:?}"
    );
    let worst = prober.join().expect("the prober");
    assert!(worst < Duration::from_millis(300), "a NOOP took {worst:?}");
    d.wait_log(&["filter failed", "filter=rspamd", "no answer within 2 s"]);
    let r = send_as_client(&accepting, "hung", &marked_message("hello"));
    assert_eq!(r.code, 250, "{r:?}");
    let id = queued_id(&r.wire());
    let line = accepting.wait_log(&["message queued", &id]);
    assert!(line.contains("spam=temperror"), "{line}");
    rspamd.signal_all(Signal::SIGCONT);
    assert_eq!(
        send_as_client(&d, "after", &marked_message("hello")).code,
        250
    );

    // Down: nothing listens.
    drop(rspamd);
    let r = send_as_client(&d, "down", &marked_message("hello"));
    assert_eq!(r.code, 451, "{r:?}");
    let r = send_as_client(&accepting, "down", &marked_message("hello"));
    assert_eq!(r.code, 250, "{r:?}");
    let stored = accepting.stored("example.com/down");
    assert!(fields(&stored[0], "X-Spam-Status").is_empty());
}

/// rspamd's own task time-out gives a partial answer (rspamd would say `no action`):
/// that is a failure of the filter, not a verdict.
pub fn rspamd_partial_answer_is_a_failure(bin: &str) {
    let z = Zones::start();
    let rspamd = Rspamd::start(z.addr);
    let raw = rspamd.check(CLIENT_IP, &marked_message(super::filters::RSPAMD_HANG));
    let d = rspamd_daemon(bin, &rspamd, |_| {});
    let r = send_as_client(&d, "hang", &marked_message(super::filters::RSPAMD_HANG));
    assert_eq!(r.code, 451, "{r:?}; rspamd alone answered {raw}");
    d.wait_log(&["filter failed", "partial"]);
}

/// The filters' verdict reaches every rendering: over HTTP (`X-Smtp-Verdict-Spam`,
/// inside the signature, and the JSON envelope's `verdict.spam`), in S3 metadata
/// (`x-amz-meta-verdict-spam`), each stored text with our `X-Spam-Status` at the top.
pub fn filter_verdicts_reach_http_and_s3(bin: &str) {
    let z = Zones::start();
    let rspamd = Rspamd::start(z.addr);
    let url = format!("http://{}", rspamd.http);
    let with_rspamd = |s: &mut Settings| {
        s.set("GSMTP_RSPAMD_URL", &url)
            .set("GSMTP_XCLIENT_HOSTS", "127.0.0.1");
    };
    let h = super::handoff::HttpSetup::start_with(bin, with_rspamd);
    let r = send_as_client(&h.d, "add", &forged(GTUBE_ADD_HEADER));
    assert_eq!(r.code, 250, "{r:?}");
    let id = queued_id(&r.wire());
    let stored = std::fs::read(h.out.path().join(format!("{id}.eml"))).expect("the message");
    assert!(fields(&stored, "X-Spam-Status")[0].starts_with("X-Spam-Status: Yes"));
    let meta = std::fs::read_to_string(h.out.path().join(format!("{id}.json"))).expect("meta");
    let meta: serde_json::Value = serde_json::from_str(&meta).expect("JSON");
    assert_eq!(meta["verified"], true, "the signature covers the verdict");
    let spam = meta["headers"]
        .as_array()
        .and_then(|hs| {
            hs.iter().find(|h| {
                h[0].as_str()
                    .is_some_and(|n| n.eq_ignore_ascii_case("X-Smtp-Verdict-Spam"))
            })
        })
        .and_then(|h| h[1].as_str())
        .unwrap_or_default()
        .to_string();
    assert!(
        spam.starts_with("fail action=\"add header\" score="),
        "{spam}"
    );
    assert_eq!(
        meta["envelope"]["verdict"]["spam"]["summary"], "FAIL",
        "{meta}"
    );
    assert_eq!(meta["envelope"]["verdict"]["spam"]["action"], "add header");
    drop(h);

    let dir = crate::TempDir::new("garage");
    let g = super::garage::Garage::start(&dir, 1);
    let d = super::s3::s3_daemon_with(bin, &g, 0, with_rspamd);
    let r = send_as_client(&d, "clean", &forged(GTUBE_NO_ACTION));
    assert_eq!(r.code, 250, "{r:?}");
    let id = queued_id(&r.wire());
    let (head, body) = g.get(0, &super::s3::key_of(&id)).expect("the object");
    assert!(
        head.contains("x-amz-meta-verdict-spam: pass action=\"no action\" score="),
        "{head}"
    );
    assert!(fields(&body, "X-Spam-Status")[0].starts_with("X-Spam-Status: No"));
}
