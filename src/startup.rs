//! Start-up: settings in, a running server out.
//!
//! [`Application::build`] connects the store, applies migrations, binds the listener and
//! assembles the actix-web app; the binary and every integration test go through it, so
//! tests exercise exactly what production runs. Binding to port 0 picks a free port,
//! which [`Application::port`] reports.
//!
//! Shutdown: the binary installs its SIGTERM / SIGINT handler ([`shutdown_signal`]) before
//! building, and [`Application::run_until`] then stops accepting, gives in-flight requests
//! `MEDIFY_SHUTDOWN_TIMEOUT_S` to finish, closes the database pool and returns.

use std::future::Future;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::middleware::{from_fn, ErrorHandlers};
use actix_web::{web, App, HttpRequest, HttpResponse};
use anyhow::Context;

use crate::auth::jwt::JwtKeys;
use crate::auth::otp::LogSender;
use crate::auth::password::Passwords;
use crate::auth::rate_limit::RateLimiter;
use crate::bus::redis::RedisBus;
use crate::bus::{EventHandler, InProcessBus};
use crate::catalog::Catalog;
use crate::cluster::dispatch::{Dispatch, FencedJournal, Seat};
use crate::cluster::places::Places;
use crate::config::{AdminBootstrap, ObjectStoreSettings, Settings};
use crate::domain::Role;
use crate::error::{problem_for_framework_errors, ApiError};
use crate::extract;
use crate::notify::{
    LogNotifier, NotificationWriter, Notifier, OrderGauge, SmtpNotifier, TrackingFanout,
};
use crate::objects::local::LocalFolder;
use crate::objects::s3::S3Bucket;
use crate::objects::Objects;
use crate::redis::Redis;
use crate::routes::{self, openapi::OpenApiJson};
use crate::state::AppState;
use crate::store::offers::OfferWriter;
use crate::store::riders::TrailWriter;
use crate::store::users::NewUser;
use crate::store::Store;
use crate::telemetry::{self, Metrics};
use medify_actors::fleet::Fleet;
use medify_actors::inventory::Inventory;
use medify_actors::matcher::{Matcher, MatcherConfig};
use medify_actors::order::{OrderDeps, OrderRegistry};
use medify_actors::ports::{EventBus, OrderJournal};
use medify_actors::rider::{RiderDeps, Riders};
use medify_actors::tracking::Watchers;

/// A server bound to its port, ready to run.
pub struct Application {
    port: u16,
    server: Server,
    store: Store,
    state: web::Data<AppState>,
}

impl Application {
    /// Connects, migrates, binds and assembles the server. Nothing is served until
    /// [`Application::run_until_stopped`] is awaited (or the server is spawned).
    ///
    /// The steps, in order: open the store; settle what a crash left (admin account,
    /// stock reservations); start the core (inventory shards, event bus, matcher, order
    /// and rider actors) and its background loops; then bind and serve.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let store = open_store(&settings).await?;
        let redis = match &settings.redis {
            Some(redis) => Some(Redis::new(redis).context("invalid REDIS_URL")?),
            None => None,
        };
        let passwords = Passwords::new(settings.workers.max(2))?;
        if let Some(admin) = &settings.admin {
            bootstrap_admin(&store, &passwords, admin).await?;
        }
        let catalog = Catalog::load(&store)
            .await
            .context("could not load the catalog")?;
        let inventory = Inventory::start(settings.inventory_shards, Arc::new(store.clone()));
        tracing::info!(
            medicines = catalog.medicines().len(),
            pharmacies = catalog.pharmacies().len(),
            inventory_shards = inventory.shard_count(),
            "catalog loaded"
        );
        repair_stock(&settings, &store, &inventory).await?;

        let metrics = start_metrics(&store).await?;
        let watchers = Watchers::new();
        let instance = uuid::Uuid::now_v7();
        if let (true, Some(redis)) = (settings.cluster.enabled, redis.as_ref()) {
            watchers.set_relay(crate::cluster::tracking::RedisRelay::start(
                redis.clone(),
                watchers.clone(),
                instance,
                settings.cluster.tracking_batch,
            ));
        }
        let bus = start_bus(
            &settings,
            &store,
            redis.as_ref(),
            (&metrics, &watchers),
            instance,
        )?;
        crate::bus::start_relay(store.clone(), bus.clone());
        let core = Core {
            store: &store,
            bus: &bus,
            inventory: &inventory,
            metrics: &metrics,
            watchers: &watchers,
        };
        let cluster_redis = redis.as_ref().filter(|_| settings.cluster.enabled);
        let (orders, riders, dispatch) = start_dispatch(&settings, core, cluster_redis).await?;
        spawn_active_order_sweep(orders.clone());
        spawn_expiry_sweep(store.clone(), settings.sweep_interval);

