//! Signed webhooks (docs/API.md, "Webhooks"), end to end: a receiver in
//! this test (plain HTTP/1.1 on 127.0.0.1) gets every terminal state of a
//! write that carries `Callback-Url`, signed per Standard Webhooks and
//! verified with `pipeline_core::webhook::verify`; a receiver answering
//! `500` first gets the event again and the status ends `delivered` after
//! two or more tries; a Callback-Url whose origin is not allowed is refused
//! with `400 invalid_header`, nothing accepted and no request sent.
//!
//! Only loopback addresses are used.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write as _};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use e2e::{put_committed, start, unique_key, LocalWorker, WorkerOptions};
use pipeline_client::{encode_key, Client, PutOptions, RawResponse};
use pipeline_core::webhook::{secret_key, verify};
use serde_json::Value;

/// `whsec_` + base64 (the Standard Webhooks test vector's secret).
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// One request a receiver got.
#[derive(Debug, Clone)]
struct Hit {
    method: String,
    path: String,
    headers: HashMap<String, String>,
    body: String,
}

/// A minimal HTTP/1.1 receiver: records every request; answers `500` to
/// the first `n` requests of a path set with [`Receiver::fail_first`],
/// `204` otherwise.
#[derive(Clone)]
struct Receiver {
    port: u16,
    hits: Arc<Mutex<Vec<Hit>>>,
    failures: Arc<Mutex<HashMap<String, usize>>>,
}

impl Receiver {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = listener.local_addr().expect("local addr").port();
        let r = Self {
            port,
            hits: Arc::default(),
            failures: Arc::default(),
        };
        let me = r.clone();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let me = me.clone();
                thread::spawn(move || me.serve(stream));
            }
        });
        r
    }

    fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin())
    }

    fn fail_first(&self, path: &str, n: usize) {
        self.failures.lock().unwrap().insert(path.to_string(), n);
    }

    fn serve(&self, stream: TcpStream) {
        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
        let mut reader = BufReader::new(match stream.try_clone() {
            Ok(s) => s,
            Err(_) => return,
        });
        let mut out = stream;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let mut parts = line.split_whitespace();
            let method = parts.next().unwrap_or_default().to_string();
            let path = parts.next().unwrap_or_default().to_string();
            let mut headers = HashMap::new();
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 {
                    return;
                }
                let h = h.trim_end();
                if h.is_empty() {
                    break;
                }
                if let Some((k, v)) = h.split_once(':') {
                    headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
                }
            }
            let len: usize = headers
                .get("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0; len];
            if reader.read_exact(&mut body).is_err() {
                return;
            }
            self.hits.lock().unwrap().push(Hit {
                method,
                path: path.clone(),
                headers,
                body: String::from_utf8_lossy(&body).into_owned(),
            });
            let fail = {
                let mut f = self.failures.lock().unwrap();
                match f.get_mut(&path) {
                    Some(n) if *n > 0 => {
                        *n -= 1;
                        true
                    }
                    _ => false,
                }
            };
            let answer = if fail {
                "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\nnope"
            } else {
                "HTTP/1.1 204 No Content\r\n\r\n"
            };
            if out.write_all(answer.as_bytes()).is_err() {
                return;
            }
            let _ = out.flush();
        }
    }

    fn hits(&self, path: &str) -> Vec<Hit> {
        self.hits
            .lock()
            .unwrap()
            .iter()
            .filter(|h| h.path == path)
            .cloned()
            .collect()
    }

    fn all_hits(&self) -> usize {
        self.hits.lock().unwrap().len()
    }
}

