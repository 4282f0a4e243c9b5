use super::value::grouped;
use super::*;

/// The annotated example of the seed README, comments, tabs and all.
const SEED: &str = r#"
	{
	    "GM_ALLOWED_HOSTS":"example.com,sample.com,foo.com,bar.com", // which domains accept mail
	    "GM_MAIL_TABLE":"new_mail", // name of new email table
	    "GM_PRIMARY_MAIL_HOST":"mail.example.com", // given in the SMTP greeting
	    "GSMTP_HOST_NAME":"mail.example.com", // given in the SMTP greeting
	    "GSMTP_LOG_FILE":"/dev/stdout", // not used yet
	    "GSMTP_MAX_SIZE":"131072", // max size of DATA command
	    "GSMTP_PRV_KEY":"/etc/ssl/private/example.com.key", // private key for TLS
	    "GSMTP_PUB_KEY":"/etc/ssl/certs/example.com.crt", // public key for TLS
	    "GSMTP_TIMEOUT":"100", // tcp connection timeout
	    "GSMTP_VERBOSE":"N", // set to Y for debugging
	    "GSTMP_LISTEN_INTERFACE":"5.9.7.183:25",
	    "MYSQL_DB":"gmail_mail", // database name
	    "MYSQL_HOST":"127.0.0.1:3306", // database connect
	    "MYSQL_PASS":"$ecure1t", // database connection pass
	    "MYSQL_USER":"gmail_mail", // database username
	    "GM_MAX_CLIENTS":"500", // max clients that can be handled
		"NGINX_AUTH_ENABLED":"N",// Y or N
		"NGINX_AUTH":"127.0.0.1:8025", // If using Nginx proxy, choose an ip and port to serve Auth requsts for Nginx
	    "SGID":"508",// group id of the user from /etc/passwd
		"GUID":"504" // uid from /etc/passwd
	}
"#;

#[test]
fn seed_example_parses() {
    let (cfg, warnings) = Config::from_json(SEED).unwrap();
    assert_eq!(cfg.host_name, "mail.example.com");
    assert_eq!(cfg.listen, "5.9.7.183:25".parse().unwrap());
    assert_eq!(cfg.max_size, 131072);
    assert_eq!(cfg.timeout, Duration::from_secs(100));
    assert_eq!(cfg.max_clients, 500);
    assert_eq!(cfg.primary_mail_host.as_deref(), Some("mail.example.com"));
    assert!(cfg.allowed_hosts.allows("foo.com") && !cfg.allowed_hosts.allows("evil.com"));
    assert_eq!(
        (cfg.group.as_deref(), cfg.user.as_deref()),
        (Some("508"), Some("504"))
    );
    assert!(cfg.tls_enabled() && !cfg.nginx_auth_enabled && !cfg.verbose);
    assert_eq!(warnings.len(), 5, "{warnings:?}");
    assert!(warnings.iter().all(|w| w.contains("ignored")));
}

#[test]
fn native_values_and_corrected_spelling() {
    let (cfg, w) = Config::from_json(
        r#"{"GSMTP_MAX_SIZE": 2048, "GSMTP_VERBOSE": true, "GSMTP_LISTEN_INTERFACE": ":2526",
            "GSMTP_FSYNC": "n", "GSMTP_STORAGE": "Discard", "GSMTP_BARE_NEWLINE": "reject",}"#,
    )
    .unwrap();
    assert!(w.is_empty());
    assert_eq!(cfg.max_size, 2048);
    assert!(cfg.verbose && !cfg.fsync);
    assert_eq!(cfg.listen, "0.0.0.0:2526".parse().unwrap());
    assert_eq!(cfg.storage, Storage::Discard);
    assert_eq!(cfg.bare_newline, BareNewline::Reject);
}

