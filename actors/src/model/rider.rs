//! What a rider is doing, as values and one pure function: the phase of a rider (offline,
//! free, offered, on a delivery), the events that move it, and the name each phase has on
//! the wire. The rider's session is the only writer of a phase; the matcher's free riders
//! and the fleet view are read from the phases the session reports.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A rider's phase. Only a `Free` rider is offered orders, and a rider holds at most one
/// offer or one order at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RiderPhase {
    /// No socket, or not available for work.
    Offline,
    /// Connected and available, with no offer and no order.
    Free,
    /// An offer waits for the rider's answer.
    Offered { offer: Uuid, order: Uuid },
    /// The rider has an active order.
    OnDelivery { order: Uuid },
}

/// The name of a phase, as the fleet view, `GET /riders` and the ops map write it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RiderState {
    Offline,
    Free,
    Offered,
    OnDelivery,
}

impl RiderState {
    pub const ALL: [RiderState; 4] = [Self::Offline, Self::Free, Self::Offered, Self::OnDelivery];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Offline => "offline",
            Self::Free => "free",
            Self::Offered => "offered",
            Self::OnDelivery => "on_delivery",
        }
    }
}

impl fmt::Display for RiderState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What can happen to a rider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RiderEvent {
    /// The rider became reachable for work (a socket and availability on) or stopped
    /// being so. An offer or an order outlasts it.
    Reachable(bool),
    /// The matcher offers an order.
    Offered { offer: Uuid, order: Uuid },
    /// The offer was refused, expired or withdrawn.
    OfferEnded { offer: Uuid },
    /// The rider accepted the offer and the order actor assigned the order.
    Assigned { offer: Uuid, order: Uuid },
    /// Storage says the rider has this order (a session starting after a restart).
    Resumed { order: Uuid },
    /// The order was delivered, cancelled or failed.
    DeliveryEnded { order: Uuid },
    /// The session ends (the grace period after the socket closed is over): an offer is
    /// given up, an order keeps its rider.
    Gone,
}

/// An event that the current phase does not allow: the session refuses it (an offer to a
/// rider who already holds one) or ignores it (news of an offer that already ended).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a rider who is {} cannot take {event:?}", from.state())]
pub struct IllegalPhase {
    pub from: RiderPhase,
    pub event: RiderEvent,
}

impl RiderPhase {
    pub fn state(self) -> RiderState {
        match self {
            Self::Offline => RiderState::Offline,
            Self::Free => RiderState::Free,
            Self::Offered { .. } => RiderState::Offered,
            Self::OnDelivery { .. } => RiderState::OnDelivery,
        }
    }

    /// Where a rider with nothing to do rests.
    pub fn idle(reachable: bool) -> Self {
        if reachable {
            Self::Free
        } else {
            Self::Offline
        }
    }

    /// The order the rider is on, if any.
    pub fn order(self) -> Option<Uuid> {
        match self {
            Self::OnDelivery { order } => Some(order),
            _ => None,
        }
    }

    /// The open offer, if any.
    pub fn offer(self) -> Option<Uuid> {
        match self {
            Self::Offered { offer, .. } => Some(offer),
            _ => None,
        }
    }
}

