//! Phone one-time codes and the port that delivers them.
//!
//! A code is 6 digits from the thread CSPRNG, valid for 5 minutes, dead after 5 wrong
//! tries, and not re-sent within 30 seconds (`OTP_RESEND_COOLDOWN_S`). A phone takes at
//! most 10 wrong tries in 30 minutes (`OTP_MAX_WRONG_PER_PHONE`, `OTP_WRONG_WINDOW_S`)
//! however many codes it is sent: a resend starts a new code, not a new budget. The same
//! codes serve sign-in and the verification of a signed-in user's phone (both prove
//! possession of the number). Only an HMAC-SHA256 of a code (keyed with the server
//! secret, bound to the phone number) is stored, so a database dump reveals no usable
//! code. Delivery goes through [`SmsSender`]; the shipped [`LogSender`] writes the
//! code to the log for development. `OTP_DELIVERY=response` returns it in the HTTP answer
//! for tests and demos; both are refused at start-up in production.

use std::future::Future;
use std::pin::Pin;

use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::Sha256;

use crate::domain::Phone;

/// Seconds a code stays valid.
pub const OTP_TTL_S: i64 = 300;
/// Default seconds before a new code may be sent to the same phone
/// (`OTP_RESEND_COOLDOWN_S`).
pub const OTP_RESEND_COOLDOWN_S: u64 = 30;
/// Wrong tries after which a code is dead.
pub const OTP_MAX_ATTEMPTS: i32 = 5;

/// How codes reach the user (`OTP_DELIVERY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtpDelivery {
    /// Through the [`LogSender`]: the code is written to the server log.
    Log,
    /// In the HTTP answer as `debug_code` (tests, demos). Never in production.
    Response,
    /// No delivery configured: OTP endpoints answer 503.
    Disabled,
}

/// A fresh 6-digit code.
pub fn generate_code() -> String {
    format!("{:06}", rand::rng().random_range(0..1_000_000u32))
}

fn mac(key: &[u8], phone: &str, code: &str) -> Hmac<Sha256> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(phone.as_bytes());
    mac.update(b":");
    mac.update(code.as_bytes());
    mac
}

/// The stored form of `code` for `phone`.
pub fn code_hash(key: &[u8], phone: &str, code: &str) -> Vec<u8> {
    mac(key, phone, code).finalize().into_bytes().to_vec()
}

/// Constant-time comparison of a presented code with the stored hash.
pub fn code_matches(key: &[u8], phone: &str, code: &str, stored: &[u8]) -> bool {
    mac(key, phone, code).verify_slice(stored).is_ok()
}

/// Delivers a code to a phone. Implement this for a real SMS provider.
pub trait SmsSender: Send + Sync {
    fn send<'a>(
        &'a self,
        phone: &'a Phone,
        code: &'a str,
    ) -> Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send + 'a>>;
}

/// Development delivery: the code goes to the log (target `medify::sms`).
pub struct LogSender;

impl SmsSender for LogSender {
    fn send<'a>(
        &'a self,
        phone: &'a Phone,
        code: &'a str,
    ) -> Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send + 'a>> {
        Box::pin(async move {
            tracing::info!(
                target: "medify::sms",
                phone = phone.as_str(),
                code,
                "OTP for development (OTP_DELIVERY=log; refused in production)"
            );
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_six_digits() {
        for _ in 0..100 {
            let c = generate_code();
            assert_eq!(c.len(), 6);
            assert!(c.bytes().all(|b| b.is_ascii_digit()));
        }
    }

    #[test]
    fn hashes_bind_the_phone_and_the_key() {
        let h = code_hash(b"k1", "+14155550123", "123456");
        assert!(code_matches(b"k1", "+14155550123", "123456", &h));
        assert!(!code_matches(b"k1", "+14155550123", "123457", &h));
        assert!(!code_matches(b"k1", "+14155550124", "123456", &h));
        assert!(!code_matches(b"k2", "+14155550123", "123456", &h));
    }
}
