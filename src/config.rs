//! Configuration, from flags or the environment (see `.env.sample`).

use std::{collections::BTreeMap, net::SocketAddr, time::Duration};

use anyhow::{bail, Context};
use clap::Args;

use crate::{
    cells::CellConfig,
    db::cells::CellCapacity,
    domain::spec::{
        SizingDoc, SizingMode, SpecDoc, SpecLimits, TenantSpec, MAX_TASK_COUNT_CEILING,
    },
    http::ApiSettings,
    reconcile::{
        alarms::AlarmSettings,
        names::Prefix,
        platform::{Cell, Platform},
    },
    sizing::{Prices, SizingSettings},
    worker::WorkerSettings,
};

#[derive(Args, Debug, Clone)]
pub struct DatabaseArgs {
    /// Postgres connection URL.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
    /// Connections in the pool.
    #[arg(long, env = "STATEHOUSE_DB_MAX_CONNECTIONS", default_value_t = 10)]
    pub db_max_connections: u32,
}

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Address the API listens on.
    #[arg(long, env = "STATEHOUSE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// A token that works as an admin key named `bootstrap` (first boot, dev, CI).
    #[arg(long, env = "STATEHOUSE_BOOTSTRAP_ADMIN_TOKEN", hide_env_values = true)]
    pub bootstrap_admin_token: Option<String>,
    #[command(flatten)]
    pub tenants: TenantDefaults,
    /// Serve the API only; run `statehouse worker` elsewhere.
    #[arg(long, env = "STATEHOUSE_NO_WORKER")]
    pub no_worker: bool,
    /// How long a `/v1` request waits for a database connection before it is turned away
    /// with a 429 and `Retry-After`.
    #[arg(long, env = "STATEHOUSE_API_QUEUE_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub api_queue_timeout: Duration,
    /// The API keeps keys found valid and tenants it served in memory; every change
    /// reaches every API process as it commits. This is how long an entry is believed
    /// should that announcement be lost. `0s` keeps nothing.
    #[arg(long, env = "STATEHOUSE_CACHE_TTL", default_value = "5s", value_parser = parse_duration_or_zero)]
    pub cache_ttl: Duration,
    #[command(flatten)]
    pub platform: PlatformArgs,
    #[command(flatten)]
    pub worker: WorkerArgs,
}

#[derive(Args, Debug, Clone)]
pub struct WorkerCommandArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Address of the worker's /healthz and /metrics.
    #[arg(
        long,
        env = "STATEHOUSE_WORKER_LISTEN",
        default_value = "127.0.0.1:9090"
    )]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub tenants: TenantDefaults,
    #[command(flatten)]
    pub platform: PlatformArgs,
    #[command(flatten)]
    pub worker: WorkerArgs,
}

/// Minimum length of the bootstrap token, so a guessable one is refused at start.
const MIN_BOOTSTRAP_TOKEN_LEN: usize = 16;

impl ServeArgs {
    pub fn bootstrap_token_hash(&self) -> anyhow::Result<Option<[u8; 32]>> {
        match self.bootstrap_admin_token.as_deref() {
            None | Some("") => Ok(None),
            Some(token) if token.len() < MIN_BOOTSTRAP_TOKEN_LEN => bail!(
                "STATEHOUSE_BOOTSTRAP_ADMIN_TOKEN must be at least {MIN_BOOTSTRAP_TOKEN_LEN} characters"
            ),
            Some(token) => Ok(Some(crate::auth::hash_token(token))),
        }
    }
}

