//! Users: accounts of every role, and the rider profile created with a rider account.
//!
//! Phones: `users.phone` (unique) holds a number its owner has proven by a code;
//! `unverified_phone` (not unique) holds one only typed in, at registration or through
//! `PATCH /me`. The API shows one `phone` with `phone_verified`. Proving a number moves it
//! into `phone` and drops every other account's unverified claim on it, so typing in a
//! victim's number neither blocks the victim nor gets the typist into the victim's sign-in.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::FromRow;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{now, Store};
use crate::domain::Role;
use crate::on_pool;

/// A user as the API shows them: never with a password hash.
#[derive(Debug, Clone, Serialize, ToSchema, FromRow)]
pub struct User {
    pub id: Uuid,
    pub name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    /// Whether the owner proved `phone` with a code (OTP sign-in or phone verification).
    pub phone_verified: bool,
    #[sqlx(try_from = "String")]
    pub role: Role,
    /// The pharmacy a `pharmacy` account works for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pharmacy_id: Option<Uuid>,
}

/// A user with their password hash, for login only.
#[derive(FromRow)]
pub struct Credentials {
    #[sqlx(flatten)]
    pub user: User,
    pub password_hash: Option<String>,
}

/// A user to create; every field already validated.
pub struct NewUser<'a> {
    pub name: &'a str,
    pub email: Option<&'a str>,
    /// Stored unverified.
    pub phone: Option<&'a str>,
    pub password_hash: Option<&'a str>,
    pub role: Role,
    pub pharmacy_id: Option<Uuid>,
}

/// What changes when a user edits their profile; `None` leaves a field as it is.
pub struct ProfileChange<'a> {
    pub name: Option<&'a str>,
    /// A new phone (stored unverified), or `Some(None)` to remove it.
    pub phone: Option<Option<&'a str>>,
}

const USER_COLUMNS: &str = "id, name, email, COALESCE(phone, unverified_phone) AS phone, \
     phone IS NOT NULL AS phone_verified, role, pharmacy_id";

impl Store {
    /// Inserts a user (and, for riders, their rider profile) in one transaction. The phone
    /// is stored unverified. A duplicate email is a unique violation; see
    /// [`super::unique_violation`].
    pub async fn insert_user(&self, new: &NewUser<'_>) -> Result<User, sqlx::Error> {
        let id = Uuid::now_v7();
        let at: DateTime<Utc> = now();
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO users (id, name, email, unverified_phone, password_hash, role, \
                 pharmacy_id, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
            )
            .bind(id)
            .bind(new.name)
            .bind(new.email)
            .bind(new.phone)
            .bind(new.password_hash)
            .bind(new.role.as_str())
            .bind(new.pharmacy_id)
            .bind(at)
            .execute(&mut *tx)
            .await?;
            if new.role == Role::Rider {
                sqlx::query(
                    "INSERT INTO riders (user_id, available, updated_at) VALUES ($1, $2, $3)",
                )
                .bind(id)
                .bind(false)
                .bind(at)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        Ok(User {
            id,
            name: new.name.to_owned(),
            email: new.email.map(str::to_owned),
            phone: new.phone.map(str::to_owned),
            phone_verified: false,
            role: new.role,
            pharmacy_id: new.pharmacy_id,
        })
    }

    pub async fn user_by_id(&self, id: Uuid) -> Result<Option<User>, sqlx::Error> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
        on_pool!(self, |pool| {
            sqlx::query_as(&sql).bind(id).fetch_optional(pool).await
        })
    }

    /// The user with this (normalised) email and their password hash.
    pub async fn credentials_by_email(
        &self,
        email: &str,
    ) -> Result<Option<Credentials>, sqlx::Error> {
        let sql = format!("SELECT {USER_COLUMNS}, password_hash FROM users WHERE email = $1");
        on_pool!(self, |pool| {
            sqlx::query_as(&sql).bind(email).fetch_optional(pool).await
        })
    }

