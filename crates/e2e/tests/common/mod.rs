//! Helpers shared by the reliability suites (`faults.rs`, `bad_input.rs`,
//! `security.rs`, `soak.rs`, `restart.rs`): the test-only routes of a `test-routes`
//! build, the runtime's log, status sweeps, and one checker that verifies
//! a set of writes against the pipeline's guarantees.
//!
//! Each suite uses a part of this module only.
#![allow(dead_code)]

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::time::{Duration, Instant};

use e2e::{bare_etag, ms, LocalWorker};
use pipeline_client::{
    encode_key, Accepted, Client, ClientError, GetOptions, UploadState, UploadStatus,
};

/// 64 KiB: the largest body a sync write reads before asking its scheduler
/// (`BUFFERED_BODY_MAX_BYTES`; larger ones are staged in R2). Async writes
/// inline more (a body whose message fits 127,900 bytes, about 95 KB), so
/// the suites' staged async bodies are 100 KiB: above both.
pub const INLINE_MAX: usize = 64 * 1024;

/// One accepted write and what it should have stored.
#[derive(Debug, Clone)]
pub struct Write {
    /// The `202` (or a sync write's id and times, see [`Write::sync`]).
    pub accepted: Accepted,
    /// The bytes, or `None` for a DELETE.
    pub body: Option<Vec<u8>>,
}

impl Write {
    /// A PUT.
    #[must_use]
    pub fn put(accepted: Accepted, body: Vec<u8>) -> Self {
        Self {
            accepted,
            body: Some(body),
        }
    }

    /// A DELETE.
    #[must_use]
    pub fn delete(accepted: Accepted) -> Self {
        Self {
            accepted,
            body: None,
        }
    }

    /// The ordering identity: `(accepted_at in ms, id)`.
    #[must_use]
    pub fn order(&self) -> (i64, &str) {
        (ms(&self.accepted.accepted_at), self.accepted.id.as_str())
    }

    /// The key.
    #[must_use]
    pub fn key(&self) -> &str {
        &self.accepted.key
    }

    /// The id.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.accepted.id
    }
}

/// Decodes a `202` body.
///
/// # Panics
///
/// When the answer is not a `202` with the documented body.
#[track_caller]
pub fn accepted_of(r: &pipeline_client::RawResponse, what: &str) -> Accepted {
    assert_eq!(r.status, 202, "{what}: {} {}", r.status, r.text());
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{what}: 202 body {e}"))
}

/// `PUT /_test/delayed/{key}?delay=N`: an async write delivered N s late.
#[must_use]
pub fn delayed_put(c: &Client, key: &str, body: &[u8], delay_secs: u32) -> Write {
    let r = c
        .raw(
            "PUT",
            &format!("/_test/delayed/{}?delay={delay_secs}", encode_key(key)),
            &[],
            Some(body),
        )
        .unwrap_or_else(|e| panic!("delayed PUT {key}: {e}"));
    Write::put(accepted_of(&r, "delayed PUT"), body.to_vec())
}

/// `PUT /_test/duplicate/{key}?copies=N`: an async write sent N times.
#[must_use]
pub fn duplicate_put(c: &Client, key: &str, body: &[u8], copies: u32) -> Write {
    let r = c
        .raw(
            "PUT",
            &format!("/_test/duplicate/{}?copies={copies}", encode_key(key)),
            &[],
            Some(body),
        )
        .unwrap_or_else(|e| panic!("duplicate PUT {key}: {e}"));
    Write::put(accepted_of(&r, "duplicate PUT"), body.to_vec())
}

/// `POST /_test/fail-writes/{key}`: the key's next `count` R2 writes fail.
pub fn fail_writes(c: &Client, key: &str, count: u32) {
    arm_faults(c, key, &format!("{{\"count\": {count}}}"));
}

/// `POST /_test/fail-writes/{key}` with `stall_ms`: the key's next R2
/// write waits `ms` before it starts (time to kill the runtime during it).
pub fn stall_writes(c: &Client, key: &str, ms: u64) {
    arm_faults(c, key, &format!("{{\"count\": 0, \"stall_ms\": {ms}}}"));
}

fn arm_faults(c: &Client, key: &str, body: &str) {
    let r = c
        .raw(
            "POST",
            &format!("/_test/fail-writes/{}", encode_key(key)),
            &[("Content-Type", "application/json")],
            Some(body.as_bytes()),
        )
        .unwrap_or_else(|e| panic!("fail-writes {key}: {e}"));
    assert_eq!(r.status, 200, "fail-writes {key}: {}", r.text());
}

/// `POST /_test/enqueue-raw`: `text` sent as a raw queue message.
pub fn enqueue_raw(c: &Client, text: &str) {
    let r = c
        .raw("POST", "/_test/enqueue-raw", &[], Some(text.as_bytes()))
        .unwrap_or_else(|e| panic!("enqueue-raw: {e}"));
    assert_eq!(r.status, 202, "enqueue-raw: {}", r.text());
}

