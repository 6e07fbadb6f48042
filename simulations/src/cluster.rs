//! Cluster runs (`run --nodes N`): N `medify` nodes on a fresh PostgreSQL database and a
//! fresh Redis key prefix, HAProxy in front of them with the repository's
//! `deploy/haproxy.cfg`, and, on request, the failure of the node running dispatch in the
//! middle of the run (`--kill-node AT`, SIGKILL) and its restart (`--restart-after D`).
//!
//! [`Cluster`] owns every process and the services' state of a run: dropping it (the
//! run's end, a failure, Ctrl-C) stops the nodes and the balancer, drops the database and
//! deletes the prefix's keys; on Linux the children also get SIGTERM if the sim dies.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::api::Api;
use crate::backing::{self, Database};
use crate::scenario::Matching;
use crate::server::{
    die_with_parent, free_port, log_tail, random_hex, sim_admin, sim_env, sim_webhook_secret,
    spawn_server, terminate, wait_ready,
};
use crate::Admin;

/// The repository's balancer configuration, compiled in (so the binary runs from
/// anywhere); `--haproxy-cfg` reads another file instead.
pub const HAPROXY_CFG: &str = include_str!("../../deploy/haproxy.cfg");

/// `deploy/haproxy.cfg` names three servers (`MEDIFY_NODE1..3`).
pub const MAX_NODES: usize = 3;

/// How to start the cluster.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    pub nodes: usize,
    /// A PostgreSQL URL allowed to create databases.
    pub pg_url: String,
    pub redis_url: String,
    /// The HAProxy binary (default: `haproxy` on the PATH, else `/usr/sbin/haproxy`).
    pub haproxy: Option<PathBuf>,
    /// Another HAProxy configuration (default: the compiled-in `deploy/haproxy.cfg`).
    pub haproxy_cfg: Option<PathBuf>,
}

/// When to kill the node running dispatch, and whether to bring it back.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KillPlan {
    /// After the start of the order schedule.
    pub at: Duration,
    /// After the kill; `None`: the node stays down.
    pub restart_after: Option<Duration>,
}

/// What the failure did, for the report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterReport {
    pub nodes: usize,
    /// The run's PostgreSQL database and Redis key prefix (both gone after the run).
    pub database: String,
    pub redis_prefix: String,
    /// `MEDIFY_NODE1..3` as given to HAProxy (with two nodes, node 2 is named twice).
    pub balancer_servers: Vec<String>,
    /// The node that ran dispatch when it was killed.
    pub killed: Option<String>,
    /// Seconds after the start of the order schedule.
    pub killed_at_s: Option<f64>,
    /// The node that took dispatch over, as `GET /api/v1/cluster` named it.
    pub dispatch_after: Option<String>,
    /// SIGKILL → another node named as running dispatch, seconds (polled every 250 ms).
    pub takeover_s: Option<f64>,
    /// When the killed node was started again (seconds after the order schedule's start;
    /// `--restart-after` counts from the kill) and how long it took to answer `/readyz`.
    pub restarted_at_s: Option<f64>,
    pub restart_ready_s: Option<f64>,
    /// What went wrong with the kill or the restart, if anything.
    pub problems: Vec<String>,
}

/// `60s`, `1.5s`, `500ms`, `2m`, or plain seconds (`30`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (number, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else {
        (t, 1.0)
    };
    let v: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (e.g. 60s, 1.5s, 500ms, 2m)"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!("{text:?}: a duration must be 0 or more"));
    }
    Duration::try_from_secs_f64(v * scale).map_err(|e| format!("{text:?}: {e}"))
}

/// `MEDIFY_NODE1..3` for HAProxy from the nodes' addresses: the config always names
/// three servers, so with fewer nodes the last one fills the remaining slots (it then
/// gets a larger share of the round robin).
pub fn balancer_servers(addresses: &[String]) -> anyhow::Result<Vec<String>> {
    let Some(last) = addresses.last() else {
        bail!("a cluster needs at least one node");
    };
    if addresses.len() > MAX_NODES {
        bail!(
            "deploy/haproxy.cfg has {MAX_NODES} servers: at most {MAX_NODES} nodes, not {}",
            addresses.len()
        );
    }
    let mut out = addresses.to_vec();
    out.resize(MAX_NODES, last.clone());
    Ok(out)
}

/// The index of the node named `id` (`node-<i>`, 1-based) among `count` nodes.
pub fn node_index(id: &str, count: usize) -> Option<usize> {
    let i: usize = id.strip_prefix("node-")?.parse().ok()?;
    (1..=count).contains(&i).then(|| i - 1)
}

