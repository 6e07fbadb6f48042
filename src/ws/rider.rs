//! `GET /ws/rider`: the rider's socket, a thin transport shell around their session.
//!
//! The handshake authenticates (401 without a valid token, 403 for a non-rider, both before
//! the upgrade). The socket actor then decodes frames, checks coordinates, rate-limits
//! location frames (10 a second, as a token bucket; extra frames are dropped with at most
//! one `rate_limited` error a second), answers pings, pings every 10 s and drops a peer
//! silent for 30 s; frames over 16 KiB close the socket with 1009. Everything stateful goes
//! to the rider's [`RiderSession`], which outlives the socket.
//!
//! The socket runs on the lean transport of [`crate::ws::conn`] (see [`crate::server`] for
//! why), so this actor has a plain `Context` and writes its frames through an [`Outbox`].

use std::rc::Rc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_http::ws::{CloseCode, CloseReason, Frame, Message, ProtocolError};
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use bytes::{Bytes, BytesMut};
use medify_actors::protocol::Outbound;
use medify_actors::rider::{
    Attach, Detach, Locations, ReportStatus, RespondToOffer, RiderSession, SetAvailable, ToSocket,
};
use uuid::Uuid;

use crate::auth::AuthUser;
use crate::domain::Role;
use crate::error::ApiError;
use crate::server::{FreshConnection, Takeover};
use crate::state::AppState;
use crate::telemetry::Metrics;
use crate::ws::conn::{payload_frames, Flushed, Frames, Outbox};
use crate::ws::rider_queue::{Pending, RiderQueue, Shed};
use crate::ws::{silence_close, PING_EVERY};

/// The rider's frames are declared with the rest of the wire protocol; the fuzz target and
/// older callers find them here too.
pub use medify_actors::protocol::rider::{decode, Inbound, PointIn};

/// Largest frame accepted.
pub const MAX_FRAME: usize = 16 * 1024;
/// Location frames (a batch counts as one) per second, sustained; also the burst a rider
/// may send at once after a quiet spell.
const LOCATION_FRAMES_PER_S: f64 = 10.0;
const MAX_BATCH: usize = 100;

/// One connected rider socket.
pub struct RiderSocket {
    id: Uuid,
    session: Addr<RiderSession>,
    metrics: Metrics,
    out: Outbox,
    /// A task waits for the socket to take the rest of `out`.
    draining: bool,
    /// A close frame is queued: stop once it is written.
    closing: bool,
    last_heard: Instant,
    /// Location frames the rider may send now (a token bucket refilled at
    /// [`LOCATION_FRAMES_PER_S`], holding at most that many).
    tokens: f64,
    tokens_at: Instant,
    last_rate_error: Option<Instant>,
    /// A request to the session is not answered yet; while it is out, the rider's next
    /// messages wait in `queue`, in the order sent.
    in_flight: bool,
    queue: RiderQueue,
}

impl RiderSocket {
    fn start_with(
        frames: impl Stream<Item = Result<Frame, ProtocolError>> + 'static,
        out: Outbox,
        session: Addr<RiderSession>,
        metrics: Metrics,
        queue_limit: usize,
    ) {
        RiderSocket::create(move |ctx| {
            ctx.add_stream(frames);
            let now = Instant::now();
            RiderSocket {
                id: Uuid::now_v7(),
                session,
                metrics,
                out,
                draining: false,
                closing: false,
                last_heard: now,
                tokens: LOCATION_FRAMES_PER_S,
                tokens_at: now,
                last_rate_error: None,
                in_flight: false,
                queue: RiderQueue::new(queue_limit),
            }
        });
    }

    /// Writes a frame; a peer that is gone or not reading is dropped.
    fn write(&mut self, message: Message, ctx: &mut Context<Self>) {
        match self.out.send(message) {
            Ok(flushed) => self.after_flush(flushed, ctx),
            Err(e) => {
                tracing::debug!(error = %e, "rider socket write failed");
                ctx.stop();
            }
        }
    }

