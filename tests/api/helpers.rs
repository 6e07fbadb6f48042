#![allow(dead_code)] // shared by test files; not every helper is used by each
//! Test harness: each test gets its own real server on a random port, over its own
//! database.
//!
//! - SQLite: a fresh file in the temp directory, deleted afterwards. Always available.
//! - PostgreSQL: a fresh database on the server named by `MEDIFY_TEST_PG` (an admin URL),
//!   created before and dropped (WITH FORCE) after the test.
//! - Redis: when a test asks for it, `MEDIFY_TEST_REDIS` with a unique key prefix per test,
//!   whose keys are deleted afterwards.
//!
//! A backend whose variable is unset is skipped with a note on stderr, unless
//! `MEDIFY_REQUIRE_SERVICES=1`, which turns the skip into a failure (CI sets it).
//! `TEST_LOG=1` sends the servers' logs to stdout.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Once;

use awc::http::header::HeaderMap;
use medify::config::{LogFormat, Settings};
use medify::startup::Application;
use serde_json::Value;
use sqlx::Connection;
use uuid::Uuid;

/// A secret the tests know, so they can forge tokens.
pub const TEST_JWT_SECRET: &str = "test-secret-test-secret-test-secret-0123456789";
/// The admin every test server bootstraps.
pub const ADMIN_EMAIL: &str = "admin@medify.test";
pub const ADMIN_PASSWORD: &str = "admin-password-for-tests";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// How to start a test server beyond the defaults.
#[derive(Default)]
pub struct Options {
    /// Connect to the test Redis (`MEDIFY_TEST_REDIS`).
    pub redis: bool,
    /// Extra environment variables for the server's settings.
    pub env: Vec<(&'static str, String)>,
}

/// A running server and what is needed to talk to it and clean up after it. Derefs to
/// [`Http`] for requests.
pub struct TestApp {
    pub http: Http,
    /// The server's shared state: tests drive its actors directly.
    pub state: actix_web::web::Data<medify::state::AppState>,
    pub port: u16,
    pub backend: Backend,
    /// The environment the server's settings were read from.
    pub env: HashMap<String, String>,
    _database: TestDatabase,
    _redis: Option<TestRedis>,
    _objects: TestObjects,
}

impl std::ops::Deref for TestApp {
    type Target = Http;
    fn deref(&self) -> &Http {
        &self.http
    }
}

/// A client bound to one server's address.
pub struct Http {
    pub address: String,
    pub client: awc::Client,
}

/// An answer, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    /// Asserts a problem+json answer with this status and code; returns the body.
    #[track_caller]
    pub fn assert_problem(&self, status: u16, code: &str) -> Value {
        assert_eq!(self.status, status, "status; body: {}", self.text());
        let ct = self.header("content-type").unwrap_or_default();
        assert!(
            ct.starts_with("application/problem+json"),
            "content-type {ct:?}; body: {}",
            self.text()
        );
        let body = self.json();
        assert_eq!(body["status"], status, "{body}");
        assert_eq!(body["code"], code, "{body}");
        assert!(body["title"].is_string(), "{body}");
        body
    }
}

