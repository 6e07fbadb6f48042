//! Storage: one [`Store`] over either embedded SQLite or PostgreSQL.
//!
//! The backend is chosen by the `DATABASE_URL` scheme. [`Store`] is an enum over the two
//! sqlx pools rather than a trait with two implementations: most queries are the same SQL
//! text on both sides, and the [`on_pool!`] macro runs one query body against whichever
//! pool is live (type-checked once per backend, so each side keeps its native column
//! types: uuid / timestamptz / jsonb on PostgreSQL, BLOB / TEXT on SQLite). Where the
//! dialects really differ, a method matches on the variant and writes each SQL text out.
//! docs/storage.md explains why this beat both sqlx's `Any` driver and a trait per backend.
//!
//! Migrations are embedded in the binary, one set per dialect, and applied at start-up and
//! by `medify migrate`.

pub mod auth;
pub mod bus;
pub mod catalog;
pub mod notifications;
pub mod offers;
pub mod orders;
pub mod prescriptions;
pub mod riders;
pub mod stock;
pub mod users;

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::config::{DatabaseSettings, DatabaseUrl};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

/// Runs `$body` with `$pool` bound to the live pool, whichever backend it is.
///
/// The body is compiled twice, once per pool type, so it may only use SQL and Rust types
/// that both backends support.
#[macro_export]
macro_rules! on_pool {
    ($store:expr, |$pool:ident| $body:expr) => {
        match $store {
            $crate::store::Store::Sqlite($pool) => $body,
            $crate::store::Store::Postgres($pool) => $body,
        }
    };
}

/// A connection pool to the configured database.
#[derive(Clone, Debug)]
pub enum Store {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Store {
    /// Opens a pool. An SQLite file is created if it does not exist.
    pub async fn connect(settings: &DatabaseSettings) -> Result<Self, sqlx::Error> {
        let acquire_timeout = Duration::from_secs(5);
        match &settings.url {
            DatabaseUrl::Sqlite(url) => {
                let options = SqliteConnectOptions::from_str(url)?
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .foreign_keys(true)
                    .busy_timeout(Duration::from_secs(10));
                let pool = SqlitePoolOptions::new()
                    .max_connections(settings.max_connections)
                    .acquire_timeout(acquire_timeout)
                    .connect_with(options)
                    .await?;
                Ok(Self::Sqlite(pool))
            }
            DatabaseUrl::Postgres(url) => {
                let options = PgConnectOptions::from_str(url)?.application_name("medify");
                let pool = PgPoolOptions::new()
                    .max_connections(settings.max_connections)
                    .acquire_timeout(acquire_timeout)
                    .connect_with(options)
                    .await?;
                Ok(Self::Postgres(pool))
            }
        }
    }

    /// Applies every embedded migration not yet applied; returns how many were applied.
    pub async fn migrate(&self) -> Result<usize, sqlx::migrate::MigrateError> {
        let before = self.applied_migrations().await.unwrap_or(0);
        match self {
            Self::Sqlite(pool) => SQLITE_MIGRATIONS.run(pool).await?,
            Self::Postgres(pool) => POSTGRES_MIGRATIONS.run(pool).await?,
        }
        let after = self.applied_migrations().await.unwrap_or(before);
        Ok(after.saturating_sub(before))
    }

    async fn applied_migrations(&self) -> Result<usize, sqlx::Error> {
        let n: i64 = on_pool!(self, |pool| {
            sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success")
                .fetch_one(pool)
                .await?
        });
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// One round trip to the database.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        let one: i32 = on_pool!(self, |pool| {
            sqlx::query_scalar("SELECT 1").fetch_one(pool).await?
        });
        debug_assert_eq!(one, 1);
        Ok(())
    }

    /// "sqlite" or "postgres".
    pub fn backend(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }

    /// Closes every connection, waiting for those in use to be returned.
    pub async fn close(&self) {
        on_pool!(self, |pool| pool.close().await)
    }
}

/// The current time at the precision both backends store (microseconds), so a value
/// written and read back compares equal, and SQLite's text timestamps sort correctly.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// The column (or constraint) a unique violation is about, if `e` is one.
pub fn unique_violation(e: &sqlx::Error) -> Option<String> {
    let db = e.as_database_error()?;
    if !db.is_unique_violation() {
        return None;
    }
    // PostgreSQL names the constraint (`users_email_key`); SQLite says
    // "UNIQUE constraint failed: users.email".
    Some(db.constraint().unwrap_or(db.message()).to_owned())
}
