//! A rider agent: one WebSocket, one fix a second, offers answered, orders carried.
//!
//! The rider moves along straight segments at a speed drawn per leg from the scenario's
//! range: wandering (with the odd pause) while free, to the pharmacy once `assigned`, then
//! to the drop-off. It sends `picked_up` after the hand-over time at the pharmacy and
//! `delivered`, with the customer's code, after the hand-over time at the door. Every fix
//! carries `ts` = now and a few metres of GPS noise; frames never come faster than one a
//! second, well inside the server's limits (10 frames/s, 70 m/s).
//!
//! When the socket drops (a node killed or restarting, behind a balancer) the rider
//! reconnects with back-off and takes the server's `welcome` as the truth: the offer it
//! holds and the order it is on (adopted if the `assigned` frame was lost, its
//! `picked_up` / `delivered` sent again if those were). A status sent and then doubted
//! (an `unavailable` or other error frame, a reconnection) is checked with
//! `GET /orders/{id}` and sent again if the server does not have it.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rand::rngs::StdRng;
use rand::Rng;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::{watch, Semaphore};
use tokio::time::{sleep_until, Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use uuid::Uuid;

use crate::api::{Api, Session, Unexpected};
use crate::customer::count_failure;
use crate::geo::Point;
use crate::metrics::{now_ms, Metrics};
use crate::scenario::{Area, RiderBehaviour};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Everything a rider agent needs.
pub struct RiderAgent {
    pub index: usize,
    pub api: Api,
    pub session: Arc<Session>,
    pub metrics: Arc<Metrics>,
    pub behaviour: RiderBehaviour,
    pub area: Area,
    pub start: Point,
    pub rng: StdRng,
    /// Becomes `true` when the run ends.
    pub stop: watch::Receiver<bool>,
    /// Limits simultaneous WebSocket handshakes during start-up.
    pub connect_gate: Arc<Semaphore>,
    /// Told once when this rider is online and available.
    pub online: tokio::sync::mpsc::Sender<usize>,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    ToPickup,
    AtPickup(Instant),
    ToDropoff,
    AtDropoff(Instant),
}

#[derive(Debug, Clone)]
struct Job {
    order: Uuid,
    pickup: Point,
    dropoff: Point,
    phase: Phase,
}

/// An offer waiting for the rider's (delayed) answer.
#[derive(Debug, Clone)]
struct Pending {
    offer_id: String,
    order: Uuid,
    accept: bool,
    answer_at: Instant,
    /// Our own distance to the pickup when the offer came, and the offer's `distance_m`.
    pickup_m: f64,
    offer_m: Option<f64>,
}

/// A status the rider sent that the server may not have applied (no reply comes when it
/// does).
#[derive(Debug, Clone)]
struct Sent {
    order: Uuid,
    /// `delivered` (with its code) rather than `picked_up`.
    delivered: Option<String>,
}

/// The rider's mutable state.
struct Rider {
    pos: Point,
    speed: f64,
    heading: f64,
    moving: bool,
    wander_to: Option<Point>,
    pause_until: Option<Instant>,
    job: Option<Job>,
    pending: Option<Pending>,
    /// The last accepted offer, until its `assigned` arrives.
    accepted: Option<Pending>,
    last_move: Instant,
    /// The last status sent, until the server is known to have it.
    sent: Option<Sent>,
    /// When to check the order with the server (something cast doubt on `sent` or on
    /// the job), and the wait before the next check should this one fail.
    check_at: Option<Instant>,
    check_backoff: Duration,
}

/// First wait before checking a doubted order with the server, and the longest.
const CHECK_BACKOFF_MIN: Duration = Duration::from_millis(500);
const CHECK_BACKOFF_MAX: Duration = Duration::from_secs(5);

fn point_of(v: &Value) -> Option<Point> {
    Some(Point::new(v.get("lat")?.as_f64()?, v.get("lng")?.as_f64()?))
}

impl RiderAgent {
    /// Runs until the stop signal; reconnects if the socket drops.
    pub async fn run(mut self) {
        let mut r = Rider {
            pos: self.start,
            speed: 0.0,
            heading: 0.0,
            moving: false,
            wander_to: None,
            pause_until: None,
            job: None,
            pending: None,
            accepted: None,
            last_move: Instant::now(),
            sent: None,
            check_at: None,
            check_backoff: CHECK_BACKOFF_MIN,
        };
        let mut announced = false;
        let mut backoff = Duration::from_millis(200);
        loop {
            if *self.stop.borrow() {
                return;
            }
            let ws = {
                let _permit = self.connect_gate.acquire().await;
                self.connect().await
            };
            let mut ws = match ws {
                Some(ws) => ws,
                None => {
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = self.stop.changed() => return,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            backoff = Duration::from_millis(200);
            // First a fix, then availability: the matcher wants a recent position. Time
            // spent connecting is not travelled (the next fix must not look like a jump).
            r.last_move = Instant::now();
            let ok = self.send_fix(&mut ws, &mut r).await
                && send(&mut ws, json!({"type": "availability", "available": true})).await;
            if ok && !announced {
                announced = true;
                let _ = self.online.send(self.index).await;
            }
            if ok && self.session_loop(&mut ws, &mut r).await {
                let _ = ws.close(None).await;
                return;
            }
            if *self.stop.borrow() {
                return;
            }
            self.metrics.rider_reconnected();
        }
    }

    /// The `welcome` of a connection: the server's word on the offer the rider holds and
    /// the order it is on. `false` if the socket failed.
    async fn welcomed(&mut self, ws: &mut Ws, r: &mut Rider, v: &Value) -> bool {
        // The offer: the one the server says the rider holds, or none.
        match v.get("pending_offer").filter(|o| !o.is_null()) {
            Some(offer) => {
                let id = offer.get("offer_id").and_then(Value::as_str);
                let known = r
                    .pending
                    .as_ref()
                    .is_some_and(|p| Some(p.offer_id.as_str()) == id);
                let answered = r
                    .accepted
                    .as_ref()
                    .filter(|a| Some(a.offer_id.as_str()) == id)
                    .cloned();
                if let Some(mut again) = answered {
                    // The acceptance never arrived: say it again.
                    r.accepted = None;
                    again.answer_at = Instant::now();
                    r.pending = Some(again);
                } else if !known {
                    r.pending = None;
                    if !self.take_offer(ws, r, offer).await {
                        return false;
                    }
                }
            }
            None => r.pending = None,
        }
        match v.get("active_order").filter(|o| !o.is_null()) {
            Some(order) => self.reconcile(ws, r, order).await,
            None => {
                if r.job.is_some() || r.sent.is_some() {
                    // No order here: check the one the rider thinks it has with the server
                    // (a session on a node that has not loaded it yet would say none).
                    r.check_at = Some(Instant::now());
                }
                r.accepted = None;
                true
            }
        }
    }

    /// An offer (a frame, or the welcome's pending offer): said no to at once when busy,
    /// else answered after the rider's think time. `false` if the socket failed.
    async fn take_offer(&mut self, ws: &mut Ws, r: &mut Rider, v: &Value) -> bool {
        self.metrics.offer_made();
        let offer_id = v.get("offer_id").and_then(Value::as_str).map(str::to_owned);
        let order = v
            .get("order_id")
            .and_then(Value::as_str)
            .and_then(|s| Uuid::parse_str(s).ok());
        let pickup = v.get("pickup").and_then(point_of);
        let (Some(offer_id), Some(order), Some(pickup)) = (offer_id, order, pickup) else {
            self.metrics.error("ws malformed offer frame");
            return true;
        };
        if r.job.is_some() || r.pending.is_some() {
            // Busy: say no at once.
            self.metrics.offer_rejected();
            return send(
                ws,
                json!({"type": "offer_response", "offer_id": offer_id, "accept": false}),
            )
            .await;
        }
        let b = &self.behaviour;
        let accept = self.rng.random_bool(b.accept_probability);
        let delay = self
            .rng
            .random_range(b.accept_delay_ms[0]..=b.accept_delay_ms[1]);
        r.pending = Some(Pending {
            offer_id,
            order,
            accept,
            answer_at: Instant::now() + Duration::from_millis(delay),
            pickup_m: r.pos.distance_m(pickup),
            offer_m: v.get("distance_m").and_then(Value::as_f64),
        });
        true
    }

    /// Checks the order the rider sent a status for, or is on, with `GET /orders/{id}`
    /// and acts on the answer. `false` if the socket failed.
    async fn check(&mut self, ws: &mut Ws, r: &mut Rider) -> bool {
        r.check_at = None;
        let Some(order) = r
            .sent
            .as_ref()
            .map(|s| s.order)
            .or(r.job.as_ref().map(|j| j.order))
        else {
            return true;
        };
        let answer = match self.session.token(&self.api).await {
            Ok(token) => self.api.order(&token, order).await,
            Err(e) => Err(e),
        };
        match answer {
            Ok(v) => {
                r.check_backoff = CHECK_BACKOFF_MIN;
                let mine = v
                    .get("rider")
                    .and_then(|x| x.get("id"))
                    .and_then(Value::as_str)
                    .and_then(|s| Uuid::parse_str(s).ok())
                    == Some(self.session.user_id);
                if mine {
                    self.reconcile(ws, r, &v).await
                } else {
                    forget(r, order);
                    true
                }
            }
            Err(e)
                if e.downcast_ref::<Unexpected>()
                    .is_some_and(|u| u.status == 404) =>
            {
                // Not the rider's order (any more).
                forget(r, order);
                true
            }
            Err(e) => {
                count_failure(&self.metrics, "rider get order", &e);
                r.check_at = Some(Instant::now() + r.check_backoff);
                r.check_backoff = (r.check_backoff * 2).min(CHECK_BACKOFF_MAX);
                true
            }
        }
    }

    /// Brings the rider in line with the server's view of an order assigned to it (the
    /// welcome's `active_order`, or a check's answer): adopts it if the rider did not know
    /// it, sends again a status the server does not have, drops it once final.
    async fn reconcile(&mut self, ws: &mut Ws, r: &mut Rider, order: &Value) -> bool {
        let Some(id) = order
            .get("id")
            .and_then(Value::as_str)
            .and_then(|s| Uuid::parse_str(s).ok())
        else {
            self.metrics.error("ws malformed active order (rider)");
            return true;
        };
        let status = order.get("status").and_then(Value::as_str).unwrap_or("");
        let sent = r.sent.clone().filter(|s| s.order == id);
        if !matches!(status, "assigned" | "picked_up") {
            // Final, or taken back from the rider (dispatching again): nothing to do.
            forget(r, id);
            return true;
        }
        if r.job.as_ref().is_some_and(|j| j.order != id) {
            // The server has the rider on another order: the one the rider had is over.
            r.job = None;
        }
        if r.job.is_none() && sent.as_ref().is_none_or(|s| s.delivered.is_none()) {
            // An order the rider did not know it had (its `assigned` was lost).
            let pickup = order.get("pharmacy").and_then(point_of);
            let dropoff = order.get("delivery").and_then(point_of);
            let (Some(pickup), Some(dropoff)) = (pickup, dropoff) else {
                self.metrics.error("ws malformed active order (rider)");
                return true;
            };
            self.metrics
                .order_assigned(id, Some(r.pos.distance_m(pickup)), None);
            r.accepted = None;
            r.job = Some(Job {
                order: id,
                pickup,
                dropoff,
                phase: Phase::ToPickup,
            });
            r.wander_to = None;
            r.pause_until = None;
            self.new_leg_speed(r);
        }
        let picked_up_here = match r.job.as_ref().map(|j| j.phase) {
            Some(Phase::ToPickup) | Some(Phase::AtPickup(_)) => false,
            Some(_) => true,
            None => true, // delivered was sent
        };
        if status == "picked_up" {
            if let Some(job) = r.job.as_mut().filter(|_| !picked_up_here) {
                // The server is ahead of the rider: on to the door.
                job.phase = Phase::ToDropoff;
            }
        }
        let mut frames = Vec::new();
        if status == "assigned" && picked_up_here {
            frames.push(json!({"type": "order_status", "order_id": id, "status": "picked_up"}));
        }
        if let Some(code) = sent.and_then(|s| s.delivered) {
            frames.push(json!({"type": "order_status", "order_id": id,
                               "status": "delivered", "code": code}));
        }
        if frames.is_empty() {
            // The server has everything the rider sent.
            if r.sent.as_ref().is_some_and(|s| s.order == id) {
                r.sent = None;
            }
            return true;
        }
        self.metrics.status_resent();
        for frame in frames {
            if !send(ws, frame).await {
                return false;
            }
        }
        true
    }

    async fn connect(&self) -> Option<Ws> {
        let token = match self.session.token(&self.api).await {
            Ok(t) => t,
            Err(e) => {
                self.metrics
                    .error(format!("rider token refresh failed: {e}"));
                return None;
            }
        };
        match tokio_tungstenite::connect_async(self.api.ws_url("/ws/rider", &token)).await {
            Ok((ws, _)) => Some(ws),
            Err(tungstenite::Error::Http(res)) => {
                self.metrics
                    .http_error("rider socket upgrade", res.status().as_u16(), None);
                None
            }
            Err(e) => {
                self.metrics.error(format!("rider socket: {e}"));
                None
            }
        }
    }

    /// Serves one connection; `true` when the run is over, `false` if the socket dropped.
    async fn session_loop(&mut self, ws: &mut Ws, r: &mut Rider) -> bool {
        // The first move comes at least a second after the fix sent on connecting, and
        // riders' ticks are spread over the second.
        let mut tick = tokio::time::interval_at(
            Instant::now() + Duration::from_millis(self.rng.random_range(1000..2000)),
            Duration::from_secs(1),
        );
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let answer_at = r.pending.as_ref().map(|p| p.answer_at);
            let check_at = r.check_at;
            tokio::select! {
                _ = self.stop.changed() => return true,
                _ = sleep_until(check_at.unwrap_or_else(Instant::now)), if check_at.is_some() => {
                    if !self.check(ws, r).await {
                        return false;
                    }
                }
                _ = tick.tick() => {
                    if !self.advance(ws, r).await || !self.send_fix(ws, r).await {
                        return false;
                    }
                }
                _ = sleep_until(answer_at.unwrap_or_else(Instant::now)), if answer_at.is_some() => {
                    if !self.answer(ws, r).await {
                        return false;
                    }
                }
                frame = ws.next() => match frame {
                    Some(Ok(Message::Text(text))) => {
                        self.metrics.frame_received();
                        match serde_json::from_str::<Value>(text.as_str()) {
                            Ok(v) => {
                                if !self.on_frame(ws, r, &v).await {
                                    return false;
                                }
                            }
                            Err(_) => self.metrics.error("ws non-JSON frame (rider)"),
                        }
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return false,
                    Some(Ok(_)) => {}
                },
            }
        }
    }

    /// Handles one frame; `false` if the socket failed.
    async fn on_frame(&mut self, ws: &mut Ws, r: &mut Rider, v: &Value) -> bool {
        let kind = v.get("type").and_then(Value::as_str).unwrap_or("");
        match kind {
            "welcome" => return self.welcomed(ws, r, v).await,
            "offer" => return self.take_offer(ws, r, v).await,
            "offer_expired" => {
                self.metrics.offer_expired();
                let id = v.get("offer_id").and_then(Value::as_str);
                if r.pending.as_ref().map(|p| p.offer_id.as_str()) == id {
                    r.pending = None;
                }
            }
            "assigned" => {
                let order = v
                    .get("order_id")
                    .and_then(Value::as_str)
                    .and_then(|s| Uuid::parse_str(s).ok());
                let pickup = v.get("pickup").and_then(point_of);
                let dropoff = v.get("dropoff").and_then(point_of);
                let (Some(order), Some(pickup), Some(dropoff)) = (order, pickup, dropoff) else {
                    self.metrics.error("ws malformed assigned frame");
                    return true;
                };
                let accepted = r.accepted.take().filter(|a| a.order == order);
                self.metrics.order_assigned(
                    order,
                    Some(
                        accepted
                            .as_ref()
                            .map_or(r.pos.distance_m(pickup), |a| a.pickup_m),
                    ),
                    accepted.and_then(|a| a.offer_m),
                );
                r.job = Some(Job {
                    order,
                    pickup,
                    dropoff,
                    phase: Phase::ToPickup,
                });
                r.wander_to = None;
                r.pause_until = None;
                self.new_leg_speed(r);
            }
            "order_cancelled" => {
                let order = v.get("order_id").and_then(Value::as_str);
                if r.job.as_ref().map(|j| j.order.to_string()).as_deref() == order {
                    r.job = None;
                }
                if r.sent.as_ref().map(|s| s.order.to_string()).as_deref() == order {
                    r.sent = None;
                }
            }
            "error" => {
                let code = v.get("code").and_then(Value::as_str).unwrap_or("?");
                let message = v.get("message").and_then(Value::as_str).unwrap_or("");
                self.metrics
                    .error_with(format!("ws {code} (rider)"), message);
                // Errors do not say which message they answer: one that may concern the
                // rider's order has it checked with the server.
                if !matches!(
                    code,
                    "invalid_location" | "rate_limited" | "invalid_message"
                ) && (r.sent.is_some() || r.job.is_some())
                {
                    doubt(r);
                }
            }
            _ => {} // anything added later
        }
        true
    }

    /// Sends the pending offer's answer.
    async fn answer(&mut self, ws: &mut Ws, r: &mut Rider) -> bool {
        let Some(p) = r.pending.take() else {
            return true;
        };
        if !p.accept {
            self.metrics.offer_rejected();
        }
        let ok = send(
            ws,
            json!({"type": "offer_response", "offer_id": p.offer_id, "accept": p.accept}),
        )
        .await;
        if p.accept {
            r.accepted = Some(p);
        }
        ok
    }

    fn new_leg_speed(&mut self, r: &mut Rider) {
        let [lo, hi] = self.behaviour.speed_mps;
        r.speed = if hi > lo {
            self.rng.random_range(lo..=hi)
        } else {
            lo
        };
    }

    fn handover(&mut self) -> Instant {
        let [lo, hi] = self.behaviour.handover_s;
        let s = if hi > lo {
            self.rng.random_range(lo..=hi)
        } else {
            lo
        };
        Instant::now() + Duration::from_secs_f64(s)
    }

    /// Moves the rider by the time since the last move, sending order statuses on the
    /// way; `false` if the socket failed.
    async fn advance(&mut self, ws: &mut Ws, r: &mut Rider) -> bool {
        let now = Instant::now();
        let dt = now.duration_since(r.last_move).as_secs_f64().min(5.0);
        r.last_move = now;
        let step = r.speed * dt;
        r.moving = false;
        if let Some(mut job) = r.job.take() {
            let mut keep = true;
            match job.phase {
                Phase::ToPickup => {
                    if self.move_towards(r, job.pickup, step) {
                        job.phase = Phase::AtPickup(self.handover());
                    }
                }
                Phase::AtPickup(until) if now >= until => {
                    let frame = json!({"type": "order_status", "order_id": job.order, "status": "picked_up"});
                    r.sent = Some(Sent {
                        order: job.order,
                        delivered: None,
                    });
                    if !send(ws, frame).await {
                        r.job = Some(job);
                        return false;
                    }
                    job.phase = Phase::ToDropoff;
                    self.new_leg_speed(r);
                }
                Phase::ToDropoff => {
                    if self.move_towards(r, job.dropoff, step) {
                        job.phase = Phase::AtDropoff(self.handover());
                    }
                }
                Phase::AtDropoff(until) if now >= until => {
                    // The customer tells the code at the door; the sim's customer agent
                    // put it in the ledger when the order was placed.
                    if let Some(code) = self.metrics.code_of(job.order) {
                        let frame = json!({"type": "order_status", "order_id": job.order,
                                           "status": "delivered", "code": code});
                        r.sent = Some(Sent {
                            order: job.order,
                            delivered: Some(code),
                        });
                        if !send(ws, frame).await {
                            r.job = Some(job);
                            return false;
                        }
                        self.metrics.delivered_sent(job.order);
                        keep = false;
                    }
                }
                Phase::AtPickup(_) | Phase::AtDropoff(_) => {}
            }
            if keep {
                r.job = Some(job);
            }
            return true;
        }
        // Free: wander, with the odd pause.
        if r.pause_until.is_some_and(|t| now < t) {
            return true;
        }
        r.pause_until = None;
        let target = match r.wander_to {
            Some(t) => t,
            None => {
                let t = self.wander_target(r.pos);
                r.wander_to = Some(t);
                self.new_leg_speed(r);
                t
            }
        };
        if self.move_towards(r, target, step) {
            r.wander_to = None;
            if self.rng.random_bool(self.behaviour.pause_probability) {
                r.pause_until = Some(now + Duration::from_secs(self.rng.random_range(5..=30)));
            }
        }
        true
    }

    /// A wander destination within `wander_m` of `from`, inside the area.
    fn wander_target(&mut self, from: Point) -> Point {
        let centre = self.area.centre();
        for _ in 0..8 {
            let t = from.random_within(self.behaviour.wander_m, &mut self.rng);
            if centre.distance_m(t) <= self.area.radius_m {
                return t;
            }
        }
        centre.random_within(self.area.radius_m, &mut self.rng)
    }

    /// Moves `step` metres towards `target`; `true` when there.
    fn move_towards(&mut self, r: &mut Rider, target: Point, step: f64) -> bool {
        if step > 0.0 && r.pos.distance_m(target) > 0.01 {
            r.heading = r.pos.bearing_to(target);
            r.moving = true;
        }
        let (p, arrived) = r.pos.step_towards(target, step);
        r.pos = p;
        arrived
    }

    async fn send_fix(&mut self, ws: &mut Ws, r: &mut Rider) -> bool {
        let noise = self.behaviour.gps_noise_m;
        let seen = r.pos.jitter(noise, &mut self.rng);
        let mut frame = json!({"type": "location", "lat": seen.lat, "lng": seen.lng,
                               "ts": now_ms(), "accuracy": noise.max(3.0).round()});
        if r.moving {
            frame["speed"] = json!((r.speed * 10.0).round() / 10.0);
            frame["heading"] = json!(r.heading.round());
        } else {
            frame["speed"] = json!(0.0);
        }
        let ok = send(ws, frame).await;
        if ok {
            self.metrics.location_sent();
        }
        ok
    }
}

/// Something cast doubt on what the server has: check soon (not sooner than planned).
fn doubt(r: &mut Rider) {
    let soon = Instant::now() + r.check_backoff;
    r.check_at = Some(r.check_at.map_or(soon, |t| t.min(soon)));
}

/// The order is no longer the rider's concern.
fn forget(r: &mut Rider, order: Uuid) {
    if r.job.as_ref().is_some_and(|j| j.order == order) {
        r.job = None;
    }
    if r.sent.as_ref().is_some_and(|s| s.order == order) {
        r.sent = None;
    }
}

async fn send(ws: &mut Ws, frame: Value) -> bool {
    ws.send(Message::Text(frame.to_string().into()))
        .await
        .is_ok()
}
