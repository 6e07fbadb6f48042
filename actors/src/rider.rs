//! Rider sessions: one actor per online rider, outliving its socket.
//!
//! The socket (transport, in the server) decodes, rate-limits and heartbeats; the session
//! holds what the rider is doing: availability, last accepted fix, pending offer, active
//! order. When the socket drops, the session waits out a grace period; a reconnect in that
//! time gets everything back in its `welcome`. After the grace period the rider is offline:
//! a pending offer is given up, an active order keeps its rider (and comes back from
//! storage on the next connect).
//!
//! [`check_fix`] is the location rulebook as a pure function.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use uuid::Uuid;

use crate::fleet::{Fleet, LastLocation};
use crate::geo::Point;
use crate::matcher::{
    Answer, AnswerError, Answered, AssignOutcome, Matcher, RiderGone, RiderMoved, RiderState,
};
use crate::model::RiderPhase;
use crate::order::{Command, OrderError, OrderRegistry, OrderStatus};
use crate::ports::{Event, EventBus, EventKind, RiderDirectory, TrailSink};
use crate::protocol::{OfferInfo, Outbound, Place};

/// Fixes further ahead of the server clock than this are refused.
pub const MAX_FUTURE_MS: i64 = 60_000;
/// Fixes older than this (24 h) are refused: no phone buffers a day of points, and a
/// bounded `ts` keeps every difference between two accepted fixes far from overflow.
pub const MAX_AGE_MS: i64 = 86_400_000;
/// A move faster than this between two fixes is refused.
pub const MAX_SPEED_MPS: f64 = 70.0;
/// A fix vaguer than this does not move the live position.
pub const MAX_ACCURACY_M: f64 = 100.0;
/// Trail points are kept at most this often, or after this many metres.
pub const TRAIL_EVERY_MS: i64 = 10_000;
pub const TRAIL_EVERY_M: f64 = 50.0;
/// The matcher hears of a moving rider at most every this many metres or milliseconds.
pub const MATCHER_EVERY_M: f64 = 50.0;
pub const MATCHER_EVERY_MS: i64 = 5_000;
/// How near the drop-off a rider counts as arriving, in metres.
pub const ARRIVING_M: f64 = 300.0;
/// Weight of a new measurement in the smoothed ETA (the rest is the countdown of the
/// previous estimate).
const ETA_GAIN: f64 = 0.25;

/// One GPS fix, already checked for finite, in-range coordinates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fix {
    pub at: Point,
    pub ts_ms: i64,
    pub accuracy_m: Option<f64>,
    pub speed_mps: Option<f64>,
    pub heading: Option<f64>,
}

/// What a valid fix does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FixEffect {
    /// It becomes the live position.
    Moves,
    /// Kept out of the live position: older than the last fix, or too vague.
    Ignored,
}

/// Why a fix was refused.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Refusal {
    /// `ts` more than 60 s ahead of the server.
    Future,
    /// `ts` more than 24 h behind the server.
    Stale,
    /// Faster than [`MAX_SPEED_MPS`] since the last fix (metres per second).
    Jump(f64),
}

impl Refusal {
    /// Metric label.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Future => "future",
            Self::Stale => "stale",
            Self::Jump(_) => "jump",
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Future => f.write_str("ts is more than 60 s in the future"),
            Self::Stale => f.write_str("ts is more than 24 h in the past"),
            Self::Jump(speed) => write!(f, "impossible jump: {speed:.0} m/s since the last fix"),
        }
    }
}

