//! The simulated world: one clock, one seeded RNG, one ordered list of
//! pending happenings. Nothing reads the wall clock or spawns a thread, so
//! a seed replays exactly.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;

use pipeline_core::engine::planted::{active, Bug};
use pipeline_core::engine::{
    BlobError, EngineConfig, Memory, Op, Scheduler, StoreError, StoredHead,
};
use pipeline_core::schedule::WRITE_SPACING_MS;
use pipeline_core::stats::{Push, SourcePush};
use pipeline_core::status::UploadState;

use crate::config::SimConfig;
use crate::exec::{poll_once, BoxTask, Slot};
use crate::host::{BodySource, SimHost};
use crate::model::{Ledger, MemStore, Object, QMsg, R2Object, R2};
use crate::rng::Rng;

/// An I/O a task waits for.
#[derive(Debug, Clone)]
pub enum Io {
    Head {
        key: String,
    },
    OpenStaged {
        key: String,
    },
    Put {
        key: String,
        upload_id: String,
        source: BodySource,
        start_ms: i64,
    },
    /// `upload_id`: the write this delete is (filled in at submit).
    Delete {
        key: String,
        upload_id: Option<String>,
    },
    DeleteStaged {
        key: String,
    },
    /// The producer stages a large body.
    Stage {
        key: String,
        hash: u64,
    },
    Push {
        source: String,
        push: Box<SourcePush>,
    },
    Sleep {
        ms: i64,
    },
    /// The scheduler hands events to the webhook and event queues.
    Notify {
        entries: Vec<pipeline_core::engine::OutboxEntry>,
    },
}

/// What an I/O answered.
#[derive(Debug, Clone)]
pub enum IoResult {
    Head(Result<Option<StoredHead>, BlobError>),
    Open(Result<bool, BlobError>),
    Put(Result<String, BlobError>),
    Unit(Result<(), BlobError>),
}

/// Something that happens at a simulated time.
pub enum Event {
    Poll(u64),
    IoDone {
        task: Option<u64>,
        io: Io,
        slot: Slot<IoResult>,
        rejected: bool,
    },
    Alarm {
        obj: usize,
        gen: u64,
    },
    Client(usize),
    Consumer,
    DeadLetters,
    Crash,
    Outage,
    /// The staging sweep (the Worker's scheduled handler).
    Sweep,
}

struct TaskEntry {
    owner: Option<usize>,
    fut: Option<BoxTask>,
    on_crash: Option<Box<dyn FnOnce()>>,
}

/// The whole simulated deployment.
pub struct World {
    pub cfg: SimConfig,
    pub engine: EngineConfig,
    clock: Cell<i64>,
    pub rng: RefCell<Rng>,
    events: RefCell<BTreeMap<(i64, u64), Event>>,
    seq: Cell<u64>,
    tasks: RefCell<BTreeMap<u64, TaskEntry>>,
    current: Cell<Option<u64>>,
    pub objects: RefCell<Vec<Object>>,
    pub r2: RefCell<R2>,
    pub queue: RefCell<Vec<QMsg>>,
    pub dlq: RefCell<Vec<QMsg>>,
    pub ledger: RefCell<Ledger>,
    trace: RefCell<VecDeque<String>>,
    violation: RefCell<Option<String>>,
    pub next_id: Cell<u64>,
    pub events_run: Cell<u64>,
    /// Clients and faults stop after this time; then the pipeline drains.
    pub active_until: i64,
}

/// A stable 64-bit hash of bytes (FNV-1a): what "the same bytes" means.
pub fn hash_bytes(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, x| {
        (h ^ u64::from(*x)).wrapping_mul(0x1000_0000_01b3)
    })
}

pub const START_MS: i64 = 1_700_000_000_000;

