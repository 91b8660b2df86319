use reqwest::{header, Method};
use serde_json::{json, Value};
use sqlx::PgPool;
use statehouse::db;

use crate::helpers::{header_value, problem, TestApp, BOOTSTRAP_TOKEN, CACHE_TTL};

/// Every operation under /v1 that the OpenAPI document lists, with a concrete path.
fn v1_operations() -> Vec<(Method, String)> {
    let doc = serde_json::to_value(statehouse::http::openapi::document()).unwrap();
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        if !path.starts_with("/v1") {
            continue;
        }
        for method in item.as_object().unwrap().keys() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            ops.push((method, path.replace("{name}", "california")));
        }
    }
    assert!(ops.len() >= 6, "found {ops:?}");
    ops
}

#[sqlx::test]
async fn every_v1_route_needs_a_key(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    for (method, path) in v1_operations() {
        let response = app
            .client
            .request(method.clone(), app.url(&path))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            header_value(&response, "www-authenticate"),
            r#"Bearer realm="statehouse""#,
            "{method} {path}"
        );
        problem(response, 401, "unauthorized").await;
    }
}

#[sqlx::test]
async fn bad_keys_and_malformed_headers_are_401(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    for value in [
        "Bearer shk_not-a-real-key",
        "Basic b3BzOnNlY3JldA==",
        "Bearer",
        "Bearer    ",
        "shk_abc",
    ] {
        let response = app
            .client
            .get(app.url("/v1/tenants"))
            .header(header::AUTHORIZATION, value)
            .send()
            .await
            .unwrap();
        problem(response, 401, "unauthorized").await;
    }
    let lower = app
        .client
        .get(app.url("/v1/tenants"))
        .header(header::AUTHORIZATION, format!("bearer {}", app.admin));
    assert_eq!(
        lower.send().await.unwrap().status(),
        200,
        "the scheme is case-insensitive"
    );
}

#[sqlx::test]
async fn a_viewer_can_read_but_not_write(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.create_ok("california").await;
    assert_eq!(
        app.viewer(Method::GET, "/v1/tenants")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        app.viewer(Method::GET, "/v1/tenants/california")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let writes = [
        app.viewer(Method::POST, "/v1/tenants")
            .json(&json!({"name": "texas"})),
        app.viewer(Method::PATCH, "/v1/tenants/california")
            .header(header::IF_MATCH, "*")
            .json(&json!({})),
        app.viewer(Method::DELETE, "/v1/tenants/california"),
    ];
    for request in writes {
        let body = problem(request.send().await.unwrap(), 403, "forbidden").await;
        assert!(body["detail"].as_str().unwrap().contains("auditor"));
    }
    assert_eq!(
        app.get("/v1/tenants/california")
            .await
            .json::<Value>()
            .await
            .unwrap()["status"],
        "pending"
    );
}

#[sqlx::test]
async fn a_revoked_key_stops_working_long_before_the_cache_would_forget_it(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    // Used, so the API process holds it as valid for CACHE_TTL.
    assert_eq!(app.get("/v1/tenants").await.status(), 200);
    assert_eq!(app.get("/v1/tenants").await.status(), 200);
    let revoked = std::time::Instant::now();
    assert!(db::keys::revoke(&pool, "ops").await.unwrap());
    // The revocation is announced as it commits; the process forgets the key on hearing it.
    loop {
        let response = app.get("/v1/tenants").await;
        if response.status() == 401 {
            problem(response, 401, "unauthorized").await;
            break;
        }
        assert!(
            revoked.elapsed() < CACHE_TTL / 2,
            "the revoked key still worked after {:?}",
            revoked.elapsed()
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let other = TestApp::create_key(&pool, "ops", statehouse::auth::Role::Admin).await;
    let with_new = app.client.get(app.url("/v1/tenants")).bearer_auth(other);
    assert_eq!(
        with_new.send().await.unwrap().status(),
        200,
        "a new key of that name works"
    );
}

#[sqlx::test]
async fn the_bootstrap_token_acts_as_an_admin_named_bootstrap(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let response = app
        .client
        .post(app.url("/v1/tenants"))
        .bearer_auth(BOOTSTRAP_TOKEN)
        .json(&json!({"name": "maryland"}));
    assert_eq!(response.send().await.unwrap().status(), 202);
    let events = app.events("maryland").await;
    assert_eq!(events["items"][0]["actor"], "key:bootstrap");
}

#[sqlx::test]
async fn only_a_hash_of_each_key_is_stored(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let dump: Vec<String> = sqlx::query_scalar("SELECT row_to_json(k)::text FROM api_keys k")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(dump.len(), 2);
    for row in dump {
        assert!(
            !row.contains(&app.admin) && !row.contains(&app.viewer),
            "a token is stored in clear: {row}"
        );
    }
}

#[sqlx::test]
async fn probes_and_docs_need_no_key(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    for path in ["/healthz", "/readyz", "/metrics", "/openapi.json", "/docs/"] {
        assert_eq!(
            app.client.get(app.url(path)).send().await.unwrap().status(),
            200,
            "{path}"
        );
    }
}
