//! Ports: what the dispatch core needs from the outside world, as traits the server
//! implements (over SQLite or PostgreSQL, Redis, the clock).
//!
//! Futures are boxed so the traits can be used as `Arc<dyn …>` by actors.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

use uuid::Uuid;

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A storage failure; the message is for logs, not for clients.
#[derive(Debug, Clone, thiserror::Error)]
#[error("ledger: {0}")]
pub struct LedgerError(pub String);

/// One medicine's stock at one pharmacy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StockLevel {
    /// On the shelf.
    pub quantity: i64,
    /// Held by open reservations.
    pub reserved: i64,
}

impl StockLevel {
    /// What can still be sold.
    pub fn available(self) -> i64 {
        self.quantity - self.reserved
    }
}

/// One line of a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line {
    pub medicine_id: Uuid,
    pub qty: i64,
}

/// A line that cannot be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shortage {
    pub medicine_id: Uuid,
    pub requested: i64,
    pub available: i64,
}

/// What the ledger did with a reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LedgerReserve {
    /// Written: stock rows, reservation row and lines, in one transaction.
    Reserved,
    /// A reservation with this id already exists (a retry): nothing was written.
    AlreadyExists,
    /// At least one line is short: nothing was written.
    Insufficient(Vec<Shortage>),
}

/// What the ledger did when asked to commit or release a reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settle {
    /// Done now; these were the reservation's lines at this pharmacy.
    Done { pharmacy_id: Uuid, lines: Vec<Line> },
    /// It had already been committed or released.
    AlreadySettled,
    /// No such reservation.
    Unknown,
    /// Asked to release a reservation no order was stored under, and an order has been:
    /// the reservation is that order's now, and kept.
    Placed,
}

/// What the ledger did with new shelf quantities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetStock {
    Done,
    /// These lines would fall below what is reserved: nothing was written.
    BelowReserved(Vec<Shortage>),
}

/// Durable stock: every change is one transaction that keeps 0 <= reserved <= quantity.
pub trait StockLedger: Send + Sync + 'static {
    /// Every stock row of a pharmacy.
    fn load_pharmacy(
        &self,
        pharmacy_id: Uuid,
    ) -> BoxFuture<'_, Result<HashMap<Uuid, StockLevel>, LedgerError>>;

    /// Records reservation `id` and raises `reserved` for each line, all or nothing.
    fn reserve(
        &self,
        id: Uuid,
        pharmacy_id: Uuid,
        lines: Vec<Line>,
    ) -> BoxFuture<'_, Result<LedgerReserve, LedgerError>>;

    /// Pick-up: lowers `quantity` and `reserved` by the reservation's lines, once.
    fn commit(&self, id: Uuid) -> BoxFuture<'_, Result<Settle, LedgerError>>;

    /// Cancel or failure: lowers `reserved` by the reservation's lines, once.
    fn release(&self, id: Uuid) -> BoxFuture<'_, Result<Settle, LedgerError>>;

    /// Repair of a reservation whose order was never stored (its process died between the
    /// two): releases it as [`StockLedger::release`] does, unless an order under `id` is
    /// stored by the time the reservation is locked ([`Settle::Placed`]). With the order
    /// insert requiring a held reservation in its own transaction, a reservation and its
    /// order can never part, however late the placing process is.
    fn release_unplaced(&self, id: Uuid) -> BoxFuture<'_, Result<Settle, LedgerError>>;

    /// Sets shelf quantities (creating rows as needed), all or nothing.
    fn set_stock(
        &self,
        pharmacy_id: Uuid,
        lines: Vec<Line>,
    ) -> BoxFuture<'_, Result<SetStock, LedgerError>>;
}

/// A journal failure; the message is for logs.
#[derive(Debug, Clone, thiserror::Error)]
#[error("journal: {0}")]
pub struct JournalError(pub String);

/// What an order actor knows about its order.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OrderRecord {
    pub id: Uuid,
    pub status: crate::model::OrderStatus,
    pub customer_id: Uuid,
    pub pharmacy_id: Uuid,
    pub rider_id: Option<Uuid>,
    pub delivery_code: String,
    pub code_failures: i32,
    /// The `seq` of the last journal entry; every change must name it.
    pub version: i32,
    /// Epoch milliseconds after which an unassigned order fails.
    pub dispatch_deadline_ms: Option<i64>,
    pub pickup: crate::geo::Point,
    pub pharmacy_name: String,
    pub dropoff: crate::geo::Point,
    /// When the order was confirmed (epoch ms).
    pub confirmed_at_ms: i64,
    /// When it entered its current status (epoch ms): timers count from here.
    pub status_since_ms: i64,
    /// What the order costs, which an online payment must match.
    pub total_cents: i64,
    pub payment_method: crate::model::PaymentMethod,
    pub payment_status: crate::model::PaymentStatus,
    pub cancel_reason: Option<crate::model::CancelReason>,
}