impl Http {
    pub fn new(port: u16) -> Self {
        Self {
            address: format!("http://127.0.0.1:{port}"),
            client: awc::Client::builder()
                .timeout(std::time::Duration::from_secs(30))
                .finish(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// Sends a prepared request (any headers), reading the whole answer.
    pub async fn send(&self, req: awc::ClientRequest, body: Option<Vec<u8>>) -> Reply {
        let sent = match body {
            Some(b) => req.send_body(b).await,
            None => req.send().await,
        };
        let mut res = sent.expect("request failed");
        let body = res
            .body()
            .limit(16 * 1024 * 1024)
            .await
            .expect("could not read body");
        Reply {
            status: res.status().as_u16(),
            headers: res.headers().clone(),
            body: body.to_vec(),
        }
    }

    /// Any method, optional bearer token, optional JSON body.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Reply {
        let method = awc::http::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.client.request(method, self.url(path));
        if let Some(token) = token {
            req = req.insert_header(("authorization", format!("Bearer {token}")));
        }
        match body {
            Some(body) => {
                let req = req.insert_header(("content-type", "application/json"));
                self.send(req, Some(body.to_string().into_bytes())).await
            }
            None => self.send(req, None).await,
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.request("GET", path, None, None).await
    }

    pub async fn get_auth(&self, path: &str, token: &str) -> Reply {
        self.request("GET", path, Some(token), None).await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Reply {
        self.request("POST", path, None, Some(body)).await
    }

    pub async fn post_auth(&self, path: &str, token: &str, body: &Value) -> Reply {
        self.request("POST", path, Some(token), Some(body)).await
    }

    /// Sends any method with a raw body and content type.
    pub async fn raw(&self, method: &str, path: &str, content_type: &str, body: &[u8]) -> Reply {
        let method = awc::http::Method::from_bytes(method.as_bytes()).expect("method");
        let req = self
            .client
            .request(method, self.url(path))
            .insert_header(("content-type", content_type));
        self.send(req, Some(body.to_vec())).await
    }

    /// Registers an account with a unique email; returns the user and the password.
    pub async fn register(&self, role: &str) -> (Value, String) {
        let password = format!("pw-{}", Uuid::now_v7().simple());
        let email = format!("{role}-{}@example.com", Uuid::now_v7().simple());
        let res = self
            .post_json(
                "/api/v1/auth/register",
                &serde_json::json!({"name": format!("Test {role}"), "email": email,
                                    "password": password, "role": role}),
            )
            .await;
        assert_eq!(res.status, 201, "register: {}", res.text());
        (res.json()["user"].clone(), password)
    }

    /// Logs in and returns the token answer.
    pub async fn login(&self, email: &str, password: &str) -> Value {
        let res = self
            .post_json(
                "/api/v1/auth/login",
                &serde_json::json!({"email": email, "password": password}),
            )
            .await;
        assert_eq!(res.status, 200, "login: {}", res.text());
        res.json()
    }

    /// A fresh account of `role` (customer or rider) and its access token.
    pub async fn user_token(&self, role: &str) -> (Value, String) {
        let (user, password) = self.register(role).await;
        let email = user["email"].as_str().expect("email").to_owned();
        let tokens = self.login(&email, &password).await;
        (
            user,
            tokens["access_token"].as_str().expect("token").to_owned(),
        )
    }

    /// Creates a medicine as `admin`; returns its id.
    pub async fn create_medicine(
        &self,
        admin: &str,
        name: &str,
        generic: Option<&str>,
        brand: Option<&str>,
        price_cents: i64,
    ) -> Uuid {
        let res = self
            .post_auth(
                "/api/v1/medicines",
                admin,
                &serde_json::json!({"name": name, "generic_name": generic, "brand": brand,
                                    "sku": format!("SKU-{}", Uuid::now_v7().simple()),
                                    "price_cents": price_cents}),
            )
            .await;
        assert_eq!(res.status, 201, "create medicine: {}", res.text());
        Uuid::parse_str(res.json()["id"].as_str().expect("id")).expect("uuid")
    }

    /// Creates a pharmacy as `admin`; returns its id.
    pub async fn create_pharmacy(&self, admin: &str, name: &str, lat: f64, lng: f64) -> Uuid {
        let res = self
            .post_auth(
                "/api/v1/pharmacies",
                admin,
                &serde_json::json!({"name": name, "lat": lat, "lng": lng, "address": format!("{name} street")}),
            )
            .await;
        assert_eq!(res.status, 201, "create pharmacy: {}", res.text());
        Uuid::parse_str(res.json()["id"].as_str().expect("id")).expect("uuid")
    }

    /// A pharmacy named `name` at `(lat, lng)` stocking `stock` of a new medicine "M"
    /// (price 100), all made by `admin`; returns `(pharmacy, medicine)`.
    pub async fn stocked_pharmacy(
        &self,
        admin: &str,
        name: &str,
        lat: f64,
        lng: f64,
        stock: i64,
    ) -> (Uuid, Uuid) {
        let pharmacy = self.create_pharmacy(admin, name, lat, lng).await;
        let medicine = self.create_medicine(admin, "M", None, None, 100).await;
        assert_eq!(
            self.put_stock(admin, pharmacy, &[(medicine, stock)])
                .await
                .status,
            200
        );
        (pharmacy, medicine)
    }

    /// Sets shelf quantities as `token`; returns the answer.
    pub async fn put_stock(&self, token: &str, pharmacy: Uuid, lines: &[(Uuid, i64)]) -> Reply {
        let items: Vec<Value> = lines
            .iter()
            .map(|(m, q)| serde_json::json!({"medicine_id": m, "quantity": q}))
            .collect();
        self.request(
            "PUT",
            &format!("/api/v1/pharmacies/{pharmacy}/stock"),
            Some(token),
            Some(&serde_json::json!({ "items": items })),
        )
        .await
    }

    /// `(quantity, reserved)` of one medicine at one pharmacy, read over the API.
    pub async fn stock_of(&self, pharmacy: Uuid, medicine: Uuid) -> (i64, i64) {
        let res = self
            .get(&format!("/api/v1/pharmacies/{pharmacy}/stock?per_page=100"))
            .await;
        assert_eq!(res.status, 200, "{}", res.text());
        let body = res.json();
        let row = body["items"]
            .as_array()
            .expect("items")
            .iter()
            .find(|r| r["medicine_id"] == medicine.to_string())
            .cloned()
            .unwrap_or_else(|| serde_json::json!({"quantity": 0, "reserved": 0}));
        (
            row["quantity"].as_i64().expect("quantity"),
            row["reserved"].as_i64().expect("reserved"),
        )
    }

    /// Places an order as `customer`; returns the answer.
    pub async fn place_order(
        &self,
        customer: &str,
        items: &[(Uuid, i64)],
        lat: f64,
        lng: f64,
    ) -> Reply {
        let items: Vec<Value> = items
            .iter()
            .map(|(m, q)| serde_json::json!({"medicine_id": m, "qty": q}))
            .collect();
        self.post_auth(
            "/api/v1/orders",
            customer,
            &serde_json::json!({"items": items, "delivery": {"lat": lat, "lng": lng, "address": "12 Test Road"}}),
        )
        .await
    }

    /// The bootstrapped admin's access token.
    pub async fn admin_token(&self) -> String {
        let tokens = self.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
        tokens["access_token"].as_str().expect("token").to_owned()
    }
}

/// Starts a server on `backend`; `None` when that backend is not configured (skipped).
pub async fn spawn_app(backend: Backend) -> Option<TestApp> {
    spawn_app_with(backend, Options::default()).await
}

/// A server on SQLite with these settings on top of the test defaults.
pub async fn sqlite_app(env: &[(&'static str, &str)]) -> TestApp {
    let env = env.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
    spawn_app_with(
        Backend::Sqlite,
        Options {
            env,
            ..Options::default()
        },
    )
    .await
    .expect("SQLite is always available")
}

/// Starts a server on `backend` with `options`; `None` when a needed service is not
/// configured and services are not required.
pub async fn spawn_app_with(backend: Backend, options: Options) -> Option<TestApp> {
    init_test_logging();
    let database = TestDatabase::create(backend).await?;
    let redis = if options.redis {
        Some(TestRedis::new()?)
    } else {
        None
    };

    let objects = TestObjects::new();
    let mut env: HashMap<String, String> = HashMap::new();
    env.insert(
        "OBJECT_STORE".into(),
        format!("file:{}", objects.0.display()),
    );
    env.insert("MEDIFY_ENV".into(), "test".into());
    env.insert("MEDIFY_BIND".into(), "127.0.0.1:0".into());
    env.insert("MEDIFY_WORKERS".into(), "1".into());
    env.insert("MEDIFY_SHUTDOWN_TIMEOUT_S".into(), "1".into());
    env.insert("DATABASE_URL".into(), database.url().to_owned());
    env.insert("DATABASE_MAX_CONNECTIONS".into(), "5".into());
    env.insert("JWT_SECRET".into(), TEST_JWT_SECRET.into());
    env.insert("MEDIFY_ADMIN_EMAIL".into(), ADMIN_EMAIL.into());
    env.insert("MEDIFY_ADMIN_PASSWORD".into(), ADMIN_PASSWORD.into());
    env.insert("OTP_DELIVERY".into(), "response".into());
    env.insert("INVENTORY_SHARDS".into(), "2".into());
    // Tests place many orders per customer; the abuse limits' own tests set them back.
    env.insert("MAX_OPEN_ORDERS_PER_CUSTOMER".into(), "1000".into());
    env.insert("RATE_LIMIT_ORDERS_PER_MINUTE".into(), "1000000".into());
    if let Some(redis) = &redis {
        env.insert("REDIS_URL".into(), redis.url.clone());
        env.insert("REDIS_KEY_PREFIX".into(), redis.prefix.clone());
    }
    for (k, v) in options.env {
        env.insert(k.to_owned(), v);
    }
    let (port, state) = start_server(&env).await;
    Some(TestApp {
        http: Http::new(port),
        state,
        port,
        backend,
        env,
        _database: database,
        _redis: redis,
        _objects: objects,
    })
}

pub async fn start_server(
    env: &HashMap<String, String>,
) -> (u16, actix_web::web::Data<medify::state::AppState>) {
    let settings = Settings::from_lookup(|k| env.get(k).cloned()).expect("test settings");
    let app = Application::build(settings)
        .await
        .expect("the application failed to start");
    let port = app.port();
    let state = app.state();
    actix_web::rt::spawn(app.run_until_stopped());
    (port, state)
}

/// A store connected to the test server's database (for driving actors directly).
pub async fn connect_store(app: &TestApp) -> medify::store::Store {
    let settings = Settings::from_lookup(|k| app.env.get(k).cloned()).expect("settings");
    medify::store::Store::connect(&settings.database)
        .await
        .expect("connect to the test database")
}

/// Another server on the same database, secret and Redis prefix as `app`: a second node,
/// or the same deployment after a restart. `app` keeps ownership of the cleanup.
pub async fn spawn_sibling(app: &TestApp) -> Http {
    Http::new(start_server(&app.env).await.0)
}

fn init_test_logging() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        if std::env::var("TEST_LOG").is_ok() {
            let _ = medify::telemetry::init(LogFormat::Pretty, "info", std::io::stdout);
        }
    });
}

fn services_required() -> bool {
    std::env::var("MEDIFY_REQUIRE_SERVICES").is_ok_and(|v| v == "1" || v == "true")
}

/// The value of a service variable, or `None` to skip (panics when services are required).
pub fn service_var(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => Some(v),
        _ if services_required() => {
            panic!("{var} is not set, and MEDIFY_REQUIRE_SERVICES=1 forbids skipping")
        }
        _ => {
            eprintln!("skipped: {var} is not set");
            None
        }
    }
}

enum TestDatabase {
    Sqlite {
        path: PathBuf,
        url: String,
    },
    Postgres {
        admin_url: String,
        name: String,
        url: String,
    },
}

impl TestDatabase {
    /// The URL the server under test uses.
    fn url(&self) -> &str {
        match self {
            Self::Sqlite { url, .. } | Self::Postgres { url, .. } => url,
        }
    }

    async fn create(backend: Backend) -> Option<Self> {
        match backend {
            Backend::Sqlite => {
                let path = std::env::temp_dir().join(format!("medify-test-{}.db", Uuid::now_v7()));
                let url = format!("sqlite://{}?mode=rwc", path.display());
                Some(Self::Sqlite { path, url })
            }
            Backend::Postgres => {
                let admin_url = service_var("MEDIFY_TEST_PG")?;
                let name = format!("medify_test_{}", Uuid::now_v7().simple());
                let mut conn = sqlx::PgConnection::connect(&admin_url)
                    .await
                    .expect("MEDIFY_TEST_PG is set but PostgreSQL does not answer");
                sqlx::query(&format!("CREATE DATABASE \"{name}\""))
                    .execute(&mut conn)
                    .await
                    .expect("could not create the test database");
                let _ = conn.close().await;
                let url = with_database(&admin_url, &name);
                Some(Self::Postgres {
                    admin_url,
                    name,
                    url,
                })
            }
        }
    }
}

/// Replaces the database name in a PostgreSQL URL.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_part = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{host_part}/{name}?{q}"),
        None => format!("{host_part}/{name}"),
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        match self {
            Self::Sqlite { path, .. } => {
                for suffix in ["", "-wal", "-shm"] {
                    let mut p = path.clone().into_os_string();
                    p.push(suffix);
                    let _ = std::fs::remove_file(p);
                }
            }
            Self::Postgres {
                admin_url, name, ..
            } => {
                let (admin_url, name) = (admin_url.clone(), name.clone());
                // Drop runs inside the test's runtime; a separate thread gets its own.
                let _ = std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("runtime");
                    rt.block_on(async {
                        if let Ok(mut conn) = sqlx::PgConnection::connect(&admin_url).await {
                            let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                            if let Err(e) = sqlx::query(&sql).execute(&mut conn).await {
                                eprintln!("could not drop test database {name}: {e}");
                            }
                        }
                    });
                })
                .join();
            }
        }
    }
}

