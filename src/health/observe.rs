//! Reading tenants' health from AWS in as few calls as the APIs allow: services ten per
//! DescribeServices, every alarm of a prefix in one paged DescribeAlarms, one
//! DescribeTargetHealth per target group (there is no batch form), and the metrics of many
//! tenants in one GetMetricData.

use std::collections::HashMap;

use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricAlarm, MetricDataQuery, MetricStat};
use aws_sdk_ecs::types::Service;
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use futures::{stream, StreamExt};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::{AlarmState, Deployment, Observation, Targets, Tasks, Window};
use crate::{
    aws::{error::sdk, Aws, AwsError},
    reconcile::alarms,
};

/// What one tenant's health is read from, as its row records its resources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub tenant: String,
    pub cluster: String,
    pub service: String,
    pub target_group_arn: String,
    /// `app/{name}/{id}`, the load balancer's CloudWatch dimension.
    pub load_balancer: String,
    /// `{prefix}-{state}-`, the start of every one of its alarms' names.
    pub alarm_prefix: String,
}

impl Subject {
    /// From the resources a tenant's passes recorded; `Err` says what is not there yet.
    pub fn from_resources(tenant: &str, resources: &Value) -> Result<Self, String> {
        let text = |kind: &str, field: &str| {
            resources[kind][field]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("no {kind} recorded yet"))
        };
        Ok(Self {
            tenant: tenant.to_owned(),
            cluster: text("service", "cluster")?,
            service: text("service", "name")?,
            target_group_arn: text("target_group", "arn")?,
            load_balancer: alarms::load_balancer_dimension(&text("listener_rule", "listener_arn")?),
            alarm_prefix: text("alarms", "prefix")?,
        })
    }

    pub fn target_group(&self) -> &str {
        alarms::target_group_dimension(&self.target_group_arn)
    }

    fn lb_dimensions(&self) -> Vec<Dimension> {
        vec![
            dim("TargetGroup", self.target_group()),
            dim("LoadBalancer", &self.load_balancer),
        ]
    }

    fn ecs_dimensions(&self) -> Vec<Dimension> {
        vec![
            dim("ClusterName", &self.cluster),
            dim("ServiceName", &self.service),
        ]
    }
}

fn dim(name: &str, value: &str) -> Dimension {
    Dimension::builder().name(name).value(value).build()
}

/// The last minutes every observation sums up.
pub const WINDOW: TimeDelta = TimeDelta::minutes(5);
pub const WINDOW_SECONDS: u32 = 300;

/// GetMetricData takes at most 500 queries; each tenant needs [`METRICS`]'s four.
const QUERIES_PER_CALL: usize = 500;
/// Target groups described at once (one call each).
const TARGET_HEALTH_CONCURRENCY: usize = 8;

/// The metrics of the window and the series, each: (key, namespace, name, statistic, on the
/// load balancer or else the service).
const METRICS: [(&str, &str, &str, &str, bool); 4] = [
    (
        "requests",
        "AWS/ApplicationELB",
        "RequestCount",
        "Sum",
        true,
    ),
    (
        "errors_5xx",
        "AWS/ApplicationELB",
        "HTTPCode_Target_5XX_Count",
        "Sum",
        true,
    ),
    ("cpu_percent", "AWS/ECS", "CPUUtilization", "Average", false),
    (
        "memory_percent",
        "AWS/ECS",
        "MemoryUtilization",
        "Average",
        false,
    ),
];

/// Observes every subject: one result per subject, in order. An `Err` is why that tenant
/// could not be observed; metrics that cannot be read leave the rest of the observation
/// standing (its window says why).
pub async fn round(
    aws: &Aws,
    subjects: &[Subject],
    alarm_prefix: &str,
) -> Vec<Result<Observation, String>> {
    if subjects.is_empty() {
        return Vec::new();
    }
    let now = Utc::now();
    let (services, alarms, targets, metrics) = tokio::join!(
        services(aws, subjects),
        alarms_by_prefix(aws, alarm_prefix),
        target_health_all(aws, subjects),
        window(aws, subjects, now),
    );
    subjects
        .iter()
        .zip(targets)
        .enumerate()
        .map(|(i, (s, targets))| {
            let services = services.as_ref().map_err(ToString::to_string)?;
            let alarms = alarms.as_ref().map_err(ToString::to_string)?;
            let targets = targets.map_err(|e| e.to_string())?;
            let service = services.get(&(s.cluster.clone(), s.service.clone()));
            let metrics = match &metrics {
                Ok(series) => window_of(series, i),
                Err(e) => Window::unavailable(WINDOW_SECONDS, e.to_string()),
            };
            Ok(observation(s, service, targets, alarms, Some(metrics)))
        })
        .collect()
}

