//! A milter client: the MTA side of the Sendmail mail filter protocol, version 6 (as
//! sendmail's `libmilter/mfdef.h` and Postfix's `src/milter/milter8.c` define it), as a
//! pure state machine in the shape of [`crate::Connection`]: bytes in, events out, no
//! sockets and no clocks.
//!
//! # The protocol in brief
//!
//! Every packet is `uint32 length (big-endian) | command byte | data`, the length
//! counting the command byte and the data. The MTA opens with `SMFIC_OPTNEG` (its
//! version, the [`Actions`] it lets the milter take and the [`Protocol`] steps the milter
//! may skip or leave unanswered); the milter answers with its own choice, a subset. Then
//! the MTA reports each step of the SMTP session ([`Stage`]): connect, HELO, MAIL, RCPT,
//! DATA, each header, end of headers, body chunks and end of message, waiting after each
//! for the milter's [`Answer`]. At end of message the milter may ask for
//! [`Modification`]s before its final answer. Macros (`SMFIC_MACRO`) can go before any
//! step; abort ends a message early, quit ends the session. Neither is answered.
//!
//! # Run loop
//!
//! The driver owns the socket to the milter and its time-outs; the [`Session`] owns the
//! rest. After each command (`connect`, `mail`, ...) or input
//! ([`handle_received`](Session::handle_received), [`handle_eof`](Session::handle_eof)),
//! the driver writes what [`poll_transmit`](Session::poll_transmit) gives and drains
//! [`poll_event`](Session::poll_event). A step the milter answers ([`Step::Sent`]) is
//! answered by one [`Event::Answer`] once its reply is read; a step it does not answer or
//! does not want gets [`Event::Answer`] with [`Answer::Continue`] at once. So every
//! successful step call yields exactly one `Answer` event (unless the session fails
//! first).
//!
//! ```
//! use proto::milter::{Answer, Event, Options, Peer, Reply, Session, Stage, Step};
//!
//! let mut milter = Session::new(Options::default());
//! let mut to_milter = Vec::new();
//! milter.poll_transmit(&mut to_milter); // SMFIC_OPTNEG, for the socket
//!
//! // What the milter says, as it would arrive: it takes every step, answers each, and
//! // takes no actions.
//! let mut from_milter = Vec::new();
//! Reply::Negotiate { version: 6, actions: Default::default(), protocol: Default::default(),
//!                    macros: vec![] }.encode(&mut from_milter);
//! milter.handle_received(&from_milter);
//! assert!(matches!(milter.poll_event(), Some(Event::Negotiated(_))));
//!
//! let peer = Peer::Inet("192.0.2.1:4000".parse().unwrap());
//! assert_eq!(milter.connect("client.example", peer), Ok(Step::Sent));
//! milter.poll_transmit(&mut to_milter); // SMFIC_CONNECT
//! let mut reject = Vec::new();
//! Reply::Reject.encode(&mut reject);
//! for octet in &reject {
//!     milter.handle_received(std::slice::from_ref(octet)); // any pieces will do
//! }
//! assert_eq!(milter.poll_event(),
//!            Some(Event::Answer { stage: Stage::Connect, answer: Answer::Reject }));
//! assert!(!milter.wants(Stage::Helo)); // the connection is refused: only quit is left
//! milter.quit();
//! milter.poll_transmit(&mut to_milter); // SMFIC_QUIT; then close the socket
//! assert!(milter.is_closed());
//! ```
//!
//! # What the session enforces
//!
//! - It never sends a step the milter asked not to get (`SMFIP_NO*`, and what its
//!   protocol version lacks), and never waits for the answer to a step the milter said it
//!   would not answer (`SMFIP_NR_*`).
//! - After a final answer for the connection (accept, reject, tempfail, a reply code)
//!   or the message (accept, discard, reject, tempfail, a reply code), later steps of it
//!   are not sent; [`Session::wants`] says so.
//! - A reply the milter may not send now is a [`ProtocolError`], and the session is dead
//!   ([`Event::Failed`]): a modification before end of message or not negotiated, an
//!   answer when none is due, `SMFIR_SKIP` outside the body or not offered, a reply code
//!   that is not `4xx`/`5xx`, a packet of length 0 or over [`MAX_PACKET`].
//! - A caller's mistake (a step out of order, or while an answer is due) is a
//!   [`UsageError`] and changes nothing.
//!
//! # Left to the caller
//!
//! Time-outs (there is no clock here; [`Event::Progress`] is the milter's sign of life),
//! what an answer means to the SMTP client, applying the modifications to the message,
//! which macros to send, and the options that change what it sends: rejected recipients
//! (`SMFIP_RCPT_REJ`) and header values' leading space (`SMFIP_HDR_LEADSPC`). After a
//! refusing answer to a step of the message (other than RCPT), the message is over for
//! the milter: the next step is MAIL (or [`Session::abort`], which then sends nothing).

