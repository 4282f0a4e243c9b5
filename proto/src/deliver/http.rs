//! The pure half of `GSMTP_STORAGE=http`: the request's headers and `multipart/form-data`
//! body, its signature's value, and what the receiver's status means.

use std::fmt::Write as _;

use super::{RCPT_TO, envelope_fields, refusal, verdict_fields};
use crate::delivery::{DeliveryError, Envelope};
use crate::verdict::Verdict;

/// The envelope as HTTP request headers: every fact of [`envelope_fields`] but the
/// recipients (`X-Smtp-Mail-From`, `X-Smtp-Client-Addr`, `X-Smtp-Client-Name`,
/// `X-Smtp-Helo`, `X-Smtp-Queue-Id`, `X-Smtp-Tls`), each [`super::Value::encoded`], and
/// `X-Smtp-Rcpt-Count`. Their number and size are bounded whatever the message: the
/// recipients, up to `GSMTP_MAX_RCPT` of them of any length, travel in the body's JSON
/// envelope ([`envelope`]), which any receiver takes.
///
/// The verdict's facts follow ([`super::verdict_fields`]): `X-Smtp-Verdict-Spf`, `-Dkim`,
/// `-Dmarc`, `-Arc` (each when its check ran) and `X-Smtp-Authenticated-From` (only when
/// the `From:` is authenticated). The signature covers them all ([`signed`]).
pub fn headers(env: &Envelope, verdict: &Verdict) -> Vec<(&'static str, String)> {
    let mut h: Vec<(&'static str, String)> = envelope_fields(env)
        .into_iter()
        .filter(|(f, _)| *f != RCPT_TO)
        .map(|(f, v)| (f.header, v.encoded()))
        .collect();
    h.push(("X-Smtp-Rcpt-Count", env.recipients.len().to_string()));
    h.extend(
        verdict_fields(verdict)
            .into_iter()
            .map(|(f, v)| (f.header, v)),
    );
    h
}

/// What `X-Smtp-Signature`'s HMAC covers, before the body: `<t>.`, then each of
/// `headers` (the `X-Smtp-*` headers of [`headers`]) as `<lower-case name>:<value>` and
/// LF, these lines sorted (as octets), then LF. A receiver rebuilds it from the `X-Smtp-*` headers it got
/// (the signature's own aside), whatever their order on the way, so no header the
/// signature covers can be added, dropped or changed.
pub fn signed(t: u64, headers: &[(&str, String)]) -> Vec<u8> {
    let mut lines: Vec<String> = headers
        .iter()
        .map(|(name, value)| format!("{}:{value}\n", name.to_ascii_lowercase()))
        .collect();
    lines.sort_unstable();
    let mut out = format!("{t}.").into_bytes();
    for line in lines {
        out.extend_from_slice(line.as_bytes());
    }
    out.push(b'\n');
    out
}

/// The JSON envelope of an HTTP request: every fact of [`envelope_fields`] by its JSON
/// name, strings exactly as received (`"rcpt_to": ["u@example.com", ...]`), then, when a
/// check ran, `"verdict"` ([`Verdict::to_json`]).
pub fn envelope(env: &Envelope, verdict: &Verdict) -> Vec<u8> {
    // Written by hand to keep the fields in their order (serde_json's map sorts them).
    let mut out = b"{".to_vec();
    for (i, (f, v)) in envelope_fields(env).into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut out, f.json).expect("JSON of a string");
        out.push(b':');
        serde_json::to_writer(&mut out, &v.to_json()).expect("JSON of strings");
    }
    if !verdict.is_empty() {
        out.extend_from_slice(b",\"verdict\":");
        serde_json::to_writer(&mut out, &verdict.to_json()).expect("JSON");
    }
    out.push(b'}');
    out
}

/// An HTTP request body in `multipart/form-data` (RFC 7578), as SendGrid's and Mailgun's
/// inbound webhooks post: the part `envelope` (`application/json`, [`envelope`]),
/// then the part `message` (`message/rfc822`, file name `<queue id>.eml`), then the
/// closing delimiter. Returns what goes before the message and what goes after it.
///
/// The boundary must not occur in the message: the caller draws it at random once the
/// client has no more say in the message's text (128 bits, never disclosed to the
/// client), so no sender can end the part early.
pub fn multipart(env: &Envelope, verdict: &Verdict, boundary: &str) -> (Vec<u8>, Vec<u8>) {
    let mut head = format!(
        "--{boundary}\r\n\
         Content-Disposition: form-data; name=\"envelope\"\r\n\
         Content-Type: application/json\r\n\r\n"
    )
    .into_bytes();
    head.extend_from_slice(&envelope(env, verdict));
    head.extend_from_slice(
        format!(
            "\r\n--{boundary}\r\n\
             Content-Disposition: form-data; name=\"message\"; filename=\"{}.eml\"\r\n\
             Content-Type: message/rfc822\r\n\r\n",
            env.id
        )
        .as_bytes(),
    );
    let tail = format!("\r\n--{boundary}--\r\n").into_bytes();
    (head, tail)
}

/// `X-Smtp-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of [`signed`] + body>`'s value.
pub fn signature_value(t: u64, mac: &[u8]) -> String {
    let mut out = format!("t={t},v1=");
    for b in mac {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// What an HTTP receiver's status means: `2xx` is committed (`250`); `403`, `406` and
/// `422` are deliberate refusals (`550 5.7.1`, with the response's first line as text);
/// `413` is `552 5.3.4`; anything else (`5xx`, redirects, `404`, ...) is `451 4.3.0`, as
/// a timeout or a refused connection is.
pub fn result(status: u16, first_line: &str) -> Result<(), DeliveryError> {
    match status {
        200..=299 => Ok(()),
        403 | 406 | 422 => Err(refusal(
            550,
            "5.7.1",
            first_line,
            "Error: refused by the receiver",
        )),
        413 => Err(refusal(
            552,
            "5.3.4",
            first_line,
            "Error: message too big for the receiver",
        )),
        _ => Err(refusal(
            451,
            "4.3.0",
            "",
            "Error: the receiver failed, try again later",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_statuses() {
        let r = |status, line: &str| match result(status, line) {
            Ok(()) => "250".into(),
            Err(e) => e.reply_at(crate::Stage::Data).to_string(),
        };
        assert_eq!(r(200, ""), "250");
        assert_eq!(r(204, ""), "250");
        assert_eq!(r(403, "spam, go away"), "550 5.7.1 spam, go away");
        assert_eq!(r(406, ""), "550 5.7.1 Error: refused by the receiver");
        assert_eq!(r(422, "x"), "550 5.7.1 x");
        assert_eq!(
            r(413, ""),
            "552 5.3.4 Error: message too big for the receiver"
        );
        for status in [301, 400, 404, 429, 500, 502, 503] {
            assert!(r(status, "5.1.1 no").starts_with("451 4.3.0 "), "{status}");
        }
        assert_eq!(signature_value(5, &[0, 255]), "t=5,v1=00ff");
    }
}
