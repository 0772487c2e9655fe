//! The key scheduler's I/O beyond SQLite: `pipeline_core::engine`'s
//! [`Blobs`] over R2, [`Clock`] over the runtime's clock, timers and the
//! object's alarm, [`StatsSink`] over the stats shards, and [`Notifier`]
//! over the webhook and commit-event queues.
//!
//! Staged bodies are never read into Wasm memory: `open_staged` hands the
//! R2 body stream to the put (docs/DEVELOPING.md, "R2 bodies without
//! buffering").

use std::collections::HashMap;
use std::time::Duration;

use pipeline_core::engine::{
    BlobError, Blobs, Clock, HostError, Notifier, OutboxEntry, PutBody, StatsSink, Store,
    StoredHead, Via,
};
use pipeline_core::message::WriteMessage;
use pipeline_core::protocol::bindings;
use pipeline_core::r2_errors::classify;
use pipeline_core::stats::{Push, SourcePush};
use pipeline_core::time::rfc3339_ms;
use wasm_bindgen::JsValue;
use worker::worker_sys::types::DurableObjectStorage;
use worker::{
    Bucket, Data, Delay, Env, HttpMetadata, QueueContentType, RawMessageBuilder, ResponseBody,
    SqlStorage, State, Storage,
};

/// Everything a key's scheduler does I/O with; the engine's host.
pub struct SchedulerHost {
    pub(super) env: Env,
    pub(super) storage: Storage,
    pub(super) sql: SqlStorage,
    /// The storage as the runtime has it, for `transactionSync`.
    pub(super) raw_storage: Option<DurableObjectStorage>,
    /// This scheduler's stats source name.
    source: String,
    /// Which of its lazily created tables exist.
    pub(super) tables: super::scheduler_store::Tables,
    /// The oldest terminal status row's last change, once read.
    pub(super) oldest: super::scheduler_store::OldestTerminal,
    /// The scheduler's document, parsed, as this instance last read or
    /// wrote it.
    pub(super) doc: super::scheduler_store::DocCache,
}

impl SchedulerHost {
    pub fn new(state: &State, env: Env) -> Self {
        let storage = state.storage();
        Self {
            sql: storage.sql(),
            raw_storage: state.as_raw().storage().ok(),
            storage,
            source: format!("key:{}", state.id()),
            tables: super::scheduler_store::Tables::default(),
            oldest: super::scheduler_store::OldestTerminal::default(),
            doc: super::scheduler_store::DocCache::default(),
            env,
        }
    }

    fn bucket(&self) -> Result<Bucket, BlobError> {
        self.env
            .bucket(bindings::BUCKET)
            .map_err(|e| BlobError::Permanent(format!("BUCKET binding: {e}")))
    }

    /// Logs a failed R2 write of a queued write with its attempt number
    /// (a failed sync write is answered to its client instead).
    fn log_failure<T>(&self, id: &str, result: Result<T, BlobError>) -> Result<T, BlobError> {
        if let Err(e) = &result {
            // A write in flight always has a full row: no acceptance time needed.
            let queued = matches!(self.upload(id, 0), Ok(Some(r)) if r.via == Via::Queue);
            if queued {
                let retry = self.meta().map(|m| m.retry).unwrap_or_default();
                let attempt = if retry.id == id {
                    retry.attempts + 1
                } else {
                    1
                };
                crate::http::log(serde_json::json!({
                    "level": "warn", "at": "scheduler.commit", "id": id,
                    "attempt": attempt, "error": e.to_string(),
                }));
            }
        }
        result
    }
}

/// An R2 failure, by what its text says.
fn r2(e: worker::Error) -> BlobError {
    classify(&e.to_string())
}

impl Blobs for SchedulerHost {
    type Stream = Data;

    async fn head(&self, key: &str) -> Result<Option<StoredHead>, BlobError> {
        let obj = self.bucket()?.head(key).await.map_err(r2)?;
        Ok(obj.map(|o| StoredHead {
            upload_id: o
                .custom_metadata()
                .ok()
                .and_then(|m| m.get("upload-id").cloned()),
            etag: o.http_etag(),
        }))
    }

