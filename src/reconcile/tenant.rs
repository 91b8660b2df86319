//! One pass over one tenant: make AWS match its row (apply) or remove everything it has
//! (delete). Independent resources go concurrently; the order follows real dependencies.

use std::{future::Future, time::Duration};

use serde_json::{json, Value};

use super::{
    alarms, bucket, log_group,
    names::TenantNames,
    plan::Plan,
    platform::{Cell, Platform},
    progress::Progress,
    role, rule, scaling,
    service::{self, Rollout},
    table, target_group, task_def, Changes,
};
use crate::{
    aws::{Aws, AwsError},
    db::{leases::LeaseError, priorities},
    domain::{spec::TenantSpec, state::StateSlug, tenant::TenantStatus},
};

#[derive(Debug, thiserror::Error)]
pub enum PassError {
    #[error("{kind}: {err}")]
    Aws {
        kind: &'static str,
        err: Box<AwsError>,
    },
    #[error(transparent)]
    Lease(#[from] LeaseError),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// The stored spec is not one ECS accepts (only possible if the row was edited by hand).
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
    #[error("cell `{0}` is not configured on this worker")]
    UnknownCell(String),
    /// The deployment failed or rolled back; ECS's reason.
    #[error("deployment failed: {0}")]
    Rollout(String),
}

pub enum Applied {
    /// Everything matches and the deployment of this generation completed.
    Ready,
    /// Everything matches; the deployment is still rolling out.
    Deploying(String),
}

pub struct Pass<'a> {
    pub aws: &'a Aws,
    pub platform: &'a Platform,
    pub progress: &'a Progress,
    /// How long one pass watches a deployment before handing the tenant back.
    pub rollout_watch: Duration,
}

const RESOURCE_READY: &str = "Ready";

