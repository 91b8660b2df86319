//! Tenants' health snapshots: what is observed, and the writes
//! that record a snapshot with its transition event.

use serde_json::json;
use sqlx::{PgExecutor, PgPool};
use uuid::Uuid;

use super::{events, tenants::COLUMNS};
use crate::{
    domain::tenant::Tenant,
    health::{self, Health, HealthStatus},
};

/// The cell's live tenants, each with its snapshot.
pub async fn in_cell(ex: impl PgExecutor<'_>, cell: &str) -> Result<Vec<Tenant>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM tenants WHERE cell = $1 AND status <> 'deleted' ORDER BY name"
    );
    sqlx::query_as(&sql).bind(cell).fetch_all(ex).await
}

/// Who writes a snapshot into the history.
pub const ACTOR: &str = "health";

/// Records the tenant incarnation's new snapshot, unless it was deleted meanwhile, and a
/// `health.*` event if its status changed meaningfully (see [`health::transition`]).
/// Returns the event's action, if one was written.
pub async fn record(
    pool: &PgPool,
    tenant_id: Uuid,
    next: impl FnOnce(&Health) -> Health,
) -> Result<Option<&'static str>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let sql = format!(
        "SELECT {COLUMNS} FROM tenants WHERE id = $1 AND status <> 'deleted' FOR NO KEY UPDATE"
    );
    let Some(tenant): Option<Tenant> = sqlx::query_as(&sql)
        .bind(tenant_id)
        .fetch_optional(&mut *tx)
        .await?
    else {
        return Ok(None);
    };
    let after = next(&tenant.health);
    if after == tenant.health {
        return Ok(None);
    }
    sqlx::query("UPDATE tenants SET health = $2 WHERE id = $1")
        .bind(tenant_id)
        .bind(sqlx::types::Json(&after))
        .execute(&mut *tx)
        .await?;
    let action = health::transition(&tenant.health, &after);
    if let Some(action) = action {
        let was = tenant
            .health
            .known()
            .map_or("unobserved", HealthStatus::as_str);
        events::append(
            &mut tx,
            &tenant,
            events::NewEvent {
                actor: ACTOR,
                action,
                message: format!("{} → {}: {}", was, after.status.as_str(), after.reason),
                details: json!({
                    "from": was,
                    "to": after.status,
                    "reason": after.reason,
                    "evidence": {
                        "tasks": after.tasks,
                        "deployment": after.deployment,
                        "targets": after.targets,
                        "alarms": after.alarms,
                        "metrics": after.metrics,
                    },
                }),
            },
        )
        .await?;
    }
    tx.commit().await?;
    Ok(action)
}

/// Live tenants by health status (every status, zeros included).
pub async fn count_by_health(
    ex: impl PgExecutor<'_>,
) -> Result<Vec<(HealthStatus, i64)>, sqlx::Error> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT health->>'status', count(*) FROM tenants WHERE status <> 'deleted' GROUP BY 1",
    )
    .fetch_all(ex)
    .await?;
    Ok(HealthStatus::ALL
        .into_iter()
        .map(|h| {
            let n = rows
                .iter()
                .filter(|(s, _)| HealthStatus::parse(s).unwrap_or(HealthStatus::Unknown) == h)
                .map(|(_, n)| n)
                .sum();
            (h, n)
        })
        .collect())
}
