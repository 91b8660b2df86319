use std::collections::BTreeSet;

use futures::future::join_all;
use reqwest::{header, Method};
use serde_json::{json, Value};
use sqlx::{postgres::PgListener, PgPool};
use statehouse::db::TENANT_CHANGED_CHANNEL;

use crate::helpers::{header_value, problem, TestApp};

#[sqlx::test]
async fn creating_a_tenant_answers_202_pending_with_location_and_defaults(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let response = app.create(json!({ "name": "new-york" })).await;
    assert_eq!(response.status(), 202);
    assert_eq!(header_value(&response, "location"), "/v1/tenants/new-york");
    assert!(header_value(&response, "etag").starts_with('"'));
    let t: Value = response.json().await.unwrap();
    assert_eq!(t["name"], "new-york");
    assert_eq!(t["display_name"], "New York");
    assert_eq!(t["postal_code"], "NY");
    assert_eq!(t["status"], "pending");
    assert_eq!(t["generation"], 1);
    assert_eq!(t["observed_generation"], 0);
    assert_eq!(t["cell"], "cell-1");
    assert_eq!(t["endpoint"], Value::Null);
    assert_eq!(t["last_error"], Value::Null);
    assert_eq!(t["resources"], json!({}));
    assert_eq!(t["conditions"], json!([]));
    assert_eq!(
        t["spec"],
        json!({"app_image": "humangov/app:1.0.0", "nginx_image": "nginx:1.27-alpine", "cpu": 256, "memory": 512,
               "desired_count": 1, "min_count": 1, "max_count": 2, "env": {},
               "sizing": {"mode": "recommend", "min": {"cpu": 256, "memory": 512},
                          "max": {"cpu": 16384, "memory": 122880}}})
    );
    for field in ["created_at", "updated_at"] {
        assert!(t[field].is_string(), "{field}");
    }
}

#[sqlx::test]
async fn postal_codes_are_accepted_anywhere_and_answered_with_the_slug(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let created = app
        .create(json!({ "name": "ny", "display_name": "NYSED" }))
        .await;
    assert_eq!(created.status(), 202);
    let t: Value = app.get("/v1/tenants/NY").await.json().await.unwrap();
    assert_eq!(
        (t["name"].as_str(), t["display_name"].as_str()),
        (Some("new-york"), Some("NYSED"))
    );
    let dc = app
        .create(json!({ "name": "DC" }))
        .await
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(dc["name"], "district-of-columbia");
}

#[sqlx::test]
async fn a_spec_sent_with_the_create_is_kept_and_the_rest_defaulted(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let body = json!({ "name": "texas", "spec": {
        "app_image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/humangov-app:2.1.0",
        "cpu": 1024, "memory": 4096, "desired_count": 3, "max_count": 6, "env": { "FEATURE_X": "on" } } });
    let t: Value = app.create(body).await.json().await.unwrap();
    assert_eq!(t["spec"]["cpu"], 1024);
    assert_eq!(t["spec"]["memory"], 4096);
    assert_eq!(t["spec"]["desired_count"], 3);
    assert_eq!(t["spec"]["min_count"], 1);
    assert_eq!(t["spec"]["nginx_image"], "nginx:1.27-alpine");
    assert_eq!(t["spec"]["env"], json!({ "FEATURE_X": "on" }));
}

#[sqlx::test]
async fn creating_a_live_name_again_conflicts(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.create_ok("ohio").await;
    let body = problem(app.create(json!({ "name": "OH" })).await, 409, "conflict").await;
    assert!(body["detail"].as_str().unwrap().contains("ohio"));
}

#[sqlx::test]
async fn twenty_concurrent_creates_of_one_name_give_one_202_and_nineteen_409(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let responses = join_all((0..20).map(|_| app.create(json!({ "name": "utah" })))).await;
    let mut statuses: Vec<u16> = responses.iter().map(|r| r.status().as_u16()).collect();
    statuses.sort();
    assert_eq!(statuses, [vec![202], vec![409; 19]].concat());
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM tenants WHERE name = 'utah'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, 1);
}

