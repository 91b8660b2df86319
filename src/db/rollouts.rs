//! Rollouts, their targets and their history. The API creates a rollout with its plan and
//! changes its state on a person's word; the controller claims active rollouts with a
//! lease and commits each step in one transaction that holds the rollout's row and checks
//! that nobody changed it since the step read it (its `version`).

use std::{collections::BTreeMap, time::Duration};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::{PgConnection, PgExecutor, PgPool};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::{
    rollout::{Plan, RolloutState, Selector, Skip, Strategy, TargetState},
    spec::SpecDoc,
};

/// Announced with the rollout's id whenever the API changes a rollout.
pub const ROLLOUT_CHANGED_CHANNEL: &str = "statehouse_rollout_changed";

const COLUMNS: &str =
    "id, state, reason, patch, selector, strategy, skipped, waves, current_wave, \
     whole_fleet, created_by, created_at, updated_at, finished_at, version, next_check_at, \
     gates_checked_at";

const TARGET_COLUMNS: &str = "tenant_id, tenant_name, wave, position, state, from_spec, to_spec, \
     planned_generation, target_generation, revert_generation, started_at, ready_at, bake_ends_at, \
     finished_at, revert_started_at, reason, failure, promoted";

/// A rollout as the API serves it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub struct Rollout {
    pub id: Uuid,
    pub state: RolloutState,
    /// Why it is in that state: a halt's cause, a pause's reason, who could not be put back.
    pub reason: Option<String>,
    /// The JSON merge patch each tenant's spec gets.
    #[schema(value_type = Object)]
    pub patch: Value,
    #[sqlx(json)]
    pub selector: Selector,
    /// With every default filled in.
    #[sqlx(json)]
    pub strategy: Strategy,
    /// Selected tenants the plan leaves alone, with why.
    #[sqlx(json)]
    pub skipped: Vec<Skip>,
    /// How many waves the plan has.
    pub waves: i32,
    /// The wave under way (or last under way).
    pub current_wave: i32,
    /// Whether it covers the whole fleet, so that success updates the fleet defaults.
    pub whole_fleet: bool,
    /// `key:<name>` of who created it.
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    #[serde(skip)]
    pub version: i64,
    #[serde(skip)]
    pub next_check_at: Option<DateTime<Utc>>,
    #[serde(skip)]
    pub gates_checked_at: Option<DateTime<Utc>>,
    /// Each tenant it changes, by state.
    #[sqlx(skip)]
    #[serde(default)]
    pub progress: BTreeMap<String, i64>,
    /// Each tenant it changes, in wave and start order (left out of lists).
    #[sqlx(skip)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenants: Option<Vec<Target>>,
}

/// One tenant of a rollout.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub struct Target {
    pub tenant_id: Uuid,
    #[sqlx(rename = "tenant_name")]
    #[schema(example = "ohio")]
    pub name: String,
    pub wave: i32,
    #[serde(skip)]
    pub position: i32,
    pub state: TargetState,
    #[sqlx(json, rename = "from_spec")]
    pub from: SpecDoc,
    #[sqlx(json, rename = "to_spec")]
    pub to: SpecDoc,
    /// The tenant's generation when the plan was made; the rollout writes only on it.
    pub planned_generation: i64,
    /// The generation the rollout wrote.
    pub target_generation: Option<i64>,
    /// The generation the rollback wrote.
    pub revert_generation: Option<i64>,
    pub started_at: Option<DateTime<Utc>>,
    /// When it was ready with the rollout's generation (its bake began).
    pub ready_at: Option<DateTime<Utc>>,
    pub bake_ends_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub revert_started_at: Option<DateTime<Utc>>,
    /// Why it is in its state, in words.
    pub reason: Option<String>,
    /// Why it failed, if it did; kept when it is then put back.
    pub failure: Option<String>,
    /// A person ended its bake early: no minimum of requests applies.
    #[serde(skip)]
    pub promoted: bool,
}

