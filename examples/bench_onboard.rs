//! Onboarding benchmark (`make bench`): N = 1, 10 and 56 tenants created through the API
//! against a fresh emulator, next to the emulator's floor measured in the same run: a plain
//! sequential loop issuing exactly the minimal calls for N tenants, with no orchestration.
//! Then the slow-emulator case: every call 100 ms later through a fault proxy that also
//! enforces AWS's ECS rate limits, 1 tenant and then 56, against the target of 56 in at
//! most twice the time of one. Prints figures; asserts nothing, so a noisy machine cannot
//! make it flaky.
//!
//! Then the rollout case (see rollout.rs): a new image to 56 ready tenants in waves against
//! 56 concurrent PATCHes, plain and slow, and how soon a rollout halts.
//!
//! `STATEHOUSE_BENCH_CASES` picks the cases (`plain`, `slow`, `rollout`; all by default) and
//! `STATEHOUSE_BENCH_FAULTS` replaces the slow case's fault rules (the proxy's text form).

#[path = "../tests/support/moto.rs"]
mod moto;

// The benchmark uses the proxy's text form and counters, not every builder the tests use.
#[allow(dead_code)]
#[path = "../tests/support/faults/mod.rs"]
mod faults;

#[path = "support/bench.rs"]
mod bench;

#[path = "bench_onboard/slow.rs"]
mod slow;

#[path = "bench_onboard/floor.rs"]
mod floor;

#[path = "bench_onboard/rollout.rs"]
mod rollout;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use aws_config::{BehaviorVersion, Region};
use aws_sdk_s3::config::Credentials;
use statehouse::{
    aws::{calls::is_mutating, Aws},
    domain::{spec::SpecDoc, state::StateSlug},
    http::{self, ApiSettings, AppState},
    metrics::Metrics,
    reconcile::{
        alarms::AlarmSettings,
        names::Prefix,
        platform::{Cell, Platform},
    },
    worker::{PassReport, Worker, WorkerSettings},
};

const REGION: &str = "us-east-1";
const TOKEN: &str = "bench-admin-token-0123456789";
/// The calls one fresh tenant needs in this design (see floor.rs, which issues them).
const MINIMAL_CALLS: usize = floor::MINIMAL_CALLS;

async fn aws_for(moto: &moto::Moto) -> Aws {
    aws_at(&moto.endpoint).await
}

/// Clients with the production timeouts and retries, at `endpoint`.
async fn aws_at(endpoint: &str) -> Aws {
    let config = statehouse::aws::client_policy(aws_config::defaults(BehaviorVersion::latest()))
        .region(Region::new(REGION))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new("bench", "bench", None, None, "bench"))
        .load()
        .await;
    Aws::new(&config)
}

async fn platform(moto: &moto::Moto) -> Platform {
    let bin = std::env::var("STATEHOUSE_BIN").unwrap_or_else(|_| "target/debug/statehouse".into());
    let env: HashMap<String, String> = bench::dev_bootstrap(&bin, &moto.endpoint)
        .await
        .into_iter()
        .collect();
    Platform {
        prefix: Prefix::parse("humangov").unwrap(),
        account: env["STATEHOUSE_ACCOUNT_ID"].clone(),
        region: REGION.into(),
        base_domain: env["STATEHOUSE_BASE_DOMAIN"].clone(),
        execution_role_arn: env["STATEHOUSE_EXECUTION_ROLE_ARN"].clone(),
        log_retention_days: 30,
        deployment_timeout: Duration::from_secs(600),
        alarms: AlarmSettings::default(),
        cells: vec![Cell {
            name: "cell-1".into(),
            cluster: env["STATEHOUSE_CLUSTER"].clone(),
            listener_arn: env["STATEHOUSE_LISTENER_ARN"].clone(),
            vpc_id: env["STATEHOUSE_VPC_ID"].clone(),
            subnets: env["STATEHOUSE_SUBNETS"]
                .split(',')
                .map(str::to_owned)
                .collect(),
            security_groups: vec![env["STATEHOUSE_SECURITY_GROUPS"].clone()],
            account: env["STATEHOUSE_ACCOUNT_ID"].clone(),
            region: REGION.into(),
            execution_role_arn: env["STATEHOUSE_EXECUTION_ROLE_ARN"].clone(),
            role_arn: None,
            alarm_topic_arn: None,
        }],
    }
}

fn spec() -> SpecDoc {
    SpecDoc {
        app_image: "humangov/app:1.0.0".into(),
        nginx_image: "nginx:1.27-alpine".into(),
        cpu: 256,
        memory: 512,
        desired_count: 1,
        min_count: 1,
        max_count: 2,
        env: Default::default(),
        sizing: Default::default(),
    }
}

/// A fresh database of the benchmark's own.
async fn database(admin_url: &str) -> sqlx::PgPool {
    let url = bench::fresh_database(admin_url, "statehouse_bench").await;
    let pool = statehouse::db::connect(&url, 20).await.unwrap();
    statehouse::db::MIGRATOR.run(&pool).await.unwrap();
    pool
}

