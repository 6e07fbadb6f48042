//! Saved delivery addresses (`/api/v1/me/addresses`): a customer's list, and the writes
//! that keep its rules on both backends.
//!
//! The rules, each kept inside one transaction:
//! - a user has at most `max` addresses: the insert is conditional on the count;
//! - while any exist, exactly one is the default. The first address is the default;
//!   making one the default clears the old one first; deleting the default makes the
//!   newest remaining address the default (the one listed next); `is_default: false` on
//!   the default is refused ([`AddressWrite::KeepsDefault`]): another address must be made
//!   the default instead.
//!
//! Every write starts by writing the user's own row (an `UPDATE` that changes nothing): on
//! PostgreSQL that takes the row's lock, on SQLite the database's write lock. So one
//! user's address writes run one at a time, and the count and the default they read cannot
//! change before they commit. The partial unique index `addresses_one_default_idx` holds
//! the "at most one default" half in the database itself.

use chrono::{DateTime, Utc};
use medify_actors::geo::Point;
use serde::Serialize;
use sqlx::FromRow;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{now, Store};
use crate::on_pool;

/// A saved address as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema, FromRow)]
pub struct Address {
    pub id: Uuid,
    /// What the customer calls it, such as "Home".
    pub label: String,
    #[schema(minimum = -90, maximum = 90)]
    pub lat: f64,
    #[schema(minimum = -180, maximum = 180)]
    pub lng: f64,
    pub address: String,
    /// Exactly one of a customer's addresses is the default.
    pub is_default: bool,
    pub created_at: DateTime<Utc>,
}

/// A new address, validated.
#[derive(Debug, Clone)]
pub struct AddressFields {
    pub label: String,
    pub point: Point,
    pub address: String,
}

/// A validated change to an address; `None` leaves a field as it is. Each coordinate is
/// in range on its own, so any mix with the stored one is a valid point.
#[derive(Debug, Clone, Default)]
pub struct AddressChange {
    pub label: Option<String>,
    pub lat: Option<f64>,
    pub lng: Option<f64>,
    pub address: Option<String>,
    pub is_default: Option<bool>,
}

/// What an address write came to.
#[derive(Debug, Clone, PartialEq)]
pub enum AddressWrite {
    /// Created or changed; the address as it is now.
    Saved(Address),
    Deleted,
    /// The user has no address with that id (whoever else may have one).
    NotFound,
    /// The user already has the most addresses allowed.
    LimitReached,
    /// `is_default: false` on the default: some address must stay the default.
    KeepsDefault,
    /// The account no longer exists.
    NoAccount,
}

/// Serialises one user's address writes (see the module comment); touches no column.
const LOCK_OWNER: &str = "UPDATE users SET updated_at = updated_at WHERE id = $1";

const SELECT_ONE: &str = "SELECT id, label, lat, lng, address, is_default, created_at \
     FROM addresses WHERE id = $1 AND user_id = $2";

/// Inserts unless the user is at the limit; the user's first address is the default.
const INSERT_BELOW_LIMIT: &str = "INSERT INTO addresses \
     (id, user_id, label, lat, lng, address, is_default, created_at, updated_at) \
     SELECT $1, $2, $3, $4, $5, $6, \
            NOT EXISTS (SELECT 1 FROM addresses WHERE user_id = $2), $7, $7 \
     WHERE (SELECT COUNT(*) FROM addresses WHERE user_id = $2) < $8";

/// Two statements, old default off then the new one on: a unique index is checked row by
/// row, so one statement swapping both could trip over it.
const CLEAR_DEFAULT: &str = "UPDATE addresses SET is_default = FALSE, updated_at = $3 \
     WHERE user_id = $1 AND is_default AND id <> $2";
const SET_DEFAULT: &str = "UPDATE addresses SET is_default = TRUE, updated_at = $2 WHERE id = $1";

/// After the default was deleted: the newest remaining address becomes it.
const PROMOTE_NEWEST: &str = "UPDATE addresses SET is_default = TRUE, updated_at = $2 \
     WHERE id = (SELECT id FROM addresses WHERE user_id = $1 \
                 ORDER BY created_at DESC, id DESC LIMIT 1)";

impl Store {
    /// A page of the user's addresses, the default first, then the newest first; and how
    /// many there are.
    pub async fn addresses_page(
        &self,
        user_id: Uuid,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<Address>, i64), sqlx::Error> {
        on_pool!(self, |pool| {
            let items = sqlx::query_as(
                "SELECT id, label, lat, lng, address, is_default, created_at FROM addresses \
                 WHERE user_id = $1 ORDER BY is_default DESC, created_at DESC, id DESC \
                 LIMIT $2 OFFSET $3",
            )
            .bind(user_id)
            .bind(limit)
            .bind(offset)
            .fetch_all(pool)
            .await?;
            let total = sqlx::query_scalar("SELECT COUNT(*) FROM addresses WHERE user_id = $1")
                .bind(user_id)
                .fetch_one(pool)
                .await?;
            Ok((items, total))
        })
    }

