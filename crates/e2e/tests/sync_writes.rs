//! Synchronous writes (`?mode=sync`) and their one-write-per-second slot,
//! shared with the queued writes (`docs/API.md` "Synchronous writes").
//!
//! Not covered: `409 newer_write_pending` needs a clock skew between Worker
//! instances, which one local runtime cannot produce.

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{json_lines, log_offset, log_since, staged, INLINE_MAX};
use e2e::{
    bare_etag, expect_api_error, ms, now_ms, pseudo_random_bytes, shared, start, stats_within,
    unique_key, WorkerOptions, COMMIT_TIMEOUT, STATS_PUSH_BOUND,
};
use pipeline_client::{
    Client, ClientError, GetOptions, Headers, PutOptions, SyncCommitted, UploadState,
};

fn client() -> Client {
    shared().client()
}

/// The rate-limit headers of a 429 sent at `sent_ms` (local clock, just
/// before the request), checked for consistency with each other and with the
/// key's last write start; returns Reset-After-Ms.
#[track_caller]
fn check_429(headers: &Headers, last_commit_ms: i64, sent_ms: i64) -> u64 {
    let num = |name: &str| -> u64 {
        let v = headers
            .get(name)
            .unwrap_or_else(|| panic!("429 without {name}"));
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}: {v:?} is not a whole number"))
    };
    let now = now_ms();
    assert_eq!(headers.get("x-ratelimit-limit"), Some("1"));
    assert_eq!(headers.get("x-ratelimit-remaining"), Some("0"));
    let after_ms = num("x-ratelimit-reset-after-ms");
    assert!(
        after_ms <= 1000,
        "Reset-After-Ms {after_ms} outside 0..=1000"
    );
    let retry_after = num("retry-after");
    assert_eq!(
        retry_after,
        after_ms.div_ceil(1000).max(1),
        "Retry-After must be Reset-After-Ms in whole seconds, rounded up, at least 1"
    );
    // The slot frees 1000 ms after the last write started; the Worker
    // measured Reset-After-Ms somewhere between `sent_ms` and `now`.
    let after = i64::try_from(after_ms).unwrap();
    let expected = last_commit_ms + 1000;
    assert!(
        (sent_ms + after - 50..=now + after + 50).contains(&expected),
        "Reset-After-Ms {after} (request {sent_ms}..{now}) does not point at the slot \
         freeing at {expected} (last write started at {last_commit_ms})"
    );
    let frees_at = expected;
    let reset = num("x-ratelimit-reset");
    let frees_secs = u64::try_from(frees_at).unwrap().div_ceil(1000);
    assert!(
        reset + 1 >= frees_secs && reset <= frees_secs + 1,
        "X-RateLimit-Reset {reset} vs the slot freeing at {frees_at} ms"
    );
    let now_secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        reset >= now_secs && reset <= now_secs + 2,
        "X-RateLimit-Reset {reset}, now {now_secs}"
    );
    after_ms
}

fn sync_retrying(c: &Client, key: &str, body: &[u8]) -> SyncCommitted {
    for _ in 0..10 {
        match c.put_object_sync(key, body, &PutOptions::default()) {
            Ok(done) => return done,
            Err(ClientError::Api {
                status: 429,
                headers,
                ..
            }) => {
                let wait: u64 = headers
                    .get("x-ratelimit-reset-after-ms")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1000);
                std::thread::sleep(Duration::from_millis(wait + 5));
            }
            Err(e) => panic!("sync PUT {key}: {e}"),
        }
    }
    panic!("sync PUT {key}: rate limited 10 times");
}

#[test]
fn sync_twice_is_201_then_429_then_201_after_the_wait() {
    let c = client();
    let key = unique_key("sync");
    let r = c
        .raw(
            "PUT",
            &format!("/objects/{}?mode=sync", pipeline_client::encode_key(&key)),
            &[],
            Some(b"one"),
        )
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
    let v = r.json().unwrap();
    for f in ["key", "etag", "size", "committed_at"] {
        assert!(v.get(f).is_some(), "201 body lacks {f}: {v}");
    }
    assert_eq!(
        (v["key"].as_str(), v["size"].as_u64()),
        (Some(key.as_str()), Some(3))
    );
    let first_ms = ms(v["committed_at"].as_str().unwrap());

    let sent = now_ms();
    let second = c.put_object_sync(&key, b"two", &PutOptions::default());
    let headers = expect_api_error(second, 429, "rate_limited");
    let after_ms = check_429(&headers, first_ms, sent);
    // The refused write changed nothing.
    let obj = c.get_object(&key, &GetOptions::default()).unwrap();
    assert_eq!(obj.body, b"one");
    assert_eq!(
        bare_etag(obj.etag().unwrap()),
        bare_etag(v["etag"].as_str().unwrap())
    );

    std::thread::sleep(Duration::from_millis(after_ms + 5));
    let third = c
        .put_object_sync(&key, b"three", &PutOptions::default())
        .expect("after the wait the slot is free");
    assert!(
        ms(&third.committed_at) - first_ms >= 1000,
        "{first_ms} -> {}",
        third.committed_at
    );
    assert_eq!(
        c.get_object(&key, &GetOptions::default()).unwrap().body,
        b"three"
    );
}

