//! Claiming tenants for reconciling, and the writes a worker makes while it holds a claim.
//! Every write after the claim is fenced by the claim's token: once the lease has passed to
//! another worker, the old holder's writes change nothing and report [`Fenced`].

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgExecutor, PgPool};
use uuid::Uuid;

use crate::domain::tenant::{Condition, Tenant, TenantStatus};

/// A write refused because the lease is no longer ours.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("the lease on the tenant was lost to another worker")]
    Fenced,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// A tenant claimed for one pass.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub tenant: Tenant,
    pub token: Uuid,
    pub request_seq: i64,
    pub requested_at: DateTime<Utc>,
    pub attempts: i32,
    pub failing_since: Option<DateTime<Utc>>,
    /// The `request_seq` at which the last pass found the tenant whole, if it did.
    pub whole_at_seq: Option<i64>,
    /// Taken just before the claim was sent: the lease surely lasts until this + its TTL.
    pub claimed_at: std::time::Instant,
}

#[derive(sqlx::FromRow)]
struct ClaimRow {
    #[sqlx(flatten)]
    tenant: Tenant,
    lease_token: Uuid,
    request_seq: i64,
    requested_at: DateTime<Utc>,
    attempts: i32,
    failing_since: Option<DateTime<Utc>>,
    whole_at_seq: Option<i64>,
}

/// Claims up to `limit` due tenants of `cells` whose lease is free or expired. The row locks
/// last only for this statement; the lease is what keeps other workers off afterwards.
/// Taking over a lease that expired without being released (its worker died or stalled) is
/// recorded as a `lease.taken_over` event in the same statement.
pub async fn claim(
    pool: &PgPool,
    owner: &str,
    ttl: Duration,
    limit: i64,
    cells: &[String],
) -> Result<Vec<Claimed>, sqlx::Error> {
    let sql = format!(
        "WITH due AS ( \
             SELECT id, lease_owner AS previous_owner, lease_token AS previous_lease, \
                    lease_expires_at AS previous_expiry FROM tenants \
             WHERE status <> 'deleted' AND next_attempt_at <= now() AND cell = ANY($4) \
               AND paused_at IS NULL \
               AND (lease_expires_at IS NULL OR lease_expires_at < now()) \
             ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED), \
         claimed AS ( \
             UPDATE tenants t SET lease_token = gen_random_uuid(), lease_owner = $1, \
                 lease_expires_at = now() + make_interval(secs => $2) \
             FROM due WHERE t.id = due.id \
             RETURNING t.*, due.previous_owner, due.previous_lease, due.previous_expiry), \
         taken_over AS ( \
             INSERT INTO tenant_events (tenant_id, tenant_name, actor, action, generation, message, details) \
             SELECT id, name, 'worker:' || $1, 'lease.taken_over', generation, \
                    format('the lease of worker %s expired at %s without being released; taken over', \
                           previous_owner, previous_expiry), \
                    jsonb_build_object('lease', lease_token, 'previous_owner', previous_owner, \
                                       'previous_lease', previous_lease, 'previous_expiry', previous_expiry) \
             FROM claimed WHERE previous_owner IS NOT NULL) \
         SELECT {}, lease_token, request_seq, requested_at, attempts, failing_since, whole_at_seq \
         FROM claimed",
        super::tenants::COLUMNS
    );
    let claimed_at = std::time::Instant::now();
    let rows: Vec<ClaimRow> = sqlx::query_as(&sql)
        .bind(owner)
        .bind(ttl.as_secs_f64())
        .bind(limit)
        .bind(cells)
        .fetch_all(pool)
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| Claimed {
            tenant: r.tenant,
            token: r.lease_token,
            request_seq: r.request_seq,
            requested_at: r.requested_at,
            attempts: r.attempts,
            failing_since: r.failing_since,
            whole_at_seq: r.whole_at_seq,
            claimed_at,
        })
        .collect())
}

fn fenced(rows: u64) -> Result<(), LeaseError> {
    if rows == 1 {
        Ok(())
    } else {
        Err(LeaseError::Fenced)
    }
}

/// Extends the lease; `Fenced` means another worker has it now.
pub async fn heartbeat(
    ex: impl PgExecutor<'_>,
    id: Uuid,
    token: Uuid,
    ttl: Duration,
) -> Result<(), LeaseError> {
    let done = sqlx::query(
        "UPDATE tenants SET lease_expires_at = now() + make_interval(secs => $3) \
         WHERE id = $1 AND lease_token = $2",
    )
    .bind(id)
    .bind(token)
    .bind(ttl.as_secs_f64())
    .execute(ex)
    .await?;
    fenced(done.rows_affected())
}

/// The status a worker may write. A deletion requested meanwhile always shows as
/// `deleting`; any other API write made meanwhile keeps the status the API set, and the
/// tenant is due again at once (see [`release`]).
const GUARDED_STATUS: &str =
    "CASE WHEN deletion_requested_at IS NOT NULL THEN 'deleting'::tenant_status \
                                   WHEN request_seq <> $SEQ THEN status ELSE $STATUS END";

/// Writes what the worker knows so far: resources, conditions, and optionally a status.
pub async fn record_progress(
    ex: impl PgExecutor<'_>,
    id: Uuid,
    token: Uuid,
    resources: &Value,
    conditions: &[Condition],
    status: Option<TenantStatus>,
    request_seq: i64,
) -> Result<(), LeaseError> {
    let sql = format!(
        "UPDATE tenants SET resources = $3, conditions = $4, status = {}, updated_at = now() \
         WHERE id = $1 AND lease_token = $2",
        GUARDED_STATUS
            .replace("$SEQ", "$6")
            .replace("$STATUS", "COALESCE($5, status)")
    );
    let done = sqlx::query(&sql)
        .bind(id)
        .bind(token)
        .bind(resources)
        .bind(sqlx::types::Json(conditions))
        .bind(status)
        .bind(request_seq)
        .execute(ex)
        .await?;
    fenced(done.rows_affected())
}