/// Each server's own object-store folder (uploads), deleted afterwards.
struct TestObjects(PathBuf);

impl TestObjects {
    fn new() -> Self {
        Self(std::env::temp_dir().join(format!("medify-test-objects-{}", Uuid::now_v7())))
    }
}

impl Drop for TestObjects {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct TestRedis {
    url: String,
    prefix: String,
}

impl TestRedis {
    fn new() -> Option<Self> {
        let url = service_var("MEDIFY_TEST_REDIS")?;
        let prefix = format!("medify-test:{}:", Uuid::now_v7().simple());
        Some(Self { url, prefix })
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        let Ok(client) = redis::Client::open(self.url.as_str()) else {
            return;
        };
        let Ok(mut conn) = client.get_connection() else {
            return;
        };
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", self.prefix))
            .query(&mut conn)
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query(&mut conn);
        }
    }
}

/// Declares each `async fn name(app: TestApp)` as two tests, `sqlite::name` and
/// `postgres::name`, so the same suite runs on both backends.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[actix_web::test]
                async fn $name() {
                    let app = $crate::helpers::spawn_app($crate::helpers::Backend::Sqlite)
                        .await
                        .expect("SQLite is always available");
                    super::$name(app).await;
                }
            )+
        }
        mod postgres {
            $(
                #[actix_web::test]
                async fn $name() {
                    if let Some(app) =
                        $crate::helpers::spawn_app($crate::helpers::Backend::Postgres).await
                    {
                        super::$name(app).await;
                    }
                }
            )+
        }
    };
}

