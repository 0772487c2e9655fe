//! The producer's enqueue, free of the runtime: send the accepted write to
//! the queue, then (with an `Idempotency-Key`) learn which id holds the key.
//!
//! The order is what makes an idempotent repeat safe: the key is claimed
//! only *after* the queue took the message, so the id a repeat is answered
//! with was always enqueued. Two racing requests with one key both send;
//! the first claim wins, both are answered with the winner's id, and the
//! loser's message is dropped by the key's scheduler when delivered (it
//! finds the key held by another id). A producer that dies between send
//! and claim leaves no hole either: the delivery itself claims the key.

use crate::engine::planted::{active, Bug};
use crate::error::ApiError;
use crate::message::WriteMessage;

/// What the producer needs from the runtime.
#[allow(async_fn_in_trait)]
pub trait ProducerIo {
    /// Sends the write to the upload queue.
    ///
    /// # Errors
    /// [`ApiError::QueueUnavailable`] when the queue did not take it.
    async fn send(&self, msg: &WriteMessage) -> Result<(), ApiError>;
    /// Claims `idem_key` for `id` at the key's scheduler; returns the id
    /// that holds it.
    ///
    /// # Errors
    /// [`ApiError::Unavailable`] when the scheduler cannot be reached.
    async fn claim(&self, key: &str, idem_key: &str, id: &str) -> Result<String, ApiError>;
    /// Removes a staged body that no accepted write refers to.
    async fn delete_staged(&self, staged_key: &str);
    /// Sends several writes in one queue batch send: all are taken or
    /// none is.
    ///
    /// # Errors
    /// [`ApiError::QueueUnavailable`] when the queue took none of them.
    async fn send_batch(&self, msgs: &[&WriteMessage]) -> Result<(), ApiError>;
}

/// The id a `202` names, and whether it is this request's own write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enqueued {
    pub id: String,
    /// `false` for an idempotent repeat answered with the first write's id.
    pub own: bool,
    /// Whether the producer counts this write in `/stats accepted`. A write
    /// with an `Idempotency-Key` is counted by its scheduler when delivered
    /// (only there is it known whether it is a repeat that is dropped).
    pub count_accepted: bool,
}

/// Enqueues `msg` (already stamped) and resolves its `Idempotency-Key`.
///
/// # Errors
/// `queue_unavailable` when the send fails (the staged body, if any, is
/// removed: nothing is left behind); `unavailable` when the claim cannot be
/// made after the send (the write is enqueued and will be written; a retry
/// with the same key is answered with the id that holds it).
pub async fn enqueue(io: &impl ProducerIo, msg: &WriteMessage) -> Result<Enqueued, ApiError> {
    if active(Bug::ClaimBeforeSend) {
        if let Some(k) = &msg.idempotency_key {
            let holder = io.claim(&msg.key, k, &msg.id).await?;
            if holder != msg.id {
                if let Some(s) = msg.staged_key() {
                    io.delete_staged(s).await;
                }
                return Ok(Enqueued {
                    id: holder,
                    own: false,
                    count_accepted: false,
                });
            }
        }
    }
    if let Err(e) = io.send(msg).await {
        if let Some(s) = msg.staged_key() {
            io.delete_staged(s).await;
        }
        return Err(e);
    }
    match &msg.idempotency_key {
        Some(k) if !active(Bug::ClaimBeforeSend) => {
            let holder = io.claim(&msg.key, k, &msg.id).await?;
            Ok(Enqueued {
                own: holder == msg.id,
                id: holder,
                count_accepted: false,
            })
        }
        _ => Ok(Enqueued {
            id: msg.id.clone(),
            own: true,
            count_accepted: msg.idempotency_key.is_none(),
        }),
    }
}

/// Enqueues several stamped writes (`POST /batch`) with as few queue batch
/// sends as the limits allow, then resolves each `Idempotency-Key` as
/// [`enqueue`] does. A send that fails fails exactly its own writes (their
/// staged bodies removed): every answer says what happened to its write.
pub async fn enqueue_batch(
    io: &impl ProducerIo,
    msgs: &[WriteMessage],
) -> Vec<Result<Enqueued, ApiError>> {
    let sizes: Vec<usize> = msgs.iter().map(|m| m.encode().len()).collect();
    let mut sent: Vec<Option<Result<(), ApiError>>> = vec![None; msgs.len()];
    for chunk in crate::batch::chunks(&sizes) {
        let batch: Vec<&WriteMessage> = chunk.iter().filter_map(|i| msgs.get(*i)).collect();
        let r = io.send_batch(&batch).await;
        for i in chunk {
            if let Some(slot) = sent.get_mut(i) {
                *slot = Some(r.clone());
            }
        }
    }
    let mut out = Vec::with_capacity(msgs.len());
    for (msg, r) in msgs.iter().zip(sent) {
        match r.unwrap_or_else(|| Err(ApiError::Internal("a write was not sent".into()))) {
            Err(e) => {
                if let Some(s) = msg.staged_key() {
                    io.delete_staged(s).await;
                }
                out.push(Err(e));
            }
            Ok(()) => out.push(match &msg.idempotency_key {
                Some(k) => io.claim(&msg.key, k, &msg.id).await.map(|holder| Enqueued {
                    own: holder == msg.id,
                    id: holder,
                    count_accepted: false,
                }),
                None => Ok(Enqueued {
                    id: msg.id.clone(),
                    own: true,
                    count_accepted: true,
                }),
            }),
        }
    }
    out
}
