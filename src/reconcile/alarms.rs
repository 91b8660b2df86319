//! The tenant's CloudWatch alarms: whether its target group has healthy targets, whether
//! it answers with errors or slowly, whether its tasks run hot. Named
//! `{prefix}-{state}-{kind}`, tagged like every other resource, one-minute periods. The
//! service's deployments watch `no-healthy` and `5xx-rate` and roll back when they fire.
//!
//! The `TargetTracking-…` alarms that Application Auto Scaling makes for the scaling policy
//! are its own: nothing here reads, changes or deletes them.

use std::collections::HashMap;

use aws_sdk_cloudwatch::{
    operation::describe_alarms::builders::DescribeAlarmsFluentBuilder,
    types::{
        ComparisonOperator, Dimension, Metric, MetricAlarm, MetricDataQuery, MetricStat, Statistic,
        Tag,
    },
    Client,
};

use super::{tenant_tags, Changes};
use crate::{
    aws::{error::sdk, AwsError},
    domain::state::StateSlug,
};

const CLOUDWATCH: &str = "cloudwatch";

/// Every alarm a tenant has, by the last part of its name.
pub const KINDS: [&str; 6] = [
    NO_HEALTHY,
    UNHEALTHY,
    ERROR_RATE,
    LATENCY,
    CPU_HIGH,
    MEMORY_HIGH,
];
pub const NO_HEALTHY: &str = "no-healthy";
pub const UNHEALTHY: &str = "unhealthy";
pub const ERROR_RATE: &str = "5xx-rate";
pub const LATENCY: &str = "latency";
pub const CPU_HIGH: &str = "cpu-high";
pub const MEMORY_HIGH: &str = "memory-high";

/// The alarms a deployment watches: when one fires, ECS rolls the deployment back.
pub const DEPLOYMENT_KINDS: [&str; 2] = [NO_HEALTHY, ERROR_RATE];

/// Every alarm evaluates one-minute periods.
pub const PERIOD_SECONDS: i32 = 60;

const ALB: &str = "AWS/ApplicationELB";
const ECS: &str = "AWS/ECS";

/// The thresholds, from `STATEHOUSE_ALARM_*` (defaults in `.env.sample` and the README).
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmSettings {
    /// `no-healthy`: fewer than one healthy target in this many minutes out of as many.
    pub no_healthy_periods: i32,
    /// `unhealthy`: at least one unhealthy target in this many minutes out of as many.
    pub unhealthy_periods: i32,
    /// `5xx-rate`: percentage of requests answered 5xx by the tasks, above which a minute
    /// breaches …
    pub error_rate_percent: f64,
    /// … counted only in minutes with at least this many requests …
    pub error_rate_min_requests: f64,
    /// … in this many breaching minutes …
    pub error_rate_datapoints: i32,
    /// … out of this many.
    pub error_rate_periods: i32,
    /// `latency`: p90 of the targets' response time, in seconds.
    pub latency_p90_seconds: f64,
    pub latency_periods: i32,
    /// `cpu-high` and `memory-high`: average utilization of the service, in percent.
    pub cpu_percent: f64,
    pub memory_percent: f64,
    pub utilization_periods: i32,
    /// An SNS topic told of every change to ALARM and back to OK.
    pub topic_arn: Option<String>,
}

impl Default for AlarmSettings {
    fn default() -> Self {
        Self {
            no_healthy_periods: 2,
            unhealthy_periods: 5,
            error_rate_percent: 5.0,
            error_rate_min_requests: 20.0,
            error_rate_datapoints: 3,
            error_rate_periods: 5,
            latency_p90_seconds: 2.0,
            latency_periods: 5,
            cpu_percent: 90.0,
            memory_percent: 90.0,
            utilization_periods: 5,
            topic_arn: None,
        }
    }
}

/// What the alarms measure: the tenant's target group on the cell's load balancer, and its
/// service in the cell's cluster.
pub struct Subject<'a> {
    /// `{prefix}-{state}-`; each alarm's name is this plus its kind.
    pub name_prefix: &'a str,
    /// The CloudWatch dimension values, `targetgroup/{name}/{id}` and `app/{name}/{id}`.
    pub target_group: &'a str,
    pub load_balancer: &'a str,
    pub cluster: &'a str,
    pub service: &'a str,
    pub tenant: StateSlug,
}

