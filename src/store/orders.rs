//! Orders: creation, the journal the order actors write through, views for the API,
//! idempotency keys, and start-up reconciliation of stock reservations.

use chrono::{DateTime, Duration, TimeZone, Utc};
use medify_actors::geo::Point;
use medify_actors::model::{CancelReason, OrderEvent, OrderStatus, PaymentMethod, PaymentStatus};
use medify_actors::ports::{BoxFuture, JournalEntry, JournalError, OrderJournal, OrderRecord};
use serde::Serialize;
use sqlx::FromRow;
use utoipa::ToSchema;
use uuid::Uuid;

use super::leases::Lease;
use super::{now, Store};
use crate::on_pool;

/// A priced line of a new order.
#[derive(Debug, Clone)]
pub struct NewOrderLine {
    pub medicine_id: Uuid,
    pub qty: i64,
    pub price_cents: i64,
}

/// An order to store, already reserved.
#[derive(Debug, Clone)]
pub struct NewOrder {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub pharmacy_id: Uuid,
    pub lines: Vec<NewOrderLine>,
    pub total_cents: i64,
    pub delivery: Point,
    pub address: String,
    pub delivery_code: String,
    pub dispatch_deadline: DateTime<Utc>,
    /// The status it starts in, from the model ([`medify_actors::model::start`]).
    pub status: OrderStatus,
    pub payment_method: PaymentMethod,
    /// The payment provider's intent for an online payment.
    pub payment_intent_id: Option<String>,
    /// The approved-to-be prescription of an order with prescription-only items.
    pub prescription_id: Option<Uuid>,
    /// The customer's Idempotency-Key this order is placed under, claimed beforehand
    /// ([`Store::claim_idempotency_key`]): the order and the key's link to it are stored
    /// together, so no crash can leave an order its key does not name.
    pub idempotency_key: Option<String>,
}

/// What [`Store::insert_order`] came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    Stored,
    /// The Idempotency-Key already names another order (its claim was taken over after it
    /// looked abandoned, and the other request finished first): nothing was stored.
    KeyTaken,
    /// The order's stock reservation is no longer held (the crash repair released it while
    /// this request was stalled past `RESERVATION_REPAIR_GRACE_S`): nothing was stored.
    ReservationGone,
}

/// An open order on the ops map.
#[derive(Debug, Clone)]
pub struct OrderPin {
    pub id: Uuid,
    pub status: OrderStatus,
    pub pickup_lat: f64,
    pub pickup_lng: f64,
    pub dropoff_lat: f64,
    pub dropoff_lng: f64,
}

/// An [`OrderPin`] as stored (the status still text).
#[derive(FromRow)]
struct PinRow {
    id: Uuid,
    status: String,
    pickup_lat: f64,
    pickup_lng: f64,
    dropoff_lat: f64,
    dropoff_lng: f64,
}

#[derive(FromRow)]
struct OrderRow {
    id: Uuid,
    status: String,
    customer_id: Uuid,
    pharmacy_id: Uuid,
    rider_id: Option<Uuid>,
    total_cents: i64,
    delivery_lat: f64,
    delivery_lng: f64,
    delivery_address: String,
    delivery_code: String,
    code_failures: i32,
    version: i32,
    dispatch_deadline: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    payment_method: String,
    payment_status: String,
    payment_intent_id: Option<String>,
    cancel_reason: Option<String>,
    prescription_id: Option<Uuid>,
    pharmacy_name: String,
    pharmacy_lat: f64,
    pharmacy_lng: f64,
    rider_name: Option<String>,
}

const ORDER_SELECT: &str = "SELECT o.id, o.status, o.customer_id, o.pharmacy_id, o.rider_id, o.total_cents, \
     o.delivery_lat, o.delivery_lng, o.delivery_address, o.delivery_code, o.code_failures, o.version, \
     o.dispatch_deadline, o.created_at, o.updated_at, o.payment_method, o.payment_status, \
     o.payment_intent_id, o.cancel_reason, o.prescription_id, p.name AS pharmacy_name, p.lat AS pharmacy_lat, \
     p.lng AS pharmacy_lng, u.name AS rider_name \
     FROM orders o JOIN pharmacies p ON p.id = o.pharmacy_id LEFT JOIN users u ON u.id = o.rider_id";

/// The pharmacy as an order shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OrderPharmacy {
    pub id: Uuid,
    pub name: String,
    pub lat: f64,
    pub lng: f64,
}

