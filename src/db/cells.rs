//! Placement of new tenants in cells: each cell is one shared load balancer and cluster,
//! and holds at most its capacity of live tenants (one target group each).
//!
//! A create picks a cell from the committed counts without any lock, inserts the tenant
//! there, and only just before committing takes that one cell's lock and counts again. The
//! lock is held for the count and the commit, so creates into one cell queue for a moment
//! each instead of for each other's whole transaction, and creates into different cells
//! never wait for each other. One cell's lock at a time means no deadlock.

use sqlx::PgConnection;

/// A cell new tenants may be placed in, and how many live tenants it may hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellCapacity {
    pub name: String,
    pub capacity: u32,
    /// Only these states are placed in the cell; empty: any state.
    pub reserved_for: Vec<crate::domain::state::StateSlug>,
}

impl CellCapacity {
    /// Whether `state` may be placed here.
    pub fn takes(&self, state: crate::domain::state::StateSlug) -> bool {
        self.reserved_for.is_empty() || self.reserved_for.contains(&state)
    }
}

/// The first cell, in configured order, that the committed counts show with room; `None`
/// when every cell is full. Concurrent creates may all pick the same cell: [`confirm`]
/// settles which of them fit.
pub async fn with_room<'c>(
    conn: &mut PgConnection,
    cells: &'c [CellCapacity],
) -> Result<Option<&'c CellCapacity>, sqlx::Error> {
    let names: Vec<&str> = cells.iter().map(|c| c.name.as_str()).collect();
    let counts: Vec<(String, i64)> = sqlx::query_as(
        "SELECT cell, count(*) FROM tenants WHERE status <> 'deleted' AND cell = ANY($1) \
         GROUP BY cell",
    )
    .bind(&names)
    .fetch_all(conn)
    .await?;
    let live = |name: &str| {
        counts
            .iter()
            .find(|(cell, _)| cell == name)
            .map_or(0, |(_, n)| *n)
    };
    Ok(cells.iter().find(|c| live(&c.name) < i64::from(c.capacity)))
}

/// Takes `cell`'s placement lock for the rest of the transaction and counts its live
/// tenants, this transaction's own new one included: `false` when it no longer fits, and
/// the transaction must be rolled back. Call it last before the commit.
pub async fn confirm(conn: &mut PgConnection, cell: &CellCapacity) -> Result<bool, sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('statehouse-cell:' || $1, 0))")
        .bind(&cell.name)
        .execute(&mut *conn)
        .await?;
    // A new statement sees every placement committed while this one waited for the lock.
    let live: i64 =
        sqlx::query_scalar("SELECT count(*) FROM tenants WHERE status <> 'deleted' AND cell = $1")
            .bind(&cell.name)
            .fetch_one(conn)
            .await?;
    Ok(live <= i64::from(cell.capacity))
}
