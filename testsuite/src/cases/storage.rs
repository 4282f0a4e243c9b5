//! What ends up on disk: byte-exact files, one per recipient folder, nothing in tmp/,
//! and no path outside the Maildir root.

use std::fs;

use proto::config::Storage;

use super::session::queued_id;
use crate::fixture::split_trace;
use crate::{Fixture, Start};

/// A body with every awkward thing a body may hold, CRLF-terminated lines throughout.
fn awkward_body() -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(b"From: a@example.net\r\nSubject: awkward\r\n\r\n");
    b.extend_from_slice(b".leading dot\r\n..two dots\r\n.\r\n\r\n\r\n");
    b.extend_from_slice("8-bit: ünïcödé \u{1F600}\r\n".as_bytes());
    b.extend_from_slice(&[b'x'; 998]);
    b.extend_from_slice(b"\r\n\t tab and spaces  \r\n");
    b.extend((1u8..=255).filter(|c| *c != b'\r' && *c != b'\n'));
    b.extend_from_slice(b"\r\nlast line\r\n");
    b
}

/// The file is the three trace headers and then the body exactly as sent (unstuffed).
pub fn stored_file_is_byte_exact(start: Start) {
    let fx = Fixture::start(start, |_| {});
    let mut c = fx.session();
    let body = awkward_body();
    let r = c.send_mail("a@example.net", &["u@example.com"], &body);
    let id = queued_id(r.text());
    let stored = fx.stored("example.com/u");
    assert_eq!(stored.len(), 1);
    let (trace, rest) = split_trace(&stored[0]);
    assert_eq!(rest, body.as_slice());
    let lines: Vec<&str> = trace.split_terminator("\r\n").collect();
    assert_eq!(lines[0], "Return-Path: <a@example.net>");
    assert_eq!(lines[1], "Delivered-To: u@example.com");
    assert_eq!(
        lines[2],
        "Received: from client.example (unknown [127.0.0.1])"
    );
    assert_eq!(
        lines[3],
        format!("\tby mx.test (Guerrilla-SMTPd) with ESMTP id {id}")
    );
    assert_eq!(lines[4], "\tfor <u@example.com>;");
    assert!(
        lines[5].starts_with('\t') && lines[5].ends_with(" +0000"),
        "{trace}"
    );
    assert_eq!(lines.len(), 6);
}

/// One file per distinct recipient folder, each with its own Delivered-To.
pub fn one_file_per_recipient_folder(start: Start) {
    let fx = Fixture::start(start, |_| {});
    let mut c = fx.session();
    let rcpts = [
        "u@example.com",
        "v@example.com",
        "U@Example.COM",
        "w@mail.example.org",
    ];
    assert_eq!(
        c.send_mail("a@example.net", &rcpts, b"shared body\r\n")
            .code,
        250
    );
    for (folder, addr) in [
        ("example.com/u", "u@example.com"),
        ("example.com/v", "v@example.com"),
        ("mail.example.org/w", "w@mail.example.org"),
    ] {
        let stored = fx.stored(folder);
        assert_eq!(stored.len(), 1, "{folder}: {:?}", fx.all_files());
        let (trace, body) = split_trace(&stored[0]);
        assert!(
            trace.starts_with(&format!(
                "Return-Path: <a@example.net>\r\nDelivered-To: {addr}\r\n"
            )),
            "{trace}"
        );
        assert!(trace.contains(&format!("\tfor <{addr}>;")), "{trace}");
        assert_eq!(body, b"shared body\r\n");
    }
    assert_eq!(fx.all_files().len(), 3, "{:?}", fx.all_files());
}

