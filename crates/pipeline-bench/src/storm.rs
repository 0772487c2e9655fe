//! Scenario 2: the hot-key storm. The same paced load (clients, keys,
//! seconds, offered rate) through three ways of writing to R2:
//!
//! - the pipeline (`PUT /objects/{key}`, `202`), checked end to end: every
//!   id terminal, `committed_at` spacing per key, the final object is the
//!   newest accepted write (body and `upload-id`), commit lag of that write;
//! - the naive direct write (`PUT /_bench/direct/{key}`): how many writes
//!   R2 would have rejected (the local runtime does not enforce the limit);
//! - the synchronous mode (`PUT /objects/{key}?mode=sync`), the
//!   rate-limiter approach: how many `429`s its clients get.

use std::collections::BTreeMap;
use std::time::Duration;

use pipeline_client::{encode_key, ClientError, GetOptions, PutOptions, Stats, UploadState};
use serde::Serialize;

use crate::ctx::{body, is_runtime_transient, judge_errors, tally, Ctx, Tally};
use crate::load::{self, Call, LoadRun, LoadSpec};
use crate::rss::{CpuMark, CpuUse};
use crate::stats::{parse_ms, spacing, would_be_rejected, writes_per_second, Summary};

/// R2's limit: one write per second per key.
pub const SPACING_MS: i64 = 1000;

/// Sizes of the storm.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct StormConfig {
    /// Hot keys.
    pub keys: usize,
    /// Concurrent clients.
    pub clients: usize,
    /// Seconds of load per approach.
    pub seconds: f64,
    /// Offered requests/s in all (`None`: as fast as answers come).
    pub rate: Option<f64>,
    /// Body size.
    pub body_bytes: usize,
}

/// `/stats` after minus before.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct StatsDelta {
    /// Writes given an id.
    pub accepted: i64,
    /// Ids committed.
    pub committed: i64,
    /// Ids superseded.
    pub superseded: i64,
    /// Ids failed.
    pub failed: i64,
    /// R2 puts and deletes of user keys.
    pub r2_writes: i64,
    /// `429` answers.
    pub rate_limited: i64,
}

impl StatsDelta {
    fn between(a: &Stats, b: &Stats) -> Self {
        Self {
            accepted: b.accepted - a.accepted,
            committed: b.committed - a.committed,
            superseded: b.superseded - a.superseded,
            failed: b.failed - a.failed,
            r2_writes: b.r2_writes - a.r2_writes,
            rate_limited: b.rate_limited - a.rate_limited,
        }
    }
}

