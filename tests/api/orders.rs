//! Orders over HTTP, with assignment driven through the order actors' messages (the rider
//! socket that sends them arrives with the riders issue).

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use medify_actors::order::{Command, InjectFault, OrderError};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::backend_tests;
use crate::helpers::{
    connect_store, spawn_app_with, sqlite_app, Backend, Http, Options, Reply, TestApp,
};

backend_tests!(
    lifecycle_through_every_state,
    authorisation_matrix,
    concurrent_orders_never_oversell,
    one_idempotency_key_makes_one_order,
    an_abandoned_key_claim_is_taken_over,
    cancel_releases_stock,
    order_validation,
    nearest_pharmacy_with_everything_is_chosen,
    manual_dispatch_checks,
    an_order_actor_restart_loses_nothing,
    unacknowledged_events_are_relayed_once,
    a_long_trail_is_thinned_evenly,
);

const CENTER: (f64, f64) = (12.9716, 77.5946);

struct Shop {
    admin: String,
    pharmacy: Uuid,
    medicine: Uuid,
    customer: String,
    customer_id: Uuid,
}

async fn shop(app: &TestApp, stock: i64) -> Shop {
    let admin = app.admin_token().await;
    let pharmacy = app
        .create_pharmacy(&admin, "Corner", CENTER.0 + 0.002, CENTER.1)
        .await;
    let medicine = app
        .create_medicine(&admin, "Paracetamol 500 mg", None, None, 250)
        .await;
    assert_eq!(
        app.put_stock(&admin, pharmacy, &[(medicine, stock)])
            .await
            .status,
        200
    );
    let (user, customer) = app.user_token("customer").await;
    Shop {
        admin,
        pharmacy,
        medicine,
        customer,
        customer_id: uuid(&user["id"]),
    }
}

fn uuid(v: &Value) -> Uuid {
    Uuid::parse_str(v.as_str().expect("a uuid string")).expect("uuid")
}

/// Polls until `done` says yes; the bus writes notifications and the timeout fires on
/// their own schedule, and the API is how a client would find out.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "never happened: {what}"
        );
        actix_web::rt::time::sleep(Duration::from_millis(25)).await;
    }
}

pub async fn notification_types(http: &Http, token: &str) -> Vec<String> {
    let page = http.get_auth("/api/v1/notifications", token).await.json();
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|n| n["type"].as_str().unwrap_or("").to_owned())
        .collect()
}

/// A trail of 12 001 points answers with 5 000 (the default bound), evenly spread, the
/// first and last kept, oldest first.
async fn a_long_trail_is_thinned_evenly(app: TestApp) {
    let s = shop(&app, 10).await;
    let res = app
        .place_order(&s.customer, &[(s.medicine, 1)], CENTER.0, CENTER.1)
        .await;
    assert_eq!(res.status, 201, "{}", res.text());
    let id = uuid(&res.json()["id"]);
    let store = connect_store(&app).await;
    const N: i64 = 12_001;
    let t0: i64 = 1_764_000_000_000;
    medify::on_pool!(&store, |pool| {
        // One statement per 1 000 points; the customer stands in for the rider.
        for chunk in (0..N).collect::<Vec<_>>().chunks(1_000) {
            let mut sql =
                String::from("INSERT INTO rider_trail (order_id, rider_id, lat, lng, ts) VALUES ");
            for (k, i) in chunk.iter().enumerate() {
                if k > 0 {
                    sql.push(',');
                }
                sql.push_str(&format!(
                    "($1, $2, {}, 77.59, {})",
                    12.9 + *i as f64 * 1e-6,
                    t0 + i
                ));
            }
            sqlx::query(&sql)
                .bind(id)
                .bind(s.customer_id)
                .execute(pool)
                .await
                .expect("trail rows");
        }
    });
    let trail = app
        .get_auth(&format!("/api/v1/orders/{id}/trail"), &s.customer)
        .await
        .json();
    let ts: Vec<i64> = trail["properties"]["ts"]
        .as_array()
        .expect("ts")
        .iter()
        .map(|t| t.as_i64().expect("ts"))
        .collect();
    assert_eq!(ts.len(), 5_000);
    assert_eq!(
        trail["geometry"]["coordinates"].as_array().map(Vec::len),
        Some(5_000)
    );
    assert_eq!((ts[0], ts[4_999]), (t0, t0 + N - 1));
    // Evenly: every gap is 2 or 3 points of the original (12 000 / 4 999 ≈ 2.4).
    assert!(
        ts.windows(2).all(|w| (2..=3).contains(&(w[1] - w[0]))),
        "uneven thinning"
    );
}

