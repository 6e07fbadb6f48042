//! Access tokens: HS256 JWTs with claims `sub`, `role`, `iat`, `exp`, `jti`.
//!
//! The validator accepts HS256 only, so `alg: none` and algorithm-confusion tokens fail
//! before any claim is read; `exp` and `iat` are required and checked with a 5-second
//! leeway for clock drift between nodes.

use chrono::{DateTime, Utc};
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::Role;

/// Lifetime of an access token, in seconds.
pub const ACCESS_TOKEN_TTL_S: i64 = 900;

/// What an access token says about its bearer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub sub: Uuid,
    pub role: Role,
    pub iat: i64,
    pub exp: i64,
    pub jti: Uuid,
}

/// Signing and verification keys, made once from `JWT_SECRET`.
#[derive(Clone)]
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl JwtKeys {
    pub fn new(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "iat", "sub"]);
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
    }

    /// A signed access token for `user` valid from `now` for [`ACCESS_TOKEN_TTL_S`].
    pub fn issue(&self, user: Uuid, role: Role, now: DateTime<Utc>) -> anyhow::Result<String> {
        let iat = now.timestamp();
        let claims = Claims {
            sub: user,
            role,
            iat,
            exp: iat + ACCESS_TOKEN_TTL_S,
            jti: Uuid::now_v7(),
        };
        Ok(encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.encoding,
        )?)
    }

    /// The claims of a valid token; `None` for anything else (tampered, expired, wrong
    /// algorithm, wrong secret, malformed).
    pub fn verify(&self, token: &str) -> Option<Claims> {
        decode::<Claims>(token, &self.decoding, &self.validation)
            .ok()
            .map(|data| data.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn issued_tokens_verify() {
        let keys = JwtKeys::new(SECRET);
        let id = Uuid::now_v7();
        let token = keys.issue(id, Role::Rider, Utc::now()).expect("issue");
        let claims = keys.verify(&token).expect("valid");
        assert_eq!(claims.sub, id);
        assert_eq!(claims.role, Role::Rider);
        assert_eq!(claims.exp - claims.iat, ACCESS_TOKEN_TTL_S);
    }

    #[test]
    fn expired_wrong_secret_tampered_and_none_are_refused() {
        let keys = JwtKeys::new(SECRET);
        let id = Uuid::now_v7();
        let old = Utc::now() - chrono::Duration::seconds(ACCESS_TOKEN_TTL_S + 60);
        assert!(keys
            .verify(&keys.issue(id, Role::Customer, old).expect("issue"))
            .is_none());

        let other = JwtKeys::new(b"another-secret-another-secret-xx");
        let token = other.issue(id, Role::Admin, Utc::now()).expect("issue");
        assert!(keys.verify(&token).is_none());

        let token = keys.issue(id, Role::Customer, Utc::now()).expect("issue");
        let parts: Vec<&str> = token.split('.').collect();
        let payload = String::from_utf8(URL_SAFE_NO_PAD.decode(parts[1]).expect("b64"))
            .expect("utf8")
            .replace("customer", "admin");
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(payload),
            parts[2]
        );
        assert!(keys.verify(&forged).is_none());

        let none_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
        assert!(keys
            .verify(&format!("{none_header}.{}.", parts[1]))
            .is_none());
    }
}
