//! The producer: `PUT`/`DELETE /objects/{key}` validate, stamp and enqueue
//! a write and answer `202` at once with a status URL.
//!
//! The common path makes exactly one round trip: the queue send, to the
//! upload queue of the write's key (`UPLOAD_QUEUES`, see
//! `pipeline_core::queues`). Bodies whose message fits
//! (`INLINE_MESSAGE_MAX_BYTES`, checked on the encoded message) travel in
//! it; larger ones are staged in R2 under the reserved staging prefix
//! first (streamed, never held whole in memory, when the length alone
//! shows they cannot fit) and removed again if the send fails. An `Idempotency-Key` travels in the
//! message and adds one call to the key's scheduler *after* the send, which
//! says which id holds the key (`pipeline_core::producer::enqueue` decides;
//! [`QueueIo`] is its I/O).
//!
//! `?mode=sync` writes are handed to [`sync`] instead.

pub mod batch;
pub mod sync;

use futures_util::StreamExt;
use pipeline_core::config::{BUFFERED_BODY_MAX_BYTES, DEFAULT_MAX_UPLOAD_BYTES};
use pipeline_core::error::ApiError;
use pipeline_core::id::{Claims, WriteOp};
use pipeline_core::key::decode_key;
use pipeline_core::message::{
    BodyRef, WriteMessage, MAX_CALLBACK_URL_BYTES, MESSAGE_VERSION, STAGING_PREFIX,
};
use pipeline_core::meta::{validate_idempotency_key, ObjectMeta};
use pipeline_core::prefer;
use pipeline_core::producer::{enqueue, needs_staging, ProducerIo};
use pipeline_core::protocol::ClaimRequest;
use pipeline_core::protocol::StatusRequest;
use pipeline_core::time::rfc3339_ms;
use pipeline_core::write_condition::WriteCondition;
use serde_json::json;
use wasm_bindgen::JsValue;
use worker::{Context, Data, QueueContentType, RawMessageBuilder, Request};

use crate::app::App;
use crate::http::{self, hex, internal, now_ms, random_bytes, ApiResult};

/// How a write is to be made (`?mode=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Async,
    Sync,
}

/// Test-only knobs of the async path (benchmark and fault tests): a send
/// delay (a late, older write) and extra copies (duplicate deliveries).
#[derive(Debug, Clone, Copy, Default)]
pub struct Delivery {
    pub delay_seconds: u32,
    pub copies: u32,
}

/// Reads `?mode=`; any other query parameter is refused.
///
/// # Errors
/// [`ApiError::InvalidParameter`] for an unknown mode or parameter.
pub fn parse_mode(req: &Request) -> Result<Mode, ApiError> {
    let url = req.url().map_err(|e| internal("request url", e))?;
    let mut mode = Mode::Async;
    for (k, v) in url.query_pairs() {
        match (k.as_ref(), v.as_ref()) {
            ("mode", "async") => mode = Mode::Async,
            ("mode", "sync") => mode = Mode::Sync,
            ("mode", _) => {
                return Err(ApiError::InvalidParameter(
                    "unknown value for `mode`; use `async` or `sync`".into(),
                ))
            }
            _ => {
                return Err(ApiError::InvalidParameter(
                    "unknown query parameter; writes take only `mode`".into(),
                ))
            }
        }
    }
    Ok(mode)
}

/// A validated write request, before its body is taken.
pub struct Incoming {
    pub key: String,
    pub op: WriteOp,
    pub meta: ObjectMeta,
    pub idempotency_key: Option<String>,
    /// `If-Match: "<etag>"` or `If-None-Match: *`.
    pub condition: Option<WriteCondition>,
    /// `Prefer: wait=N`: hold the answer up to N seconds for the end.
    pub wait_secs: Option<u32>,
    /// The declared body length, when the request has one.
    pub length: Option<u64>,
    /// Where the write's end is POSTed: `Callback-Url`, else the
    /// deployment's `WEBHOOK_URL`; checked against the allowed origins.
    pub callback_url: Option<String>,
    /// The request itself carried `Callback-Url` (a sync write refuses it).
    pub callback_header: bool,
}

