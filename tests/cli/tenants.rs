use std::time::Duration;

use serde_json::Value;
use sqlx::PgPool;

use crate::server::{cli, Server, TOKEN};

fn names(list: &Value) -> Vec<&str> {
    list.as_array()
        .expect("a JSON array")
        .iter()
        .map(|t| t["name"].as_str().expect("a name"))
        .collect()
}

#[sqlx::test]
async fn a_tenant_is_created_changed_followed_and_deleted_from_the_cli(pool: PgPool) {
    let server = Server::start(&pool, 10, &[]).await;

    let created = server.cli(&[
        "tenants",
        "create",
        "california",
        "--image",
        "humangov/app:1.1.0",
        "--env",
        "FEATURE_X=on",
        "--wait",
        "--output",
        "json",
    ]);
    let tenant = created.expect(0).json();
    assert_eq!(tenant["status"], "ready", "{created}");
    assert_eq!(tenant["spec"]["app_image"], "humangov/app:1.1.0");
    assert_eq!(tenant["spec"]["env"]["FEATURE_X"], "on");
    assert!(tenant["endpoint"]
        .as_str()
        .is_some_and(|e| e.starts_with("https://california.")));
    // Not a terminal: progress is plain lines on stderr, the last one saying it is ready.
    let last = created.stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with('[') && last.contains("california") && last.contains("ready"),
        "{created}"
    );

    let again = server.cli(&["tenants", "create", "CA"]);
    again.expect(4);
    assert!(
        again.stderr.contains("Conflict") && again.stderr.contains("already exists"),
        "{again}"
    );

    let got = server.cli(&["tenants", "get", "ca", "--output", "json"]);
    assert_eq!(got.expect(0).json()["name"], "california");
    let table = server.cli(&["tenants", "get", "california"]);
    assert!(
        table.expect(0).stdout.contains("Status:") && table.stdout.contains("ready"),
        "{table}"
    );
    let missing = server.cli(&["tenants", "get", "texas"]);
    missing.expect(3);
    assert!(missing.stderr.contains("no tenant for texas"), "{missing}");

    let updated = server.cli(&[
        "tenants",
        "update",
        "california",
        "--image",
        "humangov/app:1.2.0",
        "--unset-env",
        "FEATURE_X",
        "--desired",
        "2",
        "--max",
        "3",
        "--wait",
        "--output",
        "json",
    ]);
    let tenant = updated.expect(0).json();
    assert_eq!(
        (
            &tenant["status"],
            &tenant["generation"],
            &tenant["observed_generation"]
        ),
        (&"ready".into(), &2.into(), &2.into()),
        "{updated}"
    );
    assert_eq!(tenant["spec"]["app_image"], "humangov/app:1.2.0");
    assert_eq!(tenant["spec"]["desired_count"], 2);
    assert_eq!(tenant["spec"]["env"], serde_json::json!({}));
    server.cli(&["tenants", "update", "california"]).expect(2);
    let invalid = server.cli(&["tenants", "update", "california", "--cpu", "300"]);
    invalid.expect(2);
    assert!(invalid.stderr.contains("spec.cpu"), "{invalid}");

    server
        .cli(&["tenants", "reconcile", "california"])
        .expect(0);
    server.cli(&["tenants", "reconcile", "texas"]).expect(3);
    let events = server.cli(&["tenants", "events", "california", "--output", "json"]);
    let events = events.expect(0).json();
    let actions: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    let position = |a: &str| actions.iter().position(|x| *x == a);
    assert!(
        position("tenant.created") < position("tenant.updated")
            && position("tenant.updated") < position("tenant.reconcile_requested"),
        "oldest first, with every change: {actions:?}"
    );
    server.cli(&["tenants", "events", "texas"]).expect(3);

    // Purging data needs --yes when no one can be asked.
    let refused = server.cli(&["tenants", "delete", "california", "--purge"]);
    refused.expect(2);
    assert!(refused.stderr.contains("--yes"), "{refused}");
    let still = server.cli(&["tenants", "get", "california", "--output", "json"]);
    assert_eq!(still.json()["status"], "ready");

    let deleted = server.cli(&[
        "tenants",
        "delete",
        "california",
        "--wait",
        "--output",
        "json",
    ]);
    let tenant = deleted.expect(0).json();
    assert_eq!(tenant["status"], "deleted", "{deleted}");
    assert_eq!(tenant["data_policy"], "retain");
    server.cli(&["tenants", "delete", "california"]).expect(3);
    server.cli(&["tenants", "delete", "texas"]).expect(3);
}

