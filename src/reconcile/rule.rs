//! The tenant's rule on the shared HTTPS listener: host `{slug}.{base_domain}` forwards to
//! the tenant's target group. CreateRule has no idempotency token, so the rule is always
//! looked up (by its host) before one is created; its priority comes from Postgres.

use aws_sdk_elasticloadbalancingv2::{
    types::{
        Action, ActionTypeEnum, HostHeaderConditionConfig, Rule, RuleCondition, RulePriorityPair,
    },
    Client,
};

use super::{
    target_group::{tag_list, tagged},
    Changes,
};
use crate::{
    aws::{error::sdk, AwsError, Retry},
    domain::state::StateSlug,
};

const ELB: &str = "elasticloadbalancing";
const HOST_HEADER: &str = "host-header";

/// A rule on the listener as far as statehouse cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedRule {
    pub arn: String,
    /// `None` for the listener's default rule.
    pub priority: Option<i32>,
    pub hosts: Vec<String>,
    pub forwards_to: Vec<String>,
}

pub struct RuleSpec<'a> {
    pub listener_arn: &'a str,
    pub host: &'a str,
    pub target_group_arn: &'a str,
    pub priority: i32,
    pub tenant: StateSlug,
}

fn listed(rule: &Rule) -> ListedRule {
    let hosts = rule
        .conditions()
        .iter()
        .filter(|c| c.field() == Some(HOST_HEADER))
        .flat_map(|c| {
            c.host_header_config()
                .map(|h| h.values().to_vec())
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| c.values().to_vec())
        })
        .collect();
    let forwards_to = rule
        .actions()
        .iter()
        .filter(|a| a.r#type() == Some(&ActionTypeEnum::Forward))
        .flat_map(|a| {
            let single = a.target_group_arn().map(str::to_owned);
            let weighted = a
                .forward_config()
                .map(|f| {
                    f.target_groups()
                        .iter()
                        .filter_map(|t| t.target_group_arn().map(str::to_owned))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default();
            single.into_iter().chain(weighted)
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    ListedRule {
        arn: rule.rule_arn().unwrap_or_default().to_owned(),
        priority: rule.priority().and_then(|p| p.parse().ok()),
        hosts,
        forwards_to,
    }
}

/// Every rule on the listener, following pagination.
pub async fn list(elb: &Client, listener_arn: &str) -> Result<Vec<ListedRule>, AwsError> {
    let mut rules = Vec::new();
    let mut marker = None;
    loop {
        let out = elb
            .describe_rules()
            .listener_arn(listener_arn)
            .set_marker(marker)
            .page_size(400)
            .send()
            .await
            .map_err(sdk(ELB, "DescribeRules"))?;
        rules.extend(out.rules().iter().map(listed));
        marker = out.next_marker().map(str::to_owned);
        if marker.is_none() {
            return Ok(rules);
        }
    }
}

/// The tenant's rule: the one whose only host is the tenant's.
pub fn find<'r>(rules: &'r [ListedRule], host: &str) -> Option<&'r ListedRule> {
    rules.iter().find(|r| r.hosts == [host])
}

fn forward(target_group_arn: &str) -> Action {
    Action::builder()
        .r#type(ActionTypeEnum::Forward)
        .target_group_arn(target_group_arn)
        .build()
}

fn host_condition(host: &str) -> RuleCondition {
    RuleCondition::builder()
        .field(HOST_HEADER)
        .host_header_config(HostHeaderConditionConfig::builder().values(host).build())
        .build()
}

/// Creates the rule if `existing` is `None`, else repairs its priority, target and tags.
/// Returns the rule's ARN.
const RULE_PRIORITY: &str = "the listener rule has another priority";
const RULE_TARGET: &str = "the listener rule forwards elsewhere";

/// How the tenant's rule differs from its spec (its tags aside): what `ensure` repairs, and
/// what a resync reads off the listener's rules.
pub fn drift(rule: &ListedRule, spec: &RuleSpec<'_>) -> Vec<&'static str> {
    let mut found = Vec::new();
    if rule.priority != Some(spec.priority) {
        found.push(RULE_PRIORITY);
    }
    if rule.forwards_to != [spec.target_group_arn] {
        found.push(RULE_TARGET);
    }
    found
}

pub async fn ensure(
    elb: &Client,
    spec: &RuleSpec<'_>,
    existing: Option<&ListedRule>,
) -> Result<(String, Changes), AwsError> {
    let Some(rule) = existing else {
        let out = elb
            .create_rule()
            .listener_arn(spec.listener_arn)
            .priority(spec.priority)
            .conditions(host_condition(spec.host))
            .actions(forward(spec.target_group_arn))
            .set_tags(Some(tag_list(spec.tenant)))
            .send()
            .await
            .map_err(|e| {
                let mut e = AwsError::from_sdk(ELB, "CreateRule", e);
                // Taken by a rule statehouse did not make: the next pass allocates another.
                if e.is(&["PriorityInUse"]) {
                    e.retry = Retry::Transient;
                }
                e
            })?;
        let arn = out
            .rules()
            .first()
            .and_then(|r| r.rule_arn())
            .ok_or_else(|| {
                AwsError::new(
                    ELB,
                    "CreateRule",
                    "MissingArn",
                    "the answer named no rule",
                    Retry::Transient,
                )
            })?
            .to_owned();
        return Ok((arn, vec!["CreateRule"]));
    };
    let mut changes = Changes::new();
    let found = drift(rule, spec);
    if found.contains(&RULE_PRIORITY) {
        elb.set_rule_priorities()
            .rule_priorities(
                RulePriorityPair::builder()
                    .rule_arn(&rule.arn)
                    .priority(spec.priority)
                    .build(),
            )
            .send()
            .await
            .map_err(sdk(ELB, "SetRulePriorities"))?;
        changes.push("SetRulePriorities");
    }
    if found.contains(&RULE_TARGET) {
        elb.modify_rule()
            .rule_arn(&rule.arn)
            .conditions(host_condition(spec.host))
            .actions(forward(spec.target_group_arn))
            .send()
            .await
            .map_err(sdk(ELB, "ModifyRule"))?;
        changes.push("ModifyRule");
    }
    if !tagged(elb, &rule.arn, spec.tenant).await? {
        elb.add_tags()
            .resource_arns(&rule.arn)
            .set_tags(Some(tag_list(spec.tenant)))
            .send()
            .await
            .map_err(sdk(ELB, "AddTags"))?;
        changes.push("AddTags");
    }
    Ok((rule.arn.clone(), changes))
}

/// Deletes the tenant's rule, found by its host; none left is done.
pub async fn delete(elb: &Client, listener_arn: &str, host: &str) -> Result<Changes, AwsError> {
    let rules = match list(elb, listener_arn).await {
        Ok(r) => r,
        // No listener, no rule.
        Err(e) if e.is(&["ListenerNotFound"]) => return Ok(Changes::new()),
        Err(e) => return Err(e),
    };
    let mut changes = Changes::new();
    for rule in rules.iter().filter(|r| r.hosts == [host]) {
        changes.extend(delete_arn(elb, &rule.arn).await?);
    }
    Ok(changes)
}

/// Deletes one rule; one already gone is done.
pub async fn delete_arn(elb: &Client, arn: &str) -> Result<Changes, AwsError> {
    match elb.delete_rule().rule_arn(arn).send().await {
        Ok(_) => Ok(vec!["DeleteRule"]),
        Err(e) => AwsError::from_sdk(ELB, "DeleteRule", e)
            .tolerate(&["RuleNotFound"])
            .map(|()| Changes::new()),
    }
}
