//! `/api/v1/me` and `/api/v1/admin/users`: who am I, and accounts made by admins.

use actix_web::{get, post, web, HttpResponse};
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::AuthUser;
use crate::domain::Role;
use crate::error::{ApiError, FieldErrors, Problem};
use crate::extract::ApiJson;
use crate::routes::auth::{account_fields, create_account, UserEnvelope};
use crate::startup::AppState;
use crate::store::users::User;

/// The caller's own account.
#[utoipa::path(
    tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 200, body = User),
        (status = 401, body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/api/v1/me")]
pub async fn me(user: AuthUser, state: web::Data<AppState>) -> Result<web::Json<User>, ApiError> {
    // A valid token for a deleted account is as good as no token.
    let found = state.store.user_by_id(user.id).await?;
    found.map(web::Json).ok_or(ApiError::Unauthorized)
}

#[derive(Deserialize, ToSchema)]
pub struct AdminNewUser {
    pub name: Option<String>,
    pub email: Option<String>,
    pub password: Option<String>,
    pub phone: Option<String>,
    /// `customer`, `rider`, `pharmacy` or `admin`.
    pub role: Option<String>,
    /// The pharmacy a `pharmacy` account works for.
    pub pharmacy_id: Option<Uuid>,
}

/// Create an account of any role (admins only).
#[utoipa::path(
    tag = "auth",
    security(("bearer" = [])),
    request_body = AdminNewUser,
    responses(
        (status = 201, body = UserEnvelope),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "the caller is not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`email_taken` or `phone_taken`", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/api/v1/admin/users")]
pub async fn create_user(
    caller: AuthUser,
    state: web::Data<AppState>,
    body: ApiJson<AdminNewUser>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Admin])?;
    let body = body.into_inner();
    let mut errors = FieldErrors::default();
    let fields = account_fields(
        &mut errors,
        body.name.as_deref(),
        body.email.as_deref(),
        body.password,
        body.phone.as_deref(),
    );
    let role = errors
        .required("role", body.role.as_deref())
        .and_then(|r| errors.check("role", Role::parse(r)));
    if let Some(pharmacy_id) = body.pharmacy_id {
        if role.is_some_and(|r| r != Role::Pharmacy) {
            errors.add("pharmacy_id", "only pharmacy accounts belong to a pharmacy");
        } else if !state.store.pharmacy_exists(pharmacy_id).await? {
            errors.add("pharmacy_id", "no such pharmacy");
        }
    }
    errors.finish()?;
    let (Some(fields), Some(role)) = (fields, role) else {
        return Err(ApiError::Internal(anyhow::anyhow!(
            "validated fields missing"
        )));
    };
    let user = create_account(&state, fields, role, body.pharmacy_id).await?;
    tracing::info!(user_id = %user.id, role = %user.role, by = %caller.id, "account created by admin");
    Ok(HttpResponse::Created().json(UserEnvelope { user }))
}
