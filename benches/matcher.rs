//! The matcher's hot functions with city-sized inputs.
//!
//! - index update: a fix in the same H3 cell (position only) vs one that changes cell;
//! - candidate query (5 km, nearest 32) with 10 000 and 100 000 free riders spread over a
//!   25 km city;
//! - assignment of 50×50 and 200×200 batches, greedy vs batched (Kuhn–Munkres);
//! - sharding: the region (shard key) of a fix, which the `Matcher` handle computes for
//!   every fix it routes, and the regions a shard searches for one waiting order (5 km,
//!   regions at res 5), which it computes for every waiting order every batch window.
//!
//! Run: `cargo bench --bench matcher`

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use h3o::Resolution;
use medify_actors::geo::Point;
use medify_actors::matcher::assign;
use medify_actors::matcher::index::{FreeIndex, Position};
use medify_actors::matcher::regions::{region_of, regions_near};
use uuid::Uuid;

const CENTER: (f64, f64) = (12.9716, 77.5946);

/// A deterministic scatter of points within `radius_km` of the centre.
fn scatter(n: usize, radius_km: f64, seed: u64) -> Vec<Point> {
    let mut s = seed;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 11) as f64 / (1u64 << 53) as f64
    };
    (0..n)
        .map(|_| {
            let r = radius_km * next().sqrt();
            let a = next() * std::f64::consts::TAU;
            let lat = CENTER.0 + r * a.cos() / 111.195;
            let lng = CENTER.1 + r * a.sin() / (111.195 * CENTER.0.to_radians().cos());
            Point::new(lat, lng).expect("inside the city")
        })
        .collect()
}

fn index_of(n: usize) -> FreeIndex {
    let mut index = FreeIndex::new(Resolution::Nine);
    for p in scatter(n, 12.5, 7) {
        index.upsert(Uuid::now_v7(), Position { at: p, ts_ms: 1 });
    }
    index
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("index_update");
    let mut index = index_of(10_000);
    let rider = Uuid::now_v7();
    let a = Point::new(CENTER.0, CENTER.1).expect("p");
    let a2 = Point::new(CENTER.0 + 0.00001, CENTER.1).expect("p");
    let far = Point::new(CENTER.0 + 0.01, CENTER.1).expect("p");
    index.upsert(rider, Position { at: a, ts_ms: 1 });
    let mut flip = false;
    group.bench_function("same_cell", |b| {
        b.iter(|| {
            flip = !flip;
            index.upsert(
                rider,
                Position {
                    at: if flip { a2 } else { a },
                    ts_ms: 2,
                },
            )
        })
    });
    group.bench_function("new_cell", |b| {
        b.iter(|| {
            flip = !flip;
            index.upsert(
                rider,
                Position {
                    at: if flip { far } else { a },
                    ts_ms: 2,
                },
            )
        })
    });
    group.finish();

    let mut group = c.benchmark_group("candidates_5km");
    for n in [10_000usize, 100_000] {
        let index = index_of(n);
        let origin = Point::new(CENTER.0 + 0.02, CENTER.1 - 0.01).expect("p");
        group.bench_with_input(BenchmarkId::from_parameter(n), &index, |b, index| {
            b.iter(|| black_box(index.candidates(origin, 5_000.0, 0, 32)).len())
        });
    }
    group.finish();

    let mut group = c.benchmark_group("assignment");
    for n in [50usize, 200] {
        let orders = scatter(n, 5.0, 11);
        let riders = scatter(n, 5.0, 13);
        let costs: Vec<Vec<Option<f64>>> = orders
            .iter()
            .map(|o| {
                riders
                    .iter()
                    .map(|r| Some(o.distance_m(*r) * 1.3 / 5.0))
                    .collect()
            })
            .collect();
        let g = assign::greedy(&costs);
        let k = assign::batched(&costs);
        println!(
            "{n}x{n}: total pickup seconds greedy {:.0}, batched {:.0} ({:.1}% less)",
            assign::total(&costs, &g),
            assign::total(&costs, &k),
            100.0 * (1.0 - assign::total(&costs, &k) / assign::total(&costs, &g))
        );
        group.bench_with_input(BenchmarkId::new("greedy", n), &costs, |b, costs| {
            b.iter(|| assign::greedy(black_box(costs)))
        });
        group.bench_with_input(BenchmarkId::new("batched", n), &costs, |b, costs| {
            b.iter(|| assign::batched(black_box(costs)))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("sharding");
    let fixes = scatter(1_000, 12.5, 17);
    let mut i = 0;
    group.bench_function("region_of", |b| {
        b.iter(|| {
            i = (i + 1) % fixes.len();
            region_of(black_box(fixes[i]), Resolution::Nine, Resolution::Five)
        })
    });
    group.bench_function("regions_near_5km", |b| {
        b.iter(|| {
            i = (i + 1) % fixes.len();
            regions_near(
                black_box(fixes[i]),
                5_000.0,
                Resolution::Nine,
                Resolution::Five,
            )
            .len()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
