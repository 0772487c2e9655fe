//! The per-key scheduler as an engine without I/O of its own.
//!
//! Everything the key's scheduler decides lives here: admitting and
//! superseding writes, committing them at most once a second, retrying with
//! backoff, recovering a write a crash interrupted, the synchronous slot,
//! idempotency, statuses and their pruning, and staged-body cleanup. The
//! Durable Object (`src/objects/key_scheduler.rs`) only performs I/O: it
//! implements [`Store`] over SQLite and [`Blobs`], [`Clock`] and
//! [`StatsSink`] over R2, the alarm and the stats shards. The simulator
//! (`crates/pipeline-sim`) implements the same traits over models and
//! drives this very code.
//!
//! # The one rule that keeps it correct
//! Every handler is a sequence of *steps* separated by awaits on [`Blobs`]
//! or [`StatsSink`] (where other events may run and the instance may die).
//! A step reads [`Store::meta`] afresh, decides, and writes all its changes
//! with one [`Store::apply`]; nothing read before an await is written after
//! it. In-memory state ([`Memory`]) is only what a restart may lose.
//!
//! Seams: [`admit`] (writes delivered by the queue, dead letters,
//! idempotency), [`commit`] (the alarm, R2 writes, retries, garbage),
//! [`recovery`], [`sync`], [`status`], [`outbox`] (webhook and commit
//! events: recorded by the step that ends a write, handed to the queues by
//! the alarm).

pub mod admit;
pub mod commit;
pub mod io;
pub mod outbox;
pub mod planted;
pub mod recovery;
pub mod status;
pub mod store;
pub mod sync;

use std::cell::Cell;

pub use io::{BlobError, Blobs, Clock, HostError, Notifier, PutBody, StatsSink, StoredHead};
pub use store::{
    Callback, IdemRecord, Meta, Op, OutboxEntry, Prunable, RecentCommit, RetryDoc, StatsDoc, Store,
    StoreError, Stored, UploadRecord, Via, RECENT_COMMITS,
};

use crate::error::ApiError;
use crate::id::WriteOp;
use crate::schedule::WriteRef;
use crate::stats::{Acked, SourcePush, Totals};
use crate::status::UploadState;
use planted::{active, Bug};

/// Everything the engine needs from its host.
pub trait Host: Store + Blobs + Clock + StatsSink + Notifier {}
impl<T: Store + Blobs + Clock + StatsSink + Notifier> Host for T {}

/// While a write of this instance runs, the alarm looks again this late
/// (the write reschedules itself when it ends; this is only a watchdog).
pub const BUSY_RECHECK_MS: i64 = 2000;
/// The alarm set before an R2 write starts, so a crash during the write
/// is recovered without any other event.
pub const WATCHDOG_MS: i64 = 2000;
/// How long an R2 write started by an instance that then died may still
/// land. Until this long after its start, recovery that does not see the
/// write in R2 waits instead of concluding it failed: writing the key again
/// earlier could be overwritten by the orphaned write landing late (the
/// simulator finds that regression when this grace is shorter than R2's
/// latency). The key's later writes wait meanwhile; crashes are rare.
pub const LANDING_GRACE_MS: i64 = 30_000;
/// Staged bodies removed per alarm run.
pub const GARBAGE_PER_RUN: usize = 50;
/// How long a terminal status waits for its counts to reach `/stats`.
pub const STATS_GRACE_MS: i64 = 1000;
/// How often a long-poll looks at the status again.
pub const POLL_INTERVAL_MS: i64 = 100;
/// How soon dirty totals are pushed again after a failed push.
pub const STATS_RETRY_MS: i64 = 5000;
/// At most one stats push per key per this interval from the alarm while
/// the key's unpushed counts include one a client learned of without a
/// status poll (a sync write's answer, a `429`): the API promises those in
/// `/stats` within about a second. Longer: fewer shard calls from keys
/// written in sync mode; shorter: `/stats` catches up sooner.
pub const STATS_PUSH_INTERVAL_MS: i64 = 1000;
/// At most one stats push per key per this interval from the alarm while
/// its unpushed counts are all of queued writes (a status poll that sees
/// its write end pushes at once, so a client never reads `/stats` behind
/// what its polls showed). Every push is a shard call writing two rows
/// and an acknowledgement writing one: a hot key pushing every second
/// paid about one row written per upload in the storm benchmark. Longer:
/// fewer of those; shorter: `/stats`, `/metrics` and the operations page
/// count queued writes' ends sooner.
pub const STATS_QUEUED_PUSH_INTERVAL_MS: i64 = 5000;
/// The spacing for a push made by a status poll whose write ended while
/// its counts wait for the alarm's push: none. The poll's answer waits for
/// the push, so the reader pays; pushes stay one at a time per key and only
/// happen while counts changed, so polls cannot push more often than the
/// key's writes end.
pub const STATS_POLL_PUSH_MS: i64 = 0;
/// How often a status poll waiting for a running push looks again.
pub const STATS_PUSH_WAIT_MS: i64 = 10;
/// Events handed to the queues per alarm step.
pub const OUTBOX_PER_STEP: usize = 50;
/// How soon the outbox is tried again after the queues refused it.
pub const OUTBOX_RETRY_MS: i64 = 2000;

