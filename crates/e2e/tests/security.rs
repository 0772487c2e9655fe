//! Security: bearer auth on every state-changing route (no
//! token, wrong tokens, tokens anywhere but the `Authorization` header),
//! the internal `_pipeline/` prefix out of reach, upload ids that are
//! unguessable and reveal no key, CORS that never reflects an unlisted
//! origin, and error answers (and the Worker's log) that never echo a
//! secret.
//!
//! The worker here has distinctive secrets (`API_TOKEN`, `ID_SECRET`), so
//! any echo of them is found by a plain search. Its tests share it one at a
//! time ([`LOCK`]) so `/stats` can be compared exactly.

mod common;

use std::collections::{BTreeSet, HashSet};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use common::{delayed_put, json_lines, log_offset, log_since, staged};
use e2e::{expect_raw_error, put_committed, start, unique_key, LocalWorker, WorkerOptions};
use pipeline_client::{
    encode_key, Client, GetOptions, ListOptions, PutOptions, RawResponse, UploadState,
};

const TOKEN: &str = "Sekr1t-api-TOKEN-7f3a9c1e5d";
const ID_SECRET: &str = "Sekr1t-id-SECRET-4b2e8a6c0f";

fn worker() -> &'static LocalWorker {
    static W: OnceLock<LocalWorker> = OnceLock::new();
    W.get_or_init(|| {
        start(
            WorkerOptions::new("security")
                .var("API_TOKEN", TOKEN)
                .var("ID_SECRET", ID_SECRET)
                .log_level("log"),
        )
    })
}

static LOCK: Mutex<()> = Mutex::new(());

fn lock() -> MutexGuard<'static, ()> {
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Every substring of `secret` of 8 bytes or more appears nowhere in `text`.
fn leaks(text: &str, secret: &str) -> Option<String> {
    let t = text.to_ascii_lowercase();
    let s = secret.to_ascii_lowercase();
    (0..=s.len() - 8)
        .map(|i| &s[i..i + 8])
        .find(|w| t.contains(w))
        .map(str::to_owned)
}

/// Asserts an answer carries neither secret, in its body or its headers.
#[track_caller]
fn assert_no_secret(r: &RawResponse, what: &str) {
    let mut text = r.text();
    for (n, v) in r.headers.iter() {
        text.push_str(&format!("\n{n}: {v}"));
    }
    for secret in [TOKEN, ID_SECRET] {
        if let Some(part) = leaks(&text, secret) {
            panic!("{what}: the answer contains {part:?} of a secret:\n{text}");
        }
    }
}

