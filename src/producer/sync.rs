//! `?mode=sync`: the write is made now, by the key's scheduler, if the
//! key's one-write-per-second slot is free; otherwise `429` with the time
//! it frees. Sync and async writes share the slot, so the spacing rule
//! holds across both modes.
//!
//! The body streams from the client through the scheduler to R2; the
//! descriptor (id, metadata) rides in a header.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use futures_util::StreamExt;
use pipeline_core::config::INLINE_BODY_MAX_BYTES;
use pipeline_core::error::ApiError;
use pipeline_core::id::WriteOp;
use pipeline_core::message::{BodyRef, WriteMessage, MESSAGE_VERSION};
use worker::{Headers, Method, Request, RequestInit};

use super::{stamp, validate};
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
    let mut buffered: Option<Vec<u8>> = None;
    let size = match (op, incoming.length) {
        (WriteOp::Delete, _) => 0,
        (WriteOp::Put, Some(n)) => n,
        (WriteOp::Put, None) => {
            let mut buf = Vec::new();
            if req.inner().body().is_some() {
                let mut stream = req.stream().map_err(|e| internal("request body", e))?;
                while let Some(chunk) = stream.next().await {
                    buf.extend_from_slice(
                        &chunk
                            .map_err(|e| ApiError::InvalidBody(format!("reading the body: {e}")))?,
                    );
                    if buf.len() as u64 > INLINE_BODY_MAX_BYTES {
                        return Err(ApiError::LengthRequired(
                            "send Content-Length with large bodies".into(),
                        ));
                    }
                }
            }
            let n = buf.len() as u64;
            buffered = Some(buf);
            n
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
