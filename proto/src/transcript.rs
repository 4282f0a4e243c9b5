//! Transcripts: SMTP sessions written as scripts, in the manner of imap-codec's
//! `tests/trace.rs`. One dialect, parsed here into [`Step`]s, run by two runners: over a
//! real socket (`testsuite::transcript::run`, against the binaries' servers) and in
//! memory over a [`Sim`] ([`replay`], in virtual time).
//!
//! | line | meaning |
//! |---|---|
//! | `C: text` | send `text` and CRLF |
//! | `R: text` | send `text` raw, with `\r`, `\n`, `\t`, `\\` and `\xNN` escapes, no CRLF |
//! | `S: text` | the next reply line is `text`; a final `*` matches any rest |
//! | `T:` | the TLS handshake happens now (after `S: 220 2.0.0 Ready to start TLS`) |
//! | `N: ms` | nothing arrives for `ms` milliseconds |
//! | `E:` | the server closes the connection |
//!
//! Consecutive `C:` and `R:` lines go out in one write, which is how pipelining and
//! injection tests are written. The space after the colon is optional (`C:` alone sends
//! an empty line). Leading blanks are ignored, so scripts can be indented; a blank line
//! is skipped and `#` starts a comment line.
//!
//! In memory, `T:` checks that the simulated handshake took place (the [`Sim`] does it as
//! soon as the connection asks), and `N:` moves the virtual clock. The in-memory runner
//! is also stricter: before each write, each `T:`, `N:` and `E:` and at the end, every
//! reply that arrived must have been matched by an `S:` line.

use std::fmt;
use std::time::Duration;

use crate::sim::Sim;

/// One step of a transcript.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// The script's line it comes from (the first one for a write), from 1.
    pub line: usize,
    /// What to do or check.
    pub kind: StepKind,
}

/// What a [`Step`] does or checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StepKind {
    /// Consecutive `C:` and `R:` lines: the bytes the client sends in one write.
    Send(Vec<u8>),
    /// `S:`: the next reply line matches this pattern (see [`matches()`]).
    Expect(String),
    /// `T:`: the TLS handshake happens now.
    Tls,
    /// `N:`: nothing arrives for this long.
    Quiet(Duration),
    /// `E:`: the server closes the connection.
    Closed,
}

/// A line the dialect does not know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptError {
    /// The line, from 1.
    pub line: usize,
    /// What is wrong with it.
    pub message: String,
}

impl fmt::Display for ScriptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "transcript line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for ScriptError {}

/// Parses a script into its steps (see the module docs for the dialect).
pub fn parse(script: &str) -> Result<Vec<Step>, ScriptError> {
    let mut steps: Vec<Step> = Vec::new();
    for (n, raw) in script.lines().enumerate() {
        let line = n + 1;
        let text = raw.trim_start().trim_end_matches('\r');
        if text.trim().is_empty() || text.starts_with('#') {
            continue;
        }
        let err = |message: String| ScriptError { line, message };
        let (tag, rest) = text
            .split_once(':')
            .ok_or_else(|| err(format!("no tag: {text:?}")))?;
        let arg = rest.strip_prefix(' ').unwrap_or(rest);
        let bytes = match tag {
            "C" => Some([arg.as_bytes(), b"\r\n"].concat()),
            "R" => Some(unescape(arg).map_err(err)?),
            _ => None,
        };
        if let Some(bytes) = bytes {
            // Consecutive C: and R: lines are one write.
            if let Some(Step {
                kind: StepKind::Send(pending),
                ..
            }) = steps.last_mut()
            {
                pending.extend_from_slice(&bytes);
            } else {
                steps.push(Step {
                    line,
                    kind: StepKind::Send(bytes),
                });
            }
            continue;
        }
        let kind = match tag {
            "S" => StepKind::Expect(arg.to_string()),
            "T" => StepKind::Tls,
            "N" => StepKind::Quiet(Duration::from_millis(
                arg.trim()
                    .parse()
                    .map_err(|_| err("N: takes milliseconds".into()))?,
            )),
            "E" => StepKind::Closed,
            _ => return Err(err(format!("unknown tag {tag:?}"))),
        };
        steps.push(Step { line, kind });
    }
    Ok(steps)
}

