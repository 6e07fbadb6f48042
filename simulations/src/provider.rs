//! The payment provider the simulator plays, and the webhook signing it needs.
//!
//! A customer who sees its order `awaiting_payment` starts paying ([`Payer::pay`]); the
//! provider then waits the scenario's `payment_delay_s`, decides the payment's fate
//! (`payment_success_probability`) and reports it to `POST /api/v1/payments/webhook` as a
//! provider's relay would: the JSON body signed in `Medify-Signature: t=<unix seconds>,
//! v1=<hex HMAC-SHA256 of "<t>.<body>">`, keyed with the server's
//! `PAYMENT_WEBHOOK_SECRET` ([`signature_header`]).
//!
//! Each payment's delay and fate come from its own RNG stream (the scenario's seed and the
//! order's schedule index), so they do not depend on which payment was started first.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use rand::Rng;
use serde_json::json;
use sha2::Sha256;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::api::{Api, Unexpected};
use crate::customer::{count_failure, retryable};
use crate::metrics::{Metrics, PaymentDue};
use crate::scenario::ProviderBehaviour;
use crate::{draw_in, stream_rng, STREAM_PAYMENT};

/// A report refused with 409 (the order was changing at that moment) is sent again, up to
/// this many times in all.
const ATTEMPTS: u32 = 6;

