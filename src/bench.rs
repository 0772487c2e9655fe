//! Routes for the benchmark and the fault tests, compiled in only with the
//! `test-routes` feature (`PIPELINE_TEST_ROUTES=1 scripts/build.sh`). A
//! production build has none of them.
//!
//! - `POST /_bench/enqueue`: sends a fixed small message and answers 202,
//!   the floor of this design on this runtime.
//! - `PUT /_bench/direct/{key}`: puts the body straight into R2, as a user
//!   without the pipeline would, and reports when the write started.
//! - `GET /_bench/billing[?reset=1]`: the billable operations counted since
//!   the last reset ([`crate::billing`]), then (with `reset=1`) zero again.
//!   Not itself counted.
//! - `PUT /_test/delayed/{key}?delay=N`: an async write whose message is
//!   delivered N seconds late (a late, older write).
//! - `PUT /_test/duplicate/{key}?copies=N`: an async write sent N times.
//! - `POST /_test/fail-writes/{key}` `{"count": n, "stall_ms": m}`: the
//!   key's next n R2 writes fail; the next one first waits m ms.
//! - `POST /_test/tx-probe/{key}` `{"fail": bool}`: two writes in one
//!   transaction of the key's scheduler storage, then (with `fail`) a
//!   failing statement; answers which writes were kept.
//! - `POST /_test/legacy-bodies/{key}`: moves the key's held messages into
//!   a `bodies` table, where schedulers created by earlier versions kept
//!   them; answers how many moved and how many that table holds.
//! - `POST /_test/legacy-superseded/{key}`: moves the key's superseded
//!   writes into the `superseded` and `supersessors` tables, one row per
//!   write, where schedulers created by earlier versions kept them;
//!   answers how many moved and how many rows that table holds.
//! - `POST /_test/enqueue-raw`: sends the body as a raw queue message.
//! - `GET /_test/staged`: the staged bodies still in the bucket.
//! - `PUT /_test/stage-orphan`: stages a body and sends nothing (a producer
//!   that died between the two).
//! - `POST /_test/sweep?older_than_ms=N`: runs the staging sweep now.
//! - `POST /_test/stats-seed?count=N`: adds N idle source rows (zero
//!   totals) spread over the stats shards, as N keys written once would.
//! - `GET /_test/stats-scan`: reads every source row of every shard (what
//!   `/stats` cost before the running totals); answers the row count.
//! - `GET /_test/events?id=<upload id>`: the commit events recorded for
//!   that upload. The harness's `consume_events` option binds this Worker
//!   as the consumer of the `EVENTS` queue (production has none); each
//!   message is then stored by [`record_events`] under
//!   [`TEST_EVENTS_PREFIX`] and acked.

use pipeline_core::error::ApiError;
use pipeline_core::id::WriteOp;
use pipeline_core::key::decode_key;
use pipeline_core::message::STAGING_PREFIX;
use pipeline_core::protocol::Call;
use serde_json::json;
use wasm_bindgen::JsValue;
use worker::{
    Context, Data, Env, MessageBatch, MessageExt, Method, QueueContentType, RawMessageBuilder,
    Request,
};

use crate::app::App;
use crate::http::{self, internal, log, now_ms, ApiResult};
use crate::objects::scheduler_io::faults::FailWrites;
use crate::objects::scheduler_store::probe::{LegacyBodies, LegacySuperseded, TxProbe};
use crate::producer::{self, Delivery};

/// The billing counts route (not counted as a Worker request).
pub const BILLING_PATH: &str = "/_bench/billing";

/// The body of a bench enqueue; the consumer acks it and does nothing.
pub const NOOP_MESSAGE: &str = "bench-noop";

/// Where [`record_events`] keeps the commit events it consumed:
/// `<prefix><upload id>/<event id>-<queue message id>`, one object per
/// delivered message, so repeats stay visible. Under the reserved prefix,
/// never listed by `GET /objects`.
pub const TEST_EVENTS_PREFIX: &str = "_pipeline/test-events/";

/// Whether `s` may be a segment of a recorded event's R2 key: upload ids,
/// webhook ids and queue message ids are URL-safe, anything else is not
/// stored.
fn safe_segment(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 512
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && s != "."
        && s != ".."
}

