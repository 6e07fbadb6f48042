//! Refresh tokens and OTP codes: the durable half of authentication.
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

/// Whether a new OTP code was stored.
#[derive(Debug, PartialEq, Eq)]
pub enum OtpIssue {
    Stored,
    /// A code was sent less than the cooldown ago; retry after this many seconds.
    Cooldown {
        retry_after_s: u64,
    },
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

    /// Stores a new code for `phone` unless one was sent within `cooldown`.
    pub async fn issue_otp(
        &self,
        phone: &str,
        code_hash: &[u8],
        ttl: Duration,
        cooldown: Duration,
    ) -> Result<OtpIssue, sqlx::Error> {
        let at = now();
        let stored = on_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO otp_codes (phone, code_hash, attempts, sent_at, expires_at) \
                 VALUES ($1, $2, 0, $3, $4) \
                 ON CONFLICT (phone) DO UPDATE SET code_hash = excluded.code_hash, attempts = 0, \
                   sent_at = excluded.sent_at, expires_at = excluded.expires_at \
                 WHERE otp_codes.sent_at <= $5",
            )
            .bind(phone)
            .bind(code_hash)
            .bind(at)
            .bind(at + ttl)
            .bind(at - cooldown)
            .execute(pool)
            .await?
            .rows_affected()
        });
        if stored > 0 {
            return Ok(OtpIssue::Stored);
        }
        let sent_at: Option<DateTime<Utc>> = on_pool!(self, |pool| {
            sqlx::query_scalar("SELECT sent_at FROM otp_codes WHERE phone = $1")
                .bind(phone)
                .fetch_optional(pool)
                .await?
        });
        let wait = sent_at.map_or(1, |s| (s + cooldown - at).num_seconds().max(1));
        Ok(OtpIssue::Cooldown {
            retry_after_s: u64::try_from(wait).unwrap_or(1),
        })
    }

    /// Spends one attempt on the live code for `phone` and returns its hash; `None` when
    /// there is no live code (none sent, expired, or `max_attempts` already spent).
    pub async fn spend_otp_attempt(
        &self,
        phone: &str,
        max_attempts: i32,
    ) -> Result<Option<Vec<u8>>, sqlx::Error> {
        let at = now();
        on_pool!(self, |pool| {
            sqlx::query_scalar(
                "UPDATE otp_codes SET attempts = attempts + 1 \
                 WHERE phone = $1 AND attempts < $2 AND expires_at > $3 \
                 RETURNING code_hash",
            )
            .bind(phone)
            .bind(max_attempts)
            .bind(at)
            .fetch_optional(pool)
            .await
        })
    }

    /// Deletes the code once it has been used; `false` if another request used it first.
    pub async fn consume_otp(&self, phone: &str, code_hash: &[u8]) -> Result<bool, sqlx::Error> {
        let n = on_pool!(self, |pool| {
            sqlx::query("DELETE FROM otp_codes WHERE phone = $1 AND code_hash = $2")
                .bind(phone)
                .bind(code_hash)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(n == 1)
    }
}
