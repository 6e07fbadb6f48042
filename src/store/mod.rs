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

pub mod addresses;
pub mod auth;
pub mod bus;
pub mod catalog;
pub mod dispatch;
pub mod leases;
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

/// Runs the SQLite migrations on one connection with foreign keys off, as SQLite's own
/// procedure for rebuilding a table asks (a CHECK constraint cannot be changed in place,
/// and dropping the old table with keys on would cascade into every table that refers to
/// it), then checks every key before switching them on again.
async fn migrate_sqlite(pool: &SqlitePool) -> Result<(), sqlx::migrate::MigrateError> {
    let mut conn = pool.acquire().await?;
    sqlx::query("PRAGMA foreign_keys = OFF")
        .execute(&mut *conn)
        .await?;
    let ran = SQLITE_MIGRATIONS.run(&mut *conn).await;
    let broken: Vec<(String, Option<i64>)> = sqlx::query_as("PRAGMA foreign_key_check")
        .fetch_all(&mut *conn)
        .await?;
    sqlx::query("PRAGMA foreign_keys = ON")
        .execute(&mut *conn)
        .await?;
    ran?;
    if let Some((table, row)) = broken.first() {
        return Err(sqlx::migrate::MigrateError::Execute(sqlx::Error::Protocol(
            format!(
                "after migrating, {} row(s) break a foreign key (first: {table} row {row:?})",
                broken.len()
            ),
        )));
    }
    Ok(())
}

/// One page of rows whose `filter` may name one id as `$3` (`"$3 IS NULL"` for none).
pub(crate) struct ScopedPage<'a> {
    /// `SELECT … FROM <table> <alias> [JOIN …]`, the rows' query up to `WHERE`.
    pub select: &'a str,
    /// `<table> <alias>`, what the count runs over.
    pub count_from: &'a str,
    pub filter: &'a str,
    pub order_by: &'a str,
    pub who: Option<uuid::Uuid>,
    pub limit: i64,
    pub offset: i64,
}

impl Store {
    /// A page of `R` and how many rows match in all: what every "my orders", "my
    /// prescriptions" list runs.
    pub(crate) async fn scoped_page<R>(
        &self,
        page: ScopedPage<'_>,
    ) -> Result<(Vec<R>, i64), sqlx::Error>
    where
        R: Send
            + Unpin
            + for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
            + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>,
    {
        let ScopedPage {
            select,
            count_from,
            filter,
            order_by,
            who,
            limit,
            offset,
        } = page;
        let sql = format!("{select} WHERE {filter} ORDER BY {order_by} LIMIT $1 OFFSET $2");
        let count_sql = format!(
            "SELECT COUNT(*) FROM {count_from} WHERE {}",
            filter.replace("$3", "$1")
        );
        Ok(on_pool!(self, |pool| {
            let rows = sqlx::query_as::<_, R>(&sql)
                .bind(limit)
                .bind(offset)
                .bind(who)
                .fetch_all(pool)
                .await?;
            let total: i64 = sqlx::query_scalar(&count_sql)
                .bind(who)
                .fetch_one(pool)
                .await?;
            (rows, total)
        }))
    }
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
            Self::Sqlite(pool) => migrate_sqlite(pool).await?,
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

#[cfg(test)]
mod migration_tests {
    use super::*;

    /// A database at schema `version` with one delivered order, its line and its journal.
    async fn database_at(version: i64) -> (SqlitePool, std::path::PathBuf) {
        let path = std::env::temp_dir().join(format!("medify-migrate-{}.db", uuid::Uuid::now_v7()));
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
            .expect("url")
            .create_if_missing(true)
            .foreign_keys(true);
        let pool = SqlitePool::connect_with(options).await.expect("open");
        let before = Migrator {
            migrations: std::borrow::Cow::Owned(
                SQLITE_MIGRATIONS
                    .migrations
                    .iter()
                    .filter(|m| m.version <= version)
                    .cloned()
                    .collect(),
            ),
            ..Migrator::DEFAULT
        };
        before.run(&pool).await.expect("older migrations");
        for sql in [
            "INSERT INTO pharmacies VALUES (x'01', 'P', 12.9, 77.5, 'A', 1, '2026-01-01', '2026-01-01')",
            "INSERT INTO users (id, name, email, role, created_at, updated_at) \
             VALUES (x'02', 'C', 'c@x', 'customer', '2026-01-01', '2026-01-01')",
            "INSERT INTO medicines (id, name, sku, price_cents, created_at, updated_at) \
             VALUES (x'03', 'M', 'S', 100, '2026-01-01', '2026-01-01')",
            "INSERT INTO orders (id, customer_id, pharmacy_id, status, total_cents, delivery_lat, \
             delivery_lng, delivery_address, delivery_code, version, created_at, updated_at) \
             VALUES (x'04', x'02', x'01', 'delivered', 100, 12.9, 77.5, 'A', '1234', 2, \
             '2026-01-01', '2026-01-01')",
            "INSERT INTO order_items VALUES (x'04', 0, x'03', 1, 100)",
            "INSERT INTO order_events (order_id, seq, event, from_status, to_status, payload, created_at) \
             VALUES (x'04', 1, 'create', NULL, 'confirmed', '{}', '2026-01-01')",
        ] {
            sqlx::query(sql).execute(&pool).await.expect(sql);
        }
        (pool, path)
    }

    #[actix_web::test]
    async fn rebuilding_orders_keeps_every_row_that_refers_to_them() {
        let (pool, path) = database_at(8).await;
        migrate_sqlite(&pool).await.expect("migrated");
        let lines: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM order_items")
            .fetch_one(&pool)
            .await
            .expect("count");
        let journal: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM order_events")
            .fetch_one(&pool)
            .await
            .expect("count");
        assert_eq!(
            (lines, journal),
            (1, 1),
            "the rebuild cascaded into children"
        );
        let (method, status): (String, String) =
            sqlx::query_as("SELECT payment_method, payment_status FROM orders")
                .fetch_one(&pool)
                .await
                .expect("order");
        assert_eq!((method.as_str(), status.as_str()), ("cod", "paid"));
        // The new statuses are allowed, keys are on again and still point at orders.
        sqlx::query("UPDATE orders SET status = 'awaiting_payment'")
            .execute(&pool)
            .await
            .expect("new status");
        let orphan = sqlx::query("INSERT INTO order_items VALUES (x'99', 0, x'03', 1, 100)")
            .execute(&pool)
            .await;
        assert!(orphan.is_err(), "foreign keys are off after migrating");
        pool.close().await;
        let _ = std::fs::remove_file(path);
    }
}
