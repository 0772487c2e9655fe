//! Scenario: billable operations per upload, and what they cost.
//!
//! Three workloads (unique keys; a Zipf(1.1) stream over 10,000 keys; the
//! hot-key storm), each through three approaches: the pipeline
//! (`PUT /objects/{key}`, `202`), the naive direct put
//! (`PUT /_bench/direct/{key}`) and the sync mode (`?mode=sync`). For each,
//! the Worker's billing counts (`GET /_bench/billing`, test builds only)
//! are reset before the load and read once the work has ended: the counts
//! stopped moving for a quiet window and, for the pipeline, `/stats` shows
//! nothing in flight (read after the counts, so its own operations are not
//! in them).
//!
//! Reads and deletes of queue messages are derived, not counted (see the
//! Worker's `billing` module): once drained, each message sent to a queue
//! this Worker consumes was delivered and acked once. Retries (a read
//! each) are not seen.
//!
//! The naive put is counted as measured (one Worker request and one R2
//! put per upload) plus what R2's one-write-per-second-per-key rule would
//! make a client pay, which the local R2 does not enforce:
//! [`naive_retries`] replays the writes per key in time order, each
//! retried every second until its slot, every retry one more Worker
//! request and one more Class A put.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use pipeline_client::{encode_key, ClientError, PutOptions};
use serde::{Deserialize, Serialize};

use crate::ctx::{body, judge_errors, Ctx};
use crate::load::{self, LoadSpec};
use crate::prices;
use crate::rss::CpuMark;

/// R2's limit: one write per second per key.
pub const SLOT_MS: i64 = 1000;

/// Keys of the Zipf workload.
pub const ZIPF_KEYS: usize = 10_000;

/// Exponent of the Zipf workload.
pub const ZIPF_S: f64 = 1.1;

/// Sizes of the scenario.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct CostConfig {
    /// Uploads per workload and approach.
    pub uploads: usize,
    /// Offered uploads per second.
    pub rate: f64,
    /// Concurrent clients.
    pub clients: usize,
    /// Hot keys of the storm workload.
    pub storm_keys: usize,
    /// Body bytes.
    pub body_bytes: usize,
    /// Quiet window that ends a pipeline run, seconds.
    pub quiet_s: f64,
}

// ---------------------------------------------------------------- models

/// What R2's one-write-per-second-per-key rule makes a naive client pay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NaiveModel {
    /// Writes.
    pub writes: usize,
    /// Retries after a `429`, each one second after the last try.
    pub retries: usize,
    /// Writes that needed at least one retry.
    pub delayed: usize,
    /// The longest a write waited for its slot, ms.
    pub max_wait_ms: i64,
}

/// Replays `writes` (key, start ms) per key in time order: a write whose
/// key had a write less than [`SLOT_MS`] before is refused and retried
/// every second until it is [`SLOT_MS`] after the key's last successful
/// write; its success then takes the slot.
#[must_use]
pub fn naive_retries<'a>(writes: impl IntoIterator<Item = (&'a str, i64)>) -> NaiveModel {
    let mut by_key: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    let mut m = NaiveModel::default();
    for (k, t) in writes {
        by_key.entry(k).or_default().push(t);
        m.writes += 1;
    }
    for times in by_key.values_mut() {
        times.sort_unstable();
        let mut free_at = i64::MIN;
        for &t in times.iter() {
            let tries = if t >= free_at {
                0
            } else {
                (free_at - t + SLOT_MS - 1) / SLOT_MS
            };
            let done = t + tries * SLOT_MS;
            m.retries += usize::try_from(tries).unwrap_or(0);
            if tries > 0 {
                m.delayed += 1;
                m.max_wait_ms = m.max_wait_ms.max(done - t);
            }
            free_at = done + SLOT_MS;
        }
    }
    m
}

/// Inverse-CDF sampling of a Zipf(s) distribution over ranks `0..n`
/// (rank `k` has weight `1 / (k + 1)^s`).
#[derive(Debug, Clone)]
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    /// The distribution over `n` ranks (at least one).
    #[must_use]
    pub fn new(n: usize, s: f64) -> Self {
        let mut cdf = Vec::with_capacity(n.max(1));
        let mut sum = 0.0;
        for k in 1..=n.max(1) {
            #[allow(clippy::cast_precision_loss)]
            let w = 1.0 / (k as f64).powf(s);
            sum += w;
            cdf.push(sum);
        }
        for c in &mut cdf {
            *c /= sum;
        }
        Self { cdf }
    }

    /// The rank for a uniform `u` in `[0, 1)`.
    #[must_use]
    pub fn rank(&self, u: f64) -> usize {
        self.cdf
            .partition_point(|&c| c <= u)
            .min(self.cdf.len() - 1)
    }
}

/// A small deterministic generator (xorshift64*) for the workloads.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded (a zero seed is replaced).
    #[must_use]
    pub fn new(seed: u64) -> Self {
        Self(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// Uniform in `[0, 1)`.
    pub fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        #[allow(clippy::cast_precision_loss)]
        let u = (x >> 11) as f64 / (1u64 << 53) as f64;
        u
    }
}

/// Queue wiring from wrangler.toml: which queue each producer binding
/// sends to, and which queues this Worker consumes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Topology {
    /// Binding → queue name.
    pub producers: BTreeMap<String, String>,
    /// Queues with a consumer in this Worker.
    pub consumed: BTreeSet<String>,
}

