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
    /// Placed orders with no final state when the run ended (drain timeout), even after
    /// reading each over REST.
    pub still_open: u64,
    /// Orders the server holds for the run's customers that no customer got an answer
    /// for (a placement whose answer was lost; counted from the admin's order list).
    #[serde(default)]
    pub unknown_to_sim: u64,
    /// Orders of the run's customers on the server, by that list (`None`: not read).
    #[serde(default)]
    pub on_server: Option<u64>,
    /// Planned orders whose placement neither succeeded nor failed by the end (still
    /// being tried when the run stopped).
    #[serde(default)]
    pub placement_unsettled: u64,
    /// Orders lost or stuck: placed (or on the server) and not final by the end of the
    /// drain: `still_open` plus the `unknown_to_sim` ones not final. Any makes the run
    /// fail.
    #[serde(default)]
    pub lost_or_stuck: u64,
    /// Orders placed with a prescription-only line (and the customer's prescription).
    pub rx: u64,
    /// Orders placed to be paid online.
    pub online: u64,
    /// Orders meant to carry a prescription-only line, placed without it because the
    /// server has no prescription upload (404): see `warnings`.
    pub rx_without_prescription: u64,
}

/// An order lost or stuck, for the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LostOrder {
    pub id: uuid::Uuid,
    /// Its status on the server at the end (`unknown` if it could not be read).
    pub status: String,
    /// Whether a customer got the placement's answer (else only the server knew it).
    pub known_to_sim: bool,
}

/// What the server's order list said about the run's customers' orders.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerTally {
    /// Orders of the run's customers on the server.
    pub on_server: u64,
    /// Those the sim never got an answer for.
    pub unknown: Vec<LostOrder>,
    /// The whole list was read.
    pub complete: bool,
}

/// Lost or stuck orders listed in the report at most.
const LOST_LISTED: usize = 50;

/// The pharmacists' decisions (acknowledged by the server).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReviewCounts {
    pub approved: u64,
    /// Each cancels its order (`cancel_reason: prescription_rejected`).
    pub rejected: u64,
}

/// The payment provider's reports (acknowledged by the server).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PaymentCounts {
    pub succeeded: u64,
    /// Each cancels its order (`cancel_reason: payment_failed`).
    pub failed: u64,
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
    /// Delivered orders as a share of the orders meant to be delivered: placed ones less
    /// those the sim's pharmacists rejected and those whose payment the sim's provider
    /// failed (percent; `None` when there are none).
    pub delivered_pct: Option<f64>,
    /// Prescriptions the customers uploaded (one per rx order).
    pub prescriptions_uploaded: u64,
    pub reviews: ReviewCounts,
    /// Order placed (customer sent POST /orders) → the pharmacist's review acknowledged
    /// (approve or reject), milliseconds; includes the pharmacist's polling and think time.
    pub review_latency_ms: Summary,
    pub payments: PaymentCounts,
    /// The customer saw `awaiting_payment` → the provider's signed report acknowledged,
    /// milliseconds; includes the provider's delay.
    pub payment_latency_ms: Summary,
    /// Order dispatchable → rider got `assigned`, milliseconds. Dispatchable is when the
    /// customer sent POST /orders, or, for orders that waited, when the prescription's
    /// approval or the payment's report was acknowledged (the later one).
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
    /// Times a rider sent its order's status again because the server did not have it.
    #[serde(default)]
    pub statuses_resent: u64,
    /// Placements sent again (same Idempotency-Key) after a failure that may pass.
    #[serde(default)]
    pub placements_retried: u64,
    /// Things that make the run's figures mean less than they seem (e.g. a server without
    /// prescription uploads).
    #[serde(default)]
    pub warnings: Vec<String>,
    /// The lost or stuck orders (the first 50), with their statuses on the server.
    #[serde(default)]
    pub lost_orders: Vec<LostOrder>,
    /// A cluster run's nodes and what the failure of one did (`run --nodes`).
    #[serde(default)]
    pub cluster: Option<crate::cluster::ClusterReport>,
}

