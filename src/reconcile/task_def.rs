//! The tenant's task definition family: `app` (port 8000) behind `nginx` (port 80) on
//! Fargate. A new revision is registered only when the rendered definition changed; the
//! rendering's digest is kept as a tag on each revision, so comparing needs no guessing
//! about which defaults ECS filled in.

use aws_sdk_ecs::{
    types::{
        Compatibility, ContainerCondition, ContainerDefinition, ContainerDependency, KeyValuePair,
        LogConfiguration, LogDriver, NetworkMode, PortMapping, Tag, TaskDefinitionField,
        TaskDefinitionStatus, TransportProtocol,
    },
    Client,
};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{tenant_tags, Changes};
use crate::{
    aws::{error::sdk, AwsError, Retry},
    domain::{spec::TenantSpec, state::StateSlug},
};

const ECS: &str = "ecs";
pub const APP: &str = "app";
pub const NGINX: &str = "nginx";
pub const APP_PORT: i32 = 8000;
pub const NGINX_PORT: i32 = 80;
/// The tag holding the digest of the rendering a revision was registered from.
pub const TAG_DIGEST: &str = "statehouse:definition-sha256";
/// DeleteTaskDefinitions takes at most this many revisions.
const DELETE_BATCH: usize = 10;

pub struct TaskDefSpec<'a> {
    pub family: &'a str,
    pub spec: &'a TenantSpec,
    pub tenant: StateSlug,
    pub region: &'a str,
    pub bucket: &'a str,
    pub table: &'a str,
    pub log_group: &'a str,
    pub task_role_arn: &'a str,
    pub execution_role_arn: &'a str,
}

/// The app's environment: what the platform sets, then the spec's own (which cannot
/// override the platform's; the spec's validation refuses those names).
fn app_env(d: &TaskDefSpec<'_>) -> Vec<(String, String)> {
    let mut env = vec![
        ("AWS_BUCKET".to_owned(), d.bucket.to_owned()),
        ("AWS_DYNAMODB_TABLE".to_owned(), d.table.to_owned()),
        ("AWS_REGION".to_owned(), d.region.to_owned()),
        ("US_STATE".to_owned(), d.tenant.as_str().to_owned()),
    ];
    env.extend(d.spec.env.iter().map(|(k, v)| (k.to_owned(), v.to_owned())));
    env
}

/// A stable digest of everything the definition is rendered from.
pub fn digest(d: &TaskDefSpec<'_>) -> String {
    let rendered = json!({
        "family": d.family,
        "cpu": d.spec.size.cpu(),
        "memory": d.spec.size.memory(),
        "app_image": d.spec.app_image.as_str(),
        "nginx_image": d.spec.nginx_image.as_str(),
        "env": app_env(d),
        "log_group": d.log_group,
        "region": d.region,
        "task_role": d.task_role_arn,
        "execution_role": d.execution_role_arn,
        "ports": [APP_PORT, NGINX_PORT],
    });
    hex::encode(Sha256::digest(rendered.to_string().as_bytes()))
}

fn logs(d: &TaskDefSpec<'_>, stream_prefix: &str) -> Result<LogConfiguration, AwsError> {
    LogConfiguration::builder()
        .log_driver(LogDriver::Awslogs)
        .options("awslogs-group", d.log_group)
        .options("awslogs-region", d.region)
        .options("awslogs-stream-prefix", stream_prefix)
        .build()
        .map_err(|e| AwsError::build(ECS, "RegisterTaskDefinition", e))
}

fn port(p: i32) -> PortMapping {
    PortMapping::builder()
        .container_port(p)
        .protocol(TransportProtocol::Tcp)
        .build()
}

