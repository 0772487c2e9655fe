//! Synchronous reads: validators, conditional requests, ranges, HEAD and
//! read-your-writes (`docs/API.md` "Reads").

use std::time::{Duration, Instant, SystemTime};

use e2e::{bare_etag, expect_api_error, put_committed, shared, unique_key};
use pipeline_client::{Client, ClientError, GetOptions, ObjectResponse, PutOptions, UploadState};

fn client() -> Client {
    shared().client()
}

/// A committed 100-byte object (bytes 0..100) with some metadata.
fn object_100(c: &Client) -> (String, ObjectResponse) {
    let key = unique_key("reads");
    let body: Vec<u8> = (0..100).collect();
    let opts = PutOptions::content_type("application/x-bytes")
        .header("Cache-Control", "no-cache")
        .header("X-Meta-Kind", "hundred");
    put_committed(c, &key, &body, &opts);
    let obj = c.get_object(&key, &GetOptions::default()).unwrap();
    (key, obj)
}

fn get(c: &Client, key: &str, opts: GetOptions) -> Result<ObjectResponse, ClientError> {
    c.get_object(key, &opts)
}

fn http_date(t: SystemTime) -> String {
    httpdate::fmt_http_date(t)
}

#[test]
fn get_has_etag_last_modified_length_and_type() {
    let c = client();
    let key = unique_key("reads");
    let (_, st) = put_committed(
        &c,
        &key,
        b"0123456789",
        &PutOptions::content_type("text/plain"),
    );
    let obj = c.get_object(&key, &GetOptions::default()).unwrap();
    assert_eq!(obj.status, 200);
    let etag = obj.etag().expect("ETag");
    assert!(
        etag.len() > 2
            && etag.starts_with('"')
            && etag.ends_with('"')
            && !etag[1..etag.len() - 1].contains('"'),
        "ETag {etag:?} is not a quoted strong validator"
    );
    assert_eq!(bare_etag(etag), bare_etag(st.etag.as_deref().unwrap()));
    let lm = obj.headers.get("last-modified").expect("Last-Modified");
    let lm = httpdate::parse_http_date(lm).unwrap_or_else(|e| panic!("Last-Modified {lm:?}: {e}"));
    let committed = e2e::parse_time(st.committed_at.as_deref().unwrap());
    let lm_secs = lm.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
    let committed_secs = u64::try_from(committed.timestamp()).unwrap();
    assert!(
        lm_secs + 2 >= committed_secs && lm_secs <= committed_secs + 60,
        "Last-Modified {lm_secs} far from committed_at {committed_secs}"
    );
    assert_eq!(obj.headers.get("content-length"), Some("10"));
    assert_eq!(obj.content_type(), Some("text/plain"));
    assert_eq!(obj.body, b"0123456789");
}

#[test]
fn if_none_match_gives_304() {
    let c = client();
    let (key, obj) = object_100(&c);
    let etag = obj.etag().unwrap().to_owned();
    for inm in [
        etag.clone(),
        "*".into(),
        format!("\"nope\", {etag}"),
        format!("W/{etag}"),
    ] {
        let r = get(
            &c,
            &key,
            GetOptions {
                if_none_match: Some(inm.clone()),
                ..GetOptions::default()
            },
        )
        .unwrap();
        assert_eq!(r.status, 304, "If-None-Match: {inm}");
        assert!(r.body.is_empty(), "304 with a body");
        assert_eq!(r.etag(), Some(etag.as_str()), "304 must carry the ETag");
        let r = c
            .head_object(
                &key,
                &GetOptions {
                    if_none_match: Some(inm.clone()),
                    ..GetOptions::default()
                },
            )
            .unwrap();
        assert_eq!(r.status, 304, "HEAD If-None-Match: {inm}");
    }
    let r = get(
        &c,
        &key,
        GetOptions {
            if_none_match: Some("\"other\"".into()),
            ..GetOptions::default()
        },
    )
    .unwrap();
    assert_eq!((r.status, r.body.len()), (200, 100));
}

