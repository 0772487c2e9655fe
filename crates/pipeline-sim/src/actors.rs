//! The actors around the key schedulers: clients (async, sync and
//! idempotent writes, status polls), the producer (the real
//! `pipeline_core::producer::enqueue`), the consumer (the real
//! `plan_batch` and `retry_delay_secs`) and the dead letter consumer (the
//! real `dead_letter` decision).

use std::rc::Rc;

use pipeline_core::consumer::{dead_letter, plan_batch, retry_delay_secs, DeadLetter};
use pipeline_core::engine::planted::Bug;
use pipeline_core::engine::Scheduler;
use pipeline_core::error::ApiError;
use pipeline_core::id::WriteOp;
use pipeline_core::message::{BodyRef, WriteMessage, MESSAGE_VERSION, STAGING_PREFIX};
use pipeline_core::producer::{enqueue, ProducerIo};
use pipeline_core::protocol::{
    EnqueueRequest, FailReply, FailRequest, StatusRequest, SyncReply, SyncRequest,
};
use pipeline_core::schedule::WriteRef;
use pipeline_core::write_condition::WriteCondition;

use crate::exec::Slot;
use crate::model::{Owed, QMsg};
use crate::world::{hash_bytes, Event, Io, IoResult, World};

fn obj_of(world: &World, key: &str) -> usize {
    world
        .objects
        .borrow()
        .iter()
        .position(|o| o.key == key)
        .unwrap_or(0)
}

/// A client's next action, then its next turn.
pub fn client_act(world: &Rc<World>, client: usize) {
    if !world.is_active() {
        return;
    }
    if let Some(to) = world.lull_until() {
        world.schedule(to, Event::Client(client));
        return;
    }
    let cfg = world.cfg.clone();
    let roll = world.range(0, 999) as f64 / 1000.0;
    let w = world.clone();
    let task: crate::exec::BoxTask = if roll < cfg.p_status {
        Box::pin(async move { poll_status(w).await })
    } else {
        let sync = world.chance(cfg.p_sync);
        let op = if world.chance(cfg.p_delete) {
            WriteOp::Delete
        } else {
            WriteOp::Put
        };
        let staged = op == WriteOp::Put && world.chance(cfg.p_staged);
        let key = world.objects.borrow()[world.rng.borrow_mut().below(cfg.keys)]
            .key
            .clone();
        if sync {
            Box::pin(async move { sync_write(w, key, op, staged).await })
        } else if world.chance(cfg.p_batch) {
            Box::pin(async move { batch_write(w).await })
        } else if world.chance(cfg.p_conditional) {
            Box::pin(async move { read_modify_write(w, key).await })
        } else if world.chance(cfg.p_idempotent) {
            let idem = format!("idem-{client}-{}", world.range(0, 1_000_000));
            let repeats = world.range(1, 3);
            for _ in 1..repeats {
                let (w2, k2, i2) = (world.clone(), key.clone(), idem.clone());
                let at = world.now() + world.range(0, 300);
                world.spawn(
                    None,
                    at,
                    Box::pin(async move { async_write(w2, k2, op, staged, Some(i2)).await }),
                    None,
                );
            }
            Box::pin(async move { async_write(w, key, op, staged, Some(idem)).await })
        } else {
            Box::pin(async move { async_write(w, key, op, staged, None).await })
        }
    };
    world.spawn(None, world.now(), task, None);
    let next = world.now() + world.range(cfg.client_pause_ms / 2, cfg.client_pause_ms * 3 / 2);
    world.schedule(next, Event::Client(client));
}

/// A new write: id, acceptance time (with the stamping Worker's skew),
/// bytes. Registered with the ledger as the client's truth.
fn new_write(world: &World, key: &str, op: WriteOp, sync: bool) -> (String, i64, Vec<u8>) {
    let n = world.next_id.get() + 1;
    world.next_id.set(n);
    let id = format!("w{n:05}");
    let skew = world.range(-world.cfg.skew_ms, world.cfg.skew_ms);
    let accepted_ms = world.now() + skew;
    let bytes = if op == WriteOp::Put {
        format!("{id} bytes").into_bytes()
    } else {
        Vec::new()
    };
    let mut l = world.ledger.borrow_mut();
    l.writes.insert(
        id.clone(),
        Owed {
            key: key.to_string(),
            at: WriteRef::new(accepted_ms, id.clone()),
            op,
            sync,
            body_hash: hash_bytes(&bytes),
        },
    );
    l.owed.insert(id.clone());
    (id, accepted_ms, bytes)
}

