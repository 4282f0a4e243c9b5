//! The pure half of `GSMTP_STORAGE=pipe`: the command's environment and arguments, and
//! what its end means.

use super::{envelope_fields, refusal, sender_address, verdict_fields};
use crate::delivery::{DeliveryError, Envelope};
use crate::reply::parse_status;
use crate::verdict::Verdict;

/// The envelope as a pipe command's environment: `SMTP_MAIL_FROM`, `SMTP_RCPT_TO`,
/// `SMTP_CLIENT_ADDR`, `SMTP_CLIENT_NAME`, `SMTP_HELO`, `SMTP_QUEUE_ID`, `SMTP_TLS`,
/// each [`super::Value::encoded`].
/// The verdict's facts follow ([`super::verdict_fields`]): `SMTP_VERDICT_SPF`, `_DKIM`,
/// `_DMARC`, `_ARC`, each when its check ran, and `SMTP_AUTHENTICATED_FROM`.
pub fn environment(env: &Envelope, verdict: &Verdict) -> Vec<(&'static str, String)> {
    let mut vars: Vec<(&'static str, String)> = envelope_fields(env)
        .into_iter()
        .map(|(f, v)| (f.env, v.encoded()))
        .collect();
    vars.extend(verdict_fields(verdict).into_iter().map(|(f, v)| (f.env, v)));
    vars
}

/// How a pipe command ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// It exited with this status.
    Status(i32),
    /// A signal killed it.
    Signal(i32),
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Status(s) => write!(f, "status {s}"),
            Self::Signal(s) => write!(f, "signal {s}"),
        }
    }
}

/// `EX_DATAERR` (sysexits.h): the input data was incorrect.
pub const EX_DATAERR: i32 = 65;
/// `EX_NOUSER`: addressee unknown.
pub const EX_NOUSER: i32 = 67;
/// `EX_TEMPFAIL`: temporary failure, try again.
pub const EX_TEMPFAIL: i32 = 75;
/// `EX_NOPERM`: permission denied.
pub const EX_NOPERM: i32 = 77;

/// What a pipe command's end means, as Postfix's pipe(8) reads it, except that an unknown
/// status is temporary (we answer the sender now; Postfix would bounce later):
///
/// | exit | reply |
/// |---|---|
/// | 0 | `250` |
/// | 65 `EX_DATAERR` | `554 5.6.0` |
/// | 67 `EX_NOUSER` | `550 5.1.1` |
/// | 77 `EX_NOPERM` | `550 5.7.1` |
/// | 75 `EX_TEMPFAIL`, any other status, a signal | `451 4.3.0` |
///
/// For a non-zero status, an RFC 3463 code at the start of the output (`5.2.2 mailbox
/// full`) takes precedence over the status, as in pipe(8): class 4 gives `451`, class 5
/// gives `550` (`554` for subjects other than addressing, mailbox and policy). The
/// output's first line, cleaned and bounded, is the reply's text. A signal is a crash:
/// its output is not believed.
pub fn result(exit: Exit, output: &[u8]) -> Result<(), DeliveryError> {
    let status = match exit {
        Exit::Status(0) => return Ok(()),
        Exit::Status(s) => s,
        Exit::Signal(_) => {
            return Err(refusal(451, "4.3.0", "", "Error: delivery command failed"));
        }
    };
    let text = String::from_utf8_lossy(output);
    let first = text.lines().next().unwrap_or("").trim();
    let (code, rest) = match first.split_once(' ') {
        Some((c, rest)) => (c, rest),
        None => (first, ""),
    };
    if let Some(class) = parse_status(code).filter(|c| *c != '2') {
        let subject = code.split('.').nth(1).unwrap_or("0");
        let reply = match (class, subject) {
            ('4', _) => 451,
            (_, "1" | "2" | "7") => 550,
            _ => 554,
        };
        return Err(refusal(reply, code, rest, "Error: delivery command failed"));
    }
    let (reply, status) = match status {
        EX_DATAERR => (554, "5.6.0"),
        EX_NOUSER => (550, "5.1.1"),
        EX_NOPERM => (550, "5.7.1"),
        _ => (451, "4.3.0"),
    };
    Err(refusal(
        reply,
        status,
        first,
        "Error: delivery command failed",
    ))
}

