//! Synchronous writes (`?mode=sync`): written now if the key's slot is
//! free, else `429` with when it frees; `409` if the scheduler already
//! holds a newer write. Sync and async writes share one slot.
//!
//! The body never streams from the client while the slot is held: small
//! bodies arrive buffered in the request, large ones were staged in R2 by
//! the producer first (after a `probe` found the slot free), so the slot is
//! held for an R2-internal copy, not for a client's upload.
//!
//! Older pending writes are superseded only after the sync write landed:
//! if it fails, they are still committed.

use crate::engine::commit::{end_older_held, write};
use crate::engine::planted::{active, Bug};
use crate::engine::{
    new_record, BlobError, End, Host, Op, PutBody, Scheduler, Stored, Via, WATCHDOG_MS,
};
use crate::error::ApiError;
use crate::message::BodyRef;
use crate::protocol::{SyncReply, SyncRequest};
use crate::schedule::{decide_sync, SyncDecision, WriteRef};
use crate::status::UploadState;

impl<H: Host> Scheduler<'_, H> {
    /// Decides, now, what a sync write would get.
    fn sync_decision(&self, me: &WriteRef) -> Result<(SyncDecision, i64), ApiError> {
        let meta = self.host.meta()?;
        let now = self.host.now_ms();
        let mut d = decide_sync(&meta.state, me, now);
        if matches!(d, SyncDecision::Go { .. }) && self.mem.busy.get() {
            d = SyncDecision::RateLimited {
                free_at_ms: meta.state.next_slot(now).max(now + 100),
            };
        }
        Ok((d, now))
    }

    /// A synchronous write.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn sync_write(&self, req: SyncRequest) -> Result<SyncReply, ApiError> {
        let msg = req.write;
        let me = WriteRef::new(msg.accepted_ms, msg.id.clone());
        let (decision, now) = self.sync_decision(&me)?;
        if req.probe {
            return Ok(match decision {
                SyncDecision::Go { .. } => SyncReply::Free,
                d => refusal(d, now),
            });
        }
        let reply = self.sync_go(&msg, &me, decision, now).await?;
        // The counts go to /stats from the alarm (due at once when the
        // key pushed nothing in the last interval), not on this path.
        self.reschedule().await?;
        Ok(reply)
    }

    async fn sync_go(
        &self,
        msg: &crate::message::WriteMessage,
        me: &WriteRef,
        mut decision: SyncDecision,
        mut now: i64,
    ) -> Result<SyncReply, ApiError> {
        if let (SyncDecision::Go { .. }, Some(cond)) = (&decision, &msg.condition) {
            // Evaluated at once, against what is stored now.
            let stored = match self.host.meta()?.stored {
                Some(s) => s,
                None => match self.host.head(&msg.key).await {
                    Ok(h) => {
                        // Other events ran during the head: decide again.
                        (decision, now) = self.sync_decision(me)?;
                        h.map_or(Stored::Absent, |h| Stored::Object { etag: h.etag })
                    }
                    Err(e) => return self.sync_refused(msg, e.to_string()),
                },
            };
            if matches!(decision, SyncDecision::Go { .. }) && !cond.holds(stored.etag()) {
                let mut tx = self.begin()?;
                if let Some(k) = msg.staged_key() {
                    tx.ops.push(Op::AddGarbage(k.to_string()));
                }
                tx.meta.stored = Some(stored.clone());
                tx.apply(self.host)?;
                return Ok(SyncReply::PreconditionFailed {
                    current_etag: stored.etag().map(str::to_string),
                });
            }
        }
        let mut body = PutBody::Empty;
        if let SyncDecision::Go { .. } = decision {
            match &msg.body {
                BodyRef::Empty => {}
                BodyRef::Inline { .. } => {
                    body = PutBody::Bytes(msg.inline_bytes().unwrap_or_default());
                }
                BodyRef::Staged { staged_key } => {
                    let opened = self.host.open_staged(staged_key).await;
                    // Other events ran during the GET: decide again.
                    (decision, now) = self.sync_decision(me)?;
                    match opened {
                        Ok(Some(s)) => body = PutBody::Stream(s),
                        Ok(None) => {
                            return self.sync_refused(msg, "the staged body is missing".into())
                        }
                        Err(e) => return self.sync_refused(msg, e.to_string()),
                    }
                }
            }
        }
        let supersedes = match decision {
            SyncDecision::Go { supersedes } => supersedes,
            d => {
                let mut tx = self.begin()?;
                if let Some(k) = msg.staged_key() {
                    tx.ops.push(Op::AddGarbage(k.to_string()));
                }
                if matches!(d, SyncDecision::RateLimited { .. }) {
                    tx.count(|t| t.rate_limited += 1);
                    tx.count_is_answered();
                }
                tx.apply(self.host)?;
                return Ok(refusal(d, now));
            }
        };

        // Take the slot: the write is accepted and in flight from here.
        self.mem.busy.set(true);
        let mut tx = self.begin()?;
        if tx.meta.key.is_none() {
            tx.meta.key = Some(msg.key.clone());
        }
        let mut rec = new_record(
            &msg.id,
            msg.accepted_ms,
            msg.size,
            msg.op,
            Via::Sync,
            UploadState::Scheduled,
            now,
        );
        // The row names the staged body: it becomes garbage when the write
        // ends, also when it ends in recovery after a crash.
        rec.staged_key = msg.staged_key().map(str::to_string);
        tx.insert(rec);
        tx.count(|t| t.accepted += 1);
        tx.count_is_answered();
        if active(Bug::SyncSupersedesEarly) {
            if let (Some(_), Some(old)) = (supersedes, tx.meta.state.pending.clone()) {
                tx.end_id(self.host, &old, End::Superseded { by: msg.id.clone() })?;
                tx.meta.state.pending = None;
            }
        }
        tx.meta.state.in_flight = Some(me.clone());
        tx.meta.state.last_start_ms = Some(now);
        if let Err(e) = tx.apply(self.host) {
            self.mem.busy.set(false);
            return Err(e.into());
        }
        // A request, unlike the alarm, is not run again if this instance
        // is lost during the put: the watchdog alarm recovers the write.
        let _ = self.set_alarm(now + WATCHDOG_MS).await;
        let result = write(self.host, self.mem, msg, body, now).await;

        let mut tx = self.begin()?;
        if tx.meta.state.in_flight.as_ref() == Some(me) {
            tx.meta.state.in_flight = None;
        }
        let reply = match result {
            Ok(etag) => {
                tx.meta.state.watermark = tx.meta.state.watermark.clone().max(Some(me.clone()));
                tx.meta.stored = Some(match &etag {
                    Some(e) => Stored::Object { etag: e.clone() },
                    None => Stored::Absent,
                });
                tx.end_id(
                    self.host,
                    me,
                    End::Committed {
                        start_ms: now,
                        etag: etag.clone(),
                    },
                )?;
                end_older_held(self.host, &mut tx, me, etag.as_deref())?;
                SyncReply::Committed {
                    etag,
                    committed_ms: now,
                }
            }
            Err(e) => {
                tx.meta.stored = None;
                tx.end_id(self.host, me, End::failed("r2_write_failed", e.to_string()))?;
                SyncReply::Failed {
                    message: e.to_string(),
                }
            }
        };
        tx.count_is_answered();
        tx.apply(self.host)?;
        Ok(reply)
    }

    /// A sync write whose staged body could not be opened: nothing was
    /// accepted; the staged object (if any) is garbage.
    fn sync_refused(
        &self,
        msg: &crate::message::WriteMessage,
        why: String,
    ) -> Result<SyncReply, ApiError> {
        let mut tx = self.begin()?;
        if let Some(k) = msg.staged_key() {
            tx.ops.push(Op::AddGarbage(k.to_string()));
        }
        tx.apply(self.host)?;
        Ok(SyncReply::Failed {
            message: format!("{}", BlobError::Transient(why)),
        })
    }
}

fn refusal(d: SyncDecision, now: i64) -> SyncReply {
    match d {
        SyncDecision::Stale { newer } => SyncReply::Stale { newer },
        SyncDecision::RateLimited { free_at_ms } => SyncReply::RateLimited {
            now_ms: now,
            free_at_ms,
        },
        SyncDecision::Go { .. } => SyncReply::Free,
    }
}
