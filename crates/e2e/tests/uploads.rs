//! Asynchronous writes: `PUT`/`DELETE /objects/{key}` → `202`, status
//! polling, metadata, idempotency and bad input (`docs/API.md`
//! "Asynchronous writes", "Upload status").
//!
//! Not covered here: "a late, older write ends superseded" needs a write
//! delivered late on purpose, which the public API cannot do; `faults.rs`
//! injects it through the test-only route `/_test/delayed`.

use std::time::{Duration, Instant};

use e2e::{
    bare_etag, expect_api_error, expect_raw_error, ms, now_ms, parse_time, put_committed, shared,
    unique_key, COMMIT_TIMEOUT,
};
use pipeline_client::{encode_key, Client, GetOptions, PutOptions, UploadState};

fn client() -> Client {
    shared().client()
}

#[test]
fn put_answers_202_with_the_documented_body() {
    let c = client();
    let key = unique_key("shape");
    let before = now_ms();
    let r = c
        .raw(
            "PUT",
            &format!("/objects/{}", encode_key(&key)),
            &[],
            Some(b"hello"),
        )
        .unwrap();
    let after = now_ms();
    assert_eq!(r.status, 202, "{}", r.text());
    assert!(
        r.headers
            .get("content-type")
            .unwrap_or("")
            .starts_with("application/json"),
        "202 body not typed JSON"
    );
    let v = r.json().unwrap();
    let obj = v.as_object().expect("body is an object");
    for field in ["id", "key", "state", "accepted_at", "size", "status_url"] {
        assert!(obj.contains_key(field), "202 body lacks {field}: {v}");
    }
    let id = v["id"].as_str().expect("id is a string");
    assert_eq!(v["key"], key.as_str());
    assert_eq!(v["state"], "queued");
    assert_eq!(v["size"], 5);
    assert_eq!(v["status_url"], format!("/uploads/{id}").as_str());
    assert_eq!(
        r.headers.get("location"),
        v["status_url"].as_str(),
        "Location != status_url"
    );
    // Opaque, URL-safe, at least 96 random bits (16 base64url characters).
    assert!(
        id.len() >= 16
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "id {id:?} is not a URL-safe token of at least 96 bits"
    );
    assert!(!id.contains(&key), "id leaks the key");
    let accepted = ms(v["accepted_at"].as_str().expect("accepted_at is a string"));
    assert!(
        (before - 1000..=after + 1000).contains(&accepted),
        "accepted_at {accepted} outside the request ({before}..{after})"
    );
}

#[test]
fn status_is_queued_at_first_then_committed_and_get_returns_the_bytes() {
    let c = client();
    let key = unique_key("basic");
    let body = b"the quick brown fox".to_vec();
    let a = c.put_object(&key, &body, &PutOptions::default()).unwrap();
    assert_eq!(a.location.as_deref(), Some(a.status_url.as_str()));
    let first = c.upload_status(&a.id, None).unwrap();
    assert_eq!(first.state, UploadState::Queued, "first poll: {first:?}");
    assert_eq!(
        (first.id.as_str(), first.key.as_str(), first.size),
        (a.id.as_str(), key.as_str(), 19)
    );
    assert_eq!(first.accepted_at, a.accepted_at);

    let done = c.wait_terminal(&a.id, COMMIT_TIMEOUT).unwrap();
    assert_eq!(done.state, UploadState::Committed, "{done:?}");
    let committed_at = ms(done.committed_at.as_deref().expect("committed_at"));
    assert!(
        committed_at >= ms(&a.accepted_at),
        "committed before accepted: {done:?}"
    );
    let etag = done.etag.clone().expect("a committed PUT has an etag");

    let obj = c.get_object(&key, &GetOptions::default()).unwrap();
    assert_eq!(obj.status, 200);
    assert_eq!(obj.body, body);
    assert_eq!(bare_etag(obj.etag().expect("ETag")), bare_etag(&etag));
    assert_eq!(
        obj.content_type(),
        Some("application/octet-stream"),
        "default Content-Type"
    );
    assert_eq!(obj.headers.get("content-length"), Some("19"));
}

/// A gzip member holding `data` in a stored (uncompressed) deflate block.
fn gzip_stored(data: &[u8]) -> Vec<u8> {
    fn crc32(data: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
    let len = u16::try_from(data.len()).expect("small body");
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff, 1];
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&(!len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&u32::try_from(data.len()).unwrap().to_le_bytes());
    out
}