impl Report {
    /// Computes the report from what the agents recorded.
    pub fn build(metrics: &Metrics, planned: u64) -> Self {
        let orders = metrics.orders();
        let mut assignment = Vec::new();
        let mut pickup = Vec::new();
        let mut offer = Vec::new();
        let mut delivery = Vec::new();
        let mut review = Vec::new();
        let mut payment = Vec::new();
        let mut still_open = 0;
        for o in orders.values().filter(|o| o.placed_ms > 0) {
            if let Some((_, at)) = o.review {
                review.push((at - o.placed_ms).max(0) as f64);
            }
            if let (Some(from), Some((_, at))) = (o.payment_started_ms, o.payment) {
                payment.push((at - from).max(0) as f64);
            }
            if let Some(at) = o.assigned_ms {
                assignment.push((at - o.dispatchable_ms()).max(0) as f64);
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
        let placed = Metrics::get(&metrics.placed);
        let delivered = Metrics::get(&metrics.delivered);
        let reviews = ReviewCounts {
            approved: Metrics::get(&metrics.reviews_approved),
            rejected: Metrics::get(&metrics.reviews_rejected),
        };
        let payments = PaymentCounts {
            succeeded: Metrics::get(&metrics.payments_succeeded),
            failed: Metrics::get(&metrics.payments_failed),
        };
        let rx_without_prescription = Metrics::get(&metrics.rx_without_prescription);
        let mut warnings = Vec::new();
        if rx_without_prescription > 0 {
            warnings.push(format!(
                "the server has no prescription upload (POST /api/v1/prescriptions answered \
                 404): {rx_without_prescription} orders meant to carry a prescription-only \
                 medicine were placed without it, so no prescription was reviewed"
            ));
        }
        Self {
            delivered_pct: delivered_pct(delivered, placed, &reviews, &payments),
            prescriptions_uploaded: Metrics::get(&metrics.prescriptions_uploaded),
            review_latency_ms: Summary::of(review),
            payment_latency_ms: Summary::of(payment),
            reviews,
            payments,
            warnings,
            orders: OrderCounts {
                planned,
                placed,
                place_failed: Metrics::get(&metrics.place_failed),
                assigned: Metrics::get(&metrics.assigned),
                delivered,
                cancelled: Metrics::get(&metrics.cancelled),
                failed: Metrics::get(&metrics.failed),
                still_open,
                rx: Metrics::get(&metrics.rx_placed),
                unknown_to_sim: 0,
                on_server: None,
                placement_unsettled: 0,
                lost_or_stuck: still_open,
                online: Metrics::get(&metrics.online_placed),
                rx_without_prescription,
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
            statuses_resent: Metrics::get(&metrics.statuses_resent),
            placements_retried: Metrics::get(&metrics.placements_retried),
            ..Self::default()
        }
    }

    /// Orders meant to be delivered: placed, less the ones the sim itself turned down (a
    /// rejected prescription, a failed payment).
    pub fn deliverable(&self) -> u64 {
        self.orders
            .placed
            .saturating_sub(self.reviews.rejected + self.payments.failed)
    }

    /// Every placed order reached delivered, cancelled or failed.
    pub fn all_final(&self) -> bool {
        self.orders.still_open == 0
    }

    /// Folds in what the end of the run found: `stuck`, the placed orders still not final
    /// after a last read, and `tally`, the server's list of the run's customers' orders
    /// (`None` when it could not be read).
    pub fn account_for(&mut self, stuck: Vec<LostOrder>, tally: Option<ServerTally>) {
        let o = &mut self.orders;
        o.placement_unsettled = o.planned.saturating_sub(o.placed + o.place_failed);
        let mut lost = stuck;
        match tally {
            Some(t) => {
                o.on_server = Some(t.on_server);
                o.unknown_to_sim = t.unknown.len() as u64;
                lost.extend(
                    t.unknown
                        .into_iter()
                        .filter(|l| Outcome::parse(&l.status).is_none()),
                );
                if !t.complete {
                    self.warnings.push(
                        "the server's order list was not read to its end: orders the sim \
                         never heard of may be missing from unknown_to_sim"
                            .to_owned(),
                    );
                }
            }
            None => self.warnings.push(
                "the server's order list could not be read: orders the sim never heard of \
                 are not counted"
                    .to_owned(),
            ),
        }
        let from_server = lost.iter().filter(|l| !l.known_to_sim).count() as u64;
        o.lost_or_stuck = o.still_open + from_server;
        lost.truncate(LOST_LISTED);
        self.lost_orders = lost;
    }

    /// Orders lost or stuck (see [`OrderCounts::lost_or_stuck`]).
    pub fn lost_or_stuck(&self) -> u64 {
        self.orders.lost_or_stuck
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
            (
                "delivered % (of deliverable)",
                match self.delivered_pct {
                    Some(p) => format!(
                        "{p:.1} ({} of {}; {} rejected, {} payment failed left out)",
                        o.delivered,
                        self.deliverable(),
                        self.reviews.rejected,
                        self.payments.failed
                    ),
                    None => "-".to_owned(),
                },
            ),
            ("orders failed", o.failed.to_string()),
            ("orders cancelled", o.cancelled.to_string()),
            ("orders still open", o.still_open.to_string()),
            (
                "orders lost or stuck",
                format!(
                    "{} ({} placed and not final, {} unknown to the sim of {} on the server)",
                    o.lost_or_stuck,
                    o.still_open,
                    o.unknown_to_sim,
                    o.on_server
                        .map_or_else(|| "?".to_owned(), |n| n.to_string())
                ),
            ),
            (
                "orders accounted",
                format!(
                    "{} planned = {} delivered + {} cancelled + {} failed + {} not final \
                     + {} placements failed + {} unsettled",
                    o.planned,
                    o.delivered,
                    o.cancelled,
                    o.failed,
                    o.still_open,
                    o.place_failed,
                    o.placement_unsettled
                ),
            ),
            ("rx / online orders", format!("{} / {}", o.rx, o.online)),
            (
                "prescriptions uploaded",
                self.prescriptions_uploaded.to_string(),
            ),
            (
                "reviews approved/rejected",
                format!("{} / {}", self.reviews.approved, self.reviews.rejected),
            ),
            ("review latency ms", fmt_summary(&self.review_latency_ms)),
            (
                "payments succeeded/failed",
                format!("{} / {}", self.payments.succeeded, self.payments.failed),
            ),
            ("payment latency ms", fmt_summary(&self.payment_latency_ms)),
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
            (
                "statuses resent by riders",
                self.statuses_resent.to_string(),
            ),
            ("placements retried", self.placements_retried.to_string()),
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
        for l in &self.lost_orders {
            let _ = writeln!(
                t,
                "  lost or stuck: order {} {}{}",
                l.id,
                l.status,
                if l.known_to_sim {
                    ""
                } else {
                    " (its placement's answer never came)"
                }
            );
        }
        if let Some(c) = &self.cluster {
            let _ = writeln!(
                t,
                "  cluster: {} nodes behind HAProxy (servers {})",
                c.nodes,
                c.balancer_servers.join(", ")
            );
            if let Some(k) = &c.killed {
                let _ = writeln!(
                    t,
                    "  failover: SIGKILL to {k} (dispatch) at {} s; {} took over after {} s{}",
                    fmt_opt(c.killed_at_s),
                    c.dispatch_after.as_deref().unwrap_or("no node"),
                    fmt_opt(c.takeover_s),
                    match (c.restarted_at_s, c.restart_ready_s) {
                        (Some(at), Some(r)) =>
                            format!("; restarted at {at:.1} s, ready in {r:.1} s"),
                        (Some(at), None) => format!("; restart begun at {at:.1} s"),
                        _ => String::new(),
                    }
                );
            }
            for p in &c.problems {
                let _ = writeln!(t, "  cluster problem: {p}");
            }
        }
        for w in &self.warnings {
            let _ = writeln!(t, "  warning: {w}");
        }
        t
    }
}

/// `delivered` over the orders meant to be delivered (see [`Report::deliverable`]), in
/// percent with one decimal.
fn delivered_pct(
    delivered: u64,
    placed: u64,
    reviews: &ReviewCounts,
    payments: &PaymentCounts,
) -> Option<f64> {
    let deliverable = placed.saturating_sub(reviews.rejected + payments.failed);
    (deliverable > 0).then(|| round1(delivered as f64 * 100.0 / deliverable as f64))
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
        "delivered % of deliverable",
        a.delivered_pct,
        b.delivered_pct,
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

    #[test]
    fn turned_down_orders_are_left_out_of_delivered_pct() {
        let reviews = ReviewCounts {
            approved: 18,
            rejected: 2,
        };
        let payments = PaymentCounts {
            succeeded: 27,
            failed: 3,
        };
        assert_eq!(delivered_pct(95, 100, &reviews, &payments), Some(100.0));
        assert_eq!(delivered_pct(90, 100, &reviews, &payments), Some(94.7));
        let none = ReviewCounts::default();
        assert_eq!(delivered_pct(0, 0, &none, &PaymentCounts::default()), None);
        assert_eq!(
            delivered_pct(
                0,
                2,
                &ReviewCounts {
                    approved: 0,
                    rejected: 2
                },
                &PaymentCounts::default()
            ),
            None
        );
    }

    #[test]
    fn every_order_is_accounted_for() {
        let mut r = Report {
            orders: OrderCounts {
                planned: 10,
                placed: 8,
                place_failed: 1,
                delivered: 6,
                cancelled: 1,
                still_open: 1,
                lost_or_stuck: 1,
                ..OrderCounts::default()
            },
            ..Report::default()
        };
        let id = |n: u128| uuid::Uuid::from_u128(n);
        let stuck = vec![LostOrder {
            id: id(1),
            status: "assigned".into(),
            known_to_sim: true,
        }];
        let tally = ServerTally {
            on_server: 10,
            unknown: vec![
                LostOrder {
                    id: id(2),
                    status: "dispatching".into(),
                    known_to_sim: false,
                },
                LostOrder {
                    id: id(3),
                    status: "failed".into(),
                    known_to_sim: false,
                },
            ],
            complete: true,
        };
        r.account_for(stuck, Some(tally));
        let o = &r.orders;
        assert_eq!(o.placement_unsettled, 1);
        assert_eq!(o.unknown_to_sim, 2);
        assert_eq!(o.on_server, Some(10));
        // The stuck one, and the unknown one not final; the failed one is over.
        assert_eq!(r.lost_or_stuck(), 2);
        assert_eq!(r.lost_orders.len(), 2);
        assert!(r.warnings.is_empty());
        assert!(r.table().contains("orders lost or stuck           2"));

        let mut unread = Report::default();
        unread.account_for(Vec::new(), None);
        assert_eq!(unread.lost_or_stuck(), 0);
        assert_eq!(unread.warnings.len(), 1);
    }
}
