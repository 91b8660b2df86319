//! `statehouse dev bootstrap`: the shared platform of DESIGN.md inside the local AWS
//! emulator (what terraform-modules/ makes in a real account), created idempotently, and
//! the worker's settings for it written to an env file.

use std::{fmt::Write as _, path::PathBuf};

use anyhow::{bail, Context};
use aws_sdk_ec2::types::{
    Filter, IpPermission, ResourceType, Tag as Ec2Tag, TagSpecification, UserIdGroupPair,
};
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, Certificate, FixedResponseActionConfig, LoadBalancerSchemeEnum,
    ProtocolEnum, RedirectActionConfig, RedirectActionStatusCodeEnum,
};
use clap::{Args, Subcommand};
use serde_json::json;

use crate::{
    aws::{budget::BudgetSettings, Aws},
    reconcile::platform::Cell,
};

#[derive(Subcommand, Debug)]
pub enum DevCommand {
    /// Create the shared platform (VPC, subnets, security groups, cluster, ALB with HTTPS
    /// and HTTP listeners, execution role) in the emulator at AWS_ENDPOINT_URL, and write
    /// the worker's settings. Safe to run again: what exists is reused.
    #[command(
        after_help = "Example:\n  AWS_ENDPOINT_URL=http://127.0.0.1:5000 AWS_REGION=us-east-1 \\\n    statehouse dev bootstrap --out .dev/platform.env"
    )]
    Bootstrap(BootstrapArgs),
    /// Register each running task of the cluster's services as a target of its service's
    /// target group, as ECS does on AWS and the emulator does not; tasks no longer running
    /// are deregistered. Without it every tenant in the emulator shows no healthy target.
    /// With a cells file, in every cell's cluster, each reached as the worker reaches it.
    /// Emulator only.
    #[command(
        after_help = "Example (what `make run` does every few seconds):\n  set -a; . .dev/platform.env; set +a; statehouse dev attach-tasks"
    )]
    AttachTasks(AttachArgs),
    /// Write CPU and memory utilisation for a tenant's service into the emulator, where no
    /// task runs to report any, so rightsizing has something to recommend from. Emulator
    /// only.
    #[command(
        after_help = "Examples (with .dev/platform.env loaded):\n  statehouse dev put-metrics texas --cpu 95 --memory 70 --over 2d\n  statehouse dev put-metrics vermont --cpu 4 --memory 12 --over 8d --every 30m"
    )]
    PutMetrics(super::synthetic::PutMetricsArgs),
}

