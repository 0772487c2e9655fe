//! Scenario 1: ingest. Throughput and latency of the `202` path with 1 KiB
//! bodies (unique keys, then a few hot keys), beside `GET /healthz` (the
//! cost of any request) and `POST /_bench/enqueue` (one queue send and a
//! `202`: the floor of this design on this runtime).
//!
//! Locally the consumer, the per-key schedulers and R2 run on the same two
//! cores (and in the same isolate) as the producer, so the `202` routes
//! are measured twice: as they are (committing while accepting), and with
//! the queue delivery deferred past the end of the run (the test route
//! `PUT /_test/delayed/{key}?delay=N`, the same producer code), which
//! shows the cost of the `202` path alone.

use std::time::Duration;

use pipeline_client::{Client, ClientError, PutOptions};
use serde::Serialize;

use crate::ctx::{body, is_runtime_transient, judge_errors, tally, Ctx, Tally};
use crate::load::{self, LoadSpec};
use crate::rss::{CpuMark, CpuUse};
use crate::stats::{ratio, Summary};

/// Sizes of the ingest scenario.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct IngestConfig {
    /// Concurrent clients.
    pub clients: usize,
    /// Measured seconds per route.
    pub seconds: f64,
    /// Unmeasured warm-up seconds per route.
    pub warmup_seconds: f64,
    /// Keys of the hot-key run.
    pub hot_keys: usize,
    /// Body size of the uploads.
    pub body_bytes: usize,
    /// Uploads whose final state is checked per pipeline route (all when 0).
    pub check_ids: usize,
    /// Lines per `POST /batch` of the batch route (1 to [`BATCH_LINES`]).
    /// Every accepted line is a unique-key commit the run then waits for:
    /// 100 lines from 8 clients leave minutes of backlog on 2 cores.
    pub batch_lines: usize,
}

/// One route under load.
#[derive(Debug, Clone, Serialize)]
pub struct RouteLoad {
    /// Short name.
    pub name: String,
    /// Method and path.
    pub route: String,
    /// Requests sent.
    pub requests: usize,
    /// Answered as expected.
    pub ok: usize,
    /// Anything else.
    pub errors: usize,
    /// The first error, if any.
    pub first_error: Option<String>,
    /// Of the errors, those lost in the local runtime's transport.
    pub runtime_errors: usize,
    /// Seconds from the first request to the last answer.
    pub elapsed_s: f64,
    /// Expected answers per second.
    pub throughput_rps: f64,
    /// Latency of every request, ms.
    pub latency_ms: Summary,
    /// Throughput ÷ the bare enqueue's.
    pub throughput_vs_enqueue: Option<f64>,
    /// Throughput ÷ `/healthz`'s.
    pub throughput_vs_healthz: Option<f64>,
    /// p50 latency ÷ the bare enqueue's.
    pub p50_vs_enqueue: Option<f64>,
    /// p99 latency ÷ the bare enqueue's.
    pub p99_vs_enqueue: Option<f64>,
    /// Seconds until `/stats` showed nothing in flight afterwards.
    pub drain_s: Option<f64>,
    /// CPU used while the load ran (runtime and load generator).
    pub cpu_during_load: CpuUse,
    /// CPU used from the start of the load until the pipeline drained.
    pub cpu_until_drained: Option<CpuUse>,
    /// Runtime CPU per expected answer while the load ran, ms (`None`
    /// with `--url`).
    pub runtime_cpu_ms_per_request: Option<f64>,
    /// Runtime CPU per expected answer from the start of the load until the
    /// pipeline drained (consumer, schedulers and R2 included), ms.
    pub runtime_cpu_ms_per_request_until_drained: Option<f64>,
    /// Runtime CPU during the load ÷ wall time: cores busy.
    pub runtime_cores_busy: Option<f64>,
    /// Terminal states of the checked uploads (pipeline routes).
    pub checked: Option<Tally>,
}

/// The scenario's figures.
#[derive(Debug, Clone, Serialize)]
pub struct IngestResult {
    /// Its inputs.
    pub config: IngestConfig,
    /// `/healthz`, bare enqueue, the 202 path alone, unique keys, hot keys,
    /// batches.
    pub routes: Vec<RouteLoad>,
    /// Lines per `POST /batch` of the batch route.
    pub batch_lines: usize,
    /// Uploads accepted per second through `POST /batch` (accepted lines
    /// over the route's elapsed time).
    pub batch_uploads_per_s: Option<f64>,
    /// That over the single-PUT unique-key route's accepted uploads/s.
    pub batch_vs_single_put: Option<f64>,
}

