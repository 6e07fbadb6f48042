//! Prescription uploads (`/api/v1/prescriptions`) over real HTTP: each accepted type round
//! trips byte for byte, types are judged by content, oversized uploads leave nothing behind
//! (no row, no file, no partial), and only the customer, the staff of a pharmacy with an
//! order carrying the prescription, and admins see it. The last test does the round trip
//! against a real S3-compatible server (`MEDIFY_TEST_S3`).

use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::helpers::{Backend, Options, Reply, TestApp};
use crate::{backend_tests, backend_tests_with};

backend_tests!(
    each_accepted_type_round_trips_byte_for_byte,
    types_are_judged_by_content_not_by_name,
    a_body_without_a_file_part_is_refused,
    strangers_and_riders_see_nothing,
    pharmacy_staff_see_prescriptions_on_their_orders_only,
    lists_are_newest_first_and_paged,
);

backend_tests_with!(
    small_limit,
    limit_of_64_kib,
    oversized_uploads_leave_nothing_behind,
);

/// The limit the oversize tests run with.
const SMALL_LIMIT: usize = 64 * 1024;

fn limit_of_64_kib() -> Options {
    Options {
        env: vec![("PRESCRIPTION_MAX_BYTES", SMALL_LIMIT.to_string())],
        ..Options::default()
    }
}

/// `len` bytes that start with `magic`, the rest a fixed pseudo-random filler.
fn file_with(magic: &[u8], len: usize) -> Vec<u8> {
    let mut bytes = magic.to_vec();
    let mut x: u32 = 0x9E37_79B9 ^ len as u32;
    while bytes.len() < len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        bytes.push((x >> 24) as u8);
    }
    bytes.truncate(len.max(magic.len()));
    bytes
}

fn jpeg(len: usize) -> Vec<u8> {
    file_with(b"\xFF\xD8\xFF\xE0\x00\x10JFIF\x00", len)
}

fn png(len: usize) -> Vec<u8> {
    file_with(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", len)
}

fn pdf(len: usize) -> Vec<u8> {
    file_with(b"%PDF-1.7\n%\xE2\xE3\xCF\xD3\n", len)
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One part of a multipart body.
struct Part<'a> {
    name: &'a str,
    filename: Option<&'a str>,
    content_type: Option<&'a str>,
    bytes: &'a [u8],
}

fn file_part<'a>(filename: &'a str, content_type: &'a str, bytes: &'a [u8]) -> Part<'a> {
    Part {
        name: "file",
        filename: Some(filename),
        content_type: Some(content_type),
        bytes,
    }
}

