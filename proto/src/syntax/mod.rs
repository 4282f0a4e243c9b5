//! nom parsers for SMTP command lines. Each parser is named after its ABNF rule.
//!
//! [`parse_command`] takes one complete command line without its line ending, as the
//! connection's framer cut it; the framer has already enforced the line length limit.

mod param;
mod path;

pub use param::{Body, MailParams, esmtp_param, mail_parameters};
pub use path::{
    ForwardPath, MAX_DOMAIN, MAX_LOCAL_PART, MAX_MAILBOX, Mailbox, ReversePath, address_literal,
    domain, dot_string, forward_path, helo_name, local_part, mailbox, path, quote_local_part,
    quoted_string, reverse_path, unquote,
};

use crate::command::Command;
pub use crate::command::Verb;

/// Why a command line could not be turned into a [`Command`].
///
/// A small `Copy` value in the manner of httparse; [`crate::reply::for_parse_error`] maps
/// each one to its reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ParseError {
    /// An empty line, a line that is not UTF-8, or a verb this server does not know.
    Unrecognized,
    /// A verb this server knows of but does not offer (`AUTH`, `TURN`, `ETRN`, ...).
    NotImplemented,
    /// A known verb with malformed arguments.
    Syntax(Verb),
    /// `MAIL` whose reverse-path is not a valid address.
    BadSender,
    /// `RCPT` whose forward-path is not a valid address.
    BadRecipient,
    /// An ESMTP parameter this server does not offer (RFC 5321 §4.1.1.11 wants 555).
    UnsupportedParameter,
}

/// Whether a command line starts like an HTTP request (`GET /`, `POST /x`, `CONNECT h:p`):
/// a browser or an HTTP proxy tricked into talking to an SMTP server. Such a session is
/// closed at once (Postfix's `smtpd_forbidden_commands`).
pub fn is_http_request(line: &[u8]) -> bool {
    const METHODS: [&[u8]; 9] = [
        b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"CONNECT", b"OPTIONS", b"TRACE", b"PATCH",
    ];
    let verb_end = memchr::memchr(b' ', line).unwrap_or(line.len());
    verb_end < line.len()
        && METHODS
            .iter()
            .any(|m| line[..verb_end].eq_ignore_ascii_case(m))
}

