//! What the samples say a tenant needs. CloudWatch computes no percentiles of the ECS
//! service metrics, so they are computed here: every one-minute sample weighs twice as
//! much as one a half-life older, and the percentile is the smallest value at or below
//! which that share of the total weight lies (the VPA recommender's decaying histogram,
//! without the buckets).

use chrono::{DateTime, TimeDelta, Utc};

/// One minute's value: CPU units or MiB used, already read against the task's size then.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub at: DateTime<Utc>,
    pub value: f64,
}

/// A sample's weight relative to one taken at `now`.
fn weight(at: DateTime<Utc>, now: DateTime<Utc>, half_life: TimeDelta) -> f64 {
    let age = (now - at).num_milliseconds().max(0) as f64;
    0.5f64.powf(age / half_life.num_milliseconds().max(1) as f64)
}

/// The decaying-weight `p`-th percentile (0 < p <= 1) of the samples.
pub fn percentile(
    samples: &[Sample],
    p: f64,
    now: DateTime<Utc>,
    half_life: TimeDelta,
) -> Option<f64> {
    let mut weighted: Vec<(f64, f64)> = samples
        .iter()
        .filter(|s| s.value.is_finite())
        .map(|s| (s.value, weight(s.at, now, half_life)))
        .collect();
    weighted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total: f64 = weighted.iter().map(|(_, w)| w).sum();
    if total <= 0.0 {
        return None;
    }
    let mut below = 0.0;
    for (value, w) in &weighted {
        below += w;
        if below >= p * total * (1.0 - 1e-12) {
            return Some(*value);
        }
    }
    weighted.last().map(|(v, _)| *v)
}

/// Each day's peak, the day ending at `now` first, for days that have samples.
pub fn daily_peaks(samples: &[Sample], now: DateTime<Utc>) -> Vec<f64> {
    let day_of = |at: DateTime<Utc>| (now - at).num_seconds().max(0) / 86_400;
    let days = samples
        .iter()
        .map(|s| day_of(s.at))
        .max()
        .map_or(0, |d| d + 1);
    let mut peaks: Vec<Option<f64>> = vec![None; days as usize];
    for s in samples.iter().filter(|s| s.value.is_finite()) {
        let slot = &mut peaks[day_of(s.at) as usize];
        *slot = Some(slot.map_or(s.value, |p: f64| p.max(s.value)));
    }
    peaks.into_iter().flatten().collect()
}

/// Percentages of the task's size as amounts (units or MiB), each read against the size
/// in effect when it was taken: `sizes` are (since, amount), oldest first; a sample older
/// than the first record takes the first.
pub fn amounts(percent: &[Sample], sizes: &[(DateTime<Utc>, f64)]) -> Vec<Sample> {
    let Some(first) = sizes.first() else {
        return Vec::new();
    };
    percent
        .iter()
        .map(|s| {
            let size = sizes
                .iter()
                .take_while(|(since, _)| *since <= s.at)
                .last()
                .unwrap_or(first)
                .1;
            Sample {
                at: s.at,
                value: s.value / 100.0 * size,
            }
        })
        .collect()
}

/// From the oldest sample to the newest.
pub fn span(samples: &[Sample]) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let first = samples.iter().map(|s| s.at).min()?;
    let last = samples.iter().map(|s| s.at).max()?;
    Some((first, last))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(now: DateTime<Utc>, minutes_ago: i64, value: f64) -> Sample {
        Sample {
            at: now - TimeDelta::minutes(minutes_ago),
            value,
        }
    }

    #[test]
    fn with_equal_weights_the_percentile_is_the_plain_one() {
        let now = Utc::now();
        let samples: Vec<Sample> = (1..=100).map(|v| at(now, 0, f64::from(v))).collect();
        let h = TimeDelta::hours(24);
        assert_eq!(percentile(&samples, 0.9, now, h), Some(90.0));
        assert_eq!(percentile(&samples, 1.0, now, h), Some(100.0));
        assert_eq!(percentile(&samples, 0.01, now, h), Some(1.0));
        assert_eq!(percentile(&[], 0.9, now, h), None);
    }

    #[test]
    fn a_sample_a_half_life_older_weighs_half_as_much() {
        let now = Utc::now();
        let h = TimeDelta::hours(24);
        assert!((weight(now - h, now, h) - 0.5).abs() < 1e-9);
        assert!((weight(now - h * 3, now, h) - 0.125).abs() < 1e-9);
        // A busy week long ago and a quiet last day: the quiet day decides the median.
        let mut samples: Vec<Sample> = (0..7 * 24)
            .map(|hour| at(now, 60 * (24 + hour), 90.0))
            .collect();
        samples.extend((0..24).map(|hour| at(now, 60 * hour, 10.0)));
        assert_eq!(percentile(&samples, 0.5, now, h), Some(10.0));
        // A plain median of the same samples would say 90.
        assert_eq!(
            percentile(&samples, 0.5, now, TimeDelta::days(10_000)),
            Some(90.0)
        );
    }

    #[test]
    fn a_percentage_is_read_against_the_size_of_its_time() {
        let now = Utc::now();
        let sizes = [
            (now - TimeDelta::hours(2), 256.0),
            (now - TimeDelta::hours(1), 512.0),
        ];
        let pct = [at(now, 180, 50.0), at(now, 90, 50.0), at(now, 30, 50.0)];
        let got: Vec<f64> = amounts(&pct, &sizes).iter().map(|s| s.value).collect();
        assert_eq!(got, [128.0, 128.0, 256.0]);
    }

    #[test]
    fn daily_peaks_are_per_day_ending_now_and_skip_empty_days() {
        let now = Utc::now();
        let samples = [
            at(now, 10, 300.0),
            at(now, 60, 320.0),
            at(now, 3 * 1440 + 5, 500.0),
            at(now, 3 * 1440 + 50, 450.0),
        ];
        assert_eq!(daily_peaks(&samples, now), vec![320.0, 500.0]);
        assert_eq!(
            span(&samples),
            Some((
                now - TimeDelta::minutes(3 * 1440 + 50),
                now - TimeDelta::minutes(10)
            ))
        );
    }
}
