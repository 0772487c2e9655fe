//! When a producer isolate starts a loop that pushes its `accepted` count
//! to the stats shards.
//!
//! The loop runs in `wait_until` after a request is answered. The runtime
//! may cancel such a future (time limits, shutdown) at any await, so "a loop
//! is running" cannot be a flag the loop clears at its end: a cancelled
//! loop would leave it set and the isolate would never push again. Instead
//! the loop records a heartbeat each time it runs, and a request starts a
//! new loop when there is no heartbeat or it is older than
//! [`STALE_AFTER_MS`]. Each loop carries a generation; only the newest one
//! goes on, so a loop that was merely slow (not cancelled) stops at its next
//! heartbeat instead of pushing alongside its successor. (Pushes carry
//! cumulative totals, so even two loops could not double count; they would
//! only make more shard calls.)

/// Pause between two pushes of one isolate. Longer: fewer shard calls under
/// load; shorter: other isolates' `accepted` shows sooner in `/stats`.
pub const PUSH_INTERVAL_MS: i64 = 200;

/// A heartbeat older than this (five intervals) belongs to a loop that no
/// longer runs. A live loop beats every [`PUSH_INTERVAL_MS`] plus the time
/// of one shard call; one slower than this is replaced (see the module
/// documentation), which costs at most one extra push.
pub const STALE_AFTER_MS: i64 = 5 * PUSH_INTERVAL_MS;

/// The push loop of one isolate, as far as starting and stopping it goes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PushLoop {
    /// When the current loop last ran, in epoch milliseconds; `None` when no
    /// loop runs (none started yet, or the last one ended normally).
    heartbeat_ms: Option<i64>,
    /// The generation of the current loop.
    generation: u64,
}

impl PushLoop {
    /// Whether a heartbeat recorded at `heartbeat_ms` shows no live loop at
    /// `now_ms`. A heartbeat "in the future" (the clock stepped back) counts
    /// by its distance as well, so a clock step cannot keep the isolate from
    /// pushing.
    #[must_use]
    pub fn is_stale(heartbeat_ms: Option<i64>, now_ms: i64) -> bool {
        heartbeat_ms.is_none_or(|beat| now_ms.abs_diff(beat) >= STALE_AFTER_MS.unsigned_abs())
    }

    /// A write was counted at `now_ms`: returns the generation of a loop to
    /// start, or `None` when a live loop will carry the count.
    pub fn on_count(&mut self, now_ms: i64) -> Option<u64> {
        if !Self::is_stale(self.heartbeat_ms, now_ms) {
            return None;
        }
        self.generation = self.generation.wrapping_add(1);
        self.heartbeat_ms = Some(now_ms);
        Some(self.generation)
    }

    /// The loop of `generation` is about to push at `now_ms`: records the
    /// heartbeat and returns whether it is still the current loop (if not,
    /// it stops without pushing).
    pub fn beat(&mut self, generation: u64, now_ms: i64) -> bool {
        if generation != self.generation {
            return false;
        }
        self.heartbeat_ms = Some(now_ms);
        true
    }

    /// The loop of `generation` ended normally (nothing left to push, or a
    /// push failed): the next count starts a loop at once. A replaced loop
    /// ending leaves its successor alone.
    pub fn end(&mut self, generation: u64) {
        if generation == self.generation {
            self.heartbeat_ms = None;
        }
    }

    /// Whether a loop is recorded as live at `now_ms`.
    #[must_use]
    pub fn is_running(&self, now_ms: i64) -> bool {
        !Self::is_stale(self.heartbeat_ms, now_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_first_count_starts_a_loop_and_the_next_ones_do_not() {
        let mut p = PushLoop::default();
        let g = p.on_count(1_000).expect("first count starts a loop");
        assert_eq!(p.on_count(1_001), None);
        assert!(p.beat(g, 1_150));
        assert_eq!(p.on_count(1_300), None);
        assert!(p.beat(g, 1_350));
        assert_eq!(p.on_count(1_350 + STALE_AFTER_MS - 1), None);
    }

    #[test]
    fn a_loop_that_ended_is_restarted_by_the_next_count() {
        let mut p = PushLoop::default();
        let g = p.on_count(0).unwrap();
        p.end(g);
        assert!(!p.is_running(1));
        let g2 = p.on_count(1).expect("a new loop");
        assert_ne!(g, g2);
    }

    #[test]
    fn a_cancelled_loop_is_replaced_once_its_heartbeat_is_stale() {
        let mut p = PushLoop::default();
        let g = p.on_count(10_000).unwrap();
        assert!(p.beat(g, 10_200));
        // The runtime cancels the loop here: no beat, no end.
        for t in [10_201, 10_600, 10_200 + STALE_AFTER_MS - 1] {
            assert_eq!(p.on_count(t), None, "at {t} the heartbeat is fresh");
        }
        let g2 = p
            .on_count(10_200 + STALE_AFTER_MS)
            .expect("stale heartbeat: a new loop starts");
        assert_ne!(g, g2);
        assert!(p.is_running(10_200 + STALE_AFTER_MS));
    }

    #[test]
    fn a_replaced_loop_stops_and_its_end_does_not_touch_the_new_one() {
        let mut p = PushLoop::default();
        let old = p.on_count(0).unwrap();
        // The old loop is stuck in a slow push for longer than the threshold.
        let new = p.on_count(STALE_AFTER_MS + 5).unwrap();
        assert!(!p.beat(old, STALE_AFTER_MS + 10), "the old loop must stop");
        p.end(old);
        assert!(p.is_running(STALE_AFTER_MS + 10));
        assert!(p.beat(new, STALE_AFTER_MS + 20));
    }

    #[test]
    fn a_clock_step_back_cannot_block_pushes() {
        let mut p = PushLoop::default();
        let _ = p.on_count(1_000_000).unwrap();
        // The loop died; the clock then stepped back by an hour.
        assert!(p.on_count(1_000_000 - 3_600_000).is_some());
    }

    proptest! {
        /// Whatever the order of counts, beats, ends and cancellations, at
        /// most one loop goes on at a time, and a count never waits behind a
        /// loop whose heartbeat is stale.
        #[test]
        fn at_most_one_loop_goes_on_and_no_count_is_stranded(
            steps in proptest::collection::vec((0u8..4, 0i64..700), 1..200)
        ) {
            let mut p = PushLoop::default();
            let mut now = 1_000_000i64;
            let mut live: Vec<u64> = Vec::new();
            for (action, dt) in steps {
                now += dt;
                match action {
                    0 => {
                        let before = p;
                        match p.on_count(now) {
                            Some(g) => {
                                prop_assert!(PushLoop::is_stale(before.heartbeat_ms, now));
                                live.push(g);
                            }
                            None => prop_assert!(before.is_running(now)),
                        }
                    }
                    1 => {
                        // Every live loop beats; only the newest may go on.
                        let going: Vec<u64> = live.iter().copied().filter(|g| p.beat(*g, now)).collect();
                        prop_assert!(going.len() <= 1);
                        live = going;
                    }
                    2 => {
                        if let Some(g) = live.pop() {
                            p.end(g);
                        }
                    }
                    _ => live.clear(), // cancelled: no beat, no end
                }
            }
        }
    }
}
