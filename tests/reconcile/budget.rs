//! The AWS call budget over the wire: a fault proxy that throttles like AWS counts what the
//! budgeted clients send.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use sqlx::PgPool;
use statehouse::aws::{
    budget::{Bucket, Budget, BudgetSettings, Limit},
    Aws, CallCounter, CallLog, CallScope,
};

use crate::{
    config_at,
    harness::Stack,
    proxy::{Call, FaultConfig, Rule},
};

/// ECS reads at 2 a second with a burst of 2 (a quarter of 8/8); everything else far
/// above what the test sends.
fn two_a_second() -> BudgetSettings {
    let mut limits: BTreeMap<Bucket, Limit> = Bucket::ALL
        .into_iter()
        .map(|b| {
            (
                b,
                Limit {
                    rate: 4000.0,
                    burst: 4000.0,
                },
            )
        })
        .collect();
    limits.insert(
        Bucket::EcsRead,
        Limit {
            rate: 8.0,
            burst: 8.0,
        },
    );
    BudgetSettings {
        share: 0.25,
        processes: 1,
        limits,
    }
}

#[sqlx::test]
async fn a_burst_never_sends_more_than_the_budget_allows_and_urgent_calls_go_first(pool: PgPool) {
    // AWS's bucket for the operation, in the proxy: 2 a second, and one token of slack for
    // loopback jitter between sending and arriving.
    let faults = FaultConfig::default().rule(Rule::bucket("ecs", "DescribeServices", 2.0, 3));
    let stack =
        Stack::without_worker_through(pool, 1, Duration::from_secs(600), Some(faults)).await;
    let settings = two_a_second();
    assert_eq!(
        settings.allowance(Bucket::EcsRead),
        Limit {
            rate: 2.0,
            burst: 2.0
        }
    );
    let budget = Arc::new(Budget::new(&settings, None));
    let aws = Aws::with_budget(
        &config_at(&stack.endpoint).await,
        CallCounter::new(CallLog::default(), None),
        Some(budget),
    );
    let cluster = stack.cell().cluster.clone();
    let describe = |aws: Aws, cluster: String| async move {
        aws.ecs
            .describe_services()
            .cluster(&cluster)
            .services("none")
            .send()
            .await
            .map(drop)
            .map_err(|e| format!("{e:?}"))
    };

    // Twelve background reads at once: two go at once, then two a second.
    let started = Instant::now();
    let finished = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut background = Vec::new();
    for _ in 0..12 {
        let (aws, cluster, finished) = (aws.clone(), cluster.clone(), finished.clone());
        background.push(tokio::spawn(CallScope::run(
            Arc::new(CallScope::background()),
            async move {
                describe(aws, cluster).await?;
                finished.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Ok::<_, String>(Instant::now())
            },
        )));
    }
    // A pass for an API change asks while they queue: it gets the next token.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let done_before = finished.load(std::sync::atomic::Ordering::SeqCst);
    let asked = Instant::now();
    describe(aws.clone(), cluster.clone()).await.unwrap();
    let urgent_done = Instant::now();
    let mut done = Vec::new();
    for b in background {
        done.push(b.await.unwrap().unwrap());
    }
    let after_urgent = done.iter().filter(|d| **d > urgent_done).count();
    println!(
        "urgent call waited {:?}; {after_urgent} of 12 background reads came after it; all 13 took {:?}",
        urgent_done - asked,
        started.elapsed()
    );
    // Every read still queued when it asked came after it, but for the two that may have
    // held a token already (sent, not yet answered).
    let queued = 12 - done_before;
    assert!(
        queued >= 3,
        "the reads were still queued when the urgent call came: {queued}"
    );
    assert!(
        after_urgent + 2 >= queued,
        "the urgent call went before the queued reads ({after_urgent} of {queued} came after it)"
    );
    // Thirteen calls at 2 a second after a burst of 2 take at least 5.5 s.
    assert!(
        started.elapsed() >= Duration::from_millis(5400),
        "{:?}",
        started.elapsed()
    );

    // What AWS (the proxy) saw: every call, and none of them throttled.
    let faults = stack.faults.as_ref().unwrap();
    let seen = faults.snapshot()[&Call {
        service: "ecs".into(),
        operation: "DescribeServices".into(),
    }];
    assert_eq!(seen.total, 13, "{}", faults.summary());
    assert_eq!(seen.throttled, 0, "{}", faults.summary());
}

#[sqlx::test]
async fn a_worker_with_two_ecs_reads_a_second_never_sends_more_through_a_burst_of_work(
    pool: PgPool,
) {
    let mut stack = Stack::without_worker_through(
        pool,
        1,
        Duration::from_secs(600),
        Some(FaultConfig::default()),
    )
    .await;
    let budget = Arc::new(Budget::new(&two_a_second(), None));
    stack.aws = Aws::with_budget(
        &config_at(&stack.endpoint).await,
        Aws::metrics_counter(stack.metrics.clone()),
        Some(budget),
    );
    let started = Instant::now();
    stack.start_worker_observed(crate::harness::settings(), None);
    let states = ["iowa", "ohio", "utah", "idaho", "maine", "texas"];
    for state in states {
        stack.create(state, crate::harness::spec()).await;
    }
    for state in states {
        stack.ready(state).await;
    }
    // Every ECS read the worker sent so far, as the proxy counted them, operation by
    // operation; at any moment, at most the burst and two a second since the start.
    let faults = stack.faults.as_ref().unwrap();
    let snapshot = faults.snapshot();
    let elapsed = started.elapsed().as_secs_f64();
    let reads: u64 = snapshot
        .iter()
        .filter(|(call, _)| {
            call.service == "ecs" && !statehouse::aws::calls::is_mutating(&call.operation)
        })
        .map(|(_, c)| c.total)
        .sum();
    println!(
        "{reads} ECS reads in {elapsed:.1} s ({:.2} a second) for {} tenants; the budget allows 2 + 2 a second",
        reads as f64 / elapsed,
        states.len()
    );
    assert!(reads > 2, "the work needed ECS reads: {}", faults.summary());
    assert!(
        reads as f64 <= 2.0 + 2.0 * elapsed,
        "{reads} ECS reads in {elapsed:.1} s: more than the budget allows\n{}",
        faults.summary()
    );
    stack.stop().await;
}
