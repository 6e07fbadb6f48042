//! Where orders belong in the cluster (issue 16): the owner region of an order (the region
//! of its pickup, as the matcher keys it), the set of regions there are (one per place
//! orders can be picked up at: the pharmacies) and, when a node's view is behind, who
//! holds a region's lease now. Every node asks this before it runs an
//! order's command, fences a journal write or rehydrates, so the answers are cached: an
//! order's region is read from the database once per node, a pharmacy's computed once.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use h3o::CellIndex;
use medify_actors::geo::Point;
use medify_actors::matcher::Matcher;
use medify_actors::ports::{JournalError, OrderJournal};
use uuid::Uuid;

use crate::store::Store;

/// Orders whose region is remembered before the cache starts over.
const REMEMBERED: usize = 200_000;

/// The order → region and pharmacy → region answers of this node; cheap to clone.
#[derive(Clone)]
pub struct Places {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    matcher: Matcher,
    orders: Mutex<HashMap<Uuid, CellIndex>>,
    points: Mutex<HashMap<(u64, u64), CellIndex>>,
}

impl Places {
    pub fn new(store: Store, matcher: Matcher) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                matcher,
                orders: Mutex::new(HashMap::new()),
                points: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The owner region of an order picked up at `pickup`.
    pub fn region_at(&self, pickup: Point) -> CellIndex {
        let key = (pickup.lat().to_bits(), pickup.lng().to_bits());
        if let Some(region) = self.points().get(&key) {
            return *region;
        }
        let region = self.inner.matcher.owner_region(pickup);
        let mut points = self.points();
        if points.len() >= REMEMBERED {
            points.clear();
        }
        points.insert(key, region);
        region
    }

    /// The owner region of an order (`None`: no such order).
    pub async fn region_of(&self, order: Uuid) -> Result<Option<CellIndex>, JournalError> {
        if let Some(region) = self.orders().get(&order) {
            return Ok(Some(*region));
        }
        let Some(record) = self.inner.store.load(order).await? else {
            return Ok(None);
        };
        let region = self.region_at(record.pickup);
        let mut orders = self.orders();
        if orders.len() >= REMEMBERED {
            orders.clear();
        }
        orders.insert(order, region);
        Ok(Some(region))
    }

    /// The node holding `region`'s lease now, read from the database (a node's view of the
    /// owners is as old as its last lease tick).
    pub async fn owner_now(&self, region: CellIndex) -> Result<Option<String>, sqlx::Error> {
        let name = super::seat::lease_name(region);
        Ok(self
            .inner
            .store
            .lease_holder(&name)
            .await?
            .map(|(node, _)| node))
    }

    /// The regions orders can be picked up in now.
    pub async fn regions(&self) -> Result<BTreeSet<CellIndex>, sqlx::Error> {
        let points = self.inner.store.pharmacy_points().await?;
        Ok(points
            .into_iter()
            .filter_map(|(lat, lng)| Point::new(lat, lng).ok())
            .map(|p| self.region_at(p))
            .collect())
    }

    fn orders(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, CellIndex>> {
        self.inner
            .orders
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn points(&self) -> std::sync::MutexGuard<'_, HashMap<(u64, u64), CellIndex>> {
        self.inner
            .points
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}
