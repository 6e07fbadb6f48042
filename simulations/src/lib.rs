//! `medify-sim`: a city simulator for Medify.
//!
//! [`run`] plays one [`Scenario`] against a running server: it creates the pharmacies,
//! catalog and stock as the admin, registers riders and customers through the public API,
//! brings every rider online over `/ws/rider`, places orders at the scenario's pace and
//! follows each one over `/ws/orders/{id}/track` until it is delivered, cancelled or
//! failed (or the drain timeout passes), then returns a [`Report`].
//!
//! Checkout (issue 17): a share of orders carries a prescription-only medicine (the
//! customer uploads a prescription first; each pharmacy's pharmacist agent reviews them),
//! and a share is paid online (a payment provider agent reports each payment over the
//! signed webhook).
//!
//! Everything random comes from the scenario's seed: each agent has its own RNG stream
//! derived from it, so a rider's choices do not depend on how tasks interleave.
//!
//! Modules: [`scenario`] (TOML), [`api`] / [`http`] (REST), [`rider`], [`customer`],
//! [`pharmacist`] and [`provider`] (agents), [`prescription`] (the uploaded file),
//! [`metrics`] (what agents record), [`report`], [`server`] (starting a `medify` child
//! process), [`cluster`] (several nodes behind HAProxy on PostgreSQL and Redis, and the
//! failure of one), [`backing`] (the cluster's database and Redis prefix), [`geo`].

pub mod api;
pub mod backing;
pub mod cluster;
pub mod customer;
pub mod geo;
pub mod http;
pub mod metrics;
pub mod pharmacist;
pub mod prescription;
pub mod provider;
pub mod report;
pub mod rider;
pub mod scenario;
pub mod server;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::api::{Api, Session};
use crate::customer::{count_failure, Customer, OrderPlan};
use crate::geo::Point;
use crate::metrics::Metrics;
use crate::pharmacist::PharmacistAgent;
use crate::provider::{Payer, Provider};
pub use crate::report::Report;
use crate::rider::RiderAgent;
pub use crate::scenario::{Matching, Scenario};

/// The admin account the sim signs in with (it creates pharmacies, medicines and stock).
#[derive(Debug, Clone)]
pub struct Admin {
    pub email: String,
    pub password: String,
}

/// Independent, reproducible RNG streams from one seed (SplitMix64 over seed, stream and
/// index), so that each agent's randomness is its own.
pub fn stream_rng(seed: u64, stream: u64, index: u64) -> StdRng {
    let mut z = seed
        ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ index.wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    StdRng::seed_from_u64(z ^ (z >> 31))
}

const STREAM_WORLD: u64 = 1;
const STREAM_RIDER: u64 = 2;
const STREAM_ORDERS: u64 = 3;
/// Per order: prescription-only line or not, online payment or not.
const STREAM_CHECKOUT: u64 = 4;
/// Per order: the pharmacist's think time and decision.
pub(crate) const STREAM_REVIEW: u64 = 5;
/// Per order: the provider's delay and the payment's fate.
pub(crate) const STREAM_PAYMENT: u64 = 6;

/// A uniform draw in `[lo, hi]` (`lo` when the range is empty).
pub(crate) fn draw_in(rng: &mut StdRng, [lo, hi]: [f64; 2]) -> f64 {
    if hi > lo {
        rng.random_range(lo..=hi)
    } else {
        lo
    }
}

/// A simulated catalog entry and stock per pharmacy.
const STOCK_PER_MEDICINE: i64 = 100_000;

