//! Saved addresses over HTTP (`/api/v1/me/addresses`) and orders placed with `address_id`,
//! on both backends: the CRUD, the one default, the cap (also under concurrent requests),
//! other people's addresses, the order's copy, and bad input answered as problems.

use futures_util::future::join_all;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{Options, Reply, TestApp};
use crate::{backend_tests, backend_tests_with};

backend_tests!(
    crud_round_trip,
    the_first_address_is_the_default_and_a_new_default_clears_the_old,
    deleting_the_default_promotes_the_newest,
    the_default_cannot_be_switched_off,
    the_twenty_first_address_is_limit_reached,
    other_peoples_addresses_are_not_found,
    an_order_keeps_a_copy_of_the_address,
    an_order_needs_exactly_one_destination,
    bad_input_is_a_documented_problem,
    only_customers_have_addresses,
);

backend_tests_with!(
    small_cap,
    small_cap,
    concurrent_saves_respect_the_cap_and_the_default,
);

/// A cap of 3, to race many saves against it.
fn small_cap() -> Options {
    Options {
        env: vec![("MAX_ADDRESSES_PER_USER", "3".to_owned())],
        ..Options::default()
    }
}

const ADDRESSES: &str = "/api/v1/me/addresses";
const CENTER: (f64, f64) = (12.9716, 77.5946);

fn home() -> Value {
    json!({"label": "Home", "lat": CENTER.0, "lng": CENTER.1, "address": "14 Jyoti Nivas Rd"})
}

fn id_of(v: &Value) -> Uuid {
    Uuid::parse_str(v["id"].as_str().expect("an id")).expect("uuid")
}

fn path(id: Uuid) -> String {
    format!("{ADDRESSES}/{id}")
}

async fn save(app: &TestApp, token: &str, body: &Value) -> Reply {
    app.post_auth(ADDRESSES, token, body).await
}

/// Saves `label` near the centre; returns the address.
async fn saved(app: &TestApp, token: &str, label: &str) -> Value {
    let res = save(
        app,
        token,
        &json!({"label": label, "lat": CENTER.0, "lng": CENTER.1, "address": format!("{label} street")}),
    )
    .await;
    assert_eq!(res.status, 201, "{}", res.text());
    res.json()
}

async fn patch(app: &TestApp, token: &str, id: Uuid, body: &Value) -> Reply {
    app.request("PATCH", &path(id), Some(token), Some(body))
        .await
}

async fn delete(app: &TestApp, token: &str, id: Uuid) -> Reply {
    app.request("DELETE", &path(id), Some(token), None).await
}

/// The caller's whole list (one page of 100).
async fn list(app: &TestApp, token: &str) -> Vec<Value> {
    let res = app
        .get_auth(&format!("{ADDRESSES}?per_page=100"), token)
        .await;
    assert_eq!(res.status, 200, "{}", res.text());
    let page = res.json();
    let items = page["items"].as_array().expect("items").clone();
    assert_eq!(page["total"], items.len(), "{page}");
    items
}

/// The labels in list order, and the label of the one default (asserting there is exactly
/// one while the list is not empty).
async fn labels_and_default(app: &TestApp, token: &str) -> (Vec<String>, Option<String>) {
    let items = list(app, token).await;
    let labels = items
        .iter()
        .map(|a| a["label"].as_str().expect("label").to_owned())
        .collect();
    let defaults: Vec<String> = items
        .iter()
        .filter(|a| a["is_default"] == true)
        .map(|a| a["label"].as_str().expect("label").to_owned())
        .collect();
    let expected = usize::from(!items.is_empty());
    assert_eq!(defaults.len(), expected, "defaults: {items:?}");
    (labels, defaults.into_iter().next())
}

