//! Settings: the process environment parsed into one typed [`Settings`] value.
//!
//! Every variable is read and checked before the server starts. All problems are collected
//! and reported together in one [`ConfigError`], naming each variable, so an operator fixes
//! a deployment in one round instead of one variable per restart. Parsing is a pure function
//! of a lookup closure ([`Settings::from_lookup`]), which is how the tests build settings
//! without touching the process environment.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use rand::RngCore;
use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::SqliteConnectOptions;

use crate::auth::client::TrustedProxies;
use crate::auth::otp::{OtpDelivery, OTP_RESEND_COOLDOWN_S};
use crate::domain::{Email, Password};

/// Minimum length of `JWT_SECRET`, in bytes (HS256 wants at least the hash's output size).
pub const MIN_JWT_SECRET_BYTES: usize = 32;

/// Where the process runs; decides which unsafe conveniences are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Development,
    Test,
    Production,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

/// Which database `DATABASE_URL` names; the URL is kept as given.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Sqlite(String),
    Postgres(String),
}

impl DatabaseUrl {
    /// Parses a URL by its scheme. The options are parsed too, so that a malformed URL is
    /// a configuration error rather than a start-up failure later.
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.starts_with("sqlite:") {
            SqliteConnectOptions::from_str(raw)
                .map_err(|e| format!("not a valid SQLite URL ({e})"))?;
            Ok(Self::Sqlite(raw.to_owned()))
        } else if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
            PgConnectOptions::from_str(raw)
                .map_err(|e| format!("not a valid PostgreSQL URL ({e})"))?;
            Ok(Self::Postgres(raw.to_owned()))
        } else {
            Err("must start with sqlite:, postgres:// or postgresql://".to_owned())
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Sqlite(u) | Self::Postgres(u) => u,
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    // A PostgreSQL URL may carry a password: never print it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(u) => write!(f, "Sqlite({u:?})"),
            Self::Postgres(_) => write!(f, "Postgres(<redacted>)"),
        }
    }
}

/// A secret value whose `Debug` output never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Database pool settings.
#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    pub url: DatabaseUrl,
    pub max_connections: u32,
}

/// Redis settings; absent when `REDIS_URL` is not set.
#[derive(Clone)]
pub struct RedisSettings {
    pub url: String,
    /// Prepended to every key, so that several deployments (or tests) share one server.
    pub key_prefix: String,
}

impl fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSettings")
            .field("url", &"<redacted>")
            .field("key_prefix", &self.key_prefix)
            .finish()
    }
}

/// Several nodes acting as one fleet (`MEDIFY_CLUSTER`); see `crate::cluster`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSettings {
    /// On: this node heart-beats into Redis and takes part in ownership.
    pub enabled: bool,
    /// How often the node announces itself.
    pub heartbeat: Duration,
    /// How long after its last heartbeat a node counts as dead.
    pub node_ttl: Duration,
    /// How soon a dead node's regions are dispatched again by another node.
    pub failover: Duration,
    /// How long a node waits for another node's answer (an offer, a command forwarded to
    /// the node running dispatch) before giving up.
    pub rpc_timeout: Duration,
    /// How long a rider's position waits for others before they cross to the watchers'
    /// nodes together (zero: each at once).
    pub tracking_batch: Duration,
}

/// The first admin account, created at start-up if its email is not taken.
#[derive(Debug, Clone)]
pub struct AdminBootstrap {
    pub email: Email,
    pub password: Password,
}

/// Auth rate limits, per minute (each also the burst size).
#[derive(Debug, Clone, Copy)]
pub struct AuthLimits {
    /// Login, register and OTP requests from one client IP.
    pub per_ip: u32,
    /// Login and register attempts for one email; OTP verifications for one phone.
    pub per_account: u32,
}

/// Phone one-time codes: resends and wrong tries.
#[derive(Debug, Clone, Copy)]
pub struct OtpLimits {
    /// Seconds before another code may be sent to the same phone.
    pub resend_cooldown: Duration,
    /// Wrong codes one phone may be tried with in a window, however many codes are sent.
    pub max_wrong_per_phone: u32,
    /// Seconds from a phone's first wrong try until its budget is whole again.
    pub wrong_window: Duration,
}

/// OpenStreetMap's standard tiles; fine for development, see their tile usage policy.
pub const DEFAULT_MAP_TILE_URL: &str = "https://tile.openstreetmap.org/{z}/{x}/{y}.png";

/// Everything the server needs to know about its deployment.
#[derive(Debug, Clone)]
pub struct Settings {
    pub env: Environment,
    pub bind: SocketAddr,
    /// HTTP worker threads; defaults to the number of CPUs.
    pub workers: usize,
    pub database: DatabaseSettings,
    pub redis: Option<RedisSettings>,
    pub jwt_secret: Secret,
    /// True when no `JWT_SECRET` was given and a random one was made (development, test).
    pub jwt_secret_generated: bool,
    pub log_format: LogFormat,
    /// The `RUST_LOG` filter directive.
    pub log_filter: String,
    /// Seconds to let in-flight requests finish after SIGTERM / SIGINT.
    pub shutdown_timeout: Duration,
    pub admin: Option<AdminBootstrap>,
    pub otp_delivery: OtpDelivery,
    pub otp_limits: OtpLimits,
    pub auth_limits: AuthLimits,
    /// Seconds after a refresh token is exchanged during which presenting it again (two
    /// tabs, a client retry) gets another pair of the same session instead of revoking it.
    pub refresh_reuse_interval: Duration,
    /// Proxies whose `X-Forwarded-For` names the client (`TRUSTED_PROXIES`); empty: the
    /// TCP peer is the client.
    pub trusted_proxies: TrustedProxies,
    /// Seconds between sweeps of expired refresh tokens and spent OTP codes.
    pub sweep_interval: Duration,
    /// Inventory shard actors (pharmacies are hashed onto them).
    pub inventory_shards: usize,
    /// How far from the delivery point a pharmacy may be chosen, in metres.
    pub service_radius_m: f64,
    /// How long an order may wait for a rider before it fails.
    pub dispatch_timeout: Duration,
    /// This node's name (Redis consumer name); defaults to host name and process id.
    pub node_id: String,
    pub cluster: ClusterSettings,
    /// How long a Redis Stream entry may stay unacknowledged before another consumer
    /// takes it over, in milliseconds.
    pub bus_claim_idle: Duration,
    /// Where e-mail notifications go (`smtp://host:port`); unset: notifications are logged.
    pub smtp: Option<SmtpSettings>,
    pub dispatch: DispatchSettings,
    /// Base-map tiles for the `/track` and `/ops` pages (a Leaflet URL template).
    pub map_tile_url: String,
    pub limits: AbuseLimits,
    /// Where uploaded prescriptions are kept.
    pub objects: ObjectStoreSettings,
    /// The largest prescription file accepted, in bytes.
    pub prescription_max_bytes: u64,
    pub checkout: CheckoutSettings,
}