/// Defaults for every spec field a client leaves out, and the platform's limits.
#[derive(Args, Debug, Clone)]
pub struct TenantDefaults {
    #[arg(
        long,
        env = "STATEHOUSE_DEFAULT_APP_IMAGE",
        default_value = "humangov/app:latest"
    )]
    pub default_app_image: String,
    #[arg(
        long,
        env = "STATEHOUSE_DEFAULT_NGINX_IMAGE",
        default_value = "nginx:1.27-alpine"
    )]
    pub default_nginx_image: String,
    #[arg(long, env = "STATEHOUSE_DEFAULT_CPU", default_value_t = 256)]
    pub default_cpu: u32,
    #[arg(long, env = "STATEHOUSE_DEFAULT_MEMORY", default_value_t = 512)]
    pub default_memory: u32,
    #[arg(long, env = "STATEHOUSE_DEFAULT_DESIRED_COUNT", default_value_t = 1)]
    pub default_desired_count: u32,
    #[arg(long, env = "STATEHOUSE_DEFAULT_MIN_COUNT", default_value_t = 1)]
    pub default_min_count: u32,
    #[arg(long, env = "STATEHOUSE_DEFAULT_MAX_COUNT", default_value_t = 2)]
    pub default_max_count: u32,
    /// Rightsizing for new tenants: `off`, `recommend` (only a person applies a
    /// recommendation) or `auto`; the bounds default to every size Fargate offers.
    #[arg(long, env = "STATEHOUSE_DEFAULT_SIZING_MODE", default_value = "recommend", value_parser = parse_sizing_mode)]
    pub default_sizing_mode: SizingMode,
    /// No tenant may ask for more tasks than this (at most 5000, ECS's tasks per service).
    #[arg(long, env = "STATEHOUSE_MAX_TASK_COUNT", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(0..=i64::from(MAX_TASK_COUNT_CEILING)))]
    pub max_task_count: u32,
    /// The cell (shared load balancer and cluster) this process's worker serves, and where
    /// new tenants go unless `STATEHOUSE_CELLS` says otherwise.
    #[arg(long, env = "STATEHOUSE_CELL", default_value = "cell-1")]
    pub cell: String,
    /// The cells new tenants are placed in, in order of preference, as `name` or
    /// `name=capacity` separated by commas; a tenant goes to the first with room.
    #[arg(long, env = "STATEHOUSE_CELLS")]
    pub cells: Option<String>,
    /// Live tenants a cell holds unless its entry in `STATEHOUSE_CELLS` says otherwise. An
    /// ALB takes at most 100 target groups, one per tenant.
    #[arg(long, env = "STATEHOUSE_CELL_CAPACITY", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(0..=i64::from(MAX_CELL_CAPACITY)))]
    pub cell_capacity: u32,
}

impl TenantDefaults {
    /// Checks the defaults like any client's spec, so a bad configuration fails at start.
    pub fn settings(
        &self,
        prices: Prices,
        file_cells: Option<&[CellConfig]>,
    ) -> anyhow::Result<ApiSettings> {
        let spec_limits = SpecLimits {
            max_task_count: self.max_task_count,
        };
        let doc = SpecDoc {
            app_image: self.default_app_image.clone(),
            nginx_image: self.default_nginx_image.clone(),
            cpu: self.default_cpu,
            memory: self.default_memory,
            desired_count: self.default_desired_count,
            min_count: self.default_min_count,
            max_count: self.default_max_count,
            env: BTreeMap::new(),
            sizing: SizingDoc {
                mode: self.default_sizing_mode,
                ..SizingDoc::default()
            },
        };
        let spec_defaults = TenantSpec::validate(doc, Some(spec_limits))
            .context("the STATEHOUSE_DEFAULT_* settings do not make a valid spec")?
            .to_doc();
        if self.cell.trim().is_empty() {
            bail!("STATEHOUSE_CELL must not be empty");
        }
        let cells = match (file_cells, &self.cells) {
            (Some(file), _) => file
                .iter()
                .map(|c| CellCapacity {
                    name: c.name.clone(),
                    capacity: c.capacity,
                    reserved_for: c.reserved_for.clone(),
                })
                .collect(),
            (None, Some(list)) => parse_cells(list, self.cell_capacity)?,
            (None, None) => vec![CellCapacity {
                name: self.cell.clone(),
                capacity: self.cell_capacity,
                reserved_for: Vec::new(),
            }],
        };
        Ok(ApiSettings {
            spec_defaults,
            spec_limits,
            cells,
            prices,
        })
    }
}

fn parse_sizing_mode(input: &str) -> Result<SizingMode, String> {
    [SizingMode::Off, SizingMode::Recommend, SizingMode::Auto]
        .into_iter()
        .find(|m| m.as_str() == input.trim())
        .ok_or_else(|| format!("`{input}` is not a sizing mode: use off, recommend or auto"))
}

/// A cell's load balancer holds at most 100 target groups, one per tenant (not adjustable).
pub const MAX_CELL_CAPACITY: u32 = 100;

