//! From a need (CPU units, MiB) to a size Fargate offers, and from a size to its price.

use super::{defaults::HOURS_PER_MONTH, Prices};
use crate::domain::spec::{Sizing, TaskSize};

impl Prices {
    /// One task of `size` for an hour.
    pub fn hourly(&self, size: TaskSize) -> f64 {
        f64::from(size.cpu()) / 1024.0 * self.vcpu_hour
            + f64::from(size.memory()) / 1024.0 * self.gb_hour
    }

    /// `tasks` tasks of `size` for a month of 730 hours, in cents' precision.
    pub fn monthly(&self, size: TaskSize, tasks: u32) -> f64 {
        cents(self.hourly(size) * HOURS_PER_MONTH * f64::from(tasks))
    }
}

/// Rounded to the cent; never -0 (which JSON and people would read as a saving of "-0").
pub fn cents(dollars: f64) -> f64 {
    (dollars * 100.0).round() / 100.0 + 0.0
}

/// The cheapest pair Fargate offers within `bounds` with at least `cpu` units and
/// `memory` MiB; a need beyond the bounds is held to them. Always a valid pair within the
/// bounds (the bounds' `max` is one, and holds any need held to the bounds).
pub fn smallest_fit(cpu: f64, memory: f64, bounds: &Sizing, prices: &Prices) -> TaskSize {
    let clamp = |need: f64, lo: u32, hi: u32| {
        if need.is_finite() {
            need.clamp(f64::from(lo), f64::from(hi))
        } else {
            f64::from(hi)
        }
    };
    let cpu = clamp(cpu, bounds.min.cpu(), bounds.max.cpu());
    let memory = clamp(memory, bounds.min.memory(), bounds.max.memory());
    TaskSize::all()
        .filter(|s| {
            bounds.holds(*s) && f64::from(s.cpu()) >= cpu && f64::from(s.memory()) >= memory
        })
        .min_by(|a, b| {
            prices
                .hourly(*a)
                .total_cmp(&prices.hourly(*b))
                .then(a.cpu().cmp(&b.cpu()))
                .then(a.memory().cmp(&b.memory()))
        })
        .unwrap_or(bounds.max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::spec::SizingMode;

    fn bounds(min: TaskSize, max: TaskSize) -> Sizing {
        Sizing {
            mode: SizingMode::Auto,
            min,
            max,
        }
    }

    fn all() -> Sizing {
        bounds(
            TaskSize::new(256, 512).unwrap(),
            TaskSize::new(16384, 122880).unwrap(),
        )
    }

    #[test]
    fn the_need_is_met_by_the_cheapest_pair_including_8_and_16_vcpu() {
        let p = Prices::default();
        let fit = |c, m| {
            let s = smallest_fit(c, m, &all(), &p);
            (s.cpu(), s.memory())
        };
        assert_eq!(fit(100.0, 300.0), (256, 512));
        assert_eq!(fit(257.0, 300.0), (512, 1024));
        assert_eq!(fit(300.0, 3000.0), (512, 3072));
        assert_eq!(fit(5000.0, 1.0), (8192, 16384));
        assert_eq!(fit(9000.0, 70000.0), (16384, 73728));
        assert_eq!(fit(1e9, 1e9), (16384, 122880));
        assert_eq!(fit(f64::NAN, 0.0), (16384, 32768));
    }

    /// Every pair of bounds the table allows, and needs around every size in it: the
    /// answer is always a pair Fargate offers, within the bounds, and holds the need as
    /// far as the bounds let it. The emulator accepts invalid pairs, so this is the check.
    #[test]
    fn every_fit_is_a_fargate_pair_within_the_bounds() {
        let p = Prices::default();
        let table: Vec<TaskSize> = TaskSize::all().collect();
        let mut cpus: Vec<f64> = vec![0.0, 1.0, 1e7];
        let mut memories: Vec<f64> = vec![0.0, 1.0, 1e7];
        for s in &table {
            for d in [-1.0, 0.0, 1.0] {
                cpus.push(f64::from(s.cpu()) + d);
                memories.push(f64::from(s.memory()) + d);
            }
        }
        cpus.sort_by(f64::total_cmp);
        cpus.dedup();
        memories.sort_by(f64::total_cmp);
        memories.dedup();
        let mut checked = 0u64;
        for min in &table {
            for max in table
                .iter()
                .filter(|m| m.cpu() >= min.cpu() && m.memory() >= min.memory())
            {
                let b = bounds(*min, *max);
                for &c in cpus.iter().step_by(3) {
                    for &m in memories.iter().step_by(7) {
                        let s = smallest_fit(c, m, &b, &p);
                        assert!(
                            TaskSize::new(s.cpu(), s.memory()).is_ok(),
                            "{s:?} is no Fargate pair"
                        );
                        assert!(b.holds(s), "{s:?} outside {b:?}");
                        assert!(
                            f64::from(s.cpu()) >= c.min(f64::from(max.cpu()))
                                && f64::from(s.memory()) >= m.min(f64::from(max.memory())),
                            "{s:?} does not hold {c}/{m} within {b:?}"
                        );
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked > 100_000, "{checked}");
    }

    #[test]
    fn the_cost_follows_from_the_prices() {
        let p = Prices::default();
        // (0.25 vCPU × $0.04048 + 0.5 GB × $0.004445) × 730 h
        assert_eq!(p.monthly(TaskSize::new(256, 512).unwrap(), 1), 9.01);
        // (1 × 0.04048 + 2 × 0.004445) × 730 × 3 = 108.12
        assert_eq!(p.monthly(TaskSize::new(1024, 2048).unwrap(), 3), 108.12);
        let other = Prices {
            vcpu_hour: 0.1,
            gb_hour: 0.01,
        };
        assert_eq!(other.monthly(TaskSize::new(2048, 4096).unwrap(), 1), 175.2);
    }

    #[test]
    fn a_cent_rounded_to_nothing_is_zero_and_not_minus_zero() {
        assert_eq!(cents(-0.001).to_string(), "0");
        assert_eq!(cents(9.01 - 9.01 - 0.0).to_string(), "0");
        assert_eq!(cents(-18.024), -18.02);
    }
}
