//! `StatsShard`: one of a fixed set of objects holding the `/stats` totals
//! and the recently hot keys.
//!
//! Sources (key schedulers, producer isolates) push cumulative totals; the
//! shard keeps one row per source and a running total to which each push
//! adds its difference (`pipeline_core::stats::shard` decides), so reading
//! a shard reads no row however many keys were ever written. Rows of
//! sources idle for a day are compacted: their counts move to one stored
//! row of compacted counts.
//!
//! The running total lives in memory: it is always the compacted counts
//! plus the rows kept (`pipeline_core::stats::shard::rebuilt`), summed once
//! when the shard starts, so a push writes its source's row and nothing
//! else (SQLite bills rows written; every key written once is a push). The
//! price is that start: one read of every source row, about one per key
//! written in the last day over the shards. The hot-key sketch lives in
//! memory too and is saved every few seconds, with the total of then (which
//! only a version from before this layout would read).

use std::cell::{Cell, RefCell};

use pipeline_core::error::ApiError;
use pipeline_core::protocol::{Ack, Call, ShardReport, TotalsRequest};
use pipeline_core::stats::hot_keys::CAPACITY;
use pipeline_core::stats::shard::{
    self, Running, SourceRow, COMPACT_EVERY_MS, HOT_SAVE_EVERY_MS, SOURCE_IDLE_MS,
};
pub use pipeline_core::stats::{Push, Totals};
use serde::Deserialize;
use worker::{durable_object, DurableObject, Env, Request, Response, SqlStorage, State};

use super::sql::{atomically, exec, first, rows};
use super::{respond, serve};
use crate::http::{internal, now_ms};

/// One source's stored row.
#[derive(Deserialize)]
struct StoredSource {
    version: i64,
    accepted: i64,
    committed: i64,
    superseded: i64,
    failed: i64,
    r2_writes: i64,
    rate_limited: i64,
    /// The latency histograms as JSON (`{"commit_lag", "queue_wait"}`).
    hist: Option<String>,
    pushed_ms: Option<i64>,
}

/// The histograms of a source, stored as one JSON column.
#[derive(Default, serde::Serialize, Deserialize)]
struct Hist {
    #[serde(default)]
    commit_lag: pipeline_core::metrics::Histogram,
    #[serde(default)]
    queue_wait: pipeline_core::metrics::Histogram,
}

impl From<StoredSource> for SourceRow {
    fn from(r: StoredSource) -> Self {
        let h: Hist = r
            .hist
            .as_deref()
            .and_then(|t| serde_json::from_str(t).ok())
            .unwrap_or_default();
        SourceRow {
            version: r.version,
            totals: Totals {
                accepted: r.accepted,
                committed: r.committed,
                superseded: r.superseded,
                failed: r.failed,
                r2_writes: r.r2_writes,
                rate_limited: r.rate_limited,
                commit_lag: h.commit_lag,
                queue_wait: h.queue_wait,
            },
            pushed_ms: r.pushed_ms,
        }
    }
}

#[derive(Deserialize)]
struct TotalsRow {
    totals: String,
}

const COLUMNS: &str =
    "version, accepted, committed, superseded, failed, r2_writes, rate_limited, hist, pushed_ms";

#[durable_object]
pub struct StatsShard {
    state: State,
    /// The running totals and hot keys (the hot keys are stored every
    /// [`HOT_SAVE_EVERY_MS`]).
    running: RefCell<Running>,
    /// The compacted counts, as stored.
    compacted: RefCell<Totals>,
    /// The stored figures were loaded (at the first call). Until they
    /// are, the shard answers every call with an error (a source retries
    /// its push) rather than count from zero: a total started from nothing
    /// would be stored as the compacted counts at the next compaction,
    /// losing them.
    opened: Cell<bool>,
    hot_saved_ms: Cell<i64>,
    compacted_ms: Cell<i64>,
}