/// With GM_PRIMARY_MAIL_HOST, every allowed domain shares one mailbox per user.
pub fn primary_mail_host_shares_mailboxes(start: Start) {
    let fx = Fixture::start(start, |c| {
        c.primary_mail_host = Some("mail.example.com".into())
    });
    let mut c = fx.session();
    assert_eq!(
        c.send_mail(
            "a@example.net",
            &["u@example.com", "u@x.example.org"],
            b"x\r\n"
        )
        .code,
        250
    );
    let stored = fx.stored("mail.example.com/u");
    assert_eq!(stored.len(), 1, "{:?}", fx.all_files());
    assert!(
        stored[0].starts_with(
            b"Return-Path: <a@example.net>\r\nX-Original-To: u@example.com\r\n\
              Delivered-To: u@mail.example.com\r\nReceived: "
        ),
        "{}",
        String::from_utf8_lossy(&stored[0])
    );
}

/// `GSMTP_RECIPIENT_DELIMITER=+`: `u+tag@` and `U+other@` are stored in `u`'s mailbox,
/// each copy with its full address in `Delivered-To`; an address that starts with the
/// delimiter keeps its own mailbox.
pub fn recipient_delimiter_shares_the_mailbox(start: Start) {
    let fx = Fixture::start(start, |c| c.recipient_delimiter = Some("+".into()));
    let mut c = fx.session();
    for to in ["u+tag@example.com", "U+other@example.com", "+x@example.com"] {
        assert_eq!(c.send_mail("a@example.net", &[to], b"x\r\n").code, 250);
    }
    let stored = fx.stored("example.com/u");
    assert_eq!(stored.len(), 2, "{:?}", fx.all_files());
    let heads: Vec<String> = stored.iter().map(|m| split_trace(m).0).collect();
    for to in ["u+tag@example.com", "U+other@example.com"] {
        let want = format!("\r\nDelivered-To: {to}\r\n");
        assert!(heads.iter().any(|h| h.contains(&want)), "{to}: {heads:?}");
    }
    assert!(heads.iter().all(|h| !h.contains("X-Original-To")));
    assert_eq!(fx.stored("example.com/+x").len(), 1);
}

/// `GSMTP_MAILDIR_MODE=0660`: files are `0660` and the folders made for them `0770`
/// whatever the umask, so that a mail reader in the server's group may read and move
/// them; by default files are `0600` and folders `0700`.
pub fn maildir_mode_for_a_shared_group(start: Start) {
    use std::os::unix::fs::PermissionsExt;
    let mode =
        |p: &std::path::Path| fs::metadata(p).expect("metadata").permissions().mode() & 0o7777;
    for (setting, file, dir) in [(0o600, 0o600, 0o700), (0o660, 0o660, 0o770)] {
        let fx = Fixture::start(start, |c| c.maildir_mode = setting);
        let mut c = fx.session();
        assert_eq!(
            c.send_mail("a@example.net", &["u@example.com"], b"x\r\n")
                .code,
            250
        );
        let files: Vec<std::path::PathBuf> = fx
            .all_files()
            .iter()
            .map(|f| fx.maildir().join(f))
            .collect();
        assert_eq!(files.len(), 1, "{files:?}");
        assert_eq!(
            mode(&files[0]),
            file,
            "{:o}: {}",
            setting,
            files[0].display()
        );
        let folder = files[0]
            .parent()
            .and_then(std::path::Path::parent)
            .expect("a folder");
        for d in [
            folder.to_path_buf(),
            folder.join("tmp"),
            folder.join("new"),
            folder.join("cur"),
            folder.parent().expect("a domain").to_path_buf(),
        ] {
            assert_eq!(mode(&d), dir, "{:o}: {}", setting, d.display());
        }
    }
}

/// A 5 MB message to two recipients arrives intact in both.
pub fn large_message_streams_to_disk(start: Start) {
    let fx = Fixture::start(start, |_| {});
    let mut c = fx.session();
    let mut body = Vec::with_capacity(5_200_000);
    for i in 0..52_000u32 {
        body.extend_from_slice(format!("{i:08} {}\r\n", "abcdefghij".repeat(9)).as_bytes());
    }
    assert_eq!(
        c.send_mail("a@example.net", &["u@example.com", "v@example.com"], &body)
            .code,
        250
    );
    for folder in ["example.com/u", "example.com/v"] {
        let stored = fx.stored(folder);
        let (_, rest) = split_trace(&stored[0]);
        assert!(
            rest == body.as_slice(),
            "{folder}: {} octets, expected {}",
            rest.len(),
            body.len()
        );
    }
}

