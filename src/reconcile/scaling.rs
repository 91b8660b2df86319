//! The service's autoscaling: a scalable target with the spec's bounds and a
//! target-tracking policy on CPU. Only the bounds are ever written: the desired count inside
//! them belongs to autoscaling.

use std::collections::HashMap;

use aws_sdk_applicationautoscaling::{
    types::{
        MetricType, PolicyType, PredefinedMetricSpecification, ScalableDimension, ScalingPolicy,
        ServiceNamespace, TargetTrackingScalingPolicyConfiguration,
    },
    Client,
};

use super::{tenant_tags, Changes};
use crate::{
    aws::{error::sdk, AwsError},
    domain::state::StateSlug,
};

const SCALING: &str = "application-autoscaling";
/// Average CPU the policy steers towards.
const TARGET_CPU: f64 = 60.0;
const SCALE_OUT_COOLDOWN: i32 = 60;
const SCALE_IN_COOLDOWN: i32 = 300;

pub struct ScalingSpec<'a> {
    pub resource_id: &'a str,
    pub policy_name: &'a str,
    pub min: i32,
    pub max: i32,
    pub tenant: StateSlug,
}

/// Application Auto Scaling's name for an ECS service.
pub fn resource_id(cluster: &str, service: &str) -> String {
    format!("service/{cluster}/{service}")
}

fn dimension() -> ScalableDimension {
    ScalableDimension::EcsServiceDesiredCount
}

/// `(min, max)` of the registered target, if there is one.
async fn target(scaling: &Client, resource_id: &str) -> Result<Option<(i32, i32)>, AwsError> {
    let out = scaling
        .describe_scalable_targets()
        .service_namespace(ServiceNamespace::Ecs)
        .resource_ids(resource_id)
        .scalable_dimension(dimension())
        .send()
        .await
        .map_err(sdk(SCALING, "DescribeScalableTargets"))?;
    Ok(out
        .scalable_targets()
        .first()
        .map(|t| (t.min_capacity(), t.max_capacity())))
}

async fn policies(
    scaling: &Client,
    resource_id: &str,
    policy_name: &str,
) -> Result<Vec<ScalingPolicy>, AwsError> {
    let out = scaling
        .describe_scaling_policies()
        .service_namespace(ServiceNamespace::Ecs)
        .resource_id(resource_id)
        .scalable_dimension(dimension())
        .policy_names(policy_name)
        .send()
        .await
        .map_err(sdk(SCALING, "DescribeScalingPolicies"))?;
    Ok(out.scaling_policies().to_vec())
}

async fn policy_ok(scaling: &Client, spec: &ScalingSpec<'_>) -> Result<bool, AwsError> {
    let found = policies(scaling, spec.resource_id, spec.policy_name).await?;
    Ok(found.iter().any(policy_matches))
}

/// Whether a policy is the target tracking on average CPU every tenant's service has.
pub fn policy_matches(p: &ScalingPolicy) -> bool {
    p.policy_type() == &PolicyType::TargetTrackingScaling
        && p.target_tracking_scaling_policy_configuration()
            .is_some_and(|c| {
                c.target_value() == TARGET_CPU
                    && c.predefined_metric_specification().is_some_and(|m| {
                        m.predefined_metric_type() == &MetricType::EcsServiceAverageCpuUtilization
                    })
            })
}

/// DescribeScalableTargets and DescribeScalingPolicies take at most this many ids or names.
const PER_CALL: usize = 50;

/// The (min, max) of every ECS service among `resource_ids` that has a scalable target,
/// fifty ids per call.
pub async fn targets_of(
    scaling: &Client,
    resource_ids: &[String],
) -> Result<HashMap<String, (i32, i32)>, AwsError> {
    let mut found = HashMap::new();
    for batch in resource_ids.chunks(PER_CALL) {
        let mut token = None;
        loop {
            let out = scaling
                .describe_scalable_targets()
                .service_namespace(ServiceNamespace::Ecs)
                .set_resource_ids(Some(batch.to_vec()))
                .scalable_dimension(dimension())
                .max_results(PER_CALL as i32)
                .set_next_token(token)
                .send()
                .await
                .map_err(sdk(SCALING, "DescribeScalableTargets"))?;
            for t in out.scalable_targets() {
                found.insert(
                    t.resource_id().to_owned(),
                    (t.min_capacity(), t.max_capacity()),
                );
            }
            token = out.next_token().map(str::to_owned);
            if token.is_none() {
                break;
            }
        }
    }
    Ok(found)
}

