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

/// A string field of an answer, or an error naming it.
pub fn str_field(v: &Value, field: &str) -> anyhow::Result<String> {
    v.get(field)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("answer without {field:?}: {v}"))
}

/// A UUID field of an answer, or an error naming it.
pub fn uuid_field(v: &Value, field: &str) -> anyhow::Result<Uuid> {
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
    /// `payment.intent_id`: what the provider is paid against (online orders).
    pub intent: Option<String>,
    pub total_cents: i64,
}

/// What `POST /orders` sends.
#[derive(Debug, Clone)]
pub struct NewOrder<'a> {
    pub lines: &'a [(Uuid, u32)],
    pub to: Point,
    pub idempotency_key: &'a str,
    /// `payment_method: "online"` (otherwise the server's default, cash on delivery).
    pub online: bool,
    /// The customer's prescription, for an order with prescription-only items.
    pub prescription: Option<Uuid>,
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

    /// A catalog entry; `rx_required` ones are sold only against a prescription.
    pub async fn create_medicine(
        &self,
        admin: &str,
        name: &str,
        sku: &str,
        price_cents: i64,
        rx_required: bool,
    ) -> anyhow::Result<Uuid> {
        let body = json!({"name": name, "generic_name": name, "brand": null, "sku": sku,
                          "price_cents": price_cents, "rx_required": rx_required});
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

    /// A staff account of `pharmacy` (`POST /admin/users`, role `pharmacy`), signed in.
    pub async fn create_pharmacist(
        &self,
        admin: &str,
        pharmacy: Uuid,
        name: &str,
        email: &str,
        password: &str,
    ) -> anyhow::Result<Arc<Session>> {
        let body = json!({"name": name, "email": email, "password": password,
                          "role": "pharmacy", "pharmacy_id": pharmacy});
        let reply = self
            .http
            .request("POST", "/api/v1/admin/users", Some(admin), Some(&body), &[])
            .await?;
        expect("create pharmacist", reply, &[201])?;
        self.login(email, password).await
    }

    /// `POST /prescriptions`: one `multipart/form-data` body, already encoded (see
    /// `crate::prescription`). The raw answer, so the caller can tell a build without the
    /// endpoint (404) from a refusal.
    pub async fn upload_prescription(
        &self,
        token: &str,
        content_type: &str,
        body: &[u8],
    ) -> anyhow::Result<Reply> {
        self.http
            .request_bytes(
                "POST",
                "/api/v1/prescriptions",
                Some(token),
                Some((content_type, body)),
                &[],
            )
            .await
    }

    /// `POST /orders` with an `Idempotency-Key`.
    pub async fn place_order(
        &self,
        token: &str,
        order: &NewOrder<'_>,
    ) -> anyhow::Result<PlacedOrder> {
        let to = order.to;
        let items: Vec<Value> = order
            .lines
            .iter()
            .map(|(m, q)| json!({"medicine_id": m, "qty": q}))
            .collect();
        let mut body = json!({"items": items,
                          "delivery": {"lat": to.lat, "lng": to.lng, "address": "simulated door"}});
        if order.online {
            body["payment_method"] = json!("online");
        }
        if let Some(p) = order.prescription {
            body["prescription_id"] = json!(p);
        }
        let reply = self
            .http
            .request(
                "POST",
                "/api/v1/orders",
                Some(token),
                Some(&body),
                &[("Idempotency-Key", order.idempotency_key)],
            )
            .await?;
        let v = expect("place order", reply, &[200, 201])?.json();
        Ok(PlacedOrder {
            id: uuid_field(&v, "id")?,
            code: str_field(&v, "delivery_code")?,
            status: str_field(&v, "status")?,
            intent: v
                .get("payment")
                .and_then(|p| p.get("intent_id"))
                .and_then(Value::as_str)
                .map(str::to_owned),
            total_cents: v.get("total_cents").and_then(Value::as_i64).unwrap_or(0),
        })
    }

    /// One page of the caller's orders (`GET /orders`, newest first): `(id, status)` of
    /// each, and whether more pages follow.
    pub async fn orders_page(
        &self,
        token: &str,
        page: u32,
        per_page: u32,
    ) -> anyhow::Result<(Vec<(Uuid, String)>, bool)> {
        let reply = self
            .http
            .request(
                "GET",
                &format!("/api/v1/orders?page={page}&per_page={per_page}"),
                Some(token),
                None,
                &[],
            )
            .await?;
        let v = expect("list orders", reply, &[200])?.json();
        let items = v
            .get("items")
            .and_then(Value::as_array)
            .ok_or_else(|| anyhow!("order page without items: {v}"))?;
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            out.push((uuid_field(item, "id")?, str_field(item, "status")?));
        }
        let total = v.get("total").and_then(Value::as_u64).unwrap_or(0);
        let more = u64::from(page) * u64::from(per_page) < total && !out.is_empty();
        Ok((out, more))
    }

    /// A pharmacist's decision (`POST /orders/{id}/prescription`); the order's new status.
    pub async fn review_prescription(
        &self,
        token: &str,
        order: Uuid,
        approve: bool,
        reason: &str,
    ) -> anyhow::Result<String> {
        let body = if approve {
            json!({"approve": true})
        } else {
            json!({"approve": false, "reason": reason})
        };
        let reply = self
            .http
            .request(
                "POST",
                &format!("/api/v1/orders/{order}/prescription"),
                Some(token),
                Some(&body),
                &[],
            )
            .await?;
        str_field(
            &expect("review prescription", reply, &[200])?.json(),
            "status",
        )
    }

    /// The payment provider's report (`POST /payments/webhook`): `body` exactly as signed,
    /// with its `Medify-Signature`; the answer's `status` (`applied` or `duplicate`).
    pub async fn payment_webhook(&self, body: &[u8], signature: &str) -> anyhow::Result<String> {
        let reply = self
            .http
            .request_bytes(
                "POST",
                "/api/v1/payments/webhook",
                None,
                Some(("application/json", body)),
                &[("Medify-Signature", signature)],
            )
            .await?;
        str_field(&expect("payment webhook", reply, &[200])?.json(), "status")
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

    /// `GET /api/v1/cluster` (admin): the node running dispatch (`None` while it changes
    /// hands) and the live nodes' ids.
    pub async fn cluster(&self, admin: &str) -> anyhow::Result<(Option<String>, Vec<String>)> {
        let reply = self
            .http
            .request("GET", "/api/v1/cluster", Some(admin), None, &[])
            .await?;
        let v = expect("cluster", reply, &[200])?.json();
        let dispatch = v.get("dispatch").and_then(Value::as_str).map(str::to_owned);
        let nodes = v
            .get("nodes")
            .and_then(Value::as_array)
            .map(|ns| {
                ns.iter()
                    .filter_map(|n| n.get("id").and_then(Value::as_str).map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        Ok((dispatch, nodes))
    }

    /// One page of orders (in any of `statuses`, comma-separated, when given) as the
    /// admin sees them, newest first: `(id, status, customer_id)` of each, and whether
    /// more pages follow.
    pub async fn orders_in(
        &self,
        admin: &str,
        statuses: Option<&str>,
        page: u32,
        per_page: u32,
    ) -> anyhow::Result<(Vec<(Uuid, String, Option<Uuid>)>, bool)> {
        let filter = statuses.map(|s| format!("&status={s}")).unwrap_or_default();
        let reply = self
            .http
            .request(
                "GET",
                &format!("/api/v1/orders?page={page}&per_page={per_page}{filter}"),
                Some(admin),
                None,
                &[],
            )
            .await?;
        let v = expect("list orders", reply, &[200])?.json();
        let items = v
            .get("items")
            .and_then(Value::as_array)
            .ok_or_else(|| anyhow!("order page without items: {v}"))?;
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let customer = item
                .get("customer_id")
                .and_then(Value::as_str)
                .and_then(|s| Uuid::parse_str(s).ok());
            out.push((
                uuid_field(item, "id")?,
                str_field(item, "status")?,
                customer,
            ));
        }
        let total = v.get("total").and_then(Value::as_u64).unwrap_or(0);
        let more = u64::from(page) * u64::from(per_page) < total && !out.is_empty();
        Ok((out, more))
    }

    /// The order as JSON (`GET /orders/{id}`), for whoever may read it.
    pub async fn order(&self, token: &str, id: Uuid) -> anyhow::Result<Value> {
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
        Ok(expect("get order", reply, &[200])?.json())
    }

    /// A WebSocket URL with the token in the query.
    pub fn ws_url(&self, path: &str, token: &str) -> String {
        format!("{}{path}?access_token={token}", self.http.ws_base())
    }
}
