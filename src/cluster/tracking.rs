//! Tracking across nodes: a rider's positions reach watchers connected to any node.
//!
//! - A node with watchers of an order subscribes to the order's channel `track:<order>`
//!   for as long as it has them, and keeps a marker `track:watched:<order>` alive (set
//!   every [`MARK_EVERY`], expiring after [`MARK_TTL`]).
//! - The node holding the rider's socket publishes each of the rider's frames for that
//!   order on the channel, but only while the marker exists (checked at most once per
//!   [`MARKER_CACHE`] per order): nobody watching, nothing published.
//! - Frames are loss-tolerant (the next position replaces a lost one), so they travel over
//!   pub/sub, in order from one publisher task that pipelines the frames of a few
//!   milliseconds together (`MEDIFY_TRACKING_BATCH_MS`); the watcher's node fans them out
//!   with the same slots and conflation as its own riders' frames. Statuses do not travel
//!   here: they come from the order's journal over the event bus, to every node.
//! - Redis restarts and killed pub/sub clients end the subscription stream; the listener
//!   reconnects with back-off and subscribes again to every order watched at that moment
//!   (a client that reconnects without resubscribing is a known trap of pub/sub adapters).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use medify_actors::tracking::{Relay, TrackFrame, Watchers};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::batch::next_batch;
use crate::redis::Redis;

/// How often a watching node renews its markers, and how long one outlives its renewal.
const MARK_EVERY: Duration = Duration::from_secs(5);
const MARK_TTL: Duration = Duration::from_secs(15);
/// How long a publisher trusts what it learnt about a marker.
const MARKER_CACHE: Duration = Duration::from_secs(1);
/// Frames waiting to be published; beyond it the newest are dropped (counted in the log):
/// positions are replaced by the next anyway.
const OUTBOX: usize = 4096;
/// Frames published in one round trip at most.
const PUBLISH_BATCH: usize = 512;

/// A frame on the wire between nodes.
#[derive(Debug, Deserialize)]
struct Carried {
    /// The application instance that published it (it does not take its own frames back).
    origin: Uuid,
    frame: TrackFrame,
}

/// [`Carried`] as it is written, borrowing the frame.
#[derive(Serialize)]
struct CarriedRef<'a> {
    origin: Uuid,
    frame: &'a TrackFrame,
}

enum Watch {
    Start(Uuid),
    Stop(Uuid),
}

/// The [`Relay`] the node's watchers use; starts its tasks on creation.
pub struct RedisRelay {
    outbox: mpsc::Sender<(Uuid, TrackFrame)>,
    watch: mpsc::UnboundedSender<Watch>,
}

fn channel(redis: &Redis, order: Uuid) -> String {
    redis.key(&format!("track:{order}"))
}

fn marker(redis: &Redis, order: Uuid) -> String {
    redis.key(&format!("track:watched:{order}"))
}

impl RedisRelay {
    /// Connects `watchers` to the other nodes' through `redis`; frames wait up to `linger`
    /// to be published together.
    pub fn start(redis: Redis, watchers: Watchers, instance: Uuid, linger: Duration) -> Arc<Self> {
        let (outbox, frames) = mpsc::channel(OUTBOX);
        let (watch, watch_events) = mpsc::unbounded_channel();
        actix_web::rt::spawn(publish(redis.clone(), frames, instance, linger));
        actix_web::rt::spawn(listen(redis, watchers, watch_events, instance));
        Arc::new(Self { outbox, watch })
    }
}

impl Relay for RedisRelay {
    fn outbound(&self, order: Uuid, frame: &TrackFrame) {
        if self.outbox.try_send((order, frame.clone())).is_err() {
            tracing::debug!(%order, "tracking relay full: a frame for other nodes dropped");
        }
    }

    fn watching(&self, order: Uuid, watched: bool) {
        let _ = self.watch.send(if watched {
            Watch::Start(order)
        } else {
            Watch::Stop(order)
        });
    }
}

/// Publishes this node's riders' frames for orders watched elsewhere, in order.
///
/// A frame waits up to `linger` (`MEDIFY_TRACKING_BATCH_MS`) for the frames sent after it,
/// and they go out together: one pipeline of `EXISTS` for the markers not known lately, one
/// pipeline of `PUBLISH`es (a single connection keeps their order). Per frame, that saves the wake-up of this task,
/// a write and a read on the Redis socket, and on the watchers' nodes a read of their
/// subscription socket (Redis flushes a pipeline's messages together): most of what a
/// cluster spent per fix beyond one node (`FANOUT_CLUSTER=1 cargo bench --bench fanout`).
async fn publish(
    redis: Redis,
    mut frames: mpsc::Receiver<(Uuid, TrackFrame)>,
    instance: Uuid,
    linger: Duration,
) {
    let mut known: HashMap<Uuid, (bool, Instant)> = HashMap::new();
    let mut batch = Vec::with_capacity(PUBLISH_BATCH);
    while next_batch(&mut frames, &mut batch, PUBLISH_BATCH, linger).await {
        if let Err(e) = publish_batch(&redis, &mut known, &batch, instance).await {
            tracing::debug!(error = %e, frames = batch.len(), "tracking frames were not relayed");
        }
        batch.clear();
        if known.len() > 100_000 {
            known.retain(|_, (_, at)| at.elapsed() < MARKER_CACHE);
        }
    }
}

