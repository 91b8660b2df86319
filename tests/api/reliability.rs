//! Operator controls for a platform under repair or at its limits: pausing a tenant, and
//! refusing new tenants when no cell has room.

use reqwest::{header, Method};
use serde_json::{json, Value};
use sqlx::PgPool;
use statehouse::db::cells::CellCapacity;

use crate::helpers::{header_value, problem, settings, TestApp};

async fn claimable(pool: &PgPool, name: &str) -> bool {
    // What the worker's claim would take: due, unleased and not paused.
    let cells = vec!["cell-1".to_owned()];
    let claimed = statehouse::db::leases::claim(
        pool,
        "test-worker",
        std::time::Duration::from_secs(30),
        10,
        &cells,
    )
    .await
    .expect("claim");
    claimed.iter().any(|c| c.tenant.name.as_str() == name)
}

#[sqlx::test]
async fn a_paused_tenant_is_not_claimed_until_resumed(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    app.create_ok("ohio").await;

    let viewer = app
        .viewer(Method::POST, "/v1/tenants/ohio/pause")
        .send()
        .await
        .unwrap();
    problem(viewer, 403, "forbidden").await;

    let paused = app
        .post(
            "/v1/tenants/OH/pause",
            Some(json!({ "reason": "restoring the table by hand, OPS-12" })),
        )
        .await;
    assert_eq!(paused.status(), 200);
    let body: Value = paused.json().await.unwrap();
    assert!(body["paused_at"].is_string(), "{body}");
    assert_eq!(body["paused_reason"], "restoring the table by hand, OPS-12");
    assert!(
        !claimable(&pool, "ohio").await,
        "a paused tenant is left alone"
    );

    // Asking for a pass while paused is refused, not silently ignored.
    let reconcile = app.post("/v1/tenants/ohio/reconcile", None).await;
    let p = problem(reconcile, 409, "conflict").await;
    assert!(p["detail"].as_str().unwrap().contains("paused"), "{p}");

    // Pausing again changes nothing and keeps the first reason.
    let again = app.post("/v1/tenants/ohio/pause", None).await;
    assert_eq!(again.status(), 200);
    let body: Value = again.json().await.unwrap();
    assert_eq!(body["paused_reason"], "restoring the table by hand, OPS-12");

    let resumed = app.post("/v1/tenants/ohio/resume", None).await;
    assert_eq!(resumed.status(), 200);
    let body: Value = resumed.json().await.unwrap();
    assert!(body["paused_at"].is_null(), "{body}");
    assert!(
        claimable(&pool, "ohio").await,
        "resuming makes it due at once"
    );

    let actions = app.event_actions("ohio").await;
    assert_eq!(
        actions[..3],
        ["tenant.resumed", "tenant.paused", "tenant.created"],
        "one event per real change, newest first"
    );
}

#[sqlx::test]
async fn pausing_takes_the_lease_from_a_pass_in_flight(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    app.create_ok("utah").await;
    assert!(claimable(&pool, "utah").await);
    app.post("/v1/tenants/utah/pause", None).await;
    let (token, owner): (Option<uuid::Uuid>, Option<String>) =
        sqlx::query_as("SELECT lease_token, lease_owner FROM tenants WHERE name = 'utah'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        (token, owner),
        (None, None),
        "the worker's next write is fenced"
    );
}

#[sqlx::test]
async fn bad_pause_requests_get_clear_problems(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.create_ok("iowa").await;
    let long = app
        .post(
            "/v1/tenants/iowa/pause",
            Some(json!({ "reason": "x".repeat(501) })),
        )
        .await;
    problem(long, 422, "validation").await;
    let unknown = app
        .post("/v1/tenants/iowa/pause", Some(json!({ "why": "typo" })))
        .await;
    problem(unknown, 422, "validation").await;
    let not_json = app
        .admin(Method::POST, "/v1/tenants/iowa/pause")
        .header(header::CONTENT_TYPE, "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    problem(not_json, 400, "bad-request").await;
    let text = app
        .admin(Method::POST, "/v1/tenants/iowa/pause")
        .header(header::CONTENT_TYPE, "text/plain")
        .body("because")
        .send()
        .await
        .unwrap();
    problem(text, 415, "unsupported-media-type").await;
    let null = app.post("/v1/tenants/iowa/pause", Some(json!(null))).await;
    assert_eq!(
        null.status(),
        200,
        "a null body is no reason, as the document allows"
    );
    let missing = app.post("/v1/tenants/utah/resume", None).await;
    problem(missing, 404, "not-found").await;
}

#[sqlx::test]
async fn a_full_platform_refuses_new_tenants_before_any_aws_call(pool: PgPool) {
    let mut s = settings();
    s.cells = vec![
        CellCapacity {
            name: "cell-1".into(),
            capacity: 1,
            reserved_for: Vec::new(),
        },
        CellCapacity {
            name: "cell-2".into(),
            capacity: 1,
            reserved_for: Vec::new(),
        },
    ];
    let app = TestApp::spawn_with(pool.clone(), s).await;
    let first = app.create_ok("ohio").await;
    assert_eq!(first["cell"], "cell-1");
    let second = app.create_ok("utah").await;
    assert_eq!(second["cell"], "cell-2", "the next cell with room");

    let full = app.create(json!({ "name": "iowa" })).await;
    let p = problem(full, 409, "no-capacity").await;
    assert_eq!(p["title"], "No cell has room");
    assert!(p["detail"].as_str().unwrap().contains("cell-1"), "{p}");
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM tenants WHERE name = 'iowa'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        rows, 0,
        "nothing recorded, so no worker will call AWS for it"
    );

    // A name that exists is reported as such, not as a full platform.
    let dup = app.create(json!({ "name": "ohio" })).await;
    problem(dup, 409, "conflict").await;

    // Deleting a tenant frees its place once its resources are gone.
    assert_eq!(app.delete("/v1/tenants/ohio").await.status(), 202);
    app.finish_deletion("ohio").await;
    let placed = app.create_ok("iowa").await;
    assert_eq!(placed["cell"], "cell-1");
}