/// A `multipart/form-data` body: (its Content-Type, the bytes).
fn multipart(parts: &[Part<'_>]) -> (String, Vec<u8>) {
    let boundary = format!("medify-test-{}", Uuid::now_v7().simple());
    let mut body = Vec::new();
    for part in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        let mut disposition = format!("Content-Disposition: form-data; name=\"{}\"", part.name);
        if let Some(filename) = part.filename {
            disposition.push_str(&format!("; filename=\"{filename}\""));
        }
        body.extend_from_slice(disposition.as_bytes());
        body.extend_from_slice(b"\r\n");
        if let Some(ct) = part.content_type {
            body.extend_from_slice(format!("Content-Type: {ct}\r\n").as_bytes());
        }
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(part.bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// Sends `POST /api/v1/prescriptions` with these parts as `token`.
async fn post_parts(app: &TestApp, token: &str, parts: &[Part<'_>]) -> Reply {
    let (content_type, body) = multipart(parts);
    post_raw(app, token, &content_type, body).await
}

async fn post_raw(app: &TestApp, token: &str, content_type: &str, body: Vec<u8>) -> Reply {
    let mut res = app
        .client
        .post(app.url("/api/v1/prescriptions"))
        .insert_header(("authorization", format!("Bearer {token}")))
        .insert_header(("content-type", content_type))
        .send_body(body)
        .await
        .expect("upload request failed");
    let body = res.body().limit(1 << 20).await.expect("answer body");
    Reply {
        status: res.status().as_u16(),
        headers: res.headers().clone(),
        body: body.to_vec(),
    }
}

/// Uploads `bytes` as `token` and expects 201; returns the prescription.
async fn upload(app: &TestApp, token: &str, bytes: &[u8]) -> Value {
    let res = post_parts(
        app,
        token,
        &[file_part("scan.bin", "application/octet-stream", bytes)],
    )
    .await;
    assert_eq!(res.status, 201, "upload: {}", res.text());
    res.json()
}

fn id_of(prescription: &Value) -> &str {
    prescription["id"].as_str().expect("id")
}

/// Downloads a prescription's file and checks the headers every download carries.
async fn download(app: &TestApp, token: &str, id: &str) -> (String, Vec<u8>) {
    let res = app
        .get_auth(&format!("/api/v1/prescriptions/{id}/file"), token)
        .await;
    assert_eq!(res.status, 200, "download: {}", res.text());
    let disposition = res.header("content-disposition").unwrap_or_default();
    assert!(
        disposition.starts_with("attachment"),
        "Content-Disposition {disposition:?}"
    );
    assert_eq!(
        res.header("x-content-type-options").as_deref(),
        Some("nosniff")
    );
    (res.header("content-type").unwrap_or_default(), res.body)
}

/// Every file under the server's object folder (partial uploads included).
fn stored_files(app: &TestApp) -> Vec<std::path::PathBuf> {
    fn walk(dir: &std::path::Path, found: &mut Vec<std::path::PathBuf>) {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, found);
                } else {
                    found.push(path);
                }
            }
        }
    }
    let folder = app.env["OBJECT_STORE"]
        .strip_prefix("file:")
        .expect("a folder store")
        .to_owned();
    let mut found = Vec::new();
    walk(std::path::Path::new(&folder), &mut found);
    found
}

async fn prescription_rows(app: &TestApp) -> i64 {
    let store = crate::helpers::connect_store(app).await;
    let n = medify::on_pool!(&store, |pool| {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM prescriptions")
            .fetch_one(pool)
            .await
            .expect("count")
    });
    store.close().await;
    n
}

async fn each_accepted_type_round_trips_byte_for_byte(app: TestApp) {
    let (_, customer) = app.user_token("customer").await;
    for (bytes, kind, ext) in [
        (jpeg(3_000), "image/jpeg", "jpg"),
        (png(70_000), "image/png", "png"),
        (pdf(1_234), "application/pdf", "pdf"),
    ] {
        let rx = upload(&app, &customer, &bytes).await;
        assert_eq!(rx["content_type"], kind, "{rx}");
        assert_eq!(rx["size_bytes"], bytes.len() as u64, "{rx}");
        assert_eq!(rx["sha256"], sha256_hex(&bytes), "{rx}");
        assert!(rx["created_at"].is_string(), "{rx}");
        let fields: Vec<&String> = rx.as_object().expect("object").keys().collect();
        assert_eq!(
            fields,
            ["content_type", "created_at", "id", "sha256", "size_bytes"],
            "no server-side fields leak"
        );

        let id = id_of(&rx);
        let res = app
            .get_auth(&format!("/api/v1/prescriptions/{id}"), &customer)
            .await;
        assert_eq!(res.status, 200, "{}", res.text());
        assert_eq!(res.json(), rx);

        let res = app
            .get_auth(&format!("/api/v1/prescriptions/{id}/file"), &customer)
            .await;
        assert_eq!(
            res.header("content-disposition").as_deref(),
            Some(format!("attachment; filename=\"prescription-{id}.{ext}\"").as_str())
        );
        let (content_type, body) = download(&app, &customer, id).await;
        assert_eq!(content_type, kind);
        assert!(
            body == bytes,
            "{kind}: the download differs from the upload"
        );
    }
    assert_eq!(prescription_rows(&app).await, 3);
}

