//! The shared platform the tenants are placed on, as the worker is told about it: made once
//! by terraform-modules/ (or `statehouse dev bootstrap` in the emulator).

use std::time::Duration;

use super::alarms::AlarmSettings;
use super::names::{Prefix, TenantNames};
use crate::domain::state::StateSlug;

/// One shared load balancer + cluster. An ALB holds at most 100 target groups, so a large
/// platform has several cells; a tenant stays in the cell it was placed in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell {
    pub name: String,
    pub cluster: String,
    /// The shared HTTPS listener the tenants' host rules go on.
    pub listener_arn: String,
    pub vpc_id: String,
    pub subnets: Vec<String>,
    pub security_groups: Vec<String>,
    /// The account and region the cell is in; every resource of its tenants is there.
    pub account: String,
    pub region: String,
    /// The shared role ECS uses to pull images and write logs, in the cell's account.
    pub execution_role_arn: String,
    /// The role the worker assumes to reach the cell, when it is in another account;
    /// `None` uses the process's own credentials.
    pub role_arn: Option<String>,
    /// The SNS topic the cell's tenants' alarms notify; `None`: the platform's topic when it
    /// is in the cell's account, else none.
    pub alarm_topic_arn: Option<String>,
}

impl Cell {
    pub fn names(&self, prefix: &Prefix, slug: StateSlug) -> TenantNames {
        TenantNames::new(prefix, slug, &self.account, &self.region)
    }

    pub fn table_arn(&self, table: &str) -> String {
        format!(
            "arn:aws:dynamodb:{}:{}:table/{table}",
            self.region, self.account
        )
    }

    /// The topic the cell's alarms notify (see [`Cell::alarm_topic_arn`]).
    pub fn alarm_topic<'a>(&'a self, platform_topic: Option<&'a str>) -> Option<&'a str> {
        match &self.alarm_topic_arn {
            Some(topic) => Some(topic),
            None => platform_topic.filter(|t| t.split(':').nth(4) == Some(self.account.as_str())),
        }
    }

    pub fn role_arn_of(&self, role: &str) -> String {
        format!("arn:aws:iam::{}:role/{role}", self.account)
    }
}

#[derive(Debug, Clone)]
pub struct Platform {
    pub prefix: Prefix,
    /// The account and region of the worker's own credentials (the home cell's, when the
    /// cells come from the environment); each cell has its own.
    pub account: String,
    pub region: String,
    /// Tenants answer on `https://{slug}.{base_domain}`.
    pub base_domain: String,
    /// The shared role ECS uses to pull images and write logs.
    pub execution_role_arn: String,
    pub log_retention_days: i32,
    /// A deployment not completed this long after ECS started it is reported as failed.
    pub deployment_timeout: Duration,
    /// Thresholds of every tenant's alarms, and where they notify.
    pub alarms: AlarmSettings,
    pub cells: Vec<Cell>,
}

impl Platform {
    /// The names of a tenant in the first cell.
    pub fn names(&self, slug: StateSlug) -> TenantNames {
        match self.cells.first() {
            Some(cell) => cell.names(&self.prefix, slug),
            None => TenantNames::new(&self.prefix, slug, &self.account, &self.region),
        }
    }

    pub fn cell(&self, name: &str) -> Option<&Cell> {
        self.cells.iter().find(|c| c.name == name)
    }

    pub fn host(&self, slug: StateSlug) -> String {
        format!("{slug}.{}", self.base_domain)
    }

    pub fn endpoint(&self, slug: StateSlug) -> String {
        format!("https://{}", self.host(slug))
    }
}