#[sqlx::test]
async fn listing_follows_every_page_and_filters_by_status(pool: PgPool) {
    let server = Server::start(&pool, 10, &[]).await;
    let states = ["ohio", "iowa", "utah", "maine", "idaho", "kansas", "nevada"];
    let mut args = vec!["tenants", "create"];
    args.extend(states);
    server.cli(&args).expect(0);

    let listed = server.cli(&["tenants", "list", "--page-size", "2", "--output", "json"]);
    let mut expected = states.to_vec();
    expected.sort();
    assert_eq!(names(&listed.expect(0).json()), expected);
    let table = server.cli(&["tenants", "list"]);
    assert_eq!(table.expect(0).stdout.lines().count(), 1 + states.len());
    assert!(table.stdout.starts_with("NAME"), "{table}");

    server
        .cli(&["tenants", "create", "oregon", "--wait"])
        .expect(0);
    let ready = server.cli(&["tenants", "list", "--status", "ready", "--output", "json"]);
    assert!(names(&ready.expect(0).json()).contains(&"oregon"));
    let bad = server.cli(&["tenants", "list", "--status", "sleeping"]);
    bad.expect(2);
    assert!(bad.stderr.contains("not a status"), "{bad}");
}

#[sqlx::test]
async fn follow_prints_new_events_until_the_tenant_is_deleted(pool: PgPool) {
    let server = Server::start(&pool, 10, &[]).await;
    server
        .cli(&["tenants", "create", "vermont", "--wait"])
        .expect(0);
    let mut follower = server.spawn_cli(&[
        "tenants", "events", "vermont", "--follow", "--output", "json", "--limit", "500",
    ]);
    // Its lines as they come, so the deletion can wait until it has printed the history.
    let printed = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let reader = {
        let printed = printed.clone();
        let stdout = follower.stdout.take().expect("the follower's stdout");
        std::thread::spawn(move || {
            for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
                printed
                    .lock()
                    .unwrap()
                    .push(line.expect("a line of output"));
            }
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while printed.lock().unwrap().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "--follow printed nothing"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server
        .cli(&["tenants", "delete", "vermont", "--purge", "--yes"])
        .expect(0);
    while follower.try_wait().expect("the follower").is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "--follow did not stop after the tenant was deleted"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(follower.wait().expect("the follower").success());
    reader.join().expect("the reader");
    let lines: Vec<Value> = printed
        .lock()
        .unwrap()
        .iter()
        .map(|l| serde_json::from_str(l).expect("one JSON event a line"))
        .collect();
    let actions: Vec<&str> = lines
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions.first(), Some(&"tenant.created"), "{actions:?}");
    assert!(
        actions.contains(&"tenant.deletion_requested"),
        "events after --follow started are printed: {actions:?}"
    );
    let ids: Vec<i64> = lines.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    let mut unique = ids.clone();
    unique.dedup();
    assert_eq!(ids, unique, "no event printed twice");
}

#[sqlx::test]
async fn keys_and_addresses_come_from_flags_env_or_the_config_file(pool: PgPool) {
    let server = Server::start(&pool, 10, &[]).await;

    let wrong = server.cli_with(
        &["tenants", "list"],
        &[("STATEHOUSE_TOKEN", "not-a-key")],
        None,
    );
    wrong.expect(5);
    assert!(wrong.stderr.contains("Authentication required"), "{wrong}");

    let viewer = server.create_key("auditor", "viewer");
    let as_viewer = |args: &[&str]| server.cli_with(args, &[("STATEHOUSE_TOKEN", &viewer)], None);
    as_viewer(&["tenants", "list"]).expect(0);
    as_viewer(&["tenants", "create", "ohio"]).expect(5);

    let config = server.dir.write(
        "config.toml",
        &format!(
            "api_url = \"http://127.0.0.1:9\"\ntoken = \"nope\"\n\n[profiles.test]\napi_url = \"{}\"\ntoken = \"{TOKEN}\"\n",
            server.url
        ),
    );
    let config = config.to_str().unwrap();
    let from_file = |args: &[&str]| cli(args, &[("STATEHOUSE_CONFIG", config)], None);
    from_file(&["tenants", "list", "--profile", "test"]).expect(0);
    from_file(&["tenants", "list"]).expect(6);
    from_file(&[
        "tenants",
        "list",
        "--api-url",
        &server.url,
        "--token",
        TOKEN,
    ])
    .expect(0);
    let unknown = from_file(&["tenants", "list", "--profile", "prod"]);
    unknown.expect(2);
    assert!(unknown.stderr.contains("no profile `prod`"), "{unknown}");
    let no_key = cli(&["tenants", "list", "--api-url", &server.url], &[], None);
    no_key.expect(5);
    assert!(no_key.stderr.contains("STATEHOUSE_TOKEN"), "{no_key}");
    assert!(
        !no_key.stderr.contains(TOKEN) && !wrong.stderr.contains("not-a-key"),
        "keys are never printed"
    );
}
