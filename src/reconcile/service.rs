//! The tenant's ECS service in the shared cluster: Fargate tasks in the private subnets,
//! behind the tenant's target group, with the deployment circuit breaker rolling back a
//! deployment that cannot become healthy.

use std::time::{Duration, SystemTime};

use aws_sdk_ecs::{
    types::{
        AssignPublicIp, AwsVpcConfiguration, DeploymentAlarms, DeploymentCircuitBreaker,
        DeploymentConfiguration, DeploymentRolloutState, LaunchType, LoadBalancer,
        NetworkConfiguration, PropagateTags, Service, Tag,
    },
    Client,
};

use super::{task_def::NGINX, task_def::NGINX_PORT, tenant_tags, Changes};
use crate::{
    aws::{error::sdk, AwsError, Retry},
    domain::state::StateSlug,
};

const ECS: &str = "ecs";

pub struct ServiceSpec<'a> {
    pub cluster: &'a str,
    pub name: &'a str,
    pub task_definition_arn: &'a str,
    pub target_group_arn: &'a str,
    pub subnets: &'a [String],
    pub security_groups: &'a [String],
    pub desired_count: i32,
    pub min_count: i32,
    pub max_count: i32,
    /// The alarms a deployment watches; when one fires, ECS rolls the deployment back.
    pub alarm_names: &'a [String],
    pub tenant: StateSlug,
    /// Makes a CreateService retried after a lost answer return the same service.
    pub client_token: &'a str,
}

/// The service unless ECS has none of that name (or only an INACTIVE leftover).
pub async fn describe(
    ecs: &Client,
    cluster: &str,
    name: &str,
) -> Result<Option<Service>, AwsError> {
    let out = ecs
        .describe_services()
        .cluster(cluster)
        .services(name)
        .send()
        .await
        .map_err(sdk(ECS, "DescribeServices"))?;
    Ok(out
        .services
        .unwrap_or_default()
        .into_iter()
        .find(|s| s.status() != Some("INACTIVE")))
}

fn network(spec: &ServiceSpec<'_>) -> Result<NetworkConfiguration, AwsError> {
    let vpc = AwsVpcConfiguration::builder()
        .set_subnets(Some(spec.subnets.to_vec()))
        .set_security_groups(Some(spec.security_groups.to_vec()))
        .assign_public_ip(AssignPublicIp::Disabled)
        .build()
        .map_err(|e| AwsError::build(ECS, "CreateService", e))?;
    Ok(NetworkConfiguration::builder()
        .awsvpc_configuration(vpc)
        .build())
}

fn load_balancer(spec: &ServiceSpec<'_>) -> LoadBalancer {
    LoadBalancer::builder()
        .target_group_arn(spec.target_group_arn)
        .container_name(NGINX)
        .container_port(NGINX_PORT)
        .build()
}

fn deployment(spec: &ServiceSpec<'_>) -> Result<DeploymentConfiguration, AwsError> {
    let breaker = DeploymentCircuitBreaker::builder()
        .enable(true)
        .rollback(true)
        .build();
    let alarms = DeploymentAlarms::builder()
        .set_alarm_names(Some(spec.alarm_names.to_vec()))
        .enable(true)
        .rollback(true)
        .build()
        .map_err(|e| AwsError::build(ECS, "UpdateService", e))?;
    Ok(DeploymentConfiguration::builder()
        .deployment_circuit_breaker(breaker)
        .alarms(alarms)
        .minimum_healthy_percent(100)
        .maximum_percent(200)
        .build())
}

fn network_ok(svc: &Service, spec: &ServiceSpec<'_>) -> bool {
    let Some(vpc) = svc
        .network_configuration()
        .and_then(|n| n.awsvpc_configuration())
    else {
        return false;
    };
    let same = |a: &[String], b: &[String]| {
        let (mut a, mut b) = (a.to_vec(), b.to_vec());
        a.sort();
        b.sort();
        a == b
    };
    same(vpc.subnets(), spec.subnets)
        && same(vpc.security_groups(), spec.security_groups)
        && vpc.assign_public_ip() != Some(&AssignPublicIp::Enabled)
}