/// The location rules: `Err` with the reason for a fix that must be refused.
pub fn check_fix(last: Option<&Fix>, fix: &Fix, now_ms: i64) -> Result<FixEffect, Refusal> {
    if fix.ts_ms > now_ms.saturating_add(MAX_FUTURE_MS) {
        return Err(Refusal::Future);
    }
    if fix.ts_ms < now_ms.saturating_sub(MAX_AGE_MS) {
        return Err(Refusal::Stale);
    }
    if let Some(last) = last {
        if fix.ts_ms <= last.ts_ms {
            return Ok(FixEffect::Ignored);
        }
        let dt = fix.ts_ms.saturating_sub(last.ts_ms) as f64 / 1000.0;
        let speed = last.at.distance_m(fix.at) / dt;
        if speed > MAX_SPEED_MPS {
            return Err(Refusal::Jump(speed));
        }
    }
    if fix.accuracy_m.is_some_and(|a| a > MAX_ACCURACY_M) {
        return Ok(FixEffect::Ignored);
    }
    Ok(FixEffect::Moves)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// What every session needs.
pub struct RiderDeps {
    pub fleet: Fleet,
    pub matcher: Matcher,
    pub orders: OrderRegistry,
    pub directory: Arc<dyn RiderDirectory>,
    pub trail: Arc<dyn TrailSink>,
    pub grace: Duration,
    /// Where `rider.online` / `rider.offline` are announced.
    pub bus: Arc<dyn EventBus>,
    /// Customers watching orders (rider positions go to them).
    pub watchers: crate::tracking::Watchers,
}

/// Seconds to go for a rider at `at` on an order (to the pickup then the drop-off before
/// pick-up, straight to the drop-off after), at the matcher's city speed.
pub fn eta_seconds(at: Point, pickup: Point, dropoff: Point, picked_up: bool) -> i64 {
    let metres = if picked_up {
        at.distance_m(dropoff)
    } else {
        at.distance_m(pickup) + pickup.distance_m(dropoff)
    };
    crate::matcher::Haversine::default().seconds(metres).round() as i64
}

/// An ETA that does not jump around with GPS noise.
///
/// Between fixes the previous estimate counts down with the clock; a new measurement then
/// pulls it only part of the way ([`ETA_GAIN`]), so a noisy fix moves the ETA by a quarter
/// of its error while a real change (a detour, a traffic jam) shows within a few fixes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SmoothedEta {
    eta_s: f64,
    at_ms: i64,
}

impl SmoothedEta {
    /// Folds in a measurement `raw_s` taken at `at_ms`; returns the smoothed seconds.
    pub fn update(previous: Option<Self>, raw_s: i64, at_ms: i64) -> Self {
        let raw = raw_s as f64;
        let eta_s = match previous {
            None => raw,
            Some(p) => {
                let elapsed_s = (at_ms - p.at_ms).max(0) as f64 / 1000.0;
                let predicted = (p.eta_s - elapsed_s).max(0.0);
                predicted + ETA_GAIN * (raw - predicted)
            }
        };
        Self { eta_s, at_ms }
    }

    pub fn seconds(self) -> i64 {
        self.eta_s.round() as i64
    }
}

/// Announces a rider coming online or going offline (fire and forget).
fn announce(deps: &Arc<RiderDeps>, rider: Uuid, kind: EventKind) {
    announce_order(deps, rider, None, kind);
}

/// Announces a rider event, about an order or not (fire and forget).
fn announce_order(deps: &Arc<RiderDeps>, rider: Uuid, order_id: Option<Uuid>, kind: EventKind) {
    let bus = deps.bus.clone();
    actix::spawn(async move {
        let event = Event {
            id: Uuid::now_v7(),
            kind,
            order_id,
            customer_id: None,
            rider_id: Some(rider),
            pharmacy_id: None,
            from_status: None,
            to_status: None,
            at_ms: now_ms(),
        };
        if let Err(e) = bus.publish(event).await {
            tracing::warn!(rider_id = %rider, error = %e, "rider event not published");
        }
    });
}

/// Finds or starts riders' sessions. Cheap to clone.
#[derive(Clone)]
pub struct Riders {
    deps: Arc<RiderDeps>,
}

