//! Who runs dispatch (issue 16): the one node that holds the `dispatch` lease runs the
//! matcher's shards for every region and the actors of every active order; every other
//! node forwards to it through the [`Link`]. This module owns that lease, the node's role
//! ([`Seat`]) and the two changes of role.
//!
//! - The lease lives in PostgreSQL (`leases`, [`Store::acquire_lease`]) with a fencing
//!   token that only grows, so a Redis restart cannot reset it. It lasts half of
//!   `MEDIFY_FAILOVER_S` and is renewed (or, by the others, tried) every third of that:
//!   a dead holder's orders are dispatched again within `MEDIFY_FAILOVER_S`.
//! - Every order journal write of the holder is fenced ([`FencedJournal`]): it commits only
//!   while the lease it was granted with is current, checked in the same transaction. A
//!   holder paused past its lease (SIGSTOP, a long stall) finds its writes refused and its
//!   renewal too, and steps down by itself. The journal's version check stays as the last
//!   line of defence.
//! - Taking over: the operator's pause is read back from the database, the node's own
//!   riders go into its shards, every active order is rehydrated from the journal
//!   (dispatching ones go to the matcher), and the other nodes, seeing the new holder, send
//!   all of their riders.
//! - Stepping down (lease lost, or handed over on SIGTERM): shards take their offers back and
//!   stop, order actors stop; the node keeps its riders and reports them to the new holder.
//! - Handing over on SIGTERM: automatic offers stop, open offers are left to be answered or
//!   to expire (at most the offer timeout), then the lease is released so another node takes
//!   it at its next try instead of after expiry.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use medify_actors::matcher::Matcher;
use medify_actors::order::OrderRegistry;
use medify_actors::ports::{BoxFuture, JournalEntry, JournalError, OrderJournal, OrderRecord};
use uuid::Uuid;

use super::link::{Link, RESYNC_EVERY};
use super::membership;
pub use super::seat::Seat;
use crate::config::ClusterSettings;
use crate::redis::Redis;
use crate::store::leases::Lease;
use crate::store::Store;

/// The name of the lease.
pub const LEASE: &str = "dispatch";

/// The order journal of a cluster node: writes commit only under the dispatch lease.
pub struct FencedJournal {
    store: Store,
    seat: Seat,
}

impl FencedJournal {
    pub fn new(store: Store, seat: Seat) -> Self {
        Self { store, seat }
    }
}

impl OrderJournal for FencedJournal {
    fn load(&self, id: Uuid) -> BoxFuture<'_, Result<Option<OrderRecord>, JournalError>> {
        self.store.load(id)
    }

    fn append(&self, e: JournalEntry) -> BoxFuture<'_, Result<Option<i32>, JournalError>> {
        Box::pin(async move {
            let Some(lease) = self.seat.lease() else {
                return Err(JournalError(
                    "this node does not run dispatch now; the write was refused".to_owned(),
                ));
            };
            self.store.append_journal(e, Some(&lease)).await
        })
    }

    fn mark_published(&self, id: Uuid, seq: i32) -> BoxFuture<'_, Result<(), JournalError>> {
        self.store.mark_published(id, seq)
    }

    fn set_code_failures(
        &self,
        id: Uuid,
        failures: i32,
    ) -> BoxFuture<'_, Result<(), JournalError>> {
        self.store.set_code_failures(id, failures)
    }

    fn active_orders(&self) -> BoxFuture<'_, Result<Vec<Uuid>, JournalError>> {
        self.store.active_orders()
    }
}

/// The dispatch lease loop of this node; cheap to clone.
#[derive(Clone)]
pub struct Dispatch {
    inner: Arc<Inner>,
}

struct Inner {
    seat: Seat,
    store: Store,
    redis: Redis,
    link: Link,
    matcher: Matcher,
    orders: OrderRegistry,
    node_ttl: Duration,
    lease_ttl: Duration,
    /// Set on SIGTERM: the node no longer tries to take the lease.
    leaving: AtomicBool,
    /// Held while the role changes, so a tick and a hand-over never interleave.
    role: tokio::sync::Mutex<Option<Instant>>,
}

impl Dispatch {
    /// Joins dispatch: routes `matcher` and `orders` through the link, tries the lease once
    /// (a first node runs dispatch before it serves) and keeps trying or renewing it.
    pub async fn start(
        settings: &ClusterSettings,
        node_id: &str,
        seat: Seat,
        (store, redis): (Store, Redis),
        matcher: Matcher,
        orders: OrderRegistry,
    ) -> Self {
        let link = Link::start(
            redis.clone(),
            node_id,
            seat.clone(),
            settings.rpc_timeout,
            matcher.clone(),
            orders.clone(),
        );
        let dispatch = Self {
            inner: Arc::new(Inner {
                seat,
                store,
                redis,
                link,
                matcher,
                orders,
                node_ttl: settings.node_ttl,
                lease_ttl: (settings.failover / 2).max(Duration::from_millis(500)),
                leaving: AtomicBool::new(false),
                role: tokio::sync::Mutex::new(None),
            }),
        };
        dispatch.tick().await;
        let looping = dispatch.clone();
        actix_web::rt::spawn(async move {
            let mut tick = tokio::time::interval(looping.inner.lease_ttl / 3);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last_resend = Instant::now();
            loop {
                tick.tick().await;
                if looping.tick().await || last_resend.elapsed() >= RESYNC_EVERY {
                    last_resend = Instant::now();
                    looping.resync().await;
                }
            }
        });
        dispatch
    }

