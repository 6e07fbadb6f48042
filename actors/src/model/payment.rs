//! How an order is paid, as values and one pure function: the method the customer chose,
//! the payment's status, and how order events and the provider's reports move it. Also
//! why an order was cancelled, which the same events decide.

use serde::{Deserialize, Serialize};

use super::order::OrderEvent;

/// How the customer pays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PaymentMethod {
    /// Cash to the rider at the door.
    #[default]
    Cod,
    /// Through the payment provider before dispatch.
    Online,
}

impl PaymentMethod {
    pub const ALL: [PaymentMethod; 2] = [Self::Cod, Self::Online];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cod => "cod",
            Self::Online => "online",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == raw)
    }
}

/// Where the money is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    Pending,
    Paid,
    Failed,
    /// The order was paid and then cancelled or failed: the money goes back.
    RefundPending,
    Refunded,
}

impl PaymentStatus {
    pub const ALL: [PaymentStatus; 5] = [
        Self::Pending,
        Self::Paid,
        Self::Failed,
        Self::RefundPending,
        Self::Refunded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Paid => "paid",
            Self::Failed => "failed",
            Self::RefundPending => "refund_pending",
            Self::Refunded => "refunded",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }
}

/// What moves a payment: an order event, or the provider confirming a refund (which
/// changes no order status).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentEvent {
    Order(OrderEvent),
    RefundSucceeded,
}

/// The payment's status after `event`, for an order paid by `method` whose payment is
/// `status` now. Events that do not concern the payment leave it as it is.
///
/// Cash is paid when the rider's delivery is accepted. An online payment is paid or failed
/// by the provider's report, failed when it never came; a paid online order that is then
/// cancelled or fails owes a refund, which the provider's report completes.
pub fn payment_after(
    method: PaymentMethod,
    status: PaymentStatus,
    event: PaymentEvent,
) -> PaymentStatus {
    use OrderEvent as O;
    use PaymentEvent as E;
    use PaymentMethod as M;
    use PaymentStatus as P;
    match (method, status, event) {
        (M::Cod, P::Pending, E::Order(O::Deliver)) => P::Paid,
        (M::Online, P::Pending, E::Order(O::PaymentSucceeded)) => P::Paid,
        (M::Online, P::Pending, E::Order(O::PaymentFailed | O::PaymentTimeout)) => P::Failed,
        (M::Online, P::Paid, E::Order(O::Cancel | O::Fail | O::Reject | O::ReviewTimeout)) => {
            P::RefundPending
        }
        (M::Online, P::RefundPending, E::RefundSucceeded) => P::Refunded,
        _ => status,
    }
}

/// Why an order was cancelled, as order objects name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelReason {
    Customer,
    Admin,
    PrescriptionRejected,
    PaymentFailed,
}

impl CancelReason {
    pub const ALL: [CancelReason; 4] = [
        Self::Customer,
        Self::Admin,
        Self::PrescriptionRejected,
        Self::PaymentFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Customer => "customer",
            Self::Admin => "admin",
            Self::PrescriptionRejected => "prescription_rejected",
            Self::PaymentFailed => "payment_failed",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == raw)
    }

    /// The reason an event that cancels gives; `by_admin` says who asked for a plain
    /// cancel. `None` for events that do not cancel.
    pub fn of(event: OrderEvent, by_admin: bool) -> Option<Self> {
        match event {
            OrderEvent::Cancel if by_admin => Some(Self::Admin),
            OrderEvent::Cancel => Some(Self::Customer),
            OrderEvent::Reject => Some(Self::PrescriptionRejected),
            OrderEvent::PaymentFailed => Some(Self::PaymentFailed),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order_events() -> Vec<OrderEvent> {
        vec![
            OrderEvent::Create,
            OrderEvent::Dispatch,
            OrderEvent::Assign {
                rider_id: uuid::Uuid::nil(),
            },
            OrderEvent::PickUp,
            OrderEvent::Deliver,
            OrderEvent::Cancel,
            OrderEvent::Fail,
            OrderEvent::PickupTimeout,
            OrderEvent::AwaitPrescription,
            OrderEvent::AwaitPayment,
            OrderEvent::Approve { payment_due: true },
            OrderEvent::Reject,
            OrderEvent::ReviewTimeout,
            OrderEvent::PaymentSucceeded,
            OrderEvent::PaymentFailed,
            OrderEvent::PaymentTimeout,
        ]
    }

    #[test]
    fn every_method_status_and_event() {
        let mut events: Vec<PaymentEvent> = order_events()
            .into_iter()
            .map(PaymentEvent::Order)
            .collect();
        events.push(PaymentEvent::RefundSucceeded);
        let mut moved = Vec::new();
        for method in PaymentMethod::ALL {
            for status in PaymentStatus::ALL {
                for event in &events {
                    let after = payment_after(method, status, *event);
                    if after != status {
                        moved.push((method, status, *event, after));
                    }
                }
            }
        }
        use OrderEvent as O;
        use PaymentEvent as E;
        use PaymentMethod as M;
        use PaymentStatus as P;
        assert_eq!(
            moved,
            vec![
                (M::Cod, P::Pending, E::Order(O::Deliver), P::Paid),
                (
                    M::Online,
                    P::Pending,
                    E::Order(O::PaymentSucceeded),
                    P::Paid
                ),
                (M::Online, P::Pending, E::Order(O::PaymentFailed), P::Failed),
                (
                    M::Online,
                    P::Pending,
                    E::Order(O::PaymentTimeout),
                    P::Failed
                ),
                (M::Online, P::Paid, E::Order(O::Cancel), P::RefundPending),
                (M::Online, P::Paid, E::Order(O::Fail), P::RefundPending),
                (M::Online, P::Paid, E::Order(O::Reject), P::RefundPending),
                (
                    M::Online,
                    P::Paid,
                    E::Order(O::ReviewTimeout),
                    P::RefundPending
                ),
                (M::Online, P::RefundPending, E::RefundSucceeded, P::Refunded),
            ]
        );
    }

    #[test]
    fn cancel_reasons() {
        assert_eq!(
            CancelReason::of(OrderEvent::Cancel, false),
            Some(CancelReason::Customer)
        );
        assert_eq!(
            CancelReason::of(OrderEvent::Cancel, true),
            Some(CancelReason::Admin)
        );
        assert_eq!(
            CancelReason::of(OrderEvent::Reject, true),
            Some(CancelReason::PrescriptionRejected)
        );
        assert_eq!(
            CancelReason::of(OrderEvent::PaymentFailed, false),
            Some(CancelReason::PaymentFailed)
        );
        assert_eq!(CancelReason::of(OrderEvent::Fail, true), None);
    }

    #[test]
    fn names_round_trip() {
        for m in PaymentMethod::ALL {
            assert_eq!(PaymentMethod::parse(m.as_str()), Some(m));
            assert_eq!(serde_json::to_value(m).expect("json"), m.as_str());
        }
        for s in PaymentStatus::ALL {
            assert_eq!(PaymentStatus::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).expect("json"), s.as_str());
        }
        for r in CancelReason::ALL {
            assert_eq!(CancelReason::parse(r.as_str()), Some(r));
            assert_eq!(serde_json::to_value(r).expect("json"), r.as_str());
        }
    }
}