#[test]
fn sync_delete_is_204() {
    let c = client();
    let key = unique_key("sync-del");
    let put = sync_retrying(&c, &key, b"bye");
    let sent = now_ms();
    let h = expect_api_error(c.delete_object_sync(&key), 429, "rate_limited");
    check_429(&h, ms(&put.committed_at), sent);
    // A missed slot, then the delete goes through.
    let mut done = false;
    for _ in 0..10 {
        match c.delete_object_sync(&key) {
            Ok(()) => {
                done = true;
                break;
            }
            Err(ClientError::Api {
                status: 429,
                headers,
                ..
            }) => {
                let wait: u64 = headers
                    .get("x-ratelimit-reset-after-ms")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1000);
                std::thread::sleep(Duration::from_millis(wait + 5));
            }
            Err(e) => panic!("sync DELETE: {e}"),
        }
    }
    assert!(done, "sync DELETE rate limited 10 times");
    expect_api_error(
        c.get_object(&key, &GetOptions::default()),
        404,
        "object_not_found",
    );
    let r = c
        .raw(
            "DELETE",
            &format!(
                "/objects/{}?mode=sync",
                pipeline_client::encode_key(&unique_key("sync-del"))
            ),
            &[],
            None,
        )
        .unwrap();
    assert_eq!(r.status, 204, "sync DELETE of a missing key: {}", r.text());
    assert!(r.body.is_empty());
}

#[test]
fn an_async_write_never_overwrites_a_newer_sync_write() {
    let c = client();
    let keys: Vec<String> = (0..5).map(|_| unique_key("async-then-sync")).collect();
    let mut cases = Vec::new();
    for key in &keys {
        let old = c
            .put_object(key, b"older async", &PutOptions::default())
            .unwrap();
        let new = sync_retrying(&c, key, b"newer sync");
        cases.push((key, old, new));
    }
    for (key, old, new) in cases {
        let st = c.wait_terminal(&old.id, COMMIT_TIMEOUT).unwrap();
        match st.state {
            UploadState::Superseded => {}
            UploadState::Committed => assert!(
                ms(st.committed_at.as_deref().unwrap()) + 1000 <= ms(&new.committed_at),
                "{key}: the older async write committed at {:?}, after/near the sync one at {}",
                st.committed_at,
                new.committed_at
            ),
            _ => panic!("{key}: older async write ended {st:?}"),
        }
        let obj = c.get_object(key, &GetOptions::default()).unwrap();
        assert_eq!(
            obj.body, b"newer sync",
            "{key}: the older async write overwrote the sync one"
        );
    }
}

#[test]
fn sync_and_async_share_the_slot() {
    let c = client();
    let key = unique_key("shared-slot");
    let sync = sync_retrying(&c, &key, b"sync first");
    let a = c
        .put_object(&key, b"async after", &PutOptions::default())
        .unwrap();
    let st = c.wait_terminal(&a.id, COMMIT_TIMEOUT).unwrap();
    assert_eq!(st.state, UploadState::Committed, "{st:?}");
    let gap = ms(st.committed_at.as_deref().unwrap()) - ms(&sync.committed_at);
    assert!(
        gap >= 1000,
        "async write started {gap} ms after the sync one"
    );
    assert_eq!(
        c.get_object(&key, &GetOptions::default()).unwrap().body,
        b"async after"
    );
    // And the other way round: a sync write right after an async commit waits its turn.
    let sent = now_ms();
    let r = c.put_object_sync(&key, b"sync again", &PutOptions::default());
    match r {
        Ok(done) => {
            assert!(ms(&done.committed_at) - ms(st.committed_at.as_deref().unwrap()) >= 1000)
        }
        Err(e) => {
            let h = expect_api_error(Err::<(), _>(e), 429, "rate_limited");
            check_429(&h, ms(st.committed_at.as_deref().unwrap()), sent);
        }
    }
}

#[test]
fn stats_count_429s() {
    let c = client();
    let key = unique_key("count-429");
    let before = c.stats().unwrap().rate_limited;
    sync_retrying(&c, &key, b"x");
    let mut refused = 0;
    for _ in 0..3 {
        if matches!(
            c.put_object_sync(&key, b"y", &PutOptions::default()),
            Err(ClientError::Api { status: 429, .. })
        ) {
            refused += 1;
        }
    }
    assert!(
        refused >= 2,
        "expected 429s right after a sync write, got {refused}"
    );
    let after = stats_within(&c, |s| s.rate_limited - before >= refused).rate_limited;
    assert!(
        after - before >= refused,
        "rate_limited {before} -> {after} after {refused} 429s (within {STATS_PUSH_BOUND:?})"
    );
}