/// One entry of a rollout's append-only history.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub struct RolloutEvent {
    pub id: i64,
    pub at: DateTime<Utc>,
    /// `key:<name>` for a person's API key, `controller:<worker>` for the controller.
    #[schema(example = "controller:host:4242:0a1b2c3d")]
    pub actor: String,
    /// `user`, `progress`, `gate`, `alarm` or `timeout`.
    #[schema(example = "alarm")]
    pub trigger: String,
    #[schema(example = "tenant.failed")]
    pub action: String,
    /// The tenant it is about, if one.
    pub tenant_name: Option<String>,
    pub message: String,
    #[schema(value_type = Object)]
    pub details: Value,
}

pub struct NewRollout<'a> {
    pub id: Uuid,
    pub patch: &'a Value,
    pub selector: &'a Selector,
    pub strategy: &'a Strategy,
    pub plan: &'a Plan,
    pub created_by: &'a str,
}

/// Stores a rollout and its plan. Fails with a unique violation when one of its tenants is
/// in another active rollout (a race the caller's earlier check lost).
pub async fn insert(conn: &mut PgConnection, new: NewRollout<'_>) -> Result<(), sqlx::Error> {
    let whole_fleet = new.selector.is_whole_fleet();
    // Nothing to change: done at once.
    let (state, finished) = if new.plan.targets.is_empty() {
        (RolloutState::Succeeded, Some(Utc::now()))
    } else {
        (RolloutState::Running, None)
    };
    sqlx::query(
        "INSERT INTO rollouts (id, state, patch, selector, strategy, skipped, waves, whole_fleet, \
             created_by, finished_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(new.id)
    .bind(state)
    .bind(new.patch)
    .bind(sqlx::types::Json(new.selector))
    .bind(sqlx::types::Json(new.strategy))
    .bind(sqlx::types::Json(&new.plan.skipped))
    .bind(new.plan.waves)
    .bind(whole_fleet)
    .bind(new.created_by)
    .bind(finished)
    .execute(&mut *conn)
    .await?;
    for t in &new.plan.targets {
        sqlx::query(
            "INSERT INTO rollout_targets (rollout_id, tenant_id, tenant_name, wave, position, \
                 from_spec, to_spec, planned_generation) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(new.id)
        .bind(t.tenant_id)
        .bind(&t.name)
        .bind(t.wave)
        .bind(t.position)
        .bind(sqlx::types::Json(&t.from))
        .bind(sqlx::types::Json(&t.to))
        .bind(t.generation)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Of `tenant_ids`, those in an active rollout, each with that rollout's id.
pub async fn in_active_rollouts(
    ex: impl PgExecutor<'_>,
    tenant_ids: &[Uuid],
) -> Result<Vec<(String, Uuid)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT tenant_name, rollout_id FROM rollout_targets \
         WHERE active AND tenant_id = ANY($1) ORDER BY tenant_name",
    )
    .bind(tenant_ids)
    .fetch_all(ex)
    .await
}

/// The active rollout the tenant belongs to, if any.
pub async fn active_for_tenant(
    ex: impl PgExecutor<'_>,
    tenant_id: Uuid,
) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar("SELECT rollout_id FROM rollout_targets WHERE active AND tenant_id = $1")
        .bind(tenant_id)
        .fetch_optional(ex)
        .await
}

pub async fn targets(ex: impl PgExecutor<'_>, id: Uuid) -> Result<Vec<Target>, sqlx::Error> {
    let sql = format!(
        "SELECT {TARGET_COLUMNS} FROM rollout_targets WHERE rollout_id = $1 ORDER BY wave, position"
    );
    sqlx::query_as(&sql).bind(id).fetch_all(ex).await
}

fn progress_of(targets: &[Target]) -> BTreeMap<String, i64> {
    let mut counts = BTreeMap::new();
    for t in targets {
        *counts.entry(t.state.as_str().to_owned()).or_default() += 1;
    }
    counts
}

/// The rollout with its tenants.
pub async fn get(conn: &mut PgConnection, id: Uuid) -> Result<Option<Rollout>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM rollouts WHERE id = $1");
    let Some(mut rollout): Option<Rollout> = sqlx::query_as(&sql)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
    else {
        return Ok(None);
    };
    let targets = targets(conn, id).await?;
    rollout.progress = progress_of(&targets);
    rollout.tenants = Some(targets);
    Ok(Some(rollout))
}

