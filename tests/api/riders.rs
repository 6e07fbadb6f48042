//! Riders over real WebSockets against the real server: handshake, bad input, offers,
//! matching, reconnects, pick-up and delivery.

use std::time::{Duration, Instant};

use actix_codec::Framed;
use awc::ws::{Codec, Frame, Message};
use awc::BoxedSocket;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::asyncapi::{spec, Channel};
use crate::backend_tests;
use crate::helpers::{spawn_app_with, spawn_sibling, sqlite_app, Backend, Http, Options, TestApp};

backend_tests!(
    nearest_of_three_riders_gets_the_offer_and_delivers,
    a_rejected_offer_goes_to_the_next_rider,
    strangers_cannot_move_an_order,
    the_operators_pause_outlives_a_restart,
);

const PHARMACY: (f64, f64) = (12.9716, 77.5946);

/// A socket of the server's (the rider's, a tracking or the ops socket). Every JSON frame
/// it reads is checked against the socket's channel in docs/asyncapi.yaml.
pub struct RiderWs {
    framed: Framed<BoxedSocket, Codec>,
    channel: &'static Channel,
}

impl RiderWs {
    pub async fn connect(http: &Http, token: &str) -> Self {
        Self::connect_to(http, "/ws/rider", token).await
    }

    /// Any of the server's sockets, token in the query, on a new connection (as phones and
    /// browsers open them).
    pub async fn connect_to(http: &Http, path: &str, token: &str) -> Self {
        Self::connect_with(&awc::Client::default(), http, path, token).await
    }

    /// A socket through `client`, whose pool may hand it a kept-alive connection.
    pub async fn connect_with(client: &awc::Client, http: &Http, path: &str, token: &str) -> Self {
        let channel = spec().channel(path);
        let url = format!(
            "{}{path}?access_token={token}",
            http.address.replace("http://", "ws://")
        );
        let (res, framed) = client
            .ws(url)
            .max_frame_size(1 << 20)
            .connect()
            .await
            .expect("WebSocket handshake");
        assert_eq!(res.status().as_u16(), 101);
        Self { framed, channel }
    }

    /// A frame the server sent, as JSON, once the document says the server may send it.
    fn observe(&self, bytes: &[u8]) -> Value {
        let frame: Value = serde_json::from_slice(bytes).expect("JSON frame");
        self.channel.assert_from_server(&frame);
        frame
    }

    /// Sends a frame the server must read as valid: panics first if docs/asyncapi.yaml
    /// does not describe it. (Tests that send bad frames on purpose use [`Self::send`].)
    pub async fn send_valid(&mut self, frame: Value) {
        self.channel.assert_to_server(&frame);
        self.send(frame).await;
    }

    pub async fn send(&mut self, frame: Value) {
        self.framed
            .send(Message::Text(frame.to_string().into()))
            .await
            .expect("send");
    }

    /// Queues every frame, then writes them together, so the server reads them as one
    /// burst.
    pub async fn burst(&mut self, frames: &[Value]) {
        for frame in frames {
            self.framed
                .feed(Message::Text(frame.to_string().into()))
                .await
                .expect("feed");
        }
        self.framed.flush().await.expect("flush");
    }

    pub async fn send_raw(&mut self, text: String) {
        self.framed
            .send(Message::Text(text.into()))
            .await
            .expect("send");
    }

    /// The next JSON frame (pings answered), or `None` if the server closed the socket,
    /// with the close code.
    pub async fn next(&mut self) -> Result<Value, Option<u16>> {
        // One deadline for the whole wait: server pings must not keep it alive forever.
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let frame = actix_web::rt::time::timeout(left, self.framed.next())
                .await
                .expect("no frame within 15 s");
            match frame {
                Some(Ok(Frame::Text(bytes))) => return Ok(self.observe(&bytes)),
                Some(Ok(Frame::Ping(p))) => {
                    let _ = self.framed.send(Message::Pong(p)).await;
                }
                Some(Ok(Frame::Close(reason))) => return Err(reason.map(|r| u16::from(r.code))),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return Err(None),
            }
        }
    }

    /// Reads frames until one of type `kind`; panics on a close, or after 30 s.
    pub async fn expect(&mut self, kind: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            assert!(Instant::now() < deadline, "no {kind} frame within 30 s");
            match self.next().await {
                Ok(v) if v["type"] == kind => return v,
                Ok(_) => continue,
                Err(code) => panic!("socket closed ({code:?}) while waiting for {kind}"),
            }
        }
    }

    /// Reads until the server closes the socket; its close code.
    pub async fn close_code(&mut self) -> Option<u16> {
        loop {
            if let Err(code) = self.next().await {
                return code;
            }
        }
    }

    /// Sends a ping and waits (up to 15 s) for the pong carrying its payload.
    pub async fn ping_pong(&mut self) {
        let payload = b"are you there".to_vec();
        self.framed
            .send(Message::Ping(payload.clone().into()))
            .await
            .expect("send ping");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match actix_web::rt::time::timeout(left, self.framed.next())
                .await
                .expect("no pong within 15 s")
            {
                Some(Ok(Frame::Pong(p))) if p[..] == payload[..] => return,
                Some(Ok(Frame::Text(bytes))) => {
                    self.observe(&bytes);
                }
                Some(Ok(_)) => {}
                other => panic!("socket ended while waiting for a pong: {other:?}"),
            }
        }
    }

    /// Sends a fix now at `(lat, lng)`.
    pub async fn at(&mut self, lat: f64, lng: f64) {
        let ts = chrono::Utc::now().timestamp_millis();
        self.send_valid(
            json!({"type": "location", "lat": lat, "lng": lng, "ts": ts, "accuracy": 5}),
        )
        .await;
    }
}

struct World {
    admin: String,
    pharmacy: Uuid,
    medicine: Uuid,
    customer: String,
}

async fn world(app: &TestApp) -> World {
    let admin = app.admin_token().await;
    let pharmacy = app
        .create_pharmacy(&admin, "Hub", PHARMACY.0, PHARMACY.1)
        .await;
    let medicine = app
        .create_medicine(&admin, "Cetirizine", None, None, 150)
        .await;
    assert_eq!(
        app.put_stock(&admin, pharmacy, &[(medicine, 50)])
            .await
            .status,
        200
    );
    let (_, customer) = app.user_token("customer").await;
    World {
        admin,
        pharmacy,
        medicine,
        customer,
    }
}

/// A rider online, free, at `(lat, lng)`; returns their id, token and socket.
async fn rider_at(app: &TestApp, lat: f64, lng: f64) -> (Uuid, String, RiderWs) {
    let (user, token) = app.user_token("rider").await;
    let mut ws = RiderWs::connect(app, &token).await;
    let welcome = ws.expect("welcome").await;
    assert_eq!(welcome["rider_id"], user["id"]);
    assert_eq!(welcome["available"], false);
    assert_eq!(welcome["active_order"], Value::Null);
    assert_eq!(welcome["pending_offer"], Value::Null);
    ws.at(lat, lng).await;
    ws.send(json!({"type": "availability", "available": true}))
        .await;
    let id = Uuid::parse_str(user["id"].as_str().expect("id")).expect("uuid");
    (id, token, ws)
}

