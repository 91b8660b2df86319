use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::{
    config::ServeArgs,
    http::{self, AppState, Tuning},
    metrics::Metrics,
};

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    // A wrong cells file stops the process here, before anything is served.
    let file_cells = args.platform.file_cells(args.tenants.cell_capacity)?;
    let settings = args
        .tenants
        .settings(args.worker.sizing.prices()?, file_cells.as_deref())?;
    let bootstrap_token_hash = args.bootstrap_token_hash()?;
    let pool = super::migrated_pool(&args.database).await?;
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    tracing::info!(address = %args.listen, docs = %format!("http://{}/docs/", args.listen), "serving the API");
    let metrics = Arc::new(Metrics::default());
    // Built before serving, so a misconfigured worker stops the process at start.
    let worker = if args.no_worker {
        None
    } else {
        Some(
            super::worker::build(
                &args.database.database_url,
                &args.platform,
                &args.worker,
                &args.tenants.cell,
                metrics.clone(),
            )
            .await?,
        )
    };
    let tuning = Tuning {
        queue_timeout: args.api_queue_timeout,
        cache_ttl: args.cache_ttl,
    };
    // `/v1/tenants/{name}/health` reads AWS with the worker's clients, or with clients of
    // its own when this process runs no worker (and has a region to call).
    let cell_aws = worker
        .as_ref()
        .map(|w| w.cell_aws.clone())
        .unwrap_or_default();
    let aws = match &worker {
        Some(w) => Some(w.aws.clone()),
        None => {
            let config = crate::aws::Aws::load_config().await;
            config
                .region()
                .is_some()
                .then(|| -> anyhow::Result<_> {
                    let budget = crate::worker::clients::budgeted(
                        &args.worker.budget.settings()?,
                        metrics.clone(),
                    );
                    let counter = crate::aws::Aws::metrics_counter(metrics.clone());
                    Ok(crate::aws::Aws::with_budget(&config, counter, Some(budget)))
                })
                .transpose()?
        }
    };
    let mut state = AppState::new(pool, settings, metrics, bootstrap_token_hash, tuning);
    if let Some(aws) = aws {
        state = state.with_cell_aws(aws, cell_aws);
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let worker = worker.map(|w| {
        let mut stop = stop_rx.clone();
        tokio::spawn(w.run(async move {
            let _ = stop.wait_for(|s| *s).await;
        }))
    });
    let api = http::serve(listener, state, http::shutdown_signal()).await;
    let _ = stop_tx.send(true);
    if let Some(worker) = worker {
        worker.await??;
    }
    api?;
    Ok(())
}
