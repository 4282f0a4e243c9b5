//! Replies: the catalogue of fixed texts, the few built at run time, and their encoding.
//!
//! Every 2xx, 4xx and 5xx reply carries an RFC 3463 enhanced status code, except the
//! greeting and the replies to HELO/EHLO; RFC 2034 §4 exempts those, and all 3xx replies
//! (`354`), whose code no enhanced class matches. Texts follow the original server
//! where it had one (`250 Ok`, `250 Accepted`, `221 Bye`, ...).

use std::borrow::Cow;
use std::fmt::{self, Display, Write as _};

use crate::syntax::{ParseError, Verb};

/// A fixed reply: a three-digit code, an enhanced status code and a text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Reply {
    /// The RFC 5321 reply code.
    pub code: u16,
    /// The RFC 3463 enhanced status code, such as `2.1.0`; empty for `354`.
    pub status: &'static str,
    /// The human-readable text.
    pub text: &'static str,
}

impl Reply {
    const fn new(code: u16, status: &'static str, text: &'static str) -> Self {
        Self { code, status, text }
    }

    /// Whether this is a 4xx or 5xx reply.
    pub fn is_error(&self) -> bool {
        self.code >= 400
    }

    /// Appends the reply line, CRLF included.
    pub fn encode(&self, out: &mut Vec<u8>) {
        write_line(out, self.code, self.status, self.text);
    }
}

impl Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.status.is_empty() {
            write!(f, "{} {}", self.code, self.text)
        } else {
            write!(f, "{} {} {}", self.code, self.status, self.text)
        }
    }
}

/// A reply that may be built at run time: one of the catalogue's, or a destination's own
/// (a pipe command's RFC 3463 code, an LMTP server's answer). Texts from outside are
/// cleaned by [`ReplyBuf::new`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ReplyBuf {
    /// The RFC 5321 reply code.
    pub code: u16,
    /// The RFC 3463 enhanced status code; empty for `354`.
    pub status: Cow<'static, str>,
    /// The human-readable text.
    pub text: Cow<'static, str>,
}

/// The longest text taken from a destination's answer.
pub const MAX_TEXT: usize = 200;

impl ReplyBuf {
    /// A refusal built from a destination's answer: `code` must be `4xx` or `5xx`
    /// (`None` otherwise); `421`, which would tell the client we are closing, is `451`. `status` is kept when it is a valid RFC 3463 code of the same
    /// class (`4.1.1` with a `4xx`), else it is `<class>.0.0`. Of `text`, the first line
    /// is kept, at most [`MAX_TEXT`] octets, with anything but printable ASCII replaced
    /// by `?`, so nothing from outside can break the reply's framing; an empty text
    /// becomes `default`.
    pub fn new(code: u16, status: &str, text: &str, default: &'static str) -> Option<Self> {
        if !(400..600).contains(&code) {
            return None;
        }
        // In SMTP, 421 says the server closes the connection; a destination's 421 (its
        // own session closing) is an ordinary temporary failure here.
        let code = if code == 421 { 451 } else { code };
        let class = if code < 500 { '4' } else { '5' };
        let status = match parse_status(status) {
            Some(c) if c == class => Cow::Owned(status.to_string()),
            _ => Cow::Owned(format!("{class}.0.0")),
        };
        let line = text.lines().next().unwrap_or("").trim();
        let mut clean: String = line
            .chars()
            .map(|c| {
                if c.is_ascii_graphic() || c == ' ' {
                    c
                } else {
                    '?'
                }
            })
            .collect();
        clean.truncate(MAX_TEXT);
        let text = if clean.is_empty() {
            Cow::Borrowed(default)
        } else {
            Cow::Owned(clean)
        };
        Some(Self { code, status, text })
    }

    /// Whether this is a `4xx` or `5xx` reply.
    pub fn is_error(&self) -> bool {
        self.code >= 400
    }

