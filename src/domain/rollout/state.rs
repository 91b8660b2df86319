//! Where a rollout is, and where each of its tenants is.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema, sqlx::Type)]
#[sqlx(type_name = "rollout_state", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum RolloutState {
    /// Starting and watching tenants, wave after wave.
    Running,
    /// The canary baked; `promote` lets the next waves go (approval `manual`).
    AwaitingApproval,
    /// Nothing new starts: paused by a person, or halted with `on_failure: pause`.
    Paused,
    /// Putting the previous spec back on every tenant it changed, newest wave first.
    RollingBack,
    Succeeded,
    RolledBack,
    /// Some tenant could not be put back; `reason` names who.
    RollbackFailed,
    /// Stopped by a person without a rollback: tenants keep what they have.
    Aborted,
}

impl RolloutState {
    pub const ALL: [RolloutState; 8] = [
        Self::Running,
        Self::AwaitingApproval,
        Self::Paused,
        Self::RollingBack,
        Self::Succeeded,
        Self::RolledBack,
        Self::RollbackFailed,
        Self::Aborted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::AwaitingApproval => "awaiting_approval",
            Self::Paused => "paused",
            Self::RollingBack => "rolling_back",
            Self::Succeeded => "succeeded",
            Self::RolledBack => "rolled_back",
            Self::RollbackFailed => "rollback_failed",
            Self::Aborted => "aborted",
        }
    }

    /// Still under way: its tenants belong to it.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            Self::Running | Self::AwaitingApproval | Self::Paused | Self::RollingBack
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema, sqlx::Type)]
#[sqlx(type_name = "rollout_target_state", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum TargetState {
    /// Not started yet.
    Pending,
    /// Its new spec is written; waiting for it to be ready with that generation.
    Deploying,
    /// Ready with the new generation; must stay healthy until `bake_ends_at`.
    Baking,
    Succeeded,
    Failed,
    /// Someone else changed it since the plan; their change stands, the rollout goes on.
    Superseded,
    /// Never started: the rollout ended first.
    Cancelled,
    /// Its previous spec is written back; waiting for it to be ready with it.
    Reverting,
    Reverted,
    /// The previous spec did not become ready.
    RevertFailed,
    /// Changed by someone else after the rollout changed it: left alone by the rollback.
    Kept,
}

impl TargetState {
    pub const ALL: [TargetState; 11] = [
        Self::Pending,
        Self::Deploying,
        Self::Baking,
        Self::Succeeded,
        Self::Failed,
        Self::Superseded,
        Self::Cancelled,
        Self::Reverting,
        Self::Reverted,
        Self::RevertFailed,
        Self::Kept,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Deploying => "deploying",
            Self::Baking => "baking",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Superseded => "superseded",
            Self::Cancelled => "cancelled",
            Self::Reverting => "reverting",
            Self::Reverted => "reverted",
            Self::RevertFailed => "revert_failed",
            Self::Kept => "kept",
        }
    }

    /// Deploying or baking: the rollout is waiting on it.
    pub fn in_flight(self) -> bool {
        matches!(self, Self::Deploying | Self::Baking)
    }

    /// Whether the rollout wrote its spec (and a rollback has it to undo).
    pub fn was_changed(self) -> bool {
        matches!(
            self,
            Self::Deploying | Self::Baking | Self::Succeeded | Self::Failed
        )
    }
}