#[derive(Debug, Clone, Serialize, ToSchema, FromRow)]
pub struct OrderItem {
    pub medicine_id: Uuid,
    pub qty: i64,
    /// Unit price when the order was placed.
    pub price_cents: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Delivery {
    pub lat: f64,
    pub lng: f64,
    pub address: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OrderRider {
    pub id: Uuid,
    pub name: String,
}

/// How an order is paid, and where the money is.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OrderPayment {
    #[schema(value_type = crate::schema::PaymentMethodName)]
    pub method: PaymentMethod,
    #[schema(value_type = crate::schema::PaymentStatusName)]
    pub status: PaymentStatus,
    /// Online payments: what the customer's app hands to the provider's checkout.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intent_id: Option<String>,
}

/// An order as the API shows it. `delivery_code` is absent unless the caller asks for the
/// customer's view ([`OrderView::with_delivery_code`]): a new way of showing an order can
/// only leak the code by asking for it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OrderView {
    pub id: Uuid,
    #[schema(value_type = crate::schema::OrderStatusName)]
    pub status: OrderStatus,
    pub customer_id: Uuid,
    pub pharmacy: OrderPharmacy,
    pub items: Vec<OrderItem>,
    pub total_cents: i64,
    pub delivery: Delivery,
    pub rider: Option<OrderRider>,
    pub payment: OrderPayment,
    /// The prescription an order with prescription-only items was placed with.
    pub prescription_id: Option<Uuid>,
    /// Why a cancelled order was cancelled: `customer`, `admin`, `prescription_rejected`
    /// or `payment_failed`; null otherwise.
    #[schema(value_type = Option<crate::schema::CancelReasonName>)]
    pub cancel_reason: Option<CancelReason>,
    /// Only in the customer's and admins' views.
    pub delivery_code: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The code, kept out of every answer until [`OrderView::with_delivery_code`].
    #[serde(skip)]
    code: String,
}

impl OrderView {
    /// The customer's view (also the admins'): with the delivery code the rider must ask for.
    pub fn with_delivery_code(mut self) -> Self {
        self.delivery_code = Some(self.code.clone());
        self
    }
}

/// Whose orders a list shows.
#[derive(Debug, Clone, Copy)]
pub enum OrderScope {
    Customer(Uuid),
    Rider(Uuid),
    Pharmacy(Uuid),
    All,
}

/// What an Idempotency-Key already stands for.
#[derive(Debug, PartialEq, Eq)]
pub enum KeyClaim {
    /// The key is new and now ours: go ahead.
    Claimed,
    /// The key was used before: for this request hash, and this order (`None` while the
    /// first request is still being processed).
    Existing {
        request_hash: Vec<u8>,
        order_id: Option<Uuid>,
    },
}

fn journal(e: sqlx::Error) -> JournalError {
    JournalError(e.to_string())
}

fn status_of(raw: &str) -> Result<OrderStatus, sqlx::Error> {
    OrderStatus::parse(raw)
        .ok_or_else(|| sqlx::Error::Decode(format!("unknown order status {raw:?}").into()))
}

/// ` AND o.status IN (...)` for a non-empty list. The names are the model's own constants,
/// never client text, so they are written into the statement rather than bound.
fn status_filter(statuses: &[OrderStatus]) -> String {
    if statuses.is_empty() {
        return String::new();
    }
    let names: Vec<String> = statuses
        .iter()
        .map(|s| format!("'{}'", s.as_str()))
        .collect();
    format!(" AND o.status IN ({})", names.join(", "))
}

fn decoded<T>(parsed: Option<T>, what: &str, raw: &str) -> Result<T, sqlx::Error> {
    parsed.ok_or_else(|| sqlx::Error::Decode(format!("unknown {what} {raw:?}").into()))
}

fn payment_of(method: &str, status: &str) -> Result<(PaymentMethod, PaymentStatus), sqlx::Error> {
    Ok((
        decoded(PaymentMethod::parse(method), "payment method", method)?,
        decoded(PaymentStatus::parse(status), "payment status", status)?,
    ))
}

fn reason_of(raw: Option<&str>) -> Result<Option<CancelReason>, sqlx::Error> {
    raw.map(|r| decoded(CancelReason::parse(r), "cancel reason", r))
        .transpose()
}