async fn lifecycle_through_every_state(app: TestApp) {
    let s = shop(&app, 10).await;
    let res = app
        .place_order(&s.customer, &[(s.medicine, 2)], CENTER.0, CENTER.1)
        .await;
    assert_eq!(res.status, 201, "{}", res.text());
    let order = res.json();
    assert_eq!(order["status"], "dispatching");
    assert_eq!(order["total_cents"], 500);
    assert_eq!(order["items"][0]["price_cents"], 250);
    assert_eq!(order["pharmacy"]["id"], s.pharmacy.to_string());
    assert_eq!(order["customer_id"], s.customer_id.to_string());
    assert_eq!(order["rider"], Value::Null);
    let code = order["delivery_code"].as_str().expect("code").to_owned();
    assert!(
        code.len() == 4 && code.bytes().all(|b| b.is_ascii_digit()),
        "{code}"
    );
    let id = uuid(&order["id"]);
    assert_eq!(app.stock_of(s.pharmacy, s.medicine).await, (10, 2));

    let (rider, rider_token) = app.user_token("rider").await;
    let rider_id = uuid(&rider["id"]);
    let (other, _) = app.user_token("rider").await;
    let orders = &app.state.orders;

    // Premature steps are refused by the state machine.
    let early = orders.apply(id, Command::PickUp { rider_id }).await;
    assert_eq!(early, Err(OrderError::Forbidden), "no rider yet");
    let assigned = orders
        .apply(id, Command::Assign { rider_id, by: None })
        .await
        .expect("assign");
    assert_eq!(assigned.rider_id, Some(rider_id));
    let seen = app
        .get_auth(&format!("/api/v1/orders/{id}"), &rider_token)
        .await;
    assert_eq!(seen.status, 200);
    let seen = seen.json();
    assert_eq!(seen["status"], "assigned");
    assert_eq!(seen["rider"]["id"], rider_id.to_string());
    assert_eq!(
        seen["delivery_code"],
        Value::Null,
        "riders never see the code"
    );
    let wrong = orders
        .apply(
            id,
            Command::Deliver {
                rider_id,
                code: code.clone(),
            },
        )
        .await;
    assert!(
        matches!(wrong, Err(OrderError::Conflict(_))),
        "delivered before picked up: {wrong:?}"
    );
    let stranger = orders
        .apply(
            id,
            Command::PickUp {
                rider_id: uuid(&other["id"]),
            },
        )
        .await;
    assert_eq!(stranger, Err(OrderError::Forbidden));

    orders
        .apply(id, Command::PickUp { rider_id })
        .await
        .expect("pick up");
    assert_eq!(
        app.stock_of(s.pharmacy, s.medicine).await,
        (8, 0),
        "pick-up commits stock"
    );
    let bad = orders
        .apply(
            id,
            Command::Deliver {
                rider_id,
                code: format!("{}", (code.parse::<u32>().expect("n") + 1) % 10_000),
            },
        )
        .await;
    assert_eq!(bad, Err(OrderError::InvalidCode));
    let done = orders
        .apply(id, Command::Deliver { rider_id, code })
        .await
        .expect("deliver");
    assert_eq!(done.status.as_str(), "delivered");

    let final_view = app
        .get_auth(&format!("/api/v1/orders/{id}"), &s.customer)
        .await
        .json();
    assert_eq!(final_view["status"], "delivered");
    app.post_auth(
        &format!("/api/v1/orders/{id}/cancel"),
        &s.customer,
        &json!({}),
    )
    .await
    .assert_problem(409, "conflict");
    let customer = s.customer.clone();
    eventually("all notifications written", || {
        let customer = customer.clone();
        let http = &app.http;
        async move {
            let types = notification_types(http, &customer).await;
            [
                "order_confirmed",
                "rider_assigned",
                "order_picked_up",
                "order_delivered",
            ]
            .iter()
            .all(|t| types.iter().any(|x| x == t))
        }
    })
    .await;
    let page = app
        .get_auth("/api/v1/notifications", &s.customer)
        .await
        .json();
    assert_eq!(page["total"], 4, "one per customer-facing event: {page}");
    assert!(page["items"][0]["payload"]["order_id"] == id.to_string());
    let trail = app
        .get_auth(&format!("/api/v1/orders/{id}/trail"), &s.customer)
        .await
        .json();
    assert_eq!(trail["type"], "Feature");
    assert_eq!(trail["geometry"]["type"], "LineString");
    assert_eq!(trail["geometry"]["coordinates"], json!([]));
    assert_eq!(trail["properties"]["ts"], json!([]));
    let metrics = app.get("/metrics").await.text();
    assert!(
        metrics.contains("medify_orders{status=\"delivered\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("medify_orders{status=\"dispatching\"} 0"),
        "{metrics}"
    );
}

async fn authorisation_matrix(app: TestApp) {
    let s = shop(&app, 10).await;
    let order = app
        .place_order(&s.customer, &[(s.medicine, 1)], CENTER.0, CENTER.1)
        .await
        .json();
    let id = uuid(&order["id"]);
    let (_, other_customer) = app.user_token("customer").await;
    let (rider, rider_token) = app.user_token("rider").await;
    let (_, other_rider) = app.user_token("rider").await;
    let other_pharmacy = app
        .create_pharmacy(&s.admin, "Elsewhere", CENTER.0 + 0.1, CENTER.1)
        .await;
    let mut staff = Vec::new();
    for (n, pharmacy) in [(0, s.pharmacy), (1, other_pharmacy)] {
        let email = format!("staff{n}@example.com");
        let res = app
            .post_auth(
                "/api/v1/admin/users",
                &s.admin,
                &json!({"name": "Staff", "email": email, "password": "staff password", "role": "pharmacy", "pharmacy_id": pharmacy}),
            )
            .await;
        assert_eq!(res.status, 201);
        staff.push(
            app.login(&email, "staff password").await["access_token"]
                .as_str()
                .expect("token")
                .to_owned(),
        );
    }
    app.state
        .orders
        .apply(
            id,
            Command::Assign {
                rider_id: uuid(&rider["id"]),
                by: None,
            },
        )
        .await
        .expect("assign");

    let path = format!("/api/v1/orders/{id}");
    let trail = format!("/api/v1/orders/{id}/trail");
    // (who, sees it, sees the code)
    for (token, sees, code) in [
        (&s.customer, true, true),
        (&s.admin, true, true),
        (&rider_token, true, false),
        (&staff[0], true, false),
        (&other_customer, false, false),
        (&other_rider, false, false),
        (&staff[1], false, false),
    ] {
        let res = app.get_auth(&path, token).await;
        let t = app.get_auth(&trail, token).await;
        if sees {
            assert_eq!(res.status, 200, "{}", res.text());
            assert_eq!(t.status, 200);
            assert_eq!(
                res.json()["delivery_code"].is_string(),
                code,
                "{}",
                res.text()
            );
        } else {
            res.assert_problem(404, "not_found");
            t.assert_problem(404, "not_found");
        }
    }
    app.get(&path).await.assert_problem(401, "unauthorized");

    // Lists follow the same lines.
    let count = |r: Reply| {
        r.json()["items"].as_array().map_or(0, |a| {
            a.iter().filter(|o| o["id"] == id.to_string()).count()
        })
    };
    assert_eq!(count(app.get_auth("/api/v1/orders", &s.customer).await), 1);
    assert_eq!(count(app.get_auth("/api/v1/orders", &s.admin).await), 1);
    assert_eq!(count(app.get_auth("/api/v1/orders", &rider_token).await), 1);
    assert_eq!(count(app.get_auth("/api/v1/orders", &staff[0]).await), 1);
    assert_eq!(
        count(app.get_auth("/api/v1/orders", &other_customer).await),
        0
    );
    assert_eq!(count(app.get_auth("/api/v1/orders", &other_rider).await), 0);
    assert_eq!(count(app.get_auth("/api/v1/orders", &staff[1]).await), 0);
    let listed = app.get_auth("/api/v1/orders", &rider_token).await.json();
    assert_eq!(listed["items"][0]["delivery_code"], Value::Null);

    // Cancelling: strangers 404, those who see it but may not cancel 403.
    let cancel = format!("/api/v1/orders/{id}/cancel");
    app.post_auth(&cancel, &other_customer, &json!({}))
        .await
        .assert_problem(404, "not_found");
    app.post_auth(&cancel, &rider_token, &json!({}))
        .await
        .assert_problem(403, "forbidden");
    app.post_auth(&cancel, &staff[0], &json!({}))
        .await
        .assert_problem(403, "forbidden");
    // Only customers place orders.
    app.place_order(&rider_token, &[(s.medicine, 1)], CENTER.0, CENTER.1)
        .await
        .assert_problem(403, "forbidden");
    app.place_order(&s.admin, &[(s.medicine, 1)], CENTER.0, CENTER.1)
        .await
        .assert_problem(403, "forbidden");
    let res = app.post_auth(&cancel, &s.admin, &json!({})).await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(res.json()["status"], "cancelled");
}

async fn concurrent_orders_never_oversell(app: TestApp) {
    let s = shop(&app, 25).await;
    let one = [(s.medicine, 1)];
    let attempts = (0..80).map(|_| app.place_order(&s.customer, &one, CENTER.0, CENTER.1));
    let replies = join_all(attempts).await;
    let created = replies.iter().filter(|r| r.status == 201).count();
    for r in replies.iter().filter(|r| r.status != 201) {
        let body = r.assert_problem(409, "insufficient_stock");
        assert_eq!(body["errors"][0]["field"], "items[0]", "{body}");
    }
    assert_eq!(created, 25);
    assert_eq!(app.stock_of(s.pharmacy, s.medicine).await, (25, 25));
    let list = app
        .get_auth("/api/v1/orders?per_page=100", &s.customer)
        .await
        .json();
    assert_eq!(list["total"], 25);
}

async fn one_idempotency_key_makes_one_order(app: TestApp) {
    let s = shop(&app, 10).await;
    let body = json!({"items": [{"medicine_id": s.medicine, "qty": 1}],
                      "delivery": {"lat": CENTER.0, "lng": CENTER.1, "address": "1 Same Street"}});
    let send = |body: Value| {
        let req = app
            .client
            .post(app.url("/api/v1/orders"))
            .insert_header(("authorization", format!("Bearer {}", s.customer)))
            .insert_header(("idempotency-key", "order-abc-1"));
        async move {
            let mut res = req.send_json(&body).await.expect("send");
            let bytes = res.body().await.expect("body");
            (
                res.status().as_u16(),
                serde_json::from_slice::<Value>(&bytes).expect("json"),
            )
        }
    };
    let (a, b) = futures_util::join!(send(body.clone()), send(body.clone()));
    let mut statuses = [a.0, b.0];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 201], "{a:?} {b:?}");
    assert_eq!(a.1["id"], b.1["id"]);
    let (again, same) = send(body.clone()).await;
    assert_eq!((again, &same["id"]), (200, &a.1["id"]));
    let list = app.get_auth("/api/v1/orders", &s.customer).await.json();
    assert_eq!(list["total"], 1);
    assert_eq!(app.stock_of(s.pharmacy, s.medicine).await, (10, 1));

    let mut other = body.clone();
    other["items"][0]["qty"] = json!(2);
    let (status, problem) = send(other).await;
    assert_eq!(status, 422);
    assert_eq!(problem["code"], "idempotency_key_reused");
    // Keys are per user: another customer's identical key is a new order.
    let (_, stranger) = app.user_token("customer").await;
    let res = app
        .client
        .post(app.url("/api/v1/orders"))
        .insert_header(("authorization", format!("Bearer {stranger}")))
        .insert_header(("idempotency-key", "order-abc-1"))
        .send_json(&body)
        .await
        .expect("send");
    assert_eq!(res.status().as_u16(), 201);
}

