//! The tenant's task role: assumable only by ECS tasks of this account, and allowed only
//! this tenant's bucket (and its objects) and table. Nothing else is attached to it.

use aws_sdk_iam::{
    types::{EntityType, RoleDetail, Tag},
    Client,
};
use serde_json::{json, Value};

use super::{tenant_tags, Changes};
use crate::{
    aws::{error::sdk, AwsError},
    domain::state::StateSlug,
};

const IAM: &str = "iam";

pub struct RoleSpec<'a> {
    pub name: &'a str,
    pub policy_name: &'a str,
    pub account: &'a str,
    pub region: &'a str,
    pub bucket_arn: &'a str,
    pub table_arn: &'a str,
    pub tenant: StateSlug,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub trust_ok: bool,
    pub tagged: bool,
    pub policy_ok: bool,
    /// Inline policies other than ours, and attached managed policies: both widen the role.
    pub extra_inline: Vec<String>,
    pub attached: Vec<String>,
}

/// Only ECS tasks of this account, in this region, may assume the role.
pub fn trust_policy(spec: &RoleSpec<'_>) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": { "Service": "ecs-tasks.amazonaws.com" },
            "Action": "sts:AssumeRole",
            "Condition": {
                "StringEquals": { "aws:SourceAccount": spec.account },
                "ArnLike": { "aws:SourceArn": format!("arn:aws:ecs:{}:{}:*", spec.region, spec.account) }
            }
        }]
    })
}

/// What the application needs of its own bucket and table, and nothing more.
pub fn data_policy(spec: &RoleSpec<'_>) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ListOwnBucket",
                "Effect": "Allow",
                "Action": ["s3:ListBucket", "s3:GetBucketLocation"],
                "Resource": spec.bucket_arn
            },
            {
                "Sid": "OwnObjects",
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                "Resource": format!("{}/*", spec.bucket_arn)
            },
            {
                "Sid": "OwnTable",
                "Effect": "Allow",
                "Action": [
                    "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem",
                    "dynamodb:DeleteItem", "dynamodb:Query", "dynamodb:Scan",
                    "dynamodb:BatchGetItem", "dynamodb:BatchWriteItem",
                    "dynamodb:ConditionCheckItem", "dynamodb:DescribeTable"
                ],
                "Resource": [spec.table_arn, format!("{}/index/*", spec.table_arn)]
            }
        ]
    })
}

/// IAM answers policy documents URL-encoded.
pub fn parse_document(raw: &str) -> Option<Value> {
    serde_json::from_str(raw).ok().or_else(|| {
        let decoded = percent_encoding::percent_decode_str(raw)
            .decode_utf8()
            .ok()?;
        serde_json::from_str(&decoded).ok()
    })
}

fn not_found(e: AwsError) -> Result<(), AwsError> {
    e.tolerate(&["NoSuchEntity", "NoSuchEntityException"])
}

pub async fn observe(iam: &Client, spec: &RoleSpec<'_>) -> Result<Option<Observed>, AwsError> {
    let role = match iam.get_role().role_name(spec.name).send().await {
        Ok(out) => out.role,
        Err(e) => {
            not_found(AwsError::from_sdk(IAM, "GetRole", e))?;
            None
        }
    };
    let Some(role) = role else {
        return Ok(None);
    };
    let trust_ok = trust_matches(role.assume_role_policy_document(), spec);
    let tagged = tagged(role.tags(), spec);
    let policy_ok = match iam
        .get_role_policy()
        .role_name(spec.name)
        .policy_name(spec.policy_name)
        .send()
        .await
    {
        Ok(out) => parse_document(out.policy_document()) == Some(data_policy(spec)),
        Err(e) => {
            not_found(AwsError::from_sdk(IAM, "GetRolePolicy", e))?;
            false
        }
    };
    let inline = iam
        .list_role_policies()
        .role_name(spec.name)
        .send()
        .await
        .map_err(sdk(IAM, "ListRolePolicies"))?;
    let attached = iam
        .list_attached_role_policies()
        .role_name(spec.name)
        .send()
        .await
        .map_err(sdk(IAM, "ListAttachedRolePolicies"))?;
    Ok(Some(Observed {
        trust_ok,
        tagged,
        policy_ok,
        extra_inline: inline
            .policy_names()
            .iter()
            .filter(|n| *n != spec.policy_name)
            .cloned()
            .collect(),
        attached: attached
            .attached_policies()
            .iter()
            .filter_map(|p| p.policy_arn().map(str::to_owned))
            .collect(),
    }))
}

