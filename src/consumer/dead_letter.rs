//! The dead letter consumer: a write whose message could not be delivered
//! ends `failed` with a reason, so no accepted id stays `queued` forever.
//! `pipeline_core::consumer::dead_letter` decides what happens:
//!
//! - a message that decodes goes to its key's scheduler as a
//!   [`FailRequest`]; the scheduler decides (it may already hold or have
//!   ended the write) and owns its staged body from then on: this consumer
//!   never deletes it;
//! - a message that does not decode is salvaged: if its id is one this
//!   deployment sealed, the scheduler of the id's key is asked the same;
//!   otherwise no scheduler can hold the write, and a salvaged staged body
//!   is deleted here.
//!
//! A scheduler that cannot be reached is asked again later (the message is
//! retried after as long as it is already old).

use pipeline_core::consumer::{dead_letter, DeadLetter};
use pipeline_core::error::ApiError;
use pipeline_core::protocol::FailRequest;
use serde_json::json;
use worker::{Env, MessageBatch, MessageExt};

use super::{retry_later, text_of};
use crate::app::App;
use crate::http::log;
use crate::objects::stub::ObjectStub;

/// The code a dead-lettered write's status carries.
const CODE: &str = "dead_lettered";

/// Processes one batch of the dead letter queue.
pub async fn handle_batch<T>(batch: &MessageBatch<T>, env: &Env) {
    let app = App::new(env.clone());
    if let Err(e) = &app {
        log(json!({"level": "error", "at": "dead_letter", "error": e.to_string()}));
    }
    for raw in batch.raw_iter() {
        let text = text_of(&raw).unwrap_or_default();
        let (id, reason, result) = match dead_letter(&text) {
            DeadLetter::Fail { msg, reason } => {
                let req = FailRequest::dead_lettered(&msg, &reason);
                (Some(msg.id), reason, fail(env, &req).await)
            }
            DeadLetter::Salvage {
                id,
                staged_key,
                reason,
            } => {
                let result =
                    salvage(env, app.as_ref().ok(), id.as_deref(), staged_key, &reason).await;
                (id, reason, result)
            }
        };
        log(json!({
            "level": "error", "at": "dead_letter", "id": id, "reason": reason,
            "recorded": result.is_ok(), "error": result.as_ref().err().map(ToString::to_string),
        }));
        match result {
            Ok(()) => raw.ack(),
            Err(_) => retry_later(&raw),
        }
    }
}

/// Asks the write's scheduler to end it `failed`.
async fn fail(env: &Env, req: &FailRequest) -> Result<(), ApiError> {
    ObjectStub::scheduler(env, &req.key)?
        .call(req)
        .await
        .map(|_| ())
}

/// A message that does not decode.
async fn salvage(
    env: &Env,
    app: Option<&App>,
    id: Option<&str>,
    staged_key: Option<String>,
    reason: &str,
) -> Result<(), ApiError> {
    let app = app.ok_or_else(|| ApiError::Internal("the Worker's settings do not parse".into()))?;
    if let Some(id) = id {
        // Without the secret an id of this deployment cannot be told from
        // a foreign one: try again later rather than guess.
        if let Ok(c) = app.sealer()?.open(id) {
            let req = FailRequest {
                id: id.to_string(),
                key: c.key,
                accepted_ms: c.accepted_ms,
                size: c.size,
                op: c.op,
                staged_key,
                idempotency_key: None,
                code: CODE.into(),
                message: reason.to_string(),
                callback_url: None,
            };
            return fail(env, &req).await;
        }
    }
    // Not an id of this deployment: no scheduler holds this write.
    if let Some(k) = staged_key {
        app.bucket()?
            .delete(k)
            .await
            .map_err(|e| ApiError::Unavailable(format!("R2 delete: {e}")))?;
    }
    Ok(())
}
