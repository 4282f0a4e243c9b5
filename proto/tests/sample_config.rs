//! The packaged sample configuration, `goguerrilla.conf.sample` at the top of the
//! repository (installed as `/etc/guerrilla/goguerrilla.conf` by `contrib/README.md`), is
//! accepted as it stands, with the values the systemd unit in `contrib/` expects. As the
//! original's sample, it is strict JSON with no comments: the README documents its keys.

use std::path::{Path, PathBuf};

use proto::Config;
use proto::config::Storage;

/// A file at the top of the repository.
fn top_file(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn sample() -> String {
    top_file("goguerrilla.conf.sample")
}

#[test]
fn accepted_with_the_packaged_values() {
    let (cfg, warnings) = Config::from_json(&sample()).unwrap_or_else(|e| panic!("{e}"));
    cfg.validate().unwrap();
    // Only the original's MySQL keys are reported, as ignored: no key is misspelt.
    for w in &warnings {
        assert!(
            w.contains(" is ignored: ") && (w.contains("MYSQL_") || w.contains("GM_MAIL_TABLE")),
            "{w}"
        );
    }
    assert_eq!(cfg.storage, Storage::Maildir);
    assert_eq!(cfg.maildir, Path::new("/var/mail/guerrilla"));
    assert!(cfg.fsync);
    assert!(cfg.allowed_hosts.allows("example.com"));
    assert!(!cfg.allowed_hosts.allows("example.net"));
    assert_eq!(cfg.primary_mail_host, None);
    assert_eq!(cfg.listen, "0.0.0.0:25".parse().unwrap());
    assert_eq!(cfg.log_file, "/var/log/guerrilla/guerrilla.log");
    assert_eq!(
        cfg.pid_file.as_deref(),
        Some(Path::new("/run/guerrilla/guerrilla.pid"))
    );
    assert_eq!(
        (cfg.user.as_deref(), cfg.group.as_deref()),
        (Some("guerrilla"), Some("guerrilla"))
    );
    // No key pair yet (a fresh install has none), so no STARTTLS until one is set.
    assert!(!cfg.tls_enabled());
    assert!(!cfg.nginx_auth_enabled && !cfg.verbose);
}

#[test]
fn strict_json_with_the_originals_keys_as_strings() {
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&sample())
        .expect("strict JSON, no comments (the README documents the keys)");
    // Every key of the seed README's annotated sample.
    for key in [
        "GM_ALLOWED_HOSTS",
        "GM_MAIL_TABLE",
        "GM_PRIMARY_MAIL_HOST",
        "GSMTP_HOST_NAME",
        "GSMTP_LOG_FILE",
        "GSMTP_MAX_SIZE",
        "GSMTP_PRV_KEY",
        "GSMTP_PUB_KEY",
        "GSMTP_TIMEOUT",
        "GSMTP_VERBOSE",
        "GSTMP_LISTEN_INTERFACE",
        "MYSQL_DB",
        "MYSQL_HOST",
        "MYSQL_PASS",
        "MYSQL_USER",
        "GM_MAX_CLIENTS",
        "NGINX_AUTH_ENABLED",
        "NGINX_AUTH",
        "SGID",
        "GUID",
    ] {
        assert!(map.contains_key(key), "{key} is missing");
    }
    // As in the original's sample, every value is a string.
    for (key, value) in &map {
        assert!(value.is_string(), "{key}: {value}");
    }
}

#[test]
fn every_key_is_documented_in_the_readme() {
    let readme = top_file("README.md");
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&sample()).unwrap();
    for key in map.keys() {
        // `MYSQL_*` documents MYSQL_DB and the rest.
        let family = key
            .split_once('_')
            .map(|(prefix, _)| format!("`{prefix}_*`"));
        let documented =
            readme.contains(&format!("`{key}`")) || family.is_some_and(|f| readme.contains(&f));
        assert!(
            documented,
            "{key} is not in README.md's Configuration table"
        );
    }
}
