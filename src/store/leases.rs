//! Leases with fencing tokens (issue 16): who runs a named piece of work (a matcher
//! region) right now. A grant bumps the name's token, which never goes back; renewing keeps
//! it; releasing ends the lease but keeps the row (and so the counter). A holder that was
//! paused past its expiry finds its renewal refused and its token stale, and every write it
//! guards with [`Store::check_fence`] is refused — the database, not the holder's belief,
//! decides. PostgreSQL leases use the database's clock, so nodes' clocks may disagree.

use std::time::Duration;

use chrono::Utc;
use sqlx::{PgConnection, Row};

use super::Store;

/// A granted lease: the name and the fencing token that proves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub name: String,
    pub token: i64,
}

/// A guarded write came from a holder whose lease is gone.
#[derive(Debug, thiserror::Error)]
pub enum FenceError {
    #[error("lease {name:?} is no longer held with token {token}")]
    Fenced { name: String, token: i64 },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Store {
    /// Grants `name` to `holder` for `ttl` if nobody holds it (or `holder` itself does);
    /// `None` while another holder's lease runs. Each grant has a new, higher token.
    pub async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, sqlx::Error> {
        let token: Option<i64> = match self {
            Store::Postgres(pool) => {
                sqlx::query_scalar(
                    "INSERT INTO leases (name, holder, token, expires_at) \
                     VALUES ($1, $2, 1, clock_timestamp() + $3 * interval '1 millisecond') \
                     ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, \
                     token = leases.token + 1, expires_at = EXCLUDED.expires_at \
                     WHERE leases.expires_at <= clock_timestamp() OR leases.holder = EXCLUDED.holder \
                     RETURNING token",
                )
                .bind(name)
                .bind(holder)
                .bind(millis(ttl))
                .fetch_optional(pool)
                .await?
            }
            Store::Sqlite(pool) => {
                let now = Utc::now();
                let until = now + chrono::Duration::milliseconds(millis(ttl));
                sqlx::query_scalar(
                    "INSERT INTO leases (name, holder, token, expires_at) VALUES ($1, $2, 1, $4) \
                     ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
                     token = leases.token + 1, expires_at = excluded.expires_at \
                     WHERE leases.expires_at <= $3 OR leases.holder = excluded.holder \
                     RETURNING token",
                )
                .bind(name)
                .bind(holder)
                .bind(now)
                .bind(until)
                .fetch_optional(pool)
                .await?
            }
        };
        Ok(token.map(|token| Lease {
            name: name.to_owned(),
            token,
        }))
    }

    /// Extends a lease still held with this token; `false` if it expired or moved on (the
    /// holder must stop the work at once and may try [`Store::acquire_lease`] again).
    pub async fn renew_lease(
        &self,
        lease: &Lease,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, sqlx::Error> {
        let done = match self {
            Store::Postgres(pool) => sqlx::query(
                "UPDATE leases SET expires_at = clock_timestamp() + $4 * interval '1 millisecond' \
                 WHERE name = $1 AND holder = $2 AND token = $3 AND expires_at > clock_timestamp()",
            )
            .bind(&lease.name)
            .bind(holder)
            .bind(lease.token)
            .bind(millis(ttl))
            .execute(pool)
            .await?
            .rows_affected(),
            Store::Sqlite(pool) => {
                let now = Utc::now();
                sqlx::query(
                    "UPDATE leases SET expires_at = $5 \
                     WHERE name = $1 AND holder = $2 AND token = $3 AND expires_at > $4",
                )
                .bind(&lease.name)
                .bind(holder)
                .bind(lease.token)
                .bind(now)
                .bind(now + chrono::Duration::milliseconds(millis(ttl)))
                .execute(pool)
                .await?
                .rows_affected()
            }
        };
        Ok(done == 1)
    }

    /// Ends a lease this holder still has, so another node may take it now rather than
    /// after expiry. A stale token changes nothing (a late release cannot end the next
    /// holder's lease), and the row stays so the token keeps growing.
    pub async fn release_lease(&self, lease: &Lease, holder: &str) -> Result<bool, sqlx::Error> {
        let past = Utc::now() - chrono::Duration::days(1);
        let done = on_pool_release(self, lease, holder, past).await?;
        Ok(done == 1)
    }

    /// In a PostgreSQL transaction: proceeds only while `lease` is current, and holds the
    /// lease row (shared) until the transaction ends, so no grant to another holder can
    /// land between this check and the commit of the guarded write.
    pub async fn check_fence(conn: &mut PgConnection, lease: &Lease) -> Result<(), FenceError> {
        let row = sqlx::query(
            "SELECT token FROM leases WHERE name = $1 AND token = $2 \
             AND expires_at > clock_timestamp() FOR SHARE",
        )
        .bind(&lease.name)
        .bind(lease.token)
        .fetch_optional(&mut *conn)
        .await?;
        match row.map(|r| r.try_get::<i64, _>("token")) {
            Some(Ok(_)) => Ok(()),
            Some(Err(e)) => Err(e.into()),
            None => Err(FenceError::Fenced {
                name: lease.name.clone(),
                token: lease.token,
            }),
        }
    }

    /// `(name, holder)` of every lease running now whose name starts with `prefix` (a
    /// plain prefix, without `%` or `_`).
    pub async fn running_leases(&self, prefix: &str) -> Result<Vec<(String, String)>, sqlx::Error> {
        let pattern = format!("{prefix}%");
        match self {
            Store::Postgres(pool) => {
                sqlx::query_as(
                    "SELECT name, holder FROM leases WHERE name LIKE $1 AND expires_at > clock_timestamp() ORDER BY name",
                )
                .bind(pattern)
                .fetch_all(pool)
                .await
            }
            Store::Sqlite(pool) => {
                sqlx::query_as(
                    "SELECT name, holder FROM leases WHERE name LIKE $1 AND expires_at > $2 ORDER BY name",
                )
                .bind(pattern)
                .bind(Utc::now())
                .fetch_all(pool)
                .await
            }
        }
    }

    /// `(holder, token)` of a lease that is running now.
    pub async fn lease_holder(&self, name: &str) -> Result<Option<(String, i64)>, sqlx::Error> {
        match self {
            Store::Postgres(pool) => {
                sqlx::query_as(
                    "SELECT holder, token FROM leases WHERE name = $1 AND expires_at > clock_timestamp()",
                )
                .bind(name)
                .fetch_optional(pool)
                .await
            }
            Store::Sqlite(pool) => {
                sqlx::query_as(
                    "SELECT holder, token FROM leases WHERE name = $1 AND expires_at > $2",
                )
                .bind(name)
                .bind(Utc::now())
                .fetch_optional(pool)
                .await
            }
        }
    }
}

async fn on_pool_release(
    store: &Store,
    lease: &Lease,
    holder: &str,
    past: chrono::DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    let sql = "UPDATE leases SET expires_at = $4 WHERE name = $1 AND holder = $2 AND token = $3";
    Ok(crate::on_pool!(store, |pool| {
        sqlx::query(sql)
            .bind(&lease.name)
            .bind(holder)
            .bind(lease.token)
            .bind(past)
            .execute(pool)
            .await?
            .rows_affected()
    }))
}