/// Reads [`Topology`] from the text of wrangler.toml.
#[must_use]
pub fn topology(text: &str) -> Topology {
    let mut t = Topology::default();
    let Ok(cfg) = text.parse::<toml::Table>() else {
        return t;
    };
    let queues = cfg.get("queues");
    let list = |name: &str| {
        queues
            .and_then(|q| q.get(name))
            .and_then(toml::Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    for p in list("producers") {
        if let (Some(b), Some(q)) = (
            p.get("binding").and_then(toml::Value::as_str),
            p.get("queue").and_then(toml::Value::as_str),
        ) {
            t.producers.insert(b.to_owned(), q.to_owned());
        }
    }
    for c in list("consumers") {
        if let Some(q) = c.get("queue").and_then(toml::Value::as_str) {
            t.consumed.insert(q.to_owned());
        }
    }
    t
}

// ---------------------------------------------------------------- counts

/// Operation totals of one run (or per upload, after [`Ops::per`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Ops {
    /// Worker `fetch` requests.
    pub worker_requests: f64,
    /// Queue consumer invocations (batches).
    pub queue_invocations: f64,
    /// Durable Object requests (stub calls).
    pub do_requests: f64,
    /// Alarm invocations (billed as Durable Object requests).
    pub do_alarms: f64,
    /// Summed wall time of object calls and alarms, seconds.
    pub do_busy_s: f64,
    /// SQLite rows read.
    pub sql_rows_read: f64,
    /// SQLite rows written.
    pub sql_rows_written: f64,
    /// `setAlarm` calls: each is billed as one row written (the Durable
    /// Objects pricing page says so of SQLite-backed objects).
    pub alarm_sets: f64,
    /// `deleteAlarm` calls: the pricing page names `setAlarm` only; they
    /// are priced as a row written each, an assumption on the dear side.
    /// Runs saved before they were counted read 0.
    #[serde(default)]
    pub alarm_deletes: f64,
    /// R2 Class A.
    pub r2_class_a: f64,
    /// R2 Class B.
    pub r2_class_b: f64,
    /// Queue writes (64 KB units).
    pub queue_writes: f64,
    /// Queue reads (64 KB units), derived: one per message sent to a
    /// consumed queue (retries not seen).
    pub queue_reads: f64,
    /// Queue deletes (64 KB units), derived.
    pub queue_deletes: f64,
    /// Runtime CPU (all processes of `wrangler dev`), ms.
    pub runtime_cpu_ms: f64,
}

fn num(v: &serde_json::Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

fn sum_map(v: &serde_json::Value) -> f64 {
    // `+ 0.0`: an empty float sum is −0.0, printed "-0.00".
    v.as_object()
        .map_or(0.0, |m| m.values().map(num).sum::<f64>())
        + 0.0
}

impl Ops {
    /// From the JSON `counts` of `GET /_bench/billing`.
    #[must_use]
    pub fn from_counts(c: &serde_json::Value, topo: &Topology) -> Self {
        let mut o = Self {
            worker_requests: num(&c["worker_requests"]),
            queue_invocations: num(&c["queue_invocations"]),
            do_requests: sum_map(&c["do_requests"]),
            do_alarms: num(&c["do_alarms"]),
            do_busy_s: num(&c["do_busy_ms"]) / 1000.0,
            sql_rows_read: num(&c["sql_rows_read"]),
            sql_rows_written: num(&c["sql_rows_written"]),
            alarm_sets: num(&c["alarm_sets"]),
            alarm_deletes: num(&c["alarm_deletes"]),
            r2_class_a: sum_map(&c["r2_class_a"]),
            r2_class_b: sum_map(&c["r2_class_b"]),
            ..Self::default()
        };
        if let Some(sent) = c["queue_sent"].as_object() {
            for (binding, s) in sent {
                let w = num(&s["write_ops"]);
                o.queue_writes += w;
                // Drained: every message sent to a queue consumed here was
                // delivered (a read) and acked (a delete) once. An older
                // build counted deliveries itself (`read_ops`); see the
                // Worker's billing module for why it no longer does.
                if topo
                    .producers
                    .get(binding)
                    .is_some_and(|q| topo.consumed.contains(q))
                {
                    o.queue_deletes += w;
                    o.queue_reads += w;
                }
            }
        }
        o
    }

    /// Every figure divided by `n`.
    #[must_use]
    pub fn per(&self, n: usize) -> Self {
        #[allow(clippy::cast_precision_loss)]
        let d = n.max(1) as f64;
        Self {
            worker_requests: self.worker_requests / d,
            queue_invocations: self.queue_invocations / d,
            do_requests: self.do_requests / d,
            do_alarms: self.do_alarms / d,
            do_busy_s: self.do_busy_s / d,
            sql_rows_read: self.sql_rows_read / d,
            sql_rows_written: self.sql_rows_written / d,
            alarm_sets: self.alarm_sets / d,
            alarm_deletes: self.alarm_deletes / d,
            r2_class_a: self.r2_class_a / d,
            r2_class_b: self.r2_class_b / d,
            queue_writes: self.queue_writes / d,
            queue_reads: self.queue_reads / d,
            queue_deletes: self.queue_deletes / d,
            runtime_cpu_ms: self.runtime_cpu_ms / d,
        }
    }

    /// Rows written as billed: the SQL statements' rows, and one per
    /// alarm set or deleted.
    #[must_use]
    pub fn billed_rows_written(&self) -> f64 {
        self.sql_rows_written + self.alarm_sets + self.alarm_deletes
    }

    /// Queue operations in all.
    #[must_use]
    pub fn queue_ops(&self) -> f64 {
        self.queue_writes + self.queue_reads + self.queue_deletes
    }
}

/// Dollars, by item, for a set of operations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Cost {
    /// Worker requests; queue consumer invocations are priced as requests
    /// too (an assumption: not confirmed from the pricing page).
    pub worker_requests: f64,
    /// Durable Object requests and alarms.
    pub do_requests: f64,
    /// Durable Object duration from the summed busy time (a lower bound).
    pub do_duration: f64,
    /// SQLite rows read.
    pub sql_rows_read: f64,
    /// SQLite rows written, alarm writes included
    /// ([`Ops::billed_rows_written`]).
    pub sql_rows_written: f64,
    /// R2 Class A.
    pub r2_class_a: f64,
    /// R2 Class B.
    pub r2_class_b: f64,
    /// Queue operations.
    pub queue_ops: f64,
    /// The sum of the above (CPU left out: see `cpu_upper_bound`).
    pub total: f64,
    /// Workers CPU at the local runtime's CPU (every workerd and node
    /// process: storage simulation included, so an upper bound).
    pub cpu_upper_bound: f64,
}

impl Cost {
    /// The cost of `o`.
    #[must_use]
    pub fn of(o: &Ops) -> Self {
        let mut c = Self {
            worker_requests: prices::WORKER_REQUESTS.usd(o.worker_requests + o.queue_invocations),
            do_requests: prices::DO_REQUESTS.usd(o.do_requests + o.do_alarms),
            do_duration: prices::DO_DURATION.usd(o.do_busy_s * prices::DO_BILLED_GB),
            sql_rows_read: prices::SQL_ROWS_READ.usd(o.sql_rows_read),
            sql_rows_written: prices::SQL_ROWS_WRITTEN.usd(o.billed_rows_written()),
            r2_class_a: prices::R2_CLASS_A.usd(o.r2_class_a),
            r2_class_b: prices::R2_CLASS_B.usd(o.r2_class_b),
            queue_ops: prices::QUEUE_OPS.usd(o.queue_ops()),
            total: 0.0,
            cpu_upper_bound: prices::WORKER_CPU_MS.usd(o.runtime_cpu_ms),
        };
        c.total = c.worker_requests
            + c.do_requests
            + c.do_duration
            + c.sql_rows_read
            + c.sql_rows_written
            + c.r2_class_a
            + c.r2_class_b
            + c.queue_ops;
        c
    }

    /// The cost of a million uploads each making `per_upload`.
    #[must_use]
    pub fn per_million(per_upload: &Ops) -> Self {
        let c = Self::of(per_upload);
        Self {
            worker_requests: c.worker_requests * 1e6,
            do_requests: c.do_requests * 1e6,
            do_duration: c.do_duration * 1e6,
            sql_rows_read: c.sql_rows_read * 1e6,
            sql_rows_written: c.sql_rows_written * 1e6,
            r2_class_a: c.r2_class_a * 1e6,
            r2_class_b: c.r2_class_b * 1e6,
            queue_ops: c.queue_ops * 1e6,
            total: c.total * 1e6,
            cpu_upper_bound: c.cpu_upper_bound * 1e6,
        }
    }
}

// ---------------------------------------------------------------- runs

/// One approach on one workload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Approach {
    /// `pipeline`, `naive` or `sync`.
    pub name: String,
    /// Requests sent.
    pub requests: usize,
    /// Uploads taken: `202` (pipeline), `201` (naive, sync).
    pub accepted: usize,
    /// Refused: `429` / `409` (sync).
    pub refused: usize,
    /// Other failures.
    pub errors: usize,
    /// The first of those.
    pub first_error: Option<String>,
    /// Seconds from the first request until the counts were read.
    pub until_done_s: f64,
    /// Whether the run ended drained (pipeline: `/stats` inflight 0).
    pub drained: bool,
    /// `/stats` reads whose operations are in the counts (a first check
    /// that found the pipeline not yet drained).
    pub stats_reads_counted: usize,
    /// The isolate that answered the counts.
    pub isolate: String,
    /// Totals as counted.
    pub measured: Ops,
    /// The 1 write/s rule's retries a naive client would make (naive only).
    pub naive_model: Option<NaiveModel>,
    /// Totals with the modelled retries.
    pub total: Ops,
    /// Per accepted upload.
    pub per_upload: Ops,
    /// Dollars per million accepted uploads.
    pub usd_per_million: Cost,
    /// The SQL statements that wrote the most rows, per accepted upload.
    pub top_sql_writes: Vec<SqlLine>,
    /// The Worker's counts as answered (object requests by binding, R2 by
    /// method, queues by binding and name, SQLite rows by statement).
    #[serde(default)]
    pub raw_counts: serde_json::Value,
}

