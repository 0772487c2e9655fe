//! The consumer: takes queue batches, coalesces them per key and hands each
//! key's newest write to its scheduler.
//!
//! - Every message is decoded defensively; one that does not decode is
//!   forwarded to the dead letter queue (and logged) and acked, so it never
//!   blocks its batch or loops.
//! - One scheduler call per distinct key per batch, made concurrently,
//!   carrying the newest write whole and naming the older ones.
//! - Each message is acked or retried explicitly; the handler never returns
//!   `Err` (that would reset the Wasm instance, see TOOLCHAIN.md).
//!
//! Subrequests per invocation: one per distinct key in the batch (plus one
//! per undecodable message). With `max_batch_size = 100` that is at most
//! 100; on the Free plan (50) set `max_batch_size` to 40 or less.
//!
//! [`dead_letter`] handles the dead letter queue: its writes end `failed`
//! with a reason and their staged bodies are removed.

pub mod dead_letter;

use futures_util::future::join_all;
use pipeline_core::coalesce::group_by_key;
use pipeline_core::config::QUEUE_RETRY_BASE_DELAY_SECS;
use pipeline_core::message::WriteMessage;
use pipeline_core::schedule::WriteRef;
use serde_json::json;
use wasm_bindgen::JsValue;
use worker::{
    Env, MessageBatch, MessageExt, Method, QueueContentType, QueueRetryOptionsBuilder, RawMessage,
    RawMessageBuilder,
};

use crate::app::scheduler;
use crate::http::log;
use crate::objects::call;
use crate::objects::protocol::{EnqueueRequest, EnqueueResponse, OlderWrite};

/// A decoded message with its delivery handle.
struct Delivered {
    msg: WriteMessage,
    raw: RawMessage,
}

/// Processes one batch of the upload queue.
pub async fn handle_batch<T>(batch: &MessageBatch<T>, env: &Env) {
    let mut decoded = Vec::new();
    for raw in batch.raw_iter() {
        let body = raw.body();
        let text = body.as_string().or_else(|| {
            js_sys::JSON::stringify(&body)
                .ok()
                .and_then(|s| s.as_string())
        });
        #[cfg(feature = "test-routes")]
        if text.as_deref() == Some(crate::bench::NOOP_MESSAGE) {
            raw.ack();
            continue;
        }
        match text.as_deref().map(WriteMessage::decode) {
            Some(Ok(msg)) => decoded.push(Delivered { msg, raw }),
            Some(Err(e)) => {
                poison(
                    env,
                    raw,
                    text.as_deref().unwrap_or_default(),
                    &e.to_string(),
                )
                .await
            }
            None => poison(env, raw, "", "message body is not text").await,
        }
    }

    let groups = group_by_key(
        decoded,
        |d| d.msg.key.as_str(),
        |d| WriteRef::new(d.msg.accepted_ms, d.msg.id.clone()),
    );
    let keys = groups.len();
    let calls = groups.into_iter().map(|g| async move {
        let req = EnqueueRequest {
            newest: g.newest.msg.clone(),
            older: g.older.iter().map(|d| OlderWrite::from(&d.msg)).collect(),
        };
        let result = match scheduler(env, &g.key) {
            Ok(stub) => {
                call::<_, EnqueueResponse>(&stub, Method::Post, "/enqueue", Some(&req)).await
            }
            Err(e) => Err(e),
        };
        let all = std::iter::once(&g.newest)
            .chain(&g.older)
            .chain(&g.duplicates);
        match result {
            Ok(r) => {
                all.for_each(|d| d.raw.ack());
                Ok(r)
            }
            Err(e) => {
                let retry = QueueRetryOptionsBuilder::new()
                    .with_delay_seconds(QUEUE_RETRY_BASE_DELAY_SECS)
                    .build();
                all.for_each(|d| d.raw.retry_with_options(&retry));
                Err(format!("{}: {e}", g.key))
            }
        }
    });
    // One log line per batch, not per key: logging is not free.
    let (mut admitted, mut duplicates, mut failures) = (0, 0, Vec::new());
    for r in join_all(calls).await {
        match r {
            Ok(r) => {
                admitted += r.admitted;
                duplicates += r.duplicates;
            }
            Err(e) => failures.push(e),
        }
    }
    log(json!({
        "level": if failures.is_empty() { "info" } else { "warn" },
        "at": "consumer.batch", "keys": keys, "admitted": admitted,
        "duplicates": duplicates, "retried_keys": failures,
    }));
}

/// An undecodable message: forwarded to the dead letter queue and acked.
/// If the forward fails it is retried, and the queue's own `max_retries`
/// sends it to the dead letter queue.
async fn poison(env: &Env, raw: RawMessage, text: &str, reason: &str) {
    log(
        json!({"level": "error", "at": "consumer.poison", "reason": reason, "message_id": raw.id()}),
    );
    let forwarded = match env.queue("DEAD_LETTERS") {
        Ok(q) => q
            .send_raw(
                RawMessageBuilder::new(JsValue::from_str(text))
                    .build_with_content_type(QueueContentType::Text),
            )
            .await
            .is_ok(),
        Err(_) => false,
    };
    if forwarded {
        raw.ack();
    } else {
        raw.retry();
    }
}
