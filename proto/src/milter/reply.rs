//! What the milter sends: [`Reply`], with `encode` and `decode`. Strings are
//! NUL-terminated on the wire; numbers are big-endian.

use super::command::C_OPTNEG;
use super::event::{Modification, ProtocolError};
use super::wire::{self, Fields, Packet, cstr};
use super::{Actions, Protocol};

// Replies (SMFIR_*); the negotiation answer reuses SMFIC_OPTNEG.
const R_ADDRCPT: u8 = b'+';
const R_DELRCPT: u8 = b'-';
const R_ADDRCPT_PAR: u8 = b'2';
const R_SHUTDOWN: u8 = b'4';
const R_ACCEPT: u8 = b'a';
const R_REPLBODY: u8 = b'b';
const R_CONTINUE: u8 = b'c';
const R_DISCARD: u8 = b'd';
const R_CHGFROM: u8 = b'e';
const R_CONN_FAIL: u8 = b'f';
const R_ADDHEADER: u8 = b'h';
const R_INSHEADER: u8 = b'i';
const R_CHGHEADER: u8 = b'm';
const R_PROGRESS: u8 = b'p';
const R_QUARANTINE: u8 = b'q';
const R_REJECT: u8 = b'r';
const R_SKIP: u8 = b's';
const R_TEMPFAIL: u8 = b't';
const R_REPLYCODE: u8 = b'y';

/// A packet from the milter to the MTA (`SMFIR_*`, and the negotiation answer). Strings
/// are read as UTF-8, anything else replaced with U+FFFD.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reply {
    /// `SMFIC_OPTNEG`: the milter's version, chosen actions and protocol bits, and the
    /// macro lists it wants (by `SMFIM_*` class).
    Negotiate {
        /// Its protocol version.
        version: u32,
        /// The actions it chose.
        actions: Actions,
        /// The protocol bits it chose.
        protocol: Protocol,
        /// Its macro lists: class and space-separated names.
        macros: Vec<(u32, String)>,
    },
    /// `SMFIR_CONTINUE`.
    Continue,
    /// `SMFIR_ACCEPT`.
    Accept,
    /// `SMFIR_REJECT`.
    Reject,
    /// `SMFIR_TEMPFAIL`.
    Tempfail,
    /// `SMFIR_DISCARD`.
    Discard,
    /// `SMFIR_SKIP`.
    Skip,
    /// `SMFIR_PROGRESS`.
    Progress,
    /// `SMFIR_SHUTDOWN`.
    Shutdown,
    /// `SMFIR_CONN_FAIL`.
    ConnFail,
    /// `SMFIR_REPLYCODE`: the reply, as sent (not yet checked).
    ReplyCode(String),
    /// A modification (`SMFIR_ADDHEADER`, `SMFIR_REPLBODY`, ...).
    Modify(Modification),
}

impl Reply {
    /// Its command byte.
    pub fn code(&self) -> u8 {
        match self {
            Self::Negotiate { .. } => C_OPTNEG,
            Self::Continue => R_CONTINUE,
            Self::Accept => R_ACCEPT,
            Self::Reject => R_REJECT,
            Self::Tempfail => R_TEMPFAIL,
            Self::Discard => R_DISCARD,
            Self::Skip => R_SKIP,
            Self::Progress => R_PROGRESS,
            Self::Shutdown => R_SHUTDOWN,
            Self::ConnFail => R_CONN_FAIL,
            Self::ReplyCode(_) => R_REPLYCODE,
            Self::Modify(m) => match m {
                Modification::AddHeader { .. } => R_ADDHEADER,
                Modification::InsertHeader { .. } => R_INSHEADER,
                Modification::ChangeHeader { .. } => R_CHGHEADER,
                Modification::AddRecipient(_) => R_ADDRCPT,
                Modification::AddRecipientArgs { .. } => R_ADDRCPT_PAR,
                Modification::DeleteRecipient(_) => R_DELRCPT,
                Modification::ChangeSender { .. } => R_CHGFROM,
                Modification::ReplaceBody(_) => R_REPLBODY,
                Modification::Quarantine(_) => R_QUARANTINE,
            },
        }
    }

