//! Orders created per second end to end over HTTP, on SQLite and on PostgreSQL.
//!
//! The real server (2 workers) and 32 concurrent customers on the same 2 cores. Each order
//! is the whole path: authenticate, validate and price 3 lines, reserve them through the
//! pharmacy's inventory shard (one transaction), store the order (one transaction), start
//! its actor and journal `confirmed → dispatching` (one transaction), publish events.
//! Each customer orders from one of 8 pharmacies (`pharmacy_id`), so 8 shards share the work.
//!
//! Run: `cargo bench --bench orders_load`, and with
//! `MEDIFY_BENCH_PG=postgres://postgres@127.0.0.1:5432/postgres` for PostgreSQL too.

mod common;

use std::time::{Duration, Instant};

use common::{ms, percentile};
use futures_util::future::join_all;
use serde_json::{json, Value};
use sqlx::Connection;

const CLIENTS: usize = 32;
const PER_CLIENT: usize = 60;

async fn run(label: &str, url: String) {
    let base = common::start_server(
        url,
        &[
            ("MEDIFY_ADMIN_EMAIL", "bench-admin@example.com"),
            ("MEDIFY_ADMIN_PASSWORD", "bench admin password"),
            ("INVENTORY_SHARDS", "8"),
        ],
    );
    let client = common::client();
    let post = |path: &str, token: Option<&str>, body: Value| {
        let mut req = client.post(format!("{base}{path}"));
        if let Some(t) = token {
            req = req.insert_header(("authorization", format!("Bearer {t}")));
        }
        async move {
            let mut res = req.send_json(&body).await.expect("request");
            let status = res.status().as_u16();
            let body: Value = res.json().limit(1 << 20).await.unwrap_or(Value::Null);
            (status, body)
        }
    };
    let (_, tokens) = post(
        "/api/v1/auth/login",
        None,
        json!({"email": "bench-admin@example.com", "password": "bench admin password"}),
    )
    .await;
    let admin = tokens["access_token"]
        .as_str()
        .expect("admin token")
        .to_owned();
    let mut medicines = Vec::new();
    for i in 0..3 {
        let (s, m) = post("/api/v1/medicines", Some(&admin), json!({"name": format!("Bench {i}"), "sku": format!("B-{i}-{}", uuid::Uuid::now_v7()), "price_cents": 100})).await;
        assert_eq!(s, 201, "{m}");
        medicines.push(m["id"].as_str().expect("id").to_owned());
    }
    let mut pharmacies = Vec::new();
    for p in 0..8 {
        let (s, ph) = post("/api/v1/pharmacies", Some(&admin), json!({"name": format!("P{p}"), "lat": 12.97 + f64::from(p) * 0.001, "lng": 77.59, "address": "x"})).await;
        assert_eq!(s, 201, "{ph}");
        let items: Vec<Value> = medicines
            .iter()
            .map(|m| json!({"medicine_id": m, "quantity": 1_000_000}))
            .collect();
        let res = client
            .put(format!(
                "{base}/api/v1/pharmacies/{}/stock",
                ph["id"].as_str().expect("id")
            ))
            .insert_header(("authorization", format!("Bearer {admin}")))
            .send_json(&json!({ "items": items }))
            .await
            .expect("stock");
        assert_eq!(res.status().as_u16(), 200);
        pharmacies.push(ph["id"].clone());
    }
    let mut customers = Vec::new();
    for c in 0..CLIENTS {
        let email = format!("c{c}@bench.example");
        post(
            "/api/v1/auth/register",
            None,
            json!({"name": "C", "email": email, "password": "customer password"}),
        )
        .await;
        let (_, t) = post(
            "/api/v1/auth/login",
            None,
            json!({"email": email, "password": "customer password"}),
        )
        .await;
        customers.push(t["access_token"].as_str().expect("token").to_owned());
    }
    let items: Vec<Value> = medicines
        .iter()
        .map(|m| json!({"medicine_id": m, "qty": 1}))
        .collect();
    let body =
        json!({"items": items, "delivery": {"lat": 12.97, "lng": 77.59, "address": "Bench Road"}});

    let start = Instant::now();
    let runs = customers.iter().enumerate().map(|(c, token)| {
        let (client, base, body) = (common::client(), base.clone(), body.clone());
        // Each customer's orders go to a different pharmacy, so all 8 shards work.
        let mut body = body;
        body["pharmacy_id"] = pharmacies[c % pharmacies.len()].clone();
        async move {
            let mut latencies = Vec::with_capacity(PER_CLIENT);
            for _ in 0..PER_CLIENT {
                let t = Instant::now();
                let res = client
                    .post(format!("{base}/api/v1/orders"))
                    .insert_header(("authorization", format!("Bearer {token}")))
                    .send_json(&body)
                    .await
                    .expect("order");
                assert_eq!(res.status().as_u16(), 201, "customer {c}");
                latencies.push(t.elapsed());
            }
            latencies
        }
    });
    let mut latencies: Vec<Duration> = join_all(runs).await.into_iter().flatten().collect();
    let elapsed = start.elapsed();
    latencies.sort_unstable();
    println!(
        "{label:<9} {} orders by {CLIENTS} customers in {:.2} s: {:.0} orders/s; latency p50 {} p99 {}",
        latencies.len(),
        elapsed.as_secs_f64(),
        latencies.len() as f64 / elapsed.as_secs_f64(),
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
    );
}

fn main() {
    actix_web::rt::System::new().block_on(async {
        let (url, path) = common::sqlite_url("orders");
        run("sqlite", url).await;
        common::remove_sqlite(&path);
        if let Ok(admin) = std::env::var("MEDIFY_BENCH_PG") {
            let name = format!("medify_bench_{}", uuid::Uuid::now_v7().simple());
            let mut conn = sqlx::PgConnection::connect(&admin).await.expect("pg");
            sqlx::query(&format!("CREATE DATABASE \"{name}\""))
                .execute(&mut conn)
                .await
                .expect("create");
            let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
            run("postgres", format!("{base}/{name}")).await;
            let _ = sqlx::query(&format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
                .execute(&mut conn)
                .await;
        } else {
            println!("postgres  skipped (set MEDIFY_BENCH_PG to an admin URL)");
        }
    });
}