/// One SQL statement's share, per accepted upload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SqlLine {
    /// The statement's first 60 characters.
    pub statement: String,
    /// Times run.
    pub runs: f64,
    /// Rows read.
    pub rows_read: f64,
    /// Rows written.
    pub rows_written: f64,
}

/// The `n` statements that wrote the most rows, divided by `uploads`.
#[must_use]
pub fn top_sql_writes(counts: &serde_json::Value, uploads: usize, n: usize) -> Vec<SqlLine> {
    #[allow(clippy::cast_precision_loss)]
    let d = uploads.max(1) as f64;
    let mut lines: Vec<SqlLine> = counts["sql_by_statement"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| SqlLine {
                    statement: k.clone(),
                    runs: num(&v[0]) / d,
                    rows_read: num(&v[1]) / d,
                    rows_written: num(&v[2]) / d,
                })
                .collect()
        })
        .unwrap_or_default();
    lines.sort_by(|a, b| b.rows_written.total_cmp(&a.rows_written));
    lines.truncate(n);
    lines
}

/// One workload through the three approaches.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Workload {
    /// `unique`, `zipf` or `storm`.
    pub name: String,
    /// How its keys are drawn.
    pub keys: String,
    /// Distinct keys written.
    pub distinct_keys: usize,
    /// The approaches.
    pub approaches: Vec<Approach>,
}

