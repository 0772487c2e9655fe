//! What a stats shard does with a push, kept apart from its storage.
//!
//! A shard holds one row per source (its newest version and cumulative
//! totals) and a running total over all of them. A push adds the
//! difference between the source's new totals and what the shard held for
//! it, so `/stats` reads one running total per shard instead of summing a
//! row per key ever written.
//!
//! Rows of sources idle for [`SOURCE_IDLE_MS`] are compacted: deleted,
//! their counts staying in the running total. A source that pushes again
//! later sends what the shard last acknowledged ([`super::Acked`]); with no
//! row to compare against, the shard adds the difference from that base.
//! This is exact as long as a source learns the outcome of its pushes
//! within the idle window: a push that landed but whose answer was lost
//! is retried every few seconds until one is acknowledged, so the shard
//! must not forget the source in between. The window (a day) is longer
//! than any scheduler outage the pipeline rides out (about 18 hours with
//! the queue's 16 retries).
//!
//! The running total need not be stored at every push: it is always the
//! counts of the compacted rows ([`MemoryShard::compacted`], which change
//! only when rows are compacted or a compacted source comes back) plus
//! those of the rows kept ([`rebuilt`]). A shard stores those two and
//! sums them when it starts, so a push writes its source's row only.

use serde::{Deserialize, Serialize};

use super::hot_keys::RecentHotKeys;
use super::{Push, SourcePush, Totals};
use crate::engine::planted::{active, Bug};

/// How long a source must have been silent before its row is compacted.
/// Longer: more rows kept (about one per key written in the window);
/// shorter: less storage, but a source whose last push's answer was lost
/// and that cannot reach the shard for this long would be counted twice.
pub const SOURCE_IDLE_MS: i64 = 24 * 3_600_000;

/// How often a shard looks for idle rows (on a push, at most this often).
/// Each look scans the source rows once.
pub const COMPACT_EVERY_MS: i64 = 10 * 60_000;

/// How often a shard saves its hot-key sketch. Between saves the sketch
/// lives in the object's memory; a restart loses at most this much of the
/// recent counts, which only rank keys.
pub const HOT_SAVE_EVERY_MS: i64 = 5_000;

/// A shard's row for one source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRow {
    pub version: i64,
    pub totals: Totals,
    /// When the row last changed; `None` for rows written before the
    /// shards kept running totals (never compacted: their sources may push
    /// without a base).
    pub pushed_ms: Option<i64>,
}

/// A push the shard takes: what to add to the running total and the row
/// to keep for the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    pub delta: Totals,
    pub row: SourceRow,
    /// A compacted source came back: the base it was acknowledged, which
    /// the compacted counts hold, moves back from them into its row.
    pub reclaimed: Option<Totals>,
}

/// The outcome of `push` against the row `held` for its source (`None`:
/// none, because the source is new or its row was compacted). `None` when
/// the push changes nothing: a repeat or a straggler older than what the
/// shard holds, or older than the base its source already saw
/// acknowledged.
pub fn apply(held: Option<&SourceRow>, push: &SourcePush, now_ms: i64) -> Option<Applied> {
    let (from, reclaimed) = match (held, &push.base) {
        (Some(h), _) if push.version <= h.version => return None,
        (Some(h), _) => (h.totals, None),
        (None, Some(b)) if push.version <= b.version => return None,
        (None, Some(_)) if active(Bug::ShardIgnoresBase) => (Totals::default(), None),
        (None, Some(b)) => (b.totals, Some(b.totals)),
        (None, None) => (Totals::default(), None),
    };
    Some(Applied {
        reclaimed,
        delta: push.totals.since(&from),
        row: SourceRow {
            version: push.version,
            totals: push.totals,
            pushed_ms: Some(now_ms),
        },
    })
}

/// Whether `row` may be compacted at `now_ms`.
pub fn is_idle(row: &SourceRow, now_ms: i64, idle_ms: i64) -> bool {
    row.pushed_ms.is_some_and(|t| now_ms - t >= idle_ms)
}

/// A shard's running figures: the total over every source it ever took,
/// and the recently hot keys.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Running {
    pub total: Totals,
    #[serde(default)]
    pub hot: RecentHotKeys,
}

impl Running {
    /// Adds a taken push.
    pub fn record(&mut self, push: &SourcePush, applied: &Applied, now_ms: i64) {
        self.total += applied.delta;
        if let Some(key) = &push.key {
            self.hot.add(key, applied.delta.writes(), now_ms);
        }
    }
}

