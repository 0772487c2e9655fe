//! `POST /batch`: up to 100 writes in one request (NDJSON, one write per
//! line). Each line is validated on its own; accepted lines are stamped
//! and sent, grouped by the upload queue of their keys, with as few queue
//! batch sends per queue as the limits allow
//! (`pipeline_core::producer::enqueue_batch`), and the answer lists each
//! line's result in order: a failed send fails exactly its own lines. A line's `202`-like result is exactly what a
//! single `PUT`/`DELETE` would have answered; a refused line changes
//! nothing.

use futures_util::StreamExt;
use pipeline_core::batch::{parse, BatchWrite};
use pipeline_core::error::ApiError;
use pipeline_core::message::{BodyRef, WriteMessage, MESSAGE_VERSION};
use pipeline_core::producer::{enqueue_batch, needs_staging};
use serde_json::{json, Value};
use worker::{Context, Request};

use super::{stage_bytes, stamp, Delivery, QueueIo};
use crate::app::App;
use crate::http::{self, internal, ApiResult};
use crate::stats;

/// Serves `POST /batch`.
///
/// # Errors
/// `payload_too_large` (over 100 lines or `MAX_BATCH_BYTES`),
/// `invalid_body` (not NDJSON); per-line errors are in the answer.
pub async fn serve(app: &App, ctx: &Context, mut req: Request) -> ApiResult {
    let declared = req
        .headers()
        .get("Content-Length")
        .ok()
        .flatten()
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > app.settings.max_batch_bytes) {
        return Err(ApiError::PayloadTooLarge(format!(
            "a batch may hold at most {} bytes",
            app.settings.max_batch_bytes
        )));
    }
    let body = read_up_to(&mut req, app.settings.max_batch_bytes).await?;
    let lines = parse(&body, app.settings.max_batch_bytes)?;

    // Stamp and (for large bodies) stage every valid line.
    let mut results: Vec<Value> = vec![Value::Null; lines.len()];
    let mut msgs: Vec<WriteMessage> = Vec::new();
    let mut slots: Vec<usize> = Vec::new();
    for (i, line) in lines.into_iter().enumerate() {
        match line {
            Err((key, e)) => results[i] = refused(key.as_deref(), &e),
            Ok(w) => match message(app, w).await {
                Ok(m) => {
                    msgs.push(m);
                    slots.push(i);
                }
                Err((key, e)) => results[i] = refused(Some(&key), &e),
            },
        }
    }
    let io = QueueIo {
        app,
        delivery: Delivery::default(),
    };
    let outcomes = enqueue_batch(&io, &msgs).await;
    let mut accepted = 0;
    for ((msg, slot), outcome) in msgs.iter().zip(slots).zip(outcomes) {
        results[slot] = match outcome {
            Ok(e) => {
                accepted += 1;
                if e.count_accepted {
                    stats::record_accepted(&app.env, ctx);
                }
                let status_url = format!("/uploads/{}", e.id);
                json!({"id": e.id, "key": msg.key, "state": "queued", "status_url": status_url})
            }
            Err(e) => refused(Some(&msg.key), &e),
        };
    }
    let rejected = results.len() - accepted;
    http::json(
        200,
        &json!({"accepted": accepted, "rejected": rejected, "results": results}),
    )
}

fn refused(key: Option<&str>, e: &ApiError) -> Value {
    json!({"key": key, "error": {"code": e.code(), "message": e.to_string()}})
}

/// A stamped message for a valid line; a body whose message would not
/// fit one queue message (`INLINE_MESSAGE_MAX_BYTES`, checked on the
/// encoded message) is staged in R2 first, as a single `PUT` does.
async fn message(app: &App, w: BatchWrite) -> Result<WriteMessage, (String, ApiError)> {
    let key = w.key.clone();
    let fail = |e: ApiError| (key.clone(), e);
    let size = w.body.len() as u64;
    let (id, accepted_ms) = stamp(app, &w.key, w.op, size).map_err(fail)?;
    let inline = size <= app.settings.inline_body_bound();
    let mut msg = WriteMessage {
        v: MESSAGE_VERSION,
        id,
        key: w.key,
        accepted_ms,
        op: w.op,
        size,
        meta: w.meta,
        // Over the bound the body cannot fit whatever its envelope: not
        // worth encoding.
        body: if inline {
            WriteMessage::inline(&w.body)
        } else {
            BodyRef::Empty
        },
        idempotency_key: w.idempotency_key,
        condition: None,
        // As a single async write without Callback-Url: the deployment's
        // WEBHOOK_URL, if it is allowed.
        callback_url: super::default_callback(app),
    };
    if !inline || needs_staging(&msg, app.settings.inline_message_max_bytes) {
        msg.body = stage_bytes(app, w.body).await.map_err(fail)?;
    }
    Ok(msg)
}

/// Reads the whole body, refusing it (after draining it, so the client is
/// not left hanging) once it passes `max` bytes.
async fn read_up_to(req: &mut Request, max: u64) -> Result<Vec<u8>, ApiError> {
    let mut buf = Vec::new();
    if req.inner().body().is_none() {
        return Ok(buf);
    }
    let mut stream = req.stream().map_err(|e| internal("request body", e))?;
    let mut over = false;
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|_| ApiError::InvalidBody("the body could not be read".into()))?;
        if !over {
            buf.extend_from_slice(&chunk);
            over = buf.len() as u64 > max;
            if over {
                buf = Vec::new();
            }
        }
    }
    if over {
        return Err(ApiError::PayloadTooLarge(format!(
            "a batch may hold at most {max} bytes"
        )));
    }
    Ok(buf)
}
