//! `GET /ws/orders/{id}/track`: a customer (or an admin) watching one order.
//!
//! The order's customer or an admin may watch (no or a bad token: 401; anyone else: 404,
//! both before the upgrade). The first frame is the `snapshot`; then `rider_location` and
//! `status` frames come from the order's [`Watchers`] slot for this socket, which conflates
//! positions, so a watcher that does not read costs one position and a few statuses. After
//! `delivered`, `cancelled` or `failed` the status is sent and the socket closes with 1000.

use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use actix_web::{get, web, HttpRequest, HttpResponse};
use actix_web_actors::ws::{self, CloseCode, CloseReason, ProtocolError};
use medify_actors::geo::Point;
use medify_actors::model::eta_seconds;
use medify_actors::order::OrderStatus;
use medify_actors::protocol::track::{Position, Snapshot};
use medify_actors::tracking::{Slot, TrackFrame, Wake, Watchers};
use uuid::Uuid;

use crate::auth::AuthUser;
use crate::domain::Role;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::orders::OrderView;
use crate::telemetry::Metrics;
use crate::ws::admission::Admission;
use crate::ws::{keep_alive, watcher_frame, Heard};

/// What a refused tracking socket is told to wait: places free up as sockets close.
const TRACK_RETRY_AFTER_S: u64 = 5;

/// One watching socket.
pub struct TrackSocket {
    id: Uuid,
    /// The first frame; its order is the one watched.
    snapshot: Snapshot<OrderView>,
    watchers: Watchers,
    slot: Option<Arc<Slot>>,
    metrics: Metrics,
    last_heard: Instant,
    /// This socket's place under the per-order and per-user limits.
    _admission: Admission,
}

impl TrackSocket {
    fn write(ctx: &mut ws::WebsocketContext<Self>, frame: &impl serde::Serialize) {
        match serde_json::to_string(frame) {
            Ok(text) => ctx.text(text),
            Err(e) => tracing::error!(error = %e, "could not encode a tracking frame"),
        }
    }

    fn finish(ctx: &mut ws::WebsocketContext<Self>) {
        ctx.close(Some(CloseReason {
            code: CloseCode::Normal,
            description: None,
        }));
        ctx.stop();
    }
}

impl Actor for TrackSocket {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.metrics
            .ws_connections
            .with_label_values(&["track"])
            .inc();
        Self::write(ctx, &self.snapshot);
        let order = &self.snapshot.order;
        if order.status.is_final() {
            Self::write(
                ctx,
                &TrackFrame::Status {
                    status: order.status,
                    at: order.updated_at.to_rfc3339(),
                },
            );
            return Self::finish(ctx);
        }
        let slot = Slot::new(ctx.address().recipient());
        self.watchers
            .add(self.snapshot.order.id, self.id, slot.clone());
        self.slot = Some(slot);
        keep_alive(ctx);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.metrics
            .ws_connections
            .with_label_values(&["track"])
            .dec();
        self.watchers.remove(self.snapshot.order.id, self.id);
    }
}

impl Heard for TrackSocket {
    fn last_heard(&self) -> Instant {
        self.last_heard
    }
}

impl Handler<Wake> for TrackSocket {
    type Result = ();
    fn handle(&mut self, _: Wake, ctx: &mut Self::Context) {
        let Some(slot) = &self.slot else { return };
        for frame in slot.drain() {
            Self::write(ctx, &frame);
            if let TrackFrame::Status { status, .. } = &frame {
                if status.is_final() {
                    return Self::finish(ctx);
                }
            }
        }
    }
}

impl StreamHandler<Result<ws::Message, ProtocolError>> for TrackSocket {
    fn handle(&mut self, msg: Result<ws::Message, ProtocolError>, ctx: &mut Self::Context) {
        self.last_heard = Instant::now();
        watcher_frame(msg, ctx);
    }
}

/// Watch an order's rider and status.
#[get("/ws/orders/{id}/track")]
pub async fn track_socket(
    req: HttpRequest,
    stream: web::Payload,
    user: AuthUser,
    id: web::Path<Uuid>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let order = state
        .store
        .order_view(*id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let allowed =
        user.role == Role::Admin || (user.role == Role::Customer && order.customer_id == user.id);
    if !allowed {
        return Err(ApiError::NotFound);
    }
    // The customer's (or an admin's) view.
    let order = order.with_delivery_code();
    let admission = state
        .track_admissions
        .admit(order.id, user.id)
        .map_err(|refused| {
            tracing::info!(order_id = %order.id, reason = %refused, "tracking socket refused");
            ApiError::RateLimited {
                retry_after_s: TRACK_RETRY_AFTER_S,
            }
        })?;
    let rider_location = order
        .rider
        .as_ref()
        .and_then(|r| state.riders.fleet().view(r.id))
        .and_then(|v| v.last_location);
    let eta_s = rider_location.and_then(|l| {
        let at = Point::new(l.lat, l.lng).ok()?;
        let pickup = Point::new(order.pharmacy.lat, order.pharmacy.lng).ok()?;
        let dropoff = Point::new(order.delivery.lat, order.delivery.lng).ok()?;
        Some(eta_seconds(
            at,
            pickup,
            dropoff,
            order.status == OrderStatus::PickedUp,
        ))
    });
    let snapshot = Snapshot {
        order,
        rider_location: rider_location.map(|l| Position {
            lat: l.lat,
            lng: l.lng,
            ts: l.ts,
        }),
        eta_s,
    };
    let socket = TrackSocket {
        id: Uuid::now_v7(),
        snapshot,
        watchers: state.watchers.clone(),
        slot: None,
        metrics: state.metrics.clone(),
        last_heard: Instant::now(),
        _admission: admission,
    };
    ws::WsResponseBuilder::new(socket, &req, stream)
        .frame_size(16 * 1024)
        .start()
        .map_err(|e| ApiError::BadRequest(format!("not a WebSocket handshake: {e}")))
}
