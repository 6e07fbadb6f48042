//! `/api/v1/orders`: placing, reading, cancelling and dispatching orders.
//!
//! Placing an order: validate, price it from the catalog (clients cannot set prices),
//! reserve its stock through the pharmacy's inventory shard (the named pharmacy, or the
//! nearest in the service radius that has everything), store it as `confirmed`, start its
//! actor, which moves it to `dispatching`. With an `Idempotency-Key`, the key is claimed in
//! the database first, so two simultaneous requests with one key make one order.
//!
//! Who sees what: the customer, the assigned rider, the pharmacy's staff and admins see an
//! order; anyone else gets 404, as if it did not exist. Only the customer and admins see
//! the `delivery_code`.

use std::time::{Duration as StdDuration, Instant};

use actix_web::{get, post, web, HttpRequest, HttpResponse};
use chrono::Duration;
use medify_actors::geo::Point;
use medify_actors::inventory::ReserveOutcome;
use medify_actors::order::{Command, OrderError};
use medify_actors::ports::{Event, EventKind, Line};
use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::rate_limit::Quota;
use crate::auth::AuthUser;
use crate::domain::Role;
use crate::error::{ApiError, FieldError, FieldErrors, Problem};
use crate::extract::ApiJson;
use crate::pagination::{Page, PageParams};
use crate::state::AppState;
use crate::store::offers::OfferRow;
use crate::store::orders::{KeyClaim, NewOrder, NewOrderLine, OrderScope, OrderView};

const MAX_ITEMS: usize = 50;
const MAX_QTY: i64 = 100;
const MAX_KEY_LEN: usize = 255;
/// How long an Idempotency-Key is remembered.
const KEY_TTL_HOURS: i64 = 24;
/// How long a request waits for another request with the same key to finish.
const KEY_WAIT: StdDuration = StdDuration::from_secs(10);

#[derive(Deserialize, Serialize, ToSchema)]
pub struct NewItem {
    pub medicine_id: Uuid,
    /// 1..100
    #[schema(minimum = 1, maximum = 100)]
    pub qty: i64,
}

#[derive(Deserialize, Serialize, ToSchema)]
pub struct DeliveryIn {
    #[schema(minimum = -90, maximum = 90)]
    pub lat: f64,
    #[schema(minimum = -180, maximum = 180)]
    pub lng: f64,
    /// 1 to 500 characters, not blank.
    #[schema(min_length = 1, max_length = 500)]
    pub address: String,
}

#[derive(Deserialize, Serialize, ToSchema)]
pub struct NewOrderRequest {
    /// 1..50 lines, each medicine once.
    #[schema(min_items = 1, max_items = 50)]
    pub items: Vec<NewItem>,
    pub delivery: DeliveryIn,
    /// Order from this pharmacy; without it, the nearest in range that has everything.
    pub pharmacy_id: Option<Uuid>,
}

#[derive(Deserialize, ToSchema)]
pub struct AssignRequest {
    pub rider_id: Uuid,
}

/// A validated, priced order request.
struct Planned {
    lines: Vec<NewOrderLine>,
    total_cents: i64,
    delivery: Point,
    address: String,
}

