//! Refresh tokens and OTP codes: the durable half of authentication.
//!
//! Rows that can no longer be used go in a periodic sweep ([`Store::sweep_expired`]).
//!
//! Every operation that decides something is a single conditional write (an `UPDATE …
//! WHERE` with `RETURNING`, or an upsert with a `WHERE`), so two concurrent requests cannot
//! both rotate one refresh token or both spend the last OTP attempt, on either backend.

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use super::{now, Store};
use crate::on_pool;

/// What presenting a refresh token led to.
#[derive(Debug, PartialEq, Eq)]
pub enum Rotation {
    /// Exchanged: the token is spent; the successor is stored in the same family.
    Rotated { user_id: Uuid, family_id: Uuid },
    /// The token had been exchanged within the reuse interval (a second tab, a client
    /// retry): another successor is stored in the same family, and nothing is revoked.
    Reissued { user_id: Uuid, family_id: Uuid },
    /// The token had been exchanged before the reuse interval: the whole family is now
    /// revoked.
    Reused,
    /// Unknown, expired or revoked.
    Invalid,
}

/// How OTP codes are issued and tried.
#[derive(Debug, Clone, Copy)]
pub struct OtpPolicy {
    /// How long a code stays valid.
    pub ttl: Duration,
    /// How long after a code is sent before another may be sent to the same phone.
    pub resend_cooldown: Duration,
    /// Tries after which one code is dead.
    pub max_attempts_per_code: i32,
    /// Wrong tries one phone may take in `wrong_window`, across all its codes.
    pub max_wrong_per_phone: i32,
    /// The window starts at the phone's first wrong try.
    pub wrong_window: Duration,
}

/// Whether a new OTP code was stored.
#[derive(Debug, PartialEq, Eq)]
pub enum OtpIssue {
    Stored,
    /// A code was sent less than the cooldown ago; retry after this many seconds.
    Cooldown {
        retry_after_s: u64,
    },
    /// The phone's wrong tries are spent until its window ends, in this many seconds: a
    /// code sent now could not be tried.
    Locked {
        retry_after_s: u64,
    },
}

/// What one try of a phone's code may go on with.
#[derive(Debug, PartialEq, Eq)]
pub enum OtpTry {
    /// A try was spent on the live code; compare against this hash.
    Live(Vec<u8>),
    /// No live code: none sent, expired, used, or its own tries spent.
    NoCode,
    /// The phone's wrong tries are spent until its window ends, in this many seconds.
    Locked { retry_after_s: u64 },
}

/// Rows the periodic sweep deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    /// Refresh tokens past their expiry (rotated or not: an expired token proves nothing).
    pub refresh_tokens: u64,
    /// OTP codes expired or used, whose phone's wrong-try window is over too.
    pub otp_codes: u64,
    /// Idempotency keys past their 24 hours.
    pub idempotency_keys: u64,
}

/// Whole seconds until `until`, at least 1 (a `Retry-After` value).
fn seconds_until(until: DateTime<Utc>, at: DateTime<Utc>) -> u64 {
    u64::try_from((until - at).num_seconds().max(1)).unwrap_or(1)
}

