use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::TENANT_CHANGED_CHANNEL;
use crate::{
    domain::{
        spec::SpecDoc,
        state::StateSlug,
        tenant::{DataPolicy, Tenant, TenantStatus},
    },
    health::HealthStatus,
};

/// Announced with the tenant's name whenever any column of [`COLUMNS`] changes (a trigger).
pub const TENANT_ROWS_CHANNEL: &str = "statehouse_tenant_rows";

/// Every column of [`Tenant`], in one place for each query that returns tenants.
pub const COLUMNS: &str =
    "id, name, display_name, postal_code, status, generation, observed_generation, \
     spec, resources, endpoint, conditions, last_error, cell, data_policy, deletion_requested_at, \
     paused_at, paused_reason, created_at, updated_at, deleted_at, health, sizing";

/// Makes the tenant due at once and tells a busy worker that the row moved under it.
const WAKE: &str =
    "next_attempt_at = now(), attempts = 0, failing_since = NULL, request_seq = request_seq + 1";

pub struct NewTenant<'a> {
    pub name: StateSlug,
    pub display_name: &'a str,
    pub spec: &'a SpecDoc,
    pub cell: &'a str,
}

/// Fails with a unique violation when a live tenant of that name exists.
pub async fn insert(conn: &mut PgConnection, new: NewTenant<'_>) -> Result<Tenant, sqlx::Error> {
    let sql = format!(
        "INSERT INTO tenants (id, name, display_name, postal_code, spec, cell) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING {COLUMNS}"
    );
    sqlx::query_as(&sql)
        .bind(Uuid::now_v7())
        .bind(new.name.as_str())
        .bind(new.display_name)
        .bind(new.name.postal_code())
        .bind(sqlx::types::Json(new.spec))
        .bind(new.cell)
        .fetch_one(conn)
        .await
}

/// The live tenant of that name, or else its most recent tombstone.
pub async fn find_latest(
    ex: impl PgExecutor<'_>,
    name: StateSlug,
) -> Result<Option<Tenant>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM tenants WHERE name = $1 \
         ORDER BY (status <> 'deleted') DESC, created_at DESC, id DESC LIMIT 1"
    );
    sqlx::query_as(&sql)
        .bind(name.as_str())
        .fetch_optional(ex)
        .await
}

/// Locks the live tenant of that name for the rest of the transaction.
pub async fn lock_live(
    conn: &mut PgConnection,
    name: StateSlug,
) -> Result<Option<Tenant>, sqlx::Error> {
    let sql =
        format!("SELECT {COLUMNS} FROM tenants WHERE name = $1 AND status <> 'deleted' FOR UPDATE");
    sqlx::query_as(&sql)
        .bind(name.as_str())
        .fetch_optional(conn)
        .await
}

pub struct DesiredChange<'a> {
    pub display_name: &'a str,
    pub spec: &'a SpecDoc,
    pub generation: i64,
    pub status: TenantStatus,
}

pub async fn update_desired(
    conn: &mut PgConnection,
    id: Uuid,
    c: DesiredChange<'_>,
) -> Result<Tenant, sqlx::Error> {
    let sql = format!(
        "UPDATE tenants SET display_name = $2, spec = $3, status = $5, updated_at = now(), {WAKE}, \
           requested_at = CASE WHEN generation = $4 THEN requested_at ELSE now() END, generation = $4 \
         WHERE id = $1 RETURNING {COLUMNS}"
    );
    sqlx::query_as(&sql)
        .bind(id)
        .bind(c.display_name)
        .bind(sqlx::types::Json(c.spec))
        .bind(c.generation)
        .bind(c.status)
        .fetch_one(conn)
        .await
}

/// A new spec for `tenant` (locked, as read) written by `actor`: the next generation,
/// its `tenant.updated` event with `details`, and the NOTIFY that wakes the workers.
pub async fn write_spec(
    conn: &mut PgConnection,
    tenant: &Tenant,
    spec: &SpecDoc,
    actor: &str,
    message: impl FnOnce(i64) -> String,
    details: serde_json::Value,
) -> Result<Tenant, sqlx::Error> {
    let change = DesiredChange {
        display_name: &tenant.display_name,
        spec,
        generation: tenant.generation + 1,
        status: tenant.status_after_spec_change(),
    };
    let updated = update_desired(&mut *conn, tenant.id, change).await?;
    super::events::append(
        &mut *conn,
        &updated,
        super::events::NewEvent {
            actor,
            action: "tenant.updated",
            message: message(updated.generation),
            details,
        },
    )
    .await?;
    notify_changed(&mut *conn, &updated.name).await?;
    Ok(updated)
}

/// Marks the tenant for deletion; the first request's time is kept if it is repeated.
pub async fn request_deletion(
    conn: &mut PgConnection,
    id: Uuid,
    policy: DataPolicy,
) -> Result<Tenant, sqlx::Error> {
    let sql = format!(
        "UPDATE tenants SET status = 'deleting', data_policy = $2, \
         deletion_requested_at = COALESCE(deletion_requested_at, now()), updated_at = now(), \
         requested_at = COALESCE(deletion_requested_at, now()), {WAKE} \
         WHERE id = $1 RETURNING {COLUMNS}"
    );
    sqlx::query_as(&sql)
        .bind(id)
        .bind(policy)
        .fetch_one(conn)
        .await
}

/// The worker's last step once every resource is verified gone: the row becomes a
/// tombstone and the name is free again.
pub async fn mark_deleted(conn: &mut PgConnection, id: Uuid) -> Result<Tenant, sqlx::Error> {
    let sql = format!(
        "UPDATE tenants SET status = 'deleted', deleted_at = now(), endpoint = NULL, updated_at = now() \
         WHERE id = $1 AND status = 'deleting' RETURNING {COLUMNS}"
    );
    sqlx::query_as(&sql).bind(id).fetch_one(conn).await
}

