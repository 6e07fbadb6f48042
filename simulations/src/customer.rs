//! Customer agents: place one order, then watch it over the tracking socket until it
//! closes (reconnecting if the socket drops, and falling back to reading the order over
//! REST if the socket will not come back).
//!
//! An order with a prescription-only line is preceded by the upload of a prescription
//! (`crate::prescription`), whose id the order carries. An order paid online is paid as
//! soon as the customer sees it `awaiting_payment` (in the placement's answer, the tracking
//! socket's snapshot or status frames, or a REST read): the customer hands it to the
//! payment provider (`crate::provider`).

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::{self, Message};
use uuid::Uuid;

use crate::api::{Api, NewOrder, Session, Unexpected};
use crate::geo::Point;
use crate::metrics::{now_ms, Metrics, Outcome, Placed};
use crate::prescription::{self, Upload};
use crate::provider::Payer;

/// A customer account and where they live.
pub struct Customer {
    pub session: Arc<Session>,
    pub home: Point,
}

/// One order to place.
pub struct OrderPlan {
    /// Its place in the schedule (seeds its review and payment).
    pub index: u64,
    pub customer: Arc<Customer>,
    pub lines: Vec<(Uuid, u32)>,
    /// A prescription-only line, added once a prescription is uploaded.
    pub rx_line: Option<(Uuid, u32)>,
    /// Paid online rather than cash on delivery.
    pub online: bool,
    pub to: Point,
    pub idempotency_key: String,
}

/// The status of an order waiting for its online payment.
const AWAITING_PAYMENT: &str = "awaiting_payment";

/// Counts a failed call: an unexpected status by status and code, anything else as a
/// transport error.
pub fn count_failure(metrics: &Metrics, what: &str, e: &anyhow::Error) {
    match e.downcast_ref::<Unexpected>() {
        Some(u) => metrics.error_with(
            format!(
                "http {} {} ({what})",
                u.status,
                u.code.as_deref().unwrap_or("-")
            ),
            &u.body,
        ),
        None => metrics.error(format!("transport ({what})")),
    }
}

/// Whether a failed call may succeed if sent again: no answer (the connection broke, a
/// node died under the balancer), or a gateway's or an unavailable server's answer.
pub fn retryable(e: &anyhow::Error) -> bool {
    match e.downcast_ref::<Unexpected>() {
        Some(u) => matches!(u.status, 502..=504),
        None => true,
    }
}

/// Placement attempts at most, and the waits between them (doubling).
const PLACE_ATTEMPTS: u32 = 8;
const PLACE_RETRY_FIRST: Duration = Duration::from_millis(250);
const PLACE_RETRY_MAX: Duration = Duration::from_secs(4);

/// `POST /orders`, sent again with the same `Idempotency-Key` while it fails in a way
/// that may pass (see [`retryable`]; also `409 conflict`: the first request with the key
/// is still running), so an order the server made is found again rather than lost. Every
/// failed attempt is counted as a protocol error; `None` when the placement failed.
async fn place_with_retries(
    api: &Api,
    metrics: &Metrics,
    token: &str,
    order: &NewOrder<'_>,
    stop: &mut watch::Receiver<bool>,
) -> Option<crate::api::PlacedOrder> {
    let mut wait = PLACE_RETRY_FIRST;
    for attempt in 1..=PLACE_ATTEMPTS {
        match api.place_order(token, order).await {
            Ok(o) => return Some(o),
            Err(e) => {
                count_failure(metrics, "place order", &e);
                let still_running = e
                    .downcast_ref::<Unexpected>()
                    .is_some_and(|u| u.status == 409 && u.code.as_deref() == Some("conflict"));
                if attempt == PLACE_ATTEMPTS || !(retryable(&e) || still_running) {
                    return None;
                }
                metrics.placement_retried();
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.changed() => return None,
                }
                wait = (wait * 2).min(PLACE_RETRY_MAX);
            }
        }
    }
    None
}

