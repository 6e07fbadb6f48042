//! The offers' record: every offer the matcher makes and how it ended, written in batches
//! off the matcher's thread, and read back for an order's history and for the riders who
//! already refused an order that comes back after a restart.

use chrono::{DateTime, Utc};
use medify_actors::ports::{BoxFuture, JournalError, OfferEvent, OfferLog};
use serde::Serialize;
use tokio::sync::mpsc;
use utoipa::ToSchema;
use uuid::Uuid;

use super::Store;
use crate::batch::batch_writer;
use crate::on_pool;

/// Events waiting to be written; beyond this they are dropped with a warning (the matcher
/// is never held up by storage).
const QUEUE: usize = 20_000;
const BATCH: usize = 500;

/// One offer as stored.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OfferRow {
    pub id: Uuid,
    pub rider_id: Uuid,
    /// `pending`, `accepted`, `rejected`, `expired` or `withdrawn`.
    pub status: String,
    pub distance_m: i64,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub responded_at: Option<DateTime<Utc>>,
}

fn at(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// The matcher's [`OfferLog`] over the store.
pub struct OfferWriter {
    store: Store,
    tx: mpsc::Sender<OfferEvent>,
}

impl OfferWriter {
    /// Starts the writer task on the current runtime.
    pub fn start(store: Store) -> Self {
        let writer = store.clone();
        // At once: the matcher reads refusals back when an order comes to it again.
        let tx = batch_writer(
            (QUEUE, BATCH, std::time::Duration::ZERO),
            move |events: Vec<OfferEvent>| {
                let store = writer.clone();
                async move {
                    if let Err(e) = store.write_offer_events(&events).await {
                        tracing::warn!(error = %e, events = events.len(), "offer events not written");
                    }
                }
            },
        );
        Self { store, tx }
    }
}

impl OfferLog for OfferWriter {
    fn record(&self, event: OfferEvent) {
        if self.tx.try_send(event).is_err() {
            tracing::warn!(?event, "offer queue full: event not recorded");
        }
    }

    fn refused_by(&self, order_id: Uuid) -> BoxFuture<'_, Result<Vec<Uuid>, JournalError>> {
        Box::pin(async move {
            let riders: Vec<Uuid> = on_pool!(&self.store, |pool| {
                // And riders who accepted it but let the pickup deadline pass (the journal
                // names them as the actor of `pickup_timeout`).
                sqlx::query_scalar(
                    "SELECT rider_id FROM offers \
                     WHERE order_id = $1 AND status IN ('rejected', 'expired') \
                     UNION \
                     SELECT actor_id FROM order_events \
                     WHERE order_id = $1 AND event = 'pickup_timeout' AND actor_id IS NOT NULL",
                )
                .bind(order_id)
                .fetch_all(pool)
                .await
                .map_err(|e| JournalError(e.to_string()))?
            });
            Ok(riders)
        })
    }
}

impl Store {
    /// Writes a batch in order, in one transaction: offers made, then how they ended.
    async fn write_offer_events(&self, events: &[OfferEvent]) -> Result<(), sqlx::Error> {
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            for event in events {
                match *event {
                    OfferEvent::Made {
                        offer_id,
                        order_id,
                        rider_id,
                        distance_m,
                        at_ms,
                        expires_ms,
                    } => {
                        sqlx::query(
                            "INSERT INTO offers (id, order_id, rider_id, status, distance_m, created_at, expires_at) \
                             VALUES ($1, $2, $3, 'pending', $4, $5, $6) ON CONFLICT (id) DO NOTHING",
                        )
                        .bind(offer_id)
                        .bind(order_id)
                        .bind(rider_id)
                        .bind(distance_m)
                        .bind(at(at_ms))
                        .bind(at(expires_ms))
                        .execute(&mut *tx)
                        .await?;
                    }
                    OfferEvent::Ended {
                        offer_id,
                        end,
                        at_ms,
                    } => {
                        sqlx::query(
                            "UPDATE offers SET status = $2, responded_at = $3 \
                             WHERE id = $1 AND status = 'pending'",
                        )
                        .bind(offer_id)
                        .bind(end.as_str())
                        .bind(at(at_ms))
                        .execute(&mut *tx)
                        .await?;
                    }
                }
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Every offer of an order, oldest first.
    pub async fn offers_of(&self, order_id: Uuid) -> Result<Vec<OfferRow>, sqlx::Error> {
        type Row = (
            Uuid,
            Uuid,
            String,
            i64,
            DateTime<Utc>,
            DateTime<Utc>,
            Option<DateTime<Utc>>,
        );
        let rows: Vec<Row> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT id, rider_id, status, CAST(distance_m AS BIGINT), created_at, expires_at, responded_at \
                 FROM offers WHERE order_id = $1 ORDER BY created_at, id",
            )
            .bind(order_id)
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(
                |(id, rider_id, status, distance_m, created_at, expires_at, responded_at)| {
                    OfferRow {
                        id,
                        rider_id,
                        status,
                        distance_m,
                        created_at,
                        expires_at,
                        responded_at,
                    }
                },
            )
            .collect())
    }
}
