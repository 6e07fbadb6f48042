//! Who dispatches which region (issue 16): every owner region — the matcher's shard key of
//! orders, the region of their pickups — has one owner node at a time, which matches its
//! orders and runs their actors; every other node forwards to it through the [`Link`]. A
//! node may own several regions or none. This module owns the regions' leases, the node's
//! part ([`Seat`]) and the changes of part; which regions to take or give back is
//! [`super::balance`]'s rule.
//!
//! - Each region's lease (`region:<cell>`) lives in PostgreSQL (`leases`,
//!   [`Store::acquire_lease`]) with a fencing token that only grows, so a Redis restart
//!   cannot reset it. It lasts half of `MEDIFY_FAILOVER_S` and is renewed (or, by the
//!   others, tried) every third of that: a dead owner's orders are dispatched again within
//!   `MEDIFY_FAILOVER_S`.
//! - Every order journal write of an owner is fenced ([`FencedJournal`]): it commits only
//!   while the lease of the order's region it was granted with is current, checked in the
//!   same transaction. An owner paused past its lease (SIGSTOP, a long stall) finds its
//!   writes refused and its renewal too, and gives the region up by itself. The journal's
//!   version check stays as the last line of defence.
//! - Taking a region: the operator's pause is read back from the database, the node's own
//!   riders go into its shards (on its first region), the region's active orders are
//!   rehydrated from the journal (dispatching ones go to the matcher), and the other
//!   nodes, seeing the new owner, send it all of their riders.
//! - Giving a region up (lease lost, handed back to balance the regions, or on SIGTERM):
//!   its shard takes its offers back and stops, its order actors stop; after the last
//!   region the node keeps only its riders and reports them to the owners.
//! - Handing a region back (over its fair share, or on SIGTERM): automatic offers stop in
//!   it, open offers are left to be answered or to expire (at most the offer timeout),
//!   then the lease is released so another node takes it at its next try instead of after
//!   expiry.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use h3o::CellIndex;
use medify_actors::matcher::Matcher;
use medify_actors::order::OrderRegistry;
use medify_actors::ports::{BoxFuture, JournalEntry, JournalError, OrderJournal, OrderRecord};
use uuid::Uuid;

use super::balance::{self, Member};
use super::link::{Link, RESYNC_EVERY};
use super::membership;
use super::places::Places;
pub use super::seat::Seat;
use super::seat::{lease_name, region_of_lease};
use crate::config::ClusterSettings;
use crate::redis::Redis;
use crate::store::leases::Lease;
use crate::store::Store;

/// The prefix of the regions' lease names.
pub const LEASE_PREFIX: &str = "region:";

/// The order journal of a cluster node: writes commit only under the lease of the order's
/// region.
pub struct FencedJournal {
    store: Store,
    seat: Seat,
    places: Places,
}

impl FencedJournal {
    pub fn new(store: Store, seat: Seat, places: Places) -> Self {
        Self {
            store,
            seat,
            places,
        }
    }
}

