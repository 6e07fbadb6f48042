//! This node's role in dispatch (issue 16): whether it holds the `dispatch` lease now, and
//! which node does. Written by the lease loop (`super::dispatch`), read by everything that
//! must decide whether to act here or forward (`super::link`, the fenced journal).

use std::sync::{Arc, PoisonError, RwLock};

use crate::store::leases::Lease;

/// This node's role: whether it holds the dispatch lease, and who does. Cheap to clone.
#[derive(Clone)]
pub struct Seat {
    inner: Arc<SeatInner>,
}

struct SeatInner {
    node_id: String,
    lease: RwLock<Option<Lease>>,
    holder: RwLock<Option<String>>,
}

impl Seat {
    pub fn new(node_id: &str) -> Self {
        Self {
            inner: Arc::new(SeatInner {
                node_id: node_id.to_owned(),
                lease: RwLock::new(None),
                holder: RwLock::new(None),
            }),
        }
    }

    /// Whether this node runs dispatch now.
    pub fn is_local(&self) -> bool {
        self.lease().is_some()
    }

    /// The lease this node holds, if it does.
    pub fn lease(&self) -> Option<Lease> {
        self.inner
            .lease
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The node running dispatch, as last read.
    pub fn holder(&self) -> Option<String> {
        self.inner
            .holder
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn node_id(&self) -> &str {
        &self.inner.node_id
    }

    pub(super) fn set_lease(&self, lease: Option<Lease>) {
        *self
            .inner
            .lease
            .write()
            .unwrap_or_else(PoisonError::into_inner) = lease;
    }

    /// Records the holder; true if it changed.
    pub(super) fn set_holder(&self, holder: Option<String>) -> bool {
        let mut current = self
            .inner
            .holder
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let changed = *current != holder;
        *current = holder;
        changed
    }
}
