//! Start-up: settings in, a running server out.
//!
//! [`Application::build`] connects the store, applies migrations, binds the listener and
//! assembles the actix-web app; the binary and every integration test go through it, so
//! tests exercise exactly what production runs. Binding to port 0 picks a free port,
//! which [`Application::port`] reports.
//!
//! Shutdown: actix-web stops accepting on SIGTERM / SIGINT and gives in-flight requests
//! `MEDIFY_SHUTDOWN_TIMEOUT_S` to finish; [`Application::run_until_stopped`] then closes the
//! database pool and returns.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::middleware::{from_fn, ErrorHandlers};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use anyhow::Context;

use crate::config::Settings;
use crate::error::{problem_for_framework_errors, ApiError};
use crate::extract;
use crate::redis::Redis;
use crate::routes::{self, openapi::OpenApiJson};
use crate::store::Store;
use crate::telemetry::{self, Metrics};

/// What every handler can reach, shared behind `web::Data`.
pub struct AppState {
    pub settings: Arc<Settings>,
    pub store: Store,
    pub redis: Option<Redis>,
    pub metrics: Metrics,
}

/// A server bound to its port, ready to run.
pub struct Application {
    port: u16,
    server: Server,
    store: Store,
}

impl Application {
    /// Connects, migrates, binds and assembles the server. Nothing is served until
    /// [`Application::run_until_stopped`] is awaited (or the server is spawned).
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let store = Store::connect(&settings.database)
            .await
            .context("could not open the database")?;
        let applied = store
            .migrate()
            .await
            .context("could not apply database migrations")?;
        tracing::info!(backend = store.backend(), applied, "database ready");

        let redis = match &settings.redis {
            Some(redis) => Some(Redis::new(redis).context("invalid REDIS_URL")?),
            None => None,
        };

        let listener = TcpListener::bind(settings.bind)
            .with_context(|| format!("could not listen on {}", settings.bind))?;
        let address = listener.local_addr()?;
        let port = address.port();

        let state = web::Data::new(AppState {
            settings: Arc::new(settings.clone()),
            store: store.clone(),
            redis,
            metrics: Metrics::new().context("could not register metrics")?,
        });
        let openapi = web::Data::new(OpenApiJson::render());

        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(openapi.clone())
                .app_data(extract::payload_config())
                .app_data(extract::path_config())
                .app_data(extract::query_config())
                .configure(routes::configure)
                .default_service(web::to(not_routed))
                .wrap(ErrorHandlers::new().default_handler(problem_for_framework_errors))
                .wrap(from_fn(telemetry::observe))
        })
        .workers(settings.workers)
        .shutdown_timeout(settings.shutdown_timeout_s)
        .listen(listener)?
        .run();

        tracing::info!(address = %address, "listening");
        Ok(Self {
            port,
            server,
            store,
        })
    }

    /// The port the server is bound to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGTERM / SIGINT (or the server handle stops it), then closes the
    /// database pool.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        tracing::info!("server stopped, closing the database");
        if tokio::time::timeout(Duration::from_secs(5), self.store.close())
            .await
            .is_err()
        {
            tracing::warn!("database pool did not close within 5 s");
        }
        result
    }
}

/// Requests no route took: 405 when the path exists under another method, else 404.
async fn not_routed(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    if req.resource_map().has_resource(req.path()) {
        Err(ApiError::MethodNotAllowed)
    } else {
        Err(ApiError::NotFound)
    }
}