/// Appends to the tenant's history, only while the lease is ours.
pub async fn event(
    ex: impl PgExecutor<'_>,
    claimed: (&Tenant, Uuid),
    actor: &str,
    action: &str,
    message: &str,
    details: &Value,
) -> Result<(), LeaseError> {
    let (tenant, token) = claimed;
    let done = sqlx::query(
        "INSERT INTO tenant_events (tenant_id, tenant_name, actor, action, generation, message, details) \
         SELECT $1, $2, $3, $4, $5, $6, $7 FROM tenants WHERE id = $1 AND lease_token = $8",
    )
    .bind(tenant.id)
    .bind(&tenant.name)
    .bind(actor)
    .bind(action)
    .bind(tenant.generation)
    .bind(message)
    .bind(details)
    .bind(token)
    .execute(ex)
    .await?;
    fenced(done.rows_affected())
}

/// Records that a pass found its lease gone: its writes were refused and it stopped. Not
/// fenced (the lease is no longer ours), and only ever appended: it changes no state.
pub async fn record_lost(pool: &PgPool, claimed: &Claimed, actor: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO tenant_events (tenant_id, tenant_name, actor, action, generation, message, details) \
         SELECT id, name, $2, 'lease.lost', $3, \
                'the lease ended before the pass did (now held by ' || COALESCE(lease_owner, 'no worker') || \
                '); its writes were refused and the pass stopped', \
                jsonb_build_object('lease', $4::uuid, 'now_held_by', lease_owner, 'current_lease', lease_token) \
         FROM tenants WHERE id = $1",
    )
    .bind(claimed.tenant.id)
    .bind(actor)
    .bind(claimed.tenant.generation)
    .bind(claimed.token)
    .execute(pool)
    .await
    .map(drop)
}

/// How a pass ended, as the row should show it.
pub struct Release<'a> {
    pub status: TenantStatus,
    /// Set when every resource matched generation `observed_generation`.
    pub observed_generation: Option<i64>,
    pub endpoint: Option<&'a str>,
    pub last_error: Option<&'a str>,
    /// When to look again, unless an API write arrived meanwhile (then at once).
    pub next_attempt_in: Option<Duration>,
    pub attempts: i32,
    pub failing_since: Option<DateTime<Utc>>,
    /// The pass found every resource matching and the deployment complete.
    pub whole: bool,
}

/// Ends the lease. `request_seq` is the value seen at claim time: if the API wrote since,
/// the tenant is due again immediately.
pub async fn release(
    ex: impl PgExecutor<'_>,
    claimed: &Claimed,
    r: Release<'_>,
) -> Result<(), LeaseError> {
    let sql = format!(
        "UPDATE tenants SET lease_token = NULL, lease_owner = NULL, lease_expires_at = NULL, \
             status = {}, observed_generation = COALESCE($4, observed_generation), \
             endpoint = $5, last_error = $6, attempts = CASE WHEN request_seq <> $10 THEN 0 ELSE $8 END, \
             failing_since = CASE WHEN request_seq <> $10 THEN NULL ELSE $9 END, updated_at = now(), \
             whole_at_seq = CASE WHEN $11 AND request_seq = $10 THEN $10 END, \
             next_attempt_at = CASE WHEN request_seq <> $10 THEN now() \
                                    WHEN $7::float8 IS NULL THEN 'infinity' \
                                    ELSE now() + make_interval(secs => $7) END \
         WHERE id = $1 AND lease_token = $2",
        GUARDED_STATUS.replace("$SEQ", "$10").replace("$STATUS", "$3")
    );
    let done = sqlx::query(&sql)
        .bind(claimed.tenant.id)
        .bind(claimed.token)
        .bind(r.status)
        .bind(r.observed_generation)
        .bind(r.endpoint)
        .bind(r.last_error)
        .bind(r.next_attempt_in.map(|d| d.as_secs_f64()))
        .bind(r.attempts)
        .bind(r.failing_since)
        .bind(claimed.request_seq)
        .bind(r.whole)
        .execute(ex)
        .await?;
    fenced(done.rows_affected())
}

/// The last step of a deletion: the tombstone, with the lease ended.
pub async fn finish_deletion(pool: &PgPool, claimed: &Claimed) -> Result<(), LeaseError> {
    let mut tx = pool.begin().await?;
    let done = sqlx::query(
        "UPDATE tenants SET status = 'deleted', deleted_at = now(), endpoint = NULL, \
             lease_token = NULL, lease_owner = NULL, lease_expires_at = NULL, updated_at = now() \
         WHERE id = $1 AND lease_token = $2 AND status = 'deleting'",
    )
    .bind(claimed.tenant.id)
    .bind(claimed.token)
    .execute(&mut *tx)
    .await?;
    fenced(done.rows_affected())?;
    sqlx::query("DELETE FROM rule_priorities WHERE tenant_id = $1")
        .bind(claimed.tenant.id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// When the next tenant of `cells` falls due, so an idle worker sleeps exactly until then.
pub async fn next_due(
    pool: &PgPool,
    cells: &[String],
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT min(GREATEST(next_attempt_at, COALESCE(lease_expires_at, next_attempt_at))) \
         FROM tenants WHERE status <> 'deleted' AND next_attempt_at < 'infinity' AND cell = ANY($1) \
           AND paused_at IS NULL",
    )
    .bind(cells)
    .fetch_one(pool)
    .await
}
