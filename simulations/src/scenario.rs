//! Scenarios: what a run simulates, read from TOML (`simulations/scenarios/*.toml`).
//!
//! The scenarios shipped in that directory are compiled into the binary, so
//! `medify-sim run smoke` works from anywhere; any other TOML file can be given by path.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use crate::geo::Point;

/// The scenarios in `simulations/scenarios/`, by name.
pub const BUILT_IN: &[(&str, &str)] = &[
    ("smoke", include_str!("../scenarios/smoke.toml")),
    ("city", include_str!("../scenarios/city.toml")),
    ("rush", include_str!("../scenarios/rush.toml")),
    ("stress", include_str!("../scenarios/stress.toml")),
    ("cluster", include_str!("../scenarios/cluster.toml")),
];

/// Which matching strategy the server runs (`MATCHING`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Matching {
    Greedy,
    Batched,
}

impl Matching {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Greedy => "greedy",
            Self::Batched => "batched",
        }
    }
}

impl std::str::FromStr for Matching {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "greedy" => Ok(Self::Greedy),
            "batched" => Ok(Self::Batched),
            other => Err(format!("matching must be greedy or batched, not {other:?}")),
        }
    }
}

/// One simulated city.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name (used in reports and file names).
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Seed of every random choice (positions, speeds, order times, accept decisions).
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Riders online for the whole run.
    pub riders: u32,
    /// Pharmacies created (each stocks the whole simulated catalog).
    pub pharmacies: u32,
    /// Customer accounts; orders are spread over them.
    pub customers: u32,
    /// Medicines in the simulated catalog (sold without a prescription).
    #[serde(default = "default_medicines")]
    pub medicines: u32,
    /// Prescription-only medicines added to the catalog (`rx_required`); an rx order
    /// carries one of them besides its ordinary lines.
    #[serde(default = "default_rx_medicines")]
    pub rx_medicines: u32,
    pub area: Area,
    pub orders: Orders,
    #[serde(default)]
    pub rider: RiderBehaviour,
    /// The pharmacist of each pharmacy (prescription review).
    #[serde(default)]
    pub pharmacist: PharmacistBehaviour,
    /// The payment provider (online payments).
    #[serde(default)]
    pub provider: ProviderBehaviour,
    #[serde(default)]
    pub timing: Timing,
    /// The matching strategy for a server the sim starts itself (`--matching` overrides).
    #[serde(default)]
    pub matching: Option<Matching>,
    /// Extra environment for a server the sim starts itself (e.g. `DISPATCH_TIMEOUT_S`).
    #[serde(default)]
    pub server_env: BTreeMap<String, String>,
}

fn default_seed() -> u64 {
    1
}
fn default_medicines() -> u32 {
    5
}
fn default_rx_medicines() -> u32 {
    2
}

/// The circle everything happens in.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Area {
    pub lat: f64,
    pub lng: f64,
    pub radius_m: f64,
}

impl Area {
    pub fn centre(&self) -> Point {
        Point::new(self.lat, self.lng)
    }
}

/// How orders arrive.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Orders {
    /// How many orders in all; if absent, `rate_per_s × duration_s`.
    #[serde(default)]
    pub count: Option<u32>,
    /// Mean arrival rate (Poisson arrivals); 0 or absent places them all at once.
    #[serde(default)]
    pub rate_per_s: Option<f64>,
    /// How long orders keep arriving, when `count` is not given.
    #[serde(default)]
    pub duration_s: Option<f64>,
    /// Seconds after the riders are online before the first order.
    #[serde(default)]
    pub start_after_s: f64,
    /// Order lines: `[min, max]` distinct medicines, each of quantity 1–2.
    #[serde(default = "default_lines")]
    pub lines: [u32; 2],
    /// Share of orders that also carry a prescription-only medicine (the customer uploads
    /// a prescription first and the pharmacy's pharmacist reviews the order).
    #[serde(default)]
    pub rx_share: f64,
    /// Share of orders paid online (`payment_method: "online"`); the rest pay cash on
    /// delivery.
    #[serde(default)]
    pub online_share: f64,
}

fn default_lines() -> [u32; 2] {
    [1, 2]
}

impl Orders {
    /// The number of orders the scenario places.
    pub fn total(&self) -> u32 {
        match (self.count, self.rate_per_s, self.duration_s) {
            (Some(n), _, _) => n,
            (None, Some(rate), Some(d)) => (rate * d).round().max(0.0) as u32,
            _ => 0,
        }
    }
}