/// The running total a shard holding `compacted` and `rows` has: what a
/// shard that stores only those two computes when it starts.
pub fn rebuilt(compacted: &Totals, rows: impl IntoIterator<Item = Totals>) -> Totals {
    let mut total = *compacted;
    for t in rows {
        total += t;
    }
    total
}

/// A whole shard in memory: the reference the stored shard follows, used
/// by the tests here and by the simulator.
#[derive(Debug, Clone, Default)]
pub struct MemoryShard {
    pub rows: std::collections::BTreeMap<String, SourceRow>,
    pub running: Running,
    /// The counts of compacted rows, less the bases of sources that came
    /// back since: with the rows, what the running total is made of.
    pub compacted: Totals,
}

impl MemoryShard {
    /// Takes a push at `now_ms`.
    pub fn push(&mut self, p: &Push, now_ms: i64) {
        if let Some(applied) = apply(self.rows.get(&p.source), &p.push, now_ms) {
            self.running.record(&p.push, &applied, now_ms);
            if let Some(base) = &applied.reclaimed {
                self.compacted = self.compacted.since(base);
            }
            self.rows.insert(p.source.clone(), applied.row);
        }
    }

    /// Forgets the rows idle for `idle_ms` at `now_ms`, keeping their
    /// counts in [`MemoryShard::compacted`]; returns how many.
    pub fn compact(&mut self, now_ms: i64, idle_ms: i64) -> usize {
        let before = self.rows.len();
        self.rows.retain(|_, r| {
            let idle = is_idle(r, now_ms, idle_ms);
            if idle {
                self.compacted += r.totals;
            }
            !idle
        });
        before - self.rows.len()
    }

    /// The running total a restart would compute from what is stored.
    pub fn rebuilt(&self) -> Totals {
        rebuilt(&self.compacted, self.rows.values().map(|r| r.totals))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Acked;
    use proptest::prelude::*;

    fn totals(accepted: i64) -> Totals {
        Totals {
            accepted,
            ..Totals::default()
        }
    }

    fn push(source: &str, version: i64, accepted: i64, base: Option<(i64, i64)>) -> Push {
        Push {
            source: source.into(),
            push: SourcePush {
                version,
                totals: totals(accepted),
                base: base.map(|(v, a)| Acked {
                    version: v,
                    totals: totals(a),
                }),
                key: None,
            },
        }
    }

    #[test]
    fn repeats_and_stragglers_change_nothing() {
        let mut s = MemoryShard::default();
        s.push(&push("a", 2, 5, None), 0);
        s.push(&push("a", 2, 5, None), 1);
        s.push(&push("a", 1, 3, None), 2);
        assert_eq!(s.running.total.accepted, 5);
        s.push(&push("a", 3, 9, Some((2, 5))), 3);
        assert_eq!(s.running.total.accepted, 9);
    }

    #[test]
    fn a_compacted_source_adds_only_what_is_new_after_its_base() {
        let mut s = MemoryShard::default();
        s.push(&push("a", 4, 10, None), 0);
        s.push(&push("b", 1, 1, None), SOURCE_IDLE_MS);
        assert_eq!(s.compact(SOURCE_IDLE_MS, SOURCE_IDLE_MS), 1);
        assert_eq!(s.rows.len(), 1);
        assert_eq!(s.running.total.accepted, 11);
        // "a" comes back with the base the shard acknowledged.
        s.push(&push("a", 6, 15, Some((4, 10))), SOURCE_IDLE_MS + 1);
        assert_eq!(s.running.total.accepted, 16);
        // A repeat of the base itself is stale.
        s.compact(3 * SOURCE_IDLE_MS, SOURCE_IDLE_MS);
        s.push(&push("a", 6, 15, Some((6, 15))), 3 * SOURCE_IDLE_MS);
        assert_eq!(s.running.total.accepted, 16);
    }

    #[test]
    fn legacy_rows_are_never_compacted() {
        let row = SourceRow {
            version: 1,
            totals: totals(1),
            pushed_ms: None,
        };
        assert!(!is_idle(&row, i64::MAX, 0));
    }

    #[test]
    fn hot_keys_count_each_write_once_per_push() {
        let mut s = MemoryShard::default();
        let mut t = Totals::default();
        t.queue_wait.observe(5);
        t.queue_wait.observe(5);
        let p = |v, t| Push {
            source: "k".into(),
            push: SourcePush {
                version: v,
                totals: t,
                base: None,
                key: Some("hot".into()),
            },
        };
        s.push(&p(1, t), 1000);
        s.push(&p(1, t), 1001);
        t.queue_wait.observe(5);
        s.push(&p(2, t), 1002);
        assert_eq!(s.running.hot.top(1, 1002)[0].count, 3);
    }

    /// One step of the property test's world.
    #[derive(Debug, Clone)]
    enum Step {
        /// A source counts more.
        Count(usize, i64),
        /// A source pushes; the push is lost (0), lands and is acknowledged
        /// (1), lands with its answer lost (2), or lands twice (3).
        Push(usize, u8),
        /// A copy of an earlier push of a source arrives late.
        Straggler(usize),
        /// Time passes (ms) and the shard compacts what is idle.
        Wait(i64),
    }

    /// A source of the property test's world.
    #[derive(Debug, Clone, Default)]
    struct Source {
        version: i64,
        totals: Totals,
        acked: Option<Acked>,
        /// Pushes sent, with when (for stragglers).
        sent: Vec<(i64, Push)>,
    }

    impl Source {
        fn push(&self, i: usize) -> Push {
            Push {
                source: format!("s{i}"),
                push: SourcePush {
                    version: self.version,
                    totals: self.totals,
                    base: self.acked,
                    key: None,
                },
            }
        }

        fn ack(&mut self, p: &Push) {
            if self.acked.is_none_or(|a| a.version < p.push.version) {
                self.acked = Some(Acked {
                    version: p.push.version,
                    totals: p.push.totals,
                });
            }
        }
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (0usize..4, 1i64..5).prop_map(|(s, n)| Step::Count(s, n)),
            (0usize..4, 0u8..4).prop_map(|(s, o)| Step::Push(s, o)),
            (0usize..4).prop_map(Step::Straggler),
            (0i64..3_000).prop_map(Step::Wait),
        ]
    }

