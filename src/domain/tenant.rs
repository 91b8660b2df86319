//! A tenant: one state's isolated copy of the application, as stored and as served.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::spec::SpecDoc;
use crate::{health::Health, sizing::Sizing};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema, sqlx::Type)]
#[sqlx(type_name = "tenant_status", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum TenantStatus {
    /// Accepted; no worker has started on it yet.
    Pending,
    /// Its resources are being created.
    Provisioning,
    /// Every resource matches the spec and the deployment of this generation completed.
    Ready,
    /// A new generation is being rolled out.
    Updating,
    /// The last attempt failed for good; see `conditions` and `last_error`.
    Failed,
    /// Deletion requested; resources are being removed.
    Deleting,
    /// Everything is gone; kept as a tombstone for the audit trail.
    Deleted,
}

impl TenantStatus {
    pub const ALL: [TenantStatus; 7] = [
        Self::Pending,
        Self::Provisioning,
        Self::Ready,
        Self::Updating,
        Self::Failed,
        Self::Deleting,
        Self::Deleted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Provisioning => "provisioning",
            Self::Ready => "ready",
            Self::Updating => "updating",
            Self::Failed => "failed",
            Self::Deleting => "deleting",
            Self::Deleted => "deleted",
        }
    }
}

/// What happens to a tenant's data (its bucket and table) when it is deleted.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema, sqlx::Type,
)]
#[sqlx(type_name = "data_policy", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum DataPolicy {
    /// Keep the bucket and table, and record them.
    #[default]
    Retain,
    /// Take a final DynamoDB backup, then delete the bucket and table.
    Purge,
}

impl DataPolicy {
    /// The name used in the API (`?data=`) and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Retain => "retain",
            Self::Purge => "purge",
        }
    }
}

/// One aspect of a tenant's progress, in the style of Kubernetes conditions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Condition {
    #[serde(rename = "type")]
    #[schema(example = "Ready")]
    pub kind: String,
    /// `True`, `False` or `Unknown`.
    #[schema(example = "False")]
    pub status: String,
    #[schema(example = "DeploymentInProgress")]
    pub reason: String,
    pub message: String,
    pub last_transition_at: DateTime<Utc>,
}

/// A tenant as the API serves it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub struct Tenant {
    /// Identifies this incarnation; a state deleted and created again gets a new id.
    pub id: Uuid,
    /// The state's slug.
    #[schema(example = "new-york")]
    pub name: String,
    #[schema(example = "New York")]
    pub display_name: String,
    #[schema(example = "NY")]
    pub postal_code: String,
    pub status: TenantStatus,
    /// Bumped by every change to `spec`.
    pub generation: i64,
    /// The generation the worker last brought fully into effect.
    pub observed_generation: i64,
    #[sqlx(json)]
    pub spec: SpecDoc,
    /// Names and ARNs of the tenant's AWS resources, filled in by the worker.
    #[schema(value_type = Object)]
    pub resources: serde_json::Value,
    /// The tenant's public URL, once it is ready.
    pub endpoint: Option<String>,
    #[sqlx(json)]
    pub conditions: Vec<Condition>,
    pub last_error: Option<String>,
    /// The shared load balancer and cluster the tenant is placed in.
    pub cell: String,
    /// Set once deletion has been requested.
    pub data_policy: Option<DataPolicy>,
    pub deletion_requested_at: Option<DateTime<Utc>>,
    /// Set while an operator has paused the tenant: the worker makes no AWS call for it.
    pub paused_at: Option<DateTime<Utc>>,
    /// Why it was paused, as the operator said.
    pub paused_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
    /// Whether it is up, as the worker last observed it in AWS (every
    /// `STATEHOUSE_HEALTH_INTERVAL`); `GET /v1/tenants/{name}/health` reads AWS now.
    #[sqlx(json)]
    #[serde(default)]
    pub health: Health,
    /// The rightsizer's latest recommendation for `spec.sizing`, and what became of it.
    #[sqlx(json)]
    #[serde(default)]
    pub sizing: Sizing,
}

impl Tenant {
    pub fn is_live(&self) -> bool {
        self.status != TenantStatus::Deleted
    }

    /// Its status once its spec changes: a new generation is rolled out; a tenant never
    /// fully provisioned waits for the worker.
    pub fn status_after_spec_change(&self) -> TenantStatus {
        match self.status {
            TenantStatus::Ready | TenantStatus::Failed if self.observed_generation > 0 => {
                TenantStatus::Updating
            }
            TenantStatus::Failed => TenantStatus::Pending,
            other => other,
        }
    }
}
