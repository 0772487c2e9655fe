//! `?mode=sync`: the write is made now, by the key's scheduler, if the
//! key's one-write-per-second slot is free; otherwise `429` with the time
//! it frees. Sync and async writes share the slot, so the spacing rule
//! holds across both modes.
//!
//! No client stream is read while the slot is held. Bodies up to the
//! inline limit are buffered and sent inside the [`SyncRequest`]. Larger
//! ones first ask the scheduler (`probe`) whether the slot is free, so a
//! `429` or `409` uploads nothing; then the body is streamed to a staging
//! object, and the scheduler copies it inside R2. The scheduler owns the
//! staged body from the moment it answers (it deletes it whatever the
//! outcome).

use pipeline_core::config::BUFFERED_BODY_MAX_BYTES;
use pipeline_core::error::ApiError;
use pipeline_core::id::WriteOp;
use pipeline_core::message::{BodyRef, WriteMessage, MESSAGE_VERSION};
use pipeline_core::protocol::{SyncReply, SyncRequest};
use pipeline_core::time::rfc3339_ms;
use serde_json::json;
use worker::Request;

use super::{read_small_body, stage_body, stamp, validate};
use crate::app::App;
use crate::http::{self, ApiResult};
use crate::objects::stub::Exchange;

/// Makes a synchronous write and answers it: `201` (`204` for a DELETE),
/// `429` with the rate-limit headers, `409` or `503`.
///
/// # Errors
/// Validation errors, `length_required` for a large body without length,
/// the refusals above, `unavailable` when the scheduler cannot be reached.
pub async fn write(app: &App, mut req: Request, raw_key: &str, op: WriteOp) -> ApiResult {
    let incoming = validate(app, &req, raw_key, op)?;
    if incoming.callback_header {
        // Webhooks report the end of an async write; a sync write's answer
        // is its end. Refused rather than ignored, so no client waits for
        // a webhook that never comes (a default WEBHOOK_URL is not used).
        return Err(ApiError::InvalidHeader(
            "Callback-Url applies to async writes only, not to mode=sync".into(),
        ));
    }
    let staged_size = match (op, incoming.length) {
        (WriteOp::Put, Some(n)) if n > BUFFERED_BODY_MAX_BYTES => Some(n),
        _ => None,
    };
    let (body, size) = match (op, staged_size) {
        (WriteOp::Delete, _) => (BodyRef::Empty, 0),
        (WriteOp::Put, Some(n)) => (BodyRef::Empty, n),
        (WriteOp::Put, None) => {
            let bytes = read_small_body(&mut req, app.settings.max_upload_bytes).await?;
            (WriteMessage::inline(&bytes), bytes.len() as u64)
        }
    };
    let (id, accepted_ms) = stamp(app, &incoming.key, op, size)?;
    let mut msg = WriteMessage {
        v: MESSAGE_VERSION,
        id,
        key: incoming.key,
        accepted_ms,
        op,
        size,
        meta: incoming.meta,
        body,
        // A sync write is not deduplicated by its Idempotency-Key.
        idempotency_key: None,
        condition: incoming.condition.clone(),
        callback_url: None,
    };
    let stub = app.scheduler(&msg.key)?;
    if staged_size.is_some() {
        let probe = SyncRequest {
            write: msg.clone(),
            probe: true,
        };
        match stub.call(&probe).await {
            Ok(SyncReply::Free) => {}
            // Refused (or no answer): nothing is uploaded. The unread body
            // is left to the runtime, as for a `413`: cancelling it stops
            // the local proxy from reading the client's upload, which then
            // never sees the answer.
            other => return answer(&msg, other?),
        }
        msg.body = stage_body(app, &req).await?;
    }
    let real = SyncRequest {
        write: msg,
        probe: false,
    };
    match stub.exchange(&real).await {
        Exchange::Answered(Ok(reply)) => answer(&real.write, reply),
        Exchange::Answered(Err(e)) => {
            // The scheduler's handler ended without a reply: whatever it
            // did, it no longer reads the staged body.
            if let Some(k) = real.write.staged_key() {
                if let Ok(bucket) = app.bucket() {
                    let _ = bucket.delete(k).await;
                }
            }
            Err(e)
        }
        // No answer: the scheduler may still be copying the staged body,
        // so it is left alone.
        Exchange::Unreachable(e) => Err(e),
    }
}

/// The HTTP answer of a scheduler's reply.
fn answer(msg: &WriteMessage, reply: SyncReply) -> ApiResult {
    if let Some(slot) = reply.slot() {
        return Err(ApiError::RateLimited(slot));
    }
    match reply {
        SyncReply::Committed { etag, committed_ms } => match msg.op {
            WriteOp::Delete => http::empty(204),
            WriteOp::Put => http::json(
                201,
                &json!({
                    "id": msg.id, "key": msg.key, "etag": etag, "size": msg.size,
                    "committed_at": rfc3339_ms(committed_ms),
                }),
            ),
        },
        SyncReply::Stale { newer } => Err(ApiError::NewerWritePending(format!(
            "the key's scheduler already holds a newer write ({newer}); this write would be older"
        ))),
        SyncReply::PreconditionFailed { .. } => Err(ApiError::PreconditionFailed(
            "the write's condition does not hold against the stored object".into(),
        )),
        SyncReply::Failed { message } => Err(ApiError::Unavailable(format!(
            "the R2 write failed: {message}"
        ))),
        SyncReply::Free | SyncReply::RateLimited { .. } => Err(ApiError::Internal(
            "the scheduler answered a write as a probe".into(),
        )),
    }
}