/// Polls `GET /riders` (as `admin`) until `done` holds for its items.
async fn until_riders(app: &TestApp, admin: &str, what: &str, done: impl Fn(&[Value]) -> bool) {
    let start = Instant::now();
    loop {
        let page = app
            .get_auth("/api/v1/riders?per_page=100", admin)
            .await
            .json();
        if done(page["items"].as_array().expect("items")) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "never {what}: {page}"
        );
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the fleet shows `n` free riders.
async fn free_riders(app: &TestApp, admin: &str, n: usize) {
    until_riders(app, admin, "free", |items| {
        let free = items
            .iter()
            .filter(|r| r["state"] == "free" && !r["last_location"].is_null())
            .count();
        free >= n
    })
    .await;
}

async fn order(app: &TestApp, w: &World, qty: i64, lat: f64, lng: f64) -> Value {
    let res = app
        .place_order(&w.customer, &[(w.medicine, qty)], lat, lng)
        .await;
    assert_eq!(res.status, 201, "{}", res.text());
    res.json()
}

async fn nearest_of_three_riders_gets_the_offer_and_delivers(app: TestApp) {
    let w = world(&app).await;
    let (_, _, mut far) = rider_at(&app, PHARMACY.0 + 0.03, PHARMACY.1).await; // ~3.3 km
    let (near_id, _, mut near) = rider_at(&app, PHARMACY.0 + 0.003, PHARMACY.1).await; // ~330 m
    let (_, _, mut mid) = rider_at(&app, PHARMACY.0 + 0.01, PHARMACY.1).await; // ~1.1 km
    free_riders(&app, &w.admin, 3).await;

    let placed = order(&app, &w, 2, PHARMACY.0 - 0.01, PHARMACY.1).await;
    let order_id = placed["id"].as_str().expect("id").to_owned();
    let code = placed["delivery_code"].as_str().expect("code").to_owned();
    let offer = near.expect("offer").await;
    assert_eq!(offer["order_id"], order_id);
    assert_eq!(offer["pickup"]["name"], "Hub");
    assert!(
        (300..=360).contains(&offer["distance_m"].as_i64().unwrap_or(0)),
        "{offer}"
    );
    assert!(offer["expires_at"].as_str().unwrap_or("").ends_with('Z'));

    near.send(json!({"type": "offer_response", "offer_id": offer["offer_id"], "accept": true}))
        .await;
    let assigned = near.expect("assigned").await;
    assert_eq!(assigned["order_id"], order_id);
    let view = app
        .get_auth(&format!("/api/v1/orders/{order_id}"), &w.customer)
        .await
        .json();
    assert_eq!(view["status"], "assigned");
    assert_eq!(view["rider"]["id"], near_id.to_string());
    let riders = app.get_auth("/api/v1/riders", &w.admin).await.json();
    let me = riders["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|r| r["id"] == near_id.to_string())
        .cloned()
        .expect("listed");
    assert_eq!(
        (me["state"].as_str(), me["online"].as_bool()),
        (Some("on_delivery"), Some(true)),
        "{me}"
    );
    assert_eq!(me["active_order_id"], order_id);

    // Delivering before pick-up is out of order.
    near.send(
        json!({"type": "order_status", "order_id": order_id, "status": "delivered", "code": code}),
    )
    .await;
    assert_eq!(near.expect("error").await["code"], "conflict");
    near.send(json!({"type": "order_status", "order_id": order_id, "status": "picked_up"}))
        .await;
    let start = Instant::now();
    while app.stock_of(w.pharmacy, w.medicine).await != (48, 0) {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "pick-up never committed stock"
        );
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    near.send(json!({"type": "order_status", "order_id": order_id, "status": "delivered", "code": "xxxx"})).await;
    assert_eq!(near.expect("error").await["code"], "invalid_code");
    near.send(
        json!({"type": "order_status", "order_id": order_id, "status": "delivered", "code": code}),
    )
    .await;
    let start = Instant::now();
    loop {
        let v = app
            .get_auth(&format!("/api/v1/orders/{order_id}"), &w.customer)
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
    // Nobody else was offered anything.
    for ws in [&mut far, &mut mid] {
        ws.send(json!({"type": "availability", "available": true}))
            .await;
        ws.send(json!({"type": "ping-ish"})).await;
        let next = ws.next().await.expect("frame");
        assert_eq!(next["code"], "invalid_message", "{next}");
    }
}

async fn a_rejected_offer_goes_to_the_next_rider(app: TestApp) {
    let w = world(&app).await;
    let (_, _, mut near) = rider_at(&app, PHARMACY.0 + 0.002, PHARMACY.1).await;
    let (next_id, _, mut next) = rider_at(&app, PHARMACY.0 + 0.02, PHARMACY.1).await;
    free_riders(&app, &w.admin, 2).await;
    let placed = order(&app, &w, 1, PHARMACY.0, PHARMACY.1 + 0.01).await;
    let offer = near.expect("offer").await;
    near.send(json!({"type": "offer_response", "offer_id": offer["offer_id"], "accept": false}))
        .await;
    let second = next.expect("offer").await;
    assert_eq!(second["order_id"], placed["id"]);
    assert_ne!(second["offer_id"], offer["offer_id"]);
    // The first rider cannot take it back.
    near.send(json!({"type": "offer_response", "offer_id": offer["offer_id"], "accept": true}))
        .await;
    assert_eq!(near.expect("error").await["code"], "not_found");
    next.send(json!({"type": "offer_response", "offer_id": second["offer_id"], "accept": true}))
        .await;
    next.expect("assigned").await;
    let view = app
        .get_auth(
            &format!("/api/v1/orders/{}", placed["id"].as_str().expect("id")),
            &w.customer,
        )
        .await
        .json();
    assert_eq!(view["rider"]["id"], next_id.to_string());
    // The record of offers (written in batches, within a second): who was asked, how far,
    // and how each ended. Admins only.
    let path = format!(
        "/api/v1/orders/{}/offers",
        placed["id"].as_str().expect("id")
    );
    let start = Instant::now();
    let offers = loop {
        let offers = app.get_auth(&path, &w.admin).await.json();
        let ended = offers
            .as_array()
            .is_some_and(|o| o.len() == 2 && o.iter().all(|offer| offer["status"] != "pending"));
        if ended {
            break offers;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "offers never recorded: {offers}"
        );
        actix_web::rt::time::sleep(Duration::from_millis(25)).await;
    };
    assert_eq!(offers[0]["id"], offer["offer_id"]);
    assert_eq!(offers[0]["status"], "rejected");
    assert_eq!(offers[0]["distance_m"], offer["distance_m"]);
    assert!(offers[0]["responded_at"].is_string(), "{offers}");
    assert_eq!(offers[1]["id"], second["offer_id"]);
    assert_eq!(offers[1]["rider_id"], next_id.to_string());
    assert_eq!(offers[1]["status"], "accepted");
    assert_eq!(app.get_auth(&path, &w.customer).await.status, 403);
    let unknown = format!("/api/v1/orders/{}/offers", Uuid::now_v7());
    assert_eq!(app.get_auth(&unknown, &w.admin).await.status, 404);
}

async fn strangers_cannot_move_an_order(app: TestApp) {
    let w = world(&app).await;
    let (_, _, mut rider) = rider_at(&app, PHARMACY.0 + 0.002, PHARMACY.1).await;
    free_riders(&app, &w.admin, 1).await;
    let placed = order(&app, &w, 1, PHARMACY.0, PHARMACY.1).await;
    let offer = rider.expect("offer").await;
    rider
        .send(json!({"type": "offer_response", "offer_id": offer["offer_id"], "accept": true}))
        .await;
    rider.expect("assigned").await;
    let (_, stranger_token) = app.user_token("rider").await;
    let mut stranger = RiderWs::connect(&app, &stranger_token).await;
    stranger.expect("welcome").await;
    stranger
        .send(json!({"type": "order_status", "order_id": placed["id"], "status": "picked_up"}))
        .await;
    assert_eq!(stranger.expect("error").await["code"], "forbidden");
    stranger
        .send(json!({"type": "order_status", "order_id": Uuid::now_v7(), "status": "picked_up"}))
        .await;
    assert_eq!(stranger.expect("error").await["code"], "not_found");
    stranger
        .send(json!({"type": "offer_response", "offer_id": Uuid::now_v7(), "accept": true}))
        .await;
    assert_eq!(stranger.expect("error").await["code"], "not_found");
}

#[actix_web::test]
async fn handshake_needs_a_rider_token() {
    let app = spawn_app_with(Backend::Sqlite, Options::default())
        .await
        .expect("sqlite");
    // Each attempt on a new connection, as a phone makes it: the server answers these
    // without handing the connection to actix-http's dispatcher.
    let upgrade = |token: Option<String>| {
        let mut req = awc::Client::default()
            .get(app.url("/ws/rider"))
            .insert_header(("upgrade", "websocket"))
            .insert_header(("connection", "upgrade"))
            .insert_header(("sec-websocket-version", "13"))
            .insert_header(("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="));
        if let Some(t) = token {
            req = req.insert_header(("authorization", format!("Bearer {t}")));
        }
        async move {
            let mut res = req.send().await.expect("send");
            let body = res.body().await.expect("body");
            let problem: Value = serde_json::from_slice(&body).expect("problem JSON");
            (
                res.status().as_u16(),
                problem["code"].as_str().map(str::to_owned),
            )
        }
    };
    assert_eq!(upgrade(None).await, (401, Some("unauthorized".into())));
    assert_eq!(
        upgrade(Some("not-a-token".into())).await,
        (401, Some("unauthorized".into()))
    );
    let (_, customer) = app.user_token("customer").await;
    assert_eq!(
        upgrade(Some(customer)).await,
        (403, Some("forbidden".into()))
    );
    let admin = app.admin_token().await;
    assert_eq!(upgrade(Some(admin)).await, (403, Some("forbidden".into())));
    let (_, rider) = app.user_token("rider").await;
    // A rider's GET without the WebSocket headers is a bad request, not an upgrade.
    let res = awc::Client::default()
        .get(app.url("/ws/rider"))
        .insert_header(("authorization", format!("Bearer {rider}")))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status().as_u16(), 400);
    let mut ws = RiderWs::connect(&app, &rider).await; // asserts 101 Switching Protocols
    ws.expect("welcome").await;
    assert_eq!(rider_sockets(&app).await, (1, 0));
}

/// Rider sockets opened so far: (direct, through the dispatcher).
async fn rider_sockets(app: &TestApp) -> (u64, u64) {
    let metrics = app.get("/metrics").await.text();
    let count = |transport: &str| {
        let series = format!("medify_rider_sockets_total{{transport=\"{transport}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(series.as_str()))
            .and_then(|v| v.trim().parse().ok())
            .expect("rider socket counter")
    };
    (count("direct"), count("dispatcher"))
}

/// A client text frame (masked, as RFC 6455 requires of clients).
fn masked_text(text: &str) -> Vec<u8> {
    let key = [0x37, 0xfa, 0x21, 0x3d];
    let payload = text.as_bytes();
    assert!(payload.len() < 126, "short frames only");
    let mut frame = vec![0x81, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&key);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    frame
}

/// Reads one unmasked server frame: (opcode, payload).
async fn server_frame(tcp: &mut tokio::net::TcpStream) -> (u8, Vec<u8>) {
    use tokio::io::AsyncReadExt;
    let mut head = [0u8; 2];
    tcp.read_exact(&mut head).await.expect("frame head");
    let len = match head[1] & 0x7f {
        126 => {
            let mut ext = [0u8; 2];
            tcp.read_exact(&mut ext).await.expect("length");
            u16::from_be_bytes(ext) as usize
        }
        127 => panic!("unexpectedly large frame"),
        n => n as usize,
    };
    let mut payload = vec![0u8; len];
    tcp.read_exact(&mut payload).await.expect("payload");
    (head[0] & 0x0f, payload)
}

/// The next text frame's JSON, skipping pings.
async fn server_json(tcp: &mut tokio::net::TcpStream) -> Value {
    loop {
        match server_frame(tcp).await {
            (0x1, payload) => return serde_json::from_slice(&payload).expect("JSON"),
            (0x9, _) => continue,
            (op, _) => panic!("unexpected opcode {op}"),
        }
    }
}

#[actix_web::test]
async fn the_rider_transport_takes_split_and_early_bytes() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app_with(Backend::Sqlite, Options::default())
        .await
        .expect("sqlite");
    let (_, token) = app.user_token("rider").await;
    let addr = app.address.trim_start_matches("http://").to_owned();
    let mut tcp = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    let head = format!(
        "GET /ws/rider?access_token={token} HTTP/1.1\r\nHost: {addr}\r\n\
         Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    // The request line in two writes, then the rest of the head with a first frame right
    // behind it, before the 101 has come back.
    tcp.write_all(&head.as_bytes()[..9]).await.expect("write");
    let mut rest = head.as_bytes()[9..].to_vec();
    rest.extend(masked_text("not json"));
    tcp.write_all(&rest).await.expect("write");
    let mut response = Vec::new();
    while !response.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        tcp.read_exact(&mut byte).await.expect("response head");
        response.push(byte[0]);
    }
    let response = String::from_utf8(response)
        .expect("ASCII head")
        .to_lowercase();
    assert!(response.starts_with("http/1.1 101"), "{response}");
    // RFC 6455's own example key and answer.
    assert!(
        response.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{response}"
    );
    // Welcome and the answer to the early frame, in whichever order the session and the
    // socket produce them.
    let mut kinds = vec![
        server_json(&mut tcp).await["type"]
            .as_str()
            .map(str::to_owned),
        server_json(&mut tcp).await["type"]
            .as_str()
            .map(str::to_owned),
    ];
    kinds.sort();
    assert_eq!(
        kinds,
        [Some("error".to_owned()), Some("welcome".to_owned())]
    );
    // A frame dribbled one byte per write is put back together.
    let ts = chrono::Utc::now().timestamp_millis() + 3_600_000;
    for byte in masked_text(&format!(
        r#"{{"type":"location","lat":12.9,"lng":77.5,"ts":{ts}}}"#
    )) {
        tcp.write_all(&[byte]).await.expect("write");
    }
    let refused = server_json(&mut tcp).await;
    assert_eq!(refused["code"], "invalid_location", "{refused}");
    assert_eq!(rider_sockets(&app).await, (1, 0));
}

#[actix_web::test]
async fn a_rider_socket_on_a_kept_alive_connection_works_too() {
    let app = spawn_app_with(Backend::Sqlite, Options::default())
        .await
        .expect("sqlite");
    let (_, token) = app.user_token("rider").await;
    // One connection, one pool slot: the upgrade reuses the connection /healthz used.
    let client = awc::Client::builder()
        .connector(awc::Connector::new().limit(1))
        .finish();
    let mut res = client
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(res.status().as_u16(), 200);
    res.body()
        .await
        .expect("body read whole, so the connection goes back to the pool");
    let mut ws = RiderWs::connect_with(&client, &app, "/ws/rider", &token).await;
    ws.expect("welcome").await;
    assert_eq!(rider_sockets(&app).await, (0, 1));
    // The same rules hold on this path: a bad frame gets an error and the socket goes on;
    // pings are answered; a big frame closes with 1009.
    ws.send_raw("not json".into()).await;
    assert_eq!(ws.expect("error").await["code"], "invalid_message");
    ws.send(json!({"type": "availability", "available": true}))
        .await;
    ws.ping_pong().await;
    ws.send_raw("x".repeat(20 * 1024)).await;
    assert_eq!(ws.close_code().await, Some(1009));
}

/// A `ts` of i64::MIN used to be accepted and then made the next jump's time difference
/// wrap, so a rider could teleport. It is refused now, and the jump is measured against
/// the last real fix.
#[actix_web::test]
async fn forged_timestamps_cannot_teleport_a_rider() {
    let app = spawn_app_with(Backend::Sqlite, Options::default())
        .await
        .expect("sqlite");
    let (_, _, mut ws) = rider_at(&app, 12.97, 77.59).await;
    for ts in [
        i64::MIN,
        0,
        chrono::Utc::now().timestamp_millis() - 25 * 3_600_000,
    ] {
        ws.send(json!({"type": "location", "lat": 12.97, "lng": 77.59, "ts": ts}))
            .await;
        let err = ws.expect("error").await;
        assert_eq!(err["code"], "invalid_location", "ts {ts}: {err}");
    }
    // 1 700 km north, a second later.
    let now = chrono::Utc::now().timestamp_millis();
    ws.send(json!({"type": "location", "lat": 28.61, "lng": 77.21, "ts": now + 1_000}))
        .await;
    let err = ws.expect("error").await;
    assert_eq!(err["code"], "invalid_location", "{err}");
    assert!(
        err["message"].as_str().unwrap_or_default().contains("jump"),
        "{err}"
    );
}

#[actix_web::test]
async fn bad_frames_get_errors_and_the_socket_stays_open() {
    let app = spawn_app_with(Backend::Sqlite, Options::default())
        .await
        .expect("sqlite");
    let admin = app.admin_token().await;
    let (id, _, mut ws) = rider_at(&app, 12.97, 77.59).await;
    let now = chrono::Utc::now().timestamp_millis();
    for (frame, code) in [
        ("not json".to_owned(), "invalid_message"),
        (json!({"no": "type"}).to_string(), "invalid_message"),
        (json!({"type": "dance"}).to_string(), "invalid_message"),
        (
            json!({"type": "location", "lat": "north", "lng": 1, "ts": now}).to_string(),
            "invalid_message",
        ),
        (
            json!({"type": "availability", "available": "yes"}).to_string(),
            "invalid_message",
        ),
        (
            json!({"type": "locations", "points": []}).to_string(),
            "invalid_message",
        ),
        (
            json!({"type": "location", "lat": 91, "lng": 0, "ts": now}).to_string(),
            "invalid_location",
        ),
        (
            json!({"type": "location", "lat": 12.97, "lng": 77.59, "ts": now + 120_000})
                .to_string(),
            "invalid_location",
        ),
        (
            json!({"type": "location", "lat": 13.5, "lng": 77.59, "ts": now + 1_000}).to_string(),
            "invalid_location",
        ),
        (
            json!({"type": "order_status", "order_id": "nope", "status": "picked_up"}).to_string(),
            "invalid_message",
        ),
    ] {
        ws.send_raw(frame.clone()).await;
        let reply = ws
            .next()
            .await
            .unwrap_or_else(|c| panic!("closed ({c:?}) after {frame}"));
        assert_eq!(reply["type"], "error", "{frame}: {reply}");
        assert_eq!(reply["code"], code, "{frame}: {reply}");
    }
    // A batch: the bad point is named by index, the others apply. (A few seconds ahead,
    // so the 15 m step from the first fix is a walking pace.)
    let t = chrono::Utc::now().timestamp_millis() + 5_000;
    ws.send(json!({"type": "locations", "points": [
        {"lat": 12.9701, "lng": 77.5901, "ts": t},
        {"lat": 95.0, "lng": 77.59, "ts": t + 100},
        {"lat": 12.9702, "lng": 77.5902, "ts": t + 2_000},
    ]}))
    .await;
    let err = ws.expect("error").await;
    assert_eq!(
        (err["code"].as_str(), err["index"].as_u64()),
        (Some("invalid_location"), Some(1)),
        "{err}"
    );
    let start = Instant::now();
    loop {
        let page = app.get_auth("/api/v1/riders", &admin).await.json();
        let me = page["items"]
            .as_array()
            .expect("items")
            .iter()
            .find(|r| r["id"] == id.to_string())
            .cloned()
            .expect("listed");
        if me["last_location"]["lat"] == 12.9702 {
            assert_eq!(me["available"], true);
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "batch not applied: {me}"
        );
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    // An older fix is accepted but does not move the live position.
    ws.send(json!({"type": "location", "lat": 12.9703, "lng": 77.5903, "ts": t - 10_000}))
        .await;
    ws.send(json!({"type": "dance"})).await;
    assert_eq!(ws.expect("error").await["code"], "invalid_message");
    let page = app.get_auth("/api/v1/riders", &admin).await.json();
    let me = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|r| r["id"] == id.to_string())
        .cloned()
        .expect("listed");
    assert_eq!(me["last_location"]["lat"], 12.9702);
    let metrics = app.get("/metrics").await.text();
    assert!(
        metrics.contains("medify_ws_connections{kind=\"rider\"} 1"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("medify_location_updates_total{outcome=\"accepted\"} 0"),
        "{metrics}"
    );
    for reason in ["out_of_range", "future", "jump"] {
        assert!(
            !metrics.contains(&format!(
                "medify_location_rejected_total{{reason=\"{reason}\"}} 0"
            )),
            "{reason}: {metrics}"
        );
    }
}

#[actix_web::test]
async fn oversized_frames_close_with_1009() {
    let app = spawn_app_with(Backend::Sqlite, Options::default())
        .await
        .expect("sqlite");
    let (_, token) = app.user_token("rider").await;
    let mut ws = RiderWs::connect(&app, &token).await;
    ws.expect("welcome").await;
    ws.send_raw(format!(
        "{{\"type\":\"availability\",\"pad\":\"{}\"}}",
        "x".repeat(20 * 1024)
    ))
    .await;
    assert_eq!(ws.close_code().await, Some(1009));
}

#[actix_web::test]
async fn location_floods_are_rate_limited_once_a_second() {
    let app = spawn_app_with(Backend::Sqlite, Options::default())
        .await
        .expect("sqlite");
    let (_, token) = app.user_token("rider").await;
    let mut ws = RiderWs::connect(&app, &token).await;
    ws.expect("welcome").await;
    let t = chrono::Utc::now().timestamp_millis();
    for i in 0..25 {
        ws.send(json!({"type": "location", "lat": 12.97, "lng": 77.59, "ts": t + i}))
            .await;
    }
    ws.send(json!({"type": "dance"})).await;
    let mut limited = 0;
    loop {
        let frame = ws.next().await.expect("open");
        if frame["code"] == "rate_limited" {
            limited += 1;
        } else if frame["code"] == "invalid_message" {
            break;
        }
    }
    assert_eq!(
        limited, 1,
        "one rate_limited error per second, however many frames were dropped"
    );
    let metrics = app.get("/metrics").await.text();
    assert!(
        !metrics.contains("medify_location_updates_total{outcome=\"rate_limited\"} 0"),
        "{metrics}"
    );
}

/// Every frame kind goes through one bounded queue to the session: a burst of
/// `order_status` frames (each about an order that is not the rider's) is answered from the
/// session's memory, and past the queue's bound frames are shed, counted and answered
/// `rate_limited`; the socket keeps working.
#[actix_web::test]
async fn a_flood_of_any_frame_kind_is_bounded() {
    let app = sqlite_app(&[("RIDER_FRAME_QUEUE", "1")]).await;
    let admin = app.admin_token().await;
    let (id, _, mut ws) = rider_at(&app, 12.97, 77.59).await;
    let flood: Vec<Value> = (0..30)
        .map(|_| json!({"type": "order_status", "order_id": Uuid::now_v7(), "status": "picked_up"}))
        .collect();
    ws.burst(&flood).await;
    let mut not_found = 0;
    loop {
        let err = ws.expect("error").await;
        match err["code"].as_str() {
            Some("not_found") => not_found += 1,
            Some("rate_limited") => break,
            other => panic!("unexpected answer {other:?}: {err}"),
        }
    }
    assert!(not_found < 30, "some frames were shed");
    assert_eq!(app.state.orders.len(), 0, "no order actor was started");
    let metrics = app.get("/metrics").await.text();
    let shed = metrics
        .lines()
        .find(|l| l.starts_with("medify_rider_frames_shed_total{kind=\"order_status\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse::<u64>().ok())
        .expect("the shed counter");
    assert!(shed > 0, "{metrics}");
    // Still served: availability goes through the same queue.
    ws.send(json!({"type": "availability", "available": false}))
        .await;
    until_unavailable(&app, &admin, id).await;
}

/// Waits until `GET /riders` shows `rider` unavailable.
async fn until_unavailable(app: &TestApp, admin: &str, rider: Uuid) {
    until_riders(app, admin, "unavailable", |items| {
        items
            .iter()
            .any(|r| r["id"] == rider.to_string() && r["available"] == false)
    })
    .await;
}

/// A rider who accepts and never picks up does not hold the order (and its stock)
/// forever: after `PICKUP_TIMEOUT_S` it goes back to dispatching without him, he is told
/// `order_cancelled`, the customer is notified, and the next rider gets the offer.
#[actix_web::test]
async fn an_assigned_order_not_picked_up_goes_to_another_rider() {
    let app = sqlite_app(&[("PICKUP_TIMEOUT_S", "1")]).await;
    let w = world(&app).await;
    let (_, _, mut near) = rider_at(&app, PHARMACY.0 + 0.002, PHARMACY.1).await;
    free_riders(&app, &w.admin, 1).await;
    let placed = order(&app, &w, 1, PHARMACY.0, PHARMACY.1).await;
    let id = placed["id"].as_str().expect("id").to_owned();
    let offer = near.expect("offer").await;
    near.send(json!({"type": "offer_response", "offer_id": offer["offer_id"], "accept": true}))
        .await;
    near.expect("assigned").await;
    // The second rider comes online only now, so the first offer was the near one's.
    let (_, _, mut next) = rider_at(&app, PHARMACY.0 + 0.02, PHARMACY.1).await;

    let cancelled = near.expect("order_cancelled").await;
    assert_eq!(cancelled["order_id"], id.as_str());
    let second = next.expect("offer").await;
    assert_eq!(second["order_id"], id.as_str());
    // He can no longer act on it.
    near.send(json!({"type": "order_status", "order_id": id, "status": "picked_up"}))
        .await;
    assert_eq!(near.expect("error").await["code"], "forbidden");
    let view = app
        .get_auth(&format!("/api/v1/orders/{id}"), &w.customer)
        .await
        .json();
    assert_eq!(view["status"], "dispatching", "{view}");
    assert_eq!(view["rider"], Value::Null, "{view}");
    assert_eq!(
        app.stock_of(w.pharmacy, w.medicine).await,
        (50, 1),
        "still held"
    );
    crate::orders::eventually("the customer is told", || async {
        crate::orders::notification_types(&app, &w.customer)
            .await
            .contains(&"rider_unassigned".to_owned())
    })
    .await;
    // The next rider takes it all the way.
    next.send(json!({"type": "offer_response", "offer_id": second["offer_id"], "accept": true}))
        .await;
    next.expect("assigned").await;
    next.send(json!({"type": "order_status", "order_id": id, "status": "picked_up"}))
        .await;
    next.send(json!({"type": "order_status", "order_id": id, "status": "delivered", "code": placed["delivery_code"]}))
        .await;
    crate::orders::eventually("delivered by the second rider", || async {
        let v = app
            .get_auth(&format!("/api/v1/orders/{id}"), &w.customer)
            .await
            .json();
        v["status"] == "delivered"
    })
    .await;
}

#[actix_web::test]
async fn expired_offers_go_to_the_next_rider() {
    let app = spawn_app_with(
        Backend::Sqlite,
        Options {
            env: vec![("OFFER_TIMEOUT_S", "1".to_owned())],
            ..Options::default()
        },
    )
    .await
    .expect("sqlite");
    let w = world(&app).await;
    let (_, _, mut near) = rider_at(&app, PHARMACY.0 + 0.002, PHARMACY.1).await;
    let (_, _, mut next) = rider_at(&app, PHARMACY.0 + 0.02, PHARMACY.1).await;
    free_riders(&app, &w.admin, 2).await;
    let placed = order(&app, &w, 1, PHARMACY.0, PHARMACY.1).await;
    let offer = near.expect("offer").await;
    let expired = near.expect("offer_expired").await;
    assert_eq!(expired["offer_id"], offer["offer_id"]);
    let second = next.expect("offer").await;
    assert_eq!(second["order_id"], placed["id"]);
    near.send(json!({"type": "offer_response", "offer_id": offer["offer_id"], "accept": true}))
        .await;
    assert_eq!(near.expect("error").await["code"], "not_found");
    let metrics = app.get("/metrics").await.text();
    let count = |outcome: &str| -> u64 {
        let prefix = format!("medify_offers_total{{outcome=\"{outcome}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    assert!(count("made") >= 2 && count("expired") >= 1, "{metrics}");
}

#[actix_web::test]
async fn batched_assignment_beats_greedy_nearest_first() {
    // On one east-west line: pickup One at 0 km, pickup Two at +2 km, rider A at +0.8 km,
    // rider B at -1 km. Greedy gives order One its nearest rider, A (0.8 km), and sends B
    // 3 km to Two: 3.8 km. The optimum gives One to B (1 km) and Two to A (1.2 km): 2.2 km.
    // All in the middle of one matcher region, so one shard solves the whole batch (shards
    // each solve their own region's orders).
    let centre = h3o::LatLng::from(region(12.97, 77.59));
    let (lat, lng) = (centre.lat(), centre.lng());
    let km = 1.0 / (111.195 * lat.to_radians().cos());
    for (strategy, a_gets_first) in [("batched", false), ("greedy", true)] {
        let app = spawn_app_with(
            Backend::Sqlite,
            Options {
                env: vec![("MATCHING", strategy.to_owned())],
                ..Options::default()
            },
        )
        .await
        .expect("sqlite");
        let admin = app.admin_token().await;
        let medicine = app.create_medicine(&admin, "M", None, None, 100).await;
        let p1 = app.create_pharmacy(&admin, "One", lat, lng).await;
        let p2 = app
            .create_pharmacy(&admin, "Two", lat, lng + 2.0 * km)
            .await;
        for p in [p1, p2] {
            assert_eq!(app.put_stock(&admin, p, &[(medicine, 5)]).await.status, 200);
        }
        let (_, customer) = app.user_token("customer").await;
        let paused = app
            .request(
                "PUT",
                "/api/v1/admin/dispatch",
                Some(&admin),
                Some(&json!({"paused": true})),
            )
            .await;
        assert_eq!(paused.status, 200, "{}", paused.text());
        let (_, _, mut a) = rider_at(&app, lat, lng + 0.8 * km).await;
        let (_, _, mut b) = rider_at(&app, lat, lng - km).await;
        free_riders(&app, &admin, 2).await;
        let mut ids = Vec::new();
        for p in [p1, p2] {
            let res = app
                .post_auth(
                    "/api/v1/orders",
                    &customer,
                    &json!({"items": [{"medicine_id": medicine, "qty": 1}], "pharmacy_id": p,
                            "delivery": {"lat": lat + 0.005, "lng": lng + km, "address": "x"}}),
                )
                .await;
            assert_eq!(res.status, 201, "{}", res.text());
            ids.push(res.json()["id"].clone());
        }
        // Both orders and both riders in the matcher (an order waits until its earlier
        // refusals are read back from the offer record) before the one batch runs.
        crate::orders::eventually("both orders and riders in the matcher", || async {
            let held = set_dispatch(&app, &admin, true).await;
            held["waiting_orders"] == 2 && held["free_riders"] == 2
        })
        .await;
        let resumed = app
            .request(
                "PUT",
                "/api/v1/admin/dispatch",
                Some(&admin),
                Some(&json!({"paused": false})),
            )
            .await;
        assert_eq!(resumed.status, 200);
        let (offer_a, offer_b) = (a.expect("offer").await, b.expect("offer").await);
        let first = &ids[0];
        if a_gets_first {
            assert_eq!(&offer_a["order_id"], first, "{strategy}");
        } else {
            assert_eq!(
                &offer_b["order_id"], first,
                "{strategy}: B should take the near pickup"
            );
            assert_eq!(offer_a["order_id"], ids[1], "{strategy}");
        }
        let total = offer_a["distance_m"].as_i64().unwrap_or(0)
            + offer_b["distance_m"].as_i64().unwrap_or(0);
        println!("{strategy}: total pickup distance {total} m");
    }
}

#[actix_web::test]
async fn a_reconnecting_rider_gets_the_pending_offer_back() {
    let app = spawn_app_with(Backend::Sqlite, Options::default())
        .await
        .expect("sqlite");
    let w = world(&app).await;
    let (_, token, mut ws) = rider_at(&app, PHARMACY.0 + 0.002, PHARMACY.1).await;
    free_riders(&app, &w.admin, 1).await;
    let placed = order(&app, &w, 1, PHARMACY.0, PHARMACY.1).await;
    let offer = ws.expect("offer").await;
    // A second connection takes over; the first is closed with 1008.
    let mut again = RiderWs::connect(&app, &token).await;
    let closed = loop {
        match ws.next().await {
            Ok(_) => continue,
            Err(code) => break code,
        }
    };
    assert_eq!(closed, Some(1008));
    let welcome = again.expect("welcome").await;
    assert_eq!(welcome["available"], true);
    assert_eq!(
        welcome["pending_offer"]["offer_id"], offer["offer_id"],
        "{welcome}"
    );
    again
        .send(json!({"type": "offer_response", "offer_id": offer["offer_id"], "accept": true}))
        .await;
    again.expect("assigned").await;
    // And once more: the active order comes back in the welcome.
    drop(again);
    let mut third = RiderWs::connect(&app, &token).await;
    let welcome = third.expect("welcome").await;
    assert_eq!(welcome["active_order"]["id"], placed["id"], "{welcome}");
    assert!(
        welcome["active_order"]["delivery_code"].is_null(),
        "riders never see the code"
    );
}

#[actix_web::test]
async fn the_trail_is_sampled_and_manual_dispatch_offers_at_once() {
    let app = spawn_app_with(Backend::Sqlite, Options::default())
        .await
        .expect("sqlite");
    let w = world(&app).await;
    // Hold automatic offers so the admin's choice is the only one.
    let res = app
        .request(
            "PUT",
            "/api/v1/admin/dispatch",
            Some(&w.admin),
            Some(&json!({"paused": true})),
        )
        .await;
    assert_eq!(res.status, 200);
    let (rider_id, _, mut ws) = rider_at(&app, PHARMACY.0 + 0.002, PHARMACY.1).await;
    free_riders(&app, &w.admin, 1).await;
    let placed = order(&app, &w, 1, PHARMACY.0 - 0.01, PHARMACY.1).await;
    let id = placed["id"].as_str().expect("id").to_owned();
    let res = app
        .post_auth(
            &format!("/api/v1/orders/{id}/assign"),
            &w.admin,
            &json!({"rider_id": rider_id}),
        )
        .await;
    assert_eq!(res.status, 202, "{}", res.text());
    let offer = ws.expect("offer").await;
    assert_eq!(offer["order_id"], id);
    // The rider holds an offer now: another order cannot be offered to them.
    let other = order(&app, &w, 1, PHARMACY.0 - 0.01, PHARMACY.1).await;
    let busy = app
        .post_auth(
            &format!(
                "/api/v1/orders/{}/assign",
                other["id"].as_str().expect("id")
            ),
            &w.admin,
            &json!({"rider_id": rider_id}),
        )
        .await;
    let problem = busy.assert_problem(409, "conflict");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap_or("")
            .contains("not free"),
        "{problem}"
    );
    ws.send(json!({"type": "offer_response", "offer_id": offer["offer_id"], "accept": true}))
        .await;
    ws.expect("assigned").await;

    // Fixes 11 s apart (a few seconds in the future is allowed) are all sampled.
    let t = chrono::Utc::now().timestamp_millis();
    ws.send(json!({"type": "locations", "points": [
        {"lat": PHARMACY.0 + 0.0020, "lng": PHARMACY.1, "ts": t + 1_000},
        {"lat": PHARMACY.0 + 0.0010, "lng": PHARMACY.1, "ts": t + 12_000},
        {"lat": PHARMACY.0 + 0.0001, "lng": PHARMACY.1, "ts": t + 23_000},
    ]}))
    .await;
    let start = Instant::now();
    loop {
        let trail = app
            .get_auth(&format!("/api/v1/orders/{id}/trail"), &w.customer)
            .await
            .json();
        let coords = trail["geometry"]["coordinates"]
            .as_array()
            .map_or(0, Vec::len);
        if coords == 3 {
            assert_eq!(
                trail["properties"]["ts"],
                json!([t + 1_000, t + 12_000, t + 23_000]),
                "{trail}"
            );
            assert_eq!(
                trail["geometry"]["coordinates"][2],
                json!([PHARMACY.1, PHARMACY.0 + 0.0001])
            );
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "trail never written: {trail}"
        );
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_web::test]
async fn a_rider_without_a_fresh_fix_is_not_offered_orders() {
    let app = spawn_app_with(Backend::Sqlite, Options::default())
        .await
        .expect("sqlite");
    let w = world(&app).await;
    // The near rider's only fix is 70 s old: accepted, but too stale to dispatch on.
    let (_, token) = app.user_token("rider").await;
    let mut stale = RiderWs::connect(&app, &token).await;
    stale.expect("welcome").await;
    let old = chrono::Utc::now().timestamp_millis() - 70_000;
    stale
        .send(json!({"type": "location", "lat": PHARMACY.0 + 0.001, "lng": PHARMACY.1, "ts": old}))
        .await;
    stale
        .send(json!({"type": "availability", "available": true}))
        .await;
    let (_, _, mut fresh) = rider_at(&app, PHARMACY.0 + 0.02, PHARMACY.1).await;
    free_riders(&app, &w.admin, 2).await;
    let placed = order(&app, &w, 1, PHARMACY.0, PHARMACY.1).await;
    let offer = fresh.expect("offer").await;
    assert_eq!(
        offer["order_id"], placed["id"],
        "the far but fresh rider gets it"
    );
    // The stale rider got nothing: the next frame it sees answers its own bad frame.
    stale.send(json!({"type": "dance"})).await;
    let next = stale.next().await.expect("open");
    assert_eq!(
        next["code"], "invalid_message",
        "stale rider was sent {next}"
    );
}

/// The matcher region (shard key) of a point with the default settings.
fn region(lat: f64, lng: f64) -> h3o::CellIndex {
    let cell = h3o::LatLng::new(lat, lng)
        .expect("valid")
        .to_cell(h3o::Resolution::Nine);
    cell.parent(h3o::Resolution::Five).expect("coarser")
}

/// Walking east from the test pharmacy: a point about 1 km inside the first region, the
/// first point (in 20 m steps) of the next region, and a point about 1 km inside that one.
fn across_a_region_border() -> ((f64, f64), (f64, f64), (f64, f64)) {
    let step = 0.02 / 111.0; // 20 m of longitude, near enough at this latitude
    let at = |i: i32| (PHARMACY.0, PHARMACY.1 + f64::from(i) * step);
    let home = region(PHARMACY.0, PHARMACY.1);
    let first_out = (1..5_000)
        .find(|i| region(at(*i).0, at(*i).1) != home)
        .expect("a border within 100 km");
    let next = region(at(first_out).0, at(first_out).1);
    let last_in = (first_out..first_out + 50)
        .take_while(|i| region(at(*i).0, at(*i).1) == next)
        .last()
        .expect("the next region");
    (at((first_out - 50).max(0)), at(first_out), at(last_in))
}

#[actix_web::test]
async fn a_rider_across_a_region_border_gets_the_order() {
    let app = spawn_app_with(Backend::Sqlite, Options::default())
        .await
        .expect("sqlite");
    let admin = app.admin_token().await;
    let (inside, border, _) = across_a_region_border();
    assert_ne!(region(inside.0, inside.1), region(border.0, border.1));
    let (_, medicine) = app
        .stocked_pharmacy(&admin, "West", inside.0, inside.1, 5)
        .await;
    let (_, customer) = app.user_token("customer").await;
    // The only rider is in the next region, about a kilometre from the pharmacy.
    let (_, _, mut rider) = rider_at(&app, border.0, border.1).await;
    free_riders(&app, &admin, 1).await;
    let placed = app
        .place_order(&customer, &[(medicine, 1)], inside.0 - 0.01, inside.1)
        .await;
    assert_eq!(placed.status, 201, "{}", placed.text());
    let offer = rider.expect("offer").await;
    assert_eq!(offer["order_id"], placed.json()["id"]);
}

/// Two pickups owned by different matcher shards and a rider within 4.5 km of both whose
/// own region is neither owner's: two shards want the same rider, and neither holds him.
fn two_owners_one_rider() -> [(f64, f64); 3] {
    use medify_actors::geo::Point;
    use medify_actors::matcher::regions::{owner_of, region_of};
    let (res, shard) = (h3o::Resolution::Nine, h3o::Resolution::Five);
    let at = |lat: f64, lng: f64| Point::new(lat, lng).expect("valid");
    let owner = |p: Point| owner_of(p, 5_000.0, res, shard);
    let km = 1.0 / 111.195;
    for i in -30..30 {
        for j in -30..30 {
            let p1 = at(
                PHARMACY.0 + f64::from(i) * km,
                PHARMACY.1 + f64::from(j) * km,
            );
            for bearing in (0..12).map(|b| f64::from(b) * 30f64.to_radians()) {
                // 8.5 km away, the rider half-way.
                let (dlat, dlng) = (bearing.cos() * 8.5 * km, bearing.sin() * 8.5 * km);
                let p2 = at(
                    p1.lat() + dlat,
                    p1.lng() + dlng / p1.lat().to_radians().cos(),
                );
                let rider = at((p1.lat() + p2.lat()) / 2.0, (p1.lng() + p2.lng()) / 2.0);
                let (o1, o2, home) = (owner(p1), owner(p2), region_of(rider, res, shard));
                if o1 != o2
                    && home != o1
                    && home != o2
                    && rider.distance_m(p1) < 4_500.0
                    && rider.distance_m(p2) < 4_500.0
                {
                    return [
                        (p1.lat(), p1.lng()),
                        (p2.lat(), p2.lng()),
                        (rider.lat(), rider.lng()),
                    ];
                }
            }
        }
    }
    panic!("no such pair of pickups within 30 km of the test pharmacy");
}

#[actix_web::test]
async fn two_shards_wanting_one_rider_offer_him_once() {
    let app = spawn_app_with(Backend::Sqlite, Options::default())
        .await
        .expect("sqlite");
    let admin = app.admin_token().await;
    // Two shards own one order each and both want the one rider, who is in a third
    // region, so neither holds him: only the fleet's claim keeps the second from offering
    // him too.
    let [west, east, border] = two_owners_one_rider();
    let (_, west_medicine) = app
        .stocked_pharmacy(&admin, "West", west.0, west.1, 5)
        .await;
    let (_, east_medicine) = app
        .stocked_pharmacy(&admin, "East", east.0, east.1, 5)
        .await;
    let (_, customer) = app.user_token("customer").await;
    set_dispatch(&app, &admin, true).await;
    let (_, _, mut rider) = rider_at(&app, border.0, border.1).await;
    free_riders(&app, &admin, 1).await;
    let mut ids = Vec::new();
    for (medicine, at) in [(west_medicine, west), (east_medicine, east)] {
        let res = app
            .place_order(&customer, &[(medicine, 1)], at.0 - 0.01, at.1)
            .await;
        assert_eq!(res.status, 201, "{}", res.text());
        ids.push(res.json()["id"].clone());
    }
    crate::orders::eventually("both orders and the rider reach their shards", || async {
        let held = set_dispatch(&app, &admin, true).await;
        held["waiting_orders"] == 2 && held["free_riders"] == 1 && held["shards"] == 3
    })
    .await;
    // Both shards run a batch on resume and both want the rider; the figures are taken after
    // those batches (each shard answers in order).
    let resumed = set_dispatch(&app, &admin, false).await;
    assert_eq!(resumed["open_offers"], 1, "{resumed}");
    assert_eq!(resumed["waiting_orders"], 1, "{resumed}");
    let first = rider.expect("offer").await;
    assert!(ids.contains(&first["order_id"]), "{first}");
    // Refused, the rider is free again, and the other region's order finds him.
    rider
        .send(json!({"type": "offer_response", "offer_id": first["offer_id"], "accept": false}))
        .await;
    let second = rider.expect("offer").await;
    assert!(ids.contains(&second["order_id"]), "{second}");
    assert_ne!(second["order_id"], first["order_id"]);
}

/// A hold of automatic offers is the operator's decision, not one process's: a node
/// started afterwards on the same database (a restart, or the next node to run dispatch)
/// holds them too, and a resume through it is kept in turn.
async fn the_operators_pause_outlives_a_restart(app: TestApp) {
    let admin = app.admin_token().await;
    assert_eq!(set_dispatch(&app, &admin, true).await["paused"], true);
    let restarted = spawn_sibling(&app).await;
    let state = restarted.get_auth("/api/v1/admin/dispatch", &admin).await;
    assert_eq!(state.status, 200, "{}", state.text());
    assert_eq!(state.json()["paused"], true, "a restart resumed dispatch");
    assert_eq!(
        set_dispatch(&restarted, &admin, false).await["paused"],
        false
    );
    let again = spawn_sibling(&app).await;
    let state = again.get_auth("/api/v1/admin/dispatch", &admin).await;
    assert_eq!(state.json()["paused"], false);
}

/// `PUT /api/v1/admin/dispatch {paused}` as `admin`; the matcher's figures after it.
pub async fn set_dispatch(app: &Http, admin: &str, paused: bool) -> Value {
    let res = app
        .request(
            "PUT",
            "/api/v1/admin/dispatch",
            Some(admin),
            Some(&json!({ "paused": paused })),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.text());
    res.json()
}

#[actix_web::test]
async fn distant_regions_are_dispatched_by_their_own_shards_in_one_window() {
    let app = spawn_app_with(Backend::Sqlite, Options::default())
        .await
        .expect("sqlite");
    let admin = app.admin_token().await;
    // Bengaluru and Mumbai, 840 km apart: two regions, two shards, each with one order and
    // one rider of its own.
    const MUMBAI: (f64, f64) = (19.0760, 72.8777);
    assert_ne!(region(PHARMACY.0, PHARMACY.1), region(MUMBAI.0, MUMBAI.1));
    let (_, blr_medicine) = app
        .stocked_pharmacy(&admin, "Bengaluru", PHARMACY.0, PHARMACY.1, 5)
        .await;
    let (_, bom_medicine) = app
        .stocked_pharmacy(&admin, "Mumbai", MUMBAI.0, MUMBAI.1, 5)
        .await;
    let (_, customer) = app.user_token("customer").await;
    set_dispatch(&app, &admin, true).await;
    let (_, _, mut blr_rider) = rider_at(&app, PHARMACY.0 + 0.008, PHARMACY.1).await;
    let (_, _, mut bom_rider) = rider_at(&app, MUMBAI.0 + 0.008, MUMBAI.1).await;
    free_riders(&app, &admin, 2).await;
    let mut placed = Vec::new();
    for (medicine, at) in [(blr_medicine, PHARMACY), (bom_medicine, MUMBAI)] {
        let res = app
            .place_order(&customer, &[(medicine, 1)], at.0 - 0.01, at.1)
            .await;
        assert_eq!(res.status, 201, "{}", res.text());
        placed.push(res.json()["id"].clone());
    }
    crate::orders::eventually("both orders and riders reach their shards", || async {
        let held = set_dispatch(&app, &admin, true).await;
        held["waiting_orders"] == 2 && held["free_riders"] == 2 && held["shards"] == 2
    })
    .await;
    // One resume, one batch per shard: both offers are out at once, each to the rider of
    // the order's own region.
    let resumed = set_dispatch(&app, &admin, false).await;
    assert_eq!(resumed["open_offers"], 2, "{resumed}");
    assert_eq!(resumed["waiting_orders"], 0, "{resumed}");
    assert_eq!(blr_rider.expect("offer").await["order_id"], placed[0]);
    assert_eq!(bom_rider.expect("offer").await["order_id"], placed[1]);
}
