//! `/api/v1/auth/*`: register, login, refresh, logout and phone OTP.
//!
//! Every endpoint here is attacked from day one, so each starts with its rate limits (per
//! client network, then per account or phone from that network) before any expensive or
//! revealing work. Login answers unknown emails and wrong passwords identically, after the
//! same hashing work.

use actix_web::{post, web, HttpRequest, HttpResponse};
use chrono::Duration;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::client;
use crate::auth::jwt::ACCESS_TOKEN_TTL_S;
use crate::auth::otp::{self, OtpDelivery, OTP_MAX_ATTEMPTS, OTP_TTL_S};
use crate::auth::rate_limit::{account_key, client_key, Quota};
use crate::auth::refresh::{self, REFRESH_TOKEN_TTL_DAYS};
use crate::domain::{Email, Password, PersonName, Phone, Role};
use crate::error::{ApiError, FieldErrors, Problem};
use crate::extract::ApiJson;
use crate::state::AppState;
use crate::store::auth::{OtpIssue, OtpPolicy, OtpTry, Rotation};
use crate::store::unique_violation;
use crate::store::users::{NewUser, User};

/// Tokens issued by login, refresh and OTP verification.
#[derive(Serialize, ToSchema)]
pub struct Tokens {
    pub access_token: String,
    /// Opaque; exchange it at `/auth/refresh` (once) for a new pair.
    pub refresh_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires (900).
    pub expires_in: i64,
    pub user: User,
}

/// `{"user": {...}}`, the answer to account creation.
#[derive(Serialize, ToSchema)]
pub struct UserEnvelope {
    pub user: User,
}

#[derive(Deserialize, ToSchema)]
pub struct RegisterRequest {
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
    /// `customer` (default) or `rider`.
    #[schema(pattern = "^(customer|rider)$")]
    pub role: Option<String>,
}

#[derive(Deserialize, ToSchema)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

#[derive(Deserialize, ToSchema)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

#[derive(Deserialize, ToSchema)]
pub struct OtpRequest {
    pub phone: String,
}

#[derive(Serialize, ToSchema)]
pub struct OtpSent {
    /// Seconds the code stays valid.
    pub expires_in: i64,
    /// The code itself, only with `OTP_DELIVERY=response` (never in production).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub debug_code: Option<String>,
}

#[derive(Deserialize, ToSchema)]
pub struct OtpVerify {
    pub phone: String,
    pub code: String,
}

/// The network the request's client is counted under (see `auth::client`).
pub fn client_network(state: &AppState, req: &HttpRequest) -> String {
    client::client_network(req, &state.settings.trusted_proxies)
}

/// Counts one request against each `(key, quota)`; the first one over its quota is 429.
pub async fn limit(state: &AppState, checks: &[(String, Quota)]) -> Result<(), ApiError> {
    for (key, quota) in checks {
        state
            .limiter
            .check(key, *quota)
            .await
            .map_err(|retry_after_s| ApiError::RateLimited { retry_after_s })?;
    }
    Ok(())
}

pub fn per_ip(state: &AppState) -> Quota {
    Quota {
        per_minute: state.settings.auth_limits.per_ip,
    }
}

pub fn per_account(state: &AppState) -> Quota {
    Quota {
        per_minute: state.settings.auth_limits.per_account,
    }
}

/// Issues an access token and a refresh token (in `family`, or a new one) for `user`.
pub async fn issue_tokens(
    state: &AppState,
    user: User,
    family: Option<Uuid>,
) -> Result<Tokens, ApiError> {
    let access_token = state.jwt.issue(user.id, user.role, chrono::Utc::now())?;
    let (refresh_token, hash) = refresh::generate();
    state
        .store
        .insert_refresh_token(
            user.id,
            family.unwrap_or_else(Uuid::now_v7),
            &hash,
            Duration::days(REFRESH_TOKEN_TTL_DAYS),
        )
        .await?;
    Ok(Tokens {
        access_token,
        refresh_token,
        token_type: "Bearer",
        expires_in: ACCESS_TOKEN_TTL_S,
        user,
    })
}

/// Maps a unique violation on `users` to the contract's 409 codes (`phone` holds only
/// verified numbers, so `phone_taken` comes from proving a number another account holds).
pub fn user_conflict(e: sqlx::Error) -> ApiError {
    match unique_violation(&e) {
        Some(c) if c.contains("email") => ApiError::Conflict {
            code: "email_taken",
            detail: "an account with this email already exists".into(),
        },
        Some(c) if c.contains("phone") => ApiError::Conflict {
            code: "phone_taken",
            detail: "an account with this phone number already exists".into(),
        },
        _ => e.into(),
    }
}