impl Workload {
    /// An approach by name.
    #[must_use]
    pub fn approach(&self, name: &str) -> Option<&Approach> {
        self.approaches.iter().find(|a| a.name == name)
    }
}

/// The scenario's result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CostResult {
    /// Sizes.
    pub config: CostConfig,
    /// Queue wiring used to derive deletes.
    pub topology: Topology,
    /// The workloads.
    pub workloads: Vec<Workload>,
    /// Whether the objects' SQLite rows showed in the Worker's counts (the
    /// Worker and its objects share one isolate).
    pub one_isolate: bool,
    /// The prices used.
    pub prices_read_on: String,
}

impl CostResult {
    /// Prices every approach again from its counts per upload, with this
    /// build's prices and billing rules (a run saved by an older build
    /// reads as this one would have priced it).
    pub fn reprice(&mut self) {
        for a in self
            .workloads
            .iter_mut()
            .flat_map(|w| w.approaches.iter_mut())
        {
            a.usd_per_million = Cost::per_million(&a.per_upload);
        }
    }

    /// A workload by name.
    #[must_use]
    pub fn workload(&self, name: &str) -> Option<&Workload> {
        self.workloads.iter().find(|w| w.name == name)
    }
}

/// The Worker's billing counts (`GET /_bench/billing`, `?reset=1` to zero
/// them) and the isolate that answered.
///
/// # Errors
/// The request failed or was not answered `200` with JSON.
pub(crate) fn billing(ctx: &Ctx, reset: bool) -> Result<(serde_json::Value, String), String> {
    let path = if reset {
        "/_bench/billing?reset=1"
    } else {
        "/_bench/billing"
    };
    let r = ctx
        .client
        .raw("GET", path, &[], None)
        .map_err(|e| e.to_string())?;
    if r.status != 200 {
        return Err(format!("GET {path}: HTTP {}: {}", r.status, r.text()));
    }
    let v = r.json().map_err(|e| e.to_string())?;
    let isolate = v["isolate"].as_str().unwrap_or_default().to_owned();
    Ok((v["counts"].clone(), isolate))
}

/// Waits until the counts stay the same for `quiet`, then returns them.
fn quiet_counts(
    ctx: &Ctx,
    quiet: Duration,
    deadline: Instant,
) -> Result<(serde_json::Value, String), String> {
    let mut last = billing(ctx, false)?;
    let mut since = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(250));
        let now = billing(ctx, false)?;
        if now.0 != last.0 {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= quiet || Instant::now() >= deadline {
            return Ok(now);
        }
    }
}

struct Sent {
    key: usize,
    start_ms: Option<i64>,
    outcome: Outcome,
}

enum Outcome {
    Accepted,
    Refused,
    Error(String),
}

