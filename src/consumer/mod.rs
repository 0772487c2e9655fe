//! The consumer: takes queue batches, coalesces them per key and hands each
//! key's newest write to its scheduler. The decisions are
//! `pipeline_core::consumer`'s ([`plan_batch`], [`retry_delay_secs`]); this
//! file sends, acks and retries.
//!
//! - A message that does not decode is forwarded to the dead letter queue
//!   (and logged) and acked, so it never blocks its batch or loops.
//! - One scheduler call per distinct key per batch, made concurrently,
//!   carrying the newest write whole and naming the older ones; a write
//!   with an `Idempotency-Key` gets a call of its own (only its scheduler
//!   knows whether it is a repeat).
//! - Each message is acked or retried explicitly; a call that fails retries
//!   its messages after as long as they are already old (2 s up to 12 h),
//!   so with `max_retries = 16` a scheduler outage of about 18 h is ridden
//!   out. The handler never returns `Err` (that would reset the Wasm
//!   instance, see docs/DEVELOPING.md).
//!
//! Subrequests per invocation: one per distinct key in the batch, plus one
//! per write with an `Idempotency-Key` and per undecodable message. With `max_batch_size = 100` that is at most
//! 100; on the Free plan (50) set `max_batch_size` to 40 or less.
//!
//! [`dead_letter`] handles the dead letter queue; [`webhooks`] delivers
//! webhooks (and reports their dead letters).

pub mod dead_letter;
pub mod webhooks;

use futures_util::future::join_all;
use pipeline_core::consumer::{plan_batch, retry_delay_secs};
use pipeline_core::protocol::bindings;
use serde_json::json;
use wasm_bindgen::JsValue;
use worker::{
    Env, MessageBatch, MessageExt, QueueContentType, QueueRetryOptionsBuilder, RawMessage,
    RawMessageBuilder,
};

use crate::http::{log, now_ms};
use crate::objects::stub::ObjectStub;

/// A message's text: a text message as sent, anything else as JSON.
pub(crate) fn text_of(raw: &RawMessage) -> Option<String> {
    let body = raw.body();
    body.as_string().or_else(|| {
        js_sys::JSON::stringify(&body)
            .ok()
            .and_then(|s| s.as_string())
    })
}

/// Retries `raw` after as long as it is already old.
pub(crate) fn retry_later(raw: &RawMessage) {
    let age_ms = now_ms() - raw.timestamp().as_millis() as i64;
    let options = QueueRetryOptionsBuilder::new()
        .with_delay_seconds(retry_delay_secs(age_ms))
        .build();
    raw.retry_with_options(&options);
}

/// Processes one batch of the upload queue.
pub async fn handle_batch<T>(batch: &MessageBatch<T>, env: &Env) {
    let mut raws = Vec::new();
    let mut bodies = Vec::new();
    for raw in batch.raw_iter() {
        let text = text_of(&raw);
        #[cfg(feature = "test-routes")]
        if text.as_deref() == Some(crate::bench::NOOP_MESSAGE) {
            raw.ack();
            continue;
        }
        bodies.push(text);
        raws.push(raw);
    }
    let plan = plan_batch(&bodies);
    for (i, reason) in &plan.poison {
        if let (Some(raw), Some(text)) = (raws.get(*i), bodies.get(*i)) {
            poison(env, raw, text.as_deref().unwrap_or_default(), reason).await;
        }
    }

    let keys = plan.calls.len();
    // Keys concurrently; one key's calls in order.
    let raws = &raws;
    let groups = plan.by_key().into_iter().map(|group| async move {
        let mut out = Vec::with_capacity(group.len());
        for call in group {
            out.push(run_call(env, raws, call).await);
        }
        out
    });
    let calls: Vec<_> = join_all(groups).await.into_iter().flatten().collect();
    // One log line per batch, not per key: logging is not free.
    let (mut admitted, mut duplicates, mut failures) = (0, 0, Vec::new());
    for r in calls {
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
        "at": "consumer.batch", "queue": batch.queue(), "keys": keys, "admitted": admitted,
        "duplicates": duplicates, "retried_keys": failures,
    }));
}

/// One scheduler call of a batch; its messages are acked on success and
/// retried (with the age-based backoff) on failure.
async fn run_call(
    env: &Env,
    raws: &[RawMessage],
    call: &pipeline_core::consumer::KeyCall,
) -> Result<pipeline_core::protocol::EnqueueReply, String> {
    let result = match ObjectStub::scheduler(env, &call.key) {
        Ok(stub) => stub.call(&call.request).await,
        Err(e) => Err(e),
    };
    let messages = call.messages.iter().filter_map(|i| raws.get(*i));
    match result {
        Ok(r) => {
            messages.for_each(MessageExt::ack);
            Ok(r)
        }
        Err(e) => {
            messages.for_each(retry_later);
            Err(format!("{}: {e}", call.key))
        }
    }
}

/// An undecodable message: forwarded to the dead letter queue and acked.
/// If the forward fails it is retried, and the queue's own `max_retries`
/// sends it to the dead letter queue.
async fn poison(env: &Env, raw: &RawMessage, text: &str, reason: &str) {
    log(
        json!({"level": "error", "at": "consumer.poison", "reason": reason, "message_id": raw.id()}),
    );
    let forwarded = match env.queue(bindings::DEAD_LETTERS) {
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
        retry_later(raw);
    }
}