    /// Appends it to `out` as a packet (what a milter, or a test playing one, does).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let at = wire::start(out, self.code());
        match self {
            Self::Negotiate {
                version,
                actions,
                protocol,
                macros,
            } => {
                for n in [*version, actions.0, protocol.0] {
                    out.extend_from_slice(&n.to_be_bytes());
                }
                for (class, names) in macros {
                    out.extend_from_slice(&class.to_be_bytes());
                    cstr(out, names.as_bytes());
                }
            }
            Self::ReplyCode(text) => cstr(out, text.as_bytes()),
            Self::Modify(m) => match m {
                Modification::AddHeader { name, value } => {
                    cstr(out, name.as_bytes());
                    cstr(out, value.as_bytes());
                }
                Modification::InsertHeader { index, name, value }
                | Modification::ChangeHeader { index, name, value } => {
                    out.extend_from_slice(&index.to_be_bytes());
                    cstr(out, name.as_bytes());
                    cstr(out, value.as_bytes());
                }
                Modification::AddRecipient(s)
                | Modification::DeleteRecipient(s)
                | Modification::Quarantine(s) => cstr(out, s.as_bytes()),
                Modification::AddRecipientArgs {
                    recipient: first,
                    args,
                }
                | Modification::ChangeSender {
                    sender: first,
                    args,
                } => {
                    cstr(out, first.as_bytes());
                    if let Some(args) = args {
                        cstr(out, args.as_bytes());
                    }
                }
                Modification::ReplaceBody(chunk) => out.extend_from_slice(chunk),
            },
            Self::Continue
            | Self::Accept
            | Self::Reject
            | Self::Tempfail
            | Self::Discard
            | Self::Skip
            | Self::Progress
            | Self::Shutdown
            | Self::ConnFail => {}
        }
        wire::finish(out, at);
    }

    /// Reads a packet from the milter. Checks its shape only: whether it may come now is
    /// the session's business.
    pub fn decode(packet: &Packet) -> Result<Self, ProtocolError> {
        let code = packet.code;
        let mut r = Fields::new(code, &packet.data);
        let reply = match code {
            C_OPTNEG => {
                let version = r.u32()?;
                let actions = Actions(r.u32()?);
                let protocol = Protocol(r.u32()?);
                let mut macros = Vec::new();
                while !r.is_empty() {
                    macros.push((r.u32()?, r.string()?));
                }
                Self::Negotiate {
                    version,
                    actions,
                    protocol,
                    macros,
                }
            }
            R_CONTINUE => Self::Continue,
            R_ACCEPT => Self::Accept,
            R_REJECT => Self::Reject,
            R_TEMPFAIL => Self::Tempfail,
            R_DISCARD => Self::Discard,
            R_SKIP => Self::Skip,
            R_PROGRESS => Self::Progress,
            R_SHUTDOWN => Self::Shutdown,
            R_CONN_FAIL => Self::ConnFail,
            R_REPLYCODE => Self::ReplyCode(r.string()?),
            R_ADDHEADER => Self::Modify(Modification::AddHeader {
                name: r.name()?,
                value: r.string()?,
            }),
            R_INSHEADER => Self::Modify(Modification::InsertHeader {
                index: r.u32()?,
                name: r.name()?,
                value: r.string()?,
            }),
            R_CHGHEADER => Self::Modify(Modification::ChangeHeader {
                index: r.u32()?,
                name: r.name()?,
                value: r.string()?,
            }),
            R_ADDRCPT => Self::Modify(Modification::AddRecipient(r.name()?)),
            R_DELRCPT => Self::Modify(Modification::DeleteRecipient(r.name()?)),
            R_ADDRCPT_PAR => Self::Modify(Modification::AddRecipientArgs {
                recipient: r.name()?,
                args: r.optional()?,
            }),
            R_CHGFROM => Self::Modify(Modification::ChangeSender {
                sender: r.name()?,
                args: r.optional()?,
            }),
            R_REPLBODY => Self::Modify(Modification::ReplaceBody(r.rest().to_vec())),
            R_QUARANTINE => Self::Modify(Modification::Quarantine(r.string()?)),
            _ => return Err(ProtocolError::UnknownCode(code)),
        };
        r.end()?;
        Ok(reply)
    }
}
