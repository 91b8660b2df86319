//! The fleet defaults: the spec a new tenant gets for every member its request leaves out.
//! Seeded from the configuration the first time it is read; after that it lives here.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use utoipa::ToSchema;

use crate::domain::spec::SpecDoc;

/// Who seeded the defaults.
pub const SEEDED_BY: &str = "configuration";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub struct FleetDefaults {
    #[sqlx(json)]
    pub spec: SpecDoc,
    /// Bumped by every change; the ETag is made from it.
    pub version: i64,
    /// `configuration`, `key:<name>`, or `rollout:<id>`.
    pub updated_by: String,
    pub updated_at: DateTime<Utc>,
}

const SELECT: &str = "SELECT spec, version, updated_by, updated_at FROM fleet_defaults";

/// The defaults, seeded with `seed` if nobody has set them yet. Every create reads them, so
/// only a database that has none yet is written to.
pub async fn current(
    conn: &mut PgConnection,
    seed: &SpecDoc,
) -> Result<FleetDefaults, sqlx::Error> {
    if let Some(defaults) = sqlx::query_as(SELECT).fetch_optional(&mut *conn).await? {
        return Ok(defaults);
    }
    // Two first readers at once: the loser's insert waits for the winner's and does
    // nothing; the next statement sees whichever row won.
    sqlx::query(
        "INSERT INTO fleet_defaults (spec, updated_by) VALUES ($1, $2) \
         ON CONFLICT (singleton) DO NOTHING",
    )
    .bind(sqlx::types::Json(seed))
    .bind(SEEDED_BY)
    .execute(&mut *conn)
    .await?;
    sqlx::query_as(SELECT).fetch_one(conn).await
}

/// Locks the defaults (seeding them first if needed) for the rest of the transaction.
pub async fn lock(conn: &mut PgConnection, seed: &SpecDoc) -> Result<FleetDefaults, sqlx::Error> {
    current(&mut *conn, seed).await?;
    sqlx::query_as(&format!("{SELECT} FOR UPDATE"))
        .fetch_one(conn)
        .await
}

/// Locks the defaults if anyone has read or set them yet.
pub async fn lock_existing(conn: &mut PgConnection) -> Result<Option<FleetDefaults>, sqlx::Error> {
    sqlx::query_as(&format!("{SELECT} FOR UPDATE"))
        .fetch_optional(conn)
        .await
}

/// Replaces the defaults, bumping their version when the spec changes.
pub async fn set(
    conn: &mut PgConnection,
    spec: &SpecDoc,
    by: &str,
) -> Result<FleetDefaults, sqlx::Error> {
    sqlx::query_as(
        "UPDATE fleet_defaults SET \
             version = CASE WHEN spec = $1 THEN version ELSE version + 1 END, \
             updated_by = CASE WHEN spec = $1 THEN updated_by ELSE $2 END, \
             updated_at = CASE WHEN spec = $1 THEN updated_at ELSE now() END, \
             spec = $1 \
         RETURNING spec, version, updated_by, updated_at",
    )
    .bind(sqlx::types::Json(spec))
    .bind(by)
    .fetch_one(conn)
    .await
}
