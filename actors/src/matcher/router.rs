//! The matcher's front: one cheap, cloneable handle in front of many shards.
//!
//! Shards are keyed by the H3 parent cell of the index cell at a coarse resolution (5 by
//! default, about 250 km²; `MatcherConfig::shard_resolution`): a region ([`super::regions`]).
//! A shard owns the free index of the riders whose position lies in its region, and the
//! orders it is the owner of ([`owner_of`]: the pickup's region, or for a pickup near a
//! border the lowest region within reach, so that orders competing for the same riders
//! share one matrix); it is created the first time its region sees a rider or an order, on
//! one of a small pool of arbiters (threads), so a city of several regions, or several
//! cities, uses every core. Nothing here waits on another actor: the handle routes with a
//! few map lookups under short locks, from whichever thread the caller runs on.
//!
//! Borders: a pickup near the edge of its region has free riders next door. Every shard's
//! free index is shared read-only with the others, so a shard's candidate search reads the
//! indexes of every region within the search radius of the pickup ([`regions_near`]). Two
//! shards may then pick the same rider in the same window; the rider's session takes the
//! first offer and declines the second (a rider holds one offer at a time), and the second
//! order waits for the next window.
//!
//! Routing: a rider's messages go to the shard of their region (a rider crossing a border
//! leaves the old shard and is introduced to the new one); an order's to the shard of its
//! pickup, remembered until the order leaves the matcher. The riders' inboxes (how the
//! matcher reaches a session) are kept here, registered when a session starts.
//!
//! Cluster (issue 16): each owner region (the shard key of orders, [`owner_of`]) is matched
//! on the node holding its lease; a node may own several regions or none. Every node's
//! handle keeps its own riders' routes and sends each change as a [`RiderReport`] through
//! the [`MatcherRoute`] the server sets, to every other node owning a region; a node owning
//! regions also indexes them itself. Answers, outcomes and manual offers for an order this
//! node does not match go through the route to the order's owner; controls and counts go
//! to every owner. An owner takes other nodes' riders in with [`Matcher::remote_rider`]
//! (shards of regions it does not own only index riders, for the border searches of the
//! regions it does) and reaches them through remote inboxes. Taking a first region
//! ([`Matcher::reintroduce_local`]), giving one back ([`Matcher::retire_region`]) and
//! giving the last one back ([`Matcher::retire`]) are the changes of role.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};

use actix::prelude::*;
use h3o::CellIndex;
use uuid::Uuid;

use super::config::MatcherConfig;
use super::index::{FreeIndex, Position};
use super::messages::{
    Answer, AnswerError, Answered, AssignOutcome, CheckOffer, DispatchOrder, Inboxes, ManualOffer,
    ManualOfferError, ManualOfferTo, MatcherRoute, MatcherStats, OfferOf, Retire, RiderGone,
    RiderInbox, RiderLeft, RiderMoved, RiderPhaseChanged, RiderReport, RiderSnapshot, SetPaused,
    Stats, Withdraw,
};
use super::regions::{owner_of, region_of, Indexes};
use super::shard::Shard;
use crate::geo::Point;
use crate::lock;
use crate::model::RiderPhase;

/// What the handle remembers of a rider: enough to introduce them to a new shard.
#[derive(Debug, Clone, Copy)]
struct Route {
    region: Option<CellIndex>,
    phase: RiderPhase,
    connected: bool,
    pos: Option<Position>,
}

impl Default for Route {
    fn default() -> Self {
        Self {
            region: None,
            phase: RiderPhase::Offline,
            connected: false,
            pos: None,
        }
    }
}

struct Router {
    cfg: MatcherConfig,
    inboxes: Inboxes,
    arbiters: Vec<ArbiterHandle>,
    next_arbiter: AtomicUsize,
    shards: RwLock<HashMap<CellIndex, Addr<Shard>>>,
    indexes: Indexes,
    riders: Mutex<HashMap<Uuid, Route>>,
    orders: Mutex<HashMap<Uuid, CellIndex>>,
    paused: AtomicBool,
    /// Set in a cluster: how to reach the node running the matcher when it is not this one.
    route: OnceLock<Arc<dyn MatcherRoute>>,
}

/// The matcher. Cheap to clone; see the module documentation.
#[derive(Clone)]
pub struct Matcher {
    inner: Arc<Router>,
}