fn trust_matches(document: Option<&str>, spec: &RoleSpec<'_>) -> bool {
    document.and_then(parse_document) == Some(trust_policy(spec))
}

fn tagged(have: &[Tag], spec: &RoleSpec<'_>) -> bool {
    tenant_tags(spec.tenant).iter().all(|(k, v)| {
        have.iter()
            .any(|t| t.key() == *k && t.value() == v.as_str())
    })
}

impl Observed {
    /// How the role differs from its spec; empty when it matches. What `ensure` repairs.
    pub fn drift(&self) -> Vec<String> {
        let mut found = Vec::new();
        if !self.trust_ok {
            found.push("the role's trust policy differs".to_owned());
        }
        if !self.policy_ok {
            found.push("the role's data policy differs or is missing".to_owned());
        }
        if !self.extra_inline.is_empty() {
            found.push(format!(
                "the role has other inline policies: {}",
                self.extra_inline.join(", ")
            ));
        }
        if !self.attached.is_empty() {
            found.push(format!(
                "the role has attached policies: {}",
                self.attached.join(", ")
            ));
        }
        if !self.tagged {
            found.push("the role lacks the statehouse tags".to_owned());
        }
        found
    }
}

/// The role as GetAccountAuthorizationDetails describes it, compared as `observe` does.
pub fn observed_in(detail: &RoleDetail, spec: &RoleSpec<'_>) -> Observed {
    let ours = detail
        .role_policy_list()
        .iter()
        .find(|p| p.policy_name() == Some(spec.policy_name));
    Observed {
        trust_ok: trust_matches(detail.assume_role_policy_document(), spec),
        tagged: tagged(detail.tags(), spec),
        policy_ok: ours
            .and_then(|p| p.policy_document())
            .and_then(parse_document)
            == Some(data_policy(spec)),
        extra_inline: detail
            .role_policy_list()
            .iter()
            .filter_map(|p| p.policy_name())
            .filter(|n| *n != spec.policy_name)
            .map(str::to_owned)
            .collect(),
        attached: detail
            .attached_managed_policies()
            .iter()
            .filter_map(|p| p.policy_arn().map(str::to_owned))
            .collect(),
    }
}

/// Every role of the account, with its trust, inline and attached policies and tags, in
/// as few calls as IAM allows (one page per thousand roles): the batched form of the
/// deep check of every tenant's role.
pub async fn every_role(iam: &Client) -> Result<Vec<RoleDetail>, AwsError> {
    let mut roles = Vec::new();
    let mut marker = None;
    loop {
        let out = iam
            .get_account_authorization_details()
            .filter(EntityType::Role)
            .max_items(1000)
            .set_marker(marker)
            .send()
            .await
            .map_err(sdk(IAM, "GetAccountAuthorizationDetails"))?;
        roles.extend(out.role_detail_list().iter().cloned());
        marker = out
            .marker()
            .map(str::to_owned)
            .filter(|_| out.is_truncated());
        if marker.is_none() {
            return Ok(roles);
        }
    }
}

fn tags(tenant: StateSlug) -> Result<Vec<Tag>, AwsError> {
    tenant_tags(tenant)
        .into_iter()
        .map(|(k, v)| {
            Tag::builder()
                .key(k)
                .value(v)
                .build()
                .map_err(|e| AwsError::build(IAM, "TagRole", e))
        })
        .collect()
}

/// `false` when the role existed already.
async fn create(iam: &Client, spec: &RoleSpec<'_>) -> Result<bool, AwsError> {
    let sent = iam
        .create_role()
        .role_name(spec.name)
        .description(format!("statehouse task role of tenant {}", spec.tenant))
        .assume_role_policy_document(trust_policy(spec).to_string())
        .set_tags(Some(tags(spec.tenant)?))
        .send()
        .await;
    match sent {
        Ok(_) => Ok(true),
        Err(e) => AwsError::from_sdk(IAM, "CreateRole", e)
            .tolerate(&["EntityAlreadyExists", "EntityAlreadyExistsException"])
            .map(|()| false),
    }
}

