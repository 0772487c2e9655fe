//! Routing, bearer auth, CORS and `PUBLIC_READS` (`docs/API.md`
//! "Authentication", "Operations", "CORS, routing and headers on every
//! response").
//!
//! Most tests share one worker. The auth tests that must show "nothing
//! changed" through exact `/stats`, and the ones that need other variables
//! (no token, an empty token, an origin list, private reads), start their own
//! worker; [`ISOLATED`] keeps at most one of those running at a time.

use std::sync::Mutex;

use e2e::{expect_raw_error, header_tokens, shared, start, unique_key, LocalWorker, WorkerOptions};
use pipeline_client::{Client, GetOptions, PutOptions, RawResponse};

/// At most one extra worker at a time (2 cores).
static ISOLATED: Mutex<()> = Mutex::new(());

fn isolated(opts: WorkerOptions) -> (std::sync::MutexGuard<'static, ()>, LocalWorker) {
    let guard = ISOLATED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    (guard, start(opts))
}

#[track_caller]
fn expect_unauthorized(resp: &RawResponse, what: &str) {
    expect_raw_error(resp, 401, "unauthorized", what);
    let www = resp.headers.get("www-authenticate").unwrap_or("");
    assert!(
        www.trim().to_ascii_lowercase().starts_with("bearer"),
        "{what}: 401 without `WWW-Authenticate: Bearer` (got {www:?})"
    );
}

/// Every state-changing request of the API, on `key` and counter `counter`.
fn state_changing_requests(
    key: &str,
    counter: &str,
) -> Vec<(&'static str, String, Option<Vec<u8>>)> {
    let k = pipeline_client::encode_key(key);
    vec![
        ("PUT", format!("/objects/{k}"), Some(b"evil".to_vec())),
        (
            "PUT",
            format!("/objects/{k}?mode=sync"),
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
    ]
}

#[test]
fn healthz_answers_ok_json() {
    let c = shared().anon_client();
    let r = c.raw("GET", "/healthz", &[], None).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json().unwrap(), serde_json::json!({"ok": true}));
    let ct = r.headers.get("content-type").unwrap_or("");
    assert!(ct.starts_with("application/json"), "Content-Type {ct:?}");
    c.healthz().unwrap();
}

#[test]
fn unknown_paths_are_404_not_found() {
    let c = shared().client();
    for (method, path) in [
        ("GET", "/"),
        ("GET", "/nope"),
        ("GET", "/healthz/extra"),
        ("GET", "/objectsx/a"),
        ("GET", "/v1/objects/a"),
        ("PUT", "/nope"),
        ("POST", "/nope/deeper"),
        ("DELETE", "/stat"),
    ] {
        let r = c.raw(method, path, &[], Some(b"")).unwrap();
        expect_raw_error(&r, 404, "not_found", &format!("{method} {path}"));
        assert!(
            r.headers
                .get("content-type")
                .unwrap_or("")
                .starts_with("application/json"),
            "{method} {path}: error body is not JSON-typed"
        );
    }
}

#[test]
fn wrong_method_is_405_with_allow() {
    let c = shared().client();
    let key = unique_key("routing");
    let obj = format!("/objects/{key}");
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        ("POST", "/healthz".into(), vec!["GET"]),
        ("DELETE", "/healthz".into(), vec!["GET"]),
        ("PUT", "/stats".into(), vec!["GET"]),
        ("POST", "/stats".into(), vec!["GET"]),
        ("POST", obj.clone(), vec!["GET", "HEAD", "PUT", "DELETE"]),
        ("PATCH", obj, vec!["GET", "HEAD", "PUT", "DELETE"]),
        ("DELETE", "/uploads/some-id".into(), vec!["GET"]),
        ("POST", "/uploads/some-id".into(), vec!["GET"]),
        ("GET", "/counters/c/increment".into(), vec!["POST"]),
        ("GET", "/counters/c/decrement".into(), vec!["POST"]),
        ("PUT", "/counters/c".into(), vec!["GET", "DELETE"]),
        ("POST", "/counters/c".into(), vec!["GET", "DELETE"]),
        ("POST", "/objects".into(), vec!["GET"]),
    ];
    for (method, path, allowed) in cases {
        let r = c.raw(method, &path, &[], Some(b"")).unwrap();
        expect_raw_error(&r, 405, "method_not_allowed", &format!("{method} {path}"));
        let allow = header_tokens(r.headers.get("allow").unwrap_or(""));
        for m in allowed {
            assert!(
                allow.contains(&m.to_ascii_lowercase()),
                "{method} {path}: Allow {allow:?} lacks {m}"
            );
        }
        assert!(
            !allow.contains(&method.to_ascii_lowercase()),
            "{method} {path}: Allow {allow:?} names the refused method"
        );
    }
}

