//! SMTP commands as values, and their wire encoding.
//!
//! [`crate::syntax::parse_command`] turns a command line into a [`Command`] that borrows
//! from the line; [`Command::encode`] writes it back. The two are inverses:
//! `parse_command(encode(c)) == c` for every command (a property test checks it).

use crate::syntax::{ForwardPath, MailParams, ReversePath};

/// The verbs this server knows, used to say which command had a syntax error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Verb {
    /// `HELO`.
    Helo,
    /// `EHLO`.
    Ehlo,
    /// `MAIL FROM:`.
    Mail,
    /// `RCPT TO:`.
    Rcpt,
    /// `DATA`.
    Data,
    /// `BDAT` (RFC 3030).
    Bdat,
    /// `RSET`.
    Rset,
    /// `NOOP`.
    Noop,
    /// `QUIT`.
    Quit,
    /// `VRFY`.
    Vrfy,
    /// `EXPN`.
    Expn,
    /// `HELP`.
    Help,
    /// `STARTTLS` (RFC 3207).
    StartTls,
    /// `XCLIENT` (Postfix's proxy extension).
    Xclient,
    /// `AUTH` (RFC 4954).
    Auth,
}

impl Verb {
    /// The verb as written on the wire, in upper case.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Helo => "HELO",
            Self::Ehlo => "EHLO",
            Self::Mail => "MAIL",
            Self::Rcpt => "RCPT",
            Self::Data => "DATA",
            Self::Bdat => "BDAT",
            Self::Rset => "RSET",
            Self::Noop => "NOOP",
            Self::Quit => "QUIT",
            Self::Vrfy => "VRFY",
            Self::Expn => "EXPN",
            Self::Help => "HELP",
            Self::StartTls => "STARTTLS",
            Self::Xclient => "XCLIENT",
            Self::Auth => "AUTH",
        }
    }
}

impl std::fmt::Display for Verb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One SMTP command (RFC 5321 §4.1.1, RFC 3030, RFC 3207), borrowing from its line.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command<'a> {
    /// `"HELO" SP Domain`.
    Helo(&'a str),
    /// `"EHLO" SP ( Domain / address-literal )`.
    Ehlo(&'a str),
    /// `"MAIL FROM:" Reverse-path [SP Mail-parameters]`.
    Mail {
        /// The sender.
        from: ReversePath<'a>,
        /// The parameters this server understands.
        params: MailParams,
    },
    /// `"RCPT TO:" Forward-path` (no RCPT parameters are offered).
    Rcpt {
        /// The recipient.
        to: ForwardPath<'a>,
    },
    /// `"DATA"`.
    Data,
    /// `"BDAT" SP chunk-size [ SP end-marker ]` (RFC 3030).
    Bdat {
        /// The number of octets that follow the command line.
        size: u64,
        /// `LAST`: this chunk ends the message.
        last: bool,
    },
    /// `"RSET"`.
    Rset,
    /// `"NOOP" [ SP String ]`; the string is ignored.
    Noop,
    /// `"QUIT"`.
    Quit,
    /// `"VRFY" SP String`.
    Vrfy(&'a str),
    /// `"EXPN" SP String`.
    Expn(&'a str),
    /// `"HELP" [ SP String ]`.
    Help(Option<&'a str>),
    /// `"STARTTLS"`.
    StartTls,
    /// `"XCLIENT" 1*( SP attribute-name "=" attribute-value )`, values still xtext-encoded.
    Xclient(Vec<(&'a str, &'a str)>),
    /// `"AUTH" SP sasl-mech [SP initial-response]` (RFC 4954 §4); the response is still
    /// base64 (`=` for an empty one).
    Auth {
        /// The SASL mechanism, as the client wrote it.
        mechanism: &'a str,
        /// The initial response, if the client gave one.
        initial: Option<&'a str>,
    },
}

impl Command<'_> {
    /// The verb of this command.
    pub fn verb(&self) -> Verb {
        match self {
            Self::Helo(_) => Verb::Helo,
            Self::Ehlo(_) => Verb::Ehlo,
            Self::Mail { .. } => Verb::Mail,
            Self::Rcpt { .. } => Verb::Rcpt,
            Self::Data => Verb::Data,
            Self::Bdat { .. } => Verb::Bdat,
            Self::Rset => Verb::Rset,
            Self::Noop => Verb::Noop,
            Self::Quit => Verb::Quit,
            Self::Vrfy(_) => Verb::Vrfy,
            Self::Expn(_) => Verb::Expn,
            Self::Help(_) => Verb::Help,
            Self::StartTls => Verb::StartTls,
            Self::Xclient(_) => Verb::Xclient,
            Self::Auth { .. } => Verb::Auth,
        }
    }

    /// Appends the command line, CRLF included, in canonical form.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut put = |s: &str| out.extend_from_slice(s.as_bytes());
        match self {
            Self::Helo(d) => {
                put("HELO ");
                put(d);
            }
            Self::Ehlo(d) => {
                put("EHLO ");
                put(d);
            }
            Self::Mail { from, params } => {
                put("MAIL FROM:");
                put(&from.to_string());
                params.encode(out);
            }
            Self::Rcpt { to } => {
                put("RCPT TO:");
                put(&to.to_string());
            }
            Self::Data => put("DATA"),
            Self::Bdat { size, last } => {
                put(&format!("BDAT {size}"));
                if *last {
                    put(" LAST");
                }
            }
            Self::Rset => put("RSET"),
            Self::Noop => put("NOOP"),
            Self::Quit => put("QUIT"),
            Self::Vrfy(s) => {
                put("VRFY ");
                put(s);
            }
            Self::Expn(s) => {
                put("EXPN ");
                put(s);
            }
            Self::Help(None) => put("HELP"),
            Self::Help(Some(s)) => {
                put("HELP ");
                put(s);
            }
            Self::StartTls => put("STARTTLS"),
            Self::Xclient(attrs) => {
                put("XCLIENT");
                for (name, value) in attrs {
                    put(" ");
                    put(name);
                    put("=");
                    put(value);
                }
            }
            Self::Auth { mechanism, initial } => {
                put("AUTH ");
                put(mechanism);
                if let Some(i) = initial {
                    put(" ");
                    put(i);
                }
            }
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// The sender's half of DATA transparency (RFC 5321 §4.5.2): "Before sending a line of
/// mail text, the SMTP client checks the first character of the line. If it is a period,
/// one additional period is inserted at the beginning of the line." A line starts at the
/// beginning and after every LF. The terminator is not added. The server never needs
/// this; clients, tests and benchmarks that speak to it do.
pub fn dot_stuff(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 8);
    let mut line_start = true;
    for &b in body {
        if line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        line_start = b == b'\n';
    }
    out
}
