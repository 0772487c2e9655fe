//! The benchmark's targets (the `202` path's throughput against a bare
//! enqueue, the hot-key storm's correctness and commit lag, memory growth on
//! large objects), the printed table and the JSON report.

use std::fmt::Write as _;

use serde::Serialize;

use crate::cost::{CostConfig, CostResult, Goal};
use crate::env::{Machine, Settings, Versions};
use crate::ingest::{IngestConfig, IngestResult, RouteLoad};
use crate::large::{mib_f, LargeConfig, LargeResult};
use crate::storm::{StormConfig, StormResult, StormRoute};
use crate::wasm::WasmResult;

/// The sizes the run used, after `--smoke` and the flags.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    /// `--smoke`.
    pub smoke: bool,
    /// Scenarios run.
    pub scenarios: Vec<String>,
    /// Scenario 1.
    pub ingest: IngestConfig,
    /// Scenario 2.
    pub storm: StormConfig,
    /// Scenario 3.
    pub large: LargeConfig,
    /// Scenario 5.
    pub stats_scale: crate::stats_scale::StatsScaleConfig,
    /// Operations and cost.
    pub cost: CostConfig,
    /// Longest wait for one id to become terminal, seconds.
    pub commit_timeout_s: u64,
}

/// Where the Worker ran.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerInfo {
    /// Base URL.
    pub url: String,
    /// Whether the bench started it (`wrangler dev`) or was given `--url`.
    pub started_by_bench: bool,
    /// The `wrangler dev` log, when the bench started it.
    pub log: Option<String>,
}

/// A target of the benchmark and whether this run met it.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// What is measured.
    pub name: String,
    /// The goal.
    pub goal: String,
    /// What this run measured.
    pub value: String,
    /// `None` when the figure was not measured.
    pub met: Option<bool>,
}

/// Everything the run produced.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// This tool and how it was called.
    pub tool: Tool,
    /// RFC 3339.
    pub started_at: String,
    /// RFC 3339.
    pub finished_at: String,
    /// Wall time of the whole run, seconds.
    pub duration_s: f64,
    /// The Worker measured.
    pub worker: WorkerInfo,
    /// The machine.
    pub machine: Machine,
    /// Versions.
    pub versions: Versions,
    /// Settings of wrangler.toml.
    pub settings: Settings,
    /// The sizes used.
    pub config: Config,
    /// Scenario 1.
    pub ingest: Option<IngestResult>,
    /// Scenario 2.
    pub storm: Option<StormResult>,
    /// Scenario 3.
    pub large: Option<LargeResult>,
    /// Scenario 4.
    pub wasm: Option<WasmResult>,
    /// Scenario 5.
    pub stats_scale: Option<crate::stats_scale::StatsScaleResult>,
    /// Operations per upload and their cost.
    pub cost: Option<CostResult>,
    /// The cost scenario's goals (also among `targets`).
    pub cost_goals: Vec<Goal>,
    /// The cost table and goals as Markdown, for docs/BENCHMARKS.md.
    pub cost_markdown: Option<String>,
    /// The benchmark's targets and whether each was met.
    pub targets: Vec<Target>,
    /// Functional failures (non-empty: the run exits 1).
    pub functional_failures: Vec<String>,
    /// The table as printed.
    pub table: String,
}

/// The tool.
#[derive(Debug, Clone, Serialize)]
pub struct Tool {
    /// `pipeline-bench`.
    pub name: String,
    /// Its version.
    pub version: String,
    /// argv.
    pub command_line: Vec<String>,
}

/// Ingest's `202` throughput must be at least this share of the bare enqueue's.
pub const INGEST_RATIO_GOAL: f64 = 0.9;
/// Commit lag p99 may exceed `max_batch_timeout` by this much (ms).
pub const LAG_SLACK_MS: f64 = 1500.0;
/// Large objects: peak memory growth under this share of the object size.
pub const GROWTH_GOAL_PCT: f64 = 50.0;

