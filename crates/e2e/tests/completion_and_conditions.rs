//! Completion without polling and read-modify-write through the queue, on
//! the local runtime: `Prefer: wait`, conditional writes (`If-Match`,
//! `If-None-Match: *`) evaluated at commit time, `?after=` reads, and the
//! lost-update storm: concurrent clients incrementing one object with
//! read → modify → `If-Match` write → retry on `precondition_failed`
//! lose no increment.

use std::sync::Arc;
use std::thread;

use e2e::{shared, unique_key};
use pipeline_client::{encode_key, Client, RawResponse};

fn put(c: &Client, key: &str, body: &[u8], headers: &[(&str, &str)]) -> RawResponse {
    let path = format!("/objects/{}", encode_key(key));
    c.raw("PUT", &path, headers, Some(body))
        .unwrap_or_else(|e| panic!("PUT {key}: {e}"))
}

fn get(c: &Client, path: &str) -> RawResponse {
    c.raw("GET", path, &[], None)
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

fn json(r: &RawResponse) -> serde_json::Value {
    r.json()
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", r.text()))
}

fn header(r: &RawResponse, name: &str) -> Option<String> {
    r.headers.get(name).map(str::to_string)
}

/// PUT with `Prefer: wait=30`, expecting the write to end in time.
fn put_wait(c: &Client, key: &str, body: &[u8], extra: &[(&str, &str)]) -> serde_json::Value {
    let mut headers = vec![("Prefer", "wait=30")];
    headers.extend_from_slice(extra);
    let r = put(c, key, body, &headers);
    assert_eq!(r.status, 200, "PUT {key} with Prefer: wait: {}", r.text());
    assert_eq!(header(&r, "Preference-Applied").as_deref(), Some("wait=30"));
    let v = json(&r);
    assert_eq!(
        header(&r, "Location").as_deref(),
        Some(format!("/uploads/{}", v["id"].as_str().unwrap_or_default()).as_str())
    );
    v
}

#[test]
fn prefer_wait_answers_with_the_final_status() {
    let c = shared().client();
    let key = unique_key("prefer-wait");
    let v = put_wait(&c, &key, b"one", &[]);
    assert_eq!(v["state"], "committed", "{v}");
    assert!(v["etag"].is_string(), "{v}");
    let r = get(&c, &format!("/objects/{}", encode_key(&key)));
    assert_eq!(r.body, b"one");
    // The same status as polling gives.
    let polled = json(&get(
        &c,
        &format!("/uploads/{}", v["id"].as_str().unwrap_or_default()),
    ));
    assert_eq!(polled["state"], "committed");
    assert_eq!(polled["etag"], v["etag"]);

    // respond-async (the default) and wait=0 answer 202 at once.
    for prefer in ["respond-async", "wait=0"] {
        let r = put(&c, &key, b"two", &[("Prefer", prefer)]);
        assert_eq!(r.status, 202, "Prefer: {prefer}: {}", r.text());
        assert!(header(&r, "Preference-Applied").is_none());
    }
    // A DELETE waits too.
    let path = format!("/objects/{}", encode_key(&key));
    let r = c
        .raw("DELETE", &path, &[("Prefer", "wait=30")], None)
        .expect("DELETE");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(["committed", "superseded"].contains(&json(&r)["state"].as_str().unwrap_or("")));
}

#[test]
fn bad_prefer_and_condition_headers_are_refused_and_change_nothing() {
    let c = shared().client();
    let key = unique_key("bad-headers");
    let cases: [&[(&str, &str)]; 7] = [
        &[("Prefer", "wait=61")],
        &[("Prefer", "wait=soon")],
        &[("If-Match", "abc")],
        &[("If-Match", "W/\"abc\"")],
        &[("If-Match", "\"a\", \"b\"")],
        &[("If-None-Match", "\"abc\"")],
        &[("If-Match", "\"a\""), ("If-None-Match", "*")],
    ];
    for headers in cases {
        for mode in ["", "?mode=sync"] {
            let path = format!("/objects/{}{mode}", encode_key(&key));
            let r = c.raw("PUT", &path, headers, Some(b"x")).expect("PUT");
            assert_eq!(r.status, 400, "{headers:?} {mode}: {}", r.text());
            assert_eq!(
                r.error_code().as_deref(),
                Some("invalid_header"),
                "{headers:?}"
            );
        }
    }
    let r = get(
        &c,
        &format!("/objects/{}?consistency=latest", encode_key(&key)),
    );
    assert_eq!(
        r.status,
        404,
        "a refused write left something: {}",
        r.text()
    );
}

#[test]
fn conditional_writes_are_evaluated_at_commit_and_never_folded() {
    let c = shared().client();
    let key = unique_key("conditional");
    // If-None-Match: * on an absent key commits.
    let v1 = put_wait(&c, &key, b"v1", &[("If-None-Match", "*")]);
    assert_eq!(v1["state"], "committed", "{v1}");
    let e1 = v1["etag"].as_str().expect("etag").to_string();
    // If-None-Match: * again: the object exists now.
    let v = put_wait(&c, &key, b"nope", &[("If-None-Match", "*")]);
    assert_eq!(v["state"], "failed", "{v}");
    assert_eq!(v["error"]["code"], "precondition_failed");
    assert_eq!(v["current_etag"], e1.as_str());
    // If-Match with the current ETag commits.
    let v2 = put_wait(&c, &key, b"v2", &[("If-Match", &e1)]);
    assert_eq!(v2["state"], "committed", "{v2}");
    let e2 = v2["etag"].as_str().expect("etag").to_string();
    // If-Match with the old ETag fails and changes nothing.
    let v = put_wait(&c, &key, b"lost", &[("If-Match", &e1)]);
    assert_eq!(v["state"], "failed", "{v}");
    assert_eq!(v["error"]["code"], "precondition_failed");
    assert_eq!(v["current_etag"], e2.as_str());
    let r = get(&c, &format!("/objects/{}", encode_key(&key)));
    assert_eq!(r.body, b"v2");

    // Two conditional writes sent together are not folded into one: the
    // older is evaluated first, the newer then fails its stale condition.
    let a = put(&c, &key, b"a", &[("If-Match", &e2)]);
    let b = put(&c, &key, b"b", &[("If-Match", &e2)]);
    assert_eq!((a.status, b.status), (202, 202));
    let wait = |r: &RawResponse| {
        json(&get(
            &c,
            &format!(
                "/uploads/{}?wait=30",
                json(r)["id"].as_str().unwrap_or_default()
            ),
        ))
    };
    let (sa, sb) = (wait(&a), wait(&b));
    let states = [
        sa["state"].as_str().unwrap_or(""),
        sb["state"].as_str().unwrap_or(""),
    ];
    assert!(
        !states.contains(&"superseded"),
        "a conditional write was folded: {sa} {sb}"
    );
    assert_eq!(
        states.iter().filter(|s| **s == "committed").count(),
        1,
        "{sa} {sb}"
    );

    // Sync mode evaluates at once: 412.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let path = format!("/objects/{}?mode=sync", encode_key(&key));
    let r = c
        .raw(
            "PUT",
            &path,
            &[("If-Match", "\"not-the-etag\"")],
            Some(b"sync"),
        )
        .expect("PUT");
    assert_eq!(r.status, 412, "{}", r.text());
    assert_eq!(r.error_code().as_deref(), Some("precondition_failed"));
}

#[test]
fn read_after_a_write_sees_it_or_says_why_not() {
    let c = shared().client();
    let key = unique_key("after");
    let r = put(&c, &key, b"mine", &[]);
    assert_eq!(r.status, 202);
    let id = json(&r)["id"].as_str().expect("id").to_string();
    let r = get(
        &c,
        &format!("/objects/{}?after={id}&wait=20", encode_key(&key)),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.body, b"mine");
    let state = header(&r, "X-Pipeline-State").unwrap_or_default();
    assert!(
        ["scheduled", "committed"].contains(&state.as_str()),
        "{state}"
    );

    // An id of another key, or no id at all: 400.
    let other = unique_key("after-other");
    let r = put(&c, &other, b"x", &[]);
    let other_id = json(&r)["id"].as_str().expect("id").to_string();
    for bad in [other_id.as_str(), "not-an-id"] {
        let r = get(&c, &format!("/objects/{}?after={bad}", encode_key(&key)));
        assert_eq!(r.status, 400, "{}", r.text());
        assert_eq!(r.error_code().as_deref(), Some("invalid_parameter"));
    }
    let r = get(
        &c,
        &format!("/objects/{}?after={id}&wait=31", encode_key(&key)),
    );
    assert_eq!(r.status, 400);

    // A write still in the queue (delivered 4 s late): 409 not_yet_visible.
    let late = unique_key("after-late");
    let r = c
        .raw(
            "PUT",
            &format!("/_test/delayed/{}?delay=4", encode_key(&late)),
            &[],
            Some(b"late"),
        )
        .expect("delayed PUT");
    assert_eq!(r.status, 202, "{}", r.text());
    let late_id = json(&r)["id"].as_str().expect("id").to_string();
    let r = get(
        &c,
        &format!("/objects/{}?after={late_id}", encode_key(&late)),
    );
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(r.error_code().as_deref(), Some("not_yet_visible"));
    assert!(header(&r, "Retry-After").is_some());
    // Waiting long enough sees it.
    let r = get(
        &c,
        &format!("/objects/{}?after={late_id}&wait=20", encode_key(&late)),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.body, b"late");

    // A write that failed: 409 write_failed.
    let v = put_wait(&c, &key, b"cond", &[("If-Match", "\"stale\"")]);
    assert_eq!(v["state"], "failed");
    let r = get(
        &c,
        &format!(
            "/objects/{}?after={}",
            encode_key(&key),
            v["id"].as_str().unwrap_or_default()
        ),
    );
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(r.error_code().as_deref(), Some("write_failed"));
}

/// Read → modify → `If-Match` write → retry on `precondition_failed`:
/// concurrent clients on one hot key lose no increment.
#[test]
fn no_increment_is_lost_under_a_read_modify_write_storm() {
    const CLIENTS: usize = 3;
    const EACH: usize = 4;
    let w = shared();
    let key = Arc::new(unique_key("rmw-counter"));
    let c = w.client();
    let v = put_wait(&c, &key, b"0", &[]);
    assert_eq!(v["state"], "committed");
    let handles: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let c = w.client();
            let key = key.clone();
            thread::spawn(move || {
                let mut attempts = 0;
                for _ in 0..EACH {
                    loop {
                        attempts += 1;
                        assert!(attempts < 200, "too many retries");
                        let r = get(&c, &format!("/objects/{}", encode_key(&key)));
                        assert_eq!(r.status, 200, "{}", r.text());
                        let n: u64 = String::from_utf8_lossy(&r.body).parse().expect("a number");
                        let etag = header(&r, "ETag").expect("ETag");
                        let body = (n + 1).to_string();
                        let r = put(
                            &c,
                            &key,
                            body.as_bytes(),
                            &[("If-Match", &etag), ("Prefer", "wait=30")],
                        );
                        let v = json(&r);
                        match (r.status, v["state"].as_str(), v["error"]["code"].as_str()) {
                            (200, Some("committed"), _) => break,
                            (200, Some("failed"), Some("precondition_failed")) => continue,
                            other => panic!("unexpected answer {other:?}: {v}"),
                        }
                    }
                }
                attempts
            })
        })
        .collect();
    let attempts: usize = handles.into_iter().map(|h| h.join().expect("client")).sum();
    let r = get(&c, &format!("/objects/{}", encode_key(&key)));
    let n: usize = String::from_utf8_lossy(&r.body).parse().expect("a number");
    eprintln!("{} increments in {attempts} attempts", CLIENTS * EACH);
    assert_eq!(n, CLIENTS * EACH, "increments were lost");
}
