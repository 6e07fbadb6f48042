//! Prescription uploads under load: throughput and what they cost the server in memory.
//!
//! The server is the release `medify` binary in its own process (SQLite, 2 workers, the
//! default local-folder object store in a temporary folder); `UPLOADS_BIN` runs another
//! binary instead. One customer sends `UPLOADS_COUNT` uploads (default 100) of
//! `UPLOADS_MIB` MiB each (default 5), all at once, each on its own connection over real
//! HTTP, the body written in 64 KiB pieces as a phone's upload would arrive. The bench
//! prints the throughput (MiB/s of file bytes stored), upload latency percentiles, and
//! the server's RSS before, at its peak (sampled every 10 ms) and after: with uploads
//! streamed to disk chunk by chunk, the growth is bounded by the connections' buffers, not
//! by the files' sizes. Every answer must be 201 with the right size and SHA-256, and
//! every file must be on disk at the end.
//!
//! Run: `cargo bench --bench uploads`.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{client_runtime, env_or, http_request, ms, percentile, rss_kib, spawn_server};
use medify::auth::jwt::JwtKeys;
use medify::domain::Role;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

const SECRET: &str = "uploads-bench-secret-uploads-bench-secret";
/// The size of each write of the request body.
const PIECE: usize = 64 * 1024;

/// A PDF-looking file of `len` bytes, different for each `seed`.
fn pdf(len: usize, seed: u32) -> Vec<u8> {
    let mut bytes = b"%PDF-1.7\n".to_vec();
    let mut x = seed.wrapping_mul(2_654_435_761) | 1;
    while bytes.len() < len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    bytes.truncate(len);
    bytes
}

/// Uploads `file` as one multipart request on a fresh connection; returns the status and
/// the answer's body.
async fn upload(address: &str, token: &str, file: &[u8]) -> std::io::Result<(u16, String)> {
    let boundary = format!("bench-{}", Uuid::now_v7().simple());
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"rx.pdf\"\r\n\
         Content-Type: application/pdf\r\n\r\n"
    );
    let tail = format!("\r\n--{boundary}--\r\n");
    let length = head.len() + file.len() + tail.len();
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    let request = format!(
        "POST /api/v1/prescriptions HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\
         Authorization: Bearer {token}\r\n\
         Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {length}\r\n\r\n{head}"
    );
    stream.write_all(request.as_bytes()).await?;
    for piece in file.chunks(PIECE) {
        stream.write_all(piece).await?;
    }
    stream.write_all(tail.as_bytes()).await?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await?;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_owned()))
}

/// Regular files under `dir`, recursively.
fn count_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| {
                    let path = e.path();
                    if path.is_dir() {
                        count_files(&path)
                    } else {
                        1
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

fn main() {
    let count: usize = env_or("UPLOADS_COUNT", 100);
    let mib: usize = env_or("UPLOADS_MIB", 5);
    let bin = std::env::var("UPLOADS_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_medify").into());
    let run = std::env::temp_dir().join(format!("medify-uploads-{}", Uuid::now_v7()));
    let objects = run.join("objects");
    let db = run.join("medify.db");
    std::fs::create_dir_all(&run).expect("bench folder");
    let store = format!("file:{}", objects.display());
    let (mut server, address) = spawn_server(
        &bin,
        &db,
        SECRET,
        &[
            ("MEDIFY_WORKERS", "2"),
            ("OBJECT_STORE", &store),
            ("MEDIFY_ENV", "test"),
        ],
    );
    let pid = server.id();
    let files: Vec<Arc<Vec<u8>>> = (0..count)
        .map(|i| Arc::new(pdf(mib * 1024 * 1024, i as u32)))
        .collect();
    let rt = client_runtime();
    rt.block_on(async {
        let email = format!("bench-{}@example.com", Uuid::now_v7().simple());
        let body =
            serde_json::json!({"name": "Bench", "email": email, "password": "bench password"});
        let (status, answer) =
            http_request(&address, "POST", "/api/v1/auth/register", None, Some(&body))
                .await
                .expect("register");
        assert_eq!(status, 201, "{answer}");
        let user: serde_json::Value = serde_json::from_str(&answer).expect("json");
        let id = Uuid::parse_str(user["user"]["id"].as_str().expect("id")).expect("uuid");
        let token = JwtKeys::new(SECRET.as_bytes())
            .issue(id, Role::Customer, chrono::Utc::now())
            .expect("token");

        tokio::time::sleep(Duration::from_millis(500)).await;
        let before = rss_kib(pid);
        let peak = Arc::new(AtomicU64::new(before));
        let running = Arc::new(AtomicBool::new(true));
        let sampler = {
            let (peak, running) = (peak.clone(), running.clone());
            tokio::spawn(async move {
                while running.load(Ordering::Relaxed) {
                    peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
        };
        let start = Instant::now();
        let tasks: Vec<_> = files
            .iter()
            .map(|file| {
                let (address, token, file) = (address.clone(), token.clone(), file.clone());
                tokio::spawn(async move {
                    let sent = Instant::now();
                    let answer = upload(&address, &token, &file).await;
                    (answer, sent.elapsed(), file)
                })
            })
            .collect();
        let mut latencies = Vec::new();
        for task in tasks {
            let (answer, took, file) = task.await.expect("upload task");
            let (status, body) = answer.expect("upload connection");
            assert_eq!(status, 201, "{body}");
            let rx: serde_json::Value = serde_json::from_str(&body).expect("json");
            assert_eq!(rx["size_bytes"], file.len() as u64);
            let sha: String = Sha256::digest(file.as_slice())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            assert_eq!(rx["sha256"], sha);
            latencies.push(took);
        }
        let elapsed = start.elapsed();
        running.store(false, Ordering::Relaxed);
        let _ = sampler.await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let after = rss_kib(pid);
        let peak = peak.load(Ordering::Relaxed);
        latencies.sort();
        let total_mib = (count * mib) as f64;
        println!(
            "uploads: {count} × {mib} MiB concurrently in {:.2} s: {:.1} MiB/s stored; \
             latency p50 {} / p99 {} / max {}",
            elapsed.as_secs_f64(),
            total_mib / elapsed.as_secs_f64(),
            ms(percentile(&latencies, 0.50)),
            ms(percentile(&latencies, 0.99)),
            ms(latencies.last().copied().unwrap_or_default()),
        );
        println!(
            "server RSS: {:.1} MiB before, {:.1} MiB at the peak (+{:.1} MiB), {:.1} MiB after",
            before as f64 / 1024.0,
            peak as f64 / 1024.0,
            peak.saturating_sub(before) as f64 / 1024.0,
            after as f64 / 1024.0,
        );
    });
    let stored = count_files(&objects);
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&run);
    assert_eq!(stored, count, "every upload is one file, no partial left");
    println!("files stored: {stored}");
}