impl OrderRow {
    fn record(self) -> Result<OrderRecord, sqlx::Error> {
        let (payment_method, payment_status) =
            payment_of(&self.payment_method, &self.payment_status)?;
        let point = |lat, lng| {
            Point::new(lat, lng)
                .map_err(|e| sqlx::Error::Decode(format!("stored coordinate: {e}").into()))
        };
        Ok(OrderRecord {
            id: self.id,
            status: status_of(&self.status)?,
            customer_id: self.customer_id,
            pharmacy_id: self.pharmacy_id,
            rider_id: self.rider_id,
            delivery_code: self.delivery_code,
            code_failures: self.code_failures,
            version: self.version,
            dispatch_deadline_ms: self.dispatch_deadline.map(|d| d.timestamp_millis()),
            pickup: point(self.pharmacy_lat, self.pharmacy_lng)?,
            pharmacy_name: self.pharmacy_name,
            dropoff: point(self.delivery_lat, self.delivery_lng)?,
            confirmed_at_ms: self.created_at.timestamp_millis(),
            status_since_ms: self.updated_at.timestamp_millis(),
            total_cents: self.total_cents,
            payment_method,
            payment_status,
            cancel_reason: reason_of(self.cancel_reason.as_deref())?,
        })
    }

    fn view(self, items: Vec<OrderItem>) -> Result<OrderView, sqlx::Error> {
        let (method, status) = payment_of(&self.payment_method, &self.payment_status)?;
        Ok(OrderView {
            id: self.id,
            status: status_of(&self.status)?,
            customer_id: self.customer_id,
            pharmacy: OrderPharmacy {
                id: self.pharmacy_id,
                name: self.pharmacy_name,
                lat: self.pharmacy_lat,
                lng: self.pharmacy_lng,
            },
            items,
            total_cents: self.total_cents,
            delivery: Delivery {
                lat: self.delivery_lat,
                lng: self.delivery_lng,
                address: self.delivery_address,
            },
            rider: match (self.rider_id, self.rider_name) {
                (Some(id), Some(name)) => Some(OrderRider { id, name }),
                _ => None,
            },
            payment: OrderPayment {
                method,
                status,
                intent_id: self.payment_intent_id,
            },
            prescription_id: self.prescription_id,
            cancel_reason: reason_of(self.cancel_reason.as_deref())?,
            delivery_code: None,
            code: self.delivery_code,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

impl Store {
    /// Stores a reserved order in the status the model started it in, with its lines and
    /// first journal entry (the `create` event, from no status).
    pub async fn insert_order(&self, o: &NewOrder) -> Result<Inserted, sqlx::Error> {
        let at = now();
        let (created, status) = (OrderEvent::Create.name(), o.status.as_str());
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            // The reservation is locked and must still be held: the crash repair releases
            // only a reservation with no order, checked under the same lock
            // (`StockLedger::release_unplaced`), so an order is never stored without its
            // stock, however long its request stalled.
            let held = sqlx::query(super::stock::LOCK_HELD_RESERVATION)
                .bind(o.id)
                .bind(at)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if held == 0 {
                return Ok(Inserted::ReservationGone); // the transaction rolls back
            }
            sqlx::query(
                "INSERT INTO orders (id, customer_id, pharmacy_id, status, total_cents, delivery_lat, \
                 delivery_lng, delivery_address, delivery_code, code_failures, version, dispatch_deadline, \
                 created_at, updated_at, payment_method, payment_status, payment_intent_id, prescription_id) \
                 VALUES ($1, $2, $3, $11, $4, $5, $6, $7, $8, 0, 1, $9, $10, $10, $12, 'pending', $13, $14)",
            )
            .bind(o.id)
            .bind(o.customer_id)
            .bind(o.pharmacy_id)
            .bind(o.total_cents)
            .bind(o.delivery.lat())
            .bind(o.delivery.lng())
            .bind(&o.address)
            .bind(&o.delivery_code)
            .bind(o.dispatch_deadline)
            .bind(at)
            .bind(status)
            .bind(o.payment_method.as_str())
            .bind(&o.payment_intent_id)
            .bind(o.prescription_id)
            .execute(&mut *tx)
            .await?;
            for (line, item) in o.lines.iter().enumerate() {
                sqlx::query(
                    "INSERT INTO order_items (order_id, line, medicine_id, qty, price_cents) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(o.id)
                .bind(i32::try_from(line).unwrap_or(i32::MAX))
                .bind(item.medicine_id)
                .bind(item.qty)
                .bind(item.price_cents)
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query(
                "INSERT INTO order_events (order_id, seq, event, from_status, to_status, actor_id, payload, created_at) \
                 VALUES ($1, 1, $5, NULL, $6, $2, $3, $4)",
            )
            .bind(o.id)
            .bind(o.customer_id)
            .bind(sqlx::types::Json(serde_json::json!({"total_cents": o.total_cents})))
            .bind(at)
            .bind(created)
            .bind(status)
            .execute(&mut *tx)
            .await?;
            if let Some(key) = &o.idempotency_key {
                let linked = sqlx::query(
                    "UPDATE idempotency_keys SET order_id = $3 \
                     WHERE user_id = $1 AND key = $2 AND order_id IS NULL",
                )
                .bind(o.customer_id)
                .bind(key)
                .bind(o.id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if linked == 0 {
                    return Ok(Inserted::KeyTaken); // the transaction rolls back
                }
            }
            tx.commit().await?;
        });
        Ok(Inserted::Stored)
    }

    async fn order_row(&self, id: Uuid) -> Result<Option<OrderRow>, sqlx::Error> {
        let sql = format!("{ORDER_SELECT} WHERE o.id = $1");
        on_pool!(self, |pool| {
            sqlx::query_as(&sql).bind(id).fetch_optional(pool).await
        })
    }

    async fn order_items(&self, id: Uuid) -> Result<Vec<OrderItem>, sqlx::Error> {
        on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT medicine_id, CAST(qty AS BIGINT) AS qty, price_cents FROM order_items \
                 WHERE order_id = $1 ORDER BY line",
            )
            .bind(id)
            .fetch_all(pool)
            .await
        })
    }

    /// An order with everything the API shows.
    pub async fn order_view(&self, id: Uuid) -> Result<Option<OrderView>, sqlx::Error> {
        let Some(row) = self.order_row(id).await? else {
            return Ok(None);
        };
        let items = self.order_items(id).await?;
        row.view(items).map(Some)
    }

    /// Up to `limit` open orders (oldest first) with where they go from and to: the ops
    /// map's picture, read once per frame for every admin watching, not per message.
    pub async fn open_order_pins(&self, limit: i64) -> Result<Vec<OrderPin>, sqlx::Error> {
        let rows: Vec<PinRow> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT o.id, o.status, p.lat AS pickup_lat, p.lng AS pickup_lng, \
                 o.delivery_lat AS dropoff_lat, o.delivery_lng AS dropoff_lng \
                 FROM orders o JOIN pharmacies p ON p.id = o.pharmacy_id \
                 WHERE o.status NOT IN ('delivered', 'cancelled', 'failed') \
                 ORDER BY o.created_at LIMIT $1",
            )
            .bind(limit)
            .fetch_all(pool)
            .await
        })?;
        rows.into_iter()
            .map(|r| {
                Ok(OrderPin {
                    id: r.id,
                    status: status_of(&r.status)?,
                    pickup_lat: r.pickup_lat,
                    pickup_lng: r.pickup_lng,
                    dropoff_lat: r.dropoff_lat,
                    dropoff_lng: r.dropoff_lng,
                })
            })
            .collect()
    }

    /// A page of orders in `scope` with one of `statuses` (any status when empty), newest
    /// first, and how many there are.
    pub async fn orders_page(
        &self,
        scope: OrderScope,
        statuses: &[OrderStatus],
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<OrderView>, i64), sqlx::Error> {
        let (who_filter, who) = match scope {
            OrderScope::Customer(id) => ("o.customer_id = $3", Some(id)),
            OrderScope::Rider(id) => ("o.rider_id = $3", Some(id)),
            OrderScope::Pharmacy(id) => ("o.pharmacy_id = $3", Some(id)),
            OrderScope::All => ("$3 IS NULL", None),
        };
        let filter = format!("{who_filter}{}", status_filter(statuses));
        let (rows, total): (Vec<OrderRow>, i64) = self
            .scoped_page(super::ScopedPage {
                select: ORDER_SELECT,
                count_from: "orders o",
                filter: &filter,
                order_by: "o.created_at DESC, o.id DESC",
                who,
                limit,
                offset,
            })
            .await?;
        let mut views = Vec::with_capacity(rows.len());
        for row in rows {
            let items = self.order_items(row.id).await?;
            views.push(row.view(items)?);
        }
        Ok((views, total))
    }

    /// The order's journal as a timeline, oldest first: each status it entered and the
    /// payment status each change left, with when.
    pub async fn order_timeline(&self, id: Uuid) -> Result<Vec<TimelineEntry>, sqlx::Error> {
        let rows: Vec<TimelineRow> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT seq, to_status, payment_status, created_at FROM order_events \
                 WHERE order_id = $1 ORDER BY seq",
            )
            .bind(id)
            .fetch_all(pool)
            .await?
        });
        rows.into_iter()
            .map(|r| {
                Ok(TimelineEntry {
                    seq: r.seq,
                    status: status_of(&r.to_status)?,
                    payment_status: r
                        .payment_status
                        .as_deref()
                        .map(|p| decoded(PaymentStatus::parse(p), "payment status", p))
                        .transpose()?,
                    at: r.created_at,
                })
            })
            .collect()
    }

    /// Orders by status (for the `medify_orders` gauge at start-up).
    pub async fn order_counts(&self) -> Result<Vec<(String, i64)>, sqlx::Error> {
        on_pool!(self, |pool| {
            sqlx::query_as("SELECT status, COUNT(*) FROM orders GROUP BY status")
                .fetch_all(pool)
                .await
        })
    }

    /// The GPS trail recorded for an order: `(lat, lng, ts)` oldest first.
    /// Whether prescription `id` is one `customer` uploaded.
    pub async fn is_prescription_of(&self, id: Uuid, customer: Uuid) -> Result<bool, sqlx::Error> {
        let found: i64 = on_pool!(self, |pool| {
            sqlx::query_scalar(
                "SELECT COUNT(*) FROM prescriptions WHERE id = $1 AND customer_id = $2",
            )
            .bind(id)
            .bind(customer)
            .fetch_one(pool)
            .await?
        });
        Ok(found > 0)
    }

    /// The order an online payment intent belongs to.
    pub async fn order_of_intent(&self, intent_id: &str) -> Result<Option<Uuid>, sqlx::Error> {
        on_pool!(self, |pool| {
            sqlx::query_scalar("SELECT id FROM orders WHERE payment_intent_id = $1")
                .bind(intent_id)
                .fetch_optional(pool)
                .await
        })
    }

    /// Records a payment provider's event id; false if it was recorded before (the
    /// report is a repeat and must have no second effect).
    pub async fn claim_payment_event(
        &self,
        event_id: &str,
        kind: &str,
        order_id: Uuid,
    ) -> Result<bool, sqlx::Error> {
        let at = now();
        let n = on_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO payment_events (id, kind, order_id, received_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(event_id)
            .bind(kind)
            .bind(order_id)
            .bind(at)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }

    /// Forgets a claimed event id whose effect could not be made, so the provider's
    /// retry is not taken for a repeat.
    pub async fn release_payment_event(&self, event_id: &str) -> Result<(), sqlx::Error> {
        on_pool!(self, |pool| {
            sqlx::query("DELETE FROM payment_events WHERE id = $1")
                .bind(event_id)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// How many orders `customer` has that are not delivered, cancelled or failed.
    pub async fn open_orders_of(&self, customer: Uuid) -> Result<i64, sqlx::Error> {
        on_pool!(self, |pool| {
            sqlx::query_scalar(
                "SELECT COUNT(*) FROM orders WHERE customer_id = $1 \
                 AND status NOT IN ('delivered', 'cancelled', 'failed')",
            )
            .bind(customer)
            .fetch_one(pool)
            .await
        })
    }

    /// The order's trail, oldest first, thinned evenly to at most `max_points` (at least
    /// 2) by the database, so a long trail never comes into memory whole. The first and
    /// the last point are always kept.
    ///
    /// Row `n` of `total` is kept when `floor(n·(m−1)/(total−1))` steps up at `n`, i.e.
    /// when `n·(m−1) mod (total−1) < m−1`: exactly `m` rows, spread evenly.
    pub async fn trail(
        &self,
        order_id: Uuid,
        max_points: u32,
    ) -> Result<Vec<(f64, f64, i64)>, sqlx::Error> {
        let m = i64::from(max_points.max(2));
        on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT lat, lng, ts FROM ( \
                     SELECT lat, lng, ts, id, \
                            ROW_NUMBER() OVER (ORDER BY ts, id) - 1 AS n, \
                            COUNT(*) OVER () AS total \
                     FROM rider_trail WHERE order_id = $1 \
                 ) t \
                 WHERE total <= $2 OR (n * ($2 - 1)) % NULLIF(total - 1, 0) < $2 - 1 \
                 ORDER BY ts, id",
            )
            .bind(order_id)
            .bind(m)
            .fetch_all(pool)
            .await
        })
    }

    /// Claims `key` for `user`, or says what it already stands for. Expired keys, and
    /// claims older than `abandoned_after` that never got an order, are forgotten first.
    pub async fn claim_idempotency_key(
        &self,
        user_id: Uuid,
        key: &str,
        request_hash: &[u8],
        (ttl, abandoned_after): (Duration, Duration),
    ) -> Result<KeyClaim, sqlx::Error> {
        let at = now();
        on_pool!(self, |pool| {
            // Gone with it: an expired key, and a claim whose request never stored an order
            // and is older than any placement takes (its node died mid-request).
            sqlx::query(
                "DELETE FROM idempotency_keys WHERE user_id = $1 AND key = $2 \
                 AND (expires_at <= $3 OR (order_id IS NULL AND created_at <= $4))",
            )
            .bind(user_id)
            .bind(key)
            .bind(at)
            .bind(at - abandoned_after)
            .execute(pool)
            .await?;
            let inserted = sqlx::query(
                "INSERT INTO idempotency_keys (user_id, key, request_hash, order_id, created_at, expires_at) \
                 VALUES ($1, $2, $3, NULL, $4, $5) ON CONFLICT (user_id, key) DO NOTHING",
            )
            .bind(user_id)
            .bind(key)
            .bind(request_hash)
            .bind(at)
            .bind(at + ttl)
            .execute(pool)
            .await?
            .rows_affected();
            if inserted == 1 {
                return Ok(KeyClaim::Claimed);
            }
            let existing: Option<(Vec<u8>, Option<Uuid>)> = sqlx::query_as(
                "SELECT request_hash, order_id FROM idempotency_keys WHERE user_id = $1 AND key = $2",
            )
            .bind(user_id)
            .bind(key)
            .fetch_optional(pool)
            .await?;
            Ok(match existing {
                Some((request_hash, order_id)) => KeyClaim::Existing {
                    request_hash,
                    order_id,
                },
                // Deleted between our insert and select (the first request failed): retry.
                None => KeyClaim::Existing {
                    request_hash: Vec::new(),
                    order_id: None,
                },
            })
        })
    }

    /// The order `key` of `user` names, once its request stored one.
    pub async fn idempotency_key_order(
        &self,
        user_id: Uuid,
        key: &str,
    ) -> Result<Option<Uuid>, sqlx::Error> {
        on_pool!(self, |pool| {
            sqlx::query_scalar(
                "SELECT order_id FROM idempotency_keys WHERE user_id = $1 AND key = $2",
            )
            .bind(user_id)
            .bind(key)
            .fetch_optional(pool)
            .await
            .map(Option::flatten)
        })
    }

    /// Frees a key whose request failed, so the client may retry with it.
    pub async fn release_idempotency_key(
        &self,
        user_id: Uuid,
        key: &str,
    ) -> Result<(), sqlx::Error> {
        on_pool!(self, |pool| {
            sqlx::query(
                "DELETE FROM idempotency_keys WHERE user_id = $1 AND key = $2 AND order_id IS NULL",
            )
            .bind(user_id)
            .bind(key)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Held reservations that no open order accounts for, with how each must be settled
    /// (`true`: commit, its order was picked up or delivered; `false`: release, its order
    /// was cancelled or failed, or it has no order) and whether it has an order. A reservation without an order counts
    /// only once it is older than `grace`: until then a live process (this one, another
    /// node, the old process of a rolling deploy) may still be turning it into an order.
    pub async fn reservations_to_repair(
        &self,
        grace: std::time::Duration,
    ) -> Result<Vec<(Uuid, Uuid, bool, bool)>, sqlx::Error> {
        let before = now() - Duration::from_std(grace).unwrap_or(Duration::days(1));
        let rows: Vec<(Uuid, Uuid, Option<String>)> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT r.id, r.pharmacy_id, o.status FROM stock_reservations r \
                 LEFT JOIN orders o ON o.id = r.id \
                 WHERE r.status = 'held' AND ( \
                     o.status IN ('cancelled', 'failed', 'picked_up', 'delivered') \
                     OR (o.id IS NULL AND r.created_at < $1))",
            )
            .bind(before)
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|(id, pharmacy, status)| {
                let commit = matches!(status.as_deref(), Some("picked_up" | "delivered"));
                (id, pharmacy, commit, status.is_some())
            })
            .collect())
    }
}

