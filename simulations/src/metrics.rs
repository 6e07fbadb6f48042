//! What the agents observe while a run goes on: live counters (for the progress bar) and
//! the per-order ledger that the report is computed from at the end.
//!
//! Every timestamp is epoch milliseconds of this process's clock, so latencies between
//! two agents of the same run are differences of the same clock.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use uuid::Uuid;

/// Epoch milliseconds now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// How an order ended, as far as the sim knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    Cancelled,
    Failed,
}

impl Outcome {
    pub fn parse(status: &str) -> Option<Self> {
        match status {
            "delivered" => Some(Self::Delivered),
            "cancelled" => Some(Self::Cancelled),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

/// One order's story.
#[derive(Debug, Clone, Default)]
pub struct OrderRecord {
    /// When the customer sent `POST /orders`.
    pub placed_ms: i64,
    /// The customer's delivery code (shared with the rider who delivers).
    pub code: String,
    /// When the rider got `assigned`.
    pub assigned_ms: Option<i64>,
    /// The rider's distance to the pharmacy when the offer came (the sim's own position).
    pub pickup_distance_m: Option<f64>,
    /// The offer's `distance_m` (the server's view of the same thing).
    pub offer_distance_m: Option<f64>,
    /// When the rider sent `delivered`.
    pub delivered_sent_ms: Option<i64>,
    /// The final state and when the customer's tracking socket heard of it.
    pub outcome: Option<(Outcome, i64)>,
    /// The order's place in the scenario's schedule (seeds its review and payment).
    pub index: u64,
    /// It carries a prescription-only medicine (and so waits for a review).
    pub rx: bool,
    /// It is paid online.
    pub online: bool,
    /// `payment.intent_id` and `total_cents`, what the provider reports against.
    pub intent: Option<String>,
    pub total_cents: i64,
    /// The pharmacist's decision (approved?) and when the server acknowledged it.
    pub review: Option<(bool, i64)>,
    /// When the customer started paying (saw `awaiting_payment`).
    pub payment_started_ms: Option<i64>,
    /// The provider's report (succeeded?) and when the server acknowledged it.
    pub payment: Option<(bool, i64)>,
}

impl OrderRecord {
    /// When the order could first be offered to riders, as far as the sim knows: its
    /// placement, or the approval of its prescription, or its payment, whichever is last.
    pub fn dispatchable_ms(&self) -> i64 {
        let review = self.review.map_or(0, |(_, at)| at);
        let payment = self.payment.map_or(0, |(_, at)| at);
        self.placed_ms.max(review).max(payment)
    }
}

/// What the customer knows about an order it just placed, for the ledger.
#[derive(Debug, Clone, Default)]
pub struct Placed {
    pub index: u64,
    pub code: String,
    pub rx: bool,
    pub online: bool,
    pub intent: Option<String>,
    pub total_cents: i64,
}

/// A payment the customer starts: what the provider needs to report on it.
#[derive(Debug, Clone)]
pub struct PaymentDue {
    pub order: Uuid,
    pub index: u64,
    pub intent: String,
    pub amount_cents: i64,
}

/// Shared by every agent of a run.
#[derive(Default)]
pub struct Metrics {
    pub placed: AtomicU64,
    pub place_failed: AtomicU64,
    pub assigned: AtomicU64,
    pub delivered: AtomicU64,
    pub cancelled: AtomicU64,
    pub failed: AtomicU64,
    pub offers: AtomicU64,
    pub offers_rejected: AtomicU64,
    pub offers_expired: AtomicU64,
    pub locations_sent: AtomicU64,
    pub frames_received: AtomicU64,
    pub rider_reconnects: AtomicU64,
    /// Order statuses a rider sent again because the server turned out not to have them
    /// (after a reconnection or an error; see `crate::rider`).
    pub statuses_resent: AtomicU64,
    /// `POST /orders` sent again with the same Idempotency-Key after a failure that may
    /// pass (see `crate::customer`).
    pub placements_retried: AtomicU64,
    pub track_reconnects: AtomicU64,
    /// Orders placed with a prescription-only line / paid online.
    pub rx_placed: AtomicU64,
    pub online_placed: AtomicU64,
    /// Prescriptions the customers uploaded.
    pub prescriptions_uploaded: AtomicU64,
    /// Orders meant to carry a prescription-only line that were placed without it,
    /// because the server has no upload endpoint (see `crate::prescription`).
    pub rx_without_prescription: AtomicU64,
    pub reviews_approved: AtomicU64,
    pub reviews_rejected: AtomicU64,
    pub payments_succeeded: AtomicU64,
    pub payments_failed: AtomicU64,
    orders: Mutex<HashMap<Uuid, OrderRecord>>,
    errors: Mutex<BTreeMap<String, u64>>,
    /// The first message seen for each error kind.
    error_examples: Mutex<BTreeMap<String, String>>,
    tracking_latency_ms: Mutex<Vec<f64>>,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Metrics {
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }

    /// A protocol error: an `error` frame (`ws <code>`) or an unexpected HTTP answer
    /// (`http <status> <code>`), counted by that key.
    pub fn error(&self, key: impl Into<String>) {
        if let Ok(mut e) = self.errors.lock() {
            *e.entry(key.into()).or_default() += 1;
        }
    }

    /// An error with its message (the first message of each kind is kept as an example).
    pub fn error_with(&self, key: String, message: &str) {
        if let Ok(mut ex) = self.error_examples.lock() {
            ex.entry(key.clone())
                .or_insert_with(|| message.chars().take(300).collect());
        }
        self.error(key);
    }

    pub fn error_examples(&self) -> BTreeMap<String, String> {
        self.error_examples
            .lock()
            .map(|e| e.clone())
            .unwrap_or_default()
    }

    /// An unexpected HTTP answer.
    pub fn http_error(&self, what: &str, status: u16, code: Option<&str>) {
        self.error(format!("http {status} {} ({what})", code.unwrap_or("-")));
    }

    pub fn errors(&self) -> BTreeMap<String, u64> {
        self.errors.lock().map(|e| e.clone()).unwrap_or_default()
    }

    fn with_order<R>(&self, id: Uuid, f: impl FnOnce(&mut OrderRecord) -> R) -> Option<R> {
        let mut orders = self.orders.lock().ok()?;
        Some(f(orders.entry(id).or_default()))
    }

    pub fn order_placed(&self, id: Uuid, placed_ms: i64, placed: Placed) {
        bump(&self.placed);
        if placed.rx {
            bump(&self.rx_placed);
        }
        if placed.online {
            bump(&self.online_placed);
        }
        self.with_order(id, |o| {
            o.placed_ms = placed_ms;
            o.code = placed.code;
            o.index = placed.index;
            o.rx = placed.rx;
            o.online = placed.online;
            o.intent = placed.intent;
            o.total_cents = placed.total_cents;
        });
    }

    /// The schedule index of an order its customer has placed (`None` for an order the
    /// ledger does not know yet: the customer may not have its answer).
    pub fn index_of(&self, id: Uuid) -> Option<u64> {
        let orders = self.orders.lock().ok()?;
        orders.get(&id).filter(|o| o.placed_ms > 0).map(|o| o.index)
    }

    /// The pharmacist's decision was acknowledged; the first one counts.
    pub fn reviewed(&self, id: Uuid, approved: bool) {
        let first = self
            .with_order(id, |o| {
                let first = o.review.is_none();
                if first {
                    o.review = Some((approved, now_ms()));
                }
                first
            })
            .unwrap_or(false);
        if first {
            bump(if approved {
                &self.reviews_approved
            } else {
                &self.reviews_rejected
            });
        }
    }

    /// The customer starts paying an online order: what to hand the provider, the first
    /// time only (`None` after that, or for an order without an intent).
    pub fn start_payment(&self, id: Uuid) -> Option<PaymentDue> {
        let mut orders = self.orders.lock().ok()?;
        let o = orders.get_mut(&id)?;
        if o.payment_started_ms.is_some() || o.placed_ms == 0 {
            return None;
        }
        let intent = o.intent.clone()?;
        o.payment_started_ms = Some(now_ms());
        Some(PaymentDue {
            order: id,
            index: o.index,
            intent,
            amount_cents: o.total_cents,
        })
    }

    /// The provider's report was acknowledged; the first one counts.
    pub fn paid(&self, id: Uuid, succeeded: bool) {
        let first = self
            .with_order(id, |o| {
                let first = o.payment.is_none();
                if first {
                    o.payment = Some((succeeded, now_ms()));
                }
                first
            })
            .unwrap_or(false);
        if first {
            bump(if succeeded {
                &self.payments_succeeded
            } else {
                &self.payments_failed
            });
        }
    }

    /// The delivery code of an order, once its customer has it.
    pub fn code_of(&self, id: Uuid) -> Option<String> {
        let orders = self.orders.lock().ok()?;
        orders
            .get(&id)
            .map(|o| o.code.clone())
            .filter(|c| !c.is_empty())
    }

    pub fn order_assigned(&self, id: Uuid, pickup_m: Option<f64>, offer_m: Option<f64>) {
        let first = self
            .with_order(id, |o| {
                let first = o.assigned_ms.is_none();
                if first {
                    o.assigned_ms = Some(now_ms());
                    o.pickup_distance_m = pickup_m;
                    o.offer_distance_m = offer_m;
                }
                first
            })
            .unwrap_or(false);
        if first {
            bump(&self.assigned);
        }
    }

    pub fn delivered_sent(&self, id: Uuid) {
        self.with_order(id, |o| o.delivered_sent_ms = Some(now_ms()));
    }

    /// A final state, as the customer heard it; the first one counts.
    pub fn order_final(&self, id: Uuid, outcome: Outcome) {
        let first = self
            .with_order(id, |o| {
                if o.outcome.is_some() {
                    return false;
                }
                o.outcome = Some((outcome, now_ms()));
                true
            })
            .unwrap_or(false);
        if first {
            bump(match outcome {
                Outcome::Delivered => &self.delivered,
                Outcome::Cancelled => &self.cancelled,
                Outcome::Failed => &self.failed,
            });
        }
    }

    pub fn is_final(&self, id: Uuid) -> bool {
        self.orders
            .lock()
            .ok()
            .and_then(|o| o.get(&id).map(|r| r.outcome.is_some()))
            .unwrap_or(false)
    }

    /// Orders placed that have no final state yet.
    pub fn open_orders(&self) -> Vec<Uuid> {
        self.orders
            .lock()
            .map(|o| {
                o.iter()
                    .filter(|(_, r)| r.outcome.is_none() && r.placed_ms > 0)
                    .map(|(id, _)| *id)
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn finished(&self) -> u64 {
        Self::get(&self.delivered) + Self::get(&self.cancelled) + Self::get(&self.failed)
    }

    pub fn tracking_latency(&self, ms: f64) {
        if let Ok(mut v) = self.tracking_latency_ms.lock() {
            v.push(ms);
        }
    }

    pub fn tracking_latencies(&self) -> Vec<f64> {
        self.tracking_latency_ms
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default()
    }

    pub fn orders(&self) -> HashMap<Uuid, OrderRecord> {
        self.orders.lock().map(|o| o.clone()).unwrap_or_default()
    }

    pub fn offer_made(&self) {
        bump(&self.offers);
    }
    pub fn offer_rejected(&self) {
        bump(&self.offers_rejected);
    }
    pub fn offer_expired(&self) {
        bump(&self.offers_expired);
    }
    pub fn location_sent(&self) {
        bump(&self.locations_sent);
    }
    pub fn frame_received(&self) {
        bump(&self.frames_received);
    }
    pub fn prescription_uploaded(&self) {
        bump(&self.prescriptions_uploaded);
    }
    pub fn rx_without_prescription(&self) {
        bump(&self.rx_without_prescription);
    }
    pub fn place_failed(&self) {
        bump(&self.place_failed);
    }
    pub fn rider_reconnected(&self) {
        bump(&self.rider_reconnects);
    }
    pub fn placement_retried(&self) {
        bump(&self.placements_retried);
    }
    pub fn status_resent(&self) {
        bump(&self.statuses_resent);
    }
    pub fn track_reconnected(&self) {
        bump(&self.track_reconnects);
    }
}