/// Parses `STATEHOUSE_CELLS`: `cell-1=100,cell-2` (a cell without `=` takes `default`).
pub fn parse_cells(list: &str, default: u32) -> anyhow::Result<Vec<CellCapacity>> {
    let mut cells: Vec<CellCapacity> = Vec::new();
    for entry in comma_list(list) {
        let (name, capacity) = match entry.split_once('=') {
            Some((name, n)) => {
                let capacity = n.trim().parse::<u32>().map_err(|_| {
                    anyhow::anyhow!(
                        "STATEHOUSE_CELLS: `{entry}` has no valid capacity (a whole number, e.g. cell-1=100)"
                    )
                })?;
                if capacity > MAX_CELL_CAPACITY {
                    bail!(
                        "STATEHOUSE_CELLS: `{entry}`: a cell holds at most {MAX_CELL_CAPACITY} tenants (target groups per load balancer)"
                    );
                }
                (name.trim(), capacity)
            }
            None => (entry.as_str(), default),
        };
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            bail!("STATEHOUSE_CELLS: `{name}` is not a cell name (letters, digits, - and _)");
        }
        if cells.iter().any(|c| c.name == name) {
            bail!("STATEHOUSE_CELLS: cell `{name}` is listed twice");
        }
        cells.push(CellCapacity {
            name: name.to_owned(),
            capacity,
            reserved_for: Vec::new(),
        });
    }
    if cells.is_empty() {
        bail!("STATEHOUSE_CELLS lists no cell");
    }
    Ok(cells)
}

/// A duration as `90`, `90s`, `5m` or `2h` (a bare number is seconds).
pub fn parse_duration(input: &str) -> Result<Duration, String> {
    single_unit(input).or_else(|e| match crate::domain::rollout::Span::parse(input) {
        // Several components, as in `1h 30m` or `5h30m`.
        Ok(span) if !span.0.is_zero() => Ok(span.0),
        _ => Err(e),
    })
}

