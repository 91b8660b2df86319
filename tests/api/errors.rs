use reqwest::{header, Method};
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::helpers::{problem, TestApp};

#[sqlx::test]
async fn malformed_json_is_400(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let response = app
        .admin(Method::POST, "/v1/tenants")
        .header(header::CONTENT_TYPE, "application/json")
        .body("{\"name\": \"ohio\"")
        .send()
        .await
        .unwrap();
    problem(response, 400, "bad-request").await;
}

#[sqlx::test]
async fn a_body_that_is_not_json_is_415(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let mut request = app.admin(Method::POST, "/v1/tenants").body("name=ohio");
        if let Some(ct) = content_type {
            request = request.header(header::CONTENT_TYPE, ct);
        }
        problem(request.send().await.unwrap(), 415, "unsupported-media-type").await;
    }
    // JSON, but not a media type the operation documents.
    let merge_patch = app
        .admin(Method::POST, "/v1/tenants")
        .header(header::CONTENT_TYPE, "application/merge-patch+json")
        .body(r#"{"name": "ohio"}"#);
    problem(
        merge_patch.send().await.unwrap(),
        415,
        "unsupported-media-type",
    )
    .await;
    app.create_ok("ohio").await;
    let json_patch = app
        .admin(Method::PATCH, "/v1/tenants/ohio")
        .header(header::CONTENT_TYPE, "application/json-patch+json")
        .header(header::IF_MATCH, "*")
        .body(r#"[{"op": "replace", "path": "/display_name", "value": "x"}]"#);
    problem(
        json_patch.send().await.unwrap(),
        415,
        "unsupported-media-type",
    )
    .await;
}

#[sqlx::test]
async fn unknown_fields_and_wrong_types_are_422(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    for body in [
        json!({"name": "ohio", "owner": "me"}),
        json!({"name": "ohio", "spec": {"replicas": 2}}),
        json!({"name": 42}),
        json!({"name": "ohio", "spec": {"cpu": "lots"}}),
        json!({"name": "ohio", "spec": {"cpu": -256}}),
        json!({"name": "ohio", "spec": {"desired_count": 1e40}}),
        json!({"name": "ohio", "spec": {"env": {"A": 1}}}),
        json!({}),
        json!([1, 2]),
        json!("ohio"),
    ] {
        let response = app.create(body.clone()).await;
        assert_eq!(response.status(), 422, "{body}");
        problem(response, 422, "validation").await;
    }
}

#[sqlx::test]
async fn a_body_over_the_cap_is_413(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let huge = json!({"name": "ohio", "display_name": "x".repeat(200_000)});
    problem(app.create(huge).await, 413, "payload-too-large").await;
}

#[sqlx::test]
async fn bad_query_parameters_and_cursors_are_400_naming_the_parameter(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.create_ok("ohio").await;
    for query in [
        "limit=0",
        "limit=501",
        "limit=-1",
        "limit=abc",
        "status=sleeping",
        "colour=red",
        "cursor=%%%",
        "cursor=bm90LWEtY3Vyc29y",
        "cursor=",
        "cursor=AHwwMDAwMDAwMC0wMDAwLTAwMDAtMDAwMC0wMDAwMDAwMDAwMDA",
    ] {
        let response = app.get(&format!("/v1/tenants?{query}")).await;
        assert_eq!(response.status(), 400, "{query}");
        let p = problem(response, 400, "bad-request").await;
        let named = query.split('=').next().unwrap();
        assert_eq!(p["errors"][0]["field"], named, "{query}");
    }
    for query in ["limit=0", "cursor=bm9wZQ", "cursor=!!"] {
        problem(
            app.get(&format!("/v1/tenants/ohio/events?{query}")).await,
            400,
            "bad-request",
        )
        .await;
    }
    assert_eq!(app.get("/v1/tenants?limit=500").await.status(), 200);
}

#[sqlx::test]
async fn absurd_path_names_are_clear_errors_never_500(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let long = "a".repeat(10_000);
    let names = [
        "narnia",
        "CAL",
        "New-York",
        "%20ohio",
        "new%20york",
        "%00",
        "..%2F..%2Fetc%2Fpasswd",
        "%F0%9F%A6%80",
        "%FF%FE",
        "ohio%C0",
        "'%3B%20DROP%20TABLE%20tenants%3B--",
        long.as_str(),
    ];
    for name in names {
        for (method, path) in [
            (Method::GET, format!("/v1/tenants/{name}")),
            (Method::PATCH, format!("/v1/tenants/{name}")),
            (Method::DELETE, format!("/v1/tenants/{name}")),
            (Method::GET, format!("/v1/tenants/{name}/events")),
            (Method::POST, format!("/v1/tenants/{name}/reconcile")),
        ] {
            let response = app
                .admin(method.clone(), &path)
                .header(header::IF_MATCH, "*")
                .json(&json!({}))
                .send()
                .await
                .unwrap();
            let body = problem(response, 422, "validation").await;
            assert_eq!(body["errors"][0]["field"], "name", "{method} {path}");
            assert!(
                body["detail"].as_str().unwrap().len() < 400,
                "the detail stays short"
            );
        }
    }
}

#[sqlx::test]
async fn a_type_error_in_a_body_names_the_member_at_fault(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    for (body, field) in [
        (json!({"name": "ohio", "spec": {"cpu": "lots"}}), "spec.cpu"),
        (json!({"name": "ohio", "spec": {"cpu": -256}}), "spec.cpu"),
        (
            json!({"name": "ohio", "spec": {"desired_count": 1e40}}),
            "spec.desired_count",
        ),
        (
            json!({"name": "ohio", "spec": {"env": {"A": 1}}}),
            "spec.env.A",
        ),
        (
            json!({"name": "ohio", "spec": {"replicas": 2}}),
            "spec.replicas",
        ),
        (json!({"name": "ohio", "spec": ["humangov/app:1"]}), "spec"),
        (json!({"name": "ohio", "owner": "me"}), "owner"),
        (json!({"name": 42}), "name"),
        (json!({"display_name": "Ohio"}), "name"),
        (json!(["ohio", null, null]), "body"),
    ] {
        let p = problem(app.create(body.clone()).await, 422, "validation").await;
        assert_eq!(p["errors"][0]["field"], field, "{body}");
    }
}

#[sqlx::test]
async fn integers_written_with_a_zero_fraction_are_integers(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let created = app
        .create(json!({"name": "ohio", "spec": {"cpu": 512.0, "memory": 1024, "max_count": 4.0}}))
        .await;
    assert_eq!(created.status(), 202);
    let t: Value = created.json().await.unwrap();
    assert_eq!(
        (t["spec"]["cpu"].clone(), t["spec"]["max_count"].clone()),
        (json!(512), json!(4))
    );
}

#[sqlx::test]
async fn unknown_routes_and_methods_are_problems(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    problem(app.get("/v2/tenants").await, 404, "not-found").await;
    problem(app.get("/v1/tenants/ohio/secrets").await, 404, "not-found").await;
    problem(
        app.admin(Method::PUT, "/v1/tenants").send().await.unwrap(),
        405,
        "method-not-allowed",
    )
    .await;
}

#[sqlx::test]
async fn bad_idempotency_keys_are_400(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let long = "k".repeat(300);
    for key in ["", long.as_str(), "has space"] {
        let response = app
            .admin(Method::POST, "/v1/tenants")
            .header("Idempotency-Key", key)
            .json(&json!({"name": "ohio"}));
        let p = problem(response.send().await.unwrap(), 400, "bad-request").await;
        assert_eq!(p["errors"][0]["field"], "Idempotency-Key");
    }
    let listing: Value = app.get("/v1/tenants").await.json().await.unwrap();
    assert_eq!(listing["items"], json!([]));
}

#[sqlx::test]
async fn a_database_outage_is_a_503_problem(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    app.create_ok("ohio").await;
    pool.close().await;
    let response = app.get("/v1/tenants/ohio").await;
    assert!(response.headers().contains_key(header::RETRY_AFTER));
    problem(response, 503, "unavailable").await;
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    problem(ready, 503, "unavailable").await;
}