#[allow(clippy::too_many_lines)]
fn run_approach(
    ctx: &Ctx,
    cfg: &CostConfig,
    topo: &Topology,
    workload: &str,
    approach: &str,
    keys: &[String],
    plan: &[usize],
) -> Result<Approach, String> {
    // Start from an idle pipeline: what an earlier scenario left in flight
    // would otherwise be counted here.
    let (_, idle) = ctx.wait_drained(ctx.commit_timeout);
    if !idle {
        return Err("the pipeline still had writes in flight before the run".into());
    }
    billing(ctx, true)?;
    let mark = CpuMark::now(ctx.pgid);
    let started = Instant::now();
    let clients = cfg.clients.max(1);
    #[allow(clippy::cast_precision_loss)]
    let seconds = plan.len() as f64 / cfg.rate.max(0.1);
    let spec = LoadSpec {
        clients,
        duration: Duration::from_secs_f64(seconds),
        rate: Some(cfg.rate),
    };
    let opts = PutOptions::content_type("application/octet-stream");
    let label = format!("cost: {workload} {approach}");
    let run = load::run(spec, &label, |c, i| {
        let g = i * clients + c;
        let &k = plan.get(g)?;
        let key = &keys[k];
        let b = body(&format!("cost {workload} {approach} {g} "), cfg.body_bytes);
        let outcome = match approach {
            "pipeline" => match ctx.client.put_object(key, &b, &opts) {
                Ok(_) => (Outcome::Accepted, None),
                Err(e) => (Outcome::Error(e.to_string()), None),
            },
            "naive" => {
                let path = format!("/_bench/direct/{}", encode_key(key));
                match ctx.client.raw("PUT", &path, &[], Some(&b)) {
                    Ok(r) if r.status == 201 => (
                        Outcome::Accepted,
                        r.json().ok().and_then(|v| v["start_ms"].as_i64()),
                    ),
                    Ok(r) => (
                        Outcome::Error(format!("HTTP {}: {}", r.status, r.text())),
                        None,
                    ),
                    Err(e) => (Outcome::Error(e.to_string()), None),
                }
            }
            _ => match ctx.client.put_object_sync(key, &b, &opts) {
                Ok(_) => (Outcome::Accepted, None),
                Err(ClientError::Api {
                    status: 429 | 409, ..
                }) => (Outcome::Refused, None),
                Err(e) => (Outcome::Error(e.to_string()), None),
            },
        };
        Some(Sent {
            key: k,
            start_ms: outcome.1,
            outcome: outcome.0,
        })
    });
    let sent: Vec<&Sent> = run.calls.iter().filter_map(|c| c.result.as_ref()).collect();
    let accepted = sent
        .iter()
        .filter(|s| matches!(s.outcome, Outcome::Accepted))
        .count();
    let refused = sent
        .iter()
        .filter(|s| matches!(s.outcome, Outcome::Refused))
        .count();
    let errs: Vec<&str> = sent
        .iter()
        .filter_map(|s| match &s.outcome {
            Outcome::Error(e) => Some(e.as_str()),
            _ => None,
        })
        .collect();
    // The Worker's own error answers fail the run; the local runtime's
    // transport losses only above the shared budget.
    judge_errors(ctx, &label, &errs, sent.len());

    // The end: counts quiet (long enough for a queue batch and an alarm),
    // then, for the pipeline, nothing in flight: the schedulers' last
    // stats pushes, up to `STATS_QUEUED_PUSH_INTERVAL_MS` apart, are
    // waited for through `/stats` (a read made before they land is
    // counted, and `stats_reads_counted` says so).
    let quiet = Duration::from_secs_f64(if approach == "pipeline" {
        cfg.quiet_s
    } else {
        (cfg.quiet_s / 2.0).max(0.5)
    });
    let deadline = Instant::now() + ctx.commit_timeout;
    let mut stats_reads_counted = 0;
    let (counts, isolate, drained) = loop {
        let (counts, isolate) = quiet_counts(ctx, quiet, deadline)?;
        if approach != "pipeline" {
            break (counts, isolate, true);
        }
        let idle = matches!(ctx.client.stats(), Ok(s) if s.inflight == 0);
        if idle || Instant::now() >= deadline {
            break (counts, isolate, idle);
        }
        stats_reads_counted += 1;
    };
    let until_done_s = started.elapsed().as_secs_f64();
    let cpu = mark.since(ctx.pgid);

    let mut measured = Ops::from_counts(&counts, topo);
    #[allow(clippy::cast_precision_loss)]
    if let Some(ms) = cpu.runtime_ms {
        measured.runtime_cpu_ms = ms as f64;
    }
    let mut total = measured;
    let naive_model = (approach == "naive").then(|| {
        let writes: Vec<(&str, i64)> = sent
            .iter()
            .filter_map(|s| s.start_ms.map(|t| (keys[s.key].as_str(), t)))
            .collect();
        let m = naive_retries(writes);
        #[allow(clippy::cast_precision_loss)]
        let r = m.retries as f64;
        total.worker_requests += r;
        total.r2_class_a += r;
        m
    });
    let per_upload = total.per(accepted);
    Ok(Approach {
        name: approach.to_owned(),
        requests: sent.len(),
        accepted,
        refused,
        errors: errs.len(),
        first_error: errs.first().map(|e| (*e).to_owned()),
        until_done_s,
        drained,
        stats_reads_counted,
        isolate,
        measured,
        naive_model,
        total,
        per_upload,
        usd_per_million: Cost::per_million(&per_upload),
        top_sql_writes: top_sql_writes(&counts, accepted, 8),
        raw_counts: counts,
    })
}

/// The key index of each upload of a workload, in sending order.
#[must_use]
pub fn plan(workload: &str, uploads: usize, storm_keys: usize, seed: u64) -> Vec<usize> {
    match workload {
        "unique" => (0..uploads).collect(),
        "zipf" => {
            let z = Zipf::new(ZIPF_KEYS, ZIPF_S);
            let mut rng = Rng::new(seed);
            (0..uploads).map(|_| z.rank(rng.uniform())).collect()
        }
        _ => (0..uploads).map(|i| i % storm_keys.max(1)).collect(),
    }
}

