//! Medicines, pharmacies and the stock pages shown for them.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::FromRow;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{now, Store};
use crate::on_pool;

/// A medicine in the catalog.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema, FromRow)]
pub struct Medicine {
    pub id: Uuid,
    pub name: String,
    pub generic_name: Option<String>,
    pub brand: Option<String>,
    pub sku: String,
    pub price_cents: i64,
    pub rx_required: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The writable fields of a medicine, validated.
#[derive(Debug, Clone)]
pub struct MedicineFields {
    pub name: String,
    pub generic_name: Option<String>,
    pub brand: Option<String>,
    pub sku: String,
    pub price_cents: i64,
    pub rx_required: bool,
}

/// A pharmacy as stored (the API renders `h3_cell` as hex).
#[derive(Debug, Clone, PartialEq, FromRow)]
pub struct PharmacyRow {
    pub id: Uuid,
    pub name: String,
    pub lat: f64,
    pub lng: f64,
    pub address: String,
    pub h3_cell: i64,
}

/// One stock row of a pharmacy.
#[derive(Debug, Clone, Serialize, ToSchema, FromRow)]
pub struct StockRow {
    pub medicine_id: Uuid,
    /// The medicine's name (so a stock list reads without a lookup per line).
    pub name: String,
    /// On the shelf.
    pub quantity: i64,
    /// Held by open orders; `quantity - reserved` can still be sold.
    pub reserved: i64,
}

const MEDICINE_COLUMNS: &str =
    "id, name, generic_name, brand, sku, price_cents, rx_required, created_at, updated_at";

impl Store {
    pub async fn insert_medicine(&self, f: &MedicineFields) -> Result<Medicine, sqlx::Error> {
        let at = now();
        let m = Medicine {
            id: Uuid::now_v7(),
            name: f.name.clone(),
            generic_name: f.generic_name.clone(),
            brand: f.brand.clone(),
            sku: f.sku.clone(),
            price_cents: f.price_cents,
            rx_required: f.rx_required,
            created_at: at,
            updated_at: at,
        };
        on_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO medicines (id, name, generic_name, brand, sku, price_cents, rx_required, \
                 created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
            )
            .bind(m.id)
            .bind(&m.name)
            .bind(&m.generic_name)
            .bind(&m.brand)
            .bind(&m.sku)
            .bind(m.price_cents)
            .bind(m.rx_required)
            .bind(at)
            .execute(pool)
            .await?;
        });
        Ok(m)
    }

    /// Replaces every writable field; `None` if the medicine does not exist (or is deleted).
    pub async fn update_medicine(
        &self,
        id: Uuid,
        f: &MedicineFields,
    ) -> Result<Option<Medicine>, sqlx::Error> {
        let at = now();
        let sql = format!(
            "UPDATE medicines SET name = $2, generic_name = $3, brand = $4, sku = $5, \
             price_cents = $6, rx_required = $7, updated_at = $8 \
             WHERE id = $1 AND deleted_at IS NULL RETURNING {MEDICINE_COLUMNS}"
        );
        on_pool!(self, |pool| {
            sqlx::query_as(&sql)
                .bind(id)
                .bind(&f.name)
                .bind(&f.generic_name)
                .bind(&f.brand)
                .bind(&f.sku)
                .bind(f.price_cents)
                .bind(f.rx_required)
                .bind(at)
                .fetch_optional(pool)
                .await
        })
    }

    /// Soft-deletes (past orders keep their lines); `false` if there was nothing to delete.
    pub async fn delete_medicine(&self, id: Uuid) -> Result<bool, sqlx::Error> {
        let at = now();
        let n = on_pool!(self, |pool| {
            sqlx::query(
                "UPDATE medicines SET deleted_at = $2, updated_at = $2 WHERE id = $1 AND deleted_at IS NULL",
            )
            .bind(id)
            .bind(at)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }

    pub async fn medicine(&self, id: Uuid) -> Result<Option<Medicine>, sqlx::Error> {
        let sql = format!(
            "SELECT {MEDICINE_COLUMNS} FROM medicines WHERE id = $1 AND deleted_at IS NULL"
        );
        on_pool!(self, |pool| {
            sqlx::query_as(&sql).bind(id).fetch_optional(pool).await
        })
    }

    /// Every live medicine (to build the search index).
    pub async fn all_medicines(&self) -> Result<Vec<Medicine>, sqlx::Error> {
        let sql = format!("SELECT {MEDICINE_COLUMNS} FROM medicines WHERE deleted_at IS NULL");
        on_pool!(self, |pool| { sqlx::query_as(&sql).fetch_all(pool).await })
    }

    /// A page of live medicines by name, and how many there are.
    pub async fn medicines_page(
        &self,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<Medicine>, i64), sqlx::Error> {
        let sql = format!(
            "SELECT {MEDICINE_COLUMNS} FROM medicines WHERE deleted_at IS NULL \
             ORDER BY name, id LIMIT $1 OFFSET $2"
        );
        on_pool!(self, |pool| {
            let items = sqlx::query_as(&sql)
                .bind(limit)
                .bind(offset)
                .fetch_all(pool)
                .await?;
            let total: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM medicines WHERE deleted_at IS NULL")
                    .fetch_one(pool)
                    .await?;
            Ok((items, total))
        })
    }

    /// The live medicines among `ids` (one query, however many ids).
    pub async fn medicines_in(&self, ids: &[Uuid]) -> Result<Vec<Medicine>, sqlx::Error> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let placeholders: Vec<String> = (1..=ids.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT {MEDICINE_COLUMNS} FROM medicines WHERE deleted_at IS NULL AND id IN ({})",
            placeholders.join(", ")
        );
        on_pool!(self, |pool| {
            let mut query = sqlx::query_as::<_, Medicine>(&sql);
            for id in ids {
                query = query.bind(*id);
            }
            query.fetch_all(pool).await
        })
    }

    /// Which of `ids` are live medicines.
    pub async fn existing_medicines(&self, ids: &[Uuid]) -> Result<Vec<Uuid>, sqlx::Error> {
        Ok(self
            .medicines_in(ids)
            .await?
            .into_iter()
            .map(|m| m.id)
            .collect())
    }

    pub async fn insert_pharmacy(&self, p: &PharmacyRow) -> Result<(), sqlx::Error> {
        let at = now();
        on_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO pharmacies (id, name, lat, lng, address, h3_cell, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
            )
            .bind(p.id)
            .bind(&p.name)
            .bind(p.lat)
            .bind(p.lng)
            .bind(&p.address)
            .bind(p.h3_cell)
            .bind(at)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Where every pharmacy is, once per distinct position (the places orders are picked
    /// up at, which decide the cluster's regions).
    pub async fn pharmacy_points(&self) -> Result<Vec<(f64, f64)>, sqlx::Error> {
        on_pool!(self, |pool| {
            sqlx::query_as("SELECT DISTINCT lat, lng FROM pharmacies")
                .fetch_all(pool)
                .await
        })
    }

    pub async fn pharmacy(&self, id: Uuid) -> Result<Option<PharmacyRow>, sqlx::Error> {
        on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT id, name, lat, lng, address, h3_cell FROM pharmacies WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(pool)
            .await
        })
    }

    pub async fn all_pharmacies(&self) -> Result<Vec<PharmacyRow>, sqlx::Error> {
        on_pool!(self, |pool| {
            sqlx::query_as("SELECT id, name, lat, lng, address, h3_cell FROM pharmacies")
                .fetch_all(pool)
                .await
        })
    }

    /// Pharmacies where at least `qty` of `medicine_id` can be sold.
    pub async fn pharmacies_with_available(
        &self,
        medicine_id: Uuid,
        qty: i64,
    ) -> Result<Vec<Uuid>, sqlx::Error> {
        on_pool!(self, |pool| {
            sqlx::query_scalar(
                "SELECT pharmacy_id FROM pharmacy_stock WHERE medicine_id = $1 AND quantity - reserved >= $2",
            )
            .bind(medicine_id)
            .bind(qty)
            .fetch_all(pool)
            .await
        })
    }

    /// A page of a pharmacy's stock rows, by medicine id, and how many there are.
    pub async fn stock_page(
        &self,
        pharmacy_id: Uuid,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<StockRow>, i64), sqlx::Error> {
        on_pool!(self, |pool| {
            let items = sqlx::query_as(
                "SELECT s.medicine_id, m.name, s.quantity, s.reserved FROM pharmacy_stock s \
                 JOIN medicines m ON m.id = s.medicine_id WHERE s.pharmacy_id = $1 \
                 ORDER BY s.medicine_id LIMIT $2 OFFSET $3",
            )
            .bind(pharmacy_id)
            .bind(limit)
            .bind(offset)
            .fetch_all(pool)
            .await?;
            let total: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM pharmacy_stock WHERE pharmacy_id = $1")
                    .bind(pharmacy_id)
                    .fetch_one(pool)
                    .await?;
            Ok((items, total))
        })
    }
}