/// A node that died between claiming a customer's Idempotency-Key and storing the order
/// leaves a claim with no order. After a while that claim counts as abandoned: the retry
/// places the order (instead of "still being processed" or "reused" for the key's day), and
/// the key names it from then on, since the order and its key are stored together.
async fn an_abandoned_key_claim_is_taken_over(app: TestApp) {
    let s = shop(&app, 5).await;
    let store = &app.state.store;
    let key = "order-dead-node-1";
    let day = chrono::Duration::hours(24);
    let claim = store
        .claim_idempotency_key(s.customer_id, key, &[1; 32], (day, day))
        .await
        .expect("claim");
    assert!(matches!(claim, medify::store::orders::KeyClaim::Claimed));
    let two_minutes_ago = chrono::Utc::now() - chrono::Duration::minutes(2);
    let sql = "UPDATE idempotency_keys SET created_at = $1 WHERE key = $2";
    medify::on_pool!(store, |pool| {
        sqlx::query(sql)
            .bind(two_minutes_ago)
            .bind(key)
            .execute(pool)
            .await
            .expect("backdate the claim");
    });
    let body = json!({"items": [{"medicine_id": s.medicine, "qty": 1}],
                      "delivery": {"lat": CENTER.0, "lng": CENTER.1, "address": "1 Retry Road"}});
    let send = || {
        app.client
            .post(app.url("/api/v1/orders"))
            .insert_header(("authorization", format!("Bearer {}", s.customer)))
            .insert_header(("idempotency-key", key))
            .send_json(&body)
    };
    let mut placed = send().await.expect("send");
    let first: Value = serde_json::from_slice(&placed.body().await.expect("body")).expect("json");
    assert_eq!(placed.status().as_u16(), 201, "{first}");
    let mut again = send().await.expect("send");
    let second: Value = serde_json::from_slice(&again.body().await.expect("body")).expect("json");
    assert_eq!(
        (again.status().as_u16(), &second["id"]),
        (200, &first["id"])
    );
    assert_eq!(
        store
            .idempotency_key_order(s.customer_id, key)
            .await
            .expect("key"),
        Some(uuid(&first["id"]))
    );
    assert_eq!(app.stock_of(s.pharmacy, s.medicine).await, (5, 1));
}

