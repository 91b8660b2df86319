use std::{collections::HashMap, sync::Arc, time::Duration};

use anyhow::Context;
use tokio::net::TcpListener;

use crate::{
    aws::{
        budget::{Budget, BudgetSettings},
        fault::FaultPoint,
        Aws,
    },
    config::{PlatformArgs, WorkerArgs, WorkerCommandArgs},
    db,
    http::{self, AppState, Tuning},
    metrics::Metrics,
    reconcile::platform::Platform,
    worker::Worker,
};

/// Builds a worker from the environment: AWS clients (counting every call into `metrics`),
/// the account and region, and the shared platform's settings.
pub async fn build(
    database_url: &str,
    platform: &PlatformArgs,
    worker: &WorkerArgs,
    cell: &str,
    metrics: Arc<Metrics>,
) -> anyhow::Result<Worker> {
    let settings = worker.settings()?;
    // A pool of the worker's own, one connection per pass plus the LISTEN connection and
    // housekeeping, so neither the API nor busy passes can starve a heartbeat.
    let connections = u32::try_from(settings.concurrency)
        .unwrap_or(u32::MAX)
        .saturating_add(4);
    let pool = db::connect(database_url, connections)
        .await
        .context("cannot connect the worker to the database at DATABASE_URL")?;
    let budget = worker.budget.settings()?;
    let (aws, platform) = aws_and_platform(platform, cell, &budget, metrics.clone()).await?;
    let cell_aws = cell_clients(&aws, &platform, &budget, metrics.clone()).await?;
    Ok(Worker {
        id: Worker::new_id(),
        pool,
        aws,
        cell_aws,
        platform: Arc::new(platform),
        settings,
        metrics,
        observer: None,
    })
}

/// AWS clients (counting every call into `metrics`) and the shared platform's settings,
/// with the account from configuration or else from STS.
pub async fn aws_and_platform(
    platform: &PlatformArgs,
    cell: &str,
    budget: &BudgetSettings,
    metrics: Arc<Metrics>,
) -> anyhow::Result<(Aws, Platform)> {
    let config = Aws::load_config().await;
    let region = config
        .region()
        .map(|r| r.as_ref().to_owned())
        .context("no AWS region: set AWS_REGION")?;
    // Test-only: the crash tests arm a fault point through the environment.
    let fault = FaultPoint::from_env().map_err(anyhow::Error::msg)?;
    let budget = budgeted(budget, metrics.clone());
    let counter = Aws::metrics_counter(metrics).with_fault(fault);
    let aws = Aws::with_budget(&config, counter.clone(), Some(budget.clone()));
    let aws = aws.with_origin(config.clone(), counter, budget);
    let account = match &platform.account_id {
        Some(a) => a.clone(),
        None => aws.account_id().await.context(
            "cannot find the AWS account (set STATEHOUSE_ACCOUNT_ID or check credentials)",
        )?,
    };
    let platform = platform.platform(cell, account, region)?;
    Ok((aws, platform))
}

/// Clients for each cell in another account or region than the process's own: in the
/// cell's region, with credentials from AssumeRole on the cell's role (the SDK's provider,
/// which refreshes them before they expire), counted like every other call, and with the
/// call budget of the cell's account and region (shared by the cells there).
pub async fn cell_clients(
    home: &Aws,
    platform: &Platform,
    settings: &BudgetSettings,
    metrics: Arc<Metrics>,
) -> anyhow::Result<HashMap<String, Aws>> {
    use aws_config::{sts::AssumeRoleProvider, Region};
    use aws_sdk_sts::config::SharedCredentialsProvider;
    let Some((base, counter, home_budget)) = home.origin() else {
        return Ok(HashMap::new());
    };
    let mut budgets: HashMap<(String, String), Arc<Budget>> = HashMap::new();
    budgets.insert(
        (platform.account.clone(), platform.region.clone()),
        home_budget.clone(),
    );
    let mut clients = HashMap::new();
    for cell in &platform.cells {
        if cell.role_arn.is_none() {
            if cell.account != platform.account {
                anyhow::bail!(
                    "cell `{}` is in account {}, but this process's credentials are for {}: give the cell a `role_arn` to assume",
                    cell.name, cell.account, platform.account
                );
            }
            if cell.region == platform.region {
                continue;
            }
        }
        let region = Region::new(cell.region.clone());
        let mut config = base.to_builder().region(region.clone());
        if let Some(role) = &cell.role_arn {
            let provider = AssumeRoleProvider::builder(role.clone())
                .session_name(format!("statehouse-{}", cell.name))
                .region(region)
                .configure(base)
                .build()
                .await;
            config = config.credentials_provider(SharedCredentialsProvider::new(provider));
        }
        let budget = budgets
            .entry((cell.account.clone(), cell.region.clone()))
            .or_insert_with(|| budgeted(settings, metrics.clone()))
            .clone();
        clients.insert(
            cell.name.clone(),
            Aws::with_budget(&config.build(), counter.clone(), Some(budget)),
        );
    }
    Ok(clients)
}

/// The call budget of the account and region, with every wait counted into `metrics`.
pub fn budgeted(settings: &BudgetSettings, metrics: Arc<Metrics>) -> Arc<Budget> {
    let on_wait: crate::aws::budget::OnWait =
        Arc::new(move |bucket, waited| metrics.aws_budget_wait(bucket.as_str(), waited));
    Arc::new(Budget::new(settings, Some(on_wait)))
}

/// `statehouse worker`: the reconciler alone, with /healthz, /readyz and /metrics.
pub async fn run(args: WorkerCommandArgs) -> anyhow::Result<()> {
    let file_cells = args.platform.file_cells(args.tenants.cell_capacity)?;
    let api_settings = args
        .tenants
        .settings(args.worker.sizing.prices()?, file_cells.as_deref())?;
    let pool = super::migrated_pool(&args.database).await?;
    let metrics = Arc::new(Metrics::default());
    let worker = build(
        &args.database.database_url,
        &args.platform,
        &args.worker,
        &args.tenants.cell,
        metrics.clone(),
    )
    .await?;
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let tuning = Tuning {
        cache_ttl: Duration::ZERO,
        ..Tuning::default()
    };
    let state = AppState::new(pool, api_settings, metrics, None, tuning);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let health = tokio::spawn(http::serve_health(listener, state, wait(stop_rx)));
    worker.run(http::shutdown_signal()).await?;
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), health).await;
    Ok(())
}

async fn wait(mut rx: tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}