        let cluster = crate::cluster::Cluster::new(
            &settings.node_id,
            &settings.cluster,
            redis.as_ref(),
            riders.clone(),
            dispatch,
        );
        cluster.spawn_heartbeat();
        let state = web::Data::new(AppState {
            settings: Arc::new(settings.clone()),
            store: store.clone(),
            limiter: RateLimiter::new(redis.clone()),
            redis,
            metrics,
            jwt: JwtKeys::new(settings.jwt_secret.expose()),
            passwords,
            sms: Arc::new(LogSender),
            catalog,
            inventory,
            bus,
            orders,
            riders,
            watchers,
            track_admissions: crate::ws::admission::TrackAdmissions::new(
                settings.limits.track_sockets_per_order,
                settings.limits.track_sockets_per_user,
            ),
            ops: crate::ws::fleet_feed::OpsFeed::new(),
            payments: Arc::new(crate::payments::LocalIntents),
            instance,
            objects: open_objects(&settings.objects)?,
            cluster,
        });
        state
            .ops
            .start(state.riders.fleet().clone(), state.store.clone());
        crate::catalog_sync::start(state.clone());
        serve(&settings, store, state)
    }

    /// The shared state (tests drive actors through it).
    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    /// The port the server is bound to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until the server is stopped, then closes the database pool. Tests use this;
    /// the binary uses [`Application::run_until`] with its signal handler.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.run_until(std::future::pending()).await
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets in-flight requests
    /// finish (up to `MEDIFY_SHUTDOWN_TIMEOUT_S`) and closes the database pool.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> std::io::Result<()> {
        let handle = self.server.handle();
        let mut server = self.server;
        let result = tokio::select! {
            result = &mut server => result,
            () = shutdown => {
                tracing::info!("shutdown requested: leaving, closing rider sockets, draining in-flight requests");
                self.state.cluster.leave().await;
                let riders = self.state.riders.close_for_restart();
                tracing::info!(riders, "rider sockets closed with 1012 (service restart)");
                actix_web::rt::spawn(async move { handle.stop(true).await });
                server.await
            }
        };
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

/// The parts of the core the dispatch actors are built on.
#[derive(Clone, Copy)]
struct Core<'a> {
    store: &'a Store,
    bus: &'a Arc<dyn EventBus>,
    inventory: &'a Inventory,
    metrics: &'a Metrics,
    watchers: &'a Watchers,
}

/// Opens the database and applies the migrations.
async fn open_store(settings: &Settings) -> anyhow::Result<Store> {
    let store = Store::connect(&settings.database)
        .await
        .context("could not open the database")?;
    let applied = store
        .migrate()
        .await
        .context("could not apply database migrations")?;
    tracing::info!(backend = store.backend(), applied, "database ready");
    Ok(store)
}

/// The object store `OBJECT_STORE` names (uploaded prescriptions).
fn open_objects(settings: &ObjectStoreSettings) -> anyhow::Result<Arc<dyn Objects>> {
    Ok(match settings {
        ObjectStoreSettings::Folder(root) => Arc::new(LocalFolder::new(root.clone())),
        ObjectStoreSettings::S3(s3) => {
            Arc::new(S3Bucket::new(s3).context("could not set up the S3 object store")?)
        }
    })
}

/// Stock held for orders that a crash left half-done goes back to the shelf (or off it)
/// before this node serves, and every minute after, for as long as it runs.
async fn repair_stock(
    settings: &Settings,
    store: &Store,
    inventory: &Inventory,
) -> anyhow::Result<()> {
    let grace = settings.limits.reservation_grace;
    let repaired = crate::repair::repair_reservations(store, inventory, grace)
        .await
        .context("could not repair stock reservations")?;
    if repaired != crate::repair::Repaired::default() {
        tracing::warn!(
            released = repaired.released,
            committed = repaired.committed,
            "settled stock reservations left by a crash"
        );
    }
    crate::repair::spawn_reservation_repair(store.clone(), inventory.clone(), grace);
    Ok(())
}

