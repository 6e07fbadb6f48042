//! Refresh tokens: 256 random bits, base64url, stored only as their SHA-256.
//!
//! A refresh token is exchanged once: the exchange marks it rotated and issues a successor
//! in the same family. Presenting a rotated token again within the reuse interval
//! (`REFRESH_REUSE_INTERVAL_S`, 10 s) is two tabs or a retry racing, and gets another
//! successor in the same family; later it means the token was copied, so the whole family
//! (the session) is revoked. See `store::auth` for the transaction.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Lifetime of a refresh token, in days.
pub const REFRESH_TOKEN_TTL_DAYS: i64 = 30;

/// A fresh token: the string for the client, the hash for the database.
pub fn generate() -> (String, Vec<u8>) {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token = URL_SAFE_NO_PAD.encode(bytes);
    let hash = hash(&token);
    (token, hash)
}

/// The stored form of a token.
pub fn hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_hashed() {
        let (a, ha) = generate();
        let (b, hb) = generate();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_eq!(hash(&a), ha);
        assert_ne!(ha, hb);
        assert_eq!(ha.len(), 32);
    }
}
