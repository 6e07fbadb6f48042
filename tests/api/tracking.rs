//! The customer's tracking socket with a real rider on the other end.

use serde_json::{json, Value};

use crate::backend_tests;
use crate::helpers::{sqlite_app, TestApp};
use crate::orders::{eventually, notification_types};
use crate::riders::RiderWs;

backend_tests!(
    watchers_follow_the_rider_to_the_door,
    arrival_is_told_once_on_the_socket_and_as_a_notification,
);

/// An order accepted by a rider: what each test starts from.
pub struct Delivery {
    pub admin: String,
    pub customer: String,
    pub rider: RiderWs,
    /// The order as placed (with its `delivery_code`).
    pub placed: Value,
    pub id: String,
}

/// A stocked pharmacy at (12.9716, 77.5946), a rider free at latitude `rider_lat` on the
/// same meridian, and a customer's order delivered 1.1 km north, offered to and accepted
/// by that rider.
pub async fn assigned_delivery(app: &TestApp, rider_lat: f64) -> Delivery {
    let admin = app.admin_token().await;
    let (_, medicine) = app
        .stocked_pharmacy(&admin, "Hub", 12.9716, 77.5946, 5)
        .await;
    let (_, customer) = app.user_token("customer").await;
    let (_, rider_token) = app.user_token("rider").await;
    let mut rider = RiderWs::connect(app, &rider_token).await;
    rider.expect("welcome").await;
    rider.at(rider_lat, 77.5946).await;
    rider
        .send(json!({"type": "availability", "available": true}))
        .await;
    let placed = app
        .place_order(&customer, &[(medicine, 1)], 12.9816, 77.5946)
        .await
        .json();
    let id = placed["id"].as_str().expect("id").to_owned();
    let offer = rider.expect("offer").await;
    rider
        .send(json!({"type": "offer_response", "offer_id": offer["offer_id"], "accept": true}))
        .await;
    rider.expect("assigned").await;
    Delivery {
        admin,
        customer,
        rider,
        placed,
        id,
    }
}

async fn watchers_follow_the_rider_to_the_door(app: TestApp) {
    let (_, stranger) = app.user_token("customer").await;
    let Delivery {
        admin,
        customer,
        mut rider,
        placed,
        id,
    } = assigned_delivery(&app, 12.9726).await;

    // Before the upgrade: no token 401, someone else's order 404.
    let path = format!("/ws/orders/{id}/track");
    assert_eq!(app.get(&path).await.status, 401);
    app.get_auth(&path, &stranger)
        .await
        .assert_problem(404, "not_found");

    let mut phone = RiderWs::connect_to(&app, &path, &customer).await;
    let mut laptop = RiderWs::connect_to(&app, &path, &admin).await;
    for w in [&mut phone, &mut laptop] {
        let snapshot = w.next().await.expect("snapshot");
        assert_eq!(
            snapshot["type"], "snapshot",
            "the first frame is the snapshot"
        );
        assert_eq!(snapshot["order"]["id"], id);
        assert_eq!(snapshot["order"]["status"], "assigned");
        assert_eq!(snapshot["rider_location"]["lat"], 12.9726, "{snapshot}");
        assert!(snapshot["eta_s"].as_i64().unwrap_or(0) > 0, "{snapshot}");
    }

    // A fix a few seconds later reaches both watchers, with an ETA via the pickup.
    let t = chrono::Utc::now().timestamp_millis() + 3_000;
    rider
        .send(json!({"type": "location", "lat": 12.9720, "lng": 77.5946, "ts": t, "heading": 180}))
        .await;
    for w in [&mut phone, &mut laptop] {
        let loc = w.expect("rider_location").await;
        assert_eq!(
            (loc["lat"].as_f64(), loc["ts"].as_i64()),
            (Some(12.9720), Some(t)),
            "{loc}"
        );
        assert_eq!(loc["heading"], 180.0);
        assert!(loc["eta_s"].as_i64().unwrap_or(0) > 0, "{loc}");
    }

    // Statuses arrive in order; after delivered the socket closes with 1000.
    rider
        .send(json!({"type": "order_status", "order_id": id, "status": "picked_up"}))
        .await;
    rider
        .send(json!({"type": "order_status", "order_id": id, "status": "delivered", "code": placed["delivery_code"]}))
        .await;
    for w in [&mut phone, &mut laptop] {
        let mut statuses = Vec::new();
        let code = loop {
            match w.next().await {
                Ok(frame) if frame["type"] == "status" => {
                    statuses.push(frame["status"].as_str().unwrap_or("").to_owned())
                }
                Ok(_) => {}
                Err(code) => break code,
            }
        };
        assert_eq!(statuses, vec!["picked_up", "delivered"]);
        assert_eq!(code, Some(1000));
    }

    // Watching a finished order: the snapshot, the final status, and a clean close.
    let mut late = RiderWs::connect_to(&app, &path, &customer).await;
    assert_eq!(
        late.next().await.expect("snapshot")["order"]["status"],
        "delivered"
    );
    assert_eq!(late.next().await.expect("status")["status"], "delivered");
    assert_eq!(late.next().await.err(), Some(Some(1000)));
}

