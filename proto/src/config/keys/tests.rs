use super::*;

/// A value for every key, each different from the default.
const OTHER: &[(&str, &str)] = &[
    ("GSMTP_HOST_NAME", "mx.example.org"),
    ("GSTMP_LISTEN_INTERFACE", "127.0.0.1:2600"),
    ("GSMTP_TLS_LISTEN_INTERFACE", "[::1]:4650"),
    ("GSMTP_MAX_SIZE", "2048000"),
    ("GSMTP_TIMEOUT", "77"),
    ("GSMTP_SESSION_TIMEOUT", "900"),
    ("GSMTP_VERBOSE", "Y"),
    ("GSMTP_LOG_FILE", "/var/log/g.log"),
    ("GSMTP_LOG_FORMAT", "json"),
    ("GSMTP_PUB_KEY", "/etc/g/cert.pem"),
    ("GSMTP_PRV_KEY", "/etc/g/key.pem"),
    ("GM_ALLOWED_HOSTS", "a.example,*.c.example"),
    ("GM_PRIMARY_MAIL_HOST", "mail.example.org"),
    ("GSMTP_RECIPIENT_DELIMITER", "+-"),
    ("GM_MAX_CLIENTS", "321"),
    ("GM_MAX_CLIENTS_PER_IP", "0"),
    ("GSMTP_MAILDIR", "/var/mail/g"),
    ("GSMTP_MAILDIR_MODE", "0640"),
    ("GSMTP_STORAGE", "s3"),
    ("GSMTP_PIPE_COMMAND", "deliver -f '${sender}'"),
    ("GSMTP_PIPE_TIMEOUT", "45"),
    ("GSMTP_PIPE_PER_RECIPIENT", "Y"),
    ("GSMTP_PIPE_CONCURRENCY", "7"),
    ("GSMTP_HTTP_URL", "https://hooks.example.com:8443/in?x=1"),
    ("GSMTP_HTTP_CA", "/etc/g/ca.pem"),
    ("GSMTP_HTTP_SECRET", "hush-http"),
    ("GSMTP_HTTP_TIMEOUT", "12"),
    ("GSMTP_HTTP_CONNECTIONS", "3"),
    ("GSMTP_LMTP_ADDR", "unix:/run/dovecot/lmtp"),
    ("GSMTP_LMTP_TIMEOUT", "33"),
    ("GSMTP_LMTP_CONNECTIONS", "4"),
    ("GSMTP_S3_ENDPOINT", "http://127.0.0.1:3900/"),
    ("GSMTP_S3_BUCKET", "mail-bucket"),
    ("GSMTP_S3_REGION", "garage"),
    ("GSMTP_S3_PREFIX", "in/"),
    ("GSMTP_S3_PATH_STYLE", "N"),
    ("GSMTP_S3_ACCESS_KEY", "GKaccess"),
    ("GSMTP_S3_SECRET_KEY", "hush-s3"),
    ("GSMTP_SPOOL_DIR", "/var/spool/g"),
    ("GSMTP_FSYNC", "N"),
    ("GSMTP_MAX_RCPT", "250"),
    ("GSMTP_MAX_COMMAND_LENGTH", "2048"),
    ("GSMTP_MAX_LINE_LENGTH", "0"),
    ("GSMTP_MAX_ERRORS", "5"),
    ("GSMTP_BARE_NEWLINE", "reject"),
    ("GSMTP_SHUTDOWN_GRACE", "3"),
    ("NGINX_AUTH_ENABLED", "Y"),
    ("NGINX_AUTH", "127.0.0.1:8026"),
    ("NGINX_AUTH_BACKENDS", "127.0.0.1:2600,[::1]:2601"),
    ("GSMTP_XCLIENT_HOSTS", "10.0.0.0/8,::1/128"),
    ("GSMTP_PROXY_PROTOCOL", "Y"),
    ("SGID", "mail"),
    ("GUID", "mail"),
    ("PID_FILE", "/run/g.pid"),
    ("GSMTP_THREADS", "4"),
    ("GSMTP_METRICS_LISTEN", "0.0.0.0:9190"),
    ("GSMTP_VERIFY", "spf,dmarc"),
    ("GSMTP_DNS_SERVERS", "127.0.0.1:5353,[::1]:53"),
    ("GSMTP_DNS_TIMEOUT", "2"),
    ("GSMTP_DNSBL", "zen.example=127.0.0.[2..11]*3,bl.example*-2"),
    ("GSMTP_DNSBL_THRESHOLD", "5"),
    ("GSMTP_DNSBL_ACTION", "reject-rcpt"),
    ("GSMTP_DMARC_REJECT", "Y"),
    ("GSMTP_VERIFY_TEMPFAIL", "Y"),
    ("GSMTP_RSPAMD_URL", "http://127.0.0.1:11333/"),
    ("GSMTP_RSPAMD_TIMEOUT", "9"),
    ("GSMTP_RSPAMD_PASSWORD", "q"),
    ("GSMTP_GREYLIST", "Y"),
    ("GSMTP_MILTERS", "inet:127.0.0.1:8891,unix:/run/m.sock"),
    ("GSMTP_MILTER_CONNECT_TIMEOUT", "7"),
    ("GSMTP_MILTER_COMMAND_TIMEOUT", "8"),
    ("GSMTP_MILTER_CONTENT_TIMEOUT", "99"),
    ("GSMTP_FILTER_ON_ERROR", "accept"),
    ("GSMTP_GREET_PAUSE", "3"),
    ("GSMTP_AUTH", "accept-any"),
    ("GSMTP_AUTH_FILE", "/etc/guerrilla/users"),
    ("GSMTP_AUTH_INSECURE", "Y"),
];

