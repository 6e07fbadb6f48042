//! This node's part in dispatch (issue 16): the region leases it holds now, and which node
//! holds each region's lease. Written by the lease loop (`super::dispatch`), read by
//! everything that must decide whether to act here or forward (`super::link`, the fenced
//! journal).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, PoisonError, RwLock};

use h3o::CellIndex;

use crate::store::leases::Lease;

/// This node's leases and every region's holder. Cheap to clone.
#[derive(Clone)]
pub struct Seat {
    inner: Arc<SeatInner>,
}

struct SeatInner {
    node_id: String,
    leases: RwLock<HashMap<CellIndex, Lease>>,
    holders: RwLock<BTreeMap<CellIndex, String>>,
}

/// The lease name of an owner region.
pub fn lease_name(region: CellIndex) -> String {
    format!("region:{region}")
}

/// The region a lease name stands for (`None` for other leases).
pub fn region_of_lease(name: &str) -> Option<CellIndex> {
    name.strip_prefix("region:")?.parse().ok()
}

impl Seat {
    pub fn new(node_id: &str) -> Self {
        Self {
            inner: Arc::new(SeatInner {
                node_id: node_id.to_owned(),
                leases: RwLock::new(HashMap::new()),
                holders: RwLock::new(BTreeMap::new()),
            }),
        }
    }

    /// Whether this node owns a region now.
    pub fn is_local(&self) -> bool {
        !self
            .inner
            .leases
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
    }

    /// The lease of `region`, if this node holds it.
    pub fn lease(&self, region: CellIndex) -> Option<Lease> {
        self.inner
            .leases
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&region)
            .cloned()
    }

    /// The regions this node holds, with their leases.
    pub fn leases(&self) -> Vec<(CellIndex, Lease)> {
        let mut held: Vec<(CellIndex, Lease)> = self
            .inner
            .leases
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(r, l)| (*r, l.clone()))
            .collect();
        held.sort_unstable_by_key(|(r, _)| *r);
        held
    }

    /// The node holding `region`, as last read (this node for a region it holds).
    pub fn holder(&self, region: CellIndex) -> Option<String> {
        if self.lease(region).is_some() {
            return Some(self.inner.node_id.clone());
        }
        self.inner
            .holders
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&region)
            .cloned()
    }

    /// Every region with a holder, as last read.
    pub fn holders(&self) -> BTreeMap<CellIndex, String> {
        self.inner
            .holders
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The other nodes holding a region, as last read.
    pub fn other_owners(&self) -> Vec<String> {
        let owners: BTreeSet<String> = self
            .inner
            .holders
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .filter(|n| **n != self.inner.node_id)
            .cloned()
            .collect();
        owners.into_iter().collect()
    }

    pub fn node_id(&self) -> &str {
        &self.inner.node_id
    }

    pub(super) fn add_lease(&self, region: CellIndex, lease: Lease) {
        self.inner
            .leases
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(region, lease);
        self.inner
            .holders
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(region, self.inner.node_id.clone());
    }

    pub(super) fn remove_lease(&self, region: CellIndex) -> Option<Lease> {
        let lease = self
            .inner
            .leases
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&region);
        let mut holders = self
            .inner
            .holders
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if holders.get(&region) == Some(&self.inner.node_id) {
            holders.remove(&region);
        }
        lease
    }

    /// Records every region's holder as read; true if a holder changed.
    pub(super) fn set_holders(&self, read: BTreeMap<CellIndex, String>) -> bool {
        let mut current = self
            .inner
            .holders
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let changed = *current != read;
        *current = read;
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(lat: f64, lng: f64) -> CellIndex {
        h3o::LatLng::new(lat, lng)
            .expect("point")
            .to_cell(h3o::Resolution::Five)
    }

    #[test]
    fn a_lease_name_names_its_region() {
        let region = cell(12.97, 77.59);
        assert_eq!(region_of_lease(&lease_name(region)), Some(region));
        assert_eq!(region_of_lease("dispatch"), None);
        assert_eq!(region_of_lease("region:nonsense"), None);
    }

    #[test]
    fn other_owners_leave_this_node_out() {
        let seat = Seat::new("a");
        let (r1, r2, r3) = (cell(12.97, 77.59), cell(19.07, 72.87), cell(28.61, 77.2));
        seat.set_holders(BTreeMap::from([
            (r1, "a".to_owned()),
            (r2, "b".to_owned()),
            (r3, "b".to_owned()),
        ]));
        assert_eq!(seat.other_owners(), vec!["b".to_owned()]);
        assert!(!seat.is_local());
        seat.add_lease(
            r1,
            Lease {
                name: lease_name(r1),
                token: 3,
            },
        );
        assert!(seat.is_local());
        assert_eq!(seat.holder(r1).as_deref(), Some("a"));
        assert!(seat.remove_lease(r1).is_some());
        assert_eq!(seat.holder(r1), None);
    }
}
