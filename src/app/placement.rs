//! Placing an order, the application's side of `POST /api/v1/orders`: the customer's
//! limits (placements a minute, open orders), pricing from the catalog (clients cannot set
//! prices; totals are checked sums), the pharmacy (the named one, or the nearest in the
//! service radius that has everything), the stock reservation through its inventory shard,
//! the stored `confirmed` order and its announcement (the outbox), and the first command to
//! its actor. With an `Idempotency-Key` the key is claimed in the database first, so two
//! simultaneous requests with one key make one order, and the order is stored together with
//! the key's link to it, so a node dying mid-request leaves either both or neither; a claim
//! left without an order is taken over after [`KEY_ABANDONED`]. The handler only parses and
//! maps.
//!
//! The delivery point is either typed in (`delivery`) or one of the customer's saved
//! addresses (`address_id`), exactly one of the two. A saved address is read (owner-checked)
//! before pricing and copied into the order, so editing or deleting it later never changes
//! the order.

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
use crate::store::addresses::Address;
use crate::store::orders::{Inserted, KeyClaim, NewOrder, NewOrderLine, OrderView};

const MAX_ITEMS: usize = 50;
const MAX_QTY: i64 = 100;
/// How long an Idempotency-Key is remembered.
const KEY_TTL_HOURS: i64 = 24;
/// How long a request waits for another request with the same key to finish.
const KEY_WAIT: StdDuration = StdDuration::from_secs(10);
/// A claimed key with no order after this long was claimed by a request that died with its
/// node (the order and the key's link to it are stored together, so no order exists): the
/// next request with the key takes it over. Far longer than a placement takes.
const KEY_ABANDONED: StdDuration = StdDuration::from_secs(60);

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

