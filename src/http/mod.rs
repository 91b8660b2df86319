//! The REST API: routes, shared state and the layers every request passes through.

mod actions;
pub mod admission;
pub mod auth;
pub mod cache;
mod create;
mod cursor;
mod defaults;
pub mod error;
pub mod events;
mod extract;
pub mod fleet;
mod headers;
mod health;
pub mod openapi;
mod patch;
mod rollout_create;
mod rollout_ops;
pub mod rollouts;
pub mod sizing;
pub mod tenants;
mod watch;

use std::{future::Future, sync::Arc, time::Duration};

use axum::{
    extract::{DefaultBodyLimit, MatchedPath, Request, State},
    http::{HeaderName, Method},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    Router,
};
use sqlx::PgPool;
use tokio::net::TcpListener;
use tower_http::{
    catch_panic::CatchPanicLayer,
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    trace::{DefaultOnResponse, TraceLayer},
};
use tracing::Level;
use utoipa_swagger_ui::{Config as SwaggerConfig, SwaggerUi};

use crate::{
    db::cells::CellCapacity,
    domain::spec::{SpecDoc, SpecLimits},
    metrics::Metrics,
};
use admission::Admission;
use error::ApiError;

/// API keys found valid, by the SHA-256 of their token.
pub type KeyCache = cache::Cache<[u8; 32], auth::Caller>;
/// Tenants as GET served them, by slug.
pub type TenantCache = cache::Cache<&'static str, tenants::Served>;

/// Bodies larger than this are refused with a 413 before they are parsed.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// What the API needs from configuration.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// Seeds the fleet defaults (`/v1/fleet/defaults`) the first time they are read; from
    /// then on the stored defaults fill every spec field a client leaves out.
    pub spec_defaults: SpecDoc,
    pub spec_limits: SpecLimits,
    /// The cells new tenants are placed in, in order of preference, with their capacity.
    pub cells: Vec<CellCapacity>,
    /// Fargate's prices, for what sizes cost.
    pub prices: crate::sizing::Prices,
}

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub settings: Arc<ApiSettings>,
    pub metrics: Arc<Metrics>,
    /// SHA-256 of `STATEHOUSE_BOOTSTRAP_ADMIN_TOKEN`, when set.
    pub bootstrap_token_hash: Option<[u8; 32]>,
    pub admission: Admission,
    /// Keys recently found valid.
    pub keys: KeyCache,
    /// Tenants as GET last served them.
    pub tenants: TenantCache,
    /// Reads a tenant's health from AWS on demand; `None` when this process has no AWS
    /// region configured.
    pub live_health: Option<Arc<crate::health::live::Reader>>,
}

/// How the API spends its database connections.
#[derive(Debug, Clone, Copy)]
pub struct Tuning {
    /// How long a `/v1` request waits for a connection before a 429.
    pub queue_timeout: Duration,
    /// How long a cached key or tenant is believed should its change announcement be lost;
    /// zero caches nothing.
    pub cache_ttl: Duration,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            queue_timeout: Duration::from_secs(5),
            cache_ttl: Duration::from_secs(5),
        }
    }
}

impl AppState {
    pub fn new(
        pool: PgPool,
        settings: ApiSettings,
        metrics: Arc<Metrics>,
        bootstrap_token_hash: Option<[u8; 32]>,
        tuning: Tuning,
    ) -> Self {
        Self {
            admission: Admission::new(&pool, tuning.queue_timeout),
            keys: KeyCache::new(tuning.cache_ttl),
            tenants: TenantCache::new(tuning.cache_ttl),
            pool,
            settings: Arc::new(settings),
            metrics,
            bootstrap_token_hash,
            live_health: None,
        }
    }

    /// Lets `/v1/tenants/{name}/health` read AWS with `aws`.
    pub fn with_aws(self, aws: crate::aws::Aws) -> Self {
        self.with_cell_aws(aws, Default::default())
    }

    /// As [`AppState::with_aws`], reading the tenants of the cells in `cell_aws` with
    /// their own clients (cells in other accounts or regions).
    pub fn with_cell_aws(
        mut self,
        aws: crate::aws::Aws,
        cell_aws: std::collections::HashMap<String, crate::aws::Aws>,
    ) -> Self {
        let reader = crate::health::live::Reader::new(aws).with_cells(cell_aws);
        self.live_health = Some(Arc::new(reader));
        self
    }
}

pub fn router(state: AppState) -> Router {
    let (routes, _) = openapi::router().split_for_parts();
    let cells: Vec<String> = state
        .settings
        .cells
        .iter()
        .map(|c| c.name.clone())
        .collect();
    let api = openapi::document_for(state.settings.spec_limits, &cells);
    let docs = SwaggerUi::new("/docs")
        .url("/openapi.json", api)
        .config(SwaggerConfig::default().persist_authorization(true));
    with_middleware(routes.merge(docs), state)
}

/// What every route passes through, outermost last: a request id, a trace span, the
/// metrics (which see every answer, a panic's 500 included), the panic guard, the body
/// limit, and admission to the database.
pub fn with_middleware(routes: Router<AppState>, state: AppState) -> Router {
    routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), admission::admit))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::Internal(anyhow::anyhow!("request handler panicked")).into_response()
        }))
        .layer(middleware::from_fn_with_state(state.clone(), track_request))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request| {
                    let id = req.headers().get(&REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("-");
                    tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.uri().path())
                })
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .with_state(state)
}

async fn track_request(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().clone();
    let started = std::time::Instant::now();
    let response = next.run(req).await;
    state.metrics.observe_request(
        &method,
        &route,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

async fn not_found(method: Method) -> ApiError {
    let hint = if method == Method::GET {
        " (the API lives under /v1; see /docs)"
    } else {
        ""
    };
    ApiError::NotFound(format!("no such route{hint}"))
}

async fn method_not_allowed(method: Method) -> ApiError {
    ApiError::MethodNotAllowed(format!("{method} is not allowed on this route"))
}

/// Serves until `shutdown` completes, then lets requests in flight finish.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_app(listener, router(state.clone()), &state, shutdown).await
}

/// Serves `app`, and meanwhile keeps `state`'s caches told of changes.
pub async fn serve_app(
    listener: TcpListener,
    app: Router,
    state: &AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let watch = tokio::spawn(watch::watch(
        state.pool.clone(),
        state.keys.clone(),
        state.tenants.clone(),
    ));
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await;
    watch.abort();
    served
}

/// Only `/healthz`, `/readyz` and `/metrics`: what a standalone worker exposes.
pub async fn serve_health(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (routes, _) = health::router().split_for_parts();
    axum::serve(listener, routes.fallback(not_found).with_state(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {}
        _ = terminate => {}
    }
    tracing::info!("shutting down: finishing requests in flight");
}
