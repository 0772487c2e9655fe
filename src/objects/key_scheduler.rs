//! `KeyScheduler`: one Durable Object per object key, the only writer of
//! that key in R2.
//!
//! It holds the newest accepted write that is not yet in R2, supersedes
//! every older one (comparing with what is committed and in flight too, as
//! queues do not order), and commits through its alarm at the next free
//! slot: the starts of two R2 writes to the key are at least 1000 ms apart,
//! with the last start persisted so the rule survives evictions and
//! restarts. Synchronous writes take the same slot. Upload statuses of the
//! key live here for `STATUS_TTL_SECONDS` after they end.
//!
//! All decisions come from [`pipeline_core::schedule`]; this file persists
//! state, performs the R2 operations and keeps the statuses true.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use std::cell::Cell;
use std::collections::HashMap;

use pipeline_core::config::{Settings, IDEMPOTENCY_TTL_MS, MAX_COMMIT_ATTEMPTS};
use pipeline_core::error::ApiError;
use pipeline_core::id::WriteOp;
use pipeline_core::message::{BodyRef, WriteMessage};
use pipeline_core::ratelimit::SlotTaken;
use pipeline_core::schedule::{
    admit, commit_backoff_ms, decide_sync, Admission, KeyState, SyncDecision, WriteRef,
};
use pipeline_core::status::{UploadState, UploadStatus};
use pipeline_core::time::rfc3339_ms;
use serde::{Deserialize, Serialize};
use worker::{
    durable_object, Bucket, Data, Delay, DurableObject, Env, HttpMetadata, Method, Request,
    Response, SqlStorage, State,
};

use super::protocol::{
    EnqueueRequest, EnqueueResponse, FailRequest, IdempotencyRequest, IdempotencyResponse,
    LatestResponse, OlderWrite, StatusRequest, SYNC_WRITE_HEADER,
};
use super::sql::{create_kv, exec, first, get_doc, put_doc, rows};
use super::stats_shard::{self, Push, Totals};
use super::{ok_json, request_json, respond};
use crate::http::{internal, json, now_ms};

/// How often a long-poll re-reads the status.
const POLL_INTERVAL_MS: u64 = 100;
/// While a write of this instance runs, the alarm looks again this often.
const BUSY_RECHECK_MS: i64 = 250;
/// Longest a terminal status waits for its counts to reach `/stats`.
const STATS_GRACE_MS: i64 = 1000;
/// Staged bodies removed per alarm run.
const GARBAGE_PER_RUN: usize = 50;

#[durable_object]
pub struct KeyScheduler {
    state: State,
    env: Env,
    /// An R2 write of this instance is running. After a crash a fresh
    /// instance starts with `false` while the persisted `in_flight` is set:
    /// that is how an interrupted write is recognised.
    busy: Cell<bool>,
}

/// A row of `uploads`.
#[derive(Debug, Deserialize)]
struct UploadRow {
    id: String,
    accepted_ms: i64,
    size: i64,
    state: String,
    committed_ms: Option<i64>,
    etag: Option<String>,
    superseded_by: Option<String>,
    error_code: Option<String>,
    error_message: Option<String>,
}

/// Cumulative totals of this key with the version of their last change.
#[derive(Debug, Default, Serialize, Deserialize)]
struct StatsDoc {
    version: i64,
    totals: Totals,
    dirty: bool,
}

/// Retry bookkeeping of the pending write.
#[derive(Debug, Default, Serialize, Deserialize)]
struct RetryDoc {
    id: String,
    attempts: u32,
    retry_at_ms: i64,
}

#[derive(Deserialize)]
struct MessageRow {
    message: String,
}

#[derive(Deserialize)]
struct GarbageRow {
    staged_key: String,
}

#[derive(Deserialize)]
struct IdemRow {
    id: String,
}

#[derive(Deserialize)]
struct MinRow {
    t: Option<i64>,
}

const SCHEMA: [&str; 5] = [
    "CREATE TABLE IF NOT EXISTS uploads (id TEXT PRIMARY KEY, accepted_ms INTEGER NOT NULL, size INTEGER NOT NULL, \
     op TEXT NOT NULL, state TEXT NOT NULL, committed_ms INTEGER, etag TEXT, superseded_by TEXT, error_code TEXT, \
     error_message TEXT, updated_ms INTEGER NOT NULL)",
    // Pruning and the next prune time read uploads by their last change.
    "CREATE INDEX IF NOT EXISTS uploads_by_update ON uploads (updated_ms)",
    "CREATE TABLE IF NOT EXISTS bodies (id TEXT PRIMARY KEY, message TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS garbage (staged_key TEXT PRIMARY KEY)",
    "CREATE TABLE IF NOT EXISTS idempotency (idem_key TEXT PRIMARY KEY, id TEXT NOT NULL, created_ms INTEGER NOT NULL)",
];

