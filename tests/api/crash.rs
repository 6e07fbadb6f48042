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
    start_with(db, &[])
}

/// [`start`] with more environment.
fn start_with(db: &std::path::Path, extra: &[(&str, String)]) -> Process {
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
        .envs(extra.iter().map(|(k, v)| (*k, v.as_str())))
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

/// A mail relay that accepts connections and never says a word: every send waits for its
/// timeout. The connections are kept open for the life of the test.
fn silent_smtp() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().map_while(Result::ok) {
            held.push(stream);
        }
    });
    port
}

/// Notifications are not lost to a crash or held up by a relay that never answers: with
/// the mail relay silent, customers keep ordering and cancelling (publishing never waits
/// on the notification handler), the process is killed with every notification still
/// owed, and after the restart each customer-facing event has exactly one notification,
/// sent once.
#[actix_web::test]
async fn notifications_outlive_kill_nine_and_a_silent_mail_relay() {
    let db = std::env::temp_dir().join(format!("medify-notify9-{}.db", uuid::Uuid::now_v7()));
    let silent = silent_smtp();
    let server = start_with(&db, &[("SMTP_URL", format!("smtp://127.0.0.1:{silent}"))]);
    let http = &server.http;
    let admin = http.admin_token().await;
    let (_, medicine) = http.stocked_pharmacy(&admin, "P", 12.97, 77.59, 50).await;
    let mut customers = Vec::new();
    for _ in 0..4 {
        let (_, customer) = http.user_token("customer").await;
        let placed = http
            .place_order(&customer, &[(medicine, 1)], 12.98, 77.60)
            .await;
        assert_eq!(placed.status, 201, "{}", placed.text());
        let id = placed.json()["id"].as_str().expect("id").to_owned();
        let cancelled = http
            .post_auth(
                &format!("/api/v1/orders/{id}/cancel"),
                &customer,
                &json!({}),
            )
            .await;
        assert_eq!(cancelled.status, 200, "{}", cancelled.text());
        customers.push(customer);
    }
    // The handler is stuck on the first e-mail: nothing has been sent.
    let first = http
        .get_auth("/api/v1/notifications", &customers[0])
        .await
        .json();
    assert!(
        first["items"]
            .as_array()
            .is_some_and(|items| items.iter().all(|n| n["status"] != "sent")),
        "{first}"
    );

    kill_nine(server);

    let (port, mail) = crate::smtp::smtp_sink();
    let server = start_with(&db, &[("SMTP_URL", format!("smtp://127.0.0.1:{port}"))]);
    let http = &server.http;
    for customer in &customers {
        crate::orders::eventually("every notification sent", || async {
            let page = http
                .get_auth("/api/v1/notifications", customer)
                .await
                .json();
            let items = page["items"].as_array().cloned().unwrap_or_default();
            items.len() == 2 && items.iter().all(|n| n["status"] == "sent")
        })
        .await;
        let page = http
            .get_auth("/api/v1/notifications", customer)
            .await
            .json();
        let mut kinds: Vec<&str> = page["items"]
            .as_array()
            .expect("items")
            .iter()
            .filter_map(|n| n["type"].as_str())
            .collect();
        kinds.sort_unstable();
        assert_eq!(kinds, vec!["order_cancelled", "order_confirmed"], "{page}");
    }
    // Each went out once: eight e-mails, no more.
    let mails: Vec<String> = mail.try_iter().collect();
    assert_eq!(mails.len(), 8, "{mails:#?}");
    drop(server);
    remove_db(&db);
}