/// Validates everything about a write that can be checked before any work.
///
/// # Errors
/// `invalid_key`, `invalid_header` or `payload_too_large`.
pub fn validate(
    app: &App,
    req: &Request,
    raw_key: &str,
    op: WriteOp,
) -> Result<Incoming, ApiError> {
    let key = decode_key(raw_key)?;
    let headers: Vec<(String, String)> = req.headers().entries().collect();
    let meta = if op == WriteOp::Put {
        ObjectMeta::from_headers(&key, headers.iter().map(|(k, v)| (k.as_str(), v.as_str())))?
    } else {
        ObjectMeta::default()
    };
    let idempotency_key = req.headers().get("Idempotency-Key").ok().flatten();
    if let Some(k) = &idempotency_key {
        validate_idempotency_key(k)?;
    }
    let length =
        match req.headers().get("Content-Length").ok().flatten() {
            None => None,
            Some(v) => Some(v.trim().parse::<u64>().map_err(|_| {
                ApiError::InvalidHeader("Content-Length is not a whole number".into())
            })?),
        };
    let length = if op == WriteOp::Delete {
        Some(0)
    } else {
        length
    };
    if let Some(n) = length {
        if n > app.settings.max_upload_bytes {
            return Err(ApiError::PayloadTooLarge(format!(
                "the body is over the limit of {} bytes",
                app.settings.max_upload_bytes
            )));
        }
    }
    let header = |name: &str| req.headers().get(name).ok().flatten();
    let condition = WriteCondition::from_headers(
        header("If-Match").as_deref(),
        header("If-None-Match").as_deref(),
    )?;
    let wait_secs = prefer::parse(
        header("Prefer").as_deref(),
        app.settings.max_prefer_wait_secs,
    )?
    .wait_secs;
    let callback_header = header("Callback-Url");
    let callback_url = match &callback_header {
        Some(url) => {
            if url.len() > MAX_CALLBACK_URL_BYTES {
                return Err(ApiError::InvalidHeader(format!(
                    "Callback-Url is longer than {MAX_CALLBACK_URL_BYTES} bytes"
                )));
            }
            app.allowed_callbacks().check(url)?;
            Some(url.trim().to_string())
        }
        None => default_callback(app),
    };
    Ok(Incoming {
        key,
        op,
        meta,
        idempotency_key,
        condition,
        wait_secs,
        length,
        callback_url,
        callback_header: callback_header.is_some(),
    })
}

/// The deployment's `WEBHOOK_URL`, if set and allowed. One that is not on
/// `WEBHOOK_ALLOWED_ORIGINS` is a misconfiguration: logged, and writes are
/// accepted without a callback (never sent to an origin not allowed).
pub(crate) fn default_callback(app: &App) -> Option<String> {
    let url = app.var("WEBHOOK_URL")?;
    match app.allowed_callbacks().check(&url) {
        Ok(()) if url.len() <= MAX_CALLBACK_URL_BYTES => Some(url.trim().to_string()),
        _ => {
            http::log(json!({
                "level": "error", "at": "producer.webhook_url",
                "error": "WEBHOOK_URL is not an allowed https URL on WEBHOOK_ALLOWED_ORIGINS; writes are accepted without a callback",
            }));
            None
        }
    }
}

/// Stamps a write: its acceptance time and sealed id.
///
/// # Errors
/// [`ApiError::Internal`] without randomness; `unauthorized` without a secret.
pub fn stamp(app: &App, key: &str, op: WriteOp, size: u64) -> Result<(String, i64), ApiError> {
    let accepted_ms = now_ms();
    let claims = Claims {
        key: key.to_string(),
        accepted_ms,
        size,
        op,
    };
    let id = app.sealer()?.seal(&claims, random_bytes::<12>()?);
    Ok((id, accepted_ms))
}

/// The producer's I/O: the upload queue, the key's scheduler, R2.
pub struct QueueIo<'a> {
    pub app: &'a App,
    pub delivery: Delivery,
}

impl ProducerIo for QueueIo<'_> {
    fn upload_queues(&self) -> u32 {
        self.app.settings.upload_queues
    }

    async fn send(&self, shard: u32, msg: &WriteMessage) -> Result<(), ApiError> {
        let text = msg.encode();
        let queue = self.app.upload_queue(shard)?;
        for _ in 0..self.delivery.copies.max(1) {
            let mut builder = RawMessageBuilder::new(JsValue::from_str(&text));
            if self.delivery.delay_seconds > 0 {
                builder = builder.delay_seconds(self.delivery.delay_seconds);
            }
            queue
                .send_raw(builder.build_with_content_type(QueueContentType::Text))
                .await
                .map_err(|e| {
                    ApiError::QueueUnavailable(format!(
                        "the upload queue did not take the write: {e}"
                    ))
                })?;
        }
        Ok(())
    }

    async fn claim(&self, key: &str, idem_key: &str, id: &str) -> Result<String, ApiError> {
        let claim = ClaimRequest {
            idempotency_key: idem_key.to_string(),
            id: id.to_string(),
        };
        Ok(self.app.scheduler(key)?.call(&claim).await?.holder)
    }

    async fn delete_staged(&self, staged_key: &str) {
        if let Ok(bucket) = self.app.bucket() {
            let _ = bucket.delete(staged_key).await;
        }
    }

    async fn send_batch(&self, shard: u32, msgs: &[&WriteMessage]) -> Result<(), ApiError> {
        let batch: Vec<_> = msgs
            .iter()
            .map(|m| {
                RawMessageBuilder::new(JsValue::from_str(&m.encode()))
                    .build_with_content_type(QueueContentType::Text)
            })
            .collect();
        self.app
            .upload_queue(shard)?
            .send_raw_batch(batch)
            .await
            .map_err(|e| {
                ApiError::QueueUnavailable(format!("the upload queue did not take the batch: {e}"))
            })
    }
}

