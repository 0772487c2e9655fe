//! Faults: crashes of the runtime at three points of a hot-key
//! storm, R2 write failures, duplicate and late deliveries, poison
//! messages. Everything is injected into the real Worker on `wrangler dev`:
//! SIGKILL of the runtime's process group, and the test-only routes of a
//! `test-routes` build (`/_test/fail-writes`, `/_test/duplicate`,
//! `/_test/delayed`, `/_test/enqueue-raw`, `/_test/staged`).
//!
//! Every test owns its worker, so `/stats` is compared exactly, and checks
//! each write it made with `common::verify_writes` (terminal, spacing of
//! `committed_at` ≥ 1000 ms per key, superseded writes name a newer one,
//! the key holds its newest write). Figures are printed (`--nocapture`)
//! for docs/RELIABILITY.md.
//!
//! The local queue is in memory: a kill loses messages not yet delivered.
//! The storm test counts them from the runtime's log (`QUEUE … n/n` lines
//! of completed consumer invocations) and asserts they are the only ids
//! left non-terminal.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{
    delayed_put, duplicate_put, enqueue_raw, fail_writes, json_lines, log_offset, log_since,
    marked_body, n, queue_batches, settle, sweep, verify_writes, wait_staged, Write, INLINE_MAX,
};
use e2e::{expect_api_error, ms, now_ms, start, unique_key, wait_all, LocalWorker, WorkerOptions};
use pipeline_client::{
    Client, ClientError, GetOptions, PutOptions, Stats, UploadState, UploadStatus,
};

const UPLOAD_QUEUE: &str = "r2-pipeline-uploads";

/// A worker of its own, printing the Worker's JSON log lines.
fn worker(label: &str) -> LocalWorker {
    start(WorkerOptions::new(label).log_level("log"))
}

fn ids(writes: &[Write]) -> Vec<String> {
    writes.iter().map(|w| w.id().to_owned()).collect()
}

#[track_caller]
fn assert_stats(s: &Stats, accepted: usize, committed: usize, superseded: usize, failed: usize) {
    assert_eq!(
        (s.accepted, s.committed, s.superseded, s.failed),
        (n(accepted), n(committed), n(superseded), n(failed)),
        "/stats (accepted, committed, superseded, failed): {s:?}"
    );
    assert_eq!(s.r2_writes, n(committed), "one R2 write per commit: {s:?}");
    assert_eq!(
        s.inflight,
        s.accepted - s.committed - s.superseded - s.failed,
        "{s:?}"
    );
}

