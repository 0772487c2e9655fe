//! `POST /batch`: up to 100 writes in one request, one JSON object per line
//! (NDJSON). Each line is validated on its own; accepted lines are sent
//! with as few queue batch sends as the queue's limits allow.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::Deserialize;

use crate::error::ApiError;
use crate::id::WriteOp;
use crate::key::validate_key;
use crate::meta::{validate_idempotency_key, ObjectMeta};

/// Most lines in one batch.
pub const MAX_BATCH_LINES: usize = 100;
/// `MAX_BATCH_BYTES` default: the largest batch body.
pub const DEFAULT_MAX_BATCH_BYTES: u64 = 1024 * 1024;
/// Most messages in one queue batch send.
pub const MAX_SEND_MESSAGES: usize = 100;
/// Most bytes in one queue batch send (256 KB), less room for the queue's
/// own per-message overhead.
pub const MAX_SEND_BYTES: usize = 256_000 - 100 * 100;

/// One line as sent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLine {
    op: Option<String>,
    key: Option<String>,
    body_base64: Option<String>,
    content_type: Option<String>,
    #[serde(default)]
    meta: std::collections::BTreeMap<String, String>,
    idempotency_key: Option<String>,
}

/// A valid line: a write to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchWrite {
    pub op: WriteOp,
    pub key: String,
    pub body: Vec<u8>,
    pub meta: ObjectMeta,
    pub idempotency_key: Option<String>,
}

/// One line's outcome of validation: the write, or the key (if it could
/// be read) and why the line is refused.
pub type LineResult = Result<BatchWrite, (Option<String>, ApiError)>;

/// Splits and validates a batch body.
///
/// # Errors
/// `payload_too_large` for more than [`MAX_BATCH_LINES`] lines or more
/// than `max_bytes`; `invalid_body` when the body is not NDJSON (not UTF-8,
/// or a line that is not a JSON object, or no line at all).
pub fn parse(body: &[u8], max_bytes: u64) -> Result<Vec<LineResult>, ApiError> {
    if body.len() as u64 > max_bytes {
        return Err(ApiError::PayloadTooLarge(format!(
            "a batch may hold at most {max_bytes} bytes"
        )));
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::InvalidBody("a batch must be NDJSON (UTF-8)".into()))?;
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return Err(ApiError::InvalidBody(
            "a batch needs at least one line".into(),
        ));
    }
    if lines.len() > MAX_BATCH_LINES {
        return Err(ApiError::PayloadTooLarge(format!(
            "a batch may hold at most {MAX_BATCH_LINES} lines"
        )));
    }
    let mut out = Vec::with_capacity(lines.len());
    for (n, line) in lines.iter().enumerate() {
        let value: serde_json::Value = serde_json::from_str(line).map_err(|_| {
            ApiError::InvalidBody(format!(
                "line {} is not JSON: a batch must be NDJSON",
                n + 1
            ))
        })?;
        if !value.is_object() {
            return Err(ApiError::InvalidBody(format!(
                "line {} is not a JSON object: a batch must be NDJSON",
                n + 1
            )));
        }
        out.push(line_of(value));
    }
    Ok(out)
}

