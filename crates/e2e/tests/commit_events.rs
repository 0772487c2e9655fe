//! Commit events (docs/API.md, "Commit events for downstream Workers
//! (`EVENTS` queue)"), end to end: every write that ends, async or sync, is
//! sent to the `EVENTS` queue as `{"id", "type", "data"}`, `type` naming
//! the terminal state and `data` the final status of `GET /uploads/{id}`.
//!
//! Production binds no consumer for that queue; the worker here is started
//! with `consume_events(true)`, which binds the Worker itself (a
//! `test-routes` build) as its consumer, and the events it consumed are
//! read back with `GET /_test/events?id=<upload id>`. Delivery is at least
//! once: repeats are allowed, but every copy must be the same event.

use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use e2e::{start, unique_key, LocalWorker, WorkerOptions};
use pipeline_client::{encode_key, Client, RawResponse};
use serde_json::Value;

/// How long an event may take to reach the queue's consumer.
const EVENT_WAIT: Duration = Duration::from_secs(30);

fn worker() -> &'static LocalWorker {
    static W: OnceLock<LocalWorker> = OnceLock::new();
    W.get_or_init(|| start(WorkerOptions::new("commit_events").consume_events(true)))
}

fn send(
    c: &Client,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> RawResponse {
    c.raw(method, path, headers, Some(body))
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

fn json(r: &RawResponse) -> Value {
    r.json()
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", r.text()))
}

fn object_path(key: &str) -> String {
    format!("/objects/{}", encode_key(key))
}

/// An async write with `Prefer: wait=30`, which must end in time: its final
/// status.
#[track_caller]
fn write_wait(c: &Client, method: &str, key: &str, body: &[u8], extra: &[(&str, &str)]) -> Value {
    let mut headers = vec![("Prefer", "wait=30")];
    headers.extend_from_slice(extra);
    let r = send(c, method, &object_path(key), &headers, body);
    assert_eq!(
        r.status,
        200,
        "{method} {key} with Prefer: wait: {}",
        r.text()
    );
    json(&r)
}

/// An async write answered `202`: its id.
#[track_caller]
fn accepted(c: &Client, key: &str, body: &[u8]) -> String {
    let r = send(c, "PUT", &object_path(key), &[], body);
    assert_eq!(r.status, 202, "PUT {key}: {}", r.text());
    json(&r)["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id: {}", r.text()))
        .to_owned()
}

/// The final status of `id` (`GET /uploads/{id}?wait=30`).
#[track_caller]
fn final_status(c: &Client, id: &str) -> Value {
    let r = send(c, "GET", &format!("/uploads/{id}?wait=30"), &[], b"");
    assert_eq!(r.status, 200, "status of {id}: {}", r.text());
    let v = json(&r);
    assert!(
        matches!(
            v["state"].as_str(),
            Some("committed" | "superseded" | "failed")
        ),
        "{id} not terminal within 30 s: {v}"
    );
    v
}

/// The events recorded for `id`, once there is at least one (bounded by
/// [`EVENT_WAIT`]).
#[track_caller]
fn events_of(c: &Client, id: &str) -> Vec<Value> {
    let until = Instant::now() + EVENT_WAIT;
    loop {
        let r = send(c, "GET", &format!("/_test/events?id={id}"), &[], b"");
        assert_eq!(r.status, 200, "/_test/events: {}", r.text());
        let events = json(&r)["events"].as_array().cloned().unwrap_or_default();
        if !events.is_empty() {
            return events;
        }
        assert!(
            Instant::now() < until,
            "no commit event for {id} within {EVENT_WAIT:?}"
        );
        thread::sleep(Duration::from_millis(200));
    }
}

/// Waits for `id`'s events and checks each copy: `type` is `want`, `data`
/// is the final status, `id` a webhook id shared by every copy.
#[track_caller]
fn assert_events(c: &Client, id: &str, want: &str) -> Value {
    let status = final_status(c, id);
    assert_eq!(
        format!("upload.{}", status["state"].as_str().unwrap_or("")),
        want,
        "{id}: {status}"
    );
    let events = events_of(c, id);
    let first = events[0].clone();
    for e in &events {
        assert_eq!(e["type"], want, "{id}: {e}");
        assert_eq!(
            e["data"], status,
            "{id}: the event's data is the final status"
        );
        let event_id = e["id"].as_str().unwrap_or_else(|| panic!("no id: {e}"));
        assert!(event_id.starts_with("msg_"), "event id {event_id}");
        assert_eq!(
            e.as_object().map(|m| m.len()),
            Some(3),
            "only id, type, data: {e}"
        );
        assert_eq!(*e, first, "{id}: every copy is the same event");
    }
    status
}

#[test]
fn a_committed_write_sends_upload_committed() {
    let c = worker().client();
    let key = unique_key("events-commit");
    let done = write_wait(&c, "PUT", &key, b"hello", &[]);
    assert_eq!(done["state"], "committed", "{done}");
    let id = done["id"].as_str().unwrap().to_owned();
    let status = assert_events(&c, &id, "upload.committed");
    assert_eq!(status["key"], key.as_str());
    assert_eq!(status["id"], id.as_str());
    assert!(status["etag"].is_string(), "{status}");
    assert_eq!(status["etag"], done["etag"]);
}

#[test]
fn a_superseded_write_sends_upload_superseded() {
    let c = worker().client();
    let key = unique_key("events-supersede");
    // The first write takes the key's slot; the next two arrive within that
    // second, so the older of them is superseded by the newer.
    let first = accepted(&c, &key, b"v0");
    let older = accepted(&c, &key, b"v1");
    let newer = accepted(&c, &key, b"v2");
    let status = assert_events(&c, &older, "upload.superseded");
    assert_eq!(status["key"], key.as_str());
    assert_eq!(status["id"], older.as_str());
    assert_eq!(status["superseded_by"], newer.as_str(), "{status}");
    let status = assert_events(&c, &newer, "upload.committed");
    assert!(status["etag"].is_string(), "{status}");
    // The first write ended one way or the other; its event says which.
    let first_status = final_status(&c, &first);
    let kind = format!("upload.{}", first_status["state"].as_str().unwrap());
    assert_events(&c, &first, &kind);
}

#[test]
fn a_failed_write_sends_upload_failed() {
    let c = worker().client();
    let key = unique_key("events-failed");
    let base = write_wait(&c, "PUT", &key, b"base", &[]);
    assert_eq!(base["state"], "committed", "{base}");
    let done = write_wait(
        &c,
        "PUT",
        &key,
        b"conditional",
        &[("If-Match", "\"stale\"")],
    );
    assert_eq!(done["state"], "failed", "{done}");
    assert_eq!(done["error"]["code"], "precondition_failed", "{done}");
    let id = done["id"].as_str().unwrap().to_owned();
    let status = assert_events(&c, &id, "upload.failed");
    assert_eq!(status["key"], key.as_str());
    assert_eq!(status["error"]["code"], "precondition_failed");
}

#[test]
fn a_delete_sends_upload_committed_without_etag() {
    let c = worker().client();
    let key = unique_key("events-delete");
    let put = write_wait(&c, "PUT", &key, b"doomed", &[]);
    assert_eq!(put["state"], "committed", "{put}");
    let done = write_wait(&c, "DELETE", &key, b"", &[]);
    assert_eq!(done["state"], "committed", "{done}");
    let id = done["id"].as_str().unwrap().to_owned();
    let status = assert_events(&c, &id, "upload.committed");
    assert_eq!(status["key"], key.as_str());
    assert!(
        status.get("etag").is_none(),
        "a DELETE has no etag: {status}"
    );
}

#[test]
fn a_sync_write_sends_upload_committed() {
    let c = worker().client();
    let key = unique_key("events-sync");
    let r = send(
        &c,
        "PUT",
        &format!("{}?mode=sync", object_path(&key)),
        &[],
        b"now",
    );
    assert_eq!(r.status, 201, "sync PUT: {}", r.text());
    let created = json(&r);
    let id = created["id"].as_str().unwrap().to_owned();
    let status = assert_events(&c, &id, "upload.committed");
    assert_eq!(status["key"], key.as_str());
    assert_eq!(status["etag"], created["etag"]);
}

#[test]
fn the_events_route_needs_the_token_and_an_upload_id() {
    let w = worker();
    let anon = w.anon_client();
    let r = send(&anon, "GET", "/_test/events?id=abc", &[], b"");
    assert_eq!(r.status, 401, "{}", r.text());
    let c = w.client();
    for path in [
        "/_test/events",
        "/_test/events?id=a/b",
        "/_test/events?id=..",
    ] {
        let r = send(&c, "GET", path, &[], b"");
        assert_eq!(r.status, 400, "{path}: {}", r.text());
        assert_eq!(
            r.error_code().as_deref(),
            Some("invalid_parameter"),
            "{path}"
        );
        assert!(!r.text().contains("a/b"), "the id is not echoed");
    }
    // Recorded events live under the reserved prefix: never listed.
    let key = unique_key("events-listing");
    let done = write_wait(&c, "PUT", &key, b"listed", &[]);
    let id = done["id"].as_str().unwrap().to_owned();
    events_of(&c, &id);
    let listing = send(&c, "GET", "/objects", &[], b"");
    assert_eq!(listing.status, 200, "{}", listing.text());
    assert!(!listing.text().contains("_pipeline/"), "{}", listing.text());
}
