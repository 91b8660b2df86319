//! The resync level of observation: every tenant of a cell found whole by its last pass is
//! compared with what AWS holds, read for the whole cell in batched calls (services ten per
//! DescribeServices, the load balancer's target groups and the listener's rules page by
//! page, ELB tags twenty ARNs per call, log groups by prefix, scalable targets and scaling
//! policies fifty per call, alarms a hundred names per call). Task definitions are read
//! once per revision: a revision never changes. Nothing is changed here; a tenant found
//! drifted gets a full pass, which repairs it as any pass does.
//!
//! The settings no batched call returns (the bucket's, the table's, the role's policies,
//! the target group's attributes) are the deep check's, on its own slower cadence.

use std::{
    collections::{HashMap, HashSet},
    sync::Mutex,
};

use aws_sdk_applicationautoscaling::types::ScalingPolicy;
use aws_sdk_cloudwatch::types::MetricAlarm;
use aws_sdk_ecs::types::Service;
use aws_sdk_elasticloadbalancingv2::types::{Tag, TargetGroup};
use serde_json::Value;

use super::{
    alarms, log_group,
    plan::Plan,
    platform::Cell,
    rule::{self, ListedRule},
    scaling, service, target_group, task_def,
};
use crate::{
    aws::{Aws, AwsError},
    health::observe,
};

/// What a whole tenant's last pass recorded, which the resync compares against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub task_definition_arn: String,
    pub target_group_arn: String,
    pub rule_priority: i32,
}

impl Recorded {
    /// From the tenant's `resources`; `None` if a pass has not recorded them all.
    pub fn from_resources(resources: &Value) -> Option<Self> {
        Some(Self {
            task_definition_arn: resources["task_definition"]["arn"].as_str()?.to_owned(),
            target_group_arn: resources["target_group"]["arn"].as_str()?.to_owned(),
            rule_priority: i32::try_from(resources["listener_rule"]["priority"].as_i64()?).ok()?,
        })
    }
}

/// The digest tag of each ACTIVE task definition revision seen, by ARN. A revision's
/// definition never changes, so it is read from ECS once per process.
#[derive(Debug, Default)]
pub struct TaskDefinitions(Mutex<HashMap<String, String>>);

impl TaskDefinitions {
    fn get(&self, arn: &str) -> Option<String> {
        self.0.lock().ok()?.get(arn).cloned()
    }

    /// Reads the revisions not seen before; one that is not ACTIVE (or has no digest) is
    /// left out, so it counts as drift and is read again next time.
    async fn learn(&self, aws: &Aws, arns: &[&str]) -> Result<(), AwsError> {
        for arn in arns {
            if self.get(arn).is_some() {
                continue;
            }
            if let Some((_, Some(digest))) = task_def::active(&aws.ecs, arn).await? {
                if let Ok(mut seen) = self.0.lock() {
                    seen.insert((*arn).to_owned(), digest);
                }
            }
        }
        Ok(())
    }
}

/// What AWS holds for one cell's tenants, read in batched calls.
#[derive(Debug, Default)]
pub struct CellView {
    services: HashMap<String, Service>,
    target_groups: HashMap<String, TargetGroup>,
    target_group_tags: HashMap<String, Vec<Tag>>,
    rules: Vec<ListedRule>,
    log_groups: HashMap<String, Option<i32>>,
    scalable_targets: HashMap<String, (i32, i32)>,
    policies: HashMap<String, Vec<ScalingPolicy>>,
    alarms: HashMap<String, MetricAlarm>,
}

/// `…:listener/app/{name}/{id}/{listener}` → `…:loadbalancer/app/{name}/{id}`.
pub fn load_balancer_arn(listener_arn: &str) -> Option<String> {
    let (head, rest) = listener_arn.split_once(":listener/")?;
    let lb = rest.rsplit_once('/')?.0;
    Some(format!("{head}:loadbalancer/{lb}"))
}

