//! How the matcher behaves: resolutions, search radius, batch window, offer timeout,
//! strategy, estimator, and the callbacks through which it reports metrics and offers.

use std::sync::Arc;
use std::time::Duration;

use h3o::Resolution;

use super::assign::Strategy;
use crate::model::{Estimator, Haversine};
use crate::ports::OfferLog;

/// How the matcher behaves.
#[derive(Clone)]
pub struct MatcherConfig {
    pub resolution: Resolution,
    /// Shards are keyed by the parent cell at this resolution (coarser than `resolution`).
    pub shard_resolution: Resolution,
    pub search_radius_m: f64,
    pub batch_window: Duration,
    pub offer_timeout: Duration,
    /// A free rider whose last fix is older than this is not offered orders.
    pub stale_fix: Duration,
    pub strategy: Strategy,
    pub estimator: Arc<dyn Estimator>,
    /// Called with the time from order confirmed to rider accepted.
    pub on_assigned: Arc<dyn Fn(Duration) + Send + Sync>,
    /// Called with `made`, `accepted`, `rejected` or `expired` for every offer event.
    pub on_offer: Arc<dyn Fn(&'static str) + Send + Sync>,
    /// Where offers are recorded, and refusals read back for orders that come back.
    pub offer_log: Option<Arc<dyn OfferLog>>,
}

impl Default for MatcherConfig {
    fn default() -> Self {
        Self {
            resolution: Resolution::Nine,
            shard_resolution: Resolution::Five,
            search_radius_m: 5_000.0,
            batch_window: Duration::from_millis(500),
            offer_timeout: Duration::from_secs(20),
            stale_fix: Duration::from_secs(60),
            strategy: Strategy::Batched,
            estimator: Arc::new(Haversine::default()),
            on_assigned: Arc::new(|_| {}),
            on_offer: Arc::new(|_| {}),
            offer_log: None,
        }
    }
}
