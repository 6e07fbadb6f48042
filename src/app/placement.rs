//! Placing an order, the application's side of `POST /api/v1/orders`: the customer's
//! limits (placements a minute, open orders), pricing from the catalog (clients cannot set
//! prices; totals are checked sums), the pharmacy (the named one, or the nearest in the
//! service radius that has everything), the stock reservation through its inventory shard,
//! the stored `confirmed` order and its announcement (the outbox), and the first command to
//! its actor. With an `Idempotency-Key` the key is claimed in the database first, so two
//! simultaneous requests with one key make one order. The handler only parses and maps.

use std::collections::HashMap;
use std::time::{Duration as StdDuration, Instant};

use chrono::Duration;
use medify_actors::geo::Point;
use medify_actors::inventory::ReserveOutcome;
use medify_actors::model::{first_step, start, OrderEvent, PaymentMethod};
use medify_actors::order::Command;
use medify_actors::ports::{Event, EventKind, Line};
use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::rate_limit::Quota;
use crate::error::{ApiError, FieldError, FieldErrors};
use crate::state::AppState;
use crate::store::orders::{KeyClaim, NewOrder, NewOrderLine, OrderView};

const MAX_ITEMS: usize = 50;
const MAX_QTY: i64 = 100;
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
    /// `cod` (cash on delivery, the default) or `online`.
    #[serde(default)]
    pub payment_method: PaymentChoice,
    /// One of the caller's prescriptions; required when any item is prescription-only.
    pub prescription_id: Option<Uuid>,
}

/// How the customer pays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentChoice {
    #[default]
    Cod,
    Online,
}

impl From<PaymentChoice> for PaymentMethod {
    fn from(c: PaymentChoice) -> Self {
        match c {
            PaymentChoice::Cod => PaymentMethod::Cod,
            PaymentChoice::Online => PaymentMethod::Online,
        }
    }
}

/// A validated, priced order request.
struct Planned {
    lines: Vec<NewOrderLine>,
    total_cents: i64,
    delivery: Point,
    address: String,
    /// Some item is prescription-only: a pharmacist reviews the prescription first.
    needs_review: bool,
}

/// A catalog entry as pricing sees it.
#[derive(Debug, Clone, Copy)]
struct Priced {
    price_cents: i64,
    rx_required: bool,
}

/// What the request names, as found: a pharmacy that exists, a prescription of the
/// caller's, online payment switched on.
#[derive(Debug, Clone, Copy)]
struct Found {
    pharmacy: bool,
    prescription: bool,
    online_payments: bool,
}

/// Reads what the request names (prices, all lines in one query; the pharmacy) and
/// validates and prices it ([`price`]).
async fn plan(
    state: &AppState,
    customer: Uuid,
    body: &NewOrderRequest,
) -> Result<Planned, ApiError> {
    let ids: Vec<Uuid> = body
        .items
        .iter()
        .take(MAX_ITEMS)
        .map(|i| i.medicine_id)
        .collect();
    let catalog: HashMap<Uuid, Priced> = state
        .store
        .medicines_in(&ids)
        .await?
        .into_iter()
        .map(|m| {
            let priced = Priced {
                price_cents: m.price_cents,
                rx_required: m.rx_required,
            };
            (m.id, priced)
        })
        .collect();
    let prescription = match body.prescription_id {
        Some(id) => state.store.is_prescription_of(id, customer).await?,
        None => true,
    };
    let found = Found {
        pharmacy: body
            .pharmacy_id
            .is_none_or(|p| state.catalog.pharmacies().get(p).is_some()),
        prescription,
        online_payments: state.settings.checkout.webhook_secret.is_some(),
    };
    price(body, &catalog, found)
}

/// The request checked and priced against `catalog`: every problem is reported at once,
/// by field; a valid order with prescription-only items and no prescription is refused
/// naming those items.
fn price(
    body: &NewOrderRequest,
    catalog: &HashMap<Uuid, Priced>,
    found: Found,
) -> Result<Planned, ApiError> {
    let mut errors = FieldErrors::default();
    if body.items.is_empty() || body.items.len() > MAX_ITEMS {
        errors.add("items", format!("must have 1 to {MAX_ITEMS} lines"));
    }
    let mut lines = Vec::with_capacity(body.items.len());
    let mut rx_items = Vec::new();
    let mut seen = std::collections::HashSet::new();
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
            Some(priced) => {
                if priced.rx_required {
                    rx_items.push(FieldError::new(
                        format!("items[{i}]"),
                        "sold only against a prescription",
                    ));
                }
                lines.push(NewOrderLine {
                    medicine_id: item.medicine_id,
                    qty: item.qty,
                    price_cents: priced.price_cents,
                });
            }
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
    if !found.pharmacy {
        errors.add("pharmacy_id", "no such pharmacy");
    }
    if !found.prescription {
        errors.add("prescription_id", "no such prescription of yours");
    }
    if body.payment_method == PaymentChoice::Online && !found.online_payments {
        errors.add(
            "payment_method",
            "online payment is not configured on this server; pay cash on delivery",
        );
    }
    errors.finish()?;
    if !rx_items.is_empty() && body.prescription_id.is_none() {
        return Err(ApiError::PrescriptionRequired(rx_items));
    }
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
        needs_review: !rx_items.is_empty(),
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
    let planned = plan(state, customer, body).await?;
    let order_id = Uuid::now_v7();
    let payment_method = PaymentMethod::from(body.payment_method);
    // The intent is opened before stock is held: a provider that does not answer costs
    // the customer an error, not a reservation.
    let payment_intent_id = match payment_method {
        PaymentMethod::Online => Some(
            state
                .payments
                .create_intent(order_id, planned.total_cents)
                .await
                .map_err(|e| ApiError::Unavailable(format!("the payment provider: {e}")))?,
        ),
        PaymentMethod::Cod => None,
    };
    let pharmacy_id = reserve(state, order_id, body, &planned).await?;
    let dispatch_timeout =
        Duration::from_std(state.settings.dispatch_timeout).unwrap_or(Duration::minutes(10));
    // The first transition, through the model like every other.
    let status = start(OrderEvent::Create).expect("creating is how an order starts");
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
        status,
        payment_method,
        payment_intent_id,
        prescription_id: body.prescription_id,
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
        to_status: Some(status),
        at_ms: chrono::Utc::now().timestamp_millis(),
        payment: None,
        cancel_reason: None,
    };
    medify_actors::outbox::announce(&*state.bus, &state.store, order_id, 1, vec![confirmed]).await;
    let first = match first_step(
        planned.needs_review,
        payment_method == PaymentMethod::Online,
    ) {
        OrderEvent::AwaitPrescription => Command::AwaitPrescription,
        OrderEvent::AwaitPayment => Command::AwaitPayment,
        _ => Command::Dispatch,
    };
    if let Err(e) = state.orders.apply(order_id, first).await {
        tracing::error!(order_id = %order_id, error = %e, "could not take the order's first step");
    }
    state
        .store
        .order_view(order_id)
        .await?
        .map(OrderView::with_delivery_code)
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("order {order_id} vanished")))
}