fn line_of(value: serde_json::Value) -> LineResult {
    let key_hint = value
        .get("key")
        .and_then(|k| k.as_str())
        .map(str::to_string);
    let bad = |e: ApiError| (key_hint.clone(), e);
    let raw: RawLine = serde_json::from_value(value).map_err(|_| {
        bad(ApiError::InvalidBody(
            "a line has an unknown field or a field of the wrong type".into(),
        ))
    })?;
    let op = match raw.op.as_deref() {
        Some("put") => WriteOp::Put,
        Some("delete") => WriteOp::Delete,
        _ => {
            return Err(bad(ApiError::InvalidBody(
                "`op` must be \"put\" or \"delete\"".into(),
            )))
        }
    };
    let key = raw
        .key
        .ok_or_else(|| bad(ApiError::InvalidKey("a line needs a `key`".into())))?;
    validate_key(&key).map_err(bad)?;
    let body = match (op, raw.body_base64) {
        (WriteOp::Put, Some(b)) => STANDARD
            .decode(b.as_bytes())
            .map_err(|_| bad(ApiError::InvalidBody("`body_base64` is not base64".into())))?,
        (WriteOp::Put, None) => Vec::new(),
        (WriteOp::Delete, Some(_)) => {
            return Err(bad(ApiError::InvalidBody(
                "a delete carries no `body_base64`".into(),
            )))
        }
        (WriteOp::Delete, None) => Vec::new(),
    };
    let mut headers: Vec<(String, String)> = Vec::new();
    if let Some(ct) = raw.content_type {
        headers.push(("Content-Type".into(), ct));
    }
    for (name, value) in raw.meta {
        headers.push((format!("X-Meta-{name}"), value));
    }
    let meta = if op == WriteOp::Put {
        ObjectMeta::from_headers(&key, headers.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .map_err(bad)?
    } else if headers.is_empty() {
        ObjectMeta::default()
    } else {
        return Err(bad(ApiError::InvalidBody(
            "a delete carries no metadata".into(),
        )));
    };
    if let Some(k) = &raw.idempotency_key {
        validate_idempotency_key(k).map_err(bad)?;
    }
    Ok(BatchWrite {
        op,
        key,
        body,
        meta,
        idempotency_key: raw.idempotency_key,
    })
}

/// Groups encoded messages (by index) into queue batch sends: at most
/// [`MAX_SEND_MESSAGES`] and [`MAX_SEND_BYTES`] each, in order.
pub fn chunks(sizes: &[usize]) -> Vec<Vec<usize>> {
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut bytes = 0;
    for (i, size) in sizes.iter().enumerate() {
        let full = out
            .last()
            .is_none_or(|c| c.len() >= MAX_SEND_MESSAGES || bytes + size > MAX_SEND_BYTES);
        if full {
            out.push(Vec::new());
            bytes = 0;
        }
        if let Some(c) = out.last_mut() {
            c.push(i);
        }
        bytes += size;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn lines_are_validated_each_on_its_own() {
        let body = br#"{"op":"put","key":"a/1","body_base64":"aGk=","content_type":"text/plain","meta":{"k":"v"}}
{"op":"delete","key":"a/2"}

{"op":"put","key":"_pipeline/x"}
{"op":"copy","key":"a/3"}
{"op":"put","key":"a/4","body_base64":"***"}
{"op":"put","key":"a/5","idempotency_key":"has space"}
{"op":"delete","key":"a/6","body_base64":"aGk="}
{"op":"put","key":"a/7","extra":1}"#;
        let lines = parse(body, DEFAULT_MAX_BATCH_BYTES).unwrap();
        assert_eq!(lines.len(), 8);
        let ok = lines[0].as_ref().unwrap();
        assert_eq!(ok.body, b"hi");
        assert_eq!(ok.meta.custom.get("k").map(String::as_str), Some("v"));
        assert_eq!(lines[1].as_ref().unwrap().op, WriteOp::Delete);
        let code = |i: usize| lines[i].as_ref().unwrap_err().1.code();
        assert_eq!(code(2), "invalid_key");
        assert_eq!(code(3), "invalid_body");
        assert_eq!(code(4), "invalid_body");
        assert_eq!(code(5), "invalid_header");
        assert_eq!(code(6), "invalid_body");
        assert_eq!(code(7), "invalid_body");
        assert_eq!(lines[3].as_ref().unwrap_err().0.as_deref(), Some("a/3"));
    }

    #[test]
    fn whole_batch_errors() {
        assert_eq!(parse(b"not json", 1000).unwrap_err().code(), "invalid_body");
        assert_eq!(parse(b"[1,2]", 1000).unwrap_err().code(), "invalid_body");
        assert_eq!(parse(b"", 1000).unwrap_err().code(), "invalid_body");
        assert_eq!(
            parse(&[0xff, 0xfe], 1000).unwrap_err().code(),
            "invalid_body"
        );
        assert_eq!(
            parse(&[b' '; 1001], 1000).unwrap_err().code(),
            "payload_too_large"
        );
        let many = "{\"op\":\"delete\",\"key\":\"k\"}\n".repeat(101);
        assert_eq!(
            parse(many.as_bytes(), 1 << 20).unwrap_err().code(),
            "payload_too_large"
        );
    }

    proptest! {
        #[test]
        fn chunks_respect_the_send_limits_and_keep_order(sizes in proptest::collection::vec(1usize..130_000, 0..150)) {
            let cs = chunks(&sizes);
            let flat: Vec<usize> = cs.iter().flatten().copied().collect();
            prop_assert_eq!(flat, (0..sizes.len()).collect::<Vec<_>>());
            for c in &cs {
                prop_assert!(c.len() <= MAX_SEND_MESSAGES);
                let bytes: usize = c.iter().map(|i| sizes[*i]).sum();
                prop_assert!(c.len() == 1 || bytes <= MAX_SEND_BYTES);
            }
        }

        #[test]
        fn any_body_parses_or_is_refused(body in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = parse(&body, 1 << 20);
        }
    }
}
