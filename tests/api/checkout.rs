//! Prescription review and payments against the real server over real HTTP, on both
//! backends: the pharmacist's review of an order's prescription, and online payments
//! reported by a payment provider that this file plays (it signs webhooks with the
//! secret, computing the HMAC itself). Riders are driven through the order actors, as in
//! `orders.rs`.

use futures_util::future::join_all;
use hmac::{Hmac, Mac};
use medify_actors::order::Command;
use serde_json::{json, Value};
use sha2::Sha256;
use uuid::Uuid;

use crate::backend_tests_with;
use crate::helpers::{connect_store, sqlite_app, Options, Reply, TestApp};
use crate::orders::{eventually, notification_types};

const SECRET: &str = "whsec_medify_tests_0123456789";
const CENTER: (f64, f64) = (12.9716, 77.5946);

fn payments() -> Options {
    Options {
        env: vec![("PAYMENT_WEBHOOK_SECRET", SECRET.to_owned())],
        ..Options::default()
    }
}

/// Timeouts of a second, to see them fire.
fn impatient() -> Options {
    Options {
        env: vec![
            ("PAYMENT_WEBHOOK_SECRET", SECRET.to_owned()),
            ("PAYMENT_TIMEOUT_S", "1".to_owned()),
            ("RX_REVIEW_TIMEOUT_S", "1".to_owned()),
        ],
        ..Options::default()
    }
}

backend_tests_with!(
    paying,
    payments,
    online_payment_dispatches_then_delivers,
    a_failed_payment_cancels_and_releases_stock,
    a_repeated_report_has_one_effect,
    a_report_claimed_by_a_node_that_died_takes_effect_on_retry,
    forged_stale_and_wrong_reports_have_no_effect,
    cancelling_a_paid_order_owes_a_refund_until_the_provider_reports_it,
    cash_is_paid_on_delivery,
    money_after_a_cancel_is_owed_back,
    prescription_orders_need_a_prescription_of_the_customers,
    an_approved_prescription_goes_to_dispatch_and_delivery,
    a_rejected_prescription_cancels_and_releases_stock,
    only_the_pharmacys_staff_review,
    review_then_payment_then_dispatch,
);

backend_tests_with!(
    timeouts,
    impatient,
    an_unpaid_order_fails_at_the_payment_timeout,
    an_unreviewed_order_fails_at_the_review_timeout,
);

/// A pharmacy with stock of a plain and a prescription-only medicine, its pharmacist, a
/// customer and a rider.
struct Shop {
    admin: String,
    pharmacy: Uuid,
    plain: Uuid,
    rx: Uuid,
    pharmacist: String,
    customer: String,
    customer_id: Uuid,
    rider_id: Uuid,
}

fn uuid(v: &Value) -> Uuid {
    Uuid::parse_str(v.as_str().expect("a uuid string")).expect("uuid")
}

async fn shop(app: &TestApp) -> Shop {
    let admin = app.admin_token().await;
    let pharmacy = app
        .create_pharmacy(&admin, "Corner", CENTER.0 + 0.002, CENTER.1)
        .await;
    let plain = app
        .create_medicine(&admin, "Paracetamol 500 mg", None, None, 250)
        .await;
    let res = app
        .post_auth(
            "/api/v1/medicines",
            &admin,
            &json!({"name": "Amoxicillin 500 mg", "sku": format!("RX-{}", Uuid::now_v7().simple()),
                    "price_cents": 900, "rx_required": true}),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.text());
    let rx = uuid(&res.json()["id"]);
    assert_eq!(
        app.put_stock(&admin, pharmacy, &[(plain, 10), (rx, 10)])
            .await
            .status,
        200
    );
    let pharmacist = staff_of(app, &admin, pharmacy).await;
    let (user, customer) = app.user_token("customer").await;
    let (rider, _) = app.user_token("rider").await;
    Shop {
        admin,
        pharmacy,
        plain,
        rx,
        pharmacist,
        customer,
        customer_id: uuid(&user["id"]),
        rider_id: uuid(&rider["id"]),
    }
}

