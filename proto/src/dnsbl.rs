//! DNS blocklists, weighted (`GSMTP_DNSBL`), as Postfix's `postscreen_dnsbl_sites`: the
//! sites and their filters, the name asked of each zone for a client, what an answer
//! means, the client's score, the decision and the zone its refusal names, and the
//! health check of a zone. The lookups themselves run in `proto::io`.
//!
//! A site is `zone[=filter][*weight]`: `zen.spamhaus.org=127.0.0.[2..11]*3`. A listing
//! adds the site's weight (1 by default, negative for an allowlist) to the client's
//! score; a score of at least the threshold (`GSMTP_DNSBL_THRESHOLD`) blocks it.
//!
//! Two defects of blocklists must never block anyone. Their own error answers
//! (Spamhaus's `127.255.255.252`, `.254` and `.255`: "you may not query") are not
//! listings: without a filter, only `127.0.0.0/8` answers outside `127.255.255.0/24`
//! count ([`counts_by_default`]). And a zone that lists everything (its test address
//! `127.0.0.1` listed, or its test entry `127.0.0.2` missing) is broken ([`health`]):
//! it is ignored until it is healthy again.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use crate::reply::ReplyBuf;
use crate::verdict::{self, Outcome};

/// The threshold when `GSMTP_DNSBL_THRESHOLD` is not set.
pub const DEFAULT_THRESHOLD: i32 = 3;

/// What a blocked client gets (`GSMTP_DNSBL_ACTION`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Action {
    /// `reject`: `554 5.7.1` instead of the greeting, and the connection closed.
    #[default]
    Reject,
    /// `reject-rcpt`: greeted, then every RCPT is answered `554 5.7.1`, so that the
    /// client's own logs show why.
    RejectRcpt,
}

impl Action {
    /// The value as the file writes it: `reject` or `reject-rcpt`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reject => "reject",
            Self::RejectRcpt => "reject-rcpt",
        }
    }
}

/// `GSMTP_DNSBL`, `GSMTP_DNSBL_THRESHOLD` and `GSMTP_DNSBL_ACTION`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsblConfig {
    /// The sites asked about every client, in order; none by default (off).
    pub sites: Vec<Site>,
    /// The score that blocks a client (3).
    pub threshold: i32,
    /// What a blocked client gets.
    pub action: Action,
}

impl Default for DnsblConfig {
    fn default() -> Self {
        Self {
            sites: Vec::new(),
            threshold: DEFAULT_THRESHOLD,
            action: Action::Reject,
        }
    }
}

impl DnsblConfig {
    /// Whether any blocklist is asked.
    pub fn any(&self) -> bool {
        !self.sites.is_empty()
    }
}

/// Which answers of a zone are listings: `127.0.0.2`, `127.0.0.[2..11]`,
/// `127.0.0.[2;4;6..8]`, or several patterns joined by `;` (`127.0.0.2;127.0.0.4`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter {
    /// The patterns: four octets each, every octet a list of inclusive ranges.
    patterns: Vec<[Vec<(u8, u8)>; 4]>,
    /// As written, for showing back.
    text: String,
}

