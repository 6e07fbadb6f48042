//! `/api/v1/orders`: placing, reading, cancelling and dispatching orders.
//!
//! Placing an order is `crate::app::placement`; the handler here checks the role and the
//! `Idempotency-Key` header and maps the outcome to 201 or 200.
//!
//! Who sees what: the customer, the assigned rider, the pharmacy's staff and admins see an
//! order; anyone else gets 404, as if it did not exist. Only the customer and admins see
//! the `delivery_code`.

use actix_web::{get, post, web, HttpRequest, HttpResponse};
use medify_actors::model::OrderStatus;
use medify_actors::order::Command;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::app::placement::{self, Placement};
pub use crate::app::placement::{DeliveryIn, NewItem, NewOrderRequest};
use crate::auth::AuthUser;
use crate::domain::Role;
use crate::error::{ApiError, FieldErrors, Problem};
use crate::extract::ApiJson;
use crate::pagination::{Page, PageParams};
use crate::state::AppState;
use crate::store::offers::OfferRow;
use crate::store::orders::{OrderScope, OrderView, TimelineEntry};

/// The longest Idempotency-Key accepted.
const MAX_KEY_LEN: usize = 255;

#[derive(Deserialize, ToSchema)]
pub struct AssignRequest {
    pub rider_id: Uuid,
}

fn idempotency_key(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let Some(raw) = req.headers().get("idempotency-key") else {
        return Ok(None);
    };
    let key = raw.to_str().map(str::trim).unwrap_or("");
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(ApiError::BadRequest(format!(
            "Idempotency-Key must be 1 to {MAX_KEY_LEN} visible ASCII characters"
        )));
    }
    Ok(Some(key.to_owned()))
}