impl Store {
    pub async fn insert_refresh_token(
        &self,
        user_id: Uuid,
        family_id: Uuid,
        token_hash: &[u8],
        ttl: Duration,
    ) -> Result<(), sqlx::Error> {
        let at = now();
        on_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO refresh_tokens (id, family_id, user_id, token_hash, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(Uuid::now_v7())
            .bind(family_id)
            .bind(user_id)
            .bind(token_hash)
            .bind(at)
            .bind(at + ttl)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Spends the token with hash `old` and stores `new` as its successor, atomically.
    ///
    /// A token already spent less than `reuse_interval` ago is not a theft signal but two
    /// clients of one session refreshing at once (or a retry after a lost answer): `new`
    /// joins the same family and the answer is [`Rotation::Reissued`]. Spent earlier than
    /// that, the whole family is revoked ([`Rotation::Reused`]). A zero interval revokes on
    /// every replay.
    pub async fn rotate_refresh_token(
        &self,
        old: &[u8],
        new: &[u8],
        ttl: Duration,
        reuse_interval: Duration,
    ) -> Result<Rotation, sqlx::Error> {
        let at = now();
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            // Write first: the row lock (PostgreSQL) or the write lock (SQLite) makes this
            // the one place a concurrent exchange of the same token is decided.
            let spent: Option<(Uuid, Uuid)> = sqlx::query_as(
                "UPDATE refresh_tokens SET rotated_at = $2 \
                 WHERE token_hash = $1 AND rotated_at IS NULL AND revoked_at IS NULL \
                   AND expires_at > $2 \
                 RETURNING family_id, user_id",
            )
            .bind(old)
            .bind(at)
            .fetch_optional(&mut *tx)
            .await?;
            // Spent by a concurrent exchange moments ago (committed before our UPDATE
            // looked, or while it waited for the row): a sibling of the same session.
            let recent: Option<(Uuid, Uuid)> = match spent {
                Some(_) => None,
                None => {
                    sqlx::query_as(
                        "SELECT family_id, user_id FROM refresh_tokens \
                         WHERE token_hash = $1 AND rotated_at IS NOT NULL AND rotated_at > $3 \
                           AND revoked_at IS NULL AND expires_at > $2",
                    )
                    .bind(old)
                    .bind(at)
                    .bind(at - reuse_interval)
                    .fetch_optional(&mut *tx)
                    .await?
                }
            };
            if let Some((family_id, user_id)) = spent.or(recent) {
                sqlx::query(
                    "INSERT INTO refresh_tokens (id, family_id, user_id, token_hash, created_at, expires_at) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(Uuid::now_v7())
                .bind(family_id)
                .bind(user_id)
                .bind(new)
                .bind(at)
                .bind(at + ttl)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                return Ok(if spent.is_some() {
                    Rotation::Rotated { user_id, family_id }
                } else {
                    Rotation::Reissued { user_id, family_id }
                });
            }
            // Not spendable: was it a replay of a token rotated long enough ago?
            let reused = sqlx::query(
                "UPDATE refresh_tokens SET revoked_at = $2 \
                 WHERE revoked_at IS NULL AND family_id = \
                   (SELECT family_id FROM refresh_tokens WHERE token_hash = $1 AND rotated_at IS NOT NULL)",
            )
            .bind(old)
            .bind(at)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            tx.commit().await?;
            Ok(if reused > 0 {
                Rotation::Reused
            } else {
                Rotation::Invalid
            })
        })
    }

    /// Revokes the family (session) the token belongs to. Unknown tokens change nothing.
    pub async fn revoke_refresh_family(&self, token_hash: &[u8]) -> Result<u64, sqlx::Error> {
        let at = now();
        on_pool!(self, |pool| {
            Ok(sqlx::query(
                "UPDATE refresh_tokens SET revoked_at = $2 \
                 WHERE revoked_at IS NULL AND family_id = \
                   (SELECT family_id FROM refresh_tokens WHERE token_hash = $1)",
            )
            .bind(token_hash)
            .bind(at)
            .execute(pool)
            .await?
            .rows_affected())
        })
    }

    /// Stores a new code for `phone` unless one was sent within the cooldown or the phone's
    /// wrong tries are spent. A new code gets its own tries, but the phone's count of wrong
    /// tries carries over: resending does not buy more guesses.
    pub async fn issue_otp(
        &self,
        phone: &str,
        code_hash: &[u8],
        policy: &OtpPolicy,
    ) -> Result<OtpIssue, sqlx::Error> {
        let at = now();
        let stored = on_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO otp_codes (phone, code_hash, attempts, sent_at, expires_at) \
                 VALUES ($1, $2, 0, $3, $4) \
                 ON CONFLICT (phone) DO UPDATE SET code_hash = excluded.code_hash, attempts = 0, \
                   sent_at = excluded.sent_at, expires_at = excluded.expires_at, used_at = NULL \
                 WHERE otp_codes.sent_at <= $5 \
                   AND (otp_codes.failures < $6 OR otp_codes.failures_reset_at IS NULL \
                        OR otp_codes.failures_reset_at <= $3)",
            )
            .bind(phone)
            .bind(code_hash)
            .bind(at)
            .bind(at + policy.ttl)
            .bind(at - policy.resend_cooldown)
            .bind(policy.max_wrong_per_phone)
            .execute(pool)
            .await?
            .rows_affected()
        });
        if stored > 0 {
            return Ok(OtpIssue::Stored);
        }
        let row: Option<(DateTime<Utc>, i32, Option<DateTime<Utc>>)> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT sent_at, failures, failures_reset_at FROM otp_codes WHERE phone = $1",
            )
            .bind(phone)
            .fetch_optional(pool)
            .await?
        });
        Ok(match row {
            Some((_, failures, Some(reset_at)))
                if failures >= policy.max_wrong_per_phone && reset_at > at =>
            {
                OtpIssue::Locked {
                    retry_after_s: seconds_until(reset_at, at),
                }
            }
            Some((sent_at, ..)) => OtpIssue::Cooldown {
                retry_after_s: seconds_until(sent_at + policy.resend_cooldown, at),
            },
            // Deleted by a sweep between the two statements: the caller may simply retry.
            None => OtpIssue::Cooldown { retry_after_s: 1 },
        })
    }

    /// Spends one try on the live code for `phone`, counting it against the code's tries
    /// and the phone's wrong-try window (given back by [`Store::consume_otp`] when the code
    /// was right), and returns the code's hash to compare with.
    pub async fn spend_otp_attempt(
        &self,
        phone: &str,
        policy: &OtpPolicy,
    ) -> Result<OtpTry, sqlx::Error> {
        let at = now();
        let live: Option<Vec<u8>> = on_pool!(self, |pool| {
            sqlx::query_scalar(
                "UPDATE otp_codes SET attempts = attempts + 1, \
                   failures = CASE WHEN failures_reset_at IS NULL OR failures_reset_at <= $3 \
                                   THEN 1 ELSE failures + 1 END, \
                   failures_reset_at = CASE WHEN failures_reset_at IS NULL OR failures_reset_at <= $3 \
                                            THEN $5 ELSE failures_reset_at END \
                 WHERE phone = $1 AND used_at IS NULL AND attempts < $2 AND expires_at > $3 \
                   AND (failures < $4 OR failures_reset_at IS NULL OR failures_reset_at <= $3) \
                 RETURNING code_hash",
            )
            .bind(phone)
            .bind(policy.max_attempts_per_code)
            .bind(at)
            .bind(policy.max_wrong_per_phone)
            .bind(at + policy.wrong_window)
            .fetch_optional(pool)
            .await?
        });
        if let Some(hash) = live {
            return Ok(OtpTry::Live(hash));
        }
        let window: Option<(i32, Option<DateTime<Utc>>)> = on_pool!(self, |pool| {
            sqlx::query_as("SELECT failures, failures_reset_at FROM otp_codes WHERE phone = $1")
                .bind(phone)
                .fetch_optional(pool)
                .await?
        });
        Ok(match window {
            Some((failures, Some(reset_at)))
                if failures >= policy.max_wrong_per_phone && reset_at > at =>
            {
                OtpTry::Locked {
                    retry_after_s: seconds_until(reset_at, at),
                }
            }
            _ => OtpTry::NoCode,
        })
    }

    /// Marks the code used once it has been proven, giving back the wrong try that
    /// [`Store::spend_otp_attempt`] counted; `false` if another request used it first.
    pub async fn consume_otp(&self, phone: &str, code_hash: &[u8]) -> Result<bool, sqlx::Error> {
        let at = now();
        let n = on_pool!(self, |pool| {
            sqlx::query(
                "UPDATE otp_codes SET used_at = $3, \
                   failures = CASE WHEN failures > 0 THEN failures - 1 ELSE 0 END \
                 WHERE phone = $1 AND code_hash = $2 AND used_at IS NULL",
            )
            .bind(phone)
            .bind(code_hash)
            .bind(at)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }

    /// Deletes what can no longer be used or counted, as of `at`: expired refresh tokens,
    /// and OTP codes expired or used whose phone has no wrong tries in a running window.
    /// The periodic sweep (`startup`) calls this; other expiring rows belong here too.
    pub async fn sweep_expired(&self, at: DateTime<Utc>) -> Result<Swept, sqlx::Error> {
        on_pool!(self, |pool| {
            let refresh_tokens = sqlx::query("DELETE FROM refresh_tokens WHERE expires_at <= $1")
                .bind(at)
                .execute(pool)
                .await?
                .rows_affected();
            let otp_codes = sqlx::query(
                "DELETE FROM otp_codes \
                 WHERE (used_at IS NOT NULL OR expires_at <= $1) \
                   AND (failures = 0 OR failures_reset_at IS NULL OR failures_reset_at <= $1)",
            )
            .bind(at)
            .execute(pool)
            .await?
            .rows_affected();
            let idempotency_keys =
                sqlx::query("DELETE FROM idempotency_keys WHERE expires_at <= $1")
                    .bind(at)
                    .execute(pool)
                    .await?
                    .rows_affected();
            Ok(Swept {
                refresh_tokens,
                otp_codes,
                idempotency_keys,
            })
        })
    }
}
