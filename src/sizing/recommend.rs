//! A recommendation from what the service used, or from a task stopped out of memory.
//!
//! **The horizontal conflict.** A tenant's service scales out on CPU (target tracking at
//! 60 %): while it runs between `min_count` and `max_count`, its CPU utilisation is what
//! the horizontal scaler steers it to, not what a task needs, and a vertical CPU change
//! would fight it. So CPU follows the estimate only where horizontal scaling has no say:
//! it grows only while the service sits at `max_count` (no more tasks to add) and shrinks
//! only at `min_count` (none to take away); with `min_count == max_count` both. Memory is
//! not what the service scales on and always follows the estimate. A CPU change that
//! Fargate's pairs force with a memory change is made.

use chrono::{DateTime, TimeDelta, Utc};

use super::{
    defaults::{
        CPU_PERCENTILE, DOWNSIZE_MIN_SAVING, HALF_LIFE, MARGIN, MIN_DATA, OOM_RAISE_FACTOR,
        OOM_RAISE_MIB, STALE_DATA,
    },
    estimate::{self, Sample},
    fit::{cents, smallest_fit},
    DataWindow, Direction, Evidence, MonthlyCost, OomStop, Prices, Recommendation,
    RecommendationStatus, TaskCount, Trigger, Usage,
};
use crate::domain::spec::{TaskSize, TenantSpec};

/// What one tenant's recommendation is made from.
pub struct Input<'a> {
    pub spec: &'a TenantSpec,
    /// CPU units used, one sample a minute.
    pub cpu: &'a [Sample],
    /// MiB used, one sample a minute.
    pub memory: &'a [Sample],
    /// The service's desired count now (autoscaling's, within the spec's bounds); the
    /// spec's `desired_count` when the service was not read.
    pub tasks: Option<u32>,
    /// Out-of-memory stops within the lookback: memory never goes below what they needed.
    pub out_of_memory: &'a [OomStop],
    pub now: DateTime<Utc>,
    pub lookback: TimeDelta,
    pub prices: &'a Prices,
}

impl Input<'_> {
    fn tasks(&self) -> TaskCount {
        let c = self.spec.counts;
        TaskCount {
            desired: self.tasks.unwrap_or(c.desired()),
            min: c.min(),
            max: c.max(),
        }
    }

    fn cost(&self, to: Option<TaskSize>) -> MonthlyCost {
        let tasks = self.tasks().desired.max(1);
        MonthlyCost {
            currency: "USD".into(),
            tasks,
            current: self.prices.monthly(self.spec.size, tasks),
            recommended: to.map(|s| self.prices.monthly(s, tasks)),
        }
    }

    fn recommendation(
        &self,
        to: Option<TaskSize>,
        trigger: Trigger,
        reason: String,
        evidence: Evidence,
    ) -> Recommendation {
        let current = self.spec.size;
        Recommendation {
            status: if to.is_some() {
                RecommendationStatus::Recommended
            } else {
                RecommendationStatus::NotEnoughData
            },
            direction: to.map_or(Direction::None, |to| Direction::of(current, to)),
            cpu: to.map(|s| s.cpu()),
            memory: to.map(|s| s.memory()),
            current: current.into(),
            trigger,
            reason,
            evidence,
            computed_at: self.now,
            monthly_cost: self.cost(to),
        }
    }
}

/// The memory a task stopped out of memory at `memory` MiB would have needed at least.
pub fn after_oom_memory(memory: u32) -> f64 {
    (f64::from(memory) + f64::from(OOM_RAISE_MIB)).max(f64::from(memory) * OOM_RAISE_FACTOR)
}

fn hours(d: TimeDelta) -> f64 {
    d.num_seconds() as f64 / 3600.0
}

fn span_words(hours: f64) -> String {
    if hours >= 48.0 {
        format!("{:.1} days", hours / 24.0)
    } else {
        format!("{hours:.1} h")
    }
}

