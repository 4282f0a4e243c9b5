//! The configuration shown back: every key with its effective value, secrets masked
//! (`--check-config`), and the nearest known key to a misspelt one.

use super::{Config, IGNORED, KEYS, TABLE};

/// What a set secret is shown as.
pub const MASK: &str = "********";

impl Config {
    /// Every key ([`KEYS`], in that order) with its effective value as the file would
    /// write it; a set secret is [`MASK`], an unset optional value empty. Fed back to
    /// [`Config::from_json`], it gives the same configuration (secrets aside).
    pub fn effective(&self) -> Vec<(&'static str, String)> {
        TABLE.iter().map(|k| (k.name, k.shown(self))).collect()
    }

    /// [`Config::effective`] as a JSON object, one key per line.
    pub fn effective_json(&self) -> String {
        let mut out = String::from("{\n");
        let all = self.effective();
        for (i, (key, value)) in all.iter().enumerate() {
            let comma = if i + 1 < all.len() { "," } else { "" };
            let value = serde_json::Value::String(value.clone());
            out.push_str(&format!("  \"{key}\": {value}{comma}\n"));
        }
        out.push_str("}\n");
        out
    }
}

/// The known key nearest to `unknown` (case aside, at most a few edits away), for "did
/// you mean".
pub fn nearest_key(unknown: &str) -> Option<&'static str> {
    let wanted = unknown.to_ascii_uppercase();
    // Names before aliases: on a tie, the first candidate wins.
    let candidates = KEYS
        .iter()
        .chain(TABLE.iter().flat_map(|k| k.aliases))
        .chain(IGNORED.iter().map(|(k, _)| k));
    let (best, distance) = candidates
        .map(|k| (*k, edit_distance(&wanted, k)))
        .min_by_key(|(_, d)| *d)?;
    (distance <= 3 && distance * 3 <= wanted.len()).then_some(best)
}

/// Levenshtein distance, in bytes.
fn edit_distance(a: &str, b: &str) -> usize {
    let b = b.as_bytes();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.bytes().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_key_is_known() {
        let mut cfg = Config::default();
        for key in KEYS.iter().chain(TABLE.iter().flat_map(|k| k.aliases)) {
            // A wrong value is an error about the key, never "unknown".
            let r = cfg.set_json(key, &serde_json::Value::Array(Vec::new()));
            assert!(!matches!(r, Ok(false)), "{key} is listed but unknown");
        }
        assert_eq!(cfg.set_json("GSMTP_NOPE", &"1".into()), Ok(false));
    }

    #[test]
    fn effective_round_trips() {
        let text = r#"{"GM_ALLOWED_HOSTS": "b.example,a.example,*.c.example",
            "GSMTP_STORAGE": "pipe", "GSMTP_PIPE_COMMAND": "deliver -f '${sender}' --x \"a b\"",
            "GSMTP_XCLIENT_HOSTS": "10.0.0.0/8,::1", "NGINX_AUTH_BACKENDS": "127.0.0.1:1,[::1]:2",
            "GSMTP_HTTP_URL": "https://h.example:8443/in?x=1", "GSMTP_HTTP_SECRET": "hush",
            "GSMTP_S3_SECRET_KEY": "hush2", "GSMTP_TLS_LISTEN_INTERFACE": "",
            "GSMTP_LMTP_ADDR": "unix:/run/dovecot/lmtp", "GUID": "mail", "GSMTP_MAX_SIZE": 5}"#;
        let (cfg, _) = Config::from_json(text).unwrap();
        let shown = cfg.effective_json();
        assert!(!shown.contains("hush"), "{shown}");
        assert!(shown.contains(&format!("\"GSMTP_HTTP_SECRET\": \"{MASK}\"")));
        let (again, warnings) = Config::from_json(&shown).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(again.effective(), cfg.effective());
        let keys: Vec<&str> = cfg.effective().iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, KEYS);
    }

    #[test]
    fn nearest_keys() {
        assert_eq!(nearest_key("GM_ALLOWED_HOST"), Some("GM_ALLOWED_HOSTS"));
        assert_eq!(nearest_key("gsmtp_maxsize"), Some("GSMTP_MAX_SIZE"));
        assert_eq!(
            nearest_key("GSMTP_LISTEN_INTERFAC"),
            Some("GSMTP_LISTEN_INTERFACE")
        );
        assert_eq!(nearest_key("MYSQL_PASSWORD"), None);
        assert_eq!(nearest_key("TOTALLY_DIFFERENT"), None);
        assert_eq!(nearest_key("X"), None);
    }
}
