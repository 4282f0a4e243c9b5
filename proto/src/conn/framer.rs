//! Framing: command lines, DATA bodies and BDAT chunks cut out of the receive buffer,
//! with their limits. What a message's end means is the transaction's business
//! (`transaction.rs`).

use super::body::Step;
use super::transaction::Txn;
use super::{Connection, Mode};
use crate::reply;

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
            // An AUTH response too: the exchange ends with the refusal.
            self.sasl = None;
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
                self.sasl = None;
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
                return self.end_of_text();
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

    /// The text is complete: commit it, or go on after its refusal.
    fn end_of_text(&mut self) -> BodyOut {
        if self.end_text() {
            BodyOut::Commit
        } else {
            BodyOut::Continue
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
            return self.end_of_text();
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
