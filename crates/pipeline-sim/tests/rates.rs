//! The per-key figures the capacity model assumes, checked on one hot key
//! (`pipeline_sim::rates`), and the check shown to fail on a planted
//! defect that every fault run passes.

use pipeline_core::engine::STATS_QUEUED_PUSH_INTERVAL_MS;
use pipeline_sim::rates::run_rate;
use pipeline_sim::{plant, run, Bug};

/// At 151 uploads a second (the hottest key of a Zipf(1.1) stream of
/// 1,000 uploads/s over 10,000 keys) R2 gets about one write a second and
/// the rest are coalesced.
#[test]
fn a_hot_key_at_151_uploads_a_second_is_written_once_a_second() {
    plant(None);
    let r = run_rate(1, 151, 20_000).unwrap_or_else(|f| panic!("{f}"));
    println!("{r:?}");
    if let Err(unmet) = r.check() {
        panic!("the model's assumptions do not hold: {unmet:?}");
    }
    assert!(r.uploads > 2_500, "{} uploads", r.uploads);
    assert!(
        r.coalescing() > 100.0,
        "{} uploads per R2 write",
        r.coalescing()
    );
    assert_eq!(r.max_r2_writes_in_1s, 1);
}

/// At 15,144 uploads a second (the hottest key at 100,000 uploads/s) the
/// queue's batches are full: the key's scheduler gets one call per 100
/// uploads, within what one Durable Object serves, and R2 still one write
/// a second.
#[test]
fn a_hot_key_at_15144_uploads_a_second_gets_one_scheduler_call_per_full_batch() {
    plant(None);
    let r = run_rate(3, 15_144, 10_000).unwrap_or_else(|f| panic!("{f}"));
    println!("{r:?}");
    assert_eq!(r.check(), Ok(()));
    assert!(
        r.scheduler_calls_per_s < 15_144.0 / 100.0 * 1.1,
        "{} scheduler calls/s",
        r.scheduler_calls_per_s
    );
    assert!(
        r.within_object_limit(),
        "{} calls in one second",
        r.max_scheduler_calls_in_1s
    );
}

/// A hot key of queued writes pushes its counts to the stats shard at most
/// once per [`STATS_QUEUED_PUSH_INTERVAL_MS`] (each push writes rows at
/// the shard and an acknowledgement in the key's own storage), yet does
/// push while it is being written.
#[test]
fn a_hot_key_of_queued_writes_pushes_its_stats_once_per_interval() {
    plant(None);
    let run_ms = 20_000;
    let r = run_rate(1, 151, run_ms).unwrap_or_else(|f| panic!("{f}"));
    let most = run_ms / STATS_QUEUED_PUSH_INTERVAL_MS + 1;
    println!(
        "{} stats pushes in {run_ms} ms of writing (at most {most})",
        r.stats_pushes_while_writing
    );
    assert!(r.stats_pushes_while_writing >= 2, "{r:?}");
    assert!(
        i64::try_from(r.stats_pushes_while_writing).unwrap_or(i64::MAX) <= most,
        "{} stats pushes in {run_ms} ms",
        r.stats_pushes_while_writing
    );
}

/// A scheduler that leaves every second slot idle loses nothing, so the
/// fault runs pass it; the rate check does not.
#[test]
fn an_idle_slot_passes_the_fault_runs_and_fails_the_rate_check() {
    plant(Some(Bug::SlotLeftIdle));
    let fault_runs = (0..200).find_map(|seed| run(seed).err());
    let rate = run_rate(1, 151, 20_000);
    plant(None);
    assert!(
        fault_runs.is_none(),
        "the fault runs were expected to pass (the defect loses nothing): {}",
        fault_runs.map(|f| f.to_string()).unwrap_or_default()
    );
    let r = rate.unwrap_or_else(|f| panic!("{f}"));
    match r.check() {
        Ok(()) => panic!("the rate check passed an idle slot: {r:?}"),
        Err(unmet) => println!("SlotLeftIdle: found by the rate check: {unmet:?}"),
    }
}
