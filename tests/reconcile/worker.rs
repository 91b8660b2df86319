//! The worker end to end: tenants written to Postgres become AWS stacks in the emulator,
//! change with their spec, and disappear on delete.

use std::{collections::HashSet, time::Duration};

use aws_sdk_ecs::types::{TaskDefinitionField, TaskDefinitionStatus};
use serde_json::Value;
use sqlx::PgPool;
use statehouse::{
    aws::calls::is_mutating,
    domain::{
        spec::SpecDoc,
        tenant::{DataPolicy, TenantStatus},
    },
    reconcile::{bucket, role, rule, service, table},
};

use crate::harness::{settings, spec, Stack};

fn resource<'a>(resources: &'a Value, kind: &str, field: &str) -> &'a str {
    resources[kind][field]
        .as_str()
        .unwrap_or_else(|| panic!("resources.{kind}.{field} in {resources:#}"))
}

#[sqlx::test]
async fn california_gets_every_resource_with_the_required_settings(pool: PgPool) {
    let stack = Stack::start(pool, 10, settings()).await;
    stack.create("california", spec()).await;
    let t = stack.ready("california").await;
    assert_eq!(
        t.endpoint.as_deref(),
        Some("https://california.humangov.localhost")
    );
    let aws = &stack.aws;
    let names = stack
        .platform
        .names(statehouse::domain::state::StateSlug::parse("ca").unwrap());

    // Bucket: public access blocked, encrypted, versioned, TLS-only, tagged.
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
    .expect("the bucket exists");
    assert!(
        b.public_access_blocked && b.encrypted && b.versioned && b.tls_only && b.tagged,
        "{b:?}"
    );
    assert_eq!(resource(&t.resources, "bucket", "name"), names.bucket);

    // Table: on demand, hash key id, encrypted, point-in-time recovery.
    let table_arn = stack.cell().table_arn(&names.table);
    let tb = table::observe(
        &aws.dynamodb,
        &table::TableSpec {
            name: &names.table,
            arn: &table_arn,
            tenant: names.slug,
        },
    )
    .await
    .unwrap()
    .expect("the table exists");
    assert!(
        tb.on_demand && tb.encrypted && tb.right_key && tb.pitr && tb.tagged,
        "{tb:?}"
    );

    // Role: the data policy names exactly this tenant's bucket, objects and table.
    let policy = stack.role_policy(&names).await;
    let mut resources = HashSet::new();
    for statement in policy["Statement"].as_array().unwrap() {
        assert_eq!(statement["Effect"], "Allow");
        match &statement["Resource"] {
            Value::String(r) => {
                resources.insert(r.clone());
            }
            Value::Array(rs) => resources.extend(rs.iter().map(|r| r.as_str().unwrap().to_owned())),
            other => panic!("unexpected Resource {other}"),
        }
        let actions = statement["Action"].as_array().unwrap();
        assert!(
            actions.iter().all(|a| !a.as_str().unwrap().contains('*')),
            "{actions:?}"
        );
    }
    let bucket_arn = bucket::arn(&names.bucket);
    let expected: HashSet<String> = [
        bucket_arn.clone(),
        format!("{bucket_arn}/*"),
        table_arn.clone(),
        format!("{table_arn}/index/*"),
    ]
    .into();
    assert_eq!(resources, expected);
    let trust = aws
        .iam
        .get_role()
        .role_name(&names.task_role)
        .send()
        .await
        .unwrap();
    let trust =
        role::parse_document(trust.role().unwrap().assume_role_policy_document().unwrap()).unwrap();
    assert_eq!(
        trust["Statement"][0]["Principal"]["Service"],
        "ecs-tasks.amazonaws.com"
    );
    assert_eq!(
        trust["Statement"][0]["Condition"]["StringEquals"]["aws:SourceAccount"],
        stack.platform.account
    );

    // Task definition: Fargate, both containers, env, ports, logs, roles.
    let td = aws
        .ecs
        .describe_task_definition()
        .task_definition(resource(&t.resources, "task_definition", "arn"))
        .send()
        .await
        .unwrap();
    let td = td.task_definition().unwrap();
    assert_eq!((td.cpu(), td.memory()), (Some("256"), Some("512")));
    assert_eq!(td.network_mode().map(|m| m.as_str()), Some("awsvpc"));
    assert_eq!(
        td.task_role_arn(),
        Some(stack.cell().role_arn_of(&names.task_role).as_str())
    );
    assert_eq!(
        td.execution_role_arn(),
        Some(stack.platform.execution_role_arn.as_str())
    );
    let app = td
        .container_definitions()
        .iter()
        .find(|c| c.name() == Some("app"))
        .unwrap();
    let nginx = td
        .container_definitions()
        .iter()
        .find(|c| c.name() == Some("nginx"))
        .unwrap();
    assert_eq!(app.image(), Some("humangov/app:1.0.0"));
    assert_eq!(app.port_mappings()[0].container_port(), Some(8000));
    assert_eq!(nginx.port_mappings()[0].container_port(), Some(80));
    let env: std::collections::BTreeMap<_, _> = app
        .environment()
        .iter()
        .map(|kv| (kv.name().unwrap(), kv.value().unwrap()))
        .collect();
    assert_eq!(env["AWS_BUCKET"], names.bucket);
    assert_eq!(env["AWS_DYNAMODB_TABLE"], names.table);
    assert_eq!(env["AWS_REGION"], crate::REGION);
    assert_eq!(env["US_STATE"], "california");
    assert_eq!(env["FEATURE_X"], "on");
    for c in [app, nginx] {
        let logs = c.log_configuration().unwrap();
        assert_eq!(logs.log_driver().as_str(), "awslogs");
        assert_eq!(
            logs.options().unwrap()["awslogs-group"],
            "/humangov/california"
        );
    }

    // Target group and listener rule.
    let tg = statehouse::reconcile::target_group::describe(&aws.elb, &names.target_group)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(tg.port(), Some(80));
    assert_eq!(tg.target_type().map(|t| t.as_str()), Some("ip"));
    assert_eq!(tg.vpc_id(), Some(stack.cell().vpc_id.as_str()));
    let rules = rule::list(&aws.elb, &stack.cell().listener_arn)
        .await
        .unwrap();
    let r = rule::find(&rules, "california.humangov.localhost").expect("the host rule");
    assert_eq!(r.forwards_to, [tg.target_group_arn().unwrap().to_owned()]);
    assert_eq!(
        r.priority,
        t.resources["listener_rule"]["priority"]
            .as_i64()
            .map(|p| p as i32)
    );

    // Service: Fargate in the private subnets with the tasks group, behind nginx:80.
    let svc = service::describe(&aws.ecs, &stack.cell().cluster, &names.service)
        .await
        .unwrap()
        .unwrap();
    let lb = &svc.load_balancers()[0];
    assert_eq!(lb.target_group_arn(), tg.target_group_arn());
    assert_eq!(
        (lb.container_name(), lb.container_port()),
        (Some("nginx"), Some(80))
    );
    let vpc = svc
        .network_configuration()
        .unwrap()
        .awsvpc_configuration()
        .unwrap();
    assert_eq!(vpc.subnets(), stack.cell().subnets.as_slice());
    assert_eq!(
        vpc.security_groups(),
        stack.cell().security_groups.as_slice()
    );
    assert_eq!(vpc.assign_public_ip().map(|a| a.as_str()), Some("DISABLED"));

    // Autoscaling bounds from the spec.
    let targets = aws
        .autoscaling
        .describe_scalable_targets()
        .service_namespace(aws_sdk_applicationautoscaling::types::ServiceNamespace::Ecs)
        .resource_ids(format!(
            "service/{}/{}",
            stack.cell().cluster,
            names.service
        ))
        .send()
        .await
        .unwrap();
    let target = &targets.scalable_targets()[0];
    assert_eq!((target.min_capacity(), target.max_capacity()), (1, 3));

    // Honest status: a condition per resource, all true, and the deployment completed.
    for kind in [
        "bucket",
        "table",
        "task_role",
        "log_group",
        "task_definition",
        "target_group",
        "listener_rule",
        "alarms",
        "service",
        "autoscaling",
        "Deployed",
        "Ready",
    ] {
        let c = t
            .conditions
            .iter()
            .find(|c| c.kind == kind)
            .unwrap_or_else(|| panic!("condition {kind}"));
        assert_eq!(c.status, "True", "{c:?}");
    }
    stack.stop().await;
}

