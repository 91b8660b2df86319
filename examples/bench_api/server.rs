//! `statehouse serve` as its own process, as in production, on a fresh database.

use std::{
    process::Stdio,
    time::{Duration, Instant},
};

use statehouse::domain::state::StateSlug;
use tokio::process::{Child, Command};

pub const ADMIN_TOKEN: &str = "bench-api-admin-token-0123456789";

pub struct Server {
    pub addr: String,
    pub database_url: String,
    child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

fn binary() -> String {
    std::env::var("STATEHOUSE_BIN").unwrap_or_else(|_| "target/release/statehouse".into())
}

/// The server's own settings set for the benchmark (`STATEHOUSE_LOG`,
/// `STATEHOUSE_DB_MAX_CONNECTIONS`, …), to measure them.
fn settings_from_environment() -> Vec<(String, String)> {
    std::env::vars()
        .filter(|(k, _)| {
            k.starts_with("STATEHOUSE_")
                && !k.starts_with("STATEHOUSE_BENCH")
                && k != "STATEHOUSE_BIN"
        })
        .collect()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Server {
    /// `statehouse serve` with `args` and `env` on top of the database and a bootstrap
    /// token; its log goes to `log`, at the level a production server logs at.
    pub async fn start(
        database_url: &str,
        args: &[&str],
        env: &[(String, String)],
        log: &str,
    ) -> Self {
        let addr = format!("127.0.0.1:{}", free_port());
        let log = std::fs::File::create(log).expect("the server's log file");
        let child = Command::new(binary())
            .arg("serve")
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATABASE_URL", database_url)
            .env("STATEHOUSE_LISTEN", &addr)
            .env("STATEHOUSE_BOOTSTRAP_ADMIN_TOKEN", ADMIN_TOKEN)
            .envs(settings_from_environment())
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("the log file"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("start statehouse serve");
        let server = Self {
            addr,
            database_url: database_url.to_owned(),
            child,
        };
        let client = reqwest::Client::new();
        let started = Instant::now();
        while !client
            .get(format!("http://{}/readyz", server.addr))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "serve did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        server
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Creates the tenants of `states` with the bootstrap token.
    pub async fn create(&self, client: &reqwest::Client, states: &[StateSlug]) {
        for state in states {
            let created = client
                .post(self.url("/v1/tenants"))
                .bearer_auth(ADMIN_TOKEN)
                .json(&serde_json::json!({ "name": state.as_str() }))
                .send()
                .await
                .expect("create");
            assert_eq!(created.status(), 202);
        }
    }

    /// A named key made as an operator makes one: `statehouse keys create`.
    pub async fn key(&self, name: &str, role: &str) -> String {
        let out = Command::new(binary())
            .args(["keys", "create", "--name", name, "--role", role])
            .env("DATABASE_URL", &self.database_url)
            .output()
            .await
            .expect("statehouse keys create");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .find(|w| w.starts_with(statehouse::auth::TOKEN_PREFIX))
            .expect("the new key")
            .to_owned()
    }
}

/// The shared platform in the emulator at `endpoint`, and the AWS settings to reach it.
pub async fn dev_bootstrap(endpoint: &str) -> Vec<(String, String)> {
    let mut env = crate::bench::dev_bootstrap(&binary(), endpoint).await;
    env.extend(
        [
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "bench"),
            ("AWS_SECRET_ACCESS_KEY", "bench"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    env
}