/// Every state-changing request of the API (and the test-only routes of
/// this build, which need the token even to read), on `key` and `counter`.
fn state_changing(key: &str, counter: &str) -> Vec<(&'static str, String, Option<Vec<u8>>)> {
    let k = encode_key(key);
    vec![
        ("PUT", format!("/objects/{k}"), Some(b"evil".to_vec())),
        (
            "PUT",
            format!("/objects/{k}?mode=sync"),
            Some(b"evil".to_vec()),
        ),
        (
            "PUT",
            format!("/objects/{k}?mode=async"),
            Some(b"evil".to_vec()),
        ),
        ("DELETE", format!("/objects/{k}"), None),
        ("DELETE", format!("/objects/{k}?mode=sync"), None),
        (
            "POST",
            format!("/counters/{counter}/increment"),
            Some(br#"{"by":100}"#.to_vec()),
        ),
        (
            "POST",
            format!("/counters/{counter}/decrement"),
            Some(br#"{"by":100}"#.to_vec()),
        ),
        ("POST", format!("/counters/{counter}/increment"), None),
        ("DELETE", format!("/counters/{counter}"), None),
        (
            "PUT",
            format!("/_test/delayed/{k}?delay=1"),
            Some(b"evil".to_vec()),
        ),
        (
            "PUT",
            format!("/_test/duplicate/{k}?copies=2"),
            Some(b"evil".to_vec()),
        ),
        (
            "POST",
            format!("/_test/fail-writes/{k}"),
            Some(br#"{"count":5}"#.to_vec()),
        ),
        (
            "POST",
            "/_test/enqueue-raw".to_owned(),
            Some(b"poison".to_vec()),
        ),
        ("GET", "/_test/staged".to_owned(), None),
        ("POST", "/_bench/enqueue".to_owned(), Some(Vec::new())),
        ("PUT", format!("/_bench/direct/{k}"), Some(b"evil".to_vec())),
    ]
}

#[test]
fn every_state_changing_route_refuses_requests_without_the_bearer_token() {
    let _g = lock();
    let w = worker();
    let c = w.client();
    let key = unique_key("auth");
    let counter = "security-auth";
    let (fixture, _) = put_committed(&c, &key, b"original", &PutOptions::default());
    assert_eq!(c.increment(counter, Some(5)).unwrap().value, 5);
    // Earlier tests' sync writes and 429s reach /stats within a second.
    let before = e2e::stats_settled(&c);
    let anon = w.anon_client();
    let basic = format!("Basic {}", base64_std(format!("user:{TOKEN}").as_bytes()));
    let mut upper = TOKEN.to_ascii_uppercase();
    if upper == TOKEN {
        upper = TOKEN.to_ascii_lowercase();
    }
    let variants: Vec<(String, Vec<(String, String)>)> = vec![
        ("no Authorization".into(), vec![]),
        (
            "wrong token".into(),
            vec![("Authorization".into(), "Bearer wrong".into())],
        ),
        (
            "the token minus its last character".into(),
            vec![(
                "Authorization".into(),
                format!("Bearer {}", &TOKEN[..TOKEN.len() - 1]),
            )],
        ),
        (
            "the token plus a character".into(),
            vec![("Authorization".into(), format!("Bearer {TOKEN}x"))],
        ),
        (
            "the token in other case".into(),
            vec![("Authorization".into(), format!("Bearer {upper}"))],
        ),
        (
            "empty bearer".into(),
            vec![("Authorization".into(), "Bearer ".into())],
        ),
        (
            "scheme only".into(),
            vec![("Authorization".into(), "Bearer".into())],
        ),
        (
            "token without scheme".into(),
            vec![("Authorization".into(), TOKEN.into())],
        ),
        ("Basic scheme".into(), vec![("Authorization".into(), basic)]),
        (
            "Token scheme".into(),
            vec![("Authorization".into(), format!("Token {TOKEN}"))],
        ),
        (
            "tab instead of space".into(),
            vec![("Authorization".into(), format!("Bearer\t{TOKEN}"))],
        ),
        ("X-Api-Key".into(), vec![("X-Api-Key".into(), TOKEN.into())]),
        (
            "X-Auth-Token".into(),
            vec![("X-Auth-Token".into(), TOKEN.into())],
        ),
        (
            "cookie".into(),
            vec![("Cookie".into(), format!("token={TOKEN}; auth={TOKEN}"))],
        ),
        (
            "Proxy-Authorization".into(),
            vec![("Proxy-Authorization".into(), format!("Bearer {TOKEN}"))],
        ),
    ];
    let mut tried = 0;
    for (what, headers) in &variants {
        let hs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        for (method, path, body) in state_changing(&key, counter) {
            let r = anon.raw(method, &path, &hs, body.as_deref()).unwrap();
            let label = format!("{what}: {method} {path}");
            expect_raw_error(&r, 401, "unauthorized", &label);
            let www = r.headers.get("www-authenticate").unwrap_or("");
            assert!(
                www.to_ascii_lowercase().starts_with("bearer"),
                "{label}: WWW-Authenticate {www:?}"
            );
            assert_no_secret(&r, &label);
            tried += 1;
        }
    }
    // The token in the query string is not a credential.
    for q in [
        "token",
        "access_token",
        "api_key",
        "API_TOKEN",
        "auth",
        "bearer",
    ] {
        for (method, path, body) in state_changing(&key, counter) {
            let sep = if path.contains('?') { '&' } else { '?' };
            let path = format!("{path}{sep}{q}={TOKEN}");
            let r = anon.raw(method, &path, &[], body.as_deref()).unwrap();
            let label = format!("token in ?{q}: {method} {path}");
            assert!(
                matches!(r.status, 400 | 401),
                "{label}: not refused: {} {}",
                r.status,
                r.text()
            );
            assert_no_secret(&r, &label);
            tried += 1;
        }
    }
    // Nothing changed, also once anything wrongly queued was delivered
    // (a write behind it commits; the local queue is FIFO).
    let (barrier, _) = put_committed(
        &c,
        &unique_key("auth-barrier"),
        b"b",
        &PutOptions::default(),
    );
    let after = c.stats().unwrap();
    assert_eq!(
        (
            after.accepted,
            after.committed,
            after.r2_writes,
            after.failed,
            after.superseded
        ),
        (
            before.accepted + 1,
            before.committed + 1,
            before.r2_writes + 1,
            before.failed,
            before.superseded
        ),
        "refused requests reached the pipeline: {before:?} -> {after:?}"
    );
    assert_eq!(c.counter(counter).unwrap().value, 5);
    let obj = c.get_object(&key, &GetOptions::default()).unwrap();
    assert_eq!(obj.meta("upload-id"), Some(fixture.id.as_str()));
    assert_eq!(obj.body, b"original");
    assert!(c
        .upload_status(&barrier.id, None)
        .unwrap()
        .state
        .is_terminal());
    // The right token works.
    assert_eq!(c.increment(counter, None).unwrap().value, 6);
    println!(
        "FIGURES security auth: {tried} refused requests ({} credential variants and 6 query \
         names × {} routes); none changed an object, a counter or /stats",
        variants.len(),
        state_changing(&key, counter).len()
    );
}

/// Standard base64 with padding.
fn base64_std(bytes: &[u8]) -> String {
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

/// URL-safe base64 without padding, decoded; `None` for anything else.
fn base64url_decode(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        } as u32)
    };
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        if chunk.len() == 1 {
            return None;
        }
        let mut v = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            v |= val(c)? << (18 - 6 * i);
        }
        let n = chunk.len() - 1;
        for i in 0..n {
            out.push((v >> (16 - 8 * i)) as u8);
        }
    }
    Some(out)
}