/// The Prometheus registry, with the order gauge primed from storage.
async fn start_metrics(store: &Store) -> anyhow::Result<Metrics> {
    let metrics = Metrics::new().context("could not register metrics")?;
    for (status, count) in store.order_counts().await? {
        metrics
            .orders
            .with_label_values(&[status.as_str()])
            .set(count);
    }
    Ok(metrics)
}

/// The event bus with its handlers: node-local ones (gauges, tracking fan-out) and durable
/// ones (notifications); Redis Streams when Redis is configured, else the embedded journal.
fn start_bus(
    settings: &Settings,
    store: &Store,
    redis: Option<&Redis>,
    (metrics, watchers): (&Metrics, &Watchers),
    instance: uuid::Uuid,
) -> anyhow::Result<Arc<dyn EventBus>> {
    let local: Vec<Arc<dyn EventHandler>> = vec![
        Arc::new(OrderGauge::new(metrics.orders.clone())),
        Arc::new(TrackingFanout::new(watchers.clone())),
    ];
    let notifier: Arc<dyn Notifier> = match &settings.smtp {
        Some(smtp) => Arc::new(SmtpNotifier::new(smtp, store.clone())?),
        None => Arc::new(LogNotifier),
    };
    let durable: Vec<Arc<dyn EventHandler>> =
        vec![Arc::new(NotificationWriter::new(store.clone(), notifier))];
    Ok(match redis {
        Some(redis) => Arc::new(RedisBus::start(
            redis.clone(),
            &settings.node_id,
            instance,
            local,
            durable,
            settings.bus_claim_idle,
        )),
        None => Arc::new(InProcessBus::start(store.clone(), local, durable)),
    })
}

/// The matcher, the order actors (every active order rehydrated) and the rider sessions;
/// in a cluster (`cluster` is its Redis), the node's part in dispatch, which decides where
/// the matcher and the order actors run.
async fn start_dispatch(
    settings: &Settings,
    core: Core<'_>,
    cluster: Option<&Redis>,
) -> anyhow::Result<(OrderRegistry, Riders, Option<Dispatch>)> {
    let fleet = Fleet::new();
    let d = &settings.dispatch;
    let latency = core.metrics.assignment_latency.clone();
    let offers = core.metrics.offers.clone();
    let matcher_config = MatcherConfig {
        resolution: d.h3_resolution,
        shard_resolution: d.shard_resolution,
        search_radius_m: d.search_radius_m,
        batch_window: d.batch_window,
        offer_timeout: d.offer_timeout,
        strategy: d.strategy,
        on_assigned: Arc::new(move |waited| latency.observe(waited.as_secs_f64())),
        on_offer: Arc::new(move |outcome| offers.with_label_values(&[outcome]).inc()),
        offer_log: Some(Arc::new(OfferWriter::start(core.store.clone()))),
        ..MatcherConfig::default()
    };
    let matcher = Matcher::start(matcher_config, settings.workers);
    let seat = cluster.map(|_| {
        let places = Places::new(core.store.clone(), matcher.clone());
        (Seat::new(&settings.node_id), places)
    });
    let journal: Arc<dyn OrderJournal> = match &seat {
        Some((seat, places)) => Arc::new(FencedJournal::new(
            core.store.clone(),
            seat.clone(),
            places.clone(),
        )),
        None => Arc::new(core.store.clone()),
    };
    let orders = OrderRegistry::new(
        OrderDeps {
            journal,
            bus: core.bus.clone(),
            inventory: core.inventory.clone(),
            dispatch_timeout: settings.dispatch_timeout,
            pickup_timeout: settings.limits.pickup_timeout,
            review_timeout: settings.checkout.review_timeout,
            payment_timeout: settings.checkout.payment_timeout,
            matcher: Some(matcher.clone()),
        },
        settings.workers,
    );
    let dispatch = match (seat, cluster) {
        (Some(seat), Some(redis)) => Some(
            Dispatch::start(
                &settings.cluster,
                seat,
                (core.store.clone(), redis.clone()),
                matcher.clone(),
                orders.clone(),
            )
            .await,
        ),
        _ => None,
    };
    // As the operator left it (in a cluster, the node taking dispatch over reads it).
    if dispatch.is_none() && core.store.dispatch_paused().await? {
        let _ = matcher.set_paused(true).await;
    }
    let active = orders
        .rehydrate()
        .await
        .map_err(|e| anyhow::anyhow!("could not rehydrate active orders: {e}"))?;
    tracing::info!(active, "active orders rehydrated");
    let riders = Riders::new(RiderDeps {
        fleet,
        matcher,
        orders: orders.clone(),
        directory: Arc::new(core.store.clone()),
        trail: Arc::new(TrailWriter::start(core.store.clone())),
        grace: d.rider_grace,
        bus: core.bus.clone(),
        watchers: core.watchers.clone(),
    });
    Ok((orders, riders, dispatch))
}

