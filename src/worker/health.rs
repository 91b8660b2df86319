//! The health observer: every `health_interval`, one worker per cell reads the health of
//! the cell's tenants from AWS in one batched round and records each snapshot, with an
//! event when a tenant's health changes. It never takes a tenant's lease and never changes
//! anything in AWS; a tenant that is paused gets no AWS call, as everywhere else.

use std::{sync::Arc, time::Duration};

use chrono::Utc;

use super::Worker;
use crate::{
    aws::{Aws, CallScope},
    db,
    domain::tenant::{Tenant, TenantStatus},
    health::{self, observe, Health},
    metrics::Metrics,
    reconcile::platform::Platform,
};

/// What one round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoundReport {
    /// Tenants whose health was read from AWS.
    pub observed: usize,
    /// Tenants recorded as `unknown` without a call (paused, not provisioned, deleting).
    pub skipped: usize,
    /// Tenants whose observation failed.
    pub failed: usize,
    pub aws_calls: u64,
    /// The events written: `health.down`, `health.degraded`, `health.recovered`.
    pub transitions: Vec<(String, &'static str)>,
}

pub(super) async fn run(worker: Arc<Worker>) {
    let interval = worker.settings.health_interval;
    let tick = (interval / 4).clamp(Duration::from_millis(200), Duration::from_secs(5));
    let cells: Vec<String> = worker
        .platform
        .cells
        .iter()
        .map(|c| c.name.clone())
        .collect();
    loop {
        for cell in &cells {
            if !worker
                .claim_round(&format!("health:{cell}"), interval)
                .await
            {
                continue;
            }
            let aws = worker.aws_for(cell);
            match observe_cell(&worker.pool, aws, &worker.platform, cell, &worker.metrics).await {
                Ok(r) => tracing::debug!(
                    cell = %cell, observed = r.observed, failed = r.failed,
                    aws_calls = r.aws_calls, "health round finished"
                ),
                Err(e) => tracing::warn!(cell = %cell, error = %e, "health round failed"),
            }
        }
        tokio::time::sleep(tick).await;
    }
}

/// Why a tenant is not read from AWS this round, if it is not.
fn not_observed(t: &Tenant) -> Option<String> {
    if t.paused_at.is_some() {
        return Some("paused: statehouse makes no AWS call for it".into());
    }
    if t.deletion_requested_at.is_some() {
        return Some("being deleted".into());
    }
    match t.status {
        TenantStatus::Ready | TenantStatus::Updating | TenantStatus::Failed => None,
        s => Some(format!("not provisioned yet ({})", s.as_str())),
    }
}

/// Observes every live tenant of `cell` once and records the snapshots.
pub async fn observe_cell(
    pool: &sqlx::PgPool,
    aws: &Aws,
    platform: &Platform,
    cell: &str,
    metrics: &Metrics,
) -> Result<RoundReport, sqlx::Error> {
    let tenants = db::health::in_cell(pool, cell).await?;
    let mut report = RoundReport::default();
    let mut watched = Vec::new();
    let mut subjects = Vec::new();
    for t in &tenants {
        let skip = not_observed(t).map(Err).unwrap_or_else(|| {
            observe::Subject::from_resources(&t.name, &t.resources)
                .map_err(|missing| format!("not provisioned yet: {missing}"))
        });
        match skip {
            Ok(subject) => {
                watched.push(t);
                subjects.push(subject);
            }
            Err(reason) => {
                report.skipped += 1;
                // Written only when it says something new; most rounds it does not.
                let next = Health::unknown(reason, Some(&t.health));
                if next != t.health {
                    db::health::record(pool, t.id, |before| {
                        Health::unknown(next.reason, Some(before))
                    })
                    .await?;
                }
            }
        }
    }
    let scope = Arc::new(CallScope::background());
    let prefix = format!("{}-", platform.prefix.as_str());
    let results = CallScope::run(scope.clone(), observe::round(aws, &subjects, &prefix)).await;
    report.aws_calls = scope.calls();
    let at = Utc::now();
    for ((tenant, subject), result) in watched.into_iter().zip(&subjects).zip(results) {
        let outcome = match &result {
            Ok(_) => "observed",
            Err(_) => "failed",
        };
        metrics.health_observed(outcome);
        let next = |before: &Health| match result {
            Ok(o) => health::snapshot(o, subject.target_group(), at, before),
            Err(reason) => {
                Health::unknown(format!("the observation failed: {reason}"), Some(before))
            }
        };
        if let Some(action) = db::health::record(pool, tenant.id, next).await? {
            metrics.health_transition(action);
            report.transitions.push((tenant.name.clone(), action));
        }
        if outcome == "observed" {
            report.observed += 1;
        } else {
            report.failed += 1;
        }
    }
    Ok(report)
}
