//! The conformance cases that need more than a transcript: stored files, timers, TLS
//! versions, concurrency and shutdown. Each is a `fn(Start)` and starts its own server.

mod limits;
mod security;
mod session;
mod storage;

pub use limits::*;
pub use security::*;
pub use session::*;
pub use storage::*;

/// Calls `$m!(case)` for every case in this module.
#[macro_export]
macro_rules! for_each_case {
    ($m:path) => {
        // session
        $m!(greeting_shape);
        $m!(ehlo_advertises_size_and_starttls);
        $m!(delivery_and_quit);
        $m!(two_messages_one_session);
        $m!(null_sender_and_postmaster);
        $m!(starttls_delivery_is_traced);
        $m!(implicit_tls_listener);
        $m!(tls12_and_tls13);
        $m!(failed_handshake_does_not_crash);
        $m!(bdat_delivery);
        $m!(xclient_changes_client_identity);
        $m!(ipv6_listener);
        // storage
        $m!(stored_file_is_byte_exact);
        $m!(one_file_per_recipient_folder);
        $m!(primary_mail_host_shares_mailboxes);
        $m!(recipient_delimiter_shares_the_mailbox);
        $m!(maildir_mode_for_a_shared_group);
        $m!(large_message_streams_to_disk);
        $m!(nothing_left_in_tmp);
        $m!(discard_storage_stores_nothing);
        $m!(store_failure_gives_451);
        $m!(unusable_folder_refuses_its_recipient);
        $m!(mailbox_subfolders_heal);
        $m!(mailbox_mapping_stays_inside_root);
        $m!(look_alike_addresses_keep_their_own_folders);
        $m!(mailbox_removed_while_running_is_recreated);
        $m!(stale_tmp_files_are_cleaned_at_start);
        // limits
        $m!(message_of_exactly_max_size_is_accepted);
        $m!(oversize_message_is_refused_and_session_goes_on);
        $m!(recipient_limit);
        $m!(text_line_limit);
        $m!(idle_timeout);
        $m!(idle_timeout_mid_data_stores_nothing);
        $m!(max_clients);
        $m!(graceful_shutdown);
        // security
        $m!(smuggling_variants_are_content);
        $m!(bare_lf_is_normalized);
        $m!(bare_lf_reject_policy);
        $m!(received_header_cannot_be_injected);
        $m!(disconnect_mid_data_stores_nothing);
        $m!(garbage_does_not_kill_the_server);
        $m!(http_request_is_closed_at_once);
    };
}