/// The benchmark's targets, checked against the results.
#[must_use]
pub fn targets(
    ingest: Option<&IngestResult>,
    storm: Option<&StormResult>,
    large: Option<&LargeResult>,
    max_batch_timeout_s: Option<f64>,
) -> Vec<Target> {
    let mut out = Vec::new();
    if let Some(ing) = ingest {
        for name in [
            "pipeline unique keys",
            "pipeline hot keys",
            "pipeline 202 path alone",
        ] {
            let v = ing.route(name).and_then(|r| r.throughput_vs_enqueue);
            out.push(Target {
                name: format!("ingest: {name}, 202 throughput vs bare enqueue"),
                goal: format!(">= {INGEST_RATIO_GOAL:.2}x"),
                value: v.map_or_else(|| "n/a".into(), |v| format!("{v:.2}x")),
                met: v.map(|v| v >= INGEST_RATIO_GOAL),
            });
        }
    }
    if let Some(p) = storm.and_then(|s| s.route("pipeline")) {
        out.push(Target {
            name: "storm: uploads accepted first try".into(),
            goal: "100 %".into(),
            value: format!(
                "{:.1} % ({} of {})",
                p.accepted_first_try_pct, p.accepted_first_try, p.requests
            ),
            met: Some(p.requests > 0 && p.accepted_first_try == p.requests),
        });
        out.push(Target {
            name: "storm: R2 writes to one key under 1000 ms apart".into(),
            goal: "0".into(),
            value: format!(
                "{} (min gap {})",
                p.spacing_violations,
                p.min_gap_ms
                    .map_or_else(|| "n/a".into(), |g| format!("{g} ms"))
            ),
            met: Some(p.spacing_violations == 0),
        });
        out.push(Target {
            name: "storm: final object is the newest write, every key".into(),
            goal: format!("{0}/{0}", p.finals_checked),
            value: format!("{}/{}", p.finals_correct, p.finals_checked),
            met: Some(p.finals_checked > 0 && p.finals_correct == p.finals_checked),
        });
        let goal_ms = max_batch_timeout_s.map(|t| t * 1000.0 + LAG_SLACK_MS);
        let p99 = p.commit_lag_ms.filter(|s| s.count > 0).map(|s| s.p99);
        out.push(Target {
            name: "storm: commit lag p99 of the newest write per key".into(),
            goal: goal_ms.map_or_else(
                || "<= max_batch_timeout + 1.5 s (max_batch_timeout unknown)".into(),
                |g| format!("<= max_batch_timeout + 1.5 s = {g:.0} ms"),
            ),
            value: p99.map_or_else(|| "n/a".into(), |v| format!("{v:.0} ms")),
            met: match (p99, goal_ms) {
                (Some(v), Some(g)) => Some(v <= g),
                _ => None,
            },
        });
    }
    if let Some(l) = large {
        let mut sizes: Vec<u64> = l.objects.iter().map(|o| o.size_bytes).collect();
        sizes.dedup();
        for size in sizes {
            let runs: Vec<_> = l.objects.iter().filter(|o| o.size_bytes == size).collect();
            let Some(last) = runs.last() else { continue };
            let all: Vec<String> = runs
                .iter()
                .map(|o| {
                    o.write_growth_bytes.map_or_else(
                        || "-".to_owned(),
                        |g| format!("#{} {:.1} MiB", o.rep, mib_f(g)),
                    )
                })
                .collect();
            out.push(Target {
                name: format!(
                    "large {} MiB: runtime peak RSS growth, PUT to committed, last of {} uploads",
                    size / (1024 * 1024),
                    runs.len()
                ),
                goal: format!("< {GROWTH_GOAL_PCT:.0} % of the object"),
                value: match last.write_growth_pct_of_size {
                    Some(p) => format!("{p:.1} % (growth per upload: {})", all.join(", ")),
                    None => "not measured (--url)".into(),
                },
                met: last.write_growth_pct_of_size.map(|p| p < GROWTH_GOAL_PCT),
            });
        }
    }
    out
}

fn x(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.2}x"))
}

fn ingest_table(t: &mut String, ing: &IngestResult) {
    let c = &ing.config;
    let _ = writeln!(
        t,
        "1. Ingest: {} B bodies, {} clients, {} s per route after {} s warm-up",
        c.body_bytes, c.clients, c.seconds, c.warmup_seconds
    );
    let _ = writeln!(
        t,
        "   {:<38} {:>7} {:>7} {:>7} {:>6} {:>7} {:>7} {:>6} {:>13}",
        "route",
        "req/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "vs enq",
        "vs hlth",
        "cores",
        "CPU ms/req *"
    );
    for r in &ing.routes {
        let label = route_label(r, c.hot_keys);
        let cpu = match (
            r.runtime_cpu_ms_per_request,
            r.runtime_cpu_ms_per_request_until_drained,
        ) {
            (Some(a), Some(b)) => format!("{a:.2} / {b:.2}"),
            (Some(a), None) => format!("{a:.2}"),
            _ => "-".into(),
        };
        let _ = writeln!(
            t,
            "   {:<38} {:>7.1} {:>7.1} {:>7.1} {:>6} {:>7} {:>7} {:>6} {:>13}",
            label,
            r.throughput_rps,
            r.latency_ms.p50,
            r.latency_ms.p99,
            r.errors,
            x(r.throughput_vs_enqueue),
            x(r.throughput_vs_healthz),
            r.runtime_cores_busy
                .map_or_else(|| "-".into(), |v| format!("{v:.2}")),
            cpu
        );
    }
    let _ = writeln!(
        t,
        "   cores: runtime CPU ÷ wall time during the load (all wrangler dev processes: workerd and node)"
    );
    let _ = writeln!(
        t,
        "   * runtime CPU per request during the load / until drained (consumer, schedulers, R2 included)"
    );
}