/// The rider lifecycle: the new phase, or why the event is not allowed now. `reachable` is
/// whether the rider is connected and available, which decides where a rider lands when
/// an offer or a delivery ends.
pub fn rider_transition(
    from: RiderPhase,
    event: RiderEvent,
    reachable: bool,
) -> Result<RiderPhase, IllegalPhase> {
    use RiderEvent as E;
    use RiderPhase as P;
    let to = match (from, event) {
        (P::Offline | P::Free, E::Reachable(now)) => P::idle(now),
        (P::Offered { .. } | P::OnDelivery { .. }, E::Reachable(_)) => from,
        (P::Free, E::Offered { offer, order }) => P::Offered { offer, order },
        (P::Offered { offer, .. }, E::OfferEnded { offer: ended }) if offer == ended => {
            P::idle(reachable)
        }
        (
            P::Offered {
                offer,
                order: offered,
            },
            E::Assigned {
                offer: answered,
                order,
            },
        ) if offer == answered && order == offered => P::OnDelivery { order },
        (P::Offline | P::Free, E::Resumed { order }) => P::OnDelivery { order },
        (P::OnDelivery { order }, E::Resumed { order: again }) if order == again => from,
        (P::OnDelivery { order }, E::DeliveryEnded { order: ended }) if order == ended => {
            P::idle(reachable)
        }
        (P::OnDelivery { .. }, E::Gone) => from,
        (_, E::Gone) => P::Offline,
        _ => return Err(IllegalPhase { from, event }),
    };
    Ok(to)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: u128 = 1;
    const B: u128 = 2;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn phases() -> Vec<RiderPhase> {
        vec![
            RiderPhase::Offline,
            RiderPhase::Free,
            RiderPhase::Offered {
                offer: id(A),
                order: id(A),
            },
            RiderPhase::OnDelivery { order: id(A) },
        ]
    }

    /// Every event, about offer/order A (the one a phase above holds) and B (another).
    fn events() -> Vec<RiderEvent> {
        let mut all = vec![
            RiderEvent::Reachable(false),
            RiderEvent::Reachable(true),
            RiderEvent::Gone,
        ];
        for n in [A, B] {
            all.extend([
                RiderEvent::Offered {
                    offer: id(n),
                    order: id(n),
                },
                RiderEvent::OfferEnded { offer: id(n) },
                RiderEvent::Assigned {
                    offer: id(n),
                    order: id(n),
                },
                RiderEvent::Resumed { order: id(n) },
                RiderEvent::DeliveryEnded { order: id(n) },
            ]);
        }
        all
    }

    /// The table the transition function must agree with, written out pair by pair.
    fn expected(from: RiderPhase, event: RiderEvent, reachable: bool) -> Option<RiderPhase> {
        use RiderEvent as E;
        use RiderPhase as P;
        let idle = if reachable { P::Free } else { P::Offline };
        let a = id(A);
        match (from, event) {
            (P::Offline, E::Reachable(true)) | (P::Free, E::Reachable(true)) => Some(P::Free),
            (P::Offline, E::Reachable(false)) | (P::Free, E::Reachable(false)) => Some(P::Offline),
            (P::Offered { .. }, E::Reachable(_)) | (P::OnDelivery { .. }, E::Reachable(_)) => {
                Some(from)
            }
            (P::Free, E::Offered { offer, order }) => Some(P::Offered { offer, order }),
            (P::Offered { .. }, E::OfferEnded { offer }) if offer == a => Some(idle),
            (P::Offered { .. }, E::Assigned { offer, order }) if offer == a && order == a => {
                Some(P::OnDelivery { order: a })
            }
            (P::Offline, E::Resumed { order }) | (P::Free, E::Resumed { order }) => {
                Some(P::OnDelivery { order })
            }
            (P::OnDelivery { .. }, E::Resumed { order }) if order == a => Some(from),
            (P::OnDelivery { .. }, E::DeliveryEnded { order }) if order == a => Some(idle),
            (P::OnDelivery { .. }, E::Gone) => Some(from),
            (_, E::Gone) => Some(P::Offline),
            _ => None,
        }
    }

    #[test]
    fn every_pair_of_phase_and_event() {
        let mut legal = 0;
        for reachable in [false, true] {
            for from in phases() {
                for event in events() {
                    let got = rider_transition(from, event, reachable);
                    match expected(from, event, reachable) {
                        Some(to) => {
                            assert_eq!(got, Ok(to), "{from:?} + {event:?} ({reachable})");
                            legal += 1;
                        }
                        None => assert_eq!(
                            got,
                            Err(IllegalPhase { from, event }),
                            "{from:?} + {event:?} ({reachable})"
                        ),
                    }
                }
            }
        }
        // Per reachability: 4 reachable + 4 kept + 2 offered + 1 ended + 1 assigned +
        // 4 resumed + 1 resumed again + 1 delivered + 4 gone = 22.
        assert_eq!(legal, 44);
    }

    #[test]
    fn one_offer_or_order_at_a_time() {
        let second = RiderEvent::Offered {
            offer: id(B),
            order: id(B),
        };
        for from in phases() {
            let got = rider_transition(from, second, true);
            assert_eq!(got.is_ok(), from == RiderPhase::Free, "{from:?}");
        }
    }

    #[test]
    fn news_of_another_offer_or_order_changes_nothing() {
        let offered = RiderPhase::Offered {
            offer: id(A),
            order: id(A),
        };
        let stale = RiderEvent::OfferEnded { offer: id(B) };
        assert!(rider_transition(offered, stale, true).is_err());
        let delivering = RiderPhase::OnDelivery { order: id(A) };
        let other = RiderEvent::DeliveryEnded { order: id(B) };
        assert!(rider_transition(delivering, other, true).is_err());
    }

    #[test]
    fn an_ended_offer_or_delivery_rests_where_the_rider_is() {
        let offered = RiderPhase::Offered {
            offer: id(A),
            order: id(A),
        };
        let ended = RiderEvent::OfferEnded { offer: id(A) };
        assert_eq!(rider_transition(offered, ended, true), Ok(RiderPhase::Free));
        assert_eq!(
            rider_transition(offered, ended, false),
            Ok(RiderPhase::Offline)
        );
    }

    #[test]
    fn state_names_come_from_the_enum() {
        let names: Vec<&str> = phases().into_iter().map(|p| p.state().as_str()).collect();
        assert_eq!(names, ["offline", "free", "offered", "on_delivery"]);
        for state in RiderState::ALL {
            let json = serde_json::to_value(state).expect("json");
            assert_eq!(json, state.as_str());
        }
    }
}