/// One approach under the storm.
#[derive(Debug, Clone, Serialize)]
pub struct StormRoute {
    /// `pipeline`, `naive` or `sync`.
    pub name: String,
    /// Method and path.
    pub route: String,
    /// Requests sent.
    pub requests: usize,
    /// Requests per second achieved (sent ÷ elapsed).
    pub achieved_rps: f64,
    /// Latency of every request, ms.
    pub latency_ms: Summary,
    /// Uploads taken on the first try (`202`, or `201`).
    pub accepted_first_try: usize,
    /// As a percentage of requests.
    pub accepted_first_try_pct: f64,
    /// Uploads refused: `429`s (sync), writes R2 would have rejected
    /// (naive), non-`202` answers (pipeline).
    pub rejected: usize,
    /// As a percentage of requests.
    pub rejected_pct: f64,
    /// `409 newer_write_pending` (sync only).
    pub conflicts: usize,
    /// Other failures (transport, 5xx, off-contract answers).
    pub errors: usize,
    /// The first of those.
    pub first_error: Option<String>,
    /// Of the errors, those lost in the local runtime's transport (counted
    /// in `rejected` for the pipeline: not accepted on the first try).
    pub runtime_errors: usize,
    /// Writes that reached R2.
    pub r2_writes: usize,
    /// R2 writes per key per second, the busiest key.
    pub writes_per_key_per_s_max: f64,
    /// R2 writes per key per second, mean over keys.
    pub writes_per_key_per_s_mean: f64,
    /// Consecutive writes to a key that started under 1000 ms apart.
    pub spacing_violations: usize,
    /// The shortest gap between two writes to one key, ms.
    pub min_gap_ms: Option<i64>,
    /// Uploads accepted per R2 write.
    pub coalescing_ratio: Option<f64>,
    /// `committed_at − accepted_at` of the newest write per key, ms.
    pub commit_lag_ms: Option<Summary>,
    /// Keys whose final object was checked.
    pub finals_checked: usize,
    /// Keys whose final object is the newest write.
    pub finals_correct: usize,
    /// Terminal states of every accepted id (pipeline).
    pub statuses: Option<Tally>,
    /// `/stats` after minus before (the pipeline and sync runs).
    pub stats_delta: Option<StatsDelta>,
    /// Seconds until nothing was in flight after the load (pipeline).
    pub drain_s: Option<f64>,
    /// CPU from the start of the load until its work was done (for the
    /// pipeline: until drained).
    pub cpu: CpuUse,
    /// Runtime CPU per request, ms (`None` with `--url`).
    pub runtime_cpu_ms_per_request: Option<f64>,
    /// Start time of every R2 write (Unix ms), by key index: the data of
    /// the writes-per-key chart (`charts`).
    pub write_starts_ms: BTreeMap<usize, Vec<i64>>,
    /// `committed_at − accepted_at` of every committed write, ms
    /// (pipeline): the data of the commit-lag chart.
    pub commit_lags_all_ms: Vec<f64>,
}

impl StormRoute {
    fn new(name: &str, route: &str, run_len: usize, elapsed_s: f64) -> Self {
        Self {
            name: name.into(),
            route: route.into(),
            requests: run_len,
            achieved_rps: if elapsed_s > 0.0 {
                #[allow(clippy::cast_precision_loss)]
                let n = run_len as f64;
                n / elapsed_s
            } else {
                0.0
            },
            latency_ms: Summary::default(),
            accepted_first_try: 0,
            accepted_first_try_pct: 0.0,
            rejected: 0,
            rejected_pct: 0.0,
            conflicts: 0,
            errors: 0,
            first_error: None,
            runtime_errors: 0,
            r2_writes: 0,
            writes_per_key_per_s_max: 0.0,
            writes_per_key_per_s_mean: 0.0,
            spacing_violations: 0,
            min_gap_ms: None,
            coalescing_ratio: None,
            commit_lag_ms: None,
            finals_checked: 0,
            finals_correct: 0,
            statuses: None,
            stats_delta: None,
            drain_s: None,
            cpu: CpuUse::default(),
            runtime_cpu_ms_per_request: None,
            write_starts_ms: BTreeMap::new(),
            commit_lags_all_ms: Vec::new(),
        }
    }

    fn set_cpu(&mut self, cpu: CpuUse) {
        #[allow(clippy::cast_precision_loss)]
        let per = cpu
            .runtime_ms
            .filter(|_| self.requests > 0)
            .map(|ms| ms as f64 / self.requests as f64);
        self.runtime_cpu_ms_per_request = per;
        self.cpu = cpu;
    }

    fn set_counts(&mut self, accepted: usize, rejected: usize) {
        self.accepted_first_try = accepted;
        self.rejected = rejected;
        self.accepted_first_try_pct = pct(accepted, self.requests);
        self.rejected_pct = pct(rejected, self.requests);
    }

    /// Per-key rate and spacing figures from write start times.
    fn set_writes(&mut self, starts_by_key: &BTreeMap<usize, Vec<i64>>) {
        let rates: Vec<f64> = starts_by_key
            .values()
            .map(|s| writes_per_second(s))
            .collect();
        self.writes_per_key_per_s_max = rates.iter().copied().fold(0.0, f64::max);
        self.writes_per_key_per_s_mean = Summary::of(&rates).mean;
        self.r2_writes = starts_by_key.values().map(Vec::len).sum();
        self.write_starts_ms = starts_by_key.clone();
        for starts in starts_by_key.values() {
            let s = spacing(starts, SPACING_MS);
            self.spacing_violations += s.violations;
            if let Some(g) = s.min_gap_ms {
                self.min_gap_ms = Some(self.min_gap_ms.map_or(g, |m| m.min(g)));
            }
        }
    }
}