async fn cancel_releases_stock(app: TestApp) {
    let s = shop(&app, 5).await;
    let order = app
        .place_order(&s.customer, &[(s.medicine, 3)], CENTER.0, CENTER.1)
        .await
        .json();
    let id = order["id"].as_str().expect("id").to_owned();
    assert_eq!(app.stock_of(s.pharmacy, s.medicine).await, (5, 3));
    let res = app
        .post_auth(
            &format!("/api/v1/orders/{id}/cancel"),
            &s.customer,
            &json!({}),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(res.json()["status"], "cancelled");
    assert_eq!(app.stock_of(s.pharmacy, s.medicine).await, (5, 0));
    app.post_auth(
        &format!("/api/v1/orders/{id}/cancel"),
        &s.customer,
        &json!({}),
    )
    .await
    .assert_problem(409, "conflict");
    // The released units can be ordered again.
    assert_eq!(
        app.place_order(&s.customer, &[(s.medicine, 5)], CENTER.0, CENTER.1)
            .await
            .status,
        201
    );
    app.post_auth(
        &format!("/api/v1/orders/{}/cancel", Uuid::now_v7()),
        &s.customer,
        &json!({}),
    )
    .await
    .assert_problem(404, "not_found");
}

async fn order_validation(app: TestApp) {
    let s = shop(&app, 5).await;
    let check = |body: Value, field: &'static str| {
        let token = s.customer.clone();
        let http = &app.http;
        async move {
            let res = http.post_auth("/api/v1/orders", &token, &body).await;
            let problem = res.assert_problem(422, "validation_failed");
            let fields: Vec<String> = problem["errors"]
                .as_array()
                .expect("errors")
                .iter()
                .map(|e| e["field"].as_str().unwrap_or("").to_owned())
                .collect();
            assert!(
                fields.contains(&field.to_owned()),
                "{field} not in {problem}"
            );
        }
    };
    let delivery = json!({"lat": CENTER.0, "lng": CENTER.1, "address": "x"});
    check(json!({"items": [], "delivery": delivery}), "items").await;
    check(
        json!({"items": [{"medicine_id": s.medicine, "qty": 0}], "delivery": delivery}),
        "items[0].qty",
    )
    .await;
    check(
        json!({"items": [{"medicine_id": s.medicine, "qty": 101}], "delivery": delivery}),
        "items[0].qty",
    )
    .await;
    check(
        json!({"items": [{"medicine_id": s.medicine, "qty": "two"}], "delivery": delivery}),
        "items[0].qty",
    )
    .await;
    check(
        json!({"items": [{"medicine_id": Uuid::now_v7(), "qty": 1}], "delivery": delivery}),
        "items[0].medicine_id",
    )
    .await;
    check(json!({"items": [{"medicine_id": s.medicine, "qty": 1}, {"medicine_id": s.medicine, "qty": 1}], "delivery": delivery}), "items[1].medicine_id").await;
    check(json!({"items": [{"medicine_id": s.medicine, "qty": 1}], "delivery": {"lat": 91, "lng": 0, "address": "x"}}), "delivery.lat").await;
    check(json!({"items": [{"medicine_id": s.medicine, "qty": 1}], "delivery": {"lat": 0, "lng": -181, "address": "x"}}), "delivery.lng").await;
    check(json!({"items": [{"medicine_id": s.medicine, "qty": 1}], "delivery": {"lat": 0, "lng": 0, "address": " "}}), "delivery.address").await;
    check(
        json!({"items": [{"medicine_id": s.medicine, "qty": 1}]}),
        "delivery",
    )
    .await;
    check(json!({"items": [{"medicine_id": s.medicine, "qty": 1}], "delivery": delivery, "pharmacy_id": Uuid::now_v7()}), "pharmacy_id").await;
    let many: Vec<Value> = (0..51)
        .map(|_| json!({"medicine_id": Uuid::now_v7(), "qty": 1}))
        .collect();
    check(json!({"items": many, "delivery": delivery}), "items").await;

    // Far from every pharmacy.
    app.place_order(&s.customer, &[(s.medicine, 1)], 40.7, -74.0)
        .await
        .assert_problem(422, "out_of_service_area");
    // A named pharmacy that lacks an item.
    let other = app.create_medicine(&s.admin, "Rare", None, None, 100).await;
    let res = app
        .post_auth(
            "/api/v1/orders",
            &s.customer,
            &json!({"items": [{"medicine_id": s.medicine, "qty": 1}, {"medicine_id": other, "qty": 1}],
                    "delivery": delivery, "pharmacy_id": s.pharmacy}),
        )
        .await;
    let problem = res.assert_problem(409, "insufficient_stock");
    assert_eq!(
        problem["errors"].as_array().map(Vec::len),
        Some(1),
        "{problem}"
    );
    assert_eq!(problem["errors"][0]["field"], "items[1]", "{problem}");
    assert_eq!(
        app.stock_of(s.pharmacy, s.medicine).await,
        (5, 0),
        "nothing reserved"
    );
}

