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
    BlobError, End, Host, Memory, Op, PutBody, RetryDoc, Scheduler, BUSY_RECHECK_MS,
    GARBAGE_PER_RUN, WATCHDOG_MS,
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
        self.host.apply(vec![Op::Prune {
            uploads_before: now - self.cfg.status_ttl_ms,
            idem_before: now - self.cfg.idempotency_ttl_ms,
        }])?;
        self.collect_garbage().await?;
        if self.mem.busy.get() {
            // A write of this instance is running and reschedules when it
            // ends; look again later in case it never does.
            return self
                .host
                .set_alarm(self.host.now_ms() + BUSY_RECHECK_MS)
                .await
                .map_err(|e| ApiError::Internal(format!("alarm: {e}")));
        }
        if let Some(interrupted) = self.host.meta()?.state.in_flight {
            self.recover(interrupted).await?;
        }
        let meta = self.host.meta()?;
        let now = self.host.now_ms();
        if let (Some(p), Some(due)) = (meta.state.pending.clone(), Self::pending_due(&meta, now)) {
            if due <= now && meta.state.in_flight.is_none() && !self.mem.busy.get() {
                self.commit(p).await?;
            }
        }
        self.push_stats().await?;
        self.reschedule().await
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
                &p.id,
                End::failed(
                    "body_missing",
                    "the write's body was lost before it could be committed",
                ),
            )?;
            tx.apply(self.host)?;
            return Ok(());
        };
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
                if !active(Bug::StartBeforeGet) {
                    // Other events ran during the GET: is `p` still the
                    // write to make, and is the slot still free?
                    let meta = self.host.meta()?;
                    let now = self.host.now_ms();
                    let still = meta.state.pending.as_ref() == Some(&p)
                        && meta.state.in_flight.is_none()
                        && !self.mem.busy.get()
                        && Self::pending_due(&meta, now).is_some_and(|d| d <= now);
                    if !still {
                        return Ok(());
                    }
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
        let _ = self.host.set_alarm(start + WATCHDOG_MS).await;
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
                tx.end_id(
                    self.host,
                    &p.id,
                    End::Committed {
                        start_ms: start,
                        etag,
                    },
                )?;
                supersede_older_pending(self.host, &mut tx, p)?;
            }
            Err(err) => {
                let mut retry = if tx.meta.retry.id == p.id {
                    tx.meta.retry.clone()
                } else {
                    RetryDoc {
                        id: p.id.clone(),
                        ..RetryDoc::default()
                    }
                };
                retry.attempts += 1;
                let pending = tx.meta.state.pending.clone();
                match pending {
                    Some(newer) if newer > *p => {
                        // A newer write arrived meanwhile: it replaces this one.
                        tx.end_id(self.host, &p.id, End::Superseded { by: newer.id })?;
                    }
                    _ if matches!(err, BlobError::Permanent(_))
                        || retry.attempts >= self.cfg.max_commit_attempts =>
                    {
                        tx.end_id(
                            self.host,
                            &p.id,
                            End::failed(
                                "r2_write_failed",
                                format!("R2 write failed {} times: {err}", retry.attempts),
                            ),
                        )?;
                        tx.meta.retry = RetryDoc::default();
                    }
                    older => {
                        if let Some(o) = older {
                            // Held while `p` was in flight; `p` is newer.
                            tx.end_id(self.host, &o.id, End::Superseded { by: p.id.clone() })?;
                        }
                        retry.retry_at_ms = tx.now + commit_backoff_ms(retry.attempts);
                        tx.meta.state.pending = Some(p.clone());
                        tx.meta.retry = retry;
                    }
                }
            }
        }
        tx.apply(self.host)?;
        Ok(())
    }
}

/// A pending write older than `landed` (held while `landed` was in
/// flight) is superseded now that `landed` is in R2.
pub(crate) fn supersede_older_pending(
    host: &impl Host,
    tx: &mut crate::engine::Tx,
    landed: &WriteRef,
) -> Result<(), ApiError> {
    if let Some(p) = tx.meta.state.pending.clone() {
        if p < *landed {
            tx.meta.state.pending = None;
            tx.end_id(
                host,
                &p.id,
                End::Superseded {
                    by: landed.id.clone(),
                },
            )?;
        }
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