/// One tenant's observation from what was read.
pub fn observation(
    s: &Subject,
    service: Option<&Service>,
    targets: Targets,
    alarms: &[MetricAlarm],
    metrics: Option<Window>,
) -> Observation {
    Observation {
        tasks: service.map(|svc| Tasks {
            desired: svc.desired_count(),
            running: svc.running_count(),
            // An emulator may report running above desired and pending below zero.
            pending: svc.pending_count().max(0),
        }),
        deployment: service.and_then(primary_deployment),
        targets: Some(targets),
        alarms: alarm_states(s, alarms),
        metrics,
    }
}

fn primary_deployment(svc: &Service) -> Option<Deployment> {
    let d = svc
        .deployments()
        .iter()
        .find(|d| d.status() == Some("PRIMARY"))?;
    Some(Deployment {
        id: d.id().unwrap_or_default().to_owned(),
        task_definition: d.task_definition().map(str::to_owned),
        rollout_state: d.rollout_state().map(|s| s.as_str().to_owned()),
        rollout_state_reason: d.rollout_state_reason().map(str::to_owned),
        desired: d.desired_count(),
        running: d.running_count(),
        pending: d.pending_count().max(0),
        failed_tasks: d.failed_tasks(),
        updated_at: d.updated_at().and_then(time),
    })
}

pub fn time(t: &aws_smithy_types::DateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}

/// The subject's own alarms (of its [`alarms::KINDS`]), in that order.
fn alarm_states(s: &Subject, all: &[MetricAlarm]) -> Vec<AlarmState> {
    alarms::KINDS
        .iter()
        .filter_map(|kind| {
            let name = format!("{}{kind}", s.alarm_prefix);
            let a = all.iter().find(|a| a.alarm_name() == Some(name.as_str()))?;
            Some(AlarmState {
                name,
                kind: (*kind).to_owned(),
                state: a
                    .state_value()
                    .map_or("INSUFFICIENT_DATA", |v| v.as_str())
                    .to_owned(),
                since: a.state_updated_timestamp().and_then(time),
                reason: a.state_reason().map(str::to_owned),
            })
        })
        .collect()
}

/// The subjects' services, by (cluster, name).
pub async fn services(
    aws: &Aws,
    subjects: &[Subject],
) -> Result<HashMap<(String, String), Service>, AwsError> {
    services_named(
        aws,
        subjects
            .iter()
            .map(|s| (s.cluster.as_str(), s.service.as_str())),
    )
    .await
}

/// These (cluster, name) services, by (cluster, name): ten per DescribeServices, as ECS
/// allows. One that does not exist (or only as INACTIVE) is left out.
pub async fn services_named<'a>(
    aws: &Aws,
    names: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<HashMap<(String, String), Service>, AwsError> {
    let mut by_cluster: HashMap<&str, Vec<String>> = HashMap::new();
    for (cluster, service) in names {
        by_cluster
            .entry(cluster)
            .or_default()
            .push(service.to_owned());
    }
    let mut found = HashMap::new();
    for (cluster, names) in by_cluster {
        for batch in names.chunks(10) {
            let out = aws
                .ecs
                .describe_services()
                .cluster(cluster)
                .set_services(Some(batch.to_vec()))
                .send()
                .await
                .map_err(sdk("ecs", "DescribeServices"))?;
            for svc in out.services() {
                if svc.status() == Some("INACTIVE") {
                    continue;
                }
                if let Some(name) = svc.service_name() {
                    found.insert((cluster.to_owned(), name.to_owned()), svc.clone());
                }
            }
        }
    }
    Ok(found)
}

/// Every metric alarm whose name starts with `prefix`, in one paged DescribeAlarms.
pub async fn alarms_by_prefix(aws: &Aws, prefix: &str) -> Result<Vec<MetricAlarm>, AwsError> {
    alarms::describe_prefix(&aws.cloudwatch, prefix).await
}

async fn target_health_all(aws: &Aws, subjects: &[Subject]) -> Vec<Result<Targets, AwsError>> {
    let reads: Vec<_> = subjects
        .iter()
        .map(|s| Box::pin(target_health(aws, &s.target_group_arn)))
        .collect();
    stream::iter(reads)
        .buffered(TARGET_HEALTH_CONCURRENCY)
        .collect()
        .await
}

