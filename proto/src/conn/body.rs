//! The message body decoder: line endings, dot-unstuffing, the end of DATA and the text
//! line limit, over input that arrives in pieces of any size.
//!
//! The one rule that matters most: **a DATA body ends only at the exact octets
//! `<CRLF>.<CRLF>`** (RFC 5321 §4.1.1.4), where the first CRLF may be the one that ended
//! the DATA command. `<LF>.<LF>`, `<LF>.<CRLF>`, `<CR>.<CR>`, `<CRLF>.<LF>` and the other
//! SMTP smuggling variants are message content. A bare LF either ends a line that is
//! stored with CRLF (`normalize`) or marks the message for rejection (`reject`); a bare
//! CR is content or marks it for rejection. Neither can end the body.
//!
//! The decoder never copies: each [`Step`] tells the caller how much of its input to
//! store as it is, or which small edit to make (drop a stuffing dot, write CRLF for a
//! bare LF). BDAT chunks (RFC 3030) use the same decoder without dot-stuffing; the
//! caller bounds the input to the chunk.

use crate::reply::{self, Reply};
use memchr::memchr;

/// What to do with the front of the input handed to [`BodyDecoder::step`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Store `input[..n]` as it is, and consume it.
    Content(usize),
    /// Store `\r\n` in place of the bare LF at `input[0]`, and consume one octet.
    Crlf,
    /// Consume one octet, a stuffing dot, without storing it.
    Skip,
    /// The body ended: consume the three octets `.\r\n`.
    End,
    /// Nothing can be decided until more input arrives; consume nothing.
    NeedMore,
}

impl Step {
    /// How many input octets the step consumes.
    pub(crate) fn consumed(self) -> usize {
        match self {
            Self::Content(n) => n,
            Self::Crlf | Self::Skip => 1,
            Self::End => 3,
            Self::NeedMore => 0,
        }
    }
}

/// A rule the body broke. The body is still read to its end; then it is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BodyError {
    /// A bare LF under the `reject` policy.
    BareLf,
    /// A bare CR under the `reject` policy.
    BareCr,
    /// A text line longer than the limit.
    LineTooLong,
}

impl BodyError {
    /// The order in which broken rules are reported.
    const PRIORITY: [Self; 3] = [Self::BareLf, Self::BareCr, Self::LineTooLong];
}

/// Decoder state that carries over from one piece of input to the next.
#[derive(Clone, Debug)]
pub(crate) struct BodyDecoder {
    /// DATA (dot-stuffed, ends at CRLF.CRLF) rather than BDAT.
    dot_stuffed: bool,
    /// Bare LF and bare CR mark the body as refused, rather than being normalised.
    reject_bare: bool,
    /// The longest text line, CRLF included; 0 for no limit.
    max_line: usize,
    /// The next octet begins a line.
    at_line_start: bool,
    /// The last line ended with an exact CRLF (or is the DATA command line).
    after_crlf: bool,
    /// The last octet consumed was a CR, whose LF may come in the next piece.
    prev_cr: bool,
    /// Octets of the current line consumed so far, a trailing CR included.
    line_len: usize,
    /// Every rule broken so far, as bits of [`BodyError`]: all are found whatever the
    /// reads were, so the reply does not depend on how the input was split.
    errors: u8,
}

impl BodyDecoder {
    /// A decoder for a DATA body (`dot_stuffed`) or a series of BDAT chunks.
    pub(crate) fn new(dot_stuffed: bool, reject_bare: bool, max_line: usize) -> Self {
        Self {
            dot_stuffed,
            reject_bare,
            max_line,
            at_line_start: true,
            after_crlf: true,
            prev_cr: false,
            line_len: 0,
            errors: 0,
        }
    }

    /// The rule the body broke, if any; when it broke several, the first of
    /// [`BodyError::PRIORITY`].
    pub(crate) fn error(&self) -> Option<BodyError> {
        BodyError::PRIORITY
            .into_iter()
            .find(|e| self.errors & (1 << *e as u8) != 0)
    }

    fn fail(&mut self, e: BodyError) {
        self.errors |= 1 << e as u8;
    }

    /// Checks a line (or the part of it seen so far) of `content` octets, its ending not
    /// counted, against the limit, which includes the CRLF (RFC 5321 §4.5.3.1.6).
    fn check_len(&mut self, content: usize) {
        if self.max_line != 0 && content + 2 > self.max_line {
            self.fail(BodyError::LineTooLong);
        }
    }

