//! `GET /ws/ops`: the admins' sockets. Each follows the server's
//! [`OpsFeed`](crate::ws::fleet_feed::OpsFeed) and writes its latest `fleet` frame whenever the socket can
//! take it.

use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use actix_web::{get, web, HttpRequest, HttpResponse};
use actix_web_actors::ws::{self, ProtocolError};
use tokio::sync::watch;

use crate::auth::AuthUser;
use crate::domain::Role;
use crate::error::ApiError;
use crate::state::AppState;
use crate::telemetry::Metrics;
use crate::ws::{keep_alive, watcher_frame, Heard};

/// A frame from the feed.
struct Frame(Arc<str>);

/// One admin's socket.
pub struct OpsSocket {
    frames: Option<watch::Receiver<Arc<str>>>,
    metrics: Metrics,
    last_heard: Instant,
}

impl Actor for OpsSocket {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.metrics
            .ws_connections
            .with_label_values(&["ops"])
            .inc();
        if let Some(frames) = self.frames.take() {
            // Polled only while the socket can write: a stalled admin skips frames.
            ctx.add_stream(futures_util::stream::unfold(frames, |mut rx| async move {
                rx.changed().await.ok()?;
                let frame = rx.borrow_and_update().clone();
                Some((Frame(frame), rx))
            }));
        }
        keep_alive(ctx);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.metrics
            .ws_connections
            .with_label_values(&["ops"])
            .dec();
    }
}

impl Heard for OpsSocket {
    fn last_heard(&self) -> Instant {
        self.last_heard
    }
}

impl StreamHandler<Frame> for OpsSocket {
    fn handle(&mut self, Frame(frame): Frame, ctx: &mut Self::Context) {
        ctx.text(&*frame);
    }
}

impl StreamHandler<Result<ws::Message, ProtocolError>> for OpsSocket {
    fn handle(&mut self, msg: Result<ws::Message, ProtocolError>, ctx: &mut Self::Context) {
        self.last_heard = Instant::now();
        watcher_frame(msg, ctx);
    }
}

/// Follow the fleet (admins).
#[get("/ws/ops")]
pub async fn ops_socket(
    req: HttpRequest,
    stream: web::Payload,
    user: AuthUser,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    if user.role != Role::Admin {
        return Err(ApiError::Forbidden);
    }
    let socket = OpsSocket {
        frames: Some(state.ops.subscribe()),
        metrics: state.metrics.clone(),
        last_heard: Instant::now(),
    };
    ws::WsResponseBuilder::new(socket, &req, stream)
        .frame_size(16 * 1024)
        .start()
        .map_err(|e| ApiError::BadRequest(format!("not a WebSocket handshake: {e}")))
}
