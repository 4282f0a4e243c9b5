//! What a [`Session`](super::Session) reports, and its errors.

use std::fmt;

use super::{Actions, Protocol, Stage};

/// What happened. Returned by [`Session::poll_event`](super::Session::poll_event).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The milter answered the negotiation; steps can be sent now.
    Negotiated(Negotiated),
    /// The milter's answer to a step (or [`Answer::Continue`] for a step it does not
    /// answer or does not get).
    Answer {
        /// The step answered.
        stage: Stage,
        /// The answer.
        answer: Answer,
    },
    /// The milter is still working (`SMFIR_PROGRESS`): not an answer, but a sign of life
    /// (a driver may restart its time-out).
    Progress,
    /// A change to the message the milter asks for, before its answer to end of message.
    /// All of them, in order, apply to the message if it is accepted.
    Modify(Modification),
    /// The milter broke the protocol (or closed the connection); the session is dead. Its
    /// answer for what is still open is the driver's default (Postfix's default is
    /// tempfail).
    Failed(ProtocolError),
}

/// The result of the negotiation.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Negotiated {
    /// The milter's protocol version (2 to 6).
    pub version: u32,
    /// The actions it may take (a subset of those offered).
    pub actions: Actions,
    /// The steps it skips or does not answer, and the extensions it uses (a subset of
    /// those offered).
    pub protocol: Protocol,
    /// The macros it wants, per stage, as it named them (space-separated, e.g.
    /// `{auth_authen} {client_name}`), if it named any (`SMFIF_SETSYMLIST`).
    pub macros: Vec<(Stage, String)>,
}

impl Negotiated {
    /// Whether the milter does not get `stage`: it asked not to (`SMFIP_NO*`), or its
    /// version predates it (DATA before 4, unknown commands before 3).
    pub fn skips(&self, stage: Stage) -> bool {
        let by_version = match stage {
            Stage::Data => self.version < 4,
            Stage::Unknown => self.version < 3,
            _ => false,
        };
        by_version || stage.skip_flag().is_some_and(|f| self.protocol.contains(f))
    }

    /// Whether the milter does not answer `stage` (`SMFIP_NR_*`).
    pub fn no_reply(&self, stage: Stage) -> bool {
        stage
            .no_reply_flag()
            .is_some_and(|f| self.protocol.contains(f))
    }
}

/// A milter's answer to a step.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Answer {
    /// `SMFIR_CONTINUE`: go on. At end of message, the same as accept.
    Continue,
    /// `SMFIR_ACCEPT`: accept the connection (at connect or HELO) or the message, with no
    /// more steps for it; at RCPT, the whole message.
    Accept,
    /// `SMFIR_REJECT`: reject the connection (at connect or HELO), the recipient (at RCPT),
    /// the command (unknown), or else the message (`550 5.7.1`).
    Reject,
    /// `SMFIR_TEMPFAIL`: the same, temporarily (`451 4.7.1`).
    Tempfail,
    /// `SMFIR_DISCARD`: accept the message and throw it away, with no more steps for it.
    /// (At connect or HELO, where it has no meaning, it is reported as `Continue`, as
    /// Postfix reads it.)
    Discard,
    /// `SMFIR_REPLYCODE`: reject (or tempfail) as [`Answer::Reject`] does, with this reply.
    ReplyCode {
        /// The reply code: 4xx or 5xx.
        code: u16,
        /// The text of each line after the code (one line, or several with
        /// `smfi_setmlreply`), with `%%` read as `%`, as Postfix does; for example
        /// `5.7.1 Go away`.
        lines: Vec<String>,
    },
    /// `SMFIR_SKIP`: send no more body chunks (the answer to one); end of message follows.
    Skip,
    /// `SMFIR_SHUTDOWN`: end the SMTP session with `421`.
    Shutdown,
    /// `SMFIR_CONN_FAIL`: drop the SMTP connection.
    ConnFail,
}

