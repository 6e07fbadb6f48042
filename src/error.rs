//! Errors as the HTTP client sees them: every failure becomes `application/problem+json`.
//!
//! [`ApiError`] is the one error type of the REST layer; its `ResponseError` impl is the
//! only place that decides a status code and a `code` string. Framework errors that never
//! pass through a handler (unknown paths, wrong methods, oversized bodies) are rewritten
//! into the same shape by [`problem_for_framework_errors`], so no client ever sees actix's
//! plain-text defaults. Internal errors are logged with their cause and answered with a
//! bare 500: no SQL text, no stack trace, nothing from the environment.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::ServiceResponse;
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::ErrorHandlerResponse;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// One problem with one field of the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    /// Path to the field, such as `items[0].qty` or `delivery.lat`.
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The body of every error answer (RFC 9457 with a stable `code`).
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    pub status: u16,
    /// Stable snake_case identifier clients branch on.
    pub code: String,
    pub title: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
}

/// Every way a REST request can fail.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not JSON at all (syntax error, truncated, empty).
    #[error("malformed JSON: {0}")]
    InvalidJson(String),
    /// The request is well-formed but some fields are wrong.
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    /// A request-level validation problem not tied to one field.
    #[error("{code}: {detail}")]
    Unprocessable { code: &'static str, detail: String },
    #[error("bad request: {0}")]
    BadRequest(String),
    /// A 400 with a more specific code (`invalid_signature`).
    #[error("{code}: {detail}")]
    Refused { code: &'static str, detail: String },
    #[error("unauthorized")]
    Unauthorized,
    /// A 401 with a more specific code: `invalid_credentials`, `invalid_code`, or
    /// `unauthorized` with a detail (a refresh token that no longer works).
    #[error("{code}: {detail}")]
    Unauthenticated { code: &'static str, detail: String },
    #[error("forbidden")]
    Forbidden,
    #[error("not found")]
    NotFound,
    /// A state conflict; `code` is `conflict` or a more specific one (`email_taken`, …).
    #[error("{code}: {detail}")]
    Conflict { code: &'static str, detail: String },
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 409 `insufficient_stock`, naming the short items.
    #[error("insufficient stock")]
    InsufficientStock(Vec<FieldError>),
    /// 422 `prescription_required`, naming the prescription-only items.
    #[error("prescription required")]
    PrescriptionRequired(Vec<FieldError>),
    #[error("payload too large")]
    PayloadTooLarge,
    #[error("unsupported media type")]
    UnsupportedMediaType,
    #[error("rate limited, retry after {retry_after_s}s")]
    RateLimited { retry_after_s: u64 },
    /// A dependency (database, Redis) does not answer.
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// A bug or an infrastructure failure; the cause is logged, never sent.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError::new(field, message)])
    }

    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::Conflict {
            code: "conflict",
            detail: detail.into(),
        }
    }

    /// The stable `code` of the problem body.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidJson(_) => "invalid_json",
            Self::Validation(_) => "validation_failed",
            Self::Unprocessable { code, .. }
            | Self::Conflict { code, .. }
            | Self::Refused { code, .. }
            | Self::Unauthenticated { code, .. } => code,
            Self::BadRequest(_) => "bad_request",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::InsufficientStock(_) => "insufficient_stock",
            Self::PrescriptionRequired(_) => "prescription_required",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::RateLimited { .. } => "rate_limited",
            Self::Unavailable(_) => "unavailable",
            Self::Internal(_) => "internal_error",
        }
    }

    fn title(&self) -> &'static str {
        match self {
            Self::InvalidJson(_) => "Malformed JSON",
            Self::Validation(_) => "Validation failed",
            Self::Unprocessable { .. } => "Request cannot be processed",
            Self::BadRequest(_) | Self::Refused { .. } => "Bad request",
            Self::Unauthorized | Self::Unauthenticated { .. } => "Authentication required",
            Self::Forbidden => "Forbidden",
            Self::NotFound => "Not found",
            Self::Conflict { .. } => "Conflict",
            Self::MethodNotAllowed => "Method not allowed",
            Self::InsufficientStock(_) => "Insufficient stock",
            Self::PrescriptionRequired(_) => "Prescription required",
            Self::PayloadTooLarge => "Payload too large",
            Self::UnsupportedMediaType => "Unsupported media type",
            Self::RateLimited { .. } => "Too many requests",
            Self::Unavailable(_) => "Service unavailable",
            Self::Internal(_) => "Internal server error",
        }
    }

    fn detail(&self) -> Option<String> {
        match self {
            Self::InvalidJson(d)
            | Self::BadRequest(d)
            | Self::Unprocessable { detail: d, .. }
            | Self::Refused { detail: d, .. }
            | Self::Conflict { detail: d, .. }
            | Self::Unauthenticated { detail: d, .. }
            | Self::Unavailable(d) => Some(d.clone()),
            Self::Validation(errors) => Some(format!("{} field(s) are invalid", errors.len())),
            Self::InsufficientStock(_) => {
                Some("no pharmacy that could serve this order has every item in stock".into())
            }
            Self::PrescriptionRequired(_) => Some(
                "these items are sold only against a prescription: upload one (POST /api/v1/prescriptions) and send its id as prescription_id".into(),
            ),
            Self::Unauthorized => {
                Some("a valid access token is required (Authorization: Bearer <token>)".into())
            }
            Self::RateLimited { retry_after_s } => {
                Some(format!("try again in {retry_after_s} second(s)"))
            }
            _ => None,
        }
    }

    pub fn problem(&self) -> Problem {
        Problem {
            status: self.status_code().as_u16(),
            code: self.code().to_owned(),
            title: self.title().to_owned(),
            detail: self.detail(),
            errors: match self {
                Self::Validation(errors)
                | Self::InsufficientStock(errors)
                | Self::PrescriptionRequired(errors) => Some(errors.clone()),
                _ => None,
            },
        }
    }
}

