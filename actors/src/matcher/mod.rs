//! The matcher: which free rider is offered which waiting order.
//!
//! [`Matcher`] is a handle routing to shards, one per coarse H3 region ([`router`]). Each
//! [`Shard`] actor owns the picture of supply (free riders of its region in an H3
//! [`index::FreeIndex`]) and demand (its region's orders in `dispatching` without an open
//! offer). Every batch window it builds the cost matrix of estimated pickup times between
//! waiting orders and the free riders near them (its own and, near a border, the
//! neighbouring regions') and solves it with the configured [`assign::Strategy`]; each
//! chosen rider gets an offer that expires after the offer timeout. A rider who refuses or lets an offer
//! expire is never offered that order again; the order waits for the next window. One
//! order per rider: a rider holding an offer or an order is not free.
//!
//! Accepting is two steps so the order actor stays the authority: the matcher closes the
//! offer and hands back the order ([`Answer`]); the rider's session asks the order actor to
//! assign and reports the outcome ([`AssignOutcome`], for the metric). Whether the rider is
//! free again is never the matcher's guess: the session reports the rider's phase
//! ([`RiderPhaseChanged`]) after every change, and a shard's free riders are read from it.
//!
//! Files: [`router`] (the handle), [`shard`] (the actor), [`messages`] (what it hears and
//! says), [`regions`] (shard keys and border search), [`index`] (the free index),
//! [`assign`] (the assignment strategies), [`config`].

pub mod assign;
pub mod config;
pub mod index;
pub mod messages;
pub mod regions;
pub mod router;
pub mod shard;

pub use config::MatcherConfig;
pub use messages::{
    Answer, AnswerError, Answered, AssignOutcome, DispatchOrder, ManualOffer, ManualOfferError,
    MatcherRoute, MatcherStats, Offer, OfferGone, OrderCancelled, RemoteRiders, RiderGone,
    RiderInbox, RiderMoved, RiderPhaseChanged, RiderReport, SetPaused, Stats, ToRider, Withdraw,
};
pub use router::Matcher;
pub use shard::CANDIDATES_PER_ORDER;