impl DurableObject for KeyScheduler {
    fn new(state: State, env: Env) -> Self {
        let sql = state.storage().sql();
        let _ = create_kv(&sql);
        for stmt in SCHEMA {
            let _ = exec(&sql, stmt, vec![]);
        }
        Self {
            state,
            env,
            busy: Cell::new(false),
        }
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        let path = req.path();
        let result = match (req.method(), path.as_str()) {
            (Method::Post, "/enqueue") => match request_json::<EnqueueRequest>(&mut req).await {
                Ok(r) => self.enqueue(r).await,
                Err(e) => Err(internal("enqueue body", e)),
            },
            (Method::Post, "/status") => match request_json::<StatusRequest>(&mut req).await {
                Ok(r) => self.status(r).await,
                Err(e) => Err(internal("status body", e)),
            },
            (Method::Post, "/fail") => match request_json::<FailRequest>(&mut req).await {
                Ok(r) => self.fail(r).await,
                Err(e) => Err(internal("fail body", e)),
            },
            (Method::Post, "/idempotency/claim") => {
                match request_json::<IdempotencyRequest>(&mut req).await {
                    Ok(r) => self.claim_idempotency(r),
                    Err(e) => Err(internal("idempotency body", e)),
                }
            }
            (Method::Post, "/idempotency/release") => {
                match request_json::<IdempotencyRequest>(&mut req).await {
                    Ok(r) => self.release_idempotency(r),
                    Err(e) => Err(internal("idempotency body", e)),
                }
            }
            (Method::Get, "/latest") => self.latest(),
            (Method::Put, "/sync") => self.sync_write(req).await,
            #[cfg(feature = "test-routes")]
            (Method::Post, "/_test/fail-writes") => self.inject_failures(req).await,
            _ => Err(ApiError::Internal(format!("unknown scheduler call {path}"))),
        };
        respond(result)
    }

    async fn alarm(&self) -> worker::Result<Response> {
        // Never return Err or panic here: an Err is retried on the runtime's
        // schedule, not ours, and a panic resets the whole Wasm instance.
        if let Err(e) = self.run_alarm().await {
            crate::http::log(
                serde_json::json!({"level": "error", "at": "scheduler.alarm", "error": e.to_string()}),
            );
            let _ = self.set_alarm_at(now_ms() + 1000).await;
        }
        Response::ok("")
    }
}

impl KeyScheduler {
    fn sql(&self) -> SqlStorage {
        self.state.storage().sql()
    }

    fn bucket(&self) -> Result<Bucket, ApiError> {
        self.env
            .bucket("BUCKET")
            .map_err(|e| internal("BUCKET binding", e))
    }

    fn settings(&self) -> Settings {
        Settings::from_vars(|k| self.env.var(k).ok().map(|v| v.to_string())).unwrap_or_default()
    }

    /// Sets the alarm to an absolute time (an `i64` would be an offset).
    async fn set_alarm_at(&self, epoch_ms: i64) -> Result<(), ApiError> {
        let at = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(epoch_ms)
            .unwrap_or_else(chrono::Utc::now);
        self.state
            .storage()
            .set_alarm(at)
            .await
            .map_err(|e| internal("set_alarm", e))
    }

    fn load(&self) -> Result<KeyState, ApiError> {
        Ok(get_doc(&self.sql(), "state")?.unwrap_or_default())
    }

    fn save(&self, st: &KeyState) -> Result<(), ApiError> {
        put_doc(&self.sql(), "state", st)
    }

    fn remember_key(&self, key: &str) -> Result<(), ApiError> {
        if get_doc::<String>(&self.sql(), "key")?.is_none() {
            put_doc(&self.sql(), "key", &key.to_string())?;
        }
        Ok(())
    }

    fn key(&self) -> Result<String, ApiError> {
        get_doc(&self.sql(), "key")?
            .ok_or_else(|| ApiError::Internal("scheduler does not know its key".into()))
    }

    /// Applies `f` to this key's totals and marks them for pushing.
    fn count(&self, f: impl FnOnce(&mut Totals)) -> Result<(), ApiError> {
        let mut doc: StatsDoc = get_doc(&self.sql(), "stats")?.unwrap_or_default();
        f(&mut doc.totals);
        doc.version += 1;
        doc.dirty = true;
        put_doc(&self.sql(), "stats", &doc)
    }