/// A new pharmacist of `pharmacy`; their access token.
async fn staff_of(app: &TestApp, admin: &str, pharmacy: Uuid) -> String {
    let email = format!("pharmacist-{}@example.com", Uuid::now_v7().simple());
    let res = app
        .post_auth(
            "/api/v1/admin/users",
            admin,
            &json!({"name": "Pharmacist", "email": email, "password": "pharmacist password",
                    "role": "pharmacy", "pharmacy_id": pharmacy}),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.text());
    app.login(&email, "pharmacist password").await["access_token"]
        .as_str()
        .expect("token")
        .to_owned()
}

/// A prescription of `customer`'s on file (its upload has tests of its own).
async fn prescription_of(app: &TestApp, customer: Uuid) -> Uuid {
    let id = Uuid::now_v7();
    let store = connect_store(app).await;
    medify::on_pool!(&store, |pool| {
        sqlx::query(
            "INSERT INTO prescriptions (id, customer_id, content_type, size_bytes, sha256, \
             object_key, created_at) VALUES ($1, $2, 'application/pdf', 4, $3, $4, $5)",
        )
        .bind(id)
        .bind(customer)
        .bind("0".repeat(64))
        .bind(format!("test/{id}"))
        .bind(chrono::Utc::now())
        .execute(pool)
        .await
        .expect("prescription row");
    });
    id
}

async fn order(app: &TestApp, s: &Shop, items: &[(Uuid, i64)], extra: Value) -> Reply {
    let mut body = json!({
        "items": items.iter().map(|(m, q)| json!({"medicine_id": m, "qty": q})).collect::<Vec<_>>(),
        "delivery": {"lat": CENTER.0, "lng": CENTER.1, "address": "1 MG Road"},
    });
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    app.post_auth("/api/v1/orders", &s.customer, &body).await
}

/// Places an order paid online; its id, intent and total.
async fn online_order(app: &TestApp, s: &Shop) -> (Uuid, String, i64) {
    let res = order(app, s, &[(s.plain, 2)], json!({"payment_method": "online"})).await;
    assert_eq!(res.status, 201, "{}", res.text());
    let view = res.json();
    assert_eq!(view["status"], "awaiting_payment", "{view}");
    assert_eq!(view["payment"]["method"], "online");
    assert_eq!(view["payment"]["status"], "pending");
    let intent = view["payment"]["intent_id"]
        .as_str()
        .expect("an intent")
        .to_owned();
    (
        uuid(&view["id"]),
        intent,
        view["total_cents"].as_i64().expect("total"),
    )
}

