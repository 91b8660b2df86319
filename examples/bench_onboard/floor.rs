//! The emulator's floor: exactly the calls one fresh tenant needs, issued one after another
//! with no database, no concurrency and no checks beyond what each call returns.

use std::time::{Duration, Instant};

use aws_sdk_applicationautoscaling::types::{
    MetricType, PolicyType, PredefinedMetricSpecification, ScalableDimension, ServiceNamespace,
    TargetTrackingScalingPolicyConfiguration,
};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, PointInTimeRecoverySpecification,
    ScalarAttributeType, SseSpecification,
};
use aws_sdk_ecs::types::{
    AwsVpcConfiguration, Compatibility, ContainerDefinition, LaunchType, LoadBalancer,
    NetworkConfiguration, NetworkMode, PortMapping,
};
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, HostHeaderConditionConfig, ProtocolEnum, RuleCondition,
    TargetGroupAttribute, TargetTypeEnum,
};
use aws_sdk_s3::types::{
    BucketVersioningStatus, PublicAccessBlockConfiguration, ServerSideEncryption,
    ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration, ServerSideEncryptionRule,
    Tag, Tagging, VersioningConfiguration,
};
use statehouse::{
    aws::Aws,
    domain::state::StateSlug,
    reconcile::{alarms, platform::Platform},
};

/// Bucket 6 (create + five settings), table 2 (create + PITR), role 2 (create + policy),
/// log group 2 (create + retention), task definition 2 (look up the latest + register),
/// target group 2 (create + deregistration delay), rule 2 (look up + create), alarms 7
/// (look up + one put each), service 1, autoscaling 2 (target + policy), deployment 1
/// (describe the service).
pub const MINIMAL_CALLS: usize = 29;

pub async fn run(aws: &Aws, p: &Platform, n: usize) -> Duration {
    let started = Instant::now();
    for (i, slug) in StateSlug::all().take(n).enumerate() {
        tenant(aws, p, slug, i as i32 + 1).await;
    }
    started.elapsed()
}

