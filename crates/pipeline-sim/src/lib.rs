//! Deterministic simulation of the write pipeline.
//!
//! The real scheduler engine (`pipeline_core::engine`), the real producer
//! enqueue and the real consumer and dead-letter decisions run against
//! models of the queue (at-least-once, any order, duplicates, redelivery
//! with the consumer's backoff, dead-lettering), Durable Objects (one event
//! at a time; other events interleave at each await on I/O; a crash at any
//! await drops memory and keeps storage; alarms at least once, late or
//! twice), R2 (latency, transient and permanent failures, and R2's real
//! limit: a write starting less than 1000 ms after the previous one to the
//! key answers 429) and clients, under one simulated clock. One seed is one
//! reproducible run; a violation prints the seed and the events before it.
//!
//! Checked after every event: no id ends twice or leaves a terminal state;
//! a conditional write only lands over the object its condition names (no
//! lost update) and is never superseded;
//! R2 never answers 429 (writes to a key start ≥ 1000 ms apart); nothing
//! older is written over something newer; no staged body is deleted while
//! a held write needs it; no message is dead-lettered by an outage shorter
//! than the consumer's stated tolerance; a status answer agrees with how
//! the write ended. Checked once drained, before anything wakes the keys
//! again (a key asleep with work left is a violation a later wake must
//! not hide): no key holds a write pending or in flight; every accepted
//! id ended; each key's object is its newest committed write; every
//! superseded write was superseded by a newer one that was admitted and
//! ended, never by a sync write that failed; no staged body, garbage or
//! held body is left; every write with a callback that ended had its
//! event (of its terminal state) taken by the webhook queue at least once,
//! and with commit events on every ended write had one in the event queue,
//! no event names another state, and no outbox entry is left;
//! `/stats` equals the terminal counts; every id an
//! idempotent repeat was answered with was enqueued, one per key. Then
//! each key is woken once after the status window (an idle key is not
//! woken only to prune expired statuses) and all of it is checked again,
//! with no status row or idempotency claim left either (storage is
//! bounded by the retention window).

pub mod actors;
pub mod config;
pub mod exec;
pub mod host;
pub mod model;
pub mod rates;
pub mod rng;
pub mod world;

use std::collections::BTreeMap;
use std::rc::Rc;

use pipeline_core::id::WriteOp;
use pipeline_core::status::UploadState;

pub use config::SimConfig;
pub use pipeline_core::engine::planted::{plant, Bug};
pub use world::World;
use world::{Event, START_MS};

/// What one run did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub seed: u64,
    pub events: u64,
    pub simulated_ms: i64,
    pub writes: usize,
    pub committed: usize,
    pub superseded: usize,
    pub failed: usize,
    pub r2_writes: u64,
    /// Distinct webhook events the webhook queue took.
    pub webhooks: usize,
    /// Distinct commit events the event queue took.
    pub events_sent: usize,
    pub faults: model::Faults,
}

/// A failed run: the seed, what broke, and the events that led to it.
#[derive(Debug, Clone)]
pub struct Failure {
    pub seed: u64,
    pub violation: String,
    pub trace: Vec<String>,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "seed {} violates: {}", self.seed, self.violation)?;
        writeln!(
            f,
            "replay: SIM_SEED={} cargo run -p pipeline-sim --release",
            self.seed
        )?;
        writeln!(f, "last events (ms since start):")?;
        for l in &self.trace {
            writeln!(f, "  {l}")?;
        }
        Ok(())
    }
}

/// How long after the clients stop a run may take to drain.
const DRAIN_LIMIT_MS: i64 = 6 * 3600 * 1000;

/// Runs seed `seed` to quiescence and checks it.
///
/// # Errors
/// The first [`Failure`] found.
pub fn run(seed: u64) -> Result<Report, Failure> {
    run_with(SimConfig::from_seed(seed))
}

/// Runs `cfg` to quiescence and checks it.
///
/// # Errors
/// The first [`Failure`] found.
pub fn run_with(cfg: SimConfig) -> Result<Report, Failure> {
    run_world(cfg).map(|(report, _)| report)
}

