//! Drift: what someone changes by hand in the account is put back by the next periodic
//! pass, and the tenant's history says it happened.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sqlx::PgPool;
use statehouse::{
    domain::state::StateSlug,
    reconcile::{bucket, rule, service},
};

use crate::harness::{settings, spec, Stack};

const RESYNC: Duration = Duration::from_secs(4);

/// Drift events recorded for the tenant after the event `after`.
async fn drift_events(stack: &Stack, name: &str, after: i64) -> Vec<Value> {
    sqlx::query_scalar(
        "SELECT e.details FROM tenant_events e JOIN tenants t ON t.id = e.tenant_id \
         WHERE t.name = $1 AND e.action = 'resource.drift_repaired' AND e.id > $2 ORDER BY e.id",
    )
    .bind(name)
    .bind(after)
    .fetch_all(&stack.pool)
    .await
    .unwrap()
}

async fn last_event(stack: &Stack) -> i64 {
    sqlx::query_scalar("SELECT COALESCE(max(id), 0) FROM tenant_events")
        .fetch_one(&stack.pool)
        .await
        .unwrap()
}

/// A ready tenant after its first resync: the emulator forgets the deployment settings
/// CreateService was given, and that first resync puts them back.
async fn settled_tenant(stack: &Stack, name: &str) -> i64 {
    stack.create(name, spec()).await;
    stack.ready(name).await;
    stack.reconcile(name).await;
    stack.settled(name).await;
    last_event(stack).await
}

