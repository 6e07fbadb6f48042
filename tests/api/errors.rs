//! Every error is application/problem+json, including the framework's own.

use crate::backend_tests;
use crate::helpers::TestApp;

backend_tests!(
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
