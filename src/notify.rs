//! Customer notifications: the bus handler that writes them, and the port that sends them.
//!
//! For each customer-facing event the [`NotificationWriter`] writes one row (deduplicated
//! on the event id, so a redelivered event writes nothing twice), then hands it to the
//! [`Notifier`] with retries: pending → sent, or failed after the last try. The shipped
//! notifier writes to the log; an SMTP or push notifier implements the same trait.

use std::sync::Arc;
use std::time::Duration;

use medify_actors::ports::{BoxFuture, Event, EventKind};
use serde_json::json;
use uuid::Uuid;

use crate::bus::EventHandler;
use crate::store::Store;

/// Delivery attempts before a notification is marked failed.
const ATTEMPTS: i32 = 3;

/// Sends a notification to a user by some channel.
pub trait Notifier: Send + Sync + 'static {
    fn send<'a>(
        &'a self,
        user_id: Uuid,
        kind: &'a str,
        payload: &'a serde_json::Value,
    ) -> BoxFuture<'a, anyhow::Result<()>>;
}

/// Writes notifications to the log (target `medify::notify`).
pub struct LogNotifier;

impl Notifier for LogNotifier {
    fn send<'a>(
        &'a self,
        user_id: Uuid,
        kind: &'a str,
        payload: &'a serde_json::Value,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            tracing::info!(target: "medify::notify", %user_id, kind, %payload, "notification");
            Ok(())
        })
    }
}

/// Sends notifications by e-mail through an SMTP relay (to the user's account address).
pub struct SmtpNotifier {
    transport: lettre::AsyncSmtpTransport<lettre::Tokio1Executor>,
    from: lettre::message::Mailbox,
    store: Store,
}

impl SmtpNotifier {
    /// `settings.url` is `smtp://[user[:password]@]host[:port]` (port 25 by default).
    pub fn new(settings: &crate::config::SmtpSettings, store: Store) -> anyhow::Result<Self> {
        let rest = settings
            .url
            .strip_prefix("smtp://")
            .ok_or_else(|| anyhow::anyhow!("SMTP_URL must start with smtp://"))?
            .trim_end_matches('/');
        let (credentials, server) = match rest.rsplit_once('@') {
            Some((c, s)) => (Some(c), s),
            None => (None, rest),
        };
        let (host, port) = match server.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse::<u16>()
                    .map_err(|_| anyhow::anyhow!("SMTP_URL: bad port"))?,
            ),
            None => (server, 25),
        };
        // Plain SMTP to a relay the operator runs (no TLS stack is built in).
        let mut builder =
            lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::builder_dangerous(host)
                .port(port)
                .timeout(Some(Duration::from_secs(10)));
        if let Some(c) = credentials {
            let (user, password) = c.split_once(':').unwrap_or((c, ""));
            builder =
                builder.credentials(lettre::transport::smtp::authentication::Credentials::new(
                    user.to_owned(),
                    password.to_owned(),
                ));
        }
        let transport = builder.build();
        Ok(Self {
            transport,
            from: settings.from.parse()?,
            store,
        })
    }
}

/// The subject and text of an e-mail for a notification.
fn email_text(kind: &str, payload: &serde_json::Value) -> (String, String) {
    let order = payload["order_id"].as_str().unwrap_or("your order");
    let subject = match kind {
        "order_confirmed" => "Your order is confirmed",
        "rider_assigned" => "A rider is on the way to the pharmacy",
        "order_picked_up" => "Your medicine has been picked up",
        "rider_arriving" => "Your rider is arriving",
        "order_delivered" => "Your order was delivered",
        "order_cancelled" => "Your order was cancelled",
        "order_failed" => "Your order could not be completed",
        "prescription_approved" => "The pharmacist approved your prescription",
        "prescription_rejected" => "The pharmacist could not accept your prescription",
        "payment_received" => "We received your payment",
        "payment_failed" => "Your payment did not go through",
        "refund_issued" => "Your refund was issued",
        "rider_unassigned" => "Your rider could not collect your order; we are finding another",
        _ => "Update on your order",
    };
    (
        subject.to_owned(),
        format!("{subject}.\n\nOrder: {order}\n\n-- Medify"),
    )
}

impl Notifier for SmtpNotifier {
    fn send<'a>(
        &'a self,
        user_id: Uuid,
        kind: &'a str,
        payload: &'a serde_json::Value,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        use lettre::AsyncTransport;
        Box::pin(async move {
            let user = self.store.user_by_id(user_id).await?;
            let Some(email) = user.and_then(|u| u.email) else {
                anyhow::bail!("user {user_id} has no e-mail address");
            };
            let (subject, body) = email_text(kind, payload);
            let message = lettre::Message::builder()
                .from(self.from.clone())
                .to(email.parse()?)
                .subject(subject)
                .body(body)?;
            self.transport.send(message).await?;
            Ok(())
        })
    }
}