async fn types_are_judged_by_content_not_by_name(app: TestApp) {
    let (_, customer) = app.user_token("customer").await;
    // A PNG that calls itself a PDF is stored as the PNG it is.
    let bytes = png(500);
    let res = post_parts(
        &app,
        &customer,
        &[file_part("rx.pdf", "application/pdf", &bytes)],
    )
    .await;
    assert_eq!(res.status, 201, "{}", res.text());
    assert_eq!(res.json()["content_type"], "image/png");
    let (content_type, _) = download(&app, &customer, id_of(&res.json())).await;
    assert_eq!(content_type, "image/png");

    let refused: [(&str, Vec<u8>); 5] = [
        (
            "ELF executable",
            file_with(b"\x7fELF\x02\x01\x01\x00", 4_096),
        ),
        (
            "PE executable",
            file_with(b"MZ\x90\x00\x03\x00\x00\x00", 4_096),
        ),
        ("shell script", b"#!/bin/sh\necho pwned\n".to_vec()),
        (
            "HTML page",
            b"<html><script>alert(1)</script></html>".to_vec(),
        ),
        ("empty file", Vec::new()),
    ];
    for (what, bytes) in refused {
        let res = post_parts(
            &app,
            &customer,
            &[file_part("x.pdf", "application/pdf", &bytes)],
        )
        .await;
        assert_eq!(res.status, 415, "{what}: {}", res.text());
        res.assert_problem(415, "unsupported_media_type");
    }
    assert_eq!(prescription_rows(&app).await, 1, "only the PNG was kept");
    assert_eq!(stored_files(&app).len(), 1, "{:?}", stored_files(&app));
}

async fn a_body_without_a_file_part_is_refused(app: TestApp) {
    let (_, customer) = app.user_token("customer").await;
    let note = Part {
        name: "note",
        filename: None,
        content_type: None,
        bytes: b"please hurry",
    };
    let problem = post_parts(&app, &customer, &[note])
        .await
        .assert_problem(422, "validation_failed");
    assert_eq!(problem["errors"][0]["field"], "file", "{problem}");
    let problem = post_parts(&app, &customer, &[])
        .await
        .assert_problem(422, "validation_failed");
    assert_eq!(problem["errors"][0]["field"], "file", "{problem}");

    // A part named otherwise is not the file, whatever it holds.
    let bytes = pdf(100);
    let misnamed = Part {
        name: "document",
        filename: Some("rx.pdf"),
        content_type: Some("application/pdf"),
        bytes: &bytes,
    };
    post_parts(&app, &customer, &[misnamed])
        .await
        .assert_problem(422, "validation_failed");

    // Not multipart at all.
    post_raw(
        &app,
        &customer,
        "application/json",
        b"{\"file\":\"x\"}".to_vec(),
    )
    .await
    .assert_problem(415, "unsupported_media_type");
    // Multipart, but cut off in the middle of the file.
    let (content_type, body) = multipart(&[file_part("rx.pdf", "application/pdf", &bytes)]);
    post_raw(
        &app,
        &customer,
        &content_type,
        body[..body.len() / 2].to_vec(),
    )
    .await
    .assert_problem(400, "bad_request");

    // Only customers upload, and only with a token.
    let (_, rider) = app.user_token("rider").await;
    post_parts(
        &app,
        &rider,
        &[file_part("rx.pdf", "application/pdf", &bytes)],
    )
    .await
    .assert_problem(403, "forbidden");
    let (content_type, body) = multipart(&[file_part("rx.pdf", "application/pdf", &bytes)]);
    app.raw("POST", "/api/v1/prescriptions", &content_type, &body)
        .await
        .assert_problem(401, "unauthorized");
    assert_eq!(prescription_rows(&app).await, 0);
    assert!(stored_files(&app).is_empty(), "{:?}", stored_files(&app));
}

async fn oversized_uploads_leave_nothing_behind(app: TestApp) {
    let (_, customer) = app.user_token("customer").await;
    // Well past the limit, in a body the server must stop reading early.
    for bytes in [
        pdf(SMALL_LIMIT + 1),
        pdf(4 * SMALL_LIMIT),
        jpeg(20 * SMALL_LIMIT),
    ] {
        let res = post_parts(
            &app,
            &customer,
            &[file_part("big.pdf", "application/pdf", &bytes)],
        )
        .await;
        res.assert_problem(413, "payload_too_large");
    }
    // Parts before the file count too.
    let padding = vec![b'x'; SMALL_LIMIT + 10];
    let small = pdf(10);
    let res = post_parts(
        &app,
        &customer,
        &[
            Part {
                name: "padding",
                filename: None,
                content_type: None,
                bytes: &padding,
            },
            file_part("rx.pdf", "application/pdf", &small),
        ],
    )
    .await;
    res.assert_problem(413, "payload_too_large");
    assert_eq!(
        prescription_rows(&app).await,
        0,
        "no row for a refused upload"
    );
    assert!(
        stored_files(&app).is_empty(),
        "no file, not even a partial one: {:?}",
        stored_files(&app)
    );

    // Exactly the limit is fine.
    let bytes = png(SMALL_LIMIT);
    let rx = upload(&app, &customer, &bytes).await;
    assert_eq!(rx["size_bytes"], SMALL_LIMIT as u64);
    assert_eq!(download(&app, &customer, id_of(&rx)).await.1, bytes);
    assert_eq!(stored_files(&app).len(), 1);
}

