//! `GET /api/v1/riders` (admins): every rider with their live state from the fleet
//! registry (no per-rider database query: one page query for the rider accounts).

use actix_web::{get, web};
use medify_actors::fleet::{LastLocation, RiderView};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::AuthUser;
use crate::domain::Role;
use crate::error::{ApiError, FieldErrors, Problem};
use crate::pagination::{Page, PageParams};
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
pub struct RiderLocation {
    pub lat: f64,
    pub lng: f64,
    /// Epoch milliseconds.
    pub ts: i64,
}

#[derive(Serialize, ToSchema)]
pub struct RiderStatus {
    pub id: Uuid,
    pub name: String,
    pub online: bool,
    pub available: bool,
    /// `offline`, `free`, `offered` or `on_delivery`.
    pub state: String,
    pub last_location: Option<RiderLocation>,
    pub active_order_id: Option<Uuid>,
}

/// Every rider account, with live state.
#[utoipa::path(
    tag = "riders",
    security(("bearer" = [])),
    params(PageParams),
    responses(
        (status = 200, body = inline(Page<RiderStatus>)),
        (status = 401, description = "`unauthorized`: no valid access token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`: the caller's role may not do this", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`: bad page or per_page", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/api/v1/riders")]
pub async fn list_riders(
    user: AuthUser,
    state: web::Data<AppState>,
    params: web::Query<PageParams>,
) -> Result<web::Json<Page<RiderStatus>>, ApiError> {
    user.require(&[Role::Admin])?;
    let mut errors = FieldErrors::default();
    let paging = params.parse(&mut errors);
    errors.finish()?;
    let (accounts, total) = state
        .store
        .riders_page(paging.limit(), paging.offset())
        .await?;
    let fleet = state.riders.fleet();
    let items = accounts
        .into_iter()
        .map(|(id, name)| {
            let v = fleet.view(id).unwrap_or_else(|| RiderView::new(id));
            RiderStatus {
                id,
                name,
                online: v.online,
                available: v.available,
                state: v.state.as_str().to_owned(),
                last_location: v
                    .last_location
                    .map(|LastLocation { lat, lng, ts }| RiderLocation { lat, lng, ts }),
                active_order_id: v.active_order_id,
            }
        })
        .collect();
    Ok(web::Json(Page::new(items, paging, total)))
}
