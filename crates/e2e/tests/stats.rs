//! `/stats?top=N` (the recently hot keys) and `/stats/keys/{key}` (the key
//! inspector), on the real runtime: the counts come from the key
//! schedulers' alarm pushes through the stats shards' running totals.

mod common;

use std::time::{Duration, Instant};

use e2e::{expect_raw_error, put_committed, shared, unique_key, wait_all, COMMIT_TIMEOUT};
use pipeline_client::{encode_key, Client, PutOptions, UploadState};

fn client() -> Client {
    shared().client()
}

#[test]
fn top_must_be_an_integer_from_1_to_100() {
    let c = client();
    for bad in ["0", "101", "-3", "x", ""] {
        let r = c
            .raw("GET", &format!("/stats?top={bad}"), &[], None)
            .unwrap();
        expect_raw_error(&r, 400, "invalid_parameter", &format!("top={bad}"));
    }
    let r = c.raw("GET", "/stats?top=100", &[], None).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json().unwrap()["top_keys"].is_array());
    // Without `top` the body is the plain one.
    let plain = c.raw("GET", "/stats", &[], None).unwrap().json().unwrap();
    assert!(plain.get("top_keys").is_none(), "{plain}");
}

#[test]
fn the_most_written_keys_come_first() {
    let c = client();
    let keys = [
        (unique_key("hot-a"), 9usize),
        (unique_key("hot-b"), 5),
        (unique_key("hot-c"), 2),
    ];
    let mut ids = Vec::new();
    for (key, n) in &keys {
        for i in 0..*n {
            let a = c
                .put_object(key, format!("{i}").as_bytes(), &PutOptions::default())
                .unwrap();
            ids.push(a.id);
        }
    }
    let (done, late) = wait_all(&c, &ids, Instant::now() + COMMIT_TIMEOUT, 4);
    assert!(late.is_empty(), "not terminal: {late:?}");
    assert_eq!(done.len(), ids.len());
    // The statuses were answered after their counts reached the shards.
    let r = c.raw("GET", "/stats?top=100", &[], None).unwrap();
    let body = r.json().unwrap();
    let top = body["top_keys"].as_array().expect("top_keys").clone();
    let position = |key: &str| top.iter().position(|t| t["key"] == key);
    let writes = |key: &str| {
        top.iter()
            .find(|t| t["key"] == key)
            .and_then(|t| t["writes"].as_u64())
    };
    for (key, n) in &keys {
        let w = writes(key).unwrap_or_else(|| panic!("{key} missing from {body}"));
        // Space-saving counts never fall below the truth.
        assert!(w >= *n as u64, "{key}: {w} writes listed, {n} made");
    }
    assert!(
        position(&keys[0].0) < position(&keys[1].0) && position(&keys[1].0) < position(&keys[2].0),
        "not most first: {body}"
    );
    let counts: Vec<u64> = top.iter().filter_map(|t| t["writes"].as_u64()).collect();
    assert!(counts.windows(2).all(|w| w[0] >= w[1]), "{counts:?}");
}

#[test]
fn the_key_inspector_shows_commits_a_second_apart() {
    let c = client();
    let key = unique_key("inspect");
    for i in 0..3 {
        // Each write commits before the next is sent, so none coalesce.
        put_committed(&c, &key, format!("v{i}").as_bytes(), &PutOptions::default());
    }
    let r = c
        .raw(
            "GET",
            &format!("/stats/keys/{}", encode_key(&key)),
            &[],
            None,
        )
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json().unwrap();
    assert_eq!(v["key"], key.as_str());
    assert!(v["pending"].is_null() && v["in_flight"].is_null(), "{v}");
    assert!(v["next_slot_ms"].is_i64(), "{v}");
    let commits = v["recent_commits"].as_array().expect("recent_commits");
    assert_eq!(commits.len(), 3, "{v}");
    let spacings: Vec<i64> = commits
        .iter()
        .filter_map(|c| c["spacing_ms"].as_i64())
        .collect();
    assert_eq!(spacings.len(), 2, "the oldest has no spacing: {v}");
    assert!(spacings.iter().all(|s| *s >= 1000), "{spacings:?}");
    // Newest first.
    let times: Vec<i64> = commits
        .iter()
        .filter_map(|c| c["committed_ms"].as_i64())
        .collect();
    assert!(times.windows(2).all(|w| w[0] > w[1]), "{times:?}");
}

#[test]
fn the_key_inspector_shows_a_write_held_for_a_retry() {
    let c = client();
    let key = unique_key("inspect-held");
    // Its first R2 writes fail: the write stays pending, waiting for its
    // retry, long enough to be seen.
    common::fail_writes(&c, &key, 2);
    let a = c
        .put_object(&key, b"second", &PutOptions::default())
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let view = loop {
        let v = c
            .raw(
                "GET",
                &format!("/stats/keys/{}", encode_key(&key)),
                &[],
                None,
            )
            .unwrap()
            .json()
            .unwrap();
        if v["pending"]["id"] == a.id.as_str() || Instant::now() >= deadline {
            break v;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(view["pending"]["id"], a.id.as_str(), "{view}");
    assert_eq!(view["pending"]["size"], 6, "{view}");
    let done = c.upload_status(&a.id, Some(30)).unwrap();
    assert_eq!(done.state, UploadState::Committed);
}

#[test]
fn the_key_inspector_refuses_a_bad_key() {
    let c = client();
    let long = "k".repeat(1025);
    let r = c
        .raw("GET", &format!("/stats/keys/{long}"), &[], None)
        .unwrap();
    expect_raw_error(&r, 400, "invalid_key", "a 1025-byte key");
    let r = c.raw("POST", "/stats/keys/a", &[], None).unwrap();
    expect_raw_error(&r, 405, "method_not_allowed", "POST /stats/keys/a");
}
