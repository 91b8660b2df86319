//! Postgres restarted under a running `statehouse serve` (API and worker): while it is down
//! the API answers 503 problem+json, and afterwards the API, the worker and its LISTEN
//! connection recover by themselves, without restarting statehouse.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::{postgres::PgPoolOptions, Connection, PgConnection};

use crate::{
    harness::Stack,
    process::{worker_env, Proc},
};

const TOKEN: &str = "restart-test-admin-token-0123456789";

/// A Postgres server of the test's own, on a free port, so it can be stopped without
/// disturbing anyone else. As root, the server runs as the `postgres` user (initdb and
/// postgres refuse to run as root).
struct PrivatePostgres {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
}

fn pg_bin() -> PathBuf {
    if let Ok(dir) = std::env::var("STATEHOUSE_PG_BIN") {
        return dir.into();
    }
    let out = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .expect("pg_config (PostgreSQL's, to find initdb and pg_ctl)");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

fn as_owner(program: &Path) -> Command {
    // SAFETY: geteuid(2) has no preconditions and no effects.
    if unsafe { libc::geteuid() } == 0 {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn run(mut command: Command, what: &str) {
    let out = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl PrivatePostgres {
    fn init() -> Self {
        let bin = pg_bin();
        let dir = std::env::temp_dir().join(format!("statehouse-pg-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        // SAFETY: as above.
        if unsafe { libc::geteuid() } == 0 {
            let mut chown = Command::new("chown");
            chown.args(["-R", "postgres"]).arg(&dir);
            run(chown, "chown the data directory to postgres");
        }
        let mut initdb = as_owner(&bin.join("initdb"));
        initdb
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "-D",
            ])
            .arg(dir.join("data"));
        run(initdb, "initdb");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let pg = Self { bin, dir, port };
        pg.start();
        pg
    }

    fn ctl(&self, args: &[&str]) -> Command {
        let mut c = as_owner(&self.bin.join("pg_ctl"));
        c.arg("-D").arg(self.dir.join("data")).args(args);
        c
    }

    fn start(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.display()
        );
        let mut c = self.ctl(&["-w", "-o", &options, "-l"]);
        c.arg(self.dir.join("server.log")).arg("start");
        run(c, "pg_ctl start");
    }

    fn stop(&self) {
        run(self.ctl(&["-w", "-m", "fast", "stop"]), "pg_ctl stop");
    }

    fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self.ctl(&["-m", "immediate", "stop"]).output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

struct Api {
    base: String,
    client: reqwest::Client,
}

impl Api {
    async fn get(&self, path: &str) -> reqwest::Result<reqwest::Response> {
        self.client
            .get(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .timeout(Duration::from_secs(10))
            .send()
            .await
    }

    async fn create(&self, name: &str) -> reqwest::Response {
        self.client
            .post(format!("{}/v1/tenants", self.base))
            .bearer_auth(TOKEN)
            .json(&json!({ "name": name }))
            .send()
            .await
            .expect("POST /v1/tenants")
    }

    async fn status(&self, name: &str) -> Option<String> {
        let r = self.get(&format!("/v1/tenants/{name}")).await.ok()?;
        let body: Value = r.json().await.ok()?;
        body["status"].as_str().map(str::to_owned)
    }

    async fn wait_status(&self, name: &str, want: &str, within: Duration) -> Duration {
        self.wait_until(name, |s| s == want, within).await
    }

    async fn wait_until(
        &self,
        name: &str,
        done: impl Fn(&str) -> bool,
        within: Duration,
    ) -> Duration {
        let started = Instant::now();
        loop {
            let status = self.status(name).await;
            if status.as_deref().is_some_and(&done) {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < within,
                "{name} is still {status:?} after {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Asserts the database-down answer: 503, problem+json, a Retry-After.
    async fn assert_unavailable(&self, path: &str) {
        let r = self.get(path).await.expect("the API still answers");
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE, "{path}");
        let headers = r.headers().clone();
        assert_eq!(
            headers["content-type"], "application/problem+json",
            "{path}"
        );
        assert!(headers.contains_key("retry-after"), "{path}: {headers:?}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["type"], "urn:statehouse:problem:unavailable", "{body}");
        assert_eq!(body["status"], 503);
    }
}

#[tokio::test]
async fn the_api_answers_503_while_postgres_is_down_and_everything_recovers_after() {
    let pg = PrivatePostgres::init();
    let mut admin = PgConnection::connect(&pg.url("postgres")).await.unwrap();
    sqlx::query("CREATE DATABASE statehouse")
        .execute(&mut admin)
        .await
        .unwrap();
    admin.close().await.unwrap();
    let url = pg.url("statehouse");
    // The stack's own pool is only used to set up the emulator; the API does the rest.
    let pool = PgPoolOptions::new().connect_lazy(&url).unwrap();
    let stack = Stack::without_worker(pool, 10, Duration::from_secs(600)).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut env = worker_env(&stack, &url, "6s");
    env.push(("STATEHOUSE_LISTEN".into(), format!("127.0.0.1:{port}")));
    env.push(("STATEHOUSE_BOOTSTRAP_ADMIN_TOKEN".into(), TOKEN.into()));
    let mut serve = Proc::spawn("serve", &["serve"], &env);
    let api = Api {
        base: format!("http://127.0.0.1:{port}"),
        client: reqwest::Client::new(),
    };
    let started = Instant::now();
    while !api
        .get("/readyz")
        .await
        .is_ok_and(|r| r.status() == StatusCode::OK)
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "serve did not start:\n{}",
            serve.output()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    for name in ["ohio", "iowa"] {
        assert_eq!(api.create(name).await.status(), StatusCode::ACCEPTED);
    }
    for name in ["ohio", "iowa"] {
        api.wait_status(name, "ready", Duration::from_secs(60))
            .await;
    }
    // Created just before the outage: its pass is under way when Postgres goes.
    assert_eq!(api.create("utah").await.status(), StatusCode::ACCEPTED);

    pg.stop();
    for path in ["/v1/tenants", "/v1/tenants/ohio", "/readyz"] {
        api.assert_unavailable(path).await;
    }
    let create = api.create("texas").await;
    assert_eq!(create.status(), StatusCode::SERVICE_UNAVAILABLE);
    // Long enough for the worker's heartbeats, claims and LISTEN connection to fail.
    tokio::time::sleep(Duration::from_secs(3)).await;
    api.assert_unavailable("/v1/tenants").await;

    pg.start();
    let down_until = Instant::now();
    loop {
        if api
            .get("/v1/tenants")
            .await
            .is_ok_and(|r| r.status() == StatusCode::OK)
        {
            break;
        }
        assert!(
            down_until.elapsed() < Duration::from_secs(20),
            "the API did not recover:\n{}",
            serve.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let api_back = down_until.elapsed();
    api.wait_status("utah", "ready", Duration::from_secs(60))
        .await;
    // Once the worker's LISTEN connection is back, NOTIFY wakes it again: each new tenant
    // is claimed at once, not at the next idle wake-up (up to 5 s).
    let mut watcher = PgConnection::connect(&url).await.unwrap();
    let listening_since = Instant::now();
    loop {
        let listening: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'LISTEN %' AND pid <> pg_backend_pid()",
        )
        .fetch_one(&mut watcher)
        .await
        .unwrap();
        if listening > 0 {
            break;
        }
        assert!(
            listening_since.elapsed() < Duration::from_secs(30),
            "the worker never listened again:\n{}",
            serve.output()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut picked_up = Vec::new();
    for name in ["texas", "nevada", "oregon"] {
        assert_eq!(api.create(name).await.status(), StatusCode::ACCEPTED);
        let claimed = api
            .wait_until(name, |s| s != "pending", Duration::from_secs(10))
            .await;
        picked_up.push(claimed);
        api.wait_status(name, "ready", Duration::from_secs(60))
            .await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    eprintln!(
        "postgres restart: API answered 200 again {api_back:.1?} after the restart; new tenants \
         picked up in {picked_up:.1?}"
    );
    assert!(
        picked_up.iter().all(|d| *d < Duration::from_millis(1500)),
        "NOTIFY did not wake the worker after the restart: {picked_up:?}\n{}",
        serve.output()
    );
    for name in ["ohio", "iowa", "utah", "texas", "nevada", "oregon"] {
        assert_eq!(api.status(name).await.as_deref(), Some("ready"), "{name}");
    }
    serve.kill().await;
}
