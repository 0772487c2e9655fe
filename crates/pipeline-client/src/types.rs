//! The API's success bodies as Rust types.
//!
//! Field names follow `docs/API.md` exactly; times stay RFC 3339 strings
//! as sent, so tests can check their format as well as their value.
//! Unknown fields are ignored (the API may add to its bodies).

use serde::{Deserialize, Serialize};

use crate::headers::Headers;

/// `202 Accepted` for an asynchronous PUT or DELETE.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Accepted {
    /// Opaque upload id.
    pub id: String,
    /// The object key.
    pub key: String,
    /// Always [`UploadState::Queued`] per the contract.
    pub state: UploadState,
    /// When the Worker accepted the write (RFC 3339, ms).
    pub accepted_at: String,
    /// Body size in bytes (0 for a DELETE).
    pub size: u64,
    /// `/uploads/<id>`.
    pub status_url: String,
    /// The `Location` header of the answer.
    #[serde(skip_deserializing, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

/// `201 Created` for `PUT ?mode=sync`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct SyncCommitted {
    /// The write's upload id (an extension of the contract; pollable at
    /// `/uploads/{id}`), when the Worker sends it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The object key.
    pub key: String,
    /// The stored object's ETag.
    pub etag: String,
    /// Body size in bytes.
    pub size: u64,
    /// When the R2 write started (RFC 3339, ms).
    pub committed_at: String,
}

/// The state of an upload.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UploadState {
    /// Accepted, not yet taken by the scheduler.
    Queued,
    /// Held by the key's scheduler, waiting for its slot.
    Scheduled,
    /// Written (terminal).
    Committed,
    /// Made unnecessary by a newer write (terminal).
    Superseded,
    /// Given up (terminal).
    Failed,
    /// A state the contract does not name.
    #[serde(other)]
    Unknown,
}

impl UploadState {
    /// Whether the state is final.
    #[must_use]
    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::Committed | Self::Superseded | Self::Failed)
    }

    /// The state as the API spells it.
    #[must_use]
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Scheduled => "scheduled",
            Self::Committed => "committed",
            Self::Superseded => "superseded",
            Self::Failed => "failed",
            Self::Unknown => "unknown",
        }
    }
}

/// `{"code", "message"}` as found in error bodies and failed statuses.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct ErrorBody {
    /// snake_case code.
    pub code: String,
    /// Human-readable message.
    pub message: String,
}

/// `GET /uploads/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct UploadStatus {
    /// The upload id.
    pub id: String,
    /// The object key.
    pub key: String,
    /// Current state.
    pub state: UploadState,
    /// When the Worker accepted it.
    pub accepted_at: String,
    /// Body size in bytes.
    pub size: u64,
    /// `scheduled`: the earliest write time, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<String>,
    /// `committed`: when its R2 write started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub committed_at: Option<String>,
    /// `committed` PUT: the stored ETag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// `superseded`: the id of the newer write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub superseded_by: Option<String>,
    /// `failed`: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

/// `{"name", "value"}` of a counter.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Counter {
    /// The counter name.
    pub name: String,
    /// Its value.
    pub value: i64,
}

/// `GET /stats`. Signed, so a broken balance shows as a negative number
/// instead of a decode error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub struct Stats {
    /// Writes given an id.
    pub accepted: i64,
    /// Ids committed.
    pub committed: i64,
    /// Ids superseded.
    pub superseded: i64,
    /// Ids failed.
    pub failed: i64,
    /// Puts and deletes of user keys.
    pub r2_writes: i64,
    /// `429` answers.
    pub rate_limited: i64,
    /// accepted − committed − superseded − failed.
    pub inflight: i64,
}

/// One object of a listing.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct ListedObject {
    /// The key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// The ETag.
    pub etag: String,
    /// When it was written.
    pub uploaded_at: String,
    /// Its Content-Type, if any.
    #[serde(default)]
    pub content_type: Option<String>,
}

/// `GET /objects?...`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct ListPage {
    /// Objects on this page.
    pub objects: Vec<ListedObject>,
    /// Common prefixes (with a delimiter).
    #[serde(default)]
    pub prefixes: Vec<String>,
    /// Whether more pages follow.
    pub truncated: bool,
    /// The cursor for the next page, when truncated.
    #[serde(default)]
    pub cursor: Option<String>,
}

/// An object read (`GET`/`HEAD`): `200`, `206` or `304`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectResponse {
    /// `200`, `206` or `304`.
    pub status: u16,
    /// All response headers.
    pub headers: Headers,
    /// The bytes (empty for HEAD and 304).
    pub body: Vec<u8>,
}

impl ObjectResponse {
    /// The `ETag` header.
    #[must_use]
    pub fn etag(&self) -> Option<&str> {
        self.headers.get("etag")
    }

    /// The `Content-Type` header.
    #[must_use]
    pub fn content_type(&self) -> Option<&str> {
        self.headers.get("content-type")
    }

    /// The custom metadata value `name`, from `X-Meta-<name>`.
    #[must_use]
    pub fn meta(&self, name: &str) -> Option<&str> {
        self.headers.get(&format!("x-meta-{name}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_bodies_parse_per_state() {
        let s: UploadStatus = serde_json::from_str(
            r#"{"id":"i","key":"k","state":"committed","accepted_at":"2026-01-01T00:00:00.000Z",
                "size":3,"committed_at":"2026-01-01T00:00:01.000Z","etag":"e","extra":true}"#,
        )
        .unwrap();
        assert_eq!(s.state, UploadState::Committed);
        assert!(s.state.is_terminal());
        assert_eq!(s.etag.as_deref(), Some("e"));

        let s: UploadStatus = serde_json::from_str(
            r#"{"id":"i","key":"k","state":"failed","accepted_at":"t","size":0,
                "error":{"code":"r2_error","message":"boom"}}"#,
        )
        .unwrap();
        assert_eq!(s.error.unwrap().code, "r2_error");

        let s: UploadStatus = serde_json::from_str(
            r#"{"id":"i","key":"k","state":"teleported","accepted_at":"t","size":0}"#,
        )
        .unwrap();
        assert_eq!(s.state, UploadState::Unknown);
        assert!(!s.state.is_terminal());
        assert!(!UploadState::Queued.is_terminal() && !UploadState::Scheduled.is_terminal());
    }

    #[test]
    fn list_pages_parse_with_optional_fields() {
        let p: ListPage = serde_json::from_str(
            r#"{"objects":[{"key":"a","size":1,"etag":"e","uploaded_at":"t"}],"truncated":false}"#,
        )
        .unwrap();
        assert_eq!(p.objects[0].content_type, None);
        assert!(p.prefixes.is_empty());
        assert_eq!(p.cursor, None);
    }
}