fn pct(n: usize, of: usize) -> f64 {
    if of == 0 {
        return 0.0;
    }
    #[allow(clippy::cast_precision_loss)]
    let r = n as f64 * 100.0 / of as f64;
    r
}

/// The scenario's figures.
#[derive(Debug, Clone, Serialize)]
pub struct StormResult {
    /// Its inputs.
    pub config: StormConfig,
    /// Pipeline, naive direct write, sync mode.
    pub routes: Vec<StormRoute>,
    /// How soon a client learns its write ended: `Prefer: wait` against
    /// polling the status, under the same storm.
    pub completion: Option<Completion>,
}

/// Time from sending a write to knowing its terminal state, ms.
#[derive(Debug, Clone, Serialize)]
pub struct Completion {
    /// `PUT` with `Prefer: wait=30`: the answer carries the final status.
    pub prefer_wait: Summary,
    /// Of those, the writes that ended committed.
    pub prefer_wait_committed: Summary,
    /// `PUT` (202), then `GET /uploads/{id}?wait=30` until terminal.
    pub polling: Summary,
    /// Of those, the writes that ended committed.
    pub polling_committed: Summary,
    /// Answers that were not a terminal status (a 202 after the wait, or
    /// an error), per approach.
    pub prefer_not_terminal: usize,
    pub polling_not_terminal: usize,
}

impl StormResult {
    /// An approach by name.
    #[must_use]
    pub fn route(&self, name: &str) -> Option<&StormRoute> {
        self.routes.iter().find(|r| r.name == name)
    }
}

fn marker(approach: &str, c: usize, i: usize) -> String {
    format!("storm {approach} c{c} i{i} ")
}

fn spec(cfg: &StormConfig) -> LoadSpec {
    LoadSpec {
        clients: cfg.clients,
        duration: Duration::from_secs_f64(cfg.seconds),
        rate: cfg.rate,
    }
}

fn key_of(cfg: &StormConfig, c: usize, i: usize) -> usize {
    (c + i) % cfg.keys.max(1)
}

fn latency<T>(run: &LoadRun<T>) -> Summary {
    Summary::of(&run.calls.iter().map(|c| c.latency_ms).collect::<Vec<_>>())
}

struct Accepted {
    id: String,
    accepted_ms: i64,
}

