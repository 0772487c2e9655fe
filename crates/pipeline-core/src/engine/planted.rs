//! Known defects that the deterministic simulator must be able to find.
//!
//! A simulator that has never failed proves nothing. Each [`Bug`] puts back
//! one defect that an earlier version of the scheduler, consumer or
//! producer had; `crates/pipeline-sim` turns them on one at a time and
//! asserts that its checkers catch each within a stated number of seeds.
//!
//! The switch exists only with the cargo feature `planted-bugs`, which only
//! the simulator enables. Without it [`active`] is `false` everywhere and
//! the compiler removes the defective branches.

/// One re-introducible defect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Bug {
    /// Recovery saves the state it loaded before its R2 head: a write
    /// enqueued during the head is dropped, or a superseded one returns.
    StaleRecovery,
    /// A sync write supersedes the pending async write before its own R2
    /// write succeeds.
    SyncSupersedesEarly,
    /// `Idempotency-Key` is claimed before the queue send: a repeat can be
    /// answered with an id that is never enqueued.
    ClaimBeforeSend,
    /// The dead letter path deletes the staged body before asking the
    /// scheduler whether it holds that write.
    DeadLetterDeletesFirst,
    /// The write's start is persisted before the staged body's GET, so the
    /// real PUT-to-PUT gap can be under 1000 ms.
    StartBeforeGet,
    /// The duplicate marker of a delivered write is written apart from its
    /// body and pending state: a failure in between leaves it `scheduled`
    /// forever.
    SplitEnqueue,
    /// A duplicate delivered after its status was pruned is counted again.
    RecountAfterPrune,
    /// A write not seen before and accepted longer ago than the status
    /// retention is taken for a duplicate whose status was pruned, and
    /// dropped: a write delivered late (a backlog, a dead letter handled
    /// late) never ends.
    LateWriteTakenForDuplicate,
    /// The consumer retries an unreachable scheduler after a constant 2 s,
    /// so a short outage turns accepted writes into `failed`.
    ConstantRetryDelay,
    /// A conditional write is committed without evaluating its condition
    /// (the lost update conditional writes exist to prevent).
    ConditionIgnored,
    /// Conditional writes are coalesced like others: a newer write
    /// supersedes a held conditional one.
    ConditionFolded,
    /// The alarm removes outbox entries before the queues took them: an
    /// event whose send fails (or whose instance dies meanwhile) is lost.
    OutboxRemovedBeforeSend,
    /// A stats shard that has forgotten an idle source adds the source's
    /// whole cumulative totals instead of what is new since the base it
    /// acknowledged: the source's earlier counts are counted twice.
    ShardIgnoresBase,
    /// A scheduler takes a stats push whose answer never came as
    /// acknowledged: a push that did not land is never sent again, and its
    /// counts are missing from `/stats`.
    UnansweredPushAcked,
    /// The scheduler leaves a second slot idle after every R2 write (two
    /// seconds between writes, not one). Nothing is lost or reordered, so
    /// the fault runs' invariants all hold; a hot key's writes wait twice
    /// as long. Only the rate check (`pipeline_sim::rates`) sees it.
    SlotLeftIdle,
    /// What the instance knows of its alarm is kept when the alarm fires:
    /// a run that wants the alarm again at the time that just fired takes
    /// it for still set and leaves the key asleep.
    AlarmKnownAcrossRuns,
}

impl Bug {
    /// Every planted bug.
    pub const ALL: [Bug; 16] = [
        Bug::StaleRecovery,
        Bug::SyncSupersedesEarly,
        Bug::ClaimBeforeSend,
        Bug::DeadLetterDeletesFirst,
        Bug::StartBeforeGet,
        Bug::SplitEnqueue,
        Bug::RecountAfterPrune,
        Bug::LateWriteTakenForDuplicate,
        Bug::ConstantRetryDelay,
        Bug::ConditionIgnored,
        Bug::ConditionFolded,
        Bug::OutboxRemovedBeforeSend,
        Bug::ShardIgnoresBase,
        Bug::UnansweredPushAcked,
        Bug::SlotLeftIdle,
        Bug::AlarmKnownAcrossRuns,
    ];
}

#[cfg(feature = "planted-bugs")]
thread_local! {
    static ACTIVE: std::cell::Cell<Option<Bug>> = const { std::cell::Cell::new(None) };
}

/// Whether `bug` is planted in this thread's run.
#[inline]
pub fn active(bug: Bug) -> bool {
    #[cfg(feature = "planted-bugs")]
    {
        ACTIVE.with(|a| a.get() == Some(bug))
    }
    #[cfg(not(feature = "planted-bugs"))]
    {
        let _ = bug;
        false
    }
}

/// Plants `bug` (or none) for the runs on this thread.
#[cfg(feature = "planted-bugs")]
pub fn plant(bug: Option<Bug>) {
    ACTIVE.with(|a| a.set(bug));
}
