//! Authentication and authorisation.
//!
//! - [`password`]: argon2id hashing, run on the blocking pool behind a semaphore so a burst
//!   of logins can neither stall the async workers nor exhaust memory.
//! - [`jwt`]: 15-minute HS256 access tokens with a pinned algorithm.
//! - [`refresh`]: opaque refresh tokens (stored as SHA-256), rotated on every use, grouped
//!   in families so that replaying a rotated token (after a short reuse interval) revokes
//!   the whole session.
//! - [`otp`]: phone one-time codes (stored as HMAC), and the [`otp::SmsSender`] port.
//! - [`rate_limit`]: GCRA limits per client network and per (account, client network), in
//!   memory or shared in Redis.
//! - [`client`]: the client's address (through `TRUSTED_PROXIES` only) and its network key.
//! - [`extract`]: the [`AuthUser`] extractor and role checks every route uses.

pub mod client;
pub mod extract;
pub mod jwt;
pub mod otp;
pub mod password;
pub mod rate_limit;
pub mod refresh;

pub use extract::AuthUser;
