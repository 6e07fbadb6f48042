//! Liveness, readiness and metrics: `/healthz`, `/readyz`, `/metrics`.
//!
//! `/healthz` answers while the process runs and touches nothing else, so it stays fast
//! under any load. `/readyz` checks each dependency with a short timeout: the database
//! always, Redis when configured. Failure causes are logged, never sent (a connection
//! error can name hosts and users).

use std::time::Duration;

use actix_web::{get, web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ApiError, Problem};
use crate::state::AppState;

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: &'static str,
}

#[derive(Serialize, ToSchema)]
pub struct Readiness {
    /// `ok` when every dependency answers.
    pub status: &'static str,
    /// `sqlite` or `postgres`.
    pub database: &'static str,
    /// `ok`, or `disabled` when `REDIS_URL` is not set.
    pub redis: &'static str,
}

/// Liveness: 200 while the process runs.
#[utoipa::path(tag = "ops", responses((status = 200, body = Health)))]
#[get("/healthz")]
pub async fn healthz() -> web::Json<Health> {
    web::Json(Health { status: "ok" })
}

/// Readiness: 200 when the database (and Redis, if configured) answer, else 503.
#[utoipa::path(
    tag = "ops",
    responses(
        (status = 200, body = Readiness),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> Result<web::Json<Readiness>, ApiError> {
    let mut failed = Vec::new();
    match tokio::time::timeout(CHECK_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: database check failed");
            failed.push("database");
        }
        Err(_) => {
            tracing::warn!("readiness: database check timed out");
            failed.push("database");
        }
    }
    let redis = match &state.redis {
        None => "disabled",
        Some(redis) => match tokio::time::timeout(CHECK_TIMEOUT, redis.ping()).await {
            Ok(Ok(())) => "ok",
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "readiness: redis check failed");
                failed.push("redis");
                "unavailable"
            }
            Err(_) => {
                tracing::warn!("readiness: redis check timed out");
                failed.push("redis");
                "unavailable"
            }
        },
    };
    if !failed.is_empty() {
        return Err(ApiError::Unavailable(format!(
            "not answering: {}",
            failed.join(", ")
        )));
    }
    Ok(web::Json(Readiness {
        status: "ok",
        database: state.store.backend(),
        redis,
    }))
}

/// Prometheus text exposition.
#[utoipa::path(
    tag = "ops",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain"))
)]
#[get("/metrics")]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render())
}
