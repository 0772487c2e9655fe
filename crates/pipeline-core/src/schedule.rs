//! The per-key scheduler's decisions: which write to hold, which to
//! supersede, when the next R2 write may start, and whether a synchronous
//! write may go now.
//!
//! Writes to a key are ordered by acceptance: `(accepted_ms, id)`, the id
//! breaking ties deterministically. The scheduler Durable Object persists a
//! [`KeyState`] and asks these functions what to do; it never decides on
//! its own.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

/// R2 accepts at most one write per second per key: starts of two writes
/// are at least this far apart.
pub const WRITE_SPACING_MS: i64 = 1000;

/// The ordering identity of a write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteRef {
    pub accepted_ms: i64,
    pub id: String,
}

impl WriteRef {
    pub fn new(accepted_ms: i64, id: impl Into<String>) -> Self {
        Self {
            accepted_ms,
            id: id.into(),
        }
    }
}

impl Ord for WriteRef {
    fn cmp(&self, other: &Self) -> Ordering {
        self.accepted_ms
            .cmp(&other.accepted_ms)
            .then_with(|| self.id.cmp(&other.id))
    }
}

impl PartialOrd for WriteRef {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// What the scheduler of one key knows, as persisted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyState {
    /// Start of the most recent R2 write to the key, by either mode.
    pub last_start_ms: Option<i64>,
    /// The newest write that reached R2 or ended: nothing older is written.
    pub watermark: Option<WriteRef>,
    /// A write whose R2 operation has started and not yet been recorded.
    pub in_flight: Option<WriteRef>,
    /// The newest write waiting for its slot.
    pub pending: Option<WriteRef>,
    /// Writes waiting behind `pending`, oldest first. Only conditional
    /// writes make a line: they are never folded into another write, so a
    /// conditional write and the writes around it are committed (or fail)
    /// one by one, in acceptance order.
    #[serde(default)]
    pub line: Vec<WriteRef>,
    /// Ids of the held writes (pending or in the line) that carry a
    /// condition.
    #[serde(default)]
    pub conditional: Vec<String>,
}

impl KeyState {
    /// The newest write the scheduler knows of, in any role.
    pub fn newest(&self) -> Option<&WriteRef> {
        [&self.watermark, &self.in_flight, &self.pending]
            .into_iter()
            .flatten()
            .chain(self.line.iter())
            .max()
    }

    /// The earliest time the next R2 write may start, at or after `now_ms`.
    pub fn next_slot(&self, now_ms: i64) -> i64 {
        match self.last_start_ms {
            Some(last) => now_ms.max(last + WRITE_SPACING_MS),
            None => now_ms,
        }
    }
}

/// What to do with an incoming write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Hold it as the pending write; the previous pending one (if any) is
    /// superseded by it.
    Hold { supersedes: Option<String> },
    /// Older than something already known: superseded by that write.
    Superseded { by: String },
}

/// Decides an incoming asynchronous write (its id not seen before).
pub fn admit(state: &KeyState, write: &WriteRef) -> Admission {
    match state.newest() {
        Some(newest) if newest >= write => Admission::Superseded {
            by: newest.id.clone(),
        },
        _ => Admission::Hold {
            supersedes: state.pending.as_ref().map(|p| p.id.clone()),
        },
    }
}

/// What to do with a synchronous write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncDecision {
    /// Write now; supersede the pending write, if any.
    Go { supersedes: Option<String> },
    /// The key's slot is taken until `free_at_ms`.
    RateLimited { free_at_ms: i64 },
    /// The scheduler already holds a newer write: `409`.
    Stale { newer: String },
}

/// Decides a synchronous write at `now_ms`.
pub fn decide_sync(state: &KeyState, write: &WriteRef, now_ms: i64) -> SyncDecision {
    if let Some(newest) = state.newest() {
        if newest >= write {
            return SyncDecision::Stale {
                newer: newest.id.clone(),
            };
        }
    }
    let slot = state.next_slot(now_ms);
    if state.in_flight.is_some() {
        // The running write's slot is its start + spacing; if that already
        // passed, the write is merely slow and frees the slot any moment.
        return SyncDecision::RateLimited {
            free_at_ms: slot.max(now_ms + 100),
        };
    }
    if slot > now_ms {
        return SyncDecision::RateLimited { free_at_ms: slot };
    }
    SyncDecision::Go {
        supersedes: state.pending.as_ref().map(|p| p.id.clone()),
    }
}

