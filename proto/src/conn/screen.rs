//! What the DNS blocklists (`GSMTP_DNSBL`) said of the client: recorded for each
//! message's verdict, and, under `GSMTP_DNSBL_ACTION=reject-rcpt`, the refusal every
//! RCPT gets. The lookups are the driver's; it hands their result over.

use super::Connection;
use crate::reply::ReplyBuf;
use crate::verdict;

/// The blocklists' result for the session's client.
#[derive(Debug)]
pub(super) struct Screened {
    /// As the verdict records it.
    result: verdict::Result,
    /// The answer to every RCPT, when the client is blocked at RCPT.
    refusal: Option<ReplyBuf>,
}

impl Connection {
    /// The DNS blocklists' `result` for the client (after PROXY or XCLIENT named it), to
    /// be recorded in the verdict of each of its messages; with `refusal`
    /// (`GSMTP_DNSBL_ACTION=reject-rcpt`, the client blocked), every RCPT is answered
    /// with it. Replaces what was said of a client before (XCLIENT naming another).
    pub fn handle_dnsbl(&mut self, result: verdict::Result, refusal: Option<ReplyBuf>) {
        self.dnsbl = Some(Box::new(Screened { result, refusal }));
    }

    /// The DNS blocklists' result for the client, if they were asked.
    pub fn dnsbl(&self) -> Option<&verdict::Result> {
        self.dnsbl.as_ref().map(|s| &s.result)
    }

    /// The answer every RCPT gets, when the blocklists blocked the client at RCPT.
    pub(super) fn dnsbl_refusal(&self) -> Option<ReplyBuf> {
        self.dnsbl.as_ref().and_then(|s| s.refusal.clone())
    }
}
