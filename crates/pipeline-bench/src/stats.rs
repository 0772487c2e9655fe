//! Summaries of latency samples and the checks computed from write times.
//!
//! Everything here is pure and unit-tested: the scenarios collect numbers,
//! these functions turn them into the figures the report prints.

use std::collections::BTreeMap;

use serde::Serialize;

/// Min, mean, p50, p99 and max of a set of samples (milliseconds).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Summary {
    /// How many samples.
    pub count: usize,
    /// Smallest.
    pub min: f64,
    /// Arithmetic mean.
    pub mean: f64,
    /// Median (nearest rank).
    pub p50: f64,
    /// 99th percentile (nearest rank).
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

impl Summary {
    /// Summarises `samples`; all zero when there are none.
    #[must_use]
    pub fn of(samples: &[f64]) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let sum: f64 = sorted.iter().sum();
        #[allow(clippy::cast_precision_loss)]
        let mean = sum / sorted.len() as f64;
        Self {
            count: sorted.len(),
            min: sorted[0],
            mean,
            p50: percentile(&sorted, 50.0),
            p99: percentile(&sorted, 99.0),
            max: sorted[sorted.len() - 1],
        }
    }
}

/// The nearest-rank percentile `p` (0 to 100) of sorted samples.
///
/// # Panics
///
/// Never for a non-empty slice; an empty one gives 0.
#[must_use]
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// What R2 would have done with a stream of direct writes to one bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct WouldBeRejected {
    /// Writes R2 would have taken.
    pub accepted: usize,
    /// Writes R2 would have answered with 429 (error 10058).
    pub rejected: usize,
}

/// Counts the writes R2 would have rejected: per key, in order of start
/// time, a write starting less than `spacing_ms` after the previous
/// *accepted* write to the key is rejected (and does not move the window).
#[must_use]
pub fn would_be_rejected<'a>(
    writes: impl IntoIterator<Item = (&'a str, i64)>,
    spacing_ms: i64,
) -> WouldBeRejected {
    let mut by_key: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for (key, start) in writes {
        by_key.entry(key).or_default().push(start);
    }
    let mut out = WouldBeRejected::default();
    for starts in by_key.values_mut() {
        starts.sort_unstable();
        let mut last_accepted: Option<i64> = None;
        for &s in starts.iter() {
            match last_accepted {
                Some(prev) if s - prev < spacing_ms => out.rejected += 1,
                _ => {
                    out.accepted += 1;
                    last_accepted = Some(s);
                }
            }
        }
    }
    out
}

/// The spacing of one key's write start times.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Spacing {
    /// Gaps between consecutive writes shorter than the limit.
    pub violations: usize,
    /// The shortest gap (ms), when there are two writes or more.
    pub min_gap_ms: Option<i64>,
}

/// Checks that consecutive `starts` (any order) are at least `spacing_ms` apart.
#[must_use]
pub fn spacing(starts: &[i64], spacing_ms: i64) -> Spacing {
    let mut sorted = starts.to_vec();
    sorted.sort_unstable();
    let mut out = Spacing::default();
    for pair in sorted.windows(2) {
        let gap = pair[1] - pair[0];
        if gap < spacing_ms {
            out.violations += 1;
        }
        out.min_gap_ms = Some(out.min_gap_ms.map_or(gap, |m: i64| m.min(gap)));
    }
    out
}

/// Writes per second of one key: `n` writes over the span from the first
/// start to one second after the last (so `n` writes exactly 1000 ms apart
/// give 1.0, R2's limit). 0 for no writes.
#[must_use]
pub fn writes_per_second(starts: &[i64]) -> f64 {
    let (Some(first), Some(last)) = (starts.iter().min(), starts.iter().max()) else {
        return 0.0;
    };
    #[allow(clippy::cast_precision_loss)]
    let span_s = (last - first) as f64 / 1000.0 + 1.0;
    #[allow(clippy::cast_precision_loss)]
    let n = starts.len() as f64;
    n / span_s
}

