use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgExecutor;
use uuid::Uuid;

use crate::auth::Role;

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct ApiKey {
    pub id: Uuid,
    pub name: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "id, name, role, created_at, last_used_at, revoked_at";

/// Announced, with the key's name, when a key is revoked: API processes that keep valid
/// keys in memory forget them.
pub const KEYS_CHANGED_CHANNEL: &str = "statehouse_keys_changed";

/// Fails with a unique violation when an active key already has that name.
pub async fn create(
    ex: impl PgExecutor<'_>,
    name: &str,
    role: Role,
    hash: &[u8; 32],
) -> Result<ApiKey, sqlx::Error> {
    let sql = format!("INSERT INTO api_keys (id, name, role, token_hash) VALUES ($1, $2, $3, $4) RETURNING {COLUMNS}");
    sqlx::query_as(&sql)
        .bind(Uuid::now_v7())
        .bind(name)
        .bind(role)
        .bind(hash.as_slice())
        .fetch_one(ex)
        .await
}

pub async fn find_active(
    ex: impl PgExecutor<'_>,
    hash: &[u8; 32],
) -> Result<Option<ApiKey>, sqlx::Error> {
    let sql =
        format!("SELECT {COLUMNS} FROM api_keys WHERE token_hash = $1 AND revoked_at IS NULL");
    sqlx::query_as(&sql)
        .bind(hash.as_slice())
        .fetch_optional(ex)
        .await
}

/// Records use at most once a minute, so authentication does not write on every request.
pub async fn touch(ex: impl PgExecutor<'_>, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE api_keys SET last_used_at = now() \
         WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')",
    )
    .bind(id)
    .execute(ex)
    .await
    .map(drop)
}

pub async fn list(
    ex: impl PgExecutor<'_>,
    include_revoked: bool,
) -> Result<Vec<ApiKey>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM api_keys WHERE $1 OR revoked_at IS NULL ORDER BY name, created_at"
    );
    sqlx::query_as(&sql)
        .bind(include_revoked)
        .fetch_all(ex)
        .await
}

/// Returns whether an active key of that name existed. The revocation is announced on
/// [`KEYS_CHANGED_CHANNEL`] as it commits.
pub async fn revoke(ex: impl PgExecutor<'_>, name: &str) -> Result<bool, sqlx::Error> {
    let revoked = sqlx::query(
        "WITH revoked AS (UPDATE api_keys SET revoked_at = now() \
                          WHERE name = $1 AND revoked_at IS NULL RETURNING name) \
         SELECT pg_notify($2, name) FROM revoked",
    )
    .bind(name)
    .bind(KEYS_CHANGED_CHANNEL)
    .fetch_all(ex)
    .await?;
    Ok(!revoked.is_empty())
}
