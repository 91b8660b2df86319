use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::{PgConnection, PgExecutor};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::{state::StateSlug, tenant::Tenant};

/// One entry in a tenant's append-only history.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub struct Event {
    pub id: i64,
    /// The incarnation of the tenant this happened to.
    pub tenant_id: Uuid,
    pub at: DateTime<Utc>,
    /// Who did it: `key:<name>` for an API key, `worker:<id>` for a worker.
    #[schema(example = "key:ops")]
    pub actor: String,
    #[schema(example = "tenant.created")]
    pub action: String,
    /// The tenant's generation when it happened.
    pub generation: i64,
    pub message: String,
    #[schema(value_type = Object)]
    pub details: Value,
}

pub struct NewEvent<'a> {
    pub actor: &'a str,
    pub action: &'a str,
    pub message: String,
    pub details: Value,
}

pub async fn append(
    conn: &mut PgConnection,
    tenant: &Tenant,
    event: NewEvent<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO tenant_events (tenant_id, tenant_name, actor, action, generation, message, details) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(tenant.id)
    .bind(&tenant.name)
    .bind(event.actor)
    .bind(event.action)
    .bind(tenant.generation)
    .bind(event.message)
    .bind(event.details)
    .execute(conn)
    .await
    .map(drop)
}

/// Newest first, across every incarnation of the name.
pub async fn list(
    ex: impl PgExecutor<'_>,
    name: StateSlug,
    before_id: Option<i64>,
    limit: i64,
) -> Result<Vec<Event>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, tenant_id, at, actor, action, generation, message, details FROM tenant_events \
         WHERE tenant_name = $1 AND ($2::bigint IS NULL OR id < $2) ORDER BY id DESC LIMIT $3",
    )
    .bind(name.as_str())
    .bind(before_id)
    .bind(limit)
    .fetch_all(ex)
    .await
}
