//! The payment provider's reports (`POST /api/v1/payments/webhook`, signature already
//! checked): which order they concern, whether they are repeats, and what they do to it.
//!
//! Each report's event id is recorded before its effect, so a repeat (the provider
//! retries until it sees a 200) has no second effect, also when two copies arrive at
//! once; an effect that could not be made forgets the id again so the retry can make it.

use medify_actors::model::{OrderStatus, PaymentStatus};
use medify_actors::order::Command;
use medify_actors::ports::{JournalEntry, OrderJournal};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::ApiError;
use crate::state::AppState;

/// What the provider reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
pub enum ReportKind {
    #[serde(rename = "payment.succeeded")]
    PaymentSucceeded,
    #[serde(rename = "payment.failed")]
    PaymentFailed,
    #[serde(rename = "refund.succeeded")]
    RefundSucceeded,
}

impl ReportKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::PaymentSucceeded => "payment.succeeded",
            Self::PaymentFailed => "payment.failed",
            Self::RefundSucceeded => "refund.succeeded",
        }
    }
}

/// A provider's report, as signed.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct PaymentReport {
    /// The provider's event id (`evt_…`); a repeat of a known id has no effect.
    #[schema(min_length = 1, max_length = 200)]
    pub id: String,
    #[serde(rename = "type")]
    pub kind: ReportKind,
    /// The intent the order's answer carried (`payment.intent_id`).
    #[schema(min_length = 1, max_length = 200)]
    pub intent_id: String,
    /// Must equal the order's `total_cents`.
    #[schema(minimum = 0)]
    pub amount_cents: i64,
}

/// What a report does to an order in `status` whose payment is `payment`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// A command for the order's actor (the order is waiting for its payment).
    Order(Command),
    /// A change of the payment alone, journaled as `event` (the order is over).
    Payment {
        event: &'static str,
        to: PaymentStatus,
    },
    /// Nothing left to do (the report is late news).
    Nothing,
}

/// The rule: a payment or its failure moves an order waiting for it; money that arrives
/// after the order ended is owed back; a refund completes a pending one.
pub fn effect_of(kind: ReportKind, status: OrderStatus, payment: PaymentStatus) -> Effect {
    use PaymentStatus as P;
    use ReportKind as K;
    match (kind, status, payment) {
        (K::PaymentSucceeded, OrderStatus::AwaitingPayment, P::Pending) => {
            Effect::Order(Command::PaymentSucceeded)
        }
        (K::PaymentFailed, OrderStatus::AwaitingPayment, P::Pending) => {
            Effect::Order(Command::PaymentFailed)
        }
        (K::PaymentSucceeded, s, P::Pending | P::Failed) if s.is_final() => Effect::Payment {
            event: "payment_after_end",
            to: P::RefundPending,
        },
        (K::RefundSucceeded, s, P::RefundPending) if s.is_final() => Effect::Payment {
            event: "refund_succeeded",
            to: P::Refunded,
        },
        _ => Effect::Nothing,
    }
}

/// Whether a report was acted on or was a repeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    Applied,
    Repeat,
}

/// Applies a verified report.
pub async fn receive(state: &AppState, report: &PaymentReport) -> Result<Received, ApiError> {
    if report.id.is_empty() || report.id.len() > 200 {
        return Err(ApiError::field("id", "must be 1 to 200 characters"));
    }
    let order_id = state
        .store
        .order_of_intent(&report.intent_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let order = state
        .store
        .load(order_id)
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!(e)))?
        .ok_or(ApiError::NotFound)?;
    if report.amount_cents != order.total_cents {
        return Err(ApiError::field(
            "amount_cents",
            format!("must equal the order's total_cents ({})", order.total_cents),
        ));
    }
    if !state
        .store
        .claim_payment_event(&report.id, report.kind.as_str(), order_id)
        .await?
    {
        // A repeat, or an event claimed by a node that died before making its effect.
        // The effect is judged on the order as it is now, so making it again changes
        // nothing when it was made, and finishes the job when it was not.
        apply(state, order_id, report.kind).await?;
        return Ok(Received::Repeat);
    }
    let applied = apply(state, order_id, report.kind).await;
    if applied.is_err() {
        state.store.release_payment_event(&report.id).await?;
    }
    applied.map(|()| Received::Applied)
}

