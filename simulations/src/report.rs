//! The end-of-run report: computed from the order ledger and counters, printed as a
//! table and written as JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::metrics::{Metrics, Outcome};

/// count / mean / percentiles / max of a sample.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub count: usize,
    pub mean: Option<f64>,
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
}

impl Summary {
    /// Nearest-rank percentiles of `values` (NaNs dropped).
    pub fn of(mut values: Vec<f64>) -> Self {
        values.retain(|v| v.is_finite());
        if values.is_empty() {
            return Self::default();
        }
        values.sort_by(f64::total_cmp);
        let n = values.len();
        let pct = |p: f64| {
            let rank = ((p / 100.0) * n as f64).ceil() as usize;
            round1(values[rank.clamp(1, n) - 1])
        };
        Self {
            count: n,
            mean: Some(round1(values.iter().sum::<f64>() / n as f64)),
            p50: Some(pct(50.0)),
            p95: Some(pct(95.0)),
            p99: Some(pct(99.0)),
            max: Some(round1(values[n - 1])),
        }
    }
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// What happened to the orders.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OrderCounts {
    /// Orders the scenario meant to place.
    pub planned: u64,
    /// Orders the server accepted (201/200).
    pub placed: u64,
    /// Placements the server refused or that failed in transport (see protocol_errors).
    pub place_failed: u64,
    /// Orders some rider got `assigned` for.
    pub assigned: u64,
    pub delivered: u64,
    pub cancelled: u64,
    pub failed: u64,
    /// Placed orders with no final state when the run ended (drain timeout).
    pub still_open: u64,
}

/// Offers the riders saw.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OfferCounts {
    pub made: u64,
    pub rejected: u64,
    pub expired: u64,
}

/// One run's results.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub scenario: String,
    pub seed: u64,
    /// The server's matching strategy when the sim chose it; `None` against `--base`.
    pub matching: Option<String>,
    pub base: String,
    pub riders: u32,
    pub pharmacies: u32,
    pub customers: u32,
    /// Seconds spent creating pharmacies, stock and accounts and bringing riders online.
    pub setup_s: f64,
    /// Seconds from the first order's schedule start to the end of the run.
    pub run_s: f64,
    /// The run ended because every order was final (not because of the drain timeout).
    pub completed: bool,
    pub orders: OrderCounts,
    /// Order placed (customer sent POST /orders) → rider got `assigned`, milliseconds.
    pub assignment_latency_ms: Summary,
    /// Rider's own position when the offer came → pharmacy, metres, for assigned orders.
    pub pickup_distance_m: Summary,
    /// The same distance as the offer's `distance_m` (the server's view).
    pub offer_distance_m: Summary,
    /// Order placed → the customer's tracking socket heard `delivered`, seconds.
    pub delivery_time_s: Summary,
    pub offers: OfferCounts,
    /// `location` frames sent by all riders.
    pub locations_sent: u64,
    /// Mean location frames per second over the run.
    pub location_msgs_per_s: f64,
    /// Rider sent a fix (its `ts`) → the customer's socket received that `rider_location`.
    pub tracking_latency_ms: Summary,
    /// Every `error` frame and unexpected HTTP answer, by kind and code.
    pub protocol_errors: BTreeMap<String, u64>,
    pub protocol_errors_total: u64,
    /// The first message of each kind of protocol error.
    pub protocol_error_examples: BTreeMap<String, String>,
    pub rider_reconnects: u64,
    pub track_reconnects: u64,
}

impl Report {
    /// Computes the report from what the agents recorded.
    pub fn build(metrics: &Metrics, planned: u64) -> Self {
        let orders = metrics.orders();
        let mut assignment = Vec::new();
        let mut pickup = Vec::new();
        let mut offer = Vec::new();
        let mut delivery = Vec::new();
        let mut still_open = 0;
        for o in orders.values().filter(|o| o.placed_ms > 0) {
            if let Some(at) = o.assigned_ms {
                assignment.push((at - o.placed_ms).max(0) as f64);
                pickup.extend(o.pickup_distance_m);
                offer.extend(o.offer_distance_m);
            }
            match o.outcome {
                Some((Outcome::Delivered, at)) => {
                    delivery.push((at - o.placed_ms).max(0) as f64 / 1000.0);
                }
                Some(_) => {}
                None => still_open += 1,
            }
        }
        let errors = metrics.errors();
        Self {
            orders: OrderCounts {
                planned,
                placed: Metrics::get(&metrics.placed),
                place_failed: Metrics::get(&metrics.place_failed),
                assigned: Metrics::get(&metrics.assigned),
                delivered: Metrics::get(&metrics.delivered),
                cancelled: Metrics::get(&metrics.cancelled),
                failed: Metrics::get(&metrics.failed),
                still_open,
            },
            assignment_latency_ms: Summary::of(assignment),
            pickup_distance_m: Summary::of(pickup),
            offer_distance_m: Summary::of(offer),
            delivery_time_s: Summary::of(delivery),
            offers: OfferCounts {
                made: Metrics::get(&metrics.offers),
                rejected: Metrics::get(&metrics.offers_rejected),
                expired: Metrics::get(&metrics.offers_expired),
            },
            locations_sent: Metrics::get(&metrics.locations_sent),
            tracking_latency_ms: Summary::of(metrics.tracking_latencies()),
            protocol_errors_total: errors.values().sum(),
            protocol_errors: errors,
            protocol_error_examples: metrics.error_examples(),
            rider_reconnects: Metrics::get(&metrics.rider_reconnects),
            track_reconnects: Metrics::get(&metrics.track_reconnects),
            ..Self::default()
        }
    }

    /// Every placed order reached delivered, cancelled or failed.
    pub fn all_final(&self) -> bool {
        self.orders.still_open == 0
    }

