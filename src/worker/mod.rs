//! The reconcile loop: claim due tenants with leases, run one pass each (bounded
//! concurrency), release them with when to look again. Woken by NOTIFY for API writes, and
//! by the earliest due time otherwise (backoffs, resyncs, expired leases of dead workers).

pub mod clients;
pub mod health;
mod pass;
pub mod resync;
pub mod rollouts;
pub mod sizing;

use std::{future::Future, sync::Arc, time::Duration};

use sqlx::{postgres::PgListener, PgPool};
use tokio::{sync::Notify, task::JoinSet};

use crate::{
    aws::Aws,
    db::{self, leases},
    metrics::Metrics,
    reconcile::platform::Platform,
};

#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Tenants reconciled at once by this process.
    pub concurrency: usize,
    /// Every cell's whole tenants are compared with AWS this often, in batched calls, and
    /// the drifted ones repaired.
    pub resync_interval: Duration,
    /// Every whole tenant's deep check (the settings no batched call reads) runs this
    /// often, spread over the interval.
    pub deep_resync_interval: Duration,
    pub lease_ttl: Duration,
    /// How long transient errors may go on before the tenant shows `failed`.
    pub retry_budget: Duration,
    /// How long one pass watches a deployment before handing the tenant back.
    pub rollout_watch: Duration,
    /// Backoff after the first failure, doubled per attempt up to `backoff_max`.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// How often each cell's ready tenants are observed for their health.
    pub health_interval: Duration,
    /// How often the health of a rollout's baking tenants is read.
    pub rollout_gate_interval: Duration,
    pub sizing: crate::sizing::SizingSettings,
}

pub struct Worker {
    pub id: String,
    pub pool: PgPool,
    /// Clients with the process's own credentials, in its own region.
    pub aws: Aws,
    /// Clients of the cells in another account or region, by cell (credentials from
    /// AssumeRole, refreshed by the SDK before they expire); every other cell uses `aws`.
    pub cell_aws: std::collections::HashMap<String, Aws>,
    pub platform: Arc<Platform>,
    pub settings: WorkerSettings,
    pub metrics: Arc<Metrics>,
    /// Told about every finished pass (benchmarks and tests read the figures from it).
    pub observer: Option<Observer>,
}

/// What one pass did.
#[derive(Debug, Clone)]
pub struct PassReport {
    pub tenant: String,
    /// `ready`, `deploying`, `deleted`, `retrying`, `failed` or `lost`.
    pub outcome: &'static str,
    /// The pass was a deep check of a whole tenant, not a full pass.
    pub deep_check: bool,
    pub aws_calls: u64,
    pub mutating_calls: u64,
    /// From the API write that made the tenant due to this pass's first AWS call.
    pub first_call_after: Option<Duration>,
    pub elapsed: Duration,
}

pub type Observer = Arc<dyn Fn(&PassReport) + Send + Sync>;

/// Longest idle sleep: how late an expired lease of a dead worker is noticed at worst.
const MAX_IDLE: Duration = Duration::from_secs(5);

impl Worker {
    /// Takes the periodic round `round` if it is due (see `db::rounds`); a database error
    /// is logged and counts as not taken, so the next tick tries again.
    pub(crate) async fn claim_round(&self, round: &str, every: Duration) -> bool {
        match db::rounds::claim(&self.pool, round, &self.id, every).await {
            Ok(claimed) => claimed,
            Err(e) => {
                tracing::warn!(round, error = %e, "cannot claim the round");
                false
            }
        }
    }

    /// The clients that reach `cell`.
    pub fn aws_for(&self, cell: &str) -> &Aws {
        self.cell_aws.get(cell).unwrap_or(&self.aws)
    }

