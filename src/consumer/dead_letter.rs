//! The dead letter consumer: writes whose messages could not be delivered
//! end `failed` with a reason, and their staged bodies are removed, so no
//! accepted id stays `queued` forever.
//!
//! A message too broken to name its id is logged and dropped: there is no
//! id to report it under.

use pipeline_core::message::{salvage, WriteMessage};
use serde_json::json;
use worker::{Env, MessageBatch, MessageExt, Method};

use crate::app::{scheduler, App};
use crate::http::log;
use crate::objects::call;
use crate::objects::protocol::FailRequest;

/// Processes one batch of the dead letter queue.
pub async fn handle_batch<T>(batch: &MessageBatch<T>, env: &Env) {
    let app = App::new(env.clone()).ok();
    for raw in batch.raw_iter() {
        let text = raw.body().as_string().unwrap_or_default();
        let (id, staged, reason) = match WriteMessage::decode(&text) {
            Ok(m) => (
                Some(m.id.clone()),
                m.staged_key().map(str::to_string),
                "delivery failed too many times".to_string(),
            ),
            Err(e) => {
                let (id, staged) = salvage(&text);
                (id, staged, format!("undecodable message: {e}"))
            }
        };
        if let (Some(k), Some(app)) = (&staged, &app) {
            if let Ok(bucket) = app.bucket() {
                let _ = bucket.delete(k.clone()).await;
            }
        }
        let claims = id
            .as_deref()
            .zip(app.as_ref())
            .and_then(|(id, app)| app.sealer().ok()?.open(id).ok());
        let done = match (&id, claims) {
            (Some(id), Some(c)) => {
                let req = FailRequest {
                    id: id.clone(),
                    key: c.key.clone(),
                    accepted_ms: c.accepted_ms,
                    size: c.size,
                    code: "dead_lettered".into(),
                    message: reason.clone(),
                };
                match scheduler(env, &c.key) {
                    Ok(stub) => {
                        call::<_, serde_json::Value>(&stub, Method::Post, "/fail", Some(&req))
                            .await
                            .is_ok()
                    }
                    Err(_) => false,
                }
            }
            _ => true,
        };
        log(
            json!({"level": "error", "at": "dead_letter", "id": id, "reason": reason, "recorded": done}),
        );
        if done {
            raw.ack();
        } else {
            raw.retry();
        }
    }
}
