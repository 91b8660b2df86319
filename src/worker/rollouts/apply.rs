//! A step's decisions, committed in one transaction: the rollout's row is held and must be
//! as the step read it (lease and version), every tenant change is a compare-and-set on
//! the tenant's generation, and each change carries its tenant event, its rollout event
//! and its NOTIFY. A crash anywhere before the commit leaves nothing of the step.

use std::collections::HashMap;

use chrono::Utc;
use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

use super::decide::{Action, Note};
use crate::{
    db::{
        self,
        rollouts::{Claimed, NewEvent, Rollout, Target, TargetChange},
    },
    domain::{
        rollout::{RolloutState, TargetState},
        spec::{SpecDoc, SpecPatch, TenantSpec},
        tenant::Tenant,
    },
    worker::Worker,
};

/// Commits the step; `None` when the rollout changed since the step read it (or the lease
/// passed on), in which case nothing was written.
pub(super) async fn commit(
    worker: &Worker,
    claimed: &Claimed,
    rollout: &Rollout,
    targets: &[Target],
    tenants: &HashMap<Uuid, Tenant>,
    actions: Vec<Action>,
    gates_checked: Option<chrono::DateTime<Utc>>,
) -> Result<Option<i64>, sqlx::Error> {
    let mut tx = worker.pool.begin().await?;
    if !db::rollouts::lock_for_step(&mut tx, claimed, rollout.version).await? {
        return Ok(None);
    }
    let c = Committer {
        rollout,
        actor: format!("controller:{}", worker.id),
        targets: targets.iter().map(|t| (t.tenant_id, t)).collect(),
    };
    let mut wave = rollout.current_wave;
    let mut outcomes = Vec::new();
    let mut ended = None;
    for action in actions {
        match action {
            Action::Start(id) => {
                if let Some(state) = c.start(&mut tx, c.targets[&id], tenants).await? {
                    outcomes.push(state);
                }
            }
            Action::Revert(id) => {
                if let Some(state) = c.revert(&mut tx, c.targets[&id]).await? {
                    outcomes.push(state);
                }
            }
            Action::Mark(id, change, why) => {
                let t = c.targets[&id];
                db::rollouts::change_target(&mut tx, rollout.id, id, &change).await?;
                c.event(&mut tx, Some(&t.name), &why).await?;
                outcomes.extend(change.state);
            }
            Action::Wave(n, why) => {
                wave = n;
                c.event(&mut tx, None, &why).await?;
            }
            Action::State(state, why) => {
                c.event(&mut tx, None, &why).await?;
                if state == RolloutState::Succeeded {
                    c.update_defaults(&mut tx).await?;
                }
                db::rollouts::set_state(&mut tx, rollout.id, state, Some(&why.message)).await?;
                ended = (!state.is_active()).then_some(state);
            }
        }
    }
    let version = db::rollouts::record_step(&mut tx, rollout.id, wave, gates_checked).await?;
    // Between deciding and committing: the crash tests kill the worker here.
    worker.aws.checkpoint("RolloutCommit");
    tx.commit().await?;
    for state in outcomes {
        if matches!(
            state,
            TargetState::Succeeded
                | TargetState::Failed
                | TargetState::Superseded
                | TargetState::Reverted
                | TargetState::RevertFailed
                | TargetState::Kept
        ) {
            worker.metrics.rollout_tenant(state.as_str());
        }
    }
    if let Some(state) = ended {
        if let Ok(elapsed) = (Utc::now() - rollout.created_at).to_std() {
            worker.metrics.rollout_ended(state, elapsed);
        }
    }
    Ok(Some(version))
}

struct Committer<'a> {
    rollout: &'a Rollout,
    actor: String,
    targets: HashMap<Uuid, &'a Target>,
}

