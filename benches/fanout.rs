//! Fan-out latency: from a rider's `location` frame to a customer's tracking socket.
//!
//! The server is the release `medify` binary in its own process (SQLite, 2 workers); this
//! bench is the client on the same 2 cores. It sets up `FANOUT_DELIVERIES` (default 1 000)
//! active deliveries through the public API: pharmacies with stock, as many riders (each
//! accepts the offer it gets), one customer placing every order; then opens two tracking
//! sockets per order (a phone and a laptop) and has every rider send one fix a second for
//! `FANOUT_SECONDS` (default 20). Each watcher matches the `ts` of every `rider_location`
//! it receives to the moment that fix was sent, and the bench prints p50 / p99 of that
//! delay over all watchers, with how many fixes reached them (conflation may skip some
//! when a watcher falls behind; none should be skipped at this rate).
//!
//! With `FANOUT_CLUSTER=1` the server is two nodes on a PostgreSQL database and a Redis
//! key prefix of their own (`FANOUT_PG`, default the local server's `postgres` database as
//! user `postgres`; `FANOUT_REDIS`, default `redis://127.0.0.1:6379`): the first started runs
//! dispatch and holds every watcher, the second holds every rider, so each position crosses
//! from one node to the other (tracking relay) and the riders' reports and offers cross too.
//! The bench also prints the servers' CPU time per fix over the moving phase (both nodes
//! summed in a cluster), to compare a cluster with one node on the same load.
//!
//! Run: `cargo bench --bench fanout` (env: `FANOUT_DELIVERIES`, `FANOUT_SECONDS`; `FANOUT_BIN`,
//! another server binary to measure; `FANOUT_CLUSTER`).

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{
    call, client_runtime, cpu_seconds, env_or, ms, percentile, rss_kib, spawn_node, spawn_server,
};
use futures_util::{SinkExt, StreamExt};
use medify::auth::jwt::JwtKeys;
use medify::domain::Role;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

const SECRET: &str = "fanout-bench-secret-fanout-bench-secret";
const ADMIN: (&str, &str) = ("admin@fanout.example", "fanout-admin-password");
/// Pharmacies the deliveries are spread over (a few km apart).
const PHARMACIES: usize = 20;
const CENTRE: (f64, f64) = (12.9716, 77.5946);

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// When each fix was sent: (order index, ts) → instant.
type Sent = Arc<Mutex<HashMap<(usize, i64), Instant>>>;

fn pharmacy_at(i: usize) -> (f64, f64) {
    let (row, col) = ((i / 5) as f64, (i % 5) as f64);
    (CENTRE.0 + row * 0.02, CENTRE.1 + col * 0.02)
}

async fn ws(address: &str, path: &str, token: &str) -> Ws {
    let url = format!("ws://{address}{path}?access_token={token}");
    tokio_tungstenite::connect_async(url)
        .await
        .expect("WebSocket")
        .0
}

async fn next_json(ws: &mut Ws) -> Option<Value> {
    while let Some(Ok(msg)) = ws.next().await {
        if let Message::Text(t) = msg {
            return serde_json::from_str(&t).ok();
        }
    }
    None
}

/// What a rider task needs besides its socket.
struct RiderPlan {
    index: usize,
    address: String,
    token: String,
    spot: (f64, f64),
    seconds: u64,
    /// Where in each second this rider sends (riders are not synchronised).
    offset: Duration,
    /// Where the rider says which order it got.
    assigned: tokio::sync::mpsc::Sender<(usize, String)>,
    /// Set when every watcher is connected: start moving.
    go: tokio::sync::watch::Receiver<bool>,
    sent: Sent,
}

fn fix(lat: f64, lng: f64) -> (i64, Message) {
    let ts = chrono::Utc::now().timestamp_millis();
    let frame =
        json!({"type": "location", "lat": lat, "lng": lng, "ts": ts, "accuracy": 5, "heading": 0});
    (ts, Message::Text(frame.to_string().into()))
}

