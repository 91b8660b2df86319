//! The tiers of observation: a resync round reads a whole cell in batched calls and makes a
//! full pass due for each drifted tenant; a deep check reads what no batched call returns,
//! once per deep interval per tenant, or at once after a reconcile request.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::json;
use sqlx::PgPool;
use statehouse::{
    domain::state::StateSlug,
    metrics::Metrics,
    reconcile::resync::TaskDefinitions,
    worker::{
        resync::{resync_cell, roles_of_account},
        PassReport,
    },
};

use crate::harness::{settings, spec, Stack};

/// The calls a closure's AWS work made, by operation.
fn by_operation(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    after
        .iter()
        .filter_map(|(op, n)| {
            let d = n - before.get(op).copied().unwrap_or(0);
            (d > 0).then(|| (op.clone(), d))
        })
        .collect()
}

fn operations(aws: &statehouse::aws::Aws) -> BTreeMap<String, u64> {
    let mut ops = BTreeMap::new();
    for (key, n) in aws.calls.snapshot() {
        *ops.entry(key.operation).or_default() += n;
    }
    ops
}

async fn event_count(stack: &Stack) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM tenant_events")
        .fetch_one(&stack.pool)
        .await
        .unwrap()
}

/// Passes as the worker reports them, with when each ended.
type Reports = Arc<Mutex<Vec<(Instant, PassReport)>>>;

fn observed() -> (Reports, statehouse::worker::Observer) {
    let reports: Reports = Arc::default();
    let sink = reports.clone();
    let observer: statehouse::worker::Observer = Arc::new(move |r: &PassReport| {
        sink.lock().unwrap().push((Instant::now(), r.clone()));
    });
    (reports, observer)
}

#[sqlx::test]
async fn one_resync_of_thirty_tenants_in_three_cells_makes_exactly_the_batched_calls(pool: PgPool) {
    let mut stack = Stack::without_worker(pool, 1, Duration::from_secs(600)).await;
    stack.add_cell("cell-2").await;
    stack.add_cell("cell-3").await;
    let cells: Vec<String> = stack
        .platform
        .cells
        .iter()
        .map(|c| c.name.clone())
        .collect();
    stack.start_worker_observed(settings(), None);
    let states: Vec<StateSlug> = StateSlug::all().take(30).collect();
    for (i, state) in states.iter().enumerate() {
        stack
            .create_in(state.as_str(), spec(), &cells[i % cells.len()])
            .await;
    }
    for state in &states {
        stack.whole(state.as_str()).await;
    }

    let aws = stack.own_clients().await;
    let metrics = Metrics::default();
    let task_definitions = TaskDefinitions::default();
    let round = || async {
        let before = operations(&aws);
        let mut drifted = Vec::new();
        let mut compared = 0;
        for cell in &cells {
            let r = resync_cell(
                &stack.pool,
                &aws,
                &stack.platform,
                cell,
                &task_definitions,
                &metrics,
                "test",
            )
            .await
            .unwrap();
            compared += r.compared;
            drifted.extend(r.drifted);
        }
        (compared, drifted, by_operation(&before, &operations(&aws)))
    };
    // The emulator drops some deployment settings that CreateService was given, which the
    // first full pass after it puts back; a round may find that, once.
    let (_, drifted, first) = round().await;
    for (name, _) in &drifted {
        stack.whole(name).await;
    }
    assert_eq!(
        first.get("DescribeTaskDefinition"),
        Some(&30),
        "each revision is read once: {first:?}"
    );

    let events = event_count(&stack).await;
    let mutating = stack.mutating_calls();
    let (compared, drifted, calls) = round().await;
    assert_eq!(compared, 30);
    assert!(drifted.is_empty(), "nothing drifted: {drifted:?}");
    // Per cell of ten tenants: ten services in one DescribeServices; the load balancer's
    // target groups, the listener's rules and the ten groups' tags in one call each; every
    // log group of the prefix (thirty) in one page; the ten scalable targets and scaling
    // policies in one call each; their sixty alarms in one DescribeAlarms. Task
    // definitions are known by now.
    let expected: BTreeMap<String, u64> = [
        "DescribeServices",
        "DescribeTargetGroups",
        "DescribeRules",
        "DescribeTags",
        "DescribeLogGroups",
        "DescribeScalableTargets",
        "DescribeScalingPolicies",
        "DescribeAlarms",
    ]
    .into_iter()
    .map(|op| (op.to_owned(), 3))
    .collect();
    assert_eq!(calls, expected);
    let total: u64 = calls.values().sum();
    println!(
        "one resync of 30 tenants in 3 cells: {total} calls, {:.2} per tenant",
        total as f64 / 30.0
    );
    // The roles' deep check for the whole account: one call for the thirty.
    let before = operations(&aws);
    let cells: Vec<&statehouse::reconcile::platform::Cell> = stack.platform.cells.iter().collect();
    let r = roles_of_account(&stack.pool, &aws, &stack.platform, &cells, &metrics, "test")
        .await
        .unwrap();
    assert_eq!((r.compared, r.drifted.len()), (30, 0), "{:?}", r.drifted);
    assert_eq!(
        by_operation(&before, &operations(&aws)),
        BTreeMap::from([("GetAccountAuthorizationDetails".to_owned(), 1)])
    );
    // A round that finds everything whole writes nothing and changes nothing.
    assert_eq!(event_count(&stack).await, events);
    assert_eq!(stack.mutating_calls(), mutating);
    stack.stop().await;
}

