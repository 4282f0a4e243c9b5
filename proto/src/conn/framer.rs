//! Framing: command lines, DATA bodies and BDAT chunks cut out of the receive buffer,
//! with their limits; and what happens to a message when its body ends.

use super::body::{BodyDecoder, BodyError, Step};
use super::{Connection, Mode};
use crate::reply::{self, Reply};

/// The body being received.
#[derive(Debug)]
pub(super) struct Message {
    pub(super) decoder: BodyDecoder,
    /// Octets received so far, as stored (RFC 1870's count), refused or not.
    pub(super) size: u64,
    /// BDAT declared more than the limit.
    pub(super) declared_too_big: bool,
    /// Set once the message is refused: the rest is read (and decoded, so that the reply
    /// does not depend on how the input was split) but not stored.
    pub(super) refused: bool,
}

impl Message {
    /// Why the message must be refused, if it must: the first of a bare newline, an
    /// overlong line, and the size.
    fn refusal(&self, max_size: u64) -> Option<Reply> {
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
                    refused.is_some() || self.message.is_none(),
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
        let Some(msg) = self.message.as_mut() else {
            return BodyOut::NeedInput; // unreachable: Data mode always has a message
        };
        let step = msg.decoder.step(&self.rx.data()[..avail]);
        let range = self.rx.take(step.consumed());
        self.chunk_consumed(step.consumed());
        let stored = match step {
            Step::Content(n) => n,
            Step::Crlf => 2,
            Step::Skip => return BodyOut::Continue,
            Step::NeedMore => return BodyOut::NeedInput,
            Step::End => return self.finish_message(),
        };
        let msg = self.message.as_mut().expect("checked above");
        msg.size += stored as u64;
        if msg.refused {
            return BodyOut::Continue;
        }
        if msg.refusal(max_size).is_some() {
            self.refuse_message();
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

    /// Refuses the message being received; the rest of its body is read and dropped, and
    /// the destination's transaction is aborted.
    pub(super) fn refuse_message(&mut self) {
        if let Some(msg) = self.message.as_mut().filter(|m| !m.refused) {
            msg.refused = true;
            self.pending_begin = false; // a body the destination never saw
            self.abort_destination();
        }
    }

    /// Tells the driver to abort the destination's transaction, if one is open.
    fn abort_destination(&mut self) {
        if self.open {
            self.open = false;
            self.pending_abort = true;
        }
    }

    /// Ends the mail transaction (RSET, HELO, QUIT, STARTTLS, a timeout, the end of
    /// input): a message in progress is dropped, and the destination's transaction, if
    /// one was opened at MAIL, aborted. The one way a transaction ends without a
    /// delivery.
    pub(super) fn reset_transaction(&mut self) {
        self.refuse_message();
        self.abort_destination();
        self.pending_begin = false;
        self.message = None;
        self.envelope = None;
        self.txn = None;
    }

    /// The body is complete: commit it, or answer with the refusal.
    fn finish_message(&mut self) -> BodyOut {
        let refused = self
            .message
            .as_ref()
            .and_then(|m| m.refusal(self.cfg.max_size));
        if let Some(r) = refused {
            self.mode = Mode::Command;
            self.reject(r); // before the reset, so that the event names the transaction
            self.reset_transaction();
            return BodyOut::Continue;
        }
        self.mode = Mode::Delivering;
        BodyOut::Commit
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
        let Some(msg) = &self.message else {
            return BodyOut::Continue;
        };
        if msg.refused || last {
            return self.finish_message();
        }
        let size = msg.size;
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
