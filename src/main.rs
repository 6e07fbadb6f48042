//! The `medify` binary: `medify` / `medify serve` runs the server, `medify migrate` applies
//! the database migrations and exits. Configuration comes from the environment (see
//! README.md); every problem in it is reported at once before anything starts.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use medify::config::Settings;
use medify::seed::SeedOptions;
use medify::startup::{shutdown_signal, Application};
use medify::store::Store;
use medify::telemetry;
use medify_actors::geo::Point;

#[derive(Parser)]
#[command(
    name = "medify",
    version,
    about = "Realtime medicine-delivery dispatch server",
    long_about = "Realtime medicine-delivery dispatch server.\n\n\
        Configured by environment variables (MEDIFY_BIND, DATABASE_URL, REDIS_URL, JWT_SECRET, \
        MEDIFY_ENV, LOG_FORMAT, RUST_LOG, ...); see README.md for the full table. \
        Without DATABASE_URL it serves from an SQLite file medify.db in the working directory."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Apply database migrations, then exit.
    Migrate,
    /// Load the demo data set (medicines, pharmacies around a city, stock); idempotent.
    Seed {
        /// How many pharmacies.
        #[arg(long, default_value_t = 40)]
        pharmacies: usize,
        /// Latitude of the city centre (default: Bengaluru).
        #[arg(long, default_value_t = 12.9716, allow_negative_numbers = true)]
        lat: f64,
        /// Longitude of the city centre.
        #[arg(long, default_value_t = 77.5946, allow_negative_numbers = true)]
        lng: f64,
        /// Pharmacies are spread within this many kilometres of the centre.
        #[arg(long, default_value_t = 8.0)]
        radius_km: f64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("medify: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = telemetry::init(settings.log_format, &settings.log_filter, std::io::stdout) {
        eprintln!("medify: {e}");
        return ExitCode::from(2);
    }
    if settings.jwt_secret_generated {
        tracing::warn!(
            "JWT_SECRET is not set: using a random one, so tokens stop working at restart \
             (set JWT_SECRET, at least 32 bytes, to keep them)"
        );
    }

    let result = actix_web::rt::System::new().block_on(async move {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => {
                let shutdown = shutdown_signal()?;
                let app = Application::build(settings).await?;
                app.run_until(shutdown).await?;
                Ok(())
            }
            Command::Seed {
                pharmacies,
                lat,
                lng,
                radius_km,
            } => {
                let center = Point::new(lat, lng)
                    .map_err(|e| anyhow::anyhow!("--lat/--lng: {e}"))?;
                if !(radius_km.is_finite() && radius_km > 0.0 && radius_km <= 100.0) {
                    anyhow::bail!("--radius-km must be between 0 and 100");
                }
                let store = Store::connect(&settings.database).await?;
                store.migrate().await?;
                println!("seeding {pharmacies} pharmacies within {radius_km} km of ({lat}, {lng})...");
                let options = SeedOptions {
                    pharmacies: pharmacies.min(100_000),
                    center,
                    radius_m: radius_km * 1000.0,
                };
                let report = medify::seed::run(&store, &options).await?;
                println!(
                    "medicines: {} added ({} in the demo catalog); pharmacies: {} added; stock rows: {} added",
                    report.medicines_added,
                    report.medicines_total,
                    report.pharmacies_added,
                    report.stock_rows_added
                );
                println!("a running server picks the new catalog up at its next start");
                store.close().await;
                Ok(())
            }
            Command::Migrate => {
                let store = Store::connect(&settings.database).await?;
                let applied = store.migrate().await?;
                tracing::info!(backend = store.backend(), applied, "migrations applied");
                store.close().await;
                Ok::<(), anyhow::Error>(())
            }
        }
    });
    match result {
        Ok(()) => {
            tracing::info!("bye");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "medify failed");
            eprintln!("medify: {e:#}");
            ExitCode::FAILURE
        }
    }
}
