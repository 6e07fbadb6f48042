//! Rider sessions: one actor per online rider, outliving its socket.
//!
//! The socket (transport, in the server) decodes, rate-limits and heartbeats; the session
//! holds what the rider is doing: availability, last accepted fix, pending offer, active
//! order. When the socket drops, the session waits out a grace period; a reconnect in that
//! time gets everything back in its `welcome`. After the grace period the rider is offline:
//! a pending offer is given up, an active order keeps its rider (and comes back from
//! storage on the next connect).
//!
//! What the rider is doing is one [`RiderPhase`], changed only through the pure
//! [`rider_transition`] in [`RiderSession::apply`], which also tells the matcher and the
//! fleet view: they never decide on their own whether a rider is free. The location rules
//! ([`check_fix`]) and the ETA ([`eta_seconds`]) are pure functions of the model.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use uuid::Uuid;

use crate::fleet::{Fleet, LastLocation};
use crate::geo::Point;
use crate::lock;
use crate::matcher::{
    Answer, AnswerError, Answered, AssignOutcome, Matcher, Offer, OfferGone, OrderCancelled,
    RiderGone, RiderInbox, RiderMoved, RiderPhaseChanged, ToRider,
};
use crate::model::{
    check_fix, eta_seconds, rider_transition, Fix, FixEffect, IllegalPhase, Refusal, RiderEvent,
    RiderPhase, SmoothedEta,
};
use crate::order::{Command, OrderError, OrderRegistry, OrderStatus};
use crate::ports::{Event, EventBus, EventKind, RiderDirectory, TrailSink};
use crate::protocol::{OfferInfo, Outbound, Place};
use crate::tracking::{TrackFrame, Watchers};

/// Trail points are kept at most this often, or after this many metres.
pub const TRAIL_EVERY_MS: i64 = 10_000;
pub const TRAIL_EVERY_M: f64 = 50.0;
/// The matcher hears of a moving rider at most every this many metres or milliseconds.
pub const MATCHER_EVERY_M: f64 = 50.0;
pub const MATCHER_EVERY_MS: i64 = 5_000;
/// How near the drop-off a rider counts as arriving, in metres.
pub const ARRIVING_M: f64 = 300.0;
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
    pub watchers: Watchers,
}

/// Announces a rider event, about an order or not (fire and forget).
fn announce(deps: &Arc<RiderDeps>, rider: Uuid, order_id: Option<Uuid>, kind: EventKind) {
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
            payment: None,
            cancel_reason: None,
        };
        if let Err(e) = bus.publish(event).await {
            tracing::warn!(rider_id = %rider, error = %e, "rider event not published");
        }
    });
}

/// Live sessions by rider.
type Sessions = Arc<Mutex<HashMap<Uuid, Addr<RiderSession>>>>;

/// Finds or starts riders' sessions. Cheap to clone.
#[derive(Clone)]
pub struct Riders {
    deps: Arc<RiderDeps>,
    sessions: Sessions,
}

impl Riders {
    pub fn new(deps: RiderDeps) -> Self {
        Self {
            deps: Arc::new(deps),
            sessions: Sessions::default(),
        }
    }

    /// The rider's session, started (supervised, on the caller's arbiter) if it has none;
    /// two sockets connecting at once share one session. A new session is introduced to
    /// the matcher before anyone can reach it.
    pub fn session(&self, rider: Uuid) -> Addr<RiderSession> {
        let mut sessions = lock(&self.sessions);
        sessions
            .entry(rider)
            .or_insert_with(|| {
                let (deps, registry) = (self.deps.clone(), self.sessions.clone());
                let addr =
                    Supervisor::start(move |_| RiderSession::new(rider, deps, registry.clone()));
                self.deps.matcher.rider_joined(rider, RiderInbox::of(&addr));
                addr
            })
            .clone()
    }

    pub fn fleet(&self) -> &Fleet {
        &self.deps.fleet
    }

    /// Closes every rider socket with "service restart" (the node is leaving); returns how
    /// many sessions were told. The sessions themselves stay until the process ends.
    pub fn close_for_restart(&self) -> usize {
        let sessions: Vec<Addr<RiderSession>> = lock(&self.sessions).values().cloned().collect();
        for session in &sessions {
            session.do_send(Restart);
        }
        sessions.len()
    }

