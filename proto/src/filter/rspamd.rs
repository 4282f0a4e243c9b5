//! rspamd's HTTP protocol, the pure half: the request's headers for a message's
//! envelope, and what its `/checkv2` answer means for the message: the reply, the
//! header edits, and the spam and virus verdicts.
//!
//! The answer decides as rspamd's own milter proxy does: `reject` is `550 5.7.1` (with
//! rspamd's `smtp_message` when it gives one), `soft reject` is `451 4.7.1`, `greylist`
//! is accepted unless greylisting is on (then `451 4.7.1`), `add header` adds
//! `X-Spam: Yes`, `rewrite subject` rewrites the subject as rspamd says, `no action`
//! accepts. rspamd's `milter.add_headers` and `remove_headers` are applied too.

use crate::delivery::Envelope;
use crate::header::Edit;
use crate::reply::ReplyBuf;
use crate::verdict::{Outcome, Result};

/// The request headers rspamd reads the envelope from: `From` (the sender, bare),
/// one `Rcpt` per recipient, `IP` (the real client), `Helo`, `Hostname` (when a proxy
/// named the client), `Queue-Id`, `MTA-Name` (our host name), the TLS version and
/// cipher, and `Password` when set.
pub fn request_headers(
    env: &Envelope,
    host: &str,
    password: Option<&str>,
) -> Vec<(&'static str, String)> {
    let mut h = vec![("From", crate::deliver::sender_address(&env.from))];
    h.extend(env.recipients.iter().map(|r| ("Rcpt", r.address.clone())));
    h.push(("IP", env.client_ip.to_string()));
    h.push(("Helo", env.helo.clone()));
    if let Some(name) = &env.client_name {
        h.push(("Hostname", name.clone()));
    }
    h.push(("Queue-Id", env.id.to_string()));
    h.push(("MTA-Name", host.to_string()));
    if let Some(tls) = &env.tls {
        h.push(("TLS-Version", tls.version.clone()));
        h.push(("TLS-Cipher", tls.cipher.clone()));
    }
    if let Some(p) = password {
        h.push(("Password", p.to_string()));
    }
    h
}

/// rspamd's recommended action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// `no action`.
    NoAction,
    /// `greylist`.
    Greylist,
    /// `add header`.
    AddHeader,
    /// `rewrite subject`.
    RewriteSubject,
    /// `soft reject`.
    SoftReject,
    /// `reject`.
    Reject,
}

impl Action {
    /// Parses rspamd's spelling (`add header`, also `add_header`).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.replace('_', " ").as_str() {
            "no action" => Self::NoAction,
            "greylist" => Self::Greylist,
            "add header" => Self::AddHeader,
            "rewrite subject" => Self::RewriteSubject,
            "soft reject" => Self::SoftReject,
            "reject" => Self::Reject,
            _ => return None,
        })
    }

    /// rspamd's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoAction => "no action",
            Self::Greylist => "greylist",
            Self::AddHeader => "add header",
            Self::RewriteSubject => "rewrite subject",
            Self::SoftReject => "soft reject",
            Self::Reject => "reject",
        }
    }
}

/// One symbol of rspamd's answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Symbol {
    /// Its name (`R_SPF_ALLOW`, `GTUBE`, `CLAM_VIRUS`).
    pub name: String,
    /// Its score.
    pub score: f64,
    /// Its options (a virus scanner's: the viruses' names).
    pub options: Vec<String>,
}

/// rspamd's answer to `/checkv2`, as far as we use it.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    /// The action.
    pub action: Action,
    /// The message's score.
    pub score: f64,
    /// The score of the `reject` action.
    pub required: f64,
    /// The symbols, in rspamd's order.
    pub symbols: Vec<Symbol>,
    /// The text rspamd wants in an SMTP refusal.
    pub smtp_message: Option<String>,
    /// The new subject, for `rewrite subject`.
    pub subject: Option<String>,
    /// The header edits rspamd asks for (its `milter` block).
    pub edits: Vec<Edit>,
}