fn pipeline(ctx: &Ctx, cfg: &StormConfig) -> StormRoute {
    let keys: Vec<String> = (0..cfg.keys)
        .map(|k| ctx.key(&format!("storm/pipeline/k{k:02}")))
        .collect();
    let before = ctx.client.stats().ok();
    let opts = PutOptions::content_type("application/octet-stream");
    let mark = CpuMark::now(ctx.pgid);
    let run = load::run(spec(cfg), "storm: pipeline", |c, i| {
        let b = body(&marker("pipeline", c, i), cfg.body_bytes);
        ctx.client
            .put_object(&keys[key_of(cfg, c, i)], &b, &opts)
            .map_err(|e| e.to_string())
            .and_then(|a| {
                parse_ms(&a.accepted_at)
                    .map(|accepted_ms| Accepted {
                        id: a.id.clone(),
                        accepted_ms,
                    })
                    .ok_or_else(|| format!("bad accepted_at {}", a.accepted_at))
            })
    });
    let mut r = StormRoute::new(
        "pipeline",
        "PUT /objects/{key} (202)",
        run.calls.len(),
        run.elapsed_s,
    );
    r.latency_ms = latency(&run);
    let accepted: Vec<&Call<Result<Accepted, String>>> =
        run.calls.iter().filter(|c| c.result.is_ok()).collect();
    r.set_counts(accepted.len(), run.calls.len() - accepted.len());
    r.errors = r.rejected;
    r.first_error = run
        .calls
        .iter()
        .find_map(|c| c.result.as_ref().err().cloned());
    let errors: Vec<&str> = run
        .calls
        .iter()
        .filter_map(|c| c.result.as_ref().err().map(String::as_str))
        .collect();
    r.runtime_errors = judge_errors(ctx, "storm pipeline", &errors, r.requests);

    let (drain_s, _) = ctx.wait_drained(ctx.commit_timeout);
    r.drain_s = Some(drain_s);
    r.set_cpu(mark.since(ctx.pgid));
    let ids: Vec<&str> = accepted
        .iter()
        .filter_map(|c| c.result.as_ref().ok().map(|a| a.id.as_str()))
        .collect();
    let statuses = ctx.terminal_all(&ids, "storm: pipeline statuses");
    r.statuses = Some(tally(ctx, "storm pipeline", &statuses));
    if let (Some(a), Ok(b)) = (before, ctx.client.stats()) {
        r.stats_delta = Some(StatsDelta::between(&a, &b));
    }

    // Per key: committed starts, the newest accepted write, its status.
    let mut starts: BTreeMap<usize, Vec<i64>> = BTreeMap::new();
    let mut newest: BTreeMap<usize, (i64, &str, usize, usize)> = BTreeMap::new();
    for (call, status) in accepted.iter().zip(&statuses) {
        let Ok(a) = &call.result else { continue };
        let k = key_of(cfg, call.client, call.seq);
        let cand = (a.accepted_ms, a.id.as_str(), call.client, call.seq);
        let e = newest.entry(k).or_insert(cand);
        if (cand.0, cand.1) > (e.0, e.1) {
            *e = cand;
        }
        if let Ok(st) = status {
            if st.state == UploadState::Committed {
                match st.committed_at.as_deref().and_then(parse_ms) {
                    Some(t) => {
                        starts.entry(k).or_default().push(t);
                        #[allow(clippy::cast_precision_loss)]
                        r.commit_lags_all_ms.push((t - a.accepted_ms) as f64);
                    }
                    None => ctx.fail(format!(
                        "storm pipeline: {} committed without committed_at",
                        st.id
                    )),
                }
            }
        }
    }
    r.set_writes(&starts);
    if r.spacing_violations > 0 {
        ctx.fail(format!(
            "storm pipeline: {} writes to one key started under {SPACING_MS} ms apart (min gap {:?} ms)",
            r.spacing_violations, r.min_gap_ms
        ));
    }
    if r.r2_writes > 0 {
        #[allow(clippy::cast_precision_loss)]
        let c = accepted.len() as f64 / r.r2_writes as f64;
        r.coalescing_ratio = Some(c);
    }

    let status_of: BTreeMap<&str, &pipeline_client::UploadStatus> = statuses
        .iter()
        .filter_map(|s| s.as_ref().ok())
        .map(|s| (s.id.as_str(), s))
        .collect();
    let mut lags = Vec::new();
    for (&k, &(_, id, c, i)) in &newest {
        r.finals_checked += 1;
        let key = &keys[k];
        match status_of.get(id) {
            Some(st) if st.state == UploadState::Committed => {
                if let (Some(done), Some(acc)) = (
                    st.committed_at.as_deref().and_then(parse_ms),
                    parse_ms(&st.accepted_at),
                ) {
                    #[allow(clippy::cast_precision_loss)]
                    lags.push((done - acc) as f64);
                }
            }
            Some(st) => ctx.fail(format!(
                "storm pipeline: the newest write to {key} ({id}) ended {}",
                st.state.as_str()
            )),
            None => ctx.fail(format!(
                "storm pipeline: no status for the newest write to {key}"
            )),
        }
        let want = body(&marker("pipeline", c, i), cfg.body_bytes);
        match ctx.client.get_object(key, &GetOptions::default()) {
            Ok(obj) if obj.body == want && obj.meta("upload-id") == Some(id) => {
                r.finals_correct += 1
            }
            Ok(obj) => ctx.fail(format!(
                "storm pipeline: {key} holds upload-id {:?} ({} bytes), not the newest write {id}",
                obj.meta("upload-id"),
                obj.body.len()
            )),
            Err(e) => ctx.fail(format!("storm pipeline: reading {key}: {e}")),
        }
    }
    r.commit_lag_ms = Some(Summary::of(&lags));
    r
}

