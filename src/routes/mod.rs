//! HTTP routes, one file per resource, and the OpenAPI document generated from them.
//!
//! [`configure`] mounts every route; `startup` wraps them in the middleware stack. Each
//! handler carries a `#[utoipa::path]` annotation and is listed in [`ApiDoc`], so the
//! document served at `/api/v1/openapi.json` is generated from the handlers themselves.

pub mod addresses;
pub mod auth;
pub mod cluster;
pub mod dispatch;
pub mod health;
pub mod medicines;
pub mod notifications;
pub mod openapi;
pub mod orders;
pub mod pages;
pub mod payments;
pub mod pharmacies;
pub mod prescriptions;
pub mod riders;
pub mod users;

use actix_web::web;

pub use openapi::ApiDoc;

/// Mounts every route of the application.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(health::healthz)
        .service(health::readyz)
        .service(health::metrics)
        .service(pages::index)
        .service(pages::track)
        .service(pages::ops)
        .service(pages::admin)
        .service(pages::pharmacy)
        .service(pages::asset)
        .service(openapi::openapi_json)
        .service(auth::register)
        .service(auth::login)
        .service(auth::refresh_tokens)
        .service(auth::logout)
        .service(auth::otp_request)
        .service(auth::otp_verify)
        .service(users::me)
        .service(users::update_me)
        .service(users::request_phone_verification)
        .service(users::verify_phone)
        .service(users::create_user)
        .service(addresses::list_addresses)
        .service(addresses::create_address)
        .service(addresses::update_address)
        .service(addresses::delete_address)
        .service(medicines::search)
        .service(medicines::get_medicine)
        .service(medicines::create_medicine)
        .service(medicines::update_medicine)
        .service(medicines::delete_medicine)
        .service(pharmacies::create_pharmacy)
        .service(pharmacies::list_pharmacies)
        .service(pharmacies::get_pharmacy)
        .service(pharmacies::get_stock)
        .service(pharmacies::put_stock)
        .service(orders::place_order)
        .service(orders::list_orders)
        .service(orders::get_order)
        .service(orders::cancel_order)
        .service(orders::assign_order)
        .service(orders::order_trail)
        .service(orders::order_offers)
        .service(orders::order_timeline)
        .service(orders::review_prescription)
        .service(payments::payment_webhook)
        .service(notifications::list_notifications)
        .service(prescriptions::upload_prescription)
        .service(prescriptions::list_prescriptions)
        .service(prescriptions::get_prescription)
        .service(prescriptions::prescription_file)
        .service(riders::list_riders)
        .service(dispatch::set_dispatch)
        .service(dispatch::get_dispatch)
        .service(cluster::cluster)
        .route(
            crate::server::RIDER_SOCKET_PATH,
            web::get().to(crate::ws::rider::rider_socket),
        )
        .service(crate::ws::track::track_socket)
        .service(crate::ws::ops::ops_socket);
}
