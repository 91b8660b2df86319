//! The tenant's target group on the shared ALB: IP targets (Fargate tasks), HTTP on port 80
//! (nginx), health-checked through nginx, with a short deregistration delay so deploys and
//! deletes do not wait the default five minutes.

use std::collections::HashMap;

use aws_sdk_elasticloadbalancingv2::{
    types::{ProtocolEnum, Tag, TargetGroup, TargetGroupAttribute, TargetTypeEnum},
    Client,
};

use super::{tenant_tags, Changes};
use crate::{
    aws::{error::sdk, AwsError, Retry},
    domain::state::StateSlug,
};

const ELB: &str = "elasticloadbalancing";
const PORT: i32 = 80;
const HEALTH_PATH: &str = "/";
const HEALTH_MATCHER: &str = "200-399";
const DEREGISTRATION_DELAY: &str = "deregistration_delay.timeout_seconds";
const DEREGISTRATION_SECONDS: &str = "30";

pub struct TargetGroupSpec<'a> {
    pub name: &'a str,
    pub vpc_id: &'a str,
    pub tenant: StateSlug,
}

pub async fn describe(elb: &Client, name: &str) -> Result<Option<TargetGroup>, AwsError> {
    match elb.describe_target_groups().names(name).send().await {
        Ok(out) => Ok(out.target_groups.unwrap_or_default().into_iter().next()),
        Err(e) => AwsError::from_sdk(ELB, "DescribeTargetGroups", e)
            .tolerate(&["TargetGroupNotFound"])
            .map(|()| None),
    }
}