    async fn open_staged(&self, staged_key: &str) -> Result<Option<Data>, BlobError> {
        let Some(obj) = self.bucket()?.get(staged_key).execute().await.map_err(r2)? else {
            return Ok(None);
        };
        let body = obj
            .body()
            .ok_or_else(|| BlobError::Transient("the staged object came without a body".into()))?;
        Ok(Some(match body.response_body().map_err(r2)? {
            ResponseBody::Stream(s) => Data::ReadableStream(s),
            ResponseBody::Body(b) => Data::Bytes(b),
            ResponseBody::Empty => Data::Empty,
        }))
    }

    async fn put(
        &self,
        msg: &WriteMessage,
        body: PutBody<Data>,
        start_ms: i64,
    ) -> Result<String, BlobError> {
        let result = self.put_now(msg, body, start_ms).await;
        self.log_failure(&msg.id, result)
    }

    async fn delete(&self, key: &str) -> Result<(), BlobError> {
        let result = match self.injected().await {
            Ok(()) => self.bucket()?.delete(key).await.map_err(r2),
            Err(e) => Err(e),
        };
        let writing = self.meta().ok().and_then(|m| m.state.in_flight);
        self.log_failure(writing.as_ref().map_or("", |w| w.id.as_str()), result)
    }

    async fn delete_staged(&self, staged_key: &str) -> Result<(), BlobError> {
        self.bucket()?.delete(staged_key).await.map_err(r2)
    }
}

impl SchedulerHost {
    /// Before an R2 write of the user's key: the stall and failure the
    /// fault tests armed, if any (`test-routes` builds only).
    async fn injected(&self) -> Result<(), BlobError> {
        #[cfg(feature = "test-routes")]
        {
            let (stall_ms, result) = faults::take(&self.sql);
            if stall_ms > 0 {
                self.sleep(stall_ms).await;
            }
            result
        }
        #[cfg(not(feature = "test-routes"))]
        Ok(())
    }

    async fn put_now(
        &self,
        msg: &WriteMessage,
        body: PutBody<Data>,
        start_ms: i64,
    ) -> Result<String, BlobError> {
        self.injected().await?;
        let data = match body {
            PutBody::Empty => Data::Empty,
            PutBody::Bytes(b) => Data::Bytes(b),
            PutBody::Stream(d) => d,
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
        self.bucket()?
            .put(msg.key.clone(), data)
            .http_metadata(http)
            .custom_metadata(custom)
            .execute()
            .await
            .map_err(r2)?
            .map(|o| o.http_etag())
            .ok_or_else(|| BlobError::Transient("the put returned no object".into()))
    }
}

impl Clock for SchedulerHost {
    fn now_ms(&self) -> i64 {
        crate::http::now_ms()
    }

    async fn sleep(&self, ms: i64) {
        Delay::from(Duration::from_millis(u64::try_from(ms).unwrap_or(0))).await;
    }

    async fn set_alarm(&self, at_ms: i64) -> Result<(), HostError> {
        // An absolute time: an `i64` would be taken as an offset.
        let at = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(at_ms)
            .ok_or_else(|| HostError(format!("alarm time {at_ms} out of range")))?;
        #[cfg(feature = "test-routes")]
        crate::billing::alarm_set();
        self.storage
            .set_alarm(at)
            .await
            .map_err(|e| HostError(format!("set_alarm: {e}")))
    }

    async fn delete_alarm(&self) -> Result<(), HostError> {
        #[cfg(feature = "test-routes")]
        crate::billing::alarm_delete();
        self.storage
            .delete_alarm()
            .await
            .map_err(|e| HostError(format!("delete_alarm: {e}")))
    }