/// Publishes `batch` (frames in the order they were sent) for the orders watched elsewhere.
async fn publish_batch(
    redis: &Redis,
    known: &mut HashMap<Uuid, (bool, Instant)>,
    batch: &[(Uuid, TrackFrame)],
    instance: Uuid,
) -> redis::RedisResult<()> {
    let mut conn = redis.connection().await?;
    let mut unknown: Vec<Uuid> = batch
        .iter()
        .map(|(order, _)| *order)
        .filter(|order| {
            known
                .get(order)
                .is_none_or(|(_, at)| at.elapsed() >= MARKER_CACHE)
        })
        .collect();
    unknown.sort_unstable();
    unknown.dedup();
    if !unknown.is_empty() {
        let mut pipe = redis::pipe();
        for order in &unknown {
            pipe.cmd("EXISTS").arg(marker(redis, *order));
        }
        let watched: Vec<bool> = pipe.query_async(&mut conn).await?;
        let now = Instant::now();
        for (order, w) in unknown.into_iter().zip(watched) {
            known.insert(order, (w, now));
        }
    }
    let mut pipe = redis::pipe();
    let mut any = false;
    for (order, frame) in batch {
        if !known.get(order).is_some_and(|(w, _)| *w) {
            continue;
        }
        let payload = serde_json::to_string(&CarriedRef {
            origin: instance,
            frame,
        })
        .unwrap_or_default();
        pipe.cmd("PUBLISH")
            .arg(channel(redis, *order))
            .arg(payload)
            .ignore();
        any = true;
    }
    if any {
        pipe.query_async::<()>(&mut conn).await?;
    }
    Ok(())
}

/// Subscribes to the orders this node watches and hands their frames to local watchers;
/// renews the markers; reconnects and resubscribes after any Redis failure.
async fn listen(
    redis: Redis,
    watchers: Watchers,
    mut events: mpsc::UnboundedReceiver<Watch>,
    instance: Uuid,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match follow(&redis, &watchers, &mut events, instance).await {
            Ok(()) => return, // the node is shutting down
            Err(e) => {
                tracing::warn!(error = %e, "tracking relay: Redis error; resubscribing");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

async fn follow(
    redis: &Redis,
    watchers: &Watchers,
    events: &mut mpsc::UnboundedReceiver<Watch>,
    instance: Uuid,
) -> redis::RedisResult<()> {
    let (mut sink, mut stream) = redis.client().get_async_pubsub().await?.split();
    // Everything watched now, whatever happened while disconnected.
    for order in watchers.watched() {
        sink.subscribe(channel(redis, order)).await?;
    }
    mark(redis, &watchers.watched()).await?;
    let mut renew = tokio::time::interval(MARK_EVERY);
    loop {
        tokio::select! {
            message = stream.next() => {
                let Some(message) = message else {
                    return Err(redis::RedisError::from((
                        redis::ErrorKind::Io,
                        "subscription ended",
                    )));
                };
                deliver(watchers, &message, instance);
            }
            event = events.recv() => match event {
                None => return Ok(()),
                Some(Watch::Start(order)) => {
                    sink.subscribe(channel(redis, order)).await?;
                    mark(redis, &[order]).await?;
                }
                Some(Watch::Stop(order)) => {
                    // Watched again meanwhile (a quick reconnect): stay subscribed.
                    if watchers.count(order) == 0 {
                        sink.unsubscribe(channel(redis, order)).await?;
                    }
                }
            },
            _ = renew.tick() => mark(redis, &watchers.watched()).await?,
        }
    }
}

fn deliver(watchers: &Watchers, message: &redis::Msg, instance: Uuid) {
    let Ok(payload) = message.get_payload::<String>() else {
        return;
    };
    let order = message
        .get_channel_name()
        .rsplit(':')
        .next()
        .and_then(|id| Uuid::parse_str(id).ok());
    let (Some(order), Ok(carried)) = (order, serde_json::from_str::<Carried>(&payload)) else {
        tracing::debug!("undecodable tracking frame from another node");
        return;
    };
    if carried.origin == instance {
        return;
    }
    match carried.frame {
        frame @ TrackFrame::RiderLocation { .. } => watchers.location(order, frame),
        frame => watchers.status(order, frame),
    }
}

/// Sets the "watched here" markers of `orders`.
async fn mark(redis: &Redis, orders: &[Uuid]) -> redis::RedisResult<()> {
    if orders.is_empty() {
        return Ok(());
    }
    let mut conn = redis.connection().await?;
    let mut pipe = redis::pipe();
    let ttl = MARK_TTL.as_secs();
    for order in orders {
        pipe.cmd("SET")
            .arg(marker(redis, *order))
            .arg(1)
            .arg("EX")
            .arg(ttl)
            .ignore();
    }
    pipe.query_async::<()>(&mut conn).await
}
