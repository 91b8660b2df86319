//! Rightsizing against the AWS emulator: synthetic CPU and memory put with PutMetricData
//! over the lookback, read back by the rightsizer in batched GetMetricData, and what
//! `recommend` and `auto` make of them. Stopped tasks, which the emulator keeps none of,
//! come from a fixture of ECS's DescribeTasks answer served by the fault proxy.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;
use statehouse::{
    cli::synthetic::{self, Load},
    domain::{
        spec::{sizing::SizeDoc, SizingDoc, SizingMode, SpecDoc},
        tenant::{Tenant, TenantStatus},
    },
    reconcile::service,
    sizing::{Direction, RecommendationStatus, SizingSettings, Trigger},
    worker::{sizing::Rightsizer, WorkerSettings},
};

use crate::{
    harness::{settings, spec, Stack},
    proxy::{FaultConfig, Rule},
};

const TOKEN: &str = "sizing-tests-admin-token-0123456789";

fn sized(cpu: u32, memory: u32, counts: (u32, u32, u32), mode: SizingMode) -> SpecDoc {
    SpecDoc {
        cpu,
        memory,
        min_count: counts.0,
        desired_count: counts.1,
        max_count: counts.2,
        sizing: SizingDoc {
            mode,
            ..SizingDoc::default()
        },
        ..spec()
    }
}

fn rightsizer<'a>(stack: &'a Stack, settings: &'a SizingSettings) -> Rightsizer<'a> {
    Rightsizer {
        pool: &stack.pool,
        aws: &stack.aws,
        platform: &stack.platform,
        settings,
        metrics: &stack.metrics,
    }
}

/// A steady load on the tenant's service from `over` ago until now, a point `every`.
async fn load(stack: &Stack, name: &str, cpu: f64, memory: f64, over: TimeDelta, every: TimeDelta) {
    let now = Utc::now();
    let service = format!("humangov-{name}");
    let l = Load {
        cluster: &stack.cell().cluster,
        service: &service,
        cpu_percent: cpu,
        memory_percent: memory,
        from: now - over,
        to: now,
        every,
    };
    synthetic::put(&stack.aws.cloudwatch, &l).await.unwrap();
}

/// Busy: CPU at 95 % and memory at 90 % of 256 CPU / 512 MiB for two days.
async fn busy(stack: &Stack, name: &str) {
    load(
        stack,
        name,
        95.0,
        90.0,
        TimeDelta::days(2),
        TimeDelta::minutes(10),
    )
    .await;
}

/// The task definition the tenant's service runs, as (cpu, memory).
async fn running_size(stack: &Stack, name: &str) -> (String, String) {
    let svc = service::describe(
        &stack.aws.ecs,
        &stack.cell().cluster,
        &format!("humangov-{name}"),
    )
    .await
    .unwrap()
    .expect("the service");
    let td = stack
        .aws
        .ecs
        .describe_task_definition()
        .task_definition(svc.task_definition().unwrap())
        .send()
        .await
        .unwrap();
    let td = td.task_definition().unwrap();
    (
        td.cpu().unwrap().to_owned(),
        td.memory().unwrap().to_owned(),
    )
}

async fn events(stack: &Stack, name: &str, action: &str) -> Vec<(String, String, Value)> {
    sqlx::query_as(
        "SELECT actor, message, details FROM tenant_events \
         WHERE tenant_name = $1 AND action = $2 ORDER BY id",
    )
    .bind(name)
    .bind(action)
    .fetch_all(&stack.pool)
    .await
    .unwrap()
}

/// The sizes the tenant's tasks have had, oldest first, as (cpu, memory, since), and its
/// `tenant.ready` events as (message, at).
#[allow(clippy::type_complexity)]
async fn sizes(
    stack: &Stack,
    name: &str,
) -> (Vec<(i32, i32, DateTime<Utc>)>, Vec<(String, DateTime<Utc>)>) {
    let sizes = sqlx::query_as(
        "SELECT s.cpu, s.memory, s.since FROM tenant_sizes s JOIN tenants t ON t.id = s.tenant_id \
         WHERE t.name = $1 ORDER BY s.since",
    )
    .bind(name)
    .fetch_all(&stack.pool)
    .await
    .unwrap();
    let ready = sqlx::query_as(
        "SELECT message, at FROM tenant_events WHERE tenant_name = $1 AND action = 'tenant.ready' ORDER BY id",
    )
    .bind(name)
    .fetch_all(&stack.pool)
    .await
    .unwrap();
    (sizes, ready)
}