/// Runs `cfg` to quiescence and checks it; the report and the drained
/// world (for figures beyond the report, as [`rates`] reads).
///
/// # Errors
/// The first [`Failure`] found.
pub fn run_world(cfg: SimConfig) -> Result<(Report, Rc<World>), Failure> {
    let seed = cfg.seed;
    let world = World::new(cfg);
    for c in 0..world.cfg.clients {
        let at = START_MS + world.range(0, 200);
        world.schedule(at, Event::Client(c));
    }
    world.schedule(START_MS + world.cfg.crash_every_ms, Event::Crash);
    world.schedule(START_MS + world.cfg.outage_every_ms, Event::Outage);
    world.schedule(START_MS + world.cfg.status_ttl_ms / 2, Event::Sweep);
    let fail = |w: &World, v: String| Failure {
        seed,
        violation: v,
        trace: w.trace_lines(),
    };
    while world.step() {
        if let Some(v) = world.violation() {
            return Err(fail(&world, v));
        }
        if world.now() > world.active_until + DRAIN_LIMIT_MS {
            return Err(fail(
                &world,
                format!(
                    "not drained {} h after the clients stopped",
                    DRAIN_LIMIT_MS / 3_600_000
                ),
            ));
        }
    }
    if let Some(v) = check_drained(&world, false) {
        world.trace("drained; final checks");
        return Err(fail(&world, v));
    }
    // A key does not wake only to drop expired statuses: they wait in its
    // storage, hidden, for its next alarm. Each key is woken once after
    // every status expired, as its next write would, and must drop them.
    let wake = world.now()
        + world.cfg.status_ttl_ms
        + pipeline_core::engine::prune_spacing(world.cfg.status_ttl_ms);
    let keys = world.objects.borrow().len();
    for obj in 0..keys {
        world.set_alarm(obj, Some(wake));
    }
    while world.step() {
        if let Some(v) = world.violation() {
            return Err(fail(&world, v));
        }
    }
    if let Some(v) = check_drained(&world, true) {
        world.trace("woken after the windows; final checks");
        return Err(fail(&world, v));
    }
    let l = world.ledger.borrow();
    let count = |s: UploadState| l.ended.values().filter(|e| e.0 == s).count();
    let r2_writes = world.r2.borrow().writes;
    let report = Report {
        seed,
        events: world.events_run.get(),
        simulated_ms: world.now() - START_MS,
        writes: l.ended.len(),
        committed: count(UploadState::Committed),
        superseded: count(UploadState::Superseded),
        failed: count(UploadState::Failed),
        r2_writes,
        webhooks: l.webhooks.len(),
        events_sent: l.events.len(),
        faults: l.faults,
    };
    drop(l);
    Ok((report, world))
}

/// Once nothing is left to happen: no message waits, no key holds a
/// write pending or in flight, and every accepted write ended.
fn check_all_ended(world: &World) -> Option<String> {
    let l = world.ledger.borrow();
    if !world.queue.borrow().is_empty() || !world.dlq.borrow().is_empty() {
        return Some("drained with messages still queued".into());
    }
    for o in world.objects.borrow().iter() {
        let st = &o.store.borrow().meta.state;
        if let Some(w) = st.in_flight.as_ref().or(st.pending.as_ref()) {
            return Some(format!(
                "{} sleeps with {} still {}",
                o.key,
                w.id,
                if st.in_flight.is_some() {
                    "in flight"
                } else {
                    "pending"
                }
            ));
        }
    }
    let id = l.owed.iter().find(|id| !l.ended.contains_key(*id))?;
    let state = world
        .objects
        .borrow()
        .iter()
        .find_map(|o| o.store.borrow().uploads.get(id).map(|r| r.state.as_str()))
        .unwrap_or("queued");
    Some(format!("{id} was accepted and never ended (still {state})"))
}

