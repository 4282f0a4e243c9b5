//! Reading the milter's replies: the negotiation answer, answers to steps, progress and
//! modifications, and what each answer decides.

use super::{Decided, Phase, Session, State};
use crate::milter::event::{Answer, Event, Negotiated, ProtocolError, reply_code};
use crate::milter::wire::Packet;
use crate::milter::{Actions, Protocol, Reply, Stage, VERSION};

impl Session {
    pub(super) fn on_packet(&mut self, packet: &Packet) {
        let result = Reply::decode(packet).and_then(|reply| match self.state {
            State::Negotiating => self.on_negotiate(reply),
            State::Awaiting { stage, then } => self.on_answer(stage, then, reply),
            State::EndOfMessage => self.on_answer(Stage::EndOfMessage, Phase::Connected, reply),
            State::Idle(_) => Err(ProtocolError::Unexpected {
                code: packet.code,
                during: "idle",
            }),
            State::Closed | State::Failed => Ok(()),
        });
        if let Err(e) = result {
            self.fail(e);
        }
    }

    fn on_negotiate(&mut self, reply: Reply) -> Result<(), ProtocolError> {
        let Reply::Negotiate {
            version,
            actions,
            protocol,
            macros,
        } = reply
        else {
            return Err(ProtocolError::Unexpected {
                code: reply.code(),
                during: "negotiation",
            });
        };
        if !(2..=VERSION).contains(&version) {
            return Err(ProtocolError::Version(version));
        }
        if !self.offer.actions.contains(actions) {
            return Err(ProtocolError::Actions(Actions(
                actions.0 & !self.offer.actions.0,
            )));
        }
        if !self.offer.protocol.contains(protocol) {
            let extra = protocol.0 & !self.offer.protocol.0;
            return Err(ProtocolError::Protocol(Protocol(extra)));
        }
        if !macros.is_empty() && !actions.contains(Actions::SETSYMLIST) {
            return Err(ProtocolError::NotNegotiated { code: b'l' });
        }
        let macros = macros
            .into_iter()
            .map(|(class, names)| {
                let stage = Stage::from_macro_class(class).ok_or(ProtocolError::Malformed {
                    code: b'O',
                    why: "unknown macro class",
                })?;
                Ok((stage, names))
            })
            .collect::<Result<_, _>>()?;
        let negotiated = Negotiated {
            version,
            actions,
            protocol,
            macros,
        };
        self.negotiated = Some(negotiated.clone());
        self.state = State::Idle(Phase::Connect);
        self.events.push_back(Event::Negotiated(negotiated));
        Ok(())
    }

    fn on_answer(&mut self, stage: Stage, then: Phase, reply: Reply) -> Result<(), ProtocolError> {
        let code = reply.code();
        let unexpected = ProtocolError::Unexpected {
            code,
            during: stage.as_str(),
        };
        let answer = match reply {
            Reply::Progress => {
                self.events.push_back(Event::Progress);
                return Ok(());
            }
            Reply::Modify(m) if stage == Stage::EndOfMessage => {
                let granted = self.negotiated.as_ref().map_or(Actions(0), |n| n.actions);
                if !granted.contains(m.action()) {
                    return Err(ProtocolError::NotNegotiated { code });
                }
                self.events.push_back(Event::Modify(m));
                return Ok(());
            }
            Reply::Skip if stage == Stage::Body => {
                if !self.offer.protocol.contains(Protocol::SKIP) {
                    return Err(ProtocolError::NotNegotiated { code });
                }
                Answer::Skip
            }
            Reply::Continue => Answer::Continue,
            Reply::Accept => Answer::Accept,
            Reply::Reject => Answer::Reject,
            Reply::Tempfail => Answer::Tempfail,
            Reply::Discard if matches!(stage, Stage::Connect | Stage::Helo) => Answer::Continue,
            Reply::Discard => Answer::Discard,
            Reply::Shutdown => Answer::Shutdown,
            Reply::ConnFail => Answer::ConnFail,
            Reply::ReplyCode(text) => {
                let (code, lines) = reply_code(&text).ok_or(ProtocolError::Malformed {
                    code,
                    why: "not a 4xx or 5xx reply",
                })?;
                Answer::ReplyCode { code, lines }
            }
            Reply::Skip | Reply::Modify(_) | Reply::Negotiate { .. } => return Err(unexpected),
        };
        self.settle(stage, then, &answer);
        Ok(())
    }

    /// Applies the answer to a step: what it decides, and the phase after it. Reports it.
    pub(super) fn settle(&mut self, stage: Stage, then: Phase, answer: &Answer) {
        let mut next = then;
        let for_connection = matches!(stage, Stage::Connect | Stage::Helo);
        // An unknown command counts for the message only when it came inside one.
        let for_message = stage.in_message() || then != Phase::Connected;
        match answer {
            Answer::Continue => {}
            Answer::Skip => self.body_skipped = true,
            Answer::Accept | Answer::Discard if for_connection => {
                self.connection = Some(Decided::Accepted);
            }
            Answer::Accept | Answer::Discard => {
                if for_message {
                    self.message_accepted = true;
                    self.in_message = false;
                }
            }
            Answer::Reject | Answer::Tempfail | Answer::ReplyCode { .. } => {
                if for_connection {
                    self.connection = Some(Decided::Refused);
                } else if !matches!(stage, Stage::Rcpt | Stage::Unknown) {
                    // The message is over: MAIL may start the next.
                    self.message_over();
                    next = Phase::Connected;
                }
            }
            Answer::Shutdown | Answer::ConnFail => self.connection = Some(Decided::Refused),
        }
        if stage == Stage::EndOfMessage {
            self.message_over();
            next = Phase::Connected;
        }
        self.state = State::Idle(next);
        self.events.push_back(Event::Answer {
            stage,
            answer: answer.clone(),
        });
    }

    pub(super) fn fail(&mut self, e: ProtocolError) {
        self.state = State::Failed;
        self.tx.clear();
        self.error = Some(e.clone());
        self.events.push_back(Event::Failed(e));
    }
}
