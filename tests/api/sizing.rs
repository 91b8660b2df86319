//! Rightsizing at the API: `spec.sizing` checked like the rest of the spec, a person
//! applying a recommendation, and the fleet's sizes and costs. The recommendations are
//! written as the worker writes them (tests/reconcile/sizing.rs makes them from metrics).

use chrono::Utc;
use reqwest::Method;
use serde_json::{json, Value};
use sqlx::PgPool;
use statehouse::{
    db,
    domain::{spec::sizing::SizeDoc, state::StateSlug},
    sizing::{
        Direction, Evidence, MonthlyCost, Prices, Recommendation, RecommendationStatus, Sizing,
        Trigger,
    },
};

use crate::helpers::{header_value, problem, settings, TestApp};

async fn fields(response: reqwest::Response) -> Vec<String> {
    let body = problem(response, 422, "validation").await;
    body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_owned())
        .collect()
}

#[sqlx::test]
async fn sizing_bounds_are_checked_like_the_rest_of_the_spec(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    for (sizing, field) in [
        (
            json!({"min": {"cpu": 4096, "memory": 8192}, "max": {"cpu": 1024, "memory": 8192}}),
            "spec.sizing.min.cpu",
        ),
        (
            json!({"min": {"cpu": 1024, "memory": 8192}, "max": {"cpu": 2048, "memory": 4096}}),
            "spec.sizing.min.memory",
        ),
        (
            json!({"max": {"cpu": 256, "memory": 4096}}),
            "spec.sizing.max.memory",
        ),
        (
            json!({"min": {"cpu": 300, "memory": 512}}),
            "spec.sizing.min.cpu",
        ),
        (json!({"mode": "sometimes"}), "spec.sizing.mode"),
        (json!({"min": [256, 512]}), "spec.sizing.min"),
        (
            json!({"max": {"cpu": 256, "memory": 512, "gpus": 1}}),
            "spec.sizing.max.gpus",
        ),
    ] {
        let response = app
            .create(json!({"name": "texas", "spec": {"sizing": sizing}}))
            .await;
        assert_eq!(fields(response).await, [field], "{sizing}");
    }
    let created: Value = app
        .create(json!({"name": "texas", "spec": {"sizing": {"mode": "auto", "max": {"cpu": 2048, "memory": 8192}}}}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        created["spec"]["sizing"],
        json!({"mode": "auto", "min": {"cpu": 256, "memory": 512}, "max": {"cpu": 2048, "memory": 8192}})
    );

    // A merge patch reaches into each bound; null restores the default.
    let patched: Value = app
        .patch(
            "texas",
            Some("*"),
            json!({"spec": {"sizing": {"max": {"memory": 4096}}}}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        patched["spec"]["sizing"]["max"],
        json!({"cpu": 2048, "memory": 4096})
    );
    assert_eq!(patched["generation"], 2);
    let reset: Value = app
        .patch(
            "texas",
            Some("*"),
            json!({"spec": {"sizing": {"max": null, "mode": null}}}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        reset["spec"]["sizing"]["max"],
        json!({"cpu": 16384, "memory": 122880})
    );
    assert_eq!(reset["spec"]["sizing"]["mode"], "recommend");
    for (patch, field) in [
        (json!({"max": {"memory": 3000}}), "spec.sizing.max.memory"),
        (json!({"min": {"cpu": 100}}), "spec.sizing.min.cpu"),
        (
            json!({"min": {"cpu": 512, "memory": 1024}, "max": {"cpu": 256, "memory": 1024}}),
            "spec.sizing.min.cpu",
        ),
    ] {
        let response = app
            .patch("texas", Some("*"), json!({"spec": {"sizing": patch}}))
            .await;
        assert_eq!(fields(response).await, [field], "{patch}");
    }
    // A rollout's patch names the member by its place in the rollout.
    let response = app
        .post(
            "/v1/rollouts",
            Some(json!({"patch": {"sizing": {"min": {"cpu": 4096, "memory": 8192}, "max": {"cpu": 1024, "memory": 2048}}}})),
        )
        .await;
    let named = fields(response).await;
    assert!(
        named.contains(&"patch.sizing.min.cpu".to_owned()),
        "{named:?}"
    );
}

fn recommendation(current: (u32, u32), to: Option<(u32, u32)>, tasks: u32) -> Recommendation {
    let size = |(cpu, memory)| SizeDoc { cpu, memory };
    let direction = match to {
        Some(t) if t.0 > current.0 || t.1 > current.1 => Direction::Up,
        Some(t) if t != current => Direction::Down,
        _ => Direction::None,
    };
    Recommendation {
        status: if to.is_some() {
            RecommendationStatus::Recommended
        } else {
            RecommendationStatus::NotEnoughData
        },
        direction,
        cpu: to.map(|t| t.0),
        memory: to.map(|t| t.1),
        current: size(current),
        trigger: Trigger::Metrics,
        reason: if to.is_some() {
            "upsize: CPU p90 250 units".into()
        } else {
            "not enough data: 6.0 h of metrics".into()
        },
        evidence: Evidence {
            cpu_samples: 2880,
            memory_samples: 2880,
            ..Evidence::default()
        },
        computed_at: Utc::now(),
        monthly_cost: MonthlyCost {
            currency: "USD".into(),
            tasks,
            current: 0.0,
            recommended: None,
        },
    }
}

/// Writes `rec` on the tenant, as the worker does.
async fn recommend(app: &TestApp, name: &str, rec: Recommendation) {
    let t = db::tenants::find_latest(&app.pool, StateSlug::parse(name).unwrap())
        .await
        .unwrap()
        .unwrap();
    let sizing = Sizing {
        recommendation: Some(rec),
        action: Some("recommend mode: a person applies it".into()),
        ..t.sizing
    };
    let mut conn = app.pool.acquire().await.unwrap();
    db::sizing::set(&mut conn, t.id, &sizing).await.unwrap();
}

async fn apply(app: &TestApp, name: &str) -> reqwest::Response {
    app.post(&format!("/v1/tenants/{name}/sizing/apply"), None)
        .await
}

async fn tenant(app: &TestApp, name: &str) -> Value {
    app.admin(Method::GET, &format!("/v1/tenants/{name}"))
        .header("cache-control", "no-cache")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[sqlx::test]
async fn a_person_applies_a_recommendation_and_is_refused_when_there_is_nothing_to_apply(
    pool: PgPool,
) {
    let app = TestApp::spawn(pool).await;
    app.create_ok("texas").await;
    let none = problem(apply(&app, "texas").await, 409, "conflict").await;
    assert!(
        none["detail"]
            .as_str()
            .unwrap()
            .contains("no recommendation"),
        "{none}"
    );

    recommend(&app, "texas", recommendation((256, 512), None, 1)).await;
    let thin = problem(apply(&app, "texas").await, 409, "conflict").await;
    assert!(
        thin["detail"].as_str().unwrap().contains("not enough data"),
        "{thin}"
    );

    // The figures behind a recommendation change each run without changing the ETag; the
    // recommended size does change it.
    recommend(
        &app,
        "texas",
        recommendation((256, 512), Some((512, 1024)), 2),
    )
    .await;
    let etag = app.etag("texas").await;
    recommend(
        &app,
        "texas",
        recommendation((256, 512), Some((512, 1024)), 2),
    )
    .await;
    assert_eq!(app.etag("texas").await, etag);
    recommend(
        &app,
        "texas",
        recommendation((256, 512), Some((512, 2048)), 2),
    )
    .await;
    assert_ne!(app.etag("texas").await, etag);
    recommend(
        &app,
        "texas",
        recommendation((256, 512), Some((512, 1024)), 2),
    )
    .await;

    let viewer = app
        .viewer(Method::POST, "/v1/tenants/texas/sizing/apply")
        .send()
        .await
        .unwrap();
    problem(viewer, 403, "forbidden").await;
    let stale = app
        .admin(Method::POST, "/v1/tenants/texas/sizing/apply")
        .header("if-match", "\"stale\"")
        .send()
        .await
        .unwrap();
    problem(stale, 412, "precondition-failed").await;

    let applied = apply(&app, "texas").await;
    assert_eq!(applied.status(), 200);
    assert!(header_value(&applied, "etag").starts_with('"'));
    let t: Value = applied.json().await.unwrap();
    assert_eq!(
        (t["spec"]["cpu"].clone(), t["spec"]["memory"].clone()),
        (json!(512), json!(1024))
    );
    assert_eq!(t["generation"], 2);
    assert_eq!(t["sizing"]["last_change"]["trigger"], "manual");
    assert_eq!(t["sizing"]["last_change"]["actor"], "key:ops");
    let events = app.events("texas").await;
    let latest = &events["items"][0];
    assert_eq!(
        (latest["action"].clone(), latest["actor"].clone()),
        (json!("tenant.updated"), json!("key:ops"))
    );
    assert_eq!(latest["details"]["sizing"]["evidence"]["cpu_samples"], 2880);
    assert_eq!(
        latest["details"]["sizing"]["from"],
        json!({"cpu": 256, "memory": 512})
    );

    // Again: it is the tenant's size already, so nothing changes.
    let again: Value = apply(&app, "texas").await.json().await.unwrap();
    assert_eq!(again["generation"], 2);

    // A recommendation made for another size than the tenant's now is not applied.
    recommend(
        &app,
        "texas",
        recommendation((256, 512), Some((1024, 2048)), 2),
    )
    .await;
    let old = problem(apply(&app, "texas").await, 409, "conflict").await;
    assert!(
        old["detail"]
            .as_str()
            .unwrap()
            .contains("computed for 256 CPU / 512 MiB"),
        "{old}"
    );

    // Nothing is applied with sizing off, nor during a rollout.
    app.create_ok("ohio").await;
    recommend(
        &app,
        "ohio",
        recommendation((256, 512), Some((512, 1024)), 1),
    )
    .await;
    let created = app
        .post("/v1/rollouts", Some(json!({"patch": {"app_image": "humangov/app:2.0.0"}, "selector": {"only": ["ohio"]}})))
        .await;
    assert_eq!(created.status(), 201);
    let busy = problem(apply(&app, "ohio").await, 409, "conflict").await;
    assert!(
        busy["detail"].as_str().unwrap().contains("rollout"),
        "{busy}"
    );
    app.patch(
        "texas",
        Some("*"),
        json!({"spec": {"sizing": {"mode": "off"}}}),
    )
    .await;
    let off = problem(apply(&app, "texas").await, 409, "conflict").await;
    assert!(
        off["detail"].as_str().unwrap().contains("sizing is off"),
        "{off}"
    );
    assert_eq!(tenant(&app, "texas").await["generation"], 3);
}

#[sqlx::test]
async fn the_fleet_sizing_prices_every_tenant_now_and_at_its_recommendation(pool: PgPool) {
    let mut s = settings();
    s.prices = Prices {
        vcpu_hour: 0.05,
        gb_hour: 0.005,
    };
    let app = TestApp::spawn_with(pool, s).await;
    app.create_ok("texas").await;
    app.create(json!({"name": "vermont", "spec": {"cpu": 1024, "memory": 4096}}))
        .await;
    app.create_ok("ohio").await;
    app.create(json!({"name": "utah", "spec": {"sizing": {"mode": "off"}}}))
        .await;
    recommend(
        &app,
        "texas",
        recommendation((256, 512), Some((512, 1024)), 2),
    )
    .await;
    recommend(
        &app,
        "vermont",
        recommendation((1024, 4096), Some((256, 512)), 1),
    )
    .await;
    recommend(&app, "ohio", recommendation((256, 512), None, 1)).await;

    let fleet: Value = app
        .viewer(Method::GET, "/v1/fleet/sizing")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // (vCPU × $0.05 + GB × $0.005) × 730 h × tasks:
    //   texas 256/512 × 2 = 21.90 → 512/1024 × 2 = 43.80
    //   vermont 1024/4096 = 51.10 → 256/512 = 10.95
    //   ohio and utah 256/512 = 10.95, no change
    let names: Vec<&str> = fleet["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["vermont", "ohio", "utah", "texas"]);
    let row = |name: &str| {
        fleet["tenants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .unwrap()
            .clone()
    };
    let texas = row("texas");
    assert_eq!(
        (
            texas["monthly_cost"].clone(),
            texas["recommended_monthly_cost"].clone()
        ),
        (json!(21.9), json!(43.8))
    );
    assert_eq!(
        (texas["direction"].clone(), texas["tasks"].clone()),
        (json!("up"), json!(2))
    );
    assert_eq!(row("vermont")["savings"], json!(40.15));
    assert_eq!(row("ohio")["status"], "not_enough_data");
    assert_eq!(row("utah")["status"], "off");
    assert_eq!(
        fleet["totals"],
        json!({"current": 94.9, "recommended": 76.65, "savings": 40.15, "increase": 21.9, "net": -18.25})
    );
    assert_eq!(fleet["counts"]["up"], 1);
    assert_eq!(fleet["counts"]["down"], 1);
    assert_eq!(
        fleet["prices"],
        json!({"currency": "USD", "vcpu_hour": 0.05, "gb_hour": 0.005, "hours_per_month": 730.0})
    );

    let metrics = app.get("/metrics").await.text().await.unwrap();
    for line in [
        "statehouse_sizing_monthly_cost_dollars{size=\"current\"} 94.9",
        "statehouse_sizing_monthly_cost_dollars{size=\"recommended\"} 76.65",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
}
