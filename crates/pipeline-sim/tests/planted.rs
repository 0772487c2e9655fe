//! A simulator that has never failed proves nothing. Each test plants one
//! known defect back into the real code (`engine::planted`) and asserts the
//! simulator's checkers catch it within a stated number of seeds, printing
//! the first failing seed and its violation.

use pipeline_sim::{plant, run, Bug};

/// Runs seeds from 0 with `bug` planted; the first violation found.
fn first_failure(bug: Bug, within: u64) -> Option<(u64, String)> {
    plant(Some(bug));
    let found = (0..within).find_map(|seed| run(seed).err().map(|f| (seed, f.violation)));
    plant(None);
    found
}

fn assert_found(bug: Bug, within: u64) {
    match first_failure(bug, within) {
        Some((seed, v)) => println!("{bug:?}: found by seed {seed}: {v}"),
        None => panic!("{bug:?} was not found within {within} seeds"),
    }
}

#[test]
fn stale_recovery_is_found() {
    assert_found(Bug::StaleRecovery, 2000);
}

#[test]
fn sync_superseding_early_is_found() {
    assert_found(Bug::SyncSupersedesEarly, 2000);
}

#[test]
fn claim_before_send_is_found() {
    assert_found(Bug::ClaimBeforeSend, 2000);
}

#[test]
fn dead_letter_deleting_first_is_found() {
    assert_found(Bug::DeadLetterDeletesFirst, 2000);
}

#[test]
fn start_before_get_is_found() {
    assert_found(Bug::StartBeforeGet, 2000);
}

#[test]
fn split_enqueue_is_found() {
    assert_found(Bug::SplitEnqueue, 2000);
}

#[test]
fn recount_after_prune_is_found() {
    assert_found(Bug::RecountAfterPrune, 2000);
}

#[test]
fn late_write_taken_for_a_duplicate_is_found() {
    assert_found(Bug::LateWriteTakenForDuplicate, 2000);
}

#[test]
fn constant_retry_delay_is_found() {
    assert_found(Bug::ConstantRetryDelay, 2000);
}

#[test]
fn shard_ignoring_the_base_is_found() {
    assert_found(Bug::ShardIgnoresBase, 2000);
}

#[test]
fn unanswered_push_taken_as_acknowledged_is_found() {
    assert_found(Bug::UnansweredPushAcked, 2000);
}

#[test]
fn an_alarm_taken_for_still_set_after_it_fired_is_found() {
    assert_found(Bug::AlarmKnownAcrossRuns, 2000);
}

/// The same seeds pass with nothing planted (the default run covers more).
#[test]
fn seeds_pass_without_planted_bugs() {
    plant(None);
    for seed in 0..300 {
        if let Err(f) = run(seed) {
            panic!("{f}");
        }
    }
}

/// One seed is one run: replaying it gives the same result.
#[test]
fn a_seed_replays_exactly() {
    plant(None);
    let a = run(42).map(|r| (r.events, r.simulated_ms, r.writes, r.committed));
    let b = run(42).map(|r| (r.events, r.simulated_ms, r.writes, r.committed));
    assert_eq!(a.ok(), b.ok());
}

#[test]
fn an_ignored_condition_is_found() {
    assert_found(Bug::ConditionIgnored, 2000);
}

#[test]
fn a_folded_conditional_write_is_found() {
    assert_found(Bug::ConditionFolded, 2000);
}

#[test]
fn an_outbox_emptied_before_the_send_is_found() {
    assert_found(Bug::OutboxRemovedBeforeSend, 2000);
}