impl Matcher {
    /// A matcher whose shards run on `threads` arbiters of their own. Must be called inside
    /// an actix system.
    pub fn start(cfg: MatcherConfig, threads: usize) -> Self {
        let arbiters = (0..threads.max(1))
            .map(|_| Arbiter::new().handle())
            .collect();
        Self {
            inner: Arc::new(Router {
                cfg,
                inboxes: Inboxes::default(),
                arbiters,
                next_arbiter: AtomicUsize::new(0),
                shards: RwLock::new(HashMap::new()),
                indexes: Indexes::default(),
                riders: Mutex::new(HashMap::new()),
                orders: Mutex::new(HashMap::new()),
                paused: AtomicBool::new(false),
                route: OnceLock::new(),
            }),
        }
    }

    /// In a cluster: reaches the other regions' owners through `route`. Set once, before
    /// riders connect.
    pub fn set_route(&self, route: Arc<dyn MatcherRoute>) {
        let _ = self.inner.route.set(route);
    }

    /// The route to the regions' owners, while this node owns none (and keeps no shards).
    fn remote(&self) -> Option<&Arc<dyn MatcherRoute>> {
        self.inner.route.get().filter(|r| !r.local())
    }

    /// The route to the other regions' owners (set in a cluster).
    fn others(&self) -> Option<&Arc<dyn MatcherRoute>> {
        self.inner.route.get()
    }

    /// One of this node's own riders changed: the other owners hear of it. False when this
    /// node owns no region (and so keeps no shards).
    fn share(
        &self,
        rider: Uuid,
        phase: RiderPhase,
        connected: bool,
        pos: Option<Position>,
    ) -> bool {
        let Some(route) = self.others() else {
            return true;
        };
        if self.inner.inboxes.is_local(rider) {
            route.rider(report(rider, phase, connected, pos));
        }
        route.local()
    }

    fn region_of(&self, at: Point) -> CellIndex {
        let cfg = &self.inner.cfg;
        region_of(at, cfg.resolution, cfg.shard_resolution)
    }