/// The engine's settings (from the deployment's `Settings`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineConfig {
    /// How long terminal statuses are kept.
    pub status_ttl_ms: i64,
    /// How long a write id is remembered as seen, after its acceptance
    /// (`SEEN_IDS_TTL_SECONDS`): longer than any message can live.
    pub seen_ids_ttl_ms: i64,
    /// Tries of one R2 write before its upload is `failed`.
    pub max_commit_attempts: u32,
    /// How long an `Idempotency-Key` dedupes new requests. Its claim is
    /// kept `seen_ids_ttl_ms` longer, for late deliveries of repeats.
    pub idempotency_ttl_ms: i64,
    /// Commit events are on (the `EVENTS` queue is bound): every write
    /// that ends records an event, not only those with a callback.
    pub events: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            status_ttl_ms: crate::config::DEFAULT_STATUS_TTL_SECONDS as i64 * 1000,
            seen_ids_ttl_ms: crate::config::DEFAULT_SEEN_IDS_TTL_SECONDS as i64 * 1000,
            max_commit_attempts: crate::config::MAX_COMMIT_ATTEMPTS,
            idempotency_ttl_ms: crate::config::IDEMPOTENCY_TTL_MS,
            events: false,
        }
    }
}

/// What one instance keeps in memory; a restart starts from the default.
#[derive(Debug, Default)]
pub struct Memory {
    /// An R2 write of this instance is running. A fresh instance starts
    /// with `false` while the persisted `in_flight` is set: that is how an
    /// interrupted write is recognised.
    pub busy: Cell<bool>,
    /// The queues refused the outbox: not before this time again.
    pub outbox_retry_at: Cell<i64>,
    /// A stats push of this instance is running.
    pub stats_pushing: Cell<bool>,
    /// The last stats push failed: not before this time again.
    pub stats_retry_at: Cell<i64>,
    /// Expired statuses were pruned: not before this time again
    /// ([`prune_spacing`]).
    pub prune_not_before: Cell<i64>,
    /// What this instance knows of the key's alarm. Each `setAlarm` is
    /// billed as a row written, so one already set for the time wanted is
    /// not set again, nor one known unset deleted.
    pub alarm: Cell<AlarmKnown>,
}

/// What an instance knows of its object's alarm.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AlarmKnown {
    /// Nothing: a fresh instance, or a call that failed.
    #[default]
    Unknown,
    /// None is set: the alarm that is running was the last one (if it
    /// fails, the runtime runs it again).
    Unset,
    /// This instance set it for this time.
    At(i64),
}

/// The longest wait between two prunes of a key's expired statuses.
pub const PRUNE_SPACING_MAX_MS: i64 = 600_000;