struct Direct {
    start_ms: i64,
}

fn naive(ctx: &Ctx, cfg: &StormConfig) -> StormRoute {
    let keys: Vec<String> = (0..cfg.keys)
        .map(|k| ctx.key(&format!("storm/naive/k{k:02}")))
        .collect();
    let mark = CpuMark::now(ctx.pgid);
    let run = load::run(spec(cfg), "storm: naive direct", |c, i| {
        let b = body(&marker("naive", c, i), cfg.body_bytes);
        let path = format!("/_bench/direct/{}", encode_key(&keys[key_of(cfg, c, i)]));
        let resp = ctx
            .client
            .raw("PUT", &path, &[], Some(&b))
            .map_err(|e| e.to_string())?;
        if resp.status != 201 {
            return Err(format!("HTTP {}: {}", resp.status, resp.text()));
        }
        let v = resp.json().map_err(|e| e.to_string())?;
        v.get("start_ms")
            .and_then(serde_json::Value::as_i64)
            .map(|start_ms| Direct { start_ms })
            .ok_or_else(|| format!("no start_ms in {v}"))
    });
    let mut r = StormRoute::new(
        "naive",
        "PUT /_bench/direct/{key} (201)",
        run.calls.len(),
        run.elapsed_s,
    );
    r.set_cpu(mark.since(ctx.pgid));
    r.latency_ms = latency(&run);
    let mut starts: BTreeMap<usize, Vec<i64>> = BTreeMap::new();
    let mut written: Vec<(String, i64)> = Vec::new();
    for call in &run.calls {
        match &call.result {
            Ok(d) => {
                let k = key_of(cfg, call.client, call.seq);
                starts.entry(k).or_default().push(d.start_ms);
                written.push((keys[k].clone(), d.start_ms));
            }
            Err(e) => {
                r.errors += 1;
                r.first_error.get_or_insert_with(|| e.clone());
            }
        }
    }
    r.runtime_errors = run
        .calls
        .iter()
        .filter(|c| matches!(&c.result, Err(e) if is_runtime_transient(e)))
        .count();
    let wb = would_be_rejected(written.iter().map(|(k, s)| (k.as_str(), *s)), SPACING_MS);
    r.set_counts(run.calls.len() - r.errors, wb.rejected);
    r.set_writes(&starts);

    // Which write did the bucket keep? The newest-started one is "correct";
    // concurrent direct puts finish in any order, so it may not be.
    for (k, key) in keys.iter().enumerate() {
        let Some(latest) = starts.get(&k).and_then(|s| s.iter().max().copied()) else {
            continue;
        };
        r.finals_checked += 1;
        let Ok(obj) = ctx.client.get_object(key, &GetOptions::default()) else {
            continue;
        };
        let kept = run.calls.iter().find(|call| {
            key_of(cfg, call.client, call.seq) == k
                && obj.body == body(&marker("naive", call.client, call.seq), cfg.body_bytes)
        });
        if let Some(Ok(d)) = kept.map(|c| &c.result) {
            if d.start_ms == latest {
                r.finals_correct += 1;
            }
        }
    }
    r
}

enum SyncOutcome {
    Committed(i64),
    RateLimited,
    Conflict,
}

