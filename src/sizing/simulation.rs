//! Weeks of load on a simulated clock, through the real estimator, recommender and
//! guards, run hourly as the worker runs them: how often does `auto` change the size?

use chrono::{DateTime, TimeDelta, Utc};

use super::{
    defaults::{DOWNSIZE_COOLDOWN, UPSIZE_COOLDOWN},
    estimate::Sample,
    policy::{decide, Gate, Verdict},
    recommend::{after_oom, from_metrics, Input},
    Change, Direction, OomStop, Prices, Sizing,
};
use crate::domain::{
    spec::{sizing::SizeDoc, SizingDoc, SizingMode, SpecDoc, TaskSize, TenantSpec},
    tenant::TenantStatus,
};

fn spec(cpu: u32, memory: u32) -> TenantSpec {
    TenantSpec::validate(
        SpecDoc {
            app_image: "humangov/app:1".into(),
            nginx_image: "nginx:1.27".into(),
            cpu,
            memory,
            desired_count: 1,
            min_count: 1,
            max_count: 1,
            env: Default::default(),
            sizing: SizingDoc {
                mode: SizingMode::Auto,
                ..SizingDoc::default()
            },
        },
        None,
    )
    .unwrap()
}

fn gate() -> Gate {
    Gate {
        mode: SizingMode::Auto,
        status: TenantStatus::Ready,
        paused: false,
        deleting: false,
        rollout: None,
        deploying: None,
    }
}

/// A tenant whose CPU demand (units) at each moment is `demand`; a task cannot use more
/// than its size, so a saturated one shows its size. Returns each change's time and
/// direction over `days`, one run an hour, after a day of data to start from.
fn simulate(days: i64, demand: impl Fn(DateTime<Utc>) -> f64) -> Vec<(DateTime<Utc>, Direction)> {
    let start = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
    let prices = Prices::default();
    let mut spec = spec(256, 512);
    let mut state = Sizing::default();
    let mut cpu: Vec<Sample> = Vec::new();
    let mut memory: Vec<Sample> = Vec::new();
    let mut changes = Vec::new();
    let mut t = start;
    for hour in 0..days * 24 {
        // Six samples an hour, at the size of the time.
        for m in (0..60).step_by(10) {
            let at = t + TimeDelta::minutes(m);
            let used = demand(at).min(f64::from(spec.size.cpu()));
            cpu.push(Sample { at, value: used });
            memory.push(Sample { at, value: 300.0 });
        }
        t += TimeDelta::hours(1);
        let oldest = t - TimeDelta::days(14);
        cpu.retain(|s| s.at >= oldest);
        memory.retain(|s| s.at >= oldest);
        if hour < 24 {
            continue;
        }
        let input = Input {
            spec: &spec,
            cpu: &cpu,
            memory: &memory,
            tasks: None,
            out_of_memory: &[],
            now: t,
            lookback: TimeDelta::days(14),
            prices: &prices,
        };
        let rec = from_metrics(&input);
        let verdict = decide(&rec, &state, &gate(), t);
        state.previous = rec.size().map(SizeDoc::from);
        if let (Verdict::Apply(trigger), Some(to)) = (verdict, rec.change()) {
            changes.push((t, rec.direction));
            state.last_change = Some(Change {
                at: t,
                generation: 0,
                from: spec.size.into(),
                to: to.into(),
                direction: rec.direction,
                trigger,
                actor: "rightsizer".into(),
                settled: true,
                outcome: None,
            });
            spec = spec.resized(to);
        }
    }
    changes
}

/// No two changes closer than the guards allow: an hour between upsizes, a day around a
/// downsize or a change of direction.
fn assert_guarded(changes: &[(DateTime<Utc>, Direction)]) {
    for pair in changes.windows(2) {
        let ((a, da), (b, db)) = (pair[0], pair[1]);
        let least = if da == Direction::Up && db == Direction::Up {
            UPSIZE_COOLDOWN
        } else {
            DOWNSIZE_COOLDOWN
        };
        assert!(
            b - a >= least,
            "{da:?} at {a} then {db:?} at {b}: {changes:?}"
        );
    }
}

#[test]
fn load_that_crosses_a_size_twice_a_day_makes_one_change() {
    // 235 and 215 units, six hours each: × 1.15 it crosses 256 CPU every six hours.
    let changes = simulate(21, |at| {
        if (at.timestamp() / 21_600) % 2 == 0 {
            235.0
        } else {
            215.0
        }
    });
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0].1, Direction::Up);
}

#[test]
fn load_that_turns_every_few_days_makes_at_most_one_change_per_cooldown() {
    // Four days at 300 units, four at 40, for five weeks.
    let changes = simulate(35, |at| {
        if (at.timestamp() / (4 * 86_400)) % 2 == 0 {
            300.0
        } else {
            40.0
        }
    });
    assert_guarded(&changes);
    assert!(!changes.is_empty());
    // Fewer changes than turns of the load (nine): each downsize waits for a week of data,
    // two runs alike and a day's cooldown.
    assert!(changes.len() <= 9, "{changes:?}");
    let downs = changes
        .iter()
        .filter(|(_, d)| *d == Direction::Down)
        .count();
    assert!(downs >= 1, "the quiet weeks are noticed: {changes:?}");
}

#[test]
fn an_out_of_memory_raise_is_not_taken_back_by_the_next_runs() {
    let now = Utc::now();
    let prices = Prices::default();
    let s = spec(256, 512);
    let stop = OomStop {
        task_arn: "arn:aws:ecs:us-east-1:1:task/c/1".into(),
        stopped_at: Some(now),
        container: "app".into(),
        reason: "OutOfMemoryError: Container killed due to memory usage".into(),
        memory: 512,
    };
    let base = Input {
        spec: &s,
        cpu: &[],
        memory: &[],
        tasks: None,
        out_of_memory: &[],
        now,
        lookback: TimeDelta::days(14),
        prices: &prices,
    };
    let raised = after_oom(&base, &stop).change().unwrap();
    assert_eq!(raised, TaskSize::new(256, 1024).unwrap());
    // A week later the samples show little memory in use; the stop still counts.
    let s = s.resized(raised);
    let later = now + TimeDelta::days(8);
    let quiet: Vec<Sample> = (0..8 * 144)
        .map(|i| Sample {
            at: later - TimeDelta::minutes(10 * i),
            value: 200.0,
        })
        .collect();
    let stops = [stop];
    let rec = from_metrics(&Input {
        spec: &s,
        cpu: &quiet,
        memory: &quiet,
        out_of_memory: &stops,
        now: later,
        ..base
    });
    assert_eq!(rec.direction, Direction::None, "{}", rec.reason);
    assert_eq!(rec.size(), Some(raised));
    let state = Sizing {
        last_change: None,
        ..Sizing::default()
    };
    assert!(matches!(
        decide(&rec, &state, &gate(), later),
        Verdict::Leave(_)
    ));
}
