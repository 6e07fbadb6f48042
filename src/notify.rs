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

/// The notification type of a customer-facing event.
pub fn notification_type(kind: EventKind) -> Option<&'static str> {
    Some(match kind {
        EventKind::OrderConfirmed => "order_confirmed",
        EventKind::OrderAssigned => "rider_assigned",
        EventKind::OrderPickedUp => "order_picked_up",
        EventKind::OrderDelivered => "order_delivered",
        EventKind::OrderCancelled => "order_cancelled",
        EventKind::OrderFailed => "order_failed",
        EventKind::OrderDispatching | EventKind::RiderOnline | EventKind::RiderOffline => {
            return None
        }
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

    fn handle<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let (Some(kind), Some(user_id)) = (notification_type(event.kind), event.customer_id)
            else {
                return Ok(());
            };
            let payload = json!({
                "order_id": event.order_id,
                "status": event.to_status,
                "rider_id": event.rider_id,
            });
            let dedupe = format!("{}:{kind}", event.id);
            let Some(id) = self
                .store
                .insert_notification(user_id, kind, &payload, &dedupe)
                .await?
            else {
                return Ok(()); // Written by an earlier delivery of this event.
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