/// A number with one unit, or a bare number of seconds: `90`, `1.5h`, `250ms`.
fn single_unit(input: &str) -> Result<Duration, String> {
    let input = input.trim();
    let (number, unit) = match input.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => input.split_at(i),
        None => (input, "s"),
    };
    let n: f64 = number
        .parse()
        .map_err(|_| format!("`{input}` is not a duration such as 30s, 5m or 1h"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("`{input}` has an unknown unit; use ms, s, m or h")),
    };
    if !secs.is_finite() || secs <= 0.0 {
        return Err(format!("`{input}` must be a positive duration"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// As [`parse_duration`], where zero (`0`, `0s`) turns the thing off.
pub fn parse_duration_or_zero(input: &str) -> Result<Duration, String> {
    match input
        .trim()
        .trim_end_matches(|c: char| c.is_ascii_alphabetic())
    {
        "0" => Ok(Duration::ZERO),
        _ => parse_duration(input),
    }
}

fn comma_list(input: &str) -> Vec<String> {
    input
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The shared platform the worker places tenants on: the outputs of
/// terraform-modules/platform, or what `statehouse dev bootstrap` writes.
#[derive(Args, Debug, Clone)]
pub struct PlatformArgs {
    /// Prefix of every tenant resource name.
    #[arg(long, env = "STATEHOUSE_PREFIX", default_value = "humangov")]
    pub prefix: String,
    /// Tenants answer on https://{state}.{base_domain}.
    #[arg(long, env = "STATEHOUSE_BASE_DOMAIN")]
    pub base_domain: Option<String>,
    /// The ECS cluster of the cell.
    #[arg(long, env = "STATEHOUSE_CLUSTER")]
    pub cluster: Option<String>,
    /// The shared ALB's HTTPS listener the tenants' host rules go on.
    #[arg(long, env = "STATEHOUSE_LISTENER_ARN")]
    pub listener_arn: Option<String>,
    #[arg(long, env = "STATEHOUSE_VPC_ID")]
    pub vpc_id: Option<String>,
    /// Private subnets for the tasks, comma separated.
    #[arg(long, env = "STATEHOUSE_SUBNETS")]
    pub subnets: Option<String>,
    /// The tasks' security groups, comma separated.
    #[arg(long, env = "STATEHOUSE_SECURITY_GROUPS")]
    pub security_groups: Option<String>,
    /// The shared task execution role.
    #[arg(long, env = "STATEHOUSE_EXECUTION_ROLE_ARN")]
    pub execution_role_arn: Option<String>,
    #[arg(long, env = "STATEHOUSE_LOG_RETENTION_DAYS", default_value_t = 30)]
    pub log_retention_days: i32,
    /// A deployment not completed this long after it started is reported as failed.
    #[arg(long, env = "STATEHOUSE_DEPLOYMENT_TIMEOUT", default_value = "15m", value_parser = parse_duration)]
    pub deployment_timeout: Duration,
    /// The AWS account; asked of STS when not given.
    #[arg(long, env = "STATEHOUSE_ACCOUNT_ID")]
    pub account_id: Option<String>,
    /// Every cell, each in its own account and region if need be, in a TOML or JSON file
    /// (see src/cells.rs); replaces STATEHOUSE_CELL(S), _CLUSTER, _LISTENER_ARN, _VPC_ID,
    /// _SUBNETS, _SECURITY_GROUPS and _EXECUTION_ROLE_ARN.
    #[arg(long, env = "STATEHOUSE_CELLS_FILE")]
    pub cells_file: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub alarms: AlarmArgs,
}

/// Every tenant's CloudWatch alarms (src/reconcile/alarms.rs); periods are one minute.
#[derive(Args, Debug, Clone)]
pub struct AlarmArgs {
    /// `no-healthy` fires after this many minutes in a row without a healthy target.
    #[arg(long, env = "STATEHOUSE_ALARM_NO_HEALTHY_MINUTES", default_value_t = 2,
          value_parser = clap::value_parser!(i32).range(1..=1440))]
    pub alarm_no_healthy_minutes: i32,
    /// `unhealthy` fires after this many minutes in a row with an unhealthy target.
    #[arg(long, env = "STATEHOUSE_ALARM_UNHEALTHY_MINUTES", default_value_t = 5,
          value_parser = clap::value_parser!(i32).range(1..=1440))]
    pub alarm_unhealthy_minutes: i32,
    /// `5xx-rate`: the share of requests answered 5xx by the tasks, in percent, above which
    /// a minute breaches.
    #[arg(long, env = "STATEHOUSE_ALARM_5XX_PERCENT", default_value_t = 5.0)]
    pub alarm_5xx_percent: f64,
    /// `5xx-rate`: minutes with fewer requests than this never breach.
    #[arg(
        long,
        env = "STATEHOUSE_ALARM_5XX_MIN_REQUESTS",
        default_value_t = 20.0
    )]
    pub alarm_5xx_min_requests: f64,
    /// `5xx-rate` fires when this many of the last `STATEHOUSE_ALARM_5XX_MINUTES` breach.
    #[arg(long, env = "STATEHOUSE_ALARM_5XX_BREACHING", default_value_t = 3,
          value_parser = clap::value_parser!(i32).range(1..=1440))]
    pub alarm_5xx_breaching: i32,
    #[arg(long, env = "STATEHOUSE_ALARM_5XX_MINUTES", default_value_t = 5,
          value_parser = clap::value_parser!(i32).range(1..=1440))]
    pub alarm_5xx_minutes: i32,
    /// `latency`: the targets' p90 response time, in seconds, above which a minute breaches.
    #[arg(
        long,
        env = "STATEHOUSE_ALARM_LATENCY_P90_SECONDS",
        default_value_t = 2.0
    )]
    pub alarm_latency_p90_seconds: f64,
    #[arg(long, env = "STATEHOUSE_ALARM_LATENCY_MINUTES", default_value_t = 5,
          value_parser = clap::value_parser!(i32).range(1..=1440))]
    pub alarm_latency_minutes: i32,
    /// `cpu-high`: the service's average CPU, in percent.
    #[arg(long, env = "STATEHOUSE_ALARM_CPU_PERCENT", default_value_t = 90.0)]
    pub alarm_cpu_percent: f64,
    /// `memory-high`: the service's average memory, in percent.
    #[arg(long, env = "STATEHOUSE_ALARM_MEMORY_PERCENT", default_value_t = 90.0)]
    pub alarm_memory_percent: f64,
    /// `cpu-high` and `memory-high` fire after this many minutes in a row above.
    #[arg(long, env = "STATEHOUSE_ALARM_UTILIZATION_MINUTES", default_value_t = 5,
          value_parser = clap::value_parser!(i32).range(1..=1440))]
    pub alarm_utilization_minutes: i32,
    /// An SNS topic told whenever an alarm goes to ALARM and back to OK (the platform
    /// Terraform module's `alarm_topic_arn` output).
    #[arg(long, env = "STATEHOUSE_ALARM_TOPIC_ARN")]
    pub alarm_topic_arn: Option<String>,
}

