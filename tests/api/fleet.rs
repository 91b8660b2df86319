//! `/v1/fleet`, `?health=`, the health gauge and the tenant's ETag, on tenants whose
//! health snapshots are written as the worker writes them.

use reqwest::{header, Method};
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::helpers::{header_value, problem, TestApp};

/// Sets what the worker would have recorded of a tenant.
async fn set(app: &TestApp, name: &str, assignments: &str, health: Value) {
    sqlx::query(&format!(
        "UPDATE tenants SET health = $2, {assignments} WHERE name = $1 AND status <> 'deleted'"
    ))
    .bind(name)
    .bind(health)
    .execute(&app.pool)
    .await
    .unwrap();
}

fn health(status: &str, reason: &str, since: &str) -> Value {
    json!({
        "status": status,
        "reason": reason,
        "since": since,
        "observed_at": "2026-12-03T10:00:00Z",
        "tasks": {"desired": 2, "running": 2, "pending": 0},
    })
}

/// Waits until the API serves `name` with health `status` (its cache hears of the change).
/// The names a list request answers with.
async fn listed(app: &TestApp, query: &str) -> Vec<String> {
    let page: Value = app.get(query).await.json().await.unwrap();
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

async fn served_health(app: &TestApp, name: &str, status: &str) -> Value {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let t: Value = app
            .get(&format!("/v1/tenants/{name}"))
            .await
            .json()
            .await
            .unwrap();
        if t["health"]["status"] == status {
            return t;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name}: {}",
            t["health"]
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

#[sqlx::test]
async fn the_fleet_counts_every_status_and_health_and_lists_what_needs_attention(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    for name in [
        "california",
        "texas",
        "ohio",
        "idaho",
        "oregon",
        "maine",
        "utah",
    ] {
        app.create_ok(name).await;
    }
    let ready = "status = 'ready', observed_generation = generation";
    set(
        &app,
        "california",
        ready,
        health("healthy", "2 of 2 tasks running", "2026-12-01T00:00:00Z"),
    )
    .await;
    set(
        &app,
        "texas",
        ready,
        health(
            "degraded",
            "alarm humangov-texas-5xx-rate in ALARM",
            "2026-12-03T09:00:00Z",
        ),
    )
    .await;
    set(
        &app,
        "ohio",
        ready,
        health(
            "down",
            "no healthy target in targetgroup/humangov-ohio/1",
            "2026-12-03T08:00:00Z",
        ),
    )
    .await;
    set(
        &app,
        "idaho",
        "status = 'failed', last_error = 'deployment failed: tasks exit 1'",
        health(
            "down",
            "no task running (1 desired)",
            "2026-12-03T07:00:00Z",
        ),
    )
    .await;
    set(
        &app,
        "oregon",
        &format!("{ready}, paused_at = now() - interval '1 hour', paused_reason = 'state audit'"),
        health(
            "unknown",
            "paused: statehouse makes no AWS call for it",
            "2026-12-03T06:00:00Z",
        ),
    )
    .await;
    set(&app, "maine", "status = 'deleting', data_policy = 'retain', deletion_requested_at = now() - interval '20 minutes'", health("unknown", "being deleted", "2026-12-03T05:00:00Z")).await;

    let response = app.get("/v1/fleet").await;
    assert_eq!(response.status(), 200);
    let fleet: Value = response.json().await.unwrap();
    assert_eq!(fleet["tenants"], 7);
    assert_eq!(
        fleet["by_status"],
        json!({"pending": 1, "provisioning": 0, "ready": 4, "updating": 0, "failed": 1, "deleting": 1})
    );
    assert_eq!(
        fleet["by_health"],
        json!({"healthy": 1, "degraded": 1, "down": 2, "unknown": 3})
    );
    assert_eq!(
        fleet["cells"],
        json!([{"name": "cell-1", "capacity": 100, "used": 7, "free": 93}])
    );
    let attention: Vec<(String, String)> = fleet["attention"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["name"].as_str().unwrap().to_owned(),
                a["problem"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    };
    assert_eq!(
        attention,
        pairs(&[
            ("idaho", "failed"),
            ("ohio", "down"),
            ("texas", "degraded"),
            ("maine", "deleting"),
            ("oregon", "paused"),
        ])
    );
    let by_name = |name: &str| {
        fleet["attention"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(
        by_name("idaho")["reason"],
        "deployment failed: tasks exit 1"
    );
    assert_eq!(
        by_name("texas")["reason"],
        "alarm humangov-texas-5xx-rate in ALARM"
    );
    assert_eq!(by_name("texas")["since"], "2026-12-03T09:00:00Z");
    assert!(by_name("maine")["reason"]
        .as_str()
        .unwrap()
        .contains("deletion requested 20 min ago"));
    assert_eq!(by_name("oregon")["reason"], "paused: state audit");

    // A deletion under way for a short while is not a problem yet.
    set(
        &app,
        "maine",
        "deletion_requested_at = now() - interval '1 minute'",
        health("unknown", "being deleted", "2026-12-03T05:00:00Z"),
    )
    .await;
    let fleet: Value = app.get("/v1/fleet").await.json().await.unwrap();
    assert!(fleet["attention"]
        .as_array()
        .unwrap()
        .iter()
        .all(|a| a["name"] != "maine"));
    // A viewer may look too.
    let response = app.viewer(Method::GET, "/v1/fleet").send().await.unwrap();
    assert_eq!(response.status(), 200);
}

#[sqlx::test]
async fn tenants_are_listed_by_health_counted_on_metrics_and_their_etag_ignores_the_figures(
    pool: PgPool,
) {
    let app = TestApp::spawn(pool).await;
    for name in ["california", "texas", "ohio"] {
        app.create_ok(name).await;
    }
    let created: Value = app.get("/v1/tenants/ohio").await.json().await.unwrap();
    assert_eq!(
        created["health"],
        json!({"status": "unknown", "reason": "not observed yet"})
    );
    set(
        &app,
        "texas",
        "status = 'ready'",
        health("degraded", "2 of 3 tasks running", "2026-12-03T09:00:00Z"),
    )
    .await;
    set(
        &app,
        "california",
        "status = 'ready'",
        health("healthy", "2 of 2 tasks running", "2026-12-03T09:00:00Z"),
    )
    .await;

    assert_eq!(listed(&app, "/v1/tenants?health=degraded").await, ["texas"]);
    assert_eq!(
        listed(&app, "/v1/tenants?health=unknown&status=pending").await,
        ["ohio"]
    );
    let bad = app.get("/v1/tenants?health=sick").await;
    let body = problem(bad, 400, "bad-request").await;
    assert_eq!(body["errors"][0]["field"], "health", "{body}");

    let metrics = app.get("/metrics").await.text().await.unwrap();
    for line in [
        "statehouse_tenant_health{status=\"degraded\"} 1",
        "statehouse_tenant_health{status=\"healthy\"} 1",
        "statehouse_tenant_health{status=\"unknown\"} 1",
        "statehouse_tenant_health{status=\"down\"} 0",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }

    // New figures in the snapshot are not a change to the tenant: an If-Match read before
    // them still holds. A change of health status is.
    let tagged = served_health(&app, "california", "healthy").await;
    let etag = app.etag("california").await;
    let mut later = health("healthy", "3 of 3 tasks running", "2026-12-03T09:00:00Z");
    later["observed_at"] = json!("2026-12-03T10:01:00Z");
    set(&app, "california", "status = 'ready'", later).await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let t: Value = app
            .get("/v1/tenants/california")
            .await
            .json()
            .await
            .unwrap();
        if t["health"]["observed_at"] == "2026-12-03T10:01:00Z" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_ne!(tagged["health"]["observed_at"], "2026-12-03T10:01:00Z");
    assert_eq!(app.etag("california").await, etag);
    let patched = app
        .patch(
            "california",
            Some(&etag),
            json!({"display_name": "California DoE"}),
        )
        .await;
    assert_eq!(patched.status(), 200);
    let etag = header_value(&patched, header::ETAG.as_str());
    set(
        &app,
        "california",
        "status = 'ready'",
        health(
            "down",
            "no task running (3 desired)",
            "2026-12-03T10:02:00Z",
        ),
    )
    .await;
    served_health(&app, "california", "down").await;
    assert_ne!(app.etag("california").await, etag);
}

#[sqlx::test]
async fn a_live_health_read_without_aws_configured_says_so(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.create_ok("texas").await;
    let response = app.get("/v1/tenants/texas/health").await;
    let body = problem(response, 503, "not-configured").await;
    assert!(body["detail"].as_str().unwrap().contains("AWS"), "{body}");
    let missing = app.get("/v1/tenants/ohio/health").await;
    problem(missing, 404, "not-found").await;
    let bad = app.get("/v1/tenants/atlantis/health").await;
    assert_eq!(bad.status(), 422);
}
