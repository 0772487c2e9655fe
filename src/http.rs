//! HTTP plumbing shared by every route: JSON and error responses, CORS, the
//! request id and one structured log line per request.
//!
//! Errors are rendered here and only here: a handler returns
//! [`pipeline_core::error::ApiError`] and [`error_response`] gives it the
//! contract's status and `{"error": {"code", "message"}}` body.

use std::sync::atomic::{AtomicU8, Ordering};

use pipeline_core::config::{AllowedOrigins, LogLevel};
use pipeline_core::error::ApiError;
use worker::{Headers, Response};

/// Headers the browser may read, per the contract.
pub const EXPOSE_HEADERS: &str = "ETag, Location, Retry-After, Content-Range, X-Pipeline-State, \
X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset, X-RateLimit-Reset-After-Ms, X-Request-Id";
/// Methods the API answers to.
pub const ALLOW_METHODS: &str = "GET, HEAD, PUT, POST, DELETE, OPTIONS";
/// Request headers a browser may send.
pub const ALLOW_HEADERS: &str = "Authorization, Content-Type, Content-Encoding, Content-Language, \
Content-Disposition, Cache-Control, Idempotency-Key, If-Match, If-None-Match, If-Modified-Since, \
If-Unmodified-Since, If-Range, Range, X-Meta-*";

/// What a handler returns: a response or an API error.
pub type ApiResult<T = Response> = std::result::Result<T, ApiError>;

/// Maps a runtime error to a 500 without leaking internals beyond a reason.
pub fn internal(context: &str, err: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(format!("{context}: {err}"))
}

/// A JSON response with `status`.
pub fn json(status: u16, value: &serde_json::Value) -> ApiResult {
    let body = serde_json::to_vec(value).map_err(|e| internal("encoding JSON", e))?;
    let headers = Headers::new();
    set(&headers, "Content-Type", "application/json; charset=utf-8")?;
    Ok(Response::from_bytes(body)
        .map_err(|e| internal("building response", e))?
        .with_status(status)
        .with_headers(headers))
}

/// A plain-text response with `status` (the caller sets a more precise
/// `Content-Type` when it has one).
pub fn text(status: u16, body: &str) -> ApiResult {
    let headers = Headers::new();
    set(&headers, "Content-Type", "text/plain; charset=utf-8")?;
    Ok(Response::from_bytes(body.as_bytes().to_vec())
        .map_err(|e| internal("building response", e))?
        .with_status(status)
        .with_headers(headers))
}

/// An empty response with `status`.
pub fn empty(status: u16) -> ApiResult {
    Ok(Response::empty()
        .map_err(|e| internal("building response", e))?
        .with_status(status))
}

/// Sets a header, mapping the runtime's error. Its message is logged, not
/// answered: it may quote the value (stored metadata a client sent).
pub fn set(headers: &Headers, name: &str, value: &str) -> ApiResult<()> {
    headers.set(name, value).map_err(|e| {
        header_failed(name, &e);
        ApiError::Internal("a response header could not be set".into())
    })
}

/// The contract's error response, with the headers the error carries
/// ([`ApiError::headers`]).
pub fn error_response(err: &ApiError) -> Response {
    let fallback = || {
        Response::empty()
            .unwrap_or_else(|_| Response::builder().empty())
            .with_status(err.status())
    };
    let body = serde_json::to_vec(&err.body()).unwrap_or_default();
    let resp = match Response::from_bytes(body) {
        Ok(r) => r.with_status(err.status()),
        Err(_) => fallback(),
    };
    let h = resp.headers();
    set_or_log(h, "Content-Type", "application/json; charset=utf-8");
    for (name, value) in err.headers() {
        set_or_log(h, name, &value);
    }
    resp
}

/// Builds the `405` for a known path.
pub fn method_not_allowed(allow: &str) -> ApiError {
    ApiError::MethodNotAllowed {
        allow: allow.to_string(),
    }
}

