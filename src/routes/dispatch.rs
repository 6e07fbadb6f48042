//! `/api/v1/admin/dispatch` (admins): read, hold or resume automatic offers.

use actix_web::{get, put, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::AuthUser;
use crate::domain::Role;
use crate::error::{ApiError, Problem};
use crate::extract::ApiJson;
use crate::state::AppState;

#[derive(Deserialize, ToSchema)]
pub struct DispatchControl {
    /// `true` holds automatic offers (manual dispatch still works); `false` resumes them.
    pub paused: bool,
}

#[derive(Serialize, ToSchema)]
pub struct DispatchState {
    pub paused: bool,
    /// Riders in the matchers' free indexes (available, fixed, not on a delivery).
    pub free_riders: usize,
    /// Orders waiting for a rider without an open offer (counted once their earlier
    /// refusals have been read back from the offer record).
    pub waiting_orders: usize,
    pub open_offers: usize,
    /// Matcher shards (regions that have seen a rider or an order).
    pub shards: usize,
}

/// Hold or resume the matcher. The choice is stored, so it outlives a restart and, in a
/// cluster, moves with dispatch to whichever node runs it next.
#[utoipa::path(
    tag = "riders",
    security(("bearer" = [])),
    request_body = DispatchControl,
    responses(
        (status = 200, body = DispatchState),
        (status = 400, description = "`invalid_json`: the body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthorized`: no valid access token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`: the caller's role may not do this", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload_too_large`: a body over 64 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported_media_type`: a body that is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`, naming the fields", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`unavailable`: in a cluster, dispatch is moving to another node (a few seconds); retry", body = Problem, content_type = "application/problem+json"),
    )
)]
#[put("/api/v1/admin/dispatch")]
pub async fn set_dispatch(
    user: AuthUser,
    state: web::Data<AppState>,
    body: ApiJson<DispatchControl>,
) -> Result<web::Json<DispatchState>, ApiError> {
    user.require(&[Role::Admin])?;
    // Kept first, so the node that runs dispatch next (after a restart, or another node
    // in a cluster) starts as the operator asked even if this one goes away now.
    state.store.set_dispatch_paused(body.0.paused).await?;
    state
        .riders
        .matcher()
        .set_paused(body.0.paused)
        .await
        .map_err(|_| unreachable_dispatch())?;
    dispatch_state(&state).await.map(web::Json)
}

/// Whether automatic offers are held, and the matcher's counts.
#[utoipa::path(
    tag = "riders",
    security(("bearer" = [])),
    responses(
        (status = 200, body = DispatchState,
            headers(("ETag" = String, description = "send it back as `If-None-Match` to get 304 while nothing changed"))),
        (status = 304, description = "unchanged since the `If-None-Match` ETag"),
        (status = 401, description = "`unauthorized`: no valid access token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`: the caller's role may not do this", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`unavailable`: in a cluster, dispatch is moving to another node (a few seconds); retry", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/api/v1/admin/dispatch")]
pub async fn get_dispatch(
    user: AuthUser,
    state: web::Data<AppState>,
) -> Result<web::Json<DispatchState>, ApiError> {
    user.require(&[Role::Admin])?;
    dispatch_state(&state).await.map(web::Json)
}

async fn dispatch_state(state: &AppState) -> Result<DispatchState, ApiError> {
    let (stats, paused) = state
        .riders
        .matcher()
        .state()
        .await
        .map_err(|_| unreachable_dispatch())?;
    Ok(DispatchState {
        paused,
        free_riders: stats.free_riders,
        waiting_orders: stats.waiting_orders,
        open_offers: stats.open_offers,
        shards: stats.shards,
    })
}

/// The matcher did not answer: in a cluster, the node running it is changing (or gone
/// and not yet replaced).
fn unreachable_dispatch() -> ApiError {
    ApiError::Unavailable("dispatch is moving between nodes; try again shortly".to_owned())
}
