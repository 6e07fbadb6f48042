//! Dispatch across nodes (issue 16): one node at a time runs the matcher and the order
//! actors (the `dispatch` lease), every other node forwards to it. Three `medify`
//! processes on one PostgreSQL and one Redis behind HAProxy. Setup and reads go through the
//! balancer; a rider's socket and an order's placement go to a named node where the test
//! needs to know which node a party is on (that is what each test is about).
//!
//! - riders on two nodes and orders placed through a third are solved as one batch, and
//!   the optimum is found (the per-node answer would be worse, or none);
//! - a rider who reconnects to another node while holding an offer is welcomed with it;
//! - SIGKILL of the node running dispatch in the middle of a delivery and of a dispatch,
//!   with concurrent orders for scarce stock: every order ends delivered or explicitly
//!   refused, no reservation is left, nothing is oversold;
//! - SIGTERM of that node while an offer is open: the offer is still accepted, then
//!   another node takes over;
//! - SIGSTOP of that node past its lease, then SIGCONT: it steps down and its old view of
//!   an order never overwrites what the new holder decided.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use actix_codec::Framed;
use awc::ws::{Codec, Frame, Message};
use awc::BoxedSocket;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};

#[path = "support/process.rs"]
mod process;
use process::{Server, WorkDir, WAIT};
#[path = "support/cluster.rs"]
mod support;
use support::{
    clear_redis, haproxy, need, node_with, Balancer, Client, Database, ADMIN_EMAIL, ADMIN_PASSWORD,
};

type Socket = Framed<BoxedSocket, Codec>;

/// Where the tests put things: a line west to east through Bengaluru, in km from the
/// origin (1 km of longitude here is 0.009229°).
const LAT: f64 = 12.9716;
/// The operator's hold and resume of automatic offers.
const DISPATCH: &str = "/api/v1/admin/dispatch";
const LNG: f64 = 77.5946;
fn east(km: f64) -> f64 {
    LNG + km * 0.009_229
}

/// Three nodes on a fresh database and key prefix, HAProxy in front, and the admin.
struct Cluster {
    _dirs: Vec<WorkDir>,
    nodes: Vec<Server>,
    balancer: Balancer,
    lb: Client,
    admin: String,
    db: Database,
    redis: String,
    prefix: String,
}

impl Cluster {
    /// `None` when the services are missing (skipped; CI fails instead). Every node gets
    /// `extra`; node-1 also `first`.
    async fn start(extra: &[(&str, &str)], first: &[(&str, &str)]) -> Option<Self> {
        let pg = need("MEDIFY_TEST_PG", std::env::var("MEDIFY_TEST_PG").ok())?;
        let redis = need("MEDIFY_TEST_REDIS", std::env::var("MEDIFY_TEST_REDIS").ok())?;
        let haproxy = need("haproxy", haproxy())?;
        let db = Database::create(&pg, "cluster").await;
        let prefix = format!("medify-dispatch-{}:", uuid::Uuid::now_v7().simple());
        let dirs: Vec<WorkDir> = (0..3).map(|_| WorkDir::new()).collect();
        // One after another: node-1 migrates, creates the admin and takes the lease.
        let nodes: Vec<Server> = ["node-1", "node-2", "node-3"]
            .iter()
            .zip(&dirs)
            .map(|(id, dir)| {
                let mut vars = extra.to_vec();
                if *id == "node-1" {
                    vars.extend_from_slice(first);
                }
                node_with(dir, id, &db.url, &redis, &prefix, &vars)
            })
            .collect();
        let addresses: Vec<String> = nodes.iter().map(|n| n.address.clone()).collect();
        let balancer = Balancer::start(&haproxy, &addresses);
        let lb = client(&format!("http://{}", balancer.address));
        let start = Instant::now();
        while lb.call("GET", "/healthz", None, None).await.0 != 200 {
            assert!(start.elapsed() < WAIT, "the balancer never answered");
            actix_web::rt::time::sleep(Duration::from_millis(50)).await;
        }
        let admin = lb.login(ADMIN_EMAIL, ADMIN_PASSWORD).await["access_token"]
            .as_str()
            .expect("token")
            .to_owned();
        let cluster = Self {
            _dirs: dirs,
            nodes,
            balancer,
            lb,
            admin,
            db,
            redis,
            prefix,
        };
        // The region exists once a pharmacy is in it; the oldest node takes it.
        let (status, depot) = cluster
            .lb
            .call(
                "POST",
                "/api/v1/pharmacies",
                Some(&cluster.admin),
                Some(json!({"name": "Depot", "lat": LAT, "lng": LNG, "address": "1 Depot Road"})),
            )
            .await;
        assert_eq!(status, 201, "{depot}");
        let holder = cluster.dispatch_holder(&cluster.lb).await;
        assert_eq!(holder, "node-1", "the first node runs dispatch");
        Some(cluster)
    }