/// Locks the rollout for the rest of the transaction.
pub async fn lock(conn: &mut PgConnection, id: Uuid) -> Result<Option<Rollout>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM rollouts WHERE id = $1 FOR UPDATE");
    sqlx::query_as(&sql).bind(id).fetch_optional(conn).await
}

pub struct ListFilter {
    pub state: Option<RolloutState>,
    /// Newest first: the page after this (created_at, id).
    pub before: Option<(DateTime<Utc>, Uuid)>,
    pub limit: i64,
}

/// A page, newest first, each with its progress but not its tenants.
pub async fn list(pool: &PgPool, f: &ListFilter) -> Result<Vec<Rollout>, sqlx::Error> {
    let (before_at, before_id) = f.before.unzip();
    let sql = format!(
        "SELECT {COLUMNS} FROM rollouts \
         WHERE ($1::rollout_state IS NULL OR state = $1) \
           AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3)) \
         ORDER BY created_at DESC, id DESC LIMIT $4"
    );
    let mut rollouts: Vec<Rollout> = sqlx::query_as(&sql)
        .bind(f.state)
        .bind(before_at)
        .bind(before_id)
        .bind(f.limit)
        .fetch_all(pool)
        .await?;
    let ids: Vec<Uuid> = rollouts.iter().map(|r| r.id).collect();
    let counts: Vec<(Uuid, TargetState, i64)> = sqlx::query_as(
        "SELECT rollout_id, state, count(*) FROM rollout_targets WHERE rollout_id = ANY($1) \
         GROUP BY rollout_id, state",
    )
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    for r in &mut rollouts {
        r.progress = counts
            .iter()
            .filter(|(id, ..)| *id == r.id)
            .map(|(_, s, n)| (s.as_str().to_owned(), *n))
            .collect();
    }
    Ok(rollouts)
}

pub async fn count_by_state(
    ex: impl PgExecutor<'_>,
) -> Result<Vec<(RolloutState, i64)>, sqlx::Error> {
    sqlx::query_as("SELECT state, count(*) FROM rollouts GROUP BY state")
        .fetch_all(ex)
        .await
}

pub struct NewEvent<'a> {
    pub actor: &'a str,
    pub trigger: &'a str,
    pub action: &'a str,
    pub tenant: Option<&'a str>,
    pub message: String,
    pub details: Value,
}

pub async fn append_event(
    conn: &mut PgConnection,
    rollout: Uuid,
    e: NewEvent<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO rollout_events (rollout_id, actor, trigger, action, tenant_name, message, details) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(rollout)
    .bind(e.actor)
    .bind(e.trigger)
    .bind(e.action)
    .bind(e.tenant)
    .bind(e.message)
    .bind(e.details)
    .execute(conn)
    .await
    .map(drop)
}

/// Oldest first, after event `after_id`.
pub async fn events(
    ex: impl PgExecutor<'_>,
    rollout: Uuid,
    after_id: Option<i64>,
    limit: i64,
) -> Result<Vec<RolloutEvent>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, at, actor, trigger, action, tenant_name, message, details FROM rollout_events \
         WHERE rollout_id = $1 AND ($2::bigint IS NULL OR id > $2) ORDER BY id LIMIT $3",
    )
    .bind(rollout)
    .bind(after_id)
    .bind(limit)
    .fetch_all(ex)
    .await
}

