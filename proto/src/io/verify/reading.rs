//! A message's text read for its checks as it passes to the destination: the header
//! section is held until its blank line (bounded), the body only hashed, as each DKIM
//! and ARC signature's canonicalization asks, so a 25 MiB message costs its header
//! section and a few hash states. The header section is handed on without the
//! `Authentication-Results` fields that claim our name (RFC 8601 §5).

use std::borrow::Cow;

use mail_auth::AuthenticatedMessage;
use mail_auth::common::crypto::{HashAlgorithm, HashContext};
use mail_auth::dkim::Canonicalization;
use mail_auth::dkim::canonicalize::BodyHasher;

use crate::verdict;

/// The longest header section read for the checks. Past it, the text is handed on as it
/// is and the checks report a permanent error.
pub(crate) use crate::header::MAX_HEADER;

/// One body hash a signature asks for: its canonicalization, algorithm and `l=`.
type HashKey = (Canonicalization, HashAlgorithm, u64);

/// Where the reading is.
enum State {
    /// Gathering the header section.
    Header { scanned: usize },
    /// Hashing the body.
    Body {
        hashers: Vec<(HashKey, BodyHasher<ring::digest::Context>)>,
    },
    /// The header section was too long: nothing more is read.
    TooLong,
}

/// The reading of one message. See the module docs.
pub(crate) struct Reading {
    authserv_id: String,
    /// The other fields of ours removed ([`verdict::own_fields`]).
    own: &'static [&'static str],
    /// Whether the body is hashed for the checks (else the reading only cleans).
    checks: bool,
    /// The header section as received, blank line included once it came.
    header: Vec<u8>,
    state: State,
    /// `Authentication-Results` fields removed.
    pub(crate) removed: usize,
}

impl std::fmt::Debug for Reading {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reading")
            .field("header", &self.header.len())
            .finish_non_exhaustive()
    }
}

/// What the checks get of a message once it is read.
#[derive(Debug)]
pub(crate) struct Read {
    /// The header section as received, with its blank line (or all of the text, if it
    /// had none).
    pub(crate) header: Vec<u8>,
    /// The body hashes the signatures asked for.
    pub(crate) hashes: Vec<(HashKey, Vec<u8>)>,
    /// The header section was longer than [`MAX_HEADER`]: the message is refused before
    /// the checks, since fields forged in our name could not be removed from it.
    pub(crate) too_long: bool,
}