/// Place an order (customers).
#[utoipa::path(
    tag = "orders",
    security(("bearer" = [])),
    request_body = NewOrderRequest,
    params(("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, description = "retry-safe key: the same key and body return the first order (1 to 255 visible ASCII characters)")),
    responses(
        (status = 200, description = "a repeat of an earlier request with the same Idempotency-Key", body = OrderView),
        (status = 201, body = OrderView),
        (status = 400, description = "`invalid_json`: the body is not JSON; `bad_request`: an empty or over-long Idempotency-Key", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthorized`: no valid access token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "not a customer", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`insufficient_stock`, naming the items; `limit_reached` when the customer already has `MAX_OPEN_ORDERS_PER_CUSTOMER` open orders; `conflict` when the first request with this Idempotency-Key is still running after 10 s", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload_too_large`: a body over 64 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported_media_type`: a body that is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`, `out_of_service_area` or `idempotency_key_reused`", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited`: more than `RATE_LIMIT_ORDERS_PER_MINUTE` placements a minute; see `Retry-After`", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "seconds to wait"))),
        (status = 503, description = "`unavailable`: the payment provider did not answer, or the stock held for the order was released before it was stored (the request stalled past `RESERVATION_REPAIR_GRACE_S`); nothing was placed, place it again", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/api/v1/orders")]
pub async fn place_order(
    req: HttpRequest,
    user: AuthUser,
    state: web::Data<AppState>,
    body: ApiJson<NewOrderRequest>,
) -> Result<HttpResponse, ApiError> {
    user.require(&[Role::Customer])?;
    let key = idempotency_key(&req)?;
    match placement::place(&state, user.id, &body.into_inner(), key.as_deref()).await? {
        Placement::Created(view) => Ok(HttpResponse::Created().json(view)),
        Placement::Repeated(view) => Ok(HttpResponse::Ok().json(view)),
    }
}

/// Whether `user` may see the order, and whether they see its delivery code.
async fn visibility(
    state: &AppState,
    user: &AuthUser,
    order: &OrderView,
) -> Result<Option<bool>, ApiError> {
    Ok(match user.role {
        Role::Admin => Some(true),
        Role::Customer if order.customer_id == user.id => Some(true),
        Role::Rider if order.rider.as_ref().is_some_and(|r| r.id == user.id) => Some(false),
        Role::Pharmacy => {
            let staff_of = state
                .store
                .user_by_id(user.id)
                .await?
                .and_then(|u| u.pharmacy_id);
            (staff_of == Some(order.pharmacy.id)).then_some(false)
        }
        _ => None,
    })
}

/// The order if `user` may see it (code redacted as needed), else 404.
async fn visible_order(state: &AppState, user: &AuthUser, id: Uuid) -> Result<OrderView, ApiError> {
    let order = state
        .store
        .order_view(id)
        .await?
        .ok_or(ApiError::NotFound)?;
    match visibility(state, user, &order).await? {
        None => Err(ApiError::NotFound),
        Some(true) => Ok(order.with_delivery_code()),
        Some(false) => Ok(order),
    }
}

/// One order.
#[utoipa::path(
    tag = "orders",
    security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, body = OrderView),
        (status = 401, description = "`unauthorized`: no valid access token", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/api/v1/orders/{id}")]
pub async fn get_order(
    user: AuthUser,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<web::Json<OrderView>, ApiError> {
    Ok(web::Json(visible_order(&state, &user, *id).await?))
}

/// `GET /orders` parameters: the page and an optional status filter.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OrderListParams {
    /// 1-based page number (default 1; larger values are clamped to 1000000).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1_000_000)]
    pub page: Option<String>,
    /// Items per page, 1..100 (default 20; larger values are clamped to 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub per_page: Option<String>,
    /// Only orders in one of these statuses, comma-separated (`status=dispatching,assigned`);
    /// all statuses when absent.
    #[param(value_type = Option<Vec<crate::schema::OrderStatusName>>, style = Form, explode = false)]
    pub status: Option<String>,
}

/// The statuses named in `raw` (comma-separated, each once), or a 422 naming `status`
/// (also for an empty name: `status=` is not "all", which is `status` left out).
pub fn parse_statuses(raw: Option<&str>, errors: &mut FieldErrors) -> Vec<OrderStatus> {
    let mut statuses = Vec::new();
    let Some(raw) = raw else {
        return statuses;
    };
    for name in raw.split(',').map(str::trim) {
        match OrderStatus::parse(name) {
            Some(s) if !statuses.contains(&s) => statuses.push(s),
            Some(_) => {}
            None => {
                let known: Vec<&str> = OrderStatus::ALL.iter().map(|s| s.as_str()).collect();
                errors.add(
                    "status",
                    format!("must be one or more of {}", known.join(", ")),
                );
                return Vec::new();
            }
        }
    }
    statuses
}

/// The caller's orders: a customer's own, a rider's assigned, a pharmacy's, or all (admins),
/// newest first, optionally only those in some statuses.
#[utoipa::path(
    tag = "orders",
    security(("bearer" = [])),
    params(OrderListParams),
    responses(
        (status = 200, body = inline(Page<OrderView>),
            headers(("ETag" = String, description = "send it back as `If-None-Match` to get 304 while nothing changed"))),
        (status = 304, description = "unchanged since the `If-None-Match` ETag"),
        (status = 401, description = "`unauthorized`: no valid access token", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`: bad page, per_page or status", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/api/v1/orders")]
pub async fn list_orders(
    user: AuthUser,
    state: web::Data<AppState>,
    params: web::Query<OrderListParams>,
) -> Result<web::Json<Page<OrderView>>, ApiError> {
    let mut errors = FieldErrors::default();
    let paging = PageParams {
        page: params.page.clone(),
        per_page: params.per_page.clone(),
    }
    .parse(&mut errors);
    let statuses = parse_statuses(params.status.as_deref(), &mut errors);
    errors.finish()?;
    let scope = match user.role {
        Role::Customer => OrderScope::Customer(user.id),
        Role::Rider => OrderScope::Rider(user.id),
        Role::Admin => OrderScope::All,
        Role::Pharmacy => match state
            .store
            .user_by_id(user.id)
            .await?
            .and_then(|u| u.pharmacy_id)
        {
            Some(p) => OrderScope::Pharmacy(p),
            None => return Ok(web::Json(Page::new(Vec::new(), paging, 0))),
        },
    };
    let (mut items, total) = state
        .store
        .orders_page(scope, &statuses, paging.limit(), paging.offset())
        .await?;
    if matches!(user.role, Role::Admin | Role::Customer) {
        items = items
            .into_iter()
            .map(OrderView::with_delivery_code)
            .collect();
    }
    Ok(web::Json(Page::new(items, paging, total)))
}

/// The order's status history, oldest first (who may see the order may see this).
#[utoipa::path(
    tag = "orders",
    security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, body = Vec<TimelineEntry>),
        (status = 401, description = "`unauthorized`: no valid access token", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/api/v1/orders/{id}/timeline")]
pub async fn order_timeline(
    user: AuthUser,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<web::Json<Vec<TimelineEntry>>, ApiError> {
    let order = visible_order(&state, &user, *id).await?;
    Ok(web::Json(state.store.order_timeline(order.id).await?))
}

/// Cancel an order (its customer before pick-up, or an admin). Reserved stock is released.
#[utoipa::path(
    tag = "orders",
    security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, body = OrderView),
        (status = 401, description = "`unauthorized`: no valid access token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "may see the order but not cancel it", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`conflict`: picked up or final", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`unavailable`: in a cluster, dispatch is moving to another node (a few seconds); retry", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/api/v1/orders/{id}/cancel")]
pub async fn cancel_order(
    user: AuthUser,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<web::Json<OrderView>, ApiError> {
    let order = visible_order(&state, &user, *id).await?;
    let allowed =
        user.role == Role::Admin || (user.role == Role::Customer && order.customer_id == user.id);
    if !allowed {
        return Err(ApiError::Forbidden);
    }
    if order.status.is_final() {
        return Err(ApiError::conflict(format!(
            "the order is already {}",
            order.status
        )));
    }
    state
        .orders
        .apply(
            order.id,
            Command::Cancel {
                by: user.id,
                admin: user.role == Role::Admin,
            },
        )
        .await
        .map_err(ApiError::from)?;
    Ok(web::Json(visible_order(&state, &user, order.id).await?))
}

/// A pharmacist's decision on an order's prescription.
#[derive(Deserialize, Serialize, ToSchema)]
pub struct PrescriptionReview {
    pub approve: bool,
    /// Why the prescription is rejected (required when `approve` is false): 1 to 500
    /// characters, told to the customer.
    #[schema(min_length = 1, max_length = 500)]
    pub reason: Option<String>,
}

/// Approve or reject the prescription of an order awaiting review (staff of the order's
/// pharmacy, admins). Approval moves the order on to payment or dispatch; rejection
/// cancels it (`cancel_reason: "prescription_rejected"`) and releases the stock.
#[utoipa::path(
    tag = "orders",
    security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    request_body = PrescriptionReview,
    responses(
        (status = 200, body = OrderView),
        (status = 400, description = "`invalid_json`: the body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthorized`: no valid access token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`: may see the order but not review it", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such order, or not one of this pharmacy's", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`conflict`: the order is not awaiting a prescription review", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload_too_large`: a body over 64 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported_media_type`: a body that is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`: a rejection without a reason", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`unavailable`: in a cluster, dispatch is moving to another node (a few seconds); retry", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/api/v1/orders/{id}/prescription")]
pub async fn review_prescription(
    user: AuthUser,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    body: ApiJson<PrescriptionReview>,
) -> Result<web::Json<OrderView>, ApiError> {
    let order = visible_order(&state, &user, *id).await?;
    if !matches!(user.role, Role::Admin | Role::Pharmacy) {
        return Err(ApiError::Forbidden);
    }
    let review = body.0;
    let command = if review.approve {
        Command::Approve { by: user.id }
    } else {
        let reason = review.reason.as_deref().map(str::trim).unwrap_or("");
        if reason.is_empty() || reason.chars().count() > 500 {
            return Err(ApiError::field(
                "reason",
                "a rejection needs a reason of 1 to 500 characters",
            ));
        }
        Command::Reject {
            by: user.id,
            reason: reason.to_owned(),
        }
    };
    state
        .orders
        .apply(order.id, command)
        .await
        .map_err(ApiError::from)?;
    Ok(web::Json(visible_order(&state, &user, order.id).await?))
}

/// Offer the order to a chosen rider now, ahead of the matcher (admins).
#[utoipa::path(
    tag = "orders",
    security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    request_body = AssignRequest,
    responses(
        (status = 202, description = "the offer was sent"),
        (status = 400, description = "`invalid_json`: the body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthorized`: no valid access token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`: the caller's role may not do this", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "unknown order or rider", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "the order is not dispatching, or the rider is offline or busy", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload_too_large`: a body over 64 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported_media_type`: a body that is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`, naming the fields", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`unavailable`: in a cluster, dispatch is moving to another node (a few seconds); retry", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/api/v1/orders/{id}/assign")]
pub async fn assign_order(
    user: AuthUser,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    body: ApiJson<AssignRequest>,
) -> Result<HttpResponse, ApiError> {
    user.require(&[Role::Admin])?;
    let order = state
        .store
        .order_view(*id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let rider = state
        .store
        .user_by_id(body.0.rider_id)
        .await?
        .filter(|u| u.role == Role::Rider)
        .ok_or(ApiError::NotFound)?;
    if order.status != medify_actors::order::OrderStatus::Dispatching {
        return Err(ApiError::conflict(format!(
            "the order is {}, not dispatching",
            order.status
        )));
    }
    let offered = state
        .riders
        .matcher()
        .manual_offer(medify_actors::matcher::ManualOffer {
            order_id: order.id,
            rider: rider.id,
        })
        .await
        .map_err(|_| ApiError::from(medify_actors::order::OrderError::Unavailable))?;
    match offered {
        Ok(()) => Ok(HttpResponse::Accepted().finish()),
        Err(e) => Err(ApiError::conflict(format!("rider {}: {e}", rider.id))),
    }
}

/// A GeoJSON LineString feature.
#[derive(Serialize, ToSchema)]
pub struct Trail {
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[schema(value_type = Object)]
    pub geometry: serde_json::Value,
    #[schema(value_type = Object)]
    pub properties: serde_json::Value,
}

/// Every offer the matcher (or an admin) made of this order, oldest first, and how each
/// ended (admins).
#[utoipa::path(
    tag = "orders",
    security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, body = Vec<OfferRow>),
        (status = 401, description = "`unauthorized`: no valid access token", body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/api/v1/orders/{id}/offers")]
pub async fn order_offers(
    user: AuthUser,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<web::Json<Vec<OfferRow>>, ApiError> {
    user.require(&[Role::Admin])?;
    let order = state
        .store
        .order_view(*id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(web::Json(state.store.offers_of(order.id).await?))
}

/// The rider's sampled GPS trail for this order as a GeoJSON Feature.
#[utoipa::path(
    tag = "orders",
    security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, body = Trail),
        (status = 401, description = "`unauthorized`: no valid access token", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/api/v1/orders/{id}/trail")]
pub async fn order_trail(
    user: AuthUser,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<web::Json<Trail>, ApiError> {
    let order = visible_order(&state, &user, *id).await?;
    let points = state
        .store
        .trail(order.id, state.settings.limits.trail_max_points)
        .await?;
    let coordinates: Vec<[f64; 2]> = points.iter().map(|(lat, lng, _)| [*lng, *lat]).collect();
    let ts: Vec<i64> = points.iter().map(|(_, _, ts)| *ts).collect();
    Ok(web::Json(Trail {
        kind: "Feature",
        geometry: serde_json::json!({"type": "LineString", "coordinates": coordinates}),
        properties: serde_json::json!({"order_id": order.id, "ts": ts}),
    }))
}
