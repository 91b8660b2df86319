//! The fleet-scale benchmark (`make bench-scale`): what statehouse costs AWS per tenant at
//! rest, against AWS's documented limits, and how long onboarding takes across cells in two
//! accounts and two regions against the same in one cell. Against the emulator, with the
//! worker and its call budget in this process. Prints figures; asserts nothing.
//!
//! 1. Onboarding: 56 tenants in one cell, then 56 across three cells (two in the main
//!    account and region, one in a second account, reached by AssumeRole, in another
//!    region), each on a fresh emulator and database; the time until all are ready.
//! 2. Read calls per tenant per resync, by AWS bucket: one resync round of every cell
//!    (batched), and one deep check of every tenant with the roles' check of each account,
//!    amortized over the deep interval (at the default 5-minute resync and 1-hour deep
//!    interval, a twelfth of them per resync).
//! 3. Projection: from those per-tenant costs, the share of each documented limit 56 tenants
//!    use at a 5-minute resync, and how many tenants one account and region could hold under
//!    20 % of every limit. A round's calls are part fixed per cell (the load balancer's
//!    target groups, the listener's rules) and part per tenant (the batches): measured in
//!    one cell of 56 and in three cells of the same 56, they give both parts, and a large
//!    fleet is projected in full cells (placement fills a cell before the next).
//! 4. At rest, per tenant per hour: worker passes, AWS calls, events written (and the health
//!    observer's calls, reported apart: it is not part of the resync).
//!
//! `STATEHOUSE_BENCH_BUDGET_SHARE` (default 1: the emulator is the benchmark's alone) is the
//! call budget's share during onboarding.

#[path = "../tests/support/moto.rs"]
mod moto;

#[path = "support/bench.rs"]
#[allow(dead_code)]
mod bench;

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use aws_config::{BehaviorVersion, Region};
use aws_sdk_s3::config::Credentials;
use statehouse::{
    aws::{
        budget::{Bucket, BudgetSettings},
        Aws,
    },
    domain::{spec::SpecDoc, state::StateSlug},
    metrics::Metrics,
    reconcile::{
        alarms::AlarmSettings,
        names::Prefix,
        platform::{Cell, Platform},
        resync::TaskDefinitions,
    },
    worker::{resync::resync_cell, PassReport, Worker, WorkerSettings},
};

const REGION: &str = "us-east-1";
const OTHER_REGION: &str = "us-west-2";
const OTHER_ROLE: &str = "arn:aws:iam::222222222222:role/statehouse-cell";
const TENANTS: usize = 56;
/// The defaults the per-resync figures are amortized at.
const RESYNC: Duration = Duration::from_secs(300);
const DEEP: Duration = Duration::from_secs(3600);

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

/// `statehouse dev bootstrap` of cell `name`, in `region` and (with a role) another account.
async fn bootstrap(endpoint: &str, name: &str, region: &str, role: Option<&str>) -> Cell {
    let bin = std::env::var("STATEHOUSE_BIN").expect("STATEHOUSE_BIN");
    let out = std::env::temp_dir().join(format!(
        "statehouse-bench-scale-{}.env",
        uuid::Uuid::now_v7()
    ));
    let mut command = tokio::process::Command::new(bin);
    command
        .args(["dev", "bootstrap", "--name", name, "--out"])
        .arg(&out);
    if let Some(role) = role {
        command.args(["--role-arn", role]);
    }
    let status = command
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_REGION", region)
        .env("AWS_ACCESS_KEY_ID", "bench")
        .env("AWS_SECRET_ACCESS_KEY", "bench")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await
        .expect("run statehouse dev bootstrap");
    assert!(status.success(), "dev bootstrap failed");
    let env: HashMap<String, String> = std::fs::read_to_string(&out)
        .expect("the bootstrap's settings")
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let _ = std::fs::remove_file(out);
    Cell {
        name: name.to_owned(),
        cluster: env["STATEHOUSE_CLUSTER"].clone(),
        listener_arn: env["STATEHOUSE_LISTENER_ARN"].clone(),
        vpc_id: env["STATEHOUSE_VPC_ID"].clone(),
        subnets: env["STATEHOUSE_SUBNETS"]
            .split(',')
            .map(str::to_owned)
            .collect(),
        security_groups: vec![env["STATEHOUSE_SECURITY_GROUPS"].clone()],
        account: env["STATEHOUSE_ACCOUNT_ID"].clone(),
        region: region.to_owned(),
        execution_role_arn: env["STATEHOUSE_EXECUTION_ROLE_ARN"].clone(),
        role_arn: role.map(str::to_owned),
        alarm_topic_arn: None,
    }
}