/// One transition to write: the order row and an `order_events` row, in one transaction.
#[derive(Debug, Clone)]
pub struct JournalEntry {
    pub order_id: Uuid,
    /// The version the change was decided on; a different stored version refuses it.
    pub expected_version: i32,
    pub from: crate::model::OrderStatus,
    pub to: crate::model::OrderStatus,
    pub event: &'static str,
    pub actor_id: Option<Uuid>,
    pub rider_id: Option<Uuid>,
    pub at_ms: i64,
    /// The payment's status after the change, when the change moved it.
    pub payment: Option<crate::model::PaymentStatus>,
    /// Set when the change cancels the order.
    pub cancel_reason: Option<crate::model::CancelReason>,
    /// Free text kept with the journal entry (a pharmacist's reason for a rejection).
    pub note: Option<String>,
}

/// Durable orders: the source of truth every order actor loads from and writes through.
pub trait OrderJournal: Send + Sync + 'static {
    fn load(&self, id: Uuid) -> BoxFuture<'_, Result<Option<OrderRecord>, JournalError>>;

    /// Writes the transition; `Ok(None)` if the stored version is not the expected one
    /// (someone else changed the order), else the new version.
    fn append(&self, entry: JournalEntry) -> BoxFuture<'_, Result<Option<i32>, JournalError>>;

    /// Marks the journal entry `seq` of an order as published on the bus.
    fn mark_published(&self, id: Uuid, seq: i32) -> BoxFuture<'_, Result<(), JournalError>>;

    fn set_code_failures(&self, id: Uuid, failures: i32)
        -> BoxFuture<'_, Result<(), JournalError>>;

    /// Ids of every order that is not final.
    fn active_orders(&self) -> BoxFuture<'_, Result<Vec<Uuid>, JournalError>>;
}

/// What happened, for whoever listens (notifications, metrics, other nodes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum EventKind {
    #[serde(rename = "order.confirmed")]
    OrderConfirmed,
    #[serde(rename = "order.awaiting_prescription")]
    OrderAwaitingPrescription,
    #[serde(rename = "order.awaiting_payment")]
    OrderAwaitingPayment,
    #[serde(rename = "order.dispatching")]
    OrderDispatching,
    #[serde(rename = "order.assigned")]
    OrderAssigned,
    #[serde(rename = "order.picked_up")]
    OrderPickedUp,
    #[serde(rename = "order.delivered")]
    OrderDelivered,
    #[serde(rename = "order.cancelled")]
    OrderCancelled,
    #[serde(rename = "order.failed")]
    OrderFailed,
    #[serde(rename = "rider.online")]
    RiderOnline,
    #[serde(rename = "rider.offline")]
    RiderOffline,
    /// The rider on an order, after pick-up, first came within [`ARRIVING_M`] of the
    /// drop-off.
    ///
    /// [`ARRIVING_M`]: crate::rider::ARRIVING_M
    #[serde(rename = "rider.arriving")]
    RiderArriving,
    #[serde(rename = "payment.succeeded")]
    PaymentSucceeded,
    #[serde(rename = "payment.failed")]
    PaymentFailed,
    /// A paid order was cancelled or failed: the money must go back (a refund worker
    /// listens for this).
    #[serde(rename = "payment.refund_pending")]
    PaymentRefundPending,
    #[serde(rename = "payment.refunded")]
    PaymentRefunded,
}

impl EventKind {
    /// `order.*`: the event of an order's status change. A `payment.*` event of the same
    /// journal entry carries the same statuses for context, but counts no change.
    pub fn is_status_change(self) -> bool {
        matches!(
            self,
            Self::OrderConfirmed
                | Self::OrderAwaitingPrescription
                | Self::OrderAwaitingPayment
                | Self::OrderDispatching
                | Self::OrderAssigned
                | Self::OrderPickedUp
                | Self::OrderDelivered
                | Self::OrderCancelled
                | Self::OrderFailed
        )
    }