    /// Pushes the totals to their shard if they changed; on failure they
    /// stay dirty and the alarm pushes them later.
    async fn push_stats(&self) {
        let Ok(Some(doc)) = get_doc::<StatsDoc>(&self.sql(), "stats") else {
            return;
        };
        if !doc.dirty {
            return;
        }
        let push = Push {
            source: format!("key:{}", self.state.id()),
            version: doc.version,
            totals: doc.totals,
        };
        if stats_shard::push(&self.env, &push).await.is_ok() {
            // Only clear the flag if nothing changed while the push ran.
            if let Ok(Some(mut now)) = get_doc::<StatsDoc>(&self.sql(), "stats") {
                if now.version == doc.version {
                    now.dirty = false;
                    let _ = put_doc(&self.sql(), "stats", &now);
                }
            }
        }
    }

    fn upload(&self, id: &str) -> Result<Option<UploadRow>, ApiError> {
        first(
            &self.sql(),
            "SELECT id, accepted_ms, size, state, committed_ms, etag, superseded_by, error_code, error_message \
             FROM uploads WHERE id = ?",
            vec![id.into()],
        )
    }

    fn insert_upload(
        &self,
        id: &str,
        accepted_ms: i64,
        size: u64,
        op: WriteOp,
        state: UploadState,
        superseded_by: Option<&str>,
    ) -> Result<(), ApiError> {
        exec(
            &self.sql(),
            "INSERT OR IGNORE INTO uploads (id, accepted_ms, size, op, state, superseded_by, updated_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
            vec![
                id.into(),
                accepted_ms.into(),
                (size as i64).into(),
                op.as_str().into(),
                state.as_str().into(),
                superseded_by.map(str::to_string).into(),
                now_ms().into(),
            ],
        )
    }

    fn mark_superseded(&self, id: &str, by: &str) -> Result<(), ApiError> {
        exec(
            &self.sql(),
            "UPDATE uploads SET state = 'superseded', superseded_by = ?, updated_ms = ? WHERE id = ?",
            vec![by.into(), now_ms().into(), id.into()],
        )?;
        self.drop_body(id)?;
        self.count(|t| t.superseded += 1)
    }

    fn mark_committed(
        &self,
        id: &str,
        committed_ms: i64,
        etag: Option<&str>,
    ) -> Result<(), ApiError> {
        exec(
            &self.sql(),
            "UPDATE uploads SET state = 'committed', committed_ms = ?, etag = ?, updated_ms = ? WHERE id = ?",
            vec![committed_ms.into(), etag.map(str::to_string).into(), now_ms().into(), id.into()],
        )?;
        self.drop_body(id)?;
        self.count(|t| {
            t.committed += 1;
            t.r2_writes += 1;
        })
    }

    fn mark_failed(&self, id: &str, code: &str, message: &str) -> Result<(), ApiError> {
        exec(
            &self.sql(),
            "UPDATE uploads SET state = 'failed', error_code = ?, error_message = ?, updated_ms = ? WHERE id = ?",
            vec![code.into(), message.into(), now_ms().into(), id.into()],
        )?;
        self.drop_body(id)?;
        self.count(|t| t.failed += 1)
    }

    /// Forgets a write's body; a staged one is queued for deletion.
    fn drop_body(&self, id: &str) -> Result<(), ApiError> {
        if let Some(msg) = self.body(id)? {
            if let Some(staged) = msg.staged_key() {
                self.add_garbage(staged)?;
            }
        }
        exec(
            &self.sql(),
            "DELETE FROM bodies WHERE id = ?",
            vec![id.into()],
        )
    }

    fn body(&self, id: &str) -> Result<Option<WriteMessage>, ApiError> {
        match first::<MessageRow>(
            &self.sql(),
            "SELECT message FROM bodies WHERE id = ?",
            vec![id.into()],
        )? {
            None => Ok(None),
            Some(r) => serde_json::from_str(&r.message)
                .map(Some)
                .map_err(|e| internal("stored body", e)),
        }
    }

    fn add_garbage(&self, staged_key: &str) -> Result<(), ApiError> {
        exec(
            &self.sql(),
            "INSERT OR IGNORE INTO garbage (staged_key) VALUES (?)",
            vec![staged_key.into()],
        )
    }

