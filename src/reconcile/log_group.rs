//! The tenant's CloudWatch log group, where both containers write, with the configured
//! retention.

use std::collections::HashMap;

use aws_sdk_cloudwatchlogs::Client;

use super::{tenant_tags, Changes};
use crate::{
    aws::{error::sdk, AwsError},
    domain::state::StateSlug,
};

const LOGS: &str = "logs";

pub struct LogGroupSpec<'a> {
    pub name: &'a str,
    pub retention_days: i32,
    pub tenant: StateSlug,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// Without the `:*` suffix that DescribeLogGroups puts on it.
    pub arn: String,
    pub retention_ok: bool,
    pub tagged: bool,
}

pub fn arn(region: &str, account: &str, name: &str) -> String {
    format!("arn:aws:logs:{region}:{account}:log-group:{name}")
}

fn tag_map(tenant: StateSlug) -> HashMap<String, String> {
    tenant_tags(tenant)
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
}

pub async fn exists(logs: &Client, name: &str) -> Result<Option<String>, AwsError> {
    let out = logs
        .describe_log_groups()
        .log_group_name_prefix(name)
        .send()
        .await
        .map_err(sdk(LOGS, "DescribeLogGroups"))?;
    Ok(out
        .log_groups()
        .iter()
        .find(|g| g.log_group_name() == Some(name))
        .map(|g| {
            g.arn()
                .unwrap_or_default()
                .trim_end_matches(":*")
                .to_owned()
        }))
}

pub async fn observe(logs: &Client, spec: &LogGroupSpec<'_>) -> Result<Option<Observed>, AwsError> {
    let out = logs
        .describe_log_groups()
        .log_group_name_prefix(spec.name)
        .send()
        .await
        .map_err(sdk(LOGS, "DescribeLogGroups"))?;
    let Some(group) = out
        .log_groups()
        .iter()
        .find(|g| g.log_group_name() == Some(spec.name))
    else {
        return Ok(None);
    };
    let arn = group
        .arn()
        .unwrap_or_default()
        .trim_end_matches(":*")
        .to_owned();
    let tags = logs
        .list_tags_for_resource()
        .resource_arn(&arn)
        .send()
        .await
        .map_err(sdk(LOGS, "ListTagsForResource"))?;
    let have = tags.tags().cloned().unwrap_or_default();
    let tagged = tag_map(spec.tenant)
        .iter()
        .all(|(k, v)| have.get(k) == Some(v));
    Ok(Some(Observed {
        retention_ok: group.retention_in_days() == Some(spec.retention_days),
        tagged,
        arn,
    }))
}

/// `false` when the group existed already.
/// The retention of every log group whose name starts with `prefix`, page by page.
pub async fn retention_by_prefix(
    logs: &Client,
    prefix: &str,
) -> Result<HashMap<String, Option<i32>>, AwsError> {
    let mut found = HashMap::new();
    let mut token = None;
    loop {
        let out = logs
            .describe_log_groups()
            .log_group_name_prefix(prefix)
            .limit(50)
            .set_next_token(token)
            .send()
            .await
            .map_err(sdk(LOGS, "DescribeLogGroups"))?;
        for g in out.log_groups() {
            if let Some(name) = g.log_group_name() {
                found.insert(name.to_owned(), g.retention_in_days());
            }
        }
        token = out.next_token().map(str::to_owned);
        if token.is_none() {
            return Ok(found);
        }
    }
}

async fn create(logs: &Client, spec: &LogGroupSpec<'_>) -> Result<bool, AwsError> {
    let sent = logs
        .create_log_group()
        .log_group_name(spec.name)
        .set_tags(Some(tag_map(spec.tenant)))
        .send()
        .await;
    match sent {
        Ok(_) => Ok(true),
        Err(e) => AwsError::from_sdk(LOGS, "CreateLogGroup", e)
            .tolerate(&["ResourceAlreadyExistsException"])
            .map(|()| false),
    }
}

async fn put_retention(logs: &Client, spec: &LogGroupSpec<'_>) -> Result<(), AwsError> {
    logs.put_retention_policy()
        .log_group_name(spec.name)
        .retention_in_days(spec.retention_days)
        .send()
        .await
        .map_err(sdk(LOGS, "PutRetentionPolicy"))?;
    Ok(())
}

pub async fn ensure(
    logs: &Client,
    spec: &LogGroupSpec<'_>,
    known: bool,
) -> Result<Changes, AwsError> {
    let mut changes = Changes::new();
    if !known && create(logs, spec).await? {
        put_retention(logs, spec).await?;
        return Ok(vec!["CreateLogGroup", "PutRetentionPolicy"]);
    }
    let Some(observed) = observe(logs, spec).await? else {
        create(logs, spec).await?;
        put_retention(logs, spec).await?;
        return Ok(vec!["CreateLogGroup", "PutRetentionPolicy"]);
    };
    if !observed.retention_ok {
        put_retention(logs, spec).await?;
        changes.push("PutRetentionPolicy");
    }
    if !observed.tagged {
        logs.tag_resource()
            .resource_arn(&observed.arn)
            .set_tags(Some(tag_map(spec.tenant)))
            .send()
            .await
            .map_err(sdk(LOGS, "TagResource"))?;
        changes.push("TagResource");
    }
    Ok(changes)
}

pub async fn delete(logs: &Client, name: &str) -> Result<Changes, AwsError> {
    match logs.delete_log_group().log_group_name(name).send().await {
        Ok(_) => Ok(vec!["DeleteLogGroup"]),
        Err(e) => AwsError::from_sdk(LOGS, "DeleteLogGroup", e)
            .tolerate(&["ResourceNotFoundException"])
            .map(|()| Changes::new()),
    }
}