async fn tenant(aws: &Aws, p: &Platform, slug: StateSlug, priority: i32) {
    let n = p.names(slug);
    let cell = &p.cells[0];
    let s3 = &aws.s3;
    s3.create_bucket().bucket(&n.bucket).send().await.unwrap();
    s3.put_public_access_block()
        .bucket(&n.bucket)
        .public_access_block_configuration(
            PublicAccessBlockConfiguration::builder()
                .block_public_acls(true)
                .ignore_public_acls(true)
                .block_public_policy(true)
                .restrict_public_buckets(true)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let rule = ServerSideEncryptionRule::builder()
        .apply_server_side_encryption_by_default(
            ServerSideEncryptionByDefault::builder()
                .sse_algorithm(ServerSideEncryption::Aes256)
                .build()
                .unwrap(),
        )
        .build();
    s3.put_bucket_encryption()
        .bucket(&n.bucket)
        .server_side_encryption_configuration(
            ServerSideEncryptionConfiguration::builder()
                .rules(rule)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    s3.put_bucket_versioning()
        .bucket(&n.bucket)
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .unwrap();
    s3.put_bucket_policy()
        .bucket(&n.bucket)
        .policy(statehouse::reconcile::bucket::tls_only_policy(&n.bucket).to_string())
        .send()
        .await
        .unwrap();
    s3.put_bucket_tagging()
        .bucket(&n.bucket)
        .tagging(
            Tagging::builder()
                .tag_set(
                    Tag::builder()
                        .key("statehouse:tenant")
                        .value(slug.as_str())
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();

    aws.dynamodb
        .create_table()
        .table_name(&n.table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("id")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("id")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .sse_specification(SseSpecification::builder().enabled(true).build())
        .send()
        .await
        .unwrap();
    aws.dynamodb
        .update_continuous_backups()
        .table_name(&n.table)
        .point_in_time_recovery_specification(
            PointInTimeRecoverySpecification::builder()
                .point_in_time_recovery_enabled(true)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();

    let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ecs-tasks.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
    aws.iam
        .create_role()
        .role_name(&n.task_role)
        .assume_role_policy_document(trust)
        .send()
        .await
        .unwrap();
    let data = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":["s3:GetObject"],"Resource":"arn:aws:s3:::{}/*"}}]}}"#,
        n.bucket
    );
    aws.iam
        .put_role_policy()
        .role_name(&n.task_role)
        .policy_name(&n.role_policy)
        .policy_document(data)
        .send()
        .await
        .unwrap();

    aws.logs
        .create_log_group()
        .log_group_name(&n.log_group)
        .send()
        .await
        .unwrap();
    aws.logs
        .put_retention_policy()
        .log_group_name(&n.log_group)
        .retention_in_days(30)
        .send()
        .await
        .unwrap();

    let _ = aws
        .ecs
        .describe_task_definition()
        .task_definition(&n.task_family)
        .send()
        .await;
    let container = |name: &str, image: &str, port: i32| {
        ContainerDefinition::builder()
            .name(name)
            .image(image)
            .essential(true)
            .port_mappings(PortMapping::builder().container_port(port).build())
            .build()
    };
    let td = aws
        .ecs
        .register_task_definition()
        .family(&n.task_family)
        .requires_compatibilities(Compatibility::Fargate)
        .network_mode(NetworkMode::Awsvpc)
        .cpu("256")
        .memory("512")
        .container_definitions(container("app", "humangov/app:1.0.0", 8000))
        .container_definitions(container("nginx", "nginx:1.27-alpine", 80))
        .send()
        .await
        .unwrap();
    let td_arn = td
        .task_definition()
        .unwrap()
        .task_definition_arn()
        .unwrap()
        .to_owned();

    let tg = aws
        .elb
        .create_target_group()
        .name(&n.target_group)
        .protocol(ProtocolEnum::Http)
        .port(80)
        .vpc_id(&cell.vpc_id)
        .target_type(TargetTypeEnum::Ip)
        .send()
        .await
        .unwrap();
    let tg_arn = tg.target_groups()[0].target_group_arn().unwrap().to_owned();
    aws.elb
        .modify_target_group_attributes()
        .target_group_arn(&tg_arn)
        .attributes(
            TargetGroupAttribute::builder()
                .key("deregistration_delay.timeout_seconds")
                .value("30")
                .build(),
        )
        .send()
        .await
        .unwrap();
    aws.elb
        .describe_rules()
        .listener_arn(&cell.listener_arn)
        .send()
        .await
        .unwrap();
    aws.elb
        .create_rule()
        .listener_arn(&cell.listener_arn)
        .priority(priority)
        .conditions(
            RuleCondition::builder()
                .field("host-header")
                .host_header_config(
                    HostHeaderConditionConfig::builder()
                        .values(p.host(slug))
                        .build(),
                )
                .build(),
        )
        .actions(
            Action::builder()
                .r#type(ActionTypeEnum::Forward)
                .target_group_arn(&tg_arn)
                .build(),
        )
        .send()
        .await
        .unwrap();

    // The alarms: one look-up of the six names, then each put.
    let lb = alarms::load_balancer_dimension(&cell.listener_arn);
    let subject = alarms::Subject {
        name_prefix: &n.alarm_prefix,
        target_group: alarms::target_group_dimension(&tg_arn),
        load_balancer: &lb,
        cluster: &cell.cluster,
        service: &n.service,
        tenant: slug,
    };
    alarms::ensure(&aws.cloudwatch, &alarms::wanted(&subject, &p.alarms), slug)
        .await
        .unwrap();

    aws.ecs
        .create_service()
        .cluster(&cell.cluster)
        .service_name(&n.service)
        .task_definition(&td_arn)
        .desired_count(1)
        .launch_type(LaunchType::Fargate)
        .network_configuration(
            NetworkConfiguration::builder()
                .awsvpc_configuration(
                    AwsVpcConfiguration::builder()
                        .set_subnets(Some(cell.subnets.clone()))
                        .set_security_groups(Some(cell.security_groups.clone()))
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .load_balancers(
            LoadBalancer::builder()
                .target_group_arn(&tg_arn)
                .container_name("nginx")
                .container_port(80)
                .build(),
        )
        .send()
        .await
        .unwrap();

    let resource_id = format!("service/{}/{}", cell.cluster, n.service);
    aws.autoscaling
        .register_scalable_target()
        .service_namespace(ServiceNamespace::Ecs)
        .resource_id(&resource_id)
        .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
        .min_capacity(1)
        .max_capacity(2)
        .send()
        .await
        .unwrap();
    aws.autoscaling
        .put_scaling_policy()
        .policy_name(&n.scaling_policy)
        .service_namespace(ServiceNamespace::Ecs)
        .resource_id(&resource_id)
        .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
        .policy_type(PolicyType::TargetTrackingScaling)
        .target_tracking_scaling_policy_configuration(
            TargetTrackingScalingPolicyConfiguration::builder()
                .target_value(60.0)
                .predefined_metric_specification(
                    PredefinedMetricSpecification::builder()
                        .predefined_metric_type(MetricType::EcsServiceAverageCpuUtilization)
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    aws.ecs
        .describe_services()
        .cluster(&cell.cluster)
        .services(&n.service)
        .send()
        .await
        .unwrap();
}
