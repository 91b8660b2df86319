//! Prometheus metrics, one registry per process (no globals, so tests can run many apps).

use std::time::Duration;

use axum::http::Method;
use prometheus_client::{
    encoding::{text::encode, EncodeLabelSet},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

use crate::domain::tenant::TenantStatus;

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
}

fn latency_buckets() -> Histogram {
    Histogram::new([
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
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
        Self {
            registry,
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
        for status in TenantStatus::ALL {
            let n = counts
                .iter()
                .find(|(s, _)| *s == status)
                .map_or(0, |(_, n)| *n);
            self.tenants
                .get_or_create(&StatusLabels {
                    status: status.as_str(),
                })
                .set(n);
        }
    }

    pub fn reconciled(&self, outcome: &'static str, elapsed: Duration) {
        self.reconciles
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
        self.reconcile_seconds.observe(elapsed.as_secs_f64());
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