struct Env {
    _moto: moto::Moto,
    pool: sqlx::PgPool,
    aws: Aws,
    cell_aws: HashMap<String, Aws>,
    platform: Platform,
    reports: Arc<Mutex<Vec<PassReport>>>,
    stop: tokio::sync::oneshot::Sender<()>,
    worker: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Env {
    /// A fresh emulator and database, the cells (`three`: two here and one in a second
    /// account and region; else one), and the worker.
    async fn start(admin_url: &str, three: bool, share: f64) -> Self {
        let moto = moto::Moto::start(1).await;
        let mut cells = vec![bootstrap(&moto.endpoint, "cell-1", REGION, None).await];
        if three {
            cells.push(bootstrap(&moto.endpoint, "cell-2", REGION, None).await);
            cells.push(bootstrap(&moto.endpoint, "cell-3", OTHER_REGION, Some(OTHER_ROLE)).await);
        }
        let platform = Platform {
            prefix: Prefix::parse("humangov").unwrap(),
            account: cells[0].account.clone(),
            region: REGION.into(),
            base_domain: "humangov.localhost".into(),
            execution_role_arn: cells[0].execution_role_arn.clone(),
            log_retention_days: 30,
            deployment_timeout: Duration::from_secs(600),
            alarms: AlarmSettings::default(),
            cells,
        };
        let url = bench::fresh_database(admin_url, "statehouse_bench_scale").await;
        let pool = statehouse::db::connect(&url, 24).await.unwrap();
        statehouse::db::MIGRATOR.run(&pool).await.unwrap();
        let config =
            statehouse::aws::client_policy(aws_config::defaults(BehaviorVersion::latest()))
                .region(Region::new(REGION))
                .endpoint_url(&moto.endpoint)
                .credentials_provider(Credentials::new("bench", "bench", None, None, "bench"))
                .load()
                .await;
        let metrics = Arc::new(Metrics::default());
        let settings = BudgetSettings {
            share,
            ..Default::default()
        };
        let counter = Aws::metrics_counter(metrics.clone());
        let aws =
            statehouse::worker::clients::home_clients(config, counter, &settings, metrics.clone());
        let cell_aws = statehouse::worker::clients::cell_clients(
            &aws,
            &platform.account,
            &platform.region,
            &platform.cells,
            &settings,
            metrics.clone(),
        )
        .await
        .unwrap();
        let reports: Arc<Mutex<Vec<PassReport>>> = Arc::default();
        let sink = reports.clone();
        let hour = Duration::from_secs(3600);
        let worker = Worker {
            id: Worker::new_id(),
            pool: pool.clone(),
            aws: aws.clone(),
            cell_aws: cell_aws.clone(),
            platform: Arc::new(platform.clone()),
            settings: WorkerSettings {
                concurrency: 16,
                // Rounds and deep checks are run by the benchmark when it measures them.
                resync_interval: hour,
                deep_resync_interval: hour,
                lease_ttl: Duration::from_secs(30),
                retry_budget: Duration::from_secs(600),
                rollout_watch: Duration::from_secs(20),
                backoff_base: Duration::from_millis(500),
                backoff_max: Duration::from_secs(10),
                health_interval: hour,
                rollout_gate_interval: Duration::from_secs(1),
                sizing: Default::default(),
            },
            metrics,
            observer: Some(Arc::new(move |r: &PassReport| {
                sink.lock().unwrap().push(r.clone())
            })),
        };
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let worker = tokio::spawn(worker.run(async {
            let _ = stop_rx.await;
        }));
        Self {
            _moto: moto,
            pool,
            aws,
            cell_aws,
            platform,
            reports,
            stop,
            worker,
        }
    }

    fn aws_for(&self, cell: &str) -> &Aws {
        self.cell_aws.get(cell).unwrap_or(&self.aws)
    }

    async fn create(&self, state: StateSlug, cell: &str) {
        let mut tx = self.pool.begin().await.unwrap();
        statehouse::db::tenants::insert(
            &mut tx,
            statehouse::db::tenants::NewTenant {
                name: state,
                display_name: state.official_name(),
                spec: &spec(),
                cell,
            },
        )
        .await
        .unwrap();
        statehouse::db::tenants::notify_changed(&mut tx, state.as_str())
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }

    /// Waits until every live tenant's last pass found it whole and none is held.
    async fn all_whole(&self) {
        let deadline = Instant::now() + Duration::from_secs(1800);
        loop {
            let (whole, live): (i64, i64) = sqlx::query_as(
                "SELECT count(*) FILTER (WHERE whole_at_seq = request_seq AND lease_token IS NULL \
                                           AND status = 'ready'), count(*) \
                 FROM tenants WHERE status <> 'deleted'",
            )
            .fetch_one(&self.pool)
            .await
            .unwrap();
            if whole == live {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{whole} of {live} whole after 30 minutes"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn events(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM tenant_events")
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.worker.await;
    }
}

/// The budget bucket of a call as the call log names it.
fn bucket_of(service: &str, operation: &str) -> &'static str {
    let service = match service {
        "elastic-load-balancing-v2" | "elastic-load-balancing" => "elasticloadbalancing",
        "cloudwatch-logs" => "logs",
        "application-auto-scaling" => "application-autoscaling",
        other => other,
    };
    Bucket::of(service, operation).map_or("sts", Bucket::as_str)
}

/// Calls by bucket since `before` (a snapshot of the same log).
fn by_bucket(aws: &Aws, before: &BTreeMap<(String, String), u64>) -> BTreeMap<&'static str, f64> {
    let mut out = BTreeMap::new();
    for ((service, op), n) in calls(aws) {
        let d = n - before
            .get(&(service.clone(), op.clone()))
            .copied()
            .unwrap_or(0);
        if d > 0 {
            *out.entry(bucket_of(&service, &op)).or_default() += d as f64;
        }
    }
    out
}

