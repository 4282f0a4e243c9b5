//! The verdict on a message: who really sent it (SPF, DKIM, DMARC, ARC), what the
//! content filters said of it (spam, virus, milters), as data, and its renderings. The
//! checks themselves run in `proto::io`; this is what they produce and what every
//! destination hands on.
//!
//! Each check has an RFC 8601 result word ([`Outcome`]) and the SES-style summary
//! ([`Summary`]) derived from it; DMARC adds the domain's [`Policy`]. One fact stands
//! above the rest: [`Verdict::authenticated_from`], the `From:` domain when DMARC passed
//! for it (an SPF or DKIM pass aligned with it), the one question applications ask: is
//! the `From:` really who it says?
//!
//! A check that was not asked for is absent (`None`), which renders as nothing at all and
//! as `DISABLED` in summaries: a verdict never says `pass` for a check that did not run.

use std::fmt;

/// A check's result, in RFC 8601's words.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// It passed.
    Pass,
    /// It failed.
    Fail,
    /// SPF's weak fail (`~all`).
    SoftFail,
    /// The domain makes no assertion (SPF `?all`).
    Neutral,
    /// Nothing to check: no record, no signature.
    None,
    /// A transient error (DNS did not answer in time): the check could not complete.
    TempError,
    /// A permanent error (a malformed record, a lookup loop).
    PermError,
}

impl Outcome {
    /// The word in `Authentication-Results`: `pass`, `fail`, `softfail`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Fail => "fail",
            Self::SoftFail => "softfail",
            Self::Neutral => "neutral",
            Self::None => "none",
            Self::TempError => "temperror",
            Self::PermError => "permerror",
        }
    }

    /// The SES-style summary of this result.
    pub fn summary(self) -> Summary {
        match self {
            Self::Pass => Summary::Pass,
            Self::Fail => Summary::Fail,
            Self::SoftFail | Self::Neutral | Self::None | Self::PermError => Summary::Gray,
            Self::TempError => Summary::ProcessingFailed,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Amazon SES's summary of a check: `PASS`, `FAIL`, `GRAY` (neither: softfail, neutral,
/// none, permerror), `PROCESSING_FAILED` (temperror), `DISABLED` (not checked).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Summary {
    /// `PASS`.
    Pass,
    /// `FAIL`.
    Fail,
    /// `GRAY`.
    Gray,
    /// `PROCESSING_FAILED`.
    ProcessingFailed,
    /// `DISABLED`.
    Disabled,
}

impl Summary {
    /// `PASS`, `FAIL`, `GRAY`, `PROCESSING_FAILED` or `DISABLED`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "PASS",
            Self::Fail => "FAIL",
            Self::Gray => "GRAY",
            Self::ProcessingFailed => "PROCESSING_FAILED",
            Self::Disabled => "DISABLED",
        }
    }
}

/// A DMARC policy (`p=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Policy {
    /// `p=none`: monitor only.
    None,
    /// `p=quarantine`.
    Quarantine,
    /// `p=reject`.
    Reject,
}

impl Policy {
    /// `none`, `quarantine` or `reject`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Quarantine => "quarantine",
            Self::Reject => "reject",
        }
    }
}

/// One check's result: its outcome, the properties it was about (RFC 8601's
/// `ptype.property=value`, such as `smtp.mailfrom` or `header.d`), and why, in a few
/// words, when it did not pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Result {
    /// The outcome.
    pub outcome: Outcome,
    /// `(property, value)` pairs, in order: `("smtp.mailfrom", "a@b.example")`.
    pub properties: Vec<(&'static str, String)>,
    /// Why, when it did not pass (`body hash did not verify`).
    pub reason: Option<String>,
}

impl Result {
    /// A result with no properties and no reason.
    pub fn new(outcome: Outcome) -> Self {
        Self {
            outcome,
            properties: Vec::new(),
            reason: None,
        }
    }

    /// With the property `name=value` added.
    #[must_use]
    pub fn with(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.properties.push((name, value.into()));
        self
    }

