//! The keys written most, with bounded memory: the space-saving sketch
//! (Metwally, Agrawal, El Abbadi). `capacity` counters track the heavy
//! hitters of any stream; every key written more than `total / capacity`
//! times is guaranteed to be in the sketch, and each count overestimates
//! the truth by at most its recorded `error`.
//!
//! Each stats shard keeps a [`RecentHotKeys`]: one sketch per minute, the
//! current and the previous, so `/stats?top=N` ranks the keys written in
//! the last one to two minutes. A key's writes all reach one shard (its
//! scheduler's), so the shards' lists combine by sorting ([`top_of`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One tracked key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counter {
    pub key: String,
    /// Estimated writes (never below the true count).
    pub count: u64,
    /// How much of `count` may belong to keys it replaced.
    pub error: u64,
}

/// A space-saving sketch of at most `capacity` keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HotKeys {
    capacity: usize,
    counters: Vec<Counter>,
}

impl HotKeys {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            counters: Vec::new(),
        }
    }

    /// Counts `n` writes to `key`.
    pub fn add(&mut self, key: &str, n: u64) {
        if n == 0 {
            return;
        }
        if let Some(c) = self.counters.iter_mut().find(|c| c.key == key) {
            c.count += n;
            return;
        }
        if self.counters.len() < self.capacity {
            self.counters.push(Counter {
                key: key.to_string(),
                count: n,
                error: 0,
            });
            return;
        }
        // Replace the smallest counter: the newcomer inherits its count as
        // possible error.
        if let Some(min) = self
            .counters
            .iter_mut()
            .min_by(|a, b| a.count.cmp(&b.count).then_with(|| b.key.cmp(&a.key)))
        {
            let floor = min.count;
            *min = Counter {
                key: key.to_string(),
                count: floor + n,
                error: floor,
            };
        }
    }

    /// The count a key absent from this sketch may still have had: the
    /// smallest counter once the sketch is full, else 0.
    fn floor(&self) -> u64 {
        if self.counters.len() < self.capacity {
            0
        } else {
            self.counters.iter().map(|c| c.count).min().unwrap_or(0)
        }
    }

    /// Folds another sketch in. A key missing from one side is given that
    /// side's floor (it may have been evicted there), so estimates still
    /// never fall below the truth.
    pub fn merge(&mut self, other: &HotKeys) {
        let (fa, fb) = (self.floor(), other.floor());
        let mut all: BTreeMap<String, (Option<&Counter>, Option<&Counter>)> = BTreeMap::new();
        for c in &self.counters {
            all.entry(c.key.clone()).or_default().0 = Some(c);
        }
        for c in &other.counters {
            all.entry(c.key.clone()).or_default().1 = Some(c);
        }
        let mut merged: Vec<Counter> = all
            .into_iter()
            .map(|(key, (a, b))| Counter {
                count: a.map_or(fa, |c| c.count) + b.map_or(fb, |c| c.count),
                error: a.map_or(fa, |c| c.error) + b.map_or(fb, |c| c.error),
                key,
            })
            .collect();
        merged.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
        self.capacity = self.capacity.max(other.capacity);
        merged.truncate(self.capacity);
        self.counters = merged;
    }

    /// The `n` keys with the highest counts, most first (ties by key).
    pub fn top(&self, n: usize) -> Vec<Counter> {
        let mut v = self.counters.clone();
        v.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
        v.truncate(n);
        v
    }

    pub fn is_empty(&self) -> bool {
        self.counters.is_empty()
    }
}

/// The length of one hot-key window.
pub const WINDOW_MS: i64 = 60_000;

/// Keys tracked per window of a shard. A shard reports at most this many;
/// `/stats?top=N` allows N up to 100.
pub const CAPACITY: usize = 128;

/// The heavy hitters of the current window and the one before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecentHotKeys {
    /// Start of the current window (a multiple of [`WINDOW_MS`]).
    start_ms: i64,
    current: HotKeys,
    previous: HotKeys,
}

impl Default for RecentHotKeys {
    fn default() -> Self {
        Self {
            start_ms: 0,
            current: HotKeys::new(CAPACITY),
            previous: HotKeys::new(CAPACITY),
        }
    }
}

impl RecentHotKeys {
    /// Moves the windows on to the one holding `now_ms`. A clock that
    /// steps back keeps the current window.
    fn roll(&mut self, now_ms: i64) {
        let start = now_ms.div_euclid(WINDOW_MS) * WINDOW_MS;
        if start <= self.start_ms {
            return;
        }
        self.previous = if start == self.start_ms + WINDOW_MS {
            std::mem::replace(&mut self.current, HotKeys::new(CAPACITY))
        } else {
            self.current = HotKeys::new(CAPACITY);
            HotKeys::new(CAPACITY)
        };
        self.start_ms = start;
    }