/// What stands between a placed order and dispatch: a pharmacist's review of the
/// prescription, and an online payment.
#[derive(Debug, Clone)]
pub struct CheckoutSettings {
    /// An order whose prescription is not reviewed by then fails (stock released).
    pub review_timeout: Duration,
    /// An online order not paid by then fails (stock released).
    pub payment_timeout: Duration,
    /// The key the payment provider signs webhooks with; unset: online payment is off.
    pub webhook_secret: Option<Secret>,
}

/// What one client may hold or do, so that nobody can take a shared resource (a
/// pharmacy's shelf, the fan-out, a rider's session, the server's memory) from the others.
/// The README's "Security" section lists each with what a client sees.
#[derive(Debug, Clone, Copy)]
pub struct AbuseLimits {
    /// Orders one customer may have open (not delivered, cancelled or failed) at once.
    pub open_orders_per_customer: u32,
    /// Order placements one customer may make per minute (also the burst).
    pub orders_per_minute: u32,
    /// Saved delivery addresses one user may keep.
    pub addresses_per_user: u32,
    /// Tracking sockets open at once on one order, and for one user.
    pub track_sockets_per_order: u32,
    pub track_sockets_per_user: u32,
    /// An `assigned` order not picked up by then goes back to dispatching without that
    /// rider.
    pub pickup_timeout: Duration,
    /// Points in one `/orders/{id}/trail` answer; longer trails are thinned evenly.
    pub trail_max_points: u32,
    /// Frames a rider socket may have waiting for the session (beyond the one in flight);
    /// past that they are shed and answered `rate_limited`.
    pub rider_frame_queue: u32,
    /// A held reservation with no order is released at start-up only once it is older
    /// than this (no live process can still be turning it into an order).
    pub reservation_grace: Duration,
}

/// The matcher and rider sessions.
#[derive(Debug, Clone)]
pub struct DispatchSettings {
    pub strategy: medify_actors::matcher::assign::Strategy,
    pub h3_resolution: h3o::Resolution,
    /// Matcher shards are keyed by the parent cell at this resolution.
    pub shard_resolution: h3o::Resolution,
    pub search_radius_m: f64,
    pub batch_window: Duration,
    pub offer_timeout: Duration,
    pub rider_grace: Duration,
}

/// An SMTP relay for notifications.
#[derive(Clone)]
pub struct SmtpSettings {
    pub url: String,
    pub from: String,
}

impl fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpSettings")
            .field("url", &"<redacted>")
            .field("from", &self.from)
            .finish()
    }
}

/// Where uploaded files live (`OBJECT_STORE`); see `crate::objects`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectStoreSettings {
    /// `file:<dir>`: a folder on the local disk.
    Folder(PathBuf),
    /// `s3://<bucket>`: an S3-compatible bucket.
    S3(S3Settings),
}

/// An S3-compatible bucket and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Settings {
    pub bucket: String,
    /// `S3_ENDPOINT`; unset: AWS itself.
    pub endpoint: Option<String>,
    pub region: String,
    /// Unset: the AWS SDK's usual sources (instance or task role).
    pub keys: Option<S3Keys>,
}

/// Static S3 credentials; `Debug` shows neither half.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Keys {
    pub access_key_id: String,
    pub secret_access_key: Secret,
}

impl fmt::Debug for S3Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("S3Keys(<redacted>)")
    }
}

/// The default `OBJECT_STORE` folder, relative to the working directory (where the default
/// SQLite file is too).
pub const DEFAULT_OBJECT_FOLDER: &str = "data";
/// The default `PRESCRIPTION_MAX_BYTES`: 10 MiB.
pub const DEFAULT_PRESCRIPTION_MAX_BYTES: u64 = 10 * 1024 * 1024;

/// All configuration problems found, one per variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub problems: Vec<(&'static str, String)>,
}

impl ConfigError {
    /// The names of the variables that are wrong.
    pub fn variables(&self) -> Vec<&'static str> {
        self.problems.iter().map(|(v, _)| *v).collect()
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "invalid configuration ({} problem(s)):",
            self.problems.len()
        )?;
        for (var, problem) in &self.problems {
            writeln!(f, "  {var}: {problem}")?;
        }
        write!(f, "see the configuration table in README.md")
    }
}

impl std::error::Error for ConfigError {}

