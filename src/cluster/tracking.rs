//! Tracking across nodes: a rider's positions reach watchers connected to any node.
//!
//! - A node with watchers of an order subscribes to the order's channel `track:<order>`
//!   for as long as it has them, and keeps a marker `track:watched:<order>` alive (set
//!   every [`MARK_EVERY`], expiring after [`MARK_TTL`]).
//! - The node holding the rider's socket publishes each of the rider's frames for that
//!   order on the channel, but only while the marker exists (checked at most once per
//!   [`MARKER_CACHE`] per order): nobody watching, nothing published.
//! - Frames are loss-tolerant (the next position replaces a lost one), so they travel over
//!   pub/sub, in order from one publisher task; the watcher's node fans them out with the
//!   same slots and conflation as its own riders' frames. Statuses do not travel here:
//!   they come from the order's journal over the event bus, to every node.
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

use crate::redis::Redis;

/// How often a watching node renews its markers, and how long one outlives its renewal.
const MARK_EVERY: Duration = Duration::from_secs(5);
const MARK_TTL: Duration = Duration::from_secs(15);
/// How long a publisher trusts what it learnt about a marker.
const MARKER_CACHE: Duration = Duration::from_secs(1);
/// Frames waiting to be published; beyond it the newest are dropped (counted in the log):
/// positions are replaced by the next anyway.
const OUTBOX: usize = 4096;

/// A frame on the wire between nodes.
#[derive(Debug, Serialize, Deserialize)]
struct Carried {
    /// The application instance that published it (it does not take its own frames back).
    origin: Uuid,
    frame: TrackFrame,
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
    /// Connects `watchers` to the other nodes' through `redis`.
    pub fn start(redis: Redis, watchers: Watchers, instance: Uuid) -> Arc<Self> {
        let (outbox, frames) = mpsc::channel(OUTBOX);
        let (watch, watch_events) = mpsc::unbounded_channel();
        actix_web::rt::spawn(publish(redis.clone(), frames, instance));
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
async fn publish(redis: Redis, mut frames: mpsc::Receiver<(Uuid, TrackFrame)>, instance: Uuid) {
    let mut known: HashMap<Uuid, (bool, Instant)> = HashMap::new();
    while let Some((order, frame)) = frames.recv().await {
        let sent = async {
            let mut conn = redis.connection().await?;
            let watched = match known.get(&order) {
                Some((w, at)) if at.elapsed() < MARKER_CACHE => *w,
                _ => {
                    let w: bool = redis::cmd("EXISTS")
                        .arg(marker(&redis, order))
                        .query_async(&mut conn)
                        .await?;
                    known.insert(order, (w, Instant::now()));
                    w
                }
            };
            if watched {
                let payload = serde_json::to_string(&Carried {
                    origin: instance,
                    frame,
                })
                .unwrap_or_default();
                redis::cmd("PUBLISH")
                    .arg(channel(&redis, order))
                    .arg(payload)
                    .query_async::<i64>(&mut conn)
                    .await?;
            }
            Ok::<(), redis::RedisError>(())
        };
        if let Err(e) = sent.await {
            tracing::debug!(error = %e, "a tracking frame was not relayed");
        }
        if known.len() > 100_000 {
            known.retain(|_, (_, at)| at.elapsed() < MARKER_CACHE);
        }
    }
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
