//! `POST /v1/rollouts`: a spec change for many tenants, planned and stored in one go, or
//! only planned (`?dry_run=true`). Everything wrong with the request is refused before
//! anything is stored.

use axum::{
    extract::State,
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{
    auth::{AdminCaller, Caller},
    create::replay,
    error::{ApiError, ApiResult, Problem},
    extract::{from_value, AppJson, AppQuery, Body},
    headers::IdempotencyKey,
    rollouts::location,
    AppState,
};
use crate::{
    db::{self, idempotency::StoredResponse, rollouts::Rollout},
    domain::{
        rollout::{self, Plan, Selector, SelectorInput, Skip, Strategy, StrategyInput},
        spec::{SpecDoc, SpecPatch, TenantSpec},
        state::StateSlug,
        tenant::Tenant,
        ValidationErrors,
    },
};

/// A rollout: one change of spec for every selected tenant.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRollout {
    #[schema(schema_with = crate::domain::rollout::schema::patch_schema)]
    patch: SpecPatch,
    /// Which tenants (default: every live tenant).
    selector: Option<SelectorInput>,
    /// How to go through them (every member has a default).
    strategy: Option<StrategyInput>,
}

impl Body for CreateRollout {
    const OBJECT_MEMBERS: Option<&'static [&'static str]> =
        Some(&["patch", "selector", "strategy"]);
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CreateParams {
    /// Answer with the plan and store nothing.
    dry_run: Option<bool>,
}

