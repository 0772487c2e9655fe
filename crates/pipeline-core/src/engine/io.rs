//! The engine's I/O beyond its own storage: R2 ([`Blobs`]), time and the
//! alarm ([`Clock`]), and pushing counts to `/stats` ([`StatsSink`]).
//!
//! Every `async` method here is a point where, in a Durable Object, other
//! events may run before it returns, and where the instance may die. The
//! engine re-reads its state after each of them; the simulator interleaves
//! and crashes exactly there. Alarm calls are storage operations (the
//! runtime's input gate holds other events back), so they are not such
//! points.

use thiserror::Error;

use crate::engine::store::OutboxEntry;
use crate::message::WriteMessage;
use crate::stats::SourcePush;

/// An R2 operation that did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BlobError {
    /// Worth retrying (network, 5xx, overload).
    #[error("transient R2 error: {0}")]
    Transient(String),
    /// Will fail the same way every time (metadata too large, bad key):
    /// the write ends `failed` at once instead of holding the key's slot
    /// through its retries.
    #[error("permanent R2 error: {0}")]
    Permanent(String),
}

/// What a `head` of the user's key tells about the stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredHead {
    /// The `upload-id` custom metadata the pipeline stamps on every put.
    pub upload_id: Option<String>,
    pub etag: String,
}

/// Where the bytes of a put come from.
pub enum PutBody<S> {
    Empty,
    Bytes(Vec<u8>),
    /// An opened staged body ([`Blobs::open_staged`]), streamed.
    Stream(S),
}

/// R2, as the scheduler uses it. `Stream` is an opened staged body.
#[allow(async_fn_in_trait)]
pub trait Blobs {
    type Stream;

    /// The stored object of the user's key, if any.
    ///
    /// # Errors
    /// [`BlobError`] when R2 does not answer.
    async fn head(&self, key: &str) -> Result<Option<StoredHead>, BlobError>;
    /// Opens a staged body for streaming into a put; `None` when missing.
    ///
    /// # Errors
    /// As [`Blobs::head`].
    async fn open_staged(&self, staged_key: &str) -> Result<Option<Self::Stream>, BlobError>;
    /// Puts `msg`'s object with the pipeline's metadata (`upload-id`,
    /// `accepted-at`, `committed-at` = `start_ms`); returns its ETag.
    ///
    /// # Errors
    /// As [`Blobs::head`].
    async fn put(
        &self,
        msg: &WriteMessage,
        body: PutBody<Self::Stream>,
        start_ms: i64,
    ) -> Result<String, BlobError>;
    /// Deletes the user's key.
    ///
    /// # Errors
    /// As [`Blobs::head`].
    async fn delete(&self, key: &str) -> Result<(), BlobError>;
    /// Deletes a staged body.
    ///
    /// # Errors
    /// As [`Blobs::head`].
    async fn delete_staged(&self, staged_key: &str) -> Result<(), BlobError>;
}

/// A failure of the clock's alarm or of a stats push.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0}")]
pub struct HostError(pub String);

/// Time, sleeping and the object's one alarm.
#[allow(async_fn_in_trait)]
pub trait Clock {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
    /// Waits `ms` (a long-poll's pause between two looks).
    async fn sleep(&self, ms: i64);
    /// Sets the alarm to an absolute time, replacing any other.
    ///
    /// # Errors
    /// [`HostError`] from the runtime.
    async fn set_alarm(&self, at_ms: i64) -> Result<(), HostError>;
    /// Clears the alarm.
    ///
    /// # Errors
    /// As [`Clock::set_alarm`].
    async fn delete_alarm(&self) -> Result<(), HostError>;
    /// When the alarm is set for, if it is.
    ///
    /// # Errors
    /// As [`Clock::set_alarm`].
    async fn get_alarm(&self) -> Result<Option<i64>, HostError>;
}

/// Where a scheduler pushes its cumulative totals (`/stats`).
#[allow(async_fn_in_trait)]
pub trait StatsSink {
    /// Pushes this key's cumulative totals to its shard.
    ///
    /// # Errors
    /// [`HostError`] when the push was not acknowledged (it may still have
    /// landed; the next push carries the same base, so it cannot count
    /// twice).
    async fn push_stats(&self, push: &SourcePush) -> Result<(), HostError>;
}

/// Where ended writes' events go: the webhook queue (entries with a
/// callback URL) and the commit-event queue (every entry, when enabled).
#[allow(async_fn_in_trait)]
pub trait Notifier {
    /// Hands `entries` to the queues. `Ok` only when every one was taken;
    /// after an `Err` all of them are sent again later (at least once).
    ///
    /// # Errors
    /// [`HostError`] when a queue did not take an entry.
    async fn notify(&self, entries: &[OutboxEntry]) -> Result<(), HostError>;
}
