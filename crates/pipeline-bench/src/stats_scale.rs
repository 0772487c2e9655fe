//! Scenario: what reading `/stats` and `/metrics` costs as the number of
//! stats sources grows (one per key ever written, plus producer isolates).
//!
//! Each shard keeps a running total, so a read should cost the same with
//! 100 sources as with 100,000. The scenario adds idle source rows to the
//! shards through a test route (`POST /_test/stats-seed`: writing 100,000
//! distinct keys through the local runtime would create 100,000 Durable
//! Objects and take far longer than the run; a row per source is what
//! those keys leave in the shards), then times `GET /stats`,
//! `GET /stats?top=10` and `GET /metrics`, and, for comparison, a read of
//! every source row as `/stats` did before running totals
//! (`GET /_test/stats-scan`). Rows read per call come from the Worker's
//! billing counts (SQLite cursors' `rowsRead`), zeroed before each route's
//! reads: they include whatever else the runtime did meanwhile (an alarm's
//! stats push, a shard's compaction sweep), so they are an upper bound.

use std::time::Instant;

use serde::Serialize;

use crate::ctx::Ctx;
use crate::stats::Summary;

/// Sizes of the scenario.
#[derive(Debug, Clone, Serialize)]
pub struct StatsScaleConfig {
    /// Source rows in the shards at each measuring point (ascending).
    pub sources: Vec<u64>,
    /// Timed reads of each route per point.
    pub reads: usize,
}

/// One measuring point.
#[derive(Debug, Clone, Serialize)]
pub struct StatsScalePoint {
    /// Source rows the shards hold (as the scan counted them).
    pub source_rows: u64,
    /// `GET /stats`, ms.
    pub stats_ms: Summary,
    /// `GET /stats?top=10`, ms.
    pub stats_top_ms: Summary,
    /// `GET /metrics`, ms.
    pub metrics_ms: Summary,
    /// Reading every source row (the read before running totals), ms.
    pub scan_ms: Summary,
    /// SQLite rows read per call of each route, in the same order (`None`
    /// without the billing counts, e.g. against `--url`).
    pub rows_read_per_call: [Option<f64>; 4],
}

/// The scenario's result.
#[derive(Debug, Clone, Serialize)]
pub struct StatsScaleResult {
    pub points: Vec<StatsScalePoint>,
}

/// One route's timed reads: their latency, the `rows` field of the last
/// answer (the scan's count of source rows) and SQLite rows read per call.
struct Timed {
    ms: Summary,
    rows: Option<u64>,
    rows_read_per_call: Option<f64>,
}

fn time(ctx: &Ctx, method: &str, path: &str, reads: usize) -> Timed {
    let counting = crate::cost::billing(ctx, true).is_ok();
    let mut samples = Vec::with_capacity(reads);
    let mut rows = None;
    for _ in 0..reads {
        let t = Instant::now();
        match ctx.client.raw(method, path, &[], None) {
            Ok(r) if r.status == 200 => {
                samples.push(t.elapsed().as_secs_f64() * 1000.0);
                rows = r.json().ok().and_then(|v| v["rows"].as_u64()).or(rows);
            }
            Ok(r) => ctx.fail(format!("stats scale: {path} answered {}", r.status)),
            Err(e) => ctx.fail(format!("stats scale: {path}: {e}")),
        }
    }
    let rows_read_per_call = counting
        .then(|| crate::cost::billing(ctx, false).ok())
        .flatten()
        .and_then(|(counts, _)| counts["sql_rows_read"].as_f64())
        .map(|r| {
            #[allow(clippy::cast_precision_loss)]
            let per = r / reads.max(1) as f64;
            per
        });
    Timed {
        ms: Summary::of(&samples),
        rows,
        rows_read_per_call,
    }
}

/// Runs the scenario.
pub fn run(ctx: &Ctx, cfg: &StatsScaleConfig) -> StatsScaleResult {
    let mut points = Vec::new();
    let mut have = time(ctx, "GET", "/_test/stats-scan", 1).rows.unwrap_or(0);
    for &want in &cfg.sources {
        // Seed in steps of at most 20,000 rows (one call per shard each).
        while have < want {
            let step = (want - have).min(20_000);
            match ctx.client.raw(
                "POST",
                &format!("/_test/stats-seed?count={step}"),
                &[],
                None,
            ) {
                Ok(r) if r.status == 200 => {
                    have = r
                        .json()
                        .ok()
                        .and_then(|v| v["rows"].as_u64())
                        .unwrap_or(have + step);
                }
                Ok(r) => {
                    ctx.fail(format!(
                        "stats scale: seeding answered {}: {}",
                        r.status,
                        r.text()
                    ));
                    return StatsScaleResult { points };
                }
                Err(e) => {
                    ctx.fail(format!("stats scale: seeding: {e}"));
                    return StatsScaleResult { points };
                }
            }
        }
        let stats = time(ctx, "GET", "/stats", cfg.reads);
        let top = time(ctx, "GET", "/stats?top=10", cfg.reads);
        let metrics = time(ctx, "GET", "/metrics", cfg.reads);
        let scan = time(ctx, "GET", "/_test/stats-scan", cfg.reads.clamp(1, 5));
        let point = StatsScalePoint {
            source_rows: scan.rows.unwrap_or(have),
            rows_read_per_call: [
                stats.rows_read_per_call,
                top.rows_read_per_call,
                metrics.rows_read_per_call,
                scan.rows_read_per_call,
            ],
            stats_ms: stats.ms,
            stats_top_ms: top.ms,
            metrics_ms: metrics.ms,
            scan_ms: scan.ms,
        };
        eprintln!(
            "stats scale: {} source rows: /stats p50 {:.1} ms p99 {:.1} ms; ?top=10 p50 {:.1} ms; /metrics p50 {:.1} ms; scan of every row p50 {:.1} ms",
            point.source_rows,
            point.stats_ms.p50,
            point.stats_ms.p99,
            point.stats_top_ms.p50,
            point.metrics_ms.p50,
            point.scan_ms.p50
        );
        points.push(point);
    }
    StatsScaleResult { points }
}