/// Reads variables through a lookup function and remembers every problem.
struct Reader<F> {
    lookup: F,
    problems: Vec<(&'static str, String)>,
}

impl<F: Fn(&str) -> Option<String>> Reader<F> {
    /// The variable's value, with surrounding whitespace removed; empty counts as unset.
    fn get(&self, var: &str) -> Option<String> {
        (self.lookup)(var)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    /// Parses `var` with `parse`, or takes `default` when unset. On error the problem is
    /// recorded and `default` is returned so that parsing can go on.
    fn parse<T>(
        &mut self,
        var: &'static str,
        default: T,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> T {
        match self.get(var) {
            None => default,
            Some(raw) => match parse(&raw) {
                Ok(v) => v,
                Err(problem) => {
                    self.problems
                        .push((var, format!("{problem} (got {raw:?})")));
                    default
                }
            },
        }
    }

    fn fail(&mut self, var: &'static str, problem: impl Into<String>) {
        self.problems.push((var, problem.into()));
    }
}

/// Each concern's settings, read through the same [`Reader`] so every problem is
/// collected.
impl<F: Fn(&str) -> Option<String>> Reader<F> {
    /// `MEDIFY_ENV`.
    fn environment(&mut self) -> Environment {
        self.parse("MEDIFY_ENV", Environment::Development, |raw| {
            match raw.to_ascii_lowercase().as_str() {
                "development" | "dev" => Ok(Environment::Development),
                "test" => Ok(Environment::Test),
                "production" | "prod" => Ok(Environment::Production),
                _ => Err("must be development, test or production".to_owned()),
            }
        })
    }

    /// `LOG_FORMAT`, `RUST_LOG`.
    fn logging(&mut self) -> (LogFormat, String) {
        let log_format = self.parse("LOG_FORMAT", LogFormat::Pretty, |raw| {
            match raw.to_ascii_lowercase().as_str() {
                "json" => Ok(LogFormat::Json),
                "pretty" | "text" => Ok(LogFormat::Pretty),
                _ => Err("must be json or pretty".to_owned()),
            }
        });

        let log_filter = self.parse("RUST_LOG", "info".to_owned(), |raw| {
            tracing_subscriber::EnvFilter::try_new(raw)
                .map(|_| raw.to_owned())
                .map_err(|e| format!("not a valid log filter ({e})"))
        });

        (log_format, log_filter)
    }

    /// Rate limits, the refresh reuse interval and the trusted proxies.
    fn auth(&mut self) -> (AuthLimits, Duration, TrustedProxies) {
        let auth_limits = AuthLimits {
            per_ip: self.parse("RATE_LIMIT_AUTH_PER_IP", 30, |raw| {
                parse_number(raw, 1, 1_000_000)
            }),
            per_account: self.parse("RATE_LIMIT_AUTH_PER_ACCOUNT", 10, |raw| {
                parse_number(raw, 1, 1_000_000)
            }),
        };

        let refresh_reuse_interval =
            Duration::from_secs(self.parse("REFRESH_REUSE_INTERVAL_S", 10, |raw| {
                parse_number(raw, 0, 300)
            }));

        let trusted_proxies = self.parse(
            "TRUSTED_PROXIES",
            TrustedProxies::default(),
            TrustedProxies::parse_list,
        );

        (auth_limits, refresh_reuse_interval, trusted_proxies)
    }

    /// `MEDIFY_NODE_ID`, by default the host name and the process id.
    fn node_id(&mut self) -> String {
        self.get("MEDIFY_NODE_ID").unwrap_or_else(|| {
            let host = std::fs::read_to_string("/etc/hostname")
                .map(|h| h.trim().to_owned())
                .unwrap_or_else(|_| "medify".to_owned());
            format!("{host}-{}", std::process::id())
        })
    }

    /// `MEDIFY_BIND`, `MEDIFY_WORKERS`: the address, the workers, and the default worker
    /// count (the machine's cores), which other defaults scale with.
    fn listening(&mut self) -> (SocketAddr, usize, usize) {
        let default_bind = SocketAddr::from(([127, 0, 0, 1], 8080));
        let bind = self.parse("MEDIFY_BIND", default_bind, |raw| {
            raw.parse::<SocketAddr>()
                .map_err(|_| "must be an address and port such as 127.0.0.1:8080".to_owned())
        });
        let default_workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        let workers = self.parse("MEDIFY_WORKERS", default_workers, |raw| {
            parse_number(raw, 1, 256)
        });
        (bind, workers, default_workers)
    }

    /// `MEDIFY_CLUSTER`, `MEDIFY_HEARTBEAT_MS`, `MEDIFY_NODE_TTL_S`, `MEDIFY_FAILOVER_S`,
    /// `MEDIFY_CLUSTER_RPC_TIMEOUT_MS`, `MEDIFY_TRACKING_BATCH_MS`.
    /// `auto` (the default) turns the cluster on when the node has both Redis and
    /// PostgreSQL; `1` insists (and fails without them); `0` keeps the node alone.
    fn cluster(&mut self, database: &DatabaseSettings, redis: bool) -> ClusterSettings {
        let shared = redis && matches!(database.url, DatabaseUrl::Postgres(_));
        let wanted = self.parse("MEDIFY_CLUSTER", None, |raw| {
            match raw.to_ascii_lowercase().as_str() {
                "auto" => Ok(None),
                "1" | "true" | "on" => Ok(Some(true)),
                "0" | "false" | "off" => Ok(Some(false)),
                _ => Err("must be auto, 1 or 0".to_owned()),
            }
        });
        if wanted == Some(true) && !shared {
            self.fail(
                "MEDIFY_CLUSTER",
                "a cluster needs REDIS_URL and a postgres:// DATABASE_URL",
            );
        }
        let heartbeat = Duration::from_millis(self.parse("MEDIFY_HEARTBEAT_MS", 1_000, |raw| {
            parse_number(raw, 100, 60_000)
        }));
        let node_ttl = Duration::from_secs(
            self.parse("MEDIFY_NODE_TTL_S", 5, |raw| parse_number(raw, 1, 300)),
        );
        if node_ttl < heartbeat * 2 {
            self.fail(
                "MEDIFY_NODE_TTL_S",
                "must be at least two heartbeats (MEDIFY_HEARTBEAT_MS) long",
            );
        }
        let failover = Duration::from_secs(
            self.parse("MEDIFY_FAILOVER_S", 10, |raw| parse_number(raw, 1, 3_600)),
        );
        let rpc_timeout =
            Duration::from_millis(self.parse("MEDIFY_CLUSTER_RPC_TIMEOUT_MS", 2_000, |raw| {
                parse_number(raw, 50, 60_000)
            }));
        let tracking_batch =
            Duration::from_millis(self.parse("MEDIFY_TRACKING_BATCH_MS", 20, |raw| {
                parse_number(raw, 0, 1_000)
            }));
        ClusterSettings {
            enabled: wanted.unwrap_or(shared),
            heartbeat,
            node_ttl,
            failover,
            rpc_timeout,
            tracking_batch,
        }
    }

    /// `DATABASE_URL`, `DATABASE_MAX_CONNECTIONS`.
    fn database(&mut self) -> DatabaseSettings {
        let default_db = DatabaseUrl::Sqlite("sqlite://medify.db?mode=rwc".to_owned());
        let url = self.parse("DATABASE_URL", default_db, DatabaseUrl::parse);
        let max_connections = self.parse("DATABASE_MAX_CONNECTIONS", 10, |raw| {
            parse_number(raw, 1, 1000)
        });
        DatabaseSettings {
            url,
            max_connections,
        }
    }

    /// `REDIS_URL`, `REDIS_KEY_PREFIX`.
    fn redis(&mut self) -> Option<RedisSettings> {
        let key_prefix = self
            .get("REDIS_KEY_PREFIX")
            .unwrap_or_else(|| "medify:".to_owned());
        match self.get("REDIS_URL") {
            None => None,
            Some(url) => match redis::Client::open(url.as_str()) {
                Ok(_) => Some(RedisSettings { url, key_prefix }),
                Err(_) => {
                    // The URL itself is not echoed: it may hold a password.
                    self.fail("REDIS_URL", "not a valid Redis URL (redis://host:port/db)");
                    None
                }
            },
        }
    }

    /// `JWT_SECRET`: the secret, and whether it was made up (development, test).
    fn jwt_secret(&mut self, env: Environment) -> (Secret, bool) {
        match self.get("JWT_SECRET") {
            Some(s) if s.len() >= MIN_JWT_SECRET_BYTES => (Secret::new(s.into_bytes()), false),
            Some(s) => {
                self.fail(
                    "JWT_SECRET",
                    format!(
                        "must be at least {MIN_JWT_SECRET_BYTES} bytes long (got {} bytes)",
                        s.len()
                    ),
                );
                (Secret::new(Vec::new()), false)
            }
            None if env == Environment::Production => {
                self.fail(
                    "JWT_SECRET",
                    format!("is required in production (at least {MIN_JWT_SECRET_BYTES} bytes)"),
                );
                (Secret::new(Vec::new()), false)
            }
            None => {
                let mut bytes = vec![0u8; 32];
                rand::rng().fill_bytes(&mut bytes);
                (Secret::new(bytes), true)
            }
        }
    }

    /// `MEDIFY_ADMIN_EMAIL` and `MEDIFY_ADMIN_PASSWORD`: both or neither.
    fn admin(&mut self) -> Option<AdminBootstrap> {
        let admin_email = self.get("MEDIFY_ADMIN_EMAIL");
        let admin_password = (self.lookup)("MEDIFY_ADMIN_PASSWORD").filter(|p| !p.is_empty());
        match (admin_email, admin_password) {
            (None, None) => None,
            (Some(email), Some(password)) => {
                let email = Email::parse(&email)
                    .map_err(|e| self.fail("MEDIFY_ADMIN_EMAIL", e))
                    .ok();
                // The password is never echoed.
                let password = Password::parse(password)
                    .map_err(|e| self.fail("MEDIFY_ADMIN_PASSWORD", e))
                    .ok();
                email
                    .zip(password)
                    .map(|(email, password)| AdminBootstrap { email, password })
            }
            (Some(_), None) => {
                self.fail(
                    "MEDIFY_ADMIN_PASSWORD",
                    "is required when MEDIFY_ADMIN_EMAIL is set",
                );
                None
            }
            (None, Some(_)) => {
                self.fail(
                    "MEDIFY_ADMIN_EMAIL",
                    "is required when MEDIFY_ADMIN_PASSWORD is set",
                );
                None
            }
        }
    }

    /// `OTP_DELIVERY` (production allows only `disabled`) and the OTP limits.
    fn otp(&mut self, env: Environment) -> (OtpDelivery, OtpLimits) {
        let default_delivery = if env == Environment::Production {
            OtpDelivery::Disabled
        } else {
            OtpDelivery::Log
        };
        let otp_delivery = self.parse("OTP_DELIVERY", default_delivery, |raw| {
            let delivery = match raw.to_ascii_lowercase().as_str() {
                "log" => OtpDelivery::Log,
                "response" => OtpDelivery::Response,
                "disabled" | "none" => OtpDelivery::Disabled,
                _ => return Err("must be log, response or disabled".to_owned()),
            };
            if env == Environment::Production && delivery != OtpDelivery::Disabled {
                return Err("log and response reveal codes and are refused in production".into());
            }
            Ok(delivery)
        });

        let otp_limits = OtpLimits {
            resend_cooldown: Duration::from_secs(self.parse(
                "OTP_RESEND_COOLDOWN_S",
                OTP_RESEND_COOLDOWN_S,
                |raw| parse_number(raw, 0, 3_600),
            )),
            max_wrong_per_phone: self.parse("OTP_MAX_WRONG_PER_PHONE", 10, |raw| {
                parse_number(raw, 1, 1_000)
            }),
            wrong_window: Duration::from_secs(self.parse("OTP_WRONG_WINDOW_S", 1_800, |raw| {
                parse_number(raw, 1, 86_400)
            })),
        };
        (otp_delivery, otp_limits)
    }

    /// `SMTP_URL`, `SMTP_FROM`.
    fn smtp(&mut self) -> Option<SmtpSettings> {
        let smtp_from = self
            .get("SMTP_FROM")
            .unwrap_or_else(|| "Medify <no-reply@medify.local>".to_owned());
        if smtp_from.parse::<lettre::message::Mailbox>().is_err() {
            self.fail(
                "SMTP_FROM",
                "must be an address such as Medify <no-reply@example.com>",
            );
        }
        match self.get("SMTP_URL") {
            None => None,
            Some(url) if url.starts_with("smtp://") => Some(SmtpSettings {
                url,
                from: smtp_from,
            }),
            Some(_) => {
                self.fail(
                    "SMTP_URL",
                    "must be smtp://[user:password@]host[:port] (TLS relays are not supported yet)",
                );
                None
            }
        }
    }

    /// The matcher and rider sessions.
    fn dispatch(&mut self) -> DispatchSettings {
        use medify_actors::matcher::assign::Strategy;
        let dispatch = DispatchSettings {
            strategy: self.parse("MATCHING", Strategy::Batched, |raw| {
                match raw.to_ascii_lowercase().as_str() {
                    "batched" => Ok(Strategy::Batched),
                    "greedy" => Ok(Strategy::Greedy),
                    _ => Err("must be batched or greedy".to_owned()),
                }
            }),
            h3_resolution: self.parse("H3_RESOLUTION", h3o::Resolution::Nine, |raw| {
                let n: u8 = parse_number(raw, 5, 12)?;
                h3o::Resolution::try_from(n).map_err(|e| e.to_string())
            }),
            shard_resolution: self.parse(
                "MATCHER_SHARD_RESOLUTION",
                h3o::Resolution::Five,
                |raw| {
                    let n: u8 = parse_number(raw, 0, 12)?;
                    h3o::Resolution::try_from(n).map_err(|e| e.to_string())
                },
            ),
            search_radius_m: f64::from(self.parse("SEARCH_RADIUS_M", 5_000u32, |raw| {
                parse_number(raw, 100, 50_000)
            })),
            batch_window: Duration::from_millis(
                self.parse("BATCH_WINDOW_MS", 500, |raw| parse_number(raw, 10, 60_000)),
            ),
            offer_timeout: Duration::from_secs(
                self.parse("OFFER_TIMEOUT_S", 20, |raw| parse_number(raw, 1, 600)),
            ),
            rider_grace: Duration::from_secs(
                self.parse("RIDER_GRACE_S", 120, |raw| parse_number(raw, 0, 3_600)),
            ),
        };
        if dispatch.shard_resolution > dispatch.h3_resolution {
            self.fail(
                "MATCHER_SHARD_RESOLUTION",
                "must not be finer than H3_RESOLUTION (shards are regions of index cells)",
            );
        }
        dispatch
    }

    /// `RX_REVIEW_TIMEOUT_S`, `PAYMENT_TIMEOUT_S`, `PAYMENT_WEBHOOK_SECRET`.
    fn checkout(&mut self) -> CheckoutSettings {
        let webhook_secret = match self.get("PAYMENT_WEBHOOK_SECRET") {
            None => None,
            Some(s) if s.len() >= 16 => Some(Secret::new(s.into_bytes())),
            Some(s) => {
                self.fail(
                    "PAYMENT_WEBHOOK_SECRET",
                    format!("must be at least 16 bytes long (got {} bytes)", s.len()),
                );
                None
            }
        };
        CheckoutSettings {
            review_timeout: Duration::from_secs(self.parse("RX_REVIEW_TIMEOUT_S", 1_800, |raw| {
                parse_number(raw, 1, 604_800)
            })),
            payment_timeout: Duration::from_secs(self.parse("PAYMENT_TIMEOUT_S", 900, |raw| {
                parse_number(raw, 1, 604_800)
            })),
            webhook_secret,
        }
    }

    /// What one client may hold or do ([`AbuseLimits`]).
    fn limits(&mut self) -> AbuseLimits {
        AbuseLimits {
            open_orders_per_customer: self.parse("MAX_OPEN_ORDERS_PER_CUSTOMER", 5, |raw| {
                parse_number(raw, 1, 1_000_000)
            }),
            orders_per_minute: self.parse("RATE_LIMIT_ORDERS_PER_MINUTE", 10, |raw| {
                parse_number(raw, 1, 1_000_000)
            }),
            addresses_per_user: self.parse("MAX_ADDRESSES_PER_USER", 20, |raw| {
                parse_number(raw, 1, 1_000)
            }),
            track_sockets_per_order: self.parse("MAX_TRACK_SOCKETS_PER_ORDER", 5, |raw| {
                parse_number(raw, 1, 10_000)
            }),
            track_sockets_per_user: self.parse("MAX_TRACK_SOCKETS_PER_USER", 10, |raw| {
                parse_number(raw, 1, 100_000)
            }),
            pickup_timeout: Duration::from_secs(self.parse("PICKUP_TIMEOUT_S", 1_800, |raw| {
                parse_number(raw, 1, 86_400)
            })),
            trail_max_points: self.parse("TRAIL_MAX_POINTS", 5_000, |raw| {
                parse_number(raw, 2, 1_000_000)
            }),
            rider_frame_queue: self
                .parse("RIDER_FRAME_QUEUE", 32, |raw| parse_number(raw, 1, 4_096)),
            reservation_grace: Duration::from_secs(self.parse(
                "RESERVATION_REPAIR_GRACE_S",
                600,
                |raw| parse_number(raw, 0, 86_400),
            )),
        }
    }
}

/// Uploads: the object store and the size limit.
impl<F: Fn(&str) -> Option<String>> Reader<F> {
    /// `OBJECT_STORE`, `S3_*`, `PRESCRIPTION_MAX_BYTES`. Every S3 variable is read (and
    /// checked) whichever store is chosen; they matter only for `s3://`.
    fn objects(&mut self) -> (ObjectStoreSettings, u64) {
        let endpoint = self.get("S3_ENDPOINT").and_then(|raw| {
            let ok = (raw.starts_with("http://") || raw.starts_with("https://"))
                && !raw.contains('@')
                && raw.len() > "https://".len();
            if !ok {
                // Not echoed: a URL may carry credentials.
                self.fail(
                    "S3_ENDPOINT",
                    "must be an http:// or https:// URL without credentials",
                );
            }
            ok.then(|| raw.trim_end_matches('/').to_owned())
        });
        let region = self
            .get("S3_REGION")
            .unwrap_or_else(|| "us-east-1".to_owned());
        let keys = self.s3_keys();
        let store = self.parse(
            "OBJECT_STORE",
            ObjectStoreSettings::Folder(PathBuf::from(DEFAULT_OBJECT_FOLDER)),
            |raw| parse_object_store(raw, endpoint, region, keys),
        );
        let max_bytes = self.parse(
            "PRESCRIPTION_MAX_BYTES",
            DEFAULT_PRESCRIPTION_MAX_BYTES,
            |raw| parse_number(raw, 1, 1 << 30),
        );
        (store, max_bytes)
    }

    /// `S3_ACCESS_KEY_ID` and `S3_SECRET_ACCESS_KEY`: both or neither; never echoed.
    fn s3_keys(&mut self) -> Option<S3Keys> {
        match (
            self.get("S3_ACCESS_KEY_ID"),
            self.get("S3_SECRET_ACCESS_KEY"),
        ) {
            (Some(access_key_id), Some(secret)) => Some(S3Keys {
                access_key_id,
                secret_access_key: Secret::new(secret.into_bytes()),
            }),
            (None, None) => None,
            (Some(_), None) => {
                self.fail(
                    "S3_SECRET_ACCESS_KEY",
                    "is required when S3_ACCESS_KEY_ID is set",
                );
                None
            }
            (None, Some(_)) => {
                self.fail(
                    "S3_ACCESS_KEY_ID",
                    "is required when S3_SECRET_ACCESS_KEY is set",
                );
                None
            }
        }
    }
}

/// `file:<dir>` or `s3://<bucket>` (a bucket name as S3 allows: 3 to 63 lower-case
/// letters, digits, dots and hyphens).
fn parse_object_store(
    raw: &str,
    endpoint: Option<String>,
    region: String,
    keys: Option<S3Keys>,
) -> Result<ObjectStoreSettings, String> {
    if let Some(dir) = raw.strip_prefix("file:") {
        if dir.is_empty() {
            return Err("file: needs a folder, such as file:data".to_owned());
        }
        return Ok(ObjectStoreSettings::Folder(PathBuf::from(dir)));
    }
    if let Some(bucket) = raw.strip_prefix("s3://") {
        let bucket = bucket.trim_end_matches('/');
        let valid = (3..=63).contains(&bucket.len())
            && bucket
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-');
        if !valid {
            return Err("s3:// needs a bucket name: 3 to 63 of a-z, 0-9, '.' and '-'".to_owned());
        }
        return Ok(ObjectStoreSettings::S3(S3Settings {
            bucket: bucket.to_owned(),
            endpoint,
            region,
            keys,
        }));
    }
    Err("must be file:<folder> or s3://<bucket>".to_owned())
}

fn parse_number<T>(raw: &str, min: T, max: T) -> Result<T, String>
where
    T: FromStr + PartialOrd + fmt::Display + Copy,
{
    let v: T = raw
        .parse()
        .map_err(|_| format!("must be a whole number between {min} and {max}"))?;
    if v < min || v > max {
        return Err(format!("must be between {min} and {max}"));
    }
    Ok(v)
}

impl Settings {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|var| std::env::var(var).ok())
    }