fn route_label(r: &RouteLoad, hot_keys: usize) -> String {
    match r.name.as_str() {
        "healthz" => "GET /healthz".into(),
        "bare enqueue" => "POST /_bench/enqueue (bare enqueue)".into(),
        "pipeline unique keys" => "PUT /objects, unique keys (202)".into(),
        "pipeline hot keys" => format!("PUT /objects, {hot_keys} hot keys (202)"),
        "pipeline 202 path alone" => format!("202 path alone, {hot_keys} keys, deferred"),
        other => other.into(),
    }
}

fn storm_table(t: &mut String, s: &StormResult) {
    let c = &s.config;
    let _ = writeln!(
        t,
        "2. Hot-key storm: {} keys, {} clients, {} s per approach, offered {}, {} B bodies",
        c.keys,
        c.clients,
        c.seconds,
        c.rate.map_or_else(
            || "as fast as answered".to_owned(),
            |r| format!("{r} req/s")
        ),
        c.body_bytes
    );
    let cols: Vec<&StormRoute> = ["pipeline", "naive", "sync"]
        .iter()
        .filter_map(|n| s.route(n))
        .collect();
    let head: Vec<&str> = cols
        .iter()
        .map(|r| match r.name.as_str() {
            "pipeline" => "pipeline (202)",
            "naive" => "naive direct put",
            "sync" => "sync (?mode=sync)",
            other => other,
        })
        .collect();
    let _ = write!(t, "   {:<36}", "");
    for h in &head {
        let _ = write!(t, " {h:>22}");
    }
    let _ = writeln!(t);
    let mut row = |label: &str, f: &dyn Fn(&StormRoute) -> String| {
        let _ = write!(t, "   {label:<36}");
        for r in &cols {
            let _ = write!(t, " {:>22}", f(r));
        }
        let _ = writeln!(t);
    };
    row("requests (achieved req/s)", &|r| {
        format!("{} ({:.1})", r.requests, r.achieved_rps)
    });
    row("latency p50 / p99 ms", &|r| {
        format!("{:.1} / {:.1}", r.latency_ms.p50, r.latency_ms.p99)
    });
    row("accepted first try", &|r| {
        format!("{:.1} %", r.accepted_first_try_pct)
    });
    row("refused: 429 / would-be 429 from R2", &|r| {
        format!("{} ({:.1} %)", r.rejected, r.rejected_pct)
    });
    row("R2 writes", &|r| r.r2_writes.to_string());
    row("R2 writes/key/s max / mean", &|r| {
        format!(
            "{:.2} / {:.2}",
            r.writes_per_key_per_s_max, r.writes_per_key_per_s_mean
        )
    });
    row("writes < 1000 ms apart (min gap)", &|r| {
        format!(
            "{} ({})",
            r.spacing_violations,
            r.min_gap_ms
                .map_or_else(|| "-".into(), |g| format!("{g} ms"))
        )
    });
    row("uploads per R2 write", &|r| {
        r.coalescing_ratio
            .map_or_else(|| "-".into(), |c| format!("{c:.2}"))
    });
    row("commit lag p50/p99/max ms (newest)", &|r| {
        r.commit_lag_ms.filter(|s| s.count > 0).map_or_else(
            || "-".into(),
            |s| format!("{:.0}/{:.0}/{:.0}", s.p50, s.p99, s.max),
        )
    });
    row("final object = newest write", &|r| {
        format!("{}/{}", r.finals_correct, r.finals_checked)
    });
    row("errors (of which runtime) / 409s", &|r| {
        format!("{} ({}) / {}", r.errors, r.runtime_errors, r.conflicts)
    });
    row("runtime CPU ms/request", &|r| {
        r.runtime_cpu_ms_per_request
            .map_or_else(|| "-".into(), |v| format!("{v:.2}"))
    });
    let _ = writeln!(
        t,
        "   would-be 429: writes R2 (1 write/s/key) would have refused, from the Worker's start times; pipeline CPU until drained"
    );
    if let Some(c) = &s.completion {
        let _ = writeln!(
            t,
            "\n  time from PUT to knowing the write ended, same storm (ms)"
        );
        let _ = writeln!(
            t,
            "  {:<34} {:>7} {:>8} {:>8} {:>14} {:>14}",
            "", "writes", "p50", "p99", "committed p50", "committed p99"
        );
        for (name, all, com, bad) in [
            (
                "Prefer: wait=30 (one request)",
                &c.prefer_wait,
                &c.prefer_wait_committed,
                c.prefer_not_terminal,
            ),
            (
                "202 then GET /uploads/{id}?wait",
                &c.polling,
                &c.polling_committed,
                c.polling_not_terminal,
            ),
        ] {
            let _ = writeln!(
                t,
                "  {name:<34} {:>7} {:>8.0} {:>8.0} {:>14.0} {:>14.0}   ({bad} not terminal)",
                all.count, all.p50, all.p99, com.p50, com.p99
            );
        }
    }
}

