//! `?mode=sync`: the write is made now, by the key's scheduler, if the
//! key's one-write-per-second slot is free; otherwise `429` with the time
//! it frees. Sync and async writes share the slot, so the spacing rule
//! holds across both modes.
//!
//! The body streams from the client through the scheduler to R2; the
//! descriptor (id, metadata) rides in a header.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use pipeline_core::config::INLINE_BODY_MAX_BYTES;
use pipeline_core::error::ApiError;
use pipeline_core::id::WriteOp;
use pipeline_core::message::{BodyRef, WriteMessage, MESSAGE_VERSION};
use worker::{Headers, Method, Request, RequestInit};

use super::{read_small_body, stamp, validate};
use crate::app::App;
use crate::http::{internal, ApiResult};
use crate::objects::protocol::SYNC_WRITE_HEADER;

/// Sends a synchronous write to the key's scheduler and relays its answer
/// (`201`, `204`, `429` with rate-limit headers, or `409`).
///
/// # Errors
/// Validation errors, `length_required` for a large body without length,
/// `unavailable` when the scheduler cannot be reached.
pub async fn write(app: &App, mut req: Request, raw_key: &str, op: WriteOp) -> ApiResult {
    let incoming = validate(app, &req, raw_key, op)?;
    // Small bodies are read first: a rejected write (429, 409) then leaves
    // no half-read client stream behind. Large ones stream through.
    let (buffered, size) = match (op, incoming.length) {
        (WriteOp::Delete, _) => (None, 0),
        (WriteOp::Put, Some(n)) if n > INLINE_BODY_MAX_BYTES => (None, n),
        (WriteOp::Put, _) => {
            let bytes = read_small_body(&mut req, app.settings.max_upload_bytes).await?;
            let n = bytes.len() as u64;
            (Some(bytes), n)
        }
    };
    let (id, accepted_ms) = stamp(app, &incoming.key, op, size)?;
    let descriptor = WriteMessage {
        v: MESSAGE_VERSION,
        id,
        key: incoming.key.clone(),
        accepted_ms,
        op,
        size,
        meta: incoming.meta,
        body: BodyRef::Empty,
    };
    let headers = Headers::new();
    // Header values must be Latin-1; keys and metadata may not be.
    let _ = headers.set(SYNC_WRITE_HEADER, &STANDARD.encode(descriptor.encode()));
    let mut init = RequestInit::new();
    init.with_method(Method::Put);
    if op == WriteOp::Put && size > 0 {
        let _ = headers.set("Content-Length", &size.to_string());
        match buffered {
            Some(bytes) => {
                init.with_body(Some(js_sys::Uint8Array::from(bytes.as_slice()).into()));
            }
            None => {
                init.with_body(req.inner().body().map(Into::into));
            }
        }
    }
    init.with_headers(headers);
    let forward = Request::new_with_init("https://do/sync", &init)
        .map_err(|e| internal("sync request", e))?;
    app.scheduler(&incoming.key)?
        .fetch_with_request(forward)
        .await
        .map_err(|e| ApiError::Unavailable(format!("the key's scheduler is unreachable: {e}")))
}
