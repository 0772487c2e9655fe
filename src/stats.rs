//! `/stats`, `/stats?top=N`, `/stats/keys/{key}` and `/metrics`, and the
//! Worker's side of counting: where totals are pushed and read.
//!
//! The decisions are in `pipeline_core::stats` (totals, how shards add
//! pushes, hot keys, the push loop); the shards are
//! `objects::stats_shard`; key schedulers push from their alarms
//! (`pipeline_core::engine`). This module holds the rest:
//!
//! - the shards' addresses: a source's pushes always go to one shard;
//! - reading: `/stats` sums the shards' running totals (one row each) and
//!   merges their hot-key lists; `/metrics` renders the same totals;
//! - `accepted` for asynchronous writes, counted without a Durable Object
//!   on the request path (below).
//!
//! Each isolate is a stats *source* with a random name and a cumulative
//! count. After a request is answered, one push loop per isolate runs in
//! `wait_until`: it pushes the current count, waits [`PUSH_INTERVAL_MS`],
//! and pushes again while the count moved. A burst of N uploads costs a few
//! shard calls per second instead of N, and the count stays exact (pushes
//! carry cumulative totals, see `objects::stats_shard`). `GET /stats`
//! flushes its own isolate's count first, so a client that reads its stats
//! after its uploads sees them; other isolates' counts land within the
//! interval.
//!
//! The loop records a heartbeat each time it runs rather than a "running"
//! flag it would clear at its end: the runtime may cancel a `wait_until`
//! future, and a request that finds a stale heartbeat starts a new loop
//! (the decisions are [`PushLoop`]'s).

use std::cell::RefCell;
use std::time::Duration;

use pipeline_core::config::STATS_SHARDS;
use pipeline_core::error::ApiError;
use pipeline_core::key::decode_key;
use pipeline_core::protocol::{InspectRequest, KeyInspection, TotalsRequest};
use pipeline_core::stats::hot_keys::{top_of, Counter};
use pipeline_core::stats::push_loop::{PushLoop, PUSH_INTERVAL_MS};
use pipeline_core::stats::{parse_top, stats_body};
use pipeline_core::stats::{Acked, Push, SourcePush, Totals};
use worker::{Context, Delay, Env, Request};

use crate::app::App;
use crate::http::{self, hex, internal, now_ms, random_bytes, ApiResult};
use crate::objects::stub::ObjectStub;

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

/// The totals over every shard, and the `top` keys written most recently
/// (none when `top` is 0). Flushes this isolate's own count first, so a
/// client reads the writes it was answered for.
///
/// # Errors
/// [`ApiError::Unavailable`] when a shard cannot be reached.
pub async fn read(env: &Env, top: usize) -> Result<(Totals, Vec<Counter>), ApiError> {
    flush(env).await;
    let mut calls = Vec::new();
    for shard in 0..STATS_SHARDS {
        let stub = ObjectStub::stats_shard(env, shard)?;
        calls.push(async move { stub.call(&TotalsRequest { top }).await });
    }
    let mut sum = Totals::default();
    let mut lists = Vec::new();
    for report in futures_util::future::join_all(calls).await {
        let report = report?;
        sum += report.totals;
        lists.push(report.top);
    }
    Ok((sum, top_of(lists, top)))
}

/// `GET /stats[?top=N]`.
///
/// # Errors
/// `invalid_parameter` for a bad `top`; [`ApiError::Unavailable`] when a
/// shard cannot be reached.
pub async fn serve(app: &App, req: &Request) -> ApiResult {
    let url = req.url().map_err(|e| internal("request url", e))?;
    let mut top = None;
    for (k, v) in url.query_pairs() {
        if k == "top" {
            top = Some(parse_top(&v)?);
        }
    }
    let (totals, hot) = read(&app.env, top.unwrap_or(0)).await?;
    http::json(200, &stats_body(totals, top.map(|_| hot.as_slice())))
}

/// `GET /metrics`: the same totals in the Prometheus text format.
///
/// # Errors
/// [`ApiError::Unavailable`] when a shard cannot be reached.
pub async fn metrics(app: &App) -> ApiResult {
    let (totals, _) = read(&app.env, 0).await?;
    let resp = http::text(200, &pipeline_core::metrics::render(&totals))?;
    http::set(
        resp.headers(),
        "Content-Type",
        "text/plain; version=0.0.4; charset=utf-8",
    )?;
    Ok(resp)
}

/// `GET /stats/keys/{key}`: what the key's scheduler holds now (the ops
/// page's key inspector).
///
/// # Errors
/// `invalid_key` for a bad key; [`ApiError::Unavailable`] when the
/// scheduler cannot be reached.
pub async fn serve_key(app: &App, raw_key: &str) -> ApiResult {
    let key = decode_key(raw_key)?;
    let view: KeyInspection = ObjectStub::scheduler(&app.env, &key)?
        .call(&InspectRequest { key })
        .await?;
    let body = serde_json::to_value(&view).map_err(|e| internal("encoding the key view", e))?;
    http::json(200, &body)
}

#[derive(Default)]
struct SourceState {
    name: String,
    accepted: i64,
    /// The count the shard acknowledged last.
    pushed: i64,
    pusher: PushLoop,
}

thread_local! {
    static SOURCE: RefCell<SourceState> = RefCell::new(SourceState::default());
}

/// Counts one accepted write and makes sure a push will carry it.
pub fn record_accepted(env: &Env, ctx: &Context) {
    let start = SOURCE.with(|s| {
        let mut s = s.borrow_mut();
        if s.name.is_empty() {
            s.name = format!(
                "producer:{}",
                random_bytes::<12>().map(|b| hex(&b)).unwrap_or_default()
            );
        }
        s.accepted += 1;
        s.pusher.on_count(now_ms())
    });
    let Some(generation) = start else {
        return;
    };
    let env = env.clone();
    ctx.wait_until(async move {
        loop {
            // A newer loop took over (this one was slow): stop.
            if !SOURCE.with(|s| s.borrow_mut().pusher.beat(generation, now_ms())) {
                return;
            }
            if !push_once(&env).await {
                break;
            }
            Delay::from(Duration::from_millis(PUSH_INTERVAL_MS.unsigned_abs())).await;
        }
        SOURCE.with(|s| s.borrow_mut().pusher.end(generation));
    });
}

/// Pushes this isolate's count if it moved since the last push. Returns
/// whether a push was made and succeeded (the loop goes on only then).
async fn push_once(env: &Env) -> bool {
    let (source, accepted, pushed) = SOURCE.with(|s| {
        let s = s.borrow();
        (s.name.clone(), s.accepted, s.pushed)
    });
    if source.is_empty() || accepted == pushed {
        return false;
    }
    let counted = |n| Totals {
        accepted: n,
        ..Totals::default()
    };
    let push = Push {
        source,
        push: SourcePush {
            version: accepted,
            totals: counted(accepted),
            base: (pushed > 0).then(|| Acked {
                version: pushed,
                totals: counted(pushed),
            }),
            key: None,
        },
    };
    if self::push(env, &push).await.is_err() {
        return false;
    }
    SOURCE.with(|s| {
        let mut s = s.borrow_mut();
        s.pushed = s.pushed.max(accepted);
    });
    true
}

/// Pushes this isolate's pending count now (before `/stats` is read).
async fn flush(env: &Env) {
    push_once(env).await;
}