#[test]
fn if_match_mismatch_is_412() {
    let c = client();
    let (key, obj) = object_100(&c);
    let etag = obj.etag().unwrap().to_owned();
    for im in ["\"nope\"", "\"a\", \"b\""] {
        expect_api_error(
            get(
                &c,
                &key,
                GetOptions {
                    if_match: Some(im.into()),
                    ..GetOptions::default()
                },
            ),
            412,
            "precondition_failed",
        );
    }
    // If-Match uses the strong comparison: a weak validator never matches.
    expect_api_error(
        get(
            &c,
            &key,
            GetOptions {
                if_match: Some(format!("W/{etag}")),
                ..GetOptions::default()
            },
        ),
        412,
        "precondition_failed",
    );
    for im in [etag.clone(), "*".into(), format!("\"nope\", {etag}")] {
        let r = get(
            &c,
            &key,
            GetOptions {
                if_match: Some(im.clone()),
                ..GetOptions::default()
            },
        )
        .unwrap();
        assert_eq!((r.status, r.body.len()), (200, 100), "If-Match: {im}");
    }
    // On a missing object, If-Match: * fails (nothing to match) or 404s.
    let missing = get(
        &c,
        &unique_key("reads-missing"),
        GetOptions {
            if_match: Some("*".into()),
            ..GetOptions::default()
        },
    );
    assert!(
        matches!(
            missing.as_ref().map_err(ClientError::status),
            Err(Some(404 | 412))
        ),
        "{missing:?}"
    );
}

#[test]
fn if_modified_since_and_if_unmodified_since() {
    let c = client();
    let (key, obj) = object_100(&c);
    let lm_text = obj.headers.get("last-modified").unwrap().to_owned();
    let lm = httpdate::parse_http_date(&lm_text).unwrap();
    let day = Duration::from_secs(86_400);
    let ims = |d: String| GetOptions {
        if_modified_since: Some(d),
        ..GetOptions::default()
    };
    let ius = |d: String| GetOptions {
        if_unmodified_since: Some(d),
        ..GetOptions::default()
    };

    assert_eq!(
        get(&c, &key, ims(lm_text.clone())).unwrap().status,
        304,
        "IMS = Last-Modified"
    );
    let r = get(&c, &key, ims(http_date(lm - day))).unwrap();
    assert_eq!((r.status, r.body.len()), (200, 100), "IMS a day before");
    // An invalid date is ignored.
    assert_eq!(get(&c, &key, ims("yesterday".into())).unwrap().status, 200);

    expect_api_error(
        get(&c, &key, ius(http_date(lm - day))),
        412,
        "precondition_failed",
    );
    assert_eq!(
        get(&c, &key, ius(lm_text.clone())).unwrap().status,
        200,
        "IUS = Last-Modified"
    );
    assert_eq!(get(&c, &key, ius(http_date(lm + day))).unwrap().status, 200);

    // RFC 9110 precedence: If-None-Match overrides If-Modified-Since,
    // If-Match overrides If-Unmodified-Since.
    let r = get(
        &c,
        &key,
        GetOptions {
            if_none_match: Some("\"other\"".into()),
            if_modified_since: Some(lm_text.clone()),
            ..GetOptions::default()
        },
    )
    .unwrap();
    assert_eq!(
        r.status, 200,
        "If-None-Match (no match) must override If-Modified-Since"
    );
    let r = get(
        &c,
        &key,
        GetOptions {
            if_match: Some(obj.etag().unwrap().to_owned()),
            if_unmodified_since: Some(http_date(lm - day)),
            ..GetOptions::default()
        },
    )
    .unwrap();
    assert_eq!(
        r.status, 200,
        "If-Match (match) must override If-Unmodified-Since"
    );
    // If-Unmodified-Since is checked before If-None-Match.
    expect_api_error(
        get(
            &c,
            &key,
            GetOptions {
                if_unmodified_since: Some(http_date(lm - day)),
                if_none_match: Some(obj.etag().unwrap().to_owned()),
                ..GetOptions::default()
            },
        ),
        412,
        "precondition_failed",
    );
}

