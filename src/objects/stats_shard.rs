//! `StatsShard`: the `/stats` totals, spread over a fixed set of shards so
//! no single object sits on the hot path.
//!
//! Each writer (a key's scheduler, or a producer isolate) owns a *source*
//! and pushes its cumulative totals with a version that only grows. A shard
//! keeps the newest totals per source and the sum over its sources, so a
//! push that is repeated, lost and retried, or overtaken by a newer one can
//! never count twice: the figures are exact once the last pushes land.

use std::ops::AddAssign;

use pipeline_core::config::STATS_SHARDS;
use pipeline_core::error::ApiError;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use worker::{durable_object, DurableObject, Env, Method, Request, Response, SqlStorage, State};

use super::sql::{exec, first, rows};
use super::{call, ok_json, request_json, respond};
use crate::http::internal;

/// Cumulative pipeline totals of one source, or summed over many.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub accepted: i64,
    pub committed: i64,
    pub superseded: i64,
    pub failed: i64,
    pub r2_writes: i64,
    pub rate_limited: i64,
}

impl AddAssign for Totals {
    fn add_assign(&mut self, o: Self) {
        self.accepted += o.accepted;
        self.committed += o.committed;
        self.superseded += o.superseded;
        self.failed += o.failed;
        self.r2_writes += o.r2_writes;
        self.rate_limited += o.rate_limited;
    }
}

impl Totals {
    /// The contract's `/stats` body, with `inflight` derived.
    pub fn to_json(self) -> serde_json::Value {
        serde_json::json!({
            "accepted": self.accepted,
            "committed": self.committed,
            "superseded": self.superseded,
            "failed": self.failed,
            "r2_writes": self.r2_writes,
            "rate_limited": self.rate_limited,
            "inflight": self.accepted - self.committed - self.superseded - self.failed,
        })
    }
}

/// One source's push.
#[derive(Debug, Serialize, Deserialize)]
pub struct Push {
    pub source: String,
    pub version: i64,
    pub totals: Totals,
}

/// The shard a source pushes to.
pub fn shard_of(source: &str) -> u32 {
    let h = Sha256::digest(source.as_bytes());
    u32::from_be_bytes([h[0], h[1], h[2], h[3]]) % STATS_SHARDS
}

/// Pushes a source's cumulative totals to its shard.
///
/// # Errors
/// [`ApiError::Unavailable`] when the shard cannot be reached.
pub async fn push(env: &Env, push: &Push) -> Result<(), ApiError> {
    let ns = env
        .durable_object("STATS")
        .map_err(|e| internal("STATS binding", e))?;
    let stub = ns
        .get_by_name(&format!("stats-{}", shard_of(&push.source)))
        .map_err(|e| internal("stats shard", e))?;
    call::<Push, serde_json::Value>(&stub, Method::Post, "/push", Some(push))
        .await
        .map(|_| ())
}

/// Sums every shard.
///
/// # Errors
/// [`ApiError::Unavailable`] when a shard cannot be reached.
pub async fn read_all(env: &Env) -> Result<Totals, ApiError> {
    let ns = env
        .durable_object("STATS")
        .map_err(|e| internal("STATS binding", e))?;
    let mut calls = Vec::new();
    for shard in 0..STATS_SHARDS {
        let stub = ns
            .get_by_name(&format!("stats-{shard}"))
            .map_err(|e| internal("stats shard", e))?;
        calls.push(async move { call::<(), Totals>(&stub, Method::Get, "/totals", None).await });
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
}

impl From<SourceRow> for Totals {
    fn from(r: SourceRow) -> Self {
        Totals {
            accepted: r.accepted,
            committed: r.committed,
            superseded: r.superseded,
            failed: r.failed,
            r2_writes: r.r2_writes,
            rate_limited: r.rate_limited,
        }
    }
}

const COLUMNS: &str = "accepted, committed, superseded, failed, r2_writes, rate_limited";

impl DurableObject for StatsShard {
    fn new(state: State, _env: Env) -> Self {
        let _ = exec(
            &state.storage().sql(),
            "CREATE TABLE IF NOT EXISTS sources (source TEXT PRIMARY KEY, version INTEGER NOT NULL, \
             accepted INTEGER NOT NULL, committed INTEGER NOT NULL, superseded INTEGER NOT NULL, \
             failed INTEGER NOT NULL, r2_writes INTEGER NOT NULL, rate_limited INTEGER NOT NULL)",
            vec![],
        );
        Self { state }
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        let sql = self.state.storage().sql();
        let result = match req.method() {
            Method::Post => match request_json::<Push>(&mut req).await {
                Ok(p) => {
                    apply_push(&sql, &p).and_then(|_| ok_json(&serde_json::json!({"ok": true})))
                }
                Err(e) => Err(internal("stats push", e)),
            },
            Method::Get => sum(&sql).and_then(|t| ok_json(&t)),
            _ => Err(ApiError::Internal("unsupported stats call".into())),
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
    if current.is_some_and(|c| c.version >= p.version) {
        return Ok(());
    }
    let t = p.totals;
    exec(
        sql,
        &format!(
            "INSERT INTO sources (source, version, {COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT(source) DO UPDATE SET version = excluded.version, accepted = excluded.accepted, \
             committed = excluded.committed, superseded = excluded.superseded, failed = excluded.failed, \
             r2_writes = excluded.r2_writes, rate_limited = excluded.rate_limited"
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
