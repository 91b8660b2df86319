//! Whether a tenant is up, from AWS's own signals: its ECS service's tasks and deployment,
//! its target group's targets, its CloudWatch alarms and the last minutes' metrics. The
//! worker observes every cell's tenants on an interval ([`observe`]) and keeps a snapshot on
//! each tenant; the API reads one tenant live on demand ([`live`]).
//!
//! The roll-up ([`roll_up`]), worst first:
//! - `down`: no task running, no healthy target, or the `no-healthy` alarm in ALARM;
//! - `degraded`: any other alarm in ALARM, an unhealthy target, or fewer tasks running than
//!   desired;
//! - `healthy`: none of the above;
//! - `unknown`: not observed yet, not observable (paused, being deleted), or the observation
//!   failed; the reason says which.

pub mod live;
pub mod observe;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::reconcile::alarms;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    Healthy,
    Degraded,
    Down,
    Unknown,
}

impl HealthStatus {
    pub const ALL: [HealthStatus; 4] = [Self::Healthy, Self::Degraded, Self::Down, Self::Unknown];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Degraded => "degraded",
            Self::Down => "down",
            Self::Unknown => "unknown",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|h| h.as_str() == s)
    }
}

/// What the worker last observed of a tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = TenantHealth)]
pub struct Health {
    pub status: HealthStatus,
    /// Why, in words: the signals that decided the status.
    #[schema(example = "alarm humangov-texas-5xx-rate in ALARM")]
    pub reason: String,
    /// When AWS was last asked; absent until the first observation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_at: Option<DateTime<Utc>>,
    /// Since when the status has been what it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
    /// While `unknown`: the last status that was observed, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_known: Option<HealthStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tasks: Option<Tasks>,
    /// The service's newest (PRIMARY) deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<Deployment>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets: Option<Targets>,
    /// Each of the tenant's alarms, with its state.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alarms: Vec<AlarmState>,
    /// The last minutes' traffic and load.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Window>,
}

impl Default for Health {
    /// What a tenant shows before its first observation (and what a client makes of an
    /// answer without `health`, from a server that did not observe).
    fn default() -> Self {
        Self::unknown("not observed yet", None)
    }
}

impl Health {
    /// Not observed, for `reason`; keeps what was known before.
    pub fn unknown(reason: impl Into<String>, before: Option<&Health>) -> Self {
        let last_known = before.and_then(Health::known);
        Self {
            status: HealthStatus::Unknown,
            reason: reason.into(),
            observed_at: None,
            since: None,
            last_known,
            tasks: None,
            deployment: None,
            targets: None,
            alarms: Vec::new(),
            metrics: None,
        }
    }

