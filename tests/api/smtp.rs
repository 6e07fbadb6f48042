//! E-mail notifications over a real SMTP conversation with a minimal relay run by the test.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::helpers::{spawn_app_with, Backend, Options};

/// Accepts SMTP sessions and sends each received message (envelope + data) to the channel.
pub fn smtp_sink() -> (u16, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut out = stream.try_clone().expect("clone");
                let mut lines = BufReader::new(stream);
                let mut message = String::new();
                let _ = out.write_all(b"220 sink ESMTP\r\n");
                let mut line = String::new();
                loop {
                    line.clear();
                    if lines.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let verb = line.to_ascii_uppercase();
                    let reply: &[u8] = if verb.starts_with("EHLO") || verb.starts_with("HELO") {
                        b"250 sink\r\n"
                    } else if verb.starts_with("MAIL") || verb.starts_with("RCPT") {
                        message.push_str(&line);
                        b"250 OK\r\n"
                    } else if verb.starts_with("DATA") {
                        let _ = out.write_all(b"354 go on\r\n");
                        loop {
                            line.clear();
                            if lines.read_line(&mut line).unwrap_or(0) == 0 || line == ".\r\n" {
                                break;
                            }
                            message.push_str(&line);
                        }
                        let _ = tx.send(std::mem::take(&mut message));
                        b"250 queued\r\n"
                    } else if verb.starts_with("QUIT") {
                        let _ = out.write_all(b"221 bye\r\n");
                        return;
                    } else {
                        b"250 OK\r\n"
                    };
                    let _ = out.write_all(reply);
                }
            });
        }
    });
    (port, rx)
}

#[actix_web::test]
async fn order_notifications_are_emailed_to_the_customer() {
    let (port, mail) = smtp_sink();
    let app = spawn_app_with(
        Backend::Sqlite,
        Options {
            env: vec![
                ("SMTP_URL", format!("smtp://127.0.0.1:{port}")),
                ("SMTP_FROM", "Medify <orders@medify.test>".to_owned()),
            ],
            ..Options::default()
        },
    )
    .await
    .expect("sqlite");
    let admin = app.admin_token().await;
    let (_, medicine) = app.stocked_pharmacy(&admin, "P", 12.97, 77.59, 3).await;
    let (user, customer) = app.user_token("customer").await;
    let order = app
        .place_order(&customer, &[(medicine, 1)], 12.97, 77.59)
        .await
        .json();

    // The bus runs on this test's thread: wait without blocking it.
    let start = Instant::now();
    let message = loop {
        if let Ok(m) = mail.try_recv() {
            break m;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no e-mail arrived"
        );
        actix_web::rt::time::sleep(Duration::from_millis(25)).await;
    };
    let email = user["email"].as_str().expect("email");
    assert!(message.contains(&format!("RCPT TO:<{email}>")), "{message}");
    assert!(
        message.contains("MAIL FROM:<orders@medify.test>"),
        "{message}"
    );
    assert!(
        message.contains("Subject: Your order is confirmed"),
        "{message}"
    );
    assert!(
        message.contains(order["id"].as_str().expect("id")),
        "{message}"
    );

    let start = Instant::now();
    loop {
        let page = app
            .get_auth("/api/v1/notifications", &customer)
            .await
            .json();
        if page["items"][0]["status"] == "sent" {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "never marked sent: {page}"
        );
        actix_web::rt::time::sleep(Duration::from_millis(25)).await;
    }
}

#[actix_web::test]
async fn undeliverable_notifications_end_failed() {
    let app = spawn_app_with(
        Backend::Sqlite,
        Options {
            // Nothing listens on port 1: every attempt is refused.
            env: vec![("SMTP_URL", "smtp://127.0.0.1:1".to_owned())],
            ..Options::default()
        },
    )
    .await
    .expect("sqlite");
    let admin = app.admin_token().await;
    let (_, medicine) = app.stocked_pharmacy(&admin, "P", 12.97, 77.59, 3).await;
    let (_, customer) = app.user_token("customer").await;
    assert_eq!(
        app.place_order(&customer, &[(medicine, 1)], 12.97, 77.59)
            .await
            .status,
        201
    );
    let start = Instant::now();
    loop {
        let page = app
            .get_auth("/api/v1/notifications", &customer)
            .await
            .json();
        if page["items"][0]["status"] == "failed" {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "never marked failed: {page}"
        );
        actix_web::rt::time::sleep(Duration::from_millis(25)).await;
    }
}
