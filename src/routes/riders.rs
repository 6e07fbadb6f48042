//! `GET /api/v1/riders` (admins): every rider with their live state from the fleet
//! registry (no per-rider database query: one page query for the rider accounts). With
//! `state=free` (or `offered`, `on_delivery`) the page is of the riders the registry holds
//! in that state, e.g. the riders an admin may hand an order to.

use actix_web::{get, web};
use medify_actors::fleet::{LastLocation, RiderView};
use medify_actors::model::RiderState;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
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
    #[schema(value_type = crate::schema::RiderStateName)]
    pub state: RiderState,
    pub last_location: Option<RiderLocation>,
    pub active_order_id: Option<Uuid>,
}

/// `GET /riders` parameters: the page and an optional live state.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RiderListParams {
    /// 1-based page number (default 1; larger values are clamped to 1000000).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1_000_000)]
    pub page: Option<String>,
    /// Items per page, 1..100 (default 20; larger values are clamped to 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub per_page: Option<String>,
    /// Only riders online in this state (`free`, `offered` or `on_delivery`), by name.
    #[param(value_type = Option<crate::schema::LiveRiderStateName>)]
    pub state: Option<String>,
}

/// The live state asked for: none, or one an online rider can be in.
fn state_filter(raw: Option<&str>, errors: &mut FieldErrors) -> Option<RiderState> {
    let raw = raw?.trim();
    let state = RiderState::ALL
        .into_iter()
        .find(|s| s.as_str() == raw && *s != RiderState::Offline);
    if state.is_none() {
        errors.add("state", "must be free, offered or on_delivery");
    }
    state
}

/// Every rider account (or those in one live state), with live state.
#[utoipa::path(
    tag = "riders",
    security(("bearer" = [])),
    params(RiderListParams),
    responses(
        (status = 200, body = inline(Page<RiderStatus>),
            headers(("ETag" = String, description = "send it back as `If-None-Match` to get 304 while nothing changed"))),
        (status = 304, description = "unchanged since the `If-None-Match` ETag"),
        (status = 401, description = "`unauthorized`: no valid access token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`: the caller's role may not do this", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`: bad page, per_page or state", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/api/v1/riders")]
pub async fn list_riders(
    user: AuthUser,
    state: web::Data<AppState>,
    params: web::Query<RiderListParams>,
) -> Result<web::Json<Page<RiderStatus>>, ApiError> {
    user.require(&[Role::Admin])?;
    let mut errors = FieldErrors::default();
    let paging = PageParams {
        page: params.page.clone(),
        per_page: params.per_page.clone(),
    }
    .parse(&mut errors);
    let wanted = state_filter(params.state.as_deref(), &mut errors);
    errors.finish()?;
    let fleet = state.riders.fleet();
    let (accounts, total) = match wanted {
        None => {
            state
                .store
                .riders_page(paging.limit(), paging.offset())
                .await?
        }
        Some(wanted) => {
            let mut ids: Vec<Uuid> = fleet
                .views()
                .into_iter()
                .filter(|v| v.online && v.state == wanted)
                .map(|v| v.id)
                .collect();
            ids.sort_unstable();
            let total = i64::try_from(ids.len()).unwrap_or(i64::MAX);
            let page = &ids[paging.range(ids.len())];
            (state.store.rider_names(page).await?, total)
        }
    };
    let items = accounts
        .into_iter()
        .map(|(id, name)| {
            let v = fleet.view(id).unwrap_or_else(|| RiderView::new(id));
            RiderStatus {
                id,
                name,
                online: v.online,
                available: v.available,
                state: v.state,
                last_location: v
                    .last_location
                    .map(|LastLocation { lat, lng, ts }| RiderLocation { lat, lng, ts }),
                active_order_id: v.active_order_id,
            }
        })
        .collect();
    Ok(web::Json(Page::new(items, paging, total)))
}
