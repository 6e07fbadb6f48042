//! `/api/v1/me` and `/api/v1/admin/users`: who am I, my profile and phone verification,
//! and accounts made by admins.
//!
//! A phone typed in (registration, `PATCH /me`) is unverified until its owner proves it with
//! a code (`/me/phone/verify/request`, then `/me/phone/verify`), the same codes, cool-down
//! and limits as OTP sign-in.

use actix_web::{get, patch, post, web, HttpRequest, HttpResponse};
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::rate_limit::client_key;
use crate::auth::AuthUser;
use crate::domain::{PersonName, Phone, Role};
use crate::error::{ApiError, FieldErrors, Problem};
use crate::extract::ApiJson;
use crate::routes::auth::{
    account_fields, client_network, create_account, limit, per_ip, prove_phone, send_code,
    user_conflict, OtpSent, UserEnvelope,
};
use crate::routes::medicines::double_option;
use crate::state::AppState;
use crate::store::users::{ProfileChange, User};

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
    current_user(&state, &user).await.map(web::Json)
}

/// The caller's account, or 401 if it no longer exists.
async fn current_user(state: &AppState, caller: &AuthUser) -> Result<User, ApiError> {
    // A valid token for a deleted account is as good as no token.
    state
        .store
        .user_by_id(caller.id)
        .await?
        .ok_or(ApiError::Unauthorized)
}

/// `PATCH /api/v1/me`: any subset of the fields.
#[derive(Deserialize, ToSchema)]
pub struct ProfilePatch {
    pub name: Option<String>,
    /// E.164, such as `+14155550123`; `null` removes the phone. A number other than the
    /// account's current one is stored unverified.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub phone: Option<Option<String>>,
}

/// Edit the caller's name and phone. A new phone is stored unverified (prove it with
/// `/me/phone/verify/request` and `/me/phone/verify`); giving the current phone again
/// changes nothing.
#[utoipa::path(
    tag = "auth",
    security(("bearer" = [])),
    request_body = ProfilePatch,
    responses(
        (status = 200, description = "the account as changed", body = User),
        (status = 400, description = "`invalid_json`", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`conflict`: an account without an email signs in with its phone, so its phone cannot be changed or removed", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload_too_large`: a body over 64 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported_media_type`: a body that is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`: an empty or too long name, a phone that is not E.164, or a field of the wrong type", body = Problem, content_type = "application/problem+json"),
    )
)]
#[patch("/api/v1/me")]
pub async fn update_me(
    caller: AuthUser,
    state: web::Data<AppState>,
    body: ApiJson<ProfilePatch>,
) -> Result<web::Json<User>, ApiError> {
    let patch = body.into_inner();
    let mut errors = FieldErrors::default();
    let name = patch
        .name
        .as_deref()
        .and_then(|n| errors.check("name", PersonName::parse(n)));
    let phone = match patch.phone.as_ref() {
        None => None,
        Some(None) => Some(None),
        Some(Some(p)) => errors.check("phone", Phone::parse(p)).map(Some),
    };
    errors.finish()?;
    let current = current_user(&state, &caller).await?;
    // Only a different number is a change: the current one keeps its verification.
    let phone = phone.filter(|p| p.as_ref().map(Phone::as_str) != current.phone.as_deref());
    if phone.is_some() && current.email.is_none() {
        return Err(ApiError::conflict(
            "this account signs in with its phone number, which therefore cannot be changed or removed",
        ));
    }
    let change = ProfileChange {
        name: name.as_ref().map(PersonName::as_str),
        phone: phone.as_ref().map(|p| p.as_ref().map(Phone::as_str)),
    };
    let user = state
        .store
        .update_profile(caller.id, &change)
        .await?
        .ok_or(ApiError::Unauthorized)?;
    if change.phone.is_some() {
        tracing::info!(user_id = %user.id, "phone changed (unverified)");
    }
    Ok(web::Json(user))
}

