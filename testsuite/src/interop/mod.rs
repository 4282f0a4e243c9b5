//! Interop tests: real outside programs (swaks, Python's smtplib, curl, Postfix's
//! smtp-source, `openssl s_client`, nginx's mail proxy, HAProxy) against the real server
//! binaries, each started as a child process with a configuration file in the original's
//! format ([`Daemon`]). Every stored message is checked byte for byte.
//!
//! A frontend runs them with one line in its `tests/interop.rs`:
//!
//! ```ignore
//! testsuite::interop!(env!("CARGO_BIN_EXE_guerrilla-smol"));
//! ```
//!
//! which expands to one ignored `#[test]` per function in [`for_each_interop!`](crate::for_each_interop) (they need
//! the outside programs; `.ci/run` installs them and runs the ignored tests). The command
//! line tests need nothing outside and run with every `cargo test`, through
//! `testsuite::binary!(...)` in `tests/binary.rs`.
//!
//! Everything listens on loopback only; every wait is bounded.

mod binary;
mod clients;
mod daemon;
mod dovecot;
mod garage;
mod handoff;
mod hardening;
mod lmtp;
mod operate;
mod privilege;
mod proxies;
mod s3;
mod trial;

pub use binary::*;
pub use clients::*;
pub use daemon::*;
pub use dovecot::*;
pub use garage::*;
pub use handoff::*;
pub use hardening::*;
pub use lmtp::*;
pub use operate::*;
pub use privilege::*;
pub use proxies::*;
pub use s3::*;
pub use trial::*;

/// The message each client sends, CRLF line ends included: headers, lines that start
/// with one or two dots, a lone dot, indented lines, an empty line, and a long line.
pub fn message(tag: &str) -> Vec<u8> {
    format!(
        "From: Sender <a@example.net>\r\n\
         To: <u@example.com>\r\n\
         Subject: interop {tag}\r\n\
         Message-ID: <{tag}@client.example>\r\n\
         \r\n\
         First line.\r\n\
         .A line that starts with a dot\r\n\
         ..and one with two\r\n\
         .\r\n\
         \x20indented\r\n\
         \r\n\
         \ttabbed\r\n\
         long: {}\r\n\
         Last line.\r\n",
        "0123456789".repeat(90)
    )
    .into_bytes()
}

/// Calls `$m!(test, $bin)` for every interop test.
#[macro_export]
macro_rules! for_each_interop {
    ($m:path, $bin:expr) => {
        // clients
        $m!(swaks_plain, $bin);
        $m!(swaks_starttls, $bin);
        $m!(smtplib_plain, $bin);
        $m!(smtplib_starttls, $bin);
        $m!(curl_plain, $bin);
        $m!(curl_starttls, $bin);
        $m!(smtp_source_2000, $bin);
        $m!(openssl_tls_versions, $bin);
        // proxies
        $m!(nginx_xclient_round_robin, $bin);
        $m!(nginx_auth_http_refusals, $bin);
        $m!(haproxy_proxy_v2, $bin);
        $m!(haproxy_proxy_v1, $bin);
        // privileges
        $m!(privilege_drop, $bin);
        // destinations
        $m!(lmtp_to_dovecot, $bin);
        $m!(dovecot_lda_pipe, $bin);
        $m!(s3_garage_cluster, $bin);
        $m!(s3_two_instances_behind_haproxy, $bin);
        $m!(s3_refusing_store_is_seen, $bin);
        $m!(metrics_pass_promtool, $bin);
        $m!(dovecot_imap_reads_our_maildir, $bin);
        $m!(http_envelope_through_nginx, $bin);
    };
}

/// Calls `$m!(test, $bin)` for every command-line test.
#[macro_export]
macro_rules! for_each_binary {
    ($m:path, $bin:expr) => {
        $m!(version_and_help, $bin);
        $m!(bad_value_exits_2, $bin);
        $m!(unreadable_pub_key_exits_2, $bin);
        $m!(port_in_use_exits_2, $bin);
        $m!(original_single_dash_flags, $bin);
        $m!(listen_flag_localhost_and_errors, $bin);
        $m!(default_config_in_working_dir, $bin);
        $m!(mysql_keys_are_ignored_with_a_warning, $bin);
        $m!(sigterm_shuts_down_with_status_0, $bin);
        $m!(log_file_lines, $bin);
        $m!(operator_log, $bin);
        $m!(per_client_connection_limit, $bin);
        $m!(full_disk_is_452_and_recovers, $bin);
        $m!(sample_config_starts_as_shipped, $bin);
        $m!(pipe_replies_and_content, $bin);
        $m!(pipe_timeout_concurrency_per_recipient, $bin);
        $m!(http_replies_and_content, $bin);
        $m!(garbage_destinations_are_4xx, $bin);
        $m!(s3_settings_that_cannot_work, $bin);
        $m!(check_config_reports_and_exits, $bin);
        $m!(sighup_reloads_the_configuration, $bin);
        $m!(reload_under_load_drops_nothing, $bin);
        $m!(json_log_lines, $bin);
        $m!(metrics_count_traffic, $bin);
        $m!(http_envelope_at_the_recipient_limit, $bin);
        $m!(pipe_envelope_lists_are_unambiguous, $bin);
        $m!(pipe_input_is_never_cut, $bin);
        $m!(pipe_never_starts_after_its_deadline, $bin);
        $m!(maildir_mode_follows_a_reload, $bin);
        $m!(healthz_and_live_check_see_a_failing_destination, $bin);
        $m!(destination_faults_are_traced_and_named, $bin);
    };
}

/// Expands to one ignored `#[test]` per interop test, against the binary at `$bin`
/// (`env!("CARGO_BIN_EXE_<name>")`).
#[macro_export]
macro_rules! interop {
    ($bin:expr) => {
        $crate::for_each_interop!($crate::__interop_test, $bin);
    };
}

/// Expands to one `#[test]` per command-line test, against the binary at `$bin`.
#[macro_export]
macro_rules! binary {
    ($bin:expr) => {
        $crate::for_each_binary!($crate::__binary_test, $bin);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __interop_test {
    ($name:ident, $bin:expr) => {
        #[test]
        #[ignore = "needs swaks, Postfix, nginx, HAProxy: run by .ci/run"]
        fn $name() {
            $crate::interop::$name($bin);
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __binary_test {
    ($name:ident, $bin:expr) => {
        #[test]
        fn $name() {
            $crate::interop::$name($bin);
        }
    };
}
