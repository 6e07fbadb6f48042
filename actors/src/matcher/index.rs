//! The index of free riders by H3 cell, and candidate search around a point.
//!
//! Riders are bucketed by their cell at the index resolution (9 by default: edges of about
//! 174 m). A fix that stays in its cell only overwrites the position; only a cell change
//! moves the rider between buckets. Candidate search walks grid-disk rings outwards from
//! the pickup's cell until the ring is beyond the search radius, so a dense city answers
//! from the first few rings.

use std::collections::HashMap;

use h3o::{CellIndex, Resolution};
use uuid::Uuid;

use crate::geo::{disk_k, Point};

/// A rider's last known position.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Position {
    pub at: Point,
    /// Epoch milliseconds of the fix.
    pub ts_ms: i64,
}

/// Free riders by cell.
#[derive(Debug)]
pub struct FreeIndex {
    res: Resolution,
    cells: HashMap<CellIndex, Vec<Uuid>>,
    riders: HashMap<Uuid, (CellIndex, Position)>,
}

impl FreeIndex {
    pub fn new(res: Resolution) -> Self {
        Self {
            res,
            cells: HashMap::new(),
            riders: HashMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.riders.len()
    }

    pub fn is_empty(&self) -> bool {
        self.riders.is_empty()
    }

    pub fn contains(&self, rider: Uuid) -> bool {
        self.riders.contains_key(&rider)
    }

    pub fn position(&self, rider: Uuid) -> Option<Position> {
        self.riders.get(&rider).map(|(_, p)| *p)
    }

    /// Adds a rider or updates their position; returns whether the cell changed.
    pub fn upsert(&mut self, rider: Uuid, position: Position) -> bool {
        let cell = position.at.cell(self.res);
        match self.riders.get_mut(&rider) {
            Some((old, pos)) if *old == cell => {
                *pos = position;
                false
            }
            Some(_) => {
                self.remove(rider);
                self.insert(rider, cell, position);
                true
            }
            None => {
                self.insert(rider, cell, position);
                true
            }
        }
    }

    fn insert(&mut self, rider: Uuid, cell: CellIndex, position: Position) {
        self.cells.entry(cell).or_default().push(rider);
        self.riders.insert(rider, (cell, position));
    }

    pub fn remove(&mut self, rider: Uuid) {
        if let Some((cell, _)) = self.riders.remove(&rider) {
            if let Some(list) = self.cells.get_mut(&cell) {
                list.retain(|r| *r != rider);
                if list.is_empty() {
                    self.cells.remove(&cell);
                }
            }
        }
    }

    /// Up to `limit` riders within `radius_m` of `origin` whose fix is at least
    /// `min_ts_ms`, with their straight-line distance, nearest first.
    ///
    /// Walks ring by ring and stops once `limit` riders are found and the next ring cannot
    /// hold anyone nearer than the farthest of them, so a dense city answers from the
    /// first rings whatever the fleet size.
    pub fn candidates(
        &self,
        origin: Point,
        radius_m: f64,
        min_ts_ms: i64,
        limit: usize,
    ) -> Vec<(Uuid, Position, f64)> {
        let mut out: Vec<(Uuid, Position, f64)> = Vec::new();
        let max_k = disk_k(radius_m, self.res);
        let center = origin.cell(self.res);
        // A cell in ring k is at least this far from any point of the centre cell.
        let spacing = 3f64.sqrt() * self.res.edge_length_m() * 0.7;
        let visit = |cell: CellIndex, out: &mut Vec<(Uuid, Position, f64)>| {
            let Some(riders) = self.cells.get(&cell) else {
                return;
            };
            for rider in riders {
                let (_, pos) = self.riders[rider];
                if pos.ts_ms < min_ts_ms {
                    continue;
                }
                let d = origin.distance_m(pos.at);
                if d <= radius_m {
                    out.push((*rider, pos, d));
                }
            }
        };
        for k in 0..=max_k {
            let ring: Option<Vec<CellIndex>> = center.grid_ring_fast(k).collect();
            let Some(ring) = ring else {
                // A pentagon nearby: fall back to the safe (slower) disk walk.
                out.clear();
                for (cell, _) in center.grid_disk_distances::<Vec<_>>(max_k) {
                    visit(cell, &mut out);
                }
                break;
            };
            for cell in ring {
                visit(cell, &mut out);
            }
            if out.len() >= limit {
                out.sort_by(|a, b| a.2.total_cmp(&b.2).then(a.0.cmp(&b.0)));
                let kth = out[limit - 1].2;
                if f64::from(k) * spacing > kth {
                    break;
                }
            }
        }
        out.sort_by(|a, b| a.2.total_cmp(&b.2).then(a.0.cmp(&b.0)));
        out.truncate(limit);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(lat: f64, lng: f64, ts_ms: i64) -> Position {
        Position {
            at: Point::new(lat, lng).expect("valid"),
            ts_ms,
        }
    }

    #[test]
    fn same_cell_moves_touch_no_bucket() {
        let mut index = FreeIndex::new(Resolution::Nine);
        let r = Uuid::now_v7();
        assert!(index.upsert(r, pos(12.97160, 77.59460, 1)));
        assert!(
            !index.upsert(r, pos(12.97161, 77.59461, 2)),
            "a metre away: same cell"
        );
        assert!(
            index.upsert(r, pos(12.98, 77.60, 3)),
            "a kilometre away: new cell"
        );
        assert_eq!(index.len(), 1);
        assert_eq!(index.position(r).map(|p| p.ts_ms), Some(3));
    }

    #[test]
    fn candidates_are_near_fresh_and_sorted() {
        let mut index = FreeIndex::new(Resolution::Nine);
        let (near, mid, far, stale) = (
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
        );
        index.upsert(near, pos(12.9720, 77.5946, 100));
        index.upsert(mid, pos(12.9800, 77.5946, 100));
        index.upsert(far, pos(13.1000, 77.5946, 100));
        index.upsert(stale, pos(12.9717, 77.5946, 1));
        let origin = Point::new(12.9716, 77.5946).expect("valid");
        let found: Vec<Uuid> = index
            .candidates(origin, 5_000.0, 50, 10)
            .into_iter()
            .map(|c| c.0)
            .collect();
        assert_eq!(found, vec![near, mid]);
        index.remove(near);
        let found: Vec<Uuid> = index
            .candidates(origin, 5_000.0, 50, 10)
            .into_iter()
            .map(|c| c.0)
            .collect();
        assert_eq!(found, vec![mid]);
    }
}

#[cfg(test)]
mod limit_tests {
    use super::*;

    #[test]
    fn a_limit_keeps_the_nearest() {
        let mut index = FreeIndex::new(Resolution::Nine);
        let origin = Point::new(12.9716, 77.5946).expect("valid");
        let mut ids = Vec::new();
        for i in 0..40 {
            let id = Uuid::now_v7();
            let lat = 12.9716 + f64::from(i) * 0.001; // 111 m apart, northwards
            index.upsert(
                id,
                Position {
                    at: Point::new(lat, 77.5946).expect("valid"),
                    ts_ms: 1,
                },
            );
            ids.push(id);
        }
        let found: Vec<Uuid> = index
            .candidates(origin, 5_000.0, 0, 5)
            .into_iter()
            .map(|c| c.0)
            .collect();
        assert_eq!(found, ids[..5].to_vec());
        assert_eq!(index.candidates(origin, 5_000.0, 0, 100).len(), 40);
    }
}