fn bar(progress: bool, len: u64, template: &str) -> ProgressBar {
    if !progress {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template(template) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.enable_steady_tick(Duration::from_millis(200));
    pb
}

/// Plays `scenario` against the server at `base`; `webhook_secret` is the server's
/// `PAYMENT_WEBHOOK_SECRET` (needed when the scenario pays online: the sim plays the
/// payment provider); `progress` shows progress bars on the terminal.
pub async fn run(
    base: &str,
    scenario: &Scenario,
    admin: &Admin,
    webhook_secret: Option<&str>,
    progress: bool,
) -> anyhow::Result<Report> {
    run_with(base, scenario, admin, webhook_secret, progress, None).await
}

/// [`run`], telling `orders_started` when the order schedule starts (every rider online,
/// the set-up done): a cluster run counts its failure plan from there.
pub async fn run_with(
    base: &str,
    scenario: &Scenario,
    admin: &Admin,
    webhook_secret: Option<&str>,
    progress: bool,
    orders_started: Option<tokio::sync::oneshot::Sender<()>>,
) -> anyhow::Result<Report> {
    scenario.validate()?;
    let webhook_secret = match webhook_secret {
        Some(s) if !s.is_empty() => Some(s.as_bytes().to_vec()),
        _ if scenario.orders.online_share > 0.0 => anyhow::bail!(
            "scenario {:?} pays online (orders.online_share > 0): the sim plays the payment \
             provider and needs the server's PAYMENT_WEBHOOK_SECRET",
            scenario.name
        ),
        _ => None,
    };
    let reviews = scenario.orders.rx_share > 0.0;
    let rx_medicines = if reviews { scenario.rx_medicines } else { 0 };
    let api = Api::new(base)?;
    let metrics = Arc::new(Metrics::default());
    let setup_started = Instant::now();
    // Unique account names per run (not from the seed: a second run against the same
    // server must not collide with the first; names do not affect any random choice).
    let tag = format!("{:x}{:x}", metrics::now_ms(), std::process::id());
    let mut world_rng = stream_rng(scenario.seed, STREAM_WORLD, 0);
    let centre = scenario.area.centre();
    let radius = scenario.area.radius_m;

    // The admin's world: medicines, pharmacies, stock.
    let admin_session = api
        .login(&admin.email, &admin.password)
        .await
        .context("the admin could not sign in")?;
    let admin_token = admin_session.token(&api).await?;
    let setup_total = u64::from(scenario.medicines)
        + u64::from(rx_medicines)
        + u64::from(scenario.pharmacies) * if reviews { 2 } else { 1 }
        + u64::from(scenario.riders)
        + u64::from(scenario.customers);
    let pb = bar(
        progress,
        setup_total,
        "set-up  [{elapsed_precise}] [{bar:40}] {pos}/{len} {msg}",
    );
    pb.set_message("catalog");
    let mut medicines = Vec::new();
    for i in 0..scenario.medicines {
        let id = api
            .create_medicine(
                &admin_token,
                &format!("Sim medicine {i}"),
                &format!("SIM-{tag}-{i}"),
                100 + i64::from(i) * 25,
                false,
            )
            .await?;
        medicines.push(id);
        pb.inc(1);
    }
    let mut rx_catalog = Vec::new();
    for i in 0..rx_medicines {
        let id = api
            .create_medicine(
                &admin_token,
                &format!("Sim rx medicine {i}"),
                &format!("SIM-RX-{tag}-{i}"),
                400 + i64::from(i) * 50,
                true,
            )
            .await?;
        rx_catalog.push(id);
        pb.inc(1);
    }
    pb.set_message("pharmacies");
    let stock: Vec<(Uuid, i64)> = medicines
        .iter()
        .chain(&rx_catalog)
        .map(|m| (*m, STOCK_PER_MEDICINE))
        .collect();
    let mut pharmacies = Vec::new();
    for i in 0..scenario.pharmacies {
        let at = centre.random_within(radius, &mut world_rng);
        let id = api
            .create_pharmacy(&admin_token, &format!("Sim pharmacy {i}"), at)
            .await?;
        api.put_stock(&admin_token, id, &stock).await?;
        pharmacies.push(id);
        pb.inc(1);
    }

    let password = format!("sim-password-{tag}");
    // One staff account per pharmacy, to review its prescriptions.
    let pharmacists = if reviews {
        pb.set_message("pharmacists");
        create_pharmacists(
            &api,
            &admin_token,
            &pharmacies,
            &tag,
            &password,
            scenario.timing.setup_concurrency,
            &pb,
        )
        .await?
    } else {
        Vec::new()
    };

    // Accounts register themselves (and sign in), a few at a time.
    pb.set_message("riders and customers");
    let rider_starts: Vec<Point> = (0..scenario.riders)
        .map(|_| centre.random_within(radius, &mut world_rng))
        .collect();
    let homes: Vec<Point> = (0..scenario.customers)
        .map(|_| centre.random_within(radius, &mut world_rng))
        .collect();
    let riders = register_all(
        &api,
        "rider",
        scenario.riders,
        &tag,
        &password,
        scenario.timing.setup_concurrency,
        &pb,
    )
    .await?;
    let customer_sessions = register_all(
        &api,
        "customer",
        scenario.customers,
        &tag,
        &password,
        scenario.timing.setup_concurrency,
        &pb,
    )
    .await?;
    let customers: Vec<Arc<Customer>> = customer_sessions
        .into_iter()
        .zip(homes)
        .map(|(session, home)| Arc::new(Customer { session, home }))
        .collect();

    // Riders online.
    pb.set_message("riders going online");
    let (stop_tx, stop_rx) = watch::channel(false);
    let (online_tx, mut online_rx) = mpsc::channel(scenario.riders.max(1) as usize);
    let gate = Arc::new(Semaphore::new(scenario.timing.setup_concurrency.max(8)));
    let mut agents = JoinSet::new();
    for (i, (session, start)) in riders.into_iter().zip(rider_starts).enumerate() {
        let agent = RiderAgent {
            index: i,
            api: api.clone(),
            session,
            metrics: metrics.clone(),
            behaviour: scenario.rider.clone(),
            area: scenario.area.clone(),
            start,
            rng: stream_rng(scenario.seed, STREAM_RIDER, i as u64),
            stop: stop_rx.clone(),
            connect_gate: gate.clone(),
            online: online_tx.clone(),
        };
        agents.spawn(agent.run());
    }
    drop(online_tx);
    let online_bar = bar(
        progress,
        u64::from(scenario.riders),
        "online  [{elapsed_precise}] [{bar:40}] {pos}/{len} riders",
    );
    let mut online = 0u32;
    let online_deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while online < scenario.riders {
        match tokio::time::timeout_at(online_deadline, online_rx.recv()).await {
            Ok(Some(_)) => {
                online += 1;
                online_bar.inc(1);
            }
            Ok(None) | Err(_) => break,
        }
    }
    online_bar.finish_and_clear();
    pb.finish_and_clear();
    if online < scenario.riders {
        let _ = stop_tx.send(true);
        anyhow::bail!(
            "only {online} of {} riders came online within 120 s (protocol errors so far: {:?})",
            scenario.riders,
            metrics.errors()
        );
    }
    let setup_s = setup_started.elapsed().as_secs_f64();

    // The pharmacists at their desks, the payment provider at its gateway.
    for session in pharmacists {
        let agent = PharmacistAgent {
            api: api.clone(),
            session,
            metrics: metrics.clone(),
            behaviour: scenario.pharmacist.clone(),
            seed: scenario.seed,
            stop: stop_rx.clone(),
        };
        agents.spawn(agent.run());
    }
    let payer = match webhook_secret {
        Some(secret) => {
            let (payer, provider) = Provider::new(
                api.clone(),
                metrics.clone(),
                secret,
                scenario.provider.clone(),
                scenario.seed,
                tag.clone(),
                stop_rx.clone(),
            );
            agents.spawn(provider.run());
            payer
        }
        None => Payer::none(metrics.clone()),
    };

    // Orders.
    let planned = u64::from(scenario.orders.total());
    let run_started = Instant::now();
    if let Some(tx) = orders_started {
        let _ = tx.send(());
    }
    let start_at =
        tokio::time::Instant::now() + Duration::from_secs_f64(scenario.orders.start_after_s);
    let schedule = order_schedule(scenario, &medicines, &rx_catalog, &customers);
    let run_bar = bar(
        progress,
        planned,
        "orders  [{elapsed_precise}] [{bar:40}] {pos}/{len} final | {msg}",
    );
    let placed_all = Arc::new(AtomicU64::new(0));
    let mut orders_task = {
        let (api, metrics, stop_rx) = (api.clone(), metrics.clone(), stop_rx.clone());
        let placed_all = placed_all.clone();
        tokio::spawn(async move {
            let mut tasks = JoinSet::new();
            for (offset, plan) in schedule {
                tokio::time::sleep_until(start_at + offset).await;
                tasks.spawn(customer::place_and_track(
                    api.clone(),
                    metrics.clone(),
                    payer.clone(),
                    plan,
                    stop_rx.clone(),
                ));
                placed_all.fetch_add(1, Ordering::Relaxed);
            }
            while tasks.join_next().await.is_some() {}
        })
    };

    // Wait: every order final, or the drain timeout after the last one was sent.
    let mut last_locations = 0u64;
    let mut last_sample = Instant::now();
    let mut last_line = Instant::now();
    let mut drain_deadline: Option<Instant> = None;
    let mut orders_done = false;
    let completed = loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            r = &mut orders_task, if !orders_done => {
                orders_done = true;
                if let Err(e) = r {
                    tracing_like_warning(&format!("order task ended abnormally: {e}"));
                }
            }
        }
        let sent = placed_all.load(Ordering::Relaxed);
        let finished = metrics.finished() + Metrics::get(&metrics.place_failed);
        if sent >= planned && drain_deadline.is_none() {
            drain_deadline =
                Some(Instant::now() + Duration::from_secs_f64(scenario.timing.drain_timeout_s));
        }
        let locs = Metrics::get(&metrics.locations_sent);
        let dt = last_sample.elapsed().as_secs_f64();
        let rate = if dt > 0.0 {
            (locs - last_locations) as f64 / dt
        } else {
            0.0
        };
        let status = format!(
            "placed {} reviewed {} paid {} assigned {} delivered {} failed {} | {:.0} loc/s | errors {}",
            Metrics::get(&metrics.placed),
            Metrics::get(&metrics.reviews_approved) + Metrics::get(&metrics.reviews_rejected),
            Metrics::get(&metrics.payments_succeeded) + Metrics::get(&metrics.payments_failed),
            Metrics::get(&metrics.assigned),
            Metrics::get(&metrics.delivered),
            Metrics::get(&metrics.failed) + Metrics::get(&metrics.place_failed),
            rate,
            metrics.errors().values().sum::<u64>()
        );
        if dt >= 1.0 {
            last_locations = locs;
            last_sample = Instant::now();
        }
        run_bar.set_position(finished);
        run_bar.set_message(status.clone());
        if !progress && last_line.elapsed() >= Duration::from_secs(10) {
            last_line = Instant::now();
            eprintln!(
                "[{:>5.0} s] {}/{} final; {status}",
                run_started.elapsed().as_secs_f64(),
                finished,
                planned
            );
        }
        if sent >= planned && finished >= planned {
            break true;
        }
        if drain_deadline.is_some_and(|d| Instant::now() >= d) {
            break false;
        }
    };
    let run_s = run_started.elapsed().as_secs_f64();
    run_bar.finish_and_clear();

    // Stop every agent, then settle what the sockets did not tell: read open orders.
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while agents.join_next().await.is_some() {}
        if !orders_done {
            let _ = (&mut orders_task).await;
        }
    })
    .await;
    agents.abort_all();
    orders_task.abort();
    // Then count every order: those still open after that read are stuck, and the
    // server's own list of the run's customers' orders shows any the sim never heard of
    // (a placement whose answer was lost).
    let mut stuck = Vec::new();
    let mut tally = None;
    match admin_session.token(&api).await {
        Ok(token) => {
            for id in metrics.open_orders() {
                match api.order_status(&token, id).await {
                    Ok(status) => match metrics::Outcome::parse(&status) {
                        Some(outcome) => metrics.order_final(id, outcome),
                        None => stuck.push(report::LostOrder {
                            id,
                            status,
                            known_to_sim: true,
                        }),
                    },
                    Err(e) => {
                        count_failure(&metrics, "get order", &e);
                        stuck.push(report::LostOrder {
                            id,
                            status: "unknown".to_owned(),
                            known_to_sim: true,
                        });
                    }
                }
            }
            let ours: HashSet<Uuid> = customers.iter().map(|c| c.session.user_id).collect();
            match server_tally(&api, &token, &ours, &metrics).await {
                Ok(t) => tally = Some(t),
                Err(e) => count_failure(&metrics, "list orders", &e),
            }
        }
        Err(e) => count_failure(&metrics, "refresh", &e),
    }

    let mut report = Report::build(&metrics, planned);
    report.account_for(stuck, tally);
    report.scenario = scenario.name.clone();
    report.seed = scenario.seed;
    report.base = api.http.base().to_owned();
    report.riders = scenario.riders;
    report.pharmacies = scenario.pharmacies;
    report.customers = scenario.customers;
    report.setup_s = (setup_s * 10.0).round() / 10.0;
    report.run_s = (run_s * 10.0).round() / 10.0;
    report.completed = completed;
    report.location_msgs_per_s = if run_s > 0.0 {
        ((report.locations_sent as f64 / run_s) * 10.0).round() / 10.0
    } else {
        0.0
    };
    Ok(report)
}

