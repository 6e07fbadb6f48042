//! What the cluster tests share: a PostgreSQL database and a Redis key prefix of their
//! own, a private Redis server, HAProxy with the repository's config in front of `medify`
//! node processes, and an HTTP client for the balancer or one node.
//!
//! Needs `MEDIFY_TEST_PG`, `MEDIFY_TEST_REDIS` and `haproxy` on the PATH (or in
//! /usr/sbin); a test is skipped without them unless `MEDIFY_REQUIRE_SERVICES=1` (CI), which
//! fails.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::process::{Server, WorkDir, WAIT};

#[path = "scratch.rs"]
mod scratch;
pub use scratch::{clear_redis, Database};

pub const ADMIN_EMAIL: &str = "cluster-admin@example.com";
pub const ADMIN_PASSWORD: &str = "cluster admin password";
pub const SECRET: &str = "cluster-test-secret-cluster-test-secret-0123";

pub fn required() -> bool {
    std::env::var("MEDIFY_REQUIRE_SERVICES").is_ok_and(|v| v == "1" || v == "true")
}

/// A needed thing, or `None` to skip (a failure when services are required).
pub fn need<T>(what: &str, found: Option<T>) -> Option<T> {
    match found {
        Some(v) => Some(v),
        None if required() => panic!("{what} is missing and MEDIFY_REQUIRE_SERVICES=1"),
        None => {
            eprintln!("skipped: {what} is missing");
            None
        }
    }
}

pub fn haproxy() -> Option<String> {
    ["haproxy", "/usr/sbin/haproxy", "/usr/local/sbin/haproxy"]
        .into_iter()
        .find(|p| {
            Command::new(p)
                .arg("-v")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .map(str::to_owned)
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// HAProxy in the foreground with the repository's config, ended on drop.
pub struct Balancer {
    pub child: Child,
    pub address: String,
}

impl Balancer {
    pub fn start(bin: &str, nodes: &[String]) -> Self {
        let address = format!("127.0.0.1:{}", free_port());
        let config = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/haproxy.cfg");
        let mut cmd = Command::new(bin);
        cmd.args(["-db", "-f", config])
            .env("MEDIFY_LB_BIND", &address)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (i, node) in nodes.iter().enumerate() {
            cmd.env(format!("MEDIFY_NODE{}", i + 1), node);
        }
        let child = cmd.spawn().expect("start haproxy");
        Self { child, address }
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn node(dir: &WorkDir, id: &str, db: &str, redis: &str, prefix: &str) -> Server {
    node_with(dir, id, db, redis, prefix, &[])
}

/// A node process with `extra` settings on top of the cluster tests' own.
pub fn node_with(
    dir: &WorkDir,
    id: &str,
    db: &str,
    redis: &str,
    prefix: &str,
    extra: &[(&str, &str)],
) -> Server {
    let mut vars = vec![
        ("MEDIFY_ENV", "test"),
        ("DATABASE_URL", db),
        ("REDIS_URL", redis),
        ("REDIS_KEY_PREFIX", prefix),
        ("JWT_SECRET", SECRET),
        ("MEDIFY_CLUSTER", "1"),
        ("MEDIFY_NODE_ID", id),
        ("MEDIFY_HEARTBEAT_MS", "200"),
        ("MEDIFY_NODE_TTL_S", "2"),
        ("MEDIFY_SHUTDOWN_TIMEOUT_S", "2"),
        ("MEDIFY_ADMIN_EMAIL", ADMIN_EMAIL),
        ("MEDIFY_ADMIN_PASSWORD", ADMIN_PASSWORD),
        ("RATE_LIMIT_AUTH_PER_IP", "10000"),
        ("RATE_LIMIT_AUTH_PER_ACCOUNT", "10000"),
        ("OBJECT_STORE", "file:uploads"),
    ];
    vars.extend_from_slice(extra);
    Server::start(dir.path(), &vars)
}

pub struct Client {
    pub base: String,
    pub http: awc::Client,
}

impl Client {
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let method = awc::http::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            req = req.insert_header(("authorization", format!("Bearer {token}")));
        }
        let sent = match body {
            Some(body) => req.send_json(&body).await,
            None => req.send().await,
        };
        let Ok(mut res) = sent else {
            return (0, Value::Null);
        };
        let bytes = res.body().await.unwrap_or_default();
        (
            res.status().as_u16(),
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    pub async fn login(&self, email: &str, password: &str) -> Value {
        let body = json!({"email": email, "password": password});
        let (status, tokens) = self
            .call("POST", "/api/v1/auth/login", None, Some(body))
            .await;
        assert_eq!(status, 200, "{tokens}");
        tokens
    }

    /// A new account of `role`, signed in: its access token.
    pub async fn account(&self, role: &str) -> String {
        let email = format!("{role}-{}@example.com", uuid::Uuid::now_v7().simple());
        let body =
            json!({"name": role, "email": email, "password": "a long password", "role": role});
        let (status, answer) = self
            .call("POST", "/api/v1/auth/register", None, Some(body))
            .await;
        assert_eq!(status, 201, "{answer}");
        self.login(&email, "a long password").await["access_token"]
            .as_str()
            .expect("token")
            .to_owned()
    }

    /// Polls until `done` holds for `GET path`'s 200 answer.
    pub async fn until(
        &self,
        path: &str,
        token: &str,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let start = Instant::now();
        loop {
            let (status, body) = self.call("GET", path, Some(token), None).await;
            if status == 200 && done(&body) {
                return body;
            }
            assert!(start.elapsed() < WAIT, "never {what}: last {status} {body}");
            actix_web::rt::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

pub fn listed(view: &Value) -> BTreeSet<String> {
    view["nodes"]
        .as_array()
        .map(|nodes| {
            nodes
                .iter()
                .filter_map(|n| n["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

pub fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| (*s).to_owned()).collect()
}

/// A Redis server of the test's own (so it can be restarted and its pub/sub clients
/// killed without touching other tests), ended on drop.
pub struct PrivateRedis {
    pub child: Option<Child>,
    pub port: u16,
}

impl PrivateRedis {
    pub fn start(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        let redis = Self {
            child: Some(child),
            port,
        };
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(start.elapsed() < WAIT, "redis-server never listened");
            std::thread::sleep(Duration::from_millis(20));
        }
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Stops the server (all its data gone) and starts a fresh one on the same port.
    pub fn restart(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        *self = Self::start(self.port);
    }

    pub async fn query<T: redis::FromRedisValue>(&self, cmd: &mut redis::Cmd) -> T {
        let client = redis::Client::open(self.url()).expect("client");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("connect");
        cmd.query_async(&mut conn).await.expect("query")
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
