//! The matcher: which free rider is offered which waiting order.
//!
//! [`Matcher`] is a handle routing to shards, one per coarse H3 region ([`router`]). Each
//! [`Shard`] actor owns the picture of supply (free riders of its region in an H3
//! [`index::FreeIndex`]) and demand (its region's orders in `dispatching` without an open
//! offer). Every batch window it builds the cost matrix of estimated pickup times between
//! waiting orders and the free riders near them (its own and, near a border, the
//! neighbouring regions') and solves it with the configured [`assign::Strategy`]; each
//! chosen rider gets an offer that expires after the offer timeout. A rider who refuses or lets an offer
//! expire is never offered that order again; the order waits for the next window. One
//! order per rider: a rider holding an offer or an order is not free.
//!
//! Accepting is two steps so the order actor stays the authority: the matcher closes the
//! offer and hands back the order ([`Answer`]); the rider's session asks the order actor to
//! assign; the session reports the outcome ([`AssignOutcome`]) and a failed assignment
//! puts rider and order back.

pub mod assign;
pub mod index;
pub mod router;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, PoisonError, RwLock, RwLockWriteGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use h3o::{CellIndex, Resolution};
use uuid::Uuid;

use crate::fleet::Fleet;
use crate::geo::Point;
use crate::ports::{OfferEnd, OfferEvent, OfferLog};
use crate::protocol::{OfferInfo, Place};
use crate::rider::{OfferExpiredMsg, OfferMsg, OrderCancelledMsg};
use assign::Strategy;
use index::{FreeIndex, Position};
pub use router::Matcher;
use router::{regions_near, Indexes};

/// Nearest free riders considered for each waiting order in a batch.
pub const CANDIDATES_PER_ORDER: usize = 32;

/// Estimated seconds from a rider to a pickup. A routing engine can implement this.
pub trait Estimator: Send + Sync + 'static {
    fn pickup_seconds(&self, from: Point, to: Point) -> f64;
}

/// Straight-line distance × a detour factor ÷ a city speed.
#[derive(Debug, Clone, Copy)]
pub struct Haversine {
    pub detour: f64,
    pub speed_mps: f64,
}

impl Default for Haversine {
    fn default() -> Self {
        Self {
            detour: 1.3,
            speed_mps: 5.0,
        }
    }
}

impl Haversine {
    /// Seconds to cover `metres` of straight line: the one city-speed estimate, used by
    /// the matcher for pickups and by rider sessions for the customer's ETA.
    pub fn seconds(&self, metres: f64) -> f64 {
        metres * self.detour / self.speed_mps
    }
}

impl Estimator for Haversine {
    fn pickup_seconds(&self, from: Point, to: Point) -> f64 {
        self.seconds(from.distance_m(to))
    }
}