/// One rider: goes available at its spot (a fix every 5 s so it never counts as stale),
/// accepts the first offer, reports its order, waits for the start, then moves 8 m north
/// a second for `seconds`, noting when each fix left. Returns the fixes sent.
async fn rider(plan: RiderPlan) -> u64 {
    let RiderPlan {
        index,
        address,
        token,
        spot,
        seconds,
        offset,
        assigned,
        mut go,
        sent,
    } = plan;
    let (mut sink, mut stream) = ws(&address, "/ws/rider", &token).await.split();
    // Read everything the server sends for the whole run (pongs go out on the next write).
    let (frames_tx, mut frames) = tokio::sync::mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        while let Some(Ok(msg)) = stream.next().await {
            if let Message::Text(t) = msg {
                if let Ok(v) = serde_json::from_str::<Value>(&t) {
                    let _ = frames_tx.send(v);
                }
            }
        }
    });
    let available = json!({"type": "availability", "available": true}).to_string();
    sink.send(fix(spot.0, spot.1).1).await.expect("send");
    sink.send(Message::Text(available.into()))
        .await
        .expect("send");
    let mut keepalive = tokio::time::interval(Duration::from_secs(5));
    let order = loop {
        tokio::select! {
            frame = frames.recv() => {
                let frame = frame.expect("the rider socket closed before an assignment");
                match frame["type"].as_str() {
                    Some("offer") => {
                        let accept = json!({"type": "offer_response", "offer_id": frame["offer_id"], "accept": true});
                        sink.send(Message::Text(accept.to_string().into())).await.expect("send");
                    }
                    Some("assigned") => break frame["order_id"].as_str().unwrap_or_default().to_owned(),
                    _ => {}
                }
            }
            _ = keepalive.tick() => {
                sink.send(fix(spot.0, spot.1).1).await.expect("send");
            }
        }
    };
    assigned.send((index, order)).await.expect("report");
    while !*go.borrow_and_update() {
        tokio::select! {
            changed = go.changed() => changed.expect("start signal"),
            _ = keepalive.tick() => { sink.send(fix(spot.0, spot.1).1).await.expect("send"); }
        }
    }
    tokio::time::sleep(offset).await;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut fixes = 0;
    for step in 1..=seconds {
        tick.tick().await;
        let (ts, frame) = fix(spot.0 + step as f64 * 0.000_072, spot.1);
        sent.lock()
            .expect("sent")
            .insert((index, ts), Instant::now());
        if sink.send(frame).await.is_ok() {
            fixes += 1;
        }
    }
    // Let the last fix arrive before the socket goes.
    tokio::time::sleep(Duration::from_secs(1)).await;
    reader.abort();
    fixes
}

const SETTINGS: [(&str, &str); 8] = [
    ("MEDIFY_WORKERS", "2"),
    ("MEDIFY_ADMIN_EMAIL", ADMIN.0),
    ("MEDIFY_ADMIN_PASSWORD", ADMIN.1),
    ("RATE_LIMIT_AUTH_PER_IP", "1000000"),
    ("RATE_LIMIT_AUTH_PER_ACCOUNT", "1000000"),
    ("MAX_OPEN_ORDERS_PER_CUSTOMER", "1000000"),
    ("RATE_LIMIT_ORDERS_PER_MINUTE", "1000000"),
    // The bench's one customer watches every delivery twice.
    ("MAX_TRACK_SOCKETS_PER_USER", "100000"),
];

/// The server processes under test, where riders and watchers connect, and what to clean.
struct Servers {
    children: Vec<std::process::Child>,
    riders_at: String,
    watchers_at: String,
    sqlite: Option<std::path::PathBuf>,
    /// The database and the (Redis URL, key prefix) of a cluster.
    cluster: Option<(common::scratch::Database, (String, String))>,
}

fn one_node(bin: &str) -> Servers {
    let db = std::env::temp_dir().join(format!("medify-fanout-{}.db", Uuid::now_v7()));
    let (child, address) = spawn_server(bin, &db, SECRET, &SETTINGS);
    Servers {
        children: vec![child],
        riders_at: address.clone(),
        watchers_at: address,
        sqlite: Some(db),
        cluster: None,
    }
}

