use std::{
    io::Read,
    process::{Command, Output, Stdio},
    time::Duration,
};

use reqwest::StatusCode;
use sqlx::PgPool;

use crate::helpers::TestApp;

const BIN: &str = env!("CARGO_BIN_EXE_statehouse");

/// The URL of this test's own database.
fn database_url(pool: &PgPool) -> String {
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL for the tests");
    let (server, _) = base.rsplit_once('/').expect("a database URL");
    format!(
        "{server}/{}",
        pool.connect_options()
            .get_database()
            .expect("a database name")
    )
}

fn statehouse(pool: &PgPool, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("DATABASE_URL", database_url(pool))
        .output()
        .expect("run statehouse")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[sqlx::test]
async fn a_created_key_is_printed_once_works_and_is_never_listed(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let created = statehouse(
        &pool,
        &["keys", "create", "--name", "deploy-bot", "--role", "viewer"],
    );
    assert!(created.status.success(), "{}", text(&created.stderr));
    let token = text(&created.stdout).trim().to_owned();
    assert!(token.starts_with("shk_"));
    assert!(text(&created.stderr).contains("cannot be shown again"));

    let allowed = app
        .client
        .get(app.url("/v1/tenants"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status(), StatusCode::OK);
    let denied = app
        .client
        .delete(app.url("/v1/tenants/ohio"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), StatusCode::FORBIDDEN);

    let listed = statehouse(&pool, &["keys", "list"]);
    let table = text(&listed.stdout);
    assert!(
        table.contains("deploy-bot") && table.contains("viewer"),
        "{table}"
    );
    assert!(!table.contains(&token));
    let json = statehouse(&pool, &["keys", "list", "--json"]);
    let keys: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert!(keys
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k["name"] == "deploy-bot" && k["last_used_at"].is_string()));
}

#[sqlx::test]
async fn a_revoked_key_is_refused_and_its_name_can_be_reused(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let token = text(
        &statehouse(
            &pool,
            &["keys", "create", "--name", "temp", "--role", "admin"],
        )
        .stdout,
    )
    .trim()
    .to_owned();
    let revoked = statehouse(&pool, &["keys", "revoke", "temp"]);
    assert!(revoked.status.success(), "{}", text(&revoked.stderr));
    let refused = app
        .client
        .get(app.url("/v1/tenants"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert!(statehouse(
        &pool,
        &["keys", "create", "--name", "temp", "--role", "admin"]
    )
    .status
    .success());
    assert!(text(&statehouse(&pool, &["keys", "list", "--all"]).stdout).contains("revoked"));
}

#[sqlx::test]
async fn key_commands_fail_clearly_on_bad_input(pool: PgPool) {
    let _app = TestApp::spawn(pool.clone()).await;
    let unknown = statehouse(&pool, &["keys", "revoke", "nobody"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(text(&unknown.stderr).contains("no active key named `nobody`"));
    let duplicate = statehouse(
        &pool,
        &["keys", "create", "--name", "ops", "--role", "admin"],
    );
    assert_eq!(duplicate.status.code(), Some(1));
    assert!(text(&duplicate.stderr).contains("already exists"));
    let bad_name = statehouse(
        &pool,
        &["keys", "create", "--name", "Bad Name", "--role", "admin"],
    );
    assert_eq!(bad_name.status.code(), Some(1));
    let reserved = statehouse(
        &pool,
        &["keys", "create", "--name", "bootstrap", "--role", "admin"],
    );
    assert!(text(&reserved.stderr).contains("reserved"));
    let bad_role = statehouse(&pool, &["keys", "create", "--name", "x", "--role", "root"]);
    assert_eq!(bad_role.status.code(), Some(2), "usage errors exit 2");
}

#[test]
fn the_openapi_command_prints_the_committed_document() {
    let out = Command::new(BIN).arg("openapi").output().unwrap();
    assert!(out.status.success());
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json"))
            .unwrap();
    assert_eq!(text(&out.stdout).trim_end(), committed.trim_end());
}

#[sqlx::test]
async fn serve_refuses_a_short_bootstrap_token(pool: PgPool) {
    let out = Command::new(BIN)
        .args(["serve", "--no-worker", "--listen", "127.0.0.1:0"])
        .env("DATABASE_URL", database_url(&pool))
        .env("STATEHOUSE_BOOTSTRAP_ADMIN_TOKEN", "short")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("at least 16 characters"));
}

#[sqlx::test]
async fn serve_worker_and_sweep_refuse_a_wrong_cells_file_naming_the_cell_and_the_field(
    pool: PgPool,
) {
    let dir = std::env::temp_dir().join(format!("statehouse-cells-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("cells.toml");
    // The second cell's role ARN has a 4-digit account.
    std::fs::write(
        &file,
        r#"
[[cell]]
name = "cell-1"
region = "us-east-1"
cluster = "statehouse"
listener_arn = "arn:aws:elasticloadbalancing:us-east-1:111111111111:listener/app/shared/50dc6c495c0c9188/f2f7dc8efc522ab2"
vpc_id = "vpc-0a"
subnets = ["subnet-0a"]
security_groups = ["sg-0a"]
execution_role_arn = "arn:aws:iam::111111111111:role/statehouse-execution"

[[cell]]
name = "ca-dedicated"
region = "us-west-1"
role_arn = "arn:aws:iam::2222:role/statehouse-cell"
cluster = "statehouse"
listener_arn = "arn:aws:elasticloadbalancing:us-west-1:222222222222:listener/app/shared/60dc6c495c0c9188/a2f7dc8efc522ab2"
vpc_id = "vpc-0b"
subnets = ["subnet-1a"]
security_groups = ["sg-1a"]
execution_role_arn = "arn:aws:iam::222222222222:role/statehouse-execution"
"#,
    )
    .unwrap();
    for args in [
        &["serve", "--no-worker", "--listen", "127.0.0.1:0"][..],
        &["serve", "--listen", "127.0.0.1:0"][..],
        &["worker", "--listen", "127.0.0.1:0"][..],
        &["sweep"][..],
    ] {
        let out = Command::new(BIN)
            .args(args)
            .env("DATABASE_URL", database_url(&pool))
            .env("STATEHOUSE_CELLS_FILE", &file)
            .env("STATEHOUSE_BASE_DOMAIN", "humangov.example")
            .env("AWS_REGION", "us-east-1")
            .env("STATEHOUSE_ACCOUNT_ID", "111111111111")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
            .stdout(Stdio::null())
            .output()
            .unwrap();
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains("cell `ca-dedicated`: `role_arn` is not an iam ARN"),
            "{args:?}: {stderr}"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[sqlx::test]
async fn serve_migrates_logs_json_with_request_ids_and_stops_cleanly_on_sigterm(pool: PgPool) {
    // A bare database: the server must migrate it before it is ready.
    sqlx::raw_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
        .execute(&pool)
        .await
        .unwrap();
    let port = free_port();
    let mut child = Command::new(BIN)
        .args(["serve", "--no-worker"])
        .env("DATABASE_URL", database_url(&pool))
        .env("STATEHOUSE_LISTEN", format!("127.0.0.1:{port}"))
        .env("STATEHOUSE_LOG_FORMAT", "json")
        .env(
            "STATEHOUSE_BOOTSTRAP_ADMIN_TOKEN",
            "a-long-enough-bootstrap-token",
        )
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let mut up = false;
    for _ in 0..100 {
        if client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        up,
        "the server became ready after migrating a bare database"
    );
    let created = client
        .post(format!("{base}/v1/tenants"))
        .bearer_auth("a-long-enough-bootstrap-token")
        .header("x-request-id", "req-from-test-7")
        .json(&serde_json::json!({"name": "wisconsin"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::ACCEPTED);

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "exit after SIGTERM: {status:?}");
    let mut logs = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    let with_id: Vec<serde_json::Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["span"]["request_id"] == "req-from-test-7")
        .collect();
    assert!(
        !with_id.is_empty(),
        "no JSON log line carries the request id:\n{logs}"
    );
    assert!(
        !logs.contains("a-long-enough-bootstrap-token"),
        "the token was logged"
    );
}