#[test]
fn http_and_custom_metadata_round_trip() {
    let c = client();
    let key = unique_key("meta");
    let body = gzip_stored(b"bonjour, le monde\n");
    let opts = PutOptions::content_type("text/plain; charset=utf-8")
        .header("Content-Encoding", "gzip")
        .header("Content-Language", "fr-CA")
        .header("Content-Disposition", "attachment; filename=\"r.txt\"")
        .header("Cache-Control", "max-age=60, public")
        .header("X-Meta-Author", "Ada")
        .header("X-Meta-build-ID", "42 and more");
    let (a, st) = put_committed(&c, &key, &body, &opts);
    for (what, obj) in [
        ("GET", c.get_object(&key, &GetOptions::default()).unwrap()),
        ("HEAD", c.head_object(&key, &GetOptions::default()).unwrap()),
    ] {
        if what == "GET" {
            assert_eq!(obj.body, body, "GET bytes differ (re-encoded?)");
        } else {
            assert!(obj.body.is_empty(), "HEAD with a body");
        }
        let h = &obj.headers;
        assert_eq!(
            h.get("content-type"),
            Some("text/plain; charset=utf-8"),
            "{what}"
        );
        assert_eq!(h.get("content-encoding"), Some("gzip"), "{what}");
        assert_eq!(h.get("content-language"), Some("fr-CA"), "{what}");
        assert_eq!(
            h.get("content-disposition"),
            Some("attachment; filename=\"r.txt\""),
            "{what}"
        );
        assert_eq!(h.get("cache-control"), Some("max-age=60, public"), "{what}");
        assert_eq!(
            h.get("content-length"),
            Some(body.len().to_string().as_str()),
            "{what}"
        );
        assert_eq!(obj.meta("author"), Some("Ada"), "{what}");
        assert_eq!(obj.meta("build-id"), Some("42 and more"), "{what}");
        // The pipeline's own metadata.
        assert_eq!(obj.meta("upload-id"), Some(a.id.as_str()), "{what}");
        let accepted = obj.meta("accepted-at").expect("X-Meta-accepted-at");
        assert_eq!(ms(accepted), ms(&a.accepted_at), "{what}");
        let committed = obj.meta("committed-at").expect("X-Meta-committed-at");
        assert_eq!(
            ms(committed),
            ms(st.committed_at.as_deref().unwrap()),
            "{what}"
        );
    }
}

#[test]
fn zero_byte_body() {
    let c = client();
    let key = unique_key("empty");
    let (a, st) = put_committed(&c, &key, b"", &PutOptions::content_type("text/plain"));
    assert_eq!((a.size, st.size), (0, 0));
    let obj = c.get_object(&key, &GetOptions::default()).unwrap();
    assert_eq!(obj.status, 200);
    assert!(obj.body.is_empty());
    assert_eq!(obj.headers.get("content-length"), Some("0"));
    assert_eq!(obj.content_type(), Some("text/plain"));
}

#[test]
fn twenty_mib_body_goes_through_the_staged_path() {
    let c = client();
    let key = unique_key("large");
    let body = e2e::pseudo_random_bytes(20 * 1024 * 1024, 0x5eed);
    let a = c
        .put_object(&key, &body, &PutOptions::content_type("application/x-test"))
        .unwrap();
    assert_eq!(a.size, 20 * 1024 * 1024);
    assert_eq!(
        c.upload_status(&a.id, None).unwrap().state,
        UploadState::Queued
    );
    let st = c.wait_terminal(&a.id, Duration::from_secs(90)).unwrap();
    assert_eq!(st.state, UploadState::Committed, "{st:?}");
    let obj = c.get_object(&key, &GetOptions::default()).unwrap();
    assert_eq!(obj.headers.get("content-length"), Some("20971520"));
    assert!(
        obj.body == body,
        "20 MiB body differs (len {})",
        obj.body.len()
    );
    assert_eq!(obj.meta("upload-id"), Some(a.id.as_str()));
}