/// DescribeAlarms takes at most this many names.
const ALARMS_PER_CALL: usize = 100;

/// Reads everything the comparison needs for `plans` (all of one cell) in batched calls.
pub async fn observe(
    aws: &Aws,
    cell: &Cell,
    prefix: &str,
    plans: &[(Plan<'_>, Recorded)],
    task_definitions: &TaskDefinitions,
) -> Result<CellView, AwsError> {
    let lb_arn = load_balancer_arn(&cell.listener_arn).ok_or_else(|| {
        AwsError::new(
            "elasticloadbalancing",
            "DescribeTargetGroups",
            "InvalidListenerArn",
            format!(
                "cell {}: `{}` is not a listener ARN",
                cell.name, cell.listener_arn
            ),
            crate::aws::Retry::Permanent,
        )
    })?;
    let services = observe::services_named(
        aws,
        plans
            .iter()
            .map(|(p, _)| (cell.cluster.as_str(), p.n.service.as_str())),
    );
    let routing = async {
        let (groups, rules) = tokio::try_join!(
            target_group::of_load_balancer(&aws.elb, &lb_arn),
            rule::list(&aws.elb, &cell.listener_arn),
        )?;
        let ours: HashSet<&str> = plans
            .iter()
            .map(|(_, r)| r.target_group_arn.as_str())
            .collect();
        let arns: Vec<String> = groups
            .iter()
            .filter_map(TargetGroup::target_group_arn)
            .filter(|arn| ours.contains(arn))
            .map(str::to_owned)
            .collect();
        let tags = target_group::tags_of(&aws.elb, &arns).await?;
        Ok::<_, AwsError>((groups, rules, tags))
    };
    let log_prefix = format!("/{prefix}/");
    let log_groups = log_group::retention_by_prefix(&aws.logs, &log_prefix);
    let ids: Vec<String> = plans.iter().map(|(p, _)| p.resource_id.clone()).collect();
    let names: Vec<String> = plans
        .iter()
        .map(|(p, _)| p.n.scaling_policy.clone())
        .collect();
    let scalable = scaling::targets_of(&aws.autoscaling, &ids);
    let policies = scaling::policies_named(&aws.autoscaling, &names);
    let alarm_names: Vec<String> = plans.iter().flat_map(|(p, _)| p.n.alarms()).collect();
    let alarms = async {
        let mut found = Vec::new();
        for batch in alarm_names.chunks(ALARMS_PER_CALL) {
            found.extend(alarms::describe(&aws.cloudwatch, batch).await?);
        }
        Ok::<_, AwsError>(found)
    };
    let revisions: Vec<&str> = plans
        .iter()
        .map(|(_, r)| r.task_definition_arn.as_str())
        .collect();
    let (services, (groups, rules, tags), log_groups, scalable, policies, alarms, ()) = tokio::try_join!(
        services,
        routing,
        log_groups,
        scalable,
        policies,
        alarms,
        task_definitions.learn(aws, &revisions),
    )?;
    Ok(CellView {
        services: services
            .into_iter()
            .map(|((_, name), svc)| (name, svc))
            .collect(),
        target_groups: groups
            .into_iter()
            .filter_map(|g| Some((g.target_group_name()?.to_owned(), g)))
            .collect(),
        target_group_tags: tags,
        rules,
        log_groups,
        scalable_targets: scalable,
        policies,
        alarms: alarms
            .into_iter()
            .filter_map(|a| Some((a.alarm_name()?.to_owned(), a)))
            .collect(),
    })
}

/// Every way in which the tenant differs from its spec, as far as `view` shows; empty when
/// it is whole. The same comparisons the resources' `ensure` make before repairing.
pub fn drift(
    view: &CellView,
    plan: &Plan<'_>,
    recorded: &Recorded,
    task_definitions: &TaskDefinitions,
) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    let n = &plan.n;
    let (td_arn, tg_arn) = (
        recorded.task_definition_arn.as_str(),
        recorded.target_group_arn.as_str(),
    );

    match task_definitions.get(td_arn) {
        Some(digest) if digest == task_def::digest(&plan.task_def()) => {}
        Some(_) => found.push(format!("task definition {td_arn} differs from the spec")),
        None => found.push(format!("task definition {td_arn} is not active")),
    }

    match view.services.get(&n.service) {
        None => found.push(format!("service {} is missing", n.service)),
        Some(svc) if svc.status() == Some("DRAINING") => {
            found.push(format!("service {} is draining", n.service));
        }
        Some(svc) => found.extend(
            service::drift(svc, &plan.service(td_arn, tg_arn))
                .into_iter()
                .map(|d| d.describe().to_owned()),
        ),
    }

    match view.target_groups.get(&n.target_group) {
        None => found.push(format!(
            "target group {} is missing from the load balancer",
            n.target_group
        )),
        Some(tg) if tg.target_group_arn() != Some(tg_arn) => {
            found.push(format!("target group {} was replaced", n.target_group));
        }
        Some(tg) => {
            found.extend(target_group::drift(tg, &plan.target_group()).map(str::to_owned));
            let tags = view
                .target_group_tags
                .get(tg_arn)
                .map_or(&[][..], Vec::as_slice);
            if !target_group::has_tenant_tags(tags, n.slug) {
                found.push("the target group lacks the statehouse tags".to_owned());
            }
        }
    }

    match rule::find(&view.rules, &plan.host) {
        None => found.push(format!("the listener rule for {} is missing", plan.host)),
        Some(r) => found.extend(
            rule::drift(r, &plan.rule(tg_arn, recorded.rule_priority))
                .into_iter()
                .map(str::to_owned),
        ),
    }

    match view.log_groups.get(&n.log_group) {
        None => found.push(format!("log group {} is missing", n.log_group)),
        Some(days) if *days != Some(plan.platform.log_retention_days) => {
            found.push(format!("log group {}'s retention differs", n.log_group));
        }
        Some(_) => {}
    }

    let s = plan.scaling();
    if view.scalable_targets.get(&plan.resource_id) != Some(&(s.min, s.max)) {
        found.push("the scalable target is missing or has other bounds".to_owned());
    }
    let policy_ok = view.policies.get(&plan.resource_id).is_some_and(|ps| {
        ps.iter()
            .any(|p| p.policy_name() == n.scaling_policy && scaling::policy_matches(p))
    });
    if !policy_ok {
        found.push(format!(
            "scaling policy {} is missing or differs",
            n.scaling_policy
        ));
    }

    for want in plan.alarms(tg_arn) {
        match view.alarms.get(&want.name) {
            None => found.push(format!("alarm {} is missing", want.name)),
            Some(have) if !alarms::matches(have, &want) => {
                found.push(format!("alarm {} differs", want.name));
            }
            Some(_) => {}
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_load_balancer_is_read_off_its_listener_arn() {
        let listener =
            "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/shared/50dc6c495c0c9188/f2f7dc8efc522ab2";
        assert_eq!(
            load_balancer_arn(listener).as_deref(),
            Some("arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/shared/50dc6c495c0c9188")
        );
        assert_eq!(load_balancer_arn("arn:aws:sns:us-east-1:1:topic"), None);
    }

    #[test]
    fn what_a_pass_recorded_is_read_back_or_nothing() {
        let resources = serde_json::json!({
            "task_definition": { "arn": "td:3" },
            "target_group": { "arn": "tg" },
            "listener_rule": { "priority": 7 },
        });
        assert_eq!(
            Recorded::from_resources(&resources),
            Some(Recorded {
                task_definition_arn: "td:3".into(),
                target_group_arn: "tg".into(),
                rule_priority: 7,
            })
        );
        assert_eq!(
            Recorded::from_resources(&serde_json::json!({ "target_group": { "arn": "tg" } })),
            None
        );
    }
}
