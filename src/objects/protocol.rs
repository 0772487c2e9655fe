//! The JSON bodies exchanged between the Worker and the Durable Objects.
//! Both sides are this crate, so these types are the whole contract.

use pipeline_core::id::WriteOp;
use pipeline_core::message::WriteMessage;
use serde::{Deserialize, Serialize};

/// Consumer → scheduler: one key's writes from one batch, coalesced.
#[derive(Debug, Serialize, Deserialize)]
pub struct EnqueueRequest {
    /// The newest write, with its body.
    pub newest: WriteMessage,
    /// Older writes of the same batch: named, never written.
    pub older: Vec<OlderWrite>,
}

/// An older write in a batch: what is needed to end it as `superseded`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OlderWrite {
    pub id: String,
    pub accepted_ms: i64,
    pub size: u64,
    pub op: WriteOp,
    pub staged_key: Option<String>,
}

impl From<&WriteMessage> for OlderWrite {
    fn from(m: &WriteMessage) -> Self {
        Self {
            id: m.id.clone(),
            accepted_ms: m.accepted_ms,
            size: m.size,
            op: m.op,
            staged_key: m.staged_key().map(str::to_string),
        }
    }
}

/// Scheduler → consumer: how many writes were new to it.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct EnqueueResponse {
    pub admitted: u32,
    pub duplicates: u32,
}

/// Status route → scheduler: the id's sealed claims and how long to wait.
#[derive(Debug, Serialize, Deserialize)]
pub struct StatusRequest {
    pub id: String,
    pub key: String,
    pub accepted_ms: i64,
    pub size: u64,
    pub wait_ms: i64,
    pub ttl_ms: i64,
}

/// Dead letter consumer → scheduler: end this id as `failed`.
#[derive(Debug, Serialize, Deserialize)]
pub struct FailRequest {
    pub id: String,
    pub key: String,
    pub accepted_ms: i64,
    pub size: u64,
    pub code: String,
    pub message: String,
}

/// Producer → scheduler: reserve an `Idempotency-Key` for `id`, or learn
/// the id that already holds it.
#[derive(Debug, Serialize, Deserialize)]
pub struct IdempotencyRequest {
    pub idempotency_key: String,
    pub id: String,
}

/// The id that holds the idempotency key; `claimed` when it is the caller's.
#[derive(Debug, Serialize, Deserialize)]
pub struct IdempotencyResponse {
    pub id: String,
    pub claimed: bool,
}

/// Scheduler → reader: the newest accepted write it holds, if newer than
/// the stored object (`?consistency=latest`).
#[derive(Debug, Serialize, Deserialize)]
pub struct LatestResponse {
    pub pending: Option<WriteMessage>,
}

/// The header that carries a synchronous write's descriptor (its body is
/// the request body).
pub const SYNC_WRITE_HEADER: &str = "X-Pipeline-Write";