/// Ids the ledger registered but the pipeline owes nothing (never
/// accepted: refused, or never sent).
fn disown(world: &World, id: &str) {
    world.ledger.borrow_mut().owed.remove(id);
}

async fn io(world: &Rc<World>, io: Io) -> IoResult {
    let slot: Slot<IoResult> = Slot::default();
    world.submit(None, io, slot.clone());
    slot.wait().await
}

async fn stage(world: &Rc<World>, id: &str, bytes: &[u8]) -> Option<String> {
    let key = format!("{STAGING_PREFIX}{id}");
    match io(
        world,
        Io::Stage {
            key: key.clone(),
            hash: hash_bytes(bytes),
        },
    )
    .await
    {
        IoResult::Unit(Ok(())) => Some(key),
        _ => None,
    }
}

#[allow(clippy::too_many_arguments)]
fn message(
    id: &str,
    key: &str,
    accepted_ms: i64,
    op: WriteOp,
    bytes: &[u8],
    body: BodyRef,
    idem: Option<String>,
    condition: Option<WriteCondition>,
) -> WriteMessage {
    WriteMessage {
        v: MESSAGE_VERSION,
        id: id.to_string(),
        key: key.to_string(),
        accepted_ms,
        op,
        size: bytes.len() as u64,
        meta: Default::default(),
        body,
        idempotency_key: idem,
        condition,
        callback_url: None,
    }
}

/// Gives some async writes a callback URL (recorded in the ledger).
fn with_callback(world: &World, mut msg: WriteMessage) -> WriteMessage {
    if world.chance(world.cfg.p_callback) {
        msg.callback_url = Some(format!("https://hooks.sim/{}", msg.id));
        world.ledger.borrow_mut().callbacks.insert(msg.id.clone());
    }
    msg
}

struct SimProducer(Rc<World>);

impl ProducerIo for SimProducer {
    fn upload_queues(&self) -> u32 {
        self.0.cfg.upload_queues
    }

    async fn send(&self, shard: u32, msg: &WriteMessage) -> Result<(), ApiError> {
        let w = &self.0;
        assert_eq!(
            shard,
            pipeline_core::queues::shard_of(&msg.key, w.cfg.upload_queues),
            "a write sent to another queue than its key's"
        );
        if w.is_active() && w.chance(w.cfg.p_send_fail) {
            w.ledger.borrow_mut().faults.queue_send_failures += 1;
            w.trace(format!("{} queue send fails (injected)", msg.id));
            return Err(ApiError::QueueUnavailable("injected".into()));
        }
        w.ledger.borrow_mut().sent.insert(msg.id.clone());
        push_message(w, msg.encode(), delivery_at(w));
        if w.is_active() && w.chance(w.cfg.p_duplicate) {
            w.ledger.borrow_mut().faults.duplicates += 1;
            let later = w.now() + w.range(0, w.cfg.duplicate_delay_ms);
            push_message(w, msg.encode(), later);
        }
        Ok(())
    }

    async fn claim(&self, key: &str, idem_key: &str, id: &str) -> Result<String, ApiError> {
        let (k, i) = (idem_key.to_string(), id.to_string());
        let slot = self.0.call_object(obj_of(&self.0, key), move |world, obj| {
            Box::pin(async move {
                let (host, mem, cfg) = world.scheduler_parts(obj);
                Scheduler::new(&host, &mem, cfg).claim(&k, &i)
            })
        });
        match slot.wait().await {
            Ok(r) => r,
            Err(e) => Err(ApiError::Unavailable(e)),
        }
    }

    async fn delete_staged(&self, staged_key: &str) {
        let _ = io(
            &self.0,
            Io::DeleteStaged {
                key: staged_key.to_string(),
            },
        )
        .await;
    }