    /// With a reason.
    #[must_use]
    pub fn because(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    /// The value of property `name`, if set.
    pub fn property(&self, name: &str) -> Option<&str> {
        self.properties
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// `pass smtp.mailfrom=a@b.example`, or `fail (body hash did not verify)
    /// header.d=b.example header.s=s1`: the result word first, as in
    /// `Authentication-Results` after the method.
    pub fn describe(&self) -> String {
        let mut out = String::from(self.outcome.as_str());
        if let Some(r) = &self.reason {
            out.push_str(" (");
            out.push_str(&comment(r));
            out.push(')');
        }
        for (name, value) in &self.properties {
            out.push(' ');
            out.push_str(name);
            out.push('=');
            out.push_str(&property_value(value));
        }
        out
    }
}

/// The checks a server runs (`GSMTP_VERIFY`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Checks {
    /// SPF for the MAIL FROM domain (or the HELO name for `<>`).
    pub spf: bool,
    /// Every DKIM signature.
    pub dkim: bool,
    /// DMARC for the `From:` domain, with alignment and its policy.
    pub dmarc: bool,
    /// ARC chain validation.
    pub arc: bool,
}

impl Checks {
    /// All four.
    pub const ALL: Self = Self {
        spf: true,
        dkim: true,
        dmarc: true,
        arc: true,
    };

    /// Whether any check runs.
    pub fn any(self) -> bool {
        self.spf || self.dkim || self.dmarc || self.arc
    }

    /// Parses `spf,dkim,dmarc,arc` (any of them, any order) or `all`; empty is none.
    pub fn parse(list: &str) -> std::result::Result<Self, String> {
        let mut c = Self::default();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match item.to_ascii_lowercase().as_str() {
                "all" => c = Self::ALL,
                "spf" => c.spf = true,
                "dkim" => c.dkim = true,
                "dmarc" => c.dmarc = true,
                "arc" => c.arc = true,
                other => {
                    return Err(format!(
                        "unknown check {other:?}: expected spf, dkim, dmarc, arc or all"
                    ));
                }
            }
        }
        Ok(c)
    }
}

impl fmt::Display for Checks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = [
            (self.spf, "spf"),
            (self.dkim, "dkim"),
            (self.dmarc, "dmarc"),
            (self.arc, "arc"),
        ]
        .into_iter()
        .filter_map(|(on, n)| on.then_some(n))
        .collect();
        f.write_str(&names.join(","))
    }
}

/// What the checks found. A check that was not run is `None`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// SPF (`smtp.mailfrom` or `smtp.helo`).
    pub spf: Option<Result>,
    /// One result per DKIM signature (`header.d`, `header.s`, `header.b`); a message
    /// without any gets one `none`.
    pub dkim: Option<Vec<Result>>,
    /// DMARC (`header.from`, and the policy as a comment).
    pub dmarc: Option<Result>,
    /// The domain's DMARC policy, when DMARC was checked and the domain has one.
    pub dmarc_policy: Option<Policy>,
    /// ARC (`arc.chain`).
    pub arc: Option<Result>,
    /// The `From:` domain, when DMARC passed for it: an SPF or DKIM pass aligned with it.
    pub authenticated_from: Option<String>,
    /// The spam filter's (rspamd's) result: `pass` (no action), `neutral` (greylist,
    /// soft reject: SES's `GRAY`), `fail` (add header, rewrite subject, reject), or
    /// `temperror` when it could not be asked and the message was let through; with
    /// `action`, `score`, `required` and `symbols`.
    pub spam: Option<Result>,
    /// The virus scan's result, when the spam filter ran one: `pass`, `fail` (with
    /// `names`), or `temperror` (the scan failed).
    pub virus: Option<Result>,
    /// The milters' result: `pass`, or `temperror` when one failed and
    /// `GSMTP_FILTER_ON_ERROR=accept` let the message through; `quarantine` when one
    /// asked for it.
    pub milter: Option<Result>,
    /// The DNS blocklists' result for the client (`GSMTP_DNSBL`): `pass`, `neutral`
    /// (listed below the threshold), `fail` (blocked), `temperror` (nothing listed it
    /// but a zone did not answer); with `score` and `listed`
    /// (`zen.test=127.0.0.2*3,other.test=127.0.0.4*1`: zone, answer and weight).
    pub dnsbl: Option<Result>,
}

/// The sender checks by name, in the order `Authentication-Results` uses.
pub const SENDER_CHECKS: [&str; 4] = ["spf", "dkim", "dmarc", "arc"];

