//! Mailboxes and paths (RFC 5321 §4.1.2, extended for UTF-8 by RFC 6531 §3.3).
//!
//! Every parser here works on a `&str` that the caller has already checked to be
//! UTF-8, and borrows from it: nothing is copied while parsing.

use std::borrow::Cow;
use std::net::{Ipv4Addr, Ipv6Addr};

use nom::branch::alt;
use nom::bytes::complete::{tag, tag_no_case, take_while, take_while1};
use nom::character::complete::char;
use nom::combinator::{opt, recognize, verify};
use nom::multi::{many0_count, separated_list1};
use nom::sequence::{delimited, pair, preceded, terminated};
use nom::{IResult, Parser};

/// The longest mailbox accepted: a path is at most 256 octets including `<` and `>`
/// (RFC 5321 §4.5.3.1.3).
pub const MAX_MAILBOX: usize = 254;
/// The longest domain accepted (RFC 5321 §4.5.3.1.2).
pub const MAX_DOMAIN: usize = 255;
/// The longest local part every server must accept (RFC 5321 §4.5.3.1.1).
pub const MAX_LOCAL_PART: usize = 64;

/// A mailbox, `Local-part "@" ( Domain / address-literal )`, exactly as the client wrote it.
///
/// The local part keeps its quotes when it was quoted; [`Mailbox::local_part_unquoted`]
/// gives its value.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Mailbox<'a> {
    /// `Local-part = Dot-string / Quoted-string`, as written.
    pub local_part: Cow<'a, str>,
    /// `Domain / address-literal`, as written (literals keep their brackets).
    pub domain: Cow<'a, str>,
}

impl Mailbox<'_> {
    /// Copies the borrowed parts so that the mailbox outlives the command line.
    pub fn into_owned(self) -> Mailbox<'static> {
        Mailbox {
            local_part: Cow::Owned(self.local_part.into_owned()),
            domain: Cow::Owned(self.domain.into_owned()),
        }
    }

    /// The local part with quoting removed: `"a\"b"` gives `a"b`.
    pub fn local_part_unquoted(&self) -> Cow<'_, str> {
        unquote(&self.local_part)
    }

    /// Whether any part holds non-ASCII text, which needs SMTPUTF8 (RFC 6531 §3.2).
    pub fn is_utf8(&self) -> bool {
        !self.local_part.is_ascii() || !self.domain.is_ascii()
    }

    /// Whether the domain is an address literal such as `[192.0.2.1]`.
    pub fn is_address_literal(&self) -> bool {
        self.domain.starts_with('[')
    }
}

impl std::fmt::Display for Mailbox<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.local_part, self.domain)
    }
}

/// `Reverse-path = Path / "<>"`: the sender of `MAIL FROM`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ReversePath<'a> {
    /// `<>`, the null sender used by bounces.
    Null,
    /// A sender mailbox.
    Mailbox(Mailbox<'a>),
}

impl ReversePath<'_> {
    /// Copies the borrowed parts.
    pub fn into_owned(self) -> ReversePath<'static> {
        match self {
            Self::Null => ReversePath::Null,
            Self::Mailbox(m) => ReversePath::Mailbox(m.into_owned()),
        }
    }
}

impl std::fmt::Display for ReversePath<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Null => f.write_str("<>"),
            Self::Mailbox(m) => write!(f, "<{m}>"),
        }
    }
}

/// `( "<Postmaster@" Domain ">" / "<Postmaster>" / Forward-path )`: the recipient of `RCPT TO`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ForwardPath<'a> {
    /// `<Postmaster>` without a domain, which every server must accept (RFC 5321 §4.5.1).
    Postmaster,
    /// A recipient mailbox (this includes `<Postmaster@domain>`).
    Mailbox(Mailbox<'a>),
}

impl ForwardPath<'_> {
    /// Copies the borrowed parts.
    pub fn into_owned(self) -> ForwardPath<'static> {
        match self {
            Self::Postmaster => ForwardPath::Postmaster,
            Self::Mailbox(m) => ForwardPath::Mailbox(m.into_owned()),
        }
    }
}

impl std::fmt::Display for ForwardPath<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Postmaster => f.write_str("<Postmaster>"),
            Self::Mailbox(m) => write!(f, "<{m}>"),
        }
    }
}