    async fn send_batch(&self, shard: u32, msgs: &[&WriteMessage]) -> Result<(), ApiError> {
        // All or none, as the queue's batch send; one queue per send.
        let w = &self.0;
        assert!(
            msgs.iter()
                .all(|m| pipeline_core::queues::shard_of(&m.key, w.cfg.upload_queues) == shard),
            "a batch send mixing queues"
        );
        if w.is_active() && w.chance(w.cfg.p_send_fail) {
            w.ledger.borrow_mut().faults.queue_send_failures += 1;
            return Err(ApiError::QueueUnavailable("injected".into()));
        }
        for m in msgs {
            w.ledger.borrow_mut().sent.insert(m.id.clone());
            push_message(w, m.encode(), delivery_at(w));
        }
        Ok(())
    }
}

/// When a message just sent becomes visible: now, or (the backlog fault)
/// once the status retention has passed, up to twice it.
fn delivery_at(w: &World) -> i64 {
    let now = w.now();
    if w.cfg.p_backlog > 0.0 && w.is_active() && w.chance(w.cfg.p_backlog) {
        w.ledger.borrow_mut().faults.backlogged += 1;
        let at = now + w.range(w.cfg.status_ttl_ms, w.cfg.status_ttl_ms * 2);
        w.trace(format!("queue holds a message back until {at} (backlog)"));
        return at;
    }
    now
}

fn push_message(world: &World, body: String, visible_at: i64) {
    let seq = world.next_id.get() + 1;
    world.next_id.set(seq);
    world.queue.borrow_mut().push(QMsg {
        seq,
        body,
        visible_at,
        attempts: 0,
        sent_at: world.now(),
        in_flight: false,
        outage_retries: 0,
    });
    world.schedule(visible_at + world.cfg.batch_timeout_ms, Event::Consumer);
    if world.cfg.full_batches {
        // This message may fill a batch.
        world.schedule(visible_at, Event::Consumer);
    }
}

/// `PUT`/`DELETE` in the default mode, through the real producer code.
async fn async_write(
    world: Rc<World>,
    key: String,
    op: WriteOp,
    staged: bool,
    idem: Option<String>,
) {
    let (id, accepted_ms, bytes) = new_write(&world, &key, op, false);
    let body = if staged {
        match stage(&world, &id, &bytes).await {
            Some(k) => BodyRef::Staged { staged_key: k },
            None => {
                disown(&world, &id);
                return;
            }
        }
    } else {
        WriteMessage::inline(&bytes)
    };
    let msg = with_callback(
        &world,
        message(&id, &key, accepted_ms, op, &bytes, body, idem.clone(), None),
    );
    match enqueue(&SimProducer(world.clone()), &msg).await {
        Ok(e) => {
            world.trace(format!(
                "{id} accepted → 202 {}{}",
                e.id,
                if e.own { "" } else { " (repeat)" }
            ));
            let mut l = world.ledger.borrow_mut();
            if e.count_accepted {
                l.producer_accepted += 1;
            }
            if let Some(k) = idem {
                l.idem_answers
                    .entry((key, k))
                    .or_default()
                    .insert(e.id.clone());
            }
            if !e.own {
                // The delivery of this id is dropped as a repeat.
                l.owed.remove(&id);
            }
        }
        Err(e) => {
            world.trace(format!("{id} refused: {e}"));
            // Not sent: owed nothing. Sent, claim failed: it is delivered
            // and either held (then its row makes it owed) or dropped.
            disown(&world, &id);
        }
    }
}

/// `POST /batch`: several writes through the real `enqueue_batch`.
async fn batch_write(world: Rc<World>) {
    let n = world.range(2, 6);
    let mut msgs = Vec::new();
    for _ in 0..n {
        let key = world.objects.borrow()[world.rng.borrow_mut().below(world.cfg.keys)]
            .key
            .clone();
        let op = if world.chance(world.cfg.p_delete) {
            WriteOp::Delete
        } else {
            WriteOp::Put
        };
        let (id, accepted_ms, bytes) = new_write(&world, &key, op, false);
        let idem = world
            .chance(world.cfg.p_idempotent)
            .then(|| format!("idem-batch-{}", world.range(0, 20)));
        msgs.push(message(
            &id,
            &key,
            accepted_ms,
            op,
            &bytes,
            WriteMessage::inline(&bytes),
            idem,
            None,
        ));
    }
    let results = pipeline_core::producer::enqueue_batch(&SimProducer(world.clone()), &msgs).await;
    for (msg, r) in msgs.iter().zip(results) {
        match r {
            Ok(e) => {
                let mut l = world.ledger.borrow_mut();
                if e.count_accepted {
                    l.producer_accepted += 1;
                }
                if let Some(k) = &msg.idempotency_key {
                    l.idem_answers
                        .entry((msg.key.clone(), k.clone()))
                        .or_default()
                        .insert(e.id.clone());
                }
                if !e.own {
                    l.owed.remove(&msg.id);
                }
            }
            Err(_) => disown(&world, &msg.id),
        }
    }
}

