//! The application's shared state: what every handler and socket can reach, behind
//! `web::Data`. It lives apart from [`crate::startup`], which builds it, so that routes
//! depend on this module and start-up depends on the routes, not both on each other.

use std::sync::Arc;

use medify_actors::inventory::Inventory;
use medify_actors::order::OrderRegistry;
use medify_actors::ports::EventBus;
use medify_actors::rider::Riders;
use medify_actors::tracking::Watchers;

use crate::auth::jwt::JwtKeys;
use crate::auth::otp::SmsSender;
use crate::auth::password::Passwords;
use crate::auth::rate_limit::RateLimiter;
use crate::catalog::Catalog;
use crate::config::Settings;
use crate::redis::Redis;
use crate::store::Store;
use crate::telemetry::Metrics;

/// What every handler can reach, shared behind `web::Data`.
pub struct AppState {
    pub settings: Arc<Settings>,
    pub store: Store,
    pub redis: Option<Redis>,
    pub metrics: Metrics,
    pub jwt: JwtKeys,
    pub passwords: Passwords,
    pub limiter: RateLimiter,
    pub sms: Arc<dyn SmsSender>,
    pub catalog: Catalog,
    pub inventory: Inventory,
    pub bus: Arc<dyn EventBus>,
    pub orders: OrderRegistry,
    pub riders: Riders,
    /// Customers watching orders.
    pub watchers: Watchers,
    /// Open tracking sockets per order and per user.
    pub track_admissions: crate::ws::admission::TrackAdmissions,
    /// The admins' fleet picture (`/ws/ops`).
    pub ops: crate::ws::fleet_feed::OpsFeed,
    /// Where intents for online payments come from.
    pub payments: Arc<dyn crate::payments::PaymentProvider>,
    /// This application instance (several may share a process in tests).
    pub instance: uuid::Uuid,
    /// This node's place in the cluster (alone: a cluster of one).
    pub cluster: crate::cluster::Cluster,
    /// Where uploaded files (prescriptions) live.
    pub objects: Arc<dyn crate::objects::Objects>,
}