fn sync(ctx: &Ctx, cfg: &StormConfig) -> StormRoute {
    let keys: Vec<String> = (0..cfg.keys)
        .map(|k| ctx.key(&format!("storm/sync/k{k:02}")))
        .collect();
    let before = ctx.client.stats().ok();
    let opts = PutOptions::content_type("application/octet-stream");
    let mark = CpuMark::now(ctx.pgid);
    let run = load::run(spec(cfg), "storm: sync mode", |c, i| {
        let b = body(&marker("sync", c, i), cfg.body_bytes);
        match ctx
            .client
            .put_object_sync(&keys[key_of(cfg, c, i)], &b, &opts)
        {
            Ok(done) => parse_ms(&done.committed_at)
                .map(SyncOutcome::Committed)
                .ok_or_else(|| format!("bad committed_at {}", done.committed_at)),
            Err(ClientError::Api { status: 429, .. }) => Ok(SyncOutcome::RateLimited),
            Err(ClientError::Api { status: 409, .. }) => Ok(SyncOutcome::Conflict),
            Err(e) => Err(e.to_string()),
        }
    });
    let mut r = StormRoute::new(
        "sync",
        "PUT /objects/{key}?mode=sync (201/429)",
        run.calls.len(),
        run.elapsed_s,
    );
    r.set_cpu(mark.since(ctx.pgid));
    r.latency_ms = latency(&run);
    let mut starts: BTreeMap<usize, Vec<i64>> = BTreeMap::new();
    let mut newest: BTreeMap<usize, (i64, usize, usize)> = BTreeMap::new();
    let (mut ok, mut limited) = (0, 0);
    for call in &run.calls {
        let k = key_of(cfg, call.client, call.seq);
        match &call.result {
            Ok(SyncOutcome::Committed(t)) => {
                ok += 1;
                starts.entry(k).or_default().push(*t);
                let e = newest.entry(k).or_insert((*t, call.client, call.seq));
                if *t > e.0 {
                    *e = (*t, call.client, call.seq);
                }
            }
            Ok(SyncOutcome::RateLimited) => limited += 1,
            Ok(SyncOutcome::Conflict) => r.conflicts += 1,
            Err(e) => {
                r.errors += 1;
                r.first_error.get_or_insert_with(|| e.clone());
            }
        }
    }
    r.set_counts(ok, limited);
    r.set_writes(&starts);
    if let (Some(a), Ok(b)) = (before, ctx.client.stats()) {
        r.stats_delta = Some(StatsDelta::between(&a, &b));
    }
    let errors: Vec<&str> = run
        .calls
        .iter()
        .filter_map(|c| c.result.as_ref().err().map(String::as_str))
        .collect();
    r.runtime_errors = judge_errors(ctx, "storm sync", &errors, r.requests);
    if r.spacing_violations > 0 {
        ctx.fail(format!(
            "storm sync: {} writes to one key started under {SPACING_MS} ms apart",
            r.spacing_violations
        ));
    }
    for (&k, &(_, c, i)) in &newest {
        r.finals_checked += 1;
        let key = &keys[k];
        match ctx.client.get_object(key, &GetOptions::default()) {
            Ok(obj) if obj.body == body(&marker("sync", c, i), cfg.body_bytes) => {
                r.finals_correct += 1
            }
            Ok(obj) => ctx.fail(format!(
                "storm sync: {key} holds upload-id {:?}, not its last 201 write",
                obj.meta("upload-id")
            )),
            Err(e) => ctx.fail(format!("storm sync: reading {key}: {e}")),
        }
    }
    r
}

fn report_line(r: &StormRoute) {
    eprintln!(
        "  {:<9} {:>6} requests {:>7.1} req/s  accepted {:>5.1} %  rejected {:>5.1} %  R2 writes {:>5}  max {:.2}/key/s  spacing violations {}",
        r.name,
        r.requests,
        r.achieved_rps,
        r.accepted_first_try_pct,
        r.rejected_pct,
        r.r2_writes,
        r.writes_per_key_per_s_max,
        r.spacing_violations
    );
}

/// One write and how it ended: its state and whether it is terminal.
struct Ended {
    committed: bool,
}