struct Run {
    wall: Duration,
    /// What the fault proxy did, when the run went through one.
    faults: Option<String>,
    ready_after: Vec<Duration>,
    calls: usize,
    first_call_after: Vec<Duration>,
    /// One health observation of the whole cell once every tenant was ready: its AWS calls.
    health_calls: u64,
}

/// A fresh emulator (through a fault proxy, if given) with the shared platform, a fresh
/// database, and a worker and the API in this process.
struct Env {
    _moto: moto::Moto,
    proxy: Option<faults::FaultProxy>,
    aws: Aws,
    platform: Platform,
    pool: sqlx::PgPool,
    base: String,
    client: reqwest::Client,
    reports: Arc<Mutex<Vec<PassReport>>>,
    stop: tokio::sync::oneshot::Sender<()>,
    worker: tokio::task::JoinHandle<anyhow::Result<()>>,
    api: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Env {
    async fn start(admin_url: &str, faults: Option<&faults::FaultConfig>) -> Self {
        let moto = moto::Moto::start(10).await;
        let platform = platform(&moto).await;
        let proxy = match faults {
            Some(config) => Some(
                faults::FaultProxy::start(&moto.endpoint, config.clone())
                    .await
                    .expect("the fault proxy starts"),
            ),
            None => None,
        };
        let aws = aws_at(proxy.as_ref().map_or(&moto.endpoint, |p| &p.endpoint)).await;
        let pool = database(admin_url).await;
        let reports: Arc<Mutex<Vec<PassReport>>> = Arc::default();
        let sink = reports.clone();
        let worker = Worker {
            id: Worker::new_id(),
            pool: pool.clone(),
            aws: aws.clone(),
            cell_aws: Default::default(),
            platform: Arc::new(platform.clone()),
            settings: WorkerSettings {
                concurrency: 16,
                resync_interval: Duration::from_secs(3600),
                deep_resync_interval: Duration::from_secs(3600),
                lease_ttl: Duration::from_secs(30),
                retry_budget: Duration::from_secs(600),
                rollout_watch: Duration::from_secs(20),
                backoff_base: Duration::from_millis(500),
                backoff_max: Duration::from_secs(10),
                health_interval: Duration::from_secs(3600),
                rollout_gate_interval: Duration::from_secs(1),
                sizing: Default::default(),
            },
            metrics: Arc::new(Metrics::default()),
            observer: Some(Arc::new(move |r: &PassReport| {
                sink.lock().unwrap().push(r.clone())
            })),
        };
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let worker = tokio::spawn(worker.run(async {
            let _ = stop_rx.await;
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let settings = ApiSettings {
            spec_defaults: spec(),
            spec_limits: statehouse::domain::spec::SpecLimits::default(),
            cells: vec![statehouse::db::cells::CellCapacity {
                name: "cell-1".into(),
                capacity: 100,
                reserved_for: Vec::new(),
            }],
            prices: Default::default(),
        };
        let state = AppState::new(
            pool.clone(),
            settings,
            Arc::new(Metrics::default()),
            Some(statehouse::auth::hash_token(TOKEN)),
            statehouse::http::Tuning::default(),
        );
        let api = tokio::spawn(http::serve(listener, state, std::future::pending()));
        // Let the worker's LISTEN connections come up before any clock starts.
        tokio::time::sleep(Duration::from_millis(300)).await;
        Self {
            _moto: moto,
            proxy,
            aws,
            platform,
            pool,
            base,
            client: reqwest::Client::new(),
            reports,
            stop,
            worker,
            api,
        }
    }

    /// Creates the first `n` states' tenants through the API, one request after another.
    async fn create(&self, n: usize) {
        for slug in StateSlug::all().take(n) {
            let res = self
                .client
                .post(format!("{}/v1/tenants", self.base))
                .bearer_auth(TOKEN)
                .json(&serde_json::json!({ "name": slug.as_str() }))
                .send()
                .await
                .unwrap();
            assert_eq!(
                res.status(),
                202,
                "{}",
                res.text().await.unwrap_or_default()
            );
        }
    }

    /// Waits until `n` tenants are ready with generation `generation` or later.
    async fn ready(&self, n: usize, generation: i64) {
        let started = Instant::now();
        loop {
            let ready: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM tenants WHERE status = 'ready' AND observed_generation >= $1",
            )
            .bind(generation)
            .fetch_one(&self.pool)
            .await
            .unwrap();
            if ready as usize == n {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(600),
                "not all ready in 10 minutes"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.worker.await;
        self.api.abort();
        self.pool.close().await;
    }
}

async fn onboard(n: usize, admin_url: &str, faults: Option<&faults::FaultConfig>) -> Run {
    let env = Env::start(admin_url, faults).await;
    let calls_before = total(&env.aws);
    let started = Instant::now();
    env.create(n).await;
    env.ready(n, 1).await;
    let wall = started.elapsed();
    let ready_after: Vec<f64> = sqlx::query_scalar(
        "SELECT extract(epoch FROM e.at - t.created_at)::float8 FROM tenant_events e \
         JOIN tenants t ON t.id = e.tenant_id WHERE e.action = 'tenant.ready'",
    )
    .fetch_all(&env.pool)
    .await
    .unwrap();
    let calls = total(&env.aws) - calls_before;
    let health = statehouse::worker::health::observe_cell(
        &env.pool,
        &env.aws,
        &env.platform,
        "cell-1",
        &Metrics::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        health.observed + health.failed,
        n,
        "every tenant looked at: {health:?}"
    );
    let first_call_after = env
        .reports
        .lock()
        .unwrap()
        .iter()
        .filter_map(|r| r.first_call_after)
        .collect();
    let faults = env.proxy.as_ref().map(|p| p.summary());
    env.stop().await;
    Run {
        wall,
        faults,
        ready_after: ready_after
            .into_iter()
            .map(Duration::from_secs_f64)
            .collect(),
        calls,
        first_call_after,
        health_calls: health.aws_calls,
    }
}

fn total(aws: &Aws) -> usize {
    aws.calls.snapshot().values().sum::<u64>() as usize
}

#[allow(dead_code)]
fn mutating(aws: &Aws) -> usize {
    aws.calls
        .snapshot()
        .iter()
        .filter(|(k, _)| is_mutating(&k.operation))
        .map(|(_, n)| *n as usize)
        .sum()
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() {
    let admin_url = std::env::var("DATABASE_URL")
        .expect("DATABASE_URL of a Postgres the benchmark may create a database on");
    let cases =
        std::env::var("STATEHOUSE_BENCH_CASES").unwrap_or_else(|_| "plain,slow,rollout".into());
    let slow_faults = match slow::faults() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("STATEHOUSE_BENCH_FAULTS: {e}");
            std::process::exit(2);
        }
    };
    for case in cases.split(',') {
        match case.trim() {
            "plain" => plain(&admin_url).await,
            "slow" => slow::run(&admin_url, &slow_faults).await,
            "rollout" => rollout::run(&admin_url, &slow_faults).await,
            other => {
                eprintln!(
                    "STATEHOUSE_BENCH_CASES: unknown case \"{other}\", expected plain, slow or rollout"
                );
                std::process::exit(2);
            }
        }
    }
}

async fn plain(admin_url: &str) {
    println!(
        "statehouse onboarding benchmark: debug build, moto server emulator, Postgres on loopback"
    );
    println!("minimal AWS calls per fresh tenant in this design: {MINIMAL_CALLS}");
    println!();
    println!(
        "{:>3}  {:>10}  {:>10}  {:>6}  {:>10}  {:>10}  {:>10}  {:>9}  {:>14}",
        "N",
        "wall",
        "floor",
        "ratio",
        "ready p50",
        "ready p99",
        "calls/ten.",
        "vs min",
        "1st call p50/max"
    );
    let mut health_rounds = Vec::new();
    for n in [1usize, 10, 56] {
        let floor_time = {
            let moto = moto::Moto::start(10).await;
            let platform = platform(&moto).await;
            let aws = aws_for(&moto).await;
            floor::run(&aws, &platform, n).await
        };
        let run = onboard(n, admin_url, None).await;
        health_rounds.push((n, run.health_calls));
        let per_tenant = run.calls as f64 / n as f64;
        println!(
            "{:>3}  {:>10}  {:>10}  {:>6.2}  {:>10}  {:>10}  {:>10.1}  {:>9.2}  {:>14}",
            n,
            ms(run.wall),
            ms(floor_time),
            run.wall.as_secs_f64() / floor_time.as_secs_f64(),
            ms(bench::percentile(&run.ready_after, 0.5)),
            ms(bench::percentile(&run.ready_after, 0.99)),
            per_tenant,
            per_tenant / MINIMAL_CALLS as f64,
            format!(
                "{}/{}",
                ms(bench::percentile(&run.first_call_after, 0.5)),
                ms(bench::percentile(&run.first_call_after, 1.0))
            ),
        );
    }
    println!();
    println!("wall: first POST to every tenant ready; floor: a sequential loop of only the minimal calls on a fresh emulator;");
    println!("ready: POST to the tenant.ready event; 1st call: API write to the first AWS call of the pass it triggered");
    println!("(past 16 tenants, the worker's concurrency, a tenant also waits for a free slot).");
    println!(
        "Targets: ratio at N=56 <= 1.5; calls per tenant <= 1.2 x minimum; first call < 50 ms."
    );
    println!();
    println!("health observation: one round over the cell once every tenant is ready");
    println!("{:>3}  {:>10}  {:>14}", "N", "AWS calls", "calls/tenant");
    for (n, calls) in health_rounds {
        println!("{n:>3}  {calls:>10}  {:>14.2}", calls as f64 / n as f64);
    }
    println!("Target: <= 1.5 calls per tenant, DescribeTargetHealth the only call per tenant.");
    println!();
}
