//! Watchers of orders: fan-out of rider positions and statuses to tracking sockets, with
//! conflation.
//!
//! Each watcher has a slot: the latest rider position (a newer one replaces an unsent
//! one) and a short queue of status frames. Publishing fills the slot and wakes the watcher
//! only if it is not already awake, so a watcher that never reads holds one position and a
//! few statuses, never a backlog, and never slows the rider or the other watchers.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

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

/// Order id → its watchers. Cheap to clone.
#[derive(Clone)]
pub struct Watchers {
    shards: Arc<[Mutex<HashMap<Uuid, Watching>>; SHARDS]>,
}

impl Default for Watchers {
    fn default() -> Self {
        Self {
            shards: Arc::new(std::array::from_fn(|_| Mutex::new(HashMap::new()))),
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

    pub fn add(&self, order: Uuid, watcher: Uuid, slot: Arc<Slot>) {
        let mut map = lock(self.shard(order));
        let list = map.entry(order).or_insert_with(|| Arc::from(Vec::new()));
        let mut next = list.to_vec();
        next.push((watcher, slot));
        *list = next.into();
    }

    pub fn remove(&self, order: Uuid, watcher: Uuid) {
        let mut map = lock(self.shard(order));
        if let Some(list) = map.get_mut(&order) {
            let next: Vec<_> = list
                .iter()
                .filter(|(w, _)| *w != watcher)
                .cloned()
                .collect();
            if next.is_empty() {
                map.remove(&order);
            } else {
                *list = next.into();
            }
        }
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