/// [`backend_tests!`] for servers with extra settings: declares each `async fn name(app:
/// TestApp)` as `$module::sqlite::name` and `$module::postgres::name`, each server started
/// with the [`Options`] that `fn $options() -> Options` (in the calling file) gives.
#[macro_export]
macro_rules! backend_tests_with {
    ($module:ident, $options:ident, $($name:ident),+ $(,)?) => {
        mod $module {
            mod sqlite {
                $(
                    #[actix_web::test]
                    async fn $name() {
                        let app = $crate::helpers::spawn_app_with(
                            $crate::helpers::Backend::Sqlite,
                            super::super::$options(),
                        )
                        .await
                        .expect("SQLite is always available");
                        super::super::$name(app).await;
                    }
                )+
            }
            mod postgres {
                $(
                    #[actix_web::test]
                    async fn $name() {
                        if let Some(app) = $crate::helpers::spawn_app_with(
                            $crate::helpers::Backend::Postgres,
                            super::super::$options(),
                        )
                        .await
                        {
                            super::super::$name(app).await;
                        }
                    }
                )+
            }
        }
    };
}

#[test]
fn with_database_replaces_the_name() {
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1:5432/postgres", "x"),
        "postgres://postgres@127.0.0.1:5432/x"
    );
    assert_eq!(
        with_database("postgres://u:p@h/db?sslmode=disable", "y"),
        "postgres://u:p@h/y?sslmode=disable"
    );
    assert_eq!(
        with_database("postgres://h:5432", "z"),
        "postgres://h:5432/z"
    );
}
