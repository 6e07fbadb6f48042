//! Inventory shards against the real database: no oversell under concurrency, all-or-nothing
//! reservations, and a crashed shard that comes back without losing or doubling anything.
//!
//! The shards are driven directly (orders, which reserve through them over HTTP, come with
//! the orders issue); stock is created and read back over the HTTP API.

use std::sync::Arc;

use futures_util::future::join_all;
use medify::store::orders::{Inserted, NewOrder, NewOrderLine};
use medify_actors::geo::Point;
use medify_actors::inventory::{Inventory, ReserveOutcome};
use medify_actors::model::{OrderStatus, PaymentMethod};
use medify_actors::ports::{Line, Settle};
use uuid::Uuid;

use crate::backend_tests;
use crate::helpers::{connect_store, spawn_sibling, TestApp};

backend_tests!(
    concurrent_reservations_never_oversell,
    multi_item_reservation_is_all_or_nothing,
    shard_restart_keeps_every_reservation,
    stock_cannot_drop_below_reserved,
    a_starting_node_leaves_a_live_reservation_alone,
    an_order_and_its_reservation_never_part,
);

struct Fixture {
    admin: String,
    pharmacy: Uuid,
    inventory: Inventory,
}

async fn fixture(app: &TestApp, shards: usize) -> Fixture {
    let admin = app.admin_token().await;
    let pharmacy = app.create_pharmacy(&admin, "Stockroom", 12.97, 77.59).await;
    let store = connect_store(app).await;
    Fixture {
        admin,
        pharmacy,
        inventory: Inventory::start(shards, Arc::new(store)),
    }
}

fn line(medicine_id: Uuid, qty: i64) -> Vec<Line> {
    vec![Line { medicine_id, qty }]
}

async fn concurrent_reservations_never_oversell(app: TestApp) {
    let f = fixture(&app, 4).await;
    let insulin = app
        .create_medicine(&f.admin, "Insulin", None, None, 5000)
        .await;
    assert_eq!(
        app.put_stock(&f.admin, f.pharmacy, &[(insulin, 50)])
            .await
            .status,
        200
    );

    let attempts = (0..200).map(|_| {
        let inventory = f.inventory.clone();
        let pharmacy = f.pharmacy;
        async move {
            inventory
                .reserve(Uuid::now_v7(), pharmacy, line(insulin, 1))
                .await
        }
    });
    let outcomes = join_all(attempts).await;
    let reserved = outcomes
        .iter()
        .filter(|o| matches!(o, Ok(ReserveOutcome::Reserved)))
        .count();
    let refused = outcomes
        .iter()
        .filter(|o| matches!(o, Ok(ReserveOutcome::Insufficient(_))))
        .count();
    assert_eq!((reserved, refused), (50, 150), "{outcomes:?}");
    assert_eq!(app.stock_of(f.pharmacy, insulin).await, (50, 50));
}

async fn multi_item_reservation_is_all_or_nothing(app: TestApp) {
    let f = fixture(&app, 2).await;
    let a = app.create_medicine(&f.admin, "A", None, None, 100).await;
    let b = app.create_medicine(&f.admin, "B", None, None, 100).await;
    assert_eq!(
        app.put_stock(&f.admin, f.pharmacy, &[(a, 5), (b, 1)])
            .await
            .status,
        200
    );
    let lines = vec![
        Line {
            medicine_id: a,
            qty: 2,
        },
        Line {
            medicine_id: b,
            qty: 2,
        },
    ];
    let outcome = f
        .inventory
        .reserve(Uuid::now_v7(), f.pharmacy, lines)
        .await
        .expect("answer");
    let ReserveOutcome::Insufficient(short) = outcome else {
        panic!("expected a shortage, got {outcome:?}");
    };
    assert_eq!(short.len(), 1);
    assert_eq!(
        (short[0].medicine_id, short[0].requested, short[0].available),
        (b, 2, 1)
    );
    assert_eq!(
        app.stock_of(f.pharmacy, a).await,
        (5, 0),
        "nothing reserved"
    );
    assert_eq!(app.stock_of(f.pharmacy, b).await, (1, 0));
    // A medicine the pharmacy never stocked is simply short.
    let never = app.create_medicine(&f.admin, "C", None, None, 100).await;
    let outcome = f
        .inventory
        .reserve(Uuid::now_v7(), f.pharmacy, line(never, 1))
        .await
        .expect("answer");
    assert!(
        matches!(outcome, ReserveOutcome::Insufficient(_)),
        "{outcome:?}"
    );
    // Duplicate lines are summed: 3 + 3 > 5.
    let dup = vec![
        Line {
            medicine_id: a,
            qty: 3,
        },
        Line {
            medicine_id: a,
            qty: 3,
        },
    ];
    let outcome = f
        .inventory
        .reserve(Uuid::now_v7(), f.pharmacy, dup)
        .await
        .expect("answer");
    assert!(
        matches!(outcome, ReserveOutcome::Insufficient(_)),
        "{outcome:?}"
    );
}