/// Runs the scenario.
pub fn run(ctx: &Ctx, cfg: &CostConfig, topo: &Topology) -> CostResult {
    eprintln!(
        "scenario: cost ({} uploads per workload and approach at {} /s, {} clients)",
        cfg.uploads, cfg.rate, cfg.clients
    );
    let mut workloads = Vec::new();
    let mut one_isolate = true;
    for (w, desc) in [
        ("unique", "every upload its own key".to_owned()),
        (
            "zipf",
            format!("Zipf({ZIPF_S}) over {ZIPF_KEYS} keys, inverse-CDF sampling, seed 7"),
        ),
        (
            "storm",
            format!("{} hot keys, round robin", cfg.storm_keys.max(1)),
        ),
    ] {
        let plan = plan(w, cfg.uploads, cfg.storm_keys, 7);
        let distinct = plan.iter().collect::<BTreeSet<_>>().len();
        let mut approaches = Vec::new();
        for a in ["pipeline", "naive", "sync"] {
            let n = plan.iter().max().map_or(0, |m| m + 1);
            let keys: Vec<String> = (0..n)
                .map(|k| ctx.key(&format!("cost/{w}/{a}/k{k:05}")))
                .collect();
            match run_approach(ctx, cfg, topo, w, a, &keys, &plan) {
                Ok(r) => {
                    if a == "pipeline" && !r.drained {
                        ctx.fail(format!("cost {w} pipeline: not drained when counted"));
                    }
                    if a == "pipeline" && r.accepted > 0 && r.measured.sql_rows_written <= 0.0 {
                        one_isolate = false;
                    }
                    eprintln!(
                        "  {w:<7} {a:<9} {:>5} sent {:>5} taken  ${:>8.2} per million uploads  (Worker {:.2}, DO {:.2}, rows w {:.1} + alarms {:.1}, R2 A {:.2}, queue ops {:.2} per upload)",
                        r.requests,
                        r.accepted,
                        r.usd_per_million.total,
                        r.per_upload.worker_requests,
                        r.per_upload.do_requests + r.per_upload.do_alarms,
                        r.per_upload.sql_rows_written,
                        r.per_upload.alarm_sets + r.per_upload.alarm_deletes,
                        r.per_upload.r2_class_a,
                        r.per_upload.queue_ops(),
                    );
                    approaches.push(r);
                }
                Err(e) => ctx.fail(format!("cost {w} {a}: {e}")),
            }
        }
        workloads.push(Workload {
            name: w.to_owned(),
            keys: desc,
            distinct_keys: distinct,
            approaches,
        });
    }
    if !one_isolate {
        ctx.fail("cost: the objects' SQLite rows do not show in the Worker's counts (the objects run in another isolate?)");
    }
    CostResult {
        config: *cfg,
        topology: topo.clone(),
        workloads,
        one_isolate,
        prices_read_on: prices::READ_ON.to_owned(),
    }
}

// ---------------------------------------------------------------- goals

/// One goal of the cost scenario.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Goal {
    /// What is compared.
    pub name: String,
    /// The bound.
    pub goal: String,
    /// The measured value.
    pub value: String,
    /// Met, not met, or not measured.
    pub met: Option<bool>,
    /// Why it was missed, from the figures.
    pub reason: Option<String>,
}

fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0).then(|| a / b)
}

