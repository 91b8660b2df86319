//! Operator actions on a tenant that are not changes to its desired state: ask for a pass
//! now, or pause the worker while the tenant is repaired by hand.

use axum::{extract::State, http::StatusCode, response::Response};
use serde::Deserialize;
use serde_json::json;
use utoipa::{
    openapi::{RefOr, Schema},
    ToSchema,
};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    auth::AdminCaller,
    error::{ApiError, ApiResult, Problem},
    extract::{Body, OptionalJson, TenantName},
    tenants::{commit_change, lock_live, tenant_response},
    AppState,
};
use crate::{
    db,
    domain::{tenant::Tenant, text},
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(reconcile_tenant))
        .routes(routes!(pause_tenant))
        .routes(routes!(resume_tenant))
}

const MAX_REASON: usize = 500;

/// Why a tenant is paused.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PauseTenant {
    #[schema(schema_with = reason_schema)]
    reason: Option<String>,
}

impl Body for PauseTenant {
    const OBJECT_MEMBERS: Option<&'static [&'static str]> = Some(&[]);
}

fn reason_schema() -> impl Into<RefOr<Schema>> {
    let mut schema = text::schema(MAX_REASON, false, true);
    schema.description = Some(
        "Shown on the tenant and in its history: at most 500 characters, no control \
         characters; stored trimmed, and one that is only white space is no reason."
            .into(),
    );
    schema.examples = vec!["restoring the table from a backup by hand, ticket OPS-1234".into()];
    schema
}

/// Ask for an immediate reconcile.
///
/// The worker normally revisits every tenant once per resync interval; this makes the tenant
/// due now, e.g. after something was repaired by hand, or to retry a tenant that failed for
/// a reason that has since gone away. It answers at once; follow the tenant's status.
#[utoipa::path(
    post, path = "/v1/tenants/{name}/reconcile", tag = "tenants",
    security(("bearer" = [])),
    params(TenantName),
    responses(
        (status = 202, description = "A pass is due now", body = Tenant, headers(("Location" = String), ("ETag" = String))),
        (status = 403, description = "A viewer key", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The tenant is paused", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not a state's name", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn reconcile_tenant(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    TenantName(name): TenantName,
) -> ApiResult<Response> {
    let mut tx = state.pool.begin().await?;
    let current = lock_live(&mut tx, name).await?;
    if current.paused_at.is_some() {
        return Err(ApiError::Conflict(format!(
            "tenant {name} is paused; resume it to reconcile it"
        )));
    }
    db::tenants::request_reconcile(&mut tx, current.id).await?;
    let message = format!("reconcile requested by key {}", caller.key_name);
    commit_change(
        &state,
        tx,
        &current,
        &caller,
        "tenant.reconcile_requested",
        message,
        json!({}),
    )
    .await?;
    Ok(tenant_response(StatusCode::ACCEPTED, &current, true))
}

/// Pause the worker for a tenant.
///
/// While paused, the worker makes no AWS call for the tenant (a pass in flight stops at its
/// next step), so it can be repaired by hand. Desired-state changes and deletion are still
/// recorded and take effect on resume. Pausing a paused tenant changes nothing.
#[utoipa::path(
    post, path = "/v1/tenants/{name}/pause", tag = "tenants",
    security(("bearer" = [])),
    params(TenantName),
    request_body(content = Option<PauseTenant>, description = "Optional: no body, `null`, or a reason"),
    responses(
        (status = 200, description = "Paused", body = Tenant, headers(("ETag" = String))),
        (status = 400, description = "The body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "A viewer key", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "A body that is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not a state's name, or a reason that breaks its rule (named in `errors`)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn pause_tenant(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    TenantName(name): TenantName,
    OptionalJson(body): OptionalJson<PauseTenant>,
) -> ApiResult<Response> {
    let reason = body.and_then(|b| b.reason);
    if reason
        .as_ref()
        .is_some_and(|r| !text::is_plain(r, MAX_REASON))
    {
        return Err(ApiError::invalid(
            "reason",
            format!("at most {MAX_REASON} characters, without control characters"),
        ));
    }
    let reason = reason
        .map(|r| r.trim().to_owned())
        .filter(|r| !r.is_empty());
    let mut tx = state.pool.begin().await?;
    let current = lock_live(&mut tx, name).await?;
    let Some(paused) = db::tenants::pause(&mut tx, current.id, reason.as_deref()).await? else {
        return Ok(tenant_response(StatusCode::OK, &current, false));
    };
    let message = match &reason {
        Some(r) => format!("paused by key {}: {r}", caller.key_name),
        None => format!("paused by key {}", caller.key_name),
    };
    // A worker with a pass under way for the tenant checks its lease at once and stops.
    commit_change(
        &state,
        tx,
        &paused,
        &caller,
        "tenant.paused",
        message,
        json!({ "reason": reason }),
    )
    .await?;
    Ok(tenant_response(StatusCode::OK, &paused, false))
}

/// Resume the worker for a paused tenant; a pass is due at once.
#[utoipa::path(
    post, path = "/v1/tenants/{name}/resume", tag = "tenants",
    security(("bearer" = [])),
    params(TenantName),
    responses(
        (status = 200, description = "Resumed (or was not paused)", body = Tenant, headers(("ETag" = String))),
        (status = 403, description = "A viewer key", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not a state's name", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn resume_tenant(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    TenantName(name): TenantName,
) -> ApiResult<Response> {
    let mut tx = state.pool.begin().await?;
    let current = lock_live(&mut tx, name).await?;
    let Some(resumed) = db::tenants::resume(&mut tx, current.id).await? else {
        return Ok(tenant_response(StatusCode::OK, &current, false));
    };
    let message = format!("resumed by key {}", caller.key_name);
    commit_change(
        &state,
        tx,
        &resumed,
        &caller,
        "tenant.resumed",
        message,
        json!({}),
    )
    .await?;
    Ok(tenant_response(StatusCode::OK, &resumed, false))
}
