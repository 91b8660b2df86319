//! A worker against a private emulator and a fresh database: the shared platform made by
//! the real `statehouse dev bootstrap`, tenants written as the API writes them.

use std::{collections::HashMap, future::Future, sync::Arc, time::Duration};

use serde_json::Value;
use sqlx::PgPool;
use statehouse::{
    auth::hash_token,
    aws::{calls::is_mutating, Aws},
    db::{self, cells::CellCapacity},
    domain::{
        spec::{SpecDoc, SpecLimits},
        state::StateSlug,
        tenant::{DataPolicy, Tenant, TenantStatus},
    },
    http::{self, ApiSettings, AppState, Tuning},
    metrics::Metrics,
    reconcile::{
        alarms::AlarmSettings,
        inventory,
        names::{Prefix, TenantNames},
        platform::{Cell, Platform},
        role,
    },
    worker::{Worker, WorkerSettings},
};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

use crate::{
    config_at,
    moto::Moto,
    process::{base_env, database_url},
    proxy::{FaultConfig, FaultProxy},
    REGION,
};

/// The role [`Stack::with_dedicated_cell`] assumes for its second account's cell.
pub const DEDICATED_ROLE: &str = "arn:aws:iam::222222222222:role/statehouse-cell";
/// The region of that cell.
pub const DEDICATED_REGION: &str = "us-east-1";

pub struct Stack {
    /// Kept so the emulator lives as long as the stack.
    _moto: Moto,
    /// Between the worker and the emulator, when the stack was started through one.
    pub faults: Option<FaultProxy>,
    /// What `statehouse dev bootstrap` wrote: the settings a worker process needs.
    pub platform_env: HashMap<String, String>,
    /// The worker's clients (through the proxy, if there is one).
    pub aws: Aws,
    /// Where they send their calls.
    pub endpoint: String,
    pub platform: Platform,
    pub pool: PgPool,
    pub metrics: Arc<Metrics>,
    /// Clients of the cells in other accounts or regions, by cell.
    pub cell_aws: HashMap<String, Aws>,
    stop: Option<oneshot::Sender<()>>,
    worker: Option<JoinHandle<()>>,
}

pub fn settings() -> WorkerSettings {
    WorkerSettings {
        concurrency: 16,
        resync_interval: Duration::from_secs(3600),
        lease_ttl: Duration::from_secs(15),
        retry_budget: Duration::from_secs(60),
        rollout_watch: Duration::from_secs(2),
        backoff_base: Duration::from_millis(200),
        backoff_max: Duration::from_secs(2),
        // Tests of health set their own; elsewhere one round at start, with no tenant yet.
        health_interval: Duration::from_secs(3600),
        rollout_gate_interval: Duration::from_millis(300),
        deep_resync_interval: Duration::from_secs(3600),
        // Tests of sizing set their own; elsewhere one round at start, and no look at
        // stopped tasks but that one.
        sizing: statehouse::sizing::SizingSettings {
            oom_interval: Duration::from_secs(3600),
            ..Default::default()
        },
    }
}

/// Runs `statehouse dev bootstrap` against the emulator and reads what it wrote.
async fn bootstrap(moto: &Moto) -> HashMap<String, String> {
    bootstrap_named(&moto.endpoint, None).await
}

/// As [`bootstrap`], with the shared resources named `name` (a cell of their own).
async fn bootstrap_named(endpoint: &str, name: Option<&str>) -> HashMap<String, String> {
    bootstrap_in(endpoint, name, REGION, None).await
}