/// How long after one prune of expired statuses the next may run: a
/// hundredth of the retention window, at most [`PRUNE_SPACING_MAX_MS`].
/// A store may find expired rows by reading all of them (an index on
/// them would cost a row written per write ending), so a hot key's alarm,
/// which runs about every second, must not prune on every run. Longer:
/// fewer such reads; shorter: statuses kept less beyond the window (at
/// most this long).
pub fn prune_spacing(status_ttl_ms: i64) -> i64 {
    (status_ttl_ms / 100).clamp(0, PRUNE_SPACING_MAX_MS)
}

/// One key's scheduler: the host's I/O, this instance's memory, settings.
pub struct Scheduler<'a, H> {
    pub host: &'a H,
    pub mem: &'a Memory,
    pub cfg: EngineConfig,
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

/// One step's changes: the document as the step leaves it and the other
/// operations, applied together by [`Tx::apply`].
pub struct Tx {
    pub meta: Meta,
    pub ops: Vec<Op>,
    pub now: i64,
    /// Record an event for every write that ends (commit events on), not
    /// only for writes with a callback.
    pub events: bool,
}

impl Tx {
    /// Starts a step from the stored document.
    ///
    /// # Errors
    /// [`StoreError`] when it cannot be read.
    pub fn begin(store: &impl Store, now: i64) -> Result<Self, StoreError> {
        Ok(Self {
            meta: store.meta()?,
            ops: Vec::new(),
            now,
            events: false,
        })
    }

    /// Writes the step: every operation and the document, all or none.
    ///
    /// # Errors
    /// [`StoreError`]; nothing was written then.
    pub fn apply(mut self, store: &impl Store) -> Result<Meta, StoreError> {
        self.ops.insert(0, Op::PutMeta(Box::new(self.meta.clone())));
        store.apply(self.ops)?;
        Ok(self.meta)
    }

    /// Adds to this key's totals and marks them for pushing.
    pub fn count(&mut self, f: impl FnOnce(&mut Totals)) {
        f(&mut self.meta.stats.totals);
        self.meta.stats.version += 1;
        self.meta.stats.dirty = true;
    }

    /// Marks this step's counts as ones a client learns of without a
    /// status poll: pushed within [`STATS_PUSH_INTERVAL_MS`].
    pub fn count_is_answered(&mut self) {
        self.meta.stats.urgent = true;
    }

    /// A new row for a write this scheduler has not seen (one that ends
    /// at once records its event too).
    pub fn insert(&mut self, rec: UploadRecord) {
        if rec.state.is_terminal() {
            self.record_event(&rec);
        }
        // A new row is the scheduler taking the write: its queue wait.
        let wait = self.now - rec.accepted_ms;
        self.count(|t| t.queue_wait.observe(wait));
        self.ops.push(Op::PutUpload(rec));
    }

    /// Ends `rec` (already stored) in `state` with the given details, drops
    /// its body (a staged one becomes garbage) and counts it.
    pub fn end(
        &mut self,
        store: &impl Store,
        mut rec: UploadRecord,
        end: End,
    ) -> Result<(), StoreError> {
        rec.updated_ms = self.now;
        match end {
            End::Committed { start_ms, etag } => {
                rec.state = UploadState::Committed;
                rec.committed_ms = Some(start_ms);
                rec.etag = etag;
                let recent = &mut self.meta.recent_commits;
                recent.push(RecentCommit {
                    id: rec.id.clone(),
                    committed_ms: start_ms,
                });
                if recent.len() > RECENT_COMMITS {
                    recent.remove(0);
                }
                let lag = start_ms - rec.accepted_ms;
                self.count(|t| {
                    t.committed += 1;
                    t.r2_writes += 1;
                    t.commit_lag.observe(lag);
                });
            }
            End::Superseded { by } => {
                rec.state = UploadState::Superseded;
                rec.superseded_by = Some(by);
                self.count(|t| t.superseded += 1);
            }
            End::Failed { code, message } => {
                rec.state = UploadState::Failed;
                rec.error_code = Some(code);
                rec.error_message = Some(message);
                self.count(|t| t.failed += 1);
            }
            End::ConditionFailed { current_etag } => {
                rec.state = UploadState::Failed;
                rec.error_code = Some("precondition_failed".into());
                rec.error_message = Some(
                    "the write's condition did not hold against the object stored when it was committed".into(),
                );
                rec.current_etag = current_etag;
                self.count(|t| t.failed += 1);
            }
        }
        self.drop_body(store, &rec.id)?;
        if let Some(k) = rec.staged_key.take() {
            self.ops.push(Op::AddGarbage(k));
        }
        self.record_event(&rec);
        self.ops.push(Op::PutUpload(rec));
        Ok(())
    }