fn containers(d: &TaskDefSpec<'_>) -> Result<Vec<ContainerDefinition>, AwsError> {
    let env = app_env(d)
        .into_iter()
        .map(|(k, v)| KeyValuePair::builder().name(k).value(v).build())
        .collect::<Vec<_>>();
    let app = ContainerDefinition::builder()
        .name(APP)
        .image(d.spec.app_image.as_str())
        .essential(true)
        .port_mappings(port(APP_PORT))
        .set_environment(Some(env))
        .log_configuration(logs(d, APP)?)
        .build();
    // nginx shares the task's network namespace (awsvpc), so the app is on localhost.
    let nginx = ContainerDefinition::builder()
        .name(NGINX)
        .image(d.spec.nginx_image.as_str())
        .essential(true)
        .port_mappings(port(NGINX_PORT))
        .environment(
            KeyValuePair::builder()
                .name("APP_UPSTREAM")
                .value(format!("127.0.0.1:{APP_PORT}"))
                .build(),
        )
        .depends_on(
            ContainerDependency::builder()
                .container_name(APP)
                .condition(ContainerCondition::Start)
                .build()
                .map_err(|e| AwsError::build(ECS, "RegisterTaskDefinition", e))?,
        )
        .log_configuration(logs(d, NGINX)?)
        .build();
    Ok(vec![app, nginx])
}

