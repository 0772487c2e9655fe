//! The client's error type and the parsing of the API's JSON error bodies.
//!
//! Every non-2xx answer of the API is `{"error": {"code", "message"}}`; the
//! client turns it into [`ClientError::Api`] with the status and headers kept,
//! so a test can check the code and, for example, the rate-limit headers of a
//! `429` in one place. Anything that does not follow the contract becomes
//! [`ClientError::Unexpected`] with the raw body, never a silent default.

use serde::Deserialize;

use crate::headers::Headers;
use crate::types::UploadStatus;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The API answered with an error status and a well-formed error body.
    #[error("HTTP {status} {code}: {message}")]
    Api {
        /// The HTTP status.
        status: u16,
        /// `error.code` of the body, e.g. `invalid_key`.
        code: String,
        /// `error.message` of the body.
        message: String,
        /// The response headers (e.g. `Retry-After`, `X-RateLimit-*`).
        headers: Headers,
    },
    /// The answer broke the contract: an unexpected status, or a body that is
    /// not the documented JSON.
    #[error("unexpected response (HTTP {status}): {reason}; body: {body}")]
    Unexpected {
        /// The HTTP status.
        status: u16,
        /// What was wrong with it.
        reason: String,
        /// The body, lossily decoded as UTF-8 (truncated to 2 KiB).
        body: String,
        /// The response headers.
        headers: Headers,
    },
    /// No HTTP answer: connection refused, reset, timed out, bad URL.
    #[error("transport error: {0}")]
    Transport(String),
    /// A request body could not be read (e.g. the file to upload cannot be
    /// opened); nothing was sent.
    #[error("request body: {0}")]
    Body(String),
    /// [`crate::Client::wait_committed`]: the write reached a terminal state
    /// other than `committed` (`superseded` or `failed`); the final status
    /// is attached.
    #[error("{}", not_committed_message(.0))]
    NotCommitted(Box<UploadStatus>),
    /// [`crate::Client::wait_terminal`] (or another wait) ran out of time.
    #[error("upload {id} still {last_state} after {waited_ms} ms")]
    NotTerminal {
        /// The upload id.
        id: String,
        /// The state seen last.
        last_state: String,
        /// How long it waited.
        waited_ms: u128,
    },
}

impl ClientError {
    /// The HTTP status, when there was an answer.
    #[must_use]
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } | Self::Unexpected { status, .. } => Some(*status),
            Self::Transport(_)
            | Self::Body(_)
            | Self::NotCommitted(_)
            | Self::NotTerminal { .. } => None,
        }
    }

    /// The API error code, for [`ClientError::Api`].
    #[must_use]
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The response headers, when there was an answer.
    #[must_use]
    pub fn headers(&self) -> Option<&Headers> {
        match self {
            Self::Api { headers, .. } | Self::Unexpected { headers, .. } => Some(headers),
            Self::Transport(_)
            | Self::Body(_)
            | Self::NotCommitted(_)
            | Self::NotTerminal { .. } => None,
        }
    }
}

fn not_committed_message(status: &UploadStatus) -> String {
    let mut text = format!("upload {} ended {}", status.id, status.state.as_str());
    if let Some(by) = &status.superseded_by {
        text.push_str(&format!(" (superseded by {by})"));
    }
    if let Some(err) = &status.error {
        text.push_str(&format!(": {}: {}", err.code, err.message));
    }
    text
}

#[derive(Deserialize)]
struct Envelope {
    error: Inner,
}

#[derive(Deserialize)]
struct Inner {
    code: String,
    message: String,
}

/// The longest body kept in an error, in bytes.
const MAX_BODY_IN_ERROR: usize = 2048;

/// A body for an error message: UTF-8 (lossy), at most 2 KiB.
pub(crate) fn body_excerpt(body: &[u8]) -> String {
    let cut = &body[..body.len().min(MAX_BODY_IN_ERROR)];
    let mut text = String::from_utf8_lossy(cut).into_owned();
    if body.len() > MAX_BODY_IN_ERROR {
        text.push('…');
    }
    text
}

/// Turns an error answer into [`ClientError::Api`] when its body is the
/// documented `{"error": {"code", "message"}}`, else [`ClientError::Unexpected`].
pub(crate) fn from_error_response(status: u16, headers: Headers, body: &[u8]) -> ClientError {
    match serde_json::from_slice::<Envelope>(body) {
        Ok(Envelope {
            error: Inner { code, message },
        }) => ClientError::Api {
            status,
            code,
            message,
            headers,
        },
        Err(e) => ClientError::Unexpected {
            status,
            reason: format!("error body is not {{\"error\": {{\"code\", \"message\"}}}}: {e}"),
            body: body_excerpt(body),
            headers,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_error_body() {
        let h = Headers::new([("Retry-After", "1"), ("X-RateLimit-Limit", "1")]);
        let e = from_error_response(
            429,
            h,
            br#"{"error":{"code":"rate_limited","message":"slot taken"}}"#,
        );
        assert_eq!(e.status(), Some(429));
        assert_eq!(e.code(), Some("rate_limited"));
        assert_eq!(e.headers().and_then(|h| h.get("retry-after")), Some("1"));
        match e {
            ClientError::Api { message, .. } => assert_eq!(message, "slot taken"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ignores_extra_fields() {
        let e = from_error_response(
            400,
            Headers::default(),
            br#"{"error":{"code":"invalid_key","message":"m","detail":1},"request_id":"x"}"#,
        );
        assert_eq!(e.code(), Some("invalid_key"));
    }

    #[test]
    fn a_body_off_contract_is_unexpected_not_api() {
        for body in [
            &b"Not Found"[..],
            br#"{"code":"x","message":"y"}"#,
            br#"{"error":{"code":"x"}}"#,
            br#"{"error":"x"}"#,
            b"",
        ] {
            let e = from_error_response(404, Headers::default(), body);
            assert!(
                matches!(e, ClientError::Unexpected { status: 404, .. }),
                "{body:?} -> {e:?}"
            );
            assert_eq!(e.code(), None);
        }
    }

    #[test]
    fn long_bodies_are_cut() {
        let body = vec![b'a'; 5000];
        let text = body_excerpt(&body);
        assert!(text.len() < 2100);
        assert!(text.ends_with('…'));
        assert_eq!(body_excerpt(b"short"), "short");
    }
}
