//! Everything in the account that carries the statehouse tags, by tenant: the evidence that
//! a deleted tenant left nothing behind, and the input of an orphan sweep.

use std::collections::BTreeMap;

use aws_sdk_ecs::types::TaskDefinitionStatus;

use super::{platform::Cell, TAG_MANAGED_BY, TAG_TENANT};
use crate::{
    aws::{error::sdk, Aws, AwsError},
    domain::state::StateSlug,
};

/// One tagged resource: its kind and name or ARN.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Found {
    pub kind: &'static str,
    pub id: String,
}

/// Tenant slug → what is tagged for it.
pub type Inventory = BTreeMap<String, Vec<Found>>;

fn ours<'a>(tags: impl IntoIterator<Item = (&'a str, &'a str)>) -> Option<String> {
    let mut tenant = None;
    let mut managed = false;
    for (k, v) in tags {
        if k == TAG_TENANT {
            tenant = Some(v.to_owned());
        }
        if k == TAG_MANAGED_BY && v == super::MANAGED_BY {
            managed = true;
        }
    }
    tenant.filter(|_| managed)
}

fn add(inv: &mut Inventory, tenant: Option<String>, kind: &'static str, id: &str) {
    if let Some(t) = tenant {
        inv.entry(t).or_default().push(Found {
            kind,
            id: id.to_owned(),
        });
    }
}

/// Lists every tagged resource of every kind statehouse makes, in one cell. `prefix` names
/// the scalable targets, which Application Auto Scaling does not let us tag-read.
pub async fn take(aws: &Aws, cell: &Cell, prefix: &str) -> Result<Inventory, AwsError> {
    let mut inv = Inventory::new();
    buckets(aws, &mut inv).await?;
    tables(aws, &mut inv).await?;
    roles(aws, &mut inv).await?;
    log_groups(aws, &mut inv).await?;
    task_definitions(aws, &mut inv).await?;
    load_balancing(aws, cell, &mut inv).await?;
    services(aws, cell, &mut inv).await?;
    scalable_targets(aws, prefix, &mut inv).await?;
    alarms(aws, prefix, &mut inv).await?;
    for found in inv.values_mut() {
        found.sort();
    }
    Ok(inv)
}