/// Delay before retry `attempt` (1-based) of a failed R2 write: doubling
/// from one second, capped at 30 s, never under the write spacing.
pub fn commit_backoff_ms(attempt: u32) -> i64 {
    let exp = attempt.saturating_sub(1).min(5);
    (WRITE_SPACING_MS << exp).min(30_000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn w(ms: i64, id: &str) -> WriteRef {
        WriteRef::new(ms, id)
    }

    #[test]
    fn ties_break_by_id() {
        assert!(w(5, "b") > w(5, "a"));
        assert!(w(6, "a") > w(5, "z"));
    }

    #[test]
    fn newer_write_is_held_and_supersedes_the_pending_one() {
        let mut s = KeyState::default();
        assert_eq!(admit(&s, &w(10, "a")), Admission::Hold { supersedes: None });
        s.pending = Some(w(10, "a"));
        assert_eq!(
            admit(&s, &w(11, "b")),
            Admission::Hold {
                supersedes: Some("a".into())
            }
        );
        assert_eq!(
            admit(&s, &w(9, "c")),
            Admission::Superseded { by: "a".into() }
        );
    }

    #[test]
    fn late_older_write_is_superseded_by_what_was_committed() {
        let s = KeyState {
            watermark: Some(w(20, "x")),
            last_start_ms: Some(25),
            ..Default::default()
        };
        assert_eq!(
            admit(&s, &w(15, "old")),
            Admission::Superseded { by: "x".into() }
        );
        let s = KeyState {
            in_flight: Some(w(20, "y")),
            ..Default::default()
        };
        assert_eq!(
            admit(&s, &w(15, "old")),
            Admission::Superseded { by: "y".into() }
        );
    }

    #[test]
    fn next_slot_keeps_one_second_between_starts() {
        let s = KeyState {
            last_start_ms: Some(1000),
            ..Default::default()
        };
        assert_eq!(s.next_slot(1500), 2000);
        assert_eq!(s.next_slot(2500), 2500);
        assert_eq!(KeyState::default().next_slot(7), 7);
    }

    #[test]
    fn sync_write_waits_for_the_slot_and_never_overtakes_newer_writes() {
        let s = KeyState {
            last_start_ms: Some(1000),
            ..Default::default()
        };
        assert_eq!(
            decide_sync(&s, &w(1200, "s"), 1200),
            SyncDecision::RateLimited { free_at_ms: 2000 }
        );
        assert_eq!(
            decide_sync(&s, &w(2000, "s"), 2000),
            SyncDecision::Go { supersedes: None }
        );
        let s = KeyState {
            pending: Some(w(1500, "p")),
            last_start_ms: Some(1000),
            ..Default::default()
        };
        assert_eq!(
            decide_sync(&s, &w(2100, "s"), 2100),
            SyncDecision::Go {
                supersedes: Some("p".into())
            }
        );
        assert_eq!(
            decide_sync(&s, &w(1400, "s"), 2100),
            SyncDecision::Stale { newer: "p".into() }
        );
        let s = KeyState {
            in_flight: Some(w(10, "f")),
            last_start_ms: Some(0),
            ..Default::default()
        };
        assert!(
            matches!(decide_sync(&s, &w(5000, "s"), 5000), SyncDecision::RateLimited { free_at_ms } if free_at_ms > 5000)
        );
    }

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(commit_backoff_ms(1), 1000);
        assert_eq!(commit_backoff_ms(2), 2000);
        assert_eq!(commit_backoff_ms(9), 30_000);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Feeding any arrival order of writes through `admit` ends with the
        /// newest write pending and every other one superseded exactly once.
        #[test]
        fn any_arrival_order_leaves_the_newest_pending(times in proptest::collection::vec(0i64..50, 1..40)) {
            let writes: Vec<WriteRef> = times.iter().enumerate().map(|(i, t)| w(*t, &format!("{i:03}"))).collect();
            let mut s = KeyState::default();
            let mut superseded = 0usize;
            for wr in &writes {
                match admit(&s, wr) {
                    Admission::Hold { supersedes } => {
                        superseded += usize::from(supersedes.is_some());
                        s.pending = Some(wr.clone());
                    }
                    Admission::Superseded { .. } => superseded += 1,
                }
            }
            prop_assert_eq!(s.pending.as_ref(), writes.iter().max());
            prop_assert_eq!(superseded, writes.len() - 1);
        }
    }
}
