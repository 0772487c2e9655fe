//! The calls between the Worker and its Durable Objects: each call's path,
//! request and reply type, defined once. The Worker's typed stubs
//! (`src/objects/stub.rs`) send them; the objects dispatch on
//! [`Call::PATH`].

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::id::WriteOp;
use crate::message::WriteMessage;
use crate::ratelimit::SlotTaken;
use crate::stats::hot_keys::Counter;
use crate::stats::{Push, Totals};
use crate::status::UploadStatus;

/// Durable Object binding names, as in `wrangler.toml`.
pub mod bindings {
    /// One `KeyScheduler` per object key.
    pub const SCHEDULER: &str = "SCHEDULER";
    /// One `Counter` per counter name.
    pub const COUNTERS: &str = "COUNTERS";
    /// The `/stats` shards.
    pub const STATS: &str = "STATS";
    /// The R2 bucket.
    pub const BUCKET: &str = "BUCKET";
    /// The upload queue.
    pub const UPLOADS: &str = "UPLOADS";
    /// The dead letter queue (for poison messages forwarded at once).
    pub const DEAD_LETTERS: &str = "DEAD_LETTERS";
    /// The webhook delivery queue.
    pub const WEBHOOKS: &str = "WEBHOOKS";
    /// Commit events for downstream Workers (optional: without the
    /// binding no events are produced).
    pub const EVENTS: &str = "EVENTS";
}

/// One call to a Durable Object: a JSON request `POST`ed to [`Call::PATH`],
/// answered with a JSON [`Call::Reply`] (or the API's error shape).
pub trait Call: Serialize + DeserializeOwned {
    const PATH: &'static str;
    type Reply: Serialize + DeserializeOwned;
}

macro_rules! call {
    ($req:ty => $reply:ty, $path:literal) => {
        impl Call for $req {
            const PATH: &'static str = $path;
            type Reply = $reply;
        }
    };
}

/// Consumer → scheduler: one key's writes from one batch, coalesced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnqueueRequest {
    /// The newest write, with its body.
    pub newest: WriteMessage,
    /// Older writes of the same batch: named, never written.
    pub older: Vec<OlderWrite>,
}

/// An older write in a batch: what is needed to end it as `superseded`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OlderWrite {
    pub id: String,
    pub accepted_ms: i64,
    pub size: u64,
    pub op: WriteOp,
    pub staged_key: Option<String>,
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// Its webhook, if it has one: told that it was superseded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
}

impl From<&WriteMessage> for OlderWrite {
    fn from(m: &WriteMessage) -> Self {
        Self {
            id: m.id.clone(),
            accepted_ms: m.accepted_ms,
            size: m.size,
            op: m.op,
            staged_key: m.staged_key().map(str::to_string),
            idempotency_key: m.idempotency_key.clone(),
            callback_url: m.callback_url.clone(),
        }
    }
}

/// Scheduler → consumer: how many writes were new to it.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnqueueReply {
    pub admitted: u32,
    pub duplicates: u32,
}
call!(EnqueueRequest => EnqueueReply, "/enqueue");

/// Status route → scheduler: the id's sealed claims and how long to wait.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusRequest {
    pub id: String,
    pub key: String,
    pub accepted_ms: i64,
    pub size: u64,
    pub wait_ms: i64,
    pub ttl_ms: i64,
    /// Answer as soon as the scheduler holds the write (or it ended),
    /// not only once it ended (`?after=` reads).
    #[serde(default)]
    pub until_held: bool,
}
call!(StatusRequest => UploadStatus, "/status");

/// Dead letter consumer → scheduler: end this write as `failed` unless the
/// scheduler holds it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailRequest {
    pub id: String,
    pub key: String,
    pub accepted_ms: i64,
    pub size: u64,
    pub op: WriteOp,
    pub staged_key: Option<String>,
    #[serde(default)]
    pub idempotency_key: Option<String>,
    pub code: String,
    pub message: String,
    /// Its webhook, if it has one: told that it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
}

impl FailRequest {
    /// The request that ends a dead-lettered write `msg` as `failed` with
    /// code `dead_lettered` and `reason`.
    pub fn dead_lettered(msg: &WriteMessage, reason: &str) -> Self {
        Self {
            id: msg.id.clone(),
            key: msg.key.clone(),
            accepted_ms: msg.accepted_ms,
            size: msg.size,
            op: msg.op,
            staged_key: msg.staged_key().map(str::to_string),
            idempotency_key: msg.idempotency_key.clone(),
            code: "dead_lettered".into(),
            message: reason.to_string(),
            callback_url: msg.callback_url.clone(),
        }
    }
}