/// The fields every new account has, validated.
pub struct AccountFields {
    pub name: PersonName,
    pub email: Email,
    pub password: Password,
    pub phone: Option<Phone>,
}

/// Checks a new account's name, email, password and optional phone, recording every
/// problem in `errors`; `None` if any is wrong.
pub fn account_fields(
    errors: &mut FieldErrors,
    name: Option<&str>,
    email: Option<&str>,
    password: Option<String>,
    phone: Option<&str>,
) -> Option<AccountFields> {
    let name = errors
        .required("name", name)
        .and_then(|n| errors.check("name", PersonName::parse(n)));
    let email = errors
        .required("email", email)
        .and_then(|e| errors.check("email", Email::parse(e)));
    let password = match password {
        None => {
            errors.add("password", "is required");
            None
        }
        Some(p) => errors.check("password", Password::parse(p)),
    };
    let phone_ok = match phone {
        None => Some(None),
        Some(p) => errors.check("phone", Phone::parse(p)).map(Some),
    };
    Some(AccountFields {
        name: name?,
        email: email?,
        password: password?,
        phone: phone_ok?,
    })
}

/// Hashes the password (off the async workers) and stores the account (its phone
/// unverified); a taken email is 409.
pub async fn create_account(
    state: &AppState,
    fields: AccountFields,
    role: Role,
    pharmacy_id: Option<Uuid>,
) -> Result<User, ApiError> {
    let hash = state.passwords.hash(&fields.password).await?;
    state
        .store
        .insert_user(&NewUser {
            name: fields.name.as_str(),
            email: Some(fields.email.as_str()),
            phone: fields.phone.as_ref().map(Phone::as_str),
            password_hash: Some(&hash),
            role,
            pharmacy_id,
        })
        .await
        .map_err(user_conflict)
}

