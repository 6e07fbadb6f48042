//! Starting a `medify` server for a run: a child process on a fresh SQLite file in its
//! own temporary directory, on a free loopback port, with an admin, generous auth rate
//! limits (mass registration), the chosen matching strategy, a payment webhook secret
//! (the sim plays the payment provider) and an object store for prescription uploads in
//! that directory.
//!
//! The child never outlives the sim: [`ServerProcess`] stops it when dropped (SIGTERM,
//! then SIGKILL after a few seconds), which also happens when a run fails or is
//! interrupted, and on Linux the child gets SIGTERM from the kernel if the sim itself
//! dies without unwinding.
//!
//! The environment ([`sim_env`]), spawning ([`spawn_server`]), readiness ([`wait_ready`])
//! and stopping ([`terminate`]) are shared with the cluster's nodes (`crate::cluster`).

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use rand::RngCore;

use crate::api::Api;
use crate::scenario::Matching;
use crate::Admin;

/// How long the server may take to answer `/readyz`.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A running child server.
pub struct ServerProcess {
    child: Option<Child>,
    dir: PathBuf,
    pub base: String,
    pub admin: Admin,
    /// The server's `PAYMENT_WEBHOOK_SECRET` (random, unless the scenario's `[server_env]`
    /// sets one).
    pub webhook_secret: String,
    log: PathBuf,
    keep_dir: bool,
    stopped: bool,
}

/// The `medify` binary next to this executable (how cargo lays out a workspace's
/// binaries), if there is one.
pub fn default_server_bin() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("could not find the sim's own executable")?;
    let dir = exe
        .parent()
        .ok_or_else(|| anyhow!("the sim's executable has no directory"))?;
    let bin = dir.join(format!("medify{}", std::env::consts::EXE_SUFFIX));
    if !bin.is_file() {
        bail!(
            "no server binary at {} (build it with `cargo build --release -p medify`, \
             or pass --server-bin PATH or --base URL)",
            bin.display()
        );
    }
    Ok(bin)
}

pub fn free_port() -> anyhow::Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("could not find a free port")?;
    Ok(l.local_addr()?.port())
}

pub fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The environment every server the sim starts gets (one process or each cluster node):
/// development mode, an admin, generous rate and order limits, a payment webhook secret,
/// an object store under `dir`, the matching strategy, then the scenario's `extra_env`.
/// The database and the address are the caller's.
pub fn sim_env(
    matching: Matching,
    admin: &Admin,
    webhook_secret: &str,
    jwt_secret: &str,
    dir: &Path,
    extra_env: &BTreeMap<String, String>,
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = [
        ("MEDIFY_ENV", "development"),
        ("JWT_SECRET", jwt_secret),
        ("MEDIFY_ADMIN_EMAIL", &admin.email),
        ("MEDIFY_ADMIN_PASSWORD", &admin.password),
        ("MATCHING", matching.as_str()),
        ("OTP_DELIVERY", "response"),
        ("RATE_LIMIT_AUTH_PER_IP", "1000000"),
        ("RATE_LIMIT_AUTH_PER_ACCOUNT", "1000"),
        // A simulated customer may order faster than a person would.
        ("MAX_OPEN_ORDERS_PER_CUSTOMER", "1000"),
        ("RATE_LIMIT_ORDERS_PER_MINUTE", "1000000"),
        ("MEDIFY_SHUTDOWN_TIMEOUT_S", "2"),
        ("PAYMENT_WEBHOOK_SECRET", webhook_secret),
        ("RUST_LOG", "warn"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    env.push((
        "OBJECT_STORE".to_owned(),
        format!("file:{}", dir.join("objects").display()),
    ));
    env.extend(extra_env.iter().map(|(k, v)| (k.clone(), v.clone())));
    env
}

/// A new admin account with a random password.
pub fn sim_admin() -> Admin {
    Admin {
        email: "sim-admin@medify.test".to_owned(),
        password: format!("sim-{}", random_hex(12)),
    }
}

/// The webhook secret of the scenario's `[server_env]`, else a random one.
pub fn sim_webhook_secret(extra_env: &BTreeMap<String, String>) -> String {
    extra_env
        .get("PAYMENT_WEBHOOK_SECRET")
        .cloned()
        .unwrap_or_else(|| format!("whsec_sim_{}", random_hex(16)))
}

/// Starts `bin` with `env` (and nothing else of the sim's own environment that `env`
/// sets), its output appended to `log`. On Linux the child gets SIGTERM if the sim dies.
pub fn spawn_server(bin: &Path, env: &[(String, String)], log: &Path) -> anyhow::Result<Child> {
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("could not create {}", log.display()))?;
    let mut cmd = Command::new(bin);
    cmd.stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file);
    for (k, v) in env {
        cmd.env(k, v);
    }
    die_with_parent(&mut cmd);
    cmd.spawn()
        .with_context(|| format!("could not start the server {}", bin.display()))
}