impl DurableObject for StatsShard {
    fn new(state: State, _env: Env) -> Self {
        Self {
            state,
            running: RefCell::new(Running::default()),
            compacted: RefCell::new(Totals::default()),
            opened: Cell::new(false),
            hot_saved_ms: Cell::new(now_ms()),
            compacted_ms: Cell::new(0),
        }
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        if let Err(e) = self.ensure_open() {
            return respond(Err(e));
        }
        let path = req.path();
        let result = match path.as_str() {
            Push::PATH => {
                serve(&mut req, |p: Push| async move {
                    self.take(&p)?;
                    Ok(Ack { ok: true })
                })
                .await
            }
            TotalsRequest::PATH => {
                serve(&mut req, |r: TotalsRequest| async move {
                    let running = self.running.borrow();
                    Ok(ShardReport {
                        totals: running.total,
                        top: running.hot.top(r.top.min(CAPACITY), now_ms()),
                    })
                })
                .await
            }
            #[cfg(feature = "test-routes")]
            bench::SeedSources::PATH => {
                serve(&mut req, |c: bench::SeedSources| async move {
                    bench::seed(&self.state.storage().sql(), &c)
                })
                .await
            }
            #[cfg(feature = "test-routes")]
            bench::ScanSources::PATH => {
                serve(&mut req, |_: bench::ScanSources| async move {
                    bench::scan(&self.state.storage().sql())
                })
                .await
            }
            _ => Err(ApiError::Internal(format!("unknown stats call {path}"))),
        };
        respond(result)
    }
}

impl StatsShard {
    /// Loads the stored figures, once.
    ///
    /// # Errors
    /// [`ApiError::Internal`] while storage cannot be read (logged).
    fn ensure_open(&self) -> Result<(), ApiError> {
        if self.opened.get() {
            return Ok(());
        }
        let (running, compacted) = open(&self.state.storage().sql()).inspect_err(|e| {
            crate::http::log(
                serde_json::json!({"level": "error", "at": "stats.open", "error": e.to_string()}),
            );
        })?;
        *self.running.borrow_mut() = running;
        *self.compacted.borrow_mut() = compacted;
        self.opened.set(true);
        Ok(())
    }

    /// Takes a push: its source's row is stored (with the compacted counts
    /// when they change); the running total follows in memory.
    fn take(&self, p: &Push) -> Result<(), ApiError> {
        let sql = self.state.storage().sql();
        let now = now_ms();
        let held: Option<SourceRow> = first::<StoredSource>(
            &sql,
            &format!("SELECT {COLUMNS} FROM sources WHERE source = ?"),
            vec![p.source.as_str().into()],
        )?
        .map(Into::into);
        let Some(applied) = shard::apply(held.as_ref(), &p.push, now) else {
            return Ok(());
        };
        let mut next = self.running.borrow().clone();
        next.record(&p.push, &applied, now);
        let mut compacted = *self.compacted.borrow();
        if let Some(base) = &applied.reclaimed {
            compacted = compacted.since(base);
        }
        let save_hot = now - self.hot_saved_ms.get() >= HOT_SAVE_EVERY_MS;
        let compact = now - self.compacted_ms.get() >= COMPACT_EVERY_MS;
        let (source, row, total) = (p.source.clone(), applied.row, next.total);
        let reclaimed = applied.reclaimed.is_some();
        let hot = save_hot
            .then(|| serde_json::to_string(&next.hot))
            .transpose()
            .map_err(|e| internal("encoding hot keys", e))?;
        let raw = self
            .state
            .as_raw()
            .storage()
            .map_err(|_| ApiError::Internal("shard storage unavailable".into()))?;
        let out = std::rc::Rc::new(Cell::new(compacted));
        let kept = out.clone();
        atomically(&raw, &sql, move |sql| {
            let mut compacted = compacted;
            write_source(sql, &source, &row)
                .and_then(|()| match &hot {
                    Some(h) => write_hot(sql, &total, h),
                    None => Ok(()),
                })
                .and_then(|()| {
                    if !compact {
                        return Ok(false);
                    }
                    let idle = now - SOURCE_IDLE_MS;
                    let gone: Vec<StoredSource> = rows(
                        sql,
                        &format!(
                            "SELECT {COLUMNS} FROM sources \
                             WHERE pushed_ms IS NOT NULL AND pushed_ms <= ?"
                        ),
                        vec![idle.into()],
                    )?;
                    if gone.is_empty() {
                        return Ok(false);
                    }
                    for r in gone {
                        compacted += SourceRow::from(r).totals;
                    }
                    exec(
                        sql,
                        "DELETE FROM sources WHERE pushed_ms IS NOT NULL AND pushed_ms <= ?",
                        vec![idle.into()],
                    )?;
                    Ok(true)
                })
                .and_then(|moved| {
                    if moved || reclaimed {
                        write_compacted(sql, &compacted)?;
                    }
                    kept.set(compacted);
                    Ok(())
                })
                .map_err(|e| e.to_string())
        })
        .map_err(ApiError::Internal)?;
        *self.compacted.borrow_mut() = out.get();
        *self.running.borrow_mut() = next;
        if save_hot {
            self.hot_saved_ms.set(now);
        }
        if compact {
            self.compacted_ms.set(now);
        }
        Ok(())
    }
}