/// An order actor that could not load its order (database briefly down) stops; this sweep
/// brings every active order back into an actor within a minute.
fn spawn_active_order_sweep(orders: OrderRegistry) {
    actix_web::rt::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(60)).await;
            if let Err(e) = orders.rehydrate().await {
                tracing::warn!(error = %e, "active-order sweep failed; retrying in a minute");
            }
        }
    });
}

/// Binds the listener and starts the HTTP workers over `state`.
fn serve(
    settings: &Settings,
    store: Store,
    state: web::Data<AppState>,
) -> anyhow::Result<Application> {
    let listener = TcpListener::bind(settings.bind)
        .with_context(|| format!("could not listen on {}", settings.bind))?;
    let address = listener.local_addr()?;
    let openapi = web::Data::new(OpenApiJson::render());
    let app_state = state.clone();
    let metrics = web::Data::new(state.metrics.clone());
    let server = crate::server::serve(
        listener,
        crate::server::Listening {
            workers: settings.workers,
            shutdown_timeout: settings.shutdown_timeout,
        },
        move || {
            App::new()
                .app_data(state.clone())
                .app_data(metrics.clone())
                .app_data(openapi.clone())
                .app_data(extract::payload_config())
                .app_data(extract::path_config())
                .app_data(extract::query_config())
                .configure(routes::configure)
                .default_service(web::to(not_routed))
                .wrap(from_fn(crate::etag::conditional_get))
                .wrap(ErrorHandlers::new().default_handler(problem_for_framework_errors))
                .wrap(from_fn(telemetry::observe))
        },
    )?;
    tracing::info!(address = %address, "listening");
    Ok(Application {
        port: address.port(),
        server,
        store,
        state: app_state,
    })
}

/// Resolves on the first SIGTERM or SIGINT. The handlers are installed when this is
/// called, not when the future is first polled, so a signal that arrives during start-up
/// is not lost (and does not kill the process with the default action).
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async move {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}

/// Deletes expired refresh tokens and spent OTP codes every `interval`
/// ([`Store::sweep_expired`]); a failed sweep is logged and tried again next time.
fn spawn_expiry_sweep(store: Store, interval: Duration) {
    actix_web::rt::spawn(async move {
        loop {
            tokio::time::sleep(interval).await;
            match store.sweep_expired(crate::store::now()).await {
                Ok(swept) => tracing::debug!(
                    refresh_tokens = swept.refresh_tokens,
                    otp_codes = swept.otp_codes,
                    idempotency_keys = swept.idempotency_keys,
                    "expired rows swept"
                ),
                Err(e) => tracing::warn!(error = %e, "expiry sweep failed; retrying next interval"),
            }
        }
    });
}

/// Requests no route took: 405 when the path exists under another method, else 404.
async fn not_routed(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    if req.resource_map().has_resource(req.path()) {
        Err(ApiError::MethodNotAllowed)
    } else {
        Err(ApiError::NotFound)
    }
}

/// Creates the first admin from `MEDIFY_ADMIN_EMAIL` / `MEDIFY_ADMIN_PASSWORD` unless an
/// account with that email exists (whatever its role: start-up never changes accounts).
async fn bootstrap_admin(
    store: &Store,
    passwords: &Passwords,
    admin: &AdminBootstrap,
) -> anyhow::Result<()> {
    if store.email_exists(admin.email.as_str()).await? {
        tracing::info!("admin bootstrap: account exists, left unchanged");
        return Ok(());
    }
    let hash = passwords.hash(&admin.password).await?;
    let result = store
        .insert_user(&NewUser {
            name: "Administrator",
            email: Some(admin.email.as_str()),
            phone: None,
            password_hash: Some(&hash),
            role: Role::Admin,
            pharmacy_id: None,
        })
        .await;
    match result {
        Ok(user) => {
            tracing::info!(user_id = %user.id, "admin bootstrap: first admin created");
            Ok(())
        }
        // Another node created it at the same moment.
        Err(e) if crate::store::unique_violation(&e).is_some() => Ok(()),
        Err(e) => Err(e.into()),
    }
}