/// The target group's targets by state: one DescribeTargetHealth.
pub async fn target_health(aws: &Aws, target_group_arn: &str) -> Result<Targets, AwsError> {
    let out = aws
        .elb
        .describe_target_health()
        .target_group_arn(target_group_arn)
        .send()
        .await
        .map_err(sdk("elasticloadbalancing", "DescribeTargetHealth"))?;
    let mut targets = Targets::default();
    for d in out.target_health_descriptions() {
        let state = d
            .target_health()
            .and_then(|h| h.state())
            .map_or("unavailable", |s| s.as_str());
        targets.count(state);
    }
    Ok(targets)
}

/// One metric's points, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
pub struct Series {
    pub timestamps: Vec<DateTime<Utc>>,
    pub values: Vec<f64>,
}

/// Query ids: a letter for the metric and the subject's index.
fn query_id(metric: usize, subject: usize) -> String {
    format!("{}{subject}", ["r", "e", "c", "m"][metric])
}

fn query(s: &Subject, metric: usize, subject: usize, period: i32) -> MetricDataQuery {
    let (_, namespace, name, stat, on_lb) = METRICS[metric];
    let dimensions = if on_lb {
        s.lb_dimensions()
    } else {
        s.ecs_dimensions()
    };
    MetricDataQuery::builder()
        .id(query_id(metric, subject))
        .metric_stat(
            MetricStat::builder()
                .metric(
                    Metric::builder()
                        .namespace(namespace)
                        .metric_name(name)
                        .set_dimensions(Some(dimensions))
                        .build(),
                )
                .period(period)
                .stat(stat)
                .build(),
        )
        .return_data(true)
        .build()
}

/// Every query's points by id, in as few GetMetricData calls as the queries allow. With
/// `retry` false a failed call is not tried again (for what the answer can do without).
pub async fn metric_data(
    aws: &Aws,
    queries: Vec<MetricDataQuery>,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    retry: bool,
) -> Result<HashMap<String, Series>, AwsError> {
    let mut found: HashMap<String, Series> = HashMap::new();
    let to_smithy = |t: DateTime<Utc>| aws_smithy_types::DateTime::from_secs(t.timestamp());
    for batch in queries.chunks(QUERIES_PER_CALL) {
        let mut token = None;
        loop {
            let out = aws
                .cloudwatch
                .get_metric_data()
                .set_metric_data_queries(Some(batch.to_vec()))
                .start_time(to_smithy(start))
                .end_time(to_smithy(end))
                .set_next_token(token)
                .customize()
                .config_override(once_only(retry))
                .send()
                .await
                .map_err(sdk("cloudwatch", "GetMetricData"))?;
            for r in out.metric_data_results() {
                let Some(id) = r.id() else { continue };
                let series = found.entry(id.to_owned()).or_default();
                for (t, v) in r.timestamps().iter().zip(r.values()) {
                    if let Some(t) = time(t) {
                        series.timestamps.push(t);
                        series.values.push(*v);
                    }
                }
            }
            token = out.next_token().map(str::to_owned);
            if token.is_none() {
                break;
            }
        }
    }
    for series in found.values_mut() {
        let mut points: Vec<(DateTime<Utc>, f64)> = series
            .timestamps
            .iter()
            .copied()
            .zip(series.values.iter().copied())
            .collect();
        points.sort_by_key(|(t, _)| *t);
        points.dedup_by_key(|(t, _)| *t);
        (series.timestamps, series.values) = points.into_iter().unzip();
    }
    Ok(found)
}

/// No change to the client's configuration, or (`retry` false) a single attempt.
fn once_only(retry: bool) -> aws_sdk_cloudwatch::config::Builder {
    let config = aws_sdk_cloudwatch::config::Builder::default();
    if retry {
        config
    } else {
        config.retry_config(aws_sdk_cloudwatch::config::retry::RetryConfig::disabled())
    }
}

/// The last [`WINDOW`] of every subject's metrics, one-minute points.
async fn window(
    aws: &Aws,
    subjects: &[Subject],
    now: DateTime<Utc>,
) -> Result<HashMap<String, Series>, AwsError> {
    let end = now.duration_trunc(TimeDelta::minutes(1)).unwrap_or(now);
    let queries = subjects
        .iter()
        .enumerate()
        .flat_map(|(i, s)| (0..METRICS.len()).map(move |m| query(s, m, i, 60)))
        .collect();
    metric_data(aws, queries, end - WINDOW, end, true).await
}