    /// Reads settings through `lookup` (a variable name → its value, if set).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut r = Reader {
            lookup,
            problems: Vec::new(),
        };

        let env = r.environment();

        let (bind, workers, default_workers) = r.listening();

        let database = r.database();
        let redis = r.redis();
        let (jwt_secret, jwt_secret_generated) = r.jwt_secret(env);

        let (log_format, log_filter) = r.logging();

        let shutdown_timeout =
            Duration::from_secs(r.parse("MEDIFY_SHUTDOWN_TIMEOUT_S", 30, |raw| {
                parse_number(raw, 0, 3600)
            }));

        let admin = r.admin();
        let (otp_delivery, otp_limits) = r.otp(env);

        let (auth_limits, refresh_reuse_interval, trusted_proxies) = r.auth();

        let sweep_interval = Duration::from_secs(r.parse("SWEEP_INTERVAL_S", 3_600, |raw| {
            parse_number(raw, 1, 604_800)
        }));

        let inventory_shards = r.parse("INVENTORY_SHARDS", default_workers * 2, |raw| {
            parse_number(raw, 1, 256)
        });

        let service_radius_m = r.parse("SERVICE_RADIUS_M", 10_000u32, |raw| {
            parse_number(raw, 100, 100_000)
        });
        let dispatch_timeout = Duration::from_secs(r.parse("DISPATCH_TIMEOUT_S", 600, |raw| {
            parse_number(raw, 1, 86_400)
        }));
        let node_id = r.node_id();
        let cluster = r.cluster(&database, redis.is_some());
        let map_tile_url = r
            .get("MAP_TILE_URL")
            .unwrap_or_else(|| DEFAULT_MAP_TILE_URL.to_owned());
        let bus_claim_idle = Duration::from_millis(r.parse("BUS_CLAIM_IDLE_MS", 30_000, |raw| {
            parse_number(raw, 0, 3_600_000)
        }));

