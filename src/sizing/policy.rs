//! Whether `auto` applies a recommendation now. The rules are the VPA users' complaints
//! (OOM loops, flapping, fights with other controllers) turned around:
//! - nothing changes while the tenant is frozen after a failed rightsizing, paused,
//!   failed, being deleted, in a rollout, or deploying;
//! - a task stopped out of memory raises memory at once, whatever the cooldowns;
//! - an upsize is immediate, but waits an hour after the last upsize and a day after a
//!   downsize;
//! - a downsize needs 7 days of data, the same recommendation on two runs in a row, and a
//!   day since any change (the 10 % minimum saving is the recommendation's own rule).

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{
    defaults::{DOWNSIZE_COOLDOWN, DOWNSIZE_MIN_DATA, UPSIZE_COOLDOWN},
    ChangeTrigger, Direction, Recommendation, Sizing, Trigger,
};
use crate::domain::{
    spec::{sizing::SizeDoc, SizingMode},
    tenant::TenantStatus,
};

/// The tenant's situation, as far as the guards care.
#[derive(Debug, Clone)]
pub struct Gate {
    pub mode: SizingMode,
    pub status: TenantStatus,
    pub paused: bool,
    pub deleting: bool,
    /// The active rollout the tenant is in.
    pub rollout: Option<Uuid>,
    /// A deployment ECS reports under way, in words.
    pub deploying: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Write the recommended size now.
    Apply(ChangeTrigger),
    /// A change is due but a guard holds it; why.
    Wait(String),
    /// Nothing for `auto` to do; why.
    Leave(String),
}

impl Verdict {
    pub fn words(&self) -> String {
        match self {
            Self::Apply(trigger) => format!("applying ({})", trigger.as_str()),
            Self::Wait(why) => format!("waits: {why}"),
            Self::Leave(why) => why.clone(),
        }
    }
}

