//! The contract's auth table, row by row, on both backends.

use chrono::Utc;
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{
    spawn_app_with, spawn_sibling, Backend, Options, Reply, TestApp, ADMIN_EMAIL, ADMIN_PASSWORD,
    TEST_JWT_SECRET,
};
use crate::{backend_tests, backend_tests_with};

backend_tests!(
    register_creates_a_customer_by_default,
    register_accepts_riders_and_refuses_other_roles,
    register_refuses_a_taken_email_but_not_a_claimed_phone,
    register_reports_every_bad_field_at_once,
    login_returns_tokens_that_open_me,
    login_failures_are_indistinguishable,
    bad_tokens_are_401,
    tokens_in_rest_query_strings_are_not_accepted,
    simultaneous_refreshes_keep_the_session,
    refresh_replayed_within_the_interval_stays_in_the_session,
    logout_revokes_the_session,
    otp_signs_in_and_creates_a_customer_once,
    otp_resend_within_30_seconds_is_429,
    otp_code_is_dead_after_five_wrong_tries,
    rapid_wrong_logins_hit_429,
    forwarded_for_from_an_untrusted_peer_is_ignored,
    admins_create_accounts_of_any_role,
    customers_cannot_reach_admin_endpoints,
    tokens_and_admin_survive_a_restart,
    the_sweep_deletes_expired_rows_and_keeps_live_ones,
);

// With no reuse interval, every replay of a spent refresh token revokes its session: the
// behaviour the interval relaxes, shown without waiting for an interval to pass.
backend_tests_with!(
    no_reuse_interval,
    no_reuse_interval,
    refresh_rotates_and_reuse_revokes_the_family,
);

// Behind a proxy on 127.0.0.1: X-Forwarded-For plays clients at other addresses.
backend_tests_with!(
    behind_a_proxy,
    behind_a_proxy,
    an_attacker_cannot_lock_out_the_owner,
);
// The same with a per-IP budget of 4, to count it.
backend_tests_with!(
    behind_a_proxy_four_per_ip,
    behind_a_proxy_four_per_ip,
    ipv6_clients_share_a_budget_per_64,
);

fn behind_a_proxy() -> Options {
    Options {
        env: vec![("TRUSTED_PROXIES", "127.0.0.1, ::1".to_owned())],
        ..Options::default()
    }
}

fn behind_a_proxy_four_per_ip() -> Options {
    let mut options = behind_a_proxy();
    options.env.push(("RATE_LIMIT_AUTH_PER_IP", "4".to_owned()));
    options
}

fn no_reuse_interval() -> Options {
    Options {
        env: vec![("REFRESH_REUSE_INTERVAL_S", "0".to_owned())],
        ..Options::default()
    }
}

/// No answer may carry a password or a hash.
#[track_caller]
fn assert_no_secrets(res: &Reply, password: &str) {
    let text = res.text();
    assert!(!text.contains(password), "password in answer: {text}");
    assert!(!text.contains("$argon2"), "hash in answer: {text}");
    assert!(
        !text.contains("password_hash"),
        "hash field in answer: {text}"
    );
}

