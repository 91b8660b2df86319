//! A real `statehouse serve` (API and worker) on a loopback port, over a private emulator
//! holding the shared platform made by `statehouse dev bootstrap`, and this test's own
//! database; and the CLI run against it as a subprocess.

use std::{
    collections::HashMap,
    io::Write,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use serde_json::Value;
use sqlx::PgPool;

use crate::moto::Moto;

pub const BIN: &str = env!("CARGO_BIN_EXE_statehouse");
pub const TOKEN: &str = "cli-test-admin-token-0123456789";
const REGION: &str = "us-west-2";

pub struct Server {
    pub url: String,
    pub database_url: String,
    pub dir: TempDir,
    child: Child,
    /// What `statehouse dev bootstrap` wrote.
    platform: HashMap<String, String>,
    moto: Moto,
}

/// A directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("statehouse-cli-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        Self(dir)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("write a temporary file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The URL of this test's own database.
fn database_url(pool: &PgPool) -> String {
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL for the tests");
    let (server, _) = base.rsplit_once('/').expect("a database URL");
    let name = pool.connect_options();
    format!("{server}/{}", name.get_database().expect("a database name"))
}

fn aws_env(moto: &Moto) -> [(&'static str, String); 4] {
    [
        ("AWS_ENDPOINT_URL", moto.endpoint.clone()),
        ("AWS_REGION", REGION.to_owned()),
        ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
    ]
}

fn bootstrap(moto: &Moto, dir: &Path) -> HashMap<String, String> {
    let out = dir.join("platform.env");
    let status = Command::new(BIN)
        .args(["dev", "bootstrap", "--out"])
        .arg(&out)
        .envs(aws_env(moto))
        .stdout(Stdio::null())
        .status()
        .expect("run statehouse dev bootstrap");
    assert!(status.success(), "dev bootstrap failed");
    std::fs::read_to_string(&out)
        .expect("the bootstrap's env file")
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

impl Server {
    /// `running_tasks` is what the emulator's ECS services run (0: deployments never
    /// finish); `env` adds or overrides server settings.
    pub async fn start(pool: &PgPool, running_tasks: u32, env: &[(&str, &str)]) -> Self {
        let moto = Moto::start(running_tasks).await;
        let dir = TempDir::new();
        let platform = bootstrap(&moto, &dir.0);
        let port = free_port();
        let database_url = database_url(pool);
        let log = std::fs::File::create(dir.0.join("server.log")).expect("a log file");
        let child = Command::new(BIN)
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("DATABASE_URL", &database_url)
            .env("STATEHOUSE_LISTEN", format!("127.0.0.1:{port}"))
            .env("STATEHOUSE_BOOTSTRAP_ADMIN_TOKEN", TOKEN)
            .env("STATEHOUSE_LOG", "warn")
            .env("STATEHOUSE_DEFAULT_APP_IMAGE", "humangov/app:1.0.0")
            .env("STATEHOUSE_ROLLOUT_WATCH", "2s")
            .env("STATEHOUSE_BACKOFF_BASE", "200ms")
            .env("STATEHOUSE_BACKOFF_MAX", "2s")
            .env("STATEHOUSE_LEASE_TTL", "15s")
            .env("STATEHOUSE_RETRY_BUDGET", "60s")
            .env("STATEHOUSE_DB_MAX_CONNECTIONS", "4")
            .env("STATEHOUSE_WORKER_CONCURRENCY", "8")
            // The emulator has no limits: the budget's buckets are sized far above any test.
            .env("STATEHOUSE_AWS_BUDGET_SHARE", "1")
            .env("STATEHOUSE_AWS_LIMITS", "ecs-read=1000/1000,ecs-write=1000/1000,ecs-register-task-definition=1000/1000,elb=1000/1000,logs=1000/1000,iam=1000/1000,s3=1000/1000,dynamodb=1000/1000,application-autoscaling=1000/1000,cloudwatch=1000/1000")
            .envs(aws_env(&moto))
            .envs(&platform)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start statehouse serve");
        let server = Self {
            url: format!("http://127.0.0.1:{port}"),
            database_url,
            dir,
            child,
            platform,
            moto,
        };
        server.wait_until_ready().await;
        server
    }

    async fn wait_until_ready(&self) {
        let client = reqwest::Client::new();
        for _ in 0..300 {
            if client
                .get(format!("{}/readyz", self.url))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("statehouse serve did not become ready:\n{}", self.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("server.log")).unwrap_or_default()
    }

    /// A new API key with `role` (`statehouse keys create`, on the server's database).
    pub fn create_key(&self, name: &str, role: &str) -> String {
        let out = std::process::Command::new(BIN)
            .args(["keys", "create", "--name", name, "--role", role])
            .env("DATABASE_URL", &self.database_url)
            .output()
            .expect("create a key");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// The CLI with this server's URL and admin key in its environment.
    pub fn cli(&self, args: &[&str]) -> Run {
        self.cli_with(args, &[], None)
    }

    pub fn cli_with(&self, args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Run {
        let mut all = vec![
            ("STATEHOUSE_API_URL", self.url.as_str()),
            ("STATEHOUSE_TOKEN", TOKEN),
        ];
        all.extend_from_slice(env);
        cli(args, &all, stdin)
    }

    /// `statehouse dev …` against this server's emulator and shared platform.
    pub fn dev(&self, args: &[&str]) -> Run {
        let aws = aws_env(&self.moto);
        let env: Vec<(&str, &str)> = aws
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .chain(self.platform.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .collect();
        let mut dev = vec!["dev"];
        dev.extend_from_slice(args);
        cli(&dev, &env, None)
    }

    /// The CLI started in the background (for `--follow`).
    pub fn spawn_cli(&self, args: &[&str]) -> Child {
        base_command(args)
            .env("STATEHOUSE_API_URL", &self.url)
            .env("STATEHOUSE_TOKEN", TOKEN)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the CLI")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one CLI run printed and how it exited.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Asserts the exit code, showing everything the command printed when it differs.
    pub fn expect(&self, code: i32) -> &Self {
        assert_eq!(self.code, Some(code), "exit code of a CLI run:\n{self}");
        self
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{self}"))
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// The CLI with nothing from the caller's environment that could point it elsewhere.
fn base_command(args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env_remove("STATEHOUSE_API_URL")
        .env_remove("STATEHOUSE_TOKEN")
        .env_remove("STATEHOUSE_PROFILE")
        .env("STATEHOUSE_CONFIG", "/nonexistent/statehouse/config.toml");
    command
}

/// Runs the CLI to completion; stdin is empty unless given (never a terminal).
pub fn cli(args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Run {
    let mut child = base_command(args)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the CLI");
    let mut input = child.stdin.take().expect("stdin");
    input
        .write_all(stdin.unwrap_or_default().as_bytes())
        .expect("write stdin");
    drop(input);
    let out = child.wait_with_output().expect("the CLI's output");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