/// The checks once nothing is left to happen; `woken`: after every key
/// was woken past the retention windows, when status rows and claims must
/// be gone too.
fn check_drained(world: &Rc<World>, woken: bool) -> Option<String> {
    let l = world.ledger.borrow();
    if let Some(v) = check_all_ended(world) {
        return Some(v);
    }
    // Each key's object is its newest committed write.
    let mut newest: BTreeMap<&str, (&pipeline_core::schedule::WriteRef, WriteOp, u64)> =
        BTreeMap::new();
    for (id, e) in &l.ended {
        let Some(o) = l.writes.get(id) else { continue };
        if e.0 == UploadState::Committed && newest.get(o.key.as_str()).is_none_or(|n| *n.0 < o.at) {
            newest.insert(o.key.as_str(), (&o.at, o.op, o.body_hash));
        }
    }
    let r2 = world.r2.borrow();
    for o in world.objects.borrow().iter() {
        let stored = r2.objects.get(&o.key);
        match (newest.get(o.key.as_str()), stored) {
            (Some((at, WriteOp::Put, hash)), Some(s))
                if s.upload_id == at.id && s.body_hash == *hash => {}
            (Some((_, WriteOp::Delete, _)) | None, None) => {}
            (want, got) => {
                return Some(format!(
                    "{} holds {:?}, not its newest committed write {:?}",
                    o.key,
                    got.map(|g| (&g.upload_id, g.body_hash)),
                    want.map(|w| (&w.0.id, w.1, w.2))
                ))
            }
        }
        let s = o.store.borrow();
        // Status rows and claims leave once past their windows, at the
        // key's next alarm; bodies and garbage before the key sleeps.
        let kept = woken && (!s.uploads.is_empty() || !s.idem.is_empty());
        if !s.bodies.is_empty() || !s.garbage.is_empty() || kept {
            return Some(format!(
                "{} keeps {} bodies, {} garbage, {} status rows, {} idempotency keys after drain and retention",
                o.key,
                s.bodies.len(),
                s.garbage.len(),
                s.uploads.len(),
                s.idem.len()
            ));
        }
    }
    if let Some(k) = r2.staged.keys().next() {
        return Some(format!("staged body {k} left behind"));
    }
    // Superseded only by newer writes, never by a sync write that failed.
    for (id, e) in &l.ended {
        if e.0 != UploadState::Superseded {
            continue;
        }
        let Some(by) = &e.1 else {
            return Some(format!("{id} superseded by nobody"));
        };
        let (Some(me), Some(them)) = (l.writes.get(id), l.writes.get(by)) else {
            continue;
        };
        if them.at <= me.at {
            return Some(format!("{id} superseded by the older {by}"));
        }
        if them.sync && l.ended.get(by).map(|x| x.0) == Some(UploadState::Failed) {
            return Some(format!(
                "{id} superseded by the sync write {by}, which failed: nothing newer landed"
            ));
        }
    }
    // Every write with a callback that ended had its event taken by the
    // webhook queue, with its terminal state; with commit events on, every
    // write that ended had one in the event queue. Nothing stays owed.
    for (id, e) in &l.ended {
        let kind = format!("upload.{}", e.0.as_str());
        let want = (id.clone(), kind.clone());
        if l.callbacks.contains(id) && !l.webhooks.contains(&want) {
            return Some(format!(
                "{id} ended {} with a callback, and no {kind} webhook was sent",
                e.0.as_str()
            ));
        }
        if world.cfg.events && !l.events.contains(&want) {
            return Some(format!(
                "{id} ended {} and no {kind} commit event was sent",
                e.0.as_str()
            ));
        }
    }
    for (id, kind) in l.webhooks.iter().chain(l.events.iter()) {
        match l.ended.get(id) {
            Some(e) if *kind == format!("upload.{}", e.0.as_str()) => {}
            other => {
                return Some(format!(
                    "an event {kind} was sent for {id}, which ended {:?}",
                    other.map(|e| e.0.as_str())
                ))
            }
        }
    }
    if let Some(o) = world
        .objects
        .borrow()
        .iter()
        .find(|o| !o.store.borrow().outbox.is_empty())
    {
        return Some(format!(
            "{} keeps {} outbox entries after drain",
            o.key,
            o.store.borrow().outbox.len()
        ));
    }
    // /stats equals the terminal counts.
    // (The shard's running total, which it keeps by differences and
    // through compactions of idle sources.)
    let mut t = l.shard.running.total;
    t.accepted += l.producer_accepted;
    let count = |s: UploadState| l.ended.values().filter(|e| e.0 == s).count() as i64;
    let want = (
        count(UploadState::Committed),
        count(UploadState::Superseded),
        count(UploadState::Failed),
    );
    if (t.committed, t.superseded, t.failed) != want || t.accepted != l.ended.len() as i64 {
        return Some(format!(
            "/stats says accepted {} committed {} superseded {} failed {}; the writes say {} {} {} {}",
            t.accepted,
            t.committed,
            t.superseded,
            t.failed,
            l.ended.len(),
            want.0,
            want.1,
            want.2
        ));
    }
    // The latency histograms count each write once.
    if t.commit_lag.count as i64 != want.0 || t.queue_wait.count as usize != l.ended.len() {
        return Some(format!(
            "histograms count {} commits and {} admissions; the writes say {} and {}",
            t.commit_lag.count,
            t.queue_wait.count,
            want.0,
            l.ended.len()
        ));
    }
    // Idempotency: one id per key, and it was enqueued.
    for ((key, idem), ids) in &l.idem_answers {
        if ids.len() != 1 {
            return Some(format!(
                "{key} {idem}: repeats were answered with {} different ids",
                ids.len()
            ));
        }
        for id in ids {
            if !l.sent.contains(id) {
                return Some(format!(
                    "{key} {idem}: a repeat was answered with {id}, which was never enqueued"
                ));
            }
        }
    }
    None
}
