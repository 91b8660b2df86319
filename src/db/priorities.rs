//! Listener rule priorities. The table's primary key makes an allocation unique: two
//! workers racing for one priority cannot both insert it, and the loser takes the next.

use sqlx::PgPool;
use uuid::Uuid;

/// ALB's range of rule priorities.
const MAX_PRIORITY: i32 = 50_000;
/// Races lost in a row before giving up (each loss means another tenant got a priority).
const MAX_RACES: usize = 64;

/// The tenant's priority in `cell`: the one it has unless a rule that statehouse does not
/// know holds it (`in_use`), else `preferred` (a rule found on the listener) if free, else
/// the lowest free one.
pub async fn allocate(
    pool: &PgPool,
    cell: &str,
    tenant_id: Uuid,
    preferred: Option<i32>,
    in_use: &[i32],
) -> Result<i32, sqlx::Error> {
    let held: Option<(String, i32)> =
        sqlx::query_as("SELECT cell, priority FROM rule_priorities WHERE tenant_id = $1")
            .bind(tenant_id)
            .fetch_optional(pool)
            .await?;
    match held {
        Some((c, p)) if c == cell && !in_use.contains(&p) => return Ok(p),
        // Taken on the listener by a rule statehouse does not know, or held in another cell.
        Some(_) => {
            sqlx::query("DELETE FROM rule_priorities WHERE tenant_id = $1")
                .bind(tenant_id)
                .execute(pool)
                .await?;
        }
        None => {}
    }
    if let Some(p) = preferred.filter(|p| !in_use.contains(p)) {
        if try_insert(pool, cell, tenant_id, p).await? {
            return Ok(p);
        }
    }
    for _ in 0..MAX_RACES {
        let free: Option<i32> = sqlx::query_scalar(
            "SELECT p FROM generate_series(1, $2) p \
             WHERE NOT EXISTS (SELECT 1 FROM rule_priorities r WHERE r.cell = $1 AND r.priority = p) \
               AND p <> ALL($3) \
             ORDER BY p LIMIT 1",
        )
        .bind(cell)
        .bind(MAX_PRIORITY)
        .bind(in_use)
        .fetch_optional(pool)
        .await?;
        let Some(p) = free else {
            return Err(sqlx::Error::Protocol(format!(
                "no listener rule priority is free in cell {cell}"
            )));
        };
        if try_insert(pool, cell, tenant_id, p).await? {
            return Ok(p);
        }
    }
    Err(sqlx::Error::Protocol(format!(
        "lost {MAX_RACES} races for a rule priority in cell {cell}"
    )))
}

async fn try_insert(
    pool: &PgPool,
    cell: &str,
    tenant_id: Uuid,
    p: i32,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO rule_priorities (cell, priority, tenant_id) VALUES ($1, $2, $3) \
         ON CONFLICT (cell, priority) DO NOTHING",
    )
    .bind(cell)
    .bind(p)
    .bind(tenant_id)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}
