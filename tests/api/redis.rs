//! Redis-backed behaviour: readiness follows the Redis server.

use crate::helpers::{spawn_app_with, Backend, Options};

#[actix_web::test]
async fn readyz_reports_redis_when_configured() {
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
    let res = app.get("/readyz").await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(res.json()["redis"], "ok");
}

#[actix_web::test]
async fn readyz_is_503_when_redis_does_not_answer() {
    // Port 1 on loopback: nothing listens there, so the connection is refused at once.
    let app = spawn_app_with(
        Backend::Sqlite,
        Options {
            env: vec![("REDIS_URL", "redis://127.0.0.1:1".to_owned())],
            ..Options::default()
        },
    )
    .await
    .expect("sqlite");
    let res = app.get("/readyz").await;
    let body = res.assert_problem(503, "unavailable");
    assert!(
        body["detail"].as_str().unwrap_or("").contains("redis"),
        "{body}"
    );
    // Liveness does not depend on Redis.
    assert_eq!(app.get("/healthz").await.status, 200);
}
