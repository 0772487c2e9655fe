//! `GET /metrics` in the Prometheus text exposition format (which
//! OpenMetrics scrapers read too): the `/stats` counters, the in-flight
//! gauge, and
//! histograms of commit lag (accepted → committed) and queue wait
//! (accepted → taken by the key's scheduler). No object key is ever a
//! label: label sets stay bounded however many keys are written.

use std::fmt::Write;

use serde::{Deserialize, Serialize};

use crate::stats::Totals;

/// Bucket upper bounds of the latency histograms, in milliseconds.
pub const BUCKETS_MS: [i64; 12] = [
    50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000, 60_000, 300_000, 3_600_000,
];

/// A latency histogram: counts per bucket (not cumulative), their sum and
/// count. Fixed-size, so totals holding it stay `Copy`; sources add theirs
/// up like the counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Histogram {
    /// One count per [`BUCKETS_MS`] bound, plus one for larger values.
    pub buckets: [u64; BUCKETS_MS.len() + 1],
    pub sum_ms: i64,
    pub count: u64,
}

impl Histogram {
    /// Records one observation of `ms` (negative counts as 0).
    pub fn observe(&mut self, ms: i64) {
        let ms = ms.max(0);
        let i = BUCKETS_MS
            .iter()
            .position(|b| ms <= *b)
            .unwrap_or(BUCKETS_MS.len());
        if let Some(b) = self.buckets.get_mut(i) {
            *b += 1;
        }
        self.sum_ms = self.sum_ms.saturating_add(ms);
        self.count += 1;
    }

    /// Adds another histogram's observations.
    pub fn add(&mut self, o: &Histogram) {
        for (a, b) in self.buckets.iter_mut().zip(&o.buckets) {
            *a += b;
        }
        self.sum_ms = self.sum_ms.saturating_add(o.sum_ms);
        self.count += o.count;
    }

    /// The observations of `self` beyond `earlier` (an older snapshot of
    /// the same histogram); counts that did not grow give 0.
    #[must_use]
    pub fn since(&self, earlier: &Histogram) -> Histogram {
        let mut d = Histogram::default();
        for ((out, a), b) in d
            .buckets
            .iter_mut()
            .zip(&self.buckets)
            .zip(&earlier.buckets)
        {
            *out = a.saturating_sub(*b);
        }
        d.sum_ms = (self.sum_ms - earlier.sum_ms).max(0);
        d.count = self.count.saturating_sub(earlier.count);
        d
    }

    /// An estimate of the `q` quantile in ms (the bucket bound it falls in).
    pub fn quantile_ms(&self, q: f64) -> Option<i64> {
        if self.count == 0 {
            return None;
        }
        let want = (q * self.count as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= want {
                return Some(BUCKETS_MS.get(i).copied().unwrap_or(i64::MAX));
            }
        }
        None
    }
}

/// Everything `/metrics` shows: the totals carry the histograms.
pub type Snapshot = Totals;

fn counter(out: &mut String, name: &str, help: &str, v: i64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
    );
}

fn histogram(out: &mut String, name: &str, help: &str, h: &Histogram) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    let mut cumulative = 0;
    for (i, bound) in BUCKETS_MS.iter().enumerate() {
        cumulative += h.buckets.get(i).copied().unwrap_or(0);
        let _ = writeln!(
            out,
            "{name}_bucket{{le=\"{}\"}} {cumulative}",
            *bound as f64 / 1000.0
        );
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", h.count);
    let _ = writeln!(out, "{name}_sum {}", h.sum_ms as f64 / 1000.0);
    let _ = writeln!(out, "{name}_count {}", h.count);
}

/// Renders the Prometheus text format (version 0.0.4).
pub fn render(t: &Snapshot) -> String {
    let mut out = String::new();
    counter(
        &mut out,
        "pipeline_uploads_accepted_total",
        "Writes given an id (async and sync; an idempotent repeat not again).",
        t.accepted,
    );
    counter(
        &mut out,
        "pipeline_uploads_committed_total",
        "Writes that reached R2.",
        t.committed,
    );
    counter(
        &mut out,
        "pipeline_uploads_superseded_total",
        "Writes made unnecessary by a newer write to their key.",
        t.superseded,
    );
    counter(
        &mut out,
        "pipeline_uploads_failed_total",
        "Writes that could not be made.",
        t.failed,
    );
    counter(
        &mut out,
        "pipeline_r2_writes_total",
        "Puts and deletes of user keys in R2.",
        t.r2_writes,
    );
    counter(
        &mut out,
        "pipeline_rate_limited_total",
        "429 answers to synchronous writes.",
        t.rate_limited,
    );
    let _ = writeln!(
        out,
        "# HELP pipeline_inflight Writes accepted and not yet terminal.\n# TYPE pipeline_inflight gauge\npipeline_inflight {}",
        t.inflight()
    );
    histogram(
        &mut out,
        "pipeline_commit_lag_seconds",
        "From acceptance to the start of the write's R2 commit.",
        &t.commit_lag,
    );
    histogram(
        &mut out,
        "pipeline_queue_wait_seconds",
        "From acceptance until the key's scheduler took the write.",
        &t.queue_wait,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_bucket_add_and_estimate() {
        let mut h = Histogram::default();
        for ms in [10, 60, 400, 900, 1200, 99_999_999] {
            h.observe(ms);
        }
        assert_eq!(h.count, 6);
        assert_eq!(h.buckets[0], 1);
        assert_eq!(h.buckets[BUCKETS_MS.len()], 1);
        assert_eq!(h.quantile_ms(0.5), Some(500));
        let mut g = h;
        g.add(&h);
        assert_eq!(g.count, 12);
        assert_eq!(g.buckets[0], 2);
    }

    #[test]
    fn renders_counters_gauge_and_cumulative_buckets() {
        let mut s = Snapshot {
            accepted: 5,
            committed: 3,
            ..Snapshot::default()
        };
        s.commit_lag.observe(700);
        s.commit_lag.observe(1500);
        let text = render(&s);
        assert!(text.contains("pipeline_uploads_accepted_total 5\n"));
        assert!(text.contains("pipeline_inflight 2\n"));
        assert!(text.contains("pipeline_commit_lag_seconds_bucket{le=\"1\"} 1\n"));
        assert!(text.contains("pipeline_commit_lag_seconds_bucket{le=\"2.5\"} 2\n"));
        assert!(text.contains("pipeline_commit_lag_seconds_bucket{le=\"+Inf\"} 2\n"));
        assert!(text.contains("pipeline_commit_lag_seconds_sum 2.2\n"));
    }
}
