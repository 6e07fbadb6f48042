//! The fleet view: the picture of every rider that `GET /api/v1/riders` and the ops views
//! read without asking each actor. Each rider's session writes its own rider's view.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use uuid::Uuid;

use crate::lock;
use crate::model::RiderState;

/// What the fleet knows about one rider.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RiderView {
    pub id: Uuid,
    /// A socket is connected.
    pub online: bool,
    pub available: bool,
    pub state: RiderState,
    pub last_location: Option<LastLocation>,
    pub active_order_id: Option<Uuid>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
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

/// Cheap to clone; shared by sessions and the HTTP layer.
#[derive(Clone, Default)]
pub struct Fleet {
    views: Arc<Mutex<HashMap<Uuid, RiderView>>>,
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

    pub fn view(&self, rider: Uuid) -> Option<RiderView> {
        lock(&self.views).get(&rider).cloned()
    }

    /// Every rider the fleet has seen since start.
    pub fn views(&self) -> Vec<RiderView> {
        lock(&self.views).values().cloned().collect()
    }

    /// Riders with a connected socket.
    pub fn online(&self) -> usize {
        lock(&self.views).values().filter(|v| v.online).count()
    }
}
