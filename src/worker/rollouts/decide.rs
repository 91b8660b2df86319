//! What a rollout's next step is, from what the step read: the rollout, its tenants'
//! rows as they are now, and the health of those baking. A pure function, so every rule
//! of the rollout is in one place and can be read (and tested) without a database.

use std::collections::HashMap;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::{
    db::rollouts::{Rollout, Target, TargetChange},
    domain::{
        rollout::{Approval, OnFailure, RolloutState, TargetState},
        tenant::{Tenant, TenantStatus},
    },
    health::{Health, HealthStatus},
};

/// A baking tenant's health as this step read it.
#[derive(Debug, Clone)]
pub struct Reading {
    pub health: Health,
    /// Requests its load balancer target group served since it became ready; `None` when
    /// not asked for or not readable.
    pub requests: Option<f64>,
}

pub struct View<'a> {
    pub rollout: &'a Rollout,
    pub targets: &'a [Target],
    /// The targets' tenant rows now, by tenant id (missing: deleted and gone).
    pub tenants: &'a HashMap<Uuid, Tenant>,
    /// Baking tenants whose health this step read.
    pub readings: &'a HashMap<Uuid, Reading>,
    pub now: DateTime<Utc>,
    /// How often the health of baking tenants is read.
    pub gate_interval: TimeDelta,
}

/// Why something happened, for the event.
#[derive(Debug, Clone, PartialEq)]
pub struct Note {
    /// `progress`, `gate`, `alarm` or `timeout`.
    pub trigger: &'static str,
    pub action: &'static str,
    pub message: String,
    pub details: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Write the tenant's new spec, if it is still on the planned generation.
    Start(Uuid),
    /// Write the tenant's previous spec back, if it is still on the rollout's generation.
    Revert(Uuid),
    /// Bookkeeping of one tenant, with its event.
    Mark(Uuid, TargetChange, Note),
    /// The wave under way.
    Wave(i32, Note),
    /// A new state for the rollout.
    State(RolloutState, Note),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub actions: Vec<Action>,
    /// When to look again unless woken earlier.
    pub next_check: DateTime<Utc>,
}

/// Longest the controller leaves an active rollout alone.
pub const MAX_IDLE: TimeDelta = TimeDelta::seconds(30);

pub fn decide(v: &View) -> Decision {
    let mut d = Step {
        v,
        states: v.targets.iter().map(|t| (t.tenant_id, t.state)).collect(),
        actions: Vec::new(),
        next: v.now + MAX_IDLE,
    };
    match v.rollout.state {
        RolloutState::Running | RolloutState::AwaitingApproval | RolloutState::Paused => {
            d.forward()
        }
        RolloutState::RollingBack => d.backward(),
        _ => {}
    }
    Decision {
        actions: d.actions,
        next_check: d.next,
    }
}

struct Step<'a> {
    v: &'a View<'a>,
    /// Each target's state with this step's decisions applied.
    states: HashMap<Uuid, TargetState>,
    actions: Vec<Action>,
    next: DateTime<Utc>,
}

fn note(trigger: &'static str, action: &'static str, message: String, details: Value) -> Note {
    Note {
        trigger,
        action,
        message,
        details,
    }
}

/// Whether the tenant is ready with `generation` or a later one: its reconciler saw every
/// resource match and the ECS deployment of that generation complete.
fn ready_with(t: &Tenant, generation: i64) -> bool {
    t.status == TenantStatus::Ready && t.observed_generation >= generation
}