/// The receiver whose origin the shared worker allows, and the worker.
fn setup() -> &'static (Receiver, LocalWorker) {
    static S: OnceLock<(Receiver, LocalWorker)> = OnceLock::new();
    S.get_or_init(|| {
        let receiver = Receiver::start();
        let worker = start(
            WorkerOptions::new("webhooks")
                .var("WEBHOOK_ALLOWED_ORIGINS", &receiver.origin())
                .var("WEBHOOK_SECRET", SECRET),
        );
        (receiver, worker)
    })
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Waits until `path` got at least `n` requests.
#[track_caller]
fn wait_hits(r: &Receiver, path: &str, n: usize, within: Duration) -> Vec<Hit> {
    let until = Instant::now() + within;
    loop {
        let hits = r.hits(path);
        if hits.len() >= n {
            return hits;
        }
        assert!(
            Instant::now() < until,
            "{path}: {} of {n} webhook requests within {within:?}",
            hits.len()
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// Checks one delivery: POST, JSON, the Standard Webhooks headers and a
/// signature that verifies; returns the event.
#[track_caller]
fn verified(h: &Hit) -> Value {
    assert_eq!(h.method, "POST");
    assert_eq!(
        h.headers.get("content-type").map(String::as_str),
        Some("application/json")
    );
    let id = h.headers.get("webhook-id").expect("webhook-id");
    assert!(id.starts_with("msg_"), "webhook-id {id}");
    let ts: i64 = h
        .headers
        .get("webhook-timestamp")
        .and_then(|t| t.parse().ok())
        .expect("webhook-timestamp in Unix seconds");
    let sig = h
        .headers
        .get("webhook-signature")
        .expect("webhook-signature");
    assert!(sig.starts_with("v1,"), "signature {sig}");
    let key = secret_key(SECRET).expect("the test secret decodes");
    assert!(
        verify(&key, id, ts, &h.body, sig, now_secs()),
        "signature does not verify: {h:?}"
    );
    let wrong = secret_key("whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=").unwrap();
    assert!(!verify(&wrong, id, ts, &h.body, sig, now_secs()));
    serde_json::from_str(&h.body).expect("the event is JSON")
}

/// The status of `id` as JSON, once `callback.state` is `want`.
#[track_caller]
fn wait_callback(client: &Client, id: &str, want: &str, within: Duration) -> Value {
    let until = Instant::now() + within;
    loop {
        let r = client
            .raw("GET", &format!("/uploads/{id}"), &[], None)
            .expect("status");
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json().unwrap();
        if v["callback"]["state"] == want {
            return v;
        }
        assert!(
            Instant::now() < until,
            "callback of {id} not {want} within {within:?}: {v}"
        );
        thread::sleep(Duration::from_millis(200));
    }
}

fn put_with(client: &Client, key: &str, body: &[u8], headers: &[(&str, &str)]) -> RawResponse {
    client
        .raw(
            "PUT",
            &format!("/objects/{}", encode_key(key)),
            headers,
            Some(body),
        )
        .expect("PUT answered")
}

#[track_caller]
fn accepted_id(r: &RawResponse) -> String {
    assert_eq!(r.status, 202, "{}", r.text());
    r.json().unwrap()["id"].as_str().unwrap().to_string()
}

const WAIT: Duration = Duration::from_secs(45);

#[test]
fn a_committed_write_is_delivered_signed() {
    let (rx, w) = setup();
    let client = w.client();
    let key = unique_key("webhook-commit");
    let path = "/hook/committed";
    let id = accepted_id(&put_with(
        &client,
        &key,
        b"hello",
        &[("Callback-Url", &rx.url(path))],
    ));
    let hits = wait_hits(rx, path, 1, WAIT);
    let event = verified(&hits[0]);
    assert_eq!(event["type"], "upload.committed", "{event}");
    assert_eq!(event["data"]["id"], id.as_str());
    assert_eq!(event["data"]["key"], key.as_str());
    assert_eq!(event["data"]["state"], "committed");
    assert!(event["data"]["etag"].is_string(), "{event}");
    let status = wait_callback(&client, &id, "delivered", WAIT);
    assert_eq!(status["state"], "committed");
    assert!(
        status["callback"]["attempts"].as_u64() >= Some(1),
        "{status}"
    );
}

#[test]
fn a_superseded_write_is_delivered() {
    let (rx, w) = setup();
    let client = w.client();
    let key = unique_key("webhook-supersede");
    let path = "/hook/superseded";
    let cb = rx.url(path);
    // The first write takes the key's slot; the next two arrive within
    // that second, so the older of them is superseded by the newer.
    let _first = accepted_id(&put_with(&client, &key, b"v0", &[]));
    let a = accepted_id(&put_with(&client, &key, b"v1", &[("Callback-Url", &cb)]));
    let b = accepted_id(&put_with(&client, &key, b"v2", &[("Callback-Url", &cb)]));
    let hits = wait_hits(rx, path, 2, WAIT);
    let mut by_id: HashMap<String, String> = HashMap::new();
    for h in &hits {
        let e = verified(h);
        let id = e["data"]["id"].as_str().unwrap().to_string();
        let kind = e["type"].as_str().unwrap().to_string();
        assert_eq!(
            kind,
            format!("upload.{}", e["data"]["state"].as_str().unwrap()),
            "{e}"
        );
        by_id.insert(id, kind);
    }
    assert_eq!(by_id.get(&b).map(String::as_str), Some("upload.committed"));
    assert_eq!(
        by_id.get(&a).map(String::as_str),
        Some("upload.superseded"),
        "{by_id:?}"
    );
    let status = wait_callback(&client, &a, "delivered", WAIT);
    assert_eq!(status["state"], "superseded");
    assert_eq!(status["superseded_by"], b.as_str());
    wait_callback(&client, &b, "delivered", WAIT);
}

#[test]
fn a_failed_write_is_delivered() {
    let (rx, w) = setup();
    let client = w.client();
    let key = unique_key("webhook-failed");
    let path = "/hook/failed";
    put_committed(&client, &key, b"base", &PutOptions::default());
    let id = accepted_id(&put_with(
        &client,
        &key,
        b"conditional",
        &[
            ("If-Match", "\"not-the-etag\""),
            ("Callback-Url", &rx.url(path)),
        ],
    ));
    let hits = wait_hits(rx, path, 1, WAIT);
    let event = verified(&hits[0]);
    assert_eq!(event["type"], "upload.failed", "{event}");
    assert_eq!(event["data"]["id"], id.as_str());
    assert_eq!(event["data"]["error"]["code"], "precondition_failed");
    let status = wait_callback(&client, &id, "delivered", WAIT);
    assert_eq!(status["state"], "failed");
}

#[test]
fn a_receiver_failing_first_gets_a_retry() {
    let (rx, w) = setup();
    let client = w.client();
    let key = unique_key("webhook-retry");
    let path = "/hook/retry";
    rx.fail_first(path, 1);
    let id = accepted_id(&put_with(
        &client,
        &key,
        b"again",
        &[("Callback-Url", &rx.url(path))],
    ));
    let hits = wait_hits(rx, path, 2, WAIT);
    let first = verified(&hits[0]);
    let second = verified(&hits[1]);
    assert_eq!(first, second, "the same event both times");
    assert_eq!(
        hits[0].headers.get("webhook-id"),
        hits[1].headers.get("webhook-id"),
        "one webhook-id for every try of an event"
    );
    let status = wait_callback(&client, &id, "delivered", WAIT);
    assert!(
        status["callback"]["attempts"].as_u64() >= Some(2),
        "{status}"
    );
}

#[test]
fn a_callback_origin_not_allowed_is_refused_and_nothing_is_sent() {
    let (rx, w) = setup();
    let client = w.client();
    let other = Receiver::start();
    let key = unique_key("webhook-refused");
    let before = rx.all_hits();
    for url in [
        other.url("/hook/other-port"),
        "https://example.invalid/hook".to_string(),
        format!("{}.evil.invalid/hook", rx.origin()),
        "ftp://127.0.0.1/hook".to_string(),
        "not a url".to_string(),
    ] {
        let r = put_with(&client, &key, b"nope", &[("Callback-Url", &url)]);
        assert_eq!(r.status, 400, "{url}: {}", r.text());
        assert_eq!(r.error_code().as_deref(), Some("invalid_header"), "{url}");
        assert!(!r.text().contains(&url), "the URL is not echoed");
    }
    // A sync write does not take a callback at all.
    let r = client
        .raw(
            "PUT",
            &format!("/objects/{}?mode=sync", encode_key(&key)),
            &[("Callback-Url", &rx.url("/hook/sync"))],
            Some(b"sync"),
        )
        .unwrap();
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.error_code().as_deref(), Some("invalid_header"));
    // Nothing was accepted: the key stays empty, and no request reached
    // either receiver.
    thread::sleep(Duration::from_secs(4));
    let got = client
        .raw("GET", &format!("/objects/{}", encode_key(&key)), &[], None)
        .unwrap();
    assert_eq!(got.status, 404, "{}", got.text());
    assert_eq!(other.all_hits(), 0);
    assert!(rx.hits("/hook/sync").is_empty());
    let _ = before;
}