fn load_balancer_ok(svc: &Service, spec: &ServiceSpec<'_>) -> bool {
    matches!(svc.load_balancers(), [lb]
        if lb.target_group_arn() == Some(spec.target_group_arn)
            && lb.container_name() == Some(NGINX)
            && lb.container_port() == Some(NGINX_PORT))
}

/// The circuit breaker and the deployment alarms, both rolling back.
fn deployment_ok(svc: &Service, spec: &ServiceSpec<'_>) -> bool {
    let Some(d) = svc.deployment_configuration() else {
        return false;
    };
    let breaker = d
        .deployment_circuit_breaker()
        .is_some_and(|b| b.enable() && b.rollback());
    let alarms = d.alarms().is_some_and(|a| {
        let mut have = a.alarm_names().to_vec();
        let mut want = spec.alarm_names.to_vec();
        have.sort();
        want.sort();
        a.enable() && a.rollback() && have == want
    });
    breaker && alarms
}

/// How an ACTIVE service differs from its spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drift {
    /// It runs another task definition than the one settled on.
    TaskDefinition,
    /// Its desired count lies outside `[min, max]`.
    Count,
    /// Its network, load balancer or deployment settings differ.
    Settings,
}

impl Drift {
    pub fn describe(self) -> &'static str {
        match self {
            Self::TaskDefinition => "the service runs another task definition",
            Self::Count => "the service's desired count is outside [min_count, max_count]",
            Self::Settings => "the service's network, load balancer or deployment settings differ",
        }
    }
}

/// Everything in which `svc` differs from `spec`; empty when it matches. What `ensure`
/// repairs, and what a resync reads off a batched DescribeServices.
pub fn drift(svc: &Service, spec: &ServiceSpec<'_>) -> Vec<Drift> {
    let mut found = Vec::new();
    if svc.task_definition() != Some(spec.task_definition_arn) {
        found.push(Drift::TaskDefinition);
    }
    if !(spec.min_count..=spec.max_count).contains(&svc.desired_count()) {
        found.push(Drift::Count);
    }
    if !(network_ok(svc, spec) && load_balancer_ok(svc, spec) && deployment_ok(svc, spec)) {
        found.push(Drift::Settings);
    }
    found
}

/// Creates the service, or brings an existing one to the spec. The desired count is only
/// touched when it lies outside `[min, max]`: inside, autoscaling owns it.
pub async fn ensure(
    ecs: &Client,
    spec: &ServiceSpec<'_>,
    known: bool,
) -> Result<Changes, AwsError> {
    let existing = if known {
        describe(ecs, spec.cluster, spec.name).await?
    } else {
        None
    };
    let Some(svc) = existing else {
        return create(ecs, spec).await;
    };
    if svc.status() == Some("DRAINING") {
        return Err(draining(spec.name));
    }
    let found = drift(&svc, spec);
    if found.is_empty() {
        return Ok(Changes::new());
    }
    let count = svc.desired_count();
    let count_ok = !found.contains(&Drift::Count);
    let settings_ok = !found.contains(&Drift::Settings);
    let mut update = ecs
        .update_service()
        .cluster(spec.cluster)
        .service(spec.name)
        .task_definition(spec.task_definition_arn);
    if !count_ok {
        update = update.desired_count(count.clamp(spec.min_count, spec.max_count));
    }
    if !settings_ok {
        update = update
            .network_configuration(network(spec)?)
            .load_balancers(load_balancer(spec))
            .deployment_configuration(deployment(spec)?);
    }
    update.send().await.map_err(sdk(ECS, "UpdateService"))?;
    Ok(vec!["UpdateService"])
}

fn draining(name: &str) -> AwsError {
    AwsError::new(
        ECS,
        "DescribeServices",
        "ServiceDraining",
        format!("service {name} is still draining from an earlier deletion"),
        Retry::Transient,
    )
}

