//! Half-open connections: clients that send half a request line (`GET /ws/r`) and stop.
//!
//! The server is the release `medify` binary in its own process (SQLite, 2 workers);
//! `HALF_OPEN_BIN` runs another binary instead (an older build, to compare).
//! `HALF_OPEN_CONNECTIONS` connections (default 5 000) each send the 9 bytes and wait;
//! for `HALF_OPEN_SECONDS` (default 4) the bench measures the server's CPU time (user +
//! system, from /proc) and `/healthz` latency meanwhile. They all end when their request
//! deadline (5 s) passes or the bench closes them.
//!
//! Run: `cargo bench --bench half_open`.

mod common;

use std::time::{Duration, Instant};

use common::{
    client_runtime, cpu_seconds, env_or, http_get, ms, percentile, rss_kib, spawn_server,
};
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

fn main() {
    let connections: usize = env_or("HALF_OPEN_CONNECTIONS", 5_000);
    let seconds: u64 = env_or("HALF_OPEN_SECONDS", 4);
    let bin =
        std::env::var("HALF_OPEN_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_medify").into());
    let db = std::env::temp_dir().join(format!("medify-half-open-{}.db", Uuid::now_v7()));
    let secret = "half-open-bench-secret-half-open-bench";
    let (mut server, address) = spawn_server(&bin, &db, secret, &[("MEDIFY_WORKERS", "2")]);
    let pid = server.id();
    let rt = client_runtime();
    rt.block_on(async {
        let idle_start = cpu_seconds(pid);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let idle = cpu_seconds(pid) - idle_start;
        let mut held = Vec::with_capacity(connections);
        let opened = Instant::now();
        for _ in 0..connections {
            let mut c = tokio::net::TcpStream::connect(&address).await.expect("connect");
            c.write_all(b"GET /ws/r").await.expect("half a line");
            held.push(c);
        }
        let opened = opened.elapsed();
        let start_cpu = cpu_seconds(pid);
        let start = Instant::now();
        let mut latencies = Vec::new();
        while start.elapsed() < Duration::from_secs(seconds) {
            let t = Instant::now();
            if http_get(&address, "/healthz").await.is_some() {
                latencies.push(t.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let wall = start.elapsed().as_secs_f64();
        let used = cpu_seconds(pid) - start_cpu;
        latencies.sort_unstable();
        println!(
            "{connections} half-open connections (opened in {:.1} s): server CPU {:.2} s in {wall:.1} s = {:.0}% of a core (idle: {:.0}%); /healthz p50 {} p99 {}; RSS {} MiB",
            opened.as_secs_f64(),
            used,
            100.0 * used / wall,
            100.0 * idle,
            ms(percentile(&latencies, 0.5)),
            ms(percentile(&latencies, 0.99)),
            rss_kib(pid) / 1024,
        );
        drop(held);
    });
    let _ = server.kill();
    let _ = server.wait();
    common::remove_sqlite(&db);
}
