//! What field-path error reporting costs on the happy path.
//!
//! Every JSON body goes through `medify::extract::decode_json`, which wraps serde_json in
//! serde_path_to_error so that a wrong type is reported on `items[0].qty`. This bench
//! compares it with plain `serde_json::from_slice` on a realistic 20-line order body.
//!
//! Run: `cargo bench --bench extract`

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use serde::Deserialize;

#[derive(Deserialize)]
#[allow(dead_code)]
struct Item {
    medicine_id: String,
    qty: u32,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct Delivery {
    lat: f64,
    lng: f64,
    address: String,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct NewOrder {
    items: Vec<Item>,
    delivery: Delivery,
    pharmacy_id: Option<String>,
}

fn order_body() -> Vec<u8> {
    let items: Vec<String> = (0..20)
        .map(|i| {
            format!(
                r#"{{"medicine_id":"0190f2a4-7c1e-7d3a-9b1f-{i:012}","qty":{}}}"#,
                i % 5 + 1
            )
        })
        .collect();
    format!(
        r#"{{"items":[{}],"delivery":{{"lat":12.9716,"lng":77.5946,"address":"12 MG Road, Bengaluru"}}}}"#,
        items.join(",")
    )
    .into_bytes()
}

fn bench(c: &mut Criterion) {
    let body = order_body();
    let mut group = c.benchmark_group("decode_order_body");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("serde_json", |b| {
        b.iter(|| serde_json::from_slice::<NewOrder>(black_box(&body)).expect("valid"))
    });
    group.bench_function("decode_json_with_paths", |b| {
        b.iter(|| medify::extract::decode_json::<NewOrder>(black_box(&body)).expect("valid"))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
