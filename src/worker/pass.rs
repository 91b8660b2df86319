//! One claimed tenant: run the pass under a heartbeat, then release it with its outcome.

use std::{sync::Arc, time::Duration};

use chrono::Utc;
use rand::Rng;
use serde_json::json;

use super::{PassReport, Worker};
use crate::{
    aws::{CallScope, Retry},
    db::leases::{self, Claimed, LeaseError, Release},
    domain::{
        spec::TenantSpec,
        state::StateSlug,
        tenant::{DataPolicy, TenantStatus},
    },
    reconcile::{
        progress::Progress,
        tenant::{Applied, Data, Pass, PassError},
    },
};

/// How soon a tenant whose deployment is still rolling out is looked at again.
const DEPLOYING_RECHECK: Duration = Duration::from_secs(2);

enum Outcome {
    Ready,
    Deploying(String),
    Deleted,
    Failed(PassError),
}

pub(super) async fn run(worker: Arc<Worker>, claimed: Claimed) {
    let started = std::time::Instant::now();
    let started_at = Utc::now();
    let scope = Arc::new(CallScope::default());
    let heartbeat = heartbeat(worker.clone(), &claimed);
    let progress = Progress::new(
        worker.pool.clone(),
        claimed.tenant.clone(),
        claimed.token,
        claimed.request_seq,
        actor(&worker),
    );
    let outcome = tokio::select! {
        outcome = CallScope::run(scope.clone(), Box::pin(body(&worker, &claimed, &progress))) => outcome,
        lost = heartbeat => Outcome::Failed(PassError::Lease(lost)),
    };
    let label = finish(&worker, &claimed, &progress, outcome).await;
    worker.metrics.reconciled(label, started.elapsed());
    if let Some(observer) = &worker.observer {
        let first_call_after = scope.first_call().and_then(|first| {
            let at = started_at + chrono::Duration::from_std(first - started).ok()?;
            (at - claimed.requested_at).to_std().ok()
        });
        observer(&PassReport {
            tenant: claimed.tenant.name.clone(),
            outcome: label,
            aws_calls: scope.calls(),
            mutating_calls: scope.mutating(),
            first_call_after,
            elapsed: started.elapsed(),
        });
    }
    tracing::debug!(
        tenant = %claimed.tenant.name,
        outcome = label,
        aws_calls = scope.calls(),
        mutating_calls = scope.mutating(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "pass finished"
    );
}

/// Extends the lease every third of its time; resolves only when the lease is lost.
async fn heartbeat(worker: Arc<Worker>, claimed: &Claimed) -> LeaseError {
    let every = worker.settings.lease_ttl / 3;
    loop {
        tokio::time::sleep(every).await;
        match leases::heartbeat(
            &worker.pool,
            claimed.tenant.id,
            claimed.token,
            worker.settings.lease_ttl,
        )
        .await
        {
            Ok(()) => {}
            Err(LeaseError::Fenced) => return LeaseError::Fenced,
            // The database being briefly away is not a lost lease; the next beat retries.
            Err(e) => tracing::warn!(tenant = %claimed.tenant.name, error = %e, "heartbeat failed"),
        }
    }
}

fn actor(worker: &Worker) -> String {
    format!("worker:{}", worker.id)
}

async fn body(worker: &Worker, claimed: &Claimed, progress: &Progress) -> Outcome {
    let tenant = &claimed.tenant;
    let pass = Pass {
        aws: &worker.aws,
        platform: &worker.platform,
        progress,
        rollout_watch: worker.settings.rollout_watch,
    };
    if tenant.deletion_requested_at.is_some() {
        let data = match tenant.data_policy {
            Some(DataPolicy::Purge) => Data::Purge,
            _ => Data::Retain,
        };
        let result = async {
            pass.working(TenantStatus::Deleting, "removing resources".into())
                .await?;
            pass.delete(data).await
        };
        return match result.await {
            Ok(()) => Outcome::Deleted,
            Err(e) => Outcome::Failed(e),
        };
    }
    let spec = match TenantSpec::validate(tenant.spec.clone(), None) {
        Ok(spec) => spec,
        Err(e) => return Outcome::Failed(PassError::InvalidSpec(format!("{e:?}"))),
    };
    let status = working_status(tenant.status);
    // Showing the status needs no AWS call, so it goes alongside the first ones instead of
    // delaying them.
    let announce = async {
        if status != tenant.status {
            pass.progress
                .event(
                    &format!("tenant.{}", status.as_str()),
                    &format!("{} generation {}", status.as_str(), tenant.generation),
                    json!({}),
                )
                .await?;
        }
        pass.working(
            status,
            format!("reconciling generation {}", tenant.generation),
        )
        .await
    };
    let result = async {
        let (announced, applied) = tokio::join!(announce, pass.apply(&spec));
        announced?;
        applied
    };
    match result.await {
        Ok(Applied::Ready) => Outcome::Ready,
        Ok(Applied::Deploying(m)) => Outcome::Deploying(m),
        Err(e) => Outcome::Failed(e),
    }
}

/// A pending tenant is now being provisioned; every other status stays as the API set it
/// until the pass ends.
fn working_status(status: TenantStatus) -> TenantStatus {
    match status {
        TenantStatus::Pending => TenantStatus::Provisioning,
        other => other,
    }
}

/// Writes the outcome and ends the lease; returns the metrics label.
async fn finish(
    worker: &Worker,
    claimed: &Claimed,
    progress: &Progress,
    outcome: Outcome,
) -> &'static str {
    let written = match outcome {
        Outcome::Deleted => finish_deleted(worker, claimed, progress)
            .await
            .map(|()| "deleted"),
        Outcome::Ready => finish_ready(worker, claimed, progress)
            .await
            .map(|()| "ready"),
        Outcome::Deploying(progress) => release(
            worker,
            claimed,
            Release {
                status: working_status(claimed.tenant.status),
                observed_generation: None,
                endpoint: claimed.tenant.endpoint.as_deref(),
                last_error: None,
                next_attempt_in: Some(DEPLOYING_RECHECK),
                attempts: 0,
                failing_since: None,
            },
        )
        .await
        .map(|()| {
            tracing::debug!(tenant = %claimed.tenant.name, %progress, "deployment in progress");
            "deploying"
        }),
        Outcome::Failed(PassError::Lease(LeaseError::Fenced)) => Err(LeaseError::Fenced),
        Outcome::Failed(e) => finish_failed(worker, claimed, progress, e).await,
    };
    match written {
        Ok(label) => label,
        Err(LeaseError::Fenced) => {
            tracing::warn!(tenant = %claimed.tenant.name, "lease lost to another worker; its writes were refused");
            "lost"
        }
        Err(LeaseError::Db(e)) => {
            // The lease expires by itself and another pass picks the tenant up.
            tracing::warn!(tenant = %claimed.tenant.name, error = %e, "cannot record the outcome");
            "lost"
        }
    }
}

