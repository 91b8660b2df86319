//! One tenant's health read from AWS now, for `GET /v1/tenants/{name}/health`: the same
//! signals as the worker's snapshot, plus the service's last events and the last hour's
//! metrics. Each tenant's reading is shared for [`TTL`]: any number of requests in that
//! time, concurrent ones included, make one round of AWS calls.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{
    observe::{self, Series, Subject},
    snapshot, Health, Window,
};
use crate::{aws::Aws, domain::tenant::Tenant};

/// How long one reading answers for a tenant.
pub const TTL: Duration = Duration::from_secs(10);

/// The service events a reading carries, newest first.
const EVENTS: usize = 10;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LiveHealth {
    pub tenant: String,
    /// When AWS was asked; a reading is reused for up to 10 seconds.
    pub read_at: DateTime<Utc>,
    /// Rolled up from what AWS said at `read_at`, as the worker's snapshot is.
    pub health: Health,
    /// The ECS service's last events, newest first.
    pub events: Vec<ServiceEvent>,
    /// The last hour, one point a minute: `requests`, `errors_5xx`, `cpu_percent`,
    /// `memory_percent` and `latency_p90_seconds`.
    pub series: BTreeMap<String, MetricSeries>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ServiceEvent {
    pub at: Option<DateTime<Utc>>,
    pub message: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct MetricSeries {
    pub timestamps: Vec<DateTime<Utc>>,
    pub values: Vec<f64>,
    /// Why the series could not be read, if it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
}

impl From<Series> for MetricSeries {
    fn from(s: Series) -> Self {
        Self {
            timestamps: s.timestamps,
            values: s.values,
            unavailable: None,
        }
    }
}

impl MetricSeries {
    fn unavailable(reason: String) -> Self {
        Self {
            unavailable: Some(reason),
            ..Self::default()
        }
    }
}

struct Entry {
    made: Instant,
    reading: OnceCell<Arc<LiveHealth>>,
}

/// The AWS clients and each tenant incarnation's latest reading.
pub struct Reader {
    aws: Aws,
    /// The clients of cells in other accounts or regions, by cell.
    cell_aws: HashMap<String, Aws>,
    ttl: Duration,
    entries: Mutex<HashMap<Uuid, Arc<Entry>>>,
}

impl Reader {
    pub fn new(aws: Aws) -> Self {
        Self::with_ttl(aws, TTL)
    }

    pub fn with_ttl(aws: Aws, ttl: Duration) -> Self {
        Self {
            aws,
            cell_aws: HashMap::new(),
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Reads the tenants of these cells with their own clients.
    pub fn with_cells(mut self, cell_aws: HashMap<String, Aws>) -> Self {
        self.cell_aws = cell_aws;
        self
    }

    /// The tenant's reading: a fresh one, or one made less than the TTL ago.
    pub async fn read(&self, tenant: &Tenant) -> Arc<LiveHealth> {
        let entry = {
            let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
            entries.retain(|_, e| e.made.elapsed() < self.ttl);
            entries
                .entry(tenant.id)
                .or_insert_with(|| {
                    Arc::new(Entry {
                        made: Instant::now(),
                        reading: OnceCell::new(),
                    })
                })
                .clone()
        };
        entry
            .reading
            .get_or_init(|| async {
                let aws = self.cell_aws.get(&tenant.cell).unwrap_or(&self.aws);
                Arc::new(read(aws, tenant).await)
            })
            .await
            .clone()
    }
}

async fn read(aws: &Aws, tenant: &Tenant) -> LiveHealth {
    let now = Utc::now();
    let mut live = LiveHealth {
        tenant: tenant.name.clone(),
        read_at: now,
        health: Health::unknown("", Some(&tenant.health)),
        events: Vec::new(),
        series: BTreeMap::new(),
    };
    if tenant.paused_at.is_some() {
        live.health.reason = "paused: statehouse makes no AWS call for it".into();
        return live;
    }
    let subject = match Subject::from_resources(&tenant.name, &tenant.resources) {
        Ok(s) => s,
        Err(missing) => {
            live.health.reason = format!("not provisioned yet: {missing}");
            return live;
        }
    };
    let start = now - TimeDelta::hours(1);
    let subjects = std::slice::from_ref(&subject);
    let (services, alarms, targets, series, latency) = tokio::join!(
        observe::services(aws, subjects),
        observe::alarms_by_prefix(aws, &subject.alarm_prefix),
        observe::target_health(aws, &subject.target_group_arn),
        observe::series(aws, &subject, start, now),
        observe::latency_p90(aws, &subject, start, now),
    );
    let window = match &series {
        Ok(all) => last_window(all, now),
        Err(e) => Window::unavailable(observe::WINDOW_SECONDS, e.to_string()),
    };
    match series {
        Ok(all) => live
            .series
            .extend(all.into_iter().map(|(k, s)| (k.to_owned(), s.into()))),
        Err(e) => {
            for key in ["requests", "errors_5xx", "cpu_percent", "memory_percent"] {
                live.series
                    .insert(key.to_owned(), MetricSeries::unavailable(e.to_string()));
            }
        }
    }
    live.series.insert(
        "latency_p90_seconds".to_owned(),
        latency.map_or_else(|e| MetricSeries::unavailable(e.to_string()), Into::into),
    );
    let observed = (|| {
        let services = services.map_err(|e| e.to_string())?;
        let alarms = alarms.map_err(|e| e.to_string())?;
        let targets = targets.map_err(|e| e.to_string())?;
        let service = services.get(&(subject.cluster.clone(), subject.service.clone()));
        live.events = service
            .map(|svc| {
                svc.events()
                    .iter()
                    .take(EVENTS)
                    .map(|e| ServiceEvent {
                        at: e.created_at().and_then(observe::time),
                        message: e.message().unwrap_or_default().to_owned(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok::<_, String>(observe::observation(
            &subject,
            service,
            targets,
            &alarms,
            Some(window),
        ))
    })();
    live.health = match observed {
        Ok(o) => snapshot(o, subject.target_group(), now, &tenant.health),
        Err(reason) => Health::unknown(
            format!("the observation failed: {reason}"),
            Some(&tenant.health),
        ),
    };
    live
}

/// The last five minutes of the hour's series, summed up as the worker's window is.
fn last_window(all: &[(&'static str, Series)], now: DateTime<Utc>) -> Window {
    let from = now - observe::WINDOW;
    Window::summarise(observe::WINDOW_SECONDS, |key| {
        let s = &all.iter().find(|(k, _)| *k == key)?.1;
        Some(
            s.timestamps
                .iter()
                .zip(&s.values)
                .filter(|(t, _)| **t >= from)
                .map(|(_, v)| *v)
                .collect(),
        )
    })
}