fn large_table(t: &mut String, l: &LargeResult) {
    let _ = writeln!(
        t,
        "3. Large objects through the staged path; runtime RSS = its workerd processes, sampled every 50 ms{}",
        if l.memory_measured { "" } else { " (not measured: --url)" }
    );
    let _ = writeln!(
        t,
        "   {:>10} {:>12} {:>7} {:>7} {:>7} {:>9} {:>19} {:>19}",
        "size",
        "naive +Δ MiB",
        "up MB/s",
        "commit",
        "down",
        "idle MiB",
        "write peak (+Δ) MiB",
        "read peak (+Δ) MiB"
    );
    for o in &l.objects {
        let peak = |p: Option<&crate::rss::RssReport>, g: Option<i64>| match (p, g) {
            (Some(p), Some(g)) => format!(
                "{:.1} (+{:.1})",
                mib_f(i64::try_from(p.peak_bytes).unwrap_or(0)),
                mib_f(g)
            ),
            _ => "-".into(),
        };
        let _ = writeln!(
            t,
            "   {:>10} {:>12} {:>7.1} {:>7.1} {:>7.1} {:>9} {:>19} {:>19}",
            format!("{} MiB #{}", o.size_bytes / (1024 * 1024), o.rep),
            o.direct_growth_bytes
                .map_or_else(|| "-".into(), |g| format!("+{:.1}", mib_f(g))),
            o.upload_mb_s,
            o.end_to_end_mb_s,
            o.download_mb_s,
            o.idle_rss_bytes.map_or_else(
                || "-".into(),
                |b| format!("{:.1}", mib_f(i64::try_from(b).unwrap_or(0)))
            ),
            peak(o.write_rss.as_ref(), o.write_growth_bytes),
            peak(o.read_rss.as_ref(), o.read_growth_bytes),
        );
    }
    let _ = writeln!(
        t,
        "   naive +Δ: RSS growth when the same bytes are first put straight into R2 and read back (the local R2's own buffers);"
    );
    let _ = writeln!(
        t,
        "   up / commit / down: MB/s of the 202 upload, of PUT until committed, of the GET; Δ vs idle just before"
    );
}