async fn shard_restart_keeps_every_reservation(app: TestApp) {
    let f = fixture(&app, 2).await;
    let med = app
        .create_medicine(&f.admin, "Amlodipine", None, None, 100)
        .await;
    assert_eq!(
        app.put_stock(&f.admin, f.pharmacy, &[(med, 20)])
            .await
            .status,
        200
    );
    let ids: Vec<Uuid> = (0..10).map(|_| Uuid::now_v7()).collect();
    for id in &ids {
        let o = f
            .inventory
            .reserve(*id, f.pharmacy, line(med, 1))
            .await
            .expect("answer");
        assert_eq!(o, ReserveOutcome::Reserved);
    }
    assert_eq!(app.stock_of(f.pharmacy, med).await, (20, 10));

    f.inventory
        .inject_fault(f.pharmacy)
        .await
        .expect("fault delivered");

    // Retrying reservations that were already made reserves nothing twice.
    for id in &ids[..3] {
        let o = f
            .inventory
            .reserve(*id, f.pharmacy, line(med, 1))
            .await
            .expect("answer");
        assert_eq!(o, ReserveOutcome::Reserved);
    }
    assert_eq!(app.stock_of(f.pharmacy, med).await, (20, 10));
    // The restarted shard sees exactly what is left: 10 more fit, the 11th does not.
    for _ in 0..10 {
        let o = f
            .inventory
            .reserve(Uuid::now_v7(), f.pharmacy, line(med, 1))
            .await
            .expect("answer");
        assert_eq!(o, ReserveOutcome::Reserved);
    }
    let o = f
        .inventory
        .reserve(Uuid::now_v7(), f.pharmacy, line(med, 1))
        .await
        .expect("answer");
    assert!(matches!(o, ReserveOutcome::Insufficient(_)), "{o:?}");
    assert_eq!(app.stock_of(f.pharmacy, med).await, (20, 20));

    // Pre-crash reservations settle exactly once.
    let commit = f
        .inventory
        .commit(ids[0], f.pharmacy)
        .await
        .expect("answer");
    assert!(matches!(commit, Settle::Done { .. }), "{commit:?}");
    assert_eq!(
        f.inventory
            .commit(ids[0], f.pharmacy)
            .await
            .expect("answer"),
        Settle::AlreadySettled
    );
    assert_eq!(
        f.inventory
            .release(ids[0], f.pharmacy)
            .await
            .expect("answer"),
        Settle::AlreadySettled
    );
    let release = f
        .inventory
        .release(ids[1], f.pharmacy)
        .await
        .expect("answer");
    assert!(matches!(release, Settle::Done { .. }), "{release:?}");
    assert_eq!(
        f.inventory
            .release(Uuid::now_v7(), f.pharmacy)
            .await
            .expect("answer"),
        Settle::Unknown
    );
    // Commit: 19 on the shelf, 18 held; release: one fewer held.
    assert_eq!(app.stock_of(f.pharmacy, med).await, (19, 18));

    f.inventory
        .inject_fault(f.pharmacy)
        .await
        .expect("fault delivered");
    let o = f
        .inventory
        .reserve(Uuid::now_v7(), f.pharmacy, line(med, 1))
        .await
        .expect("answer");
    assert_eq!(
        o,
        ReserveOutcome::Reserved,
        "the released unit is for sale again"
    );
    assert_eq!(app.stock_of(f.pharmacy, med).await, (19, 19));
}

async fn stock_cannot_drop_below_reserved(app: TestApp) {
    let f = fixture(&app, 2).await;
    let med = app
        .create_medicine(&f.admin, "Atorvastatin", None, None, 100)
        .await;
    assert_eq!(
        app.put_stock(&f.admin, f.pharmacy, &[(med, 10)])
            .await
            .status,
        200
    );
    let o = f
        .inventory
        .reserve(Uuid::now_v7(), f.pharmacy, line(med, 6))
        .await
        .expect("answer");
    assert_eq!(o, ReserveOutcome::Reserved);
    // The server's own shards refuse to set the shelf below what is held.
    let body = app
        .put_stock(&f.admin, f.pharmacy, &[(med, 5)])
        .await
        .assert_problem(409, "conflict");
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or("")
            .contains(&med.to_string()),
        "{body}"
    );
    assert_eq!(app.stock_of(f.pharmacy, med).await, (10, 6));
    let res = app.put_stock(&f.admin, f.pharmacy, &[(med, 6)]).await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(app.stock_of(f.pharmacy, med).await, (6, 6));
}

/// A pharmacy with `boxes` of one medicine (priced 900 cents) on its shelf.
async fn one_drug_on_the_shelf(app: &TestApp, boxes: i64) -> (Uuid, Uuid) {
    let admin = app.admin_token().await;
    let pharmacy = app
        .create_pharmacy(&admin, "Last boxes", 12.97, 77.59)
        .await;
    let drug = app.create_medicine(&admin, "Scarce", None, None, 900).await;
    assert_eq!(
        app.put_stock(&admin, pharmacy, &[(drug, boxes)])
            .await
            .status,
        200
    );
    (pharmacy, drug)
}