/// The plan `dry_run` answers with.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RolloutPlan {
    #[schema(value_type = Object)]
    pub patch: Value,
    pub selector: Selector,
    pub strategy: Strategy,
    /// Whether success would update the fleet defaults.
    pub whole_fleet: bool,
    pub waves: Vec<PlannedWave>,
    pub skipped: Vec<Skip>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PlannedWave {
    pub wave: i32,
    pub tenants: Vec<PlannedTenant>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PlannedTenant {
    pub name: String,
    pub from: SpecDoc,
    pub to: SpecDoc,
    /// Its generation now; the rollout changes it only while it still is.
    pub generation: i64,
}

/// Start a rollout.
///
/// The plan is made now and never changes: the selected tenants in waves, each with its
/// spec before and after, and those it skips with why (paused, failed, deleting, already at
/// the target). The first wave is the canary. A controller in the worker then writes each
/// tenant's new spec (only if nobody changed the tenant since the plan), waits for it to
/// be ready with that generation, and for it to stay healthy through the bake: no `down`
/// or `degraded` health, no alarm in ALARM, and `min_requests` served if set. Past
/// `max_failures` failed tenants nothing more starts, and with `on_failure: rollback`
/// every tenant it changed gets its previous spec back, newest wave first. A rollout that
/// succeeds over the whole fleet makes the patched spec the fleet defaults (unless
/// `update_defaults` is false). Nothing is stored when anything is wrong, and a tenant can
/// be in one active rollout only. Send an `Idempotency-Key` to make retries safe.
#[utoipa::path(
    post, path = "/v1/rollouts", tag = "rollouts",
    security(("bearer" = [])),
    params(
        CreateParams,
        ("Idempotency-Key" = Option<String>, Header, nullable = false, min_length = 1, max_length = 255, pattern = "^[!-~]+$",
            description = "Makes retries safe: the same key with the same body replays the first answer for 24 hours; with another body it is a 422. 1-255 visible ASCII characters, scoped to the API key."),
    ),
    request_body = CreateRollout,
    responses(
        (status = 201, description = "Stored; the controller starts the canary", body = Rollout, headers(("Location" = String))),
        (status = 200, description = "`dry_run`: the plan, with nothing stored", body = RolloutPlan),
        (status = 400, description = "The body is not JSON, or a parameter breaks its rule", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "A viewer key", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A selected tenant is in another active rollout", body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A patch no tenant spec may hold, a strategy that does not add up, a name that is not a state, a selection that matches no tenant (each named in `errors`), or an Idempotency-Key used with another body", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn create_rollout(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    headers: HeaderMap,
    AppQuery(params): AppQuery<CreateParams>,
    AppJson(raw): AppJson<Value>,
) -> ApiResult<Response> {
    let dry_run = params.dry_run.unwrap_or(false);
    let idempotency_key = IdempotencyKey::from_headers(&headers)?.map(|k| k.0);
    let request_hash = Sha256::digest(serde_json::to_vec(&raw).unwrap_or_default()).to_vec();
    let patch_doc = raw.get("patch").cloned().unwrap_or(Value::Null);
    let body: CreateRollout = from_value(raw)?;
    let tenants = db::tenants::all_live(&state.pool).await?;
    let (selector, strategy) = check_request(&state, &body, &tenants)?;
    let selected: Vec<Tenant> = tenants
        .into_iter()
        .filter(|t| selector.matches(&t.name, &t.cell))
        .collect();
    let seed = &state.settings.spec_defaults;
    let defaults = db::defaults::current(&mut *state.pool.acquire().await?, seed).await?;
    let limits = state.settings.spec_limits;
    let plan = rollout::plan(
        &selected,
        |spec| {
            TenantSpec::validate(body.patch.apply(spec, &defaults.spec), Some(limits))
                .map(|s| s.to_doc())
        },
        &strategy,
    )?;
    if dry_run {
        return Ok(Json(plan_view(patch_doc, selector, strategy, &plan)).into_response());
    }
    let new = NewRollout {
        patch: &patch_doc,
        selector: &selector,
        strategy: &strategy,
        plan: &plan,
    };
    let mut tx = state.pool.begin().await?;
    if let Some(key) = &idempotency_key {
        db::idempotency::lock(&mut tx, &caller.key_name, key).await?;
        if let Some(stored) = db::idempotency::find(&mut tx, &caller.key_name, key).await? {
            return replay(stored, &request_hash);
        }
    }
    let id = match store(&mut tx, &caller, new).await? {
        Stored::Created(id) => id,
        Stored::Raced => {
            drop(tx);
            return Err(overlap(&state, &plan).await);
        }
    };
    if plan.targets.is_empty() && strategy.update_defaults && selector.is_whole_fleet() {
        db::defaults::lock(&mut tx, seed).await?;
        let to = body.patch.apply(&defaults.spec, &defaults.spec);
        db::defaults::set(&mut tx, &to, &format!("rollout:{id}")).await?;
    }
    let rollout = db::rollouts::get(&mut tx, id)
        .await?
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("the rollout just stored is gone")))?;
    if let Some(key) = &idempotency_key {
        let stored = StoredResponse {
            request_hash,
            status: StatusCode::CREATED.as_u16() as i16,
            body: serde_json::to_value(&rollout).map_err(anyhow::Error::from)?,
            location: Some(location(id)),
            etag: None,
        };
        db::idempotency::save(&mut tx, &caller.key_name, key, &stored).await?;
    }
    tx.commit().await?;
    Ok(created(&rollout))
}

/// Every problem with the request on its own and against the fleet, at once.
fn check_request(
    state: &AppState,
    body: &CreateRollout,
    tenants: &[Tenant],
) -> ApiResult<(Selector, Strategy)> {
    let mut errors = ValidationErrors::default();
    for e in body.patch.check(state.settings.spec_limits).0 {
        errors.push(e.field.replacen("spec.", "patch.", 1), e.message);
    }
    if body.patch == SpecPatch::default() {
        errors.push(
            "patch",
            "changes nothing: give at least one member of the spec",
        );
    }
    let strategy = body
        .strategy
        .clone()
        .unwrap_or_default()
        .resolve()
        .map_err(|e| errors.0.extend(e.0))
        .ok();
    let mut cells: Vec<String> = state
        .settings
        .cells
        .iter()
        .map(|c| c.name.clone())
        .collect();
    cells.extend(tenants.iter().map(|t| t.cell.clone()));
    cells.sort();
    cells.dedup();
    let selector = body
        .selector
        .clone()
        .unwrap_or_default()
        .resolve(&cells)
        .map_err(|e| errors.0.extend(e.0))
        .ok();
    if let Some(selector) = &selector {
        for (i, name) in selector.only.iter().enumerate() {
            if !tenants.iter().any(|t| &t.name == name) {
                let slug = StateSlug::from_api(name).map_or(name.clone(), |s| s.to_string());
                errors.push(
                    format!("selector.only[{i}]"),
                    format!("there is no live tenant for {slug}"),
                );
            }
        }
        if errors.0.is_empty() && !tenants.iter().any(|t| selector.matches(&t.name, &t.cell)) {
            errors.push("selector", "matches no live tenant");
        }
    }
    match (selector, strategy) {
        (Some(selector), Some(strategy)) if errors.0.is_empty() => Ok((selector, strategy)),
        _ => Err(errors.into()),
    }
}

struct NewRollout<'a> {
    patch: &'a Value,
    selector: &'a Selector,
    strategy: &'a Strategy,
    plan: &'a Plan,
}