impl Pass<'_> {
    fn slug(&self) -> Result<StateSlug, PassError> {
        StateSlug::parse(&self.progress.tenant().name)
            .map_err(|e| PassError::InvalidSpec(format!("tenant name: {e}")))
    }

    fn cell(&self) -> Result<&Cell, PassError> {
        let name = &self.progress.tenant().cell;
        self.platform
            .cell(name)
            .ok_or_else(|| PassError::UnknownCell(name.clone()))
    }

    /// Runs one resource's step and records its outcome: the resource and its condition on
    /// success (plus an event if it changed anything), the AWS error otherwise.
    async fn step<T>(
        &self,
        kind: &'static str,
        name: &str,
        fut: impl Future<Output = Result<(T, Changes), AwsError>>,
        record: impl FnOnce(&T) -> Value,
    ) -> Result<T, PassError> {
        match fut.await {
            Ok((out, changes)) => {
                self.progress.changed(kind, name, &changes).await?;
                let message = format!("{name} exists and matches the spec");
                self.progress
                    .set_resource(kind, Some(record(&out)), ("True", RESOURCE_READY, message))
                    .await?;
                Ok(out)
            }
            Err(err) => {
                self.progress.failed(kind, &err).await?;
                Err(PassError::Aws {
                    kind,
                    err: Box::new(err),
                })
            }
        }
    }

    fn plan<'s>(&'s self, spec: &'s TenantSpec) -> Result<Plan<'s>, PassError> {
        let slug = self.slug()?;
        let cell = self.cell()?;
        Ok(Plan::new(
            self.platform,
            cell,
            spec,
            slug,
            self.progress.tenant().id,
        ))
    }

    pub async fn apply(&self, spec: &TenantSpec) -> Result<Applied, PassError> {
        let plan = self.plan(spec)?;
        let p = &plan;
        // Boxed: each branch holds several SDK futures, too large to nest on the stack.
        let (bucket, table, compute, routing) = tokio::join!(
            Box::pin(self.bucket(p)),
            Box::pin(self.table(p)),
            Box::pin(self.task_definition(p)),
            Box::pin(self.routing(p)),
        );
        bucket?;
        table?;
        let task_def_arn = compute?;
        let target_group_arn = routing?;
        Box::pin(self.alarms(p, &target_group_arn)).await?;
        Box::pin(self.service(p, &task_def_arn, &target_group_arn)).await?;
        Box::pin(self.scaling(p)).await?;
        Box::pin(self.rollout(p, &task_def_arn)).await
    }

    /// The deep check of a tenant found whole: the settings no batched call reads (the
    /// bucket's, the table's, the target group's attributes), each repaired on the spot as
    /// in [`Pass::apply`]. The rest is compared every resync from batched calls, and the
    /// role once per deep interval for the whole account, by `worker::resync`.
    pub async fn deep_check(&self, spec: &TenantSpec) -> Result<(), PassError> {
        let plan = self.plan(spec)?;
        let p = &plan;
        let (bucket, table, attributes) = tokio::join!(
            Box::pin(self.bucket(p)),
            Box::pin(self.table(p)),
            Box::pin(self.target_group_attributes(p)),
        );
        bucket?;
        table?;
        attributes
    }

    async fn bucket(&self, p: &Plan<'_>) -> Result<(), PassError> {
        let n = &p.n;
        let spec = bucket::BucketSpec {
            name: &n.bucket,
            region: &p.cell.region,
            tenant: n.slug,
        };
        let known = self.progress.knows("bucket").await;
        self.step(
            "bucket",
            &n.bucket,
            async {
                bucket::ensure(&self.aws.s3, &spec, known)
                    .await
                    .map(|c| ((), c))
            },
            |_| json!({ "name": n.bucket, "arn": p.bucket_arn }),
        )
        .await
    }

    async fn table(&self, p: &Plan<'_>) -> Result<(), PassError> {
        let n = &p.n;
        let spec = table::TableSpec {
            name: &n.table,
            arn: &p.table_arn,
            tenant: n.slug,
        };
        let known = self.progress.knows("table").await;
        self.step(
            "table",
            &n.table,
            async {
                table::ensure(&self.aws.dynamodb, &spec, known)
                    .await
                    .map(|c| ((), c))
            },
            |_| json!({ "name": n.table, "arn": p.table_arn }),
        )
        .await
    }

    /// The role and the log group (concurrently), then the task definition that uses both.
    async fn task_definition(&self, p: &Plan<'_>) -> Result<String, PassError> {
        let (role, logs) = tokio::join!(Box::pin(self.role(p)), Box::pin(self.log_group(p)));
        role?;
        logs?;
        let d = p.task_def();
        let family = &p.n.task_family;
        let recorded = self
            .progress
            .resource("task_definition")
            .await
            .and_then(|r| r["arn"].as_str().map(str::to_owned));
        self.step(
            "task_definition",
            family,
            task_def::ensure(&self.aws.ecs, &d, recorded.as_deref()),
            |arn| json!({ "family": family, "arn": arn }),
        )
        .await
    }

    async fn role(&self, p: &Plan<'_>) -> Result<(), PassError> {
        let n = &p.n;
        let spec = p.role();
        let known = self.progress.knows("task_role").await;
        self.step(
            "task_role",
            &n.task_role,
            async {
                role::ensure(&self.aws.iam, &spec, known)
                    .await
                    .map(|c| ((), c))
            },
            |_| json!({ "name": n.task_role, "arn": p.role_arn, "policy": n.role_policy }),
        )
        .await
    }

    async fn log_group(&self, p: &Plan<'_>) -> Result<(), PassError> {
        let n = &p.n;
        let pl = p.cell;
        let spec = p.log_group();
        let known = self.progress.knows("log_group").await;
        self.step(
            "log_group",
            &n.log_group,
            async { log_group::ensure(&self.aws.logs, &spec, known).await.map(|c| ((), c)) },
            |_| json!({ "name": n.log_group, "arn": log_group::arn(&pl.region, &pl.account, &n.log_group) }),
        )
        .await
    }

    /// The target group's attributes, for the deep check; the group itself is compared
    /// every resync.
    async fn target_group_attributes(&self, p: &Plan<'_>) -> Result<(), PassError> {
        let name = &p.n.target_group;
        let Some(arn) = self
            .progress
            .resource("target_group")
            .await
            .and_then(|r| r["arn"].as_str().map(str::to_owned))
        else {
            return Err(PassError::InvalidSpec(format!(
                "target group {name} is not recorded; a full pass makes it"
            )));
        };
        self.step(
            "target_group",
            name,
            async {
                target_group::ensure_attributes(&self.aws.elb, &arn)
                    .await
                    .map(|c| ((), c))
            },
            |_| json!({ "name": name, "arn": arn }),
        )
        .await
    }

    /// The target group, then the listener rule that forwards to it (ECS refuses a target
    /// group no rule uses yet). Returns the target group's ARN.
    async fn routing(&self, p: &Plan<'_>) -> Result<String, PassError> {
        let n = &p.n;
        let cell = p.cell;
        let spec = p.target_group();
        let known = self.progress.knows("target_group").await;
        let tg_arn = self
            .step(
                "target_group",
                &n.target_group,
                target_group::ensure(&self.aws.elb, &spec, known),
                |arn| json!({ "name": n.target_group, "arn": arn }),
            )
            .await?;
        let rules = match rule::list(&self.aws.elb, &cell.listener_arn).await {
            Ok(r) => r,
            Err(err) => {
                self.progress.failed("listener_rule", &err).await?;
                return Err(PassError::Aws {
                    kind: "listener_rule",
                    err: Box::new(err),
                });
            }
        };
        let existing = rule::find(&rules, &p.host);
        let in_use = rules
            .iter()
            .filter(|r| Some(*r) != existing)
            .filter_map(|r| r.priority)
            .collect::<Vec<_>>();
        let tenant = self.progress.tenant();
        let priority = priorities::allocate(
            self.progress.pool(),
            &cell.name,
            tenant.id,
            existing.and_then(|r| r.priority),
            &in_use,
        )
        .await?;
        let spec = p.rule(&tg_arn, priority);
        let host = &p.host;
        self.step(
            "listener_rule",
            host,
            rule::ensure(&self.aws.elb, &spec, existing),
            |arn| json!({ "arn": arn, "host": host, "priority": priority, "listener_arn": cell.listener_arn }),
        )
        .await?;
        Ok(tg_arn)
    }

    /// The alarms on the target group and the service; before the service, whose
    /// deployments watch two of them.
    async fn alarms(&self, p: &Plan<'_>, target_group_arn: &str) -> Result<(), PassError> {
        let n = &p.n;
        let wanted = p.alarms(target_group_arn);
        let names = n.alarms();
        self.step(
            "alarms",
            &format!("{}*", n.alarm_prefix),
            async {
                alarms::ensure(&self.aws.cloudwatch, &wanted, n.slug)
                    .await
                    .map(|c| ((), c))
            },
            |_| json!({ "names": names, "prefix": n.alarm_prefix }),
        )
        .await
    }

    async fn service(
        &self,
        p: &Plan<'_>,
        task_def_arn: &str,
        target_group_arn: &str,
    ) -> Result<(), PassError> {
        let n = &p.n;
        let s = p.service(task_def_arn, target_group_arn);
        let known = self.progress.knows("service").await;
        let pl = p.cell;
        let cluster = &p.cell.cluster;
        self.step(
            "service",
            &n.service,
            async { service::ensure(&self.aws.ecs, &s, known).await.map(|c| ((), c)) },
            |_| {
                json!({
                    "name": n.service,
                    "cluster": cluster,
                    "arn": format!("arn:aws:ecs:{}:{}:service/{}/{}", pl.region, pl.account, cluster, n.service),
                })
            },
        )
        .await
    }

    async fn scaling(&self, p: &Plan<'_>) -> Result<(), PassError> {
        let s = p.scaling();
        let known = self.progress.knows("autoscaling").await;
        let (resource_id, policy) = (&p.resource_id, &p.n.scaling_policy);
        self.step(
            "autoscaling",
            resource_id,
            async {
                scaling::ensure(&self.aws.autoscaling, &s, known)
                    .await
                    .map(|c| ((), c))
            },
            |_| json!({ "resource_id": resource_id, "policy": policy }),
        )
        .await
    }

    /// Watches the deployment of `task_def_arn` for up to `rollout_watch`.
    async fn rollout(&self, p: &Plan<'_>, task_def_arn: &str) -> Result<Applied, PassError> {
        let (n, cell) = (&p.n, p.cell);
        let deadline = tokio::time::Instant::now() + self.rollout_watch;
        loop {
            let svc = match service::describe(&self.aws.ecs, &cell.cluster, &n.service).await {
                Ok(Some(svc)) => svc,
                Ok(None) => {
                    return Ok(Applied::Deploying("the service is not visible yet".into()));
                }
                Err(err) => {
                    self.progress.failed("deployment", &err).await?;
                    return Err(PassError::Aws {
                        kind: "deployment",
                        err: Box::new(err),
                    });
                }
            };
            match service::rollout(&svc, task_def_arn, self.platform.deployment_timeout) {
                Rollout::Completed => {
                    let message = format!("the deployment of {task_def_arn} completed");
                    self.progress
                        .condition("Deployed", ("True", "DeploymentCompleted", message), None)
                        .await?;
                    // Older revisions are no longer in use once this deployment completed.
                    if let Ok(changes) =
                        task_def::retire_old(&self.aws.ecs, &n.task_family, task_def_arn).await
                    {
                        self.progress
                            .changed("task_definition", &n.task_family, &changes)
                            .await?;
                    }
                    return Ok(Applied::Ready);
                }
                Rollout::Failed(reason) => {
                    self.progress
                        .condition(
                            "Deployed",
                            ("False", "DeploymentFailed", reason.clone()),
                            None,
                        )
                        .await?;
                    return Err(PassError::Rollout(reason));
                }
                Rollout::InProgress(progress) => {
                    self.progress
                        .condition(
                            "Deployed",
                            ("False", "DeploymentInProgress", progress.clone()),
                            None,
                        )
                        .await?;
                    if tokio::time::Instant::now() >= deadline {
                        return Ok(Applied::Deploying(progress));
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
}

/// What a deletion keeps, by data policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Data {
    Retain,
    Purge,
}

impl Pass<'_> {
    /// Removes the tenant's resources in dependency order; returns once every one is
    /// verified gone (and the retained ones are recorded).
    pub async fn delete(&self, data: Data) -> Result<(), PassError> {
        let slug = self.slug()?;
        let cell = self.cell()?;
        let n = cell.names(&self.platform.prefix, slug);
        let aws = self.aws;
        let resource_id = scaling::resource_id(&cell.cluster, &n.service);
        let host = self.platform.host(slug);
        self.gone(
            "autoscaling",
            &resource_id,
            scaling::delete(&aws.autoscaling, &resource_id, &n.scaling_policy),
        )
        .await?;
        self.gone(
            "service",
            &n.service,
            service::delete(&aws.ecs, &cell.cluster, &n.service),
        )
        .await?;
        self.gone(
            "listener_rule",
            &host,
            rule::delete(&aws.elb, &cell.listener_arn, &host),
        )
        .await?;
        self.gone(
            "alarms",
            &format!("{}*", n.alarm_prefix),
            alarms::delete(&aws.cloudwatch, &n.alarms()),
        )
        .await?;
        self.gone(
            "target_group",
            &n.target_group,
            target_group::delete(&aws.elb, &n.target_group),
        )
        .await?;
        self.gone(
            "task_definition",
            &n.task_family,
            task_def::delete(&aws.ecs, &n.task_family),
        )
        .await?;
        self.gone(
            "log_group",
            &n.log_group,
            log_group::delete(&aws.logs, &n.log_group),
        )
        .await?;
        self.gone(
            "task_role",
            &n.task_role,
            role::delete(&aws.iam, &n.task_role),
        )
        .await?;
        match data {
            Data::Retain => self.retain(&n).await,
            Data::Purge => self.purge(&n).await,
        }
    }

    async fn gone(
        &self,
        kind: &'static str,
        name: &str,
        fut: impl Future<Output = Result<Changes, AwsError>>,
    ) -> Result<(), PassError> {
        match fut.await {
            Ok(changes) => {
                self.progress.changed(kind, name, &changes).await?;
                let message = format!("{name} is deleted");
                self.progress
                    .set_resource(kind, None, ("False", "Deleted", message))
                    .await?;
                Ok(())
            }
            Err(err) => {
                self.progress.failed(kind, &err).await?;
                Err(PassError::Aws {
                    kind,
                    err: Box::new(err),
                })
            }
        }
    }

    async fn retain(&self, n: &TenantNames) -> Result<(), PassError> {
        for (kind, name) in [("bucket", &n.bucket), ("table", &n.table)] {
            let message = format!("{name} is kept (data policy `retain`)");
            let kept = self
                .progress
                .resource(kind)
                .await
                .unwrap_or_else(|| json!({ "name": name }));
            let mut kept = kept.as_object().cloned().unwrap_or_default();
            kept.insert("retained".into(), Value::Bool(true));
            self.progress
                .set_resource(
                    kind,
                    Some(Value::Object(kept)),
                    ("True", "Retained", message),
                )
                .await?;
        }
        self.progress
            .event(
                "data.retained",
                &format!("bucket {} and table {} are kept", n.bucket, n.table),
                json!({ "bucket": n.bucket, "table": n.table }),
            )
            .await?;
        Ok(())
    }

    async fn purge(&self, n: &TenantNames) -> Result<(), PassError> {
        let backup_name = format!("{}-final-{}", n.table, self.progress.tenant().id.simple());
        let backup = table::final_backup(&self.aws.dynamodb, &n.table, &backup_name).await;
        match backup {
            Ok(Some(arn)) => {
                let message = format!("final backup {backup_name} of {} taken", n.table);
                self.progress
                    .set_resource(
                        "table_backup",
                        Some(json!({ "name": backup_name, "arn": arn })),
                        ("True", "BackupTaken", message.clone()),
                    )
                    .await?;
                self.progress
                    .event("data.backup", &message, json!({ "backup_arn": arn }))
                    .await?;
            }
            Ok(None) => {}
            Err(err) => {
                self.progress.failed("table_backup", &err).await?;
                return Err(PassError::Aws {
                    kind: "table_backup",
                    err: Box::new(err),
                });
            }
        }
        self.gone(
            "table",
            &n.table,
            table::delete(&self.aws.dynamodb, &n.table),
        )
        .await?;
        self.gone("bucket", &n.bucket, bucket::delete(&self.aws.s3, &n.bucket))
            .await
    }

    /// Sets the status the tenant shows while this pass works.
    pub async fn working(&self, status: TenantStatus, message: String) -> Result<(), PassError> {
        self.progress
            .condition(
                "Ready",
                ("False", reason_for(status), message),
                Some(status),
            )
            .await?;
        Ok(())
    }
}

fn reason_for(status: TenantStatus) -> &'static str {
    match status {
        TenantStatus::Provisioning => "Provisioning",
        TenantStatus::Updating => "Updating",
        TenantStatus::Deleting => "Deleting",
        _ => "Reconciling",
    }
}