fn forge(claims: &Value, secret: &[u8]) -> String {
    encode(
        &Header::default(),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .expect("encode")
}

async fn register_creates_a_customer_by_default(app: TestApp) {
    let res = app
        .post_json(
            "/api/v1/auth/register",
            &json!({"name": " Asha Rao ", "email": " Asha@Example.COM ",
                    "password": "correct horse 1", "phone": "+919876543210"}),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.text());
    assert_no_secrets(&res, "correct horse 1");
    let user = &res.json()["user"];
    assert_eq!(user["name"], "Asha Rao");
    assert_eq!(user["email"], "asha@example.com");
    assert_eq!(user["phone"], "+919876543210");
    assert_eq!(user["phone_verified"], false);
    assert_eq!(user["role"], "customer");
    assert!(
        Uuid::parse_str(user["id"].as_str().unwrap_or("")).is_ok(),
        "{user}"
    );
}

async fn register_accepts_riders_and_refuses_other_roles(app: TestApp) {
    let (rider, _) = app.register("rider").await;
    assert_eq!(rider["role"], "rider");
    for role in ["admin", "pharmacy", "superuser"] {
        let res = app
            .post_json(
                "/api/v1/auth/register",
                &json!({"name": "X", "email": format!("{role}@example.com"),
                        "password": "long enough", "role": role}),
            )
            .await;
        let body = res.assert_problem(422, "validation_failed");
        assert_eq!(body["errors"][0]["field"], "role", "{body}");
    }
}

async fn register_refuses_a_taken_email_but_not_a_claimed_phone(app: TestApp) {
    let first = json!({"name": "A", "email": "dup@example.com", "password": "long enough",
                       "phone": "+14155550123"});
    assert_eq!(
        app.post_json("/api/v1/auth/register", &first).await.status,
        201
    );
    let same_email = json!({"name": "B", "email": "DUP@example.com", "password": "long enough"});
    app.post_json("/api/v1/auth/register", &same_email)
        .await
        .assert_problem(409, "email_taken");
    // A phone typed in at registration is an unverified claim: another account may claim
    // the same number (neither has proven it), so it neither blocks nor reveals anyone.
    let same_phone = json!({"name": "C", "email": "other@example.com", "password": "long enough",
                            "phone": "+14155550123"});
    let res = app.post_json("/api/v1/auth/register", &same_phone).await;
    assert_eq!(res.status, 201, "{}", res.text());
    assert_eq!(res.json()["user"]["phone_verified"], false);
}

async fn register_reports_every_bad_field_at_once(app: TestApp) {
    let res = app
        .post_json(
            "/api/v1/auth/register",
            &json!({"name": "", "email": "not-an-email", "password": "short", "phone": "5550123"}),
        )
        .await;
    let body = res.assert_problem(422, "validation_failed");
    let mut fields: Vec<&str> = body["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["field"].as_str())
        .collect();
    fields.sort_unstable();
    assert_eq!(fields, vec!["email", "name", "password", "phone"], "{body}");

    let res = app
        .post_json("/api/v1/auth/register", &json!({"email": 5}))
        .await;
    let body = res.assert_problem(422, "validation_failed");
    assert_eq!(body["errors"][0]["field"], "email", "{body}");
    app.raw(
        "POST",
        "/api/v1/auth/register",
        "application/json",
        b"{\"name\":",
    )
    .await
    .assert_problem(400, "invalid_json");
}

async fn login_returns_tokens_that_open_me(app: TestApp) {
    let (user, password) = app.register("customer").await;
    let email = user["email"].as_str().expect("email");
    let res = app
        .post_json(
            "/api/v1/auth/login",
            &json!({"email": email.to_uppercase(), "password": password}),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_no_secrets(&res, &password);
    let tokens = res.json();
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 900);
    assert_eq!(tokens["user"]["id"], user["id"]);
    assert_eq!(tokens["refresh_token"].as_str().map(str::len), Some(43));
    let access = tokens["access_token"].as_str().expect("token");
    let me = app.get_auth("/api/v1/me", access).await;
    assert_eq!(me.status, 200);
    assert_no_secrets(&me, &password);
    assert_eq!(me.json(), user);
}

async fn login_failures_are_indistinguishable(app: TestApp) {
    let (user, _) = app.register("customer").await;
    let wrong_password = app
        .post_json(
            "/api/v1/auth/login",
            &json!({"email": user["email"], "password": "not the password"}),
        )
        .await;
    let unknown_email = app
        .post_json(
            "/api/v1/auth/login",
            &json!({"email": "nobody@example.com", "password": "not the password"}),
        )
        .await;
    let a = wrong_password.assert_problem(401, "invalid_credentials");
    let b = unknown_email.assert_problem(401, "invalid_credentials");
    assert_eq!(a, b);
}

async fn bad_tokens_are_401(app: TestApp) {
    let (user, token) = app.user_token("customer").await;
    let now = Utc::now().timestamp();
    let id = user["id"].as_str().expect("id");
    let claims = |iat: i64, exp: i64| json!({"sub": id, "role": "customer", "iat": iat, "exp": exp, "jti": Uuid::now_v7()});
    let expired = forge(&claims(now - 2000, now - 1000), TEST_JWT_SECRET.as_bytes());
    let wrong_secret = forge(
        &claims(now, now + 900),
        b"some-other-secret-some-other-secret!",
    );
    let parts: Vec<&str> = token.split('.').collect();
    let tampered = format!("{}.{}x.{}", parts[0], parts[1], parts[2]);
    let none_alg = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.", parts[1]);
    let escalated = forge(
        &json!({"sub": id, "role": "admin", "iat": now, "exp": now + 900, "jti": Uuid::now_v7()}),
        b"guess-guess-guess-guess-guess-guess",
    );
    for bad in [
        expired,
        wrong_secret,
        tampered,
        none_alg,
        escalated,
        "garbage".into(),
    ] {
        let res = app.get_auth("/api/v1/me", &bad).await;
        res.assert_problem(401, "unauthorized");
        assert_eq!(res.header("www-authenticate").as_deref(), Some("Bearer"));
    }
    app.get("/api/v1/me")
        .await
        .assert_problem(401, "unauthorized");
    let basic = app
        .client
        .get(app.url("/api/v1/me"))
        .insert_header(("authorization", "Basic YTpi"))
        .send()
        .await
        .expect("send");
    assert_eq!(basic.status().as_u16(), 401);
    // The genuine token still works.
    assert_eq!(app.get_auth("/api/v1/me", &token).await.status, 200);
}

async fn tokens_in_rest_query_strings_are_not_accepted(app: TestApp) {
    let (_, token) = app.user_token("customer").await;
    app.get(&format!("/api/v1/me?access_token={token}"))
        .await
        .assert_problem(401, "unauthorized");
}

async fn refresh_rotates_and_reuse_revokes_the_family(app: TestApp) {
    let (user, password) = app.register("customer").await;
    let first = app
        .login(user["email"].as_str().expect("email"), &password)
        .await;
    let r1 = first["refresh_token"].as_str().expect("refresh").to_owned();

    let res = app
        .post_json("/api/v1/auth/refresh", &json!({"refresh_token": r1}))
        .await;
    assert_eq!(res.status, 200, "{}", res.text());
    let second = res.json();
    let r2 = second["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_owned();
    assert_ne!(r1, r2);
    assert_eq!(second["user"]["id"], user["id"]);
    let access2 = second["access_token"].as_str().expect("access");
    assert_eq!(app.get_auth("/api/v1/me", access2).await.status, 200);

    // Replaying the spent token: refused, and the live successor dies with it.
    app.post_json("/api/v1/auth/refresh", &json!({"refresh_token": r1}))
        .await
        .assert_problem(401, "unauthorized");
    app.post_json("/api/v1/auth/refresh", &json!({"refresh_token": r2}))
        .await
        .assert_problem(401, "unauthorized");
    // Another session of the same user is untouched.
    let other = app
        .login(user["email"].as_str().expect("email"), &password)
        .await;
    let res = app
        .post_json(
            "/api/v1/auth/refresh",
            &json!({"refresh_token": other["refresh_token"]}),
        )
        .await;
    assert_eq!(res.status, 200);
    app.post_json("/api/v1/auth/refresh", &json!({"refresh_token": "made-up"}))
        .await
        .assert_problem(401, "unauthorized");
}

/// A refresh token that answers 200.
async fn refresh_ok(app: &TestApp, refresh_token: &str) -> Value {
    let res = app
        .post_json(
            "/api/v1/auth/refresh",
            &json!({"refresh_token": refresh_token}),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.text());
    res.json()
}

fn refresh_token_of(tokens: &Value) -> String {
    tokens["refresh_token"]
        .as_str()
        .expect("refresh_token")
        .to_owned()
}

async fn simultaneous_refreshes_keep_the_session(app: TestApp) {
    let (user, password) = app.register("customer").await;
    let tokens = app
        .login(user["email"].as_str().expect("email"), &password)
        .await;
    // Two tabs refresh with the same token at once.
    let body = json!({"refresh_token": tokens["refresh_token"]});
    let (a, b) = futures_util::join!(
        app.post_json("/api/v1/auth/refresh", &body),
        app.post_json("/api/v1/auth/refresh", &body),
    );
    assert_eq!(a.status, 200, "first: {}", a.text());
    assert_eq!(b.status, 200, "second: {}", b.text());
    let (a, b) = (a.json(), b.json());
    assert_eq!(a["user"]["id"], user["id"]);
    assert_eq!(b["user"]["id"], user["id"]);
    let (ra, rb) = (refresh_token_of(&a), refresh_token_of(&b));
    assert_ne!(ra, rb);
    // Neither tab was logged out: both successors (and their access tokens) work.
    for (tokens, refresh) in [(&a, &ra), (&b, &rb)] {
        let access = tokens["access_token"].as_str().expect("access");
        assert_eq!(app.get_auth("/api/v1/me", access).await.status, 200);
        refresh_ok(&app, refresh).await;
    }
}

async fn refresh_replayed_within_the_interval_stays_in_the_session(app: TestApp) {
    let (user, password) = app.register("customer").await;
    let first = app
        .login(user["email"].as_str().expect("email"), &password)
        .await;
    let r1 = refresh_token_of(&first);
    let r2 = refresh_token_of(&refresh_ok(&app, &r1).await);
    // A retry with the spent token moments later: another pair, nothing revoked.
    let again = refresh_ok(&app, &r1).await;
    assert_eq!(again["user"]["id"], user["id"]);
    let r3 = refresh_token_of(&again);
    assert_ne!(r3, r2);
    let r4 = refresh_token_of(&refresh_ok(&app, &r2).await);
    let r5 = refresh_token_of(&refresh_ok(&app, &r3).await);
    // Same session: logging out with one branch ends the other too.
    let res = app
        .post_json("/api/v1/auth/logout", &json!({"refresh_token": r5}))
        .await;
    assert_eq!(res.status, 204);
    app.post_json("/api/v1/auth/refresh", &json!({"refresh_token": r4}))
        .await
        .assert_problem(401, "unauthorized");
    // A spent token of a revoked session gets nothing, however recent.
    app.post_json("/api/v1/auth/refresh", &json!({"refresh_token": r2}))
        .await
        .assert_problem(401, "unauthorized");
}

async fn logout_revokes_the_session(app: TestApp) {
    let (user, password) = app.register("rider").await;
    let tokens = app
        .login(user["email"].as_str().expect("email"), &password)
        .await;
    let refresh = tokens["refresh_token"].clone();
    let res = app
        .post_json("/api/v1/auth/logout", &json!({"refresh_token": refresh}))
        .await;
    assert_eq!(res.status, 204);
    app.post_json("/api/v1/auth/refresh", &json!({"refresh_token": refresh}))
        .await
        .assert_problem(401, "unauthorized");
    // Logging out twice, or with a token that never existed, is still 204.
    let res = app
        .post_json("/api/v1/auth/logout", &json!({"refresh_token": refresh}))
        .await;
    assert_eq!(res.status, 204);
    let res = app
        .post_json("/api/v1/auth/logout", &json!({"refresh_token": "nope"}))
        .await;
    assert_eq!(res.status, 204);
}

async fn request_code(app: &TestApp, phone: &str) -> String {
    let res = app
        .post_json("/api/v1/auth/otp/request", &json!({"phone": phone}))
        .await;
    assert_eq!(res.status, 202, "{}", res.text());
    let body = res.json();
    assert_eq!(body["expires_in"], 300);
    body["debug_code"].as_str().expect("debug_code").to_owned()
}

fn wrong_code(code: &str) -> String {
    let n: u32 = code.parse().expect("digits");
    format!("{:06}", (n + 1) % 1_000_000)
}

async fn otp_signs_in_and_creates_a_customer_once(app: TestApp) {
    let phone = "+14155550199";
    let code = request_code(&app, phone).await;
    assert_eq!(code.len(), 6);
    app.post_json(
        "/api/v1/auth/otp/verify",
        &json!({"phone": phone, "code": wrong_code(&code)}),
    )
    .await
    .assert_problem(401, "invalid_code");
    let res = app
        .post_json(
            "/api/v1/auth/otp/verify",
            &json!({"phone": phone, "code": code}),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.text());
    let first = res.json();
    assert_eq!(first["user"]["role"], "customer");
    assert_eq!(first["user"]["phone"], phone);
    assert_eq!(first["user"]["phone_verified"], true);
    // A code works once.
    app.post_json(
        "/api/v1/auth/otp/verify",
        &json!({"phone": phone, "code": code}),
    )
    .await
    .assert_problem(401, "invalid_code");
    app.post_json("/api/v1/auth/otp/request", &json!({"phone": "12345"}))
        .await
        .assert_problem(422, "validation_failed");
    // A different phone is a different customer; the same phone later is the same one.
    let other = request_code(&app, "+14155550198").await;
    let res = app
        .post_json(
            "/api/v1/auth/otp/verify",
            &json!({"phone": "+14155550198", "code": other}),
        )
        .await;
    assert_ne!(res.json()["user"]["id"], first["user"]["id"]);
}

async fn otp_resend_within_30_seconds_is_429(app: TestApp) {
    let phone = "+447700900123";
    request_code(&app, phone).await;
    let res = app
        .post_json("/api/v1/auth/otp/request", &json!({"phone": phone}))
        .await;
    res.assert_problem(429, "rate_limited");
    let retry: u64 = res
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After seconds");
    assert!((1..=30).contains(&retry), "{retry}");
}

async fn otp_code_is_dead_after_five_wrong_tries(app: TestApp) {
    let phone = "+61491570156";
    let code = request_code(&app, phone).await;
    for _ in 0..5 {
        app.post_json(
            "/api/v1/auth/otp/verify",
            &json!({"phone": phone, "code": wrong_code(&code)}),
        )
        .await
        .assert_problem(401, "invalid_code");
    }
    app.post_json(
        "/api/v1/auth/otp/verify",
        &json!({"phone": phone, "code": code}),
    )
    .await
    .assert_problem(401, "invalid_code");
}

async fn rapid_wrong_logins_hit_429(app: TestApp) {
    let (user, _) = app.register("customer").await;
    let mut first_429 = None;
    for i in 0..40 {
        let res = app
            .post_json(
                "/api/v1/auth/login",
                &json!({"email": user["email"], "password": format!("guess-{i}")}),
            )
            .await;
        if res.status == 429 {
            res.assert_problem(429, "rate_limited");
            let retry: u64 = res
                .header("retry-after")
                .and_then(|v| v.parse().ok())
                .expect("retry");
            assert!(retry >= 1);
            first_429.get_or_insert(i);
        } else {
            res.assert_problem(401, "invalid_credentials");
        }
    }
    let first = first_429.expect("40 wrong logins never hit 429");
    assert!(first < 20, "first 429 only at attempt {first}");
}

async fn admins_create_accounts_of_any_role(app: TestApp) {
    let admin = app.admin_token().await;
    for role in ["pharmacy", "admin", "rider", "customer"] {
        let res = app
            .post_auth(
                "/api/v1/admin/users",
                &admin,
                &json!({"name": format!("New {role}"), "email": format!("new-{role}@example.com"),
                        "password": "long enough password", "role": role}),
            )
            .await;
        assert_eq!(res.status, 201, "{role}: {}", res.text());
        assert_no_secrets(&res, "long enough password");
        assert_eq!(res.json()["user"]["role"], role);
    }
    let res = app
        .post_auth(
            "/api/v1/admin/users",
            &admin,
            &json!({"name": "X", "email": "x@example.com", "password": "long enough", "role": "root"}),
        )
        .await;
    res.assert_problem(422, "validation_failed");
    let res = app
        .post_auth(
            "/api/v1/admin/users",
            &admin,
            &json!({"name": "X", "email": "y@example.com", "password": "long enough",
                    "role": "pharmacy", "pharmacy_id": Uuid::now_v7()}),
        )
        .await;
    let body = res.assert_problem(422, "validation_failed");
    assert_eq!(body["errors"][0]["field"], "pharmacy_id");
    // The new admin can sign in and act as one.
    let tokens = app
        .login("new-admin@example.com", "long enough password")
        .await;
    assert_eq!(tokens["user"]["role"], "admin");
}

async fn customers_cannot_reach_admin_endpoints(app: TestApp) {
    let body =
        json!({"name": "X", "email": "z@example.com", "password": "long enough", "role": "admin"});
    let (_, customer) = app.user_token("customer").await;
    app.post_auth("/api/v1/admin/users", &customer, &body)
        .await
        .assert_problem(403, "forbidden");
    let (_, rider) = app.user_token("rider").await;
    app.post_auth("/api/v1/admin/users", &rider, &body)
        .await
        .assert_problem(403, "forbidden");
    app.post_json("/api/v1/admin/users", &body)
        .await
        .assert_problem(401, "unauthorized");
}

async fn tokens_and_admin_survive_a_restart(app: TestApp) {
    let (user, password) = app.register("customer").await;
    let tokens = app
        .login(user["email"].as_str().expect("email"), &password)
        .await;
    // A second server on the same database and secret: a restarted (or sibling) node.
    let restarted = spawn_sibling(&app).await;
    let res = restarted
        .post_json(
            "/api/v1/auth/refresh",
            &json!({"refresh_token": tokens["refresh_token"]}),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.text());
    let access = tokens["access_token"].as_str().expect("access");
    assert_eq!(restarted.get_auth("/api/v1/me", access).await.status, 200);
    // The admin bootstrap ran twice and left one working admin.
    let admin = restarted.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_eq!(admin["user"]["role"], "admin");
}

/// Two nodes sharing Redis enforce one limit: attempts on one count on the other.
#[actix_web::test]
async fn rate_limits_are_shared_through_redis() {
    for backend in [Backend::Sqlite] {
        let Some(app) = spawn_app_with(
            backend,
            Options {
                redis: true,
                env: vec![("RATE_LIMIT_AUTH_PER_ACCOUNT", "4".to_owned())],
            },
        )
        .await
        else {
            return;
        };
        let other = spawn_sibling(&app).await;
        let body = json!({"email": "shared@example.com", "password": "wrong password"});
        for _ in 0..4 {
            app.post_json("/api/v1/auth/login", &body)
                .await
                .assert_problem(401, "invalid_credentials");
        }
        other
            .post_json("/api/v1/auth/login", &body)
            .await
            .assert_problem(429, "rate_limited");
    }
}

/// POSTs JSON as if through a proxy that saw the client at `forwarded_for`.
async fn post_from(app: &TestApp, forwarded_for: &str, path: &str, body: &Value) -> Reply {
    let mut res = app
        .client
        .post(app.url(path))
        .insert_header(("x-forwarded-for", forwarded_for))
        .send_json(body)
        .await
        .expect("request failed");
    let bytes = res.body().await.expect("body");
    Reply {
        status: res.status().as_u16(),
        headers: res.headers().clone(),
        body: bytes.to_vec(),
    }
}

/// Wrong passwords for `email` from `forwarded_for` until the first 429; panics if none
/// comes within 20 tries.
async fn guess_until_429(app: &TestApp, forwarded_for: &str, email: &Value) {
    for i in 0..20 {
        let res = post_from(
            app,
            forwarded_for,
            "/api/v1/auth/login",
            &json!({"email": email, "password": format!("guess-{i}")}),
        )
        .await;
        if res.status == 429 {
            res.assert_problem(429, "rate_limited");
            return;
        }
        res.assert_problem(401, "invalid_credentials");
    }
    panic!("20 wrong passwords from {forwarded_for} never hit 429");
}

async fn an_attacker_cannot_lock_out_the_owner(app: TestApp) {
    let (owner, password) = app.register("customer").await;
    // Wrong passwords for the owner's email from one address until the account's budget
    // for that address (10 a minute, under the per-IP 30) is spent.
    guess_until_429(&app, "203.0.113.7", &owner["email"]).await;
    post_from(
        &app,
        "203.0.113.7",
        "/api/v1/auth/login",
        &json!({"email": owner["email"], "password": password}),
    )
    .await
    .assert_problem(429, "rate_limited");
    // The owner, from their own address, signs in at once.
    let res = post_from(
        &app,
        "198.51.100.20",
        "/api/v1/auth/login",
        &json!({"email": owner["email"], "password": password}),
    )
    .await;
    assert_eq!(res.status, 200, "the owner was locked out: {}", res.text());
    assert_eq!(res.json()["user"]["id"], owner["id"]);
}

async fn ipv6_clients_share_a_budget_per_64(app: TestApp) {
    let login = |n: usize| json!({"email": format!("nobody-{n}@example.com"), "password": "wrong password"});
    // Four requests (the per-IP budget) from two addresses in one /64 ...
    for (n, from) in ["2001:db8:1:2::1", "2001:db8:1:2:ffff::9"]
        .iter()
        .cycle()
        .take(4)
        .enumerate()
    {
        post_from(&app, from, "/api/v1/auth/login", &login(n))
            .await
            .assert_problem(401, "invalid_credentials");
    }
    // ... spend it for every address of that /64, not for the next /64.
    post_from(&app, "2001:db8:1:2::abcd", "/api/v1/auth/login", &login(5))
        .await
        .assert_problem(429, "rate_limited");
    post_from(&app, "2001:db8:1:3::1", "/api/v1/auth/login", &login(6))
        .await
        .assert_problem(401, "invalid_credentials");
    // IPv4 clients count per address.
    for n in 0..4 {
        post_from(&app, "192.0.2.1", "/api/v1/auth/login", &login(10 + n))
            .await
            .assert_problem(401, "invalid_credentials");
    }
    post_from(&app, "192.0.2.1", "/api/v1/auth/login", &login(20))
        .await
        .assert_problem(429, "rate_limited");
    post_from(&app, "192.0.2.2", "/api/v1/auth/login", &login(21))
        .await
        .assert_problem(401, "invalid_credentials");
}

async fn forwarded_for_from_an_untrusted_peer_is_ignored(app: TestApp) {
    // No TRUSTED_PROXIES: a client naming a new address on every try is still one client.
    let (owner, password) = app.register("customer").await;
    let mut limited = false;
    for i in 0..20 {
        let res = post_from(
            &app,
            &format!("203.0.113.{i}"),
            "/api/v1/auth/login",
            &json!({"email": owner["email"], "password": format!("guess-{i}")}),
        )
        .await;
        if res.status == 429 {
            limited = true;
            break;
        }
        res.assert_problem(401, "invalid_credentials");
    }
    assert!(limited, "forged X-Forwarded-For values escaped the limit");
    // And the header cannot buy this client a fresh budget for the account either.
    post_from(
        &app,
        "198.51.100.20",
        "/api/v1/auth/login",
        &json!({"email": owner["email"], "password": password}),
    )
    .await
    .assert_problem(429, "rate_limited");
}

async fn count_rows(store: &medify::store::Store, table: &str) -> i64 {
    let sql = format!("SELECT COUNT(*) FROM {table}");
    medify::on_pool!(store, |pool| sqlx::query_scalar::<_, i64>(&sql)
        .fetch_one(pool)
        .await
        .expect("count"))
}

/// `Store::sweep_expired` against the test database: what can no longer be used goes, what
/// can stays (and still works over HTTP).
async fn the_sweep_deletes_expired_rows_and_keeps_live_ones(app: TestApp) {
    use chrono::Duration;
    use medify::store::auth::{OtpPolicy, OtpTry, Swept};

    let store = &app.state.store;
    let (user, password) = app.register("customer").await;
    let user_id = Uuid::parse_str(user["id"].as_str().expect("id")).expect("uuid");
    // A live session, and two refresh tokens that expired a minute ago.
    let live = app
        .login(user["email"].as_str().expect("email"), &password)
        .await;
    for n in 0..2u8 {
        store
            .insert_refresh_token(user_id, Uuid::now_v7(), &[n; 32], Duration::seconds(-60))
            .await
            .expect("insert");
    }

    let policy = |ttl_s: i64| OtpPolicy {
        ttl: Duration::seconds(ttl_s),
        resend_cooldown: Duration::zero(),
        max_attempts_per_code: 5,
        max_wrong_per_phone: 10,
        wrong_window: Duration::minutes(30),
    };
    // An expired code.
    store
        .issue_otp("+14155550301", b"expired", &policy(-60))
        .await
        .expect("issue");
    // A used code (proven over HTTP).
    let used = request_code(&app, "+14155550302").await;
    let res = app
        .post_json(
            "/api/v1/auth/otp/verify",
            &json!({"phone": "+14155550302", "code": used}),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.text());
    // A live code.
    let live_code = request_code(&app, "+14155550303").await;
    // An expired code whose phone has a wrong try in a running window: the count must
    // outlive the code, or deleting it would hand out a fresh budget.
    store
        .issue_otp("+14155550304", b"wrong", &policy(300))
        .await
        .expect("issue");
    assert!(matches!(
        store
            .spend_otp_attempt("+14155550304", &policy(300))
            .await
            .expect("spend"),
        OtpTry::Live(_)
    ));
    store
        .issue_otp("+14155550304", b"expired too", &policy(-60))
        .await
        .expect("reissue");

    // Idempotency keys: one past its 24 hours, one live.
    for (key, ttl) in [
        ("old-key", Duration::seconds(-60)),
        ("live-key", Duration::hours(24)),
    ] {
        store
            .claim_idempotency_key(user_id, key, &[7; 32], (ttl, ttl))
            .await
            .expect("claim");
    }

    let tokens_before = count_rows(store, "refresh_tokens").await;
    assert_eq!(count_rows(store, "otp_codes").await, 4);
    let swept = store
        .sweep_expired(medify::store::now())
        .await
        .expect("sweep");
    assert_eq!(
        swept,
        Swept {
            refresh_tokens: 2,
            otp_codes: 2,
            idempotency_keys: 1,
        }
    );
    assert_eq!(count_rows(store, "idempotency_keys").await, 1);
    assert_eq!(count_rows(store, "refresh_tokens").await, tokens_before - 2);
    assert_eq!(count_rows(store, "otp_codes").await, 2);
    // Nothing more to sweep now, and what stayed works.
    let again = store
        .sweep_expired(medify::store::now())
        .await
        .expect("sweep");
    assert_eq!(again, Swept::default());
    refresh_ok(&app, &refresh_token_of(&live)).await;
    let res = app
        .post_json(
            "/api/v1/auth/otp/verify",
            &json!({"phone": "+14155550303", "code": live_code}),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.text());

    // A month on, every token has expired and every window is over.
    let later = medify::store::now() + Duration::days(31);
    let swept = store.sweep_expired(later).await.expect("sweep");
    assert_eq!(swept.otp_codes, 2, "{swept:?}");
    assert_eq!(swept.idempotency_keys, 1, "{swept:?}");
    assert_eq!(count_rows(store, "refresh_tokens").await, 0);
    assert_eq!(count_rows(store, "otp_codes").await, 0);
}
