//! One hot key at a steady rate: the per-key figures the capacity model
//! (`docs/SCALE.md`) assumes, measured on the real engine.
//!
//! The fault runs check safety at the few writes per second per key that
//! their seeds draw. The capacity model needs more of one key at the rates
//! its workloads give the hottest key (up to 151,437 uploads/s): that R2
//! sees about one write per second and never more, that the writes in
//! between are coalesced (superseded) rather than queued up, and how long a
//! reader waits to see an accepted write (or a newer one) in R2. A run
//! here is an ordinary simulator run (every invariant still checked) with
//! one key, no faults and clients paced to the rate; [`RateReport::check`]
//! then holds the figures to bounds derived from the pipeline's own
//! parameters, not fitted to a run.

use pipeline_core::schedule::{WriteRef, WRITE_SPACING_MS};
use pipeline_core::status::UploadState;

use crate::config::SimConfig;
use crate::world::START_MS;
use crate::Failure;

/// The slowest R2 operation the simulated R2 takes (its slow tail).
pub const SLOWEST_R2_MS: i64 = 1500;

/// About how many requests a second one Durable Object serves (the
/// platform's published soft limit). The simulator does not model an
/// object's throughput; a rate whose scheduler calls exceed this is one
/// the capacity model says the hot key's object cannot take.
pub const OBJECT_REQUESTS_PER_S: usize = 1000;

/// What one hot key did at one rate.
#[derive(Debug, Clone)]
pub struct RateReport {
    pub seed: u64,
    /// Uploads per second the clients were paced to.
    pub per_key_per_s: u64,
    /// How long the clients wrote (simulated).
    pub run_ms: i64,
    pub batch_timeout_ms: i64,
    /// Writes accepted (each ended exactly once: the run's checks).
    pub uploads: usize,
    pub committed: usize,
    pub superseded: usize,
    pub failed: usize,
    /// R2 writes to the key, and those that started while clients wrote.
    pub r2_writes: usize,
    pub r2_writes_while_writing: usize,
    /// Most R2 write starts in any 1000 ms window.
    pub max_r2_writes_in_1s: usize,
    /// Shortest gap between two R2 write starts.
    pub min_r2_gap_ms: Option<i64>,
    /// Acceptance to commit of the writes that reached R2: p50, p99, max.
    pub commit_lag_ms: [i64; 3],
    /// Acceptance of each write to the commit of the first write at least
    /// as new (when a reader of R2 first sees it or a newer one): p50,
    /// p99, max.
    pub visible_after_ms: [i64; 3],
    /// Calls into the key's scheduler per second: mean while writing, and
    /// the most in any 1000 ms window.
    pub scheduler_calls_per_s: f64,
    pub max_scheduler_calls_in_1s: usize,
    /// Stats pushes that reached the shard while clients wrote (each a
    /// shard call writing rows, and an acknowledgement written).
    pub stats_pushes_while_writing: usize,
    /// Simulator events run.
    pub events: u64,
}

impl RateReport {
    /// Whether the key's scheduler calls stayed within what one object
    /// serves ([`OBJECT_REQUESTS_PER_S`]) in every second.
    pub fn within_object_limit(&self) -> bool {
        self.max_scheduler_calls_in_1s <= OBJECT_REQUESTS_PER_S
    }

    /// Uploads per R2 write.
    pub fn coalescing(&self) -> f64 {
        self.uploads as f64 / self.r2_writes.max(1) as f64
    }

    /// What the capacity model assumes of one key, checked:
    /// - at most one R2 write starts in any second (R2's limit);
    /// - above one upload a second the key's slot is used: R2 writes while
    ///   clients write number at least 90 % of the seconds written, minus
    ///   one (the first slot);
    /// - the rest are coalesced, not queued: at most one R2 write per
    ///   second written plus three (the writes that drain after);
    /// - nothing fails;
    /// - a reader sees each write (or a newer one) in R2 within, at p99,
    ///   one spacing plus the queue's batch gathering plus the slowest R2
    ///   write, and at worst within two of the slowest R2 writes (the one
    ///   in flight, then its own).
    ///
    /// # Errors
    /// Each assumption that does not hold, in words.
    pub fn check(&self) -> Result<(), Vec<String>> {
        let mut unmet = Vec::new();
        let seconds = self.run_ms / 1000;
        if self.max_r2_writes_in_1s > 1 {
            unmet.push(format!(
                "{} R2 writes started within one second",
                self.max_r2_writes_in_1s
            ));
        }
        if self.per_key_per_s > 1 {
            let least = (seconds * 9 / 10 - 1).max(0) as usize;
            if self.r2_writes_while_writing < least {
                unmet.push(format!(
                    "the key's slot went unused: {} R2 writes in {seconds} s of writing (at least {least})",
                    self.r2_writes_while_writing
                ));
            }
        }
        let most = seconds as usize + 3;
        if self.r2_writes > most {
            unmet.push(format!(
                "writes were not coalesced: {} R2 writes for {seconds} s of writing (at most {most})",
                self.r2_writes
            ));
        }
        if self.failed > 0 {
            unmet.push(format!("{} writes failed", self.failed));
        }
        let p99_bound = WRITE_SPACING_MS + self.batch_timeout_ms + SLOWEST_R2_MS;
        if self.visible_after_ms[1] > p99_bound {
            unmet.push(format!(
                "writes became visible after {} ms at p99 (bound {p99_bound} ms)",
                self.visible_after_ms[1]
            ));
        }
        let max_bound = WRITE_SPACING_MS + self.batch_timeout_ms + 2 * SLOWEST_R2_MS;
        if self.visible_after_ms[2] > max_bound {
            unmet.push(format!(
                "a write became visible only after {} ms (bound {max_bound} ms)",
                self.visible_after_ms[2]
            ));
        }
        if unmet.is_empty() {
            Ok(())
        } else {
            Err(unmet)
        }
    }
}