    /// A client of node `i` itself.
    fn on(&self, i: usize) -> Client {
        client(&format!("http://{}", self.nodes[i].address))
    }

    /// The node running dispatch, as `via` reports it (waits while it changes hands).
    async fn dispatch_holder(&self, via: &Client) -> String {
        let view = via
            .until("/api/v1/cluster", &self.admin, "a dispatch holder", |v| {
                v["dispatch"].is_string()
            })
            .await;
        view["dispatch"].as_str().expect("holder").to_owned()
    }

    /// The node that runs dispatch after node-1, as `via` reports it.
    async fn next_holder(&self, via: &Client) -> String {
        let view = via
            .until(
                "/api/v1/cluster",
                &self.admin,
                "a holder other than node-1",
                |v| v["dispatch"].is_string() && v["dispatch"] != "node-1",
            )
            .await;
        let holder = view["dispatch"].as_str().expect("holder").to_owned();
        assert!(holder == "node-2" || holder == "node-3", "{holder}");
        holder
    }

    /// A medicine and a pharmacy `km` east of the origin holding `quantity` of it.
    async fn pharmacy(&self, km: f64, quantity: i64) -> (String, String) {
        self.pharmacy_at((LAT, east(km)), quantity).await
    }

    /// A medicine and a pharmacy at `(lat, lng)` holding `quantity` of it.
    async fn pharmacy_at(&self, (lat, lng): (f64, f64), quantity: i64) -> (String, String) {
        let sku = format!("SKU-{}", uuid::Uuid::now_v7().simple());
        let (status, medicine) = self
            .lb
            .call(
                "POST",
                "/api/v1/medicines",
                Some(&self.admin),
                Some(json!({"name": "Paracetamol", "sku": sku, "price_cents": 120})),
            )
            .await;
        assert_eq!(status, 201, "{medicine}");
        let (status, pharmacy) = self
            .lb
            .call(
                "POST",
                "/api/v1/pharmacies",
                Some(&self.admin),
                Some(json!({"name": format!("Pharmacy at {lat}, {lng}"), "lat": lat, "lng": lng, "address": "1 Test Road"})),
            )
            .await;
        assert_eq!(status, 201, "{pharmacy}");
        let (medicine, pharmacy) = (id_of(&medicine), id_of(&pharmacy));
        let stock = json!({"items": [{"medicine_id": medicine, "quantity": quantity}]});
        let path = format!("/api/v1/pharmacies/{pharmacy}/stock");
        let (status, body) = self
            .lb
            .call("PUT", &path, Some(&self.admin), Some(stock))
            .await;
        assert_eq!(status, 200, "{body}");
        (medicine, pharmacy)
    }

    /// `(quantity, reserved)` of the medicine at the pharmacy.
    async fn stock(&self, pharmacy: &str, medicine: &str) -> (i64, i64) {
        let path = format!("/api/v1/pharmacies/{pharmacy}/stock");
        let (status, body) = self.lb.call("GET", &path, Some(&self.admin), None).await;
        assert_eq!(status, 200, "{body}");
        let row = body
            .as_array()
            .or_else(|| body["items"].as_array())
            .and_then(|rows| rows.iter().find(|r| r["medicine_id"] == medicine))
            .cloned()
            .unwrap_or(Value::Null);
        (
            row["quantity"].as_i64().expect("quantity"),
            row["reserved"].as_i64().expect("reserved"),
        )
    }

    /// Waits until the order's status is `status`.
    async fn order_reaches(&self, id: &str, status: &str) -> Value {
        let what = format!("order {id} {status}");
        self.lb
            .until(&format!("/api/v1/orders/{id}"), &self.admin, &what, |o| {
                o["status"] == status
            })
            .await
    }