/// Orders per page when the admin lists them.
const TALLY_PER_PAGE: u32 = 100;
/// Pages read at most (the newest 50 000 orders: the run's are among the newest).
const TALLY_MAX_PAGES: u32 = 500;

/// Reads every order of the run's customers as the admin sees them (newest first): how
/// many the server has, and those no customer got an answer for, with their statuses.
async fn server_tally(
    api: &Api,
    admin_token: &str,
    customers: &HashSet<Uuid>,
    metrics: &Metrics,
) -> anyhow::Result<report::ServerTally> {
    let mut tally = report::ServerTally::default();
    for page in 1..=TALLY_MAX_PAGES {
        let (orders, more) = api
            .orders_in(admin_token, None, page, TALLY_PER_PAGE)
            .await?;
        for (id, status, customer) in orders {
            if !customer.is_some_and(|c| customers.contains(&c)) {
                continue;
            }
            tally.on_server += 1;
            if metrics.index_of(id).is_none() {
                tally.unknown.push(report::LostOrder {
                    id,
                    status,
                    known_to_sim: false,
                });
            }
        }
        if !more {
            tally.complete = true;
            break;
        }
    }
    Ok(tally)
}

fn tracing_like_warning(msg: &str) {
    eprintln!("medify-sim: warning: {msg}");
}

