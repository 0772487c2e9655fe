//! `GET /uploads/{id}`: an upload's status, with an optional long-poll.
//!
//! The id is opened (authenticated decryption) to find the key's scheduler;
//! a forged, altered or foreign id is `404` without touching any object.
//! An id the scheduler has not seen yet is `queued`: it was accepted (this
//! deployment sealed it) and is still in the queue.

use pipeline_core::config::parse_wait_secs;
use pipeline_core::error::ApiError;
use pipeline_core::protocol::StatusRequest;
use worker::Request;

use crate::app::App;
use crate::http::{self, internal, ApiResult};

/// Reads `?wait=` (0 to 30 whole seconds).
///
/// # Errors
/// [`ApiError::InvalidParameter`] for anything else, or an unknown parameter.
pub fn parse_wait(req: &Request) -> Result<u32, ApiError> {
    let url = req.url().map_err(|e| internal("request url", e))?;
    let mut wait = 0;
    for (k, v) in url.query_pairs() {
        match k.as_ref() {
            "wait" => {
                wait = parse_wait_secs(&v)?;
            }
            _ => {
                return Err(ApiError::InvalidParameter(
                    "unknown query parameter; this route takes only `wait`".into(),
                ))
            }
        }
    }
    Ok(wait)
}

/// Serves the status of `id`.
///
/// # Errors
/// `invalid_parameter` for a bad `wait`, `upload_not_found` for an id this
/// deployment did not issue or that expired.
pub async fn status(app: &App, req: &Request, id: &str) -> ApiResult {
    let wait = parse_wait(req)?;
    let not_found = || ApiError::UploadNotFound("no upload with this id".into());
    let sealer = app.sealer().map_err(|_| not_found())?;
    let claims = sealer.open(id).map_err(|_| not_found())?;
    let stub = app.scheduler(&claims.key)?;
    let ask = StatusRequest {
        id: id.to_string(),
        key: claims.key,
        accepted_ms: claims.accepted_ms,
        size: claims.size,
        wait_ms: i64::from(wait) * 1000,
        ttl_ms: app.settings.status_ttl_ms,
        until_held: false,
    };
    let status = stub.call(&ask).await?;
    http::json(200, &status.to_json())
}
