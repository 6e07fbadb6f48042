//! `PUT /api/v1/admin/dispatch` (admins): hold or resume automatic offers.

use actix_web::{put, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::AuthUser;
use crate::domain::Role;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::startup::AppState;

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

/// Hold or resume the matcher.
#[utoipa::path(
    tag = "riders",
    security(("bearer" = [])),
    request_body = DispatchControl,
    responses((status = 200, body = DispatchState))
)]
#[put("/api/v1/admin/dispatch")]
pub async fn set_dispatch(
    user: AuthUser,
    state: web::Data<AppState>,
    body: ApiJson<DispatchControl>,
) -> Result<web::Json<DispatchState>, ApiError> {
    user.require(&[Role::Admin])?;
    let matcher = state.riders.matcher();
    matcher
        .set_paused(body.0.paused)
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    let stats = matcher
        .stats()
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    Ok(web::Json(DispatchState {
        paused: body.0.paused,
        free_riders: stats.free_riders,
        waiting_orders: stats.waiting_orders,
        open_offers: stats.open_offers,
        shards: stats.shards,
    }))
}
