//! Every error the HTTP API can answer with, and its mapping to a status
//! code and a JSON `code`, in one place.
//!
//! Handlers return [`ApiError`]; the Worker renders it as
//! `{"error": {"code", "message"}}` with [`ApiError::status`]. Adding a
//! variant means choosing its status and code here and nowhere else.

use thiserror::Error;

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
    #[error("{0}")]
    RangeNotSatisfiable(String),
    #[error("{0}")]
    RateLimited(String),
    #[error("{0}")]
    NewerWritePending(String),
    #[error("{0}")]
    CounterOverflow(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
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
            ApiError::RangeNotSatisfiable(_) => 416,
            ApiError::RateLimited(_) => 429,
            ApiError::NewerWritePending(_) => 409,
            ApiError::CounterOverflow(_) => 422,
            ApiError::MethodNotAllowed(_) => 405,
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
            ApiError::RangeNotSatisfiable(_) => "range_not_satisfiable",
            ApiError::RateLimited(_) => "rate_limited",
            ApiError::NewerWritePending(_) => "newer_write_pending",
            ApiError::CounterOverflow(_) => "counter_overflow",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::Internal(_) => "internal_error",
            ApiError::Unavailable(_) => "unavailable",
        }
    }

    /// The JSON body: `{"error": {"code", "message"}}`.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({"error": {"code": self.code(), "message": self.to_string()}})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
                ApiError::RangeNotSatisfiable(String::new()),
                416,
                "range_not_satisfiable",
            ),
            (ApiError::RateLimited(String::new()), 429, "rate_limited"),
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
                ApiError::MethodNotAllowed(String::new()),
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