/// Create a customer or rider account. A phone given here is stored unverified.
#[utoipa::path(
    tag = "auth",
    request_body = RegisterRequest,
    responses(
        (status = 201, body = UserEnvelope),
        (status = 400, description = "`invalid_json`: the body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`email_taken` (a phone is stored unverified and never conflicts)", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload_too_large`: a body over 64 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported_media_type`: a body that is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "weak password, bad email or phone, or a role other than customer/rider", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited`, with Retry-After", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/api/v1/auth/register")]
pub async fn register(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: ApiJson<RegisterRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let net = client_network(&state, &req);
    let mut checks = vec![(client_key("register", &net), per_ip(&state))];
    if let Some(email) = &body.email {
        checks.push((
            account_key("register", &email.trim().to_lowercase(), &net),
            per_account(&state),
        ));
    }
    limit(&state, &checks).await?;

    let mut errors = FieldErrors::default();
    let fields = account_fields(
        &mut errors,
        body.name.as_deref(),
        body.email.as_deref(),
        body.password,
        body.phone.as_deref(),
    );
    let role = match body.role.as_deref() {
        None | Some("customer") => Some(Role::Customer),
        Some("rider") => Some(Role::Rider),
        Some(_) => {
            errors.add("role", "must be customer or rider");
            None
        }
    };
    errors.finish()?;
    let (Some(fields), Some(role)) = (fields, role) else {
        return Err(ApiError::Internal(anyhow::anyhow!(
            "validated fields missing"
        )));
    };
    let user = create_account(&state, fields, role, None).await?;
    tracing::info!(user_id = %user.id, role = %user.role, "account registered");
    Ok(HttpResponse::Created().json(UserEnvelope { user }))
}

/// Exchange email and password for tokens.
#[utoipa::path(
    tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, body = Tokens),
        (status = 400, description = "`invalid_json`: the body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`invalid_credentials`: unknown email or wrong password, indistinguishably", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload_too_large`: a body over 64 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported_media_type`: a body that is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`, naming the fields", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited`, with Retry-After", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/api/v1/auth/login")]
pub async fn login(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: ApiJson<LoginRequest>,
) -> Result<web::Json<Tokens>, ApiError> {
    let LoginRequest { email, password } = body.into_inner();
    let email = email.trim().to_lowercase();
    // Per (account, network): an attacker's wrong passwords never lock out the owner.
    let net = client_network(&state, &req);
    limit(
        &state,
        &[
            (client_key("login", &net), per_ip(&state)),
            (account_key("login", &email, &net), per_account(&state)),
        ],
    )
    .await?;

    let credentials = state.store.credentials_by_email(&email).await?;
    let hash = credentials
        .as_ref()
        .and_then(|c| c.password_hash.as_deref());
    // Unknown accounts are verified against a dummy hash: same work, same answer.
    let valid = state.passwords.verify(&password, hash).await?;
    match credentials {
        Some(c) if valid => Ok(web::Json(issue_tokens(&state, c.user, None).await?)),
        _ => Err(ApiError::Unauthenticated {
            code: "invalid_credentials",
            detail: "the email or password is wrong".into(),
        }),
    }
}

/// Exchange a refresh token for a new pair. The old token is spent; presenting it again
/// within `REFRESH_REUSE_INTERVAL_S` (10 s: two tabs, a retry) gets another pair of the same
/// session, later it revokes the whole session.
#[utoipa::path(
    tag = "auth",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "a new pair of the same session, also for a token spent within the reuse interval", body = Tokens),
        (status = 400, description = "`invalid_json`: the body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthorized`: unknown, expired or revoked token, or a token spent before the reuse interval (which revokes the session)", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload_too_large`: a body over 64 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported_media_type`: a body that is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`, naming the fields", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/api/v1/auth/refresh")]
pub async fn refresh_tokens(
    state: web::Data<AppState>,
    body: ApiJson<RefreshRequest>,
) -> Result<web::Json<Tokens>, ApiError> {
    let old = refresh::hash(body.0.refresh_token.trim());
    let (new_token, new_hash) = refresh::generate();
    let reuse_interval =
        Duration::from_std(state.settings.refresh_reuse_interval).unwrap_or(Duration::MAX);
    let outcome = state
        .store
        .rotate_refresh_token(
            &old,
            &new_hash,
            Duration::days(REFRESH_TOKEN_TTL_DAYS),
            reuse_interval,
        )
        .await?;
    let invalid = |detail: &str| ApiError::Unauthenticated {
        code: "unauthorized",
        detail: detail.to_owned(),
    };
    match outcome {
        Rotation::Rotated { user_id, .. } | Rotation::Reissued { user_id, .. } => {
            if matches!(outcome, Rotation::Reissued { .. }) {
                tracing::info!(%user_id, "refresh token presented again within the reuse interval: sibling issued");
            }
            let user = state
                .store
                .user_by_id(user_id)
                .await?
                .ok_or_else(|| invalid("the account no longer exists"))?;
            let access_token = state.jwt.issue(user.id, user.role, chrono::Utc::now())?;
            Ok(web::Json(Tokens {
                access_token,
                refresh_token: new_token,
                token_type: "Bearer",
                expires_in: ACCESS_TOKEN_TTL_S,
                user,
            }))
        }
        Rotation::Reused => {
            tracing::warn!("refresh token replayed: session revoked");
            Err(invalid(
                "this refresh token was already used; the session has been revoked",
            ))
        }
        Rotation::Invalid => Err(invalid("the refresh token is invalid, expired or revoked")),
    }
}

/// End the session the refresh token belongs to. Always 204.
#[utoipa::path(
    tag = "auth",
    request_body = RefreshRequest,
    responses(
        (status = 204, description = "the session is revoked (or never existed)"),
        (status = 400, description = "`invalid_json`: the body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload_too_large`: a body over 64 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported_media_type`: a body that is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`, naming the fields", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/api/v1/auth/logout")]
