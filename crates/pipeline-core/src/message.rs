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
/// Where staged bodies live, under the reserved prefix.
pub const STAGING_PREFIX: &str = "_pipeline/staging/";

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