/// One alarm as statehouse wants it.
#[derive(Debug, Clone, PartialEq)]
pub struct Wanted {
    pub name: String,
    pub kind: &'static str,
    description: String,
    /// A single metric, or (for `5xx-rate`) the metric math in `queries`.
    metric: Option<Single>,
    queries: Vec<Query>,
    comparison: ComparisonOperator,
    threshold: f64,
    evaluation_periods: i32,
    datapoints: i32,
    /// `breaching` or `notBreaching`.
    missing: &'static str,
    actions: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
struct Single {
    namespace: &'static str,
    name: &'static str,
    /// A statistic such as `Minimum`, or a percentile such as `p90`.
    stat: &'static str,
    dimensions: Vec<(&'static str, String)>,
}

#[derive(Debug, Clone, PartialEq)]
enum Query {
    Metric {
        id: &'static str,
        metric: Single,
    },
    Expression {
        id: &'static str,
        expression: String,
    },
}

/// `arn:aws:elasticloadbalancing:…:targetgroup/{name}/{id}` → `targetgroup/{name}/{id}`.
pub fn target_group_dimension(arn: &str) -> &str {
    arn.find("targetgroup/").map_or(arn, |i| &arn[i..])
}

/// `arn:aws:elasticloadbalancing:…:listener/app/{lb}/{id}/{listener}` → `app/{lb}/{id}`.
pub fn load_balancer_dimension(listener_arn: &str) -> String {
    let Some(i) = listener_arn.find(":listener/") else {
        return listener_arn.to_owned();
    };
    let parts: Vec<&str> = listener_arn[i + ":listener/".len()..].split('/').collect();
    parts
        .get(..3)
        .map_or_else(|| listener_arn.to_owned(), |p| p.join("/"))
}

/// The alarms of one tenant, in [`KINDS`] order.
pub fn wanted(subject: &Subject<'_>, s: &AlarmSettings) -> Vec<Wanted> {
    let lb = || {
        vec![
            ("TargetGroup", subject.target_group.to_owned()),
            ("LoadBalancer", subject.load_balancer.to_owned()),
        ]
    };
    let ecs = || {
        vec![
            ("ClusterName", subject.cluster.to_owned()),
            ("ServiceName", subject.service.to_owned()),
        ]
    };
    let actions: Vec<String> = s.topic_arn.iter().cloned().collect();
    let state = subject.tenant.as_str();
    let alarm = |kind: &'static str, description: String| Wanted {
        name: format!("{}{kind}", subject.name_prefix),
        kind,
        description,
        metric: None,
        queries: Vec::new(),
        comparison: ComparisonOperator::GreaterThanThreshold,
        threshold: 0.0,
        evaluation_periods: 1,
        datapoints: 1,
        missing: "notBreaching",
        actions: actions.clone(),
    };
    let single = |namespace, name, stat, dimensions| {
        Some(Single {
            namespace,
            name,
            stat,
            dimensions,
        })
    };
    vec![
        Wanted {
            metric: single(ALB, "HealthyHostCount", "Minimum", lb()),
            comparison: ComparisonOperator::LessThanThreshold,
            threshold: 1.0,
            evaluation_periods: s.no_healthy_periods,
            datapoints: s.no_healthy_periods,
            missing: "breaching",
            ..alarm(
                NO_HEALTHY,
                format!("{state}: no healthy target behind the load balancer"),
            )
        },
        Wanted {
            metric: single(ALB, "UnHealthyHostCount", "Maximum", lb()),
            comparison: ComparisonOperator::GreaterThanOrEqualToThreshold,
            threshold: 1.0,
            evaluation_periods: s.unhealthy_periods,
            datapoints: s.unhealthy_periods,
            ..alarm(UNHEALTHY, format!("{state}: a target keeps failing its health check"))
        },
        Wanted {
            queries: vec![
                Query::Metric {
                    id: "errors",
                    metric: Single {
                        namespace: ALB,
                        name: "HTTPCode_Target_5XX_Count",
                        stat: "Sum",
                        dimensions: lb(),
                    },
                },
                Query::Metric {
                    id: "requests",
                    metric: Single {
                        namespace: ALB,
                        name: "RequestCount",
                        stat: "Sum",
                        dimensions: lb(),
                    },
                },
                Query::Expression {
                    id: "rate",
                    expression: format!(
                        "IF(requests >= {}, 100 * FILL(errors, 0) / requests, 0)",
                        s.error_rate_min_requests
                    ),
                },
            ],
            threshold: s.error_rate_percent,
            evaluation_periods: s.error_rate_periods,
            datapoints: s.error_rate_datapoints,
            ..alarm(
                ERROR_RATE,
                format!(
                    "{state}: more than {}% of requests answered 5xx (minutes with at least {} requests)",
                    s.error_rate_percent, s.error_rate_min_requests
                ),
            )
        },
        Wanted {
            metric: single(ALB, "TargetResponseTime", "p90", lb()),
            threshold: s.latency_p90_seconds,
            evaluation_periods: s.latency_periods,
            datapoints: s.latency_periods,
            ..alarm(
                LATENCY,
                format!(
                    "{state}: p90 response time above {}s",
                    s.latency_p90_seconds
                ),
            )
        },
        Wanted {
            metric: single(ECS, "CPUUtilization", "Average", ecs()),
            threshold: s.cpu_percent,
            evaluation_periods: s.utilization_periods,
            datapoints: s.utilization_periods,
            ..alarm(CPU_HIGH, format!("{state}: CPU above {}%", s.cpu_percent))
        },
        Wanted {
            metric: single(ECS, "MemoryUtilization", "Average", ecs()),
            threshold: s.memory_percent,
            evaluation_periods: s.utilization_periods,
            datapoints: s.utilization_periods,
            ..alarm(
                MEMORY_HIGH,
                format!("{state}: memory above {}%", s.memory_percent),
            )
        },
    ]
}

fn is_percentile(stat: &str) -> bool {
    stat.starts_with('p') && stat[1..].parse::<f64>().is_ok()
}

fn dimensions(dims: &[(&'static str, String)]) -> Vec<Dimension> {
    dims.iter()
        .map(|(k, v)| Dimension::builder().name(*k).value(v).build())
        .collect()
}

fn same_dimensions(have: &[Dimension], want: &[(&'static str, String)]) -> bool {
    let mut have: Vec<(&str, &str)> = have
        .iter()
        .map(|d| (d.name().unwrap_or_default(), d.value().unwrap_or_default()))
        .collect();
    let mut want: Vec<(&str, &str)> = want.iter().map(|(k, v)| (*k, v.as_str())).collect();
    have.sort_unstable();
    want.sort_unstable();
    have == want
}

fn same_set(have: &[String], want: &[String]) -> bool {
    let (mut a, mut b) = (have.to_vec(), want.to_vec());
    a.sort();
    b.sort();
    a == b
}

fn metric_matches(have: Option<&Metric>, stat: Option<&str>, want: &Single) -> bool {
    have.is_some_and(|m| {
        m.namespace() == Some(want.namespace)
            && m.metric_name() == Some(want.name)
            && same_dimensions(m.dimensions(), &want.dimensions)
    }) && stat == Some(want.stat)
}

fn queries_match(have: &[MetricDataQuery], want: &[Query]) -> bool {
    have.len() == want.len()
        && want.iter().all(|w| match w {
            Query::Metric { id, metric } => have.iter().any(|h| {
                h.id() == Some(*id)
                    && h.metric_stat().is_some_and(|s| {
                        s.period() == Some(PERIOD_SECONDS)
                            && metric_matches(s.metric(), s.stat(), metric)
                    })
                    && h.return_data() != Some(true)
            }),
            Query::Expression { id, expression } => have.iter().any(|h| {
                h.id() == Some(*id)
                    && h.expression() == Some(expression.as_str())
                    && h.return_data() != Some(false)
            }),
        })
}

/// Whether an alarm as CloudWatch describes it is the one wanted; its state is not compared.
pub fn matches(have: &MetricAlarm, want: &Wanted) -> bool {
    let metric_ok = match &want.metric {
        Some(m) => {
            let stat = if is_percentile(m.stat) {
                have.extended_statistic()
            } else {
                have.statistic().map(Statistic::as_str)
            };
            have.namespace() == Some(m.namespace)
                && have.metric_name() == Some(m.name)
                && stat == Some(m.stat)
                && same_dimensions(have.dimensions(), &m.dimensions)
                && have.period() == Some(PERIOD_SECONDS)
                && have.metrics().is_empty()
        }
        None => have.metric_name().is_none() && queries_match(have.metrics(), &want.queries),
    };
    metric_ok
        && have.comparison_operator() == Some(&want.comparison)
        && have.threshold() == Some(want.threshold)
        && have.evaluation_periods() == Some(want.evaluation_periods)
        && have
            .datapoints_to_alarm()
            .unwrap_or(want.evaluation_periods)
            == want.datapoints
        && have.treat_missing_data().unwrap_or("missing") == want.missing
        && have.actions_enabled() != Some(false)
        && same_set(have.alarm_actions(), &want.actions)
        && same_set(have.ok_actions(), &want.actions)
        && have.alarm_description() == Some(want.description.as_str())
}

fn single_metric(m: &Single) -> Metric {
    Metric::builder()
        .namespace(m.namespace)
        .metric_name(m.name)
        .set_dimensions(Some(dimensions(&m.dimensions)))
        .build()
}

fn tags(tenant: StateSlug) -> Vec<Tag> {
    tenant_tags(tenant)
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

/// Creates the alarm, or replaces its definition (CloudWatch keeps the tags of an alarm
/// that exists and ignores the ones sent).
async fn put(cw: &Client, want: &Wanted, tenant: StateSlug) -> Result<(), AwsError> {
    let mut put = cw
        .put_metric_alarm()
        .alarm_name(&want.name)
        .alarm_description(&want.description)
        .actions_enabled(true)
        .set_alarm_actions(Some(want.actions.clone()))
        .set_ok_actions(Some(want.actions.clone()))
        .comparison_operator(want.comparison.clone())
        .threshold(want.threshold)
        .evaluation_periods(want.evaluation_periods)
        .datapoints_to_alarm(want.datapoints)
        .treat_missing_data(want.missing)
        .set_tags(Some(tags(tenant)));
    if let Some(m) = &want.metric {
        put = put
            .namespace(m.namespace)
            .metric_name(m.name)
            .set_dimensions(Some(dimensions(&m.dimensions)))
            .period(PERIOD_SECONDS);
        put = if is_percentile(m.stat) {
            put.extended_statistic(m.stat)
        } else {
            put.statistic(Statistic::from(m.stat))
        };
    }
    for q in &want.queries {
        let query = match q {
            Query::Metric { id, metric } => MetricDataQuery::builder()
                .id(*id)
                .metric_stat(
                    MetricStat::builder()
                        .metric(single_metric(metric))
                        .period(PERIOD_SECONDS)
                        .stat(metric.stat)
                        .build(),
                )
                .return_data(false),
            Query::Expression { id, expression } => MetricDataQuery::builder()
                .id(*id)
                .expression(expression)
                .label(&want.name)
                .return_data(true),
        };
        put = put.metrics(query.build());
    }
    put.send()
        .await
        .map_err(sdk(CLOUDWATCH, "PutMetricAlarm"))?;
    Ok(())
}

/// The named alarms that exist (one call: DescribeAlarms takes up to 100 names).
pub async fn describe(cw: &Client, names: &[String]) -> Result<Vec<MetricAlarm>, AwsError> {
    every_page(cw, |r| r.set_alarm_names(Some(names.to_vec()))).await
}

/// Every metric alarm whose name starts with `prefix`, page by page.
pub async fn describe_prefix(cw: &Client, prefix: &str) -> Result<Vec<MetricAlarm>, AwsError> {
    every_page(cw, |r| r.alarm_name_prefix(prefix).max_records(100)).await
}

async fn every_page(
    cw: &Client,
    filter: impl Fn(DescribeAlarmsFluentBuilder) -> DescribeAlarmsFluentBuilder,
) -> Result<Vec<MetricAlarm>, AwsError> {
    let mut found = Vec::new();
    let mut token = None;
    loop {
        let out = filter(cw.describe_alarms())
            .set_next_token(token)
            .send()
            .await
            .map_err(sdk(CLOUDWATCH, "DescribeAlarms"))?;
        found.extend(out.metric_alarms().iter().cloned());
        token = out.next_token().map(str::to_owned);
        if token.is_none() {
            return Ok(found);
        }
    }
}

/// The tags on an alarm.
pub async fn tags_of(cw: &Client, arn: &str) -> Result<HashMap<String, String>, AwsError> {
    let out = cw
        .list_tags_for_resource()
        .resource_arn(arn)
        .send()
        .await
        .map_err(sdk(CLOUDWATCH, "ListTagsForResource"))?;
    Ok(out
        .tags()
        .iter()
        .filter_map(|t| Some((t.key()?.to_owned(), t.value()?.to_owned())))
        .collect())
}

/// Makes every wanted alarm exist as wanted, with the statehouse tags.
pub async fn ensure(
    cw: &Client,
    wanted: &[Wanted],
    tenant: StateSlug,
) -> Result<Changes, AwsError> {
    let names: Vec<String> = wanted.iter().map(|w| w.name.clone()).collect();
    let existing = describe(cw, &names).await?;
    let mut changes = Changes::new();
    for want in wanted {
        let Some(have) = existing.iter().find(|a| a.alarm_name() == Some(&want.name)) else {
            put(cw, want, tenant).await?;
            changes.push("PutMetricAlarm");
            continue;
        };
        if !matches(have, want) {
            put(cw, want, tenant).await?;
            changes.push("PutMetricAlarm");
        }
        let Some(arn) = have.alarm_arn() else {
            continue;
        };
        let have_tags = tags_of(cw, arn).await?;
        let missing: Vec<Tag> = tags(tenant)
            .into_iter()
            .filter(|t| {
                have_tags
                    .get(t.key().unwrap_or_default())
                    .map(String::as_str)
                    != t.value()
            })
            .collect();
        if !missing.is_empty() {
            cw.tag_resource()
                .resource_arn(arn)
                .set_tags(Some(missing))
                .send()
                .await
                .map_err(sdk(CLOUDWATCH, "TagResource"))?;
            changes.push("TagResource");
        }
    }
    Ok(changes)
}

/// Deletes the named alarms that exist, and checks they are gone.
pub async fn delete(cw: &Client, names: &[String]) -> Result<Changes, AwsError> {
    let existing: Vec<String> = describe(cw, names)
        .await?
        .iter()
        .filter_map(|a| a.alarm_name().map(str::to_owned))
        .collect();
    if existing.is_empty() {
        return Ok(Changes::new());
    }
    cw.delete_alarms()
        .set_alarm_names(Some(existing))
        .send()
        .await
        .map_err(sdk(CLOUDWATCH, "DeleteAlarms"))?;
    Ok(vec!["DeleteAlarms"])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject() -> Subject<'static> {
        Subject {
            name_prefix: "humangov-texas-",
            target_group: "targetgroup/humangov-texas/0123456789abcdef",
            load_balancer: "app/humangov/fedcba9876543210",
            cluster: "humangov",
            service: "humangov-texas",
            tenant: StateSlug::parse("texas").unwrap(),
        }
    }

    #[test]
    fn dimensions_are_read_from_the_arns() {
        assert_eq!(
            target_group_dimension(
                "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/humangov-texas/0123"
            ),
            "targetgroup/humangov-texas/0123"
        );
        assert_eq!(
            load_balancer_dimension(
                "arn:aws:elasticloadbalancing:us-east-1:1:listener/app/humangov/fedc/9876"
            ),
            "app/humangov/fedc"
        );
    }

    #[test]
    fn every_kind_is_named_after_the_tenant_and_watches_its_own_resources() {
        let all = wanted(&subject(), &AlarmSettings::default());
        let names: Vec<&str> = all.iter().map(|w| w.name.as_str()).collect();
        assert_eq!(
            names,
            KINDS
                .map(|k| format!("humangov-texas-{k}"))
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
        );
        let no_healthy = &all[0];
        assert_eq!(no_healthy.missing, "breaching");
        assert_eq!(
            (no_healthy.evaluation_periods, no_healthy.datapoints),
            (2, 2)
        );
        let rate = &all[2];
        assert!(rate.metric.is_none());
        assert!(
            matches!(&rate.queries[2], Query::Expression { expression, .. } if expression.contains("requests >= 20"))
        );
        assert_eq!(
            (rate.datapoints, rate.evaluation_periods, rate.threshold),
            (3, 5, 5.0)
        );
        let latency = all[3].metric.as_ref().unwrap();
        assert!(is_percentile(latency.stat));
        for w in &all[4..] {
            let m = w.metric.as_ref().unwrap();
            assert_eq!(m.namespace, ECS);
            assert!(m
                .dimensions
                .iter()
                .any(|(k, v)| *k == "ServiceName" && v == "humangov-texas"));
        }
    }
}
