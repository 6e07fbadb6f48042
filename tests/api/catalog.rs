//! Catalog and pharmacies over HTTP: CRUD, authorisation, search, nearby, stock.

use serde_json::{json, Value};
use uuid::Uuid;

use crate::backend_tests;
use crate::helpers::TestApp;

backend_tests!(
    medicine_crud_and_authz,
    medicine_validation,
    search_tolerates_typos_and_prefixes,
    search_is_paginated_and_harmless,
    writes_are_visible_to_the_next_search,
    pharmacies_near_a_point_nearest_first,
    nearby_search_can_require_a_medicine,
    nearby_search_validates_its_query,
    stock_is_set_by_admins_and_own_staff_only,
    stock_validation,
);

fn names(body: &Value) -> Vec<String> {
    body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|m| m["name"].as_str().unwrap_or_default().to_owned())
        .collect()
}

async fn medicine_crud_and_authz(app: TestApp) {
    let admin = app.admin_token().await;
    let (_, customer) = app.user_token("customer").await;
    let body = json!({"name": "Amoxicillin 500 mg Capsule", "generic_name": "Amoxicillin",
                      "brand": "Mox", "sku": "AMOX-500", "price_cents": 1250, "rx_required": true});
    app.post_json("/api/v1/medicines", &body)
        .await
        .assert_problem(401, "unauthorized");
    app.post_auth("/api/v1/medicines", &customer, &body)
        .await
        .assert_problem(403, "forbidden");
    let res = app.post_auth("/api/v1/medicines", &admin, &body).await;
    assert_eq!(res.status, 201, "{}", res.text());
    let created = res.json();
    for field in [
        "id",
        "name",
        "generic_name",
        "brand",
        "sku",
        "price_cents",
        "rx_required",
        "created_at",
        "updated_at",
    ] {
        assert!(created.get(field).is_some(), "missing {field}: {created}");
    }
    assert_eq!(created["rx_required"], true);
    let id = created["id"].as_str().expect("id").to_owned();
    app.post_auth("/api/v1/medicines", &admin, &body)
        .await
        .assert_problem(409, "sku_taken");

    let got = app.get(&format!("/api/v1/medicines/{id}")).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json(), created);

    let patch = json!({"price_cents": 999, "brand": null});
    app.request(
        "PATCH",
        &format!("/api/v1/medicines/{id}"),
        Some(&customer),
        Some(&patch),
    )
    .await
    .assert_problem(403, "forbidden");
    let res = app
        .request(
            "PATCH",
            &format!("/api/v1/medicines/{id}"),
            Some(&admin),
            Some(&patch),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.text());
    let patched = res.json();
    assert_eq!(patched["price_cents"], 999);
    assert_eq!(patched["brand"], Value::Null);
    assert_eq!(patched["name"], created["name"]);
    assert_eq!(patched["generic_name"], "Amoxicillin");

    app.request(
        "DELETE",
        &format!("/api/v1/medicines/{id}"),
        Some(&customer),
        None,
    )
    .await
    .assert_problem(403, "forbidden");
    let res = app
        .request(
            "DELETE",
            &format!("/api/v1/medicines/{id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(res.status, 204);
    app.get(&format!("/api/v1/medicines/{id}"))
        .await
        .assert_problem(404, "not_found");
    app.request(
        "DELETE",
        &format!("/api/v1/medicines/{id}"),
        Some(&admin),
        None,
    )
    .await
    .assert_problem(404, "not_found");
    // The deleted medicine's sku is free again.
    let res = app.post_auth("/api/v1/medicines", &admin, &body).await;
    assert_eq!(res.status, 201, "{}", res.text());

    for bad in ["not-a-uuid", "123", &Uuid::now_v7().to_string()] {
        app.get(&format!("/api/v1/medicines/{bad}"))
            .await
            .assert_problem(404, "not_found");
    }
    let missing = Uuid::now_v7();
    app.request(
        "PATCH",
        &format!("/api/v1/medicines/{missing}"),
        Some(&admin),
        Some(&patch),
    )
    .await
    .assert_problem(404, "not_found");
}

async fn medicine_validation(app: TestApp) {
    let admin = app.admin_token().await;
    let res = app
        .post_auth(
            "/api/v1/medicines",
            &admin,
            &json!({"generic_name": 7, "price_cents": 5}),
        )
        .await;
    let body = res.assert_problem(422, "validation_failed");
    assert_eq!(body["errors"][0]["field"], "generic_name", "{body}");
    let res = app
        .post_auth(
            "/api/v1/medicines",
            &admin,
            &json!({"name": " ", "price_cents": -1}),
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
    assert_eq!(fields, vec!["name", "price_cents", "sku"], "{body}");
    let res = app
        .post_auth(
            "/api/v1/medicines",
            &admin,
            &json!({"name": "X", "sku": "X", "price_cents": 1.5}),
        )
        .await;
    let body = res.assert_problem(422, "validation_failed");
    assert_eq!(body["errors"][0]["field"], "price_cents", "{body}");
    // Prices are capped at 10^9 so no order total can overflow.
    for price in [json!(1_000_000_001i64), json!(i64::MAX)] {
        let res = app
            .post_auth(
                "/api/v1/medicines",
                &admin,
                &json!({"name": "Gold", "sku": "GOLD-1", "price_cents": price}),
            )
            .await;
        let body = res.assert_problem(422, "validation_failed");
        assert_eq!(body["errors"][0]["field"], "price_cents", "{body}");
    }
    let top = app
        .post_auth(
            "/api/v1/medicines",
            &admin,
            &json!({"name": "Gold", "sku": "GOLD-1", "price_cents": 1_000_000_000i64}),
        )
        .await;
    assert_eq!(top.status, 201, "{}", top.text());
    let id = top.json()["id"].as_str().expect("id").to_owned();
    let res = app
        .request(
            "PATCH",
            &format!("/api/v1/medicines/{id}"),
            Some(&admin),
            Some(&json!({"price_cents": i64::MAX})),
        )
        .await;
    let body = res.assert_problem(422, "validation_failed");
    assert_eq!(body["errors"][0]["field"], "price_cents", "{body}");
}

async fn seed_search(app: &TestApp) {
    let admin = app.admin_token().await;
    for (name, generic, brand) in [
        (
            "Paracetamol 500 mg Tablet",
            Some("Paracetamol"),
            Some("Crocin"),
        ),
        (
            "Calpol 250 mg Suspension",
            Some("Paracetamol"),
            Some("Calpol"),
        ),
        ("Ibuprofen 400 mg Tablet", Some("Ibuprofen"), Some("Brufen")),
        ("Paraffin Liquid", None, None),
        (
            "Cetirizine 10 mg Tablet",
            Some("Cetirizine"),
            Some("Zyrtec"),
        ),
    ] {
        app.create_medicine(&admin, name, generic, brand, 300).await;
    }
}

async fn search_tolerates_typos_and_prefixes(app: TestApp) {
    seed_search(&app).await;
    let found = names(&app.get("/api/v1/medicines?q=paracetmol").await.json());
    assert!(
        found.contains(&"Paracetamol 500 mg Tablet".to_owned()),
        "{found:?}"
    );
    assert!(!found.contains(&"Paraffin Liquid".to_owned()), "{found:?}");
    let found = names(&app.get("/api/v1/medicines?q=calp").await.json());
    assert_eq!(
        found.first().map(String::as_str),
        Some("Calpol 250 mg Suspension"),
        "{found:?}"
    );
    let found = names(&app.get("/api/v1/medicines?q=CALPOL").await.json());
    assert_eq!(found, vec!["Calpol 250 mg Suspension"]);
    // Brands and generic names are searched too.
    let found = names(&app.get("/api/v1/medicines?q=brufen").await.json());
    assert_eq!(found, vec!["Ibuprofen 400 mg Tablet"]);
    // Exact matches rank before typo matches.
    let found = names(&app.get("/api/v1/medicines?q=paracetamol").await.json());
    assert_eq!(found[0], "Paracetamol 500 mg Tablet");
}

async fn search_is_paginated_and_harmless(app: TestApp) {
    seed_search(&app).await;
    for q in [
        "'; DROP TABLE medicines; --",
        "%",
        "_",
        "\" OR 1=1",
        "tablet' OR '1'='1",
    ] {
        let res = app
            .get(&format!("/api/v1/medicines?q={}", urlencode(q)))
            .await;
        assert_eq!(res.status, 200, "{q}: {}", res.text());
    }
    let all = app.get("/api/v1/medicines").await.json();
    assert_eq!(all["total"], 5, "the catalog survived: {all}");
    assert_eq!(all["per_page"], 20);
    assert_eq!(
        names(&all)[0],
        "Calpol 250 mg Suspension",
        "listing is by name"
    );

    let page = app
        .get("/api/v1/medicines?q=tablet&per_page=2&page=2")
        .await
        .json();
    assert_eq!(page["total"], 3);
    assert_eq!(page["page"], 2);
    assert_eq!(page["items"].as_array().map(Vec::len), Some(1));
    let capped = app.get("/api/v1/medicines?per_page=500").await.json();
    assert_eq!(capped["per_page"], 100);
    for bad in ["per_page=0", "per_page=abc", "page=0", "page=-2"] {
        let body = app
            .get(&format!("/api/v1/medicines?{bad}"))
            .await
            .assert_problem(422, "validation_failed");
        let field = bad.split('=').next().expect("name");
        assert_eq!(body["errors"][0]["field"], field, "{body}");
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn writes_are_visible_to_the_next_search(app: TestApp) {
    let admin = app.admin_token().await;
    let id = app
        .create_medicine(
            &admin,
            "Montelukast 10 mg Tablet",
            Some("Montelukast"),
            Some("Montair"),
            800,
        )
        .await;
    assert_eq!(
        names(&app.get("/api/v1/medicines?q=montair").await.json()),
        vec!["Montelukast 10 mg Tablet"]
    );
    let res = app
        .request(
            "PATCH",
            &format!("/api/v1/medicines/{id}"),
            Some(&admin),
            Some(&json!({"brand": "Telekast"})),
        )
        .await;
    assert_eq!(res.status, 200);
    assert!(names(&app.get("/api/v1/medicines?q=montair").await.json()).is_empty());
    assert_eq!(
        names(&app.get("/api/v1/medicines?q=telekast").await.json()).len(),
        1
    );
    app.request(
        "DELETE",
        &format!("/api/v1/medicines/{id}"),
        Some(&admin),
        None,
    )
    .await;
    assert!(names(&app.get("/api/v1/medicines?q=montelukast").await.json()).is_empty());
}

async fn pharmacies_near_a_point_nearest_first(app: TestApp) {
    let admin = app.admin_token().await;
    let (_, customer) = app.user_token("customer").await;
    let body = json!({"name": "P", "lat": 12.97, "lng": 77.59, "address": "x"});
    app.post_auth("/api/v1/pharmacies", &customer, &body)
        .await
        .assert_problem(403, "forbidden");
    // About 0.2 km, 1.1 km, 4.4 km and 33 km north of the centre.
    let near = app.create_pharmacy(&admin, "Near", 12.9736, 77.5946).await;
    let mid = app.create_pharmacy(&admin, "Mid", 12.9816, 77.5946).await;
    let edge = app.create_pharmacy(&admin, "Edge", 13.0116, 77.5946).await;
    let far = app.create_pharmacy(&admin, "Far", 13.2716, 77.5946).await;

    let res = app.get(&format!("/api/v1/pharmacies/{near}")).await;
    assert_eq!(res.status, 200);
    let p = res.json();
    assert_eq!(p["name"], "Near");
    assert_eq!(p["h3_cell"].as_str().map(str::len), Some(15), "{p}");
    assert!(
        p["h3_cell"].as_str().unwrap_or("").starts_with("89"),
        "resolution 9: {p}"
    );

    let page = app
        .get("/api/v1/pharmacies?lat=12.9716&lng=77.5946")
        .await
        .json();
    let ids: Vec<String> = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|p| p["id"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(
        ids,
        vec![near.to_string(), mid.to_string(), edge.to_string()],
        "{page}"
    );
    assert_eq!(page["total"], 3);
    let d: Vec<i64> = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|p| p["distance_m"].as_i64().expect("distance"))
        .collect();
    assert!(
        (200..250).contains(&d[0]) && (1_050..1_200).contains(&d[1]),
        "{d:?}"
    );

    let wide = app
        .get("/api/v1/pharmacies?lat=12.9716&lng=77.5946&radius_m=1000000")
        .await
        .json();
    assert_eq!(
        wide["total"], 4,
        "radius clamped to 50 km still reaches 33 km: {wide}"
    );
    assert_eq!(wide["items"][3]["id"], far.to_string());
    let tight = app
        .get("/api/v1/pharmacies?lat=12.9716&lng=77.5946&radius_m=500")
        .await
        .json();
    assert_eq!(tight["total"], 1);
    let all = app.get("/api/v1/pharmacies").await.json();
    assert_eq!(all["total"], 4);
    app.get(&format!("/api/v1/pharmacies/{}", Uuid::now_v7()))
        .await
        .assert_problem(404, "not_found");
}

async fn nearby_search_can_require_a_medicine(app: TestApp) {
    let admin = app.admin_token().await;
    let insulin = app
        .create_medicine(&admin, "Insulin Glargine", None, None, 90000)
        .await;
    let a = app.create_pharmacy(&admin, "A", 12.9736, 77.5946).await;
    let b = app.create_pharmacy(&admin, "B", 12.9816, 77.5946).await;
    let c = app.create_pharmacy(&admin, "C", 12.9916, 77.5946).await;
    assert_eq!(app.put_stock(&admin, a, &[(insulin, 0)]).await.status, 200);
    assert_eq!(app.put_stock(&admin, b, &[(insulin, 3)]).await.status, 200);
    assert_eq!(app.put_stock(&admin, c, &[(insulin, 1)]).await.status, 200);
    let page = app
        .get(&format!(
            "/api/v1/pharmacies?lat=12.9716&lng=77.5946&medicine_id={insulin}"
        ))
        .await
        .json();
    let ids: Vec<&str> = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|p| p["id"].as_str())
        .collect();
    assert_eq!(ids, vec![b.to_string(), c.to_string()], "{page}");
    let none = app
        .get(&format!(
            "/api/v1/pharmacies?lat=12.9716&lng=77.5946&medicine_id={}",
            Uuid::now_v7()
        ))
        .await
        .json();
    assert_eq!(none["total"], 0);
}

async fn nearby_search_validates_its_query(app: TestApp) {
    for (query, field) in [
        ("lat=91&lng=0", "lat"),
        ("lat=abc&lng=0", "lat"),
        ("lat=NaN&lng=0", "lat"),
        ("lat=0&lng=200", "lng"),
        ("lat=0", "lng"),
        ("lng=0", "lat"),
        ("lat=0&lng=0&radius_m=-5", "radius_m"),
        ("lat=0&lng=0&medicine_id=nope", "medicine_id"),
        ("lat=0&lng=0&per_page=0", "per_page"),
    ] {
        let body = app
            .get(&format!("/api/v1/pharmacies?{query}"))
            .await
            .assert_problem(422, "validation_failed");
        assert_eq!(body["errors"][0]["field"], field, "{query}: {body}");
    }
}

async fn stock_is_set_by_admins_and_own_staff_only(app: TestApp) {
    let admin = app.admin_token().await;
    let med = app
        .create_medicine(&admin, "Metformin 500 mg Tablet", None, None, 400)
        .await;
    let mine = app.create_pharmacy(&admin, "Mine", 12.97, 77.59).await;
    let other = app.create_pharmacy(&admin, "Other", 12.98, 77.59).await;
    let res = app
        .post_auth(
            "/api/v1/admin/users",
            &admin,
            &json!({"name": "Staff", "email": "staff@example.com", "password": "staff password",
                    "role": "pharmacy", "pharmacy_id": mine}),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.text());
    assert_eq!(res.json()["user"]["pharmacy_id"], mine.to_string());
    let staff = app.login("staff@example.com", "staff password").await["access_token"]
        .as_str()
        .expect("token")
        .to_owned();
    let (_, customer) = app.user_token("customer").await;

    let res = app.put_stock(&admin, mine, &[(med, 40)]).await;
    assert_eq!(res.status, 200, "{}", res.text());
    let page = res.json();
    assert_eq!(page["items"][0]["quantity"], 40);
    assert_eq!(page["items"][0]["reserved"], 0);
    assert_eq!(app.put_stock(&staff, mine, &[(med, 35)]).await.status, 200);
    assert_eq!(app.stock_of(mine, med).await, (35, 0));
    app.put_stock(&staff, other, &[(med, 1)])
        .await
        .assert_problem(403, "forbidden");
    app.put_stock(&customer, mine, &[(med, 1)])
        .await
        .assert_problem(403, "forbidden");
    app.request(
        "PUT",
        &format!("/api/v1/pharmacies/{mine}/stock"),
        None,
        Some(&json!({"items": []})),
    )
    .await
    .assert_problem(401, "unauthorized");
    app.put_stock(&admin, Uuid::now_v7(), &[(med, 1)])
        .await
        .assert_problem(404, "not_found");
    let stock = app
        .get(&format!("/api/v1/pharmacies/{mine}/stock"))
        .await
        .json();
    assert_eq!(stock["total"], 1);
    app.get(&format!("/api/v1/pharmacies/{}/stock", Uuid::now_v7()))
        .await
        .assert_problem(404, "not_found");
}

async fn stock_validation(app: TestApp) {
    let admin = app.admin_token().await;
    let med = app
        .create_medicine(&admin, "Losartan", None, None, 400)
        .await;
    let p = app.create_pharmacy(&admin, "P", 12.97, 77.59).await;
    let body = app
        .put_stock(&admin, p, &[(med, -1), (Uuid::now_v7(), 5)])
        .await
        .assert_problem(422, "validation_failed");
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["field"].as_str())
        .collect();
    assert_eq!(
        fields,
        vec!["items[0].quantity", "items[1].medicine_id"],
        "{body}"
    );
    app.put_stock(&admin, p, &[])
        .await
        .assert_problem(422, "validation_failed");
    app.put_stock(&admin, p, &[(med, 1), (med, 2)])
        .await
        .assert_problem(422, "validation_failed");
    assert_eq!(app.stock_of(p, med).await, (0, 0), "nothing was written");
}