/// Subject `i`'s window.
fn window_of(series: &HashMap<String, Series>, i: usize) -> Window {
    Window::summarise(WINDOW_SECONDS, |key| {
        let m = METRICS.iter().position(|(k, ..)| *k == key)?;
        series.get(&query_id(m, i)).map(|s| s.values.clone())
    })
}

/// Requests each subject's target group served since its own start time (to the minute),
/// in one GetMetricData for all of them.
pub async fn requests_since(
    aws: &Aws,
    subjects: &[(Subject, DateTime<Utc>)],
    now: DateTime<Utc>,
) -> Result<Vec<f64>, AwsError> {
    let Some(earliest) = subjects.iter().map(|(_, at)| *at).min() else {
        return Ok(Vec::new());
    };
    let minute = |t: DateTime<Utc>| t.duration_trunc(TimeDelta::minutes(1)).unwrap_or(t);
    let queries = subjects
        .iter()
        .enumerate()
        .map(|(i, (s, _))| query(s, 0, i, 60))
        .collect();
    let found = metric_data(aws, queries, minute(earliest), now, true).await?;
    Ok(subjects
        .iter()
        .enumerate()
        .map(|(i, (_, since))| {
            found.get(&query_id(0, i)).map_or(0.0, |series| {
                series
                    .timestamps
                    .iter()
                    .zip(&series.values)
                    .filter(|(t, _)| **t >= minute(*since))
                    .map(|(_, v)| v)
                    .sum()
            })
        })
        .collect())
}

/// The last hour of one subject, one-minute points: each of [`METRICS`] by its key.
pub async fn series(
    aws: &Aws,
    s: &Subject,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<Vec<(&'static str, Series)>, AwsError> {
    let queries = (0..METRICS.len()).map(|m| query(s, m, 0, 60)).collect();
    let mut found = metric_data(aws, queries, start, end, true).await?;
    Ok(METRICS
        .iter()
        .enumerate()
        .map(|(m, (key, ..))| (*key, found.remove(&query_id(m, 0)).unwrap_or_default()))
        .collect())
}

/// The targets' p90 response time over the same hour. A query of its own, tried once: a
/// percentile is a statistic some CloudWatch implementations refuse, and that must neither
/// cost nor delay the rest of the reading.
pub async fn latency_p90(
    aws: &Aws,
    s: &Subject,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<Series, AwsError> {
    let q = MetricDataQuery::builder()
        .id("p90")
        .metric_stat(
            MetricStat::builder()
                .metric(
                    Metric::builder()
                        .namespace("AWS/ApplicationELB")
                        .metric_name("TargetResponseTime")
                        .set_dimensions(Some(s.lb_dimensions()))
                        .build(),
                )
                .period(60)
                .stat("p90")
                .build(),
        )
        .return_data(true)
        .build();
    let mut found = metric_data(aws, vec![q], start, end, false).await?;
    Ok(found.remove("p90").unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subject_needs_every_resource_its_health_is_read_from() {
        let resources = serde_json::json!({
            "service": {"name": "humangov-ohio", "cluster": "humangov"},
            "target_group": {"arn": "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/humangov-ohio/ab"},
            "listener_rule": {"listener_arn": "arn:aws:elasticloadbalancing:us-east-1:1:listener/app/humangov/cd/ef"},
            "alarms": {"prefix": "humangov-ohio-"},
        });
        let s = Subject::from_resources("ohio", &resources).unwrap();
        assert_eq!(s.target_group(), "targetgroup/humangov-ohio/ab");
        assert_eq!(s.load_balancer, "app/humangov/cd");
        let mut partial = resources.clone();
        partial.as_object_mut().unwrap().remove("alarms");
        assert_eq!(
            Subject::from_resources("ohio", &partial).unwrap_err(),
            "no alarms recorded yet"
        );
    }

    #[test]
    fn a_window_sums_counts_and_averages_utilization() {
        let mut series = HashMap::new();
        let s = |v: &[f64]| Series {
            timestamps: vec![Utc::now(); v.len()],
            values: v.to_vec(),
        };
        series.insert("r3".to_owned(), s(&[10.0, 20.0]));
        series.insert("e3".to_owned(), s(&[]));
        series.insert("c3".to_owned(), s(&[20.0, 40.0]));
        let w = window_of(&series, 3);
        assert_eq!(w.requests, Some(30.0));
        assert_eq!(w.errors_5xx, None);
        assert_eq!(w.cpu_percent, Some(30.0));
        assert_eq!(w.memory_percent, None);
    }
}
