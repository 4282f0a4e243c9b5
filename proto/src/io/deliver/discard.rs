//! `GSMTP_STORAGE=discard`: accepts every message and keeps none (for load tests).

use super::{Deliver, Message, Transaction};
use crate::delivery::{DeliveryError, Envelope};
use crate::syntax::{MailParams, ReversePath};
use crate::verdict::Verdict;

/// Accepts and drops every message.
#[derive(Clone, Copy, Debug, Default)]
pub struct Discard;

/// A transaction, and then a message, of [`Discard`]: nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct Discarded;

impl Deliver for Discard {
    type Transaction = Discarded;

    fn name(&self) -> &'static str {
        "discard"
    }

    async fn start(
        &self,
        _: &ReversePath<'static>,
        _: &MailParams,
    ) -> Result<Discarded, DeliveryError> {
        Ok(Discarded)
    }
}

impl Transaction for Discarded {
    type Message = Self;

    async fn begin(self, _: &Envelope) -> Result<Self, DeliveryError> {
        Ok(self)
    }
}

impl Message for Discarded {
    async fn write(&mut self, _: &[u8]) -> Result<(), DeliveryError> {
        Ok(())
    }

    async fn commit(self, _: &Verdict) -> Result<(), DeliveryError> {
        Ok(())
    }
}
