//! Every error the HTTP API can answer with, and its mapping to a status
//! code and a JSON `code`, in one place.
//!
//! Handlers return [`ApiError`]; the Worker renders it as
//! `{"error": {"code", "message"}}` with [`ApiError::status`]. Adding a
//! variant means choosing its status and code here and nowhere else.

use thiserror::Error;

use crate::ratelimit::SlotTaken;
use crate::time::{parse_rfc3339_ms, rfc3339_ms};

/// An error answer of the HTTP API (see `docs/API.md`, "Error codes").
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ApiError {
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    InvalidKey(String),
    #[error("{0}")]
    InvalidHeader(String),
    #[error("{0}")]
    InvalidParameter(String),
    #[error("{0}")]
    InvalidBody(String),
    #[error("{0}")]
    InvalidName(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    LengthRequired(String),
    #[error("{0}")]
    QueueUnavailable(String),
    #[error("{0}")]
    UploadNotFound(String),
    #[error("{0}")]
    ObjectNotFound(String),
    #[error("{0}")]
    PreconditionFailed(String),
    /// The range lies outside the object's `size` bytes
    /// (`Content-Range: bytes */<size>`).
    #[error("the range is outside the object's {size} bytes")]
    RangeNotSatisfiable { size: u64 },
    /// A sync write while the key's slot is taken (`Retry-After`,
    /// `X-RateLimit-*`, all from one [`SlotTaken`]).
    #[error(
        "this key's write slot is taken until {}; retry in {} ms",
        rfc3339_ms(.0.free_at_ms),
        .0.reset_after_ms()
    )]
    RateLimited(SlotTaken),
    #[error("{0}")]
    NewerWritePending(String),
    /// `?after=`: the write is still in the queue (`409`, `Retry-After`).
    #[error("{0}")]
    NotYetVisible(String),
    /// `?after=`: the write ended `failed` (`409`); the message says why.
    #[error("{0}")]
    WriteFailed(String),
    #[error("{0}")]
    CounterOverflow(String),
    #[error("{0}")]
    NotFound(String),
    /// A known path, another method (`Allow: <allow>`).
    #[error("method not allowed on this path; allowed: {allow}")]
    MethodNotAllowed { allow: String },
    #[error("{0}")]
    Internal(String),
    #[error("{0}")]
    Unavailable(String),
}

impl ApiError {
    /// The HTTP status code of this error.
    pub fn status(&self) -> u16 {
        match self {
            ApiError::Unauthorized(_) => 401,
            ApiError::InvalidKey(_)
            | ApiError::InvalidHeader(_)
            | ApiError::InvalidParameter(_)
            | ApiError::InvalidBody(_)
            | ApiError::InvalidName(_) => 400,
            ApiError::PayloadTooLarge(_) => 413,
            ApiError::LengthRequired(_) => 411,
            ApiError::QueueUnavailable(_) | ApiError::Unavailable(_) => 503,
            ApiError::UploadNotFound(_) | ApiError::ObjectNotFound(_) | ApiError::NotFound(_) => {
                404
            }
            ApiError::PreconditionFailed(_) => 412,
            ApiError::RangeNotSatisfiable { .. } => 416,
            ApiError::RateLimited(_) => 429,
            ApiError::NewerWritePending(_)
            | ApiError::NotYetVisible(_)
            | ApiError::WriteFailed(_) => 409,
            ApiError::CounterOverflow(_) => 422,
            ApiError::MethodNotAllowed { .. } => 405,
            ApiError::Internal(_) => 500,
        }
    }