/// Waits for a drift event about `kind`, and says how long it took.
async fn repaired(stack: &Stack, name: &str, kind: &str, after: i64, since: Instant) -> Duration {
    let deadline = since + RESYNC * 2 + Duration::from_secs(10);
    loop {
        let events = drift_events(stack, name, after).await;
        if events.iter().any(|e| e["resource"] == kind) {
            return since.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "no drift event for {kind} on {name} in {:?}; drift events so far: {events:#?}",
            since.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[sqlx::test]
async fn hand_edits_are_restored_within_one_resync_and_recorded_as_drift(pool: PgPool) {
    let mut s = settings();
    s.resync_interval = RESYNC;
    let stack = Stack::start(pool, 10, s).await;
    let baseline = settled_tenant(&stack, "nevada").await;
    let aws = &stack.aws;
    let cell = stack.cell().clone();
    let names = stack.platform.names(StateSlug::parse("nevada").unwrap());
    let host = stack.platform.host(names.slug);

    // Four hand edits at once, as an operator in the console might make.
    let rules = rule::list(&aws.elb, &cell.listener_arn).await.unwrap();
    let ours = rule::find(&rules, &host)
        .expect("the tenant's rule")
        .clone();
    aws.elb
        .delete_rule()
        .rule_arn(&ours.arn)
        .send()
        .await
        .unwrap();
    let wide = json!({
        "Version": "2012-10-17",
        "Statement": [{ "Effect": "Allow", "Action": "s3:*", "Resource": "*" }]
    });
    aws.iam
        .put_role_policy()
        .role_name(&names.task_role)
        .policy_name(&names.role_policy)
        .policy_document(wide.to_string())
        .send()
        .await
        .unwrap();
    aws.ecs
        .update_service()
        .cluster(&cell.cluster)
        .service(&names.service)
        .desired_count(9)
        .send()
        .await
        .unwrap();
    aws.s3
        .delete_public_access_block()
        .bucket(&names.bucket)
        .send()
        .await
        .unwrap();
    let edited = Instant::now();

    let mut took = Vec::new();
    for kind in ["listener_rule", "task_role", "service", "bucket"] {
        took.push((
            kind,
            repaired(&stack, "nevada", kind, baseline, edited).await,
        ));
    }
    println!("drift repaired after (resync interval {RESYNC:?}): {took:?}");
    // One pass put everything back: every drift event names the same lease.
    let passes: std::collections::BTreeSet<String> = drift_events(&stack, "nevada", baseline)
        .await
        .iter()
        .map(|e| e["lease"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        passes.len(),
        1,
        "repaired by one pass, not several: {passes:?}"
    );
    // That pass was the next resync: it began within one interval (jittered by up to 10%)
    // of the edits, so its first repair came no later than that and a step.
    let first = took.iter().map(|(_, d)| *d).min().unwrap();
    assert!(
        first <= RESYNC.mul_f64(1.1) + Duration::from_secs(2),
        "the first repair came {first:?} after the edits, more than one resync interval ({RESYNC:?})"
    );

    // Each resource is back as the spec says, read through the AWS API.
    let rules = rule::list(&aws.elb, &cell.listener_arn).await.unwrap();
    let back = rule::find(&rules, &host).expect("the rule is back");
    assert_eq!(back.forwards_to.len(), 1);
    let policy = stack.role_policy(&names).await;
    assert!(
        !policy.to_string().contains("\"*\""),
        "the widened policy is narrowed again: {policy}"
    );
    let svc = service::describe(&aws.ecs, &cell.cluster, &names.service)
        .await
        .unwrap()
        .unwrap();
    let count = svc.desired_count();
    let s = spec();
    assert!(
        (i32::try_from(s.min_count).unwrap()..=i32::try_from(s.max_count).unwrap())
            .contains(&count),
        "desired count {count} is back within autoscaling's bounds"
    );
    let b = bucket::observe(
        &aws.s3,
        &bucket::BucketSpec {
            name: &names.bucket,
            region: crate::REGION,
            tenant: names.slug,
        },
    )
    .await
    .unwrap()
    .unwrap();
    assert!(b.public_access_blocked, "{b:?}");

    // The events say what drifted and how it was put back.
    for e in drift_events(&stack, "nevada", baseline).await {
        assert_eq!(e["drift"], true, "{e}");
        assert!(e["calls"].as_array().is_some_and(|c| !c.is_empty()), "{e}");
    }
    let t = stack.tenant("nevada").await;
    assert_eq!(t.status.as_str(), "ready");
    stack.stop().await;
}

#[sqlx::test]
async fn a_paused_tenant_gets_no_mutating_call_and_is_repaired_on_resume(pool: PgPool) {
    let mut s = settings();
    s.resync_interval = RESYNC;
    let stack = Stack::start(pool, 10, s).await;
    let baseline = settled_tenant(&stack, "oregon").await;
    stack.pause("oregon", Some("repairing by hand")).await;

    // While paused, a hand edit stays as it is, and no mutating call is made.
    let cell = stack.cell().clone();
    let host = stack.platform.host(StateSlug::parse("oregon").unwrap());
    stack.delete_rule_by_hand("oregon").await;
    let before = stack.mutating_calls();
    tokio::time::sleep(RESYNC * 2 + Duration::from_secs(1)).await;
    assert_eq!(
        stack.mutating_calls(),
        before,
        "{:#?}",
        stack.aws.calls.snapshot()
    );
    let rules = rule::list(&stack.aws.elb, &cell.listener_arn)
        .await
        .unwrap();
    assert!(
        rule::find(&rules, &host).is_none(),
        "left alone while paused"
    );

    // Resuming makes a pass due at once, which restores the rule.
    let resumed_at = Instant::now();
    stack.resume("oregon").await;
    let took = repaired(&stack, "oregon", "listener_rule", baseline, resumed_at).await;
    assert!(
        took < RESYNC,
        "resuming does not wait for the resync: {took:?}"
    );
    stack.stop().await;
}

#[sqlx::test]
async fn pausing_stops_a_pass_under_way_at_once(pool: PgPool) {
    // Deployments never complete, and a pass watches one for a long time: a pass is under
    // way, making calls, when the tenant is paused.
    let mut s = settings();
    s.rollout_watch = Duration::from_secs(60);
    let stack = Stack::start(pool, 0, s).await;
    stack.create("vermont", spec()).await;
    stack
        .wait_for("vermont", Duration::from_secs(60), |t| {
            t.resources.get("service").is_some()
        })
        .await;
    let t = stack.tenant("vermont").await;
    let leased: bool =
        sqlx::query_scalar("SELECT lease_token IS NOT NULL FROM tenants WHERE id = $1")
            .bind(t.id)
            .fetch_one(&stack.pool)
            .await
            .unwrap();
    assert!(leased, "a pass is under way");

    // As the API pauses: the lease is taken away, and the change announced.
    let paused_at = Instant::now();
    stack.pause("vermont", None).await;

    // The pass learns it at once (not at its next heartbeat, a third of the 15 s lease
    // away), and stops.
    loop {
        let lost: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM tenant_events WHERE tenant_id = $1 AND action = 'lease.lost'",
        )
        .bind(t.id)
        .fetch_one(&stack.pool)
        .await
        .unwrap();
        if lost > 0 {
            break;
        }
        assert!(
            paused_at.elapsed() < Duration::from_secs(3),
            "the pass under way did not stop when the tenant was paused"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stopped_in = paused_at.elapsed();
    let calls = stack.aws.calls.snapshot().values().sum::<u64>();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        stack.aws.calls.snapshot().values().sum::<u64>(),
        calls,
        "no AWS call at all once it stopped"
    );
    println!("a pass under way stopped {stopped_in:?} after the pause");
    stack.stop().await;
}