fn names(reload: impl Fn(&Reload) -> bool) -> Vec<&'static str> {
    TABLE
        .iter()
        .filter(|k| reload(&k.reload))
        .map(|k| k.name)
        .collect()
}

/// The classes a reload has always used: the keys `Server::reload` kept (in this order),
/// the settings that made it open the destination again, and the log's.
#[test]
fn reload_classes() {
    assert_eq!(
        names(|r| matches!(r, Restart(_))),
        [
            "GSTMP_LISTEN_INTERFACE",
            "GSMTP_TLS_LISTEN_INTERFACE",
            "NGINX_AUTH_ENABLED",
            "NGINX_AUTH",
            "NGINX_AUTH_BACKENDS",
            "SGID",
            "GUID",
            "PID_FILE",
            "GSMTP_THREADS",
            "GSMTP_METRICS_LISTEN",
            "GSMTP_DNS_SERVERS",
            "GSMTP_DNS_TIMEOUT",
        ]
    );
    let destination = names(|r| matches!(r, Destination));
    for k in [
        "GSMTP_HOST_NAME",
        "GSMTP_STORAGE",
        "GSMTP_SPOOL_DIR",
        "GSMTP_FSYNC",
        // LMTP holds its hand-off to the end while checks are on.
        "GSMTP_VERIFY",
    ] {
        assert!(destination.contains(&k), "{k}");
    }
    assert!(destination.contains(&"GSMTP_MAILDIR") && destination.contains(&"GSMTP_MAILDIR_MODE"));
    let handoff = ["GSMTP_PIPE_", "GSMTP_HTTP_", "GSMTP_LMTP_", "GSMTP_S3_"];
    for k in KEYS
        .iter()
        .filter(|k| handoff.iter().any(|p| k.starts_with(p)))
    {
        assert!(destination.contains(k), "{k}");
    }
    assert_eq!(destination.len(), 6 + 4 + 5 + 3 + 7 + 1);
    assert_eq!(
        names(|r| matches!(r, Log)),
        ["GSMTP_LOG_FILE", "GSMTP_LOG_FORMAT"]
    );
}