#[test]
fn delete_is_queued_like_a_put() {
    let c = client();
    let key = unique_key("delete");
    let (_, put) = put_committed(&c, &key, b"doomed", &PutOptions::default());
    let r = c
        .raw(
            "DELETE",
            &format!("/objects/{}", encode_key(&key)),
            &[],
            None,
        )
        .unwrap();
    assert_eq!(r.status, 202, "{}", r.text());
    let v = r.json().unwrap();
    assert_eq!(
        (v["size"].as_u64(), v["state"].as_str()),
        (Some(0), Some("queued")),
        "{v}"
    );
    assert_eq!(v["key"], key.as_str());
    assert_eq!(r.headers.get("location"), v["status_url"].as_str());
    let id = v["id"].as_str().unwrap();
    let del = c.wait_terminal(id, COMMIT_TIMEOUT).unwrap();
    assert_eq!(del.state, UploadState::Committed, "{del:?}");
    assert_eq!(del.etag, None, "a DELETE has no etag");
    let gap = ms(del.committed_at.as_deref().unwrap()) - ms(put.committed_at.as_deref().unwrap());
    assert!(
        gap >= 1000,
        "PUT and DELETE of one key written {gap} ms apart"
    );
    expect_api_error(
        c.get_object(&key, &GetOptions::default()),
        404,
        "object_not_found",
    );
    // Deleting a key that does not exist is a write like any other.
    let a = c.delete_object(&unique_key("delete-missing")).unwrap();
    assert_eq!(a.size, 0);
    assert!(c
        .wait_terminal(&a.id, COMMIT_TIMEOUT)
        .unwrap()
        .state
        .is_terminal());
}

#[test]
fn delete_is_ordered_with_puts() {
    let c = client();
    // put, delete, put: the object is the last put.
    let k1 = unique_key("order");
    let ids1 = [
        c.put_object(&k1, b"first", &PutOptions::default())
            .unwrap()
            .id,
        c.delete_object(&k1).unwrap().id,
        c.put_object(&k1, b"last", &PutOptions::default())
            .unwrap()
            .id,
    ];
    // put, put, delete: the object is gone.
    let k2 = unique_key("order");
    let ids2 = [
        c.put_object(&k2, b"first", &PutOptions::default())
            .unwrap()
            .id,
        c.put_object(&k2, b"second", &PutOptions::default())
            .unwrap()
            .id,
        c.delete_object(&k2).unwrap().id,
    ];
    for (key, ids) in [(&k1, &ids1), (&k2, &ids2)] {
        let sts: Vec<_> = ids
            .iter()
            .map(|id| c.wait_terminal(id, COMMIT_TIMEOUT).unwrap())
            .collect();
        assert!(
            sts.iter().all(|s| s.state != UploadState::Failed),
            "{key}: {sts:?}"
        );
        assert_eq!(
            sts[2].state,
            UploadState::Committed,
            "{key}: the newest write must commit: {sts:?}"
        );
        let mut commits: Vec<i64> = sts
            .iter()
            .filter_map(|s| s.committed_at.as_deref().map(ms))
            .collect();
        commits.sort_unstable();
        assert!(
            commits.windows(2).all(|w| w[1] - w[0] >= 1000),
            "{key}: commits {commits:?}"
        );
    }
    assert_eq!(
        c.get_object(&k1, &GetOptions::default()).unwrap().body,
        b"last"
    );
    expect_api_error(
        c.get_object(&k2, &GetOptions::default()),
        404,
        "object_not_found",
    );
}

#[test]
fn idempotent_repeat_returns_the_first_id_and_creates_no_version() {
    let c = client();
    let key = unique_key("idem");
    let opts = PutOptions::default().idempotency_key("order-1234:v1");
    let first = c.put_object(&key, b"payload", &opts).unwrap();
    let again = c.put_object(&key, b"payload", &opts).unwrap();
    assert_eq!(
        (again.id.as_str(), again.status_url.as_str()),
        (first.id.as_str(), first.status_url.as_str())
    );
    assert_eq!(again.location.as_deref(), Some(first.status_url.as_str()));
    let st = c.wait_terminal(&first.id, COMMIT_TIMEOUT).unwrap();
    assert_eq!(st.state, UploadState::Committed);
    let obj = c.get_object(&key, &GetOptions::default()).unwrap();
    let last_modified = obj.headers.get("last-modified").map(str::to_owned);
    assert_eq!(obj.meta("upload-id"), Some(first.id.as_str()));

    // After the commit too: same id, and no second write.
    let third = c.put_object(&key, b"payload", &opts).unwrap();
    assert_eq!(third.id, first.id);
    let again_st = c.wait_terminal(&first.id, COMMIT_TIMEOUT).unwrap();
    assert_eq!(
        again_st.committed_at, st.committed_at,
        "the repeat was written again"
    );
    // A second write would land within a second of being accepted.
    std::thread::sleep(Duration::from_millis(2500));
    let obj = c.get_object(&key, &GetOptions::default()).unwrap();
    assert_eq!(
        obj.headers.get("last-modified").map(str::to_owned),
        last_modified
    );
    assert_eq!(obj.meta("upload-id"), Some(first.id.as_str()));
    assert_eq!(
        obj.meta("committed-at").map(ms),
        st.committed_at.as_deref().map(ms)
    );

    // The same Idempotency-Key on another object key is another write.
    let other = c
        .put_object(&unique_key("idem"), b"payload", &opts)
        .unwrap();
    assert_ne!(other.id, first.id);
}

