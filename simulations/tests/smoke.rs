//! The `smoke` scenario end to end: the real server (started in-process on its own actix
//! system, over a fresh SQLite file) and the simulator driven through its library.
//!
//! It asserts on outcomes only: every order reaches a final state, at least 95% of the
//! orders meant to be delivered are (those the sim's pharmacists rejected or whose payment
//! its provider failed are left out), prescriptions were reviewed and online payments
//! reported, and the server sent no error frame and no unexpected HTTP status.
//!
//! A server without prescription uploads (404) is tolerated for now: the run then warns
//! and places its rx orders without the rx line, and the review assertions are skipped
//! (see `medify_sim::prescription`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::mpsc;

use medify::config::Settings;
use medify::startup::Application;
use medify_sim::{Admin, Scenario};

const ADMIN_EMAIL: &str = "sim-admin@medify.test";
const ADMIN_PASSWORD: &str = "sim-admin-password";
const WEBHOOK_SECRET: &str = "whsec_sim_smoke_0123456789abcdef";

/// A server on its own thread; stopped and its database removed on drop.
struct Server {
    port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    db: PathBuf,
    objects: PathBuf,
}

impl Server {
    fn start() -> Self {
        let run = uuid::Uuid::now_v7();
        let db = std::env::temp_dir().join(format!("medify-sim-smoke-{run}.db"));
        let objects = std::env::temp_dir().join(format!("medify-sim-smoke-{run}-objects"));
        let env: HashMap<&str, String> = HashMap::from([
            ("MEDIFY_ENV", "test".to_owned()),
            ("MEDIFY_BIND", "127.0.0.1:0".to_owned()),
            ("MEDIFY_SHUTDOWN_TIMEOUT_S", "1".to_owned()),
            (
                "DATABASE_URL",
                format!("sqlite://{}?mode=rwc", db.display()),
            ),
            (
                "JWT_SECRET",
                "smoke-secret-smoke-secret-smoke-secret-0123".to_owned(),
            ),
            ("MEDIFY_ADMIN_EMAIL", ADMIN_EMAIL.to_owned()),
            ("MEDIFY_ADMIN_PASSWORD", ADMIN_PASSWORD.to_owned()),
            ("OTP_DELIVERY", "response".to_owned()),
            ("RATE_LIMIT_AUTH_PER_IP", "1000000".to_owned()),
            ("RATE_LIMIT_AUTH_PER_ACCOUNT", "1000".to_owned()),
            ("MAX_OPEN_ORDERS_PER_CUSTOMER", "1000".to_owned()),
            ("RATE_LIMIT_ORDERS_PER_MINUTE", "1000000".to_owned()),
            ("RUST_LOG", "warn".to_owned()),
            ("PAYMENT_WEBHOOK_SECRET", WEBHOOK_SECRET.to_owned()),
            ("OBJECT_STORE", format!("file:{}", objects.display())),
        ]);
        let settings = Settings::from_lookup(|k| env.get(k).cloned()).expect("settings");
        let (port_tx, port_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let app = Application::build(settings).await.expect("server start");
                port_tx.send(app.port()).expect("port");
                let _ = app
                    .run_until(async {
                        let _ = stop_rx.await;
                    })
                    .await;
            });
        });
        let port = port_rx
            .recv()
            .expect("the server thread died during start-up");
        Self {
            port,
            stop: Some(stop_tx),
            thread: Some(thread),
            db,
            objects,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        for suffix in ["", "-wal", "-shm"] {
            let mut p = self.db.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
        let _ = std::fs::remove_dir_all(&self.objects);
    }
}

#[test]
fn smoke_scenario_delivers_every_order() {
    let server = Server::start();
    let scenario = Scenario::load("smoke").expect("the smoke scenario");
    let admin = Admin {
        email: ADMIN_EMAIL.to_owned(),
        password: ADMIN_PASSWORD.to_owned(),
    };
    let base = format!("http://127.0.0.1:{}", server.port);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let report = rt
        .block_on(medify_sim::run(
            &base,
            &scenario,
            &admin,
            Some(WEBHOOK_SECRET),
            false,
        ))
        .expect("the smoke run");
    drop(rt);
    drop(server);
    println!("{}", report.table());

    let o = &report.orders;
    assert_eq!(o.placed, o.planned, "every order placed: {o:?}");
    assert!(report.all_final(), "orders still open: {o:?}");
    assert_eq!(
        o.delivered + o.cancelled + o.failed,
        o.placed,
        "final states add up: {o:?}"
    );
    assert!(
        o.delivered * 100 >= report.deliverable() * 95,
        "at least 95% of the deliverable orders delivered: {o:?}, {:?} {:?}",
        report.reviews,
        report.payments
    );
    assert!(report.delivered_pct.is_some_and(|p| p >= 95.0));
    // The smoke scenario's rejections and payment failures are few enough that even
    // counting them as undelivered, 95% of all placed orders arrive.
    assert!(
        o.delivered * 100 >= o.placed * 95,
        "at least 95% of all placed orders delivered: {o:?}"
    );

    // Online payments: some were made, each reported once, failures cancelled.
    let paid = &report.payments;
    assert!(o.online > 0, "some orders paid online: {o:?}");
    assert!(paid.succeeded > 0, "some payments succeeded: {paid:?}");
    assert!(paid.succeeded + paid.failed <= o.online, "{paid:?} {o:?}");
    assert_eq!(
        report.payment_latency_ms.count as u64,
        paid.succeeded + paid.failed
    );
    assert!(
        o.cancelled >= paid.failed + report.reviews.rejected,
        "{o:?}"
    );

    // Prescriptions: reviewed where the server takes uploads.
    let reviews = &report.reviews;
    if o.rx_without_prescription == 0 {
        assert!(
            o.rx > 0,
            "some orders carried a prescription-only line: {o:?}"
        );
        assert_eq!(report.prescriptions_uploaded, o.rx);
        assert!(
            reviews.approved > 0,
            "some prescriptions approved: {reviews:?}"
        );
        assert_eq!(
            reviews.approved + reviews.rejected,
            o.rx,
            "every rx order reviewed"
        );
        assert_eq!(report.review_latency_ms.count as u64, o.rx);
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    } else {
        // FALLBACK(prescriptions endpoint): drop this branch once uploads are on main.
        eprintln!("warning: this server has no prescription uploads; reviews not exercised");
        assert_eq!((o.rx, reviews.approved + reviews.rejected), (0, 0));
        assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
    }
    assert_eq!(
        report.protocol_errors_total, 0,
        "protocol errors: {:?}",
        report.protocol_errors
    );
    assert!(report.locations_sent > 0);
    assert_eq!(report.assignment_latency_ms.count as u64, o.assigned);
}
