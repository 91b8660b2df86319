use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::{
    config::ServeArgs,
    db,
    http::{self, AppState},
    metrics::Metrics,
};

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let settings = args.tenants.settings()?;
    let bootstrap_token_hash = args.bootstrap_token_hash()?;
    let pool = db::connect(
        &args.database.database_url,
        args.database.db_max_connections,
    )
    .await
    .context("cannot connect to the database at DATABASE_URL")?;
    db::MIGRATOR
        .run(&pool)
        .await
        .context("cannot apply database migrations")?;
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    tracing::info!(address = %args.listen, docs = %format!("http://{}/docs/", args.listen), "serving the API");
    let state = AppState {
        pool,
        settings: Arc::new(settings),
        metrics: Arc::new(Metrics::default()),
        bootstrap_token_hash,
    };
    http::serve(listener, state, http::shutdown_signal()).await?;
    Ok(())
}
