//! One claimed tenant: run the pass under a heartbeat, then release it with its outcome.

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
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

/// Runs one pass for a claimed tenant; `poke` makes the heartbeat check the lease at once.
pub(super) async fn run(worker: Arc<Worker>, claimed: Claimed, poke: Arc<tokio::sync::Notify>) {
    let started = std::time::Instant::now();
    let started_at = Utc::now();
    // A deep check is background work; a full pass answers an API change or a drift.
    let deep = is_deep_check(&claimed);
    let scope = Arc::new(if deep {
        CallScope::background()
    } else {
        CallScope::default()
    });
    scope.hold_lease_until(claimed.claimed_at + worker.settings.lease_ttl);
    let heartbeat = heartbeat(worker.clone(), &claimed, &scope, &poke);
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
    if deep {
        worker.metrics.deep_check(match label {
            "ready" if scope.mutating() > 0 => "repaired",
            "ready" => "whole",
            _ => "failed",
        });
    }
    worker.metrics.reconciled(label, started.elapsed());
    if let Some(observer) = &worker.observer {
        let first_call_after = scope.first_call().and_then(|first| {
            let at = started_at + chrono::Duration::from_std(first - started).ok()?;
            (at - claimed.requested_at).to_std().ok()
        });
        observer(&PassReport {
            tenant: claimed.tenant.name.clone(),
            outcome: label,
            deep_check: deep,
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

/// Extends the lease every third of its time; resolves when the lease is lost, or when
/// renewals have failed for so long that it may have expired: past that point another
/// worker could be reconciling the tenant, so this pass must stop.
///
/// A poke (the tenant's row changed: a new spec, a pause) makes it beat at once, so a pass
/// whose lease was taken away stops before its next AWS call rather than at the next beat.
async fn heartbeat(
    worker: Arc<Worker>,
    claimed: &Claimed,
    scope: &CallScope,
    poke: &tokio::sync::Notify,
) -> LeaseError {
    let ttl = worker.settings.lease_ttl;
    let every = ttl / 3;
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = poke.notified() => {}
        }
        let sent = std::time::Instant::now();
        match leases::heartbeat(
            &worker.pool,
            claimed.tenant.id,
            claimed.token,
            worker.settings.lease_ttl,
        )
        .await
        {
            Ok(()) => scope.hold_lease_until(sent + ttl),
            Err(LeaseError::Fenced) => return LeaseError::Fenced,
            // The database being briefly away is not a lost lease; the next beat retries,
            // unless the lease may run out before it.
            Err(e) => {
                tracing::warn!(tenant = %claimed.tenant.name, error = %e, "heartbeat failed");
                let lapses_before_next_beat = scope
                    .lease_held_until()
                    .is_none_or(|until| std::time::Instant::now() + every >= until);
                if lapses_before_next_beat {
                    return LeaseError::Fenced;
                }
            }
        }
    }
}

fn actor(worker: &Worker) -> String {
    format!("worker:{}", worker.id)
}

async fn body(worker: &Worker, claimed: &Claimed, progress: &Progress) -> Outcome {
    let tenant = &claimed.tenant;
    let pass = Pass {
        aws: worker.aws_for(&tenant.cell),
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
    if is_deep_check(claimed) {
        return match pass.deep_check(&spec).await {
            Ok(()) => Outcome::Ready,
            Err(e) => Outcome::Failed(e),
        };
    }
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

/// A pass is a deep check when the last one found the tenant whole and nothing was asked
/// of it since (no API write, no reconcile request, no drift found by a resync round);
/// every other pass is a full one.
fn is_deep_check(claimed: &Claimed) -> bool {
    let t = &claimed.tenant;
    claimed.whole_at_seq == Some(claimed.request_seq)
        && claimed.attempts == 0
        && t.status == TenantStatus::Ready
        && t.observed_generation == t.generation
        && t.deletion_requested_at.is_none()
}

/// How long until the tenant's next deep check: at its own phase of `interval` (from its
/// id), so the fleet's checks fall evenly over the interval however the tenants were
/// created or the workers restarted; at least half an interval away.
pub(crate) fn next_in_phase(now: DateTime<Utc>, interval: Duration, id: uuid::Uuid) -> Duration {
    let period = interval.as_millis().max(1) as i128;
    // The low 64 bits of a v7 id are random.
    let phase = i128::from(id.as_u128() as u64) % period;
    let earliest = i128::from(now.timestamp_millis()) + period / 2;
    let slots = (earliest - phase + period - 1).div_euclid(period);
    let at = phase + slots * period;
    let wait = at - i128::from(now.timestamp_millis());
    Duration::from_millis(u64::try_from(wait).unwrap_or(0))
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
                whole: false,
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
            if let Err(e) = leases::record_lost(&worker.pool, claimed, &actor(worker)).await {
                tracing::warn!(tenant = %claimed.tenant.name, error = %e, "cannot record the lost lease");
            }
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
            next_attempt_in: Some(next_in_phase(
                Utc::now(),
                worker.settings.deep_resync_interval,
                tenant.id,
            )),
            attempts: 0,
            failing_since: None,
            whole: true,
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
    let transient = match &e {
        PassError::Aws { err, .. } => err.retry == Retry::Transient,
        PassError::Db(_) | PassError::Lease(_) => true,
        PassError::InvalidSpec(_) | PassError::UnknownCell(_) | PassError::Rollout(_) => false,
    };
    let attempts = claimed.attempts.saturating_add(1);
    let failing_since = claimed.failing_since.unwrap_or_else(Utc::now);
    let failing_for = (Utc::now() - failing_since).to_std().unwrap_or_default();
    let Retrying { give_up, next } = retrying(
        &worker.settings,
        Failure {
            transient,
            deleting: tenant.deletion_requested_at.is_some(),
            attempts,
            failing_for,
        },
    );
    let next = next.map(jittered);
    let status = if give_up {
        TenantStatus::Failed
    } else {
        working_status(tenant.status)
    };
    let message = match &e {
        // The cell's account could not be reached at all: say which cell and role.
        PassError::Aws { err, .. } if err.code == "CredentialsUnavailable" => {
            let cell = &tenant.cell;
            let role = worker
                .platform
                .cell(cell)
                .and_then(|c| c.role_arn.as_deref())
                .unwrap_or("(the process's own credentials)");
            format!(
                "cell {cell} cannot be reached: AssumeRole on {role} failed: {}",
                err.message
            )
        }
        _ => e.to_string(),
    };
    let reason = if give_up {
        "Failed"
    } else {
        "RetryingAfterError"
    };
    // The status is written by the release below, together with `last_error`, so no reader
    // ever sees `failed` without the error that caused it.
    progress
        .condition("Ready", ("False", reason, message.clone()), None)
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
            whole: false,
        },
    )
    .await?;
    Ok(if give_up { "failed" } else { "retrying" })
}

struct Failure {
    transient: bool,
    deleting: bool,
    /// Failed passes in a row, this one included.
    attempts: i32,
    failing_for: Duration,
}

#[derive(Debug, PartialEq, Eq)]
struct Retrying {
    /// Show the tenant as `failed`.
    give_up: bool,
    /// When to try again (before jitter); `None` waits for a new spec or a reconcile request.
    next: Option<Duration>,
}

/// The retry policy. Transient errors back off exponentially and show `failed` only once
/// they have lasted past the budget; a permanent error, and a deployment that failed or
/// rolled back, fail at once and wait for a new spec or a reconcile request (pushing the
/// same revision again would only repeat the rollback); a deletion never shows `failed`
/// and keeps retrying.
fn retrying(s: &crate::worker::WorkerSettings, f: Failure) -> Retrying {
    let give_up = !f.deleting && (!f.transient || f.failing_for > s.retry_budget);
    let exponent = u32::try_from(f.attempts.clamp(1, 20) - 1).unwrap_or(0);
    let backoff = s
        .backoff_base
        .saturating_mul(2u32.saturating_pow(exponent))
        .min(s.backoff_max);
    let next = if f.transient {
        Some(backoff)
    } else if f.deleting {
        Some(s.backoff_max)
    } else {
        None
    };
    Retrying { give_up, next }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::WorkerSettings;

    fn settings() -> WorkerSettings {
        WorkerSettings {
            concurrency: 4,
            resync_interval: Duration::from_secs(300),
            lease_ttl: Duration::from_secs(30),
            retry_budget: Duration::from_secs(600),
            rollout_watch: Duration::from_secs(20),
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            health_interval: Duration::from_secs(60),
            rollout_gate_interval: Duration::from_secs(15),
            deep_resync_interval: Duration::from_secs(3600),
            sizing: Default::default(),
        }
    }

    fn failure(transient: bool, attempts: i32, failing_for: u64) -> Failure {
        Failure {
            transient,
            deleting: false,
            attempts,
            failing_for: Duration::from_secs(failing_for),
        }
    }

    #[test]
    fn deep_checks_fall_on_each_tenant_s_own_phase_at_least_half_an_interval_away() {
        let hour = Duration::from_secs(3600);
        let now = Utc::now();
        let ids: Vec<uuid::Uuid> = (0..400).map(|_| uuid::Uuid::now_v7()).collect();
        let mut quarters = [0usize; 4];
        for id in &ids {
            let wait = next_in_phase(now, hour, *id);
            assert!(
                wait >= hour / 2 - Duration::from_millis(1) && wait <= hour * 3 / 2,
                "{wait:?}"
            );
            // The same tenant asked again later lands on the same phase.
            let later = now + chrono::Duration::seconds(1234);
            let again = next_in_phase(later, hour, *id);
            let a = (now + chrono::Duration::from_std(wait).unwrap()).timestamp_millis();
            let b = (later + chrono::Duration::from_std(again).unwrap()).timestamp_millis();
            assert_eq!((b - a).rem_euclid(3_600_000), 0);
            quarters[(a.rem_euclid(3_600_000) / 900_000) as usize] += 1;
        }
        // Tenants made in the same instant spread over the whole interval.
        for q in quarters {
            assert!((60..=140).contains(&q), "{quarters:?}");
        }
    }

    #[test]
    fn transient_errors_back_off_exponentially_up_to_the_cap_without_failing() {
        let s = settings();
        let waits: Vec<_> = [1, 2, 3, 4, 7, 8, 30]
            .map(|n| retrying(&s, failure(true, n, 5)))
            .into_iter()
            .map(|r| {
                assert!(!r.give_up);
                r.next.unwrap().as_secs()
            })
            .collect();
        assert_eq!(waits, [1, 2, 4, 8, 60, 60, 60]);
    }

    #[test]
    fn transient_errors_fail_the_tenant_only_once_the_budget_is_spent_and_keep_retrying() {
        let r = retrying(&settings(), failure(true, 40, 601));
        assert_eq!(
            r,
            Retrying {
                give_up: true,
                next: Some(Duration::from_secs(60))
            }
        );
    }

    #[test]
    fn a_permanent_error_fails_at_once_and_waits_for_a_new_spec() {
        let r = retrying(&settings(), failure(false, 1, 0));
        assert_eq!(
            r,
            Retrying {
                give_up: true,
                next: None
            }
        );
    }

    #[test]
    fn a_deletion_never_shows_failed_and_keeps_retrying() {
        let s = settings();
        let permanent = retrying(
            &s,
            Failure {
                deleting: true,
                ..failure(false, 3, 9999)
            },
        );
        assert_eq!(
            permanent,
            Retrying {
                give_up: false,
                next: Some(Duration::from_secs(60))
            }
        );
        assert!(
            !retrying(
                &s,
                Failure {
                    deleting: true,
                    ..failure(true, 3, 9999)
                }
            )
            .give_up
        );
    }
}
