//! What the admin and pharmacy consoles read, over real HTTP: the status filter of
//! `GET /orders`, an order's timeline, the dispatch switch's state, free riders, stock rows
//! with names, ETags on the polled lists, and the two pages with their policy. (The pages
//! themselves are driven in Chromium by `tests/browser/`.)

use serde_json::{json, Value};

use crate::backend_tests;
use crate::helpers::TestApp;
use crate::riders::{set_dispatch, RiderWs};

backend_tests!(
    orders_filter_by_status_and_show_their_timeline,
    polled_lists_answer_304_while_unchanged,
    dispatch_state_and_free_riders_are_readable,
    stock_rows_name_their_medicine,
);

const AT: (f64, f64) = (12.9716, 77.5946);

fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|o| o["id"].as_str().expect("id").to_owned())
        .collect()
}

async fn two_orders(app: &TestApp) -> (String, String, String, String) {
    let admin = app.admin_token().await;
    set_dispatch(app, &admin, true).await;
    let (_, medicine) = app.stocked_pharmacy(&admin, "Filter", AT.0, AT.1, 10).await;
    let (_, customer) = app.user_token("customer").await;
    let mut placed = Vec::new();
    for _ in 0..2 {
        let res = app
            .place_order(&customer, &[(medicine, 1)], AT.0 + 0.001, AT.1)
            .await;
        assert_eq!(res.status, 201, "{}", res.text());
        placed.push(res.json()["id"].as_str().expect("id").to_owned());
    }
    (admin, customer, placed.remove(0), placed.remove(0))
}

async fn orders_filter_by_status_and_show_their_timeline(app: TestApp) {
    let (admin, customer, kept, cancelled) = two_orders(&app).await;
    let res = app
        .post_auth(
            &format!("/api/v1/orders/{cancelled}/cancel"),
            &customer,
            &json!({}),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.text());

    let only_cancelled = app
        .get_auth("/api/v1/orders?status=cancelled&per_page=100", &customer)
        .await;
    assert_eq!(only_cancelled.status, 200, "{}", only_cancelled.text());
    assert_eq!(ids(&only_cancelled.json()), vec![cancelled.clone()]);
    assert_eq!(only_cancelled.json()["total"], 1);

    // Several statuses, spaces and repeats allowed; the admin sees the kept one as open.
    let open = app
        .get_auth(
            "/api/v1/orders?status=dispatching,%20confirmed,dispatching&per_page=100",
            &admin,
        )
        .await
        .json();
    assert!(ids(&open).contains(&kept), "{open}");
    assert!(!ids(&open).contains(&cancelled), "{open}");
    assert!(open["items"]
        .as_array()
        .expect("items")
        .iter()
        .all(|o| o["status"] == "dispatching" || o["status"] == "confirmed"));

    let body = app
        .get_auth("/api/v1/orders?status=shipped", &customer)
        .await
        .assert_problem(422, "validation_failed");
    assert_eq!(body["errors"][0]["field"], "status", "{body}");
    // An empty name is not "every status" (that is `status` left out): the schema's enum
    // has no empty value, so a generated client never sends one.
    for empty in ["status=", "status=cancelled,"] {
        let body = app
            .get_auth(&format!("/api/v1/orders?{empty}"), &customer)
            .await
            .assert_problem(422, "validation_failed");
        assert_eq!(body["errors"][0]["field"], "status", "{body}");
    }

    // The timeline: created, then cancelled, in order, for whoever sees the order.
    let timeline = app
        .get_auth(&format!("/api/v1/orders/{cancelled}/timeline"), &customer)
        .await;
    assert_eq!(timeline.status, 200, "{}", timeline.text());
    let steps = timeline.json();
    let steps = steps.as_array().expect("steps");
    assert_eq!(steps.first().map(|s| s["seq"].clone()), Some(json!(1)));
    assert_eq!(
        steps.last().map(|s| s["status"].clone()),
        Some(json!("cancelled"))
    );
    assert!(steps
        .windows(2)
        .all(|w| w[0]["seq"].as_i64() < w[1]["seq"].as_i64()));
    assert!(steps.iter().all(|s| s["at"].is_string()));
    let (_, stranger) = app.user_token("customer").await;
    app.get_auth(&format!("/api/v1/orders/{cancelled}/timeline"), &stranger)
        .await
        .assert_problem(404, "not_found");
    set_dispatch(&app, &admin, false).await;
}

