//! The matcher's front: one cheap, cloneable handle in front of many shards.
//!
//! Shards are keyed by the H3 parent cell of the index cell at a coarse resolution (5 by
//! default, about 250 km²; `MatcherConfig::shard_resolution`): a region. A shard owns the
//! free index of the riders whose position lies in its region, and the orders it is the
//! owner of ([`owner_of`]: the pickup's region, or for a pickup near a border the lowest
//! region within reach, so that orders competing for the same riders share one matrix); it is created the first time its region sees a rider or an order, on one of a
//! small pool of arbiters (threads), so a city of several regions, or several cities, uses
//! every core. Nothing here waits on another actor: the handle routes with a few map
//! lookups under short locks, from whichever thread the caller runs on.
//!
//! Borders: a pickup near the edge of its region has free riders next door. Every shard's
//! free index is shared read-only with the others ([`Indexes`]), so a shard's candidate
//! search reads the indexes of every region within the search radius of the pickup
//! ([`regions_near`]). Two shards may then want the same rider in the same window; the
//! fleet's claim ([`Fleet::try_claim`]) lets exactly one of them offer him, and a claimed
//! rider is no one else's candidate until the claim is released (offer refused, expired or
//! withdrawn, assignment refused, delivery over, rider gone).
//!
//! Routing: a rider's messages go to the shard of their region (a rider crossing a border
//! leaves the old shard and is introduced to the new one); an order's to the shard of its
//! pickup, remembered until the order leaves the matcher.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use actix::prelude::*;
use h3o::{CellIndex, Resolution};
use uuid::Uuid;

use super::index::{FreeIndex, Position};
use super::{
    Answer, AnswerError, Answered, AssignOutcome, DispatchOrder, ManualOffer, ManualOfferError,
    ManualOfferTo, MatcherConfig, MatcherStats, RiderGone, RiderLeft, RiderMoved, RiderSnapshot,
    RiderState, SetPaused, Shard, Stats, Withdraw,
};
use crate::fleet::Fleet;
use crate::geo::{disk_k, Point};
use crate::lock;
use crate::rider::OrderCancelledMsg;

/// Every shard's free index, by region, readable by every shard.
#[derive(Clone, Default)]
pub(crate) struct Indexes(Arc<RwLock<HashMap<CellIndex, Arc<RwLock<FreeIndex>>>>>);

impl Indexes {
    pub(crate) fn get(&self, region: CellIndex) -> Option<Arc<RwLock<FreeIndex>>> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&region)
            .cloned()
    }

    fn insert(&self, region: CellIndex, index: Arc<RwLock<FreeIndex>>) {
        self.0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(region, index);
    }
}

/// The region (shard key) of a point: the parent, at `shard_res`, of its cell at the index
/// resolution `res`.
pub fn region_of(at: Point, res: Resolution, shard_res: Resolution) -> CellIndex {
    let cell = at.cell(res);
    cell.parent(shard_res).unwrap_or(cell)
}

/// Every region holding a point within `radius_m` of `at`.
///
/// Takes the cells, at a resolution two steps finer than the regions (tens of cells),
/// whose centres are within `radius_m` plus two cell edges of `at`, and collects their
/// parents. Two edges, not one (a hexagon's circumradius), because an H3 cell's
/// descendants do not tile exactly its hexagon: a point's ancestor at the walk resolution
/// can be centred a little further away than the plain hexagon suggests.
pub fn regions_near(
    at: Point,
    radius_m: f64,
    res: Resolution,
    shard_res: Resolution,
) -> Vec<CellIndex> {
    let walk_res = Resolution::try_from(u8::from(shard_res).saturating_add(2).min(u8::from(res)))
        .unwrap_or(res);
    let cell = at.cell(res);
    let centre = cell.parent(walk_res).unwrap_or(cell);
    let reach = radius_m.max(0.0) + 2.0 * walk_res.edge_length_m();
    let mut regions: Vec<CellIndex> = centre
        .grid_disk::<Vec<_>>(disk_k(reach, walk_res))
        .into_iter()
        .filter(|c| {
            let ll = h3o::LatLng::from(*c);
            Point::new(ll.lat(), ll.lng()).is_ok_and(|p| p.distance_m(at) <= reach)
        })
        .map(|c| c.parent(shard_res).unwrap_or(c))
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    regions.sort_unstable();
    regions
}

