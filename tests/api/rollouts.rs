//! `/v1/rollouts` and `/v1/fleet/defaults` without a worker: what is refused before
//! anything is stored, the plan, one active rollout per tenant, and a person's operations.

use reqwest::{header, Method};
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::helpers::{header_value, problem, TestApp};

async fn fleet(app: &TestApp, names: &[&str]) {
    for name in names {
        app.create_ok(name).await;
    }
}

async fn rollout(app: &TestApp, query: &str, body: Value) -> reqwest::Response {
    app.admin(Method::POST, &format!("/v1/rollouts{query}"))
        .json(&body)
        .send()
        .await
        .unwrap()
}

fn fields(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_owned())
        .collect()
}

async fn stored_rollouts(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM rollouts")
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

#[sqlx::test]
async fn every_way_a_rollout_is_wrong_is_refused_by_field_and_nothing_is_stored(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    fleet(&app, &["ohio", "texas"]).await;
    for (body, expected) in [
        (json!({"patch": {"cpu": 300}}), vec!["patch.cpu"]),
        // Fargate has no 256 CPU task with 8 GiB: no tenant's spec may hold it.
        (json!({"patch": {"memory": 8192}}), vec!["patch.memory"]),
        (json!({"patch": {}}), vec!["patch"]),
        (
            json!({"patch": {"app_image": "humangov/app:2"}, "strategy": {"waves": []}}),
            vec!["strategy.waves"],
        ),
        (
            json!({"patch": {"app_image": "humangov/app:2"}, "strategy": {"bake": "-5m", "canary": 0}}),
            vec!["strategy.bake"],
        ),
        (
            json!({"patch": {"app_image": "humangov/app:2"}, "strategy": {"canary": 0, "max_concurrent": 0}}),
            vec!["strategy.canary", "strategy.max_concurrent"],
        ),
        (
            json!({"patch": {"app_image": "humangov/app:2"}, "strategy": {"canary": 3}}),
            vec!["strategy.canary"],
        ),
        (
            json!({"patch": {"app_image": "humangov/app:2"}, "strategy": {"canary": ["narnia"]}}),
            vec!["strategy.canary[0]"],
        ),
        (
            json!({"patch": {"app_image": "humangov/app:2"}, "selector": {"only": ["ohio", "gondor"]}}),
            vec!["selector.only[1]"],
        ),
        (
            json!({"patch": {"app_image": "humangov/app:2"}, "selector": {"only": ["utah"]}}),
            vec!["selector.only[0]"],
        ),
        (
            json!({"patch": {"app_image": "humangov/app:2"}, "selector": {"cells": ["cell-9"]}}),
            vec!["selector.cells[0]"],
        ),
        (
            json!({"patch": {"app_image": "humangov/app:2"}, "selector": {"exclude": ["ohio", "texas"]}}),
            vec!["selector"],
        ),
        (
            json!({"patch": {"app_image": "humangov/app:2"}, "strategy": {"waves": [1, 5]}, "selector": {}}),
            vec![],
        ),
    ] {
        let response = rollout(&app, "", body.clone()).await;
        if expected.is_empty() {
            assert_eq!(response.status(), 201, "{body}");
            continue;
        }
        let p = problem(response, 422, "validation").await;
        assert_eq!(fields(&p), expected, "{body}: {p}");
    }
    assert_eq!(stored_rollouts(&app).await, 1, "only the last one adds up");
}

#[sqlx::test]
async fn a_dry_run_shows_the_plan_and_stores_nothing(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    fleet(&app, &["ohio", "texas", "utah", "iowa"]).await;
    sqlx::query("UPDATE tenants SET paused_at = now() WHERE name = 'iowa'")
        .execute(&app.pool)
        .await
        .unwrap();
    let body = json!({
        "patch": {"app_image": "humangov/app:1.6.0"},
        "strategy": {"canary": ["utah"], "waves": [1, "rest"]},
    });
    let response = rollout(&app, "?dry_run=true", body).await;
    assert_eq!(response.status(), 200);
    let plan: Value = response.json().await.unwrap();
    let wave = |i: usize| -> Vec<&str> {
        plan["waves"][i]["tenants"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect()
    };
    assert_eq!(wave(0), ["utah"]);
    assert_eq!(wave(1), ["ohio", "texas"]);
    assert_eq!(
        plan["waves"][1]["tenants"][0]["from"]["app_image"],
        "humangov/app:1.0.0"
    );
    assert_eq!(
        plan["waves"][1]["tenants"][0]["to"]["app_image"],
        "humangov/app:1.6.0"
    );
    assert_eq!(
        plan["skipped"],
        json!([{"name": "iowa", "reason": "paused"}])
    );
    assert_eq!(plan["strategy"]["max_failures"], 0);
    assert_eq!(plan["strategy"]["on_failure"], "rollback");
    assert_eq!(stored_rollouts(&app).await, 0);
    let untouched: i64 = sqlx::query_scalar("SELECT max(generation) FROM tenants")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(untouched, 1);
}

#[sqlx::test]
async fn a_tenant_is_in_one_active_rollout_and_a_viewer_may_only_read(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    fleet(&app, &["ohio", "texas"]).await;
    let body = json!({"patch": {"app_image": "humangov/app:2"}, "selector": {"only": ["OH"]}});
    let response = app
        .viewer(Method::POST, "/v1/rollouts")
        .json(&body)
        .send()
        .await
        .unwrap();
    problem(response, 403, "forbidden").await;
    let response = rollout(&app, "", body.clone()).await;
    assert_eq!(response.status(), 201);
    let location = header_value(&response, header::LOCATION.as_str());
    let created: Value = response.json().await.unwrap();
    assert_eq!(
        location,
        format!("/v1/rollouts/{}", created["id"].as_str().unwrap())
    );
    assert_eq!(created["state"], "running");
    assert_eq!(created["tenants"][0]["name"], "ohio");
    assert_eq!(created["tenants"][0]["state"], "pending");
    assert_eq!(created["tenants"][0]["planned_generation"], 1);

    let overlapping = json!({"patch": {"app_image": "humangov/app:3"}});
    let p = problem(rollout(&app, "", overlapping).await, 409, "conflict").await;
    assert!(p["detail"].as_str().unwrap().contains("ohio"), "{p}");
    // A rollout of the other tenants only is fine.
    let other =
        json!({"patch": {"app_image": "humangov/app:3"}, "selector": {"exclude": ["ohio"]}});
    assert_eq!(rollout(&app, "", other).await.status(), 201);

    let listed: Value = app
        .viewer(Method::GET, "/v1/rollouts?state=running")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), 2);
    assert_eq!(listed["items"][1]["progress"], json!({"pending": 1}));
    let events: Value = app
        .get(&format!("{location}/events"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(events["items"][0]["action"], "rollout.created");
    assert_eq!(events["items"][0]["actor"], "key:ops");
    assert_eq!(events["items"][0]["trigger"], "user");
}

#[sqlx::test]
async fn a_person_pauses_resumes_and_aborts_and_what_makes_no_sense_is_a_409(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    fleet(&app, &["ohio"]).await;
    let created: Value = rollout(&app, "", json!({"patch": {"app_image": "humangov/app:2"}}))
        .await
        .json()
        .await
        .unwrap();
    let path = format!("/v1/rollouts/{}", created["id"].as_str().unwrap());
    problem(
        app.post(&format!("{path}/resume"), None).await,
        409,
        "conflict",
    )
    .await;
    problem(
        app.post(&format!("{path}/promote"), None).await,
        409,
        "conflict",
    )
    .await;
    let paused: Value = app
        .post(&format!("{path}/pause"), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(paused["state"], "paused");
    assert!(paused["reason"].as_str().unwrap().contains("key ops"));
    let resumed: Value = app
        .post(&format!("{path}/resume"), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(resumed["state"], "running");
    problem(
        app.post(&format!("{path}/abort"), Some(json!({}))).await,
        422,
        "validation",
    )
    .await;
    let aborted: Value = app
        .post(&format!("{path}/abort"), Some(json!({"rollback": false})))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(aborted["state"], "aborted");
    assert_eq!(aborted["tenants"][0]["state"], "cancelled");
    assert!(aborted["finished_at"].is_string());
    problem(
        app.post(&format!("{path}/pause"), None).await,
        409,
        "conflict",
    )
    .await;
    // Its tenant is free for the next one.
    let next = rollout(&app, "", json!({"patch": {"app_image": "humangov/app:3"}})).await;
    assert_eq!(next.status(), 201);
    let actions: Vec<String> = app
        .get(&format!("{path}/events"))
        .await
        .json::<Value>()
        .await
        .unwrap()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        actions,
        [
            "rollout.created",
            "rollout.paused",
            "rollout.resumed",
            "rollout.aborted"
        ]
    );
    problem(app.get("/v1/rollouts/not-a-uuid").await, 422, "validation").await;
    let missing = "/v1/rollouts/0190a0a0-0000-7000-8000-000000000000";
    problem(app.get(missing).await, 404, "not-found").await;
}

#[sqlx::test]
async fn the_fleet_defaults_seed_from_configuration_and_new_tenants_take_them(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let response = app.get("/v1/fleet/defaults").await;
    assert_eq!(response.status(), 200);
    let etag = header_value(&response, header::ETAG.as_str());
    let defaults: Value = response.json().await.unwrap();
    assert_eq!(defaults["spec"]["app_image"], "humangov/app:1.0.0");
    assert_eq!(defaults["updated_by"], "configuration");

    let patch = |tag: Option<&str>, body: Value| {
        let mut r = app
            .admin(Method::PATCH, "/v1/fleet/defaults")
            .header(header::CONTENT_TYPE, "application/merge-patch+json")
            .body(body.to_string());
        if let Some(tag) = tag {
            r = r.header(header::IF_MATCH, tag);
        }
        r.send()
    };
    problem(
        patch(None, json!({"app_image": "humangov/app:1.1.0"}))
            .await
            .unwrap(),
        428,
        "precondition-required",
    )
    .await;
    problem(
        patch(
            Some("\"stale\""),
            json!({"app_image": "humangov/app:1.1.0"}),
        )
        .await
        .unwrap(),
        412,
        "precondition-failed",
    )
    .await;
    let p = problem(
        patch(Some(&etag), json!({"memory": 8192})).await.unwrap(),
        422,
        "validation",
    )
    .await;
    assert_eq!(fields(&p), ["spec.memory"]);
    let changed = patch(Some(&etag), json!({"app_image": "humangov/app:1.1.0"}))
        .await
        .unwrap();
    assert_eq!(changed.status(), 200);
    let changed: Value = changed.json().await.unwrap();
    assert_eq!(changed["updated_by"], "key:ops");

    let created = app.create_ok("ohio").await;
    assert_eq!(created["spec"]["app_image"], "humangov/app:1.1.0");
    let viewer = app
        .viewer(Method::PATCH, "/v1/fleet/defaults")
        .header(header::IF_MATCH, "*")
        .json(&json!({"cpu": 512}))
        .send()
        .await
        .unwrap();
    problem(viewer, 403, "forbidden").await;
}

#[sqlx::test]
async fn a_rollout_with_nothing_to_change_succeeds_at_once_and_sets_the_defaults(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    fleet(&app, &["ohio"]).await;
    // The tenant already runs the image (it took the defaults).
    let body = json!({"patch": {"app_image": "humangov/app:1.0.0", "cpu": 512, "memory": 1024}});
    let first: Value = rollout(&app, "", body).await.json().await.unwrap();
    assert_eq!(first["state"], "running");
    sqlx::query("UPDATE tenants SET spec = spec || '{\"cpu\": 512, \"memory\": 1024}'")
        .execute(&app.pool)
        .await
        .unwrap();
    let path = format!("/v1/rollouts/{}", first["id"].as_str().unwrap());
    app.post(&format!("{path}/abort"), Some(json!({"rollback": false})))
        .await;
    let again = rollout(&app, "", json!({"patch": {"cpu": 512, "memory": 1024}})).await;
    assert_eq!(again.status(), 201);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["state"], "succeeded");
    assert_eq!(
        again["skipped"],
        json!([{"name": "ohio", "reason": "at_target"}])
    );
    let defaults: Value = app.get("/v1/fleet/defaults").await.json().await.unwrap();
    assert_eq!(defaults["spec"]["cpu"], 512);
}

#[sqlx::test]
async fn a_retried_create_with_its_idempotency_key_replays_the_first_rollout(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    fleet(&app, &["ohio"]).await;
    let send = |body: Value| {
        app.admin(Method::POST, "/v1/rollouts")
            .header("Idempotency-Key", "ship-1.6.0")
            .json(&body)
            .send()
    };
    let body = json!({"patch": {"app_image": "humangov/app:1.6.0"}});
    let first = send(body.clone()).await.unwrap();
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    let again = send(body).await.unwrap();
    assert_eq!(again.status(), 201);
    assert_eq!(header_value(&again, "idempotent-replayed"), "true");
    assert_eq!(again.json::<Value>().await.unwrap()["id"], first["id"]);
    assert_eq!(stored_rollouts(&app).await, 1);
    let other = send(json!({"patch": {"app_image": "humangov/app:1.7.0"}}))
        .await
        .unwrap();
    problem(other, 422, "idempotency-key-reused").await;
}
