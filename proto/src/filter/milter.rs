//! What a milter's answers mean for the SMTP client, and its modifications for the
//! stored message: the pure half of asking milters (the protocol is [`crate::milter`]).
//!
//! As Postfix reads them: reject is `550 5.7.1` (`554 5.7.1` for a connection), tempfail
//! `451 4.7.1` (`421 4.7.1` for a connection), a reply code is that reply, discard
//! accepts the message and throws it away, accept ends the milter's part in the message.
//! Header changes become [`Edit`]s; a replaced body replaces the body; a quarantine is
//! recorded. We are not a relay: recipient and sender changes are refused (recorded,
//! logged, not made).

use crate::header::Edit;
use crate::milter::{Answer, Modification, Stage};
use crate::reply::ReplyBuf;

/// What a milter's answer to a step does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Go on (to the next milter, or the next step).
    Continue,
    /// The milter is done with this message (or connection): it gets no more of it.
    Done,
    /// Refuse the step with this reply.
    Refuse(ReplyBuf),
    /// Accept the message and throw it away.
    Discard,
    /// End the SMTP session (`421`).
    Shutdown,
}

/// The effect of `answer` to `stage`.
pub fn effect(stage: Stage, answer: &Answer) -> Effect {
    let connection = matches!(stage, Stage::Connect | Stage::Helo);
    match answer {
        Answer::Continue | Answer::Skip => Effect::Continue,
        Answer::Accept => Effect::Done,
        Answer::Reject => Effect::Refuse(crate::reply::MILTER_REJECTED.into()),
        Answer::Tempfail => Effect::Refuse(crate::reply::MILTER_DEFERRED.into()),
        Answer::ReplyCode { code, lines } => {
            let first = lines.first().map(String::as_str).unwrap_or("");
            let (status, text) = match first.split_once(' ') {
                Some((s, t)) if crate::reply::parse_status(s).is_some() => (s, t),
                _ => ("", first),
            };
            let default = if *code < 500 {
                crate::reply::MILTER_DEFERRED.text
            } else {
                crate::reply::MILTER_REJECTED.text
            };
            match ReplyBuf::new(*code, status, text, default) {
                Some(r) => Effect::Refuse(r),
                None => Effect::Refuse(crate::reply::MILTER_DEFERRED.into()),
            }
        }
        Answer::Discard if connection => Effect::Continue,
        Answer::Discard => Effect::Discard,
        Answer::Shutdown | Answer::ConnFail => Effect::Shutdown,
    }
}

/// A milter's modifications at end of message, sorted out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Header edits, in order.
    pub edits: Vec<Edit>,
    /// The new body, if it was replaced.
    pub body: Option<Vec<u8>>,
    /// Why it asked for a quarantine, if it did.
    pub quarantine: Option<String>,
    /// What was asked and not done (recipient and sender changes), for the log.
    pub refused: Vec<String>,
}

impl Changes {
    /// Takes one modification; a body longer than `max_body` is not kept (refused).
    pub fn add(&mut self, m: Modification, max_body: usize) {
        match m {
            Modification::AddHeader { name, value } => self.edits.push(Edit::Add { name, value }),
            Modification::InsertHeader { index, name, value } => self.edits.push(Edit::Insert {
                index: index as usize,
                name,
                value,
            }),
            Modification::ChangeHeader { index, name, value } => self.edits.push(Edit::Change {
                name,
                nth: (index as usize).max(1),
                value: (!value.is_empty()).then_some(value),
            }),
            Modification::ReplaceBody(piece) => {
                let body = self.body.get_or_insert_with(Vec::new);
                if body.len() + piece.len() > max_body {
                    self.refused
                        .push(format!("a replacement body over {max_body} octets"));
                    self.body = None;
                } else {
                    body.extend_from_slice(&piece);
                }
            }
            Modification::Quarantine(reason) => self.quarantine = Some(reason),
            Modification::AddRecipient(r) => self.refused.push(format!("add recipient {r}")),
            Modification::AddRecipientArgs { recipient, .. } => {
                self.refused.push(format!("add recipient {recipient}"));
            }
            Modification::DeleteRecipient(r) => self.refused.push(format!("delete recipient {r}")),
            Modification::ChangeSender { sender, .. } => {
                self.refused.push(format!("change sender to {sender}"));
            }
        }
    }
}

/// A header field as a milter gets it (`SMFIC_HEADER`): its name, and its value without
/// the space after the colon and without its final line end, folds as LF (as Postfix
/// sends them).
pub fn header_for_milter(field: &[u8]) -> (String, Vec<u8>) {
    let name = String::from_utf8_lossy(crate::header::name(field)).into_owned();
    let raw = memchr::memchr(b':', field).map_or(&[][..], |c| &field[c + 1..]);
    let raw = raw
        .strip_suffix(b"\r\n")
        .or_else(|| raw.strip_suffix(b"\n"))
        .unwrap_or(raw);
    let start = raw
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(raw.len());
    let mut value = Vec::with_capacity(raw.len());
    let mut i = start;
    while i < raw.len() {
        if raw[i] == b'\r' && raw.get(i + 1) == Some(&b'\n') {
            i += 1;
            continue;
        }
        value.push(raw[i]);
        i += 1;
    }
    (name, value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_and_their_replies() {
        let refused = |stage, a: Answer| match effect(stage, &a) {
            Effect::Refuse(r) => r.to_string(),
            e => panic!("{e:?}"),
        };
        assert_eq!(
            refused(Stage::Rcpt, Answer::Reject),
            "550 5.7.1 Error: rejected by a content filter"
        );
        assert_eq!(
            refused(Stage::Mail, Answer::Tempfail),
            "451 4.7.1 Error: a content filter deferred this, try again later"
        );
        assert_eq!(
            refused(
                Stage::EndOfMessage,
                Answer::ReplyCode {
                    code: 554,
                    lines: vec!["5.7.1 Gtube pattern".into()]
                }
            ),
            "554 5.7.1 Gtube pattern"
        );
        assert_eq!(effect(Stage::Connect, &Answer::Discard), Effect::Continue);
        assert_eq!(
            effect(Stage::EndOfMessage, &Answer::Discard),
            Effect::Discard
        );
        assert_eq!(effect(Stage::Rcpt, &Answer::Accept), Effect::Done);
    }

    #[test]
    fn modifications_sorted_out() {
        let mut c = Changes::default();
        c.add(
            Modification::ChangeHeader {
                index: 0,
                name: "Subject".into(),
                value: String::new(),
            },
            10,
        );
        c.add(Modification::AddRecipient("x@y".into()), 10);
        c.add(Modification::ReplaceBody(b"abc".to_vec()), 10);
        c.add(Modification::ReplaceBody(b"def".to_vec()), 10);
        c.add(Modification::Quarantine("virus".into()), 10);
        assert_eq!(
            c.edits,
            [Edit::Change {
                name: "Subject".into(),
                nth: 1,
                value: None
            }]
        );
        assert_eq!(c.body.as_deref(), Some(&b"abcdef"[..]));
        assert_eq!(c.quarantine.as_deref(), Some("virus"));
        assert_eq!(c.refused, ["add recipient x@y"]);
        c.add(Modification::ReplaceBody(vec![0; 20]), 10);
        assert_eq!(c.body, None);
    }

    #[test]
    fn header_values_as_postfix_sends_them() {
        let (name, value) = header_for_milter(b"Subject:  hello\r\n\tworld\r\n");
        assert_eq!(name, "Subject");
        assert_eq!(value, b"hello\n\tworld");
    }
}