fn query_u32(req: &Request, name: &str) -> Result<u32, ApiError> {
    let url = req.url().map_err(|e| internal("url", e))?;
    Ok(url
        .query_pairs()
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0))
}

/// Serves a test route, or `None` when the path is not one.
pub async fn route(app: &App, ctx: &Context, mut req: Request, path: &str) -> Option<ApiResult> {
    let method = req.method();
    if !(path.starts_with("/_bench/") || path.starts_with("/_test/")) {
        return None;
    }
    if let Err(e) = app.require_token(&req) {
        return Some(Err(e));
    }
    Some(match (method, path) {
        (Method::Post, "/_bench/enqueue") => bench_enqueue(app).await,
        (Method::Get, BILLING_PATH) => {
            let reset = query_u32(&req, "reset").unwrap_or(0) == 1;
            http::json(
                200,
                &json!({"isolate": crate::billing::isolate(), "counts": crate::billing::take(reset)}),
            )
        }
        (Method::Put, p) if p.starts_with("/_bench/direct/") => {
            direct(app, &mut req, &p["/_bench/direct/".len()..]).await
        }
        (Method::Put, p) if p.starts_with("/_test/delayed/") => {
            let delivery = Delivery {
                delay_seconds: query_u32(&req, "delay").unwrap_or(0),
                copies: 1,
            };
            producer::accept(
                app,
                ctx,
                req,
                &p["/_test/delayed/".len()..],
                WriteOp::Put,
                delivery,
            )
            .await
        }
        (Method::Put, p) if p.starts_with("/_test/duplicate/") => {
            let delivery = Delivery {
                delay_seconds: 0,
                copies: query_u32(&req, "copies").unwrap_or(2),
            };
            producer::accept(
                app,
                ctx,
                req,
                &p["/_test/duplicate/".len()..],
                WriteOp::Put,
                delivery,
            )
            .await
        }
        (Method::Post, p) if p.starts_with("/_test/fail-writes/") => {
            fail_writes(app, &mut req, &p["/_test/fail-writes/".len()..]).await
        }
        (Method::Post, p) if p.starts_with("/_test/tx-probe/") => {
            tx_probe(app, &mut req, &p["/_test/tx-probe/".len()..]).await
        }
        (Method::Post, p) if p.starts_with("/_test/legacy-bodies/") => {
            scheduler_call(app, &p["/_test/legacy-bodies/".len()..], &LegacyBodies {}).await
        }
        (Method::Post, p) if p.starts_with("/_test/legacy-superseded/") => {
            let raw_key = &p["/_test/legacy-superseded/".len()..];
            scheduler_call(app, raw_key, &LegacySuperseded {}).await
        }
        (Method::Post, "/_test/enqueue-raw") => enqueue_raw(app, &mut req).await,
        (Method::Get, "/_test/staged") => staged(app).await,
        (Method::Get, "/_test/events") => recorded_events(app, &req).await,
        (Method::Put, "/_test/stage-orphan") => stage_orphan(app, &mut req).await,
        (Method::Post, "/_test/stats-seed") => stats_seed(app, &req).await,
        (Method::Get, "/_test/stats-scan") => stats_scan(app).await,
        (Method::Post, "/_test/sweep") => {
            let older_than_ms = i64::from(query_u32(&req, "older_than_ms").unwrap_or(0));
            match crate::sweep::sweep(app, older_than_ms).await {
                Ok(s) => http::json(200, &json!({"listed": s.listed, "deleted": s.deleted})),
                Err(e) => Err(e),
            }
        }
        _ => Err(ApiError::NotFound("no such test route".into())),
    })
}

