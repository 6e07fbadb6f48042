//! `/api/v1/prescriptions`: customers upload prescription files (JPEG, PNG or PDF, judged
//! by their bytes), and the people who may see one read it and download its file.
//!
//! The upload itself (sniffing, hashing, the size limit, the object store) is
//! `crate::app::prescriptions`; this file reads the multipart body and maps outcomes to
//! statuses. Who sees what: the customer who uploaded it, the staff of a pharmacy with an
//! order carrying it, and admins; anyone else, riders included, gets 404.

use actix_multipart::{Multipart, MultipartError};
use actix_web::http::header;
use actix_web::{get, post, web, HttpResponse};
use futures_util::StreamExt;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::app::prescriptions::{self as rx, UploadError};
use crate::auth::AuthUser;
use crate::domain::Role;
use crate::error::{ApiError, FieldErrors, Problem};
use crate::objects::ObjectKey;
use crate::pagination::{Page, PageParams};
use crate::state::AppState;
use crate::store::prescriptions::{Prescription, PrescriptionType};

/// The name of the multipart part that carries the file.
const FILE_PART: &str = "file";

/// The upload form (`multipart/form-data`).
#[derive(ToSchema)]
#[allow(dead_code)] // documents the request body; the handler reads the stream itself
pub struct PrescriptionUpload {
    /// The prescription: a JPEG, PNG or PDF file of at most `PRESCRIPTION_MAX_BYTES`
    /// (10 MiB by default). Its type is judged from its first bytes; the part's file name
    /// and declared type are ignored.
    #[schema(value_type = String, format = Binary, content_media_type = "application/octet-stream")]
    file: Vec<u8>,
}

/// A file's bytes, as uploaded.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)]
pub struct FileBytes(Vec<u8>);

/// How a broken multipart body is answered.
fn multipart_error(e: MultipartError) -> ApiError {
    match e {
        MultipartError::ContentTypeMissing
        | MultipartError::ContentTypeParse
        | MultipartError::ContentTypeIncompatible => ApiError::UnsupportedMediaType,
        other => ApiError::BadRequest(format!("the multipart body could not be read: {other}")),
    }
}

/// Upload a prescription (customers).
#[utoipa::path(
    tag = "prescriptions",
    security(("bearer" = [])),
    request_body(content = inline(PrescriptionUpload), content_type = "multipart/form-data",
        description = "one part named `file`; other parts are ignored"),
    responses(
        (status = 201, description = "stored whole before this answer", body = Prescription),
        (status = 400, description = "`bad_request`: the multipart body is malformed or broke off", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthorized`: no valid access token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`: not a customer", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload_too_large`: the file is over `PRESCRIPTION_MAX_BYTES` (nothing is stored)", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported_media_type`: the file is not a JPEG, PNG or PDF by its content, or the body is not multipart", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed` on `file`: no part named `file`", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/api/v1/prescriptions")]
pub async fn upload_prescription(
    user: AuthUser,
    state: web::Data<AppState>,
    mut form: Multipart,
) -> Result<HttpResponse, ApiError> {
    user.require(&[Role::Customer])?;
    let max_bytes = state.settings.prescription_max_bytes;
    // Parts before the file are read and dropped, counted against the same limit.
    let mut skipped = 0u64;
    while let Some(part) = form.next().await {
        let mut part = part.map_err(multipart_error)?;
        if part.name() == Some(FILE_PART) {
            let stored = rx::upload(&state, user.id, part).await?;
            return Ok(HttpResponse::Created().json(stored));
        }
        while let Some(chunk) = part.next().await {
            skipped += chunk.map_err(multipart_error)?.len() as u64;
            if skipped > max_bytes {
                return Err(UploadError::TooLarge(max_bytes).into());
            }
        }
    }
    Err(ApiError::field(
        FILE_PART,
        "is required: a part named file holding the prescription",
    ))
}

/// The prescriptions the caller may see, newest first: a customer's own, those on a
/// pharmacy's orders (its staff), or all (admins).
#[utoipa::path(
    tag = "prescriptions",
    security(("bearer" = [])),
    params(PageParams),
    responses(
        (status = 200, body = inline(Page<Prescription>),
            headers(("ETag" = String, description = "send it back as `If-None-Match` to get 304 while nothing changed"))),
        (status = 304, description = "unchanged since the `If-None-Match` ETag"),
        (status = 401, description = "`unauthorized`: no valid access token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`: riders have no prescriptions to list", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`: bad page or per_page", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/api/v1/prescriptions")]
pub async fn list_prescriptions(
    user: AuthUser,
    state: web::Data<AppState>,
    params: web::Query<PageParams>,
) -> Result<web::Json<Page<Prescription>>, ApiError> {
    user.require(&[Role::Customer, Role::Pharmacy, Role::Admin])?;
    let mut errors = FieldErrors::default();
    let paging = params.parse(&mut errors);
    errors.finish()?;
    let Some(scope) = rx::scope(&state, &user).await? else {
        return Ok(web::Json(Page::new(Vec::new(), paging, 0)));
    };
    let (items, total) = state
        .store
        .prescriptions_page(scope, paging.limit(), paging.offset())
        .await?;
    Ok(web::Json(Page::new(items, paging, total)))
}

/// One prescription.
#[utoipa::path(
    tag = "prescriptions",
    security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, body = Prescription),
        (status = 401, description = "`unauthorized`: no valid access token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`: no such prescription, or not one the caller may see", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/api/v1/prescriptions/{id}")]
pub async fn get_prescription(
    user: AuthUser,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<web::Json<Prescription>, ApiError> {
    Ok(web::Json(rx::visible(&state, &user, *id).await?.view))
}

/// The prescription's file, as uploaded.
#[utoipa::path(
    tag = "prescriptions",
    security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, description = "the file's bytes, with the type its content showed at upload; always an attachment",
            content(
                (FileBytes = "image/jpeg"),
                (FileBytes = "image/png"),
                (FileBytes = "application/pdf"),
            ),
            headers(
                ("Content-Disposition" = String, description = "`attachment; filename=\"prescription-<id>.<ext>\"`"),
                ("X-Content-Type-Options" = String, description = "`nosniff`"),
            )),
        (status = 401, description = "`unauthorized`: no valid access token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`: no such prescription, or not one the caller may see", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/api/v1/prescriptions/{id}/file")]
pub async fn prescription_file(
    user: AuthUser,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let found = rx::visible(&state, &user, *id).await?;
    let key =
        ObjectKey::parse(&found.object_key).map_err(|e| ApiError::Internal(anyhow::anyhow!(e)))?;
    let body = state
        .objects
        .get(&key)
        .await
        .map_err(|e| {
            ApiError::Internal(anyhow::Error::new(e).context("could not read a prescription"))
        })?
        .ok_or_else(|| {
            ApiError::Internal(anyhow::anyhow!(
                "the file of prescription {} is missing",
                found.view.id
            ))
        })?;
    let kind: PrescriptionType = found.view.content_type;
    let size = u64::try_from(found.view.size_bytes).unwrap_or(0);
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, kind.as_str()))
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!(
                "attachment; filename=\"prescription-{}.{}\"",
                found.view.id,
                kind.extension()
            ),
        ))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::CACHE_CONTROL, "private, no-store"))
        .no_chunking(size)
        .streaming(body))
}
