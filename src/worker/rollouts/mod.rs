//! The rollout controller. Level-triggered on Postgres like the tenant reconciler: it
//! claims active rollouts with a lease, reads each one's tenants as they are now, decides
//! the next step ([`decide`]) and commits it in one transaction that holds the rollout's
//! row and checks nobody changed the rollout meanwhile. It writes desired state only: a
//! tenant's new spec, with a compare-and-set on its generation, its event and a NOTIFY;
//! the reconciler does the AWS work as for any PATCH. It wakes on every change to a
//! rollout or a tenant, and otherwise when a bake ends, a deadline passes or the health of
//! baking tenants is due to be read again.

mod apply;
pub mod decide;

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use chrono::{TimeDelta, Utc};
use sqlx::{postgres::PgListener, PgPool};
use tokio::sync::Notify;
use uuid::Uuid;

use super::Worker;
use crate::{
    aws::CallScope,
    db::{
        self,
        rollouts::{Claimed, Rollout, Target},
    },
    domain::{rollout::TargetState, tenant::Tenant},
    health::{self, observe},
};
use decide::{Reading, View};

/// Longest idle sleep between looks for due rollouts.
const MAX_IDLE: Duration = Duration::from_secs(5);
const LEASE_TTL: Duration = Duration::from_secs(30);
/// Rollouts stepped per claim.
const CLAIM_LIMIT: i64 = 8;

