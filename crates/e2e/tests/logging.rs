//! `LOG_LEVEL` (README "Settings"): at the default `info` every request
//! writes one JSON line naming its request id, method, path and status; at
//! `warn` those lines are gone but a 5xx would still be logged; `off`
//! writes nothing. Read from the dev server's output, which shows the
//! Worker's `console.log` lines at `wrangler dev --log-level log`.

mod common;

use std::time::{Duration, Instant};

use common::log_since;
use e2e::{start, LocalWorker, WorkerOptions};

/// The Worker's per-request JSON lines in `text`, by request id.
fn request_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .filter(|l| l.starts_with('{'))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v.get("request_id").is_some())
        .collect()
}

/// Sends `GET /healthz` and `GET /no-such-route`; their request ids.
fn two_requests(w: &LocalWorker) -> [String; 2] {
    let c = w.client();
    let ok = c.raw("GET", "/healthz", &[], None).unwrap();
    let missing = c.raw("GET", "/no-such-route", &[], None).unwrap();
    assert_eq!((ok.status, missing.status), (200, 404));
    let id = |r: &pipeline_client::RawResponse| {
        r.headers
            .get("x-request-id")
            .expect("X-Request-Id on every answer")
            .to_owned()
    };
    [id(&ok), id(&missing)]
}

/// The log from `offset` once its request lines name every id in `ids`, or
/// after a few seconds (the dev server prints the Worker's lines
/// asynchronously, and lines of the harness's own readiness probes can
/// still arrive after `offset`).
fn settle(w: &LocalWorker, offset: u64, ids: &[String]) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = log_since(w, offset);
        let lines = request_lines(&text);
        let seen = |id: &String| lines.iter().any(|v| v["request_id"] == *id);
        if ids.iter().all(seen) || Instant::now() > deadline {
            return text;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn log_len(w: &LocalWorker) -> u64 {
    std::fs::metadata(w.log_path()).map_or(0, |m| m.len())
}

#[test]
fn info_writes_one_line_per_request_and_warn_or_off_write_none() {
    let w = start(WorkerOptions::new("logging-info").log_level("log"));
    let offset = log_len(&w);
    let ids = two_requests(&w);
    let lines = request_lines(&settle(&w, offset, &ids));
    for (id, (path, status)) in ids.iter().zip([("/healthz", 200), ("/no-such-route", 404)]) {
        let mine: Vec<&serde_json::Value> =
            lines.iter().filter(|v| v["request_id"] == *id).collect();
        assert_eq!(mine.len(), 1, "one line for request {id}: {lines:?}");
        assert_eq!(mine[0]["path"], path);
        assert_eq!(mine[0]["status"], status);
        assert_eq!(mine[0]["method"], "GET");
        assert_eq!(mine[0]["level"], "info");
    }
    drop(w);

    for level in ["warn", "off"] {
        let w = start(
            WorkerOptions::new(&format!("logging-{level}"))
                .log_level("log")
                .var("LOG_LEVEL", level),
        );
        let offset = log_len(&w);
        let ids = two_requests(&w);
        // Wait as long as the info run could have needed to show them.
        let text = settle(&w, offset, &ids);
        // No line at all: the harness's readiness probes log at `info` too.
        assert_eq!(
            request_lines(&text),
            Vec::<serde_json::Value>::new(),
            "LOG_LEVEL={level} still writes per-request lines"
        );
        // The dev server's own request lines are there: the output was read.
        assert!(
            text.contains("GET /no-such-route 404"),
            "LOG_LEVEL={level}: the dev server's output was not captured: {text}"
        );
    }
}