    pub fn new_id() -> String {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "local".into());
        format!(
            "{host}:{}:{}",
            std::process::id(),
            &uuid::Uuid::now_v7().simple().to_string()[24..]
        )
    }

    /// Runs until `shutdown` resolves, then lets the passes under way finish.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let this = Arc::new(self);
        let wake = Arc::new(Notify::new());
        let in_flight = InFlight::default();
        let listener = tokio::spawn(listen(this.pool.clone(), wake.clone(), in_flight.clone()));
        let housekeeping = tokio::spawn(housekeeping(this.pool.clone()));
        let health = tokio::spawn(health::run(this.clone()));
        let rollouts = tokio::spawn(rollouts::run(this.clone()));
        let sizing = tokio::spawn(crate::aws::CallScope::run(
            Arc::new(crate::aws::CallScope::background()),
            sizing::run(this.clone()),
        ));
        let resync = tokio::spawn(resync::run(this.clone()));
        tracing::info!(worker = %this.id, concurrency = this.settings.concurrency, "worker started");
        let mut passes = JoinSet::new();
        // Only the cells this worker has settings for; other cells' workers take the rest.
        let cells: Vec<String> = this.platform.cells.iter().map(|c| c.name.clone()).collect();
        tokio::pin!(shutdown);
        loop {
            let free = this.settings.concurrency.saturating_sub(passes.len());
            let mut claimed_all = false;
            if free > 0 {
                let lease = this.settings.lease_ttl;
                match leases::claim(&this.pool, &this.id, lease, free as i64, &cells).await {
                    Ok(claimed) => {
                        claimed_all = claimed.len() == free;
                        for c in claimed {
                            let poke = in_flight.start(&c.tenant.name);
                            let in_flight = in_flight.clone();
                            let this = this.clone();
                            passes.spawn(async move {
                                let name = c.tenant.name.clone();
                                pass::run(this, c, poke.clone()).await;
                                in_flight.finish(&name, &poke);
                            });
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot claim tenants; retrying"),
                }
            }
            let idle = if claimed_all || free == 0 {
                MAX_IDLE
            } else {
                this.until_next_due(&cells).await
            };
            tokio::select! {
                () = wake.notified() => {}
                Some(_) = passes.join_next(), if !passes.is_empty() => {}
                () = tokio::time::sleep(idle), if !claimed_all => {}
                () = &mut shutdown => break,
            }
        }
        listener.abort();
        housekeeping.abort();
        health.abort();
        rollouts.abort();
        sizing.abort();
        resync.abort();
        tracing::info!(worker = %this.id, in_flight = passes.len(), "worker stopping; finishing passes under way");
        while passes.join_next().await.is_some() {}
        Ok(())
    }

    async fn until_next_due(&self, cells: &[String]) -> Duration {
        match leases::next_due(&self.pool, cells).await {
            Ok(Some(at)) => (at - chrono::Utc::now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .clamp(Duration::from_millis(5), MAX_IDLE),
            Ok(None) => MAX_IDLE,
            Err(_) => Duration::from_secs(1),
        }
    }
}

/// Periodic clean-up that belongs to no tenant: expired idempotency records. Any number of
/// workers may run it; the DELETE is idempotent.
async fn housekeeping(pool: PgPool) {
    let mut every = tokio::time::interval(Duration::from_secs(600));
    loop {
        every.tick().await;
        match db::idempotency::purge_expired(&pool).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, "expired idempotency records deleted"),
            Err(e) => tracing::warn!(error = %e, "cannot purge expired idempotency records"),
        }
    }
}

/// The tenants this worker has a pass under way for, each with a way to make its heartbeat
/// beat at once: when the row changes under a pass (e.g. it was paused, which takes the
/// lease away), the pass learns it now rather than at its next regular beat.
#[derive(Clone, Default)]
struct InFlight(Arc<std::sync::Mutex<std::collections::HashMap<String, Arc<Notify>>>>);

impl InFlight {
    fn start(&self, tenant: &str) -> Arc<Notify> {
        let poke = Arc::new(Notify::new());
        if let Ok(mut map) = self.0.lock() {
            map.insert(tenant.to_owned(), poke.clone());
        }
        poke
    }

    /// Forgets the pass `poke` belongs to, unless a newer pass of the tenant replaced it.
    fn finish(&self, tenant: &str, poke: &Arc<Notify>) {
        if let Ok(mut map) = self.0.lock() {
            if map.get(tenant).is_some_and(|p| Arc::ptr_eq(p, poke)) {
                map.remove(tenant);
            }
        }
    }

    fn poke(&self, tenant: &str) {
        if let Some(poke) = self.0.lock().ok().and_then(|map| map.get(tenant).cloned()) {
            poke.notify_one();
        }
    }
}

/// Turns every NOTIFY on the tenant channel into a wake-up, and pokes the pass under way for
/// that tenant, if any. A lost connection is re-established; a wake is sent after it, in case
/// a notification was missed meanwhile.
async fn listen(pool: PgPool, wake: Arc<Notify>, in_flight: InFlight) {
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot LISTEN; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if let Err(e) = listener.listen(db::TENANT_CHANGED_CHANNEL).await {
            tracing::warn!(error = %e, "cannot LISTEN; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        wake.notify_one();
        loop {
            match listener.try_recv().await {
                Ok(Some(notification)) => {
                    in_flight.poke(notification.payload());
                    wake.notify_one();
                }
                Ok(None) => {
                    wake.notify_one();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "LISTEN connection failed; reconnecting");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    break;
                }
            }
        }
    }
}
