//! Replay of POST responses for clients that retry with the same `Idempotency-Key`.

use serde_json::Value;
use sqlx::PgConnection;

/// How long a stored response is replayed.
const RETENTION: &str = "24 hours";

#[derive(sqlx::FromRow)]
pub struct StoredResponse {
    pub request_hash: Vec<u8>,
    #[sqlx(rename = "response_status")]
    pub status: i16,
    #[sqlx(rename = "response_body")]
    pub body: Value,
    pub location: Option<String>,
    pub etag: Option<String>,
}

/// Serialises requests that share a key until the end of the transaction, so a retry that
/// races the original waits for it and replays its answer.
pub async fn lock(conn: &mut PgConnection, key_name: &str, key: &str) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1 || E'\\n' || $2, 0))")
        .bind(key_name)
        .bind(key)
        .execute(conn)
        .await
        .map(drop)
}

/// The stored response, if one younger than the retention period exists. An expired one is
/// removed so the key can be used afresh.
pub async fn find(
    conn: &mut PgConnection,
    key_name: &str,
    key: &str,
) -> Result<Option<StoredResponse>, sqlx::Error> {
    let sql = format!(
        "DELETE FROM idempotency_keys WHERE key_name = $1 AND idempotency_key = $2 \
         AND created_at < now() - interval '{RETENTION}'"
    );
    sqlx::query(&sql)
        .bind(key_name)
        .bind(key)
        .execute(&mut *conn)
        .await?;
    sqlx::query_as(
        "SELECT request_hash, response_status, response_body, location, etag FROM idempotency_keys \
         WHERE key_name = $1 AND idempotency_key = $2",
    )
    .bind(key_name)
    .bind(key)
    .fetch_optional(conn)
    .await
}

pub async fn save(
    conn: &mut PgConnection,
    key_name: &str,
    key: &str,
    r: &StoredResponse,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO idempotency_keys (key_name, idempotency_key, request_hash, response_status, response_body, location, etag) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(key_name)
    .bind(key)
    .bind(&r.request_hash)
    .bind(r.status)
    .bind(&r.body)
    .bind(&r.location)
    .bind(&r.etag)
    .execute(conn)
    .await
    .map(drop)
}

/// Deletes every stored response older than the retention; returns how many went.
pub async fn purge_expired(ex: impl sqlx::PgExecutor<'_>) -> Result<u64, sqlx::Error> {
    let sql =
        format!("DELETE FROM idempotency_keys WHERE created_at < now() - interval '{RETENTION}'");
    Ok(sqlx::query(&sql).execute(ex).await?.rows_affected())
}
