//! The queue message that carries one accepted write from the producer to
//! the consumer, and its defensive decoder.
//!
//! Messages travel as JSON text (not structured clone): maps survive, and
//! every field is checked here so a malformed message is failed with a
//! reason instead of crashing the consumer.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::id::{WriteOp, MAX_ID_CHARS};
use crate::key::validate_key;
use crate::meta::ObjectMeta;

/// Message format version.
pub const MESSAGE_VERSION: u8 = 1;
/// The longest callback URL accepted.
pub const MAX_CALLBACK_URL_BYTES: usize = 2048;
/// Where staged bodies live, under the reserved prefix.
pub const STAGING_PREFIX: &str = "_pipeline/staging/";

/// The most a queue message may hold: 128 KB (decimal, as the local
/// runtime checks it), the queue's own metadata included.
pub const QUEUE_MESSAGE_MAX_BYTES: usize = 128_000;
/// What the queue adds to each message of its own (about 100 bytes).
pub const QUEUE_MESSAGE_OVERHEAD_BYTES: usize = 100;
/// The largest encoded message this pipeline sends:
/// [`QUEUE_MESSAGE_MAX_BYTES`] less [`QUEUE_MESSAGE_OVERHEAD_BYTES`].
pub const MAX_ENCODED_MESSAGE_BYTES: usize = QUEUE_MESSAGE_MAX_BYTES - QUEUE_MESSAGE_OVERHEAD_BYTES;
/// Queues bill each message per started 64 KB of data (for each of its
/// write, read and delete): a message over this (its encoding plus the
/// queue's overhead) costs two units of each.
pub const QUEUE_BILLING_UNIT_BYTES: usize = 64_000;

/// The largest body whose base64 alone fits in `message_max` bytes: a
/// bound no message of that size can exceed (base64 makes 4 characters of
/// every 3 bytes). Whether a body of at most this size really travels
/// inline is decided by its whole encoded message
/// ([`WriteMessage::fits_in`]).
#[must_use]
pub const fn inline_body_bound(message_max: usize) -> u64 {
    (message_max / 4 * 3) as u64
}

/// Whether a staged body uploaded at `uploaded_ms` is an orphan the sweep
/// may delete: older than the seen-id window (`SEEN_IDS_TTL_SECONDS`). No
/// message can still be delivered that late (the window must outlast the
/// queues' message retention), and every write that used a staged body
/// ended before, so only bodies whose producer died between staging and
/// sending (or whose cleanup failed) are that old.
pub fn staged_orphan(uploaded_ms: i64, now_ms: i64, seen_ids_ttl_ms: i64) -> bool {
    now_ms - uploaded_ms > seen_ids_ttl_ms
}

/// Where a write's bytes are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BodyRef {
    /// A DELETE, or a PUT of zero bytes.
    Empty,
    /// Small bodies ride in the message, base64 (standard alphabet).
    Inline { data: String },
    /// Large bodies were streamed to R2 under this staging key.
    Staged { staged_key: String },
}

/// One accepted write, as queued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteMessage {
    pub v: u8,
    pub id: String,
    pub key: String,
    pub accepted_ms: i64,
    pub op: WriteOp,
    pub size: u64,
    #[serde(default)]
    pub meta: ObjectMeta,
    pub body: BodyRef,
    /// The request's `Idempotency-Key`, if it had one. The key's scheduler
    /// records the first id delivered with it and drops later ids that
    /// carry the same key, so a repeat never makes a second version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// `If-Match` / `If-None-Match: *`: evaluated when the write is
    /// committed, against the object stored then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<crate::write_condition::WriteCondition>,
    /// Where the write's terminal state is POSTed (`Callback-Url` or the
    /// deployment's `WEBHOOK_URL`), checked against the allowed origins
    /// when accepted and again before each delivery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
}

/// Why a message cannot be processed; the write is failed with this reason.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MessageError {
    #[error("message is not valid JSON for a write: {0}")]
    Shape(String),
    #[error("unsupported message version {0}")]
    Version(u8),
    #[error("invalid field `{field}`: {reason}")]
    Field { field: &'static str, reason: String },
}

impl WriteMessage {
    /// JSON text of the message.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Whether the encoded message is at most `message_max` bytes (UTF-8,
    /// as the queue counts a text message).
    #[must_use]
    pub fn fits_in(&self, message_max: usize) -> bool {
        self.encode().len() <= message_max
    }

