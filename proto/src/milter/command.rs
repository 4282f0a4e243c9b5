//! What the MTA sends: [`Command`], with `encode` and `decode`. Strings are NUL-terminated
//! on the wire; numbers are big-endian.

use super::event::ProtocolError;
use super::wire::{self, Fields, Packet, cstr};
use super::{Actions, Protocol};

// Commands (SMFIC_*).
const C_ABORT: u8 = b'A';
const C_BODY: u8 = b'B';
const C_CONNECT: u8 = b'C';
const C_MACRO: u8 = b'D';
const C_BODYEOB: u8 = b'E';
const C_HELO: u8 = b'H';
const C_QUIT_NC: u8 = b'K';
const C_HEADER: u8 = b'L';
const C_MAIL: u8 = b'M';
const C_EOH: u8 = b'N';
pub(super) const C_OPTNEG: u8 = b'O';
const C_QUIT: u8 = b'Q';
const C_RCPT: u8 = b'R';
const C_DATA: u8 = b'T';
const C_UNKNOWN: u8 = b'U';

/// The client's address in `SMFIC_CONNECT`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family<'a> {
    /// `'U'`: unknown; nothing follows.
    Unknown,
    /// `'L'`: a local socket (its port is 0 in practice).
    Unix {
        /// The port.
        port: u16,
        /// The socket's path.
        path: &'a [u8],
    },
    /// `'4'`: IPv4.
    Inet {
        /// The client's port.
        port: u16,
        /// The address as text (`192.0.2.1`).
        address: &'a [u8],
    },
    /// `'6'`: IPv6.
    Inet6 {
        /// The client's port.
        port: u16,
        /// The address as text (`2001:db8::1`).
        address: &'a [u8],
    },
}