async fn sizing_updates(stack: &Stack, name: &str) -> Vec<Value> {
    events(stack, name, "tenant.updated")
        .await
        .into_iter()
        .filter(|(actor, ..)| actor == "rightsizer")
        .map(|(_, _, d)| d)
        .collect()
}

fn action(t: &Tenant) -> String {
    t.sizing.action.clone().unwrap_or_default()
}

#[sqlx::test]
async fn metrics_in_the_lookback_make_an_upsize_a_downsize_and_not_enough_data(pool: PgPool) {
    let stack = Stack::start(pool, 10, settings()).await;
    // Texas is busy at its only task; Vermont idles at its fewest; Ohio has six hours.
    stack
        .create("texas", sized(256, 512, (1, 1, 1), SizingMode::Recommend))
        .await;
    stack
        .create(
            "vermont",
            sized(1024, 4096, (1, 1, 3), SizingMode::Recommend),
        )
        .await;
    stack
        .create("ohio", sized(256, 512, (1, 1, 1), SizingMode::Recommend))
        .await;
    for name in ["texas", "vermont", "ohio"] {
        stack.ready(name).await;
    }
    busy(&stack, "texas").await;
    load(
        &stack,
        "vermont",
        4.0,
        8.0,
        TimeDelta::days(8),
        TimeDelta::minutes(30),
    )
    .await;
    load(
        &stack,
        "ohio",
        50.0,
        50.0,
        TimeDelta::hours(6),
        TimeDelta::minutes(10),
    )
    .await;

    let settings = SizingSettings::default();
    let r = rightsizer(&stack, &settings);
    let tenants = vec![
        stack.tenant("texas").await,
        stack.tenant("vermont").await,
        stack.tenant("ohio").await,
    ];
    // Counted on clients of their own: the background worker's health rounds read the
    // same services and metrics.
    let counted = stack.own_clients().await;
    let report = Rightsizer {
        aws: &counted,
        ..rightsizer(&stack, &settings)
    }
    .recommend(&tenants, Utc::now())
    .await
    .unwrap();
    assert_eq!(report.recommended, 3);
    // The three services in one DescribeServices; their CPU and memory in one
    // GetMetricData a day of the 14-day lookback.
    let calls: std::collections::BTreeMap<String, u64> = counted
        .calls
        .snapshot()
        .into_iter()
        .map(|(k, n)| (k.operation, n))
        .collect();
    assert_eq!(
        calls,
        [
            ("DescribeServices".to_owned(), 1),
            ("GetMetricData".to_owned(), 14)
        ]
        .into(),
        "{calls:?}"
    );
    assert!(report.changed.is_empty(), "recommend mode changes nothing");

    let texas = stack.tenant("texas").await;
    let rec = texas.sizing.recommendation.clone().unwrap();
    assert_eq!(rec.status, RecommendationStatus::Recommended);
    assert_eq!(rec.direction, Direction::Up);
    // 95 % of 256 is 243 units, × 1.15 = 280; 90 % of 512 MiB × 1.15 = 530 MiB.
    assert_eq!((rec.cpu, rec.memory), (Some(512), Some(1024)));
    assert!(
        (280..=300).contains(&rec.evidence.cpu_samples),
        "{:?}",
        rec.evidence
    );
    assert!(
        (47.0..=48.1).contains(&rec.evidence.window.hours),
        "{:?}",
        rec.evidence.window
    );
    assert_eq!(rec.evidence.window.lookback_hours, 336.0);
    let p90 = rec.evidence.cpu_p90.unwrap();
    assert_eq!((p90.amount, p90.percent_of_current), (243.2, 95.0));
    assert_eq!(rec.evidence.memory_peak.unwrap().amount, 460.8);
    assert_eq!(rec.monthly_cost.current, 9.01);
    assert_eq!(rec.monthly_cost.recommended, Some(18.02));
    assert!(
        rec.reason
            .starts_with("upsize: CPU p90 243 units (95% of 256)"),
        "{}",
        rec.reason
    );
    assert!(
        action(&texas).starts_with("recommend mode"),
        "{}",
        action(&texas)
    );
    assert_eq!((texas.generation, texas.spec.cpu), (1, 256));

    let vermont = stack.tenant("vermont").await.sizing.recommendation.unwrap();
    assert_eq!(vermont.direction, Direction::Down);
    assert_eq!((vermont.cpu, vermont.memory), (Some(256), Some(512)));
    assert!(
        vermont.evidence.window.hours >= 7.0 * 24.0,
        "{:?}",
        vermont.evidence.window
    );
    assert!(
        vermont.reason.starts_with("downsize:"),
        "{}",
        vermont.reason
    );

    let ohio = stack.tenant("ohio").await.sizing.recommendation.unwrap();
    assert_eq!(ohio.status, RecommendationStatus::NotEnoughData);
    assert_eq!((ohio.cpu, ohio.memory), (None, None));
    assert!(
        ohio.reason.starts_with("not enough data: ")
            && ohio.reason.contains("a recommendation needs 24 h"),
        "{}",
        ohio.reason
    );
    assert!(
        (5.5..=6.1).contains(&ohio.evidence.window.hours),
        "{:?}",
        ohio.evidence.window
    );

    // A recommendation is an event when it is news, not every run.
    let recommended = |name| events(&stack, name, "sizing.recommended");
    assert_eq!(recommended("texas").await.len(), 1);
    assert_eq!(recommended("vermont").await.len(), 1);
    assert!(recommended("ohio").await.is_empty());
    let tenants = vec![stack.tenant("texas").await, stack.tenant("vermont").await];
    r.recommend(&tenants, Utc::now()).await.unwrap();
    assert_eq!(recommended("texas").await.len(), 1);
    let exported = stack.metrics.render();
    for line in [
        "statehouse_sizing_recommendations_total{direction=\"up\"} 2",
        "statehouse_sizing_recommendations_total{direction=\"not_enough_data\"} 1",
    ] {
        assert!(exported.contains(line), "{line} in:\n{exported}");
    }

    // A person accepts Texas's: a spec change by their key, deployed as a new revision.
    let api = stack.api(TOKEN).await;
    let http = reqwest::Client::new();
    let applied = http
        .post(format!("{api}/v1/tenants/texas/sizing/apply"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(applied.status(), StatusCode::OK);
    let t = stack.ready("texas").await;
    assert_eq!((t.generation, t.spec.cpu, t.spec.memory), (2, 512, 1024));
    assert_eq!(
        running_size(&stack, "texas").await,
        ("512".into(), "1024".into())
    );
    let (actor, message, details) = events(&stack, "texas", "tenant.updated")
        .await
        .pop()
        .unwrap();
    assert_eq!(actor, "key:bootstrap");
    assert!(
        message.contains("256 CPU / 512 MiB → 512 CPU / 1024 MiB"),
        "{message}"
    );
    assert_eq!(details["sizing"]["trigger"], "manual");
    assert!(
        details["sizing"]["evidence"]["cpu_samples"]
            .as_u64()
            .unwrap()
            > 0
    );
    stack.stop().await;
}

fn looping(interval: Duration) -> WorkerSettings {
    let mut s = settings();
    s.sizing.interval = interval;
    s
}

#[sqlx::test]
async fn auto_applies_an_upsize_as_a_new_revision_and_then_keeps_the_cooldown(pool: PgPool) {
    let stack = Stack::start(pool, 10, looping(Duration::from_secs(2))).await;
    stack
        .create("texas", sized(256, 512, (1, 1, 1), SizingMode::Auto))
        .await;
    stack.ready("texas").await;
    busy(&stack, "texas").await;

    // The worker's own rounds find it, apply it, and the reconciler deploys it.
    let t = stack
        .wait_for("texas", Duration::from_secs(60), |t| {
            t.generation == 2 && t.status == TenantStatus::Ready && t.observed_generation == 2
        })
        .await;
    assert_eq!((t.spec.cpu, t.spec.memory), (512, 1024));
    assert_eq!(
        running_size(&stack, "texas").await,
        ("512".into(), "1024".into())
    );
    // The new size counts from its deployment, not from the spec write: samples in between
    // came from tasks of the old size.
    let (history, ready) = sizes(&stack, "texas").await;
    let sized: Vec<(i32, i32)> = history.iter().map(|(c, m, _)| (*c, *m)).collect();
    assert_eq!(sized, [(256, 512), (512, 1024)]);
    assert!(
        history[1].2 >= t.sizing.last_change.as_ref().unwrap().at,
        "{history:?}"
    );
    // Written as the pass that saw the deployment complete ends, after its event.
    let deployed = ready
        .iter()
        .find(|(message, _)| message.starts_with("generation 2 is ready"))
        .expect("generation 2 became ready")
        .1;
    assert!(history[1].2 >= deployed, "{history:?} {ready:?}");
    let updates = sizing_updates(&stack, "texas").await;
    assert_eq!(updates.len(), 1, "{updates:?}");
    assert_eq!(updates[0]["sizing"]["trigger"], "auto");
    assert_eq!(updates[0]["sizing"]["direction"], "up");
    assert!(
        updates[0]["sizing"]["evidence"]["cpu_p90"]["amount"]
            .as_f64()
            .unwrap()
            > 240.0
    );
    let t = stack
        .wait_for("texas", Duration::from_secs(30), |t| {
            t.sizing.last_change.as_ref().is_some_and(|c| c.settled)
        })
        .await;
    let change = t.sizing.last_change.unwrap();
    assert_eq!(
        change.outcome.as_deref(),
        Some("deployed (ready with generation 2)")
    );

    // An operator raises the floor to 1 vCPU: the upsize that calls for waits out the
    // hour after the last one.
    let mut floor = t.spec.clone();
    floor.sizing.min = SizeDoc {
        cpu: 1024,
        memory: 2048,
    };
    stack.update_spec("texas", floor).await;
    let t = stack
        .wait_for("texas", Duration::from_secs(60), |t| {
            t.status == TenantStatus::Ready && action(t).contains("cooldown")
        })
        .await;
    assert!(
        action(&t).starts_with("waits: cooldown: the last change (up, auto)"),
        "{}",
        action(&t)
    );
    assert_eq!(t.sizing.recommendation.as_ref().unwrap().cpu, Some(1024));
    // Several rounds later still nothing more.
    let before = t.generation;
    let later = stack
        .wait_for("texas", Duration::from_secs(30), |x| {
            x.sizing.recommendation.as_ref().is_some_and(|r| {
                r.computed_at
                    > t.sizing.recommendation.as_ref().unwrap().computed_at + TimeDelta::seconds(3)
            })
        })
        .await;
    assert_eq!(later.generation, before);
    assert_eq!(sizing_updates(&stack, "texas").await.len(), 1);
    stack.stop().await;
}

#[sqlx::test]
async fn a_rightsizing_change_waits_while_its_tenant_is_in_a_rollout(pool: PgPool) {
    let stack = Stack::start(pool, 1, settings()).await;
    stack.create("iowa", spec()).await;
    stack
        .create("texas", sized(256, 512, (1, 1, 1), SizingMode::Auto))
        .await;
    stack.ready("iowa").await;
    stack.ready("texas").await;
    stack.attach_tasks().await;
    busy(&stack, "texas").await;
    let api = stack.api(TOKEN).await;
    let http = reqwest::Client::new();
    // Iowa goes first; Texas waits in the second wave for an approval that never comes.
    let created: Value = http
        .post(format!("{api}/v1/rollouts"))
        .bearer_auth(TOKEN)
        .json(&json!({
            "patch": {"app_image": "humangov/app:2.0.0"},
            "selector": {"only": ["iowa", "texas"]},
            "strategy": {"canary": ["iowa"], "canary_bake": "0s", "approval": "manual"},
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{created}"))
        .to_owned();

    let settings = SizingSettings::default();
    let r = rightsizer(&stack, &settings);
    r.recommend(&[stack.tenant("texas").await], Utc::now())
        .await
        .unwrap();
    let t = stack.tenant("texas").await;
    assert_eq!(
        t.sizing.recommendation.as_ref().unwrap().direction,
        Direction::Up
    );
    assert_eq!(
        action(&t),
        format!("waits: the tenant is in rollout {id}; sizing changes wait for it to end")
    );
    assert_eq!((t.generation, t.spec.cpu), (1, 256));

    let aborted = http
        .post(format!("{api}/v1/rollouts/{id}/abort"))
        .bearer_auth(TOKEN)
        .json(&json!({"rollback": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(aborted.status(), StatusCode::OK);
    let report = r
        .recommend(&[stack.tenant("texas").await], Utc::now())
        .await
        .unwrap();
    assert_eq!(report.changed, ["texas"]);
    let t = stack.ready("texas").await;
    assert_eq!((t.generation, t.spec.cpu, t.spec.memory), (2, 512, 1024));
    stack.stop().await;
}

/// ECS's DescribeTasks answer for a task of `service` whose `app` container was killed
/// for running out of memory at `memory` MiB.
fn stopped_task(arn: &str, service: &str, memory: u32, stopped_at: i64) -> Value {
    json!({
        "taskArn": arn,
        "clusterArn": "arn:aws:ecs:us-west-2:123456789012:cluster/statehouse-dev",
        "group": format!("service:{service}"),
        "launchType": "FARGATE",
        "cpu": "256",
        "memory": memory.to_string(),
        "lastStatus": "STOPPED",
        "desiredStatus": "STOPPED",
        "stopCode": "EssentialContainerExited",
        "stoppedReason": "Essential container in task exited",
        "stoppedAt": stopped_at,
        "containers": [
            {"name": "nginx", "lastStatus": "STOPPED", "exitCode": 0},
            {"name": "app", "lastStatus": "STOPPED", "exitCode": 137,
             "reason": "OutOfMemoryError: Container killed due to memory usage"},
        ],
    })
}

#[sqlx::test]
async fn a_task_stopped_out_of_memory_raises_memory_at_once(pool: PgPool) {
    let now = Utc::now().timestamp();
    let ohio_task = "arn:aws:ecs:us-west-2:123456789012:task/statehouse-dev/0a1b2c3d4e5f";
    let iowa_task = "arn:aws:ecs:us-west-2:123456789012:task/statehouse-dev/9f8e7d6c5b4a";
    let faults = FaultConfig::default()
        .rule(Rule::reply(
            "ecs",
            "ListTasks",
            &json!({"taskArns": [ohio_task, iowa_task]}),
        ))
        .rule(Rule::reply(
            "ecs",
            "DescribeTasks",
            &json!({
                "tasks": [
                    stopped_task(ohio_task, "humangov-ohio", 512, now - 120),
                    stopped_task(iowa_task, "humangov-iowa", 512, now - 60),
                ],
                "failures": [],
            }),
        ));
    let stack = Stack::start_through(faults, pool, 10, settings()).await;
    stack
        .create("ohio", sized(256, 512, (1, 1, 2), SizingMode::Auto))
        .await;
    stack
        .create("iowa", sized(256, 512, (1, 1, 2), SizingMode::Recommend))
        .await;
    stack.ready("ohio").await;
    stack.ready("iowa").await;

    let settings = SizingSettings::default();
    let r = rightsizer(&stack, &settings);
    let report = r.check_out_of_memory("cell-1", Utc::now()).await.unwrap();
    assert_eq!(report.changed, ["ohio"]);
    // max(512 + 128, 512 × 1.2) = 640 MiB: 1024 is the next size 256 CPU takes.
    let t = stack.ready("ohio").await;
    assert_eq!((t.generation, t.spec.cpu, t.spec.memory), (2, 256, 1024));
    assert_eq!(
        running_size(&stack, "ohio").await,
        ("256".into(), "1024".into())
    );
    let updates = sizing_updates(&stack, "ohio").await;
    assert_eq!(updates[0]["sizing"]["trigger"], "out_of_memory");
    assert_eq!(
        updates[0]["sizing"]["evidence"]["out_of_memory"]["task_arn"],
        ohio_task
    );
    assert_eq!(t.sizing.out_of_memory.len(), 1);

    // Iowa, in recommend mode, is told and left as it is.
    let iowa = stack.tenant("iowa").await;
    let rec = iowa.sizing.recommendation.unwrap();
    assert_eq!(rec.trigger, Trigger::OutOfMemory);
    assert_eq!(
        (rec.memory, iowa.spec.memory, iowa.generation),
        (Some(1024), 512, 1)
    );
    assert!(rec.reason.contains("OutOfMemoryError"), "{}", rec.reason);

    // The same stopped task, still listed, is not answered twice.
    let again = r.check_out_of_memory("cell-1", Utc::now()).await.unwrap();
    assert!(again.changed.is_empty(), "{again:?}");
    assert_eq!(stack.tenant("ohio").await.generation, 2);
    stack.stop().await;
}

#[sqlx::test]
async fn a_rightsizing_deployment_that_fails_is_reverted_and_sizing_frozen(pool: PgPool) {
    let refuse = Rule::error(
        "ecs",
        "RegisterTaskDefinition",
        400,
        "ClientException",
        "No Fargate configuration exists for given values",
    )
    .body("humangov-texas")
    .body("\"memory\":\"1024\"");
    let stack =
        Stack::start_through(FaultConfig::default().rule(refuse), pool, 10, settings()).await;
    stack
        .create("texas", sized(256, 512, (1, 1, 1), SizingMode::Auto))
        .await;
    let before = stack.ready("texas").await;
    let revision = running_size(&stack, "texas").await;
    busy(&stack, "texas").await;

    let settings = SizingSettings::default();
    let r = rightsizer(&stack, &settings);
    let report = r.recommend(&[before], Utc::now()).await.unwrap();
    assert_eq!(report.changed, ["texas"]);
    stack
        .wait_for("texas", Duration::from_secs(60), |t| {
            t.generation == 2 && t.status == TenantStatus::Failed
        })
        .await;

    // The background worker follows unsettled changes on every tick too, so either it or
    // this call puts the size back; the row lock lets only one of them do it.
    let cells = vec!["cell-1".to_owned()];
    let reverted = r.settle(&cells, Utc::now()).await.unwrap();
    assert!(reverted.is_empty() || reverted == ["texas"], "{reverted:?}");
    stack
        .wait_for("texas", Duration::from_secs(60), |t| t.generation == 3)
        .await;
    let t = stack.ready("texas").await;
    assert_eq!((t.generation, t.spec.cpu, t.spec.memory), (3, 256, 512));
    assert_eq!(running_size(&stack, "texas").await, revision);
    // The size that never deployed never counts for the samples.
    let (history, _) = sizes(&stack, "texas").await;
    let sized: Vec<(i32, i32)> = history.iter().map(|(c, m, _)| (*c, *m)).collect();
    assert_eq!(sized, [(256, 512)]);
    let until = t.sizing.frozen_until.expect("frozen");
    let day = until - Utc::now();
    assert!(
        day > TimeDelta::hours(23) && day <= TimeDelta::hours(24),
        "{until}"
    );
    assert!(t
        .sizing
        .frozen_reason
        .unwrap()
        .contains("No Fargate configuration"));
    let frozen = events(&stack, "texas", "sizing.frozen").await;
    assert_eq!(frozen.len(), 1);
    let updates = sizing_updates(&stack, "texas").await;
    assert_eq!(
        updates
            .iter()
            .map(|d| d["sizing"]["trigger"].clone())
            .collect::<Vec<_>>(),
        [json!("auto"), json!("revert")]
    );

    // While frozen, the same recommendation waits.
    r.recommend(&[stack.tenant("texas").await], Utc::now())
        .await
        .unwrap();
    let t = stack.tenant("texas").await;
    assert!(
        action(&t).starts_with("waits: frozen until"),
        "{}",
        action(&t)
    );
    assert_eq!(t.generation, 3);
    stack.stop().await;
}
