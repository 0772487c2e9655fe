//! Bad input, table-driven over every route of `docs/API.md`:
//! keys, headers, query parameters, bodies, counter bodies and names, ids
//! and methods. Each input gets its status and JSON error code checked, and
//! each one is followed by a check that nothing changed: the fixture
//! object's bytes and ETag, the fixture counter, and `/stats`. After each
//! table a barrier (a write that must commit; the local queue is FIFO, so
//! anything wrongly queued before it has been delivered by then) is followed
//! by a full comparison: `/stats` moved by the barrier write only, the
//! bucket lists exactly the same keys, the fixture's `?consistency=latest`
//! read shows no held write.
//!
//! The tables that share the main worker run one at a time ([`WORLD`]),
//! so `/stats` can be compared exactly. Figures are printed (`--nocapture`).

mod common;

use std::collections::BTreeSet;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use e2e::{now_ms, put_committed, start, unique_key, LocalWorker, WorkerOptions};
use pipeline_client::{
    encode_key, Client, ClientError, GetOptions, ListOptions, PutOptions, RawResponse, Stats,
    UploadState,
};

/// The main worker's upload limit: small, so 413 is cheap to provoke, and
/// above the inline limit (a body whose message fits 127,900 bytes, about
/// 95 KB), so staged bodies are accepted below it.
const MAX_UPLOAD: usize = 128 * 1024;
const FIXTURE_BODY: &[u8] = b"fixture bytes: 0123456789";
const COUNTER: &str = "bad-input-fixture";
const COUNTER_VALUE: i64 = 5;

/// The main worker, its fixture object and counter.
struct World {
    w: LocalWorker,
    key: String,
    id: String,
    sentinels: Mutex<usize>,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let w =
            start(WorkerOptions::new("bad-input").var("MAX_UPLOAD_BYTES", &MAX_UPLOAD.to_string()));
        let c = w.client();
        let key = unique_key("bad-input-fixture");
        let (a, _) = put_committed(
            &c,
            &key,
            FIXTURE_BODY,
            &PutOptions::content_type("text/plain"),
        );
        assert_eq!(
            c.increment(COUNTER, Some(COUNTER_VALUE)).unwrap().value,
            COUNTER_VALUE
        );
        World {
            w,
            key,
            id: a.id,
            sentinels: Mutex::new(0),
        }
    })
}

/// One table at a time on the main worker.
static WORLD: Mutex<()> = Mutex::new(());

fn lock() -> MutexGuard<'static, ()> {
    WORLD
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What a bad input must answer.
#[derive(Debug, Clone)]
enum Expect {
    /// An error status and JSON code (a HEAD answer has no body: status only).
    Error(u16, &'static str),
    /// `200` with the fixture's bytes: the odd header is ignored.
    Fixture,
    /// `416 range_not_satisfiable` with `Content-Range: bytes */<size>`.
    Unsatisfiable,
    /// `405 method_not_allowed` with `Allow` naming these methods.
    NotAllowed(&'static [&'static str]),
}

#[derive(Debug, Clone)]
enum Body {
    None,
    Bytes(Vec<u8>),
}

#[derive(Debug, Clone)]
struct Case {
    what: String,
    method: &'static str,
    path: String,
    headers: Vec<(String, String)>,
    body: Body,
    expect: Expect,
}

impl Case {
    fn new(what: impl Into<String>, method: &'static str, path: impl Into<String>) -> Self {
        Self {
            what: what.into(),
            method,
            path: path.into(),
            headers: Vec::new(),
            body: if matches!(method, "PUT" | "POST") {
                Body::Bytes(b"evil".to_vec())
            } else {
                Body::None
            },
            expect: Expect::Error(400, "invalid_key"),
        }
    }

    fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    fn body(mut self, body: Body) -> Self {
        self.body = body;
        self
    }

    fn expect(mut self, expect: Expect) -> Self {
        self.expect = expect;
        self
    }

    fn label(&self) -> String {
        let path: String = self.path.chars().take(90).collect();
        format!("{} ({} {path})", self.what, self.method)
    }
}