    /// When the pending write may start: its slot, or later if it is waiting
    /// out a retry backoff.
    fn pending_due(&self, st: &KeyState, now: i64) -> Result<Option<i64>, ApiError> {
        let Some(p) = &st.pending else {
            return Ok(None);
        };
        let retry: RetryDoc = get_doc(&self.sql(), "retry")?.unwrap_or_default();
        let retry_at = if retry.id == p.id {
            retry.retry_at_ms
        } else {
            0
        };
        Ok(Some(st.next_slot(now).max(retry_at)))
    }

    fn stats_dirty(&self) -> Result<bool, ApiError> {
        Ok(get_doc::<StatsDoc>(&self.sql(), "stats")?.is_some_and(|d| d.dirty))
    }

    /// Sets the alarm to the earliest moment something is due: the pending
    /// write's slot, staged bodies to delete, stats to push, statuses to
    /// prune. Clears it when nothing is.
    async fn reschedule(&self) -> Result<(), ApiError> {
        let now = now_ms();
        let st = self.load()?;
        let mut due: Option<i64> = None;
        let mut at = |t: i64| due = Some(due.map_or(t, |d: i64| d.min(t)));
        if let Some(t) = self.pending_due(&st, now)? {
            at(t);
        }
        if st.in_flight.is_some() {
            // Watchdog: if the running write dies with the instance, the
            // alarm recovers it.
            at(now + 2000);
        }
        if first::<GarbageRow>(
            &self.sql(),
            "SELECT staged_key FROM garbage LIMIT 1",
            vec![],
        )?
        .is_some()
        {
            at(now);
        }
        if self.stats_dirty()? {
            at(now + 5000);
        }
        let oldest: Option<MinRow> = first(
            &self.sql(),
            "SELECT MIN(updated_ms) AS t FROM uploads WHERE state IN ('committed','superseded','failed')",
            vec![],
        )?;
        if let Some(t) = oldest.and_then(|r| r.t) {
            at(t + self.settings().status_ttl_ms + 1000);
        }
        match due {
            Some(t) => self.set_alarm_at(t.max(now)).await,
            None => self
                .state
                .storage()
                .delete_alarm()
                .await
                .map_err(|e| internal("delete_alarm", e)),
        }
    }

    /// Re-arms the alarm if work is waiting and no alarm is set. Alarms are
    /// the only thing that moves a held write; this makes a lost one (seen
    /// once under heavy local load) heal on the next status poll.
    async fn ensure_alarm(&self) -> Result<(), ApiError> {
        let st = self.load()?;
        if st.pending.is_none() && st.in_flight.is_none() {
            return Ok(());
        }
        let alarm = self
            .state
            .storage()
            .get_alarm()
            .await
            .map_err(|e| internal("get_alarm", e))?;
        // None, or long overdue (an alarm whose run was lost with a reset
        // instance): set it again from the persisted state.
        if alarm.is_none_or(|t| t < now_ms() - 5000) {
            self.reschedule().await?;
        }
        Ok(())
    }

    // --- Asynchronous writes ------------------------------------------------

    async fn enqueue(&self, req: EnqueueRequest) -> Result<Response, ApiError> {
        self.remember_key(&req.newest.key)?;
        let mut st = self.load()?;
        let mut resp = EnqueueResponse::default();
        let newest_ref = WriteRef::new(req.newest.accepted_ms, req.newest.id.clone());

        let mut older = req.older.clone();
        older.sort_by(|a, b| {
            WriteRef::new(a.accepted_ms, a.id.clone())
                .cmp(&WriteRef::new(b.accepted_ms, b.id.clone()))
        });
        for w in older.iter().filter(|w| w.id != req.newest.id) {
            if self.upload(&w.id)?.is_some() {
                resp.duplicates += 1;
                continue;
            }
            resp.admitted += 1;
            // An older write of the batch is never held: the batch's newest
            // is newer, unless something the scheduler knows is newer still.
            let by = match st.newest() {
                Some(known) if *known > newest_ref => known.id.clone(),
                _ => req.newest.id.clone(),
            };
            self.supersede_new(w, &by)?;
        }

        if self.upload(&req.newest.id)?.is_some() {
            resp.duplicates += 1;
        } else {
            resp.admitted += 1;
            let m = &req.newest;
            match admit(&st, &newest_ref) {
                Admission::Superseded { by } => {
                    self.supersede_new(&OlderWrite::from(m), &by)?;
                }
                Admission::Hold { supersedes } => {
                    self.insert_upload(
                        &m.id,
                        m.accepted_ms,
                        m.size,
                        m.op,
                        UploadState::Scheduled,
                        None,
                    )?;
                    let text =
                        serde_json::to_string(m).map_err(|e| internal("encoding body", e))?;
                    exec(
                        &self.sql(),
                        "INSERT OR REPLACE INTO bodies (id, message) VALUES (?, ?)",
                        vec![m.id.as_str().into(), text.into()],
                    )?;
                    if let Some(old) = supersedes {
                        self.mark_superseded(&old, &m.id)?;
                    }
                    st.pending = Some(newest_ref);
                }
            }
        }
        self.save(&st)?;
        self.push_stats().await;
        self.reschedule().await?;
        ok_json(&resp)
    }