/// The ECS scaling policies named in `names`, by resource id, fifty names per call.
pub async fn policies_named(
    scaling: &Client,
    names: &[String],
) -> Result<HashMap<String, Vec<ScalingPolicy>>, AwsError> {
    let mut found: HashMap<String, Vec<ScalingPolicy>> = HashMap::new();
    for batch in names.chunks(PER_CALL) {
        let mut token = None;
        loop {
            let out = scaling
                .describe_scaling_policies()
                .service_namespace(ServiceNamespace::Ecs)
                .set_policy_names(Some(batch.to_vec()))
                .max_results(PER_CALL as i32)
                .set_next_token(token)
                .send()
                .await
                .map_err(sdk(SCALING, "DescribeScalingPolicies"))?;
            for p in out.scaling_policies() {
                found
                    .entry(p.resource_id().to_owned())
                    .or_default()
                    .push(p.clone());
            }
            token = out.next_token().map(str::to_owned);
            if token.is_none() {
                break;
            }
        }
    }
    Ok(found)
}

async fn register(scaling: &Client, spec: &ScalingSpec<'_>) -> Result<(), AwsError> {
    let tags: HashMap<String, String> = tenant_tags(spec.tenant)
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    scaling
        .register_scalable_target()
        .service_namespace(ServiceNamespace::Ecs)
        .resource_id(spec.resource_id)
        .scalable_dimension(dimension())
        .min_capacity(spec.min)
        .max_capacity(spec.max)
        .set_tags(Some(tags))
        .send()
        .await
        .map_err(sdk(SCALING, "RegisterScalableTarget"))?;
    Ok(())
}

async fn put_policy(scaling: &Client, spec: &ScalingSpec<'_>) -> Result<(), AwsError> {
    let build = |e| AwsError::build(SCALING, "PutScalingPolicy", e);
    let metric = PredefinedMetricSpecification::builder()
        .predefined_metric_type(MetricType::EcsServiceAverageCpuUtilization)
        .build()
        .map_err(build)?;
    let config = TargetTrackingScalingPolicyConfiguration::builder()
        .target_value(TARGET_CPU)
        .predefined_metric_specification(metric)
        .scale_out_cooldown(SCALE_OUT_COOLDOWN)
        .scale_in_cooldown(SCALE_IN_COOLDOWN)
        .build()
        .map_err(build)?;
    scaling
        .put_scaling_policy()
        .policy_name(spec.policy_name)
        .service_namespace(ServiceNamespace::Ecs)
        .resource_id(spec.resource_id)
        .scalable_dimension(dimension())
        .policy_type(PolicyType::TargetTrackingScaling)
        .target_tracking_scaling_policy_configuration(config)
        .send()
        .await
        .map_err(sdk(SCALING, "PutScalingPolicy"))?;
    Ok(())
}

/// Both calls are upserts, so a fresh tenant skips the reads.
pub async fn ensure(
    scaling: &Client,
    spec: &ScalingSpec<'_>,
    known: bool,
) -> Result<Changes, AwsError> {
    if !known {
        register(scaling, spec).await?;
        put_policy(scaling, spec).await?;
        return Ok(vec!["RegisterScalableTarget", "PutScalingPolicy"]);
    }
    let mut changes = Changes::new();
    if target(scaling, spec.resource_id).await? != Some((spec.min, spec.max)) {
        register(scaling, spec).await?;
        changes.push("RegisterScalableTarget");
    }
    if !policy_ok(scaling, spec).await? {
        put_policy(scaling, spec).await?;
        changes.push("PutScalingPolicy");
    }
    Ok(changes)
}

/// Removes the policy, then the target; either missing already is fine.
pub async fn delete(
    scaling: &Client,
    resource_id: &str,
    policy_name: &str,
) -> Result<Changes, AwsError> {
    let mut changes = Changes::new();
    // Looked up first: a pass that deleted the policy and then crashed must find it gone,
    // not fail on deleting it again (not every endpoint says ObjectNotFoundException).
    if !policies(scaling, resource_id, policy_name)
        .await?
        .is_empty()
    {
        match scaling
            .delete_scaling_policy()
            .policy_name(policy_name)
            .service_namespace(ServiceNamespace::Ecs)
            .resource_id(resource_id)
            .scalable_dimension(dimension())
            .send()
            .await
        {
            Ok(_) => changes.push("DeleteScalingPolicy"),
            Err(e) => AwsError::from_sdk(SCALING, "DeleteScalingPolicy", e)
                .tolerate(&["ObjectNotFoundException"])?,
        }
    }
    if target(scaling, resource_id).await?.is_some() {
        match scaling
            .deregister_scalable_target()
            .service_namespace(ServiceNamespace::Ecs)
            .resource_id(resource_id)
            .scalable_dimension(dimension())
            .send()
            .await
        {
            Ok(_) => changes.push("DeregisterScalableTarget"),
            Err(e) => AwsError::from_sdk(SCALING, "DeregisterScalableTarget", e)
                .tolerate(&["ObjectNotFoundException"])?,
        }
    }
    Ok(changes)
}