/// One step of an order's journal, as `GET /orders/{id}/timeline` shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TimelineEntry {
    /// 1 for the order's creation, then one more per change.
    pub seq: i32,
    /// The status the order was in after this step.
    #[schema(value_type = crate::schema::OrderStatusName)]
    pub status: OrderStatus,
    /// The payment status this step left (null on entries from before payments existed).
    #[schema(value_type = Option<crate::schema::PaymentStatusName>)]
    pub payment_status: Option<PaymentStatus>,
    pub at: DateTime<Utc>,
}

#[derive(FromRow)]
struct TimelineRow {
    seq: i32,
    to_status: String,
    payment_status: Option<String>,
    created_at: DateTime<Utc>,
}

/// A journal entry the bus has not acknowledged yet.
#[derive(Debug, Clone, FromRow)]
struct UnpublishedRow {
    order_id: Uuid,
    seq: i32,
    from_status: Option<String>,
    to_status: String,
    created_at: DateTime<Utc>,
    payment_status: Option<String>,
    customer_id: Uuid,
    pharmacy_id: Uuid,
    rider_id: Option<Uuid>,
    cancel_reason: Option<String>,
}

impl UnpublishedRow {
    /// The events the entry announces, as the order actor built them: the order event
    /// when the status moved, a `payment.*` event when the payment did.
    fn events(self) -> Result<Vec<medify_actors::ports::Event>, sqlx::Error> {
        use medify_actors::ports::{order_event_id, payment_event_id, Event, EventKind};
        let to = status_of(&self.to_status)?;
        let from = self.from_status.as_deref().map(status_of).transpose()?;
        let payment = self
            .payment_status
            .as_deref()
            .map(|p| decoded(PaymentStatus::parse(p), "payment status", p))
            .transpose()?;
        let base = Event {
            id: order_event_id(self.order_id, self.seq),
            kind: medify_actors::order::event_kind(to),
            order_id: Some(self.order_id),
            customer_id: Some(self.customer_id),
            rider_id: self.rider_id,
            pharmacy_id: Some(self.pharmacy_id),
            from_status: from,
            to_status: Some(to),
            at_ms: self.created_at.timestamp_millis(),
            payment: None,
            cancel_reason: if to == OrderStatus::Cancelled {
                reason_of(self.cancel_reason.as_deref())?
            } else {
                None
            },
        };
        let mut events = Vec::with_capacity(2);
        if from != Some(to) {
            events.push(base.clone());
        }
        if let Some((status, kind)) = payment.and_then(|p| Some((p, EventKind::of_payment(p)?))) {
            events.push(Event {
                id: payment_event_id(self.order_id, self.seq),
                kind,
                payment: Some(status),
                ..base
            });
        }
        Ok(events)
    }
}