    /// Records a write the scheduler has not seen as superseded at once.
    fn supersede_new(&self, w: &OlderWrite, by: &str) -> Result<(), ApiError> {
        self.insert_upload(
            &w.id,
            w.accepted_ms,
            w.size,
            w.op,
            UploadState::Superseded,
            Some(by),
        )?;
        if let Some(staged) = &w.staged_key {
            self.add_garbage(staged)?;
        }
        self.count(|t| t.superseded += 1)
    }

    async fn run_alarm(&self) -> Result<(), ApiError> {
        let now = now_ms();
        self.prune(now)?;
        self.collect_garbage().await?;
        if self.busy.get() {
            // A write of this instance is running and reschedules when it
            // ends; look again shortly in case it never does.
            return self.set_alarm_at(now + BUSY_RECHECK_MS).await;
        }
        let mut st = self.load()?;
        if let Some(interrupted) = st.in_flight.clone() {
            self.recover(&mut st, interrupted).await?;
        }
        if let (Some(p), Some(due)) = (st.pending.clone(), self.pending_due(&st, now)?) {
            if due <= now {
                self.commit(p).await?;
            }
        }
        self.push_stats().await;
        self.reschedule().await
    }

    /// Commits the pending write `p` now: the slot was checked by the caller.
    async fn commit(&self, p: WriteRef) -> Result<(), ApiError> {
        let Some(msg) = self.body(&p.id)? else {
            let mut st = self.load()?;
            st.pending = None;
            st.watermark = st.watermark.max(Some(p.clone()));
            self.save(&st)?;
            return self.mark_failed(
                &p.id,
                "body_missing",
                "the write's body was lost before it could be committed",
            );
        };
        let start = now_ms();
        let mut st = self.load()?;
        st.pending = None;
        st.in_flight = Some(p.clone());
        st.last_start_ms = Some(start);
        self.save(&st)?;
        // Watchdog alarm before the write, in case this instance dies in it.
        let _ = self.set_alarm_at(start + 2000).await;

        self.busy.set(true);
        let result = self.write_to_r2(&msg, None, start).await;
        self.busy.set(false);

        let mut st = self.load()?;
        st.in_flight = None;
        match result {
            Ok(etag) => {
                st.watermark = st.watermark.max(Some(p.clone()));
                self.save(&st)?;
                self.mark_committed(&p.id, start, etag.as_deref())?;
            }
            Err(reason) => {
                let mut retry: RetryDoc = get_doc(&self.sql(), "retry")?.unwrap_or_default();
                if retry.id != p.id {
                    retry = RetryDoc {
                        id: p.id.clone(),
                        ..RetryDoc::default()
                    };
                }
                retry.attempts += 1;
                crate::http::log(
                    serde_json::json!({"level": "warn", "at": "scheduler.commit", "id": p.id, "attempt": retry.attempts, "error": reason}),
                );
                if let Some(newer) = st.pending.clone() {
                    // A newer write arrived meanwhile: it replaces this one.
                    self.save(&st)?;
                    self.mark_superseded(&p.id, &newer.id)?;
                } else if retry.attempts >= MAX_COMMIT_ATTEMPTS {
                    st.watermark = st.watermark.max(Some(p.clone()));
                    self.save(&st)?;
                    self.mark_failed(
                        &p.id,
                        "r2_write_failed",
                        &format!("R2 write failed {} times: {reason}", retry.attempts),
                    )?;
                } else {
                    retry.retry_at_ms = now_ms() + commit_backoff_ms(retry.attempts);
                    st.pending = Some(p.clone());
                    self.save(&st)?;
                    put_doc(&self.sql(), "retry", &retry)?;
                }
            }
        }
        Ok(())
    }