/// What is tried, with which client, and which extra headers.
type Attempt<'a> = (&'a str, &'a Client, Vec<(&'a str, &'a str)>);

#[test]
fn missing_or_wrong_token_is_401_and_changes_nothing() {
    let (_g, w) = isolated(WorkerOptions::new("auth"));
    let c = w.client();
    let key = unique_key("auth");
    let counter = "auth-counter";
    // Known state: one committed object and a counter at 5.
    c.put_object_sync(&key, b"original", &PutOptions::default())
        .expect("setting up the object");
    assert_eq!(c.increment(counter, Some(5)).unwrap().value, 5);
    let before = c.stats().unwrap();

    let anon = w.anon_client();
    let wrong = c.with_token(Some("test-token-but-wrong"));
    let prefix = c.with_token(Some("test-"));
    let dev = c.with_token(Some("dev-token"));
    let tests: Vec<Attempt> = vec![
        ("no Authorization", &anon, vec![]),
        ("wrong token", &wrong, vec![]),
        ("prefix of the token", &prefix, vec![]),
        ("empty bearer", &anon, vec![("Authorization", "Bearer ")]),
        (
            "Basic scheme",
            &anon,
            vec![("Authorization", "Basic dGVzdC10b2tlbg==")],
        ),
        (
            "token without scheme",
            &anon,
            vec![("Authorization", "test-token")],
        ),
        // The Worker under the harness must not take the dev token from .dev.vars.
        ("the .dev.vars token", &dev, vec![]),
    ];
    for (what, client, headers) in &tests {
        for (method, path, body) in state_changing_requests(&key, counter) {
            let r = client.raw(method, &path, headers, body.as_deref()).unwrap();
            expect_unauthorized(&r, &format!("{what}: {method} {path}"));
        }
    }
    // A token in the query string is not a credential.
    for q in ["token", "access_token", "api_token", "API_TOKEN", "auth"] {
        for (method, path, body) in state_changing_requests(&key, counter) {
            let sep = if path.contains('?') { '&' } else { '?' };
            let path = format!("{path}{sep}{q}=test-token");
            let r = anon.raw(method, &path, &[], body.as_deref()).unwrap();
            assert!(
                matches!(r.status, 400 | 401),
                "token in query ({method} {path}) was not refused: {} {}",
                r.status,
                r.text()
            );
        }
    }

    // Nothing changed: the object, the counter, the pipeline totals. The
    // pause gives a write that was wrongly queued time to surface.
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(c.counter(counter).unwrap().value, 5);
    let obj = c.get_object(&key, &GetOptions::default()).unwrap();
    assert_eq!(obj.body, b"original");
    let latest = c
        .get_object(
            &key,
            &GetOptions {
                consistency_latest: true,
                ..GetOptions::default()
            },
        )
        .unwrap();
    assert_eq!(latest.body, b"original");
    let after = c.stats().unwrap();
    assert_eq!(
        (
            after.accepted,
            after.r2_writes,
            after.committed,
            after.inflight
        ),
        (
            before.accepted,
            before.r2_writes,
            before.committed,
            before.inflight
        ),
        "refused requests changed /stats: before {before:?}, after {after:?}"
    );
    // The right token still works.
    assert_eq!(c.increment(counter, None).unwrap().value, 6);
}

