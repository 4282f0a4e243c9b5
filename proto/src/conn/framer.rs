//! Framing: command lines, DATA bodies and BDAT chunks cut out of the receive buffer,
//! with their limits. What a message's end means is the transaction's business
//! (`transaction.rs`).

use super::body::{BodyDecoder, BodyError, Step};
use super::transaction::Txn;
use super::{Connection, Mode};
use crate::reply::{self, Reply};

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

impl Connection {
    /// Handles the next complete command line, if there is one.
    pub(super) fn next_command(&mut self) -> bool {
        let data = self.rx.data();
        let max = self.cfg.max_command_line;
        let Some(lf) = memchr::memchr(b'\n', data) else {
            if data.len() >= max {
                self.rx.clear();
                self.mode = Mode::DiscardLine;
                return true;
            }
            return false;
        };
        let bare_lf = lf == 0 || data[lf - 1] != b'\r';
        let range = self.rx.take(lf + 1);
        if lf + 1 > max {
            self.reject(reply::LINE_TOO_LONG);
            return true;
        }
        let line = range.start..range.end - if bare_lf { 1 } else { 2 };
        self.handle_line(line, bare_lf);
        true
    }

    /// Throws away the rest of an overlong line; answers once its end is seen.
    pub(super) fn discard_line(&mut self) -> bool {
        match memchr::memchr(b'\n', self.rx.data()) {
            Some(lf) => {
                self.rx.consume(lf + 1);
                self.mode = Mode::Command;
                self.reject(reply::LINE_TOO_LONG);
                true
            }
            None => {
                self.rx.clear();
                false
            }
        }
    }

    /// One step of body decoding over the buffered input.
    pub(super) fn body_step(&mut self) -> BodyOut {
        let (limit, discard) = match self.mode {
            Mode::Chunk {
                remaining, refused, ..
            } => {
                if remaining == 0 {
                    return self.chunk_done();
                }
                (
                    usize::try_from(remaining).unwrap_or(usize::MAX),
                    refused.is_some() || !matches!(self.txn, Txn::Text(_)),
                )
            }
            _ => (usize::MAX, false),
        };
        let avail = self.rx.len().min(limit);
        if avail == 0 {
            return BodyOut::NeedInput;
        }
        if discard {
            self.rx.consume(avail);
            self.chunk_consumed(avail);
            return BodyOut::Continue;
        }
        let max_size = self.cfg.max_size;
        let Txn::Text(text) = &mut self.txn else {
            // DATA mode always has a text; anything else is read as nothing.
            return BodyOut::NeedInput;
        };
        let step = text.body.decoder.step(&self.rx.data()[..avail]);
        let range = self.rx.take(step.consumed());
        let stored = match step {
            Step::Content(n) => n,
            Step::Crlf => 2,
            Step::Skip => 0,
            Step::NeedMore => {
                self.chunk_consumed(step.consumed());
                return BodyOut::NeedInput;
            }
            Step::End => {
                self.chunk_consumed(step.consumed());
                return self.end_text();
            }
        };
        let body = &mut text.body;
        body.size += stored as u64;
        let refused = body.refused;
        let refuse = !refused && body.refusal(max_size).is_some();
        self.chunk_consumed(step.consumed());
        if stored == 0 || refused {
            return BodyOut::Continue;
        }
        if refuse {
            self.refuse_text();
            return BodyOut::Continue;
        }
        match step {
            Step::Crlf => BodyOut::Crlf,
            _ => BodyOut::Write(range),
        }
    }

    fn chunk_consumed(&mut self, n: usize) {
        if let Mode::Chunk { remaining, .. } = &mut self.mode {
            *remaining -= n as u64;
        }
    }

    /// A BDAT chunk has been read in full.
    fn chunk_done(&mut self) -> BodyOut {
        let Mode::Chunk { last, refused, .. } = self.mode else {
            return BodyOut::Continue;
        };
        self.mode = Mode::Command;
        if let Some(r) = refused {
            self.reject(*r);
            return BodyOut::Continue;
        }
        let Txn::Text(text) = &self.txn else {
            return BodyOut::Continue;
        };
        if text.body.refused || last {
            return self.end_text();
        }
        let size = text.body.size;
        reply::write_line(
            &mut self.tx,
            250,
            "2.0.0",
            format_args!("{size} octets received"),
        );
        BodyOut::Continue
    }
}

/// The outcome of one [`Connection::body_step`].
pub(super) enum BodyOut {
    Write(std::ops::Range<usize>),
    Crlf,
    Commit,
    NeedInput,
    Continue,
}
