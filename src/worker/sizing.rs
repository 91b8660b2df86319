//! The rightsizer in the worker. Three duties, each claimed per cell so that one worker
//! does each for everyone:
//! - every `STATEHOUSE_SIZING_INTERVAL`, a recommendation for each tenant with sizing on,
//!   spread over the interval in slices (a tenant's slice comes from its id) and batched
//!   within a slice: one DescribeServices per ten tenants and one day of metrics per call;
//! - every `STATEHOUSE_SIZING_OOM_INTERVAL`, the cell's stopped tasks, for tasks that ran
//!   out of memory;
//! - on every tick, without an AWS call, the deployment of each sizing change that has not
//!   settled: a change `auto` made that fails is put back and sizing is frozen for a day.
//!
//! A recommendation and what `auto` does with it are concluded in one transaction that
//! holds the tenant's row; a change is an ordinary spec change (the next generation, an
//! event with the evidence, a NOTIFY), and the reconciler does the AWS work.

use std::{collections::HashMap, sync::Arc, time::Duration};

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use super::Worker;
use crate::{
    aws::Aws,
    db::{self, sizing::Resize},
    domain::{
        spec::{sizing::SizeDoc, SizingMode, TaskSize, TenantSpec},
        tenant::{Tenant, TenantStatus},
    },
    health::observe::services_named,
    metrics::Metrics,
    reconcile::platform::Platform,
    sizing::{
        defaults::{FREEZE, MAX_SLICES, TENANTS_PER_BATCH},
        estimate::{amounts, Sample},
        observe,
        policy::{self, Gate, Verdict},
        recommend::{self, Input},
        ChangeTrigger, OomStop, Recommendation, RecommendationStatus, SizingSettings,
    },
};

/// What the rightsizer works with.
pub struct Rightsizer<'a> {
    pub pool: &'a PgPool,
    pub aws: &'a Aws,
    pub platform: &'a Platform,
    pub settings: &'a SizingSettings,
    pub metrics: &'a Metrics,
}

/// What one round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoundReport {
    /// Tenants a recommendation was made for.
    pub recommended: usize,
    /// Tenants whose size was changed.
    pub changed: Vec<String>,
    /// Tenants left without an AWS call (off, paused, being deleted, not provisioned).
    pub skipped: usize,
}

pub(super) async fn run(worker: Arc<Worker>) {
    let settings = &worker.settings.sizing;
    let tick = (settings.interval.min(settings.oom_interval) / 10)
        .clamp(Duration::from_millis(100), Duration::from_secs(5));
    let r = Rightsizer {
        pool: &worker.pool,
        aws: &worker.aws,
        platform: &worker.platform,
        settings,
        metrics: &worker.metrics,
    };
    // Each cell's metrics and tasks are read with the clients that reach it.
    let in_cell = |cell: &str| Rightsizer {
        aws: worker.aws_for(cell),
        ..r
    };
    let cells: Vec<String> = worker
        .platform
        .cells
        .iter()
        .map(|c| c.name.clone())
        .collect();
    let mut sized: HashMap<String, usize> = HashMap::new();
    loop {
        for cell in &cells {
            let oom = format!("out-of-memory:{cell}");
            if worker.claim_round(&oom, settings.oom_interval).await {
                if let Err(e) = in_cell(cell).check_out_of_memory(cell, Utc::now()).await {
                    tracing::warn!(cell = %cell, error = %e, "out-of-memory check failed");
                }
            }
            let slice = settings.interval / slices(sized.get(cell).copied().unwrap_or(0)) as u32;
            if worker.claim_round(&format!("sizing:{cell}"), slice).await {
                match in_cell(cell).recommend_due(cell, Utc::now()).await {
                    Ok((n, report)) => {
                        sized.insert(cell.clone(), n);
                        tracing::debug!(cell = %cell, recommended = report.recommended, changed = ?report.changed, "sizing round finished");
                    }
                    Err(e) => tracing::warn!(cell = %cell, error = %e, "sizing round failed"),
                }
            }
        }
        if let Err(e) = r.settle(&cells, Utc::now()).await {
            tracing::warn!(error = %e, "cannot follow sizing changes; retrying");
        }
        tokio::time::sleep(tick).await;
    }
}

/// How many slices an interval is spread over for `n` tenants: enough that a slice's
/// metrics fill about one answer page a day, at most [`MAX_SLICES`].
pub fn slices(n: usize) -> usize {
    n.div_ceil(TENANTS_PER_BATCH).clamp(1, MAX_SLICES)
}