    pub fn matcher(&self) -> &Matcher {
        &self.deps.matcher
    }
}

/// A frame for the socket.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct ToSocket(pub Outbound);

/// What the session keeps about the order the rider is on, for the customers watching.
#[derive(Debug, Clone)]
struct Delivery {
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

impl Delivery {
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

    /// The smoothed seconds to go from `at` (if the places are known), updated.
    fn eta(&mut self, at: Point, ts_ms: i64) -> Option<i64> {
        let (pickup, dropoff) = (self.pickup?, self.dropoff?);
        let picked_up = self.status == OrderStatus::PickedUp;
        let raw = eta_seconds(at, pickup, dropoff, picked_up);
        let eta = SmoothedEta::update(self.eta, raw, ts_ms);
        self.eta = Some(eta);
        Some(eta.seconds())
    }

    /// Whether `at` is the first point near the drop-off after pick-up.
    fn arriving(&mut self, at: Point) -> bool {
        let arriving = self.status == OrderStatus::PickedUp
            && !self.arriving_told
            && self.dropoff.is_some_and(|d| d.distance_m(at) <= ARRIVING_M);
        self.arriving_told |= arriving;
        arriving
    }

    /// Whether `fix` is due on the trail (10 s or 50 m since the last point).
    fn trail_due(&mut self, fix: &Fix) -> bool {
        let due = self.last_trail.is_none_or(|(p, ts)| {
            fix.ts_ms.saturating_sub(ts) >= TRAIL_EVERY_MS || p.distance_m(fix.at) >= TRAIL_EVERY_M
        });
        if due {
            self.last_trail = Some((fix.at, fix.ts_ms));
        }
        due
    }
}

/// See the module documentation.
pub struct RiderSession {
    rider: Uuid,
    deps: Arc<RiderDeps>,
    sessions: Sessions,
    socket: Option<(Uuid, Recipient<ToSocket>)>,
    available: bool,
    /// What the rider is doing; written only by [`Self::apply`].
    phase: RiderPhase,
    last: Option<Fix>,
    /// The open offer as the rider was shown it (for a reconnect's `welcome`): present
    /// exactly while the phase is offered with its id.
    offer: Option<OfferInfo>,
    /// The order the rider is on: present exactly while the phase is on that delivery.
    delivery: Option<Delivery>,
    /// The active order was read from storage since the session (re)started, so a report
    /// about any other order can be answered from memory.
    active_known: bool,
    grace: Option<SpawnHandle>,
    /// Position and time last sent to the matcher, and time last written to the fleet.
    told_matcher: Option<(Point, i64)>,
    told_fleet: Option<i64>,
}

impl RiderSession {
    fn new(rider: Uuid, deps: Arc<RiderDeps>, sessions: Sessions) -> Self {
        // In a cluster, a rider whose app moved here from another node stays as available
        // as he was there.
        let available = deps.fleet.elsewhere(rider).is_some_and(|v| v.available);
        Self {
            rider,
            deps,
            sessions,
            socket: None,
            available,
            phase: RiderPhase::Offline,
            last: None,
            offer: None,
            delivery: None,
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

    /// Connected and available for work.
    fn reachable(&self) -> bool {
        self.available && self.socket.is_some()
    }

    /// The one place the phase changes: the pure transition, then what hangs on the
    /// phase (the offer shown, the delivery tracked) is dropped if the phase left it, and
    /// the matcher and the fleet view hear the result.
    fn apply(&mut self, event: RiderEvent) -> Result<(), IllegalPhase> {
        let result = rider_transition(self.phase, event, self.reachable());
        if let Ok(to) = result {
            self.phase = to;
            if self.offer.as_ref().map(|o| o.offer_id) != to.offer() {
                self.offer = None;
            }
            if self.delivery.as_ref().map(|d| d.order_id) != to.order() {
                self.delivery = None;
            }
        }
        self.publish();
        result.map(|_| ())
    }

    /// The availability or the socket changed.
    fn reachability_changed(&mut self) {
        let reachable = self.reachable();
        // Always legal: an offer or a delivery outlasts it.
        let _ = self.apply(RiderEvent::Reachable(reachable));
    }

    /// The answer to a report about an order that is not this rider's active one, from
    /// memory alone: no storage read, no order actor started, however many a rider sends.
    /// `None` when the order is the active one (or the session could not read which one
    /// is, and the order actor must judge).
    fn not_my_order(&self, order_id: Uuid) -> Option<RiderError> {
        if self.phase.order() == Some(order_id) || !self.active_known {
            return None;
        }
        // The order's actor (here, or on the node running dispatch in a cluster) or the
        // rider carrying it (on any node) says the order is live.
        let live = self.deps.orders.get(order_id).is_some() || self.deps.fleet.carrying(order_id);
        Some(if live {
            ("forbidden", "this order is not assigned to you".to_owned())
        } else {
            ("not_found", "no such active order".to_owned())
        })
    }

    /// Tells the matcher and the fleet view what this rider is doing now.
    fn publish(&self) {
        let (rider, phase, connected) = (self.rider, self.phase, self.socket.is_some());
        self.deps.matcher.rider_phase(RiderPhaseChanged {
            rider,
            phase,
            connected,
        });
        let (available, last) = (self.available, self.last);
        self.deps.fleet.update(rider, |v| {
            v.online = connected;
            v.available = available;
            v.state = phase.state();
            v.active_order_id = phase.order();
            if let Some(f) = last {
                v.last_location = Some(LastLocation {
                    lat: f.at.lat(),
                    lng: f.at.lng(),
                    ts: f.ts_ms,
                });
            }
        });
    }

    /// Sends the `welcome`. In a cluster, a rider whose session is new here may hold an
    /// offer delivered to his session on another node: it is asked for and taken over.
    fn welcome(&self, ctx: &mut Context<Self>) {
        let (rider, available, offer) = (self.rider, self.available, self.offer.clone());
        let directory = self.deps.directory.clone();
        let active = self.phase.order();
        let matcher = (offer.is_none() && active.is_none() && self.deps.matcher.clustered())
            .then(|| self.deps.matcher.clone());
        ctx.spawn(
            actix::fut::wrap_future::<_, Self>(async move {
                let order = match active {
                    Some(id) => directory.order_for_rider(id).await.ok().flatten(),
                    None => None,
                };
                let elsewhere = match matcher {
                    Some(matcher) => matcher.open_offer(rider).await,
                    None => None,
                };
                (order, elsewhere)
            })
            .map(move |(order, elsewhere), act, _| {
                let taken_over = elsewhere.filter(|info| act.offered_quietly(info.clone()));
                act.send(Outbound::Welcome {
                    rider_id: rider,
                    available,
                    active_order: order,
                    pending_offer: offer.or(taken_over),
                });
            }),
        );
    }

    /// The order the rider is on, from storage (a restart) or from an accepted offer.
    fn start_delivery(&mut self, event: RiderEvent, delivery: Delivery) {
        let order = delivery.order_id;
        let entered = self.apply(event).is_ok()
            // An order the order actor gave the rider is theirs whatever the session
            // thought in the meantime.
            || self.apply(RiderEvent::Resumed { order }).is_ok();
        if entered && self.phase.order() == Some(order) {
            self.delivery = Some(delivery);
        }
    }

    /// The session is over for good: the matcher forgets the rider and the registry the
    /// session, together, so that a session started for the rider right after is the one
    /// the matcher can reach.
    fn leave(&mut self, ctx: &mut Context<Self>) {
        tracing::info!(rider_id = %self.rider, "rider offline: grace period over");
        announce(&self.deps, self.rider, None, EventKind::RiderOffline);
        let _ = self.apply(RiderEvent::Gone);
        let mut sessions = lock(&self.sessions);
        self.deps
            .matcher
            .rider_gone(RiderGone { rider: self.rider });
        sessions.remove(&self.rider);
        ctx.stop();
    }

    /// Keeps a moving fix on the active order's trail (every 10 s or 50 m).
    fn record_trail(&mut self, fix: &Fix) {
        if let Some(delivery) = self.delivery.as_mut() {
            if delivery.trail_due(fix) {
                self.deps
                    .trail
                    .record(delivery.order_id, self.rider, fix.at, fix.ts_ms);
            }
        }
    }

    /// The matcher needs a position good to a cell and fresh enough to count as live, not
    /// every fix: it hears after 50 m or 5 s, whichever comes first.
    fn tell_matcher(&mut self, last: Fix) {
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
    }

    /// Customers watching the order get every moving fix (conflated per watcher), the
    /// ETA, and once, near the door, `arriving`.
    fn tell_watchers(&mut self, last: Fix) {
        let Some(delivery) = self.delivery.as_mut() else {
            return;
        };
        let order_id = delivery.order_id;
        let eta_s = delivery.eta(last.at, last.ts_ms);
        if delivery.arriving(last.at) {
            self.deps.watchers.rider_status(
                order_id,
                TrackFrame::Arriving {
                    eta_s: eta_s.unwrap_or(0),
                },
            );
            announce(
                &self.deps,
                self.rider,
                Some(order_id),
                EventKind::RiderArriving,
            );
        }
        self.deps.watchers.rider_location(
            order_id,
            TrackFrame::RiderLocation {
                lat: last.at.lat(),
                lng: last.at.lng(),
                ts: last.ts_ms,
                heading: last.heading,
                eta_s,
            },
        );
    }

    /// The fleet view (GET /riders, ops) is good to a second.
    fn tell_fleet(&mut self, last: Fix) {
        if self
            .told_fleet
            .is_some_and(|ts| last.ts_ms.saturating_sub(ts) < 1_000)
        {
            return;
        }
        self.told_fleet = Some(last.ts_ms);
        self.deps.fleet.update(self.rider, |v| {
            v.last_location = Some(LastLocation {
                lat: last.at.lat(),
                lng: last.at.lng(),
                ts: last.ts_ms,
            });
        });
    }
}

impl Actor for RiderSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if self.grace.is_none() && self.socket.is_none() && self.last.is_none() {
            announce(&self.deps, self.rider, None, EventKind::RiderOnline);
        }
        // A rider's active order lives in storage: load it before anything else, so a
        // restarted server (or a session restarted by its supervisor) knows it.
        let directory = self.deps.directory.clone();
        let rider = self.rider;
        ctx.wait(
            actix::fut::wrap_future::<_, Self>(async move { directory.active_order(rider).await })
                .map(|found, act, _| match found {
                    Ok(Some(record)) => {
                        act.active_known = true;
                        let order = record.id;
                        let delivery = Delivery::new(
                            order,
                            record.status,
                            Some(record.pickup),
                            Some(record.dropoff),
                        );
                        act.start_delivery(RiderEvent::Resumed { order }, delivery);
                    }
                    Ok(None) => {
                        act.active_known = true;
                        act.publish();
                    }
                    Err(e) => {
                        tracing::error!(rider_id = %act.rider, error = %e, "could not load the rider's active order");
                        act.publish();
                    }
                }),
        );
    }
}

impl Supervised for RiderSession {
    fn restarting(&mut self, _: &mut Self::Context) {
        tracing::warn!(rider_id = %self.rider, "rider session restarting");
        if let Some(offer) = self.phase.offer() {
            let _ = self.apply(RiderEvent::OfferEnded { offer });
        }
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

/// The node is leaving: close the rider's socket with "service restart".
#[derive(Message)]
#[rtype(result = "()")]
struct Restart;

impl Handler<Restart> for RiderSession {
    type Result = ();
    fn handle(&mut self, _: Restart, _: &mut Context<Self>) {
        if let Some((_, socket)) = &self.socket {
            socket.do_send(ToSocket(Outbound::Restarting));
        }
    }
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
        self.reachability_changed();
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
        self.reachability_changed();
        self.grace = Some(ctx.run_later(self.deps.grace, |act, ctx| act.leave(ctx)));
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
                    self.record_trail(&fix);
                }
            }
        }
        if let (true, Some(last)) = (moved, self.last) {
            self.tell_matcher(last);
            self.tell_watchers(last);
            self.tell_fleet(last);
        }
        MessageResult(refused)
    }
}