#[test]
fn bad_values_name_their_key() {
    let table = [
        (r#"{"GSMTP_MAX_SIZE": "lots"}"#, "GSMTP_MAX_SIZE"),
        (r#"{"GSMTP_TIMEOUT": "0"}"#, "GSMTP_TIMEOUT"),
        (
            r#"{"GSTMP_LISTEN_INTERFACE": "nowhere"}"#,
            "GSTMP_LISTEN_INTERFACE",
        ),
        (r#"{"GSMTP_VERBOSE": "maybe"}"#, "GSMTP_VERBOSE"),
        (r#"{"GSMTP_STORAGE": "mysql"}"#, "GSMTP_STORAGE"),
        (r#"{"GSMTP_PUB_KEY": "/a"}"#, "GSMTP_PRV_KEY"),
        (
            r#"{"GSMTP_MAX_LINE_LENGTH": "80"}"#,
            "GSMTP_MAX_LINE_LENGTH",
        ),
        (r#"{"GSMTP_HOST_NAME": "bad host"}"#, "GSMTP_HOST_NAME"),
        (
            r#"{"GSMTP_XCLIENT_HOSTS": "10.0.0.0/33"}"#,
            "GSMTP_XCLIENT_HOSTS",
        ),
        (r#"["not", "an", "object"]"#, ""),
        (r#"{"GSMTP_MAX_SIZE": "1""#, ""),
    ];
    for (text, key) in table {
        let e = Config::from_json(text).unwrap_err();
        assert_eq!(e.key, key, "{text}: {e}");
        assert!(!e.to_string().contains('\n'));
    }
}

#[test]
fn unknown_keys_warn() {
    let (_, w) = Config::from_json(r#"{"GSMTP_MAX_SIZ": "1", "SOMETHING_ELSE": 2}"#).unwrap();
    assert_eq!(
        w,
        [
            "config key GSMTP_MAX_SIZ is unknown and ignored (did you mean GSMTP_MAX_SIZE?)",
            "config key SOMETHING_ELSE is unknown and ignored",
        ]
    );
    let e = Config::from_json(r#"{"GM_ALLOWED_HOSTS": "example.com, exa mple.org"}"#).unwrap_err();
    assert_eq!(e.key, "GM_ALLOWED_HOSTS");
    assert!(e.message.contains("\"exa mple.org\""), "{e}");
}

#[test]
fn comments_are_stripped_outside_strings_only() {
    let text = "{\"a\": \"http://x/*y*/\", /* block */ \"b\": 1 // line\n}";
    let v: serde_json::Value = serde_json::from_str(&strip_comments(text)).unwrap();
    assert_eq!(v["a"], "http://x/*y*/");
    assert_eq!(v["b"], 1);
}

#[test]
fn localhost_and_readable_ranges() {
    let (cfg, _) = Config::from_json(
        r#"{"GSMTP_LISTEN_INTERFACE": "localhost:2526", "GM_MAX_CLIENTS_PER_IP": 0}"#,
    )
    .unwrap();
    assert_eq!(cfg.listen, "127.0.0.1:2526".parse().unwrap());
    assert_eq!(cfg.max_clients_per_ip, 0);
    assert_eq!(Config::default().max_clients_per_ip, 50);
    assert!(Config::default().trusted_proxies.is_empty());
    let e = Config::from_json(r#"{"GM_MAX_CLIENTS": "0"}"#).unwrap_err();
    assert_eq!(
        e.to_string(),
        "config key GM_MAX_CLIENTS: expected a whole number from 1 to 1,048,576, got \"0\""
    );
    let e = Config::from_json(r#"{"GSMTP_MAX_SIZE": "-1"}"#).unwrap_err();
    assert_eq!(
        e.to_string(),
        "config key GSMTP_MAX_SIZE: expected a whole number of at least 1, got \"-1\""
    );
    assert_eq!(grouped(999), "999");
    assert_eq!(grouped(1000), "1,000");
    assert_eq!(grouped(100_000), "100,000");
}
