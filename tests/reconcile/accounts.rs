//! A cell in another account (and region): the worker reaches it with AssumeRole, the
//! tenant's stack is made there and nowhere else, and deleting it leaves nothing in either.

use std::time::Duration;

use sqlx::PgPool;
use statehouse::{
    domain::{state::StateSlug, tenant::DataPolicy},
    reconcile::{bucket, role},
};

use crate::{
    harness::{settings, spec, Stack, DEDICATED_REGION, DEDICATED_ROLE},
    process::{base_env, database_url, Proc},
    proxy::{FaultConfig, Rule},
};

const OTHER_ROLE: &str = DEDICATED_ROLE;
const OTHER_REGION: &str = DEDICATED_REGION;

/// The kinds of resource `tenant` has in `cell`, read with `aws`.
async fn kinds(
    aws: &statehouse::aws::Aws,
    stack: &Stack,
    cell: &str,
    tenant: &str,
) -> Vec<&'static str> {
    let cell = stack.platform.cell(cell).unwrap();
    stack.leftovers_in(aws, cell, tenant).await
}

#[sqlx::test]
async fn a_cell_in_another_account_gets_its_tenants_there_and_deleting_leaves_nothing_in_either(
    pool: PgPool,
) {
    let mut stack = Stack::without_worker(pool, 1, Duration::from_secs(600)).await;
    stack
        .add_cell_in_account("dedicated", OTHER_ROLE, OTHER_REGION)
        .await;
    let other = stack.platform.cell("dedicated").unwrap().clone();
    assert_eq!(
        other.account, "222222222222",
        "bootstrapped in the role's account"
    );
    assert_ne!(other.account, stack.platform.account);
    stack.start_worker_observed(settings(), None);
    stack.create_in("vermont", spec(), "dedicated").await;
    stack.create("ohio", spec()).await;
    let vt = stack.ready("vermont").await;
    stack.ready("ohio").await;

    let there = stack.cell_aws["dedicated"].clone();
    let here = stack.aws.clone();
    assert_eq!(there.account_id().await.unwrap(), "222222222222");
    let slug = StateSlug::parse("vermont").unwrap();
    let names = other.names(&stack.platform.prefix, slug);
    assert_eq!(
        names.bucket,
        format!("humangov-vermont-222222222222-{OTHER_REGION}")
    );
    assert_eq!(
        vt.resources["task_role"]["arn"],
        format!("arn:aws:iam::222222222222:role/{}", names.task_role)
    );
    // Its stack is in the other account: bucket, role, the rest of it.
    assert!(bucket::exists(&there.s3, &names.bucket).await.unwrap());
    let spec_of_role = role::RoleSpec {
        name: &names.task_role,
        policy_name: &names.role_policy,
        account: &other.account,
        region: &other.region,
        bucket_arn: &bucket::arn(&names.bucket),
        table_arn: &other.table_arn(&names.table),
        tenant: slug,
    };
    assert!(role::observe(&there.iam, &spec_of_role)
        .await
        .unwrap()
        .is_some());
    let in_other = kinds(&there, &stack, "dedicated", "vermont").await;
    assert!(in_other.len() >= 8, "{in_other:?}");
    // And nothing of it is in the main account, where ohio is.
    assert!(role::observe(&here.iam, &spec_of_role)
        .await
        .unwrap()
        .is_none());
    assert!(kinds(&here, &stack, "cell-1", "vermont").await.is_empty());
    assert!(!kinds(&here, &stack, "cell-1", "ohio").await.is_empty());
    assert!(kinds(&there, &stack, "dedicated", "ohio").await.is_empty());

    stack.delete("vermont", DataPolicy::Purge).await;
    stack
        .wait_for("vermont", Duration::from_secs(120), |t| {
            t.status.as_str() == "deleted"
        })
        .await;
    assert_eq!(
        kinds(&there, &stack, "dedicated", "vermont").await,
        Vec::<&str>::new()
    );
    assert_eq!(
        kinds(&here, &stack, "cell-1", "vermont").await,
        Vec::<&str>::new()
    );
    assert!(!bucket::exists(&there.s3, &names.bucket).await.unwrap());
    stack.stop().await;
}

#[sqlx::test]
async fn a_role_that_cannot_be_assumed_fails_its_cell_s_tenants_clearly_and_the_other_cells_go_on(
    pool: PgPool,
) {
    let faults = FaultConfig::default().rule(Rule::error(
        "sts",
        "AssumeRole",
        403,
        "AccessDenied",
        "User is not authorized to perform: sts:AssumeRole on resource",
    ));
    let mut stack =
        Stack::without_worker_through(pool, 1, Duration::from_secs(600), Some(faults)).await;
    stack
        .add_cell_in_account("dedicated", OTHER_ROLE, OTHER_REGION)
        .await;
    stack.start_worker_observed(settings(), None);
    stack.create_in("vermont", spec(), "dedicated").await;
    stack.create("ohio", spec()).await;
    stack.ready("ohio").await;
    let vt = stack
        .wait_for("vermont", Duration::from_secs(60), |t| {
            t.last_error.as_deref().is_some_and(|e| e.contains("role"))
        })
        .await;
    let error = vt.last_error.unwrap_or_default();
    println!("vermont: {error}");
    assert!(error.contains(OTHER_ROLE), "{error}");
    assert!(error.contains("AccessDenied"), "{error}");
    stack.stop().await;
}