#[derive(Args, Debug)]
pub struct AttachArgs {
    /// The cluster whose services' tasks are attached (without a cells file).
    #[arg(long, env = "STATEHOUSE_CLUSTER")]
    cluster: Option<String>,
    /// The cells file (as the worker's): every cell's cluster is attached, each with the
    /// cell's clients (its region, and AssumeRole on its role).
    #[arg(long, env = "STATEHOUSE_CELLS_FILE")]
    cells_file: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct BootstrapArgs {
    /// Name (and name prefix) of the shared resources.
    #[arg(long, default_value = "statehouse-dev")]
    name: String,
    /// The tenants' resource name prefix (STATEHOUSE_PREFIX): the execution role may pull
    /// only `{prefix}/*` images and write only `/{prefix}/*` log groups.
    #[arg(long, env = "STATEHOUSE_PREFIX", default_value = "humangov")]
    prefix: String,
    /// Tenants answer on https://{state}.{base_domain}.
    #[arg(long, default_value = "humangov.localhost")]
    base_domain: String,
    /// Where to write the settings, as KEY=VALUE lines.
    #[arg(long, default_value = ".dev/platform.env")]
    out: PathBuf,
    /// Bootstrap even when AWS_ENDPOINT_URL is unset, i.e. against a real AWS account.
    #[arg(long)]
    allow_real_aws: bool,
    /// Make the platform in the account of this role, assumed first (the emulator honours
    /// AssumeRole into any account id): a cell of a dedicated account.
    #[arg(long)]
    role_arn: Option<String>,
    /// Also write the platform as cell `--cell` into this cells file (STATEHOUSE_CELLS_FILE),
    /// replacing that cell's entry if there is one.
    #[arg(long, requires = "cell")]
    cells_file: Option<PathBuf>,
    /// The cell's name in the cells file.
    #[arg(long, requires = "cells_file")]
    cell: Option<String>,
    /// The cell's capacity in the cells file.
    #[arg(long, requires = "cells_file")]
    capacity: Option<u32>,
    /// States the cell is reserved for in the cells file, comma separated.
    #[arg(long, requires = "cells_file", value_delimiter = ',')]
    reserved_for: Vec<String>,
}

pub async fn run(command: DevCommand) -> anyhow::Result<()> {
    match command {
        DevCommand::Bootstrap(args) => bootstrap(args).await,
        DevCommand::AttachTasks(args) => attach_tasks(args).await,
        DevCommand::PutMetrics(args) => super::synthetic::run(args).await,
    }
}

/// Makes each service's target group hold as many targets as the service runs tasks, in
/// the one cluster or in every cell of the cells file.
async fn attach_tasks(args: AttachArgs) -> anyhow::Result<()> {
    if std::env::var_os("AWS_ENDPOINT_URL").is_none() {
        bail!("AWS_ENDPOINT_URL is not set: this command is for the local emulator only (on AWS, ECS registers tasks itself)");
    }
    let config = Aws::load_config().await;
    let Some(path) = &args.cells_file else {
        let cluster = args
            .cluster
            .context("name the cluster (--cluster or STATEHOUSE_CLUSTER) or give a cells file")?;
        let changed = attach_cluster(&Aws::new(&config), &cluster).await?;
        eprintln!("{changed} target(s) registered or deregistered");
        return Ok(());
    };
    let region = config
        .region()
        .map(|r| r.as_ref().to_owned())
        .context("no AWS region: set AWS_REGION")?;
    let cells: Vec<Cell> = crate::cells::load(path, crate::config::MAX_CELL_CAPACITY)?
        .into_iter()
        .map(Cell::from)
        .collect();
    let metrics = std::sync::Arc::new(crate::metrics::Metrics::default());
    let budget = BudgetSettings {
        share: 1.0,
        ..Default::default()
    };
    let counter = Aws::metrics_counter(metrics.clone());
    let home = crate::worker::clients::home_clients(config, counter, &budget, metrics.clone());
    let account = home
        .account_id()
        .await
        .context("cannot find the emulator's account")?;
    let clients =
        crate::worker::clients::cell_clients(&home, &account, &region, &cells, &budget, metrics)
            .await?;
    let mut changed = 0;
    for cell in &cells {
        let aws = clients.get(&cell.name).unwrap_or(&home);
        changed += attach_cluster(aws, &cell.cluster)
            .await
            .with_context(|| format!("cell `{}`", cell.name))?;
    }
    eprintln!("{changed} target(s) registered or deregistered");
    Ok(())
}

/// [`attach`] for every service of `cluster`; how many targets changed.
async fn attach_cluster(aws: &Aws, cluster: &str) -> anyhow::Result<usize> {
    let mut arns = Vec::new();
    let mut token = None;
    loop {
        let out = aws
            .ecs
            .list_services()
            .cluster(cluster)
            .set_next_token(token)
            .send()
            .await
            .context("cannot list the cluster's services")?;
        arns.extend(out.service_arns().iter().cloned());
        token = out.next_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    let mut changed = 0;
    for batch in arns.chunks(10) {
        let out = aws
            .ecs
            .describe_services()
            .cluster(cluster)
            .set_services(Some(batch.to_vec()))
            .send()
            .await
            .context("cannot describe the cluster's services")?;
        for (i, svc) in out.services().iter().enumerate() {
            let running = if svc.status() == Some("ACTIVE") {
                usize::try_from(svc.running_count()).unwrap_or(0)
            } else {
                0
            };
            for lb in svc.load_balancers() {
                let (Some(tg), Some(port)) = (lb.target_group_arn(), lb.container_port()) else {
                    continue;
                };
                changed += attach(aws, tg, port, running, i).await?;
            }
        }
    }
    Ok(changed)
}

/// Registers or deregisters made-up task addresses until `tg` holds `running` targets.
async fn attach(
    aws: &Aws,
    tg: &str,
    port: i32,
    running: usize,
    service: usize,
) -> anyhow::Result<usize> {
    use aws_sdk_elasticloadbalancingv2::types::TargetDescription;
    let health = aws
        .elb
        .describe_target_health()
        .target_group_arn(tg)
        .send()
        .await
        .context("cannot read a target group's targets")?;
    let have: Vec<TargetDescription> = health
        .target_health_descriptions()
        .iter()
        .filter_map(|d| d.target().cloned())
        .collect();
    let target = |n: usize| {
        TargetDescription::builder()
            .id(format!("10.0.{}.{}", 1 + service % 200, 10 + n))
            .port(port)
            .build()
    };
    if have.len() < running {
        let add: Vec<TargetDescription> = (have.len()..running).map(target).collect();
        let n = add.len();
        aws.elb
            .register_targets()
            .target_group_arn(tg)
            .set_targets(Some(add))
            .send()
            .await
            .context("cannot register targets")?;
        return Ok(n);
    }
    if have.len() > running {
        let remove = have[running..].to_vec();
        let n = remove.len();
        aws.elb
            .deregister_targets()
            .target_group_arn(tg)
            .set_targets(Some(remove))
            .send()
            .await
            .context("cannot deregister targets")?;
        return Ok(n);
    }
    Ok(0)
}

struct Made {
    vpc: String,
    private_subnets: Vec<String>,
    tasks_sg: String,
    cluster: String,
    listener: String,
    execution_role: String,
}

async fn bootstrap(args: BootstrapArgs) -> anyhow::Result<()> {
    if std::env::var_os("AWS_ENDPOINT_URL").is_none() && !args.allow_real_aws {
        bail!("AWS_ENDPOINT_URL is not set: this command is for the local emulator (use terraform-modules/ for a real account, or pass --allow-real-aws)");
    }
    let mut config = Aws::load_config().await;
    let region = config
        .region()
        .map(|r| r.as_ref().to_owned())
        .context("no AWS region: set AWS_REGION")?;
    if let Some(role) = &args.role_arn {
        let provider = aws_config::sts::AssumeRoleProvider::builder(role.clone())
            .session_name("statehouse-dev-bootstrap")
            .configure(&config)
            .build()
            .await;
        config = config
            .to_builder()
            .credentials_provider(aws_sdk_sts::config::SharedCredentialsProvider::new(
                provider,
            ))
            .build();
    }
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let aws = Aws::new(&config);
    let account = aws.account_id().await?;
    let made = make(&ec2, &aws, &args, &region)
        .await
        .context("cannot create the shared platform in the emulator")?;
    let mut env = String::new();
    let endpoint = config.endpoint_url().unwrap_or_default();
    for (key, value) in [
        ("AWS_ENDPOINT_URL", endpoint.to_owned()),
        ("AWS_REGION", region.clone()),
        ("STATEHOUSE_ACCOUNT_ID", account.clone()),
        ("STATEHOUSE_BASE_DOMAIN", args.base_domain.clone()),
        ("STATEHOUSE_CLUSTER", made.cluster.clone()),
        ("STATEHOUSE_LISTENER_ARN", made.listener.clone()),
        ("STATEHOUSE_VPC_ID", made.vpc.clone()),
        ("STATEHOUSE_SUBNETS", made.private_subnets.join(",")),
        ("STATEHOUSE_SECURITY_GROUPS", made.tasks_sg.clone()),
        ("STATEHOUSE_EXECUTION_ROLE_ARN", made.execution_role.clone()),
    ] {
        if !value.is_empty() {
            writeln!(env, "{key}={value}")?;
        }
    }
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(&args.out, &env)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    if let (Some(file), Some(cell)) = (&args.cells_file, &args.cell) {
        write_cell(file, cell, &args, &region, &made)?;
    }
    eprintln!(
        "shared platform ready; settings written to {}",
        args.out.display()
    );
    print!("{env}");
    Ok(())
}

/// Writes the platform as `cell` into the cells file `file` (made if missing).
fn write_cell(
    file: &std::path::Path,
    cell: &str,
    args: &BootstrapArgs,
    region: &str,
    made: &Made,
) -> anyhow::Result<()> {
    let mut doc: toml::Table = match std::fs::read_to_string(file) {
        Ok(text) => toml::from_str(&text)
            .with_context(|| format!("{} is not a TOML cells file", file.display()))?,
        Err(_) => toml::Table::new(),
    };
    let mut entry = toml::Table::new();
    let text = |s: &str| toml::Value::String(s.to_owned());
    let list = |v: &[String]| toml::Value::Array(v.iter().map(|s| text(s)).collect());
    entry.insert("name".into(), text(cell));
    entry.insert("region".into(), text(region));
    if let Some(role) = &args.role_arn {
        entry.insert("role_arn".into(), text(role));
    }
    if let Some(capacity) = args.capacity {
        entry.insert("capacity".into(), toml::Value::Integer(i64::from(capacity)));
    }
    if !args.reserved_for.is_empty() {
        entry.insert("reserved_for".into(), list(&args.reserved_for));
    }
    entry.insert("cluster".into(), text(&made.cluster));
    entry.insert("listener_arn".into(), text(&made.listener));
    entry.insert("vpc_id".into(), text(&made.vpc));
    entry.insert("subnets".into(), list(&made.private_subnets));
    entry.insert(
        "security_groups".into(),
        list(std::slice::from_ref(&made.tasks_sg)),
    );
    entry.insert("execution_role_arn".into(), text(&made.execution_role));
    let cells = doc
        .entry("cell")
        .or_insert_with(|| toml::Value::Array(Vec::new()));
    let toml::Value::Array(cells) = cells else {
        bail!("{}: `cell` is not a list of cells", file.display());
    };
    cells.retain(|c| c.get("name").and_then(toml::Value::as_str) != Some(cell));
    cells.push(toml::Value::Table(entry));
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(file, toml::to_string(&doc)?)
        .with_context(|| format!("cannot write {}", file.display()))?;
    eprintln!("cell {cell} written to {}", file.display());
    Ok(())
}

async fn make(
    ec2: &aws_sdk_ec2::Client,
    aws: &Aws,
    args: &BootstrapArgs,
    region: &str,
) -> anyhow::Result<Made> {
    let name = &args.name;
    let vpc = vpc(ec2, name).await?;
    let mut private_subnets = Vec::new();
    let mut public_subnets = Vec::new();
    for (i, az) in ["a", "b"].iter().enumerate() {
        let zone = format!("{region}{az}");
        private_subnets.push(
            subnet(
                ec2,
                &vpc,
                &format!("{name}-private-{az}"),
                &format!("10.42.{}.0/24", i + 1),
                &zone,
            )
            .await?,
        );
        public_subnets.push(
            subnet(
                ec2,
                &vpc,
                &format!("{name}-public-{az}"),
                &format!("10.42.{}.0/24", i + 101),
                &zone,
            )
            .await?,
        );
    }
    let alb_sg = security_group(ec2, &vpc, &format!("{name}-alb"), "shared ALB").await?;
    let tasks_sg = security_group(
        ec2,
        &vpc,
        &format!("{name}-tasks"),
        "tenant tasks: only from the ALB",
    )
    .await?;
    allow_from(ec2, &tasks_sg, &alb_sg).await?;
    let cluster = cluster(aws, name).await?;
    let listener = load_balancer(aws, name, &public_subnets, &alb_sg).await?;
    let execution_role = execution_role(aws, name, &args.prefix).await?;
    Ok(Made {
        vpc,
        private_subnets,
        tasks_sg,
        cluster,
        listener,
        execution_role,
    })
}

fn name_tag(resource: ResourceType, name: &str) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(resource)
        .tags(Ec2Tag::builder().key("Name").value(name).build())
        .build()
}

fn by_name(name: &str) -> Filter {
    Filter::builder().name("tag:Name").values(name).build()
}

async fn vpc(ec2: &aws_sdk_ec2::Client, name: &str) -> anyhow::Result<String> {
    let found = ec2.describe_vpcs().filters(by_name(name)).send().await?;
    if let Some(id) = found.vpcs().first().and_then(|v| v.vpc_id()) {
        return Ok(id.to_owned());
    }
    let made = ec2
        .create_vpc()
        .cidr_block("10.42.0.0/16")
        .tag_specifications(name_tag(ResourceType::Vpc, name))
        .send()
        .await?;
    made.vpc()
        .and_then(|v| v.vpc_id())
        .map(str::to_owned)
        .context("CreateVpc named no VPC")
}

async fn subnet(
    ec2: &aws_sdk_ec2::Client,
    vpc: &str,
    name: &str,
    cidr: &str,
    zone: &str,
) -> anyhow::Result<String> {
    let found = ec2.describe_subnets().filters(by_name(name)).send().await?;
    if let Some(id) = found.subnets().first().and_then(|s| s.subnet_id()) {
        return Ok(id.to_owned());
    }
    let made = ec2
        .create_subnet()
        .vpc_id(vpc)
        .cidr_block(cidr)
        .availability_zone(zone)
        .tag_specifications(name_tag(ResourceType::Subnet, name))
        .send()
        .await?;
    made.subnet()
        .and_then(|s| s.subnet_id())
        .map(str::to_owned)
        .context("CreateSubnet named no subnet")
}

async fn security_group(
    ec2: &aws_sdk_ec2::Client,
    vpc: &str,
    name: &str,
    description: &str,
) -> anyhow::Result<String> {
    let found = ec2
        .describe_security_groups()
        .filters(Filter::builder().name("group-name").values(name).build())
        .filters(Filter::builder().name("vpc-id").values(vpc).build())
        .send()
        .await?;
    if let Some(id) = found.security_groups().first().and_then(|g| g.group_id()) {
        return Ok(id.to_owned());
    }
    let made = ec2
        .create_security_group()
        .group_name(name)
        .description(description)
        .vpc_id(vpc)
        .send()
        .await?;
    made.group_id()
        .map(str::to_owned)
        .context("CreateSecurityGroup named no group")
}

/// Tasks accept HTTP only from the load balancer's group.
async fn allow_from(ec2: &aws_sdk_ec2::Client, tasks: &str, alb: &str) -> anyhow::Result<()> {
    let rule = IpPermission::builder()
        .ip_protocol("tcp")
        .from_port(80)
        .to_port(80)
        .user_id_group_pairs(UserIdGroupPair::builder().group_id(alb).build())
        .build();
    match ec2
        .authorize_security_group_ingress()
        .group_id(tasks)
        .ip_permissions(rule)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(e)
            if aws_sdk_ec2::error::ProvideErrorMetadata::code(&e)
                == Some("InvalidPermission.Duplicate") =>
        {
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

async fn cluster(aws: &Aws, name: &str) -> anyhow::Result<String> {
    let found = aws.ecs.describe_clusters().clusters(name).send().await?;
    if found
        .clusters()
        .iter()
        .any(|c| c.status() == Some("ACTIVE"))
    {
        return Ok(name.to_owned());
    }
    aws.ecs.create_cluster().cluster_name(name).send().await?;
    Ok(name.to_owned())
}

/// The shared ALB, its HTTPS listener (404 unless a tenant's host rule matches) and an
/// HTTP listener that redirects to HTTPS. Returns the HTTPS listener's ARN.
async fn load_balancer(
    aws: &Aws,
    name: &str,
    subnets: &[String],
    sg: &str,
) -> anyhow::Result<String> {
    let elb = &aws.elb;
    let found = elb.describe_load_balancers().names(name).send().await;
    let lb_arn = match found.ok().and_then(|f| {
        f.load_balancers()
            .first()
            .and_then(|l| l.load_balancer_arn().map(str::to_owned))
    }) {
        Some(arn) => arn,
        None => elb
            .create_load_balancer()
            .name(name)
            .scheme(LoadBalancerSchemeEnum::InternetFacing)
            .set_subnets(Some(subnets.to_vec()))
            .security_groups(sg)
            .send()
            .await?
            .load_balancers()
            .first()
            .and_then(|l| l.load_balancer_arn())
            .map(str::to_owned)
            .context("CreateLoadBalancer named no load balancer")?,
    };
    let listeners = elb
        .describe_listeners()
        .load_balancer_arn(&lb_arn)
        .send()
        .await?;
    let on_port = |port: i32| {
        listeners
            .listeners()
            .iter()
            .find(|l| l.port() == Some(port))
            .and_then(|l| l.listener_arn().map(str::to_owned))
    };
    if on_port(80).is_none() {
        let redirect = RedirectActionConfig::builder()
            .protocol("HTTPS")
            .port("443")
            .status_code(RedirectActionStatusCodeEnum::Http301)
            .build();
        elb.create_listener()
            .load_balancer_arn(&lb_arn)
            .protocol(ProtocolEnum::Http)
            .port(80)
            .default_actions(
                Action::builder()
                    .r#type(ActionTypeEnum::Redirect)
                    .redirect_config(redirect)
                    .build(),
            )
            .send()
            .await?;
    }
    if let Some(arn) = on_port(443) {
        return Ok(arn);
    }
    let not_found = FixedResponseActionConfig::builder()
        .status_code("404")
        .content_type("text/plain")
        .message_body("no such state")
        .build();
    let certificate = certificate(aws, name).await?;
    let made = elb
        .create_listener()
        .load_balancer_arn(&lb_arn)
        .protocol(ProtocolEnum::Https)
        .port(443)
        .ssl_policy("ELBSecurityPolicy-TLS13-1-2-2021-06")
        .certificates(Certificate::builder().certificate_arn(certificate).build())
        .default_actions(
            Action::builder()
                .r#type(ActionTypeEnum::FixedResponse)
                .fixed_response_config(not_found)
                .build(),
        )
        .send()
        .await?;
    made.listeners()
        .first()
        .and_then(|l| l.listener_arn())
        .map(str::to_owned)
        .context("CreateListener named no listener")
}

/// A stand-in for the ACM certificate of `*.base_domain` that terraform-modules/platform
/// requests: the emulator checks only that the listener's certificate exists.
async fn certificate(aws: &Aws, name: &str) -> anyhow::Result<String> {
    let cert_name = format!("{name}-wildcard");
    if let Ok(found) = aws
        .iam
        .get_server_certificate()
        .server_certificate_name(&cert_name)
        .send()
        .await
    {
        if let Some(meta) = found
            .server_certificate()
            .and_then(|c| c.server_certificate_metadata())
        {
            return Ok(meta.arn().to_owned());
        }
    }
    let made = aws
        .iam
        .upload_server_certificate()
        .server_certificate_name(&cert_name)
        .certificate_body("-----BEGIN CERTIFICATE-----\nemulator\n-----END CERTIFICATE-----\n")
        .private_key("-----BEGIN PRIVATE KEY-----\nemulator\n-----END PRIVATE KEY-----\n")
        .send()
        .await?;
    made.server_certificate_metadata()
        .map(|m| m.arn().to_owned())
        .context("UploadServerCertificate named no certificate")
}

/// The role ECS uses to pull images and write logs, for every tenant's tasks.
async fn execution_role(aws: &Aws, name: &str, prefix: &str) -> anyhow::Result<String> {
    let role_name = format!("{name}-execution");
    let existing = match aws.iam.get_role().role_name(&role_name).send().await {
        Ok(found) => found.role().map(|r| r.arn().to_owned()),
        Err(_) => None,
    };
    let trust = json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": { "Service": "ecs-tasks.amazonaws.com" },
            "Action": "sts:AssumeRole"
        }]
    });
    let arn = match existing {
        Some(arn) => arn,
        None => aws
            .iam
            .create_role()
            .role_name(&role_name)
            .assume_role_policy_document(trust.to_string())
            .send()
            .await?
            .role()
            .map(|r| r.arn().to_owned())
            .context("CreateRole named no role")?,
    };
    // Put every time (it is an upsert), so a run cut off after CreateRole is repaired.
    let policy = json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["ecr:GetAuthorizationToken"],
                "Resource": "*"
            },
            {
                "Effect": "Allow",
                "Action": ["ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"],
                "Resource": format!("arn:aws:ecr:*:*:repository/{prefix}/*")
            },
            {
                "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": format!("arn:aws:logs:*:*:log-group:/{prefix}/*")
            }
        ]
    });
    aws.iam
        .put_role_policy()
        .role_name(&role_name)
        .policy_name("pull-images-and-write-logs")
        .policy_document(policy.to_string())
        .send()
        .await?;
    Ok(arn)
}