    /// Counts `n` writes to `key` at `now_ms`.
    pub fn add(&mut self, key: &str, n: u64, now_ms: i64) {
        self.roll(now_ms);
        self.current.add(key, n);
    }

    /// The `n` keys written most in this window and the previous one, as
    /// seen at `now_ms`, most first.
    pub fn top(&self, n: usize, now_ms: i64) -> Vec<Counter> {
        let mut view = self.clone();
        view.roll(now_ms);
        let mut both = view.previous.clone();
        both.merge(&view.current);
        both.top(n)
    }
}

/// The `n` keys with the most writes over several shards' lists (each key
/// in at most one list), most first, ties by key.
pub fn top_of(lists: impl IntoIterator<Item = Vec<Counter>>, n: usize) -> Vec<Counter> {
    let mut all: Vec<Counter> = lists.into_iter().flatten().collect();
    all.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
    all.truncate(n);
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn heavy_keys_surface_first() {
        let mut h = HotKeys::new(3);
        for i in 0..100 {
            h.add("hot", 1);
            h.add(&format!("cold-{i}"), 1);
        }
        assert_eq!(h.top(1)[0].key, "hot");
        assert_eq!(h.top(10).len(), 3);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        /// Against exact counts: every key above total/capacity is kept,
        /// and each estimate brackets the truth (count - error <= true <= count).
        #[test]
        fn estimates_bracket_exact_counts(stream in proptest::collection::vec(0u8..30, 1..400), cap in 2usize..12) {
            let mut h = HotKeys::new(cap);
            let mut exact: BTreeMap<String, u64> = BTreeMap::new();
            for k in &stream {
                let key = format!("k{k}");
                h.add(&key, 1);
                *exact.entry(key).or_default() += 1;
            }
            let total = stream.len() as u64;
            for (key, n) in &exact {
                let est = h.top(cap).into_iter().find(|c| &c.key == key);
                if *n * cap as u64 > total {
                    prop_assert!(est.is_some(), "{key} ({n} of {total}) missing");
                }
                if let Some(c) = est {
                    prop_assert!(c.count >= *n);
                    prop_assert!(c.count - c.error <= *n);
                }
            }
        }

        #[test]
        fn merged_sketches_keep_the_guarantee(a in proptest::collection::vec(0u8..20, 0..200), b in proptest::collection::vec(0u8..20, 0..200)) {
            let cap = 6;
            let (mut x, mut y) = (HotKeys::new(cap), HotKeys::new(cap));
            let mut exact: BTreeMap<String, u64> = BTreeMap::new();
            for k in &a { x.add(&format!("k{k}"), 1); *exact.entry(format!("k{k}")).or_default() += 1; }
            for k in &b { y.add(&format!("k{k}"), 1); *exact.entry(format!("k{k}")).or_default() += 1; }
            x.merge(&y);
            let total = (a.len() + b.len()) as u64;
            for (key, n) in &exact {
                let est = x.top(cap).into_iter().find(|c| &c.key == key);
                if *n * cap as u64 > total * 2 {
                    prop_assert!(est.is_some(), "{key} ({n} of {total}) missing after merge");
                }
                if let Some(c) = est {
                    prop_assert!(c.count >= *n);
                }
            }
        }
    }

    #[test]
    fn recent_keys_cover_two_windows_then_fade() {
        let mut r = RecentHotKeys::default();
        r.add("a", 5, 10_000);
        r.add("b", 3, 70_000);
        let top = r.top(10, 70_000);
        assert_eq!(top[0].key, "a");
        assert_eq!(top[0].count, 5);
        assert_eq!(top[1].key, "b");
        // Two windows later "a" has faded, "b" is the previous window.
        let top = r.top(10, 130_000);
        assert_eq!(top.len(), 1);
        assert_eq!(top[0].key, "b");
        assert!(r.top(10, 200_000).is_empty());
        // A gap of several windows forgets everything at the next write.
        r.add("c", 1, 500_000);
        assert_eq!(r.top(10, 500_000).len(), 1);
    }

    #[test]
    fn a_clock_step_back_keeps_counting_into_the_current_window() {
        let mut r = RecentHotKeys::default();
        r.add("a", 1, 120_000);
        r.add("a", 1, 60_000);
        assert_eq!(r.top(1, 120_000)[0].count, 2);
    }

    #[test]
    fn shard_lists_combine_most_first() {
        let c = |k: &str, n| Counter {
            key: k.into(),
            count: n,
            error: 0,
        };
        let top = top_of(vec![vec![c("a", 3), c("b", 1)], vec![c("z", 7)]], 2);
        assert_eq!(
            top.iter().map(|c| c.key.as_str()).collect::<Vec<_>>(),
            ["z", "a"]
        );
    }
}