impl World {
    pub fn new(cfg: SimConfig) -> Rc<Self> {
        let objects = (0..cfg.keys)
            .map(|i| Object {
                key: format!("k{i}/obj"),
                store: crate::model::ObjStore(RefCell::new(MemStore::default())),
                mem: Rc::new(Memory::default()),
                alarm: None,
                alarm_gen: 0,
                alarm_running: None,
                outage_until: 0,
                restarts: 0,
            })
            .collect();
        let engine = EngineConfig {
            status_ttl_ms: cfg.status_ttl_ms,
            seen_ids_ttl_ms: cfg.seen_ids_ttl_ms,
            max_commit_attempts: pipeline_core::config::MAX_COMMIT_ATTEMPTS,
            idempotency_ttl_ms: cfg.status_ttl_ms,
            events: cfg.events,
        };
        Rc::new(Self {
            active_until: START_MS + cfg.run_ms + cfg.lull.map_or(0, |(_, len)| len),
            rng: RefCell::new(Rng::new(cfg.seed)),
            cfg,
            engine,
            clock: Cell::new(START_MS),
            events: RefCell::new(BTreeMap::new()),
            seq: Cell::new(0),
            tasks: RefCell::new(BTreeMap::new()),
            current: Cell::new(None),
            objects: RefCell::new(objects),
            r2: RefCell::new(R2::default()),
            queue: RefCell::new(Vec::new()),
            dlq: RefCell::new(Vec::new()),
            ledger: RefCell::new(Ledger::default()),
            trace: RefCell::new(VecDeque::new()),
            violation: RefCell::new(None),
            next_id: Cell::new(0),
            events_run: Cell::new(0),
        })
    }

    pub fn now(&self) -> i64 {
        self.clock.get()
    }

    pub fn is_active(&self) -> bool {
        self.now() < self.active_until
    }

    pub fn chance(&self, p: f64) -> bool {
        self.rng.borrow_mut().chance(p)
    }

    pub fn range(&self, lo: i64, hi: i64) -> i64 {
        self.rng.borrow_mut().range(lo, hi)
    }

    /// Records a line of the trace printed with a violation.
    pub fn trace(&self, line: impl Into<String>) {
        let mut t = self.trace.borrow_mut();
        if t.len() >= self.cfg.trace_lines {
            t.pop_front();
        }
        t.push_back(format!("{:>9} {}", self.now() - START_MS, line.into()));
    }

    pub fn trace_lines(&self) -> Vec<String> {
        self.trace.borrow().iter().cloned().collect()
    }

    /// Records the first violation; the run stops at the end of the event.
    pub fn violate(&self, what: impl Into<String>) {
        let what = what.into();
        self.trace(format!("VIOLATION: {what}"));
        let mut v = self.violation.borrow_mut();
        if v.is_none() {
            *v = Some(what);
        }
    }

    pub fn violation(&self) -> Option<String> {
        self.violation.borrow().clone()
    }

    pub fn schedule(&self, at: i64, ev: Event) {
        let s = self.seq.get() + 1;
        self.seq.set(s);
        self.events.borrow_mut().insert((at.max(self.now()), s), ev);
    }

    pub fn pending_events(&self) -> usize {
        self.events.borrow().len()
    }

    // --- Tasks -------------------------------------------------------------

    /// Starts a task at `at`, owned by an object (dropped when it crashes)
    /// or by no one (a Worker invocation).
    pub fn spawn(
        &self,
        owner: Option<usize>,
        at: i64,
        fut: BoxTask,
        on_crash: Option<Box<dyn FnOnce()>>,
    ) -> u64 {
        let id = self.seq.get() + 1;
        self.seq.set(id);
        self.tasks.borrow_mut().insert(
            id,
            TaskEntry {
                owner,
                fut: Some(fut),
                on_crash,
            },
        );
        self.schedule(at, Event::Poll(id));
        id
    }

    pub fn current_task(&self) -> Option<u64> {
        self.current.get()
    }

    pub fn wake(&self, task: Option<u64>) {
        if let Some(t) = task {
            self.schedule(self.now(), Event::Poll(t));
        }
    }

    fn poll_task(&self, id: u64) {
        let fut = match self.tasks.borrow_mut().get_mut(&id) {
            Some(e) => e.fut.take(),
            None => return,
        };
        let Some(mut fut) = fut else { return };
        let prev = self.current.replace(Some(id));
        let done = poll_once(&mut fut);
        self.current.set(prev);
        let mut tasks = self.tasks.borrow_mut();
        if done {
            tasks.remove(&id);
        } else if let Some(e) = tasks.get_mut(&id) {
            e.fut = Some(fut);
        }
    }

