//! `medify-sim`: the city simulator.
//!
//! It will play riders, customers and pharmacies against a running Medify server and report
//! what a dispatcher cares about (see the simulations issue). Until the API it drives
//! exists, it only explains itself.

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
                 No scenarios are available yet: they arrive with the rider and order APIs.",
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