async fn stats_seed(app: &App, req: &Request) -> ApiResult {
    use crate::objects::stats_shard::bench::SeedSources;
    use pipeline_core::config::STATS_SHARDS;
    let count = query_u32(req, "count")?;
    let batch = format!("seed{}-", now_ms());
    let mut calls = Vec::new();
    for shard in 0..STATS_SHARDS {
        let stub = crate::objects::stub::ObjectStub::stats_shard(&app.env, shard)?;
        let share = count / STATS_SHARDS + u32::from(shard < count % STATS_SHARDS);
        let prefix = format!("{batch}{shard}-");
        calls.push(async move {
            stub.call(&SeedSources {
                prefix,
                count: share,
            })
            .await
        });
    }
    let mut rows = 0;
    for r in futures_util::future::join_all(calls).await {
        rows += r?.rows;
    }
    http::json(200, &json!({ "rows": rows }))
}

async fn stats_scan(app: &App) -> ApiResult {
    use crate::objects::stats_shard::bench::ScanSources;
    use pipeline_core::config::STATS_SHARDS;
    let mut calls = Vec::new();
    for shard in 0..STATS_SHARDS {
        let stub = crate::objects::stub::ObjectStub::stats_shard(&app.env, shard)?;
        calls.push(async move { stub.call(&ScanSources {}).await });
    }
    let mut rows = 0;
    for r in futures_util::future::join_all(calls).await {
        rows += r?.rows;
    }
    http::json(200, &json!({ "rows": rows }))
}

async fn bench_enqueue(app: &App) -> ApiResult {
    app.upload_queue(0)?
        .send_raw(
            RawMessageBuilder::new(JsValue::from_str(NOOP_MESSAGE))
                .build_with_content_type(QueueContentType::Text),
        )
        .await
        .map_err(|e| ApiError::QueueUnavailable(e.to_string()))?;
    http::json(202, &json!({"ok": true}))
}

async fn direct(app: &App, req: &mut Request, raw_key: &str) -> ApiResult {
    let key = decode_key(raw_key)?;
    let start = now_ms();
    let data = match req.inner().body() {
        Some(s) => Data::ReadableStream(s),
        None => Data::Empty,
    };
    app.bucket()?
        .put(key.clone(), data)
        .execute()
        .await
        .map_err(|e| internal("R2 put", e))?;
    http::json(
        201,
        &json!({"key": key, "start_ms": start, "end_ms": now_ms()}),
    )
}

async fn fail_writes(app: &App, req: &mut Request, raw_key: &str) -> ApiResult {
    let key = decode_key(raw_key)?;
    let body: serde_json::Value = req
        .json()
        .await
        .map_err(|_| ApiError::InvalidBody("body is not JSON".into()))?;
    let count = body["count"].as_i64().unwrap_or(0);
    let stall_ms = body["stall_ms"].as_i64().unwrap_or(0);
    app.scheduler(&key)?
        .call(&FailWrites { count, stall_ms })
        .await?;
    http::json(
        200,
        &json!({"ok": true, "count": count, "stall_ms": stall_ms}),
    )
}

async fn tx_probe(app: &App, req: &mut Request, raw_key: &str) -> ApiResult {
    let key = decode_key(raw_key)?;
    let body: serde_json::Value = req
        .json()
        .await
        .map_err(|_| ApiError::InvalidBody("body is not JSON".into()))?;
    let fail = body["fail"].as_bool().unwrap_or(false);
    reply_json(&app.scheduler(&key)?.call(&TxProbe { fail }).await?)
}

/// Sends a test call to the key's scheduler and answers its reply as JSON.
async fn scheduler_call<C: Call>(app: &App, raw_key: &str, call: &C) -> ApiResult {
    let key = decode_key(raw_key)?;
    reply_json(&app.scheduler(&key)?.call(call).await?)
}

/// A scheduler's reply to a test call, as the route's JSON answer.
fn reply_json(reply: &impl serde::Serialize) -> ApiResult {
    let value = serde_json::to_value(reply).map_err(|e| internal("encoding the reply", e))?;
    http::json(200, &value)
}

async fn enqueue_raw(app: &App, req: &mut Request) -> ApiResult {
    let text = req
        .text()
        .await
        .map_err(|_| ApiError::InvalidBody("body is not text".into()))?;
    app.upload_queue(0)?
        .send_raw(
            RawMessageBuilder::new(JsValue::from_str(&text))
                .build_with_content_type(QueueContentType::Text),
        )
        .await
        .map_err(|e| ApiError::QueueUnavailable(e.to_string()))?;
    http::json(202, &json!({"ok": true}))
}