/// Changes the rollout's state (and wakes the controller): the API's operations and the
/// controller's halts and ends. Ending it frees its tenants for other rollouts and cancels
/// those it never started.
pub async fn set_state(
    conn: &mut PgConnection,
    id: Uuid,
    state: RolloutState,
    reason: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE rollouts SET state = $2, reason = $3, updated_at = now(), version = version + 1, \
             next_check_at = now(), \
             finished_at = CASE WHEN $4 THEN NULL ELSE COALESCE(finished_at, now()) END \
         WHERE id = $1",
    )
    .bind(id)
    .bind(state)
    .bind(reason)
    .bind(state.is_active())
    .execute(&mut *conn)
    .await?;
    if !state.is_active() {
        sqlx::query(
            "UPDATE rollout_targets SET active = false, \
                 state = CASE WHEN state = 'pending' THEN 'cancelled'::rollout_target_state ELSE state END, \
                 finished_at = CASE WHEN state = 'pending' THEN now() ELSE finished_at END \
             WHERE rollout_id = $1",
        )
        .bind(id)
        .execute(&mut *conn)
        .await?;
    }
    notify(conn, id).await
}

pub async fn notify(conn: &mut PgConnection, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(ROLLOUT_CHANGED_CHANNEL)
        .bind(id.to_string())
        .execute(conn)
        .await
        .map(drop)
}

/// A change to one target's bookkeeping; `None` leaves a column as it is.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct TargetChange {
    pub state: Option<TargetState>,
    pub reason: Option<Option<String>>,
    pub failure: Option<Option<String>>,
    pub target_generation: Option<i64>,
    pub revert_generation: Option<i64>,
    pub started_at: Option<Option<DateTime<Utc>>>,
    pub ready_at: Option<Option<DateTime<Utc>>>,
    pub bake_ends_at: Option<Option<DateTime<Utc>>>,
    pub finished_at: Option<Option<DateTime<Utc>>>,
    pub revert_started_at: Option<DateTime<Utc>>,
}

pub async fn change_target(
    conn: &mut PgConnection,
    rollout: Uuid,
    tenant: Uuid,
    c: &TargetChange,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE rollout_targets SET state = COALESCE($3, state), \
             reason = CASE WHEN $4 THEN $5 ELSE reason END, \
             target_generation = COALESCE($6, target_generation), \
             revert_generation = COALESCE($7, revert_generation), \
             started_at = CASE WHEN $8 THEN $9 ELSE started_at END, \
             ready_at = CASE WHEN $10 THEN $11 ELSE ready_at END, \
             bake_ends_at = CASE WHEN $12 THEN $13 ELSE bake_ends_at END, \
             finished_at = CASE WHEN $14 THEN $15 ELSE finished_at END, \
             revert_started_at = COALESCE($16, revert_started_at), \
             failure = CASE WHEN $17 THEN $18 ELSE failure END \
         WHERE rollout_id = $1 AND tenant_id = $2",
    )
    .bind(rollout)
    .bind(tenant)
    .bind(c.state)
    .bind(c.reason.is_some())
    .bind(c.reason.clone().flatten())
    .bind(c.target_generation)
    .bind(c.revert_generation)
    .bind(c.started_at.is_some())
    .bind(c.started_at.flatten())
    .bind(c.ready_at.is_some())
    .bind(c.ready_at.flatten())
    .bind(c.bake_ends_at.is_some())
    .bind(c.bake_ends_at.flatten())
    .bind(c.finished_at.is_some())
    .bind(c.finished_at.flatten())
    .bind(c.revert_started_at)
    .bind(c.failure.is_some())
    .bind(c.failure.clone().flatten())
    .execute(conn)
    .await
    .map(drop)
}

/// A rollout claimed for one controller step.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: Uuid,
    pub token: Uuid,
}