/// What the answer means for the message.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Accept it, with these header edits.
    Accept(Vec<Edit>),
    /// Refuse it with this reply (`550 5.7.1`, or `451 4.7.1`).
    Refuse(ReplyBuf),
}

/// The text of rspamd's answer when its own task timed out (with its option
/// `soft_reject_on_timeout = true`: without it, rspamd's partial answer cannot be told
/// from a real one).
const TIMED_OUT: &str = "timeout processing message";

/// Parses `/checkv2`'s JSON. An answer without a known action, or one rspamd gave after
/// its own time-out (a partial result, which it marks with `timeout processing message` when
/// `soft_reject_on_timeout` is on), is an error: the message was not checked.
pub fn parse(body: &[u8]) -> std::result::Result<Answer, String> {
    let json: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("rspamd answered no JSON: {e}"))?;
    if let Some(e) = json.get("error").and_then(|e| e.as_str()) {
        return Err(format!("rspamd answered an error: {e}"));
    }
    let action = json
        .get("action")
        .and_then(|a| a.as_str())
        .ok_or("rspamd's answer has no action")?;
    let action =
        Action::parse(action).ok_or_else(|| format!("unknown rspamd action {action:?}"))?;
    let num = |k: &str| {
        json.get(k)
            .and_then(serde_json::Value::as_f64)
            .unwrap_or(0.0)
    };
    let mut symbols: Vec<Symbol> = json
        .get("symbols")
        .and_then(|s| s.as_object())
        .map(|m| {
            m.iter()
                .map(|(name, v)| Symbol {
                    name: name.clone(),
                    score: v.get("score").and_then(|s| s.as_f64()).unwrap_or(0.0),
                    options: v
                        .get("options")
                        .and_then(|o| o.as_array())
                        .map(|a| {
                            a.iter()
                                .filter_map(|o| o.as_str().map(str::to_string))
                                .collect()
                        })
                        .unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default();
    // The strongest first, for the renderings.
    symbols.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.name.cmp(&b.name)));
    let text = |v: Option<&serde_json::Value>| {
        v.and_then(|s| s.as_str())
            .map(str::to_string)
            .filter(|s| !s.is_empty())
    };
    let smtp_message = text(json.pointer("/messages/smtp_message"));
    if action == Action::SoftReject && smtp_message.as_deref() == Some(TIMED_OUT) {
        return Err("rspamd timed out: a partial result".into());
    }
    Ok(Answer {
        action,
        score: num("score"),
        required: num("required_score"),
        symbols,
        smtp_message,
        subject: text(json.get("subject")),
        edits: json.get("milter").map(milter_edits).unwrap_or_default(),
    })
}

/// rspamd's `milter` block as edits: `remove_headers` (`name: order`, 0 for all) first,
/// then `add_headers` (`name: value`, `name: {value, order}`, or a list of those; an
/// order puts the field at that place, else it goes last).
fn milter_edits(milter: &serde_json::Value) -> Vec<Edit> {
    let mut edits = Vec::new();
    if let Some(remove) = milter.get("remove_headers").and_then(|r| r.as_object()) {
        for (name, nth) in remove {
            edits.push(Edit::Remove {
                name: name.clone(),
                nth: nth.as_i64().unwrap_or(0),
            });
        }
    }
    if let Some(add) = milter.get("add_headers").and_then(|a| a.as_object()) {
        for (name, v) in add {
            let items = match v {
                serde_json::Value::Array(a) => a.iter().collect(),
                one => vec![one],
            };
            for item in items {
                let (value, order) = match item {
                    serde_json::Value::String(s) => (s.clone(), None),
                    o => (
                        o.get("value")
                            .and_then(|v| v.as_str())
                            .unwrap_or_default()
                            .to_string(),
                        o.get("order").and_then(serde_json::Value::as_u64),
                    ),
                };
                edits.push(match order {
                    Some(index) => Edit::Insert {
                        index: index as usize,
                        name: name.clone(),
                        value,
                    },
                    None => Edit::Add {
                        name: name.clone(),
                        value,
                    },
                });
            }
        }
    }
    edits
}

impl Answer {
    /// What the answer means for the message; `greylist` is `GSMTP_GREYLIST`.
    pub fn decide(&self, greylist: bool) -> Decision {
        use crate::reply::{FILTER_DEFERRED, GREYLISTED, SPAM_REJECTED};
        let refuse = |r: crate::reply::Reply| {
            let text = self.smtp_message.as_deref().unwrap_or("");
            Decision::Refuse(
                ReplyBuf::new(r.code, r.status, text, r.text).unwrap_or_else(|| r.into()),
            )
        };
        match self.action {
            Action::Reject => refuse(SPAM_REJECTED),
            Action::SoftReject => refuse(FILTER_DEFERRED),
            Action::Greylist if greylist => Decision::Refuse(GREYLISTED.into()),
            Action::RewriteSubject => {
                let mut edits = self.edits.clone();
                if let Some(subject) = &self.subject {
                    edits.push(Edit::Change {
                        name: "Subject".into(),
                        nth: 1,
                        value: Some(subject.clone()),
                    });
                }
                Decision::Accept(edits)
            }
            Action::Greylist | Action::AddHeader | Action::NoAction => {
                Decision::Accept(self.edits.clone())
            }
        }
    }

    /// The spam verdict: `pass` for no action, `neutral` (SES's `GRAY`) for greylist
    /// and soft reject, `fail` for add header, rewrite subject and reject; with the
    /// action, the score, the required score and the symbols' names.
    pub fn spam(&self) -> Result {
        let outcome = match self.action {
            Action::NoAction => Outcome::Pass,
            Action::Greylist | Action::SoftReject => Outcome::Neutral,
            Action::AddHeader | Action::RewriteSubject | Action::Reject => Outcome::Fail,
        };
        let names: Vec<&str> = self.symbols.iter().map(|s| s.name.as_str()).collect();
        Result::new(outcome)
            .with("action", self.action.as_str())
            .with("score", format!("{:.2}", self.score))
            .with("required", format!("{:.2}", self.required))
            .with("symbols", names.join(","))
    }

    /// The virus verdict, when a virus scanner answered through rspamd: a symbol ending
    /// in `_VIRUS` (ClamAV's `CLAM_VIRUS`) is `fail`, with its options as the viruses'
    /// names; one ending in `_VIRUS_FAIL` means the scan failed (`temperror`); none
    /// leaves it unknown.
    pub fn virus(&self) -> Option<Result> {
        if let Some(s) = self.symbols.iter().find(|s| s.name.ends_with("_VIRUS")) {
            return Some(
                Result::new(Outcome::Fail)
                    .with("names", s.options.join(","))
                    .with("symbol", s.name.clone()),
            );
        }
        self.symbols
            .iter()
            .find(|s| s.name.ends_with("_VIRUS_FAIL"))
            .map(|s| Result::new(Outcome::TempError).because(format!("{} failed", s.name)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REJECT: &str = r#"{"is_skipped":false,"score":1001.5,"required_score":15.0,
        "action":"reject","symbols":{"GTUBE":{"name":"GTUBE","score":0.0},
        "R_SPF_NA":{"name":"R_SPF_NA","score":1.5,"options":["x"]}},
        "messages":{"smtp_message":"Gtube pattern"},"message-id":"a@b"}"#;

    #[test]
    fn reject_gives_550_with_rspamd_text() {
        let a = parse(REJECT.as_bytes()).unwrap();
        assert_eq!(a.action, Action::Reject);
        assert_eq!(a.symbols[0].name, "R_SPF_NA", "strongest first");
        match a.decide(false) {
            Decision::Refuse(r) => assert_eq!(r.to_string(), "550 5.7.1 Gtube pattern"),
            d => panic!("{d:?}"),
        }
        let spam = a.spam();
        assert_eq!(spam.outcome, Outcome::Fail);
        assert_eq!(spam.property("score"), Some("1001.50"));
        assert_eq!(spam.property("symbols"), Some("R_SPF_NA,GTUBE"));
        assert_eq!(a.virus(), None);
    }

    #[test]
    fn actions_and_their_replies() {
        let answer = |action: &str| {
            let json = format!(
                r#"{{"action":"{action}","score":7,"required_score":15,"subject":"[SPAM] hi",
                   "milter":{{"add_headers":{{"X-Spamd-Bar":"+++","X-A":[{{"value":"1","order":0}},"2"]}},
                   "remove_headers":{{"X-Spam":0}}}}}}"#
            );
            parse(json.as_bytes()).unwrap()
        };
        let edits = vec![
            Edit::Remove {
                name: "X-Spam".into(),
                nth: 0,
            },
            Edit::Insert {
                index: 0,
                name: "X-A".into(),
                value: "1".into(),
            },
            Edit::Add {
                name: "X-A".into(),
                value: "2".into(),
            },
            Edit::Add {
                name: "X-Spamd-Bar".into(),
                value: "+++".into(),
            },
        ];
        assert_eq!(
            answer("no action").decide(true),
            Decision::Accept(edits.clone())
        );
        assert_eq!(
            answer("add header").decide(false),
            Decision::Accept(edits.clone())
        );
        assert_eq!(
            answer("greylist").decide(false),
            Decision::Accept(edits.clone())
        );
        let refused = |d: Decision| match d {
            Decision::Refuse(r) => r.to_string(),
            d => panic!("{d:?}"),
        };
        assert_eq!(
            refused(answer("greylist").decide(true)),
            "451 4.7.1 Error: greylisted, try again later"
        );
        assert_eq!(
            refused(answer("soft reject").decide(false)),
            "451 4.7.1 Error: try again later"
        );
        let Decision::Accept(rewritten) = answer("rewrite subject").decide(false) else {
            panic!()
        };
        assert_eq!(
            rewritten.last(),
            Some(&Edit::Change {
                name: "Subject".into(),
                nth: 1,
                value: Some("[SPAM] hi".into())
            })
        );
        assert_eq!(answer("greylist").spam().outcome, Outcome::Neutral);
        assert_eq!(answer("no action").spam().outcome, Outcome::Pass);
    }

    #[test]
    fn errors_and_partial_results_are_not_verdicts() {
        assert!(parse(b"not json").is_err());
        assert!(parse(br#"{"error":"bad request"}"#).is_err());
        assert!(parse(br#"{"action":"discard"}"#).is_err());
        assert!(parse(br#"{"score":1}"#).is_err());
        let partial = br#"{"action":"soft reject","score":2,
            "messages":{"smtp_message":"timeout processing message"}}"#;
        assert!(parse(partial).unwrap_err().contains("partial"));
    }

    #[test]
    fn a_virus_symbol_is_the_virus_verdict() {
        let a = parse(
            br#"{"action":"reject","score":20,"required_score":15,
                 "symbols":{"CLAM_VIRUS":{"score":20,"options":["Eicar-Signature"]}}}"#,
        )
        .unwrap();
        let v = a.virus().unwrap();
        assert_eq!(v.outcome, Outcome::Fail);
        assert_eq!(v.property("names"), Some("Eicar-Signature"));
        let failed =
            parse(br#"{"action":"no action","score":0,"symbols":{"CLAM_VIRUS_FAIL":{"score":0}}}"#)
                .unwrap();
        assert_eq!(failed.virus().unwrap().outcome, Outcome::TempError);
    }
}