    async fn order(&self, id: &str) -> Value {
        let (status, order) = self
            .lb
            .call(
                "GET",
                &format!("/api/v1/orders/{id}"),
                Some(&self.admin),
                None,
            )
            .await;
        assert_eq!(status, 200, "{order}");
        order
    }

    async fn stop(self) {
        drop(self.balancer);
        drop(self.nodes);
        self.db.drop_now().await;
        clear_redis(&self.redis, &self.prefix).await;
    }
}

fn client(base: &str) -> Client {
    Client {
        base: base.to_owned(),
        http: awc::Client::builder()
            .timeout(Duration::from_secs(10))
            .finish(),
    }
}

fn id_of(v: &Value) -> String {
    v["id"].as_str().expect("id").to_owned()
}

/// A customer's order of one unit from `pharmacy`, placed through `via`: the answer.
async fn place(via: &Client, customer: &str, pharmacy: &str, medicine: &str) -> (u16, Value) {
    place_near(via, (customer, pharmacy, medicine), LAT).await
}

/// The same, delivered 1 km north of latitude `lat` (on the origin's meridian).
async fn place_near(
    via: &Client,
    (customer, pharmacy, medicine): (&str, &str, &str),
    lat: f64,
) -> (u16, Value) {
    let order = json!({"items": [{"medicine_id": medicine, "qty": 1}],
        "delivery": {"lat": lat + 0.009, "lng": LNG, "address": "2 Door Street"},
        "pharmacy_id": pharmacy});
    via.call("POST", "/api/v1/orders", Some(customer), Some(order))
        .await
}

/// A rider: account (through the balancer), id, and socket on the node at `address`.
struct Rider {
    id: String,
    token: String,
    socket: Socket,
    ts: i64,
}

impl Rider {
    async fn connect(lb: &Client, address: &str) -> Self {
        let token = lb.account("rider").await;
        let (_, me) = lb.call("GET", "/api/v1/me", Some(&token), None).await;
        let socket = Self::open(address, &token).await;
        let mut rider = Self {
            id: id_of(&me),
            token,
            socket,
            ts: chrono::Utc::now().timestamp_millis(),
        };
        rider.next("welcome").await;
        rider
    }

    async fn open(address: &str, token: &str) -> Socket {
        let url = format!("ws://{address}/ws/rider?access_token={token}");
        awc::Client::new()
            .ws(url)
            .connect()
            .await
            .expect("rider socket")
            .1
    }

    /// The rider's app drops its socket and connects to the node at `address`: the
    /// `welcome` it gets there.
    async fn reconnect(&mut self, address: &str) -> Value {
        let _ = self.socket.close().await;
        self.socket = Self::open(address, &self.token).await;
        self.next("welcome").await
    }

    async fn send(&mut self, frame: Value) {
        self.socket
            .send(Message::Text(frame.to_string().into()))
            .await
            .expect("send");
    }

    /// A fix `km` east of the origin.
    async fn at(&mut self, km: f64) {
        self.fix(LAT, east(km)).await;
    }

    async fn fix(&mut self, lat: f64, lng: f64) {
        self.ts += 1_000;
        let fix = json!({"type": "location", "lat": lat, "lng": lng, "ts": self.ts, "accuracy": 5});
        self.send(fix).await;
    }

    async fn available(&mut self, available: bool) {
        self.send(json!({"type": "availability", "available": available}))
            .await;
    }

    /// The next frame of type `kind` (others are skipped).
    async fn next(&mut self, kind: &str) -> Value {
        loop {
            match tokio::time::timeout(WAIT, self.socket.next()).await {
                Ok(Some(Ok(Frame::Text(text)))) => {
                    let frame: Value = serde_json::from_slice(&text).unwrap_or(Value::Null);
                    if frame["type"] == kind {
                        return frame;
                    }
                }
                Ok(Some(Ok(_))) => {}
                other => panic!("no {kind} frame: {other:?}"),
            }
        }
    }

    async fn accept(&mut self, offer: &Value) -> Value {
        let answer =
            json!({"type": "offer_response", "offer_id": offer["offer_id"], "accept": true});
        self.send(answer).await;
        self.next("assigned").await
    }