    /// The user's address `id`; `None` if it is unknown or someone else's.
    pub async fn address_of(
        &self,
        user_id: Uuid,
        id: Uuid,
    ) -> Result<Option<Address>, sqlx::Error> {
        on_pool!(self, |pool| {
            sqlx::query_as(SELECT_ONE)
                .bind(id)
                .bind(user_id)
                .fetch_optional(pool)
                .await
        })
    }

    /// Saves a new address for the user unless they already have `max`; it is the default
    /// if it is their first or `make_default` says so (the old default is cleared).
    pub async fn insert_address(
        &self,
        user_id: Uuid,
        fields: &AddressFields,
        make_default: bool,
        max: u32,
    ) -> Result<AddressWrite, sqlx::Error> {
        let id = Uuid::now_v7();
        let at = now();
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            let owner = sqlx::query(LOCK_OWNER)
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
            if owner.rows_affected() == 0 {
                return Ok(AddressWrite::NoAccount);
            }
            let inserted = sqlx::query(INSERT_BELOW_LIMIT)
                .bind(id)
                .bind(user_id)
                .bind(&fields.label)
                .bind(fields.point.lat())
                .bind(fields.point.lng())
                .bind(&fields.address)
                .bind(at)
                .bind(i64::from(max))
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if inserted == 0 {
                return Ok(AddressWrite::LimitReached);
            }
            if make_default {
                sqlx::query(CLEAR_DEFAULT)
                    .bind(user_id)
                    .bind(id)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(SET_DEFAULT)
                    .bind(id)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
            }
            let saved = sqlx::query_as(SELECT_ONE)
                .bind(id)
                .bind(user_id)
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(AddressWrite::Saved(saved))
        })
    }

    /// Applies `change` to the user's address `id`. `is_default: true` makes it the
    /// default (clearing the old one); `false` on the default changes nothing and is
    /// [`AddressWrite::KeepsDefault`].
    pub async fn update_address(
        &self,
        user_id: Uuid,
        id: Uuid,
        change: &AddressChange,
    ) -> Result<AddressWrite, sqlx::Error> {
        let at = now();
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            let owner = sqlx::query(LOCK_OWNER)
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
            if owner.rows_affected() == 0 {
                return Ok(AddressWrite::NoAccount);
            }
            let current: Option<Address> = sqlx::query_as(SELECT_ONE)
                .bind(id)
                .bind(user_id)
                .fetch_optional(&mut *tx)
                .await?;
            let Some(current) = current else {
                return Ok(AddressWrite::NotFound);
            };
            if change.is_default == Some(false) && current.is_default {
                return Ok(AddressWrite::KeepsDefault);
            }
            sqlx::query(
                "UPDATE addresses SET label = $2, lat = $3, lng = $4, address = $5, \
                   updated_at = $6 WHERE id = $1",
            )
            .bind(id)
            .bind(change.label.as_ref().unwrap_or(&current.label))
            .bind(change.lat.unwrap_or(current.lat))
            .bind(change.lng.unwrap_or(current.lng))
            .bind(change.address.as_ref().unwrap_or(&current.address))
            .bind(at)
            .execute(&mut *tx)
            .await?;
            if change.is_default == Some(true) && !current.is_default {
                sqlx::query(CLEAR_DEFAULT)
                    .bind(user_id)
                    .bind(id)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(SET_DEFAULT)
                    .bind(id)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
            }
            let saved = sqlx::query_as(SELECT_ONE)
                .bind(id)
                .bind(user_id)
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(AddressWrite::Saved(saved))
        })
    }

    /// Deletes the user's address `id`; if it was the default, the newest remaining
    /// address becomes the default.
    pub async fn delete_address(
        &self,
        user_id: Uuid,
        id: Uuid,
    ) -> Result<AddressWrite, sqlx::Error> {
        let at = now();
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            let owner = sqlx::query(LOCK_OWNER)
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
            if owner.rows_affected() == 0 {
                return Ok(AddressWrite::NoAccount);
            }
            let was_default: Option<bool> = sqlx::query_scalar(
                "DELETE FROM addresses WHERE id = $1 AND user_id = $2 RETURNING is_default",
            )
            .bind(id)
            .bind(user_id)
            .fetch_optional(&mut *tx)
            .await?;
            match was_default {
                None => return Ok(AddressWrite::NotFound),
                Some(true) => {
                    sqlx::query(PROMOTE_NEWEST)
                        .bind(user_id)
                        .bind(at)
                        .execute(&mut *tx)
                        .await?;
                }
                Some(false) => {}
            }
            tx.commit().await?;
            Ok(AddressWrite::Deleted)
        })
    }
}
