//! Writes arriving at the key's scheduler: a coalesced batch from the
//! consumer, a dead letter, an `Idempotency-Key` claim.
//!
//! Admission is one step (no await): every write of the batch is recorded
//! in one atomic [`Store::apply`], so a write is either fully held (status
//! row, body, pending state) or not seen at all and redelivered.

use crate::engine::planted::{active, Bug};
use crate::engine::{new_record, Callback, End, Host, IdemRecord, Op, Scheduler, Tx, Via};
use crate::error::ApiError;
use crate::protocol::{EnqueueReply, EnqueueRequest, FailReply, FailRequest, OlderWrite};
use crate::schedule::{admit, Admission, WriteRef};
use crate::status::UploadState;

/// What the scheduler knows of a delivered write's id.
enum Seen {
    /// New to this scheduler.
    New,
    /// Already recorded (a duplicate delivery), remembered after its
    /// status expired, or accepted longer ago than any message lives.
    Known,
    /// Its `Idempotency-Key` is held by another id: dropped.
    Repeat,
}

impl<H: Host> Scheduler<'_, H> {
    fn seen(&self, tx: &Tx, id: &str, at: &WriteRef, idem: Option<&str>) -> Result<Seen, ApiError> {
        if self.host.upload(id, at.accepted_ms)?.is_some() {
            return Ok(Seen::Known);
        }
        if active(Bug::LateWriteTakenForDuplicate)
            && at.accepted_ms + self.cfg.status_ttl_ms <= tx.now
        {
            return Ok(Seen::Known);
        }
        // A write whose status expired is remembered as seen (its status
        // kept, or a fingerprint of its id) until `seen_ids_ttl_ms` after
        // its acceptance, longer than any queue message lives. So a write
        // not on record is new, however late it comes (a backlog, a dead
        // letter handled late), unless it is older than that: then it can
        // only be a duplicate of a write forgotten since.
        let beyond_memory = at.accepted_ms + self.cfg.seen_ids_ttl_ms <= tx.now;
        if !active(Bug::RecountAfterPrune)
            && (beyond_memory || self.host.forgotten(id, at.accepted_ms)?)
        {
            return Ok(Seen::Known);
        }
        if let Some(k) = idem {
            // The claim as stored, expired or not: claims are kept for the
            // seen-id window past their own, so a repeat delivered late
            // still finds the holder it was answered with.
            if let Some(held) = self.host.idempotency(k)? {
                // A repeat was answered with the holder's id while the
                // holder's claim was live, so the claim is older than the
                // repeat's acceptance plus the window. A holder that claimed
                // the key later took it after this write's own claim
                // expired (this write comes that late): not a repeat.
                let could_repeat = held.created_ms < at.accepted_ms + self.cfg.idempotency_ttl_ms;
                if held.id != id && could_repeat {
                    return Ok(Seen::Repeat);
                }
            }
        }
        Ok(Seen::New)
    }

    /// The id holding `idem_key`, if its claim is within the window.
    fn live_claim(&self, tx: &Tx, idem_key: &str) -> Result<Option<IdemRecord>, ApiError> {
        Ok(self
            .host
            .idempotency(idem_key)?
            .filter(|r| r.created_ms + self.cfg.idempotency_ttl_ms > tx.now))
    }

    /// Records `id` as the holder of `idem_key` if nobody holds it.
    ///
    /// A write with an `Idempotency-Key` is counted as accepted here, when
    /// its scheduler first takes it: only here is it known not to be a
    /// repeat that is dropped (the producer counts the others).
    fn admit_idempotent(
        &self,
        tx: &mut Tx,
        idem_key: Option<&str>,
        id: &str,
    ) -> Result<(), ApiError> {
        if idem_key.is_some() {
            tx.count(|t| t.accepted += 1);
        }
        self.claim_in(tx, idem_key, id)
    }

    /// Records `id` as the holder of `idem_key` if nobody holds it.
    fn claim_in(&self, tx: &mut Tx, idem_key: Option<&str>, id: &str) -> Result<(), ApiError> {
        if let Some(k) = idem_key {
            if self.live_claim(tx, k)?.is_none() {
                tx.ops.push(Op::PutIdem(IdemRecord {
                    idem_key: k.to_string(),
                    id: id.to_string(),
                    created_ms: tx.now,
                }));
            }
        }
        Ok(())
    }

    /// Takes one key's writes from a queue batch.
    ///
    /// # Errors
    /// Storage failures; then nothing was recorded and the consumer
    /// retries the batch's messages.
    pub async fn enqueue(&self, req: EnqueueRequest) -> Result<EnqueueReply, ApiError> {
        let reply = self.admit_batch(&req)?;
        // The commit and the counts are the alarm's (due at once when the
        // slot is free): committing within this call was tried and made the
        // consumer's call as long as the R2 write, so a crash during it
        // failed the call and the message was redelivered, up to the dead
        // letter queue under the simulator's crash rates.
        self.reschedule().await?;
        Ok(reply)
    }

    fn admit_batch(&self, req: &EnqueueRequest) -> Result<EnqueueReply, ApiError> {
        let mut tx = self.begin()?;
        let mut reply = EnqueueReply::default();
        if tx.meta.key.is_none() {
            tx.meta.key = Some(req.newest.key.clone());
        }
        let m = &req.newest;
        let newest_ref = WriteRef::new(m.accepted_ms, m.id.clone());

        let mut older = req.older.clone();
        older.sort_by_key(|w| WriteRef::new(w.accepted_ms, w.id.clone()));
        for w in older.iter().filter(|w| w.id != m.id) {
            let at = WriteRef::new(w.accepted_ms, w.id.clone());
            match self.seen(&tx, &w.id, &at, w.idempotency_key.as_deref())? {
                Seen::Known => reply.duplicates += 1,
                Seen::Repeat => {
                    reply.duplicates += 1;
                    self.discard_staged(&mut tx, w.staged_key.as_deref());
                }
                Seen::New => {
                    reply.admitted += 1;
                    self.admit_idempotent(&mut tx, w.idempotency_key.as_deref(), &w.id)?;
                    // Older than the batch's newest; superseded by it, or by
                    // something newer the scheduler already settled on.
                    let by = match Self::newest_settled(&tx.meta) {
                        Some(known) if *known > newest_ref => known.id.clone(),
                        _ => m.id.clone(),
                    };
                    self.supersede_new(&mut tx, w, by);
                }
            }
        }

        match self.seen(&tx, &m.id, &newest_ref, m.idempotency_key.as_deref())? {
            Seen::Known => reply.duplicates += 1,
            Seen::Repeat => {
                reply.duplicates += 1;
                self.discard_staged(&mut tx, m.staged_key());
            }
            Seen::New => {
                reply.admitted += 1;
                self.admit_idempotent(&mut tx, m.idempotency_key.as_deref(), &m.id)?;
                self.hold_new(&mut tx, m, newest_ref)?;
            }
        }
        tx.apply(self.host)?;
        Ok(reply)
    }

    /// Holds a new write, or ends it at once. An unconditional write older
    /// than what the key settled on is superseded; one newer replaces the
    /// last held write when that one is unconditional too (coalescing),
    /// else it queues behind it. A conditional write is never folded: it
    /// queues, to be evaluated in its turn; one older than a write already
    /// known fails its condition at once (a newer write was accepted
    /// before it arrived).
    fn hold_new(
        &self,
        tx: &mut Tx,
        m: &crate::message::WriteMessage,
        me: WriteRef,
    ) -> Result<(), ApiError> {
        let conditional = m.condition.is_some() && !active(Bug::ConditionFolded);
        let mut rec = new_record(
            &m.id,
            m.accepted_ms,
            m.size,
            m.op,
            Via::Queue,
            UploadState::Scheduled,
            tx.now,
        );
        rec.callback = m.callback_url.as_deref().map(Callback::pending);
        if conditional {
            if tx.meta.state.newest().is_some_and(|n| *n >= me) {
                rec.state = UploadState::Failed;
                rec.error_code = Some("precondition_failed".into());
                rec.error_message = Some(
                    "a newer write to the key was accepted before this conditional write arrived"
                        .into(),
                );
                rec.current_etag = tx
                    .meta
                    .stored
                    .as_ref()
                    .and_then(|s| s.etag().map(str::to_string));
                tx.insert(rec);
                self.discard_staged(tx, m.staged_key());
                tx.count(|t| t.failed += 1);
                return Ok(());
            }
        } else {
            let view = crate::schedule::KeyState {
                in_flight: None,
                ..tx.meta.state.clone()
            };
            if let Admission::Superseded { by } = admit(&view, &me) {
                self.supersede_new(tx, &OlderWrite::from(m), by);
                return Ok(());
            }
            let last = tx.last_held().cloned();
            if let Some(last) =
                last.filter(|l| !tx.is_conditional(&l.id) || active(Bug::ConditionFolded))
            {
                tx.end_id(self.host, &last, End::Superseded { by: m.id.clone() })?;
                tx.unhold(&last.id);
            }
        }
        tx.ops.push(Op::PutBody(m.clone()));
        tx.hold(me, conditional);
        if active(Bug::SplitEnqueue) {
            // The defect: the marker lands in a step of its own, before
            // the body and the held state.
            self.host.apply(vec![Op::PutUpload(rec)])?;
        } else {
            tx.insert(rec);
        }
        Ok(())
    }

    /// Records a write the scheduler has not seen as superseded at once.
    fn supersede_new(&self, tx: &mut Tx, w: &OlderWrite, by: String) {
        let mut rec = new_record(
            &w.id,
            w.accepted_ms,
            w.size,
            w.op,
            Via::Queue,
            UploadState::Superseded,
            tx.now,
        );
        rec.superseded_by = Some(by);
        rec.callback = w.callback_url.as_deref().map(Callback::pending);
        tx.insert(rec);
        self.discard_staged(tx, w.staged_key.as_deref());
        tx.count(|t| t.superseded += 1);
    }

    fn discard_staged(&self, tx: &mut Tx, staged: Option<&str>) {
        if let Some(k) = staged {
            tx.ops.push(Op::AddGarbage(k.to_string()));
        }
    }

    /// A write the queue gave up on (dead letter). Unless the scheduler
    /// already has it, it ends `failed` and its staged body becomes this
    /// scheduler's to delete: nothing is deleted before that is known.
    ///
    /// # Errors
    /// Storage failures; the dead letter consumer retries.
    pub async fn fail(&self, req: FailRequest) -> Result<FailReply, ApiError> {
        let mut tx = self.begin()?;
        if tx.meta.key.is_none() {
            tx.meta.key = Some(req.key.clone());
        }
        let at = WriteRef::new(req.accepted_ms, req.id.clone());
        let reply = match self.seen(&tx, &req.id, &at, req.idempotency_key.as_deref())? {
            Seen::Known => FailReply::Known,
            Seen::Repeat => {
                self.discard_staged(&mut tx, req.staged_key.as_deref());
                FailReply::Dropped
            }
            Seen::New => {
                self.admit_idempotent(&mut tx, req.idempotency_key.as_deref(), &req.id)?;
                let mut rec = new_record(
                    &req.id,
                    req.accepted_ms,
                    req.size,
                    req.op,
                    Via::Queue,
                    UploadState::Failed,
                    tx.now,
                );
                rec.error_code = Some(req.code.clone());
                rec.error_message = Some(req.message.clone());
                rec.callback = req.callback_url.as_deref().map(Callback::pending);
                tx.insert(rec);
                self.discard_staged(&mut tx, req.staged_key.as_deref());
                tx.count(|t| t.failed += 1);
                FailReply::Failed
            }
        };
        if reply != FailReply::Known {
            tx.apply(self.host)?;
            self.reschedule().await?;
        }
        Ok(reply)
    }

    /// Records `id` as the holder of `idem_key` unless another id holds
    /// it; returns the holder. Called by the producer only after the queue
    /// took `id`'s message, so every holder is a write that was enqueued.
    ///
    /// # Errors
    /// Storage failures.
    pub fn claim(&self, idem_key: &str, id: &str) -> Result<String, ApiError> {
        let mut tx = self.begin()?;
        if let Some(held) = self.live_claim(&tx, idem_key)? {
            return Ok(held.id);
        }
        self.claim_in(&mut tx, Some(idem_key), id)?;
        tx.apply(self.host)?;
        Ok(id.to_string())
    }
}
