//! Users: accounts of every role, and the rider profile created with a rider account.

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
    pub phone: Option<&'a str>,
    pub password_hash: Option<&'a str>,
    pub role: Role,
    pub pharmacy_id: Option<Uuid>,
}

const USER_COLUMNS: &str = "id, name, email, phone, role, pharmacy_id";

impl Store {
    /// Inserts a user (and, for riders, their rider profile) in one transaction.
    /// A duplicate email or phone is a unique violation; see [`super::unique_violation`].
    pub async fn insert_user(&self, new: &NewUser<'_>) -> Result<User, sqlx::Error> {
        let id = Uuid::now_v7();
        let at: DateTime<Utc> = now();
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO users (id, name, email, phone, password_hash, role, pharmacy_id, \
                 created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
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

    pub async fn user_by_phone(&self, phone: &str) -> Result<Option<User>, sqlx::Error> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE phone = $1");
        on_pool!(self, |pool| {
            sqlx::query_as(&sql).bind(phone).fetch_optional(pool).await
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

    /// The customer with this phone, created on first use (OTP sign-in).
    pub async fn user_for_phone_login(&self, phone: &str) -> Result<User, sqlx::Error> {
        if let Some(user) = self.user_by_phone(phone).await? {
            return Ok(user);
        }
        let at = now();
        on_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO users (id, name, phone, role, created_at, updated_at) \
                 VALUES ($1, $2, $2, 'customer', $3, $3) ON CONFLICT (phone) DO NOTHING",
            )
            .bind(Uuid::now_v7())
            .bind(phone)
            .bind(at)
            .execute(pool)
            .await?;
        });
        // Whoever won a concurrent first sign-in, the row exists now.
        self.user_by_phone(phone)
            .await?
            .ok_or(sqlx::Error::RowNotFound)
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
}
