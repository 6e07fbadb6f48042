//! End-to-end location ingest: many riders on real sockets against the real server.
//!
//! The server is the release `medify` binary in its own process (SQLite, 2 workers); this
//! bench is the load client (tokio + tokio-tungstenite, 2 threads) on the same 2 cores.
//! Riders get tokens signed with the server's secret (no 10 000 password hashes first).
//!
//! Phases:
//! 1. connect N riders (each gets its `welcome`, goes available): server RSS per idle
//!    connected rider = (RSS after − RSS before) / N;
//! 2. steady load at the target rate (every rider sends a fix every N/rate seconds):
//!    the rate the server accepted (from its own `medify_location_updates_total`) and
//!    `/healthz` p99 meanwhile;
//! 3. overload at twice that (capped at the 10-frames-a-second rider limit): processed
//!    rate, RSS (must stay bounded: the socket keeps one request in flight and sheds the
//!    rest), `/healthz` p99;
//! 4. recovery: load stops, `/healthz` answers, RSS after.
//!
//! Riders send in 200 groups whose ticks are spread evenly over the send interval, as
//! independent phones would be (all at once would measure a synchronised burst instead).
//!
//! Latency: 20 extra probe riders each send a fix the session must refuse (ts two minutes
//! ahead) every 150 ms and time the `invalid_location` answer: the round trip rider → socket
//! → session (where the verdict is made and the matcher is told) → socket → rider, under
//! the same load. It bounds the send-to-index latency from above by one socket hop.
//!
//! Run: `cargo bench --bench ingest` (env: `INGEST_BIN`, another server binary to measure;
//! `INGEST_RIDERS`, default 10000;
//! `INGEST_RATE`, messages/s, default 50000; `INGEST_SECONDS`, per phase, default 10).

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{client_runtime, env_or, http_get, ms, percentile, rss_kib, spawn_server};
use futures_util::{SinkExt, StreamExt};
use medify::auth::jwt::JwtKeys;
use medify::domain::Role;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

const SECRET: &str = "ingest-bench-secret-ingest-bench-secret";

