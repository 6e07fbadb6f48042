//! Notifications: one row per customer-facing event, written once per event however often
//! the event is delivered (the unique `dedupe_key`), then marked sent or failed.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::types::Json;
use sqlx::FromRow;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{now, Store};
use crate::on_pool;

/// A notification as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema, FromRow)]
pub struct Notification {
    pub id: Uuid,
    #[sqlx(rename = "type")]
    #[serde(rename = "type")]
    pub kind: String,
    #[schema(value_type = Object)]
    pub payload: Json<serde_json::Value>,
    /// `pending`, `sent` or `failed`.
    pub status: String,
    pub created_at: DateTime<Utc>,
}

impl Store {
    /// Writes a pending notification unless one with `dedupe_key` exists; returns the new
    /// row's id, or `None` if it was a duplicate.
    pub async fn insert_notification(
        &self,
        user_id: Uuid,
        kind: &str,
        payload: &serde_json::Value,
        dedupe_key: &str,
    ) -> Result<Option<Uuid>, sqlx::Error> {
        let id = Uuid::now_v7();
        let at = now();
        let n = on_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO notifications (id, user_id, type, payload, status, attempts, dedupe_key, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, 'pending', 0, $5, $6, $6) ON CONFLICT (dedupe_key) DO NOTHING",
            )
            .bind(id)
            .bind(user_id)
            .bind(kind)
            .bind(Json(payload))
            .bind(dedupe_key)
            .bind(at)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok((n == 1).then_some(id))
    }

    /// The notification written under `dedupe_key` if it is still `pending` (a delivery
    /// cut short by a crash), to be sent now.
    pub async fn pending_notification(
        &self,
        dedupe_key: &str,
    ) -> Result<Option<Uuid>, sqlx::Error> {
        on_pool!(self, |pool| {
            sqlx::query_scalar(
                "SELECT id FROM notifications WHERE dedupe_key = $1 AND status = 'pending'",
            )
            .bind(dedupe_key)
            .fetch_optional(pool)
            .await
        })
    }

    /// Records a delivery attempt: `sent`, or `failed` once out of retries, else `pending`.
    pub async fn mark_notification(
        &self,
        id: Uuid,
        status: &str,
        attempts: i32,
    ) -> Result<(), sqlx::Error> {
        let at = now();
        on_pool!(self, |pool| {
            sqlx::query("UPDATE notifications SET status = $2, attempts = $3, updated_at = $4 WHERE id = $1")
                .bind(id)
                .bind(status)
                .bind(attempts)
                .bind(at)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// A page of a user's notifications, newest first, and how many there are.
    pub async fn notifications_page(
        &self,
        user_id: Uuid,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<Notification>, i64), sqlx::Error> {
        on_pool!(self, |pool| {
            let items = sqlx::query_as(
                "SELECT id, type, payload, status, created_at FROM notifications WHERE user_id = $1 \
                 ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3",
            )
            .bind(user_id)
            .bind(limit)
            .bind(offset)
            .fetch_all(pool)
            .await?;
            let total = sqlx::query_scalar("SELECT COUNT(*) FROM notifications WHERE user_id = $1")
                .bind(user_id)
                .fetch_one(pool)
                .await?;
            Ok((items, total))
        })
    }

    /// How many notifications carry `dedupe_key` (tests of exactly-once writing).
    pub async fn count_notifications(&self, dedupe_key: &str) -> Result<i64, sqlx::Error> {
        on_pool!(self, |pool| {
            sqlx::query_scalar("SELECT COUNT(*) FROM notifications WHERE dedupe_key = $1")
                .bind(dedupe_key)
                .fetch_one(pool)
                .await
        })
    }
}
