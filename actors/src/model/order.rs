//! The order lifecycle as values and one pure function. Ports, actors and the server all
//! speak these types; the order actor is the only one that changes an order's status.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Where an order is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Stock reserved.
    Confirmed,
    /// A pharmacist of the pharmacy must approve the prescription first.
    AwaitingPrescription,
    /// Paid online: waiting for the payment provider's word.
    AwaitingPayment,
    /// Looking for a rider.
    Dispatching,
    /// A rider accepted.
    Assigned,
    /// The rider has the medicine.
    PickedUp,
    Delivered,
    Cancelled,
    /// No rider accepted within the dispatch timeout, or the prescription was not reviewed
    /// or the payment not made in time.
    Failed,
}

impl OrderStatus {
    /// Every status, in the order of an order's life.
    pub const ALL: [OrderStatus; 9] = [
        Self::Confirmed,
        Self::AwaitingPrescription,
        Self::AwaitingPayment,
        Self::Dispatching,
        Self::Assigned,
        Self::PickedUp,
        Self::Delivered,
        Self::Cancelled,
        Self::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Confirmed => "confirmed",
            Self::AwaitingPrescription => "awaiting_prescription",
            Self::AwaitingPayment => "awaiting_payment",
            Self::Dispatching => "dispatching",
            Self::Assigned => "assigned",
            Self::PickedUp => "picked_up",
            Self::Delivered => "delivered",
            Self::Cancelled => "cancelled",
            Self::Failed => "failed",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }

    /// Delivered, cancelled and failed orders never change again.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Delivered | Self::Cancelled | Self::Failed)
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What can happen to an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderEvent {
    /// The order is placed (stock reserved): the event that starts every order, see
    /// [`start`].
    Create,
    /// Start looking for a rider.
    Dispatch,
    /// A rider accepted an offer.
    Assign {
        rider_id: Uuid,
    },
    PickUp,
    Deliver,
    Cancel,
    /// The dispatch timeout passed with no rider.
    Fail,
    /// The assigned rider did not pick the order up in time: it looks for another.
    PickupTimeout,
    /// The order waits for a pharmacist's review of its prescription.
    AwaitPrescription,
    /// The order waits for its online payment.
    AwaitPayment,
    /// The pharmacist approved the prescription; `payment_due` when an online payment
    /// must still come before dispatch.
    Approve {
        payment_due: bool,
    },
    /// The pharmacist rejected the prescription.
    Reject,
    /// Nobody reviewed the prescription in time.
    ReviewTimeout,
    /// The provider reported the payment made.
    PaymentSucceeded,
    /// The provider reported the payment failed.
    PaymentFailed,
    /// No payment arrived in time.
    PaymentTimeout,
}

impl OrderEvent {
    pub fn name(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Dispatch => "dispatch",
            Self::Assign { .. } => "assign",
            Self::PickUp => "pick_up",
            Self::Deliver => "deliver",
            Self::Cancel => "cancel",
            Self::Fail => "fail",
            Self::PickupTimeout => "pickup_timeout",
            Self::AwaitPrescription => "await_prescription",
            Self::AwaitPayment => "await_payment",
            Self::Approve { .. } => "approve",
            Self::Reject => "reject",
            Self::ReviewTimeout => "review_timeout",
            Self::PaymentSucceeded => "payment_succeeded",
            Self::PaymentFailed => "payment_failed",
            Self::PaymentTimeout => "payment_timeout",
        }
    }
}

/// The first step of a new order: a prescription review if any item needs one, else the
/// online payment if it is paid online, else dispatch.
pub fn first_step(needs_review: bool, pays_online: bool) -> OrderEvent {
    if needs_review {
        OrderEvent::AwaitPrescription
    } else if pays_online {
        OrderEvent::AwaitPayment
    } else {
        OrderEvent::Dispatch
    }
}

/// An event that the current status does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cannot {} an order that is {from}", event.name())]
pub struct IllegalTransition {
    pub from: OrderStatus,
    pub event: OrderEvent,
}

/// The status an order starts in, for the event that starts one (`None` for any other
/// event: only [`OrderEvent::Create`] makes an order).
pub fn start(event: OrderEvent) -> Option<OrderStatus> {
    match event {
        OrderEvent::Create => Some(OrderStatus::Confirmed),
        _ => None,
    }
}