/// The notification type of a customer-facing event.
pub fn notification_type(event: &Event) -> Option<&'static str> {
    use medify_actors::model::{CancelReason, OrderStatus};
    let from = event.from_status;
    Some(match event.kind {
        EventKind::OrderConfirmed => "order_confirmed",
        EventKind::OrderAssigned => "rider_assigned",
        EventKind::OrderPickedUp => "order_picked_up",
        EventKind::OrderDelivered => "order_delivered",
        EventKind::OrderCancelled => match event.cancel_reason {
            Some(CancelReason::PrescriptionRejected) => "prescription_rejected",
            // `payment.failed` says it.
            Some(CancelReason::PaymentFailed) => return None,
            _ => "order_cancelled",
        },
        EventKind::OrderFailed => "order_failed",
        EventKind::RiderArriving => "rider_arriving",
        EventKind::OrderDispatching | EventKind::OrderAwaitingPayment
            if from == Some(OrderStatus::AwaitingPrescription) =>
        {
            "prescription_approved"
        }
        // Back to looking for a rider after the assigned one did not collect it.
        EventKind::OrderDispatching if from == Some(OrderStatus::Assigned) => "rider_unassigned",
        // Online payments; cash is told by `order_delivered`.
        EventKind::PaymentSucceeded if from == Some(OrderStatus::AwaitingPayment) => {
            "payment_received"
        }
        // The provider's word; a payment that never came is told by `order_failed`.
        EventKind::PaymentFailed if event.to_status == Some(OrderStatus::Cancelled) => {
            "payment_failed"
        }
        EventKind::PaymentRefunded => "refund_issued",
        EventKind::OrderDispatching
        | EventKind::PaymentSucceeded
        | EventKind::PaymentFailed
        | EventKind::OrderAwaitingPrescription
        | EventKind::OrderAwaitingPayment
        | EventKind::PaymentRefundPending
        | EventKind::RiderOnline
        | EventKind::RiderOffline => return None,
    })
}

/// The bus handler that writes and sends notifications.
pub struct NotificationWriter {
    store: Store,
    notifier: Arc<dyn Notifier>,
}

impl NotificationWriter {
    pub fn new(store: Store, notifier: Arc<dyn Notifier>) -> Self {
        Self { store, notifier }
    }
}

impl EventHandler for NotificationWriter {
    fn name(&self) -> &'static str {
        "notifications"
    }

    /// A rider coming online or going offline never notifies anyone.
    fn wants(&self, kind: EventKind) -> bool {
        !matches!(kind, EventKind::RiderOnline | EventKind::RiderOffline)
    }

    fn handle<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let Some(kind) = notification_type(event) else {
                return Ok(());
            };
            // A rider's own events do not carry the customer: the order does.
            let customer = match (event.customer_id, event.order_id) {
                (Some(c), _) => Some(c),
                (None, Some(order)) => self.store.order_view(order).await?.map(|o| o.customer_id),
                (None, None) => None,
            };
            let Some(user_id) = customer else {
                return Ok(());
            };
            let mut payload = json!({
                "order_id": event.order_id,
                "status": event.to_status,
                "rider_id": event.rider_id,
            });
            if let Some(payment) = event.payment {
                payload["payment_status"] = json!(payment);
            }
            if let Some(reason) = event.cancel_reason {
                payload["cancel_reason"] = json!(reason);
            }
            // Arrival is told once per order, whichever event says it (a restarted
            // session may say it again).
            let dedupe = match (event.kind, event.order_id) {
                (EventKind::RiderArriving, Some(order)) => format!("{order}:{kind}"),
                _ => format!("{}:{kind}", event.id),
            };
            let written = self
                .store
                .insert_notification(user_id, kind, &payload, &dedupe)
                .await?;
            // Written by an earlier delivery of this event: done, unless that delivery was
            // cut short (a crash) before the notification went out.
            let id = match written {
                Some(id) => id,
                None => match self.store.pending_notification(&dedupe).await? {
                    Some(id) => id,
                    None => return Ok(()),
                },
            };
            let mut delay = Duration::from_millis(100);
            for attempt in 1..=ATTEMPTS {
                match self.notifier.send(user_id, kind, &payload).await {
                    Ok(()) => {
                        self.store.mark_notification(id, "sent", attempt).await?;
                        return Ok(());
                    }
                    Err(e) if attempt < ATTEMPTS => {
                        tracing::warn!(notification_id = %id, error = %e, attempt, "notification not sent, retrying");
                        self.store.mark_notification(id, "pending", attempt).await?;
                        tokio::time::sleep(delay).await;
                        delay *= 4;
                    }
                    Err(e) => {
                        tracing::error!(notification_id = %id, error = %e, "notification failed");
                        self.store.mark_notification(id, "failed", attempt).await?;
                    }
                }
            }
            Ok(())
        })
    }
}

/// Keeps the `medify_orders{status}` gauge in step with transitions (node-local).
pub struct OrderGauge {
    gauge: prometheus::IntGaugeVec,
}

impl OrderGauge {
    pub fn new(gauge: prometheus::IntGaugeVec) -> Self {
        Self { gauge }
    }
}

impl EventHandler for OrderGauge {
    fn name(&self) -> &'static str {
        "order_gauge"
    }

    fn handle<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            if !event.kind.is_status_change() {
                return Ok(());
            }
            if let Some(from) = event.from_status {
                self.gauge.with_label_values(&[from.as_str()]).dec();
            }
            if let Some(to) = event.to_status {
                self.gauge.with_label_values(&[to.as_str()]).inc();
            }
            Ok(())
        })
    }
}

/// Sends order status changes to the customers watching (node-local).
pub struct TrackingFanout {
    watchers: medify_actors::tracking::Watchers,
}

impl TrackingFanout {
    pub fn new(watchers: medify_actors::tracking::Watchers) -> Self {
        Self { watchers }
    }
}

impl EventHandler for TrackingFanout {
    fn name(&self) -> &'static str {
        "tracking_fanout"
    }

    fn handle<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            if !event.kind.is_status_change() {
                return Ok(());
            }
            if let (Some(order), Some(to)) = (event.order_id, event.to_status) {
                let at = chrono::DateTime::from_timestamp_millis(event.at_ms).unwrap_or_default();
                self.watchers.status(
                    order,
                    medify_actors::tracking::TrackFrame::Status {
                        status: to,
                        at: at.to_rfc3339(),
                    },
                );
            }
            Ok(())
        })
    }
}
