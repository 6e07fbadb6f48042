//! Medicine search over 100 000 medicines: latency per query, p50 and p99.
//!
//! The catalog is synthetic but shaped like a real one: the demo catalog's generics and
//! brands (`src/seed/medicines.txt`) crossed with made-up manufacturer brands, pack sizes
//! and strengths, so common words ("tablet", "mg") are very common and names are long.
//! The query mix is what customers type: exact generics, brands, prefixes, one-typo words
//! and two-word queries.
//!
//! Run: `cargo bench --bench search`

use std::time::{Duration, Instant};

use chrono::Utc;
use criterion::{black_box, criterion_group, Criterion};
use medify::search::MedicineIndex;
use medify::store::catalog::Medicine;
use uuid::Uuid;

const SIZE: usize = 100_000;
const QUERIES: &[&str] = &[
    "paracetamol",
    "paracetmol",
    "calp",
    "ibuprofan",
    "amlo",
    "metformin 500",
    "azithromycin",
    "brufen",
    "montelukast",
    "insulin glargine",
    "cetrizine",
    "atorvastatn",
    "pan 40",
    "vitamin",
    "zyrt",
    "omeprazol",
];

fn catalog() -> Vec<Medicine> {
    let seed = medify::seed::medicines();
    let syllables = [
        "ka", "lo", "mi", "ra", "te", "su", "no", "vi", "pe", "da", "zo", "fi",
    ];
    let packs = [
        "Strip of 10",
        "Strip of 15",
        "Bottle of 30",
        "Pack of 6",
        "Box of 20",
    ];
    let now = Utc::now();
    (0..SIZE)
        .map(|i| {
            let base = &seed[i % seed.len()];
            let maker: String = (0..3)
                .map(|k| syllables[(i / seed.len() * 7 + k * 5 + i) % syllables.len()])
                .collect();
            Medicine {
                id: Uuid::now_v7(),
                name: format!("{} {}", base.name, packs[i % packs.len()]),
                generic_name: base.generic_name.clone(),
                brand: Some(format!("{}{}", maker[..1].to_uppercase(), &maker[1..])),
                sku: format!("SYN-{i}"),
                price_cents: base.price_cents,
                rx_required: base.rx_required,
                created_at: now,
                updated_at: now,
            }
        })
        .collect()
}

fn percentiles(index: &MedicineIndex) {
    let mut samples: Vec<Duration> = Vec::new();
    for _ in 0..200 {
        for q in QUERIES {
            let start = Instant::now();
            black_box(index.search(q, 0, 20));
            samples.push(start.elapsed());
        }
    }
    samples.sort_unstable();
    let at = |p: f64| samples[((samples.len() - 1) as f64 * p) as usize];
    println!(
        "search over {SIZE} medicines, {} queries: p50 {:?}  p99 {:?}  max {:?}",
        samples.len(),
        at(0.50),
        at(0.99),
        at(1.0)
    );
}

fn bench(c: &mut Criterion) {
    let build_start = Instant::now();
    let index = MedicineIndex::build(catalog());
    println!(
        "index of {SIZE} medicines built in {:?}",
        build_start.elapsed()
    );
    percentiles(&index);
    let mut group = c.benchmark_group("search_100k");
    for q in ["paracetamol", "paracetmol", "calp", "metformin 500"] {
        group.bench_function(q, |b| b.iter(|| index.search(black_box(q), 0, 20)));
    }
    group.finish();
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
