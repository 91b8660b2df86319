//! Prometheus metrics, one registry per process (no globals, so tests can run many apps).

use std::time::Duration;

use axum::http::Method;
use prometheus_client::{
    encoding::{text::encode, EncodeLabelSet},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

use crate::{
    domain::{rollout::RolloutState, tenant::TenantStatus},
    health::HealthStatus,
};

pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransitionLabels {
    to: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AwsCallLabels {
    service: String,
    operation: String,
    outcome: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_seconds: HistogramFamily<RequestLabels>,
    tenants: Family<StatusLabels, Gauge>,
    reconciles: Family<OutcomeLabels, Counter>,
    reconcile_seconds: Histogram,
    aws_calls: Family<AwsCallLabels, Counter>,
    time_to_ready: Histogram,
    tenant_health: Family<StatusLabels, Gauge>,
    health_observations: Family<OutcomeLabels, Counter>,
    health_transitions: Family<TransitionLabels, Counter>,
    rollouts: Family<StatusLabels, Gauge>,
    rollout_tenants: Family<OutcomeLabels, Counter>,
    rollout_seconds: Family<StatusLabels, Histogram, fn() -> Histogram>,
    sizing_recommendations: Family<DirectionLabels, Counter>,
    sizing_changes: Family<TriggerLabels, Counter>,
    sizing_cost: Family<SizeLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    resync_rounds: Family<OutcomeLabels, Counter>,
    drift_found: Counter,
    deep_checks: Family<OutcomeLabels, Counter>,
    budget_wait: Family<BucketLabels, Counter<f64, std::sync::atomic::AtomicU64>>,
    budget_waits: Family<BucketLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BucketLabels {
    bucket: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabels {
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TriggerLabels {
    trigger: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SizeLabels {
    size: &'static str,
}

fn latency_buckets() -> Histogram {
    Histogram::new([
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ])
}

fn rollout_buckets() -> Histogram {
    Histogram::new([
        10.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0, 43200.0, 86400.0,
    ])
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("statehouse");
        let requests = Family::<RequestLabels, Counter>::default();
        let request_seconds: HistogramFamily<RequestLabels> =
            Family::new_with_constructor(latency_buckets);
        let tenants = Family::<StatusLabels, Gauge>::default();
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency",
            request_seconds.clone(),
        );
        registry.register("tenants", "Tenants by status", tenants.clone());
        let reconciles = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "reconciles",
            "Reconcile passes by outcome (ready, deploying, deleted, retrying, failed, lost)",
            reconciles.clone(),
        );
        let reconcile_seconds =
            Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0]);
        registry.register(
            "reconcile_duration_seconds",
            "Time one reconcile pass took",
            reconcile_seconds.clone(),
        );
        let aws_calls = Family::<AwsCallLabels, Counter>::default();
        registry.register(
            "aws_calls",
            "Requests sent to AWS by service, operation and outcome",
            aws_calls.clone(),
        );
        let time_to_ready = Histogram::new([
            0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0,
        ]);
        registry.register(
            "time_to_ready_seconds",
            "From a create or spec change to the tenant being ready with it",
            time_to_ready.clone(),
        );
        let tenant_health = Family::<StatusLabels, Gauge>::default();
        registry.register(
            "tenant_health",
            "Live tenants by observed health (healthy, degraded, down, unknown)",
            tenant_health.clone(),
        );
        let health_observations = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "health_observations",
            "Tenants read from AWS by the health observer, by outcome (observed, failed)",
            health_observations.clone(),
        );
        let health_transitions = Family::<TransitionLabels, Counter>::default();
        registry.register(
            "health_transitions",
            "Changes of a tenant's health, by the status it changed to (down, degraded, healthy)",
            health_transitions.clone(),
        );
        let rollouts = Family::<StatusLabels, Gauge>::default();
        registry.register(
            "rollouts",
            "Rollouts by state (running, awaiting_approval, paused, rolling_back, succeeded, rolled_back, rollback_failed, aborted)",
            rollouts.clone(),
        );
        let rollout_tenants = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "rollout_tenants",
            "Tenants that a rollout finished with, by outcome (succeeded, failed, superseded, reverted, revert_failed, kept)",
            rollout_tenants.clone(),
        );
        let rollout_seconds: Family<StatusLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(rollout_buckets);
        registry.register(
            "rollout_duration_seconds",
            "From a rollout's creation to its end, by how it ended",
            rollout_seconds.clone(),
        );
        let sizing_recommendations = Family::<DirectionLabels, Counter>::default();
        registry.register(
            "sizing_recommendations",
            "Rightsizing recommendations made, by direction (up, down, none, not_enough_data)",
            sizing_recommendations.clone(),
        );
        let sizing_changes = Family::<TriggerLabels, Counter>::default();
        registry.register(
            "sizing_changes",
            "Sizes changed through rightsizing, by trigger (auto, out_of_memory, manual, revert)",
            sizing_changes.clone(),
        );
        let sizing_cost = Family::<SizeLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "sizing_monthly_cost_dollars",
            "Projected monthly Fargate cost of the live tenants at their current size and at the recommended one (USD, configured prices)",
            sizing_cost.clone(),
        );
        let resync_rounds = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "resync_rounds",
            "Resync rounds (one cell's whole tenants compared with AWS in batched calls), by outcome (completed, failed)",
            resync_rounds.clone(),
        );
        let drift_found = Counter::default();
        registry.register(
            "drift_found",
            "Tenants a resync round found drifted and handed to a full pass",
            drift_found.clone(),
        );
        let deep_checks = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "deep_checks",
            "Deep checks of a whole tenant (bucket, table, role policies, target group attributes), by outcome (whole, repaired, failed)",
            deep_checks.clone(),
        );
        let budget_wait =
            Family::<BucketLabels, Counter<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "aws_budget_wait_seconds",
            "Time AWS calls spent waiting for a token of the call budget, by AWS bucket",
            budget_wait.clone(),
        );
        let budget_waits = Family::<BucketLabels, Counter>::default();
        registry.register(
            "aws_budget_waits",
            "AWS calls that had to wait for a token of the call budget, by AWS bucket",
            budget_waits.clone(),
        );
        Self {
            registry,
            budget_wait,
            budget_waits,
            resync_rounds,
            drift_found,
            deep_checks,
            sizing_recommendations,
            sizing_changes,
            sizing_cost,
            rollouts,
            rollout_tenants,
            rollout_seconds,
            tenant_health,
            health_observations,
            health_transitions,
            requests,
            request_seconds,
            tenants,
            reconciles,
            reconcile_seconds,
            aws_calls,
            time_to_ready,
        }
    }
}