    fn after_flush(&mut self, flushed: Flushed, ctx: &mut Context<Self>) {
        match flushed {
            Flushed::All if self.closing => ctx.stop(),
            Flushed::All => {}
            Flushed::Blocked if self.draining => {}
            Flushed::Blocked => {
                self.draining = true;
                ctx.spawn(self.out.writable().into_actor(self).map(|ready, act, ctx| {
                    act.draining = false;
                    match ready.and_then(|()| act.out.flush()) {
                        Ok(flushed) => act.after_flush(flushed, ctx),
                        Err(_) => ctx.stop(),
                    }
                }));
            }
        }
    }

    fn close(&mut self, reason: Option<CloseReason>, ctx: &mut Context<Self>) {
        if self.closing {
            return;
        }
        self.closing = true;
        self.write(Message::Close(reason), ctx);
    }

    fn send(&mut self, frame: &Outbound, ctx: &mut Context<Self>) {
        match serde_json::to_string(frame) {
            Ok(text) => self.write(Message::Text(text.into()), ctx),
            Err(e) => tracing::error!(error = %e, "could not encode a frame"),
        }
    }

    fn error(
        &mut self,
        ctx: &mut Context<Self>,
        code: &'static str,
        message: impl Into<String>,
        index: Option<usize>,
    ) {
        self.send(
            &Outbound::Error {
                code,
                message: message.into(),
                index,
            },
            ctx,
        );
    }

    fn count(&self, outcome: &str, n: usize) {
        self.metrics
            .location_updates
            .with_label_values(&[outcome])
            .inc_by(n as u64);
    }

    fn refused(&self, reason: &str) {
        self.count("rejected", 1);
        self.metrics
            .location_rejected
            .with_label_values(&[reason])
            .inc();
    }

    /// Whether another location frame is allowed now. A token bucket rather than a fixed
    /// one-second window: a phone sending exactly ten fixes a second with some jitter is
    /// never cut, and no second ever carries more than twenty.
    fn admit_location_frame(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.tokens_at).as_secs_f64() * LOCATION_FRAMES_PER_S;
        self.tokens = (self.tokens + refill).min(LOCATION_FRAMES_PER_S);
        self.tokens_at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn locations(&mut self, points: Vec<PointIn>, ctx: &mut Context<Self>) {
        if !self.admit_location_frame() {
            self.count("rate_limited", points.len());
            return self.rate_limited(ctx, "more than 10 location frames a second; frames dropped");
        }
        let mut fixes = Vec::with_capacity(points.len());
        for (index, p) in points.iter().enumerate() {
            match p.fix() {
                Ok(fix) => fixes.push((index, fix)),
                Err(reason) => {
                    self.refused("out_of_range");
                    self.error(
                        ctx,
                        "invalid_location",
                        format!("point {index}: {reason}"),
                        Some(index),
                    );
                }
            }
        }
        if !fixes.is_empty() {
            self.enqueue(Pending::Fixes(fixes), ctx);
        }
    }

    /// One `rate_limited` error a second at most, however many frames are dropped.
    fn rate_limited(&mut self, ctx: &mut Context<Self>, message: &str) {
        let quiet = self
            .last_rate_error
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
        if quiet {
            self.last_rate_error = Some(Instant::now());
            self.error(ctx, "rate_limited", message.to_owned(), None);
        }
    }

    /// Queues a message for the session (shedding as [`RiderQueue`] says) and sends the
    /// next one if none is out.
    fn enqueue(&mut self, message: Pending, ctx: &mut Context<Self>) {
        match self.queue.push(message) {
            Shed::None => {}
            Shed::Fixes(n) => self.count("rate_limited", n),
            Shed::Message(kind) => {
                self.metrics
                    .rider_frames_shed
                    .with_label_values(&[kind])
                    .inc();
                self.rate_limited(ctx, "too many messages waiting; frame dropped");
            }
        }
        self.pump(ctx);
    }

