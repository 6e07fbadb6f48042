//! Shared by the HTTP benches: start the real server in its own thread, time things.

#![allow(dead_code)] // each bench uses part of this

use std::time::Duration;

use medify::config::Settings;
use medify::startup::Application;

/// Starts the server (2 workers) on its own thread and actix System; returns its base URL.
pub fn start_server(database_url: String, extra: &[(&str, &str)]) -> String {
    let mut env: Vec<(String, String)> = vec![
        ("MEDIFY_BIND".into(), "127.0.0.1:0".into()),
        ("MEDIFY_WORKERS".into(), "2".into()),
        ("DATABASE_URL".into(), database_url),
        ("RATE_LIMIT_AUTH_PER_IP".into(), "1000000".into()),
        ("RATE_LIMIT_AUTH_PER_ACCOUNT".into(), "1000000".into()),
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