/// Accepted, refused and abandoned messages alike leave nothing in any tmp/.
pub fn nothing_left_in_tmp(start: Start) {
    let fx = Fixture::start(start, |c| c.max_size = 200_000);
    let mut c = fx.session();
    assert_eq!(
        c.send_mail("a@example.net", &["u@example.com"], b"small\r\n")
            .code,
        250
    );
    let big = "y".repeat(900) + "\r\n";
    assert_eq!(
        c.send_mail(
            "a@example.net",
            &["u@example.com"],
            big.repeat(150).as_bytes()
        )
        .code,
        250
    );
    assert_eq!(
        c.send_mail(
            "a@example.net",
            &["u@example.com"],
            big.repeat(300).as_bytes()
        )
        .code,
        552
    );
    c.cmd("MAIL FROM:<a@example.net>");
    c.cmd("RCPT TO:<u@example.com>");
    c.cmd("DATA");
    c.send(big.repeat(100).as_bytes());
    drop(c);
    fx.wait_idle();
    assert_eq!(fx.stored("example.com/u").len(), 2);
    assert!(fx.tmp_files().is_empty(), "{:?}", fx.tmp_files());
}

/// GSMTP_STORAGE=discard answers 250 and writes nothing.
pub fn discard_storage_stores_nothing(start: Start) {
    let fx = Fixture::start(start, |c| c.storage = Storage::Discard);
    let mut c = fx.session();
    assert_eq!(
        c.send_mail("a@example.net", &["u@example.com"], b"gone\r\n")
            .code,
        250
    );
    assert!(fx.all_files().is_empty(), "{:?}", fx.all_files());
}

/// A recipient whose folder cannot take mail (something else stands where the domain
/// folder should be) is refused at RCPT with 450 4.2.0, and the session goes on.
pub fn unusable_folder_refuses_its_recipient(start: Start) {
    let fx = Fixture::start(start, |_| {});
    fs::create_dir_all(fx.maildir()).expect("make the root");
    fs::write(fx.maildir().join("example.com"), b"in the way").expect("write a blocking file");
    let mut c = fx.session();
    c.cmd("MAIL FROM:<a@example.net>");
    assert_eq!(
        c.cmd("RCPT TO:<u@example.com>").wire(),
        "450 4.2.0 Error: mailbox unavailable\r\n"
    );
    assert_eq!(c.cmd("RCPT TO:<w@x.example.org>").code, 250);
    c.cmd("DATA");
    c.send(b"x\r\n.\r\n");
    assert_eq!(c.reply().code, 250);
    assert_eq!(c.cmd("NOOP").code, 250, "the session goes on");
    assert_eq!(fx.all_files().len(), 2, "{:?}", fx.all_files());
    assert_eq!(fx.stored("x.example.org/w").len(), 1);
}

/// A store that fails after the recipients were checked (here `new/` gave way to a file)
/// answers 451 4.3.0, leaves nothing in tmp/ or new/, and the session goes on.
pub fn store_failure_gives_451(start: Start) {
    let fx = Fixture::start(start, |_| {});
    let mut c = fx.session();
    c.cmd("MAIL FROM:<a@example.net>");
    assert_eq!(c.cmd("RCPT TO:<u@example.com>").code, 250);
    let new = fx.maildir().join("example.com/u/new");
    fs::remove_dir(&new).expect("remove new/");
    fs::write(&new, b"in the way").expect("write a blocking file");
    assert_eq!(c.cmd("DATA").code, 354);
    c.send(b"x\r\n.\r\n");
    assert_eq!(
        c.reply().wire(),
        "451 4.3.0 Error: queue file write error\r\n"
    );
    assert_eq!(c.cmd("NOOP").code, 250, "the session goes on");
    assert_eq!(fx.all_files(), ["example.com/u/new"]);
}