impl Filter {
    /// Parses a filter; the error says what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut patterns = Vec::new();
        for pattern in split_outside_brackets(text, ';') {
            let octets: Vec<&str> = split_outside_brackets(pattern, '.');
            let Ok(octets) = <[&str; 4]>::try_from(octets) else {
                return Err(format!("filter {pattern:?} does not have four octets"));
            };
            let mut parsed: [Vec<(u8, u8)>; 4] = Default::default();
            for (slot, octet) in parsed.iter_mut().zip(octets) {
                *slot = parse_octet(octet)
                    .ok_or_else(|| format!("filter {pattern:?}: bad octet {octet:?}"))?;
            }
            patterns.push(parsed);
        }
        if patterns.is_empty() {
            return Err("empty filter".into());
        }
        Ok(Self {
            patterns,
            text: text.to_string(),
        })
    }

    /// Whether `answer` matches one of the patterns.
    pub fn matches(&self, answer: Ipv4Addr) -> bool {
        self.patterns.iter().any(|p| {
            p.iter()
                .zip(answer.octets())
                .all(|(ranges, o)| ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&o)))
        })
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// `s` split at each `sep` that is not inside `[...]`.
fn split_outside_brackets(s: &str, sep: char) -> Vec<&str> {
    let (mut out, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            c if c == sep && depth == 0 => {
                out.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// One octet of a filter: `2`, or `[2..11]`, `[2;4;6..8]`.
fn parse_octet(s: &str) -> Option<Vec<(u8, u8)>> {
    let inner = match s.strip_prefix('[') {
        Some(rest) => rest.strip_suffix(']')?,
        None if s.bytes().all(|b| b.is_ascii_digit()) => s,
        None => return None,
    };
    inner
        .split(';')
        .map(|item| {
            let (lo, hi) = item.split_once("..").unwrap_or((item, item));
            let (lo, hi) = (lo.trim().parse::<u8>().ok()?, hi.trim().parse::<u8>().ok()?);
            (lo <= hi).then_some((lo, hi))
        })
        .collect()
}

/// Whether `answer` is a listing when a site names no filter: in `127.0.0.0/8`, outside
/// `127.255.255.0/24` (the blocklists' own error codes, such as Spamhaus's
/// `127.255.255.254` for a query through a public resolver).
pub fn counts_by_default(answer: Ipv4Addr) -> bool {
    let [a, b, c, _] = answer.octets();
    a == 127 && !(b == 255 && c == 255)
}

/// One blocklist: a DNS zone, which of its answers are listings, and their weight.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Site {
    /// The zone, lower case, without a final dot: `zen.spamhaus.org`.
    pub zone: String,
    /// Which answers count; `None`: [`counts_by_default`].
    pub filter: Option<Filter>,
    /// What a listing adds to the score (1 unless given; negative for an allowlist).
    pub weight: i32,
}

impl Site {
    /// Parses `zone[=filter][*weight]`; the error says what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (rest, weight) = match text.rsplit_once('*') {
            Some((rest, w)) => {
                let weight = w
                    .trim()
                    .parse::<i32>()
                    .ok()
                    .filter(|w| (-1000..=1000).contains(w))
                    .ok_or_else(|| {
                        format!("{text:?}: the weight must be a whole number from -1000 to 1000")
                    })?;
                (rest, weight)
            }
            None => (text, 1),
        };
        let (zone, filter) = match rest.split_once('=') {
            Some((zone, filter)) => (zone, Some(Filter::parse(filter.trim())?)),
            None => (rest, None),
        };
        let zone = zone.trim().trim_end_matches('.').to_ascii_lowercase();
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if zone.len() > 190 || !zone.contains('.') || !zone.split('.').all(label_ok) {
            return Err(format!(
                "{text:?}: expected a DNS zone such as zen.spamhaus.org"
            ));
        }
        Ok(Self {
            zone,
            filter,
            weight,
        })
    }

    /// Parses a list of sites, separated by commas or white space.
    pub fn parse_list(list: &str) -> Result<Vec<Self>, String> {
        list.split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
            .map(Self::parse)
            .collect()
    }

    /// Whether `answer` is a listing of this site's.
    pub fn lists(&self, answer: Ipv4Addr) -> bool {
        match &self.filter {
            Some(f) => f.matches(answer),
            None => counts_by_default(answer),
        }
    }

    /// The first of `answers` that is a listing, if any.
    pub fn listing(&self, answers: &[Ipv4Addr]) -> Option<Ipv4Addr> {
        answers.iter().copied().find(|a| self.lists(*a))
    }
}

impl fmt::Display for Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.zone)?;
        if let Some(filter) = &self.filter {
            write!(f, "={filter}")?;
        }
        if self.weight != 1 {
            write!(f, "*{}", self.weight)?;
        }
        Ok(())
    }
}

/// The name asked of `zone` about `client`, fully qualified: the IPv4 address's octets
/// reversed (`2.0.0.127.zen.test.`), an IPv6 address's 32 nibbles reversed (RFC 5782
/// §2.4). An IPv4-mapped IPv6 address is asked as IPv4.
pub fn query_name(client: IpAddr, zone: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(64 + zone.len());
    match crate::policy::canonical(client) {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            let _ = write!(out, "{d}.{c}.{b}.{a}.");
        }
        IpAddr::V6(v6) => {
            for byte in v6.octets().iter().rev() {
                let _ = write!(out, "{:x}.{:x}.", byte & 0xf, byte >> 4);
            }
        }
    }
    out.push_str(zone);
    out.push('.');
    out
}

/// What a zone answered about one name: its A records (empty: not listed, NXDOMAIN or
/// no A record), or why it did not answer (a time-out, `SERVFAIL`).
pub type Answer = Result<Vec<Ipv4Addr>, String>;

/// One zone's listing of the client: recorded in the verdict as `zone=answer*weight`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listing {
    /// The zone.
    pub zone: String,
    /// The answer that listed the client.
    pub answer: Ipv4Addr,
    /// The site's weight.
    pub weight: i32,
}

