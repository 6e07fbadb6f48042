//! One region's matcher: the actor that owns the picture of supply (the region's riders and
//! its free index) and demand (the orders it owns), runs a batch every window and makes,
//! expires and closes offers.
//!
//! A rider is free here exactly when the phase their session last reported is
//! [`RiderPhase::Free`], their position is known, and this shard has no offer out to them.
//! Nothing else marks a rider busy or free: when an offer or a delivery ends, the session's
//! next phase says so. An offer is made by asking the rider's session, which takes it only
//! if the rider is still free (two shards near a border may pick the same rider in the
//! same instant); an offer declined that way is withdrawn and the order waits for the next
//! batch.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, PoisonError, RwLock, RwLockWriteGuard};
use std::time::Duration;

use actix::prelude::*;
use h3o::CellIndex;
use uuid::Uuid;

use super::assign::{self, Strategy};
use super::config::MatcherConfig;
use super::index::{FreeIndex, Position};
use super::messages::{
    Answer, AnswerError, Answered, AssignOutcome, CheckOffer, DispatchOrder, Inboxes,
    ManualOfferError, ManualOfferTo, MatcherStats, OfferOf, Retire, RiderGone, RiderLeft,
    RiderMoved, RiderPhaseChanged, SetPaused, Stats, Withdraw,
};
use super::regions::{regions_near, Indexes};
use crate::geo::Point;
use crate::model::RiderPhase;
use crate::ports::{BoxFuture, OfferEnd, OfferEvent};
use crate::protocol::{OfferInfo, Place};

/// Nearest free riders considered for each waiting order in a batch.
pub const CANDIDATES_PER_ORDER: usize = 32;

/// Pickup points whose search regions a shard remembers before it starts over.
const NEAR_CACHE: usize = 4_096;

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A rider of this region, as their session last reported.
#[derive(Debug, Clone)]
struct RiderInfo {
    phase: RiderPhase,
    pos: Option<Position>,
}

impl Default for RiderInfo {
    fn default() -> Self {
        Self {
            phase: RiderPhase::Offline,
            pos: None,
        }
    }
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
    /// As the rider was told, for a session that starts again elsewhere (cluster).
    info: OfferInfo,
}

/// See the module documentation.
pub struct Shard {
    cfg: MatcherConfig,
    region: CellIndex,
    paused: bool,
    /// How to reach riders, by id.
    inboxes: Inboxes,
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

impl Shard {
    pub(crate) fn new(
        cfg: MatcherConfig,
        inboxes: Inboxes,
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
            inboxes,
            riders: HashMap::new(),
            pending: HashMap::new(),
            offers: HashMap::new(),
            near: HashMap::new(),
        }
    }

    fn free(&self) -> RwLockWriteGuard<'_, FreeIndex> {
        self.free.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn has_offer(&self, rider: Uuid) -> bool {
        self.offers.values().any(|o| o.rider_id == rider)
    }

