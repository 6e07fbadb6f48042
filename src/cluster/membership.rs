//! Membership: which nodes are alive. Each node writes a heartbeat into Redis every
//! `MEDIFY_HEARTBEAT_MS`; a node whose last heartbeat is older than `MEDIFY_NODE_TTL_S` is
//! dead. Redis's own clock stamps every heartbeat and judges every listing (a Lua script
//! reads `TIME`), so nodes with skewed clocks still agree on who is alive.
//!
//! Keys (under `REDIS_KEY_PREFIX`): `cluster:seen`, a sorted set of node id → last heartbeat
//! (Redis milliseconds); `cluster:nodes`, a hash of node id → the node's [`NodeCard`] as
//! JSON. A node that leaves (SIGTERM) removes itself from both at once; a dead node's
//! entries are forgotten an hour after its last heartbeat.

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::redis::Redis;

/// How long a dead node stays in Redis before it is forgotten (it is listed only while alive).
const FORGET_AFTER_MS: u64 = 3_600_000;

/// What a node says about itself in each heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeCard {
    pub started_at: DateTime<Utc>,
    /// Rider sockets connected to this node.
    pub riders: usize,
    /// Matcher regions this node runs.
    pub regions: usize,
}

/// A live node, as `GET /api/v1/cluster` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Node {
    pub id: String,
    pub started_at: DateTime<Utc>,
    /// Its last heartbeat, by Redis's clock.
    pub last_seen: DateTime<Utc>,
    pub riders: usize,
    pub regions: usize,
}

/// Stamps the heartbeat with Redis's time, stores the card and forgets long-dead nodes.
const HEARTBEAT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[3]))
for _, id in ipairs(old) do redis.call('HDEL', KEYS[2], id) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[3]))
return now
";

/// The nodes seen within the last `ARGV[1]` ms: `[id, last seen ms, card JSON]...`.
const LIVE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local seen = redis.call('ZRANGEBYSCORE', KEYS[1], now - tonumber(ARGV[1]), '+inf', 'WITHSCORES')
local out = {}
for i = 1, #seen, 2 do
  table.insert(out, seen[i])
  table.insert(out, seen[i + 1])
  table.insert(out, redis.call('HGET', KEYS[2], seen[i]) or '')
end
return out
";

fn keys(redis: &Redis) -> (String, String) {
    (redis.key("cluster:seen"), redis.key("cluster:nodes"))
}

/// Writes this node's heartbeat; returns Redis's time of it (epoch ms).
pub async fn heartbeat(redis: &Redis, id: &str, card: &NodeCard) -> anyhow::Result<i64> {
    let (seen, nodes) = keys(redis);
    let mut conn = redis.connection().await?;
    let card = serde_json::to_string(card)?;
    let now: i64 = redis::Script::new(HEARTBEAT)
        .key(seen)
        .key(nodes)
        .arg(id)
        .arg(card)
        .arg(FORGET_AFTER_MS)
        .invoke_async(&mut conn)
        .await?;
    Ok(now)
}

/// The nodes alive now (heard from within `ttl`), by id.
pub async fn live_nodes(redis: &Redis, ttl: std::time::Duration) -> anyhow::Result<Vec<Node>> {
    let (seen, nodes) = keys(redis);
    let mut conn = redis.connection().await?;
    let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
    let flat: Vec<String> = redis::Script::new(LIVE)
        .key(seen)
        .key(nodes)
        .arg(ttl_ms)
        .invoke_async(&mut conn)
        .await?;
    Ok(parse_live(&flat))
}

/// Removes this node at once (a graceful leave): the others stop counting it now.
pub async fn leave(redis: &Redis, id: &str) -> anyhow::Result<()> {
    let (seen, nodes) = keys(redis);
    let mut conn = redis.connection().await?;
    redis::pipe()
        .atomic()
        .zrem(seen, id)
        .hdel(nodes, id)
        .query_async::<()>(&mut conn)
        .await?;
    Ok(())
}

/// `[id, ms, card]...` as nodes sorted by id; entries with an unreadable card or time are
/// skipped (a node writing a newer card format is still alive, just not described).
pub fn parse_live(flat: &[String]) -> Vec<Node> {
    let mut nodes: Vec<Node> = flat
        .chunks_exact(3)
        .filter_map(|entry| {
            let last_ms: f64 = entry[1].parse().ok()?;
            #[allow(clippy::cast_possible_truncation)]
            let last_seen = Utc.timestamp_millis_opt(last_ms as i64).single()?;
            let card: NodeCard = serde_json::from_str(&entry[2]).ok()?;
            Some(Node {
                id: entry[0].clone(),
                started_at: card.started_at,
                last_seen,
                riders: card.riders,
                regions: card.regions,
            })
        })
        .collect();
    nodes.sort_by(|a, b| a.id.cmp(&b.id));
    nodes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_entries_become_nodes_by_id() {
        let card = |riders| {
            serde_json::to_string(&NodeCard {
                started_at: Utc.timestamp_millis_opt(1_000).single().expect("time"),
                riders,
                regions: 2,
            })
            .expect("json")
        };
        let flat = vec![
            "node-b".to_owned(),
            "1700000000500".to_owned(),
            card(3),
            "node-a".to_owned(),
            "1700000000000".to_owned(),
            card(7),
            "node-c".to_owned(),
            "1700000000000".to_owned(),
            "not json".to_owned(),
        ];
        let nodes = parse_live(&flat);
        assert_eq!(
            nodes.iter().map(|n| n.id.as_str()).collect::<Vec<_>>(),
            ["node-a", "node-b"]
        );
        assert_eq!(nodes[0].riders, 7);
        assert_eq!(nodes[1].last_seen.timestamp_millis(), 1_700_000_000_500);
        assert!(parse_live(&["lonely".to_owned()]).is_empty());
    }
}
