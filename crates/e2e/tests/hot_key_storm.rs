//! The hot-key storm: about 400 uploads to 4 keys from
//! 12 concurrent clients in about 6 s.
//!
//! Shows: every upload `202`; every id terminal within 10 s of the last
//! upload; per key, `committed_at` values at least 1000 ms apart; the stored
//! object is the newest accepted write (by `accepted_at`, ties by id); at
//! most storm-seconds + 2 committed writes per key; `/stats` exact (this file
//! owns its worker).
//!
//! Not here: "a late, older write ends superseded" needs a delivery delayed
//! on purpose; `faults.rs` injects it through the test-only route
//! `/_test/delayed` (`late_older_deliveries_end_superseded_and_never_regress`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use e2e::{ms, shared, unique_key, wait_all};
use pipeline_client::{Accepted, GetOptions, PutOptions, UploadState};

const KEYS: usize = 4;
const CLIENTS: usize = 12;
const UPLOADS: usize = 400;
const STORM: Duration = Duration::from_secs(6);

struct Sent {
    accepted: Accepted,
    marker: String,
}

#[test]
fn hot_key_storm() {
    let w = shared();
    let stats_before = w.client().stats().unwrap();
    let keys: Vec<String> = (0..KEYS).map(|_| unique_key("storm")).collect();
    let per_client = UPLOADS / CLIENTS + 1; // 34 × 12 = 408
    let interval = STORM / u32::try_from(per_client).unwrap();
    let start = Instant::now();
    let results: Vec<Result<Sent, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..CLIENTS)
            .map(|t| {
                let c = w.client();
                let keys = &keys;
                s.spawn(move || {
                    let mut out = Vec::new();
                    for i in 0..per_client {
                        // Paced so the storm lasts about STORM.
                        let due = start + interval * u32::try_from(i).unwrap();
                        if let Some(d) = due.checked_duration_since(Instant::now()) {
                            std::thread::sleep(d);
                        }
                        let key = &keys[(t + i) % KEYS];
                        let marker = format!("storm {key} client {t} upload {i}");
                        let body = format!("{marker}\n{}", "x".repeat(64 + 37 * i));
                        let r = c.put_object(
                            key,
                            body.as_bytes(),
                            &PutOptions::content_type("text/plain"),
                        );
                        out.push(
                            r.map(|accepted| Sent {
                                accepted,
                                marker: body.clone(),
                            })
                            .map_err(|e| format!("{marker}: {e}")),
                        );
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("client thread panicked"))
            .collect()
    });
    let last_upload = Instant::now();
    let storm = last_upload - start;

    let failures: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failures.is_empty(),
        "{} of {} uploads not accepted: {failures:?}",
        failures.len(),
        results.len()
    );
    let sent: Vec<Sent> = results.into_iter().map(Result::unwrap).collect();
    assert!(sent.len() >= UPLOADS);
    eprintln!(
        "storm: {} uploads to {KEYS} keys from {CLIENTS} clients in {storm:?}",
        sent.len()
    );

    // Every id terminal within 10 s of the last upload.
    let ids: Vec<String> = sent.iter().map(|s| s.accepted.id.clone()).collect();
    let (statuses, late) = wait_all(
        &w.client(),
        &ids,
        last_upload + Duration::from_secs(10),
        CLIENTS,
    );
    assert!(
        late.is_empty(),
        "{} ids not terminal 10 s after the last upload: {:?}",
        late.len(),
        &late[..late.len().min(20)]
    );
    let failed: Vec<_> = statuses
        .values()
        .filter(|s| s.state == UploadState::Failed)
        .collect();
    assert!(failed.is_empty(), "failed writes: {failed:?}");

    let storm_secs = i64::try_from(storm.as_secs()).unwrap() + i64::from(storm.subsec_nanos() > 0);
    let c = w.client();
    let mut committed_total = 0;
    for key in &keys {
        let mine: Vec<&Sent> = sent.iter().filter(|s| &s.accepted.key == key).collect();
        // Spacing: committed_at of the key's commits at least 1000 ms apart.
        let mut commits: Vec<(i64, &str)> = mine
            .iter()
            .map(|s| &statuses[&s.accepted.id])
            .filter(|st| st.state == UploadState::Committed)
            .map(|st| {
                (
                    ms(st.committed_at.as_deref().expect("committed_at")),
                    st.id.as_str(),
                )
            })
            .collect();
        commits.sort_unstable();
        committed_total += commits.len();
        for pair in commits.windows(2) {
            assert!(
                pair[1].0 - pair[0].0 >= 1000,
                "{key}: writes {} and {} started {} ms apart",
                pair[0].1,
                pair[1].1,
                pair[1].0 - pair[0].0
            );
        }
        assert!(
            i64::try_from(commits.len()).unwrap() <= storm_secs + 2,
            "{key}: {} committed writes in a {storm_secs} s storm",
            commits.len()
        );
        // Superseded writes name their successor.
        for s in &mine {
            let st = &statuses[&s.accepted.id];
            if st.state == UploadState::Superseded {
                assert!(
                    st.superseded_by.is_some(),
                    "superseded without superseded_by: {st:?}"
                );
            } else {
                assert!(st.etag.is_some(), "committed PUT without etag: {st:?}");
            }
        }
        // The stored object is the newest accepted write.
        let newest = mine
            .iter()
            .max_by(|a, b| {
                (ms(&a.accepted.accepted_at), &a.accepted.id)
                    .cmp(&(ms(&b.accepted.accepted_at), &b.accepted.id))
            })
            .expect("writes to the key");
        assert_eq!(
            statuses[&newest.accepted.id].state,
            UploadState::Committed,
            "{key}: the newest write {} did not commit",
            newest.accepted.id
        );
        let obj = c.get_object(key, &GetOptions::default()).unwrap();
        assert_eq!(
            obj.meta("upload-id"),
            Some(newest.accepted.id.as_str()),
            "{key}: stored object is not the newest accepted write"
        );
        assert!(
            obj.body == newest.marker.as_bytes(),
            "{key}: stored bytes are not the newest write's ({:?}…)",
            String::from_utf8_lossy(&obj.body[..obj.body.len().min(60)])
        );
    }

    // This file owns its worker: /stats is exact.
    let after = c.stats().unwrap();
    let n = i64::try_from(sent.len()).unwrap();
    let committed = i64::try_from(committed_total).unwrap();
    assert_eq!(after.accepted - stats_before.accepted, n, "{after:?}");
    assert_eq!(
        after.committed - stats_before.committed,
        committed,
        "{after:?}"
    );
    assert_eq!(
        after.superseded - stats_before.superseded,
        n - committed,
        "{after:?}"
    );
    assert_eq!(after.failed - stats_before.failed, 0, "{after:?}");
    assert_eq!(after.inflight, 0, "{after:?}");
    assert_eq!(
        after.r2_writes - stats_before.r2_writes,
        committed,
        "{after:?}"
    );
    let by_state = statuses.values().fold(HashMap::new(), |mut m, s| {
        *m.entry(s.state.as_str()).or_insert(0) += 1;
        m
    });
    eprintln!("storm: {by_state:?}; {committed_total} R2 writes for {n} uploads");
}