/// Asks for an immediate pass, e.g. after something was fixed by hand. `false` when there
/// is no live tenant of that name.
pub async fn request_reconcile(conn: &mut PgConnection, id: Uuid) -> Result<bool, sqlx::Error> {
    let sql = format!("UPDATE tenants SET {WAKE} WHERE id = $1 AND status <> 'deleted'");
    let done = sqlx::query(&sql).bind(id).execute(conn).await?;
    Ok(done.rows_affected() == 1)
}

pub struct ListFilter {
    /// `None` lists every tenant that is not deleted.
    pub status: Option<TenantStatus>,
    /// Only tenants with this observed health.
    pub health: Option<HealthStatus>,
    pub after: Option<(String, Uuid)>,
    pub limit: i64,
}

/// A page in name order, using keyset pagination so pages stay stable under writes.
pub async fn list(ex: impl PgExecutor<'_>, f: &ListFilter) -> Result<Vec<Tenant>, sqlx::Error> {
    let (after_name, after_id) = f.after.clone().unzip();
    let sql = format!(
        "SELECT {COLUMNS} FROM tenants \
         WHERE (CASE WHEN $1::tenant_status IS NULL THEN status <> 'deleted' ELSE status = $1 END) \
           AND ($2::text IS NULL OR (name, id) > ($2, $3)) \
           AND ($5::text IS NULL OR health->>'status' = $5) \
         ORDER BY name, id LIMIT $4"
    );
    sqlx::query_as(&sql)
        .bind(f.status)
        .bind(after_name)
        .bind(after_id)
        .bind(f.limit)
        .bind(f.health.map(HealthStatus::as_str))
        .fetch_all(ex)
        .await
}

/// These tenant incarnations, live or not.
pub async fn by_ids(ex: impl PgExecutor<'_>, ids: &[Uuid]) -> Result<Vec<Tenant>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM tenants WHERE id = ANY($1)");
    sqlx::query_as(&sql).bind(ids).fetch_all(ex).await
}

/// Locks one tenant incarnation for the rest of the transaction.
pub async fn lock_id(conn: &mut PgConnection, id: Uuid) -> Result<Option<Tenant>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM tenants WHERE id = $1 FOR UPDATE");
    sqlx::query_as(&sql).bind(id).fetch_optional(conn).await
}

/// Every live tenant (not deleted), in name order.
pub async fn all_live(ex: impl PgExecutor<'_>) -> Result<Vec<Tenant>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM tenants WHERE status <> 'deleted' ORDER BY name");
    sqlx::query_as(&sql).fetch_all(ex).await
}

pub async fn count_by_status(
    ex: impl PgExecutor<'_>,
) -> Result<Vec<(TenantStatus, i64)>, sqlx::Error> {
    sqlx::query_as("SELECT status, count(*) FROM tenants GROUP BY status")
        .fetch_all(ex)
        .await
}

/// Announces a desired-state change. Inside a transaction, Postgres delivers it on commit,
/// so a listener never sees a change that was rolled back.
pub async fn notify_changed(conn: &mut PgConnection, name: &str) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(TENANT_CHANGED_CHANNEL)
        .bind(name)
        .execute(conn)
        .await
        .map(drop)
}

/// Pauses the live tenant and takes its lease away, so a pass in flight has its next write
/// refused. `None` when it was paused already (nothing changes, the reason is kept).
pub async fn pause(
    conn: &mut PgConnection,
    id: Uuid,
    reason: Option<&str>,
) -> Result<Option<Tenant>, sqlx::Error> {
    let sql = format!(
        "UPDATE tenants SET paused_at = now(), paused_reason = $2, lease_token = NULL, \
             lease_owner = NULL, lease_expires_at = NULL, updated_at = now() \
         WHERE id = $1 AND status <> 'deleted' AND paused_at IS NULL RETURNING {COLUMNS}"
    );
    sqlx::query_as(&sql)
        .bind(id)
        .bind(reason)
        .fetch_optional(conn)
        .await
}

/// Resumes a paused tenant and makes it due at once. `None` when it was not paused.
pub async fn resume(conn: &mut PgConnection, id: Uuid) -> Result<Option<Tenant>, sqlx::Error> {
    let sql = format!(
        "UPDATE tenants SET paused_at = NULL, paused_reason = NULL, updated_at = now(), {WAKE} \
         WHERE id = $1 AND status <> 'deleted' AND paused_at IS NOT NULL RETURNING {COLUMNS}"
    );
    sqlx::query_as(&sql).bind(id).fetch_optional(conn).await
}

/// Names of the tenants that are not deleted (being deleted counts as live: its worker is
/// still removing what it has).
pub async fn live_names(ex: impl PgExecutor<'_>) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT DISTINCT name FROM tenants WHERE status <> 'deleted'")
        .fetch_all(ex)
        .await
}

/// Whether a tenant of that name is live (not deleted) right now.
pub async fn is_live(ex: impl PgExecutor<'_>, name: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM tenants WHERE name = $1 AND status <> 'deleted')",
    )
    .bind(name)
    .fetch_one(ex)
    .await
}

/// Buckets and tables that deleted tenants kept under the `retain` data policy.
pub async fn retained_data(ex: impl PgExecutor<'_>) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT r.value->>'name' FROM tenants t, jsonb_each(t.resources) r \
         WHERE t.status = 'deleted' AND r.key IN ('bucket', 'table') \
           AND (r.value->>'retained')::boolean AND r.value->>'name' IS NOT NULL",
    )
    .fetch_all(ex)
    .await
}
