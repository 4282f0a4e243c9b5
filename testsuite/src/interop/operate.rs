//! Running the server as an operator does (issue 13): `--check-config`, reloading on
//! SIGHUP, the metrics endpoint, JSON logs. These need no outside program except where
//! noted, and run with every `cargo test`.

use std::process::Command;
use std::time::Duration;

use super::daemon::{Settings, run};
use crate::TempDir;

/// How long `--check-config` may take.
const CHECK_LIMIT: Duration = Duration::from_secs(10);

/// `bin --check-config --config <settings>`: its exit code, standard output and error.
fn check_config(bin: &str, dir: &TempDir, settings: &Settings) -> (Option<i32>, String, String) {
    let config = dir.path().join("check.conf");
    settings.write(&config);
    let out = run(
        Command::new(bin)
            .arg("--check-config")
            .arg("--config")
            .arg(&config)
            .current_dir(dir.path()),
        b"",
        CHECK_LIMIT,
    );
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `--check-config` on a good file prints every key with its effective value, secrets
/// masked, as JSON that is itself a usable configuration, warns about a misspelt key with
/// the nearest known one, and exits 0; on a malformed `GM_ALLOWED_HOSTS`, a certificate
/// that does not load, or a user that does not exist, it names the key and exits 2.
/// Nothing is started: the listen port stays free.
pub fn check_config_reports_and_exits(bin: &str) {
    let dir = TempDir::new("check");
    let mut s = Settings::defaults(dir.path());
    s.set("GM_ALLOWED_HOST", "typo.example")
        .set("GSMTP_HTTP_SECRET", "sesame-1234")
        .set("GSMTP_S3_SECRET_KEY", "sesame-5678");
    let (code, out, err) = check_config(bin, &dir, &s);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("GM_ALLOWED_HOST is unknown and ignored (did you mean GM_ALLOWED_HOSTS?)"),
        "{err}"
    );
    assert!(
        !out.contains("sesame") && !err.contains("sesame"),
        "a secret was shown"
    );
    let shown: serde_json::Value = serde_json::from_str(&out).expect("JSON on stdout");
    assert_eq!(shown["GSMTP_HTTP_SECRET"], proto::config::MASK);
    assert_eq!(shown["GM_ALLOWED_HOSTS"], "example.com,*.example.org");
    assert_eq!(
        shown["GSTMP_LISTEN_INTERFACE"],
        s.get("GSTMP_LISTEN_INTERFACE").unwrap()
    );
    assert_eq!(
        shown.as_object().map(|o| o.len()),
        Some(proto::config::KEYS.len())
    );
    // What it printed is a configuration the server takes as it is.
    let printed = dir.path().join("printed.conf");
    std::fs::write(&printed, &out).expect("write");
    let again = run(
        Command::new(bin)
            .arg("--check-config")
            .arg("--config")
            .arg(&printed),
        b"",
        CHECK_LIMIT,
    );
    assert_eq!(again.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&again.stdout), out);
    assert!(
        std::net::TcpListener::bind(s.listen()).is_ok(),
        "nothing listened"
    );

    for (key, value, named) in [
        (
            "GM_ALLOWED_HOSTS",
            "example.com, exa mple.org",
            "\"exa mple.org\"",
        ),
        (
            "GSMTP_PUB_KEY",
            "/nonexistent/cert.pem",
            "/nonexistent/cert.pem",
        ),
        ("GUID", "no-such-user-here", "no-such-user-here"),
    ] {
        let mut bad = Settings::defaults(dir.path());
        bad.set(key, value);
        let (code, out, err) = check_config(bin, &dir, &bad);
        assert_eq!(code, Some(2), "{key}: {err}");
        assert!(out.is_empty(), "{key}: {out}");
        let line = err.lines().last().unwrap_or_default();
        assert!(
            line.contains(&format!("config key {key}: ")),
            "{key}: {err}"
        );
        assert!(line.contains(named), "{key}: {err}");
    }
}
