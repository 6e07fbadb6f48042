//! `POST /api/v1/payments/webhook`: the payment provider's signed reports. No token: the
//! signature (`Medify-Signature`, HMAC-SHA256 with `PAYMENT_WEBHOOK_SECRET`) is the
//! credential, checked over the raw body before anything in it is read.

use actix_web::{post, web, HttpRequest, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use crate::app::payment_reports::{self, PaymentReport, Received};
use crate::error::{ApiError, Problem};
use crate::extract::decode_json;
use crate::payments::verify;
use crate::state::AppState;

/// The answer to a report.
#[derive(Serialize, ToSchema)]
pub struct WebhookAck {
    /// `applied`, or `duplicate` for an event id seen before (no second effect).
    pub status: &'static str,
}

/// A payment provider's report: `payment.succeeded`, `payment.failed` or
/// `refund.succeeded` for an order's intent.
#[utoipa::path(
    tag = "orders",
    params(
        ("Medify-Signature" = String, Header,
         description = "`t=<unix seconds>,v1=<hex HMAC-SHA256 of \"<t>.<raw body>\" keyed with PAYMENT_WEBHOOK_SECRET>`"),
    ),
    request_body = PaymentReport,
    responses(
        (status = 200, description = "applied, or a repeat of a known event id (no second effect)", body = WebhookAck),
        (status = 400, description = "`invalid_signature`: missing or wrong signature, or `t` more than 300 s from now; `invalid_json` for a signed body that is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`: no order has this intent", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`conflict`: the order kept changing; the provider should retry", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload_too_large`: a body over 64 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`: a field is wrong, or `amount_cents` is not the order's total (no effect)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`unavailable`: in a cluster, dispatch is moving to another node (a few seconds); retry", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/api/v1/payments/webhook")]
pub async fn payment_webhook(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let header = req
        .headers()
        .get("medify-signature")
        .and_then(|v| v.to_str().ok());
    let secret = state
        .settings
        .checkout
        .webhook_secret
        .as_ref()
        .map(|s| s.expose());
    let now_s = chrono::Utc::now().timestamp();
    if let Err(e) = verify(secret, header, &body, now_s) {
        tracing::info!(reason = %e, "payment webhook refused");
        return Err(ApiError::Refused {
            code: "invalid_signature",
            detail: e.to_string(),
        });
    }
    let report: PaymentReport = decode_json(&body)?;
    let status = match payment_reports::receive(&state, &report).await? {
        Received::Applied => "applied",
        Received::Repeat => "duplicate",
    };
    Ok(HttpResponse::Ok().json(WebhookAck { status }))
}
