//! The resync round's reads and writes: the tenants of a cell found whole by their last
//! pass, and marking one drifted, which makes a full pass due at once.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::tenants::COLUMNS;
use crate::domain::tenant::Tenant;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Whole {
    #[sqlx(flatten)]
    pub tenant: Tenant,
    pub request_seq: i64,
}

/// The tenants of `cell` whose last pass found them whole, with nothing asked since, and
/// that no pass holds now; and the database's time of the read.
pub async fn whole_in_cell(
    pool: &PgPool,
    cell: &str,
) -> Result<(Vec<Whole>, DateTime<Utc>), sqlx::Error> {
    let mut tx = pool.begin().await?;
    let now: DateTime<Utc> = sqlx::query_scalar("SELECT now()")
        .fetch_one(&mut *tx)
        .await?;
    let sql = format!(
        "SELECT {COLUMNS}, request_seq FROM tenants \
         WHERE cell = $1 AND status = 'ready' AND whole_at_seq = request_seq \
           AND observed_generation = generation AND paused_at IS NULL \
           AND deletion_requested_at IS NULL AND lease_token IS NULL \
         ORDER BY name"
    );
    let rows = sqlx::query_as(&sql).bind(cell).fetch_all(&mut *tx).await?;
    tx.commit().await?;
    Ok((rows, now))
}

/// Makes a full pass due at once for a tenant the round found drifted, with a
/// `drift.found` event saying what differs. Nothing happens if the tenant changed since the
/// round read it (`since`): a pass ran, or someone asked for something, and what the round
/// saw may be older than that.
pub async fn mark_drifted(
    pool: &PgPool,
    whole: &Whole,
    since: DateTime<Utc>,
    actor: &str,
    found: &[String],
) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let marked: Option<String> = sqlx::query_scalar(
        "UPDATE tenants SET whole_at_seq = NULL, next_attempt_at = now() \
         WHERE id = $1 AND request_seq = $2 AND whole_at_seq = $2 AND lease_token IS NULL \
           AND updated_at < $3 AND paused_at IS NULL \
         RETURNING name",
    )
    .bind(whole.tenant.id)
    .bind(whole.request_seq)
    .bind(since)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(name) = marked else {
        return Ok(false);
    };
    let message = format!("the resync found drift: {}", found.join("; "));
    super::events::append(
        &mut tx,
        &whole.tenant,
        super::events::NewEvent {
            actor,
            action: "drift.found",
            message,
            details: serde_json::json!({ "found": found }),
        },
    )
    .await?;
    super::tenants::notify_changed(&mut tx, &name).await?;
    tx.commit().await?;
    Ok(true)
}