async fn nearest_pharmacy_with_everything_is_chosen(app: TestApp) {
    let s = shop(&app, 5).await; // "Corner", ~220 m away, has only the first medicine
    let b = app
        .create_medicine(&s.admin, "Second", None, None, 100)
        .await;
    let farther = app
        .create_pharmacy(&s.admin, "Farther", CENTER.0 + 0.02, CENTER.1)
        .await;
    assert_eq!(
        app.put_stock(&s.admin, farther, &[(s.medicine, 5), (b, 5)])
            .await
            .status,
        200
    );
    let order = app
        .place_order(&s.customer, &[(s.medicine, 1), (b, 1)], CENTER.0, CENTER.1)
        .await;
    assert_eq!(order.status, 201, "{}", order.text());
    assert_eq!(order.json()["pharmacy"]["id"], farther.to_string());
    let near = app
        .place_order(&s.customer, &[(s.medicine, 1)], CENTER.0, CENTER.1)
        .await;
    assert_eq!(near.json()["pharmacy"]["id"], s.pharmacy.to_string());
    assert_eq!(near.json()["total_cents"], 250);
}

async fn manual_dispatch_checks(app: TestApp) {
    let s = shop(&app, 5).await;
    let order = app
        .place_order(&s.customer, &[(s.medicine, 1)], CENTER.0, CENTER.1)
        .await
        .json();
    let id = order["id"].as_str().expect("id").to_owned();
    let (rider, _) = app.user_token("rider").await;
    let path = format!("/api/v1/orders/{id}/assign");
    app.post_auth(&path, &s.customer, &json!({"rider_id": rider["id"]}))
        .await
        .assert_problem(403, "forbidden");
    app.post_auth(&path, &s.admin, &json!({"rider_id": Uuid::now_v7()}))
        .await
        .assert_problem(404, "not_found");
    app.post_auth(&path, &s.admin, &json!({"rider_id": s.customer_id}))
        .await
        .assert_problem(404, "not_found");
    let offline = app
        .post_auth(&path, &s.admin, &json!({"rider_id": rider["id"]}))
        .await
        .assert_problem(409, "conflict");
    assert!(
        offline["detail"].as_str().unwrap_or("").contains("offline"),
        "{offline}"
    );
    app.post_auth(
        &format!("/api/v1/orders/{}/assign", Uuid::now_v7()),
        &s.admin,
        &json!({"rider_id": rider["id"]}),
    )
    .await
    .assert_problem(404, "not_found");
    app.post_auth(
        &format!("/api/v1/orders/{id}/cancel"),
        &s.customer,
        &json!({}),
    )
    .await;
    app.post_auth(&path, &s.admin, &json!({"rider_id": rider["id"]}))
        .await
        .assert_problem(409, "conflict");
}

