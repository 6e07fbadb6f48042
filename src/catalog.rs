//! The catalog held in memory: the medicine search index and the pharmacy directory.
//!
//! Both are loaded from storage at start-up and updated by the handlers right after each
//! successful write, under a write lock, so the next read on this node sees the write.
//! (Several nodes: each loads at start; propagating writes between nodes rides on the event
//! bus, which arrives with the orders issue.)

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use h3o::{CellIndex, Resolution};
use medify_actors::geo::Point;
use medify_actors::places::PlaceIndex;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::search::MedicineIndex;
use crate::store::catalog::PharmacyRow;
use crate::store::Store;

/// H3 resolution of a pharmacy's `h3_cell` (edges of about 174 m).
pub const PHARMACY_CELL_RES: Resolution = Resolution::Nine;

/// A pharmacy as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Pharmacy {
    pub id: Uuid,
    pub name: String,
    pub lat: f64,
    pub lng: f64,
    pub address: String,
    /// H3 index (resolution 9) as a hex string.
    pub h3_cell: String,
}

impl From<&PharmacyRow> for Pharmacy {
    fn from(row: &PharmacyRow) -> Self {
        // Stored as the u64's bits in an i64 column.
        let bits = u64::from_ne_bytes(row.h3_cell.to_ne_bytes());
        let h3_cell =
            CellIndex::try_from(bits).map_or_else(|_| format!("{bits:x}"), |c| c.to_string());
        Self {
            id: row.id,
            name: row.name.clone(),
            lat: row.lat,
            lng: row.lng,
            address: row.address.clone(),
            h3_cell,
        }
    }
}

/// The H3 cell of a point, as stored.
pub fn cell_bits(at: Point) -> i64 {
    i64::from_ne_bytes(u64::from(at.cell(PHARMACY_CELL_RES)).to_ne_bytes())
}

/// Pharmacies by id, and by place.
#[derive(Default)]
pub struct PharmacyDirectory {
    rows: HashMap<Uuid, Arc<Pharmacy>>,
    places: PlaceIndex,
}

impl PharmacyDirectory {
    pub fn insert(&mut self, row: &PharmacyRow) {
        if let Ok(at) = Point::new(row.lat, row.lng) {
            self.places.insert(row.id, at);
        }
        self.rows.insert(row.id, Arc::new(Pharmacy::from(row)));
    }

    pub fn get(&self, id: Uuid) -> Option<Arc<Pharmacy>> {
        self.rows.get(&id).cloned()
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Every pharmacy, by name then id.
    pub fn all(&self) -> Vec<Arc<Pharmacy>> {
        let mut all: Vec<Arc<Pharmacy>> = self.rows.values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        all
    }

    /// Pharmacies within `radius_m` of `origin`, nearest first, with distances.
    pub fn nearby(&self, origin: Point, radius_m: f64) -> Vec<(Arc<Pharmacy>, f64)> {
        self.places
            .nearby(origin, radius_m)
            .into_iter()
            .filter_map(|(id, d)| self.get(id).map(|p| (p, d)))
            .collect()
    }
}

/// The in-memory catalog of one node.
#[derive(Default)]
pub struct Catalog {
    medicines: RwLock<MedicineIndex>,
    pharmacies: RwLock<PharmacyDirectory>,
}

impl Catalog {
    /// Loads everything from storage.
    pub async fn load(store: &Store) -> Result<Self, sqlx::Error> {
        let medicines = MedicineIndex::build(store.all_medicines().await?);
        let mut pharmacies = PharmacyDirectory::default();
        for row in store.all_pharmacies().await? {
            pharmacies.insert(&row);
        }
        Ok(Self {
            medicines: RwLock::new(medicines),
            pharmacies: RwLock::new(pharmacies),
        })
    }

    // Locks are held for in-memory work only; a poisoned lock means a panic mid-update of
    // a cache that storage can rebuild, so reads carry on with what is there.
    pub fn medicines(&self) -> RwLockReadGuard<'_, MedicineIndex> {
        self.medicines
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn medicines_mut(&self) -> RwLockWriteGuard<'_, MedicineIndex> {
        self.medicines
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn pharmacies(&self) -> RwLockReadGuard<'_, PharmacyDirectory> {
        self.pharmacies
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn pharmacies_mut(&self) -> RwLockWriteGuard<'_, PharmacyDirectory> {
        self.pharmacies
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