async fn polled_lists_answer_304_while_unchanged(app: TestApp) {
    let (admin, customer, _, _) = two_orders(&app).await;
    let first = app.get_auth("/api/v1/orders", &customer).await;
    assert_eq!(first.status, 200);
    let tag = first.header("etag").expect("an ETag on a polled list");
    assert_eq!(
        first.header("cache-control").as_deref(),
        Some("private, no-cache")
    );

    let again = app
        .client
        .get(app.url("/api/v1/orders"))
        .insert_header(("authorization", format!("Bearer {customer}")))
        .insert_header(("if-none-match", tag.clone()));
    let again = app.send(again, None).await;
    assert_eq!(again.status, 304, "{}", again.text());
    assert!(again.body.is_empty());
    assert_eq!(again.header("etag"), Some(tag.clone()));

    // A change gives a new tag and the whole list.
    let (_, medicine) = app.stocked_pharmacy(&admin, "Tag", AT.0, AT.1, 5).await;
    assert_eq!(
        app.place_order(&customer, &[(medicine, 1)], AT.0, AT.1)
            .await
            .status,
        201
    );
    let changed = app
        .client
        .get(app.url("/api/v1/orders"))
        .insert_header(("authorization", format!("Bearer {customer}")))
        .insert_header(("if-none-match", tag.clone()));
    let changed = app.send(changed, None).await;
    assert_eq!(changed.status, 200);
    assert_ne!(changed.header("etag"), Some(tag));
    assert_eq!(changed.json()["total"], 3);

    // The answer depends on the token: caches must key on it.
    assert_eq!(changed.header("vary").as_deref(), Some("Authorization"));
    // Routes that are not polled are not tagged.
    assert_eq!(
        app.get_auth("/api/v1/me", &customer).await.header("etag"),
        None
    );

    // The document says which routes may answer 304.
    let doc = app.get("/api/v1/openapi.json").await.json();
    for route in medify::etag::POLLED_ROUTES {
        let get = &doc["paths"][route]["get"];
        assert!(get["responses"]["304"].is_object(), "{route}: {get}");
        assert!(
            get["responses"]["200"]["headers"]["ETag"].is_object(),
            "{route}"
        );
    }
    set_dispatch(&app, &admin, false).await;
}

async fn dispatch_state_and_free_riders_are_readable(app: TestApp) {
    let admin = app.admin_token().await;
    let (_, customer) = app.user_token("customer").await;
    app.get_auth("/api/v1/admin/dispatch", &customer)
        .await
        .assert_problem(403, "forbidden");
    set_dispatch(&app, &admin, true).await;
    let state = app.get_auth("/api/v1/admin/dispatch", &admin).await;
    assert_eq!(state.status, 200, "{}", state.text());
    assert_eq!(state.json()["paused"], true);
    set_dispatch(&app, &admin, false).await;
    assert_eq!(
        app.get_auth("/api/v1/admin/dispatch", &admin).await.json()["paused"],
        false
    );

    // A rider who goes online and free shows under state=free, and only there.
    let (user, token) = app.user_token("rider").await;
    let rider_id = user["id"].as_str().expect("id").to_owned();
    let mut ws = RiderWs::connect(&app, &token).await;
    ws.expect("welcome").await;
    ws.at(AT.0, AT.1).await;
    ws.send(json!({"type": "availability", "available": true}))
        .await;
    crate::orders::eventually("the rider is listed as free", || async {
        let page = app
            .get_auth("/api/v1/riders?state=free&per_page=100", &admin)
            .await
            .json();
        ids(&page).contains(&rider_id)
    })
    .await;
    let free = app
        .get_auth("/api/v1/riders?state=free&per_page=100", &admin)
        .await
        .json();
    assert!(free["items"]
        .as_array()
        .expect("items")
        .iter()
        .all(|r| r["state"] == "free" && r["online"] == true));
    let on_delivery = app
        .get_auth("/api/v1/riders?state=on_delivery", &admin)
        .await
        .json();
    assert!(!ids(&on_delivery).contains(&rider_id));
    let body = app
        .get_auth("/api/v1/riders?state=offline", &admin)
        .await
        .assert_problem(422, "validation_failed");
    assert_eq!(body["errors"][0]["field"], "state");
}

async fn stock_rows_name_their_medicine(app: TestApp) {
    let admin = app.admin_token().await;
    let pharmacy = app.create_pharmacy(&admin, "Names", AT.0, AT.1).await;
    let medicine = app
        .create_medicine(&admin, "Loratadine <10 mg>", None, None, 90)
        .await;
    assert_eq!(
        app.put_stock(&admin, pharmacy, &[(medicine, 4)])
            .await
            .status,
        200
    );
    let page = app
        .get(&format!("/api/v1/pharmacies/{pharmacy}/stock"))
        .await
        .json();
    assert_eq!(page["items"][0]["medicine_id"], medicine.to_string());
    assert_eq!(page["items"][0]["name"], "Loratadine <10 mg>");
}

/// The consoles are pages like the others: HTML, no token needed, a policy that allows
/// this origin's scripts only and a prescription from a blob: URL.
#[actix_web::test]
async fn the_consoles_are_served_with_a_strict_policy() {
    let app = crate::helpers::sqlite_app(&[]).await;
    for page in ["/admin", "/pharmacy"] {
        let res = app.get(page).await;
        assert_eq!(res.status, 200, "{page}");
        assert!(res
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/html")));
        let csp = res.header("content-security-policy").expect("a CSP");
        assert!(csp.contains("script-src 'self';"), "{csp}");
        assert!(csp.contains("object-src blob:;"), "{csp}");
        assert!(!res.text().contains("<script>"), "no inline script");
    }
    for asset in ["console.js", "admin.js", "pharmacy.js", "console.css"] {
        let res = app.get(&format!("/assets/{asset}")).await;
        assert_eq!(res.status, 200, "{asset}");
        assert!(res.header("etag").is_some());
    }
}