#[test]
fn the_internal_prefix_cannot_be_read_listed_written_or_deleted() {
    let _g = lock();
    let w = worker();
    let c = w.client();
    // A large write delivered 6 s late: its body waits, staged under
    // `_pipeline/staging/`, for the whole test.
    let key = unique_key("internal");
    let body = common::marked_body("staged body", 100 * 1024, 7);
    let held = delayed_put(&c, &key, &body, 6);
    let staged_keys = staged(&c);
    assert!(!staged_keys.is_empty(), "nothing staged to attack");
    let mut tried = 0;
    let mut targets: Vec<String> = Vec::new();
    for s in &staged_keys {
        let rest = s
            .strip_prefix("_pipeline/")
            .expect("staged under _pipeline/");
        targets.push(s.clone());
        targets.push(format!("_pipeline%2F{}", rest.replace('/', "%2F")));
        targets.push(format!("%5Fpipeline/{rest}"));
        targets.push(format!("%5F%70ipeline/{rest}"));
    }
    targets.extend(["_pipeline/", "_pipeline", "_pipeline/staging/"].map(str::to_owned));
    for t in &targets {
        for (method, q, body) in [
            ("GET", "", None),
            ("HEAD", "", None),
            ("GET", "?consistency=latest", None),
            ("PUT", "", Some(&b"overwrite"[..])),
            ("PUT", "?mode=sync", Some(&b"overwrite"[..])),
            ("DELETE", "", None),
            ("DELETE", "?mode=sync", None),
        ] {
            let path = format!("/objects/{t}{q}");
            let r = c.raw(method, &path, &[], body).unwrap();
            if method == "HEAD" {
                assert_eq!(r.status, 400, "HEAD {path}");
            } else {
                expect_raw_error(&r, 400, "invalid_key", &format!("{method} {path}"));
            }
            assert!(
                !String::from_utf8_lossy(&r.body).contains("staged body"),
                "{method} {path}: staged bytes served"
            );
            tried += 1;
        }
    }
    // Listings never show the prefix: no prefix, the prefix itself, its
    // parts, with a delimiter, and page by page.
    let mut listed = 0;
    for (prefix, delimiter) in [
        (None, None),
        (None, Some("/")),
        (Some("_"), None),
        (Some("_"), Some("/")),
        (Some("_pipeline"), None),
        (Some("_pipeline/"), None),
        (Some("_pipeline/"), Some("/")),
        (Some("_pipeline/staging/"), None),
        (Some(staged_keys[0].as_str()), None),
    ] {
        for limit in [None, Some(1)] {
            let pages = c
                .list_all(&ListOptions {
                    prefix: prefix.map(str::to_owned),
                    delimiter: delimiter.map(str::to_owned),
                    cursor: None,
                    limit,
                })
                .unwrap();
            for p in &pages {
                for o in &p.objects {
                    assert!(!o.key.starts_with("_pipeline"), "listed {}", o.key);
                }
                for pre in &p.prefixes {
                    assert!(!pre.starts_with("_pipeline"), "listed prefix {pre}");
                }
                listed += 1;
            }
        }
    }
    // The staged body survived every attempt, and its write commits with it.
    assert_eq!(staged(&c), staged_keys, "a staged body was touched");
    let st = c.wait_terminal(held.id(), Duration::from_secs(30)).unwrap();
    assert_eq!(st.state, UploadState::Committed, "{st:?}");
    assert_eq!(
        c.get_object(&key, &GetOptions::default()).unwrap().body,
        body
    );
    let left = common::wait_staged(&c, 0, Duration::from_secs(15));
    assert!(left.is_empty(), "{left:?}");
    println!(
        "FIGURES security internal prefix: {tried} reads/writes/deletes of {} staged key \
         spellings refused with 400 invalid_key; {listed} listing pages without _pipeline/; \
         the staged body was intact and committed",
        targets.len()
    );
}