#[sqlx::test]
async fn all_56_states_at_once_become_ready_with_distinct_priorities(pool: PgPool) {
    let stack = Stack::start(pool, 10, settings()).await;
    let all: Vec<_> = statehouse::domain::state::StateSlug::all().collect();
    assert_eq!(all.len(), 56);
    for slug in &all {
        stack.create(slug.as_str(), spec()).await;
    }
    let mut priorities = HashSet::new();
    for slug in &all {
        let t = stack
            .wait_for(slug.as_str(), Duration::from_secs(240), |t| {
                t.status == TenantStatus::Ready
            })
            .await;
        priorities.insert(t.resources["listener_rule"]["priority"].as_i64().unwrap());
    }
    assert_eq!(priorities.len(), 56, "{priorities:?}");
    let rules = rule::list(&stack.aws.elb, &stack.cell().listener_arn)
        .await
        .unwrap();
    let on_listener: HashSet<_> = rules.iter().filter_map(|r| r.priority).collect();
    assert_eq!(on_listener.len(), 56);
    stack.stop().await;
}

#[sqlx::test]
async fn an_image_change_registers_a_new_revision_and_a_no_op_changes_nothing(pool: PgPool) {
    let stack = Stack::start(pool, 10, settings()).await;
    stack.create("oregon", spec()).await;
    let first = stack.ready("oregon").await;
    let first_td = resource(&first.resources, "task_definition", "arn").to_owned();
    // The emulator does not keep the deployment settings CreateService was given, so the
    // first resync restores them; from then on AWS matches.
    stack.reconcile("oregon").await;
    stack.settled("oregon").await;

    let before = stack.mutating_calls();
    for _ in 0..10 {
        stack.reconcile("oregon").await;
        stack.settled("oregon").await;
    }
    assert_eq!(
        stack.mutating_calls(),
        before,
        "{:#?}",
        stack.aws.calls.snapshot()
    );

    // Scaled out by autoscaling: the worker must not put the count back.
    stack
        .aws
        .ecs
        .update_service()
        .cluster(&stack.cell().cluster)
        .service("humangov-oregon")
        .desired_count(3)
        .send()
        .await
        .unwrap();
    let new_spec = SpecDoc {
        app_image: "humangov/app:1.1.0".into(),
        ..spec()
    };
    stack.update_spec("oregon", new_spec).await;
    let updated = stack
        .wait_for("oregon", Duration::from_secs(60), |t| {
            t.status == TenantStatus::Ready && t.observed_generation == 2
        })
        .await;
    let new_td = resource(&updated.resources, "task_definition", "arn");
    assert_ne!(new_td, first_td);
    assert!(new_td.ends_with(":2"), "{new_td}");
    let svc = service::describe(&stack.aws.ecs, &stack.cell().cluster, "humangov-oregon")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(svc.task_definition(), Some(new_td));
    assert_eq!(svc.desired_count(), 3, "a count autoscaling raised is kept");
    stack.stop().await;
}