fn calls(aws: &Aws) -> BTreeMap<(String, String), u64> {
    let mut m = BTreeMap::new();
    for (k, n) in aws.calls.snapshot() {
        *m.entry((k.service, k.operation)).or_default() += n;
    }
    m
}

fn states() -> Vec<StateSlug> {
    StateSlug::all().take(TENANTS).collect()
}

/// Onboards the 56 states (round-robin over the cells); returns how long until all were whole.
async fn onboard(env: &Env) -> Duration {
    let cells: Vec<String> = env.platform.cells.iter().map(|c| c.name.clone()).collect();
    let started = Instant::now();
    for (i, state) in states().into_iter().enumerate() {
        env.create(state, &cells[i % cells.len()]).await;
    }
    env.all_whole().await;
    started.elapsed()
}

/// Settles the fleet and measures one resync round of every cell at rest: the calls by
/// bucket, the events written and the tenants found drifted.
async fn round_at_rest(
    env: &Env,
    task_definitions: &TaskDefinitions,
) -> (BTreeMap<&'static str, f64>, i64, usize) {
    // The emulator forgets some deployment settings CreateService is given, which the first
    // round finds and a full pass puts back; from then on the fleet is at rest.
    for _ in 0..3 {
        if rounds(env, task_definitions).await == 0 {
            break;
        }
        env.all_whole().await;
    }
    let events_before = env.events().await;
    let before = calls(&env.aws);
    let drifted = rounds(env, task_definitions).await;
    let round = by_bucket(&env.aws, &before);
    (round, env.events().await - events_before, drifted)
}

/// Runs a resync round of every cell; returns the tenants found drifted.
async fn rounds(env: &Env, task_definitions: &TaskDefinitions) -> usize {
    let metrics = Metrics::default();
    let mut drifted = 0;
    for cell in &env.platform.cells {
        let r = resync_cell(
            &env.pool,
            env.aws_for(&cell.name),
            &env.platform,
            &cell.name,
            task_definitions,
            &metrics,
            "bench",
        )
        .await
        .unwrap();
        drifted += r.drifted.len();
    }
    drifted
}

