//! Prescriptions: the rows describing uploaded files (the bytes are in the object store,
//! `crate::objects`), and who may see them: the customer who uploaded one, the staff of a
//! pharmacy with an order carrying it (`orders.prescription_id`), and admins.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::FromRow;
use utoipa::ToSchema;
use uuid::Uuid;

use super::Store;
use crate::on_pool;

/// A prescription as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Prescription {
    pub id: Uuid,
    /// What the file's first bytes say it is (never what the client claimed).
    #[schema(example = "application/pdf")]
    pub content_type: PrescriptionType,
    /// The file's size in bytes (1 to `PRESCRIPTION_MAX_BYTES`, 10 MiB by default).
    #[schema(minimum = 1, maximum = 1_073_741_824)]
    pub size_bytes: i64,
    /// SHA-256 of the file, lower-case hex.
    #[schema(min_length = 64, max_length = 64, pattern = "^[0-9a-f]{64}$")]
    pub sha256: String,
    pub created_at: DateTime<Utc>,
}

/// The file types a prescription may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub enum PrescriptionType {
    #[serde(rename = "image/jpeg")]
    Jpeg,
    #[serde(rename = "image/png")]
    Png,
    #[serde(rename = "application/pdf")]
    Pdf,
}

impl PrescriptionType {
    /// The media type, as stored and served.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Jpeg => "image/jpeg",
            Self::Png => "image/png",
            Self::Pdf => "application/pdf",
        }
    }

    /// The file name extension for downloads.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Jpeg => "jpg",
            Self::Png => "png",
            Self::Pdf => "pdf",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [Self::Jpeg, Self::Png, Self::Pdf]
            .into_iter()
            .find(|t| t.as_str() == raw)
    }
}

/// A prescription's whole row: the view plus what only the server uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPrescription {
    pub view: Prescription,
    pub customer_id: Uuid,
    pub object_key: String,
}

/// A new row; the file is already stored under `object_key`.
#[derive(Debug, Clone)]
pub struct NewPrescription<'a> {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub content_type: PrescriptionType,
    pub size_bytes: i64,
    pub sha256: &'a str,
    pub object_key: &'a str,
    pub created_at: DateTime<Utc>,
}

/// Whose prescriptions a list shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrescriptionScope {
    /// Those this customer uploaded.
    Customer(Uuid),
    /// Those carried by an order of this pharmacy.
    Pharmacy(Uuid),
    All,
}

#[derive(FromRow)]
struct Row {
    id: Uuid,
    customer_id: Uuid,
    content_type: String,
    size_bytes: i64,
    sha256: String,
    object_key: String,
    created_at: DateTime<Utc>,
}

impl Row {
    fn stored(self) -> Result<StoredPrescription, sqlx::Error> {
        let content_type = PrescriptionType::parse(&self.content_type).ok_or_else(|| {
            sqlx::Error::Decode(format!("unknown content type {:?}", self.content_type).into())
        })?;
        Ok(StoredPrescription {
            view: Prescription {
                id: self.id,
                content_type,
                size_bytes: self.size_bytes,
                sha256: self.sha256,
                created_at: self.created_at,
            },
            customer_id: self.customer_id,
            object_key: self.object_key,
        })
    }
}

const COLUMNS: &str =
    "p.id, p.customer_id, p.content_type, p.size_bytes, p.sha256, p.object_key, p.created_at";

impl Store {
    /// Records a stored file.
    pub async fn insert_prescription(&self, new: &NewPrescription<'_>) -> Result<(), sqlx::Error> {
        on_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO prescriptions (id, customer_id, content_type, size_bytes, sha256, object_key, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(new.id)
            .bind(new.customer_id)
            .bind(new.content_type.as_str())
            .bind(new.size_bytes)
            .bind(new.sha256)
            .bind(new.object_key)
            .bind(new.created_at)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// One prescription, whoever may see it.
    pub async fn prescription(&self, id: Uuid) -> Result<Option<StoredPrescription>, sqlx::Error> {
        let sql = format!("SELECT {COLUMNS} FROM prescriptions p WHERE p.id = $1");
        let row: Option<Row> = on_pool!(self, |pool| {
            sqlx::query_as(&sql).bind(id).fetch_optional(pool).await?
        });
        row.map(Row::stored).transpose()
    }

    /// Whether an order of `pharmacy_id` carries prescription `id`.
    pub async fn prescription_on_pharmacy_order(
        &self,
        id: Uuid,
        pharmacy_id: Uuid,
    ) -> Result<bool, sqlx::Error> {
        let found: Option<i32> = on_pool!(self, |pool| {
            sqlx::query_scalar(
                "SELECT 1 FROM orders WHERE prescription_id = $1 AND pharmacy_id = $2 LIMIT 1",
            )
            .bind(id)
            .bind(pharmacy_id)
            .fetch_optional(pool)
            .await?
        });
        Ok(found.is_some())
    }

    /// A page of the prescriptions in `scope`, newest first, and how many there are.
    pub async fn prescriptions_page(
        &self,
        scope: PrescriptionScope,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<Prescription>, i64), sqlx::Error> {
        let (filter, who) = match scope {
            PrescriptionScope::Customer(id) => ("p.customer_id = $3", Some(id)),
            PrescriptionScope::Pharmacy(id) => (
                "EXISTS (SELECT 1 FROM orders o WHERE o.prescription_id = p.id AND o.pharmacy_id = $3)",
                Some(id),
            ),
            PrescriptionScope::All => ("$3 IS NULL", None),
        };
        let select = format!("SELECT {COLUMNS} FROM prescriptions p");
        let (rows, total): (Vec<Row>, i64) = self
            .scoped_page(super::ScopedPage {
                select: &select,
                count_from: "prescriptions p",
                filter,
                order_by: "p.created_at DESC, p.id DESC",
                who,
                limit,
                offset,
            })
            .await?;
        let items = rows
            .into_iter()
            .map(|row| row.stored().map(|s| s.view))
            .collect::<Result<_, _>>()?;
        Ok((items, total))
    }
}
