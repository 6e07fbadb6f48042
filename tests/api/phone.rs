//! Phones (contract v1.2): `PATCH /me`, proving a phone with a code, OTP sign-in into the
//! account that holds the phone verified, and wrong tries counted per phone across codes.

use serde_json::{json, Value};

use crate::helpers::{Options, TestApp};
use crate::{backend_tests, backend_tests_with};

backend_tests!(
    patch_me_edits_name_and_phone,
    a_phone_is_verified_with_a_code,
    openapi_documents_the_phone_endpoints,
);

// Servers with no resend cool-down, so that a test can send a phone several codes at once.
backend_tests_with!(
    no_cooldown,
    no_cooldown,
    a_pre_registered_phone_gets_its_typist_nothing,
    wrong_tries_survive_resends,
    a_number_verified_elsewhere_is_phone_taken,
);

fn no_cooldown() -> Options {
    Options {
        env: vec![("OTP_RESEND_COOLDOWN_S", "0".to_owned())],
        ..Options::default()
    }
}

const CENTER: (f64, f64) = (12.9716, 77.5946);

fn wrong(code: &str) -> String {
    let n: u32 = code.parse().expect("digits");
    format!("{:06}", (n + 1) % 1_000_000)
}

/// A sign-in code sent to `phone` (`OTP_DELIVERY=response`).
async fn sign_in_code(app: &TestApp, phone: &str) -> String {
    let res = app
        .post_json("/api/v1/auth/otp/request", &json!({"phone": phone}))
        .await;
    assert_eq!(res.status, 202, "{}", res.text());
    res.json()["debug_code"]
        .as_str()
        .expect("debug_code")
        .to_owned()
}

/// Signs in by OTP; returns the token answer.
async fn otp_sign_in(app: &TestApp, phone: &str) -> Value {
    let code = sign_in_code(app, phone).await;
    let res = app
        .post_json(
            "/api/v1/auth/otp/verify",
            &json!({"phone": phone, "code": code}),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.text());
    res.json()
}

/// Registers a customer with a phone; returns the user and an access token.
async fn customer_with_phone(app: &TestApp, phone: &str) -> (Value, String) {
    let email = format!("{}@example.com", uuid::Uuid::now_v7().simple());
    let res = app
        .post_json(
            "/api/v1/auth/register",
            &json!({"name": "Has Phone", "email": email, "password": "long enough", "phone": phone}),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.text());
    let user = res.json()["user"].clone();
    assert_eq!(user["phone"], phone);
    assert_eq!(user["phone_verified"], false, "{user}");
    let tokens = app.login(&email, "long enough").await;
    let token = tokens["access_token"].as_str().expect("token").to_owned();
    (user, token)
}

async fn patch_me(app: &TestApp, token: &str, body: &Value) -> crate::helpers::Reply {
    app.request("PATCH", "/api/v1/me", Some(token), Some(body))
        .await
}

async fn request_verification(app: &TestApp, token: &str) -> crate::helpers::Reply {
    app.post_auth("/api/v1/me/phone/verify/request", token, &json!({}))
        .await
}

async fn verification_code(app: &TestApp, token: &str) -> String {
    let res = request_verification(app, token).await;
    assert_eq!(res.status, 202, "{}", res.text());
    let body = res.json();
    assert_eq!(body["expires_in"], 300);
    body["debug_code"].as_str().expect("debug_code").to_owned()
}

async fn verify(app: &TestApp, token: &str, code: &str) -> crate::helpers::Reply {
    app.post_auth("/api/v1/me/phone/verify", token, &json!({"code": code}))
        .await
}

async fn me(app: &TestApp, token: &str) -> Value {
    let res = app.get_auth("/api/v1/me", token).await;
    assert_eq!(res.status, 200, "{}", res.text());
    res.json()
}

fn order_ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|o| o["id"].as_str().map(str::to_owned))
        .collect()
}

