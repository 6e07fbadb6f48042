//! Failover time: from SIGKILL of the node running dispatch to the first new offer for the
//! orders it was dispatching.
//!
//! Each round starts two release `medify` nodes on a fresh PostgreSQL database and Redis
//! prefix (`FAILOVER_PG`, default the local server's `postgres` database as user
//! `postgres`; `FAILOVER_REDIS`, default `redis://127.0.0.1:6379`). The first takes the
//! dispatch lease. Through the second, `FAILOVER_ORDERS` (default 20) orders are placed
//! while the only rider (on the second node) is not available, so they all wait at the
//! first node's matcher. Then the first node is killed, the rider becomes available at
//! once, and the bench times the first `offer` he gets. `MEDIFY_FAILOVER_S` is the
//! server's (default 10 s: a 5 s lease tried every 1.7 s); set it in the environment to
//! measure another value. Prints each round and the median and worst.
//!
//! Run: `cargo bench --bench failover` (env: `FAILOVER_ROUNDS` (5), `FAILOVER_ORDERS`,
//! `FAILOVER_BIN`, `MEDIFY_FAILOVER_S`).

mod common;

use std::time::{Duration, Instant};

use common::{call, client_runtime, env_or, spawn_node};
use futures_util::{SinkExt, StreamExt};
use medify::auth::jwt::JwtKeys;
use medify::domain::Role;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

const SECRET: &str = "failover-bench-secret-failover-bench-secret";
const ADMIN: (&str, &str) = ("admin@failover.example", "failover-admin-password");
const AT: (f64, f64) = (12.9716, 77.5946);

/// One round: the time from the kill to the first offer.
async fn round(bin: &str, pg: &str, redis: &str, orders: usize) -> Duration {
    let db = common::scratch::Database::create(pg, "failover").await;
    let (url, prefix) = (db.url.clone(), format!("{}:", db.name));
    let failover = std::env::var("MEDIFY_FAILOVER_S").unwrap_or_else(|_| "10".into());
    let node = |id: &str| {
        spawn_node(
            bin,
            &url,
            SECRET,
            &[
                ("MEDIFY_WORKERS", "2"),
                ("MEDIFY_ADMIN_EMAIL", ADMIN.0),
                ("MEDIFY_ADMIN_PASSWORD", ADMIN.1),
                ("RATE_LIMIT_AUTH_PER_IP", "1000000"),
                ("MAX_OPEN_ORDERS_PER_CUSTOMER", "1000000"),
                ("RATE_LIMIT_ORDERS_PER_MINUTE", "1000000"),
                ("REDIS_URL", redis),
                ("REDIS_KEY_PREFIX", &prefix),
                ("MEDIFY_CLUSTER", "1"),
                ("MEDIFY_NODE_ID", id),
                ("MEDIFY_FAILOVER_S", &failover),
            ],
        )
    };
    let (mut holder, _) = node("holder");
    let (mut edge, address) = node("edge");

    let login = json!({"email": ADMIN.0, "password": ADMIN.1});
    let admin = call(&address, "POST", "/api/v1/auth/login", "", &login).await["access_token"]
        .as_str()
        .expect("admin token")
        .to_owned();
    let medicine = call(
        &address,
        "POST",
        "/api/v1/medicines",
        &admin,
        &json!({"name": "Paracetamol", "sku": "FAILOVER-1", "price_cents": 100}),
    )
    .await["id"]
        .clone();
    let pharmacy = call(
        &address,
        "POST",
        "/api/v1/pharmacies",
        &admin,
        &json!({"name": "Hub", "lat": AT.0, "lng": AT.1, "address": "1 Hub Road"}),
    )
    .await["id"]
        .as_str()
        .expect("pharmacy")
        .to_owned();
    call(
        &address,
        "PUT",
        &format!("/api/v1/pharmacies/{pharmacy}/stock"),
        &admin,
        &json!({"items": [{"medicine_id": medicine, "quantity": orders}]}),
    )
    .await;
    let register = |role: &str| {
        json!({"name": role, "email": format!("{role}-{}@failover.example", Uuid::now_v7().simple()),
               "password": "a long password", "role": role})
    };
    let keys = JwtKeys::new(SECRET.as_bytes());
    let token = |user: Value, role: Role| {
        let id = user["user"]["id"]
            .as_str()
            .and_then(|id| Uuid::parse_str(id).ok());
        keys.issue(id.expect("user id"), role, chrono::Utc::now())
            .expect("token")
    };
    let customer = token(
        call(
            &address,
            "POST",
            "/api/v1/auth/register",
            "",
            &register("customer"),
        )
        .await,
        Role::Customer,
    );
    let rider = token(
        call(
            &address,
            "POST",
            "/api/v1/auth/register",
            "",
            &register("rider"),
        )
        .await,
        Role::Rider,
    );
    let url = format!("ws://{address}/ws/rider?access_token={rider}");
    let (mut socket, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("rider socket");
    let fix = json!({"type": "location", "lat": AT.0 + 0.002, "lng": AT.1,
                     "ts": chrono::Utc::now().timestamp_millis(), "accuracy": 5});
    socket
        .send(Message::Text(fix.to_string().into()))
        .await
        .expect("fix");
    for _ in 0..orders {
        let body = json!({"items": [{"medicine_id": medicine, "qty": 1}], "pharmacy_id": pharmacy,
                          "delivery": {"lat": AT.0 + 0.01, "lng": AT.1, "address": "Home"}});
        call(&address, "POST", "/api/v1/orders", &customer, &body).await;
    }
    // Every order waits at the holder's matcher.
    let start = Instant::now();
    loop {
        let state = call(
            &address,
            "GET",
            "/api/v1/admin/dispatch",
            &admin,
            &Value::Null,
        )
        .await;
        if state["waiting_orders"].as_u64() == Some(orders as u64) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "{state}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    holder.kill().expect("SIGKILL");
    let killed = Instant::now();
    let _ = holder.wait();
    let available = json!({"type": "availability", "available": true});
    socket
        .send(Message::Text(available.to_string().into()))
        .await
        .expect("available");
    let took = loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) => {
                let frame: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                if frame["type"] == "offer" {
                    break killed.elapsed();
                }
            }
            Some(Ok(_)) => {}
            other => panic!("rider socket: {other:?}"),
        }
    };
    let _ = socket.close(None).await;
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(edge.id() as i32, libc::SIGTERM) };
    let _ = edge.wait();
    db.drop_now().await;
    common::scratch::clear_redis(redis, &prefix).await;
    took
}

fn main() {
    let rounds: usize = env_or("FAILOVER_ROUNDS", 5);
    let orders: usize = env_or("FAILOVER_ORDERS", 20);
    let bin = std::env::var("FAILOVER_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_medify").into());
    let pg = std::env::var("FAILOVER_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let redis = std::env::var("FAILOVER_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let rt = client_runtime();
    let mut times = Vec::new();
    for i in 1..=rounds {
        let took = rt.block_on(round(&bin, &pg, &redis, orders));
        println!(
            "round {i}: SIGKILL to the first new offer in {:.2} s",
            took.as_secs_f64()
        );
        times.push(took);
    }
    times.sort_unstable();
    println!(
        "failover over {rounds} rounds ({orders} waiting orders, MEDIFY_FAILOVER_S={}): median {:.2} s, worst {:.2} s",
        std::env::var("MEDIFY_FAILOVER_S").unwrap_or_else(|_| "10".into()),
        common::percentile(&times, 0.5).as_secs_f64(),
        times.last().copied().unwrap_or_default().as_secs_f64()
    );
}