#[test]
fn ranges_are_206_with_exact_content_range() {
    let c = client();
    let (key, _) = object_100(&c);
    let all: Vec<u8> = (0..100).collect();
    for (range, from, to) in [
        ("bytes=0-9", 0, 9),
        ("bytes=10-10", 10, 10),
        ("bytes=90-", 90, 99),
        ("bytes=0-", 0, 99),
        ("bytes=-5", 95, 99),
        ("bytes=-100", 0, 99),
        ("bytes=-1000", 0, 99),
        ("bytes=95-200", 95, 99),
        ("bytes=99-99", 99, 99),
    ] {
        let opts = GetOptions {
            range: Some(range.into()),
            ..GetOptions::default()
        };
        let r = c
            .get_object(&key, &opts)
            .unwrap_or_else(|e| panic!("Range {range}: {e}"));
        assert_eq!(r.status, 206, "Range {range}");
        assert_eq!(
            r.headers.get("content-range"),
            Some(format!("bytes {from}-{to}/100").as_str()),
            "Range {range}"
        );
        assert_eq!(
            r.headers.get("content-length"),
            Some((to - from + 1).to_string().as_str()),
            "Range {range}"
        );
        assert_eq!(r.body, all[from..=to], "Range {range}");
    }
}

#[test]
fn unsatisfiable_ranges_are_416_with_the_size() {
    let c = client();
    let (key, _) = object_100(&c);
    for range in ["bytes=100-", "bytes=100-200", "bytes=1000-1001", "bytes=-0"] {
        let headers = expect_api_error(
            get(
                &c,
                &key,
                GetOptions {
                    range: Some(range.into()),
                    ..GetOptions::default()
                },
            ),
            416,
            "range_not_satisfiable",
        );
        assert_eq!(
            headers.get("content-range"),
            Some("bytes */100"),
            "Range {range}"
        );
    }
    let empty = unique_key("reads-empty");
    put_committed(&c, &empty, b"", &PutOptions::default());
    let headers = expect_api_error(
        get(
            &c,
            &empty,
            GetOptions {
                range: Some("bytes=0-".into()),
                ..GetOptions::default()
            },
        ),
        416,
        "range_not_satisfiable",
    );
    assert_eq!(headers.get("content-range"), Some("bytes */0"));
}

#[test]
fn malformed_ranges_are_ignored() {
    let c = client();
    let (key, _) = object_100(&c);
    for range in [
        "bytes=abc",
        "items=0-1",
        "bytes=5-1",
        "bytes 0-1",
        "bytes=--1",
    ] {
        let r = get(
            &c,
            &key,
            GetOptions {
                range: Some(range.into()),
                ..GetOptions::default()
            },
        )
        .unwrap_or_else(|e| panic!("Range {range}: {e}"));
        assert_eq!(
            (r.status, r.body.len()),
            (200, 100),
            "Range {range} must be ignored"
        );
        assert!(!r.headers.contains("content-range"), "Range {range}");
    }
}

#[test]
fn missing_objects_are_404_object_not_found() {
    let c = client();
    let key = unique_key("reads-missing");
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
    let r = c
        .raw(
            "HEAD",
            &format!("/objects/{}", pipeline_client::encode_key(&key)),
            &[],
            None,
        )
        .unwrap();
    assert_eq!(r.status, 404);
    assert!(r.body.is_empty());
}

#[test]
fn head_matches_get_without_a_body() {
    let c = client();
    let (key, get) = object_100(&c);
    let head = c.head_object(&key, &GetOptions::default()).unwrap();
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    for h in [
        "etag",
        "last-modified",
        "content-length",
        "content-type",
        "cache-control",
        "x-meta-kind",
        "x-meta-upload-id",
        "x-meta-accepted-at",
        "x-meta-committed-at",
        "access-control-allow-origin",
    ] {
        assert!(get.headers.contains(h), "GET lacks {h}");
        assert_eq!(
            head.headers.get(h),
            get.headers.get(h),
            "HEAD and GET differ on {h}"
        );
    }
    assert_eq!(get.headers.get("content-length"), Some("100"));
}