async fn a_pre_registered_phone_gets_its_typist_nothing(app: TestApp) {
    let victim_phone = "+919812345678";
    // The attacker signs up with the victim's number and orders something.
    let (attacker, attacker_token) = customer_with_phone(&app, victim_phone).await;
    let admin = app.admin_token().await;
    let (_, medicine) = app
        .stocked_pharmacy(&admin, "Corner", CENTER.0 + 0.002, CENTER.1, 10)
        .await;
    let res = app
        .place_order(&attacker_token, &[(medicine, 1)], CENTER.0, CENTER.1)
        .await;
    assert_eq!(res.status, 201, "{}", res.text());
    let attacker_order = res.json()["id"].as_str().expect("id").to_owned();

    // The victim signs in with their phone: a new account of their own, not the attacker's.
    let tokens = otp_sign_in(&app, victim_phone).await;
    let victim = &tokens["user"];
    assert_ne!(
        victim["id"], attacker["id"],
        "signed into the attacker's account"
    );
    assert_eq!(victim["role"], "customer");
    assert_eq!(victim["phone"], victim_phone);
    assert_eq!(victim["phone_verified"], true, "{victim}");
    let victim_token = tokens["access_token"].as_str().expect("access");

    // The attacker's claim on the number is gone.
    let attacker_now = me(&app, &attacker_token).await;
    assert_eq!(attacker_now["phone"], Value::Null, "{attacker_now}");
    assert_eq!(attacker_now["phone_verified"], false);

    // Neither sees the other's orders.
    let res = app.get_auth("/api/v1/orders", victim_token).await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(res.json()["total"], 0, "{}", res.text());
    app.get_auth(&format!("/api/v1/orders/{attacker_order}"), victim_token)
        .await
        .assert_problem(404, "not_found");
    let res = app
        .place_order(victim_token, &[(medicine, 1)], CENTER.0, CENTER.1)
        .await;
    assert_eq!(res.status, 201, "{}", res.text());
    let victim_order = res.json()["id"].as_str().expect("id").to_owned();
    app.get_auth(&format!("/api/v1/orders/{victim_order}"), &attacker_token)
        .await
        .assert_problem(404, "not_found");
    let attacker_orders = app.get_auth("/api/v1/orders", &attacker_token).await.json();
    assert_eq!(order_ids(&attacker_orders), vec![attacker_order.clone()]);

    // Signing in again with the phone is the victim's account again.
    let again = otp_sign_in(&app, victim_phone).await;
    assert_eq!(again["user"]["id"], victim["id"]);
    // The attacker cannot take the number back by typing it in again.
    let res = patch_me(&app, &attacker_token, &json!({"phone": victim_phone})).await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(res.json()["phone_verified"], false);
    let victim_now = me(&app, victim_token).await;
    assert_eq!(victim_now["phone"], victim_phone);
    assert_eq!(victim_now["phone_verified"], true);
}