    /// The largest inline body this message's envelope (key, id, metadata,
    /// callback, …) leaves room for within `message_max` bytes, found by
    /// encoding real messages (the `size` field's digits grow with the
    /// body, so this is not one subtraction).
    #[must_use]
    pub fn largest_inline_body(&self, message_max: usize) -> u64 {
        let fits = |n: u64| {
            let mut m = self.clone();
            m.op = WriteOp::Put;
            m.size = n;
            m.body = BodyRef::Inline {
                data: "A".repeat(usize::try_from(n.div_ceil(3) * 4).unwrap_or(usize::MAX)),
            };
            m.fits_in(message_max)
        };
        let (mut lo, mut hi) = (0u64, inline_body_bound(message_max) + 1);
        if !fits(lo) {
            return 0;
        }
        // fits(lo) and !fits(hi): the encoding grows with the body.
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if fits(mid) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// Decodes and validates a message.
    ///
    /// # Errors
    /// [`MessageError`] naming the first problem found.
    pub fn decode(raw: &str) -> Result<Self, MessageError> {
        let m: WriteMessage =
            serde_json::from_str(raw).map_err(|e| MessageError::Shape(e.to_string()))?;
        if m.v != MESSAGE_VERSION {
            return Err(MessageError::Version(m.v));
        }
        let field = |field, reason: &str| MessageError::Field {
            field,
            reason: reason.to_string(),
        };
        if m.id.is_empty() || m.id.len() > MAX_ID_CHARS {
            return Err(field("id", "empty or too long"));
        }
        validate_key(&m.key).map_err(|e| field("key", &e.to_string()))?;
        if let Some(k) = &m.idempotency_key {
            crate::meta::validate_idempotency_key(k)
                .map_err(|_| field("idempotency_key", "not 1 to 255 visible ASCII characters"))?;
        }
        if let Some(u) = &m.callback_url {
            if u.len() > MAX_CALLBACK_URL_BYTES || crate::webhook::origin_of(u).is_none() {
                return Err(field("callback_url", "not an absolute http(s) URL"));
            }
        }
        if m.accepted_ms < 0 {
            return Err(field("accepted_ms", "negative"));
        }
        match (&m.op, &m.body) {
            (WriteOp::Delete, BodyRef::Empty) if m.size == 0 => {}
            (WriteOp::Delete, _) => return Err(field("body", "a delete carries no body")),
            (WriteOp::Put, BodyRef::Empty) if m.size == 0 => {}
            (WriteOp::Put, BodyRef::Empty) => {
                return Err(field("size", "empty body with non-zero size"))
            }
            (WriteOp::Put, BodyRef::Inline { data }) => {
                let len = STANDARD
                    .decode(data)
                    .map_err(|e| field("body", &e.to_string()))?
                    .len();
                if len as u64 != m.size {
                    return Err(field("size", "does not match the inline body"));
                }
            }
            (WriteOp::Put, BodyRef::Staged { staged_key }) => {
                if !staged_key.starts_with(STAGING_PREFIX) || staged_key.len() > 1024 {
                    return Err(field("body", "staged key outside the staging prefix"));
                }
            }
        }
        Ok(m)
    }

    /// The inline body's bytes, if the body is inline.
    pub fn inline_bytes(&self) -> Option<Vec<u8>> {
        match &self.body {
            BodyRef::Inline { data } => STANDARD.decode(data).ok(),
            _ => None,
        }
    }

    /// Encodes bytes for an inline body.
    pub fn inline(bytes: &[u8]) -> BodyRef {
        if bytes.is_empty() {
            BodyRef::Empty
        } else {
            BodyRef::Inline {
                data: STANDARD.encode(bytes),
            }
        }
    }

    /// The staging key, if the body is staged.
    pub fn staged_key(&self) -> Option<&str> {
        match &self.body {
            BodyRef::Staged { staged_key } => Some(staged_key),
            _ => None,
        }
    }
}

/// What can still be read from a message that fails [`WriteMessage::decode`]:
/// its id and staged body, so the dead letter path can fail the id and
/// remove the staged object.
pub fn salvage(raw: &str) -> (Option<String>, Option<String>) {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(raw) else {
        return (None, None);
    };
    let id = v.get("id").and_then(|x| x.as_str()).map(str::to_string);
    let staged = v
        .get("body")
        .and_then(|b| b.get("staged_key"))
        .and_then(|x| x.as_str())
        .filter(|k| k.starts_with(STAGING_PREFIX))
        .map(str::to_string);
    (id, staged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn put(body: &[u8]) -> WriteMessage {
        WriteMessage {
            v: MESSAGE_VERSION,
            id: "abc".into(),
            key: "k/1".into(),
            accepted_ms: 1000,
            op: WriteOp::Put,
            size: body.len() as u64,
            meta: ObjectMeta::default(),
            body: WriteMessage::inline(body),
            idempotency_key: None,
            condition: None,
            callback_url: None,
        }
    }

    #[test]
    fn round_trips_through_json_text() {
        let mut m = put(b"hello");
        m.meta.custom.insert("colour".into(), "blue".into());
        let back = WriteMessage::decode(&m.encode()).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.inline_bytes().unwrap(), b"hello");
    }

    #[test]
    fn rejects_inconsistent_messages() {
        let mut m = put(b"hello");
        m.size = 6;
        assert!(matches!(
            WriteMessage::decode(&m.encode()),
            Err(MessageError::Field { field: "size", .. })
        ));
        let mut m = put(b"");
        m.op = WriteOp::Delete;
        m.body = BodyRef::Staged {
            staged_key: "_pipeline/staging/x".into(),
        };
        assert!(WriteMessage::decode(&m.encode()).is_err());
        let mut m = put(b"x");
        m.key = "_pipeline/evil".into();
        assert!(WriteMessage::decode(&m.encode()).is_err());
        let mut m = put(b"");
        m.body = BodyRef::Staged {
            staged_key: "user/key".into(),
        };
        assert!(WriteMessage::decode(&m.encode()).is_err());
        assert!(matches!(
            WriteMessage::decode("{}"),
            Err(MessageError::Shape(_))
        ));
    }

    #[test]
    fn salvages_id_and_staged_key_from_broken_messages() {
        let raw =
            r#"{"id":"x1","body":{"kind":"staged","staged_key":"_pipeline/staging/9"},"v":99}"#;
        assert_eq!(
            salvage(raw),
            (Some("x1".into()), Some("_pipeline/staging/9".into()))
        );
        assert_eq!(salvage("not json"), (None, None));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn decoding_arbitrary_text_never_panics(s in ".{0,400}") {
            let _ = WriteMessage::decode(&s);
            let _ = salvage(&s);
        }
    }
}

/// Fuzzing: the queue message decoder never panics on any input,
/// and whatever it accepts obeys every rule a consumer relies on.
#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{json, Value};

