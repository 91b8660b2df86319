use serde_json::Value;
use sqlx::PgPool;

use crate::helpers::TestApp;

#[test]
fn the_committed_openapi_document_matches_the_code() {
    let generated = statehouse::http::openapi::document()
        .to_pretty_json()
        .unwrap();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed.trim_end() == generated.trim_end(),
        "openapi/openapi.json is out of date: run `make openapi` (statehouse openapi > openapi/openapi.json) and commit it"
    );
}

#[test]
fn the_document_describes_bearer_auth_and_problem_responses() {
    let doc = serde_json::to_value(statehouse::http::openapi::document()).unwrap();
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let create = &doc["paths"]["/v1/tenants"]["post"];
    assert_eq!(create["security"][0]["bearer"], serde_json::json!([]));
    assert!(create["responses"]["409"]["content"]["application/problem+json"].is_object());
    for schema in [
        "Tenant",
        "SpecDoc",
        "SpecInput",
        "Problem",
        "Event",
        "TenantStatus",
    ] {
        assert!(
            doc["components"]["schemas"][schema].is_object(),
            "schema {schema}"
        );
    }
}

#[sqlx::test]
async fn swagger_ui_is_served_with_its_assets_built_in(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let served: Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // The committed document, with the configured cells listed for a create's `cell`.
    let expected = statehouse::http::openapi::document_for(
        statehouse::domain::spec::SpecLimits {
            max_task_count: crate::helpers::MAX_TASKS,
        },
        &["cell-1".to_owned()],
    );
    assert_eq!(served, serde_json::to_value(expected).unwrap());
    assert_eq!(
        served["components"]["schemas"]["CreateTenant"]["properties"]["cell"]["enum"],
        serde_json::json!(["cell-1"])
    );
    let page = app
        .client
        .get(app.url("/docs/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("swagger-ui"));
    let bundle = app
        .client
        .get(app.url("/docs/swagger-ui-bundle.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(bundle.status(), 200);
    assert!(
        bundle.bytes().await.unwrap().len() > 100_000,
        "the bundle is served locally, not from a CDN"
    );
    let init = app
        .client
        .get(app.url("/docs/swagger-initializer.js"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(init.contains("/openapi.json") && init.contains("\"persistAuthorization\": true"));
}