impl Riders {
    pub fn new(deps: RiderDeps) -> Self {
        Self {
            deps: Arc::new(deps),
        }
    }

    /// The rider's session, started (supervised, on the caller's arbiter) if it has none.
    pub fn session(&self, rider: Uuid) -> Addr<RiderSession> {
        let deps = self.deps.clone();
        self.deps.fleet.session_or_start(rider, move || {
            Supervisor::start(move |_| RiderSession::new(rider, deps))
        })
    }

    pub fn fleet(&self) -> &Fleet {
        &self.deps.fleet
    }

    pub fn matcher(&self) -> &Matcher {
        &self.deps.matcher
    }
}

/// A frame for the socket.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct ToSocket(pub Outbound);

#[derive(Debug, Clone)]
struct Active {
    order_id: Uuid,
    status: OrderStatus,
    last_trail: Option<(Point, i64)>,
    pickup: Option<Point>,
    dropoff: Option<Point>,
    /// What the customers watching were last told.
    eta: Option<SmoothedEta>,
    /// Whether the customer has been told the rider is arriving.
    arriving_told: bool,
}

impl Active {
    fn new(
        order_id: Uuid,
        status: OrderStatus,
        pickup: Option<Point>,
        dropoff: Option<Point>,
    ) -> Self {
        Self {
            order_id,
            status,
            last_trail: None,
            pickup,
            dropoff,
            eta: None,
            arriving_told: false,
        }
    }
}

/// See the module documentation.
pub struct RiderSession {
    rider: Uuid,
    deps: Arc<RiderDeps>,
    socket: Option<(Uuid, Recipient<ToSocket>)>,
    available: bool,
    last: Option<Fix>,
    offer: Option<OfferInfo>,
    active: Option<Active>,
    /// `active` was read from storage since the session (re)started, so a report about
    /// any other order can be answered from memory.
    active_known: bool,
    grace: Option<SpawnHandle>,
    /// Position and time last sent to the matcher, and time last written to the fleet.
    told_matcher: Option<(Point, i64)>,
    told_fleet: Option<i64>,
}

impl RiderSession {
    pub fn new(rider: Uuid, deps: Arc<RiderDeps>) -> Self {
        Self {
            rider,
            deps,
            socket: None,
            available: false,
            last: None,
            offer: None,
            active: None,
            active_known: false,
            grace: None,
            told_matcher: None,
            told_fleet: None,
        }
    }

    fn send(&self, frame: Outbound) {
        if let Some((_, socket)) = &self.socket {
            socket.do_send(ToSocket(frame));
        }
    }

    /// The answer to a report about an order that is not this rider's active one, from
    /// memory alone: no storage read, no order actor started, however many a rider sends.
    /// `None` when the order is the active one (or the session could not read which one
    /// is, and the order actor must judge).
    fn not_my_order(&self, order_id: Uuid) -> Option<RiderError> {
        let active = self.active.as_ref().is_some_and(|a| a.order_id == order_id);
        if active || !self.active_known {
            return None;
        }
        Some(if self.deps.orders.get(order_id).is_some() {
            ("forbidden", "this order is not assigned to you".to_owned())
        } else {
            ("not_found", "no such active order".to_owned())
        })
    }

    fn state(&self) -> RiderPhase {
        RiderPhase::of(
            self.available && self.socket.is_some(),
            self.offer.is_some(),
            self.active.is_some(),
        )
    }

    /// Tells the matcher and the fleet view what this rider is doing now.
    fn publish(&self) {
        let available = self.available && self.socket.is_some();
        self.deps.matcher.rider_state(RiderState {
            rider: self.rider,
            available,
            busy: self.active.is_some(),
        });
        let (state, online, active) = (
            self.state(),
            self.socket.is_some(),
            self.active.as_ref().map(|a| a.order_id),
        );
        let last = self.last;
        let (avail, rider) = (self.available, self.rider);
        self.deps.fleet.update(rider, |v| {
            v.online = online;
            v.available = avail;
            v.state = state;
            v.active_order_id = active;
            if let Some(f) = last {
                v.last_location = Some(LastLocation {
                    lat: f.at.lat(),
                    lng: f.at.lng(),
                    ts: f.ts_ms,
                });
            }
        });
    }

