//! Pipeline totals as `/stats` reports them, and how cumulative pushes from
//! many sources add up without double counting.
//!
//! Every writer of counts (a key's scheduler, a producer isolate) is a
//! *source* that owns cumulative totals and a version that only grows. A
//! shard keeps the newest totals per source; a push that is repeated,
//! reordered or lost and retried can never count twice.

use std::ops::AddAssign;

use serde::{Deserialize, Serialize};

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

/// One source's push: its cumulative totals at `version`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Push {
    pub source: String,
    pub version: i64,
    pub totals: Totals,
}

/// Whether a push replaces what a shard holds for its source: only a newer
/// version does, so repeats and stragglers change nothing.
pub fn supersedes(held_version: Option<i64>, push: &Push) -> bool {
    held_version.is_none_or(|v| push.version > v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_newer_versions_replace_a_source() {
        let p = Push {
            source: "s".into(),
            version: 3,
            totals: Totals::default(),
        };
        assert!(supersedes(None, &p));
        assert!(supersedes(Some(2), &p));
        assert!(!supersedes(Some(3), &p));
        assert!(!supersedes(Some(4), &p));
    }
}