/// A second revision with the same rendering, e.g. one a worker sent after losing its
/// lease: the next pass keeps the recorded revision, deploys nothing, and retires the copy.
#[sqlx::test]
async fn a_duplicate_revision_is_retired_without_a_deployment(pool: PgPool) {
    let stack = Stack::start(pool, 10, settings()).await;
    stack.create("utah", spec()).await;
    let first = stack.ready("utah").await;
    let recorded = resource(&first.resources, "task_definition", "arn").to_owned();
    stack.reconcile("utah").await;
    stack.settled("utah").await;

    let ecs = &stack.aws.ecs;
    let out = ecs
        .describe_task_definition()
        .task_definition(&recorded)
        .include(TaskDefinitionField::Tags)
        .send()
        .await
        .unwrap();
    let td = out.task_definition().unwrap();
    let copy = ecs
        .register_task_definition()
        .family("humangov-utah")
        .set_requires_compatibilities(Some(td.requires_compatibilities().to_vec()))
        .set_network_mode(td.network_mode().cloned())
        .set_cpu(td.cpu().map(str::to_owned))
        .set_memory(td.memory().map(str::to_owned))
        .set_task_role_arn(td.task_role_arn().map(str::to_owned))
        .set_execution_role_arn(td.execution_role_arn().map(str::to_owned))
        .set_container_definitions(Some(td.container_definitions().to_vec()))
        .set_tags(Some(out.tags().to_vec()))
        .send()
        .await
        .unwrap();
    let copy = copy
        .task_definition()
        .and_then(|t| t.task_definition_arn())
        .unwrap()
        .to_owned();
    assert!(copy.ends_with(":2"), "{copy}");

    let before = stack.aws.calls.snapshot();
    stack.reconcile("utah").await;
    stack.settled("utah").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while copy_status(ecs, &copy).await != Some(TaskDefinitionStatus::Inactive) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the copy was never retired"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let t = stack.ready("utah").await;
    assert_eq!(resource(&t.resources, "task_definition", "arn"), recorded);
    let svc = service::describe(ecs, &stack.cell().cluster, "humangov-utah")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        svc.task_definition(),
        Some(recorded.as_str()),
        "no new deployment"
    );
    let after = stack.aws.calls.snapshot();
    let mutating: Vec<&str> = after
        .iter()
        .filter(|(k, n)| is_mutating(&k.operation) && before.get(*k) != Some(*n))
        .map(|(k, _)| k.operation.as_str())
        .collect();
    assert_eq!(mutating, ["DeregisterTaskDefinition"], "{after:#?}");
    stack.stop().await;
}