/// Bulk inserts for `medify seed`: one transaction each, existing rows left alone.
impl Store {
    pub async fn seed_medicines(&self, medicines: &[Medicine]) -> Result<usize, sqlx::Error> {
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            let mut added = 0;
            for m in medicines {
                added += sqlx::query(
                    "INSERT INTO medicines (id, name, generic_name, brand, sku, price_cents, rx_required, \
                     created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) ON CONFLICT DO NOTHING",
                )
                .bind(m.id)
                .bind(&m.name)
                .bind(&m.generic_name)
                .bind(&m.brand)
                .bind(&m.sku)
                .bind(m.price_cents)
                .bind(m.rx_required)
                .bind(m.created_at)
                .execute(&mut *tx)
                .await?
                .rows_affected() as usize;
            }
            tx.commit().await?;
            Ok(added)
        })
    }

    pub async fn seed_pharmacies(&self, pharmacies: &[PharmacyRow]) -> Result<usize, sqlx::Error> {
        let at = now();
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            let mut added = 0;
            for p in pharmacies {
                added += sqlx::query(
                    "INSERT INTO pharmacies (id, name, lat, lng, address, h3_cell, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $7) ON CONFLICT DO NOTHING",
                )
                .bind(p.id)
                .bind(&p.name)
                .bind(p.lat)
                .bind(p.lng)
                .bind(&p.address)
                .bind(p.h3_cell)
                .bind(at)
                .execute(&mut *tx)
                .await?
                .rows_affected() as usize;
            }
            tx.commit().await?;
            Ok(added)
        })
    }

    pub async fn seed_stock(
        &self,
        pharmacy_id: Uuid,
        lines: &[(Uuid, i64)],
    ) -> Result<usize, sqlx::Error> {
        let at = now();
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            let mut added = 0;
            for (medicine_id, quantity) in lines {
                added += sqlx::query(
                    "INSERT INTO pharmacy_stock (pharmacy_id, medicine_id, quantity, reserved, updated_at) \
                     VALUES ($1, $2, $3, 0, $4) ON CONFLICT DO NOTHING",
                )
                .bind(pharmacy_id)
                .bind(medicine_id)
                .bind(quantity)
                .bind(at)
                .execute(&mut *tx)
                .await?
                .rows_affected() as usize;
            }
            tx.commit().await?;
            Ok(added)
        })
    }
}
