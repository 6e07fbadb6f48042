//! A hostile rider's flood: what it costs the server in memory.
//!
//! The server is the release `medify` binary in its own process (SQLite, 2 workers);
//! `FLOOD_BIN` runs another binary instead (an older build, to compare). `FLOOD_RIDERS`
//! registered riders (default 10) each send `FLOOD_FRAMES` frames (default 3 000 each, so
//! 30 000 in all) of every kind, each padded towards the 16 KiB frame limit with a field
//! the server ignores: `order_status` about random orders, `offer_response` to random
//! offers, `availability`, and `locations` batches of 100 points. Every rider reads what
//! the server answers. The bench prints server RSS before, at the peak and after, the
//! answers by code, and the shed counters.
//!
//! Run: `cargo bench --bench rider_flood`.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{client_runtime, env_or, http_get, rss_kib, spawn_server};
use futures_util::{SinkExt, StreamExt};
use medify::auth::jwt::JwtKeys;
use medify::domain::Role;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

const SECRET: &str = "flood-bench-secret-flood-bench-secret-01";

/// One frame of `kind`, padded to about 15 KiB.
fn frame(kind: &str, now_ms: i64, pad: &str) -> String {
    match kind {
        "order_status" => format!(
            r#"{{"type":"order_status","order_id":"{}","status":"picked_up","pad":"{pad}"}}"#,
            Uuid::now_v7()
        ),
        "offer_response" => format!(
            r#"{{"type":"offer_response","offer_id":"{}","accept":true,"pad":"{pad}"}}"#,
            Uuid::now_v7()
        ),
        "availability" => format!(r#"{{"type":"availability","available":false,"pad":"{pad}"}}"#),
        _ => {
            let points: Vec<String> = (0..100)
                .map(|i| format!(r#"{{"lat":12.97,"lng":77.59,"ts":{}}}"#, now_ms + i))
                .collect();
            format!(
                r#"{{"type":"locations","points":[{}],"pad":"{}"}}"#,
                points.join(","),
                &pad[..pad.len() / 2]
            )
        }
    }
}

/// Counter lines of the server's /metrics that name `needle`.
async fn metric_lines(address: &str, needle: &str) -> Vec<String> {
    http_get(address, "/metrics")
        .await
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains(needle))
        .map(str::to_owned)
        .collect()
}

fn main() {
    let riders: usize = env_or("FLOOD_RIDERS", 10);
    let frames: usize = env_or("FLOOD_FRAMES", 3_000);
    let bin = std::env::var("FLOOD_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_medify").into());
    let db = std::env::temp_dir().join(format!("medify-flood-{}.db", Uuid::now_v7()));
    let (mut server, address) = spawn_server(&bin, &db, SECRET, &[("MEDIFY_WORKERS", "2")]);
    let pid = server.id();
    let rt = client_runtime();
    rt.block_on(async {
        let keys = JwtKeys::new(SECRET.as_bytes());
        let pad = "x".repeat(15 * 1024);
        let mut sockets = Vec::new();
        for _ in 0..riders {
            let token = keys
                .issue(Uuid::now_v7(), Role::Rider, chrono::Utc::now())
                .expect("token");
            let url = format!("ws://{address}/ws/rider?access_token={token}");
            let (ws, _) = tokio_tungstenite::connect_async(url)
                .await
                .expect("connect");
            sockets.push(ws);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let before = rss_kib(pid);
        let peak = Arc::new(AtomicU64::new(before));
        let running = Arc::new(AtomicBool::new(true));
        let watcher = {
            let (peak, running) = (peak.clone(), running.clone());
            tokio::spawn(async move {
                while running.load(Ordering::Relaxed) {
                    peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        };
        for kind in [
            "order_status",
            "offer_response",
            "availability",
            "locations",
        ] {
            let start = Instant::now();
            let answers = Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::new()));
            let mut tasks = Vec::new();
            for ws in sockets.drain(..) {
                let (mut sink, mut stream) = ws.split();
                let answers = answers.clone();
                let reader = tokio::spawn(async move {
                    while let Ok(Some(Ok(msg))) =
                        tokio::time::timeout(Duration::from_secs(3), stream.next()).await
                    {
                        if let Message::Text(t) = msg {
                            let v: serde_json::Value = serde_json::from_str(&t).unwrap_or_default();
                            let code = v["code"]
                                .as_str()
                                .unwrap_or(v["type"].as_str().unwrap_or("?"));
                            *answers
                                .lock()
                                .expect("lock")
                                .entry(code.to_owned())
                                .or_insert(0u64) += 1;
                        }
                    }
                    stream
                });
                let pad = pad.clone();
                tasks.push(tokio::spawn(async move {
                    let now = chrono::Utc::now().timestamp_millis();
                    for _ in 0..frames {
                        let text = frame(kind, now, &pad);
                        if sink.send(Message::Text(text.into())).await.is_err() {
                            break;
                        }
                    }
                    let stream = reader.await.expect("reader");
                    sink.reunite(stream).expect("same socket")
                }));
            }
            for t in tasks {
                sockets.push(t.await.expect("rider"));
            }
            let after = rss_kib(pid);
            println!(
                "{kind:>14}: {} frames of ~15 KiB in {:.1} s; answers {:?}; server RSS now {} MiB",
                riders * frames,
                start.elapsed().as_secs_f64(),
                answers.lock().expect("lock"),
                after / 1024,
            );
        }
        running.store(false, Ordering::Relaxed);
        let _ = watcher.await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = rss_kib(pid);
        println!(
            "server RSS: before {} MiB, peak {} MiB, after {} MiB ({:+} KiB)",
            before / 1024,
            peak.load(Ordering::Relaxed) / 1024,
            after / 1024,
            after as i64 - before as i64
        );
        for line in metric_lines(&address, "shed").await {
            println!("  {line}");
        }
        for line in metric_lines(&address, "medify_location_updates_total").await {
            println!("  {line}");
        }
    });
    let _ = server.kill();
    let _ = server.wait();
    common::remove_sqlite(&db);
}