/// Claims up to `limit` active rollouts whose lease is free or expired and that are due
/// (or any, with `all`: something they wait on may have changed).
pub async fn claim(
    pool: &PgPool,
    owner: &str,
    ttl: Duration,
    limit: i64,
    all: bool,
) -> Result<Vec<Claimed>, sqlx::Error> {
    let rows: Vec<(Uuid, Uuid)> = sqlx::query_as(
        "WITH due AS ( \
             SELECT id FROM rollouts \
             WHERE finished_at IS NULL AND ($4 OR next_check_at <= now()) \
               AND (lease_expires_at IS NULL OR lease_expires_at < now()) \
             ORDER BY next_check_at LIMIT $3 FOR UPDATE SKIP LOCKED) \
         UPDATE rollouts r SET lease_token = gen_random_uuid(), lease_owner = $1, \
             lease_expires_at = now() + make_interval(secs => $2) \
         FROM due WHERE r.id = due.id RETURNING r.id, r.lease_token",
    )
    .bind(owner)
    .bind(ttl.as_secs_f64())
    .bind(limit)
    .bind(all)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, token)| Claimed { id, token })
        .collect())
}

/// Locks the claimed rollout for a step's commit: `None` when the lease is no longer ours
/// or someone changed the rollout since the step read `version`.
pub async fn lock_for_step(
    conn: &mut PgConnection,
    claimed: &Claimed,
    version: i64,
) -> Result<bool, sqlx::Error> {
    let found: Option<Uuid> = sqlx::query_scalar(
        "SELECT id FROM rollouts WHERE id = $1 AND lease_token = $2 AND version = $3 FOR UPDATE",
    )
    .bind(claimed.id)
    .bind(claimed.token)
    .bind(version)
    .fetch_optional(conn)
    .await?;
    Ok(found.is_some())
}

/// The bookkeeping of a step's commit, last in it: the wave under way and when gates were
/// checked. Returns the rollout's version after the step.
pub async fn record_step(
    conn: &mut PgConnection,
    id: Uuid,
    current_wave: i32,
    gates_checked_at: Option<DateTime<Utc>>,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE rollouts SET current_wave = $2, gates_checked_at = COALESCE($3, gates_checked_at), \
             version = version + 1, updated_at = now() WHERE id = $1 RETURNING version",
    )
    .bind(id)
    .bind(current_wave)
    .bind(gates_checked_at)
    .fetch_one(conn)
    .await
}

/// After the canary is approved, the next wave may start.
pub async fn past_canary(conn: &mut PgConnection, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE rollouts SET current_wave = GREATEST(current_wave, 2) WHERE id = $1 AND waves > 1",
    )
    .bind(id)
    .execute(conn)
    .await
    .map(drop)
}

/// Ends the lease; the controller looks again at `next_check_at`, or at once when the
/// rollout changed since the step last saw it at `version` (a person's word meanwhile).
pub async fn release(
    pool: &PgPool,
    claimed: &Claimed,
    next_check_at: DateTime<Utc>,
    version: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE rollouts SET lease_token = NULL, lease_owner = NULL, lease_expires_at = NULL, \
             next_check_at = CASE WHEN version <> $4 THEN now() ELSE $3 END \
         WHERE id = $1 AND lease_token = $2",
    )
    .bind(claimed.id)
    .bind(claimed.token)
    .bind(next_check_at)
    .bind(version)
    .execute(pool)
    .await
    .map(drop)
}

/// When the next active rollout is due, so an idle controller sleeps until then.
pub async fn next_due(pool: &PgPool) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT min(GREATEST(next_check_at, COALESCE(lease_expires_at, next_check_at))) \
         FROM rollouts WHERE finished_at IS NULL",
    )
    .fetch_one(pool)
    .await
}

pub async fn get_state(
    ex: impl PgExecutor<'_>,
    id: Uuid,
) -> Result<Option<RolloutState>, sqlx::Error> {
    sqlx::query_scalar("SELECT state FROM rollouts WHERE id = $1")
        .bind(id)
        .fetch_optional(ex)
        .await
}

/// Ends the bakes under way now, with no minimum of requests; returns whose.
pub async fn promote_baking(conn: &mut PgConnection, id: Uuid) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE rollout_targets SET bake_ends_at = now(), promoted = true \
         WHERE rollout_id = $1 AND state = 'baking' RETURNING tenant_name",
    )
    .bind(id)
    .fetch_all(conn)
    .await
}
