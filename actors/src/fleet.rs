//! The fleet view: the picture of every rider that `GET /api/v1/riders` and the ops views
//! read without asking each actor. Each rider's session writes its own rider's view; in a
//! cluster, the views other nodes published are kept beside them ([`Fleet::set_others`])
//! and every reader sees both, merged by [`merged`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::lock;
use crate::model::RiderState;

/// What the fleet knows about one rider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RiderView {
    pub id: Uuid,
    /// A socket is connected.
    pub online: bool,
    pub available: bool,
    pub state: RiderState,
    pub last_location: Option<LastLocation>,
    pub active_order_id: Option<Uuid>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LastLocation {
    pub lat: f64,
    pub lng: f64,
    pub ts: i64,
}

impl RiderView {
    pub fn new(id: Uuid) -> Self {
        Self {
            id,
            online: false,
            available: false,
            state: RiderState::Offline,
            last_location: None,
            active_order_id: None,
        }
    }
}

/// One rider seen by two nodes (a socket that moved, the old one not yet gone): the view
/// of the node with the socket; if both or neither have one, the one with the newer fix.
pub fn merged(a: &RiderView, b: &RiderView) -> RiderView {
    let newer = |v: &RiderView| v.last_location.map_or(i64::MIN, |l| l.ts);
    let pick = match (a.online, b.online) {
        (true, false) => a,
        (false, true) => b,
        _ if newer(b) > newer(a) => b,
        _ => a,
    };
    pick.clone()
}

/// Cheap to clone; shared by sessions and the HTTP layer.
#[derive(Clone, Default)]
pub struct Fleet {
    views: Arc<Mutex<HashMap<Uuid, RiderView>>>,
    /// Views published by the other nodes of a cluster, replaced whole on each refresh.
    others: Arc<Mutex<Arc<HashMap<Uuid, RiderView>>>>,
}

impl Fleet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Changes the rider's view.
    pub fn update(&self, rider: Uuid, f: impl FnOnce(&mut RiderView)) {
        let mut views = lock(&self.views);
        f(views.entry(rider).or_insert_with(|| RiderView::new(rider)));
    }

    /// The rider as this node and the other nodes know them.
    pub fn view(&self, rider: Uuid) -> Option<RiderView> {
        let local = lock(&self.views).get(&rider).cloned();
        let other = lock(&self.others).get(&rider).cloned();
        match (local, other) {
            (Some(a), Some(b)) => Some(merged(&a, &b)),
            (a, b) => a.or(b),
        }
    }

    /// The rider as the other nodes of a cluster last reported him.
    pub fn elsewhere(&self, rider: Uuid) -> Option<RiderView> {
        lock(&self.others).get(&rider).cloned()
    }

    /// Every rider this node has seen since start, and every rider the other nodes report.
    pub fn views(&self) -> Vec<RiderView> {
        let others = lock(&self.others).clone();
        let mut all: HashMap<Uuid, RiderView> = (*others).clone();
        for (id, view) in lock(&self.views).iter() {
            let pick = match all.get(id) {
                Some(other) => merged(view, other),
                None => view.clone(),
            };
            all.insert(*id, pick);
        }
        all.into_values().collect()
    }

    /// The views of this node's own riders (what it publishes to the others).
    pub fn local_views(&self) -> Vec<RiderView> {
        lock(&self.views).values().cloned().collect()
    }

    /// Replaces what the other nodes report.
    pub fn set_others(&self, others: HashMap<Uuid, RiderView>) {
        *lock(&self.others) = Arc::new(others);
    }

    /// Whether some rider, on this node or another, carries `order` now: in a cluster the
    /// order's actor may live on another node, and this is how a rider's session tells
    /// someone else's order from no order at all without asking it.
    pub fn carrying(&self, order: Uuid) -> bool {
        let carries = |v: &RiderView| v.active_order_id == Some(order);
        lock(&self.views).values().any(carries) || lock(&self.others).values().any(carries)
    }

    /// Riders with a socket connected to this node.
    pub fn online(&self) -> usize {
        lock(&self.views).values().filter(|v| v.online).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(online: bool, ts: Option<i64>) -> RiderView {
        RiderView {
            online,
            last_location: ts.map(|ts| LastLocation {
                lat: 1.0,
                lng: 2.0,
                ts,
            }),
            ..RiderView::new(Uuid::nil())
        }
    }

    #[test]
    fn an_order_is_carried_by_a_rider_here_or_on_another_node() {
        let fleet = Fleet::new();
        let (here, there, nobody) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        fleet.update(Uuid::from_u128(10), |v| v.active_order_id = Some(here));
        let other = RiderView {
            active_order_id: Some(there),
            ..RiderView::new(Uuid::from_u128(11))
        };
        fleet.set_others(HashMap::from([(other.id, other)]));
        assert!(fleet.carrying(here));
        assert!(fleet.carrying(there));
        assert!(!fleet.carrying(nobody));
    }

    #[test]
    fn the_connected_view_wins_then_the_newer_fix() {
        let (on, off) = (view(true, Some(1)), view(false, Some(9)));
        assert_eq!(merged(&on, &off), on);
        assert_eq!(merged(&off, &on), on);
        let (old, new) = (view(true, Some(1)), view(true, Some(2)));
        assert_eq!(merged(&old, &new), new);
        assert_eq!(merged(&new, &old), new);
        assert_eq!(
            merged(&view(false, None), &view(false, Some(5))),
            view(false, Some(5))
        );
    }

    #[test]
    fn readers_see_this_nodes_riders_and_the_others() {
        let fleet = Fleet::new();
        let (here, there, both) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        fleet.update(here, |v| v.online = true);
        fleet.update(both, |v| v.online = false);
        let remote = |id, online| RiderView {
            online,
            ..RiderView::new(id)
        };
        fleet.set_others(HashMap::from([
            (there, remote(there, true)),
            (both, remote(both, true)),
        ]));
        let mut ids: Vec<Uuid> = fleet.views().iter().map(|v| v.id).collect();
        ids.sort();
        assert_eq!(ids, vec![here, there, both]);
        assert_eq!(fleet.view(both).map(|v| v.online), Some(true));
        assert_eq!(fleet.online(), 1, "only this node's sockets");
        assert_eq!(fleet.local_views().len(), 2);
    }
}
