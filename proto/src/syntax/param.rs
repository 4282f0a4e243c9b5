//! ESMTP parameters of MAIL and RCPT (RFC 5321 §4.1.2) and the ones we implement:
//! SIZE (RFC 1870), BODY (RFC 6152) and SMTPUTF8 (RFC 6531).

use nom::bytes::complete::{take_while, take_while1};
use nom::character::complete::char;
use nom::combinator::{opt, recognize};
use nom::sequence::{pair, preceded};
use nom::{IResult, Parser};

use super::ParseError;

/// The `BODY=` parameter of RFC 6152.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Body {
    /// `BODY=7BIT`.
    SevenBit,
    /// `BODY=8BITMIME`.
    EightBitMime,
}

/// The parameters of `MAIL FROM` that this server understands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct MailParams {
    /// `SIZE=<n>`: the size the client declares (RFC 1870).
    pub size: Option<u64>,
    /// `BODY=7BIT` or `BODY=8BITMIME`.
    pub body: Option<Body>,
    /// `SMTPUTF8`: addresses and headers may hold UTF-8 (RFC 6531).
    pub smtputf8: bool,
}

impl MailParams {
    /// Writes the parameters in their canonical form, each preceded by a space.
    pub fn encode(&self, out: &mut Vec<u8>) {
        if let Some(size) = self.size {
            out.extend_from_slice(format!(" SIZE={size}").as_bytes());
        }
        match self.body {
            Some(Body::SevenBit) => out.extend_from_slice(b" BODY=7BIT"),
            Some(Body::EightBitMime) => out.extend_from_slice(b" BODY=8BITMIME"),
            None => {}
        }
        if self.smtputf8 {
            out.extend_from_slice(b" SMTPUTF8");
        }
    }
}

/// `esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")`.
fn esmtp_keyword(i: &str) -> IResult<&str, &str> {
    recognize(pair(
        take_while1(|c: char| c.is_ascii_alphanumeric()),
        take_while(|c: char| c.is_ascii_alphanumeric() || c == '-'),
    ))
    .parse(i)
}

/// `esmtp-value = 1*(%d33-60 / %d62-126 / UTF8-non-ascii)` (RFC 6531 §3.3).
fn esmtp_value(i: &str) -> IResult<&str, &str> {
    take_while1(|c: char| (c.is_ascii_graphic() && c != '=') || (!c.is_ascii() && !c.is_control()))
        .parse(i)
}

/// `esmtp-param = esmtp-keyword ["=" esmtp-value]`.
pub fn esmtp_param(i: &str) -> IResult<&str, (&str, Option<&str>)> {
    pair(esmtp_keyword, opt(preceded(char('='), esmtp_value))).parse(i)
}