/// `PUT` or `DELETE /objects/{key}` in the default, asynchronous mode.
///
/// # Errors
/// Every validation error of the contract, `queue_unavailable` when the
/// send fails (with nothing left behind).
pub async fn accept(
    app: &App,
    ctx: &Context,
    mut req: Request,
    raw_key: &str,
    op: WriteOp,
    delivery: Delivery,
) -> ApiResult {
    let incoming = validate(app, &req, raw_key, op)?;
    let (body, size) = take_body(app, &mut req, &incoming).await?;
    let io = QueueIo { app, delivery };
    let (id, accepted_ms) = match stamp(app, &incoming.key, op, size) {
        Ok(stamped) => stamped,
        Err(e) => {
            if let BodyRef::Staged { staged_key } = &body {
                io.delete_staged(staged_key).await;
            }
            return Err(e);
        }
    };
    let mut msg = WriteMessage {
        v: MESSAGE_VERSION,
        id,
        key: incoming.key,
        accepted_ms,
        op,
        size,
        meta: incoming.meta,
        body,
        idempotency_key: incoming.idempotency_key,
        condition: incoming.condition,
        callback_url: incoming.callback_url,
    };
    if needs_staging(&msg, app.settings.inline_message_max_bytes) {
        // The body was small enough to read, but its whole message (key,
        // id, metadata, callback) does not fit one queue message.
        let bytes = msg.inline_bytes().unwrap_or_default();
        msg.body = stage_bytes(app, bytes).await?;
    }
    let wait_secs = incoming.wait_secs;
    let enqueued = enqueue(&io, &msg).await?;
    if enqueued.count_accepted {
        crate::stats::record_accepted(&app.env, ctx);
    }
    let (id, key, accepted_ms, size) = if enqueued.own {
        (msg.id, msg.key, accepted_ms, size)
    } else {
        // A repeat: the first write's answer (and, with Prefer: wait, its
        // end). This request's own message is dropped by the key's
        // scheduler when it is delivered.
        let first = app
            .sealer()?
            .open(&enqueued.id)
            .map_err(|e| internal("the id holding the idempotency key", e))?;
        (enqueued.id, first.key, first.accepted_ms, first.size)
    };
    if let Some(secs) = wait_secs {
        if let Some(resp) = wait_for_end(app, &id, &key, accepted_ms, size, secs).await {
            return resp;
        }
    }
    accepted_response(&id, &key, accepted_ms, size)
}

/// `Prefer: wait=N`: asks the key's scheduler for the write's status,
/// holding up to `secs`. Terminal in time: `200` with the final status,
/// `Location` and `Preference-Applied`; otherwise `None` (the caller
/// answers `202`; the write was accepted either way).
async fn wait_for_end(
    app: &App,
    id: &str,
    key: &str,
    accepted_ms: i64,
    size: u64,
    secs: u32,
) -> Option<ApiResult> {
    let ask = StatusRequest {
        id: id.to_string(),
        key: key.to_string(),
        accepted_ms,
        size,
        wait_ms: i64::from(secs) * 1000,
        ttl_ms: app.settings.status_ttl_ms,
        until_held: false,
    };
    let status = app.scheduler(key).ok()?.call(&ask).await.ok()?;
    if !status.state.is_terminal() {
        return None;
    }
    let status_url = format!("/uploads/{id}");
    Some(http::json(200, &status.to_json()).and_then(|resp| {
        http::set(resp.headers(), "Location", &status_url)?;
        http::set(
            resp.headers(),
            "Preference-Applied",
            &format!("wait={secs}"),
        )?;
        Ok(resp)
    }))
}