/// How the matcher behaves.
#[derive(Clone)]
pub struct MatcherConfig {
    pub resolution: Resolution,
    /// Shards are keyed by the parent cell at this resolution (coarser than `resolution`).
    pub shard_resolution: Resolution,
    pub search_radius_m: f64,
    pub batch_window: Duration,
    pub offer_timeout: Duration,
    /// A free rider whose last fix is older than this is not offered orders.
    pub stale_fix: Duration,
    pub strategy: Strategy,
    pub estimator: Arc<dyn Estimator>,
    /// Called with the time from order confirmed to rider accepted.
    pub on_assigned: Arc<dyn Fn(Duration) + Send + Sync>,
    /// Called with `made`, `accepted`, `rejected` or `expired` for every offer event.
    pub on_offer: Arc<dyn Fn(&'static str) + Send + Sync>,
    /// Where offers are recorded, and refusals read back for orders that come back.
    pub offer_log: Option<Arc<dyn OfferLog>>,
}

impl Default for MatcherConfig {
    fn default() -> Self {
        Self {
            resolution: Resolution::Nine,
            shard_resolution: Resolution::Five,
            search_radius_m: 5_000.0,
            batch_window: Duration::from_millis(500),
            offer_timeout: Duration::from_secs(20),
            stale_fix: Duration::from_secs(60),
            strategy: Strategy::Batched,
            estimator: Arc::new(Haversine::default()),
            on_assigned: Arc::new(|_| {}),
            on_offer: Arc::new(|_| {}),
            offer_log: None,
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[derive(Debug, Default, Clone)]
struct RiderInfo {
    available: bool,
    busy: bool,
    offered: Option<Uuid>,
    pos: Option<Position>,
}

#[derive(Debug, Clone)]
struct Pending {
    pickup: Point,
    pickup_name: Option<String>,
    dropoff: Point,
    since_ms: i64,
    excluded: HashSet<Uuid>,
    offered: Option<Uuid>,
    /// Earlier refusals (from the offer log) are known; until then the order waits.
    ready: bool,
}

impl Pending {
    /// Waiting for the next batch: no open offer, and earlier refusals known.
    fn waiting(&self) -> bool {
        self.offered.is_none() && self.ready
    }
}

struct OpenOffer {
    order_id: Uuid,
    rider_id: Uuid,
    timer: SpawnHandle,
}

/// One region's matcher; see the module documentation.
pub struct Shard {
    cfg: MatcherConfig,
    region: CellIndex,
    paused: bool,
    fleet: Fleet,
    /// This region's free riders; other shards read it for pickups near the border.
    free: Arc<RwLock<FreeIndex>>,
    indexes: Indexes,
    /// Riders whose position is in this region.
    riders: HashMap<Uuid, RiderInfo>,
    pending: HashMap<Uuid, Pending>,
    offers: HashMap<Uuid, OpenOffer>,
    /// The regions to search around each pickup point seen ([`regions_near`], about 20 µs
    /// a call), kept because pickups are pharmacies: few points, each waiting for many
    /// windows and serving many orders.
    near: HashMap<(u64, u64), Vec<CellIndex>>,
}

/// Pickup points whose search regions a shard remembers before it starts over.
const NEAR_CACHE: usize = 4_096;

impl Shard {
    fn new(
        cfg: MatcherConfig,
        fleet: Fleet,
        region: CellIndex,
        free: Arc<RwLock<FreeIndex>>,
        indexes: Indexes,
        paused: bool,
    ) -> Self {
        Self {
            free,
            indexes,
            region,
            paused,
            cfg,
            fleet,
            riders: HashMap::new(),
            pending: HashMap::new(),
            offers: HashMap::new(),
            near: HashMap::new(),
        }
    }

    fn free(&self) -> RwLockWriteGuard<'_, FreeIndex> {
        self.free.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// The nearest free, unclaimed riders with a fix newer than `min_ts` around `pickup`,
    /// from this region's index and those of the regions within the search radius.
    fn candidates(&mut self, pickup: Point, min_ts: i64) -> Vec<(Uuid, Position, f64)> {
        let radius = self.cfg.search_radius_m;
        let key = (pickup.lat().to_bits(), pickup.lng().to_bits());
        if self.near.len() >= NEAR_CACHE && !self.near.contains_key(&key) {
            self.near.clear();
        }
        let (res, shard_res) = (self.cfg.resolution, self.cfg.shard_resolution);
        let regions = self
            .near
            .entry(key)
            .or_insert_with(|| regions_near(pickup, radius, res, shard_res))
            .clone();
        let mut found = Vec::new();
        for region in regions {
            let index = if region == self.region {
                Some(self.free.clone())
            } else {
                self.indexes.get(region)
            };
            if let Some(index) = index {
                let index = index.read().unwrap_or_else(PoisonError::into_inner);
                found.extend(
                    index
                        .candidates(pickup, radius, min_ts, CANDIDATES_PER_ORDER)
                        .into_iter()
                        .filter(|(rider, _, _)| !self.fleet.is_claimed(*rider)),
                );
            }
        }
        found.sort_by(|a, b| a.2.total_cmp(&b.2).then(a.0.cmp(&b.0)));
        found.truncate(CANDIDATES_PER_ORDER);
        found
    }

    /// Puts the rider in or out of the free index as their state says.
    fn refresh(&mut self, rider: Uuid) {
        let Some(info) = self.riders.get(&rider) else {
            self.free().remove(rider);
            return;
        };
        match info.pos {
            Some(pos) if info.available && !info.busy && info.offered.is_none() => {
                self.free().upsert(rider, pos);
            }
            _ => self.free().remove(rider),
        }
    }

    /// Offers the order to the rider at `pos`, if the rider can be claimed (another shard
    /// may have offered them something in the meantime). False if no offer was made.
    fn offer(
        &mut self,
        order_id: Uuid,
        rider_id: Uuid,
        pos: Position,
        ctx: &mut Context<Self>,
    ) -> bool {
        let Some(order) = self.pending.get_mut(&order_id) else {
            return false;
        };
        if !self.fleet.try_claim(rider_id) {
            return false;
        }
        let offer_id = Uuid::now_v7();
        let made_ms = now_ms();
        let expires_ms =
            made_ms + i64::try_from(self.cfg.offer_timeout.as_millis()).unwrap_or(i64::MAX);
        let info = OfferInfo {
            offer_id,
            order_id,
            pickup: Place::at(order.pickup, order.pickup_name.clone()),
            dropoff: Place::at(order.dropoff, None),
            distance_m: pos.at.distance_m(order.pickup).round() as i64,
            expires_at: rfc3339(expires_ms),
        };
        order.offered = Some(offer_id);
        if let Some(r) = self.riders.get_mut(&rider_id) {
            r.offered = Some(offer_id);
        }
        self.refresh(rider_id);
        let timer = ctx.run_later(self.cfg.offer_timeout, move |_, ctx| {
            ctx.notify(ExpireOffer { offer_id })
        });
        self.offers.insert(
            offer_id,
            OpenOffer {
                order_id,
                rider_id,
                timer,
            },
        );
        (self.cfg.on_offer)("made");
        if let Some(log) = &self.cfg.offer_log {
            log.record(OfferEvent::Made {
                offer_id,
                order_id,
                rider_id,
                distance_m: info.distance_m,
                at_ms: made_ms,
                expires_ms,
            });
        }
        match self.fleet.session(rider_id) {
            Some(session) => session.do_send(OfferMsg(info)),
            None => ctx.notify(ExpireOffer { offer_id }),
        }
        true
    }

    /// Closes an open offer. A rider who refused or let it lapse is excluded from that
    /// order; the claim on the rider is released unless they accepted.
    fn close_offer(
        &mut self,
        offer_id: Uuid,
        end: OfferEnd,
        ctx: &mut Context<Self>,
    ) -> Option<OpenOffer> {
        let offer = self.offers.remove(&offer_id)?;
        ctx.cancel_future(offer.timer);
        let exclude = matches!(end, OfferEnd::Rejected | OfferEnd::Expired);
        if end != OfferEnd::Accepted {
            self.fleet.release(offer.rider_id);
        }
        if let Some(log) = &self.cfg.offer_log {
            log.record(OfferEvent::Ended {
                offer_id,
                end,
                at_ms: now_ms(),
            });
        }
        if let Some(order) = self.pending.get_mut(&offer.order_id) {
            order.offered = None;
            if exclude {
                order.excluded.insert(offer.rider_id);
            }
        }
        if let Some(r) = self.riders.get_mut(&offer.rider_id) {
            r.offered = None;
        }
        self.refresh(offer.rider_id);
        Some(offer)
    }

    /// One batch: waiting orders × nearby free riders, solved by the strategy.
    fn assign(&mut self, ctx: &mut Context<Self>) {
        if self.paused {
            return;
        }
        let mut waiting: Vec<(Uuid, Pending)> = self
            .pending
            .iter()
            .filter(|(_, p)| p.waiting())
            .map(|(id, p)| (*id, p.clone()))
            .collect();
        if waiting.is_empty() {
            return;
        }
        waiting.sort_by_key(|(id, p)| (p.since_ms, *id));
        let min_ts = now_ms() - i64::try_from(self.cfg.stale_fix.as_millis()).unwrap_or(i64::MAX);
        let mut rider_ids: Vec<Uuid> = Vec::new();
        let mut column: HashMap<Uuid, usize> = HashMap::new();
        let mut positions: Vec<Position> = Vec::new();
        let mut near: Vec<Vec<(usize, f64)>> = Vec::with_capacity(waiting.len());
        for (_, order) in &waiting {
            let mut row = Vec::new();
            for (rider, pos, _) in self.candidates(order.pickup, min_ts) {
                if order.excluded.contains(&rider) {
                    continue;
                }
                let col = *column.entry(rider).or_insert_with(|| {
                    rider_ids.push(rider);
                    positions.push(pos);
                    rider_ids.len() - 1
                });
                row.push((col, self.cfg.estimator.pickup_seconds(pos.at, order.pickup)));
            }
            near.push(row);
        }
        if rider_ids.is_empty() {
            return;
        }
        let costs: Vec<Vec<Option<f64>>> = near
            .into_iter()
            .map(|row| {
                let mut full = vec![None; rider_ids.len()];
                for (col, cost) in row {
                    full[col] = Some(cost);
                }
                full
            })
            .collect();
        let pairs = match self.cfg.strategy {
            Strategy::Greedy => assign::greedy(&costs),
            Strategy::Batched => assign::batched(&costs),
        };
        for (o, r) in pairs {
            self.offer(waiting[o].0, rider_ids[r], positions[r], ctx);
        }
    }
}

impl Actor for Shard {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.cfg.batch_window, |act, ctx| act.assign(ctx));
    }
}

/// A rider's state as their session sees it.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct RiderState {
    pub rider: Uuid,
    pub available: bool,
    /// Holding an order.
    pub busy: bool,
}

/// A rider's new live position.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct RiderMoved {
    pub rider: Uuid,
    pub at: Point,
    pub ts_ms: i64,
}

