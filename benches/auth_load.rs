//! Login throughput, and whether hashing stalls the rest of the server.
//!
//! Starts the real server (release build, SQLite in a temp file, 2 workers) and measures:
//! 1. `/healthz` latency alone (sequential requests);
//! 2. login throughput with 64 clients logging in concurrently, each login an argon2id
//!    verification (19 MiB, t=2), and `/healthz` latency measured at the same time.
//!
//! If hashing ran on the async workers, /healthz would queue behind it; it runs on the
//! blocking pool behind a semaphore, so /healthz should barely move.
//!
//! Run: `cargo bench --bench auth_load` (optionally `-- <logins per client>`, default 8).

mod common;

use std::time::{Duration, Instant};

use common::{ms, percentile};
use futures_util::future::join_all;
use serde_json::json;

const CLIENTS: usize = 64;

async fn healthz_latencies(
    client: &awc::Client,
    base: &str,
    until: impl Fn(usize) -> bool,
) -> Vec<Duration> {
    let mut out = Vec::new();
    while until(out.len()) {
        let start = Instant::now();
        let res = client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .expect("healthz");
        assert!(res.status().is_success());
        out.push(start.elapsed());
    }
    out.sort_unstable();
    out
}

fn main() {
    // `cargo bench` passes `--bench`; the first number, if any, is logins per client.
    let per_client: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(8);
    let (url, db) = common::sqlite_url("auth");
    let base = common::start_server(url, &[]);

    actix_web::rt::System::new().block_on(async move {
        let client = common::client();
        let email = "bench@example.com";
        let password = "bench password 123";
        let res = client
            .post(format!("{base}/api/v1/auth/register"))
            .send_json(&json!({"name": "Bench", "email": email, "password": password}))
            .await
            .expect("register");
        assert_eq!(res.status().as_u16(), 201);

        // Warm-up.
        healthz_latencies(&client, &base, |n| n < 200).await;
        let alone = healthz_latencies(&client, &base, |n| n < 2000).await;

        let done = std::rc::Rc::new(std::cell::Cell::new(false));
        let logins = async {
            let start = Instant::now();
            let clients = (0..CLIENTS).map(|_| {
                let client = common::client();
                let base = base.clone();
                async move {
                    for _ in 0..per_client {
                        let res = client
                            .post(format!("{base}/api/v1/auth/login"))
                            .send_json(&json!({"email": email, "password": password}))
                            .await
                            .expect("login");
                        assert_eq!(res.status().as_u16(), 200);
                    }
                }
            });
            join_all(clients).await;
            let elapsed = start.elapsed();
            done.set(true);
            elapsed
        };
        let flag = done.clone();
        let probe = healthz_latencies(&client, &base, move |_| !flag.get());
        let (elapsed, loaded) = futures_util::join!(logins, probe);

        let total = CLIENTS * per_client;
        println!("auth_load: {CLIENTS} concurrent clients x {per_client} logins = {total} logins");
        println!(
            "  login throughput        {:.1} logins/s ({total} in {:.2} s)",
            total as f64 / elapsed.as_secs_f64(),
            elapsed.as_secs_f64()
        );
        println!(
            "  /healthz alone          p50 {}  p99 {}  ({} requests)",
            ms(percentile(&alone, 0.50)),
            ms(percentile(&alone, 0.99)),
            alone.len()
        );
        println!(
            "  /healthz during logins  p50 {}  p99 {}  ({} requests)",
            ms(percentile(&loaded, 0.50)),
            ms(percentile(&loaded, 0.99)),
            loaded.len()
        );
    });
    common::remove_sqlite(&db);
}