    /// The stable snake_case `code` of this error in the JSON body.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::InvalidKey(_) => "invalid_key",
            ApiError::InvalidHeader(_) => "invalid_header",
            ApiError::InvalidParameter(_) => "invalid_parameter",
            ApiError::InvalidBody(_) => "invalid_body",
            ApiError::InvalidName(_) => "invalid_name",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::LengthRequired(_) => "length_required",
            ApiError::QueueUnavailable(_) => "queue_unavailable",
            ApiError::UploadNotFound(_) => "upload_not_found",
            ApiError::ObjectNotFound(_) => "object_not_found",
            ApiError::PreconditionFailed(_) => "precondition_failed",
            ApiError::RangeNotSatisfiable { .. } => "range_not_satisfiable",
            ApiError::RateLimited(_) => "rate_limited",
            ApiError::NewerWritePending(_) => "newer_write_pending",
            ApiError::NotYetVisible(_) => "not_yet_visible",
            ApiError::WriteFailed(_) => "write_failed",
            ApiError::CounterOverflow(_) => "counter_overflow",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::Internal(_) => "internal_error",
            ApiError::Unavailable(_) => "unavailable",
        }
    }

    /// The JSON body: `{"error": {"code", "message"}}`.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({"error": {"code": self.code(), "message": self.to_string()}})
    }

    /// The headers this error's answer carries besides `Content-Type`:
    /// `WWW-Authenticate` (401), `Allow` (405), `Content-Range` (416),
    /// `Retry-After` and `X-RateLimit-*` (429), `Retry-After` (503).
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        match self {
            ApiError::Unauthorized(_) => vec![("WWW-Authenticate", "Bearer".into())],
            ApiError::MethodNotAllowed { allow } => vec![("Allow", allow.clone())],
            ApiError::RangeNotSatisfiable { size } => {
                vec![("Content-Range", format!("bytes */{size}"))]
            }
            ApiError::RateLimited(slot) => slot.headers(),
            ApiError::QueueUnavailable(_) | ApiError::Unavailable(_) => {
                vec![("Retry-After", UNAVAILABLE_RETRY_AFTER_SECS.to_string())]
            }
            ApiError::NotYetVisible(_) => vec![("Retry-After", "1".into())],
            _ => Vec::new(),
        }
    }

    /// The error an answer with `status` and the body `{"error": {"code",
    /// "message"}}` stands for: the inverse of [`ApiError::code`] and
    /// [`ApiError::body`] (a Durable Object's error answer becomes the same
    /// [`ApiError`] in the Worker). An unknown code is `unavailable` for a
    /// `503` and `internal_error` otherwise.
    pub fn from_code(status: u16, code: &str, message: impl Into<String>) -> Self {
        let m: String = message.into();
        match code {
            "unauthorized" => ApiError::Unauthorized(m),
            "invalid_key" => ApiError::InvalidKey(m),
            "invalid_header" => ApiError::InvalidHeader(m),
            "invalid_parameter" => ApiError::InvalidParameter(m),
            "invalid_body" => ApiError::InvalidBody(m),
            "invalid_name" => ApiError::InvalidName(m),
            "payload_too_large" => ApiError::PayloadTooLarge(m),
            "length_required" => ApiError::LengthRequired(m),
            "queue_unavailable" => ApiError::QueueUnavailable(m),
            "upload_not_found" => ApiError::UploadNotFound(m),
            "object_not_found" => ApiError::ObjectNotFound(m),
            "precondition_failed" => ApiError::PreconditionFailed(m),
            "range_not_satisfiable" => ApiError::RangeNotSatisfiable {
                size: between(&m, "object's ", " bytes")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0),
            },
            "rate_limited" => ApiError::RateLimited(slot_of(&m)),
            "newer_write_pending" => ApiError::NewerWritePending(m),
            "not_yet_visible" => ApiError::NotYetVisible(m),
            "write_failed" => ApiError::WriteFailed(m),
            "counter_overflow" => ApiError::CounterOverflow(m),
            "not_found" => ApiError::NotFound(m),
            "method_not_allowed" => ApiError::MethodNotAllowed {
                allow: m
                    .rsplit_once("allowed: ")
                    .map(|(_, a)| a.to_string())
                    .unwrap_or_default(),
            },
            "internal_error" => ApiError::Internal(m),
            "unavailable" => ApiError::Unavailable(m),
            _ if status == 503 => ApiError::Unavailable(m),
            _ if code.is_empty() => ApiError::Internal(m),
            _ => ApiError::Internal(format!("{code}: {m}")),
        }
    }

    /// [`ApiError::from_code`] over an answer's JSON body (anything that is
    /// not the error shape keeps its text as the message).
    pub fn from_body(status: u16, body: &str) -> Self {
        let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        let code = v["error"]["code"].as_str().unwrap_or_default();
        match v["error"]["message"].as_str() {
            Some(m) => Self::from_code(status, code, m),
            None => Self::from_code(status, code, body),
        }
    }
}