async fn create(ecs: &Client, spec: &ServiceSpec<'_>) -> Result<Changes, AwsError> {
    let tags = tenant_tags(spec.tenant)
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect();
    let sent = ecs
        .create_service()
        .cluster(spec.cluster)
        .service_name(spec.name)
        .task_definition(spec.task_definition_arn)
        .desired_count(spec.desired_count)
        .launch_type(LaunchType::Fargate)
        .network_configuration(network(spec)?)
        .load_balancers(load_balancer(spec))
        .deployment_configuration(deployment(spec)?)
        .health_check_grace_period_seconds(30)
        .propagate_tags(PropagateTags::Service)
        .enable_ecs_managed_tags(true)
        .client_token(spec.client_token)
        .set_tags(Some(tags))
        .send()
        .await;
    match sent {
        Ok(_) => Ok(vec!["CreateService"]),
        Err(e) => {
            let e = AwsError::from_sdk(ECS, "CreateService", e);
            // An ACTIVE service of that name (a create whose answer was lost, or one that
            // is still draining): look at it and converge from there.
            let message = e.message.to_ascii_lowercase();
            if message.contains("idempotent") || message.contains("draining") {
                match describe(ecs, spec.cluster, spec.name).await? {
                    Some(svc) if svc.status() == Some("DRAINING") => Err(draining(spec.name)),
                    Some(_) => Box::pin(ensure(ecs, spec, true)).await,
                    None => Err(e),
                }
            } else {
                Err(e)
            }
        }
    }
}

/// Where the deployment of the wanted task definition stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rollout {
    Completed,
    InProgress(String),
    Failed(String),
}

/// Reads the service's deployments. ECS reports `rolloutState` on each; an emulator that
/// does not is judged by running versus desired tasks of the primary deployment.
pub fn rollout(svc: &Service, want_task_def: &str, timeout: Duration) -> Rollout {
    let deployments = svc.deployments();
    let ours = deployments
        .iter()
        .find(|d| d.task_definition() == Some(want_task_def));
    if let Some(d) = ours {
        if d.rollout_state() == Some(&DeploymentRolloutState::Failed) {
            return Rollout::Failed(
                d.rollout_state_reason()
                    .unwrap_or("the deployment failed")
                    .to_owned(),
            );
        }
    }
    if svc.task_definition() != Some(want_task_def) {
        return match ours {
            // The circuit breaker rolled back to an earlier revision.
            None if !deployments.is_empty() => Rollout::Failed(format!(
                "ECS rolled the service back to {}",
                svc.task_definition()
                    .unwrap_or("an earlier task definition")
            )),
            _ => Rollout::InProgress(
                "the service has not picked up the new task definition yet".into(),
            ),
        };
    }
    let primary = deployments.iter().find(|d| d.status() == Some("PRIMARY"));
    let completed = match primary.and_then(|d| d.rollout_state()) {
        Some(state) => *state == DeploymentRolloutState::Completed,
        None => deployments.len() <= 1 && svc.running_count() >= svc.desired_count(),
    };
    if completed {
        return Rollout::Completed;
    }
    let started = primary
        .and_then(|d| d.created_at())
        .and_then(|t| SystemTime::try_from(*t).ok());
    let age = started.and_then(|t| t.elapsed().ok()).unwrap_or_default();
    let progress = format!(
        "{} of {} tasks running",
        svc.running_count(),
        svc.desired_count()
    );
    if age > timeout {
        Rollout::Failed(format!(
            "the deployment did not complete within {}s: {progress}",
            timeout.as_secs()
        ))
    } else {
        Rollout::InProgress(progress)
    }
}

/// Scales to zero, deletes, and waits until ECS reports the service INACTIVE (or forgets
/// it); until then the error is transient and the pass is retried.
pub async fn delete(ecs: &Client, cluster: &str, name: &str) -> Result<Changes, AwsError> {
    let mut changes = Changes::new();
    let Some(svc) = describe(ecs, cluster, name).await? else {
        return Ok(changes);
    };
    if svc.status() == Some("ACTIVE") {
        if svc.desired_count() > 0 {
            ecs.update_service()
                .cluster(cluster)
                .service(name)
                .desired_count(0)
                .send()
                .await
                .map_err(sdk(ECS, "UpdateService"))?;
            changes.push("UpdateService");
        }
        match ecs
            .delete_service()
            .cluster(cluster)
            .service(name)
            .force(true)
            .send()
            .await
        {
            Ok(_) => changes.push("DeleteService"),
            Err(e) => AwsError::from_sdk(ECS, "DeleteService", e)
                .tolerate(&["ServiceNotFoundException", "ServiceNotActiveException"])?,
        }
    }
    if describe(ecs, cluster, name).await?.is_some() {
        return Err(draining(name));
    }
    Ok(changes)
}