/// Sets the gauge of every status in `all` from `counts`, those not counted to 0.
fn set_every<const N: usize>(
    gauges: &Family<StatusLabels, Gauge>,
    all: [&'static str; N],
    counts: &[(&str, i64)],
) {
    for status in all {
        let n = counts
            .iter()
            .find(|(s, _)| *s == status)
            .map_or(0, |(_, n)| *n);
        gauges.get_or_create(&StatusLabels { status }).set(n);
    }
}

impl Metrics {
    pub fn observe_request(&self, method: &Method, route: &str, status: u16, elapsed: Duration) {
        // Clients can send any method token; only known ones become label values.
        let method = match *method {
            Method::GET
            | Method::HEAD
            | Method::POST
            | Method::PUT
            | Method::PATCH
            | Method::DELETE
            | Method::OPTIONS => method.as_str(),
            _ => "OTHER",
        };
        let labels = RequestLabels {
            method: method.to_owned(),
            route: route.to_owned(),
            status,
        };
        self.requests.get_or_create(&labels).inc();
        self.request_seconds
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    /// Sets every status, so one that dropped to zero reads 0 rather than its old value.
    pub fn set_tenant_counts(&self, counts: &[(TenantStatus, i64)]) {
        let counts: Vec<_> = counts.iter().map(|(s, n)| (s.as_str(), *n)).collect();
        set_every(
            &self.tenants,
            TenantStatus::ALL.map(TenantStatus::as_str),
            &counts,
        );
    }

    /// Sets every health status, zeros included.
    pub fn set_health_counts(&self, counts: &[(HealthStatus, i64)]) {
        let counts: Vec<_> = counts.iter().map(|(s, n)| (s.as_str(), *n)).collect();
        set_every(
            &self.tenant_health,
            HealthStatus::ALL.map(HealthStatus::as_str),
            &counts,
        );
    }

    pub fn set_rollout_counts(&self, counts: &[(RolloutState, i64)]) {
        let counts: Vec<(&str, i64)> = counts.iter().map(|(s, n)| (s.as_str(), *n)).collect();
        set_every(
            &self.rollouts,
            RolloutState::ALL.map(RolloutState::as_str),
            &counts,
        );
    }

    /// A tenant a rollout is done with, by how.
    pub fn rollout_tenant(&self, outcome: &'static str) {
        self.rollout_tenants
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// A rollout that ended as `state`, after `elapsed`.
    pub fn rollout_ended(&self, state: RolloutState, elapsed: Duration) {
        self.rollout_seconds
            .get_or_create(&StatusLabels {
                status: state.as_str(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// A recommendation made, by its direction or `not_enough_data`.
    pub fn sizing_recommended(&self, direction: &'static str) {
        self.sizing_recommendations
            .get_or_create(&DirectionLabels { direction })
            .inc();
    }

    pub fn sizing_changed(&self, trigger: &'static str) {
        self.sizing_changes
            .get_or_create(&TriggerLabels { trigger })
            .inc();
    }

    /// The fleet's projected monthly cost now and at the recommended sizes.
    pub fn set_sizing_cost(&self, current: f64, recommended: f64) {
        for (size, v) in [("current", current), ("recommended", recommended)] {
            self.sizing_cost.get_or_create(&SizeLabels { size }).set(v);
        }
    }

    pub fn health_observed(&self, outcome: &'static str) {
        self.health_observations
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// `action` is the event written: `health.down`, `health.degraded`, `health.recovered`.
    pub fn health_transition(&self, action: &str) {
        let to = match action {
            "health.down" => "down",
            "health.degraded" => "degraded",
            _ => "healthy",
        };
        self.health_transitions
            .get_or_create(&TransitionLabels { to })
            .inc();
    }

    pub fn reconciled(&self, outcome: &'static str, elapsed: Duration) {
        self.reconciles
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
        self.reconcile_seconds.observe(elapsed.as_secs_f64());
    }

    /// `completed` or `failed`.
    pub fn resync_round(&self, outcome: &'static str) {
        self.resync_rounds
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    pub fn drift_found(&self) {
        self.drift_found.inc();
    }

    /// `whole`, `repaired` or `failed`.
    pub fn deep_check(&self, outcome: &'static str) {
        self.deep_checks
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// A call waited `waited` for a token of `bucket`'s budget.
    pub fn aws_budget_wait(&self, bucket: &'static str, waited: Duration) {
        if waited < Duration::from_millis(1) {
            return;
        }
        let labels = BucketLabels { bucket };
        self.budget_wait
            .get_or_create(&labels)
            .inc_by(waited.as_secs_f64());
        self.budget_waits.get_or_create(&labels).inc();
    }

    pub fn aws_call(&self, service: &str, operation: &str, outcome: &'static str) {
        let labels = AwsCallLabels {
            service: service.to_owned(),
            operation: operation.to_owned(),
            outcome,
        };
        self.aws_calls.get_or_create(&labels).inc();
    }

    pub fn ready_after(&self, elapsed: Duration) {
        self.time_to_ready.observe(elapsed.as_secs_f64());
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// Every sample name `/metrics` can carry: families are described (`# TYPE`) even
    /// before their first sample, with OpenMetrics' suffixes per type.
    fn exported() -> BTreeSet<String> {
        let text = Metrics::default().render();
        let mut names = BTreeSet::new();
        for line in text.lines() {
            let mut parts = line.split_whitespace();
            if (parts.next(), parts.next()) != (Some("#"), Some("TYPE")) {
                continue;
            }
            let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
                continue;
            };
            let suffixes: &[&str] = match kind {
                "counter" => &["_total"],
                "histogram" => &["_bucket", "_sum", "_count"],
                _ => &[""],
            };
            names.extend(suffixes.iter().map(|s| format!("{name}{s}")));
        }
        names
    }

    /// `statehouse_…` names in a PromQL expression.
    fn used(expr: &str) -> Vec<String> {
        let mut found = Vec::new();
        let mut rest = expr;
        while let Some(i) = rest.find("statehouse_") {
            let tail = &rest[i..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            found.push(tail[..end].to_owned());
            rest = &tail[end..];
        }
        found
    }

    #[test]
    fn the_dashboard_parses_and_uses_only_metrics_the_binary_exports() {
        let dashboard: serde_json::Value =
            serde_json::from_str(include_str!("../dashboards/statehouse.json"))
                .expect("dashboards/statehouse.json is JSON");
        let exported = exported();
        assert!(
            exported.contains("statehouse_tenant_health"),
            "{exported:?}"
        );
        let panels = dashboard["panels"].as_array().expect("panels");
        let mut seen = BTreeSet::new();
        for panel in panels {
            let title = panel["title"].as_str().expect("every panel has a title");
            let targets = panel["targets"]
                .as_array()
                .expect("every panel has queries");
            assert!(!targets.is_empty(), "{title}");
            for target in targets {
                let expr = target["expr"].as_str().expect("a PromQL expression");
                let names = used(expr);
                assert!(
                    !names.is_empty(),
                    "{title}: {expr} uses no statehouse metric"
                );
                for name in names {
                    assert!(
                        exported.contains(&name),
                        "{title}: {name} is not exported (exported: {exported:?})"
                    );
                    seen.insert(name);
                }
            }
        }
        for wanted in [
            "statehouse_tenants",
            "statehouse_tenant_health",
            "statehouse_reconciles_total",
            "statehouse_aws_calls_total",
            "statehouse_time_to_ready_seconds_bucket",
            "statehouse_health_transitions_total",
            "statehouse_rollouts",
            "statehouse_rollout_tenants_total",
            "statehouse_rollout_duration_seconds_bucket",
            "statehouse_sizing_monthly_cost_dollars",
            "statehouse_sizing_recommendations_total",
            "statehouse_sizing_changes_total",
        ] {
            assert!(seen.contains(wanted), "the dashboard shows {wanted}");
        }
    }
}