/// What a placement came to.
pub enum Placement {
    /// A new order (201).
    Created(OrderView),
    /// The order an earlier request with the same key made (200).
    Repeated(OrderView),
}

/// Places `body` for `customer`, once per `key` when there is one. Both views are the
/// customer's (with the delivery code).
pub async fn place(
    state: &AppState,
    customer: Uuid,
    body: &NewOrderRequest,
    key: Option<&str>,
) -> Result<Placement, ApiError> {
    let quota = Quota {
        per_minute: state.settings.limits.orders_per_minute,
    };
    state
        .limiter
        .check(&format!("orders:customer:{customer}"), quota)
        .await
        .map_err(|retry_after_s| ApiError::RateLimited { retry_after_s })?;
    let Some(key) = key else {
        return Ok(Placement::Created(create(state, customer, body).await?));
    };
    let hash = Sha256::digest(serde_json::to_vec(body).map_err(anyhow::Error::from)?).to_vec();
    let started = Instant::now();
    let mut wait = StdDuration::from_millis(10);
    loop {
        match state
            .store
            .claim_idempotency_key(customer, key, &hash, Duration::hours(KEY_TTL_HOURS))
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
                return Ok(Placement::Repeated(view.with_delivery_code()));
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
    match create(state, customer, body).await {
        Ok(view) => {
            state
                .store
                .complete_idempotency_key(customer, key, view.id)
                .await?;
            Ok(Placement::Created(view))
        }
        Err(e) => {
            state.store.release_idempotency_key(customer, key).await?;
            Err(e)
        }
    }
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

    fn request(items: &[(Uuid, i64)], lat: f64, address: &str) -> NewOrderRequest {
        NewOrderRequest {
            items: items
                .iter()
                .map(|&(medicine_id, qty)| NewItem { medicine_id, qty })
                .collect(),
            delivery: DeliveryIn {
                lat,
                lng: 77.59,
                address: address.to_owned(),
            },
            pharmacy_id: None,
            payment_method: PaymentChoice::Cod,
            prescription_id: None,
        }
    }

    const FOUND: Found = Found {
        pharmacy: true,
        prescription: true,
        online_payments: true,
    };

    fn priced(price_cents: i64) -> Priced {
        Priced {
            price_cents,
            rx_required: false,
        }
    }

    /// The fields a refused request names.
    fn refused(result: Result<Planned, ApiError>) -> Vec<String> {
        match result {
            Err(ApiError::Validation(errors)) => errors.into_iter().map(|e| e.field).collect(),
            Err(other) => panic!("not a validation error: {other}"),
            Ok(_) => panic!("accepted"),
        }
    }

    #[test]
    fn a_valid_request_is_priced_from_the_catalog() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let catalog = HashMap::from([(a, priced(150)), (b, priced(99))]);
        let planned = price(
            &request(&[(a, 2), (b, 1)], 12.97, "  1 MG Road "),
            &catalog,
            FOUND,
        )
        .expect("priced");
        assert!(!planned.needs_review);
        assert_eq!(planned.total_cents, 399);
        assert_eq!(planned.address, "1 MG Road");
        let prices: Vec<i64> = planned.lines.iter().map(|l| l.price_cents).collect();
        assert_eq!(prices, [150, 99]);
    }

    #[test]
    fn every_problem_is_named_at_once() {
        let (a, unknown) = (Uuid::now_v7(), Uuid::now_v7());
        let catalog = HashMap::from([(a, priced(150))]);
        let mut body = request(&[(a, 0), (a, 1), (unknown, 1)], f64::NAN, "   ");
        body.payment_method = PaymentChoice::Online;
        let nothing = Found {
            pharmacy: false,
            prescription: false,
            online_payments: false,
        };
        let fields = refused(price(&body, &catalog, nothing));
        assert_eq!(
            fields,
            [
                "items[0].qty",
                "items[1].medicine_id",
                "items[2].medicine_id",
                "delivery.lat",
                "delivery.address",
                "pharmacy_id",
                "prescription_id",
                "payment_method",
            ]
        );
        assert_eq!(
            refused(price(&request(&[], 12.97, "x"), &catalog, FOUND)),
            ["items"]
        );
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