/// Every check by name, in the order every data rendering uses.
pub const CHECKS: [&str; 8] = [
    "spf", "dkim", "dmarc", "arc", "spam", "virus", "milter", "dnsbl",
];

impl Verdict {
    /// Whether any check ran.
    pub fn is_empty(&self) -> bool {
        CHECKS.iter().all(|n| self.result(n).is_none())
    }

    /// The result that stands for DKIM as a whole: the first passing signature, else
    /// the first one.
    pub fn dkim_result(&self) -> Option<&Result> {
        let all = self.dkim.as_ref()?;
        all.iter()
            .find(|r| r.outcome == Outcome::Pass)
            .or_else(|| all.first())
    }

    /// The result of check `name` (one of [`CHECKS`]), if it ran.
    pub fn result(&self, name: &str) -> Option<&Result> {
        match name {
            "spf" => self.spf.as_ref(),
            "dkim" => self.dkim_result(),
            "dmarc" => self.dmarc.as_ref(),
            "arc" => self.arc.as_ref(),
            "spam" => self.spam.as_ref(),
            "virus" => self.virus.as_ref(),
            "milter" => self.milter.as_ref(),
            "dnsbl" => self.dnsbl.as_ref(),
            _ => None,
        }
    }

    /// The SES-style summary of check `name`: `DISABLED` when it did not run.
    pub fn summary(&self, name: &str) -> Summary {
        self.result(name)
            .map_or(Summary::Disabled, |r| r.outcome.summary())
    }

    /// Whether a sender check could not complete (a `temperror`).
    pub fn has_temperror(&self) -> bool {
        SENDER_CHECKS
            .iter()
            .filter_map(|n| self.result(n))
            .chain(self.dkim.iter().flatten())
            .any(|r| r.outcome == Outcome::TempError)
    }

    /// Whether DMARC failed under `p=reject`.
    pub fn dmarc_rejects(&self) -> bool {
        self.dmarc
            .as_ref()
            .is_some_and(|r| r.outcome == Outcome::Fail)
            && self.dmarc_policy == Some(Policy::Reject)
    }

    /// The reply the verdict earns under the policy keys, if it refuses the message:
    /// [`DMARC_REJECTED`](crate::reply::DMARC_REJECTED) when `dmarc_reject`
    /// (`GSMTP_DMARC_REJECT`) is on and DMARC failed under `p=reject`;
    /// [`VERIFY_TEMPFAIL`](crate::reply::VERIFY_TEMPFAIL) when `tempfail`
    /// (`GSMTP_VERIFY_TEMPFAIL`) is on and a check could not complete. A `temperror`
    /// never earns a `5xx`; without the keys no verdict refuses.
    pub fn refusal(&self, dmarc_reject: bool, tempfail: bool) -> Option<crate::reply::Reply> {
        if dmarc_reject && self.dmarc_rejects() {
            Some(crate::reply::DMARC_REJECTED)
        } else if tempfail && self.has_temperror() {
            Some(crate::reply::VERIFY_TEMPFAIL)
        } else {
            None
        }
    }

    /// Each check that ran, as `(name, description)`: `("spf", "pass
    /// smtp.mailfrom=a@b.example")`, DKIM's first passing signature (or its first), and
    /// DMARC with the policy as a comment (`"fail (p=reject) header.from=b.example"`).
    pub fn described(&self) -> Vec<(&'static str, String)> {
        CHECKS
            .iter()
            .filter_map(|n| self.result(n).map(|r| (*n, self.describe(n, r))))
            .collect()
    }

    /// `r`, a result of check `name`, as [`Result::describe`] does, with DMARC's policy
    /// as a comment after the result word.
    fn describe(&self, name: &str, r: &Result) -> String {
        match self.dmarc_policy.filter(|_| name == "dmarc") {
            Some(p) => {
                let mut r = r.clone();
                let policy = format!("p={}", p.as_str());
                r.reason = Some(match r.reason.take() {
                    Some(why) => format!("{policy}; {why}"),
                    None => policy,
                });
                r.describe()
            }
            None => r.describe(),
        }
    }