/// A change to the message the milter asks for at end of message. Each needs its action
/// negotiated ([`Modification::action`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Modification {
    /// `SMFIR_ADDHEADER`: add a header field after the last one.
    AddHeader {
        /// Its name.
        name: String,
        /// Its value.
        value: String,
    },
    /// `SMFIR_INSHEADER`: insert a header field before the one at `index` (0: first).
    InsertHeader {
        /// Where.
        index: u32,
        /// Its name.
        name: String,
        /// Its value.
        value: String,
    },
    /// `SMFIR_CHGHEADER`: change the `index`th field named `name` (from 1; Sendmail and
    /// Postfix read 0 as 1), or delete it if `value` is empty.
    ChangeHeader {
        /// Which one of that name.
        index: u32,
        /// Its name.
        name: String,
        /// Its new value; empty to delete it.
        value: String,
    },
    /// `SMFIR_ADDRCPT`: add a recipient.
    AddRecipient(String),
    /// `SMFIR_ADDRCPT_PAR`: add a recipient with ESMTP arguments.
    AddRecipientArgs {
        /// The recipient.
        recipient: String,
        /// Its arguments (space-separated), if any were sent.
        args: Option<String>,
    },
    /// `SMFIR_DELRCPT`: delete a recipient.
    DeleteRecipient(String),
    /// `SMFIR_CHGFROM`: change the envelope sender.
    ChangeSender {
        /// The new sender.
        sender: String,
        /// Its ESMTP arguments, if any were sent.
        args: Option<String>,
    },
    /// `SMFIR_REPLBODY`: a piece of the new body. The pieces of one end of message, in
    /// order, replace the whole body.
    ReplaceBody(Vec<u8>),
    /// `SMFIR_QUARANTINE`: hold the message, for this reason.
    Quarantine(String),
}

impl Modification {
    /// The action the milter must have negotiated to ask for this.
    pub fn action(&self) -> Actions {
        match self {
            Self::AddHeader { .. } | Self::InsertHeader { .. } => Actions::ADDHDRS,
            Self::ChangeHeader { .. } => Actions::CHGHDRS,
            Self::AddRecipient(_) => Actions::ADDRCPT,
            Self::AddRecipientArgs { .. } => Actions::ADDRCPT_PAR,
            Self::DeleteRecipient(_) => Actions::DELRCPT,
            Self::ChangeSender { .. } => Actions::CHGFROM,
            Self::ReplaceBody(_) => Actions::CHGBODY,
            Self::Quarantine(_) => Actions::QUARANTINE,
        }
    }
}

/// How the milter broke the protocol. After one, the session is dead.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A packet length of 0 or over [`MAX_PACKET`](super::MAX_PACKET).
    Length(u32),
    /// A packet whose data does not fit its command.
    Malformed {
        /// Its command byte.
        code: u8,
        /// What is wrong.
        why: &'static str,
    },
    /// A command byte the protocol does not have.
    UnknownCode(u8),
    /// A reply that is not valid now (a modification before end of message, an answer
    /// when none is due, `SMFIR_SKIP` outside the body).
    Unexpected {
        /// Its command byte.
        code: u8,
        /// Where the session was: `negotiation`, `idle`, or the stage awaiting an answer.
        during: &'static str,
    },
    /// A reply needing an action or protocol bit the milter did not negotiate.
    NotNegotiated {
        /// Its command byte (`l` for macro lists in the negotiation).
        code: u8,
    },
    /// A protocol version other than 2 to 6.
    Version(u32),
    /// Actions that were not offered.
    Actions(Actions),
    /// Protocol bits that were not offered.
    Protocol(Protocol),
    /// The milter closed the connection before the session ended.
    Eof,
}

