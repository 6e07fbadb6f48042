//! The fleet registry: rider id → live session, and the picture of every rider that
//! `GET /api/v1/riders` and the ops views read without asking each actor.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use actix::Addr;
use serde::Serialize;
use uuid::Uuid;

use crate::lock;
use crate::rider::RiderSession;

/// What the fleet knows about one rider.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RiderView {
    pub id: Uuid,
    /// A socket is connected.
    pub online: bool,
    pub available: bool,
    pub state: crate::model::RiderPhase,
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
            state: crate::model::RiderPhase::Offline,
            last_location: None,
            active_order_id: None,
        }
    }
}

#[derive(Default)]
struct Inner {
    sessions: Mutex<HashMap<Uuid, Addr<RiderSession>>>,
    views: Mutex<HashMap<Uuid, RiderView>>,
    /// Riders a matcher shard holds (offered, or on the delivery they accepted).
    claims: Mutex<HashSet<Uuid>>,
}

/// Cheap to clone; shared by sessions, the matcher and the HTTP layer.
#[derive(Clone, Default)]
pub struct Fleet {
    inner: Arc<Inner>,
}

impl Fleet {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn session(&self, rider: Uuid) -> Option<Addr<RiderSession>> {
        lock(&self.inner.sessions).get(&rider).cloned()
    }

    /// The rider's session, or the one `start` makes (atomically: two sockets connecting
    /// at once share one session).
    pub fn session_or_start(
        &self,
        rider: Uuid,
        start: impl FnOnce() -> Addr<RiderSession>,
    ) -> Addr<RiderSession> {
        let mut sessions = lock(&self.inner.sessions);
        sessions.entry(rider).or_insert_with(start).clone()
    }

    pub fn remove_session(&self, rider: Uuid) {
        lock(&self.inner.sessions).remove(&rider);
    }

    /// Changes the rider's view.
    pub fn update(&self, rider: Uuid, f: impl FnOnce(&mut RiderView)) {
        let mut views = lock(&self.inner.views);
        f(views.entry(rider).or_insert_with(|| RiderView::new(rider)));
    }

    pub fn view(&self, rider: Uuid) -> Option<RiderView> {
        lock(&self.inner.views).get(&rider).cloned()
    }

    /// Every rider the fleet has seen since start.
    pub fn views(&self) -> Vec<RiderView> {
        lock(&self.inner.views).values().cloned().collect()
    }

    /// Claims the rider for an offer; false if someone (another matcher shard) holds them.
    pub fn try_claim(&self, rider: Uuid) -> bool {
        lock(&self.inner.claims).insert(rider)
    }

    pub fn is_claimed(&self, rider: Uuid) -> bool {
        lock(&self.inner.claims).contains(&rider)
    }

    pub fn release(&self, rider: Uuid) {
        lock(&self.inner.claims).remove(&rider);
    }

    /// Riders with a connected socket.
    pub fn online(&self) -> usize {
        lock(&self.inner.views)
            .values()
            .filter(|v| v.online)
            .count()
    }
}
