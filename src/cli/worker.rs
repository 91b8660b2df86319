use std::{sync::Arc, time::Duration};

use anyhow::Context;
use tokio::net::TcpListener;

use crate::{
    aws::{fault::FaultPoint, Aws},
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
    let (aws, platform) = aws_and_platform(platform, cell, metrics.clone()).await?;
    Ok(Worker {
        id: Worker::new_id(),
        pool,
        aws,
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
    metrics: Arc<Metrics>,
) -> anyhow::Result<(Aws, Platform)> {
    let config = Aws::load_config().await;
    let region = config
        .region()
        .map(|r| r.as_ref().to_owned())
        .context("no AWS region: set AWS_REGION")?;
    // Test-only: the crash tests arm a fault point through the environment.
    let fault = FaultPoint::from_env().map_err(anyhow::Error::msg)?;
    let aws = Aws::with_counter(&config, Aws::metrics_counter(metrics).with_fault(fault));
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
    let api_settings = args.tenants.settings(args.worker.sizing.prices()?)?;
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