/// Gives `resp`, whichever handler or Durable Object produced it, what
/// every answer carries: `X-Request-Id` and the CORS headers.
///
/// An answer relayed from a Durable Object (a sync write's `201`, `204`,
/// `409` or `429`) has immutable headers; such an answer is first rebuilt
/// around the same body stream and status with a copy of its headers
/// ([`with_own_headers`]). A header that still cannot be set is logged.
pub fn finish(
    resp: Response,
    origins: &AllowedOrigins,
    origin: Option<&str>,
    request_id: &str,
) -> Response {
    let resp = if resp.headers().set("X-Request-Id", request_id).is_ok() {
        resp
    } else {
        let resp = with_own_headers(resp);
        set_or_log(resp.headers(), "X-Request-Id", request_id);
        resp
    };
    let h = resp.headers();
    if let Some(allow) = origins.allow_origin(origin) {
        set_or_log(h, "Access-Control-Allow-Origin", &allow);
        if allow != "*" {
            if let Err(e) = h.append("Vary", "Origin") {
                header_failed("Vary", &e);
            }
        }
    }
    set_or_log(h, "Access-Control-Expose-Headers", EXPOSE_HEADERS);
    resp
}

/// `resp` with headers of its own: the same status, body (the stream is
/// passed on, never read) and headers, the headers copied into a new,
/// mutable `Headers`.
pub fn with_own_headers(resp: Response) -> Response {
    let copy = Headers::new();
    for (name, value) in resp.headers().entries() {
        if let Err(e) = copy.append(&name, &value) {
            header_failed(&name, &e);
        }
    }
    resp.with_headers(copy)
}

/// Sets a header on an answer that goes out anyway; a failure is logged.
pub fn set_or_log(headers: &Headers, name: &str, value: &str) {
    if let Err(e) = headers.set(name, value) {
        header_failed(name, &e);
    }
}

/// Logs a header the runtime refused to set.
fn header_failed(name: &str, err: &worker::Error) {
    log(serde_json::json!({
        "level": "error", "event": "header_not_set", "header": name, "error": err.to_string(),
    }));
}

/// The `204` answer to a CORS preflight.
pub fn preflight() -> ApiResult {
    let resp = empty(204)?;
    let h = resp.headers();
    set(h, "Access-Control-Allow-Methods", ALLOW_METHODS)?;
    set(h, "Access-Control-Allow-Headers", ALLOW_HEADERS)?;
    set(h, "Access-Control-Max-Age", "86400")?;
    set(h, "Allow", ALLOW_METHODS)?;
    Ok(resp)
}

/// Random bytes from the runtime's CSPRNG.
///
/// # Errors
/// [`ApiError::Internal`] if the runtime cannot provide randomness.
pub fn random_bytes<const N: usize>() -> ApiResult<[u8; N]> {
    let mut b = [0u8; N];
    getrandom::getrandom(&mut b).map_err(|e| internal("random source", e))?;
    Ok(b)
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Milliseconds since the Unix epoch, from the runtime's clock.
pub fn now_ms() -> i64 {
    worker::Date::now().as_millis() as i64
}

/// The isolate's `LOG_LEVEL` threshold (a [`LogLevel`] as `u8`). Every
/// request and every scheduler parses the settings and stores it here; an
/// isolate that has not parsed them yet writes `info` and above.
static LOG_LEVEL: AtomicU8 = AtomicU8::new(LogLevel::Info as u8);

/// Sets the isolate's log threshold (from `Settings::log_level`).
pub fn set_log_level(level: LogLevel) {
    LOG_LEVEL.store(level.as_u8(), Ordering::Relaxed);
}

/// One structured log line, written when its `"level"` field is at or
/// above the configured `LOG_LEVEL` (a line without one counts as `info`).
pub fn log(fields: serde_json::Value) {
    let threshold = LogLevel::from_u8(LOG_LEVEL.load(Ordering::Relaxed));
    if threshold.writes(LogLevel::of_line(
        fields.get("level").and_then(serde_json::Value::as_str),
    )) {
        worker::console_log!("{}", fields);
    }
}

/// Cancels a request body that will not be read to its end, so the runtime
/// closes it instead of leaving the client's upload (and its connection)
/// hanging.
pub async fn discard_body(req: &worker::Request) {
    if let Some(body) = req.inner().body() {
        let _ = worker::wasm_bindgen_futures::JsFuture::from(body.cancel()).await;
    }
}
