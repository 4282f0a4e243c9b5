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
//! A test that would chain independent scenarios is split, one scenario per test with
//! its own server (shared setup in small helpers), so that a failure names what failed;
//! where a setup is too slow to repeat for each (a Garage cluster), the scenarios that
//! leave it intact share one and name themselves in the output when they fail.
//!
//! Everything listens on loopback only; every wait is bounded.

mod binary;
mod clients;
mod daemon;
mod dnsbl;
mod door;
mod dovecot;
mod filtering;
mod filters;
mod garage;
mod handoff;
mod hardening;
mod lmtp;
mod milters;
mod operate;
mod privilege;
mod proxies;
mod s3;
mod trial;
mod verdicts;

pub use binary::*;
pub use clients::*;
pub use daemon::*;
pub use dnsbl::*;
pub use door::*;
pub use dovecot::*;
pub use filtering::*;
pub use filters::*;
pub use garage::*;
pub use handoff::*;
pub use hardening::*;
pub use lmtp::*;
pub use milters::*;
pub use operate::*;
pub use privilege::*;
pub use proxies::*;
pub use s3::*;
pub use trial::*;
pub use verdicts::*;

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
        $m!(auth_http_refuses_malformed_requests, $bin);
        $m!(auth_http_refuses_a_relay_recipient, $bin);
        $m!(nginx_auth_http_refusal_reaches_the_client, $bin);
        $m!(nginx_over_ipv6_names_the_client, $bin);
        $m!(haproxy_proxy_v2_health_checks, $bin);
        $m!(haproxy_proxy_v2_malformed_headers, $bin);
        $m!(haproxy_proxy_v2_direct_header, $bin);
        $m!(haproxy_proxy_v2_swaks_through, $bin);
        $m!(haproxy_proxy_v2_xclient_behind, $bin);
        $m!(haproxy_proxy_v1_health_checks, $bin);
        $m!(haproxy_proxy_v1_malformed_headers, $bin);
        $m!(haproxy_proxy_v1_direct_header, $bin);
        $m!(haproxy_proxy_v1_swaks_through, $bin);
        $m!(haproxy_proxy_v1_xclient_behind, $bin);
        // privileges
        $m!(privilege_drop, $bin);
        // destinations
        $m!(lmtp_to_dovecot_two_users, $bin);
        $m!(lmtp_unknown_user_refused_at_rcpt, $bin);
        $m!(lmtp_bdat_without_a_final_line_end, $bin);
        $m!(lmtp_big_message_in_bounded_memory, $bin);
        $m!(lmtp_dovecot_stopped_at_mail_and_back, $bin);
        $m!(lmtp_dovecot_stopped_mid_text, $bin);
        $m!(lmtp_acknowledged_survive_sigkill, $bin);
        $m!(lmtp_over_a_unix_socket, $bin);
        $m!(dovecot_lda_pipe, $bin);
        $m!(s3_garage_objects_and_metadata, $bin);
        $m!(s3_garage_node_failures, $bin);
        $m!(s3_garage_instance_killed_under_load, $bin);
        $m!(s3_two_instances_behind_haproxy, $bin);
        $m!(s3_refusing_store_is_seen, $bin);
        $m!(metrics_pass_promtool, $bin);
        $m!(dovecot_imap_reads_our_maildir_as_its_owner, $bin);
        $m!(dovecot_imap_reads_our_maildir_as_a_group_member, $bin);
        $m!(http_envelope_through_nginx, $bin);
        // verdicts
        $m!(verdicts_in_maildir, $bin);
        $m!(a_header_too_long_to_clean_is_refused, $bin);
        $m!(verdicts_over_http, $bin);
        $m!(verdicts_in_s3_metadata, $bin);
        $m!(verdicts_in_pipe_environment, $bin);
        $m!(verdicts_through_lmtp_held, $bin);
        $m!(verdicts_big_message_in_bounded_memory, $bin);
        $m!(dmarc_reject_refuses_only_p_reject, $bin);
        $m!(dns_down_is_temperror_never_5xx, $bin);
        $m!(slow_dns_leaves_other_sessions_alone, $bin);
        $m!(verify_follows_a_reload, $bin);
        // the door: early talkers and AUTH
        $m!(greet_pause_lets_real_clients_through, $bin);
        $m!(greet_pause_refuses_early_talkers, $bin);
        $m!(greet_pause_zero_refuses_input_before_the_greeting, $bin);
        $m!(greet_pause_starts_after_the_proxy_header, $bin);
        $m!(auth_file_users_log_in, $bin);
        $m!(auth_needs_tls_and_never_relays, $bin);
        $m!(auth_brute_force_is_cut_off, $bin);
        $m!(auth_file_follows_a_reload, $bin);
        // DNS blocklists
        $m!(dnsbl_listed_client_refused_at_greeting, $bin);
        $m!(dnsbl_below_threshold_accepted_with_listings, $bin);
        $m!(dnsbl_dead_zone_counts_zero_within_the_timeout, $bin);
        $m!(dnsbl_reject_rcpt_answers_every_rcpt, $bin);
        $m!(dnsbl_screens_the_client_xclient_names, $bin);
        $m!(dnsbl_ipv6_client_by_nibbles, $bin);
        // content filters
        $m!(rspamd_actions_give_their_replies, $bin);
        $m!(rspamd_down_or_hanging_follows_the_failure_policy, $bin);
        $m!(rspamd_partial_answer_is_a_failure, $bin);
        $m!(filter_verdicts_reach_http_and_s3, $bin);
        $m!(milter_rspamd_proxy, $bin);
        $m!(milter_chain_opendkim_and_clamav, $bin);
        $m!(milter_refusals_at_each_step, $bin);
        $m!(milter_failures_follow_the_policy, $bin);
        // content filters
        $m!(rspamd_fixture_actions, $bin);
        $m!(milter_fixtures_answer, $bin);
        $m!(milter_fixtures_clamav_rejects_eicar, $bin);
        $m!(milter_fixtures_opendkim_verifies, $bin);
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
        $m!(verbose_transcript_names_its_connection, $bin);
        $m!(per_client_limit_stops_a_flood, $bin);
        $m!(per_client_limit_counts_xclient_clients, $bin);
        $m!(per_client_limit_frees_the_slot_before_221, $bin);
        $m!(per_client_limit_counts_proxy_header_clients, $bin);
        $m!(full_tmpfs_is_452_and_recovers, $bin);
        $m!(full_ext4_is_452_and_recovers, $bin);
        $m!(sample_config_starts_as_shipped, $bin);
        $m!(pipe_message_environment_and_arguments, $bin);
        $m!(pipe_exit_statuses_give_their_replies, $bin);
        $m!(pipe_big_message_in_bounded_memory, $bin);
        $m!(pipe_acknowledged_survive_sigkill, $bin);
        $m!(pipe_missing_command_stops_startup, $bin);
        $m!(pipe_timeout_kills_the_group, $bin);
        $m!(pipe_concurrency_bounds_the_runs, $bin);
        $m!(pipe_per_recipient_transactions, $bin);
        $m!(http_message_envelope_and_signature, $bin);
        $m!(http_connections_are_reused, $bin);
        $m!(http_status_classes_give_their_replies, $bin);
        $m!(http_receiver_away_and_back, $bin);
        $m!(http_big_message_in_bounded_memory, $bin);
        $m!(http_acknowledged_survive_sigkill, $bin);
        $m!(http_over_https_with_a_private_ca, $bin);
        $m!(http_settings_that_cannot_work, $bin);
        $m!(lmtp_speaking_http_is_4xx, $bin);
        $m!(lmtp_never_answering_is_4xx, $bin);
        $m!(http_speaking_smtp_is_4xx, $bin);
        $m!(lmtp_settings_that_cannot_work, $bin);
        $m!(s3_settings_that_cannot_work, $bin);
        $m!(s3_store_down_at_start_is_451, $bin);
        $m!(check_config_reports_a_good_file, $bin);
        $m!(check_config_names_a_bad_key, $bin);
        $m!(sighup_applies_to_new_sessions_only, $bin);
        $m!(sighup_refuses_a_file_that_does_not_load, $bin);
        $m!(sighup_refuses_a_value_that_cannot_be_used, $bin);
        $m!(sighup_names_a_change_that_needs_a_restart, $bin);
        $m!(reload_under_load_drops_nothing, $bin);
        $m!(json_log_lines, $bin);
        $m!(threads_follow_gsmtp_threads, $bin);
        $m!(metrics_count_traffic, $bin);
        $m!(healthz_turns_503_at_shutdown, $bin);
        $m!(http_envelope_at_the_recipient_limit, $bin);
        $m!(pipe_envelope_lists_are_unambiguous, $bin);
        $m!(pipe_input_is_never_cut, $bin);
        $m!(pipe_never_starts_after_its_deadline, $bin);
        $m!(maildir_mode_follows_a_reload, $bin);
        $m!(healthz_and_live_check_see_a_failing_http_receiver, $bin);
        $m!(live_check_names_other_failing_destinations, $bin);
        $m!(lmtp_nonsense_is_traced_and_named, $bin);
        $m!(lmtp_not_there_is_traced_and_named, $bin);
        $m!(removed_pipe_command_is_traced_and_named, $bin);
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
