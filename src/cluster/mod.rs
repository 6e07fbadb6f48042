//! The cluster (issue 16): several nodes sharing one PostgreSQL and one Redis act as one
//! fleet. This module owns the node's place in it: its identity, its heartbeat and
//! graceful leave ([`membership`]), the list of live nodes that `GET /api/v1/cluster`
//! shows, the fleet view shared between nodes ([`fleet`]), the relay of riders' tracking
//! frames to watchers on other nodes ([`tracking`]), which node dispatches which region
//! ([`dispatch`], a lease per region with a fencing token in `crate::store::leases`;
//! [`balance`] spreads the regions, [`places`] says which region an order is in) and the
//! messages between the nodes that hold riders and the ones that dispatch ([`link`]).
//!
//! A node that is not in a cluster (`MEDIFY_CLUSTER=0`, SQLite, or no Redis) is a cluster
//! of one: it lists itself and heart-beats nowhere.

pub mod balance;
pub mod dispatch;
pub mod fleet;
pub mod link;
pub mod membership;
pub mod places;
pub mod seat;
pub mod tracking;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use medify_actors::rider::Riders;

use crate::config::ClusterSettings;
use crate::redis::Redis;
use membership::{Node, NodeCard};

/// This node's membership; cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

struct Inner {
    node_id: String,
    settings: ClusterSettings,
    /// Set when the cluster is on.
    redis: Option<Redis>,
    started_at: DateTime<Utc>,
    riders: Riders,
    /// This node's part in dispatch (cluster on).
    dispatch: Option<dispatch::Dispatch>,
    /// Set by [`Cluster::leave`]: no heartbeat after it.
    left: AtomicBool,
    /// Held while a heartbeat is written and while leaving, so a heartbeat already on its
    /// way cannot land after the leave and bring the node back.
    beating: tokio::sync::Mutex<()>,
}

impl Cluster {
    /// The membership of node `node_id`; `redis` is used only when the cluster is on.
    pub fn new(
        node_id: &str,
        settings: &ClusterSettings,
        redis: Option<&Redis>,
        riders: Riders,
        dispatch: Option<dispatch::Dispatch>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                node_id: node_id.to_owned(),
                settings: settings.clone(),
                redis: redis.filter(|_| settings.enabled).cloned(),
                started_at: Utc::now(),
                riders,
                dispatch,
                left: AtomicBool::new(false),
                beating: tokio::sync::Mutex::new(()),
            }),
        }
    }

    pub fn node_id(&self) -> &str {
        &self.inner.node_id
    }

    /// The node dispatching the first region (by cell index): this one outside a cluster,
    /// else its lease holder as last read (`None` while it changes hands or before there
    /// is a region).
    pub fn dispatch_holder(&self) -> Option<String> {
        match &self.inner.dispatch {
            Some(dispatch) => dispatch.seat().holders().into_values().next(),
            None => Some(self.inner.node_id.clone()),
        }
    }

    /// Every region with an owner and the owner, as last read (empty outside a cluster).
    pub fn region_holders(&self) -> Vec<(String, String)> {
        match &self.inner.dispatch {
            Some(dispatch) => dispatch
                .seat()
                .holders()
                .into_iter()
                .map(|(region, node)| (region.to_string(), node))
                .collect(),
            None => Vec::new(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.inner.redis.is_some()
    }

    /// What this node says about itself now.
    fn card(&self) -> NodeCard {
        NodeCard {
            started_at: self.inner.started_at,
            riders: self.inner.riders.fleet().online(),
            regions: self.inner.riders.matcher().shard_count(),
        }
    }

    /// The live nodes, this one included (alone: just this one).
    pub async fn nodes(&self) -> anyhow::Result<Vec<Node>> {
        match &self.inner.redis {
            Some(redis) => membership::live_nodes(redis, self.inner.settings.node_ttl).await,
            None => {
                let card = self.card();
                Ok(vec![Node {
                    id: self.inner.node_id.clone(),
                    started_at: card.started_at,
                    last_seen: Utc::now(),
                    riders: card.riders,
                    regions: card.regions,
                }])
            }
        }
    }

    /// Announces this node now and then every heartbeat for the life of the process, and
    /// shares its riders' views with the other nodes at the same pace. A
    /// failed heartbeat is logged once per outage and retried on the next tick (if Redis
    /// stays away past the node TTL, the others count this node as dead meanwhile).
    pub fn spawn_heartbeat(&self) {
        let Some(redis) = self.inner.redis.clone() else {
            return;
        };
        fleet::spawn_fleet_sync(
            redis.clone(),
            self.inner.node_id.clone(),
            self.inner.riders.fleet().clone(),
            self.inner.settings.heartbeat,
            self.inner.settings.node_ttl,
        );
        let cluster = self.clone();
        actix_web::rt::spawn(async move {
            let mut tick = tokio::time::interval(cluster.inner.settings.heartbeat);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut failing = false;
            loop {
                tick.tick().await;
                let _beating = cluster.inner.beating.lock().await;
                if cluster.inner.left.load(Ordering::SeqCst) {
                    return;
                }
                match membership::heartbeat(&redis, cluster.node_id(), &cluster.card()).await {
                    Ok(_) if failing => {
                        failing = false;
                        tracing::info!("cluster heartbeat restored");
                    }
                    Ok(_) => {}
                    Err(e) if !failing => {
                        failing = true;
                        tracing::warn!(error = %e, "cluster heartbeat failed; retrying every beat");
                    }
                    Err(_) => {}
                }
            }
        });
    }

    /// Leaves the cluster at once (on SIGTERM), so the others stop counting this node
    /// without waiting for its heartbeat to expire. Bounded: a missing Redis cannot hold
    /// up the shutdown.
    pub async fn leave(&self) {
        if let Some(dispatch) = &self.inner.dispatch {
            // Offers still open are answered here before another node takes over.
            let wait = self.inner.riders.matcher().offer_timeout() + Duration::from_secs(1);
            dispatch.hand_over(wait).await;
        }
        self.inner.left.store(true, Ordering::SeqCst);
        let Some(redis) = &self.inner.redis else {
            return;
        };
        let left = tokio::time::timeout(Duration::from_secs(5), async {
            // A heartbeat already on its way lands first, then the entry goes.
            let _beating = self.inner.beating.lock().await;
            membership::leave(redis, self.node_id()).await
        })
        .await;
        match left {
            Ok(Ok(())) => tracing::info!(node = self.node_id(), "left the cluster"),
            Ok(Err(e)) => tracing::warn!(error = %e, "could not leave the cluster; it will expire"),
            Err(_) => tracing::warn!("leaving the cluster timed out; it will expire"),
        }
    }
}