    /// The shard of `region`, started if this is the first time the region is needed.
    fn shard(&self, region: CellIndex) -> Addr<Shard> {
        let r = &self.inner;
        if let Some(addr) = r
            .shards
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&region)
        {
            return addr.clone();
        }
        let mut shards = r.shards.write().unwrap_or_else(PoisonError::into_inner);
        shards
            .entry(region)
            .or_insert_with(|| {
                let free = Arc::new(RwLock::new(FreeIndex::new(r.cfg.resolution)));
                r.indexes.insert(region, free.clone());
                let arbiter =
                    &r.arbiters[r.next_arbiter.fetch_add(1, Ordering::Relaxed) % r.arbiters.len()];
                let (cfg, inboxes, indexes) = (r.cfg.clone(), r.inboxes.clone(), r.indexes.clone());
                let paused = r.paused.load(Ordering::SeqCst);
                tracing::debug!(%region, "matcher shard started");
                Shard::start_in_arbiter(arbiter, move |_| {
                    Shard::new(cfg, inboxes, region, free, indexes, paused)
                })
            })
            .clone()
    }

    fn shards(&self) -> Vec<Addr<Shard>> {
        self.inner
            .shards
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    fn order_shard(&self, order_id: Uuid) -> Option<Addr<Shard>> {
        let region = *lock(&self.inner.orders).get(&order_id)?;
        Some(self.shard(region))
    }

    /// A rider's session started: this is how the matcher reaches it.
    pub fn rider_joined(&self, rider: Uuid, inbox: RiderInbox) {
        self.inner.inboxes.insert(rider, inbox);
    }

    /// The rider's phase changed (the session reports every change).
    pub fn rider_phase(&self, msg: RiderPhaseChanged) {
        let (region, pos) = {
            let mut riders = lock(&self.inner.riders);
            let route = riders.entry(msg.rider).or_default();
            route.phase = msg.phase;
            route.connected = msg.connected;
            (route.region, route.pos)
        };
        if !self.share(msg.rider, msg.phase, msg.connected, pos) {
            return;
        }
        if let Some(region) = region {
            self.shard(region).do_send(msg);
        }
    }

    /// The rider's live position moved (the session tells every 50 m or 5 s).
    pub fn rider_moved(&self, msg: RiderMoved) {
        let pos = Position {
            at: msg.at,
            ts_ms: msg.ts_ms,
        };
        let (phase, connected) = {
            let mut riders = lock(&self.inner.riders);
            let route = riders.entry(msg.rider).or_default();
            route.pos = Some(pos);
            (route.phase, route.connected)
        };
        if !self.share(msg.rider, phase, connected, Some(pos)) {
            return;
        }
        let region = self.region_of(msg.at);
        let (left, route) = {
            let mut riders = lock(&self.inner.riders);
            let route = riders.entry(msg.rider).or_default();
            let left = route.region.filter(|old| *old != region);
            let arrived = route.region != Some(region);
            route.region = Some(region);
            (left, arrived.then_some(*route))
        };
        if let Some(old) = left {
            self.shard(old).do_send(RiderLeft { rider: msg.rider });
        }
        let shard = self.shard(region);
        if let Some(route) = route {
            shard.do_send(RiderPhaseChanged {
                rider: msg.rider,
                phase: route.phase,
                connected: route.connected,
            });
        }
        shard.do_send(msg);
    }

    /// The rider's session ended: every shard forgets them and closes their offers.
    pub fn rider_gone(&self, msg: RiderGone) {
        let own = self.inner.inboxes.is_local(msg.rider);
        lock(&self.inner.riders).remove(&msg.rider);
        self.inner.inboxes.remove(msg.rider);
        if let Some(route) = self.others() {
            if own {
                route.rider_gone(msg.rider);
            }
            if !route.local() {
                return;
            }
        }
        for shard in self.shards() {
            shard.do_send(msg);
        }
    }

    /// An order waits for a rider. It goes to its owner's shard ([`owner_of`]).
    pub fn dispatch(&self, msg: DispatchOrder) {
        if self.remote().is_some() {
            // An order actor left behind on a node that gave its regions back: the order's
            // owner has the order's own actor.
            tracing::debug!(order_id = %msg.order_id, "not dispatched here: this node owns no region");
            return;
        }
        let cfg = &self.inner.cfg;
        let region = owner_of(
            msg.pickup,
            cfg.search_radius_m,
            cfg.resolution,
            cfg.shard_resolution,
        );
        lock(&self.inner.orders).insert(msg.order_id, region);
        self.shard(region).do_send(msg);
    }

    /// An order left dispatching without the matcher.
    pub fn withdraw(&self, msg: Withdraw) {
        if self.remote().is_some() {
            return;
        }
        let region = lock(&self.inner.orders).remove(&msg.order_id);
        match region {
            Some(region) => self.shard(region).do_send(msg),
            None => {
                if let Some(inbox) = msg.rider.and_then(|r| self.inner.inboxes.get(r)) {
                    inbox.order_cancelled(msg.order_id);
                }
            }
        }
    }

    /// A rider's answer to an offer.
    pub async fn answer(&self, msg: Answer) -> Result<Result<Answered, AnswerError>, MailboxError> {
        match (self.order_shard(msg.order_id), self.others()) {
            (Some(shard), _) => shard.send(msg).await,
            (None, Some(route)) => route.answer(msg).await,
            (None, None) => Ok(Err(AnswerError::Closed)),
        }
    }

    /// A rider's answer, for an order matched here only (from another node).
    pub async fn answer_here(
        &self,
        msg: Answer,
    ) -> Result<Result<Answered, AnswerError>, MailboxError> {
        match self.order_shard(msg.order_id) {
            Some(shard) => shard.send(msg).await,
            None => Ok(Err(AnswerError::Closed)),
        }
    }

    /// What the order actor said to an accepted offer.
    pub fn assign_outcome(&self, msg: AssignOutcome) {
        if let Some(route) = self.others() {
            if !lock(&self.inner.orders).contains_key(&msg.order_id) {
                route.assign_outcome(msg);
                return;
            }
        }
        self.assign_outcome_here(msg);
    }

    /// What the order actor said, for an order matched here only (from another node).
    pub fn assign_outcome_here(&self, msg: AssignOutcome) {
        let region = if msg.assigned {
            // The order has left the matcher for good.
            lock(&self.inner.orders).remove(&msg.order_id)
        } else {
            lock(&self.inner.orders).get(&msg.order_id).copied()
        };
        if let Some(region) = region {
            self.shard(region).do_send(msg);
        }
    }

    /// Manual dispatch: offer the order to this rider now.
    pub async fn manual_offer(
        &self,
        msg: ManualOffer,
    ) -> Result<Result<(), ManualOfferError>, MailboxError> {
        match (self.order_shard(msg.order_id).is_some(), self.others()) {
            (false, Some(route)) => route.manual_offer(msg).await,
            _ => self.manual_offer_here(msg).await,
        }
    }

    /// Manual dispatch, for an order matched here only (from another node).
    pub async fn manual_offer_here(
        &self,
        msg: ManualOffer,
    ) -> Result<Result<(), ManualOfferError>, MailboxError> {
        let Some(shard) = self.order_shard(msg.order_id) else {
            return Ok(Err(ManualOfferError::NotDispatching));
        };
        let rider = lock(&self.inner.riders)
            .get(&msg.rider)
            .map(|route| RiderSnapshot {
                phase: route.phase,
                connected: route.connected,
                pos: route.pos,
            });
        shard
            .send(ManualOfferTo {
                order_id: msg.order_id,
                rider_id: msg.rider,
                rider,
            })
            .await
    }

    /// Holds or resumes automatic offers on every shard (and on shards started later), on
    /// every node owning a region.
    pub async fn set_paused(&self, paused: bool) -> Result<(), MailboxError> {
        self.set_paused_here(paused).await?;
        match self.others() {
            Some(route) => route.set_paused(paused).await,
            None => Ok(()),
        }
    }

    /// Holds or resumes automatic offers on this node's shards only.
    pub async fn set_paused_here(&self, paused: bool) -> Result<(), MailboxError> {
        self.inner.paused.store(paused, Ordering::SeqCst);
        for shard in self.shards() {
            shard.send(SetPaused(paused)).await?;
        }
        Ok(())
    }

    /// How many regions have a shard on this node.
    pub fn shard_count(&self) -> usize {
        self.inner
            .shards
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// How long an offer stays open.
    pub fn offer_timeout(&self) -> std::time::Duration {
        self.inner.cfg.offer_timeout
    }

    /// Whether automatic offers are held.
    pub fn is_paused(&self) -> bool {
        self.inner.paused.load(Ordering::SeqCst)
    }

    /// Counts summed over the shards. A shard answers after every message sent to it
    /// before, so this follows e.g. a resume's batch.
    pub async fn stats(&self) -> Result<MatcherStats, MailboxError> {
        Ok(self.state().await?.0)
    }

    /// The counts summed over every node owning a region, and whether automatic offers
    /// are held.
    pub async fn state(&self) -> Result<(MatcherStats, bool), MailboxError> {
        let (mut total, mut paused) = self.state_here().await?;
        if let Some(route) = self.others() {
            let (theirs, held) = route.stats().await?;
            total.add(theirs);
            paused |= held;
        }
        Ok((total, paused))
    }

    /// This node's counts only (none while it owns no region).
    pub async fn state_here(&self) -> Result<(MatcherStats, bool), MailboxError> {
        if self.remote().is_some() {
            return Ok((MatcherStats::default(), self.is_paused()));
        }
        Ok((self.local_stats().await?, self.is_paused()))
    }

    async fn local_stats(&self) -> Result<MatcherStats, MailboxError> {
        let mut total = MatcherStats::default();
        for shard in self.shards() {
            let s = shard.send(Stats).await?;
            total.free_riders += s.free_riders;
            total.waiting_orders += s.waiting_orders;
            total.open_offers += s.open_offers;
            total.shards += 1;
        }
        Ok(total)
    }
}

/// Cluster roles (issue 16).
impl Matcher {
    /// A rider of another node as that node reports him (this node owns a region): reached
    /// through `inbox` from now on. A rider who says he holds an offer for an order matched
    /// here that this node does not hold, or for an order of a region this node owns but
    /// does not match (`owned_elsewhere` false: its maker died or gave the region up), is
    /// told it is gone.
    pub fn remote_rider(&self, report: RiderReport, inbox: RiderInbox, owned_elsewhere: bool) {
        let rider = report.rider;
        self.inner.inboxes.insert(rider, inbox);
        self.rider_phase(RiderPhaseChanged {
            rider,
            phase: report.phase,
            connected: report.connected,
        });
        if let Some(at) = report
            .at
            .and_then(|(lat, lng, _)| Point::new(lat, lng).ok())
        {
            let ts_ms = report.at.map_or(0, |(_, _, ts)| ts);
            self.rider_moved(RiderMoved { rider, at, ts_ms });
        }
        if let RiderPhase::Offered { offer, order } = report.phase {
            match lock(&self.inner.orders).get(&order).copied() {
                Some(region) => self.shard(region).do_send(CheckOffer { rider, offer }),
                None if owned_elsewhere => {}
                None => {
                    if let Some(inbox) = self.inner.inboxes.get(rider) {
                        inbox.offer_gone(offer);
                    }
                }
            }
        }
    }

    /// Delivers what the node running the matcher tells one of this node's riders; the
    /// answer says whether an offer was taken on (false for a rider not here).
    pub fn tell_local(
        &self,
        rider: Uuid,
        msg: super::messages::ToRider,
    ) -> crate::ports::BoxFuture<'static, bool> {
        match self
            .inner
            .inboxes
            .get(rider)
            .filter(|i| i.remote_node().is_none())
        {
            Some(inbox) => inbox.tell(msg),
            None => Box::pin(async { false }),
        }
    }

    /// Whether this matcher is part of a cluster (a route is set).
    pub fn clustered(&self) -> bool {
        self.inner.route.get().is_some()
    }

    /// The open offer the rider holds, wherever the matcher runs: a session that starts on
    /// another node than the one the offer went to takes it over.
    pub async fn open_offer(&self, rider: Uuid) -> Option<crate::protocol::OfferInfo> {
        if let Some(info) = self.open_offer_here(rider).await {
            return Some(info);
        }
        self.others()?.open_offer(rider).await
    }

    /// The open offer the rider holds from this node's shards.
    pub async fn open_offer_here(&self, rider: Uuid) -> Option<crate::protocol::OfferInfo> {
        for shard in self.shards() {
            if let Ok(Some(info)) = shard.send(OfferOf { rider }).await {
                return Some(info);
            }
        }
        None
    }

    /// Whether an order waits or holds an offer in this node's shards.
    pub fn matches_here(&self, order: Uuid) -> bool {
        lock(&self.inner.orders).contains_key(&order)
    }

    /// The owner region of an order picked up at `pickup` ([`owner_of`]): the unit the
    /// cluster hands out.
    pub fn owner_region(&self, pickup: Point) -> CellIndex {
        let cfg = &self.inner.cfg;
        owner_of(
            pickup,
            cfg.search_radius_m,
            cfg.resolution,
            cfg.shard_resolution,
        )
    }

    /// Holds or resumes automatic offers in one region's shard (a region being handed
    /// over).
    pub async fn set_region_paused(&self, region: CellIndex, paused: bool) {
        let _ = self.shard(region).send(SetPaused(paused)).await;
    }

    /// Offers open in one region's shard (0 when it has none).
    pub async fn open_offers_in(&self, region: CellIndex) -> usize {
        let shard = self
            .inner
            .shards
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&region)
            .cloned();
        match shard {
            Some(shard) => shard.send(Stats).await.map_or(0, |s| s.open_offers),
            None => 0,
        }
    }

    /// A rider of another node is gone (his session ended there, or the node died).
    pub fn remote_rider_gone(&self, rider: Uuid) {
        self.rider_gone(RiderGone { rider });
    }

    /// The node of every rider of other nodes this node knows.
    pub fn remote_riders(&self) -> Vec<(Uuid, String)> {
        let riders: Vec<Uuid> = lock(&self.inner.riders).keys().copied().collect();
        riders
            .into_iter()
            .filter_map(|r| {
                let inbox = self.inner.inboxes.get(r)?;
                Some((r, inbox.remote_node()?.to_owned()))
            })
            .collect()
    }

    /// What this node's own riders are doing, as reports for the node running the matcher.
    pub fn local_reports(&self) -> Vec<RiderReport> {
        let routes: Vec<(Uuid, Route)> = lock(&self.inner.riders)
            .iter()
            .map(|(id, r)| (*id, *r))
            .collect();
        routes
            .into_iter()
            .filter(|(id, _)| self.inner.inboxes.is_local(*id))
            .map(|(id, r)| report(id, r.phase, r.connected, r.pos))
            .collect()
    }

    /// This node has just started running the matcher: its own riders go into the shards.
    /// Offers they hold were made by the previous holder and are gone.
    pub fn reintroduce_local(&self) {
        let routes: Vec<(Uuid, Route)> = lock(&self.inner.riders)
            .iter()
            .map(|(id, r)| (*id, *r))
            .collect();
        for (rider, route) in routes {
            if let (RiderPhase::Offered { offer, .. }, Some(inbox)) =
                (route.phase, self.inner.inboxes.get(rider))
            {
                inbox.offer_gone(offer);
            }
            if let Some(pos) = route.pos {
                self.rider_phase(RiderPhaseChanged {
                    rider,
                    phase: route.phase,
                    connected: route.connected,
                });
                self.rider_moved(RiderMoved {
                    rider,
                    at: pos.at,
                    ts_ms: pos.ts_ms,
                });
            }
        }
    }

    /// This node gave one region back: its shard takes its open offers back and stops, its
    /// waiting orders are forgotten (the new owner has them). Riders indexed there are
    /// introduced to a new shard with their next report or fix, should the region still
    /// matter here for a border search.
    pub async fn retire_region(&self, region: CellIndex) {
        let shard = self
            .inner
            .shards
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&region);
        if let Some(shard) = shard {
            let _ = shard.send(Retire).await;
        }
        self.inner.indexes.remove(region);
        lock(&self.inner.orders).retain(|_, r| *r != region);
        for route in lock(&self.inner.riders).values_mut() {
            if route.region == Some(region) {
                route.region = None;
            }
        }
    }

    /// This node owns no region any more: every shard takes its open offers back and
    /// stops; waiting orders and other nodes' riders are forgotten (the new owners have
    /// them); this node's riders keep their routes, to report.
    pub async fn retire(&self) {
        let shards: Vec<Addr<Shard>> = self
            .inner
            .shards
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .drain()
            .map(|(_, addr)| addr)
            .collect();
        for shard in shards {
            let _ = shard.send(Retire).await;
        }
        self.inner.indexes.clear();
        lock(&self.inner.orders).clear();
        let remote = self.inner.inboxes.remove_remote();
        let mut riders = lock(&self.inner.riders);
        for rider in remote {
            riders.remove(&rider);
        }
        for route in riders.values_mut() {
            route.region = None;
        }
    }
}

