//! `statehouse dev put-metrics`: synthetic CPU and memory for a tenant's service in the
//! emulator, where no task runs to report any, so rightsizing can be tried on the dev
//! stack. The points are what ECS publishes: AWS/ECS `CPUUtilization` and
//! `MemoryUtilization` per ClusterName and ServiceName, as percentages of the task size.

use anyhow::Context;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
use chrono::{DateTime, TimeDelta, Utc};
use clap::Args;

use super::exit::Exit;
use crate::{aws::Aws, config::parse_duration, domain::state::StateSlug};

#[derive(Args, Debug)]
pub struct PutMetricsArgs {
    /// The state whose service the points are for.
    name: StateSlug,
    /// CPU utilisation, percent of the task's CPU.
    #[arg(long)]
    cpu: f64,
    /// Memory utilisation, percent of the task's memory.
    #[arg(long)]
    memory: f64,
    /// How far back the points go.
    #[arg(long, default_value = "2d", value_parser = parse_duration)]
    over: std::time::Duration,
    /// The time between two points (one-minute points are what ECS sends; sparser ones
    /// are quicker to write and read in the emulator).
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    every: std::time::Duration,
    /// The cell's cluster.
    #[arg(long, env = "STATEHOUSE_CLUSTER")]
    cluster: String,
    /// The tenants' resource name prefix.
    #[arg(long, env = "STATEHOUSE_PREFIX", default_value = "humangov")]
    prefix: String,
}

/// A steady load on one service, as ECS would report it.
pub struct Load<'a> {
    pub cluster: &'a str,
    pub service: &'a str,
    pub cpu_percent: f64,
    pub memory_percent: f64,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub every: TimeDelta,
}

/// Points per PutMetricData: small enough that no SDK compresses the request (which the
/// emulator cannot read).
const PER_CALL: usize = 20;

/// Writes the load's points, `every` apart from `from` up to `to`; returns how many.
pub async fn put(
    cloudwatch: &aws_sdk_cloudwatch::Client,
    load: &Load<'_>,
) -> anyhow::Result<usize> {
    let dims = [("ClusterName", load.cluster), ("ServiceName", load.service)]
        .map(|(n, v)| Dimension::builder().name(n).value(v).build());
    let mut data = Vec::new();
    let mut at = load.from;
    while at <= load.to {
        for (metric, value) in [
            ("CPUUtilization", load.cpu_percent),
            ("MemoryUtilization", load.memory_percent),
        ] {
            data.push(
                MetricDatum::builder()
                    .metric_name(metric)
                    .set_dimensions(Some(dims.to_vec()))
                    .timestamp(aws_smithy_types::DateTime::from_secs(at.timestamp()))
                    .value(value)
                    .unit(StandardUnit::Percent)
                    .build(),
            );
        }
        at += load.every.max(TimeDelta::seconds(1));
    }
    for batch in data.chunks(PER_CALL) {
        cloudwatch
            .put_metric_data()
            .namespace("AWS/ECS")
            .set_metric_data(Some(batch.to_vec()))
            .send()
            .await
            .context("cannot put the metric data")?;
    }
    Ok(data.len())
}

pub async fn run(args: PutMetricsArgs) -> anyhow::Result<()> {
    if std::env::var_os("AWS_ENDPOINT_URL").is_none() {
        return Err(Exit::usage(
            "AWS_ENDPOINT_URL is not set: this command is for the local emulator only (on AWS, ECS publishes these metrics)",
        )
        .into());
    }
    for (v, flag) in [(args.cpu, "--cpu"), (args.memory, "--memory")] {
        if !(0.0..=100.0).contains(&v) {
            return Err(
                Exit::usage(format!("{flag} is a percentage from 0 to 100, not {v}")).into(),
            );
        }
    }
    let aws = Aws::new(&Aws::load_config().await);
    let service = format!("{}-{}", args.prefix, args.name.as_str());
    let now = Utc::now();
    let span = |d: std::time::Duration| TimeDelta::from_std(d).unwrap_or(TimeDelta::days(2));
    let load = Load {
        cluster: &args.cluster,
        service: &service,
        cpu_percent: args.cpu,
        memory_percent: args.memory,
        from: now - span(args.over),
        to: now,
        every: span(args.every),
    };
    let n = put(&aws.cloudwatch, &load).await?;
    eprintln!("{n} points written for {service} in {}", args.cluster);
    Ok(())
}
