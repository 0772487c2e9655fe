//! Synchronous reads: `GET`/`HEAD /objects/{key}` with ETags, conditional
//! requests and ranges, `?consistency=latest`, and `GET /objects` listings.
//!
//! Object bodies are R2's stream handed to the response, never copied
//! through Wasm memory. The pipeline's own prefix never shows.

use pipeline_core::conditional::{evaluate, http_date, if_range_allows, Conditions, Precondition};
use pipeline_core::config::parse_wait_secs;
use pipeline_core::error::ApiError;
use pipeline_core::id::WriteOp;
use pipeline_core::key::{decode_key, validate_list_prefix, RESERVED_PREFIX};
use pipeline_core::message::BodyRef;
use pipeline_core::meta::ObjectMeta;
use pipeline_core::protocol::LatestRequest;
use pipeline_core::protocol::StatusRequest;
use pipeline_core::range::{decide, RangeDecision};
use pipeline_core::status::UploadState;
use pipeline_core::time::rfc3339_ms;
use serde_json::json;
use worker::{
    Conditional, EncodeBody, Headers, Include, Object, Range, Request, Response, ResponseBody,
};

use crate::app::App;
use crate::http::{self, internal, set, ApiResult};

/// `X-Pipeline-State` values.
const STATE_COMMITTED: &str = "committed";
const STATE_SCHEDULED: &str = "scheduled";

/// `GET` or `HEAD /objects/{key}`.
///
/// # Errors
/// `invalid_key`, `invalid_parameter`, `object_not_found`,
/// `precondition_failed`, `range_not_satisfiable`.
pub async fn get(app: &App, req: &Request, raw_key: &str, head_only: bool) -> ApiResult {
    let key = decode_key(raw_key)?;
    let url = req.url().map_err(|e| internal("request url", e))?;
    let mut latest = false;
    let mut after: Option<String> = None;
    let mut wait_secs: u32 = 0;
    for (k, v) in url.query_pairs() {
        if k == "after" {
            after = Some(v.to_string());
        } else if k == "wait" {
            wait_secs = parse_wait_secs(&v)?;
        } else if k == "consistency" {
            latest = match v.as_ref() {
                "latest" => true,
                "stored" | "eventual" => false,
                _ => {
                    return Err(ApiError::InvalidParameter(
                        "unknown value for `consistency`; use `latest` or `stored`".into(),
                    ))
                }
            };
        }
    }
    if let Some(id) = after {
        return read_after(app, req, &key, &id, wait_secs, head_only).await;
    }
    if latest {
        let stub = app.scheduler(&key)?;
        if let Some(w) = stub.call(&LatestRequest {}).await?.pending {
            return serve_pending(app, w, head_only).await;
        }
    }
    // With `latest`, even a 404 says which state it reflects.
    let resp = match serve_stored(app, req, &key, head_only).await {
        Ok(r) => r,
        Err(e) if latest => http::error_response(&e),
        Err(e) => return Err(e),
    };
    if latest {
        http::set_or_log(resp.headers(), "X-Pipeline-State", STATE_COMMITTED);
    }
    Ok(resp)
}

/// `?after=<upload-id>[&wait=N]`: read your own write. The answer
/// reflects that write or a newer one: held by the scheduler, served as
/// `?consistency=latest` does (`X-Pipeline-State: scheduled`); committed
/// (or superseded by a newer write), the newest held or stored object;
/// still queued after the wait, `409 not_yet_visible`; failed, `409
/// write_failed`.
///
/// # Errors
/// `invalid_parameter` for an id that is not an upload of this key,
/// `not_yet_visible`, `write_failed`, and the plain read's errors.
async fn read_after(
    app: &App,
    req: &Request,
    key: &str,
    id: &str,
    wait_secs: u32,
    head_only: bool,
) -> ApiResult {
    let not_ours = || ApiError::InvalidParameter("after must name an upload of this key".into());
    let claims = app
        .sealer()
        .map_err(|_| not_ours())?
        .open(id)
        .map_err(|_| not_ours())?;
    if claims.key != key {
        return Err(not_ours());
    }
    let stub = app.scheduler(key)?;
    let status = stub
        .call(&StatusRequest {
            id: id.to_string(),
            key: key.to_string(),
            accepted_ms: claims.accepted_ms,
            size: claims.size,
            wait_ms: i64::from(wait_secs) * 1000,
            ttl_ms: app.settings.status_ttl_ms,
            until_held: true,
        })
        .await?;
    match status.state {
        UploadState::Queued => {
            return Err(ApiError::NotYetVisible(
                "the write is still in the queue; retry or wait longer".into(),
            ))
        }
        UploadState::Failed => {
            return Err(ApiError::WriteFailed(format!(
                "the write failed: {}",
                status.error_code.as_deref().unwrap_or("write_failed")
            )))
        }
        UploadState::Scheduled | UploadState::Committed | UploadState::Superseded => {}
    }
    // The write itself or a newer one: what the scheduler holds, if newer
    // than the stored object, else the stored object.
    if let Some(w) = stub.call(&LatestRequest {}).await?.pending {
        return serve_pending(app, w, head_only).await;
    }
    let resp = match serve_stored(app, req, key, head_only).await {
        Ok(r) => r,
        Err(e) => http::error_response(&e),
    };
    http::set_or_log(resp.headers(), "X-Pipeline-State", STATE_COMMITTED);
    Ok(resp)
}

