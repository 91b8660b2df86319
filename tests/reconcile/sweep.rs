//! The orphan sweep against planted orphans: what belongs to no live tenant is listed with
//! an exit code that says so, removed in deletion order with `--delete`, and data is only
//! removed when asked for.

use std::process::Output;

use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration, Tag, Tagging};
use serde_json::Value;
use sqlx::PgPool;
use statehouse::{
    db,
    domain::{state::StateSlug, tenant::DataPolicy},
    reconcile::{sweep::DELETE_ORDER, TAG_MANAGED_BY, TAG_TENANT},
};

use crate::harness::{settings, spec, Stack};

async fn sweep(stack: &Stack, args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_statehouse"))
        .arg("sweep")
        .args(args)
        .envs(stack.command_env())
        .env("STATEHOUSE_DB_MAX_CONNECTIONS", "2")
        .output()
        .await
        .expect("run statehouse sweep")
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "sweep's JSON: {e}\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn kinds(items: &Value) -> Vec<String> {
    items
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["kind"].as_str().unwrap().to_owned())
        .collect()
}

#[sqlx::test]
async fn planted_orphans_are_found_and_removed_in_order_and_data_only_when_asked(pool: PgPool) {
    let stack = Stack::start(pool, 10, settings()).await;
    for name in ["ohio", "utah", "iowa"] {
        stack.create(name, spec()).await;
    }
    for name in ["ohio", "utah", "iowa"] {
        stack.ready(name).await;
    }
    let clean = sweep(&stack, &[]).await;
    assert_eq!(clean.status.code(), Some(0), "{clean:?}");
    assert!(String::from_utf8_lossy(&clean.stdout).contains("No orphans"));

    // utah is deleted properly and keeps its data: retained, not an orphan.
    stack.delete("utah", DataPolicy::Retain).await;
    stack
        .wait_for("utah", std::time::Duration::from_secs(60), |t| {
            t.status.as_str() == "deleted"
        })
        .await;
    // ohio's row is marked deleted behind the worker's back: all of its stack is orphaned.
    // (The worker is kept off it by a lease held past the test.)
    sqlx::query(
        "UPDATE tenants SET lease_token = gen_random_uuid(), lease_owner = 'test', \
             lease_expires_at = 'infinity', status = 'deleting', \
             deletion_requested_at = now(), data_policy = 'purge' WHERE name = 'ohio'",
    )
    .execute(&stack.pool)
    .await
    .unwrap();
    let ohio = stack.tenant("ohio").await;
    let mut conn = stack.pool.acquire().await.unwrap();
    db::tenants::mark_deleted(&mut conn, ohio.id).await.unwrap();
    drop(conn);
    // And a bucket tagged for a tenant that never existed, as if made by hand.
    let stray = "humangov-kansas-planted";
    stack
        .aws
        .s3
        .create_bucket()
        .bucket(stray)
        .create_bucket_configuration(
            CreateBucketConfiguration::builder()
                .location_constraint(BucketLocationConstraint::from(crate::REGION))
                .build(),
        )
        .send()
        .await
        .unwrap();
    let tags = Tagging::builder()
        .tag_set(
            Tag::builder()
                .key(TAG_TENANT)
                .value("kansas")
                .build()
                .unwrap(),
        )
        .tag_set(
            Tag::builder()
                .key(TAG_MANAGED_BY)
                .value(statehouse::reconcile::MANAGED_BY)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    stack
        .aws
        .s3
        .put_bucket_tagging()
        .bucket(stray)
        .tagging(tags)
        .send()
        .await
        .unwrap();
    let ohio_before = stack.leftovers("ohio").await;

    // Listing: exit 3, every ohio resource and the stray bucket, utah's data as retained.
    let listed = sweep(&stack, &["--output", "json"]).await;
    assert_eq!(listed.status.code(), Some(3), "{listed:?}");
    let doc = json(&listed);
    let mut ohio_found: Vec<String> = doc["orphans"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["tenant"] == "ohio")
        .map(|o| o["kind"].as_str().unwrap().to_owned())
        .collect();
    ohio_found.sort_unstable();
    assert_eq!(ohio_found, ohio_before, "{doc:#}");
    assert!(
        doc["orphans"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["tenant"] == "kansas" && o["id"] == stray),
        "{doc:#}"
    );
    let mut retained = kinds(&doc["retained"]);
    retained.sort_unstable();
    assert_eq!(retained, ["bucket", "table"], "{doc:#}");
    assert!(
        doc["orphans"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["tenant"] != "iowa"),
        "a live tenant is never an orphan"
    );
    // The table view says the same for a person.
    let table = sweep(&stack, &[]).await;
    assert_eq!(table.status.code(), Some(3));
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("TENANT") && text.contains(stray), "{text}");

    // --delete removes all but data, in the order a tenant's deletion uses.
    let deleted = sweep(&stack, &["--delete", "--output", "json"]).await;
    assert_eq!(deleted.status.code(), Some(3), "data is left: {deleted:?}");
    let doc = json(&deleted);
    let order = kinds(&doc["deleted"]);
    let rank = |k: &String| DELETE_ORDER.iter().position(|d| d == k).unwrap();
    assert!(
        order.windows(2).all(|w| rank(&w[0]) <= rank(&w[1])),
        "deleted in order: {order:?}"
    );
    assert!(order.iter().all(|k| k != "bucket" && k != "table"));
    assert!(doc["failed"].as_array().unwrap().is_empty(), "{doc:#}");
    assert_eq!(stack.leftovers("ohio").await, ["bucket", "table"]);

    // --include-data removes the rest; then nothing is left and the exit code says so.
    let all = sweep(&stack, &["--delete", "--include-data", "--output", "json"]).await;
    assert_eq!(all.status.code(), Some(0), "{all:?}");
    assert!(stack.leftovers("ohio").await.is_empty());
    assert!(stack.leftovers("kansas").await.is_empty());
    let ohio = stack.platform.names(StateSlug::parse("ohio").unwrap());
    assert_eq!(stack.backups(&ohio.table).await, 1, "a final backup first");
    let after = sweep(&stack, &[]).await;
    assert_eq!(after.status.code(), Some(0), "{after:?}");

    // The live tenant and the retained data are untouched.
    assert_eq!(stack.leftovers("iowa").await.len(), ohio_before.len());
    assert_eq!(stack.leftovers("utah").await, ["bucket", "table"]);
    stack.stop().await;
}

#[sqlx::test]
async fn bad_sweep_arguments_get_clear_errors(pool: PgPool) {
    let stack = Stack::start(pool, 10, settings()).await;
    let data_alone = sweep(&stack, &["--include-data"]).await;
    assert_eq!(data_alone.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&data_alone.stderr).contains("--delete"));
    let format = sweep(&stack, &["--output", "yaml"]).await;
    assert_eq!(format.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&format.stderr).contains("yaml"));
    let unset = sweep(&stack, &["--cluster", ""]).await;
    assert_eq!(unset.status.code(), Some(1), "{unset:?}");
    assert!(String::from_utf8_lossy(&unset.stderr).contains("STATEHOUSE_CLUSTER"));
    stack.stop().await;
}
