//! What a key's scheduler persists, and the small storage interface the
//! engine needs. The Durable Object implements [`Store`] over its SQLite
//! database; the simulator over in-memory maps.
//!
//! Reads are synchronous (SQLite in a Durable Object is). Every change of
//! one engine step goes through [`Store::apply`] as one list of [`Op`]s that
//! must land atomically: all of them or none.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::id::WriteOp;
use crate::message::WriteMessage;
use crate::schedule::KeyState;
use crate::stats::{Acked, Totals};
use crate::status::{CallbackState, UploadState};

/// A storage failure. The engine answers it as an internal error; nothing
/// of the step that hit it was applied.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("storage: {0}")]
pub struct StoreError(pub String);

/// Retry bookkeeping of the pending write.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryDoc {
    pub id: String,
    pub attempts: u32,
    pub retry_at_ms: i64,
}

/// This key's cumulative totals with the version of their last change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsDoc {
    pub version: i64,
    pub totals: Totals,
    /// Changed since the last push that reached the shard.
    pub dirty: bool,
    /// What the shard last acknowledged (sent as the next push's base).
    #[serde(default)]
    pub acked: Option<Acked>,
    /// When the last push was acknowledged: the alarm pushes at most one
    /// per [`crate::engine::Scheduler::alarm_push_spacing`].
    #[serde(default)]
    pub pushed_ms: i64,
    /// The unpushed counts include one a client learned of without a status
    /// poll (a sync write's answer, a `429`), which `/stats` shows within
    /// about a second ([`crate::engine::STATS_PUSH_INTERVAL_MS`]).
    #[serde(default)]
    pub urgent: bool,
}

/// One commit of this key, for the key inspector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecentCommit {
    pub id: String,
    /// When its R2 write started (the moment the one-write-per-second
    /// spacing is measured from).
    pub committed_ms: i64,
}

/// The scheduler's one small document: read at the start of every step,
/// written in the step's [`Store::apply`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// The object key this scheduler serves (learnt from its first call).
    pub key: Option<String>,
    pub state: KeyState,
    pub retry: RetryDoc,
    pub stats: StatsDoc,
    /// What R2 holds under the key, as far as this scheduler (its only
    /// writer) knows: `None` when unknown (first use, after a crash), then
    /// learnt with a head before a conditional write is evaluated.
    #[serde(default)]
    pub stored: Option<Stored>,
    /// The last [`RECENT_COMMITS`] commits, newest last.
    #[serde(default)]
    pub recent_commits: Vec<RecentCommit>,
}

/// Commits kept in [`Meta::recent_commits`].
pub const RECENT_COMMITS: usize = 20;

/// The object stored under the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Stored {
    Absent,
    Object { etag: String },
}

impl Stored {
    /// The stored ETag, if an object is stored.
    pub fn etag(&self) -> Option<&str> {
        match self {
            Stored::Absent => None,
            Stored::Object { etag } => Some(etag),
        }
    }
}

/// How a write reached its scheduler: through the queue, or a synchronous
/// request (whose body is not kept: it cannot be retried after a crash).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    Queue,
    Sync,
}

/// One upload's status row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadRecord {
    pub id: String,
    pub accepted_ms: i64,
    pub size: u64,
    pub op: WriteOp,
    pub via: Via,
    pub state: UploadState,
    pub committed_ms: Option<i64>,
    pub etag: Option<String>,
    pub superseded_by: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    /// Last change; terminal rows are pruned `status_ttl` after it.
    pub updated_ms: i64,
    /// A synchronous write's staged body (queued writes keep theirs in
    /// their message): deleted when the write ends, even after a crash.
    #[serde(default)]
    pub staged_key: Option<String>,
    /// For a write that failed its condition: the stored ETag then.
    #[serde(default)]
    pub current_etag: Option<String>,
    /// The write's webhook, if it has one: URL, delivery state, tries.
    #[serde(default)]
    pub callback: Option<Callback>,
}

/// A write's webhook as its row keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Callback {
    pub url: String,
    pub state: CallbackState,
    pub attempts: u32,
}

impl Callback {
    /// A webhook not yet delivered.
    pub fn pending(url: &str) -> Self {
        Self {
            url: url.to_string(),
            state: CallbackState::Pending,
            attempts: 0,
        }
    }
}

/// An event owed to the webhook and event queues: recorded in the same
/// step that ends its write, removed once the queues took it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEntry {
    /// `webhook-id`: `msg_` + a hash of the upload id and its state, the
    /// same for every send of this event (receivers deduplicate on it).
    pub msg_id: String,
    pub upload_id: String,
    pub accepted_ms: i64,
    pub key: String,
    /// The webhook's URL; `None`: a commit event only.
    #[serde(default)]
    pub callback_url: Option<String>,
    /// The event's JSON text (`webhook::Event`).
    pub event: String,
}

