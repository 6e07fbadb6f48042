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

/// Two nodes on one database and one Redis: a catalog write on one shows in the other's
/// in-memory search and pharmacy directory.
#[actix_web::test]
async fn catalog_writes_reach_the_other_nodes() {
    use crate::helpers::spawn_sibling;
    use std::time::{Duration, Instant};
    let Some(a) = spawn_app_with(
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
    let b = spawn_sibling(&a).await;
    // Let B's listener subscribe: a write it must see, retried until it does.
    let admin = a.admin_token().await;
    let mut seen = false;
    let start = Instant::now();
    let mut id = uuid::Uuid::nil();
    while !seen {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "node B never saw the write"
        );
        id = a
            .create_medicine(&admin, "Zolmitriptan", None, Some("Zomig"), 900)
            .await;
        for _ in 0..20 {
            let page = b.get("/api/v1/medicines?q=zomig").await.json();
            if page["total"].as_i64().unwrap_or(0) >= 1 {
                seen = true;
                break;
            }
            actix_web::rt::time::sleep(Duration::from_millis(25)).await;
        }
        if !seen {
            a.request(
                "DELETE",
                &format!("/api/v1/medicines/{id}"),
                Some(&admin),
                None,
            )
            .await;
        }
    }
    // A delete on A disappears from B's search too.
    let res = a
        .request(
            "DELETE",
            &format!("/api/v1/medicines/{id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(res.status, 204);
    let start = Instant::now();
    while b.get("/api/v1/medicines?q=zomig").await.json()["total"] != 0 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "delete never reached node B"
        );
        actix_web::rt::time::sleep(Duration::from_millis(25)).await;
    }
    // And a pharmacy made on A is near things on B.
    let pharmacy = a.create_pharmacy(&admin, "Shared", 12.97, 77.59).await;
    let start = Instant::now();
    while b
        .get(&format!("/api/v1/pharmacies/{pharmacy}"))
        .await
        .status
        != 200
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "pharmacy never reached node B"
        );
        actix_web::rt::time::sleep(Duration::from_millis(25)).await;
    }
    let near = b.get("/api/v1/pharmacies?lat=12.97&lng=77.59").await.json();
    assert_eq!(near["total"], 1, "{near}");
}
