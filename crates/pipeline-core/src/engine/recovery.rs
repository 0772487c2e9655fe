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

use crate::engine::commit::supersede_older_pending;
use crate::engine::planted::{active, Bug};
use crate::engine::{End, Host, Scheduler, Tx, LANDING_GRACE_MS};
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
        let before = Tx::begin(self.host, self.host.now_ms())?;
        let Some(key) = before.meta.key.clone() else {
            return Err(ApiError::Internal("scheduler does not know its key".into()));
        };
        let rec = self.host.upload(&f.id)?;
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
        if landed {
            tx.meta.state.watermark = tx.meta.state.watermark.clone().max(Some(f.clone()));
            let etag = head.map(|h| h.etag).filter(|_| op == WriteOp::Put);
            tx.end_id(
                self.host,
                &f.id,
                End::Committed {
                    start_ms: start,
                    etag,
                },
            )?;
            supersede_older_pending(self.host, &mut tx, &f)?;
        } else if self.host.body(&f.id)?.is_some() {
            match tx.meta.state.pending.clone() {
                Some(newer) if newer > f => {
                    tx.end_id(self.host, &f.id, End::Superseded { by: newer.id })?;
                }
                older => {
                    if let Some(o) = older {
                        tx.end_id(self.host, &o.id, End::Superseded { by: f.id.clone() })?;
                    }
                    tx.meta.state.pending = Some(f);
                }
            }
        } else {
            tx.end_id(
                self.host,
                &f.id,
                End::failed(
                    "interrupted",
                    "the runtime stopped during this synchronous write",
                ),
            )?;
        }
        tx.apply(self.host)?;
        Ok(())
    }
}
