//! A person's word on a rollout: pause, resume, promote, abort. Each changes the rollout's
//! state under its row lock, so the controller's step in flight (which checks the
//! rollout's version when it commits) starts over from the new state.

use axum::{extract::State, Json};
use serde::Deserialize;
use serde_json::json;
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{
    auth::{AdminCaller, Caller},
    error::{ApiError, ApiResult, Problem},
    extract::{AppJson, Body},
    rollouts::{load, not_found, RolloutId},
    AppState,
};
use crate::{
    db::{
        self,
        rollouts::{Rollout, TargetChange},
    },
    domain::{
        rollout::{RolloutState, TargetState},
        state::StateSlug,
    },
};

/// How to abort.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AbortRollout {
    /// `true`: put the previous spec back on every tenant the rollout changed, newest
    /// wave first. `false`: stop here; tenants keep what they have.
    rollback: bool,
}

impl Body for AbortRollout {
    const OBJECT_MEMBERS: Option<&'static [&'static str]> = Some(&[]);
}

enum Op {
    Pause,
    Resume,
    Promote,
    Abort { rollback: bool },
}

/// Pause a rollout: nothing new starts until `resume`. Tenants already deploying or baking
/// carry on and are still watched.
#[utoipa::path(
    post, path = "/v1/rollouts/{id}/pause", tag = "rollouts",
    security(("bearer" = [])),
    params(RolloutId),
    responses(
        (status = 200, body = Rollout),
        (status = 403, description = "A viewer key", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not running (paused already, rolling back, or ended)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not a rollout id", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn pause_rollout(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    RolloutId(id): RolloutId,
) -> ApiResult<Json<Rollout>> {
    operate(&state, &caller, id, Op::Pause).await
}

/// Resume a paused rollout. Tenants that failed (a halt with `on_failure: pause`) are
/// tried again with the spec the rollout gave them: fix the cause first.
#[utoipa::path(
    post, path = "/v1/rollouts/{id}/resume", tag = "rollouts",
    security(("bearer" = [])),
    params(RolloutId),
    responses(
        (status = 200, body = Rollout),
        (status = 403, description = "A viewer key", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not paused", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not a rollout id", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn resume_rollout(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    RolloutId(id): RolloutId,
) -> ApiResult<Json<Rollout>> {
    operate(&state, &caller, id, Op::Resume).await
}

/// Promote: end the bakes under way now (no `min_requests` applies to them), or give the
/// approval a `manual` rollout waits for after its canary.
#[utoipa::path(
    post, path = "/v1/rollouts/{id}/promote", tag = "rollouts",
    security(("bearer" = [])),
    params(RolloutId),
    responses(
        (status = 200, body = Rollout),
        (status = 403, description = "A viewer key", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Nothing to promote: no tenant is baking and no approval is awaited", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not a rollout id", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn promote_rollout(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    RolloutId(id): RolloutId,
) -> ApiResult<Json<Rollout>> {
    operate(&state, &caller, id, Op::Promote).await
}

/// Abort a rollout, with or without putting back what it changed.
#[utoipa::path(
    post, path = "/v1/rollouts/{id}/abort", tag = "rollouts",
    security(("bearer" = [])),
    params(RolloutId),
    request_body = AbortRollout,
    responses(
        (status = 200, body = Rollout),
        (status = 400, description = "The body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "A viewer key", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "It has ended, or is rolling back already", body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not a rollout id, or `rollback` missing", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn abort_rollout(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    RolloutId(id): RolloutId,
    AppJson(body): AppJson<AbortRollout>,
) -> ApiResult<Json<Rollout>> {
    let op = Op::Abort {
        rollback: body.rollback,
    };
    operate(&state, &caller, id, op).await
}

async fn operate(state: &AppState, caller: &Caller, id: Uuid, op: Op) -> ApiResult<Json<Rollout>> {
    let mut tx = state.pool.begin().await?;
    let rollout = db::rollouts::lock(&mut tx, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    let was = rollout.state;
    let conflict = |what: &str| {
        ApiError::Conflict(format!(
            "rollout {id} is {}: {what}",
            was.as_str().replace('_', " ")
        ))
    };
    let by = format!("key {}", caller.key_name);
    let mut retried = Vec::new();
    let (to, action, message) = match op {
        Op::Pause => match was {
            RolloutState::Running | RolloutState::AwaitingApproval => (
                RolloutState::Paused,
                "rollout.paused",
                format!("paused by {by}"),
            ),
            _ => return Err(conflict("only a running rollout can be paused")),
        },
        Op::Resume => match was {
            RolloutState::Paused => {
                retried = retry_failed(&mut tx, caller, &rollout).await?;
                let message = if retried.is_empty() {
                    format!("resumed by {by}")
                } else {
                    format!("resumed by {by}; trying again: {}", retried.join(", "))
                };
                (RolloutState::Running, "rollout.resumed", message)
            }
            _ => return Err(conflict("only a paused rollout can be resumed")),
        },
        Op::Promote => match was {
            RolloutState::AwaitingApproval => {
                db::rollouts::past_canary(&mut tx, id).await?;
                (
                    RolloutState::Running,
                    "rollout.approved",
                    format!("approved by {by}: the waves after the canary may go"),
                )
            }
            RolloutState::Running | RolloutState::Paused => {
                let ended = db::rollouts::promote_baking(&mut tx, id).await?;
                if ended.is_empty() {
                    return Err(conflict("no tenant is baking and no approval is awaited"));
                }
                let message = format!("bake ended now by {by}: {}", ended.join(", "));
                (was, "rollout.promoted", message)
            }
            _ => return Err(conflict("nothing to promote")),
        },
        Op::Abort { rollback } => match (was, rollback) {
            (s, _) if !s.is_active() => return Err(conflict("it has ended")),
            (RolloutState::RollingBack, true) => {
                return Err(conflict("it is rolling back already"))
            }
            (_, true) => (
                RolloutState::RollingBack,
                "rollout.aborted",
                format!("aborted by {by}: putting back what it changed"),
            ),
            (_, false) => (
                RolloutState::Aborted,
                "rollout.aborted",
                format!("aborted by {by}; tenants keep what they have"),
            ),
        },
    };
    let reason = (to != RolloutState::Running).then_some(message.as_str());
    db::rollouts::set_state(&mut tx, id, to, reason).await?;
    db::rollouts::append_event(
        &mut tx,
        id,
        db::rollouts::NewEvent {
            actor: &caller.actor(),
            trigger: "user",
            action,
            tenant: None,
            message: message.clone(),
            details: json!({ "from": was, "to": to }),
        },
    )
    .await?;
    tx.commit().await?;
    for name in &retried {
        super::tenants::evict(state, name);
    }
    if !to.is_active() {
        if let Ok(elapsed) = (chrono::Utc::now() - rollout.created_at).to_std() {
            state.metrics.rollout_ended(to, elapsed);
        }
    }
    load(state, id).await.map(Json)
}

/// The failed tenants of a paused rollout are asked to reconcile again, still on the
/// rollout's generation; those changed by someone since are theirs now (`superseded`).
async fn retry_failed(
    conn: &mut PgConnection,
    caller: &Caller,
    rollout: &Rollout,
) -> ApiResult<Vec<String>> {
    let mut retried = Vec::new();
    for t in db::rollouts::targets(&mut *conn, rollout.id).await? {
        if t.state != TargetState::Failed {
            continue;
        }
        let Ok(slug) = StateSlug::parse(&t.name) else {
            continue;
        };
        let tenant = db::tenants::lock_live(&mut *conn, slug).await?;
        let ours = tenant
            .as_ref()
            .filter(|x| x.id == t.tenant_id && Some(x.generation) == t.target_generation);
        let change = match ours {
            Some(tenant) => {
                // Out of `failed` at once, as a new spec would be: the rollout reads the
                // tenant's status, and the old failure must not count against the retry.
                let retry = db::tenants::DesiredChange {
                    display_name: &tenant.display_name,
                    spec: &tenant.spec,
                    generation: tenant.generation,
                    status: tenant.status_after_spec_change(),
                };
                db::tenants::update_desired(&mut *conn, tenant.id, retry).await?;
                db::tenants::notify_changed(&mut *conn, &tenant.name).await?;
                super::tenants::record(
                    &mut *conn,
                    tenant,
                    caller,
                    "tenant.reconcile_requested",
                    format!("tried again as rollout {} resumes", rollout.id),
                    json!({ "rollout": rollout.id }),
                )
                .await?;
                retried.push(t.name.clone());
                TargetChange {
                    state: Some(TargetState::Deploying),
                    reason: Some(None),
                    failure: Some(None),
                    started_at: Some(Some(chrono::Utc::now())),
                    ready_at: Some(None),
                    bake_ends_at: Some(None),
                    finished_at: Some(None),
                    ..TargetChange::default()
                }
            }
            None => TargetChange {
                state: Some(TargetState::Superseded),
                reason: Some(Some(
                    "changed by someone else since it failed; their change stands".into(),
                )),
                ..TargetChange::default()
            },
        };
        db::rollouts::change_target(&mut *conn, rollout.id, t.tenant_id, &change).await?;
    }
    Ok(retried)
}
