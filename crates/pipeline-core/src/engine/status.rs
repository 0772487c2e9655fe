//! Upload statuses as `GET /uploads/{id}` reports them, with the long-poll,
//! and the held write `?consistency=latest` serves.
//!
//! An id the scheduler has not seen is `queued` (it was accepted: the id is
//! sealed by this deployment) until the retention window after its
//! acceptance ends. A terminal state is answered once this key's counts
//! reached `/stats` (or after [`STATS_GRACE_MS`]), so a client that saw its
//! writes end sees them counted: a poll that finds its write ended with the
//! counts not yet pushed pushes them itself (one push at a time per key,
//! [`STATS_POLL_PUSH_MS`]), so the reader, not the writer, pays for the
//! freshness.

use crate::engine::{
    Host, Scheduler, UploadRecord, POLL_INTERVAL_MS, STATS_GRACE_MS, STATS_POLL_PUSH_MS,
    STATS_PUSH_WAIT_MS,
};
use crate::error::ApiError;
use crate::message::WriteMessage;
use crate::protocol::{
    CommitSpacing, InFlightWrite, InspectRequest, KeyInspection, PendingWrite, StatusRequest,
};
use crate::status::{CallbackStatus, UploadState, UploadStatus};

impl<H: Host> Scheduler<'_, H> {
    /// The status of `req.id`, waiting up to `req.wait_ms` for it to end.
    ///
    /// # Errors
    /// `upload_not_found` once the retention window has passed; storage
    /// failures.
    pub async fn status(&self, req: StatusRequest) -> Result<UploadStatus, ApiError> {
        self.ensure_alarm().await?;
        let start = self.host.now_ms();
        let deadline = start + req.wait_ms.max(0);
        // Measured from when this poll first sees the write ended (a
        // long-poll may wait longer than the grace before it does): the
        // alarm's push may be seconds away then.
        let mut grace: Option<i64> = None;
        loop {
            let row = self.host.upload(&req.id, req.accepted_ms)?;
            let now = self.host.now_ms();
            let terminal = row.as_ref().is_some_and(|r| r.state.is_terminal());
            // A store may keep an expired status until its id is no longer
            // seen (`Op::Prune`); a reader never sees it past the window.
            if terminal
                && row
                    .as_ref()
                    .is_some_and(|r| r.updated_ms + req.ttl_ms <= now)
            {
                return Err(ApiError::UploadNotFound(
                    "upload id expired or unknown".into(),
                ));
            }
            let within_grace = terminal && now < *grace.get_or_insert(now + STATS_GRACE_MS);
            if within_grace {
                self.push_stats(Some(STATS_POLL_PUSH_MS)).await?;
            }
            let counted = !terminal || !within_grace || !self.host.meta()?.stats.dirty;
            let held = req.until_held && row.is_some() && !terminal;
            if (terminal && counted) || (!terminal && now >= deadline) || held {
                return match row {
                    Some(r) => Ok(self.status_of(&req, r)?),
                    None if now > req.accepted_ms + req.ttl_ms => Err(ApiError::UploadNotFound(
                        "upload id expired or unknown".into(),
                    )),
                    None => Ok(UploadStatus {
                        id: req.id.clone(),
                        key: req.key.clone(),
                        state: UploadState::Queued,
                        accepted_ms: req.accepted_ms,
                        size: req.size,
                        not_before_ms: None,
                        committed_ms: None,
                        etag: None,
                        superseded_by: None,
                        error_code: None,
                        error_message: None,
                        current_etag: None,
                        callback: None,
                    }),
                };
            }
            let waiting_for_push = terminal && !counted;
            self.host
                .sleep(if waiting_for_push {
                    STATS_PUSH_WAIT_MS
                } else {
                    POLL_INTERVAL_MS
                })
                .await;
        }
    }

    /// What this key's scheduler holds now, for the key inspector.
    ///
    /// # Errors
    /// Storage failures.
    pub fn inspect(&self, req: &InspectRequest) -> Result<KeyInspection, ApiError> {
        let key = &req.key;
        let meta = self.host.meta()?;
        let now = self.host.now_ms();
        let pending = match &meta.state.pending {
            Some(p) => Some(PendingWrite {
                id: p.id.clone(),
                accepted_ms: p.accepted_ms,
                size: self
                    .host
                    .upload(&p.id, p.accepted_ms)?
                    .map_or(0, |r| r.size),
            }),
            None => None,
        };
        let mut recent_commits = Vec::with_capacity(meta.recent_commits.len());
        let mut before: Option<i64> = None;
        for c in &meta.recent_commits {
            recent_commits.push(CommitSpacing {
                id: c.id.clone(),
                committed_ms: c.committed_ms,
                spacing_ms: before.map(|b| c.committed_ms - b),
            });
            before = Some(c.committed_ms);
        }
        recent_commits.reverse();
        Ok(KeyInspection {
            key: meta.key.clone().unwrap_or_else(|| key.to_string()),
            pending,
            in_flight: meta.state.in_flight.as_ref().map(|w| InFlightWrite {
                id: w.id.clone(),
                started_ms: meta.state.last_start_ms,
            }),
            waiting: meta.state.line.len(),
            next_slot_ms: meta.state.next_slot(now),
            recent_commits,
        })
    }

    fn status_of(&self, req: &StatusRequest, r: UploadRecord) -> Result<UploadStatus, ApiError> {
        let not_before_ms = if r.state == UploadState::Scheduled {
            Self::pending_due(&self.host.meta()?, self.host.now_ms())
        } else {
            None
        };
        Ok(UploadStatus {
            id: r.id,
            key: req.key.clone(),
            state: r.state,
            accepted_ms: r.accepted_ms,
            // The sealed claims are authoritative (compact rows omit it).
            size: req.size,
            not_before_ms,
            committed_ms: r.committed_ms,
            etag: r.etag,
            superseded_by: r.superseded_by,
            error_code: r.error_code,
            error_message: r.error_message,
            current_etag: r.current_etag,
            callback: r.callback.map(|c| CallbackStatus {
                state: c.state,
                attempts: c.attempts,
            }),
        })
    }

    /// The newest write this scheduler holds (pending or in flight) when it
    /// is newer than what R2 has: what a read-your-writes GET serves.
    ///
    /// # Errors
    /// Storage failures.
    pub fn latest(&self) -> Result<Option<WriteMessage>, ApiError> {
        let st = self.host.meta()?.state;
        let held = [st.pending.clone(), st.in_flight.clone()]
            .into_iter()
            .flatten()
            .chain(st.line.iter().cloned())
            .max();
        Ok(match held {
            Some(h) if st.watermark.as_ref().is_none_or(|w| h > *w) => self.host.body(&h.id)?,
            _ => None,
        })
    }
}