impl OrderJournal for FencedJournal {
    fn load(&self, id: Uuid) -> BoxFuture<'_, Result<Option<OrderRecord>, JournalError>> {
        self.store.load(id)
    }

    fn append(&self, e: JournalEntry) -> BoxFuture<'_, Result<Option<i32>, JournalError>> {
        Box::pin(async move {
            let lease = match self.places.region_of(e.order_id).await? {
                Some(region) => self.seat.lease(region),
                None => None,
            };
            let Some(lease) = lease else {
                return Err(JournalError(
                    "this node does not own the order's region now; the write was refused"
                        .to_owned(),
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

/// What one tick read: the regions there are, who holds each, and the live nodes.
struct View {
    regions: BTreeSet<CellIndex>,
    holders: BTreeMap<CellIndex, String>,
    members: Vec<Member>,
}

/// What the lease loop remembers between ticks.
#[derive(Default)]
struct Role {
    /// When each held lease was last renewed.
    renewed: HashMap<CellIndex, Instant>,
    /// Since when each free region has been seen free.
    free_since: HashMap<CellIndex, Instant>,
    /// A region being handed back, and since when.
    giving_back: Option<(CellIndex, Instant)>,
}

/// The region lease loop of this node; cheap to clone.
#[derive(Clone)]
pub struct Dispatch {
    inner: Arc<Inner>,
}

struct Inner {
    seat: Seat,
    places: Places,
    store: Store,
    redis: Redis,
    link: Link,
    matcher: Matcher,
    orders: OrderRegistry,
    node_ttl: Duration,
    heartbeat: Duration,
    lease_ttl: Duration,
    /// Set on SIGTERM: the node no longer takes regions.
    leaving: AtomicBool,
    /// Held while the part changes, so a tick and a hand-over never interleave.
    role: tokio::sync::Mutex<Role>,
}

impl Dispatch {
    /// Joins dispatch: routes `matcher` and `orders` through the link, takes its share of
    /// the regions once (a first node dispatches before it serves) and keeps taking,
    /// renewing and balancing them.
    pub async fn start(
        settings: &ClusterSettings,
        (seat, places): (Seat, Places),
        (store, redis): (Store, Redis),
        matcher: Matcher,
        orders: OrderRegistry,
    ) -> Self {
        let link = Link::start(
            redis.clone(),
            (seat.node_id(), seat.clone(), places.clone()),
            settings.rpc_timeout,
            matcher.clone(),
            orders.clone(),
        );
        let dispatch = Self {
            inner: Arc::new(Inner {
                seat,
                places,
                store,
                redis,
                link,
                matcher,
                orders,
                node_ttl: settings.node_ttl,
                heartbeat: settings.heartbeat,
                lease_ttl: (settings.failover / 2).max(Duration::from_millis(500)),
                leaving: AtomicBool::new(false),
                role: tokio::sync::Mutex::new(Role::default()),
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

    /// Renews this node's leases, reads who holds which region and takes or gives back
    /// regions by the balance rule; true if a holder changed.
    async fn tick(&self) -> bool {
        let mut role = self.inner.role.lock().await;
        self.renew(&mut role).await;
        let Some(view) = self.read().await else {
            return false;
        };
        let changed = self.inner.seat.set_holders(view.holders.clone());
        if changed {
            tracing::info!(holders = ?view.holders, "the regions' owners changed");
        }
        if !self.inner.leaving.load(Ordering::SeqCst) {
            self.balance(&mut role, &view).await;
        }
        changed
    }

    async fn renew(&self, role: &mut Role) {
        let inner = &self.inner;
        for (region, lease) in inner.seat.leases() {
            match inner
                .store
                .renew_lease(&lease, self.node_id(), inner.lease_ttl)
                .await
            {
                Ok(true) => {
                    role.renewed.insert(region, Instant::now());
                }
                Ok(false) => self.step_down(region, "the region's lease moved on").await,
                Err(e) => {
                    tracing::warn!(%region, error = %e, "could not renew a region's lease");
                    let renewed = role.renewed.get(&region);
                    if renewed.is_none_or(|at| at.elapsed() >= inner.lease_ttl) {
                        self.step_down(region, "the region's lease expired unrenewed")
                            .await;
                    }
                }
            }
        }
    }

    /// The regions, their holders and the live nodes; `None` when one cannot be read.
    async fn read(&self) -> Option<View> {
        let inner = &self.inner;
        let regions = inner.places.regions().await;
        let leases = inner.store.running_leases(LEASE_PREFIX).await;
        let nodes = membership::live_nodes(&inner.redis, inner.node_ttl).await;
        let (regions, leases, nodes) = match (regions, leases, nodes) {
            (Ok(r), Ok(l), Ok(n)) => (r, l, n),
            (r, l, n) => {
                tracing::warn!(
                    regions = r.is_ok(),
                    leases = l.is_ok(),
                    membership = n.is_ok(),
                    "could not read the regions' owners; trying again next tick"
                );
                return None;
            }
        };
        let holders = leases
            .into_iter()
            .filter_map(|(name, holder)| Some((region_of_lease(&name)?, holder)))
            .collect();
        // A node that missed two heartbeats (stopped, partitioned) is not offered regions,
        // even before the membership drops it.
        let newest = nodes.iter().map(|n| n.last_seen).max();
        let slack = chrono::Duration::from_std(inner.heartbeat * 2).unwrap_or_default();
        let members = nodes
            .into_iter()
            .filter(|n| newest.is_none_or(|newest| n.last_seen + slack >= newest))
            .map(|n| Member {
                id: n.id,
                started_at: n.started_at,
            })
            .collect();
        Some(View {
            regions,
            holders,
            members,
        })
    }

    /// Takes free regions and hands one back, by [`balance::plan`].
    async fn balance(&self, role: &mut Role, view: &View) {
        let inner = &self.inner;
        let now = Instant::now();
        role.free_since
            .retain(|r, _| view.regions.contains(r) && !view.holders.contains_key(r));
        for region in view
            .regions
            .iter()
            .filter(|r| !view.holders.contains_key(r))
        {
            role.free_since.entry(*region).or_insert(now);
        }
        let free_since = &role.free_since;
        let plan = balance::plan(
            self.node_id(),
            &view.regions,
            &view.holders,
            &view.members,
            |r| free_since.get(&r).map_or(Duration::ZERO, Instant::elapsed),
            inner.lease_ttl,
        );
        for region in plan.take {
            match inner
                .store
                .acquire_lease(&lease_name(region), self.node_id(), inner.lease_ttl)
                .await
            {
                Ok(Some(lease)) => {
                    role.renewed.insert(region, Instant::now());
                    self.take_over(region, lease).await;
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(%region, error = %e, "could not try a region's lease"),
            }
        }
        self.give_back(role, plan.give_back).await;
    }

    /// Starts handing `wanted` back (offers held there), or finishes a hand-back once its
    /// open offers are answered or the offer timeout has passed.
    async fn give_back(&self, role: &mut Role, wanted: Option<CellIndex>) {
        let inner = &self.inner;
        match role.giving_back {
            None => {
                if let Some(region) = wanted {
                    tracing::info!(%region, "handing a region back to balance the cluster");
                    inner.matcher.set_region_paused(region, true).await;
                    role.giving_back = Some((region, Instant::now()));
                }
            }
            Some((region, _)) if wanted != Some(region) || inner.seat.lease(region).is_none() => {
                // No longer needed (a node left) or already gone.
                let paused = inner.matcher.is_paused();
                inner.matcher.set_region_paused(region, paused).await;
                role.giving_back = None;
            }
            Some((region, since)) => {
                let wait = inner.matcher.offer_timeout() + Duration::from_secs(1);
                if inner.matcher.open_offers_in(region).await == 0 || since.elapsed() >= wait {
                    self.release(region, "handed back to balance the cluster")
                        .await;
                    role.giving_back = None;
                }
            }
        }
    }

    /// Sends this node's riders to the other owners and, on an owner, forgets other nodes'
    /// riders that are lost.
    async fn resync(&self) {
        let inner = &self.inner;
        inner.link.resend_riders();
        if !inner.seat.is_local() {
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

    async fn take_over(&self, region: CellIndex, lease: Lease) {
        let inner = &self.inner;
        let first = !inner.seat.is_local();
        tracing::info!(%region, token = lease.token, "this node owns a region now");
        inner.seat.add_lease(region, lease);
        match inner.store.dispatch_paused().await {
            // The operator's hold or resume, as the last owner was told it.
            Ok(paused) => {
                let _ = inner.matcher.set_paused_here(paused).await;
            }
            Err(e) => tracing::warn!(error = %e, "could not read whether dispatch is paused"),
        }
        if first {
            inner.matcher.reintroduce_local();
        }
        match inner.orders.rehydrate().await {
            Ok(active) => tracing::info!(active, "active orders of this node's regions running"),
            Err(e) => {
                // The minute sweep tries again.
                tracing::error!(error = %e, "could not rehydrate active orders after taking over");
            }
        }
    }

    /// Gives `region` up here: its shard and its order actors stop (after the last region,
    /// everything of other nodes goes).
    async fn step_down(&self, region: CellIndex, why: &str) {
        let inner = &self.inner;
        if inner.seat.remove_lease(region).is_none() {
            return;
        }
        tracing::warn!(%region, reason = why, "this node stops dispatching a region");
        inner.matcher.retire_region(region).await;
        let running = inner.orders.running();
        let theirs = if inner.seat.is_local() {
            let mut theirs = Vec::new();
            for id in running {
                // An order whose region cannot be read now goes too: its owner has it.
                let of = inner.places.region_of(id).await;
                if of.map_or(true, |r| r == Some(region)) {
                    theirs.push(id);
                }
            }
            theirs
        } else {
            // The last region: every actor goes, no need to ask where each belongs.
            running
        };
        let orders = inner.orders.retire(&theirs);
        if !inner.seat.is_local() {
            inner.matcher.retire().await;
            inner.link.forget_directory();
        }
        tracing::info!(%region, orders, "the region's order actors and shard stopped");
    }

    /// Gives `region` up and releases its lease for another node to take at once.
    async fn release(&self, region: CellIndex, why: &str) {
        let inner = &self.inner;
        let Some(lease) = inner.seat.lease(region) else {
            return;
        };
        self.step_down(region, why).await;
        match inner.store.release_lease(&lease, self.node_id()).await {
            Ok(_) => tracing::info!(%region, "region lease released"),
            Err(e) => {
                tracing::warn!(%region, error = %e, "could not release a region's lease; it will expire")
            }
        }
    }

    /// On SIGTERM: stops taking regions; holds automatic offers in the regions this node
    /// owns, waits (at most `wait`) for the open ones to be answered or to expire, and
    /// releases the leases for other nodes to take.
    pub async fn hand_over(&self, wait: Duration) {
        let inner = &self.inner;
        inner.leaving.store(true, Ordering::SeqCst);
        if !inner.seat.is_local() {
            return;
        }
        let _ = inner.matcher.set_paused_here(true).await;
        let open = inner
            .matcher
            .state_here()
            .await
            .map_or(0, |(s, _)| s.open_offers);
        tracing::info!(
            open_offers = open,
            "handing dispatch over: offers still open are answered here first"
        );
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            match inner.matcher.state_here().await {
                Ok((stats, _)) if stats.open_offers > 0 => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                _ => break,
            }
        }
        let _role = inner.role.lock().await;
        for (region, _) in inner.seat.leases() {
            self.release(region, "handed over on shutdown").await;
        }
    }
}
