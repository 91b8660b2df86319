//! Rightsizing at the API: a person applies a tenant's recommendation, and the fleet's
//! sizes and what they cost now and at the recommendations.

use std::collections::BTreeMap;

use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
    response::Response,
    Json,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    auth::{AdminCaller, Caller},
    error::{ApiError, ApiResult, Problem},
    extract::TenantName,
    headers,
    tenants::{evict, lock_live, stale, tenant_etag, tenant_response},
    AppState,
};
use crate::{
    db::{self, sizing::Resize},
    domain::{
        spec::{sizing::SizeDoc, SizingMode, TaskSize, TenantSpec},
        tenant::{Tenant, TenantStatus},
    },
    sizing::{
        defaults::HOURS_PER_MONTH, fit::cents, ChangeTrigger, Direction, Prices, Recommendation,
        RecommendationStatus,
    },
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(apply_sizing))
        .routes(routes!(fleet_sizing))
}

/// Apply a tenant's sizing recommendation.
///
/// Writes the recommended cpu and memory as a spec change by the caller's key (the next
/// generation, a `tenant.updated` event with the recommendation's evidence); the worker
/// then registers a task definition revision of that size and deploys it. A person's
/// decision: the guards `auto` keeps (cooldowns, data needed for a downsize) do not
/// apply, and neither does a freeze. Applying a recommendation the tenant already has is
/// a 200 that changes nothing. Refused with a 409 while there is nothing to apply (sizing
/// `off`, no recommendation yet, not enough data, the recommendation is the current size
/// or was computed for a size the tenant no longer has), while the tenant is being deleted,
/// and while it is in an active rollout.
#[utoipa::path(
    post, path = "/v1/tenants/{name}/sizing/apply", tag = "sizing",
    security(("bearer" = [])),
    params(
        TenantName,
        ("If-Match" = Option<String>, Header, nullable = false, description = "Only apply if the tenant still has this ETag (or `*`)"),
    ),
    responses(
        (status = 200, description = "The recommended size is the tenant's spec", body = Tenant, headers(("ETag" = String))),
        (status = 400, description = "If-Match is not text", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "A viewer key", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Nothing to apply, the tenant is being deleted, or it is in an active rollout", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "The ETag is stale", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not a state's name", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn apply_sizing(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    TenantName(name): TenantName,
    request_headers: HeaderMap,
) -> ApiResult<Response> {
    let if_match = headers::if_match(&request_headers)?;
    let mut tx = state.pool.begin().await?;
    let current = lock_live(&mut tx, name).await?;
    if if_match.is_some_and(|tags| !headers::tag_matches(tags, &tenant_etag(&current))) {
        return Err(stale(&current));
    }
    let spec = TenantSpec::validate(current.spec.clone(), None)
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("stored spec of {name}: {e}")))?;
    let (to, rec) = applicable(&current, &spec)?;
    if to == spec.size {
        return Ok(tenant_response(StatusCode::OK, &current, false));
    }
    if let Some(rollout) = db::rollouts::active_for_tenant(&mut *tx, current.id).await? {
        return Err(ApiError::Conflict(format!(
            "tenant {name} is in rollout {rollout}; apply its sizing once the rollout has ended"
        )));
    }
    let mut sizing = current.sizing.clone();
    let resize = Resize {
        to,
        trigger: ChangeTrigger::Manual,
        actor: &caller.actor(),
        reason: &rec.reason,
        evidence: json!(rec.evidence),
    };
    let updated =
        db::sizing::resize(&mut tx, &current, &spec, &mut sizing, resize, Utc::now()).await?;
    tx.commit().await?;
    evict(&state, &updated.name);
    state.metrics.sizing_changed(ChangeTrigger::Manual.as_str());
    Ok(tenant_response(StatusCode::OK, &updated, false))
}

/// The size a person may apply now, or why there is none.
fn applicable(t: &Tenant, spec: &TenantSpec) -> ApiResult<(TaskSize, Recommendation)> {
    let name = &t.name;
    if t.status == TenantStatus::Deleting {
        return Err(ApiError::Conflict(format!(
            "tenant {name} is being deleted"
        )));
    }
    if spec.sizing.mode == SizingMode::Off {
        return Err(ApiError::Conflict(format!(
            "sizing is off for {name}: set spec.sizing.mode to recommend or auto first"
        )));
    }
    let Some(rec) = &t.sizing.recommendation else {
        return Err(ApiError::Conflict(format!(
            "there is no recommendation for {name} yet: the rightsizer makes one within STATEHOUSE_SIZING_INTERVAL of its first metrics"
        )));
    };
    let Some(to) = rec.size() else {
        return Err(ApiError::Conflict(format!(
            "nothing to apply: {}",
            rec.reason
        )));
    };
    if to == spec.size {
        return Ok((to, rec.clone()));
    }
    if rec.current != SizeDoc::from(spec.size) {
        return Err(ApiError::Conflict(format!(
            "the recommendation was computed for {}; {name} now has {}: the next one is made within STATEHOUSE_SIZING_INTERVAL",
            rec.current_size().map_or_else(|| "another size".into(), |s| s.to_string()),
            spec.size
        )));
    }
    if rec.direction == Direction::None {
        return Err(ApiError::Conflict(format!(
            "nothing to apply: {}",
            rec.reason
        )));
    }
    Ok((to, rec.clone()))
}