/// The fields a 422 names.
fn fields(res: &Reply) -> Vec<String> {
    res.assert_problem(422, "validation_failed")["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e["field"].as_str().unwrap_or("").to_owned())
        .collect()
}

async fn crud_round_trip(app: TestApp) {
    let (_, token) = app.user_token("customer").await;
    assert!(list(&app, &token).await.is_empty());

    let res = save(
        &app,
        &token,
        &json!({"label": "  Home ", "lat": 12.5, "lng": -77.25, "address": " 1 MG Road  "}),
    )
    .await;
    assert_eq!(res.status, 201, "{}", res.text());
    let created = res.json();
    let mut keys: Vec<&str> = created
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "address",
            "created_at",
            "id",
            "is_default",
            "label",
            "lat",
            "lng"
        ]
    );
    assert_eq!(created["label"], "Home");
    assert_eq!(created["address"], "1 MG Road");
    assert_eq!(
        (created["lat"].as_f64(), created["lng"].as_f64()),
        (Some(12.5), Some(-77.25))
    );
    let id = id_of(&created);
    assert_eq!(list(&app, &token).await, vec![created.clone()]);

    // A partial patch changes what it names and nothing else.
    let res = patch(&app, &token, id, &json!({"label": "Flat", "lng": 77.75})).await;
    assert_eq!(res.status, 200, "{}", res.text());
    let changed = res.json();
    assert_eq!(changed["label"], "Flat");
    assert_eq!(changed["lng"].as_f64(), Some(77.75));
    assert_eq!(changed["lat"].as_f64(), Some(12.5));
    assert_eq!(changed["address"], "1 MG Road");
    assert_eq!(changed["created_at"], created["created_at"]);
    assert_eq!(list(&app, &token).await, vec![changed]);

    assert_eq!(delete(&app, &token, id).await.status, 204);
    assert!(list(&app, &token).await.is_empty());
    delete(&app, &token, id)
        .await
        .assert_problem(404, "not_found");
    patch(&app, &token, id, &json!({"label": "Gone"}))
        .await
        .assert_problem(404, "not_found");
}

async fn the_first_address_is_the_default_and_a_new_default_clears_the_old(app: TestApp) {
    let (_, token) = app.user_token("customer").await;
    // The first is the default even when it says otherwise.
    let res = save(
        &app,
        &token,
        &json!({"label": "A", "lat": 1.0, "lng": 2.0, "address": "a", "is_default": false}),
    )
    .await;
    assert_eq!(res.status, 201, "{}", res.text());
    assert_eq!(res.json()["is_default"], true);
    let b = saved(&app, &token, "B").await;
    assert_eq!(b["is_default"], false);
    assert_eq!(
        labels_and_default(&app, &token).await,
        (vec!["A".into(), "B".into()], Some("A".into()))
    );

    // A new address asking to be the default takes over.
    let res = save(
        &app,
        &token,
        &json!({"label": "C", "lat": 1.0, "lng": 2.0, "address": "c", "is_default": true}),
    )
    .await;
    assert_eq!(res.json()["is_default"], true, "{}", res.text());
    assert_eq!(
        labels_and_default(&app, &token).await,
        (vec!["C".into(), "B".into(), "A".into()], Some("C".into()))
    );

    // So does an existing one patched to be it.
    let res = patch(&app, &token, id_of(&b), &json!({"is_default": true})).await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(res.json()["is_default"], true);
    assert_eq!(
        labels_and_default(&app, &token).await,
        (vec!["B".into(), "C".into(), "A".into()], Some("B".into()))
    );
    // Making the default the default again changes nothing.
    let res = patch(&app, &token, id_of(&b), &json!({"is_default": true})).await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(labels_and_default(&app, &token).await.1, Some("B".into()));
}

async fn deleting_the_default_promotes_the_newest(app: TestApp) {
    let (_, token) = app.user_token("customer").await;
    let a = saved(&app, &token, "A").await;
    let b = saved(&app, &token, "B").await;
    let c = saved(&app, &token, "C").await;
    assert_eq!(a["is_default"], true);

    assert_eq!(delete(&app, &token, id_of(&a)).await.status, 204);
    assert_eq!(
        labels_and_default(&app, &token).await,
        (vec!["C".into(), "B".into()], Some("C".into()))
    );
    // Deleting one that is not the default leaves the default alone.
    assert_eq!(delete(&app, &token, id_of(&b)).await.status, 204);
    assert_eq!(
        labels_and_default(&app, &token).await,
        (vec!["C".into()], Some("C".into()))
    );
    assert_eq!(delete(&app, &token, id_of(&c)).await.status, 204);
    assert_eq!(labels_and_default(&app, &token).await, (vec![], None));
    // With none left, the next one is the first again.
    assert_eq!(saved(&app, &token, "D").await["is_default"], true);
}