/// Writes `base` with `?mode=sync`, retrying on `429` after the advertised wait.
fn put_sync(
    c: &Client,
    key: &str,
    body: &[u8],
    opts: &PutOptions,
) -> pipeline_client::SyncCommitted {
    for _ in 0..10 {
        match c.put_object_sync(key, body, opts) {
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
    panic!("sync PUT {key}: still rate limited after 10 tries");
}

#[test]
fn consistency_latest_reads_a_held_write_before_its_commit() {
    let c = client();
    let key = unique_key("latest");
    let latest = GetOptions {
        consistency_latest: true,
        ..GetOptions::default()
    };
    let mut seen_scheduled = false;
    for attempt in 0..8 {
        // Take the slot now, so the next write waits about a second for its own.
        put_sync(
            &c,
            &key,
            b"committed bytes",
            &PutOptions::content_type("text/x-old"),
        );
        let new_body = format!("pending bytes #{attempt}").into_bytes();
        let a = c
            .put_object(
                &key,
                &new_body,
                &PutOptions::content_type("text/x-new").header("X-Meta-Try", &attempt.to_string()),
            )
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let st = loop {
            let st = c.upload_status(&a.id, None).unwrap();
            if st.state != UploadState::Queued || Instant::now() > deadline {
                break st;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        if st.state != UploadState::Scheduled {
            // It reached the scheduler after the slot freed and committed at once.
            c.wait_terminal(&a.id, e2e::COMMIT_TIMEOUT).unwrap();
            continue;
        }
        let r = c.get_object(&key, &latest).unwrap();
        match r.headers.get("x-pipeline-state") {
            Some("scheduled") => {
                assert_eq!(
                    r.body, new_body,
                    "latest read while scheduled must return the held write"
                );
                assert_eq!(r.content_type(), Some("text/x-new"));
                assert_eq!(r.meta("try"), Some(attempt.to_string().as_str()));
                seen_scheduled = true;
            }
            Some("committed") => {
                assert_eq!(r.body, new_body, "committed in between: the new bytes")
            }
            other => panic!("X-Pipeline-State {other:?} on a latest read"),
        }
        let done = c.wait_terminal(&a.id, e2e::COMMIT_TIMEOUT).unwrap();
        assert_eq!(done.state, UploadState::Committed);
        if seen_scheduled {
            break;
        }
    }
    assert!(
        seen_scheduled,
        "never caught a write held by the scheduler in 8 tries"
    );
    // Nothing pending: a latest read is a plain read marked committed.
    let r = c.get_object(&key, &latest).unwrap();
    assert_eq!(r.headers.get("x-pipeline-state"), Some("committed"));
    let plain = c.get_object(&key, &GetOptions::default()).unwrap();
    assert_eq!(r.body, plain.body);
    assert_eq!(r.etag(), plain.etag());
}

#[test]
fn consistency_latest_sees_a_held_delete_as_404() {
    let c = client();
    let key = unique_key("latest-del");
    let latest = GetOptions {
        consistency_latest: true,
        ..GetOptions::default()
    };
    let mut seen = false;
    for _ in 0..8 {
        put_sync(&c, &key, b"still here", &PutOptions::default());
        let a = c.delete_object(&key).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let st = loop {
            let st = c.upload_status(&a.id, None).unwrap();
            if st.state != UploadState::Queued || Instant::now() > deadline {
                break st;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        if st.state == UploadState::Scheduled {
            let r = c.get_object(&key, &latest);
            let still_scheduled =
                c.upload_status(&a.id, None).unwrap().state == UploadState::Scheduled;
            match r {
                Err(e) => {
                    assert_eq!(
                        (e.status(), e.code()),
                        (Some(404), Some("object_not_found")),
                        "{e}"
                    );
                    seen = true;
                }
                Ok(obj) => assert!(
                    !still_scheduled && obj.body != b"still here",
                    "latest read returned the deleted bytes while the DELETE was held"
                ),
            }
            // The plain read still sees the stored object until the commit.
            if still_scheduled {
                if let Ok(obj) = c.get_object(&key, &GetOptions::default()) {
                    assert_eq!(obj.body, b"still here");
                }
            }
        }
        assert_eq!(
            c.wait_terminal(&a.id, e2e::COMMIT_TIMEOUT).unwrap().state,
            UploadState::Committed
        );
        if seen {
            break;
        }
    }
    assert!(
        seen,
        "never caught a DELETE held by the scheduler in 8 tries"
    );
    expect_api_error(c.get_object(&key, &latest), 404, "object_not_found");
}
