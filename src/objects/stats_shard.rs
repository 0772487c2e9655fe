//! `StatsShard`: the `/stats` totals, spread over a fixed set of shards so
//! no single object sits on the hot path.
//!
//! Each writer (a key's scheduler, or a producer isolate) owns a *source*
//! and pushes its cumulative totals with a version that only grows. A shard
//! keeps the newest totals per source and the sum over its sources, so a
//! push that is repeated, lost and retried, or overtaken by a newer one can
//! never count twice: the figures are exact once the last pushes land.

use pipeline_core::config::STATS_SHARDS;
use pipeline_core::error::ApiError;
use pipeline_core::protocol::{Ack, Call, TotalsRequest};
pub use pipeline_core::stats::{Push, Totals};
use serde::Deserialize;
use worker::{durable_object, DurableObject, Env, Request, Response, SqlStorage, State};

use super::sql::{exec, first, rows};
use super::stub::ObjectStub;
use super::{respond, serve};

/// Pushes a source's cumulative totals to its shard.
///
/// # Errors
/// [`ApiError::Unavailable`] when the shard cannot be reached.
pub async fn push(env: &Env, push: &Push) -> Result<(), ApiError> {
    ObjectStub::stats_of(env, &push.source)?
        .call(push)
        .await
        .map(|_| ())
}

/// Sums every shard.
///
/// # Errors
/// [`ApiError::Unavailable`] when a shard cannot be reached.
pub async fn read_all(env: &Env) -> Result<Totals, ApiError> {
    let mut calls = Vec::new();
    for shard in 0..STATS_SHARDS {
        let stub = ObjectStub::stats_shard(env, shard)?;
        calls.push(async move { stub.call(&TotalsRequest {}).await });
    }
    let mut sum = Totals::default();
    for t in futures_util::future::join_all(calls).await {
        sum += t?;
    }
    Ok(sum)
}

#[durable_object]
pub struct StatsShard {
    state: State,
}

#[derive(Deserialize)]
struct SourceRow {
    version: i64,
    accepted: i64,
    committed: i64,
    superseded: i64,
    failed: i64,
    r2_writes: i64,
    rate_limited: i64,
    /// The latency histograms as JSON (`{"commit_lag", "queue_wait"}`).
    hist: Option<String>,
}

/// The histograms of a source, stored as one JSON column.
#[derive(Default, serde::Serialize, Deserialize)]
struct Hist {
    #[serde(default)]
    commit_lag: pipeline_core::metrics::Histogram,
    #[serde(default)]
    queue_wait: pipeline_core::metrics::Histogram,
}

impl From<SourceRow> for Totals {
    fn from(r: SourceRow) -> Self {
        let h: Hist = r
            .hist
            .as_deref()
            .and_then(|t| serde_json::from_str(t).ok())
            .unwrap_or_default();
        Totals {
            accepted: r.accepted,
            committed: r.committed,
            superseded: r.superseded,
            failed: r.failed,
            r2_writes: r.r2_writes,
            rate_limited: r.rate_limited,
            commit_lag: h.commit_lag,
            queue_wait: h.queue_wait,
        }
    }
}

const COLUMNS: &str = "accepted, committed, superseded, failed, r2_writes, rate_limited, hist";

impl DurableObject for StatsShard {
    fn new(state: State, _env: Env) -> Self {
        let sql = state.storage().sql();
        // Shards created before the histograms existed gain the column.
        let _ = exec(
            &state.storage().sql(),
            "CREATE TABLE IF NOT EXISTS sources (source TEXT PRIMARY KEY, version INTEGER NOT NULL, \
             accepted INTEGER NOT NULL, committed INTEGER NOT NULL, superseded INTEGER NOT NULL, \
             failed INTEGER NOT NULL, r2_writes INTEGER NOT NULL, rate_limited INTEGER NOT NULL, \
             hist TEXT)",
            vec![],
        );
        if sql.exec("SELECT hist FROM sources LIMIT 0", None).is_err() {
            let _ = exec(&sql, "ALTER TABLE sources ADD COLUMN hist TEXT", vec![]);
        }
        Self { state }
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        let sql = self.state.storage().sql();
        let path = req.path();
        let result = match path.as_str() {
            Push::PATH => {
                serve(&mut req, |p: Push| async move {
                    apply_push(&sql, &p)?;
                    Ok(Ack { ok: true })
                })
                .await
            }
            TotalsRequest::PATH => serve(&mut req, |_: TotalsRequest| async { sum(&sql) }).await,
            _ => Err(ApiError::Internal(format!("unknown stats call {path}"))),
        };
        respond(result)
    }
}

fn apply_push(sql: &SqlStorage, p: &Push) -> Result<(), ApiError> {
    let current: Option<SourceRow> = first(
        sql,
        &format!("SELECT version, {COLUMNS} FROM sources WHERE source = ?"),
        vec![p.source.as_str().into()],
    )?;
    if !pipeline_core::stats::supersedes(current.map(|c| c.version), p) {
        return Ok(());
    }
    let t = p.totals;
    exec(
        sql,
        &format!(
            "INSERT INTO sources (source, version, {COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT(source) DO UPDATE SET version = excluded.version, accepted = excluded.accepted, \
             committed = excluded.committed, superseded = excluded.superseded, failed = excluded.failed, \
             r2_writes = excluded.r2_writes, rate_limited = excluded.rate_limited, hist = excluded.hist"
        ),
        vec![
            p.source.as_str().into(),
            p.version.into(),
            t.accepted.into(),
            t.committed.into(),
            t.superseded.into(),
            t.failed.into(),
            t.r2_writes.into(),
            t.rate_limited.into(),
            serde_json::to_string(&Hist {
                commit_lag: t.commit_lag,
                queue_wait: t.queue_wait,
            })
            .map_err(|e| crate::http::internal("encoding histograms", e))?
            .into(),
        ],
    )
}

fn sum(sql: &SqlStorage) -> Result<Totals, ApiError> {
    let all: Vec<SourceRow> = rows(
        sql,
        &format!("SELECT version, {COLUMNS} FROM sources"),
        vec![],
    )?;
    let mut t = Totals::default();
    for r in all {
        t += r.into();
    }
    Ok(t)
}
