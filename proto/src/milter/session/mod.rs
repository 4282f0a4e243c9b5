//! [`Session`]: one connection to a milter, as a pure state machine. This file holds the
//! state and the commands; `recv` reads the milter's replies.

mod recv;

use std::collections::VecDeque;
use std::net::SocketAddr;

use super::event::{Answer, Event, Negotiated, ProtocolError, Step, UsageError};
use super::wire::{Decoder, MAX_PACKET};
use super::{Actions, Command, Family, MAX_CHUNK, Options, Peer, Protocol, Stage, VERSION};

/// Where the SMTP session is, as far as the milter has been told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Before connect.
    Connect,
    /// Between messages: HELO, MAIL or unknown commands come next.
    Connected,
    /// After MAIL: RCPT, DATA or unknown commands.
    Envelope,
    /// After DATA: header fields and end of headers.
    Headers,
    /// After end of headers: body chunks and end of message.
    Body,
}

/// Where the session is. Returned by [`Session::state`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// `SMFIC_OPTNEG` is queued or sent; the milter's answer is due.
    Negotiating,
    /// Nothing is due: the next step (of this phase) can be sent.
    Idle(Phase),
    /// A step was sent and its answer is due; then the phase is `then`.
    Awaiting {
        /// The step.
        stage: Stage,
        /// The phase after it.
        then: Phase,
    },
    /// End of message was sent: modifications, then the final answer, are due.
    EndOfMessage,
    /// Quit was sent (or queued): nothing more is sent or read.
    Closed,
    /// The milter broke the protocol or went away ([`Session::error`]).
    Failed,
}

/// A final answer for the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Decided {
    /// Accepted: no more steps are sent (they are answered `Continue`).
    Accepted,
    /// Refused: only quit is left.
    Refused,
}

/// One connection to a milter: the MTA side of the protocol, without I/O.
///
/// Its methods, by kind (as in quinn-proto):
///
/// - (A) getters: [`state`](Self::state), [`negotiated`](Self::negotiated),
///   [`wants`](Self::wants), [`error`](Self::error), [`is_closed`](Self::is_closed);
/// - (B) inputs: [`handle_received`](Self::handle_received) (octets read from the milter,
///   in any pieces) and [`handle_eof`](Self::handle_eof);
/// - (C) commands, one per step, each answered by one [`Event::Answer`]:
///   [`connect`](Self::connect), [`helo`](Self::helo), [`mail`](Self::mail),
///   [`rcpt`](Self::rcpt), [`data`](Self::data), [`header`](Self::header),
///   [`end_of_headers`](Self::end_of_headers), [`body`](Self::body),
///   [`end_of_message`](Self::end_of_message), [`unknown`](Self::unknown); and, never
///   answered, [`macros`](Self::macros), [`abort`](Self::abort), [`quit`](Self::quit);
/// - (D) outputs: [`poll_transmit`](Self::poll_transmit) (octets to write to the milter)
///   and [`poll_event`](Self::poll_event).
///
/// One answer is due at a time: a step called before the previous one is answered fails
/// with [`UsageError::Busy`].
#[derive(Debug)]
pub struct Session {
    /// What was offered in the negotiation.
    offer: Options,
    state: State,
    negotiated: Option<Negotiated>,
    /// A final answer for the connection.
    connection: Option<Decided>,
    /// The milter accepted or discarded the message: its later steps are not sent.
    message_accepted: bool,
    /// The milter said skip to a body chunk: no more chunks of this message are sent.
    body_skipped: bool,
    /// The milter is in a message (a step of one was sent, and no final answer came), so
    /// an abort must be sent to end it.
    in_message: bool,
    decoder: Decoder,
    tx: Vec<u8>,
    events: VecDeque<Event>,
    error: Option<ProtocolError>,
}

