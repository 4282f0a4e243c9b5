//! The pure half of `GSMTP_STORAGE=http`: the request's headers and `multipart/form-data`
//! body, its signature's value, and what the receiver's status means.

use std::fmt::Write as _;

use super::{RCPT_TO, envelope_fields, refusal};
use crate::delivery::{DeliveryError, Envelope};

/// The envelope as HTTP request headers: every fact of [`envelope_fields`] but the
/// recipients (`X-Smtp-Mail-From`, `X-Smtp-Client-Addr`, `X-Smtp-Client-Name`,
/// `X-Smtp-Helo`, `X-Smtp-Queue-Id`, `X-Smtp-Tls`), each [`super::Value::encoded`], and
/// `X-Smtp-Rcpt-Count`. Their number and size are bounded whatever the message: the
/// recipients, up to `GSMTP_MAX_RCPT` of them of any length, travel in the body's JSON
/// envelope ([`envelope`]), which any receiver takes.
pub fn headers(env: &Envelope) -> Vec<(&'static str, String)> {
    let mut h: Vec<(&'static str, String)> = envelope_fields(env)
        .into_iter()
        .filter(|(f, _)| *f != RCPT_TO)
        .map(|(f, v)| (f.header, v.encoded()))
        .collect();
    h.push(("X-Smtp-Rcpt-Count", env.recipients.len().to_string()));
    h
}

/// The JSON envelope of an HTTP request: every fact of [`envelope_fields`] by its JSON
/// name, strings exactly as received (`"rcpt_to": ["u@example.com", ...]`).
pub fn envelope(env: &Envelope) -> Vec<u8> {
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
pub fn multipart(env: &Envelope, boundary: &str) -> (Vec<u8>, Vec<u8>) {
    let mut head = format!(
        "--{boundary}\r\n\
         Content-Disposition: form-data; name=\"envelope\"\r\n\
         Content-Type: application/json\r\n\r\n"
    )
    .into_bytes();
    head.extend_from_slice(&envelope(env));
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

/// `X-Smtp-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>." + body>`'s value.
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