/// Stages a body and sends nothing, as a producer that died between the
/// two would leave it.
async fn stage_orphan(app: &App, req: &mut Request) -> ApiResult {
    let bytes = req
        .bytes()
        .await
        .map_err(|_| ApiError::InvalidBody("unreadable body".into()))?;
    let key = format!(
        "{STAGING_PREFIX}orphan-{}",
        crate::http::hex(&crate::http::random_bytes::<8>()?)
    );
    app.bucket()?
        .put(key.clone(), Data::Bytes(bytes))
        .execute()
        .await
        .map_err(|e| internal("R2 put", e))?;
    http::json(201, &json!({"staged_key": key}))
}

async fn staged(app: &App) -> ApiResult {
    let page = app
        .bucket()?
        .list()
        .prefix(STAGING_PREFIX)
        .execute()
        .await
        .map_err(|e| internal("R2 list", e))?;
    let keys: Vec<String> = page.objects().into_iter().map(|o| o.key()).collect();
    http::json(200, &json!({"staged": keys}))
}

/// Consumes a batch of the commit-event queue (`EVENTS`, only when the
/// harness bound this Worker as its consumer): stores each event under
/// [`TEST_EVENTS_PREFIX`] and acks it. An event that is not JSON or names
/// no usable ids is logged and acked; a failed store is retried.
pub async fn record_events<T>(batch: &MessageBatch<T>, env: &Env) {
    let app = match App::new(env.clone()) {
        Ok(a) => a,
        Err(e) => {
            log(json!({"level": "error", "at": "test.events", "error": e.to_string()}));
            batch.retry_all();
            return;
        }
    };
    for raw in batch.raw_iter() {
        let text = crate::consumer::text_of(&raw).unwrap_or_default();
        let event: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        let upload_id = event["data"]["id"].as_str().unwrap_or_default();
        let event_id = event["id"].as_str().unwrap_or_default();
        let message_id = raw.id();
        if ![upload_id, event_id, message_id.as_str()]
            .iter()
            .all(|s| safe_segment(s))
        {
            log(json!({"level": "error", "at": "test.events", "error": "unusable event; dropped"}));
            raw.ack();
            continue;
        }
        let key = format!("{TEST_EVENTS_PREFIX}{upload_id}/{event_id}-{message_id}");
        let stored = match app.bucket() {
            Ok(bucket) => bucket
                .put(key, Data::Bytes(text.into_bytes()))
                .execute()
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match stored {
            Ok(()) => raw.ack(),
            Err(e) => {
                log(json!({"level": "warn", "at": "test.events", "error": e}));
                raw.retry();
            }
        }
    }
}

/// `GET /_test/events?id=<upload id>`: `{"events": [...]}`, every recorded
/// copy of every event of that upload, in key order.
async fn recorded_events(app: &App, req: &Request) -> ApiResult {
    let url = req.url().map_err(|e| internal("url", e))?;
    let id = url
        .query_pairs()
        .find(|(k, _)| k == "id")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    if !safe_segment(&id) {
        return Err(ApiError::InvalidParameter("id must be an upload id".into()));
    }
    let bucket = app.bucket()?;
    let prefix = format!("{TEST_EVENTS_PREFIX}{id}/");
    let mut events = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut list = bucket.list().prefix(prefix.clone());
        if let Some(c) = cursor.take() {
            list = list.cursor(c);
        }
        let page = list.execute().await.map_err(|e| internal("R2 list", e))?;
        for o in page.objects() {
            let Some(obj) = bucket
                .get(o.key())
                .execute()
                .await
                .map_err(|e| internal("R2 get", e))?
            else {
                continue;
            };
            let Some(body) = obj.body() else { continue };
            let text = body.text().await.map_err(|e| internal("R2 body", e))?;
            events.push(serde_json::from_str::<serde_json::Value>(&text).unwrap_or_default());
        }
        match page.cursor() {
            Some(c) if page.truncated() => cursor = Some(c),
            _ => break,
        }
    }
    http::json(200, &json!({"events": events}))
}