/// The biggest cost items of `a` over those of `b`, for a missed goal.
fn cost_reason(a: &Cost, b: &Cost) -> String {
    let items = [
        ("Worker requests", a.worker_requests, b.worker_requests),
        ("DO requests", a.do_requests, b.do_requests),
        ("DO duration", a.do_duration, b.do_duration),
        (
            "rows written (SQL and alarms)",
            a.sql_rows_written,
            b.sql_rows_written,
        ),
        ("SQLite rows read", a.sql_rows_read, b.sql_rows_read),
        ("R2 Class A", a.r2_class_a, b.r2_class_a),
        ("R2 Class B", a.r2_class_b, b.r2_class_b),
        ("queue ops", a.queue_ops, b.queue_ops),
    ];
    let mut extra: Vec<(&str, f64, f64)> = items
        .iter()
        .filter(|(_, x, y)| x > y)
        .map(|&(n, x, y)| (n, x, y))
        .collect();
    extra.sort_by(|p, q| (q.1 - q.2).total_cmp(&(p.1 - p.2)));
    extra
        .iter()
        .take(3)
        .map(|(n, x, y)| format!("{n} ${x:.2} vs ${y:.2}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The cost goals; `ingest_vs_enqueue` is the ingest scenario's unique-key
/// `202` throughput over the bare enqueue, when it ran.
#[must_use]
pub fn goals(c: &CostResult, ingest_vs_enqueue: Option<f64>) -> Vec<Goal> {
    let mut out = Vec::new();
    for (w, bound) in [("unique", 1.25), ("zipf", 1.0), ("storm", 1.0)] {
        let pair = c
            .workload(w)
            .and_then(|wl| Some((wl.approach("pipeline")?, wl.approach("naive")?)));
        let r = pair.and_then(|(p, n)| ratio(p.usd_per_million.total, n.usd_per_million.total));
        out.push(Goal {
            name: format!("cost {w}: pipeline $ per upload vs naive"),
            goal: format!("<= {bound:.2}x"),
            value: match (r, pair) {
                (Some(r), Some((p, n))) => format!(
                    "{r:.2}x (${:.2} vs ${:.2} per million)",
                    p.usd_per_million.total, n.usd_per_million.total
                ),
                _ => "n/a".into(),
            },
            met: r.map(|r| r <= bound),
            reason: match (r, pair) {
                (Some(r), Some((p, n))) if r > bound => {
                    Some(cost_reason(&p.usd_per_million, &n.usd_per_million))
                }
                _ => None,
            },
        });
    }
    let storm_p = c.workload("storm").and_then(|w| w.approach("pipeline"));
    let storm_rows = storm_p.map(|p| p.per_upload.billed_rows_written());
    out.push(Goal {
        name: "storm: rows written per upload, alarm writes included (pipeline)".into(),
        goal: "<= 3".into(),
        value: match (storm_rows, storm_p) {
            (Some(v), Some(p)) => format!(
                "{v:.1} ({:.1} SQL, {:.1} alarm)",
                p.per_upload.sql_rows_written,
                p.per_upload.alarm_sets + p.per_upload.alarm_deletes
            ),
            _ => "n/a".into(),
        },
        met: storm_rows.map(|v| v <= 3.0),
        reason: storm_p
            .filter(|p| p.per_upload.billed_rows_written() > 3.0)
            .map(|p| {
                let top: Vec<String> = p
                    .top_sql_writes
                    .iter()
                    .take(4)
                    .map(|l| format!("`{}` {:.1}", l.statement, l.rows_written))
                    .collect();
                format!(
                    "rows written per upload by statement: {}; alarms set {:.1}, deleted {:.1}",
                    top.join(", "),
                    p.per_upload.alarm_sets,
                    p.per_upload.alarm_deletes
                )
            }),
    });
    for (w, bound) in [("unique", 1.5), ("storm", 0.8)] {
        let pair = c
            .workload(w)
            .and_then(|wl| Some((wl.approach("pipeline")?, wl.approach("naive")?)));
        let r = pair
            .filter(|(p, n)| p.measured.runtime_cpu_ms > 0.0 && n.measured.runtime_cpu_ms > 0.0)
            .and_then(|(p, n)| ratio(p.per_upload.runtime_cpu_ms, n.per_upload.runtime_cpu_ms));
        out.push(Goal {
            name: format!("cost {w}: runtime CPU per upload until drained vs naive"),
            goal: format!("<= {bound:.2}x"),
            value: match (r, pair) {
                (Some(r), Some((p, n))) => format!(
                    "{r:.2}x ({:.2} vs {:.2} ms)",
                    p.per_upload.runtime_cpu_ms, n.per_upload.runtime_cpu_ms
                ),
                _ => "n/a (runtime CPU not measured)".into(),
            },
            met: r.map(|r| r <= bound),
            reason: match (r, pair) {
                (Some(r), Some((p, _))) if r > bound => Some(format!(
                    "per upload the pipeline makes {:.1} Worker requests, {:.1} object calls and alarms, {:.1} SQLite statements' rows ({:.0} written, {:.0} read) and {:.1} queue operations; the naive put is one request and one R2 put",
                    p.per_upload.worker_requests + p.per_upload.queue_invocations,
                    p.per_upload.do_requests + p.per_upload.do_alarms,
                    p.per_upload.sql_rows_written + p.per_upload.sql_rows_read,
                    p.per_upload.sql_rows_written,
                    p.per_upload.sql_rows_read,
                    p.per_upload.queue_ops()
                )),
                _ => None,
            },
        });
    }
    out.push(Goal {
        name: "ingest: unique-key 202 throughput vs bare enqueue".into(),
        goal: ">= 0.40x".into(),
        value: ingest_vs_enqueue.map_or_else(
            || "n/a (ingest scenario not run)".into(),
            |v| format!("{v:.2}x"),
        ),
        met: ingest_vs_enqueue.map(|v| v >= 0.4),
        reason: None,
    });
    out
}

// ---------------------------------------------------------------- tables

fn fmt_met(m: Option<bool>) -> &'static str {
    match m {
        Some(true) => "met",
        Some(false) => "NOT MET",
        None => "n/a",
    }
}

/// The operations-and-cost table and the goals, as Markdown (for
/// docs/BENCHMARKS.md; `--cost-table <json>` prints it from a saved run).
#[must_use]
pub fn markdown(c: &CostResult, goals: &[Goal]) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "Per accepted upload; dollars per million uploads at the prices read {} (marginal paid-plan prices, allowances not subtracted; CPU apart). {} uploads per workload and approach at {} /s offered, {} clients, {} B bodies.\n",
        c.prices_read_on, c.config.uploads, c.config.rate, c.config.clients, c.config.body_bytes
    );
    let _ = writeln!(
        t,
        "| workload | approach | taken / sent | Worker req | queue inv. | DO req + alarms | rows w: SQL + alarm / r | R2 A / B | queue ops (w+r+d) | naive retries | $ / M uploads | runtime CPU ms / upload |"
    );
    let _ = writeln!(
        t,
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for w in &c.workloads {
        for a in &w.approaches {
            let p = &a.per_upload;
            let _ = writeln!(
                t,
                "| {} | {} | {} / {} | {:.2} | {:.3} | {:.2} | {:.1} + {:.1} / {:.1} | {:.2} / {:.2} | {:.2} | {} | {:.2} | {:.2} |",
                w.name,
                a.name,
                a.accepted,
                a.requests,
                p.worker_requests,
                p.queue_invocations,
                p.do_requests + p.do_alarms,
                p.sql_rows_written,
                p.alarm_sets + p.alarm_deletes,
                p.sql_rows_read,
                p.r2_class_a,
                p.r2_class_b,
                p.queue_ops(),
                a.naive_model
                    .map_or_else(|| "-".into(), |m| m.retries.to_string()),
                a.usd_per_million.total,
                p.runtime_cpu_ms,
            );
        }
    }
    let _ = writeln!(t, "\n| goal | bound | measured | result | why missed |");
    let _ = writeln!(t, "| --- | --- | --- | --- | --- |");
    for g in goals {
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {} |",
            g.name,
            g.goal,
            g.value,
            fmt_met(g.met),
            g.reason.as_deref().unwrap_or("")
        );
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn naive_writes_wait_for_their_slot() {
        // One key: 0 ok; 100 waits to 1000 (1 retry); 200 waits to 2000
        // (2 retries: 1200, 2200 — the slot frees at 2000, so 2200).
        let m = naive_retries([("a", 0), ("a", 100), ("a", 200)]);
        assert_eq!(m.writes, 3);
        assert_eq!(m.retries, 1 + 2);
        assert_eq!(m.delayed, 2);
        assert_eq!(m.max_wait_ms, 2000);
        // Writes a second apart, or to other keys, never retry.
        let m = naive_retries([("a", 0), ("b", 10), ("a", 1000), ("b", 2500)]);
        assert_eq!((m.retries, m.delayed), (0, 0));
        // Order of input does not matter.
        assert_eq!(
            naive_retries([("a", 200), ("a", 0), ("a", 100)]),
            naive_retries([("a", 0), ("a", 100), ("a", 200)])
        );
    }

    #[test]
    fn naive_backlog_grows_when_a_key_gets_more_than_one_write_per_second() {
        // Four writes per second to one key for 3 s. Worked by hand:
        // write i (sent at 250·i ms) needs i retries and is done at
        // 1250·i ms, so the retries add up to 0 + 1 + … + 11 = 66 and the
        // last write waits 11 s.
        let writes: Vec<(&str, i64)> = (0..12).map(|i| ("k", i * 250)).collect();
        let m = naive_retries(writes.iter().copied());
        assert_eq!(m.delayed, 11);
        assert_eq!(m.retries, 66);
        assert_eq!(m.max_wait_ms, 11_000);
    }

    #[test]
    fn zipf_ranks_follow_the_weights() {
        let z = Zipf::new(10_000, 1.1);
        assert_eq!(z.rank(0.0), 0);
        assert_eq!(z.rank(0.999_999_999), 9_999);
        let mut rng = Rng::new(7);
        let n = 200_000;
        let mut counts = vec![0usize; 10_000];
        for _ in 0..n {
            counts[z.rank(rng.uniform())] += 1;
        }
        let h: f64 = (1..=10_000).map(|k| 1.0 / f64::from(k).powf(1.1)).sum();
        #[allow(clippy::cast_precision_loss)]
        let share = |k: usize| counts[k] as f64 / f64::from(n);
        assert!((share(0) - 1.0 / h).abs() < 0.01, "rank 0: {}", share(0));
        assert!((share(1) - 1.0 / 2f64.powf(1.1) / h).abs() < 0.01);
        assert!(counts[0] > counts[1] && counts[1] > counts[9]);
    }

    #[test]
    fn plans_draw_their_keys() {
        assert_eq!(plan("unique", 4, 2, 1), vec![0, 1, 2, 3]);
        assert_eq!(plan("storm", 5, 2, 1), vec![0, 1, 0, 1, 0]);
        let z = plan("zipf", 1000, 2, 7);
        assert_eq!(z, plan("zipf", 1000, 2, 7));
        assert!(z.iter().all(|&k| k < ZIPF_KEYS));
        assert!(z.iter().collect::<BTreeSet<_>>().len() < 1000);
    }

    #[test]
    fn topology_and_derived_deletes() {
        let topo = topology(
            r#"
[[queues.producers]]
binding = "UPLOADS"
queue = "up"
[[queues.producers]]
binding = "EVENTS"
queue = "ev"
[[queues.consumers]]
queue = "up"
"#,
        );
        assert_eq!(
            topo.producers.get("UPLOADS").map(String::as_str),
            Some("up")
        );
        assert!(topo.consumed.contains("up") && !topo.consumed.contains("ev"));
        let counts = serde_json::json!({
            "worker_requests": 10, "queue_invocations": 2,
            "do_requests": {"SCHEDULER": 10, "STATS": 4}, "do_alarms": 3, "do_busy_ms": 500.0,
            "sql_rows_read": 100, "sql_rows_written": 40, "alarm_sets": 5, "alarm_deletes": 2,
            "r2_class_a": {"put": 10, "delete": 2}, "r2_class_b": {"head": 1},
            "queue_sent": {"UPLOADS": {"messages": 10, "write_ops": 10}, "EVENTS": {"messages": 10, "write_ops": 10}},
            "queue_consumed": {"up": {"batches": 2}},
        });
        let o = Ops::from_counts(&counts, &topo);
        assert_eq!(o.do_requests, 14.0);
        assert_eq!(o.r2_class_a, 12.0);
        assert_eq!(o.queue_writes, 20.0);
        // EVENTS has no consumer here: written, never read or deleted.
        assert_eq!(o.queue_reads, 10.0);
        assert_eq!(o.queue_deletes, 10.0);
        assert!((o.do_busy_s - 0.5).abs() < 1e-12);
        let per = o.per(10);
        assert!((per.queue_ops() - 4.0).abs() < 1e-12);
        let c = Cost::of(&per);
        let want = prices::R2_CLASS_A.usd(1.2) + prices::QUEUE_OPS.usd(4.0);
        assert!((c.r2_class_a + c.queue_ops - want).abs() < 1e-15);
        assert!(c.total > c.r2_class_a);
        // Each alarm set or deleted is billed as a row written.
        assert!((per.billed_rows_written() - 4.7).abs() < 1e-12);
        assert!((c.sql_rows_written - prices::SQL_ROWS_WRITTEN.usd(4.7)).abs() < 1e-15);
    }
}