/// 100 fixes in one batch: a watcher gets the latest position, not a backlog, and a
/// watcher that never reads does not hold the other one up.
#[actix_web::test]
async fn positions_are_conflated_per_watcher() {
    use crate::helpers::{spawn_app_with, Backend, Options};
    let app = spawn_app_with(Backend::Sqlite, Options::default())
        .await
        .expect("sqlite");
    let Delivery {
        customer,
        mut rider,
        id,
        ..
    } = assigned_delivery(&app, 12.9726).await;
    let path = format!("/ws/orders/{id}/track");
    let _idle = RiderWs::connect_to(&app, &path, &customer).await; // never reads
    let mut reader = RiderWs::connect_to(&app, &path, &customer).await;
    assert_eq!(reader.next().await.expect("snapshot")["type"], "snapshot");

    let t0 = chrono::Utc::now().timestamp_millis() + 1_000;
    let points: Vec<_> = (0..100)
        .map(|i| json!({"lat": 12.9726 + f64::from(i) * 0.00001, "lng": 77.5946, "ts": t0 + i64::from(i) * 500}))
        .collect();
    let last_ts = t0 + 99 * 500;
    rider
        .send(json!({"type": "locations", "points": points}))
        .await;
    let mut received = 0;
    loop {
        let frame = reader.expect("rider_location").await;
        received += 1;
        if frame["ts"] == last_ts {
            break;
        }
    }
    assert!(
        received < 100,
        "{received} frames for 100 fixes: not conflated"
    );
}