/// Unescapes the text of an `R:` line: `\r`, `\n`, `\t`, `\\` and `\xNN`.
pub fn unescape(s: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' || i + 1 == b.len() {
            out.push(b[i]);
            i += 1;
            continue;
        }
        match b[i + 1] {
            b'r' => out.push(b'\r'),
            b'n' => out.push(b'\n'),
            b't' => out.push(b'\t'),
            b'\\' => out.push(b'\\'),
            b'x' => {
                let hex = b
                    .get(i + 2..i + 4)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or("two hex digits must follow \\x")?;
                out.push(hex);
                i += 2;
            }
            other => return Err(format!("unknown escape \\{}", other as char)),
        }
        i += 2;
    }
    Ok(out)
}

/// Whether a reply line matches an `S:` pattern: equal, or, when the pattern ends with
/// `*`, starting with what comes before it.
pub fn matches(pattern: &str, line: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => line.starts_with(prefix),
        None => line == pattern,
    }
}

/// How [`replay`] hands each write to the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chunks {
    /// Each write is one read.
    Whole,
    /// Each write is split into reads of random lengths (from one octet up), drawn from
    /// this seed: the same seed gives the same reads. Panic messages name the seed.
    ///
    /// A write followed by `T:` is split only up to the end of its `STARTTLS` line: what
    /// comes after that line arrives in the same read as the line's end, as one write
    /// over loopback does. (Split further, those octets would reach a real server after
    /// its `220`, as the start of the handshake; the simulator has no TLS layer to feed
    /// them to.) Without a `STARTTLS` line, such a write is one read.
    Random(u64),
}

/// Runs `script` against `sim`, a session whose greeting is not read yet, and panics
/// with the line number (and the seed, for [`Chunks::Random`]) at the first mismatch.
pub fn replay(sim: &mut Sim, script: &str, chunks: Chunks) {
    let steps = parse(script).unwrap_or_else(|e| panic!("{e}"));
    let (mut rng, seed) = match chunks {
        Chunks::Whole => (None, String::new()),
        Chunks::Random(seed) => (Some(SplitMix(seed)), format!(" (chunk seed {seed})")),
    };
    let mut handshakes = sim.handshakes;
    for (i, step) in steps.iter().enumerate() {
        let at = format!("transcript line {}{seed}", step.line);
        if !matches!(step.kind, StepKind::Expect(_)) {
            all_read(sim, &at);
        }
        match &step.kind {
            StepKind::Send(bytes) => {
                let Some(rng) = rng.as_mut() else {
                    sim.send(bytes);
                    continue;
                };
                let handshake_follows = steps[i + 1..]
                    .iter()
                    .take_while(|s| !matches!(s.kind, StepKind::Send(_)))
                    .any(|s| s.kind == StepKind::Tls);
                let last_cut = if handshake_follows {
                    starttls_line_end(bytes).map_or(0, |end| end - 1)
                } else {
                    bytes.len().saturating_sub(1)
                };
                let mut pos = 0;
                loop {
                    let cut = pos + rng.chunk_len();
                    if cut > last_cut {
                        break;
                    }
                    sim.send(&bytes[pos..cut]);
                    pos = cut;
                }
                sim.send(&bytes[pos..]);
            }
            StepKind::Expect(pattern) => {
                let Some(got) = take_line(sim) else {
                    let why = if sim.closed.is_some() {
                        "the connection closed"
                    } else {
                        "no reply (the connection waits for input)"
                    };
                    panic!("{at}: {why}, expected {pattern:?}");
                };
                assert!(
                    matches(pattern, &got),
                    "{at}: got {got:?}, expected {pattern:?}"
                );
            }
            StepKind::Tls => {
                handshakes += 1;
                assert_eq!(sim.handshakes, handshakes, "{at}: no TLS handshake");
            }
            StepKind::Quiet(wait) => {
                sim.advance(*wait);
                let out = String::from_utf8_lossy(&sim.out);
                assert!(out.is_empty(), "{at}: something arrived: {out:?}");
                assert!(sim.closed.is_none(), "{at}: the connection closed");
            }
            StepKind::Closed => {
                assert!(sim.closed.is_some(), "{at}: the connection is still open");
            }
        }
    }
    all_read(sim, &format!("the end of the transcript{seed}"));
}