fn tags(d: &TaskDefSpec<'_>, digest: &str) -> Vec<Tag> {
    tenant_tags(d.tenant)
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .chain([(TAG_DIGEST.to_owned(), digest.to_owned())])
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

/// The ARN and digest tag of `task_definition` (a family, meaning its latest revision, or
/// one revision's ARN) if it is ACTIVE.
pub async fn active(
    ecs: &Client,
    task_definition: &str,
) -> Result<Option<(String, Option<String>)>, AwsError> {
    let out = match ecs
        .describe_task_definition()
        .task_definition(task_definition)
        .include(TaskDefinitionField::Tags)
        .send()
        .await
    {
        Ok(out) => out,
        Err(e) => {
            let e = AwsError::from_sdk(ECS, "DescribeTaskDefinition", e);
            // ECS answers a missing family or revision with a ClientException.
            if e.is(&["ClientException", "InvalidParameterException"]) {
                return Ok(None);
            }
            return Err(e);
        }
    };
    let Some(td) = out.task_definition() else {
        return Ok(None);
    };
    if td.status() != Some(&TaskDefinitionStatus::Active) {
        return Ok(None);
    }
    let digest = out
        .tags()
        .iter()
        .find(|t| t.key() == Some(TAG_DIGEST))
        .and_then(|t| t.value().map(str::to_owned));
    Ok(td.task_definition_arn().map(|a| (a.to_owned(), digest)))
}

/// Returns the ARN of a revision that matches the spec, registering one only if neither
/// `recorded` (the revision an earlier pass settled on) nor the family's latest does.
///
/// The recorded revision is asked first and kept while it matches, so a later duplicate
/// (e.g. a registration a stale worker sent after losing its lease) neither wins nor
/// triggers a deployment; once the rollout completes, `retire_old` deregisters it.
pub async fn ensure(
    ecs: &Client,
    d: &TaskDefSpec<'_>,
    recorded: Option<&str>,
) -> Result<(String, Changes), AwsError> {
    let want = digest(d);
    let recorded = recorded.filter(|arn| of_family(arn, d.family));
    for candidate in recorded.into_iter().chain([d.family]) {
        if let Some((arn, Some(have))) = active(ecs, candidate).await? {
            if have == want {
                return Ok((arn, Changes::new()));
            }
        }
    }
    let out = ecs
        .register_task_definition()
        .family(d.family)
        .requires_compatibilities(Compatibility::Fargate)
        .network_mode(NetworkMode::Awsvpc)
        .cpu(d.spec.size.cpu().to_string())
        .memory(d.spec.size.memory().to_string())
        .task_role_arn(d.task_role_arn)
        .execution_role_arn(d.execution_role_arn)
        .set_container_definitions(Some(containers(d)?))
        .set_tags(Some(tags(d, &want)))
        .send()
        .await
        .map_err(sdk(ECS, "RegisterTaskDefinition"))?;
    let arn = out
        .task_definition()
        .and_then(|t| t.task_definition_arn())
        .ok_or_else(|| {
            AwsError::new(
                ECS,
                "RegisterTaskDefinition",
                "MissingArn",
                "the answer named no task definition",
                Retry::Transient,
            )
        })?;
    Ok((arn.to_owned(), vec!["RegisterTaskDefinition"]))
}

/// Whether an ARN is a revision of exactly `family` (ListTaskDefinitions matches prefixes).
fn of_family(arn: &str, family: &str) -> bool {
    arn.rsplit_once('/')
        .and_then(|(_, rest)| rest.rsplit_once(':'))
        .is_some_and(|(f, _)| f == family)
}

async fn revisions(
    ecs: &Client,
    family: &str,
    status: TaskDefinitionStatus,
) -> Result<Vec<String>, AwsError> {
    let mut arns = Vec::new();
    let mut token = None;
    loop {
        let out = ecs
            .list_task_definitions()
            .family_prefix(family)
            .status(status.clone())
            .set_next_token(token)
            .send()
            .await
            .map_err(sdk(ECS, "ListTaskDefinitions"))?;
        arns.extend(
            out.task_definition_arns()
                .iter()
                .filter(|a| of_family(a, family))
                .cloned(),
        );
        token = out.next_token().map(str::to_owned);
        if token.is_none() {
            return Ok(arns);
        }
    }
}

/// Deregisters every revision but `keep`, e.g. once a deployment moved past them.
pub async fn retire_old(ecs: &Client, family: &str, keep: &str) -> Result<Changes, AwsError> {
    let mut changes = Changes::new();
    for arn in revisions(ecs, family, TaskDefinitionStatus::Active).await? {
        if arn != keep {
            deregister(ecs, &arn).await?;
            changes.push("DeregisterTaskDefinition");
        }
    }
    Ok(changes)
}

async fn deregister(ecs: &Client, arn: &str) -> Result<(), AwsError> {
    ecs.deregister_task_definition()
        .task_definition(arn)
        .send()
        .await
        .map_err(sdk(ECS, "DeregisterTaskDefinition"))?;
    Ok(())
}

/// Deregisters every revision of the family, then deletes them all.
pub async fn delete(ecs: &Client, family: &str) -> Result<Changes, AwsError> {
    let mut changes = Changes::new();
    for arn in revisions(ecs, family, TaskDefinitionStatus::Active).await? {
        deregister(ecs, &arn).await?;
        changes.push("DeregisterTaskDefinition");
    }
    let inactive = revisions(ecs, family, TaskDefinitionStatus::Inactive).await?;
    for batch in inactive.chunks(DELETE_BATCH) {
        let out = ecs
            .delete_task_definitions()
            .set_task_definitions(Some(batch.to_vec()))
            .send()
            .await
            .map_err(sdk(ECS, "DeleteTaskDefinitions"))?;
        changes.push("DeleteTaskDefinitions");
        // Failures come back in the answer, not as an error: not gone means not done.
        if let Some(f) = out.failures().first() {
            return Err(AwsError::new(
                ECS,
                "DeleteTaskDefinitions",
                "DeleteFailed",
                format!(
                    "{} revision(s) not deleted, e.g. {}: {}",
                    out.failures().len(),
                    f.arn().unwrap_or_default(),
                    f.reason().unwrap_or_default()
                ),
                Retry::Transient,
            ));
        }
    }
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::of_family;

    #[test]
    fn a_family_does_not_claim_the_revisions_of_a_longer_one() {
        let arn = "arn:aws:ecs:us-west-2:123456789012:task-definition/humangov-new-york:3";
        assert!(of_family(arn, "humangov-new-york"));
        assert!(!of_family(arn, "humangov-new"));
    }
}