impl fmt::Display for Listing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}*{}", self.zone, self.answer, self.weight)
    }
}

/// What the blocklists said of one client: its listings, the zones that did not answer
/// (they count 0), and the score.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Screening {
    /// The listings, in the sites' order.
    pub listings: Vec<Listing>,
    /// The zones that did not answer in time, in the sites' order.
    pub unanswered: Vec<String>,
    /// The sum of the listings' weights.
    pub score: i32,
}

impl Screening {
    /// Scores the answers each site gave (a broken site is left out by the caller).
    pub fn of<'a>(answers: impl IntoIterator<Item = (&'a Site, &'a Answer)>) -> Self {
        let mut s = Self::default();
        for (site, answer) in answers {
            match answer {
                Ok(records) => {
                    if let Some(answer) = site.listing(records) {
                        s.score = s.score.saturating_add(site.weight);
                        s.listings.push(Listing {
                            zone: site.zone.clone(),
                            answer,
                            weight: site.weight,
                        });
                    }
                }
                Err(_) => s.unanswered.push(site.zone.clone()),
            }
        }
        s
    }

    /// The listing that blocks the client when its score reaches `threshold`: the
    /// heaviest (the first of equals), whose zone the refusal names.
    pub fn blocked(&self, threshold: i32) -> Option<&Listing> {
        if self.score < threshold {
            return None;
        }
        self.listings
            .iter()
            .filter(|l| l.weight > 0)
            .reduce(|best, l| if l.weight > best.weight { l } else { best })
    }

    /// The refusal the client earns under `threshold`, if any: [`crate::reply::dnsbl_blocked`] naming
    /// the heaviest listing's zone.
    pub fn refusal(&self, client: IpAddr, threshold: i32) -> Option<ReplyBuf> {
        self.blocked(threshold)
            .map(|l| crate::reply::dnsbl_blocked(client, &l.zone))
    }

    /// Whether the client may be remembered as passing: not blocked, and every zone
    /// answered (a zone that did not answer might have listed it).
    pub fn cacheable(&self, threshold: i32) -> bool {
        self.blocked(threshold).is_none() && self.unanswered.is_empty()
    }

    /// The screening as the verdict records it: `fail` when blocked, `neutral` when
    /// listed below the threshold, `temperror` when nothing listed the client but a zone
    /// did not answer, else `pass`; with `score`, `listed`
    /// (`zen.test=127.0.0.2*3,other.test=127.0.0.4*1`) and, as the reason, the zones
    /// that did not answer.
    pub fn result(&self, threshold: i32) -> verdict::Result {
        let outcome = if self.blocked(threshold).is_some() {
            Outcome::Fail
        } else if self.score > 0 {
            Outcome::Neutral
        } else if self.listings.is_empty() && !self.unanswered.is_empty() {
            Outcome::TempError
        } else {
            Outcome::Pass
        };
        let mut r = verdict::Result::new(outcome).with("score", self.score.to_string());
        if !self.listings.is_empty() {
            let listed: Vec<String> = self.listings.iter().map(ToString::to_string).collect();
            r = r.with("listed", listed.join(","));
        }
        if !self.unanswered.is_empty() {
            r = r.because(format!("no answer from {}", self.unanswered.join(", ")));
        }
        r
    }
}

/// A zone's health, from its answers about its test addresses ([`health`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    /// It lists `127.0.0.2` and not `127.0.0.1`: its answers are used.
    Healthy,
    /// It answers wrongly (why, in a few words): ignored until healthy again.
    Broken(String),
    /// It did not answer: its state stays as it was.
    Unknown,
}

/// The name of a zone's test entry, which every blocklist lists (RFC 5782 §5).
pub const TEST_LISTED: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
/// The test address no blocklist may list (RFC 5782 §5).
pub const TEST_UNLISTED: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);