#[test]
fn names_are_unique_and_found() {
    let mut all: Vec<&str> = TABLE
        .iter()
        .flat_map(|k| std::iter::once(k.name).chain(k.aliases.iter().copied()))
        .chain(IGNORED.iter().map(|(k, _)| *k))
        .collect();
    let count = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), count);
    assert_eq!(KEYS.len(), TABLE.len());
    for k in TABLE {
        assert_eq!(Key::find(k.name).map(|f| f.name), Some(k.name));
        for a in k.aliases {
            assert_eq!(Key::find(a).map(|f| f.name), Some(k.name));
        }
    }
    assert_eq!(Key::find("gsmtp_max_size").map(|k| k.name), None);
    assert_eq!(
        (
            Key::find("SUID").unwrap().name,
            Key::find("GSMTP_LISTEN_INTERFACE").unwrap().name
        ),
        ("GUID", "GSTMP_LISTEN_INTERFACE")
    );
}

/// Each key alone: its value reaches the field its own entry shows (and no other), and
/// the reload's checks see it as its class says.
#[test]
fn each_key_reads_and_shows_its_own_field() {
    let keys: Vec<&str> = OTHER.iter().map(|(k, _)| *k).collect();
    assert_eq!(keys, KEYS, "OTHER needs a value for every key, in order");
    let default = Config::default();
    let before = default.effective();
    for (k, (name, value)) in TABLE.iter().zip(OTHER) {
        let mut cfg = Config::default();
        assert_eq!(cfg.set_json(name, &(*value).into()), Ok(true), "{name}");
        let after = cfg.effective();
        let changed: Vec<&str> = before
            .iter()
            .zip(&after)
            .filter(|(b, a)| b != a)
            .map(|(b, _)| b.0)
            .collect();
        assert_eq!(changed, [*name]);
        let shown = if k.secret { MASK } else { value };
        assert_eq!(k.shown(&cfg), shown, "{name}");
        assert_eq!(
            default.same_destination(&cfg),
            !matches!(k.reload, Destination),
            "{name}"
        );
        let restart = default.restart_needed(&cfg);
        if matches!(k.reload, Restart(_)) {
            assert_eq!(restart, [*name]);
            cfg.keep_restart_only(&default);
            assert_eq!(cfg.effective(), before, "{name} kept");
        } else {
            assert!(restart.is_empty(), "{name}: {restart:?}");
            cfg.keep_restart_only(&default);
            assert_eq!(cfg.effective(), after, "{name} taken");
        }
    }
}

/// A secret is compared by its value, though both are shown masked.
#[test]
fn a_new_secret_is_another_destination() {
    for name in ["GSMTP_HTTP_SECRET", "GSMTP_S3_SECRET_KEY"] {
        let (mut a, mut b) = (Config::default(), Config::default());
        a.set_json(name, &"one".into()).unwrap();
        b.set_json(name, &"two".into()).unwrap();
        assert_eq!(a.effective(), b.effective());
        assert!(!a.same_destination(&b), "{name}");
        assert!(a.same_destination(&a.clone()));
    }
}

/// A blocklist setting that cannot be used stops the start, naming its key.
#[test]
fn bad_dnsbl_settings_name_their_key() {
    for (key, value) in [
        ("GSMTP_DNSBL_ACTION", "drop"),
        ("GSMTP_DNSBL", "zen.example=127.0.0.[9..2]"),
        ("GSMTP_DNSBL", "zen.example*x"),
        ("GSMTP_DNSBL_THRESHOLD", "0"),
        ("GSMTP_AUTH", "yes"),
        ("GSMTP_GREET_PAUSE", "61"),
    ] {
        let e = Config::default().set_json(key, &value.into()).unwrap_err();
        assert_eq!(e.key, key, "{value}");
        assert!(
            e.to_string().starts_with(&format!("config key {key}: ")),
            "{e}"
        );
    }
}

#[test]
fn aliases_set_the_same_field() {
    for k in TABLE {
        let value = OTHER.iter().find(|(n, _)| *n == k.name).unwrap().1;
        let mut by_name = Config::default();
        by_name.set_json(k.name, &value.into()).unwrap();
        for alias in k.aliases {
            let mut by_alias = Config::default();
            assert_eq!(by_alias.set_json(alias, &value.into()), Ok(true));
            assert_eq!(by_alias.effective(), by_name.effective(), "{alias}");
            // An error names the key as the file spells it.
            let e = by_alias.set_json(alias, &"?".into()).unwrap_err();
            assert_eq!(e.key, *alias);
        }
    }
}