    fn welcome(&self, ctx: &mut Context<Self>) {
        let (rider, available, offer) = (self.rider, self.available, self.offer.clone());
        let directory = self.deps.directory.clone();
        let active = self.active.as_ref().map(|a| a.order_id);
        ctx.spawn(
            actix::fut::wrap_future::<_, Self>(async move {
                match active {
                    Some(id) => directory.order_for_rider(id).await.ok().flatten(),
                    None => None,
                }
            })
            .map(move |order, act, _| {
                act.send(Outbound::Welcome {
                    rider_id: rider,
                    available,
                    active_order: order,
                    pending_offer: offer,
                });
            }),
        );
    }
}

impl Actor for RiderSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if self.grace.is_none() && self.socket.is_none() && self.last.is_none() {
            announce(&self.deps, self.rider, EventKind::RiderOnline);
        }
        // A rider's active order lives in storage: load it before anything else, so a
        // restarted server (or a session restarted by its supervisor) knows it.
        let directory = self.deps.directory.clone();
        let rider = self.rider;
        ctx.wait(
            actix::fut::wrap_future::<_, Self>(async move { directory.active_order(rider).await }).map(|found, act, _| {
                match found {
                    Ok(Some(record)) => {
                        act.active_known = true;
                        act.active = Some(Active::new(
                            record.id,
                            record.status,
                            Some(record.pickup),
                            Some(record.dropoff),
                        ))
                    }
                    Ok(None) => {
                        act.active_known = true;
                        act.active = None;
                    }
                    Err(e) => tracing::error!(rider_id = %act.rider, error = %e, "could not load the rider's active order"),
                }
                act.publish();
            }),
        );
    }
}

impl Supervised for RiderSession {
    fn restarting(&mut self, _: &mut Self::Context) {
        tracing::warn!(rider_id = %self.rider, "rider session restarting");
        self.offer = None;
        self.grace = None;
    }
}

/// A socket connected for this rider: it gets the `welcome`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Attach {
    pub socket_id: Uuid,
    pub socket: Recipient<ToSocket>,
}

/// A socket closed. Ignored if another socket has replaced it since.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Detach {
    pub socket_id: Uuid,
}

/// Fixes in the order sent; answers `(index, why)` for each refused one.
#[derive(Message)]
#[rtype(result = "Vec<(usize, Refusal)>")]
pub struct Locations(pub Vec<(usize, Fix)>);

#[derive(Message)]
#[rtype(result = "()")]
pub struct SetAvailable(pub bool);

/// A rider's answer to an offer; errors are `(code, message)` for an `error` frame.
#[derive(Message)]
#[rtype(result = "Result<(), (&'static str, String)>")]
pub struct RespondToOffer {
    pub offer_id: Uuid,
    pub accept: bool,
}

/// `order_status` from the rider.
#[derive(Message)]
#[rtype(result = "Result<(), (&'static str, String)>")]
pub struct ReportStatus {
    pub order_id: Uuid,
    pub status: String,
    pub code: Option<String>,
}

/// From the matcher: a new offer.
#[derive(Message)]
#[rtype(result = "()")]
pub struct OfferMsg(pub OfferInfo);

/// From the matcher: the offer is gone.
#[derive(Message)]
#[rtype(result = "()")]
pub struct OfferExpiredMsg {
    pub offer_id: Uuid,
}

/// From the matcher: the rider's order was cancelled.
#[derive(Message)]
#[rtype(result = "()")]
pub struct OrderCancelledMsg {
    pub order_id: Uuid,
}

