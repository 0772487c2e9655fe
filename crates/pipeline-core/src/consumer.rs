//! The consumer's decisions, free of the runtime: how a queue batch becomes
//! one scheduler call per key, how long a message waits before it is tried
//! again, and what the dead letter path does with a message.

use crate::coalesce::group_by_key;
use crate::engine::planted::{active, Bug};
use crate::message::{salvage, WriteMessage};
use crate::protocol::{EnqueueRequest, OlderWrite};
use crate::schedule::WriteRef;

/// The first retry delay of a message whose scheduler could not be
/// reached, in seconds.
pub const RETRY_MIN_DELAY_SECS: u32 = 2;
/// The longest retry delay the queue allows (12 h).
pub const RETRY_MAX_DELAY_SECS: u32 = 12 * 3600;

/// One scheduler call of a batch: the key's newest write whole, the older
/// ones named, and the indexes of every message it settles.
#[derive(Debug, Clone)]
pub struct KeyCall {
    pub key: String,
    pub request: EnqueueRequest,
    /// Indexes (into the batch) of the messages this call acks or retries.
    pub messages: Vec<usize>,
}

/// A batch, planned.
#[derive(Debug, Clone, Default)]
pub struct BatchPlan {
    pub calls: Vec<KeyCall>,
    /// Indexes of messages that do not decode: forwarded to the dead letter
    /// queue at once.
    pub poison: Vec<(usize, String)>,
}

/// Plans a batch: decodes every message (by index), groups by key, newest
/// wins. One call per distinct key, plus one per write that carries an
/// `Idempotency-Key`.
///
/// A write with an `Idempotency-Key` is never coalesced with others: only
/// its scheduler knows whether it is a repeat that is dropped, and a
/// dropped repeat must not supersede the older writes of its batch (nor
/// take their bodies' place). It gets a call of its own (its duplicate
/// deliveries folded into it); the scheduler orders it against the others.
pub fn plan_batch(bodies: &[Option<String>]) -> BatchPlan {
    let mut plan = BatchPlan::default();
    let mut decoded = Vec::new();
    let mut idempotent = Vec::new();
    for (i, body) in bodies.iter().enumerate() {
        match body.as_deref().map(WriteMessage::decode) {
            // Writes with an Idempotency-Key or a condition are never folded
            // into another write of the batch: each gets its own call.
            Some(Ok(m)) if m.idempotency_key.is_some() || m.condition.is_some() => {
                idempotent.push((i, m))
            }
            Some(Ok(m)) => decoded.push((i, m)),
            Some(Err(e)) => plan.poison.push((i, e.to_string())),
            None => plan.poison.push((i, "message body is not text".into())),
        }
    }
    let order = |d: &(usize, WriteMessage)| WriteRef::new(d.1.accepted_ms, d.1.id.clone());
    let groups = group_by_key(decoded, |d| d.1.key.as_str(), order)
        .into_iter()
        .chain(group_by_key(idempotent, |d| d.1.id.as_str(), order));
    for mut g in groups {
        // Idempotent groups are keyed by id; every group's call goes to
        // the object key's scheduler.
        g.key = g.newest.1.key.clone();
        let mut messages = vec![g.newest.0];
        messages.extend(g.older.iter().map(|d| d.0));
        messages.extend(g.duplicates.iter().map(|d| d.0));
        plan.calls.push(KeyCall {
            key: g.key,
            request: EnqueueRequest {
                older: g.older.iter().map(|d| OlderWrite::from(&d.1)).collect(),
                newest: g.newest.1,
            },
            messages,
        });
    }
    // One key's calls in acceptance order, so a key's scheduler sees them
    // in that order (the Worker makes them one after the other).
    plan.calls.sort_by(|a, b| {
        a.key.cmp(&b.key).then_with(|| {
            WriteRef::new(a.request.newest.accepted_ms, a.request.newest.id.clone()).cmp(
                &WriteRef::new(b.request.newest.accepted_ms, b.request.newest.id.clone()),
            )
        })
    });
    plan
}

impl BatchPlan {
    /// The calls grouped by key (each group in acceptance order): groups
    /// run concurrently, a group's calls one after the other.
    pub fn by_key(&self) -> Vec<&[KeyCall]> {
        self.calls.chunk_by(|a, b| a.key == b.key).collect()
    }
}

/// How long a message waits before its next delivery when its scheduler
/// could not be reached: as long as the message is already old (doubling
/// its age each retry), from 2 s up to the queue's 12 h. A scheduler
/// outage is then ridden out for about `2 s × 2^max_retries` (see
/// [`tolerated_outage_secs`]) instead of `max_retries × 2 s`.
pub fn retry_delay_secs(age_ms: i64) -> u32 {
    if active(Bug::ConstantRetryDelay) {
        return RETRY_MIN_DELAY_SECS;
    }
    let age = u32::try_from((age_ms.max(0) / 1000).min(i64::from(RETRY_MAX_DELAY_SECS)))
        .unwrap_or(RETRY_MAX_DELAY_SECS);
    age.clamp(RETRY_MIN_DELAY_SECS, RETRY_MAX_DELAY_SECS)
}

