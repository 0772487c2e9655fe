//! Two upload queues on the local runtime (`UPLOAD_QUEUES=2`: bindings
//! `UPLOADS` and `UPLOADS_1`, each with its own consumer, added by the
//! harness's `upload_queues` option): writes to many keys, through single
//! async PUTs/DELETEs and `POST /batch` at the same time, all end, `/stats`
//! counts them exactly, each key holds its newest write, and each queue
//! carried exactly the writes whose keys hash to it.
//!
//! Which queue carried what is read from the local runtime's own log line
//! per consumer invocation (`QUEUE <queue> <acked>/<total>`): nothing is
//! added to the Worker to observe it.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use common::{log_offset, log_since, n, queue_batches, verify_writes, Write};
use e2e::{binary_label, start, unique_key, wait_all, WorkerOptions};
use pipeline_client::{encode_key, Accepted, Client, Stats, UploadState};
use pipeline_core::message::{BodyRef, WriteMessage};
use pipeline_core::queues::shard_of;

const QUEUES: [&str; 2] = ["r2-pipeline-uploads", "r2-pipeline-uploads-1"];

fn b64(bytes: &[u8]) -> String {
    match WriteMessage::inline(bytes) {
        BodyRef::Inline { data } => data,
        _ => String::new(),
    }
}

fn body(key_no: usize, round: usize, via: &str) -> Vec<u8> {
    format!("key {key_no} round {round} via {via}").into_bytes()
}

/// One `POST /batch` with a line per key: a PUT, or a DELETE for the keys
/// in `deletes`. Every line must be accepted; each becomes a [`Write`].
fn batch(c: &Client, keys: &[String], round: usize, deletes: &[usize]) -> Vec<Write> {
    let mut lines = String::new();
    for (i, key) in keys.iter().enumerate() {
        let line = if deletes.contains(&i) {
            serde_json::json!({"op": "delete", "key": key})
        } else {
            serde_json::json!({"op": "put", "key": key, "body_base64": b64(&body(i, round, "batch"))})
        };
        lines.push_str(&line.to_string());
        lines.push('\n');
    }
    let r = c
        .raw(
            "POST",
            "/batch",
            &[("Content-Type", "application/x-ndjson")],
            Some(lines.as_bytes()),
        )
        .unwrap_or_else(|e| panic!("POST /batch: {e}"));
    assert_eq!(r.status, 200, "POST /batch: {}", r.text());
    let v = r.json().expect("batch JSON");
    assert_eq!(v["accepted"], keys.len(), "{v}");
    let results = v["results"].as_array().expect("results");
    results
        .iter()
        .enumerate()
        .map(|(i, line)| {
            let id = line["id"]
                .as_str()
                .unwrap_or_else(|| panic!("line {i}: {line}"));
            // The line's answer has no acceptance time: its status has.
            let st = c
                .upload_status(id, None)
                .unwrap_or_else(|e| panic!("status {id}: {e}"));
            let accepted = Accepted {
                id: id.to_owned(),
                key: keys[i].clone(),
                state: UploadState::Queued,
                accepted_at: st.accepted_at,
                size: st.size,
                status_url: format!("/uploads/{id}"),
                location: None,
            };
            if deletes.contains(&i) {
                Write::delete(accepted)
            } else {
                Write::put(accepted, body(i, round, "batch"))
            }
        })
        .collect()
}

/// Single async writes, one per key: a PUT, or a DELETE for `deletes`.
fn singles(c: &Client, keys: &[String], round: usize, deletes: &[usize]) -> Vec<Write> {
    keys.iter()
        .enumerate()
        .map(|(i, key)| {
            if deletes.contains(&i) {
                let a = c
                    .delete_object(key)
                    .unwrap_or_else(|e| panic!("DELETE {key}: {e}"));
                Write::delete(a)
            } else {
                let b = body(i, round, "put");
                let r = c
                    .raw(
                        "PUT",
                        &format!("/objects/{}", encode_key(key)),
                        &[],
                        Some(&b),
                    )
                    .unwrap_or_else(|e| panic!("PUT {key}: {e}"));
                Write::put(common::accepted_of(&r, "PUT"), b)
            }
        })
        .collect()
}

