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
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::index::Position;
use crate::geo::Point;
use crate::lock;
use crate::model::RiderPhase;
use crate::ports::BoxFuture;
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

/// What a node that does not run the matcher tells the node that does about one of its
/// riders (issue 16): the whole of what the matcher knows of him, so a lost report is
/// repaired by the next one.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RiderReport {
    pub rider: Uuid,
    pub phase: RiderPhase,
    pub connected: bool,
    /// Latitude, longitude and the fix's time (epoch ms).
    pub at: Option<(f64, f64, i64)>,
}

/// How this node's matcher reaches the nodes that own the other regions (issue 16): each
/// owner region's orders are matched on the node holding its lease. A request that cannot
/// be delivered or answered in time fails as a mailbox timeout.
pub trait MatcherRoute: Send + Sync + 'static {
    /// Whether this node owns a region now (false: it keeps no shards, and every call goes
    /// through the route).
    fn local(&self) -> bool;
    /// One of this node's riders, to every other node owning a region.
    fn rider(&self, report: RiderReport);
    fn rider_gone(&self, rider: Uuid);
    fn answer(
        &self,
        msg: Answer,
    ) -> BoxFuture<'static, Result<Result<Answered, AnswerError>, MailboxError>>;
    fn assign_outcome(&self, msg: AssignOutcome);
    fn manual_offer(
        &self,
        msg: ManualOffer,
    ) -> BoxFuture<'static, Result<Result<(), ManualOfferError>, MailboxError>>;
    /// Holds or resumes automatic offers on every other node owning a region.
    fn set_paused(&self, paused: bool) -> BoxFuture<'static, Result<(), MailboxError>>;
    /// The counts of every other node owning a region, summed, and whether one of them
    /// holds automatic offers.
    fn stats(&self) -> BoxFuture<'static, Result<(MatcherStats, bool), MailboxError>>;
    /// The offer the rider holds from another node, for a session that starts on another
    /// node than the one the offer was delivered to.
    fn open_offer(&self, rider: Uuid) -> BoxFuture<'static, Option<OfferInfo>>;
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
#[derive(Message, Debug, Clone, Copy, Serialize, Deserialize)]
#[rtype(result = "Result<Answered, AnswerError>")]
pub struct Answer {
    pub offer_id: Uuid,
    /// The order the offer was for (from the offer), which says which shard made it.
    pub order_id: Uuid,
    pub rider: Uuid,
    pub accept: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum AnswerError {
    #[error("no such offer")]
    NotFound,
    #[error("the offer is no longer open")]
    Closed,
}

/// What the order actor said to an accepted offer (for the time-to-assign metric).
#[derive(Message, Debug, Clone, Copy, Serialize, Deserialize)]
#[rtype(result = "()")]
pub struct AssignOutcome {
    pub order_id: Uuid,
    pub rider: Uuid,
    pub assigned: bool,
    pub since_ms: i64,
}

/// Manual dispatch: offer `order_id` to `rider` now.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
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

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
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

/// Stops a shard (this node no longer runs the matcher): its open offers are taken back
/// from the riders first, so none is left holding an offer nobody will answer.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub(crate) struct Retire;

/// A rider reports holding `offer` for `order`: if this shard made no such offer (it was
/// made by a node that has since died), the rider is told it is gone.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub(crate) struct CheckOffer {
    pub(crate) rider: Uuid,
    pub(crate) offer: Uuid,
}

/// The open offer a rider holds from this shard, if any.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "Option<OfferInfo>")]
pub(crate) struct OfferOf {
    pub(crate) rider: Uuid,
}

/// Counts for tests and metrics.
#[derive(Message)]
#[rtype(result = "MatcherStats")]
pub struct Stats;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MatcherStats {
    pub free_riders: usize,
    pub waiting_orders: usize,
    pub open_offers: usize,
    /// Regions with a shard (summed stats only).
    pub shards: usize,
}

impl MatcherStats {
    /// Adds another part's counts (another shard's, another node's).
    pub fn add(&mut self, other: MatcherStats) {
        self.free_riders += other.free_riders;
        self.waiting_orders += other.waiting_orders;
        self.open_offers += other.open_offers;
        self.shards += other.shards;
    }
}

/// To a rider: a new offer. The answer says whether the rider took it on: a rider who
/// already holds an offer or an order, or is no longer available, declines, and the
/// order waits for the next batch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Offer(pub OfferInfo);

/// To a rider: the offer is gone (expired or withdrawn).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct OfferGone {
    pub offer_id: Uuid,
}

/// To a rider: their order was cancelled.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct OrderCancelled {
    pub order_id: Uuid,
}

/// Everything the matcher tells a rider, as one message: the matcher keeps one
/// `Recipient` per rider (three cost 288 bytes and nine allocations per rider, measured
/// with heaptrack). The answer matters only for an offer: whether the rider took it on.
#[derive(Message, Debug, Clone, Serialize, Deserialize)]
#[rtype(result = "bool")]
pub enum ToRider {
    Offer(Offer),
    OfferGone(OfferGone),
    OrderCancelled(OrderCancelled),
}

