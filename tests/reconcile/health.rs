//! Tenant health against the AWS emulator: the alarms as a resource (made as specified,
//! repaired, removed), the observed health and its transitions, the live reading behind
//! `GET /v1/tenants/{name}/health` with its cache, and the calls one observation costs.

use std::{collections::BTreeMap, time::Duration};

use crate::harness::{settings, spec, Stack};
use aws_sdk_cloudwatch::types::{MetricAlarm, StateValue};
use serde_json::Value;
use sqlx::PgPool;
use statehouse::{
    domain::{state::StateSlug, tenant::DataPolicy},
    health::HealthStatus,
    metrics::Metrics,
    reconcile::{alarms, names::TenantNames, service, TAG_MANAGED_BY, TAG_TENANT},
    worker::health::observe_cell,
};

const INTERVAL: Duration = Duration::from_secs(1);

fn names(stack: &Stack, name: &str) -> TenantNames {
    stack.platform.names(StateSlug::parse(name).unwrap())
}

async fn tenant_alarms(stack: &Stack, name: &str) -> Vec<MetricAlarm> {
    alarms::describe_prefix(&stack.aws.cloudwatch, &names(stack, name).alarm_prefix)
        .await
        .unwrap()
}

/// Every alarm in the emulator, whoever made it.
async fn all_alarms(stack: &Stack) -> Vec<MetricAlarm> {
    stack
        .aws
        .cloudwatch
        .describe_alarms()
        .send()
        .await
        .unwrap()
        .metric_alarms()
        .to_vec()
}