    /// Ends the stored write `w`, if it exists and is not terminal yet.
    pub fn end_id(&mut self, store: &impl Store, w: &WriteRef, end: End) -> Result<(), StoreError> {
        match store.upload(&w.id, w.accepted_ms)? {
            Some(rec) if !rec.state.is_terminal() => self.end(store, rec, end),
            _ => Ok(()),
        }
    }

    /// Holds `w` behind what is held (as pending when nothing is).
    pub fn hold(&mut self, w: WriteRef, conditional: bool) {
        if conditional {
            self.meta.state.conditional.push(w.id.clone());
        }
        if self.meta.state.pending.is_none() && self.meta.state.line.is_empty() {
            self.meta.state.pending = Some(w);
        } else {
            self.meta.state.line.push(w);
        }
    }

    /// The last held write (the one a newer write would follow).
    pub fn last_held(&self) -> Option<&WriteRef> {
        self.meta
            .state
            .line
            .last()
            .or(self.meta.state.pending.as_ref())
    }

    /// Whether the held write `id` carries a condition.
    pub fn is_conditional(&self, id: &str) -> bool {
        self.meta.state.conditional.iter().any(|c| c == id)
    }

    /// Takes `id` out of the held writes (pending or line) and moves the
    /// line up.
    pub fn unhold(&mut self, id: &str) {
        let st = &mut self.meta.state;
        if st.pending.as_ref().is_some_and(|p| p.id == id) {
            st.pending = None;
        }
        st.line.retain(|w| w.id != id);
        st.conditional.retain(|c| c != id);
        self.advance();
    }

    /// Moves the line's first write up to pending when nothing is pending.
    pub fn advance(&mut self) {
        let st = &mut self.meta.state;
        if st.pending.is_none() && !st.line.is_empty() {
            st.pending = Some(st.line.remove(0));
        }
    }

    /// Forgets a held write's body; a staged one is queued for deletion.
    pub fn drop_body(&mut self, store: &impl Store, id: &str) -> Result<(), StoreError> {
        if let Some(msg) = store.body(id)? {
            if let Some(staged) = msg.staged_key() {
                self.ops.push(Op::AddGarbage(staged.to_string()));
            }
            self.ops.push(Op::DeleteBody(id.to_string()));
        }
        Ok(())
    }
}

/// How a write ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    Committed {
        start_ms: i64,
        etag: Option<String>,
    },
    Superseded {
        by: String,
    },
    Failed {
        code: String,
        message: String,
    },
    /// `If-Match` / `If-None-Match` did not hold: failed with
    /// `precondition_failed`; the object is unchanged.
    ConditionFailed {
        current_etag: Option<String>,
    },
}

impl End {
    pub fn failed(code: &str, message: impl Into<String>) -> Self {
        End::Failed {
            code: code.to_string(),
            message: message.into(),
        }
    }
}

/// A fresh, non-terminal row for `msg`-like facts.
pub fn new_record(
    id: &str,
    accepted_ms: i64,
    size: u64,
    op: WriteOp,
    via: Via,
    state: UploadState,
    now: i64,
) -> UploadRecord {
    UploadRecord {
        id: id.to_string(),
        accepted_ms,
        size,
        op,
        via,
        state,
        committed_ms: None,
        etag: None,
        superseded_by: None,
        error_code: None,
        error_message: None,
        updated_ms: now,
        staged_key: None,
        current_etag: None,
        callback: None,
    }
}