#[sqlx::test]
async fn an_idempotency_key_replays_the_first_response_and_creates_nothing_more(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let send = |body: Value| {
        app.admin(Method::POST, "/v1/tenants")
            .header("Idempotency-Key", "onboard-iowa-1")
            .json(&body)
            .send()
    };
    let first = send(json!({ "name": "iowa", "display_name": "Iowa DoE" }))
        .await
        .unwrap();
    assert_eq!(first.status(), 202);
    let first_etag = header_value(&first, "etag");
    let first_body: Value = first.json().await.unwrap();
    // Same body, keys in another order: still the same request.
    let again = send(json!({ "display_name": "Iowa DoE", "name": "iowa" }))
        .await
        .unwrap();
    assert_eq!(again.status(), 202);
    assert_eq!(header_value(&again, "idempotent-replayed"), "true");
    assert_eq!(header_value(&again, "location"), "/v1/tenants/iowa");
    assert_eq!(
        header_value(&again, "etag"),
        first_etag,
        "a replay carries the first answer's ETag"
    );
    assert_eq!(again.json::<Value>().await.unwrap(), first_body);
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM tenant_events")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(events, 1, "a replay records nothing");

    let other = send(json!({ "name": "iowa", "display_name": "Another" }))
        .await
        .unwrap();
    let body = problem(other, 422, "idempotency-key-reused").await;
    assert!(body["detail"]
        .as_str()
        .unwrap()
        .contains("different request body"));
}

#[sqlx::test]
async fn concurrent_retries_with_one_idempotency_key_all_get_the_first_answer(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let requests = (0..8).map(|_| {
        app.admin(Method::POST, "/v1/tenants")
            .header("Idempotency-Key", "k-1")
            .json(&json!({"name": "maine"}))
            .send()
    });
    let responses = join_all(requests).await;
    let ids: BTreeSet<String> = join_all(responses.into_iter().map(|r| async {
        let r = r.unwrap();
        assert_eq!(r.status(), 202);
        r.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }))
    .await
    .into_iter()
    .collect();
    assert_eq!(ids.len(), 1);
}

#[sqlx::test]
async fn idempotency_keys_are_scoped_to_the_api_key(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let other_admin = TestApp::create_key(&pool, "ci", statehouse::auth::Role::Admin).await;
    let first = app
        .admin(Method::POST, "/v1/tenants")
        .header("Idempotency-Key", "same")
        .json(&json!({"name": "idaho"}));
    assert_eq!(first.send().await.unwrap().status(), 202);
    let second = app
        .client
        .post(app.url("/v1/tenants"))
        .bearer_auth(other_admin)
        .header("Idempotency-Key", "same")
        .json(&json!({"name": "idaho"}));
    problem(second.send().await.unwrap(), 409, "conflict").await;
}

