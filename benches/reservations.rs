//! Reservations per second through one inventory shard, on SQLite and on PostgreSQL.
//!
//! One shard serialises every reservation for its pharmacies and commits each one in its
//! own transaction (reservation row, lines, stock update), so this is the ceiling for one
//! pharmacy, and for all of a shard's pharmacies together. 64 callers keep the shard's
//! mailbox full; each reservation takes one unit of one medicine.
//!
//! Run: `cargo bench --bench reservations` (SQLite), and with
//! `MEDIFY_BENCH_PG=postgres://postgres@127.0.0.1:5432/postgres` for PostgreSQL too.

use std::sync::Arc;
use std::time::Instant;

use futures_util::future::join_all;
use medify::catalog::cell_bits;
use medify::config::{DatabaseSettings, DatabaseUrl};
use medify::store::catalog::{MedicineFields, PharmacyRow};
use medify::store::Store;
use medify_actors::geo::Point;
use medify_actors::inventory::{Inventory, ReserveOutcome};
use medify_actors::ports::{Line, StockLedger};
use sqlx::Connection;
use uuid::Uuid;

const RESERVATIONS: usize = 4_000;
const CALLERS: usize = 64;

async fn run(label: &str, url: String) {
    let store = Store::connect(&DatabaseSettings {
        url: DatabaseUrl::parse(&url).expect("url"),
        max_connections: 8,
    })
    .await
    .expect("connect");
    store.migrate().await.expect("migrate");
    let at = Point::new(12.97, 77.59).expect("point");
    let pharmacy = PharmacyRow {
        id: Uuid::now_v7(),
        name: "Bench".into(),
        lat: at.lat(),
        lng: at.lng(),
        address: "Bench".into(),
        h3_cell: cell_bits(at),
    };
    store.insert_pharmacy(&pharmacy).await.expect("pharmacy");
    let medicine = store
        .insert_medicine(&MedicineFields {
            name: "Bench".into(),
            generic_name: None,
            brand: None,
            sku: format!("BENCH-{}", Uuid::now_v7()),
            price_cents: 1,
            rx_required: false,
        })
        .await
        .expect("medicine");
    let line = Line {
        medicine_id: medicine.id,
        qty: 1,
    };
    store
        .set_stock(
            pharmacy.id,
            vec![Line {
                qty: 1_000_000_000,
                ..line
            }],
        )
        .await
        .expect("stock");

    let inventory = Inventory::start(1, Arc::new(store.clone()));
    let start = Instant::now();
    let per_caller = RESERVATIONS / CALLERS;
    let callers = (0..CALLERS).map(|_| {
        let inventory = inventory.clone();
        async move {
            for _ in 0..per_caller {
                let outcome = inventory
                    .reserve(Uuid::now_v7(), pharmacy.id, vec![line])
                    .await
                    .expect("reserve");
                assert_eq!(outcome, ReserveOutcome::Reserved);
            }
        }
    });
    join_all(callers).await;
    let elapsed = start.elapsed();
    let done = per_caller * CALLERS;
    println!(
        "{label:<10} {done} reservations through one shard in {:.2} s: {:.0} reservations/s",
        elapsed.as_secs_f64(),
        done as f64 / elapsed.as_secs_f64()
    );
    store.close().await;
}

fn main() {
    actix_web::rt::System::new().block_on(async {
        let path = std::env::temp_dir().join(format!("medify-bench-{}.db", Uuid::now_v7()));
        run("sqlite", format!("sqlite://{}?mode=rwc", path.display())).await;
        for suffix in ["", "-wal", "-shm"] {
            let mut p = path.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
        if let Ok(admin) = std::env::var("MEDIFY_BENCH_PG") {
            let name = format!("medify_bench_{}", Uuid::now_v7().simple());
            let mut conn = sqlx::PgConnection::connect(&admin).await.expect("pg");
            sqlx::query(&format!("CREATE DATABASE \"{name}\""))
                .execute(&mut conn)
                .await
                .expect("create db");
            let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
            run("postgres", format!("{base}/{name}")).await;
            sqlx::query(&format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
                .execute(&mut conn)
                .await
                .expect("drop db");
        } else {
            println!("postgres   skipped (set MEDIFY_BENCH_PG to an admin URL)");
        }
    });
}
