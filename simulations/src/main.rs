//! `medify-sim`: the city simulator.
//!
//! It will play riders, customers and pharmacies against a running Medify server and report
//! what a dispatcher cares about (the simulations issue). Not built yet: it only explains
//! itself. The end-to-end ingest load client meanwhile lives in `benches/ingest.rs`.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--version" | "-V") => {
            println!("medify-sim {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Some("--help" | "-h") | None => {
            println!(
                "medify-sim {}: city simulator for Medify.\n\n\
                 No scenarios are available yet (the simulations issue builds them).\n\
                 For a location-ingest load test today: cargo bench --bench ingest",
                env!("CARGO_PKG_VERSION")
            );
            ExitCode::SUCCESS
        }
        Some(other) => {
            eprintln!("medify-sim: unknown argument {other:?} (try --help)");
            ExitCode::from(2)
        }
    }
}