/// `Mail-parameters = esmtp-param *(SP esmtp-param)`, after the reverse-path and its space.
///
/// Unknown keywords give [`ParseError::UnsupportedParameter`]; a known keyword with a bad
/// value, or given twice, gives a syntax error.
pub fn mail_parameters(mut i: &str) -> Result<MailParams, ParseError> {
    let mut params = MailParams::default();
    let mut seen = (false, false, false);
    let mut auth_seen = false;
    loop {
        let Ok((rest, (keyword, value))) = esmtp_param(i) else {
            return Err(ParseError::Syntax(super::Verb::Mail));
        };
        if keyword.eq_ignore_ascii_case("SIZE") && !seen.0 {
            seen.0 = true;
            // `size-value = 1*20DIGIT` (RFC 1870 §6); a value past u64 is simply too big.
            params.size = Some(
                value
                    .filter(|v| (1..=20).contains(&v.len()))
                    .filter(|v| v.bytes().all(|b| b.is_ascii_digit()))
                    .map(|v| v.parse().unwrap_or(u64::MAX))
                    .ok_or(ParseError::Syntax(super::Verb::Mail))?,
            );
        } else if keyword.eq_ignore_ascii_case("BODY") && !seen.1 {
            seen.1 = true;
            params.body = Some(match value {
                Some(v) if v.eq_ignore_ascii_case("7BIT") => Body::SevenBit,
                Some(v) if v.eq_ignore_ascii_case("8BITMIME") => Body::EightBitMime,
                Some(_) => return Err(ParseError::UnsupportedParameter),
                None => return Err(ParseError::Syntax(super::Verb::Mail)),
            });
        } else if keyword.eq_ignore_ascii_case("SMTPUTF8") && !seen.2 {
            seen.2 = true;
            if value.is_some() {
                return Err(ParseError::Syntax(super::Verb::Mail));
            }
            params.smtputf8 = true;
        } else if keyword.eq_ignore_ascii_case("AUTH") && !auth_seen {
            // RFC 4954 §5: the identity a relay vouches for, `<>` or xtext. Accepted and
            // not used: this server relays nothing, and trusts only its own AUTH.
            auth_seen = true;
            if value.is_none_or(|v| v != "<>" && crate::syntax::decode_xtext(v).is_none()) {
                return Err(ParseError::Syntax(super::Verb::Mail));
            }
        } else if ["SIZE", "BODY", "SMTPUTF8", "AUTH"]
            .iter()
            .any(|k| keyword.eq_ignore_ascii_case(k))
        {
            return Err(ParseError::Syntax(super::Verb::Mail)); // given twice
        } else {
            return Err(ParseError::UnsupportedParameter);
        }
        i = rest;
        if i.is_empty() {
            return Ok(params);
        }
        i = match take_while1::<_, _, nom::error::Error<&str>>(|c| c == ' ').parse(i) {
            Ok((rest, _)) if !rest.is_empty() => rest,
            Ok(_) => return Ok(params), // trailing spaces
            Err(_) => return Err(ParseError::Syntax(super::Verb::Mail)),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_parameters() {
        let table: [(&str, Result<MailParams, ParseError>); 13] = [
            (
                "SIZE=1000",
                Ok(MailParams {
                    size: Some(1000),
                    ..Default::default()
                }),
            ),
            (
                "size=0 body=8bitmime",
                Ok(MailParams {
                    size: Some(0),
                    body: Some(Body::EightBitMime),
                    smtputf8: false,
                }),
            ),
            (
                "SMTPUTF8 BODY=7BIT",
                Ok(MailParams {
                    size: None,
                    body: Some(Body::SevenBit),
                    smtputf8: true,
                }),
            ),
            (
                "AUTH=<> SIZE=10",
                Ok(MailParams {
                    size: Some(10),
                    ..Default::default()
                }),
            ),
            ("auth=alice+40example.com", Ok(MailParams::default())),
            ("SIZE=1x", Err(ParseError::Syntax(super::super::Verb::Mail))),
            (
                "SIZE=1 SIZE=2",
                Err(ParseError::Syntax(super::super::Verb::Mail)),
            ),
            (
                "SIZE=99999999999999999999999",
                Err(ParseError::Syntax(super::super::Verb::Mail)),
            ),
            (
                "SIZE=99999999999999999999",
                Ok(MailParams {
                    size: Some(u64::MAX),
                    ..MailParams::default()
                }),
            ),
            ("SIZE=", Err(ParseError::Syntax(super::super::Verb::Mail))),
            ("BODY=BINARYMIME", Err(ParseError::UnsupportedParameter)),
            ("RET=HDRS", Err(ParseError::UnsupportedParameter)),
            (
                "SMTPUTF8=yes",
                Err(ParseError::Syntax(super::super::Verb::Mail)),
            ),
        ];
        for (input, expected) in table {
            assert_eq!(mail_parameters(input), expected, "{input}");
        }
    }

    #[test]
    fn encode_parses_back() {
        let p = MailParams {
            size: Some(42),
            body: Some(Body::EightBitMime),
            smtputf8: true,
        };
        let mut out = Vec::new();
        p.encode(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(mail_parameters(&text[1..]), Ok(p));
    }
}