impl Reading {
    /// A reading that removes the `Authentication-Results` fields of `authserv_id`, and
    /// the fields named in `own`; with `checks`, it also hashes the body for them.
    pub(crate) fn new(authserv_id: &str, own: &'static [&'static str], checks: bool) -> Self {
        Self {
            authserv_id: authserv_id.to_string(),
            own,
            checks,
            header: Vec::new(),
            state: State::Header { scanned: 0 },
            removed: 0,
        }
    }

    /// Takes the next piece of text (as it is to be stored, after our trace headers);
    /// returns what the destination gets now: nothing while the header section is
    /// gathered, then the header section cleaned and what followed, then each piece as
    /// it is.
    pub(crate) fn feed<'a>(&mut self, bytes: &'a [u8]) -> Cow<'a, [u8]> {
        match &mut self.state {
            State::Body { hashers } => {
                for (_, h) in hashers {
                    h.write(bytes);
                }
                Cow::Borrowed(bytes)
            }
            State::TooLong => Cow::Borrowed(bytes),
            State::Header { scanned } => {
                let from = *scanned;
                self.header.extend_from_slice(bytes);
                match crate::header::header_end(&self.header, from) {
                    Some(end) => Cow::Owned(self.body_begins(end)),
                    None if self.header.len() > MAX_HEADER => {
                        self.state = State::TooLong;
                        Cow::Owned(std::mem::take(&mut self.header))
                    }
                    None => {
                        self.state = State::Header {
                            scanned: self.header.len(),
                        };
                        Cow::Borrowed(&[])
                    }
                }
            }
        }
    }

    /// The header section ends at `end` of what was gathered: the body's hashers are set
    /// up from its signatures, fed what came after it, and the cleaned header section
    /// and that rest are returned.
    fn body_begins(&mut self, end: usize) -> Vec<u8> {
        let rest = self.header.split_off(end);
        // Only the signatures decide the hashes: they are parsed, not the whole section.
        let signatures = if self.checks {
            verdict::signature_fields(&self.header)
        } else {
            Vec::new()
        };
        let keys: Vec<HashKey> = AuthenticatedMessage::parse_with_opts(&signatures, None, true)
            .map(|m| {
                m.body_hashes
                    .iter()
                    .map(|(c, h, l, _)| (*c, *h, *l))
                    .collect()
            })
            .unwrap_or_default();
        let mut hashers: Vec<(HashKey, BodyHasher<ring::digest::Context>)> = keys
            .into_iter()
            .map(|key| (key, BodyHasher::new(context(key.1), key.0, key.2)))
            .collect();
        for (_, h) in &mut hashers {
            h.write(&rest);
        }
        self.state = State::Body { hashers };
        let (mut out, removed) =
            verdict::remove_own_results(&self.header, &self.authserv_id, self.own);
        self.removed = removed;
        out.extend_from_slice(&rest);
        out
    }

    /// The end of the text: what is still to hand on (a text that was all header
    /// section), and what the checks get.
    pub(crate) fn finish(mut self) -> (Vec<u8>, Read) {
        let mut forward = Vec::new();
        if matches!(self.state, State::Header { .. }) {
            // No blank line: the whole text is its header section.
            let (cleaned, removed) =
                verdict::remove_own_results(&self.header, &self.authserv_id, self.own);
            self.removed = removed;
            forward = cleaned;
            self.header.extend_from_slice(b"\r\n");
            self.body_begins(self.header.len());
        }
        let too_long = matches!(self.state, State::TooLong);
        let hashes = match self.state {
            State::Body { hashers } => hashers
                .into_iter()
                .map(|(key, h)| (key, h.finish().0.complete().as_ref().to_vec()))
                .collect(),
            _ => Vec::new(),
        };
        let read = Read {
            header: self.header,
            hashes,
            too_long,
        };
        (forward, read)
    }
}

/// A hash state for `algorithm`.
fn context(algorithm: HashAlgorithm) -> ring::digest::Context {
    match algorithm {
        HashAlgorithm::Sha1 => ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY),
        HashAlgorithm::Sha256 => ring::digest::Context::new(&ring::digest::SHA256),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A message read a few octets at a time: the header section held whole (its blank
    /// line found wherever the pieces split it), our forged field removed, the body
    /// hashed for the signature's canonicalization, and the text handed on unchanged
    /// otherwise.
    #[test]
    fn pieces_of_any_size() {
        let header = "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=a.example; s=s;\r\n \
                      h=from; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=dGVzdA==\r\n\
                      Authentication-Results: mx.test; dkim=pass\r\n\
                      From: a@a.example\r\n\r\n";
        let body = "Hello  there \r\n\r\n\r\n";
        let text = format!("{header}{body}");
        for size in [1, 2, 3, 5, 7, 64, 4096] {
            let mut r = Reading::new("mx.test", &[], true);
            let mut out = Vec::new();
            for piece in text.as_bytes().chunks(size) {
                out.extend_from_slice(&r.feed(piece));
            }
            let (rest, read) = r.finish();
            out.extend_from_slice(&rest);
            assert_eq!(read.header, header.as_bytes(), "size {size}");
            assert_eq!(
                r_removed(&out),
                1,
                "size {size}: {}",
                String::from_utf8_lossy(&out)
            );
            assert!(out.ends_with(body.as_bytes()), "size {size}");
            assert_eq!(read.hashes.len(), 1, "size {size}");
            let relaxed = ring::digest::digest(&ring::digest::SHA256, b"Hello there\r\n");
            assert_eq!(read.hashes[0].1, relaxed.as_ref(), "size {size}");
        }
    }

    /// How many `Authentication-Results` fields `text` lost to the reading.
    fn r_removed(text: &[u8]) -> usize {
        let kept = String::from_utf8_lossy(text)
            .matches("Authentication-Results")
            .count();
        1 - kept
    }
}
