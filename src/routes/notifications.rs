//! `GET /api/v1/notifications`: the caller's notifications, newest first.

use actix_web::{get, web};

use crate::auth::AuthUser;
use crate::error::{ApiError, FieldErrors, Problem};
use crate::pagination::{Page, PageParams};
use crate::state::AppState;
use crate::store::notifications::Notification;

/// The caller's notifications.
#[utoipa::path(
    tag = "orders",
    security(("bearer" = [])),
    params(PageParams),
    responses(
        (status = 200, body = inline(Page<Notification>)),
        (status = 401, description = "`unauthorized`: no valid access token", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`: bad page or per_page", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/api/v1/notifications")]
pub async fn list_notifications(
    user: AuthUser,
    state: web::Data<AppState>,
    params: web::Query<PageParams>,
) -> Result<web::Json<Page<Notification>>, ApiError> {
    let mut errors = FieldErrors::default();
    let paging = params.parse(&mut errors);
    errors.finish()?;
    let (items, total) = state
        .store
        .notifications_page(user.id, paging.limit(), paging.offset())
        .await?;
    Ok(web::Json(Page::new(items, paging, total)))
}