/// The order lifecycle: the new status, or why the event is not allowed now. An order that
/// exists cannot be created again.
pub fn transition(from: OrderStatus, event: OrderEvent) -> Result<OrderStatus, IllegalTransition> {
    use OrderEvent as E;
    use OrderStatus as S;
    let to = match (from, event) {
        (S::Confirmed, E::Dispatch) => S::Dispatching,
        (S::Confirmed, E::AwaitPrescription) => S::AwaitingPrescription,
        (S::Confirmed, E::AwaitPayment) => S::AwaitingPayment,
        (S::AwaitingPrescription, E::Approve { payment_due: true }) => S::AwaitingPayment,
        (S::AwaitingPrescription, E::Approve { payment_due: false }) => S::Dispatching,
        (S::AwaitingPrescription, E::Reject) => S::Cancelled,
        (S::AwaitingPrescription, E::ReviewTimeout) => S::Failed,
        (S::AwaitingPayment, E::PaymentSucceeded) => S::Dispatching,
        (S::AwaitingPayment, E::PaymentFailed) => S::Cancelled,
        (S::AwaitingPayment, E::PaymentTimeout) => S::Failed,
        (S::Dispatching, E::Assign { .. }) => S::Assigned,
        (S::Assigned, E::PickUp) => S::PickedUp,
        (S::PickedUp, E::Deliver) => S::Delivered,
        (
            S::Confirmed
            | S::AwaitingPrescription
            | S::AwaitingPayment
            | S::Dispatching
            | S::Assigned,
            E::Cancel,
        ) => S::Cancelled,
        (S::Confirmed | S::Dispatching, E::Fail) => S::Failed,
        (S::Assigned, E::PickupTimeout) => S::Dispatching,
        _ => return Err(IllegalTransition { from, event }),
    };
    Ok(to)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events() -> Vec<OrderEvent> {
        vec![
            OrderEvent::Create,
            OrderEvent::Dispatch,
            OrderEvent::Assign {
                rider_id: Uuid::nil(),
            },
            OrderEvent::PickUp,
            OrderEvent::Deliver,
            OrderEvent::Cancel,
            OrderEvent::Fail,
            OrderEvent::PickupTimeout,
            OrderEvent::AwaitPrescription,
            OrderEvent::AwaitPayment,
            OrderEvent::Approve { payment_due: true },
            OrderEvent::Approve { payment_due: false },
            OrderEvent::Reject,
            OrderEvent::ReviewTimeout,
            OrderEvent::PaymentSucceeded,
            OrderEvent::PaymentFailed,
            OrderEvent::PaymentTimeout,
        ]
    }

    #[test]
    fn every_pair_of_status_and_event() {
        use OrderStatus as S;
        let allowed = |from: S, event: OrderEvent| -> Option<S> {
            match (from, event) {
                (S::Confirmed, OrderEvent::Dispatch) => Some(S::Dispatching),
                (S::Confirmed, OrderEvent::AwaitPrescription) => Some(S::AwaitingPrescription),
                (S::Confirmed, OrderEvent::AwaitPayment) => Some(S::AwaitingPayment),
                (S::AwaitingPrescription, OrderEvent::Approve { payment_due }) => {
                    Some(if payment_due {
                        S::AwaitingPayment
                    } else {
                        S::Dispatching
                    })
                }
                (S::AwaitingPrescription, OrderEvent::Reject) => Some(S::Cancelled),
                (S::AwaitingPrescription, OrderEvent::ReviewTimeout) => Some(S::Failed),
                (S::AwaitingPayment, OrderEvent::PaymentSucceeded) => Some(S::Dispatching),
                (S::AwaitingPayment, OrderEvent::PaymentFailed) => Some(S::Cancelled),
                (S::AwaitingPayment, OrderEvent::PaymentTimeout) => Some(S::Failed),
                (S::Dispatching, OrderEvent::Assign { .. }) => Some(S::Assigned),
                (S::Assigned, OrderEvent::PickUp) => Some(S::PickedUp),
                (S::PickedUp, OrderEvent::Deliver) => Some(S::Delivered),
                (
                    S::Confirmed
                    | S::AwaitingPrescription
                    | S::AwaitingPayment
                    | S::Dispatching
                    | S::Assigned,
                    OrderEvent::Cancel,
                ) => Some(S::Cancelled),
                (S::Confirmed | S::Dispatching, OrderEvent::Fail) => Some(S::Failed),
                (S::Assigned, OrderEvent::PickupTimeout) => Some(S::Dispatching),
                _ => None,
            }
        };
        let mut legal = 0;
        for from in S::ALL {
            for event in events() {
                let got = transition(from, event);
                match allowed(from, event) {
                    Some(to) => {
                        assert_eq!(got, Ok(to), "{from} + {event:?}");
                        legal += 1;
                    }
                    None => assert_eq!(
                        got,
                        Err(IllegalTransition { from, event }),
                        "{from} + {event:?}"
                    ),
                }
            }
        }
        assert_eq!(legal, 21);
    }

    #[test]
    fn an_order_starts_confirmed_and_only_by_being_created() {
        for event in events() {
            let expected = (event == OrderEvent::Create).then_some(OrderStatus::Confirmed);
            assert_eq!(start(event), expected, "{event:?}");
        }
    }

    #[test]
    fn the_first_step_reviews_then_takes_payment_then_dispatches() {
        assert_eq!(first_step(true, true), OrderEvent::AwaitPrescription);
        assert_eq!(first_step(true, false), OrderEvent::AwaitPrescription);
        assert_eq!(first_step(false, true), OrderEvent::AwaitPayment);
        assert_eq!(first_step(false, false), OrderEvent::Dispatch);
        // An rx order paid online: review, then payment, then dispatch.
        let mut status = OrderStatus::Confirmed;
        for event in [
            first_step(true, true),
            OrderEvent::Approve { payment_due: true },
            OrderEvent::PaymentSucceeded,
        ] {
            status = transition(status, event).expect("legal");
        }
        assert_eq!(status, OrderStatus::Dispatching);
    }

    #[test]
    fn final_states_accept_nothing() {
        for from in OrderStatus::ALL.into_iter().filter(|s| s.is_final()) {
            for event in events() {
                assert!(transition(from, event).is_err());
            }
        }
    }

    #[test]
    fn delivered_before_picked_up_is_illegal() {
        let err = transition(OrderStatus::Assigned, OrderEvent::Deliver).expect_err("illegal");
        assert_eq!(err.to_string(), "cannot deliver an order that is assigned");
    }

    #[test]
    fn statuses_round_trip() {
        for s in OrderStatus::ALL {
            assert_eq!(OrderStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(OrderStatus::parse("lost"), None);
    }
}
