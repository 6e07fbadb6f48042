//! The Redis Streams bus: at-least-once delivery with idempotent handlers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use medify::bus::redis::{RedisBus, StreamConsumer};
use medify::bus::EventHandler;
use medify::config::RedisSettings;
use medify::notify::{LogNotifier, NotificationWriter};
use medify::redis::Redis;
use medify_actors::order::OrderStatus;
use medify_actors::ports::{Event, EventBus, EventKind};
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{connect_store, spawn_app, spawn_app_with, Backend, Options};

fn event(customer: Uuid) -> Event {
    Event {
        id: Uuid::now_v7(),
        kind: EventKind::OrderCancelled,
        order_id: Some(Uuid::now_v7()),
        customer_id: Some(customer),
        rider_id: None,
        pharmacy_id: None,
        from_status: Some(OrderStatus::Dispatching),
        to_status: Some(OrderStatus::Cancelled),
        at_ms: 0,
        payment: None,
        cancel_reason: None,
    }
}

#[actix_web::test]
async fn a_consumer_killed_before_acknowledging_is_redelivered_and_written_once() {
    let Some(app) = spawn_app_with(
        Backend::Sqlite,
        Options {
            redis: true,
            ..Options::default()
        },
    )
    .await
    else {
        return;
    };
    let (user, _) = app.register("customer").await;
    let customer = Uuid::parse_str(user["id"].as_str().expect("id")).expect("uuid");
    let store = connect_store(&app).await;
    // A stream of our own, under the test's prefix, so the server's consumers stay out.
    let redis = Redis::new(&RedisSettings {
        url: app.env["REDIS_URL"].clone(),
        key_prefix: format!("{}isolated:", app.env["REDIS_KEY_PREFIX"]),
    })
    .expect("redis");
    let writer = NotificationWriter::new(store.clone(), Arc::new(LogNotifier));
    let publisher = RedisBus::start(
        redis.clone(),
        "publisher",
        uuid::Uuid::now_v7(),
        Vec::new(),
        Vec::new(),
        Duration::from_secs(30),
    );
    let a = StreamConsumer::new(redis.clone(), writer.name(), "consumer-a");
    let b = StreamConsumer::new(redis.clone(), writer.name(), "consumer-b");
    a.ensure_group().await.expect("group");

    // Event 1: A handles it (writes the notification) and dies before XACK.
    // Event 2: A reads it and dies before even handling it.
    let (first, second) = (event(customer), event(customer));
    publisher.publish(first.clone()).await.expect("publish");
    publisher.publish(second.clone()).await.expect("publish");
    let read = a.read_new(10, Duration::from_secs(1)).await.expect("read");
    assert_eq!(read.len(), 2);
    writer.handle(&read[0].1).await.expect("handled");
    drop(a);
    assert_eq!(
        b.pending().await.expect("pending"),
        2,
        "both entries await acknowledgement"
    );

    // B takes over what A left (idle time 0 here; 30 s by default).
    let claimed = b.claim_stale(Duration::ZERO, 10).await.expect("claim");
    let ids: Vec<Uuid> = claimed.iter().map(|(_, e)| e.id).collect();
    assert_eq!(ids, vec![first.id, second.id]);
    b.process(&writer, claimed).await;
    assert_eq!(
        b.pending().await.expect("pending"),
        0,
        "acknowledged after handling"
    );
    for e in [&first, &second] {
        let key = format!("{}:order_cancelled", e.id);
        assert_eq!(
            store.count_notifications(&key).await.expect("count"),
            1,
            "{key}"
        );
    }
    // Nothing left to claim.
    assert!(b
        .claim_stale(Duration::ZERO, 10)
        .await
        .expect("claim")
        .is_empty());
}

