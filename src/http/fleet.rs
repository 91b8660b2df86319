//! `/v1/fleet` and `/v1/tenants/{name}/health`: is each state up, and which need a look.

use std::collections::BTreeMap;

use axum::{extract::State, Extension, Json};
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    admission::Turn,
    auth::Caller,
    error::{ApiError, ApiResult, Problem},
    extract::TenantName,
    tenants::not_found,
    AppState,
};
use crate::{
    db,
    domain::tenant::{Tenant, TenantStatus},
    health::{live::LiveHealth, HealthStatus},
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(tenant_health))
        .routes(routes!(fleet))
}

/// A deletion still under way after this long is on the attention list.
pub const DELETING_TOO_LONG: TimeDelta = TimeDelta::minutes(15);

/// A tenant's health read from AWS now.
///
/// The same signals as the `health` snapshot the worker keeps on the tenant (its service's
/// tasks and deployment, its targets, its alarms, the last five minutes' metrics), read at
/// the time of the request, plus the ECS service's last 10 events and the last hour's
/// metrics a minute at a time. One reading serves every request for the same tenant for up
/// to 10 seconds, so that many dashboards refreshing at once make one round of AWS calls.
/// A signal AWS does not give (an error, a statistic it refuses) makes the health
/// `unknown` or the series `unavailable`, with the reason, never an error answer.
#[utoipa::path(
    get, path = "/v1/tenants/{name}/health", tag = "fleet",
    security(("bearer" = [])),
    params(TenantName),
    responses(
        (status = 200, body = LiveHealth),
        (status = 404, description = "No live tenant of that name", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not a state's name", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "This API process has no AWS access configured (no region)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn tenant_health(
    State(state): State<AppState>,
    _caller: Caller,
    TenantName(name): TenantName,
    turn: Option<Extension<Turn>>,
) -> ApiResult<Json<LiveHealth>> {
    let tenant = db::tenants::find_latest(&state.pool, name)
        .await?
        .filter(Tenant::is_live)
        .ok_or_else(|| not_found(name))?;
    // The database is done with; waiting on AWS must not keep other requests from it.
    if let Some(Extension(turn)) = turn {
        turn.give_back();
    }
    let reader = state.live_health.as_ref().ok_or_else(|| {
        ApiError::NotConfigured(
            "this API process has no AWS access configured (set AWS_REGION and credentials)".into(),
        )
    })?;
    let reading = reader.read(&tenant).await;
    Ok(Json(LiveHealth::clone(&reading)))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Fleet {
    pub generated_at: DateTime<Utc>,
    /// Live tenants (not deleted).
    pub tenants: i64,
    /// Live tenants by status; every status but `deleted` is listed, zeros included.
    pub by_status: BTreeMap<String, i64>,
    /// Live tenants by observed health, zeros included.
    pub by_health: BTreeMap<String, i64>,
    pub cells: Vec<CellUse>,
    /// The tenants that need a look, worst first: failed, down, degraded, deleting for
    /// more than 15 minutes, paused.
    pub attention: Vec<Attention>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CellUse {
    pub name: String,
    /// Live tenants the cell may hold; absent for a cell that is no longer configured for
    /// new tenants but still has some.
    pub capacity: Option<u32>,
    pub used: i64,
    pub free: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Attention {
    pub name: String,
    pub status: TenantStatus,
    pub health: HealthStatus,
    /// `failed`, `down`, `degraded`, `deleting` or `paused`.
    pub problem: String,
    pub reason: String,
    pub since: Option<DateTime<Utc>>,
    pub cell: String,
}

/// The fleet at a glance: how many tenants in each status and health, how full each cell
/// is, and the tenants that need attention with why and since when.
#[utoipa::path(
    get, path = "/v1/fleet", tag = "fleet",
    security(("bearer" = [])),
    responses((status = 200, body = Fleet))
)]
async fn fleet(State(state): State<AppState>, _caller: Caller) -> ApiResult<Json<Fleet>> {
    let tenants = db::tenants::all_live(&state.pool).await?;
    Ok(Json(summarise(&tenants, &state.settings.cells, Utc::now())))
}

/// The fleet view of `tenants` (every live one) placed in the configured `cells`.
pub fn summarise(
    tenants: &[Tenant],
    cells: &[db::cells::CellCapacity],
    now: DateTime<Utc>,
) -> Fleet {
    let mut by_status: BTreeMap<String, i64> = TenantStatus::ALL
        .iter()
        .filter(|s| **s != TenantStatus::Deleted)
        .map(|s| (s.as_str().to_owned(), 0))
        .collect();
    let mut by_health: BTreeMap<String, i64> = HealthStatus::ALL
        .iter()
        .map(|h| (h.as_str().to_owned(), 0))
        .collect();
    let mut used: BTreeMap<&str, i64> = cells.iter().map(|c| (c.name.as_str(), 0)).collect();
    let mut attention = Vec::new();
    for t in tenants {
        *by_status.entry(t.status.as_str().to_owned()).or_default() += 1;
        *by_health
            .entry(t.health.status.as_str().to_owned())
            .or_default() += 1;
        *used.entry(t.cell.as_str()).or_default() += 1;
        if let Some(a) = needs_attention(t, now) {
            attention.push(a);
        }
    }
    let rank = |p: &str| {
        ["failed", "down", "degraded", "deleting", "paused"]
            .iter()
            .position(|x| *x == p)
    };
    attention.sort_by(|a, b| {
        (rank(&a.problem), a.since, &a.name).cmp(&(rank(&b.problem), b.since, &b.name))
    });
    let cells = used
        .into_iter()
        .map(|(name, used)| {
            let capacity = cells.iter().find(|c| c.name == name).map(|c| c.capacity);
            CellUse {
                name: name.to_owned(),
                capacity,
                used,
                free: capacity.map(|c| (i64::from(c) - used).max(0)),
            }
        })
        .collect();
    Fleet {
        generated_at: now,
        tenants: tenants.len() as i64,
        by_status,
        by_health,
        cells,
        attention,
    }
}

fn needs_attention(t: &Tenant, now: DateTime<Utc>) -> Option<Attention> {
    let item = |problem: &str, reason: String, since: Option<DateTime<Utc>>| Attention {
        name: t.name.clone(),
        status: t.status,
        health: t.health.status,
        problem: problem.to_owned(),
        reason,
        since,
        cell: t.cell.clone(),
    };
    if t.status == TenantStatus::Failed {
        let since = t
            .conditions
            .iter()
            .find(|c| c.kind == "Ready")
            .map(|c| c.last_transition_at)
            .or(Some(t.updated_at));
        let reason = t
            .last_error
            .clone()
            .unwrap_or_else(|| "the last attempt failed".into());
        return Some(item("failed", reason, since));
    }
    if let Some(requested) = t.deletion_requested_at {
        if now - requested > DELETING_TOO_LONG {
            let minutes = (now - requested).num_minutes();
            let reason = match &t.last_error {
                Some(e) => format!("deletion requested {minutes} min ago and still under way: {e}"),
                None => format!("deletion requested {minutes} min ago and still under way"),
            };
            return Some(item("deleting", reason, Some(requested)));
        }
        return None;
    }
    match t.health.status {
        HealthStatus::Down | HealthStatus::Degraded => {
            let problem = t.health.status.as_str();
            return Some(item(problem, t.health.reason.clone(), t.health.since));
        }
        HealthStatus::Healthy | HealthStatus::Unknown => {}
    }
    t.paused_at.map(|at| {
        let reason = t
            .paused_reason
            .clone()
            .unwrap_or_else(|| "paused by an operator".into());
        item("paused", format!("paused: {reason}"), Some(at))
    })
}
