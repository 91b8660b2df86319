//! Crash safety: the worker, as a real process, is SIGKILLed at dozens of points while it
//! creates, changes and deletes a dozen tenants, and started again each time. The end state
//! must be as if it had never crashed: one of each resource per tenant, a task definition
//! revision per real change and no more, and nothing left tagged for a deleted tenant.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};

use aws_sdk_ecs::types::TaskDefinitionStatus;
use sqlx::PgPool;
use statehouse::{
    domain::{
        spec::SpecDoc,
        state::StateSlug,
        tenant::{DataPolicy, TenantStatus},
    },
    reconcile::{inventory, rule},
};

use crate::{
    harness::{spec, Stack},
    process::{database_url, killed, worker_env, Proc},
};

/// One fresh tenant per kill point while creating, so every point has work to land on.
const TENANT_COUNT: usize = 32;

fn tenants() -> Vec<&'static str> {
    StateSlug::all()
        .map(|s| s.as_str())
        .take(TENANT_COUNT)
        .collect()
}

/// Which tenants are changed once after they are ready: their family must end at
/// revision 2.
const CHANGED: [usize; 3] = [3, 11, 19];
/// Kill points on these need a tenant deleted with `data=purge`.
const PURGE_OPERATIONS: [&str; 3] = ["CreateBackup", "DeleteTable", "DeleteBucket"];

/// The mutating operations of each resource kind, creating and deleting.
const KINDS: [(&str, &[&str], &[&str]); 10] = [
    (
        "bucket",
        &[
            "CreateBucket",
            "PutPublicAccessBlock",
            "PutBucketEncryption",
            "PutBucketVersioning",
            "PutBucketPolicy",
            "PutBucketTagging",
        ],
        &["DeleteBucket"],
    ),
    (
        "table",
        &["CreateTable", "UpdateContinuousBackups"],
        &["CreateBackup", "DeleteTable"],
    ),
    (
        "task_role",
        &["CreateRole", "PutRolePolicy"],
        &["DeleteRolePolicy", "DeleteRole"],
    ),
    (
        "log_group",
        &["CreateLogGroup", "PutRetentionPolicy"],
        &["DeleteLogGroup"],
    ),
    (
        "task_definition",
        &["RegisterTaskDefinition"],
        &["DeregisterTaskDefinition", "DeleteTaskDefinitions"],
    ),
    (
        "target_group",
        &["CreateTargetGroup"],
        &["DeleteTargetGroup"],
    ),
    ("listener_rule", &["CreateRule"], &["DeleteRule"]),
    ("alarms", &["PutMetricAlarm"], &["DeleteAlarms"]),
    (
        "service",
        &["CreateService"],
        &["UpdateService", "DeleteService"],
    ),
    (
        "autoscaling",
        &["RegisterScalableTarget", "PutScalingPolicy"],
        &["DeleteScalingPolicy", "DeregisterScalableTarget"],
    ),
];

/// Kill points while creating; a fresh tenant is created before each, so that the
/// operation is still to come. The occurrence varies so that the kill lands on different
/// tenants (a fresh one, or one a previous kill interrupted).
const CREATE_POINTS: &[&str] = &[
    "kill:before:CreateBucket#1",
    "kill:after:CreateBucket#1",
    "kill:after:PutBucketVersioning#1",
    "kill:after:PutBucketPolicy#1",
    "kill:before:CreateTable#1",
    "kill:after:CreateTable#2",
    "kill:before:UpdateContinuousBackups#1",
    "kill:after:UpdateContinuousBackups#3",
    "kill:before:CreateRole#1",
    "kill:after:CreateRole#2",
    "kill:before:PutRolePolicy#1",
    "kill:after:PutRolePolicy#2",
    "kill:before:CreateLogGroup#1",
    "kill:after:CreateLogGroup#1",
    "kill:after:PutRetentionPolicy#2",
    "kill:before:CreateTargetGroup#1",
    "kill:after:CreateTargetGroup#2",
    "kill:before:CreateRule#1",
    "kill:after:PutBucketTagging#1",
    "kill:after:CreateRule#1",
    "kill:before:PutMetricAlarm#1",
    "kill:after:PutMetricAlarm#3",
    "kill:before:RegisterTaskDefinition#1",
    "kill:after:RegisterTaskDefinition#2",
    "kill:after:RegisterTaskDefinition#1",
    "kill:before:CreateService#1",
    "kill:after:CreateService#2",
    "kill:after:CreateService#1",
    "kill:before:RegisterScalableTarget#1",
    "kill:after:RegisterScalableTarget#2",
    "kill:before:PutScalingPolicy#1",
    "kill:after:PutScalingPolicy#1",
];