async fn the_default_cannot_be_switched_off(app: TestApp) {
    let (_, token) = app.user_token("customer").await;
    let a = saved(&app, &token, "A").await;
    // The only address: refused, and nothing of the patch is applied.
    let res = patch(
        &app,
        &token,
        id_of(&a),
        &json!({"label": "Renamed", "is_default": false}),
    )
    .await;
    res.assert_problem(409, "conflict");
    assert_eq!(list(&app, &token).await, vec![a.clone()]);
    // With others too.
    let b = saved(&app, &token, "B").await;
    patch(&app, &token, id_of(&a), &json!({"is_default": false}))
        .await
        .assert_problem(409, "conflict");
    // On an address that is not the default it is already so.
    let res = patch(
        &app,
        &token,
        id_of(&b),
        &json!({"label": "B2", "is_default": false}),
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(res.json()["is_default"], false);
    assert_eq!(
        labels_and_default(&app, &token).await,
        (vec!["A".into(), "B2".into()], Some("A".into()))
    );
}

async fn the_twenty_first_address_is_limit_reached(app: TestApp) {
    let (_, token) = app.user_token("customer").await;
    let mut first = None;
    for i in 0..20 {
        let a = saved(&app, &token, &format!("A{i}")).await;
        first.get_or_insert(a);
    }
    let res = save(&app, &token, &home()).await;
    let problem = res.assert_problem(409, "limit_reached");
    assert!(
        problem["detail"].as_str().unwrap_or("").contains("20"),
        "{problem}"
    );
    assert_eq!(list(&app, &token).await.len(), 20);
    // Another customer has their own 20.
    let (_, other) = app.user_token("customer").await;
    assert_eq!(save(&app, &other, &home()).await.status, 201);
    // One deleted makes room for one.
    let first = first.expect("saved");
    assert_eq!(delete(&app, &token, id_of(&first)).await.status, 204);
    assert_eq!(save(&app, &token, &home()).await.status, 201);
    save(&app, &token, &home())
        .await
        .assert_problem(409, "limit_reached");
}

/// Ten saves at once against a cap of 3, from an empty list: three are saved, the rest are
/// `limit_reached`, and exactly one of the three is the default.
async fn concurrent_saves_respect_the_cap_and_the_default(app: TestApp) {
    let (_, token) = app.user_token("customer").await;
    let bodies: Vec<Value> = (0..10)
        .map(|i| json!({"label": format!("L{i}"), "lat": 1.0, "lng": 2.0, "address": "x"}))
        .collect();
    let answers = join_all(bodies.iter().map(|b| save(&app, &token, b))).await;
    let mut created = 0;
    for res in &answers {
        match res.status {
            201 => created += 1,
            _ => {
                res.assert_problem(409, "limit_reached");
            }
        }
    }
    assert_eq!(created, 3, "{answers:?}");
    let (labels, default) = labels_and_default(&app, &token).await;
    assert_eq!(labels.len(), 3);
    assert!(default.is_some());
}

async fn other_peoples_addresses_are_not_found(app: TestApp) {
    let (_, owner) = app.user_token("customer").await;
    let (_, other) = app.user_token("customer").await;
    let a = saved(&app, &owner, "Mine").await;
    let id = id_of(&a);

    patch(
        &app,
        &other,
        id,
        &json!({"label": "Stolen", "is_default": true}),
    )
    .await
    .assert_problem(404, "not_found");
    delete(&app, &other, id)
        .await
        .assert_problem(404, "not_found");
    assert!(list(&app, &other).await.is_empty());
    // The other customer's own default is not disturbed by the owner's either.
    let theirs = saved(&app, &other, "Theirs").await;
    assert_eq!(theirs["is_default"], true);
    assert_eq!(list(&app, &owner).await, vec![a]);

    // Ordering to it: the same answer as an address that does not exist.
    let admin = app.admin_token().await;
    let (_, medicine) = app
        .stocked_pharmacy(&admin, "Corner", CENTER.0 + 0.002, CENTER.1, 5)
        .await;
    for address_id in [id, Uuid::now_v7()] {
        let res = app
            .post_auth(
                "/api/v1/orders",
                &other,
                &json!({"items": [{"medicine_id": medicine, "qty": 1}], "address_id": address_id}),
            )
            .await;
        assert_eq!(fields(&res), ["address_id"], "{}", res.text());
    }
}

async fn an_order_keeps_a_copy_of_the_address(app: TestApp) {
    let admin = app.admin_token().await;
    let (pharmacy, medicine) = app
        .stocked_pharmacy(&admin, "Corner", CENTER.0 + 0.002, CENTER.1, 5)
        .await;
    let (_, token) = app.user_token("customer").await;
    let a = saved(&app, &token, "Home").await;
    let body = json!({"items": [{"medicine_id": medicine, "qty": 2}], "address_id": a["id"]});
    let place = |key: &'static str| {
        let body = body.clone();
        let token = token.clone();
        let app = &app;
        async move {
            let req = app
                .client
                .post(app.url("/api/v1/orders"))
                .insert_header(("authorization", format!("Bearer {token}")))
                .insert_header(("idempotency-key", key));
            let mut res = req.send_json(&body).await.expect("send");
            let status = res.status().as_u16();
            let json: Value = res.json().await.expect("json");
            (status, json)
        }
    };
    let (status, order) = place("addr-order-1").await;
    assert_eq!(status, 201, "{order}");
    let expected = json!({"lat": CENTER.0, "lng": CENTER.1, "address": "Home street"});
    assert_eq!(order["delivery"], expected);
    assert_eq!(order["pharmacy"]["id"], pharmacy.to_string());
    assert_eq!(app.stock_of(pharmacy, medicine).await, (5, 2));
    // The same key and body is the same order.
    let (status, again) = place("addr-order-1").await;
    assert_eq!((status, &again["id"]), (200, &order["id"]));

    // Moving and renaming the address, then deleting it, leaves the order as placed.
    let order_path = format!("/api/v1/orders/{}", order["id"].as_str().expect("id"));
    let res = patch(
        &app,
        &token,
        id_of(&a),
        &json!({"lat": -33.9, "lng": 18.4, "address": "Elsewhere"}),
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text());
    let seen = app.get_auth(&order_path, &token).await.json();
    assert_eq!(seen["delivery"], expected);
    assert_eq!(delete(&app, &token, id_of(&a)).await.status, 204);
    let seen = app.get_auth(&order_path, &token).await.json();
    assert_eq!(seen["delivery"], expected);
}