mod command;
mod event;
mod reply;
mod session;
#[cfg(test)]
mod tests;
mod wire;

use std::net::SocketAddr;
use std::ops::BitOr;

pub use command::{Command, Family};
pub use event::{Answer, Event, Modification, Negotiated, ProtocolError, Step, UsageError};
pub use reply::Reply;
pub use session::{Phase, Session, State};
pub use wire::{Decoder, MAX_PACKET, Packet};

/// The protocol version this client speaks (`SMFI_PROT_VERSION`).
pub const VERSION: u32 = 6;

/// The largest body chunk [`Session::body`] takes (`MILTER_CHUNK_SIZE`).
pub const MAX_CHUNK: usize = 65535;

/// A step of the SMTP session the milter hears about, named after the command that
/// reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stage {
    /// `SMFIC_CONNECT`: the client connected.
    Connect,
    /// `SMFIC_HELO`: HELO or EHLO.
    Helo,
    /// `SMFIC_MAIL`: MAIL FROM.
    Mail,
    /// `SMFIC_RCPT`: RCPT TO.
    Rcpt,
    /// `SMFIC_DATA`: DATA (or the first BDAT).
    Data,
    /// `SMFIC_HEADER`: one header field.
    Header,
    /// `SMFIC_EOH`: the end of the header section.
    EndOfHeaders,
    /// `SMFIC_BODY`: a piece of the body.
    Body,
    /// `SMFIC_BODYEOB`: the end of the message.
    EndOfMessage,
    /// `SMFIC_UNKNOWN`: a command the server does not know.
    Unknown,
}

impl Stage {
    /// Every stage, in protocol order.
    pub const ALL: [Self; 10] = [
        Self::Connect,
        Self::Helo,
        Self::Mail,
        Self::Rcpt,
        Self::Data,
        Self::Header,
        Self::EndOfHeaders,
        Self::Body,
        Self::EndOfMessage,
        Self::Unknown,
    ];

    /// Its command byte (`SMFIC_*`), which is also how `SMFIC_MACRO` names it.
    pub fn code(self) -> u8 {
        match self {
            Self::Connect => b'C',
            Self::Helo => b'H',
            Self::Mail => b'M',
            Self::Rcpt => b'R',
            Self::Data => b'T',
            Self::Header => b'L',
            Self::EndOfHeaders => b'N',
            Self::Body => b'B',
            Self::EndOfMessage => b'E',
            Self::Unknown => b'U',
        }
    }