/// The recommendation the metrics make.
pub fn from_metrics(i: &Input<'_>) -> Recommendation {
    let current = i.spec.size;
    let (cpu_span, mem_span) = (estimate::span(i.cpu), estimate::span(i.memory));
    let first = cpu_span.zip(mem_span).map(|(c, m)| c.0.max(m.0));
    let last = cpu_span.zip(mem_span).map(|(c, m)| c.1.min(m.1));
    let covered = first.zip(last).map_or(TimeDelta::zero(), |(f, l)| l - f);
    let mut evidence = Evidence {
        cpu_samples: i.cpu.len() as u32,
        memory_samples: i.memory.len() as u32,
        window: DataWindow {
            lookback_hours: hours(i.lookback),
            hours: hours(covered),
            first,
            last,
        },
        tasks: Some(i.tasks()),
        ..Evidence::default()
    };
    let stale = last.is_some_and(|l| i.now - l > STALE_DATA);
    if covered < MIN_DATA || stale {
        let reason = match last {
            Some(l) if stale => format!(
                "not enough data: no metrics in the last {} h (the newest is from {}); the service reports nothing while no task runs",
                STALE_DATA.num_hours(),
                l.format("%Y-%m-%d %H:%M UTC")
            ),
            _ => format!(
                "not enough data: {} of metrics ({} CPU and {} memory samples) in the last {}; a recommendation needs {} h",
                span_words(hours(covered)),
                i.cpu.len(),
                i.memory.len(),
                span_words(hours(i.lookback)),
                MIN_DATA.num_hours()
            ),
        };
        return i.recommendation(None, Trigger::Metrics, reason, evidence);
    }
    let percent = |amount: f64, of: u32| 100.0 * amount / f64::from(of);
    let cpu_p90 = estimate::percentile(i.cpu, CPU_PERCENTILE, i.now, HALF_LIFE).unwrap_or(0.0);
    let peaks = estimate::daily_peaks(i.memory, i.now);
    let memory_peak = peaks.iter().copied().fold(0.0, f64::max);
    let oom_floor = i
        .out_of_memory
        .iter()
        .map(|o| after_oom_memory(o.memory))
        .fold(0.0, f64::max);
    let cpu_need = cpu_p90 * MARGIN;
    let memory_need = (memory_peak * MARGIN).max(oom_floor);
    evidence.cpu_p90 = Some(Usage {
        amount: round(cpu_p90),
        percent_of_current: round(percent(cpu_p90, current.cpu())),
    });
    evidence.memory_peak = Some(Usage {
        amount: round(memory_peak),
        percent_of_current: round(percent(memory_peak, current.memory())),
    });
    evidence.memory_daily_peaks = peaks.iter().map(|p| round(*p)).collect();
    evidence.cpu_target = Some(round(cpu_need));
    evidence.memory_target = Some(round(memory_need));
    let (cpu_wanted, held) = horizontal(cpu_need, current, i.tasks());
    evidence.cpu_held = held;
    let bounds = &i.spec.sizing;
    let grows = cpu_wanted.clamp(f64::from(bounds.min.cpu()), f64::from(bounds.max.cpu()))
        > f64::from(current.cpu())
        || memory_need.clamp(
            f64::from(bounds.min.memory()),
            f64::from(bounds.max.memory()),
        ) > f64::from(current.memory());
    // An upsize takes nothing away: a smaller part waits for a downsize of its own.
    let to = if grows {
        smallest_fit(
            cpu_wanted.max(f64::from(current.cpu())),
            memory_need.max(f64::from(current.memory())),
            bounds,
            i.prices,
        )
    } else {
        smallest_fit(cpu_wanted, memory_need, bounds, i.prices)
    };
    let saving = 1.0 - i.prices.hourly(to) / i.prices.hourly(current);
    let marginal = Direction::of(current, to) == Direction::Down
        && saving < DOWNSIZE_MIN_SAVING
        && bounds.holds(current);
    let to = if marginal { current } else { to };
    let need = format!(
        "CPU p90 {:.0} units ({:.0}% of {}) and a memory peak of {:.0} MiB ({:.0}% of {}) over {} need {:.0} units and {:.0} MiB with the {:.0}% margin",
        cpu_p90,
        percent(cpu_p90, current.cpu()),
        current.cpu(),
        memory_peak,
        percent(memory_peak, current.memory()),
        current.memory(),
        span_words(hours(covered)),
        cpu_need,
        memory_need,
        (MARGIN - 1.0) * 100.0
    );
    let mut reason = match Direction::of(current, to) {
        Direction::Up => format!("upsize: {need}; {to} is the smallest Fargate size that holds them"),
        Direction::Down => format!(
            "downsize: {need}; {to} holds them for {:.0}% less",
            saving * 100.0
        ),
        Direction::None if marginal => format!(
            "keep {current}: {need}; a smaller size would save only {:.0}% (a downsize must save {:.0}%)",
            saving * 100.0,
            DOWNSIZE_MIN_SAVING * 100.0
        ),
        Direction::None => format!("keep {current}: {need}, which it holds"),
    };
    if oom_floor > memory_peak * MARGIN {
        reason.push_str(&format!(
            "; memory stays at least {oom_floor:.0} MiB after a task ran out of memory"
        ));
    }
    if let Some(why) = &evidence.cpu_held {
        reason.push_str("; ");
        reason.push_str(why);
    }
    i.recommendation(Some(to), Trigger::Metrics, reason, evidence)
}