impl AlarmArgs {
    pub fn settings(&self) -> anyhow::Result<AlarmSettings> {
        let percent = |v: f64, name: &str| {
            if v.is_finite() && v > 0.0 && v <= 100.0 {
                Ok(v)
            } else {
                Err(anyhow::anyhow!(
                    "{name} must be a percentage above 0 and at most 100"
                ))
            }
        };
        if self.alarm_5xx_breaching > self.alarm_5xx_minutes {
            bail!("STATEHOUSE_ALARM_5XX_BREACHING must not exceed STATEHOUSE_ALARM_5XX_MINUTES");
        }
        if !(self.alarm_5xx_min_requests.is_finite() && self.alarm_5xx_min_requests >= 0.0) {
            bail!("STATEHOUSE_ALARM_5XX_MIN_REQUESTS must be a number of requests, 0 or more");
        }
        if !(self.alarm_latency_p90_seconds.is_finite() && self.alarm_latency_p90_seconds > 0.0) {
            bail!("STATEHOUSE_ALARM_LATENCY_P90_SECONDS must be a positive number of seconds");
        }
        let topic_arn = self
            .alarm_topic_arn
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned);
        if let Some(t) = &topic_arn {
            if !t.starts_with("arn:") || !t.contains(":sns:") {
                bail!("STATEHOUSE_ALARM_TOPIC_ARN must be an SNS topic ARN, not `{t}`");
            }
        }
        Ok(AlarmSettings {
            no_healthy_periods: self.alarm_no_healthy_minutes,
            unhealthy_periods: self.alarm_unhealthy_minutes,
            error_rate_percent: percent(self.alarm_5xx_percent, "STATEHOUSE_ALARM_5XX_PERCENT")?,
            error_rate_min_requests: self.alarm_5xx_min_requests,
            error_rate_datapoints: self.alarm_5xx_breaching,
            error_rate_periods: self.alarm_5xx_minutes,
            latency_p90_seconds: self.alarm_latency_p90_seconds,
            latency_periods: self.alarm_latency_minutes,
            cpu_percent: percent(self.alarm_cpu_percent, "STATEHOUSE_ALARM_CPU_PERCENT")?,
            memory_percent: percent(self.alarm_memory_percent, "STATEHOUSE_ALARM_MEMORY_PERCENT")?,
            utilization_periods: self.alarm_utilization_minutes,
            topic_arn,
        })
    }
}

/// CloudWatch Logs accepts only these retention periods.
const LOG_RETENTION_DAYS: [i32; 22] = [
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];

impl PlatformArgs {
    /// The cells file's cells, checked, if there is a file.
    pub fn file_cells(&self, default_capacity: u32) -> anyhow::Result<Option<Vec<CellConfig>>> {
        self.cells_file
            .as_deref()
            .map(|path| crate::cells::load(path, default_capacity))
            .transpose()
    }

    /// The platform with every cell of the cells file; see [`PlatformArgs::platform`].
    fn platform_of_file(
        &self,
        cells: Vec<CellConfig>,
        account: String,
        region: String,
    ) -> anyhow::Result<Platform> {
        let base_domain = self
            .base_domain
            .clone()
            .filter(|d| !d.trim().is_empty())
            .ok_or_else(|| anyhow::anyhow!("the worker needs STATEHOUSE_BASE_DOMAIN"))?;
        let execution_role_arn = cells
            .first()
            .map(|c| c.execution_role_arn.clone())
            .unwrap_or_default();
        Ok(Platform {
            prefix: Prefix::parse(&self.prefix).map_err(anyhow::Error::msg)?,
            account,
            region,
            base_domain,
            execution_role_arn,
            log_retention_days: self.checked_retention()?,
            deployment_timeout: self.deployment_timeout,
            alarms: self.alarms.settings()?,
            cells: cells.into_iter().map(Cell::from).collect(),
        })
    }

    fn checked_retention(&self) -> anyhow::Result<i32> {
        if !LOG_RETENTION_DAYS.contains(&self.log_retention_days) {
            bail!("STATEHOUSE_LOG_RETENTION_DAYS must be one of {LOG_RETENTION_DAYS:?}");
        }
        Ok(self.log_retention_days)
    }

