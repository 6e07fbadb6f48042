//! The Medify endpoints the simulator uses, over [`crate::http::Client`].
//!
//! Every unexpected answer becomes an error naming the call, the status and the problem
//! `code`, and is counted in the run's protocol errors by the caller.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use serde_json::{json, Value};
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::geo::Point;
use crate::http::{Client, Reply};

/// Access tokens live 15 minutes on the server; refresh well before.
const REFRESH_AFTER: Duration = Duration::from_secs(10 * 60);

/// An answer with a status the caller did not expect.
#[derive(Debug, Clone)]
pub struct Unexpected {
    pub what: &'static str,
    pub status: u16,
    pub code: Option<String>,
    pub body: String,
}

impl std::fmt::Display for Unexpected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: HTTP {} {}: {}",
            self.what,
            self.status,
            self.code.as_deref().unwrap_or("-"),
            self.body.chars().take(300).collect::<String>()
        )
    }
}

impl std::error::Error for Unexpected {}

/// `Ok(reply)` if its status is one of `ok`, else an [`Unexpected`] error.
pub fn expect(what: &'static str, reply: Reply, ok: &[u16]) -> anyhow::Result<Reply> {
    if ok.contains(&reply.status) {
        Ok(reply)
    } else {
        Err(Unexpected {
            what,
            status: reply.status,
            code: reply.problem_code(),
            body: reply.text(),
        }
        .into())
    }
}

fn str_field(v: &Value, field: &str) -> anyhow::Result<String> {
    v.get(field)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("answer without {field:?}: {v}"))
}

fn uuid_field(v: &Value, field: &str) -> anyhow::Result<Uuid> {
    Uuid::parse_str(&str_field(v, field)?).map_err(|e| anyhow!("{field} is not a UUID ({e})"))
}

/// A signed-in account: its id and tokens, refreshed when they get old.
pub struct Session {
    pub user_id: Uuid,
    tokens: Mutex<Tokens>,
}

struct Tokens {
    access: String,
    refresh: String,
    at: Instant,
}

impl Session {
    fn from_tokens(v: &Value) -> anyhow::Result<Self> {
        let user_id = v
            .get("user")
            .ok_or_else(|| anyhow!("token answer without user"))
            .and_then(|u| uuid_field(u, "id"))?;
        Ok(Self {
            user_id,
            tokens: Mutex::new(Tokens {
                access: str_field(v, "access_token")?,
                refresh: str_field(v, "refresh_token")?,
                at: Instant::now(),
            }),
        })
    }

    /// A valid access token (refreshed first when it is close to expiring).
    pub async fn token(&self, api: &Api) -> anyhow::Result<String> {
        let mut t = self.tokens.lock().await;
        if t.at.elapsed() > REFRESH_AFTER {
            let reply = api
                .http
                .request(
                    "POST",
                    "/api/v1/auth/refresh",
                    None,
                    Some(&json!({"refresh_token": t.refresh})),
                    &[],
                )
                .await?;
            let v = expect("refresh", reply, &[200])?.json();
            t.access = str_field(&v, "access_token")?;
            t.refresh = str_field(&v, "refresh_token")?;
            t.at = Instant::now();
        }
        Ok(t.access.clone())
    }
}

/// An order as the customer got it back.
#[derive(Debug, Clone)]
pub struct PlacedOrder {
    pub id: Uuid,
    pub code: String,
    pub status: String,
}

/// The API of one server.
#[derive(Clone)]
pub struct Api {
    pub http: Client,
}

impl Api {
    pub fn new(base: &str) -> anyhow::Result<Self> {
        Ok(Self {
            http: Client::new(base)?,
        })
    }

    /// `GET /readyz` answered 200.
    pub async fn ready(&self) -> bool {
        matches!(
            self.http.request("GET", "/readyz", None, None, &[]).await,
            Ok(r) if r.status == 200
        )
    }

    pub async fn login(&self, email: &str, password: &str) -> anyhow::Result<Arc<Session>> {
        let reply = self
            .http
            .request(
                "POST",
                "/api/v1/auth/login",
                None,
                Some(&json!({"email": email, "password": password})),
                &[],
            )
            .await?;
        let v = expect("login", reply, &[200])?.json();
        Ok(Arc::new(Session::from_tokens(&v)?))
    }

