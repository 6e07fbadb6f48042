//! The cluster's foundations against real services: membership in Redis (`GET
//! /api/v1/cluster`, heartbeats, a graceful leave, a dead node expiring) and leases with
//! fencing tokens in the database (a holder that lost its lease can neither renew, release
//! nor write). Several nodes in separate processes behind a real balancer are
//! `tests/cluster.rs`.

use std::time::Duration;

use medify::cluster::membership::{self, NodeCard};
use medify::store::leases::{FenceError, Lease};
use serde_json::Value;
use uuid::Uuid;

use crate::backend_tests;
use crate::helpers::{connect_store, spawn_app_with, sqlite_app, Backend, Options, TestApp};
use crate::orders::eventually;

backend_tests!(leases_have_one_holder_and_tokens_that_only_grow);

fn ids(view: &Value) -> Vec<String> {
    view["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| n["id"].as_str().expect("id").to_owned())
        .collect()
}

#[actix_web::test]
async fn a_node_alone_lists_itself_to_admins() {
    let app = sqlite_app(&[("MEDIFY_NODE_ID", "solo-node")]).await;
    let admin = app.admin_token().await;
    let res = app.get_auth("/api/v1/cluster", &admin).await;
    assert_eq!(res.status, 200, "{}", res.text());
    let view = res.json();
    assert_eq!(view["node_id"], "solo-node");
    assert_eq!(ids(&view), vec!["solo-node"]);
    assert!(view["nodes"][0]["started_at"].is_string());
    assert_eq!(view["nodes"][0]["riders"], 0);
    let (_, customer) = app.user_token("customer").await;
    app.get_auth("/api/v1/cluster", &customer)
        .await
        .assert_problem(403, "forbidden");
    app.get("/api/v1/cluster")
        .await
        .assert_problem(401, "unauthorized");
}

/// Two nodes on one PostgreSQL and Redis; `None` (skipped) without the services.
async fn two_nodes() -> Option<(TestApp, actix_web::web::Data<medify::state::AppState>, u16)> {
    let a = format!("node-a-{}", Uuid::now_v7().simple());
    let app = spawn_app_with(
        Backend::Postgres,
        Options {
            redis: true,
            env: vec![
                ("MEDIFY_NODE_ID", a),
                ("MEDIFY_HEARTBEAT_MS", "100".to_owned()),
                ("MEDIFY_NODE_TTL_S", "1".to_owned()),
            ],
        },
    )
    .await?;
    let mut env = app.env.clone();
    env.insert(
        "MEDIFY_NODE_ID".into(),
        format!("node-b-{}", Uuid::now_v7().simple()),
    );
    let (port, state) = crate::helpers::start_server(&env).await;
    Some((app, state, port))
}

#[actix_web::test]
async fn nodes_sharing_redis_list_each_other_and_a_leaving_node_goes_at_once() {
    let Some((app, b, b_port)) = two_nodes().await else {
        return;
    };
    assert!(
        b.cluster.enabled(),
        "PostgreSQL + Redis turn the cluster on"
    );
    let admin = app.admin_token().await;
    let a_id = app.state.cluster.node_id().to_owned();
    let b_id = b.cluster.node_id().to_owned();
    let b_http = crate::helpers::Http::new(b_port);
    // Each node lists both, whichever answers.
    for http in [&app.http, &b_http] {
        eventually("both nodes are listed", || async {
            let view = http.get_auth("/api/v1/cluster", &admin).await.json();
            let listed = ids(&view);
            listed.contains(&a_id) && listed.contains(&b_id)
        })
        .await;
    }
    let view = b_http.get_auth("/api/v1/cluster", &admin).await.json();
    assert_eq!(view["node_id"], b_id.as_str());

    // B leaves (what SIGTERM does first): gone from the list at once, and it stays gone
    // although its process (and heartbeat task) lives on.
    b.cluster.leave().await;
    let view = app.get_auth("/api/v1/cluster", &admin).await.json();
    assert!(!ids(&view).contains(&b_id), "{view}");
    assert!(ids(&view).contains(&a_id), "{view}");
    let redis = app.state.redis.clone().expect("redis");
    // A heartbeat of A's lands after the leave; B's entry is still absent then.
    let before = membership::heartbeat(&redis, "probe", &card()).await;
    assert!(before.is_ok());
    let listed = membership::live_nodes(&redis, Duration::from_secs(1))
        .await
        .expect("live nodes");
    assert!(listed.iter().all(|n| n.id != b_id));
    membership::leave(&redis, "probe").await.expect("leave");
}

fn card() -> NodeCard {
    NodeCard {
        started_at: chrono::Utc::now(),
        riders: 0,
        regions: 0,
    }
}

#[actix_web::test]
async fn a_node_that_stops_beating_is_dead_after_its_ttl() {
    let Some((app, _b, _)) = two_nodes().await else {
        return;
    };
    let redis = app.state.redis.clone().expect("redis");
    let ghost = format!("ghost-{}", Uuid::now_v7().simple());
    membership::heartbeat(&redis, &ghost, &card())
        .await
        .expect("heartbeat");
    let admin = app.admin_token().await;
    let view = app.get_auth("/api/v1/cluster", &admin).await.json();
    assert!(ids(&view).contains(&ghost), "{view}");
    // No further heartbeat: after MEDIFY_NODE_TTL_S (1 s here) it is no longer listed.
    eventually("the silent node is dropped", || async {
        let view = app.get_auth("/api/v1/cluster", &admin).await.json();
        !ids(&view).contains(&ghost)
    })
    .await;
}

async fn leases_have_one_holder_and_tokens_that_only_grow(app: TestApp) {
    let store = connect_store(&app).await;
    let name = format!("region:{}", Uuid::now_v7().simple());
    let long = Duration::from_secs(60);

    let first = store
        .acquire_lease(&name, "node-a", long)
        .await
        .expect("acquire")
        .expect("granted: nobody held it");
    assert_eq!(
        store
            .acquire_lease(&name, "node-b", long)
            .await
            .expect("try"),
        None,
        "held by node-a"
    );
    assert!(store
        .renew_lease(&first, "node-a", long)
        .await
        .expect("renew"));
    assert!(
        !store
            .renew_lease(&first, "node-b", long)
            .await
            .expect("renew"),
        "only the holder renews"
    );
    assert_eq!(
        store.lease_holder(&name).await.expect("holder"),
        Some(("node-a".to_owned(), first.token))
    );

    // node-a pauses past its lease (here: it is released, as expiry would do); node-b
    // takes over with a higher token.
    assert!(store
        .release_lease(&first, "node-a")
        .await
        .expect("release"));
    let second = store
        .acquire_lease(&name, "node-b", long)
        .await
        .expect("acquire")
        .expect("granted after the release");
    assert!(second.token > first.token);

    // node-a wakes up: its renewal, its late release and its token are all refused.
    assert!(!store
        .renew_lease(&first, "node-a", long)
        .await
        .expect("renew"));
    assert!(!store
        .release_lease(&first, "node-a")
        .await
        .expect("release"));
    assert_eq!(
        store.lease_holder(&name).await.expect("holder"),
        Some(("node-b".to_owned(), second.token))
    );

    // An expired lease (time-to-live zero) is free for anyone, with a new token again.
    let third = store
        .acquire_lease(&name, "node-b", Duration::ZERO)
        .await
        .expect("re-grant")
        .expect("own lease re-granted");
    let fourth = store
        .acquire_lease(&name, "node-c", long)
        .await
        .expect("acquire")
        .expect("expired: free");
    assert!(fourth.token > third.token && third.token > second.token);

    if let medify::store::Store::Postgres(pool) = &store {
        fenced_writes(pool, &first, &fourth).await;
    }
}

/// In PostgreSQL, a write guarded by a stale token is refused and the current holder's
/// goes through.
async fn fenced_writes(pool: &sqlx::PgPool, stale: &Lease, current: &Lease) {
    let mut tx = pool.begin().await.expect("tx");
    match medify::store::Store::check_fence(&mut tx, stale).await {
        Err(FenceError::Fenced { token, .. }) => assert_eq!(token, stale.token),
        other => panic!("a stale token must be fenced off, got {other:?}"),
    }
    tx.rollback().await.expect("rollback");
    let mut tx = pool.begin().await.expect("tx");
    medify::store::Store::check_fence(&mut tx, current)
        .await
        .expect("the current holder writes");
    tx.commit().await.expect("commit");
}

/// A customer watching through node B follows a rider connected to node A: positions with
/// an ETA (relayed over Redis while B watches), the statuses (over the event bus) and the
/// final close, as on one node.
#[actix_web::test]
async fn a_watcher_on_another_node_follows_the_rider() {
    let Some((app, _b, b_port)) = two_nodes().await else {
        return;
    };
    let crate::tracking::Delivery {
        customer,
        mut rider,
        placed,
        id,
        ..
    } = crate::tracking::assigned_delivery(&app, 12.9726).await;
    let on_b = crate::helpers::Http::new(b_port);
    let path = format!("/ws/orders/{id}/track");
    let mut watcher = crate::riders::RiderWs::connect_to(&on_b, &path, &customer).await;
    let snapshot = watcher.next().await.expect("snapshot");
    assert_eq!(snapshot["order"]["status"], "assigned", "{snapshot}");

    // B subscribes to the order's channel and marks it watched; then A publishes.
    let redis = app.state.redis.clone().expect("redis");
    let channel = redis.key(&format!("track:{id}"));
    let marker = redis.key(&format!("track:watched:{id}"));
    eventually("node B subscribed to the order", || async {
        let mut conn = redis.connection().await.expect("redis");
        let (_, subscribers): (String, i64) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(&channel)
            .query_async::<Vec<(String, i64)>>(&mut conn)
            .await
            .expect("numsub")
            .pop()
            .expect("one channel");
        let marked: bool = redis::cmd("EXISTS")
            .arg(&marker)
            .query_async(&mut conn)
            .await
            .expect("exists");
        subscribers == 1 && marked
    })
    .await;

    let t = chrono::Utc::now().timestamp_millis() + 3_000;
    rider
        .send(serde_json::json!({"type": "location", "lat": 12.9720, "lng": 77.5946, "ts": t, "heading": 180}))
        .await;
    let loc = watcher.expect("rider_location").await;
    assert_eq!(
        (loc["lat"].as_f64(), loc["ts"].as_i64()),
        (Some(12.9720), Some(t)),
        "{loc}"
    );
    assert!(loc["eta_s"].as_i64().unwrap_or(0) > 0, "{loc}");

    rider
        .send(serde_json::json!({"type": "order_status", "order_id": id, "status": "picked_up"}))
        .await;
    rider
        .send(serde_json::json!({"type": "order_status", "order_id": id, "status": "delivered", "code": placed["delivery_code"]}))
        .await;
    let mut statuses = Vec::new();
    let code = loop {
        match watcher.next().await {
            Ok(frame) if frame["type"] == "status" => {
                statuses.push(frame["status"].as_str().unwrap_or("").to_owned());
            }
            Ok(_) => {}
            Err(code) => break code,
        }
    };
    assert_eq!(statuses, vec!["picked_up", "delivered"]);
    assert_eq!(code, Some(1000));
    // Nobody watches any more: B unsubscribes.
    eventually("node B unsubscribed", || async {
        let mut conn = redis.connection().await.expect("redis");
        let counts: Vec<(String, i64)> = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(&channel)
            .query_async(&mut conn)
            .await
            .expect("numsub");
        counts.first().is_some_and(|(_, n)| *n == 0)
    })
    .await;
}