/// Creates or upgrades the tables and loads the running figures: the
/// compacted counts (row 1 of `running`) plus every source row's.
///
/// A shard of an earlier version stored the running total itself (row 0)
/// at every push: its compacted counts are that total less its rows',
/// stored once as row 1. A shard from before running totals had neither:
/// nothing was compacted (its rows' `pushed_ms` stays empty: never
/// compacted). Row 0 keeps the hot-key sketch.
///
/// A new shard's `sources` is `WITHOUT ROWID`: a row keyed by text is then
/// one b-tree entry, not a table row plus an index entry, so a new
/// source's first push writes one row there, not two (SQLite bills rows
/// written; every key written once is a new source). Shards created by
/// earlier versions keep their table, which answers the same statements.
fn open(sql: &SqlStorage) -> Result<(Running, Totals), ApiError> {
    exec(
        sql,
        "CREATE TABLE IF NOT EXISTS sources (source TEXT PRIMARY KEY, version INTEGER NOT NULL, \
         accepted INTEGER NOT NULL, committed INTEGER NOT NULL, superseded INTEGER NOT NULL, \
         failed INTEGER NOT NULL, r2_writes INTEGER NOT NULL, rate_limited INTEGER NOT NULL, \
         hist TEXT, pushed_ms INTEGER) WITHOUT ROWID",
        vec![],
    )?;
    for column in ["hist TEXT", "pushed_ms INTEGER"] {
        let name = column.split(' ').next().unwrap_or(column);
        if sql
            .exec(&format!("SELECT {name} FROM sources LIMIT 0"), None)
            .is_err()
        {
            exec(
                sql,
                &format!("ALTER TABLE sources ADD COLUMN {column}"),
                vec![],
            )?;
        }
    }
    exec(
        sql,
        "CREATE TABLE IF NOT EXISTS running (id INTEGER PRIMARY KEY, totals TEXT NOT NULL, hot TEXT)",
        vec![],
    )?;
    let parse = |t: &TotalsRow| -> Result<Totals, ApiError> {
        serde_json::from_str(&t.totals).map_err(|e| internal("running totals", e))
    };
    let all: Vec<StoredSource> = rows(sql, &format!("SELECT {COLUMNS} FROM sources"), vec![])?;
    let in_rows = shard::rebuilt(
        &Totals::default(),
        all.into_iter().map(|r| SourceRow::from(r).totals),
    );
    let stored: Option<TotalsRow> = first(sql, "SELECT totals FROM running WHERE id = 1", vec![])?;
    let compacted = match stored {
        Some(t) => parse(&t)?,
        None => {
            let old: Option<TotalsRow> =
                first(sql, "SELECT totals FROM running WHERE id = 0", vec![])?;
            let compacted = match old {
                Some(t) => parse(&t)?.since(&in_rows),
                None => Totals::default(),
            };
            write_compacted(sql, &compacted)?;
            compacted
        }
    };
    let mut running = Running {
        total: shard::rebuilt(&compacted, [in_rows]),
        ..Running::default()
    };
    #[derive(Deserialize)]
    struct HotRow {
        hot: Option<String>,
    }
    if let Some(h) =
        first::<HotRow>(sql, "SELECT hot FROM running WHERE id = 0", vec![])?.and_then(|r| r.hot)
    {
        running.hot = serde_json::from_str(&h).unwrap_or_default();
    }
    Ok((running, compacted))
}