/// An order to place. Exactly one of `delivery` and `address_id` says where it goes:
/// both, or neither, is `422 validation_failed`.
#[derive(Deserialize, Serialize, ToSchema)]
pub struct NewOrderRequest {
    /// 1..50 lines, each medicine once.
    #[schema(min_items = 1, max_items = 50)]
    pub items: Vec<NewItem>,
    /// Where to deliver, typed in. Required unless `address_id` is given; not with it.
    // Absent fields stay out of the serialised body, which is what an Idempotency-Key's
    // request hash is taken over: a body without `address_id` hashes as it always did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<DeliveryIn>,
    /// One of the caller's saved addresses (`/api/v1/me/addresses`), instead of
    /// `delivery`; the order keeps a copy of it. Required unless `delivery` is given; not
    /// with it. Unknown or someone else's: `422` on `address_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address_id: Option<Uuid>,
    /// Order from this pharmacy; without it, the nearest in range that has everything.
    pub pharmacy_id: Option<Uuid>,
    /// `cod` (cash on delivery, the default) or `online`.
    #[serde(default, skip_serializing_if = "PaymentChoice::is_cod")]
    pub payment_method: PaymentChoice,
    /// One of the caller's prescriptions; required when any item is prescription-only.
    #[serde(skip_serializing_if = "Option::is_none")]
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

impl PaymentChoice {
    /// The default, left out of the stored request (so that an Idempotency-Key's hash of
    /// a request without the new fields is what it was before they existed).
    fn is_cod(&self) -> bool {
        *self == Self::Cod
    }
}

impl From<PaymentChoice> for PaymentMethod {
    fn from(c: PaymentChoice) -> Self {
        match c {
            PaymentChoice::Cod => PaymentMethod::Cod,
            PaymentChoice::Online => PaymentMethod::Online,
        }
    }
}

/// Where the request says to deliver, with a named saved address already looked up.
enum Destination<'a> {
    Typed(&'a DeliveryIn),
    /// `address_id` and the caller's address of that id (`None`: unknown or not theirs).
    Saved(Option<&'a Address>),
    Both,
    Neither,
}

impl<'a> Destination<'a> {
    fn of(body: &'a NewOrderRequest, saved: Option<&'a Address>) -> Self {
        match (&body.delivery, body.address_id) {
            (Some(_), Some(_)) => Self::Both,
            (None, None) => Self::Neither,
            (Some(typed), None) => Self::Typed(typed),
            (None, Some(_)) => Self::Saved(saved),
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

/// Reads what the request names (prices, all lines in one query; the pharmacy; the saved
/// address, if it is the caller's) and validates and prices it ([`price`]).
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
    let pharmacy = match body.pharmacy_id {
        Some(p) => crate::catalog_sync::pharmacy_exists(state, p).await?,
        None => true,
    };
    let found = Found {
        pharmacy,
        prescription,
        online_payments: state.settings.checkout.webhook_secret.is_some(),
    };
    let saved = match body.address_id {
        Some(id) if body.delivery.is_none() => state.store.address_of(customer, id).await?,
        _ => None,
    };
    price(body, &catalog, found, saved.as_ref())
}

/// The request checked and priced against `catalog`, with `saved` the caller's address
/// that `address_id` names (`None` when it names none of theirs): every problem is
/// reported at once, by field; a valid order with prescription-only items and no
/// prescription is refused naming those items.
fn price(
    body: &NewOrderRequest,
    catalog: &HashMap<Uuid, Priced>,
    found: Found,
    saved: Option<&Address>,
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
    let (delivery, address) = destination(Destination::of(body, saved), &mut errors);
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
    let (Some(delivery), Some(address)) = (delivery, address) else {
        return Err(ApiError::Internal(anyhow::anyhow!(
            "validated delivery point missing"
        )));
    };
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
        address,
        needs_review: !rx_items.is_empty(),
    })
}

/// The delivery point and address text the order will keep: the typed-in `delivery`
/// checked, or a copy of the saved address. Problems go into `errors`.
fn destination(
    destination: Destination<'_>,
    errors: &mut FieldErrors,
) -> (Option<Point>, Option<String>) {
    match destination {
        Destination::Both => {
            errors.add("address_id", "give delivery or address_id, not both");
            (None, None)
        }
        Destination::Neither => {
            errors.add("delivery", "is required unless address_id is given");
            (None, None)
        }
        Destination::Saved(None) => {
            errors.add("address_id", "no such address");
            (None, None)
        }
        Destination::Saved(Some(saved)) => match Point::new(saved.lat, saved.lng) {
            Ok(point) => (Some(point), Some(saved.address.clone())),
            Err(e) => {
                // The table's checks make this unreachable; refuse rather than guess.
                errors.add("address_id", format!("the saved address is unusable: {e}"));
                (None, None)
            }
        },
        Destination::Typed(typed) => {
            let point = match Point::new(typed.lat, typed.lng) {
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
            let address = typed.address.trim();
            if address.is_empty() || address.chars().count() > 500 {
                errors.add("delivery.address", "must be 1 to 500 characters");
                return (point, None);
            }
            (point, Some(address.to_owned()))
        }
    }
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
    key: Option<&str>,
) -> Result<Placement, ApiError> {
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
        idempotency_key: key.map(str::to_owned),
    };
    let inserted = state.store.insert_order(&order).await;
    if !matches!(inserted, Ok(Inserted::Stored | Inserted::ReservationGone)) {
        // Give the stock back; start-up reconciliation covers a crash right here.
        if let Err(release) = state.inventory.release(order_id, pharmacy_id).await {
            tracing::error!(order_id = %order_id, error = %release, "could not release the reservation of an order that was not stored");
        }
    }
    match inserted {
        Ok(Inserted::Stored) => {}
        Ok(Inserted::KeyTaken) => return repeated(state, customer, key).await,
        Ok(Inserted::ReservationGone) => {
            return Err(ApiError::Unavailable(
                "the stock held for this order was released before it was stored; place it again"
                    .to_owned(),
            ))
        }
        Err(e) => return Err(e.into()),
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
    take_first_step(state, order_id, first).await;
    state
        .store
        .order_view(order_id)
        .await?
        .map(|view| Placement::Created(view.with_delivery_code()))
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("order {order_id} vanished")))
}

/// The order another request with the same Idempotency-Key stored first.
async fn repeated(
    state: &AppState,
    customer: Uuid,
    key: Option<&str>,
) -> Result<Placement, ApiError> {
    let conflict = || {
        ApiError::conflict(
            "a request with this Idempotency-Key is still being processed; retry later",
        )
    };
    let key = key.ok_or_else(conflict)?;
    match state.store.idempotency_key_order(customer, key).await? {
        Some(id) => {
            let view = state
                .store
                .order_view(id)
                .await?
                .ok_or(ApiError::NotFound)?;
            Ok(Placement::Repeated(view.with_delivery_code()))
        }
        None => Err(conflict()),
    }
}

/// Hands the stored order to its actor for its first step. In a cluster the node running
/// the actors may be changing hands: that is retried for a few seconds. An order whose
/// first step never ran stays `confirmed` and fails at its dispatch deadline.
async fn take_first_step(state: &AppState, order_id: Uuid, first: Command) {
    let mut backoff = std::time::Duration::from_millis(250);
    for attempt in 1..=5 {
        match state.orders.apply(order_id, first.clone()).await {
            Ok(_) => return,
            Err(medify_actors::order::OrderError::Unavailable) if attempt < 5 => {
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
            Err(e) => {
                tracing::error!(order_id = %order_id, error = %e, "could not take the order's first step");
                return;
            }
        }
    }
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
        return create(state, customer, body, None).await;
    };
    let hash = Sha256::digest(serde_json::to_vec(body).map_err(anyhow::Error::from)?).to_vec();
    let started = Instant::now();
    let mut wait = StdDuration::from_millis(10);
    let abandoned = Duration::from_std(KEY_ABANDONED).unwrap_or(Duration::minutes(1));
    loop {
        match state
            .store
            .claim_idempotency_key(
                customer,
                key,
                &hash,
                (Duration::hours(KEY_TTL_HOURS), abandoned),
            )
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
    match create(state, customer, body, Some(key)).await {
        Ok(placed) => Ok(placed),
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
            delivery: Some(DeliveryIn {
                lat,
                lng: 77.59,
                address: address.to_owned(),
            }),
            address_id: None,
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

    /// A request for `items` to the saved address `address_id` instead of a typed one.
    fn to_saved(items: &[(Uuid, i64)], address_id: Uuid) -> NewOrderRequest {
        NewOrderRequest {
            delivery: None,
            address_id: Some(address_id),
            ..request(items, 0.0, "")
        }
    }

    fn saved_address(lat: f64, lng: f64, address: &str) -> Address {
        Address {
            id: Uuid::now_v7(),
            label: "Home".into(),
            lat,
            lng,
            address: address.into(),
            is_default: true,
            created_at: chrono::Utc::now(),
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
            None,
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
        let fields = refused(price(&body, &catalog, nothing, None));
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
            refused(price(&request(&[], 12.97, "x"), &catalog, FOUND, None)),
            ["items"]
        );
    }

    #[test]
    fn a_saved_address_is_copied_into_the_order() {
        let a = Uuid::now_v7();
        let catalog = HashMap::from([(a, priced(150))]);
        let home = saved_address(12.93, 77.62, "14 Jyoti Nivas Rd");
        let planned =
            price(&to_saved(&[(a, 1)], home.id), &catalog, FOUND, Some(&home)).expect("priced");
        assert_eq!(
            (planned.delivery.lat(), planned.delivery.lng()),
            (12.93, 77.62)
        );
        assert_eq!(planned.address, "14 Jyoti Nivas Rd");
        assert_eq!(planned.total_cents, 150);
    }

    #[test]
    fn exactly_one_destination_is_required() {
        let a = Uuid::now_v7();
        let catalog = HashMap::from([(a, priced(150))]);
        let home = saved_address(12.93, 77.62, "Home");
        // Neither.
        let neither = NewOrderRequest {
            delivery: None,
            ..request(&[(a, 1)], 12.97, "x")
        };
        assert_eq!(
            refused(price(&neither, &catalog, FOUND, None)),
            ["delivery"]
        );
        // Both, even when the address is the caller's.
        let both = NewOrderRequest {
            address_id: Some(home.id),
            ..request(&[(a, 1)], 12.97, "x")
        };
        assert_eq!(
            refused(price(&both, &catalog, FOUND, Some(&home))),
            ["address_id"]
        );
        // An address that is not the caller's was looked up as nothing.
        let body = to_saved(&[(a, 0)], Uuid::now_v7());
        assert_eq!(
            refused(price(
                &body,
                &catalog,
                Found {
                    pharmacy: false,
                    ..FOUND
                },
                None
            )),
            ["items[0].qty", "address_id", "pharmacy_id"]
        );
    }

    #[test]
    fn a_typed_delivery_hashes_as_before() {
        // The Idempotency-Key hash is over the serialised body: without `address_id`, it
        // must be the body it was before `address_id` existed.
        let a = Uuid::nil();
        let body = serde_json::to_value(request(&[(a, 2)], 12.5, "1 MG Road")).expect("json");
        assert_eq!(
            body,
            serde_json::json!({
                "items": [{"medicine_id": a, "qty": 2}],
                "delivery": {"lat": 12.5, "lng": 77.59, "address": "1 MG Road"},
                "pharmacy_id": null,
            })
        );
        let id = Uuid::now_v7();
        let saved = serde_json::to_value(to_saved(&[(a, 2)], id)).expect("json");
        assert_eq!(saved["address_id"], serde_json::json!(id));
        assert!(saved.get("delivery").is_none(), "{saved}");
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
