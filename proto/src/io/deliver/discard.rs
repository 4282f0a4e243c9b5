//! `GSMTP_STORAGE=discard`: accepts every message and keeps none (for load tests).

use crate::delivery::DeliveryError;
use crate::delivery::Envelope;
use crate::syntax::{MailParams, ReversePath};

use super::Deliver;

/// Accepts and drops every message.
#[derive(Clone, Copy, Debug, Default)]
pub struct Discard;

impl Deliver for Discard {
    type Message = ();

    async fn start(&self, _: &ReversePath<'static>, _: &MailParams) -> Result<(), DeliveryError> {
        Ok(())
    }

    async fn body(&self, _: &mut (), _: &Envelope) -> Result<(), DeliveryError> {
        Ok(())
    }

    async fn write(&self, _: &mut (), _: &[u8]) -> Result<(), DeliveryError> {
        Ok(())
    }

    async fn commit(&self, _: ()) -> Result<(), DeliveryError> {
        Ok(())
    }
}