    /// Registers an account (`customer` or `rider`) and signs it in.
    pub async fn register(
        &self,
        role: &str,
        name: &str,
        email: &str,
        password: &str,
    ) -> anyhow::Result<Arc<Session>> {
        let reply = self
            .http
            .request(
                "POST",
                "/api/v1/auth/register",
                None,
                Some(&json!({"name": name, "email": email, "password": password, "role": role})),
                &[],
            )
            .await?;
        let v = expect("register", reply, &[200, 201])?.json();
        // Should the server ever answer register with tokens, use them directly.
        if v.get("access_token").is_some() {
            return Ok(Arc::new(Session::from_tokens(&v)?));
        }
        self.login(email, password).await
    }

    pub async fn create_medicine(
        &self,
        admin: &str,
        name: &str,
        sku: &str,
        price_cents: i64,
    ) -> anyhow::Result<Uuid> {
        let body = json!({"name": name, "generic_name": name, "brand": null, "sku": sku,
                          "price_cents": price_cents});
        let reply = self
            .http
            .request("POST", "/api/v1/medicines", Some(admin), Some(&body), &[])
            .await?;
        uuid_field(&expect("create medicine", reply, &[201])?.json(), "id")
    }

    pub async fn create_pharmacy(
        &self,
        admin: &str,
        name: &str,
        at: Point,
    ) -> anyhow::Result<Uuid> {
        let body = json!({"name": name, "lat": at.lat, "lng": at.lng,
                          "address": format!("{name}, simulated street")});
        let reply = self
            .http
            .request("POST", "/api/v1/pharmacies", Some(admin), Some(&body), &[])
            .await?;
        uuid_field(&expect("create pharmacy", reply, &[201])?.json(), "id")
    }

    pub async fn put_stock(
        &self,
        admin: &str,
        pharmacy: Uuid,
        lines: &[(Uuid, i64)],
    ) -> anyhow::Result<()> {
        let items: Vec<Value> = lines
            .iter()
            .map(|(m, q)| json!({"medicine_id": m, "quantity": q}))
            .collect();
        let reply = self
            .http
            .request(
                "PUT",
                &format!("/api/v1/pharmacies/{pharmacy}/stock"),
                Some(admin),
                Some(&json!({ "items": items })),
                &[],
            )
            .await?;
        expect("put stock", reply, &[200])?;
        Ok(())
    }

    /// `POST /orders` with an `Idempotency-Key`.
    pub async fn place_order(
        &self,
        token: &str,
        lines: &[(Uuid, u32)],
        to: Point,
        idempotency_key: &str,
    ) -> anyhow::Result<PlacedOrder> {
        let items: Vec<Value> = lines
            .iter()
            .map(|(m, q)| json!({"medicine_id": m, "qty": q}))
            .collect();
        let body = json!({"items": items,
                          "delivery": {"lat": to.lat, "lng": to.lng, "address": "simulated door"}});
        let reply = self
            .http
            .request(
                "POST",
                "/api/v1/orders",
                Some(token),
                Some(&body),
                &[("Idempotency-Key", idempotency_key)],
            )
            .await?;
        let v = expect("place order", reply, &[200, 201])?.json();
        Ok(PlacedOrder {
            id: uuid_field(&v, "id")?,
            code: str_field(&v, "delivery_code")?,
            status: str_field(&v, "status")?,
        })
    }

    /// The order's status (`GET /orders/{id}`).
    pub async fn order_status(&self, token: &str, id: Uuid) -> anyhow::Result<String> {
        let reply = self
            .http
            .request(
                "GET",
                &format!("/api/v1/orders/{id}"),
                Some(token),
                None,
                &[],
            )
            .await?;
        str_field(&expect("get order", reply, &[200])?.json(), "status")
    }

    /// A WebSocket URL with the token in the query.
    pub fn ws_url(&self, path: &str, token: &str) -> String {
        format!("{}{path}?access_token={token}", self.http.ws_base())
    }
}