/// A command byte as a character when it is printable.
struct Code(u8);

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_ascii_graphic() {
            write!(f, "'{}'", char::from(self.0))
        } else {
            write!(f, "0x{:02x}", self.0)
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Length(n) => write!(f, "bad packet length {n}"),
            Self::Malformed { code, why } => write!(f, "malformed reply {}: {why}", Code(*code)),
            Self::UnknownCode(c) => write!(f, "unknown command byte {}", Code(*c)),
            Self::Unexpected { code, during } => {
                write!(f, "unexpected reply {} during {during}", Code(*code))
            }
            Self::NotNegotiated { code } => write!(f, "reply {} was not negotiated", Code(*code)),
            Self::Version(v) => write!(f, "unsupported protocol version {v}"),
            Self::Actions(a) => write!(f, "actions 0x{:x} were not offered", a.0),
            Self::Protocol(p) => write!(f, "protocol bits 0x{:x} were not offered", p.0),
            Self::Eof => f.write_str("the milter closed the connection"),
        }
    }
}

impl std::error::Error for ProtocolError {}

/// A caller's mistake: the call did nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum UsageError {
    /// An answer is due (or the negotiation's): wait for it.
    Busy,
    /// The session has ended (quit, or a protocol error).
    Closed,
    /// The step does not follow the previous ones (for example RCPT before MAIL, or a
    /// body chunk before end of headers; after a message ends, MAIL comes next).
    OutOfOrder,
    /// The milter refused the connection: only quit is left.
    Decided,
    /// A body chunk over [`MAX_CHUNK`](super::MAX_CHUNK) octets, or a command over
    /// [`MAX_PACKET`](super::MAX_PACKET).
    TooLarge,
    /// A string holds a NUL octet, which the protocol cannot carry.
    Nul,
    /// Macros for a stage that has none (header, body, unknown).
    NoMacros,
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Busy => "an answer from the milter is due",
            Self::Closed => "the milter session has ended",
            Self::OutOfOrder => "step out of order",
            Self::Decided => "the milter refused the connection",
            Self::TooLarge => "too large for one packet",
            Self::Nul => "a string holds a NUL octet",
            Self::NoMacros => "no macros for this stage",
        })
    }
}

impl std::error::Error for UsageError {}

/// What became of a step. Whatever it is, one [`Event::Answer`] for the step follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "a sent step is answered later, through poll_event"]
pub enum Step {
    /// Sent; the milter's answer comes in later.
    Sent,
    /// Sent, and the milter does not answer it (`SMFIP_NR_*`): answered `Continue` now.
    NoReply,
    /// Not sent: the milter does not want it, or already decided (accept, discard,
    /// skip). Answered `Continue` now.
    Skipped,
}

/// Reads an `SMFIR_REPLYCODE` text: one line, or several joined by CRLF, each
/// `<code>[ -]<text>` with one 4xx or 5xx code, `-` after it on every line but the last,
/// and an enhanced status code (if the text starts with a digit) of the same class. `%%`
/// is read as `%` and a lone `%` dropped (Sendmail's milters double it, as Postfix
/// reads them). Returns the code and each line's text.
pub(super) fn reply_code(text: &str) -> Option<(u16, Vec<String>)> {
    let text = unpercent(text);
    let lines: Vec<&str> = text.split("\r\n").collect();
    let first = lines.first()?.as_bytes();
    if first.len() < 3
        || !matches!(first[0], b'4' | b'5')
        || !first[1].is_ascii_digit()
        || !first[2].is_ascii_digit()
    {
        return None;
    }
    let code = &text[..3];
    let mut out = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        let last = i + 1 == lines.len();
        let rest = line.strip_prefix(code)?;
        let rest = match rest.as_bytes().first() {
            None if last => "",
            Some(b' ') if last => &rest[1..],
            Some(b'-') if !last => &rest[1..],
            _ => return None,
        };
        if rest.contains(['\r', '\n']) {
            return None;
        }
        if rest
            .as_bytes()
            .first()
            .is_some_and(|c| c.is_ascii_digit() && *c != first[0])
        {
            return None;
        }
        out.push(rest.to_string());
    }
    Some((code.parse().ok()?, out))
}

/// `%%` as `%`, and a lone `%` dropped.
fn unpercent(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '%' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(c);
        }
    }
    out
}
