//! Every error is application/problem+json, including the framework's own.

use crate::backend_tests;
use crate::helpers::TestApp;

backend_tests!(
    every_json_endpoint_answers_bad_bodies_with_problems,
    json_arrays_are_not_bodies,
    unknown_paths_are_problem_404,
    wrong_methods_are_problem_405,
    unmatched_routes_keep_metric_labels_bounded,
);

async fn unknown_paths_are_problem_404(app: TestApp) {
    for path in [
        "/nope",
        "/api/v1/nothing/here",
        "/api/v1/openapi.json/extra",
    ] {
        app.get(path).await.assert_problem(404, "not_found");
    }
}

async fn wrong_methods_are_problem_405(app: TestApp) {
    let res = app
        .raw("POST", "/healthz", "application/json", b"{\"broken")
        .await;
    res.assert_problem(405, "method_not_allowed");
    let res = app.raw("DELETE", "/metrics", "text/plain", b"").await;
    res.assert_problem(405, "method_not_allowed");
}

async fn unmatched_routes_keep_metric_labels_bounded(app: TestApp) {
    for i in 0..3 {
        app.get(&format!("/random/{i}"))
            .await
            .assert_problem(404, "not_found");
    }
    let text = app.get("/metrics").await.text();
    assert!(!text.contains("/random/"), "{text}");
    assert!(
        text.contains(
            r#"medify_http_request_duration_seconds_count{method="GET",route="unmatched",status="404"} 3"#
        ),
        "{text}"
    );
}

/// Walks the OpenAPI document: every operation that takes a JSON body gets a malformed
/// body (400 `invalid_json`), a body of the wrong shape (422 `validation_failed`) and an
/// oversized body (413), all as problem+json, and never a 500. An operation that takes
/// another kind of body (a multipart upload) answers any JSON body 415.
async fn every_json_endpoint_answers_bad_bodies_with_problems(app: TestApp) {
    let admin = app.admin_token().await;
    // Uploads are for customers: an admin would be refused (403) before the body is read.
    let (_, customer) = app.user_token("customer").await;
    let doc = app.get("/api/v1/openapi.json").await.json();
    let paths = doc["paths"].as_object().expect("paths");
    let mut checked = Vec::new();
    for (path, item) in paths {
        for (method, op) in item.as_object().expect("path item") {
            // The payment webhook refuses an unsigned body (400 `invalid_signature`)
            // before reading it: its own tests cover it.
            if path == "/api/v1/payments/webhook" {
                continue;
            }
            let Some(content) = op.get("requestBody").and_then(|b| b["content"].as_object()) else {
                continue;
            };
            let concrete = fill_path_params(path);
            let method = method.to_uppercase();
            let json = content.contains_key("application/json");
            let token = if json { &admin } else { &customer };
            let send = |body: Vec<u8>| {
                let method = awc::http::Method::from_bytes(method.as_bytes()).expect("method");
                app.client
                    .request(method, app.url(&concrete))
                    .insert_header(("authorization", format!("Bearer {token}")))
                    .insert_header(("content-type", "application/json"))
                    .send_body(body)
            };
            let cases = if json {
                vec![
                    (b"{\"broken".to_vec(), 400, "invalid_json"),
                    (b"[1, 2, 3]".to_vec(), 422, "validation_failed"),
                    (vec![b' '; 100 * 1024], 413, "payload_too_large"),
                ]
            } else {
                vec![
                    (b"{\"broken".to_vec(), 415, "unsupported_media_type"),
                    (b"[1, 2, 3]".to_vec(), 415, "unsupported_media_type"),
                ]
            };
            for (body, status, code) in cases {
                let mut res = send(body).await.expect("send");
                let ct = res
                    .headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                let bytes = res.body().await.expect("body");
                let text = String::from_utf8_lossy(&bytes);
                assert_eq!(res.status().as_u16(), status, "{method} {path}: {text}");
                assert!(
                    ct.starts_with("application/problem+json"),
                    "{method} {path}: {ct}"
                );
                let json: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
                assert_eq!(json["code"], code, "{method} {path}: {json}");
            }
            checked.push(format!("{method} {path}"));
        }
    }
    assert!(
        checked.len() >= 7,
        "too few JSON endpoints found: {checked:?}"
    );
}

/// Found by schemathesis: serde reads a struct from a JSON array by position, so
/// `[null, null]` was a valid `PATCH /me` (200) and `["token"]` a valid logout (204).
/// Every body is documented as an object; anything else is 422 on `body`.
async fn json_arrays_are_not_bodies(app: TestApp) {
    let (user, token) = app.user_token("customer").await;
    let cases = [
        ("PATCH", "/api/v1/me", serde_json::json!([null, null])),
        ("PATCH", "/api/v1/me", serde_json::json!(["Renamed"])),
        (
            "POST",
            "/api/v1/auth/logout",
            serde_json::json!(["some-token"]),
        ),
        (
            "POST",
            "/api/v1/auth/refresh",
            serde_json::json!(["some-token"]),
        ),
        ("PATCH", "/api/v1/me", serde_json::json!("Renamed")),
    ];
    for (method, path, body) in cases {
        let res = app.request(method, path, Some(&token), Some(&body)).await;
        let problem = res.assert_problem(422, "validation_failed");
        assert_eq!(
            problem["errors"][0]["field"], "body",
            "{method} {path} {body}: {problem}"
        );
        assert_eq!(
            problem["errors"][0]["message"], "must be a JSON object",
            "{method} {path} {body}: {problem}"
        );
    }
    let me = app.get_auth("/api/v1/me", &token).await;
    assert_eq!(me.status, 200);
    assert_eq!(me.json()["name"], user["name"], "the profile is unchanged");
}

/// Replaces `{param}` segments with a fresh UUID.
fn fill_path_params(path: &str) -> String {
    path.split('/')
        .map(|seg| {
            if seg.starts_with('{') {
                uuid::Uuid::now_v7().to_string()
            } else {
                seg.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}