    async fn get_alarm(&self) -> Result<Option<i64>, HostError> {
        self.storage
            .get_alarm()
            .await
            .map_err(|e| HostError(format!("get_alarm: {e}")))
    }
}

impl StatsSink for SchedulerHost {
    async fn push_stats(&self, push: &SourcePush) -> Result<(), HostError> {
        let push = Push {
            source: self.source.clone(),
            push: push.clone(),
        };
        crate::stats::push(&self.env, &push)
            .await
            .map_err(|e| HostError(e.to_string()))
    }
}

/// Sends `text` to the queue bound as `binding`, as JSON text (a
/// structured-clone send would mangle maps, docs/DEVELOPING.md).
async fn send_text(env: &Env, binding: &str, text: String) -> Result<(), HostError> {
    let q = env
        .queue(binding)
        .map_err(|e| HostError(format!("{binding} binding: {e}")))?;
    q.send_raw(
        RawMessageBuilder::new(JsValue::from_str(&text))
            .build_with_content_type(QueueContentType::Text),
    )
    .await
    .map_err(|e| HostError(format!("{binding} send: {e}")))
}

impl Notifier for SchedulerHost {
    async fn notify(&self, entries: &[OutboxEntry]) -> Result<(), HostError> {
        let events = self.env.queue(bindings::EVENTS).is_ok();
        let sends = entries.iter().map(|e| async move {
            if e.callback_url.is_some() {
                let text = serde_json::to_string(e).map_err(|x| HostError(x.to_string()))?;
                send_text(&self.env, bindings::WEBHOOKS, text).await?;
            }
            if events {
                // `{"id": <webhook-id>, "type", "data"}`: the id lets
                // downstream consumers drop repeats.
                let mut v: serde_json::Value =
                    serde_json::from_str(&e.event).map_err(|x| HostError(x.to_string()))?;
                if let Some(m) = v.as_object_mut() {
                    m.insert("id".into(), serde_json::Value::from(e.msg_id.clone()));
                }
                send_text(&self.env, bindings::EVENTS, v.to_string()).await?;
            }
            Ok::<(), HostError>(())
        });
        let results = futures_util::future::join_all(sends).await;
        match results.into_iter().find_map(Result::err) {
            Some(e) => {
                crate::http::log(serde_json::json!({
                    "level": "warn", "at": "scheduler.outbox", "error": e.to_string(),
                }));
                Err(e)
            }
            None => Ok(()),
        }
    }
}

/// Fault injection for the fault tests (`POST /_test/fail-writes/{key}`):
/// the key's next `count` R2 writes (puts and deletes of the user's key)
/// fail as a transient error would, and (`stall_ms`) the next one waits
/// before it starts. Only in a `test-routes` build.
#[cfg(feature = "test-routes")]
pub mod faults {
    use pipeline_core::engine::BlobError;
    use pipeline_core::protocol::{Ack, Call};
    use serde::{Deserialize, Serialize};
    use worker::SqlStorage;

    use crate::objects::sql::{get_doc, put_doc};

    /// Where what is armed is kept: one record, read once per R2 write.
    const ARMED: &str = "inject_faults";

    /// Makes the scheduler's next `count` R2 writes fail.
    #[derive(Debug, Default, Serialize, Deserialize)]
    pub struct FailWrites {
        pub count: i64,
        /// The next R2 write (once) waits this long before it starts: time
        /// for a test to kill the runtime while a write is in flight.
        #[serde(default)]
        pub stall_ms: i64,
    }

    impl Call for FailWrites {
        const PATH: &'static str = "/_test/fail-writes";
        type Reply = Ack;
    }

    /// Arms the failures.
    ///
    /// # Errors
    /// Storage errors.
    pub fn arm(sql: &SqlStorage, f: &FailWrites) -> Result<Ack, pipeline_core::error::ApiError> {
        put_doc(sql, ARMED, f)?;
        Ok(Ack { ok: true })
    }

    /// Takes what is armed for the next R2 write: how long it waits
    /// (once), and one failure.
    pub(crate) fn take(sql: &SqlStorage) -> (i64, Result<(), BlobError>) {
        let mut armed: FailWrites = get_doc(sql, ARMED).ok().flatten().unwrap_or_default();
        let stall_ms = std::mem::take(&mut armed.stall_ms);
        let fail = armed.count > 0;
        if fail {
            armed.count -= 1;
        }
        if fail || stall_ms > 0 {
            let _ = put_doc(sql, ARMED, &armed);
        }
        let result = if fail {
            Err(BlobError::Transient(
                "injected R2 failure (test route)".into(),
            ))
        } else {
            Ok(())
        };
        (stall_ms, result)
    }
}