/// Deleting one of a mailbox's `tmp/`, `new/` or `cur/` while the server runs does not
/// stop its mail: the missing one is made again at the next RCPT.
pub fn mailbox_subfolders_heal(start: Start) {
    let fx = Fixture::start(start, |_| {});
    let mut c = fx.session();
    let folder = fx.maildir().join("example.com/u");
    for (i, sub) in ["new", "tmp", "cur", "new"].iter().enumerate() {
        let body = format!("message {i}\r\n");
        let r = c.send_mail("a@example.net", &["u@example.com"], body.as_bytes());
        assert_eq!(r.code, 250, "before removing {sub}: {r:?}");
        fs::remove_dir_all(folder.join(sub)).expect("remove a subfolder");
    }
    // Removed between RCPT and the end of the message: made again at the rename.
    c.cmd("MAIL FROM:<a@example.net>");
    assert_eq!(c.cmd("RCPT TO:<u@example.com>").code, 250);
    fs::remove_dir_all(folder.join("new")).expect("remove new/");
    assert_eq!(c.cmd("DATA").code, 354);
    c.send(b"last\r\n.\r\n");
    assert_eq!(c.reply().code, 250);
    for sub in ["tmp", "new", "cur"] {
        assert!(folder.join(sub).is_dir(), "{sub} was made again");
    }
    let stored = fx.stored("example.com/u");
    assert!(
        stored.last().is_some_and(|m| m.ends_with(b"last\r\n")),
        "{stored:?}"
    );
    assert!(fx.tmp_files().is_empty());
}

/// Local parts that look like paths land in escaped folders under the root, each its own.
pub fn mailbox_mapping_stays_inside_root(start: Start) {
    let fx = Fixture::start(start, |_| {});
    let tricks = [
        (
            "\"../../escape\"@example.com",
            "example.com/%2E.%2F..%2Fescape",
        ),
        ("\"a/b\"@example.com", "example.com/a%2Fb"),
        ("a/b@example.com", "example.com/a%2Fb"),
        ("\".hidden\"@example.com", "example.com/%2Ehidden"),
        ("\"..\"@example.com", "example.com/%2E."),
        ("\"\"@example.com", "example.com/%"),
        ("%2F@example.com", "example.com/%252f"),
        ("\"sp ace\"@example.com", "example.com/sp%20ace"),
    ];
    let mut c = fx.session();
    c.cmd("MAIL FROM:<a@example.net>");
    for (addr, _) in tricks {
        let r = c.cmd(&format!("RCPT TO:<{addr}>"));
        assert_eq!(r.code, 250, "{addr}: {r:?}");
    }
    c.cmd("DATA");
    c.send(b"x\r\n.\r\n");
    assert_eq!(c.reply().code, 250);
    for (addr, folder) in tricks {
        assert_eq!(
            fx.files(folder, "new").len(),
            1,
            "{addr} -> {folder}: {:?}",
            fx.all_files()
        );
    }
    // The headers name the address as RFC 5321 spells it, quotes and all.
    let quoted = &fx.stored("example.com/sp%20ace")[0];
    let (trace, _) = split_trace(quoted);
    assert!(
        trace.contains("Delivered-To: \"sp ace\"@example.com\r\n")
            && trace.contains("\tfor <\"sp ace\"@example.com>;"),
        "{trace}"
    );
    // "a/b" quoted and unquoted are the same address, so seven folders in all.
    assert_eq!(
        fx.all_files().len(),
        tricks.len() - 1,
        "{:?}",
        fx.all_files()
    );
    let outside: Vec<_> = fs::read_dir(fx.dir())
        .expect("the case directory")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(
        outside,
        ["maildir"],
        "nothing was written next to the Maildir root"
    );
}