/// The caller's phone, if it still needs verifying; else 409 `conflict`.
fn phone_to_verify(user: &User) -> Result<Phone, ApiError> {
    if user.phone_verified {
        return Err(ApiError::conflict("the phone is already verified"));
    }
    let phone = user.phone.as_deref().ok_or_else(|| {
        ApiError::conflict("the account has no phone; add one with PATCH /api/v1/me")
    })?;
    Phone::parse(phone).map_err(|e| ApiError::Internal(anyhow::anyhow!("stored phone: {e}")))
}

/// Send a code to the caller's unverified phone. Same codes, cool-down and limits as
/// `/auth/otp/request`.
#[utoipa::path(
    tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 202, description = "a code is on its way (`debug_code` only with `OTP_DELIVERY=response`)", body = OtpSent),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`conflict`: the account has no phone, or it is already verified", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited`, with Retry-After: a code was sent to this phone less than `OTP_RESEND_COOLDOWN_S` (30 s) ago, the phone's wrong tries are spent, or too many requests from this network", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "no code delivery is configured", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/api/v1/me/phone/verify/request")]
pub async fn request_phone_verification(
    req: HttpRequest,
    caller: AuthUser,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    limit(
        &state,
        &[(
            client_key("otp", &client_network(&state, &req)),
            per_ip(&state),
        )],
    )
    .await?;
    let phone = phone_to_verify(&current_user(&state, &caller).await?)?;
    let sent = send_code(&state, &phone).await?;
    Ok(HttpResponse::Accepted().json(sent))
}

/// `POST /api/v1/me/phone/verify`.
#[derive(Deserialize, ToSchema)]
pub struct PhoneCode {
    /// The 6-digit code sent to the phone.
    pub code: String,
}

/// Prove the caller's phone with the code sent to it: the phone becomes verified, and any
/// other account's unverified claim on the number is dropped.
#[utoipa::path(
    tag = "auth",
    security(("bearer" = [])),
    request_body = PhoneCode,
    responses(
        (status = 200, description = "the account, with `phone_verified: true`", body = User),
        (status = 400, description = "`invalid_json`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`invalid_code`: wrong, expired, used, or dead after 5 wrong tries; or `unauthorized` without a valid token", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`conflict`: the account has no phone, it is already verified, or it changed meanwhile; `phone_taken`: another account holds this number verified (sign in with it by OTP instead)", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload_too_large`: a body over 64 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported_media_type`: a body that is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`: no `code`, or not a string", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited`, with Retry-After: too many tries from this network, or the phone's wrong tries are spent (`OTP_MAX_WRONG_PER_PHONE` in `OTP_WRONG_WINDOW_S`, however many codes were sent)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/api/v1/me/phone/verify")]
pub async fn verify_phone(
    req: HttpRequest,
    caller: AuthUser,
    state: web::Data<AppState>,
    body: ApiJson<PhoneCode>,
) -> Result<web::Json<User>, ApiError> {
    let phone = phone_to_verify(&current_user(&state, &caller).await?)?;
    prove_phone(&state, &req, &phone, &body.0.code).await?;
    let user = state
        .store
        .verify_phone(caller.id, phone.as_str())
        .await
        .map_err(user_conflict)?
        .ok_or_else(|| ApiError::conflict("the account's phone changed meanwhile"))?;
    tracing::info!(user_id = %user.id, "phone verified");
    Ok(web::Json(user))
}

#[derive(Deserialize, ToSchema)]
pub struct AdminNewUser {
    /// 1 to 100 characters without control characters, not blank.
    #[schema(required = true, min_length = 1, max_length = 100)]
    pub name: Option<String>,
    /// At most 254 bytes.
    #[schema(required = true, max_length = 254)]
    pub email: Option<String>,
    /// At least 8 characters (and at most 1024 bytes).
    #[schema(required = true, min_length = 8)]
    pub password: Option<String>,
    /// E.164, such as `+14155550123`; stored unverified.
    pub phone: Option<String>,
    /// `customer`, `rider`, `pharmacy` or `admin`.
    #[schema(required = true, pattern = "^(customer|rider|pharmacy|admin)$")]
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
        (status = 400, description = "`invalid_json`: the body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "the caller is not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`email_taken` (a phone is stored unverified and never conflicts)", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload_too_large`: a body over 64 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported_media_type`: a body that is not JSON", body = Problem, content_type = "application/problem+json"),
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
