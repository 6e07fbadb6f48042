//! The event bus: where order actors announce what happened, and who listens.
//!
//! Two implementations of the `EventBus` port:
//! - [`InProcessBus`] (default): a bounded queue drained by one task that hands each event
//!   to every handler in turn (retrying a failing handler with back-off).
//! - [`redis::RedisBus`] (when `REDIS_URL` is set): events go to a Redis Stream; each
//!   durable handler reads through its own consumer group, acknowledges after handling, and
//!   re-claims entries a dead consumer left pending, so any node may handle any event, once
//!   per group, at least once overall. Handlers are idempotent (notifications dedupe on the
//!   event id), which makes "at least once" safe.
//!
//! Node-local handlers (the metrics gauges) are called directly on publish in both cases.

pub mod redis;

use std::sync::Arc;
use std::time::Duration;

use medify_actors::ports::{BoxFuture, BusError, Event, EventBus};
use tokio::sync::mpsc;

/// Something that reacts to events. Must be idempotent: it may see an event twice.
pub trait EventHandler: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    fn handle<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, anyhow::Result<()>>;
}

/// Tries a handler up to `attempts` times with doubling back-off.
pub async fn handle_with_retry(
    handler: &dyn EventHandler,
    event: &Event,
    attempts: u32,
) -> anyhow::Result<()> {
    let mut delay = Duration::from_millis(50);
    let mut tries = 0;
    loop {
        tries += 1;
        match handler.handle(event).await {
            Ok(()) => return Ok(()),
            Err(e) if tries >= attempts => return Err(e),
            Err(e) => {
                tracing::warn!(handler = handler.name(), event_id = %event.id, error = %e, tries, "event handler failed, retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Events queued in process before publishers wait.
const QUEUE: usize = 10_000;

/// The in-process bus.
pub struct InProcessBus {
    tx: mpsc::Sender<Event>,
    local: Vec<Arc<dyn EventHandler>>,
}

impl InProcessBus {
    /// Starts the dispatch task on the current runtime. `local` handlers run on publish,
    /// `durable` ones on the dispatch task.
    pub fn start(local: Vec<Arc<dyn EventHandler>>, durable: Vec<Arc<dyn EventHandler>>) -> Self {
        let (tx, mut rx) = mpsc::channel::<Event>(QUEUE);
        actix_web::rt::spawn(async move {
            while let Some(event) = rx.recv().await {
                for handler in &durable {
                    if let Err(e) = handle_with_retry(handler.as_ref(), &event, 5).await {
                        tracing::error!(handler = handler.name(), event_id = %event.id, error = %e, "event handler gave up");
                    }
                }
            }
        });
        Self { tx, local }
    }
}

/// Runs node-local handlers for an event.
async fn run_local(local: &[Arc<dyn EventHandler>], event: &Event) {
    for handler in local {
        if let Err(e) = handler.handle(event).await {
            tracing::warn!(handler = handler.name(), error = %e, "local event handler failed");
        }
    }
}

impl EventBus for InProcessBus {
    fn publish(&self, event: Event) -> BoxFuture<'_, Result<(), BusError>> {
        Box::pin(async move {
            run_local(&self.local, &event).await;
            self.tx
                .send(event)
                .await
                .map_err(|_| BusError("the event dispatcher has stopped".into()))
        })
    }
}

/// Republishes journal entries the bus never acknowledged (a crash between the journal
/// write and the publish, or a bus outage): once at start-up for everything, then every
/// 30 s for entries older than 30 s. Event ids are stable, so handlers deduplicate.
pub fn start_relay(store: crate::store::Store, bus: Arc<dyn EventBus>) {
    actix_web::rt::spawn(async move {
        let mut first = true;
        loop {
            let age = if first {
                chrono::Duration::zero()
            } else {
                chrono::Duration::seconds(30)
            };
            let before = chrono::Utc::now() - age;
            match relay_once(&store, bus.as_ref(), before).await {
                Ok(0) => {}
                Ok(n) => tracing::warn!(events = n, "relayed events the bus had not acknowledged"),
                Err(e) => tracing::warn!(error = %e, "event relay failed; retrying later"),
            }
            first = false;
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
    });
}

/// One relay pass; returns how many events were republished.
pub async fn relay_once(
    store: &crate::store::Store,
    bus: &dyn EventBus,
    before: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<usize> {
    let mut total = 0;
    loop {
        let batch = store.unpublished_events(before, 500).await?;
        if batch.is_empty() {
            return Ok(total);
        }
        for (seq, event) in batch {
            let order_id = event.order_id.unwrap_or_default();
            bus.publish(event).await.map_err(|e| anyhow::anyhow!(e))?;
            store.mark_event_published(order_id, seq).await?;
            total += 1;
        }
    }
}