    /// Under `reject`, flags a CR in `seg` that is not followed by LF. A CR in the last
    /// position is left for the caller, who knows what follows it.
    fn check_bare_cr(&mut self, seg: &[u8]) {
        if self.reject_bare && seg.len() > 1 && memchr(b'\r', &seg[..seg.len() - 1]).is_some() {
            self.fail(BodyError::BareCr);
        }
    }

    fn end_line(&mut self, crlf: bool) {
        self.at_line_start = true;
        self.after_crlf = crlf;
        self.prev_cr = false;
        self.line_len = 0;
    }

    /// Decides what to do with the front of `input`. Call it again with the unconsumed
    /// rest (and more input) until it returns [`Step::End`] or [`Step::NeedMore`].
    pub(crate) fn step(&mut self, input: &[u8]) -> Step {
        let Some(&first) = input.first() else {
            return Step::NeedMore;
        };
        if self.prev_cr && first != b'\n' && self.reject_bare {
            self.fail(BodyError::BareCr);
        }
        if self.at_line_start && self.dot_stuffed && first == b'.' {
            if self.after_crlf {
                match input.get(1..3) {
                    Some(b"\r\n") => {
                        self.end_line(true);
                        return Step::End;
                    }
                    None if b"\r\n".starts_with(&input[1..]) => return Step::NeedMore,
                    _ => {}
                }
            }
            // RFC 5321 §4.5.2: a leading dot is removed.
            self.at_line_start = false;
            return Step::Skip;
        }
        if first == b'\n' && !self.prev_cr {
            self.check_len(self.line_len);
            if self.reject_bare {
                self.fail(BodyError::BareLf);
            }
            self.end_line(false);
            return Step::Crlf;
        }
        let mut pos = 0;
        while pos < input.len() {
            if self.at_line_start {
                if self.dot_stuffed && input[pos] == b'.' {
                    break;
                }
                self.at_line_start = false;
            }
            let rest = &input[pos..];
            let Some(off) = memchr(b'\n', rest) else {
                self.check_bare_cr(rest);
                self.line_len += rest.len();
                self.prev_cr = rest.last() == Some(&b'\r');
                self.check_len(self.line_len - usize::from(self.prev_cr));
                pos = input.len();
                break;
            };
            let lf = pos + off;
            let crlf = if lf > 0 {
                input[lf - 1] == b'\r'
            } else {
                self.prev_cr
            };
            if !crlf {
                // A bare LF: store what precedes it; the next step turns it into CRLF.
                self.check_bare_cr(&rest[..off]);
                self.line_len += off;
                self.prev_cr = false;
                pos = lf;
                break;
            }
            self.check_bare_cr(&rest[..off]);
            self.check_len(self.line_len + off - 1);
            self.end_line(true);
            pos = lf + 1;
        }
        Step::Content(pos)
    }
}

/// A message's text being received: its decoder, its size, and whether it is refused.
#[derive(Debug)]
pub(super) struct Body {
    pub(super) decoder: BodyDecoder,
    /// Octets received so far, as stored (RFC 1870's count), refused or not.
    pub(super) size: u64,
    /// BDAT declared more than the limit.
    pub(super) declared_too_big: bool,
    /// Set once the message is refused: the rest is read (and decoded, so that the reply
    /// does not depend on how the input was split) but not stored.
    pub(super) refused: bool,
}

impl Body {
    /// A text to decode: DATA's (dot-stuffed) or BDAT's, with the bare-newline policy
    /// and the text line limit.
    pub(super) fn new(dot_stuffed: bool, reject_bare: bool, max_line: usize) -> Self {
        Self {
            decoder: BodyDecoder::new(dot_stuffed, reject_bare, max_line),
            size: 0,
            declared_too_big: false,
            refused: false,
        }
    }

