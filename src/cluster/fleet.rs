//! The fleet view across nodes: `GET /riders`, `/ws/ops` and the ops page on any node show
//! every node's riders.
//!
//! Every heartbeat, each node writes the views of its own riders that changed since its
//! last write into the hash `cluster:fleet:<node>` (rider id → view as JSON) and renews the
//! hash's expiry (three node TTLs: a dead node's riders vanish with it; they reconnect
//! elsewhere). Then it reads the hashes of the other live nodes and hands them to the
//! local [`Fleet`], which merges them with its own riders for every reader. If the hash is
//! gone (Redis restarted), the next write is a full one.

use std::collections::HashMap;
use std::time::Duration;

use medify_actors::fleet::{merged, Fleet, RiderView};
use uuid::Uuid;

use super::membership;
use crate::redis::Redis;

fn key(redis: &Redis, node: &str) -> String {
    redis.key(&format!("cluster:fleet:{node}"))
}

/// The views among `now` that differ from what was last written.
pub fn changed<'a>(now: &'a [RiderView], written: &HashMap<Uuid, RiderView>) -> Vec<&'a RiderView> {
    now.iter()
        .filter(|v| written.get(&v.id) != Some(*v))
        .collect()
}

/// Keeps this node's riders in Redis and the other nodes' riders in `fleet`, every
/// `every`, for the life of the process.
pub fn spawn_fleet_sync(redis: Redis, node: String, fleet: Fleet, every: Duration, ttl: Duration) {
    actix_web::rt::spawn(async move {
        let mut written: HashMap<Uuid, RiderView> = HashMap::new();
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tick.tick().await;
            let round = async {
                push(&redis, &node, &fleet, &mut written, ttl).await?;
                pull(&redis, &node, &fleet, ttl).await
            };
            match round.await {
                Ok(()) => failing = false,
                Err(e) if !failing => {
                    failing = true;
                    written.clear();
                    tracing::warn!(error = %e, "fleet view sync failed; retrying every beat");
                }
                Err(_) => written.clear(),
            }
        }
    });
}

async fn push(
    redis: &Redis,
    node: &str,
    fleet: &Fleet,
    written: &mut HashMap<Uuid, RiderView>,
    ttl: Duration,
) -> anyhow::Result<()> {
    let views = fleet.local_views();
    let changes = changed(&views, written);
    let key = key(redis, node);
    let mut conn = redis.connection().await?;
    let mut pipe = redis::pipe();
    for view in &changes {
        pipe.hset(&key, view.id.to_string(), serde_json::to_string(view)?)
            .ignore();
    }
    let expiry = u64::try_from((ttl * 3).as_millis()).unwrap_or(u64::MAX);
    pipe.pexpire(&key, i64::try_from(expiry).unwrap_or(i64::MAX));
    let (kept,): (bool,) = pipe.query_async(&mut conn).await?;
    for view in changes {
        written.insert(view.id, view.clone());
    }
    if !kept {
        // The hash was not there (a Redis restart, or nothing written yet): all next time.
        written.clear();
    }
    Ok(())
}

async fn pull(redis: &Redis, node: &str, fleet: &Fleet, ttl: Duration) -> anyhow::Result<()> {
    let mut others: HashMap<Uuid, RiderView> = HashMap::new();
    let mut conn = redis.connection().await?;
    for other in membership::live_nodes(redis, ttl).await? {
        if other.id == node {
            continue;
        }
        let entries: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(key(redis, &other.id))
            .query_async(&mut conn)
            .await?;
        for json in entries.values() {
            let Ok(view) = serde_json::from_str::<RiderView>(json) else {
                continue;
            };
            let pick = match others.get(&view.id) {
                Some(seen) => merged(seen, &view),
                None => view,
            };
            others.insert(pick.id, pick);
        }
    }
    fleet.set_others(others);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_changed_views_are_written_again() {
        let a = RiderView::new(Uuid::from_u128(1));
        let mut b = RiderView::new(Uuid::from_u128(2));
        let written = HashMap::from([(a.id, a.clone()), (b.id, b.clone())]);
        b.online = true;
        let c = RiderView::new(Uuid::from_u128(3));
        let now = vec![a, b.clone(), c.clone()];
        let ids: Vec<Uuid> = changed(&now, &written).iter().map(|v| v.id).collect();
        assert_eq!(ids, vec![b.id, c.id]);
    }
}