/// A packet from the MTA to the milter (`SMFIC_*`), borrowing its strings.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command<'a> {
    /// `SMFIC_OPTNEG`: the MTA's version, the actions and protocol bits it offers.
    Negotiate {
        /// Its protocol version.
        version: u32,
        /// The actions offered.
        actions: Actions,
        /// The protocol bits offered.
        protocol: Protocol,
    },
    /// `SMFIC_MACRO`: macro values for the stage with this command byte.
    Macro {
        /// The stage's command byte.
        stage: u8,
        /// Names and values.
        pairs: Vec<(&'a [u8], &'a [u8])>,
    },
    /// `SMFIC_CONNECT`: the client's host name and address.
    Connect {
        /// Its host name (or `[address]` when it has none).
        hostname: &'a [u8],
        /// Its address.
        family: Family<'a>,
    },
    /// `SMFIC_HELO`: the HELO/EHLO argument.
    Helo(&'a [u8]),
    /// `SMFIC_MAIL`: the sender, then its ESMTP arguments.
    Mail(Vec<&'a [u8]>),
    /// `SMFIC_RCPT`: the recipient, then its ESMTP arguments.
    Rcpt(Vec<&'a [u8]>),
    /// `SMFIC_DATA`.
    Data,
    /// `SMFIC_HEADER`: a header field's name and value.
    Header {
        /// Its name.
        name: &'a [u8],
        /// Its value.
        value: &'a [u8],
    },
    /// `SMFIC_EOH`.
    EndOfHeaders,
    /// `SMFIC_BODY`: a piece of the body.
    Body(&'a [u8]),
    /// `SMFIC_BODYEOB`.
    EndOfMessage,
    /// `SMFIC_ABORT`.
    Abort,
    /// `SMFIC_QUIT`.
    Quit,
    /// `SMFIC_QUIT_NC`: quit, a new connection follows on this socket.
    QuitNewConnection,
    /// `SMFIC_UNKNOWN`: an unknown SMTP command, as received.
    Unknown(&'a [u8]),
}

impl Command<'_> {
    /// Its command byte.
    pub fn code(&self) -> u8 {
        match self {
            Self::Negotiate { .. } => C_OPTNEG,
            Self::Macro { .. } => C_MACRO,
            Self::Connect { .. } => C_CONNECT,
            Self::Helo(_) => C_HELO,
            Self::Mail(_) => C_MAIL,
            Self::Rcpt(_) => C_RCPT,
            Self::Data => C_DATA,
            Self::Header { .. } => C_HEADER,
            Self::EndOfHeaders => C_EOH,
            Self::Body(_) => C_BODY,
            Self::EndOfMessage => C_BODYEOB,
            Self::Abort => C_ABORT,
            Self::Quit => C_QUIT,
            Self::QuitNewConnection => C_QUIT_NC,
            Self::Unknown(_) => C_UNKNOWN,
        }
    }

    /// Appends it to `out` as a packet. Strings are written as given: one holding a NUL
    /// would not decode the same.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let at = wire::start(out, self.code());
        match self {
            Self::Negotiate {
                version,
                actions,
                protocol,
            } => {
                for n in [*version, actions.0, protocol.0] {
                    out.extend_from_slice(&n.to_be_bytes());
                }
            }
            Self::Macro { stage, pairs } => {
                out.push(*stage);
                for (name, value) in pairs {
                    cstr(out, name);
                    cstr(out, value);
                }
            }
            Self::Connect { hostname, family } => {
                cstr(out, hostname);
                let (letter, port, address) = match family {
                    Family::Unknown => (b'U', 0, None),
                    Family::Unix { port, path } => (b'L', *port, Some(path)),
                    Family::Inet { port, address } => (b'4', *port, Some(address)),
                    Family::Inet6 { port, address } => (b'6', *port, Some(address)),
                };
                out.push(letter);
                if let Some(address) = address {
                    out.extend_from_slice(&port.to_be_bytes());
                    cstr(out, address);
                }
            }
            Self::Helo(s) | Self::Unknown(s) => cstr(out, s),
            Self::Mail(args) | Self::Rcpt(args) => args.iter().for_each(|a| cstr(out, a)),
            Self::Header { name, value } => {
                cstr(out, name);
                cstr(out, value);
            }
            Self::Body(chunk) => out.extend_from_slice(chunk),
            Self::Data
            | Self::EndOfHeaders
            | Self::EndOfMessage
            | Self::Abort
            | Self::Quit
            | Self::QuitNewConnection => {}
        }
        wire::finish(out, at);
    }

    /// Reads a packet from the MTA (what a milter, or a test playing one, does).
    pub fn decode(packet: &Packet) -> Result<Command<'_>, ProtocolError> {
        let code = packet.code;
        let mut r = Fields::new(code, &packet.data);
        let command = match code {
            C_OPTNEG => Command::Negotiate {
                version: r.u32()?,
                actions: Actions(r.u32()?),
                protocol: Protocol(r.u32()?),
            },
            C_MACRO => {
                let stage = r.octet()?;
                let mut pairs = Vec::new();
                while !r.is_empty() {
                    pairs.push((r.cstr()?, r.cstr()?));
                }
                Command::Macro { stage, pairs }
            }
            C_CONNECT => {
                let hostname = r.cstr()?;
                let family = match r.octet()? {
                    b'U' => Family::Unknown,
                    letter @ (b'L' | b'4' | b'6') => {
                        let port = r.u16()?;
                        let address = r.cstr()?;
                        match letter {
                            b'L' => Family::Unix {
                                port,
                                path: address,
                            },
                            b'4' => Family::Inet { port, address },
                            _ => Family::Inet6 { port, address },
                        }
                    }
                    _ => return Err(r.bad("unknown address family")),
                };
                Command::Connect { hostname, family }
            }
            C_HELO => Command::Helo(r.cstr()?),
            C_UNKNOWN => Command::Unknown(r.cstr()?),
            C_MAIL | C_RCPT => {
                let mut args = vec![r.cstr()?];
                while !r.is_empty() {
                    args.push(r.cstr()?);
                }
                if code == C_MAIL {
                    Command::Mail(args)
                } else {
                    Command::Rcpt(args)
                }
            }
            C_HEADER => Command::Header {
                name: r.cstr()?,
                value: r.cstr()?,
            },
            C_BODY => Command::Body(r.rest()),
            C_DATA => Command::Data,
            C_EOH => Command::EndOfHeaders,
            C_BODYEOB => Command::EndOfMessage,
            C_ABORT => Command::Abort,
            C_QUIT => Command::Quit,
            C_QUIT_NC => Command::QuitNewConnection,
            _ => return Err(ProtocolError::UnknownCode(code)),
        };
        r.end()?;
        Ok(command)
    }
}