/// A read-modify-write: read the object's ETag, write with `If-Match` (or
/// `If-None-Match: *` when absent), wait until the write ends, retry on
/// `precondition_failed`.
async fn read_modify_write(world: Rc<World>, key: String) {
    for _ in 0..5 {
        let current = world.r2.borrow().objects.get(&key).map(|o| o.etag.clone());
        let condition = match current {
            Some(etag) => WriteCondition::IfMatch { etag },
            None => WriteCondition::IfNoneMatch,
        };
        let (id, accepted_ms, bytes) = new_write(&world, &key, WriteOp::Put, false);
        world
            .ledger
            .borrow_mut()
            .conditions
            .insert(id.clone(), condition.clone());
        let body = WriteMessage::inline(&bytes);
        let msg = with_callback(
            &world,
            message(
                &id,
                &key,
                accepted_ms,
                WriteOp::Put,
                &bytes,
                body,
                None,
                Some(condition),
            ),
        );
        match enqueue(&SimProducer(world.clone()), &msg).await {
            Ok(e) => {
                if e.count_accepted {
                    world.ledger.borrow_mut().producer_accepted += 1;
                }
            }
            Err(_) => {
                disown(&world, &id);
                continue;
            }
        }
        world.trace(format!("{id} conditional write accepted"));
        let mut ended = None;
        for _ in 0..240 {
            ended = world.ledger.borrow().ended.get(&id).cloned();
            if ended.is_some() {
                break;
            }
            let _ = io(&world, Io::Sleep { ms: 500 }).await;
        }
        match ended {
            Some((pipeline_core::status::UploadState::Committed, _, _)) => {
                world.ledger.borrow_mut().increments += 1;
                return;
            }
            Some((_, _, Some(code))) if code == "precondition_failed" => continue,
            _ => return,
        }
    }
}

/// `?mode=sync`: probe first for staged bodies, then the write.
async fn sync_write(world: Rc<World>, key: String, op: WriteOp, staged: bool) {
    let (id, accepted_ms, bytes) = new_write(&world, &key, op, true);
    // The pipeline owes this id only once its scheduler recorded it.
    disown(&world, &id);
    let obj = obj_of(&world, &key);
    let mut msg = message(
        &id,
        &key,
        accepted_ms,
        op,
        &bytes,
        WriteMessage::inline(&bytes),
        None,
        None,
    );
    let call = |world: &Rc<World>, req: SyncRequest| {
        world.call_object(obj, move |world, obj| {
            Box::pin(async move {
                let (host, mem, cfg) = world.scheduler_parts(obj);
                Scheduler::new(&host, &mem, cfg).sync_write(req).await
            })
        })
    };
    if staged {
        msg.body = BodyRef::Staged {
            staged_key: format!("{STAGING_PREFIX}{id}"),
        };
        let probe = call(
            &world,
            SyncRequest {
                write: msg.clone(),
                probe: true,
            },
        )
        .wait()
        .await;
        if !matches!(probe, Ok(Ok(SyncReply::Free))) {
            return;
        }
        if stage(&world, &id, &bytes).await.is_none() {
            return;
        }
    }
    let reply = call(
        &world,
        SyncRequest {
            write: msg,
            probe: false,
        },
    )
    .wait()
    .await;
    world.trace(format!("{id} sync → {reply:?}"));
    let recorded = world.objects.borrow()[obj]
        .store
        .borrow()
        .uploads
        .contains_key(&id)
        || world.ledger.borrow().ended.contains_key(&id);
    if !recorded {
        disown(&world, &id);
        if staged {
            // A refused staged sync write: the scheduler queued the staged
            // body as garbage; an unreachable one never saw it.
            if reply.is_err() {
                let _ = io(
                    &world,
                    Io::DeleteStaged {
                        key: format!("{STAGING_PREFIX}{id}"),
                    },
                )
                .await;
            }
        }
    }
}