async fn put_policy(iam: &Client, spec: &RoleSpec<'_>) -> Result<(), AwsError> {
    iam.put_role_policy()
        .role_name(spec.name)
        .policy_name(spec.policy_name)
        .policy_document(data_policy(spec).to_string())
        .send()
        .await
        .map_err(sdk(IAM, "PutRolePolicy"))?;
    Ok(())
}

/// Creates the role when none was recorded (adopting one that exists after all), otherwise
/// observes it and restores the trust, the data policy and the tags, and removes anything
/// that widens it.
pub async fn ensure(iam: &Client, spec: &RoleSpec<'_>, known: bool) -> Result<Changes, AwsError> {
    let mut changes = Changes::new();
    if !known && create(iam, spec).await? {
        put_policy(iam, spec).await?;
        return Ok(vec!["CreateRole", "PutRolePolicy"]);
    }
    let observed = match observe(iam, spec).await? {
        Some(o) => o,
        None => {
            create(iam, spec).await?;
            put_policy(iam, spec).await?;
            return Ok(vec!["CreateRole", "PutRolePolicy"]);
        }
    };
    if !observed.trust_ok {
        iam.update_assume_role_policy()
            .role_name(spec.name)
            .policy_document(trust_policy(spec).to_string())
            .send()
            .await
            .map_err(sdk(IAM, "UpdateAssumeRolePolicy"))?;
        changes.push("UpdateAssumeRolePolicy");
    }
    if !observed.policy_ok {
        put_policy(iam, spec).await?;
        changes.push("PutRolePolicy");
    }
    remove_extras(iam, spec.name, &observed, &mut changes).await?;
    if !observed.tagged {
        iam.tag_role()
            .role_name(spec.name)
            .set_tags(Some(tags(spec.tenant)?))
            .send()
            .await
            .map_err(sdk(IAM, "TagRole"))?;
        changes.push("TagRole");
    }
    Ok(changes)
}

async fn remove_extras(
    iam: &Client,
    role: &str,
    observed: &Observed,
    changes: &mut Changes,
) -> Result<(), AwsError> {
    for name in &observed.extra_inline {
        match iam
            .delete_role_policy()
            .role_name(role)
            .policy_name(name)
            .send()
            .await
        {
            Ok(_) => changes.push("DeleteRolePolicy"),
            Err(e) => not_found(AwsError::from_sdk(IAM, "DeleteRolePolicy", e))?,
        }
    }
    for arn in &observed.attached {
        match iam
            .detach_role_policy()
            .role_name(role)
            .policy_arn(arn)
            .send()
            .await
        {
            Ok(_) => changes.push("DetachRolePolicy"),
            Err(e) => not_found(AwsError::from_sdk(IAM, "DetachRolePolicy", e))?,
        }
    }
    Ok(())
}

/// Removes the inline and attached policies, then the role. A missing role is done.
pub async fn delete(iam: &Client, name: &str) -> Result<Changes, AwsError> {
    let mut changes = Changes::new();
    let inline = match iam.list_role_policies().role_name(name).send().await {
        Ok(out) => out.policy_names,
        Err(e) => {
            not_found(AwsError::from_sdk(IAM, "ListRolePolicies", e))?;
            return Ok(changes);
        }
    };
    let attached = iam
        .list_attached_role_policies()
        .role_name(name)
        .send()
        .await
        .map_err(sdk(IAM, "ListAttachedRolePolicies"))?;
    let observed = Observed {
        trust_ok: true,
        tagged: true,
        policy_ok: true,
        extra_inline: inline,
        attached: attached
            .attached_policies()
            .iter()
            .filter_map(|p| p.policy_arn().map(str::to_owned))
            .collect(),
    };
    remove_extras(iam, name, &observed, &mut changes).await?;
    match iam.delete_role().role_name(name).send().await {
        Ok(_) => changes.push("DeleteRole"),
        Err(e) => not_found(AwsError::from_sdk(IAM, "DeleteRole", e))?,
    }
    Ok(changes)
}