    /// The nearest free riders with a fix newer than `min_ts` around `pickup`, from this
    /// region's index and those of the regions within the search radius, except those
    /// in `busy` (riders this shard has an offer out to).
    fn candidates(
        &mut self,
        pickup: Point,
        min_ts: i64,
        busy: &HashSet<Uuid>,
    ) -> Vec<(Uuid, Position, f64)> {
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
                        .filter(|(rider, _, _)| !busy.contains(rider)),
                );
            }
        }
        found.sort_by(|a, b| a.2.total_cmp(&b.2).then(a.0.cmp(&b.0)));
        found.truncate(CANDIDATES_PER_ORDER);
        found
    }

    /// Puts the rider in or out of the free index: in exactly when their reported phase
    /// is free, their position is known and no offer of this shard is out to them.
    fn refresh(&mut self, rider: Uuid) {
        let free_at = self
            .riders
            .get(&rider)
            .filter(|info| info.phase == RiderPhase::Free)
            .and_then(|info| info.pos)
            .filter(|_| !self.has_offer(rider));
        match free_at {
            Some(pos) => {
                self.free().upsert(rider, pos);
            }
            None => {
                self.free().remove(rider);
            }
        }
    }

    /// Offers the order to the rider at `pos` and asks the rider's session to take it.
    /// The offer's id and the session's answer (true: taken), or `None` if the order is
    /// not waiting here.
    fn offer(
        &mut self,
        order_id: Uuid,
        rider_id: Uuid,
        pos: Position,
        ctx: &mut Context<Self>,
    ) -> Option<(Uuid, Option<BoxFuture<'static, bool>>)> {
        let order = self.pending.get_mut(&order_id)?;
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
        let timer = ctx.run_later(self.cfg.offer_timeout, move |_, ctx| {
            ctx.notify(ExpireOffer { offer_id })
        });
        self.offers.insert(
            offer_id,
            OpenOffer {
                order_id,
                rider_id,
                timer,
                info: info.clone(),
            },
        );
        self.refresh(rider_id);
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
        let asked = self.inboxes.get(rider_id).map(|i| i.offer(info));
        if asked.is_none() {
            ctx.notify(ExpireOffer { offer_id });
        }
        Some((offer_id, asked))
    }

    /// Makes an offer and, if the rider's session declines it, withdraws it again.
    fn offer_and_settle(
        &mut self,
        order_id: Uuid,
        rider_id: Uuid,
        pos: Position,
        ctx: &mut Context<Self>,
    ) {
        if let Some((offer_id, Some(asked))) = self.offer(order_id, rider_id, pos, ctx) {
            ctx.spawn(asked.into_actor(self).map(move |taken, act, ctx| {
                act.settle(offer_id, taken, ctx);
            }));
        }
    }

    /// The session's answer to an offer: one it declined is withdrawn (the rider is not
    /// excluded from the order, which waits for the next batch).
    fn settle(&mut self, offer_id: Uuid, taken: bool, ctx: &mut Context<Self>) {
        if !taken {
            self.close_offer(offer_id, OfferEnd::Withdrawn, ctx);
        }
    }

    /// Closes an open offer. A rider who refused or let it lapse is excluded from that
    /// order.
    fn close_offer(
        &mut self,
        offer_id: Uuid,
        end: OfferEnd,
        ctx: &mut Context<Self>,
    ) -> Option<OpenOffer> {
        let offer = self.offers.remove(&offer_id)?;
        ctx.cancel_future(offer.timer);
        let exclude = matches!(end, OfferEnd::Rejected | OfferEnd::Expired);
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
        self.refresh(offer.rider_id);
        Some(offer)
    }

    /// Closes the offer and tells the rider it is gone.
    fn take_back(&mut self, offer_id: Uuid, end: OfferEnd, ctx: &mut Context<Self>) {
        if let Some(offer) = self.close_offer(offer_id, end, ctx) {
            if let Some(inbox) = self.inboxes.get(offer.rider_id) {
                inbox.offer_gone(offer_id);
            }
        }
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
        let busy: HashSet<Uuid> = self.offers.values().map(|o| o.rider_id).collect();
        let mut rider_ids: Vec<Uuid> = Vec::new();
        let mut column: HashMap<Uuid, usize> = HashMap::new();
        let mut positions: Vec<Position> = Vec::new();
        let mut near: Vec<Vec<(usize, f64)>> = Vec::with_capacity(waiting.len());
        for (_, order) in &waiting {
            let mut row = Vec::new();
            for (rider, pos, _) in self.candidates(order.pickup, min_ts, &busy) {
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
            self.offer_and_settle(waiting[o].0, rider_ids[r], positions[r], ctx);
        }
    }
}

impl Actor for Shard {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.cfg.batch_window, |act, ctx| act.assign(ctx));
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct ExpireOffer {
    offer_id: Uuid,
}

impl Handler<SetPaused> for Shard {
    type Result = ();
    fn handle(&mut self, SetPaused(paused): SetPaused, ctx: &mut Context<Self>) {
        self.paused = paused;
        if !paused {
            self.assign(ctx);
        }
    }
}

impl Handler<RiderPhaseChanged> for Shard {
    type Result = ();
    fn handle(&mut self, msg: RiderPhaseChanged, _: &mut Context<Self>) {
        self.riders.entry(msg.rider).or_default().phase = msg.phase;
        self.refresh(msg.rider);
    }
}