/// The region whose shard solves an order picked up at `at`: the first (lowest) of the
/// regions within the search radius ([`regions_near`]). An order deep inside a region
/// belongs to it; orders near a border, which compete for the same riders, all go to one
/// shard, which solves them in one matrix. Owning by the pickup's own region instead left
/// two shards to split a city centre on a border, and each took the riders nearest to its
/// own orders first: the `rush` scenario's saving over greedy fell from 40% to 20%.
pub fn owner_of(at: Point, radius_m: f64, res: Resolution, shard_res: Resolution) -> CellIndex {
    regions_near(at, radius_m, res, shard_res)
        .first()
        .copied()
        .unwrap_or_else(|| region_of(at, res, shard_res))
}

/// What the handle remembers of a rider: enough to introduce them to a new shard.
#[derive(Debug, Default, Clone, Copy)]
struct Route {
    region: Option<CellIndex>,
    available: bool,
    busy: bool,
    pos: Option<Position>,
}

struct Router {
    cfg: MatcherConfig,
    fleet: Fleet,
    arbiters: Vec<ArbiterHandle>,
    next_arbiter: AtomicUsize,
    shards: RwLock<HashMap<CellIndex, Addr<Shard>>>,
    indexes: Indexes,
    riders: Mutex<HashMap<Uuid, Route>>,
    orders: Mutex<HashMap<Uuid, CellIndex>>,
    paused: AtomicBool,
}

/// The matcher. Cheap to clone; see the module documentation.
#[derive(Clone)]
pub struct Matcher {
    inner: Arc<Router>,
}

