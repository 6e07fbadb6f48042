//! Tests of the real `medify` binary as an operator runs it: a clean environment, a fresh
//! working directory, signals, and what it writes to its logs.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

#[path = "support/process.rs"]
mod process;
use process::{http, medify, Server, WorkDir, WAIT};

#[test]
fn invalid_configuration_is_reported_in_one_message() {
    let dir = WorkDir::new();
    let out = medify(
        dir.path(),
        &[
            ("MEDIFY_ENV", "production"),
            ("DATABASE_URL", "nosuch://x"),
            ("MEDIFY_BIND", "nonsense"),
        ],
    )
    .output()
    .expect("run medify");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    for var in ["DATABASE_URL", "MEDIFY_BIND", "JWT_SECRET"] {
        assert!(stderr.contains(var), "{var} missing from: {stderr}");
    }
    assert_eq!(
        stderr.matches("invalid configuration").count(),
        1,
        "{stderr}"
    );
    // Nothing was started, so nothing was created.
    assert!(!dir.path().join("medify.db").exists());
}

#[test]
fn help_and_version() {
    let dir = WorkDir::new();
    let help = medify(dir.path(), &[]).arg("--help").output().expect("run");
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(text.contains("serve") && text.contains("migrate"), "{text}");
    let version = medify(dir.path(), &[])
        .arg("--version")
        .output()
        .expect("run");
    assert!(version.status.success());
    assert!(String::from_utf8_lossy(&version.stdout).contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn migrate_creates_the_database_and_is_idempotent() {
    let dir = WorkDir::new();
    let vars = [("LOG_FORMAT", "json")];
    let first = medify(dir.path(), &vars)
        .arg("migrate")
        .output()
        .expect("run");
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let migrations = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite"))
        .expect("migrations dir")
        .count();
    let applied = format!("\"applied\":{migrations}");
    assert!(String::from_utf8_lossy(&first.stdout).contains(&applied));
    assert!(dir.path().join("medify.db").exists());
    let second = medify(dir.path(), &vars)
        .arg("migrate")
        .output()
        .expect("run");
    assert!(second.status.success());
    assert!(String::from_utf8_lossy(&second.stdout).contains("\"applied\":0"));
}

#[test]
fn fresh_start_serves_and_stops_cleanly_on_sigterm() {
    let dir = WorkDir::new();
    let mut server = Server::start(dir.path(), &[]);
    assert!(
        dir.path().join("medify.db").exists(),
        "SQLite file not created"
    );
    assert!(
        server.log_text().contains("JWT_SECRET is not set"),
        "no warning about the generated secret"
    );
    for path in ["/healthz", "/readyz", "/metrics", "/api/v1/openapi.json"] {
        let (status, body) = http(&server.address, &format!("GET {path} HTTP/1.1"), "");
        assert_eq!(status, 200, "{path}: {body}");
    }
    server.signal(libc::SIGTERM);
    assert_eq!(server.wait_exit(), Some(0), "log:\n{}", server.log_text());
}

#[test]
fn sigint_also_stops_cleanly() {
    let dir = WorkDir::new();
    let mut server = Server::start(dir.path(), &[]);
    server.signal(libc::SIGINT);
    assert_eq!(server.wait_exit(), Some(0), "log:\n{}", server.log_text());
}

#[test]
fn secrets_in_requests_never_reach_the_logs() {
    let dir = WorkDir::new();
    let mut server = Server::start(dir.path(), &[("RUST_LOG", "trace")]);
    let token = "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0LXRva2VuLXBheWxvYWQ.c2lnbmF0dXJlLXNlY3JldA";
    let secrets = [
        token,
        "query-token-7f3a9c",
        "hunter2-correct-horse",
        "refresh-8d1e77b0",
        "otp-code-493817",
    ];
    let body = format!(
        r#"{{"email":"a@b.co","password":"{}","refresh_token":"{}","code":"{}"}}"#,
        secrets[2], secrets[3], secrets[4]
    );
    let head = format!(
        "POST /api/v1/auth/login?access_token={} HTTP/1.1\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json",
        secrets[1]
    );
    let (status, _) = http(&server.address, &head, &body);
    assert!(status >= 400, "status {status}");
    // The completion line proves the request was logged at all.
    server.wait_for(|l| l.contains("request completed") && l.contains("/api/v1/auth/login"));
    server.signal(libc::SIGTERM);
    assert_eq!(server.wait_exit(), Some(0));
    let log = server.log_text();
    for secret in secrets {
        assert!(!log.contains(secret), "{secret} leaked into:\n{log}");
    }
    assert!(
        !log.contains("access_token="),
        "query string leaked:\n{log}"
    );
}

#[test]
fn sigterm_lets_an_in_flight_request_finish() {
    let dir = WorkDir::new();
    let mut server = Server::start(dir.path(), &[("RUST_LOG", "info,medify=debug")]);
    let body = r#"{"email":"nobody@example.com","password":"wrong password"}"#;
    let (first, rest) = body.split_at(10);
    let mut stream = TcpStream::connect(&server.address).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    write!(
        stream,
        "POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{first}",
        body.len()
    )
    .expect("write head");
    stream.flush().expect("flush");
    // The server has started on the request (half its body sent) when the signal arrives.
    server.wait_for(|l| l.contains("request started") && l.contains("/api/v1/auth/login"));
    server.signal(libc::SIGTERM);
    server.wait_for(|l| l.contains("shutdown requested"));
    stream.write_all(rest.as_bytes()).expect("write rest");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    assert!(
        response.starts_with("HTTP/1.1 401"),
        "in-flight request was not answered: {response:?}"
    );
    assert!(response.contains("invalid_credentials"), "{response}");
    assert_eq!(server.wait_exit(), Some(0), "log:\n{}", server.log_text());
}

#[test]
fn seed_is_idempotent_and_fills_the_catalog() {
    let dir = WorkDir::new();
    let first = medify(dir.path(), &[])
        .args(["seed", "--pharmacies", "12"])
        .output()
        .expect("run");
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let out = String::from_utf8_lossy(&first.stdout).into_owned();
    assert!(out.contains("pharmacies: 12 added"), "{out}");
    let second = medify(dir.path(), &[])
        .args(["seed", "--pharmacies", "12"])
        .output()
        .expect("run");
    assert!(second.status.success());
    let out = String::from_utf8_lossy(&second.stdout).into_owned();
    assert!(
        out.contains("medicines: 0 added")
            && out.contains("pharmacies: 0 added")
            && out.contains("stock rows: 0 added"),
        "{out}"
    );

    let bad = medify(dir.path(), &[])
        .args(["seed", "--lat", "95"])
        .output()
        .expect("run");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--lat"));

    let mut server = Server::start(dir.path(), &[]);
    let (status, body) = http(
        &server.address,
        "GET /api/v1/medicines?q=paracetmol HTTP/1.1",
        "",
    );
    assert_eq!(status, 200, "{body}");
    let page: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert!(page["total"].as_i64().unwrap_or(0) >= 2, "{page}");
    assert!(
        page["items"][0]["name"]
            .as_str()
            .unwrap_or("")
            .starts_with("Paracetamol"),
        "{page}"
    );
    let (_, body) = http(&server.address, "GET /api/v1/medicines?q=calp HTTP/1.1", "");
    assert!(body.contains("Calpol"), "{body}");
    let (_, body) = http(
        &server.address,
        "GET /api/v1/pharmacies?lat=12.9716&lng=77.5946&radius_m=50000 HTTP/1.1",
        "",
    );
    let page: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(page["total"], 12, "{page}");
    server.signal(libc::SIGTERM);
    assert_eq!(server.wait_exit(), Some(0));
}

/// JSON over the minimal HTTP client: (status, parsed body or Null).
fn call(
    address: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut head = format!("{method} {path} HTTP/1.1");
    if let Some(token) = token {
        head.push_str(&format!("\r\nAuthorization: Bearer {token}"));
    }
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    if !body.is_empty() {
        head.push_str("\r\nContent-Type: application/json");
    }
    let (status, text) = http(address, &head, &body);
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    )
}

#[test]
fn orders_survive_sigkill_and_stock_matches_open_orders() {
    use serde_json::json;
    let dir = WorkDir::new();
    let env = [
        ("MEDIFY_ADMIN_EMAIL", "root@example.com"),
        ("MEDIFY_ADMIN_PASSWORD", "root password 123"),
        ("JWT_SECRET", "crash-test-secret-crash-test-secret-0123"),
    ];
    let mut server = Server::start(dir.path(), &env);
    let a = server.address.clone();
    let login = |a: &str, email: &str, pw: &str| {
        let (s, body) = call(
            a,
            "POST",
            "/api/v1/auth/login",
            None,
            Some(&json!({"email": email, "password": pw})),
        );
        assert_eq!(s, 200, "{body}");
        body["access_token"].as_str().expect("token").to_owned()
    };
    let admin = login(&a, "root@example.com", "root password 123");
    let (_, pharmacy) = call(
        &a,
        "POST",
        "/api/v1/pharmacies",
        Some(&admin),
        Some(&json!({"name": "P", "lat": 12.97, "lng": 77.59, "address": "x"})),
    );
    let (_, medicine) = call(
        &a,
        "POST",
        "/api/v1/medicines",
        Some(&admin),
        Some(&json!({"name": "M", "sku": "M-1", "price_cents": 100})),
    );
    let (pid, mid) = (
        pharmacy["id"].as_str().expect("id").to_owned(),
        medicine["id"].as_str().expect("id").to_owned(),
    );
    let (s, _) = call(
        &a,
        "PUT",
        &format!("/api/v1/pharmacies/{pid}/stock"),
        Some(&admin),
        Some(&json!({"items": [{"medicine_id": mid, "quantity": 20}]})),
    );
    assert_eq!(s, 200);
    let (s, _) = call(
        &a,
        "POST",
        "/api/v1/auth/register",
        None,
        Some(&json!({"name": "C", "email": "c@example.com", "password": "customer pw 1"})),
    );
    assert_eq!(s, 201);
    let customer = login(&a, "c@example.com", "customer pw 1");
    let mut ids = Vec::new();
    for qty in [1, 2, 3] {
        let (s, order) = call(
            &a,
            "POST",
            "/api/v1/orders",
            Some(&customer),
            Some(
                &json!({"items": [{"medicine_id": mid, "qty": qty}], "delivery": {"lat": 12.97, "lng": 77.59, "address": "x"}}),
            ),
        );
        assert_eq!(s, 201, "{order}");
        ids.push(order["id"].as_str().expect("id").to_owned());
    }
    let (s, _) = call(
        &a,
        "POST",
        &format!("/api/v1/orders/{}/cancel", ids[0]),
        Some(&customer),
        None,
    );
    assert_eq!(s, 200);

    server.signal(libc::SIGKILL);
    assert_eq!(server.wait_exit(), None, "killed by a signal");
    drop(server);

    // A crash between a reservation and its order row leaves an orphan hold: make one.
    let db = dir.path().join("medify.db");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display())).await.expect("db");
        let orphan = uuid::Uuid::now_v7();
        let pid = uuid::Uuid::parse_str(&pid).expect("uuid");
        let mid = uuid::Uuid::parse_str(&mid).expect("uuid");
        // Older than the repair's grace period: no live process can still be completing it.
        let long_ago = chrono::Utc::now() - chrono::Duration::hours(1);
        sqlx::query("INSERT INTO stock_reservations (id, pharmacy_id, status, created_at, updated_at) VALUES ($1, $2, 'held', $3, $3)")
            .bind(orphan).bind(pid).bind(long_ago).execute(&mut conn).await.expect("orphan");
        sqlx::query("INSERT INTO stock_reservation_items (reservation_id, medicine_id, qty) VALUES ($1, $2, 4)")
            .bind(orphan).bind(mid).execute(&mut conn).await.expect("orphan line");
        sqlx::query("UPDATE pharmacy_stock SET reserved = reserved + 4 WHERE pharmacy_id = $1 AND medicine_id = $2")
            .bind(pid).bind(mid).execute(&mut conn).await.expect("orphan hold");
    });

    let mut server = Server::start(dir.path(), &env);
    let a = server.address.clone();
    let log = server.log_text();
    assert!(
        log.contains(r#""message":"active orders rehydrated","active":2"#),
        "{log}"
    );
    assert!(
        log.contains(r#""released":1"#),
        "the orphan hold was reconciled: {log}"
    );
    let stock = |a: &str| {
        let (_, page) = call(
            a,
            "GET",
            &format!("/api/v1/pharmacies/{pid}/stock"),
            None,
            None,
        );
        (
            page["items"][0]["quantity"].as_i64().expect("q"),
            page["items"][0]["reserved"].as_i64().expect("r"),
        )
    };
    assert_eq!(
        stock(&a),
        (20, 5),
        "reserved = 2 + 3, the open orders; the orphan hold was released"
    );
    let status = |a: &str, id: &str| {
        call(
            a,
            "GET",
            &format!("/api/v1/orders/{id}"),
            Some(&customer),
            None,
        )
        .1["status"]
            .clone()
    };
    assert_eq!(status(&a, &ids[0]), "cancelled");
    assert_eq!(status(&a, &ids[1]), "dispatching");
    assert_eq!(status(&a, &ids[2]), "dispatching");
    let (_, metrics) = http(&a, "GET /metrics HTTP/1.1", "");
    assert!(
        metrics.contains("medify_orders{status=\"dispatching\"} 2"),
        "{metrics}"
    );
    // The rehydrated actors keep working.
    let (s, body) = call(
        &a,
        "POST",
        &format!("/api/v1/orders/{}/cancel", ids[1]),
        Some(&customer),
        None,
    );
    assert_eq!(
        (s, body["status"].as_str()),
        (200, Some("cancelled")),
        "{body}"
    );
    assert_eq!(stock(&a), (20, 3));
    server.signal(libc::SIGTERM);
    assert_eq!(server.wait_exit(), Some(0));
}

/// CPU seconds (user + system) the process `pid` has used so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // The fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 =
        fields[11].parse::<f64>().expect("utime") + fields[12].parse::<f64>().expect("stime");
    // SAFETY: sysconf with a valid name has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks / hz
}

