//! The rightsizer's records: the sizes tenants have had, its conclusions on each tenant,
//! and the tenants whose last sizing change is still being deployed.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::tenants::COLUMNS;
use crate::{
    domain::{
        spec::{sizing::SizeDoc, TaskSize, TenantSpec},
        tenant::Tenant,
    },
    sizing::{Change, ChangeTrigger, Direction, Sizing},
};

/// Who writes the rightsizer's changes into the history.
pub const ACTOR: &str = "rightsizer";

/// Each tenant's sizes (cpu, memory), oldest first, each with the time a deployment of it
/// completed (the first: when the tenant was created).
pub async fn sizes(
    ex: impl PgExecutor<'_>,
    tenant_ids: &[Uuid],
) -> Result<HashMap<Uuid, Vec<(DateTime<Utc>, u32, u32)>>, sqlx::Error> {
    let rows: Vec<(Uuid, DateTime<Utc>, i32, i32)> = sqlx::query_as(
        "SELECT tenant_id, since, cpu, memory FROM tenant_sizes \
         WHERE tenant_id = ANY($1) ORDER BY tenant_id, since",
    )
    .bind(tenant_ids)
    .fetch_all(ex)
    .await?;
    let mut by_tenant: HashMap<Uuid, Vec<(DateTime<Utc>, u32, u32)>> = HashMap::new();
    for (id, since, cpu, memory) in rows {
        let (Ok(cpu), Ok(memory)) = (u32::try_from(cpu), u32::try_from(memory)) else {
            continue;
        };
        by_tenant.entry(id).or_default().push((since, cpu, memory));
    }
    Ok(by_tenant)
}

/// Replaces the tenant's sizing record.
pub async fn set(conn: &mut PgConnection, id: Uuid, sizing: &Sizing) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE tenants SET sizing = $2 WHERE id = $1")
        .bind(id)
        .bind(sqlx::types::Json(sizing))
        .execute(conn)
        .await
        .map(drop)
}

/// Live tenants whose last sizing change has not settled yet: its deployment is followed.
pub async fn unsettled(
    ex: impl PgExecutor<'_>,
    cells: &[String],
) -> Result<Vec<Tenant>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM tenants WHERE status <> 'deleted' AND cell = ANY($1) \
           AND sizing->'last_change'->>'settled' = 'false' ORDER BY name"
    );
    sqlx::query_as(&sql).bind(cells).fetch_all(ex).await
}

/// A change of a tenant's size, by whom and why.
pub struct Resize<'a> {
    pub to: TaskSize,
    pub trigger: ChangeTrigger,
    /// `rightsizer` or `key:<name>`.
    pub actor: &'a str,
    pub reason: &'a str,
    /// What the change rests on, kept in the event.
    pub evidence: Value,
}

/// Writes `tenant` (locked, as read) at the new size: a spec change like any other (the
/// next generation, a `tenant.updated` event carrying the evidence, a NOTIFY), and the
/// change as the tenant's last sizing change in `sizing`, which is stored with it.
pub async fn resize(
    conn: &mut PgConnection,
    tenant: &Tenant,
    spec: &TenantSpec,
    sizing: &mut Sizing,
    r: Resize<'_>,
    now: DateTime<Utc>,
) -> Result<Tenant, sqlx::Error> {
    let from = spec.size;
    let direction = Direction::of(from, r.to);
    let doc = spec.resized(r.to).to_doc();
    let who = if r.actor == ACTOR {
        "the rightsizer".to_owned()
    } else {
        r.actor.replacen("key:", "key ", 1)
    };
    let updated = super::tenants::write_spec(
        &mut *conn,
        tenant,
        &doc,
        r.actor,
        |generation| {
            format!(
                "spec changed to generation {generation} by {who} ({} {}): {from} → {}; {}",
                direction.as_str(),
                r.trigger.as_str(),
                r.to,
                r.reason
            )
        },
        json!({
            "spec": doc,
            "previous_generation": tenant.generation,
            "sizing": {
                "trigger": r.trigger,
                "direction": direction,
                "from": SizeDoc::from(from),
                "to": SizeDoc::from(r.to),
                "reason": r.reason,
                "evidence": r.evidence,
            },
        }),
    )
    .await?;
    sizing.last_change = Some(Change {
        at: now,
        generation: updated.generation,
        from: from.into(),
        to: r.to.into(),
        direction,
        trigger: r.trigger,
        actor: r.actor.to_owned(),
        settled: false,
        outcome: None,
    });
    sizing.action = Some(format!(
        "applied as generation {} ({})",
        updated.generation,
        r.trigger.as_str()
    ));
    set(&mut *conn, tenant.id, sizing).await?;
    Ok(Tenant {
        sizing: sizing.clone(),
        ..updated
    })
}
