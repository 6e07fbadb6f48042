//! Time to go: the one city-speed estimate (straight line × a detour factor ÷ a speed)
//! that the matcher uses for pickups and rider sessions for the customer's ETA, and the
//! smoothing that keeps the customer's ETA from jumping with GPS noise.

use crate::geo::Point;

/// Estimated seconds from a rider to a pickup. A routing engine can implement this.
pub trait Estimator: Send + Sync + 'static {
    fn pickup_seconds(&self, from: Point, to: Point) -> f64;
}

/// Straight-line distance × a detour factor ÷ a city speed.
#[derive(Debug, Clone, Copy)]
pub struct Haversine {
    pub detour: f64,
    pub speed_mps: f64,
}

impl Default for Haversine {
    fn default() -> Self {
        Self {
            detour: 1.3,
            speed_mps: 5.0,
        }
    }
}

impl Haversine {
    /// Seconds to cover `metres` of straight line.
    pub fn seconds(&self, metres: f64) -> f64 {
        metres * self.detour / self.speed_mps
    }
}

impl Estimator for Haversine {
    fn pickup_seconds(&self, from: Point, to: Point) -> f64 {
        self.seconds(from.distance_m(to))
    }
}

/// Weight of a new measurement in the smoothed ETA (the rest is the countdown of the
/// previous estimate).
const ETA_GAIN: f64 = 0.25;

/// Seconds to go for a rider at `at` on an order (to the pickup then the drop-off before
/// pick-up, straight to the drop-off after), at the matcher's city speed.
pub fn eta_seconds(at: Point, pickup: Point, dropoff: Point, picked_up: bool) -> i64 {
    let metres = if picked_up {
        at.distance_m(dropoff)
    } else {
        at.distance_m(pickup) + pickup.distance_m(dropoff)
    };
    Haversine::default().seconds(metres).round() as i64
}

/// An ETA that does not jump around with GPS noise.
///
/// Between fixes the previous estimate counts down with the clock; a new measurement then
/// pulls it only part of the way ([`ETA_GAIN`]), so a noisy fix moves the ETA by a quarter
/// of its error while a real change (a detour, a traffic jam) shows within a few fixes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SmoothedEta {
    eta_s: f64,
    at_ms: i64,
}

impl SmoothedEta {
    /// Folds in a measurement `raw_s` taken at `at_ms`; returns the smoothed seconds.
    pub fn update(previous: Option<Self>, raw_s: i64, at_ms: i64) -> Self {
        let raw = raw_s as f64;
        let eta_s = match previous {
            None => raw,
            Some(p) => {
                let elapsed_s = (at_ms - p.at_ms).max(0) as f64 / 1000.0;
                let predicted = (p.eta_s - elapsed_s).max(0.0);
                predicted + ETA_GAIN * (raw - predicted)
            }
        };
        Self { eta_s, at_ms }
    }

    pub fn seconds(self) -> i64 {
        self.eta_s.round() as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smoothed_eta_counts_down_and_damps_noise() {
        let first = SmoothedEta::update(None, 600, 0);
        assert_eq!(first.seconds(), 600);
        // Ten seconds on, a measurement that agrees with the countdown changes nothing.
        let steady = SmoothedEta::update(Some(first), 590, 10_000);
        assert_eq!(steady.seconds(), 590);
        // A 120 s jump from GPS noise moves the estimate by a quarter of it.
        let noisy = SmoothedEta::update(Some(steady), 709, 11_000);
        assert_eq!(noisy.seconds(), 619);
        // Time never runs backwards into a larger estimate.
        let stale = SmoothedEta::update(Some(steady), 590, 5_000);
        assert_eq!(stale.seconds(), 590);
        // A real change shows within a few fixes.
        let mut eta = steady;
        for i in 1..=8 {
            eta = SmoothedEta::update(Some(eta), 300, 10_000 + i * 1_000);
        }
        assert!(eta.seconds() < 350, "{eta:?}");
    }
}