    /// Appends the reply line, CRLF included.
    pub fn encode(&self, out: &mut Vec<u8>) {
        write_line(out, self.code, &self.status, &self.text);
    }
}

impl From<Reply> for ReplyBuf {
    fn from(r: Reply) -> Self {
        Self {
            code: r.code,
            status: Cow::Borrowed(r.status),
            text: Cow::Borrowed(r.text),
        }
    }
}

impl Display for ReplyBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.status.is_empty() {
            write!(f, "{} {}", self.code, self.text)
        } else {
            write!(f, "{} {} {}", self.code, self.status, self.text)
        }
    }
}

/// The class (`'2'`, `'4'` or `'5'`) of an RFC 3463 code `class.subject.detail` such as
/// `5.1.1`, if it is well formed (subject and detail of one to three digits).
pub fn parse_status(s: &str) -> Option<char> {
    let mut parts = s.split('.');
    let (class, subject, detail) = (parts.next()?, parts.next()?, parts.next()?);
    let digits = |p: &str| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit());
    let ok = parts.next().is_none()
        && matches!(class, "2" | "4" | "5")
        && digits(subject)
        && digits(detail);
    ok.then(|| class.chars().next())?
}

/// Appends `code SP status SP text CRLF` (the status left out when empty).
pub fn write_line(out: &mut Vec<u8>, code: u16, status: &str, text: impl Display) {
    let mut s = String::with_capacity(64);
    // Writing to a String cannot fail.
    let _ = if status.is_empty() {
        write!(s, "{code} {text}\r\n")
    } else {
        write!(s, "{code} {status} {text}\r\n")
    };
    out.extend_from_slice(s.as_bytes());
}

/// Appends a multi-line reply: `code-line` for all lines but the last, `code line` last.
pub fn write_multiline<'a>(out: &mut Vec<u8>, code: u16, lines: impl IntoIterator<Item = &'a str>) {
    let mut lines = lines.into_iter().peekable();
    while let Some(line) = lines.next() {
        let sep = if lines.peek().is_some() { '-' } else { ' ' };
        out.extend_from_slice(format!("{code}{sep}{line}\r\n").as_bytes());
    }
}