    /// Checks the settings and names what is missing, so a misconfigured worker stops at
    /// start rather than failing every tenant. With a cells file, its cells (and `cell` is
    /// ignored); otherwise the one cell `cell` of the STATEHOUSE_* settings, in `account`
    /// and `region`.
    pub fn platform(
        &self,
        cell: &str,
        account: String,
        region: String,
    ) -> anyhow::Result<Platform> {
        if let Some(cells) = self.file_cells(MAX_CELL_CAPACITY)? {
            return self.platform_of_file(cells, account, region);
        }
        let mut missing = Vec::new();
        let mut need = |v: &Option<String>, name: &'static str| {
            if v.as_deref().is_none_or(|s| s.trim().is_empty()) {
                missing.push(name);
            }
            v.clone().unwrap_or_default()
        };
        let base_domain = need(&self.base_domain, "STATEHOUSE_BASE_DOMAIN");
        let cluster = need(&self.cluster, "STATEHOUSE_CLUSTER");
        let listener_arn = need(&self.listener_arn, "STATEHOUSE_LISTENER_ARN");
        let vpc_id = need(&self.vpc_id, "STATEHOUSE_VPC_ID");
        let execution_role_arn = need(&self.execution_role_arn, "STATEHOUSE_EXECUTION_ROLE_ARN");
        let subnets = comma_list(&need(&self.subnets, "STATEHOUSE_SUBNETS"));
        let security_groups =
            comma_list(&need(&self.security_groups, "STATEHOUSE_SECURITY_GROUPS"));
        if !missing.is_empty() {
            bail!(
                "the worker needs the shared platform's settings; missing: {} \
                 (run `statehouse dev bootstrap` for the local emulator, or pass --no-worker)",
                missing.join(", ")
            );
        }
        if !LOG_RETENTION_DAYS.contains(&self.log_retention_days) {
            bail!("STATEHOUSE_LOG_RETENTION_DAYS must be one of {LOG_RETENTION_DAYS:?}");
        }
        let prefix = Prefix::parse(&self.prefix).map_err(anyhow::Error::msg)?;
        let alarms = self.alarms.settings()?;
        let (home_account, home_region) = (account.clone(), region.clone());
        let home_execution_role = execution_role_arn.clone();
        Ok(Platform {
            prefix,
            account,
            region,
            base_domain,
            execution_role_arn,
            log_retention_days: self.log_retention_days,
            deployment_timeout: self.deployment_timeout,
            alarms,
            cells: vec![Cell {
                name: cell.to_owned(),
                cluster,
                listener_arn,
                vpc_id,
                subnets,
                security_groups,
                execution_role_arn: home_execution_role,
                account: home_account,
                region: home_region,
                role_arn: None,
                alarm_topic_arn: None,
            }],
        })
    }
}

/// How the worker paces itself.
#[derive(Args, Debug, Clone)]
pub struct WorkerArgs {
    /// Tenants reconciled at once by this process.
    #[arg(long, env = "STATEHOUSE_WORKER_CONCURRENCY", default_value_t = 16)]
    pub worker_concurrency: usize,
    /// Every cell's whole tenants are compared with AWS this often, in batched calls; a
    /// tenant found drifted gets a full pass at once.
    #[arg(long, env = "STATEHOUSE_RESYNC_INTERVAL", default_value = "5m", value_parser = parse_duration)]
    pub resync_interval: Duration,
    /// Every whole tenant's deep check (bucket settings, table backups, role policies,
    /// target group attributes: what no batched call reads) runs this often, spread over
    /// the interval. An API change or a reconcile request always runs a full pass at once.
    #[arg(long, env = "STATEHOUSE_DEEP_RESYNC_INTERVAL", default_value = "1h", value_parser = parse_duration)]
    pub deep_resync_interval: Duration,
    /// A worker that stops heartbeating loses its tenants after this long.
    #[arg(long, env = "STATEHOUSE_LEASE_TTL", default_value = "30s", value_parser = parse_duration)]
    pub lease_ttl: Duration,
    /// How long transient AWS errors are retried before the tenant shows `failed`.
    #[arg(long, env = "STATEHOUSE_RETRY_BUDGET", default_value = "10m", value_parser = parse_duration)]
    pub retry_budget: Duration,
    /// How long one pass watches a deployment before handing the tenant back.
    #[arg(long, env = "STATEHOUSE_ROLLOUT_WATCH", default_value = "20s", value_parser = parse_duration)]
    pub rollout_watch: Duration,
    #[arg(long, env = "STATEHOUSE_BACKOFF_BASE", default_value = "1s", value_parser = parse_duration)]
    pub backoff_base: Duration,
    #[arg(long, env = "STATEHOUSE_BACKOFF_MAX", default_value = "60s", value_parser = parse_duration)]
    pub backoff_max: Duration,
    /// Every ready tenant's health is observed in AWS this often (one round per cell).
    #[arg(long, env = "STATEHOUSE_HEALTH_INTERVAL", default_value = "60s", value_parser = parse_duration)]
    pub health_interval: Duration,
    /// While a rollout's tenants bake, their health (alarms, targets, tasks) is read from
    /// AWS this often, and at the end of each bake.
    #[arg(long, env = "STATEHOUSE_ROLLOUT_GATE_INTERVAL", default_value = "15s", value_parser = parse_duration)]
    pub rollout_gate_interval: Duration,
    #[command(flatten)]
    pub sizing: SizingArgs,
    #[command(flatten)]
    pub budget: BudgetArgs,
}

