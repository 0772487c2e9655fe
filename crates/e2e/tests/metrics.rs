//! `GET /metrics` on the local runtime: token-protected (`API_TOKEN`, or
//! `METRICS_TOKEN` when set), valid Prometheus text as an independent
//! parser reads it, counters equal to `/stats`, a commit-lag histogram that
//! grows with a known workload, no object key as a label.

use std::collections::HashMap;
use std::io::BufRead;

use e2e::{start, unique_key, WorkerOptions};
use pipeline_client::{encode_key, Client};
use prometheus_parse::{Scrape, Value};

fn scrape(c: &Client) -> Scrape {
    let r = c.raw("GET", "/metrics", &[], None).expect("GET /metrics");
    assert_eq!(r.status, 200, "{}", r.text());
    let ct = r
        .headers
        .get("Content-Type")
        .unwrap_or_default()
        .to_string();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    let lines = r.body.lines().map(|l| l.map_err(|e| e.to_string()));
    Scrape::parse(lines.map(|l| l.map_err(std::io::Error::other))).expect("Prometheus text")
}

fn counters(s: &Scrape) -> HashMap<String, f64> {
    s.samples
        .iter()
        .filter_map(|x| match x.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => Some((x.metric.clone(), v)),
            _ => None,
        })
        .collect()
}

fn commit_lag_count(s: &Scrape) -> f64 {
    s.samples
        .iter()
        .find_map(|x| match &x.value {
            Value::Histogram(h) if x.metric == "pipeline_commit_lag_seconds" => h
                .iter()
                .find(|b| b.less_than.is_infinite())
                .map(|b| b.count),
            _ => None,
        })
        .unwrap_or(0.0)
}

#[test]
fn metrics_match_stats_and_grow_with_a_known_workload() {
    let w = start(WorkerOptions::new("metrics").var("METRICS_TOKEN", "scrape-only"));
    let c = w.client();

    // Without a token, or with a wrong one: 401. With METRICS_TOKEN: 200.
    let anon = w.anon_client();
    assert_eq!(
        anon.raw("GET", "/metrics", &[], None).expect("GET").status,
        401
    );
    assert_eq!(
        anon.raw("HEAD", "/metrics", &[], None)
            .expect("HEAD")
            .status,
        401
    );
    let scraper = anon.with_token(Some("scrape-only"));
    let _ = scrape(&scraper);
    // HEAD: the GET's status and type, no body.
    let head = scraper.raw("HEAD", "/metrics", &[], None).expect("HEAD");
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty(), "HEAD /metrics has a body");
    assert!(head
        .headers
        .get("Content-Type")
        .unwrap_or_default()
        .starts_with("text/plain; version=0.0.4"));
    let wrong = anon.with_token(Some("nope"));
    assert_eq!(
        wrong.raw("GET", "/metrics", &[], None).expect("GET").status,
        401
    );

    let before = scrape(&c);
    let lag_before = commit_lag_count(&before);
    // A known workload: three committed writes on three keys.
    let keys: Vec<String> = (0..3).map(|_| unique_key("metrics")).collect();
    for k in &keys {
        let r = c
            .raw(
                "PUT",
                &format!("/objects/{}", encode_key(k)),
                &[("Prefer", "wait=30")],
                Some(b"m"),
            )
            .expect("PUT");
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json().expect("JSON")["state"], "committed");
    }
    let after = scrape(&c);
    let m = counters(&after);
    let stats = c.stats().expect("/stats");
    for (name, want) in [
        ("pipeline_uploads_accepted_total", stats.accepted),
        ("pipeline_uploads_committed_total", stats.committed),
        ("pipeline_uploads_superseded_total", stats.superseded),
        ("pipeline_uploads_failed_total", stats.failed),
        ("pipeline_r2_writes_total", stats.r2_writes),
        ("pipeline_rate_limited_total", stats.rate_limited),
        ("pipeline_inflight", stats.inflight),
    ] {
        #[allow(clippy::cast_precision_loss)]
        let want = want as f64;
        assert_eq!(m.get(name).copied(), Some(want), "{name}");
    }
    assert!(m["pipeline_uploads_committed_total"] >= 3.0);
    assert!(
        commit_lag_count(&after) >= lag_before + 3.0,
        "the commit-lag histogram did not count the three commits"
    );
    // No object key appears anywhere, labels included.
    let text = c.raw("GET", "/metrics", &[], None).expect("GET").text();
    for k in &keys {
        assert!(!text.contains(k.as_str()), "a key leaked into /metrics");
    }
}
