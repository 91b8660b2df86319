//! The resync round: every `resync_interval`, one worker per cell compares each whole
//! tenant of the cell with AWS, read in batched calls (`reconcile::resync`), and makes a
//! full pass due at once for each one found drifted. It never takes a tenant's lease and
//! never changes anything in AWS; a tenant found whole costs no call of its own and writes
//! nothing.

use std::{sync::Arc, time::Duration};

use super::Worker;
use crate::{
    aws::{Aws, AwsError, CallScope},
    db,
    domain::{spec::TenantSpec, state::StateSlug},
    metrics::Metrics,
    reconcile::{
        plan::Plan,
        platform::{Cell, Platform},
        resync::{self, Recorded, TaskDefinitions},
        role,
    },
};

/// What one round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoundReport {
    /// Whole tenants compared with AWS.
    pub compared: usize,
    /// The tenants found drifted and made due, with what differs.
    pub drifted: Vec<(String, Vec<String>)>,
    pub aws_calls: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum RoundError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error("cell `{0}` is not configured on this worker")]
    UnknownCell(String),
}

pub(super) async fn run(worker: Arc<Worker>) {
    let interval = worker.settings.resync_interval;
    // Often enough for whichever of the two rounds comes more often.
    let tick = (interval.min(worker.settings.deep_resync_interval) / 4)
        .clamp(Duration::from_millis(200), Duration::from_secs(5));
    let task_definitions = TaskDefinitions::default();
    let cells: Vec<String> = worker
        .platform
        .cells
        .iter()
        .map(|c| c.name.clone())
        .collect();
    // IAM is per account: each account's roles are read in one round, by one worker.
    let mut accounts: Vec<&Cell> = Vec::new();
    for cell in &worker.platform.cells {
        if !accounts.iter().any(|c| c.account == cell.account) {
            accounts.push(cell);
        }
    }
    let deep = worker.settings.deep_resync_interval;
    let actor = format!("worker:{}", worker.id);
    loop {
        for first in &accounts {
            if !worker
                .claim_round(&format!("iam:{}", first.account), deep)
                .await
            {
                continue;
            }
            let cells: Vec<&Cell> = worker
                .platform
                .cells
                .iter()
                .filter(|c| c.account == first.account)
                .collect();
            let aws = worker.aws_for(&first.name);
            let report = roles_of_account(
                &worker.pool,
                aws,
                &worker.platform,
                &cells,
                &worker.metrics,
                &actor,
            )
            .await;
            log(&format!("role check of account {}", first.account), report);
        }
        for cell in &cells {
            if !worker
                .claim_round(&format!("resync:{cell}"), interval)
                .await
            {
                continue;
            }
            let aws = worker.aws_for(cell);
            let report = resync_cell(
                &worker.pool,
                aws,
                &worker.platform,
                cell,
                &task_definitions,
                &worker.metrics,
                &actor,
            )
            .await;
            log(&format!("resync round of cell {cell}"), report);
        }
        tokio::time::sleep(tick).await;
    }
}

fn log(what: &str, report: Result<RoundReport, RoundError>) {
    match report {
        Ok(r) => tracing::debug!(
            compared = r.compared,
            drifted = r.drifted.len(),
            aws_calls = r.aws_calls,
            "{what} finished"
        ),
        Err(e) => tracing::warn!(error = %e, "{what} failed"),
    }
}