#[actix_web::test]
async fn notifications_flow_through_redis_end_to_end() {
    let Some(app) = spawn_app_with(
        Backend::Sqlite,
        Options {
            redis: true,
            ..Options::default()
        },
    )
    .await
    else {
        return;
    };
    let admin = app.admin_token().await;
    let (_, medicine) = app.stocked_pharmacy(&admin, "P", 12.97, 77.59, 3).await;
    let (_, customer) = app.user_token("customer").await;
    let order = app
        .place_order(&customer, &[(medicine, 1)], 12.97, 77.59)
        .await
        .json();
    let cancel = app
        .post_auth(
            &format!(
                "/api/v1/orders/{}/cancel",
                order["id"].as_str().expect("id")
            ),
            &customer,
            &json!({}),
        )
        .await;
    assert_eq!(cancel.status, 200);
    let start = Instant::now();
    loop {
        let page = app
            .get_auth("/api/v1/notifications", &customer)
            .await
            .json();
        let types: Vec<&str> = page["items"]
            .as_array()
            .expect("items")
            .iter()
            .filter_map(|n| n["type"].as_str())
            .collect();
        let all_sent = page["items"]
            .as_array()
            .expect("items")
            .iter()
            .all(|n| n["status"] == "sent");
        if types.contains(&"order_confirmed") && types.contains(&"order_cancelled") && all_sent {
            assert_eq!(page["total"], 2, "exactly one per event: {page}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "notifications never arrived: {page}"
        );
        actix_web::rt::time::sleep(Duration::from_millis(25)).await;
    }
}

#[actix_web::test]
async fn riders_coming_online_and_going_offline_are_announced() {
    let Some(app) = spawn_app_with(
        Backend::Sqlite,
        Options {
            redis: true,
            env: vec![("RIDER_GRACE_S", "0".to_owned())],
        },
    )
    .await
    else {
        return;
    };
    let (user, token) = app.user_token("rider").await;
    let rider = Uuid::parse_str(user["id"].as_str().expect("id")).expect("uuid");
    let mut ws = crate::riders::RiderWs::connect(&app, &token).await;
    ws.expect("welcome").await;
    drop(ws);

    // Watch the server's own stream with a group of our own, from the beginning.
    let redis = Redis::new(&RedisSettings {
        url: app.env["REDIS_URL"].clone(),
        key_prefix: app.env["REDIS_KEY_PREFIX"].clone(),
    })
    .expect("redis");
    let observer = StreamConsumer::new(redis, "test-observer", "observer");
    observer.ensure_group().await.expect("group");
    let mut seen = Vec::new();
    let start = Instant::now();
    while !(seen.contains(&EventKind::RiderOnline) && seen.contains(&EventKind::RiderOffline)) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "saw only {seen:?}"
        );
        for (_, event) in observer
            .read_new(100, Duration::from_millis(200))
            .await
            .expect("read")
        {
            if event.rider_id == Some(rider) {
                seen.push(event.kind);
            }
        }
    }
    assert_eq!(seen, vec![EventKind::RiderOnline, EventKind::RiderOffline]);
}

/// A durable handler that notes the kinds it handles and, like the notification writer,
/// wants no rider presence events.
struct Recorder(std::sync::Mutex<Vec<EventKind>>);

impl EventHandler for Recorder {
    fn name(&self) -> &'static str {
        "recorder"
    }

    fn wants(&self, kind: EventKind) -> bool {
        !matches!(kind, EventKind::RiderOnline | EventKind::RiderOffline)
    }

    fn handle<'a>(
        &'a self,
        event: &'a Event,
    ) -> medify_actors::ports::BoxFuture<'a, anyhow::Result<()>> {
        self.0.lock().expect("recorder").push(event.kind);
        Box::pin(async { Ok(()) })
    }
}

/// The embedded bus journals an event only when a durable handler wants it: a rider
/// coming online, which nothing durable reads, costs no journal row (10 000 riders
/// connecting used to write 10 000), so the durable handler never sees one.
#[actix_web::test]
async fn the_embedded_bus_journals_only_what_a_durable_handler_wants() {
    let Some(app) = spawn_app(Backend::Sqlite).await else {
        return;
    };
    let store = connect_store(&app).await;
    let recorder = Arc::new(Recorder(std::sync::Mutex::new(Vec::new())));
    let durable: Vec<Arc<dyn EventHandler>> = vec![recorder.clone()];
    let bus = medify::bus::InProcessBus::start(store.clone(), Vec::new(), durable);
    let online = Event {
        kind: EventKind::RiderOnline,
        rider_id: Some(Uuid::now_v7()),
        customer_id: None,
        order_id: None,
        from_status: None,
        to_status: None,
        ..event(Uuid::now_v7())
    };
    bus.publish(online).await.expect("publish");
    bus.publish(event(Uuid::now_v7())).await.expect("publish");
    let start = Instant::now();
    while recorder.0.lock().expect("recorder").is_empty() {
        assert!(start.elapsed() < Duration::from_secs(30), "never handled");
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        *recorder.0.lock().expect("recorder"),
        vec![EventKind::OrderCancelled]
    );
}