    /// The fields the verdict puts at the top of the stored message, CRLF included:
    /// `Authentication-Results` when a sender check ran, then, when the spam filter
    /// answered, `X-Spam-Status` (`Yes` or `No`, the score, the required score and the
    /// action) and `X-Spam: Yes` for spam, and `X-Dnsbl` when the blocklists were asked
    /// (`neutral score=1 listed=...`, as [`Result::describe`]). Empty when no check ran.
    pub fn header_fields(&self, authserv_id: &str) -> Vec<u8> {
        let mut out = Vec::new();
        if SENDER_CHECKS.iter().any(|n| self.result(n).is_some()) {
            out = self.authentication_results(authserv_id);
        }
        if let Some(spam) = self
            .spam
            .as_ref()
            .filter(|r| r.property("action").is_some())
        {
            let yes = spam.outcome == Outcome::Fail;
            let get = |n: &str| spam.property(n).unwrap_or("-");
            let status = format!(
                "X-Spam-Status: {}, score={} required={} action=\"{}\"\r\n",
                if yes { "Yes" } else { "No" },
                get("score"),
                get("required"),
                get("action")
            );
            out.extend_from_slice(status.as_bytes());
            if yes {
                out.extend_from_slice(b"X-Spam: Yes\r\n");
            }
        }
        if let Some(r) = &self.dnsbl {
            out.extend_from_slice(format!("X-Dnsbl: {}\r\n", r.describe()).as_bytes());
        }
        out
    }

    /// The `Authentication-Results:` header field (RFC 8601), CRLF included, with
    /// `authserv_id` (our host name) as its authserv-id and every result (each DKIM
    /// signature its own), folded one result per line.
    pub fn authentication_results(&self, authserv_id: &str) -> Vec<u8> {
        let mut parts: Vec<String> = Vec::new();
        if let Some(r) = &self.spf {
            parts.push(format!("spf={}", r.describe()));
        }
        for r in self.dkim.iter().flatten() {
            parts.push(format!("dkim={}", r.describe()));
        }
        if let Some(r) = &self.dmarc {
            parts.push(format!("dmarc={}", self.describe("dmarc", r)));
        }
        if let Some(r) = &self.arc {
            parts.push(format!("arc={}", r.describe()));
        }
        let mut out = format!("Authentication-Results: {}", property_value(authserv_id));
        if parts.is_empty() {
            out.push_str("; none");
        } else {
            for p in parts {
                out.push_str(";\r\n\t");
                out.push_str(&p);
            }
        }
        out.push_str("\r\n");
        out.into_bytes()
    }

    /// The verdict as JSON: per check its `result`, `summary` and properties (DKIM: one
    /// object per signature under `signatures`), `dmarc_policy`, and
    /// `authenticated_from` (`null` unless the `From:` is authenticated).
    pub fn to_json(&self) -> serde_json::Value {
        let one = |r: &Result| {
            let mut o = serde_json::Map::new();
            o.insert("result".into(), r.outcome.as_str().into());
            o.insert("summary".into(), r.outcome.summary().as_str().into());
            for (k, v) in &r.properties {
                o.insert((*k).into(), v.as_str().into());
            }
            if let Some(reason) = &r.reason {
                o.insert("reason".into(), reason.as_str().into());
            }
            serde_json::Value::Object(o)
        };
        let mut o = serde_json::Map::new();
        for name in CHECKS {
            let value = match (name, self.result(name)) {
                (_, None) => serde_json::json!({"result": null, "summary": "DISABLED"}),
                ("dkim", Some(r)) => {
                    let mut v = one(r);
                    let all: Vec<serde_json::Value> = self.dkim.iter().flatten().map(one).collect();
                    v["signatures"] = all.into();
                    v
                }
                (_, Some(r)) => one(r),
            };
            o.insert(name.into(), value);
        }
        o.insert(
            "dmarc_policy".into(),
            self.dmarc_policy.map(Policy::as_str).into(),
        );
        o.insert(
            "authenticated_from".into(),
            self.authenticated_from.as_deref().into(),
        );
        serde_json::Value::Object(o)
    }
}

