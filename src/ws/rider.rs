//! `GET /ws/rider`: the rider's socket, a thin transport shell around their session.
//!
//! The handshake authenticates (401 without a valid token, 403 for a non-rider, both before
//! the upgrade). The socket actor then decodes frames, checks coordinates, rate-limits
//! location frames (10 a second; extra frames are dropped with at most one `rate_limited`
//! error a second), answers pings, pings every 10 s and drops a peer silent for 30 s; frames
//! over 16 KiB close the socket with 1009. Everything stateful goes to the rider's
//! [`RiderSession`], which outlives the socket.

use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web::{get, web, HttpRequest, HttpResponse};
use actix_web_actors::ws::{self, CloseCode, CloseReason, ProtocolError};
use medify_actors::geo::Point;
use medify_actors::protocol::Outbound;
use medify_actors::rider::{
    Attach, Detach, Fix, Locations, ReportStatus, RespondToOffer, RiderSession, SetAvailable,
    ToSocket,
};
use serde::Deserialize;
use uuid::Uuid;

use crate::auth::AuthUser;
use crate::domain::Role;
use crate::error::ApiError;
use crate::startup::AppState;
use crate::telemetry::Metrics;
use crate::ws::{keep_alive, Heard};

/// Largest frame accepted.
pub const MAX_FRAME: usize = 16 * 1024;
/// Location frames (a batch counts as one) per second.
const LOCATION_FRAMES_PER_S: u32 = 10;
const MAX_BATCH: usize = 100;

#[derive(Deserialize)]
struct PointIn {
    lat: f64,
    lng: f64,
    ts: i64,
    speed: Option<f64>,
    heading: Option<f64>,
    accuracy: Option<f64>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Inbound {
    Location(PointIn),
    Locations {
        points: Vec<PointIn>,
    },
    Availability {
        available: bool,
    },
    OfferResponse {
        offer_id: Uuid,
        accept: bool,
    },
    OrderStatus {
        order_id: Uuid,
        status: String,
        code: Option<String>,
    },
}

impl PointIn {
    fn fix(&self) -> Result<Fix, String> {
        let at = Point::new(self.lat, self.lng).map_err(|e| e.to_string())?;
        let finite_or_none = |v: Option<f64>, name: &str| match v {
            Some(x) if !x.is_finite() || x < 0.0 => {
                Err(format!("{name} must be a finite number >= 0"))
            }
            _ => Ok(v),
        };
        Ok(Fix {
            at,
            ts_ms: self.ts,
            accuracy_m: finite_or_none(self.accuracy, "accuracy")?,
            speed_mps: finite_or_none(self.speed, "speed")?,
            heading: finite_or_none(self.heading, "heading")?,
        })
    }
}

/// One connected rider socket.
pub struct RiderSocket {
    id: Uuid,
    session: Addr<RiderSession>,
    metrics: Metrics,
    last_heard: Instant,
    window_start: Instant,
    frames_in_window: u32,
    last_rate_error: Option<Instant>,
    /// A `Locations` request to the session is in flight; newer fixes wait in `queued`.
    in_flight: bool,
    queued: Vec<(usize, Fix)>,
}

/// Fixes kept while the session is busy; beyond this the oldest are shed (counted as
/// rate_limited), so a slow session never makes a socket buffer without bound.
const MAX_QUEUED: usize = 100;

impl RiderSocket {
    fn send(ctx: &mut ws::WebsocketContext<Self>, frame: &Outbound) {
        match serde_json::to_string(frame) {
            Ok(text) => ctx.text(text),
            Err(e) => tracing::error!(error = %e, "could not encode a frame"),
        }
    }