    /// Why the message must be refused, if it must: the first of a bare newline, an
    /// overlong line, and the size.
    pub(super) fn refusal(&self, max_size: u64) -> Option<Reply> {
        match self.decoder.error() {
            Some(BodyError::BareLf) => Some(reply::BARE_LF),
            Some(BodyError::BareCr) => Some(reply::BARE_CR),
            Some(BodyError::LineTooLong) => Some(reply::TEXT_LINE_TOO_LONG),
            None if self.declared_too_big || self.size > max_size => Some(reply::TOO_BIG),
            None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the decoder over `pieces` and returns (stored body, end seen, error, rest).
    pub(crate) fn decode(
        d: &mut BodyDecoder,
        pieces: &[&[u8]],
    ) -> (Vec<u8>, bool, Option<BodyError>, Vec<u8>) {
        let mut buf = Vec::new();
        let mut out = Vec::new();
        for piece in pieces {
            buf.extend_from_slice(piece);
            loop {
                let step = d.step(&buf);
                match step {
                    Step::Content(n) => out.extend_from_slice(&buf[..n]),
                    Step::Crlf => out.extend_from_slice(b"\r\n"),
                    Step::Skip => {}
                    Step::End => {
                        let rest = buf[3..].to_vec();
                        return (out, true, d.error(), rest);
                    }
                    Step::NeedMore => break,
                }
                buf.drain(..step.consumed());
            }
        }
        (out, false, d.error(), buf)
    }

    fn data(input: &[u8]) -> (Vec<u8>, bool, Option<BodyError>, Vec<u8>) {
        decode(&mut BodyDecoder::new(true, false, 1000), &[input])
    }

    #[test]
    fn ends_only_at_crlf_dot_crlf() {
        let table: [(&[u8], &[u8], bool); 10] = [
            (b".\r\n", b"", true),
            (b"a\r\n.\r\n", b"a\r\n", true),
            (b"a\n.\n", b"a\r\n\r\n", false),
            (b"a\n.\r\n", b"a\r\n\r\n", false),
            (b"a\r\n.\n", b"a\r\n\r\n", false),
            (b"a\r.\r\n", b"a\r.\r\n", false),
            (b"a\r.\r", b"a\r.\r", false),
            (b"..\r\n.\r\n", b".\r\n", true),
            (b"a\r\n..x\r\n.\r\n", b"a\r\n.x\r\n", true),
            (b"a\r\n.x\r\n", b"a\r\nx\r\n", false),
        ];
        for (input, body, ended) in table {
            let (out, end, _, _) = data(input);
            assert_eq!(
                (out.as_slice(), end),
                (body, ended),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn rest_after_end_is_kept() {
        let (out, end, _, rest) = data(b"x\r\n.\r\nQUIT\r\n");
        assert_eq!(
            (out.as_slice(), end, rest.as_slice()),
            (&b"x\r\n"[..], true, &b"QUIT\r\n"[..])
        );
    }

    #[test]
    fn split_terminator() {
        let mut d = BodyDecoder::new(true, false, 0);
        let (out, end, _, _) = decode(&mut d, &[b"a\r", b"\n", b".", b"\r", b"\n"]);
        assert_eq!((out.as_slice(), end), (&b"a\r\n"[..], true));
    }

    #[test]
    fn reject_policy_flags_bare_newlines() {
        let table: [(&[u8], Option<BodyError>); 6] = [
            (b"ok\r\n.\r\n", None),
            (b"bad\nline\r\n.\r\n", Some(BodyError::BareLf)),
            (b"bad\rline\r\n.\r\n", Some(BodyError::BareCr)),
            (b"cr at end\r", None),
            (b"\n.\r\n", Some(BodyError::BareLf)),
            (b"x\r\r\n.\r\n", Some(BodyError::BareCr)),
        ];
        for (input, expected) in table {
            let (_, _, e, _) = decode(&mut BodyDecoder::new(true, true, 0), &[input]);
            assert_eq!(e, expected, "{:?}", String::from_utf8_lossy(input));
        }
        let mut d = BodyDecoder::new(true, true, 0);
        let (_, _, e, _) = decode(&mut d, &[b"split\r", b"x\r\n.\r\n"]);
        assert_eq!(e, Some(BodyError::BareCr));
    }

    #[test]
    fn line_limit_counts_crlf_but_not_stuffing() {
        let line = |n: usize, stuffed: bool| {
            let mut v = Vec::new();
            if stuffed {
                v.push(b'.');
            }
            v.resize(n, b'x');
            v.extend_from_slice(b"\r\n.\r\n");
            v
        };
        for (len, stuffed, ok) in [
            (998, false, true),
            (999, false, false),
            (999, true, true),
            (1000, true, false),
        ] {
            for split in [1, 7, 500, 999, 2000] {
                let input = line(len, stuffed);
                let pieces: Vec<&[u8]> = input.chunks(split).collect();
                let (_, end, e, _) = decode(&mut BodyDecoder::new(true, false, 1000), &pieces);
                assert!(end);
                assert_eq!(e.is_none(), ok, "len {len} stuffed {stuffed} split {split}");
            }
        }
    }

    #[test]
    fn bdat_has_no_terminator_or_stuffing() {
        let mut d = BodyDecoder::new(false, false, 0);
        let (out, end, _, _) = decode(&mut d, &[b"..\r\n.\r\nx\n"]);
        assert_eq!((out.as_slice(), end), (&b"..\r\n.\r\nx\r\n"[..], false));
    }
}