/// The AWS call budget (src/aws/budget.rs): how much of each AWS request bucket of an
/// account and region statehouse may use.
#[derive(Args, Debug, Clone)]
pub struct BudgetArgs {
    /// The share of each documented AWS limit that statehouse uses, all its processes
    /// together; the rest is left to Terraform, other tools and people.
    #[arg(long, env = "STATEHOUSE_AWS_BUDGET_SHARE", default_value_t = 0.25)]
    pub aws_budget_share: f64,
    /// How many statehouse processes call AWS in the same accounts; each takes this
    /// fraction of the share.
    #[arg(long, env = "STATEHOUSE_AWS_BUDGET_PROCESSES", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub aws_budget_processes: u32,
    /// Limits that differ from the documented ones (a raised quota), as
    /// `bucket=rate/burst` separated by commas, e.g. `elb=20/80`.
    #[arg(long, env = "STATEHOUSE_AWS_LIMITS")]
    pub aws_limits: Option<String>,
}

impl BudgetArgs {
    pub fn settings(&self) -> anyhow::Result<crate::aws::budget::BudgetSettings> {
        let share = self.aws_budget_share;
        if !(share.is_finite() && share > 0.0 && share <= 1.0) {
            bail!("STATEHOUSE_AWS_BUDGET_SHARE must be above 0 and at most 1, not {share}");
        }
        let limits = match self.aws_limits.as_deref() {
            Some(text) => crate::aws::budget::BudgetSettings::parse_limits(text)
                .map_err(|e| anyhow::anyhow!("STATEHOUSE_AWS_LIMITS: {e}"))?,
            None => Default::default(),
        };
        Ok(crate::aws::budget::BudgetSettings {
            share,
            processes: self.aws_budget_processes,
            limits,
        })
    }
}

/// Rightsizing (src/sizing/): how often, over how much history, at what prices.
#[derive(Args, Debug, Clone)]
pub struct SizingArgs {
    /// Each tenant with sizing on gets a recommendation this often, spread over the
    /// interval.
    #[arg(long, env = "STATEHOUSE_SIZING_INTERVAL", default_value = "1h", value_parser = parse_duration)]
    pub sizing_interval: Duration,
    /// How far back CPU and memory are read: 1 to 15 days (CloudWatch keeps one-minute
    /// points for 15 days).
    #[arg(long, env = "STATEHOUSE_SIZING_LOOKBACK", default_value = "14d", value_parser = parse_duration)]
    pub sizing_lookback: Duration,
    /// Each cell's stopped tasks are read this often for tasks that ran out of memory
    /// (ECS keeps a stopped task visible for at least an hour).
    #[arg(long, env = "STATEHOUSE_SIZING_OOM_INTERVAL", default_value = "1m", value_parser = parse_duration)]
    pub sizing_oom_interval: Duration,
    /// Fargate's price of one vCPU for an hour, in USD (default: us-east-1, Linux/x86).
    #[arg(long, env = "STATEHOUSE_FARGATE_VCPU_HOUR", default_value_t = 0.04048)]
    pub fargate_vcpu_hour: f64,
    /// Fargate's price of one GB of memory for an hour, in USD (default: us-east-1,
    /// Linux/x86).
    #[arg(long, env = "STATEHOUSE_FARGATE_GB_HOUR", default_value_t = 0.004445)]
    pub fargate_gb_hour: f64,
}