async fn release(worker: &Worker, claimed: &Claimed, r: Release<'_>) -> Result<(), LeaseError> {
    leases::release(&worker.pool, claimed, r).await
}

fn jittered(d: Duration) -> Duration {
    // ±10%, so tenants created together do not resync together forever.
    d.mul_f64(rand::rng().random_range(0.9..1.1))
}

async fn finish_ready(
    worker: &Worker,
    claimed: &Claimed,
    progress: &Progress,
) -> Result<(), LeaseError> {
    let tenant = &claimed.tenant;
    let endpoint = StateSlug::parse(&tenant.name)
        .map(|s| worker.platform.endpoint(s))
        .ok();
    let became_ready =
        tenant.status != TenantStatus::Ready || tenant.observed_generation != tenant.generation;
    progress
        .condition(
            "Ready",
            (
                "True",
                "Ready",
                format!("generation {} is deployed", tenant.generation),
            ),
            None,
        )
        .await?;
    if became_ready {
        progress
            .event(
                "tenant.ready",
                &format!(
                    "generation {} is ready at {}",
                    tenant.generation,
                    endpoint.as_deref().unwrap_or("")
                ),
                json!({ "endpoint": endpoint }),
            )
            .await?;
        let waited = (Utc::now() - claimed.requested_at)
            .to_std()
            .unwrap_or_default();
        worker.metrics.ready_after(waited);
    }
    release(
        worker,
        claimed,
        Release {
            status: TenantStatus::Ready,
            observed_generation: Some(tenant.generation),
            endpoint: endpoint.as_deref(),
            last_error: None,
            next_attempt_in: Some(jittered(worker.settings.resync_interval)),
            attempts: 0,
            failing_since: None,
        },
    )
    .await
}

