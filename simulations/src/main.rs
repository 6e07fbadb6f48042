//! `medify-sim`: the city simulator's command line.
//!
//! - `medify-sim run <scenario> [--base URL | --server-bin PATH] [--matching ..] [--seed N]
//!   [--report PATH] [--no-progress]`
//! - `medify-sim run <scenario> --nodes 2|3 [--kill-node AT [--restart-after D]]
//!   [--pg-url URL] [--redis-url URL] [--haproxy PATH] [--haproxy-cfg PATH] ...`: a cluster
//!   behind HAProxy on PostgreSQL and Redis, optionally losing its dispatch node
//!
//! A run whose orders are lost or stuck (placed and not final by the end) exits non-zero
//! after printing and writing its report.
//! - `medify-sim compare <scenario> [--server-bin PATH] [--seed N] [--report-dir DIR]`
//! - `medify-sim list`

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use medify_sim::cluster::{parse_duration, Cluster, ClusterOptions, KillPlan};
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

#[derive(clap::Args)]
struct ClusterArgs {
    /// Start this many nodes (2 or 3) on a fresh PostgreSQL database and Redis prefix,
    /// with HAProxy in front (deploy/haproxy.cfg), and run against the balancer.
    #[arg(long, conflicts_with = "base", value_name = "N")]
    nodes: Option<usize>,
    /// PostgreSQL URL allowed to create and drop databases (with --nodes; needs psql).
    #[arg(
        long,
        requires = "nodes",
        value_name = "URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pg_url: String,
    /// Redis for the nodes (with --nodes); the run's keys are deleted afterwards.
    #[arg(
        long,
        requires = "nodes",
        value_name = "URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    redis_url: String,
    /// HAProxy binary (default: haproxy on the PATH, else /usr/sbin/haproxy).
    #[arg(long, requires = "nodes", value_name = "PATH")]
    haproxy: Option<PathBuf>,
    /// HAProxy configuration (default: the repository's deploy/haproxy.cfg, built in).
    #[arg(long, requires = "nodes", value_name = "PATH")]
    haproxy_cfg: Option<PathBuf>,
    /// SIGKILL the node running dispatch this long after the orders start (60s, 1.5s,
    /// 500ms, 2m).
    #[arg(long, requires = "nodes", value_name = "AT", value_parser = parse_duration)]
    kill_node: Option<Duration>,
    /// Start the killed node again this long after the kill.
    #[arg(long, requires = "kill_node", value_name = "D", value_parser = parse_duration)]
    restart_after: Option<Duration>,
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
        cluster: ClusterArgs,
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
            // SIGTERM too: the servers, a cluster's database and Redis keys go away as
            // on Ctrl-C (the guards drop with `dispatch`).
            _ = terminated() => bail!("terminated"),
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

/// Resolves on SIGTERM (never, where there is no such signal or it cannot be watched).
async fn terminated() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            term.recv().await;
            return;
        }
    }
    std::future::pending::<()>().await
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
            cluster,
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
                    let bin = common.server_bin.as_deref();
                    match cluster.nodes {
                        Some(nodes) => {
                            let opts = ClusterOptions {
                                nodes,
                                pg_url: cluster.pg_url,
                                redis_url: cluster.redis_url,
                                haproxy: cluster.haproxy,
                                haproxy_cfg: cluster.haproxy_cfg,
                            };
                            let plan = cluster.kill_node.map(|at| KillPlan {
                                at,
                                restart_after: cluster.restart_after,
                            });
                            run_cluster(&s, matching, bin, &opts, plan, progress).await?
                        }
                        None => run_spawned(&s, matching, bin, progress).await?,
                    }
                }
            };
            println!("{}", r.table());
            if let Some(path) = report {
                write_report(&path, &r)?;
            }
            fail_on_lost(&[&r])
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
            fail_on_lost(&reports.iter().collect::<Vec<_>>())
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

/// Starts a cluster, runs the scenario against its balancer while carrying out `plan`,
/// stops everything (also on error).
async fn run_cluster(
    s: &Scenario,
    matching: Matching,
    server_bin: Option<&Path>,
    opts: &ClusterOptions,
    plan: Option<KillPlan>,
    progress: bool,
) -> anyhow::Result<Report> {
    let bin = match server_bin {
        Some(p) => p.to_path_buf(),
        None => default_server_bin()?,
    };
    eprintln!(
        "medify-sim: starting {} nodes behind HAProxy (PostgreSQL {}, Redis {})",
        opts.nodes, opts.pg_url, opts.redis_url
    );
    let mut cluster = Cluster::start(&bin, matching, &s.server_env, opts).await?;
    let (base, admin) = (cluster.base.clone(), cluster.admin.clone());
    let secret = cluster.webhook_secret.clone();
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    // A node (or the balancer) that dies unbidden ends the run at once.
    let result = tokio::select! {
        r = medify_sim::run_with(&base, s, &admin, Some(&secret), progress, Some(started_tx)) => r,
        why = cluster.supervise(plan, started_rx) => Err(why),
    };
    if result.as_ref().is_ok_and(|r| r.lost_or_stuck() > 0) {
        // Their story is in the nodes' logs.
        cluster.keep_logs();
    }
    let cluster_report = cluster.report.clone();
    cluster.stop();
    let mut report = result?;
    report.matching = Some(matching.as_str().to_owned());
    if plan.is_some() && cluster_report.killed.is_none() {
        report.warnings.push(
            "--kill-node: the run ended before the kill was due; no node was killed".to_owned(),
        );
    }
    report.cluster = Some(cluster_report);
    Ok(report)
}

/// An error if any report has orders lost or stuck.
fn fail_on_lost(reports: &[&Report]) -> anyhow::Result<()> {
    let lost: u64 = reports.iter().map(|r| r.lost_or_stuck()).sum();
    if lost > 0 {
        bail!("{lost} orders lost or stuck (placed and not final by the end of the drain; listed above)");
    }
    Ok(())
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