async fn an_order_needs_exactly_one_destination(app: TestApp) {
    let admin = app.admin_token().await;
    let (pharmacy, medicine) = app
        .stocked_pharmacy(&admin, "Corner", CENTER.0 + 0.002, CENTER.1, 5)
        .await;
    let (_, token) = app.user_token("customer").await;
    let a = saved(&app, &token, "Home").await;
    let items = json!([{"medicine_id": medicine, "qty": 1}]);
    let delivery = json!({"lat": CENTER.0, "lng": CENTER.1, "address": "Typed"});
    let cases = [
        (
            json!({"items": items, "delivery": delivery, "address_id": a["id"]}),
            "address_id",
        ),
        (json!({"items": items}), "delivery"),
        (
            json!({"items": items, "delivery": null, "address_id": null}),
            "delivery",
        ),
        (
            json!({"items": items, "address_id": "not-a-uuid"}),
            "address_id",
        ),
        (json!({"items": items, "address_id": 42}), "address_id"),
    ];
    for (body, field) in cases {
        let res = app.post_auth("/api/v1/orders", &token, &body).await;
        assert_eq!(fields(&res), [field], "{body}: {}", res.text());
    }
    // Nothing was reserved by the refusals; a typed delivery still works alone.
    assert_eq!(app.stock_of(pharmacy, medicine).await, (5, 0));
    let res = app
        .post_auth(
            "/api/v1/orders",
            &token,
            &json!({"items": items, "delivery": delivery}),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.text());
    assert_eq!(res.json()["delivery"]["address"], "Typed");
}

