//! Several worker processes on one database, one of them frozen (SIGSTOP) in the middle of
//! its passes until its leases expire and the others take its tenants over, then thawed
//! (SIGCONT). The events show that no tenant was ever worked on by two at once, and that the
//! stale worker's writes were refused; a pass after the thaw leaves exactly one of each
//! resource even where a call the stale worker had under way still reached AWS.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};

use aws_sdk_ecs::types::TaskDefinitionStatus;
use serde_json::Value;
use sqlx::PgPool;
use statehouse::domain::tenant::TenantStatus;

use crate::{
    crash::{assert_one_of_each, task_definitions},
    harness::{spec, Stack},
    process::{database_url, worker_env, Proc},
    proxy::{FaultConfig, FaultProxy},
};

const TENANTS: [&str; 6] = [
    "maryland",
    "michigan",
    "missouri",
    "new-jersey",
    "tennessee",
    "virginia",
];

struct Event {
    tenant: String,
    actor: String,
    action: String,
    details: Value,
}

async fn events(pool: &PgPool) -> Vec<Event> {
    let rows: Vec<(String, String, String, Value)> =
        sqlx::query_as("SELECT tenant_name, actor, action, details FROM tenant_events ORDER BY id")
            .fetch_all(pool)
            .await
            .unwrap();
    rows.into_iter()
        .map(|(tenant, actor, action, details)| Event {
            tenant,
            actor,
            action,
            details,
        })
        .collect()
}

fn lease(e: &Event) -> Option<&str> {
    e.details["lease"].as_str()
}

