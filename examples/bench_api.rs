//! API benchmark (`make bench-api`), against the release build of `statehouse serve` as a
//! process of its own: reads under load next to `/healthz` as the ceiling, and a burst of
//! 500 mixed writes and reads at once with two CPU hogs running. Prints figures; asserts
//! nothing, so a noisy machine cannot make it flaky.
//!
//! `STATEHOUSE_BENCH_CASES` picks the cases (`reads`, `burst`; both by default),
//! `STATEHOUSE_BENCH_SECONDS` how long each read load is measured (default 10), and
//! `STATEHOUSE_BIN` the binary (default `target/release/statehouse`).

#[path = "../tests/support/moto.rs"]
mod moto;

// The benchmark uses the proxy's latency rule, not every builder the tests use.
#[allow(dead_code, unused_imports)]
#[path = "../tests/support/faults/mod.rs"]
mod faults;

#[path = "support/bench.rs"]
mod bench;

#[path = "bench_api/burst.rs"]
mod burst;

#[path = "bench_api/load.rs"]
mod load;

#[path = "bench_api/reads.rs"]
mod reads;

#[path = "bench_api/server.rs"]
mod server;

use std::time::Duration;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let admin_url = std::env::var("DATABASE_URL")
        .expect("DATABASE_URL of a Postgres the benchmark may create a database on");
    let seconds: u64 = std::env::var("STATEHOUSE_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let cases = std::env::var("STATEHOUSE_BENCH_CASES").unwrap_or_else(|_| "reads,burst".into());
    for case in cases.split(',') {
        match case.trim() {
            "reads" => reads::run(&admin_url, Duration::from_secs(seconds)).await,
            "burst" => burst::run(&admin_url).await,
            other => {
                eprintln!(
                    "STATEHOUSE_BENCH_CASES: unknown case \"{other}\", expected reads or burst"
                );
                std::process::exit(2);
            }
        }
    }
}