async fn bad_input_is_a_documented_problem(app: TestApp) {
    let (_, token) = app.user_token("customer").await;
    let cases = [
        (
            json!({"label": "Home", "lat": 90.5, "lng": 0, "address": "x"}),
            vec!["lat"],
        ),
        (
            json!({"label": "Home", "lat": 0, "lng": -180.01, "address": "x"}),
            vec!["lng"],
        ),
        (
            json!({"label": "Home", "lat": "NaN", "lng": 0, "address": "x"}),
            vec!["lat"],
        ),
        (
            json!({"label": "   ", "lat": 0, "lng": 0, "address": "x"}),
            vec!["label"],
        ),
        (
            json!({"label": "a".repeat(51), "lat": 0, "lng": 0, "address": "x"}),
            vec!["label"],
        ),
        (
            json!({"label": "Home", "lat": 0, "lng": 0, "address": ""}),
            vec!["address"],
        ),
        (
            json!({"label": "Home", "lat": 0, "lng": 0, "address": "x".repeat(501)}),
            vec!["address"],
        ),
        (
            json!({"label": 5, "lat": 0, "lng": 0, "address": "x"}),
            vec!["label"],
        ),
        (
            json!({"label": "Home", "lat": 0, "lng": 0, "address": "x", "is_default": "yes"}),
            vec!["is_default"],
        ),
        (json!({"lat": 100}), vec!["label", "lat", "lng", "address"]),
        (json!(["Home", 0, 0, "x"]), vec!["body"]),
    ];
    for (body, expected) in &cases {
        let res = save(&app, &token, body).await;
        assert_eq!(&fields(&res), expected, "{body}: {}", res.text());
    }
    let a = saved(&app, &token, "Home").await;
    for (body, expected) in [
        (json!({"lat": -91}), vec!["lat"]),
        (json!({"label": "", "lng": 1e300}), vec!["label", "lng"]),
        (json!({"address": ["x"]}), vec!["address"]),
        (json!({"is_default": 1}), vec!["is_default"]),
    ] {
        let res = patch(&app, &token, id_of(&a), &body).await;
        assert_eq!(fields(&res), expected, "{body}: {}", res.text());
    }
    // Not JSON, not a number JSON can carry, not JSON at all.
    for (method, target) in [("POST", ADDRESSES.to_owned()), ("PATCH", path(id_of(&a)))] {
        for raw in [
            &b"{\"label\": \"Home\""[..],
            b"{\"lat\": NaN}",
            b"{\"lat\": 1e999}",
        ] {
            let res = app
                .client
                .request(
                    awc::http::Method::from_bytes(method.as_bytes()).expect("method"),
                    app.url(&target),
                )
                .insert_header(("authorization", format!("Bearer {token}")))
                .insert_header(("content-type", "application/json"))
                .send_body(raw.to_vec())
                .await
                .expect("send")
                .status()
                .as_u16();
            assert_eq!(res, 400, "{method} {}", String::from_utf8_lossy(raw));
        }
    }
    // Not a UUID names nothing; a bad page is named.
    let res = app
        .request(
            "PATCH",
            &format!("{ADDRESSES}/home"),
            Some(&token),
            Some(&json!({})),
        )
        .await;
    res.assert_problem(404, "not_found");
    let res = app
        .get_auth(&format!("{ADDRESSES}?per_page=0"), &token)
        .await;
    assert_eq!(fields(&res), ["per_page"]);
    // The address is as it was saved.
    assert_eq!(list(&app, &token).await, vec![a]);
}

async fn only_customers_have_addresses(app: TestApp) {
    let (_, customer) = app.user_token("customer").await;
    let a = saved(&app, &customer, "Home").await;
    let (_, rider) = app.user_token("rider").await;
    let admin = app.admin_token().await;
    for token in [rider.as_str(), admin.as_str()] {
        app.get_auth(ADDRESSES, token)
            .await
            .assert_problem(403, "forbidden");
        save(&app, token, &home())
            .await
            .assert_problem(403, "forbidden");
        patch(&app, token, id_of(&a), &json!({"label": "X"}))
            .await
            .assert_problem(403, "forbidden");
        delete(&app, token, id_of(&a))
            .await
            .assert_problem(403, "forbidden");
    }
    // No token at all.
    for (method, target) in [("GET", ADDRESSES.to_owned()), ("DELETE", path(id_of(&a)))] {
        app.request(method, &target, None, None)
            .await
            .assert_problem(401, "unauthorized");
    }
    assert_eq!(list(&app, &customer).await, vec![a]);
}