#[tokio::main]
async fn main() {
    let admin_url = std::env::var("DATABASE_URL")
        .expect("DATABASE_URL of a Postgres the benchmark may create a database on");
    let share: f64 = std::env::var("STATEHOUSE_BENCH_BUDGET_SHARE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);

    println!("== Onboarding {TENANTS} tenants (call budget share {share}) ==");
    let one = Env::start(&admin_url, false, share).await;
    let in_one = onboard(&one).await;
    println!(
        "one cell:                                      {:>7.1} s",
        in_one.as_secs_f64()
    );
    let (round_one, _, _) = round_at_rest(&one, &TaskDefinitions::default()).await;
    one.stop().await;
    let env = Env::start(&admin_url, true, share).await;
    let in_three = onboard(&env).await;
    println!(
        "three cells (two accounts, two regions):      {:>7.1} s  ({:.2}x the one cell's time)",
        in_three.as_secs_f64(),
        in_three.as_secs_f64() / in_one.as_secs_f64()
    );

    // One resync round of every cell, at rest.
    let task_definitions = TaskDefinitions::default();
    let (round, events_round, drifted) = round_at_rest(&env, &task_definitions).await;

    // One deep check of every tenant: made due at once, as their phase would.
    let passes_before = env.reports.lock().unwrap().len();
    let before = calls(&env.aws);
    let events_before = env.events().await;
    sqlx::query("UPDATE tenants SET next_attempt_at = now() WHERE whole_at_seq = request_seq")
        .execute(&env.pool)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let deep = env.reports.lock().unwrap()[passes_before..]
            .iter()
            .filter(|r| r.deep_check)
            .count();
        if deep >= TENANTS {
            break;
        }
        assert!(Instant::now() < deadline, "only {deep} deep checks");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    env.all_whole().await;
    // And the roles' check, once per account for all its tenants.
    let metrics = Metrics::default();
    let mut accounts: Vec<&str> = env
        .platform
        .cells
        .iter()
        .map(|c| c.account.as_str())
        .collect();
    accounts.dedup();
    for account in accounts {
        let cells: Vec<&Cell> = env
            .platform
            .cells
            .iter()
            .filter(|c| c.account == account)
            .collect();
        statehouse::worker::resync::roles_of_account(
            &env.pool,
            env.aws_for(&cells[0].name),
            &env.platform,
            &cells,
            &metrics,
            "bench",
        )
        .await
        .unwrap();
    }
    let deep = by_bucket(&env.aws, &before);
    let events_deep = env.events().await - events_before;
    let full_passes = env.reports.lock().unwrap()[passes_before..]
        .iter()
        .filter(|r| !r.deep_check)
        .count();

    // The health observer's round of every cell, for comparison.
    let before = calls(&env.aws);
    for cell in &env.platform.cells {
        statehouse::worker::health::observe_cell(
            &env.pool,
            env.aws_for(&cell.name),
            &env.platform,
            &cell.name,
            &Metrics::default(),
        )
        .await
        .unwrap();
    }
    let health: f64 = by_bucket(&env.aws, &before).values().sum();

    let n = TENANTS as f64;
    let per_deep = RESYNC.as_secs_f64() / DEEP.as_secs_f64();
    println!(
        "\n== Read calls per tenant per resync ({} s resync, {} s deep interval) ==",
        RESYNC.as_secs(),
        DEEP.as_secs()
    );
    println!(
        "{drifted} drifted in the measured round; {full_passes} full passes during the deep checks"
    );
    println!(
        "{:<30} {:>9} {:>11} {:>12} {:>9}",
        "bucket", "round", "deep check", "per resync", "goal"
    );
    let mut total = 0.0;
    let mut per_tenant_rate: BTreeMap<Bucket, f64> = BTreeMap::new();
    for bucket in Bucket::ALL {
        let r = round.get(bucket.as_str()).copied().unwrap_or(0.0) / n;
        let d = deep.get(bucket.as_str()).copied().unwrap_or(0.0) / n;
        let per = r + d * per_deep;
        total += per;
        per_tenant_rate.insert(bucket, per / RESYNC.as_secs_f64());
        let goal = match bucket {
            Bucket::Elb | Bucket::EcsRead | Bucket::Logs | Bucket::Iam | Bucket::AutoScaling => {
                "<= 0.25"
            }
            _ => "",
        };
        println!(
            "{:<30} {r:>9.3} {d:>11.3} {per:>12.3} {goal:>9}",
            bucket.as_str()
        );
    }
    println!(
        "{:<30} {:>9} {:>11} {total:>12.3} {:>9}",
        "total", "", "", "<= 1.5"
    );

    // A round's calls, fixed per cell and per tenant: the one-cell fleet made `c1` calls in
    // one cell, the three-cell fleet `c3` in three, for the same tenants.
    let cells = env.platform.cells.len() as f64;
    let full = f64::from(statehouse::config::MAX_CELL_CAPACITY);
    let mut parts: BTreeMap<Bucket, (f64, f64)> = BTreeMap::new();
    println!(
        "\n== A round's calls: fixed per cell, and per tenant (1 cell of {TENANTS}, then {cells} cells of the same) =="
    );
    println!(
        "{:<30} {:>8} {:>8} {:>9} {:>11} {:>22}",
        "bucket", "1 cell", "3 cells", "per cell", "per tenant", "per tenant, full cells"
    );
    for bucket in Bucket::ALL {
        let c1 = round_one.get(bucket.as_str()).copied().unwrap_or(0.0);
        let c3 = round.get(bucket.as_str()).copied().unwrap_or(0.0);
        let per_cell = ((c3 - c1) / (cells - 1.0)).max(0.0);
        let per_tenant = ((c1 - per_cell) / n).max(0.0);
        parts.insert(bucket, (per_cell, per_tenant));
        if c1 + c3 > 0.0 {
            println!(
                "{:<30} {c1:>8.0} {c3:>8.0} {per_cell:>9.2} {per_tenant:>11.3} {:>22.3}",
                bucket.as_str(),
                per_cell / full + per_tenant
            );
        }
    }
    // Calls per tenant per second at a cadence: the round's (in cells of `cell_size`) over the
    // resync interval, the deep check's over the deep interval.
    let rate = |bucket: Bucket, resync: f64, deep_every: f64, cell_size: f64| {
        let (per_cell, per_tenant) = parts[&bucket];
        let d = deep.get(bucket.as_str()).copied().unwrap_or(0.0) / n;
        (per_cell / cell_size + per_tenant) / resync + d / deep_every
    };
    // The most tenants under 20 % of every limit at a cadence, and the bucket that limits.
    let most = |resync: f64, deep_every: f64, cell_size: f64| {
        let mut best = (f64::INFINITY, "");
        for bucket in Bucket::ALL {
            let r = rate(bucket, resync, deep_every, cell_size);
            if r > 0.0 {
                let max = 0.2 * bucket.documented().rate / r;
                if max < best.0 {
                    best = (max, bucket.as_str());
                }
            }
        }
        best
    };

    println!(
        "\n== Projection at a {} s resync, against the documented limits ==",
        RESYNC.as_secs()
    );
    println!(
        "{:<30} {:>9} {:>15} {:>17} {:>17}",
        "bucket", "limit /s", "56 tenants use", "under 20%, full", "deep level alone"
    );
    for (bucket, rate_now) in &per_tenant_rate {
        let limit = bucket.documented().rate;
        let share = rate_now * n / limit * 100.0;
        let text = |max: f64| {
            if max.is_finite() {
                format!("{max:.0}")
            } else {
                "-".into()
            }
        };
        let r = rate(*bucket, RESYNC.as_secs_f64(), DEEP.as_secs_f64(), full);
        let d = deep.get(bucket.as_str()).copied().unwrap_or(0.0) / n / DEEP.as_secs_f64();
        println!(
            "{:<30} {limit:>9.1} {share:>14.3}% {:>17} {:>17}",
            bucket.as_str(),
            text(if r > 0.0 {
                0.2 * limit / r
            } else {
                f64::INFINITY
            }),
            text(if d > 0.0 {
                0.2 * limit / d
            } else {
                f64::INFINITY
            }),
        );
    }
    let (as_measured, by) = most(RESYNC.as_secs_f64(), DEEP.as_secs_f64(), n / cells);
    let (in_full, by_full) = most(RESYNC.as_secs_f64(), DEEP.as_secs_f64(), full);
    println!(
        "one account and region holds {in_full:.0} tenants under 20% of every limit in full cells of {full} ({by_full}), \
         {as_measured:.0} in cells of {:.0} as measured ({by}) (goal >= 10000)",
        n / cells
    );

    println!("\ntenants one account and region holds under 20% of every limit in full cells, by cadence (limiting bucket):");
    for (resync, deep_every) in [
        (300.0, 3600.0),
        (300.0, 4.0 * 3600.0),
        (600.0, 4.0 * 3600.0),
        (900.0, 6.0 * 3600.0),
        (300.0, 24.0 * 3600.0),
    ] {
        let (max, bucket) = most(resync, deep_every, full);
        println!(
            "  resync {resync:>4.0} s, deep interval {deep_every:>5.0} s: {max:>7.0} ({bucket})"
        );
    }

    println!("\n== At rest, per tenant per hour ==");
    let rounds_per_hour = 3600.0 / RESYNC.as_secs_f64();
    let deep_per_hour = 3600.0 / DEEP.as_secs_f64();
    let round_calls: f64 = round.values().sum();
    let deep_calls: f64 = deep.values().sum();
    println!("worker passes:  {:.2} (the deep check)", deep_per_hour);
    println!(
        "AWS calls:      {:.2} (rounds {:.2}, deep checks {:.2})",
        (round_calls * rounds_per_hour + deep_calls * deep_per_hour) / n,
        round_calls * rounds_per_hour / n,
        deep_calls * deep_per_hour / n
    );
    println!(
        "events written: {:.2} (a round wrote {events_round}, a deep check of every tenant {events_deep})",
        (events_round as f64 * rounds_per_hour + events_deep as f64 * deep_per_hour) / n
    );
    println!(
        "health observer (not the resync): {:.2} calls per tenant per round; {:.0} per tenant per hour at the 60 s default",
        health / n,
        health / n * 60.0
    );
    env.stop().await;
}