    fn error(
        ctx: &mut ws::WebsocketContext<Self>,
        code: &'static str,
        message: impl Into<String>,
        index: Option<usize>,
    ) {
        Self::send(
            ctx,
            &Outbound::Error {
                code,
                message: message.into(),
                index,
            },
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

    /// Whether another location frame is allowed now.
    fn admit_location_frame(&mut self) -> bool {
        let now = Instant::now();
        if now.duration_since(self.window_start) >= Duration::from_secs(1) {
            self.window_start = now;
            self.frames_in_window = 0;
        }
        self.frames_in_window += 1;
        self.frames_in_window <= LOCATION_FRAMES_PER_S
    }

    fn locations(&mut self, points: Vec<PointIn>, ctx: &mut ws::WebsocketContext<Self>) {
        if !self.admit_location_frame() {
            self.count("rate_limited", points.len());
            let quiet = self
                .last_rate_error
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
            if quiet {
                self.last_rate_error = Some(Instant::now());
                Self::error(
                    ctx,
                    "rate_limited",
                    "more than 10 location frames a second; frames dropped",
                    None,
                );
            }
            return;
        }
        let mut fixes = Vec::with_capacity(points.len());
        for (index, p) in points.iter().enumerate() {
            match p.fix() {
                Ok(fix) => fixes.push((index, fix)),
                Err(reason) => {
                    self.refused("out_of_range");
                    Self::error(
                        ctx,
                        "invalid_location",
                        format!("point {index}: {reason}"),
                        Some(index),
                    );
                }
            }
        }
        if !fixes.is_empty() {
            self.forward(fixes, ctx);
        }
    }

    /// Sends fixes to the session, one request at a time; fixes arriving meanwhile are
    /// queued (bounded) and sent together when the answer comes.
    fn forward(&mut self, fixes: Vec<(usize, Fix)>, ctx: &mut ws::WebsocketContext<Self>) {
        if self.in_flight {
            self.queued.extend(fixes);
            let overflow = self.queued.len().saturating_sub(MAX_QUEUED);
            if overflow > 0 {
                self.queued.drain(..overflow);
                self.count("rate_limited", overflow);
            }
            return;
        }
        self.in_flight = true;
        let sent = fixes.len();
        ctx.spawn(self.session.send(Locations(fixes)).into_actor(self).map(
            move |result, act, ctx| {
                act.in_flight = false;
                let refused = result.unwrap_or_default();
                act.count("accepted", sent - refused.len());
                for (index, reason) in refused {
                    act.refused(reason.reason());
                    Self::error(
                        ctx,
                        "invalid_location",
                        format!("point {index}: {reason}"),
                        Some(index),
                    );
                }
                if !act.queued.is_empty() {
                    let next = std::mem::take(&mut act.queued);
                    act.forward(next, ctx);
                }
            },
        ));
    }

    fn text(&mut self, text: &str, ctx: &mut ws::WebsocketContext<Self>) {
        let message: Inbound = match serde_json::from_str(text) {
            Ok(m) => m,
            Err(e) => {
                let reason = e.to_string();
                let reason = reason
                    .split(" at line ")
                    .next()
                    .unwrap_or(&reason)
                    .to_owned();
                return Self::error(ctx, "invalid_message", reason, None);
            }
        };
        match message {
            Inbound::Location(point) => self.locations(vec![point], ctx),
            Inbound::Locations { points } => {
                if points.is_empty() || points.len() > MAX_BATCH {
                    return Self::error(
                        ctx,
                        "invalid_message",
                        format!("a batch holds 1 to {MAX_BATCH} points"),
                        None,
                    );
                }
                self.locations(points, ctx);
            }
            Inbound::Availability { available } => self.session.do_send(SetAvailable(available)),
            Inbound::OfferResponse { offer_id, accept } => {
                ctx.spawn(
                    self.session
                        .send(RespondToOffer { offer_id, accept })
                        .into_actor(self)
                        .map(|result, _, ctx| {
                            if let Ok(Err((code, message))) = result {
                                Self::error(ctx, code, message, None);
                            }
                        }),
                );
            }
            Inbound::OrderStatus {
                order_id,
                status,
                code,
            } => {
                ctx.spawn(
                    self.session
                        .send(ReportStatus {
                            order_id,
                            status,
                            code,
                        })
                        .into_actor(self)
                        .map(|result, _, ctx| {
                            if let Ok(Err((code, message))) = result {
                                Self::error(ctx, code, message, None);
                            }
                        }),
                );
            }
        }
    }
}

impl Actor for RiderSocket {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.metrics
            .ws_connections
            .with_label_values(&["rider"])
            .inc();
        keep_alive(ctx);
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
            ctx.close(Some(CloseReason {
                code: CloseCode::Policy,
                description: Some("replaced by a newer connection".into()),
            }));
            ctx.stop();
            return;
        }
        Self::send(ctx, &frame);
    }
}

impl Heard for RiderSocket {
    fn last_heard(&self) -> Instant {
        self.last_heard
    }
}

impl StreamHandler<Result<ws::Message, ProtocolError>> for RiderSocket {
    fn handle(&mut self, msg: Result<ws::Message, ProtocolError>, ctx: &mut Self::Context) {
        self.last_heard = Instant::now();
        match msg {
            Ok(ws::Message::Text(text)) => self.text(&text, ctx),
            Ok(ws::Message::Binary(_)) => {
                Self::error(ctx, "invalid_message", "send JSON text frames", None)
            }
            Ok(ws::Message::Ping(payload)) => ctx.pong(&payload),
            Ok(ws::Message::Pong(_)) | Ok(ws::Message::Nop) => {}
            Ok(ws::Message::Close(reason)) => {
                ctx.close(reason);
                ctx.stop();
            }
            Ok(ws::Message::Continuation(_)) => Self::error(
                ctx,
                "invalid_message",
                "fragmented frames are not accepted",
                None,
            ),
            Err(ProtocolError::Overflow) => {
                ctx.close(Some(CloseReason {
                    code: CloseCode::Size,
                    description: Some("frames are limited to 16 KiB".into()),
                }));
                ctx.stop();
            }
            Err(e) => {
                tracing::debug!(error = %e, "rider socket protocol error");
                ctx.close(Some(CloseCode::Protocol.into()));
                ctx.stop();
            }
        }
    }
}

/// The rider's socket. Token from `Authorization` or `?access_token=`.
#[get("/ws/rider")]
pub async fn rider_socket(
    req: HttpRequest,
    stream: web::Payload,
    user: AuthUser,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    user.require(&[Role::Rider])?;
    let session = state.riders.session(user.id);
    let socket = RiderSocket {
        id: Uuid::now_v7(),
        session,
        metrics: state.metrics.clone(),
        last_heard: Instant::now(),
        window_start: Instant::now(),
        frames_in_window: 0,
        last_rate_error: None,
        in_flight: false,
        queued: Vec::new(),
    };
    ws::WsResponseBuilder::new(socket, &req, stream)
        .frame_size(MAX_FRAME)
        .start()
        .map_err(|e| ApiError::BadRequest(format!("not a WebSocket handshake: {e}")))
}
