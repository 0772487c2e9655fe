//! A write was in flight when an earlier instance died. R2 says whether it
//! landed: a put landed when the stored object carries its `upload-id`; a
//! delete landed when no object is stored once the landing grace has passed
//! (this scheduler is the key's only writer, so nothing else could have
//! removed or replaced it; an absent key before the grace proves nothing,
//! it may have been absent before the delete).
//!
//! A write that has not landed may still be on its way from the dead
//! instance; recovery waits [`LANDING_GRACE_MS`] after its start before it
//! concludes that it never will.
//!
//! Landed: committed. Not landed: a queued write (its body is kept) goes
//! back to pending; a synchronous one (its body left with its request)
//! ends `failed`. The head is an await, so the outcome is applied to the
//! state read *after* it, and only if that write is still the one in
//! flight.

use crate::engine::commit::{end_older_held, requeue_front};
use crate::engine::planted::{active, Bug};
use crate::engine::{End, Host, Scheduler, Stored, Tx, LANDING_GRACE_MS};
use crate::error::ApiError;
use crate::id::WriteOp;
use crate::schedule::WriteRef;

impl<H: Host> Scheduler<'_, H> {
    /// Recovers the interrupted write `f`.
    ///
    /// # Errors
    /// Storage failures, or R2 not answering the head (the alarm runs
    /// again and retries).
    pub async fn recover(&self, f: WriteRef) -> Result<(), ApiError> {
        let before = self.begin()?;
        let Some(key) = before.meta.key.clone() else {
            return Err(ApiError::Internal("scheduler does not know its key".into()));
        };
        let rec = self.host.upload(&f.id, f.accepted_ms)?;
        let head = self
            .host
            .head(&key)
            .await
            .map_err(|e| ApiError::Unavailable(format!("R2 head: {e}")))?;
        let mut tx = if active(Bug::StaleRecovery) {
            // The defect: decide on, and save, the state loaded before the
            // head, whatever other events did meanwhile.
            Tx {
                now: self.host.now_ms(),
                ..before
            }
        } else {
            let tx = self.begin()?;
            if tx.meta.state.in_flight.as_ref() != Some(&f) || self.mem.busy.get() {
                return Ok(());
            }
            tx
        };
        let op = rec.as_ref().map_or(WriteOp::Put, |r| r.op);
        let landed = match op {
            WriteOp::Put => {
                head.as_ref().and_then(|h| h.upload_id.as_deref()) == Some(f.id.as_str())
            }
            WriteOp::Delete => head.is_none(),
        };
        let start = tx.meta.state.last_start_ms.unwrap_or(tx.now);
        // A delete is never known to have landed (the key may have been
        // absent before it), so it always waits out the grace.
        let known = landed && op == WriteOp::Put;
        if !known && tx.now < start + LANDING_GRACE_MS {
            // The dead instance's write may still land: look again later.
            return Ok(());
        }
        tx.meta.state.in_flight = None;
        // What R2 holds now, as the head saw it (past the grace, nothing of
        // the dead instance can still land).
        tx.meta.stored = Some(match &head {
            Some(h) => Stored::Object {
                etag: h.etag.clone(),
            },
            None => Stored::Absent,
        });
        if landed {
            tx.meta.state.watermark = tx.meta.state.watermark.clone().max(Some(f.clone()));
            let etag = head.map(|h| h.etag).filter(|_| op == WriteOp::Put);
            tx.end_id(
                self.host,
                &f,
                End::Committed {
                    start_ms: start,
                    etag: etag.clone(),
                },
            )?;
            tx.unhold(&f.id);
            end_older_held(self.host, &mut tx, &f, etag.as_deref())?;
        } else if self.host.body(&f.id)?.is_some() {
            let newer_plain = tx
                .meta
                .state
                .pending
                .clone()
                .filter(|n| *n > f && !tx.is_conditional(&n.id) && !tx.is_conditional(&f.id));
            match newer_plain {
                Some(newer) => {
                    tx.end_id(self.host, &f, End::Superseded { by: newer.id })?;
                    tx.unhold(&f.id);
                }
                None => requeue_front(self.host, &mut tx, &f)?,
            }
        } else {
            tx.end_id(
                self.host,
                &f,
                End::failed(
                    "interrupted",
                    "the runtime stopped during this synchronous write",
                ),
            )?;
            tx.unhold(&f.id);
        }
        tx.apply(self.host)?;
        Ok(())
    }
}
