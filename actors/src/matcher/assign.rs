//! Assignment: which free rider gets which waiting order.
//!
//! Both strategies work on a cost matrix of estimated pickup seconds (`None` = not allowed:
//! out of range, or the rider already refused that order).
//! - [`greedy`]: orders in arrival order, each takes its cheapest remaining rider. This is
//!   what most dispatchers do, and it can strand a later order far from every rider.
//! - [`batched`]: the minimum-total-cost matching (Kuhn–Munkres, from `pathfinding`), so
//!   the fleet as a whole drives less. Above [`MAX_BATCH_CELLS`] matrix cells it falls back
//!   to greedy to keep a batch window short.

use pathfinding::kuhn_munkres::kuhn_munkres_min;
use pathfinding::matrix::Matrix;

/// Largest orders × riders matrix solved exactly.
pub const MAX_BATCH_CELLS: usize = 200 * 200;

/// Cost of a pair that must not be chosen (large, but far from overflowing sums).
const FORBIDDEN: i64 = 1_000_000_000_000;

/// The strategy (`MATCHING` setting).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    Greedy,
    Batched,
}

/// `(order index, rider index)` pairs.
pub type Pairs = Vec<(usize, usize)>;

/// Orders (rows, in arrival order) take their cheapest remaining rider in turn.
pub fn greedy(costs: &[Vec<Option<f64>>]) -> Pairs {
    let riders = costs.first().map_or(0, Vec::len);
    let mut taken = vec![false; riders];
    let mut pairs = Vec::new();
    for (o, row) in costs.iter().enumerate() {
        let best = row
            .iter()
            .enumerate()
            .filter(|(r, c)| !taken[*r] && c.is_some())
            .min_by(|a, b| a.1.unwrap_or(f64::MAX).total_cmp(&b.1.unwrap_or(f64::MAX)));
        if let Some((r, _)) = best {
            taken[r] = true;
            pairs.push((o, r));
        }
    }
    pairs
}

/// The minimum-total-cost matching; pairs with no allowed cost are left out.
pub fn batched(costs: &[Vec<Option<f64>>]) -> Pairs {
    let orders = costs.len();
    let riders = costs.first().map_or(0, Vec::len);
    if orders == 0 || riders == 0 {
        return Vec::new();
    }
    if orders * riders > MAX_BATCH_CELLS {
        return greedy(costs);
    }
    let cost = |o: usize, r: usize| costs[o][r].map_or(FORBIDDEN, |c| (c * 1000.0).round() as i64);
    // Kuhn–Munkres wants rows <= columns: put the smaller side on the rows.
    let pairs: Pairs = if orders <= riders {
        let m = Matrix::from_fn(orders, riders, |(o, r)| cost(o, r));
        let (_, assignment) = kuhn_munkres_min(&m);
        assignment.into_iter().enumerate().collect()
    } else {
        let m = Matrix::from_fn(riders, orders, |(r, o)| cost(o, r));
        let (_, assignment) = kuhn_munkres_min(&m);
        assignment
            .into_iter()
            .enumerate()
            .map(|(r, o)| (o, r))
            .collect()
    };
    pairs
        .into_iter()
        .filter(|&(o, r)| costs[o][r].is_some())
        .collect()
}

/// Total cost of `pairs`.
pub fn total(costs: &[Vec<Option<f64>>], pairs: &Pairs) -> f64 {
    pairs.iter().filter_map(|&(o, r)| costs[o][r]).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batched_beats_greedy_where_greedy_strands_an_order() {
        // Rider 0 is a little nearer order 0 than rider 1 is, but rider 0 is the only one
        // anywhere near order 1. Greedy gives order 0 rider 0 and order 1 a long trip.
        let costs = vec![vec![Some(60.0), Some(90.0)], vec![Some(100.0), Some(900.0)]];
        let g = greedy(&costs);
        let b = batched(&costs);
        assert_eq!(g, vec![(0, 0), (1, 1)]);
        assert_eq!(b, vec![(0, 1), (1, 0)]);
        assert!(total(&costs, &b) < total(&costs, &g));
    }

    #[test]
    fn forbidden_pairs_are_never_chosen() {
        let costs = vec![vec![None, Some(10.0)], vec![None, Some(5.0)]];
        let b = batched(&costs);
        assert_eq!(
            b,
            vec![(1, 1)],
            "only one rider may serve, the cheaper order wins"
        );
        assert_eq!(greedy(&costs), vec![(0, 1)]);
        assert!(batched(&[vec![None]]).is_empty());
    }

    #[test]
    fn more_orders_than_riders_and_the_reverse() {
        let costs = vec![vec![Some(5.0)], vec![Some(1.0)], vec![Some(3.0)]];
        assert_eq!(batched(&costs), vec![(1, 0)]);
        let costs = vec![vec![Some(5.0), Some(1.0), Some(3.0)]];
        assert_eq!(batched(&costs), vec![(0, 1)]);
        assert!(batched(&[]).is_empty());
    }
}
