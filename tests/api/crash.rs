//! kill -9 in the middle of a delivery: the real binary, a real rider socket.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::json;

use crate::helpers::{Http, ADMIN_EMAIL, ADMIN_PASSWORD};
use crate::riders::{set_dispatch, RiderWs};

struct Process {
    child: Child,
    http: Http,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `medify` on `db` and waits for its "listening" line.
fn start(db: &std::path::Path) -> Process {
    let mut child = Command::new(env!("CARGO_BIN_EXE_medify"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("MEDIFY_BIND", "127.0.0.1:0")
        .env("MEDIFY_WORKERS", "1")
        .env("LOG_FORMAT", "json")
        .env(
            "DATABASE_URL",
            format!("sqlite://{}?mode=rwc", db.display()),
        )
        .env("JWT_SECRET", "kill-nine-secret-kill-nine-secret-0123")
        .env("MEDIFY_ADMIN_EMAIL", ADMIN_EMAIL)
        .env("MEDIFY_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn medify");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("\"listening\"") {
                let v: serde_json::Value = serde_json::from_str(&line).expect("json");
                let _ = tx.send(v["address"].as_str().unwrap_or_default().to_owned());
            }
        }
    });
    let address = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("medify started");
    Process {
        child,
        http: Http::new(
            address
                .split(':')
                .next_back()
                .and_then(|p| p.parse().ok())
                .expect("port"),
        ),
    }
}

/// SIGKILL, no goodbye.
fn kill_nine(mut server: Process) {
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(server.child.id() as i32, libc::SIGKILL) };
    let _ = server.child.wait();
}

fn remove_db(db: &std::path::Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
}

/// A rider online, free, near the test pharmacy.
async fn online_rider(http: &Http, token: &str) -> RiderWs {
    let mut ws = RiderWs::connect(http, token).await;
    ws.expect("welcome").await;
    ws.at(12.971, 77.59).await;
    ws.send(json!({"type": "availability", "available": true}))
        .await;
    ws
}

#[actix_web::test]
async fn an_assigned_order_survives_kill_nine_and_is_delivered() {
    let db = std::env::temp_dir().join(format!("medify-kill9-{}.db", uuid::Uuid::now_v7()));
    let server = start(&db);
    let http = &server.http;
    let admin = http.admin_token().await;
    let (pharmacy, medicine) = http.stocked_pharmacy(&admin, "P", 12.97, 77.59, 5).await;
    let (_, customer) = http.user_token("customer").await;
    let (_, rider) = http.user_token("rider").await;
    let mut ws = online_rider(http, &rider).await;
    let placed = http
        .place_order(&customer, &[(medicine, 2)], 12.98, 77.60)
        .await
        .json();
    let offer = ws.expect("offer").await;
    ws.send(json!({"type": "offer_response", "offer_id": offer["offer_id"], "accept": true}))
        .await;
    ws.expect("assigned").await;

    kill_nine(server);
    drop(ws);

    let server = start(&db);
    let http = &server.http;
    let mut ws = RiderWs::connect(http, &rider).await;
    let welcome = ws.expect("welcome").await;
    assert_eq!(welcome["active_order"]["id"], placed["id"], "{welcome}");
    assert_eq!(welcome["active_order"]["status"], "assigned");
    let id = placed["id"].as_str().expect("id");
    ws.send(json!({"type": "order_status", "order_id": id, "status": "picked_up"}))
        .await;
    ws.send(json!({"type": "order_status", "order_id": id, "status": "delivered", "code": placed["delivery_code"]}))
        .await;
    let start = std::time::Instant::now();
    loop {
        let v = http
            .get_auth(&format!("/api/v1/orders/{id}"), &customer)
            .await
            .json();
        if v["status"] == "delivered" {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "never delivered: {v}"
        );
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(http.stock_of(pharmacy, medicine).await, (3, 0));
    drop(server);
    remove_db(&db);
}

#[actix_web::test]
async fn a_refusal_outlives_a_restart() {
    let db = std::env::temp_dir().join(format!("medify-refusal-{}.db", uuid::Uuid::now_v7()));
    let server = start(&db);
    let http = &server.http;
    let admin = http.admin_token().await;
    let (_, medicine) = http.stocked_pharmacy(&admin, "P", 12.97, 77.59, 5).await;
    let (_, customer) = http.user_token("customer").await;
    let (_, rider) = http.user_token("rider").await;
    let mut ws = online_rider(http, &rider).await;
    let placed = http
        .place_order(&customer, &[(medicine, 1)], 12.98, 77.60)
        .await
        .json();
    let offers = format!(
        "/api/v1/orders/{}/offers",
        placed["id"].as_str().expect("id")
    );
    let offer = ws.expect("offer").await;
    ws.send(json!({"type": "offer_response", "offer_id": offer["offer_id"], "accept": false}))
        .await;
    crate::orders::eventually("the refusal is on record", || async {
        http.get_auth(&offers, &admin).await.json()[0]["status"] == "rejected"
    })
    .await;

    kill_nine(server);
    drop(ws);

    // Back up, the order is dispatching again and the only rider is the one who refused it.
    let server = start(&db);
    let http = &server.http;
    let admin = http.admin_token().await;
    // Kept open (not dropped) while the matcher runs its batches.
    let _rider_socket = online_rider(http, &rider).await;
    let batch = || set_dispatch(http, &admin, false);
    // Each answer follows a batch run by every shard. Once the order (with its refusals
    // loaded) and the free rider are both in the matcher, a batch runs with both in view
    // and must still make no offer.
    crate::orders::eventually("order and rider back in the matcher", || async {
        let s = batch().await;
        s["waiting_orders"] == 1 && s["free_riders"] == 1
    })
    .await;
    let after = batch().await;
    assert_eq!(after["open_offers"], 0, "{after}");
    assert_eq!(after["waiting_orders"], 1, "{after}");
    // Not even one offer that then lapsed: this server has made none.
    let metrics = http.get("/metrics").await.text();
    assert!(
        metrics.contains("medify_offers_total{outcome=\"made\"} 0"),
        "{metrics}"
    );
    drop(server);
    remove_db(&db);
}