impl Committer<'_> {
    async fn event(
        &self,
        conn: &mut PgConnection,
        tenant: Option<&str>,
        why: &Note,
    ) -> Result<(), sqlx::Error> {
        db::rollouts::append_event(
            conn,
            self.rollout.id,
            NewEvent {
                actor: &self.actor,
                trigger: why.trigger,
                action: why.action,
                tenant,
                message: why.message.clone(),
                details: why.details.clone(),
            },
        )
        .await
    }

    /// Writes `spec` on the tenant if it is still on `generation` and free to change, with
    /// the tenant's event and a NOTIFY; `Err` says why it was left alone.
    async fn write_spec(
        &self,
        conn: &mut PgConnection,
        t: &Target,
        generation: i64,
        spec: &SpecDoc,
        what: &str,
    ) -> Result<Result<i64, String>, sqlx::Error> {
        let Some(tenant) = db::tenants::lock_id(&mut *conn, t.tenant_id).await? else {
            return Ok(Err("its tenant is gone".into()));
        };
        if !tenant.is_live() || tenant.deletion_requested_at.is_some() {
            return Ok(Err("its tenant is being deleted".into()));
        }
        if tenant.generation != generation {
            return Ok(Err(format!(
                "changed by someone else (generation {} where the rollout expected {generation}); their change stands",
                tenant.generation
            )));
        }
        if tenant.paused_at.is_some() {
            return Ok(Err("paused by an operator; left alone".into()));
        }
        let what = format!("{what}, wave {}", t.wave);
        let updated = db::tenants::write_spec(
            &mut *conn,
            &tenant,
            spec,
            &format!("rollout:{}", self.rollout.id),
            |generation| {
                format!(
                    "spec changed to generation {generation} by rollout {} ({what})",
                    self.rollout.id
                )
            },
            json!({
                "rollout": self.rollout.id,
                "wave": t.wave,
                "spec": spec,
                "previous_generation": tenant.generation,
            }),
        )
        .await?;
        Ok(Ok(updated.generation))
    }

    async fn start(
        &self,
        conn: &mut PgConnection,
        t: &Target,
        tenants: &HashMap<Uuid, Tenant>,
    ) -> Result<Option<TargetState>, sqlx::Error> {
        let now = Utc::now();
        let written = self
            .write_spec(conn, t, t.planned_generation, &t.to, "new spec")
            .await?;
        let (change, why) = match written {
            Ok(generation) => (
                TargetChange {
                    state: Some(TargetState::Deploying),
                    target_generation: Some(generation),
                    started_at: Some(Some(now)),
                    reason: Some(Some(format!("deploying generation {generation}"))),
                    ..TargetChange::default()
                },
                Note {
                    trigger: "progress",
                    action: "tenant.started",
                    message: format!("new spec written as generation {generation}"),
                    details: json!({
                        "generation": generation,
                        "wave": t.wave,
                        "from_status": tenants.get(&t.tenant_id).map(|x| x.status),
                    }),
                },
            ),
            Err(why) => (
                TargetChange {
                    state: Some(TargetState::Superseded),
                    finished_at: Some(Some(now)),
                    reason: Some(Some(why.clone())),
                    ..TargetChange::default()
                },
                Note {
                    trigger: "progress",
                    action: "tenant.superseded",
                    message: why,
                    details: json!({ "planned_generation": t.planned_generation }),
                },
            ),
        };
        db::rollouts::change_target(conn, self.rollout.id, t.tenant_id, &change).await?;
        self.event(conn, Some(&t.name), &why).await?;
        Ok(change.state.filter(|s| *s == TargetState::Superseded))
    }

    async fn revert(
        &self,
        conn: &mut PgConnection,
        t: &Target,
    ) -> Result<Option<TargetState>, sqlx::Error> {
        let now = Utc::now();
        let Some(generation) = t.target_generation else {
            return Ok(None);
        };
        let written = self
            .write_spec(conn, t, generation, &t.from, "previous spec back")
            .await?;
        let (change, why) = match written {
            Ok(back) => (
                TargetChange {
                    state: Some(TargetState::Reverting),
                    revert_generation: Some(back),
                    revert_started_at: Some(now),
                    reason: Some(Some(format!(
                        "previous spec written back as generation {back}"
                    ))),
                    ..TargetChange::default()
                },
                Note {
                    trigger: "progress",
                    action: "tenant.reverting",
                    message: format!("previous spec written back as generation {back}"),
                    details: json!({ "generation": back, "wave": t.wave }),
                },
            ),
            Err(why) => (
                TargetChange {
                    state: Some(TargetState::Kept),
                    finished_at: Some(Some(now)),
                    reason: Some(Some(why.clone())),
                    ..TargetChange::default()
                },
                Note {
                    trigger: "progress",
                    action: "tenant.kept",
                    message: why,
                    details: json!({ "target_generation": generation }),
                },
            ),
        };
        db::rollouts::change_target(conn, self.rollout.id, t.tenant_id, &change).await?;
        self.event(conn, Some(&t.name), &why).await?;
        Ok(change.state.filter(|s| *s == TargetState::Kept))
    }

    /// A rollout that succeeded over the whole fleet makes its patch part of the defaults
    /// new tenants get.
    async fn update_defaults(&self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        let r = self.rollout;
        if !(r.whole_fleet && r.strategy.update_defaults) {
            return Ok(());
        }
        let Ok(patch) = serde_json::from_value::<SpecPatch>(r.patch.clone()) else {
            return Ok(());
        };
        // Seeded when the rollout was created through the API.
        let Some(current) = db::defaults::lock_existing(&mut *conn).await? else {
            return Ok(());
        };
        let patched = patch.apply(&current.spec, &current.spec);
        match TenantSpec::validate(patched, None) {
            Ok(spec) => {
                db::defaults::set(&mut *conn, &spec.to_doc(), &format!("rollout:{}", r.id)).await?;
                let why = Note {
                    trigger: "progress",
                    action: "defaults.updated",
                    message: "the fleet defaults now carry the patch: new tenants get it".into(),
                    details: json!({ "spec": spec.to_doc() }),
                };
                self.event(conn, None, &why).await
            }
            Err(e) => {
                let why = Note {
                    trigger: "progress",
                    action: "defaults.kept",
                    message: format!("the fleet defaults cannot hold the patch: {e}"),
                    details: json!({}),
                };
                self.event(conn, None, &why).await
            }
        }
    }
}