fn two_nodes(bin: &str, rt: &tokio::runtime::Runtime) -> Servers {
    let pg = std::env::var("FANOUT_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let redis = std::env::var("FANOUT_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let db = rt.block_on(common::scratch::Database::create(&pg, "fanout"));
    let prefix = format!("{}:", db.name);
    let node = |id: &str| {
        let mut vars = SETTINGS.to_vec();
        vars.extend([
            ("REDIS_URL", redis.as_str()),
            ("REDIS_KEY_PREFIX", prefix.as_str()),
            ("MEDIFY_CLUSTER", "1"),
            ("MEDIFY_NODE_ID", id),
        ]);
        spawn_node(bin, &db.url, SECRET, &vars)
    };
    // Started first, it takes the dispatch lease.
    let (holder, watchers_at) = node("fanout-holder");
    let (edge, riders_at) = node("fanout-edge");
    Servers {
        children: vec![holder, edge],
        riders_at,
        watchers_at,
        sqlite: None,
        cluster: Some((db, (redis, prefix))),
    }
}

impl Servers {
    fn pids(&self) -> Vec<u32> {
        self.children.iter().map(std::process::Child::id).collect()
    }

    fn cpu(&self) -> f64 {
        self.pids().into_iter().map(cpu_seconds).sum()
    }

    fn rss_kib(&self) -> u64 {
        self.pids().into_iter().map(rss_kib).sum()
    }

    fn stop(mut self, rt: &tokio::runtime::Runtime) {
        for child in &mut self.children {
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let _ = child.wait();
        }
        if let Some(db) = &self.sqlite {
            common::remove_sqlite(db);
        }
        if let Some((db, (redis, prefix))) = self.cluster.take() {
            rt.block_on(async {
                db.drop_now().await;
                common::scratch::clear_redis(&redis, &prefix).await;
            });
        }
    }
}

fn main() {
    let deliveries: usize = env_or("FANOUT_DELIVERIES", 1_000);
    let seconds: u64 = env_or("FANOUT_SECONDS", 20);
    // `FANOUT_BIN`: another server binary (an older build, to compare).
    let bin = std::env::var("FANOUT_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_medify").into());
    let rt = client_runtime();
    let clustered = std::env::var("FANOUT_CLUSTER").is_ok_and(|v| v == "1");
    let servers = if clustered {
        two_nodes(&bin, &rt)
    } else {
        one_node(&bin)
    };
    let address = servers.riders_at.clone();
    let watch_at = servers.watchers_at.clone();
    rt.block_on(async {
        let keys = JwtKeys::new(SECRET.as_bytes());
        let setup = Instant::now();
        let login = call(&address, "POST", "/api/v1/auth/login", "", &json!({"email": ADMIN.0, "password": ADMIN.1})).await;
        let admin = login["access_token"].as_str().expect("admin token").to_owned();
        let medicine = call(&address, "POST", "/api/v1/medicines", &admin,
            &json!({"name": "Paracetamol 500", "sku": "FANOUT-1", "price_cents": 120})).await["id"].clone();
        let mut pharmacies = Vec::new();
        for i in 0..PHARMACIES {
            let (lat, lng) = pharmacy_at(i);
            let p = call(&address, "POST", "/api/v1/pharmacies", &admin,
                &json!({"name": format!("Pharmacy {i}"), "lat": lat, "lng": lng, "address": "Main Road"})).await;
            let id = p["id"].as_str().expect("pharmacy id");
            pharmacies.push(p["id"].clone());
            call(&address, "PUT", &format!("/api/v1/pharmacies/{id}/stock"), &admin,
                &json!({"items": [{"medicine_id": medicine, "quantity": deliveries}]})).await;
        }
        let customer = call(&address, "POST", "/api/v1/auth/register", "",
            &json!({"name": "Customer", "email": "customer@fanout.example", "password": "customer-password"})).await;
        let customer = keys
            .issue(Uuid::parse_str(customer["user"]["id"].as_str().expect("id")).expect("uuid"), Role::Customer, chrono::Utc::now())
            .expect("token");

        // Riders register (their accounts are real: orders point at them), sit at a
        // pharmacy and take whatever they are offered.
        let gate = Arc::new(tokio::sync::Semaphore::new(8));
        let mut registering = Vec::new();
        for i in 0..deliveries {
            let (address, gate) = (address.clone(), gate.clone());
            registering.push(tokio::spawn(async move {
                let _permit = gate.acquire_owned().await.expect("gate");
                let body = json!({"name": format!("Rider {i}"), "email": format!("rider{i}@fanout.example"),
                                  "password": "rider-password", "role": "rider"});
                call(&address, "POST", "/api/v1/auth/register", "", &body).await["user"]["id"]
                    .as_str()
                    .and_then(|id| Uuid::parse_str(id).ok())
                    .expect("rider id")
            }));
        }
        let sent: Sent = Arc::new(Mutex::new(HashMap::new()));
        let (assigned_tx, mut assigned) = tokio::sync::mpsc::channel(deliveries);
        let (go_tx, go) = tokio::sync::watch::channel(false);
        let mut riders = Vec::new();
        for (index, r) in registering.into_iter().enumerate() {
            let id = r.await.expect("register");
            let token = keys.issue(id, Role::Rider, chrono::Utc::now()).expect("token");
            let (lat, lng) = pharmacy_at(index % PHARMACIES);
            let spot = (lat + 0.001 * ((index / PHARMACIES) % 5) as f64, lng);
            riders.push(tokio::spawn(rider(RiderPlan {
                index,
                address: address.clone(),
                token,
                spot,
                seconds,
                offset: Duration::from_secs(1).mul_f64(index as f64 / deliveries as f64),
                assigned: assigned_tx.clone(),
                go: go.clone(),
                sent: sent.clone(),
            })));
        }
        for i in 0..deliveries {
            let (lat, lng) = pharmacy_at(i % PHARMACIES);
            // Each pharmacy gets as many orders as it has riders nearby.
            let body = json!({"items": [{"medicine_id": medicine, "qty": 1}],
                              "pharmacy_id": pharmacies[i % PHARMACIES],
                              "delivery": {"lat": lat + 0.008, "lng": lng + 0.004, "address": "Home"}});
            call(&address, "POST", "/api/v1/orders", &customer, &body).await;
        }
        let mut delivering = Vec::new();
        for _ in 0..deliveries {
            delivering.push(assigned.recv().await.expect("every order assigned"));
        }
        println!(
            "set up {deliveries} deliveries in {:.1} s",
            setup.elapsed().as_secs_f64()
        );

        // Two watchers per order, keyed by the rider serving it.
        let delays: Arc<Mutex<Vec<Duration>>> = Arc::new(Mutex::new(Vec::new()));
        let before = servers.rss_kib();
        let mut watchers = Vec::new();
        for (index, order) in &delivering {
            for _ in 0..2 {
                let mut socket = ws(&watch_at, &format!("/ws/orders/{order}/track"), &customer).await;
                let snapshot = next_json(&mut socket).await.expect("snapshot");
                assert_eq!(snapshot["type"], "snapshot");
                let (sent, delays, index) = (sent.clone(), delays.clone(), *index);
                watchers.push(tokio::spawn(async move {
                    while let Some(frame) = next_json(&mut socket).await {
                        if frame["type"] != "rider_location" {
                            continue;
                        }
                        let ts = frame["ts"].as_i64().unwrap_or_default();
                        let at = sent.lock().expect("sent").get(&(index, ts)).copied();
                        if let Some(at) = at {
                            let delay = at.elapsed();
                            delays.lock().expect("delays").push(delay);
                        }
                    }
                }));
            }
        }
        println!(
            "{} watchers connected; server RSS {} MiB",
            watchers.len(),
            before / 1024
        );

        // Go: every rider sends a fix a second, spread evenly over the second.
        let started = Instant::now();
        let cpu_before = servers.cpu();
        go_tx.send_replace(true);
        let mut fixes = 0;
        for r in riders {
            fixes += r.await.expect("rider");
        }
        let elapsed = started.elapsed().as_secs_f64();
        let cpu = servers.cpu() - cpu_before;
        let peak = servers.rss_kib();
        for w in &watchers {
            w.abort();
        }
        let mut delays = std::mem::take(&mut *delays.lock().expect("delays"));
        delays.sort_unstable();
        println!(
            "{fixes} fixes in {elapsed:.1} s ({:.0}/s) to {} watchers: {} of {} positions delivered; \
             rider send -> watcher receive p50 {} p99 {} max {}; server RSS {} MiB",
            fixes as f64 / elapsed,
            watchers.len(),
            delays.len(),
            fixes * 2,
            ms(percentile(&delays, 0.5)),
            ms(percentile(&delays, 0.99)),
            ms(percentile(&delays, 1.0)),
            peak / 1024
        );
        println!(
            "server CPU {cpu:.2} s over the moving phase ({}): {:.1} µs per fix",
            if clustered { "both nodes" } else { "one node" },
            cpu * 1e6 / (fixes.max(1) as f64)
        );
    });
    servers.stop(&rt);
}