/// The CPU to size for, and why it is held at the current size when it is.
fn horizontal(cpu_need: f64, current: TaskSize, tasks: TaskCount) -> (f64, Option<String>) {
    let now = f64::from(current.cpu());
    let bounds = format!(
        "{} running, min_count {}, max_count {}",
        tasks.desired, tasks.min, tasks.max
    );
    if cpu_need > now && tasks.desired < tasks.max {
        let why = format!(
            "CPU kept at {now}: horizontal scaling adds tasks on CPU ({bounds}); CPU grows only at max_count"
        );
        return (now, Some(why));
    }
    if cpu_need < now && tasks.desired > tasks.min {
        let why = format!(
            "CPU kept at {now}: horizontal scaling removes tasks on CPU ({bounds}); CPU shrinks only at min_count"
        );
        return (now, Some(why));
    }
    (cpu_need, None)
}

fn round(v: f64) -> f64 {
    cents(v)
}

/// The recommendation a task stopped out of memory at the current size makes: memory up by
/// the larger of 128 MiB and a fifth, at once.
pub fn after_oom(i: &Input<'_>, stop: &OomStop) -> Recommendation {
    let current = i.spec.size;
    let need = after_oom_memory(stop.memory).max(f64::from(current.memory()));
    let to = smallest_fit(f64::from(current.cpu()), need, &i.spec.sizing, i.prices);
    let evidence = Evidence {
        memory_target: Some(round(need)),
        tasks: Some(i.tasks()),
        out_of_memory: Some(stop.clone()),
        ..Evidence::default()
    };
    let what = format!(
        "task {} stopped: {} ({} at {} MiB)",
        stop.task_arn.rsplit('/').next().unwrap_or(&stop.task_arn),
        stop.reason,
        stop.container,
        stop.memory
    );
    let reason = if to == current {
        format!(
            "{what}; it needs at least {need:.0} MiB, but sizing.max.memory is {}: raise the bound",
            i.spec.sizing.max.memory()
        )
    } else {
        format!("{what}; memory up to at least {need:.0} MiB at once: {to}")
    };
    i.recommendation(Some(to), Trigger::OutOfMemory, reason, evidence)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::domain::spec::{sizing::SizeDoc, SizingDoc, SizingMode, SpecDoc};

    fn spec(cpu: u32, memory: u32, counts: (u32, u32, u32)) -> TenantSpec {
        TenantSpec::validate(
            SpecDoc {
                app_image: "humangov/app:1".into(),
                nginx_image: "nginx:1.27".into(),
                cpu,
                memory,
                min_count: counts.0,
                desired_count: counts.1,
                max_count: counts.2,
                env: BTreeMap::new(),
                sizing: SizingDoc {
                    mode: SizingMode::Auto,
                    ..SizingDoc::default()
                },
            },
            None,
        )
        .unwrap()
    }

    fn series(now: DateTime<Utc>, days: f64, value: f64) -> Vec<Sample> {
        let minutes = (days * 1440.0) as i64;
        (0..=minutes)
            .step_by(10)
            .map(|m| Sample {
                at: now - TimeDelta::minutes(m),
                value,
            })
            .collect()
    }

    fn run(s: &TenantSpec, days: f64, cpu: f64, memory: f64) -> Recommendation {
        let now = Utc::now();
        let p = Prices::default();
        let (c, m) = (series(now, days, cpu), series(now, days, memory));
        from_metrics(&Input {
            spec: s,
            cpu: &c,
            memory: &m,
            tasks: None,
            out_of_memory: &[],
            now,
            lookback: TimeDelta::days(14),
            prices: &p,
        })
    }

    #[test]
    fn less_than_a_day_of_data_is_not_enough_and_says_how_much_there_is() {
        let r = run(&spec(256, 512, (1, 1, 1)), 0.25, 250.0, 500.0);
        assert_eq!(r.status, RecommendationStatus::NotEnoughData);
        assert_eq!((r.cpu, r.memory), (None, None));
        assert!(
            r.reason.starts_with("not enough data: 6.0 h"),
            "{}",
            r.reason
        );
        assert_eq!(r.evidence.cpu_samples, 37);
    }

    #[test]
    fn a_busy_service_at_its_task_ceiling_is_upsized() {
        let r = run(&spec(256, 512, (1, 1, 1)), 2.0, 250.0, 480.0);
        assert_eq!(r.direction, Direction::Up);
        // 250 × 1.15 = 287.5 units, 480 × 1.15 = 552 MiB.
        assert_eq!((r.cpu, r.memory), (Some(512), Some(1024)));
        assert_eq!(r.monthly_cost.current, 9.01);
        assert_eq!(r.monthly_cost.recommended, Some(18.02));
        assert!(
            r.reason
                .starts_with("upsize: CPU p90 250 units (98% of 256)"),
            "{}",
            r.reason
        );
    }

    #[test]
    fn cpu_is_held_while_horizontal_scaling_has_room_and_memory_still_moves() {
        // Between min_count and max_count: CPU stays; memory grows.
        let r = run(&spec(256, 512, (1, 1, 4)), 2.0, 250.0, 900.0);
        assert_eq!((r.cpu, r.memory), (Some(256), Some(2048)));
        assert!(r
            .evidence
            .cpu_held
            .as_deref()
            .unwrap()
            .contains("grows only at max_count"));
        // At min_count an idle service shrinks in CPU too.
        let r = run(&spec(1024, 4096, (1, 1, 4)), 8.0, 40.0, 300.0);
        assert_eq!(r.direction, Direction::Down);
        assert_eq!((r.cpu, r.memory), (Some(256), Some(512)));
        assert_eq!(r.evidence.cpu_held, None);
        // Above min_count it does not.
        let r = run(&spec(1024, 4096, (1, 2, 4)), 8.0, 40.0, 300.0);
        assert_eq!((r.cpu, r.memory), (Some(1024), Some(2048)));
        assert!(r.evidence.cpu_held.is_some());
    }

    #[test]
    fn a_downsize_that_saves_under_a_tenth_is_no_change() {
        // 1024/3072 → 1024/2048 saves 4,445/49,370 of an hour's price: under 10 %.
        let r = run(&spec(1024, 3072, (1, 1, 1)), 8.0, 800.0, 1500.0);
        assert_eq!(r.direction, Direction::None);
        assert!(
            r.reason.starts_with("keep 1024 CPU / 3072 MiB"),
            "{}",
            r.reason
        );
    }

    #[test]
    fn the_bounds_hold_whatever_the_need() {
        let mut s = spec(512, 1024, (1, 1, 1));
        s.sizing.max = TaskSize::new(1024, 2048).unwrap();
        s.sizing.min = TaskSize::new(512, 1024).unwrap();
        let r = run(&s, 8.0, 5000.0, 90000.0);
        assert_eq!((r.cpu, r.memory), (Some(1024), Some(2048)));
        let r = run(&s, 8.0, 1.0, 1.0);
        assert_eq!((r.cpu, r.memory), (Some(512), Some(1024)));
        assert_eq!(r.direction, Direction::None);
    }

    #[test]
    fn an_out_of_memory_stop_raises_memory_by_a_fifth_or_128_mib() {
        assert_eq!(after_oom_memory(512), 640.0);
        assert_eq!(after_oom_memory(2048), 2457.6);
        let s = spec(256, 512, (1, 1, 2));
        let p = Prices::default();
        let stop = OomStop {
            task_arn: "arn:aws:ecs:us-east-1:1:task/c/abc".into(),
            stopped_at: None,
            container: "app".into(),
            reason: "OutOfMemoryError: Container killed due to memory usage".into(),
            memory: 512,
        };
        let i = Input {
            spec: &s,
            cpu: &[],
            memory: &[],
            tasks: None,
            out_of_memory: &[],
            now: Utc::now(),
            lookback: TimeDelta::days(14),
            prices: &p,
        };
        let r = after_oom(&i, &stop);
        assert_eq!(
            (r.cpu, r.memory, r.direction),
            (Some(256), Some(1024), Direction::Up)
        );
        assert_eq!(r.trigger, Trigger::OutOfMemory);
        assert_eq!(
            r.current,
            SizeDoc {
                cpu: 256,
                memory: 512
            }
        );
    }
}