/// The value of the metric sample `name` (with its labels) in Prometheus text; 0 if absent.
fn sample(rendered: &str, name: &str) -> f64 {
    rendered
        .lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0.0)
}

async fn copy_status(ecs: &aws_sdk_ecs::Client, arn: &str) -> Option<TaskDefinitionStatus> {
    ecs.describe_task_definition()
        .task_definition(arn)
        .send()
        .await
        .unwrap()
        .task_definition()
        .and_then(|t| t.status().cloned())
}

#[sqlx::test]
async fn deleting_with_retain_keeps_only_the_bucket_and_table(pool: PgPool) {
    let stack = Stack::start(pool, 10, settings()).await;
    stack.create("vermont", spec()).await;
    stack.create("maine", spec()).await;
    stack.ready("vermont").await;
    stack.ready("maine").await;
    // One of each kind, and six alarms.
    assert_eq!(stack.leftovers("vermont").await.len(), 9 + 6);
    stack.delete("vermont", DataPolicy::Retain).await;
    let t = stack
        .wait_for("vermont", Duration::from_secs(60), |t| {
            t.status == TenantStatus::Deleted
        })
        .await;
    assert_eq!(stack.leftovers("vermont").await, ["bucket", "table"]);
    assert_eq!(t.resources["bucket"]["retained"], true);
    assert_eq!(
        stack.leftovers("maine").await.len(),
        9 + 6,
        "the neighbour is untouched"
    );
    stack.stop().await;
}

#[sqlx::test]
async fn deleting_with_purge_leaves_nothing_but_a_final_backup(pool: PgPool) {
    let stack = Stack::start(pool, 10, settings()).await;
    stack.create("nevada", spec()).await;
    stack.ready("nevada").await;
    // Objects and their old versions must go too.
    let bucket = stack
        .platform
        .names(statehouse::domain::state::StateSlug::parse("nv").unwrap())
        .bucket;
    stack
        .aws
        .s3
        .delete_bucket_policy()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    for body in ["v1", "v2"] {
        stack
            .aws
            .s3
            .put_object()
            .bucket(&bucket)
            .key("enrolment.csv")
            .body(body.as_bytes().to_vec().into())
            .send()
            .await
            .unwrap();
    }
    stack.delete("nevada", DataPolicy::Purge).await;
    let t = stack
        .wait_for("nevada", Duration::from_secs(60), |t| {
            t.status == TenantStatus::Deleted
        })
        .await;
    assert!(stack.leftovers("nevada").await.is_empty());
    assert_eq!(stack.backups("humangov-nevada").await, 1);
    assert!(t.resources["table_backup"]["arn"].is_string());
    stack.stop().await;
}

#[sqlx::test]
async fn a_deleted_state_can_be_created_again(pool: PgPool) {
    let stack = Stack::start(pool, 10, settings()).await;
    let first = stack.create("utah", spec()).await;
    stack.ready("utah").await;
    stack.delete("utah", DataPolicy::Retain).await;
    stack
        .wait_for("utah", Duration::from_secs(60), |t| {
            t.status == TenantStatus::Deleted
        })
        .await;
    let second = stack.create("utah", spec()).await;
    assert_ne!(first.id, second.id);
    let t = stack.ready("utah").await;
    assert_eq!(t.id, second.id);
    // The retained bucket and table are adopted, and everything exists once.
    let left = stack.leftovers("utah").await;
    assert_eq!(left.iter().filter(|k| **k == "listener_rule").count(), 1);
    assert_eq!(left.iter().filter(|k| **k == "service").count(), 1);
    assert_eq!(left.iter().filter(|k| **k == "bucket").count(), 1);
    stack.stop().await;
}