fn write_source(sql: &SqlStorage, source: &str, row: &SourceRow) -> Result<(), ApiError> {
    let t = row.totals;
    let hist = serde_json::to_string(&Hist {
        commit_lag: t.commit_lag,
        queue_wait: t.queue_wait,
    })
    .map_err(|e| internal("encoding histograms", e))?;
    exec(
        sql,
        &format!(
            "INSERT INTO sources (source, {COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT(source) DO UPDATE SET version = excluded.version, accepted = excluded.accepted, \
             committed = excluded.committed, superseded = excluded.superseded, failed = excluded.failed, \
             r2_writes = excluded.r2_writes, rate_limited = excluded.rate_limited, hist = excluded.hist, \
             pushed_ms = excluded.pushed_ms"
        ),
        vec![
            source.into(),
            row.version.into(),
            t.accepted.into(),
            t.committed.into(),
            t.superseded.into(),
            t.failed.into(),
            t.r2_writes.into(),
            t.rate_limited.into(),
            hist.into(),
            row.pushed_ms.into(),
        ],
    )
}

/// Stores the compacted counts (row 1 of `running`).
fn write_compacted(sql: &SqlStorage, compacted: &Totals) -> Result<(), ApiError> {
    let text = serde_json::to_string(compacted).map_err(|e| internal("encoding totals", e))?;
    exec(
        sql,
        "INSERT INTO running (id, totals) VALUES (1, ?) \
         ON CONFLICT(id) DO UPDATE SET totals = excluded.totals",
        vec![text.into()],
    )
}

/// Stores the hot-key sketch (row 0 of `running`), with the running total
/// of now in the same row write (read only by versions from before the
/// compacted counts had a row of their own).
fn write_hot(sql: &SqlStorage, total: &Totals, hot: &str) -> Result<(), ApiError> {
    let text = serde_json::to_string(total).map_err(|e| internal("encoding totals", e))?;
    exec(
        sql,
        "INSERT INTO running (id, totals, hot) VALUES (0, ?, ?) \
         ON CONFLICT(id) DO UPDATE SET totals = excluded.totals, hot = excluded.hot",
        vec![text.into(), hot.into()],
    )
}

/// The benchmark's calls (`test-routes` builds only): fill a shard with
/// idle source rows, and read them all the way `/stats` did before the
/// running totals (a scan of every row), for comparison.
#[cfg(feature = "test-routes")]
pub mod bench {
    use pipeline_core::error::ApiError;
    use pipeline_core::protocol::Call;
    use serde::{Deserialize, Serialize};
    use worker::SqlStorage;

    use super::{rows, write_source, SourceRow, StoredSource, Totals, COLUMNS};

    /// Adds `count` source rows named `<prefix><n>` with zero totals.
    #[derive(Debug, Serialize, Deserialize)]
    pub struct SeedSources {
        pub prefix: String,
        pub count: u32,
    }

    /// How many source rows a shard holds.
    #[derive(Debug, Serialize, Deserialize)]
    pub struct SourceCount {
        pub rows: u64,
    }

    impl Call for SeedSources {
        const PATH: &'static str = "/_test/seed-sources";
        type Reply = SourceCount;
    }

    /// Sums every source row (the read before running totals).
    #[derive(Debug, Serialize, Deserialize)]
    pub struct ScanSources {}

    impl Call for ScanSources {
        const PATH: &'static str = "/_test/scan-sources";
        type Reply = SourceCount;
    }

    pub fn seed(sql: &SqlStorage, c: &SeedSources) -> Result<SourceCount, ApiError> {
        let now = crate::http::now_ms();
        for n in 0..c.count {
            let row = SourceRow {
                version: 1,
                totals: Totals::default(),
                pushed_ms: Some(now),
            };
            write_source(sql, &format!("{}{n}", c.prefix), &row)?;
        }
        scan(sql)
    }

    pub fn scan(sql: &SqlStorage) -> Result<SourceCount, ApiError> {
        let all: Vec<StoredSource> = rows(sql, &format!("SELECT {COLUMNS} FROM sources"), vec![])?;
        let mut t = Totals::default();
        let n = all.len() as u64;
        for r in all {
            t += SourceRow::from(r).totals;
        }
        Ok(SourceCount { rows: n })
    }
}