enum Stored {
    Created(Uuid),
    /// A concurrent rollout took one of the tenants first.
    Raced,
}

/// Stores the rollout, its plan and its first event, and wakes the controller. A tenant in
/// another active rollout is a 409.
async fn store(
    conn: &mut sqlx::PgConnection,
    caller: &Caller,
    new: NewRollout<'_>,
) -> ApiResult<Stored> {
    let ids: Vec<Uuid> = new.plan.targets.iter().map(|t| t.tenant_id).collect();
    let busy = db::rollouts::in_active_rollouts(&mut *conn, &ids).await?;
    if !busy.is_empty() {
        return Err(busy_error(&busy));
    }
    let id = Uuid::now_v7();
    let inserted = db::rollouts::insert(
        &mut *conn,
        db::rollouts::NewRollout {
            id,
            patch: new.patch,
            selector: new.selector,
            strategy: new.strategy,
            plan: new.plan,
            created_by: &caller.actor(),
        },
    )
    .await;
    match inserted {
        Err(e) if db::is_unique_violation(&e) => return Ok(Stored::Raced),
        other => other?,
    }
    let sizes: Vec<usize> = (1..=new.plan.waves)
        .map(|w| new.plan.targets.iter().filter(|t| t.wave == w).count())
        .collect();
    let message = if new.plan.targets.is_empty() {
        format!(
            "created by key {}; nothing to change ({} skipped), so it is done",
            caller.key_name,
            new.plan.skipped.len()
        )
    } else {
        format!(
            "created by key {}: {} tenants in waves of {sizes:?}, {} skipped",
            caller.key_name,
            new.plan.targets.len(),
            new.plan.skipped.len()
        )
    };
    db::rollouts::append_event(
        &mut *conn,
        id,
        db::rollouts::NewEvent {
            actor: &caller.actor(),
            trigger: "user",
            action: "rollout.created",
            tenant: None,
            message,
            details: json!({ "waves": sizes, "patch": new.patch, "skipped": new.plan.skipped }),
        },
    )
    .await?;
    db::rollouts::notify(&mut *conn, id).await?;
    Ok(Stored::Created(id))
}

fn busy_error(busy: &[(String, Uuid)]) -> ApiError {
    let list: Vec<String> = busy
        .iter()
        .take(10)
        .map(|(name, rollout)| format!("{name} (rollout {rollout})"))
        .collect();
    ApiError::Conflict(format!(
        "{} selected tenant(s) are in another active rollout: {}; wait for it to end, abort it, or exclude them",
        busy.len(),
        list.join(", ")
    ))
}

/// The answer when a concurrent rollout took some of the tenants first.
async fn overlap(state: &AppState, plan: &Plan) -> ApiError {
    let ids: Vec<Uuid> = plan.targets.iter().map(|t| t.tenant_id).collect();
    match db::rollouts::in_active_rollouts(&state.pool, &ids).await {
        Ok(busy) if !busy.is_empty() => busy_error(&busy),
        _ => ApiError::Conflict("a selected tenant joined another rollout at the same time".into()),
    }
}

fn created(rollout: &Rollout) -> Response {
    let mut response = (StatusCode::CREATED, Json(rollout)).into_response();
    if let Ok(loc) = HeaderValue::from_str(&location(rollout.id)) {
        response.headers_mut().insert(header::LOCATION, loc);
    }
    response
}

fn plan_view(patch: Value, selector: Selector, strategy: Strategy, plan: &Plan) -> RolloutPlan {
    RolloutPlan {
        patch,
        whole_fleet: selector.is_whole_fleet(),
        selector,
        strategy,
        waves: (1..=plan.waves)
            .map(|wave| PlannedWave {
                wave,
                tenants: plan
                    .targets
                    .iter()
                    .filter(|t| t.wave == wave)
                    .map(|t| PlannedTenant {
                        name: t.name.clone(),
                        from: t.from.clone(),
                        to: t.to.clone(),
                        generation: t.generation,
                    })
                    .collect(),
            })
            .collect(),
        skipped: plan.skipped.clone(),
    }
}