/// `GET /_test/staged`: staged bodies still in the bucket.
#[must_use]
pub fn staged(c: &Client) -> Vec<String> {
    let r = c
        .raw("GET", "/_test/staged", &[], None)
        .unwrap_or_else(|e| panic!("GET /_test/staged: {e}"));
    assert_eq!(r.status, 200, "GET /_test/staged: {}", r.text());
    let v = r.json().expect("staged JSON");
    v["staged"]
        .as_array()
        .expect("staged list")
        .iter()
        .map(|k| k.as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Polls `/_test/staged` until it lists `expected` keys (the schedulers
/// remove staged bodies in their alarms, a moment after a write ends).
/// Returns the last listing.
#[must_use]
pub fn wait_staged(c: &Client, expected: usize, timeout: Duration) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let s = staged(c);
        if s.len() == expected || Instant::now() >= deadline {
            return s;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The log file's current length: an offset for [`log_since`].
#[must_use]
pub fn log_offset(w: &LocalWorker) -> u64 {
    std::fs::metadata(w.log_path())
        .map(|m| m.len())
        .unwrap_or(0)
}

/// The log written since `offset`.
#[must_use]
pub fn log_since(w: &LocalWorker, offset: u64) -> String {
    let Ok(mut f) = File::open(w.log_path()) else {
        return String::new();
    };
    let _ = f.seek(SeekFrom::Start(offset));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// The Worker's own JSON log lines (needs `log_level("log")`) whose `at`
/// is `at`.
#[must_use]
pub fn json_lines(text: &str, at: &str) -> Vec<serde_json::Value> {
    text.lines()
        .filter(|l| l.starts_with('{'))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["at"] == at)
        .collect()
}

/// Consumer invocations of `queue` logged by the local runtime
/// (`QUEUE <queue> <acked>/<total>`), in order.
#[must_use]
pub fn queue_batches(text: &str, queue: &str) -> Vec<(u64, u64)> {
    let needle = format!("QUEUE {queue} ");
    text.lines()
        .filter_map(|l| {
            let rest = &l[l.find(&needle)? + needle.len()..];
            let figures = rest.split_whitespace().next()?;
            let (acked, total) = figures.split_once('/')?;
            Some((acked.parse().ok()?, total.parse().ok()?))
        })
        .collect()
}

/// One status poll (no wait) of each id, from up to 8 threads.
#[must_use]
pub fn sweep(c: &Client, ids: &[String]) -> HashMap<String, UploadStatus> {
    if ids.is_empty() {
        return HashMap::new();
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = ids
            .chunks(ids.len().div_ceil(8))
            .map(|chunk| {
                let c = c.clone();
                s.spawn(move || {
                    chunk
                        .iter()
                        .map(|id| {
                            let st = c
                                .upload_status(id, None)
                                .unwrap_or_else(|e| panic!("status of {id}: {e}"));
                            (id.clone(), st)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("status poller panicked"))
            .collect()
    })
}

/// Waits, after a restart, until no id is `scheduled`: scheduled ids are
/// long-polled to their end; ids still `queued` get one more chance (a
/// long-poll of 3 s, longer than the consumer's batch timeout) and are then
/// taken as lost with the in-memory queue. Returns the final statuses.
#[must_use]
pub fn settle(c: &Client, ids: &[String], timeout: Duration) -> HashMap<String, UploadStatus> {
    let deadline = Instant::now() + timeout;
    let mut gave_queued_a_chance = false;
    loop {
        let statuses = sweep(c, ids);
        let scheduled: Vec<String> = statuses
            .values()
            .filter(|s| s.state == UploadState::Scheduled)
            .map(|s| s.id.clone())
            .collect();
        let queued: Vec<String> = statuses
            .values()
            .filter(|s| s.state == UploadState::Queued)
            .map(|s| s.id.clone())
            .collect();
        if Instant::now() >= deadline {
            return statuses;
        }
        if !scheduled.is_empty() {
            let _ = e2e::wait_all(c, &scheduled, deadline, 8);
            continue;
        }
        if queued.is_empty() || gave_queued_a_chance {
            return statuses;
        }
        gave_queued_a_chance = true;
        match c.upload_status(&queued[0], Some(3)) {
            Ok(_) | Err(ClientError::NotTerminal { .. }) => {}
            Err(e) => panic!("status of {}: {e}", queued[0]),
        }
    }
}

/// What [`verify_writes`] counted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// Writes checked.
    pub writes: usize,
    /// Keys checked.
    pub keys: usize,
    /// Committed writes (= R2 writes they caused).
    pub committed: usize,
    /// Superseded writes.
    pub superseded: usize,
    /// Failed writes.
    pub failed: usize,
}

/// Checks a set of writes, every one terminal in `statuses`, against the
/// guarantees, key by key:
/// - the `committed_at` of the key's commits are at least 1000 ms apart
///   (`extra_commits_ms` adds commits made outside `writes`, e.g. sync);
/// - a superseded write names a newer write of the same key;
/// - the newest write is committed and is what the key holds: its bytes
///   and `upload-id`/`committed-at` metadata, or `404` for a DELETE;
/// - a committed PUT has an `etag` equal to the stored one (newest only).
///
/// `failed` writes are counted, not refused: the caller decides.
///
/// # Panics
///
/// On any broken guarantee.
#[must_use]
pub fn verify_writes(
    c: &Client,
    writes: &[&Write],
    statuses: &HashMap<String, UploadStatus>,
    extra_commits_ms: &HashMap<String, Vec<i64>>,
) -> Tally {
    let mut by_key: HashMap<&str, Vec<&Write>> = HashMap::new();
    for w in writes {
        by_key.entry(w.key()).or_default().push(w);
    }
    let mut t = Tally {
        writes: writes.len(),
        keys: by_key.len(),
        ..Tally::default()
    };
    for (key, mine) in &by_key {
        let order: HashMap<&str, (i64, &str)> = mine.iter().map(|w| (w.id(), w.order())).collect();
        let mut commits: Vec<(i64, &str)> = extra_commits_ms
            .get(*key)
            .map(|v| v.iter().map(|t| (*t, "(outside this set)")).collect())
            .unwrap_or_default();
        for w in mine {
            let st = statuses
                .get(w.id())
                .unwrap_or_else(|| panic!("{key}: no status for {}", w.id()));
            assert_eq!(&st.key, key, "status of {} names another key", w.id());
            match st.state {
                UploadState::Committed => {
                    t.committed += 1;
                    let at = st
                        .committed_at
                        .as_deref()
                        .unwrap_or_else(|| panic!("committed without committed_at: {st:?}"));
                    commits.push((ms(at), w.id()));
                    assert_eq!(
                        st.etag.is_some(),
                        w.body.is_some(),
                        "etag present iff the write is a PUT: {st:?}"
                    );
                }
                UploadState::Superseded => {
                    t.superseded += 1;
                    let by = st
                        .superseded_by
                        .as_deref()
                        .unwrap_or_else(|| panic!("superseded without superseded_by: {st:?}"));
                    let newer = order.get(by).unwrap_or_else(|| {
                        panic!(
                            "{key}: {} superseded by {by}, not a write to this key",
                            w.id()
                        )
                    });
                    assert!(
                        *newer > w.order(),
                        "{key}: {} superseded by the older write {by}",
                        w.id()
                    );
                }
                UploadState::Failed => t.failed += 1,
                _ => panic!("{key}: write {} is not terminal: {st:?}", w.id()),
            }
        }
        commits.sort_unstable();
        for pair in commits.windows(2) {
            assert!(
                pair[1].0 - pair[0].0 >= 1000,
                "{key}: writes {} and {} started {} ms apart",
                pair[0].1,
                pair[1].1,
                pair[1].0 - pair[0].0
            );
        }
        let newest = mine
            .iter()
            .filter(|w| statuses[w.id()].state != UploadState::Failed)
            .max_by(|a, b| a.order().cmp(&b.order()));
        let Some(newest) = newest else { continue };
        let st = &statuses[newest.id()];
        assert_eq!(
            st.state,
            UploadState::Committed,
            "{key}: the newest write {} did not commit: {st:?}",
            newest.id()
        );
        match &newest.body {
            None => match c.get_object(key, &GetOptions::default()) {
                Err(ClientError::Api { status: 404, .. }) => {}
                other => panic!("{key}: newest write is a DELETE, GET gave {other:?}"),
            },
            Some(body) => {
                let obj = c
                    .get_object(key, &GetOptions::default())
                    .unwrap_or_else(|e| panic!("GET {key}: {e}"));
                assert_eq!(
                    obj.meta("upload-id"),
                    Some(newest.id()),
                    "{key}: stored object is not the newest write"
                );
                assert!(
                    obj.body == *body,
                    "{key}: stored bytes ({} B) are not the newest write's ({} B)",
                    obj.body.len(),
                    body.len()
                );
                assert_eq!(
                    obj.meta("committed-at"),
                    st.committed_at.as_deref(),
                    "{key}: X-Meta-committed-at differs from the status"
                );
                assert_eq!(
                    obj.etag().map(bare_etag),
                    st.etag.as_deref().map(bare_etag),
                    "{key}: ETag differs from the status"
                );
            }
        }
    }
    t
}

/// Counts statuses by state name.
#[must_use]
pub fn by_state(
    statuses: &HashMap<String, UploadStatus>,
) -> std::collections::BTreeMap<String, usize> {
    let mut m = std::collections::BTreeMap::new();
    for s in statuses.values() {
        *m.entry(s.state.as_str().to_owned()).or_insert(0) += 1;
    }
    m
}

/// A body of `len` bytes starting with a readable marker.
#[must_use]
pub fn marked_body(marker: &str, len: usize, seed: u64) -> Vec<u8> {
    let mut b = format!("{marker}\n").into_bytes();
    if b.len() < len {
        b.extend(e2e::pseudo_random_bytes(len - b.len(), seed));
    }
    b
}

/// `usize` → `i64` for `/stats` comparisons.
#[must_use]
pub fn n(x: usize) -> i64 {
    i64::try_from(x).expect("count fits i64")
}