/// `medify_location_updates_total` by outcome, from the server's /metrics.
async fn counters(address: &str) -> (u64, u64, u64) {
    let text = http_get(address, "/metrics").await.unwrap_or_default();
    let get = |outcome: &str| {
        let prefix = format!("medify_location_updates_total{{outcome=\"{outcome}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|n| n.trim().parse::<f64>().ok())
            .map_or(0, |n| n as u64)
    };
    (get("accepted"), get("rejected"), get("rate_limited"))
}

/// /healthz latencies while `running` is set.
async fn probe(address: String, running: Arc<AtomicBool>) -> Vec<Duration> {
    let mut out = Vec::new();
    while running.load(Ordering::Relaxed) {
        let start = Instant::now();
        if http_get(&address, "/healthz").await.is_some() {
            out.push(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    out.sort_unstable();
    out
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Round trips of refused fixes on `ws` while `running` is set.
async fn latency_probe(mut ws: Ws, running: Arc<AtomicBool>) -> (Ws, Vec<Duration>) {
    let mut out = Vec::new();
    while running.load(Ordering::Relaxed) {
        let ts = chrono::Utc::now().timestamp_millis() + 120_000;
        let frame = format!(r#"{{"type":"location","lat":12.9,"lng":77.5,"ts":{ts}}}"#);
        let start = Instant::now();
        if ws.send(Message::Text(frame.into())).await.is_err() {
            break;
        }
        let answer = async {
            while let Some(Ok(msg)) = ws.next().await {
                if let Message::Text(t) = msg {
                    if t.contains("invalid_location") {
                        return true;
                    }
                }
            }
            false
        };
        match tokio::time::timeout(Duration::from_secs(5), answer).await {
            Ok(true) => out.push(start.elapsed()),
            Ok(false) => break,
            Err(_) => {} // lost; counted by its absence
        }
        // Under the 10-frames-a-second limit.
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    (ws, out)
}

type Sink = futures_util::stream::SplitSink<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    Message,
>;

fn main() {
    let riders: usize = env_or("INGEST_RIDERS", 10_000);
    let rate: f64 = env_or("INGEST_RATE", 50_000.0);
    let seconds: u64 = env_or("INGEST_SECONDS", 10);
    let db = std::env::temp_dir().join(format!("medify-ingest-{}.db", Uuid::now_v7()));
    // `INGEST_BIN`: another server binary (an older build, to compare).
    let bin = std::env::var("INGEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_medify").into());
    let (mut server, address) = spawn_server(&bin, &db, SECRET, &[]);
    let pid = server.id();
    let rt = client_runtime();
    rt.block_on(async {
        let keys = JwtKeys::new(SECRET.as_bytes());
        let before = rss_kib(pid);
        // Phase 1: connect.
        let connect_start = Instant::now();
        let gate = Arc::new(tokio::sync::Semaphore::new(200));
        let mut handles = Vec::with_capacity(riders);
        for _ in 0..riders {
            let token = keys.issue(Uuid::now_v7(), Role::Rider, chrono::Utc::now()).expect("token");
            let url = format!("ws://{address}/ws/rider?access_token={token}");
            let gate = gate.clone();
            handles.push(tokio::spawn(async move {
                let _permit = gate.acquire().await.expect("gate");
                let (ws, _) = tokio_tungstenite::connect_async(url).await.expect("connect");
                let (mut sink, mut stream) = ws.split();
                let _welcome = stream.next().await;
                sink.send(Message::Text(r#"{"type":"availability","available":true}"#.into()))
                    .await
                    .expect("send");
                // Drain whatever the server sends (errors, pings) for the rest of the run.
                tokio::spawn(async move { while stream.next().await.is_some() {} });
                sink
            }));
        }
        let mut sinks: Vec<Sink> = Vec::with_capacity(riders);
        for h in handles {
            sinks.push(h.await.expect("rider"));
        }
        let connect_secs = connect_start.elapsed().as_secs_f64();
        let mut probes: Vec<Ws> = Vec::new();
        for _ in 0..20 {
            let token = keys.issue(Uuid::now_v7(), Role::Rider, chrono::Utc::now()).expect("token");
            let url = format!("ws://{address}/ws/rider?access_token={token}");
            let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("probe");
            let _welcome = ws.next().await;
            probes.push(ws);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let idle = rss_kib(pid);
        println!(
            "connected {riders} riders in {connect_secs:.1} s; server RSS {} MiB -> {} MiB: {:.2} KiB per idle rider",
            before / 1024,
            idle / 1024,
            (idle.saturating_sub(before)) as f64 / riders as f64
        );

        for (label, target) in [("steady", rate), ("overload", (rate * 2.0).min(riders as f64 * 10.0))] {
            let interval = Duration::from_secs_f64(riders as f64 / target);
            let (a0, r0, l0) = counters(&address).await;
            let running = Arc::new(AtomicBool::new(true));
            let prober = tokio::spawn(probe(address.clone(), running.clone()));
            let latency: Vec<_> = std::mem::take(&mut probes)
                .into_iter()
                .map(|ws| tokio::spawn(latency_probe(ws, running.clone())))
                .collect();
            let started = Instant::now();
            let sent = Arc::new(AtomicU64::new(0));
            let chunk = (riders / 200).max(1);
            let mut tasks = Vec::new();
            let mut rest = std::mem::take(&mut sinks);
            while !rest.is_empty() {
                let take = chunk.min(rest.len());
                let mut mine: Vec<Sink> = rest.drain(..take).collect();
                let sent = sent.clone();
                // Real riders are not synchronised: spread the tasks over the interval.
                let offset = interval.mul_f64(tasks.len() as f64 / (riders / chunk).max(1) as f64);
                tasks.push(tokio::spawn(async move {
                    tokio::time::sleep(offset).await;
                    let mut tick = tokio::time::interval(interval);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                    let mut step = 0u64;
                    let deadline = Instant::now() + Duration::from_secs(seconds);
                    while Instant::now() < deadline {
                        tick.tick().await;
                        step += 1;
                        let ts = chrono::Utc::now().timestamp_millis();
                        for (i, sink) in mine.iter_mut().enumerate() {
                            let lat = 12.9 + (i as f64) * 0.0001 + (step as f64) * 0.00001;
                            let frame = format!(r#"{{"type":"location","lat":{lat},"lng":77.59,"ts":{ts},"accuracy":5}}"#);
                            if sink.send(Message::Text(frame.into())).await.is_ok() {
                                sent.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    mine
                }));
            }
            let peak = Arc::new(AtomicU64::new(0));
            let watcher = {
                let peak = peak.clone();
                let running = running.clone();
                tokio::spawn(async move {
                    while running.load(Ordering::Relaxed) {
                        peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                })
            };
            for t in tasks {
                sinks.extend(t.await.expect("load task"));
            }
            let elapsed = started.elapsed().as_secs_f64();
            // Let the server finish what it has queued, then read its counters.
            tokio::time::sleep(Duration::from_millis(500)).await;
            running.store(false, Ordering::Relaxed);
            let _ = watcher.await;
            let health = prober.await.expect("probe");
            let mut rtts = Vec::new();
            for l in latency {
                let (ws, samples) = l.await.expect("latency probe");
                probes.push(ws);
                rtts.extend(samples);
            }
            rtts.sort_unstable();
            let (a1, r1, l1) = counters(&address).await;
            println!(
                "{label:<8} offered {:.0} msg/s ({} frames in {elapsed:.1} s); server accepted {:.0}/s, rejected {}, shed {}; peak RSS {} MiB; /healthz p50 {} p99 {} ({} probes); fix verdict round trip p50 {} p99 {} ({} samples)",
                sent.load(Ordering::Relaxed) as f64 / elapsed,
                sent.load(Ordering::Relaxed),
                (a1 - a0) as f64 / elapsed,
                r1 - r0,
                l1 - l0,
                peak.load(Ordering::Relaxed) / 1024,
                ms(percentile(&health, 0.5)),
                ms(percentile(&health, 0.99)),
                health.len(),
                ms(percentile(&rtts, 0.5)),
                ms(percentile(&rtts, 0.99)),
                rtts.len()
            );
        }
        let start = Instant::now();
        let ok = http_get(&address, "/healthz").await.is_some();
        println!(
            "recovery: /healthz {} in {} after the load; RSS {} MiB",
            if ok { "answered" } else { "did NOT answer" },
            ms(start.elapsed()),
            rss_kib(pid) / 1024
        );
        drop(sinks);
    });
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let _ = server.wait();
    common::remove_sqlite(&db);
}