/// Sends a case.
fn send(c: &Client, case: &Case) -> RawResponse {
    let headers: Vec<(&str, &str)> = case
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let r = match &case.body {
        Body::None => c.raw(case.method, &case.path, &headers, None),
        Body::Bytes(b) => c.raw(case.method, &case.path, &headers, Some(b)),
    };
    r.unwrap_or_else(|e| panic!("{}: no answer: {e}", case.label()))
}

/// Whether the answer is the expected one; a description of the mismatch
/// otherwise.
fn check(case: &Case, r: &RawResponse) -> Result<(), String> {
    let got = || {
        format!(
            "got {} {}",
            r.status,
            r.text().chars().take(160).collect::<String>()
        )
    };
    let fail = |why: &str| Err(format!("{}: {why}; {}", case.label(), got()));
    match &case.expect {
        Expect::Error(status, code) => {
            if r.status != *status {
                return fail(&format!("expected {status} {code}"));
            }
            if case.method != "HEAD" && r.error_code().as_deref() != Some(*code) {
                return fail(&format!("expected code {code}"));
            }
        }
        Expect::Fixture => {
            if r.status != 200 || r.body != FIXTURE_BODY {
                return fail("expected 200 with the whole object (header ignored)");
            }
        }
        Expect::Unsatisfiable => {
            let range = format!("bytes */{}", FIXTURE_BODY.len());
            if r.status != 416
                || r.error_code().as_deref() != Some("range_not_satisfiable")
                || r.headers.get("content-range") != Some(range.as_str())
            {
                return fail(&format!(
                    "expected 416 range_not_satisfiable, Content-Range {range}"
                ));
            }
        }
        Expect::NotAllowed(allowed) => {
            if r.status != 405
                || (case.method != "HEAD"
                    && r.error_code().as_deref() != Some("method_not_allowed"))
            {
                return fail("expected 405 method_not_allowed");
            }
            let allow = e2e::header_tokens(r.headers.get("allow").unwrap_or(""));
            if allowed
                .iter()
                .any(|m| !allow.contains(&m.to_ascii_lowercase()))
                || allow.contains(&case.method.to_ascii_lowercase())
            {
                return fail(&format!(
                    "expected Allow to name {allowed:?} only, got {allow:?}"
                ));
            }
        }
    }
    Ok(())
}

/// What must not change.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Quick {
    stats: Stats,
    etag: Option<String>,
    counter: i64,
}

