//! Parity: the same scripted sessions give byte-identical transcripts and stored files on
//! both frontends, once timestamps and ids are masked.

use testsuite::transcript::{self, vectors};
use testsuite::{Fixture, Running, Start, split_trace};

fn smol(cfg: testsuite::Config) -> Result<Box<dyn Running>, testsuite::ConfigError> {
    frontend_smol::start(cfg).map(|s| Box::new(s) as Box<dyn Running>)
}

fn async_std(cfg: testsuite::Config) -> Result<Box<dyn Running>, testsuite::ConfigError> {
    frontend_async_std::start(cfg).map(|s| Box::new(s) as Box<dyn Running>)
}

/// Replaces what differs from run to run: dates, connection numbers and queue ids.
fn mask(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    for word in line.split(' ') {
        if !out.is_empty() {
            out.push(' ');
        }
        let hex_id = word.len() == 32 && word.bytes().all(|b| b.is_ascii_hexdigit());
        if hex_id {
            out.push_str("<id>");
        } else if word.starts_with('#')
            && word[1..].bytes().all(|b| b.is_ascii_digit())
            && word.len() > 1
        {
            out.push_str("#<n>");
        } else {
            out.push_str(word);
        }
    }
    // The date at the end of greetings and trace headers: "Ddd, DD Mmm YYYY HH:MM:SS +0000".
    if let Some(at) = out.rfind(" +0000")
        && at >= 25
        && out.is_char_boundary(at - 25)
        && out.as_bytes()[at - 22] == b','
    {
        out.replace_range(at - 25..at + 6, "<date>");
    }
    out
}

/// Runs `script` against a fresh server of `start` and returns the masked replies and the
/// masked stored files.
fn record(start: Start, script: &str) -> (Vec<String>, Vec<String>) {
    let fx = Fixture::start(start, |_| {});
    let mut c = fx.connect();
    transcript::run(&mut c, script);
    let replies: Vec<String> = c.log.iter().map(|l| mask(l)).collect();
    drop(c);
    fx.wait_idle();
    let mut files = Vec::new();
    for name in fx.all_files() {
        let folder = name.rsplitn(3, '/').nth(2).unwrap_or_default().to_string();
        let (trace, body) =
            split_trace(&std::fs::read(fx.maildir().join(&name)).expect("read a stored file"));
        let trace: Vec<String> = trace.lines().map(mask).collect();
        files.push(format!(
            "{folder}\n{}\n{}",
            trace.join("\n"),
            String::from_utf8_lossy(&body)
        ));
    }
    files.sort();
    (replies, files)
}

#[test]
fn mask_hides_only_what_varies() {
    assert_eq!(
        mask("220 mx.test SMTP Guerrilla-SMTPd #12 (1) Tue, 24 Nov 2026 20:42:38 +0000"),
        "220 mx.test SMTP Guerrilla-SMTPd #<n> (1) <date>"
    );
    assert_eq!(
        mask("250 2.0.0 OK : queued as 18eb15e70bcbec580000000001000000"),
        "250 2.0.0 OK : queued as <id>"
    );
    assert_eq!(mask("\tTue, 24 Nov 2026 20:42:38 +0000"), "\t<date>");
}

#[test]
fn transcripts_are_byte_identical() {
    let scripts = [
        vectors::rfc5321_4_1_1_1_ehlo,
        vectors::rfc5321_4_1_1_commands,
        vectors::rfc5321_4_1_4_sequence,
        vectors::rfc5321_4_1_1_2_syntax,
        vectors::rfc5321_4_5_1_postmaster,
        vectors::rfc5321_3_6_relay_denied,
        vectors::rfc2920_pipelining,
        vectors::rfc3030_bdat,
        vectors::rfc6531_smtputf8,
        vectors::smuggling_lf_dot_lf,
        vectors::bare_lf_command,
        vectors::too_many_errors,
    ];
    for script in scripts {
        let a = record(smol, script);
        let b = record(async_std, script);
        assert_eq!(a, b, "the frontends differ on:\n{script}");
        assert!(!a.0.is_empty());
    }
}