/// An order actor's refusal, as the contract's errors.
impl From<medify_actors::order::OrderError> for ApiError {
    fn from(e: medify_actors::order::OrderError) -> Self {
        use medify_actors::order::OrderError;
        match e {
            OrderError::NotFound => Self::NotFound,
            OrderError::Forbidden => Self::Forbidden,
            OrderError::Conflict(detail) => Self::conflict(detail),
            OrderError::Stale => Self::conflict("the order changed meanwhile; try again"),
            OrderError::InvalidCode => Self::Unauthenticated {
                code: "invalid_code",
                detail: "wrong delivery code".into(),
            },
            OrderError::RateLimited(retry_after_s) => Self::RateLimited { retry_after_s },
            OrderError::Storage(detail) => Self::Internal(anyhow::anyhow!(detail)),
            e @ OrderError::Unavailable => Self::Unavailable(e.to_string()),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::InvalidJson(_) | Self::BadRequest(_) | Self::Refused { .. } => {
                StatusCode::BAD_REQUEST
            }
            Self::Validation(_) | Self::Unprocessable { .. } | Self::PrescriptionRequired(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            Self::Unauthorized | Self::Unauthenticated { .. } => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::InsufficientStock(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let Self::Internal(cause) = self {
            tracing::error!(error = format!("{cause:#}"), "internal error");
        }
        let mut res = problem_response(&self.problem());
        if let Self::RateLimited { retry_after_s } = self {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_s));
        }
        if let Self::Unauthorized | Self::Unauthenticated { .. } = self {
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        res
    }
}

/// Collects field problems so a request learns all of them at once.
#[derive(Debug, Default)]
pub struct FieldErrors(Vec<FieldError>);

impl FieldErrors {
    /// The parsed value, or `None` with the problem recorded under `field`.
    pub fn check<T>(&mut self, field: &str, parsed: Result<T, String>) -> Option<T> {
        match parsed {
            Ok(v) => Some(v),
            Err(message) => {
                self.0.push(FieldError::new(field, message));
                None
            }
        }
    }

    /// The value of a required field, or `None` with "is required" recorded.
    pub fn required<'a, T: ?Sized>(&mut self, field: &str, value: Option<&'a T>) -> Option<&'a T> {
        if value.is_none() {
            self.0.push(FieldError::new(field, "is required"));
        }
        value
    }

    pub fn add(&mut self, field: &str, message: impl Into<String>) {
        self.0.push(FieldError::new(field, message));
    }

    /// `Err(422)` if anything was recorded.
    pub fn finish(self) -> Result<(), ApiError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation(self.0))
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        Self::Internal(anyhow::Error::new(e).context("database error"))
    }
}

/// Renders a problem body with its status and media type.
pub fn problem_response(problem: &Problem) -> HttpResponse {
    let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::to_string(problem).unwrap_or_else(|_| {
        r#"{"status":500,"code":"internal_error","title":"Internal server error"}"#.to_owned()
    });
    HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, PROBLEM_JSON))
        .body(body)
}

/// The problem body for an error status that no handler produced.
fn problem_for_status(status: StatusCode) -> Problem {
    let (code, title) = match status {
        StatusCode::NOT_FOUND => ("not_found", "Not found"),
        StatusCode::METHOD_NOT_ALLOWED => ("method_not_allowed", "Method not allowed"),
        StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", "Payload too large"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ("unsupported_media_type", "Unsupported media type"),
        StatusCode::BAD_REQUEST => ("bad_request", "Bad request"),
        StatusCode::UNAUTHORIZED => ("unauthorized", "Authentication required"),
        StatusCode::FORBIDDEN => ("forbidden", "Forbidden"),
        StatusCode::REQUEST_TIMEOUT => ("request_timeout", "Request timeout"),
        s if s.is_server_error() => ("internal_error", "Internal server error"),
        _ => ("bad_request", "Bad request"),
    };
    Problem {
        status: status.as_u16(),
        code: code.to_owned(),
        title: title.to_owned(),
        detail: None,
        errors: None,
    }
}

/// `ErrorHandlers` hook: any error response that is not already problem+json (actix's own
/// 404/405/413 and friends) is replaced by a problem body with the same status.
pub fn problem_for_framework_errors<B: MessageBody>(
    res: ServiceResponse<B>,
) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let is_problem = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|ct| ct.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
    if is_problem {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let status = res.status();
    let (req, _old) = res.into_parts();
    let new = problem_response(&problem_for_status(status));
    Ok(ErrorHandlerResponse::Response(
        ServiceResponse::new(req, new).map_body(|_, b| EitherBody::right(b.boxed())),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_never_reveal_their_cause() {
        let err = ApiError::from(anyhow::anyhow!("SELECT * FROM users WHERE password_hash"));
        let p = err.problem();
        assert_eq!(p.status, 500);
        assert_eq!(p.code, "internal_error");
        let text = serde_json::to_string(&p).expect("serialises");
        assert!(!text.contains("SELECT"), "{text}");
    }

    #[test]
    fn validation_lists_fields() {
        let err = ApiError::field("items[0].qty", "must be between 1 and 100");
        let p = err.problem();
        assert_eq!(p.status, 422);
        assert_eq!(p.code, "validation_failed");
        assert_eq!(p.errors.as_ref().map(Vec::len), Some(1));
    }

    #[test]
    fn rate_limited_sets_retry_after() {
        let res = ApiError::RateLimited { retry_after_s: 7 }.error_response();
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            res.headers().get(header::RETRY_AFTER).map(|v| v.as_bytes()),
            Some(&b"7"[..])
        );
    }
}