#[test]
fn sync_writes_keep_metadata_and_count_as_accepted() {
    let c = client();
    let key = unique_key("sync-meta");
    let before = c.stats().unwrap();
    let done = c
        .put_object_sync(
            &key,
            b"{}",
            &PutOptions::content_type("application/json").header("X-Meta-Origin", "sync"),
        )
        .unwrap();
    assert_eq!(done.size, 2);
    let obj = c.get_object(&key, &GetOptions::default()).unwrap();
    assert_eq!(obj.content_type(), Some("application/json"));
    assert_eq!(obj.meta("origin"), Some("sync"));
    assert_eq!(bare_etag(obj.etag().unwrap()), bare_etag(&done.etag));
    assert_eq!(
        obj.meta("committed-at").map(ms),
        Some(ms(&done.committed_at))
    );
    assert!(
        obj.meta("upload-id").is_some(),
        "sync write without upload-id metadata"
    );
    let after = stats_within(&c, |s| {
        s.accepted > before.accepted && s.committed > before.committed
    });
    assert!(
        after.accepted > before.accepted && after.committed > before.committed,
        "{before:?} -> {after:?} (within {STATS_PUSH_BOUND:?})"
    );
}

/// The staged keys the Worker logged (`producer.staged`) in `log`.
fn staged_in(log: &str) -> Vec<String> {
    json_lines(log, "producer.staged")
        .iter()
        .filter_map(|l| l["staged_key"].as_str().map(str::to_owned))
        .collect()
}

/// A body over the inline limit goes to R2 in two steps: the scheduler is
/// asked first whether the slot is free (a refused write uploads nothing),
/// then the body is staged and the scheduler copies it inside R2 and
/// deletes the staged copy. Runs on its own worker, whose log shows every
/// staged body.
#[test]
fn large_sync_bodies_are_staged_only_when_the_slot_is_free_and_removed_after() {
    let w = start(WorkerOptions::new("sync-large").log_level("log"));
    let c = w.client();
    let key = unique_key("sync-large");
    let first = pseudo_random_bytes(INLINE_MAX * 3 + 17, 1);

    let offset = log_offset(&w);
    let done = c
        .put_object_sync(
            &key,
            &first,
            &PutOptions::content_type("application/x-test"),
        )
        .expect("a large sync PUT to a fresh key");
    assert_eq!(done.size, first.len() as u64);
    let mut last_start = ms(&done.committed_at);
    let obj = c.get_object(&key, &GetOptions::default()).unwrap();
    assert!(
        obj.body == first,
        "the stored bytes differ from the sync body"
    );
    assert_eq!(obj.content_type(), Some("application/x-test"));
    let id = obj
        .meta("upload-id")
        .expect("upload-id metadata")
        .to_owned();
    let mut staged_keys = staged_in(&log_since(&w, offset));
    assert_eq!(staged_keys.len(), 1, "one staged body per large sync PUT");

    // Right after the commit the slot is taken: 429, and nothing is staged.
    // (A machine slow enough to miss the second gets another try.)
    let mut refused = 0;
    for seed in 2..6 {
        let body = pseudo_random_bytes(INLINE_MAX * 2, seed);
        let before = log_offset(&w);
        let sent = now_ms();
        match c.put_object_sync(&key, &body, &PutOptions::default()) {
            Ok(again) => {
                last_start = ms(&again.committed_at);
                staged_keys.extend(staged_in(&log_since(&w, before)));
            }
            Err(e) => {
                let h = expect_api_error(Err::<(), _>(e), 429, "rate_limited");
                check_429(&h, last_start, sent);
                let log = log_since(&w, before);
                assert!(
                    staged_in(&log).is_empty(),
                    "a refused sync PUT staged its body: {log}"
                );
                refused += 1;
                break;
            }
        }
    }
    assert_eq!(refused, 1, "no large sync PUT was refused within the slot");
    let stored = c.get_object(&key, &GetOptions::default()).unwrap();
    assert_eq!(stored.meta("committed-at").map(ms), Some(last_start));

    // Every staged body of a committed sync write is removed by its
    // scheduler shortly after.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left: Vec<String> = staged(&c)
            .into_iter()
            .filter(|k| staged_keys.contains(k))
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "staged bodies of committed sync writes left: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let st = c.upload_status(&id, None).unwrap();
    assert_eq!(st.state, UploadState::Committed, "{st:?}");
}
