//! Durable Objects: where the pipeline's strongly consistent state lives.
//!
//! - [`key_scheduler`]: one per object key, a thin shell over
//!   `pipeline_core::engine`: [`scheduler_store`] is the engine's storage
//!   (SQLite), [`scheduler_io`] its R2, clock, alarm and stats I/O.
//! - [`counter`]: one per counter name.
//! - [`stats_shard`]: a fixed set of shards holding `/stats` totals.
//!
//! Workers talk to them with typed calls ([`stub`]): a JSON request
//! `POST`ed to the call's path, answered with its JSON reply or the API's
//! error shape. An object dispatches on the path and answers with [`serve`].

pub mod counter;
pub mod key_scheduler;
pub mod scheduler_io;
pub mod scheduler_store;
pub mod sql;
pub mod stats_shard;
pub mod stub;

use std::future::Future;

use pipeline_core::error::ApiError;
use pipeline_core::protocol::Call;
use serde::Serialize;
use worker::{Request, Response};

use crate::http::internal;

/// Serves one call inside an object: decodes its request (with serde_json,
/// not the runtime's `JSON.parse`, which turns integers above 2^53 into
/// floats), runs it and encodes its reply.
///
/// # Errors
/// [`ApiError::Internal`] for a request that does not decode; `run`'s own.
pub async fn serve<C, F, Fut>(req: &mut Request, run: F) -> Result<Response, ApiError>
where
    C: Call,
    F: FnOnce(C) -> Fut,
    Fut: Future<Output = Result<C::Reply, ApiError>>,
{
    let text = req
        .text()
        .await
        .map_err(|e| internal("reading an object call", e))?;
    let call: C =
        serde_json::from_str(&text).map_err(|e| internal(&format!("decoding {}", C::PATH), e))?;
    ok_json(&run(call).await?)
}

/// Renders a call's result inside an object: its reply, or the error in the
/// API's shape (which the stub decodes with `ApiError::from_body`).
pub fn respond(result: Result<Response, ApiError>) -> worker::Result<Response> {
    Ok(result.unwrap_or_else(|e| crate::http::error_response(&e)))
}

/// A JSON `200` from inside an object.
///
/// # Errors
/// [`ApiError::Internal`] when the value does not encode.
pub fn ok_json<T: Serialize>(value: &T) -> Result<Response, ApiError> {
    let text = serde_json::to_string(value).map_err(|e| internal("encoding an answer", e))?;
    let resp = Response::ok(text).map_err(|e| internal("building an answer", e))?;
    let _ = resp.headers().set("Content-Type", "application/json");
    Ok(resp)
}