/// The table printed at the end of a run.
#[must_use]
pub fn render(r: &Report) -> String {
    let mut t = String::new();
    let m = &r.machine;
    let _ = writeln!(
        t,
        "pipeline-bench {}: {} ({}), {} cores, {:.1} GiB RAM; wrangler {}, workerd {}; max_batch_size {}, max_batch_timeout {} s{}",
        r.tool.version,
        if r.worker.started_by_bench {
            "local wrangler dev"
        } else if r.worker.url.is_empty() {
            "no Worker (wasm only)"
        } else {
            r.worker.url.as_str()
        },
        m.cpu_model.as_deref().unwrap_or("cpu unknown"),
        m.cores,
        m.memory_total_bytes.map_or(0.0, |b| {
            #[allow(clippy::cast_precision_loss)]
            let g = b as f64 / (1024.0 * 1024.0 * 1024.0);
            g
        }),
        r.versions.wrangler.as_deref().unwrap_or("?"),
        r.versions.workerd.as_deref().unwrap_or("?"),
        r.settings
            .max_batch_size
            .map_or_else(|| "?".into(), |v| v.to_string()),
        r.settings
            .max_batch_timeout_s
            .map_or_else(|| "?".into(), |v| v.to_string()),
        if r.config.smoke { "; SMOKE RUN (tiny sizes)" } else { "" }
    );
    if let Some(i) = &r.ingest {
        let _ = writeln!(t);
        ingest_table(&mut t, i);
        if let Some(b) = i.batch_uploads_per_s {
            let _ = writeln!(
                t,
                "   POST /batch ({} lines): {b:.0} uploads/s accepted, {} the single PUTs' rate",
                i.batch_lines,
                i.batch_vs_single_put
                    .map_or_else(|| "?".into(), |v| format!("{v:.1}x"))
            );
        }
    }
    if let Some(s) = &r.storm {
        let _ = writeln!(t);
        storm_table(&mut t, s);
    }
    if let Some(l) = &r.large {
        let _ = writeln!(t);
        large_table(&mut t, l);
    }
    if let Some(w) = &r.wasm {
        let _ = writeln!(t);
        let _ = writeln!(
            t,
            "4. Wasm: {} bytes raw, {} bytes gzip ({:.1} / {:.1} KiB): {}; {}",
            w.raw_bytes,
            w.gzip_bytes,
            {
                #[allow(clippy::cast_precision_loss)]
                let k = w.raw_bytes as f64 / 1024.0;
                k
            },
            {
                #[allow(clippy::cast_precision_loss)]
                let k = w.gzip_bytes as f64 / 1024.0;
                k
            },
            w.path.display(),
            w.build
        );
    }
    if let Some(s) = &r.stats_scale {
        let _ = writeln!(t);
        let _ = writeln!(
            t,
            "5. Reading stats as sources grow (ms, p50 / p99; the scan reads every source row, as /stats did before running totals)"
        );
        let _ = writeln!(
            t,
            "   {:>12} {:>16} {:>16} {:>16} {:>16}",
            "source rows", "/stats", "/stats?top=10", "/metrics", "scan all rows"
        );
        for p in &s.points {
            let f = |x: &crate::stats::Summary| format!("{:.1} / {:.1}", x.p50, x.p99);
            let _ = writeln!(
                t,
                "   {:>12} {:>16} {:>16} {:>16} {:>16}",
                p.source_rows,
                f(&p.stats_ms),
                f(&p.stats_top_ms),
                f(&p.metrics_ms),
                f(&p.scan_ms)
            );
        }
        let _ = writeln!(
            t,
            "   SQLite rows read per call (billing counts; background work of the runtime included)"
        );
        for p in &s.points {
            let f = |x: Option<f64>| x.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"));
            let [a, b, c, d] = p.rows_read_per_call;
            let _ = writeln!(
                t,
                "   {:>12} {:>16} {:>16} {:>16} {:>16}",
                p.source_rows,
                f(a),
                f(b),
                f(c),
                f(d)
            );
        }
    }
    if let Some(md) = &r.cost_markdown {
        let _ = writeln!(t);
        let _ = writeln!(t, "Operations per upload and cost");
        let _ = writeln!(t, "{md}");
    }
    if !r.targets.is_empty() {
        let _ = writeln!(t);
        let _ = writeln!(t, "Targets");
        for g in &r.targets {
            let tag = match g.met {
                Some(true) => "met    ",
                Some(false) => "NOT MET",
                None => "n/a    ",
            };
            let _ = writeln!(t, "   [{tag}] {}: {} (goal {})", g.name, g.value, g.goal);
        }
    }
    let _ = writeln!(t);
    if r.functional_failures.is_empty() {
        let _ = writeln!(t, "Functional checks: all passed");
    } else {
        let _ = writeln!(
            t,
            "Functional checks: {} FAILED",
            r.functional_failures.len()
        );
        for f in r.functional_failures.iter().take(20) {
            let _ = writeln!(t, "   - {f}");
        }
    }
    t
}

/// The cost goals as targets.
#[must_use]
pub fn cost_targets(goals: &[Goal]) -> Vec<Target> {
    goals
        .iter()
        .map(|g| Target {
            name: g.name.clone(),
            goal: g.goal.clone(),
            value: match &g.reason {
                Some(r) => format!("{} — {r}", g.value),
                None => g.value.clone(),
            },
            met: g.met,
        })
        .collect()
}
