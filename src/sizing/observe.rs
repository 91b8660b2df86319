//! The rightsizer's AWS reads, batched over many tenants: their services ten per
//! DescribeServices (the task count now, and whether a deployment is under way), their
//! CPU and memory in GetMetricData calls of one day each (a day of one-minute points of 35
//! tenants fills one answer page), and a cell's stopped tasks in pages of 100.

use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat};
use aws_sdk_ecs::types::{DesiredStatus, Service, Task};
use chrono::{DateTime, TimeDelta, Utc};

use super::{estimate::Sample, OomStop};
use crate::{
    aws::{error::sdk, Aws, AwsError},
    health::observe::{metric_data, time, Series},
};

/// The CPU and memory utilisation (percent of the task's size) of one service.
#[derive(Debug, Clone, Default)]
pub struct Utilisation {
    pub cpu: Vec<Sample>,
    pub memory: Vec<Sample>,
}

fn query(id: String, metric: &str, cluster: &str, service: &str) -> MetricDataQuery {
    let dim = |name: &str, value: &str| Dimension::builder().name(name).value(value).build();
    MetricDataQuery::builder()
        .id(id)
        .metric_stat(
            MetricStat::builder()
                .metric(
                    Metric::builder()
                        .namespace("AWS/ECS")
                        .metric_name(metric)
                        .dimensions(dim("ClusterName", cluster))
                        .dimensions(dim("ServiceName", service))
                        .build(),
                )
                .period(60)
                .stat("Maximum")
                .build(),
        )
        .return_data(true)
        .build()
}

fn samples(series: Option<&Series>) -> Vec<Sample> {
    series.map_or_else(Vec::new, |s| {
        s.timestamps
            .iter()
            .zip(&s.values)
            .map(|(at, value)| Sample {
                at: *at,
                value: *value,
            })
            .collect()
    })
}

/// Each (cluster, service)'s one-minute Maximum CPU and memory utilisation from `start` to
/// `end`, in order, read a day at a time for all of them at once.
pub async fn utilisation(
    aws: &Aws,
    services: &[(String, String)],
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<Vec<Utilisation>, AwsError> {
    let queries: Vec<MetricDataQuery> = services
        .iter()
        .enumerate()
        .flat_map(|(i, (cluster, service))| {
            [
                query(format!("c{i}"), "CPUUtilization", cluster, service),
                query(format!("m{i}"), "MemoryUtilization", cluster, service),
            ]
        })
        .collect();
    let mut found: Vec<Utilisation> = vec![Utilisation::default(); services.len()];
    let mut from = start;
    while from < end && !queries.is_empty() {
        let to = (from + TimeDelta::days(1)).min(end);
        let day = metric_data(aws, queries.clone(), from, to, true).await?;
        for (i, u) in found.iter_mut().enumerate() {
            u.cpu.extend(samples(day.get(&format!("c{i}"))));
            u.memory.extend(samples(day.get(&format!("m{i}"))));
        }
        from = to;
    }
    Ok(found)
}

/// Whether ECS is rolling out a deployment of the service, in words.
pub fn deploying(svc: &Service) -> Option<String> {
    let deployments = svc.deployments();
    if deployments.len() > 1 {
        return Some(format!("{} deployments", deployments.len()));
    }
    deployments
        .iter()
        .filter_map(|d| d.rollout_state())
        .find(|s| s.as_str() == "IN_PROGRESS")
        .map(|_| "the deployment is in progress".to_owned())
}

/// Tasks of the cluster that ECS stopped because a container ran out of memory, each with
/// its service's name. ECS keeps a stopped task visible for at least an hour.
pub async fn out_of_memory(aws: &Aws, cluster: &str) -> Result<Vec<(String, OomStop)>, AwsError> {
    let mut arns = Vec::new();
    let mut token = None;
    loop {
        let out = aws
            .ecs
            .list_tasks()
            .cluster(cluster)
            .desired_status(DesiredStatus::Stopped)
            .max_results(100)
            .set_next_token(token)
            .send()
            .await
            .map_err(sdk("ecs", "ListTasks"))?;
        arns.extend(out.task_arns().iter().cloned());
        token = out.next_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    let mut stops = Vec::new();
    for batch in arns.chunks(100) {
        let out = aws
            .ecs
            .describe_tasks()
            .cluster(cluster)
            .set_tasks(Some(batch.to_vec()))
            .send()
            .await
            .map_err(sdk("ecs", "DescribeTasks"))?;
        stops.extend(out.tasks().iter().filter_map(oom_stop));
    }
    Ok(stops)
}

/// The service and the stop, when ECS says the task ran out of memory.
pub fn oom_stop(task: &Task) -> Option<(String, OomStop)> {
    let service = task.group()?.strip_prefix("service:")?.to_owned();
    let oom = |reason: &str| reason.contains("OutOfMemory");
    let (container, reason) = task
        .containers()
        .iter()
        .find_map(|c| {
            c.reason()
                .filter(|r| oom(r))
                .map(|r| (c.name().unwrap_or("?").to_owned(), r.to_owned()))
        })
        .or_else(|| {
            task.stopped_reason()
                .filter(|r| oom(r))
                .map(|r| ("task".to_owned(), r.to_owned()))
        })?;
    let stop = OomStop {
        task_arn: task.task_arn()?.to_owned(),
        stopped_at: task.stopped_at().and_then(time),
        container,
        reason,
        memory: task.memory()?.parse().ok()?,
    };
    Some((service, stop))
}

#[cfg(test)]
mod tests {
    use aws_sdk_ecs::types::Container;

    use super::*;

    fn task(reason: Option<&str>, stopped_reason: &str) -> Task {
        let mut app = Container::builder().name("app").exit_code(137);
        if let Some(r) = reason {
            app = app.reason(r);
        }
        Task::builder()
            .task_arn("arn:aws:ecs:us-east-1:1:task/humangov/0f1e")
            .group("service:humangov-ohio")
            .memory("512")
            .stopped_reason(stopped_reason)
            .containers(Container::builder().name("nginx").build())
            .containers(app.build())
            .build()
    }

    #[test]
    fn a_container_killed_for_memory_is_an_out_of_memory_stop_of_its_service() {
        let t = task(
            Some("OutOfMemoryError: Container killed due to memory usage"),
            "Essential container in task exited",
        );
        let (service, stop) = oom_stop(&t).unwrap();
        assert_eq!(service, "humangov-ohio");
        assert_eq!(stop.container, "app");
        assert_eq!(stop.memory, 512);
        assert!(oom_stop(&task(None, "Essential container in task exited")).is_none());
        assert!(oom_stop(&task(None, "Scaling activity initiated by deployment")).is_none());
    }
}
