//! `/api/v1/medicines`: the catalog. Anyone reads and searches; admins write.
//!
//! Search goes to the in-memory index (`crate::search`); a listing without `q` goes to the
//! database, by name. Every write updates the index before answering, so the next search
//! sees it.

use actix_web::{delete, get, patch, post, web, HttpResponse};
use serde::{Deserialize, Deserializer};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::AuthUser;
use crate::catalog_sync::{announce, Changed};
use crate::domain::Role;
use crate::error::{ApiError, FieldErrors, Problem};
use crate::extract::ApiJson;
use crate::pagination::{Page, PageParams};
use crate::state::AppState;
use crate::store::catalog::{Medicine, MedicineFields};
use crate::store::unique_violation;

/// Longest name, generic name or brand accepted.
const MAX_TEXT: usize = 200;
const MAX_SKU: usize = 64;
/// Longest search query considered (longer ones are cut, not refused).
const MAX_QUERY_CHARS: usize = 200;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchParams {
    /// Search text: exact and prefix matches first, one typo tolerated in words of 5+ letters.
    pub q: Option<String>,
    /// 1-based page number (default 1; larger values are clamped to 1000000).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1_000_000)]
    pub page: Option<String>,
    /// Items per page, 1..100 (default 20; larger values are clamped to 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub per_page: Option<String>,
}

/// Distinguishes a field that is absent (`None`) from one that is `null` (`Some(None)`).
pub(crate) fn double_option<'de, D, T>(de: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(de).map(Some)
}

#[derive(Deserialize, ToSchema)]
pub struct NewMedicine {
    /// 1 to 200 characters without control characters, not blank.
    #[schema(required = true, min_length = 1, max_length = 200)]
    pub name: Option<String>,
    /// Up to 200 characters without control characters; blank means none.
    #[schema(max_length = 200)]
    pub generic_name: Option<String>,
    /// Up to 200 characters without control characters; blank means none.
    #[schema(max_length = 200)]
    pub brand: Option<String>,
    /// 1 to 64 characters without control characters, not blank; unique.
    #[schema(required = true, min_length = 1, max_length = 64)]
    pub sku: Option<String>,
    /// Integer minor units, 0 to 10^9.
    #[schema(required = true, minimum = 0, maximum = 1_000_000_000)]
    pub price_cents: Option<i64>,
    /// Defaults to false.
    pub rx_required: Option<bool>,
}

#[derive(Deserialize, ToSchema)]
pub struct MedicinePatch {
    /// 1 to 200 characters without control characters, not blank.
    #[schema(min_length = 1, max_length = 200)]
    pub name: Option<String>,
    /// Up to 200 characters; blank or `null` removes it.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>, max_length = 200)]
    pub generic_name: Option<Option<String>>,
    /// Up to 200 characters; blank or `null` removes it.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>, max_length = 200)]
    pub brand: Option<Option<String>>,
    /// 1 to 64 characters without control characters, not blank; unique.
    #[schema(min_length = 1, max_length = 64)]
    pub sku: Option<String>,
    /// Integer minor units, 0 to 10^9.
    #[schema(minimum = 0, maximum = 1_000_000_000)]
    pub price_cents: Option<i64>,
    pub rx_required: Option<bool>,
}

fn text(field: &str, raw: &str, max: usize, errors: &mut FieldErrors) -> Option<String> {
    let t = raw.trim();
    if t.is_empty() || t.chars().count() > max || t.chars().any(char::is_control) {
        errors.add(
            field,
            format!("must be 1 to {max} characters without control characters"),
        );
        None
    } else {
        Some(t.to_owned())
    }
}

fn optional_text(field: &str, raw: Option<&str>, errors: &mut FieldErrors) -> Option<String> {
    match raw.map(str::trim) {
        None | Some("") => None,
        Some(t) => text(field, t, MAX_TEXT, errors),
    }
}

/// The highest price a medicine may have (10 million in major units): far above any real
/// one, and low enough that 50 lines of 100 never come near overflowing a total.
pub const MAX_PRICE_CENTS: i64 = 1_000_000_000;

fn price(raw: i64, errors: &mut FieldErrors) -> i64 {
    if !(0..=MAX_PRICE_CENTS).contains(&raw) {
        errors.add(
            "price_cents",
            format!("must be an integer from 0 to {MAX_PRICE_CENTS}"),
        );
    }
    raw
}

fn sku_conflict(e: sqlx::Error) -> ApiError {
    match unique_violation(&e) {
        Some(_) => ApiError::Conflict {
            code: "sku_taken",
            detail: "another medicine has this sku".into(),
        },
        None => e.into(),
    }
}