    /// Calls an object: `f` runs as a task of that object after a small
    /// delivery latency; the caller's slot gets its result, or `Err` when
    /// the object is unreachable or crashes before answering.
    pub fn call_object<R: 'static>(
        self: &Rc<Self>,
        obj: usize,
        f: impl FnOnce(Rc<World>, usize) -> std::pin::Pin<Box<dyn std::future::Future<Output = R>>>
            + 'static,
    ) -> Slot<Result<R, String>> {
        let slot: Slot<Result<R, String>> = Slot::default();
        let caller = self.current_task();
        self.ledger
            .borrow_mut()
            .object_calls
            .push((obj, self.now()));
        let latency = self.range(1, 5);
        if self.objects.borrow()[obj].outage_until > self.now() {
            slot.fill(Err("object unreachable".into()));
            self.schedule(self.now() + latency, Event::Poll(caller.unwrap_or(0)));
            return slot;
        }
        let world = self.clone();
        let done = slot.clone();
        let fut = f(world.clone(), obj);
        let task = Box::pin(async move {
            let r = fut.await;
            done.fill(Ok(r));
            world.wake(caller);
        });
        let crashed = slot.clone();
        let w2 = self.clone();
        self.spawn(
            Some(obj),
            self.now() + latency,
            task,
            Some(Box::new(move || {
                crashed.fill(Err("object crashed".into()));
                w2.wake(caller);
            })),
        );
        slot
    }

    /// The engine of `obj`, for a task of that object.
    pub fn scheduler_parts(self: &Rc<Self>, obj: usize) -> (SimHost, Rc<Memory>, EngineConfig) {
        let mem = self.objects.borrow()[obj].mem.clone();
        (
            SimHost {
                world: self.clone(),
                obj,
            },
            mem,
            self.engine,
        )
    }

    // --- Storage -----------------------------------------------------------

    /// One atomic apply of a Durable Object's storage, with injected
    /// failures (nothing applied) and the terminal-state checks.
    pub fn apply_store(&self, obj: usize, ops: Vec<Op>) -> Result<(), StoreError> {
        if self.is_active() && self.chance(self.cfg.p_store_fail) {
            self.ledger.borrow_mut().faults.store_failures += 1;
            self.trace(format!("obj{obj} store apply fails (injected)"));
            return Err(StoreError("injected storage failure".into()));
        }
        let objects = self.objects.borrow();
        let store = &objects[obj].store;
        for op in &ops {
            if let Op::PutUpload(r) = op {
                let before = store.borrow().uploads.get(&r.id).map(|x| x.state);
                self.saw_row(obj, r, before);
            }
        }
        store.borrow_mut().apply(ops);
        Ok(())
    }

    fn saw_row(
        &self,
        obj: usize,
        r: &pipeline_core::engine::UploadRecord,
        before: Option<UploadState>,
    ) {
        let mut l = self.ledger.borrow_mut();
        l.owed.insert(r.id.clone());
        l.writes
            .entry(r.id.clone())
            .or_insert_with(|| crate::model::Owed {
                key: self.objects.borrow()[obj].key.clone(),
                at: pipeline_core::schedule::WriteRef::new(r.accepted_ms, r.id.clone()),
                op: r.op,
                sync: r.via == pipeline_core::engine::Via::Sync,
                body_hash: 0,
            });
        if let Some(b) = before {
            if b.is_terminal() && b != r.state {
                drop(l);
                self.violate(format!(
                    "{} changed from terminal {} to {}",
                    r.id,
                    b.as_str(),
                    r.state.as_str()
                ));
                return;
            }
            if b.is_terminal() {
                return;
            }
        }
        if r.state == UploadState::Superseded && l.conditions.contains_key(&r.id) {
            drop(l);
            self.violate(format!(
                "conditional write {} was superseded (folded into another)",
                r.id
            ));
            return;
        }
        if r.state.is_terminal() {
            if let Some(prev) = l.ended.get(&r.id) {
                let prev = prev.0;
                drop(l);
                self.violate(format!(
                    "{} ended twice ({} then {})",
                    r.id,
                    prev.as_str(),
                    r.state.as_str()
                ));
                return;
            }
            l.ended.insert(
                r.id.clone(),
                (r.state, r.superseded_by.clone(), r.error_code.clone()),
            );
            l.ended_ms.insert(r.id.clone(), self.now());
            drop(l);
            self.trace(format!(
                "{} ends {}{}",
                r.id,
                r.state.as_str(),
                r.superseded_by
                    .as_deref()
                    .map(|b| format!(" by {b}"))
                    .unwrap_or_default()
            ));
        }
    }

    // --- Alarms ------------------------------------------------------------

    pub fn set_alarm(&self, obj: usize, at: Option<i64>) {
        let mut objects = self.objects.borrow_mut();
        let o = &mut objects[obj];
        o.alarm = at;
        o.alarm_gen += 1;
        let gen = o.alarm_gen;
        drop(objects);
        if let Some(t) = at {
            let late = if self.is_active() && self.chance(self.cfg.p_late_alarm) {
                self.ledger.borrow_mut().faults.late_alarms += 1;
                self.range(100, 3000)
            } else {
                self.range(0, 2)
            };
            self.schedule(t + late, Event::Alarm { obj, gen });
        }
    }

    fn fire_alarm(self: &Rc<Self>, obj: usize, gen: u64, duplicate: bool) {
        {
            let mut objects = self.objects.borrow_mut();
            let o = &mut objects[obj];
            if !duplicate && (o.alarm_gen != gen || o.alarm.is_none()) {
                return;
            }
            if o.alarm_running.is_some() {
                drop(objects);
                self.schedule(self.now() + 50, Event::Alarm { obj, gen });
                return;
            }
            if !duplicate {
                o.alarm = None;
            }
        }
        self.trace(format!(
            "obj{obj} alarm{}",
            if duplicate { " (again)" } else { "" }
        ));
        let world = self.clone();
        let task = Box::pin(async move {
            let (host, mem, cfg) = world.scheduler_parts(obj);
            let result = Scheduler::new(&host, &mem, cfg).alarm().await;
            if let Err(e) = result {
                world.trace(format!("obj{obj} alarm error: {e}"));
                // As the shell does: set past the engine, which forgets
                // what it knew of the alarm.
                mem.alarm.set(pipeline_core::engine::AlarmKnown::Unknown);
                world.set_alarm(obj, Some(world.now() + 1000));
            }
            world.objects.borrow_mut()[obj].alarm_running = None;
            if world.is_active() && world.chance(world.cfg.p_double_alarm) {
                world.ledger.borrow_mut().faults.double_alarms += 1;
                let at = world.now() + world.range(0, 500);
                world.schedule(at, Event::Alarm { obj, gen: u64::MAX });
            }
        });
        let w2 = self.clone();
        let id = self.spawn(
            Some(obj),
            self.now(),
            task,
            Some(Box::new(move || {
                // The runtime retries an alarm whose handler did not finish.
                let retry = w2.now() + 2000;
                let has = w2.objects.borrow()[obj].alarm.is_some();
                if !has {
                    w2.set_alarm(obj, Some(retry));
                }
            })),
        );
        self.objects.borrow_mut()[obj].alarm_running = Some(id);
    }

    // --- I/O ---------------------------------------------------------------

    /// Registers an I/O of the current task; the world completes it later.
    pub fn submit(&self, _obj: Option<usize>, io: Io, slot: Slot<IoResult>) {
        let task = self.current_task();
        let now = self.now();
        let lat = |w: &World| {
            if w.chance(0.05) {
                w.range(300, 1500)
            } else {
                w.range(w.cfg.r2_latency_ms.0, w.cfg.r2_latency_ms.1)
            }
        };
        let mut rejected = false;
        let at = match &io {
            Io::Sleep { ms } => now + ms,
            Io::Push { .. } | Io::Notify { .. } => now + self.range(1, 10),
            Io::Put { key, .. } | Io::Delete { key, .. } => {
                // R2's real limit: a write to a key starting less than a
                // second after the previous one answers 429.
                let mut r2 = self.r2.borrow_mut();
                let last = r2.last_start.get(key).copied();
                if let Some(l) = last {
                    if now - l < WRITE_SPACING_MS {
                        rejected = true;
                    }
                }
                r2.last_start.insert(key.clone(), now);
                r2.write_starts.entry(key.clone()).or_default().push(now);
                drop(r2);
                if rejected {
                    self.violate(format!(
                        "R2 answered 429: writes to {key} started {} ms apart",
                        now - last.unwrap_or(now)
                    ));
                }
                self.trace(format!(
                    "r2 {} {key} starts",
                    if matches!(io, Io::Put { .. }) {
                        "put"
                    } else {
                        "delete"
                    }
                ));
                now + lat(self)
            }
            Io::DeleteStaged { key } => {
                self.check_staged_delete(key);
                now + lat(self)
            }
            _ => now + lat(self),
        };
        let io = match io {
            Io::Delete { key, .. } => {
                // The delete is the object's write in flight.
                let obj = self.objects.borrow().iter().position(|o| o.key == key);
                let upload_id = obj.and_then(|i| {
                    self.objects.borrow()[i]
                        .store
                        .borrow()
                        .meta
                        .state
                        .in_flight
                        .clone()
                        .map(|w| w.id)
                });
                Io::Delete { key, upload_id }
            }
            other => other,
        };
        self.schedule(
            at,
            Event::IoDone {
                task,
                io,
                slot,
                rejected,
            },
        );
    }

    /// A staged body may only be deleted once no held write refers to it.
    fn check_staged_delete(&self, key: &str) {
        for (i, o) in self.objects.borrow().iter().enumerate() {
            let s = o.store.borrow();
            if let Some(m) = s.bodies.values().find(|m| m.staged_key() == Some(key)) {
                let held = [&s.meta.state.pending, &s.meta.state.in_flight]
                    .into_iter()
                    .flatten()
                    .any(|w| w.id == m.id);
                if held {
                    let id = m.id.clone();
                    drop(s);
                    self.violate(format!(
                        "staged body of {id} (held by obj{i}) deleted before its copy"
                    ));
                    return;
                }
            }
        }
    }

    fn r2_fault(&self) -> Option<BlobError> {
        if !self.is_active() {
            return None;
        }
        if self.chance(self.cfg.p_r2_permanent) {
            self.ledger.borrow_mut().faults.r2_permanent += 1;
            return Some(BlobError::Permanent("injected permanent R2 error".into()));
        }
        if self.chance(self.cfg.p_r2_transient) {
            self.ledger.borrow_mut().faults.r2_transient += 1;
            return Some(BlobError::Transient("injected transient R2 error".into()));
        }
        None
    }

    fn complete_io(&self, io: Io, rejected: bool) -> IoResult {
        match io {
            Io::Sleep { .. } => IoResult::Unit(Ok(())),
            Io::Notify { entries } => {
                // The webhook queue takes entries with a callback URL, the
                // event queue all of them (when bound); a send may fail
                // after some entries were taken.
                let mut l = self.ledger.borrow_mut();
                for e in entries {
                    if self.is_active() && self.chance(self.cfg.p_notify_fail) {
                        l.faults.notify_failures += 1;
                        return IoResult::Unit(Err(BlobError::Transient(
                            "queue refused the send".into(),
                        )));
                    }
                    let kind = serde_json::from_str::<pipeline_core::webhook::Event>(&e.event)
                        .map(|ev| ev.kind)
                        .unwrap_or_default();
                    l.notified += 1;
                    if e.callback_url.is_some() {
                        l.webhooks.insert((e.upload_id.clone(), kind.clone()));
                    }
                    if self.cfg.events {
                        l.events.insert((e.upload_id.clone(), kind));
                    }
                }
                IoResult::Unit(Ok(()))
            }
            Io::Head { key } => IoResult::Head(match self.r2_fault() {
                Some(BlobError::Permanent(e)) | Some(BlobError::Transient(e)) => {
                    Err(BlobError::Transient(e))
                }
                None => Ok(self.r2.borrow().objects.get(&key).map(|o| StoredHead {
                    upload_id: Some(o.upload_id.clone()),
                    etag: o.etag.clone(),
                })),
            }),
            Io::OpenStaged { key } => IoResult::Open(match self.r2_fault() {
                Some(BlobError::Permanent(e)) | Some(BlobError::Transient(e)) => {
                    Err(BlobError::Transient(e))
                }
                None => Ok(self.r2.borrow().staged.contains_key(&key)),
            }),
            Io::Stage { key, hash } => IoResult::Unit(match self.r2_fault() {
                Some(e) => Err(e),
                None => {
                    let now = self.now();
                    self.r2.borrow_mut().staged.insert(key, (hash, now));
                    Ok(())
                }
            }),
            Io::DeleteStaged { key } => IoResult::Unit(match self.r2_fault() {
                Some(e) => Err(BlobError::Transient(e.to_string())),
                None => {
                    self.r2.borrow_mut().staged.remove(&key);
                    Ok(())
                }
            }),
            Io::Push { source, push } => {
                if self.is_active() && self.chance(self.cfg.p_push_fail) {
                    return IoResult::Unit(Err(BlobError::Transient(
                        "stats shard unreachable".into(),
                    )));
                }
                let now = self.now();
                self.trace(format!(
                    "{source} pushes v{} (committed {}, base {:?})",
                    push.version,
                    push.totals.committed,
                    push.base.map(|b| (b.version, b.totals.committed))
                ));
                let mut l = self.ledger.borrow_mut();
                l.stats_pushes.push(now);
                l.shard.push(
                    &Push {
                        source,
                        push: *push,
                    },
                    now,
                );
                let compacted = l.shard.compact(now, self.cfg.source_idle_ms);
                l.faults.sources_compacted += compacted as u64;
                // The stored shard keeps its running total in memory and
                // sums its stored figures when it starts: as if it
                // restarted after every push, which the /stats check sees.
                l.shard.running.total = l.shard.rebuilt();
                drop(l);
                if self.is_active() && self.chance(self.cfg.p_push_ack_lost) {
                    self.ledger.borrow_mut().faults.push_acks_lost += 1;
                    return IoResult::Unit(Err(BlobError::Transient(
                        "the shard's answer was lost".into(),
                    )));
                }
                IoResult::Unit(Ok(()))
            }
            Io::Put {
                key,
                upload_id,
                source,
                ..
            } => {
                if rejected {
                    return IoResult::Put(Err(BlobError::Transient("429 rate limited".into())));
                }
                if let Some(e) = self.r2_fault() {
                    return IoResult::Put(Err(e));
                }
                let hash = match source {
                    BodySource::Bytes(h) => h,
                    BodySource::Staged(k) => match self.r2.borrow().staged.get(&k) {
                        Some(h) => h.0,
                        None => {
                            return IoResult::Put(Err(BlobError::Transient(
                                "staged body stream broke".into(),
                            )))
                        }
                    },
                };
                self.applied(&key, &upload_id);
                let mut r2 = self.r2.borrow_mut();
                r2.writes += 1;
                r2.etags += 1;
                let etag = format!("\"e{}\"", r2.etags);
                r2.objects.insert(
                    key,
                    R2Object {
                        upload_id,
                        body_hash: hash,
                        etag: etag.clone(),
                    },
                );
                IoResult::Put(Ok(etag))
            }
            Io::Delete { key, upload_id } => {
                if rejected {
                    return IoResult::Unit(Err(BlobError::Transient("429 rate limited".into())));
                }
                if let Some(e) = self.r2_fault() {
                    return IoResult::Unit(Err(e));
                }
                if let Some(id) = upload_id {
                    self.applied(&key, &id);
                }
                let mut r2 = self.r2.borrow_mut();
                r2.writes += 1;
                r2.objects.remove(&key);
                IoResult::Unit(Ok(()))
            }
        }
    }

    /// A write of `id` reached R2: it must be newer than what is there,
    /// and a conditional one may only replace the object it names.
    fn applied(&self, key: &str, id: &str) {
        let condition = self.ledger.borrow().conditions.get(id).cloned();
        if let Some(c) = condition {
            let current = self.r2.borrow().objects.get(key).map(|o| o.etag.clone());
            if !c.holds(current.as_deref()) {
                self.violate(format!(
                    "lost update: conditional write {id} ({c:?}) landed over {current:?}"
                ));
                return;
            }
        }
        let at = self.ledger.borrow().writes.get(id).map(|o| o.at.clone());
        let Some(at) = at else { return };
        let mut l = self.ledger.borrow_mut();
        if let Some(prev) = l.last_applied.get(key) {
            if *prev >= at {
                let p = prev.id.clone();
                drop(l);
                self.violate(format!(
                    "regression: {id} written to {key} over the newer {p}"
                ));
                return;
            }
        }
        l.last_applied.insert(key.to_string(), at);
    }

    // --- The loop ----------------------------------------------------------

    /// Runs the next event; `false` when none is left.
    pub fn step(self: &Rc<Self>) -> bool {
        let next = self.events.borrow_mut().pop_first();
        let Some(((at, _), ev)) = next else {
            return false;
        };
        self.clock.set(at.max(self.now()));
        self.events_run.set(self.events_run.get() + 1);
        match ev {
            Event::Poll(t) => self.poll_task(t),
            Event::IoDone {
                task,
                io,
                slot,
                rejected,
            } => {
                let r = self.complete_io(io, rejected);
                slot.fill(r);
                if let Some(t) = task {
                    self.poll_task(t);
                }
            }
            Event::Alarm { obj, gen } => self.fire_alarm(obj, gen, gen == u64::MAX),
            Event::Client(c) => crate::actors::client_act(self, c),
            Event::Consumer => crate::actors::consumer_run(self),
            Event::DeadLetters => crate::actors::dead_letter_run(self),
            Event::Crash => self.crash(),
            Event::Outage => self.outage(),
            Event::Sweep => self.sweep(),
        }
        true
    }

    fn crash(self: &Rc<Self>) {
        if !self.is_active() {
            return;
        }
        let obj = self.rng.borrow_mut().below(self.cfg.keys);
        self.ledger.borrow_mut().faults.crashes += 1;
        self.trace(format!("obj{obj} CRASH"));
        let dropped: Vec<u64> = self
            .tasks
            .borrow()
            .iter()
            .filter(|(_, t)| t.owner == Some(obj))
            .map(|(id, _)| *id)
            .collect();
        {
            let mut objects = self.objects.borrow_mut();
            objects[obj].mem = Rc::new(Memory::default());
            objects[obj].alarm_running = None;
            objects[obj].restarts += 1;
        }
        for id in dropped {
            let entry = self.tasks.borrow_mut().remove(&id);
            if let Some(mut e) = entry {
                drop(e.fut.take());
                if let Some(f) = e.on_crash.take() {
                    f();
                }
            }
        }
        let next =
            self.now() + self.range(self.cfg.crash_every_ms / 2, self.cfg.crash_every_ms * 3 / 2);
        self.schedule(next, Event::Crash);
    }

    /// Deletes staged bodies older than the seen-id window (no message
    /// can name them any more), as the Worker's scheduled sweep does.
    fn sweep(self: &Rc<Self>) {
        let now = self.now();
        let ttl = self.cfg.seen_ids_ttl_ms;
        let old: Vec<String> = self
            .r2
            .borrow()
            .staged
            .iter()
            .filter(|(_, v)| pipeline_core::message::staged_orphan(v.1, now, ttl))
            .map(|(k, _)| k.clone())
            .collect();
        for k in old {
            self.trace(format!("sweep deletes {k}"));
            self.check_staged_delete(&k);
            self.r2.borrow_mut().staged.remove(&k);
        }
        if self.is_active() || !self.r2.borrow().staged.is_empty() {
            self.schedule(now + ttl / 2, Event::Sweep);
        }
    }

    /// The end of the clients' quiet spell, while it lasts.
    pub fn lull_until(&self) -> Option<i64> {
        let (start, len) = self.cfg.lull?;
        let (from, to) = (START_MS + start, START_MS + start + len);
        (from..to).contains(&self.now()).then_some(to)
    }

    fn outage(self: &Rc<Self>) {
        if !self.is_active() {
            return;
        }
        // No outages start in a quiet spell: back to back they would add
        // up to more than the consumer is meant to ride out.
        if let Some(to) = self.lull_until() {
            self.schedule(to, Event::Outage);
            return;
        }
        let obj = self.rng.borrow_mut().below(self.cfg.keys);
        let len = self.range(1000, self.cfg.max_outage_ms);
        self.ledger.borrow_mut().faults.outages += 1;
        self.trace(format!("obj{obj} unreachable for {len} ms"));
        self.objects.borrow_mut()[obj].outage_until = self.now() + len;
        let next = self.now()
            + len
            + self.range(
                self.cfg.outage_every_ms / 2,
                self.cfg.outage_every_ms * 3 / 2,
            );
        self.schedule(next, Event::Outage);
    }

    /// Whether a planted bug is active (for the actors).
    pub fn planted(&self, bug: Bug) -> bool {
        active(bug)
    }
}