/// While three tenants roll out a new image (their passes run into each point in turn).
const CHANGE_POINTS: &[&str] = &[
    "kill:after:RegisterTaskDefinition#1",
    "kill:before:UpdateService#1",
    "kill:after:UpdateService#1",
    "kill:after:DeregisterTaskDefinition#1",
];

/// Kill points while deleting; one more tenant's deletion is requested before each (with
/// `data=purge` where the point needs it).
const DELETE_POINTS: &[&str] = &[
    "kill:before:DeleteScalingPolicy#1",
    "kill:after:DeleteScalingPolicy#1",
    "kill:after:DeregisterScalableTarget#2",
    "kill:before:UpdateService#1",
    "kill:after:UpdateService#2",
    "kill:before:DeleteService#1",
    "kill:after:DeleteService#2",
    "kill:before:DeleteRule#1",
    "kill:after:DeleteRule#2",
    "kill:before:DeleteAlarms#1",
    "kill:after:DeleteAlarms#2",
    "kill:after:DeleteTargetGroup#1",
    "kill:before:DeregisterTaskDefinition#2",
    "kill:after:DeregisterTaskDefinition#1",
    "kill:after:DeleteTaskDefinitions#1",
    "kill:before:DeleteLogGroup#1",
    "kill:after:DeleteLogGroup#2",
    "kill:after:DeleteRolePolicy#1",
    "kill:before:DeleteRole#1",
    "kill:after:DeleteRole#2",
    "kill:after:CreateBackup#1",
    "kill:before:DeleteTable#1",
    "kill:after:DeleteTable#1",
    "kill:before:DeleteBucket#1",
    "kill:after:DeleteBucket#1",
];

/// The crash runs of one test: which kill points landed on which call.
struct Crashes<'a> {
    stack: &'a Stack,
    env: Vec<(String, String)>,
    /// The tenants the current phase waits for.
    waiting_for: Vec<&'static str>,
    /// `(when, operation)` each kill landed on, as the process reported it.
    landed: Vec<(String, String)>,
    missed: Vec<String>,
    restarts: usize,
}

#[derive(Clone, Copy)]
enum Phase {
    Converge,
    Delete,
}