async fn strangers_and_riders_see_nothing(app: TestApp) {
    let (_, owner) = app.user_token("customer").await;
    let rx = upload(&app, &owner, &pdf(2_000)).await;
    let id = id_of(&rx);
    let (_, stranger) = app.user_token("customer").await;
    let (_, rider) = app.user_token("rider").await;
    for token in [&stranger, &rider] {
        for path in [
            format!("/api/v1/prescriptions/{id}"),
            format!("/api/v1/prescriptions/{id}/file"),
        ] {
            app.get_auth(&path, token)
                .await
                .assert_problem(404, "not_found");
        }
    }
    let page = app
        .get_auth("/api/v1/prescriptions", &stranger)
        .await
        .json();
    assert_eq!(page["total"], 0, "{page}");
    app.get_auth("/api/v1/prescriptions", &rider)
        .await
        .assert_problem(403, "forbidden");
    app.get(&format!("/api/v1/prescriptions/{id}"))
        .await
        .assert_problem(401, "unauthorized");

    // Admins see everything; nobody sees what does not exist.
    let admin = app.admin_token().await;
    let res = app
        .get_auth(&format!("/api/v1/prescriptions/{id}"), &admin)
        .await;
    assert_eq!(res.json(), rx);
    download(&app, &admin, id).await;
    let missing = Uuid::now_v7();
    for token in [&owner, &admin] {
        app.get_auth(&format!("/api/v1/prescriptions/{missing}"), token)
            .await
            .assert_problem(404, "not_found");
        app.get_auth(&format!("/api/v1/prescriptions/{missing}/file"), token)
            .await
            .assert_problem(404, "not_found");
    }
    app.get_auth("/api/v1/prescriptions/not-a-uuid", &admin)
        .await
        .assert_problem(404, "not_found");
}

/// Links prescription `rx` to `order` in the database (the order-side flow that will set
/// it is not part of the uploads).
async fn attach(app: &TestApp, order: &str, rx: &str) {
    let order = Uuid::parse_str(order).expect("order id");
    let rx = Uuid::parse_str(rx).expect("prescription id");
    let store = crate::helpers::connect_store(app).await;
    let n = medify::on_pool!(&store, |pool| {
        sqlx::query("UPDATE orders SET prescription_id = $1 WHERE id = $2")
            .bind(rx)
            .bind(order)
            .execute(pool)
            .await
            .expect("link the prescription")
            .rows_affected()
    });
    store.close().await;
    assert_eq!(n, 1);
}

/// A `pharmacy` account working for `pharmacy`; its access token.
async fn staff_of(app: &TestApp, admin: &str, pharmacy: Uuid) -> String {
    let email = format!("staff-{}@example.com", Uuid::now_v7().simple());
    let res = app
        .post_auth(
            "/api/v1/admin/users",
            admin,
            &serde_json::json!({"name": "Staff", "email": email, "password": "staff password",
                                "role": "pharmacy", "pharmacy_id": pharmacy}),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.text());
    app.login(&email, "staff password").await["access_token"]
        .as_str()
        .expect("token")
        .to_owned()
}

