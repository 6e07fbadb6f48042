//! Membership, the fleet view and tracking across `medify` processes on one PostgreSQL and
//! one Redis (issue 16; dispatch across nodes is in `cluster_dispatch.rs`). Three nodes
//! behind a real HAProxy (`deploy/haproxy.cfg`, round-robin, no stickiness), the test
//! talking only to the balancer: every node answers, lists the same live membership and
//! shows every node's riders (`GET /riders`, `/ws/ops`); a node leaving on SIGTERM is gone
//! from the list before it exits and closes its riders' sockets with 1012 so their apps
//! reconnect elsewhere; a node killed with SIGKILL drops out once its heartbeat expires.
//! Then two nodes on a Redis of the test's own, killed and restarted under them.
//!
//! Needs `MEDIFY_TEST_PG`, `MEDIFY_TEST_REDIS` and `haproxy` on the PATH (or in
//! /usr/sbin); skipped without them unless `MEDIFY_REQUIRE_SERVICES=1` (CI), which fails.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use actix_codec::Framed;
use actix_web::web::Bytes;
use awc::ws::{CloseCode, Codec, Frame, Message};
use awc::BoxedSocket;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};

#[path = "support/process.rs"]
mod process;
use process::{Server, WorkDir, WAIT};
#[path = "support/cluster.rs"]
mod support;
use support::{
    clear_redis, free_port, haproxy, listed, need, node, set, Balancer, Client, Database,
    PrivateRedis, ADMIN_EMAIL, ADMIN_PASSWORD,
};