    /// A write was in flight when a previous instance died. If R2 has it
    /// (its `upload-id` matches), it is committed; otherwise it is retried
    /// (async) or failed (sync, whose body is gone with its request).
    async fn recover(&self, st: &mut KeyState, f: WriteRef) -> Result<(), ApiError> {
        let key = self.key()?;
        let head = self
            .bucket()?
            .head(key)
            .await
            .map_err(|e| internal("R2 head", e))?;
        let written = head
            .as_ref()
            .and_then(|o| o.custom_metadata().ok())
            .and_then(|m| m.get("upload-id").cloned())
            == Some(f.id.clone());
        st.in_flight = None;
        if written {
            st.watermark = st.watermark.clone().max(Some(f.clone()));
            self.save(st)?;
            let etag = head.map(|o| o.http_etag());
            return self.mark_committed(
                &f.id,
                st.last_start_ms.unwrap_or_else(now_ms),
                etag.as_deref(),
            );
        }
        let has_body = self.body(&f.id)?.is_some();
        match &st.pending {
            Some(newer) => {
                let newer = newer.id.clone();
                self.save(st)?;
                self.mark_superseded(&f.id, &newer)
            }
            None if has_body => {
                st.pending = Some(f);
                self.save(st)
            }
            None => {
                st.watermark = st.watermark.clone().max(Some(f.clone()));
                self.save(st)?;
                self.mark_failed(
                    &f.id,
                    "interrupted",
                    "the runtime stopped during this synchronous write",
                )
            }
        }
    }

    /// Performs one R2 operation for `msg`, starting at `start_ms`. The body
    /// comes from `stream` (sync writes), the message, or its staged object.
    async fn write_to_r2(
        &self,
        msg: &WriteMessage,
        stream: Option<web_sys::ReadableStream>,
        start_ms: i64,
    ) -> Result<Option<String>, String> {
        #[cfg(feature = "test-routes")]
        {
            let left: i64 = get_doc(&self.sql(), "inject_failures")
                .ok()
                .flatten()
                .unwrap_or(0);
            if left > 0 {
                let _ = put_doc(&self.sql(), "inject_failures", &(left - 1));
                return Err("injected R2 failure (test route)".into());
            }
        }
        let bucket = self.bucket().map_err(|e| e.to_string())?;
        if msg.op == WriteOp::Delete {
            bucket
                .delete(msg.key.clone())
                .await
                .map_err(|e| e.to_string())?;
            return Ok(None);
        }
        let data = match (&msg.body, stream) {
            (_, Some(s)) => Data::ReadableStream(s),
            (BodyRef::Empty, None) => Data::Empty,
            (BodyRef::Inline { .. }, None) => {
                Data::Bytes(msg.inline_bytes().ok_or("inline body does not decode")?)
            }
            (BodyRef::Staged { staged_key }, None) => {
                let obj = bucket
                    .get(staged_key.clone())
                    .execute()
                    .await
                    .map_err(|e| e.to_string())?
                    .ok_or("staged body missing")?;
                let body = obj.body().ok_or("staged body has no content")?;
                match body.response_body().map_err(|e| e.to_string())? {
                    worker::ResponseBody::Stream(rs) => Data::ReadableStream(rs),
                    worker::ResponseBody::Body(bytes) => Data::Bytes(bytes),
                    worker::ResponseBody::Empty => Data::Empty,
                }
            }
        };
        let m = &msg.meta;
        let http = HttpMetadata {
            content_type: Some(m.content_type_or_default().to_string()),
            content_language: m.content_language.clone(),
            content_disposition: m.content_disposition.clone(),
            content_encoding: m.content_encoding.clone(),
            cache_control: m.cache_control.clone(),
            cache_expiry: None,
        };
        let mut custom: HashMap<String, String> = m.custom.clone().into_iter().collect();
        custom.insert("upload-id".into(), msg.id.clone());
        custom.insert("accepted-at".into(), rfc3339_ms(msg.accepted_ms));
        custom.insert("committed-at".into(), rfc3339_ms(start_ms));
        let obj = bucket
            .put(msg.key.clone(), data)
            .http_metadata(http)
            .custom_metadata(custom)
            .execute()
            .await
            .map_err(|e| e.to_string())?;
        Ok(obj.map(|o| o.http_etag()))
    }

    fn prune(&self, now: i64) -> Result<(), ApiError> {
        let cutoff = now - self.settings().status_ttl_ms;
        exec(
            &self.sql(),
            "DELETE FROM uploads WHERE state IN ('committed','superseded','failed') AND updated_ms < ?",
            vec![cutoff.into()],
        )?;
        exec(
            &self.sql(),
            "DELETE FROM idempotency WHERE created_ms < ?",
            vec![(now - IDEMPOTENCY_TTL_MS).into()],
        )
    }