fn hmac_hex(secret: &str, t: i64, body: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(format!("{t}.{body}").as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Sends a report signed as the provider would, `t` seconds off the clock.
async fn report_signed(app: &TestApp, body: &Value, secret: &str, skew_s: i64) -> Reply {
    let body = body.to_string();
    let t = chrono::Utc::now().timestamp() + skew_s;
    let signature = format!("t={t},v1={}", hmac_hex(secret, t, &body));
    let req = app
        .client
        .post(app.url("/api/v1/payments/webhook"))
        .insert_header(("content-type", "application/json"))
        .insert_header(("medify-signature", signature));
    app.send(req, Some(body.into_bytes())).await
}

async fn report(app: &TestApp, kind: &str, intent: &str, amount: i64) -> Reply {
    let body = json!({"id": format!("evt_{}", Uuid::now_v7().simple()), "type": kind,
                      "intent_id": intent, "amount_cents": amount});
    report_signed(app, &body, SECRET, 0).await
}

async fn view(app: &TestApp, token: &str, id: Uuid) -> Value {
    let res = app.get_auth(&format!("/api/v1/orders/{id}"), token).await;
    assert_eq!(res.status, 200, "{}", res.text());
    res.json()
}

/// Assign, pick up and deliver through the order actor, as the rider's session would.
async fn deliver(app: &TestApp, s: &Shop, id: Uuid) {
    let orders = &app.state.orders;
    let rider_id = s.rider_id;
    orders
        .apply(id, Command::Assign { rider_id, by: None })
        .await
        .expect("assign");
    orders
        .apply(id, Command::PickUp { rider_id })
        .await
        .expect("pick up");
    let code = view(app, &s.customer, id).await["delivery_code"]
        .as_str()
        .expect("code")
        .to_owned();
    orders
        .apply(id, Command::Deliver { rider_id, code })
        .await
        .expect("deliver");
}

async fn notified(app: &TestApp, token: &str, kind: &str) {
    let token = token.to_owned();
    eventually(&format!("a {kind} notification"), || {
        let token = token.clone();
        async move {
            notification_types(&app.http, &token)
                .await
                .iter()
                .any(|t| t == kind)
        }
    })
    .await;
}

async fn online_payment_dispatches_then_delivers(app: TestApp) {
    let s = shop(&app).await;
    let (id, intent, total) = online_order(&app, &s).await;
    // Nothing is offered before payment: the order is not in the matcher.
    let stats = app.state.riders.matcher().stats().await.expect("stats");
    assert_eq!(stats.waiting_orders, 0);
    let res = report(&app, "payment.succeeded", &intent, total).await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(res.json()["status"], "applied");
    let paid = view(&app, &s.customer, id).await;
    assert_eq!(paid["status"], "dispatching", "{paid}");
    assert_eq!(paid["payment"]["status"], "paid");
    notified(&app, &s.customer, "payment_received").await;
    deliver(&app, &s, id).await;
    let done = view(&app, &s.customer, id).await;
    assert_eq!(
        (&done["status"], &done["payment"]["status"]),
        (&json!("delivered"), &json!("paid"))
    );
}

async fn a_failed_payment_cancels_and_releases_stock(app: TestApp) {
    let s = shop(&app).await;
    let (id, intent, total) = online_order(&app, &s).await;
    assert_eq!(app.stock_of(s.pharmacy, s.plain).await, (10, 2));
    let res = report(&app, "payment.failed", &intent, total).await;
    assert_eq!(res.status, 200, "{}", res.text());
    let failed = view(&app, &s.customer, id).await;
    assert_eq!(failed["status"], "cancelled", "{failed}");
    assert_eq!(failed["cancel_reason"], "payment_failed");
    assert_eq!(failed["payment"]["status"], "failed");
    assert_eq!(app.stock_of(s.pharmacy, s.plain).await, (10, 0));
    notified(&app, &s.customer, "payment_failed").await;
    let types = notification_types(&app.http, &s.customer).await;
    assert!(
        !types.iter().any(|t| t == "order_cancelled"),
        "one notification says it: {types:?}"
    );
}

/// A node that died between claiming a report's id and making its effect left the id
/// claimed: the provider's retry is answered `duplicate` as before, and the effect is made.
async fn a_report_claimed_by_a_node_that_died_takes_effect_on_retry(app: TestApp) {
    let s = shop(&app).await;
    let (id, intent, total) = online_order(&app, &s).await;
    let store = connect_store(&app).await;
    assert!(store
        .claim_payment_event("evt_orphan", "payment.succeeded", id)
        .await
        .expect("claim"));
    let body = json!({"id": "evt_orphan", "type": "payment.succeeded", "intent_id": intent,
                      "amount_cents": total});
    let retry = report_signed(&app, &body, SECRET, 0).await;
    assert_eq!(retry.status, 200, "{}", retry.text());
    assert_eq!(retry.json()["status"], "duplicate");
    let paid = view(&app, &s.customer, id).await;
    assert_eq!(paid["status"], "dispatching", "{paid}");
    assert_eq!(paid["payment"]["status"], "paid", "{paid}");
}

async fn a_repeated_report_has_one_effect(app: TestApp) {
    let s = shop(&app).await;
    let (id, intent, total) = online_order(&app, &s).await;
    let body = json!({"id": "evt_same", "type": "payment.succeeded", "intent_id": intent,
                      "amount_cents": total});
    // Two copies at once, then a third later.
    let answers = join_all([
        report_signed(&app, &body, SECRET, 0),
        report_signed(&app, &body, SECRET, 0),
    ])
    .await;
    let mut statuses: Vec<String> = answers
        .iter()
        .map(|r| {
            assert_eq!(r.status, 200, "{}", r.text());
            r.json()["status"].as_str().unwrap_or("").to_owned()
        })
        .collect();
    statuses.sort();
    assert_eq!(statuses, ["applied", "duplicate"]);
    let again = report_signed(&app, &body, SECRET, 0).await;
    assert_eq!(again.json()["status"], "duplicate");
    notified(&app, &s.customer, "payment_received").await;
    let paid = view(&app, &s.customer, id).await;
    assert_eq!(paid["status"], "dispatching");
    let types = notification_types(&app.http, &s.customer).await;
    assert_eq!(
        types.iter().filter(|t| *t == "payment_received").count(),
        1,
        "{types:?}"
    );
}

async fn forged_stale_and_wrong_reports_have_no_effect(app: TestApp) {
    let s = shop(&app).await;
    let (id, intent, total) = online_order(&app, &s).await;
    let body = json!({"id": "evt_forged", "type": "payment.succeeded", "intent_id": intent,
                      "amount_cents": total});
    report_signed(&app, &body, "another secret entirely", 0)
        .await
        .assert_problem(400, "invalid_signature");
    report_signed(&app, &body, SECRET, -301)
        .await
        .assert_problem(400, "invalid_signature");
    report_signed(&app, &body, SECRET, 301)
        .await
        .assert_problem(400, "invalid_signature");
    let unsigned = app
        .client
        .post(app.url("/api/v1/payments/webhook"))
        .insert_header(("content-type", "application/json"));
    app.send(unsigned, Some(body.to_string().into_bytes()))
        .await
        .assert_problem(400, "invalid_signature");
    // Signed, but for another amount, or an intent nobody has.
    let wrong = json!({"id": "evt_wrong", "type": "payment.succeeded", "intent_id": intent,
                       "amount_cents": total + 1});
    let problem = report_signed(&app, &wrong, SECRET, 0)
        .await
        .assert_problem(422, "validation_failed");
    assert_eq!(problem["errors"][0]["field"], "amount_cents", "{problem}");
    let unknown = json!({"id": "evt_unknown", "type": "payment.succeeded",
                         "intent_id": "pi_nobody", "amount_cents": total});
    report_signed(&app, &unknown, SECRET, 0)
        .await
        .assert_problem(404, "not_found");
    let malformed = "{\"id\": \"evt_x\", \"type\": \"payment.won\"}";
    let t = chrono::Utc::now().timestamp();
    let signed = app
        .client
        .post(app.url("/api/v1/payments/webhook"))
        .insert_header(("content-type", "application/json"))
        .insert_header((
            "medify-signature",
            format!("t={t},v1={}", hmac_hex(SECRET, t, malformed)),
        ));
    app.send(signed, Some(malformed.as_bytes().to_vec()))
        .await
        .assert_problem(422, "validation_failed");
    let untouched = view(&app, &s.customer, id).await;
    assert_eq!(untouched["status"], "awaiting_payment", "{untouched}");
    assert_eq!(untouched["payment"]["status"], "pending");
    // The genuine report still works: none of the refused ones used up its id.
    let res = report_signed(&app, &body, SECRET, 0).await;
    assert_eq!(res.json()["status"], "applied", "{}", res.text());
}

async fn cancelling_a_paid_order_owes_a_refund_until_the_provider_reports_it(app: TestApp) {
    let s = shop(&app).await;
    let (id, intent, total) = online_order(&app, &s).await;
    assert_eq!(
        report(&app, "payment.succeeded", &intent, total)
            .await
            .status,
        200
    );
    let res = app
        .post_auth(
            &format!("/api/v1/orders/{id}/cancel"),
            &s.customer,
            &json!({}),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.text());
    let cancelled = res.json();
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["cancel_reason"], "customer");
    assert_eq!(cancelled["payment"]["status"], "refund_pending");
    assert_eq!(app.stock_of(s.pharmacy, s.plain).await, (10, 0));
    let res = report(&app, "refund.succeeded", &intent, total).await;
    assert_eq!(res.status, 200, "{}", res.text());
    let refunded = view(&app, &s.customer, id).await;
    assert_eq!(refunded["payment"]["status"], "refunded", "{refunded}");
    assert_eq!(refunded["status"], "cancelled");
    notified(&app, &s.customer, "refund_issued").await;
    // An admin's cancel says so.
    let (other, _, _) = online_order(&app, &s).await;
    let res = app
        .post_auth(
            &format!("/api/v1/orders/{other}/cancel"),
            &s.admin,
            &json!({}),
        )
        .await;
    assert_eq!(res.json()["cancel_reason"], "admin", "{}", res.text());
}

async fn cash_is_paid_on_delivery(app: TestApp) {
    let s = shop(&app).await;
    let res = order(&app, &s, &[(s.plain, 1)], json!({})).await;
    assert_eq!(res.status, 201, "{}", res.text());
    let placed = res.json();
    assert_eq!(placed["status"], "dispatching");
    assert_eq!(
        placed["payment"],
        json!({"method": "cod", "status": "pending"})
    );
    assert_eq!(placed["cancel_reason"], Value::Null);
    assert_eq!(placed["prescription_id"], Value::Null);
    let id = uuid(&placed["id"]);
    deliver(&app, &s, id).await;
    let done = view(&app, &s.customer, id).await;
    assert_eq!(done["payment"]["status"], "paid", "{done}");
}

async fn money_after_a_cancel_is_owed_back(app: TestApp) {
    let s = shop(&app).await;
    let (id, intent, total) = online_order(&app, &s).await;
    let res = app
        .post_auth(
            &format!("/api/v1/orders/{id}/cancel"),
            &s.customer,
            &json!({}),
        )
        .await;
    assert_eq!(res.json()["payment"]["status"], "pending", "{}", res.text());
    // The customer paid at the provider just as they cancelled.
    assert_eq!(
        report(&app, "payment.succeeded", &intent, total)
            .await
            .status,
        200
    );
    let owed = view(&app, &s.customer, id).await;
    assert_eq!(owed["status"], "cancelled");
    assert_eq!(owed["payment"]["status"], "refund_pending", "{owed}");
}

async fn prescription_orders_need_a_prescription_of_the_customers(app: TestApp) {
    let s = shop(&app).await;
    let problem = order(&app, &s, &[(s.plain, 1), (s.rx, 1)], json!({}))
        .await
        .assert_problem(422, "prescription_required");
    assert_eq!(
        problem["errors"],
        json!([{"field": "items[1]", "message": "sold only against a prescription"}]),
        "{problem}"
    );
    // Someone else's prescription is no prescription.
    let (stranger, _) = app.user_token("customer").await;
    let theirs = prescription_of(&app, uuid(&stranger["id"])).await;
    let problem = order(&app, &s, &[(s.rx, 1)], json!({"prescription_id": theirs}))
        .await
        .assert_problem(422, "validation_failed");
    assert_eq!(problem["errors"][0]["field"], "prescription_id");
    assert_eq!(app.stock_of(s.pharmacy, s.rx).await, (10, 0));
}

/// An rx order placed with the customer's prescription; its id.
async fn rx_order(app: &TestApp, s: &Shop, extra: Value) -> Uuid {
    let prescription = prescription_of(app, s.customer_id).await;
    let mut fields = json!({"prescription_id": prescription});
    if let (Some(f), Some(extra)) = (fields.as_object_mut(), extra.as_object()) {
        f.extend(extra.clone());
    }
    let res = order(app, s, &[(s.rx, 2)], fields).await;
    assert_eq!(res.status, 201, "{}", res.text());
    let placed = res.json();
    assert_eq!(placed["status"], "awaiting_prescription", "{placed}");
    assert_eq!(placed["prescription_id"], prescription.to_string());
    uuid(&placed["id"])
}

async fn review(app: &TestApp, token: &str, id: Uuid, body: Value) -> Reply {
    app.post_auth(&format!("/api/v1/orders/{id}/prescription"), token, &body)
        .await
}

async fn an_approved_prescription_goes_to_dispatch_and_delivery(app: TestApp) {
    let s = shop(&app).await;
    let id = rx_order(&app, &s, json!({})).await;
    let stats = app.state.riders.matcher().stats().await.expect("stats");
    assert_eq!(stats.waiting_orders, 0, "offered before approval");
    // The pharmacist sees it among their pharmacy's orders.
    let page = app.get_auth("/api/v1/orders", &s.pharmacist).await.json();
    assert!(
        page["items"]
            .as_array()
            .expect("items")
            .iter()
            .any(|o| o["id"] == id.to_string()),
        "{page}"
    );
    let res = review(&app, &s.pharmacist, id, json!({"approve": true})).await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(res.json()["status"], "dispatching");
    notified(&app, &s.customer, "prescription_approved").await;
    review(&app, &s.pharmacist, id, json!({"approve": true}))
        .await
        .assert_problem(409, "conflict");
    deliver(&app, &s, id).await;
    assert_eq!(view(&app, &s.customer, id).await["status"], "delivered");
}

async fn a_rejected_prescription_cancels_and_releases_stock(app: TestApp) {
    let s = shop(&app).await;
    let id = rx_order(&app, &s, json!({})).await;
    assert_eq!(app.stock_of(s.pharmacy, s.rx).await, (10, 2));
    review(&app, &s.pharmacist, id, json!({"approve": false}))
        .await
        .assert_problem(422, "validation_failed");
    review(
        &app,
        &s.pharmacist,
        id,
        json!({"approve": false, "reason": "   "}),
    )
    .await
    .assert_problem(422, "validation_failed");
    let res = review(
        &app,
        &s.pharmacist,
        id,
        json!({"approve": false, "reason": "The dose is not legible"}),
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text());
    let rejected = res.json();
    assert_eq!(rejected["status"], "cancelled");
    assert_eq!(rejected["cancel_reason"], "prescription_rejected");
    assert_eq!(app.stock_of(s.pharmacy, s.rx).await, (10, 0));
    notified(&app, &s.customer, "prescription_rejected").await;
    // While waiting for review, the customer may cancel.
    let other = rx_order(&app, &s, json!({})).await;
    let res = app
        .post_auth(
            &format!("/api/v1/orders/{other}/cancel"),
            &s.customer,
            &json!({}),
        )
        .await;
    assert_eq!(res.json()["cancel_reason"], "customer", "{}", res.text());
}

async fn only_the_pharmacys_staff_review(app: TestApp) {
    let s = shop(&app).await;
    let id = rx_order(&app, &s, json!({})).await;
    let elsewhere = app
        .create_pharmacy(&s.admin, "Elsewhere", CENTER.0 - 0.01, CENTER.1)
        .await;
    let other_staff = staff_of(&app, &s.admin, elsewhere).await;
    let (_, rider) = app.user_token("rider").await;
    let approve = json!({"approve": true});
    review(&app, &other_staff, id, approve.clone())
        .await
        .assert_problem(404, "not_found");
    review(&app, &rider, id, approve.clone())
        .await
        .assert_problem(404, "not_found");
    review(&app, &s.customer, id, approve.clone())
        .await
        .assert_problem(403, "forbidden");
    let anonymous = app
        .client
        .post(app.url(&format!("/api/v1/orders/{id}/prescription")))
        .insert_header(("content-type", "application/json"));
    app.send(anonymous, Some(approve.to_string().into_bytes()))
        .await
        .assert_problem(401, "unauthorized");
    assert_eq!(
        view(&app, &s.customer, id).await["status"],
        "awaiting_prescription"
    );
    // An admin may.
    let res = review(&app, &s.admin, id, approve).await;
    assert_eq!(res.json()["status"], "dispatching", "{}", res.text());
}

async fn review_then_payment_then_dispatch(app: TestApp) {
    let s = shop(&app).await;
    let id = rx_order(&app, &s, json!({"payment_method": "online"})).await;
    let res = review(&app, &s.pharmacist, id, json!({"approve": true})).await;
    let approved = res.json();
    assert_eq!(approved["status"], "awaiting_payment", "{approved}");
    let intent = approved["payment"]["intent_id"]
        .as_str()
        .expect("intent")
        .to_owned();
    let total = approved["total_cents"].as_i64().expect("total");
    assert_eq!(
        report(&app, "payment.succeeded", &intent, total)
            .await
            .status,
        200
    );
    assert_eq!(view(&app, &s.customer, id).await["status"], "dispatching");
}

async fn an_unpaid_order_fails_at_the_payment_timeout(app: TestApp) {
    let s = shop(&app).await;
    let (id, _, _) = online_order(&app, &s).await;
    let token = s.customer.clone();
    eventually("the payment timeout fails the order", || {
        let token = token.clone();
        let app = &app;
        async move { view(app, &token, id).await["status"] == "failed" }
    })
    .await;
    let failed = view(&app, &s.customer, id).await;
    assert_eq!(failed["payment"]["status"], "failed", "{failed}");
    stock_back(&app, s.pharmacy, s.plain).await;
    notified(&app, &s.customer, "order_failed").await;
    // Events reach the notifier in order: once a later order's cancellation is told, the
    // timeout's `payment.failed` has been handled too.
    let later = order(&app, &s, &[(s.plain, 1)], json!({})).await.json();
    let res = app
        .post_auth(
            &format!(
                "/api/v1/orders/{}/cancel",
                later["id"].as_str().expect("id")
            ),
            &s.customer,
            &json!({}),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.text());
    notified(&app, &s.customer, "order_cancelled").await;
    let types = notification_types(&app.http, &s.customer).await;
    assert!(
        !types.iter().any(|t| t == "payment_failed"),
        "one notification says it: {types:?}"
    );
}

async fn an_unreviewed_order_fails_at_the_review_timeout(app: TestApp) {
    let s = shop(&app).await;
    let id = rx_order(&app, &s, json!({})).await;
    let token = s.customer.clone();
    eventually("the review timeout fails the order", || {
        let token = token.clone();
        let app = &app;
        async move { view(app, &token, id).await["status"] == "failed" }
    })
    .await;
    stock_back(&app, s.pharmacy, s.rx).await;
    notified(&app, &s.customer, "order_failed").await;
}

/// Waits until all ten units are free again. A timer's failure is journaled (and seen by
/// clients) a moment before the order actor releases the stock, unlike a request's, whose
/// answer comes after the release.
async fn stock_back(app: &TestApp, pharmacy: Uuid, medicine: Uuid) {
    eventually("the stock released", || async move {
        app.stock_of(pharmacy, medicine).await == (10, 0)
    })
    .await;
}

/// With no webhook secret, nothing could confirm a payment: online orders are refused.
#[actix_web::test]
async fn online_payment_is_refused_where_it_is_not_configured() {
    let app = sqlite_app(&[]).await;
    let s = shop(&app).await;
    let problem = order(
        &app,
        &s,
        &[(s.plain, 1)],
        json!({"payment_method": "online"}),
    )
    .await
    .assert_problem(422, "validation_failed");
    assert_eq!(problem["errors"][0]["field"], "payment_method", "{problem}");
    order(
        &app,
        &s,
        &[(s.plain, 1)],
        json!({"payment_method": "bitcoin"}),
    )
    .await
    .assert_problem(422, "validation_failed");
    assert_eq!(app.stock_of(s.pharmacy, s.plain).await, (10, 0));
}