async fn wait(what: &str, within: Duration, mut done: impl AsyncFnMut() -> bool) {
    let started = Instant::now();
    while !done().await {
        assert!(started.elapsed() < within, "{what} within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[sqlx::test]
async fn a_frozen_worker_loses_its_tenants_to_the_others_and_its_writes_are_refused(pool: PgPool) {
    let stack = Stack::without_worker(pool.clone(), 10, Duration::from_secs(600)).await;
    let env = worker_env(&stack, &database_url(&pool), "3s");
    // A freezes itself just before its first CreateService, holding every tenant's lease.
    // It talks to the emulator through a proxy that tells when all it sent was answered.
    let emulator = &stack.platform_env["AWS_ENDPOINT_URL"];
    let a_proxy = FaultProxy::start(emulator, FaultConfig::default())
        .await
        .expect("a proxy for worker A");
    let mut a_env = env.clone();
    a_env.push(("AWS_ENDPOINT_URL".into(), a_proxy.endpoint.clone()));
    // The tenants are there first, so A's first claim takes them all at once.
    for name in TENANTS {
        stack.create(name, spec()).await;
    }
    let mut stale = Proc::worker("worker-a", &a_env, Some("stop:before:CreateService#1"));
    let held_by_a = async || -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM tenants WHERE lease_owner LIKE $1 || '%'")
            .bind(stale.worker_id_prefix())
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    wait(
        "worker A claims every tenant",
        Duration::from_secs(60),
        async || held_by_a().await == TENANTS.len() as i64,
    )
    .await;

    // Two more workers, two tenants at a time each, so both have work. They start while A
    // still heartbeats, so both are up well before A's leases can lapse.
    let mut small = env.clone();
    small.push(("STATEHOUSE_WORKER_CONCURRENCY".into(), "2".into()));
    let b = Proc::worker("worker-b", &small, None);
    let c = Proc::worker("worker-c", &small, None);
    wait(
        "worker A stops itself",
        Duration::from_secs(60),
        async || stale.is_stopped(),
    )
    .await;
    let a = format!("worker:{}", stale.worker_id_prefix());
    assert_eq!(
        held_by_a().await,
        TENANTS.len() as i64,
        "A holds every tenant"
    );
    let frozen_at = Instant::now();
    wait(
        "B and C make every tenant ready",
        Duration::from_secs(90),
        async || {
            let mut all = true;
            for name in TENANTS {
                let t = stack.tenant(name).await;
                all &= t.status == TenantStatus::Ready && t.observed_generation == t.generation;
            }
            all
        },
    )
    .await;
    assert!(stale.is_stopped(), "A stayed frozen meanwhile");
    let taken_over_in = frozen_at.elapsed();

    stale.signal(libc::SIGCONT);
    wait(
        "A notices, for every tenant, that its lease is gone",
        Duration::from_secs(30),
        async || {
            events(&pool)
                .await
                .iter()
                .filter(|e| e.action == "lease.lost" && e.actor.starts_with(&a))
                .count()
                == TENANTS.len()
        },
    )
    .await;
    // The thawed worker writes its notice when it next runs, which may be a little later.
    wait(
        "A logs that the call it was frozen in front of was not sent",
        Duration::from_secs(30),
        async || {
            stale
                .output()
                .lines()
                .any(|l| l.contains("AWS call not sent") && l.contains("CreateService"))
        },
    )
    .await;
    let all = events(&pool).await;

    let b_id = format!("worker:{}", b.worker_id_prefix());
    let c_id = format!("worker:{}", c.worker_id_prefix());
    let mut by_worker: BTreeMap<&str, usize> = BTreeMap::new();
    for name in TENANTS {
        let mine: Vec<&Event> = all.iter().filter(|e| e.tenant == name).collect();
        // Each lease belongs to one worker, and the leases' events never interleave: once
        // another lease writes, an earlier one never writes again.
        let mut owner: BTreeMap<&str, &str> = BTreeMap::new();
        let mut done: BTreeSet<&str> = BTreeSet::new();
        let mut current: Option<&str> = None;
        for e in mine.iter().filter(|e| e.action != "lease.lost") {
            let Some(l) = lease(e) else { continue };
            assert_eq!(
                *owner.entry(l).or_insert(&e.actor),
                e.actor,
                "{name}: lease {l} written by two workers"
            );
            if current != Some(l) {
                assert!(
                    !done.contains(l),
                    "{name}: lease {l} wrote again after another"
                );
                if let Some(previous) = current {
                    done.insert(previous);
                }
                current = Some(l);
            }
        }
        // A held it; B or C took it over once A's lease had expired.
        let a_lease = mine
            .iter()
            .find(|e| e.actor.starts_with(&a) && e.action != "lease.lost")
            .and_then(|e| lease(e))
            .unwrap_or_else(|| panic!("{name}: A worked on it"));
        let takeover = mine
            .iter()
            .find(|e| e.action == "lease.taken_over")
            .unwrap_or_else(|| panic!("{name}: taken over"));
        assert_eq!(takeover.details["previous_lease"], a_lease, "{name}");
        assert!(
            takeover.actor.starts_with(&b_id) || takeover.actor.starts_with(&c_id),
            "{name}: taken over by {}",
            takeover.actor
        );
        // After the takeover, A wrote nothing but its own notice that its lease was lost.
        let after: Vec<_> = mine
            .iter()
            .skip_while(|e| e.action != "lease.taken_over")
            .filter(|e| e.actor.starts_with(&a))
            .map(|e| e.action.as_str())
            .collect();
        assert_eq!(after, ["lease.lost"], "{name}");
        let lost = mine
            .iter()
            .find(|e| e.action == "lease.lost")
            .expect("lost");
        assert_eq!(lost.details["lease"], a_lease);
        assert_ne!(lost.details["current_lease"], a_lease);
        for e in &mine {
            *by_worker.entry(e.actor.as_str()).or_default() += 1;
        }
    }
    assert!(
        by_worker.keys().any(|w| w.starts_with(&b_id))
            && by_worker.keys().any(|w| w.starts_with(&c_id)),
        "both B and C worked: {by_worker:?}"
    );
    // The CreateService A was frozen in front of was never sent (its lease had lapsed by
    // its own clock), and every tenant has exactly one of each resource.
    let log = stale.output();
    assert!(
        log.lines()
            .any(|l| l.contains("AWS call not sent") && l.contains("CreateService")),
        "{log}"
    );

    // A request already past A's lease check when A froze is still sent once A thaws. The
    // only create that is not idempotent is RegisterTaskDefinition: landing after B's or
    // C's, it adds a second revision. A pass after the thaw must keep the revision the
    // tenant records (no new deployment) and deregister the duplicate.
    stale.kill().await;
    wait(
        "the emulator answers every request A sent",
        Duration::from_secs(30),
        async || a_proxy.is_quiet(),
    )
    .await;
    let mut revisions: BTreeMap<&str, usize> = BTreeMap::new();
    let mut recorded: BTreeMap<&str, Value> = BTreeMap::new();
    for name in TENANTS {
        let n = task_definitions(&stack, &format!("humangov-{name}"), None)
            .await
            .len();
        assert!(
            (1..=2).contains(&n),
            "{name}: one revision, plus at most one from A: {n}"
        );
        revisions.insert(name, n);
        let t = stack.tenant(name).await;
        recorded.insert(name, t.resources["task_definition"]["arn"].clone());
        stack.reconcile(name).await;
    }
    for name in TENANTS {
        stack.settled(name).await;
        let t = stack.ready(name).await;
        assert_eq!(
            t.resources["task_definition"]["arn"], recorded[name],
            "{name}: the pass after the thaw kept the revision it had"
        );
        // A duplicate is retired once the pass sees its deployment complete.
        let family = format!("humangov-{name}");
        wait(
            "one active revision left",
            Duration::from_secs(60),
            async || {
                task_definitions(&stack, &family, Some(TaskDefinitionStatus::Active))
                    .await
                    .len()
                    == 1
            },
        )
        .await;
    }
    assert_one_of_each(&stack, &TENANTS, |name| revisions[name], false).await;
    let duplicates: Vec<&str> = revisions
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(name, _)| *name)
        .collect();
    eprintln!(
        "fencing: {} tenants taken over from the frozen worker in {taken_over_in:.1?}; events \
         per worker {by_worker:?}; calls A refused to send once thawed: {}; stale \
         registrations retired by the next pass: {duplicates:?}",
        TENANTS.len(),
        log.matches("AWS call not sent").count()
    );
    for mut p in [b, c] {
        p.kill().await;
    }
}