    async fn collect_garbage(&self) -> Result<(), ApiError> {
        let batch: Vec<GarbageRow> = rows(
            &self.sql(),
            "SELECT staged_key FROM garbage LIMIT ?",
            vec![(GARBAGE_PER_RUN as i64).into()],
        )?;
        if batch.is_empty() {
            return Ok(());
        }
        let bucket = self.bucket()?;
        for g in batch {
            if bucket.delete(g.staged_key.clone()).await.is_ok() {
                exec(
                    &self.sql(),
                    "DELETE FROM garbage WHERE staged_key = ?",
                    vec![g.staged_key.into()],
                )?;
            }
        }
        Ok(())
    }

    // --- Statuses ---------------------------------------------------------

    async fn status(&self, req: StatusRequest) -> Result<Response, ApiError> {
        self.ensure_alarm().await?;
        let start = now_ms();
        let deadline = start + req.wait_ms.max(0);
        let grace = start + STATS_GRACE_MS;
        loop {
            let row = self.upload(&req.id)?;
            let now = now_ms();
            let terminal = row
                .as_ref()
                .and_then(|r| UploadState::parse(&r.state))
                .is_some_and(UploadState::is_terminal);
            // A terminal state is answered once /stats counts it (the push
            // follows the state change by milliseconds), so a client that
            // saw its writes end sees them in /stats too.
            let counted = !terminal || now >= grace || !self.stats_dirty()?;
            if (terminal && counted) || (!terminal && now >= deadline) {
                return match row {
                    Some(r) => ok_json(&self.status_json(&req, r)?),
                    None if now > req.accepted_ms + req.ttl_ms => Err(ApiError::UploadNotFound(
                        "upload id expired or unknown".into(),
                    )),
                    None => ok_json(
                        &UploadStatus {
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
                        }
                        .to_json(),
                    ),
                };
            }
            Delay::from(std::time::Duration::from_millis(POLL_INTERVAL_MS)).await;
        }
    }

    fn status_json(
        &self,
        req: &StatusRequest,
        r: UploadRow,
    ) -> Result<serde_json::Value, ApiError> {
        let state = UploadState::parse(&r.state).unwrap_or(UploadState::Failed);
        let not_before_ms = if state == UploadState::Scheduled {
            self.pending_due(&self.load()?, now_ms())?
        } else {
            None
        };
        Ok(UploadStatus {
            id: r.id,
            key: req.key.clone(),
            state,
            accepted_ms: r.accepted_ms,
            size: r.size.max(0) as u64,
            not_before_ms,
            committed_ms: r.committed_ms,
            etag: r.etag,
            superseded_by: r.superseded_by,
            error_code: r.error_code,
            error_message: r.error_message,
        }
        .to_json())
    }

    /// The dead letter consumer gave up on a write: end it as `failed`
    /// unless the scheduler already has it.
    async fn fail(&self, req: FailRequest) -> Result<Response, ApiError> {
        self.remember_key(&req.key)?;
        if self.upload(&req.id)?.is_none() {
            self.insert_upload(
                &req.id,
                req.accepted_ms,
                req.size,
                WriteOp::Put,
                UploadState::Failed,
                None,
            )?;
            self.mark_failed(&req.id, &req.code, &req.message)?;
            self.push_stats().await;
            self.reschedule().await?;
        }
        ok_json(&serde_json::json!({"ok": true}))
    }

    // --- Idempotency --------------------------------------------------------

    fn claim_idempotency(&self, req: IdempotencyRequest) -> Result<Response, ApiError> {
        let now = now_ms();
        let existing: Option<IdemRow> = first(
            &self.sql(),
            "SELECT id FROM idempotency WHERE idem_key = ? AND created_ms >= ?",
            vec![
                req.idempotency_key.as_str().into(),
                (now - IDEMPOTENCY_TTL_MS).into(),
            ],
        )?;
        if let Some(row) = existing {
            return ok_json(&IdempotencyResponse {
                id: row.id,
                claimed: false,
            });
        }
        exec(
            &self.sql(),
            "INSERT OR REPLACE INTO idempotency (idem_key, id, created_ms) VALUES (?, ?, ?)",
            vec![
                req.idempotency_key.as_str().into(),
                req.id.as_str().into(),
                now.into(),
            ],
        )?;
        ok_json(&IdempotencyResponse {
            id: req.id,
            claimed: true,
        })
    }

