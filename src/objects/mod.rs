//! Durable Objects: where the pipeline's strongly consistent state lives,
//! one file per class.
//!
//! - [`key_scheduler`]: one per object key. Orders the key's writes, keeps
//!   R2 writes to the key at least a second apart, commits them, and keeps
//!   their statuses.
//! - [`counter`]: one per counter name.
//! - [`stats_shard`]: a fixed set of shards holding `/stats` totals.
//!
//! Workers talk to them over `fetch` with small JSON bodies
//! ([`protocol`]); [`call`] is that one round trip.

pub mod counter;
pub mod key_scheduler;
pub mod protocol;
pub mod sql;
pub mod stats_shard;

use pipeline_core::error::ApiError;
use serde::de::DeserializeOwned;
use serde::Serialize;
use worker::{Headers, Method, Request, RequestInit, Response, Stub};

use crate::http::internal;

/// Sends `body` as JSON to `path` on a Durable Object and decodes its JSON
/// answer. Non-2xx answers carrying the API's error shape come back as that
/// [`ApiError`]; anything else is an internal error.
///
/// # Errors
/// The object's own error, or [`ApiError::Unavailable`] when it cannot be
/// reached.
pub async fn call<B: Serialize, T: DeserializeOwned>(
    stub: &Stub,
    method: Method,
    path: &str,
    body: Option<&B>,
) -> Result<T, ApiError> {
    let mut resp = send(stub, method, path, body).await?;
    read_json(&mut resp).await
}

/// Decodes a JSON answer with serde_json, not the runtime's `JSON.parse`
/// (through which integers above 2^53, such as counter values, would come
/// back as floats).
///
/// # Errors
/// [`ApiError::Internal`] when the body is not the expected JSON.
pub async fn read_json<T: DeserializeOwned>(resp: &mut Response) -> Result<T, ApiError> {
    let text = resp
        .text()
        .await
        .map_err(|e| internal("reading a Durable Object answer", e))?;
    serde_json::from_str(&text).map_err(|e| internal("decoding a Durable Object answer", e))
}

/// Like [`call`], for answers the caller reads itself (status and headers).
///
/// # Errors
/// As [`call`].
pub async fn send<B: Serialize>(
    stub: &Stub,
    method: Method,
    path: &str,
    body: Option<&B>,
) -> Result<Response, ApiError> {
    let mut init = RequestInit::new();
    init.with_method(method);
    if let Some(b) = body {
        let text =
            serde_json::to_string(b).map_err(|e| internal("encoding a Durable Object call", e))?;
        let headers = Headers::new();
        let _ = headers.set("Content-Type", "application/json");
        init.with_headers(headers).with_body(Some(text.into()));
    }
    let req = Request::new_with_init(&format!("https://do{path}"), &init)
        .map_err(|e| internal("building a Durable Object call", e))?;
    let mut resp = stub
        .fetch_with_request(req)
        .await
        .map_err(|e| ApiError::Unavailable(format!("Durable Object unreachable: {e}")))?;
    if resp.status_code() >= 400 {
        return Err(decode_error(&mut resp).await);
    }
    Ok(resp)
}

/// Decodes a JSON request body inside an object, with serde_json (see
/// [`read_json`] for why not the runtime's parser).
///
/// # Errors
/// [`ApiError::Internal`] when the body is not the expected JSON.
pub async fn request_json<T: DeserializeOwned>(req: &mut Request) -> Result<T, ApiError> {
    let text = req
        .text()
        .await
        .map_err(|e| internal("reading an object call", e))?;
    serde_json::from_str(&text).map_err(|e| internal("decoding an object call", e))
}

/// Turns an object's error answer back into the [`ApiError`] it rendered.
pub async fn decode_error(resp: &mut Response) -> ApiError {
    let status = resp.status_code();
    let body: serde_json::Value = read_json(resp).await.unwrap_or_default();
    let code = body["error"]["code"].as_str().unwrap_or("");
    let message = body["error"]["message"]
        .as_str()
        .unwrap_or("Durable Object error")
        .to_string();
    match code {
        "invalid_body" => ApiError::InvalidBody(message),
        "counter_overflow" => ApiError::CounterOverflow(message),
        "newer_write_pending" => ApiError::NewerWritePending(message),
        "upload_not_found" => ApiError::UploadNotFound(message),
        "object_not_found" => ApiError::ObjectNotFound(message),
        "invalid_parameter" => ApiError::InvalidParameter(message),
        "invalid_header" => ApiError::InvalidHeader(message),
        _ if status == 503 => ApiError::Unavailable(message),
        _ => ApiError::Internal(format!("{code}: {message}")),
    }
}

/// Renders a handler result inside an object: its value as JSON, or the
/// error in the API's shape (which [`decode_error`] reads back).
pub fn respond(result: Result<Response, ApiError>) -> worker::Result<Response> {
    Ok(result.unwrap_or_else(|e| crate::http::error_response(&e)))
}

/// A JSON `200` from inside an object.
pub fn ok_json<T: Serialize>(value: &T) -> Result<Response, ApiError> {
    Response::from_json(value).map_err(|e| internal("encoding an object answer", e))
}
