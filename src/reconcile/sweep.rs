//! The orphan sweep: resources that carry the statehouse tags (or a tenant's scaling name)
//! but belong to no live tenant, e.g. left by a deletion done by hand or by a tenant row
//! removed from the database. Retained data recorded on a tombstone is not an orphan.

use std::collections::HashSet;

use serde::Serialize;

use super::{
    alarms, bucket, inventory::Inventory, log_group, names, platform::Cell, role, rule, scaling,
    service, table, target_group, task_def, Changes,
};
use crate::aws::{error::Retry, Aws, AwsError};

/// The order resources are removed in, as in a tenant's deletion: what uses a resource
/// goes before it (the service before its target group, the rule before the target group).
pub const DELETE_ORDER: [&str; 10] = [
    "autoscaling",
    "service",
    "listener_rule",
    "alarms",
    "target_group",
    "task_definition",
    "log_group",
    "task_role",
    "table",
    "bucket",
];

/// The kinds that hold a tenant's data; the sweep removes them only when asked to.
pub const DATA_KINDS: [&str; 2] = ["table", "bucket"];

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Leftover {
    /// The value of the resource's `statehouse:tenant` tag.
    pub tenant: String,
    pub kind: &'static str,
    /// Name or ARN, as the inventory lists it.
    pub id: String,
}

#[derive(Debug, Default, Serialize)]
pub struct Findings {
    /// Resources of no live tenant, in deletion order.
    pub orphans: Vec<Leftover>,
    /// Buckets and tables a deleted tenant kept under its `retain` data policy.
    pub retained: Vec<Leftover>,
}

/// Splits an inventory: what belongs to a live tenant is left out; data recorded as
/// retained stays out of the orphans; everything else is an orphan.
pub fn classify(inv: Inventory, live: &HashSet<String>, retained: &HashSet<String>) -> Findings {
    let mut findings = Findings::default();
    for (tenant, found) in inv {
        if live.contains(&tenant) {
            continue;
        }
        for f in found {
            let item = Leftover {
                tenant: tenant.clone(),
                kind: f.kind,
                id: f.id,
            };
            if DATA_KINDS.contains(&item.kind) && retained.contains(&item.id) {
                findings.retained.push(item);
            } else {
                findings.orphans.push(item);
            }
        }
    }
    let rank = |kind: &str| DELETE_ORDER.iter().position(|k| *k == kind);
    findings
        .orphans
        .sort_by(|a, b| (rank(a.kind), &a.tenant, &a.id).cmp(&(rank(b.kind), &b.tenant, &b.id)));
    findings.retained.sort();
    findings
}

/// Removes one orphan. A table gets a final backup first, named with `backup_suffix`.
pub async fn delete(
    aws: &Aws,
    cell: &Cell,
    item: &Leftover,
    backup_suffix: &str,
) -> Result<Changes, AwsError> {
    let id = item.id.as_str();
    match item.kind {
        "autoscaling" => {
            let service = last_segment(id);
            scaling::delete(&aws.autoscaling, id, &names::scaling_policy_name(service)).await
        }
        "service" => service::delete(&aws.ecs, &cell.cluster, last_segment(id)).await,
        "listener_rule" => rule::delete_arn(&aws.elb, id).await,
        "alarms" => alarms::delete(&aws.cloudwatch, &[id.to_owned()]).await,
        "target_group" => target_group::delete(&aws.elb, target_group_name(id)).await,
        "task_definition" => task_def::delete(&aws.ecs, task_family(id)).await,
        "log_group" => log_group::delete(&aws.logs, id).await,
        "task_role" => role::delete(&aws.iam, id).await,
        "table" => {
            let backup = format!("{id}-sweep-{backup_suffix}");
            let mut changes = Changes::new();
            if table::final_backup(&aws.dynamodb, id, &backup)
                .await?
                .is_some()
            {
                changes.push("CreateBackup");
            }
            changes.extend(table::delete(&aws.dynamodb, id).await?);
            Ok(changes)
        }
        "bucket" => bucket::delete(&aws.s3, id).await,
        other => Err(AwsError::new(
            "statehouse",
            "Sweep",
            "UnknownKind",
            format!("no way to remove a resource of kind {other}"),
            Retry::Permanent,
        )),
    }
}

/// `arn:aws:ecs:…:service/{cluster}/{name}` → `{name}`.
fn last_segment(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

/// `arn:aws:elasticloadbalancing:…:targetgroup/{name}/{id}` → `{name}`.
fn target_group_name(arn: &str) -> &str {
    arn.split('/').nth(1).unwrap_or(arn)
}

/// `arn:aws:ecs:…:task-definition/{family}:{revision}` → `{family}`.
pub fn task_family(arn: &str) -> &str {
    let tail = arn.rsplit('/').next().unwrap_or(arn);
    tail.split(':').next().unwrap_or(tail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::inventory::Found;

    fn found(kind: &'static str, id: &str) -> Found {
        Found {
            kind,
            id: id.to_owned(),
        }
    }

    #[test]
    fn live_tenants_are_left_alone_and_retained_data_is_not_an_orphan() {
        let mut inv = Inventory::new();
        inv.insert("texas".into(), vec![found("bucket", "humangov-texas-1-r")]);
        inv.insert(
            "ohio".into(),
            vec![
                found("bucket", "humangov-ohio-1-r"),
                found("table", "humangov-ohio"),
                found("task_role", "humangov-ohio-task"),
                found("service", "arn:aws:ecs:r:1:service/c/humangov-ohio"),
            ],
        );
        let live = HashSet::from(["texas".to_owned()]);
        let retained = HashSet::from(["humangov-ohio".to_owned(), "humangov-ohio-1-r".to_owned()]);
        let f = classify(inv, &live, &retained);
        let kinds: Vec<_> = f.orphans.iter().map(|o| o.kind).collect();
        assert_eq!(kinds, ["service", "task_role"], "in deletion order");
        assert_eq!(f.retained.len(), 2);
        assert!(f
            .orphans
            .iter()
            .chain(&f.retained)
            .all(|o| o.tenant == "ohio"));
    }

    #[test]
    fn names_are_read_back_from_arns() {
        assert_eq!(
            target_group_name(
                "arn:aws:elasticloadbalancing:us-west-2:1:targetgroup/humangov-ohio/abc"
            ),
            "humangov-ohio"
        );
        assert_eq!(
            task_family("arn:aws:ecs:us-west-2:1:task-definition/humangov-ohio:7"),
            "humangov-ohio"
        );
        assert_eq!(
            last_segment("arn:aws:ecs:us-west-2:1:service/cluster-1/humangov-ohio"),
            "humangov-ohio"
        );
    }
}