async fn an_order_actor_restart_loses_nothing(app: TestApp) {
    let s = shop(&app, 5).await;
    let order = app
        .place_order(&s.customer, &[(s.medicine, 1)], CENTER.0, CENTER.1)
        .await
        .json();
    let id = uuid(&order["id"]);
    let addr = app
        .state
        .orders
        .get(id)
        .expect("an active order has an actor");
    addr.send(InjectFault).await.expect("delivered");
    let (rider, _) = app.user_token("rider").await;
    let assigned = app
        .state
        .orders
        .apply(
            id,
            Command::Assign {
                rider_id: uuid(&rider["id"]),
                by: None,
            },
        )
        .await
        .expect("the restarted actor reloaded the order and goes on");
    assert_eq!(assigned.status.as_str(), "assigned");
    assert_eq!(
        assigned.version, 3,
        "create, dispatch, assign: no step lost or repeated"
    );
}

/// The dispatch timeout fails an unassigned order and releases its stock.
#[actix_web::test]
async fn dispatch_timeout_fails_the_order_and_releases_stock() {
    let app = spawn_app_with(
        Backend::Sqlite,
        Options {
            env: vec![("DISPATCH_TIMEOUT_S", "1".to_owned())],
            ..Options::default()
        },
    )
    .await
    .expect("sqlite");
    let s = shop(&app, 4).await;
    let order = app
        .place_order(&s.customer, &[(s.medicine, 4)], CENTER.0, CENTER.1)
        .await
        .json();
    let path = format!("/api/v1/orders/{}", order["id"].as_str().expect("id"));
    let token = s.customer.clone();
    eventually("the order fails", || {
        let (http, path, token) = (&app.http, path.clone(), token.clone());
        async move { http.get_auth(&path, &token).await.json()["status"] == "failed" }
    })
    .await;
    assert_eq!(app.stock_of(s.pharmacy, s.medicine).await, (4, 0));
    eventually("order_failed notification", || {
        let (http, token) = (&app.http, token.clone());
        async move {
            notification_types(http, &token)
                .await
                .contains(&"order_failed".to_owned())
        }
    })
    .await;
}