/// `value` as an RFC 8601 property value: as it is when it holds only visible ASCII
/// other than `( ) < > , ; \ " [ ]` (an address, a domain, a base64 prefix), else as a
/// quoted string.
fn property_value(value: &str) -> String {
    let token = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"()<>,;\\\"[]".contains(&b));
    if token {
        value.to_string()
    } else {
        let mut out = String::from("\"");
        for c in value.chars() {
            match c {
                '"' | '\\' => {
                    out.push('\\');
                    out.push(c);
                }
                c if c.is_control() => out.push('?'),
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }
}

/// `text` fit for an RFC 5322 comment: no parentheses, backslashes or controls.
fn comment(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '(' | ')' | '\\' => ' ',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect()
}

/// Removes from a message's header section (`header`, up to and without the blank line)
/// every `Authentication-Results` field whose authserv-id is `authserv_id` (compared
/// without regard to case), and every field named in `own` (the other fields our verdict
/// writes, [`own_fields`]), continuation lines included: RFC 8601 §5 asks a receiver to
/// remove those it did not write, so that no sender can forge our verdict. Fields with
/// another authserv-id are kept. A field that hides one of those after a bare CR goes
/// too: some readers (Python's `email` package) end a line there. Returns the header
/// section as it should be stored and how many fields were removed.
pub fn remove_own_results(header: &[u8], authserv_id: &str, own: &[&str]) -> (Vec<u8>, usize) {
    let (out, kept, all) = crate::header::filter_fields(header, |field| {
        !line_starts(field).any(|line| {
            let name = crate::header::name(line);
            claims(line, authserv_id) || own.iter().any(|n| name.eq_ignore_ascii_case(n.as_bytes()))
        })
    });
    (out, all - kept)
}

/// A field from its start and from after each bare CR in it (one no LF follows), where
/// a reader that ends lines at a bare CR sees a line begin.
fn line_starts(field: &[u8]) -> impl Iterator<Item = &[u8]> {
    let bare_crs = memchr::memchr_iter(b'\r', field).filter(|&i| field.get(i + 1) != Some(&b'\n'));
    std::iter::once(field).chain(bare_crs.map(|i| &field[i + 1..]))
}

/// The header fields besides `Authentication-Results` that [`Verdict::header_fields`]
/// writes when the spam filter (`spam`) or the DNS blocklists (`dnsbl`) are on: a
/// message that arrives with its own is stripped of them, as rspamd's milter does, so
/// that the one in the stored message is always ours.
pub fn own_fields(spam: bool, dnsbl: bool) -> &'static [&'static str] {
    match (spam, dnsbl) {
        (true, true) => &["X-Spam-Status", "X-Spam", "X-Dnsbl"],
        (true, false) => &["X-Spam-Status", "X-Spam"],
        (false, true) => &["X-Dnsbl"],
        (false, false) => &[],
    }
}

/// The `DKIM-Signature` and `ARC-Message-Signature` fields of a header section, whole:
/// all that the body's hashes depend on, so that finding which hashes to compute need
/// not parse the rest.
pub fn signature_fields(header: &[u8]) -> Vec<u8> {
    crate::header::filter_fields(header, |line| {
        let name = crate::header::name(line);
        name.eq_ignore_ascii_case(b"dkim-signature")
            || name.eq_ignore_ascii_case(b"arc-message-signature")
    })
    .0
}

/// Whether a header field (its first line and continuation lines) is an
/// `Authentication-Results` field for `authserv_id`. RFC 8601 §2.2 lets comments and
/// folding come before the authserv-id (`[CFWS] authserv-id`) and a version after it,
/// and the id may be a quoted string: all are read so, so that no spelling of a forged
/// field escapes. Compared without regard to case or a final dot.
fn claims(field: &[u8], authserv_id: &str) -> bool {
    const NAME: &[u8] = b"authentication-results";
    let Some(colon) = memchr::memchr(b':', field) else {
        return false;
    };
    if !field[..colon].trim_ascii().eq_ignore_ascii_case(NAME) {
        return false;
    }
    let value = &field[colon + 1..];
    let id = leading_value(&value[skip_cfws(value)..]);
    !id.is_empty() && without_dot(&id).eq_ignore_ascii_case(without_dot(authserv_id.as_bytes()))
}

/// A name without its final dot, if it has one.
fn without_dot(name: &[u8]) -> &[u8] {
    name.strip_suffix(b".").unwrap_or(name)
}

/// How many octets of `v`'s start are comments (nested, with quoted pairs) and white
/// space, line ends of folding included; all of it when a comment is left open.
fn skip_cfws(v: &[u8]) -> usize {
    let mut depth = 0usize;
    let mut i = 0;
    while i < v.len() {
        match v[i] {
            b'\\' if depth > 0 => i += 1,
            b'(' => depth += 1,
            b')' if depth > 0 => depth -= 1,
            b' ' | b'\t' | b'\r' | b'\n' => {}
            _ if depth > 0 => {}
            _ => return i,
        }
        i += 1;
    }
    v.len()
}

