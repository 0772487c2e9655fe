//! The staging sweep (the Worker's cron trigger) on the local runtime:
//! staged bodies that no write refers to and that are older than the
//! horizon are deleted; younger ones, and the bodies of writes in flight,
//! stay. The horizon rule itself (older than the status retention) is
//! proven by the deterministic simulator.

mod common;

use std::time::Duration;

use e2e::{put_committed, shared, unique_key};
use pipeline_client::PutOptions;

fn stage_orphan(c: &pipeline_client::Client, body: &[u8]) -> String {
    let r = c
        .raw("PUT", "/_test/stage-orphan", &[], Some(body))
        .unwrap_or_else(|e| panic!("stage-orphan: {e}"));
    assert_eq!(r.status, 201, "stage-orphan: {}", r.text());
    r.json().expect("JSON")["staged_key"]
        .as_str()
        .expect("staged_key")
        .to_string()
}

fn sweep(c: &pipeline_client::Client, older_than_ms: u32) -> serde_json::Value {
    let r = c
        .raw(
            "POST",
            &format!("/_test/sweep?older_than_ms={older_than_ms}"),
            &[],
            None,
        )
        .unwrap_or_else(|e| panic!("sweep: {e}"));
    assert_eq!(r.status, 200, "sweep: {}", r.text());
    r.json().expect("JSON")
}

#[test]
fn the_sweep_deletes_old_orphans_and_keeps_young_ones() {
    let w = shared();
    let c = w.client();
    let orphan = stage_orphan(&c, b"left behind by a producer that died");
    assert!(common::staged(&c).contains(&orphan));

    // Younger than an hour: kept.
    let s = sweep(&c, 3_600_000);
    assert!(s["listed"].as_u64().unwrap_or(0) >= 1, "{s}");
    assert!(
        common::staged(&c).contains(&orphan),
        "a young orphan was swept"
    );

    // Older than 1 s: deleted.
    std::thread::sleep(Duration::from_millis(1100));
    let s = sweep(&c, 1000);
    assert!(s["deleted"].as_u64().unwrap_or(0) >= 1, "{s}");
    assert!(
        !common::staged(&c).contains(&orphan),
        "the old orphan is still there"
    );

    // Writes go on normally afterwards.
    let key = unique_key("sweep-after");
    put_committed(&c, &key, b"still fine", &PutOptions::default());
}