    fn release_idempotency(&self, req: IdempotencyRequest) -> Result<Response, ApiError> {
        exec(
            &self.sql(),
            "DELETE FROM idempotency WHERE idem_key = ? AND id = ?",
            vec![req.idempotency_key.as_str().into(), req.id.as_str().into()],
        )?;
        ok_json(&serde_json::json!({"ok": true}))
    }

    // --- Read your writes ---------------------------------------------------

    fn latest(&self) -> Result<Response, ApiError> {
        let st = self.load()?;
        let held = [st.pending.clone(), st.in_flight.clone()]
            .into_iter()
            .flatten()
            .max();
        let pending = match held {
            Some(h) if st.watermark.as_ref().is_none_or(|w| h > *w) => self.body(&h.id)?,
            _ => None,
        };
        ok_json(&LatestResponse { pending })
    }

    // --- Synchronous writes -------------------------------------------------

    async fn sync_write(&self, req: Request) -> Result<Response, ApiError> {
        let header = req
            .headers()
            .get(SYNC_WRITE_HEADER)
            .ok()
            .flatten()
            .ok_or_else(|| ApiError::Internal("sync write without descriptor".into()))?;
        let decoded = STANDARD
            .decode(header.as_bytes())
            .map_err(|e| internal("sync descriptor", e))?;
        let msg: WriteMessage =
            serde_json::from_slice(&decoded).map_err(|e| internal("sync descriptor", e))?;
        self.remember_key(&msg.key)?;
        let now = now_ms();
        let me = WriteRef::new(msg.accepted_ms, msg.id.clone());
        let mut st = self.load()?;
        let decision = decide_sync(&st, &me, now);
        if !matches!(decision, SyncDecision::Go { .. }) {
            // Refused: release the client's streamed body instead of
            // leaving it half read.
            crate::http::discard_body(&req).await;
        }
        match decision {
            SyncDecision::Stale { newer } => Err(ApiError::NewerWritePending(format!(
                "the key's scheduler already holds a newer write ({newer}); this write would be older"
            ))),
            SyncDecision::RateLimited { free_at_ms } => {
                self.count(|t| t.rate_limited += 1)?;
                self.push_stats().await;
                self.reschedule().await?;
                let taken = SlotTaken { now_ms: now, free_at_ms };
                let resp = crate::http::error_response(&ApiError::RateLimited(format!(
                    "this key was written less than a second ago; retry in {} ms",
                    taken.reset_after_ms()
                )));
                for (name, value) in taken.headers() {
                    let _ = resp.headers().set(name, &value);
                }
                Ok(resp)
            }
            SyncDecision::Go { supersedes } => {
                self.insert_upload(&msg.id, msg.accepted_ms, msg.size, msg.op, UploadState::Scheduled, None)?;
                self.count(|t| t.accepted += 1)?;
                if let Some(old) = supersedes {
                    self.mark_superseded(&old, &msg.id)?;
                    st.pending = None;
                }
                st.in_flight = Some(me.clone());
                st.last_start_ms = Some(now);
                self.save(&st)?;
                let _ = self.set_alarm_at(now + 2000).await;

                let stream = if msg.op == WriteOp::Put && msg.size > 0 { req.inner().body() } else { None };
                self.busy.set(true);
                let result = self.write_to_r2(&msg, stream, now).await;
                self.busy.set(false);

                let mut st = self.load()?;
                st.in_flight = None;
                st.watermark = st.watermark.max(Some(me));
                self.save(&st)?;
                let resp = match result {
                    Ok(etag) => {
                        self.mark_committed(&msg.id, now, etag.as_deref())?;
                        if msg.op == WriteOp::Delete {
                            crate::http::empty(204)
                        } else {
                            json(
                                201,
                                &serde_json::json!({
                                    "id": msg.id, "key": msg.key, "etag": etag, "size": msg.size,
                                    "committed_at": rfc3339_ms(now),
                                }),
                            )
                        }
                    }
                    Err(reason) => {
                        self.mark_failed(&msg.id, "r2_write_failed", &reason)?;
                        Err(ApiError::Unavailable(format!("the R2 write failed: {reason}")))
                    }
                };
                self.push_stats().await;
                self.reschedule().await?;
                resp
            }
        }
    }

    #[cfg(feature = "test-routes")]
    async fn inject_failures(&self, mut req: Request) -> Result<Response, ApiError> {
        let body: serde_json::Value = request_json(&mut req).await?;
        let count = body["count"].as_i64().unwrap_or(0);
        put_doc(&self.sql(), "inject_failures", &count)?;
        ok_json(&serde_json::json!({"ok": true, "count": count}))
    }
}