/// The hex HMAC-SHA256 of `"<t>.<body>"` keyed with `secret`: the `v1` of a signature.
pub fn sign(secret: &[u8], t: i64, body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(secret) else {
        unreachable!("HMAC-SHA256 takes a key of any length")
    };
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The `Medify-Signature` header value for `body` sent at unix second `t`.
pub fn signature_header(secret: &[u8], t: i64, body: &[u8]) -> String {
    format!("t={t},v1={}", sign(secret, t, body))
}

/// The provider's report on one payment, as signed and sent.
pub fn report_body(event_id: &str, succeeded: bool, due: &PaymentDue) -> String {
    let kind = if succeeded {
        "payment.succeeded"
    } else {
        "payment.failed"
    };
    json!({"id": event_id, "type": kind, "intent_id": due.intent,
           "amount_cents": due.amount_cents})
    .to_string()
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// What customers hold to start paying: hands a payment to the provider, once per order.
#[derive(Clone)]
pub struct Payer {
    metrics: Arc<Metrics>,
    tx: Option<mpsc::UnboundedSender<PaymentDue>>,
}

impl Payer {
    /// A payer with no provider behind it (a run without online orders).
    pub fn none(metrics: Arc<Metrics>) -> Self {
        Self { metrics, tx: None }
    }

    /// The customer saw `order` awaiting payment: pay it (nothing if already paying).
    pub fn pay(&self, order: Uuid) {
        let Some(tx) = &self.tx else { return };
        if let Some(due) = self.metrics.start_payment(order) {
            let _ = tx.send(due);
        }
    }
}

/// The provider agent.
pub struct Provider {
    pub api: Api,
    pub metrics: Arc<Metrics>,
    pub secret: Vec<u8>,
    pub behaviour: ProviderBehaviour,
    pub seed: u64,
    /// The run's tag, in event ids (a second run against one server must not repeat them:
    /// the server applies each event id once).
    pub tag: String,
    pub stop: watch::Receiver<bool>,
    jobs: mpsc::UnboundedReceiver<PaymentDue>,
}

impl Provider {
    /// A provider and the [`Payer`] that feeds it.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        api: Api,
        metrics: Arc<Metrics>,
        secret: Vec<u8>,
        behaviour: ProviderBehaviour,
        seed: u64,
        tag: String,
        stop: watch::Receiver<bool>,
    ) -> (Payer, Self) {
        let (tx, jobs) = mpsc::unbounded_channel();
        let payer = Payer {
            metrics: metrics.clone(),
            tx: Some(tx),
        };
        let provider = Self {
            api,
            metrics,
            secret,
            behaviour,
            seed,
            tag,
            stop,
            jobs,
        };
        (payer, provider)
    }

    /// Settles payments as they come until the run stops.
    pub async fn run(mut self) {
        let mut settling = JoinSet::new();
        let shared = Arc::new(Settle {
            api: self.api.clone(),
            metrics: self.metrics.clone(),
            secret: std::mem::take(&mut self.secret),
            behaviour: self.behaviour.clone(),
            seed: self.seed,
            tag: self.tag.clone(),
        });
        loop {
            tokio::select! {
                job = self.jobs.recv() => match job {
                    Some(due) => {
                        let (shared, stop) = (shared.clone(), self.stop.clone());
                        settling.spawn(async move { shared.settle(due, stop).await });
                    }
                    None => break,
                },
                _ = self.stop.changed() => break,
                Some(_) = settling.join_next(), if !settling.is_empty() => {}
            }
        }
        settling.abort_all();
    }
}

/// What every payment's task shares.
struct Settle {
    api: Api,
    metrics: Arc<Metrics>,
    secret: Vec<u8>,
    behaviour: ProviderBehaviour,
    seed: u64,
    tag: String,
}

impl Settle {
    async fn settle(&self, due: PaymentDue, mut stop: watch::Receiver<bool>) {
        let mut rng = stream_rng(self.seed, STREAM_PAYMENT, due.index);
        let delay = draw_in(&mut rng, self.behaviour.payment_delay_s);
        let succeeded = rng.random_bool(self.behaviour.payment_success_probability);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs_f64(delay)) => {}
            _ = stop.changed() => return,
        }
        let event = format!("evt_sim_{}_{}", self.tag, due.index);
        let body = report_body(&event, succeeded, &due);
        for attempt in 1..=ATTEMPTS {
            // Signed just before sending: `t` must be within 300 s of the server's clock.
            let signature = signature_header(&self.secret, unix_now(), body.as_bytes());
            match self.api.payment_webhook(body.as_bytes(), &signature).await {
                Ok(status) if status == "applied" => {
                    self.metrics.paid(due.order, succeeded);
                    return;
                }
                Ok(status) => {
                    // `duplicate`: the event id was seen before, which this run never does.
                    self.metrics
                        .error_with(format!("webhook {status}"), &format!("event {event}"));
                    return;
                }
                Err(e)
                    if attempt < ATTEMPTS
                        && e.downcast_ref::<Unexpected>()
                            .is_some_and(|u| u.status == 409) =>
                {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                // No answer, or a node changing hands in a cluster: the same signed event
                // again (the server applies an event id once).
                Err(e) if attempt < ATTEMPTS && retryable(&e) => {
                    count_failure(&self.metrics, "payment webhook", &e);
                    tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
                }
                Err(e) => {
                    count_failure(&self.metrics, "payment webhook", &e);
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"whsec_sim_0123456789abcdef";
    const BODY: &[u8] =
        br#"{"id":"evt_sim_1","type":"payment.succeeded","intent_id":"pi_1","amount_cents":250}"#;

    #[test]
    fn signatures_are_hmac_sha256_of_t_dot_body() {
        // Computed independently (Python's hmac module).
        assert_eq!(
            sign(SECRET, 1_800_000_000, BODY),
            "173cc726a1706e4eef63dbfdf9ff1e6bfacf2b2ec7298da528e3f6ca6df62734"
        );
        assert_eq!(
            signature_header(SECRET, 1_800_000_000, BODY),
            "t=1800000000,v1=173cc726a1706e4eef63dbfdf9ff1e6bfacf2b2ec7298da528e3f6ca6df62734"
        );
        assert_ne!(
            sign(SECRET, 1_800_000_001, BODY),
            sign(SECRET, 1_800_000_000, BODY)
        );
        assert_ne!(
            sign(b"another secret!!", 1_800_000_000, BODY),
            sign(SECRET, 1_800_000_000, BODY)
        );
    }

    #[test]
    fn the_server_accepts_what_the_provider_signs() {
        let now = unix_now();
        let header = signature_header(SECRET, now, BODY);
        assert_eq!(
            medify::payments::verify(Some(SECRET), Some(&header), BODY, now),
            Ok(())
        );
        // And refuses it for another body or under another key.
        assert!(medify::payments::verify(Some(SECRET), Some(&header), b"{}", now).is_err());
        assert!(
            medify::payments::verify(Some(b"0123456789abcdef!"), Some(&header), BODY, now).is_err()
        );
    }

    #[test]
    fn reports_carry_the_intent_and_the_amount() {
        let due = PaymentDue {
            order: Uuid::nil(),
            index: 3,
            intent: "pi_abc".into(),
            amount_cents: 1234,
        };
        let ok: serde_json::Value =
            serde_json::from_str(&report_body("evt_1", true, &due)).expect("json");
        assert_eq!(
            ok,
            json!({"id": "evt_1", "type": "payment.succeeded", "intent_id": "pi_abc",
                   "amount_cents": 1234})
        );
        let failed: serde_json::Value =
            serde_json::from_str(&report_body("evt_2", false, &due)).expect("json");
        assert_eq!(failed["type"], "payment.failed");
    }
}
