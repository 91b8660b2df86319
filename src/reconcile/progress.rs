//! What a pass tells the tenant's row as it goes: each resource as soon as it exists, a
//! condition per phase, and an event for every change and every AWS error. All writes are
//! fenced by the lease, and none is made inside an AWS call.

use chrono::Utc;
use serde_json::{json, Map, Value};
use sqlx::PgPool;
use tokio::sync::Mutex;
use uuid::Uuid;

use super::Changes;
use crate::{
    aws::AwsError,
    db::leases::{self, LeaseError},
    domain::tenant::{Condition, Tenant, TenantStatus},
};

pub struct Progress {
    pool: PgPool,
    tenant: Tenant,
    token: Uuid,
    /// The tenant's `request_seq` when it was claimed.
    request_seq: i64,
    actor: String,
    state: Mutex<State>,
}

struct State {
    resources: Map<String, Value>,
    conditions: Vec<Condition>,
}

impl Progress {
    pub fn new(pool: PgPool, tenant: Tenant, token: Uuid, request_seq: i64, actor: String) -> Self {
        let resources = tenant.resources.as_object().cloned().unwrap_or_default();
        let conditions = tenant.conditions.clone();
        Self {
            pool,
            tenant,
            token,
            request_seq,
            actor,
            state: Mutex::new(State {
                resources,
                conditions,
            }),
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn tenant(&self) -> &Tenant {
        &self.tenant
    }

    /// Whether an earlier pass recorded the resource as existing.
    pub async fn knows(&self, kind: &str) -> bool {
        self.state.lock().await.resources.contains_key(kind)
    }

    pub async fn resource(&self, kind: &str) -> Option<Value> {
        self.state.lock().await.resources.get(kind).cloned()
    }

    pub async fn resources(&self) -> Value {
        Value::Object(self.state.lock().await.resources.clone())
    }

    /// Records (or, with `None`, forgets) a resource, and sets its condition.
    pub async fn set_resource(
        &self,
        kind: &str,
        value: Option<Value>,
        condition: (&str, &str, String),
    ) -> Result<(), LeaseError> {
        let mut state = self.state.lock().await;
        let changed_resource = match value {
            Some(v) => state.resources.insert(kind.to_owned(), v.clone()) != Some(v),
            None => state.resources.remove(kind).is_some(),
        };
        let changed_condition = set_condition(&mut state.conditions, kind, condition);
        if changed_resource || changed_condition {
            self.write(&state, None).await?;
        }
        Ok(())
    }

    /// Sets a condition that is not a resource's (`Deployed`, `Ready`, `Deleted`), and
    /// optionally the status.
    pub async fn condition(
        &self,
        kind: &str,
        condition: (&str, &str, String),
        status: Option<TenantStatus>,
    ) -> Result<(), LeaseError> {
        let mut state = self.state.lock().await;
        let changed = set_condition(&mut state.conditions, kind, condition);
        if changed || status.is_some_and(|s| s != self.tenant.status) {
            self.write(&state, status).await?;
        }
        Ok(())
    }

    async fn write(&self, state: &State, status: Option<TenantStatus>) -> Result<(), LeaseError> {
        leases::record_progress(
            &self.pool,
            self.tenant.id,
            self.token,
            &Value::Object(state.resources.clone()),
            &state.conditions,
            status,
            self.request_seq,
        )
        .await
    }

    /// Appends to the tenant's history. Each event names the lease it was written under,
    /// so the history shows which pass (and which worker) did what, and that the passes of
    /// different workers never interleave.
    pub async fn event(
        &self,
        action: &str,
        message: &str,
        mut details: Value,
    ) -> Result<(), LeaseError> {
        if let Value::Object(map) = &mut details {
            map.insert("lease".into(), Value::String(self.token.to_string()));
        }
        leases::event(
            &self.pool,
            (&self.tenant, self.token),
            &self.actor,
            action,
            message,
            &details,
        )
        .await
    }

    /// Whether the tenant was ready at its current generation when claimed: then nothing was
    /// asked of this pass, and any change it has to make repairs drift (a hand edit in the
    /// console, a deleted rule, a scaled service).
    fn settled(&self) -> bool {
        let t = &self.tenant;
        t.status == TenantStatus::Ready
            && t.observed_generation == t.generation
            && t.deletion_requested_at.is_none()
    }

    /// The event for a step that changed something.
    pub async fn changed(
        &self,
        kind: &str,
        name: &str,
        changes: &Changes,
    ) -> Result<(), LeaseError> {
        if changes.is_empty() {
            return Ok(());
        }
        let calls = changes.join(", ");
        let (action, message, details) = if self.settled() {
            (
                "resource.drift_repaired",
                format!("{kind} {name} had drifted from the spec; restored with {calls}"),
                json!({ "resource": kind, "name": name, "calls": changes, "drift": true }),
            )
        } else {
            let any = |prefixes: [&str; 2]| {
                changes
                    .iter()
                    .any(|c| prefixes.iter().any(|p| c.starts_with(p)))
            };
            let action = if any(["Create", "Register"]) {
                "resource.created"
            } else if any(["Delete", "Deregister"]) {
                "resource.deleted"
            } else {
                "resource.updated"
            };
            (
                action,
                format!("{kind} {name}: {calls}"),
                json!({ "resource": kind, "name": name, "calls": changes }),
            )
        };
        self.event(action, &message, details).await
    }

    /// The event and condition for a failed step, with AWS's own words.
    pub async fn failed(&self, kind: &str, err: &AwsError) -> Result<(), LeaseError> {
        let details = json!({
            "resource": kind,
            "service": err.service,
            "operation": err.operation,
            "code": err.code,
            "message": err.message,
            "request_id": err.request_id,
            "http_status": err.http_status,
            "retry": if err.is_transient() { "transient" } else { "permanent" },
        });
        self.event("aws.error", &err.to_string(), details).await?;
        let mut state = self.state.lock().await;
        if set_condition(
            &mut state.conditions,
            kind,
            ("False", &err.code, err.to_string()),
        ) {
            self.write(&state, None).await?;
        }
        Ok(())
    }
}

/// Replaces the condition of `kind`; its transition time moves only when its status does.
/// Returns whether anything changed.
fn set_condition(
    conditions: &mut Vec<Condition>,
    kind: &str,
    (status, reason, message): (&str, &str, String),
) -> bool {
    let now = Utc::now();
    match conditions.iter_mut().find(|c| c.kind == kind) {
        Some(c) if c.status == status && c.reason == reason && c.message == message => false,
        Some(c) => {
            if c.status != status {
                c.last_transition_at = now;
            }
            c.status = status.to_owned();
            c.reason = reason.to_owned();
            c.message = message;
            true
        }
        None => {
            conditions.push(Condition {
                kind: kind.to_owned(),
                status: status.to_owned(),
                reason: reason.to_owned(),
                message,
                last_transition_at: now,
            });
            true
        }
    }
}