/// A status poll of a write the pipeline owes: it must agree with the
/// ledger, and a terminal answer never changes.
async fn poll_status(world: Rc<World>) {
    let pick = {
        let l = world.ledger.borrow();
        let n = l.owed.len();
        if n == 0 {
            return;
        }
        let i = world.rng.borrow_mut().below(n);
        l.owed
            .iter()
            .nth(i)
            .and_then(|id| Some((id.clone(), l.writes.get(id)?.clone())))
    };
    let Some((id, owed)) = pick else { return };
    let obj = obj_of(&world, &owed.key);
    let req = StatusRequest {
        id: id.clone(),
        key: owed.key.clone(),
        accepted_ms: owed.at.accepted_ms,
        size: 0,
        wait_ms: world.range(0, 1) * 500,
        ttl_ms: world.cfg.status_ttl_ms,
        until_held: false,
    };
    let slot = world.call_object(obj, move |world, obj| {
        Box::pin(async move {
            let (host, mem, cfg) = world.scheduler_parts(obj);
            Scheduler::new(&host, &mem, cfg).status(req).await
        })
    });
    if let Ok(Ok(s)) = slot.wait().await {
        if s.state.is_terminal() {
            let ended = world.ledger.borrow().ended.get(&id).map(|e| e.0);
            if ended != Some(s.state) {
                world.violate(format!(
                    "status of {id} says {} but it ended {ended:?}",
                    s.state.as_str()
                ));
            }
        }
    }
}

/// One consumer invocation: a batch of visible messages in any order.
pub fn consumer_run(world: &Rc<World>) {
    let now = world.now();
    let batch: Vec<(u64, String)> = {
        let mut q = world.queue.borrow_mut();
        let mut idx: Vec<usize> = (0..q.len())
            .filter(|i| !q[*i].in_flight && q[*i].visible_at <= now)
            .collect();
        if world.cfg.full_batches && idx.len() < world.cfg.max_batch {
            // Not full: wait until the oldest visible message's timeout
            // (its own consumer event is scheduled then).
            let oldest = idx.iter().map(|i| q[*i].visible_at).min();
            if oldest.is_some_and(|t| t + world.cfg.batch_timeout_ms > now) {
                return;
            }
        }
        // Any order: the queue does not order.
        for i in (1..idx.len()).rev() {
            let j = world.rng.borrow_mut().below(i + 1);
            idx.swap(i, j);
        }
        idx.truncate(world.cfg.max_batch);
        idx.iter()
            .map(|i| {
                q[*i].in_flight = true;
                q[*i].attempts += 1;
                (q[*i].seq, q[*i].body.clone())
            })
            .collect()
    };
    if batch.is_empty() {
        return;
    }
    let ids: Vec<String> = batch
        .iter()
        .filter_map(|(_, b)| WriteMessage::decode(b).ok().map(|m| m.id))
        .collect();
    world.trace(format!("consumer delivers {}", ids.join(" ")));
    let w = world.clone();
    world.spawn(
        None,
        now,
        Box::pin(async move { consume(w, batch).await }),
        None,
    );
}

async fn consume(world: Rc<World>, batch: Vec<(u64, String)>) {
    let bodies: Vec<Option<String>> = batch.iter().map(|(_, b)| Some(b.clone())).collect();
    let plan = plan_batch(&bodies);
    let dies = world.is_active() && world.chance(world.cfg.p_consumer_dies);
    // Keys concurrently, one key's calls in order, as the Worker does.
    let mut groups = Vec::new();
    for group in plan.by_key() {
        let calls: Vec<_> = group.to_vec();
        let (w, batch) = (world.clone(), batch.clone());
        let done: Slot<()> = Slot::default();
        let d2 = done.clone();
        let caller = world.current_task();
        world.spawn(
            None,
            world.now(),
            Box::pin(async move {
                for call in calls {
                    let obj = obj_of(&w, &call.key);
                    let outage = w.objects.borrow()[obj].outage_until > w.now();
                    let req: EnqueueRequest = call.request;
                    let slot = w.call_object(obj, move |world, obj| {
                        Box::pin(async move {
                            let (host, mem, cfg) = world.scheduler_parts(obj);
                            Scheduler::new(&host, &mem, cfg).enqueue(req).await
                        })
                    });
                    let r = slot.wait().await;
                    let ok = matches!(r, Ok(Ok(_)));
                    w.trace(format!(
                        "consumer call → {r:?}{}",
                        if dies {
                            " (invocation dies before acking)"
                        } else {
                            ""
                        }
                    ));
                    for i in call.messages {
                        let seq = batch[i].0;
                        settle_message(&w, seq, ok && !dies, outage && !ok && !dies, !dies);
                    }
                }
                d2.fill(());
                w.wake(caller);
            }),
            None,
        );
        groups.push(done);
    }
    for g in groups {
        g.wait().await;
    }
}