#[test]
fn upload_ids_are_unguessable_and_reveal_no_key() {
    let _g = lock();
    let w = worker();
    let c = w.client();
    let keys = [
        format!(
            "{}/customer-alice-smith/passport-scan.pdf",
            unique_key("ids")
        ),
        format!("{}/é-ünïcødé-名前/ファイル.txt", unique_key("ids")),
        format!("{}/{}", unique_key("ids"), "k".repeat(900)),
    ];
    let mut ids: Vec<(String, String)> = Vec::new();
    for key in &keys {
        for i in 0..70 {
            // The same key and body every time: only randomness tells ids apart.
            let a = if i % 10 == 9 {
                c.delete_object(key).unwrap()
            } else {
                c.put_object(key, b"same body", &PutOptions::default())
                    .unwrap()
            };
            ids.push((key.clone(), a.id));
        }
    }
    let mut nonces = HashSet::new();
    let mut nonce_bytes = BTreeSet::new();
    for (key, id) in &ids {
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "id not URL-safe: {id}"
        );
        let raw = base64url_decode(id).unwrap_or_else(|| panic!("id not base64url: {id}"));
        // Version byte, 12-byte nonce, then the sealed claims and tag.
        assert!(raw.len() >= 1 + 12 + 16, "{id}");
        let nonce = raw[1..13].to_vec();
        nonce_bytes.extend(nonce.iter().copied());
        assert!(nonces.insert(nonce), "two ids share a nonce");
        // No piece of the key of 6 bytes or more in the id's bytes (the id
        // is exactly their base64url), nor a path segment in its text.
        for win in key.as_bytes().windows(6) {
            assert!(
                !raw.windows(6).any(|r| r == win),
                "id of {key:.60} holds key bytes {:?}",
                String::from_utf8_lossy(win)
            );
        }
        for seg in key.split('/').filter(|s| s.len() >= 6) {
            assert!(!id.contains(seg), "id {id} shows {seg}");
        }
    }
    assert_eq!(nonces.len(), ids.len());
    // 96 random bits per id: 2520 nonce bytes cover nearly every byte value.
    assert!(
        nonce_bytes.len() > 200,
        "nonce bytes use {} values",
        nonce_bytes.len()
    );
    // The status answers only for the real id, to a reader: with private
    // reads (another worker, below) an anonymous reader learns nothing.
    for (_, id) in ids.iter().take(5) {
        assert!(c.upload_status(id, None).is_ok());
    }
    // Let the writes end before the next test compares /stats.
    let all: Vec<String> = ids.iter().map(|(_, id)| id.clone()).collect();
    let (_, late) = e2e::wait_all(
        &c,
        &all,
        std::time::Instant::now() + Duration::from_secs(60),
        8,
    );
    assert!(late.is_empty(), "{late:?}");
    let lens: Vec<usize> = ids.iter().map(|(_, id)| id.len()).collect();
    println!(
        "FIGURES security ids: {} ids of 3 keys ({:?} bytes), all distinct nonces, no \
         6-byte piece of a key in any id; id lengths {}..{} characters",
        ids.len(),
        keys.iter().map(String::len).collect::<Vec<_>>(),
        lens.iter().min().unwrap(),
        lens.iter().max().unwrap()
    );
}

/// A worker with an origin list and private reads.
fn private_worker() -> &'static LocalWorker {
    static W: OnceLock<LocalWorker> = OnceLock::new();
    W.get_or_init(|| {
        start(
            WorkerOptions::new("security-cors")
                .var("API_TOKEN", TOKEN)
                .var("ID_SECRET", ID_SECRET)
                .var(
                    "ALLOWED_ORIGINS",
                    "https://app.example, https://admin.example:8443",
                )
                .var("PUBLIC_READS", "false"),
        )
    })
}