/// One tenant's line in the fleet's sizing.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TenantSizingRow {
    pub name: String,
    pub mode: SizingMode,
    /// `recommended`, `not_enough_data`, `pending` (no recommendation yet) or `off`.
    pub status: String,
    pub current: SizeDoc,
    pub recommended: Option<SizeDoc>,
    /// From the current size to the recommended one.
    pub direction: Option<Direction>,
    /// Tasks the costs are for: the service's count when the recommendation was computed,
    /// else the spec's `desired_count`.
    pub tasks: u32,
    /// USD a month at the current size, and at the recommended one (the current size's
    /// when there is no recommendation).
    pub monthly_cost: f64,
    pub recommended_monthly_cost: f64,
    /// `monthly_cost - recommended_monthly_cost`: negative for an upsize.
    pub savings: f64,
    pub reason: Option<String>,
    /// What happens with the recommendation (applied, waiting and why, left to a person).
    pub action: Option<String>,
    pub computed_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SizingTotals {
    /// USD a month for every live tenant at its current size.
    pub current: f64,
    /// The same at the recommended sizes.
    pub recommended: f64,
    /// What the downsizes would save a month.
    pub savings: f64,
    /// What the upsizes would add a month.
    pub increase: f64,
    /// `recommended - current`.
    pub net: f64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PriceList {
    pub currency: String,
    pub vcpu_hour: f64,
    pub gb_hour: f64,
    pub hours_per_month: f64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FleetSizing {
    pub generated_at: DateTime<Utc>,
    pub prices: PriceList,
    pub totals: SizingTotals,
    /// Tenants by status, and those recommended by direction (`up`, `down`, `none`).
    pub counts: BTreeMap<String, i64>,
    /// Every live tenant, biggest saving first, then biggest increase.
    pub tenants: Vec<TenantSizingRow>,
}

/// Each tenant's current and recommended size and monthly cost, with the fleet's totals
/// and savings.
///
/// Costs are Fargate's configured prices (`STATEHOUSE_FARGATE_VCPU_HOUR`,
/// `STATEHOUSE_FARGATE_GB_HOUR`; us-east-1 Linux/x86 list prices by default) over a
/// 730-hour month, for the tasks the service ran when its recommendation was computed.
#[utoipa::path(
    get, path = "/v1/fleet/sizing", tag = "sizing",
    security(("bearer" = [])),
    responses((status = 200, body = FleetSizing))
)]
async fn fleet_sizing(
    State(state): State<AppState>,
    _caller: Caller,
) -> ApiResult<Json<FleetSizing>> {
    let tenants = db::tenants::all_live(&state.pool).await?;
    Ok(Json(summarise(
        &tenants,
        &state.settings.prices,
        Utc::now(),
    )))
}

fn row(t: &Tenant, prices: &Prices) -> Option<TenantSizingRow> {
    let spec = TenantSpec::validate(t.spec.clone(), None).ok()?;
    let rec = t
        .sizing
        .recommendation
        .as_ref()
        .filter(|_| spec.sizing.mode != SizingMode::Off);
    let to = rec.and_then(|r| r.size());
    let tasks = rec
        .map_or(spec.counts.desired(), |r| r.monthly_cost.tasks)
        .max(1);
    let now = prices.monthly(spec.size, tasks);
    let then = to.map_or(now, |s| prices.monthly(s, tasks));
    let status = match (spec.sizing.mode, rec) {
        (SizingMode::Off, _) => "off",
        (_, None) => "pending",
        (_, Some(r)) if r.status == RecommendationStatus::NotEnoughData => "not_enough_data",
        _ => "recommended",
    };
    Some(TenantSizingRow {
        name: t.name.clone(),
        mode: spec.sizing.mode,
        status: status.into(),
        current: spec.size.into(),
        recommended: to.map(SizeDoc::from),
        direction: to.map(|to| Direction::of(spec.size, to)),
        tasks,
        monthly_cost: now,
        recommended_monthly_cost: then,
        savings: cents(now - then),
        reason: rec.map(|r| r.reason.clone()),
        action: t.sizing.action.clone(),
        computed_at: rec.map(|r| r.computed_at),
    })
}

/// The fleet's sizing from its live tenants.
pub fn summarise(tenants: &[Tenant], prices: &Prices, now: DateTime<Utc>) -> FleetSizing {
    let mut rows: Vec<TenantSizingRow> = tenants.iter().filter_map(|t| row(t, prices)).collect();
    rows.sort_by(|a, b| b.savings.total_cmp(&a.savings).then(a.name.cmp(&b.name)));
    let mut counts: BTreeMap<String, i64> = [
        "recommended",
        "not_enough_data",
        "pending",
        "off",
        "up",
        "down",
        "none",
    ]
    .into_iter()
    .map(|k| (k.to_owned(), 0))
    .collect();
    for r in &rows {
        *counts.entry(r.status.clone()).or_default() += 1;
        if let Some(d) = r.direction.filter(|_| r.status == "recommended") {
            *counts.entry(d.as_str().to_owned()).or_default() += 1;
        }
    }
    let sum = |f: fn(&TenantSizingRow) -> f64| cents(rows.iter().map(f).sum());
    let current = sum(|r| r.monthly_cost);
    let recommended = sum(|r| r.recommended_monthly_cost);
    FleetSizing {
        generated_at: now,
        prices: PriceList {
            currency: "USD".into(),
            vcpu_hour: prices.vcpu_hour,
            gb_hour: prices.gb_hour,
            hours_per_month: HOURS_PER_MONTH,
        },
        totals: SizingTotals {
            current,
            recommended,
            savings: sum(|r| r.savings.max(0.0)),
            increase: sum(|r| (-r.savings).max(0.0)),
            net: cents(recommended - current),
        },
        counts,
        tenants: rows,
    }
}