fn dims(a: &MetricAlarm) -> BTreeMap<String, String> {
    let from_metric = a.dimensions().iter();
    let from_queries = a
        .metrics()
        .iter()
        .filter_map(|q| q.metric_stat()?.metric())
        .flat_map(|m| m.dimensions().iter());
    from_metric
        .chain(from_queries)
        .map(|d| {
            (
                d.name().unwrap_or_default().to_owned(),
                d.value().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

async fn health_events(stack: &Stack, name: &str) -> Vec<(String, Value)> {
    sqlx::query_as(
        "SELECT action, details FROM tenant_events \
         WHERE tenant_name = $1 AND action LIKE 'health.%' ORDER BY id",
    )
    .bind(name)
    .fetch_all(&stack.pool)
    .await
    .unwrap()
}

async fn wait_health(
    stack: &Stack,
    name: &str,
    want: HealthStatus,
) -> statehouse::domain::tenant::Tenant {
    stack
        .wait_for(name, Duration::from_secs(30), |t| t.health.status == want)
        .await
}

#[sqlx::test]
async fn every_alarm_is_made_as_specified_repaired_after_a_hand_edit_and_removed_with_the_tenant(
    pool: PgPool,
) {
    let mut s = settings();
    s.resync_interval = Duration::from_secs(4);
    let stack = Stack::start(pool, 10, s).await;
    stack.create("texas", spec()).await;
    let t = stack.ready("texas").await;
    let n = names(&stack, "texas");
    let cell = stack.cell().clone();
    let tg_arn = t.resources["target_group"]["arn"]
        .as_str()
        .unwrap()
        .to_owned();
    let tg = alarms::target_group_dimension(&tg_arn).to_owned();
    let lb = alarms::load_balancer_dimension(&cell.listener_arn);

    let found = tenant_alarms(&stack, "texas").await;
    let mut kinds: Vec<&str> = found
        .iter()
        .filter_map(|a| a.alarm_name()?.strip_prefix(&n.alarm_prefix))
        .collect();
    kinds.sort_unstable();
    let mut expected = alarms::KINDS.to_vec();
    expected.sort_unstable();
    assert_eq!(kinds, expected);
    let by_kind = |kind: &str| {
        found
            .iter()
            .find(|a| a.alarm_name() == Some(&format!("{}{kind}", n.alarm_prefix)))
            .unwrap()
            .clone()
    };
    for a in &found {
        let tags = alarms::tags_of(&stack.aws.cloudwatch, a.alarm_arn().unwrap())
            .await
            .unwrap();
        assert_eq!(
            tags.get(TAG_TENANT).map(String::as_str),
            Some("texas"),
            "{a:?}"
        );
        assert_eq!(
            tags.get(TAG_MANAGED_BY).map(String::as_str),
            Some("statehouse")
        );
    }
    let lb_dims = BTreeMap::from([
        ("LoadBalancer".to_owned(), lb.clone()),
        ("TargetGroup".to_owned(), tg.clone()),
    ]);
    let ecs_dims = BTreeMap::from([
        ("ClusterName".to_owned(), cell.cluster.clone()),
        ("ServiceName".to_owned(), n.service.clone()),
    ]);
    let no_healthy = by_kind(alarms::NO_HEALTHY);
    assert_eq!(no_healthy.metric_name(), Some("HealthyHostCount"));
    assert_eq!(no_healthy.namespace(), Some("AWS/ApplicationELB"));
    assert_eq!(no_healthy.statistic().map(|s| s.as_str()), Some("Minimum"));
    assert_eq!(no_healthy.threshold(), Some(1.0));
    assert_eq!(
        no_healthy.comparison_operator().map(|c| c.as_str()),
        Some("LessThanThreshold")
    );
    assert_eq!(
        (
            no_healthy.evaluation_periods(),
            no_healthy.datapoints_to_alarm()
        ),
        (Some(2), Some(2))
    );
    assert_eq!(no_healthy.treat_missing_data(), Some("breaching"));
    assert_eq!(no_healthy.period(), Some(60));
    assert_eq!(dims(&no_healthy), lb_dims);
    let unhealthy = by_kind(alarms::UNHEALTHY);
    assert_eq!(unhealthy.metric_name(), Some("UnHealthyHostCount"));
    assert_eq!(unhealthy.statistic().map(|s| s.as_str()), Some("Maximum"));
    assert_eq!(
        unhealthy.comparison_operator().map(|c| c.as_str()),
        Some("GreaterThanOrEqualToThreshold")
    );
    assert_eq!(
        (
            unhealthy.evaluation_periods(),
            unhealthy.datapoints_to_alarm()
        ),
        (Some(5), Some(5))
    );
    let rate = by_kind(alarms::ERROR_RATE);
    assert_eq!(
        rate.metrics().len(),
        3,
        "two metrics and the expression: {rate:?}"
    );
    let expression = rate.metrics().iter().find_map(|q| q.expression()).unwrap();
    assert!(expression.contains("requests >= 20"), "{expression}");
    assert!(
        expression.contains("100 * FILL(errors, 0) / requests"),
        "{expression}"
    );
    let metric_names: Vec<&str> = rate
        .metrics()
        .iter()
        .filter_map(|q| q.metric_stat()?.metric()?.metric_name())
        .collect();
    assert!(
        metric_names.contains(&"HTTPCode_Target_5XX_Count")
            && metric_names.contains(&"RequestCount")
    );
    assert_eq!(
        (
            rate.threshold(),
            rate.evaluation_periods(),
            rate.datapoints_to_alarm()
        ),
        (Some(5.0), Some(5), Some(3))
    );
    assert_eq!(rate.treat_missing_data(), Some("notBreaching"));
    assert_eq!(dims(&rate), lb_dims);
    let latency = by_kind(alarms::LATENCY);
    assert_eq!(latency.metric_name(), Some("TargetResponseTime"));
    assert_eq!(latency.extended_statistic(), Some("p90"));
    assert_eq!(latency.threshold(), Some(2.0));
    for (kind, metric) in [
        (alarms::CPU_HIGH, "CPUUtilization"),
        (alarms::MEMORY_HIGH, "MemoryUtilization"),
    ] {
        let a = by_kind(kind);
        assert_eq!(
            (a.namespace(), a.metric_name()),
            (Some("AWS/ECS"), Some(metric))
        );
        assert_eq!(
            (a.threshold(), a.evaluation_periods()),
            (Some(90.0), Some(5))
        );
        assert_eq!(dims(&a), ecs_dims);
    }

    // The service's deployments watch two of them and roll back (set again by the first
    // resync: the emulator forgets deployment settings given to CreateService).
    stack.reconcile("texas").await;
    stack.settled("texas").await;
    let svc = service::describe(&stack.aws.ecs, &cell.cluster, &n.service)
        .await
        .unwrap()
        .unwrap();
    let watched = svc
        .deployment_configuration()
        .and_then(|d| d.alarms())
        .expect("deployment alarms");
    assert!(watched.enable() && watched.rollback());
    let mut watched_names = watched.alarm_names().to_vec();
    watched_names.sort();
    assert_eq!(
        watched_names,
        [
            format!("{}5xx-rate", n.alarm_prefix),
            format!("{}no-healthy", n.alarm_prefix)
        ]
    );
    let scaling_alarms: Vec<String> = all_alarms(&stack)
        .await
        .iter()
        .filter_map(|a| a.alarm_name())
        .filter(|name| name.starts_with("TargetTracking-") && name.contains(&n.service))
        .map(str::to_owned)
        .collect();
    assert!(
        !scaling_alarms.is_empty(),
        "the scaling policy made its alarms"
    );

    // By hand: one alarm deleted, another loosened. The next resync restores both.
    let before: i64 = sqlx::query_scalar("SELECT COALESCE(max(id), 0) FROM tenant_events")
        .fetch_one(&stack.pool)
        .await
        .unwrap();
    stack
        .aws
        .cloudwatch
        .delete_alarms()
        .alarm_names(format!("{}latency", n.alarm_prefix))
        .send()
        .await
        .unwrap();
    let cpu = by_kind(alarms::CPU_HIGH);
    stack
        .aws
        .cloudwatch
        .put_metric_alarm()
        .alarm_name(cpu.alarm_name().unwrap())
        .namespace("AWS/ECS")
        .metric_name("CPUUtilization")
        .set_dimensions(Some(cpu.dimensions().to_vec()))
        .statistic(aws_sdk_cloudwatch::types::Statistic::Average)
        .period(60)
        .evaluation_periods(5)
        .threshold(99.0)
        .comparison_operator(aws_sdk_cloudwatch::types::ComparisonOperator::GreaterThanThreshold)
        .send()
        .await
        .unwrap();
    // Restored by the next resync, and the history says it drifted.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let drift: Vec<Value> = sqlx::query_scalar(
            "SELECT details FROM tenant_events WHERE tenant_name = 'texas' AND id > $1 \
               AND action = 'resource.drift_repaired' AND details->>'resource' = 'alarms'",
        )
        .bind(before)
        .fetch_all(&stack.pool)
        .await
        .unwrap();
        let restored = tenant_alarms(&stack, "texas").await;
        let cpu_back = restored
            .iter()
            .find(|a| a.alarm_name() == cpu.alarm_name())
            .is_some_and(|a| {
                a.threshold() == Some(90.0) && a.alarm_description() == cpu.alarm_description()
            });
        let puts = drift
            .iter()
            .flat_map(|d| d["calls"].as_array().cloned().unwrap_or_default())
            .filter(|c| c == "PutMetricAlarm")
            .count();
        if restored.len() == alarms::KINDS.len() && cpu_back && puts >= 2 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not restored: {} alarms, cpu-high back: {cpu_back}, drift events: {drift:?}",
            restored.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stack.settled("texas").await;
    // Application Auto Scaling's own alarms were left as they were.
    let still: Vec<String> = all_alarms(&stack)
        .await
        .iter()
        .filter_map(|a| a.alarm_name())
        .filter(|name| name.starts_with("TargetTracking-") && name.contains(&n.service))
        .map(str::to_owned)
        .collect();
    assert_eq!(still, scaling_alarms);

    // Deleting the tenant removes its alarms, and the scaling policy's go with the policy.
    stack.delete("texas", DataPolicy::Purge).await;
    stack
        .wait_for("texas", Duration::from_secs(60), |t| {
            t.status.as_str() == "deleted"
        })
        .await;
    let left: Vec<String> = all_alarms(&stack)
        .await
        .iter()
        .filter_map(|a| a.alarm_name())
        .filter(|name| name.starts_with(&n.alarm_prefix) || name.contains(&n.service))
        .map(str::to_owned)
        .collect();
    assert!(left.is_empty(), "alarms left behind: {left:?}");
    assert!(stack.leftovers("texas").await.is_empty());
    stack.stop().await;
}

#[sqlx::test]
async fn an_alarm_in_alarm_makes_the_tenant_degraded_and_back_to_ok_recovered(pool: PgPool) {
    let mut s = settings();
    s.health_interval = INTERVAL;
    let stack = Stack::start(pool, 1, s).await;
    stack.create("ohio", spec()).await;
    stack.ready("ohio").await;
    // Before any task is attached to the target group: nothing healthy behind the load
    // balancer is `down`, and says so.
    let t = wait_health(&stack, "ohio", HealthStatus::Down).await;
    assert!(
        t.health.reason.contains("no healthy target"),
        "{:?}",
        t.health
    );
    stack.attach_tasks().await;
    let t = wait_health(&stack, "ohio", HealthStatus::Healthy).await;
    let h = &t.health;
    assert_eq!(h.targets.map(|t| t.healthy), Some(1), "{h:?}");
    assert_eq!(
        h.tasks.map(|t| (t.desired, t.running)),
        Some((1, 1)),
        "{h:?}"
    );
    assert_eq!(h.alarms.len(), alarms::KINDS.len(), "{h:?}");
    assert!(h.observed_at.is_some() && h.since.is_some());
    let recovered_from_down = health_events(&stack, "ohio").await;
    assert_eq!(
        recovered_from_down
            .iter()
            .map(|(a, _)| a.as_str())
            .collect::<Vec<_>>(),
        ["health.down", "health.recovered"]
    );

    let alarm = format!("{}5xx-rate", names(&stack, "ohio").alarm_prefix);
    let set = |state: StateValue| {
        stack
            .aws
            .cloudwatch
            .set_alarm_state()
            .alarm_name(&alarm)
            .state_value(state)
            .state_reason("set by hand in a test")
            .send()
    };
    set(StateValue::Alarm).await.unwrap();
    let t = wait_health(&stack, "ohio", HealthStatus::Degraded).await;
    assert!(
        t.health.reason.contains(&format!("alarm {alarm} in ALARM")),
        "{:?}",
        t.health
    );
    let events = health_events(&stack, "ohio").await;
    let (action, details) = events.last().unwrap();
    assert_eq!(action, "health.degraded");
    assert_eq!(details["from"], "healthy");
    assert_eq!(details["to"], "degraded");
    let evidence = details["evidence"]["alarms"].as_array().unwrap();
    assert!(
        evidence
            .iter()
            .any(|a| a["name"] == alarm.as_str() && a["state"] == "ALARM"),
        "{details}"
    );

    set(StateValue::Ok).await.unwrap();
    wait_health(&stack, "ohio", HealthStatus::Healthy).await;
    let events = health_events(&stack, "ohio").await;
    assert_eq!(events.last().unwrap().0, "health.recovered");
    assert_eq!(events.last().unwrap().1["from"], "degraded");
    stack.stop().await;
}

#[sqlx::test]
async fn a_tenant_whose_tasks_never_run_is_down_with_the_reason(pool: PgPool) {
    let mut s = settings();
    s.health_interval = INTERVAL;
    s.retry_budget = Duration::from_secs(2);
    let stack = Stack::start_with(pool, 0, s, Duration::from_secs(2)).await;
    stack.create("idaho", spec()).await;
    // The deployment never gets a task running: the tenant fails, and its health says why.
    let t = stack
        .wait_for("idaho", Duration::from_secs(60), |t| {
            t.health.status == HealthStatus::Down
        })
        .await;
    assert_eq!(t.status.as_str(), "failed");
    assert!(
        t.health.reason.contains("no task running (1 desired)"),
        "{:?}",
        t.health
    );
    assert_eq!(t.health.tasks.map(|t| t.running), Some(0));
    stack.stop().await;
}

fn calls_by_operation(stack: &Stack) -> BTreeMap<String, u64> {
    let mut by_op = BTreeMap::new();
    for (k, n) in stack.aws.calls.snapshot() {
        *by_op.entry(k.operation).or_default() += n;
    }
    by_op
}

fn delta(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(op, n)| (op.clone(), n - before.get(op).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

#[sqlx::test]
async fn concurrent_reads_of_one_tenants_health_make_one_round_of_aws_calls(pool: PgPool) {
    let stack = Stack::start(pool, 1, settings()).await;
    stack.create("utah", spec()).await;
    stack.ready("utah").await;
    stack.settled("utah").await;
    stack.attach_tasks().await;
    // A few minutes of traffic, as the load balancer and ECS would report it.
    let t = stack.tenant("utah").await;
    let tg_arn = t.resources["target_group"]["arn"].as_str().unwrap();
    let lb = alarms::load_balancer_dimension(&stack.cell().listener_arn);
    let dim = |k: &str, v: &str| {
        aws_sdk_cloudwatch::types::Dimension::builder()
            .name(k)
            .value(v)
            .build()
    };
    let at = aws_smithy_types::DateTime::from_secs(chrono::Utc::now().timestamp() - 120);
    for (namespace, metric, value, on_lb) in [
        ("AWS/ApplicationELB", "RequestCount", 100.0, true),
        ("AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", 3.0, true),
        ("AWS/ApplicationELB", "TargetResponseTime", 0.2, true),
        ("AWS/ECS", "CPUUtilization", 40.0, false),
    ] {
        let dimensions = if on_lb {
            vec![
                dim("TargetGroup", alarms::target_group_dimension(tg_arn)),
                dim("LoadBalancer", &lb),
            ]
        } else {
            vec![
                dim("ClusterName", &stack.cell().cluster),
                dim("ServiceName", &names(&stack, "utah").service),
            ]
        };
        stack
            .aws
            .cloudwatch
            .put_metric_data()
            .namespace(namespace)
            .metric_data(
                aws_sdk_cloudwatch::types::MetricDatum::builder()
                    .metric_name(metric)
                    .set_dimensions(Some(dimensions))
                    .timestamp(at)
                    .value(value)
                    .build(),
            )
            .send()
            .await
            .unwrap();
    }
    let token = "health-test-token-0123456789";
    let base = stack.api(token).await;
    let client = reqwest::Client::new();
    let before = calls_by_operation(&stack);
    let reads = (0..20).map(|_| {
        client
            .get(format!("{base}/v1/tenants/utah/health"))
            .bearer_auth(token)
            .send()
    });
    let answers = futures::future::join_all(reads).await;
    let mut bodies = Vec::new();
    for a in answers {
        let a = a.unwrap();
        assert_eq!(a.status(), 200);
        bodies.push(a.json::<Value>().await.unwrap());
    }
    let made = delta(&before, &calls_by_operation(&stack));
    // One reading: the service, the tenant's alarms, its targets, the hour's metrics, and
    // the percentile on its own (the emulator answers it with a 500, retried by the SDK).
    assert_eq!(made.get("DescribeServices"), Some(&1), "{made:?}");
    assert_eq!(made.get("DescribeAlarms"), Some(&1), "{made:?}");
    assert_eq!(made.get("DescribeTargetHealth"), Some(&1), "{made:?}");
    assert!(
        bodies.iter().all(|b| b["read_at"] == bodies[0]["read_at"]),
        "one reading for all"
    );
    let reading = &bodies[0];
    assert_eq!(reading["health"]["status"], "healthy", "{reading}");
    assert_eq!(reading["health"]["tasks"]["running"], 1);
    for series in ["requests", "errors_5xx", "cpu_percent", "memory_percent"] {
        assert!(
            reading["series"][series]["values"].is_array(),
            "{series}: {reading}"
        );
        assert!(
            reading["series"][series].get("unavailable").is_none(),
            "{series}: {reading}"
        );
    }
    // A statistic the emulator cannot compute is unavailable, with AWS's answer, and does
    // not cost the rest of the reading.
    let latency = &reading["series"]["latency_p90_seconds"];
    assert!(
        latency["unavailable"]
            .as_str()
            .is_some_and(|r| r.contains("GetMetricData")),
        "{latency}"
    );
    assert!(reading["events"].is_array());

    // Once the reading is older than its 10 seconds, the next request reads AWS again.
    tokio::time::sleep(statehouse::health::live::TTL + Duration::from_millis(200)).await;
    let again = calls_by_operation(&stack);
    let fresh: Value = client
        .get(format!("{base}/v1/tenants/utah/health"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_ne!(fresh["read_at"], reading["read_at"]);
    assert_eq!(
        delta(&again, &calls_by_operation(&stack)).get("DescribeServices"),
        Some(&1)
    );
    let missing = client
        .get(format!("{base}/v1/tenants/vermont/health"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    stack.stop().await;
}

#[sqlx::test]
async fn one_observation_of_a_cell_costs_one_target_health_call_per_tenant_and_a_few_in_all(
    pool: PgPool,
) {
    let stack = Stack::start(pool, 1, settings()).await;
    let states = [
        "maine", "iowa", "kansas", "georgia", "alaska", "hawaii", "nebraska", "oregon", "texas",
        "utah", "vermont", "wyoming",
    ];
    for name in states {
        stack.create(name, spec()).await;
    }
    for name in states {
        stack.ready(name).await;
    }
    let before = calls_by_operation(&stack);
    let report = observe_cell(
        &stack.pool,
        &stack.aws,
        &stack.platform,
        "cell-1",
        &Metrics::default(),
    )
    .await
    .unwrap();
    let made = delta(&before, &calls_by_operation(&stack));
    let n = states.len() as u64;
    assert_eq!(report.observed, states.len(), "{report:?}");
    assert_eq!(made.get("DescribeTargetHealth"), Some(&n), "{made:?}");
    assert_eq!(
        made.get("DescribeServices"),
        Some(&n.div_ceil(10)),
        "{made:?}"
    );
    assert_eq!(made.get("DescribeAlarms"), Some(&1), "{made:?}");
    assert_eq!(made.get("GetMetricData"), Some(&1), "{made:?}");
    assert_eq!(made.len(), 4, "no other call: {made:?}");
    let total: u64 = made.values().sum();
    assert_eq!(report.aws_calls, total);
    let per_tenant = total as f64 / n as f64;
    println!(
        "one health observation of {n} tenants: {total} AWS calls, {per_tenant:.2} per tenant"
    );
    assert!(per_tenant <= 1.5, "{per_tenant} calls per tenant");
    stack.stop().await;
}