#[sqlx::test]
async fn a_deployment_that_never_completes_ends_in_a_clear_condition(pool: PgPool) {
    let stack = Stack::start_with(pool, 0, settings(), Duration::from_secs(3)).await;
    stack.create("alaska", spec()).await;
    let t = stack
        .wait_for("alaska", Duration::from_secs(60), |t| {
            t.status == TenantStatus::Failed
        })
        .await;
    let deployed = t.conditions.iter().find(|c| c.kind == "Deployed").unwrap();
    assert_eq!(
        (deployed.status.as_str(), deployed.reason.as_str()),
        ("False", "DeploymentFailed")
    );
    assert!(
        deployed.message.contains("0 of 1 tasks running"),
        "{}",
        deployed.message
    );
    assert!(t.last_error.unwrap().contains("did not complete"));
    assert_eq!(t.observed_generation, 0);
    stack.stop().await;
}

#[sqlx::test]
async fn a_permanent_error_fails_at_once_and_a_reconcile_request_retries_it(pool: PgPool) {
    let stack = Stack::start(pool, 10, settings()).await;
    // A table of the tenant's name with another key schema: nothing the worker may fix.
    stack
        .aws
        .dynamodb
        .create_table()
        .table_name("humangov-idaho")
        .billing_mode(aws_sdk_dynamodb::types::BillingMode::PayPerRequest)
        .attribute_definitions(
            aws_sdk_dynamodb::types::AttributeDefinition::builder()
                .attribute_name("pk")
                .attribute_type(aws_sdk_dynamodb::types::ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            aws_sdk_dynamodb::types::KeySchemaElement::builder()
                .attribute_name("pk")
                .key_type(aws_sdk_dynamodb::types::KeyType::Hash)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    stack.create("idaho", spec()).await;
    let t = stack
        .wait_for("idaho", Duration::from_secs(60), |t| {
            t.status == TenantStatus::Failed
        })
        .await;
    let table = t.conditions.iter().find(|c| c.kind == "table").unwrap();
    assert_eq!(
        (table.status.as_str(), table.reason.as_str()),
        ("False", "IncompatibleTable")
    );
    assert!(t.last_error.as_deref().unwrap().contains("key schema"));
    let waits: bool =
        sqlx::query_scalar("SELECT next_attempt_at = 'infinity' FROM tenants WHERE name = 'idaho'")
            .fetch_one(&stack.pool)
            .await
            .unwrap();
    assert!(
        waits,
        "a permanent error waits for a new spec or a reconcile request"
    );
    let events = statehouse::db::events::list(&stack.pool, t.name.parse().unwrap(), None, 50)
        .await
        .unwrap();
    let error = events
        .iter()
        .find(|e| e.action == "aws.error")
        .expect("the AWS error is an event");
    assert_eq!(error.details["code"], "IncompatibleTable");
    assert_eq!(error.details["retry"], "permanent");

    // Fixed by hand; asking for a pass brings it to ready.
    stack
        .aws
        .dynamodb
        .delete_table()
        .table_name("humangov-idaho")
        .send()
        .await
        .unwrap();
    stack.reconcile("idaho").await;
    stack.ready("idaho").await;
    // The worker counts a pass once it has written its outcome: wait for the counts themselves.
    let counted = [
        "statehouse_reconciles_total{outcome=\"failed\"}",
        "statehouse_reconciles_total{outcome=\"ready\"}",
        "statehouse_time_to_ready_seconds_count",
    ];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let rendered = stack.metrics.render();
        let missing: Vec<_> = counted
            .iter()
            .filter(|name| sample(&rendered, name) < 1.0)
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{missing:?} not counted in\n{rendered}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let create_table: u64 = stack
        .aws
        .calls
        .snapshot()
        .iter()
        .filter(|(k, _)| k.operation == "CreateTable")
        .map(|(_, n)| *n)
        .sum();
    assert!(create_table >= 2, "the test's own table, then the worker's");
    stack.stop().await;
}

#[sqlx::test]
async fn a_worker_whose_lease_was_taken_over_cannot_write(pool: PgPool) {
    use statehouse::db::{self, leases};
    let slug = statehouse::domain::state::StateSlug::parse("iowa").unwrap();
    let mut conn = pool.acquire().await.unwrap();
    db::tenants::insert(
        &mut conn,
        db::tenants::NewTenant {
            name: slug,
            display_name: "Iowa",
            spec: &spec(),
            cell: "cell-1",
        },
    )
    .await
    .unwrap();
    drop(conn);
    let ttl = Duration::from_secs(30);
    let cells = ["cell-1".to_owned()];
    let elsewhere = ["cell-2".to_owned()];
    assert!(
        leases::claim(&pool, "worker-c", ttl, 10, &elsewhere)
            .await
            .unwrap()
            .is_empty(),
        "a worker only claims tenants of the cells it has settings for"
    );
    let a = leases::claim(&pool, "worker-a", ttl, 10, &cells)
        .await
        .unwrap()
        .remove(0);
    assert!(
        leases::claim(&pool, "worker-b", ttl, 10, &cells)
            .await
            .unwrap()
            .is_empty(),
        "a held lease keeps other workers off"
    );
    // Worker A stalls past its lease; B takes the tenant over.
    sqlx::query("UPDATE tenants SET lease_expires_at = now() - interval '1 second'")
        .execute(&pool)
        .await
        .unwrap();
    let b = leases::claim(&pool, "worker-b", ttl, 10, &cells)
        .await
        .unwrap()
        .remove(0);
    assert_ne!(a.token, b.token);

    let fenced = |r: Result<(), leases::LeaseError>| matches!(r, Err(leases::LeaseError::Fenced));
    let details = serde_json::json!({});
    assert!(fenced(
        leases::heartbeat(&pool, a.tenant.id, a.token, ttl).await
    ));
    assert!(fenced(
        leases::record_progress(
            &pool,
            a.tenant.id,
            a.token,
            &details,
            &[],
            Some(TenantStatus::Failed),
            a.request_seq,
        )
        .await
    ));
    assert!(fenced(
        leases::event(
            &pool,
            (&a.tenant, a.token),
            "worker:a",
            "stale",
            "stale",
            &details
        )
        .await
    ));
    let release = || leases::Release {
        status: TenantStatus::Ready,
        observed_generation: Some(1),
        endpoint: None,
        last_error: None,
        next_attempt_in: Some(Duration::from_secs(60)),
        attempts: 0,
        failing_since: None,
        whole: false,
    };
    assert!(fenced(leases::release(&pool, &a, release()).await));
    // The new holder's writes land.
    leases::event(
        &pool,
        (&b.tenant, b.token),
        "worker:b",
        "fresh",
        "fresh",
        &details,
    )
    .await
    .unwrap();
    leases::release(&pool, &b, release()).await.unwrap();
    let events: Vec<(String, String, Value)> =
        sqlx::query_as("SELECT actor, action, details FROM tenant_events ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
    let actions: Vec<_> = events.iter().map(|(_, a, _)| a.as_str()).collect();
    assert_eq!(
        actions,
        ["lease.taken_over", "fresh"],
        "A's writes left no trace"
    );
    let (actor, _, taken_over) = &events[0];
    assert_eq!(actor, "worker:worker-b");
    assert_eq!(taken_over["previous_owner"], "worker-a");
    assert_eq!(taken_over["previous_lease"], a.token.to_string());
    assert_eq!(taken_over["lease"], b.token.to_string());
}

#[sqlx::test]
async fn a_deletion_requested_during_a_pass_is_not_hidden_by_its_release(pool: PgPool) {
    use statehouse::db::{self, leases};
    let slug = statehouse::domain::state::StateSlug::parse("ohio").unwrap();
    let mut conn = pool.acquire().await.unwrap();
    let t = db::tenants::insert(
        &mut conn,
        db::tenants::NewTenant {
            name: slug,
            display_name: "Ohio",
            spec: &spec(),
            cell: "cell-1",
        },
    )
    .await
    .unwrap();
    let cells = ["cell-1".to_owned()];
    let claimed = leases::claim(&pool, "worker-a", Duration::from_secs(30), 1, &cells)
        .await
        .unwrap()
        .remove(0);
    // The API deletes the tenant while the pass that is making it is still running.
    db::tenants::request_deletion(&mut conn, t.id, DataPolicy::Retain)
        .await
        .unwrap();
    leases::release(
        &pool,
        &claimed,
        leases::Release {
            status: TenantStatus::Ready,
            observed_generation: Some(1),
            endpoint: Some("https://ohio.example"),
            last_error: None,
            next_attempt_in: Some(Duration::from_secs(3600)),
            attempts: 0,
            failing_since: None,
            whole: false,
        },
    )
    .await
    .unwrap();
    let (status, due): (TenantStatus, bool) =
        sqlx::query_as("SELECT status, next_attempt_at <= now() FROM tenants WHERE id = $1")
            .bind(t.id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(status, TenantStatus::Deleting);
    assert!(
        due,
        "the deletion is picked up at once, not after the resync interval"
    );
}