/// How riders behave.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RiderBehaviour {
    /// Speed range, metres per second; each leg draws a speed in it.
    pub speed_mps: [f64; 2],
    /// Probability of accepting an offer (otherwise it is rejected).
    pub accept_probability: f64,
    /// Delay before answering an offer, milliseconds `[min, max]`.
    pub accept_delay_ms: [u64; 2],
    /// GPS error added to every fix, up to this many metres.
    pub gps_noise_m: f64,
    /// Seconds spent at the pharmacy and at the door, `[min, max]`.
    pub handover_s: [f64; 2],
    /// How far a free rider wanders per leg, at most (metres; kept inside the area).
    pub wander_m: f64,
    /// Probability that a free rider pauses (for 5–30 s) after a wander leg.
    pub pause_probability: f64,
}

impl Default for RiderBehaviour {
    fn default() -> Self {
        Self {
            speed_mps: [3.0, 12.0],
            accept_probability: 0.9,
            accept_delay_ms: [500, 4000],
            gps_noise_m: 4.0,
            handover_s: [0.0, 0.0],
            wander_m: 800.0,
            pause_probability: 0.2,
        }
    }
}

/// How each pharmacy's pharmacist reviews prescriptions.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PharmacistBehaviour {
    /// Seconds between two looks at the pharmacy's orders (`GET /orders`).
    pub poll_interval_s: f64,
    /// Seconds spent on a prescription once seen, `[min, max]`.
    pub review_think_s: [f64; 2],
    /// Probability of approving a prescription (otherwise it is rejected with a reason).
    pub approve_probability: f64,
}

impl Default for PharmacistBehaviour {
    fn default() -> Self {
        Self {
            poll_interval_s: 2.0,
            review_think_s: [5.0, 60.0],
            approve_probability: 0.9,
        }
    }
}

/// How the payment provider settles online payments.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderBehaviour {
    /// Seconds from the customer starting to pay to the provider's signed report,
    /// `[min, max]`.
    pub payment_delay_s: [f64; 2],
    /// Probability that a payment succeeds (otherwise `payment.failed` is reported).
    pub payment_success_probability: f64,
}

impl Default for ProviderBehaviour {
    fn default() -> Self {
        Self {
            payment_delay_s: [2.0, 15.0],
            payment_success_probability: 0.95,
        }
    }
}

/// When a run ends.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timing {
    /// After the last order is placed, how long to wait for every order to reach a final
    /// state before stopping anyway.
    pub drain_timeout_s: f64,
    /// Concurrent account registrations and logins during set-up.
    pub setup_concurrency: usize,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            drain_timeout_s: 600.0,
            setup_concurrency: 16,
        }
    }
}

/// `[min, max]` with `0 <= min <= max`, both finite.
fn range_ok([lo, hi]: [f64; 2]) -> bool {
    lo.is_finite() && hi.is_finite() && lo >= 0.0 && lo <= hi
}