async fn plan(state: &AppState, body: &NewOrderRequest) -> Result<Planned, ApiError> {
    let mut errors = FieldErrors::default();
    if body.items.is_empty() || body.items.len() > MAX_ITEMS {
        errors.add("items", format!("must have 1 to {MAX_ITEMS} lines"));
    }
    let mut lines = Vec::with_capacity(body.items.len());
    let mut seen = std::collections::HashSet::new();
    // Prices come from the catalog, all lines in one query.
    let ids: Vec<Uuid> = body
        .items
        .iter()
        .take(MAX_ITEMS)
        .map(|i| i.medicine_id)
        .collect();
    let catalog: std::collections::HashMap<Uuid, i64> = state
        .store
        .medicines_in(&ids)
        .await?
        .into_iter()
        .map(|m| (m.id, m.price_cents))
        .collect();
    for (i, item) in body.items.iter().enumerate().take(MAX_ITEMS) {
        if !(1..=MAX_QTY).contains(&item.qty) {
            errors.add(
                &format!("items[{i}].qty"),
                format!("must be between 1 and {MAX_QTY}"),
            );
        }
        if !seen.insert(item.medicine_id) {
            errors.add(&format!("items[{i}].medicine_id"), "appears more than once");
            continue;
        }
        match catalog.get(&item.medicine_id) {
            Some(price_cents) => lines.push(NewOrderLine {
                medicine_id: item.medicine_id,
                qty: item.qty,
                price_cents: *price_cents,
            }),
            None => errors.add(&format!("items[{i}].medicine_id"), "no such medicine"),
        }
    }
    let delivery = match Point::new(body.delivery.lat, body.delivery.lng) {
        Ok(p) => Some(p),
        Err(e) => {
            let field = if matches!(e, medify_actors::geo::PointError::Latitude) {
                "delivery.lat"
            } else {
                "delivery.lng"
            };
            errors.add(field, e.to_string());
            None
        }
    };
    let address = body.delivery.address.trim();
    if address.is_empty() || address.chars().count() > 500 {
        errors.add("delivery.address", "must be 1 to 500 characters");
    }
    if let Some(p) = body.pharmacy_id {
        if state.catalog.pharmacies().get(p).is_none() {
            errors.add("pharmacy_id", "no such pharmacy");
        }
    }
    errors.finish()?;
    let delivery =
        delivery.ok_or_else(|| ApiError::Internal(anyhow::anyhow!("validated point missing")))?;
    // Prices are capped and quantities checked, so this cannot overflow; if a row written
    // before the cap ever made it, the order is refused rather than wrapped.
    let total_cents = order_total(&lines).ok_or_else(|| {
        ApiError::Validation(vec![FieldError::new(
            "items",
            "the order's total is too large",
        )])
    })?;
    Ok(Planned {
        lines,
        total_cents,
        delivery,
        address: address.to_owned(),
    })
}

/// The sum of `qty × price_cents` over the lines; `None` if it would overflow.
fn order_total(lines: &[NewOrderLine]) -> Option<i64> {
    lines.iter().try_fold(0i64, |total, line| {
        total.checked_add(line.qty.checked_mul(line.price_cents)?)
    })
}

/// Reserves the order's stock at the named pharmacy or the nearest one in range that has
/// everything; returns the pharmacy.
async fn reserve(
    state: &AppState,
    order_id: Uuid,
    body: &NewOrderRequest,
    planned: &Planned,
) -> Result<Uuid, ApiError> {
    let candidates: Vec<Uuid> = match body.pharmacy_id {
        Some(p) => vec![p],
        None => state
            .catalog
            .pharmacies()
            .nearby(planned.delivery, state.settings.service_radius_m)
            .into_iter()
            .map(|(p, _)| p.id)
            .collect(),
    };
    if candidates.is_empty() {
        return Err(ApiError::Unprocessable {
            code: "out_of_service_area",
            detail: format!(
                "no pharmacy within {} m of the delivery point",
                state.settings.service_radius_m
            ),
        });
    }
    let lines: Vec<Line> = planned
        .lines
        .iter()
        .map(|l| Line {
            medicine_id: l.medicine_id,
            qty: l.qty,
        })
        .collect();
    let mut first_shortage = None;
    for pharmacy in candidates {
        match state
            .inventory
            .reserve(order_id, pharmacy, lines.clone())
            .await
            .map_err(|e| ApiError::Internal(e.into()))?
        {
            ReserveOutcome::Reserved => return Ok(pharmacy),
            ReserveOutcome::Insufficient(short) => {
                first_shortage.get_or_insert(short);
            }
        }
    }
    let short = first_shortage.unwrap_or_default();
    let errors = body
        .items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| {
            short
                .iter()
                .find(|s| s.medicine_id == item.medicine_id)
                .map(|s| {
                    FieldError::new(
                        format!("items[{i}]"),
                        format!("only {} available, {} asked", s.available, s.requested),
                    )
                })
        })
        .collect();
    Err(ApiError::InsufficientStock(errors))
}