    /// Sends the next queued message unless one is out already.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        if self.in_flight {
            return;
        }
        let Some(next) = self.queue.pop() else {
            return;
        };
        self.in_flight = true;
        let answered = |act: &mut Self, ctx: &mut Context<Self>| {
            act.in_flight = false;
            act.pump(ctx);
        };
        match next {
            Pending::Fixes(fixes) => {
                let sent = fixes.len();
                ctx.spawn(self.session.send(Locations(fixes)).into_actor(self).map(
                    move |result, act, ctx| {
                        let refused = result.unwrap_or_default();
                        act.count("accepted", sent.saturating_sub(refused.len()));
                        for (index, reason) in refused {
                            act.refused(reason.reason());
                            act.error(
                                ctx,
                                "invalid_location",
                                format!("point {index}: {reason}"),
                                Some(index),
                            );
                        }
                        answered(act, ctx);
                    },
                ));
            }
            Pending::Availability(available) => {
                ctx.spawn(
                    self.session
                        .send(SetAvailable(available))
                        .into_actor(self)
                        .map(move |_, act, ctx| answered(act, ctx)),
                );
            }
            Pending::Offer(answer) => {
                ctx.spawn(self.session.send(answer).into_actor(self).map(
                    move |result, act, ctx| {
                        if let Ok(Err((code, message))) = result {
                            act.error(ctx, code, message, None);
                        }
                        answered(act, ctx);
                    },
                ));
            }
            Pending::Status(report) => {
                ctx.spawn(self.session.send(report).into_actor(self).map(
                    move |result, act, ctx| {
                        if let Ok(Err((code, message))) = result {
                            act.error(ctx, code, message, None);
                        }
                        answered(act, ctx);
                    },
                ));
            }
        }
    }

    fn text(&mut self, text: &str, ctx: &mut Context<Self>) {
        let message = match decode(text) {
            Ok(m) => m,
            Err(reason) => return self.error(ctx, "invalid_message", reason, None),
        };
        match message {
            Inbound::Location(point) => self.locations(vec![point], ctx),
            Inbound::Locations { points } => {
                if points.is_empty() || points.len() > MAX_BATCH {
                    return self.error(
                        ctx,
                        "invalid_message",
                        format!("a batch holds 1 to {MAX_BATCH} points"),
                        None,
                    );
                }
                self.locations(points, ctx);
            }
            Inbound::Availability { available } => {
                self.enqueue(Pending::Availability(available), ctx);
            }
            Inbound::OfferResponse { offer_id, accept } => {
                self.enqueue(Pending::Offer(RespondToOffer { offer_id, accept }), ctx);
            }
            Inbound::OrderStatus {
                order_id,
                status,
                code,
            } => self.enqueue(
                Pending::Status(ReportStatus {
                    order_id,
                    status,
                    code,
                }),
                ctx,
            ),
        }
    }
}

impl Actor for RiderSocket {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.metrics
            .ws_connections
            .with_label_values(&["rider"])
            .inc();
        ctx.run_interval(PING_EVERY, |act, ctx| {
            if act.closing {
                // Our close frame has not gone out in a whole ping period: the peer is not
                // reading. Stop without it.
                ctx.stop();
            } else if let Some(reason) = silence_close(act.last_heard) {
                act.close(Some(reason), ctx);
            } else {
                act.write(Message::Ping(Bytes::new()), ctx);
            }
        });
        self.session.do_send(Attach {
            socket_id: self.id,
            socket: ctx.address().recipient(),
        });
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.metrics
            .ws_connections
            .with_label_values(&["rider"])
            .dec();
        self.session.do_send(Detach { socket_id: self.id });
    }
}