impl SizingArgs {
    pub fn prices(&self) -> anyhow::Result<Prices> {
        for (v, name) in [
            (self.fargate_vcpu_hour, "STATEHOUSE_FARGATE_VCPU_HOUR"),
            (self.fargate_gb_hour, "STATEHOUSE_FARGATE_GB_HOUR"),
        ] {
            if !(v.is_finite() && v > 0.0) {
                bail!("{name} must be a price above 0 (USD an hour), not {v}");
            }
        }
        Ok(Prices {
            vcpu_hour: self.fargate_vcpu_hour,
            gb_hour: self.fargate_gb_hour,
        })
    }

    pub fn settings(&self) -> anyhow::Result<SizingSettings> {
        let day = Duration::from_secs(86_400);
        if self.sizing_lookback < day || self.sizing_lookback > day * 15 {
            bail!("STATEHOUSE_SIZING_LOOKBACK must be from 1d to 15d (CloudWatch keeps one-minute points for 15 days)");
        }
        for (d, name) in [
            (self.sizing_interval, "STATEHOUSE_SIZING_INTERVAL"),
            (self.sizing_oom_interval, "STATEHOUSE_SIZING_OOM_INTERVAL"),
        ] {
            if d < Duration::from_secs(1) {
                bail!("{name} must be at least 1s");
            }
        }
        Ok(SizingSettings {
            interval: self.sizing_interval,
            lookback: self.sizing_lookback,
            oom_interval: self.sizing_oom_interval,
            prices: self.prices()?,
        })
    }
}

impl WorkerArgs {
    pub fn settings(&self) -> anyhow::Result<WorkerSettings> {
        if self.worker_concurrency == 0 {
            bail!("STATEHOUSE_WORKER_CONCURRENCY must be at least 1");
        }
        if self.lease_ttl < Duration::from_secs(3) {
            bail!("STATEHOUSE_LEASE_TTL must be at least 3s");
        }
        for (d, name) in [
            (self.resync_interval, "STATEHOUSE_RESYNC_INTERVAL"),
            (self.deep_resync_interval, "STATEHOUSE_DEEP_RESYNC_INTERVAL"),
        ] {
            if d < Duration::from_secs(1) {
                bail!("{name} must be at least 1s");
            }
        }
        Ok(WorkerSettings {
            concurrency: self.worker_concurrency,
            resync_interval: self.resync_interval,
            deep_resync_interval: self.deep_resync_interval,
            lease_ttl: self.lease_ttl,
            retry_budget: self.retry_budget,
            rollout_watch: self.rollout_watch,
            backoff_base: self.backoff_base,
            backoff_max: self.backoff_max.max(self.backoff_base),
            health_interval: self.health_interval,
            rollout_gate_interval: self.rollout_gate_interval.max(Duration::from_millis(100)),
            sizing: self.sizing.settings()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_one_unit_or_several() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1.5h").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("5h30m").unwrap(), Duration::from_secs(19800));
        assert_eq!(parse_duration("1h 30m").unwrap(), Duration::from_secs(5400));
        for bad in ["0s", "0s 0ms", "soon", "5 fortnights"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cells_take_their_own_capacity_or_the_default() {
        let cells = parse_cells(" cell-1=2, cell_2 ,cell-3=0", 100).unwrap();
        let got: Vec<(&str, u32)> = cells
            .iter()
            .map(|c| (c.name.as_str(), c.capacity))
            .collect();
        assert_eq!(got, [("cell-1", 2), ("cell_2", 100), ("cell-3", 0)]);
    }

    #[test]
    fn a_bad_cell_list_says_which_entry_is_wrong() {
        for (input, expected) in [
            ("cell-1=lots", "`cell-1=lots` has no valid capacity"),
            ("cell-1=-1", "`cell-1=-1` has no valid capacity"),
            ("cell-1=101", "at most 100 tenants"),
            ("cell 1", "`cell 1` is not a cell name"),
            ("=5", "`` is not a cell name"),
            ("cell-1,cell-1=3", "cell `cell-1` is listed twice"),
            (" , ", "lists no cell"),
        ] {
            let err = parse_cells(input, 100).unwrap_err().to_string();
            assert!(err.contains(expected), "{input:?}: {err}");
        }
    }
}
