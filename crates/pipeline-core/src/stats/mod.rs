//! Pipeline totals as `/stats` reports them: the one home of the counting
//! logic that the key schedulers, the producer isolates and the stats
//! shards share.
//!
//! Every writer of counts (a key's scheduler, a producer isolate) is a
//! *source* that owns cumulative totals and a version that only grows. It
//! pushes them to one of a fixed set of shards ([`shard`]), which adds the
//! difference to a running total, so reading `/stats` costs one row per
//! shard however many keys were ever written. A push that is repeated,
//! reordered or lost and retried never counts twice, and a shard may forget
//! a source that has been idle for a day ([`shard::SOURCE_IDLE_MS`])
//! without losing its counts: each push carries what the shard last
//! acknowledged ([`Acked`]). [`push_loop`] paces the producers' pushes;
//! [`hot_keys`] keeps the most written keys in bounded memory.

pub mod hot_keys;
pub mod push_loop;
pub mod shard;

use std::ops::AddAssign;

use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// Cumulative pipeline totals of one source, or summed over many.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub accepted: i64,
    pub committed: i64,
    pub superseded: i64,
    pub failed: i64,
    pub r2_writes: i64,
    pub rate_limited: i64,
    /// From acceptance to the start of the committed R2 write.
    #[serde(default)]
    pub commit_lag: crate::metrics::Histogram,
    /// From acceptance until the key's scheduler took the write.
    #[serde(default)]
    pub queue_wait: crate::metrics::Histogram,
}

impl AddAssign for Totals {
    fn add_assign(&mut self, o: Self) {
        self.accepted += o.accepted;
        self.committed += o.committed;
        self.superseded += o.superseded;
        self.failed += o.failed;
        self.r2_writes += o.r2_writes;
        self.rate_limited += o.rate_limited;
        self.commit_lag.add(&o.commit_lag);
        self.queue_wait.add(&o.queue_wait);
    }
}

impl Totals {
    /// Writes accepted and not yet terminal.
    pub fn inflight(&self) -> i64 {
        self.accepted - self.committed - self.superseded - self.failed
    }

    /// The contract's `/stats` body, with `inflight` derived.
    pub fn to_json(self) -> serde_json::Value {
        serde_json::json!({
            "accepted": self.accepted,
            "committed": self.committed,
            "superseded": self.superseded,
            "failed": self.failed,
            "r2_writes": self.r2_writes,
            "rate_limited": self.rate_limited,
            "inflight": self.inflight(),
        })
    }
}

impl Totals {
    /// What `self` counted beyond `earlier` (the same source's older
    /// cumulative totals). Counts only grow within a source; a field that
    /// did not (a source that lost its state) gives 0 rather than a
    /// negative count.
    #[must_use]
    pub fn since(&self, earlier: &Totals) -> Totals {
        let d = |a: i64, b: i64| (a - b).max(0);
        Totals {
            accepted: d(self.accepted, earlier.accepted),
            committed: d(self.committed, earlier.committed),
            superseded: d(self.superseded, earlier.superseded),
            failed: d(self.failed, earlier.failed),
            r2_writes: d(self.r2_writes, earlier.r2_writes),
            rate_limited: d(self.rate_limited, earlier.rate_limited),
            commit_lag: self.commit_lag.since(&earlier.commit_lag),
            queue_wait: self.queue_wait.since(&earlier.queue_wait),
        }
    }

    /// Writes a key's scheduler took (each one once: the queue-wait
    /// histogram observes every write when its scheduler first records it).
    pub fn writes(&self) -> u64 {
        self.queue_wait.count
    }
}

/// The largest `N` of `/stats?top=N`.
pub const MAX_TOP: usize = 100;

/// Reads the value of `/stats?top=`: an integer from 1 to [`MAX_TOP`].
///
/// # Errors
/// [`ApiError::InvalidParameter`] for anything else (the value is not
/// quoted back).
pub fn parse_top(value: &str) -> Result<usize, ApiError> {
    value
        .parse::<usize>()
        .ok()
        .filter(|n| (1..=MAX_TOP).contains(n))
        .ok_or_else(|| ApiError::InvalidParameter("top must be an integer from 1 to 100".into()))
}

/// The `/stats` body; with `top`, the hot keys as `top_keys`.
pub fn stats_body(totals: Totals, top: Option<&[hot_keys::Counter]>) -> serde_json::Value {
    let mut body = totals.to_json();
    if let (Some(top), Some(map)) = (top, body.as_object_mut()) {
        map.insert(
            "top_keys".into(),
            top.iter()
                .map(|c| serde_json::json!({"key": c.key, "writes": c.count}))
                .collect(),
        );
    }
    body
}

/// What a shard acknowledged of a source: the version and totals of the
/// source's last push that returned success.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acked {
    pub version: i64,
    pub totals: Totals,
}

/// What a source sends: its cumulative totals at `version`, and what the
/// shard last acknowledged, so a shard that has forgotten the source (it
/// was idle and compacted) adds only what is new.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourcePush {
    pub version: i64,
    pub totals: Totals,
    /// `None` for a source that has never been acknowledged.
    #[serde(default)]
    pub base: Option<Acked>,
    /// The object key of a key's scheduler (for the hot-key table); `None`
    /// for a producer isolate.
    #[serde(default)]
    pub key: Option<String>,
}

/// One source's push as a shard receives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Push {
    pub source: String,
    #[serde(flatten)]
    pub push: SourcePush,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_is_one_to_a_hundred() {
        assert_eq!(parse_top("1").unwrap(), 1);
        assert_eq!(parse_top("100").unwrap(), 100);
        for bad in ["0", "101", "-1", "", "ten", "2.5"] {
            assert_eq!(
                parse_top(bad).unwrap_err().code(),
                "invalid_parameter",
                "{bad}"
            );
        }
    }

    #[test]
    fn the_body_gains_top_keys_only_when_asked() {
        let t = Totals {
            accepted: 3,
            committed: 1,
            ..Totals::default()
        };
        assert!(stats_body(t, None).get("top_keys").is_none());
        let top = [hot_keys::Counter {
            key: "a/b".into(),
            count: 7,
            error: 0,
        }];
        let b = stats_body(t, Some(&top));
        assert_eq!(b["top_keys"][0]["key"], "a/b");
        assert_eq!(b["top_keys"][0]["writes"], 7);
        assert_eq!(b["inflight"], 2);
    }

    #[test]
    fn since_subtracts_every_field_and_never_goes_negative() {
        let mut a = Totals {
            accepted: 5,
            committed: 3,
            ..Totals::default()
        };
        a.commit_lag.observe(10);
        a.commit_lag.observe(2000);
        let mut b = Totals {
            accepted: 2,
            committed: 4,
            ..Totals::default()
        };
        b.commit_lag.observe(10);
        let d = a.since(&b);
        assert_eq!(d.accepted, 3);
        assert_eq!(d.committed, 0);
        assert_eq!(d.commit_lag.count, 1);
        assert_eq!(d.commit_lag.sum_ms, 2000);
        let mut back = b;
        back += d;
        assert_eq!(back.accepted, a.accepted);
        assert_eq!(back.commit_lag, a.commit_lag);
    }
}