/// How the matcher reaches one rider: the session's actor on this node, or, in a cluster,
/// the node holding the rider's socket ([`RemoteRiders`]).
#[derive(Clone)]
pub struct RiderInbox(Reach);

#[derive(Clone)]
enum Reach {
    Local(Recipient<ToRider>),
    Remote(Uuid, Arc<dyn RemoteRiders>),
}

/// The riders of another node, as the node running the matcher reaches them (issue 16).
/// An offer the other node does not answer in time counts as declined.
pub trait RemoteRiders: Send + Sync + 'static {
    fn tell(&self, rider: Uuid, msg: ToRider) -> BoxFuture<'static, bool>;
    /// The node these riders are on.
    fn node(&self) -> &str;
}

impl RiderInbox {
    /// The inbox of an actor that handles [`ToRider`].
    pub fn of<A>(addr: &Addr<A>) -> Self
    where
        A: Actor + Handler<ToRider>,
        A::Context: actix::dev::ToEnvelope<A, ToRider>,
    {
        Self(Reach::Local(addr.clone().recipient()))
    }

    /// A rider whose socket is on another node.
    pub fn remote(rider: Uuid, node: Arc<dyn RemoteRiders>) -> Self {
        Self(Reach::Remote(rider, node))
    }

    /// The node holding the rider's socket, when it is not this one.
    pub fn remote_node(&self) -> Option<&str> {
        match &self.0 {
            Reach::Local(_) => None,
            Reach::Remote(_, node) => Some(node.node()),
        }
    }

    /// Delivers a message; the answer says whether an offer was taken on.
    pub fn tell(&self, msg: ToRider) -> BoxFuture<'static, bool> {
        match &self.0 {
            Reach::Local(recipient) => {
                let sent = recipient.send(msg);
                Box::pin(async move { sent.await.unwrap_or(false) })
            }
            Reach::Remote(rider, node) => node.tell(*rider, msg),
        }
    }

    fn notify(&self, msg: ToRider) {
        match &self.0 {
            Reach::Local(recipient) => recipient.do_send(msg),
            Reach::Remote(rider, node) => {
                let told = node.tell(*rider, msg);
                actix::spawn(async move {
                    told.await;
                });
            }
        }
    }

    pub(crate) fn offer(&self, info: OfferInfo) -> BoxFuture<'static, bool> {
        self.tell(ToRider::Offer(Offer(info)))
    }

    pub(crate) fn offer_gone(&self, offer_id: Uuid) {
        self.notify(ToRider::OfferGone(OfferGone { offer_id }));
    }

    pub(crate) fn order_cancelled(&self, order_id: Uuid) {
        self.notify(ToRider::OrderCancelled(OrderCancelled { order_id }));
    }
}

/// Every rider the matcher can reach, by id: shared by the router and its shards. This
/// node's riders and other nodes' riders are kept apart, so a node alone stores one
/// `Recipient` per rider and nothing more (the per-rider memory is measured).
#[derive(Clone, Default)]
pub(crate) struct Inboxes(Arc<Mutex<Reachable>>);

#[derive(Default)]
struct Reachable {
    local: HashMap<Uuid, Recipient<ToRider>>,
    remote: HashMap<Uuid, Arc<dyn RemoteRiders>>,
}

impl Inboxes {
    pub(crate) fn get(&self, rider: Uuid) -> Option<RiderInbox> {
        let reachable = lock(&self.0);
        if let Some(local) = reachable.local.get(&rider) {
            return Some(RiderInbox(Reach::Local(local.clone())));
        }
        let node = reachable.remote.get(&rider)?;
        Some(RiderInbox::remote(rider, node.clone()))
    }

    /// Where the rider is reached from now on (a rider is on one node at a time).
    pub(crate) fn insert(&self, rider: Uuid, inbox: RiderInbox) {
        let mut reachable = lock(&self.0);
        match inbox.0 {
            Reach::Local(recipient) => {
                reachable.remote.remove(&rider);
                reachable.local.insert(rider, recipient);
            }
            Reach::Remote(_, node) => {
                reachable.local.remove(&rider);
                reachable.remote.insert(rider, node);
            }
        }
    }

    pub(crate) fn remove(&self, rider: Uuid) {
        let mut reachable = lock(&self.0);
        reachable.local.remove(&rider);
        reachable.remote.remove(&rider);
    }

    /// Forgets every rider of other nodes; returns them.
    pub(crate) fn remove_remote(&self) -> Vec<Uuid> {
        lock(&self.0).remote.drain().map(|(id, _)| id).collect()
    }

    /// Whether the rider's socket is on this node.
    pub(crate) fn is_local(&self, rider: Uuid) -> bool {
        lock(&self.0).local.contains_key(&rider)
    }
}