impl Matcher {
    /// A matcher whose shards run on `threads` arbiters of their own. Must be called inside
    /// an actix system.
    pub fn start(cfg: MatcherConfig, fleet: Fleet, threads: usize) -> Self {
        let arbiters = (0..threads.max(1))
            .map(|_| Arbiter::new().handle())
            .collect();
        Self {
            inner: Arc::new(Router {
                cfg,
                fleet,
                arbiters,
                next_arbiter: AtomicUsize::new(0),
                shards: RwLock::new(HashMap::new()),
                indexes: Indexes::default(),
                riders: Mutex::new(HashMap::new()),
                orders: Mutex::new(HashMap::new()),
                paused: AtomicBool::new(false),
            }),
        }
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
                let (cfg, fleet, indexes) = (r.cfg.clone(), r.fleet.clone(), r.indexes.clone());
                let paused = r.paused.load(Ordering::SeqCst);
                tracing::debug!(%region, "matcher shard started");
                Shard::start_in_arbiter(arbiter, move |_| {
                    Shard::new(cfg, fleet, region, free, indexes, paused)
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

    /// The rider's availability changed, or they took or finished an order.
    pub fn rider_state(&self, msg: RiderState) {
        let region = {
            let mut riders = lock(&self.inner.riders);
            let route = riders.entry(msg.rider).or_default();
            let was_busy = route.busy;
            route.available = msg.available;
            route.busy = msg.busy;
            if was_busy && !msg.busy {
                // The delivery that held the rider is over.
                self.inner.fleet.release(msg.rider);
            }
            route.region
        };
        if let Some(region) = region {
            self.shard(region).do_send(msg);
        }
    }

    /// The rider's live position moved (the session tells every 50 m or 5 s).
    pub fn rider_moved(&self, msg: RiderMoved) {
        let region = self.region_of(msg.at);
        let (left, route) = {
            let mut riders = lock(&self.inner.riders);
            let route = riders.entry(msg.rider).or_default();
            route.pos = Some(Position {
                at: msg.at,
                ts_ms: msg.ts_ms,
            });
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
            shard.do_send(RiderState {
                rider: msg.rider,
                available: route.available,
                busy: route.busy,
            });
        }
        shard.do_send(msg);
    }

    /// The rider's session ended: every shard forgets them and closes their offers.
    pub fn rider_gone(&self, msg: RiderGone) {
        lock(&self.inner.riders).remove(&msg.rider);
        for shard in self.shards() {
            shard.do_send(msg);
        }
        self.inner.fleet.release(msg.rider);
    }

    /// An order waits for a rider. It goes to its owner's shard ([`owner_of`]).
    pub fn dispatch(&self, msg: DispatchOrder) {
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
        let region = lock(&self.inner.orders).remove(&msg.order_id);
        match region {
            Some(region) => self.shard(region).do_send(msg),
            None => {
                if let Some(session) = msg.rider.and_then(|r| self.inner.fleet.session(r)) {
                    session.do_send(OrderCancelledMsg {
                        order_id: msg.order_id,
                    });
                }
            }
        }
    }

    /// A rider's answer to an offer.
    pub async fn answer(&self, msg: Answer) -> Result<Result<Answered, AnswerError>, MailboxError> {
        match self.order_shard(msg.order_id) {
            Some(shard) => shard.send(msg).await,
            None => Ok(Err(AnswerError::Closed)),
        }
    }

    /// What the order actor said to an accepted offer.
    pub fn assign_outcome(&self, msg: AssignOutcome) {
        let region = if msg.assigned {
            // The order has left the matcher for good.
            lock(&self.inner.orders).remove(&msg.order_id)
        } else {
            lock(&self.inner.orders).get(&msg.order_id).copied()
        };
        match region {
            Some(region) => self.shard(region).do_send(msg),
            None if !msg.assigned => self.inner.fleet.release(msg.rider),
            None => {}
        }
    }

    /// Manual dispatch: offer the order to this rider now.
    pub async fn manual_offer(
        &self,
        msg: ManualOffer,
    ) -> Result<Result<(), ManualOfferError>, MailboxError> {
        let Some(shard) = self.order_shard(msg.order_id) else {
            return Ok(Err(ManualOfferError::NotDispatching));
        };
        let rider = lock(&self.inner.riders)
            .get(&msg.rider)
            .map(|route| RiderSnapshot {
                available: route.available,
                busy: route.busy,
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

    /// Holds or resumes automatic offers on every shard (and on shards started later).
    pub async fn set_paused(&self, paused: bool) -> Result<(), MailboxError> {
        self.inner.paused.store(paused, Ordering::SeqCst);
        for shard in self.shards() {
            shard.send(SetPaused(paused)).await?;
        }
        Ok(())
    }

    /// Counts summed over the shards. A shard answers after every message sent to it
    /// before, so this follows e.g. a resume's batch.
    pub async fn stats(&self) -> Result<MatcherStats, MailboxError> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
    /// the number of offers it has made. No rider here has a session, so every offer
    /// expires at once and its claim is released.
    fn counting_matcher(fleet: &Fleet) -> (Matcher, Arc<AtomicUsize>) {
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
        (Matcher::start(cfg, fleet.clone(), 2), made)
    }

    /// A free rider with a fresh fix at `at`.
    fn free_rider_at(matcher: &Matcher, at: Point) -> Uuid {
        let rider = Uuid::now_v7();
        matcher.rider_state(RiderState {
            rider,
            available: true,
            busy: false,
        });
        matcher.rider_moved(RiderMoved {
            rider,
            at,
            ts_ms: super::super::now_ms(),
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
            since_ms: super::super::now_ms(),
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
        let fleet = Fleet::new();
        let (matcher, made) = counting_matcher(&fleet);
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
        let fleet = Fleet::new();
        let (matcher, made) = counting_matcher(&fleet);
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

    #[actix_rt::test]
    async fn a_claimed_rider_is_no_shards_candidate() {
        let fleet = Fleet::new();
        let (matcher, made) = counting_matcher(&fleet);
        matcher.set_paused(true).await.expect("paused");
        let (pickup, rider_at) = across_a_border(p(19.0760, 72.8777));
        let rider = free_rider_at(&matcher, rider_at);
        order_at(&matcher, pickup);
        // Another shard holds the rider (an open offer of its own).
        assert!(fleet.try_claim(rider));
        matcher.set_paused(false).await.expect("resumed");
        assert_eq!(made.load(Ordering::SeqCst), 0);
        assert!(
            !fleet.try_claim(rider),
            "the claim is still the other shard's"
        );
        // Released, he is a candidate again at the next batch.
        fleet.release(rider);
        matcher.set_paused(false).await.expect("resumed");
        assert_eq!(made.load(Ordering::SeqCst), 1);
    }

    #[actix_rt::test]
    async fn a_rider_crossing_a_border_is_free_in_the_new_region_only() {
        let fleet = Fleet::new();
        let (matcher, made) = counting_matcher(&fleet);
        matcher.set_paused(true).await.expect("paused");
        let (before, after) = across_a_border(p(-33.87, 151.2));
        let rider = free_rider_at(&matcher, before);
        matcher.rider_moved(RiderMoved {
            rider,
            at: after,
            ts_ms: super::super::now_ms(),
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
