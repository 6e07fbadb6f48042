//! `GET /api/v1/openapi.json`: the OpenAPI 3 document, generated from the handlers.

use actix_web::{get, web, HttpResponse};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::catalog::Pharmacy;
use crate::domain::Role;
use crate::error::{FieldError, Problem};
use crate::routes::{
    auth, cluster, dispatch, health, medicines, notifications, orders, payments, pharmacies,
    prescriptions, riders, users,
};
use crate::store::catalog::{Medicine, StockRow};
use crate::store::notifications::Notification;
use crate::store::orders::{Delivery, OrderItem, OrderPharmacy, OrderRider, OrderView};
use crate::store::users::User;

/// Every REST endpoint, collected from the handlers' annotations.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Medify dispatch",
        description = "Realtime medicine-delivery dispatch. Errors are application/problem+json \
                       with a stable `code`; see the Problem schema."
    ),
    paths(
        health::healthz, health::readyz, health::metrics, openapi_json,
        auth::register, auth::login, auth::refresh_tokens, auth::logout,
        auth::otp_request, auth::otp_verify, users::me, users::update_me,
        users::request_phone_verification, users::verify_phone, users::create_user,
        medicines::search, medicines::get_medicine, medicines::create_medicine,
        medicines::update_medicine, medicines::delete_medicine,
        pharmacies::create_pharmacy, pharmacies::list_pharmacies, pharmacies::get_pharmacy,
        pharmacies::get_stock, pharmacies::put_stock,
        orders::place_order, orders::list_orders, orders::get_order, orders::cancel_order,
        orders::assign_order, orders::order_trail, orders::order_offers, orders::order_timeline,
        orders::review_prescription, payments::payment_webhook,
        notifications::list_notifications,
        prescriptions::upload_prescription, prescriptions::list_prescriptions,
        prescriptions::get_prescription, prescriptions::prescription_file,
        riders::list_riders, dispatch::set_dispatch, dispatch::get_dispatch, cluster::cluster,
        crate::routes::addresses::list_addresses, crate::routes::addresses::create_address,
        crate::routes::addresses::update_address, crate::routes::addresses::delete_address,
    ),
    components(schemas(
        Problem, FieldError, health::Health, health::Readiness, Role, User,
        auth::Tokens, auth::UserEnvelope, auth::RegisterRequest, auth::LoginRequest,
        auth::RefreshRequest, auth::OtpRequest, auth::OtpSent, auth::OtpVerify,
        users::AdminNewUser, users::ProfilePatch, users::PhoneCode, Medicine, medicines::NewMedicine, medicines::MedicinePatch,
        Pharmacy, pharmacies::NewPharmacy, pharmacies::NearbyPharmacy, pharmacies::StockUpdate,
        pharmacies::StockLineIn, StockRow, OrderView, OrderItem, OrderPharmacy, OrderRider,
        Delivery, crate::store::orders::OrderPayment, crate::schema::OrderStatusName,
        crate::schema::PaymentMethodName, crate::schema::PaymentStatusName,
        crate::schema::CancelReasonName, crate::schema::RiderStateName, crate::schema::LiveRiderStateName,
        crate::store::orders::TimelineEntry, cluster::ClusterView, cluster::RegionOwner, crate::cluster::membership::Node, orders::NewOrderRequest,
        crate::app::placement::PaymentChoice, orders::PrescriptionReview,
        crate::app::payment_reports::PaymentReport, crate::app::payment_reports::ReportKind,
        payments::WebhookAck, orders::NewItem, orders::DeliveryIn,
        orders::AssignRequest, orders::Trail, crate::store::offers::OfferRow, Notification, riders::RiderStatus,
        riders::RiderLocation, dispatch::DispatchControl, dispatch::DispatchState,
        crate::store::addresses::Address, crate::app::addresses::NewAddressRequest,
        crate::app::addresses::AddressPatch,
        crate::store::prescriptions::Prescription, crate::store::prescriptions::PrescriptionType,
    )),
    modifiers(&BearerAuth),
    tags(
        (name = "ops", description = "Health, readiness, metrics and this document"),
        (name = "auth", description = "Accounts, tokens and phone sign-in"),
        (name = "catalog", description = "Medicines: search and administration"),
        (name = "pharmacies", description = "Pharmacies, nearby search and stock"),
        (name = "orders", description = "Orders, their trail, and notifications"),
        (name = "addresses", description = "A customer's saved delivery addresses"),
        (name = "prescriptions", description = "Prescription uploads and their files"),
        (name = "riders", description = "The live fleet (the rider WebSocket is /ws/rider, see docs/protocol.md)"),
        (name = "cluster", description = "The nodes serving as one fleet"),
    )
)]
pub struct ApiDoc;

/// Declares the `bearer` security scheme the authenticated endpoints refer to.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

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
