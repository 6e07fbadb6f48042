//! The admins' fleet socket: riders by state, open orders, supply and demand per cell.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::backend_tests;
use crate::helpers::TestApp;
use crate::riders::RiderWs;

backend_tests!(ops_sees_riders_orders_and_cells);

/// Reads `fleet` frames until one satisfies `want`; panics after 30 s.
async fn fleet_where(ws: &mut RiderWs, what: &str, want: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < deadline, "no fleet frame with {what}");
        let frame = ws.expect("fleet").await;
        if want(&frame) {
            return frame;
        }
    }
}

fn cells_total(frame: &Value, key: &str) -> u64 {
    frame["cells"]["features"]
        .as_array()
        .expect("features")
        .iter()
        .map(|f| f["properties"][key].as_u64().expect("a count"))
        .sum()
}

async fn ops_sees_riders_orders_and_cells(app: TestApp) {
    let admin = app.admin_token().await;
    let (_, customer) = app.user_token("customer").await;
    assert_eq!(app.get("/ws/ops").await.status, 401);
    app.get_auth("/ws/ops", &customer)
        .await
        .assert_problem(403, "forbidden");

    let (_, medicine) = app
        .stocked_pharmacy(&admin, "Hub", 12.9716, 77.5946, 5)
        .await;
    let (rider_user, rider_token) = app.user_token("rider").await;
    let rider_id = rider_user["id"].as_str().expect("id").to_owned();
    let mut rider = RiderWs::connect(&app, &rider_token).await;
    rider.expect("welcome").await;
    rider.at(12.9726, 77.5946).await;
    rider
        .send(json!({"type": "availability", "available": true}))
        .await;

    let mut ops = RiderWs::connect_to(&app, "/ws/ops", &admin).await;
    let free = fleet_where(&mut ops, "the rider free", |f| {
        f["riders"].as_array().is_some_and(|r| {
            r.iter()
                .any(|r| r["id"] == rider_id && r["state"] == "free")
        })
    })
    .await;
    assert_eq!(free["counters"]["riders_online"], 1, "{free}");
    assert_eq!(free["counters"]["riders_free"], 1, "{free}");
    assert_eq!(cells_total(&free, "supply"), 1, "{free}");
    let hexagon = &free["cells"]["features"][0]["geometry"];
    assert_eq!(hexagon["type"], "Polygon");
    let ring = hexagon["coordinates"][0].as_array().expect("ring");
    assert!(ring.len() >= 7, "a closed hexagon ring: {hexagon}");
    assert_eq!(ring.first(), ring.last());

    // The rider stops taking orders; an order then waits for one: demand, no supply.
    rider
        .send(json!({"type": "availability", "available": false}))
        .await;
    let placed = app
        .place_order(&customer, &[(medicine, 1)], 12.9816, 77.5946)
        .await
        .json();
    let waiting = fleet_where(&mut ops, "the order waiting", |f| {
        f["orders"].as_array().is_some_and(|o| {
            o.iter()
                .any(|o| o["id"] == placed["id"] && o["status"] == "dispatching")
        })
    })
    .await;
    assert_eq!(waiting["counters"]["riders_free"], 0, "{waiting}");
    assert_eq!(waiting["counters"]["orders_open"], 1, "{waiting}");
    assert_eq!(cells_total(&waiting, "demand"), 1, "{waiting}");
    assert_eq!(cells_total(&waiting, "supply"), 0, "{waiting}");
    let order = &waiting["orders"][0];
    assert_eq!(order["pickup"], json!({"lat": 12.9716, "lng": 77.5946}));
    assert_eq!(order["dropoff"], json!({"lat": 12.9816, "lng": 77.5946}));

    // At most two frames a second.
    let next = ops.expect("fleet").await;
    let at = |f: &Value| {
        chrono::DateTime::parse_from_rfc3339(f["at"].as_str().expect("at")).expect("RFC 3339")
    };
    let gap = at(&next) - at(&waiting);
    assert!(
        gap >= chrono::Duration::milliseconds(500),
        "frames {gap} apart"
    );
}