    fn valid() -> Value {
        json!({
            "v": 1, "id": "abc", "key": "k/1", "accepted_ms": 1000, "op": "put", "size": 5,
            "meta": {"content_type": "text/plain", "custom": {"a": "b"}},
            "body": {"kind": "inline", "data": "aGVsbG8="},
        })
    }

    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<f64>().prop_map(|f| json!(f)),
            "\\PC{0,20}".prop_map(Value::String),
            Just(json!("_pipeline/staging/x")),
            Just(json!("inline")),
            Just(json!("staged")),
            Just(json!("empty")),
            Just(json!("delete")),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map("[a-z_]{1,12}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    const FIELDS: [&str; 8] = [
        "v",
        "id",
        "key",
        "accepted_ms",
        "op",
        "size",
        "meta",
        "body",
    ];

    fn check_accepted(m: &WriteMessage) -> Result<(), TestCaseError> {
        prop_assert_eq!(m.v, MESSAGE_VERSION);
        prop_assert!(!m.id.is_empty() && m.id.len() <= MAX_ID_CHARS);
        prop_assert!(validate_key(&m.key).is_ok());
        prop_assert!(m.accepted_ms >= 0);
        match &m.body {
            BodyRef::Empty => prop_assert_eq!(m.size, 0),
            BodyRef::Inline { .. } => {
                prop_assert_eq!(m.op, WriteOp::Put);
                prop_assert_eq!(m.inline_bytes().map(|b| b.len() as u64), Some(m.size));
            }
            BodyRef::Staged { staged_key } => {
                prop_assert_eq!(m.op, WriteOp::Put);
                prop_assert!(staged_key.starts_with(STAGING_PREFIX));
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let text = String::from_utf8_lossy(&bytes);
            if let Ok(m) = WriteMessage::decode(&text) {
                check_accepted(&m)?;
            }
            let (_, staged) = salvage(&text);
            prop_assert!(staged.is_none_or(|k| k.starts_with(STAGING_PREFIX)));
        }

        #[test]
        fn any_field_replaced_by_any_json_never_panics(field in 0..FIELDS.len(), value in any_json()) {
            let mut v = valid();
            v[FIELDS[field]] = value;
            let text = v.to_string();
            if let Ok(m) = WriteMessage::decode(&text) {
                check_accepted(&m)?;
            }
            let (_, staged) = salvage(&text);
            prop_assert!(staged.is_none_or(|k| k.starts_with(STAGING_PREFIX)));
        }

        #[test]
        fn any_field_removed_or_added_never_panics(field in 0..FIELDS.len(), extra in "[a-z]{1,8}", value in any_json()) {
            let mut v = valid();
            if let Some(o) = v.as_object_mut() {
                o.remove(FIELDS[field]);
                o.insert(extra, value);
            }
            if let Ok(m) = WriteMessage::decode(&v.to_string()) {
                check_accepted(&m)?;
            }
        }

        #[test]
        fn any_body_and_op_never_panic(kind in "(inline|staged|empty|other)", op in "(put|delete|get)", data in "\\PC{0,24}", size in any::<u64>()) {
            let mut v = valid();
            v["op"] = json!(op);
            v["size"] = json!(size);
            v["body"] = json!({"kind": kind, "data": data, "staged_key": data});
            if let Ok(m) = WriteMessage::decode(&v.to_string()) {
                check_accepted(&m)?;
            }
        }

        #[test]
        fn truncations_never_panic(cut in 0usize..400) {
            let text = valid().to_string();
            let cut = cut.min(text.len());
            let _ = WriteMessage::decode(&text[..cut]);
            let _ = salvage(&text[..cut]);
        }
    }
}