fn report(rider: Uuid, phase: RiderPhase, connected: bool, pos: Option<Position>) -> RiderReport {
    RiderReport {
        rider,
        phase,
        connected,
        at: pos.map(|p| (p.at.lat(), p.at.lng(), p.ts_ms)),
    }
}

#[cfg(test)]
mod tests {
    use super::super::messages::ToRider;
    use super::super::regions::regions_near;
    use super::super::shard::now_ms;
    use super::*;
    use h3o::Resolution;

    const RES: Resolution = Resolution::Nine;
    const SHARD: Resolution = Resolution::Five;

    fn p(lat: f64, lng: f64) -> Point {
        Point::new(lat, lng).expect("valid")
    }

    /// `at` moved `m` metres towards `bearing` (degrees), on a local flat approximation.
    fn offset(at: Point, m: f64, bearing: f64) -> Point {
        let (dy, dx) = (
            m * bearing.to_radians().cos(),
            m * bearing.to_radians().sin(),
        );
        let lat = at.lat() + dy / 111_195.0;
        let lng = at.lng() + dx / (111_195.0 * at.lat().to_radians().cos());
        p(lat, lng)
    }

    #[test]
    fn every_point_within_the_radius_lies_in_a_listed_region() {
        // Pickups on a 60 km grid around Bengaluru, riders in 24 directions at 8 distances
        // up to the radius: the rider's region must always be among those searched.
        let radius = 5_000.0;
        let mut border_pickups = 0;
        for i in 0..30 {
            for j in 0..30 {
                let pickup = p(12.7 + f64::from(i) * 0.02, 77.3 + f64::from(j) * 0.02);
                let near = regions_near(pickup, radius, RES, SHARD);
                assert!(near.contains(&region_of(pickup, RES, SHARD)));
                if near.len() > 1 {
                    border_pickups += 1;
                }
                for d in 1..=8 {
                    for b in 0..24 {
                        let rider =
                            offset(pickup, radius * f64::from(d) / 8.0, f64::from(b) * 15.0);
                        if rider.distance_m(pickup) > radius {
                            continue;
                        }
                        let home = region_of(rider, RES, SHARD);
                        assert!(
                            near.contains(&home),
                            "{rider:?} ({home}) within {radius} m of {pickup:?} but not in {near:?}"
                        );
                    }
                }
            }
        }
        // Res-5 regions are about 17 km across: many pickups in a 60 km square are near one
        // border or another, and the search crosses it.
        assert!(border_pickups > 100, "{border_pickups}");
    }