impl Session {
    /// A session that opens with `SMFIC_OPTNEG`, offering `options` (bits outside protocol
    /// version 6 are dropped). Connect the socket, then send what
    /// [`poll_transmit`](Self::poll_transmit) gives.
    pub fn new(options: Options) -> Self {
        let offer = Options {
            actions: options.actions.intersection(Actions::ALL),
            protocol: options.protocol.intersection(Protocol::ALL),
        };
        let mut session = Self {
            offer,
            state: State::Negotiating,
            negotiated: None,
            connection: None,
            message_accepted: false,
            body_skipped: false,
            in_message: false,
            decoder: Decoder::new(),
            tx: Vec::new(),
            events: VecDeque::new(),
            error: None,
        };
        Command::Negotiate {
            version: VERSION,
            actions: offer.actions,
            protocol: offer.protocol,
        }
        .encode(&mut session.tx);
        session
    }

    // (A) getters

    /// Where the session is.
    pub fn state(&self) -> State {
        self.state
    }

    /// The negotiation's result, once the milter has answered it.
    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.negotiated.as_ref()
    }

    /// How the milter broke the protocol, if it did.
    pub fn error(&self) -> Option<&ProtocolError> {
        self.error.as_ref()
    }

    /// Whether the session has ended: quit, or failed. Close the socket after sending
    /// what [`poll_transmit`](Self::poll_transmit) still gives.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed | State::Failed)
    }

    /// Whether the milter would be sent `stage` now: it has not asked to skip it (or
    /// negotiation is still under way), it has not accepted or refused the connection or
    /// accepted the message (for a step of the message), or said skip (for the body), and
    /// the session is alive. Lets the caller avoid work the milter does not want.
    pub fn wants(&self, stage: Stage) -> bool {
        if self.is_closed() || self.connection.is_some() {
            return false;
        }
        if stage.in_message() && self.message_accepted {
            return false;
        }
        if stage == Stage::Body && self.body_skipped {
            return false;
        }
        !self.negotiated.as_ref().is_some_and(|n| n.skips(stage))
    }

    // (B) inputs

    /// Takes octets read from the milter, in any pieces: complete replies become events.
    /// Ignored once the session is closed.
    pub fn handle_received(&mut self, mut input: &[u8]) {
        while !input.is_empty() && !self.is_closed() {
            let (used, found) = self.decoder.decode(input);
            input = &input[used..];
            match found {
                None => {}
                Some(Ok(packet)) => self.on_packet(&packet),
                Some(Err(e)) => self.fail(e),
            }
        }
    }

    /// The milter closed its side: unless the session had ended, it fails
    /// ([`ProtocolError::Eof`]).
    pub fn handle_eof(&mut self) {
        if !self.is_closed() {
            self.fail(ProtocolError::Eof);
        }
    }

    // (C) commands

    /// `SMFIC_CONNECT`: the SMTP client connected, with this host name (`[address]` when
    /// it has none) from `peer`. The first step.
    pub fn connect(&mut self, hostname: &str, peer: Peer<'_>) -> Result<Step, UsageError> {
        no_nul(hostname)?;
        if let Peer::Unix(path) = peer {
            no_nul(path)?;
        }
        self.ready(&[Phase::Connect])?;
        let text = match peer {
            Peer::Inet(address) => address.ip().to_string(),
            Peer::Unix(_) | Peer::Unknown => String::new(),
        };
        let family = match peer {
            Peer::Inet(SocketAddr::V4(a)) => Family::Inet {
                port: a.port(),
                address: text.as_bytes(),
            },
            Peer::Inet(SocketAddr::V6(a)) => Family::Inet6 {
                port: a.port(),
                address: text.as_bytes(),
            },
            Peer::Unix(path) => Family::Unix {
                port: 0,
                path: path.as_bytes(),
            },
            Peer::Unknown => Family::Unknown,
        };
        let hostname = hostname.as_bytes();
        let command = Command::Connect { hostname, family };
        self.step(Stage::Connect, Phase::Connected, &command)
    }

    /// `SMFIC_HELO`: the HELO or EHLO argument. Between messages (abort one first).
    pub fn helo(&mut self, name: &str) -> Result<Step, UsageError> {
        no_nul(name)?;
        self.ready(&[Phase::Connected])?;
        self.step(
            Stage::Helo,
            Phase::Connected,
            &Command::Helo(name.as_bytes()),
        )
    }

    /// `SMFIC_MAIL`: a message begins, from `sender` (as the client gave it, in angle
    /// brackets) with these ESMTP arguments (`SIZE=1000`, ...).
    pub fn mail(&mut self, sender: &str, args: &[&str]) -> Result<Step, UsageError> {
        no_nul(sender)?;
        args.iter().try_for_each(no_nul)?;
        self.ready(&[Phase::Connected])?;
        self.message_over();
        let argv = std::iter::once(sender).chain(args.iter().copied());
        let command = Command::Mail(argv.map(str::as_bytes).collect());
        self.step(Stage::Mail, Phase::Envelope, &command)
    }

    /// `SMFIC_RCPT`: a recipient (in angle brackets) with its ESMTP arguments. A reject
    /// refuses this recipient only.
    pub fn rcpt(&mut self, recipient: &str, args: &[&str]) -> Result<Step, UsageError> {
        no_nul(recipient)?;
        args.iter().try_for_each(no_nul)?;
        self.ready(&[Phase::Envelope])?;
        let argv = std::iter::once(recipient).chain(args.iter().copied());
        let command = Command::Rcpt(argv.map(str::as_bytes).collect());
        self.step(Stage::Rcpt, Phase::Envelope, &command)
    }

    /// `SMFIC_DATA`: the message's text follows.
    pub fn data(&mut self) -> Result<Step, UsageError> {
        self.ready(&[Phase::Envelope])?;
        self.step(Stage::Data, Phase::Headers, &Command::Data)
    }

    /// `SMFIC_HEADER`: one header field, its value unfolded or not as the caller chooses,
    /// without its leading space unless `SMFIP_HDR_LEADSPC` was negotiated.
    pub fn header(&mut self, name: &str, value: &[u8]) -> Result<Step, UsageError> {
        no_nul(name)?;
        no_nul(value)?;
        self.ready(&[Phase::Headers])?;
        let command = Command::Header {
            name: name.as_bytes(),
            value,
        };
        self.step(Stage::Header, Phase::Headers, &command)
    }

    /// `SMFIC_EOH`: the header section ended.
    pub fn end_of_headers(&mut self) -> Result<Step, UsageError> {
        self.ready(&[Phase::Headers])?;
        self.step(Stage::EndOfHeaders, Phase::Body, &Command::EndOfHeaders)
    }

    /// `SMFIC_BODY`: the next piece of the body, at most [`MAX_CHUNK`] octets, with CRLF
    /// line ends.
    pub fn body(&mut self, chunk: &[u8]) -> Result<Step, UsageError> {
        if chunk.len() > MAX_CHUNK {
            return Err(UsageError::TooLarge);
        }
        self.ready(&[Phase::Body])?;
        self.step(Stage::Body, Phase::Body, &Command::Body(chunk))
    }

    /// `SMFIC_BODYEOB`: the message ended. The milter's modifications come as
    /// [`Event::Modify`], then its answer; after it, MAIL may start the next message.
    pub fn end_of_message(&mut self) -> Result<Step, UsageError> {
        self.ready(&[Phase::Body])?;
        self.step(
            Stage::EndOfMessage,
            Phase::Connected,
            &Command::EndOfMessage,
        )
    }

    /// `SMFIC_UNKNOWN`: a command the server does not know, as received (without CRLF),
    /// outside a message's text. A reject refuses this command only.
    pub fn unknown(&mut self, command: &[u8]) -> Result<Step, UsageError> {
        no_nul(command)?;
        let phase = self.ready(&[Phase::Connected, Phase::Envelope])?;
        self.step(Stage::Unknown, phase, &Command::Unknown(command))
    }

    /// `SMFIC_MACRO`: macro values (`{client_addr}`, `i`, ...) for `stage`, sent before
    /// its step (even when the milter skips that step, as Postfix does). Not answered.
    /// Returns whether anything was sent: nothing is for an empty list, or when the
    /// milter has accepted the connection or the message.
    pub fn macros(&mut self, stage: Stage, pairs: &[(&str, &str)]) -> Result<bool, UsageError> {
        if stage.macro_class().is_none() {
            return Err(UsageError::NoMacros);
        }
        pairs
            .iter()
            .try_for_each(|(n, v)| no_nul(n).and_then(|()| no_nul(v)))?;
        self.idle()?;
        if self.connection == Some(Decided::Refused) {
            return Err(UsageError::Decided);
        }
        if pairs.is_empty()
            || self.connection.is_some()
            || (stage.in_message() && self.message_accepted)
        {
            return Ok(false);
        }
        let pairs = pairs.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes()));
        self.send(&Command::Macro {
            stage: stage.code(),
            pairs: pairs.collect(),
        })?;
        Ok(true)
    }

    /// `SMFIC_ABORT`: the current message is abandoned (RSET, a new HELO, a refused
    /// DATA...); MAIL may start another. Not answered. Returns whether it was sent: only
    /// when the milter is inside a message.
    pub fn abort(&mut self) -> Result<bool, UsageError> {
        let phase = self.idle()?;
        let sent = self.in_message;
        if sent {
            self.send(&Command::Abort)?;
        }
        self.message_over();
        if phase != Phase::Connect {
            self.state = State::Idle(Phase::Connected);
        }
        Ok(sent)
    }

    /// `SMFIC_QUIT`: the session ends (whatever is due is no longer awaited). Send what
    /// [`poll_transmit`](Self::poll_transmit) gives, then close the socket. Does nothing
    /// once the session has ended.
    pub fn quit(&mut self) {
        if !self.is_closed() {
            Command::Quit.encode(&mut self.tx);
            self.state = State::Closed;
        }
    }

    // (D) outputs

    /// Appends the octets to write to the milter to `out`; returns how many.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) -> usize {
        let n = self.tx.len();
        out.append(&mut self.tx);
        n
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    // Internals

    /// The phase, if a step can be sent now.
    fn idle(&self) -> Result<Phase, UsageError> {
        match self.state {
            State::Idle(phase) => Ok(phase),
            State::Closed | State::Failed => Err(UsageError::Closed),
            State::Negotiating | State::Awaiting { .. } | State::EndOfMessage => {
                Err(UsageError::Busy)
            }
        }
    }

    /// The phase, if a step of one of the phases `from` can be sent now.
    fn ready(&self, from: &[Phase]) -> Result<Phase, UsageError> {
        let phase = self.idle()?;
        if self.connection == Some(Decided::Refused) {
            return Err(UsageError::Decided);
        }
        if !from.contains(&phase) {
            return Err(UsageError::OutOfOrder);
        }
        Ok(phase)
    }

    /// Queues a command, unless it is too large.
    fn send(&mut self, command: &Command<'_>) -> Result<(), UsageError> {
        let at = self.tx.len();
        command.encode(&mut self.tx);
        if self.tx.len() - at - 4 > MAX_PACKET {
            self.tx.truncate(at);
            return Err(UsageError::TooLarge);
        }
        Ok(())
    }

    /// Sends a step (or not, if the milter does not want it), and says what is due.
    fn step(
        &mut self,
        stage: Stage,
        then: Phase,
        command: &Command<'_>,
    ) -> Result<Step, UsageError> {
        if !self.wants(stage) {
            self.settle(stage, then, &Answer::Continue);
            return Ok(Step::Skipped);
        }
        self.send(command)?;
        if stage.in_message() && stage != Stage::EndOfMessage {
            self.in_message = true;
        }
        if self.negotiated.as_ref().is_some_and(|n| n.no_reply(stage)) {
            self.settle(stage, then, &Answer::Continue);
            return Ok(Step::NoReply);
        }
        self.state = match stage {
            Stage::EndOfMessage => State::EndOfMessage,
            _ => State::Awaiting { stage, then },
        };
        Ok(Step::Sent)
    }

    /// The milter is outside any message.
    pub(super) fn message_over(&mut self) {
        self.message_accepted = false;
        self.body_skipped = false;
        self.in_message = false;
    }
}

/// Strings go NUL-terminated: they cannot hold one.
fn no_nul(s: impl AsRef<[u8]>) -> Result<(), UsageError> {
    match memchr::memchr(0, s.as_ref()) {
        Some(_) => Err(UsageError::Nul),
        None => Ok(()),
    }
}