/// A mailbox folder removed while the server runs (by a cleanup job, say) is made again.
pub fn mailbox_removed_while_running_is_recreated(start: Start) {
    let fx = Fixture::start(start, |_| {});
    let mut c = fx.session();
    assert_eq!(
        c.send_mail("a@example.net", &["u@example.com"], b"one\r\n")
            .code,
        250
    );
    fs::remove_dir_all(fx.maildir().join("example.com")).expect("remove the folder");
    assert_eq!(
        c.send_mail("a@example.net", &["u@example.com"], b"two\r\n")
            .code,
        250
    );
    let stored = fx.stored("example.com/u");
    assert_eq!(stored.len(), 1);
    assert!(stored[0].ends_with(b"two\r\n"));
}

/// At start, tmp/ files left by a dead process are removed; others are left alone.
pub fn stale_tmp_files_are_cleaned_at_start(start: Start) {
    let fx = Fixture::start(start, |c| {
        let tmp = c.maildir.join("example.com/u/tmp");
        fs::create_dir_all(&tmp).expect("make tmp/");
        // Our naming with a pid that is not running, with pid 1 (alive), and another tool's.
        for name in [
            "1700000000.M1P4194303Q0.mx.test",
            "1700000000.M1P1Q0.mx.test",
            "1700000000.other-tool.host",
        ] {
            fs::write(tmp.join(name), b"partial").expect("write a tmp file");
        }
    });
    let left: Vec<String> = fx
        .tmp_files()
        .iter()
        .map(|f| f.rsplit('/').next().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        left,
        ["1700000000.M1P1Q0.mx.test", "1700000000.other-tool.host"]
    );
}

/// A look-alike address (KELVIN SIGN for K) is its own mailbox, not kelvin's, and its
/// Delivered-To keeps it as received; ASCII case alone does not make a new mailbox, and
/// a Unicode domain shares its folder with its `xn--` form.
pub fn look_alike_addresses_keep_their_own_folders(start: Start) {
    let fx = Fixture::start(start, |c| {
        c.allowed_hosts =
            proto::policy::AllowedHosts::parse("example.com,exämple.org").expect("valid")
    });
    let mut c = fx.session();
    let rcpts = [
        "kelvin@example.com",
        "\u{212A}elvin@example.com",
        "KELVIN@Example.COM",
        "ü@EXÄMPLE.org",
        "ü@xn--exmple-cua.org",
    ];
    assert_eq!(c.cmd("MAIL FROM:<a@example.net> SMTPUTF8").code, 250);
    for r in rcpts {
        assert_eq!(c.cmd(&format!("RCPT TO:<{r}>")).code, 250, "{r}");
    }
    assert_eq!(c.cmd("DATA").code, 354);
    c.send(b"look-alike\r\n.\r\n");
    assert_eq!(c.reply().code, 250);
    let kelvin = fx.stored("example.com/kelvin");
    let sign = fx.stored("example.com/%E2%84%AAelvin");
    let umlaut = fx.stored("xn--exmple-cua.org/%C3%BC");
    assert_eq!(
        (kelvin.len(), sign.len(), umlaut.len()),
        (1, 1, 1),
        "{:?}",
        fx.all_files()
    );
    assert!(
        kelvin[0]
            .starts_with(b"Return-Path: <a@example.net>\r\nDelivered-To: kelvin@example.com\r\n")
    );
    let delivered = "Delivered-To: \u{212A}elvin@example.com\r\n";
    assert!(String::from_utf8_lossy(&sign[0]).contains(delivered));
    assert!(String::from_utf8_lossy(&umlaut[0]).contains("Delivered-To: ü@EXÄMPLE.org\r\n"));
    assert_eq!(fx.all_files().len(), 3, "{:?}", fx.all_files());
}