    /// A short name for logs: `connect`, `helo`, `mail`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Helo => "helo",
            Self::Mail => "mail",
            Self::Rcpt => "rcpt",
            Self::Data => "data",
            Self::Header => "header",
            Self::EndOfHeaders => "end-of-headers",
            Self::Body => "body",
            Self::EndOfMessage => "end-of-message",
            Self::Unknown => "unknown",
        }
    }

    /// The macro class (`SMFIM_*`) of the stages macros can be sent for: the numbers a
    /// milter's macro lists use in its negotiation answer.
    pub fn macro_class(self) -> Option<u32> {
        Some(match self {
            Self::Connect => 0,
            Self::Helo => 1,
            Self::Mail => 2,
            Self::Rcpt => 3,
            Self::Data => 4,
            Self::EndOfMessage => 5,
            Self::EndOfHeaders => 6,
            Self::Header | Self::Body | Self::Unknown => return None,
        })
    }

    /// The stage a macro class (`SMFIM_*`) names.
    pub fn from_macro_class(class: u32) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|s| s.macro_class() == Some(class))
    }

    /// The `SMFIP_NO*` bit with which a milter asks not to get this stage.
    fn skip_flag(self) -> Option<Protocol> {
        Some(match self {
            Self::Connect => Protocol::NOCONNECT,
            Self::Helo => Protocol::NOHELO,
            Self::Mail => Protocol::NOMAIL,
            Self::Rcpt => Protocol::NORCPT,
            Self::Data => Protocol::NODATA,
            Self::Header => Protocol::NOHDRS,
            Self::EndOfHeaders => Protocol::NOEOH,
            Self::Body => Protocol::NOBODY,
            Self::Unknown => Protocol::NOUNKNOWN,
            Self::EndOfMessage => return None,
        })
    }

    /// The `SMFIP_NR_*` bit with which a milter says it will not answer this stage.
    fn no_reply_flag(self) -> Option<Protocol> {
        Some(match self {
            Self::Connect => Protocol::NR_CONN,
            Self::Helo => Protocol::NR_HELO,
            Self::Mail => Protocol::NR_MAIL,
            Self::Rcpt => Protocol::NR_RCPT,
            Self::Data => Protocol::NR_DATA,
            Self::Header => Protocol::NR_HDR,
            Self::EndOfHeaders => Protocol::NR_EOH,
            Self::Body => Protocol::NR_BODY,
            Self::Unknown => Protocol::NR_UNKN,
            Self::EndOfMessage => return None,
        })
    }

    /// Whether the stage belongs to a message (MAIL to end of message).
    fn in_message(self) -> bool {
        !matches!(self, Self::Connect | Self::Helo | Self::Unknown)
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Defines a bit set over `u32` with named bits.
macro_rules! bits {
    ($(#[$doc:meta])* $name:ident { $($(#[$bdoc:meta])* $bit:ident = $value:expr;)* }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
        pub struct $name(pub u32);

        impl $name {
            $($(#[$bdoc])* pub const $bit: Self = Self($value);)*

            /// Whether every bit of `other` is set here.
            pub const fn contains(self, other: Self) -> bool {
                self.0 & other.0 == other.0
            }

            /// The bits set both here and in `other`.
            pub const fn intersection(self, other: Self) -> Self {
                Self(self.0 & other.0)
            }
        }

        impl BitOr for $name {
            type Output = Self;
            fn bitor(self, other: Self) -> Self {
                Self(self.0 | other.0)
            }
        }
    };
}

bits! {
    /// What a milter may do to a message (`SMFIF_*`): offered by the MTA, chosen by the
    /// milter. A modification the milter did not choose is a protocol error.
    Actions {
        /// `SMFIF_ADDHDRS`: add and insert header fields.
        ADDHDRS = 0x01;
        /// `SMFIF_CHGBODY`: replace the body.
        CHGBODY = 0x02;
        /// `SMFIF_ADDRCPT`: add recipients.
        ADDRCPT = 0x04;
        /// `SMFIF_DELRCPT`: delete recipients.
        DELRCPT = 0x08;
        /// `SMFIF_CHGHDRS`: change and delete header fields.
        CHGHDRS = 0x10;
        /// `SMFIF_QUARANTINE`: quarantine the message.
        QUARANTINE = 0x20;
        /// `SMFIF_CHGFROM`: change the envelope sender.
        CHGFROM = 0x40;
        /// `SMFIF_ADDRCPT_PAR`: add recipients with ESMTP arguments.
        ADDRCPT_PAR = 0x80;
        /// `SMFIF_SETSYMLIST`: name the macros it wants per stage.
        SETSYMLIST = 0x100;
        /// Every action of protocol version 6.
        ALL = 0x1FF;
    }
}

bits! {
    /// The protocol steps a milter may skip or leave unanswered, and extensions
    /// (`SMFIP_*`): offered by the MTA, chosen by the milter.
    Protocol {
        /// `SMFIP_NOCONNECT`: do not send connect.
        NOCONNECT = 0x01;
        /// `SMFIP_NOHELO`: do not send HELO.
        NOHELO = 0x02;
        /// `SMFIP_NOMAIL`: do not send MAIL.
        NOMAIL = 0x04;
        /// `SMFIP_NORCPT`: do not send RCPT.
        NORCPT = 0x08;
        /// `SMFIP_NOBODY`: do not send the body.
        NOBODY = 0x10;
        /// `SMFIP_NOHDRS`: do not send headers.
        NOHDRS = 0x20;
        /// `SMFIP_NOEOH`: do not send end of headers.
        NOEOH = 0x40;
        /// `SMFIP_NR_HDR`: no answer to headers.
        NR_HDR = 0x80;
        /// `SMFIP_NOUNKNOWN`: do not send unknown commands.
        NOUNKNOWN = 0x100;
        /// `SMFIP_NODATA`: do not send DATA.
        NODATA = 0x200;
        /// `SMFIP_SKIP`: the MTA understands `SMFIR_SKIP` (in the body).
        SKIP = 0x400;
        /// `SMFIP_RCPT_REJ`: the milter also wants recipients the server rejected (the
        /// caller's business: the session sends whatever RCPT it is given).
        RCPT_REJ = 0x800;
        /// `SMFIP_NR_CONN`: no answer to connect.
        NR_CONN = 0x1000;
        /// `SMFIP_NR_HELO`: no answer to HELO.
        NR_HELO = 0x2000;
        /// `SMFIP_NR_MAIL`: no answer to MAIL.
        NR_MAIL = 0x4000;
        /// `SMFIP_NR_RCPT`: no answer to RCPT.
        NR_RCPT = 0x8000;
        /// `SMFIP_NR_DATA`: no answer to DATA.
        NR_DATA = 0x10000;
        /// `SMFIP_NR_UNKN`: no answer to unknown commands.
        NR_UNKN = 0x20000;
        /// `SMFIP_NR_EOH`: no answer to end of headers.
        NR_EOH = 0x40000;
        /// `SMFIP_NR_BODY`: no answer to body chunks.
        NR_BODY = 0x80000;
        /// `SMFIP_HDR_LEADSPC`: header values keep their leading space, both ways (the
        /// caller's business: [`Session::header`] sends the value it is given).
        HDR_LEADSPC = 0x100000;
        /// Every step a milter may skip (`SMFIP_NO*`).
        NO_STEPS = 0x37F;
        /// Every step a milter may leave unanswered (`SMFIP_NR_*`).
        NO_REPLIES = 0xFF080;
        /// Every bit of protocol version 6 (`SMFI_CURR_PROT`).
        ALL = 0x1FFFFF;
    }
}

/// What the client offers in its `SMFIC_OPTNEG`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// The actions the milter may choose. Default: all of them.
    pub actions: Actions,
    /// The protocol bits the milter may choose. Default: every step may be skipped or
    /// left unanswered, and `SMFIP_SKIP`; not `SMFIP_RCPT_REJ` or `SMFIP_HDR_LEADSPC`,
    /// which change what the caller sends.
    pub protocol: Protocol,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            actions: Actions::ALL,
            protocol: Protocol::NO_STEPS | Protocol::NO_REPLIES | Protocol::SKIP,
        }
    }
}

/// Where the SMTP client connected from, for [`Session::connect`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer<'a> {
    /// An IPv4 (`'4'`) or IPv6 (`'6'`) address and port.
    Inet(SocketAddr),
    /// A local socket (`'L'`), by path.
    Unix(&'a str),
    /// Unknown (`'U'`): no address is sent.
    Unknown,
}
