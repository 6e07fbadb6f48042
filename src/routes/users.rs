//! `/api/v1/me` and `/api/v1/admin/users`: who am I, and accounts made by admins.

use actix_web::{get, post, web, HttpResponse};
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::AuthUser;
use crate::domain::{Email, Password, PersonName, Phone, Role};
use crate::error::{ApiError, FieldErrors, Problem};
use crate::extract::ApiJson;
use crate::routes::auth::{user_conflict, UserEnvelope};
use crate::startup::AppState;
use crate::store::users::{NewUser, User};

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
    let name = errors
        .required("name", body.name.as_deref())
        .and_then(|n| errors.check("name", PersonName::parse(n)));
    let email = errors
        .required("email", body.email.as_deref())
        .and_then(|e| errors.check("email", Email::parse(e)));
    let password = match body.password {
        None => {
            errors.add("password", "is required");
            None
        }
        Some(p) => errors.check("password", Password::parse(p)),
    };
    let phone = match body.phone.as_deref() {
        None => None,
        Some(p) => errors.check("phone", Phone::parse(p)),
    };
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
    let (Some(name), Some(email), Some(password), Some(role)) = (name, email, password, role)
    else {
        return Err(ApiError::Internal(anyhow::anyhow!(
            "validated fields missing"
        )));
    };

    let hash = state.passwords.hash(&password).await?;
    let user = state
        .store
        .insert_user(&NewUser {
            name: name.as_str(),
            email: Some(email.as_str()),
            phone: phone.as_ref().map(Phone::as_str),
            password_hash: Some(&hash),
            role,
            pharmacy_id: body.pharmacy_id,
        })
        .await
        .map_err(user_conflict)?;
    tracing::info!(user_id = %user.id, role = %user.role, by = %caller.id, "account created by admin");
    Ok(HttpResponse::Created().json(UserEnvelope { user }))
}
