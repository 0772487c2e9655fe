//! Routes for the benchmark and the fault tests, compiled in only with the
//! `test-routes` feature (`PIPELINE_TEST_ROUTES=1 scripts/build.sh`). A
//! production build has none of them.
//!
//! - `POST /_bench/enqueue`: sends a fixed small message and answers 202,
//!   the floor of this design on this runtime.
//! - `PUT /_bench/direct/{key}`: puts the body straight into R2, as a user
//!   without the pipeline would, and reports when the write started.
//! - `PUT /_test/delayed/{key}?delay=N`: an async write whose message is
//!   delivered N seconds late (a late, older write).
//! - `PUT /_test/duplicate/{key}?copies=N`: an async write sent N times.
//! - `POST /_test/fail-writes/{key}` `{"count": n}`: the key's next n R2
//!   writes fail.
//! - `POST /_test/tx-probe/{key}` `{"fail": bool}`: two writes in one
//!   transaction of the key's scheduler storage, then (with `fail`) a
//!   failing statement; answers which writes were kept.
//! - `POST /_test/enqueue-raw`: sends the body as a raw queue message.
//! - `GET /_test/staged`: the staged bodies still in the bucket.
//! - `PUT /_test/stage-orphan`: stages a body and sends nothing (a producer
//!   that died between the two).
//! - `POST /_test/sweep?older_than_ms=N`: runs the staging sweep now.

use pipeline_core::error::ApiError;
use pipeline_core::id::WriteOp;
use pipeline_core::key::decode_key;
use pipeline_core::message::STAGING_PREFIX;
use serde_json::json;
use wasm_bindgen::JsValue;
use worker::{Context, Data, Method, QueueContentType, RawMessageBuilder, Request};

use crate::app::App;
use crate::http::{self, internal, now_ms, ApiResult};
use crate::objects::scheduler_io::faults::FailWrites;
use crate::objects::scheduler_store::probe::TxProbe;
use crate::producer::{self, Delivery};

/// The body of a bench enqueue; the consumer acks it and does nothing.
pub const NOOP_MESSAGE: &str = "bench-noop";

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
        (Method::Post, "/_test/enqueue-raw") => enqueue_raw(app, &mut req).await,
        (Method::Get, "/_test/staged") => staged(app).await,
        (Method::Put, "/_test/stage-orphan") => stage_orphan(app, &mut req).await,
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

async fn bench_enqueue(app: &App) -> ApiResult {
    app.queue()?
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
    app.scheduler(&key)?.call(&FailWrites { count }).await?;
    http::json(200, &json!({"ok": true, "count": count}))
}

async fn tx_probe(app: &App, req: &mut Request, raw_key: &str) -> ApiResult {
    let key = decode_key(raw_key)?;
    let body: serde_json::Value = req
        .json()
        .await
        .map_err(|_| ApiError::InvalidBody("body is not JSON".into()))?;
    let fail = body["fail"].as_bool().unwrap_or(false);
    let r = app.scheduler(&key)?.call(&TxProbe { fail }).await?;
    http::json(
        200,
        &json!({"error": r.error, "garbage_kept": r.garbage_kept, "idempotency_kept": r.idempotency_kept}),
    )
}

async fn enqueue_raw(app: &App, req: &mut Request) -> ApiResult {
    let text = req
        .text()
        .await
        .map_err(|_| ApiError::InvalidBody("body is not text".into()))?;
    app.queue()?
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