/// A zone's health from what it answered about [`TEST_LISTED`] and [`TEST_UNLISTED`]:
/// broken when it lists `127.0.0.1` (it answers every query), when it answers
/// `127.0.0.2` with an error code (`127.255.255.x`: it refuses our queries), or when
/// `127.0.0.2` is missing. A test entry's answer counts by the default rule whatever
/// the site's filter (a filter picks kinds of listing, not whether the zone works).
pub fn health(listed: &Answer, unlisted: &Answer) -> Health {
    let (Ok(listed), Ok(unlisted)) = (listed, unlisted) else {
        return Health::Unknown;
    };
    if let Some(a) = unlisted.iter().find(|a| counts_by_default(**a)) {
        return Health::Broken(format!("it lists 127.0.0.1 ({a}): it answers every query"));
    }
    if let Some(a) = listed.iter().find(|a| a.octets()[..3] == [127, 255, 255]) {
        return Health::Broken(format!("it answers 127.0.0.2 with the error code {a}"));
    }
    if !listed.iter().any(|a| counts_by_default(*a)) {
        return Health::Broken("its test entry 127.0.0.2 is missing".into());
    }
    Health::Healthy
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn sites_parse_and_show_back() {
        let sites =
            Site::parse_list("zen.spamhaus.org=127.0.0.[2..11]*3, bl.spamcop.net*2 Allow.Test*-5")
                .unwrap();
        assert_eq!(sites.len(), 3);
        assert_eq!(sites[0].zone, "zen.spamhaus.org");
        assert_eq!(sites[0].weight, 3);
        assert!(sites[0].lists(ip("127.0.0.11")));
        assert!(!sites[0].lists(ip("127.0.0.12")));
        assert!(!sites[0].lists(ip("127.0.1.2")));
        assert_eq!(sites[1].weight, 2);
        assert_eq!(sites[1].filter, None);
        assert_eq!(sites[2].zone, "allow.test");
        assert_eq!(sites[2].weight, -5);
        let shown: Vec<String> = sites.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown.join(","),
            "zen.spamhaus.org=127.0.0.[2..11]*3,bl.spamcop.net*2,allow.test*-5"
        );
        let one = Site::parse("x.test=127.0.0.2;127.0.0.[4;6..7]").unwrap();
        for (a, yes) in [
            ("127.0.0.2", true),
            ("127.0.0.3", false),
            ("127.0.0.4", true),
            ("127.0.0.5", false),
            ("127.0.0.7", true),
        ] {
            assert_eq!(one.lists(ip(a)), yes, "{a}");
        }
        for bad in [
            "nodot",
            "x.test*many",
            "x.test*5000",
            "x.test=127.0.0",
            "x.test=127.0.0.[9..2]",
            "x.test=127.0.0.256",
            "x..test",
            "x.test=",
            "bad zone.test",
        ] {
            assert!(Site::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn error_answers_are_never_listings() {
        let site = Site::parse("zen.test*3").unwrap();
        for e in ["127.255.255.252", "127.255.255.254", "127.255.255.255"] {
            assert!(!site.lists(ip(e)), "{e}");
        }
        assert!(site.lists(ip("127.0.0.2")));
        assert!(site.lists(ip("127.1.0.4")));
        assert!(!site.lists(ip("10.0.0.2")), "outside 127/8");
    }

    #[test]
    fn query_names() {
        assert_eq!(
            query_name("192.0.2.99".parse().unwrap(), "zen.test"),
            "99.2.0.192.zen.test."
        );
        assert_eq!(
            query_name("::ffff:127.0.0.2".parse().unwrap(), "zen.test"),
            "2.0.0.127.zen.test."
        );
        assert_eq!(
            query_name("2001:db8::1".parse().unwrap(), "zen.test"),
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.zen.test."
        );
    }

    #[test]
    fn scores_decide_and_name_the_heaviest() {
        let sites = Site::parse_list("a.test*1, b.test*3, c.test*2, ok.test*-4").unwrap();
        let listed: Answer = Ok(vec![ip("127.0.0.2")]);
        let clean: Answer = Ok(vec![]);
        let dead: Answer = Err("timed out".into());
        let s = Screening::of([
            (&sites[0], &listed),
            (&sites[1], &listed),
            (&sites[2], &dead),
            (&sites[3], &clean),
        ]);
        assert_eq!(s.score, 4);
        assert_eq!(s.blocked(3).map(|l| l.zone.as_str()), Some("b.test"));
        assert_eq!(s.blocked(5), None);
        assert!(!s.cacheable(5), "a zone did not answer");
        let reply = s.refusal("192.0.2.1".parse().unwrap(), 3).unwrap();
        assert_eq!(
            reply.to_string(),
            "554 5.7.1 Service unavailable; client [192.0.2.1] blocked using b.test"
        );
        let r = s.result(5);
        assert_eq!(
            r.describe(),
            "neutral (no answer from c.test) score=4 \
             listed=\"a.test=127.0.0.2*1,b.test=127.0.0.2*3\""
        );
        // An allowlist's listing takes the score down.
        let s = Screening::of([(&sites[1], &listed), (&sites[3], &listed)]);
        assert_eq!(s.score, -1);
        assert_eq!(s.blocked(3), None);
        assert_eq!(s.result(3).outcome, Outcome::Pass);
        let s = Screening::of([(&sites[2], &dead)]);
        assert_eq!(s.result(3).outcome, Outcome::TempError);
        assert_eq!(
            Screening::of([(&sites[0], &clean)]).result(3).describe(),
            "pass score=0"
        );
    }

    #[test]
    fn health_checks() {
        let ok: Answer = Ok(vec![ip("127.0.0.2")]);
        let none: Answer = Ok(vec![]);
        assert_eq!(health(&ok, &none), Health::Healthy);
        assert!(
            matches!(health(&ok, &ok), Health::Broken(_)),
            "lists everything"
        );
        assert!(
            matches!(health(&none, &none), Health::Broken(_)),
            "no test entry"
        );
        let refused: Answer = Ok(vec![ip("127.255.255.254")]);
        assert!(matches!(health(&refused, &refused), Health::Broken(_)));
        assert_eq!(health(&Err("timeout".into()), &none), Health::Unknown);
    }

    #[test]
    fn every_rendering_of_the_verdict_has_the_listings() {
        let sites = Site::parse_list("a.test, b.test").unwrap();
        let (two, three): (Answer, Answer) = (Ok(vec![TEST_LISTED]), Ok(vec![ip("127.0.0.3")]));
        let s = Screening::of([(&sites[0], &two), (&sites[1], &three)]);
        let v = crate::Verdict {
            dnsbl: Some(s.result(3)),
            ..crate::Verdict::default()
        };
        let described = "neutral score=2 listed=\"a.test=127.0.0.2*1,b.test=127.0.0.3*1\"";
        assert_eq!(
            String::from_utf8(v.header_fields("mx.test")).unwrap(),
            format!("X-Dnsbl: {described}\r\n")
        );
        let j = v.to_json();
        assert_eq!(
            j["dnsbl"]["listed"],
            "a.test=127.0.0.2*1,b.test=127.0.0.3*1"
        );
        assert_eq!(j["dnsbl"]["summary"], "GRAY");
        let fields = crate::deliver::verdict_fields(&v);
        assert_eq!(fields.len(), 1);
        assert_eq!(fields[0].0.header, "X-Smtp-Verdict-Dnsbl");
        assert_eq!(fields[0].0.env, "SMTP_VERDICT_DNSBL");
        assert_eq!(fields[0].1, described);
    }

    proptest! {
        #[test]
        fn a_range_matches_exactly_its_octets(lo in 0u8..=255, hi in 0u8..=255, o in 0u8..=255) {
            let (lo, hi) = (lo.min(hi), lo.max(hi));
            let site = Site::parse(&format!("z.test=127.0.0.[{lo}..{hi}]")).unwrap();
            prop_assert_eq!(site.lists(Ipv4Addr::new(127, 0, 0, o)), (lo..=hi).contains(&o));
            prop_assert!(!site.lists(Ipv4Addr::new(126, 0, 0, o)));
        }

        #[test]
        fn query_names_reverse_the_address(bytes in any::<[u8; 16]>()) {
            let v6 = std::net::Ipv6Addr::from(bytes);
            prop_assume!(v6.to_ipv4_mapped().is_none());
            let name = query_name(IpAddr::V6(v6), "z.test");
            let nibbles: Vec<&str> = name.trim_end_matches(".z.test.").split('.').collect();
            prop_assert_eq!(nibbles.len(), 32);
            let hex: String = nibbles.iter().rev().copied().collect();
            let back = u128::from_str_radix(&hex, 16).unwrap();
            prop_assert_eq!(back, u128::from(v6));
        }

        #[test]
        fn the_score_is_the_sum_of_the_listed_weights(ws in proptest::collection::vec((-5i32..=5, any::<bool>()), 0..8)) {
            let sites: Vec<Site> = ws.iter().enumerate()
                .map(|(i, (w, _))| Site::parse(&format!("z{i}.test*{w}")).unwrap())
                .collect();
            let listed: Answer = Ok(vec![TEST_LISTED]);
            let clean: Answer = Ok(vec![]);
            let s = Screening::of(sites.iter().zip(&ws).map(|(site, (_, on))| {
                (site, if *on { &listed } else { &clean })
            }));
            let sum: i32 = ws.iter().filter(|(_, on)| *on).map(|(w, _)| w).sum();
            prop_assert_eq!(s.score, sum);
            prop_assert_eq!(s.blocked(3).is_some(), sum >= 3);
        }
    }
}