/// Places `plan` and follows the order until it is final or the run stops.
pub async fn place_and_track(
    api: Api,
    metrics: Arc<Metrics>,
    payer: Payer,
    plan: OrderPlan,
    mut stop: watch::Receiver<bool>,
) {
    let session = &plan.customer.session;
    let token = match session.token(&api).await {
        Ok(t) => t,
        Err(e) => {
            count_failure(&metrics, "refresh", &e);
            metrics.place_failed();
            return;
        }
    };
    let mut lines = plan.lines.clone();
    let mut prescription = None;
    if let Some(rx_line) = plan.rx_line {
        match prescription::upload(&api, &token, plan.index).await {
            Ok(Upload::Stored(id)) => {
                metrics.prescription_uploaded();
                prescription = Some(id);
                lines.push(rx_line);
            }
            // A server without uploads: the order goes without its rx line.
            Ok(Upload::NotOffered) => metrics.rx_without_prescription(),
            Err(e) => {
                count_failure(&metrics, "upload prescription", &e);
                metrics.place_failed();
                return;
            }
        }
    }
    let placed_ms = now_ms();
    let new_order = NewOrder {
        lines: &lines,
        to: plan.to,
        idempotency_key: &plan.idempotency_key,
        online: plan.online,
        prescription,
    };
    let order = match place_with_retries(&api, &metrics, &token, &new_order, &mut stop).await {
        Some(o) => o,
        None => {
            metrics.place_failed();
            return;
        }
    };
    let placed = Placed {
        index: plan.index,
        code: order.code,
        rx: prescription.is_some(),
        online: plan.online,
        intent: order.intent,
        total_cents: order.total_cents,
    };
    metrics.order_placed(order.id, placed_ms, placed);
    if order.status == AWAITING_PAYMENT {
        payer.pay(order.id);
    }
    if let Some(outcome) = Outcome::parse(&order.status) {
        metrics.order_final(order.id, outcome);
        return;
    }

    let mut failures = 0u32;
    while !metrics.is_final(order.id) && !*stop.borrow() {
        if failures >= 5 {
            // The socket will not stay up: read the order every two seconds instead.
            poll_until_final(&api, &metrics, &payer, session, order.id, &mut stop).await;
            return;
        }
        let token = match session.token(&api).await {
            Ok(t) => t,
            Err(e) => {
                count_failure(&metrics, "refresh", &e);
                failures += 1;
                continue;
            }
        };
        let url = api.ws_url(&format!("/ws/orders/{}/track", order.id), &token);
        let ws = tokio_tungstenite::connect_async(url).await;
        let mut ws = match ws {
            Ok((ws, _)) => ws,
            Err(tungstenite::Error::Http(res)) => {
                metrics.http_error("track socket upgrade", res.status().as_u16(), None);
                failures += 1;
                continue;
            }
            Err(e) => {
                metrics.error(format!("track socket: {e}"));
                failures += 1;
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        loop {
            tokio::select! {
                _ = stop.changed() => {
                    let _ = ws.close(None).await;
                    return;
                }
                frame = ws.next() => match frame {
                    Some(Ok(Message::Text(text))) => {
                        metrics.frame_received();
                        match serde_json::from_str::<Value>(text.as_str()) {
                            Ok(v) => on_frame(&metrics, &payer, order.id, &v),
                            Err(_) => metrics.error("ws non-JSON frame (track)"),
                        }
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => {}
                },
            }
        }
        if !metrics.is_final(order.id) {
            // Closed before the end: watch again.
            metrics.track_reconnected();
            failures += 1;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// A status the customer learnt: final, or a payment to make.
fn on_status(metrics: &Metrics, payer: &Payer, order: Uuid, status: &str) {
    if status == AWAITING_PAYMENT {
        payer.pay(order);
    }
    if let Some(outcome) = Outcome::parse(status) {
        metrics.order_final(order, outcome);
    }
}

fn on_frame(metrics: &Metrics, payer: &Payer, order: Uuid, v: &Value) {
    match v.get("type").and_then(Value::as_str).unwrap_or("") {
        "snapshot" => {
            let status = v
                .get("order")
                .and_then(|o| o.get("status"))
                .and_then(Value::as_str)
                .unwrap_or("");
            on_status(metrics, payer, order, status);
        }
        "rider_location" => {
            if let Some(ts) = v.get("ts").and_then(Value::as_i64) {
                metrics.tracking_latency((now_ms() - ts).max(0) as f64);
            }
        }
        "status" => {
            let status = v.get("status").and_then(Value::as_str).unwrap_or("");
            on_status(metrics, payer, order, status);
        }
        "error" => {
            let code = v.get("code").and_then(Value::as_str).unwrap_or("?");
            let message = v.get("message").and_then(Value::as_str).unwrap_or("");
            metrics.error_with(format!("ws {code} (track)"), message);
        }
        _ => {} // arriving, and anything added later
    }
}

async fn poll_until_final(
    api: &Api,
    metrics: &Metrics,
    payer: &Payer,
    session: &Session,
    order: Uuid,
    stop: &mut watch::Receiver<bool>,
) {
    loop {
        if let Ok(token) = session.token(api).await {
            match api.order_status(&token, order).await {
                Ok(status) => {
                    on_status(metrics, payer, order, &status);
                    if metrics.is_final(order) {
                        return;
                    }
                }
                Err(e) => count_failure(metrics, "get order", &e),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = stop.changed() => return,
        }
    }
}