async fn buckets(aws: &Aws, inv: &mut Inventory) -> Result<(), AwsError> {
    let mut names = Vec::new();
    let mut token = None;
    loop {
        let out = aws
            .s3
            .list_buckets()
            .set_continuation_token(token)
            .send()
            .await
            .map_err(sdk("s3", "ListBuckets"))?;
        names.extend(
            out.buckets()
                .iter()
                .filter_map(|b| b.name().map(str::to_owned)),
        );
        token = out.continuation_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    for name in &names {
        let tags = match aws.s3.get_bucket_tagging().bucket(name).send().await {
            Ok(t) => t.tag_set,
            Err(e) => {
                AwsError::from_sdk("s3", "GetBucketTagging", e)
                    .tolerate(&["NoSuchTagSet", "NoSuchBucket"])?;
                Vec::new()
            }
        };
        let tenant = ours(tags.iter().map(|t| (t.key(), t.value())));
        add(inv, tenant, "bucket", name);
    }
    Ok(())
}

async fn tables(aws: &Aws, inv: &mut Inventory) -> Result<(), AwsError> {
    let mut start = None;
    loop {
        let out = aws
            .dynamodb
            .list_tables()
            .set_exclusive_start_table_name(start)
            .send()
            .await
            .map_err(sdk("dynamodb", "ListTables"))?;
        for name in out.table_names() {
            let Some(table) = super::table::describe(&aws.dynamodb, name).await? else {
                continue;
            };
            let arn = table.table_arn().unwrap_or_default();
            let tags = aws
                .dynamodb
                .list_tags_of_resource()
                .resource_arn(arn)
                .send()
                .await
                .map_err(sdk("dynamodb", "ListTagsOfResource"))?;
            let tenant = ours(tags.tags().iter().map(|t| (t.key(), t.value())));
            add(inv, tenant, "table", name);
        }
        start = out.last_evaluated_table_name().map(str::to_owned);
        if start.is_none() {
            return Ok(());
        }
    }
}

async fn roles(aws: &Aws, inv: &mut Inventory) -> Result<(), AwsError> {
    let mut marker = None;
    loop {
        let out = aws
            .iam
            .list_roles()
            .set_marker(marker)
            .send()
            .await
            .map_err(sdk("iam", "ListRoles"))?;
        for role in out.roles() {
            let tags = aws
                .iam
                .list_role_tags()
                .role_name(role.role_name())
                .send()
                .await
                .map_err(sdk("iam", "ListRoleTags"))?;
            let tenant = ours(tags.tags().iter().map(|t| (t.key(), t.value())));
            add(inv, tenant, "task_role", role.role_name());
        }
        marker = out.marker().map(str::to_owned);
        if !out.is_truncated() || marker.is_none() {
            return Ok(());
        }
    }
}

async fn log_groups(aws: &Aws, inv: &mut Inventory) -> Result<(), AwsError> {
    let mut token = None;
    loop {
        let out = aws
            .logs
            .describe_log_groups()
            .set_next_token(token)
            .send()
            .await
            .map_err(sdk("logs", "DescribeLogGroups"))?;
        for group in out.log_groups() {
            let arn = group.arn().unwrap_or_default().trim_end_matches(":*");
            let tags = aws
                .logs
                .list_tags_for_resource()
                .resource_arn(arn)
                .send()
                .await
                .map_err(sdk("logs", "ListTagsForResource"))?;
            let tags = tags.tags().cloned().unwrap_or_default();
            let tenant = ours(tags.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            add(
                inv,
                tenant,
                "log_group",
                group.log_group_name().unwrap_or_default(),
            );
        }
        token = out.next_token().map(str::to_owned);
        if token.is_none() {
            return Ok(());
        }
    }
}

/// Revisions of either status: a deregistered revision is still a leftover until deleted.
async fn task_definitions(aws: &Aws, inv: &mut Inventory) -> Result<(), AwsError> {
    for status in [TaskDefinitionStatus::Active, TaskDefinitionStatus::Inactive] {
        let mut token = None;
        loop {
            let out = aws
                .ecs
                .list_task_definitions()
                .status(status.clone())
                .set_next_token(token)
                .send()
                .await
                .map_err(sdk("ecs", "ListTaskDefinitions"))?;
            for arn in out.task_definition_arns() {
                let tags = aws
                    .ecs
                    .list_tags_for_resource()
                    .resource_arn(arn)
                    .send()
                    .await
                    .map_err(sdk("ecs", "ListTagsForResource"))?;
                let tenant = ours(
                    tags.tags()
                        .iter()
                        .filter_map(|t| Some((t.key()?, t.value()?))),
                );
                add(inv, tenant, "task_definition", arn);
            }
            token = out.next_token().map(str::to_owned);
            if token.is_none() {
                break;
            }
        }
    }
    Ok(())
}

async fn elb_tags(aws: &Aws, arn: &str) -> Result<Option<String>, AwsError> {
    let out = aws
        .elb
        .describe_tags()
        .resource_arns(arn)
        .send()
        .await
        .map_err(sdk("elasticloadbalancing", "DescribeTags"))?;
    Ok(ours(
        out.tag_descriptions()
            .iter()
            .flat_map(|d| d.tags())
            .filter_map(|t| Some((t.key()?, t.value()?))),
    ))
}

async fn load_balancing(aws: &Aws, cell: &Cell, inv: &mut Inventory) -> Result<(), AwsError> {
    let mut arns = Vec::new();
    let mut marker = None;
    loop {
        let out = aws
            .elb
            .describe_target_groups()
            .set_marker(marker)
            .send()
            .await
            .map_err(sdk("elasticloadbalancing", "DescribeTargetGroups"))?;
        arns.extend(
            out.target_groups()
                .iter()
                .filter_map(|g| g.target_group_arn().map(str::to_owned)),
        );
        marker = out.next_marker().map(str::to_owned);
        if marker.is_none() {
            break;
        }
    }
    for arn in &arns {
        let tenant = elb_tags(aws, arn).await?;
        add(inv, tenant, "target_group", arn);
    }
    for rule in super::rule::list(&aws.elb, &cell.listener_arn).await? {
        if rule.priority.is_none() {
            continue;
        }
        let tenant = elb_tags(aws, &rule.arn).await?;
        add(inv, tenant, "listener_rule", &rule.arn);
    }
    Ok(())
}

/// Services that are not INACTIVE (deleted ones linger in that state for a while).
async fn services(aws: &Aws, cell: &Cell, inv: &mut Inventory) -> Result<(), AwsError> {
    let mut listed = Vec::new();
    let mut token = None;
    loop {
        let out = aws
            .ecs
            .list_services()
            .cluster(&cell.cluster)
            .set_next_token(token)
            .send()
            .await
            .map_err(sdk("ecs", "ListServices"))?;
        listed.extend(out.service_arns().iter().cloned());
        token = out.next_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    let mut live = Vec::new();
    for batch in listed.chunks(10) {
        let described = aws
            .ecs
            .describe_services()
            .cluster(&cell.cluster)
            .set_services(Some(batch.to_vec()))
            .send()
            .await
            .map_err(sdk("ecs", "DescribeServices"))?;
        live.extend(
            described
                .services()
                .iter()
                .filter(|s| s.status() != Some("INACTIVE"))
                .filter_map(|s| s.service_arn().map(str::to_owned)),
        );
    }
    for arn in &live {
        let tags = aws
            .ecs
            .list_tags_for_resource()
            .resource_arn(arn)
            .send()
            .await
            .map_err(sdk("ecs", "ListTagsForResource"))?;
        let tenant = ours(
            tags.tags()
                .iter()
                .filter_map(|t| Some((t.key()?, t.value()?))),
        );
        add(inv, tenant, "service", arn);
    }
    Ok(())
}

/// Alarms named `{prefix}-…`, by their tags (the scaling policy's `TargetTracking-…`
/// alarms belong to Application Auto Scaling and go with the policy).
async fn alarms(aws: &Aws, prefix: &str, inv: &mut Inventory) -> Result<(), AwsError> {
    for alarm in super::alarms::describe_prefix(&aws.cloudwatch, &format!("{prefix}-")).await? {
        let (Some(name), Some(arn)) = (alarm.alarm_name(), alarm.alarm_arn()) else {
            continue;
        };
        let tags = super::alarms::tags_of(&aws.cloudwatch, arn).await?;
        let tenant = ours(tags.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        add(inv, tenant, "alarms", name);
    }
    Ok(())
}

/// Scalable targets are named after their service, `service/{cluster}/{prefix}-{slug}`.
async fn scalable_targets(aws: &Aws, prefix: &str, inv: &mut Inventory) -> Result<(), AwsError> {
    let mut ids = Vec::new();
    let mut token = None;
    loop {
        let out = aws
            .autoscaling
            .describe_scalable_targets()
            .service_namespace(aws_sdk_applicationautoscaling::types::ServiceNamespace::Ecs)
            .set_next_token(token)
            .send()
            .await
            .map_err(sdk("application-autoscaling", "DescribeScalableTargets"))?;
        ids.extend(
            out.scalable_targets()
                .iter()
                .map(|t| t.resource_id().to_owned()),
        );
        token = out.next_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    for id in &ids {
        let service = id.rsplit('/').next().unwrap_or_default();
        let tenant = service
            .strip_prefix(prefix)
            .and_then(|s| s.strip_prefix('-'))
            .and_then(|s| StateSlug::parse(s).ok())
            .map(|s| s.as_str().to_owned());
        add(inv, tenant, "autoscaling", id);
    }
    Ok(())
}