async fn pharmacy_staff_see_prescriptions_on_their_orders_only(app: TestApp) {
    let admin = app.admin_token().await;
    let (mine, medicine) = app.stocked_pharmacy(&admin, "Mine", 12.97, 77.59, 50).await;
    let (theirs, _) = app
        .stocked_pharmacy(&admin, "Theirs", 12.99, 77.61, 50)
        .await;
    let my_staff = staff_of(&app, &admin, mine).await;
    let their_staff = staff_of(&app, &admin, theirs).await;

    let (_, customer) = app.user_token("customer").await;
    let carried = upload(&app, &customer, &jpeg(900)).await;
    let kept = upload(&app, &customer, &pdf(900)).await;
    let res = app
        .post_auth(
            "/api/v1/orders",
            &customer,
            &serde_json::json!({"items": [{"medicine_id": medicine, "qty": 1}], "pharmacy_id": mine,
                                "delivery": {"lat": 12.971, "lng": 77.591, "address": "1 Test Road"}}),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.text());
    let order = res.json()["id"].as_str().expect("order id").to_owned();
    attach(&app, &order, id_of(&carried)).await;

    let page = app
        .get_auth("/api/v1/prescriptions", &my_staff)
        .await
        .json();
    assert_eq!(page["total"], 1, "{page}");
    assert_eq!(page["items"][0], carried);
    let res = app
        .get_auth(
            &format!("/api/v1/prescriptions/{}", id_of(&carried)),
            &my_staff,
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.text());
    download(&app, &my_staff, id_of(&carried)).await;
    for path in [
        format!("/api/v1/prescriptions/{}", id_of(&kept)),
        format!("/api/v1/prescriptions/{}/file", id_of(&kept)),
    ] {
        app.get_auth(&path, &my_staff)
            .await
            .assert_problem(404, "not_found");
    }

    // Another pharmacy's staff see none of it.
    let page = app
        .get_auth("/api/v1/prescriptions", &their_staff)
        .await
        .json();
    assert_eq!(page["total"], 0, "{page}");
    for path in [
        format!("/api/v1/prescriptions/{}", id_of(&carried)),
        format!("/api/v1/prescriptions/{}/file", id_of(&carried)),
    ] {
        app.get_auth(&path, &their_staff)
            .await
            .assert_problem(404, "not_found");
    }
    // The customer still sees both.
    let page = app
        .get_auth("/api/v1/prescriptions", &customer)
        .await
        .json();
    assert_eq!(page["total"], 2, "{page}");
}

async fn lists_are_newest_first_and_paged(app: TestApp) {
    let (_, customer) = app.user_token("customer").await;
    let (_, other) = app.user_token("customer").await;
    let mut mine = Vec::new();
    for n in 0..3 {
        mine.push(upload(&app, &customer, &pdf(100 + n)).await);
    }
    let theirs = upload(&app, &other, &png(100)).await;

    let page = app
        .get_auth("/api/v1/prescriptions?per_page=2", &customer)
        .await
        .json();
    assert_eq!(page["total"], 3, "{page}");
    assert_eq!(page["per_page"], 2, "{page}");
    assert_eq!(page["items"], serde_json::json!([mine[2], mine[1]]));
    let page = app
        .get_auth("/api/v1/prescriptions?per_page=2&page=2", &customer)
        .await
        .json();
    assert_eq!(page["items"], serde_json::json!([mine[0]]));
    app.get_auth("/api/v1/prescriptions?per_page=0", &customer)
        .await
        .assert_problem(422, "validation_failed");

    let admin = app.admin_token().await;
    let page = app.get_auth("/api/v1/prescriptions", &admin).await.json();
    assert_eq!(page["total"], 4, "{page}");
    assert_eq!(page["items"][0], theirs, "newest first across customers");
    let page = app.get_auth("/api/v1/prescriptions", &other).await.json();
    assert_eq!(page["items"], serde_json::json!([theirs]));
}

/// The S3 server under `MEDIFY_TEST_S3` (`http://[key:secret@]host:port`): endpoint and
/// credentials.
fn s3_server() -> Option<(String, String, String)> {
    let raw = crate::helpers::service_var("MEDIFY_TEST_S3")?;
    let (scheme, rest) = raw
        .split_once("://")
        .expect("MEDIFY_TEST_S3 is http://host:port");
    let (keys, host) = match rest.rsplit_once('@') {
        Some((keys, host)) => (Some(keys), host),
        None => (None, rest),
    };
    let (key, secret) = keys
        .and_then(|k| k.split_once(':'))
        .unwrap_or(("test", "test"));
    Some((
        format!("{scheme}://{}", host.trim_end_matches('/')),
        key.to_owned(),
        secret.to_owned(),
    ))
}

