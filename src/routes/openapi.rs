//! `GET /api/v1/openapi.json`: the OpenAPI 3 document, generated from the handlers.

use actix_web::{get, web, HttpResponse};
use utoipa::OpenApi;

use crate::error::{FieldError, Problem};
use crate::routes::health;

/// Every REST endpoint, collected from the handlers' annotations.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Medify dispatch",
        description = "Realtime medicine-delivery dispatch. Errors are application/problem+json \
                       with a stable `code`; see the Problem schema."
    ),
    paths(health::healthz, health::readyz, health::metrics, openapi_json),
    components(schemas(Problem, FieldError, health::Health, health::Readiness)),
    tags(
        (name = "ops", description = "Health, readiness, metrics and this document"),
    )
)]
pub struct ApiDoc;

/// The document, rendered once at start-up.
pub struct OpenApiJson(pub String);

impl OpenApiJson {
    pub fn render() -> Self {
        Self(
            ApiDoc::openapi()
                .to_json()
                .unwrap_or_else(|_| "{}".to_owned()),
        )
    }
}

/// The OpenAPI 3 document of every REST endpoint.
#[utoipa::path(
    tag = "ops",
    responses((status = 200, description = "OpenAPI 3 document", content_type = "application/json"))
)]
#[get("/api/v1/openapi.json")]
pub async fn openapi_json(doc: web::Data<OpenApiJson>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(doc.0.clone())
}
