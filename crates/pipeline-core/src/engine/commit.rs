//! The alarm: prune, delete staged garbage, recover an interrupted write,
//! and commit the pending write when its slot is due; then push stats and
//! set the next alarm.
//!
//! A commit is three steps around two awaits. (1) If the body is staged,
//! open it in R2 first, then re-check that the write is still pending and
//! its slot free. (2) Persist the start (`last_start_ms`, `in_flight`)
//! *after* that GET, so the real PUT-to-PUT gap is never shorter than the
//! persisted one. (3) After the put, record the outcome: committed (older
//! pending writes are superseded only now, by a write that landed), retried
//! with backoff, or failed.

use crate::engine::planted::{active, Bug};
use crate::engine::{
    prune_spacing, AlarmKnown, BlobError, End, Host, Memory, Op, PutBody, RetryDoc, Scheduler,
    Stored, BUSY_RECHECK_MS, GARBAGE_PER_RUN,
};
use crate::error::ApiError;
use crate::id::WriteOp;
use crate::message::{BodyRef, WriteMessage};
use crate::schedule::{commit_backoff_ms, WriteRef};

impl<H: Host> Scheduler<'_, H> {
    /// One run of the alarm.
    ///
    /// # Errors
    /// Storage or alarm failures; the shell logs them and sets the alarm
    /// again a second later.
    pub async fn alarm(&self) -> Result<(), ApiError> {
        let now = self.host.now_ms();
        if !active(Bug::AlarmKnownAcrossRuns) {
            // The alarm now running was the one set; the runtime clears it
            // when this run ends, or runs it again if the run does not end.
            self.mem.alarm.set(AlarmKnown::Unset);
        }
        if now >= self.mem.prune_not_before.get() {
            self.host.apply(vec![Op::Prune {
                uploads_before: now - self.cfg.status_ttl_ms,
                forget_before: now - self.cfg.seen_ids_ttl_ms,
                idem_before: now - self.cfg.idempotency_ttl_ms - self.cfg.seen_ids_ttl_ms,
            }])?;
            self.mem
                .prune_not_before
                .set(now + prune_spacing(self.cfg.status_ttl_ms));
        }
        self.collect_garbage().await?;
        self.flush_outbox().await?;
        if self.mem.busy.get() {
            // A write of this instance is running and reschedules when it
            // ends; look again later in case it never does.
            return self
                .set_alarm(self.host.now_ms() + BUSY_RECHECK_MS)
                .await
                .map_err(|e| ApiError::Internal(format!("alarm: {e}")));
        }
        if let Some(interrupted) = self.host.meta()?.state.in_flight {
            self.recover(interrupted).await?;
        }
        self.commit_if_free().await?;
        self.flush_outbox().await?;
        self.push_stats(None).await?;
        self.reschedule().await
    }

    /// Commits the pending write now if its slot is free: no write in
    /// flight (an interrupted one is the alarm's to recover), none running
    /// in this instance, the slot and any retry backoff passed.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn commit_if_free(&self) -> Result<(), ApiError> {
        let meta = self.host.meta()?;
        let now = self.host.now_ms();
        if let (Some(p), Some(due)) = (meta.state.pending.clone(), Self::pending_due(&meta, now)) {
            if due <= now && meta.state.in_flight.is_none() && !self.mem.busy.get() {
                self.commit(p).await?;
            }
        }
        Ok(())
    }

    /// Deletes staged bodies whose writes ended.
    async fn collect_garbage(&self) -> Result<(), ApiError> {
        for key in self.host.garbage(GARBAGE_PER_RUN)? {
            if self.host.delete_staged(&key).await.is_ok() {
                self.host.apply(vec![Op::RemoveGarbage(key)])?;
            }
        }
        Ok(())
    }

    /// Commits the pending write `p`; the caller saw its slot free.
    async fn commit(&self, p: WriteRef) -> Result<(), ApiError> {
        let Some(msg) = self.host.body(&p.id)? else {
            let mut tx = self.begin()?;
            if tx.meta.state.pending.as_ref() == Some(&p) {
                tx.meta.state.pending = None;
            }
            tx.end_id(
                self.host,
                &p,
                End::failed(
                    "body_missing",
                    "the write's body was lost before it could be committed",
                ),
            )?;
            tx.apply(self.host)?;
            return Ok(());
        };
        if let Some(cond) = &msg.condition {
            // Evaluated against the stored object, known to this scheduler
            // (the key's only writer) or learnt with a head.
            let stored = match self.host.meta()?.stored {
                Some(s) => s,
                None => {
                    let head = self.host.head(&msg.key).await;
                    if !self.still_due(&p)? {
                        return Ok(());
                    }
                    match head {
                        Ok(h) => h.map_or(Stored::Absent, |h| Stored::Object { etag: h.etag }),
                        Err(e) => return self.settle(&p, Err(e), self.host.now_ms()),
                    }
                }
            };
            let mut tx = self.begin()?;
            tx.meta.stored = Some(stored.clone());
            if !cond.holds(stored.etag()) && !active(Bug::ConditionIgnored) {
                tx.end_id(
                    self.host,
                    &p,
                    End::ConditionFailed {
                        current_etag: stored.etag().map(str::to_string),
                    },
                )?;
                tx.unhold(&p.id);
                tx.apply(self.host)?;
                return Ok(());
            }
            tx.apply(self.host)?;
        }
        let early_start = self.host.now_ms();
        let body = match &msg.body {
            BodyRef::Empty => PutBody::Empty,
            BodyRef::Inline { .. } => match msg.inline_bytes() {
                Some(b) => PutBody::Bytes(b),
                None => {
                    return self.settle(
                        &p,
                        Err(BlobError::Permanent("inline body does not decode".into())),
                        early_start,
                    )
                }
            },
            BodyRef::Staged { staged_key } => {
                if active(Bug::StartBeforeGet) {
                    self.start(&p, early_start)?;
                }
                let opened = self.host.open_staged(staged_key).await;
                // Other events ran during the GET: is `p` still the write
                // to make, and is the slot still free?
                if !active(Bug::StartBeforeGet) && !self.still_due(&p)? {
                    return Ok(());
                }
                match opened {
                    Ok(Some(s)) => PutBody::Stream(s),
                    Ok(None) => {
                        let start = self.host.meta()?.state.last_start_ms.unwrap_or(early_start);
                        return self.settle(
                            &p,
                            Err(BlobError::Permanent("staged body missing".into())),
                            start,
                        );
                    }
                    Err(e) => return self.settle(&p, Err(e), early_start),
                }
            }
        };
        let start = if active(Bug::StartBeforeGet) && msg.staged_key().is_some() {
            early_start
        } else {
            let now = self.host.now_ms();
            self.start(&p, now)?;
            now
        };
        // No watchdog alarm: this runs in the alarm handler, which the
        // runtime runs again if it does not end (an instance lost during
        // the put), and the run recovers the write it finds in flight.
        let result = write(self.host, self.mem, &msg, body, start).await;
        self.settle(&p, result, start)
    }

    /// Persists that `p` starts its R2 write at `start`.
    fn start(&self, p: &WriteRef, start: i64) -> Result<(), ApiError> {
        let mut tx = self.begin()?;
        if tx.meta.state.pending.as_ref() == Some(p) {
            tx.meta.state.pending = None;
        }
        tx.meta.state.in_flight = Some(p.clone());
        tx.meta.state.last_start_ms = Some(start);
        tx.apply(self.host)?;
        Ok(())
    }

    /// After an await: is `p` still the pending write, with the slot free?
    fn still_due(&self, p: &WriteRef) -> Result<bool, ApiError> {
        let meta = self.host.meta()?;
        let now = self.host.now_ms();
        Ok(meta.state.pending.as_ref() == Some(p)
            && meta.state.in_flight.is_none()
            && !self.mem.busy.get()
            && Self::pending_due(&meta, now).is_some_and(|d| d <= now))
    }

    /// Records the outcome of `p`'s R2 write that started at `start`.
    fn settle(
        &self,
        p: &WriteRef,
        result: Result<Option<String>, BlobError>,
        start: i64,
    ) -> Result<(), ApiError> {
        let mut tx = self.begin()?;
        if tx.meta.state.in_flight.as_ref() == Some(p) {
            tx.meta.state.in_flight = None;
        }
        if tx.meta.state.pending.as_ref() == Some(p) {
            tx.meta.state.pending = None;
        }
        match result {
            Ok(etag) => {
                tx.meta.state.watermark = tx.meta.state.watermark.clone().max(Some(p.clone()));
                tx.meta.stored = Some(match &etag {
                    Some(e) => Stored::Object { etag: e.clone() },
                    None => Stored::Absent,
                });
                tx.end_id(
                    self.host,
                    p,
                    End::Committed {
                        start_ms: start,
                        etag: etag.clone(),
                    },
                )?;
                tx.unhold(&p.id);
                end_older_held(self.host, &mut tx, p, etag.as_deref())?;
            }
            Err(err) => {
                // A failed write may still have changed R2: learn it anew.
                tx.meta.stored = None;
                let mut retry = if tx.meta.retry.id == p.id {
                    tx.meta.retry.clone()
                } else {
                    RetryDoc {
                        id: p.id.clone(),
                        ..RetryDoc::default()
                    }
                };
                retry.attempts += 1;
                let newer_plain =
                    tx.meta.state.pending.clone().filter(|n| {
                        *n > *p && !tx.is_conditional(&n.id) && !tx.is_conditional(&p.id)
                    });
                if let Some(newer) = newer_plain {
                    // A newer write arrived meanwhile: it replaces this one.
                    tx.end_id(self.host, p, End::Superseded { by: newer.id })?;
                    tx.unhold(&p.id);
                } else if matches!(err, BlobError::Permanent(_))
                    || retry.attempts >= self.cfg.max_commit_attempts
                {
                    tx.end_id(
                        self.host,
                        p,
                        End::failed(
                            "r2_write_failed",
                            format!("R2 write failed {} times: {err}", retry.attempts),
                        ),
                    )?;
                    tx.meta.retry = RetryDoc::default();
                    tx.unhold(&p.id);
                } else {
                    retry.retry_at_ms = tx.now + commit_backoff_ms(retry.attempts);
                    tx.meta.retry = retry;
                    requeue_front(self.host, &mut tx, p)?;
                }
            }
        }
        tx.apply(self.host)?;
        Ok(())
    }
}

