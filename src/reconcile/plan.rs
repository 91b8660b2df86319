//! What one tenant's resources are named and set to, from its spec, its cell and the
//! platform: the one place both a pass (which makes AWS match) and a resync round (which
//! only compares) take each resource's spec from.

use super::{
    alarms, bucket,
    log_group::LogGroupSpec,
    names::TenantNames,
    platform::{Cell, Platform},
    role::RoleSpec,
    rule::RuleSpec,
    scaling::{self, ScalingSpec},
    service::ServiceSpec,
    target_group::TargetGroupSpec,
    task_def::TaskDefSpec,
};
use crate::domain::{spec::TenantSpec, state::StateSlug};

pub struct Plan<'a> {
    pub platform: &'a Platform,
    pub cell: &'a Cell,
    pub spec: &'a TenantSpec,
    pub n: TenantNames,
    /// `{state}.{base_domain}`, the host its listener rule matches.
    pub host: String,
    /// `service/{cluster}/{service}`, its scalable target.
    pub resource_id: String,
    pub role_arn: String,
    pub bucket_arn: String,
    pub table_arn: String,
    /// The alarms whose firing rolls a deployment back.
    pub deployment_alarms: Vec<String>,
    /// CreateService's client token.
    pub client_token: String,
}

impl<'a> Plan<'a> {
    pub fn new(
        platform: &'a Platform,
        cell: &'a Cell,
        spec: &'a TenantSpec,
        slug: StateSlug,
        tenant_id: uuid::Uuid,
    ) -> Self {
        let n = cell.names(&platform.prefix, slug);
        Self {
            host: platform.host(slug),
            resource_id: scaling::resource_id(&cell.cluster, &n.service),
            role_arn: cell.role_arn_of(&n.task_role),
            bucket_arn: bucket::arn(&n.bucket),
            table_arn: cell.table_arn(&n.table),
            deployment_alarms: alarms::DEPLOYMENT_KINDS
                .iter()
                .map(|kind| format!("{}{kind}", n.alarm_prefix))
                .collect(),
            client_token: client_token(tenant_id),
            platform,
            cell,
            spec,
            n,
        }
    }

    pub fn target_group(&self) -> TargetGroupSpec<'_> {
        TargetGroupSpec {
            name: &self.n.target_group,
            vpc_id: &self.cell.vpc_id,
            tenant: self.n.slug,
        }
    }

    pub fn rule<'s>(&'s self, target_group_arn: &'s str, priority: i32) -> RuleSpec<'s> {
        RuleSpec {
            listener_arn: &self.cell.listener_arn,
            host: &self.host,
            target_group_arn,
            priority,
            tenant: self.n.slug,
        }
    }

    pub fn log_group(&self) -> LogGroupSpec<'_> {
        LogGroupSpec {
            name: &self.n.log_group,
            retention_days: self.platform.log_retention_days,
            tenant: self.n.slug,
        }
    }

    pub fn role(&self) -> RoleSpec<'_> {
        RoleSpec {
            name: &self.n.task_role,
            policy_name: &self.n.role_policy,
            account: &self.cell.account,
            region: &self.cell.region,
            bucket_arn: &self.bucket_arn,
            table_arn: &self.table_arn,
            tenant: self.n.slug,
        }
    }

    pub fn task_def(&self) -> TaskDefSpec<'_> {
        let n = &self.n;
        TaskDefSpec {
            family: &n.task_family,
            spec: self.spec,
            tenant: n.slug,
            region: &self.cell.region,
            bucket: &n.bucket,
            table: &n.table,
            log_group: &n.log_group,
            task_role_arn: &self.role_arn,
            execution_role_arn: &self.cell.execution_role_arn,
        }
    }

    pub fn service<'s>(
        &'s self,
        task_definition_arn: &'s str,
        target_group_arn: &'s str,
    ) -> ServiceSpec<'s> {
        let counts = &self.spec.counts;
        ServiceSpec {
            cluster: &self.cell.cluster,
            name: &self.n.service,
            task_definition_arn,
            target_group_arn,
            subnets: &self.cell.subnets,
            security_groups: &self.cell.security_groups,
            desired_count: count(counts.desired()),
            min_count: count(counts.min()),
            max_count: count(counts.max()),
            alarm_names: &self.deployment_alarms,
            tenant: self.n.slug,
            client_token: &self.client_token,
        }
    }

    pub fn scaling(&self) -> ScalingSpec<'_> {
        let counts = &self.spec.counts;
        ScalingSpec {
            resource_id: &self.resource_id,
            policy_name: &self.n.scaling_policy,
            min: count(counts.min()),
            max: count(counts.max()),
            tenant: self.n.slug,
        }
    }

    pub fn alarms(&self, target_group_arn: &str) -> Vec<alarms::Wanted> {
        let load_balancer = alarms::load_balancer_dimension(&self.cell.listener_arn);
        let subject = alarms::Subject {
            name_prefix: &self.n.alarm_prefix,
            target_group: alarms::target_group_dimension(target_group_arn),
            load_balancer: &load_balancer,
            cluster: &self.cell.cluster,
            service: &self.n.service,
            tenant: self.n.slug,
        };
        let mut settings = self.platform.alarms.clone();
        settings.topic_arn = self
            .cell
            .alarm_topic(self.platform.alarms.topic_arn.as_deref())
            .map(str::to_owned);
        alarms::wanted(&subject, &settings)
    }
}

/// ECS takes client tokens of at most 36 characters; the tenant id's 32 hex digits are
/// unique per incarnation, so a re-created state gets a service of its own.
fn client_token(tenant: uuid::Uuid) -> String {
    tenant.simple().to_string()
}

fn count(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_service_client_token_fits_what_ecs_accepts() {
        let token = super::client_token(uuid::Uuid::now_v7());
        assert!(token.len() <= 36 && token.chars().all(|c| c.is_ascii_hexdigit()));
    }
}