impl Store {
    pub async fn mark_event_published(&self, order_id: Uuid, seq: i32) -> Result<(), sqlx::Error> {
        let at = now();
        on_pool!(self, |pool| {
            sqlx::query(
                "UPDATE order_events SET published_at = $3 WHERE order_id = $1 AND seq = $2",
            )
            .bind(order_id)
            .bind(seq)
            .bind(at)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Journal entries written before `before` and never marked published, oldest first,
    /// as the events that announce them (with their stable ids).
    pub async fn unpublished_events(
        &self,
        before: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<(Uuid, i32, Vec<medify_actors::ports::Event>)>, sqlx::Error> {
        let rows: Vec<UnpublishedRow> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT e.order_id, e.seq, e.from_status, e.to_status, e.created_at, e.payment_status, \
                 o.customer_id, o.pharmacy_id, o.rider_id, o.cancel_reason \
                 FROM order_events e JOIN orders o ON o.id = e.order_id \
                 WHERE e.published_at IS NULL AND e.created_at <= $1 ORDER BY e.created_at, e.seq LIMIT $2",
            )
            .bind(before)
            .bind(limit)
            .fetch_all(pool)
            .await?
        });
        rows.into_iter()
            .map(|r| Ok((r.order_id, r.seq, r.events()?)))
            .collect()
    }
}

impl Store {
    /// Writes a journal entry; with `fence`, only while that lease is current (checked in
    /// the same transaction, PostgreSQL; a SQLite node is never in a cluster).
    pub async fn append_journal(
        &self,
        e: JournalEntry,
        fence: Option<&Lease>,
    ) -> Result<Option<i32>, JournalError> {
        let at = Utc
            .timestamp_millis_opt(e.at_ms)
            .single()
            .unwrap_or_else(Utc::now);
        let next = e.expected_version + 1;
        let appended = on_pool!(self, |pool| {
            let mut tx = pool.begin().await.map_err(journal)?;
            if let Some(lease) = fence {
                Fence::check(&mut *tx, lease).await?;
            }
            // A change that leaves the status (a refund) keeps the status's clock.
            let n = sqlx::query(
                "UPDATE orders SET status = $3, rider_id = $4, version = $5, \
                 updated_at = CASE WHEN status = $3 THEN updated_at ELSE $6 END, \
                 payment_status = COALESCE($7, payment_status), \
                 cancel_reason = COALESCE($8, cancel_reason) \
                 WHERE id = $1 AND version = $2",
            )
            .bind(e.order_id)
            .bind(e.expected_version)
            .bind(e.to.as_str())
            .bind(e.rider_id)
            .bind(next)
            .bind(at)
            .bind(e.payment.map(PaymentStatus::as_str))
            .bind(e.cancel_reason.map(CancelReason::as_str))
            .execute(&mut *tx)
            .await
            .map_err(journal)?
            .rows_affected();
            if n != 1 {
                return Ok(None);
            }
            sqlx::query(
                "INSERT INTO order_events (order_id, seq, event, from_status, to_status, actor_id, payload, \
                 created_at, payment_status) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(e.order_id)
            .bind(next)
            .bind(e.event)
            .bind(e.from.as_str())
            .bind(e.to.as_str())
            .bind(e.actor_id)
            .bind(sqlx::types::Json(
                serde_json::json!({"rider_id": e.rider_id, "note": e.note}),
            ))
            .bind(at)
            .bind(e.payment.map(PaymentStatus::as_str))
            .execute(&mut *tx)
            .await
            .map_err(journal)?;
            tx.commit().await.map_err(journal)?;
            true
        });
        Ok(appended.then_some(next))
    }
}

/// The fence check of a guarded journal write, per backend.
trait Fence {
    async fn check(&mut self, lease: &Lease) -> Result<(), JournalError>;
}

impl Fence for sqlx::PgConnection {
    async fn check(&mut self, lease: &Lease) -> Result<(), JournalError> {
        Store::check_fence(self, lease)
            .await
            .map_err(|e| JournalError(e.to_string()))
    }
}

impl Fence for sqlx::SqliteConnection {
    async fn check(&mut self, _: &Lease) -> Result<(), JournalError> {
        Ok(())
    }
}

impl OrderJournal for Store {
    fn load(&self, id: Uuid) -> BoxFuture<'_, Result<Option<OrderRecord>, JournalError>> {
        Box::pin(async move {
            match self.order_row(id).await.map_err(journal)? {
                None => Ok(None),
                Some(row) => row.record().map(Some).map_err(journal),
            }
        })
    }