/// Panics unless every reply that arrived was read.
fn all_read(sim: &Sim, at: &str) {
    assert!(
        sim.out.is_empty(),
        "{at}: replies no S: line expected: {:?}",
        String::from_utf8_lossy(&sim.out)
    );
}

/// Takes the next whole reply line, without its CRLF, from the sim's output.
fn take_line(sim: &mut Sim) -> Option<String> {
    let end = sim.out.windows(2).position(|w| w == b"\r\n")?;
    let line = String::from_utf8_lossy(&sim.out[..end]).into_owned();
    sim.out.drain(..end + 2);
    Some(line)
}

/// Where the last `STARTTLS` command line in `bytes` ends (after its LF).
fn starttls_line_end(bytes: &[u8]) -> Option<usize> {
    let mut start = 0;
    let mut found = None;
    for (i, _) in bytes.iter().enumerate().filter(|(_, b)| **b == b'\n') {
        let line = &bytes[start..i];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.eq_ignore_ascii_case(b"STARTTLS") {
            found = Some(i + 1);
        }
        start = i + 1;
    }
    found
}

/// SplitMix64: small, seedable, good enough to draw read lengths.
#[derive(Debug)]
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A read length: often one or a few octets (to cut CR from LF and commands in two),
    /// sometimes a longer run.
    fn chunk_len(&mut self) -> usize {
        const SCALES: [u64; 5] = [1, 3, 8, 40, 600];
        let scale = SCALES[(self.next() % SCALES.len() as u64) as usize];
        1 + (self.next() % scale) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        assert_eq!(unescape(r"a\r\n\x00\\b").unwrap(), b"a\r\n\0\\b");
        assert_eq!(unescape(r"\xfF\t").unwrap(), b"\xff\t");
        assert!(unescape(r"\q").is_err());
        assert!(unescape(r"\x4").is_err());
        assert!(unescape(r"\xzz").is_err());
        assert_eq!(unescape("end\\").unwrap(), b"end\\");
    }

    #[test]
    fn writes_merge_and_tags_parse() {
        let steps = parse(
            "# a comment\n\
             S: 220 *\n\
             \x20   C: EHLO x\n\
             C:\n\
             R: a\\r\\n\n\
             S:250 ok\n\
             T:\n\
             N: 300\n\
             \n\
             E:\n",
        )
        .unwrap();
        let kinds: Vec<StepKind> = steps.iter().map(|s| s.kind.clone()).collect();
        assert_eq!(
            kinds,
            [
                StepKind::Expect("220 *".into()),
                StepKind::Send(b"EHLO x\r\n\r\na\r\n".to_vec()),
                StepKind::Expect("250 ok".into()),
                StepKind::Tls,
                StepKind::Quiet(Duration::from_millis(300)),
                StepKind::Closed,
            ]
        );
        let lines: Vec<usize> = steps.iter().map(|s| s.line).collect();
        assert_eq!(lines, [2, 3, 6, 7, 8, 10]);
    }

    #[test]
    fn bad_lines_name_their_number() {
        let e = parse("S: 220 *\nX: what\n").unwrap_err();
        assert_eq!(e.to_string(), "transcript line 2: unknown tag \"X\"");
        assert_eq!(parse("no tag here").unwrap_err().line, 1);
        assert_eq!(parse("\n\nN: soon").unwrap_err().line, 3);
        assert_eq!(parse("R: \\q").unwrap_err().line, 1);
    }

    #[test]
    fn patterns() {
        assert!(matches(
            "250 2.0.0 OK : queued as *",
            "250 2.0.0 OK : queued as 12ab"
        ));
        assert!(matches("250 OK", "250 OK"));
        assert!(!matches("250 OK", "250 OK "));
        assert!(!matches("250-*", "250 HELP"));
    }

    #[test]
    fn starttls_line_is_found() {
        assert_eq!(starttls_line_end(b"STARTTLS\r\nRSET\r\n"), Some(10));
        assert_eq!(starttls_line_end(b"EHLO x\r\nstarttls\nX"), Some(17));
        assert_eq!(starttls_line_end(b"STARTTLS now\r\n"), None);
    }

    #[test]
    fn chunk_lengths_are_seeded_and_varied() {
        let draw = |seed| {
            let mut r = SplitMix(seed);
            (0..200).map(|_| r.chunk_len()).collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
        let lens = draw(1);
        assert!(lens.contains(&1) && lens.iter().any(|&n| n > 40));
    }

    fn tls_sim() -> Sim {
        Sim::new(crate::Config {
            tls_cert: Some("c".into()),
            tls_key: Some("k".into()),
            ..crate::Config::default()
        })
    }

    /// The panic message of `replay`, if it panics.
    fn failure(script: &str, chunks: Chunks) -> Option<String> {
        std::panic::catch_unwind(|| replay(&mut tls_sim(), script, chunks))
            .err()
            .map(|e| match e.downcast::<String>() {
                Ok(s) => *s,
                Err(e) => e.downcast_ref::<&str>().unwrap_or(&"?").to_string(),
            })
    }

    const INJECTION: &str = "S: 220 *
        C: EHLO x
        S: 250-*
        S: 250-*
        S: 250-*
        S: 250-*
        S: 250-*
        S: 250-*
        S: 250-*
        S: 250-STARTTLS
        S: 250 HELP
        C: STARTTLS
        C: RSET
        C: MAIL FROM:<evil@x>
        S: 220 2.0.0 Ready to start TLS
        T:
        N: 300
        C: MAIL FROM:<a@b>
        S: 503 5.5.1 Error: send HELO/EHLO first
        C: QUIT
        S: 221 2.0.0 Bye
        E:";

    #[test]
    fn replay_in_random_reads() {
        assert_eq!(failure(INJECTION, Chunks::Whole), None);
        for seed in 0..64 {
            assert_eq!(failure(INJECTION, Chunks::Random(seed)), None, "{seed}");
        }
    }

    #[test]
    fn replay_names_what_differs() {
        let fails = |script: &str, chunks, want: &str| {
            let got = failure(script, chunks).expect("a failure");
            assert!(got.contains(want), "{got:?} lacks {want:?}");
        };
        fails(
            "S: 220 *\nC: NOOP\nS: 250 2.0.0 OK\nS: 250 *",
            Chunks::Whole,
            "transcript line 4: no reply (the connection waits for input), expected \"250 *\"",
        );
        fails(
            "S: 220 *\nC: NOOP\nC: NOOP\nS: 250 2.0.0 OK",
            Chunks::Random(9),
            "the end of the transcript (chunk seed 9): replies no S: line expected: \"250 2.0.0 OK\\r\\n\"",
        );
        fails(
            "S: 220 *\nC: NOOP\nC: RSET\nS: 250 2.0.0 OK\nC: QUIT\nS: 221 *",
            Chunks::Whole,
            "transcript line 5: replies no S: line expected",
        );
        fails(
            "S: 220 *\nC: HELP\nS: 250 *",
            Chunks::Random(3),
            "transcript line 3 (chunk seed 3): got \"214 2.0.0 ",
        );
        fails(
            "S: 220 *\nC: STARTTLS\nS: 220 *\nT:\nT:",
            Chunks::Whole,
            "transcript line 5: no TLS handshake",
        );
        fails(
            "S: 220 *\nC: NOOP\nS: 250 *\nE:",
            Chunks::Whole,
            "transcript line 4: the connection is still open",
        );
        fails(
            "S: 220 *\nC: QUIT\nS: 221 *\nS: 250 *",
            Chunks::Whole,
            "transcript line 4: the connection closed, expected",
        );
        fails(
            "S: 220 *\nT:",
            Chunks::Whole,
            "transcript line 2: no TLS handshake",
        );
    }
}
