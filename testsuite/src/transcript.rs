//! Transcripts over a real socket: SMTP sessions written as `C:`/`S:` scripts in the
//! dialect of [`proto::transcript`] (documented there), run against a server with a
//! [`Client`]. The same scripts run in memory through [`proto::transcript::replay`].

use proto::transcript::{StepKind, matches, parse};

use crate::Client;

/// Unescapes an `R:` line (see [`proto::transcript::unescape`]); panics on a bad escape.
pub fn unescape(s: &str) -> Vec<u8> {
    proto::transcript::unescape(s).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs `script` over `client`, which is connected and has not read the greeting.
/// Panics with the line number at the first mismatch.
pub fn run(client: &mut Client, script: &str) {
    let steps = parse(script).unwrap_or_else(|e| panic!("{e}"));
    for step in steps {
        let n = step.line;
        match step.kind {
            StepKind::Send(bytes) => client.send(&bytes),
            StepKind::Expect(pattern) => {
                let got = client
                    .read_line()
                    .unwrap_or_else(|| panic!("line {n}: closed, expected {pattern:?}"));
                assert!(
                    matches(&pattern, &got),
                    "line {n}: got {got:?}, expected {pattern:?}"
                );
            }
            StepKind::Tls => client
                .upgrade()
                .unwrap_or_else(|e| panic!("line {n}: TLS handshake failed: {e}")),
            StepKind::Quiet(wait) => {
                assert!(client.silent_for(wait), "line {n}: something arrived")
            }
            StepKind::Closed => {
                assert!(client.is_closed(), "line {n}: the connection is still open");
            }
        }
    }
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