    /// The report as a plain-text table.
    pub fn table(&self) -> String {
        let mut t = String::new();
        let o = &self.orders;
        let _ = writeln!(
            t,
            "scenario {} (seed {}, matching {}, server {})",
            self.scenario,
            self.seed,
            self.matching
                .as_deref()
                .unwrap_or("as configured on the server"),
            self.base
        );
        let _ = writeln!(
            t,
            "  {} riders, {} pharmacies, {} customers; set-up {:.1} s, run {:.1} s{}",
            self.riders,
            self.pharmacies,
            self.customers,
            self.setup_s,
            self.run_s,
            if self.completed {
                ""
            } else {
                " (drain timeout)"
            }
        );
        let rows: Vec<(&str, String)> = vec![
            ("orders planned", o.planned.to_string()),
            ("orders placed", o.placed.to_string()),
            ("placements failed", o.place_failed.to_string()),
            ("orders assigned", o.assigned.to_string()),
            ("orders delivered", o.delivered.to_string()),
            ("orders failed", o.failed.to_string()),
            ("orders cancelled", o.cancelled.to_string()),
            ("orders still open", o.still_open.to_string()),
            (
                "assignment latency ms",
                fmt_summary(&self.assignment_latency_ms),
            ),
            ("pickup distance m", fmt_summary(&self.pickup_distance_m)),
            ("offer distance_m", fmt_summary(&self.offer_distance_m)),
            ("delivery time s", fmt_summary(&self.delivery_time_s)),
            (
                "offers made/rejected/expired",
                format!(
                    "{} / {} / {}",
                    self.offers.made, self.offers.rejected, self.offers.expired
                ),
            ),
            (
                "location msgs sent",
                format!(
                    "{} ({:.1}/s)",
                    self.locations_sent, self.location_msgs_per_s
                ),
            ),
            (
                "tracking latency ms",
                fmt_summary(&self.tracking_latency_ms),
            ),
            (
                "reconnects rider/track",
                format!("{} / {}", self.rider_reconnects, self.track_reconnects),
            ),
            ("protocol errors", self.protocol_errors_total.to_string()),
        ];
        for (k, v) in rows {
            let _ = writeln!(t, "  {k:<30} {v}");
        }
        for (k, n) in &self.protocol_errors {
            let _ = writeln!(t, "    {n:>6}  {k}");
            if let Some(ex) = self
                .protocol_error_examples
                .get(k)
                .filter(|e| !e.is_empty())
            {
                let _ = writeln!(t, "            e.g. {ex}");
            }
        }
        t
    }
}

fn fmt_opt(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"))
}

fn fmt_summary(s: &Summary) -> String {
    if s.count == 0 {
        return "-".to_owned();
    }
    format!(
        "mean {}  p50 {}  p95 {}  p99 {}  max {}  (n={})",
        fmt_opt(s.mean),
        fmt_opt(s.p50),
        fmt_opt(s.p95),
        fmt_opt(s.p99),
        fmt_opt(s.max),
        s.count
    )
}

/// Two runs of one scenario side by side (greedy first).
pub fn compare_table(a: &Report, b: &Report) -> String {
    let name = |r: &Report| r.matching.clone().unwrap_or_else(|| "?".into());
    let mut t = String::new();
    let _ = writeln!(
        t,
        "{:<34} {:>14} {:>14} {:>9}",
        format!("{} (seed {})", a.scenario, a.seed),
        name(a),
        name(b),
        "change"
    );
    let change = |x: Option<f64>, y: Option<f64>| match (x, y) {
        (Some(x), Some(y)) if x != 0.0 => format!("{:+.1}%", (y - x) / x * 100.0),
        _ => "-".to_owned(),
    };
    let mut row = |label: &str, x: Option<f64>, y: Option<f64>| {
        let _ = writeln!(
            t,
            "{label:<34} {:>14} {:>14} {:>9}",
            fmt_opt(x),
            fmt_opt(y),
            change(x, y)
        );
    };
    let (pa, pb) = (&a.pickup_distance_m, &b.pickup_distance_m);
    row("mean pickup distance m", pa.mean, pb.mean);
    row("p50 pickup distance m", pa.p50, pb.p50);
    row(
        "mean offer distance_m",
        a.offer_distance_m.mean,
        b.offer_distance_m.mean,
    );
    let (la, lb) = (&a.assignment_latency_ms, &b.assignment_latency_ms);
    row("mean assignment latency ms", la.mean, lb.mean);
    row("p50 assignment latency ms", la.p50, lb.p50);
    row("p95 assignment latency ms", la.p95, lb.p95);
    row("p99 assignment latency ms", la.p99, lb.p99);
    row(
        "mean delivery time s",
        a.delivery_time_s.mean,
        b.delivery_time_s.mean,
    );
    let f = |v: u64| Some(v as f64);
    row(
        "orders delivered",
        f(a.orders.delivered),
        f(b.orders.delivered),
    );
    row(
        "orders still open",
        f(a.orders.still_open),
        f(b.orders.still_open),
    );
    row(
        "protocol errors",
        f(a.protocol_errors_total),
        f(b.protocol_errors_total),
    );
    row("run s", Some(a.run_s), Some(b.run_s));
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let s = Summary::of((1..=100).map(f64::from).collect());
        assert_eq!(
            (s.count, s.p50, s.p95, s.p99, s.max),
            (100, Some(50.0), Some(95.0), Some(99.0), Some(100.0))
        );
        assert_eq!(s.mean, Some(50.5));
        assert_eq!(Summary::of(vec![]), Summary::default());
        assert_eq!(Summary::of(vec![7.0]).p99, Some(7.0));
    }
}
