//! The models the engine runs against: each key's Durable Object storage
//! (in memory, atomic `apply`), R2, the queue, the stats shard, and the
//! ledger of what clients were promised, which the checkers read.

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use pipeline_core::engine::{
    IdemRecord, Memory, Meta, Op, OutboxEntry, Prunable, Store, StoreError, UploadRecord,
};
use pipeline_core::id::WriteOp;
use pipeline_core::message::WriteMessage;
use pipeline_core::schedule::WriteRef;
use pipeline_core::stats::shard::MemoryShard;
use pipeline_core::status::UploadState;

/// When a terminal row is pruned: a superseded one by its acceptance, the
/// others by their last change.
fn prune_time(r: &UploadRecord) -> i64 {
    if r.state == UploadState::Superseded {
        r.accepted_ms
    } else {
        r.updated_ms
    }
}

/// One Durable Object's persisted storage.
#[derive(Debug, Default, Clone)]
pub struct MemStore {
    pub meta: Meta,
    pub uploads: BTreeMap<String, UploadRecord>,
    /// The terminal rows of `uploads` by prune time: what the object's
    /// index on terminal rows gives its store (and keeps a run with
    /// hundreds of thousands of rows from scanning them all at every step).
    prunable: BTreeSet<(i64, String)>,
    /// Ids whose statuses expired and were pruned, by acceptance time:
    /// remembered as seen until `forget_before` passes it (the Durable
    /// Object keeps a fingerprint, or the row itself; either answers the
    /// engine the same).
    pub forgotten: BTreeSet<(i64, String)>,
    pub bodies: BTreeMap<String, WriteMessage>,
    pub garbage: BTreeSet<String>,
    pub idem: BTreeMap<String, IdemRecord>,
    /// Events owed to the queues, in the order recorded.
    pub outbox: Vec<OutboxEntry>,
}

impl MemStore {
    /// Applies `ops` in order (the caller made the all-or-none choice).
    pub fn apply(&mut self, ops: Vec<Op>) {
        for op in ops {
            match op {
                Op::PutMeta(m) => self.meta = *m,
                Op::PutUpload(r) => {
                    if let Some(old) = self.uploads.get(&r.id) {
                        if old.state.is_terminal() {
                            self.prunable.remove(&(prune_time(old), old.id.clone()));
                        }
                    }
                    if r.state.is_terminal() {
                        self.prunable.insert((prune_time(&r), r.id.clone()));
                    }
                    self.uploads.insert(r.id.clone(), r);
                }
                Op::PutBody(m) => {
                    self.bodies.insert(m.id.clone(), m);
                }
                Op::DeleteBody(id) => {
                    self.bodies.remove(&id);
                }
                Op::AddGarbage(k) => {
                    self.garbage.insert(k);
                }
                Op::RemoveGarbage(k) => {
                    self.garbage.remove(&k);
                }
                Op::PutIdem(r) => {
                    self.idem.insert(r.idem_key.clone(), r);
                }
                Op::PutOutbox(e) => {
                    if !self.outbox.iter().any(|x| x.msg_id == e.msg_id) {
                        self.outbox.push(e);
                    }
                }
                Op::RemoveOutbox(id) => self.outbox.retain(|x| x.msg_id != id),
                Op::Prune {
                    uploads_before,
                    forget_before,
                    idem_before,
                } => {
                    // As the Durable Object's store does: superseded rows
                    // are kept by acceptance time, the others by last change.
                    let kept = self.prunable.split_off(&(uploads_before, String::new()));
                    for (_, id) in std::mem::replace(&mut self.prunable, kept) {
                        if let Some(r) = self.uploads.remove(&id) {
                            self.forgotten.insert((r.accepted_ms, id));
                        }
                    }
                    self.forgotten = self.forgotten.split_off(&(forget_before, String::new()));
                    self.idem.retain(|_, r| r.created_ms >= idem_before);
                }
            }
        }
    }
}

/// A Durable Object's storage cell.
#[derive(Debug, Default)]
pub struct ObjStore(pub std::cell::RefCell<MemStore>);

impl ObjStore {
    pub fn borrow(&self) -> std::cell::Ref<'_, MemStore> {
        self.0.borrow()
    }
    pub fn borrow_mut(&self) -> std::cell::RefMut<'_, MemStore> {
        self.0.borrow_mut()
    }
}

impl Store for ObjStore {
    fn meta(&self) -> Result<Meta, StoreError> {
        Ok(self.borrow().meta.clone())
    }
    fn upload(&self, id: &str, _accepted_ms: i64) -> Result<Option<UploadRecord>, StoreError> {
        Ok(self.borrow().uploads.get(id).cloned())
    }
    fn body(&self, id: &str) -> Result<Option<WriteMessage>, StoreError> {
        Ok(self.borrow().bodies.get(id).cloned())
    }
    fn idempotency(&self, k: &str) -> Result<Option<IdemRecord>, StoreError> {
        Ok(self.borrow().idem.get(k).cloned())
    }
    fn garbage(&self, limit: usize) -> Result<Vec<String>, StoreError> {
        Ok(self.borrow().garbage.iter().take(limit).cloned().collect())
    }
    fn outbox(&self, limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        Ok(self.borrow().outbox.iter().take(limit).cloned().collect())
    }
    fn forgotten(&self, id: &str, accepted_ms: i64) -> Result<bool, StoreError> {
        Ok(self
            .borrow()
            .forgotten
            .contains(&(accepted_ms, id.to_string())))
    }
    fn oldest_prunable(&self) -> Result<Prunable, StoreError> {
        let s = self.borrow();
        Ok(Prunable {
            seen: s.forgotten.first().map(|(t, _)| *t),
            idem: s.idem.values().map(|r| r.created_ms).min(),
        })
    }
    fn apply(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        self.borrow_mut().apply(ops);
        Ok(())
    }
}

