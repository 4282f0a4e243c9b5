//! The content filters' pure halves: what rspamd's answer means ([`rspamd`]), and what
//! milters' answers and modifications mean ([`milter`]; the protocol itself is
//! [`crate::milter`]). The filters are asked in `proto::io`.

pub mod milter;
pub mod rspamd;