/// The rider's session ended (grace period over).
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct RiderGone {
    pub rider: Uuid,
}

/// The rider moved to another region: this shard forgets their position (offers it made
/// them stay open).
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
struct RiderLeft {
    rider: Uuid,
}

/// An order entered `dispatching` (or was rehydrated in it).
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct DispatchOrder {
    pub order_id: Uuid,
    pub pickup: Point,
    pub pickup_name: Option<String>,
    pub dropoff: Point,
    /// When the order was confirmed (epoch ms), for the latency metric.
    pub since_ms: i64,
}

/// An order left dispatching without the matcher (cancelled, failed, delivered elsewhere);
/// its assigned rider, if any, is told.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct Withdraw {
    pub order_id: Uuid,
    pub rider: Option<Uuid>,
}

/// A rider's answer to an offer.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "Result<Answered, AnswerError>")]
pub struct Answer {
    pub offer_id: Uuid,
    /// The order the offer was for (from the offer), which says which shard made it.
    pub order_id: Uuid,
    pub rider: Uuid,
    pub accept: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Answered {
    Rejected,
    /// The order is this rider's to take to the order actor.
    Accepted {
        order_id: Uuid,
        pickup: Place,
        dropoff: Place,
        since_ms: i64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    #[error("no such offer")]
    NotFound,
    #[error("the offer is no longer open")]
    Closed,
}

/// What the order actor said to an accepted offer.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct AssignOutcome {
    pub order_id: Uuid,
    pub rider: Uuid,
    pub assigned: bool,
    pub since_ms: i64,
}

/// Manual dispatch: offer `order_id` to `rider` now.
#[derive(Debug, Clone, Copy)]
pub struct ManualOffer {
    pub order_id: Uuid,
    pub rider: Uuid,
}

/// What the router knows of a rider, for a manual offer by a shard that may not hold them.
#[derive(Debug, Clone, Copy)]
struct RiderSnapshot {
    available: bool,
    busy: bool,
    pos: Option<Position>,
}

#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "Result<(), ManualOfferError>")]
struct ManualOfferTo {
    order_id: Uuid,
    rider_id: Uuid,
    rider: Option<RiderSnapshot>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManualOfferError {
    #[error("the order is not waiting for a rider")]
    NotDispatching,
    #[error("the rider is offline")]
    Offline,
    #[error("the rider is not free")]
    Busy,
}

#[derive(Message)]
#[rtype(result = "()")]
struct ExpireOffer {
    offer_id: Uuid,
}

/// Holds (or resumes) automatic offers, e.g. while an operator sorts out an incident.
/// Manual dispatch still works. Resuming runs a batch at once.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct SetPaused(pub bool);

impl Handler<SetPaused> for Shard {
    type Result = ();
    fn handle(&mut self, SetPaused(paused): SetPaused, ctx: &mut Context<Self>) {
        self.paused = paused;
        if !paused {
            self.assign(ctx);
        }
    }
}

/// Counts for tests and metrics.
#[derive(Message)]
#[rtype(result = "MatcherStats")]
pub struct Stats;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MatcherStats {
    pub free_riders: usize,
    pub waiting_orders: usize,
    pub open_offers: usize,
    /// Regions with a shard (summed stats only).
    pub shards: usize,
}

impl Handler<RiderState> for Shard {
    type Result = ();
    fn handle(&mut self, msg: RiderState, _: &mut Context<Self>) {
        let info = self.riders.entry(msg.rider).or_default();
        info.available = msg.available;
        info.busy = msg.busy;
        self.refresh(msg.rider);
    }
}

impl Handler<RiderMoved> for Shard {
    type Result = ();
    fn handle(&mut self, msg: RiderMoved, _: &mut Context<Self>) {
        let info = self.riders.entry(msg.rider).or_default();
        info.pos = Some(Position {
            at: msg.at,
            ts_ms: msg.ts_ms,
        });
        let position = Position {
            at: msg.at,
            ts_ms: msg.ts_ms,
        };
        let mut free = self.free();
        if free.contains(msg.rider) {
            free.upsert(msg.rider, position);
        } else {
            drop(free);
            self.refresh(msg.rider);
        }
    }
}

impl Handler<RiderLeft> for Shard {
    type Result = ();
    fn handle(&mut self, msg: RiderLeft, _: &mut Context<Self>) {
        self.riders.remove(&msg.rider);
        self.free().remove(msg.rider);
    }
}

impl Handler<RiderGone> for Shard {
    type Result = ();
    fn handle(&mut self, msg: RiderGone, ctx: &mut Context<Self>) {
        let open: Vec<Uuid> = self
            .offers
            .iter()
            .filter(|(_, o)| o.rider_id == msg.rider)
            .map(|(id, _)| *id)
            .collect();
        for offer_id in open {
            self.close_offer(offer_id, OfferEnd::Expired, ctx);
        }
        self.riders.remove(&msg.rider);
        self.free().remove(msg.rider);
    }
}

impl Handler<DispatchOrder> for Shard {
    type Result = ();
    fn handle(&mut self, msg: DispatchOrder, ctx: &mut Context<Self>) {
        if self.pending.contains_key(&msg.order_id) {
            return;
        }
        let order_id = msg.order_id;
        self.pending.insert(
            order_id,
            Pending {
                pickup: msg.pickup,
                pickup_name: msg.pickup_name,
                dropoff: msg.dropoff,
                since_ms: msg.since_ms,
                excluded: HashSet::new(),
                offered: None,
                ready: self.cfg.offer_log.is_none(),
            },
        );
        let Some(log) = self.cfg.offer_log.clone() else {
            return;
        };
        // An order back after a restart keeps away the riders who already refused it.
        let refused = async move { log.refused_by(order_id).await };
        ctx.spawn(refused.into_actor(self).map(move |refused, act, _| {
            let Some(order) = act.pending.get_mut(&order_id) else {
                return;
            };
            match refused {
                Ok(riders) => order.excluded.extend(riders),
                Err(e) => tracing::warn!(
                    %order_id,
                    error = %e,
                    "earlier refusals unknown; the order is dispatched without them"
                ),
            }
            order.ready = true;
        }));
    }
}

impl Handler<Withdraw> for Shard {
    type Result = ();
    fn handle(&mut self, msg: Withdraw, ctx: &mut Context<Self>) {
        if let Some(order) = self.pending.get(&msg.order_id) {
            if let Some(offer_id) = order.offered {
                if let Some(offer) = self.close_offer(offer_id, OfferEnd::Withdrawn, ctx) {
                    if let Some(s) = self.fleet.session(offer.rider_id) {
                        s.do_send(OfferExpiredMsg { offer_id });
                    }
                }
            }
        }
        self.pending.remove(&msg.order_id);
        if let Some(rider) = msg.rider {
            if let Some(s) = self.fleet.session(rider) {
                s.do_send(OrderCancelledMsg {
                    order_id: msg.order_id,
                });
            }
        }
    }
}

impl Handler<Answer> for Shard {
    type Result = Result<Answered, AnswerError>;
    fn handle(&mut self, msg: Answer, ctx: &mut Context<Self>) -> Self::Result {
        match self.offers.get(&msg.offer_id) {
            None => return Err(AnswerError::Closed),
            Some(o) if o.rider_id != msg.rider => return Err(AnswerError::NotFound),
            Some(_) => {}
        }
        if !msg.accept {
            self.close_offer(msg.offer_id, OfferEnd::Rejected, ctx);
            (self.cfg.on_offer)("rejected");
            return Ok(Answered::Rejected);
        }
        (self.cfg.on_offer)("accepted");
        // The claim stays: the rider is on their way to taking the order.
        let offer = self
            .close_offer(msg.offer_id, OfferEnd::Accepted, ctx)
            .ok_or(AnswerError::Closed)?;
        let order = self
            .pending
            .remove(&offer.order_id)
            .ok_or(AnswerError::Closed)?;
        if let Some(r) = self.riders.get_mut(&msg.rider) {
            r.busy = true;
        }
        self.refresh(msg.rider);
        Ok(Answered::Accepted {
            order_id: offer.order_id,
            pickup: Place::at(order.pickup, order.pickup_name.clone()),
            dropoff: Place::at(order.dropoff, None),
            since_ms: order.since_ms,
        })
    }
}

impl Handler<AssignOutcome> for Shard {
    type Result = ();
    fn handle(&mut self, msg: AssignOutcome, _: &mut Context<Self>) {
        if msg.assigned {
            let waited = u64::try_from(now_ms() - msg.since_ms).unwrap_or(0);
            (self.cfg.on_assigned)(Duration::from_millis(waited));
        } else {
            self.fleet.release(msg.rider);
            if let Some(r) = self.riders.get_mut(&msg.rider) {
                r.busy = false;
                self.refresh(msg.rider);
            }
        }
    }
}

impl Handler<ManualOfferTo> for Shard {
    type Result = Result<(), ManualOfferError>;
    fn handle(&mut self, msg: ManualOfferTo, ctx: &mut Context<Self>) -> Self::Result {
        let order = self
            .pending
            .get(&msg.order_id)
            .ok_or(ManualOfferError::NotDispatching)?;
        if order.offered.is_some() {
            // An admin overrides the matcher's pending offer.
            if let Some(offer_id) = order.offered {
                if let Some(offer) = self.close_offer(offer_id, OfferEnd::Withdrawn, ctx) {
                    if let Some(s) = self.fleet.session(offer.rider_id) {
                        s.do_send(OfferExpiredMsg { offer_id });
                    }
                }
            }
        }
        if self.fleet.session(msg.rider_id).is_none()
            || !self.fleet.view(msg.rider_id).is_some_and(|v| v.online)
        {
            return Err(ManualOfferError::Offline);
        }
        let info = msg.rider.ok_or(ManualOfferError::Offline)?;
        let pos = match info.pos {
            Some(pos) if info.available && !info.busy => pos,
            _ => return Err(ManualOfferError::Busy),
        };
        // The claim, not a look at it, decides: another shard may be offering him
        // something at this very moment.
        if !self.offer(msg.order_id, msg.rider_id, pos, ctx) {
            return Err(ManualOfferError::Busy);
        }
        Ok(())
    }
}

impl Handler<ExpireOffer> for Shard {
    type Result = ();
    fn handle(&mut self, msg: ExpireOffer, ctx: &mut Context<Self>) {
        if let Some(offer) = self.close_offer(msg.offer_id, OfferEnd::Expired, ctx) {
            (self.cfg.on_offer)("expired");
            if let Some(s) = self.fleet.session(offer.rider_id) {
                s.do_send(OfferExpiredMsg {
                    offer_id: msg.offer_id,
                });
            }
        }
    }
}

impl Handler<Stats> for Shard {
    type Result = MessageResult<Stats>;
    fn handle(&mut self, _: Stats, _: &mut Context<Self>) -> Self::Result {
        MessageResult(MatcherStats {
            free_riders: self.free().len(),
            waiting_orders: self.pending.values().filter(|p| p.waiting()).count(),
            open_offers: self.offers.len(),
            shards: 1,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_epoch_millis() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_764_000_000_123), "2025-11-24T16:00:00.123Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }
}