/// The HAProxy binary: `haproxy` on the PATH, else the usual system places.
pub fn find_haproxy() -> Option<PathBuf> {
    ["haproxy", "/usr/sbin/haproxy", "/usr/local/sbin/haproxy"]
        .into_iter()
        .find(|p| {
            Command::new(p)
                .arg("-v")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .map(PathBuf::from)
}

struct Node {
    id: String,
    port: u16,
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
    /// Killed on purpose: its death is not a failure.
    killed: bool,
}

impl Node {
    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// A running cluster behind its balancer.
pub struct Cluster {
    dir: PathBuf,
    bin: PathBuf,
    nodes: Vec<Node>,
    balancer: Option<Child>,
    balancer_log: PathBuf,
    /// The balancer's `http://host:port`: where the agents go.
    pub base: String,
    pub admin: Admin,
    pub webhook_secret: String,
    db: Database,
    redis_url: String,
    prefix: String,
    pub report: ClusterReport,
    keep_dir: bool,
    stopped: bool,
}

impl Cluster {
    /// Creates the database, starts node 1 (it migrates the database and creates the
    /// admin) and waits for it, then the other nodes, then HAProxy, and waits until the
    /// balancer answers `/readyz`.
    pub async fn start(
        bin: &Path,
        matching: Matching,
        extra_env: &BTreeMap<String, String>,
        opts: &ClusterOptions,
    ) -> anyhow::Result<Self> {
        if !(2..=MAX_NODES).contains(&opts.nodes) {
            bail!(
                "--nodes must be 2 or 3 (deploy/haproxy.cfg has three servers), not {}",
                opts.nodes
            );
        }
        let haproxy = match &opts.haproxy {
            Some(p) => p.clone(),
            None => find_haproxy().ok_or_else(|| {
                anyhow!("no haproxy found (PATH, /usr/sbin, /usr/local/sbin); pass --haproxy PATH")
            })?,
        };
        backing::redis_ping(&opts.redis_url)
            .with_context(|| format!("Redis at {} does not answer", opts.redis_url))?;
        let dir = std::env::temp_dir().join(format!("medify-sim-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("could not create {}", dir.display()))?;
        let db = Database::create(&opts.pg_url)?;
        let prefix = format!("medify-sim:{}:", uuid::Uuid::now_v7().simple());
        let admin = sim_admin();
        let webhook_secret = sim_webhook_secret(extra_env);
        let common = sim_env(
            matching,
            &admin,
            &webhook_secret,
            &random_hex(32),
            &dir,
            extra_env,
        );
        let report = ClusterReport {
            nodes: opts.nodes,
            database: db.name.clone(),
            redis_prefix: prefix.clone(),
            ..ClusterReport::default()
        };
        let mut cluster = Self {
            report,
            balancer_log: dir.join("haproxy.log"),
            dir,
            bin: bin.to_path_buf(),
            nodes: Vec::new(),
            balancer: None,
            base: String::new(),
            admin,
            webhook_secret,
            db,
            redis_url: opts.redis_url.clone(),
            prefix,
            keep_dir: false,
            stopped: false,
        };
        for i in 1..=opts.nodes {
            let port = free_port()?;
            let id = format!("node-{i}");
            let mut env = vec![
                ("MEDIFY_BIND".to_owned(), format!("127.0.0.1:{port}")),
                ("DATABASE_URL".to_owned(), cluster.db.url.clone()),
                ("REDIS_URL".to_owned(), opts.redis_url.clone()),
                ("REDIS_KEY_PREFIX".to_owned(), cluster.prefix.clone()),
                ("MEDIFY_CLUSTER".to_owned(), "1".to_owned()),
                ("MEDIFY_NODE_ID".to_owned(), id.clone()),
                // The balancer is the TCP peer of every request.
                ("TRUSTED_PROXIES".to_owned(), "127.0.0.1".to_owned()),
            ];
            // The scenario's [server_env] (inside `common`) comes last and wins.
            env.extend(common.iter().cloned());
            let log = cluster.dir.join(format!("{id}.log"));
            cluster.nodes.push(Node {
                id,
                port,
                env,
                log,
                child: None,
                killed: false,
            });
            // Node 1 first, alone: it migrates the database and creates the admin.
            cluster.start_node(i - 1).await?;
        }
        cluster.start_balancer(&haproxy, opts.haproxy_cfg.as_deref())?;
        cluster.wait_balancer().await?;
        Ok(cluster)
    }

    async fn start_node(&mut self, i: usize) -> anyhow::Result<()> {
        let node = &mut self.nodes[i];
        let (base, log) = (node.base(), node.log.clone());
        let child = spawn_server(&self.bin, &node.env, &log)?;
        let child = node.child.insert(child);
        if let Err(e) = wait_ready(&base, child, &log).await {
            self.keep_dir = true;
            return Err(e.context(format!("{} did not start", node.id)));
        }
        Ok(())
    }

    fn start_balancer(&mut self, haproxy: &Path, cfg: Option<&Path>) -> anyhow::Result<()> {
        let cfg = match cfg {
            Some(p) => p.to_path_buf(),
            None => {
                let p = self.dir.join("haproxy.cfg");
                std::fs::write(&p, HAPROXY_CFG)
                    .with_context(|| format!("could not write {}", p.display()))?;
                p
            }
        };
        let bind = format!("127.0.0.1:{}", free_port()?);
        let addresses: Vec<String> = self.nodes.iter().map(Node::address).collect();
        let servers = balancer_servers(&addresses)?;
        let log = std::fs::File::create(&self.balancer_log)
            .with_context(|| format!("could not create {}", self.balancer_log.display()))?;
        let mut cmd = Command::new(haproxy);
        cmd.arg("-db")
            .arg("-f")
            .arg(&cfg)
            .env("MEDIFY_LB_BIND", &bind)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        for (i, s) in servers.iter().enumerate() {
            cmd.env(format!("MEDIFY_NODE{}", i + 1), s);
        }
        die_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .with_context(|| format!("could not start {}", haproxy.display()))?;
        self.balancer = Some(child);
        self.base = format!("http://{bind}");
        self.report.balancer_servers = servers;
        Ok(())
    }

    async fn wait_balancer(&mut self) -> anyhow::Result<()> {
        let api = Api::new(&self.base)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(b) = self.balancer.as_mut() {
                if let Some(status) = b.try_wait()? {
                    self.keep_dir = true;
                    bail!(
                        "haproxy exited at start ({status}); its log ({}):\n{}",
                        self.balancer_log.display(),
                        log_tail(&self.balancer_log)
                    );
                }
            }
            if api.ready().await {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.keep_dir = true;
                bail!(
                    "the balancer at {} did not answer /readyz within 30 s; its log ({}):\n{}",
                    self.base,
                    self.balancer_log.display(),
                    log_tail(&self.balancer_log)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Watches the processes and carries out `plan` (counted from when `started` fires:
    /// the start of the order schedule). Returns only on a failure: a node or the
    /// balancer that died without being told to, or a kill that could not be done. The
    /// caller races it against the run and drops it when the run ends.
    pub async fn supervise(
        &mut self,
        plan: Option<KillPlan>,
        started: oneshot::Receiver<()>,
    ) -> anyhow::Error {
        let mut started = Some(started);
        let mut t0: Option<Instant> = None;
        let mut killed: Option<(usize, Instant)> = None;
        let mut restarted = false;
        loop {
            if let Some(why) = self.unexpected_death() {
                return why;
            }
            if let Some(rx) = started.as_mut() {
                if let Ok(()) | Err(oneshot::error::TryRecvError::Closed) = rx.try_recv() {
                    started = None;
                    t0 = Some(Instant::now());
                }
            }
            if let (Some(plan), Some(t0)) = (plan, t0) {
                if killed.is_none() && t0.elapsed() >= plan.at {
                    match self.kill_dispatcher(t0).await {
                        Ok(k) => killed = Some(k),
                        Err(e) => return e,
                    }
                }
                if let (Some((i, at)), Some(after), false) = (killed, plan.restart_after, restarted)
                {
                    if at.elapsed() >= after {
                        restarted = true;
                        self.report.restarted_at_s = Some(round1(t0.elapsed().as_secs_f64()));
                        let begun = Instant::now();
                        self.nodes[i].killed = false;
                        if let Err(e) = self.start_node(i).await {
                            return e;
                        }
                        self.report.restart_ready_s = Some(round1(begun.elapsed().as_secs_f64()));
                        eprintln!(
                            "medify-sim: {} restarted (ready in {:.1} s)",
                            self.nodes[i].id,
                            begun.elapsed().as_secs_f64()
                        );
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// A node that exited though nobody killed it, or the balancer.
    fn unexpected_death(&mut self) -> Option<anyhow::Error> {
        for node in &mut self.nodes {
            if node.killed {
                continue;
            }
            if let Some(child) = node.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.keep_dir = true;
                    return Some(anyhow!(
                        "{} exited during the run ({status}); the end of its log ({}):\n{}",
                        node.id,
                        node.log.display(),
                        log_tail(&node.log)
                    ));
                }
            }
        }
        if let Some(Ok(Some(status))) = self.balancer.as_mut().map(Child::try_wait) {
            self.keep_dir = true;
            return Some(anyhow!("haproxy exited during the run ({status})"));
        }
        None
    }

    /// SIGKILLs the node `GET /api/v1/cluster` names as running dispatch (asked through
    /// the balancer as the admin), then waits (at most a minute) until another node is
    /// named, recording how long that took. The killed node's index and when it died.
    async fn kill_dispatcher(&mut self, t0: Instant) -> Result<(usize, Instant), anyhow::Error> {
        let api = Api::new(&self.base)?;
        let session = api
            .login(&self.admin.email, &self.admin.password)
            .await
            .context("the admin could not sign in to find the dispatch node")?;
        let token = session.token(&api).await?;
        // The holder may be changing hands right now: ask for a few seconds.
        let deadline = Instant::now() + Duration::from_secs(15);
        let holder = loop {
            match api.cluster(&token).await {
                Ok((Some(d), _)) => break d,
                Ok((None, _)) | Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Ok((None, _)) => bail!("no node runs dispatch: nothing to kill"),
                Err(e) => return Err(e.context("GET /api/v1/cluster")),
            }
        };
        let i = node_index(&holder, self.nodes.len())
            .ok_or_else(|| anyhow!("the dispatch node {holder:?} is not one of the sim's"))?;
        let node = &mut self.nodes[i];
        node.killed = true;
        if let Some(child) = node.child.as_mut() {
            let _ = child.kill(); // SIGKILL
            let _ = child.wait();
        }
        let killed_at = Instant::now();
        self.report.killed = Some(holder.clone());
        self.report.killed_at_s = Some(round1(t0.elapsed().as_secs_f64()));
        eprintln!(
            "medify-sim: SIGKILL to {holder} (running dispatch) at {:.1} s",
            t0.elapsed().as_secs_f64()
        );
        let deadline = killed_at + Duration::from_secs(60);
        loop {
            if let Ok((Some(d), _)) = api.cluster(&token).await {
                if d != holder {
                    let took = killed_at.elapsed().as_secs_f64();
                    eprintln!("medify-sim: {d} took dispatch over after {took:.1} s");
                    self.report.dispatch_after = Some(d);
                    self.report.takeover_s = Some(round1(took));
                    break;
                }
            }
            if Instant::now() > deadline {
                self.report.problems.push(format!(
                    "no node took dispatch over within 60 s of killing {holder}"
                ));
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Ok((i, killed_at))
    }

    /// Keeps the nodes' and the balancer's logs after the run (e.g. orders were lost).
    pub fn keep_logs(&mut self) {
        self.keep_dir = true;
    }

    /// Stops everything: SIGTERM to the nodes (SIGKILL after 5 s) and the balancer, then
    /// drops the database and deletes the prefix's keys, and removes the files unless
    /// something failed (then their place is printed).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        // SIGTERM to every node at once, then wait for each.
        for node in &mut self.nodes {
            if let Some(child) = node.child.as_mut() {
                if let (Ok(None), Ok(pid)) = (child.try_wait(), libc::pid_t::try_from(child.id())) {
                    // SAFETY: signalling our own child, whose pid we hold un-reaped.
                    unsafe {
                        libc::kill(pid, libc::SIGTERM);
                    }
                }
            }
        }
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                terminate(&mut child, Duration::from_secs(5));
            }
        }
        if let Some(mut b) = self.balancer.take() {
            terminate(&mut b, Duration::from_secs(2));
        }
        if let Err(e) = self.db.drop_now() {
            eprintln!(
                "medify-sim: could not drop the database {}: {e:#}",
                self.db.name
            );
        }
        if let Err(e) = backing::redis_clear(&self.redis_url, &self.prefix) {
            eprintln!(
                "medify-sim: could not delete the Redis keys {}*: {e:#}",
                self.prefix
            );
        }
        if self.keep_dir {
            eprintln!(
                "medify-sim: the nodes' logs are kept in {}",
                self.dir.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_or_without_a_unit() {
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration(" 30 "), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        for bad in ["", "s", "ten s", "-1s", "1h", "NaNs", "inf"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn the_balancer_always_gets_three_servers() {
        let a = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            balancer_servers(&a(&["n1", "n2", "n3"])).unwrap(),
            a(&["n1", "n2", "n3"])
        );
        assert_eq!(
            balancer_servers(&a(&["n1", "n2"])).unwrap(),
            a(&["n1", "n2", "n2"])
        );
        assert!(balancer_servers(&[]).is_err());
        assert!(balancer_servers(&a(&["1", "2", "3", "4"])).is_err());
    }

    #[test]
    fn node_ids_map_to_the_sims_nodes() {
        assert_eq!(node_index("node-1", 3), Some(0));
        assert_eq!(node_index("node-3", 3), Some(2));
        assert_eq!(node_index("node-3", 2), None);
        assert_eq!(node_index("node-0", 3), None);
        assert_eq!(node_index("host-1234", 3), None);
    }

    #[test]
    fn the_built_in_balancer_config_reads_three_nodes_from_the_environment() {
        for var in [
            "MEDIFY_LB_BIND",
            "MEDIFY_NODE1",
            "MEDIFY_NODE2",
            "MEDIFY_NODE3",
        ] {
            assert!(HAPROXY_CFG.contains(&format!("${{{var}}}")), "{var}");
        }
        assert!(!HAPROXY_CFG.contains("MEDIFY_NODE4"));
    }
}