fn assert_fail_closed(w: &LocalWorker, what: &str) {
    let key = unique_key("closed");
    let counter = "closed-counter";
    for token in [
        None,
        Some(""),
        Some("dev-token"),
        Some("test-token"),
        Some("undefined"),
    ] {
        let client = Client::new(&w.base_url(), token);
        for (method, path, body) in state_changing_requests(&key, counter) {
            let r = client.raw(method, &path, &[], body.as_deref()).unwrap();
            expect_unauthorized(&r, &format!("{what}, token {token:?}: {method} {path}"));
        }
        let r = client
            .raw(
                "POST",
                &format!("/counters/{counter}/increment"),
                &[("Authorization", "Bearer")],
                Some(b""),
            )
            .unwrap();
        expect_unauthorized(&r, &format!("{what}: `Authorization: Bearer` with nothing"));
    }
    // Reads stay public, and nothing was written.
    let anon = w.anon_client();
    anon.healthz().unwrap();
    assert_eq!(anon.counter(counter).unwrap().value, 0);
    e2e::expect_api_error(
        anon.get_object(&key, &GetOptions::default()),
        404,
        "object_not_found",
    );
    let stats = anon.stats().unwrap();
    assert_eq!(
        (stats.accepted, stats.r2_writes, stats.inflight),
        (0, 0, 0),
        "{what}: refused writes reached the pipeline: {stats:?}"
    );
}

#[test]
fn fail_closed_when_api_token_is_empty() {
    let (_g, w) = isolated(WorkerOptions::new("empty-token").var("API_TOKEN", ""));
    assert_fail_closed(&w, "API_TOKEN empty");
}

#[test]
fn fail_closed_when_api_token_is_absent() {
    // No --var and no .dev.vars (the harness passes an empty --env-file).
    let (_g, w) = isolated(WorkerOptions::new("no-token").without_var("API_TOKEN"));
    assert_fail_closed(&w, "API_TOKEN absent");
}

const EXPOSED: [&str; 9] = [
    "etag",
    "location",
    "retry-after",
    "content-range",
    "x-pipeline-state",
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
    "x-ratelimit-reset-after-ms",
];

#[track_caller]
fn assert_exposes_all(r: &RawResponse, what: &str) {
    let exposed = header_tokens(r.headers.get("access-control-expose-headers").unwrap_or(""));
    for h in EXPOSED {
        assert!(
            exposed.iter().any(|e| e == h),
            "{what}: Access-Control-Expose-Headers {exposed:?} lacks {h}"
        );
    }
}

#[test]
fn cors_headers_on_every_response_by_default() {
    let w = shared();
    let c = w.client();
    let anon = w.anon_client();
    let key = unique_key("cors");
    let origin = [("Origin", "https://app.example")];
    let k = pipeline_client::encode_key(&key);
    let responses = vec![
        (
            "GET /healthz",
            c.raw("GET", "/healthz", &origin, None).unwrap(),
        ),
        ("GET /stats", c.raw("GET", "/stats", &origin, None).unwrap()),
        ("404 route", c.raw("GET", "/nope", &origin, None).unwrap()),
        (
            "405",
            c.raw("POST", "/healthz", &origin, Some(b"")).unwrap(),
        ),
        (
            "401",
            anon.raw("PUT", &format!("/objects/{k}"), &origin, Some(b"x"))
                .unwrap(),
        ),
        (
            "202",
            c.raw("PUT", &format!("/objects/{k}"), &origin, Some(b"x"))
                .unwrap(),
        ),
        (
            "404 object",
            c.raw("GET", &format!("/objects/{k}-missing"), &origin, None)
                .unwrap(),
        ),
        (
            "400 key",
            c.raw("GET", "/objects/_pipeline/x", &origin, None).unwrap(),
        ),
        (
            "counter",
            c.raw("GET", "/counters/cors", &origin, None).unwrap(),
        ),
        ("no Origin", c.raw("GET", "/healthz", &[], None).unwrap()),
    ];
    for (what, r) in &responses {
        assert_eq!(
            r.headers.get("access-control-allow-origin"),
            Some("*"),
            "{what} (HTTP {}): Access-Control-Allow-Origin",
            r.status
        );
        assert_exposes_all(r, what);
    }
}