/// Makes the report's effect, judged on the order as it is now.
async fn apply(state: &AppState, order_id: Uuid, kind: ReportKind) -> Result<(), ApiError> {
    for _ in 0..3 {
        let order = state
            .store
            .load(order_id)
            .await
            .map_err(|e| ApiError::Internal(anyhow::anyhow!(e)))?
            .ok_or(ApiError::NotFound)?;
        match effect_of(kind, order.status, order.payment_status) {
            Effect::Nothing => return Ok(()),
            Effect::Order(command) => match state.orders.apply(order_id, command).await {
                Ok(_) => return Ok(()),
                // The order moved meanwhile (its payment timed out, say): judge again.
                Err(medify_actors::order::OrderError::Conflict(_))
                | Err(medify_actors::order::OrderError::Stale) => continue,
                Err(e) => return Err(e.into()),
            },
            Effect::Payment { event, to } => {
                if payment_only(state, &order, event, to).await? {
                    return Ok(());
                }
            }
        }
    }
    Err(ApiError::conflict("the order kept changing; retry"))
}

/// Journals a change of a finished order's payment, then announces it. False if the
/// order changed meanwhile.
async fn payment_only(
    state: &AppState,
    order: &medify_actors::ports::OrderRecord,
    event: &'static str,
    to: PaymentStatus,
) -> Result<bool, ApiError> {
    let at_ms = chrono::Utc::now().timestamp_millis();
    let appended = state
        .store
        .append(JournalEntry {
            order_id: order.id,
            expected_version: order.version,
            from: order.status,
            to: order.status,
            event,
            actor_id: None,
            rider_id: order.rider_id,
            at_ms,
            payment: Some(to),
            cancel_reason: None,
            note: None,
        })
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!(e)))?;
    let Some(version) = appended else {
        return Ok(false);
    };
    let after = medify_actors::ports::OrderRecord {
        version,
        payment_status: to,
        ..order.clone()
    };
    let events = medify_actors::order::announcements(order, &after, at_ms);
    medify_actors::outbox::announce(&*state.bus, &state.store, order.id, version, events).await;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_move_waiting_orders_and_money_after_the_end_is_owed_back() {
        use OrderStatus as S;
        use PaymentStatus as P;
        use ReportKind as K;
        assert_eq!(
            effect_of(K::PaymentSucceeded, S::AwaitingPayment, P::Pending),
            Effect::Order(Command::PaymentSucceeded)
        );
        assert_eq!(
            effect_of(K::PaymentFailed, S::AwaitingPayment, P::Pending),
            Effect::Order(Command::PaymentFailed)
        );
        for ended in [S::Cancelled, S::Failed] {
            for payment in [P::Pending, P::Failed] {
                assert_eq!(
                    effect_of(K::PaymentSucceeded, ended, payment),
                    Effect::Payment {
                        event: "payment_after_end",
                        to: P::RefundPending
                    }
                );
            }
            assert_eq!(
                effect_of(K::RefundSucceeded, ended, P::RefundPending),
                Effect::Payment {
                    event: "refund_succeeded",
                    to: P::Refunded
                }
            );
        }
        // Late or repeated news changes nothing.
        assert_eq!(
            effect_of(K::PaymentSucceeded, S::Dispatching, P::Paid),
            Effect::Nothing
        );
        assert_eq!(
            effect_of(K::PaymentFailed, S::Cancelled, P::Failed),
            Effect::Nothing
        );
        assert_eq!(
            effect_of(K::RefundSucceeded, S::Cancelled, P::Refunded),
            Effect::Nothing
        );
        assert_eq!(
            effect_of(K::RefundSucceeded, S::Delivered, P::Paid),
            Effect::Nothing
        );
    }
}