impl<'a, H: Host> Scheduler<'a, H> {
    pub fn new(host: &'a H, mem: &'a Memory, cfg: EngineConfig) -> Self {
        Self { host, mem, cfg }
    }

    fn begin(&self) -> Result<Tx, ApiError> {
        let mut tx = Tx::begin(self.host, self.host.now_ms())?;
        tx.events = self.cfg.events;
        Ok(tx)
    }

    /// The newest write that decides what older ones are superseded by:
    /// the newest that landed (or ended) and the pending one. A write in
    /// flight is not counted: it may still fail, and nothing is superseded
    /// by a write that did not land.
    fn newest_settled(meta: &Meta) -> Option<&WriteRef> {
        [&meta.state.watermark, &meta.state.pending]
            .into_iter()
            .flatten()
            .chain(meta.state.line.iter())
            .max()
    }

    /// When this key's dirty totals may be pushed: `spacing` after the last
    /// acknowledged push, later after a failed one.
    pub fn stats_due(&self, meta: &Meta, spacing: i64) -> i64 {
        (meta.stats.pushed_ms + spacing).max(self.mem.stats_retry_at.get())
    }

    /// The alarm's spacing of this key's pushes: [`STATS_PUSH_INTERVAL_MS`]
    /// while its unpushed counts include one a client learned of without a
    /// status poll, [`STATS_QUEUED_PUSH_INTERVAL_MS`] otherwise.
    pub fn alarm_push_spacing(meta: &Meta) -> i64 {
        if meta.stats.urgent {
            STATS_PUSH_INTERVAL_MS
        } else {
            STATS_QUEUED_PUSH_INTERVAL_MS
        }
    }

