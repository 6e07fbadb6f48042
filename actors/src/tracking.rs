//! Watchers of orders: fan-out of rider positions and statuses to tracking sockets, with
//! conflation.
//!
//! In a cluster a [`Relay`] carries what this node's riders report ([`Watchers::rider_location`],
//! [`Watchers::rider_status`]) to watchers on other nodes, and hears when this node starts
//! and stops watching an order; frames from other nodes come back in through
//! [`Watchers::location`] and [`Watchers::status`], which only fan out locally.
//!
//! Each watcher has a slot: the latest rider position (a newer one replaces an unsent
//! one) and a short queue of status frames. Publishing fills the slot and wakes the watcher
//! only if it is not already awake, so a watcher that never reads holds one position and a
//! few statuses, never a backlog, and never slows the rider or the other watchers.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};

use actix::prelude::*;
use uuid::Uuid;

use crate::lock;
/// The frames a slot holds; declared with the rest of the wire protocol.
pub use crate::protocol::track::TrackFrame;

/// Wakes a tracking socket: something is waiting in its slot.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct Wake;

/// Most status frames kept for a watcher that does not read (an order has at most five).
const MAX_STATUSES: usize = 8;

/// One watcher's mailbox of record.
pub struct Slot {
    location: Mutex<Option<TrackFrame>>,
    statuses: Mutex<VecDeque<TrackFrame>>,
    awake: std::sync::atomic::AtomicBool,
    wake: Recipient<Wake>,
}

impl Slot {
    pub fn new(wake: Recipient<Wake>) -> Arc<Self> {
        Arc::new(Self {
            location: Mutex::new(None),
            statuses: Mutex::new(VecDeque::new()),
            awake: std::sync::atomic::AtomicBool::new(false),
            wake,
        })
    }

    fn poke(&self) {
        if !self.awake.swap(true, std::sync::atomic::Ordering::AcqRel) {
            self.wake.do_send(Wake);
        }
    }

    /// Everything waiting, statuses first; the watcher calls this when woken.
    pub fn drain(&self) -> Vec<TrackFrame> {
        self.awake
            .store(false, std::sync::atomic::Ordering::Release);
        let mut out: Vec<TrackFrame> = lock(&self.statuses).drain(..).collect();
        if let Some(loc) = lock(&self.location).take() {
            out.insert(0, loc);
        }
        out
    }
}

/// An order's watchers: (watcher id, slot). Shared, never changed in place: adding or
/// removing a watcher swaps in a new list, so a fix takes the list with one reference
/// count instead of copying it.
type Watching = Arc<[(Uuid, Arc<Slot>)]>;

/// Locks over the order → watchers map; orders are spread over them by id, so fixes of
/// different orders rarely meet on one lock.
const SHARDS: usize = 16;

/// Carries tracking frames between nodes (a cluster); see the module documentation.
pub trait Relay: Send + Sync {
    /// A frame from a rider on this node, for the order's watchers elsewhere. Must not
    /// block: called on the rider's fix path.
    fn outbound(&self, order: Uuid, frame: &TrackFrame);
    /// This node now has watchers of `order` (`true`), or no longer has any (`false`).
    fn watching(&self, order: Uuid, watched: bool);
}

/// Order id → its watchers. Cheap to clone.
#[derive(Clone)]
pub struct Watchers {
    shards: Arc<[Mutex<HashMap<Uuid, Watching>>; SHARDS]>,
    relay: Arc<OnceLock<Arc<dyn Relay>>>,
}

impl Default for Watchers {
    fn default() -> Self {
        Self {
            shards: Arc::new(std::array::from_fn(|_| Mutex::new(HashMap::new()))),
            relay: Arc::new(OnceLock::new()),
        }
    }
}

impl Watchers {
    pub fn new() -> Self {
        Self::default()
    }

    fn shard(&self, order: Uuid) -> &Mutex<HashMap<Uuid, Watching>> {
        // v7 ids end in random bits.
        let index = (order.as_u128() as usize) % SHARDS;
        &self.shards[index]
    }

    /// Connects this node's watchers to the other nodes' (once, at start-up).
    pub fn set_relay(&self, relay: Arc<dyn Relay>) {
        let _ = self.relay.set(relay);
    }

    pub fn add(&self, order: Uuid, watcher: Uuid, slot: Arc<Slot>) {
        let mut map = lock(self.shard(order));
        let list = map.entry(order).or_insert_with(|| Arc::from(Vec::new()));
        let first = list.is_empty();
        let mut next = list.to_vec();
        next.push((watcher, slot));
        *list = next.into();
        drop(map);
        if let (true, Some(relay)) = (first, self.relay.get()) {
            relay.watching(order, true);
        }
    }

    pub fn remove(&self, order: Uuid, watcher: Uuid) {
        let mut map = lock(self.shard(order));
        let mut last = false;
        if let Some(list) = map.get_mut(&order) {
            let next: Vec<_> = list
                .iter()
                .filter(|(w, _)| *w != watcher)
                .cloned()
                .collect();
            if next.is_empty() {
                map.remove(&order);
                last = true;
            } else {
                *list = next.into();
            }
        }
        drop(map);
        if let (true, Some(relay)) = (last, self.relay.get()) {
            relay.watching(order, false);
        }
    }

    /// The orders this node watches now (a relay resubscribing after a reconnect).
    pub fn watched(&self) -> Vec<Uuid> {
        self.shards
            .iter()
            .flat_map(|shard| lock(shard).keys().copied().collect::<Vec<_>>())
            .collect()
    }

    /// A position from a rider on this node: to local watchers and, in a cluster, out.
    pub fn rider_location(&self, order: Uuid, frame: TrackFrame) {
        if let Some(relay) = self.relay.get() {
            relay.outbound(order, &frame);
        }
        self.location(order, frame);
    }

    /// A frame a rider on this node caused (`arriving`): to local watchers and out.
    pub fn rider_status(&self, order: Uuid, frame: TrackFrame) {
        if let Some(relay) = self.relay.get() {
            relay.outbound(order, &frame);
        }
        self.status(order, frame);
    }

    fn slots(&self, order: Uuid) -> Watching {
        lock(self.shard(order))
            .get(&order)
            .cloned()
            .unwrap_or_else(|| Arc::from(Vec::new()))
    }

    /// A new rider position: replaces any unsent one.
    pub fn location(&self, order: Uuid, frame: TrackFrame) {
        for (_, slot) in self.slots(order).iter() {
            *lock(&slot.location) = Some(frame.clone());
            slot.poke();
        }
    }

    /// A status change (or `arriving`): queued in order.
    pub fn status(&self, order: Uuid, frame: TrackFrame) {
        for (_, slot) in self.slots(order).iter() {
            let mut q = lock(&slot.statuses);
            if q.len() >= MAX_STATUSES {
                q.pop_front();
            }
            q.push_back(frame.clone());
            drop(q);
            slot.poke();
        }
    }

    /// Watchers of `order` (tests, metrics).
    pub fn count(&self, order: Uuid) -> usize {
        lock(self.shard(order)).get(&order).map_or(0, |l| l.len())
    }
}
