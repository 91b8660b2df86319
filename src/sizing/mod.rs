//! Vertical rightsizing: the Fargate size each tenant needs, from what its service used.
//!
//! The pieces, each small and tested on its own, after the VPA recommender's:
//! - [`estimate`]: a decaying-weight percentile of CPU and the peak of daily memory peaks;
//! - [`fit`]: the cheapest Fargate pair that holds a need within the spec's bounds, and
//!   what a size costs a month;
//! - [`recommend`]: a recommendation with its evidence, from the metrics (including the
//!   rule that settles the fight with horizontal scaling) or from a task stopped for
//!   running out of memory;
//! - [`policy`]: the guards that decide whether `auto` applies a recommendation now;
//! - [`observe`]: the AWS reads, batched over many tenants.
//!
//! The worker's loop is `worker/sizing.rs`; what it concludes is kept on the tenant
//! ([`Sizing`], `tenants.sizing`).

pub mod estimate;
pub mod fit;
pub mod observe;
pub mod policy;
pub mod recommend;
#[cfg(test)]
mod simulation;

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::spec::{sizing::SizeDoc, TaskSize};

/// Every constant of the rightsizer, in one place. The estimator's are the VPA
/// recommender's published defaults; the guards turn its users' complaints into rules.
pub mod defaults {
    use chrono::TimeDelta;

    /// CPU is sized for this percentile of the samples.
    pub const CPU_PERCENTILE: f64 = 0.90;
    /// Headroom over the estimate, for CPU and memory.
    pub const MARGIN: f64 = 1.15;
    /// A sample's weight halves every this long: the last day counts as much as all before.
    pub const HALF_LIFE: TimeDelta = TimeDelta::hours(24);
    /// No recommendation from less data than this.
    pub const MIN_DATA: TimeDelta = TimeDelta::hours(24);
    /// No recommendation when the newest sample is older than this (the service reports
    /// nothing: stopped, or scaled to zero).
    pub const STALE_DATA: TimeDelta = TimeDelta::hours(6);
    /// A downsize needs this much data...
    pub const DOWNSIZE_MIN_DATA: TimeDelta = TimeDelta::days(7);
    /// ...and must save at least this share of the monthly cost.
    pub const DOWNSIZE_MIN_SAVING: f64 = 0.10;
    /// After an upsize, a further upsize waits this long.
    pub const UPSIZE_COOLDOWN: TimeDelta = TimeDelta::hours(1);
    /// After a downsize any change waits this long, and so does a downsize after any
    /// change: at most one change a day, but for upsizes following one another.
    pub const DOWNSIZE_COOLDOWN: TimeDelta = TimeDelta::hours(24);
    /// A task stopped out of memory raises memory by the larger of these.
    pub const OOM_RAISE_MIB: u32 = 128;
    pub const OOM_RAISE_FACTOR: f64 = 1.2;
    /// A rightsizing deployment that failed freezes sizing for the tenant this long.
    pub const FREEZE: TimeDelta = TimeDelta::hours(24);
    /// The billing month of AWS's calculators.
    pub const HOURS_PER_MONTH: f64 = 730.0;
    /// Tenants one GetMetricData day slice answers in one page (100,800 points: 70
    /// series of 1,440 minutes).
    pub const TENANTS_PER_BATCH: usize = 35;
    /// The most slices a sizing interval is spread over.
    pub const MAX_SLICES: usize = 12;
}

/// Fargate list prices (USD); the defaults are us-east-1, Linux/x86, on demand.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prices {
    pub vcpu_hour: f64,
    pub gb_hour: f64,
}

impl Default for Prices {
    fn default() -> Self {
        Self {
            vcpu_hour: 0.04048,
            gb_hour: 0.004445,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SizingSettings {
    /// Each tenant is recommended for once per interval (spread over it).
    pub interval: Duration,
    /// How far back the metrics are read.
    pub lookback: Duration,
    /// How often each cell's stopped tasks are read for out-of-memory stops.
    pub oom_interval: Duration,
    pub prices: Prices,
}

impl Default for SizingSettings {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(3600),
            lookback: Duration::from_secs(14 * 86400),
            oom_interval: Duration::from_secs(60),
            prices: Prices::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Up,
    Down,
    None,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Up => "up",
            Self::Down => "down",
            Self::None => "none",
        }
    }

    /// From `current` to `to`: up when either grows, down when neither grows and it
    /// changes.
    pub fn of(current: TaskSize, to: TaskSize) -> Self {
        if to.cpu() > current.cpu() || to.memory() > current.memory() {
            Self::Up
        } else if to != current {
            Self::Down
        } else {
            Self::None
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RecommendationStatus {
    /// `cpu` and `memory` are what the tenant needs.
    Recommended,
    /// Too little data (or none recent): nothing is recommended; `reason` says how much
    /// there is.
    NotEnoughData,
}

/// What a recommendation comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// CloudWatch's CPU and memory over the lookback.
    Metrics,
    /// A task ECS stopped because it ran out of memory.
    OutOfMemory,
}

/// The rightsizer's latest conclusion for a tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Recommendation {
    pub status: RecommendationStatus,
    /// `none` when the current size is right (or there is not enough data).
    pub direction: Direction,
    /// The recommended size; absent without enough data.
    pub cpu: Option<u32>,
    pub memory: Option<u32>,
    /// The size it was computed for (the spec's when it was computed).
    pub current: SizeDoc,
    pub trigger: Trigger,
    /// Why, in words, with the figures.
    pub reason: String,
    pub evidence: Evidence,
    pub computed_at: DateTime<Utc>,
    pub monthly_cost: MonthlyCost,
}

impl Recommendation {
    /// The recommended size, when there is one.
    pub fn size(&self) -> Option<TaskSize> {
        TaskSize::new(self.cpu?, self.memory?).ok()
    }

    /// The size it was computed for.
    pub fn current_size(&self) -> Option<TaskSize> {
        TaskSize::new(self.current.cpu, self.current.memory).ok()
    }

    /// A change to make: recommended, and not the current size.
    pub fn change(&self) -> Option<TaskSize> {
        self.size().filter(|_| self.direction != Direction::None)
    }
}

/// What the service used, as the recommendation read it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Evidence {
    /// One-minute CPU and memory samples read.
    pub cpu_samples: u32,
    pub memory_samples: u32,
    pub window: DataWindow,
    /// The decaying-weight 90th percentile of CPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_p90: Option<Usage>,
    /// The peak of the daily peaks of memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_peak: Option<Usage>,
    /// Each day's memory peak (MiB), the last day first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub memory_daily_peaks: Vec<f64>,
    /// The need with the margin: CPU units and MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_target: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_target: Option<f64>,
    /// The service's task count when it was computed, and the spec's bounds on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tasks: Option<TaskCount>,
    /// Why CPU is kept as it is despite the estimate (horizontal scaling owns it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_held: Option<String>,
    /// The out-of-memory stop behind the recommendation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out_of_memory: Option<OomStop>,
}

/// The span the samples cover within the lookback.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DataWindow {
    pub lookback_hours: f64,
    /// From the oldest sample to the newest.
    pub hours: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<DateTime<Utc>>,
}