    /// The status, or while unknown the last one observed.
    pub fn known(&self) -> Option<HealthStatus> {
        match self.status {
            HealthStatus::Unknown => self.last_known,
            s => Some(s),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Tasks {
    pub desired: i32,
    pub running: i32,
    pub pending: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Deployment {
    pub id: String,
    pub task_definition: Option<String>,
    /// `IN_PROGRESS`, `COMPLETED` or `FAILED`, as ECS reports it.
    pub rollout_state: Option<String>,
    pub rollout_state_reason: Option<String>,
    pub desired: i32,
    pub running: i32,
    pub pending: i32,
    pub failed_tasks: i32,
    pub updated_at: Option<DateTime<Utc>>,
}

/// The target group's targets, by the state the load balancer gives them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Targets {
    pub healthy: u32,
    pub unhealthy: u32,
    pub initial: u32,
    pub draining: u32,
    pub unused: u32,
    pub unavailable: u32,
}

impl Targets {
    pub fn count(&mut self, state: &str) {
        match state {
            "healthy" => self.healthy += 1,
            "unhealthy" => self.unhealthy += 1,
            "initial" => self.initial += 1,
            "draining" => self.draining += 1,
            "unused" => self.unused += 1,
            _ => self.unavailable += 1,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AlarmState {
    pub name: String,
    /// `no-healthy`, `unhealthy`, `5xx-rate`, `latency`, `cpu-high` or `memory-high`.
    pub kind: String,
    /// `OK`, `ALARM` or `INSUFFICIENT_DATA`.
    pub state: String,
    pub since: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Sums and averages over the last `seconds`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Window {
    pub seconds: u32,
    /// Requests the load balancer sent to the targets; absent when there were none.
    pub requests: Option<f64>,
    /// Of those, answered 5xx by the tasks.
    pub errors_5xx: Option<f64>,
    /// The service's average CPU and memory utilization, in percent.
    pub cpu_percent: Option<f64>,
    pub memory_percent: Option<f64>,
    /// Why the metrics could not be read, if they could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
}

impl Window {
    /// The window of `seconds` from each metric's points: sums of the counts, means of the
    /// utilizations; a metric without points is absent.
    pub fn summarise(seconds: u32, points: impl Fn(&str) -> Option<Vec<f64>>) -> Self {
        let points = |key| points(key).filter(|v: &Vec<f64>| !v.is_empty());
        let sum = |key| points(key).map(|v| v.iter().sum::<f64>());
        let mean = |key| points(key).map(|v| v.iter().sum::<f64>() / v.len() as f64);
        Self {
            seconds,
            requests: sum("requests"),
            errors_5xx: sum("errors_5xx"),
            cpu_percent: mean("cpu_percent"),
            memory_percent: mean("memory_percent"),
            unavailable: None,
        }
    }

    /// A window whose metrics could not be read, and why.
    pub fn unavailable(seconds: u32, reason: String) -> Self {
        Self {
            seconds,
            requests: None,
            errors_5xx: None,
            cpu_percent: None,
            memory_percent: None,
            unavailable: Some(reason),
        }
    }
}

/// Everything read of one tenant in one observation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observation {
    /// `None`: the service was not found.
    pub tasks: Option<Tasks>,
    pub deployment: Option<Deployment>,
    pub targets: Option<Targets>,
    pub alarms: Vec<AlarmState>,
    pub metrics: Option<Window>,
}

/// The status and its reason, from one tenant's observation (see the module's rules).
pub fn roll_up(o: &Observation, target_group: &str) -> (HealthStatus, String) {
    let mut down = Vec::new();
    let mut degraded = Vec::new();
    match o.tasks {
        None => down.push("the ECS service does not exist".to_owned()),
        Some(t) if t.running == 0 => {
            down.push(format!("no task running ({} desired)", t.desired));
        }
        Some(t) if t.running < t.desired => {
            degraded.push(format!("{} of {} tasks running", t.running, t.desired));
        }
        Some(_) => {}
    }
    if let Some(t) = o.targets {
        if t.healthy == 0 {
            down.push(format!("no healthy target in {target_group}"));
        }
        if t.unhealthy > 0 {
            degraded.push(format!(
                "{} unhealthy target(s) in {target_group}",
                t.unhealthy
            ));
        }
    }
    for a in o.alarms.iter().filter(|a| a.state == "ALARM") {
        let since = a
            .since
            .map(|t| format!(" since {}", t.format("%Y-%m-%dT%H:%M:%SZ")))
            .unwrap_or_default();
        let line = format!("alarm {} in ALARM{since}", a.name);
        if a.kind == alarms::NO_HEALTHY {
            down.push(line);
        } else {
            degraded.push(line);
        }
    }
    if !down.is_empty() {
        return (HealthStatus::Down, down.join("; "));
    }
    if !degraded.is_empty() {
        return (HealthStatus::Degraded, degraded.join("; "));
    }
    let mut fine = Vec::new();
    if let Some(t) = o.tasks {
        fine.push(format!("{} of {} tasks running", t.running, t.desired));
    }
    if let Some(t) = o.targets {
        fine.push(format!("{} healthy target(s)", t.healthy));
    }
    fine.push("no alarm firing".to_owned());
    (HealthStatus::Healthy, fine.join(", "))
}

/// The snapshot of an observation made at `at`, given the one it replaces.
pub fn snapshot(o: Observation, target_group: &str, at: DateTime<Utc>, before: &Health) -> Health {
    let (status, reason) = roll_up(&o, target_group);
    Health {
        since: since(before, status, at),
        status,
        reason,
        observed_at: Some(at),
        last_known: None,
        tasks: o.tasks,
        deployment: o.deployment,
        targets: o.targets,
        alarms: o.alarms,
        metrics: o.metrics,
    }
}

/// The status kept its start time if it did not change.
pub fn since(before: &Health, status: HealthStatus, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if before.status == status {
        before.since.or(Some(at))
    } else {
        Some(at)
    }
}

/// The history event a change of health deserves, if any: `health.down`,
/// `health.degraded` or `health.recovered`. Unknown is not a change of health; a tenant
/// that went unknown and comes back as it was gets no event.
pub fn transition(before: &Health, after: &Health) -> Option<&'static str> {
    let was = before.known();
    match (was, after.status) {
        (_, HealthStatus::Unknown) => None,
        (Some(a), b) if a == b => None,
        (_, HealthStatus::Down) => Some("health.down"),
        (_, HealthStatus::Degraded) => Some("health.degraded"),
        (Some(HealthStatus::Down | HealthStatus::Degraded), HealthStatus::Healthy) => {
            Some("health.recovered")
        }
        (_, HealthStatus::Healthy) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tasks(desired: i32, running: i32) -> Option<Tasks> {
        Some(Tasks {
            desired,
            running,
            pending: 0,
        })
    }

    fn targets(healthy: u32, unhealthy: u32) -> Option<Targets> {
        Some(Targets {
            healthy,
            unhealthy,
            ..Targets::default()
        })
    }

    fn alarm(kind: &str, state: &str) -> AlarmState {
        AlarmState {
            name: format!("humangov-texas-{kind}"),
            kind: kind.to_owned(),
            state: state.to_owned(),
            since: None,
            reason: None,
        }
    }

    fn ok_alarms() -> Vec<AlarmState> {
        alarms::KINDS.iter().map(|k| alarm(k, "OK")).collect()
    }

    fn healthy() -> Observation {
        Observation {
            tasks: tasks(2, 2),
            targets: targets(2, 0),
            alarms: ok_alarms(),
            ..Observation::default()
        }
    }

    fn status(o: &Observation) -> HealthStatus {
        roll_up(o, "tg").0
    }

    #[test]
    fn all_signals_fine_is_healthy_and_says_so() {
        let (s, reason) = roll_up(&healthy(), "tg");
        assert_eq!(s, HealthStatus::Healthy);
        assert_eq!(
            reason,
            "2 of 2 tasks running, 2 healthy target(s), no alarm firing"
        );
    }

    #[test]
    fn nothing_running_no_healthy_target_or_the_no_healthy_alarm_is_down() {
        let mut o = healthy();
        o.tasks = tasks(2, 0);
        assert_eq!(
            roll_up(&o, "tg"),
            (HealthStatus::Down, "no task running (2 desired)".into())
        );
        let mut o = healthy();
        o.targets = targets(0, 2);
        let (s, reason) = roll_up(&o, "tg");
        assert_eq!(s, HealthStatus::Down);
        assert!(reason.contains("no healthy target in tg"), "{reason}");
        let mut o = healthy();
        o.alarms[0] = alarm(alarms::NO_HEALTHY, "ALARM");
        assert_eq!(status(&o), HealthStatus::Down);
        let mut o = healthy();
        o.tasks = None;
        assert_eq!(status(&o), HealthStatus::Down);
    }

    #[test]
    fn any_other_alarm_unhealthy_targets_or_missing_tasks_is_degraded() {
        for kind in &alarms::KINDS[1..] {
            let mut o = healthy();
            let i = alarms::KINDS.iter().position(|k| k == kind).unwrap();
            o.alarms[i] = alarm(kind, "ALARM");
            let (s, reason) = roll_up(&o, "tg");
            assert_eq!(s, HealthStatus::Degraded, "{kind}");
            assert!(
                reason.contains(&format!("humangov-texas-{kind} in ALARM")),
                "{reason}"
            );
        }
        let mut o = healthy();
        o.targets = targets(1, 1);
        assert_eq!(status(&o), HealthStatus::Degraded);
        let mut o = healthy();
        o.tasks = tasks(3, 2);
        assert_eq!(
            roll_up(&o, "tg"),
            (HealthStatus::Degraded, "2 of 3 tasks running".into())
        );
    }

    #[test]
    fn insufficient_data_is_not_an_alarm_and_down_outranks_degraded() {
        let mut o = healthy();
        o.alarms[2] = alarm(alarms::ERROR_RATE, "INSUFFICIENT_DATA");
        assert_eq!(status(&o), HealthStatus::Healthy);
        o.alarms[2] = alarm(alarms::ERROR_RATE, "ALARM");
        o.tasks = tasks(2, 0);
        let (s, reason) = roll_up(&o, "tg");
        assert_eq!(s, HealthStatus::Down);
        assert!(
            !reason.contains("5xx"),
            "only the reasons for the worst status: {reason}"
        );
    }

    #[test]
    fn transitions_name_the_new_status_and_recovery_and_ignore_unknown() {
        let at = Utc::now();
        let h = |o: Observation, before: &Health| snapshot(o, "tg", at, before);
        let never = Health::unknown("not observed yet", None);
        let fine = h(healthy(), &never);
        assert_eq!(
            transition(&never, &fine),
            None,
            "first sight of a healthy tenant"
        );
        let mut o = healthy();
        o.alarms[2] = alarm(alarms::ERROR_RATE, "ALARM");
        let bad = h(o, &fine);
        assert_eq!(transition(&fine, &bad), Some("health.degraded"));
        let mut o = healthy();
        o.tasks = tasks(2, 0);
        let worse = h(o, &bad);
        assert_eq!(transition(&bad, &worse), Some("health.down"));
        let lost = Health::unknown("ecs:DescribeServices failed", Some(&worse));
        assert_eq!(lost.last_known, Some(HealthStatus::Down));
        assert_eq!(transition(&worse, &lost), None);
        let back = h(healthy(), &lost);
        assert_eq!(transition(&lost, &back), Some("health.recovered"));
        assert_eq!(transition(&back, &h(healthy(), &back)), None);
    }

    #[test]
    fn since_is_kept_while_the_status_holds() {
        let t0 = Utc::now();
        let t1 = t0 + chrono::Duration::seconds(60);
        let first = snapshot(healthy(), "tg", t0, &Health::unknown("x", None));
        let second = snapshot(healthy(), "tg", t1, &first);
        assert_eq!(second.since, Some(t0));
        assert_eq!(second.observed_at, Some(t1));
    }

    #[test]
    fn the_snapshot_reads_back_from_its_json() {
        let mut o = healthy();
        o.metrics = Some(Window {
            seconds: 300,
            requests: Some(120.0),
            errors_5xx: None,
            cpu_percent: Some(12.5),
            memory_percent: Some(40.0),
            unavailable: None,
        });
        let h = snapshot(o, "tg", Utc::now(), &Health::unknown("x", None));
        let json = serde_json::to_value(&h).unwrap();
        assert_eq!(json["status"], "healthy");
        assert_eq!(json["tasks"]["running"], 2);
        let back: Health = serde_json::from_value(json).unwrap();
        assert_eq!(back, h);
        let default: Health =
            serde_json::from_str(r#"{"status": "unknown", "reason": "not observed yet"}"#).unwrap();
        assert_eq!(default.status, HealthStatus::Unknown);
    }
}