/// Whether the tenant's turn has come: its slice of the interval has begun since its last
/// recommendation (or it has none yet).
pub fn due(t: &Tenant, now: DateTime<Utc>, interval: Duration, slices: usize) -> bool {
    t.sizing
        .recommendation
        .as_ref()
        .is_none_or(|r| r.computed_at.timestamp_millis() < turn(t.id, now, interval, slices))
}

/// When the tenant's latest turn began, in milliseconds since the epoch: the last start of
/// its slice at or before `now`. Slice `k` of `slices` starts `k/slices` into each interval.
fn turn(id: Uuid, now: DateTime<Utc>, interval: Duration, slices: usize) -> i64 {
    let slices = slices.max(1);
    let interval_ms = (interval.as_millis() as i64).max(1);
    let phase = (id.as_u128() % slices as u128) as i64 * interval_ms / slices as i64;
    let since = now.timestamp_millis() - phase;
    since - since.rem_euclid(interval_ms) + phase
}

fn service_of(t: &Tenant) -> Option<(String, String)> {
    let s = &t.resources["service"];
    Some((
        s["cluster"].as_str()?.to_owned(),
        s["name"].as_str()?.to_owned(),
    ))
}

/// Why the tenant gets no AWS call for sizing now, if it does not.
fn not_read(t: &Tenant, spec: &TenantSpec) -> Option<&'static str> {
    if spec.sizing.mode == SizingMode::Off {
        return Some("sizing is off");
    }
    if t.paused_at.is_some() {
        return Some("paused: statehouse makes no AWS call for it");
    }
    if t.deletion_requested_at.is_some() {
        return Some("being deleted");
    }
    if t.observed_generation == 0 || service_of(t).is_none() {
        return Some("not provisioned yet");
    }
    None
}

