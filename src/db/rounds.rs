//! Periodic work one worker does for everyone, such as a cell's health round: the worker
//! that moves a round's next time forward does it, the others skip it until then.

use std::time::Duration;

use sqlx::PgPool;

/// Takes the round if it is due: `true` for the one worker that moves its next time
/// forward by `interval`, `false` for everyone else until then.
pub async fn claim(
    pool: &PgPool,
    round: &str,
    owner: &str,
    interval: Duration,
) -> Result<bool, sqlx::Error> {
    let claimed: Option<String> = sqlx::query_scalar(
        "INSERT INTO worker_rounds (round, next_at, owner) \
         VALUES ($1, now() + make_interval(secs => $3), $2) \
         ON CONFLICT (round) DO UPDATE SET next_at = EXCLUDED.next_at, owner = EXCLUDED.owner \
           WHERE worker_rounds.next_at <= now() \
         RETURNING round",
    )
    .bind(round)
    .bind(owner)
    .bind(interval.as_secs_f64())
    .fetch_optional(pool)
    .await?;
    Ok(claimed.is_some())
}