#[sqlx::test]
async fn a_round_finds_a_service_out_of_bounds_and_a_deleted_rule_each_repaired_by_one_full_pass(
    pool: PgPool,
) {
    let mut s = settings();
    s.resync_interval = Duration::from_secs(1);
    let mut stack = Stack::without_worker(pool, 1, Duration::from_secs(600)).await;
    let (reports, observer) = observed();
    stack.start_worker_observed(s, Some(observer));
    stack.create("utah", spec()).await;
    // The emulator drops deployment settings CreateService was given; the first full pass
    // after it puts them back, and from then on the tenant is at rest.
    stack.whole("utah").await;
    let asked = Instant::now();
    stack.reconcile("utah").await;
    stack.whole("utah").await;
    // The row is released before the observer hears of the pass: wait for its report too.
    let deadline = asked + Duration::from_secs(30);
    while !reports
        .lock()
        .unwrap()
        .iter()
        .any(|(at, r)| *at >= asked && r.outcome == "ready")
    {
        assert!(Instant::now() < deadline, "no report of the reconcile pass");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Rounds at rest: no event, no mutating call, no pass.
    let events = event_count(&stack).await;
    let mutating = stack.mutating_calls();
    let passes = reports.lock().unwrap().len();
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        event_count(&stack).await,
        events,
        "no-op resyncs write no event"
    );
    assert_eq!(stack.mutating_calls(), mutating);
    assert_eq!(reports.lock().unwrap().len(), passes, "no pass at rest");

    // The service scaled by hand out of its bounds: the next round finds it.
    let names = stack.platform.names(StateSlug::parse("utah").unwrap());
    stack
        .aws
        .ecs
        .update_service()
        .cluster(&stack.cell().cluster)
        .service(&names.service)
        .desired_count(7)
        .send()
        .await
        .unwrap();
    let scaled = Instant::now();
    let found: serde_json::Value = loop {
        let e: Option<serde_json::Value> = sqlx::query_scalar(
            "SELECT details FROM tenant_events WHERE tenant_name = 'utah' AND action = 'drift.found'",
        )
        .fetch_optional(&stack.pool)
        .await
        .unwrap();
        if let Some(e) = e {
            break e;
        }
        assert!(
            Instant::now() < deadline + Duration::from_secs(20),
            "no drift found"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        found["found"].to_string().contains("desired count"),
        "{found}"
    );
    stack.whole("utah").await;
    let svc = statehouse::reconcile::service::describe(
        &stack.aws.ecs,
        &stack.cell().cluster,
        &names.service,
    )
    .await
    .unwrap()
    .unwrap();
    let s = spec();
    assert!(
        (s.min_count..=s.max_count).contains(&u32::try_from(svc.desired_count()).unwrap()),
        "back in bounds: {}",
        svc.desired_count()
    );
    assert_eq!(
        repairing_passes(&reports, scaled).await,
        [false],
        "one full pass repaired it"
    );

    // The listener rule deleted by hand: the next round finds it missing, and one full
    // pass puts it back.
    stack.delete_rule_by_hand("utah").await;
    let deleted = Instant::now();
    let deadline = deleted + Duration::from_secs(20);
    let found: Vec<serde_json::Value> = loop {
        let found: Vec<serde_json::Value> = sqlx::query_scalar(
            "SELECT details FROM tenant_events WHERE tenant_name = 'utah' AND action = 'drift.found' \
             ORDER BY id",
        )
        .fetch_all(&stack.pool)
        .await
        .unwrap();
        if found.len() >= 2 {
            break found;
        }
        assert!(Instant::now() < deadline, "no drift found: {found:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        found[1..]
            .iter()
            .any(|f| f["found"].to_string().contains("listener rule")),
        "{found:?}"
    );
    stack.whole("utah").await;
    assert!(stack.rule_of("utah").await.is_some(), "the rule is back");
    assert_eq!(
        repairing_passes(&reports, deleted).await,
        [false],
        "one full pass repaired it"
    );
    stack.stop().await;
}

#[sqlx::test]
async fn a_widened_role_policy_is_found_by_the_account_s_role_check_within_the_deep_interval(
    pool: PgPool,
) {
    const DEEP: Duration = Duration::from_secs(3);
    let mut s = settings();
    s.deep_resync_interval = DEEP;
    let mut stack = Stack::without_worker(pool, 1, Duration::from_secs(600)).await;
    let (reports, observer) = observed();
    stack.start_worker_observed(s, Some(observer));
    stack.create("idaho", spec()).await;
    stack.whole("idaho").await;
    let names = stack.platform.names(StateSlug::parse("idaho").unwrap());
    widen(&stack, &names).await;
    let widened = Instant::now();
    let took = narrowed(&stack, &names, widened + DEEP * 3).await;
    println!("widened role policy put back after {took:?} (deep interval {DEEP:?})");
    // The account's roles are read once per deep interval.
    assert!(took <= DEEP * 3 / 2 + Duration::from_secs(2), "{took:?}");
    let repaired_by = repairing_passes(&reports, widened).await;
    assert_eq!(
        repaired_by,
        [false],
        "the role check handed it to one full pass"
    );
    let found: Vec<serde_json::Value> = sqlx::query_scalar(
        "SELECT details FROM tenant_events WHERE tenant_name = 'idaho' AND action = 'drift.found'",
    )
    .fetch_all(&stack.pool)
    .await
    .unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].to_string().contains("data policy"), "{found:?}");
    stack.stop().await;
}