impl Handler<SetAvailable> for RiderSession {
    type Result = ();
    fn handle(&mut self, SetAvailable(available): SetAvailable, _: &mut Context<Self>) {
        self.available = available;
        self.reachability_changed();
    }
}

/// What the matcher tells the rider: an offer (taken only by a free rider; the answer
/// says whether it was), an offer gone, an order cancelled.
impl Handler<ToRider> for RiderSession {
    type Result = bool;
    fn handle(&mut self, msg: ToRider, _: &mut Context<Self>) -> bool {
        match msg {
            ToRider::Offer(Offer(offer)) => self.offered(offer),
            ToRider::OfferGone(OfferGone { offer_id }) => {
                if self
                    .apply(RiderEvent::OfferEnded { offer: offer_id })
                    .is_ok()
                {
                    self.send(Outbound::OfferExpired { offer_id });
                }
                false
            }
            ToRider::OrderCancelled(OrderCancelled { order_id }) => {
                // Not the rider's order any more (or never known here): told anyway.
                let _ = self.apply(RiderEvent::DeliveryEnded { order: order_id });
                self.send(Outbound::OrderCancelled { order_id });
                false
            }
        }
    }
}

impl RiderSession {
    fn offered(&mut self, offer: OfferInfo) -> bool {
        if !self.offered_quietly(offer.clone()) {
            return false;
        }
        self.send(Outbound::Offer(offer));
        true
    }

