//! Validated input types: parse, don't validate.
//!
//! Each type can only be built through its `parse`, so a value that exists past the HTTP
//! edge is known to be well-formed: an [`Email`] is trimmed and lower-cased, a [`Phone`] is
//! E.164, a [`Password`] is within the length bounds (and its `Debug` never shows it).
//! Errors are plain messages; the route decides which field they belong to.

use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A user's role; decides what they may reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Customer,
    Rider,
    Pharmacy,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Customer => "customer",
            Self::Rider => "rider",
            Self::Pharmacy => "pharmacy",
            Self::Admin => "admin",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw {
            "customer" => Ok(Self::Customer),
            "rider" => Ok(Self::Rider),
            "pharmacy" => Ok(Self::Pharmacy),
            "admin" => Ok(Self::Admin),
            _ => Err("must be one of customer, rider, pharmacy, admin".into()),
        }
    }
}

impl TryFrom<String> for Role {
    type Error = String;
    fn try_from(raw: String) -> Result<Self, String> {
        Self::parse(&raw)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A normalised e-mail address: trimmed, lower-cased, `local@domain.tld`, at most 254 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let email = raw.trim().to_lowercase();
        let invalid = || "must be an e-mail address such as name@example.com".to_owned();
        if email.len() > 254 || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid());
        }
        let (local, domain) = email.split_once('@').ok_or_else(invalid)?;
        let domain_ok = !domain.contains('@')
            && domain.contains('.')
            && domain
                .split('.')
                .all(|label| !label.is_empty() && !label.starts_with('-') && !label.ends_with('-'));
        if local.is_empty() || local.len() > 64 || !domain_ok {
            return Err(invalid());
        }
        Ok(Self(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A phone number in E.164: `+`, a non-zero digit, then 7 to 14 more digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phone(String);

impl Phone {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let phone = raw.trim();
        let digits = phone.strip_prefix('+').unwrap_or("");
        let ok = (8..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0');
        if ok {
            Ok(Self(phone.to_owned()))
        } else {
            Err("must be an E.164 phone number such as +14155550123".into())
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Minimum password length, in characters.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Maximum password length, in bytes: bounds the hashing work one request can ask for.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// A password of acceptable length. Never printed.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    pub fn parse(raw: String) -> Result<Self, String> {
        if raw.chars().count() < MIN_PASSWORD_CHARS {
            return Err(format!("must be at least {MIN_PASSWORD_CHARS} characters"));
        }
        if raw.len() > MAX_PASSWORD_BYTES {
            return Err(format!("must be at most {MAX_PASSWORD_BYTES} bytes"));
        }
        Ok(Self(raw))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// A person's display name: trimmed, 1 to 100 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonName(String);

impl PersonName {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let name = raw.trim();
        let len = name.chars().count();
        if len == 0 || len > 100 {
            return Err("must be 1 to 100 characters".into());
        }
        if name.chars().any(char::is_control) {
            return Err("must not contain control characters".into());
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised() {
        let e = Email::parse("  Asha.Rao@Example.COM ").expect("valid");
        assert_eq!(e.as_str(), "asha.rao@example.com");
    }

    #[test]
    fn bad_emails_are_refused() {
        for raw in [
            "",
            "plain",
            "@example.com",
            "a@",
            "a@b",
            "a@@b.com",
            "a b@c.com",
            "a@-b.com",
            "a@b..com",
        ] {
            assert!(Email::parse(raw).is_err(), "{raw:?} accepted");
        }
    }

    #[test]
    fn phones_must_be_e164() {
        assert!(Phone::parse("+14155550123").is_ok());
        assert!(Phone::parse("+919876543210").is_ok());
        for raw in [
            "14155550123",
            "+0123456789",
            "+1 415 555 0123",
            "+123",
            "+1234567890123456",
            "+1415555012a",
        ] {
            assert!(Phone::parse(raw).is_err(), "{raw:?} accepted");
        }
    }

    #[test]
    fn passwords_have_bounds_and_stay_secret() {
        assert!(Password::parse("short".into()).is_err());
        assert!(Password::parse("x".repeat(MAX_PASSWORD_BYTES + 1)).is_err());
        let p = Password::parse("correct horse".into()).expect("valid");
        assert!(!format!("{p:?}").contains("horse"));
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(PersonName::parse("  Asha ").expect("ok").as_str(), "Asha");
        assert!(PersonName::parse("   ").is_err());
        assert!(PersonName::parse(&"a".repeat(101)).is_err());
        assert!(PersonName::parse("a\u{0}b").is_err());
    }

    #[test]
    fn roles_round_trip() {
        for role in [Role::Customer, Role::Rider, Role::Pharmacy, Role::Admin] {
            assert_eq!(Role::parse(role.as_str()), Ok(role));
        }
        assert!(Role::parse("root").is_err());
    }
}