#[sqlx::test]
async fn listing_pages_through_every_tenant_in_name_order(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let names = [
        "wyoming", "alabama", "texas", "guam", "ohio", "new-york", "colorado",
    ];
    for name in names {
        app.create_ok(name).await;
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/tenants?limit=3&cursor={c}"),
            None => "/v1/tenants?limit=3".to_owned(),
        };
        let page: Value = app.get(&path).await.json().await.unwrap();
        pages += 1;
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 3);
        seen.extend(items.iter().map(|t| t["name"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let mut expected: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(seen, expected);
    assert_eq!(pages, 3);
}

#[sqlx::test]
async fn listing_filters_by_status_and_hides_tombstones_unless_asked(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    for name in ["kansas", "nevada", "oregon"] {
        app.create_ok(name).await;
    }
    assert_eq!(app.delete("/v1/tenants/nevada").await.status(), 202);
    assert_eq!(app.delete("/v1/tenants/oregon").await.status(), 202);
    app.finish_deletion("oregon").await;

    let names = |page: Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        names(app.get("/v1/tenants").await.json().await.unwrap()),
        ["kansas", "nevada"]
    );
    assert_eq!(
        names(
            app.get("/v1/tenants?status=deleting")
                .await
                .json()
                .await
                .unwrap()
        ),
        ["nevada"]
    );
    assert_eq!(
        names(
            app.get("/v1/tenants?status=pending")
                .await
                .json()
                .await
                .unwrap()
        ),
        ["kansas"]
    );
    assert_eq!(
        names(
            app.get("/v1/tenants?status=deleted")
                .await
                .json()
                .await
                .unwrap()
        ),
        ["oregon"]
    );
}

#[sqlx::test]
async fn get_serves_an_etag_and_honours_if_none_match(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.create_ok("alaska").await;
    let tag = app.etag("alaska").await;
    let cached = app
        .admin(Method::GET, "/v1/tenants/alaska")
        .header(header::IF_NONE_MATCH, &tag)
        .send()
        .await
        .unwrap();
    assert_eq!(cached.status(), 304);
    problem(app.get("/v1/tenants/hawaii").await, 404, "not-found").await;
}

#[sqlx::test]
async fn display_names_are_plain_text_and_stored_trimmed(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    for bad in [
        "",
        "   ",
        "\u{3000}",
        "two\nlines",
        "tab\there",
        "NYSED\n",
        &"x".repeat(101),
    ] {
        let p = problem(
            app.create(json!({"name": "ohio", "display_name": bad}))
                .await,
            422,
            "validation",
        )
        .await;
        assert_eq!(p["errors"][0]["field"], "display_name", "{bad:?}");
    }
    let padded = format!(" {} ", "y".repeat(98));
    let t = app
        .create(json!({"name": "ohio", "display_name": padded}))
        .await;
    assert_eq!(t.status(), 202);
    assert_eq!(
        t.json::<Value>().await.unwrap()["display_name"],
        "y".repeat(98)
    );
}

#[sqlx::test]
async fn deleting_keeps_the_row_until_the_worker_finishes_then_the_name_is_free(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let first = app.create_ok("nebraska").await;
    let response = app.delete("/v1/tenants/NE").await;
    assert_eq!(response.status(), 202);
    assert_eq!(header_value(&response, "location"), "/v1/tenants/nebraska");
    let t: Value = response.json().await.unwrap();
    assert_eq!(
        (t["status"].as_str(), t["data_policy"].as_str()),
        (Some("deleting"), Some("retain"))
    );

    problem(
        app.create(json!({"name": "nebraska"})).await,
        409,
        "conflict",
    )
    .await;
    let tag = app.etag("nebraska").await;
    problem(
        app.patch(
            "nebraska",
            Some(&tag),
            json!({"spec": {"desired_count": 2}}),
        )
        .await,
        409,
        "conflict",
    )
    .await;

    app.finish_deletion("nebraska").await;
    let tombstone: Value = app.get("/v1/tenants/nebraska").await.json().await.unwrap();
    assert_eq!(tombstone["status"], "deleted");
    assert!(tombstone["deleted_at"].is_string());
    problem(app.delete("/v1/tenants/nebraska").await, 404, "not-found").await;

    let second = app.create_ok("nebraska").await;
    assert_ne!(second["id"], first["id"]);
    let live: Value = app.get("/v1/tenants/nebraska").await.json().await.unwrap();
    assert_eq!(
        (live["id"].clone(), live["status"].as_str()),
        (second["id"].clone(), Some("pending"))
    );

    let actions = app.event_actions("nebraska").await;
    assert_eq!(
        actions,
        [
            "tenant.created",
            "tenant.deletion_requested",
            "tenant.created"
        ]
    );
}

#[sqlx::test]
async fn delete_with_purge_records_the_data_policy_and_can_be_repeated(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.create_ok("delaware").await;
    let t: Value = app
        .delete("/v1/tenants/delaware?data=purge")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(t["data_policy"], "purge");
    let again = app.delete("/v1/tenants/delaware?data=purge").await;
    assert_eq!(again.status(), 202);
    let events = app.events("delaware").await;
    assert_eq!(
        events["items"].as_array().unwrap().len(),
        2,
        "a repeated identical delete records nothing"
    );
    problem(
        app.delete("/v1/tenants/delaware?data=shred").await,
        400,
        "bad-request",
    )
    .await;
    let switched = problem(
        app.delete("/v1/tenants/delaware?data=retain").await,
        409,
        "conflict",
    )
    .await;
    assert!(switched["detail"].as_str().unwrap().contains("data=purge"));
}

#[sqlx::test]
async fn delete_honours_if_match_when_sent(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.create_ok("michigan").await;
    let stale = app
        .admin(Method::DELETE, "/v1/tenants/michigan")
        .header(header::IF_MATCH, "\"stale\"")
        .send()
        .await
        .unwrap();
    problem(stale, 412, "precondition-failed").await;
    let tag = app.etag("michigan").await;
    let ok = app
        .admin(Method::DELETE, "/v1/tenants/michigan")
        .header(header::IF_MATCH, tag)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 202);
}

#[sqlx::test]
async fn events_are_newest_first_name_the_key_and_page(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.create_ok("indiana").await;
    for n in 2..=5 {
        let tag = app.etag("indiana").await;
        assert_eq!(
            app.patch(
                "indiana",
                Some(&tag),
                json!({"spec": {"desired_count": n, "max_count": 5}})
            )
            .await
            .status(),
            200
        );
    }
    let first: Value = app
        .get("/v1/tenants/indiana/events?limit=2")
        .await
        .json()
        .await
        .unwrap();
    let generations: Vec<i64> = first["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["generation"].as_i64().unwrap())
        .collect();
    assert_eq!(generations, [5, 4]);
    let mut all = generations;
    let mut cursor = first["next_cursor"].as_str().map(str::to_owned);
    while let Some(c) = cursor {
        let page: Value = app
            .get(&format!("/v1/tenants/indiana/events?limit=2&cursor={c}"))
            .await
            .json()
            .await
            .unwrap();
        all.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["generation"].as_i64().unwrap()),
        );
        cursor = page["next_cursor"].as_str().map(str::to_owned);
    }
    assert_eq!(all, [5, 4, 3, 2, 1]);
    let viewer = app
        .viewer(Method::GET, "/v1/tenants/indiana/events")
        .send()
        .await
        .unwrap();
    assert_eq!(viewer.status(), 200);
    problem(
        app.get("/v1/tenants/illinois/events").await,
        404,
        "not-found",
    )
    .await;
}