impl Handler<Attach> for RiderSession {
    type Result = ();
    fn handle(&mut self, msg: Attach, ctx: &mut Context<Self>) {
        if let Some(handle) = self.grace.take() {
            ctx.cancel_future(handle);
        }
        // One socket per rider: a new connection takes over from an old one still open.
        if let Some((_, old)) = self.socket.take() {
            old.do_send(ToSocket(Outbound::Replaced));
        }
        self.socket = Some((msg.socket_id, msg.socket));
        self.publish();
        self.welcome(ctx);
    }
}

impl Handler<Detach> for RiderSession {
    type Result = ();
    fn handle(&mut self, msg: Detach, ctx: &mut Context<Self>) {
        if self
            .socket
            .as_ref()
            .is_none_or(|(id, _)| *id != msg.socket_id)
        {
            return;
        }
        self.socket = None;
        self.publish();
        let rider = self.rider;
        self.grace = Some(ctx.run_later(self.deps.grace, move |act, ctx| {
            tracing::info!(rider_id = %rider, "rider offline: grace period over");
            announce(&act.deps, rider, EventKind::RiderOffline);
            act.deps.fleet.remove_session(rider);
            act.deps.fleet.update(rider, |v| {
                v.online = false;
                // The socket is gone for good: no offer or availability counts any more.
                v.state = RiderPhase::of(false, false, act.active.is_some());
            });
            act.deps.matcher.rider_gone(RiderGone { rider });
            ctx.stop();
        }));
    }
}

impl Handler<Locations> for RiderSession {
    type Result = MessageResult<Locations>;
    fn handle(&mut self, Locations(fixes): Locations, _: &mut Context<Self>) -> Self::Result {
        let now = now_ms();
        let mut refused = Vec::new();
        let mut moved = false;
        for (index, fix) in fixes {
            match check_fix(self.last.as_ref(), &fix, now) {
                Err(reason) => refused.push((index, reason)),
                Ok(FixEffect::Ignored) => {}
                Ok(FixEffect::Moves) => {
                    self.last = Some(fix);
                    moved = true;
                    if let Some(active) = self.active.as_mut() {
                        let due = active.last_trail.is_none_or(|(p, ts)| {
                            fix.ts_ms.saturating_sub(ts) >= TRAIL_EVERY_MS
                                || p.distance_m(fix.at) >= TRAIL_EVERY_M
                        });
                        if due {
                            active.last_trail = Some((fix.at, fix.ts_ms));
                            self.deps
                                .trail
                                .record(active.order_id, self.rider, fix.at, fix.ts_ms);
                        }
                    }
                }
            }
        }
        if let (true, Some(last)) = (moved, self.last) {
            // The matcher needs a position good to a cell and fresh enough to count as
            // live, not every fix: tell it after 50 m or 5 s, whichever comes first.
            let due = self.told_matcher.is_none_or(|(p, ts)| {
                p.distance_m(last.at) >= MATCHER_EVERY_M
                    || last.ts_ms.saturating_sub(ts) >= MATCHER_EVERY_MS
            });
            if due {
                self.told_matcher = Some((last.at, last.ts_ms));
                self.deps.matcher.rider_moved(RiderMoved {
                    rider: self.rider,
                    at: last.at,
                    ts_ms: last.ts_ms,
                });
            }
            // Customers watching the order get every moving fix (conflated per watcher).
            if let Some(active) = self.active.as_mut() {
                let picked_up = active.status == OrderStatus::PickedUp;
                let eta_s = match (active.pickup, active.dropoff) {
                    (Some(p), Some(d)) => {
                        let raw = eta_seconds(last.at, p, d, picked_up);
                        let eta = SmoothedEta::update(active.eta, raw, last.ts_ms);
                        active.eta = Some(eta);
                        Some(eta.seconds())
                    }
                    _ => None,
                };
                let arriving = picked_up
                    && !active.arriving_told
                    && active
                        .dropoff
                        .is_some_and(|d| d.distance_m(last.at) <= ARRIVING_M);
                if arriving {
                    active.arriving_told = true;
                    self.deps.watchers.status(
                        active.order_id,
                        crate::tracking::TrackFrame::Arriving {
                            eta_s: eta_s.unwrap_or(0),
                        },
                    );
                    announce_order(
                        &self.deps,
                        self.rider,
                        Some(active.order_id),
                        EventKind::RiderArriving,
                    );
                }
                self.deps.watchers.location(
                    active.order_id,
                    crate::tracking::TrackFrame::RiderLocation {
                        lat: last.at.lat(),
                        lng: last.at.lng(),
                        ts: last.ts_ms,
                        heading: last.heading,
                        eta_s,
                    },
                );
            }
            // The fleet view (GET /riders, ops) is good to a second.
            if self
                .told_fleet
                .is_none_or(|ts| last.ts_ms.saturating_sub(ts) >= 1_000)
            {
                self.told_fleet = Some(last.ts_ms);
                let rider = self.rider;
                self.deps.fleet.update(rider, |v| {
                    v.last_location = Some(LastLocation {
                        lat: last.at.lat(),
                        lng: last.at.lng(),
                        ts: last.ts_ms,
                    });
                });
            }
        }
        MessageResult(refused)
    }
}

