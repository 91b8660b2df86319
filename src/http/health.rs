//! Probes and metrics, outside `/v1` and without authentication.

use axum::{
    extract::State,
    http::header,
    response::{IntoResponse, Response},
    Json,
};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{error::ApiError, AppState};
use crate::db;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    status: &'static str,
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// The database is reachable and has every migration this build needs.
#[utoipa::path(get, path = "/readyz", tag = "health", responses(
    (status = 200, body = Health),
    (status = 503, body = super::error::Problem, content_type = "application/problem+json"),
))]
async fn readyz(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    if db::is_migrated(&state.pool).await? {
        Ok(Json(Health { status: "ready" }))
    } else {
        Err(ApiError::Unavailable(sqlx::Error::Protocol(
            "database schema is behind this build".into(),
        )))
    }
}

/// Prometheus metrics in the OpenMetrics text format.
#[utoipa::path(get, path = "/metrics", tag = "health", responses(
    (status = 200, body = String, content_type = "application/openmetrics-text")
))]
async fn metrics(State(state): State<AppState>) -> Response {
    match db::tenants::count_by_status(&state.pool).await {
        Ok(counts) => state.metrics.set_tenant_counts(&counts),
        Err(err) => tracing::warn!(error = %err, "cannot count tenants for metrics"),
    }
    match db::health::count_by_health(&state.pool).await {
        Ok(counts) => state.metrics.set_health_counts(&counts),
        Err(err) => tracing::warn!(error = %err, "cannot count tenants by health for metrics"),
    }
    match db::tenants::all_live(&state.pool).await {
        Ok(tenants) => {
            let t = super::sizing::summarise(&tenants, &state.settings.prices, chrono::Utc::now())
                .totals;
            state.metrics.set_sizing_cost(t.current, t.recommended);
        }
        Err(err) => tracing::warn!(error = %err, "cannot read tenants for the sizing cost metric"),
    }
    match db::rollouts::count_by_state(&state.pool).await {
        Ok(counts) => state.metrics.set_rollout_counts(&counts),
        Err(err) => tracing::warn!(error = %err, "cannot count rollouts for metrics"),
    }
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        state.metrics.render(),
    )
        .into_response()
}