    #[test]
    fn a_pickup_in_the_middle_of_its_region_searches_that_region_only() {
        for (lat, lng) in [
            (12.97, 77.59),
            (19.07, 72.87),
            (51.5, -0.12),
            (-33.87, 151.2),
        ] {
            let region = region_of(p(lat, lng), RES, SHARD);
            let centre = h3o::LatLng::from(region);
            let middle = p(centre.lat(), centre.lng());
            assert_eq!(regions_near(middle, 1_000.0, RES, SHARD), vec![region]);
            assert!(regions_near(middle, 15_000.0, RES, SHARD).len() > 1);
        }
    }

    /// A matcher whose batches run only when it is resumed (the window is an hour), with
    /// the number of offers it has made. A rider here has no session unless the test
    /// gives them an inbox, so an offer to one without expires at once.
    fn counting_matcher() -> (Matcher, Arc<AtomicUsize>) {
        let made = Arc::new(AtomicUsize::new(0));
        let counter = made.clone();
        let cfg = MatcherConfig {
            batch_window: std::time::Duration::from_secs(3_600),
            on_offer: Arc::new(move |event| {
                if event == "made" {
                    counter.fetch_add(1, Ordering::SeqCst);
                }
            }),
            ..MatcherConfig::default()
        };
        (Matcher::start(cfg, 2), made)
    }

