//! Shared by the HTTP benches: start the real server in its own thread, time things.

#![allow(dead_code)] // each bench uses part of this

use std::time::Duration;

use medify::config::Settings;
use medify::startup::Application;

/// A database and a Redis key prefix of a cluster bench's own (shared with the tests).
#[path = "../../tests/support/scratch.rs"]
pub mod scratch;

/// Starts the server (2 workers) on its own thread and actix System; returns its base URL.
pub fn start_server(database_url: String, extra: &[(&str, &str)]) -> String {
    let mut env: Vec<(String, String)> = vec![
        ("MEDIFY_BIND".into(), "127.0.0.1:0".into()),
        ("MEDIFY_WORKERS".into(), "2".into()),
        ("DATABASE_URL".into(), database_url),
        ("RATE_LIMIT_AUTH_PER_IP".into(), "1000000".into()),
        ("RATE_LIMIT_AUTH_PER_ACCOUNT".into(), "1000000".into()),
        ("MAX_OPEN_ORDERS_PER_CUSTOMER".into(), "1000000".into()),
        ("RATE_LIMIT_ORDERS_PER_MINUTE".into(), "1000000".into()),
        (
            "JWT_SECRET".into(),
            "bench-secret-bench-secret-bench-secret".into(),
        ),
        ("RUST_LOG".into(), "warn".into()),
    ];
    env.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let settings = Settings::from_lookup(|k| {
        env.iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
    })
    .expect("settings");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let app = Application::build(settings).await.expect("server");
            tx.send(app.port()).expect("port");
            app.run_until_stopped().await.expect("run");
        });
    });
    let port = rx.recv().expect("server started");
    format!("http://127.0.0.1:{port}")
}

/// A client with a long timeout.
pub fn client() -> awc::Client {
    awc::Client::builder()
        .timeout(Duration::from_secs(120))
        .finish()
}

/// The `p` quantile (0..=1) of sorted samples.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// A fresh SQLite file URL in the temp directory, and the path to delete afterwards.
pub fn sqlite_url(name: &str) -> (String, std::path::PathBuf) {
    let path =
        std::env::temp_dir().join(format!("medify-bench-{name}-{}.db", uuid::Uuid::now_v7()));
    (format!("sqlite://{}?mode=rwc", path.display()), path)
}

pub fn remove_sqlite(path: &std::path::Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.to_path_buf().into_os_string();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
}

/// CPU time (user + system) process `pid` has used so far, in seconds (0 when it cannot be
/// read).
pub fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // After the command name in parentheses: state is field 3, utime 14, stime 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // SAFETY: sysconf with a valid name has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / hz.max(1.0)
}

/// Resident memory of process `pid`, in KiB (0 when it cannot be read).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// Starts the `medify` binary at `bin` as its own process on SQLite file `db` (so the
/// load client's memory and CPU are not the server's), with `extra` environment; returns
/// the child and its `host:port` once it logs that it listens.
pub fn spawn_server(
    bin: &str,
    db: &std::path::Path,
    secret: &str,
    extra: &[(&str, &str)],
) -> (std::process::Child, String) {
    let url = format!("sqlite://{}?mode=rwc", db.display());
    spawn_node(bin, &url, secret, extra)
}

/// [`spawn_server`] on any database URL (a PostgreSQL one for a cluster node).
pub fn spawn_node(
    bin: &str,
    database_url: &str,
    secret: &str,
    extra: &[(&str, &str)],
) -> (std::process::Child, String) {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let mut child = Command::new(bin)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("MEDIFY_BIND", "127.0.0.1:0")
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "warn,medify::startup=info")
        .env("DATABASE_URL", database_url)
        .env("JWT_SECRET", secret)
        .envs(std::env::vars().filter(|(k, _)| k.starts_with("MALLOC_")))
        .envs(extra.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn medify");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("\"listening\"") {
                let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
                let _ = tx.send(v["address"].as_str().unwrap_or_default().to_owned());
            }
        }
    });
    let address = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("medify started");
    (child, address)
}

/// One HTTP/1.1 request on a fresh loopback connection: the status and the body.
pub async fn http_request(
    address: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&serde_json::Value>,
) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await.ok()?;
    let body = body.map(ToString::to_string).unwrap_or_default();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n{auth}\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(req.as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf).await.ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}

/// A GET's body, when it answered.
pub async fn http_get(address: &str, path: &str) -> Option<String> {
    http_request(address, "GET", path, None, None)
        .await
        .map(|(_, body)| body)
}

/// `name` from the environment, parsed, or `default`.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The load client's runtime: two threads, like the server it shares the machine with.
pub fn client_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// One request that must succeed (2xx): its JSON body (`null` if none). An empty `token`
/// sends no `Authorization`.
pub async fn call(
    address: &str,
    method: &str,
    path: &str,
    token: &str,
    body: &serde_json::Value,
) -> serde_json::Value {
    let token = (!token.is_empty()).then_some(token);
    let (status, text) = http_request(address, method, path, token, Some(body))
        .await
        .expect("HTTP answer");
    assert!(
        (200..300).contains(&status),
        "{method} {path}: {status} {text}"
    );
    serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)
}