impl Handler<SetAvailable> for RiderSession {
    type Result = ();
    fn handle(&mut self, SetAvailable(available): SetAvailable, _: &mut Context<Self>) {
        self.available = available;
        self.publish();
    }
}

impl Handler<OfferMsg> for RiderSession {
    type Result = ();
    fn handle(&mut self, OfferMsg(offer): OfferMsg, _: &mut Context<Self>) {
        self.send(Outbound::Offer(offer.clone()));
        self.offer = Some(offer);
        self.publish();
    }
}

impl Handler<OfferExpiredMsg> for RiderSession {
    type Result = ();
    fn handle(&mut self, msg: OfferExpiredMsg, _: &mut Context<Self>) {
        if self
            .offer
            .as_ref()
            .is_some_and(|o| o.offer_id == msg.offer_id)
        {
            self.offer = None;
            self.send(Outbound::OfferExpired {
                offer_id: msg.offer_id,
            });
            self.publish();
        }
    }
}

impl Handler<OrderCancelledMsg> for RiderSession {
    type Result = ();
    fn handle(&mut self, msg: OrderCancelledMsg, _: &mut Context<Self>) {
        if self
            .active
            .as_ref()
            .is_some_and(|a| a.order_id == msg.order_id)
        {
            self.active = None;
        }
        self.send(Outbound::OrderCancelled {
            order_id: msg.order_id,
        });
        self.publish();
    }
}