/// What the scheduler did with a dead letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailReply {
    /// The scheduler already has this write (held or ended): nothing done.
    Known,
    /// Recorded `failed`; its staged body is now the scheduler's to delete.
    Failed,
    /// Its `Idempotency-Key` belongs to another id: a repeat that was never
    /// answered to anyone; dropped.
    Dropped,
}
call!(FailRequest => FailReply, "/fail");

/// Producer → scheduler, after the queue took the write: record `id` as
/// the holder of `idempotency_key` unless another id holds it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClaimRequest {
    pub idempotency_key: String,
    pub id: String,
}

/// The id that holds the idempotency key (the caller's or the first one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimReply {
    pub holder: String,
}
call!(ClaimRequest => ClaimReply, "/idempotency/claim");

/// Webhook consumer → scheduler: how a delivery of `id`'s webhook went.
/// `Retrying` and `Delivered` count one try each; `Failed` (the queue gave
/// up) counts none. Once `delivered`, later reports change nothing.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CallbackReport {
    pub id: String,
    pub accepted_ms: i64,
    pub outcome: CallbackOutcome,
}

/// One delivery's outcome, as reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallbackOutcome {
    /// Answered 2xx.
    Delivered,
    /// Not 2xx (or no answer): to be tried again.
    Retrying,
    /// The queue gave up (dead letter).
    Failed,
}
call!(CallbackReport => Ack, "/callback");

/// Operator → scheduler: what the key's scheduler holds now (the ops
/// page's key inspector, `GET /stats/keys/{key}`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct InspectRequest {
    pub key: String,
}

/// A key's scheduler as the key inspector shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInspection {
    pub key: String,
    /// The write that is next to be committed.
    pub pending: Option<PendingWrite>,
    /// The write whose R2 write is running.
    pub in_flight: Option<InFlightWrite>,
    /// Writes held behind the pending one.
    pub waiting: usize,
    /// When the key may be written next (epoch ms): one second after the
    /// last write's start, or now.
    pub next_slot_ms: i64,
    /// The last commits, newest first.
    pub recent_commits: Vec<CommitSpacing>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingWrite {
    pub id: String,
    pub accepted_ms: i64,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InFlightWrite {
    pub id: String,
    pub started_ms: Option<i64>,
}

/// One commit and its distance to the commit before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitSpacing {
    pub id: String,
    pub committed_ms: i64,
    /// Milliseconds since the previous commit's start; `None` for the
    /// oldest one listed.
    pub spacing_ms: Option<i64>,
}
call!(InspectRequest => KeyInspection, "/inspect");

/// Reader → scheduler: the newest accepted write it holds, if newer than
/// the stored object (`?consistency=latest`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LatestRequest {}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LatestReply {
    pub pending: Option<WriteMessage>,
}
call!(LatestRequest => LatestReply, "/latest");

/// Producer → scheduler: a synchronous write, its body inline or staged.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SyncRequest {
    pub write: WriteMessage,
    /// Only ask whether the slot is free now (before a large body is
    /// staged); nothing is written or reserved.
    #[serde(default)]
    pub probe: bool,
}

/// The outcome of a synchronous write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum SyncReply {
    /// Written (`201`, or `204` for a DELETE).
    Committed {
        etag: Option<String>,
        committed_ms: i64,
    },
    /// The probe found the slot free.
    Free,
    /// The slot is taken (`429`).
    RateLimited { now_ms: i64, free_at_ms: i64 },
    /// The scheduler holds a newer write (`409`).
    Stale { newer: String },
    /// The write's `If-Match` / `If-None-Match` does not hold (`412`).
    PreconditionFailed { current_etag: Option<String> },
    /// The R2 write failed (`503`); nothing changed.
    Failed { message: String },
}

impl SyncReply {
    /// The slot of a `429`.
    pub fn slot(&self) -> Option<SlotTaken> {
        match self {
            SyncReply::RateLimited { now_ms, free_at_ms } => Some(SlotTaken {
                now_ms: *now_ms,
                free_at_ms: *free_at_ms,
            }),
            _ => None,
        }
    }
}
call!(SyncRequest => SyncReply, "/sync");

// A source's push to its stats shard.
call!(Push => Ack, "/push");

/// Reads one shard's sum.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TotalsRequest {
    /// How many of the shard's recently hot keys to list (0: none).
    #[serde(default)]
    pub top: usize,
}

/// A shard's running totals and its hot keys, most written first.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ShardReport {
    pub totals: Totals,
    #[serde(default)]
    pub top: Vec<Counter>,
}
call!(TotalsRequest => ShardReport, "/totals");

/// A reply that carries nothing but success.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    pub ok: bool,
}
