//! An in-memory H3 index of fixed places (pharmacies) for "what is near here" queries.
//!
//! Places are bucketed by their resolution-7 cell (edges of about 1.4 km), so a 5 km query
//! looks at a few dozen buckets and a 50 km one at about two thousand, then keeps the
//! candidates whose exact haversine distance is within the radius, nearest first.

use std::collections::HashMap;

use h3o::{CellIndex, Resolution};
use uuid::Uuid;

use crate::geo::{disk_k, Point};

/// Resolution of the buckets.
pub const BUCKET_RES: Resolution = Resolution::Seven;

/// Places by id and by bucket.
#[derive(Debug, Default, Clone)]
pub struct PlaceIndex {
    points: HashMap<Uuid, Point>,
    buckets: HashMap<CellIndex, Vec<Uuid>>,
}

impl PlaceIndex {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    pub fn get(&self, id: Uuid) -> Option<Point> {
        self.points.get(&id).copied()
    }

    /// Adds or moves a place.
    pub fn insert(&mut self, id: Uuid, at: Point) {
        self.remove(id);
        self.points.insert(id, at);
        self.buckets
            .entry(at.cell(BUCKET_RES))
            .or_default()
            .push(id);
    }

    pub fn remove(&mut self, id: Uuid) {
        if let Some(old) = self.points.remove(&id) {
            let cell = old.cell(BUCKET_RES);
            if let Some(ids) = self.buckets.get_mut(&cell) {
                ids.retain(|x| *x != id);
                if ids.is_empty() {
                    self.buckets.remove(&cell);
                }
            }
        }
    }

    /// Places within `radius_m` of `origin`, nearest first (ties by id), with distances.
    pub fn nearby(&self, origin: Point, radius_m: f64) -> Vec<(Uuid, f64)> {
        let k = disk_k(radius_m, BUCKET_RES);
        let mut found: Vec<(Uuid, f64)> = origin
            .cell(BUCKET_RES)
            .grid_disk::<Vec<_>>(k)
            .into_iter()
            .filter_map(|cell| self.buckets.get(&cell))
            .flatten()
            .filter_map(|id| {
                let d = origin.distance_m(self.points[id]);
                (d <= radius_m).then_some((*id, d))
            })
            .collect();
        found.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(lat: f64, lng: f64) -> Point {
        Point::new(lat, lng).expect("valid")
    }

    #[test]
    fn nearest_first_within_the_radius() {
        let mut index = PlaceIndex::new();
        let (a, b, c, far) = (
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
        );
        let origin = p(12.9716, 77.5946);
        index.insert(a, p(12.9816, 77.5946)); // ~1.1 km
        index.insert(b, p(12.9736, 77.5946)); // ~0.2 km
        index.insert(c, p(13.0116, 77.5946)); // ~4.4 km
        index.insert(far, p(13.2716, 77.5946)); // ~33 km
        let ids: Vec<Uuid> = index
            .nearby(origin, 5_000.0)
            .into_iter()
            .map(|x| x.0)
            .collect();
        assert_eq!(ids, vec![b, a, c]);
        assert_eq!(index.nearby(origin, 50_000.0).len(), 4);
        assert!(index.nearby(origin, 100.0).is_empty());
    }

    #[test]
    fn moving_and_removing_places() {
        let mut index = PlaceIndex::new();
        let a = Uuid::now_v7();
        index.insert(a, p(0.0, 0.0));
        index.insert(a, p(10.0, 10.0));
        assert!(index.nearby(p(0.0, 0.0), 1_000.0).is_empty());
        assert_eq!(index.nearby(p(10.0, 10.0), 1_000.0).len(), 1);
        index.remove(a);
        assert!(index.is_empty());
        assert!(index.nearby(p(10.0, 10.0), 1_000.0).is_empty());
    }
}