/// Registers and signs in `count` accounts of `role`, `concurrency` at a time.
async fn register_all(
    api: &Api,
    role: &'static str,
    count: u32,
    tag: &str,
    password: &str,
    concurrency: usize,
    pb: &ProgressBar,
) -> anyhow::Result<Vec<Arc<Session>>> {
    let gate = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut set = JoinSet::new();
    for i in 0..count {
        let (api, gate, password) = (api.clone(), gate.clone(), password.to_owned());
        let email = format!("{role}-{i}.{tag}@sim.medify.test");
        let name = format!("Sim {role} {i}");
        set.spawn(async move {
            let _permit = gate.acquire_owned().await;
            let session = api
                .register(role, &name, &email, &password)
                .await
                .with_context(|| format!("could not register {email}"))?;
            anyhow::Ok((i, session))
        });
    }
    let mut out: Vec<Option<Arc<Session>>> = vec![None; count as usize];
    while let Some(joined) = set.join_next().await {
        let (i, session) = joined.context("a registration task panicked")??;
        out[i as usize] = Some(session);
        pb.inc(1);
    }
    Ok(out.into_iter().flatten().collect())
}

/// Creates one staff account per pharmacy (`role: pharmacy`), `concurrency` at a time,
/// each signed in; in the order of `pharmacies`.
async fn create_pharmacists(
    api: &Api,
    admin_token: &str,
    pharmacies: &[Uuid],
    tag: &str,
    password: &str,
    concurrency: usize,
    pb: &ProgressBar,
) -> anyhow::Result<Vec<Arc<Session>>> {
    let gate = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut set = JoinSet::new();
    for (i, pharmacy) in pharmacies.iter().copied().enumerate() {
        let (api, gate) = (api.clone(), gate.clone());
        let (admin_token, password) = (admin_token.to_owned(), password.to_owned());
        let email = format!("pharmacist-{i}.{tag}@sim.medify.test");
        set.spawn(async move {
            let _permit = gate.acquire_owned().await;
            let session = api
                .create_pharmacist(
                    &admin_token,
                    pharmacy,
                    &format!("Sim pharmacist {i}"),
                    &email,
                    &password,
                )
                .await
                .with_context(|| format!("could not create the pharmacist {email}"))?;
            anyhow::Ok((i, session))
        });
    }
    let mut out: Vec<Option<Arc<Session>>> = vec![None; pharmacies.len()];
    while let Some(joined) = set.join_next().await {
        let (i, session) = joined.context("a pharmacist task panicked")??;
        out[i] = Some(session);
        pb.inc(1);
    }
    Ok(out.into_iter().flatten().collect())
}

