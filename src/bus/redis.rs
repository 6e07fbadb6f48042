//! The Redis Streams bus.
//!
//! Publishing is `XADD <prefix>events MAXLEN ~ 100000 * event <json>`. Each durable handler
//! has a consumer group named after it; every node runs one consumer per group (named after
//! the node), which loops:
//! 1. `XAUTOCLAIM` entries idle longer than the claim timeout (their consumer died before
//!    acknowledging) and handles them;
//! 2. `XREADGROUP … >` for new entries, blocking up to a second, and handles them.
//!
//! Each entry is acknowledged (`XACK`) only after its handler succeeded. A handler that
//! keeps failing leaves its entry pending, to be retried on a later claim.
//!
//! Node-local handlers (the tracking sockets' statuses, the order gauge) run on the
//! publishing node at once and, on every other node, from a plain `XREAD` that follows the
//! stream (entries carry their publisher's `origin`, so a node skips its own): a customer
//! watching through one node sees the statuses of an order another node moves.

use std::sync::Arc;
use std::time::Duration;

use medify_actors::ports::{BoxFuture, BusError, Event, EventBus};
use redis::streams::{StreamAutoClaimReply, StreamReadOptions, StreamReadReply};
use redis::AsyncCommands;

use super::{handle_with_retry, run_local, EventHandler};
use crate::redis::Redis;

/// Entries kept in the stream (approximately).
const MAX_LEN: usize = 100_000;

/// One consumer of one group on the events stream.
#[derive(Clone)]
pub struct StreamConsumer {
    redis: Redis,
    stream: String,
    group: String,
    consumer: String,
    blocking: Arc<tokio::sync::OnceCell<redis::aio::ConnectionManager>>,
}

/// An entry read from the stream.
pub type Entry = (String, Event);

fn bus(e: redis::RedisError) -> BusError {
    BusError(e.to_string())
}

fn decode(id: String, map: &std::collections::HashMap<String, redis::Value>) -> Option<Entry> {
    let raw = map.get("event")?;
    let bytes: Vec<u8> = redis::from_redis_value(raw.clone()).ok()?;
    match serde_json::from_slice::<Event>(&bytes) {
        Ok(event) => Some((id, event)),
        Err(e) => {
            tracing::error!(entry = %id, error = %e, "undecodable event on the stream");
            None
        }
    }
}

impl StreamConsumer {
    pub fn new(redis: Redis, group: &str, consumer: &str) -> Self {
        Self {
            stream: redis.key("events"),
            redis,
            group: group.to_owned(),
            consumer: consumer.to_owned(),
            blocking: Arc::new(tokio::sync::OnceCell::new()),
        }
    }

    /// Creates the group (from the start of the stream) if it does not exist.
    pub async fn ensure_group(&self) -> Result<(), BusError> {
        let mut conn = self.redis.connection().await.map_err(bus)?;
        let created: redis::RedisResult<()> = conn
            .xgroup_create_mkstream(&self.stream, &self.group, "0")
            .await;
        match created {
            Ok(()) => Ok(()),
            Err(e) if e.to_string().contains("BUSYGROUP") => Ok(()),
            Err(e) => Err(bus(e)),
        }
    }