/// An `Idempotency-Key` and the id that holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdemRecord {
    pub idem_key: String,
    pub id: String,
    pub created_ms: i64,
}

/// One change to storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    PutMeta(Box<Meta>),
    /// Insert or replace the row of `record.id`.
    PutUpload(UploadRecord),
    /// Keep the body of a held write until it ends.
    PutBody(WriteMessage),
    DeleteBody(String),
    /// A staged body to delete from R2 (its write ended).
    AddGarbage(String),
    RemoveGarbage(String),
    PutIdem(IdemRecord),
    /// An event to hand to the queues (its write just ended).
    PutOutbox(OutboxEntry),
    /// An event the queues took (by `msg_id`).
    RemoveOutbox(String),
    /// Expired statuses and idempotency keys.
    ///
    /// A terminal status last changed before `uploads_before` (a superseded
    /// one: accepted before it) has expired: the engine answers 404 for it
    /// from then on, and the store may drop it. But its id stays *seen*
    /// until `forget_before` passes its acceptance: [`Store::upload`] still
    /// finds its status, or [`Store::forgotten`] finds its fingerprint, so
    /// that a late duplicate of it is told apart from a write never
    /// delivered before. Idempotency keys created before `idem_before` go
    /// (the engine keeps them the seen-id window past their own, so that a
    /// repeat delivered late still finds the holder it was answered with).
    Prune {
        uploads_before: i64,
        forget_before: i64,
        idem_before: i64,
    },
}

/// What a prune would remove that is worth waking the key for, by the
/// time it was last changed or accepted: the engine adds the matching
/// retention to each. Expired statuses are not in it: a prune drops them
/// (`uploads_before` of [`Op::Prune`]) whenever it runs, and until then
/// the engine does not show them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Prunable {
    /// The oldest time (acceptance or last change) of a status or
    /// fingerprint the store keeps until its id is no longer seen
    /// (`forget_before`). A store may leave out what can wait for the
    /// next prune that runs anyway.
    pub seen: Option<i64>,
    /// The oldest `created_ms` of an idempotency key.
    pub idem: Option<i64>,
}

/// The scheduler's storage.
pub trait Store {
    /// The scheduler's document (default when never written).
    ///
    /// # Errors
    /// [`StoreError`] when storage cannot be read.
    fn meta(&self) -> Result<Meta, StoreError>;
    /// An upload's row. `accepted_ms` (from the id's sealed claims or the
    /// message) lets a store keep superseded writes compactly, keyed by
    /// acceptance time and a fingerprint of the id; such a row comes back
    /// with `size` 0 and `op` put (nothing reads them).
    ///
    /// # Errors
    /// As [`Store::meta`].
    fn upload(&self, id: &str, accepted_ms: i64) -> Result<Option<UploadRecord>, StoreError>;
    /// A held write's message (and so its body).
    ///
    /// # Errors
    /// As [`Store::meta`].
    fn body(&self, id: &str) -> Result<Option<WriteMessage>, StoreError>;
    /// Whether `id` (accepted at `accepted_ms`) had a status that expired
    /// and was dropped, and is still remembered as seen (see
    /// [`Op::Prune`]). A store that keeps such statuses until
    /// `forget_before` instead (found by [`Store::upload`]) answers `false`.
    ///
    /// # Errors
    /// As [`Store::meta`].
    fn forgotten(&self, id: &str, accepted_ms: i64) -> Result<bool, StoreError>;
    /// Who holds an `Idempotency-Key`, if anyone does.
    ///
    /// # Errors
    /// As [`Store::meta`].
    fn idempotency(&self, idem_key: &str) -> Result<Option<IdemRecord>, StoreError>;
    /// Up to `limit` staged bodies waiting for deletion.
    ///
    /// # Errors
    /// As [`Store::meta`].
    fn garbage(&self, limit: usize) -> Result<Vec<String>, StoreError>;
    /// Up to `limit` events waiting to be handed to the queues, oldest
    /// first.
    ///
    /// # Errors
    /// As [`Store::meta`].
    fn outbox(&self, limit: usize) -> Result<Vec<OutboxEntry>, StoreError>;
    /// When the next prune has something to do (see [`Prunable`]).
    ///
    /// # Errors
    /// As [`Store::meta`].
    fn oldest_prunable(&self) -> Result<Prunable, StoreError>;
    /// Applies one step's changes, all or none.
    ///
    /// # Errors
    /// [`StoreError`]; then nothing of `ops` was applied.
    fn apply(&self, ops: Vec<Op>) -> Result<(), StoreError>;
}