impl Handler<RiderMoved> for Shard {
    type Result = ();
    fn handle(&mut self, msg: RiderMoved, _: &mut Context<Self>) {
        let position = Position {
            at: msg.at,
            ts_ms: msg.ts_ms,
        };
        self.riders.entry(msg.rider).or_default().pos = Some(position);
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
        if let Some(offer_id) = self.pending.get(&msg.order_id).and_then(|o| o.offered) {
            self.take_back(offer_id, OfferEnd::Withdrawn, ctx);
        }
        self.pending.remove(&msg.order_id);
        if let Some(inbox) = msg.rider.and_then(|r| self.inboxes.get(r)) {
            inbox.order_cancelled(msg.order_id);
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
        // The rider stays out of the free index: their session reports them offered
        // until the order actor has answered, then on the delivery or free again.
        let offer = self
            .close_offer(msg.offer_id, OfferEnd::Accepted, ctx)
            .ok_or(AnswerError::Closed)?;
        let order = self
            .pending
            .remove(&offer.order_id)
            .ok_or(AnswerError::Closed)?;
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
            let waited = u64::try_from(now_ms().saturating_sub(msg.since_ms)).unwrap_or(0);
            (self.cfg.on_assigned)(Duration::from_millis(waited));
        }
    }
}

impl Handler<ManualOfferTo> for Shard {
    type Result = ResponseActFuture<Self, Result<(), ManualOfferError>>;
    fn handle(&mut self, msg: ManualOfferTo, ctx: &mut Context<Self>) -> Self::Result {
        let refuse = |e| -> Self::Result { Box::pin(actix::fut::ready(Err(e))) };
        let Some(order) = self.pending.get(&msg.order_id) else {
            return refuse(ManualOfferError::NotDispatching);
        };
        // An admin overrides the matcher's pending offer.
        if let Some(offer_id) = order.offered {
            self.take_back(offer_id, OfferEnd::Withdrawn, ctx);
        }
        let rider = match msg.rider {
            Some(r) if r.connected && self.inboxes.get(msg.rider_id).is_some() => r,
            _ => return refuse(ManualOfferError::Offline),
        };
        let pos = match rider.pos {
            Some(pos) if rider.phase == RiderPhase::Free && !self.has_offer(msg.rider_id) => pos,
            _ => return refuse(ManualOfferError::Busy),
        };
        // The session, not a look at the phase, decides: another shard may be offering
        // him something at this very moment.
        let Some((offer_id, Some(asked))) = self.offer(msg.order_id, msg.rider_id, pos, ctx) else {
            return refuse(ManualOfferError::Busy);
        };
        Box::pin(asked.into_actor(self).map(move |taken, act, ctx| {
            act.settle(offer_id, taken, ctx);
            if taken {
                Ok(())
            } else {
                Err(ManualOfferError::Busy)
            }
        }))
    }
}

impl Handler<ExpireOffer> for Shard {
    type Result = ();
    fn handle(&mut self, msg: ExpireOffer, ctx: &mut Context<Self>) {
        if self.offers.contains_key(&msg.offer_id) {
            (self.cfg.on_offer)("expired");
            self.take_back(msg.offer_id, OfferEnd::Expired, ctx);
        }
    }
}

impl Handler<Retire> for Shard {
    type Result = ();
    fn handle(&mut self, _: Retire, ctx: &mut Context<Self>) {
        let open: Vec<Uuid> = self.offers.keys().copied().collect();
        for offer_id in open {
            self.take_back(offer_id, OfferEnd::Withdrawn, ctx);
        }
        ctx.stop();
    }
}

impl Handler<CheckOffer> for Shard {
    type Result = ();
    fn handle(&mut self, msg: CheckOffer, _: &mut Context<Self>) {
        let open = self
            .offers
            .get(&msg.offer)
            .is_some_and(|o| o.rider_id == msg.rider);
        if !open {
            if let Some(inbox) = self.inboxes.get(msg.rider) {
                inbox.offer_gone(msg.offer);
            }
        }
    }
}

impl Handler<OfferOf> for Shard {
    type Result = Option<OfferInfo>;
    fn handle(&mut self, msg: OfferOf, _: &mut Context<Self>) -> Option<OfferInfo> {
        self.offers
            .values()
            .find(|o| o.rider_id == msg.rider)
            .map(|o| o.info.clone())
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