fn meta_of(obj: &Object) -> ObjectMeta {
    let h = obj.http_metadata();
    ObjectMeta {
        content_type: h.content_type,
        content_encoding: h.content_encoding,
        content_language: h.content_language,
        content_disposition: h.content_disposition,
        cache_control: h.cache_control,
        custom: obj
            .custom_metadata()
            .unwrap_or_default()
            .into_iter()
            .collect(),
    }
}

fn header_map(meta: &ObjectMeta) -> ApiResult<Headers> {
    let headers = Headers::new();
    for (name, value) in meta.response_headers() {
        set(&headers, &name, &value)?;
    }
    Ok(headers)
}

/// Tries of a read whose object changed between its `head` and its `get`.
const READ_TRIES: usize = 3;

/// Serves the stored object. Headers and decisions come from one `head`;
/// the bytes are fetched only if the object still has that ETag, so an
/// answer never mixes two versions. A commit landing in between makes the
/// read start over.
async fn serve_stored(app: &App, req: &Request, key: &str, head_only: bool) -> ApiResult {
    for _ in 1..READ_TRIES {
        if let Some(resp) = serve_stored_once(app, req, key, head_only).await? {
            return Ok(resp);
        }
    }
    serve_stored_once(app, req, key, head_only)
        .await?
        .ok_or_else(|| {
            ApiError::Unavailable("the object kept changing during the read; retry".into())
        })
}

/// One try of [`serve_stored`]; `None` when the object changed underneath.
async fn serve_stored_once(
    app: &App,
    req: &Request,
    key: &str,
    head_only: bool,
) -> ApiResult<Option<Response>> {
    let bucket = app.bucket()?;
    let not_found = || ApiError::ObjectNotFound("no object at this key".into());
    let head = bucket
        .head(key)
        .await
        .map_err(|e| internal("R2 head", e))?
        .ok_or_else(not_found)?;
    let size = head.size();
    let etag = head.http_etag();
    let modified_secs = (head.uploaded().as_millis() / 1000) as i64;
    let hv = |name: &str| req.headers().get(name).ok().flatten();
    let (if_match, if_none_match, ims, ius, if_range, range) = (
        hv("If-Match"),
        hv("If-None-Match"),
        hv("If-Modified-Since"),
        hv("If-Unmodified-Since"),
        hv("If-Range"),
        hv("Range"),
    );
    let conditions = Conditions {
        if_match: if_match.as_deref(),
        if_none_match: if_none_match.as_deref(),
        if_modified_since: ims.as_deref(),
        if_unmodified_since: ius.as_deref(),
    };
    let headers = header_map(&meta_of(&head))?;
    set(&headers, "ETag", &etag)?;
    set(&headers, "Last-Modified", &http_date(modified_secs))?;
    set(&headers, "Accept-Ranges", "bytes")?;
    match evaluate(&conditions, &etag, modified_secs, true) {
        Precondition::Proceed => {}
        Precondition::NotModified => return Ok(Some(http::empty(304)?.with_headers(headers))),
        Precondition::Failed => {
            return Err(ApiError::PreconditionFailed(
                "a precondition in the request headers does not hold".into(),
            ))
        }
    }
    let decision = if if_range_allows(if_range.as_deref(), &etag, modified_secs) {
        decide(range.as_deref(), size)
    } else {
        RangeDecision::Full
    };
    let (status, r2_range) = match decision {
        RangeDecision::Full => (200, None),
        RangeDecision::Partial { start, end } => {
            set(
                &headers,
                "Content-Range",
                &decision.content_range(size).unwrap_or_default(),
            )?;
            (
                206,
                Some(Range::OffsetWithLength {
                    offset: start,
                    length: end - start + 1,
                }),
            )
        }
        RangeDecision::Unsatisfiable => return Err(ApiError::RangeNotSatisfiable { size }),
    };
    set(&headers, "Content-Length", &decision.len(size).to_string())?;
    if head_only {
        return Ok(Some(http::empty(status)?.with_headers(headers)));
    }
    let mut get = bucket.get(key).only_if(Conditional {
        etag_matches: Some(head.etag()),
        ..Conditional::default()
    });
    if let Some(r) = r2_range {
        get = get.range(r);
    }
    let Some(obj) = get.execute().await.map_err(|e| internal("R2 get", e))? else {
        return Ok(None); // deleted since the head
    };
    let Some(body) = obj.body() else {
        return Ok(None); // another version since the head
    };
    let body = body.response_body().map_err(|e| internal("R2 body", e))?;
    object_response(body, status, headers).map(Some)
}

