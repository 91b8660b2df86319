//! Queries, as thin functions over an executor. Postgres is the only shared state.

pub mod cells;
pub mod defaults;
pub mod events;
pub mod health;
pub mod idempotency;
pub mod keys;
pub mod leases;
pub mod priorities;
pub mod resync;
pub mod rollouts;
pub mod rounds;
pub mod sizing;
pub mod tenants;

use std::time::Duration;

use sqlx::{migrate::Migrator, postgres::PgPoolOptions, PgPool};

pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// The channel every desired-state change is announced on; the payload is the tenant name.
pub const TENANT_CHANGED_CHANNEL: &str = "statehouse_tenant_changed";

pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    pool_options(max_connections).connect(url).await
}

/// Fails fast when the database is unreachable, so requests get a 503 instead of hanging.
pub fn pool_options(max_connections: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(3))
}

/// True when every migration this binary knows of has been applied successfully.
pub async fn is_migrated(pool: &PgPool) -> Result<bool, sqlx::Error> {
    let applied: Vec<i64> =
        match sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
            .fetch_all(pool)
            .await
        {
            Ok(versions) => versions,
            // No migrations table at all: nothing has been applied yet.
            Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("42P01") => Vec::new(),
            Err(err) => return Err(err),
        };
    Ok(MIGRATOR.iter().all(|m| applied.contains(&m.version)))
}

/// Errors that mean "the database cannot be reached right now", as opposed to a bad query.
pub fn is_unavailable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // 08: connection exceptions; 53: out of connections, memory or disk; 57P01-57P03: shutdown in progress or not yet accepting.
            code.starts_with("08")
                || code.starts_with("53")
                || matches!(code.as_ref(), "57P01" | "57P02" | "57P03")
        }),
        _ => false,
    }
}

pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}