/// After pick-up, the first fix within 300 m of the drop-off sends `arriving` (once) and
/// writes a `rider_arriving` notification (once); the ETA counts down smoothly meanwhile.
async fn arrival_is_told_once_on_the_socket_and_as_a_notification(app: TestApp) {
    // The drop-off is about 1.1 km north of the pharmacy; the rider waits at the pharmacy.
    let Delivery {
        customer,
        mut rider,
        placed,
        id,
        ..
    } = assigned_delivery(&app, 12.9716).await;
    let mut watcher = RiderWs::connect_to(&app, &format!("/ws/orders/{id}/track"), &customer).await;
    watcher.expect("snapshot").await;
    rider
        .send(json!({"type": "order_status", "order_id": id, "status": "picked_up"}))
        .await;
    let status = watcher.expect("status").await;
    assert_eq!(status["status"], "picked_up", "{status}");

    // Far away (800 m out), then 290 m out, then 180 m out, then at the door.
    let t0 = chrono::Utc::now().timestamp_millis();
    let path = [
        (12.9744, t0 + 10_000),
        (12.9790, t0 + 30_000),
        (12.9800, t0 + 40_000),
        (12.9815, t0 + 50_000),
    ];
    for (lat, ts) in path {
        rider
            .send(json!({"type": "location", "lat": lat, "lng": 77.5946, "ts": ts}))
            .await;
    }
    // Delivered closes the socket: everything sent to the watcher is read by then.
    rider
        .send(json!({"type": "order_status", "order_id": id, "status": "delivered", "code": placed["delivery_code"]}))
        .await;
    let (mut arriving, mut etas) = (Vec::new(), Vec::new());
    let code = loop {
        match watcher.next().await {
            Ok(frame) if frame["type"] == "arriving" => arriving.push(frame),
            Ok(frame) if frame["type"] == "rider_location" => {
                etas.push(frame["eta_s"].as_i64().expect("eta_s"))
            }
            Ok(_) => {}
            Err(code) => break code,
        }
    };
    assert_eq!(code, Some(1000));
    assert_eq!(arriving.len(), 1, "arriving once: {arriving:?}");
    assert!(arriving[0]["eta_s"].as_i64().is_some(), "{arriving:?}");
    assert!(
        etas.windows(2).all(|w| w[1] <= w[0]),
        "a rider heading straight for the door never sees the ETA go up: {etas:?}"
    );

    let http = &app.http;
    eventually("the rider_arriving notification", || {
        let customer = customer.clone();
        async move {
            notification_types(http, &customer)
                .await
                .iter()
                .any(|t| t == "rider_arriving")
        }
    })
    .await;
    let types = notification_types(http, &customer).await;
    assert_eq!(
        types.iter().filter(|t| *t == "rider_arriving").count(),
        1,
        "{types:?}"
    );
}

/// Tracking sockets are limited per order and per user, refused before the upgrade with
/// 429, and a closed socket gives its place back.
#[actix_web::test]
async fn tracking_sockets_are_limited_per_order_and_per_user() {
    let app = sqlite_app(&[
        ("MAX_TRACK_SOCKETS_PER_ORDER", "2"),
        ("MAX_TRACK_SOCKETS_PER_USER", "3"),
    ])
    .await;
    let admin = app.admin_token().await;
    let (_, medicine) = app
        .stocked_pharmacy(&admin, "Hub", 12.9716, 77.5946, 5)
        .await;
    let (_, customer) = app.user_token("customer").await;
    let mut paths = Vec::new();
    for _ in 0..2 {
        let placed = app
            .place_order(&customer, &[(medicine, 1)], 12.9816, 77.5946)
            .await
            .json();
        paths.push(format!(
            "/ws/orders/{}/track",
            placed["id"].as_str().expect("id")
        ));
    }
    // A plain GET is admitted (then refused as no handshake, 400) or refused (429).
    let probe = |path: String, token: String| {
        let app = &app;
        async move { app.get_auth(&path, &token).await }
    };
    assert_eq!(probe(paths[0].clone(), customer.clone()).await.status, 400);

    let first = RiderWs::connect_to(&app, &paths[0], &customer).await;
    let _second = RiderWs::connect_to(&app, &paths[0], &customer).await;
    let full = probe(paths[0].clone(), customer.clone()).await;
    full.assert_problem(429, "rate_limited");
    assert!(full.header("retry-after").is_some());
    // The order is full for everyone, admins too.
    probe(paths[0].clone(), admin.clone())
        .await
        .assert_problem(429, "rate_limited");

    // A third socket on another order; the customer's fourth is refused there.
    let _third = RiderWs::connect_to(&app, &paths[1], &customer).await;
    probe(paths[1].clone(), customer.clone())
        .await
        .assert_problem(429, "rate_limited");
    // Someone else may still watch that order.
    let _admin = RiderWs::connect_to(&app, &paths[1], &admin).await;

    // Closing a socket gives its place back.
    drop(first);
    eventually("the closed socket's place is free", || async {
        probe(paths[0].clone(), customer.clone()).await.status == 400
    })
    .await;
    let _again = RiderWs::connect_to(&app, &paths[0], &customer).await;
}