impl Scenario {
    /// A built-in scenario by name, or a TOML file by path.
    pub fn load(name_or_path: &str) -> anyhow::Result<Self> {
        if let Some((_, text)) = BUILT_IN.iter().find(|(n, _)| *n == name_or_path) {
            return Self::parse(text).with_context(|| format!("built-in scenario {name_or_path}"));
        }
        let path = Path::new(name_or_path);
        if !path.exists() {
            let names: Vec<&str> = BUILT_IN.iter().map(|(n, _)| *n).collect();
            bail!(
                "no scenario {name_or_path:?}: not a built-in one ({}) and no such file",
                names.join(", ")
            );
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("could not read {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("scenario file {}", path.display()))
    }

    /// Parses and checks a scenario.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let s: Scenario = toml::from_str(text).context("invalid scenario TOML")?;
        s.validate()?;
        Ok(s)
    }

    /// Every problem in one message.
    pub fn validate(&self) -> anyhow::Result<()> {
        let mut problems = Vec::new();
        let mut check = |ok: bool, msg: &str| {
            if !ok {
                problems.push(msg.to_owned());
            }
        };
        check(self.riders >= 1, "riders must be at least 1");
        check(self.pharmacies >= 1, "pharmacies must be at least 1");
        check(self.customers >= 1, "customers must be at least 1");
        check(
            (1..=50).contains(&self.medicines),
            "medicines must be 1..=50",
        );
        check(
            self.area.lat.is_finite() && (-85.0..=85.0).contains(&self.area.lat),
            "area.lat must be within [-85, 85]",
        );
        check(
            self.area.lng.is_finite() && (-180.0..=180.0).contains(&self.area.lng),
            "area.lng must be within [-180, 180]",
        );
        check(
            self.area.radius_m.is_finite() && (50.0..=50_000.0).contains(&self.area.radius_m),
            "area.radius_m must be 50..=50000",
        );
        check(
            self.orders.total() >= 1,
            "orders: give count, or rate_per_s and duration_s",
        );
        check(
            self.orders
                .rate_per_s
                .is_none_or(|r| r.is_finite() && r >= 0.0),
            "orders.rate_per_s must be >= 0",
        );
        check(
            self.orders.start_after_s.is_finite() && self.orders.start_after_s >= 0.0,
            "orders.start_after_s must be >= 0",
        );
        check(self.rx_medicines <= 50, "rx_medicines must be 0..=50");
        let share = |v: f64| v.is_finite() && (0.0..=1.0).contains(&v);
        check(
            share(self.orders.rx_share),
            "orders.rx_share must be within [0, 1]",
        );
        check(
            self.orders.rx_share == 0.0 || self.rx_medicines >= 1,
            "orders.rx_share above 0 needs rx_medicines >= 1",
        );
        check(
            share(self.orders.online_share),
            "orders.online_share must be within [0, 1]",
        );
        let p = &self.pharmacist;
        check(
            p.poll_interval_s.is_finite() && (0.1..=60.0).contains(&p.poll_interval_s),
            "pharmacist.poll_interval_s must be within [0.1, 60]",
        );
        check(
            range_ok(p.review_think_s),
            "pharmacist.review_think_s must be [min, max] with 0 <= min <= max",
        );
        check(
            share(p.approve_probability),
            "pharmacist.approve_probability must be within [0, 1]",
        );
        let v = &self.provider;
        check(
            range_ok(v.payment_delay_s),
            "provider.payment_delay_s must be [min, max] with 0 <= min <= max",
        );
        check(
            share(v.payment_success_probability),
            "provider.payment_success_probability must be within [0, 1]",
        );
        let [l0, l1] = self.orders.lines;
        check(
            l0 >= 1 && l0 <= l1 && l1 <= self.medicines,
            "orders.lines must be [min, max] with 1 <= min <= max <= medicines",
        );
        let r = &self.rider;
        check(
            r.speed_mps[0] > 0.0 && r.speed_mps[0] <= r.speed_mps[1] && r.speed_mps[1] <= 40.0,
            "rider.speed_mps must be [min, max] with 0 < min <= max <= 40 (the server refuses jumps over 70 m/s)",
        );
        check(
            (0.0..=1.0).contains(&r.accept_probability),
            "rider.accept_probability must be within [0, 1]",
        );
        check(
            r.accept_delay_ms[0] <= r.accept_delay_ms[1] && r.accept_delay_ms[1] <= 15_000,
            "rider.accept_delay_ms must be [min, max] with max <= 15000 (offers expire)",
        );
        check(
            (0.0..=50.0).contains(&r.gps_noise_m),
            "rider.gps_noise_m must be within [0, 50]",
        );
        check(
            r.handover_s[0] >= 0.0 && r.handover_s[0] <= r.handover_s[1],
            "rider.handover_s must be [min, max] with 0 <= min <= max",
        );
        check(r.wander_m >= 0.0, "rider.wander_m must be >= 0");
        check(
            (0.0..=1.0).contains(&r.pause_probability),
            "rider.pause_probability must be within [0, 1]",
        );
        check(
            self.timing.drain_timeout_s.is_finite() && self.timing.drain_timeout_s >= 0.0,
            "timing.drain_timeout_s must be >= 0",
        );
        check(
            (1..=1024).contains(&self.timing.setup_concurrency),
            "timing.setup_concurrency must be 1..=1024",
        );
        if problems.is_empty() {
            Ok(())
        } else {
            bail!(
                "invalid scenario {:?}:\n  {}",
                self.name,
                problems.join("\n  ")
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_scenario_parses() {
        for (name, text) in BUILT_IN {
            let s = Scenario::parse(text).unwrap_or_else(|e| panic!("{name}: {e:#}"));
            assert_eq!(&s.name, name);
        }
    }

    #[test]
    fn problems_are_reported_together() {
        let text = BUILT_IN[0].1.replace("riders = 50", "riders = 0");
        let mut s = Scenario::parse(&text).map(|_| ()).unwrap_err().to_string();
        s += &format!("{:#}", Scenario::parse(&text).unwrap_err());
        assert!(s.contains("riders must be at least 1"), "{s}");
    }

    const MINIMAL: &str = r#"
        name = "tiny"
        riders = 1
        pharmacies = 1
        customers = 1
        [area]
        lat = 12.97
        lng = 77.59
        radius_m = 500
        [orders]
        count = 3
    "#;

    #[test]
    fn checkout_settings_default_to_cash_without_prescriptions() {
        let s = Scenario::parse(MINIMAL).expect("minimal scenario");
        assert_eq!((s.orders.rx_share, s.orders.online_share), (0.0, 0.0));
        assert_eq!(s.rx_medicines, 2);
        assert_eq!(s.pharmacist.review_think_s, [5.0, 60.0]);
        assert_eq!(s.pharmacist.approve_probability, 0.9);
        assert_eq!(s.pharmacist.poll_interval_s, 2.0);
        assert_eq!(s.provider.payment_delay_s, [2.0, 15.0]);
        assert_eq!(s.provider.payment_success_probability, 0.95);
    }

    #[test]
    fn checkout_settings_are_read() {
        let text = format!(
            "{MINIMAL}\nrx_share = 0.25\nonline_share = 0.5\n\
             [pharmacist]\npoll_interval_s = 0.5\nreview_think_s = [1.0, 2.0]\n\
             approve_probability = 0.8\n\
             [provider]\npayment_delay_s = [0.5, 1.5]\npayment_success_probability = 0.7\n"
        );
        let s = Scenario::parse(&text).expect("scenario with checkout settings");
        assert_eq!((s.orders.rx_share, s.orders.online_share), (0.25, 0.5));
        assert_eq!(s.pharmacist.review_think_s, [1.0, 2.0]);
        assert_eq!(s.pharmacist.approve_probability, 0.8);
        assert_eq!(s.pharmacist.poll_interval_s, 0.5);
        assert_eq!(s.provider.payment_delay_s, [0.5, 1.5]);
        assert_eq!(s.provider.payment_success_probability, 0.7);
        // A partial section is an error, not a silent default.
        let partial = format!("{MINIMAL}\n[provider]\npayment_delay_s = [1.0, 2.0]\n");
        assert!(Scenario::parse(&partial).is_err());
        let unknown = format!("{MINIMAL}\n[pharmacist]\nthink_s = [1.0, 2.0]\n");
        assert!(Scenario::parse(&unknown).is_err());
    }

    #[test]
    fn bad_checkout_settings_are_reported_together() {
        let text = format!(
            "rx_medicines = 0\n{MINIMAL}\nrx_share = 0.5\nonline_share = 1.5\n\
             [pharmacist]\npoll_interval_s = 0.0\nreview_think_s = [3.0, 1.0]\n\
             approve_probability = -0.1\n\
             [provider]\npayment_delay_s = [-1.0, 1.0]\npayment_success_probability = 2.0\n"
        );
        let e = format!("{:#}", Scenario::parse(&text).unwrap_err());
        for expected in [
            "rx_share above 0 needs rx_medicines >= 1",
            "orders.online_share must be within [0, 1]",
            "pharmacist.poll_interval_s",
            "pharmacist.review_think_s",
            "pharmacist.approve_probability",
            "provider.payment_delay_s",
            "provider.payment_success_probability",
        ] {
            assert!(e.contains(expected), "{expected:?} missing from: {e}");
        }
    }

    #[test]
    fn cluster_is_built_in_and_valid() {
        let s = Scenario::load("cluster").expect("cluster");
        assert_eq!(s.name, "cluster");
        assert!(s.orders.rate_per_s.is_some_and(|r| r > 0.0));
    }

    #[test]
    fn smoke_runs_both_checkout_flows_quickly() {
        let s = Scenario::load("smoke").expect("smoke");
        assert!(s.orders.rx_share > 0.0 && s.orders.online_share > 0.0);
        assert!(s.pharmacist.review_think_s[1] <= 2.0);
        assert!(s.provider.payment_delay_s[1] <= 2.0);
        assert!(s.pharmacist.approve_probability < 1.0);
        assert!(s.provider.payment_success_probability < 1.0);
    }
}