/// Removes the quotes and quoted-pair backslashes of a local part; a dot-string is returned as is.
pub fn unquote(local_part: &str) -> Cow<'_, str> {
    let Some(inner) = local_part
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
    else {
        return Cow::Borrowed(local_part);
    };
    if !inner.contains('\\') {
        return Cow::Borrowed(inner);
    }
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Writes a local part in its shortest valid form: as a dot-string when the value is one,
/// otherwise quoted with `\` before `"` and `\`.
pub fn quote_local_part(value: &str) -> Cow<'_, str> {
    if matches!(dot_string(value), Ok(("", _))) {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    Cow::Owned(out)
}

/// `atext` of RFC 5322 §3.2.3, plus `UTF8-non-ascii` (RFC 6531 §3.3).
fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii()
}

/// `qtextSMTP = %d32-33 / %d35-91 / %d93-126 / UTF8-non-ascii`.
fn is_qtext(c: char) -> bool {
    matches!(c, ' ' | '!' | '#'..='[' | ']'..='~') || (!c.is_ascii() && !c.is_control())
}

/// `Dot-string = Atom *("." Atom)`, `Atom = 1*atext`.
pub fn dot_string(i: &str) -> IResult<&str, &str> {
    recognize(separated_list1(char('.'), take_while1(is_atext))).parse(i)
}

/// `Quoted-string = DQUOTE *QcontentSMTP DQUOTE`,
/// `QcontentSMTP = qtextSMTP / quoted-pairSMTP`, `quoted-pairSMTP = %d92 %d32-126`.
pub fn quoted_string(i: &str) -> IResult<&str, &str> {
    let quoted_pair = preceded(
        char('\\'),
        verify(nom::character::complete::anychar, |c| {
            matches!(c, ' '..='~')
        }),
    );
    recognize(delimited(
        char('"'),
        many0_count(alt((
            take_while1(is_qtext).map(|_| ()),
            quoted_pair.map(|_| ()),
        ))),
        char('"'),
    ))
    .parse(i)
}

/// `Local-part = Dot-string / Quoted-string`.
pub fn local_part(i: &str) -> IResult<&str, &str> {
    alt((dot_string, quoted_string)).parse(i)
}

/// `sub-domain = Let-dig [Ldh-str]`, where a U-label (RFC 6531) may hold non-ASCII letters.
fn sub_domain(i: &str) -> IResult<&str, &str> {
    let let_dig = |c: char| c.is_ascii_alphanumeric() || (!c.is_ascii() && c.is_alphanumeric());
    verify(
        recognize(pair(
            take_while1(let_dig),
            take_while(move |c: char| {
                let_dig(c) || c == '-' || (!c.is_ascii() && !c.is_control() && !c.is_whitespace())
            }),
        )),
        |s: &str| !s.ends_with('-'),
    )
    .parse(i)
}

/// `Domain = sub-domain *("." sub-domain)`, at most 255 octets.
pub fn domain(i: &str) -> IResult<&str, &str> {
    verify(
        recognize(separated_list1(char('.'), sub_domain)),
        |d: &str| d.len() <= MAX_DOMAIN,
    )
    .parse(i)
}

/// `address-literal = "[" ( IPv4-address-literal / IPv6-address-literal /
/// General-address-literal ) "]"`, returned with its brackets.
pub fn address_literal(i: &str) -> IResult<&str, &str> {
    recognize(delimited(
        char('['),
        verify(
            take_while1(|c: char| c != ']' && c.is_ascii_graphic()),
            |s: &str| literal_is_valid(s),
        ),
        char(']'),
    ))
    .parse(i)
}

fn literal_is_valid(inner: &str) -> bool {
    if let Some(v6) = inner
        .get(..5)
        .filter(|p| p.eq_ignore_ascii_case("IPv6:"))
        .map(|_| &inner[5..])
    {
        return v6.parse::<Ipv6Addr>().is_ok();
    }
    if inner.parse::<Ipv4Addr>().is_ok() {
        return true;
    }
    // General-address-literal = Standardized-tag ":" 1*dcontent
    match inner.split_once(':') {
        Some((tag, content)) => {
            matches!(sub_domain(tag), Ok(("", _)))
                && tag.ends_with(|c: char| c.is_ascii_alphanumeric())
                && !content.is_empty()
                && content.bytes().all(|b| matches!(b, 33..=90 | 94..=126))
        }
        None => false,
    }
}

/// `Mailbox = Local-part "@" ( Domain / address-literal )`, at most 254 octets.
pub fn mailbox(i: &str) -> IResult<&str, Mailbox<'_>> {
    verify(
        (local_part, char('@'), alt((address_literal, domain))),
        |(l, _, d): &(&str, char, &str)| l.len() + 1 + d.len() <= MAX_MAILBOX,
    )
    .map(|(l, _, d)| Mailbox {
        local_part: Cow::Borrowed(l),
        domain: Cow::Borrowed(d),
    })
    .parse(i)
}

