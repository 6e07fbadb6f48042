//! Which regions a node takes and which it gives back (issue 16): the pure rule the lease
//! loop (`super::dispatch`) follows every tick, so that the regions spread over the live
//! nodes without a coordinator.
//!
//! Every node reads the same things — the regions (from the pharmacies), each region's
//! holder (the leases) and the live nodes (the membership) — and applies the same rule:
//! - a fair share is ⌈regions ÷ live nodes⌉; a node holding more gives one back (the
//!   highest) per tick, a node holding less may take free regions up to it;
//! - a free region is taken at once by the live node preferred for it (fewest regions,
//!   then started first, then by id), and by any other node with room once it has stayed
//!   free for a while (the preferred node may be stuck), so the holder is predictable
//!   when all is well and a region is never left without one. The lease decides races.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use h3o::CellIndex;

/// A live node as the membership shows it.
#[derive(Debug, Clone)]
pub struct Member {
    pub id: String,
    pub started_at: DateTime<Utc>,
}

/// What one node does this tick.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Free regions to try, in order.
    pub take: Vec<CellIndex>,
    /// A region this node holds beyond its share.
    pub give_back: Option<CellIndex>,
}

/// The plan of node `me` (which counts itself live whatever the membership says).
/// `free_for` tells how long a free region has been seen free here.
pub fn plan(
    me: &str,
    regions: &BTreeSet<CellIndex>,
    holders: &BTreeMap<CellIndex, String>,
    members: &[Member],
    free_for: impl Fn(CellIndex) -> Duration,
    patience: Duration,
) -> Plan {
    let live = members.len() + usize::from(!members.iter().any(|m| m.id == me));
    let share = regions.len().div_ceil(live.max(1));
    let mut held: BTreeMap<&str, usize> = BTreeMap::new();
    for node in holders.values() {
        *held.entry(node.as_str()).or_default() += 1;
    }
    let mine = held.get(me).copied().unwrap_or(0);
    if mine > share {
        let give_back = holders
            .iter()
            .rev()
            .find(|(_, node)| *node == me)
            .map(|(r, _)| *r);
        return Plan {
            take: Vec::new(),
            give_back,
        };
    }
    let mut take = Vec::new();
    let mut counts = held.clone();
    for region in regions.iter().filter(|r| !holders.contains_key(r)) {
        if counts.get(me).copied().unwrap_or(0) >= share {
            break;
        }
        let preferred = members
            .iter()
            .filter(|m| counts.get(m.id.as_str()).copied().unwrap_or(0) < share)
            .min_by_key(|m| {
                (
                    counts.get(m.id.as_str()).copied().unwrap_or(0),
                    m.started_at,
                    m.id.as_str(),
                )
            })
            .map(|m| m.id.as_str());
        let mine_to_take = preferred.is_none_or(|p| p == me) || free_for(*region) >= patience;
        let taker = if mine_to_take {
            me
        } else {
            preferred.unwrap_or(me)
        };
        *counts.entry(taker).or_default() += 1;
        if mine_to_take {
            take.push(*region);
        }
    }
    Plan {
        take,
        give_back: None,
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

    fn members(ids: &[&str]) -> Vec<Member> {
        ids.iter()
            .enumerate()
            .map(|(i, id)| Member {
                id: (*id).to_owned(),
                started_at: DateTime::from_timestamp(1_000 + i64::try_from(i).expect("i"), 0)
                    .expect("time"),
            })
            .collect()
    }

    const PATIENCE: Duration = Duration::from_secs(5);
    fn fresh(_: CellIndex) -> Duration {
        Duration::ZERO
    }

    fn regions() -> (CellIndex, CellIndex) {
        (cell(12.97, 77.59), cell(19.07, 72.87))
    }

    #[test]
    fn alone_a_node_takes_every_region() {
        let (a, b) = regions();
        let all = BTreeSet::from([a, b]);
        let p = plan(
            "n1",
            &all,
            &BTreeMap::new(),
            &members(&["n1"]),
            fresh,
            PATIENCE,
        );
        assert_eq!(p.take, all.iter().copied().collect::<Vec<_>>());
        // Not yet in the membership (its first heartbeat is on its way): still counted.
        let p = plan("n1", &all, &BTreeMap::new(), &[], fresh, PATIENCE);
        assert_eq!(p.take.len(), 2);
    }

    #[test]
    fn free_regions_go_to_the_oldest_nodes_with_fewest() {
        let (a, b) = regions();
        let all = BTreeSet::from([a, b]);
        let three = members(&["n1", "n2", "n3"]);
        let first = plan("n1", &all, &BTreeMap::new(), &three, fresh, PATIENCE);
        let second = plan("n2", &all, &BTreeMap::new(), &three, fresh, PATIENCE);
        let third = plan("n3", &all, &BTreeMap::new(), &three, fresh, PATIENCE);
        let (low, high) = if a < b { (a, b) } else { (b, a) };
        assert_eq!(first.take, vec![low]);
        assert_eq!(second.take, vec![high]);
        assert_eq!(third, Plan::default());
        // One region: the first node.
        let one = BTreeSet::from([a]);
        assert_eq!(
            plan("n1", &one, &BTreeMap::new(), &three, fresh, PATIENCE).take,
            vec![a]
        );
        assert!(plan("n2", &one, &BTreeMap::new(), &three, fresh, PATIENCE)
            .take
            .is_empty());
    }

    #[test]
    fn a_region_free_for_long_is_taken_by_anyone_with_room() {
        let (a, _) = regions();
        let one = BTreeSet::from([a]);
        let three = members(&["n1", "n2", "n3"]);
        let waited = |_: CellIndex| PATIENCE;
        assert_eq!(
            plan("n3", &one, &BTreeMap::new(), &three, waited, PATIENCE).take,
            vec![a]
        );
    }

    #[test]
    fn a_node_over_its_share_gives_the_highest_back() {
        let (a, b) = regions();
        let all = BTreeSet::from([a, b]);
        let both = BTreeMap::from([(a, "n1".to_owned()), (b, "n1".to_owned())]);
        let two = members(&["n1", "n2"]);
        let p = plan("n1", &all, &both, &two, fresh, PATIENCE);
        assert_eq!(p.give_back, Some(a.max(b)));
        assert!(p.take.is_empty());
        // Alone again, it keeps both; the newcomer with none takes nothing held.
        assert_eq!(
            plan("n1", &all, &both, &members(&["n1"]), fresh, PATIENCE),
            Plan::default()
        );
        assert_eq!(
            plan("n2", &all, &both, &two, fresh, PATIENCE),
            Plan::default()
        );
    }

    #[test]
    fn a_dead_holders_region_goes_to_a_survivor() {
        let (a, b) = regions();
        let all = BTreeSet::from([a, b]);
        // n1 held `a` and died (gone from the membership, its lease expired); n2 holds `b`.
        let held = BTreeMap::from([(b, "n2".to_owned())]);
        let left = members(&["n2", "n3"]);
        assert_eq!(
            plan("n3", &all, &held, &left, fresh, PATIENCE).take,
            vec![a]
        );
        assert!(plan("n2", &all, &held, &left, fresh, PATIENCE)
            .take
            .is_empty());
    }
}