async fn finish_deleted(
    worker: &Worker,
    claimed: &Claimed,
    progress: &Progress,
) -> Result<(), LeaseError> {
    progress
        .condition(
            "Ready",
            ("False", "Deleted", "every resource is verified gone".into()),
            None,
        )
        .await?;
    progress
        .event(
            "tenant.deleted",
            "every resource is verified gone",
            json!({ "resources": progress.resources().await }),
        )
        .await?;
    leases::finish_deletion(&worker.pool, claimed).await
}

/// Transient errors back off and retry, showing `failed` only once they have lasted past
/// the retry budget; a permanent error fails at once and waits for a new spec (or a
/// reconcile request). A deletion never shows `failed`: it stays `deleting` and retries.
async fn finish_failed(
    worker: &Worker,
    claimed: &Claimed,
    progress: &Progress,
    e: PassError,
) -> Result<&'static str, LeaseError> {
    let tenant = &claimed.tenant;
    let s = &worker.settings;
    let transient = match &e {
        PassError::Aws { err, .. } => err.retry == Retry::Transient,
        PassError::Db(_) | PassError::Lease(_) => true,
        PassError::InvalidSpec(_) | PassError::UnknownCell(_) | PassError::Rollout(_) => false,
    };
    let attempts = claimed.attempts.saturating_add(1);
    let failing_since = claimed.failing_since.unwrap_or_else(Utc::now);
    let failing_for = (Utc::now() - failing_since).to_std().unwrap_or_default();
    let deleting = tenant.deletion_requested_at.is_some();
    let give_up = !deleting && (!transient || failing_for > s.retry_budget);
    let backoff = jittered(
        s.backoff_base
            .saturating_mul(2u32.saturating_pow(attempts.clamp(1, 20) as u32 - 1))
            .min(s.backoff_max),
    );
    let next = match (&e, transient) {
        (_, true) => Some(backoff),
        // The circuit breaker or a stuck rollout: look again at the resync pace.
        (PassError::Rollout(_), false) => Some(s.resync_interval),
        _ if deleting => Some(s.backoff_max),
        _ => None,
    };
    let status = if give_up {
        TenantStatus::Failed
    } else {
        working_status(tenant.status)
    };
    let message = e.to_string();
    let reason = if give_up {
        "Failed"
    } else {
        "RetryingAfterError"
    };
    progress
        .condition("Ready", ("False", reason, message.clone()), Some(status))
        .await?;
    if give_up && tenant.status != TenantStatus::Failed {
        let why = if transient {
            "retry budget spent"
        } else {
            "permanent error"
        };
        progress
            .event(
                "tenant.failed",
                &format!("{why}: {message}"),
                json!({ "attempts": attempts }),
            )
            .await?;
    }
    release(
        worker,
        claimed,
        Release {
            status,
            observed_generation: None,
            endpoint: tenant.endpoint.as_deref(),
            last_error: Some(&message),
            next_attempt_in: next,
            attempts,
            failing_since: Some(failing_since),
        },
    )
    .await?;
    Ok(if give_up { "failed" } else { "retrying" })
}