#[actix_web::test]
async fn three_nodes_behind_a_balancer_share_one_membership_and_leave_cleanly() {
    let Some(pg) = need("MEDIFY_TEST_PG", std::env::var("MEDIFY_TEST_PG").ok()) else {
        return;
    };
    let Some(redis) = need("MEDIFY_TEST_REDIS", std::env::var("MEDIFY_TEST_REDIS").ok()) else {
        return;
    };
    let Some(haproxy) = need("haproxy", haproxy()) else {
        return;
    };
    let db = Database::create(&pg, "cluster").await;
    let prefix = format!("medify-cluster-{}:", uuid::Uuid::now_v7().simple());
    let dirs: Vec<WorkDir> = (0..3).map(|_| WorkDir::new()).collect();
    // One after another: the first migrates and creates the admin.
    let mut nodes: Vec<Server> = ["node-1", "node-2", "node-3"]
        .iter()
        .zip(&dirs)
        .map(|(id, dir)| node(dir, id, &db.url, &redis, &prefix))
        .collect();
    let addresses: Vec<String> = nodes.iter().map(|n| n.address.clone()).collect();
    let balancer = Balancer::start(&haproxy, &addresses);
    let lb = Client {
        base: format!("http://{}", balancer.address),
        http: awc::Client::builder()
            .timeout(Duration::from_secs(10))
            .finish(),
    };

    // The balancer answers once HAProxy is up.
    let start = Instant::now();
    while lb.call("GET", "/healthz", None, None).await.0 != 200 {
        assert!(start.elapsed() < WAIT, "the balancer never answered");
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, tokens) = lb
        .call(
            "POST",
            "/api/v1/auth/login",
            None,
            Some(json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})),
        )
        .await;
    assert_eq!(status, 200, "{tokens}");
    let admin = tokens["access_token"].as_str().expect("token").to_owned();

    // Every node knows all three; round-robin, so six calls reach all of them.
    let all = set(&["node-1", "node-2", "node-3"]);
    lb.until("/api/v1/cluster", &admin, "all three listed", |v| {
        listed(v) == all
    })
    .await;
    let mut answered = BTreeSet::new();
    for _ in 0..6 {
        let view = lb
            .until("/api/v1/cluster", &admin, "all three listed", |v| {
                listed(v) == all
            })
            .await;
        answered.insert(view["node_id"].as_str().expect("node_id").to_owned());
    }
    assert_eq!(answered, all, "no stickiness: every node answered");

    // Three riders through the balancer. Their accounts first, then the three sockets one
    // after another: round-robin puts one on each node.
    let mut tokens = Vec::new();
    let mut rider_ids = BTreeSet::new();
    for i in 0..3 {
        let email = format!("rider-{i}-{}@example.com", uuid::Uuid::now_v7().simple());
        let body =
            json!({"name": "Rider", "email": email, "password": "rider password", "role": "rider"});
        assert_eq!(
            lb.call("POST", "/api/v1/auth/register", None, Some(body))
                .await
                .0,
            201
        );
        let (_, answer) = lb
            .call(
                "POST",
                "/api/v1/auth/login",
                None,
                Some(json!({"email": email, "password": "rider password"})),
            )
            .await;
        tokens.push(answer["access_token"].as_str().expect("token").to_owned());
        rider_ids.insert(answer["user"]["id"].as_str().expect("id").to_owned());
    }
    let mut sockets = Vec::new();
    for token in &tokens {
        let url = format!("ws://{}/ws/rider?access_token={token}", balancer.address);
        let (_, mut framed) = awc::Client::new().ws(url).connect().await.expect("socket");
        let welcome = framed.next().await;
        assert!(matches!(welcome, Some(Ok(Frame::Text(_)))), "{welcome:?}");
        sockets.push(framed);
    }
    lb.until("/api/v1/cluster", &admin, "one rider on each node", |v| {
        v["nodes"]
            .as_array()
            .is_some_and(|n| n.len() == 3 && n.iter().all(|x| x["riders"].as_u64() == Some(1)))
    })
    .await;

    // The fleet view is the cluster's: each rider free at a fix, and every node's
    // GET /riders and /ws/ops show all three.
    for (i, framed) in sockets.iter_mut().enumerate() {
        let ts = chrono::Utc::now().timestamp_millis();
        let lat = 12.97 + 0.001 * f64::from(u8::try_from(i).expect("small"));
        let fix = json!({"type": "location", "lat": lat, "lng": 77.59, "ts": ts, "accuracy": 5});
        framed
            .send(Message::Text(fix.to_string().into()))
            .await
            .expect("fix");
        let on = json!({"type": "availability", "available": true});
        framed
            .send(Message::Text(on.to_string().into()))
            .await
            .expect("available");
    }
    let free_everywhere = |v: &Value| {
        let free: BTreeSet<String> = v["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter(|r| r["online"] == true && r["state"] == "free")
                    .filter_map(|r| r["id"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        free == rider_ids
    };
    // Six answers in a row (each node twice, round-robin) must all show the three.
    let (start, mut streak) = (Instant::now(), 0);
    while streak < 6 {
        assert!(
            start.elapsed() < WAIT,
            "some node never showed all three riders"
        );
        let (status, page) = lb
            .call("GET", "/api/v1/riders?per_page=100", Some(&admin), None)
            .await;
        if status == 200 && free_everywhere(&page) {
            streak += 1;
        } else {
            streak = 0;
            actix_web::rt::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // Three ops sockets in a row: one per node, each drawing all three riders.
    let mut ops = Vec::new();
    for _ in 0..3 {
        let url = format!("ws://{}/ws/ops?access_token={admin}", balancer.address);
        ops.push(
            awc::Client::new()
                .ws(url)
                .connect()
                .await
                .expect("ops socket")
                .1,
        );
    }
    for framed in &mut ops {
        let start = Instant::now();
        loop {
            assert!(start.elapsed() < WAIT, "no ops frame with all three riders");
            let next = tokio::time::timeout(WAIT, framed.next()).await;
            let Ok(Some(Ok(Frame::Text(text)))) = next else {
                continue;
            };
            let frame: Value = serde_json::from_slice(&text).unwrap_or(Value::Null);
            let listed: BTreeSet<String> = frame["riders"]
                .as_array()
                .map(|r| {
                    r.iter()
                        .filter_map(|x| x["id"].as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            if frame["counters"]["riders_online"] == 3 && listed == rider_ids {
                break;
            }
        }
    }
    drop(ops);

    // SIGTERM node-3: its rider is told "service restart" (1012) and the node is out of
    // the membership as soon as it has exited, without waiting for its heartbeat to expire.
    nodes[2].signal(libc::SIGTERM);
    assert_eq!(nodes[2].wait_exit(), Some(0), "{}", nodes[2].log_text());
    // Each socket is asked for a pong: node-3's answers with its close frame instead.
    let mut closed = Vec::new();
    let mut alive = 0;
    for framed in &mut sockets {
        let _ = framed.send(Message::Ping(Bytes::new())).await;
        loop {
            match tokio::time::timeout(WAIT, framed.next()).await {
                Ok(Some(Ok(Frame::Close(reason)))) => closed.push(reason.map(|r| r.code)),
                Ok(Some(Ok(Frame::Pong(_)))) => alive += 1,
                Ok(Some(Ok(_))) => continue,
                other => panic!("neither a pong nor a close frame: {other:?}"),
            }
            break;
        }
    }
    assert_eq!(closed, vec![Some(CloseCode::Restart)], "node-3's rider");
    assert_eq!(alive, 2, "the riders on the other nodes stay connected");
    let (_, view) = lb.call("GET", "/api/v1/cluster", Some(&admin), None).await;
    assert_eq!(listed(&view), set(&["node-1", "node-2"]), "{view}");

    // SIGKILL node-2: no goodbye; it drops out when its heartbeat expires.
    nodes[1].signal(libc::SIGKILL);
    let _ = nodes[1].wait_exit();
    lb.until("/api/v1/cluster", &admin, "node-2 expired", |v| {
        listed(v) == set(&["node-1"])
    })
    .await;

    drop(balancer);
    drop(nodes);
    db.drop_now().await;
    clear_redis(&redis, &prefix).await;
}

/// Waits until `channel` has one subscriber again.
async fn wait_subscribed(redis: &PrivateRedis, channel: &str) {
    let start = Instant::now();
    while subscribers(redis, channel).await != 1 {
        assert!(start.elapsed() < WAIT, "node B never (re)subscribed");
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Subscribers of `channel` on `redis`.
async fn subscribers(redis: &PrivateRedis, channel: &str) -> i64 {
    let counts: Vec<(String, i64)> = redis
        .query(redis::cmd("PUBSUB").arg("NUMSUB").arg(channel))
        .await;
    counts.first().map_or(0, |(_, n)| *n)
}

/// Waits for the next `rider_location` on a tracking socket; panics on a close.
async fn next_position(watcher: &mut Framed<BoxedSocket, Codec>) -> Value {
    let start = Instant::now();
    loop {
        assert!(start.elapsed() < WAIT, "no position");
        match tokio::time::timeout(WAIT, watcher.next()).await {
            Ok(Some(Ok(Frame::Text(text)))) => {
                let frame: Value = serde_json::from_slice(&text).unwrap_or(Value::Null);
                if frame["type"] == "rider_location" {
                    return frame;
                }
            }
            Ok(Some(Ok(Frame::Ping(p)))) => {
                let _ = watcher.send(Message::Pong(p)).await;
            }
            Ok(Some(Ok(Frame::Close(reason)))) => panic!("tracking socket closed: {reason:?}"),
            _ => {}
        }
    }
}

/// Two nodes on a Redis of the test's own: a watcher on node B follows a rider on node A;
/// then every pub/sub client is killed (`CLIENT KILL TYPE pubsub`), and then Redis itself
/// restarts empty. Each time the watcher's node subscribes again by itself, positions flow
/// again, and the membership and the shared fleet view come back. Last, the rider's app
/// reconnects to node B, is welcomed with the active order and delivers it there (each
/// status forwarded to node A, which kept dispatch all along), and the order was assigned
/// once.
#[actix_web::test]
async fn tracking_and_membership_survive_killed_subscribers_and_a_redis_restart() {
    let Some(pg) = need("MEDIFY_TEST_PG", std::env::var("MEDIFY_TEST_PG").ok()) else {
        return;
    };
    if need("MEDIFY_TEST_REDIS", std::env::var("MEDIFY_TEST_REDIS").ok()).is_none() {
        return;
    }
    let mut redis = PrivateRedis::start(free_port());
    let db = Database::create(&pg, "cluster").await;
    let prefix = "medify:";
    let dirs: Vec<WorkDir> = (0..2).map(|_| WorkDir::new()).collect();
    let nodes: Vec<Server> = ["node-a", "node-b"]
        .iter()
        .zip(&dirs)
        .map(|(id, dir)| node(dir, id, &db.url, &redis.url(), prefix))
        .collect();
    let client = || {
        awc::Client::builder()
            .timeout(Duration::from_secs(10))
            .finish()
    };
    let on = |i: usize| Client {
        base: format!("http://{}", nodes[i].address),
        http: client(),
    };
    let (a, b) = (on(0), on(1));
    let admin = a.login(ADMIN_EMAIL, ADMIN_PASSWORD).await["access_token"]
        .as_str()
        .expect("token")
        .to_owned();

    // On node A: a pharmacy with stock, a free rider, a customer's order he accepts.
    let (_, medicine) = a
        .call(
            "POST",
            "/api/v1/medicines",
            Some(&admin),
            Some(json!({"name": "Cetirizine", "sku": "CET-1", "price_cents": 150})),
        )
        .await;
    let (_, pharmacy) = a
        .call(
            "POST",
            "/api/v1/pharmacies",
            Some(&admin),
            Some(json!({"name": "Hub", "lat": 12.9716, "lng": 77.5946, "address": "1 Hub Road"})),
        )
        .await;
    let stock = json!({"items": [{"medicine_id": medicine["id"], "quantity": 5}]});
    let path = format!(
        "/api/v1/pharmacies/{}/stock",
        pharmacy["id"].as_str().expect("id")
    );
    assert_eq!(a.call("PUT", &path, Some(&admin), Some(stock)).await.0, 200);
    let (rider_token, customer) = (a.account("rider").await, a.account("customer").await);
    let url = format!(
        "ws://{}/ws/rider?access_token={rider_token}",
        nodes[0].address
    );
    let (_, mut rider) = awc::Client::new().ws(url).connect().await.expect("rider");
    let mut ts = chrono::Utc::now().timestamp_millis();
    let mut fix = |lat: f64| {
        ts += 2_000;
        Message::Text(
            json!({"type": "location", "lat": lat, "lng": 77.5946, "ts": ts, "accuracy": 5})
                .to_string()
                .into(),
        )
    };
    rider.send(fix(12.9726)).await.expect("fix");
    let available = json!({"type": "availability", "available": true}).to_string();
    rider
        .send(Message::Text(available.into()))
        .await
        .expect("available");
    let order = json!({"items": [{"medicine_id": medicine["id"], "qty": 1}],
        "delivery": {"lat": 12.9816, "lng": 77.5946, "address": "2 Watch Street"},
        "pharmacy_id": pharmacy["id"]});
    let (status, placed) = a
        .call("POST", "/api/v1/orders", Some(&customer), Some(order))
        .await;
    assert_eq!(status, 201, "{placed}");
    let order_id = placed["id"].as_str().expect("id").to_owned();
    let offer = loop {
        match rider.next().await {
            Some(Ok(Frame::Text(text))) => {
                let frame: Value = serde_json::from_slice(&text).unwrap_or(Value::Null);
                if frame["type"] == "offer" {
                    break frame;
                }
            }
            Some(Ok(_)) => {}
            other => panic!("rider socket: {other:?}"),
        }
    };
    let answer = json!({"type": "offer_response", "offer_id": offer["offer_id"], "accept": true});
    rider
        .send(Message::Text(answer.to_string().into()))
        .await
        .expect("accept");

    // The customer watches through node B.
    let url = format!(
        "ws://{}/ws/orders/{order_id}/track?access_token={customer}",
        nodes[1].address
    );
    let (_, mut watcher) = awc::Client::new().ws(url).connect().await.expect("watcher");
    let channel = format!("{prefix}track:{order_id}");
    let mut lat = 12.9725;
    for round in [
        "first",
        "after CLIENT KILL TYPE pubsub",
        "after a Redis restart",
    ] {
        match round {
            "first" => {}
            "after CLIENT KILL TYPE pubsub" => {
                let killed: i64 = redis
                    .query(redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("pubsub"))
                    .await;
                assert!(killed >= 1, "node B's subscriber was there to kill");
            }
            _ => redis.restart(),
        }
        wait_subscribed(&redis, &channel).await;
        // The marker is renewed with the subscription; a fix until one gets through
        // (the rider's node trusts what it learnt about the marker for a second).
        let start = Instant::now();
        let position = loop {
            assert!(start.elapsed() < WAIT, "no position {round}");
            lat -= 0.0001;
            rider.send(fix(lat)).await.expect("fix");
            if let Ok(frame) =
                tokio::time::timeout(Duration::from_millis(1500), next_position(&mut watcher)).await
            {
                break frame;
            }
        };
        assert!(position["eta_s"].is_i64(), "{round}: {position}");
        // Membership and the fleet view are written again by the heartbeats.
        b.until("/api/v1/cluster", &admin, "both nodes listed", |v| {
            listed(v) == set(&["node-a", "node-b"])
        })
        .await;
        b.until(
            "/api/v1/riders?state=on_delivery",
            &admin,
            "the rider seen from node B",
            |v| v["total"] == 1,
        )
        .await;
    }
    // The rider's app reconnects, this time to node B: the welcome carries the active
    // order, and the rider finishes the delivery there; the watcher sees it to the end.
    let _ = rider.close().await;
    let url = format!(
        "ws://{}/ws/rider?access_token={rider_token}",
        nodes[1].address
    );
    let (_, mut rider) = awc::Client::new()
        .ws(url)
        .connect()
        .await
        .expect("rider on B");
    let welcome = loop {
        match rider.next().await {
            Some(Ok(Frame::Text(text))) => {
                break serde_json::from_slice::<Value>(&text).unwrap_or(Value::Null)
            }
            Some(Ok(_)) => {}
            other => panic!("rider socket on B: {other:?}"),
        }
    };
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    assert_eq!(
        welcome["active_order"]["id"],
        order_id.as_str(),
        "{welcome}"
    );
    for status in [
        json!({"type": "order_status", "order_id": order_id, "status": "picked_up"}),
        json!({"type": "order_status", "order_id": order_id, "status": "delivered", "code": placed["delivery_code"]}),
    ] {
        rider
            .send(Message::Text(status.to_string().into()))
            .await
            .expect("status");
    }
    let mut statuses = Vec::new();
    let code = loop {
        match tokio::time::timeout(WAIT, watcher.next()).await {
            Ok(Some(Ok(Frame::Text(text)))) => {
                let frame: Value = serde_json::from_slice(&text).unwrap_or(Value::Null);
                if frame["type"] == "status" {
                    statuses.push(frame["status"].as_str().unwrap_or("").to_owned());
                }
            }
            Ok(Some(Ok(Frame::Close(reason)))) => break reason.map(|r| u16::from(r.code)),
            Ok(Some(Ok(_))) => {}
            other => panic!("watcher: {other:?}"),
        }
    };
    assert_eq!(statuses, vec!["picked_up", "delivered"]);
    assert_eq!(code, Some(1000));
    let (_, done) = b
        .call(
            "GET",
            &format!("/api/v1/orders/{order_id}"),
            Some(&customer),
            None,
        )
        .await;
    assert_eq!(done["status"], "delivered", "{done}");
    // Through both pub/sub outages and the Redis restart the order had one rider, once:
    // the dispatch lease lives in PostgreSQL and node A kept it.
    let (_, timeline) = b
        .call(
            "GET",
            &format!("/api/v1/orders/{order_id}/timeline"),
            Some(&admin),
            None,
        )
        .await;
    let assigned = timeline.as_array().map_or(0, |t| {
        t.iter().filter(|s| s["status"] == "assigned").count()
    });
    assert_eq!(assigned, 1, "{timeline}");
    let (_, view) = b.call("GET", "/api/v1/cluster", Some(&admin), None).await;
    assert_eq!(view["dispatch"], "node-a", "{view}");
    drop(rider);
    drop(nodes);
    db.drop_now().await;
}
