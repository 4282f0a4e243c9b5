//! The content filters' pure halves: what rspamd's answer means ([`rspamd`]). The
//! milter protocol is [`crate::milter`]; the filters are asked in `proto::io`.

pub mod rspamd;