    /// Takes an offer on without sending it (the caller does, e.g. in a `welcome`).
    fn offered_quietly(&mut self, offer: OfferInfo) -> bool {
        let event = RiderEvent::Offered {
            offer: offer.offer_id,
            order: offer.order_id,
        };
        if let Err(e) = self.apply(event) {
            tracing::debug!(rider_id = %self.rider, reason = %e, "offer declined");
            return false;
        }
        self.offer = Some(offer);
        true
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
        OrderError::Unavailable => "unavailable",
    };
    (code, e.to_string())
}

/// Closes the offer at the matcher and, if accepted, asks the order actor to assign it;
/// the places of the order the rider now has, if any.
async fn answer_offer(
    matcher: Matcher,
    orders: OrderRegistry,
    answer: Answer,
) -> Result<Option<(Uuid, Place, Place)>, RiderError> {
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
    let rider = answer.rider;
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
}

impl Handler<RespondToOffer> for RiderSession {
    type Result = ResponseActFuture<Self, Result<(), RiderError>>;

    fn handle(&mut self, msg: RespondToOffer, _: &mut Context<Self>) -> Self::Result {
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
        let answer = Answer {
            offer_id: msg.offer_id,
            order_id,
            rider: self.rider,
            accept: msg.accept,
        };
        let work = answer_offer(self.deps.matcher.clone(), self.deps.orders.clone(), answer);
        Box::pin(
            actix::fut::wrap_future::<_, Self>(work).map(move |result, act, _| {
                let offer = msg.offer_id;
                match &result {
                    Ok(Some((order, pickup, dropoff))) => {
                        let delivery = Delivery::new(
                            *order,
                            OrderStatus::Assigned,
                            Point::new(pickup.lat, pickup.lng).ok(),
                            Point::new(dropoff.lat, dropoff.lng).ok(),
                        );
                        let event = RiderEvent::Assigned {
                            offer,
                            order: *order,
                        };
                        act.start_delivery(event, delivery);
                        act.send(Outbound::Assigned {
                            order_id: *order,
                            pickup: pickup.clone(),
                            dropoff: dropoff.clone(),
                        });
                    }
                    // Refused, closed, or not assigned: the offer is over either way.
                    _ => {
                        let _ = act.apply(RiderEvent::OfferEnded { offer });
                    }
                }
                result.map(|_| ())
            }),
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
                    let _ = act.apply(RiderEvent::DeliveryEnded { order: order_id });
                } else if let Some(delivery) =
                    act.delivery.as_mut().filter(|d| d.order_id == order_id)
                {
                    delivery.status = record.status;
                    act.publish();
                }
                Ok(())
            }),
        ))
    }
}