/// An object's bytes as the response body, sent as stored: with
/// `Content-Encoding: gzip` they are already compressed and the runtime
/// must not compress them again.
fn object_response(body: ResponseBody, status: u16, headers: Headers) -> ApiResult {
    Ok(Response::from_body(body)
        .map_err(|e| internal("response", e))?
        .with_status(status)
        .with_headers(headers)
        .with_encode_body(EncodeBody::Manual))
}

/// Serves the newest write the scheduler holds (`?consistency=latest`).
async fn serve_pending(
    app: &App,
    w: pipeline_core::message::WriteMessage,
    head_only: bool,
) -> ApiResult {
    if w.op == WriteOp::Delete {
        let resp = http::error_response(&ApiError::ObjectNotFound(
            "the newest accepted write to this key deletes it".into(),
        ));
        http::set_or_log(resp.headers(), "X-Pipeline-State", STATE_SCHEDULED);
        return Ok(resp);
    }
    let headers = header_map(&w.meta)?;
    set(&headers, "X-Pipeline-State", STATE_SCHEDULED)?;
    set(&headers, "ETag", &format!("W/\"{}\"", w.id))?;
    set(&headers, "X-Meta-upload-id", &w.id)?;
    set(&headers, "X-Meta-accepted-at", &rfc3339_ms(w.accepted_ms))?;
    set(&headers, "Content-Length", &w.size.to_string())?;
    if head_only {
        return Ok(http::empty(200)?.with_headers(headers));
    }
    let body = match &w.body {
        BodyRef::Empty => ResponseBody::Empty,
        BodyRef::Inline { .. } => ResponseBody::Body(w.inline_bytes().unwrap_or_default()),
        BodyRef::Staged { staged_key } => {
            let obj = app
                .bucket()?
                .get(staged_key.clone())
                .execute()
                .await
                .map_err(|e| internal("R2 get staged", e))?
                .ok_or_else(|| {
                    ApiError::Unavailable(
                        "the pending write's body is being committed; retry".into(),
                    )
                })?;
            match obj.body() {
                Some(b) => b.response_body().map_err(|e| internal("R2 body", e))?,
                None => ResponseBody::Empty,
            }
        }
    };
    object_response(body, 200, headers)
}

/// `GET /objects?prefix=&delimiter=&cursor=&limit=`.
///
/// # Errors
/// `invalid_parameter` for a bad `limit` or `prefix`.
pub async fn list(app: &App, req: &Request) -> ApiResult {
    let url = req.url().map_err(|e| internal("request url", e))?;
    let (mut prefix, mut delimiter, mut cursor, mut limit) = (None, None, None, 1000u32);
    for (k, v) in url.query_pairs() {
        match k.as_ref() {
            "prefix" => {
                validate_list_prefix(&v)?;
                prefix = Some(v.to_string()).filter(|p| !p.is_empty());
            }
            "delimiter" => delimiter = Some(v.to_string()).filter(|d| !d.is_empty()),
            "cursor" => cursor = Some(v.to_string()).filter(|c| !c.is_empty()),
            "limit" => {
                limit = v
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=1000).contains(n))
                    .ok_or_else(|| {
                        ApiError::InvalidParameter("limit must be an integer from 1 to 1000".into())
                    })?;
            }
            _ => {}
        }
    }
    let bucket = app.bucket()?;
    let mut builder = bucket
        .list()
        .limit(limit)
        .include(vec![Include::HttpMetadata]);
    if let Some(p) = &prefix {
        builder = builder.prefix(p.clone());
    }
    if let Some(d) = &delimiter {
        builder = builder.delimiter(d.clone());
    }
    if let Some(c) = &cursor {
        builder = builder.cursor(c.clone());
    }
    let page = builder
        .execute()
        .await
        // R2's message is not passed on: it may quote the cursor or prefix.
        .map_err(|_| {
            ApiError::InvalidParameter(
                "the listing failed; `cursor` must come from an earlier listing".into(),
            )
        })?;
    let objects: Vec<serde_json::Value> = page
        .objects()
        .into_iter()
        .filter(|o| !o.key().starts_with(RESERVED_PREFIX))
        .map(|o| {
            json!({
                "key": o.key(),
                "size": o.size(),
                "etag": o.http_etag(),
                "uploaded_at": rfc3339_ms(o.uploaded().as_millis() as i64),
                "content_type": o.http_metadata().content_type.unwrap_or_else(|| pipeline_core::meta::DEFAULT_CONTENT_TYPE.into()),
            })
        })
        .collect();
    let prefixes: Vec<String> = page
        .delimited_prefixes()
        .into_iter()
        .filter(|p| !p.starts_with(RESERVED_PREFIX))
        .collect();
    let truncated = page.truncated();
    http::json(
        200,
        &json!({
            "objects": objects,
            "prefixes": prefixes,
            "truncated": truncated,
            "cursor": if truncated { page.cursor() } else { None },
        }),
    )
}