/// How long, in seconds, a scheduler may be unreachable before a message
/// delivered `max_retries + 1` times goes to the dead letter queue, when
/// every delivery fails at once and every retry waits
/// [`retry_delay_secs`] of the message's age.
pub fn tolerated_outage_secs(max_retries: u32) -> u64 {
    let mut age_ms: i64 = 0;
    for _ in 0..max_retries {
        age_ms += i64::from(retry_delay_secs(age_ms)) * 1000;
    }
    (age_ms / 1000) as u64
}

/// What the dead letter consumer does with one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeadLetter {
    /// Ask the key's scheduler to end this write `failed` (it deletes the
    /// staged body only once it knows it does not hold the write).
    Fail {
        msg: Box<WriteMessage>,
        reason: String,
    },
    /// The message does not decode: end the salvaged id, if any, and
    /// remove a salvaged staged body (no scheduler can hold a write whose
    /// message never decoded).
    Salvage {
        id: Option<String>,
        staged_key: Option<String>,
        reason: String,
    },
}

/// Decides what the dead letter path does with a message's text.
pub fn dead_letter(text: &str) -> DeadLetter {
    match WriteMessage::decode(text) {
        Ok(m) => DeadLetter::Fail {
            msg: Box::new(m),
            reason: "delivery failed too many times".into(),
        },
        Err(e) => {
            let (id, staged_key) = salvage(text);
            DeadLetter::Salvage {
                id,
                staged_key,
                reason: format!("undecodable message: {e}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delay_doubles_the_age_and_is_bounded() {
        assert_eq!(retry_delay_secs(0), RETRY_MIN_DELAY_SECS);
        assert_eq!(retry_delay_secs(10_000), 10);
        assert_eq!(retry_delay_secs(i64::MAX), RETRY_MAX_DELAY_SECS);
        assert_eq!(retry_delay_secs(-5), RETRY_MIN_DELAY_SECS);
    }

    #[test]
    fn sixteen_retries_ride_out_more_than_half_a_day() {
        // 2, 2, 4, 8, … s: the message's age doubles with each retry.
        assert_eq!(tolerated_outage_secs(10), 1024);
        assert_eq!(tolerated_outage_secs(16), 65_536);
    }

    #[test]
    fn a_batch_becomes_one_call_per_key_and_poison_apart() {
        let m = |id: &str, key: &str, ms: i64| {
            WriteMessage {
                v: crate::message::MESSAGE_VERSION,
                id: id.into(),
                key: key.into(),
                accepted_ms: ms,
                op: crate::id::WriteOp::Put,
                size: 0,
                meta: Default::default(),
                body: crate::message::BodyRef::Empty,
                idempotency_key: None,
                condition: None,
                callback_url: None,
            }
            .encode()
        };
        let plan = plan_batch(&[
            Some(m("a", "k1", 1)),
            Some("nope".into()),
            Some(m("b", "k1", 2)),
            Some(m("c", "k2", 1)),
            None,
        ]);
        assert_eq!(plan.poison.iter().map(|p| p.0).collect::<Vec<_>>(), [1, 4]);
        assert_eq!(plan.calls.len(), 2);
        assert_eq!(plan.calls[0].request.newest.id, "b");
        assert_eq!(plan.calls[0].request.older[0].id, "a");
        assert_eq!(plan.calls[0].messages, [2, 0]);
    }

    #[test]
    fn writes_with_an_idempotency_key_get_calls_of_their_own() {
        let m = |id: &str, ms: i64, idem: Option<&str>| {
            WriteMessage {
                v: crate::message::MESSAGE_VERSION,
                id: id.into(),
                key: "k".into(),
                accepted_ms: ms,
                op: crate::id::WriteOp::Put,
                size: 0,
                meta: Default::default(),
                body: crate::message::BodyRef::Empty,
                idempotency_key: idem.map(str::to_string),
                condition: None,
                callback_url: None,
            }
            .encode()
        };
        // `a` holds the key, `c` is a repeat of it (newest of the batch),
        // `b` has none; `a` is delivered twice.
        let plan = plan_batch(&[
            Some(m("a", 1, Some("order-1"))),
            Some(m("b", 2, None)),
            Some(m("c", 3, Some("order-1"))),
            Some(m("a", 1, Some("order-1"))),
        ]);
        let mut calls: Vec<(String, String, Vec<String>, Vec<usize>)> = plan
            .calls
            .iter()
            .map(|c| {
                let older = c.request.older.iter().map(|o| o.id.clone()).collect();
                (
                    c.key.clone(),
                    c.request.newest.id.clone(),
                    older,
                    c.messages.clone(),
                )
            })
            .collect();
        calls.sort();
        assert_eq!(
            calls,
            [
                ("k".into(), "a".into(), vec![], vec![0, 3]),
                ("k".into(), "b".into(), vec![], vec![1]),
                ("k".into(), "c".into(), vec![], vec![2]),
            ]
        );
    }
}
