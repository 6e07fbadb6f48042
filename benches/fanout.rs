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
//! Run: `cargo bench --bench fanout` (env: `FANOUT_DELIVERIES`, `FANOUT_SECONDS`).

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{http_request, ms, percentile, rss_kib, spawn_server};
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

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn call(address: &str, method: &str, path: &str, token: &str, body: &Value) -> Value {
    let (status, text) = http_request(address, method, path, Some(token), Some(body))
        .await
        .expect("HTTP answer");
    assert!(
        (200..300).contains(&status),
        "{method} {path}: {status} {text}"
    );
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

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

/// A rider who accepts the first offer it gets; returns its socket, order id and spot.
async fn rider(address: String, token: String, at: (f64, f64)) -> (Ws, String, (f64, f64)) {
    let mut socket = ws(&address, "/ws/rider", &token).await;
    let _welcome = next_json(&mut socket).await;
    let ts = chrono::Utc::now().timestamp_millis();
    for frame in [
        json!({"type": "location", "lat": at.0, "lng": at.1, "ts": ts, "accuracy": 5}),
        json!({"type": "availability", "available": true}),
    ] {
        socket
            .send(Message::Text(frame.to_string().into()))
            .await
            .expect("send");
    }
    loop {
        let frame = next_json(&mut socket).await.expect("an offer");
        match frame["type"].as_str() {
            Some("offer") => {
                let accept = json!({"type": "offer_response", "offer_id": frame["offer_id"], "accept": true});
                socket
                    .send(Message::Text(accept.to_string().into()))
                    .await
                    .expect("send");
            }
            Some("assigned") => {
                let order = frame["order_id"].as_str().unwrap_or_default().to_owned();
                return (socket, order, at);
            }
            _ => {}
        }
    }
}

fn main() {
    let deliveries: usize = env_or("FANOUT_DELIVERIES", 1_000);
    let seconds: u64 = env_or("FANOUT_SECONDS", 20);
    let db = std::env::temp_dir().join(format!("medify-fanout-{}.db", Uuid::now_v7()));
    let (mut server, address) = spawn_server(
        env!("CARGO_BIN_EXE_medify"),
        &db,
        SECRET,
        &[
            ("MEDIFY_WORKERS", "2"),
            ("MEDIFY_ADMIN_EMAIL", ADMIN.0),
            ("MEDIFY_ADMIN_PASSWORD", ADMIN.1),
            ("RATE_LIMIT_AUTH_PER_IP", "1000000"),
            ("RATE_LIMIT_AUTH_PER_ACCOUNT", "1000000"),
        ],
    );
    let pid = server.id();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let keys = JwtKeys::new(SECRET.as_bytes());
        let setup = Instant::now();
        let login = call(&address, "POST", "/api/v1/auth/login", "", &json!({"email": ADMIN.0, "password": ADMIN.1})).await;
        let admin = login["access_token"].as_str().expect("admin token").to_owned();
        let medicine = call(&address, "POST", "/api/v1/medicines", &admin,
            &json!({"name": "Paracetamol 500", "sku": "FANOUT-1", "price_cents": 120})).await["id"].clone();
        for i in 0..PHARMACIES {
            let (lat, lng) = pharmacy_at(i);
            let p = call(&address, "POST", "/api/v1/pharmacies", &admin,
                &json!({"name": format!("Pharmacy {i}"), "lat": lat, "lng": lng, "address": "Main Road"})).await;
            let id = p["id"].as_str().expect("pharmacy id");
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
        let mut riders = Vec::new();
        for (i, r) in registering.into_iter().enumerate() {
            let id = r.await.expect("register");
            let token = keys.issue(id, Role::Rider, chrono::Utc::now()).expect("token");
            let (lat, lng) = pharmacy_at(i % PHARMACIES);
            let spot = (lat + 0.001 * ((i / PHARMACIES) % 5) as f64, lng);
            riders.push(tokio::spawn(rider(address.clone(), token, spot)));
        }
        for i in 0..deliveries {
            let (lat, lng) = pharmacy_at(i % PHARMACIES);
            let body = json!({"items": [{"medicine_id": medicine, "qty": 1}],
                              "delivery": {"lat": lat + 0.01, "lng": lng + 0.005, "address": "Home"}});
            call(&address, "POST", "/api/v1/orders", &customer, &body).await;
        }
        let mut delivering = Vec::new();
        for r in riders {
            delivering.push(r.await.expect("rider assigned"));
        }
        println!(
            "set up {deliveries} deliveries in {:.1} s",
            setup.elapsed().as_secs_f64()
        );

        // Two watchers per order.
        let sent: Sent = Arc::new(Mutex::new(HashMap::new()));
        let delays: Arc<Mutex<Vec<Duration>>> = Arc::new(Mutex::new(Vec::new()));
        let before = rss_kib(pid);
        let mut watchers = Vec::new();
        for (index, (_, order, _)) in delivering.iter().enumerate() {
            for _ in 0..2 {
                let mut socket = ws(&address, &format!("/ws/orders/{order}/track"), &customer).await;
                let snapshot = next_json(&mut socket).await.expect("snapshot");
                assert_eq!(snapshot["type"], "snapshot");
                let (sent, delays) = (sent.clone(), delays.clone());
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

        // Every rider sends a fix a second, the riders spread evenly over the second.
        let started = Instant::now();
        let mut moving = Vec::new();
        let count = delivering.len();
        for (index, (mut socket, _, spot)) in delivering.into_iter().enumerate() {
            let sent = sent.clone();
            let offset = Duration::from_secs(1).mul_f64(index as f64 / count as f64);
            moving.push(tokio::spawn(async move {
                tokio::time::sleep(offset).await;
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                let mut fixes = 0u64;
                for step in 0..seconds {
                    tick.tick().await;
                    let ts = chrono::Utc::now().timestamp_millis();
                    // 8 m north a second, towards the pharmacy then on.
                    let lat = spot.0 + step as f64 * 0.000_072;
                    let frame = json!({"type": "location", "lat": lat, "lng": spot.1, "ts": ts, "accuracy": 5, "heading": 0});
                    sent.lock().expect("sent").insert((index, ts), Instant::now());
                    if socket.send(Message::Text(frame.to_string().into())).await.is_ok() {
                        fixes += 1;
                    }
                }
                (socket, fixes)
            }));
        }
        let mut fixes = 0;
        let mut sockets = Vec::new();
        for m in moving {
            let (socket, n) = m.await.expect("rider");
            fixes += n;
            sockets.push(socket);
        }
        let elapsed = started.elapsed().as_secs_f64();
        // Let the last fixes arrive, then hang up: watchers finish when their socket ends.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let peak = rss_kib(pid);
        for w in &watchers {
            w.abort();
        }
        drop(sockets);
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
    });
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let _ = server.wait();
    common::remove_sqlite(&db);
}
