//! The outbox rule, written once: a journal entry's events are published, then the entry
//! is marked published.
//! Whatever fails is left unmarked for the relay, which publishes it again with the same
//! id (handlers deduplicate), so a crash or a bus outage between the two loses nothing.

use uuid::Uuid;

use crate::ports::{BusError, Event, EventBus, JournalError, OrderJournal};

/// Which half of publish-and-mark failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OutboxError {
    #[error("not published: {}", .0 .0)]
    Publish(BusError),
    #[error("published, not marked: {}", .0 .0)]
    Mark(JournalError),
}

/// Publishes `events` (those of journal entry `seq` of order `order_id`, in order) and
/// marks the entry published.
pub async fn publish_and_mark(
    bus: &dyn EventBus,
    journal: &dyn OrderJournal,
    order_id: Uuid,
    seq: i32,
    events: Vec<Event>,
) -> Result<(), OutboxError> {
    for event in events {
        bus.publish(event).await.map_err(OutboxError::Publish)?;
    }
    journal
        .mark_published(order_id, seq)
        .await
        .map_err(OutboxError::Mark)
}

/// [`publish_and_mark`] for a writer that goes on whatever happens: a failure is logged,
/// and the relay will send the event again.
pub async fn announce(
    bus: &dyn EventBus,
    journal: &dyn OrderJournal,
    order_id: Uuid,
    seq: i32,
    events: Vec<Event>,
) {
    match publish_and_mark(bus, journal, order_id, seq, events).await {
        Ok(()) => {}
        Err(e @ OutboxError::Publish(_)) => {
            tracing::error!(%order_id, seq, error = %e, "event not published; the relay will retry")
        }
        Err(e @ OutboxError::Mark(_)) => {
            tracing::warn!(%order_id, seq, error = %e, "event not marked published; the relay will send it again")
        }
    }
}
