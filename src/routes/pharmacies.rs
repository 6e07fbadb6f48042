//! `/api/v1/pharmacies`: pharmacies, nearby search and stock.
//!
//! Nearby search walks H3 grid-disk candidates in the in-memory directory, then keeps exact
//! haversine distances within the radius, nearest first. Stock writes go through the
//! pharmacy's inventory shard, which serialises them with reservations.

use actix_web::{get, post, put, web, HttpResponse};
use medify_actors::geo::Point;
use medify_actors::ports::{Line, SetStock};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::AuthUser;
use crate::catalog::{cell_bits, Pharmacy};
use crate::catalog_sync::{announce, Changed};
use crate::domain::Role;
use crate::error::{ApiError, FieldErrors, Problem};
use crate::extract::ApiJson;
use crate::pagination::{Page, PageParams, Paging};
use crate::state::AppState;
use crate::store::catalog::{PharmacyRow, StockRow};

pub const DEFAULT_RADIUS_M: f64 = 5_000.0;
pub const MAX_RADIUS_M: f64 = 50_000.0;
/// Most lines one stock update may carry.
const MAX_STOCK_LINES: usize = 1_000;
const MAX_QUANTITY: i64 = 1_000_000_000;

#[derive(Deserialize, ToSchema)]
pub struct NewPharmacy {
    /// 1 to 200 characters, not blank.
    #[schema(required = true, min_length = 1, max_length = 200)]
    pub name: Option<String>,
    #[schema(required = true, minimum = -90, maximum = 90)]
    pub lat: Option<f64>,
    #[schema(required = true, minimum = -180, maximum = 180)]
    pub lng: Option<f64>,
    /// 1 to 500 characters, not blank.
    #[schema(required = true, min_length = 1, max_length = 500)]
    pub address: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NearbyParams {
    /// Latitude of the search centre (with `lng`; without both, every pharmacy by name).
    #[param(value_type = Option<f64>, minimum = -90, maximum = 90)]
    pub lat: Option<String>,
    /// Longitude of the search centre (with `lat`).
    #[param(value_type = Option<f64>, minimum = -180, maximum = 180)]
    pub lng: Option<String>,
    /// Metres, default 5000; values above 50000 are clamped to 50000.
    #[param(value_type = Option<f64>, exclusive_minimum = 0)]
    pub radius_m: Option<String>,
    /// Keep only pharmacies where this medicine can be bought now.
    #[param(value_type = Option<Uuid>)]
    pub medicine_id: Option<String>,
    /// 1-based page number (default 1; larger values are clamped to 1000000).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1_000_000)]
    pub page: Option<String>,
    /// Items per page, 1..100 (default 20; larger values are clamped to 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub per_page: Option<String>,
}

/// A pharmacy, with its distance from the search centre when the search has one.
#[derive(Serialize, ToSchema)]
pub struct NearbyPharmacy {
    #[serde(flatten)]
    pub pharmacy: Pharmacy,
    /// Great-circle distance in metres, rounded; absent when no `lat`/`lng` was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distance_m: Option<i64>,
}

#[derive(Deserialize, ToSchema)]
pub struct StockLineIn {
    pub medicine_id: Uuid,
    /// New shelf quantity (not a delta), 0 to 10^9.
    #[schema(minimum = 0, maximum = 1_000_000_000)]
    pub quantity: i64,
}

#[derive(Deserialize, ToSchema)]
pub struct StockUpdate {
    /// 1 to 1000 lines, each medicine once.
    #[schema(min_items = 1, max_items = 1000)]
    pub items: Vec<StockLineIn>,
}

fn coordinate(field: &str, raw: &str, errors: &mut FieldErrors) -> Option<f64> {
    errors.check(
        field,
        raw.trim()
            .parse::<f64>()
            .map_err(|_| "must be a number".to_owned()),
    )
}

/// Add a pharmacy (admins).
#[utoipa::path(
    tag = "pharmacies",
    security(("bearer" = [])),
    request_body = NewPharmacy,
    responses(
        (status = 201, body = Pharmacy),
        (status = 400, description = "`invalid_json`: the body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthorized`: no valid access token", body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload_too_large`: a body over 64 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported_media_type`: a body that is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/api/v1/pharmacies")]
pub async fn create_pharmacy(
    user: AuthUser,
    state: web::Data<AppState>,
    body: ApiJson<NewPharmacy>,
) -> Result<HttpResponse, ApiError> {
    user.require(&[Role::Admin])?;
    let body = body.into_inner();
    let mut errors = FieldErrors::default();
    let name = errors
        .required("name", body.name.as_deref())
        .map(str::trim)
        .filter(|n| {
            let ok = !n.is_empty() && n.chars().count() <= 200;
            if !ok {
                errors.add("name", "must be 1 to 200 characters");
            }
            ok
        });
    let address = errors
        .required("address", body.address.as_deref())
        .map(str::trim)
        .filter(|a| {
            let ok = !a.is_empty() && a.chars().count() <= 500;
            if !ok {
                errors.add("address", "must be 1 to 500 characters");
            }
            ok
        });
    let lat = errors.required("lat", body.lat.as_ref()).copied();
    let lng = errors.required("lng", body.lng.as_ref()).copied();
    let at = match (lat, lng) {
        (Some(lat), Some(lng)) => match Point::new(lat, lng) {
            Ok(p) => Some(p),
            Err(e) => {
                let field = if lat.is_finite() && (-90.0..=90.0).contains(&lat) {
                    "lng"
                } else {
                    "lat"
                };
                errors.add(field, e.to_string());
                None
            }
        },
        _ => None,
    };
    errors.finish()?;
    let (Some(name), Some(address), Some(at)) = (name, address, at) else {
        return Err(ApiError::Internal(anyhow::anyhow!(
            "validated fields missing"
        )));
    };
    let row = PharmacyRow {
        id: Uuid::now_v7(),
        name: name.to_owned(),
        lat: at.lat(),
        lng: at.lng(),
        address: address.to_owned(),
        h3_cell: cell_bits(at),
    };
    state.store.insert_pharmacy(&row).await?;
    state.catalog.pharmacies_mut().insert(&row);
    announce(&state, Changed::Pharmacy, row.id);
    Ok(HttpResponse::Created().json(Pharmacy::from(&row)))
}

/// Pharmacies near a point, nearest first (or all, by name, without a point).
#[utoipa::path(
    tag = "pharmacies",
    params(NearbyParams),
    responses(
        (status = 200, body = inline(Page<NearbyPharmacy>)),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/api/v1/pharmacies")]
pub async fn list_pharmacies(
    state: web::Data<AppState>,
    params: web::Query<NearbyParams>,
) -> Result<web::Json<Page<NearbyPharmacy>>, ApiError> {
    let mut errors = FieldErrors::default();
    let paging = PageParams {
        page: params.page.clone(),
        per_page: params.per_page.clone(),
    }
    .parse(&mut errors);
    let lat = params
        .lat
        .as_deref()
        .and_then(|v| coordinate("lat", v, &mut errors));
    let lng = params
        .lng
        .as_deref()
        .and_then(|v| coordinate("lng", v, &mut errors));
    let radius = match params.radius_m.as_deref() {
        None => Some(DEFAULT_RADIUS_M),
        Some(raw) => match raw.trim().parse::<f64>() {
            Ok(r) if r.is_finite() && r > 0.0 => Some(r.min(MAX_RADIUS_M)),
            _ => {
                errors.add("radius_m", "must be a positive number of metres");
                None
            }
        },
    };
    let medicine = params.medicine_id.as_deref().and_then(|raw| {
        errors.check(
            "medicine_id",
            Uuid::parse_str(raw.trim()).map_err(|_| "must be a UUID".to_owned()),
        )
    });
    let origin = match (params.lat.is_some(), params.lng.is_some(), lat, lng) {
        (false, false, ..) => None,
        (_, _, Some(lat), Some(lng)) => match Point::new(lat, lng) {
            Ok(p) => Some(p),
            Err(e) => {
                errors.add(
                    if (-90.0..=90.0).contains(&lat) {
                        "lng"
                    } else {
                        "lat"
                    },
                    e.to_string(),
                );
                None
            }
        },
        (true, false, ..) => {
            errors.add("lng", "is required with lat");
            None
        }
        (false, true, ..) => {
            errors.add("lat", "is required with lng");
            None
        }
        _ => None,
    };
    errors.finish()?;

    let with_stock = match medicine {
        Some(m) => Some(state.store.pharmacies_with_available(m, 1).await?),
        None => None,
    };
    let keep = |id: Uuid| with_stock.as_ref().is_none_or(|ids| ids.contains(&id));

    let Some(origin) = origin else {
        let all: Vec<NearbyPharmacy> = state
            .catalog
            .pharmacies()
            .all()
            .into_iter()
            .filter(|p| keep(p.id))
            .map(|p| NearbyPharmacy {
                pharmacy: (*p).clone(),
                distance_m: None,
            })
            .collect();
        return Ok(web::Json(page_of(all, paging)));
    };
    let radius = radius.unwrap_or(DEFAULT_RADIUS_M);
    let found: Vec<NearbyPharmacy> = state
        .catalog
        .pharmacies()
        .nearby(origin, radius)
        .into_iter()
        .filter(|(p, _)| keep(p.id))
        .map(|(p, d)| NearbyPharmacy {
            pharmacy: (*p).clone(),
            distance_m: Some(d.round() as i64),
        })
        .collect();
    Ok(web::Json(page_of(found, paging)))
}

fn page_of<T>(mut all: Vec<T>, paging: Paging) -> Page<T> {
    let total = i64::try_from(all.len()).unwrap_or(i64::MAX);
    let range = paging.range(all.len());
    let items = all.drain(range).collect();
    Page::new(items, paging, total)
}

/// One pharmacy.
#[utoipa::path(
    tag = "pharmacies",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = Pharmacy), (status = 404, body = Problem, content_type = "application/problem+json"))
)]
#[get("/api/v1/pharmacies/{id}")]
pub async fn get_pharmacy(
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<web::Json<Pharmacy>, ApiError> {
    crate::catalog_sync::pharmacy_exists(&state, *id).await?;
    let found = state.catalog.pharmacies().get(*id);
    found
        .map(|p| web::Json((*p).clone()))
        .ok_or(ApiError::NotFound)
}

/// A pharmacy's stock: `quantity` on the shelf, `reserved` by open orders.
#[utoipa::path(
    tag = "pharmacies",
    params(("id" = Uuid, Path), PageParams),
    responses(
        (status = 200, body = inline(Page<StockRow>),
            headers(("ETag" = String, description = "send it back as `If-None-Match` to get 304 while nothing changed"))),
        (status = 304, description = "unchanged since the `If-None-Match` ETag"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`: bad page or per_page", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/api/v1/pharmacies/{id}/stock")]
pub async fn get_stock(
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    params: web::Query<PageParams>,
) -> Result<web::Json<Page<StockRow>>, ApiError> {
    let mut errors = FieldErrors::default();
    let paging = params.parse(&mut errors);
    errors.finish()?;
    if !crate::catalog_sync::pharmacy_exists(&state, *id).await? {
        return Err(ApiError::NotFound);
    }
    let (items, total) = state
        .store
        .stock_page(*id, paging.limit(), paging.offset())
        .await?;
    Ok(web::Json(Page::new(items, paging, total)))
}

/// Set shelf quantities (admins, or that pharmacy's staff).
#[utoipa::path(
    tag = "pharmacies",
    security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    request_body = StockUpdate,
    responses(
        (status = 200, description = "the first page of the pharmacy's stock", body = inline(Page<StockRow>)),
        (status = 400, description = "`invalid_json`: the body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthorized`: no valid access token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "not an admin or this pharmacy's staff", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`conflict`: a quantity would fall below what is reserved", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload_too_large`: a body over 64 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported_media_type`: a body that is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
#[put("/api/v1/pharmacies/{id}/stock")]
pub async fn put_stock(
    user: AuthUser,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    body: ApiJson<StockUpdate>,
) -> Result<web::Json<Page<StockRow>>, ApiError> {
    let pharmacy_id = *id;
    user.require(&[Role::Admin, Role::Pharmacy])?;
    if !crate::catalog_sync::pharmacy_exists(&state, pharmacy_id).await? {
        return Err(ApiError::NotFound);
    }
    if user.role == Role::Pharmacy {
        let staff_of = state
            .store
            .user_by_id(user.id)
            .await?
            .and_then(|u| u.pharmacy_id);
        if staff_of != Some(pharmacy_id) {
            return Err(ApiError::Forbidden);
        }
    }
    let items = body.into_inner().items;
    let mut errors = FieldErrors::default();
    if items.is_empty() || items.len() > MAX_STOCK_LINES {
        errors.add("items", format!("must have 1 to {MAX_STOCK_LINES} lines"));
    }
    let mut seen = std::collections::HashSet::new();
    for (i, line) in items.iter().enumerate() {
        if !(0..=MAX_QUANTITY).contains(&line.quantity) {
            errors.add(
                &format!("items[{i}].quantity"),
                format!("must be between 0 and {MAX_QUANTITY}"),
            );
        }
        if !seen.insert(line.medicine_id) {
            errors.add(&format!("items[{i}].medicine_id"), "appears more than once");
        }
    }
    let ids: Vec<Uuid> = items.iter().map(|l| l.medicine_id).collect();
    let existing = state.store.existing_medicines(&ids).await?;
    for (i, line) in items.iter().enumerate() {
        if !existing.contains(&line.medicine_id) {
            errors.add(&format!("items[{i}].medicine_id"), "no such medicine");
        }
    }
    errors.finish()?;

    let lines = items
        .iter()
        .map(|l| Line {
            medicine_id: l.medicine_id,
            qty: l.quantity,
        })
        .collect();
    match state
        .inventory
        .set_quantities(pharmacy_id, lines)
        .await
        .map_err(|e| ApiError::Internal(e.into()))?
    {
        SetStock::Done => {}
        SetStock::BelowReserved(lines) => {
            let which: Vec<String> = lines
                .iter()
                .map(|l| format!("{} ({} reserved)", l.medicine_id, l.available))
                .collect();
            return Err(ApiError::conflict(format!(
                "quantity would fall below what open orders hold: {}",
                which.join(", ")
            )));
        }
    }
    let paging = Paging {
        page: 1,
        per_page: 100,
    };
    let (items, total) = state
        .store
        .stock_page(pharmacy_id, paging.limit(), paging.offset())
        .await?;
    Ok(web::Json(Page::new(items, paging, total)))
}
