//! The pure half of `GSMTP_STORAGE=s3`: a message's object key and its metadata.

use std::time::SystemTime;

use super::{envelope_fields, verdict_fields};
use crate::delivery::{Envelope, QueueId};
use crate::trace;
use crate::verdict::Verdict;

/// A message's object key: `<prefix><YYYY>/<MM>/<DD>/<queue id>.eml`, the date in UTC,
/// so that keys sort by time and a consumer lists new mail with `start-after`.
pub fn key(prefix: &str, date: SystemTime, id: QueueId) -> String {
    let (y, m, d) = trace::utc_date(date);
    format!("{prefix}{y:04}/{m:02}/{d:02}/{id}.eml")
}

/// The object's signed headers: `content-type: message/rfc822` and every fact of
/// [`envelope_fields`] as metadata (`x-amz-meta-mail-from`, `-rcpt-to`, `-client-addr`,
/// `-client-name`, `-helo`, `-queue-id`, `-tls`), each [`super::Value::encoded`].
///
/// The verdict's facts follow ([`super::verdict_fields`]): `x-amz-meta-verdict-spf`,
/// `-dkim`, `-dmarc`, `-arc` and `x-amz-meta-authenticated-from`.
pub fn metadata(env: &Envelope, verdict: &Verdict) -> Vec<(String, String)> {
    let mut meta = vec![("content-type".to_string(), "message/rfc822".to_string())];
    meta.extend(
        envelope_fields(env)
            .into_iter()
            .map(|(f, v)| (f.meta.to_string(), v.encoded())),
    );
    meta.extend(
        verdict_fields(verdict)
            .into_iter()
            .map(|(f, v)| (f.meta.to_string(), v)),
    );
    meta
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_keys_sort_by_date() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_796_083_200);
        let id = QueueId(0xabc);
        assert_eq!(
            key("mail/", t, id),
            "mail/2026/12/01/00000000000000000000000000000abc.eml"
        );
        assert_eq!(
            key("", t, id),
            "2026/12/01/00000000000000000000000000000abc.eml"
        );
    }
}