    /// A free rider with a fresh fix at `at`.
    fn free_rider_at(matcher: &Matcher, at: Point) -> Uuid {
        let rider = Uuid::now_v7();
        matcher.rider_phase(RiderPhaseChanged {
            rider,
            phase: RiderPhase::Free,
            connected: true,
        });
        matcher.rider_moved(RiderMoved {
            rider,
            at,
            ts_ms: now_ms(),
        });
        rider
    }

    fn order_at(matcher: &Matcher, pickup: Point) -> Uuid {
        let order_id = Uuid::now_v7();
        matcher.dispatch(DispatchOrder {
            order_id,
            pickup,
            pickup_name: None,
            dropoff: offset(pickup, 2_000.0, 0.0),
            since_ms: now_ms(),
        });
        order_id
    }

    /// Walking east from `from` in 20 m steps: a point 300 m before the first region
    /// border, and the first point past it.
    fn across_a_border(from: Point) -> (Point, Point) {
        let home = region_of(from, RES, SHARD);
        let at = |i: i32| offset(from, 20.0 * f64::from(i), 90.0);
        let first_out = (1..5_000)
            .find(|i| region_of(at(*i), RES, SHARD) != home)
            .expect("a border within 100 km");
        (at(first_out - 15), at(first_out))
    }