/// Runs one hot key at `per_key_per_s` uploads a second for `run_ms`
/// (see [`SimConfig::at_rate`]) and measures it.
///
/// # Errors
/// The simulator's [`Failure`] if an invariant broke.
pub fn run_rate(seed: u64, per_key_per_s: u64, run_ms: i64) -> Result<RateReport, Failure> {
    let cfg = SimConfig::at_rate(seed, per_key_per_s, run_ms);
    let batch_timeout_ms = cfg.batch_timeout_ms;
    let (report, world) = crate::run_world(cfg)?;
    let until = START_MS + run_ms;
    let l = world.ledger.borrow();
    let r2 = world.r2.borrow();
    let key = world.objects.borrow()[0].key.clone();
    let starts: &[i64] = r2.write_starts.get(&key).map_or(&[], |v| v.as_slice());

    // Commits in acceptance order (the scheduler commits in that order).
    let mut commits: Vec<(&WriteRef, i64)> = l
        .ended
        .iter()
        .filter(|(_, e)| e.0 == UploadState::Committed)
        .filter_map(|(id, _)| Some((&l.writes.get(id)?.at, *l.ended_ms.get(id)?)))
        .collect();
    commits.sort();
    let commit_lag: Vec<i64> = commits.iter().map(|(w, t)| t - w.accepted_ms).collect();

    let mut writes: Vec<&WriteRef> = l.writes.values().map(|o| &o.at).collect();
    writes.sort();
    let mut visible = Vec::with_capacity(writes.len());
    let mut next = 0;
    for w in writes {
        while next < commits.len() && commits[next].0 < w {
            next += 1;
        }
        if let Some((_, t)) = commits.get(next) {
            visible.push(t - w.accepted_ms);
        }
    }

    let calls: Vec<i64> = l.object_calls.iter().map(|(_, t)| *t).collect();
    let calls_while_writing = calls.iter().filter(|t| **t < until).count();
    let count = |s: UploadState| l.ended.values().filter(|e| e.0 == s).count();
    Ok(RateReport {
        seed: report.seed,
        per_key_per_s,
        run_ms,
        batch_timeout_ms,
        uploads: report.writes,
        committed: count(UploadState::Committed),
        superseded: count(UploadState::Superseded),
        failed: count(UploadState::Failed),
        r2_writes: starts.len(),
        r2_writes_while_writing: starts.iter().filter(|t| **t < until).count(),
        max_r2_writes_in_1s: most_in_window(starts, 1000),
        min_r2_gap_ms: starts.windows(2).map(|p| p[1] - p[0]).min(),
        commit_lag_ms: percentiles(commit_lag),
        visible_after_ms: percentiles(visible),
        scheduler_calls_per_s: calls_while_writing as f64 * 1000.0 / run_ms.max(1) as f64,
        max_scheduler_calls_in_1s: most_in_window(&calls, 1000),
        stats_pushes_while_writing: l.stats_pushes.iter().filter(|t| **t < until).count(),
        events: report.events,
    })
}

/// p50, p99 and max (nearest rank); zeros when empty.
fn percentiles(mut v: Vec<i64>) -> [i64; 3] {
    if v.is_empty() {
        return [0; 3];
    }
    v.sort_unstable();
    let at = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    [at(0.50), at(0.99), v[v.len() - 1]]
}

/// The most of `times` (ascending) within any window `[t, t + width)`.
fn most_in_window(times: &[i64], width: i64) -> usize {
    let mut most = 0;
    let mut lo = 0;
    for hi in 0..times.len() {
        while times[hi] - times[lo] >= width {
            lo += 1;
        }
        most = most.max(hi - lo + 1);
    }
    most
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_take_the_nearest_rank() {
        assert_eq!(percentiles((1..=100).collect()), [50, 99, 100]);
        assert_eq!(percentiles(vec![7]), [7, 7, 7]);
        assert_eq!(percentiles(Vec::new()), [0, 0, 0]);
    }

    #[test]
    fn the_window_counts_starts_less_than_its_width_apart() {
        assert_eq!(most_in_window(&[0, 1000, 2000], 1000), 1);
        assert_eq!(most_in_window(&[0, 999, 2000], 1000), 2);
        assert_eq!(most_in_window(&[0, 1, 2, 5000], 1000), 3);
        assert_eq!(most_in_window(&[], 1000), 0);
    }
}