/// Acks a message or retries it (to the dead letter queue after
/// `max_retries`), with the consumer's real backoff.
fn settle_message(world: &Rc<World>, seq: u64, ok: bool, outage: bool, backoff: bool) {
    let mut q = world.queue.borrow_mut();
    let Some(pos) = q.iter().position(|m| m.seq == seq) else {
        return;
    };
    if ok {
        q.remove(pos);
        return;
    }
    let now = world.now();
    let m = &mut q[pos];
    m.in_flight = false;
    if outage {
        m.outage_retries += 1;
    }
    if m.attempts > world.cfg.max_retries {
        let m = q.remove(pos);
        drop(q);
        let mut l = world.ledger.borrow_mut();
        l.faults.dead_letters += 1;
        if m.outage_retries == m.attempts {
            l.outage_dead_letters += 1;
            drop(l);
            world.violate(format!(
                "message {seq} dead-lettered by a scheduler outage shorter than the tolerated {} s",
                pipeline_core::consumer::tolerated_outage_secs(world.cfg.max_retries)
            ));
        } else {
            drop(l);
        }
        world.trace(format!("message {seq} to the dead letter queue"));
        world.dlq.borrow_mut().push(m);
        world.schedule(now + 500, Event::DeadLetters);
        return;
    }
    // A consumer that died retried nothing itself: the queue redelivers
    // at once.
    let delay = if backoff {
        i64::from(retry_delay_secs(now - m.sent_at)) * 1000
    } else {
        100
    };
    m.visible_at = now + delay;
    drop(q);
    world.schedule(now + delay + world.cfg.batch_timeout_ms, Event::Consumer);
}

/// The dead letter consumer.
pub fn dead_letter_run(world: &Rc<World>) {
    let now = world.now();
    let msgs: Vec<QMsg> = {
        let mut d = world.dlq.borrow_mut();
        let ready: Vec<QMsg> = d
            .iter()
            .filter(|m| !m.in_flight && m.visible_at <= now)
            .cloned()
            .collect();
        for m in d.iter_mut().filter(|m| !m.in_flight && m.visible_at <= now) {
            m.in_flight = true;
        }
        ready
    };
    for m in msgs {
        let w = world.clone();
        world.spawn(
            None,
            now,
            Box::pin(async move { dead_letter_one(w, m).await }),
            None,
        );
    }
}

async fn dead_letter_one(world: Rc<World>, m: QMsg) {
    let done = match dead_letter(&m.body) {
        DeadLetter::Fail { msg, reason } => {
            if world.planted(Bug::DeadLetterDeletesFirst) {
                if let Some(k) = msg.staged_key() {
                    let _ = io(&world, Io::DeleteStaged { key: k.to_string() }).await;
                }
            }
            let req = FailRequest::dead_lettered(&msg, &reason);
            let slot = world.call_object(obj_of(&world, &msg.key), move |world, obj| {
                Box::pin(async move {
                    let (host, mem, cfg) = world.scheduler_parts(obj);
                    Scheduler::new(&host, &mem, cfg).fail(req).await
                })
            });
            let r: Result<Result<FailReply, ApiError>, String> = slot.wait().await;
            world.trace(format!("dead letter {} ({}) → {r:?}", m.seq, msg.id));
            matches!(r, Ok(Ok(_)))
        }
        DeadLetter::Salvage { .. } => true,
    };
    let mut d = world.dlq.borrow_mut();
    if let Some(pos) = d.iter().position(|x| x.seq == m.seq) {
        if done {
            d.remove(pos);
        } else {
            let now = world.now();
            d[pos].in_flight = false;
            d[pos].visible_at = now + i64::from(retry_delay_secs(now - m.sent_at)) * 1000;
            let at = d[pos].visible_at;
            drop(d);
            world.schedule(at, Event::DeadLetters);
        }
    }
}
