//! Transcripts: SMTP sessions written as `C:`/`S:` scripts, in the manner of
//! imap-codec's `tests/trace.rs`.
//!
//! | line | meaning |
//! |---|---|
//! | `C: text` | send `text` and CRLF |
//! | `R: text` | send `text` raw, with `\r`, `\n`, `\t`, `\\` and `\xNN` escapes, no CRLF |
//! | `S: text` | the next reply line is `text`; a final `*` matches any rest |
//! | `T:` | do the TLS handshake now (after `S: 220 2.0.0 Ready to start TLS`) |
//! | `N: ms` | nothing arrives for `ms` milliseconds |
//! | `E:` | the server closes the connection |
//!
//! Consecutive `C:` and `R:` lines go out in one write, which is how pipelining and
//! injection tests are written. `#` starts a comment line.

use std::time::Duration;

use crate::Client;

/// Unescapes an `R:` line.
pub fn unescape(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            match b[i + 1] {
                b'r' => out.push(b'\r'),
                b'n' => out.push(b'\n'),
                b't' => out.push(b'\t'),
                b'\\' => out.push(b'\\'),
                b'x' if i + 3 < b.len() => {
                    let hex = std::str::from_utf8(&b[i + 2..i + 4]).expect("ASCII hex");
                    out.push(u8::from_str_radix(hex, 16).expect("two hex digits after \\x"));
                    i += 2;
                }
                other => panic!("unknown escape \\{}", other as char),
            }
            i += 2;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// Runs `script` over `client`, which is connected and has not read the greeting.
/// Panics with the line number at the first mismatch.
pub fn run(client: &mut Client, script: &str) {
    let mut pending: Vec<u8> = Vec::new();
    let flush = |client: &mut Client, pending: &mut Vec<u8>| {
        if !pending.is_empty() {
            client.send(pending);
            pending.clear();
        }
    };
    for (n, raw) in script.lines().enumerate() {
        let n = n + 1;
        let line = raw.trim_end_matches('\r');
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let (tag, rest) = line.split_at(
            line.find(':')
                .unwrap_or_else(|| panic!("line {n}: no tag: {line:?}")),
        );
        let arg = rest[1..].strip_prefix(" ").unwrap_or_else(|| &rest[1..]);
        match tag {
            "C" => {
                pending.extend_from_slice(arg.as_bytes());
                pending.extend_from_slice(b"\r\n");
            }
            "R" => pending.extend_from_slice(&unescape(arg)),
            "S" => {
                flush(client, &mut pending);
                let got = client
                    .read_line()
                    .unwrap_or_else(|| panic!("line {n}: closed, expected {arg:?}"));
                let ok = match arg.strip_suffix('*') {
                    Some(prefix) => got.starts_with(prefix),
                    None => got == arg,
                };
                assert!(ok, "line {n}: got {got:?}, expected {arg:?}");
            }
            "T" => {
                flush(client, &mut pending);
                client
                    .upgrade()
                    .unwrap_or_else(|e| panic!("line {n}: TLS handshake failed: {e}"));
            }
            "N" => {
                flush(client, &mut pending);
                let ms: u64 = arg
                    .trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("line {n}: N: takes milliseconds"));
                assert!(
                    client.silent_for(Duration::from_millis(ms)),
                    "line {n}: something arrived"
                );
            }
            "E" => {
                flush(client, &mut pending);
                assert!(client.is_closed(), "line {n}: the connection is still open");
            }
            _ => panic!("line {n}: unknown tag {tag:?}"),
        }
    }
    flush(client, &mut pending);
}

/// The transcripts in `vectors/`, one constant per file, named after the RFC section.
#[allow(non_upper_case_globals)]
pub mod vectors {
    macro_rules! vectors {
        ($($name:ident),* $(,)?) => {
            $(
                #[doc = concat!("`vectors/", stringify!($name), ".smtp`")]
                pub const $name: &str = include_str!(concat!("../vectors/", stringify!($name), ".smtp"));
            )*
            /// Every transcript, with its name.
            pub const ALL: &[(&str, &str)] = &[$((stringify!($name), $name)),*];
        };
    }
    vectors!(
        rfc5321_4_1_1_1_ehlo,
        rfc5321_4_1_1_commands,
        rfc5321_4_1_4_sequence,
        rfc5321_4_1_1_2_syntax,
        rfc5321_4_5_1_postmaster,
        rfc5321_4_5_3_1_command_line_too_long,
        rfc5321_3_6_relay_denied,
        rfc1870_size_declared,
        rfc2920_pipelining,
        rfc3030_bdat,
        rfc3207_starttls,
        rfc3207_starttls_injection,
        rfc6531_smtputf8,
        smuggling_lf_dot_lf,
        bare_lf_command,
        too_many_errors,
    );
}

/// Calls `$m!(name)` for every transcript in [`vectors`].
#[macro_export]
macro_rules! for_each_vector {
    ($m:path) => {
        $m!(rfc5321_4_1_1_1_ehlo);
        $m!(rfc5321_4_1_1_commands);
        $m!(rfc5321_4_1_4_sequence);
        $m!(rfc5321_4_1_1_2_syntax);
        $m!(rfc5321_4_5_1_postmaster);
        $m!(rfc5321_4_5_3_1_command_line_too_long);
        $m!(rfc5321_3_6_relay_denied);
        $m!(rfc1870_size_declared);
        $m!(rfc2920_pipelining);
        $m!(rfc3030_bdat);
        $m!(rfc3207_starttls);
        $m!(rfc3207_starttls_injection);
        $m!(rfc6531_smtputf8);
        $m!(smuggling_lf_dot_lf);
        $m!(bare_lf_command);
        $m!(too_many_errors);
    };
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes() {
        assert_eq!(super::unescape(r"a\r\n\x00\\b"), b"a\r\n\0\\b");
    }
}
