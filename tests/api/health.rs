use reqwest::Method;
use serde_json::Value;
use sqlx::PgPool;

use crate::helpers::{header_value, TestApp};

#[sqlx::test]
async fn healthz_and_readyz_answer_when_the_database_is_migrated(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let health: Value = app
        .client
        .get(app.url("/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    let ready: Value = app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["status"], "ready");
}

#[sqlx::test]
async fn readyz_fails_when_a_migration_is_missing(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    sqlx::query("DELETE FROM _sqlx_migrations")
        .execute(&pool)
        .await
        .unwrap();
    let response = app.client.get(app.url("/readyz")).send().await.unwrap();
    crate::helpers::problem(response, 503, "unavailable").await;
    sqlx::query("DROP TABLE _sqlx_migrations")
        .execute(&pool)
        .await
        .unwrap();
    let response = app.client.get(app.url("/readyz")).send().await.unwrap();
    crate::helpers::problem(response, 503, "unavailable").await;
}

#[sqlx::test]
async fn metrics_count_requests_by_route_and_status_and_tenants_by_status(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.create_ok("virginia").await;
    app.create_ok("vermont").await;
    app.delete("/v1/tenants/vermont").await;
    app.get("/v1/tenants/narnia").await;
    for n in 0..3 {
        let method = reqwest::Method::from_bytes(format!("PROBE{n}").as_bytes()).unwrap();
        app.client
            .request(method, app.url("/healthz"))
            .send()
            .await
            .unwrap();
    }
    let response = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert!(header_value(&response, "content-type").starts_with("application/openmetrics-text"));
    let text = response.text().await.unwrap();
    for line in [
        r#"statehouse_http_requests_total{method="POST",route="/v1/tenants",status="202"} 2"#,
        r#"statehouse_http_requests_total{method="GET",route="/v1/tenants/{name}",status="422"} 1"#,
        r#"statehouse_http_request_duration_seconds_count{method="POST",route="/v1/tenants",status="202"} 2"#,
        r#"statehouse_tenants{status="pending"} 1"#,
        r#"statehouse_tenants{status="deleting"} 1"#,
        r#"statehouse_tenants{status="ready"} 0"#,
        r#"statehouse_http_requests_total{method="OTHER",route="/healthz",status="405"} 3"#,
    ] {
        assert!(text.contains(line), "missing `{line}` in:\n{text}");
    }
    assert!(
        !text.contains("PROBE"),
        "arbitrary methods must not become label values"
    );
}

#[sqlx::test]
async fn every_response_carries_a_request_id_and_a_given_one_is_kept(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let generated = app.get("/v1/tenants").await;
    assert_eq!(header_value(&generated, "x-request-id").len(), 36);
    let given = app
        .admin(Method::GET, "/v1/tenants/narnia")
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(header_value(&given, "x-request-id"), "trace-me-42");
}

#[sqlx::test]
async fn a_panic_is_a_500_problem_and_is_counted(pool: PgPool) {
    async fn boom() -> &'static str {
        panic!("a handler bug")
    }
    let app = TestApp::spawn_router(
        pool,
        |state| {
            statehouse::http::with_middleware(
                axum::Router::new().route("/boom", axum::routing::get(boom)),
                state,
            )
        },
        crate::helpers::settings(),
        crate::helpers::QUEUE_TIMEOUT,
    )
    .await;
    let response = app.client.get(app.url("/boom")).send().await.unwrap();
    crate::helpers::problem(response, 500, "internal").await;
    let rendered = app.metrics.render();
    let line = r#"statehouse_http_requests_total{method="GET",route="/boom",status="500"} 1"#;
    assert!(rendered.contains(line), "missing `{line}` in:\n{rendered}");
}