    /// New entries for this group, waiting up to `block` for one.
    pub async fn read_new(&self, count: usize, block: Duration) -> Result<Vec<Entry>, BusError> {
        // A blocking read gets its own connection so it never stalls the shared one.
        let mut conn = self
            .blocking
            .get_or_try_init(|| self.redis.dedicated_connection())
            .await
            .map_err(bus)?
            .clone();
        let options = StreamReadOptions::default()
            .group(&self.group, &self.consumer)
            .count(count)
            .block(usize::try_from(block.as_millis()).unwrap_or(1000));
        let reply: Option<StreamReadReply> = conn
            .xread_options(&[&self.stream], &[">"], &options)
            .await
            .map_err(bus)?;
        Ok(reply
            .map(|r| {
                r.keys
                    .into_iter()
                    .flat_map(|k| k.ids)
                    .filter_map(|e| decode(e.id, &e.map))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Takes over entries that another consumer read but has not acknowledged for `idle`.
    pub async fn claim_stale(&self, idle: Duration, count: usize) -> Result<Vec<Entry>, BusError> {
        let mut conn = self.redis.connection().await.map_err(bus)?;
        let reply: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
            .arg(&self.stream)
            .arg(&self.group)
            .arg(&self.consumer)
            .arg(u64::try_from(idle.as_millis()).unwrap_or(u64::MAX))
            .arg("0-0")
            .arg("COUNT")
            .arg(count)
            .query_async(&mut conn)
            .await
            .map_err(bus)?;
        Ok(reply
            .claimed
            .into_iter()
            .filter_map(|e| decode(e.id, &e.map))
            .collect())
    }

    pub async fn ack(&self, id: &str) -> Result<(), BusError> {
        let mut conn = self.redis.connection().await.map_err(bus)?;
        let _: i64 = conn
            .xack(&self.stream, &self.group, &[id])
            .await
            .map_err(bus)?;
        Ok(())
    }

    /// Entries read by this group and not yet acknowledged.
    pub async fn pending(&self) -> Result<usize, BusError> {
        let mut conn = self.redis.connection().await.map_err(bus)?;
        let reply: redis::streams::StreamPendingReply = conn
            .xpending(&self.stream, &self.group)
            .await
            .map_err(bus)?;
        Ok(reply.count())
    }

    /// Handles entries and acknowledges each one that succeeded.
    pub async fn process(&self, handler: &dyn EventHandler, entries: Vec<Entry>) {
        for (id, event) in entries {
            match handle_with_retry(handler, &event, 3).await {
                Ok(()) => {
                    if let Err(e) = self.ack(&id).await {
                        tracing::warn!(entry = %id, error = %e, "could not acknowledge; the entry will be handled again");
                    }
                }
                Err(e) => {
                    tracing::error!(handler = handler.name(), entry = %id, error = %e, "left pending for a later retry")
                }
            }
        }
    }
}

/// The Redis bus: publishes to the stream; consumers run as background tasks.
pub struct RedisBus {
    redis: Redis,
    stream: String,
    local: Vec<Arc<dyn EventHandler>>,
    /// This application instance, on every entry it adds.
    origin: String,
}

impl RedisBus {
    /// Starts one consumer per durable handler on the current runtime.
    pub fn start(
        redis: Redis,
        node: &str,
        origin: uuid::Uuid,
        local: Vec<Arc<dyn EventHandler>>,
        durable: Vec<Arc<dyn EventHandler>>,
        claim_idle: Duration,
    ) -> Self {
        let origin = origin.to_string();
        follow_others(
            redis.clone(),
            redis.key("events"),
            local.clone(),
            origin.clone(),
        );
        for handler in durable {
            let consumer = StreamConsumer::new(redis.clone(), handler.name(), node);
            actix_web::rt::spawn(async move {
                let mut backoff = Duration::from_millis(100);
                loop {
                    let round = async {
                        consumer.ensure_group().await?;
                        let stale = consumer.claim_stale(claim_idle, 100).await?;
                        consumer.process(handler.as_ref(), stale).await;
                        let fresh = consumer.read_new(100, Duration::from_secs(1)).await?;
                        consumer.process(handler.as_ref(), fresh).await;
                        Ok::<(), BusError>(())
                    };
                    match round.await {
                        Ok(()) => backoff = Duration::from_millis(100),
                        Err(e) => {
                            tracing::warn!(group = handler.name(), error = %e, "stream consumer: Redis error, backing off");
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(Duration::from_secs(10));
                        }
                    }
                }
            });
        }
        Self {
            stream: redis.key("events"),
            redis,
            local,
            origin,
        }
    }
}

/// Runs `local` for the events other instances add to `stream`, for the life of the
/// process: from the stream's end at start, then from the last entry seen (also across
/// reconnects, so a Redis blip loses nothing the stream still holds).
fn follow_others(redis: Redis, stream: String, local: Vec<Arc<dyn EventHandler>>, origin: String) {
    if local.is_empty() {
        return;
    }
    actix_web::rt::spawn(async move {
        let mut last = "$".to_owned();
        let mut backoff = Duration::from_millis(100);
        loop {
            let round = async {
                let mut conn = redis.dedicated_connection().await?;
                loop {
                    let options = StreamReadOptions::default().block(1_000).count(100);
                    let reply: StreamReadReply =
                        conn.xread_options(&[&stream], &[&last], &options).await?;
                    for entry in reply.keys.into_iter().flat_map(|k| k.ids) {
                        last.clone_from(&entry.id);
                        let mine = entry
                            .map
                            .get("origin")
                            .and_then(|v| redis::from_redis_value::<String>(v.clone()).ok())
                            .is_some_and(|o| o == origin);
                        if mine {
                            continue;
                        }
                        if let Some((_, event)) = decode(entry.id, &entry.map) {
                            run_local(&local, &event).await;
                        }
                    }
                }
                #[allow(unreachable_code)]
                Ok::<(), redis::RedisError>(())
            };
            if let Err(e) = round.await {
                tracing::warn!(error = %e, "following other nodes' events: Redis error, retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    });
}

impl EventBus for RedisBus {
    fn publish(&self, event: Event) -> BoxFuture<'_, Result<(), BusError>> {
        Box::pin(async move {
            run_local(&self.local, &event).await;
            let json = serde_json::to_vec(&event).map_err(|e| BusError(e.to_string()))?;
            let mut conn = self.redis.connection().await.map_err(bus)?;
            let _: String = conn
                .xadd_maxlen(
                    &self.stream,
                    redis::streams::StreamMaxlen::Approx(MAX_LEN),
                    "*",
                    &[
                        ("event", json),
                        ("origin", self.origin.clone().into_bytes()),
                    ],
                )
                .await
                .map_err(bus)?;
            Ok(())
        })
    }
}