#[test]
fn cors_never_reflects_an_unlisted_origin() {
    let w = private_worker();
    let c = w.client();
    let anon = w.anon_client();
    let key = unique_key("cors");
    let (a, _) = put_committed(&c, &key, b"cors", &PutOptions::default());
    let k = encode_key(&key);
    let listed = ["https://app.example", "https://admin.example:8443"];
    let evil = [
        "https://evil.example",
        "https://app.example.evil.example",
        "https://evilapp.example",
        "http://app.example",
        "https://app.example:443",
        "https://app.example:8443",
        "https://admin.example",
        "https://APP.EXAMPLE",
        "https://app.example/",
        "https://app.example/path",
        "https://app.example, https://evil.example",
        "https://evil.example, https://app.example",
        "null",
        "*",
        "",
        "file://",
    ];
    let routes: Vec<(&Client, &str, String, Option<&[u8]>)> = vec![
        (&anon, "GET", "/healthz".into(), None),
        (&c, "GET", "/stats".into(), None),
        (&anon, "GET", "/stats".into(), None),
        (&c, "GET", format!("/objects/{k}"), None),
        (&c, "HEAD", format!("/objects/{k}"), None),
        (&c, "GET", "/objects?prefix=e2e/".into(), None),
        (&c, "GET", format!("/uploads/{}", a.id), None),
        (&c, "GET", "/counters/cors".into(), None),
        (&c, "PUT", format!("/objects/{k}"), Some(b"x")),
        (&anon, "PUT", format!("/objects/{k}"), Some(b"x")),
        (&c, "GET", "/objects/_pipeline/x".into(), None),
        (&c, "GET", "/nope".into(), None),
        (&c, "POST", "/healthz".into(), Some(b"")),
        (&anon, "OPTIONS", format!("/objects/{k}"), None),
        (&anon, "OPTIONS", "/nope".into(), None),
    ];
    let mut checked = 0;
    for origin in evil {
        for (client, method, path, body) in &routes {
            let r = client
                .raw(
                    method,
                    path,
                    &[("Origin", origin), ("Access-Control-Request-Method", "PUT")],
                    *body,
                )
                .unwrap();
            let acao = r.headers.get("access-control-allow-origin");
            assert!(
                acao.is_none_or(|v| listed.contains(&v) && v != origin),
                "{method} {path} from {origin:?}: Access-Control-Allow-Origin {acao:?}"
            );
            assert_ne!(
                r.headers.get("access-control-allow-credentials"),
                Some("true"),
                "{method} {path} from {origin:?}"
            );
            checked += 1;
        }
    }
    for origin in listed {
        for (client, method, path, body) in &routes {
            let r = client
                .raw(method, path, &[("Origin", origin)], *body)
                .unwrap();
            assert_eq!(
                r.headers.get("access-control-allow-origin"),
                Some(origin),
                "{method} {path} from the listed {origin}"
            );
            let vary = e2e::header_tokens(r.headers.get("vary").unwrap_or(""));
            assert!(
                vary.contains(&"origin".to_owned()),
                "{method} {path}: Vary {vary:?}"
            );
            checked += 1;
        }
    }
    // Private reads: an anonymous reader learns nothing about an upload.
    for path in [
        format!("/uploads/{}", a.id),
        format!("/uploads/{}?wait=1", a.id),
    ] {
        let r = anon.raw("GET", &path, &[], None).unwrap();
        expect_raw_error(&r, 401, "unauthorized", &format!("anonymous GET {path}"));
        assert!(!r.text().contains(&key), "the 401 names the key");
    }
    println!(
        "FIGURES security cors: {checked} answers ({} unlisted origins and 2 listed ones × {} \
         routes); no unlisted origin reflected",
        evil.len(),
        routes.len()
    );
}

/// A request to send: client, method, path, headers, body.
type Request<'a> = (
    &'a Client,
    &'a str,
    String,
    Vec<(&'a str, &'a str)>,
    Option<Vec<u8>>,
);