/// Sends one unsigned request to the S3 server (bucket set-up and inspection; the test
/// server accepts anonymous calls, the application under test always signs).
async fn s3_call(client: &awc::Client, method: &str, url: &str) -> (u16, String) {
    let method = awc::http::Method::from_bytes(method.as_bytes()).expect("method");
    let mut res = client
        .request(method, url)
        .send()
        .await
        .expect("the S3 server does not answer");
    let body = res.body().limit(1 << 20).await.expect("S3 body");
    (
        res.status().as_u16(),
        String::from_utf8_lossy(&body).into_owned(),
    )
}

/// Uploads and downloads through a real S3-compatible server: a small file (one PUT), one
/// over a part (a multipart upload), and an oversized one that leaves nothing in the
/// bucket, on a bucket of its own that is removed afterwards.
#[actix_web::test]
async fn s3_bucket_round_trip() {
    let Some((endpoint, key, secret)) = s3_server() else {
        return;
    };
    let bucket = format!("medify-test-{}", Uuid::now_v7().simple());
    let bucket_url = format!("{endpoint}/{bucket}");
    let s3 = awc::Client::default();
    let (status, body) = s3_call(&s3, "PUT", &bucket_url).await;
    assert_eq!(status, 200, "create bucket {bucket}: {body}");

    let limit = 7 * 1024 * 1024;
    let app = crate::helpers::spawn_app_with(
        Backend::Sqlite,
        Options {
            env: vec![
                ("OBJECT_STORE", format!("s3://{bucket}")),
                ("S3_ENDPOINT", endpoint.clone()),
                ("S3_ACCESS_KEY_ID", key),
                ("S3_SECRET_ACCESS_KEY", secret),
                ("PRESCRIPTION_MAX_BYTES", limit.to_string()),
            ],
            ..Options::default()
        },
    )
    .await
    .expect("SQLite is always available");
    let (_, customer) = app.user_token("customer").await;

    let mut ids = Vec::new();
    for (bytes, kind) in [
        (pdf(40_000), "application/pdf"),
        (png(6 * 1024 * 1024 + 17), "image/png"),
    ] {
        let rx = upload(&app, &customer, &bytes).await;
        assert_eq!(rx["content_type"], kind);
        assert_eq!(rx["sha256"], sha256_hex(&bytes));
        let (content_type, body) = download(&app, &customer, id_of(&rx)).await;
        assert_eq!(content_type, kind);
        assert!(
            body == bytes,
            "{kind}: the download differs from the upload"
        );
        ids.push(id_of(&rx).to_owned());
    }
    let res = post_parts(
        &app,
        &customer,
        &[file_part(
            "big.jpg",
            "image/jpeg",
            &jpeg(limit + 1024 * 1024),
        )],
    )
    .await;
    res.assert_problem(413, "payload_too_large");
    assert_eq!(prescription_rows(&app).await, 2);

    let (status, listing) = s3_call(&s3, "GET", &format!("{bucket_url}?list-type=2")).await;
    assert_eq!(status, 200, "{listing}");
    assert_eq!(
        listing.matches("<Key>").count(),
        2,
        "only the two stored files: {listing}"
    );
    for id in &ids {
        assert!(
            listing.contains(&format!("<Key>prescriptions/{id}</Key>")),
            "{listing}"
        );
    }
    let (status, uploads) = s3_call(&s3, "GET", &format!("{bucket_url}?uploads")).await;
    assert_eq!(status, 200, "{uploads}");
    assert!(
        !uploads.contains("<Upload>"),
        "an aborted multipart upload lingers: {uploads}"
    );

    for id in &ids {
        let key = medify::objects::ObjectKey::prescription(Uuid::parse_str(id).expect("id"));
        app.state.objects.delete(&key).await.expect("delete");
        let (status, _) = s3_call(&s3, "GET", &format!("{bucket_url}/{key}")).await;
        assert_eq!(status, 404);
    }
    let (status, body) = s3_call(&s3, "DELETE", &bucket_url).await;
    assert_eq!(status, 204, "delete bucket {bucket}: {body}");
}