impl Crashes<'_> {
    async fn done(&self, phase: Phase) -> bool {
        for &name in &self.waiting_for {
            let t = self.stack.tenant(name).await;
            assert_ne!(
                t.status,
                TenantStatus::Failed,
                "{name} failed after a crash: {:?}",
                t.last_error
            );
            let ok = match phase {
                Phase::Converge => {
                    t.status == TenantStatus::Ready && t.observed_generation == t.generation
                }
                Phase::Delete => t.status == TenantStatus::Deleted,
            };
            if !ok {
                return false;
            }
        }
        true
    }

    /// Runs a worker armed with `point` until the kill lands (or the phase is over), then
    /// ends the dead worker's leases: the harness saw it die, so waiting out the TTL would
    /// only make the test slower (the TTL itself is what the two-worker test is about).
    async fn round(&mut self, phase: Phase, point: &str) {
        self.restarts += 1;
        let mut worker = Proc::worker("crash", &self.env, Some(point));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = worker.try_exit() {
                assert!(
                    killed(status),
                    "the worker ended otherwise ({status}) at {point}:\n{}",
                    worker.output()
                );
                let line = worker.fault_line().expect("the fault point's line");
                // "statehouse-test-fault: kill after call 3 (ecs CreateService #1)"
                let when = line
                    .split_whitespace()
                    .nth(2)
                    .unwrap_or_default()
                    .to_owned();
                let op = line
                    .rsplit_once('(')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                    .unwrap_or_default()
                    .to_owned();
                self.landed.push((when, op));
                break;
            }
            if Instant::now() > deadline || self.done(phase).await {
                worker.kill().await;
                self.missed.push(point.to_owned());
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        sqlx::query(
            "UPDATE tenants SET lease_expires_at = now() - interval '1 millisecond' \
             WHERE lease_token IS NOT NULL",
        )
        .execute(&self.stack.pool)
        .await
        .unwrap();
    }

    /// A worker without a fault until the phase is over; returns how long it took.
    async fn converge(&mut self, phase: Phase) -> Duration {
        let started = Instant::now();
        let mut worker = Proc::worker("converge", &self.env, None);
        while !self.done(phase).await {
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "no convergence after the kills:\n{}\n{:#?}",
                worker.output(),
                self.states().await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let took = started.elapsed();
        worker.kill().await;
        took
    }

    async fn states(&self) -> Vec<(String, TenantStatus, Option<String>)> {
        let mut out = Vec::new();
        for &name in &self.waiting_for {
            let t = self.stack.tenant(name).await;
            out.push((t.name, t.status, t.last_error));
        }
        out
    }
}

#[sqlx::test]
async fn a_worker_killed_at_every_step_of_create_change_and_delete_converges_exactly(pool: PgPool) {
    let started = Instant::now();
    let stack = Stack::without_worker(pool.clone(), 10, Duration::from_secs(600)).await;
    let env = worker_env(&stack, &database_url(&pool), "30s");
    let mut crashes = Crashes {
        stack: &stack,
        env,
        waiting_for: Vec::new(),
        landed: Vec::new(),
        missed: Vec::new(),
        restarts: 0,
    };

    let all = tenants();
    for (point, &name) in CREATE_POINTS.iter().zip(&all) {
        stack.create(name, spec()).await;
        crashes.waiting_for.push(name);
        crashes.round(Phase::Converge, point).await;
    }
    for &name in &all[CREATE_POINTS.len().min(all.len())..] {
        stack.create(name, spec()).await;
        crashes.waiting_for.push(name);
    }
    let created_in = crashes.converge(Phase::Converge).await;
    assert_exactly_one_of_each(&stack, &all, &[]).await;

    let new_spec = SpecDoc {
        app_image: "humangov/app:1.1.0".into(),
        ..spec()
    };
    let changed = CHANGED.map(|i| all[i]);
    for name in changed {
        stack.update_spec(name, new_spec.clone()).await;
    }
    for point in CHANGE_POINTS {
        crashes.round(Phase::Converge, point).await;
    }
    let changed_in = crashes.converge(Phase::Converge).await;
    assert_exactly_one_of_each(&stack, &all, &changed).await;

    crashes.waiting_for.clear();
    let mut purged = Vec::new();
    let mut to_delete = all.iter().copied();
    for point in DELETE_POINTS {
        let name = to_delete.next().expect("a tenant per delete point");
        let policy = if PURGE_OPERATIONS.iter().any(|op| point.contains(op)) {
            purged.push(name);
            DataPolicy::Purge
        } else {
            DataPolicy::Retain
        };
        stack.delete(name, policy).await;
        crashes.waiting_for.push(name);
        crashes.round(Phase::Delete, point).await;
    }
    for name in to_delete {
        stack.delete(name, DataPolicy::Retain).await;
        crashes.waiting_for.push(name);
    }
    let deleted_in = crashes.converge(Phase::Delete).await;
    assert_nothing_left_but_retained_data(&stack, &all, &purged).await;

    let hit: BTreeSet<(String, String)> = crashes.landed.iter().cloned().collect();
    let ops: BTreeSet<&str> = hit.iter().map(|(_, op)| op.as_str()).collect();
    eprintln!(
        "crash test: {} kills landed at {} distinct points ({} operations) over {} restarts; \
         {} points not reached: {:?}; convergence after the kills: create {:.1?}, change {:.1?}, \
         delete {:.1?}; total {:.1?}\noperations hit: {ops:?}",
        crashes.landed.len(),
        hit.len(),
        ops.len(),
        crashes.restarts,
        crashes.missed.len(),
        crashes.missed,
        created_in,
        changed_in,
        deleted_in,
        started.elapsed(),
    );
    assert!(
        hit.len() >= 30,
        "only {} distinct kill points landed: {hit:?}",
        hit.len()
    );
    for (kind, create, delete) in KINDS {
        assert!(
            create.iter().any(|op| ops.contains(op)),
            "no kill landed on creating a {kind} ({create:?}); hit {ops:?}"
        );
        assert!(
            delete.iter().any(|op| ops.contains(op)),
            "no kill landed on deleting a {kind} ({delete:?}); hit {ops:?}"
        );
    }
}

/// Per tenant: one of every resource, and a task definition family whose revisions are
/// exactly one per real spec change.
pub async fn assert_exactly_one_of_each(stack: &Stack, tenants: &[&str], changed: &[&str]) {
    let revisions = |name: &str| if changed.contains(&name) { 2 } else { 1 };
    assert_one_of_each(stack, tenants, revisions, true).await;
}

/// Per tenant: one of every resource, and `revisions(name)` task definition revisions of
/// which only the one the tenant records is ACTIVE; with `numbered`, that one is also the
/// last revision registered.
pub async fn assert_one_of_each(
    stack: &Stack,
    tenants: &[&str],
    revisions: impl Fn(&str) -> usize,
    numbered: bool,
) {
    let inv = inventory::take(&stack.aws, stack.cell(), "humangov")
        .await
        .unwrap();
    let strangers: Vec<_> = inv
        .keys()
        .filter(|t| !tenants.contains(&t.as_str()))
        .collect();
    assert!(strangers.is_empty(), "tagged for no tenant: {strangers:?}");
    for &name in tenants {
        let revisions = revisions(name);
        let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
        for found in inv.get(name).into_iter().flatten() {
            *kinds.entry(found.kind).or_default() += 1;
        }
        let expected: BTreeMap<&str, usize> = [
            ("alarms", 6),
            ("autoscaling", 1),
            ("bucket", 1),
            ("listener_rule", 1),
            ("log_group", 1),
            ("service", 1),
            ("table", 1),
            ("target_group", 1),
            ("task_definition", revisions),
            ("task_role", 1),
        ]
        .into();
        assert_eq!(kinds, expected, "{name}: {:#?}", inv.get(name));

        let family = format!("humangov-{name}");
        let all = task_definitions(stack, &family, None).await;
        let active = task_definitions(stack, &family, Some(TaskDefinitionStatus::Active)).await;
        assert_eq!(active.len(), 1, "{name}: one active revision: {active:?}");
        assert!(
            !numbered || active[0].ends_with(&format!(":{revisions}")),
            "{name}: no revision beyond the real changes: {all:?}"
        );
        let t = stack.tenant(name).await;
        assert_eq!(
            t.resources["task_definition"]["arn"].as_str(),
            Some(active[0].as_str())
        );
    }
    let rules = rule::list(&stack.aws.elb, &stack.cell().listener_arn)
        .await
        .unwrap();
    let tenant_rules: Vec<_> = rules.iter().filter(|r| r.priority.is_some()).collect();
    let hosts: BTreeSet<_> = tenant_rules.iter().flat_map(|r| r.hosts.iter()).collect();
    let priorities: BTreeSet<_> = tenant_rules.iter().map(|r| r.priority).collect();
    assert_eq!(
        (tenant_rules.len(), hosts.len(), priorities.len()),
        (tenants.len(), tenants.len(), tenants.len()),
        "one rule per tenant, each with a host and a priority of its own: {rules:#?}"
    );
    let priorities: i64 = sqlx::query_scalar("SELECT count(*) FROM rule_priorities")
        .fetch_one(&stack.pool)
        .await
        .unwrap();
    assert_eq!(priorities, tenants.len() as i64);
}

pub async fn task_definitions(
    stack: &Stack,
    family: &str,
    status: Option<TaskDefinitionStatus>,
) -> Vec<String> {
    let statuses = match status {
        Some(s) => vec![s],
        None => vec![TaskDefinitionStatus::Active, TaskDefinitionStatus::Inactive],
    };
    let mut arns = Vec::new();
    for s in statuses {
        let out = stack
            .aws
            .ecs
            .list_task_definitions()
            .family_prefix(family)
            .status(s)
            .send()
            .await
            .unwrap();
        arns.extend(
            out.task_definition_arns()
                .iter()
                .filter(|a| a.contains(&format!("/{family}:")))
                .cloned(),
        );
    }
    arns
}

/// After every deletion: the retained tenants' bucket and table, one final backup per
/// purged table, and nothing else tagged for anyone.
async fn assert_nothing_left_but_retained_data(stack: &Stack, all: &[&str], purged: &[&str]) {
    let inv = inventory::take(&stack.aws, stack.cell(), "humangov")
        .await
        .unwrap();
    for (tenant, found) in &inv {
        let kinds: Vec<_> = found.iter().map(|f| f.kind).collect();
        assert!(
            all.contains(&tenant.as_str()) && !purged.contains(&tenant.as_str()),
            "left behind for {tenant}: {found:?}"
        );
        assert_eq!(kinds, ["bucket", "table"], "{tenant}: {found:?}");
    }
    assert_eq!(inv.len(), all.len() - purged.len());
    assert!(!purged.is_empty());
    for name in purged {
        assert_eq!(
            stack.backups(&format!("humangov-{name}")).await,
            1,
            "{name}: one final backup"
        );
    }
    let rules = rule::list(&stack.aws.elb, &stack.cell().listener_arn)
        .await
        .unwrap();
    assert!(
        rules.iter().all(|r| r.priority.is_none()),
        "only the default rule is left: {rules:#?}"
    );
    let priorities: i64 = sqlx::query_scalar("SELECT count(*) FROM rule_priorities")
        .fetch_one(&stack.pool)
        .await
        .unwrap();
    assert_eq!(priorities, 0);
}
