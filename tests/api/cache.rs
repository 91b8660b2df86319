//! The API's in-memory caches stay honest: a tenant changed by anyone (the worker, a
//! person with psql) is served fresh as soon as the change is announced, and a read can
//! always ask for the database.

use std::time::{Duration, Instant};

use reqwest::{header, Method};
use serde_json::Value;
use sqlx::{postgres::PgListener, PgPool};
use statehouse::db::tenants::{COLUMNS, TENANT_ROWS_CHANNEL};

use crate::helpers::{TestApp, CACHE_TTL};

async fn display_name(app: &TestApp, request: reqwest::RequestBuilder) -> String {
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    let t: Value = response.json().await.unwrap();
    let _ = app;
    t["display_name"].as_str().unwrap().to_owned()
}

#[sqlx::test]
async fn a_change_made_outside_the_api_is_served_once_it_is_announced(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    app.create_ok("ohio").await;
    let get = || app.admin(Method::GET, "/v1/tenants/ohio");
    assert_eq!(display_name(&app, get()).await, "Ohio");
    assert_eq!(display_name(&app, get()).await, "Ohio", "now cached");

    // As the worker (or a person with psql) changes a tenant: not through this API.
    sqlx::query(
        "UPDATE tenants SET display_name = 'Ohio DoE', updated_at = now() WHERE name = 'ohio'",
    )
    .execute(&pool)
    .await
    .unwrap();
    let fresh = get().header(header::CACHE_CONTROL, "no-cache");
    assert_eq!(
        display_name(&app, fresh).await,
        "Ohio DoE",
        "no-cache reads the database"
    );

    let changed = Instant::now();
    while display_name(&app, get()).await != "Ohio DoE" {
        assert!(
            changed.elapsed() < CACHE_TTL / 2,
            "the cached tenant outlived its change's announcement"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[sqlx::test]
async fn every_served_change_is_announced_and_lease_bookkeeping_is_not(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let mut listener = PgListener::connect_with(&pool).await.unwrap();
    listener.listen(TENANT_ROWS_CHANNEL).await.unwrap();
    app.create_ok("iowa").await;
    let created = listener.recv().await.unwrap();
    assert_eq!(created.payload(), "iowa");

    // What a heartbeat changes is not part of the tenant as served.
    sqlx::query(
        "UPDATE tenants SET lease_token = gen_random_uuid(), lease_owner = 'w', \
         lease_expires_at = now() + interval '1 minute', next_attempt_at = now() + interval '1 hour' \
         WHERE name = 'iowa'",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("UPDATE tenants SET last_error = 'boom' WHERE name = 'iowa'")
        .execute(&pool)
        .await
        .unwrap();
    let next = tokio::time::timeout(Duration::from_secs(10), listener.recv())
        .await
        .expect("an announcement")
        .unwrap();
    assert_eq!(next.payload(), "iowa");
    assert!(
        tokio::time::timeout(Duration::from_millis(200), listener.try_recv())
            .await
            .is_err(),
        "one announcement: the lease change made none"
    );

    // The trigger watches every column the API serves.
    let definition: String = sqlx::query_scalar(
        "SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE tgname = 'tenants_announce_update'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    for column in COLUMNS.split(',').map(str::trim) {
        assert!(
            definition.contains(&format!("old.{column}"))
                && definition.contains(&format!("new.{column}")),
            "the trigger does not watch {column}: {definition}"
        );
    }
}

#[sqlx::test]
async fn a_tenant_read_once_is_served_without_the_database(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    app.create_ok("utah").await;
    let get = || app.admin(Method::GET, "/v1/tenants/utah").send();
    assert_eq!(get().await.unwrap().status(), 200);
    // Nobody can read the table now: only the cache can answer.
    let mut locker = pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE tenants IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *locker)
        .await
        .unwrap();
    let cached = tokio::time::timeout(Duration::from_secs(10), get())
        .await
        .expect("answered from memory while the table is locked")
        .unwrap();
    assert_eq!(cached.status(), 200);
    let from_db = app
        .admin(Method::GET, "/v1/tenants/utah")
        .header(header::CACHE_CONTROL, "no-cache")
        .send();
    assert!(
        tokio::time::timeout(Duration::from_millis(500), from_db)
            .await
            .is_err(),
        "no-cache waits for the database"
    );
    locker.rollback().await.unwrap();
}