#[test]
fn concurrent_idempotent_repeats_get_one_id_and_make_one_version() {
    let c = client();
    let key = unique_key("idem-race");
    let opts = PutOptions::default().idempotency_key(&format!("race:{key}"));
    let barrier = std::sync::Barrier::new(4);
    let answers: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|i| {
                let (c, opts, key, barrier) = (c.clone(), &opts, &key, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    let body = format!("attempt {i}").into_bytes();
                    (c.put_object(key, &body, opts).unwrap(), body)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let id = answers[0].0.id.clone();
    for (a, _) in &answers {
        assert_eq!(a.id, id, "repeats answered with different ids");
    }
    let st = c.wait_terminal(&id, COMMIT_TIMEOUT).unwrap();
    assert_eq!(st.state, UploadState::Committed, "{st:?}");
    // Long enough for any second version to be written (one slot later).
    std::thread::sleep(Duration::from_millis(2500));
    let obj = c.get_object(&key, &GetOptions::default()).unwrap();
    assert_eq!(obj.meta("upload-id"), Some(id.as_str()));
    assert_eq!(
        obj.meta("committed-at").map(ms),
        st.committed_at.as_deref().map(ms),
        "a second version was written"
    );
    assert!(
        answers.iter().any(|(_, b)| *b == obj.body),
        "the stored bytes are none of the attempts'"
    );
    assert_eq!(c.upload_status(&id, None).unwrap(), st);
}

#[test]
fn bad_idempotency_key_is_400_invalid_header() {
    let c = client();
    let key = unique_key("idem-bad");
    let long = "k".repeat(256);
    for bad in ["", "has space", long.as_str(), "tab\tinside"] {
        let r = c.put_object(&key, b"x", &PutOptions::default().idempotency_key(bad));
        expect_api_error(r, 400, "invalid_header");
    }
    // 255 visible ASCII characters are fine.
    let ok = "~".repeat(254) + "!";
    let a = c
        .put_object(&key, b"x", &PutOptions::default().idempotency_key(&ok))
        .unwrap();
    assert!(c
        .wait_terminal(&a.id, COMMIT_TIMEOUT)
        .unwrap()
        .state
        .is_terminal());
}

#[test]
fn bad_mode_or_parameters_are_400_invalid_parameter() {
    let c = client();
    let key = unique_key("mode");
    let k = encode_key(&key);
    for q in ["mode=fast", "mode=", "mode=sync2", "mode=SYNC_NOW"] {
        for (method, body) in [("PUT", Some(&b"x"[..])), ("DELETE", None)] {
            let r = c
                .raw(method, &format!("/objects/{k}?{q}"), &[], body)
                .unwrap();
            expect_raw_error(&r, 400, "invalid_parameter", &format!("{method} ?{q}"));
        }
    }
    expect_api_error(
        c.get_object(&key, &GetOptions::default()),
        404,
        "object_not_found",
    );
}

/// Raw paths after `/objects/` that are not valid keys.
fn invalid_key_paths() -> Vec<String> {
    let mut paths: Vec<String> = [
        "",
        "a%00b",
        "a%1Fb",
        "a%7Fb",
        "a%C2%80b",
        "a%C2%9Fb",
        "line%0Abreak",
        "%2Fleading",
        "a//b",
        "a/",
        "a%2F%2Fb",
        "a%2F..%2Fb",
        "a%2F.%2Fb",
        "..%2Fa",
        "a%2F..",
        "_pipeline/x",
        "_pipeline%2Fx",
        "_pipeline/",
        "%FF",
        "a%C3",
        "%zz",
        "a%2",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    paths.push("a".repeat(1025));
    paths.push(format!("{}é", "a".repeat(1023)));
    paths
}

#[test]
fn invalid_keys_are_400_invalid_key_on_every_object_route() {
    let c = client();
    for raw_key in invalid_key_paths() {
        for (method, suffix, body) in [
            ("PUT", "", Some(&b"x"[..])),
            ("PUT", "?mode=sync", Some(&b"x"[..])),
            ("DELETE", "", None),
            ("DELETE", "?mode=sync", None),
            ("GET", "", None),
            ("GET", "?consistency=latest", None),
        ] {
            let path = format!("/objects/{raw_key}{suffix}");
            let r = c.raw(method, &path, &[], body).unwrap();
            expect_raw_error(&r, 400, "invalid_key", &format!("{method} {path:.80}"));
        }
    }
    // The longest valid key: 1024 bytes.
    let key = format!("e2e/max/{}", "k".repeat(1016));
    assert_eq!(key.len(), 1024);
    let (_, st) = put_committed(&c, &key, b"max", &PutOptions::default());
    assert_eq!(st.key, key);
}

#[test]
fn unknown_or_forged_ids_are_404_upload_not_found() {
    let c = client();
    let a = c
        .put_object(&unique_key("ids"), b"x", &PutOptions::default())
        .unwrap();
    let mut flipped = a.id.clone().into_bytes();
    let last = flipped.len() - 1;
    flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    let mut first_flipped = a.id.clone().into_bytes();
    first_flipped[0] = if first_flipped[0] == b'A' { b'B' } else { b'A' };
    let first_flipped = String::from_utf8(first_flipped).unwrap();
    for id in [
        "nope".to_owned(),
        "AAAAAAAAAAAAAAAAAAAAAAAA".to_owned(),
        flipped,
        first_flipped,
        format!("{}x", a.id),
        a.id[..a.id.len() - 1].to_owned(),
        "%FF%FE".to_owned(),
        "x".repeat(3000),
    ] {
        let r = c.raw("GET", &format!("/uploads/{id}"), &[], None).unwrap();
        expect_raw_error(
            &r,
            404,
            "upload_not_found",
            &format!("GET /uploads/{id:.60}"),
        );
    }
    assert!(c.upload_status(&a.id, None).is_ok());
}

#[test]
fn ids_never_404_right_after_the_202() {
    let c = client();
    let key = unique_key("fresh-ids");
    for i in 0..20 {
        let a = c
            .put_object(&key, format!("v{i}").as_bytes(), &PutOptions::default())
            .unwrap();
        let st = c
            .upload_status(&a.id, None)
            .unwrap_or_else(|e| panic!("status of a fresh id: {e}"));
        assert_eq!(st.id, a.id);
    }
}

#[test]
fn wait_parameter_is_validated_and_long_polls() {
    let c = client();
    let a = c
        .put_object(&unique_key("wait"), b"x", &PutOptions::default())
        .unwrap();
    for bad in ["31", "abc", "-1", "1.5", "", "100000000000"] {
        let r = c
            .raw("GET", &format!("/uploads/{}?wait={bad}", a.id), &[], None)
            .unwrap();
        expect_raw_error(&r, 400, "invalid_parameter", &format!("?wait={bad}"));
    }
    let t = Instant::now();
    let st = c.upload_status(&a.id, Some(30)).unwrap();
    assert!(
        st.state.is_terminal(),
        "wait=30 returned a non-terminal state {st:?} after {:?}",
        t.elapsed()
    );
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "the long-poll did not answer at the terminal state"
    );
    // On a terminal id, wait answers at once; wait=0 is a plain poll.
    let t = Instant::now();
    assert!(c
        .upload_status(&a.id, Some(30))
        .unwrap()
        .state
        .is_terminal());
    assert!(c.upload_status(&a.id, Some(0)).unwrap().state.is_terminal());
    assert!(t.elapsed() < Duration::from_secs(2));
}

#[test]
fn stats_have_the_documented_shape_and_balance() {
    let c = client();
    let r = c.raw("GET", "/stats", &[], None).unwrap();
    assert_eq!(r.status, 200);
    let v = r.json().unwrap();
    for f in [
        "accepted",
        "committed",
        "superseded",
        "failed",
        "r2_writes",
        "rate_limited",
        "inflight",
    ] {
        assert!(
            v[f].is_i64() && v[f].as_i64() >= Some(0),
            "/stats {f} is not a non-negative integer: {v}"
        );
    }
    let before = c.stats().unwrap();
    assert_eq!(
        before.accepted,
        before.committed + before.superseded + before.failed + before.inflight,
        "{before:?}"
    );
    put_committed(&c, &unique_key("stats"), b"counted", &PutOptions::default());
    let after = c.stats().unwrap();
    assert!(after.accepted > before.accepted, "{before:?} -> {after:?}");
    assert!(
        after.committed > before.committed,
        "{before:?} -> {after:?}"
    );
    assert!(
        after.r2_writes > before.r2_writes,
        "{before:?} -> {after:?}"
    );
    assert_eq!(
        after.accepted,
        after.committed + after.superseded + after.failed + after.inflight,
        "{after:?}"
    );
}

#[test]
fn accepted_at_and_committed_at_are_rfc3339_ms() {
    let c = client();
    let (a, st) = put_committed(&c, &unique_key("times"), b"t", &PutOptions::default());
    let acc = parse_time(&a.accepted_at);
    let com = parse_time(st.committed_at.as_deref().unwrap());
    assert!(com >= acc);
    assert_eq!(st.accepted_at, a.accepted_at);
}

/// The pipeline stores `upload-id` (whose length grows with the key's),
/// `accepted-at` and `committed-at` next to the client's `X-Meta-*`, within
/// R2's 8192 bytes of custom metadata. With a long key, metadata that
/// would fit only next to a short key's id is refused up front, in both
/// modes, instead of being accepted and failing at every commit.
#[test]
fn metadata_that_cannot_fit_next_to_a_long_keys_id_is_400_in_both_modes() {
    let c = client();
    let prefix = format!("{}/", unique_key("long-meta"));
    let key = format!("{prefix}{}", "k".repeat(1000 - prefix.len()));
    assert_eq!(key.len(), 1000);
    // 7000 bytes of names and values: within 8192 minus a fixed 256-byte
    // reserve, beyond what a 1000-byte key's id (1395 characters) leaves.
    let value = "v".repeat(7000 - "note".len());
    let opts = PutOptions::default().header("X-Meta-note", &value);
    expect_api_error(c.put_object(&key, b"body", &opts), 400, "invalid_header");
    expect_api_error(
        c.put_object_sync(&key, b"body", &opts),
        400,
        "invalid_header",
    );
    // Split over several headers, the sum counts.
    let quarter = "q".repeat(1750 - 2);
    let split = (0..4).fold(PutOptions::default(), |o, i| {
        o.header(&format!("X-Meta-q{i}"), &quarter)
    });
    expect_api_error(c.put_object(&key, b"body", &split), 400, "invalid_header");
    expect_api_error(
        c.put_object_sync(&key, b"body", &split),
        400,
        "invalid_header",
    );

    // Nothing was stored, held or listed.
    std::thread::sleep(Duration::from_secs(2));
    expect_api_error(
        c.get_object(&key, &GetOptions::default()),
        404,
        "object_not_found",
    );
    let latest = GetOptions {
        consistency_latest: true,
        ..GetOptions::default()
    };
    expect_api_error(c.get_object(&key, &latest), 404, "object_not_found");
    let page = c
        .list_objects(&pipeline_client::ListOptions {
            prefix: Some(prefix.clone()),
            ..pipeline_client::ListOptions::default()
        })
        .unwrap();
    assert!(page.objects.is_empty(), "listed: {:?}", page.objects);

    // The key itself is fine: with little metadata the write commits, and
    // carries the pipeline's own entries.
    let small = PutOptions::default().header("X-Meta-note", "short");
    let (a, _) = put_committed(&c, &key, b"body", &small);
    let obj = c.get_object(&key, &GetOptions::default()).unwrap();
    assert_eq!(obj.body, b"body");
    assert_eq!(obj.meta("note"), Some("short"));
    assert_eq!(obj.meta("upload-id"), Some(a.id.as_str()));
    assert!(a.id.len() > 1300, "id of {} characters", a.id.len());
}
