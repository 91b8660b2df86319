//! A cell in another account (and region): the worker reaches it with AssumeRole, the
//! tenant's stack is made there and nowhere else, and deleting it leaves nothing in either.

use std::time::Duration;

use sqlx::PgPool;
use statehouse::{
    domain::{state::StateSlug, tenant::DataPolicy},
    reconcile::{bucket, inventory, role},
};

use crate::{
    harness::{settings, spec, Stack},
    proxy::{FaultConfig, Rule},
};

const OTHER_ROLE: &str = "arn:aws:iam::222222222222:role/statehouse-cell";
const OTHER_REGION: &str = "us-east-1";

/// The kinds of resource `tenant` has in `cell`, read with `aws`.
async fn kinds(
    aws: &statehouse::aws::Aws,
    stack: &Stack,
    cell: &str,
    tenant: &str,
) -> Vec<&'static str> {
    let cell = stack.platform.cell(cell).unwrap();
    let inv = inventory::take(aws, cell, "humangov").await.unwrap();
    let mut kinds: Vec<_> = inv
        .get(tenant)
        .into_iter()
        .flatten()
        .map(|f| f.kind)
        .collect();
    kinds.sort_unstable();
    kinds
}

#[sqlx::test]
async fn a_cell_in_another_account_gets_its_tenants_there_and_deleting_leaves_nothing_in_either(
    pool: PgPool,
) {
    let mut stack = Stack::without_worker(pool, 1, Duration::from_secs(600)).await;
    stack
        .add_cell_in_account("dedicated", OTHER_ROLE, OTHER_REGION)
        .await;
    let other = stack.platform.cell("dedicated").unwrap().clone();
    assert_eq!(
        other.account, "222222222222",
        "bootstrapped in the role's account"
    );
    assert_ne!(other.account, stack.platform.account);
    stack.start_worker_observed(settings(), None);
    stack.create_in("vermont", spec(), "dedicated").await;
    stack.create("ohio", spec()).await;
    let vt = stack.ready("vermont").await;
    stack.ready("ohio").await;

    let there = stack.cell_aws["dedicated"].clone();
    let here = stack.aws.clone();
    assert_eq!(there.account_id().await.unwrap(), "222222222222");
    let slug = StateSlug::parse("vermont").unwrap();
    let names = other.names(&stack.platform.prefix, slug);
    assert_eq!(
        names.bucket,
        format!("humangov-vermont-222222222222-{OTHER_REGION}")
    );
    assert_eq!(
        vt.resources["task_role"]["arn"],
        format!("arn:aws:iam::222222222222:role/{}", names.task_role)
    );
    // Its stack is in the other account: bucket, role, the rest of it.
    assert!(bucket::exists(&there.s3, &names.bucket).await.unwrap());
    let spec_of_role = role::RoleSpec {
        name: &names.task_role,
        policy_name: &names.role_policy,
        account: &other.account,
        region: &other.region,
        bucket_arn: &bucket::arn(&names.bucket),
        table_arn: &other.table_arn(&names.table),
        tenant: slug,
    };
    assert!(role::observe(&there.iam, &spec_of_role)
        .await
        .unwrap()
        .is_some());
    let in_other = kinds(&there, &stack, "dedicated", "vermont").await;
    assert!(in_other.len() >= 8, "{in_other:?}");
    // And nothing of it is in the main account, where ohio is.
    assert!(role::observe(&here.iam, &spec_of_role)
        .await
        .unwrap()
        .is_none());
    assert!(kinds(&here, &stack, "cell-1", "vermont").await.is_empty());
    assert!(!kinds(&here, &stack, "cell-1", "ohio").await.is_empty());
    assert!(kinds(&there, &stack, "dedicated", "ohio").await.is_empty());

    stack.delete("vermont", DataPolicy::Purge).await;
    stack
        .wait_for("vermont", Duration::from_secs(120), |t| {
            t.status.as_str() == "deleted"
        })
        .await;
    assert_eq!(
        kinds(&there, &stack, "dedicated", "vermont").await,
        Vec::<&str>::new()
    );
    assert_eq!(
        kinds(&here, &stack, "cell-1", "vermont").await,
        Vec::<&str>::new()
    );
    assert!(!bucket::exists(&there.s3, &names.bucket).await.unwrap());
    stack.stop().await;
}

#[sqlx::test]
async fn a_role_that_cannot_be_assumed_fails_its_cell_s_tenants_clearly_and_the_other_cells_go_on(
    pool: PgPool,
) {
    let faults = FaultConfig::default().rule(Rule::error(
        "sts",
        "AssumeRole",
        403,
        "AccessDenied",
        "User is not authorized to perform: sts:AssumeRole on resource",
    ));
    let mut stack =
        Stack::without_worker_through(pool, 1, Duration::from_secs(600), Some(faults)).await;
    stack
        .add_cell_in_account("dedicated", OTHER_ROLE, OTHER_REGION)
        .await;
    stack.start_worker_observed(settings(), None);
    stack.create_in("vermont", spec(), "dedicated").await;
    stack.create("ohio", spec()).await;
    stack.ready("ohio").await;
    let vt = stack
        .wait_for("vermont", Duration::from_secs(60), |t| {
            t.last_error.as_deref().is_some_and(|e| e.contains("role"))
        })
        .await;
    let error = vt.last_error.unwrap_or_default();
    println!("vermont: {error}");
    assert!(error.contains(OTHER_ROLE), "{error}");
    assert!(error.contains("AccessDenied"), "{error}");
    stack.stop().await;
}
