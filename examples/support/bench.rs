//! What the benchmarks share: a fresh database, the shared platform in the emulator, and
//! percentiles.

use std::{process::Stdio, time::Duration};

/// Drops and creates the database `name` on the server of `admin_url`, and returns its URL.
pub async fn fresh_database(admin_url: &str, name: &str) -> String {
    let admin = sqlx::PgPool::connect(admin_url)
        .await
        .expect("connect to Postgres");
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&admin)
        .await
        .unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    let (server, _) = admin_url.rsplit_once('/').expect("a database URL");
    let options = std::env::var("STATEHOUSE_BENCH_DB_OPTIONS").unwrap_or_default();
    format!("{server}/{name}{options}")
}

/// The shared platform made in the emulator at `endpoint` by `statehouse dev bootstrap`
/// (the binary `bin`): the settings a server or worker needs, `AWS_ENDPOINT_URL` and
/// `STATEHOUSE_CLUSTER` among them.
pub async fn dev_bootstrap(bin: &str, endpoint: &str) -> Vec<(String, String)> {
    let out = std::env::temp_dir().join(format!(
        "statehouse-bench-{}-{}.env",
        std::process::id(),
        uuid::Uuid::now_v7()
    ));
    let status = tokio::process::Command::new(bin)
        .args(["dev", "bootstrap", "--out"])
        .arg(&out)
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "bench")
        .env("AWS_SECRET_ACCESS_KEY", "bench")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .expect("run statehouse dev bootstrap");
    assert!(status.success(), "dev bootstrap failed");
    let text = std::fs::read_to_string(&out).expect("the bootstrap's settings");
    let _ = std::fs::remove_file(out);
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// The `p` quantile of `values`.
pub fn percentile(values: &[Duration], p: f64) -> Duration {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}
