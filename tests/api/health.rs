//! Health, readiness, metrics and the OpenAPI document.

use crate::backend_tests;
use crate::helpers::{Backend, TestApp};

backend_tests!(
    healthz_answers_ok,
    readyz_checks_the_database,
    metrics_expose_the_contract_names,
    invented_methods_do_not_grow_the_metrics,
    openapi_lists_every_route,
    responses_carry_a_request_id,
);

async fn healthz_answers_ok(app: TestApp) {
    let res = app.get("/healthz").await;
    assert_eq!(res.status, 200);
    assert_eq!(res.json(), serde_json::json!({"status": "ok"}));
}

async fn readyz_checks_the_database(app: TestApp) {
    let res = app.get("/readyz").await;
    assert_eq!(res.status, 200, "{}", res.text());
    let body = res.json();
    assert_eq!(body["status"], "ok");
    let expected = match app.backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    assert_eq!(body["database"], expected);
    assert_eq!(body["redis"], "disabled");
}

async fn invented_methods_do_not_grow_the_metrics(app: TestApp) {
    let junk = |i: usize| format!("XMETHOD{i}");
    for i in 0..10 {
        app.request(&junk(i), "/healthz", None, None).await;
    }
    // Once so that `/metrics`' own series exists before the count.
    assert_eq!(app.get("/metrics").await.status, 200);
    let before = app.get("/metrics").await.text();
    for i in 10..400 {
        let res = app.request(&junk(i), "/healthz", None, None).await;
        assert_eq!(res.status, 405, "an invented method is not allowed");
    }
    let after = app.get("/metrics").await.text();
    assert!(
        !after.contains("XMETHOD"),
        "no invented method becomes a label"
    );
    assert!(after.contains("method=\"other\""), "{after}");
    // The other series may gain samples, never new label sets.
    let series = |text: &str| text.lines().filter(|l| !l.starts_with('#')).count();
    assert_eq!(series(&before), series(&after));
}

async fn metrics_expose_the_contract_names(app: TestApp) {
    // One request first, so the request histogram has a series to show.
    assert_eq!(app.get("/healthz").await.status, 200);
    let res = app.get("/metrics").await;
    assert_eq!(res.status, 200);
    assert!(res
        .header("content-type")
        .unwrap_or_default()
        .starts_with("text/plain"));
    let text = res.text();
    for name in [
        "medify_http_request_duration_seconds_bucket",
        "medify_ws_connections{kind=\"rider\"} 0",
        "medify_ws_connections{kind=\"track\"} 0",
        "medify_ws_connections{kind=\"ops\"} 0",
        "medify_location_updates_total{outcome=\"accepted\"} 0",
        "medify_location_updates_total{outcome=\"rejected\"} 0",
        "medify_location_updates_total{outcome=\"rate_limited\"} 0",
        "medify_assignment_latency_seconds_bucket",
    ] {
        assert!(text.contains(name), "missing {name} in:\n{text}");
    }
    assert!(
        text.contains(
            r#"medify_http_request_duration_seconds_count{method="GET",route="/healthz",status="200"} 1"#
        ),
        "{text}"
    );
}

async fn openapi_lists_every_route(app: TestApp) {
    let res = app.get("/api/v1/openapi.json").await;
    assert_eq!(res.status, 200);
    let doc = res.json();
    assert!(
        doc["openapi"].as_str().unwrap_or("").starts_with("3."),
        "{doc}"
    );
    for path in ["/healthz", "/readyz", "/metrics", "/api/v1/openapi.json"] {
        assert!(doc["paths"][path]["get"].is_object(), "missing {path}");
    }
    assert!(doc["components"]["schemas"]["Problem"].is_object());
}

async fn responses_carry_a_request_id(app: TestApp) {
    let a = app.get("/healthz").await.header("x-request-id");
    let b = app.get("/nope").await.header("x-request-id");
    let (a, b) = (a.expect("request id"), b.expect("request id on errors too"));
    assert_ne!(a, b);
    assert!(uuid::Uuid::parse_str(&a).is_ok(), "{a}");
}