impl Handler<ToSocket> for RiderSocket {
    type Result = ();
    fn handle(&mut self, ToSocket(frame): ToSocket, ctx: &mut Self::Context) {
        if frame == Outbound::Replaced {
            self.close(
                Some(CloseReason {
                    code: CloseCode::Policy,
                    description: Some("replaced by a newer connection".into()),
                }),
                ctx,
            );
            return;
        }
        if frame == Outbound::Restarting {
            self.close(
                Some(CloseReason {
                    code: CloseCode::Restart,
                    description: Some("service restart: reconnect".into()),
                }),
                ctx,
            );
            return;
        }
        self.send(&frame, ctx);
    }
}

impl StreamHandler<Result<Frame, ProtocolError>> for RiderSocket {
    fn handle(&mut self, msg: Result<Frame, ProtocolError>, ctx: &mut Self::Context) {
        self.last_heard = Instant::now();
        if self.closing {
            // Waiting for our close frame to go out; the peer's own close ends it at once.
            if matches!(msg, Ok(Frame::Close(_))) {
                ctx.stop();
            }
            return;
        }
        match msg {
            Ok(Frame::Text(bytes)) => match std::str::from_utf8(&bytes) {
                Ok(text) => self.text(text, ctx),
                Err(_) => self.close(
                    Some(CloseReason {
                        code: CloseCode::Invalid,
                        description: Some("text frames must be UTF-8".into()),
                    }),
                    ctx,
                ),
            },
            Ok(Frame::Binary(_)) => {
                self.error(ctx, "invalid_message", "send JSON text frames", None)
            }
            Ok(Frame::Ping(payload)) => self.write(Message::Pong(payload), ctx),
            Ok(Frame::Pong(_)) => {}
            Ok(Frame::Close(reason)) => self.close(reason, ctx),
            Ok(Frame::Continuation(_)) => self.error(
                ctx,
                "invalid_message",
                "fragmented frames are not accepted",
                None,
            ),
            Err(ProtocolError::Overflow) => self.close(
                Some(CloseReason {
                    code: CloseCode::Size,
                    description: Some("frames are limited to 16 KiB".into()),
                }),
                ctx,
            ),
            Err(ProtocolError::Io(e)) => {
                tracing::debug!(error = %e, "rider socket read failed");
                ctx.stop();
            }
            Err(e) => {
                tracing::debug!(error = %e, "rider socket protocol error");
                self.close(Some(CloseCode::Protocol.into()), ctx);
            }
        }
    }
}

/// The rider's socket (`GET` [`crate::server::RIDER_SOCKET_PATH`]). Token from `Authorization` or
/// `?access_token=`.
pub async fn rider_socket(
    req: HttpRequest,
    payload: web::Payload,
    user: AuthUser,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    user.require(&[Role::Rider])?;
    let mut res = actix_web_actors::ws::handshake(&req)
        .map_err(|e| ApiError::BadRequest(format!("not a WebSocket handshake: {e}")))?;
    let session = state.riders.session(user.id);
    let metrics = state.metrics.clone();
    let queue_limit = usize::try_from(state.settings.limits.rider_frame_queue).unwrap_or(32);
    if req.extensions().get::<FreshConnection>().is_some() {
        // The usual case: leave actix-http's dispatcher once the 101 is out.
        metrics.rider_sockets.with_label_values(&["direct"]).inc();
        let mut res = res.finish();
        res.extensions_mut()
            .insert(Takeover(Box::new(move |stream, early: BytesMut| {
                let io = Rc::new(stream);
                let frames = Frames::new(io.clone(), MAX_FRAME, early);
                RiderSocket::start_with(frames, Outbox::direct(io), session, metrics, queue_limit);
            })));
        Ok(res)
    } else {
        metrics
            .rider_sockets
            .with_label_values(&["dispatcher"])
            .inc();
        let (outbox, body) = Outbox::body();
        RiderSocket::start_with(
            payload_frames(payload, MAX_FRAME),
            outbox,
            session,
            metrics,
            queue_limit,
        );
        Ok(res.streaming(body))
    }
}