    #[actix_rt::test]
    async fn distant_regions_each_dispatch_in_their_own_shard() {
        let (matcher, made) = counting_matcher();
        matcher.set_paused(true).await.expect("paused");
        // Bengaluru and Mumbai, 840 km apart: each order has one rider within reach.
        let (blr, bom) = (p(12.9716, 77.5946), p(19.0760, 72.8777));
        free_rider_at(&matcher, offset(blr, 800.0, 45.0));
        free_rider_at(&matcher, offset(bom, 800.0, 225.0));
        order_at(&matcher, blr);
        order_at(&matcher, bom);
        let held = matcher.stats().await.expect("stats");
        assert_eq!(
            held,
            MatcherStats {
                free_riders: 2,
                waiting_orders: 2,
                open_offers: 0,
                shards: 2,
            }
        );
        matcher.set_paused(false).await.expect("resumed");
        assert_eq!(made.load(Ordering::SeqCst), 2);
    }

    /// The owner of a pickup with the default settings.
    fn owner(pickup: Point) -> CellIndex {
        owner_of(pickup, 5_000.0, RES, SHARD)
    }

    #[test]
    fn orders_near_a_border_share_an_owner() {
        let (west, east) = across_a_border(p(12.9716, 77.5946));
        assert_ne!(region_of(west, RES, SHARD), region_of(east, RES, SHARD));
        assert_eq!(owner(west), owner(east));
        // Deep inside its region, an order belongs to that region.
        let centre = h3o::LatLng::from(region_of(west, RES, SHARD));
        let middle = p(centre.lat(), centre.lng());
        assert_eq!(
            owner_of(middle, 1_000.0, RES, SHARD),
            region_of(middle, RES, SHARD)
        );
    }

    #[actix_rt::test]
    async fn a_rider_across_a_region_border_is_a_candidate() {
        let (matcher, made) = counting_matcher();
        matcher.set_paused(true).await.expect("paused");
        let (west, east) = across_a_border(p(12.9716, 77.5946));
        // The rider on the side whose shard does not own the order.
        let (pickup, rider_at) = if region_of(east, RES, SHARD) == owner(west) {
            (east, west)
        } else {
            (west, east)
        };
        assert_ne!(owner(pickup), region_of(rider_at, RES, SHARD));
        free_rider_at(&matcher, rider_at);
        order_at(&matcher, pickup);
        let held = matcher.stats().await.expect("stats");
        assert_eq!(
            (held.shards, held.free_riders, held.waiting_orders),
            (2, 1, 1)
        );
        // The order's shard holds no rider; it finds the one next door.
        matcher.set_paused(false).await.expect("resumed");
        assert_eq!(made.load(Ordering::SeqCst), 1);
    }