/// The most lines a `POST /batch` takes (the API's limit), and the
/// default of [`IngestConfig::batch_lines`].
pub const BATCH_LINES: usize = 100;

/// Standard base64 (with padding) of `bytes`, for `body_base64`.
#[must_use]
pub fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (j, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if j <= chunk.len() {
                out.push(char::from(A[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

impl IngestResult {
    /// A route by name.
    #[must_use]
    pub fn route(&self, name: &str) -> Option<&RouteLoad> {
        self.routes.iter().find(|r| r.name == name)
    }
}

type Outcome = Result<Option<String>, String>;

fn expect_status(r: Result<pipeline_client::RawResponse, ClientError>, status: u16) -> Outcome {
    match r {
        Ok(resp) if resp.status == status => Ok(None),
        Ok(resp) => Err(format!("HTTP {}: {}", resp.status, resp.text())),
        Err(e) => Err(e.to_string()),
    }
}

fn per_request(cpu: &CpuUse, ok: usize) -> Option<f64> {
    #[allow(clippy::cast_precision_loss)]
    cpu.runtime_ms
        .filter(|_| ok > 0)
        .map(|ms| ms as f64 / ok as f64)
}

fn measure<F>(
    ctx: &Ctx,
    cfg: &IngestConfig,
    name: &str,
    route: &str,
    f: F,
) -> (RouteLoad, Vec<String>, CpuMark)
where
    F: Fn(&Client, usize, usize) -> Outcome + Sync,
{
    let client = &ctx.client;
    if cfg.warmup_seconds > 0.0 {
        let _ = load::run(
            LoadSpec {
                clients: cfg.clients,
                duration: Duration::from_secs_f64(cfg.warmup_seconds),
                rate: None,
            },
            &format!("{name} (warm-up)"),
            |c, i| f(client, c, 1_000_000 + i),
        );
    }
    let mark = CpuMark::now(ctx.pgid);
    let run = load::run(
        LoadSpec {
            clients: cfg.clients,
            duration: Duration::from_secs_f64(cfg.seconds),
            rate: None,
        },
        name,
        |c, i| f(client, c, i),
    );
    let cpu = mark.since(ctx.pgid);
    let latencies: Vec<f64> = run.calls.iter().map(|c| c.latency_ms).collect();
    let ok = run.calls.iter().filter(|c| c.result.is_ok()).count();
    let first_error = run.calls.iter().find_map(|c| c.result.clone().err());
    let errors: Vec<&str> = run
        .calls
        .iter()
        .filter_map(|c| c.result.as_ref().err().map(String::as_str))
        .collect();
    judge_errors(ctx, name, &errors, run.calls.len());
    let ids: Vec<String> = run
        .calls
        .iter()
        .filter_map(|c| c.result.clone().ok().flatten())
        .collect();
    let r = RouteLoad {
        name: name.to_owned(),
        route: route.to_owned(),
        requests: run.calls.len(),
        ok,
        errors: run.calls.len() - ok,
        runtime_errors: run
            .calls
            .iter()
            .filter(|c| matches!(&c.result, Err(e) if is_runtime_transient(e)))
            .count(),
        first_error,
        elapsed_s: run.elapsed_s,
        throughput_rps: run.rate(ok),
        latency_ms: Summary::of(&latencies),
        throughput_vs_enqueue: None,
        throughput_vs_healthz: None,
        p50_vs_enqueue: None,
        p99_vs_enqueue: None,
        drain_s: None,
        checked: None,
        runtime_cpu_ms_per_request: per_request(&cpu, ok),
        runtime_cpu_ms_per_request_until_drained: None,
        #[allow(clippy::cast_precision_loss)]
        runtime_cores_busy: cpu
            .runtime_ms
            .filter(|_| cpu.wall_ms > 0)
            .map(|ms| ms as f64 / cpu.wall_ms as f64),
        cpu_during_load: cpu,
        cpu_until_drained: None,
    };
    eprintln!(
        "  {name:<22} {:>8.1} req/s  p50 {:>7.1} ms  p99 {:>7.1} ms  ({} requests, {} errors, runtime {} cores busy, bench {:.2} cores)",
        r.throughput_rps,
        r.latency_ms.p50,
        r.latency_ms.p99,
        r.requests,
        r.errors,
        r.runtime_cores_busy
            .map_or_else(|| "?".into(), |c| format!("{c:.2}")),
        {
            #[allow(clippy::cast_precision_loss)]
            let c = cpu.bench_ms as f64 / cpu.wall_ms.max(1) as f64;
            c
        }
    );
    (r, ids, mark)
}

/// Every `n`-th of `ids` so that about `want` are kept (all when `want` is 0).
#[must_use]
pub fn sample_ids(ids: &[String], want: usize) -> Vec<String> {
    if want == 0 || ids.len() <= want {
        return ids.to_vec();
    }
    let step = ids.len().div_ceil(want);
    let mut out: Vec<String> = ids.iter().step_by(step).cloned().collect();
    if let Some(last) = ids.last() {
        if out.last() != Some(last) {
            out.push(last.clone());
        }
    }
    out
}

/// How long the batch route's backlog may go without draining further
/// before the bench gives up on it (it may take minutes in all).
const BATCH_DRAIN_STALL: Duration = Duration::from_secs(30);

/// Waits for the route's writes to drain (`backlog`: as long as the
/// in-flight count keeps falling, for a route that leaves one), then
/// checks the statuses of a sample of `ids`.
fn drain_and_check(
    ctx: &Ctx,
    cfg: &IngestConfig,
    r: &mut RouteLoad,
    ids: &[String],
    mark: &CpuMark,
    backlog: bool,
) {
    let (waited, drained) = if backlog {
        ctx.wait_drained_progressing(BATCH_DRAIN_STALL)
    } else {
        ctx.wait_drained(ctx.commit_timeout)
    };
    let cpu = mark.since(ctx.pgid);
    r.runtime_cpu_ms_per_request_until_drained = per_request(&cpu, r.ok);
    r.cpu_until_drained = Some(cpu);
    r.drain_s = Some(waited);
    if !drained {
        eprintln!("  warning: /stats still shows writes in flight after {waited:.0} s");
    }
    let sample = sample_ids(ids, cfg.check_ids);
    let refs: Vec<&str> = sample.iter().map(String::as_str).collect();
    let statuses = ctx.terminal_all(&refs, &format!("{} statuses", r.name));
    r.checked = Some(tally(ctx, &r.name, &statuses));
}

/// Runs the scenario.
pub fn run(ctx: &Ctx, cfg: &IngestConfig) -> IngestResult {
    eprintln!(
        "scenario 1: ingest ({} clients, {} s per route, {} B bodies)",
        cfg.clients, cfg.seconds, cfg.body_bytes
    );
    let payload = body("ingest ", cfg.body_bytes);
    let opts = PutOptions::default();

    let (healthz, _, _) = measure(ctx, cfg, "healthz", "GET /healthz", |c, _, _| {
        expect_status(c.raw("GET", "/healthz", &[], None), 200)
    });
    let (enqueue, _, _) = measure(
        ctx,
        cfg,
        "bare enqueue",
        "POST /_bench/enqueue",
        |c, _, _| expect_status(c.raw("POST", "/_bench/enqueue", &[], Some(b"")), 202),
    );
    // Let the consumer ack the no-op messages before the next route.
    std::thread::sleep(Duration::from_secs(1));

    let accept = |c: &Client, key: &str| -> Outcome {
        c.put_object(key, &payload, &opts)
            .map(|a| Some(a.id))
            .map_err(|e| e.to_string())
    };
    // The same producer code path with the message's delivery deferred past
    // the end of the route's run: the 202 path alone, without the consumer
    // and the schedulers competing for the same cores.
    let deferred_prefix = ctx.key("ingest/deferred");
    let hot_keys = cfg.hot_keys.max(1);
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let delay = (cfg.warmup_seconds + cfg.seconds).ceil() as u64 + 2;
    let (mut deferred, deferred_ids, mark) = measure(
        ctx,
        cfg,
        "pipeline 202 path alone",
        "PUT /_test/delayed/{key}?delay=N (202)",
        |c, client, i| {
            let path = format!(
                "/_test/delayed/{deferred_prefix}/k{:02}?delay={delay}",
                (client + i) % hot_keys
            );
            let resp = c
                .raw("PUT", &path, &[], Some(&payload))
                .map_err(|e| e.to_string())?;
            if resp.status != 202 {
                return Err(format!("HTTP {}: {}", resp.status, resp.text()));
            }
            let v = resp.json().map_err(|e| e.to_string())?;
            v.get("id")
                .and_then(serde_json::Value::as_str)
                .map(|id| Some(id.to_owned()))
                .ok_or_else(|| format!("no id in {v}"))
        },
    );
    deferred.route = format!(
        "PUT /_test/delayed/{{key}}?delay={delay} (202), {hot_keys} keys, delivery deferred"
    );
    drain_and_check(ctx, cfg, &mut deferred, &deferred_ids, &mark, false);

    let unique_prefix = ctx.key("ingest/unique");
    let (mut unique, unique_ids, mark) = measure(
        ctx,
        cfg,
        "pipeline unique keys",
        "PUT /objects/{key} (202)",
        |c, client, i| accept(c, &format!("{unique_prefix}/c{client}-{i}")),
    );
    drain_and_check(ctx, cfg, &mut unique, &unique_ids, &mark, false);

    let hot_prefix = ctx.key("ingest/hot");
    let (mut hot, hot_ids, mark) = measure(
        ctx,
        cfg,
        "pipeline hot keys",
        "PUT /objects/{key} (202)",
        |c, client, i| accept(c, &format!("{hot_prefix}/k{:02}", (client + i) % hot_keys)),
    );
    hot.route = format!("PUT /objects/{{key}} (202), {hot_keys} keys");
    drain_and_check(ctx, cfg, &mut hot, &hot_ids, &mark, false);

    // The same unique-key writes, `batch_lines` to a POST /batch.
    let lines = cfg.batch_lines.clamp(1, BATCH_LINES);
    let batch_prefix = ctx.key("ingest/batch");
    let b64 = base64(&payload);
    let (mut batch, batch_ids, mark) =
        measure(ctx, cfg, "pipeline batch", "POST /batch", |c, client, i| {
            let mut nd = String::new();
            for l in 0..lines {
                let line = serde_json::json!({
                    "op": "put",
                    "key": format!("{batch_prefix}/c{client}-{i}-{l}"),
                    "body_base64": b64,
                });
                nd.push_str(&line.to_string());
                nd.push('\n');
            }
            let resp = c
                .raw(
                    "POST",
                    "/batch",
                    &[("Content-Type", "application/x-ndjson")],
                    Some(nd.as_bytes()),
                )
                .map_err(|e| e.to_string())?;
            let v = resp.json().map_err(|e| e.to_string())?;
            if resp.status != 200 || v["accepted"].as_u64() != Some(lines as u64) {
                return Err(format!("HTTP {}: {}", resp.status, resp.text()));
            }
            // One id per batch for the status check: the last line's.
            Ok(v["results"][lines - 1]["id"].as_str().map(str::to_owned))
        });
    batch.route = format!("POST /batch ({lines} unique-key puts per request)");
    drain_and_check(ctx, cfg, &mut batch, &batch_ids, &mark, true);
    #[allow(clippy::cast_precision_loss)]
    let batch_uploads_per_s =
        (batch.elapsed_s > 0.0).then(|| (batch.ok * lines) as f64 / batch.elapsed_s);
    let batch_vs_single_put = batch_uploads_per_s.and_then(|b| ratio(b, unique.throughput_rps));
    eprintln!(
        "  batch: {} uploads/s accepted through POST /batch ({}x the single PUTs)",
        batch_uploads_per_s.map_or_else(|| "?".into(), |v| format!("{v:.0}")),
        batch_vs_single_put.map_or_else(|| "?".into(), |v| format!("{v:.1}"))
    );

    let mut routes = vec![healthz, enqueue, deferred, unique, hot, batch];
    let (enq_rps, enq_p50, enq_p99) = (
        routes[1].throughput_rps,
        routes[1].latency_ms.p50,
        routes[1].latency_ms.p99,
    );
    let health_rps = routes[0].throughput_rps;
    for r in &mut routes {
        r.throughput_vs_enqueue = ratio(r.throughput_rps, enq_rps);
        r.throughput_vs_healthz = ratio(r.throughput_rps, health_rps);
        r.p50_vs_enqueue = ratio(r.latency_ms.p50, enq_p50);
        r.p99_vs_enqueue = ratio(r.latency_ms.p99, enq_p99);
    }
    IngestResult {
        config: *cfg,
        routes,
        batch_lines: lines,
        batch_uploads_per_s,
        batch_vs_single_put,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_vectors() {
        // RFC 4648, section 10.
        for (plain, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), enc);
        }
        assert_eq!(base64(&[0xff, 0xfe, 0xfd]), "//79");
    }

    #[test]
    fn samples_keep_the_last_id() {
        let ids: Vec<String> = (0..10).map(|i| i.to_string()).collect();
        assert_eq!(sample_ids(&ids, 0).len(), 10);
        assert_eq!(sample_ids(&ids, 20).len(), 10);
        let s = sample_ids(&ids, 3);
        assert_eq!(s, vec!["0", "4", "8", "9"]);
    }
}
