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
//!
//! Each write goes to the upload queue of its key
//! ([`crate::queues::shard_of`] among [`ProducerIo::upload_queues`]), so
//! all writes of one key share a queue and coalesce in its batches.

use crate::engine::planted::{active, Bug};
use crate::error::ApiError;
use crate::message::{BodyRef, WriteMessage};
use crate::queues::shard_of;

/// Whether `msg`, built with its body inline, must have the body staged
/// in R2 instead: its encoded size (the real one, not an estimate) is over
/// `message_max` bytes. Messages without an inline body never need it.
#[must_use]
pub fn needs_staging(msg: &WriteMessage, message_max: usize) -> bool {
    matches!(msg.body, BodyRef::Inline { .. }) && !msg.fits_in(message_max)
}

/// What the producer needs from the runtime.
#[allow(async_fn_in_trait)]
pub trait ProducerIo {
    /// How many upload queues writes are spread over (`UPLOAD_QUEUES`).
    fn upload_queues(&self) -> u32;
    /// Sends the write to upload queue `shard`.
    ///
    /// # Errors
    /// [`ApiError::QueueUnavailable`] when the queue did not take it.
    async fn send(&self, shard: u32, msg: &WriteMessage) -> Result<(), ApiError>;
    /// Claims `idem_key` for `id` at the key's scheduler; returns the id
    /// that holds it.
    ///
    /// # Errors
    /// [`ApiError::Unavailable`] when the scheduler cannot be reached.
    async fn claim(&self, key: &str, idem_key: &str, id: &str) -> Result<String, ApiError>;
    /// Removes a staged body that no accepted write refers to.
    async fn delete_staged(&self, staged_key: &str);
    /// Sends several writes in one queue batch send to upload queue
    /// `shard`: all are taken or none is.
    ///
    /// # Errors
    /// [`ApiError::QueueUnavailable`] when the queue took none of them.
    async fn send_batch(&self, shard: u32, msgs: &[&WriteMessage]) -> Result<(), ApiError>;
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
    let shard = shard_of(&msg.key, io.upload_queues());
    if let Err(e) = io.send(shard, msg).await {
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

/// Enqueues several stamped writes (`POST /batch`): grouped by upload
/// queue ([`shard_of`] their keys), each group in line order with as few
/// queue batch sends as the limits allow; then resolves each
/// `Idempotency-Key` as [`enqueue`] does. A send that fails fails exactly
/// its own writes (their staged bodies removed), whichever queue it was
/// for; writes sent to other queues (or in other sends) stay accepted:
/// every answer says what happened to its write.
pub async fn enqueue_batch(
    io: &impl ProducerIo,
    msgs: &[WriteMessage],
) -> Vec<Result<Enqueued, ApiError>> {
    let mut sent: Vec<Option<Result<(), ApiError>>> = vec![None; msgs.len()];
    for (shard, group) in by_shard(msgs, io.upload_queues()) {
        let sizes: Vec<usize> = group
            .iter()
            .filter_map(|i| msgs.get(*i))
            .map(|m| m.encode().len())
            .collect();
        for chunk in crate::batch::chunks(&sizes) {
            let members: Vec<usize> = chunk
                .iter()
                .filter_map(|c| group.get(*c).copied())
                .collect();
            let batch: Vec<&WriteMessage> = members.iter().filter_map(|i| msgs.get(*i)).collect();
            let r = io.send_batch(shard, &batch).await;
            for i in members {
                if let Some(slot) = sent.get_mut(i) {
                    *slot = Some(r.clone());
                }
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

/// The indexes of `msgs` grouped by upload queue, queues in ascending
/// order, each group in the order of `msgs`.
#[must_use]
pub fn by_shard(msgs: &[WriteMessage], queues: u32) -> Vec<(u32, Vec<usize>)> {
    let mut groups: std::collections::BTreeMap<u32, Vec<usize>> = std::collections::BTreeMap::new();
    for (i, m) in msgs.iter().enumerate() {
        groups.entry(shard_of(&m.key, queues)).or_default().push(i);
    }
    groups.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::WriteOp;
    use crate::message::{
        inline_body_bound, BodyRef, MAX_ENCODED_MESSAGE_BYTES, MESSAGE_VERSION,
        QUEUE_BILLING_UNIT_BYTES, QUEUE_MESSAGE_OVERHEAD_BYTES, STAGING_PREFIX,
    };
    use crate::meta::{custom_metadata_budget, ObjectMeta};
    use crate::write_condition::WriteCondition;
    use std::cell::RefCell;
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    /// Runs a future whose I/O is all immediate (the fake below).
    fn run<F: Future>(f: F) -> F::Output {
        let mut f = pin!(f);
        match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(v) => v,
            Poll::Pending => panic!("the fake I/O never waits"),
        }
    }

    /// Records every send by queue; the queues in `failing` refuse.
    struct Fake {
        queues: u32,
        failing: Vec<u32>,
        sends: RefCell<Vec<(u32, Vec<String>)>>,
        deleted: RefCell<Vec<String>>,
    }

    impl Fake {
        fn new(queues: u32, failing: &[u32]) -> Self {
            Self {
                queues,
                failing: failing.to_vec(),
                sends: RefCell::default(),
                deleted: RefCell::default(),
            }
        }
        fn result(&self, shard: u32) -> Result<(), ApiError> {
            if self.failing.contains(&shard) {
                Err(ApiError::QueueUnavailable(format!("queue {shard} is down")))
            } else {
                Ok(())
            }
        }
    }

    impl ProducerIo for Fake {
        fn upload_queues(&self) -> u32 {
            self.queues
        }
        async fn send(&self, shard: u32, msg: &WriteMessage) -> Result<(), ApiError> {
            self.sends.borrow_mut().push((shard, vec![msg.id.clone()]));
            self.result(shard)
        }
        async fn claim(&self, _key: &str, _idem: &str, id: &str) -> Result<String, ApiError> {
            Ok(id.to_string())
        }
        async fn delete_staged(&self, staged_key: &str) {
            self.deleted.borrow_mut().push(staged_key.to_string());
        }
        async fn send_batch(&self, shard: u32, msgs: &[&WriteMessage]) -> Result<(), ApiError> {
            let ids = msgs.iter().map(|m| m.id.clone()).collect();
            self.sends.borrow_mut().push((shard, ids));
            self.result(shard)
        }
    }

    fn msg(i: usize, body: BodyRef) -> WriteMessage {
        WriteMessage {
            v: MESSAGE_VERSION,
            id: format!("id-{i}"),
            key: format!("tenant/{}/obj-{i}", i % 5),
            accepted_ms: 1_780_000_000_000 + i as i64,
            op: WriteOp::Put,
            size: match &body {
                BodyRef::Inline { .. } => 2,
                _ => 10,
            },
            meta: ObjectMeta::default(),
            body,
            idempotency_key: None,
            condition: None,
            callback_url: None,
        }
    }

    fn msgs(n: usize) -> Vec<WriteMessage> {
        (0..n)
            .map(|i| {
                if i % 4 == 0 {
                    let staged_key = format!("{STAGING_PREFIX}{i}");
                    msg(i, BodyRef::Staged { staged_key })
                } else {
                    msg(i, WriteMessage::inline(b"hi"))
                }
            })
            .collect()
    }

    #[test]
    fn one_queue_sends_everything_to_uploads() {
        let io = Fake::new(1, &[]);
        let batch = msgs(40);
        for m in &batch {
            assert!(run(enqueue(&io, m)).is_ok());
        }
        assert!(run(enqueue_batch(&io, &batch)).iter().all(Result::is_ok));
        let sends = io.sends.borrow();
        assert!(sends.iter().all(|(shard, _)| *shard == 0));
        // 40 single sends and one batch send of all 40 lines, in order.
        assert_eq!(sends.len(), 41);
        let ids: Vec<String> = batch.iter().map(|m| m.id.clone()).collect();
        assert_eq!(sends[40].1, ids);
    }

    #[test]
    fn each_write_goes_to_its_keys_queue_and_batches_split_by_queue() {
        let io = Fake::new(3, &[]);
        let batch = msgs(60);
        for m in &batch {
            run(enqueue(&io, m)).unwrap();
        }
        for (shard, ids) in io.sends.borrow().iter() {
            let m = batch.iter().find(|m| m.id == ids[0]).unwrap();
            assert_eq!(*shard, shard_of(&m.key, 3));
        }
        io.sends.borrow_mut().clear();
        assert!(run(enqueue_batch(&io, &batch)).iter().all(Result::is_ok));
        let sends = io.sends.borrow();
        let mut seen: Vec<String> = Vec::new();
        for (shard, ids) in sends.iter() {
            let members: Vec<&WriteMessage> = ids
                .iter()
                .map(|id| batch.iter().find(|m| &m.id == id).unwrap())
                .collect();
            assert!(members.iter().all(|m| shard_of(&m.key, 3) == *shard));
            // Line order within a queue.
            let order: Vec<usize> = members
                .iter()
                .map(|m| batch.iter().position(|b| b.id == m.id).unwrap())
                .collect();
            assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
            seen.extend(ids.iter().cloned());
        }
        seen.sort();
        let mut all: Vec<String> = batch.iter().map(|m| m.id.clone()).collect();
        all.sort();
        assert_eq!(seen, all, "every line sent exactly once");
        let shards: std::collections::BTreeSet<u32> = sends.iter().map(|s| s.0).collect();
        assert!(
            shards.len() > 1,
            "60 lines over 5 key prefixes used one queue"
        );
    }

    #[test]
    fn a_failed_queue_fails_exactly_its_own_lines() {
        let batch = msgs(60);
        let groups = by_shard(&batch, 3);
        let failed_shard = groups[0].0;
        let io = Fake::new(3, &[failed_shard]);
        let out = run(enqueue_batch(&io, &batch));
        for (m, r) in batch.iter().zip(&out) {
            if shard_of(&m.key, 3) == failed_shard {
                assert_eq!(r.as_ref().unwrap_err().code(), "queue_unavailable");
                if let Some(k) = m.staged_key() {
                    assert!(io.deleted.borrow().iter().any(|d| d == k), "{k} kept");
                }
            } else {
                let e = r.as_ref().unwrap();
                assert!(e.own && e.count_accepted && e.id == m.id);
                if let Some(k) = m.staged_key() {
                    assert!(!io.deleted.borrow().iter().any(|d| d == k), "{k} deleted");
                }
            }
        }
        assert!(out.iter().any(Result::is_ok) && out.iter().any(Result::is_err));
    }

    /// The largest envelope a write can have: the longest key, made of
    /// characters JSON escapes; the longest sealed id; every HTTP metadata
    /// field at its limit in escaped characters; custom metadata as many
    /// short names as the budget allows (the most JSON per counted byte);
    /// the longest idempotency key and callback URL; a condition.
    fn worst_case_envelope() -> WriteMessage {
        let key = "\"".repeat(crate::key::MAX_KEY_BYTES);
        let field = Some("\"".repeat(1024));
        let mut meta = ObjectMeta {
            content_type: field.clone(),
            content_encoding: field.clone(),
            content_language: field.clone(),
            content_disposition: field.clone(),
            cache_control: field,
            ..ObjectMeta::default()
        };
        let alphabet: Vec<char> = "abcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+.^_`|~-"
            .chars()
            .collect();
        let budget = custom_metadata_budget(&key);
        let mut names = alphabet.iter().map(|c| c.to_string()).chain(
            alphabet
                .iter()
                .flat_map(|a| alphabet.iter().map(move |b| format!("{a}{b}"))),
        );
        while meta.custom_bytes() < budget {
            let Some(n) = names.next() else { break };
            if meta.custom_bytes() + n.len() > budget {
                break;
            }
            meta.custom.insert(n, String::new());
        }
        // A write can really carry this metadata: the request headers that
        // would give it are accepted as they are.
        let mut headers: Vec<(String, String)> = [
            "Content-Type",
            "Content-Encoding",
            "Content-Language",
            "Content-Disposition",
            "Cache-Control",
        ]
        .iter()
        .map(|name| (name.to_string(), "\"".repeat(1024)))
        .collect();
        headers.extend(
            meta.custom
                .keys()
                .map(|k| (format!("X-Meta-{k}"), String::new())),
        );
        let parsed =
            ObjectMeta::from_headers(&key, headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        assert_eq!(parsed.as_ref(), Ok(&meta));
        crate::key::validate_key(&key).unwrap();
        crate::meta::validate_idempotency_key(&"\"".repeat(255)).unwrap();
        WriteMessage {
            v: MESSAGE_VERSION,
            id: "x".repeat(crate::id::sealed_id_len(key.len())),
            key,
            accepted_ms: 9_999_999_999_999,
            op: WriteOp::Put,
            size: 0,
            meta,
            body: BodyRef::Empty,
            idempotency_key: Some("\"".repeat(255)),
            condition: Some(WriteCondition::IfMatch {
                etag: format!("\"{}\"", "f".repeat(32)),
            }),
            callback_url: Some(format!("https://hooks.example/{}", "\"".repeat(2000))),
        }
    }

    fn with_body(template: &WriteMessage, n: u64) -> WriteMessage {
        let mut m = template.clone();
        m.size = n;
        m.body = WriteMessage::inline(&vec![0xa5; usize::try_from(n).unwrap()]);
        m
    }

    #[test]
    fn base64_makes_four_characters_of_three_bytes() {
        let t = msg(1, BodyRef::Empty);
        for n in [1u64, 2, 3, 4, 3000, 95_925] {
            let empty = with_body(&t, n);
            let mut stripped = empty.clone();
            stripped.body = BodyRef::Inline {
                data: String::new(),
            };
            assert_eq!(
                empty.encode().len() - stripped.encode().len(),
                usize::try_from(n.div_ceil(3) * 4).unwrap()
            );
        }
        assert_eq!(inline_body_bound(MAX_ENCODED_MESSAGE_BYTES), 95_925);
    }

    #[test]
    fn the_largest_inline_body_is_measured_on_the_real_encoding() {
        let max = MAX_ENCODED_MESSAGE_BYTES;
        for template in [msg(7, BodyRef::Empty), worst_case_envelope()] {
            let n = template.largest_inline_body(max);
            let at = with_body(&template, n);
            let over = with_body(&template, n + 1);
            assert!(at.encode().len() <= max && !needs_staging(&at, max));
            assert!(over.encode().len() > max && needs_staging(&over, max));
            // A staged or empty body never needs staging.
            let mut staged = over.clone();
            staged.body = BodyRef::Staged {
                staged_key: format!("{STAGING_PREFIX}x"),
            };
            assert!(!needs_staging(&staged, max));
        }
    }

    #[test]
    fn worst_case_metadata_is_why_the_real_size_is_checked() {
        let max = MAX_ENCODED_MESSAGE_BYTES;
        let typical = msg(7, BodyRef::Empty).largest_inline_body(max);
        let worst = worst_case_envelope();
        let envelope = worst.encode().len();
        let worst_body = worst.largest_inline_body(max);
        // A typical envelope is a few hundred bytes: bodies up to about
        // 95.6 KB travel inline.
        assert!(
            (95_500..=inline_body_bound(max)).contains(&typical),
            "{typical}"
        );
        // The worst envelope is tens of KB (escaping doubles quotes; short
        // custom names cost more JSON than they count against R2's limit),
        // so a body that fits a typical message may not fit this one: it is
        // staged by the size check, never sent to be refused by the queue.
        assert!(envelope > 30_000, "worst envelope only {envelope} B");
        assert!(worst_body < typical);
        assert!(needs_staging(&with_body(&worst, typical), max));
        // Even the worst envelope leaves room for a body.
        assert!(worst_body > 0);
        eprintln!(
            "encoded envelope: typical {} B, worst {envelope} B; largest inline body: typical {typical} B, worst {worst_body} B",
            msg(7, BodyRef::Empty).encode().len()
        );
    }

    #[test]
    fn one_billing_unit_holds_a_body_of_about_47_kb() {
        let unit = QUEUE_BILLING_UNIT_BYTES - QUEUE_MESSAGE_OVERHEAD_BYTES;
        let n = msg(7, BodyRef::Empty).largest_inline_body(unit);
        assert!((47_500..=inline_body_bound(unit)).contains(&n), "{n}");
        assert!(
            with_body(&msg(7, BodyRef::Empty), n).encode().len() + QUEUE_MESSAGE_OVERHEAD_BYTES
                <= QUEUE_BILLING_UNIT_BYTES
        );
    }
}