#[sqlx::test]
async fn concurrent_creates_never_overfill_a_cell(pool: PgPool) {
    let mut s = settings();
    s.cells = vec![CellCapacity {
        name: "cell-1".into(),
        capacity: 3,
        reserved_for: Vec::new(),
    }];
    let app = std::sync::Arc::new(TestApp::spawn_with(pool.clone(), s).await);
    let names = [
        "ohio", "utah", "iowa", "texas", "maine", "idaho", "alaska", "oregon",
    ];
    let mut tasks = Vec::new();
    for name in names {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            app.create(json!({ "name": name })).await.status().as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 202).count(),
        3,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        5,
        "{statuses:?}"
    );
    let live: i64 = sqlx::query_scalar("SELECT count(*) FROM tenants WHERE status <> 'deleted'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(live, 3);
}

#[sqlx::test]
async fn a_burst_of_creates_fills_a_cell_exactly_and_no_more(pool: PgPool) {
    let mut s = settings();
    s.cells = vec![CellCapacity {
        name: "cell-1".into(),
        capacity: 20,
        reserved_for: Vec::new(),
    }];
    let app = std::sync::Arc::new(TestApp::spawn_with(pool.clone(), s).await);
    let creates = statehouse::domain::state::StateSlug::all().map(|state| {
        let app = app.clone();
        tokio::spawn(async move { app.create(json!({ "name": state.as_str() })).await })
    });
    let mut statuses = Vec::new();
    for create in futures::future::join_all(creates).await {
        let response = create.unwrap();
        let status = response.status().as_u16();
        if status == 409 {
            problem(response, 409, "no-capacity").await;
        }
        statuses.push(status);
    }
    let count = |s: u16| statuses.iter().filter(|x| **x == s).count();
    assert_eq!((count(202), count(409)), (20, 36), "{statuses:?}");
    let live: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM tenants WHERE status <> 'deleted' AND cell = 'cell-1'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(live, 20);
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM tenant_events")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(events, 20, "a refused create leaves no trace");
}

/// Until a `SELECT … FOR UPDATE` on `pool`'s database waits for its lock.
async fn a_row_lock_is_awaited(pool: &PgPool) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE NOT l.granted AND a.datname = current_database() AND a.query LIKE '%FOR UPDATE%'",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        if waiting > 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing ever waited"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[sqlx::test]
async fn a_request_that_waits_too_long_for_a_connection_is_told_to_come_back(pool: PgPool) {
    // One connection for the API, busy with a PATCH that waits on a row lock held here.
    let one = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect_with((*pool.connect_options()).clone())
        .await
        .unwrap();
    let app = std::sync::Arc::new(
        TestApp::spawn_queueing(one, std::time::Duration::from_millis(300)).await,
    );
    app.create_ok("ohio").await;
    let mut holder = pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM tenants WHERE name = 'ohio' FOR UPDATE")
        .execute(&mut *holder)
        .await
        .unwrap();
    let slow = {
        let app = app.clone();
        tokio::spawn(async move {
            app.patch("ohio", Some("*"), json!({"display_name": "Ohio DoE"}))
                .await
                .status()
        })
    };
    a_row_lock_is_awaited(&pool).await;

    let busy = app.get("/v1/tenants").await;
    assert_eq!(header_value(&busy, "retry-after"), "1");
    problem(busy, 429, "too-busy").await;

    holder.rollback().await.unwrap();
    assert_eq!(
        slow.await.unwrap(),
        200,
        "the request that had its turn completes"
    );
    assert_eq!(app.get("/v1/tenants").await.status(), 200);
}
