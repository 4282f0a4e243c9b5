//! The mail transaction of a session as one state ([`Txn`]), the actions it still owes
//! the driver ([`Owed`]), and the few ways it moves on: a message's text begins, is
//! refused, ends, or the whole transaction is reset.
//!
//! ```text
//!  Idle --MAIL, checked--> Open --DATA/BDAT--> Text --end of text--> Delivering --> Idle
//!    ^                       |                   |                                  ^
//!    +----------- RSET, HELO, QUIT, STARTTLS, a timeout, the end of input ----------+
//! ```
//!
//! The destination holds a transaction from a MAIL it accepted until the driver is told
//! to commit or abort it: in `Open`, and in `Text` until the text is refused.

use super::body::Body;
use super::{Connection, Mode};
use crate::delivery::{Envelope, QueueId, Recipient};
use crate::syntax::{MailParams, ReversePath};

/// A transaction's sender and recipients, from MAIL until its text begins.
#[derive(Debug)]
pub(super) struct Mail {
    /// The queue id, given at MAIL so that every log line of the transaction carries it.
    pub(super) id: QueueId,
    pub(super) from: ReversePath<'static>,
    pub(super) params: MailParams,
    pub(super) rcpts: Vec<Recipient>,
}

/// A message whose text is arriving.
#[derive(Debug)]
pub(super) struct Text {
    /// Its envelope, complete (what [`crate::Action::Begin`] hands over).
    pub(super) envelope: Envelope,
    /// The text's decoding, size and refusal.
    pub(super) body: Body,
}

/// The mail transaction.
#[derive(Debug, Default)]
pub(super) enum Txn {
    /// None.
    #[default]
    Idle,
    /// MAIL was accepted (by the destination too); recipients are being added.
    Open(Box<Mail>),
    /// The text is arriving. Commands are read meanwhile only between BDAT chunks, and
    /// then RCPT, DATA and MAIL are out of sequence until its last chunk.
    Text(Box<Text>),
    /// The text is complete, and the destination commits it; the reply waits for
    /// [`Connection::handle_delivery`].
    Delivering(Box<(Envelope, u64)>),
}

impl Txn {
    /// The queue id and sender of the transaction, if there is one.
    pub(super) fn id_and_sender(&self) -> Option<(QueueId, &ReversePath<'static>)> {
        match self {
            Self::Idle => None,
            Self::Open(m) => Some((m.id, &m.from)),
            Self::Text(t) => Some((t.envelope.id, &t.envelope.from)),
            Self::Delivering(d) => Some((d.0.id, &d.0.from)),
        }
    }

    /// Whether the destination holds a transaction that must be committed or aborted.
    fn held_by_destination(&self) -> bool {
        match self {
            Self::Open(_) => true,
            Self::Text(t) => !t.body.refused,
            Self::Idle | Self::Delivering(_) => false,
        }
    }
}

/// What the connection owes the driver, handed out by [`Connection::poll_action`] before
/// anything else, in this order: an abort of the destination's transaction, the question
/// of a waiting command, the beginning of a message. At most one of each is ever owed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Owed {
    /// `Abort`: the destination's transaction is to be thrown away.
    pub(super) abort: bool,
    /// `Check`: a command waits for the answer to its question.
    pub(super) check: bool,
    /// `Begin`: the text of the message in [`Txn::Text`] begins.
    pub(super) begin: bool,
}

impl Connection {
    /// Opens the message of the transaction: its envelope complete, its text to come;
    /// the driver is told to begin it.
    pub(super) fn begin_text(&mut self, mail: Mail, dot_stuffed: bool) {
        let protocol = self.protocol(mail.params.smtputf8);
        let envelope = Envelope {
            id: mail.id,
            from: mail.from,
            params: mail.params,
            recipients: mail.rcpts,
            helo: self
                .helo
                .as_ref()
                .map(|h| h.name.to_string())
                .unwrap_or_default(),
            client_ip: self.client_ip,
            client_name: self.client_name.as_deref().map(str::to_string),
            protocol,
            tls: self.tls.as_deref().cloned(),
            auth_user: self.auth_user.as_deref().map(str::to_string),
        };
        let body = Body::new(
            dot_stuffed,
            self.bare_newline_rejected(),
            self.cfg.max_text_line,
        );
        self.txn = Txn::Text(Box::new(Text { envelope, body }));
        self.owed.begin = true;
    }

    /// Refuses the message being received; the rest of its text is read and dropped, and
    /// the destination's transaction is aborted.
    pub(super) fn refuse_text(&mut self) {
        if let Txn::Text(t) = &mut self.txn
            && !t.body.refused
        {
            t.body.refused = true;
            // A text the destination has not seen begin: it never will.
            self.owed.begin = false;
            self.owed.abort = true;
        }
    }

    /// Ends the mail transaction (RSET, HELO, QUIT, STARTTLS, a timeout, the end of
    /// input): a message in progress is dropped, and the destination's transaction, if
    /// one was opened at MAIL, aborted. The one way a transaction ends without a
    /// delivery.
    pub(super) fn reset_transaction(&mut self) {
        if self.txn.held_by_destination() {
            self.owed.abort = true;
        }
        self.owed.begin = false;
        self.txn = Txn::Idle;
    }

    /// The text is complete: `true` if it is to be committed (the driver is told so),
    /// `false` if it was refused, and answered.
    pub(super) fn end_text(&mut self) -> bool {
        let Txn::Text(t) = std::mem::take(&mut self.txn) else {
            return false;
        };
        if let Some(r) = t.body.refusal(self.cfg.max_size) {
            self.txn = Txn::Text(t);
            self.mode = Mode::Command;
            self.reject(r); // before the reset, so that the event names the transaction
            self.reset_transaction();
            return false;
        }
        let Text { envelope, body } = *t;
        self.txn = Txn::Delivering(Box::new((envelope, body.size)));
        self.mode = Mode::Delivering;
        true
    }

    /// The transaction is over, its reply sent.
    pub(super) fn end_transaction(&mut self) {
        self.txn = Txn::Idle;
    }
}