/// A reservation that a live node is about to turn into an order (held, no order row yet)
/// survives a second node starting on the same database; only once it is older than the
/// grace period does the repair release it, through the shard, so the shard's book agrees.
async fn a_starting_node_leaves_a_live_reservation_alone(app: TestApp) {
    let (pharmacy, drug) = one_drug_on_the_shelf(&app, 1).await;
    // Node A holds the only box for an order it has not stored yet.
    let in_flight = Uuid::now_v7();
    let held = app
        .state
        .inventory
        .reserve(in_flight, pharmacy, line(drug, 1))
        .await
        .expect("answer");
    assert_eq!(held, ReserveOutcome::Reserved);
    // Node B starts (its start-up repair runs before it serves) and takes traffic.
    let sibling = spawn_sibling(&app).await;
    assert_eq!(sibling.get("/readyz").await.status, 200);
    assert_eq!(app.stock_of(pharmacy, drug).await, (1, 1), "still held");
    let store = connect_store(&app).await;
    let none = medify::repair::repair_reservations(
        &store,
        &app.state.inventory,
        std::time::Duration::from_secs(600),
    )
    .await
    .expect("repair");
    assert_eq!(none, medify::repair::Repaired::default());

    // Had node A died instead, once the grace period is over the box goes back.
    let done = medify::repair::repair_reservations(
        &store,
        &app.state.inventory,
        std::time::Duration::ZERO,
    )
    .await
    .expect("repair");
    assert_eq!(done.released, 1);
    assert_eq!(app.stock_of(pharmacy, drug).await, (1, 0));
    let again = app
        .state
        .inventory
        .reserve(Uuid::now_v7(), pharmacy, line(drug, 1))
        .await
        .expect("answer");
    assert_eq!(
        again,
        ReserveOutcome::Reserved,
        "the shard's book saw the release"
    );
}

/// An order as a placement stores it, under reservation `id`.
async fn order_under(app: &TestApp, id: Uuid, pharmacy: Uuid, drug: Uuid) -> NewOrder {
    let (customer, _) = app.user_token("customer").await;
    let customer_id = Uuid::parse_str(customer["id"].as_str().expect("id")).expect("uuid");
    NewOrder {
        id,
        customer_id,
        pharmacy_id: pharmacy,
        lines: vec![NewOrderLine {
            medicine_id: drug,
            qty: 1,
            price_cents: 900,
        }],
        total_cents: 900,
        delivery: Point::new(12.97, 77.6).expect("point"),
        address: "1 Late Lane".to_owned(),
        delivery_code: "1234".to_owned(),
        dispatch_deadline: chrono::Utc::now() + chrono::Duration::minutes(10),
        status: OrderStatus::Confirmed,
        payment_method: PaymentMethod::Cod,
        payment_intent_id: None,
        prescription_id: None,
        idempotency_key: None,
    }
}

/// The crash repair and a placement that stalled past the repair's grace (a paused node)
/// meet on the reservation's row: whichever is second sees the other's work. A released
/// reservation refuses the late order (nothing stored, no oversell); a stored order keeps
/// its reservation from the repair that read it as orphaned a moment before.
async fn an_order_and_its_reservation_never_part(app: TestApp) {
    let (pharmacy, drug) = one_drug_on_the_shelf(&app, 2).await;
    let inventory = &app.state.inventory;
    let store = &app.state.store;
    // Repair first: the stalled placement wakes to a released reservation.
    let stalled = Uuid::now_v7();
    let held = inventory
        .reserve(stalled, pharmacy, line(drug, 1))
        .await
        .expect("answer");
    assert_eq!(held, ReserveOutcome::Reserved);
    let released = inventory
        .release_unplaced(stalled, pharmacy)
        .await
        .expect("answer");
    assert!(matches!(released, Settle::Done { .. }), "{released:?}");
    let late = order_under(&app, stalled, pharmacy, drug).await;
    assert_eq!(
        store.insert_order(&late).await.expect("insert"),
        Inserted::ReservationGone
    );
    assert!(store.order_view(stalled).await.expect("read").is_none());
    assert_eq!(app.stock_of(pharmacy, drug).await, (2, 0));
    // The order first: the repair's release finds it and keeps the stock held.
    let placed = Uuid::now_v7();
    let held = inventory
        .reserve(placed, pharmacy, line(drug, 1))
        .await
        .expect("answer");
    assert_eq!(held, ReserveOutcome::Reserved);
    let order = order_under(&app, placed, pharmacy, drug).await;
    assert_eq!(
        store.insert_order(&order).await.expect("insert"),
        Inserted::Stored
    );
    let kept = inventory
        .release_unplaced(placed, pharmacy)
        .await
        .expect("answer");
    assert_eq!(kept, Settle::Placed);
    assert_eq!(app.stock_of(pharmacy, drug).await, (2, 1));
}