/// On Linux, the child gets SIGTERM from the kernel when the sim dies without unwinding.
pub fn die_with_parent(cmd: &mut Command) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = cmd;
}

/// Waits until `base` answers `/readyz` 200; an error (with the end of `log`) if `child`
/// exits first or it takes longer than a minute.
pub async fn wait_ready(base: &str, child: &mut Child, log: &Path) -> anyhow::Result<()> {
    let api = Api::new(base)?;
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            bail!(
                "the server exited during start-up ({status}); its log ({}):\n{}",
                log.display(),
                log_tail(log)
            );
        }
        if api.ready().await {
            return Ok(());
        }
        if start.elapsed() > READY_TIMEOUT {
            bail!(
                "the server did not become ready within {READY_TIMEOUT:?}; its log ({}):\n{}",
                log.display(),
                log_tail(log)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The last 30 lines of a log file.
pub fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// SIGTERM, then SIGKILL once `grace` has passed; waits for the child either way.
pub fn terminate(child: &mut Child, grace: Duration) {
    if let Ok(None) = child.try_wait() {
        if let Ok(pid) = libc::pid_t::try_from(child.id()) {
            // SAFETY: signalling our own child, whose pid we hold un-reaped.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl ServerProcess {
    /// Starts `bin` and waits until `/readyz` answers 200.
    pub async fn start(
        bin: &Path,
        matching: Matching,
        extra_env: &BTreeMap<String, String>,
    ) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("medify-sim-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("could not create {}", dir.display()))?;
        let log = dir.join("server.log");
        let port = free_port()?;
        let admin = sim_admin();
        let db = dir.join("sim.db");
        let webhook_secret = sim_webhook_secret(extra_env);
        let mut env = vec![
            ("MEDIFY_BIND".to_owned(), format!("127.0.0.1:{port}")),
            (
                "DATABASE_URL".to_owned(),
                format!("sqlite://{}?mode=rwc", db.display()),
            ),
        ];
        env.extend(sim_env(
            matching,
            &admin,
            &webhook_secret,
            &random_hex(32),
            &dir,
            extra_env,
        ));
        let child = spawn_server(bin, &env, &log)?;
        let mut server = Self {
            child: Some(child),
            dir,
            base: format!("http://127.0.0.1:{port}"),
            admin,
            webhook_secret,
            log,
            keep_dir: false,
            stopped: false,
        };
        server.wait_ready().await?;
        Ok(server)
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let Some(child) = self.child.as_mut() else {
            bail!("the server is not running");
        };
        let r = wait_ready(&self.base, child, &self.log).await;
        if r.is_err() {
            self.keep_dir = true;
        }
        r
    }

    /// The last lines of the server's log.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log)
    }

    /// Whether the child is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }

    /// Resolves when the child exits (checked twice a second), with its exit status and
    /// the end of its log. The server's files are then kept for a post-mortem.
    pub async fn died(&mut self) -> String {
        loop {
            let status = match self.child.as_mut().map(Child::try_wait) {
                Some(Ok(None)) => None,
                Some(Ok(Some(status))) => Some(status.to_string()),
                Some(Err(e)) => Some(format!("unknown status ({e})")),
                None => Some("not running".to_owned()),
            };
            if let Some(status) = status {
                self.keep_dir = true;
                return format!(
                    "the server exited during the run ({status}); the end of its log ({}):\n{}",
                    self.log.display(),
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Stops the server (SIGTERM, then SIGKILL after 5 s) and removes its files.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        if let Some(mut child) = self.child.take() {
            terminate(&mut child, Duration::from_secs(5));
        }
        if self.keep_dir {
            eprintln!("medify-sim: server files kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.shutdown();
    }
}