fn quick(c: &Client, key: &str) -> Quick {
    let obj = c.get_object(key, &GetOptions::default()).unwrap();
    assert_eq!(obj.body, FIXTURE_BODY, "the fixture object changed");
    Quick {
        stats: c.stats().unwrap(),
        etag: obj.etag().map(str::to_owned),
        counter: c.counter(COUNTER).unwrap().value,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Full {
    quick: Quick,
    upload_id: Option<String>,
    latest: (u16, Vec<u8>, Option<String>),
    keys: BTreeSet<String>,
}

fn full(c: &Client, key: &str) -> Full {
    let obj = c.get_object(key, &GetOptions::default()).unwrap();
    let latest = c
        .get_object(
            key,
            &GetOptions {
                consistency_latest: true,
                ..GetOptions::default()
            },
        )
        .unwrap();
    let keys = c
        .list_all(&ListOptions::default())
        .unwrap()
        .into_iter()
        .flat_map(|p| p.objects)
        .map(|o| o.key)
        .filter(|k| !k.starts_with("e2e/bad-input-sentinel/"))
        .collect();
    Full {
        quick: quick(c, key),
        upload_id: obj.meta("upload-id").map(str::to_owned),
        latest: (
            latest.status,
            latest.body.clone(),
            latest.headers.get("x-pipeline-state").map(str::to_owned),
        ),
        keys,
    }
}

/// Runs a table: each case checked, then nothing changed (quick check after
/// each, full check after a barrier). Returns the number of inputs.
fn run_table(table: &str, cases: &[Case]) -> usize {
    let world = world();
    // Bounded, so a stuck runtime fails the table instead of hanging it.
    let c = world.w.client().with_timeout(Duration::from_secs(45));
    let before = full(&c, &world.key);
    assert_eq!(before.latest.2.as_deref(), Some("committed"), "{before:?}");
    let mut problems = Vec::new();
    let mut last = before.quick.clone();
    for case in cases {
        let r = send(&c, case);
        if let Err(p) = check(case, &r) {
            problems.push(p);
        }
        let now = quick(&c, &world.key);
        if now != last {
            problems.push(format!(
                "{}: changed state: {last:?} -> {now:?}",
                case.label()
            ));
            last = now;
        }
    }
    // Barrier: a write behind everything this table might have queued.
    let sentinel = unique_key("bad-input-sentinel");
    put_committed(&c, &sentinel, b"barrier", &PutOptions::default());
    *world.sentinels.lock().unwrap() += 1;
    let after = full(&c, &world.key);
    assert!(
        problems.is_empty(),
        "{table}: {} of {} inputs were not answered as specified or changed state:\n{}",
        problems.len(),
        cases.len(),
        problems.join("\n")
    );
    let (b, a) = (before.quick.stats, after.quick.stats);
    assert_eq!(
        (a.accepted, a.committed, a.r2_writes),
        (b.accepted + 1, b.committed + 1, b.r2_writes + 1),
        "{table}: /stats moved by more than the barrier write: {b:?} -> {a:?}"
    );
    assert_eq!(
        (a.superseded, a.failed, a.rate_limited, a.inflight),
        (b.superseded, b.failed, b.rate_limited, b.inflight),
        "{table}: {b:?} -> {a:?}"
    );
    assert_eq!(
        after.keys, before.keys,
        "{table}: the bucket's keys changed"
    );
    assert_eq!(
        after.upload_id, before.upload_id,
        "{table}: fixture rewritten"
    );
    assert_eq!(
        after.latest, before.latest,
        "{table}: a write to the fixture is held"
    );
    assert_eq!(after.quick.etag, before.quick.etag);
    assert_eq!(after.quick.counter, COUNTER_VALUE);
    println!(
        "FIGURES bad-input {table}: {} inputs, each refused as specified, nothing changed",
        cases.len()
    );
    cases.len()
}

/// Raw key paths (after `/objects/`) that are not valid keys.
fn invalid_keys() -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = [
        ("empty", ""),
        ("encoded dot-dot segment", "a%2F..%2Fb"),
        ("encoded dot segment", "a%2F.%2Fb"),
        ("leading encoded dot-dot", "..%2Fa"),
        ("leading encoded dot", ".%2Fa"),
        ("trailing encoded dot-dot", "a%2F.."),
        ("trailing encoded dot", "a%2F."),
        ("encoded dots and slash", "%2E%2E%2Fa"),
        ("empty segment", "a//b"),
        ("encoded empty segment", "a%2F%2Fb"),
        ("trailing slash", "a/"),
        ("encoded trailing slash", "a%2F"),
        ("leading encoded slash", "%2Fa"),
        ("NUL", "a%00b"),
        ("C0 control", "a%01b"),
        ("unit separator", "a%1Fb"),
        ("line feed", "line%0Abreak"),
        ("carriage return", "a%0Db"),
        ("tab", "a%09b"),
        ("DEL", "a%7Fb"),
        ("C1 control U+0080", "a%C2%80b"),
        ("C1 control U+009F", "a%C2%9Fb"),
        ("internal prefix", "_pipeline/x"),
        ("internal prefix, staging", "_pipeline/staging/0123abcd"),
        ("internal prefix, encoded slash", "_pipeline%2Fx"),
        ("internal prefix, encoded underscore", "%5Fpipeline/x"),
        ("internal prefix itself", "_pipeline"),
        ("internal prefix with slash", "_pipeline/"),
        ("invalid UTF-8 byte", "%FF"),
        ("truncated UTF-8", "a%C3"),
        ("bad UTF-8 continuation", "%C3%28"),
        ("truncated 3-byte UTF-8", "%E2%82"),
        ("UTF-16 surrogate", "%ED%A0%80"),
        ("overlong slash", "%C0%AF"),
        ("5-byte sequence", "%F8%88%80%80%80"),
        ("bad escape", "%zz"),
        ("lone percent", "a%"),
        ("short escape", "a%2"),
        ("non-hex escape", "%G0"),
    ]
    .iter()
    .map(|(w, k)| ((*w).to_owned(), (*k).to_owned()))
    .collect();
    v.push(("1025 bytes".into(), "k".repeat(1025)));
    v.push((
        "1025 bytes ending in é".into(),
        format!("{}%C3%A9", "k".repeat(1023)),
    ));
    v.push(("513 × é (1026 bytes)".into(), "%C3%A9".repeat(513)));
    v
}

#[test]
fn invalid_keys_are_400_on_every_object_route_and_change_nothing() {
    let _g = lock();
    let routes: [(&'static str, &str); 7] = [
        ("PUT", ""),
        ("PUT", "?mode=sync"),
        ("DELETE", ""),
        ("DELETE", "?mode=sync"),
        ("GET", ""),
        ("GET", "?consistency=latest"),
        ("HEAD", ""),
    ];
    let keys = invalid_keys();
    let mut cases = Vec::new();
    for (what, raw) in &keys {
        for (method, q) in routes {
            cases.push(Case::new(
                format!("key: {what}"),
                method,
                format!("/objects/{raw}{q}"),
            ));
        }
    }
    // A listing prefix is not a key, but the same characters are refused.
    for (what, p) in [
        ("NUL", "a%00"),
        ("line feed", "%0A"),
        ("C1 control", "%C2%85"),
        ("1025 bytes", &"p".repeat(1025)[..]),
    ] {
        cases.push(
            Case::new(
                format!("list prefix: {what}"),
                "GET",
                format!("/objects?prefix={p}"),
            )
            .expect(Expect::Error(400, "invalid_parameter")),
        );
    }
    let n = run_table("keys", &cases);
    println!(
        "FIGURES bad-input keys: {} invalid keys × {} routes",
        keys.len(),
        routes.len()
    );
    assert!(n > 250);
}

#[test]
fn bad_headers_and_parameters_are_refused_or_ignored_and_change_nothing() {
    let _g = lock();
    let world = world();
    let k = encode_key(&world.key);
    let obj = format!("/objects/{k}");
    let mut cases = Vec::new();
    // Idempotency-Key: 1 to 255 visible ASCII characters.
    let long = "k".repeat(256);
    for (what, v) in [
        ("empty", ""),
        ("a space", " "),
        ("inner space", "has space"),
        ("tab", "tab\tinside"),
        ("256 characters", long.as_str()),
    ] {
        for (method, q) in [("PUT", ""), ("PUT", "?mode=sync"), ("DELETE", "")] {
            cases.push(
                Case::new(
                    format!("Idempotency-Key {what}"),
                    method,
                    format!("{obj}{q}"),
                )
                .header("Idempotency-Key", v)
                .expect(Expect::Error(400, "invalid_header")),
            );
        }
    }
    // Metadata: custom over the budget any key leaves (8192 bytes less the
    // pipeline's own entries: at most 8049 bytes, for a 1-byte key),
    // reserved or empty names, long HTTP metadata.
    let big = "v".repeat(8050 - 3);
    let many: Vec<(String, String)> = (0..10)
        .map(|i| (format!("X-Meta-m{i}"), "w".repeat(800)))
        .collect();
    let long_value = "x".repeat(1025);
    let mut meta_cases: Vec<(String, Vec<(String, String)>)> = vec![
        (
            "custom metadata of 8050 bytes".into(),
            vec![("X-Meta-big".into(), big)],
        ),
        ("ten custom values of 800 bytes".into(), many),
        (
            "empty custom name".into(),
            vec![("X-Meta-".into(), "v".into())],
        ),
    ];
    for reserved in ["upload-id", "Accepted-At", "COMMITTED-AT"] {
        meta_cases.push((
            format!("reserved custom name {reserved}"),
            vec![(format!("X-Meta-{reserved}"), "forged".into())],
        ));
    }
    for h in [
        "Content-Type",
        "Content-Encoding",
        "Content-Language",
        "Content-Disposition",
        "Cache-Control",
    ] {
        meta_cases.push((
            format!("{h} of 1025 bytes"),
            vec![(h.into(), long_value.clone())],
        ));
    }
    for (what, headers) in &meta_cases {
        for q in ["", "?mode=sync"] {
            let mut c = Case::new(what.clone(), "PUT", format!("{obj}{q}"))
                .expect(Expect::Error(400, "invalid_header"));
            for (n, v) in headers {
                c = c.header(n, v);
            }
            cases.push(c);
        }
    }
    // Query parameters of writes, reads, listings and statuses.
    for q in [
        "mode=fast",
        "mode=",
        "mode=SYNC",
        "mode=sync2",
        "foo=1",
        "mode=sync&foo=1",
        "token=test-token",
    ] {
        for method in ["PUT", "DELETE"] {
            cases.push(
                Case::new(format!("write ?{q}"), method, format!("{obj}?{q}"))
                    .expect(Expect::Error(400, "invalid_parameter")),
            );
        }
    }
    for q in ["consistency=strong", "consistency=", "consistency=LATEST"] {
        cases.push(
            Case::new(format!("read ?{q}"), "GET", format!("{obj}?{q}"))
                .expect(Expect::Error(400, "invalid_parameter")),
        );
    }
    for q in [
        "limit=0",
        "limit=1001",
        "limit=abc",
        "limit=-1",
        "limit=1.5",
        "limit=",
    ] {
        cases.push(
            Case::new(format!("list ?{q}"), "GET", format!("/objects?{q}"))
                .expect(Expect::Error(400, "invalid_parameter")),
        );
    }
    for q in [
        "wait=31",
        "wait=abc",
        "wait=-1",
        "wait=1.5",
        "wait=",
        "wait=99999999999",
        "foo=1",
    ] {
        cases.push(
            Case::new(
                format!("status ?{q}"),
                "GET",
                format!("/uploads/{}?{q}", world.id),
            )
            .expect(Expect::Error(400, "invalid_parameter")),
        );
    }
    // Range: malformed or multiple ranges are ignored (200, whole object);
    // a range past the end is 416.
    let size = FIXTURE_BODY.len();
    for r in [
        "bytes=abc",
        "bytes=5-2",
        "bytes=0-1,3-4",
        "items=0-1",
        "bytes=",
        "bytes=-",
        "bytes=--1",
        "bytes=1-2-3",
        "bytes=99999999999999999999-",
        "bytes 0-1",
        "=0-1",
    ] {
        cases.push(
            Case::new(format!("Range {r}"), "GET", obj.clone())
                .header("Range", r)
                .expect(Expect::Fixture),
        );
    }
    for r in [
        format!("bytes={size}-"),
        format!("bytes={}-{}", size + 10, size + 20),
        "bytes=-0".to_owned(),
        "bytes=18446744073709551615-".to_owned(),
    ] {
        cases.push(
            Case::new(format!("Range {r}"), "GET", obj.clone())
                .header("Range", &r)
                .expect(Expect::Unsatisfiable),
        );
    }
    // Conditional headers with dates or tags that do not parse are ignored.
    for (h, v) in [
        ("If-Modified-Since", "yesterday"),
        ("If-Modified-Since", "Mon, 32 Foo 2020 99:99:99 GMT"),
        ("If-Modified-Since", ""),
        ("If-Unmodified-Since", "garbage"),
        ("If-Unmodified-Since", "2020-01-01T00:00:00Z"),
        ("If-None-Match", "no-quotes"),
        ("If-None-Match", "\"unterminated"),
        ("If-Range", "garbage"),
    ] {
        cases.push(
            Case::new(format!("{h}: {v:?}"), "GET", obj.clone())
                .header(h, v)
                .expect(Expect::Fixture),
        );
    }
    let mut c = Case::new("If-Range garbage with a Range", "GET", obj.clone())
        .header("If-Range", "garbage")
        .header("Range", "bytes=0-1");
    c.expect = Expect::Fixture;
    cases.push(c);
    run_table("headers and parameters", &cases);
}

#[test]
fn bad_bodies_and_counter_input_are_refused_and_change_nothing() {
    let _g = lock();
    let world = world();
    let obj = format!("/objects/{}", encode_key(&world.key));
    let mut cases = Vec::new();
    // Over MAX_UPLOAD_BYTES (128 KiB here), with a Content-Length.
    for (what, len) in [("1 byte over", MAX_UPLOAD + 1), ("1 MiB", 1 << 20)] {
        for q in ["", "?mode=sync"] {
            cases.push(
                Case::new(format!("body {what} the limit"), "PUT", format!("{obj}{q}"))
                    .body(Body::Bytes(vec![b'x'; len]))
                    .expect(Expect::Error(413, "payload_too_large")),
            );
        }
    }
    // Counter bodies.
    for body in [
        "nope",
        "{\"by\":\"x\"}",
        "{\"by\":1.5}",
        "{\"by\":1e2}",
        "{\"by\":9223372036854775808}",
        "{\"by\":-9223372036854775809}",
        "{\"by\":null}",
        "{\"by\":true}",
        "{\"by\":[1]}",
        "[1]",
        "3",
        "\"by\"",
        "{\"by\":",
        "{\"by\":1}{\"by\":2}",
        "{\"by\":1,}",
        "\u{feff}{\"by\":1}",
    ] {
        for action in ["increment", "decrement"] {
            cases.push(
                Case::new(
                    format!("counter body {body:?}"),
                    "POST",
                    format!("/counters/{COUNTER}/{action}"),
                )
                .header("Content-Type", "application/json")
                .body(Body::Bytes(body.as_bytes().to_vec()))
                .expect(Expect::Error(400, "invalid_body")),
            );
        }
    }
    for (action, by) in [
        ("increment", i64::MAX),
        ("decrement", i64::MIN),
        ("increment", i64::MAX - 4),
    ] {
        cases.push(
            Case::new(
                format!("counter {action} by {by}"),
                "POST",
                format!("/counters/{COUNTER}/{action}"),
            )
            .body(Body::Bytes(format!("{{\"by\":{by}}}").into_bytes()))
            .expect(Expect::Error(422, "counter_overflow")),
        );
    }
    // Counter names.
    let long = "n".repeat(257);
    for (what, name) in [
        ("empty", ""),
        ("257 bytes", long.as_str()),
        ("space", "a%20b"),
        ("é", "%C3%A9"),
        ("encoded slash", "a%2Fb"),
        ("NUL", "a%00"),
        ("plus", "a+b"),
        ("at sign", "a@b"),
    ] {
        for (method, action) in [
            ("GET", ""),
            ("POST", "/increment"),
            ("POST", "/decrement"),
            ("DELETE", ""),
        ] {
            cases.push(
                Case::new(
                    format!("counter name {what}"),
                    method,
                    format!("/counters/{name}{action}"),
                )
                .expect(Expect::Error(400, "invalid_name")),
            );
        }
    }
    run_table("bodies and counters", &cases);
}

/// An id this deployment did not issue, of the right shape: minted by a
/// worker with another `ID_SECRET` (same `API_TOKEN`), and by one with
/// another `API_TOKEN` and no `ID_SECRET`.
fn foreign_ids() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (what, opts) in [
        (
            "another ID_SECRET",
            WorkerOptions::new("bad-input-foreign").var("ID_SECRET", "another-id-secret"),
        ),
        (
            "another API_TOKEN",
            WorkerOptions::new("bad-input-foreign2").var("API_TOKEN", "another-token"),
        ),
    ] {
        let f = start(opts);
        let c = f.client();
        // The main worker's fixture key, so the claims would name a real key.
        let a = c
            .put_object(&world().key, b"foreign", &PutOptions::default())
            .unwrap();
        assert!(
            c.upload_status(&a.id, None).is_ok(),
            "{what}: own id unknown"
        );
        out.push((format!("foreign id ({what})"), a.id));
    }
    out
}

#[test]
fn malformed_foreign_and_altered_ids_are_404_upload_not_found() {
    let foreign = foreign_ids();
    let _g = lock();
    let world = world();
    let id = world.id.clone();
    let flip = |i: usize| {
        let mut b = id.clone().into_bytes();
        b[i] = if b[i] == b'A' { b'B' } else { b'A' };
        String::from_utf8(b).unwrap()
    };
    let mut ids: Vec<(String, String)> = vec![
        ("short".into(), "nope".into()),
        ("24 × A".into(), "A".repeat(24)),
        ("not base64url".into(), "a.b~c".into()),
        ("percent-encoded bytes".into(), "%FF%FE".into()),
        ("3000 characters".into(), "x".repeat(3000)),
        ("version byte 2".into(), format!("Ag{}", &id[2..])),
        ("first character changed".into(), flip(0)),
        ("a nonce character changed".into(), flip(5)),
        ("a sealed character changed".into(), flip(id.len() / 2)),
        ("last character changed".into(), flip(id.len() - 1)),
        ("one character more".into(), format!("{id}A")),
        ("one character less".into(), id[..id.len() - 1].to_owned()),
        ("two ids joined".into(), format!("{id}{id}")),
        ("padded".into(), format!("{id}==")),
    ];
    ids.extend(foreign);
    let mut cases = Vec::new();
    for (what, bad) in &ids {
        for q in ["", "?wait=5"] {
            cases.push(
                Case::new(format!("id: {what}"), "GET", format!("/uploads/{bad}{q}"))
                    .expect(Expect::Error(404, "upload_not_found")),
            );
        }
        cases.push(
            Case::new(format!("id: {what}"), "HEAD", format!("/uploads/{bad}"))
                .expect(Expect::Error(404, "upload_not_found")),
        );
    }
    let t = Instant::now();
    run_table("ids", &cases);
    // A refused id is refused at once, even with ?wait=.
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
    // The genuine id still answers.
    let st = world.w.client().upload_status(&id, None).unwrap();
    assert_eq!(st.state, UploadState::Committed);
    println!(
        "FIGURES bad-input ids: {} bad ids (2 foreign), 3 requests each",
        ids.len()
    );
}

#[test]
fn ids_expire_only_after_the_retention_window() {
    const TTL_MS: i64 = 2000;
    let w = start(WorkerOptions::new("bad-input-ttl").var("STATUS_TTL_SECONDS", "2"));
    let c = w.client();
    let key = unique_key("ttl");
    let (a, st) = put_committed(&c, &key, b"short-lived status", &PutOptions::default());
    let ended = e2e::ms(st.committed_at.as_deref().unwrap());
    // Poll until the status expires; it must answer 200 until the window
    // after its end has passed.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut answered = 0;
    let expired_at = {
        loop {
            let r = c.upload_status(&a.id, None);
            // The answer was made before this instant.
            let t = now_ms();
            match r {
                Ok(s) => {
                    assert_eq!(s.state, UploadState::Committed);
                    answered += 1;
                }
                Err(ClientError::Api {
                    status: 404, code, ..
                }) => {
                    assert_eq!(code, "upload_not_found");
                    break t;
                }
                Err(e) => panic!("status: {e}"),
            }
            assert!(Instant::now() < deadline, "the status never expired");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    assert!(
        expired_at >= ended + TTL_MS,
        "404 {} ms after the write ended, inside the {TTL_MS} ms window",
        expired_at - ended
    );
    // Once expired, it stays expired, with or without wait.
    let r = c
        .raw("GET", &format!("/uploads/{}?wait=2", a.id), &[], None)
        .unwrap();
    e2e::expect_raw_error(&r, 404, "upload_not_found", "expired id with ?wait=2");
    // The object itself is untouched by the pruning.
    let obj = c.get_object(&key, &GetOptions::default()).unwrap();
    assert_eq!(obj.meta("upload-id"), Some(a.id.as_str()));
    println!(
        "FIGURES bad-input expired id: 200 on {answered} polls, 404 upload_not_found {} ms \
         after the write ended (STATUS_TTL_SECONDS=2)",
        expired_at - ended
    );
}

#[test]
fn wrong_methods_are_405_with_allow_on_every_route() {
    let _g = lock();
    let world = world();
    let obj = format!("/objects/{}", encode_key(&world.key));
    let up = format!("/uploads/{}", world.id);
    let ctr = format!("/counters/{COUNTER}");
    const OBJ: &[&str] = &["GET", "HEAD", "PUT", "DELETE"];
    const READ: &[&str] = &["GET", "HEAD"];
    const CTR: &[&str] = &["GET", "HEAD", "DELETE"];
    const STEP: &[&str] = &["POST"];
    let mut table: Vec<(&'static str, String, &'static [&'static str])> = Vec::new();
    for m in ["POST", "PATCH", "TRACE", "REPORT"] {
        table.push((m, obj.clone(), OBJ));
    }
    for m in ["PUT", "POST", "DELETE", "PATCH"] {
        table.push((m, "/objects".into(), READ));
        table.push((m, up.clone(), READ));
        table.push((m, "/healthz".into(), READ));
        table.push((m, "/stats".into(), READ));
    }
    for m in ["PUT", "POST", "PATCH"] {
        table.push((m, ctr.clone(), CTR));
    }
    for m in ["GET", "HEAD", "PUT", "DELETE", "PATCH"] {
        table.push((m, format!("{ctr}/increment"), STEP));
        table.push((m, format!("{ctr}/decrement"), STEP));
    }
    // Methods the runtime passes through but no route serves.
    for m in [
        "PROPFIND", "MKCOL", "LOCK", "PURGE", "COPY", "MOVE", "SEARCH",
    ] {
        table.push((m, obj.clone(), OBJ));
        table.push((m, "/healthz".into(), READ));
        table.push((m, format!("{ctr}/increment"), STEP));
    }
    let cases: Vec<Case> = table
        .into_iter()
        .map(|(m, path, allowed)| {
            Case::new(format!("{m} on {path:.40}"), m, path).expect(Expect::NotAllowed(allowed))
        })
        .collect();
    run_table("methods", &cases);
}

#[test]
fn refused_uploads_are_411_or_413_and_leave_the_runtime_usable() {
    // A worker of its own: a refused upload that leaves the runtime stuck
    // must not take the other tables down with it.
    let w = start(
        WorkerOptions::new("bad-input-uploads").var("MAX_UPLOAD_BYTES", &MAX_UPLOAD.to_string()),
    );
    let key = unique_key("refused-uploads");
    let (a, _) = put_committed(&w.client(), &key, FIXTURE_BODY, &PutOptions::default());
    let before = w.client().stats().unwrap();
    let obj = format!("/objects/{}", encode_key(&key));
    // One client, so one kept-alive connection, for the uploads: each
    // refusal must leave it ready for the next request. Every request is
    // bounded, so a stuck runtime fails the test instead of hanging it.
    let bound = Duration::from_secs(15);
    let c = w.client().with_timeout(bound);
    let over = vec![b'x'; 2 << 20];
    let chunked_small = vec![b'x'; 70 * 1024];
    let chunked_big = vec![b'x'; 200 * 1024];
    let mut tried = 0;
    for q in ["", "?mode=sync"] {
        let path = format!("{obj}{q}");
        let uploads: [(&str, u16, &str, bool, &[u8]); 3] = [
            (
                "2 MiB with Content-Length, over the limit",
                413,
                "payload_too_large",
                false,
                &over,
            ),
            (
                "70 KiB chunked",
                411,
                "length_required",
                true,
                &chunked_small,
            ),
            (
                "200 KiB chunked, over the limit",
                411,
                "length_required",
                true,
                &chunked_big,
            ),
        ];
        for (what, status, code, chunked, body) in uploads {
            let what = format!("PUT{q} {what}");
            let r = if chunked {
                c.raw_chunked("PUT", &path, &[], body)
            } else {
                c.raw("PUT", &path, &[], Some(body))
            };
            let r = r.unwrap_or_else(|e| panic!("{what}: no answer: {e}"));
            e2e::expect_raw_error(&r, status, code, &what);
            c.healthz()
                .unwrap_or_else(|e| panic!("the next request on the connection after {what}: {e}"));
            let obj = w
                .client()
                .with_timeout(bound)
                .get_object(&key, &GetOptions::default())
                .unwrap_or_else(|e| panic!("a read of the key after {what}: {e}"));
            assert_eq!(obj.meta("upload-id"), Some(a.id.as_str()), "{what}");
            assert_eq!(obj.body, FIXTURE_BODY, "{what}");
            tried += 1;
        }
    }
    // A small body without a length is taken (buffered).
    let small = c
        .raw_chunked("PUT", &obj, &[], b"small chunked body")
        .unwrap();
    let small = common::accepted_of(&small, "small chunked PUT");
    let st = w
        .client()
        .wait_terminal(&small.id, Duration::from_secs(30))
        .unwrap();
    assert_eq!(st.state, UploadState::Committed, "{st:?}");
    let after = w.client().stats().unwrap();
    assert_eq!(
        (after.accepted, after.committed, after.failed),
        (before.accepted + 1, before.committed + 1, before.failed),
        "refused uploads reached the pipeline: {before:?} -> {after:?}"
    );
    println!(
        "FIGURES bad-input refused uploads: {tried} uploads refused with 411/413, each followed by a \
         request on the same connection and a read of the key"
    );
}