/// Creates the order: reserve, store, announce, dispatch.
async fn create(
    state: &AppState,
    customer: Uuid,
    body: &NewOrderRequest,
) -> Result<OrderView, ApiError> {
    let cap = state.settings.limits.open_orders_per_customer;
    if state.store.open_orders_of(customer).await? >= i64::from(cap) {
        return Err(ApiError::Conflict {
            code: "limit_reached",
            detail: format!(
                "you have {cap} open orders; wait until one is delivered or cancel one"
            ),
        });
    }
    let planned = plan(state, body).await?;
    let order_id = Uuid::now_v7();
    let pharmacy_id = reserve(state, order_id, body, &planned).await?;
    let dispatch_timeout =
        Duration::from_std(state.settings.dispatch_timeout).unwrap_or(Duration::minutes(10));
    let order = NewOrder {
        id: order_id,
        customer_id: customer,
        pharmacy_id,
        lines: planned.lines,
        total_cents: planned.total_cents,
        delivery: planned.delivery,
        address: planned.address,
        delivery_code: format!("{:04}", rand::rng().random_range(0..10_000u32)),
        dispatch_deadline: crate::store::now() + dispatch_timeout,
    };
    if let Err(e) = state.store.insert_order(&order).await {
        // Give the stock back; start-up reconciliation covers a crash right here.
        if let Err(release) = state.inventory.release(order_id, pharmacy_id).await {
            tracing::error!(order_id = %order_id, error = %release, "could not release the reservation of an order that was not stored");
        }
        return Err(e.into());
    }
    let confirmed = Event {
        id: medify_actors::ports::order_event_id(order_id, 1),
        kind: EventKind::OrderConfirmed,
        order_id: Some(order_id),
        customer_id: Some(customer),
        rider_id: None,
        pharmacy_id: Some(pharmacy_id),
        from_status: None,
        to_status: Some(medify_actors::order::OrderStatus::Confirmed),
        at_ms: chrono::Utc::now().timestamp_millis(),
    };
    medify_actors::outbox::announce(&*state.bus, &state.store, order_id, 1, confirmed).await;
    if let Err(e) = state.orders.apply(order_id, Command::Dispatch).await {
        tracing::error!(order_id = %order_id, error = %e, "could not start dispatching");
    }
    state
        .store
        .order_view(order_id)
        .await?
        .map(OrderView::with_delivery_code)
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("order {order_id} vanished")))
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
        (status = 409, description = "`insufficient_stock`, naming the items; `limit_reached` when the customer already has `MAX_OPEN_ORDERS_PER_CUSTOMER` open orders", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload_too_large`: a body over 64 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported_media_type`: a body that is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`, `out_of_service_area` or `idempotency_key_reused`", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited`: more than `RATE_LIMIT_ORDERS_PER_MINUTE` placements a minute; see `Retry-After`", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "seconds to wait"))),
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
    let quota = Quota {
        per_minute: state.settings.limits.orders_per_minute,
    };
    state
        .limiter
        .check(&format!("orders:customer:{}", user.id), quota)
        .await
        .map_err(|retry_after_s| ApiError::RateLimited { retry_after_s })?;
    let body = body.into_inner();
    let Some(key) = idempotency_key(&req)? else {
        let view = create(&state, user.id, &body).await?;
        return Ok(HttpResponse::Created().json(view));
    };
    let hash = Sha256::digest(serde_json::to_vec(&body).map_err(anyhow::Error::from)?).to_vec();
    let started = Instant::now();
    let mut wait = StdDuration::from_millis(10);
    loop {
        match state
            .store
            .claim_idempotency_key(user.id, &key, &hash, Duration::hours(KEY_TTL_HOURS))
            .await?
        {
            KeyClaim::Claimed => break,
            KeyClaim::Existing { request_hash, .. }
                if !request_hash.is_empty() && request_hash != hash =>
            {
                return Err(ApiError::Unprocessable {
                    code: "idempotency_key_reused",
                    detail: "this Idempotency-Key was used with a different request".into(),
                });
            }
            KeyClaim::Existing {
                order_id: Some(id), ..
            } => {
                let view = state
                    .store
                    .order_view(id)
                    .await?
                    .ok_or(ApiError::NotFound)?;
                return Ok(HttpResponse::Ok().json(view.with_delivery_code()));
            }
            KeyClaim::Existing { .. } => {
                // The first request with this key is still running (or just failed).
                if started.elapsed() > KEY_WAIT {
                    return Err(ApiError::conflict(
                        "a request with this Idempotency-Key is still being processed; retry later",
                    ));
                }
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(StdDuration::from_millis(200));
            }
        }
    }
    match create(&state, user.id, &body).await {
        Ok(view) => {
            state
                .store
                .complete_idempotency_key(user.id, &key, view.id)
                .await?;
            Ok(HttpResponse::Created().json(view))
        }
        Err(e) => {
            state.store.release_idempotency_key(user.id, &key).await?;
            Err(e)
        }
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

/// The caller's orders: a customer's own, a rider's assigned, a pharmacy's, or all (admins).
#[utoipa::path(
    tag = "orders",
    security(("bearer" = [])),
    params(PageParams),
    responses(
        (status = 200, body = inline(Page<OrderView>)),
        (status = 401, description = "`unauthorized`: no valid access token", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`: bad page or per_page", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/api/v1/orders")]
pub async fn list_orders(
    user: AuthUser,
    state: web::Data<AppState>,
    params: web::Query<PageParams>,
) -> Result<web::Json<Page<OrderView>>, ApiError> {
    let mut errors = FieldErrors::default();
    let paging = params.parse(&mut errors);
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
        .orders_page(scope, paging.limit(), paging.offset())
        .await?;
    if matches!(user.role, Role::Admin | Role::Customer) {
        items = items
            .into_iter()
            .map(OrderView::with_delivery_code)
            .collect();
    }
    Ok(web::Json(Page::new(items, paging, total)))
}

/// Maps an order actor's refusal to the contract's errors.
pub fn order_error(e: OrderError) -> ApiError {
    match e {
        OrderError::NotFound => ApiError::NotFound,
        OrderError::Forbidden => ApiError::Forbidden,
        OrderError::Conflict(detail) => ApiError::conflict(detail),
        OrderError::Stale => ApiError::conflict("the order changed meanwhile; try again"),
        OrderError::InvalidCode => ApiError::Unauthenticated {
            code: "invalid_code",
            detail: "wrong delivery code".into(),
        },
        OrderError::RateLimited(retry_after_s) => ApiError::RateLimited { retry_after_s },
        OrderError::Storage(detail) => ApiError::Internal(anyhow::anyhow!(detail)),
    }
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
        .apply(order.id, Command::Cancel { by: user.id })
        .await
        .map_err(order_error)?;
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
        .map_err(|e| ApiError::Internal(e.into()))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn line(qty: i64, price_cents: i64) -> NewOrderLine {
        NewOrderLine {
            medicine_id: Uuid::nil(),
            qty,
            price_cents,
        }
    }

    #[test]
    fn totals_are_checked_not_wrapped() {
        assert_eq!(order_total(&[line(2, 150), line(1, 99)]), Some(399));
        assert_eq!(order_total(&[]), Some(0));
        assert_eq!(order_total(&[line(100, i64::MAX / 50)]), None);
        assert_eq!(order_total(&[line(1, i64::MAX), line(1, 1)]), None);
        // The largest order the limits allow: 50 lines of 100 at the price cap.
        let biggest: Vec<_> = (0..50).map(|_| line(100, 1_000_000_000)).collect();
        assert_eq!(order_total(&biggest), Some(5_000_000_000_000));
    }
}
