use std::{sync::Arc, time::Duration};

use anyhow::Context;
use tokio::net::TcpListener;

use crate::{
    aws::{budget::BudgetSettings, fault::FaultPoint, Aws},
    config::{PlatformArgs, WorkerArgs, WorkerCommandArgs},
    db,
    http::{self, AppState, Tuning},
    metrics::Metrics,
    reconcile::platform::Platform,
    worker::{clients, Worker},
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
    let cell_aws = clients::cell_clients(
        &aws,
        &platform.account,
        &platform.region,
        &platform.cells,
        &budget,
        metrics.clone(),
    )
    .await?;
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
    let counter = Aws::metrics_counter(metrics.clone()).with_fault(fault);
    let aws = clients::home_clients(config.clone(), counter, budget, metrics);
    let account = match &platform.account_id {
        Some(a) => a.clone(),
        None => aws.account_id().await.context(
            "cannot find the AWS account (set STATEHOUSE_ACCOUNT_ID or check credentials)",
        )?,
    };
    let platform = platform.platform(cell, account, region)?;
    Ok((aws, platform))
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