/// As [`bootstrap_named`], in `region`, and in the account of `role_arn` if given.
async fn bootstrap_in(
    endpoint: &str,
    name: Option<&str>,
    region: &str,
    role_arn: Option<&str>,
) -> HashMap<String, String> {
    let dir = std::env::temp_dir().join(format!("statehouse-test-{}", uuid::Uuid::now_v7()));
    let out = dir.join("platform.env");
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_statehouse"));
    command.args(["dev", "bootstrap", "--out"]).arg(&out);
    if let Some(name) = name {
        command.args(["--name", name]);
    }
    if let Some(role) = role_arn {
        command.args(["--role-arn", role]);
    }
    let status = command
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_REGION", region)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .stdout(std::process::Stdio::null())
        .status()
        .await
        .expect("run statehouse dev bootstrap");
    assert!(status.success(), "dev bootstrap failed");
    let text = std::fs::read_to_string(&out).expect("the bootstrap's env file");
    let _ = std::fs::remove_dir_all(dir);
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn setting(env: &HashMap<String, String>, key: &str) -> String {
    env.get(key)
        .cloned()
        .unwrap_or_else(|| panic!("{key} in the bootstrap output"))
}

/// The cell `statehouse dev bootstrap` made, as `env` (what it wrote) describes it.
fn cell_of(name: &str, env: &HashMap<String, String>) -> Cell {
    let get = |k: &str| setting(env, k);
    Cell {
        name: name.into(),
        cluster: get("STATEHOUSE_CLUSTER"),
        listener_arn: get("STATEHOUSE_LISTENER_ARN"),
        vpc_id: get("STATEHOUSE_VPC_ID"),
        subnets: get("STATEHOUSE_SUBNETS")
            .split(',')
            .map(str::to_owned)
            .collect(),
        security_groups: vec![get("STATEHOUSE_SECURITY_GROUPS")],
        account: get("STATEHOUSE_ACCOUNT_ID"),
        region: REGION.to_owned(),
        execution_role_arn: get("STATEHOUSE_EXECUTION_ROLE_ARN"),
        role_arn: None,
        alarm_topic_arn: None,
    }
}

impl Stack {
    /// An emulator whose services run `running_tasks` tasks, the shared platform in it, and
    /// a worker (with `settings`) on the database.
    pub async fn start(pool: PgPool, running_tasks: u32, settings: WorkerSettings) -> Self {
        Self::start_with(pool, running_tasks, settings, Duration::from_secs(600)).await
    }

    pub async fn start_with(
        pool: PgPool,
        running_tasks: u32,
        settings: WorkerSettings,
        deployment_timeout: Duration,
    ) -> Self {
        Self::start_inner(pool, running_tasks, settings, deployment_timeout, None).await
    }

    /// As [`Stack::start`], with the worker's AWS traffic going through a [`FaultProxy`]
    /// with `faults`; the bootstrap of the shared platform talks to the emulator directly.
    pub async fn start_through(
        faults: FaultConfig,
        pool: PgPool,
        running_tasks: u32,
        settings: WorkerSettings,
    ) -> Self {
        let timeout = Duration::from_secs(600);
        Self::start_inner(pool, running_tasks, settings, timeout, Some(faults)).await
    }

    async fn start_inner(
        pool: PgPool,
        running_tasks: u32,
        settings: WorkerSettings,
        deployment_timeout: Duration,
        faults: Option<FaultConfig>,
    ) -> Self {
        let mut stack =
            Self::without_worker_through(pool, running_tasks, deployment_timeout, faults).await;
        stack.start_worker(settings);
        stack
    }

    /// The emulator and the shared platform, for tests that run workers as processes.
    pub async fn without_worker(
        pool: PgPool,
        running_tasks: u32,
        deployment_timeout: Duration,
    ) -> Self {
        Self::without_worker_through(pool, running_tasks, deployment_timeout, None).await
    }

    /// As [`Stack::without_worker`], the stack's own clients going through a
    /// [`FaultProxy`] with `faults` when given (point worker processes at it too).
    pub async fn without_worker_through(
        pool: PgPool,
        running_tasks: u32,
        deployment_timeout: Duration,
        faults: Option<FaultConfig>,
    ) -> Self {
        let moto = Moto::start(running_tasks).await;
        let env = bootstrap(&moto).await;
        let get = |k: &str| setting(&env, k);
        let platform = Platform {
            prefix: Prefix::parse("humangov").unwrap(),
            account: get("STATEHOUSE_ACCOUNT_ID"),
            region: REGION.to_owned(),
            base_domain: get("STATEHOUSE_BASE_DOMAIN"),
            execution_role_arn: get("STATEHOUSE_EXECUTION_ROLE_ARN"),
            log_retention_days: 30,
            deployment_timeout,
            alarms: AlarmSettings::default(),
            cells: vec![cell_of("cell-1", &env)],
        };
        let metrics = Arc::new(Metrics::default());
        let faults = match faults {
            Some(config) => Some(
                FaultProxy::start(&moto.endpoint, config)
                    .await
                    .expect("the fault proxy starts"),
            ),
            None => None,
        };
        let endpoint = faults
            .as_ref()
            .map_or(&moto.endpoint, |f| &f.endpoint)
            .clone();
        let config = config_at(&endpoint).await;
        let counter = Aws::metrics_counter(metrics.clone());
        // Remembered, so clients for cells in other accounts count into the same log.
        let budget = Arc::new(statehouse::aws::budget::Budget::new(
            &statehouse::aws::budget::BudgetSettings {
                share: 1.0,
                ..Default::default()
            },
            None,
        ));
        let aws = Aws::with_counter(&config, counter.clone()).with_origin(config, counter, budget);
        Self {
            _moto: moto,
            faults,
            platform_env: env,
            aws,
            endpoint,
            platform,
            pool,
            metrics,
            cell_aws: HashMap::new(),
            stop: None,
            worker: None,
        }
    }

    /// Adds a cell of its own (cluster, load balancer and listener, VPC), made by
    /// `statehouse dev bootstrap --name`; call it before the worker starts.
    pub async fn add_cell(&mut self, name: &str) {
        let env = bootstrap_named(&self._moto.endpoint, Some(name)).await;
        self.platform.cells.push(cell_of(name, &env));
    }

    /// The listener rule of tenant `name` (in `cell-1`), if there is one.
    pub async fn rule_of(&self, name: &str) -> Option<statehouse::reconcile::rule::ListedRule> {
        use statehouse::reconcile::rule;
        let host = self.platform.host(StateSlug::parse(name).unwrap());
        let rules = rule::list(&self.aws.elb, &self.cell().listener_arn)
            .await
            .unwrap();
        rule::find(&rules, &host).cloned()
    }

    /// Deletes the listener rule of tenant `name` (in `cell-1`), as a hand in the console.
    pub async fn delete_rule_by_hand(&self, name: &str) {
        let ours = self.rule_of(name).await.expect("the tenant's rule");
        self.aws
            .elb
            .delete_rule()
            .rule_arn(&ours.arn)
            .send()
            .await
            .unwrap();
    }

    /// A stack whose worker has, beside `cell-1`, the cell `dedicated` in another emulated
    /// account ([`DEDICATED_ROLE`]'s) and region ([`DEDICATED_REGION`]).
    pub async fn with_dedicated_cell(pool: PgPool) -> Self {
        let mut stack = Self::without_worker(pool, 1, Duration::from_secs(600)).await;
        stack
            .add_cell_in_account("dedicated", DEDICATED_ROLE, DEDICATED_REGION)
            .await;
        stack.start_worker_observed(settings(), None);
        stack
    }

    /// Adds a cell in the account of `role_arn` (assumed, as the worker does) and in
    /// `region`, made there by `statehouse dev bootstrap --role-arn`; its clients are the
    /// worker's own `cell_clients`. Call it before the worker starts.
    pub async fn add_cell_in_account(&mut self, name: &str, role_arn: &str, region: &str) {
        let env = bootstrap_in(&self._moto.endpoint, Some(name), region, Some(role_arn)).await;
        let mut cell = cell_of(name, &env);
        cell.region = region.to_owned();
        cell.role_arn = Some(role_arn.to_owned());
        self.platform.cells.push(cell);
        let budget = statehouse::aws::budget::BudgetSettings {
            share: 1.0,
            ..Default::default()
        };
        self.cell_aws = statehouse::worker::clients::cell_clients(
            &self.aws,
            &self.platform.account,
            &self.platform.region,
            &self.platform.cells,
            &budget,
            self.metrics.clone(),
        )
        .await
        .expect("the cells' clients");
    }

    fn start_worker(&mut self, settings: WorkerSettings) {
        self.start_worker_observed(settings, None);
    }

    /// Starts the worker, telling `observer` about every pass it finishes.
    pub fn start_worker_observed(
        &mut self,
        settings: WorkerSettings,
        observer: Option<statehouse::worker::Observer>,
    ) {
        let worker = Worker {
            id: Worker::new_id(),
            pool: self.pool.clone(),
            aws: self.aws.clone(),
            cell_aws: self.cell_aws.clone(),
            platform: Arc::new(self.platform.clone()),
            settings,
            metrics: self.metrics.clone(),
            observer,
        };
        let (tx, rx) = oneshot::channel();
        self.stop = Some(tx);
        self.worker = Some(tokio::spawn(async move {
            worker
                .run(async {
                    let _ = rx.await;
                })
                .await
                .expect("the worker stops cleanly");
        }));
    }

    /// The environment a `statehouse` command needs to work on this stack, in its cell.
    pub fn command_env(&self) -> Vec<(String, String)> {
        let mut env = base_env(self, &database_url(&self.pool));
        env.push(("STATEHOUSE_CELL".to_owned(), self.cell().name.clone()));
        env
    }

    /// The kinds of what the emulator holds tagged for `tenant`, sorted.
    pub async fn leftovers(&self, tenant: &str) -> Vec<&'static str> {
        self.leftovers_in(&self.aws, self.cell(), tenant).await
    }

    /// As [`Stack::leftovers`], in `cell`, read with `aws` (the clients that reach it).
    pub async fn leftovers_in(&self, aws: &Aws, cell: &Cell, tenant: &str) -> Vec<&'static str> {
        let inv = inventory::take(aws, cell, "humangov").await.unwrap();
        let mut kinds: Vec<_> = inv
            .get(tenant)
            .into_iter()
            .flatten()
            .map(|f| f.kind)
            .collect();
        kinds.sort_unstable();
        kinds
    }

    pub fn cell(&self) -> &Cell {
        &self.platform.cells[0]
    }

    /// Clients of the stack's emulator with a call count of their own, apart from the
    /// background worker's.
    pub async fn own_clients(&self) -> Aws {
        Aws::new(&crate::config_at(&self.endpoint).await)
    }

    /// The mutating AWS calls the worker's clients have made so far.
    pub fn mutating_calls(&self) -> u64 {
        self.aws
            .calls
            .snapshot()
            .iter()
            .filter(|(k, _)| is_mutating(&k.operation))
            .map(|(_, n)| n)
            .sum()
    }

    /// The tenant's task role data policy, read through the AWS API.
    pub async fn role_policy(&self, names: &TenantNames) -> Value {
        let doc = self
            .aws
            .iam
            .get_role_policy()
            .role_name(&names.task_role)
            .policy_name(&names.role_policy)
            .send()
            .await
            .unwrap();
        role::parse_document(doc.policy_document()).unwrap()
    }

    /// How many backups the emulator holds of `table`.
    pub async fn backups(&self, table: &str) -> usize {
        self.aws
            .dynamodb
            .list_backups()
            .table_name(table)
            .send()
            .await
            .unwrap()
            .backup_summaries()
            .len()
    }

    /// Creates a tenant as the API does (row, event, NOTIFY).
    pub async fn create(&self, name: &str, spec: SpecDoc) -> Tenant {
        self.create_in(name, spec, "cell-1").await
    }

    /// As [`Stack::create`], in `cell`.
    pub async fn create_in(&self, name: &str, spec: SpecDoc, cell: &str) -> Tenant {
        let slug = StateSlug::parse(name).unwrap();
        let mut tx = self.pool.begin().await.unwrap();
        let tenant = db::tenants::insert(
            &mut tx,
            db::tenants::NewTenant {
                name: slug,
                display_name: slug.official_name(),
                spec: &spec,
                cell,
            },
        )
        .await
        .unwrap();
        db::tenants::notify_changed(&mut tx, name).await.unwrap();
        tx.commit().await.unwrap();
        tenant
    }

    pub async fn update_spec(&self, name: &str, spec: SpecDoc) {
        let slug = StateSlug::parse(name).unwrap();
        let mut tx = self.pool.begin().await.unwrap();
        let t = db::tenants::lock_live(&mut tx, slug)
            .await
            .unwrap()
            .unwrap();
        db::tenants::update_desired(
            &mut tx,
            t.id,
            db::tenants::DesiredChange {
                display_name: &t.display_name,
                spec: &spec,
                generation: t.generation + 1,
                status: TenantStatus::Updating,
            },
        )
        .await
        .unwrap();
        db::tenants::notify_changed(&mut tx, name).await.unwrap();
        tx.commit().await.unwrap();
    }

    pub async fn delete(&self, name: &str, policy: DataPolicy) {
        let slug = StateSlug::parse(name).unwrap();
        let mut tx = self.pool.begin().await.unwrap();
        let t = db::tenants::lock_live(&mut tx, slug)
            .await
            .unwrap()
            .unwrap();
        db::tenants::request_deletion(&mut tx, t.id, policy)
            .await
            .unwrap();
        db::tenants::notify_changed(&mut tx, name).await.unwrap();
        tx.commit().await.unwrap();
    }

    pub async fn reconcile(&self, name: &str) {
        let slug = StateSlug::parse(name).unwrap();
        let mut tx = self.pool.begin().await.unwrap();
        let t = db::tenants::lock_live(&mut tx, slug)
            .await
            .unwrap()
            .unwrap();
        db::tenants::request_reconcile(&mut tx, t.id).await.unwrap();
        db::tenants::notify_changed(&mut tx, name).await.unwrap();
        tx.commit().await.unwrap();
    }

    /// Pauses a tenant as the API does (row, NOTIFY): its lease is taken away.
    pub async fn pause(&self, name: &str, reason: Option<&str>) {
        let slug = StateSlug::parse(name).unwrap();
        let mut tx = self.pool.begin().await.unwrap();
        let t = db::tenants::lock_live(&mut tx, slug)
            .await
            .unwrap()
            .unwrap();
        db::tenants::pause(&mut tx, t.id, reason)
            .await
            .unwrap()
            .expect("it was not paused");
        db::tenants::notify_changed(&mut tx, name).await.unwrap();
        tx.commit().await.unwrap();
    }

    /// Resumes a paused tenant as the API does (row, NOTIFY): a pass is due at once.
    pub async fn resume(&self, name: &str) {
        let slug = StateSlug::parse(name).unwrap();
        let mut tx = self.pool.begin().await.unwrap();
        let t = db::tenants::lock_live(&mut tx, slug)
            .await
            .unwrap()
            .unwrap();
        db::tenants::resume(&mut tx, t.id)
            .await
            .unwrap()
            .expect("it was paused");
        db::tenants::notify_changed(&mut tx, name).await.unwrap();
        tx.commit().await.unwrap();
    }

    pub async fn tenant(&self, name: &str) -> Tenant {
        db::tenants::find_latest(&self.pool, StateSlug::parse(name).unwrap())
            .await
            .unwrap()
            .unwrap()
    }

    /// Waits until the tenant's latest row satisfies `done`, failing with its state if not.
    pub async fn wait_for(
        &self,
        name: &str,
        timeout: Duration,
        done: impl Fn(&Tenant) -> bool,
    ) -> Tenant {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let t = self.tenant(name).await;
            if done(&t) {
                return t;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name} did not get there in {timeout:?}: status {:?}, last_error {:?}, conditions {:#?}",
                t.status,
                t.last_error,
                t.conditions
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn ready(&self, name: &str) -> Tenant {
        self.wait_for(name, Duration::from_secs(60), |t| {
            t.status == TenantStatus::Ready && t.observed_generation == t.generation
        })
        .await
    }

    /// Waits until the tenant's last pass found it whole and no pass holds it: what a
    /// resync round compares.
    pub async fn whole(&self, name: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            let whole: Option<bool> = sqlx::query_scalar(
                "SELECT whole_at_seq = request_seq AND lease_token IS NULL AND status = 'ready' \
                 FROM tenants WHERE name = $1 AND status <> 'deleted'",
            )
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .unwrap()
            .flatten();
            if whole == Some(true) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name} never became whole"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until no worker holds the tenant and it is not due: its pass is over.
    pub async fn settled(&self, name: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let idle: bool = sqlx::query_scalar(
                "SELECT lease_token IS NULL AND next_attempt_at > now() FROM tenants \
                 WHERE name = $1 AND status <> 'deleted'",
            )
            .bind(name)
            .fetch_one(&self.pool)
            .await
            .unwrap();
            if idle {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name} never settled"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The API in this process on the stack's database, reading AWS through the stack's
    /// clients, with `token` as its bootstrap admin key; returns its base URL.
    pub async fn api(&self, token: &str) -> String {
        let settings = ApiSettings {
            spec_defaults: spec(),
            spec_limits: SpecLimits::default(),
            cells: vec![CellCapacity {
                name: "cell-1".into(),
                capacity: 100,
                reserved_for: Vec::new(),
            }],
            prices: Default::default(),
        };
        let state = AppState::new(
            self.pool.clone(),
            settings,
            Arc::new(Metrics::default()),
            Some(hash_token(token)),
            Tuning::default(),
        )
        .with_aws(self.aws.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = http::router(state.clone());
        tokio::spawn(async move {
            http::serve_app(listener, app, &state, std::future::pending()).await
        });
        base
    }

    /// Makes each target group hold one target per running task, as ECS does on AWS.
    pub async fn attach_tasks(&self) {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_statehouse"));
        command
            .args(["dev", "attach-tasks"])
            .envs(self.command_env())
            .env("STATEHOUSE_CLUSTER", &self.cell().cluster)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        // With more cells than the first, in every cell, each with its own clients.
        let file = (self.platform.cells.len() > 1).then(|| self.cells_file());
        if let Some(file) = &file {
            command.env("STATEHOUSE_CELLS_FILE", file);
        }
        let out = command.output().await.unwrap();
        if let Some(file) = file {
            let _ = std::fs::remove_file(file);
        }
        assert!(
            out.status.success(),
            "statehouse dev attach-tasks failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A cells file describing the stack's cells, as an operator would write it.
    pub fn cells_file(&self) -> std::path::PathBuf {
        let mut cells = Vec::new();
        for c in &self.platform.cells {
            let mut t = toml::Table::new();
            let text = |s: &str| toml::Value::String(s.to_owned());
            let list = |v: &[String]| toml::Value::Array(v.iter().map(|s| text(s)).collect());
            t.insert("name".into(), text(&c.name));
            t.insert("region".into(), text(&c.region));
            if let Some(role) = &c.role_arn {
                t.insert("role_arn".into(), text(role));
            }
            t.insert("cluster".into(), text(&c.cluster));
            t.insert("listener_arn".into(), text(&c.listener_arn));
            t.insert("vpc_id".into(), text(&c.vpc_id));
            t.insert("subnets".into(), list(&c.subnets));
            t.insert("security_groups".into(), list(&c.security_groups));
            t.insert("execution_role_arn".into(), text(&c.execution_role_arn));
            cells.push(toml::Value::Table(t));
        }
        let mut doc = toml::Table::new();
        doc.insert("cell".into(), toml::Value::Array(cells));
        let path =
            std::env::temp_dir().join(format!("statehouse-cells-{}.toml", uuid::Uuid::now_v7()));
        std::fs::write(&path, toml::to_string(&doc).unwrap()).unwrap();
        path
    }

    /// How many times rollout `id` wrote each tenant's spec (the tenants' own events).
    pub async fn rollout_writes(&self, id: &str) -> std::collections::BTreeMap<String, i64> {
        sqlx::query_as(
            "SELECT tenant_name, count(*) FROM tenant_events \
             WHERE actor = $1 AND action = 'tenant.updated' GROUP BY 1",
        )
        .bind(format!("rollout:{id}"))
        .fetch_all(&self.pool)
        .await
        .unwrap()
        .into_iter()
        .collect()
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(worker) = self.worker.take() {
            run_with_timeout(worker)
                .await
                .expect("the worker task did not panic");
        }
    }
}

async fn run_with_timeout<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .expect("the worker stopped within 30s")
}

pub fn spec() -> SpecDoc {
    SpecDoc {
        app_image: "humangov/app:1.0.0".into(),
        nginx_image: "nginx:1.27-alpine".into(),
        cpu: 256,
        memory: 512,
        desired_count: 1,
        min_count: 1,
        max_count: 3,
        env: [("FEATURE_X".to_owned(), "on".to_owned())].into(),
        sizing: Default::default(),
    }
}