    pub fn seat(&self) -> &Seat {
        &self.inner.seat
    }

    fn node_id(&self) -> &str {
        self.inner.seat.node_id()
    }

    /// Renews or tries the lease and reads who holds it; true if the holder changed.
    async fn tick(&self) -> bool {
        let inner = &self.inner;
        let mut renewed_at = inner.role.lock().await;
        match inner.seat.lease() {
            Some(lease) => match inner
                .store
                .renew_lease(&lease, self.node_id(), inner.lease_ttl)
                .await
            {
                Ok(true) => *renewed_at = Some(Instant::now()),
                Ok(false) => self.step_down("the dispatch lease moved on").await,
                Err(e) => {
                    tracing::warn!(error = %e, "could not renew the dispatch lease");
                    if renewed_at.is_none_or(|at| at.elapsed() >= inner.lease_ttl) {
                        self.step_down("the dispatch lease expired unrenewed").await;
                    }
                }
            },
            None if !inner.leaving.load(Ordering::SeqCst) => {
                match inner
                    .store
                    .acquire_lease(LEASE, self.node_id(), inner.lease_ttl)
                    .await
                {
                    Ok(Some(lease)) => {
                        *renewed_at = Some(Instant::now());
                        self.take_over(lease).await;
                    }
                    Ok(None) => {}
                    Err(e) => tracing::warn!(error = %e, "could not try the dispatch lease"),
                }
            }
            None => {}
        }
        let holder = match inner.store.lease_holder(LEASE).await {
            Ok(holder) => holder.map(|(node, _)| node),
            Err(e) => {
                tracing::warn!(error = %e, "could not read the dispatch lease");
                return false;
            }
        };
        let changed = inner.seat.set_holder(holder.clone());
        if changed {
            tracing::info!(
                holder = holder.as_deref().unwrap_or("none"),
                "dispatch runs on a new node"
            );
        }
        changed
    }

    /// Sends this node's riders to the holder, or, on the holder, forgets other nodes'
    /// riders that are lost.
    async fn resync(&self) {
        let inner = &self.inner;
        if !inner.seat.is_local() {
            inner.link.resend_riders();
            return;
        }
        match membership::live_nodes(&inner.redis, inner.node_ttl).await {
            Ok(nodes) => {
                let live: Vec<String> = nodes.into_iter().map(|n| n.id).collect();
                inner.link.forget_lost_riders(&live);
            }
            Err(e) => tracing::debug!(error = %e, "could not read the membership"),
        }
    }

    async fn take_over(&self, lease: Lease) {
        let inner = &self.inner;
        tracing::info!(token = lease.token, "this node runs dispatch now");
        inner.seat.set_lease(Some(lease));
        inner.seat.set_holder(Some(self.node_id().to_owned()));
        match inner.store.dispatch_paused().await {
            // The operator's hold or resume, as the last holder was told it.
            Ok(paused) => {
                let _ = inner.matcher.set_paused(paused).await;
            }
            Err(e) => tracing::warn!(error = %e, "could not read whether dispatch is paused"),
        }
        inner.matcher.reintroduce_local();
        match inner.orders.rehydrate().await {
            Ok(active) => tracing::info!(active, "active orders taken over"),
            Err(e) => {
                // The minute sweep tries again.
                tracing::error!(error = %e, "could not rehydrate active orders after taking over");
            }
        }
    }

    async fn step_down(&self, why: &str) {
        let inner = &self.inner;
        if inner.seat.lease().is_none() {
            return;
        }
        tracing::warn!(reason = why, "this node stops running dispatch");
        inner.seat.set_lease(None);
        inner.seat.set_holder(None);
        let orders = inner.orders.retire_all();
        inner.matcher.retire().await;
        inner.link.forget_directory();
        tracing::info!(orders, "order actors and matcher shards stopped");
    }

    /// On SIGTERM: stops taking the lease; if this node holds it, holds automatic offers,
    /// waits (at most `wait`) for the open ones to be answered or to expire, and releases
    /// the lease for another node to take.
    pub async fn hand_over(&self, wait: Duration) {
        let inner = &self.inner;
        inner.leaving.store(true, Ordering::SeqCst);
        let Some(lease) = inner.seat.lease() else {
            return;
        };
        let _ = inner.matcher.set_paused(true).await;
        let open = inner.matcher.stats().await.map_or(0, |s| s.open_offers);
        tracing::info!(
            open_offers = open,
            "handing dispatch over: offers still open are answered here first"
        );
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            match inner.matcher.stats().await {
                Ok(stats) if stats.open_offers > 0 => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                _ => break,
            }
        }
        let _role = inner.role.lock().await;
        self.step_down("handed over on shutdown").await;
        match inner.store.release_lease(&lease, self.node_id()).await {
            Ok(_) => tracing::info!("dispatch lease released"),
            Err(e) => {
                tracing::warn!(error = %e, "could not release the dispatch lease; it will expire")
            }
        }
    }
}
