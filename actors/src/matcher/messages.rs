//! What the matcher hears and what it says.
//!
//! Inbound: a rider's phase and position (from the rider's session), orders to dispatch or
//! withdraw (from order actors), answers to offers, manual offers and controls. Outbound:
//! the three things the matcher tells a rider, declared here as the interface the matcher
//! needs ([`RiderInbox`]): whoever holds a rider's socket implements them, so the matcher
//! never names a rider session's type.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use actix::prelude::*;
use uuid::Uuid;

use super::index::Position;
use crate::geo::Point;
use crate::lock;
use crate::model::RiderPhase;
use crate::protocol::{OfferInfo, Place};

/// A rider's phase as their session has just set it.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct RiderPhaseChanged {
    pub rider: Uuid,
    pub phase: RiderPhase,
    /// A socket is connected (a rider may be connected but not available).
    pub connected: bool,
}

/// A rider's new live position.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct RiderMoved {
    pub rider: Uuid,
    pub at: Point,
    pub ts_ms: i64,
}

/// The rider's session ended (grace period over).
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct RiderGone {
    pub rider: Uuid,
}

/// The rider moved to another region: this shard forgets their position (offers it made
/// them stay open).
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub(crate) struct RiderLeft {
    pub(crate) rider: Uuid,
}

/// An order entered `dispatching` (or was rehydrated in it).
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct DispatchOrder {
    pub order_id: Uuid,
    pub pickup: Point,
    pub pickup_name: Option<String>,
    pub dropoff: Point,
    /// When the order was confirmed (epoch ms), for the latency metric.
    pub since_ms: i64,
}

/// An order left dispatching without the matcher (cancelled, failed, delivered elsewhere);
/// its assigned rider, if any, is told.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct Withdraw {
    pub order_id: Uuid,
    pub rider: Option<Uuid>,
}

/// A rider's answer to an offer.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "Result<Answered, AnswerError>")]
pub struct Answer {
    pub offer_id: Uuid,
    /// The order the offer was for (from the offer), which says which shard made it.
    pub order_id: Uuid,
    pub rider: Uuid,
    pub accept: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Answered {
    Rejected,
    /// The order is this rider's to take to the order actor.
    Accepted {
        order_id: Uuid,
        pickup: Place,
        dropoff: Place,
        since_ms: i64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    #[error("no such offer")]
    NotFound,
    #[error("the offer is no longer open")]
    Closed,
}

/// What the order actor said to an accepted offer (for the time-to-assign metric).
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct AssignOutcome {
    pub order_id: Uuid,
    pub rider: Uuid,
    pub assigned: bool,
    pub since_ms: i64,
}

/// Manual dispatch: offer `order_id` to `rider` now.
#[derive(Debug, Clone, Copy)]
pub struct ManualOffer {
    pub order_id: Uuid,
    pub rider: Uuid,
}

/// What the router knows of a rider, for a manual offer by a shard that may not hold them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RiderSnapshot {
    pub(crate) phase: RiderPhase,
    pub(crate) connected: bool,
    pub(crate) pos: Option<Position>,
}

#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "Result<(), ManualOfferError>")]
pub(crate) struct ManualOfferTo {
    pub(crate) order_id: Uuid,
    pub(crate) rider_id: Uuid,
    pub(crate) rider: Option<RiderSnapshot>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManualOfferError {
    #[error("the order is not waiting for a rider")]
    NotDispatching,
    #[error("the rider is offline")]
    Offline,
    #[error("the rider is not free")]
    Busy,
}

/// Holds (or resumes) automatic offers, e.g. while an operator sorts out an incident.
/// Manual dispatch still works. Resuming runs a batch at once.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct SetPaused(pub bool);

/// Counts for tests and metrics.
#[derive(Message)]
#[rtype(result = "MatcherStats")]
pub struct Stats;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MatcherStats {
    pub free_riders: usize,
    pub waiting_orders: usize,
    pub open_offers: usize,
    /// Regions with a shard (summed stats only).
    pub shards: usize,
}

/// To a rider: a new offer. The answer says whether the rider took it on: a rider who
/// already holds an offer or an order, or is no longer available, declines, and the
/// order waits for the next batch.
#[derive(Debug, Clone)]
pub struct Offer(pub OfferInfo);

/// To a rider: the offer is gone (expired or withdrawn).
#[derive(Debug, Clone, Copy)]
pub struct OfferGone {
    pub offer_id: Uuid,
}

/// To a rider: their order was cancelled.
#[derive(Debug, Clone, Copy)]
pub struct OrderCancelled {
    pub order_id: Uuid,
}

/// Everything the matcher tells a rider, as one message: the matcher keeps one
/// `Recipient` per rider (three cost 288 bytes and nine allocations per rider, measured
/// with heaptrack). The answer matters only for an offer: whether the rider took it on.
#[derive(Message, Debug, Clone)]
#[rtype(result = "bool")]
pub enum ToRider {
    Offer(Offer),
    OfferGone(OfferGone),
    OrderCancelled(OrderCancelled),
}

/// How the matcher reaches one rider.
#[derive(Clone)]
pub struct RiderInbox(Recipient<ToRider>);

impl RiderInbox {
    /// The inbox of an actor that handles [`ToRider`].
    pub fn of<A>(addr: &Addr<A>) -> Self
    where
        A: Actor + Handler<ToRider>,
        A::Context: actix::dev::ToEnvelope<A, ToRider>,
    {
        Self(addr.clone().recipient())
    }

    pub(crate) fn offer(&self, info: OfferInfo) -> actix::dev::RecipientRequest<ToRider> {
        self.0.send(ToRider::Offer(Offer(info)))
    }

    pub(crate) fn offer_gone(&self, offer_id: Uuid) {
        self.0.do_send(ToRider::OfferGone(OfferGone { offer_id }));
    }

    pub(crate) fn order_cancelled(&self, order_id: Uuid) {
        self.0
            .do_send(ToRider::OrderCancelled(OrderCancelled { order_id }));
    }
}

/// Every rider the matcher can reach, by id: shared by the router and its shards.
#[derive(Clone, Default)]
pub(crate) struct Inboxes(Arc<Mutex<HashMap<Uuid, RiderInbox>>>);

impl Inboxes {
    pub(crate) fn get(&self, rider: Uuid) -> Option<RiderInbox> {
        lock(&self.0).get(&rider).cloned()
    }

    pub(crate) fn insert(&self, rider: Uuid, inbox: RiderInbox) {
        lock(&self.0).insert(rider, inbox);
    }

    pub(crate) fn remove(&self, rider: Uuid) {
        lock(&self.0).remove(&rider);
    }
}