macro_rules! catalogue {
    ($($(#[$doc:meta])* $name:ident = $code:literal $status:literal $text:literal;)*) => {
        $($(#[$doc])* pub const $name: Reply = Reply::new($code, $status, $text);)*
    };
}

catalogue! {
    /// RSET, NOOP and other plain successes.
    OK = 250 "2.0.0" "OK";
    /// MAIL accepted (the original's text).
    MAIL_OK = 250 "2.1.0" "Ok";
    /// RCPT accepted (the original's text).
    RCPT_OK = 250 "2.1.5" "Accepted";
    /// DATA accepted; the body follows (the original's text).
    START_DATA = 354 "" "Enter message, ending with \".\" on a line by itself";
    /// QUIT.
    BYE = 221 "2.0.0" "Bye";
    /// VRFY is answered without looking anything up (RFC 5321 §3.5.3).
    VRFY = 252 "2.5.0" "Cannot VRFY user, but will accept message and attempt delivery";
    /// EXPN is not offered.
    EXPN = 502 "5.5.1" "Error: EXPN not available";
    /// HELP.
    HELP = 214 "2.0.0" "Commands: HELO EHLO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP STARTTLS";
    /// STARTTLS accepted; the handshake follows.
    READY_TLS = 220 "2.0.0" "Ready to start TLS";
    /// An unknown verb.
    UNRECOGNIZED = 500 "5.5.1" "Error: command not recognized";
    /// A verb this server does not offer.
    NOT_IMPLEMENTED = 502 "5.5.1" "Error: command not implemented";
    /// A command line longer than the limit.
    LINE_TOO_LONG = 500 "5.5.2" "Error: line too long";
    /// A text line of the message longer than the limit.
    TEXT_LINE_TOO_LONG = 554 "5.6.0" "Error: message line too long";
    /// Bare LF under the `reject` policy (Postfix's text).
    BARE_LF = 550 "5.5.2" "Error: bare <LF> received";
    /// Bare CR under the `reject` policy.
    BARE_CR = 550 "5.5.2" "Error: bare <CR> received";
    /// MAIL before HELO/EHLO.
    NEED_HELO = 503 "5.5.1" "Error: send HELO/EHLO first";
    /// RCPT or DATA before MAIL.
    NEED_MAIL = 503 "5.5.1" "Error: need MAIL command";
    /// MAIL inside a transaction.
    NESTED_MAIL = 503 "5.5.1" "Error: nested MAIL command";
    /// DATA or BDAT without an accepted recipient.
    NEED_RCPT = 503 "5.5.1" "Error: need RCPT command";
    /// DATA after BDAT in the same transaction (RFC 3030 §2).
    DATA_AFTER_BDAT = 503 "5.5.1" "Error: DATA cannot follow BDAT";
    /// STARTTLS when TLS is already on.
    TLS_ACTIVE = 503 "5.5.1" "Error: TLS already active";
    /// STARTTLS when no certificate is configured.
    NO_TLS = 502 "5.5.1" "Error: STARTTLS not offered";
    /// SIZE= above the limit at MAIL, or a body over it (RFC 1870).
    TOO_BIG = 552 "5.3.4" "Error: message size exceeds fixed maximum message size";
    /// More recipients than the limit (RFC 5321 §4.5.3.1.10).
    TOO_MANY_RCPTS = 452 "4.5.3" "Error: too many recipients";
    /// A recipient in a domain this server does not accept mail for. It never relays.
    RELAY_DENIED = 550 "5.7.1" "Error: relay access denied";
    /// A UTF-8 address without SMTPUTF8 (RFC 6531 §3.5).
    NEED_SMTPUTF8 = 553 "5.6.7" "Error: non-ASCII address requires SMTPUTF8";
    /// A recipient whose mailbox name would be too long to store.
    MAILBOX_TOO_LONG = 553 "5.1.3" "Error: recipient address too long";
    /// The store failed for a reason that may pass.
    STORE_FAILED = 451 "4.3.0" "Error: queue file write error";
    /// The store refused the message for good (the original's text).
    STORE_REFUSED = 554 "5.3.0" "Error: transaction failed, blame it on the weather";
    /// A check at MAIL or RCPT failed for a reason that may pass.
    CHECK_FAILED = 451 "4.3.0" "Error: local error in processing, try again later";
    /// The file system is full or a quota is reached (RFC 3463, Postfix's text).
    NO_SPACE = 452 "4.3.1" "Insufficient system storage";
    /// A recipient whose mailbox cannot take mail now.
    MAILBOX_UNAVAILABLE = 450 "4.2.0" "Error: mailbox unavailable";
    /// A recipient the destination refused for good.
    RCPT_REFUSED = 550 "5.1.1" "Error: mailbox unavailable";
    /// The destination did not answer in time (RFC 3463 4.4.7, delivery time expired).
    DESTINATION_TIMEOUT = 451 "4.4.7" "Error: delivery timed out, try again later";
    /// A line that starts like an HTTP request: the session is closed at once.
    NON_SMTP = 221 "2.7.0" "Error: this is an SMTP server, not an HTTP one; goodbye";
    /// XCLIENT from a client that is not a trusted proxy.
    XCLIENT_DENIED = 550 "5.7.0" "Error: insufficient authorization";
    /// An XCLIENT attribute with a value that does not parse.
    XCLIENT_BAD = 501 "5.5.4" "Error: bad XCLIENT attribute value";
    /// A sender address that does not parse.
    BAD_SENDER = 501 "5.1.7" "Error: bad sender address syntax";
    /// A recipient address that does not parse.
    BAD_RECIPIENT = 501 "5.1.3" "Error: bad recipient address syntax";
    /// DMARC failed under the `From:` domain's `p=reject` (`GSMTP_DMARC_REJECT`).
    DMARC_REJECTED = 550 "5.7.1" "Error: the From: domain's DMARC policy rejects this message";
    /// A header section longer than [`crate::header::MAX_HEADER`] while verdict fields are
    /// written: fields forged in our name could not be removed from it, so it is refused.
    HEADER_TOO_BIG = 552 "5.3.4" "Error: the header section exceeds 256 KiB";
    /// A sender check could not complete (`GSMTP_VERIFY_TEMPFAIL`).
    VERIFY_TEMPFAIL = 451 "4.7.0" "Error: sender authentication could not complete, try again later";
    /// The spam filter's `reject`, when it gave no text of its own.
    SPAM_REJECTED = 550 "5.7.1" "Error: spam message rejected";
    /// The spam filter's `soft reject`, when it gave no text of its own.
    FILTER_DEFERRED = 451 "4.7.1" "Error: try again later";
    /// The spam filter's `greylist`, with `GSMTP_GREYLIST=Y`.
    GREYLISTED = 451 "4.7.1" "Error: greylisted, try again later";
    /// A content filter could not be asked, under `GSMTP_FILTER_ON_ERROR=tempfail`.
    FILTER_FAILED = 451 "4.7.1" "Error: the content filter failed, try again later";
    /// A milter's reject, without a reply of its own.
    MILTER_REJECTED = 550 "5.7.1" "Error: rejected by a content filter";
    /// A milter's tempfail, without a reply of its own.
    MILTER_DEFERRED = 451 "4.7.1" "Error: a content filter deferred this, try again later";
    /// A client that wrote before the greeting's last line (`GSMTP_GREET_PAUSE`).
    EARLY_TALKER = 554 "5.5.1" "Protocol error: talked before the greeting";
    /// AUTH succeeded (RFC 4954).
    AUTH_OK = 235 "2.7.0" "Authentication successful";
    /// AUTH failed: the user or the password is wrong.
    AUTH_FAILED = 535 "5.7.8" "Error: authentication failed";
    /// MAIL before AUTH, under `GSMTP_AUTH=file`.
    AUTH_REQUIRED = 530 "5.7.0" "Authentication required";
    /// AUTH over a plain connection, without `GSMTP_AUTH_INSECURE`.
    AUTH_NEEDS_TLS = 538 "5.7.11" "Encryption required for requested authentication mechanism";
    /// AUTH with a mechanism other than PLAIN and LOGIN.
    AUTH_MECHANISM = 504 "5.5.4" "Error: unrecognized authentication type";
    /// AUTH a second time in a session.
    AUTH_ALREADY = 503 "5.5.1" "Error: already authenticated";
    /// The client answered `*` to a challenge.
    AUTH_CANCELLED = 501 "5.7.0" "Error: authentication cancelled";
    /// A response that is not base64, or not what the mechanism expects.
    AUTH_BAD_RESPONSE = 501 "5.5.2" "Error: cannot decode the authentication response";
    /// An ESMTP parameter that is not offered.
    UNSUPPORTED_PARAMETER = 555 "5.5.4" "Error: unsupported parameter";
}

/// Why a `4xx` or `5xx` reply refused, in a word, for the metrics: `relay`, `size`,
/// `syntax`, `sequence`, `recipients`, `content`, `policy`, `auth`, `destination`, or
/// `other`.
/// (Refusals the server answers on its own, such as `busy` or `timeout`, are counted
/// where they happen.)
pub fn reason(code: u16, status: &str) -> &'static str {
    let class = |prefix: &str| status.get(1..).is_some_and(|s| s.starts_with(prefix));
    match (code, status) {
        (_, "5.7.1") => "relay",
        (530 | 535 | 538, _) => "auth",
        (552, _) | (_, "5.3.4") => "size",
        (_, "4.5.3") => "recipients",
        (503, _) => "sequence",
        _ if class(".6.") => "content",
        (500..=502 | 504 | 555, _) => "syntax",
        _ if class(".5.") => "syntax",
        _ if class(".7.") => "policy",
        _ if class(".3.") || class(".4.") || class(".2.") || class(".1.1") => "destination",
        _ => "other",
    }
}

/// The reply for a command line that did not parse. The one place that maps
/// [`ParseError`] to replies.
pub fn for_parse_error(e: ParseError) -> Reply {
    match e {
        ParseError::Unrecognized => UNRECOGNIZED,
        ParseError::NotImplemented => NOT_IMPLEMENTED,
        ParseError::BadSender => BAD_SENDER,
        ParseError::BadRecipient => BAD_RECIPIENT,
        ParseError::UnsupportedParameter => UNSUPPORTED_PARAMETER,
        ParseError::Syntax(verb) => Reply::new(501, "5.5.4", usage(verb)),
    }
}

/// The usage text for a verb, used in its syntax-error reply.
fn usage(verb: Verb) -> &'static str {
    match verb {
        Verb::Helo => "Syntax: HELO hostname",
        Verb::Ehlo => "Syntax: EHLO hostname",
        Verb::Mail => "Syntax: MAIL FROM:<address> [SIZE=n] [BODY=7BIT|8BITMIME] [SMTPUTF8]",
        Verb::Rcpt => "Syntax: RCPT TO:<address>",
        Verb::Data => "Syntax: DATA",
        Verb::Bdat => "Syntax: BDAT size [LAST]",
        Verb::Rset => "Syntax: RSET",
        Verb::Noop => "Syntax: NOOP",
        Verb::Quit => "Syntax: QUIT",
        Verb::Vrfy => "Syntax: VRFY address",
        Verb::Expn => "Syntax: EXPN list",
        Verb::Help => "Syntax: HELP [topic]",
        Verb::StartTls => "Syntax: STARTTLS",
        Verb::Xclient => "Syntax: XCLIENT attribute=value ...",
        Verb::Auth => "Syntax: AUTH mechanism [initial-response]",
    }
}

/// `421 4.4.2 <host> Error: timeout exceeded`, sent before closing an idle session.
pub fn write_timeout(out: &mut Vec<u8>, host: &str) {
    write_line(
        out,
        421,
        "4.4.2",
        format_args!("{host} Error: timeout exceeded"),
    );
}

/// `421 4.3.2 <host> Error: too many connections`, sent to a client over the limit.
pub fn write_busy(out: &mut Vec<u8>, host: &str) {
    write_line(
        out,
        421,
        "4.3.2",
        format_args!("{host} Error: too many connections, try again later"),
    );
}

/// `421 4.7.0 <host> Error: too many connections from your address`, sent to a client
/// over `GM_MAX_CLIENTS_PER_IP`.
pub fn write_client_limit(out: &mut Vec<u8>, host: &str) {
    write_line(
        out,
        421,
        "4.7.0",
        format_args!("{host} Error: too many connections from your address, try again later"),
    );
}

/// `421 4.3.2 <host> Service shutting down`, sent to sessions still open at shutdown.
pub fn write_shutdown(out: &mut Vec<u8>, host: &str) {
    write_line(
        out,
        421,
        "4.3.2",
        format_args!("{host} Service shutting down, try again later"),
    );
}

/// `554 5.7.1 Service unavailable; client [<addr>] blocked using <zone>` (postscreen's
/// text): the DNS blocklists' score of `client` reached `GSMTP_DNSBL_THRESHOLD`, `zone`
/// being the heaviest that listed it. Sent instead of the greeting, or to every RCPT.
pub fn dnsbl_blocked(client: std::net::IpAddr, zone: &str) -> ReplyBuf {
    let text = format!("Service unavailable; client [{client}] blocked using {zone}");
    ReplyBuf {
        code: 554,
        status: Cow::Borrowed("5.7.1"),
        text: Cow::Owned(text),
    }
}

/// `421 4.7.0 <host> Error: too many errors`, sent before closing a misbehaving session.
pub fn write_too_many_errors(out: &mut Vec<u8>, host: &str) {
    write_line(
        out,
        421,
        "4.7.0",
        format_args!("{host} Error: too many errors"),
    );
}

#[cfg(test)]
mod tests {
    #[test]
    fn refusal_reasons() {
        let table = [
            (RELAY_DENIED, "relay"),
            (TOO_BIG, "size"),
            (TOO_MANY_RCPTS, "recipients"),
            (NEED_MAIL, "sequence"),
            (UNRECOGNIZED, "syntax"),
            (BAD_RECIPIENT, "syntax"),
            (BARE_LF, "syntax"),
            (UNSUPPORTED_PARAMETER, "syntax"),
            (TEXT_LINE_TOO_LONG, "content"),
            (NEED_SMTPUTF8, "content"),
            (XCLIENT_DENIED, "policy"),
            (AUTH_FAILED, "auth"),
            (AUTH_REQUIRED, "auth"),
            (STORE_FAILED, "destination"),
            (NO_SPACE, "destination"),
            (DESTINATION_TIMEOUT, "destination"),
            (MAILBOX_UNAVAILABLE, "destination"),
            (RCPT_REFUSED, "destination"),
            (STORE_REFUSED, "destination"),
        ];
        for (reply, want) in table {
            assert_eq!(reason(reply.code, reply.status), want, "{reply:?}");
        }
        assert_eq!(reason(554, "5.0.0"), "other");
    }

    use super::*;

    #[test]
    fn encoding() {
        let mut out = Vec::new();
        MAIL_OK.encode(&mut out);
        write_timeout(&mut out, "mx.example");
        write_multiline(&mut out, 250, ["a", "b", "c"]);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "250 2.1.0 Ok\r\n421 4.4.2 mx.example Error: timeout exceeded\r\n250-a\r\n250-b\r\n250 c\r\n"
        );
    }

    #[test]
    fn destination_replies_are_cleaned() {
        let r = |code, status, text| ReplyBuf::new(code, status, text, "Error: refused");
        assert_eq!(r(250, "2.0.0", "ok"), None, "only refusals");
        assert_eq!(r(199, "", ""), None);
        let table = [
            (
                (550, "5.1.1", "No such user here"),
                "550 5.1.1 No such user here",
            ),
            (
                (451, "5.1.1", "mismatched class"),
                "451 4.0.0 mismatched class",
            ),
            ((554, "", ""), "554 5.0.0 Error: refused"),
            (
                (452, "4.2.2", "over quota\r\n250 2.0.0 smuggled"),
                "452 4.2.2 over quota",
            ),
            (
                (550, "5.7.1", "bad \u{1b}[31m\u{0} bytes"),
                "550 5.7.1 bad ?[31m? bytes",
            ),
            ((450, "4.1.1000", "long detail"), "450 4.0.0 long detail"),
            ((421, "4.3.2", "shutting down"), "451 4.3.2 shutting down"),
        ];
        for ((code, status, text), want) in table {
            assert_eq!(r(code, status, text).unwrap().to_string(), want);
        }
        let long = "x".repeat(1000);
        assert_eq!(r(451, "4.3.0", &long).unwrap().text.len(), MAX_TEXT);
    }

    #[test]
    fn parse_errors_map_to_codes() {
        let table = [
            (ParseError::Unrecognized, 500, "5.5.1"),
            (ParseError::NotImplemented, 502, "5.5.1"),
            (ParseError::Syntax(Verb::Mail), 501, "5.5.4"),
            (ParseError::BadSender, 501, "5.1.7"),
            (ParseError::BadRecipient, 501, "5.1.3"),
            (ParseError::UnsupportedParameter, 555, "5.5.4"),
        ];
        for (e, code, status) in table {
            let r = for_parse_error(e);
            assert_eq!((r.code, r.status), (code, status), "{e:?}");
        }
    }
}