async fn unacknowledged_events_are_relayed_once(app: TestApp) {
    let s = shop(&app, 5).await;
    let order = app
        .place_order(&s.customer, &[(s.medicine, 1)], CENTER.0, CENTER.1)
        .await
        .json();
    let id = uuid(&order["id"]);
    let token = s.customer.clone();
    eventually("order_confirmed written", || {
        let (http, token) = (&app.http, token.clone());
        async move {
            notification_types(http, &token)
                .await
                .contains(&"order_confirmed".to_owned())
        }
    })
    .await;
    let store = crate::helpers::connect_store(&app).await;
    let nothing_pending =
        medify::bus::relay_once(&store, app.state.bus.as_ref(), chrono::Utc::now())
            .await
            .expect("relay");
    assert_eq!(nothing_pending, 0, "published events are marked");

    // As if the process died after the journal write but before the publish: the
    // notification never got written and the entry is unmarked.
    medify::on_pool!(&store, |pool| {
        sqlx::query("DELETE FROM notifications WHERE user_id = $1")
            .bind(s.customer_id)
            .execute(pool)
            .await
            .expect("delete");
        sqlx::query("UPDATE order_events SET published_at = NULL WHERE order_id = $1 AND seq = 1")
            .bind(id)
            .execute(pool)
            .await
            .expect("unmark");
    });
    let relayed = medify::bus::relay_once(&store, app.state.bus.as_ref(), chrono::Utc::now())
        .await
        .expect("relay");
    assert_eq!(relayed, 1);
    eventually("order_confirmed written again", || {
        let (http, token) = (&app.http, token.clone());
        async move {
            notification_types(http, &token)
                .await
                .contains(&"order_confirmed".to_owned())
        }
    })
    .await;
    // The same event id: relaying it again writes nothing new.
    medify::on_pool!(&store, |pool| {
        sqlx::query("UPDATE order_events SET published_at = NULL WHERE order_id = $1 AND seq = 1")
            .bind(id)
            .execute(pool)
            .await
            .expect("unmark");
    });
    assert_eq!(
        medify::bus::relay_once(&store, app.state.bus.as_ref(), chrono::Utc::now())
            .await
            .expect("relay"),
        1
    );
    let key = format!(
        "{}:order_confirmed",
        medify_actors::ports::order_event_id(id, 1)
    );
    eventually("the relayed duplicate was handled", || {
        let store = store.clone();
        let key = key.clone();
        async move { store.count_notifications(&key).await.unwrap_or(0) == 1 }
    })
    .await;
    let page = app
        .get_auth("/api/v1/notifications", &s.customer)
        .await
        .json();
    assert_eq!(page["total"], 1, "{page}");
}