/// `/stats` once the counters stopped moving with nothing in flight (the
/// schedulers push their counts a moment after the writes end).
fn settled_stats(c: &Client, writes: usize) -> Stats {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = c.stats().expect("GET /stats");
        if (s.inflight == 0 && s.accepted == n(writes)) || Instant::now() >= deadline {
            return s;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn writes_spread_over_two_queues_all_commit_newest_per_key() {
    let w = start(
        WorkerOptions::new(&binary_label())
            .upload_queues(2)
            .log_level("log"),
    );
    let c = w.client();
    let offset = log_offset(&w);
    let keys: Vec<String> = (0..24)
        .map(|i| unique_key(&format!("sharded-{i}")))
        .collect();
    let per_queue = |ks: &[String]| {
        let mut m = BTreeMap::new();
        for k in ks {
            *m.entry(shard_of(k, 2)).or_insert(0usize) += 1;
        }
        m
    };
    assert_eq!(
        per_queue(&keys).len(),
        2,
        "24 keys all hash to one queue: {:?}",
        per_queue(&keys)
    );

    // Three rounds; in each, single writes and a batch race over every key.
    let mut writes: Vec<Write> = Vec::new();
    for round in 0..3 {
        let deletes: Vec<usize> = if round == 1 { vec![0, 7, 13] } else { vec![] };
        let batch_deletes: Vec<usize> = if round == 2 { vec![5, 13] } else { vec![] };
        let (a, b) = std::thread::scope(|s| {
            let a = s.spawn(|| singles(&c, &keys, round, &deletes));
            let b = s.spawn(|| batch(&c, &keys, round, &batch_deletes));
            (a.join().expect("singles"), b.join().expect("batch"))
        });
        writes.extend(a);
        writes.extend(b);
    }
    let ids: Vec<String> = writes.iter().map(|w| w.id().to_owned()).collect();
    // No restart here: every write must end, however long either local
    // queue takes to deliver it (settle() takes ids still queued after a
    // short wait as lost with a restarted runtime's queue).
    let (statuses, late) = wait_all(&c, &ids, Instant::now() + Duration::from_secs(120), 8);
    assert!(
        late.is_empty(),
        "writes not terminal within 120 s: {late:?}"
    );
    let refs: Vec<&Write> = writes.iter().collect();
    let t = verify_writes(&c, &refs, &statuses, &HashMap::new());
    assert_eq!(t.failed, 0, "failed writes: {t:?}");
    assert_eq!(t.committed + t.superseded, writes.len(), "{t:?}");

    let s = settled_stats(&c, writes.len());
    assert_eq!(
        (s.accepted, s.committed, s.superseded, s.failed, s.inflight),
        (n(writes.len()), n(t.committed), n(t.superseded), 0, 0),
        "/stats {s:?} vs {t:?}"
    );
    assert_eq!(s.r2_writes, n(t.committed), "/stats {s:?}");

    // Each queue's consumer acked exactly the writes whose keys hash to it
    // (every write is one message; the local queue repeats none unless
    // retried, and a retried message is acked once, when it succeeds).
    let log = log_since(&w, offset);
    let mut expected = [0u64; 2];
    for wr in &writes {
        expected[shard_of(wr.key(), 2) as usize] += 1;
    }
    let acked: Vec<u64> = QUEUES
        .iter()
        .map(|q| queue_batches(&log, q).iter().map(|b| b.0).sum())
        .collect();
    eprintln!(
        "FIGURES sharded: {} writes to {} keys over 2 queues; acked per queue {acked:?} \
         (expected {expected:?}); {} committed, {} superseded; /stats {s:?}",
        writes.len(),
        keys.len(),
        t.committed,
        t.superseded
    );
    assert!(expected.iter().all(|e| *e > 0), "{expected:?}");
    assert_eq!(acked, expected.to_vec(), "acked per queue");
}

#[test]
fn a_missing_queue_binding_fails_every_write_loudly_and_stores_nothing() {
    // UPLOAD_QUEUES=2 with only `UPLOADS` bound (the deployed config).
    let w = start(WorkerOptions::new(&binary_label()).var("UPLOAD_QUEUES", "2"));
    let c = w.client();
    // Keys of both queues: writes to shard 0 fail too, so a half-bound
    // deployment is noticed at once, and no write is sent elsewhere.
    let mut keys: Vec<String> = Vec::new();
    for i in 0.. {
        let k = unique_key(&format!("unbound-{i}"));
        if keys.iter().all(|o| shard_of(o, 2) != shard_of(&k, 2)) {
            keys.push(k);
        }
        if keys.len() == 2 {
            break;
        }
    }
    for key in &keys {
        let r = c
            .raw(
                "PUT",
                &format!("/objects/{}", encode_key(key)),
                &[],
                Some(b"x"),
            )
            .unwrap_or_else(|e| panic!("PUT {key}: {e}"));
        assert_eq!(r.status, 500, "{key}: {}", r.text());
        assert_eq!(r.error_code().as_deref(), Some("internal_error"));
        assert!(r.text().contains("UPLOADS_1"), "{}", r.text());
    }
    let lines: String = keys
        .iter()
        .map(|k| {
            format!(
                "{}\n",
                serde_json::json!({"op": "put", "key": k, "body_base64": "eA=="})
            )
        })
        .collect();
    let r = c
        .raw("POST", "/batch", &[], Some(lines.as_bytes()))
        .expect("POST /batch");
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json().expect("batch JSON");
    assert_eq!(
        (v["accepted"].as_u64(), v["rejected"].as_u64()),
        (Some(0), Some(2)),
        "{v}"
    );
    for line in v["results"].as_array().expect("results") {
        assert_eq!(line["error"]["code"], "internal_error", "{line}");
    }
    std::thread::sleep(Duration::from_secs(2));
    for key in &keys {
        assert!(c
            .get_object(key, &pipeline_client::GetOptions::default())
            .is_err());
    }
    let s = c.stats().expect("GET /stats");
    assert_eq!(s.accepted, 0, "{s:?}");
}
