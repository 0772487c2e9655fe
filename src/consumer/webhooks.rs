//! The webhook queue: POSTs each ended write's event to its callback URL,
//! signed per Standard Webhooks, and reports how it went to the key's
//! scheduler (the status's `callback`).
//!
//! - The URL is checked against `WEBHOOK_ALLOWED_ORIGINS` again before
//!   every send: a URL the operator no longer allows gets no request (the
//!   callback is reported `failed`).
//! - Without a usable `WEBHOOK_SECRET` nothing is sent unsigned: the
//!   message is retried later (and logged), so fixing the secret delivers.
//! - `2xx`: acked, reported `delivered`. Anything else, or no answer within
//!   [`SEND_TIMEOUT_MS`]: reported as a try and retried after as long as
//!   the message is already old (`retry_delay_secs`); after the queue's
//!   `max_retries` it reaches the webhook dead letter queue, whose consumer
//!   ([`handle_dead_letters`]) reports `failed`.
//! - Reports are best effort: a delivery is never repeated only because its
//!   report did not reach the scheduler.
//!
//! The handler never returns `Err` (docs/DEVELOPING.md).

use std::time::Duration;

use futures_util::future::{select, Either};
use pipeline_core::engine::OutboxEntry;
use pipeline_core::protocol::{CallbackOutcome, CallbackReport};
use pipeline_core::webhook::{secret_key, sign};
use serde_json::json;
use wasm_bindgen::JsValue;
use worker::{
    AbortController, Delay, Env, Fetch, Headers, MessageBatch, MessageExt, Method, RawMessage,
    Request, RequestInit,
};

use super::{retry_later, text_of};
use crate::app::App;
use crate::http::{log, now_ms};
use crate::objects::stub::ObjectStub;

/// How long a receiver has to answer one delivery.
pub const SEND_TIMEOUT_MS: u64 = 10_000;

/// What became of one delivery.
enum Sent {
    Delivered(u16),
    Refused(String),
}

/// Processes one batch of the webhook queue.
pub async fn handle_batch<T>(batch: &MessageBatch<T>, env: &Env) {
    let app = match App::new(env.clone()) {
        Ok(a) => a,
        Err(e) => {
            log(json!({"level": "error", "at": "webhook", "error": e.to_string()}));
            batch.raw_iter().for_each(|r| retry_later(&r));
            return;
        }
    };
    let raws: Vec<RawMessage> = batch.raw_iter().collect();
    let sends = raws.iter().map(|raw| deliver(&app, env, raw));
    futures_util::future::join_all(sends).await;
}

/// One message: send, report, ack or retry.
async fn deliver(app: &App, env: &Env, raw: &RawMessage) {
    let Some(entry) = text_of(raw).and_then(|t| serde_json::from_str::<OutboxEntry>(&t).ok())
    else {
        log(
            json!({"level": "error", "at": "webhook", "error": "undecodable webhook message; dropped"}),
        );
        raw.ack();
        return;
    };
    let Some(url) = entry.callback_url.clone() else {
        raw.ack();
        return;
    };
    if app.allowed_callbacks().check(&url).is_err() {
        log(json!({
            "level": "error", "at": "webhook", "id": entry.upload_id,
            "error": "callback origin no longer on WEBHOOK_ALLOWED_ORIGINS; not sent",
        }));
        report(env, &entry, CallbackOutcome::Failed).await;
        raw.ack();
        return;
    }
    let key = match app.secret("WEBHOOK_SECRET").map(|s| secret_key(&s)) {
        Some(Ok(k)) => k,
        Some(Err(e)) => {
            log(json!({"level": "error", "at": "webhook", "error": e.to_string()}));
            retry_later(raw);
            return;
        }
        None => {
            log(json!({
                "level": "error", "at": "webhook",
                "error": "WEBHOOK_SECRET is not set; webhooks wait (never sent unsigned)",
            }));
            retry_later(raw);
            return;
        }
    };
    match send(&url, &key, &entry).await {
        Sent::Delivered(status) => {
            log(json!({"level": "info", "at": "webhook", "id": entry.upload_id, "status": status}));
            report(env, &entry, CallbackOutcome::Delivered).await;
            raw.ack();
        }
        Sent::Refused(why) => {
            log(json!({"level": "warn", "at": "webhook", "id": entry.upload_id, "error": why}));
            report(env, &entry, CallbackOutcome::Retrying).await;
            retry_later(raw);
        }
    }
}