        let smtp = r.smtp();
        let dispatch = r.dispatch();
        let limits = r.limits();
        let checkout = r.checkout();
        let (objects, prescription_max_bytes) = r.objects();
        if !r.problems.is_empty() {
            return Err(ConfigError {
                problems: r.problems,
            });
        }
        Ok(Settings {
            env,
            bind,
            workers,
            database,
            redis,
            jwt_secret,
            jwt_secret_generated,
            log_format,
            log_filter,
            shutdown_timeout,
            admin,
            otp_delivery,
            otp_limits,
            auth_limits,
            refresh_reuse_interval,
            trusted_proxies,
            sweep_interval,
            inventory_shards,
            service_radius_m: f64::from(service_radius_m),
            dispatch_timeout,
            node_id,
            cluster,
            bus_claim_idle,
            smtp,
            dispatch,
            map_tile_url,
            limits,
            checkout,
            objects,
            prescription_max_bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn empty_environment_gives_the_embedded_defaults() {
        let s = settings(&[]).expect("defaults are valid");
        assert_eq!(s.env, Environment::Development);
        assert_eq!(s.bind.to_string(), "127.0.0.1:8080");
        assert!(matches!(s.database.url, DatabaseUrl::Sqlite(ref u) if u.contains("medify.db")));
        assert!(s.redis.is_none());
        assert!(s.jwt_secret_generated);
        assert_eq!(s.jwt_secret.expose().len(), 32);
        assert_eq!(s.log_format, LogFormat::Pretty);
        assert_eq!(s.refresh_reuse_interval, Duration::from_secs(10));
        assert_eq!(s.otp_limits.resend_cooldown, Duration::from_secs(30));
        assert_eq!(s.otp_limits.max_wrong_per_phone, 10);
        assert_eq!(s.otp_limits.wrong_window, Duration::from_secs(1_800));
        assert_eq!(s.sweep_interval, Duration::from_secs(3_600));
    }

    #[test]
    fn trusted_proxies_are_addresses_or_blocks() {
        assert_eq!(
            settings(&[]).expect("ok").trusted_proxies,
            TrustedProxies::default()
        );
        let s = settings(&[("TRUSTED_PROXIES", "127.0.0.1, 10.0.0.0/8, ::1")]).expect("ok");
        assert!(s.trusted_proxies.contains("10.1.2.3".parse().expect("ip")));
        assert!(!s.trusted_proxies.contains("192.0.2.1".parse().expect("ip")));
        let err = settings(&[("TRUSTED_PROXIES", "10.0.0.0/8, lb.internal")]).expect_err("name");
        assert_eq!(err.variables(), vec!["TRUSTED_PROXIES"]);
    }

    #[test]
    fn refresh_reuse_interval_is_bounded() {
        let s = settings(&[("REFRESH_REUSE_INTERVAL_S", "0")]).expect("0 turns it off");
        assert_eq!(s.refresh_reuse_interval, Duration::from_secs(0));
        let err = settings(&[("REFRESH_REUSE_INTERVAL_S", "301")]).expect_err("too long");
        assert_eq!(err.variables(), vec!["REFRESH_REUSE_INTERVAL_S"]);
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let err = settings(&[
            ("MEDIFY_ENV", "production"),
            ("DATABASE_URL", "nosuch://x"),
            ("MEDIFY_BIND", "nonsense"),
            ("LOG_FORMAT", "xml"),
        ])
        .expect_err("invalid");
        assert_eq!(
            err.variables(),
            vec!["MEDIFY_BIND", "DATABASE_URL", "JWT_SECRET", "LOG_FORMAT"]
        );
        let text = err.to_string();
        for var in ["MEDIFY_BIND", "DATABASE_URL", "JWT_SECRET", "LOG_FORMAT"] {
            assert!(text.contains(var), "{text}");
        }
    }

    #[test]
    fn matcher_shards_must_be_coarser_than_the_index() {
        let s = settings(&[]).expect("defaults");
        assert_eq!(s.dispatch.shard_resolution, h3o::Resolution::Five);
        let s = settings(&[("MATCHER_SHARD_RESOLUTION", "4")]).expect("valid");
        assert_eq!(s.dispatch.shard_resolution, h3o::Resolution::Four);
        let err = settings(&[("H3_RESOLUTION", "7"), ("MATCHER_SHARD_RESOLUTION", "8")])
            .expect_err("finer than the index");
        assert_eq!(err.variables(), vec!["MATCHER_SHARD_RESOLUTION"]);
        let err = settings(&[("MATCHER_SHARD_RESOLUTION", "sixteen")]).expect_err("not a number");
        assert_eq!(err.variables(), vec!["MATCHER_SHARD_RESOLUTION"]);
    }

    #[test]
    fn short_secret_is_refused_and_not_echoed() {
        let err = settings(&[("JWT_SECRET", "tooshort-secret")]).expect_err("short");
        assert_eq!(err.variables(), vec!["JWT_SECRET"]);
        assert!(!err.to_string().contains("tooshort-secret"));
    }

    #[test]
    fn postgres_urls_are_recognised_and_not_printed() {
        let s = settings(&[(
            "DATABASE_URL",
            "postgres://medify:hunter2@db.example:5432/medify",
        )])
        .expect("valid");
        assert!(matches!(s.database.url, DatabaseUrl::Postgres(_)));
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn production_with_a_long_secret_is_accepted() {
        let secret = "x".repeat(40);
        let s = settings(&[("MEDIFY_ENV", "production"), ("JWT_SECRET", &secret)]).expect("ok");
        assert!(!s.jwt_secret_generated);
        assert!(!format!("{s:?}").contains(&secret));
    }

    #[test]
    fn otp_delivery_that_reveals_codes_is_refused_in_production() {
        let secret = "x".repeat(40);
        let err = settings(&[
            ("MEDIFY_ENV", "production"),
            ("JWT_SECRET", &secret),
            ("OTP_DELIVERY", "response"),
        ])
        .expect_err("refused");
        assert_eq!(err.variables(), vec!["OTP_DELIVERY"]);
        let s = settings(&[("MEDIFY_ENV", "production"), ("JWT_SECRET", &secret)]).expect("ok");
        assert_eq!(s.otp_delivery, OtpDelivery::Disabled);
        assert_eq!(settings(&[]).expect("ok").otp_delivery, OtpDelivery::Log);
    }

    #[test]
    fn admin_bootstrap_needs_both_halves_and_never_echoes_the_password() {
        let err = settings(&[("MEDIFY_ADMIN_EMAIL", "root@example.com")]).expect_err("half");
        assert_eq!(err.variables(), vec!["MEDIFY_ADMIN_PASSWORD"]);
        let err = settings(&[
            ("MEDIFY_ADMIN_EMAIL", "not-an-email"),
            ("MEDIFY_ADMIN_PASSWORD", "short7"),
        ])
        .expect_err("invalid");
        assert_eq!(
            err.variables(),
            vec!["MEDIFY_ADMIN_EMAIL", "MEDIFY_ADMIN_PASSWORD"]
        );
        assert!(!err.to_string().contains("short7"));
        let s = settings(&[
            ("MEDIFY_ADMIN_EMAIL", " Root@Example.com "),
            ("MEDIFY_ADMIN_PASSWORD", "a long admin password"),
        ])
        .expect("ok");
        let admin = s.admin.as_ref().expect("admin");
        assert_eq!(admin.email.as_str(), "root@example.com");
        assert!(!format!("{s:?}").contains("a long admin password"));
    }

    #[test]
    fn object_stores_are_folders_or_buckets_and_keys_stay_secret() {
        let s = settings(&[]).expect("defaults");
        assert_eq!(
            s.objects,
            ObjectStoreSettings::Folder(PathBuf::from("data"))
        );
        assert_eq!(s.prescription_max_bytes, 10 * 1024 * 1024);
        let s = settings(&[
            ("OBJECT_STORE", "s3://rx-files"),
            ("S3_ENDPOINT", "http://127.0.0.1:9000/"),
            ("S3_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("S3_SECRET_ACCESS_KEY", "wJalrXUtnFEMI-secret"),
        ])
        .expect("valid");
        let ObjectStoreSettings::S3(s3) = &s.objects else {
            panic!("not S3: {:?}", s.objects)
        };
        assert_eq!(s3.bucket, "rx-files");
        assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(s3.region, "us-east-1");
        let shown = format!("{s:?}");
        assert!(!shown.contains("wJalrXUtnFEMI-secret") && !shown.contains("AKIDEXAMPLE"));
        let err = settings(&[
            ("OBJECT_STORE", "s3://No_Such"),
            ("S3_ENDPOINT", "http://user:pw@host"),
            ("S3_SECRET_ACCESS_KEY", "lonely-secret"),
            ("PRESCRIPTION_MAX_BYTES", "0"),
        ])
        .expect_err("invalid");
        assert_eq!(
            err.variables(),
            vec![
                "S3_ENDPOINT",
                "S3_ACCESS_KEY_ID",
                "OBJECT_STORE",
                "PRESCRIPTION_MAX_BYTES"
            ]
        );
        let text = err.to_string();
        assert!(
            !text.contains("pw@host") && !text.contains("lonely-secret"),
            "{text}"
        );
        let err = settings(&[("OBJECT_STORE", "ftp://x")]).expect_err("scheme");
        assert_eq!(err.variables(), vec!["OBJECT_STORE"]);
    }

    #[test]
    fn bad_redis_url_and_log_filter_are_reported() {
        let err = settings(&[("REDIS_URL", "http://nope"), ("RUST_LOG", "info,[[[")])
            .expect_err("invalid");
        assert_eq!(err.variables(), vec!["REDIS_URL", "RUST_LOG"]);
    }
}

/// Every environment variable the parser reads, e.g. to check that a deployment file sets
/// no variable the server would ignore.
pub fn known_variables() -> std::collections::BTreeSet<String> {
    let read = std::cell::RefCell::new(std::collections::BTreeSet::new());
    let _ = Settings::from_lookup(|k| {
        read.borrow_mut().insert(k.to_owned());
        None
    });
    let mut read = read.into_inner();
    // Read only when its pair (MEDIFY_ADMIN_EMAIL) is set.
    read.insert("MEDIFY_ADMIN_PASSWORD".to_owned());
    read
}

/// The README's configuration table must say what the parser does: every variable it
/// reads has a row, and every default written there as a literal is the parser's.
#[cfg(test)]
mod readme_table {
    use super::*;
    use std::collections::{BTreeSet, HashMap};

    /// (variables, default) of each row; a row may name several variables.
    fn rows() -> Vec<(Vec<String>, String)> {
        let readme = include_str!("../README.md");
        let table = readme
            .split("## Configuration")
            .nth(1)
            .expect("a Configuration section");
        table
            .lines()
            .skip_while(|l| !l.starts_with("| variable"))
            .skip(2)
            .take_while(|l| l.starts_with('|'))
            .map(|l| {
                let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                let names = cells[1]
                    .split(',')
                    .map(|n| n.trim().trim_matches('`').to_owned())
                    .collect();
                (names, cells[2].to_owned())
            })
            .collect()
    }

    /// A baseline environment where nothing depends on the machine or on chance.
    fn fixed() -> HashMap<String, String> {
        HashMap::from([
            ("JWT_SECRET".to_owned(), "x".repeat(MIN_JWT_SECRET_BYTES)),
            ("MEDIFY_NODE_ID".to_owned(), "node".to_owned()),
            ("MEDIFY_WORKERS".to_owned(), "2".to_owned()),
        ])
    }

    fn debug_of(env: &HashMap<String, String>) -> String {
        let settings = Settings::from_lookup(|k| env.get(k).cloned()).expect("valid settings");
        format!("{settings:?}")
    }

    #[test]
    fn every_variable_the_parser_reads_has_a_row() {
        let read = known_variables();
        let documented: BTreeSet<String> = rows().into_iter().flat_map(|(n, _)| n).collect();
        let missing: Vec<_> = read.difference(&documented).cloned().collect();
        assert!(missing.is_empty(), "not in the README table: {missing:?}");
        let unknown: Vec<_> = documented.difference(&read).cloned().collect();
        assert!(
            unknown.is_empty(),
            "in the README table, never read: {unknown:?}"
        );
    }

    #[test]
    fn literal_defaults_in_the_table_are_the_parsers() {
        let baseline = debug_of(&fixed());
        let mut checked = 0;
        for (names, default) in rows() {
            // A plain `value` is a literal default; prose (random, number of CPUs, unset,
            // empty, …) is not.
            let Some(literal) = default
                .strip_prefix('`')
                .and_then(|d| d.strip_suffix('`'))
                .filter(|d| !d.contains('`'))
            else {
                continue;
            };
            for name in names {
                if fixed().contains_key(&name) {
                    continue;
                }
                let mut env = fixed();
                env.insert(name.clone(), literal.to_owned());
                assert_eq!(
                    debug_of(&env),
                    baseline,
                    "{name}: the README's default `{literal}` is not the parser's"
                );
                checked += 1;
            }
        }
        assert!(checked > 30, "only {checked} defaults checked");
    }
}