/// One customer cannot hold a pharmacy's shelf: at most `MAX_OPEN_ORDERS_PER_CUSTOMER` open
/// orders (409 `limit_reached`) and `RATE_LIMIT_ORDERS_PER_MINUTE` placements a minute (429
/// with `Retry-After`); other customers are not held back.
#[actix_web::test]
async fn one_customer_cannot_reserve_the_whole_shelf() {
    let app = sqlite_app(&[
        ("MAX_OPEN_ORDERS_PER_CUSTOMER", "5"),
        ("RATE_LIMIT_ORDERS_PER_MINUTE", "7"),
    ])
    .await;
    let s = shop(&app, 100).await;
    let one = [(s.medicine, 1)];
    let mut placed = Vec::new();
    for _ in 0..5 {
        let res = app.place_order(&s.customer, &one, CENTER.0, CENTER.1).await;
        assert_eq!(res.status, 201, "{}", res.text());
        placed.push(uuid(&res.json()["id"]));
    }
    let sixth = app.place_order(&s.customer, &one, CENTER.0, CENTER.1).await;
    let body = sixth.assert_problem(409, "limit_reached");
    assert!(
        body["detail"].as_str().is_some_and(|d| d.contains('5')),
        "{body}"
    );
    assert_eq!(app.stock_of(s.pharmacy, s.medicine).await, (100, 5));

    // A cancelled order no longer counts.
    let cancel = format!("/api/v1/orders/{}/cancel", placed[0]);
    assert_eq!(
        app.post_auth(&cancel, &s.customer, &json!({})).await.status,
        200
    );
    let res = app.place_order(&s.customer, &one, CENTER.0, CENTER.1).await;
    assert_eq!(res.status, 201, "{}", res.text());

    // Seven placements this minute: the eighth is refused before any work.
    let res = app.place_order(&s.customer, &one, CENTER.0, CENTER.1).await;
    res.assert_problem(429, "rate_limited");
    let wait: u64 = res
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert!((1..=60).contains(&wait), "{wait}");

    // Another customer orders as usual.
    let (_, other) = app.user_token("customer").await;
    let res = app.place_order(&other, &one, CENTER.0, CENTER.1).await;
    assert_eq!(res.status, 201, "{}", res.text());
}