/// The RFC 2045 `value` at the start of `v`: a quoted string, unquoted (empty if it is
/// never closed), or the token up to white space, a comment or `;`.
fn leading_value(v: &[u8]) -> Vec<u8> {
    let Some(quoted) = v.strip_prefix(b"\"") else {
        let end = v
            .iter()
            .position(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b';' | b'('))
            .unwrap_or(v.len());
        return v[..end].to_vec();
    };
    let mut out = Vec::new();
    let mut bytes = quoted.iter();
    while let Some(&b) = bytes.next() {
        match b {
            b'"' => return out,
            b'\\' => out.extend(bytes.next()),
            b'\r' | b'\n' => {}
            b => out.push(b),
        }
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Verdict {
        Verdict {
            spf: Some(Result::new(Outcome::Pass).with("smtp.mailfrom", "a@sender.example")),
            dkim: Some(vec![
                Result::new(Outcome::Fail)
                    .because("body hash did not verify")
                    .with("header.d", "other.example")
                    .with("header.s", "s1"),
                Result::new(Outcome::Pass)
                    .with("header.d", "sender.example")
                    .with("header.s", "s2"),
            ]),
            dmarc: Some(Result::new(Outcome::Pass).with("header.from", "sender.example")),
            dmarc_policy: Some(Policy::Reject),
            arc: None,
            authenticated_from: Some("sender.example".into()),
            ..Verdict::default()
        }
    }

    #[test]
    fn authentication_results_header() {
        let v = sample();
        assert_eq!(
            String::from_utf8(v.authentication_results("mx.test")).unwrap(),
            "Authentication-Results: mx.test;\r\n\
             \tspf=pass smtp.mailfrom=a@sender.example;\r\n\
             \tdkim=fail (body hash did not verify) header.d=other.example header.s=s1;\r\n\
             \tdkim=pass header.d=sender.example header.s=s2;\r\n\
             \tdmarc=pass (p=reject) header.from=sender.example\r\n"
        );
        assert_eq!(
            String::from_utf8(Verdict::default().authentication_results("mx.test")).unwrap(),
            "Authentication-Results: mx.test; none\r\n"
        );
        assert_eq!(
            v.summary("dkim"),
            Summary::Pass,
            "a passing signature stands"
        );
        assert_eq!(v.summary("arc"), Summary::Disabled);
        assert_eq!(Outcome::TempError.summary(), Summary::ProcessingFailed);
        assert!(!v.dmarc_rejects());
        assert_eq!(
            v.described()[0],
            ("spf", "pass smtp.mailfrom=a@sender.example".to_string())
        );
        let j = v.to_json();
        assert_eq!(j["dkim"]["signatures"].as_array().map(Vec::len), Some(2));
        assert_eq!(j["arc"]["summary"], "DISABLED");
        assert_eq!(j["authenticated_from"], "sender.example");
    }

    #[test]
    fn only_the_policy_keys_refuse() {
        let mut v = sample();
        assert_eq!(v.refusal(true, true), None, "a pass never refuses");
        v.dmarc = Some(Result::new(Outcome::Fail).with("header.from", "sender.example"));
        assert_eq!(v.refusal(false, true), None, "without GSMTP_DMARC_REJECT");
        assert_eq!(v.refusal(true, false), Some(crate::reply::DMARC_REJECTED));
        assert_eq!(
            v.described()[2].1,
            "fail (p=reject) header.from=sender.example"
        );
        v.dmarc = v.dmarc.map(|r| r.because("not aligned"));
        assert_eq!(
            v.described()[2].1,
            "fail (p=reject; not aligned) header.from=sender.example"
        );
        v.dmarc_policy = Some(Policy::Quarantine);
        assert_eq!(v.refusal(true, true), None, "p=quarantine is only recorded");
        v.spf = Some(Result::new(Outcome::TempError));
        assert_eq!(
            v.refusal(true, false),
            None,
            "a temperror alone never refuses"
        );
        assert_eq!(v.refusal(true, true), Some(crate::reply::VERIFY_TEMPFAIL));
        assert_eq!(crate::reply::VERIFY_TEMPFAIL.code, 451);
        assert_eq!(crate::reply::DMARC_REJECTED.status, "5.7.1");
    }

    #[test]
    fn signature_fields_only() {
        let header = b"From: a@b.example\r\n\
                       DKIM-Signature: v=1; d=b.example;\r\n\tbh=x; b=y\r\n\
                       Subject: dkim-signature: not this\r\n\
                       arc-message-signature : i=1;\r\n bh=z\r\n";
        assert_eq!(
            signature_fields(header),
            b"DKIM-Signature: v=1; d=b.example;\r\n\tbh=x; b=y\r\n\
              arc-message-signature : i=1;\r\n bh=z\r\n"
        );
    }

    #[test]
    fn odd_values_are_quoted() {
        let r = Result::new(Outcome::Fail)
            .with("smtp.mailfrom", "\"a b\"@x.example")
            .because("a (nested) reason");
        assert_eq!(
            r.describe(),
            "fail (a  nested  reason) smtp.mailfrom=\"\\\"a b\\\"@x.example\""
        );
    }

    #[test]
    fn checks_parse() {
        assert_eq!(Checks::parse("").unwrap(), Checks::default());
        assert_eq!(Checks::parse("all").unwrap(), Checks::ALL);
        let c = Checks::parse(" dkim, DMARC ").unwrap();
        assert!(c.dkim && c.dmarc && !c.spf && !c.arc);
        assert_eq!(c.to_string(), "dkim,dmarc");
        assert!(Checks::parse("spf,rbl").is_err());
    }

    #[test]
    fn forged_results_are_removed() {
        let header = b"Received: from x\r\n\
            Authentication-Results: mx.test; dkim=pass\r\n\
            \theader.d=forged.example\r\n\
            Authentication-Results: other.example; spf=fail\r\n\
            authentication-results:MX.TEST;spf=pass\r\n\
            Authentication-Results: \"mx.test\" (comment); dmarc=pass\r\n\
            Subject: hi\r\n";
        let (kept, removed) = remove_own_results(header, "mx.test", &[]);
        assert_eq!(removed, 3);
        assert_eq!(
            String::from_utf8(kept).unwrap(),
            "Received: from x\r\n\
             Authentication-Results: other.example; spf=fail\r\n\
             Subject: hi\r\n"
        );
        let (same, none) = remove_own_results(b"Subject: x\r\n", "mx.test", &[]);
        assert_eq!((same.as_slice(), none), (&b"Subject: x\r\n"[..], 0));
        let forged =
            b"X-Spam-Status: No, score=-100\r\nx-spam: no\r\nX-Dnsbl: pass\r\n\tfolded\r\n\
            X-Spammy: kept\r\n";
        let (kept, removed) = remove_own_results(forged, "mx.test", own_fields(true, true));
        assert_eq!((kept.as_slice(), removed), (&b"X-Spammy: kept\r\n"[..], 3));
        let (kept, removed) = remove_own_results(forged, "mx.test", own_fields(false, true));
        assert_eq!(removed, 1, "{}", String::from_utf8_lossy(&kept));
        let hidden = b"X-Note: a\rX-Spam: yes\r\nX-Spammy: kept\r\n";
        let (kept, removed) = remove_own_results(hidden, "mx.test", own_fields(true, false));
        assert_eq!((kept.as_slice(), removed), (&b"X-Spammy: kept\r\n"[..], 1));
    }

    /// RFC 8601 lets comments and folding come before the authserv-id and a version
    /// after it: a field written so still claims our name and must go.
    #[test]
    fn forged_results_in_every_spelling_are_removed() {
        for forged in [
            "Authentication-Results:\r\n mx.test; dkim=pass\r\n",
            "Authentication-Results:\r\n\t\r\n mx.test;\r\n dkim=pass\r\n",
            "Authentication-Results: (our (nested) comment) mx.test; dkim=pass\r\n",
            "Authentication-Results: (a \\) quoted) mx.test; dkim=pass\r\n",
            "Authentication-Results: mx.test 1; dkim=pass\r\n",
            "Authentication-Results: mx.test (v) 1 ; dkim=pass\r\n",
            "Authentication-Results: mx.test\r\n ; dkim=pass\r\n",
            "Authentication-Results: \"mx\\.test\"; dkim=pass\r\n",
            "Authentication-Results: MX.Test.; dkim=pass\r\n",
            "Authentication-Results: mx.test; none\r\n",
            "Authentication-Results: mx.test\n",
            "X-Note: a\rAuthentication-Results: mx.test; dkim=pass\r\n",
            "X-Note: a\r\n b\rauthentication-results:mx.test\r\n",
        ] {
            let header = format!("Subject: a\r\n{forged}Subject: b\r\n");
            let (kept, removed) = remove_own_results(header.as_bytes(), "mx.test", &[]);
            assert_eq!(
                (String::from_utf8(kept).unwrap().as_str(), removed),
                ("Subject: a\r\nSubject: b\r\n", 1),
                "{forged:?}"
            );
        }
        for other in [
            "Authentication-Results: mx.test.example; dkim=pass\r\n",
            "Authentication-Results: (mx.test) other.example; dkim=pass\r\n",
            "Authentication-Results: other.example; x=mx.test\r\n",
            "Authentication-Results: \"mx.test;\"; dkim=pass\r\n",
            "Authentication-Results: amx.test; dkim=pass\r\n",
            "Authentication-Results: (unclosed mx.test; dkim=pass\r\n",
        ] {
            let (kept, removed) = remove_own_results(other.as_bytes(), "mx.test", &[]);
            assert_eq!(
                (kept.as_slice(), removed),
                (other.as_bytes(), 0),
                "{other:?}"
            );
        }
    }
    /// Comments and folding as RFC 5322 allows them: white space, folds, and comments,
    /// nested, with quoted pairs.
    fn cfws() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            Just(" ".to_string()),
            Just("\t".to_string()),
            Just("\r\n ".to_string()),
            Just("\r\n\t".to_string()),
            "[a-z0-9 .;=]{0,8}".prop_map(|t| format!("({t})")),
            Just("(\\) \\( x)".to_string()),
        ];
        let part = leaf.prop_recursive(3, 12, 3, |inner| {
            proptest::collection::vec(inner, 0..3).prop_map(|v| format!("({})", v.concat()))
        });
        proptest::collection::vec(part, 0..4).prop_map(|v| v.concat())
    }

    /// `id` as a sender might spell it: any case, a final dot, quoted (with a quoted pair).
    fn spelled(id: &'static str) -> impl Strategy<Value = String> {
        (any::<u64>(), any::<bool>(), 0u8..3).prop_map(move |(case, dot, quote)| {
            let mut s: String = id
                .chars()
                .enumerate()
                .map(|(i, c)| match (case >> (i % 64)) & 1 {
                    1 => c.to_ascii_uppercase(),
                    _ => c,
                })
                .collect();
            if dot {
                s.push('.');
            }
            match quote {
                0 => s,
                1 => format!("\"{s}\""),
                _ => format!("\"{}\"", s.replace('.', "\\.")),
            }
        })
    }

    /// A whole `Authentication-Results` field for `id`: CFWS, the id, a version or
    /// not, then results or `none`.
    fn field_for(id: &'static str) -> impl Strategy<Value = String> {
        (cfws(), spelled(id), any::<bool>(), cfws(), any::<bool>()).prop_map(
            |(before, id, version, after, none)| {
                let version = if version { " 1" } else { "" };
                let results = if none {
                    "none"
                } else {
                    "dkim=pass header.d=bank.example"
                };
                format!("Authentication-Results:{before}{id}{version}{after};{results}\r\n")
            },
        )
    }

    proptest! {
        #[test]
        fn no_spelling_of_our_authserv_id_survives(field in field_for("mx.test")) {
            let header = format!("Subject: a\r\n{field}Subject: b\r\n");
            let (kept, removed) = remove_own_results(header.as_bytes(), "mx.test", &[]);
            prop_assert_eq!(String::from_utf8(kept).unwrap(), "Subject: a\r\nSubject: b\r\n");
            prop_assert_eq!(removed, 1);
        }

        #[test]
        fn other_authserv_ids_are_kept(field in field_for("mx.test.example")) {
            let (kept, removed) = remove_own_results(field.as_bytes(), "mx.test", &[]);
            prop_assert_eq!(kept.as_slice(), field.as_bytes());
            prop_assert_eq!(removed, 0);
        }
    }
}
