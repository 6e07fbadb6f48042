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
    /// Looking for a rider.
    Dispatching,
    /// A rider accepted.
    Assigned,
    /// The rider has the medicine.
    PickedUp,
    Delivered,
    Cancelled,
    /// No rider accepted within the dispatch timeout.
    Failed,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 7] = [
        Self::Confirmed,
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
        }
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
        (S::Dispatching, E::Assign { .. }) => S::Assigned,
        (S::Assigned, E::PickUp) => S::PickedUp,
        (S::PickedUp, E::Deliver) => S::Delivered,
        (S::Confirmed | S::Dispatching | S::Assigned, E::Cancel) => S::Cancelled,
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
        ]
    }

    #[test]
    fn every_pair_of_status_and_event() {
        use OrderStatus as S;
        let allowed = |from: S, event: OrderEvent| -> Option<S> {
            match (from, event) {
                (S::Confirmed, OrderEvent::Dispatch) => Some(S::Dispatching),
                (S::Dispatching, OrderEvent::Assign { .. }) => Some(S::Assigned),
                (S::Assigned, OrderEvent::PickUp) => Some(S::PickedUp),
                (S::PickedUp, OrderEvent::Deliver) => Some(S::Delivered),
                (S::Confirmed | S::Dispatching | S::Assigned, OrderEvent::Cancel) => {
                    Some(S::Cancelled)
                }
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
        assert_eq!(legal, 10);
    }

    #[test]
    fn an_order_starts_confirmed_and_only_by_being_created() {
        for event in events() {
            let expected = (event == OrderEvent::Create).then_some(OrderStatus::Confirmed);
            assert_eq!(start(event), expected, "{event:?}");
        }
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