/// POSTs the event, signed, and waits for a `2xx` within the timeout.
async fn send(url: &str, key: &[u8], entry: &OutboxEntry) -> Sent {
    let timestamp = now_ms() / 1000;
    let signature = sign(key, &entry.msg_id, timestamp, &entry.event);
    let headers = Headers::new();
    for (name, value) in [
        ("Content-Type", "application/json"),
        ("webhook-id", entry.msg_id.as_str()),
        ("webhook-timestamp", &timestamp.to_string()),
        ("webhook-signature", signature.as_str()),
        ("User-Agent", "r2-hotkey-pipeline-webhooks"),
    ] {
        if let Err(e) = headers.set(name, value) {
            return Sent::Refused(format!("header {name}: {e}"));
        }
    }
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_headers(headers)
        .with_body(Some(JsValue::from_str(&entry.event)));
    let req = match Request::new_with_init(url, &init) {
        Ok(r) => r,
        Err(e) => return Sent::Refused(format!("request: {e}")),
    };
    let abort = AbortController::default();
    let signal = abort.signal();
    let fetch = Fetch::Request(req);
    let sending = Box::pin(fetch.send_with_signal(&signal));
    let timeout = Box::pin(Delay::from(Duration::from_millis(SEND_TIMEOUT_MS)));
    let outcome = select(sending, timeout).await;
    let sent = match outcome {
        Either::Left((Ok(resp), _)) => {
            let status = resp.status_code();
            if (200..300).contains(&status) {
                Sent::Delivered(status)
            } else {
                Sent::Refused(format!("answered {status}"))
            }
        }
        Either::Left((Err(e), _)) => Sent::Refused(format!("no answer: {e}")),
        Either::Right(((), _)) => {
            abort.abort();
            Sent::Refused(format!("no answer within {SEND_TIMEOUT_MS} ms"))
        }
    };
    sent
}

/// Tells the key's scheduler how a delivery went (best effort, logged).
async fn report(env: &Env, entry: &OutboxEntry, outcome: CallbackOutcome) {
    let call = CallbackReport {
        id: entry.upload_id.clone(),
        accepted_ms: entry.accepted_ms,
        outcome,
    };
    let result = match ObjectStub::scheduler(env, &entry.key) {
        Ok(stub) => stub.call(&call).await.map(|_| ()),
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        log(json!({
            "level": "warn", "at": "webhook.report", "id": entry.upload_id,
            "error": e.to_string(),
        }));
    }
}

/// The webhook dead letter queue: deliveries that used up their retries.
/// Each is reported `failed` to its scheduler, then acked (retried while
/// the scheduler cannot be reached).
pub async fn handle_dead_letters<T>(batch: &MessageBatch<T>, env: &Env) {
    for raw in batch.raw_iter() {
        let Some(entry) = text_of(&raw).and_then(|t| serde_json::from_str::<OutboxEntry>(&t).ok())
        else {
            raw.ack();
            continue;
        };
        log(json!({
            "level": "error", "at": "webhook.dead_letter", "id": entry.upload_id,
            "error": "webhook not delivered after the queue's retries",
        }));
        let call = CallbackReport {
            id: entry.upload_id.clone(),
            accepted_ms: entry.accepted_ms,
            outcome: CallbackOutcome::Failed,
        };
        let result = match ObjectStub::scheduler(env, &entry.key) {
            Ok(stub) => stub.call(&call).await.map(|_| ()),
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => raw.ack(),
            Err(_) => retry_later(&raw),
        }
    }
}