    /// The event announcing a payment that moved into `status`; `None` for `pending`,
    /// which nothing moves into.
    pub fn of_payment(status: crate::model::PaymentStatus) -> Option<Self> {
        use crate::model::PaymentStatus as P;
        match status {
            P::Paid => Some(Self::PaymentSucceeded),
            P::Failed => Some(Self::PaymentFailed),
            P::RefundPending => Some(Self::PaymentRefundPending),
            P::Refunded => Some(Self::PaymentRefunded),
            P::Pending => None,
        }
    }
}

/// One event on the bus. `id` is unique: handlers use it to do their work once.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Event {
    pub id: Uuid,
    pub kind: EventKind,
    pub order_id: Option<Uuid>,
    pub customer_id: Option<Uuid>,
    pub rider_id: Option<Uuid>,
    pub pharmacy_id: Option<Uuid>,
    pub from_status: Option<crate::model::OrderStatus>,
    pub to_status: Option<crate::model::OrderStatus>,
    /// Epoch milliseconds.
    pub at_ms: i64,
    /// On `payment.*` events: the payment's new status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment: Option<crate::model::PaymentStatus>,
    /// On `order.cancelled`: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_reason: Option<crate::model::CancelReason>,
}

/// The id of the event announcing journal entry `seq` of an order: the same every time it
/// is published, so handlers deduplicate a republished event.
pub fn order_event_id(order_id: Uuid, seq: i32) -> Uuid {
    // SplitMix64 over (order id, seq); 128 well-mixed bits, then UUID version 8 bits.
    let mix = |mut z: u64| {
        z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let (hi, lo) = order_id.as_u64_pair();
    let seq = u64::from(seq.unsigned_abs());
    let a = mix(hi ^ mix(lo ^ seq));
    let b = mix(lo ^ mix(hi.rotate_left(17) ^ seq));
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&a.to_be_bytes());
    bytes[8..].copy_from_slice(&b.to_be_bytes());
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// The id of the `payment.*` event announcing journal entry `seq` of an order (an entry
/// that moved the payment announces it beside the order event): as stable as
/// [`order_event_id`], and different from it.
pub fn payment_event_id(order_id: Uuid, seq: i32) -> Uuid {
    let (hi, lo) = order_id.as_u64_pair();
    order_event_id(Uuid::from_u64_pair(!hi, lo.rotate_left(29)), seq)
}

/// A bus failure.
#[derive(Debug, Clone, thiserror::Error)]
#[error("bus: {0}")]
pub struct BusError(pub String);

/// Where events are published.
pub trait EventBus: Send + Sync + 'static {
    fn publish(&self, event: Event) -> BoxFuture<'_, Result<(), BusError>>;
}

/// What a rider session needs to read from storage (once per connect, never per fix).
pub trait RiderDirectory: Send + Sync + 'static {
    /// The order assigned to or picked up by this rider, if any.
    fn active_order(&self, rider: Uuid)
        -> BoxFuture<'_, Result<Option<OrderRecord>, JournalError>>;

    /// An order as a rider sees it (the API's order view without the delivery code).
    fn order_for_rider(
        &self,
        order: Uuid,
    ) -> BoxFuture<'_, Result<Option<serde_json::Value>, JournalError>>;
}

/// Where sampled GPS trail points go; must not block (points may be dropped under load).
pub trait TrailSink: Send + Sync + 'static {
    fn record(&self, order_id: Uuid, rider_id: Uuid, at: crate::geo::Point, ts_ms: i64);
}

/// How an offer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfferEnd {
    Accepted,
    Rejected,
    /// Timed out, or the rider's session ended with the offer open.
    Expired,
    /// Taken back: the order was cancelled, or an admin offered it to someone else.
    Withdrawn,
}

impl OfferEnd {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Rejected => "rejected",
            Self::Expired => "expired",
            Self::Withdrawn => "withdrawn",
        }
    }
}

/// Something that happened to an offer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OfferEvent {
    Made {
        offer_id: Uuid,
        order_id: Uuid,
        rider_id: Uuid,
        distance_m: i64,
        /// Epoch milliseconds.
        at_ms: i64,
        expires_ms: i64,
    },
    Ended {
        offer_id: Uuid,
        end: OfferEnd,
        at_ms: i64,
    },
}

/// The offers' record. `record` must not block (a queue in front of storage, written in
/// batches, never one write per location message).
pub trait OfferLog: Send + Sync + 'static {
    fn record(&self, event: OfferEvent);

    /// Riders who refused or let lapse an offer of this order: an order coming back to the
    /// matcher (after a restart) is not offered to them again.
    fn refused_by(&self, order_id: Uuid) -> BoxFuture<'_, Result<Vec<Uuid>, JournalError>>;
}