#[sqlx::test]
async fn the_event_history_cannot_be_rewritten(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    app.create_ok("oklahoma").await;
    assert!(
        sqlx::query("UPDATE tenant_events SET actor = 'someone-else'")
            .execute(&pool)
            .await
            .is_err()
    );
    assert!(sqlx::query("DELETE FROM tenant_events")
        .execute(&pool)
        .await
        .is_err());
}

#[sqlx::test]
async fn every_desired_state_change_is_announced_to_listeners(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let mut listener = PgListener::connect_with(&pool).await.unwrap();
    listener.listen(TENANT_CHANGED_CHANNEL).await.unwrap();
    async fn next(listener: &mut PgListener) -> String {
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), listener.recv()).await;
        n.expect("a notification within 5s")
            .unwrap()
            .payload()
            .to_owned()
    }
    app.create_ok("CT").await;
    assert_eq!(next(&mut listener).await, "connecticut");
    let tag = app.etag("connecticut").await;
    app.patch(
        "connecticut",
        Some(&tag),
        json!({"spec": {"desired_count": 2}}),
    )
    .await;
    assert_eq!(next(&mut listener).await, "connecticut");
    app.delete("/v1/tenants/connecticut").await;
    assert_eq!(next(&mut listener).await, "connecticut");
}

#[sqlx::test]
async fn spec_validation_rejects_each_bad_value_with_its_field(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let cases = [
        (json!({"cpu": 256, "memory": 4096}), "spec.memory"),
        (json!({"cpu": 333}), "spec.cpu"),
        (
            json!({"min_count": 3, "desired_count": 2, "max_count": 4}),
            "spec.min_count",
        ),
        (
            json!({"desired_count": 5, "max_count": 4}),
            "spec.max_count",
        ),
        (
            json!({"desired_count": 1, "max_count": 11}),
            "spec.max_count",
        ),
        (json!({"app_image": "Not An Image!"}), "spec.app_image"),
        (
            json!({"nginx_image": "nginx@sha256:abc"}),
            "spec.nginx_image",
        ),
        (
            json!({"env": {"AWS_BUCKET": "mine"}}),
            "spec.env.AWS_BUCKET",
        ),
        (json!({"env": {"lower_case": "x"}}), "spec.env.lower_case"),
        (json!({"env": {"BIG": "x".repeat(5000)}}), "spec.env.BIG"),
        (
            json!({"env": (0..51).map(|i| (format!("V{i}"), json!("x"))).collect::<serde_json::Map<_, _>>()}),
            "spec.env",
        ),
    ];
    for (spec, field) in cases {
        let response = app.create(json!({"name": "alabama", "spec": spec})).await;
        let body = problem(response, 422, "validation").await;
        let fields: Vec<&str> = body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert!(
            fields.contains(&field),
            "{spec}: expected {field} in {fields:?}"
        );
    }
    let long_name = "x".repeat(101);
    problem(
        app.create(json!({"name": "alabama", "display_name": long_name}))
            .await,
        422,
        "validation",
    )
    .await;
    let body = problem(
        app.create(json!({"name": "narnia"})).await,
        422,
        "validation",
    )
    .await;
    assert!(
        body["detail"].as_str().unwrap().contains("postal code"),
        "the detail says what is allowed"
    );
    assert_eq!(
        app.get("/v1/tenants").await.json::<Value>().await.unwrap()["items"],
        json!([])
    );
}

#[sqlx::test]
async fn a_reconcile_request_makes_the_tenant_due_now_and_is_recorded(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    app.create_ok("ohio").await;
    // As if the worker had just finished a pass and scheduled the next one far ahead.
    sqlx::query(
        "UPDATE tenants SET next_attempt_at = 'infinity', attempts = 3 WHERE name = 'ohio'",
    )
    .execute(&pool)
    .await
    .unwrap();
    let viewer = app
        .viewer(Method::POST, "/v1/tenants/ohio/reconcile")
        .send()
        .await
        .unwrap();
    problem(viewer, 403, "forbidden").await;
    let response = app.post("/v1/tenants/OH/reconcile", None).await;
    assert_eq!(response.status(), 202);
    let (due, attempts): (bool, i32) = sqlx::query_as(
        "SELECT next_attempt_at <= now(), attempts FROM tenants WHERE name = 'ohio'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(due);
    assert_eq!(attempts, 0);
    let events = app.events("ohio").await;
    assert_eq!(events["items"][0]["action"], "tenant.reconcile_requested");
    assert_eq!(events["items"][0]["actor"], "key:ops");

    let missing = app.post("/v1/tenants/utah/reconcile", None).await;
    problem(missing, 404, "not-found").await;
}