/// Puts `p` back at the front of the held writes (to be tried again). A
/// write held meanwhile that is older than `p` (a late arrival) is
/// superseded by it; a newer one waits behind it.
pub(crate) fn requeue_front(
    host: &impl Host,
    tx: &mut crate::engine::Tx,
    p: &WriteRef,
) -> Result<(), ApiError> {
    if let Some(x) = tx.meta.state.pending.take() {
        if x < *p && !tx.is_conditional(&x.id) {
            tx.end_id(host, &x, End::Superseded { by: p.id.clone() })?;
            tx.meta.state.conditional.retain(|c| *c != x.id);
        } else {
            tx.meta.state.line.insert(0, x);
        }
    }
    tx.meta.state.pending = Some(p.clone());
    Ok(())
}

/// Held writes older than `landed` (late arrivals held while it was in
/// flight) end now that it is in R2: superseded by it, or, for a
/// conditional write (never written after a newer one), failed with
/// `precondition_failed` and the ETag `landed` left.
pub(crate) fn end_older_held(
    host: &impl Host,
    tx: &mut crate::engine::Tx,
    landed: &WriteRef,
    etag: Option<&str>,
) -> Result<(), ApiError> {
    let st = &tx.meta.state;
    let older: Vec<WriteRef> = st
        .pending
        .iter()
        .chain(st.line.iter())
        .filter(|w| **w < *landed)
        .cloned()
        .collect();
    for w in older {
        let end = if tx.is_conditional(&w.id) {
            End::ConditionFailed {
                current_etag: etag.map(str::to_string),
            }
        } else {
            End::Superseded {
                by: landed.id.clone(),
            }
        };
        tx.end_id(host, &w, end)?;
        tx.unhold(&w.id);
    }
    Ok(())
}

/// Performs one R2 write of `msg`, marking the instance busy meanwhile.
pub(crate) async fn write<H: Host>(
    host: &H,
    mem: &Memory,
    msg: &WriteMessage,
    body: PutBody<H::Stream>,
    start: i64,
) -> Result<Option<String>, BlobError> {
    mem.busy.set(true);
    let result = match msg.op {
        WriteOp::Delete => host.delete(&msg.key).await.map(|()| None),
        WriteOp::Put => host.put(msg, body, start).await.map(Some),
    };
    mem.busy.set(false);
    result
}