/// `A-d-l = At-domain *( "," At-domain )`, `At-domain = "@" Domain`: a source route,
/// which RFC 5321 §4.1.1.3 says to accept and ignore.
fn source_route(i: &str) -> IResult<&str, ()> {
    terminated(
        separated_list1(char(','), preceded(char('@'), domain)),
        char(':'),
    )
    .map(|_| ())
    .parse(i)
}

/// `Path = "<" [ A-d-l ":" ] Mailbox ">"`.
pub fn path(i: &str) -> IResult<&str, Mailbox<'_>> {
    delimited(char('<'), preceded(opt(source_route), mailbox), char('>')).parse(i)
}

/// `Reverse-path = Path / "<>"`.
pub fn reverse_path(i: &str) -> IResult<&str, ReversePath<'_>> {
    alt((
        tag("<>").map(|_| ReversePath::Null),
        path.map(ReversePath::Mailbox),
    ))
    .parse(i)
}

/// `"<Postmaster@" Domain ">" / "<Postmaster>" / Forward-path`.
pub fn forward_path(i: &str) -> IResult<&str, ForwardPath<'_>> {
    alt((
        tag_no_case("<Postmaster>").map(|_| ForwardPath::Postmaster),
        path.map(ForwardPath::Mailbox),
    ))
    .parse(i)
}

/// The argument of HELO and EHLO: `Domain / address-literal` in RFC 5321, but in the wild
/// also bare IP addresses and names with `_`. Any run of visible ASCII is taken; what goes
/// into a trace header is sanitised there.
pub fn helo_name(i: &str) -> IResult<&str, &str> {
    verify(take_while1(|c: char| c.is_ascii_graphic()), |s: &str| {
        s.len() <= MAX_DOMAIN
    })
    .parse(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mailboxes() {
        let ok = [
            ("a@b.c", "a", "b.c"),
            ("first.last@example.com", "first.last", "example.com"),
            ("\"john doe\"@example.com", "\"john doe\"", "example.com"),
            ("\"a\\\"b\"@x", "\"a\\\"b\"", "x"),
            ("u@[192.0.2.1]", "u", "[192.0.2.1]"),
            ("u@[IPv6:2001:db8::1]", "u", "[IPv6:2001:db8::1]"),
            ("用户@例子.广告", "用户", "例子.广告"),
            ("x+tag@sub-domain.example", "x+tag", "sub-domain.example"),
        ];
        for (input, l, d) in ok {
            let (rest, m) = mailbox(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(rest, "", "{input}");
            assert_eq!((&*m.local_part, &*m.domain), (l, d), "{input}");
        }
        let bad = [
            "a@",
            "@b",
            "a..b@c",
            ".a@c",
            "a.@c",
            "a@-b",
            "a@b-",
            "a@b..c",
            "a b@c",
            "a@[300.1.1.1]",
            "a@[IPv6:zz]",
            "a@[1.2.3]",
            "\"a\nb\"@c",
            "a\0@b",
        ];
        for input in bad {
            assert!(
                !matches!(mailbox(input), Ok(("", _))),
                "{input:?} should not parse as a whole mailbox"
            );
        }
    }

    #[test]
    fn lengths_are_bounded() {
        let long_domain = format!("a@{}.com", "d".repeat(260));
        assert!(mailbox(&long_domain).is_err());
        let long_box = format!("{}@{}.com", "l".repeat(200), "d".repeat(60));
        assert!(mailbox(&long_box).is_err());
    }

    #[test]
    fn paths() {
        assert_eq!(reverse_path("<>"), Ok(("", ReversePath::Null)));
        assert_eq!(
            forward_path("<postMaster>"),
            Ok(("", ForwardPath::Postmaster))
        );
        let (rest, p) = forward_path("<@relay.example,@other.example:u@x.y>").unwrap();
        assert_eq!(rest, "");
        assert!(matches!(p, ForwardPath::Mailbox(m) if m.local_part == "u" && m.domain == "x.y"));
        assert!(path("u@x").is_err());
        assert!(path("<u@x").is_err());
    }

    #[test]
    fn quoting_round_trips() {
        for value in [
            "simple",
            "with space",
            "a\"b",
            "back\\slash",
            "dot.ted",
            ".lead",
            "",
        ] {
            let quoted = quote_local_part(value);
            assert_eq!(unquote(&quoted), value, "{quoted}");
            assert!(matches!(local_part(&quoted), Ok(("", _))), "{quoted}");
        }
    }
}