/// The `202` body and `Location` of an accepted write.
fn accepted_response(id: &str, key: &str, accepted_ms: i64, size: u64) -> ApiResult {
    let status_url = format!("/uploads/{id}");
    let resp = http::json(
        202,
        &json!({
            "id": id, "key": key, "state": "queued", "accepted_at": rfc3339_ms(accepted_ms),
            "size": size, "status_url": status_url,
        }),
    )?;
    http::set(resp.headers(), "Location", &status_url)?;
    Ok(resp)
}

/// Takes the body: read (to go inline, if its message fits) when its
/// length is at most the inline bound, streamed to a staging object when
/// larger. A body without a length is read up to
/// [`BUFFERED_BODY_MAX_BYTES`] only.
async fn take_body(
    app: &App,
    req: &mut Request,
    incoming: &Incoming,
) -> Result<(BodyRef, u64), ApiError> {
    if incoming.op == WriteOp::Delete {
        return Ok((BodyRef::Empty, 0));
    }
    match incoming.length {
        Some(0) => Ok((BodyRef::Empty, 0)),
        Some(n) if n <= app.settings.inline_body_bound() => {
            let bytes = req
                .bytes()
                .await
                .map_err(|e| ApiError::InvalidBody(format!("reading the body: {e}")))?;
            Ok((WriteMessage::inline(&bytes), bytes.len() as u64))
        }
        Some(n) => Ok((stage_body(app, req).await?, n)),
        None => {
            let bytes = read_small_body(req, app.settings.max_upload_bytes).await?;
            Ok((WriteMessage::inline(&bytes), bytes.len() as u64))
        }
    }
}

/// Streams a request body that has `Content-Length` to a new staging
/// object in R2 (never through Wasm memory).
///
/// # Errors
/// `invalid_body` without a body, `unavailable` when R2 does not take it.
pub(crate) async fn stage_body(app: &App, req: &Request) -> Result<BodyRef, ApiError> {
    let stream = req
        .inner()
        .body()
        .ok_or_else(|| ApiError::InvalidBody("Content-Length without a body".into()))?;
    let staged_key = format!("{STAGING_PREFIX}{}", hex(&random_bytes::<16>()?));
    app.bucket()?
        .put(staged_key.clone(), Data::ReadableStream(stream))
        .execute()
        .await
        .map_err(|e| ApiError::Unavailable(format!("staging the body in R2 failed: {e}")))?;
    http::log(json!({"level": "info", "at": "producer.staged", "staged_key": staged_key}));
    Ok(BodyRef::Staged { staged_key })
}

/// Stores a body already in memory as a new staging object (a batch
/// line, or a body whose message turned out too large to go inline).
///
/// # Errors
/// `unavailable` when R2 does not take it.
pub(crate) async fn stage_bytes(app: &App, bytes: Vec<u8>) -> Result<BodyRef, ApiError> {
    let staged_key = format!("{STAGING_PREFIX}{}", hex(&random_bytes::<16>()?));
    app.bucket()?
        .put(staged_key.clone(), Data::Bytes(bytes))
        .execute()
        .await
        .map_err(|_| ApiError::Unavailable("staging the body in R2 failed".into()))?;
    http::log(json!({"level": "info", "at": "producer.staged", "staged_key": staged_key}));
    Ok(BodyRef::Staged { staged_key })
}

/// Reads a body whose length is unknown or small, refusing it once it
/// grows past [`BUFFERED_BODY_MAX_BYTES`]: only then is buffering it safe.
///
/// # Errors
/// [`ApiError::LengthRequired`] past the limit, `invalid_body` when the
/// stream breaks.
pub(crate) async fn read_small_body(
    req: &mut Request,
    max_upload: u64,
) -> Result<Vec<u8>, ApiError> {
    let mut buf = Vec::new();
    if req.inner().body().is_none() {
        return Ok(buf);
    }
    let mut stream = req.stream().map_err(|e| internal("request body", e))?;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::InvalidBody(format!("reading the body: {e}")))?;
        buf.extend_from_slice(&chunk);
        if buf.len() as u64 > BUFFERED_BODY_MAX_BYTES {
            // Read the rest and drop it: a body left half read leaves the
            // client's connection hanging. Bounded by the platform's own
            // request limit (100 MB), whatever MAX_UPLOAD_BYTES says.
            let mut seen = buf.len() as u64;
            drop(buf);
            while seen <= max_upload.max(DEFAULT_MAX_UPLOAD_BYTES) {
                match stream.next().await {
                    Some(Ok(chunk)) => seen += chunk.len() as u64,
                    _ => break,
                }
            }
            drop(stream);
            http::discard_body(req).await;
            return Err(ApiError::LengthRequired(format!(
                "a body without Content-Length may be at most {BUFFERED_BODY_MAX_BYTES} bytes; send Content-Length"
            )));
        }
    }
    Ok(buf)
}
