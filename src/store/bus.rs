//! The embedded bus's journal (`bus_events`) and each durable handler's cursor
//! (`bus_cursors`): see [`crate::bus::InProcessBus`].

use medify_actors::ports::Event;
use sqlx::types::Json;

use super::{now, Store};
use crate::on_pool;

impl Store {
    /// Appends `event` unless an event with its id is already there (a relayed repeat).
    pub async fn append_bus_event(&self, event: &Event) -> Result<(), sqlx::Error> {
        let at = now();
        on_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO bus_events (event_id, body, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (event_id) DO NOTHING",
            )
            .bind(event.id)
            .bind(Json(event))
            .bind(at)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Where `handler` stands: the last sequence number it finished. A handler seen for
    /// the first time starts from the beginning of what is kept.
    pub async fn bus_cursor(&self, handler: &str) -> Result<i64, sqlx::Error> {
        let at = now();
        on_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO bus_cursors (handler, seq, updated_at) VALUES ($1, 0, $2) \
                 ON CONFLICT (handler) DO NOTHING",
            )
            .bind(handler)
            .bind(at)
            .execute(pool)
            .await?;
            sqlx::query_scalar("SELECT seq FROM bus_cursors WHERE handler = $1")
                .bind(handler)
                .fetch_one(pool)
                .await
        })
    }

    /// Up to `limit` events after `after`, oldest first. An unreadable row (written by a
    /// newer version, say) is skipped with a warning rather than stopping the handler.
    pub async fn bus_events_after(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<(i64, Event)>, sqlx::Error> {
        let rows: Vec<(i64, Json<serde_json::Value>)> = on_pool!(self, |pool| {
            sqlx::query_as("SELECT seq, body FROM bus_events WHERE seq > $1 ORDER BY seq LIMIT $2")
                .bind(after)
                .bind(limit)
                .fetch_all(pool)
                .await
        })?;
        Ok(rows
            .into_iter()
            .filter_map(|(seq, Json(body))| match serde_json::from_value(body) {
                Ok(event) => Some((seq, event)),
                Err(e) => {
                    tracing::warn!(seq, error = %e, "unreadable bus event skipped");
                    None
                }
            })
            .collect())
    }

    /// Records that `handler` finished every event up to `seq` (never moves it back).
    pub async fn advance_bus_cursor(&self, handler: &str, seq: i64) -> Result<(), sqlx::Error> {
        let at = now();
        on_pool!(self, |pool| {
            sqlx::query(
                "UPDATE bus_cursors SET seq = $2, updated_at = $3 WHERE handler = $1 AND seq < $2",
            )
            .bind(handler)
            .bind(seq)
            .bind(at)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Deletes the events every one of `handlers` has finished; returns how many.
    pub async fn trim_bus_events(&self, handlers: &[&str]) -> Result<u64, sqlx::Error> {
        let mut lowest = i64::MAX;
        for handler in handlers {
            lowest = lowest.min(self.bus_cursor(handler).await?);
        }
        if handlers.is_empty() {
            return Ok(0);
        }
        let done = on_pool!(self, |pool| {
            sqlx::query("DELETE FROM bus_events WHERE seq <= $1")
                .bind(lowest)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(done)
    }
}
