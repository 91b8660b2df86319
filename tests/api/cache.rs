//! The API's in-memory caches stay honest: a tenant changed by anyone (the worker, a
//! person with psql) is served fresh as soon as the change is announced, and a read can
//! always ask for the database.

use std::time::{Duration, Instant};

use reqwest::{header, Method};
use serde_json::Value;
use sqlx::{postgres::PgListener, PgPool};
use statehouse::{
    db::{
        self,
        tenants::{COLUMNS, TENANT_ROWS_CHANNEL},
    },
    domain::state::StateSlug,
};

use crate::helpers::{settings, TestApp, CACHE_TTL};

/// A tenant written before the server starts, so no announcement of it is still on its way
/// to the server when a test begins.
async fn existing(pool: &PgPool, name: &str) {
    let mut conn = pool.acquire().await.unwrap();
    db::tenants::insert(
        &mut conn,
        db::tenants::NewTenant {
            name: StateSlug::parse(name).unwrap(),
            display_name: "As created",
            spec: &settings().spec_defaults,
            cell: "cell-1",
        },
    )
    .await
    .unwrap();
}

async fn display_name(request: reqwest::RequestBuilder) -> String {
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    let t: Value = response.json().await.unwrap();
    t["display_name"].as_str().unwrap().to_owned()
}

#[sqlx::test]
async fn a_change_made_outside_the_api_is_served_once_it_is_announced(pool: PgPool) {
    existing(&pool, "ohio").await;
    let app = TestApp::spawn(pool.clone()).await;
    let get = || app.admin(Method::GET, "/v1/tenants/ohio");
    assert_eq!(display_name(get()).await, "As created");
    assert!(
        app.tenants.get(&"ohio").is_ok(),
        "kept after the first read"
    );

    // As the worker (or a person with psql) changes a tenant: not through this API.
    sqlx::query("UPDATE tenants SET display_name = 'Ohio DoE' WHERE name = 'ohio'")
        .execute(&pool)
        .await
        .unwrap();
    let fresh = get().header(header::CACHE_CONTROL, "no-cache");
    assert_eq!(
        display_name(fresh).await,
        "Ohio DoE",
        "no-cache reads the database"
    );

    let changed = Instant::now();
    while display_name(get()).await != "Ohio DoE" {
        assert!(
            changed.elapsed() < CACHE_TTL / 2,
            "the kept tenant outlived its change's announcement"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[sqlx::test]
async fn a_tenant_read_once_is_served_without_the_database(pool: PgPool) {
    existing(&pool, "utah").await;
    let app = TestApp::spawn(pool.clone()).await;
    let get = || app.admin(Method::GET, "/v1/tenants/utah").send();
    assert_eq!(get().await.unwrap().status(), 200);
    // Nobody can read the table now: only the server's memory can answer.
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

#[sqlx::test]
async fn every_served_change_is_announced_and_lease_bookkeeping_is_not(pool: PgPool) {
    existing(&pool, "iowa").await;
    let mut listener = PgListener::connect_with(&pool).await.unwrap();
    listener.listen(TENANT_ROWS_CHANNEL).await.unwrap();
    let announce = |sql: &'static str| sqlx::query(sql).execute(&pool);

    // What a claim and a heartbeat change is not part of the tenant as served; the marker
    // arrives next, since announcements come in commit order.
    announce(
        "UPDATE tenants SET lease_token = gen_random_uuid(), lease_owner = 'w', \
         lease_expires_at = now() + interval '1 minute', next_attempt_at = now() + interval '1 hour' \
         WHERE name = 'iowa'",
    )
    .await
    .unwrap();
    announce("SELECT pg_notify('statehouse_tenant_rows', 'marker')")
        .await
        .unwrap();
    assert_eq!(listener.recv().await.unwrap().payload(), "marker");

    announce("UPDATE tenants SET last_error = 'boom' WHERE name = 'iowa'")
        .await
        .unwrap();
    assert_eq!(listener.recv().await.unwrap().payload(), "iowa");

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