#[test]
fn options_is_204_on_any_path_without_a_token() {
    let anon = shared().anon_client();
    for path in [
        "/objects/a/b.txt",
        "/objects",
        "/uploads/x",
        "/counters/c/increment",
        "/healthz",
        "/nope",
    ] {
        let r = anon
            .raw(
                "OPTIONS",
                path,
                &[
                    ("Origin", "https://app.example"),
                    ("Access-Control-Request-Method", "PUT"),
                    (
                        "Access-Control-Request-Headers",
                        "authorization, content-type, idempotency-key",
                    ),
                ],
                None,
            )
            .unwrap();
        assert_eq!(r.status, 204, "OPTIONS {path}: {} {}", r.status, r.text());
        assert!(r.body.is_empty(), "OPTIONS {path}: 204 with a body");
        assert_eq!(
            r.headers.get("access-control-allow-origin"),
            Some("*"),
            "OPTIONS {path}"
        );
        let methods = header_tokens(r.headers.get("access-control-allow-methods").unwrap_or(""));
        for m in ["get", "head", "put", "post", "delete"] {
            assert!(
                methods.iter().any(|x| x == m),
                "OPTIONS {path}: Allow-Methods {methods:?} lacks {m}"
            );
        }
        let headers = header_tokens(r.headers.get("access-control-allow-headers").unwrap_or(""));
        // `*` does not cover Authorization (Fetch standard): it must be named.
        assert!(
            headers.iter().any(|h| h == "authorization"),
            "OPTIONS {path}: Allow-Headers {headers:?} lacks authorization"
        );
        for h in ["content-type", "idempotency-key"] {
            assert!(
                headers.iter().any(|x| x == h || x == "*"),
                "OPTIONS {path}: Allow-Headers {headers:?} lacks {h}"
            );
        }
    }
}

#[test]
fn origin_list_private_reads_and_upload_limit() {
    let (_g, w) = isolated(
        WorkerOptions::new("origins")
            .var("ALLOWED_ORIGINS", "https://a.example,https://b.example")
            .var("PUBLIC_READS", "false")
            .var("MAX_UPLOAD_BYTES", "1024"),
    );
    let c = w.client();
    let anon = w.anon_client();

    // Only a listed origin is echoed; an arbitrary one never, nor `*`.
    for listed in ["https://a.example", "https://b.example"] {
        for (method, path) in [
            ("GET", "/healthz"),
            ("OPTIONS", "/objects/x"),
            ("GET", "/nope"),
        ] {
            let r = c.raw(method, path, &[("Origin", listed)], None).unwrap();
            assert_eq!(
                r.headers.get("access-control-allow-origin"),
                Some(listed),
                "{method} {path} from {listed}"
            );
            assert_exposes_all(&r, &format!("{method} {path} from {listed}"));
        }
    }
    for evil in [
        "https://evil.example",
        "https://a.example.evil.example",
        "null",
        "https://A.example.com",
    ] {
        for (method, path) in [
            ("GET", "/healthz"),
            ("OPTIONS", "/objects/x"),
            ("GET", "/stats"),
        ] {
            let r = c.raw(method, path, &[("Origin", evil)], None).unwrap();
            let acao = r.headers.get("access-control-allow-origin");
            assert!(
                acao != Some(evil) && acao != Some("*"),
                "{method} {path} from {evil}: Access-Control-Allow-Origin {acao:?}"
            );
        }
    }

    // PUBLIC_READS=false: reads need the token too.
    let key = unique_key("private");
    let (accepted, _) = e2e::put_committed(&c, &key, b"secret bytes", &PutOptions::default());
    let k = pipeline_client::encode_key(&key);
    for path in [
        format!("/objects/{k}"),
        format!("/objects/{k}?consistency=latest"),
        "/objects".to_owned(),
        "/objects?prefix=e2e/".to_owned(),
        format!("/uploads/{}", accepted.id),
        "/counters/private".to_owned(),
    ] {
        let r = anon.raw("GET", &path, &[], None).unwrap();
        expect_unauthorized(&r, &format!("anonymous GET {path} with PUBLIC_READS=false"));
        assert!(
            !r.text().contains("secret bytes"),
            "GET {path}: the refused answer leaks the object"
        );
        let r = c
            .with_token(Some("wrong"))
            .raw("GET", &path, &[], None)
            .unwrap();
        expect_unauthorized(
            &r,
            &format!("wrong-token GET {path} with PUBLIC_READS=false"),
        );
        let r = c.raw("GET", &path, &[], None).unwrap();
        assert_eq!(r.status, 200, "GET {path} with the token: {}", r.text());
    }
    let r = anon
        .raw("HEAD", &format!("/objects/{k}"), &[], None)
        .unwrap();
    assert_eq!(r.status, 401, "anonymous HEAD with PUBLIC_READS=false");
    assert!(
        r.headers.get("www-authenticate").is_some(),
        "HEAD 401 without WWW-Authenticate"
    );
    assert_eq!(
        c.get_object(&key, &GetOptions::default()).unwrap().body,
        b"secret bytes"
    );

    // MAX_UPLOAD_BYTES=1024: one byte more is 413, async or sync; 1024 is fine.
    let big = vec![b'x'; 1025];
    let k2 = unique_key("limit");
    e2e::expect_api_error(
        c.put_object(&k2, &big, &PutOptions::default()),
        413,
        "payload_too_large",
    );
    e2e::expect_api_error(
        c.put_object_sync(&k2, &big, &PutOptions::default()),
        413,
        "payload_too_large",
    );
    e2e::expect_api_error(
        c.get_object(&k2, &GetOptions::default()),
        404,
        "object_not_found",
    );
    let (_, st) = e2e::put_committed(&c, &k2, &big[..1024], &PutOptions::default());
    assert_eq!(st.size, 1024);
}