impl Step<'_> {
    fn state(&self, t: &Target) -> TargetState {
        self.states[&t.tenant_id]
    }

    fn mark(&mut self, t: &Target, change: TargetChange, why: Note) {
        if let Some(s) = change.state {
            self.states.insert(t.tenant_id, s);
        }
        self.actions.push(Action::Mark(t.tenant_id, change, why));
    }

    fn wake_at(&mut self, at: DateTime<Utc>) {
        self.next = self.next.min(at.max(self.v.now));
    }

    fn finish(&mut self, t: &Target, state: TargetState, why: Note) {
        let failed = matches!(state, TargetState::Failed | TargetState::RevertFailed);
        let change = TargetChange {
            state: Some(state),
            reason: Some(Some(why.message.clone())),
            failure: failed.then(|| Some(why.message.clone())),
            finished_at: Some(Some(self.v.now)),
            ..TargetChange::default()
        };
        self.mark(t, change, why);
    }

    fn forward(&mut self) {
        let v = self.v;
        for t in v.targets {
            match self.state(t) {
                TargetState::Deploying => self.watch_deploy(t),
                TargetState::Baking => self.watch_bake(t),
                _ => {}
            }
        }
        let failed: Vec<&Target> = v
            .targets
            .iter()
            .filter(|t| self.state(t) == TargetState::Failed)
            .collect();
        let strategy = &v.rollout.strategy;
        let halting = matches!(
            v.rollout.state,
            RolloutState::Running | RolloutState::AwaitingApproval
        );
        if halting && failed.len() as u32 > strategy.max_failures {
            self.halt(&failed);
            return;
        }
        if v.rollout.state == RolloutState::Running {
            self.advance();
        }
    }

    /// A tenant that someone else changed since the rollout wrote it (or deleted) is theirs.
    fn taken_over(&mut self, t: &Target, generation: Option<i64>) -> bool {
        let tenant = self.v.tenants.get(&t.tenant_id);
        let why = match tenant {
            None => "its tenant was deleted".to_owned(),
            Some(x) if !x.is_live() => "its tenant was deleted".to_owned(),
            Some(x) if x.deletion_requested_at.is_some() => "its tenant is being deleted".to_owned(),
            Some(x) if Some(x.generation) != generation => format!(
                "changed by someone else (generation {} after the rollout's {}); their change stands",
                x.generation,
                generation.unwrap_or_default()
            ),
            Some(_) => return false,
        };
        let to = if self.state(t) == TargetState::Reverting {
            TargetState::Kept
        } else {
            TargetState::Superseded
        };
        let action = if to == TargetState::Kept {
            "tenant.kept"
        } else {
            "tenant.superseded"
        };
        self.finish(t, to, note("progress", action, why, json!({})));
        true
    }

    fn watch_deploy(&mut self, t: &Target) {
        if self.taken_over(t, t.target_generation) {
            return;
        }
        let v = self.v;
        let tenant = &v.tenants[&t.tenant_id];
        let generation = t.target_generation.unwrap_or_default();
        let timeout = v.rollout.strategy.deploy_timeout;
        if ready_with(tenant, generation) {
            let bake = v.rollout.strategy.bake_of(t.wave);
            if bake.0.is_zero() && v.rollout.strategy.min_requests.is_none() {
                // No bake: ready is the whole gate.
                let change = TargetChange {
                    state: Some(TargetState::Succeeded),
                    ready_at: Some(Some(v.now)),
                    bake_ends_at: Some(Some(v.now)),
                    reason: Some(Some(format!("ready with generation {generation}; no bake"))),
                    finished_at: Some(Some(v.now)),
                    ..TargetChange::default()
                };
                let why = note(
                    "progress",
                    "tenant.succeeded",
                    format!("ready with generation {generation}; no bake asked for"),
                    json!({ "generation": generation }),
                );
                self.mark(t, change, why);
                return;
            }
            let ends = v.now + bake.as_chrono();
            let change = TargetChange {
                state: Some(TargetState::Baking),
                ready_at: Some(Some(v.now)),
                bake_ends_at: Some(Some(ends)),
                reason: Some(Some(format!(
                    "ready with generation {generation}; baking for {bake}"
                ))),
                ..TargetChange::default()
            };
            let why = note(
                "progress",
                "tenant.ready",
                format!("ready with generation {generation}; baking for {bake}"),
                json!({ "generation": generation, "bake_ends_at": ends }),
            );
            self.mark(t, change, why);
            // Its first gate check is due at once.
            self.wake_at(v.now);
        } else if tenant.status == TenantStatus::Failed {
            let error = tenant.last_error.clone().unwrap_or_else(|| "failed".into());
            let why = note(
                "gate",
                "tenant.failed",
                format!("generation {generation} failed: {error}"),
                json!({ "generation": generation, "last_error": tenant.last_error }),
            );
            self.finish(t, TargetState::Failed, why);
        } else {
            let deadline = t.started_at.unwrap_or(v.now) + timeout.as_chrono();
            if v.now >= deadline {
                let why = note(
                    "timeout",
                    "tenant.failed",
                    format!(
                        "not ready with generation {generation} within {timeout} (status {})",
                        tenant.status.as_str()
                    ),
                    json!({ "generation": generation, "status": tenant.status }),
                );
                self.finish(t, TargetState::Failed, why);
            } else {
                self.wake_at(deadline);
            }
        }
    }

    fn watch_bake(&mut self, t: &Target) {
        if self.taken_over(t, t.target_generation) {
            return;
        }
        let v = self.v;
        let tenant = &v.tenants[&t.tenant_id];
        let strategy = &v.rollout.strategy;
        if tenant.status == TenantStatus::Failed {
            let error = tenant.last_error.clone().unwrap_or_else(|| "failed".into());
            let why = note(
                "gate",
                "tenant.failed",
                format!("failed during its bake: {error}"),
                json!({ "last_error": tenant.last_error }),
            );
            self.finish(t, TargetState::Failed, why);
            return;
        }
        let reading = v.readings.get(&t.tenant_id);
        if let Some(r) = reading {
            if let Some(why) = broken_gate(&r.health) {
                self.finish(t, TargetState::Failed, why);
                return;
            }
        }
        let ends = t.bake_ends_at.unwrap_or(v.now);
        let baked = strategy.bake_of(t.wave);
        if v.now < ends {
            self.wake_at(ends);
            return;
        }
        // A bake of some length ends only on a reading taken at its end.
        if !baked.0.is_zero() && reading.is_none() {
            self.wake_at(v.now);
            return;
        }
        let served = reading.and_then(|r| r.requests);
        if let (Some(min), false) = (strategy.min_requests, t.promoted) {
            let seen = served.unwrap_or(0.0);
            if seen < min as f64 {
                let give_up = ends + strategy.deploy_timeout.as_chrono();
                if v.now >= give_up {
                    let why = note(
                        "gate",
                        "tenant.failed",
                        format!(
                            "served {seen} requests during its bake and {} more, fewer than min_requests {min}",
                            strategy.deploy_timeout
                        ),
                        json!({ "requests": seen, "min_requests": min }),
                    );
                    self.finish(t, TargetState::Failed, why);
                } else {
                    self.wake_at(v.now + v.gate_interval);
                }
                return;
            }
        }
        let why = note(
            "progress",
            "tenant.succeeded",
            format!("stayed healthy through its bake of {baked}"),
            json!({ "requests": served }),
        );
        self.finish(t, TargetState::Succeeded, why);
    }

    fn halt(&mut self, failed: &[&Target]) {
        let v = self.v;
        let strategy = &v.rollout.strategy;
        let names: Vec<&str> = failed.iter().map(|t| t.name.as_str()).collect();
        // Each failure's cause, as this step or an earlier one recorded it.
        let causes: Vec<String> = failed
            .iter()
            .take(3)
            .map(|t| {
                let now = self.actions.iter().find_map(|a| match a {
                    Action::Mark(id, c, n)
                        if *id == t.tenant_id && c.state == Some(TargetState::Failed) =>
                    {
                        Some(n.message.clone())
                    }
                    _ => None,
                });
                let cause = now.or_else(|| t.failure.clone()).unwrap_or_default();
                format!("{} ({cause})", t.name)
            })
            .collect();
        // The trigger is that of the failure that tipped it.
        let trigger = self
            .actions
            .iter()
            .rev()
            .find_map(|a| match a {
                Action::Mark(_, c, n) if c.state == Some(TargetState::Failed) => Some(n.trigger),
                _ => None,
            })
            .unwrap_or("gate");
        let more = failed.len().saturating_sub(causes.len());
        let cause = format!(
            "{} tenant(s) failed, more than max_failures {}: {}{}",
            failed.len(),
            strategy.max_failures,
            causes.join("; "),
            if more > 0 {
                format!("; and {more} more")
            } else {
                String::new()
            }
        );
        let (to, message) = match strategy.on_failure {
            OnFailure::Rollback => (
                RolloutState::RollingBack,
                format!("halted, rolling back newest wave first: {cause}"),
            ),
            OnFailure::Pause => (
                RolloutState::Paused,
                format!("halted, waiting for a person (resume after a fix, or abort): {cause}"),
            ),
        };
        let details = json!({ "failed": names, "max_failures": strategy.max_failures });
        self.actions.push(Action::State(
            to,
            note(trigger, "rollout.halted", message, details),
        ));
        self.wake_at(v.now);
    }

    /// Moves through the waves: the next starts once every tenant of the one before is
    /// done with; a wave's tenants start as slots free up.
    fn advance(&mut self) {
        let v = self.v;
        let strategy = &v.rollout.strategy;
        let mut wave = v.rollout.current_wave;
        loop {
            let done = v.targets.iter().filter(|t| t.wave == wave).all(|t| {
                !matches!(self.state(t), TargetState::Pending) && !self.state(t).in_flight()
            });
            if !done {
                break;
            }
            if wave >= v.rollout.waves {
                self.succeed();
                return;
            }
            if wave == 1 && strategy.approval == Approval::Manual {
                let why = note(
                    "progress",
                    "rollout.awaiting_approval",
                    "the canary baked; waiting for `promote` before the next waves".into(),
                    json!({}),
                );
                self.actions
                    .push(Action::State(RolloutState::AwaitingApproval, why));
                return;
            }
            wave += 1;
            let size = v.targets.iter().filter(|t| t.wave == wave).count();
            let why = note(
                "progress",
                "wave.started",
                format!(
                    "wave {wave} of {} starts: {size} tenant(s)",
                    v.rollout.waves
                ),
                json!({ "wave": wave, "tenants": size }),
            );
            self.actions.push(Action::Wave(wave, why));
        }
        let in_flight = self.states.values().filter(|s| s.in_flight()).count() as u32;
        let slots = strategy.max_concurrent.saturating_sub(in_flight) as usize;
        let starting: Vec<Uuid> = v
            .targets
            .iter()
            .filter(|t| t.wave == wave && self.state(t) == TargetState::Pending)
            .take(slots)
            .map(|t| t.tenant_id)
            .collect();
        for id in starting {
            self.states.insert(id, TargetState::Deploying);
            self.actions.push(Action::Start(id));
        }
    }

    fn succeed(&mut self) {
        let v = self.v;
        let count = |s: TargetState| v.targets.iter().filter(|t| self.state(t) == s).count();
        let message = format!(
            "done: {} succeeded, {} superseded, {} failed (max_failures {})",
            count(TargetState::Succeeded),
            count(TargetState::Superseded),
            count(TargetState::Failed),
            v.rollout.strategy.max_failures
        );
        let why = note("progress", "rollout.succeeded", message, json!({}));
        self.actions
            .push(Action::State(RolloutState::Succeeded, why));
    }

    /// Puts the previous spec back on every tenant the rollout changed, newest wave first,
    /// each wave only once the one after it is done.
    fn backward(&mut self) {
        let v = self.v;
        for t in v.targets {
            if self.state(t) == TargetState::Reverting {
                self.watch_revert(t);
            }
        }
        let waiting: Vec<&Target> = v
            .targets
            .iter()
            .filter(|t| self.state(t).was_changed() || self.state(t) == TargetState::Reverting)
            .collect();
        let Some(newest) = waiting.iter().map(|t| t.wave).max() else {
            self.end_rollback();
            return;
        };
        let reverting = waiting
            .iter()
            .filter(|t| self.state(t) == TargetState::Reverting)
            .count() as u32;
        let slots = v.rollout.strategy.max_concurrent.saturating_sub(reverting) as usize;
        let starting: Vec<Uuid> = waiting
            .iter()
            .filter(|t| t.wave == newest && self.state(t).was_changed())
            .take(slots)
            .map(|t| t.tenant_id)
            .collect();
        for id in starting {
            self.states.insert(id, TargetState::Reverting);
            self.actions.push(Action::Revert(id));
        }
    }

    fn watch_revert(&mut self, t: &Target) {
        if self.taken_over(t, t.revert_generation) {
            return;
        }
        let v = self.v;
        let tenant = &v.tenants[&t.tenant_id];
        let generation = t.revert_generation.unwrap_or_default();
        let timeout = v.rollout.strategy.deploy_timeout;
        if ready_with(tenant, generation) {
            let why = note(
                "progress",
                "tenant.reverted",
                format!("back on its previous spec, ready with generation {generation}"),
                json!({ "generation": generation }),
            );
            self.finish(t, TargetState::Reverted, why);
        } else if tenant.status == TenantStatus::Failed {
            let error = tenant.last_error.clone().unwrap_or_else(|| "failed".into());
            let why = note(
                "gate",
                "tenant.revert_failed",
                format!("its previous spec (generation {generation}) failed: {error}"),
                json!({ "generation": generation, "last_error": tenant.last_error }),
            );
            self.finish(t, TargetState::RevertFailed, why);
        } else {
            let deadline = t.revert_started_at.unwrap_or(v.now) + timeout.as_chrono();
            if v.now >= deadline {
                let why = note(
                    "timeout",
                    "tenant.revert_failed",
                    format!("not ready with its previous spec within {timeout}"),
                    json!({ "generation": generation, "status": tenant.status }),
                );
                self.finish(t, TargetState::RevertFailed, why);
            } else {
                self.wake_at(deadline);
            }
        }
    }

    fn end_rollback(&mut self) {
        let v = self.v;
        let names = |s: TargetState| -> Vec<&str> {
            v.targets
                .iter()
                .filter(|t| self.state(t) == s)
                .map(|t| t.name.as_str())
                .collect()
        };
        let stuck = names(TargetState::RevertFailed);
        let kept = names(TargetState::Kept);
        let reverted = names(TargetState::Reverted);
        let details = json!({ "reverted": reverted, "stuck": stuck, "kept": kept });
        // What started the rollback (a halt's cause, or who aborted), so the end says why.
        let after = v
            .rollout
            .reason
            .as_deref()
            .map(|r| format!("; {r}"))
            .unwrap_or_default();
        let why = if stuck.is_empty() {
            note(
                "progress",
                "rollout.rolled_back",
                format!(
                    "rolled back: {} tenant(s) back on their previous spec, {} left to whoever changed them{after}",
                    reverted.len(),
                    kept.len()
                ),
                details,
            )
        } else {
            note(
                "progress",
                "rollout.rollback_failed",
                format!("rollback failed: stuck: {}{after}", stuck.join(", ")),
                details,
            )
        };
        let to = if stuck.is_empty() {
            RolloutState::RolledBack
        } else {
            RolloutState::RollbackFailed
        };
        self.actions.push(Action::State(to, why));
    }
}

/// The first gate a baking tenant's health breaks: an alarm in ALARM, or health `down`
/// or `degraded`.
pub fn broken_gate(health: &Health) -> Option<Note> {
    if let Some(alarm) = health.alarms.iter().find(|a| a.state == "ALARM") {
        return Some(note(
            "alarm",
            "tenant.failed",
            format!("alarm {} in ALARM during its bake", alarm.name),
            json!({ "alarm": alarm, "health": health.status }),
        ));
    }
    matches!(health.status, HealthStatus::Down | HealthStatus::Degraded).then(|| {
        note(
            "gate",
            "tenant.failed",
            format!(
                "health {} during its bake: {}",
                health.status.as_str(),
                health.reason
            ),
            json!({ "health": health.status, "reason": health.reason }),
        )
    })
}