#[sqlx::test]
async fn a_reconcile_request_runs_a_full_pass_at_once_which_puts_back_a_widened_role(pool: PgPool) {
    let mut s = settings();
    // Rounds run often; the deep check does not come within the test.
    s.resync_interval = Duration::from_secs(1);
    s.deep_resync_interval = Duration::from_secs(3600);
    let mut stack = Stack::without_worker(pool, 1, Duration::from_secs(600)).await;
    let (reports, observer) = observed();
    stack.start_worker_observed(s, Some(observer));
    stack.create("maine", spec()).await;
    stack.whole("maine").await;
    stack.reconcile("maine").await;
    stack.whole("maine").await;
    let names = stack.platform.names(StateSlug::parse("maine").unwrap());
    widen(&stack, &names).await;
    // Rounds read no IAM: the widened policy stays until a deep check or a request.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(stack
        .role_policy(&names)
        .await
        .to_string()
        .contains("\"*\""));
    let asked = Instant::now();
    stack.reconcile("maine").await;
    let took = narrowed(&stack, &names, asked + Duration::from_secs(20)).await;
    println!("widened role policy put back {took:?} after a reconcile request");
    let repaired_by = repairing_passes(&reports, asked).await;
    assert_eq!(repaired_by, [false], "a full pass repaired it");
    stack.stop().await;
}