#[test]
fn errors_and_logs_never_echo_a_secret() {
    let _g = lock();
    let w = worker();
    let c = w.client();
    let offset = log_offset(w);
    let key = unique_key("secrets");
    let k = encode_key(&key);
    let (a, _) = put_committed(&c, &key, b"secret-free", &PutOptions::default());
    let anon = w.anon_client();
    let half = &TOKEN[..TOKEN.len() / 2];
    let with_half = c.with_token(Some(half));
    let long_meta = "m".repeat(8000);
    let requests: Vec<Request> = vec![
        (
            &anon,
            "PUT",
            format!("/objects/{k}"),
            vec![],
            Some(b"x".to_vec()),
        ),
        (
            &with_half,
            "PUT",
            format!("/objects/{k}"),
            vec![],
            Some(b"x".to_vec()),
        ),
        (
            &c,
            "PUT",
            format!("/objects/{k}?token={TOKEN}"),
            vec![],
            Some(b"x".to_vec()),
        ),
        (
            &c,
            "PUT",
            format!("/objects/{k}?mode={TOKEN}"),
            vec![],
            Some(b"x".to_vec()),
        ),
        (
            &c,
            "PUT",
            format!("/objects/{TOKEN}%00"),
            vec![],
            Some(b"x".to_vec()),
        ),
        (
            &c,
            "PUT",
            format!("/objects/{k}"),
            vec![("Idempotency-Key", "has space")],
            Some(b"x".to_vec()),
        ),
        (
            &c,
            "PUT",
            format!("/objects/{k}"),
            vec![("X-Meta-big", long_meta.as_str())],
            Some(b"x".to_vec()),
        ),
        (
            &c,
            "PUT",
            format!("/objects/{k}"),
            vec![("X-Meta-upload-id", TOKEN)],
            Some(b"x".to_vec()),
        ),
        (
            &c,
            "PUT",
            format!("/objects/{k}?mode=sync"),
            vec![],
            Some(b"x".to_vec()),
        ),
        (
            &c,
            "GET",
            format!("/objects/{k}"),
            vec![("Range", "bytes=999-")],
            None,
        ),
        (
            &c,
            "GET",
            format!("/objects/{k}"),
            vec![("If-Match", "\"nope\"")],
            None,
        ),
        (&c, "GET", format!("/objects/{k}-missing"), vec![], None),
        (
            &c,
            "GET",
            format!("/objects/{k}?consistency={TOKEN}"),
            vec![],
            None,
        ),
        (&c, "GET", format!("/uploads/{TOKEN}"), vec![], None),
        (&c, "GET", format!("/uploads/{ID_SECRET}"), vec![], None),
        (
            &c,
            "GET",
            format!("/uploads/{}?wait={TOKEN}", a.id),
            vec![],
            None,
        ),
        (&c, "GET", format!("/objects?limit={TOKEN}"), vec![], None),
        (
            &c,
            "POST",
            "/counters/secret/increment".into(),
            vec![],
            Some(format!("{{\"by\":\"{TOKEN}\"}}").into_bytes()),
        ),
        (
            &c,
            "POST",
            format!("/counters/{TOKEN}!/increment"),
            vec![],
            None,
        ),
        (
            &c,
            "POST",
            "/counters/secret/increment".into(),
            vec![],
            Some(format!("{{\"by\":{}}}", i64::MAX).into_bytes()),
        ),
        (
            &c,
            "POST",
            "/counters/secret/increment".into(),
            vec![],
            Some(b"1".to_vec()),
        ),
        (&c, "PATCH", format!("/objects/{k}"), vec![], None),
        (&c, "GET", format!("/{TOKEN}"), vec![], None),
        (
            &c,
            "POST",
            "/_test/fail-writes/secret".into(),
            vec![],
            Some(b"not json".to_vec()),
        ),
        (&c, "GET", format!("/uploads/{}", a.id), vec![], None),
        (
            &c,
            "PUT",
            format!("/objects/{k}"),
            vec![],
            Some(b"ok".to_vec()),
        ),
    ];
    let mut errors = 0;
    for (client, method, path, headers, body) in &requests {
        let r = client.raw(method, path, headers, body.as_deref()).unwrap();
        let label = format!("{method} {path:.60}");
        // Not even what the request itself carried comes back: error
        // messages quote no value the client sent.
        assert_no_secret(&r, &label);
        if r.status >= 400 {
            assert!(r.error_code().is_some(), "{label}: {}", r.text());
            errors += 1;
        }
    }
    // The Worker's own log lines (request log, consumer, scheduler): no
    // secret, except in a request's `path`, which the client chose.
    let log = log_since(w, offset);
    let mut lines = 0;
    for l in log.lines().filter(|l| l.starts_with('{')) {
        let mut v: serde_json::Value = serde_json::from_str(l).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.remove("path");
        }
        let text = v.to_string();
        for secret in [TOKEN, ID_SECRET] {
            assert!(
                leaks(&text, secret).is_none(),
                "a log line holds a secret: {l}"
            );
        }
        lines += 1;
    }
    assert!(lines > 0, "no log lines to check (log level)");
    let consumer_lines = json_lines(&log, "consumer.batch").len();
    println!(
        "FIGURES security secrets: {} requests ({errors} errors) and {lines} log lines \
         ({consumer_lines} of the consumer): no 8-byte piece of API_TOKEN or ID_SECRET \
         in any answer, nor in a log line outside a request's path",
        requests.len(),
    );
}

