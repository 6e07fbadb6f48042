//! What rider sessions read from storage (once per connect), and the GPS trail writer
//! (batched, off the hot path).

use std::time::Duration;

use medify_actors::geo::Point;
use medify_actors::ports::{
    BoxFuture, JournalError, OrderJournal, OrderRecord, RiderDirectory, TrailSink,
};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::Store;
use crate::batch::batch_writer;
use crate::on_pool;

impl RiderDirectory for Store {
    fn active_order(
        &self,
        rider: Uuid,
    ) -> BoxFuture<'_, Result<Option<OrderRecord>, JournalError>> {
        Box::pin(async move {
            let id: Option<Uuid> = on_pool!(self, |pool| {
                sqlx::query_scalar(
                    "SELECT id FROM orders WHERE rider_id = $1 AND status IN ('assigned', 'picked_up') \
                     ORDER BY created_at DESC LIMIT 1",
                )
                .bind(rider)
                .fetch_optional(pool)
                .await
                .map_err(|e| JournalError(e.to_string()))?
            });
            match id {
                Some(id) => self.load(id).await,
                None => Ok(None),
            }
        })
    }

    fn order_for_rider(
        &self,
        order: Uuid,
    ) -> BoxFuture<'_, Result<Option<serde_json::Value>, JournalError>> {
        Box::pin(async move {
            let view = self
                .order_view(order)
                .await
                .map_err(|e| JournalError(e.to_string()))?;
            // The rider's view: without the delivery code.
            Ok(view.map(|v| serde_json::to_value(v).unwrap_or_default()))
        })
    }
}

/// One sampled point.
#[derive(Debug, Clone, Copy)]
struct TrailPoint {
    order_id: Uuid,
    rider_id: Uuid,
    at: Point,
    ts_ms: i64,
}

/// Points waiting to be written before new ones are dropped.
const QUEUE: usize = 50_000;
/// Points per insert batch.
const BATCH: usize = 500;

/// Collects trail points from sessions and writes them in batches ([`batch_writer`]).
pub struct TrailWriter {
    tx: mpsc::Sender<TrailPoint>,
}

impl TrailWriter {
    /// Starts the writer task on the current runtime.
    pub fn start(store: Store) -> Self {
        let tx = batch_writer(
            (QUEUE, BATCH, TRAIL_LINGER),
            move |points: Vec<TrailPoint>| {
                let store = store.clone();
                async move {
                    if let Err(e) = store.insert_trail(&points).await {
                        tracing::warn!(error = %e, points = points.len(), "trail points not written");
                    }
                }
            },
        );
        Self { tx }
    }
}

/// How long a trail point waits for the ones behind it. A write per fix (a transaction
/// each, three round trips on PostgreSQL) was most of what a fix cost a cluster node
/// beyond the fan-out itself; a quarter of a second turns a thousand fixes a second into
/// four writes, and a trail is read long after.
const TRAIL_LINGER: Duration = Duration::from_millis(250);

impl TrailSink for TrailWriter {
    fn record(&self, order_id: Uuid, rider_id: Uuid, at: Point, ts_ms: i64) {
        if self
            .tx
            .try_send(TrailPoint {
                order_id,
                rider_id,
                at,
                ts_ms,
            })
            .is_err()
        {
            tracing::debug!("trail queue full: point dropped");
        }
    }
}

impl Store {
    async fn insert_trail(&self, points: &[TrailPoint]) -> Result<(), sqlx::Error> {
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            for p in points {
                sqlx::query("INSERT INTO rider_trail (order_id, rider_id, lat, lng, ts) VALUES ($1, $2, $3, $4, $5)")
                    .bind(p.order_id)
                    .bind(p.rider_id)
                    .bind(p.at.lat())
                    .bind(p.at.lng())
                    .bind(p.ts_ms)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }
}
