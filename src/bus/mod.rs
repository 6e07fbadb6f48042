//! The event bus: where order actors announce what happened, and who listens.
//!
//! Two implementations of the `EventBus` port:
//! - [`InProcessBus`] (default): publishing appends the event to a journal in the database
//!   (`bus_events`); each durable handler reads the journal from its own cursor, as a Redis
//!   consumer group would, and moves the cursor only once it has finished with an event.
//!   So `publish` never waits on a handler (a relay that never answers slows only its own
//!   handler), a crash replays what was not finished, and a failing handler is retried
//!   with back-off for as long as it fails, never dropping the event.
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

use medify_actors::ports::{BoxFuture, BusError, Event, EventBus, EventKind};

/// Something that reacts to events. Must be idempotent: it may see an event twice.
pub trait EventHandler: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    /// Whether the handler may act on events of this kind. The embedded bus journals an
    /// event only if some durable handler wants it: nothing durable listens to a rider
    /// coming online, so 10 000 connects write nothing.
    fn wants(&self, _kind: EventKind) -> bool {
        true
    }
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

/// Events a handler reads from the journal at a time.
const BATCH: i64 = 100;
/// The longest pause between two tries of a failing handler.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A handler with nothing to do looks at the journal at least this often (events another
/// process appended to a shared database do not wake it).
const IDLE_LOOK: Duration = Duration::from_secs(5);

/// The embedded bus: a journal in the database and one reader per durable handler.
pub struct InProcessBus {
    store: crate::store::Store,
    local: Vec<Arc<dyn EventHandler>>,
    /// The durable handlers, asked whether an event is worth journaling.
    durable: Vec<Arc<dyn EventHandler>>,
    /// Bumped on every append, to wake the readers.
    appended: tokio::sync::watch::Sender<u64>,
}

impl InProcessBus {
    /// Starts one reader task per `durable` handler on the current runtime. `local`
    /// handlers run on publish.
    pub fn start(
        store: crate::store::Store,
        local: Vec<Arc<dyn EventHandler>>,
        durable: Vec<Arc<dyn EventHandler>>,
    ) -> Self {
        let (appended, _) = tokio::sync::watch::channel(0u64);
        let names: Arc<[&'static str]> = durable.iter().map(|h| h.name()).collect();
        for handler in durable.iter().cloned() {
            let reader = JournalReader {
                store: store.clone(),
                handler,
                appended: appended.subscribe(),
                everyone: names.clone(),
            };
            actix_web::rt::spawn(reader.run());
        }
        Self {
            store,
            local,
            durable,
            appended,
        }
    }
}

/// One durable handler working through the journal from its cursor.
struct JournalReader {
    store: crate::store::Store,
    handler: Arc<dyn EventHandler>,
    appended: tokio::sync::watch::Receiver<u64>,
    /// Every durable handler's name: the journal is trimmed below the slowest.
    everyone: Arc<[&'static str]>,
}

impl JournalReader {
    async fn run(mut self) {
        let name = self.handler.name();
        let mut cursor = loop {
            match self.store.bus_cursor(name).await {
                Ok(seq) => break seq,
                Err(e) => {
                    tracing::warn!(handler = name, error = %e, "bus cursor unreadable; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        };
        loop {
            let batch = match self.store.bus_events_after(cursor, BATCH).await {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::warn!(handler = name, error = %e, "bus journal unreadable; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            if batch.is_empty() {
                // Mark what was seen before looking, so an append in between still wakes.
                self.appended.borrow_and_update();
                let _ = tokio::time::timeout(IDLE_LOOK, self.appended.changed()).await;
                continue;
            }
            for (seq, event) in batch {
                self.handle_until_done(&event).await;
                cursor = seq;
            }
            // Once per batch: a crash replays at most a batch of finished events, which
            // handlers (idempotent) see again without effect.
            if let Err(e) = self.store.advance_bus_cursor(name, cursor).await {
                tracing::warn!(handler = name, error = %e, "bus cursor not saved");
            }
            let names: Vec<&str> = self.everyone.to_vec();
            if let Err(e) = self.store.trim_bus_events(&names).await {
                tracing::debug!(error = %e, "bus journal not trimmed");
            }
        }
    }

    /// Retries the handler with doubling back-off (capped at [`MAX_BACKOFF`]) until it
    /// succeeds: a handler that cannot finish an event holds its own reader, never the
    /// publishers and never the other handlers.
    async fn handle_until_done(&self, event: &Event) {
        let mut delay = Duration::from_millis(100);
        let mut tries: u64 = 0;
        loop {
            tries += 1;
            match self.handler.handle(event).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(handler = self.handler.name(), event_id = %event.id, error = %e, tries, "event handler failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(MAX_BACKOFF);
                }
            }
        }
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
            if !self.durable.iter().any(|h| h.wants(event.kind)) {
                return Ok(());
            }
            self.store
                .append_bus_event(&event)
                .await
                .map_err(|e| BusError(format!("the event journal refused the event: {e}")))?;
            self.appended.send_modify(|n| *n = n.wrapping_add(1));
            Ok(())
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
        for (order_id, seq, events) in batch {
            medify_actors::outbox::publish_and_mark(bus, store, order_id, seq, events).await?;
            total += 1;
        }
    }
}