async fn patch_me_edits_name_and_phone(app: TestApp) {
    let (user, token) = app.user_token("customer").await;
    assert_eq!(user["phone"], Value::Null);
    assert_eq!(user["phone_verified"], false);

    // Nothing asked, nothing changed.
    let res = patch_me(&app, &token, &json!({})).await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(res.json(), user);

    let res = patch_me(
        &app,
        &token,
        &json!({"name": "  Meera N ", "phone": "+14155550111"}),
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text());
    let changed = res.json();
    assert_eq!(changed["id"], user["id"]);
    assert_eq!(changed["name"], "Meera N");
    assert_eq!(changed["phone"], "+14155550111");
    assert_eq!(changed["phone_verified"], false);
    assert_eq!(changed["email"], user["email"]);
    assert_eq!(me(&app, &token).await, changed);

    // Every bad field at once, and nothing changes.
    let res = patch_me(&app, &token, &json!({"name": "", "phone": "5550123"})).await;
    let body = res.assert_problem(422, "validation_failed");
    let mut fields: Vec<&str> = body["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["field"].as_str())
        .collect();
    fields.sort_unstable();
    assert_eq!(fields, vec!["name", "phone"], "{body}");
    patch_me(&app, &token, &json!({"phone": 5}))
        .await
        .assert_problem(422, "validation_failed");
    assert_eq!(me(&app, &token).await, changed);

    // Null removes the phone.
    let res = patch_me(&app, &token, &json!({"phone": null})).await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(res.json()["phone"], Value::Null);

    patch_me(&app, "not-a-token", &json!({"name": "X"}))
        .await
        .assert_problem(401, "unauthorized");

    // A verified phone: giving it again keeps it verified; a new one is unverified.
    let tokens = otp_sign_in(&app, "+14155550112").await;
    let otp_token = tokens["access_token"].as_str().expect("access");
    let res = patch_me(
        &app,
        otp_token,
        &json!({"phone": "+14155550112", "name": "Ravi"}),
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(res.json()["phone_verified"], true);
    assert_eq!(res.json()["name"], "Ravi");
    // That account has no email: its phone is how it signs in, so it stays.
    patch_me(&app, otp_token, &json!({"phone": "+14155550113"}))
        .await
        .assert_problem(409, "conflict");
    patch_me(&app, otp_token, &json!({"phone": null}))
        .await
        .assert_problem(409, "conflict");
    // An account with an email trades its verified phone for an unverified one.
    let (_, token) = customer_with_phone(&app, "+14155550114").await;
    let code = verification_code(&app, &token).await;
    assert_eq!(verify(&app, &token, &code).await.status, 200);
    let res = patch_me(&app, &token, &json!({"phone": "+14155550115"})).await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(res.json()["phone"], "+14155550115");
    assert_eq!(res.json()["phone_verified"], false);
}

async fn a_phone_is_verified_with_a_code(app: TestApp) {
    let phone = "+447700900555";
    // Without a phone there is nothing to verify.
    let (_, no_phone) = app.user_token("customer").await;
    request_verification(&app, &no_phone)
        .await
        .assert_problem(409, "conflict");
    verify(&app, &no_phone, "123456")
        .await
        .assert_problem(409, "conflict");
    app.post_json("/api/v1/me/phone/verify/request", &json!({}))
        .await
        .assert_problem(401, "unauthorized");

    let (user, token) = customer_with_phone(&app, phone).await;
    let code = verification_code(&app, &token).await;
    // Same cool-down as sign-in codes: the phone was just sent one.
    request_verification(&app, &token)
        .await
        .assert_problem(429, "rate_limited");
    app.post_json("/api/v1/auth/otp/request", &json!({"phone": phone}))
        .await
        .assert_problem(429, "rate_limited");
    verify(&app, &token, &wrong(&code))
        .await
        .assert_problem(401, "invalid_code");
    app.post_auth("/api/v1/me/phone/verify", &token, &json!({}))
        .await
        .assert_problem(422, "validation_failed");
    let res = verify(&app, &token, &code).await;
    assert_eq!(res.status, 200, "{}", res.text());
    let verified = res.json();
    assert_eq!(verified["id"], user["id"]);
    assert_eq!(verified["phone"], phone);
    assert_eq!(verified["phone_verified"], true);
    assert_eq!(me(&app, &token).await, verified);
    // A code works once, and a verified phone needs no more codes.
    verify(&app, &token, &code)
        .await
        .assert_problem(409, "conflict");
    request_verification(&app, &token)
        .await
        .assert_problem(409, "conflict");
}

async fn a_number_verified_elsewhere_is_phone_taken(app: TestApp) {
    let phone = "+61491570200";
    // Two accounts type in one number (allowed: neither has proven it).
    let (first, first_token) = customer_with_phone(&app, phone).await;
    let (second, second_token) = customer_with_phone(&app, phone).await;
    assert_ne!(first["id"], second["id"]);
    // The first proves it: the second's claim is dropped.
    let code = verification_code(&app, &first_token).await;
    assert_eq!(verify(&app, &first_token, &code).await.status, 200);
    assert_eq!(me(&app, &second_token).await["phone"], Value::Null);
    // The second types it in again and proves it too (a recycled number): the number
    // stays with its verified holder, and sign-in keeps opening that account.
    let res = patch_me(&app, &second_token, &json!({"phone": phone})).await;
    assert_eq!(res.json()["phone_verified"], false);
    let code = verification_code(&app, &second_token).await;
    verify(&app, &second_token, &code)
        .await
        .assert_problem(409, "phone_taken");
    assert_eq!(me(&app, &first_token).await["phone_verified"], true);
    assert_eq!(otp_sign_in(&app, phone).await["user"]["id"], first["id"]);
}

async fn wrong_tries_survive_resends(app: TestApp) {
    let phone = "+14155550177";
    let try_code = |code: String| {
        let app = &app;
        async move {
            app.post_json(
                "/api/v1/auth/otp/verify",
                &json!({"phone": phone, "code": code}),
            )
            .await
        }
    };
    // Five wrong tries kill the first code; a resend gives a fresh code ...
    let code = sign_in_code(&app, phone).await;
    for _ in 0..5 {
        try_code(wrong(&code))
            .await
            .assert_problem(401, "invalid_code");
    }
    // ... but not a fresh budget: four more wrong tries on a second code, one on a third,
    let code = sign_in_code(&app, phone).await;
    for _ in 0..4 {
        try_code(wrong(&code))
            .await
            .assert_problem(401, "invalid_code");
    }
    let code = sign_in_code(&app, phone).await;
    try_code(wrong(&code))
        .await
        .assert_problem(401, "invalid_code");
    // and the phone's ten are spent: even the right code is refused, until the window ends.
    let res = try_code(code).await;
    res.assert_problem(429, "rate_limited");
    let retry: u64 = res
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After seconds");
    assert!((1..=1800).contains(&retry), "{retry}");
    // No point sending codes that cannot be tried, nor trying through the other door.
    app.post_json("/api/v1/auth/otp/request", &json!({"phone": phone}))
        .await
        .assert_problem(429, "rate_limited");
    let (_, token) = customer_with_phone(&app, phone).await;
    request_verification(&app, &token)
        .await
        .assert_problem(429, "rate_limited");
    // Another phone is not affected.
    otp_sign_in(&app, "+14155550178").await;
}

async fn openapi_documents_the_phone_endpoints(app: TestApp) {
    let doc = app.get("/api/v1/openapi.json").await.json();
    let statuses = |path: &str, method: &str| -> Vec<String> {
        let responses = doc["paths"][path][method]["responses"]
            .as_object()
            .unwrap_or_else(|| panic!("{method} {path} is not documented"));
        let mut codes: Vec<String> = responses.keys().cloned().collect();
        codes.sort_unstable();
        codes
    };
    assert_eq!(
        statuses("/api/v1/me", "patch"),
        ["200", "400", "401", "409", "413", "415", "422"]
    );
    assert_eq!(
        statuses("/api/v1/me/phone/verify/request", "post"),
        ["202", "401", "409", "429", "503"]
    );
    assert_eq!(
        statuses("/api/v1/me/phone/verify", "post"),
        ["200", "400", "401", "409", "413", "415", "422", "429"]
    );
    for (path, method) in [("/api/v1/me", "patch"), ("/api/v1/me/phone/verify", "post")] {
        let body = &doc["paths"][path][method]["requestBody"]["content"]["application/json"];
        assert!(
            body["schema"]["$ref"].is_string(),
            "{method} {path}: {body}"
        );
        assert!(
            doc["paths"][path][method]["security"].is_array(),
            "{method} {path} needs a token"
        );
    }
    let ok = &doc["paths"]["/api/v1/me/phone/verify"]["post"]["responses"]["200"];
    assert_eq!(
        ok["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/User"
    );
    let sent = &doc["paths"]["/api/v1/me/phone/verify/request"]["post"]["responses"]["202"];
    assert_eq!(
        sent["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/OtpSent"
    );
    // Every user object says whether its phone is verified.
    let user = &doc["components"]["schemas"]["User"];
    assert_eq!(
        user["properties"]["phone_verified"]["type"], "boolean",
        "{user}"
    );
    assert!(
        user["required"]
            .as_array()
            .is_some_and(|r| r.iter().any(|f| f == "phone_verified")),
        "{user}"
    );
    for schema in ["ProfilePatch", "PhoneCode"] {
        assert!(doc["components"]["schemas"][schema].is_object(), "{schema}");
    }
}