/// When each order is placed (offset from the start), by whom, what and where: all drawn
/// from the scenario's order stream. Whether it also carries a prescription-only line
/// (and which) and whether it is paid online come from the order's own checkout stream,
/// so scenarios without checkout settings place exactly the orders they always did.
fn order_schedule(
    scenario: &Scenario,
    medicines: &[Uuid],
    rx_medicines: &[Uuid],
    customers: &[Arc<Customer>],
) -> Vec<(Duration, OrderPlan)> {
    let mut rng = stream_rng(scenario.seed, STREAM_ORDERS, 0);
    let rate = scenario.orders.rate_per_s.unwrap_or(0.0);
    let [lo, hi] = scenario.orders.lines;
    let mut t = 0.0f64;
    let run_id = Uuid::now_v7().simple().to_string();
    (0..scenario.orders.total())
        .map(|i| {
            if rate > 0.0 && i > 0 {
                // Exponential gaps: Poisson arrivals at `rate`.
                let u: f64 = rng.random_range(f64::EPSILON..1.0);
                t += -u.ln() / rate;
            }
            let customer = customers[rng.random_range(0..customers.len())].clone();
            let n = rng.random_range(lo..=hi) as usize;
            let lines = sample(&mut rng, medicines.len(), n.min(medicines.len()))
                .into_iter()
                .map(|m| (medicines[m], rng.random_range(1..=2u32)))
                .collect();
            let to = customer.home.random_within(30.0, &mut rng);
            let mut checkout = stream_rng(scenario.seed, STREAM_CHECKOUT, u64::from(i));
            let rx = !rx_medicines.is_empty() && checkout.random_bool(scenario.orders.rx_share);
            let rx_line = rx.then(|| {
                let m = rx_medicines[checkout.random_range(0..rx_medicines.len())];
                (m, 1)
            });
            let online = checkout.random_bool(scenario.orders.online_share);
            let plan = OrderPlan {
                index: u64::from(i),
                customer,
                lines,
                rx_line,
                online,
                to,
                idempotency_key: format!("sim-{run_id}-{i}"),
            };
            (Duration::from_secs_f64(t), plan)
        })
        .collect()
}
