use std::{collections::HashMap, sync::Arc};

use anyhow::Context;
use tokio::net::TcpListener;

use crate::{
    aws::Aws,
    config::ServeArgs,
    http::{self, AppState, Tuning},
    metrics::Metrics,
    reconcile::platform::Cell,
    worker::clients,
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
    // its own when this process runs no worker (and has a region to call): those of each
    // cell of the cells file too, so that a tenant in another account or region is read
    // there.
    let (aws, cell_aws) = match &worker {
        Some(w) => (Some(w.aws.clone()), w.cell_aws.clone()),
        None => match own_clients(&args, file_cells.as_deref(), metrics.clone()).await? {
            Some((aws, cell_aws)) => (Some(aws), cell_aws),
            None => (None, Default::default()),
        },
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

/// The API's own AWS clients when it runs no worker: the home clients, and one set per cell
/// of the cells file that is in another account or region. `None` without a region.
async fn own_clients(
    args: &ServeArgs,
    file_cells: Option<&[crate::cells::CellConfig]>,
    metrics: Arc<Metrics>,
) -> anyhow::Result<Option<(Aws, HashMap<String, Aws>)>> {
    let config = Aws::load_config().await;
    let Some(region) = config.region().map(|r| r.as_ref().to_owned()) else {
        return Ok(None);
    };
    let settings = args.worker.budget.settings()?;
    let counter = Aws::metrics_counter(metrics.clone());
    let aws = clients::home_clients(config, counter, &settings, metrics.clone());
    let Some(file_cells) = file_cells else {
        return Ok(Some((aws, HashMap::new())));
    };
    let account = match &args.platform.account_id {
        Some(a) => a.clone(),
        None => aws.account_id().await.context(
            "cannot find the AWS account the cells file's cells are reached from \
             (set STATEHOUSE_ACCOUNT_ID or check credentials)",
        )?,
    };
    let cells: Vec<Cell> = file_cells.iter().cloned().map(Cell::from).collect();
    let cell_aws =
        clients::cell_clients(&aws, &account, &region, &cells, &settings, metrics).await?;
    Ok(Some((aws, cell_aws)))
}