/// Replaces `${name}` in a pipe command's argument by its value among `vars`
/// (`${recipient}`, `${user}`, `${domain}`, `${sender}`, `${queue_id}`), as Postfix's
/// pipe(8) does. An unknown name is left as it is. The value is one argument whatever it
/// holds: no shell ever sees it.
pub fn expand(arg: &str, vars: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(arg.len());
    let mut rest = arg;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find('}') {
            Some(end) => {
                let name = &after[..end];
                match vars.iter().find(|(n, _)| *n == name) {
                    Some((_, v)) => out.push_str(v),
                    None => out.push_str(&rest[start..start + 3 + end]),
                }
                rest = &after[end + 1..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// The names [`expand`] knows, which need one recipient per transaction
/// (`GSMTP_PIPE_PER_RECIPIENT`) when they name the recipient.
pub const RECIPIENT_MACROS: [&str; 3] = ["${recipient}", "${user}", "${domain}"];

/// The values [`expand`] takes for a message with one recipient (or none, for
/// `${sender}` and `${queue_id}` alone).
pub fn macro_values(env: &Envelope) -> Vec<(&'static str, String)> {
    let mut vars = vec![
        ("sender", sender_address(&env.from)),
        ("queue_id", env.id.to_string()),
    ];
    if let [only] = env.recipients.as_slice() {
        let (user, domain) = only
            .address
            .rsplit_once('@')
            .map_or((only.address.as_str(), ""), |(u, d)| (u, d));
        let user = crate::syntax::unquote(user).into_owned();
        vars.push(("recipient", only.address.clone()));
        vars.push(("user", user));
        vars.push(("domain", domain.to_string()));
    }
    vars
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipe_exit_statuses() {
        let code = |e: Exit, out: &str| match result(e, out.as_bytes()) {
            Ok(()) => "250".to_string(),
            Err(e) => e.reply_at(crate::Stage::Data).to_string(),
        };
        let table = [
            (Exit::Status(0), "5.1.1 ignored on success", "250"),
            (
                Exit::Status(65),
                "",
                "554 5.6.0 Error: delivery command failed",
            ),
            (
                Exit::Status(67),
                "no such user: bob",
                "550 5.1.1 no such user: bob",
            ),
            (
                Exit::Status(77),
                "",
                "550 5.7.1 Error: delivery command failed",
            ),
            (Exit::Status(75), "busy\nmore", "451 4.3.0 busy"),
            (
                Exit::Status(1),
                "",
                "451 4.3.0 Error: delivery command failed",
            ),
            (
                Exit::Status(127),
                "",
                "451 4.3.0 Error: delivery command failed",
            ),
            (
                Exit::Signal(9),
                "5.1.1 lies",
                "451 4.3.0 Error: delivery command failed",
            ),
            (
                Exit::Status(1),
                "5.2.2 mailbox full",
                "550 5.2.2 mailbox full",
            ),
            (Exit::Status(75), "5.3.0 odd", "554 5.3.0 odd"),
            (Exit::Status(67), "4.2.1 try later", "451 4.2.1 try later"),
            (Exit::Status(1), "2.0.0 fine?", "451 4.3.0 2.0.0 fine?"),
            (Exit::Status(1), "bad \x1b[1m\r\n", "451 4.3.0 bad ?[1m"),
        ];
        for (exit, out, want) in table {
            assert_eq!(code(exit, out), want, "{exit:?} {out:?}");
        }
    }

    #[test]
    fn macros() {
        let vars = [("recipient", "a b@x"), ("user", "a b")];
        assert_eq!(expand("-d", &vars), "-d");
        assert_eq!(expand("${user}", &vars), "a b");
        assert_eq!(expand("to=${recipient};${nope}", &vars), "to=a b@x;${nope}");
        assert_eq!(expand("${unclosed", &vars), "${unclosed");
    }
}