    proptest! {
        /// Whatever pushes are lost, repeated, answered or not, delivered
        /// late, and whatever idle rows are compacted, the running total
        /// equals the sources' totals once each source's last push is
        /// acknowledged, provided a source learns its pushes' outcome
        /// within the idle window (here: it retries before the window ends
        /// and stragglers are younger than the window).
        #[test]
        fn the_running_total_is_exact_once_drained(steps in proptest::collection::vec(step(), 1..300)) {
            const IDLE: i64 = 10_000;
            let mut shard = MemoryShard::default();
            let mut now = 0i64;
            let mut src: Vec<Source> = (0..4).map(|_| Source::default()).collect();
            for st in steps {
                match st {
                    Step::Count(i, n) => {
                        src[i].version += 1;
                        src[i].totals.accepted += n;
                    }
                    Step::Push(i, outcome) => {
                        let p = src[i].push(i);
                        src[i].sent.push((now, p.clone()));
                        if outcome >= 1 {
                            shard.push(&p, now);
                        }
                        if outcome == 3 {
                            shard.push(&p, now);
                        }
                        if outcome == 1 || outcome == 3 {
                            src[i].ack(&p);
                        }
                    }
                    Step::Straggler(i) => {
                        if let Some((_, p)) = src[i].sent.iter().rev().find(|(t, _)| now - t < IDLE / 2) {
                            let p = p.clone();
                            shard.push(&p, now);
                        }
                    }
                    Step::Wait(ms) if ms % 7 == 0 => {
                        // The shard restarts: it sums what it stored.
                        prop_assert_eq!(shard.rebuilt(), shard.running.total);
                        shard.running.total = shard.rebuilt();
                    }
                    Step::Wait(ms) => {
                        // Sources with an unacknowledged push retry (every
                        // few seconds) before the shard may forget them.
                        for (i, s) in src.iter_mut().enumerate() {
                            if s.version > 0 && s.acked.is_none_or(|a| a.version < s.version) {
                                let p = s.push(i);
                                shard.push(&p, now);
                                s.ack(&p);
                            }
                        }
                        now += ms;
                        shard.compact(now, IDLE);
                    }
                }
            }
            // Drain: every source pushes until acknowledged.
            for (i, s) in src.iter().enumerate() {
                shard.push(&s.push(i), now);
            }
            let want: i64 = src.iter().map(|s| s.totals.accepted).sum();
            prop_assert_eq!(shard.running.total.accepted, want);
            prop_assert_eq!(shard.rebuilt(), shard.running.total);
        }
    }
}