#[sqlx::test]
async fn each_tenant_gets_one_deep_check_per_deep_interval(pool: PgPool) {
    const DEEP: Duration = Duration::from_secs(2);
    let mut s = settings();
    s.deep_resync_interval = DEEP;
    let mut stack = Stack::without_worker(pool, 1, Duration::from_secs(600)).await;
    let (reports, observer) = observed();
    stack.start_worker_observed(s, Some(observer));
    let states = ["iowa", "ohio", "kansas"];
    for state in states {
        stack.create(state, spec()).await;
    }
    for state in states {
        stack.whole(state).await;
    }
    let start = Instant::now();
    let window = DEEP * 4;
    tokio::time::sleep(window).await;
    let reports = reports.lock().unwrap().clone();
    for state in states {
        let checks: Vec<Instant> = reports
            .iter()
            .filter(|(at, r)| *at >= start && r.tenant == state && r.deep_check)
            .map(|(at, _)| *at)
            .collect();
        // Each falls on the tenant's own phase, one interval after the one before.
        assert!(
            (3..=5).contains(&checks.len()),
            "{state}: {} deep checks in {window:?}",
            checks.len()
        );
        for pair in checks.windows(2) {
            assert!(
                pair[1] - pair[0] >= DEEP / 2,
                "{state}: {:?}",
                pair[1] - pair[0]
            );
        }
        let full = reports
            .iter()
            .filter(|(at, r)| *at >= start && r.tenant == state && !r.deep_check)
            .count();
        assert_eq!(full, 0, "{state}: no full pass at rest");
    }
    // A deep check reads the bucket, the table and the target group's attributes (the
    // roles are read for the whole account at once), and changes nothing at rest.
    let deep: Vec<&PassReport> = reports
        .iter()
        .filter(|(_, r)| r.deep_check)
        .map(|(_, r)| r)
        .collect();
    assert!(deep.iter().all(|r| r.mutating_calls == 0), "{deep:?}");
    stack.stop().await;
}

/// Whether each pass that changed something since `since` was a deep check, once there is
/// one (the pass reports only after its last write, so it is waited for).
async fn repairing_passes(reports: &Reports, since: Instant) -> Vec<bool> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found: Vec<bool> = reports
            .lock()
            .unwrap()
            .iter()
            .filter(|(at, r)| *at >= since && r.mutating_calls > 0)
            .map(|(_, r)| r.deep_check)
            .collect();
        if !found.is_empty() {
            return found;
        }
        assert!(Instant::now() < deadline, "no pass reported a repair");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn widen(stack: &Stack, names: &statehouse::reconcile::names::TenantNames) {
    let wide = json!({
        "Version": "2012-10-17",
        "Statement": [{ "Effect": "Allow", "Action": "s3:*", "Resource": "*" }]
    });
    stack
        .aws
        .iam
        .put_role_policy()
        .role_name(&names.task_role)
        .policy_name(&names.role_policy)
        .policy_document(wide.to_string())
        .send()
        .await
        .unwrap();
}

/// Waits until the role's policy is narrow again; how long after it was widened.
async fn narrowed(
    stack: &Stack,
    names: &statehouse::reconcile::names::TenantNames,
    deadline: Instant,
) -> Duration {
    let start = Instant::now();
    loop {
        if !stack.role_policy(names).await.to_string().contains("\"*\"") {
            return start.elapsed();
        }
        assert!(Instant::now() < deadline, "the widened policy stayed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
