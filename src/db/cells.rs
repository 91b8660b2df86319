//! Placement of new tenants in cells: each cell is one shared load balancer and cluster,
//! and holds at most its capacity of live tenants (one target group each).

use sqlx::PgConnection;

/// A cell new tenants may be placed in, and how many live tenants it may hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellCapacity {
    pub name: String,
    pub capacity: u32,
}

/// Placements wait on each other under this transaction-scoped advisory lock, so two
/// creates cannot both take a cell's last place.
const PLACEMENT_LOCK: i64 = 0x5354_4154_4543_454c;

/// Takes the placement lock for the rest of the transaction.
pub async fn lock(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(PLACEMENT_LOCK)
        .execute(conn)
        .await
        .map(drop)
}

/// The first cell, in configured order, with room for one more tenant; `None` when every
/// cell is full. Call it after [`lock`], in the transaction that inserts the tenant.
pub async fn with_room(
    conn: &mut PgConnection,
    cells: &[CellCapacity],
) -> Result<Option<String>, sqlx::Error> {
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
    Ok(cells
        .iter()
        .find(|c| live(&c.name) < i64::from(c.capacity))
        .map(|c| c.name.clone()))
}