/// Asserts what every answer carries, whichever handler or Durable Object
/// produced it: `Access-Control-Allow-Origin: *`, an
/// `Access-Control-Expose-Headers` naming every header of the contract
/// (`Retry-After` and the `X-RateLimit-*` ones among them) and a
/// non-empty `X-Request-Id`. Returns the request id.
#[track_caller]
fn assert_carries_cors_and_request_id(r: &RawResponse, what: &str) -> String {
    assert_eq!(
        r.headers.get("access-control-allow-origin"),
        Some("*"),
        "{what} (HTTP {}): Access-Control-Allow-Origin",
        r.status
    );
    assert_exposes_all(r, &format!("{what} (HTTP {})", r.status));
    let id = r.headers.get("x-request-id").unwrap_or("").trim();
    assert!(
        !id.is_empty(),
        "{what} (HTTP {}): no X-Request-Id",
        r.status
    );
    id.to_owned()
}

#[test]
fn every_routes_answers_carry_cors_and_a_request_id() {
    let w = shared();
    let c = w.client();
    let anon = w.anon_client();
    let origin = [("Origin", "https://app.example")];
    let get = |path: &str, headers: &[(&str, &str)]| {
        let mut hs = origin.to_vec();
        hs.extend_from_slice(headers);
        c.raw("GET", path, &hs, None).unwrap()
    };
    let send =
        |method: &str, path: &str, body: Option<&[u8]>| c.raw(method, path, &origin, body).unwrap();
    let key = unique_key("cors-all");
    let k = pipeline_client::encode_key(&key);
    let obj = format!("/objects/{k}");
    let (accepted, _) = e2e::put_committed(&c, &key, b"0123456789", &PutOptions::default());
    let etag = c
        .get_object(&key, &GetOptions::default())
        .unwrap()
        .headers
        .get("etag")
        .unwrap_or_default()
        .to_owned();

    // (what, answer, the status it must have)
    let mut answers: Vec<(String, RawResponse, u16)> = Vec::new();
    let mut add =
        |what: &str, r: RawResponse, status: u16| answers.push((what.to_owned(), r, status));
    add("GET /healthz", get("/healthz", &[]), 200);
    add(
        "HEAD /healthz",
        c.raw("HEAD", "/healthz", &origin, None).unwrap(),
        200,
    );
    add("GET /stats", get("/stats", &[]), 200);
    add("GET /objects", get("/objects?prefix=e2e/", &[]), 200);
    add("GET /objects bad limit", get("/objects?limit=0", &[]), 400);
    add("GET object", get(&obj, &[]), 200);
    add(
        "HEAD object",
        c.raw("HEAD", &obj, &origin, None).unwrap(),
        200,
    );
    add(
        "GET object If-None-Match",
        get(&obj, &[("If-None-Match", &etag)]),
        304,
    );
    add(
        "GET object If-Match",
        get(&obj, &[("If-Match", "\"other\"")]),
        412,
    );
    add(
        "GET object Range",
        get(&obj, &[("Range", "bytes=2-5")]),
        206,
    );
    add(
        "GET object bad Range",
        get(&obj, &[("Range", "bytes=100-")]),
        416,
    );
    add(
        "GET object latest",
        get(&format!("{obj}?consistency=latest"), &[]),
        200,
    );
    add(
        "GET missing object",
        get(&format!("{obj}-missing"), &[]),
        404,
    );
    add(
        "GET missing latest",
        get(&format!("{obj}-missing?consistency=latest"), &[]),
        404,
    );
    add("GET invalid key", get("/objects/_pipeline/x", &[]), 400);
    add(
        "PUT async",
        send("PUT", &format!("{obj}-async"), Some(b"x")),
        202,
    );
    add(
        "DELETE async",
        send("DELETE", &format!("{obj}-async"), None),
        202,
    );
    add(
        "PUT bad mode",
        send("PUT", &format!("{obj}?mode=fast"), Some(b"x")),
        400,
    );
    add(
        "GET /uploads/{id}",
        get(&format!("/uploads/{}", accepted.id), &[]),
        200,
    );
    add(
        "GET /uploads/{id}?wait=1",
        get(&format!("/uploads/{}?wait=1", accepted.id), &[]),
        200,
    );
    add("GET unknown upload", get("/uploads/nope", &[]), 404);
    add("GET counter", get("/counters/cors-all", &[]), 200);
    add(
        "POST increment",
        send("POST", "/counters/cors-all/increment", Some(b"{\"by\":2}")),
        200,
    );
    add(
        "POST decrement",
        send("POST", "/counters/cors-all/decrement", None),
        200,
    );
    add(
        "POST bad counter body",
        send("POST", "/counters/cors-all/increment", Some(b"nope")),
        400,
    );
    add(
        "DELETE counter",
        send("DELETE", "/counters/cors-all", None),
        204,
    );
    add("bad counter name", get("/counters/bad!name", &[]), 400);
    add(
        "401",
        anon.raw("PUT", &obj, &origin, Some(b"x")).unwrap(),
        401,
    );
    add("404 route", get("/nope", &[]), 404);
    add("405", send("POST", "/healthz", Some(b"")), 405);
    add(
        "OPTIONS",
        anon.raw(
            "OPTIONS",
            &obj,
            &[
                ("Origin", "https://app.example"),
                ("Access-Control-Request-Method", "PUT"),
            ],
            None,
        )
        .unwrap(),
        204,
    );

    // Sync writes: the answers are relayed from the key's scheduler. A
    // second PUT right after a 201 finds the slot taken (429); the DELETE
    // is retried until the slot frees (204). `409 newer_write_pending`
    // needs a clock skew between Worker instances, which one local runtime
    // cannot produce; it is relayed the same way as the 429.
    let sync_key = format!("{obj}-sync?mode=sync");
    let mut got_429 = false;
    for _ in 0..5 {
        let created = send("PUT", &sync_key, Some(b"sync body"));
        assert_eq!(created.status, 201, "PUT ?mode=sync: {}", created.text());
        let body = created.json().unwrap();
        assert_eq!(body["size"], 9, "the 201 body came through: {body}");
        add("PUT sync 201", created, 201);
        let second = send("PUT", &sync_key, Some(b"again"));
        match second.status {
            429 => {
                for h in [
                    "retry-after",
                    "x-ratelimit-limit",
                    "x-ratelimit-remaining",
                    "x-ratelimit-reset",
                    "x-ratelimit-reset-after-ms",
                ] {
                    assert!(second.headers.get(h).is_some(), "429 lost its {h}");
                }
                add("PUT sync 429", second, 429);
                got_429 = true;
                break;
            }
            201 => {} // more than a second passed (slow machine): again
            s => panic!("second PUT ?mode=sync: HTTP {s} {}", second.text()),
        }
    }
    assert!(
        got_429,
        "no 429 in five tries of two back-to-back sync PUTs"
    );
    let deleted = (0..20)
        .find_map(|_| {
            let r = send("DELETE", &sync_key, None);
            match r.status {
                204 => Some(r),
                429 => {
                    add("DELETE sync 429", r, 429);
                    std::thread::sleep(std::time::Duration::from_millis(300));
                    None
                }
                s => panic!("DELETE ?mode=sync: HTTP {s} {}", r.text()),
            }
        })
        .expect("DELETE ?mode=sync never got its slot");
    add("DELETE sync 204", deleted, 204);

    let mut ids = std::collections::HashSet::new();
    for (what, r, status) in &answers {
        assert_eq!(r.status, *status, "{what}: {}", r.text());
        let id = assert_carries_cors_and_request_id(r, what);
        assert!(
            ids.insert(id.clone()),
            "{what}: X-Request-Id {id} was given twice"
        );
    }
    println!(
        "FIGURES cors: {} answers of every route, sync 201/204/429 included, carried \
         Access-Control-Allow-Origin, Access-Control-Expose-Headers and a distinct X-Request-Id",
        answers.len()
    );
}