/// Sends `per_sender` writes from each of `senders` threads, `pace` apart,
/// round-robin over `keys`; every `large_every`-th write is 100 KiB
/// (staged in R2), the others small.
fn storm(
    c: &Client,
    keys: &[String],
    senders: usize,
    per_sender: usize,
    pace: Duration,
    large_every: usize,
) -> Vec<Write> {
    let start = Instant::now();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..senders)
            .map(|t| {
                let c = c.clone();
                s.spawn(move || {
                    (0..per_sender)
                        .map(|i| {
                            if let Some(d) = (start + pace * u32::try_from(i).unwrap())
                                .checked_duration_since(Instant::now())
                            {
                                std::thread::sleep(d);
                            }
                            let seq = t * per_sender + i;
                            let key = &keys[seq % keys.len()];
                            let len = if seq % large_every == large_every - 1 {
                                100 * 1024
                            } else {
                                64 + seq
                            };
                            let body = marked_body(
                                &format!("{key} sender {t} write {i}"),
                                len,
                                seq as u64,
                            );
                            let a = c
                                .put_object(key, &body, &PutOptions::default())
                                .unwrap_or_else(|e| panic!("PUT {key}: {e}"));
                            Write::put(a, body)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("sender panicked"))
            .collect()
    })
}

#[test]
fn kill_mid_storm_loses_only_undelivered_messages() {
    let mut w = worker("faults-kill-storm");
    let keys: Vec<String> = (0..6).map(|_| unique_key("kill-storm")).collect();
    let offset = log_offset(&w);
    // About 2.4 s of uploads, 8 clients, 240 writes, every 10th staged.
    let sent = storm(&w.client(), &keys, 8, 30, Duration::from_millis(80), 10);
    // Kill at once: the writes of the last batch window are still in the
    // in-memory queue.
    let killed_at = now_ms();
    w.kill();
    let before = log_since(&w, offset);
    let batches = queue_batches(&before, UPLOAD_QUEUE);
    let delivered: u64 = batches.iter().map(|b| b.1).sum();
    let undelivered = sent.len() as u64 - delivered;
    assert!(
        undelivered > 0,
        "the kill came after the queue had drained ({delivered} of {} delivered): \
         not a mid-storm kill",
        sent.len()
    );

    w.restart().expect("restart on the same state");
    let c = w.client();
    let statuses = settle(&c, &ids(&sent), Duration::from_secs(60));
    let scheduled: Vec<&UploadStatus> = statuses
        .values()
        .filter(|s| !s.state.is_terminal() && s.state != UploadState::Queued)
        .collect();
    assert!(
        scheduled.is_empty(),
        "held writes never ended: {scheduled:?}"
    );
    let (lost, kept): (Vec<&Write>, Vec<&Write>) = sent
        .iter()
        .partition(|w| statuses[w.id()].state == UploadState::Queued);
    // Only messages the runtime had not handed to the consumer are lost:
    // every write of a completed consumer invocation is terminal.
    assert!(
        lost.len() as u64 <= undelivered,
        "{} ids still queued, but only {undelivered} messages were undelivered at the kill",
        lost.len()
    );
    let tally = verify_writes(&c, &kept, &statuses, &HashMap::new());
    assert_eq!(tally.failed, 0, "writes failed after the restart");
    let committed_after = kept
        .iter()
        .filter_map(|w| statuses[w.id()].committed_at.as_deref())
        .filter(|t| ms(t) > killed_at)
        .count();

    // Staged bodies: those of lost writes stay (their ids never end), no
    // other one does.
    let lost_large = lost
        .iter()
        .filter(|w| w.body.as_ref().is_some_and(|b| b.len() > INLINE_MAX))
        .count();
    let left = wait_staged(&c, lost_large, Duration::from_secs(20));
    assert_eq!(
        left.len(),
        lost_large,
        "staged bodies left: {left:?}, lost staged writes: {lost_large}"
    );

    let s = c.stats().unwrap();
    // Every write the schedulers saw is counted once, in its final state.
    assert_eq!(
        (s.committed, s.superseded, s.failed, s.r2_writes),
        (
            n(tally.committed),
            n(tally.superseded),
            0,
            n(tally.committed)
        ),
        "/stats after the restart: {s:?}"
    );
    println!(
        "FIGURES kill-mid-storm: {} writes to {} keys ({} staged); {} consumer invocations \
         delivered {delivered} before the kill, {undelivered} undelivered; after restart: \
         {} lost (queued), {} committed ({committed_after} after the kill), {} superseded, \
         0 failed; staged left {} = lost staged {lost_large}; /stats {s:?}",
        sent.len(),
        keys.len(),
        sent.iter()
            .filter(|w| w.body.as_ref().is_some_and(|b| b.len() > INLINE_MAX))
            .count(),
        batches.len(),
        lost.len(),
        tally.committed,
        tally.superseded,
        left.len(),
    );
    // A producer counts `accepted` after answering, pushing at most every
    // 200 ms (README "Stats"): a kill right after the last 202 may lose the
    // count of the writes answered in the last moments, never more, and
    // never counts a write twice. (Counting before the 202 made the 202
    // path 0.61x of a bare enqueue: docs/BENCHMARKS.md.)
    let window_ms = 1000;
    let recent = sent
        .iter()
        .filter(|w| ms(&w.accepted.accepted_at) > killed_at - window_ms)
        .count();
    println!(
        "FIGURES kill-mid-storm stats: accepted {} of {} given ids ({} answered in the last {window_ms} ms)",
        s.accepted,
        sent.len(),
        recent
    );
    assert!(
        s.accepted <= n(sent.len()) && s.accepted >= n(sent.len() - recent),
        "/stats accepted after a crash: {} writes were given an id, {recent} of them in the last          {window_ms} ms before the kill: {s:?}",
        sent.len()
    );
    assert_eq!(
        s.inflight,
        s.accepted - n(kept.len()),
        "inflight after a crash: every write the schedulers got is terminal: {s:?}"
    );
}

#[test]
fn kill_with_alarms_pending_commits_every_held_write_once() {
    let mut w = worker("faults-kill-held");
    let mut sent: Vec<Write> = Vec::new();
    let mut held_at_kill: Vec<String> = Vec::new();
    let mut retrying = None;
    let mut killed_at = 0;
    // Whether a sweep finds the queue drained while writes are held depends
    // on the machine's speed (a sweep of 209 statuses takes seconds under
    // load): several rounds, each reporting what its last sweep saw.
    for round in 0..6 {
        let c = w.client();
        // A key whose writes are backing off after injected R2 failures
        // (attempts at +0, +1, +3 s fail; the fourth, at +7 s, succeeds).
        let rkey = unique_key("kill-held-retry");
        fail_writes(&c, &rkey, 3);
        let rbody = format!("retrying write, round {round}").into_bytes();
        let r = Write::put(
            c.put_object(&rkey, &rbody, &PutOptions::default()).unwrap(),
            rbody,
        );
        // Two full consumer batches over four keys, every 7th staged: the
        // second batch's newest writes are held for the keys' next slot.
        // Two of the keys also fail their first four R2 writes (attempts at
        // +0, +1, +3, +7 s; the fifth, at +15 s, succeeds), so their newest
        // writes stay held (backing off) until well after the queue drained,
        // however slow the queue and the status sweep below are on a busy
        // machine.
        let keys: Vec<String> = (0..4).map(|_| unique_key("kill-held")).collect();
        for key in &keys[..2] {
            fail_writes(&c, key, 4);
        }
        let batch = storm(&c, &keys, 16, 13, Duration::ZERO, 7);
        let mut round_ids = ids(&batch);
        round_ids.push(r.id().to_owned());
        sent.extend(batch);
        sent.push(r);
        // Kill as soon as nothing is queued and something is held.
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut last_seen = (0, 0);
        while Instant::now() < deadline {
            let st = sweep(&c, &round_ids);
            let n_queued = st
                .values()
                .filter(|s| s.state == UploadState::Queued)
                .count();
            let queued = n_queued > 0;
            let held: Vec<String> = st
                .values()
                .filter(|s| s.state == UploadState::Scheduled)
                .map(|s| s.id.clone())
                .collect();
            last_seen = (n_queued, held.len());
            if !queued && held.len() > 1 {
                killed_at = now_ms();
                w.kill();
                held_at_kill = held;
                break;
            }
        }
        if !held_at_kill.is_empty() {
            retrying = Some(round_ids.last().cloned().unwrap_or_default());
            println!(
                "round {round}: killed with {} writes held",
                held_at_kill.len()
            );
            break;
        }
        println!(
            "round {round}: nothing held once the queue drained (last sweep: {} queued, {} held); again",
            last_seen.0, last_seen.1
        );
    }
    assert!(
        !held_at_kill.is_empty(),
        "in 6 rounds the queue never drained while schedulers held writes"
    );
    let retrying = retrying.unwrap();

    w.restart().expect("restart on the same state");
    let c = w.client();
    let (statuses, late) = wait_all(&c, &ids(&sent), Instant::now() + Duration::from_secs(60), 8);
    assert!(late.is_empty(), "not terminal after the restart: {late:?}");
    let all: Vec<&Write> = sent.iter().collect();
    let tally = verify_writes(&c, &all, &statuses, &HashMap::new());
    assert_eq!(tally.failed, 0, "writes failed after the restart");
    assert_eq!(
        statuses[&retrying].state,
        UploadState::Committed,
        "the write backing off at the kill: {:?}",
        statuses[&retrying]
    );
    let committed_after = statuses
        .values()
        .filter_map(|s| s.committed_at.as_deref())
        .filter(|t| ms(t) > killed_at)
        .count();
    assert!(
        held_at_kill
            .iter()
            .all(|id| statuses[id].state.is_terminal()),
        "a held write was lost"
    );
    let left = wait_staged(&c, 0, Duration::from_secs(20));
    assert!(left.is_empty(), "staged bodies left behind: {left:?}");
    let s = c.stats().unwrap();
    assert_stats(&s, sent.len(), tally.committed, tally.superseded, 0);
    assert_eq!(s.inflight, 0, "{s:?}");
    println!(
        "FIGURES kill-alarms-pending: {} writes to {} keys, {} held at the kill (three keys \
         backing off after injected R2 failures); after restart all terminal: {} committed \
         ({committed_after} after the kill), {} superseded, 0 lost, 0 failed; staged left 0; \
         /stats {s:?}",
        tally.writes,
        tally.keys,
        held_at_kill.len(),
        tally.committed,
        tally.superseded,
    );
}

/// Partially written R2 blobs (`.partial` files of the local R2) under the
/// persist directory: evidence of an R2 put in progress at a kill.
fn partial_blobs(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p
                .file_name()
                .is_some_and(|f| f.to_string_lossy().ends_with(".partial"))
            {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn kill_during_a_staged_copy_commits_it_once_and_leaves_nothing_staged() {
    const SIZE: usize = 64 << 20;
    let mut w = worker("faults-kill-copy");
    let mut caught = 0;
    let mut rounds = 0;
    let mut commits_total = 0;
    let mut sync_total = 0;
    let mut writes_total = 0;
    while rounds < 4 && caught == 0 {
        rounds += 1;
        let c = w.client();
        let key = unique_key("kill-copy");
        // A first write takes the key's slot, so the spacing across the
        // crash is checked too.
        let first = c
            .put_object_sync(&key, b"first", &PutOptions::default())
            .unwrap();
        sync_total += 1;
        // The large write: staged at once, delivered a second late, then
        // copied from the staging object to the key by the scheduler.
        let body = e2e::pseudo_random_bytes(SIZE, 77 + rounds);
        let big = delayed_put(&c, &key, &body, 1);
        writes_total += 1;
        let partial_before = partial_blobs(w.persist_dir());
        // The message arrives a second late, when the key's slot is long
        // free: the scheduler starts the copy at once, and its status
        // answers wait until the copy ends. A poll held up for 150 ms means
        // the copy runs: kill then.
        let quick = c.with_timeout(Duration::from_millis(150));
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut held_since = None;
        while Instant::now() < deadline {
            let t = now_ms();
            match quick.upload_status(big.id(), None) {
                // Held up, and the local R2 is writing a new blob: the copy
                // runs (a slow poll alone may be load on a busy machine, with
                // the message not yet delivered; a kill then would only
                // lose it from the in-memory queue).
                Err(ClientError::Transport(_))
                    if partial_blobs(w.persist_dir())
                        .iter()
                        .any(|p| !partial_before.contains(p)) =>
                {
                    held_since = Some(t);
                    break;
                }
                Err(ClientError::Transport(_)) => {}
                Ok(st) if st.state.is_terminal() => break,
                Ok(_) => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => panic!("status of {}: {e}", big.id()),
            }
        }
        let Some(held_since) = held_since else {
            // The copy ended between two polls: verify it and try again.
            let st = c.wait_terminal(big.id(), Duration::from_secs(30)).unwrap();
            assert_eq!(st.state, UploadState::Committed, "{st:?}");
            commits_total += 2;
            println!("round {rounds}: the copy ended before a poll was held up by it; again");
            continue;
        };
        let killed_at = now_ms();
        w.kill();
        let in_progress: Vec<PathBuf> = partial_blobs(w.persist_dir())
            .into_iter()
            .filter(|p| !partial_before.contains(p))
            .collect();
        // A partially written blob of the local R2, new since the round
        // began: the copy was running when the runtime died.
        if !in_progress.is_empty() {
            caught += 1;
        }

        w.restart().expect("restart on the same state");
        let c = w.client();
        let st = c.wait_terminal(big.id(), Duration::from_secs(60)).unwrap();
        assert_eq!(st.state, UploadState::Committed, "{st:?}");
        let obj = c.get_object(&key, &GetOptions::default()).unwrap();
        assert_eq!(obj.meta("upload-id"), Some(big.id()));
        assert!(obj.body == body, "stored bytes differ from the upload");
        let gap = ms(st.committed_at.as_deref().unwrap()) - ms(&first.committed_at);
        assert!(gap >= 1000, "writes to {key} started {gap} ms apart");
        commits_total += 2;
        println!(
            "round {rounds}: killed {} ms after a status poll was held up; R2 put in progress \
             at the kill: {} ({} partial blob(s)); committed {} ms after the first write, {} \
             after the kill",
            killed_at - held_since,
            !in_progress.is_empty(),
            in_progress.len(),
            gap,
            if ms(st.committed_at.as_deref().unwrap()) > killed_at {
                "started"
            } else {
                "recorded"
            }
        );
    }
    assert!(
        caught > 0,
        "in {rounds} rounds no kill landed while the staged body was being copied"
    );
    let c = w.client();
    let left = wait_staged(&c, 0, Duration::from_secs(20));
    assert!(left.is_empty(), "staged bodies left behind: {left:?}");
    let s = c.stats().unwrap();
    assert_stats(&s, writes_total + sync_total, commits_total, 0, 0);
    println!(
        "FIGURES kill-during-copy: {rounds} round(s) of a {} MiB staged write, {caught} killed \
         mid-copy; each committed exactly once with its bytes, spacing kept, staged left 0; \
         /stats {s:?}",
        SIZE >> 20
    );
}

#[test]
fn r2_write_failures_back_off_then_fail_and_the_key_moves_on() {
    let w = worker("faults-r2-fail");
    let c = w.client();
    let offset = log_offset(&w);
    let (ka, kb, kc, kd) = (
        unique_key("r2fail-exhaust"),
        unique_key("r2fail-recover"),
        unique_key("r2fail-takeover"),
        unique_key("r2fail-sync"),
    );
    let mut writes: Vec<Write> = Vec::new();
    let mut sync_commits: HashMap<String, Vec<i64>> = HashMap::new();
    let (a, b, cc, d) = std::thread::scope(|s| {
        // A: five failures exhaust the attempts; the next write commits.
        let ta = s.spawn(|| {
            let (v0, _) = e2e::put_committed(&c, &ka, b"v0", &PutOptions::default());
            fail_writes(&c, &ka, 5);
            let t = Instant::now();
            let w1 = Write::put(
                c.put_object(&ka, b"w1", &PutOptions::default()).unwrap(),
                b"w1".to_vec(),
            );
            let st = c.wait_terminal(w1.id(), Duration::from_secs(60)).unwrap();
            let took = t.elapsed();
            assert_eq!(st.state, UploadState::Failed, "{st:?}");
            let err = st.error.clone().expect("failed status without error");
            assert_eq!(err.code, "r2_write_failed", "{err:?}");
            assert!(
                err.message.contains('5'),
                "reason names the attempts: {err:?}"
            );
            // Backoff 1 + 2 + 4 + 8 s between the five attempts.
            assert!(took >= Duration::from_secs(15), "gave up after {took:?}");
            let obj = c.get_object(&ka, &GetOptions::default()).unwrap();
            assert_eq!(obj.meta("upload-id"), Some(v0.id.as_str()), "A changed");
            let w2 = Write::put(
                c.put_object(&ka, b"w2", &PutOptions::default()).unwrap(),
                b"w2".to_vec(),
            );
            let st2 = c.wait_terminal(w2.id(), Duration::from_secs(30)).unwrap();
            assert_eq!(st2.state, UploadState::Committed, "next write: {st2:?}");
            let v0w = Write::put(v0, b"v0".to_vec());
            (vec![v0w, w1, w2], took)
        });
        // B: two failures, then the third attempt commits.
        let tb = s.spawn(|| {
            fail_writes(&c, &kb, 2);
            let w3 = Write::put(
                c.put_object(&kb, b"w3", &PutOptions::default()).unwrap(),
                b"w3".to_vec(),
            );
            let st = c.wait_terminal(w3.id(), Duration::from_secs(60)).unwrap();
            assert_eq!(st.state, UploadState::Committed, "{st:?}");
            let after = ms(st.committed_at.as_deref().unwrap()) - ms(&w3.accepted.accepted_at);
            assert!(
                after >= 3000,
                "committed {after} ms after acceptance: no backoff"
            );
            (vec![w3], after)
        });
        // C: a newer write arriving during the backoff takes over; it
        // meets the remaining injected failures and still commits.
        let tc = s.spawn(|| {
            fail_writes(&c, &kc, 3);
            let w4 = Write::put(
                c.put_object(&kc, b"w4", &PutOptions::default()).unwrap(),
                b"w4".to_vec(),
            );
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let log = log_since(&w, offset);
                if json_lines(&log, "scheduler.commit")
                    .iter()
                    .any(|l| l["id"] == w4.id() && l["attempt"] == 1)
                {
                    break;
                }
                assert!(Instant::now() < deadline, "w4 never attempted");
                std::thread::sleep(Duration::from_millis(50));
            }
            let w5 = Write::put(
                c.put_object(&kc, b"w5", &PutOptions::default()).unwrap(),
                b"w5".to_vec(),
            );
            let st4 = c.wait_terminal(w4.id(), Duration::from_secs(30)).unwrap();
            assert_eq!(st4.state, UploadState::Superseded, "{st4:?}");
            assert_eq!(st4.superseded_by.as_deref(), Some(w5.id()));
            let st5 = c.wait_terminal(w5.id(), Duration::from_secs(60)).unwrap();
            assert_eq!(st5.state, UploadState::Committed, "{st5:?}");
            vec![w4, w5]
        });
        // D: a sync write meeting a failure answers 503 and blocks nothing.
        let td = s.spawn(|| {
            fail_writes(&c, &kd, 1);
            let e = c.put_object_sync(&kd, b"s1", &PutOptions::default());
            let h = expect_api_error(e, 503, "unavailable");
            assert!(h.get("retry-after").is_some(), "503 without Retry-After");
            expect_api_error(
                c.get_object(&kd, &GetOptions::default()),
                404,
                "object_not_found",
            );
            // The failed attempt took the slot: wait it out, then commit.
            let ok = loop {
                match c.put_object_sync(&kd, b"s2", &PutOptions::default()) {
                    Ok(ok) => break ok,
                    Err(e) if e.status() == Some(429) => {
                        std::thread::sleep(Duration::from_millis(200));
                    }
                    Err(e) => panic!("sync write after a failed one: {e}"),
                }
            };
            let obj = c.get_object(&kd, &GetOptions::default()).unwrap();
            assert_eq!(obj.body, b"s2");
            ok.committed_at
        });
        (
            ta.join().expect("scenario A"),
            tb.join().expect("scenario B"),
            tc.join().expect("scenario C"),
            td.join().expect("scenario D"),
        )
    });
    let (wa, took) = a;
    let (wb, after) = b;
    writes.extend(wa);
    writes.extend(wb);
    writes.extend(cc);
    sync_commits.insert(kd.clone(), vec![ms(&d)]);

    let log = log_since(&w, offset);
    let attempts: Vec<serde_json::Value> = json_lines(&log, "scheduler.commit")
        .into_iter()
        .filter(|l| l.get("attempt").is_some())
        .collect();
    let attempts_of = |id: &str| {
        let mut v: Vec<i64> = attempts
            .iter()
            .filter(|l| l["id"] == id)
            .filter_map(|l| l["attempt"].as_i64())
            .collect();
        v.sort_unstable();
        v
    };
    assert_eq!(
        attempts_of(writes[1].id()),
        vec![1, 2, 3, 4, 5],
        "A's attempts"
    );
    assert_eq!(
        attempts_of(writes[3].id()),
        vec![1, 2],
        "B's failed attempts"
    );
    assert_eq!(
        attempts.len(),
        5 + 2 + 3,
        "every injected async failure, once"
    );
    assert!(
        attempts
            .iter()
            .all(|l| l["error"].as_str().unwrap_or("").contains("injected")),
        "a failure that was not injected: {attempts:?}"
    );

    let ids: Vec<String> = ids(&writes);
    let statuses = sweep(&c, &ids);
    let all: Vec<&Write> = writes.iter().collect();
    let tally = verify_writes(&c, &all, &statuses, &sync_commits);
    assert_eq!(tally.failed, 1, "only A's first write fails");
    let s = c.stats().unwrap();
    // The failed sync write counts as accepted and failed; the second commits.
    assert_stats(
        &s,
        writes.len() + 2,
        tally.committed + 1,
        tally.superseded,
        tally.failed + 1,
    );
    println!(
        "FIGURES r2-failures: {} injected failures seen ({} async attempts logged); A failed \
         with r2_write_failed after 5 attempts in {took:?} and the next write committed; B \
         committed {after} ms after acceptance on attempt 3; C's newer write took over during \
         the backoff; a sync write met a failure: 503, next sync write 201; /stats {s:?}",
        attempts.len() + 1,
        attempts.len(),
    );
}

/// Standard base64 (for an inline body in a replayed queue message).
fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let v = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(v >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The queue message of an accepted inline PUT, byte for byte as the
/// producer sends it (`pipeline_core::message::WriteMessage`), with `body`
/// as its bytes: a replayed (or altered) delivery of that write.
fn replayed_message(w: &Write, body: &[u8]) -> String {
    serde_json::json!({
        "v": 1, "id": w.id(), "key": w.key(), "accepted_ms": ms(&w.accepted.accepted_at),
        "op": "put", "size": body.len(), "meta": {},
        "body": {"kind": "inline", "data": base64(body)},
    })
    .to_string()
}

#[test]
fn duplicate_deliveries_make_one_write_and_count_once() {
    let w = worker("faults-duplicates");
    let c = w.client();
    let offset = log_offset(&w);
    let mut writes: Vec<Write> = Vec::new();
    // Ten keys, one write each, delivered five times.
    for i in 0..10 {
        let key = unique_key("dup-single");
        writes.push(duplicate_put(&c, &key, format!("single {i}").as_bytes(), 5));
    }
    // One hot key: 40 writes from 4 clients, each delivered 3 times (120
    // messages: copies straddle consumer batches).
    let hot = unique_key("dup-hot");
    let hot_writes: Vec<Write> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|t| {
                let c = c.clone();
                let hot = &hot;
                s.spawn(move || {
                    (0..10)
                        .map(|i| duplicate_put(&c, hot, format!("hot {t}/{i}").as_bytes(), 3))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    writes.extend(hot_writes);
    let (statuses, late) = wait_all(
        &c,
        &ids(&writes),
        Instant::now() + Duration::from_secs(60),
        8,
    );
    assert!(late.is_empty(), "not terminal: {late:?}");
    // Late replays of delivered writes, through the queue itself: the
    // exact message of a committed write, the same id with other bytes,
    // and the message of a superseded write.
    let committed: Vec<&Write> = writes
        .iter()
        .filter(|w| statuses[w.id()].state == UploadState::Committed)
        .collect();
    let superseded = writes
        .iter()
        .find(|w| statuses[w.id()].state == UploadState::Superseded)
        .expect("the hot key superseded something");
    let replays = [
        replayed_message(committed[0], committed[0].body.as_deref().unwrap()),
        replayed_message(committed[1], b"altered bytes under a known id"),
        replayed_message(superseded, superseded.body.as_deref().unwrap()),
    ];
    let altered_key = committed[1].key().to_owned();
    let before_replay = log_offset(&w);
    for r in &replays {
        enqueue_raw(&c, r);
    }
    // A sentinel behind the replays: once it is terminal, the consumer has
    // handled every message sent before it (the local queue is FIFO).
    let sentinel_key = unique_key("dup-sentinel");
    let (sa, _) = e2e::put_committed(&c, &sentinel_key, b"sentinel", &PutOptions::default());
    writes.push(Write::put(sa, b"sentinel".to_vec()));
    // ...and its consumer invocations have ended (the runtime logs each).
    let deadline = Instant::now() + Duration::from_secs(10);
    let replay_log = loop {
        let log = log_since(&w, before_replay);
        let delivered: u64 = queue_batches(&log, UPLOAD_QUEUE).iter().map(|b| b.1).sum();
        if delivered >= 4 || Instant::now() > deadline {
            break log;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let recognised: i64 = json_lines(&replay_log, "consumer.batch")
        .iter()
        .filter_map(|l| l["duplicates"].as_i64())
        .sum();
    assert_eq!(
        recognised, 3,
        "the three replays are known ids to their schedulers"
    );
    assert!(
        json_lines(&replay_log, "consumer.poison").is_empty(),
        "a replayed message did not decode (the test's copy of the message format is stale)"
    );
    let statuses = sweep(&c, &ids(&writes));
    let all: Vec<&Write> = writes.iter().collect();
    let tally = verify_writes(&c, &all, &statuses, &HashMap::new());
    assert_eq!(tally.failed, 0);
    let obj = c.get_object(&altered_key, &GetOptions::default()).unwrap();
    assert_ne!(obj.body, b"altered bytes under a known id");
    let s = c.stats().unwrap();
    assert_stats(&s, writes.len(), tally.committed, tally.superseded, 0);
    let log = log_since(&w, offset);
    let seen_as_duplicates: i64 = json_lines(&log, "consumer.batch")
        .iter()
        .filter_map(|l| l["duplicates"].as_i64())
        .sum();
    let messages: u64 = queue_batches(&log, UPLOAD_QUEUE).iter().map(|b| b.1).sum();
    println!(
        "FIGURES duplicates: {} writes, {messages} messages delivered (5x10 + 3x40 copies, 3 \
         late replays, 1 sentinel); {seen_as_duplicates} copies recognised by the schedulers \
         (the rest coalesced inside their batch); {} committed = {} R2 writes, {} superseded; \
         /stats {s:?}",
        writes.len(),
        tally.committed,
        s.r2_writes,
        tally.superseded,
    );
}

/// Polls `id`'s status until it answers `404` `upload_not_found`.
fn wait_expired(c: &Client, id: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        match c.upload_status(id, None) {
            Err(ClientError::Api {
                status: 404, code, ..
            }) => {
                assert_eq!(code, "upload_not_found");
                return;
            }
            Ok(_) => {}
            Err(e) => panic!("status of {id}: {e}"),
        }
        assert!(
            Instant::now() < deadline,
            "the status of {id} never expired"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A key's scheduler remembers the ids it took for SEEN_IDS_TTL_SECONDS
/// (9 days), well past their statuses (STATUS_TTL_SECONDS, here 2 s). So a
/// write whose only delivery comes after its status window (a consumer
/// paused or failing that long) is taken, not mistaken for a duplicate of
/// a pruned write, and a replay of a write whose status expired and was
/// pruned is still known: it changes nothing and is not counted again.
/// Superseded writes, whose shared rows are kept for the seen-id window,
/// still read 404 once their status window passed.
#[test]
fn deliveries_after_the_status_window_are_taken_once() {
    let w = start(
        WorkerOptions::new("faults-late")
            .log_level("log")
            .var("STATUS_TTL_SECONDS", "2"),
    );
    let c = w.client();
    let offset = log_offset(&w);
    // A write that ends, then expires. An idle key is not woken to prune
    // it: the key's next write does, at its alarm, leaving only a
    // fingerprint of the id (the replay below must be known by it).
    let key = unique_key("late-replayed");
    let body = b"committed, then replayed after its status expired";
    let (a, _) = e2e::put_committed(&c, &key, body, &PutOptions::default());
    let first = Write::put(a, body.to_vec());
    wait_expired(&c, first.id(), Duration::from_secs(20));
    let newer = b"the key's next write, whose alarm prunes the expired status";
    e2e::put_committed(&c, &key, newer, &PutOptions::default());
    // A write delivered 4 s after its acceptance, past its 2 s window.
    let late_key = unique_key("late-first-delivery");
    let late_body = b"delivered after its status window";
    let late = delayed_put(&c, &late_key, late_body, 4);
    std::thread::sleep(Duration::from_secs(2));
    enqueue_raw(
        &c,
        &replayed_message(&first, b"replayed bytes under an expired id"),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let late_status = loop {
        match c.upload_status(late.id(), None) {
            Ok(s) if s.state.is_terminal() => break s,
            Ok(_) | Err(ClientError::Api { status: 404, .. }) => {}
            Err(e) => panic!("status of the late write: {e}"),
        }
        assert!(
            Instant::now() < deadline,
            "the write delivered after its status window never ended"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(late_status.state, UploadState::Committed, "{late_status:?}");
    let obj = c.get_object(&late_key, &GetOptions::default()).unwrap();
    assert_eq!(obj.body, late_body);
    // The replay: recognised, the object keeps its bytes.
    let deadline = Instant::now() + Duration::from_secs(15);
    let recognised = loop {
        let n: i64 = json_lines(&log_since(&w, offset), "consumer.batch")
            .iter()
            .filter_map(|l| l["duplicates"].as_i64())
            .sum();
        if n >= 1 || Instant::now() > deadline {
            break n;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        recognised, 1,
        "the replay of the expired write is a known id"
    );
    let obj = c.get_object(&key, &GetOptions::default()).unwrap();
    assert_eq!(obj.body, newer);
    // Counted once each: three writes, three commits.
    let deadline = Instant::now() + Duration::from_secs(10);
    let s = loop {
        let s = c.stats().unwrap();
        if s.committed >= n(3) || Instant::now() > deadline {
            break s;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_stats(&s, 3, 3, 0, 0);
    // Superseded writes stay in their shared rows until their ids are no
    // longer seen (days); their statuses still expire with the window.
    let hot = unique_key("late-superseded");
    let hot_ids: Vec<String> = (0..12)
        .map(|i| {
            c.put_object(&hot, format!("hot {i}").as_bytes(), &PutOptions::default())
                .unwrap_or_else(|e| panic!("PUT {hot}: {e}"))
                .id
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    let superseded = loop {
        let s = c.stats().unwrap();
        if s.inflight == n(0) || Instant::now() > deadline {
            break s.superseded;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(superseded >= n(1), "no write to the hot key was superseded");
    for id in &hot_ids {
        wait_expired(&c, id, Duration::from_secs(15));
    }
    println!(
        "FIGURES late deliveries: a write first delivered 4 s after acceptance \
         (STATUS_TTL_SECONDS=2) ended {:?}; a replay of an expired, pruned write was \
         recognised ({recognised} duplicate); /stats {s:?}",
        late_status.state
    );
}

#[test]
fn late_older_deliveries_end_superseded_and_never_regress() {
    let w = worker("faults-late");
    let c = w.client();
    let mut writes: Vec<Write> = Vec::new();
    let hot = unique_key("late-hot");
    // Watch the hot key during the whole test: its accepted-at never goes back.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (observed, regressions) = std::thread::scope(|s| {
        let watcher = s.spawn(|| {
            let (mut last, mut seen, mut back) = (0i64, 0usize, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(o) = c.get_object(&hot, &GetOptions::default()) {
                    let t = o.meta("accepted-at").map_or(0, ms);
                    if t < last {
                        back.push((last, t));
                    }
                    last = last.max(t);
                    seen += 1;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            (seen, back)
        });

        // L1: a late write arriving after a newer one committed.
        let k1 = unique_key("late-after-commit");
        writes.push(delayed_put(&c, &k1, b"late 1", 3));
        let (n1, _) = e2e::put_committed(&c, &k1, b"newer 1", &PutOptions::default());
        writes.push(Write::put(n1, b"newer 1".to_vec()));
        // L2: a late PUT older than a DELETE: the key stays deleted.
        let k2 = unique_key("late-after-delete");
        let (old, _) = e2e::put_committed(&c, &k2, b"old 2", &PutOptions::default());
        writes.push(Write::put(old, b"old 2".to_vec()));
        writes.push(delayed_put(&c, &k2, b"late 2", 2));
        writes.push(Write::delete(c.delete_object(&k2).unwrap()));
        // L3: a late write meeting a newer one still held for its slot.
        let k3 = unique_key("late-vs-held");
        let (first, _) = e2e::put_committed(&c, &k3, b"first 3", &PutOptions::default());
        writes.push(Write::put(first, b"first 3".to_vec()));
        writes.push(delayed_put(&c, &k3, b"late 3", 1));
        let n3 = b"newer 3".to_vec();
        writes.push(Write::put(
            c.put_object(&k3, &n3, &PutOptions::default()).unwrap(),
            n3,
        ));
        // L4: a late write with nothing newer commits.
        let k4 = unique_key("late-alone");
        writes.push(delayed_put(&c, &k4, b"late but newest", 2));
        // Hot key: 30 writes with 10 late ones (1 to 3 s) among them; the
        // last write is a plain one, so every late one is older.
        for i in 0..40 {
            let body = format!("hot write {i}").into_bytes();
            if i % 4 == 1 {
                writes.push(delayed_put(&c, &hot, &body, 1 + (i % 3)));
            } else {
                let a = c.put_object(&hot, &body, &PutOptions::default()).unwrap();
                writes.push(Write::put(a, body));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let (statuses, late) = wait_all(
            &c,
            &ids(&writes),
            Instant::now() + Duration::from_secs(60),
            8,
        );
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let watched = watcher.join().expect("watcher");
        assert!(late.is_empty(), "not terminal: {late:?}");
        let all: Vec<&Write> = writes.iter().collect();
        let tally = verify_writes(&c, &all, &statuses, &HashMap::new());
        assert_eq!(tally.failed, 0);
        let late_ids = [writes[0].id(), writes[3].id(), writes[6].id()];
        for id in late_ids {
            assert_eq!(
                statuses[id].state,
                UploadState::Superseded,
                "{:?}",
                statuses[id]
            );
        }
        assert_eq!(statuses[writes[8].id()].state, UploadState::Committed, "L4");
        let delayed_hot: Vec<&Write> = writes[9..]
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 4 == 1)
            .map(|(_, w)| w)
            .collect();
        for w in &delayed_hot {
            assert_eq!(
                statuses[w.id()].state,
                UploadState::Superseded,
                "hot late {w:?}"
            );
        }
        let s = c.stats().unwrap();
        assert_stats(&s, writes.len(), tally.committed, tally.superseded, 0);
        println!(
            "FIGURES late: {} writes ({} delivered 1-3 s late) to {} keys; every late older \
             write superseded, the late newest one committed; {} committed = {} R2 writes; \
             watcher read the hot key {} times, accepted-at went back {} times; /stats {s:?}",
            tally.writes,
            3 + 1 + delayed_hot.len(),
            tally.keys,
            tally.committed,
            s.r2_writes,
            watched.0,
            watched.1.len(),
        );
        watched
    });
    assert!(observed > 0, "the watcher never read the hot key");
    assert!(
        regressions.is_empty(),
        "the hot key went back in time: {regressions:?}"
    );
}

#[test]
fn poison_messages_go_to_the_dead_letter_queue_and_spare_their_batch() {
    let w = worker("faults-poison");
    let c = w.client();
    let poison = [
        r#"{"v":1,"garbage":true}"#.to_owned(),
        "not json".to_owned(),
        String::new(),
        "[1,2,3]".to_owned(),
        r#"{"v":2,"id":"x","key":"k","accepted_ms":1,"op":"put","size":0,"body":{"kind":"empty"}}"#
            .to_owned(),
        r#"{"v":1,"id":"forged-id","body":{"staged_key":"_pipeline/staging/forged"}}"#.to_owned(),
    ];
    let mut writes: Vec<Write> = Vec::new();
    let mut same_batch = 0;
    let mut rounds = 0;
    let mut poison_sent = 0;
    let offset = log_offset(&w);
    // Writes and poison sent in one burst, well inside the consumer's 1 s
    // batch window; a round whose messages were split over batches (a slow
    // machine) is repeated.
    while same_batch == 0 && rounds < 3 {
        rounds += 1;
        let keys: Vec<String> = (0..3).map(|_| unique_key("poison")).collect();
        let round_offset = log_offset(&w);
        let t = Instant::now();
        let round: Vec<Write> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..6)
                .map(|i| {
                    let c = c.clone();
                    let key = keys[i % 3].clone();
                    let p = poison[i].clone();
                    s.spawn(move || {
                        enqueue_raw(&c, &p);
                        let body = format!("beside poison {i}").into_bytes();
                        let a = c.put_object(&key, &body, &PutOptions::default()).unwrap();
                        Write::put(a, body)
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let took = t.elapsed();
        poison_sent += poison.len();
        let (statuses, late) = wait_all(
            &c,
            &ids(&round),
            Instant::now() + Duration::from_secs(30),
            6,
        );
        assert!(
            late.is_empty(),
            "writes beside poison not terminal: {late:?}"
        );
        assert!(statuses.values().all(|s| s.state.is_terminal()));
        let batches = queue_batches(&log_since(&w, round_offset), UPLOAD_QUEUE);
        println!("round {rounds}: 12 messages sent in {took:?}, consumer batches {batches:?}");
        if batches.contains(&(12, 12)) {
            same_batch += 1;
        }
        writes.extend(round);
    }
    assert!(
        same_batch > 0,
        "in {rounds} rounds writes and poison never shared a consumer batch"
    );

    // A poison message carrying the valid id of a committed write: the
    // dead letter consumer can open the id, but a write that has ended
    // keeps its state.
    let done = writes
        .iter()
        .find(|x| c.upload_status(x.id(), None).unwrap().state == UploadState::Committed)
        .expect("a committed write");
    let committed_before = c.upload_status(done.id(), None).unwrap();
    enqueue_raw(
        &c,
        &format!(r#"{{"v":1,"id":"{}","garbage":true}}"#, done.id()),
    );
    // A poison message carrying the id of a write still on its way (its
    // message is delivered 10 s late): the write ends `failed` with the
    // dead letter reason, once; its own late delivery changes nothing.
    let dk = unique_key("poison-dead-lettered");
    let doomed = delayed_put(&c, &dk, b"never written", 10);
    enqueue_raw(&c, &format!(r#"{{"v":1,"id":"{}","oops":1}}"#, doomed.id()));
    poison_sent += 2;
    let st = c
        .wait_terminal(doomed.id(), Duration::from_secs(30))
        .unwrap();
    assert_eq!(st.state, UploadState::Failed, "{st:?}");
    assert_eq!(
        st.error.as_ref().map(|e| e.code.as_str()),
        Some("dead_lettered")
    );
    // Wait until the delayed original has been delivered too (a sentinel
    // sent after it is terminal), then check nothing moved.
    let before_original = log_offset(&w);
    let sentinel = delayed_put(&c, &unique_key("poison-sentinel"), b"s", 10);
    let s_st = c
        .wait_terminal(sentinel.id(), Duration::from_secs(30))
        .unwrap();
    assert_eq!(s_st.state, UploadState::Committed);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = log_since(&w, before_original);
        let known: i64 = json_lines(&log, "consumer.batch")
            .iter()
            .filter_map(|l| l["duplicates"].as_i64())
            .sum();
        if known >= 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the dead-lettered write's own message never reached its scheduler"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let st = c.upload_status(doomed.id(), None).unwrap();
    assert_eq!(
        st.state,
        UploadState::Failed,
        "a second terminal state: {st:?}"
    );
    expect_api_error(
        c.get_object(&dk, &GetOptions::default()),
        404,
        "object_not_found",
    );
    assert_eq!(c.upload_status(done.id(), None).unwrap(), committed_before);
    expect_api_error(c.upload_status("forged-id", None), 404, "upload_not_found");

    // Every poison message was reported by the consumer and the dead
    // letter consumer (whose batches wait up to 5 s).
    let deadline = Instant::now() + Duration::from_secs(20);
    let (reported, dead) = loop {
        let log = log_since(&w, offset);
        let reported = json_lines(&log, "consumer.poison").len();
        let dead = json_lines(&log, "dead_letter");
        if (reported >= poison_sent && dead.len() >= poison_sent) || Instant::now() > deadline {
            break (reported, dead);
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(reported, poison_sent, "consumer.poison lines");
    assert_eq!(dead.len(), poison_sent, "dead_letter lines");
    assert!(dead.iter().all(|l| l["recorded"] == true), "{dead:?}");
    assert!(
        dead.iter().any(|l| l["id"] == doomed.id()),
        "the dead letter consumer did not name the salvaged id"
    );

    writes.push(sentinel);
    let mut statuses = sweep(&c, &ids(&writes));
    statuses.insert(doomed.id().to_owned(), st);
    let mut all: Vec<&Write> = writes.iter().collect();
    all.push(&doomed);
    let tally = verify_writes(&c, &all, &statuses, &HashMap::new());
    assert_eq!(tally.failed, 1, "only the dead-lettered write fails");
    let s = c.stats().unwrap();
    assert_stats(&s, all.len(), tally.committed, tally.superseded, 1);
    assert_eq!(s.inflight, 0);
    let left = wait_staged(&c, 0, Duration::from_secs(10));
    assert!(left.is_empty(), "{left:?}");
    println!(
        "FIGURES poison: {poison_sent} poison messages ({} in the same batch as 6 writes), all \
         reported (consumer.poison {reported}, dead_letter {}); {} writes beside them all \
         terminal; the valid id of a committed write kept its state; a write whose id a \
         poison message carried ended failed/dead_lettered once; /stats {s:?}",
        poison.len(),
        dead.len(),
        tally.writes,
    );
}

/// Every step of a key's scheduler lands in one SQLite transaction
/// (`transactionSync`): the test route writes two rows the way a step does,
/// then, if asked, runs a statement that fails; the rows must be kept
/// without the failure and gone with it.
#[test]
fn a_failing_storage_step_rolls_back_its_earlier_writes() {
    let c = e2e::shared().client();
    let key = unique_key("tx-probe");
    let probe = |fail: bool| -> serde_json::Value {
        let r = c
            .raw(
                "POST",
                &format!("/_test/tx-probe/{}", pipeline_client::encode_key(&key)),
                &[("Content-Type", "application/json")],
                Some(format!("{{\"fail\": {fail}}}").as_bytes()),
            )
            .unwrap();
        assert_eq!(r.status, 200, "tx-probe: {}", r.text());
        r.json().unwrap()
    };
    let ok = probe(false);
    assert_eq!(ok["error"], serde_json::Value::Null, "{ok}");
    assert_eq!(
        (
            ok["garbage_kept"].as_bool(),
            ok["idempotency_kept"].as_bool()
        ),
        (Some(true), Some(true)),
        "{ok}"
    );
    let failed = probe(true);
    assert!(
        failed["error"]
            .as_str()
            .is_some_and(|e| e.contains("no_such_table")),
        "{failed}"
    );
    assert_eq!(
        (
            failed["garbage_kept"].as_bool(),
            failed["idempotency_kept"].as_bool()
        ),
        (Some(false), Some(false)),
        "the writes before the failing statement were kept: {failed}"
    );
    println!("FIGURES tx-probe: committed {ok}; rolled back {failed}");
}

/// Schedulers created by earlier versions kept held writes' messages in a
/// `bodies` table; now a message lives in its write's status row. A write
/// held when such an object meets the new code still commits its own body,
/// and its message is deleted from the old table when it ends.
#[test]
fn a_write_held_in_an_earlier_versions_bodies_table_commits_its_body() {
    let c = e2e::shared().client();
    let key = unique_key("legacy-bodies");
    let legacy = || -> serde_json::Value {
        let r = c
            .raw(
                "POST",
                &format!("/_test/legacy-bodies/{}", pipeline_client::encode_key(&key)),
                &[("Content-Type", "application/json")],
                Some(b"{}"),
            )
            .unwrap();
        assert_eq!(r.status, 200, "legacy-bodies: {}", r.text());
        r.json().unwrap()
    };
    // Two failed attempts hold the write for 1 + 2 s of backoff.
    fail_writes(&c, &key, 2);
    let body = b"held across the upgrade".to_vec();
    let w = c.put_object(&key, &body, &PutOptions::default()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let moved = loop {
        let r = legacy();
        if r["moved"].as_i64() == Some(1) {
            break r;
        }
        let st = c.upload_status(&w.id, None).unwrap();
        assert!(
            !st.state.is_terminal(),
            "the write ended before its message could be moved: {st:?} {r}"
        );
        assert!(Instant::now() < deadline, "the write was never held: {r}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(moved["held_in_bodies"].as_i64(), Some(1), "{moved}");
    let st = c.wait_terminal(&w.id, Duration::from_secs(60)).unwrap();
    assert_eq!(st.state, UploadState::Committed, "{st:?}");
    let obj = c.get_object(&key, &GetOptions::default()).unwrap();
    assert_eq!(obj.body, body, "the committed object is not the held body");
    assert_eq!(obj.meta("upload-id"), Some(w.id.as_str()));
    let after = legacy();
    assert_eq!(
        (after["moved"].as_i64(), after["held_in_bodies"].as_i64()),
        (Some(0), Some(0)),
        "the ended write's message is still held: {after}"
    );
    println!("FIGURES legacy-bodies: moved {moved}; after the commit {after}");
}

/// Schedulers created by earlier versions kept each superseded write as a
/// row of `superseded`, its superseding write's id in `supersessors`; now
/// one row holds every write a step superseded by one write. Statuses
/// stored the old way still read as they did, beside ones stored the new
/// way on the same key.
#[test]
fn superseded_writes_stored_by_an_earlier_version_still_read_superseded() {
    let c = e2e::shared().client();
    let key = unique_key("legacy-superseded");
    let legacy = || -> serde_json::Value {
        let r = c
            .raw(
                "POST",
                &format!(
                    "/_test/legacy-superseded/{}",
                    pipeline_client::encode_key(&key)
                ),
                &[("Content-Type", "application/json")],
                Some(b"{}"),
            )
            .unwrap();
        assert_eq!(r.status, 200, "legacy-superseded: {}", r.text());
        r.json().unwrap()
    };
    // A burst of writes to one key: the newest of each delivery commits,
    // the others end superseded by it.
    let burst = |tag: &str| -> Vec<(String, String)> {
        let ids: Vec<String> = (0..8)
            .map(|i| {
                c.put_object(
                    &key,
                    format!("{tag} {i}").as_bytes(),
                    &PutOptions::default(),
                )
                .unwrap()
                .id
            })
            .collect();
        let mut superseded = Vec::new();
        for id in &ids {
            let st = c.wait_terminal(id, Duration::from_secs(60)).unwrap();
            match &st.state {
                UploadState::Committed => {}
                UploadState::Superseded => {
                    let by = st.superseded_by.clone().expect("superseded_by");
                    superseded.push((id.clone(), by));
                }
                other => panic!("{id} ended {other:?}: {st:?}"),
            }
        }
        assert!(!superseded.is_empty(), "the burst superseded nothing");
        superseded
    };
    let old = burst("old");
    let moved = legacy();
    assert_eq!(
        (
            moved["moved"].as_u64(),
            moved["rows_in_superseded"].as_u64()
        ),
        (Some(old.len() as u64), Some(old.len() as u64)),
        "{moved}"
    );
    let check = |writes: &[(String, String)], what: &str| {
        for (id, by) in writes {
            let st = c.upload_status(id, None).unwrap();
            assert_eq!(st.state, UploadState::Superseded, "{what} {id}: {st:?}");
            assert_eq!(
                st.superseded_by.as_deref(),
                Some(by.as_str()),
                "{what} {id}"
            );
        }
    };
    check(&old, "stored the old way");
    let new = burst("new");
    check(&new, "stored the new way");
    check(&old, "stored the old way, after new writes");
    println!(
        "FIGURES legacy-superseded: {} writes moved to the old tables, {} superseded after",
        old.len(),
        new.len()
    );
}
