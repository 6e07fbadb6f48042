//! Online payments: the port a payment provider sits behind, the built-in provider, and
//! the check of the provider's signed webhooks.
//!
//! The flow: placing an order paid online asks the provider for an intent
//! ([`PaymentProvider::create_intent`]); the customer's app pays it at the provider's
//! checkout; the provider reports the outcome to `POST /api/v1/payments/webhook`, signed
//! with `PAYMENT_WEBHOOK_SECRET` ([`verify`]). Refunds owed are announced on the bus as
//! `payment.refund_pending`; the provider's `refund.succeeded` report completes them.
//!
//! A real provider (Razorpay, Stripe) plugs in as a `PaymentProvider` that creates its
//! order / PaymentIntent through the provider's API and returns its id, plus a small
//! relay that turns the provider's own webhooks (each signs in its own format) into this
//! contract's signed body, or a second webhook route that verifies the provider's format
//! and calls the same handler. A refund worker subscribes to `payment.refund_pending`.

use hmac::{Hmac, Mac};
use medify_actors::ports::BoxFuture;
use sha2::Sha256;
use uuid::Uuid;

/// How far a webhook's `t` may be from the server's clock, in seconds.
pub const SIGNATURE_TOLERANCE_S: i64 = 300;

/// Where intents for online payments come from.
pub trait PaymentProvider: Send + Sync + 'static {
    /// Opens a payment of `amount_cents` for an order; the id the customer's app hands to
    /// the provider's checkout, and the provider names in its reports.
    fn create_intent(
        &self,
        order_id: Uuid,
        amount_cents: i64,
    ) -> BoxFuture<'_, anyhow::Result<String>>;
}

/// The built-in provider: intent ids made here (`pi_` and 32 hex digits); whoever holds
/// `PAYMENT_WEBHOOK_SECRET` reports the outcome (a payment gateway's relay, or a test
/// playing the provider).
pub struct LocalIntents;

impl PaymentProvider for LocalIntents {
    fn create_intent(&self, _: Uuid, _: i64) -> BoxFuture<'_, anyhow::Result<String>> {
        Box::pin(async move { Ok(format!("pi_{:032x}", rand::random::<u128>())) })
    }
}

/// Why a webhook's signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the Medify-Signature header is missing")]
    Missing,
    #[error("the Medify-Signature header is not t=<unix seconds>,v1=<hex>")]
    Malformed,
    #[error("the signature's timestamp is more than {SIGNATURE_TOLERANCE_S} s from now")]
    Stale,
    #[error("the signature does not match the body")]
    Mismatch,
    #[error("online payment is not configured on this server")]
    NotConfigured,
}

/// The parts of a `Medify-Signature: t=<unix seconds>,v1=<hex>` header.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Signature {
    t: i64,
    v1: Vec<u8>,
}

fn parse_signature(header: &str) -> Option<Signature> {
    let (mut t, mut v1) = (None, None);
    for part in header.split(',') {
        let (key, value) = part.trim().split_once('=')?;
        match key {
            "t" => t = Some(value.parse::<i64>().ok()?),
            "v1" => v1 = Some(from_hex(value)?),
            _ => {}
        }
    }
    Some(Signature { t: t?, v1: v1? })
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 || s.len() > 256 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The hex HMAC-SHA256 of `"<t>.<body>"` under `secret`: what a provider sends as `v1`.
pub fn sign(secret: &[u8], t: i64, body: &[u8]) -> String {
    mac(secret, t, body)
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn mac(secret: &[u8], t: i64, body: &[u8]) -> Hmac<Sha256> {
    // HMAC takes a key of any length.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// Checks a webhook: the header parses, `t` is within [`SIGNATURE_TOLERANCE_S`] of
/// `now_s`, and `v1` is the HMAC of `"<t>.<body>"` (compared in constant time).
pub fn verify(
    secret: Option<&[u8]>,
    header: Option<&str>,
    body: &[u8],
    now_s: i64,
) -> Result<(), SignatureError> {
    let secret = secret.ok_or(SignatureError::NotConfigured)?;
    let signature =
        parse_signature(header.ok_or(SignatureError::Missing)?).ok_or(SignatureError::Malformed)?;
    if now_s.saturating_sub(signature.t).saturating_abs() > SIGNATURE_TOLERANCE_S {
        return Err(SignatureError::Stale);
    }
    mac(secret, signature.t, body)
        .verify_slice(&signature.v1)
        .map_err(|_| SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"whsec_0123456789abcdef";

    fn header(t: i64, body: &[u8]) -> String {
        format!("t={t},v1={}", sign(SECRET, t, body))
    }

    #[test]
    fn a_fresh_signature_over_the_body_is_accepted() {
        let body = br#"{"id":"evt_1"}"#;
        let now = 1_800_000_000;
        assert_eq!(
            verify(Some(SECRET), Some(&header(now - 299, body)), body, now),
            Ok(())
        );
        assert_eq!(
            verify(Some(SECRET), Some(&header(now + 299, body)), body, now),
            Ok(())
        );
    }

    #[test]
    fn anything_else_is_refused_with_its_reason() {
        let body = br#"{"id":"evt_1"}"#;
        let now = 1_800_000_000;
        let good = header(now, body);
        assert_eq!(
            verify(None, Some(&good), body, now),
            Err(SignatureError::NotConfigured)
        );
        assert_eq!(
            verify(Some(SECRET), None, body, now),
            Err(SignatureError::Missing)
        );
        for bad in ["", "t=1", "v1=00", "t=x,v1=00", "t=1,v1=0g", "t=1,v1=abc"] {
            assert_eq!(
                verify(Some(SECRET), Some(bad), body, now),
                Err(SignatureError::Malformed),
                "{bad}"
            );
        }
        assert_eq!(
            verify(Some(SECRET), Some(&header(now - 301, body)), body, now),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(Some(SECRET), Some(&good), br#"{"id":"evt_2"}"#, now),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(Some(b"another secret!!"), Some(&good), body, now),
            Err(SignatureError::Mismatch)
        );
        // Extreme timestamps cannot wrap into the window.
        let far = format!("t={},v1={}", i64::MIN, sign(SECRET, i64::MIN, body));
        assert_eq!(
            verify(Some(SECRET), Some(&far), body, now),
            Err(SignatureError::Stale)
        );
    }
}