impl DataWindow {
    pub fn span(&self) -> TimeDelta {
        TimeDelta::milliseconds((self.hours * 3_600_000.0) as i64)
    }
}

/// A use of CPU (units) or memory (MiB), and as a percentage of the current size.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Usage {
    pub amount: f64,
    pub percent_of_current: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TaskCount {
    pub desired: u32,
    pub min: u32,
    pub max: u32,
}

/// What the tenant's tasks cost a month at the current and the recommended size, at the
/// configured Fargate prices, for the task count the service had.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MonthlyCost {
    #[schema(example = "USD")]
    pub currency: String,
    pub tasks: u32,
    pub current: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recommended: Option<f64>,
}

/// A task ECS stopped because a container ran out of memory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OomStop {
    pub task_arn: String,
    pub stopped_at: Option<DateTime<Utc>>,
    pub container: String,
    /// ECS's words.
    #[schema(example = "OutOfMemoryError: Container killed due to memory usage")]
    pub reason: String,
    /// The task's memory (MiB) when it stopped.
    pub memory: u32,
}

/// Who made a sizing change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChangeTrigger {
    /// `auto` applied a recommendation from the metrics.
    Auto,
    /// `auto` raised memory after an out-of-memory stop.
    OutOfMemory,
    /// A person applied the recommendation (`POST …/sizing/apply`).
    Manual,
    /// The rightsizer put the size back after its change failed to deploy.
    Revert,
}

impl ChangeTrigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::OutOfMemory => "out_of_memory",
            Self::Manual => "manual",
            Self::Revert => "revert",
        }
    }

    /// The rightsizer's own changes: a failed deployment of one is put back.
    pub fn is_automatic(self) -> bool {
        matches!(self, Self::Auto | Self::OutOfMemory)
    }
}

/// The last change of size made through sizing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Change {
    pub at: DateTime<Utc>,
    /// The generation the change wrote.
    pub generation: i64,
    pub from: SizeDoc,
    pub to: SizeDoc,
    pub direction: Direction,
    pub trigger: ChangeTrigger,
    /// `rightsizer` or `key:<name>`.
    pub actor: String,
    /// Until its deployment completed, failed or was overtaken by another change.
    pub settled: bool,
    /// How it ended, once settled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
}

/// What the rightsizer keeps on a tenant (`tenants.sizing`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = TenantSizing)]
pub struct Sizing {
    /// The latest recommendation; absent until the first run (and with `mode: off`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recommendation: Option<Recommendation>,
    /// What happens with the recommendation: applied, waiting (and why), or left to a
    /// person in `recommend` mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_change: Option<Change>,
    /// After a rightsizing deployment failed, `auto` changes nothing until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frozen_until: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frozen_reason: Option<String>,
    /// Tasks stopped out of memory within the lookback: memory is never recommended
    /// below what they needed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub out_of_memory: Vec<OomStop>,
    /// The size the run before recommended: a downsize needs the same twice in a row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<SizeDoc>,
}

impl Sizing {
    /// What an ETag covers: the recommended size and what was done, not the figures
    /// recomputed every interval.
    pub fn versioned(&self) -> Self {
        Self {
            recommendation: None,
            previous: None,
            action: None,
            out_of_memory: Vec::new(),
            ..self.clone()
        }
    }

    /// The recommended direction and size, without the figures behind them.
    pub fn recommended(&self) -> Option<(Direction, Option<SizeDoc>)> {
        self.recommendation
            .as_ref()
            .map(|r| (r.direction, r.size().map(SizeDoc::from)))
    }

    pub fn frozen(&self, now: DateTime<Utc>) -> bool {
        self.frozen_until.is_some_and(|t| t > now)
    }
}