    /// Picks the order up and delivers it with `code`; each step is seen done (the socket
    /// answers only a refusal) before the next.
    async fn deliver(&mut self, c: &Cluster, order: &str, code: &Value) {
        for (status, frame) in [
            (
                "picked_up",
                json!({"type": "order_status", "order_id": order, "status": "picked_up"}),
            ),
            (
                "delivered",
                json!({"type": "order_status", "order_id": order, "status": "delivered", "code": code}),
            ),
        ] {
            self.send(frame).await;
            c.order_reaches(order, status).await;
        }
    }
}

/// Riders on node-1 and node-2, two orders placed through node-3 while dispatch is held:
/// one batch solves both, and it gives each order the rider that makes the sum of pickup
/// times least. Greedy (or node-2 alone) would send the rider at 0 km to the order at
/// 1.4 km and the rider at 3 km to the order at -1 km (5.4 km in all); the optimum is 1.6 +
/// 1.0 = 2.6 km. Node-3, where the orders were placed, holds no rider at all.
#[actix_web::test]
async fn riders_on_two_nodes_and_orders_from_a_third_are_one_batch() {
    let Some(c) = Cluster::start(&[], &[]).await else {
        return;
    };
    let (medicine, near) = c.pharmacy(1.4, 5).await;
    let (_, far) = c.pharmacy(-1.0, 0).await;
    let stock = json!({"items": [{"medicine_id": medicine, "quantity": 5}]});
    let (status, body) =
        c.lb.call(
            "PUT",
            &format!("/api/v1/pharmacies/{far}/stock"),
            Some(&c.admin),
            Some(stock),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let hold = |paused: bool| json!({"paused": paused});
    let (status, body) =
        c.lb.call(
            "PUT",
            "/api/v1/admin/dispatch",
            Some(&c.admin),
            Some(hold(true)),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    let mut west = Rider::connect(&c.lb, &c.nodes[0].address).await;
    let mut east_rider = Rider::connect(&c.lb, &c.nodes[1].address).await;
    for (rider, km) in [(&mut west, 0.0), (&mut east_rider, 3.0)] {
        rider.at(km).await;
        rider.available(true).await;
    }
    let customer = c.lb.account("customer").await;
    let node3 = c.on(2);
    let (status, to_near) = place(&node3, &customer, &near, &medicine).await;
    assert_eq!(status, 201, "{to_near}");
    let (status, to_far) = place(&node3, &customer, &far, &medicine).await;
    assert_eq!(status, 201, "{to_far}");
    // The node running dispatch sees both riders (one reported from node-2) and both
    // orders (placed on node-3) before it solves anything.
    c.lb.until(
        "/api/v1/admin/dispatch",
        &c.admin,
        "both riders and both orders at the matcher",
        |v| v["free_riders"] == 2 && v["waiting_orders"] == 2 && v["paused"] == true,
    )
    .await;
    let (status, body) =
        c.lb.call(
            "PUT",
            "/api/v1/admin/dispatch",
            Some(&c.admin),
            Some(hold(false)),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    let west_offer = west.next("offer").await;
    let east_offer = east_rider.next("offer").await;
    assert_eq!(west_offer["order_id"], to_far["id"], "{west_offer}");
    assert_eq!(east_offer["order_id"], to_near["id"], "{east_offer}");
    west.accept(&west_offer).await;
    east_rider.accept(&east_offer).await;
    // The rider on node-2 delivers; every command went to node-1's order actor.
    east_rider
        .deliver(&c, &id_of(&to_near), &to_near["delivery_code"])
        .await;
    let done = c.order(&id_of(&to_near)).await;
    assert_eq!(done["status"], "delivered", "{done}");
    assert_eq!(done["rider"]["id"], east_rider.id.as_str(), "{done}");
    let other = c.order(&id_of(&to_far)).await;
    assert_eq!(other["status"], "assigned", "{other}");
    assert_eq!(other["rider"]["id"], west.id.as_str(), "{other}");
    // Node-2 has no order actors; the order is node-1's rider's, not nobody's.
    c.on(1)
        .until(
            "/api/v1/riders?per_page=100",
            &c.admin,
            "node-2 seeing node-1's rider carry his order",
            |v| {
                v["items"].as_array().is_some_and(|riders| {
                    riders.iter().any(|r| r["active_order_id"] == to_far["id"])
                })
            },
        )
        .await;
    let theirs = json!({"type": "order_status", "order_id": to_far["id"], "status": "picked_up"});
    east_rider.send(theirs).await;
    let refused = east_rider.next("error").await;
    assert_eq!(refused["code"], "forbidden", "{refused}");
    c.stop().await;
}

/// A rider on node-2 holds an offer from node-1 when his app reconnects, this time to
/// node-3: the welcome there carries the pending offer and his availability, and accepting
/// the offer assigns him the order, which he delivers through node-3.
#[actix_web::test]
async fn a_rider_reconnecting_to_another_node_keeps_his_pending_offer() {
    let Some(c) = Cluster::start(&[], &[]).await else {
        return;
    };
    let (medicine, pharmacy) = c.pharmacy(0.0, 3).await;
    let customer = c.lb.account("customer").await;
    let mut rider = Rider::connect(&c.lb, &c.nodes[1].address).await;
    rider.at(0.5).await;
    rider.available(true).await;
    let (status, order) = place(&c.lb, &customer, &pharmacy, &medicine).await;
    assert_eq!(status, 201, "{order}");
    let offer = rider.next("offer").await;
    let welcome = rider.reconnect(&c.nodes[2].address).await;
    assert_eq!(
        welcome["pending_offer"]["offer_id"], offer["offer_id"],
        "{welcome}"
    );
    assert_eq!(
        welcome["pending_offer"]["order_id"], order["id"],
        "{welcome}"
    );
    assert_eq!(welcome["available"], true, "{welcome}");
    let assigned = rider.accept(&offer).await;
    assert_eq!(assigned["order_id"], order["id"], "{assigned}");
    rider
        .deliver(&c, &id_of(&order), &order["delivery_code"])
        .await;
    let done = c.order(&id_of(&order)).await;
    assert_eq!(done["rider"]["id"], rider.id.as_str(), "{done}");
    c.stop().await;
}

/// SIGKILL of node-1 (running dispatch) while a rider on node-2 is delivering, an order
/// waits for a rider, and customers place orders for the last units of stock through the
/// balancer. Another node takes the lease; the delivery finishes, the waiting order is
/// offered to a rider who becomes available after the kill, and the books balance: no
/// order stuck, no reservation left, no unit sold twice.
#[actix_web::test]
async fn killing_the_dispatch_node_loses_no_order_and_oversells_nothing() {
    let Some(mut c) = Cluster::start(&[("MEDIFY_FAILOVER_S", "2")], &[]).await else {
        return;
    };
    let (medicine, pharmacy) = c.pharmacy(0.0, 6).await;
    let customer = c.lb.account("customer").await;

    // A delivery under way: placed on node-3, accepted by a rider on node-2.
    let mut courier = Rider::connect(&c.lb, &c.nodes[1].address).await;
    courier.at(0.5).await;
    courier.available(true).await;
    let (status, first) = place(&c.on(2), &customer, &pharmacy, &medicine).await;
    assert_eq!(status, 201, "{first}");
    let offer = courier.next("offer").await;
    assert_eq!(offer["order_id"], first["id"]);
    courier.accept(&offer).await;
    // An order waiting: the only other rider (on node-3) is not available yet.
    let mut spare = Rider::connect(&c.lb, &c.nodes[2].address).await;
    spare.at(0.3).await;
    let (status, waiting) = place(&c.lb, &customer, &pharmacy, &medicine).await;
    assert_eq!(status, 201, "{waiting}");
    c.lb.until(
        "/api/v1/admin/dispatch",
        &c.admin,
        "the order waiting",
        |v| v["waiting_orders"] == 1,
    )
    .await;

    // Kill the holder. Meanwhile eight customers try for the four units left, and the
    // spare rider becomes available: the first offer he gets marks the failover's end.
    let buyers: Vec<String> = {
        let mut v = Vec::new();
        for _ in 0..8 {
            v.push(c.lb.account("customer").await);
        }
        v
    };
    c.nodes[0].signal(libc::SIGKILL);
    let killed = Instant::now();
    let _ = c.nodes[0].wait_exit();
    let rush = futures_util::future::join_all(
        buyers.iter().map(|b| place(&c.lb, b, &pharmacy, &medicine)),
    );
    let first_offer = async {
        spare.available(true).await;
        let offer = spare.next("offer").await;
        (offer, killed.elapsed())
    };
    let (rush, (offer, failover)) = futures_util::join!(rush, first_offer);
    eprintln!("failover: SIGKILL to the first new offer in {failover:?}");
    let mut outcomes: BTreeMap<u16, usize> = BTreeMap::new();
    let mut open = vec![(id_of(&waiting), customer.clone())];
    for ((status, body), buyer) in rush.iter().zip(&buyers) {
        *outcomes.entry(*status).or_default() += 1;
        if *status == 201 {
            open.push((id_of(body), buyer.clone()));
        }
    }
    assert_eq!(
        outcomes.get(&201),
        Some(&4),
        "four units, four orders: {outcomes:?}"
    );
    assert_eq!(
        outcomes.get(&409),
        Some(&4),
        "the rest refused: {outcomes:?}"
    );
    let holder = c.next_holder(&c.on(1)).await;
    let taken = offer["order_id"].as_str().expect("order").to_owned();
    assert!(open.iter().any(|(id, _)| *id == taken), "{offer}");
    spare.accept(&offer).await;
    c.order_reaches(&taken, "assigned").await;
    // The courier on node-2 finishes through the new holder.
    courier
        .deliver(&c, &id_of(&first), &first["delivery_code"])
        .await;

    // node-1 comes back: it joins without taking dispatch, and its start-up repair leaves
    // every live reservation alone.
    let dir = WorkDir::new();
    c.nodes[0] = node_with(
        &dir,
        "node-1",
        &c.db.url,
        &c.redis,
        &c.prefix,
        &[("MEDIFY_FAILOVER_S", "2")],
    );
    c.lb.until("/api/v1/cluster", &c.admin, "node-1 back", |v| {
        v["nodes"].as_array().is_some_and(|n| n.len() == 3)
    })
    .await;
    assert_eq!(c.dispatch_holder(&c.on(0)).await, holder);

    // Every other order is still waiting and its customer cancels it: none is stuck
    // where no node can reach it.
    for (id, who) in open.iter().filter(|(id, _)| *id != taken) {
        let path = format!("/api/v1/orders/{id}/cancel");
        let (status, body) = c.lb.call("POST", &path, Some(who), None).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["status"], "cancelled", "{body}");
    }
    // Six units: one delivered, one with the spare rider, four back on the shelf.
    assert_eq!(c.stock(&pharmacy, &medicine).await, (5, 1));
    drop(dir);
    c.stop().await;
}

/// SIGTERM of node-1 while an offer to a rider on node-2 is open: the node keeps
/// dispatch until the offer is answered, the rider's acceptance assigns the order, then
/// the lease is released, another node takes it and the delivery finishes there.
#[actix_web::test]
async fn sigterm_hands_dispatch_over_without_losing_the_open_offer() {
    let Some(mut c) = Cluster::start(&[], &[]).await else {
        return;
    };
    let (medicine, pharmacy) = c.pharmacy(0.0, 3).await;
    let customer = c.lb.account("customer").await;
    let mut rider = Rider::connect(&c.lb, &c.nodes[1].address).await;
    rider.at(0.5).await;
    rider.available(true).await;
    let (status, order) = place(&c.on(2), &customer, &pharmacy, &medicine).await;
    assert_eq!(status, 201, "{order}");
    let offer = rider.next("offer").await;
    assert_eq!(offer["order_id"], order["id"]);

    c.nodes[0].signal(libc::SIGTERM);
    c.nodes[0].wait_for(|l| l.contains("handing dispatch over"));
    let assigned = rider.accept(&offer).await;
    assert_eq!(assigned["order_id"], order["id"], "{assigned}");
    assert_eq!(c.nodes[0].wait_exit(), Some(0), "{}", c.nodes[0].log_text());
    c.next_holder(&c.on(1)).await;
    rider
        .deliver(&c, &id_of(&order), &order["delivery_code"])
        .await;
    let done = c.order(&id_of(&order)).await;
    assert_eq!(done["rider"]["id"], rider.id.as_str(), "{done}");
    c.stop().await;
}

/// SIGSTOP of node-1 past its lease: node-2 or node-3 takes dispatch over. Node-1 was set
/// to fail an order nobody takes within 4 s, and the order was placed there; nobody writes
/// to it meanwhile (no rider yet), so the order's version in the journal is still the one
/// node-1 knows: only the fence stands between node-1's stale timer and the order. Node-1
/// resumes past the deadline; whether its timer fires first (its write is refused: the
/// lease it holds is no longer current) or its lease check does (it steps down and stops
/// its order actors), the order is not failed: a rider takes it from the new holder. The
/// operator's hold of automatic offers, made before the pause, holds on the new holder too.
#[actix_web::test]
async fn a_paused_dispatch_node_cannot_overwrite_the_new_holder() {
    let first = [("DISPATCH_TIMEOUT_S", "4")];
    let Some(mut c) = Cluster::start(&[("MEDIFY_FAILOVER_S", "2")], &first).await else {
        return;
    };
    let (medicine, pharmacy) = c.pharmacy(0.0, 3).await;
    let customer = c.lb.account("customer").await;
    let (status, order) = place(&c.on(0), &customer, &pharmacy, &medicine).await;
    assert_eq!(status, 201, "{order}");
    let order_id = id_of(&order);
    c.order_reaches(&order_id, "dispatching").await;
    // The operator holds automatic offers; the hold must move with dispatch.
    let held = Some(json!({"paused": true}));
    let (status, body) = c.lb.call("PUT", DISPATCH, Some(&c.admin), held).await;
    assert_eq!((status, &body["paused"]), (200, &json!(true)), "{body}");
    c.nodes[0].signal(libc::SIGSTOP);
    let paused = Instant::now();
    let node2 = c.on(1);
    c.next_holder(&node2).await;
    let (status, body) = node2.call("GET", DISPATCH, Some(&c.admin), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["paused"], true,
        "the new holder forgot the operator's hold"
    );
    // Wall-clock time must pass here (node-1's deadline), not an event.
    let deadline = Duration::from_secs(5);
    if let Some(left) = deadline.checked_sub(paused.elapsed()) {
        actix_web::rt::time::sleep(left).await;
    }
    c.nodes[0].signal(libc::SIGCONT);
    c.nodes[0].wait_for(|l| l.contains("this node stops dispatching a region"));
    let resumed = Some(json!({"paused": false}));
    let (status, body) = node2.call("PUT", DISPATCH, Some(&c.admin), resumed).await;
    assert_eq!((status, &body["paused"]), (200, &json!(false)), "{body}");
    let mut rider = Rider::connect(&node2, &c.nodes[1].address).await;
    rider.at(0.4).await;
    rider.available(true).await;
    let offer = rider.next("offer").await;
    assert_eq!(offer["order_id"], order["id"]);
    rider.accept(&offer).await;
    rider.deliver(&c, &order_id, &order["delivery_code"]).await;
    let (status, timeline) =
        c.lb.call(
            "GET",
            &format!("/api/v1/orders/{order_id}/timeline"),
            Some(&c.admin),
            None,
        )
        .await;
    assert_eq!(status, 200, "{timeline}");
    let statuses: Vec<&str> = timeline
        .as_array()
        .expect("timeline")
        .iter()
        .filter_map(|s| s["status"].as_str())
        .collect();
    assert!(!statuses.contains(&"failed"), "{statuses:?}");
    assert_eq!(statuses.last(), Some(&"delivered"), "{statuses:?}");
    c.stop().await;
}

/// The regions' owners as `via` reports them: region → node.
async fn owners(
    c: &Cluster,
    via: &Client,
    what: &str,
    done: impl Fn(&BTreeMap<String, String>) -> bool,
) -> BTreeMap<String, String> {
    let read = |v: &Value| -> BTreeMap<String, String> {
        v["regions"]
            .as_array()
            .map(|rows| {
                rows.iter()
                    .filter_map(|r| {
                        Some((
                            r["region"].as_str()?.to_owned(),
                            r["node"].as_str()?.to_owned(),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let view = via
        .until("/api/v1/cluster", &c.admin, what, |v| done(&read(v)))
        .await;
    read(&view)
}

/// Two regions 55 km apart on three nodes. Each gets its own owner: node-1 (the oldest)
/// the depot's, node-2 the northern one, node-3 none. A rider connected to node-1 serves
/// a northern order placed through node-3: node-2 offers, his answer and every step of
/// the delivery travel to node-2. SIGKILL of node-2 with a northern order waiting moves
/// the northern region alone, to node-3, which offers that order; a depot delivery under
/// way on node-1 meanwhile finishes untouched, and the depot region never changes owner.
#[actix_web::test]
async fn regions_are_spread_over_nodes_and_fail_over_one_by_one() {
    let Some(mut c) = Cluster::start(&[("MEDIFY_FAILOVER_S", "2")], &[]).await else {
        return;
    };
    let north = LAT + 0.5;
    let (medicine, pharmacy) = c.pharmacy_at((north, LNG), 4).await;
    let spread = owners(&c, &c.lb, "two regions on two nodes", |o| {
        o.len() == 2 && o.values().collect::<std::collections::BTreeSet<_>>().len() == 2
    })
    .await;
    let depot = spread
        .iter()
        .find(|(_, n)| *n == "node-1")
        .map(|(r, _)| r.clone())
        .expect("node-1 owns the depot's region");
    let northern = spread
        .iter()
        .find(|(r, _)| **r != depot)
        .map(|(r, _)| r.clone())
        .expect("a second region");
    assert_eq!(spread[&northern], "node-2", "{spread:?}");
    // Every node sees the same owners.
    for i in 0..3 {
        let seen = owners(&c, &c.on(i), "the owners", |o| o.len() == 2).await;
        assert_eq!(seen, spread, "node-{}", i + 1);
    }

    // A northern order placed through node-3, served by a rider on node-1.
    let customer = c.lb.account("customer").await;
    let mut rider = Rider::connect(&c.lb, &c.nodes[0].address).await;
    rider.fix(north + 0.004, LNG).await;
    rider.available(true).await;
    let ids = (customer.as_str(), pharmacy.as_str(), medicine.as_str());
    let (status, order) = place_near(&c.on(2), ids, north).await;
    assert_eq!(status, 201, "{order}");
    let offer = rider.next("offer").await;
    assert_eq!(offer["order_id"], order["id"], "{offer}");
    rider.accept(&offer).await;
    rider
        .deliver(&c, &id_of(&order), &order["delivery_code"])
        .await;

    // A depot delivery under way on node-1's region, its rider on node-3.
    let (depot_medicine, depot_pharmacy) = c.pharmacy(0.0, 2).await;
    let mut courier = Rider::connect(&c.lb, &c.nodes[2].address).await;
    courier.at(0.4).await;
    courier.available(true).await;
    let (status, first) = place(&c.on(1), &customer, &depot_pharmacy, &depot_medicine).await;
    assert_eq!(status, 201, "{first}");
    let offer = courier.next("offer").await;
    assert_eq!(offer["order_id"], first["id"], "{offer}");
    courier.accept(&offer).await;

    // A northern order waits (the rider is away), and node-2 dies.
    rider.available(false).await;
    let (status, waiting) = place_near(&c.lb, ids, north).await;
    assert_eq!(status, 201, "{waiting}");
    c.nodes[1].signal(libc::SIGKILL);
    let _ = c.nodes[1].wait_exit();
    let moved = owners(&c, &c.on(0), "the northern region on node-3", |o| {
        o.get(&northern).is_some_and(|n| n == "node-3")
    })
    .await;
    assert_eq!(moved[&depot], "node-1", "{moved:?}");
    rider.available(true).await;
    let offer = rider.next("offer").await;
    assert_eq!(offer["order_id"], waiting["id"], "{offer}");
    rider.accept(&offer).await;
    rider
        .deliver(&c, &id_of(&waiting), &waiting["delivery_code"])
        .await;
    courier
        .deliver(&c, &id_of(&first), &first["delivery_code"])
        .await;
    let after = owners(&c, &c.on(2), "both regions owned", |o| o.len() == 2).await;
    assert_eq!(after[&depot], "node-1", "{after:?}");
    // Nothing left reserved: two units sold in the north, one at the depot.
    assert_eq!(c.stock(&pharmacy, &medicine).await, (2, 0));
    assert_eq!(c.stock(&depot_pharmacy, &depot_medicine).await, (1, 0));
    c.stop().await;
}
