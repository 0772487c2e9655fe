//! Upload statuses: the states an accepted write moves through and their
//! JSON shape on `GET /uploads/{id}`.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::time::rfc3339_ms;

/// Where an accepted write is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UploadState {
    /// Accepted, not yet taken by the key's scheduler.
    Queued,
    /// Held by the scheduler, waiting for its write slot.
    Scheduled,
    /// Written to R2 (terminal).
    Committed,
    /// Made unnecessary by a newer write to the key (terminal).
    Superseded,
    /// Could not be written (terminal).
    Failed,
}

impl UploadState {
    pub fn as_str(self) -> &'static str {
        match self {
            UploadState::Queued => "queued",
            UploadState::Scheduled => "scheduled",
            UploadState::Committed => "committed",
            UploadState::Superseded => "superseded",
            UploadState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => UploadState::Queued,
            "scheduled" => UploadState::Scheduled,
            "committed" => UploadState::Committed,
            "superseded" => UploadState::Superseded,
            "failed" => UploadState::Failed,
            _ => return None,
        })
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            UploadState::Committed | UploadState::Superseded | UploadState::Failed
        )
    }
}

/// Where a write's webhook is (`"callback"` in its status).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CallbackState {
    /// Not yet delivered (from acceptance until a delivery is reported).
    Pending,
    /// A delivery was answered 2xx.
    Delivered,
    /// Every try failed; the queue gave up.
    Failed,
}

impl CallbackState {
    pub fn as_str(self) -> &'static str {
        match self {
            CallbackState::Pending => "pending",
            CallbackState::Delivered => "delivered",
            CallbackState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => CallbackState::Pending,
            "delivered" => CallbackState::Delivered,
            "failed" => CallbackState::Failed,
            _ => return None,
        })
    }
}

/// A write's webhook delivery: its state and the tries reported so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallbackStatus {
    pub state: CallbackState,
    pub attempts: u32,
}

/// Everything the status route reports about one id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadStatus {
    pub id: String,
    pub key: String,
    pub state: UploadState,
    pub accepted_ms: i64,
    pub size: u64,
    #[serde(default)]
    pub not_before_ms: Option<i64>,
    #[serde(default)]
    pub committed_ms: Option<i64>,
    #[serde(default)]
    pub etag: Option<String>,
    #[serde(default)]
    pub superseded_by: Option<String>,
    #[serde(default)]
    pub error_code: Option<String>,
    #[serde(default)]
    pub error_message: Option<String>,
    /// For a write that failed its condition: the stored object's ETag
    /// then (absent when no object was stored).
    #[serde(default)]
    pub current_etag: Option<String>,
    /// For a write with a callback URL: its delivery.
    #[serde(default)]
    pub callback: Option<CallbackStatus>,
}

impl UploadStatus {
    /// The contract's JSON for this status: common fields plus the ones of
    /// its state.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), json!(self.id));
        m.insert("key".into(), json!(self.key));
        m.insert("state".into(), json!(self.state.as_str()));
        m.insert("accepted_at".into(), json!(rfc3339_ms(self.accepted_ms)));
        m.insert("size".into(), json!(self.size));
        match self.state {
            UploadState::Queued => {}
            UploadState::Scheduled => {
                if let Some(t) = self.not_before_ms {
                    m.insert("not_before".into(), json!(rfc3339_ms(t)));
                }
            }
            UploadState::Committed => {
                if let Some(t) = self.committed_ms {
                    m.insert("committed_at".into(), json!(rfc3339_ms(t)));
                }
                if let Some(e) = &self.etag {
                    m.insert("etag".into(), json!(e));
                }
            }
            UploadState::Superseded => {
                m.insert("superseded_by".into(), json!(self.superseded_by));
            }
            UploadState::Failed => {
                m.insert(
                    "error".into(),
                    json!({
                        "code": self.error_code.as_deref().unwrap_or("write_failed"),
                        "message": self.error_message.as_deref().unwrap_or("the write failed"),
                    }),
                );
                if let Some(e) = &self.current_etag {
                    m.insert("current_etag".into(), json!(e));
                }
            }
        }
        if let Some(c) = &self.callback {
            m.insert(
                "callback".into(),
                json!({"state": c.state.as_str(), "attempts": c.attempts}),
            );
        }
        Value::Object(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(state: UploadState) -> UploadStatus {
        UploadStatus {
            id: "i".into(),
            key: "k".into(),
            state,
            accepted_ms: 1000,
            size: 3,
            not_before_ms: Some(2000),
            committed_ms: Some(3000),
            etag: Some("e".into()),
            superseded_by: Some("j".into()),
            error_code: Some("r2_write_failed".into()),
            error_message: Some("boom".into()),
            current_etag: None,
            callback: None,
        }
    }

    #[test]
    fn each_state_shows_only_its_own_fields() {
        let q = status(UploadState::Queued).to_json();
        assert_eq!(q["state"], "queued");
        assert_eq!(q["accepted_at"], "1970-01-01T00:00:01.000Z");
        assert!(q.get("committed_at").is_none() && q.get("not_before").is_none());
        let s = status(UploadState::Scheduled).to_json();
        assert_eq!(s["not_before"], "1970-01-01T00:00:02.000Z");
        let c = status(UploadState::Committed).to_json();
        assert_eq!(c["committed_at"], "1970-01-01T00:00:03.000Z");
        assert_eq!(c["etag"], "e");
        assert!(c.get("superseded_by").is_none());
        assert_eq!(
            status(UploadState::Superseded).to_json()["superseded_by"],
            "j"
        );
        let f = status(UploadState::Failed).to_json();
        assert_eq!(f["error"]["code"], "r2_write_failed");
        assert!(f.get("callback").is_none());
        let mut d = status(UploadState::Committed);
        d.callback = Some(CallbackStatus {
            state: CallbackState::Delivered,
            attempts: 2,
        });
        assert_eq!(
            d.to_json()["callback"],
            json!({"state": "delivered", "attempts": 2})
        );
        for st in ["queued", "scheduled", "committed", "superseded", "failed"] {
            assert_eq!(UploadState::parse(st).map(UploadState::as_str), Some(st));
        }
    }
}

/// Fuzzing: any status renders the contract's shape.
#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    fn any_state() -> impl Strategy<Value = UploadState> {
        prop_oneof![
            Just(UploadState::Queued),
            Just(UploadState::Scheduled),
            Just(UploadState::Committed),
            Just(UploadState::Superseded),
            Just(UploadState::Failed),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn every_status_has_the_common_fields(
            state in any_state(),
            accepted in any::<i64>(),
            size in any::<u64>(),
            opt in proptest::option::of(any::<i64>()),
            text in proptest::option::of("\\PC{0,20}"),
        ) {
            let s = UploadStatus {
                id: "i".into(), key: "k".into(), state, accepted_ms: accepted, size,
                not_before_ms: opt, committed_ms: opt, etag: text.clone(),
                superseded_by: text.clone(), error_code: text.clone(), error_message: text,
                current_etag: None, callback: None,
            };
            let v = s.to_json();
            for f in ["id", "key", "state", "accepted_at", "size"] {
                prop_assert!(v.get(f).is_some(), "{} missing", f);
            }
            prop_assert_eq!(v["state"].as_str(), Some(state.as_str()));
            if state == UploadState::Failed {
                prop_assert!(v["error"]["code"].is_string() && v["error"]["message"].is_string());
            }
            prop_assert_eq!(UploadState::parse(state.as_str()), Some(state));
        }

        #[test]
        fn parsing_any_state_name_never_panics(s in "\\PC{0,12}") {
            let _ = UploadState::parse(&s);
        }
    }
}