/// Connections that send half a rider request line and stop cost nothing while they wait:
/// the listener sleeps on the socket's readiness. (It used to poll each with a 5 ms timer
/// for 5 s, so 1 000 of them kept a core busy: about 3 s of CPU in these 3 s.) A resource
/// bound with a wide margin, not a speed claim: `cargo bench --bench half_open` measures.
#[test]
fn half_open_connections_do_not_burn_cpu() {
    let dir = WorkDir::new();
    let mut server = Server::start(dir.path(), &[]);
    let pid = server.child.id();
    let mut idle: Vec<TcpStream> = (0..1_000)
        .map(|_| {
            let mut c = TcpStream::connect(&server.address).expect("connect");
            c.write_all(b"GET /ws/r").expect("half a line");
            c
        })
        .collect();
    // Each connection's bytes have been read once they are all accepted and answered by a
    // later request on the same listener.
    let mut probe = TcpStream::connect(&server.address).expect("probe");
    probe
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("probe");
    let mut answer = String::new();
    probe.read_to_string(&mut answer).expect("probe answer");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let before = cpu_seconds(pid);
    std::thread::sleep(Duration::from_secs(3));
    let used = cpu_seconds(pid) - before;
    assert!(
        used < 1.0,
        "{used:.2} s of CPU in 3 s with 1 000 half-open connections"
    );
    // And a rider whose line arrives in pieces is still served.
    let c = &mut idle[0];
    c.write_all(b"ider HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("rest of the head");
    let mut reply = [0u8; 12];
    c.read_exact(&mut reply).expect("reply");
    assert_eq!(
        &reply, b"HTTP/1.1 401",
        "the handshake went through the app"
    );
    drop(idle);
    server.signal(libc::SIGTERM);
    assert_eq!(server.wait_exit(), Some(0));
}