/// Parses an API time (RFC 3339) to Unix milliseconds.
#[must_use]
pub fn parse_ms(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// `a / b`, or `None` when `b` is zero.
#[must_use]
pub fn ratio(a: f64, b: f64) -> Option<f64> {
    (b != 0.0).then(|| a / b)
}

/// Bytes per second as MB/s (10^6 bytes).
#[must_use]
pub fn mb_per_s(bytes: u64, seconds: f64) -> f64 {
    if seconds <= 0.0 {
        return 0.0;
    }
    #[allow(clippy::cast_precision_loss)]
    let b = bytes as f64;
    b / 1e6 / seconds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_uses_nearest_rank() {
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        let s = Summary::of(&samples);
        assert_eq!(s.count, 100);
        assert!((s.p50 - 50.0).abs() < f64::EPSILON);
        assert!((s.p99 - 99.0).abs() < f64::EPSILON);
        assert!((s.max - 100.0).abs() < f64::EPSILON);
        assert!((s.min - 1.0).abs() < f64::EPSILON);
        assert!((s.mean - 50.5).abs() < 1e-9);
        let one = Summary::of(&[7.0]);
        assert!((one.p50 - 7.0).abs() < f64::EPSILON && (one.p99 - 7.0).abs() < f64::EPSILON);
        assert_eq!(Summary::of(&[]), Summary::default());
    }

    #[test]
    fn rejection_counts_from_the_last_accepted_write() {
        // 0 accepted; 400 and 900 rejected (within 1000 of 0); 1000 accepted;
        // 1500 rejected; 2100 accepted. The window moves only on acceptance:
        // 1900 is 1000 after 900, but 900 was rejected, so 1900 is measured
        // from 1000 and rejected.
        let w = would_be_rejected(
            [
                ("a", 900),
                ("a", 0),
                ("a", 400),
                ("a", 1000),
                ("a", 1500),
                ("a", 1900),
                ("a", 2100),
                ("b", 950),
            ],
            1000,
        );
        assert_eq!(
            w,
            WouldBeRejected {
                accepted: 4,
                rejected: 4
            }
        );
        assert_eq!(would_be_rejected([], 1000), WouldBeRejected::default());
    }

    #[test]
    fn spacing_finds_short_gaps_in_any_order() {
        let s = spacing(&[3000, 1000, 2000, 4000], 1000);
        assert_eq!(s.violations, 0);
        assert_eq!(s.min_gap_ms, Some(1000));
        let s = spacing(&[0, 999, 2500], 1000);
        assert_eq!(s.violations, 1);
        assert_eq!(s.min_gap_ms, Some(999));
        assert_eq!(spacing(&[5], 1000), Spacing::default());
    }

    #[test]
    fn writes_per_second_of_perfect_spacing_is_one() {
        assert!((writes_per_second(&[0, 1000, 2000, 3000]) - 1.0).abs() < 1e-9);
        assert!((writes_per_second(&[0, 500]) - 2.0 / 1.5).abs() < 1e-9);
        assert!((writes_per_second(&[42]) - 1.0).abs() < 1e-9);
        assert!(writes_per_second(&[]).abs() < f64::EPSILON);
    }

    #[test]
    fn times_parse_to_millis() {
        assert_eq!(parse_ms("1970-01-01T00:00:01.234Z"), Some(1234));
        assert_eq!(parse_ms("1970-01-01T00:00:01.234+00:00"), Some(1234));
        assert_eq!(parse_ms("yesterday"), None);
    }

    #[test]
    fn ratios_and_rates() {
        assert_eq!(ratio(1.0, 0.0), None);
        assert_eq!(ratio(3.0, 2.0), Some(1.5));
        assert!((mb_per_s(10_000_000, 2.0) - 5.0).abs() < 1e-9);
        assert!(mb_per_s(1, 0.0).abs() < f64::EPSILON);
    }
}