/// A received line made safe to log: printable text is kept, and control characters,
/// Unicode direction overrides, backslashes and octets that are not UTF-8 are written as
/// escapes (`\r`, `\x1b`, `\u{202e}`, `\\`, `\xff`).
pub fn escape_for_log(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            let bidi = matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
            // Writing to a String cannot fail.
            let _ = match c {
                '\\' => write!(out, "\\\\"),
                '\r' => write!(out, "\\r"),
                '\n' => write!(out, "\\n"),
                '\t' => write!(out, "\\t"),
                c if c.is_ascii_control() => write!(out, "\\x{:02x}", u32::from(c)),
                c if c.is_control() || bidi => write!(out, "\\u{{{:x}}}", u32::from(c)),
                c => write!(out, "{c}"),
            };
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

/// Parses one command line, given without its CRLF.
///
/// Verbs match case-insensitively and as whole words: `QUITTER` is not `QUIT`.
pub fn parse_command(line: &[u8]) -> Result<Command<'_>, ParseError> {
    let line = std::str::from_utf8(line).map_err(|_| ParseError::Unrecognized)?;
    let (verb, args) = match line.split_once(' ') {
        Some((verb, args)) => (verb, Some(args)),
        None => (line, None),
    };
    let is = |name: &str| verb.eq_ignore_ascii_case(name);
    // Trailing spaces after argument-less commands are tolerated, as Postfix does.
    let no_args = |v: Verb, c: Command<'static>| match args {
        None => Ok(c),
        Some(a) if a.trim_start_matches(' ').is_empty() => Ok(c),
        Some(_) => Err(ParseError::Syntax(v)),
    };
    if is("HELO") || is("EHLO") {
        let v = if is("HELO") { Verb::Helo } else { Verb::Ehlo };
        let arg = args.map(|a| a.trim_end_matches(' ')).unwrap_or("");
        return match helo_name(arg) {
            Ok(("", name)) if v == Verb::Helo => Ok(Command::Helo(name)),
            Ok(("", name)) => Ok(Command::Ehlo(name)),
            _ => Err(ParseError::Syntax(v)),
        };
    }
    if is("MAIL") {
        let rest = args
            .and_then(|a| strip_prefix_no_case(a, "FROM:"))
            .ok_or(ParseError::Syntax(Verb::Mail))?;
        return mail(rest.trim_start_matches(' '));
    }
    if is("RCPT") {
        let rest = args
            .and_then(|a| strip_prefix_no_case(a, "TO:"))
            .ok_or(ParseError::Syntax(Verb::Rcpt))?;
        return rcpt(rest.trim_start_matches(' '));
    }
    if is("DATA") {
        return no_args(Verb::Data, Command::Data);
    }
    if is("BDAT") {
        return bdat(args.unwrap_or(""));
    }
    if is("RSET") {
        return no_args(Verb::Rset, Command::Rset);
    }
    if is("NOOP") {
        return Ok(Command::Noop);
    }
    if is("QUIT") {
        return no_args(Verb::Quit, Command::Quit);
    }
    if is("STARTTLS") {
        return no_args(Verb::StartTls, Command::StartTls);
    }
    if is("VRFY") || is("EXPN") {
        let v = if is("VRFY") { Verb::Vrfy } else { Verb::Expn };
        return match args {
            Some(a) if !a.trim().is_empty() && !a.contains(char::is_control) => {
                Ok(if v == Verb::Vrfy {
                    Command::Vrfy(a)
                } else {
                    Command::Expn(a)
                })
            }
            _ => Err(ParseError::Syntax(v)),
        };
    }
    if is("HELP") {
        return match args {
            None => Ok(Command::Help(None)),
            Some(a) if !a.contains(char::is_control) => Ok(Command::Help(Some(a))),
            Some(_) => Err(ParseError::Syntax(Verb::Help)),
        };
    }
    if is("XCLIENT") {
        return xclient(args.unwrap_or(""));
    }
    if is("AUTH") {
        return auth(args.unwrap_or(""));
    }
    const NOT_OFFERED: [&str; 6] = ["TURN", "ETRN", "ATRN", "SEND", "SOML", "SAML"];
    if NOT_OFFERED.iter().any(|v| is(v)) {
        return Err(ParseError::NotImplemented);
    }
    Err(ParseError::Unrecognized)
}

/// `"AUTH" SP sasl-mech [SP initial-response]` (RFC 4954 §4), after the space: a
/// mechanism of 1 to 20 upper-case letters, digits, `-` or `_` (RFC 4422 §3.1, any case
/// accepted), and a response of base64 characters or a lone `=`.
fn auth(args: &str) -> Result<Command<'_>, ParseError> {
    let bad = ParseError::Syntax(Verb::Auth);
    let mut words = args.trim_end_matches(' ').split(' ');
    let mechanism = words.next().unwrap_or("");
    let initial = words.next();
    let mech_ok = (1..=20).contains(&mechanism.len())
        && mechanism
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    let initial_ok = initial.is_none_or(crate::sasl::is_response);
    if !mech_ok || !initial_ok || words.next().is_some() {
        return Err(bad);
    }
    Ok(Command::Auth { mechanism, initial })
}

fn strip_prefix_no_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    s.get(..prefix.len())
        .filter(|p| p.eq_ignore_ascii_case(prefix))
        .map(|_| &s[prefix.len()..])
}

/// Splits the text after a path into its parameters: nothing, or spaces then parameters.
fn params_after_path(rest: &str) -> Result<Option<&str>, ()> {
    if rest.is_empty() {
        return Ok(None);
    }
    let trimmed = rest.trim_start_matches(' ');
    if trimmed.len() == rest.len() {
        return Err(()); // something glued to the closing `>`
    }
    let trimmed = trimmed.trim_end_matches(' ');
    Ok((!trimmed.is_empty()).then_some(trimmed))
}