    /// A rider's session as the matcher sees it: takes an offer only while `free`, and
    /// counts the offers it was asked to take.
    struct TestInbox {
        free: Arc<AtomicBool>,
        asked: Arc<AtomicUsize>,
    }

    impl Actor for TestInbox {
        type Context = Context<Self>;
    }

    impl Handler<ToRider> for TestInbox {
        type Result = bool;
        fn handle(&mut self, msg: ToRider, _: &mut Context<Self>) -> bool {
            if !matches!(msg, ToRider::Offer(_)) {
                return false;
            }
            self.asked.fetch_add(1, Ordering::SeqCst);
            self.free.load(Ordering::SeqCst)
        }
    }

    /// Asks for the summed stats until `done` holds for them (each round trip lets the
    /// shards handle what they were sent before, including the sessions' answers).
    async fn stats_until(matcher: &Matcher, done: impl Fn(&MatcherStats) -> bool) -> MatcherStats {
        for _ in 0..1_000 {
            let stats = matcher.stats().await.expect("stats");
            if done(&stats) {
                return stats;
            }
            actix_rt::task::yield_now().await;
        }
        panic!("the matcher never reached the expected state");
    }

    #[actix_rt::test]
    async fn a_rider_holding_another_offer_declines_and_the_order_waits() {
        let (matcher, made) = counting_matcher();
        matcher.set_paused(true).await.expect("paused");
        let (pickup, rider_at) = across_a_border(p(19.0760, 72.8777));
        let rider = free_rider_at(&matcher, rider_at);
        // Another shard holds the rider (an open offer of its own): the session declines.
        let (free, asked) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicUsize::new(0)),
        );
        let inbox = TestInbox {
            free: free.clone(),
            asked: asked.clone(),
        }
        .start();
        matcher.rider_joined(rider, RiderInbox::of(&inbox));
        // His shard has indexed him (it answers stats after the messages sent before).
        stats_until(&matcher, |s| s.free_riders == 1).await;
        order_at(&matcher, pickup);
        matcher.set_paused(false).await.expect("resumed");
        let declined = stats_until(&matcher, |s| s.open_offers == 0).await;
        assert_eq!(asked.load(Ordering::SeqCst), 1);
        assert_eq!((declined.waiting_orders, declined.free_riders), (1, 1));
        // Free again, he is a candidate again at the next batch, and takes it.
        free.store(true, Ordering::SeqCst);
        matcher.set_paused(false).await.expect("resumed");
        let taken = stats_until(&matcher, |s| s.open_offers == 1).await;
        assert_eq!((taken.waiting_orders, made.load(Ordering::SeqCst)), (0, 2));
        assert_eq!(asked.load(Ordering::SeqCst), 2);
    }

    #[actix_rt::test]
    async fn a_rider_crossing_a_border_is_free_in_the_new_region_only() {
        let (matcher, made) = counting_matcher();
        matcher.set_paused(true).await.expect("paused");
        let (before, after) = across_a_border(p(-33.87, 151.2));
        let rider = free_rider_at(&matcher, before);
        matcher.rider_moved(RiderMoved {
            rider,
            at: after,
            ts_ms: now_ms(),
        });
        let moved = matcher.stats().await.expect("stats");
        assert_eq!((moved.shards, moved.free_riders), (2, 1));
        // Gone (once every shard has heard), he is in no index and nobody's candidate.
        matcher.rider_gone(RiderGone { rider });
        let gone = matcher.stats().await.expect("stats");
        assert_eq!(gone.free_riders, 0);
        order_at(&matcher, before);
        matcher.set_paused(false).await.expect("resumed");
        assert_eq!(made.load(Ordering::SeqCst), 0);
        let waiting = matcher.stats().await.expect("stats");
        assert_eq!((waiting.free_riders, waiting.waiting_orders), (0, 1));
    }

    #[test]
    fn regions_are_parents_of_index_cells() {
        let at = p(12.9716, 77.5946);
        let region = region_of(at, RES, SHARD);
        assert_eq!(region.resolution(), SHARD);
        assert_eq!(at.cell(RES).parent(SHARD), Some(region));
        // A shard resolution as fine as the index is the index cell itself.
        assert_eq!(region_of(at, RES, RES), at.cell(RES));
    }
}
