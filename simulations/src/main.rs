//! `medify-sim`: the city simulator's command line.
//!
//! - `medify-sim run <scenario> [--base URL | --server-bin PATH] [--matching ..] [--seed N]
//!   [--report PATH] [--no-progress]`
//! - `medify-sim compare <scenario> [--server-bin PATH] [--seed N] [--report-dir DIR]`
//! - `medify-sim list`

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use medify_sim::report::compare_table;
use medify_sim::scenario::BUILT_IN;
use medify_sim::server::{default_server_bin, ServerProcess};
use medify_sim::{Admin, Matching, Report, Scenario};

#[derive(Parser)]
#[command(
    name = "medify-sim",
    version,
    about = "City simulator for Medify: riders, customers and pharmacies against a real server",
    long_about = "City simulator for Medify.\n\n\
        Plays a scenario (built-in name or TOML path) against a running server (--base) or \
        against a server it starts itself on a fresh SQLite file (the `medify` binary next \
        to this one, or --server-bin), and reports orders, assignment latency, pickup \
        distance, delivery time, tracking latency and protocol errors."
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(clap::Args)]
struct Common {
    /// Seed for every random choice (default: the scenario's).
    #[arg(long)]
    seed: Option<u64>,
    /// Server binary to start (default: `medify` next to this executable).
    #[arg(long, value_name = "PATH")]
    server_bin: Option<PathBuf>,
    /// No progress bars (periodic status lines on stderr instead).
    #[arg(long)]
    no_progress: bool,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run one scenario.
    Run {
        /// A built-in scenario (see `list`) or a path to a TOML file.
        scenario: String,
        /// A running server, e.g. http://127.0.0.1:8080 (default: start one). Scenarios
        /// that pay online need its secret in $PAYMENT_WEBHOOK_SECRET.
        #[arg(long, conflicts_with = "server_bin", value_name = "URL")]
        base: Option<String>,
        /// Admin e-mail for --base (default: $MEDIFY_ADMIN_EMAIL).
        #[arg(long, requires = "base")]
        admin_email: Option<String>,
        /// Matching strategy of the server the sim starts (default: the scenario's, else
        /// batched). Against --base the server's own setting applies.
        #[arg(long, conflicts_with = "base")]
        matching: Option<Matching>,
        /// Write the JSON report here.
        #[arg(long, value_name = "PATH")]
        report: Option<PathBuf>,
        #[command(flatten)]
        common: Common,
    },
    /// Run a scenario under greedy and under batched matching (same seed, a fresh server
    /// each) and compare pickup distance and assignment latency.
    Compare {
        /// A built-in scenario (see `list`) or a path to a TOML file.
        scenario: String,
        /// Directory for the two JSON reports (<scenario>-greedy.json, <scenario>-batched.json).
        #[arg(long, value_name = "DIR", default_value = ".")]
        report_dir: PathBuf,
        #[command(flatten)]
        common: Common,
    },
    /// List the built-in scenarios.
    List,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("medify-sim: could not start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        tokio::select! {
            r = dispatch(cli) => r,
            _ = tokio::signal::ctrl_c() => bail!("interrupted"),
        }
    });
    // Dropping the runtime ends agents still running (a started server was stopped when
    // its guard dropped inside `dispatch`).
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("medify-sim: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    raise_fd_limit();
    match cli.command {
        Cmd::List => {
            for (name, text) in BUILT_IN {
                let s = Scenario::parse(text)?;
                println!("{name:<8} {}", s.description);
            }
            Ok(())
        }
        Cmd::Run {
            scenario,
            base,
            admin_email,
            matching,
            report,
            common,
        } => {
            let mut s = Scenario::load(&scenario)?;
            if let Some(seed) = common.seed {
                s.seed = seed;
            }
            let progress = !common.no_progress;
            let r = match base {
                Some(base) => {
                    let admin = admin_from_env(admin_email)?;
                    // The sim plays the payment provider: it signs with the server's secret.
                    let secret = std::env::var("PAYMENT_WEBHOOK_SECRET").ok();
                    medify_sim::run(&base, &s, &admin, secret.as_deref(), progress).await?
                }
                None => {
                    let matching = matching.or(s.matching).unwrap_or(Matching::Batched);
                    run_spawned(&s, matching, common.server_bin.as_deref(), progress).await?
                }
            };
            println!("{}", r.table());
            if let Some(path) = report {
                write_report(&path, &r)?;
            }
            Ok(())
        }
        Cmd::Compare {
            scenario,
            report_dir,
            common,
        } => {
            let mut s = Scenario::load(&scenario)?;
            if let Some(seed) = common.seed {
                s.seed = seed;
            }
            std::fs::create_dir_all(&report_dir)
                .with_context(|| format!("could not create {}", report_dir.display()))?;
            let progress = !common.no_progress;
            let mut reports = Vec::new();
            for matching in [Matching::Greedy, Matching::Batched] {
                eprintln!("== {} under {} matching", s.name, matching.as_str());
                let r = run_spawned(&s, matching, common.server_bin.as_deref(), progress).await?;
                println!("{}", r.table());
                let path = report_dir.join(format!("{}-{}.json", s.name, matching.as_str()));
                write_report(&path, &r)?;
                reports.push(r);
            }
            println!("{}", compare_table(&reports[0], &reports[1]));
            Ok(())
        }
    }
}

/// Starts a server, runs the scenario, stops the server (also on error).
async fn run_spawned(
    s: &Scenario,
    matching: Matching,
    server_bin: Option<&Path>,
    progress: bool,
) -> anyhow::Result<Report> {
    let bin = match server_bin {
        Some(p) => p.to_path_buf(),
        None => default_server_bin()?,
    };
    let mut server = ServerProcess::start(&bin, matching, &s.server_env).await?;
    let (base, admin) = (server.base.clone(), server.admin.clone());
    let secret = server.webhook_secret.clone();
    // A server that dies ends the run at once, with its exit status and log.
    let result = tokio::select! {
        r = medify_sim::run(&base, s, &admin, Some(&secret), progress) => r,
        why = server.died() => Err(anyhow::anyhow!(why)),
    };
    server.stop();
    let mut report = result?;
    report.matching = Some(matching.as_str().to_owned());
    Ok(report)
}

fn admin_from_env(email: Option<String>) -> anyhow::Result<Admin> {
    let email = match email.or_else(|| std::env::var("MEDIFY_ADMIN_EMAIL").ok()) {
        Some(e) if !e.trim().is_empty() => e,
        _ => bail!("--base needs an admin: pass --admin-email or set MEDIFY_ADMIN_EMAIL"),
    };
    let password = match std::env::var("MEDIFY_ADMIN_PASSWORD") {
        Ok(p) if !p.is_empty() => p,
        _ => bail!("--base needs the admin's password in MEDIFY_ADMIN_PASSWORD"),
    };
    Ok(Admin { email, password })
}

fn write_report(path: &Path, r: &Report) -> anyhow::Result<()> {
    let json = serde_json::to_string_pretty(r)?;
    std::fs::write(path, json + "\n")
        .with_context(|| format!("could not write the report to {}", path.display()))?;
    eprintln!("report written to {}", path.display());
    Ok(())
}

/// Thousands of sockets need more than the usual 1 024 descriptors: raise the soft limit
/// to the hard one (a server the sim starts inherits it).
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}