    fn append(&self, e: JournalEntry) -> BoxFuture<'_, Result<Option<i32>, JournalError>> {
        Box::pin(self.append_journal(e, None))
    }

    fn mark_published(&self, id: Uuid, seq: i32) -> BoxFuture<'_, Result<(), JournalError>> {
        Box::pin(async move { self.mark_event_published(id, seq).await.map_err(journal) })
    }

    fn set_code_failures(
        &self,
        id: Uuid,
        failures: i32,
    ) -> BoxFuture<'_, Result<(), JournalError>> {
        Box::pin(async move {
            on_pool!(self, |pool| {
                sqlx::query("UPDATE orders SET code_failures = $2 WHERE id = $1")
                    .bind(id)
                    .bind(failures)
                    .execute(pool)
                    .await
                    .map_err(journal)?;
            });
            Ok(())
        })
    }

    fn active_orders(&self) -> BoxFuture<'_, Result<Vec<Uuid>, JournalError>> {
        Box::pin(async move {
            on_pool!(self, |pool| {
                sqlx::query_scalar(
                    "SELECT id FROM orders WHERE status NOT IN ('delivered', 'cancelled', 'failed') ORDER BY created_at",
                )
                .fetch_all(pool)
                .await
                .map_err(journal)
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_order_view_shows_the_code_only_when_asked() {
        let view = OrderView {
            id: Uuid::nil(),
            status: OrderStatus::Assigned,
            customer_id: Uuid::nil(),
            pharmacy: OrderPharmacy {
                id: Uuid::nil(),
                name: "P".into(),
                lat: 0.0,
                lng: 0.0,
            },
            items: Vec::new(),
            total_cents: 0,
            delivery: Delivery {
                lat: 0.0,
                lng: 0.0,
                address: "A".into(),
            },
            rider: None,
            payment: OrderPayment {
                method: PaymentMethod::Cod,
                status: PaymentStatus::Pending,
                intent_id: None,
            },
            prescription_id: None,
            cancel_reason: None,
            delivery_code: None,
            created_at: Utc::now(),
            updated_at: Utc::now(),
            code: "4821".into(),
        };
        let plain = serde_json::to_string(&view).expect("json");
        assert!(!plain.contains("4821"), "{plain}");
        let customers = serde_json::to_value(view.with_delivery_code()).expect("json");
        assert_eq!(customers["delivery_code"], "4821");
    }
}