impl Rightsizer<'_> {
    fn lookback(&self) -> TimeDelta {
        TimeDelta::from_std(self.settings.lookback).unwrap_or(TimeDelta::days(14))
    }

    /// The cell's tenants whose turn has come, recommended for in one batch; returns how
    /// many tenants of the cell have sizing on, and what the round did.
    pub async fn recommend_due(
        &self,
        cell: &str,
        now: DateTime<Utc>,
    ) -> Result<(usize, RoundReport), sqlx::Error> {
        let tenants = db::health::in_cell(self.pool, cell).await?;
        let on = tenants
            .iter()
            .filter(|t| t.spec.sizing.mode != SizingMode::Off)
            .count();
        let n = slices(on);
        let due: Vec<Tenant> = tenants
            .into_iter()
            .filter(|t| due(t, now, self.settings.interval, n))
            .collect();
        Ok((on, self.recommend(&due, now).await?))
    }

    /// A recommendation for each of `tenants` from the metrics, and what `auto` makes of
    /// it. Tenants that are off, paused, being deleted or not provisioned get no AWS call.
    pub async fn recommend(
        &self,
        tenants: &[Tenant],
        now: DateTime<Utc>,
    ) -> Result<RoundReport, sqlx::Error> {
        let mut report = RoundReport::default();
        let mut read = Vec::new();
        for t in tenants {
            let Ok(spec) = TenantSpec::validate(t.spec.clone(), None) else {
                continue;
            };
            match not_read(t, &spec) {
                Some(why) => {
                    report.skipped += 1;
                    self.note(t, &spec, why).await?;
                }
                None => read.push((t, spec)),
            }
        }
        if read.is_empty() {
            return Ok(report);
        }
        let names: Vec<(String, String)> = read.iter().filter_map(|(t, _)| service_of(t)).collect();
        let pairs = names.iter().map(|(c, s)| (c.as_str(), s.as_str()));
        let (services, used) = tokio::join!(
            services_named(self.aws, pairs),
            observe::utilisation(self.aws, &names, now - self.lookback(), now),
        );
        let (services, used) = match (services, used) {
            (Ok(s), Ok(u)) => (s, u),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(error = %e, tenants = read.len(), "cannot read the tenants' services or metrics; they are tried again next round");
                return Ok(report);
            }
        };
        let ids: Vec<Uuid> = read.iter().map(|(t, _)| t.id).collect();
        let sizes = db::sizing::sizes(self.pool, &ids).await?;
        for (((t, spec), name), used) in read.iter().zip(&names).zip(used) {
            let history = sizes.get(&t.id).map(Vec::as_slice).unwrap_or_default();
            let cpu_sizes: Vec<(DateTime<Utc>, f64)> = history
                .iter()
                .map(|(at, c, _)| (*at, f64::from(*c)))
                .collect();
            let memory_sizes: Vec<(DateTime<Utc>, f64)> = history
                .iter()
                .map(|(at, _, m)| (*at, f64::from(*m)))
                .collect();
            let or_now = |mut s: Vec<(DateTime<Utc>, f64)>, v: u32| {
                if s.is_empty() {
                    s.push((now, f64::from(v)));
                }
                s
            };
            let cpu: Vec<Sample> = amounts(&used.cpu, &or_now(cpu_sizes, spec.size.cpu()));
            let memory: Vec<Sample> =
                amounts(&used.memory, &or_now(memory_sizes, spec.size.memory()));
            let svc = services.get(name);
            let input = Input {
                spec,
                cpu: &cpu,
                memory: &memory,
                tasks: svc.and_then(|s| u32::try_from(s.desired_count()).ok()),
                out_of_memory: &t.sizing.out_of_memory,
                now,
                lookback: self.lookback(),
                prices: &self.settings.prices,
            };
            let rec = recommend::from_metrics(&input);
            let deploying = svc.and_then(observe::deploying);
            if self.conclude(t.id, rec, deploying, Vec::new(), now).await? {
                report.changed.push(t.name.clone());
            }
            report.recommended += 1;
        }
        Ok(report)
    }

    /// Keeps why a tenant got no recommendation this round, when that is news.
    async fn note(&self, t: &Tenant, spec: &TenantSpec, why: &str) -> Result<(), sqlx::Error> {
        let mut next = t.sizing.clone();
        if spec.sizing.mode == SizingMode::Off {
            next.recommendation = None;
            next.previous = None;
        }
        next.action = Some(why.to_owned());
        if next != t.sizing {
            let mut conn = self.pool.acquire().await?;
            db::sizing::set(&mut conn, t.id, &next).await?;
        }
        Ok(())
    }

    /// Records `rec` on the tenant and, in `auto`, applies it when the guards allow; true
    /// when the size was changed. Nothing is written when the tenant's size changed since
    /// the recommendation was computed (the next round starts from the new size).
    async fn conclude(
        &self,
        id: Uuid,
        rec: Recommendation,
        deploying: Option<String>,
        stops: Vec<OomStop>,
        now: DateTime<Utc>,
    ) -> Result<bool, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let Some(t) = db::tenants::lock_id(&mut tx, id).await? else {
            return Ok(false);
        };
        let Ok(spec) = TenantSpec::validate(t.spec.clone(), None) else {
            return Ok(false);
        };
        if !t.is_live() || SizeDoc::from(spec.size) != rec.current {
            return Ok(false);
        }
        let rollout = db::rollouts::active_for_tenant(&mut *tx, t.id).await?;
        let gate = Gate {
            mode: spec.sizing.mode,
            status: t.status,
            paused: t.paused_at.is_some(),
            deleting: t.deletion_requested_at.is_some(),
            rollout,
            deploying,
        };
        let verdict = policy::decide(&rec, &t.sizing, &gate, now);
        let mut next = t.sizing.clone();
        let news = next.recommended() != Some((rec.direction, rec.size().map(SizeDoc::from)));
        let oldest = now - self.lookback();
        next.out_of_memory.extend(stops);
        next.out_of_memory
            .retain(|o| o.stopped_at.is_none_or(|at| at >= oldest));
        next.previous = rec.size().map(SizeDoc::from);
        next.action = Some(verdict.words());
        next.recommendation = Some(rec.clone());
        self.metrics.sizing_recommended(match rec.status {
            RecommendationStatus::Recommended => rec.direction.as_str(),
            RecommendationStatus::NotEnoughData => "not_enough_data",
        });
        if news && rec.status == RecommendationStatus::Recommended {
            let to = rec.size().map_or_else(String::new, |s| s.to_string());
            db::events::append(
                &mut tx,
                &t,
                db::events::NewEvent {
                    actor: db::sizing::ACTOR,
                    action: "sizing.recommended",
                    message: format!(
                        "recommends {to} ({}): {}",
                        rec.direction.as_str(),
                        rec.reason
                    ),
                    details: json!({ "recommendation": rec }),
                },
            )
            .await?;
        }
        let changed = match (verdict, rec.change()) {
            (Verdict::Apply(trigger), Some(to)) => {
                let r = Resize {
                    to,
                    trigger,
                    actor: db::sizing::ACTOR,
                    reason: &rec.reason,
                    evidence: json!(rec.evidence),
                };
                db::sizing::resize(&mut tx, &t, &spec, &mut next, r, now).await?;
                self.metrics.sizing_changed(trigger.as_str());
                true
            }
            _ => {
                db::sizing::set(&mut tx, t.id, &next).await?;
                false
            }
        };
        tx.commit().await?;
        Ok(changed)
    }

    /// Reads the cell's stopped tasks and, for each task that ran out of memory at its
    /// tenant's present size, recommends (and in `auto` applies) more memory at once.
    pub async fn check_out_of_memory(
        &self,
        cell: &str,
        now: DateTime<Utc>,
    ) -> Result<RoundReport, sqlx::Error> {
        let mut report = RoundReport::default();
        let Some(cluster) = self.platform.cell(cell).map(|c| c.cluster.clone()) else {
            return Ok(report);
        };
        let tenants: Vec<(Tenant, TenantSpec)> = db::health::in_cell(self.pool, cell)
            .await?
            .into_iter()
            .filter_map(|t| {
                let spec = TenantSpec::validate(t.spec.clone(), None).ok()?;
                not_read(&t, &spec).is_none().then_some((t, spec))
            })
            .collect();
        if tenants.is_empty() {
            return Ok(report);
        }
        let stops = match observe::out_of_memory(self.aws, &cluster).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(cell, error = %e, "cannot read the cell's stopped tasks");
                return Ok(report);
            }
        };
        for (t, spec) in &tenants {
            let service = service_of(t).map(|(_, s)| s);
            let known = |o: &OomStop| {
                t.sizing
                    .out_of_memory
                    .iter()
                    .any(|k| k.task_arn == o.task_arn)
            };
            let new: Vec<OomStop> = stops
                .iter()
                .filter(|(s, o)| Some(s) == service.as_ref() && !known(o))
                .map(|(_, o)| o.clone())
                .collect();
            // Only a stop at the present size calls for more: one at an older, smaller
            // size was already answered.
            let Some(worst) = new
                .iter()
                .filter(|o| o.memory >= spec.size.memory())
                .max_by_key(|o| o.stopped_at)
                .cloned()
            else {
                if !new.is_empty() {
                    let mut next = t.sizing.clone();
                    next.out_of_memory.extend(new);
                    let mut conn = self.pool.acquire().await?;
                    db::sizing::set(&mut conn, t.id, &next).await?;
                }
                continue;
            };
            let input = Input {
                spec,
                cpu: &[],
                memory: &[],
                tasks: None,
                out_of_memory: &t.sizing.out_of_memory,
                now,
                lookback: self.lookback(),
                prices: &self.settings.prices,
            };
            let rec = recommend::after_oom(&input, &worst);
            if self.conclude(t.id, rec, None, new, now).await? {
                report.changed.push(t.name.clone());
            }
            report.recommended += 1;
        }
        Ok(report)
    }

    /// Follows each unsettled sizing change to its end: deployed, overtaken by another
    /// change, or failed. A failed change the rightsizer made is put back, and sizing is
    /// frozen for the tenant; a person's failed change is left to them.
    pub async fn settle(
        &self,
        cells: &[String],
        now: DateTime<Utc>,
    ) -> Result<Vec<String>, sqlx::Error> {
        let mut reverted = Vec::new();
        for t in db::sizing::unsettled(self.pool, cells).await? {
            if self.settle_one(t.id, now).await? {
                reverted.push(t.name.clone());
            }
        }
        Ok(reverted)
    }

    async fn settle_one(&self, id: Uuid, now: DateTime<Utc>) -> Result<bool, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let Some(t) = db::tenants::lock_id(&mut tx, id).await? else {
            return Ok(false);
        };
        let Some(change) = t.sizing.last_change.clone().filter(|c| !c.settled) else {
            return Ok(false);
        };
        let mut next = t.sizing.clone();
        let size = SizeDoc {
            cpu: t.spec.cpu,
            memory: t.spec.memory,
        };
        let outcome = if !t.is_live() || t.deletion_requested_at.is_some() {
            "the tenant is being deleted".to_owned()
        } else if size != change.to {
            format!("overtaken by generation {}, at another size", t.generation)
        } else if t.observed_generation >= change.generation && t.status == TenantStatus::Ready {
            format!("deployed (ready with generation {})", t.observed_generation)
        } else if t.status == TenantStatus::Failed && t.paused_at.is_none() {
            let error = t
                .last_error
                .clone()
                .unwrap_or_else(|| "see its conditions".into());
            // Only this change's own generation failing is this change failing.
            if change.trigger.is_automatic() && t.generation == change.generation {
                let reverted = self.revert(&mut tx, &t, &change, &error, now).await?;
                tx.commit().await?;
                return Ok(reverted);
            }
            format!("generation {} failed: {error}", t.generation)
        } else {
            return Ok(false);
        };
        if let Some(c) = next.last_change.as_mut() {
            c.settled = true;
            c.outcome = Some(outcome);
        }
        db::sizing::set(&mut tx, t.id, &next).await?;
        tx.commit().await?;
        Ok(false)
    }

    /// Puts the size before `change` back and freezes sizing for [`FREEZE`].
    async fn revert(
        &self,
        tx: &mut sqlx::PgConnection,
        t: &Tenant,
        change: &crate::sizing::Change,
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, sqlx::Error> {
        let (Ok(spec), Ok(back)) = (
            TenantSpec::validate(t.spec.clone(), None),
            TaskSize::new(change.from.cpu, change.from.memory),
        ) else {
            return Ok(false);
        };
        let to = TaskSize::new(change.to.cpu, change.to.memory)
            .map_or_else(|_| "?".into(), |s| s.to_string());
        let why = format!(
            "the deployment of {to} (generation {}) failed: {error}",
            change.generation
        );
        let mut next = t.sizing.clone();
        next.frozen_until = Some(now + FREEZE);
        next.frozen_reason = Some(why.clone());
        let r = Resize {
            to: back,
            trigger: ChangeTrigger::Revert,
            actor: db::sizing::ACTOR,
            reason: &format!("back to the size before: {why}"),
            evidence: json!({ "failed_change": change }),
        };
        let updated = db::sizing::resize(&mut *tx, t, &spec, &mut next, r, now).await?;
        let until = now + FREEZE;
        db::events::append(
            &mut *tx,
            &updated,
            db::events::NewEvent {
                actor: db::sizing::ACTOR,
                action: "sizing.frozen",
                message: format!(
                    "sizing frozen until {}: {why}",
                    until.format("%Y-%m-%d %H:%M UTC")
                ),
                details: json!({ "until": until, "failed_change": change, "error": error }),
            },
        )
        .await?;
        self.metrics.sizing_changed(ChangeTrigger::Revert.as_str());
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fleet_is_spread_over_more_slices_as_it_grows_up_to_the_cap() {
        assert_eq!(slices(0), 1);
        assert_eq!(slices(1), 1);
        assert_eq!(slices(TENANTS_PER_BATCH), 1);
        assert_eq!(slices(TENANTS_PER_BATCH + 1), 2);
        assert_eq!(slices(50 * TENANTS_PER_BATCH), MAX_SLICES);
    }

    #[test]
    fn each_tenant_has_one_turn_an_interval_at_its_slices_offset() {
        let hour = Duration::from_secs(3600);
        let now: DateTime<Utc> = "2026-12-06T10:20:00Z".parse().unwrap();
        let ten = now.timestamp_millis() / 3_600_000 * 3_600_000;
        // Ids whose slice of four is 0, 1, 2 and 3: offsets of 0, 15, 30 and 45 minutes.
        let starts: Vec<i64> = (0..4u128)
            .map(|k| turn(Uuid::from_u128(k + 400), now, hour, 4))
            .collect();
        let minute = 60_000;
        assert_eq!(
            starts,
            [ten, ten + 15 * minute, ten - 30 * minute, ten - 15 * minute],
            "10:20 is after slices 0 and 1 began this hour, before 2 and 3 do"
        );
        for id in (0..40u128).map(Uuid::from_u128) {
            let t = turn(id, now, hour, 4);
            assert!(t <= now.timestamp_millis() && now.timestamp_millis() - t < 3_600_000);
            // A minute later it is still the same turn; an interval later the next.
            assert_eq!(turn(id, now + TimeDelta::minutes(1), hour, 4), t);
            assert_eq!(turn(id, now + TimeDelta::hours(1), hour, 4), t + 3_600_000);
        }
    }
}
