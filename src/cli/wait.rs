//! `--wait`: follows a tenant until it is ready (or deleted), fails, or time runs out.

use std::time::Duration;

use tokio::time::{sleep, Instant};

use super::{output::current_step, progress::Line};
use crate::{
    client::{Client, ClientError},
    domain::tenant::{Tenant, TenantStatus},
};

const POLL_EVERY: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Goal {
    /// Ready, with the latest generation in effect.
    Ready,
    /// Gone: a `deleted` tombstone, or no tenant at all.
    Deleted,
}

#[derive(Debug)]
pub enum Outcome {
    /// Got there; `None` when a deleted tenant left no tombstone to show.
    Reached(Option<Tenant>),
    Failed(Tenant),
    /// Time ran out; the tenant as last seen.
    TimedOut(Option<Tenant>),
    /// Being deleted while we waited for it to become ready.
    Deleting(Tenant),
}

impl Outcome {
    pub fn tenant(&self) -> Option<&Tenant> {
        match self {
            Outcome::Reached(t) | Outcome::TimedOut(t) => t.as_ref(),
            Outcome::Failed(t) | Outcome::Deleting(t) => Some(t),
        }
    }
}

/// Polls the tenant and shows its progress on `line` until `goal`, failure or `timeout`.
/// An API that is briefly unreachable or answers 5xx is polled again until the timeout.
pub async fn wait(
    client: &Client,
    name: &str,
    goal: Goal,
    timeout: Duration,
    line: &mut Line,
) -> Result<Outcome, ClientError> {
    let deadline = Instant::now() + timeout;
    let mut last_seen: Option<Tenant> = None;
    loop {
        match client.get(name).await {
            Ok(tagged) => {
                let t = tagged.tenant;
                if let Some(outcome) = settled(goal, &t) {
                    return Ok(outcome);
                }
                line.update(t.status.as_str(), &current_step(&t));
                last_seen = Some(t);
            }
            Err(err) if err.status() == Some(404) && goal == Goal::Deleted => {
                return Ok(Outcome::Reached(None));
            }
            Err(err) if is_retryable(&err) => line.update("unreachable", &err.to_string()),
            Err(err) => return Err(err),
        }
        if Instant::now() + POLL_EVERY > deadline {
            return Ok(Outcome::TimedOut(last_seen));
        }
        sleep(POLL_EVERY).await;
    }
}

fn settled(goal: Goal, t: &Tenant) -> Option<Outcome> {
    match (goal, t.status) {
        (Goal::Ready, TenantStatus::Ready) if t.observed_generation == t.generation => {
            Some(Outcome::Reached(Some(t.clone())))
        }
        (Goal::Ready, TenantStatus::Failed) => Some(Outcome::Failed(t.clone())),
        (Goal::Ready, TenantStatus::Deleting | TenantStatus::Deleted) => {
            Some(Outcome::Deleting(t.clone()))
        }
        (Goal::Deleted, TenantStatus::Deleted) => Some(Outcome::Reached(Some(t.clone()))),
        _ => None,
    }
}

fn is_retryable(err: &ClientError) -> bool {
    match err {
        ClientError::Unreachable { .. } => true,
        ClientError::Api(problem) => problem.status >= 500 || problem.status == 429,
        ClientError::Protocol { .. } => false,
    }
}