/// An `error` frame's code and message.
pub type RiderError = (&'static str, String);

fn order_error(e: OrderError) -> RiderError {
    let code = match &e {
        OrderError::NotFound => "not_found",
        OrderError::Forbidden => "forbidden",
        OrderError::Conflict(_) | OrderError::Stale => "conflict",
        OrderError::InvalidCode => "invalid_code",
        OrderError::RateLimited(_) => "rate_limited",
        OrderError::Storage(_) => "internal_error",
    };
    (code, e.to_string())
}

impl Handler<RespondToOffer> for RiderSession {
    type Result = ResponseActFuture<Self, Result<(), (&'static str, String)>>;

    fn handle(&mut self, msg: RespondToOffer, _: &mut Context<Self>) -> Self::Result {
        let rider = self.rider;
        let Some(order_id) = self
            .offer
            .as_ref()
            .filter(|o| o.offer_id == msg.offer_id)
            .map(|o| o.order_id)
        else {
            return Box::pin(actix::fut::ready(Err((
                "not_found",
                "no such offer".to_owned(),
            ))));
        };
        let matcher = self.deps.matcher.clone();
        let orders = self.deps.orders.clone();
        let answer = Answer {
            offer_id: msg.offer_id,
            order_id,
            rider,
            accept: msg.accept,
        };
        Box::pin(
            actix::fut::wrap_future::<_, Self>(async move {
                let answered = matcher
                    .answer(answer)
                    .await
                    .map_err(|e| ("internal_error", e.to_string()))?
                    .map_err(|e| match e {
                        AnswerError::NotFound => ("not_found", e.to_string()),
                        AnswerError::Closed => ("conflict", e.to_string()),
                    })?;
                let Answered::Accepted {
                    order_id,
                    pickup,
                    dropoff,
                    since_ms,
                } = answered
                else {
                    return Ok(None);
                };
                let assigned = orders
                    .apply(
                        order_id,
                        Command::Assign {
                            rider_id: rider,
                            by: None,
                        },
                    )
                    .await;
                matcher.assign_outcome(AssignOutcome {
                    order_id,
                    rider,
                    assigned: assigned.is_ok(),
                    since_ms,
                });
                assigned.map_err(order_error)?;
                Ok(Some((order_id, pickup, dropoff)))
            })
            .map(
                move |result: Result<Option<(Uuid, Place, Place)>, RiderError>, act, _| {
                    if act
                        .offer
                        .as_ref()
                        .is_some_and(|o| o.offer_id == msg.offer_id)
                    {
                        act.offer = None;
                    }
                    let accepted = result?;
                    if let Some((order_id, pickup, dropoff)) = accepted {
                        act.active = Some(Active::new(
                            order_id,
                            OrderStatus::Assigned,
                            Point::new(pickup.lat, pickup.lng).ok(),
                            Point::new(dropoff.lat, dropoff.lng).ok(),
                        ));
                        act.send(Outbound::Assigned {
                            order_id,
                            pickup,
                            dropoff,
                        });
                    }
                    act.publish();
                    Ok(())
                },
            ),
        )
    }
}

/// Atomic: the session takes no other message (a fix, say) until the order actor has
/// answered and the new status is recorded here, so the rider's messages act in the order
/// sent: fixes sent right after `picked_up` count as after pick-up (ETA to the door,
/// arrival), as the watchers, who already heard `picked_up` from the order, expect.
impl Handler<ReportStatus> for RiderSession {
    type Result = AtomicResponse<Self, Result<(), (&'static str, String)>>;

    fn handle(&mut self, msg: ReportStatus, _: &mut Context<Self>) -> Self::Result {
        let rider = self.rider;
        if let Some(refusal) = self.not_my_order(msg.order_id) {
            return AtomicResponse::new(Box::pin(actix::fut::ready(Err(refusal))));
        }
        let command = match (msg.status.as_str(), msg.code.clone()) {
            ("picked_up", _) => Command::PickUp { rider_id: rider },
            ("delivered", Some(code)) => Command::Deliver {
                rider_id: rider,
                code,
            },
            ("delivered", None) => {
                return AtomicResponse::new(Box::pin(actix::fut::ready(Err((
                    "invalid_code",
                    "delivered needs the customer's code".to_owned(),
                )))));
            }
            (other, _) => {
                return AtomicResponse::new(Box::pin(actix::fut::ready(Err((
                    "invalid_message",
                    format!("status must be picked_up or delivered, not {other:?}"),
                )))));
            }
        };
        let orders = self.deps.orders.clone();
        let order_id = msg.order_id;
        AtomicResponse::new(Box::pin(
            actix::fut::wrap_future::<_, Self>(
                async move { orders.apply(order_id, command).await },
            )
            .map(move |result, act, _| {
                let record = result.map_err(order_error)?;
                if record.status.is_final() {
                    act.active = None;
                } else if let Some(active) = act.active.as_mut().filter(|a| a.order_id == order_id)
                {
                    active.status = record.status;
                }
                act.publish();
                Ok(())
            }),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smoothed_eta_counts_down_and_damps_noise() {
        let first = SmoothedEta::update(None, 600, 0);
        assert_eq!(first.seconds(), 600);
        // Ten seconds on, a measurement that agrees with the countdown changes nothing.
        let steady = SmoothedEta::update(Some(first), 590, 10_000);
        assert_eq!(steady.seconds(), 590);
        // A 120 s jump from GPS noise moves the estimate by a quarter of it.
        let noisy = SmoothedEta::update(Some(steady), 709, 11_000);
        assert_eq!(noisy.seconds(), 619);
        // Time never runs backwards into a larger estimate.
        let stale = SmoothedEta::update(Some(steady), 590, 5_000);
        assert_eq!(stale.seconds(), 590);
        // A real change shows within a few fixes.
        let mut eta = steady;
        for i in 1..=8 {
            eta = SmoothedEta::update(Some(eta), 300, 10_000 + i * 1_000);
        }
        assert!(eta.seconds() < 350, "{eta:?}");
    }

    fn fix(lat: f64, lng: f64, ts_ms: i64) -> Fix {
        Fix {
            at: Point::new(lat, lng).expect("valid"),
            ts_ms,
            accuracy_m: None,
            speed_mps: None,
            heading: None,
        }
    }

    #[test]
    fn extreme_timestamps_are_refused_without_wrapping() {
        let now = 1_764_000_000_000;
        let forged = fix(12.97, 77.59, i64::MIN);
        assert_eq!(check_fix(None, &forged, now), Err(Refusal::Stale));
        assert_eq!(
            check_fix(None, &fix(12.97, 77.59, now - MAX_AGE_MS - 1), now),
            Err(Refusal::Stale)
        );
        assert_eq!(
            check_fix(None, &fix(12.97, 77.59, i64::MAX), now),
            Err(Refusal::Future)
        );
        // A clock near the ends of i64 does not overflow the window arithmetic.
        assert_eq!(
            check_fix(None, &fix(0.0, 0.0, i64::MAX), i64::MAX),
            Ok(FixEffect::Moves)
        );
        assert_eq!(
            check_fix(None, &fix(0.0, 0.0, i64::MIN), i64::MIN),
            Ok(FixEffect::Moves)
        );
    }

    #[test]
    fn the_location_rules() {
        let now = 1_000_000;
        let first = fix(12.97, 77.59, now);
        assert_eq!(check_fix(None, &first, now), Ok(FixEffect::Moves));
        assert!(
            check_fix(None, &fix(12.97, 77.59, now + 61_000), now).is_err(),
            "far future"
        );
        assert_eq!(
            check_fix(None, &fix(12.97, 77.59, now + 59_000), now),
            Ok(FixEffect::Moves)
        );
        // Older than the last fix: valid, but the live position stays.
        assert_eq!(
            check_fix(Some(&first), &fix(12.98, 77.59, now - 5_000), now),
            Ok(FixEffect::Ignored)
        );
        // ~1.1 km in 10 s is 111 m/s: refused. In 60 s it is 18.5 m/s: fine.
        assert!(check_fix(Some(&first), &fix(12.98, 77.59, now + 10_000), now + 10_000).is_err());
        assert_eq!(
            check_fix(Some(&first), &fix(12.98, 77.59, now + 60_000), now + 60_000),
            Ok(FixEffect::Moves)
        );
        let vague = Fix {
            accuracy_m: Some(150.0),
            ..fix(12.9701, 77.59, now + 1_000)
        };
        assert_eq!(
            check_fix(Some(&first), &vague, now + 1_000),
            Ok(FixEffect::Ignored)
        );
        let sharp = Fix {
            accuracy_m: Some(8.0),
            ..vague
        };
        assert_eq!(
            check_fix(Some(&first), &sharp, now + 1_000),
            Ok(FixEffect::Moves)
        );
    }
}