/// `"MAIL FROM:" Reverse-path [SP Mail-parameters]`, after the colon.
fn mail(s: &str) -> Result<Command<'_>, ParseError> {
    let (rest, from) = match reverse_path(s) {
        Ok(ok) => ok,
        Err(_) if s.starts_with('<') => return Err(ParseError::BadSender),
        Err(_) => return Err(ParseError::Syntax(Verb::Mail)),
    };
    let params = match params_after_path(rest) {
        Ok(Some(text)) => mail_parameters(text)?,
        Ok(None) => MailParams::default(),
        Err(()) => return Err(ParseError::BadSender),
    };
    Ok(Command::Mail { from, params })
}

/// `"RCPT TO:" Forward-path [SP Rcpt-parameters]`, after the colon. No RCPT parameter is
/// offered, so any parameter is refused with 555.
fn rcpt(s: &str) -> Result<Command<'_>, ParseError> {
    let (rest, to) = match forward_path(s) {
        Ok(ok) => ok,
        Err(_) if s.starts_with('<') => return Err(ParseError::BadRecipient),
        Err(_) => return Err(ParseError::Syntax(Verb::Rcpt)),
    };
    match params_after_path(rest) {
        Ok(None) => Ok(Command::Rcpt { to }),
        Ok(Some(text)) => Err(match esmtp_param(text) {
            Ok(_) => ParseError::UnsupportedParameter,
            Err(_) => ParseError::Syntax(Verb::Rcpt),
        }),
        Err(()) => Err(ParseError::BadRecipient),
    }
}

/// `bdat-cmd = "BDAT" SP chunk-size [ SP end-marker ]`, `chunk-size = 1*DIGIT`,
/// `end-marker = "LAST"` (RFC 3030 §2).
fn bdat(s: &str) -> Result<Command<'_>, ParseError> {
    let s = s.trim_end_matches(' ');
    let (size, last) = match s.split_once(' ') {
        Some((size, marker)) if marker.eq_ignore_ascii_case("LAST") => (size, true),
        Some(_) => return Err(ParseError::Syntax(Verb::Bdat)),
        None => (s, false),
    };
    if size.is_empty() || !size.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::Syntax(Verb::Bdat));
    }
    let size = size.parse().map_err(|_| ParseError::Syntax(Verb::Bdat))?;
    Ok(Command::Bdat { size, last })
}

/// `"XCLIENT" 1*( SP attribute-name "=" attribute-value )`, where the value is xtext
/// (RFC 3461 §4) and the name one of Postfix's (checked later, by the session).
fn xclient(s: &str) -> Result<Command<'_>, ParseError> {
    let mut attrs = Vec::new();
    for item in s.split(' ').filter(|i| !i.is_empty()) {
        let (name, value) = item
            .split_once('=')
            .ok_or(ParseError::Syntax(Verb::Xclient))?;
        let name_ok = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphabetic());
        let value_ok = value.bytes().all(|b| (33..=126).contains(&b) && b != b'=');
        if !name_ok || !value_ok || decode_xtext(value).is_none() {
            return Err(ParseError::Syntax(Verb::Xclient));
        }
        attrs.push((name, value));
    }
    if attrs.is_empty() || attrs.len() > 16 {
        return Err(ParseError::Syntax(Verb::Xclient));
    }
    Ok(Command::Xclient(attrs))
}

/// Decodes xtext (RFC 3461 §4): `+XX` is the octet with hex value XX. `None` when malformed
/// or when the result is not UTF-8.
pub fn decode_xtext(value: &str) -> Option<String> {
    let mut out = Vec::with_capacity(value.len());
    let mut bytes = value.bytes();
    while let Some(b) = bytes.next() {
        if b == b'+' {
            let hex = [bytes.next()?, bytes.next()?];
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            let hex = std::str::from_utf8(&hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).ok()
}

/// Folds a domain to the form it is compared and stored in: its IDNA ASCII form
/// (UTS #46: case folded, normalised, A-labels), or for an address literal or a name
/// IDNA rejects, the name with its ASCII letters lower-cased. A final dot is dropped.
pub fn fold_domain(domain: &str) -> String {
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    if domain.starts_with('[') {
        return domain.to_ascii_lowercase();
    }
    idna::domain_to_ascii(domain).unwrap_or_else(|_| domain.to_ascii_lowercase())
}

#[cfg(test)]
mod tests;