/// Search or list the catalog.
#[utoipa::path(
    tag = "catalog",
    params(SearchParams),
    responses(
        (status = 200, body = inline(Page<Medicine>)),
        (status = 422, description = "bad page or per_page", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/api/v1/medicines")]
pub async fn search(
    state: web::Data<AppState>,
    params: web::Query<SearchParams>,
) -> Result<web::Json<Page<Medicine>>, ApiError> {
    let mut errors = FieldErrors::default();
    let paging = PageParams {
        page: params.page.clone(),
        per_page: params.per_page.clone(),
    }
    .parse(&mut errors);
    errors.finish()?;
    let q: String = params
        .q
        .as_deref()
        .unwrap_or("")
        .chars()
        .take(MAX_QUERY_CHARS)
        .collect();
    if q.trim().is_empty() {
        let (items, total) = state
            .store
            .medicines_page(paging.limit(), paging.offset())
            .await?;
        return Ok(web::Json(Page::new(items, paging, total)));
    }
    let offset = usize::try_from(paging.offset()).unwrap_or(usize::MAX);
    let hits = state
        .catalog
        .medicines()
        .search(&q, offset, paging.per_page as usize);
    let items = hits.items.iter().map(|m| (**m).clone()).collect();
    Ok(web::Json(Page::new(
        items,
        paging,
        i64::try_from(hits.total).unwrap_or(i64::MAX),
    )))
}

/// One medicine.
#[utoipa::path(
    tag = "catalog",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = Medicine), (status = 404, body = Problem, content_type = "application/problem+json"))
)]
#[get("/api/v1/medicines/{id}")]
pub async fn get_medicine(
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<web::Json<Medicine>, ApiError> {
    let found = state.store.medicine(*id).await?;
    found.map(web::Json).ok_or(ApiError::NotFound)
}

/// Add a medicine (admins).
#[utoipa::path(
    tag = "catalog",
    security(("bearer" = [])),
    request_body = NewMedicine,
    responses(
        (status = 201, body = Medicine),
        (status = 400, description = "`invalid_json`: the body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`sku_taken`", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload_too_large`: a body over 64 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported_media_type`: a body that is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/api/v1/medicines")]
pub async fn create_medicine(
    user: AuthUser,
    state: web::Data<AppState>,
    body: ApiJson<NewMedicine>,
) -> Result<HttpResponse, ApiError> {
    user.require(&[Role::Admin])?;
    let body = body.into_inner();
    let mut errors = FieldErrors::default();
    let name = errors
        .required("name", body.name.as_deref())
        .and_then(|n| text("name", n, MAX_TEXT, &mut errors));
    let sku = errors
        .required("sku", body.sku.as_deref())
        .and_then(|s| text("sku", s, MAX_SKU, &mut errors));
    let price_cents = errors
        .required("price_cents", body.price_cents.as_ref())
        .map(|p| price(*p, &mut errors));
    let generic_name = optional_text("generic_name", body.generic_name.as_deref(), &mut errors);
    let brand = optional_text("brand", body.brand.as_deref(), &mut errors);
    errors.finish()?;
    let (Some(name), Some(sku), Some(price_cents)) = (name, sku, price_cents) else {
        return Err(ApiError::Internal(anyhow::anyhow!(
            "validated fields missing"
        )));
    };
    let fields = MedicineFields {
        name,
        generic_name,
        brand,
        sku,
        price_cents,
        rx_required: body.rx_required.unwrap_or(false),
    };
    let medicine = state
        .store
        .insert_medicine(&fields)
        .await
        .map_err(sku_conflict)?;
    state.catalog.medicines_mut().upsert(medicine.clone());
    announce(&state, Changed::Medicine, medicine.id);
    Ok(HttpResponse::Created().json(medicine))
}

/// Change some fields of a medicine (admins).
#[utoipa::path(
    tag = "catalog",
    security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    request_body = MedicinePatch,
    responses(
        (status = 200, body = Medicine),
        (status = 400, description = "`invalid_json`: the body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthorized`: no valid access token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`: the caller's role may not do this", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`sku_taken`", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload_too_large`: a body over 64 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported_media_type`: a body that is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
#[patch("/api/v1/medicines/{id}")]
pub async fn update_medicine(
    user: AuthUser,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    body: ApiJson<MedicinePatch>,
) -> Result<web::Json<Medicine>, ApiError> {
    user.require(&[Role::Admin])?;
    let patch = body.into_inner();
    let current = state.store.medicine(*id).await?.ok_or(ApiError::NotFound)?;
    let mut errors = FieldErrors::default();
    let mut fields = MedicineFields {
        name: current.name,
        generic_name: current.generic_name,
        brand: current.brand,
        sku: current.sku,
        price_cents: current.price_cents,
        rx_required: current.rx_required,
    };
    if let Some(n) = patch
        .name
        .as_deref()
        .and_then(|n| text("name", n, MAX_TEXT, &mut errors))
    {
        fields.name = n;
    }
    if let Some(s) = patch
        .sku
        .as_deref()
        .and_then(|s| text("sku", s, MAX_SKU, &mut errors))
    {
        fields.sku = s;
    }
    if let Some(p) = patch.price_cents {
        fields.price_cents = price(p, &mut errors);
    }
    if let Some(g) = patch.generic_name {
        fields.generic_name = optional_text("generic_name", g.as_deref(), &mut errors);
    }
    if let Some(b) = patch.brand {
        fields.brand = optional_text("brand", b.as_deref(), &mut errors);
    }
    if let Some(rx) = patch.rx_required {
        fields.rx_required = rx;
    }
    errors.finish()?;
    let updated = state
        .store
        .update_medicine(*id, &fields)
        .await
        .map_err(sku_conflict)?
        .ok_or(ApiError::NotFound)?;
    state.catalog.medicines_mut().upsert(updated.clone());
    announce(&state, Changed::Medicine, updated.id);
    Ok(web::Json(updated))
}

/// Remove a medicine from the catalog (admins). Past orders keep their lines.
#[utoipa::path(
    tag = "catalog",
    security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 204),
        (status = 401, description = "`unauthorized`: no valid access token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`: the caller's role may not do this", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
#[delete("/api/v1/medicines/{id}")]
pub async fn delete_medicine(
    user: AuthUser,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    user.require(&[Role::Admin])?;
    if !state.store.delete_medicine(*id).await? {
        return Err(ApiError::NotFound);
    }
    state.catalog.medicines_mut().remove(*id);
    announce(&state, Changed::Medicine, *id);
    Ok(HttpResponse::NoContent().finish())
}