    /// The account that signs in with this phone, which its holder has just proven with a
    /// code: the account holding it verified, else a new customer holding it verified.
    /// Every unverified claim on the number is dropped on the way (the prover wins).
    pub async fn user_for_phone_login(&self, phone: &str) -> Result<User, sqlx::Error> {
        let at = now();
        let select = format!("SELECT {USER_COLUMNS} FROM users WHERE phone = $1");
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            // Write first, so concurrent sign-ins of one phone queue here (SQLite's write
            // lock, PostgreSQL's row locks and unique index).
            sqlx::query(
                "UPDATE users SET unverified_phone = NULL, updated_at = $2 \
                 WHERE unverified_phone = $1",
            )
            .bind(phone)
            .bind(at)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO users (id, name, phone, role, created_at, updated_at) \
                 VALUES ($1, $2, $2, 'customer', $3, $3) ON CONFLICT (phone) DO NOTHING",
            )
            .bind(Uuid::now_v7())
            .bind(phone)
            .bind(at)
            .execute(&mut *tx)
            .await?;
            // Whoever won a concurrent first sign-in, the row exists now.
            let user: User = sqlx::query_as(&select)
                .bind(phone)
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(user)
        })
    }

    /// Marks `phone`, just proven with a code, verified on account `id`, and drops every
    /// other account's unverified claim on it. `None` when the account no longer holds that
    /// phone unverified (changed or verified meanwhile). Another account holding it verified
    /// is a unique violation on `phone`.
    pub async fn verify_phone(&self, id: Uuid, phone: &str) -> Result<Option<User>, sqlx::Error> {
        let at = now();
        let select = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            let moved = sqlx::query(
                "UPDATE users SET phone = unverified_phone, unverified_phone = NULL, \
                   updated_at = $3 \
                 WHERE id = $1 AND unverified_phone = $2",
            )
            .bind(id)
            .bind(phone)
            .bind(at)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if moved == 0 {
                return Ok(None);
            }
            sqlx::query(
                "UPDATE users SET unverified_phone = NULL, updated_at = $2 \
                 WHERE unverified_phone = $1",
            )
            .bind(phone)
            .bind(at)
            .execute(&mut *tx)
            .await?;
            let user = sqlx::query_as(&select)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(user)
        })
    }

    /// Applies a profile edit to account `id`; `None` if there is no such account. A new
    /// phone replaces the old one (verified or not) and is stored unverified; the caller
    /// passes a phone only when it differs from the account's. An account without an email
    /// must keep a phone (the schema refuses otherwise: a check violation).
    pub async fn update_profile(
        &self,
        id: Uuid,
        change: &ProfileChange<'_>,
    ) -> Result<Option<User>, sqlx::Error> {
        let at = now();
        let select = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
        let (phone_changes, new_phone) = match change.phone {
            Some(phone) => (true, phone),
            None => (false, None),
        };
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "UPDATE users SET name = COALESCE($2, name), \
                   phone = CASE WHEN $3 THEN NULL ELSE phone END, \
                   unverified_phone = CASE WHEN $3 THEN $4 ELSE unverified_phone END, \
                   updated_at = $5 \
                 WHERE id = $1",
            )
            .bind(id)
            .bind(change.name)
            .bind(phone_changes)
            .bind(new_phone)
            .bind(at)
            .execute(&mut *tx)
            .await?;
            let user = sqlx::query_as(&select)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(user)
        })
    }

    pub async fn email_exists(&self, email: &str) -> Result<bool, sqlx::Error> {
        let n: i64 = on_pool!(self, |pool| {
            sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE email = $1")
                .bind(email)
                .fetch_one(pool)
                .await?
        });
        Ok(n > 0)
    }

    pub async fn pharmacy_exists(&self, id: Uuid) -> Result<bool, sqlx::Error> {
        let n: i64 = on_pool!(self, |pool| {
            sqlx::query_scalar("SELECT COUNT(*) FROM pharmacies WHERE id = $1")
                .bind(id)
                .fetch_one(pool)
                .await?
        });
        Ok(n > 0)
    }

    /// A page of rider accounts `(id, name)` by name, and how many there are.
    pub async fn riders_page(
        &self,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<(Uuid, String)>, i64), sqlx::Error> {
        on_pool!(self, |pool| {
            let items = sqlx::query_as("SELECT id, name FROM users WHERE role = 'rider' ORDER BY name, id LIMIT $1 OFFSET $2")
                .bind(limit)
                .bind(offset)
                .fetch_all(pool)
                .await?;
            let total = sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE role = 'rider'")
                .fetch_one(pool)
                .await?;
            Ok((items, total))
        })
    }

    /// The names of the rider accounts among `ids` (at most a page of them), by name.
    pub async fn rider_names(&self, ids: &[Uuid]) -> Result<Vec<(Uuid, String)>, sqlx::Error> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let marks: Vec<String> = (1..=ids.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT id, name FROM users WHERE role = 'rider' AND id IN ({}) ORDER BY name, id",
            marks.join(", ")
        );
        on_pool!(self, |pool| {
            let mut query = sqlx::query_as(&sql);
            for id in ids {
                query = query.bind(*id);
            }
            query.fetch_all(pool).await
        })
    }
}