/// A key's Durable Object: storage that survives, memory that does not,
/// and its one alarm.
pub struct Object {
    pub key: String,
    pub store: ObjStore,
    pub mem: Rc<Memory>,
    /// The alarm time, persisted (it survives a crash).
    pub alarm: Option<i64>,
    /// Bumped whenever the alarm is set or cleared, so stale firings are
    /// recognised.
    pub alarm_gen: u64,
    pub alarm_running: Option<u64>,
    /// Calls to the object fail until then (eviction storm, overload).
    pub outage_until: i64,
    pub restarts: u64,
}

/// A stored R2 object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct R2Object {
    pub upload_id: String,
    pub body_hash: u64,
    pub etag: String,
}

/// R2: user objects, staged bodies, and the start of each key's last write.
#[derive(Debug, Default)]
pub struct R2 {
    pub objects: BTreeMap<String, R2Object>,
    /// Staged bodies: hash and upload time.
    pub staged: BTreeMap<String, (u64, i64)>,
    pub last_start: BTreeMap<String, i64>,
    /// Start of every write (put or delete) to each key, in order.
    pub write_starts: BTreeMap<String, Vec<i64>>,
    pub writes: u64,
    pub etags: u64,
}

/// A queue message.
#[derive(Debug, Clone)]
pub struct QMsg {
    pub seq: u64,
    pub body: String,
    pub visible_at: i64,
    pub attempts: u32,
    pub sent_at: i64,
    pub in_flight: bool,
    /// Retries caused by an unreachable scheduler.
    pub outage_retries: u32,
}

/// One accepted write, as the pipeline owes it.
#[derive(Debug, Clone)]
pub struct Owed {
    pub key: String,
    pub at: WriteRef,
    pub op: WriteOp,
    pub sync: bool,
    pub body_hash: u64,
}

/// What the clients were told and what the pipeline did: the checkers'
/// ground truth.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Every write a client made: the truth about its key, order and bytes.
    pub writes: BTreeMap<String, Owed>,
    /// Ids that must reach exactly one terminal state.
    pub owed: BTreeSet<String>,
    /// Terminal states seen, with who superseded and the error code.
    pub ended: BTreeMap<String, (UploadState, Option<String>, Option<String>)>,
    /// Ids whose message the queue took.
    pub sent: BTreeSet<String>,
    /// `(key, idempotency key)` → ids a `202` named.
    pub idem_answers: BTreeMap<(String, String), BTreeSet<String>>,
    /// Writes the producer counted in `/stats accepted`.
    pub producer_accepted: i64,
    /// The newest write each key's R2 object reflects.
    pub last_applied: BTreeMap<String, WriteRef>,
    /// The stats shard (one stands for all: the sum is the same).
    pub shard: MemoryShard,
    /// The condition of each conditional write.
    pub conditions: BTreeMap<String, pipeline_core::write_condition::WriteCondition>,
    /// Read-modify-write increments that committed.
    pub increments: u64,
    /// Ids whose write carried a callback URL.
    pub callbacks: BTreeSet<String>,
    /// Events the webhook queue took: `(upload id, event type)`.
    pub webhooks: BTreeSet<(String, String)>,
    /// Events the commit-event queue took: `(upload id, event type)`.
    pub events: BTreeSet<(String, String)>,
    /// When each id reached its terminal state.
    pub ended_ms: BTreeMap<String, i64>,
    /// Time of every call into a scheduler object: `(object, ms)`.
    pub object_calls: Vec<(usize, i64)>,
    /// When each stats push reached the shard.
    pub stats_pushes: Vec<i64>,
    /// Sends to the webhook and event queues (each may repeat).
    pub notified: u64,
    /// Messages dead-lettered because their scheduler was unreachable.
    pub outage_dead_letters: u64,
    pub faults: Faults,
}

/// Counts of what was injected, for the report.
#[derive(Debug, Default, Clone, Copy)]
pub struct Faults {
    pub crashes: u64,
    pub r2_transient: u64,
    pub r2_permanent: u64,
    pub queue_send_failures: u64,
    pub duplicates: u64,
    /// Messages held back past the status retention.
    pub backlogged: u64,
    pub outages: u64,
    pub store_failures: u64,
    pub late_alarms: u64,
    pub double_alarms: u64,
    pub dead_letters: u64,
    pub notify_failures: u64,
    /// Stats pushes that landed with their answer lost.
    pub push_acks_lost: u64,
    /// Idle sources the stats shard compacted (not a fault: the path it
    /// exercises).
    pub sources_compacted: u64,
}