/// `Retry-After` of a `503`, in seconds.
pub const UNAVAILABLE_RETRY_AFTER_SECS: u32 = 5;

/// The text of `s` between `start` and the next `end`.
fn between<'a>(s: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let rest = s.split_once(start)?.1;
    Some(rest.split_once(end)?.0)
}

/// The slot a `rate_limited` message names (see [`ApiError::RateLimited`]).
fn slot_of(message: &str) -> SlotTaken {
    let free_at_ms = between(message, "taken until ", "; retry in ").and_then(parse_rfc3339_ms);
    let after_ms = between(message, "; retry in ", " ms").and_then(|s| s.parse::<i64>().ok());
    match (free_at_ms, after_ms) {
        (Some(free_at_ms), Some(after)) => SlotTaken {
            now_ms: free_at_ms.saturating_sub(after),
            free_at_ms,
        },
        _ => SlotTaken {
            now_ms: 0,
            free_at_ms: 0,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One of every variant, with the payloads the Worker gives them.
    fn every_variant() -> Vec<ApiError> {
        let m = || "a message: with `quotes` and ünïcode".to_string();
        let all = vec![
            ApiError::Unauthorized(m()),
            ApiError::InvalidKey(m()),
            ApiError::InvalidHeader(m()),
            ApiError::InvalidParameter(m()),
            ApiError::InvalidBody(m()),
            ApiError::InvalidName(m()),
            ApiError::PayloadTooLarge(m()),
            ApiError::LengthRequired(m()),
            ApiError::QueueUnavailable(m()),
            ApiError::UploadNotFound(m()),
            ApiError::ObjectNotFound(m()),
            ApiError::PreconditionFailed(m()),
            ApiError::RangeNotSatisfiable { size: 12_345 },
            ApiError::RateLimited(SlotTaken {
                now_ms: 1_795_765_166_588,
                free_at_ms: 1_795_765_167_000,
            }),
            ApiError::NewerWritePending(m()),
            ApiError::NotYetVisible(m()),
            ApiError::WriteFailed(m()),
            ApiError::CounterOverflow(m()),
            ApiError::NotFound(m()),
            ApiError::MethodNotAllowed {
                allow: "GET, HEAD, DELETE".into(),
            },
            ApiError::Internal(m()),
            ApiError::Unavailable(m()),
        ];
        // A new variant must be added above (and to `from_code`): this
        // match has no wildcard, so it does not compile until it is.
        for e in &all {
            match e {
                ApiError::Unauthorized(_)
                | ApiError::InvalidKey(_)
                | ApiError::InvalidHeader(_)
                | ApiError::InvalidParameter(_)
                | ApiError::InvalidBody(_)
                | ApiError::InvalidName(_)
                | ApiError::PayloadTooLarge(_)
                | ApiError::LengthRequired(_)
                | ApiError::QueueUnavailable(_)
                | ApiError::UploadNotFound(_)
                | ApiError::ObjectNotFound(_)
                | ApiError::PreconditionFailed(_)
                | ApiError::RangeNotSatisfiable { .. }
                | ApiError::RateLimited(_)
                | ApiError::NewerWritePending(_)
                | ApiError::NotYetVisible(_)
                | ApiError::WriteFailed(_)
                | ApiError::CounterOverflow(_)
                | ApiError::NotFound(_)
                | ApiError::MethodNotAllowed { .. }
                | ApiError::Internal(_)
                | ApiError::Unavailable(_) => {}
            }
        }
        all
    }

    #[test]
    fn every_variant_round_trips_through_its_answer() {
        let all = every_variant();
        assert_eq!(all.len(), 22);
        let mut codes: Vec<&str> = all.iter().map(ApiError::code).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), all.len(), "codes are distinct");
        for e in all {
            let body = serde_json::to_string(&e.body()).unwrap();
            let back = ApiError::from_body(e.status(), &body);
            assert_eq!(back, e, "{body}");
            assert_eq!(back.headers(), e.headers());
            let back = ApiError::from_code(e.status(), e.code(), e.to_string());
            assert_eq!(back, e);
        }
    }

    #[test]
    fn unknown_answers_become_internal_or_unavailable() {
        assert_eq!(
            ApiError::from_body(503, "Your worker restarted mid-request"),
            ApiError::Unavailable("Your worker restarted mid-request".into())
        );
        assert_eq!(
            ApiError::from_body(500, r#"{"error":{"code":"teapot","message":"m"}}"#),
            ApiError::Internal("teapot: m".into())
        );
        assert_eq!(
            ApiError::from_code(429, "rate_limited", "garbled"),
            ApiError::RateLimited(SlotTaken {
                now_ms: 0,
                free_at_ms: 0
            })
        );
    }

    #[test]
    fn errors_carry_the_headers_of_their_answer() {
        let h = |e: ApiError| e.headers();
        assert_eq!(
            h(ApiError::Unauthorized(String::new())),
            [("WWW-Authenticate", "Bearer".to_string())]
        );
        assert_eq!(
            h(ApiError::MethodNotAllowed {
                allow: "GET, HEAD".into()
            }),
            [("Allow", "GET, HEAD".to_string())]
        );
        assert_eq!(
            h(ApiError::RangeNotSatisfiable { size: 7 }),
            [("Content-Range", "bytes */7".to_string())]
        );
        let slot = SlotTaken {
            now_ms: 10_000_100,
            free_at_ms: 10_000_900,
        };
        assert_eq!(h(ApiError::RateLimited(slot)), slot.headers());
        for e in [
            ApiError::Unavailable(String::new()),
            ApiError::QueueUnavailable(String::new()),
        ] {
            assert_eq!(h(e), [("Retry-After", "5".to_string())]);
        }
        assert!(h(ApiError::InvalidKey(String::new())).is_empty());
    }

    #[test]
    fn codes_and_statuses_follow_the_contract() {
        let cases = [
            (ApiError::Unauthorized(String::new()), 401, "unauthorized"),
            (ApiError::InvalidKey(String::new()), 400, "invalid_key"),
            (
                ApiError::PayloadTooLarge(String::new()),
                413,
                "payload_too_large",
            ),
            (
                ApiError::LengthRequired(String::new()),
                411,
                "length_required",
            ),
            (
                ApiError::QueueUnavailable(String::new()),
                503,
                "queue_unavailable",
            ),
            (
                ApiError::UploadNotFound(String::new()),
                404,
                "upload_not_found",
            ),
            (
                ApiError::RangeNotSatisfiable { size: 0 },
                416,
                "range_not_satisfiable",
            ),
            (
                ApiError::RateLimited(SlotTaken {
                    now_ms: 0,
                    free_at_ms: 0,
                }),
                429,
                "rate_limited",
            ),
            (
                ApiError::NewerWritePending(String::new()),
                409,
                "newer_write_pending",
            ),
            (
                ApiError::CounterOverflow(String::new()),
                422,
                "counter_overflow",
            ),
            (
                ApiError::MethodNotAllowed {
                    allow: String::new(),
                },
                405,
                "method_not_allowed",
            ),
        ];
        for (err, status, code) in cases {
            assert_eq!(err.status(), status, "{err:?}");
            assert_eq!(err.code(), code, "{err:?}");
            assert_eq!(err.body()["error"]["code"], code);
        }
    }
}
