//! Running the real `medify` binary from a test: a fresh working directory, a clean
//! environment, its JSON log read line by line, signals, and a minimal HTTP client.
//! Shared by `tests/binary.rs` and `tests/cluster.rs`.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_medify");
/// Guards against a hung binary; events, not this, synchronise the tests.
pub const WAIT: Duration = Duration::from_secs(60);

/// A fresh, empty working directory, removed afterwards.
pub struct WorkDir(pub PathBuf);

impl WorkDir {
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("medify-bin-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self(dir)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `medify` with an empty environment (but PATH) in `dir`, plus `vars`.
pub fn medify(dir: &Path, vars: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd
}

/// A running server whose stdout lines are collected as they come.
pub struct Server {
    pub child: Child,
    lines: Receiver<String>,
    log: Arc<Mutex<Vec<String>>>,
    pub address: String,
}

impl Server {
    pub fn start(dir: &Path, vars: &[(&str, &str)]) -> Self {
        let mut all = vec![
            ("MEDIFY_BIND", "127.0.0.1:0"),
            ("LOG_FORMAT", "json"),
            ("MEDIFY_WORKERS", "1"),
        ];
        all.extend_from_slice(vars);
        let mut child = medify(dir, &all).spawn().expect("spawn medify");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().expect("log").push(line.clone());
                let _ = tx.send(line);
            }
        });
        let mut server = Self {
            child,
            lines,
            log,
            address: String::new(),
        };
        let listening = server.wait_for(|l| l.contains("\"listening\""));
        let event: serde_json::Value = serde_json::from_str(&listening).expect("json log line");
        server.address = event["address"].as_str().expect("address field").to_owned();
        server
    }

    /// Blocks until a log line satisfies `pred`, and returns it.
    pub fn wait_for(&mut self, pred: impl Fn(&str) -> bool) -> String {
        loop {
            match self.lines.recv_timeout(WAIT) {
                Ok(line) if pred(&line) => return line,
                Ok(_) => continue,
                Err(e) => {
                    let _ = self.child.kill();
                    panic!(
                        "log line never came ({e}); log so far:\n{}",
                        self.log_text()
                    );
                }
            }
        }
    }

    pub fn log_text(&self) -> String {
        self.log.lock().expect("log").join("\n")
    }

    pub fn signal(&self, signal: i32) {
        let pid = i32::try_from(self.child.id()).expect("pid");
        // SAFETY: kill(2) with a pid we own and a valid signal number.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "kill failed");
    }

    /// Waits for the process to exit and returns its exit code.
    pub fn wait_exit(&mut self) -> Option<i32> {
        let (tx, rx) = mpsc::channel();
        let pid = self.child.id();
        let status = std::thread::scope(|s| {
            s.spawn(move || {
                if rx.recv_timeout(WAIT).is_err() {
                    // SAFETY: as above; the child has hung, end it.
                    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                }
            });
            let status = self.child.wait().expect("wait");
            let _ = tx.send(());
            status
        });
        status.code()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal HTTP/1.1 exchange; returns the status and the body.
pub fn http(address: &str, request_head: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(address).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    let request = format!(
        "{request_head}\r\nHost: {address}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}