/// A credential-looking value a client might paste into the wrong place.
const PASTED: &str = "sk-live-Pa5ted-9d41c7e2b8";

/// Sends `head` (request line and headers, without the final blank line)
/// over a plain socket, for header values an HTTP client library refuses to
/// send (control characters). Returns the status and the whole raw answer.
fn raw_socket(w: &LocalWorker, head: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let addr = w.base_url().trim_start_matches("http://").to_owned();
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let request = format!(
        "{head}\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx"
    );
    s.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, answer)
}

/// One request of [`error_answers_never_quote_what_the_client_sent`]: what,
/// method, path, headers, body, and the status it must get.
type Pasted = (
    &'static str,
    &'static str,
    String,
    Vec<(String, String)>,
    Option<Vec<u8>>,
    u16,
);

#[test]
fn error_answers_never_quote_what_the_client_sent() {
    let _g = lock();
    let w = worker();
    let c = w.client();
    let key = unique_key("pasted");
    let (a, _) = put_committed(&c, &key, b"0123456789", &PutOptions::default());
    let obj = format!("/objects/{}", encode_key(&key));
    let h = |n: &str, v: &str| vec![(n.to_owned(), v.to_owned())];
    let body = || Some(b"x".to_vec());
    let big = format!("{PASTED}{}", "v".repeat(8200));
    let long_http = format!("{PASTED}{}", "t".repeat(1025));
    let spaced = format!("{PASTED} and more");
    let quoted = format!("\"{PASTED}\"");
    let cases: Vec<Pasted> = vec![
        // The pasted value as a query parameter's value...
        (
            "mode value",
            "PUT",
            format!("{obj}?mode={PASTED}"),
            vec![],
            body(),
            400,
        ),
        (
            "mode value, sync first",
            "PUT",
            format!("{obj}?mode=sync&mode={PASTED}"),
            vec![],
            body(),
            400,
        ),
        (
            "mode value on DELETE",
            "DELETE",
            format!("{obj}?mode={PASTED}"),
            vec![],
            None,
            400,
        ),
        (
            "consistency value",
            "GET",
            format!("{obj}?consistency={PASTED}"),
            vec![],
            None,
            400,
        ),
        (
            "wait value",
            "GET",
            format!("/uploads/{}?wait={PASTED}", a.id),
            vec![],
            None,
            400,
        ),
        (
            "limit value",
            "GET",
            format!("/objects?limit={PASTED}"),
            vec![],
            None,
            400,
        ),
        (
            "prefix value",
            "GET",
            format!("/objects?prefix={PASTED}%01"),
            vec![],
            None,
            400,
        ),
        // ... and as a query parameter's name.
        (
            "name on PUT",
            "PUT",
            format!("{obj}?{PASTED}=1"),
            vec![],
            body(),
            400,
        ),
        (
            "name after mode",
            "PUT",
            format!("{obj}?mode=sync&{PASTED}"),
            vec![],
            body(),
            400,
        ),
        (
            "name on DELETE",
            "DELETE",
            format!("{obj}?{PASTED}=x"),
            vec![],
            None,
            400,
        ),
        (
            "name on a status",
            "GET",
            format!("/uploads/{}?{PASTED}=1", a.id),
            vec![],
            None,
            400,
        ),
        // In headers that lead to a 400.
        (
            "X-Meta name, too much metadata",
            "PUT",
            obj.clone(),
            h(&format!("X-Meta-{PASTED}"), &big),
            body(),
            400,
        ),
        (
            "X-Meta value, too much metadata",
            "PUT",
            format!("{obj}?mode=sync"),
            h("X-Meta-note", &big),
            body(),
            400,
        ),
        (
            "X-Meta value of a reserved name",
            "PUT",
            obj.clone(),
            h("X-Meta-upload-id", PASTED),
            body(),
            400,
        ),
        (
            "Content-Type over 1024 bytes",
            "PUT",
            obj.clone(),
            h("Content-Type", &long_http),
            body(),
            400,
        ),
        (
            "Idempotency-Key",
            "PUT",
            obj.clone(),
            h("Idempotency-Key", &spaced),
            body(),
            400,
        ),
        (
            "Idempotency-Key, sync",
            "PUT",
            format!("{obj}?mode=sync"),
            h("Idempotency-Key", &spaced),
            body(),
            400,
        ),
        (
            "Idempotency-Key on DELETE",
            "DELETE",
            obj.clone(),
            h("Idempotency-Key", &spaced),
            None,
            400,
        ),
        // Headers that never lead to a 400 are not quoted either.
        (
            "Range",
            "GET",
            obj.clone(),
            h("Range", &format!("bytes={PASTED}")),
            None,
            200,
        ),
        (
            "If-Match",
            "GET",
            obj.clone(),
            h("If-Match", &quoted),
            None,
            412,
        ),
        (
            "If-None-Match",
            "GET",
            obj.clone(),
            h("If-None-Match", &quoted),
            None,
            200,
        ),
        (
            "bearer token",
            "PUT",
            obj.clone(),
            h("Authorization", &format!("Bearer {PASTED}")),
            body(),
            401,
        ),
        // In the path and the body.
        (
            "key",
            "GET",
            format!("/objects/{PASTED}%00"),
            vec![],
            None,
            400,
        ),
        (
            "reserved key",
            "PUT",
            format!("/objects/_pipeline/{PASTED}"),
            vec![],
            body(),
            400,
        ),
        (
            "unknown path",
            "GET",
            format!("/{PASTED}"),
            vec![],
            None,
            404,
        ),
        (
            "unknown counter action",
            "POST",
            format!("/counters/c/{PASTED}"),
            vec![],
            None,
            404,
        ),
        (
            "counter name",
            "POST",
            format!("/counters/{PASTED}!/increment"),
            vec![],
            None,
            400,
        ),
        (
            "counter body",
            "POST",
            "/counters/c/increment".into(),
            vec![],
            Some(format!("{{\"by\":\"{PASTED}\"}}").into_bytes()),
            400,
        ),
        (
            "counter body not JSON",
            "POST",
            "/counters/c/increment".into(),
            vec![],
            Some(PASTED.as_bytes().to_vec()),
            400,
        ),
        (
            "upload id",
            "GET",
            format!("/uploads/{PASTED}"),
            vec![],
            None,
            404,
        ),
    ];
    let anon = w.anon_client();
    for (what, method, path, headers, body, status) in &cases {
        let client = if headers.iter().any(|(n, _)| n == "Authorization") {
            &anon
        } else {
            &c
        };
        let hs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let r = client.raw(method, path, &hs, body.as_deref()).unwrap();
        assert_eq!(
            r.status,
            *status,
            "{what}: {method} {path:.80}: {}",
            r.text()
        );
        let mut answer = r.text();
        for (n, v) in r.headers.iter() {
            answer.push_str(&format!("\n{n}: {v}"));
        }
        assert!(
            !answer
                .to_ascii_lowercase()
                .contains(&PASTED.to_ascii_lowercase()),
            "{what}: {method} {path:.80}: the answer quotes the request:\n{answer}"
        );
    }
    // Header values with control characters, under header names the client
    // chose: sent over a plain socket, as no HTTP library sends them.
    let k = encode_key(&key);
    let mut refused = 0;
    for head in [
        format!("PUT /objects/{k} HTTP/1.1\r\nX-Meta-{PASTED}: a\u{1}b"),
        format!("PUT /objects/{k}?mode=sync HTTP/1.1\r\nX-Meta-{PASTED}: a\u{7f}b"),
        format!("PUT /objects/{k} HTTP/1.1\r\nContent-Type: {PASTED}\u{1}"),
    ] {
        let (status, answer) = raw_socket(w, &head);
        assert!(
            !answer
                .to_ascii_lowercase()
                .contains(&PASTED.to_ascii_lowercase()),
            "{head:?}: the answer quotes the request:\n{answer}"
        );
        assert!(
            status == 400 && answer.contains("\"invalid_header\""),
            "{head:?}: HTTP {status}\n{answer}"
        );
        refused += 1;
    }
    // Nothing above was written.
    let obj_now = c.get_object(&key, &GetOptions::default()).unwrap();
    assert_eq!(obj_now.body, b"0123456789");
    println!(
        "FIGURES security pasted values: {} requests and {refused} raw ones carried a pasted \
         value in a parameter value or name, a header, the path or the body; no answer quoted it",
        cases.len()
    );
}