/// The same storm, half the clients using `Prefer: wait`, half polling:
/// time from sending each write to knowing it ended.
fn completion(ctx: &Ctx, cfg: &StormConfig) -> Completion {
    let keys: Vec<String> = (0..cfg.keys)
        .map(|k| ctx.key(&format!("storm/completion/k{k:02}")))
        .collect();
    let run = load::run(spec(cfg), "storm: completion", |c, i| {
        let b = body(&marker("completion", c, i), cfg.body_bytes);
        let path = format!("/objects/{}", encode_key(&keys[key_of(cfg, c, i)]));
        if c % 2 == 0 {
            let r = ctx
                .client
                .raw(
                    "PUT",
                    &path,
                    &[
                        ("Prefer", "wait=30"),
                        ("Content-Type", "application/octet-stream"),
                    ],
                    Some(&b),
                )
                .map_err(|e| e.to_string())?;
            if r.status != 200 {
                return Err(format!("Prefer: wait answered {}", r.status));
            }
            let v = r.json().map_err(|e| e.to_string())?;
            Ok(Ended {
                committed: v["state"] == "committed",
            })
        } else {
            let a = ctx
                .client
                .put_object(
                    &keys[key_of(cfg, c, i)],
                    &b,
                    &PutOptions::content_type("application/octet-stream"),
                )
                .map_err(|e| e.to_string())?;
            loop {
                let st = ctx
                    .client
                    .upload_status(&a.id, Some(30))
                    .map_err(|e| e.to_string())?;
                if st.state.is_terminal() {
                    return Ok(Ended {
                        committed: st.state == UploadState::Committed,
                    });
                }
            }
        }
    });
    let _ = ctx.wait_drained(ctx.commit_timeout);
    let pick = |prefer: bool, committed_only: bool| {
        Summary::of(
            &run.calls
                .iter()
                .filter(|c| (c.client % 2 == 0) == prefer)
                .filter(|c| matches!(&c.result, Ok(e) if !committed_only || e.committed))
                .map(|c| c.latency_ms)
                .collect::<Vec<_>>(),
        )
    };
    let not_terminal = |prefer: bool| {
        run.calls
            .iter()
            .filter(|c| (c.client % 2 == 0) == prefer && c.result.is_err())
            .count()
    };
    Completion {
        prefer_wait: pick(true, false),
        prefer_wait_committed: pick(true, true),
        polling: pick(false, false),
        polling_committed: pick(false, true),
        prefer_not_terminal: not_terminal(true),
        polling_not_terminal: not_terminal(false),
    }
}

/// Runs the scenario.
pub fn run(ctx: &Ctx, cfg: &StormConfig) -> StormResult {
    eprintln!(
        "scenario 2: hot-key storm ({} keys, {} clients, {} s, offered {})",
        cfg.keys,
        cfg.clients,
        cfg.seconds,
        cfg.rate.map_or_else(
            || "as fast as answered".to_owned(),
            |r| format!("{r} req/s")
        )
    );
    let p = pipeline(ctx, cfg);
    report_line(&p);
    let n = naive(ctx, cfg);
    report_line(&n);
    let s = sync(ctx, cfg);
    report_line(&s);
    let done = completion(ctx, cfg);
    eprintln!(
        "  completion: Prefer: wait p50 {:.0} ms p99 {:.0} ms ({} writes; committed p50 {:.0} p99 {:.0}); polling p50 {:.0} ms p99 {:.0} ms ({} writes; committed p50 {:.0} p99 {:.0}); not terminal {} / {}",
        done.prefer_wait.p50, done.prefer_wait.p99, done.prefer_wait.count,
        done.prefer_wait_committed.p50, done.prefer_wait_committed.p99,
        done.polling.p50, done.polling.p99, done.polling.count,
        done.polling_committed.p50, done.polling_committed.p99,
        done.prefer_not_terminal, done.polling_not_terminal,
    );
    StormResult {
        config: *cfg,
        routes: vec![p, n, s],
        completion: Some(done),
    }
}