pub(super) async fn run(worker: Arc<Worker>) {
    let wake = Arc::new(Notify::new());
    let woken = Arc::new(AtomicBool::new(true));
    let listener = tokio::spawn(listen(worker.pool.clone(), wake.clone(), woken.clone()));
    loop {
        let all = woken.swap(false, Ordering::SeqCst);
        match db::rollouts::claim(&worker.pool, &worker.id, LEASE_TTL, CLAIM_LIMIT, all).await {
            Ok(claimed) => {
                for c in claimed {
                    if let Err(e) = step(&worker, &c).await {
                        tracing::warn!(rollout = %c.id, error = %e, "rollout step failed; it is tried again");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot claim rollouts; retrying"),
        }
        let idle = match db::rollouts::next_due(&worker.pool).await {
            Ok(Some(at)) => (at - Utc::now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .clamp(Duration::from_millis(5), MAX_IDLE),
            Ok(None) => MAX_IDLE,
            Err(_) => Duration::from_secs(1),
        };
        tokio::select! {
            () = wake.notified() => {}
            () = tokio::time::sleep(idle) => {}
        }
        if listener.is_finished() {
            break;
        }
    }
}

/// Every change to a rollout (the API's word) or to a tenant row (a tenant got ready,
/// failed, or was changed by someone) may let a rollout move: wake up and look at all.
async fn listen(pool: PgPool, wake: Arc<Notify>, woken: Arc<AtomicBool>) {
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "rollouts cannot LISTEN; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let channels = [
            db::rollouts::ROLLOUT_CHANGED_CHANNEL,
            db::tenants::TENANT_ROWS_CHANNEL,
        ];
        if let Err(e) = listener.listen_all(channels).await {
            tracing::warn!(error = %e, "rollouts cannot LISTEN; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        loop {
            woken.store(true, Ordering::SeqCst);
            wake.notify_one();
            if let Err(e) = listener.try_recv().await {
                tracing::warn!(error = %e, "rollouts' LISTEN connection failed; reconnecting");
                tokio::time::sleep(Duration::from_millis(500)).await;
                break;
            }
        }
    }
}

/// One step of one claimed rollout, then its release with when to look again.
async fn step(worker: &Worker, claimed: &Claimed) -> Result<(), sqlx::Error> {
    let mut conn = worker.pool.acquire().await?;
    let Some(rollout) = db::rollouts::get(&mut conn, claimed.id).await? else {
        return Ok(());
    };
    drop(conn);
    let targets = rollout.tenants.clone().unwrap_or_default();
    let ids: Vec<Uuid> = targets.iter().map(|t| t.tenant_id).collect();
    let tenants: HashMap<Uuid, Tenant> = db::tenants::by_ids(&worker.pool, &ids)
        .await?
        .into_iter()
        .map(|t| (t.id, t))
        .collect();
    let now = Utc::now();
    let gate_interval = TimeDelta::from_std(worker.settings.rollout_gate_interval)
        .unwrap_or(TimeDelta::seconds(15));
    let readings = if gates_due(&rollout, &targets, now, gate_interval) {
        Some(read_gates(worker, &rollout, &targets, &tenants).await?)
    } else {
        None
    };
    let empty = HashMap::new();
    let view = View {
        rollout: &rollout,
        targets: &targets,
        tenants: &tenants,
        readings: readings.as_ref().unwrap_or(&empty),
        now,
        gate_interval,
    };
    let decision = decide::decide(&view);
    let gates_checked = readings.is_some().then_some(now);
    let mut next_check = decision.next_check;
    if targets.iter().any(|t| t.state == TargetState::Baking)
        || decision.actions.iter().any(
            |a| matches!(a, decide::Action::Mark(_, c, _) if c.state == Some(TargetState::Baking)),
        )
    {
        let last = gates_checked.or(rollout.gates_checked_at).unwrap_or(now);
        next_check = next_check.min(last + gate_interval);
    }
    let mut version = rollout.version;
    if !decision.actions.is_empty() || gates_checked.is_some() {
        match apply::commit(
            worker,
            claimed,
            &rollout,
            &targets,
            &tenants,
            decision.actions,
            gates_checked,
        )
        .await?
        {
            Some(after) => version = after,
            // Someone changed the rollout meanwhile: look again at once.
            None => next_check = now,
        }
    }
    db::rollouts::release(&worker.pool, claimed, next_check, version).await
}

/// Whether the baking tenants' health is due to be read: on the gate interval, and at
/// the end of each bake.
fn gates_due(
    rollout: &Rollout,
    targets: &[Target],
    now: chrono::DateTime<Utc>,
    every: TimeDelta,
) -> bool {
    let baking: Vec<&Target> = targets
        .iter()
        .filter(|t| t.state == TargetState::Baking)
        .collect();
    if baking.is_empty() {
        return false;
    }
    let interval_due = rollout.gates_checked_at.is_none_or(|at| now >= at + every);
    let bake_over = baking.iter().any(|t| {
        t.bake_ends_at
            .is_some_and(|end| end <= now && rollout.gates_checked_at.is_none_or(|at| at < end))
    });
    interval_due || bake_over
}

/// Reads the baking tenants' health from AWS in one batched round (the health observer's
/// own), records each snapshot on its tenant, and, when the strategy asks for a minimum,
/// the requests each served since it became ready.
async fn read_gates(
    worker: &Worker,
    rollout: &Rollout,
    targets: &[Target],
    tenants: &HashMap<Uuid, Tenant>,
) -> Result<HashMap<Uuid, Reading>, sqlx::Error> {
    let mut subjects = Vec::new();
    let mut baking = Vec::new();
    let mut cells: Vec<&str> = Vec::new();
    // By cell, so that each cell's tenants are read in one round with its own clients.
    let mut ordered: Vec<(&Target, &Tenant)> = targets
        .iter()
        .filter(|t| t.state == TargetState::Baking)
        .filter_map(|t| Some((t, tenants.get(&t.tenant_id)?)))
        .collect();
    ordered.sort_by(|a, b| a.1.cell.cmp(&b.1.cell));
    for (t, tenant) in ordered {
        if let Ok(subject) = observe::Subject::from_resources(&tenant.name, &tenant.resources) {
            subjects.push(subject);
            baking.push(t);
            cells.push(&tenant.cell);
        }
    }
    let scope = Arc::new(CallScope::default());
    let prefix = format!("{}-", worker.platform.prefix.as_str());
    let now = Utc::now();
    let since: Vec<(observe::Subject, chrono::DateTime<Utc>)> = subjects
        .iter()
        .zip(&baking)
        .map(|(s, t)| (s.clone(), t.ready_at.unwrap_or(now)))
        .collect();
    let wants_requests = rollout.strategy.min_requests.is_some();
    let mut observed = Vec::new();
    let mut requests: Option<Vec<f64>> = wants_requests.then(Vec::new);
    let mut start = 0;
    while start < subjects.len() {
        let cell = cells[start];
        let end = start + cells[start..].iter().take_while(|c| **c == cell).count();
        let aws = worker.aws_for(cell);
        let (seen, served) = CallScope::run(scope.clone(), async {
            tokio::join!(observe::round(aws, &subjects[start..end], &prefix), async {
                if wants_requests {
                    observe::requests_since(aws, &since[start..end], now)
                        .await
                        .ok()
                } else {
                    None
                }
            })
        })
        .await;
        observed.extend(seen);
        // A cell whose requests could not be read leaves every count unknown.
        requests = match (requests, served) {
            (Some(mut all), Some(more)) => {
                all.extend(more);
                Some(all)
            }
            _ => None,
        };
        start = end;
    }
    let mut readings = HashMap::new();
    for (i, ((t, subject), result)) in baking.iter().zip(&subjects).zip(observed).enumerate() {
        let Ok(o) = result else {
            // Not readable now: no reading, so no verdict; the next check tries again.
            continue;
        };
        let before = tenants
            .get(&t.tenant_id)
            .map(|x| x.health.clone())
            .unwrap_or_default();
        let snapshot = health::snapshot(o, subject.target_group(), now, &before);
        let recorded = snapshot.clone();
        if let Some(action) = db::health::record(&worker.pool, t.tenant_id, |_| recorded).await? {
            worker.metrics.health_transition(action);
        }
        readings.insert(
            t.tenant_id,
            Reading {
                health: snapshot,
                requests: requests.as_ref().and_then(|r| r.get(i).copied()),
            },
        );
    }
    Ok(readings)
}
