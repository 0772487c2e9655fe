//! Webhook and commit events, at least once and never lost.
//!
//! The step that ends a write (through [`Tx::end`] or [`Tx::insert`] of a
//! row that ends at once) records its event in the outbox, in the same
//! atomic apply: a write is never terminal without its event owed. The
//! alarm hands the outbox to the queues ([`Notifier`]) in a step of its
//! own: read up to [`OUTBOX_PER_STEP`] entries, await the send, then one
//! apply removing exactly those. A crash or a refused send leaves them to
//! be sent again (receivers deduplicate on `webhook-id`).
//!
//! [`Notifier`]: crate::engine::Notifier

use sha2::{Digest, Sha256};

use crate::engine::planted::{active, Bug};
use crate::engine::{
    Host, Op, OutboxEntry, Scheduler, Tx, UploadRecord, OUTBOX_PER_STEP, OUTBOX_RETRY_MS,
};
use crate::error::ApiError;
use crate::protocol::{CallbackOutcome, CallbackReport};
use crate::status::{CallbackState, UploadStatus};
use crate::webhook::Event;

/// The `webhook-id` of `upload_id`'s event in `state`: `msg_` and 32 hex
/// characters of a SHA-256, the same on every send.
pub fn message_id(upload_id: &str, state: &str) -> String {
    let h = Sha256::digest(format!("{upload_id}.{state}").as_bytes());
    let hex: String = h.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("msg_{hex}")
}

impl Tx {
    /// Records the event of `rec`, which this step ends, when it has a
    /// callback or commit events are on.
    pub fn record_event(&mut self, rec: &UploadRecord) {
        if rec.callback.is_none() && !self.events {
            return;
        }
        let key = self.meta.key.clone().unwrap_or_default();
        let status = UploadStatus {
            id: rec.id.clone(),
            key: key.clone(),
            state: rec.state,
            accepted_ms: rec.accepted_ms,
            size: rec.size,
            not_before_ms: None,
            committed_ms: rec.committed_ms,
            etag: rec.etag.clone(),
            superseded_by: rec.superseded_by.clone(),
            error_code: rec.error_code.clone(),
            error_message: rec.error_message.clone(),
            current_etag: rec.current_etag.clone(),
            // The event is the delivery itself: its own state is not in it.
            callback: None,
        };
        let Some(event) = Event::of(&status) else {
            return;
        };
        self.ops.push(Op::PutOutbox(OutboxEntry {
            msg_id: message_id(&rec.id, rec.state.as_str()),
            upload_id: rec.id.clone(),
            accepted_ms: rec.accepted_ms,
            key,
            callback_url: rec.callback.as_ref().map(|c| c.url.clone()),
            event: serde_json::to_string(&event).unwrap_or_default(),
        }));
    }
}

impl<H: Host> Scheduler<'_, H> {
    /// One step of handing the outbox to the queues. After a refused send
    /// it waits [`OUTBOX_RETRY_MS`] (in memory: a restart tries at once).
    ///
    /// # Errors
    /// Storage failures.
    pub async fn flush_outbox(&self) -> Result<(), ApiError> {
        if self.host.now_ms() < self.mem.outbox_retry_at.get() {
            return Ok(());
        }
        let entries = self.host.outbox(OUTBOX_PER_STEP)?;
        if entries.is_empty() {
            return Ok(());
        }
        let remove = |entries: &[OutboxEntry]| {
            entries
                .iter()
                .map(|e| Op::RemoveOutbox(e.msg_id.clone()))
                .collect::<Vec<_>>()
        };
        if active(Bug::OutboxRemovedBeforeSend) {
            // The defect: the entries are gone before the queues took them.
            self.host.apply(remove(&entries))?;
        }
        match self.host.notify(&entries).await {
            Ok(()) => {
                // Only these entries: others recorded meanwhile stay.
                self.host.apply(remove(&entries))?;
            }
            Err(_) => self
                .mem
                .outbox_retry_at
                .set(self.host.now_ms() + OUTBOX_RETRY_MS),
        }
        Ok(())
    }

    /// Records how a delivery of a write's webhook went.
    ///
    /// # Errors
    /// Storage failures (the webhook consumer retries its report).
    pub fn callback_report(&self, r: &CallbackReport) -> Result<(), ApiError> {
        let Some(mut rec) = self.host.upload(&r.id, r.accepted_ms)? else {
            return Ok(());
        };
        let Some(cb) = rec.callback.as_mut() else {
            return Ok(());
        };
        if cb.state == CallbackState::Delivered {
            return Ok(());
        }
        match r.outcome {
            CallbackOutcome::Delivered => {
                cb.state = CallbackState::Delivered;
                cb.attempts += 1;
            }
            CallbackOutcome::Retrying => cb.attempts += 1,
            CallbackOutcome::Failed => cb.state = CallbackState::Failed,
        }
        self.host.apply(vec![Op::PutUpload(rec)])?;
        Ok(())
    }
}