#[sqlx::test]
async fn the_sweep_inventories_every_cell_of_the_cells_file_each_in_its_account(pool: PgPool) {
    let stack = Stack::with_dedicated_cell(pool).await;
    stack.create_in("vermont", spec(), "dedicated").await;
    stack.create("ohio", spec()).await;
    stack.ready("vermont").await;
    stack.ready("ohio").await;
    // vermont's row is marked deleted behind the worker's back (kept off it by a lease held
    // past the test): its whole stack in the other account is orphaned.
    sqlx::query(
        "UPDATE tenants SET lease_token = gen_random_uuid(), lease_owner = 'test', \
             lease_expires_at = 'infinity', status = 'deleting', \
             deletion_requested_at = now(), data_policy = 'purge' WHERE name = 'vermont'",
    )
    .execute(&stack.pool)
    .await
    .unwrap();
    let vt = stack.tenant("vermont").await;
    let mut conn = stack.pool.acquire().await.unwrap();
    statehouse::db::tenants::mark_deleted(&mut conn, vt.id)
        .await
        .unwrap();
    drop(conn);

    let file = stack.cells_file();
    let sweep = |args: &'static [&'static str]| {
        let env = stack.command_env();
        let file = file.clone();
        async move {
            tokio::process::Command::new(env!("CARGO_BIN_EXE_statehouse"))
                .arg("sweep")
                .args(args)
                .envs(env)
                .env("STATEHOUSE_CELLS_FILE", &file)
                .env("STATEHOUSE_DB_MAX_CONNECTIONS", "2")
                .output()
                .await
                .expect("run statehouse sweep")
        }
    };
    let listed = sweep(&["--output", "json"]).await;
    let doc: serde_json::Value = serde_json::from_slice(&listed.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&listed.stderr)));
    let orphans: Vec<(String, String)> = doc["orphans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["tenant"].as_str().unwrap().to_owned(),
                o["kind"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        orphans.iter().all(|(t, _)| t == "vermont"),
        "only vermont's: {orphans:?}"
    );
    assert!(orphans.iter().any(|(_, k)| k == "bucket"), "{orphans:?}");
    assert!(orphans.iter().any(|(_, k)| k == "service"), "{orphans:?}");
    assert_eq!(listed.status.code(), Some(3), "orphans found");

    let deleted = sweep(&["--delete", "--include-data", "--output", "json"]).await;
    assert_eq!(
        deleted.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&deleted.stderr)
    );
    let there = stack.cell_aws["dedicated"].clone();
    assert_eq!(
        kinds(&there, &stack, "dedicated", "vermont").await,
        Vec::<&str>::new()
    );
    assert!(
        !kinds(&stack.aws, &stack, "cell-1", "ohio").await.is_empty(),
        "ohio is live and kept"
    );
    let _ = std::fs::remove_file(file);
    stack.stop().await;
}

#[sqlx::test]
async fn an_api_without_a_worker_reads_a_tenant_s_live_health_in_its_cell_s_own_account(
    pool: PgPool,
) {
    const TOKEN: &str = "accounts-test-admin-token-0123456789";
    let stack = Stack::with_dedicated_cell(pool).await;
    stack.create_in("vermont", spec(), "dedicated").await;
    stack.ready("vermont").await;

    let file = stack.cells_file();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut env = base_env(&stack, &database_url(&stack.pool));
    for (k, v) in [
        ("STATEHOUSE_LISTEN", format!("127.0.0.1:{port}")),
        ("STATEHOUSE_BOOTSTRAP_ADMIN_TOKEN", TOKEN.to_owned()),
        ("STATEHOUSE_CELLS_FILE", file.display().to_string()),
    ] {
        env.push((k.to_owned(), v));
    }
    let serve = Proc::spawn("serve-no-worker", &["serve", "--no-worker"], &env);
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/v1/tenants/vermont/health");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let reading: serde_json::Value = loop {
        if let Ok(r) = client.get(&url).bearer_auth(TOKEN).send().await {
            assert_eq!(r.status(), 200, "{}", serve.output());
            break r.json().await.unwrap();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "serve did not start:\n{}",
            serve.output()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Read in the dedicated cell's account, where the service runs; the main account has
    // no service of that name.
    assert_eq!(reading["health"]["tasks"]["running"], 1, "{reading}");
    let task_definition = reading["health"]["deployment"]["task_definition"]
        .as_str()
        .unwrap_or_default();
    assert!(
        task_definition.starts_with(&format!("arn:aws:ecs:{OTHER_REGION}:222222222222:")),
        "{reading}"
    );
    drop(serve);
    let _ = std::fs::remove_file(file);
    stack.stop().await;
}