/// Compares every whole tenant of `cell` with AWS once, and marks the drifted ones due.
pub async fn resync_cell(
    pool: &sqlx::PgPool,
    aws: &Aws,
    platform: &Platform,
    cell_name: &str,
    task_definitions: &TaskDefinitions,
    metrics: &Metrics,
    actor: &str,
) -> Result<RoundReport, RoundError> {
    let cell = platform
        .cell(cell_name)
        .ok_or_else(|| RoundError::UnknownCell(cell_name.to_owned()))?;
    let (whole, read_at) = db::resync::whole_in_cell(pool, cell_name).await?;
    // A row a pass could not have written (a hand edit) is left to the pass it will get.
    let subjects: Vec<(&db::resync::Whole, TenantSpec, StateSlug, Recorded)> = whole
        .iter()
        .filter_map(|w| {
            let spec = TenantSpec::validate(w.tenant.spec.clone(), None).ok()?;
            let slug = StateSlug::parse(&w.tenant.name).ok()?;
            let recorded = Recorded::from_resources(&w.tenant.resources)?;
            Some((w, spec, slug, recorded))
        })
        .collect();
    let plans: Vec<(Plan<'_>, Recorded)> = subjects
        .iter()
        .map(|(w, spec, slug, recorded)| {
            (
                Plan::new(platform, cell, spec, *slug, w.tenant.id),
                recorded.clone(),
            )
        })
        .collect();
    let mut report = RoundReport {
        compared: plans.len(),
        ..RoundReport::default()
    };
    if plans.is_empty() {
        return Ok(report);
    }
    let scope = Arc::new(CallScope::background());
    // Boxed: it holds every batched call's SDK future at once.
    let observed = CallScope::run(
        scope.clone(),
        Box::pin(resync::observe(
            aws,
            cell,
            platform.prefix.as_str(),
            &plans,
            task_definitions,
        )),
    )
    .await;
    report.aws_calls = scope.calls();
    let view = match observed {
        Ok(view) => view,
        Err(e) => {
            metrics.resync_round("failed");
            return Err(e.into());
        }
    };
    metrics.resync_round("completed");
    for ((w, ..), (plan, recorded)) in subjects.iter().zip(&plans) {
        let found = resync::drift(&view, plan, recorded, task_definitions);
        if found.is_empty() {
            continue;
        }
        if db::resync::mark_drifted(pool, w, read_at, actor, &found).await? {
            metrics.drift_found();
            tracing::info!(tenant = %w.tenant.name, drift = ?found, "resync found drift; a full pass is due");
            report.drifted.push((w.tenant.name.clone(), found));
        }
    }
    Ok(report)
}

/// The deep check of the roles of every whole tenant in `cells` (all of one account), from
/// one paged GetAccountAuthorizationDetails instead of four calls per tenant: each role's
/// trust, inline and attached policies and tags, compared as a pass compares them; a tenant
/// whose role differs gets a full pass at once, as from a resync round.
pub async fn roles_of_account(
    pool: &sqlx::PgPool,
    aws: &Aws,
    platform: &Platform,
    cells: &[&Cell],
    metrics: &Metrics,
    actor: &str,
) -> Result<RoundReport, RoundError> {
    let mut subjects = Vec::new();
    for cell in cells {
        let (whole, read_at) = db::resync::whole_in_cell(pool, &cell.name).await?;
        for w in whole {
            let Ok(spec) = TenantSpec::validate(w.tenant.spec.clone(), None) else {
                continue;
            };
            let Ok(slug) = StateSlug::parse(&w.tenant.name) else {
                continue;
            };
            subjects.push((*cell, w, spec, slug, read_at));
        }
    }
    let mut report = RoundReport {
        compared: subjects.len(),
        ..RoundReport::default()
    };
    if subjects.is_empty() {
        return Ok(report);
    }
    let scope = Arc::new(CallScope::background());
    let roles = CallScope::run(scope.clone(), role::every_role(&aws.iam)).await;
    report.aws_calls = scope.calls();
    let roles = roles?;
    let by_name: std::collections::HashMap<&str, &aws_sdk_iam::types::RoleDetail> = roles
        .iter()
        .filter_map(|r| Some((r.role_name()?, r)))
        .collect();
    for (cell, w, spec, slug, read_at) in &subjects {
        let plan = Plan::new(platform, cell, spec, *slug, w.tenant.id);
        let wanted = plan.role();
        let found = match by_name.get(wanted.name) {
            None => vec![format!("role {} is missing", wanted.name)],
            Some(detail) => role::observed_in(detail, &wanted).drift(),
        };
        if found.is_empty() {
            continue;
        }
        if db::resync::mark_drifted(pool, w, *read_at, actor, &found).await? {
            metrics.drift_found();
            tracing::info!(tenant = %w.tenant.name, drift = ?found, "the role check found drift; a full pass is due");
            report.drifted.push((w.tenant.name.clone(), found));
        }
    }
    Ok(report)
}
