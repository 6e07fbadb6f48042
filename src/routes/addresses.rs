//! `/api/v1/me/addresses`: a customer's saved delivery addresses (list, create, patch,
//! delete). The rules (the cap, the one default) are `crate::app::addresses`; the handlers
//! here check the role and map the outcome to a status. Other roles get 403; another
//! customer's address is 404, as if it did not exist.

use actix_web::{delete, get, patch, post, web, HttpResponse};
use uuid::Uuid;

use crate::app::addresses;
pub use crate::app::addresses::{AddressPatch, NewAddressRequest};
use crate::auth::AuthUser;
use crate::domain::Role;
use crate::error::{ApiError, FieldErrors, Problem};
use crate::extract::ApiJson;
use crate::pagination::{Page, PageParams};
use crate::state::AppState;
use crate::store::addresses::Address;

/// The caller's saved addresses: the default first, then the newest first (customers).
#[utoipa::path(
    tag = "addresses",
    security(("bearer" = [])),
    params(PageParams),
    responses(
        (status = 200, body = inline(Page<Address>)),
        (status = 401, description = "`unauthorized`: no valid access token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`: not a customer", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`: bad page or per_page", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/api/v1/me/addresses")]
pub async fn list_addresses(
    user: AuthUser,
    state: web::Data<AppState>,
    params: web::Query<PageParams>,
) -> Result<web::Json<Page<Address>>, ApiError> {
    user.require(&[Role::Customer])?;
    let mut errors = FieldErrors::default();
    let paging = params.parse(&mut errors);
    errors.finish()?;
    let (items, total) = state
        .store
        .addresses_page(user.id, paging.limit(), paging.offset())
        .await?;
    Ok(web::Json(Page::new(items, paging, total)))
}

/// Save an address (customers). The first one is the default; `is_default: true` makes a
/// later one the default instead of the old.
#[utoipa::path(
    tag = "addresses",
    security(("bearer" = [])),
    request_body = NewAddressRequest,
    responses(
        (status = 201, body = Address),
        (status = 400, description = "`invalid_json`: the body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthorized`: no valid access token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`: not a customer", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`limit_reached`: the customer already has `MAX_ADDRESSES_PER_USER` (default 20) addresses", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload_too_large`: a body over 64 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported_media_type`: a body that is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`, naming the fields: a blank or too long label or address, a coordinate out of range, a field missing or of the wrong type", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/api/v1/me/addresses")]
pub async fn create_address(
    user: AuthUser,
    state: web::Data<AppState>,
    body: ApiJson<NewAddressRequest>,
) -> Result<HttpResponse, ApiError> {
    user.require(&[Role::Customer])?;
    let address = addresses::create(&state, user.id, &body.into_inner()).await?;
    Ok(HttpResponse::Created().json(address))
}

/// Change one of the caller's addresses (any subset of the fields). Orders already placed
/// with it keep the copy they took.
#[utoipa::path(
    tag = "addresses",
    security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    request_body = AddressPatch,
    responses(
        (status = 200, description = "the address as changed", body = Address),
        (status = 400, description = "`invalid_json`: the body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthorized`: no valid access token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`: not a customer", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`: no such address of the caller's", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`conflict`: `is_default: false` on the default address (make another one the default instead)", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload_too_large`: a body over 64 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported_media_type`: a body that is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`, naming the fields", body = Problem, content_type = "application/problem+json"),
    )
)]
#[patch("/api/v1/me/addresses/{id}")]
pub async fn update_address(
    user: AuthUser,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    body: ApiJson<AddressPatch>,
) -> Result<web::Json<Address>, ApiError> {
    user.require(&[Role::Customer])?;
    let address = addresses::update(&state, user.id, *id, &body.into_inner()).await?;
    Ok(web::Json(address))
}

/// Delete one of the caller's addresses. If it was the default, the newest remaining
/// address becomes the default. Orders already placed with it keep their copy.
#[utoipa::path(
    tag = "addresses",
    security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 204, description = "deleted"),
        (status = 401, description = "`unauthorized`: no valid access token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`: not a customer", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`: no such address of the caller's", body = Problem, content_type = "application/problem+json"),
    )
)]
#[delete("/api/v1/me/addresses/{id}")]
pub async fn delete_address(
    user: AuthUser,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    user.require(&[Role::Customer])?;
    addresses::delete(&state, user.id, *id).await?;
    Ok(HttpResponse::NoContent().finish())
}