pub async fn logout(
    state: web::Data<AppState>,
    body: ApiJson<RefreshRequest>,
) -> Result<HttpResponse, ApiError> {
    let hash = refresh::hash(body.0.refresh_token.trim());
    state.store.revoke_refresh_family(&hash).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The OTP rules as configured.
pub fn otp_policy(state: &AppState) -> OtpPolicy {
    let limits = &state.settings.otp_limits;
    let chrono = |d: std::time::Duration| Duration::from_std(d).unwrap_or(Duration::MAX);
    OtpPolicy {
        ttl: Duration::seconds(OTP_TTL_S),
        resend_cooldown: chrono(limits.resend_cooldown),
        max_attempts_per_code: OTP_MAX_ATTEMPTS,
        max_wrong_per_phone: i32::try_from(limits.max_wrong_per_phone).unwrap_or(i32::MAX),
        wrong_window: chrono(limits.wrong_window),
    }
}

/// Sends a new code to `phone` (sign-in or verification alike), unless the phone's resend
/// cool-down runs or its wrong tries are spent (429). The caller applies its per-network
/// limit first.
pub async fn send_code(state: &AppState, phone: &Phone) -> Result<OtpSent, ApiError> {
    let delivery = state.settings.otp_delivery;
    if delivery == OtpDelivery::Disabled {
        return Err(ApiError::Unavailable(
            "phone codes are not configured on this server (OTP_DELIVERY)".into(),
        ));
    }
    let code = otp::generate_code();
    let hash = otp::code_hash(state.settings.jwt_secret.expose(), phone.as_str(), &code);
    match state
        .store
        .issue_otp(phone.as_str(), &hash, &otp_policy(state))
        .await?
    {
        OtpIssue::Stored => {}
        OtpIssue::Cooldown { retry_after_s } | OtpIssue::Locked { retry_after_s } => {
            return Err(ApiError::RateLimited { retry_after_s })
        }
    }
    let debug_code = match delivery {
        OtpDelivery::Response => Some(code),
        _ => {
            state.sms.send(phone, &code).await.map_err(|e| {
                tracing::error!(error = %e, "OTP delivery failed");
                ApiError::Unavailable("the code could not be sent; try again".into())
            })?;
            None
        }
    };
    Ok(OtpSent {
        expires_in: OTP_TTL_S,
        debug_code,
    })
}

/// Checks `code` against the live code of `phone` (sign-in or verification alike), after
/// the per-network and per-(phone, network) limits; the code is used up when it matches.
/// 401 `invalid_code` when it does not; 429 once the phone's wrong tries are spent.
pub async fn prove_phone(
    state: &AppState,
    req: &HttpRequest,
    phone: &Phone,
    code: &str,
) -> Result<(), ApiError> {
    let net = client_network(state, req);
    limit(
        state,
        &[
            (client_key("otp-verify", &net), per_ip(state)),
            (
                account_key("otp-verify", phone.as_str(), &net),
                per_account(state),
            ),
        ],
    )
    .await?;
    let invalid = || ApiError::Unauthenticated {
        code: "invalid_code",
        detail: "the code is wrong, expired or no longer valid; request a new one".into(),
    };
    let stored = match state
        .store
        .spend_otp_attempt(phone.as_str(), &otp_policy(state))
        .await?
    {
        OtpTry::Live(stored) => stored,
        OtpTry::NoCode => return Err(invalid()),
        OtpTry::Locked { retry_after_s } => return Err(ApiError::RateLimited { retry_after_s }),
    };
    let key = state.settings.jwt_secret.expose();
    if !otp::code_matches(key, phone.as_str(), code.trim(), &stored) {
        return Err(invalid());
    }
    if !state.store.consume_otp(phone.as_str(), &stored).await? {
        return Err(invalid());
    }
    Ok(())
}

/// Send a one-time sign-in code to a phone.
#[utoipa::path(
    tag = "auth",
    request_body = OtpRequest,
    responses(
        (status = 202, body = OtpSent),
        (status = 400, description = "`invalid_json`: the body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload_too_large`: a body over 64 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported_media_type`: a body that is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "not an E.164 number", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited`, with Retry-After: a code was sent to this phone less than `OTP_RESEND_COOLDOWN_S` (30 s) ago, the phone's wrong tries are spent (`OTP_MAX_WRONG_PER_PHONE` in `OTP_WRONG_WINDOW_S`), or too many requests from this network", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "no code delivery is configured", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/api/v1/auth/otp/request")]
pub async fn otp_request(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: ApiJson<OtpRequest>,
) -> Result<HttpResponse, ApiError> {
    limit(
        &state,
        &[(
            client_key("otp", &client_network(&state, &req)),
            per_ip(&state),
        )],
    )
    .await?;
    let phone = Phone::parse(&body.0.phone).map_err(|m| ApiError::field("phone", m))?;
    let sent = send_code(&state, &phone).await?;
    Ok(HttpResponse::Accepted().json(sent))
}

/// Sign in with a phone and its one-time code: into the account holding that phone
/// verified, else a new customer. Other accounts' unverified claims on the phone are
/// dropped.
#[utoipa::path(
    tag = "auth",
    request_body = OtpVerify,
    responses(
        (status = 200, description = "signed in to the account holding the phone verified (created as a customer if none does)", body = Tokens),
        (status = 400, description = "`invalid_json`: the body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`invalid_code`: wrong, expired, used, or dead after 5 wrong tries", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload_too_large`: a body over 64 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported_media_type`: a body that is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "not an E.164 number", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited`, with Retry-After: too many tries from this network, or the phone's wrong tries are spent (`OTP_MAX_WRONG_PER_PHONE` in `OTP_WRONG_WINDOW_S`, however many codes were sent)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/api/v1/auth/otp/verify")]
pub async fn otp_verify(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: ApiJson<OtpVerify>,
) -> Result<web::Json<Tokens>, ApiError> {
    let OtpVerify { phone, code } = body.into_inner();
    let phone = Phone::parse(&phone).map_err(|m| ApiError::field("phone", m))?;
    prove_phone(&state, &req, &phone, &code).await?;
    let user = state.store.user_for_phone_login(phone.as_str()).await?;
    Ok(web::Json(issue_tokens(&state, user, None).await?))
}