fn at(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

pub fn decide(rec: &Recommendation, state: &Sizing, gate: &Gate, now: DateTime<Utc>) -> Verdict {
    let Some(to) = rec.change() else {
        return Verdict::Leave("nothing to change".into());
    };
    match gate.mode {
        SizingMode::Off => return Verdict::Leave("sizing is off".into()),
        SizingMode::Recommend => {
            return Verdict::Leave(
                "recommend mode: a person applies it (statehouse tenants sizing apply)".into(),
            )
        }
        SizingMode::Auto => {}
    }
    if let Some(why) = held(state, gate, now) {
        return Verdict::Wait(why);
    }
    if rec.trigger == Trigger::OutOfMemory {
        return Verdict::Apply(ChangeTrigger::OutOfMemory);
    }
    let last = state.last_change.as_ref();
    match rec.direction {
        Direction::Up => {
            if let Some(c) = last {
                let wait = match c.direction {
                    Direction::Up => UPSIZE_COOLDOWN,
                    _ => DOWNSIZE_COOLDOWN,
                };
                if now < c.at + wait {
                    return Verdict::Wait(format!(
                        "cooldown: the last change ({}, {}) was at {}; the next upsize may come at {}",
                        c.direction.as_str(),
                        c.trigger.as_str(),
                        at(c.at),
                        at(c.at + wait)
                    ));
                }
            }
            Verdict::Apply(ChangeTrigger::Auto)
        }
        Direction::Down => {
            let span = rec.evidence.window.span();
            if span < DOWNSIZE_MIN_DATA {
                return Verdict::Wait(format!(
                    "a downsize needs {} days of data; there are {:.1}",
                    DOWNSIZE_MIN_DATA.num_days(),
                    rec.evidence.window.hours / 24.0
                ));
            }
            if state.previous != Some(SizeDoc::from(to)) {
                return Verdict::Wait(
                    "a downsize needs the same recommendation on two runs in a row".into(),
                );
            }
            if let Some(c) = last.filter(|c| now < c.at + DOWNSIZE_COOLDOWN) {
                return Verdict::Wait(format!(
                    "at most one change a day: the last ({}) was at {}; a downsize may come at {}",
                    c.direction.as_str(),
                    at(c.at),
                    at(c.at + DOWNSIZE_COOLDOWN)
                ));
            }
            Verdict::Apply(ChangeTrigger::Auto)
        }
        Direction::None => Verdict::Leave("nothing to change".into()),
    }
}

/// What keeps any automatic change from being made now.
fn held(state: &Sizing, gate: &Gate, now: DateTime<Utc>) -> Option<String> {
    if state.frozen(now) {
        return Some(format!(
            "frozen until {}: {}",
            state.frozen_until.map(at).unwrap_or_default(),
            state
                .frozen_reason
                .as_deref()
                .unwrap_or("a rightsizing deployment failed")
        ));
    }
    if gate.deleting {
        return Some("the tenant is being deleted".into());
    }
    if gate.paused {
        return Some("the tenant is paused".into());
    }
    if let Some(id) = gate.rollout {
        return Some(format!(
            "the tenant is in rollout {id}; sizing changes wait for it to end"
        ));
    }
    match gate.status {
        TenantStatus::Ready => {}
        TenantStatus::Failed => {
            return Some("the tenant is failed: a sizing change waits until it is ready".into())
        }
        other => {
            return Some(format!(
                "a deployment is under way (status {})",
                other.as_str()
            ))
        }
    }
    gate.deploying
        .as_ref()
        .map(|d| format!("a deployment is under way: {d}"))
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;
    use crate::sizing::{Change, DataWindow, Evidence, MonthlyCost, RecommendationStatus};

    fn rec(direction: Direction, days: f64, trigger: Trigger) -> Recommendation {
        let (cpu, memory) = match direction {
            Direction::Up => (512, 1024),
            Direction::Down => (256, 512),
            Direction::None => (256, 1024),
        };
        Recommendation {
            status: RecommendationStatus::Recommended,
            direction,
            cpu: Some(cpu),
            memory: Some(memory),
            current: SizeDoc {
                cpu: 256,
                memory: 1024,
            },
            trigger,
            reason: String::new(),
            evidence: Evidence {
                window: DataWindow {
                    hours: days * 24.0,
                    ..DataWindow::default()
                },
                ..Evidence::default()
            },
            computed_at: Utc::now(),
            monthly_cost: MonthlyCost {
                currency: "USD".into(),
                tasks: 1,
                current: 0.0,
                recommended: None,
            },
        }
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

    fn changed(now: DateTime<Utc>, ago: TimeDelta, direction: Direction) -> Sizing {
        Sizing {
            last_change: Some(Change {
                at: now - ago,
                generation: 2,
                from: SizeDoc {
                    cpu: 256,
                    memory: 512,
                },
                to: SizeDoc {
                    cpu: 256,
                    memory: 1024,
                },
                direction,
                trigger: ChangeTrigger::Auto,
                actor: "rightsizer".into(),
                settled: true,
                outcome: None,
            }),
            ..Sizing::default()
        }
    }

    fn applies(v: &Verdict) -> bool {
        matches!(v, Verdict::Apply(_))
    }

    #[test]
    fn an_upsize_is_immediate_but_waits_an_hour_after_an_upsize_and_a_day_after_a_downsize() {
        let now = Utc::now();
        let up = rec(Direction::Up, 1.0, Trigger::Metrics);
        assert_eq!(
            decide(&up, &Sizing::default(), &gate(), now),
            Verdict::Apply(ChangeTrigger::Auto)
        );
        let recent_up = changed(now, TimeDelta::minutes(30), Direction::Up);
        assert!(
            matches!(decide(&up, &recent_up, &gate(), now), Verdict::Wait(w) if w.starts_with("cooldown"))
        );
        let older_up = changed(now, TimeDelta::minutes(61), Direction::Up);
        assert!(applies(&decide(&up, &older_up, &gate(), now)));
        let recent_down = changed(now, TimeDelta::hours(23), Direction::Down);
        assert!(!applies(&decide(&up, &recent_down, &gate(), now)));
        assert!(applies(&decide(
            &up,
            &changed(now, TimeDelta::hours(25), Direction::Down),
            &gate(),
            now
        )));
    }

    #[test]
    fn a_downsize_needs_a_week_of_data_two_runs_alike_and_a_day_since_any_change() {
        let now = Utc::now();
        let down = rec(Direction::Down, 6.9, Trigger::Metrics);
        let mut state = Sizing {
            previous: Some(SizeDoc {
                cpu: 256,
                memory: 512,
            }),
            ..Sizing::default()
        };
        assert!(
            matches!(decide(&down, &state, &gate(), now), Verdict::Wait(w) if w.contains("7 days"))
        );
        let down = rec(Direction::Down, 7.0, Trigger::Metrics);
        assert!(applies(&decide(&down, &state, &gate(), now)));
        state.previous = None;
        assert!(
            matches!(decide(&down, &state, &gate(), now), Verdict::Wait(w) if w.contains("two runs"))
        );
        let mut after_up = changed(now, TimeDelta::hours(2), Direction::Up);
        after_up.previous = Some(SizeDoc {
            cpu: 256,
            memory: 512,
        });
        assert!(
            matches!(decide(&down, &after_up, &gate(), now), Verdict::Wait(w) if w.contains("one change a day"))
        );
    }

    #[test]
    fn out_of_memory_ignores_the_cooldown_but_not_the_state_of_the_tenant() {
        let now = Utc::now();
        let oom = rec(Direction::Up, 0.0, Trigger::OutOfMemory);
        let recent = changed(now, TimeDelta::minutes(1), Direction::Up);
        assert_eq!(
            decide(&oom, &recent, &gate(), now),
            Verdict::Apply(ChangeTrigger::OutOfMemory)
        );
        let mut frozen = recent.clone();
        frozen.frozen_until = Some(now + TimeDelta::hours(3));
        assert!(
            matches!(decide(&oom, &frozen, &gate(), now), Verdict::Wait(w) if w.starts_with("frozen"))
        );
        for g in [
            Gate {
                paused: true,
                ..gate()
            },
            Gate {
                status: TenantStatus::Failed,
                ..gate()
            },
            Gate {
                status: TenantStatus::Updating,
                ..gate()
            },
            Gate {
                rollout: Some(Uuid::now_v7()),
                ..gate()
            },
            Gate {
                deploying: Some("2 deployments".into()),
                ..gate()
            },
        ] {
            assert!(
                matches!(decide(&oom, &recent, &g, now), Verdict::Wait(_)),
                "{g:?}"
            );
        }
    }

    #[test]
    fn recommend_mode_and_no_change_leave_it() {
        let now = Utc::now();
        let up = rec(Direction::Up, 1.0, Trigger::Metrics);
        let g = Gate {
            mode: SizingMode::Recommend,
            ..gate()
        };
        assert!(matches!(
            decide(&up, &Sizing::default(), &g, now),
            Verdict::Leave(_)
        ));
        let none = rec(Direction::None, 9.0, Trigger::Metrics);
        assert!(matches!(
            decide(&none, &Sizing::default(), &gate(), now),
            Verdict::Leave(_)
        ));
    }
}