    /// Pushes this key's totals if they changed and a push is due (at most
    /// one per `spacing` after the last, one at a time; `None`: the alarm's
    /// spacing, [`Self::alarm_push_spacing`]). Never called by the write
    /// handlers: the alarm pushes, and a status poll waiting for its
    /// write's counts ([`STATS_POLL_PUSH_MS`]). On failure they stay dirty
    /// for a later alarm.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn push_stats(&self, spacing: Option<i64>) -> Result<(), ApiError> {
        let meta = self.host.meta()?;
        let now = self.host.now_ms();
        let spacing = spacing.unwrap_or_else(|| Self::alarm_push_spacing(&meta));
        if !meta.stats.dirty || self.mem.stats_pushing.get() || now < self.stats_due(&meta, spacing)
        {
            return Ok(());
        }
        let push = SourcePush {
            version: meta.stats.version,
            totals: meta.stats.totals,
            base: meta.stats.acked,
            key: meta.key.clone(),
        };
        self.mem.stats_pushing.set(true);
        let result = self.host.push_stats(&push).await;
        self.mem.stats_pushing.set(false);
        if result.is_err() && !active(Bug::UnansweredPushAcked) {
            self.mem
                .stats_retry_at
                .set(self.host.now_ms() + STATS_RETRY_MS);
            return Ok(());
        }
        // Re-read: other events may have counted more meanwhile.
        let mut tx = self.begin()?;
        let stats = &mut tx.meta.stats;
        if stats.acked.is_none_or(|a| a.version < push.version) {
            stats.acked = Some(Acked {
                version: push.version,
                totals: push.totals,
            });
        }
        stats.pushed_ms = tx.now;
        stats.dirty = stats.version != push.version;
        // Counts that arrived during the push keep the flag they set.
        stats.urgent = stats.urgent && stats.dirty;
        tx.apply(self.host)?;
        Ok(())
    }

    /// When the pending write may start: its slot, or later when it is
    /// waiting out a retry backoff.
    pub fn pending_due(meta: &Meta, now: i64) -> Option<i64> {
        let p = meta.state.pending.as_ref()?;
        let retry_at = if meta.retry.id == p.id {
            meta.retry.retry_at_ms
        } else {
            0
        };
        let mut slot = meta.state.next_slot(now);
        if active(Bug::SlotLeftIdle) {
            if let Some(last) = meta.state.last_start_ms {
                slot = slot.max(last + 2 * crate::schedule::WRITE_SPACING_MS);
            }
        }
        Some(slot.max(retry_at))
    }

    /// Sets the alarm to the earliest moment something is due: the pending
    /// write's slot, a watchdog over a write in flight, staged bodies to
    /// delete, stats to push, rows to prune. Clears it when nothing is.
    ///
    /// # Errors
    /// Storage or alarm failures.
    pub async fn reschedule(&self) -> Result<(), ApiError> {
        let now = self.host.now_ms();
        let meta = self.host.meta()?;
        let mut due: Option<i64> = None;
        let mut at = |t: i64| due = Some(due.map_or(t, |d: i64| d.min(t)));
        if let Some(t) = Self::pending_due(&meta, now) {
            at(t);
        }
        if meta.state.in_flight.is_some() {
            at(now + WATCHDOG_MS);
        }
        if !self.host.garbage(1)?.is_empty() {
            at(now);
        }
        if meta.stats.dirty {
            at(self.stats_due(&meta, Self::alarm_push_spacing(&meta)));
        }
        if !self.host.outbox(1)?.is_empty() {
            at(now.max(self.mem.outbox_retry_at.get()));
        }
        // Rows the store keeps past their window wake the key to prune
        // them; statuses a prune would drop from the document do not (the
        // engine hides them once expired, and waking an idle key costs an
        // alarm set, an object request and a document rewrite to save a
        // few hundred bytes): they wait for the key's next alarm.
        let prunable = self.host.oldest_prunable()?;
        let prune_from = self.mem.prune_not_before.get();
        if let Some(t) = prunable.seen {
            at((t + self.cfg.seen_ids_ttl_ms + 1000).max(prune_from));
        }
        if let Some(t) = prunable.idem {
            at((t + self.cfg.idempotency_ttl_ms + self.cfg.seen_ids_ttl_ms + 1000).max(prune_from));
        }
        match due {
            Some(t) => self.set_alarm(t.max(now)).await,
            None => self.clear_alarm().await,
        }
        .map_err(|e| ApiError::Internal(format!("alarm: {e}")))
    }

    /// Sets the alarm for `at` unless this instance knows it is set so.
    ///
    /// # Errors
    /// The runtime's; what the alarm is then is unknown.
    pub async fn set_alarm(&self, at: i64) -> Result<(), HostError> {
        let known = self.mem.alarm.get();
        if known == AlarmKnown::At(at) {
            return Ok(());
        }
        self.mem.alarm.set(AlarmKnown::Unknown);
        self.host.set_alarm(at).await?;
        self.mem.alarm.set(AlarmKnown::At(at));
        Ok(())
    }

    /// Clears the alarm unless this instance knows none is set.
    async fn clear_alarm(&self) -> Result<(), HostError> {
        if self.mem.alarm.get() == AlarmKnown::Unset {
            return Ok(());
        }
        self.mem.alarm.set(AlarmKnown::Unknown);
        self.host.delete_alarm().await?;
        self.mem.alarm.set(AlarmKnown::Unset);
        Ok(())
    }

    /// Re-arms the alarm when work is waiting and no alarm is set (or it is
    /// long overdue): a lost alarm heals on the next status poll.
    ///
    /// # Errors
    /// Storage or alarm failures.
    pub async fn ensure_alarm(&self) -> Result<(), ApiError> {
        let meta = self.host.meta()?;
        if meta.state.pending.is_none() && meta.state.in_flight.is_none() {
            return Ok(());
        }
        let alarm = self
            .host
            .get_alarm()
            .await
            .map_err(|e| ApiError::Internal(format!("alarm: {e}")))?;
        if alarm.is_none_or(|t| t < self.host.now_ms() - 5000) {
            // What this instance believed of its alarm was wrong: forget
            // it, so the alarm is set whatever it believed.
            self.mem.alarm.set(AlarmKnown::Unknown);
            self.reschedule().await?;
        }
        Ok(())
    }
}