pub(super) fn tag_list(tenant: StateSlug) -> Vec<Tag> {
    tenant_tags(tenant)
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

/// Whether every resource in `arns` carries the tenant's tags.
pub(super) async fn tagged(elb: &Client, arn: &str, tenant: StateSlug) -> Result<bool, AwsError> {
    let out = elb
        .describe_tags()
        .resource_arns(arn)
        .send()
        .await
        .map_err(sdk(ELB, "DescribeTags"))?;
    let have = out
        .tag_descriptions()
        .iter()
        .flat_map(|d| d.tags())
        .cloned()
        .collect::<Vec<_>>();
    Ok(has_tenant_tags(&have, tenant))
}

/// Whether `have` holds the tenant's tags.
pub fn has_tenant_tags(have: &[Tag], tenant: StateSlug) -> bool {
    tenant_tags(tenant).iter().all(|(k, v)| {
        have.iter()
            .any(|t| t.key() == Some(*k) && t.value() == Some(v.as_str()))
    })
}

/// DescribeTags takes at most this many resources per call.
const TAGS_PER_CALL: usize = 20;

/// The tags of every resource in `arns`, twenty per DescribeTags.
pub async fn tags_of(elb: &Client, arns: &[String]) -> Result<HashMap<String, Vec<Tag>>, AwsError> {
    let mut found = HashMap::new();
    for batch in arns.chunks(TAGS_PER_CALL) {
        let out = elb
            .describe_tags()
            .set_resource_arns(Some(batch.to_vec()))
            .send()
            .await
            .map_err(sdk(ELB, "DescribeTags"))?;
        for d in out.tag_descriptions() {
            if let Some(arn) = d.resource_arn() {
                found.insert(arn.to_owned(), d.tags().to_vec());
            }
        }
    }
    Ok(found)
}

/// Every target group the load balancer routes to, page by page.
pub async fn of_load_balancer(elb: &Client, lb_arn: &str) -> Result<Vec<TargetGroup>, AwsError> {
    let mut groups = Vec::new();
    let mut marker = None;
    loop {
        let out = elb
            .describe_target_groups()
            .load_balancer_arn(lb_arn)
            .set_marker(marker)
            .page_size(400)
            .send()
            .await
            .map_err(sdk(ELB, "DescribeTargetGroups"))?;
        groups.extend(out.target_groups().iter().cloned());
        marker = out.next_marker().map(str::to_owned);
        if marker.is_none() {
            return Ok(groups);
        }
    }
}

/// How an existing target group differs from its spec, if it does: what `ensure` repairs
/// (or refuses), and what a resync reads off the load balancer's target groups.
pub fn drift(tg: &TargetGroup, spec: &TargetGroupSpec<'_>) -> Option<&'static str> {
    if !immutable_ok(tg, spec) {
        Some("the target group has another protocol, port, target type or VPC")
    } else if !health_ok(tg) {
        Some("the target group's health check differs")
    } else {
        None
    }
}

fn health_ok(tg: &TargetGroup) -> bool {
    tg.health_check_path() == Some(HEALTH_PATH)
        && tg.health_check_enabled() != Some(false)
        && tg
            .matcher()
            .and_then(|m| m.http_code())
            .is_none_or(|c| c == HEALTH_MATCHER)
}

fn immutable_ok(tg: &TargetGroup, spec: &TargetGroupSpec<'_>) -> bool {
    tg.protocol() == Some(&ProtocolEnum::Http)
        && tg.port() == Some(PORT)
        && tg.target_type() == Some(&TargetTypeEnum::Ip)
        && tg.vpc_id() == Some(spec.vpc_id)
}

async fn create(elb: &Client, spec: &TargetGroupSpec<'_>) -> Result<String, AwsError> {
    let out = elb
        .create_target_group()
        .name(spec.name)
        .protocol(ProtocolEnum::Http)
        .port(PORT)
        .vpc_id(spec.vpc_id)
        .target_type(TargetTypeEnum::Ip)
        .health_check_path(HEALTH_PATH)
        .health_check_interval_seconds(15)
        .healthy_threshold_count(2)
        .unhealthy_threshold_count(3)
        .matcher(
            aws_sdk_elasticloadbalancingv2::types::Matcher::builder()
                .http_code(HEALTH_MATCHER)
                .build(),
        )
        .set_tags(Some(tag_list(spec.tenant)))
        .send()
        .await
        .map_err(sdk(ELB, "CreateTargetGroup"))?;
    out.target_groups()
        .first()
        .and_then(|t| t.target_group_arn())
        .map(str::to_owned)
        .ok_or_else(|| {
            AwsError::new(
                ELB,
                "CreateTargetGroup",
                "MissingArn",
                "the answer named no target group",
                Retry::Transient,
            )
        })
}

async fn set_delay(elb: &Client, arn: &str) -> Result<(), AwsError> {
    elb.modify_target_group_attributes()
        .target_group_arn(arn)
        .attributes(
            TargetGroupAttribute::builder()
                .key(DEREGISTRATION_DELAY)
                .value(DEREGISTRATION_SECONDS)
                .build(),
        )
        .send()
        .await
        .map_err(sdk(ELB, "ModifyTargetGroupAttributes"))?;
    Ok(())
}

/// Returns the target group's ARN and what was changed. CreateTargetGroup with the same
/// settings answers with the existing group, so a create after a lost answer adopts it.
pub async fn ensure(
    elb: &Client,
    spec: &TargetGroupSpec<'_>,
    known: bool,
) -> Result<(String, Changes), AwsError> {
    let existing = if known {
        describe(elb, spec.name).await?
    } else {
        None
    };
    let tg = match existing {
        Some(tg) => tg,
        None => match create(elb, spec).await {
            Ok(arn) => {
                set_delay(elb, &arn).await?;
                return Ok((
                    arn,
                    vec!["CreateTargetGroup", "ModifyTargetGroupAttributes"],
                ));
            }
            // Made by a pass that ended (crashed) before it could record it: adopt it, and
            // check it below like any existing one.
            Err(e) if e.is(&["DuplicateTargetGroupName"]) => {
                describe(elb, spec.name).await?.ok_or(e)?
            }
            Err(e) => return Err(e),
        },
    };
    let arn = tg.target_group_arn().unwrap_or_default().to_owned();
    if !immutable_ok(&tg, spec) {
        return Err(AwsError::new(
            ELB,
            "DescribeTargetGroups",
            "IncompatibleTargetGroup",
            format!(
                "target group {} exists with another protocol, port, target type or VPC; it cannot be changed in place",
                spec.name
            ),
            Retry::Permanent,
        ));
    }
    let mut changes = Changes::new();
    if !health_ok(&tg) {
        elb.modify_target_group()
            .target_group_arn(&arn)
            .health_check_enabled(true)
            .health_check_path(HEALTH_PATH)
            .matcher(
                aws_sdk_elasticloadbalancingv2::types::Matcher::builder()
                    .http_code(HEALTH_MATCHER)
                    .build(),
            )
            .send()
            .await
            .map_err(sdk(ELB, "ModifyTargetGroup"))?;
        changes.push("ModifyTargetGroup");
    }
    changes.extend(ensure_attributes(elb, &arn).await?);
    if !tagged(elb, &arn, spec.tenant).await? {
        elb.add_tags()
            .resource_arns(&arn)
            .set_tags(Some(tag_list(spec.tenant)))
            .send()
            .await
            .map_err(sdk(ELB, "AddTags"))?;
        changes.push("AddTags");
    }
    Ok((arn, changes))
}

/// Restores the deregistration delay if it differs: the target group's deep check, which
/// no batched call can read.
pub async fn ensure_attributes(elb: &Client, arn: &str) -> Result<Changes, AwsError> {
    let attributes = elb
        .describe_target_group_attributes()
        .target_group_arn(arn)
        .send()
        .await
        .map_err(sdk(ELB, "DescribeTargetGroupAttributes"))?;
    let delay_ok = attributes.attributes().iter().any(|a| {
        a.key() == Some(DEREGISTRATION_DELAY) && a.value() == Some(DEREGISTRATION_SECONDS)
    });
    if delay_ok {
        return Ok(Changes::new());
    }
    set_delay(elb, arn).await?;
    Ok(vec!["ModifyTargetGroupAttributes"])
}

/// Fails (transiently) while a listener rule still uses it; the rule goes first.
pub async fn delete(elb: &Client, name: &str) -> Result<Changes, AwsError> {
    let Some(tg) = describe(elb, name).await? else {
        return Ok(Changes::new());
    };
    let arn = tg.target_group_arn().unwrap_or_default();
    match elb.delete_target_group().target_group_arn(arn).send().await {
        Ok(_) => Ok(vec!["DeleteTargetGroup"]),
        Err(e) => {
            let mut e = AwsError::from_sdk(ELB, "DeleteTargetGroup", e);
            if e.is(&["ResourceInUse"]) {
                e.retry = Retry::Transient;
            }
            e.tolerate(&["TargetGroupNotFound"])
                .map(|()| Changes::new())
        }
    }
}
