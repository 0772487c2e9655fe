//! The inline limit on the local runtime: an async PUT whose queue message
//! (body base64 plus key, id and metadata) fits `INLINE_MESSAGE_MAX_BYTES`
//! (default 127,900: one queue message) travels inside the message; one
//! byte more and the Worker stages the body in R2 first. Both commit with
//! their bytes.
//!
//! The largest body that fits is computed from the real encoding
//! (`WriteMessage::largest_inline_body` on a message with this test's key,
//! id length, time and metadata), so the test probes the exact edge the
//! Worker's size check sees. Staging is observed as in the fault suites:
//! the write's send is delayed (`/_test/delayed`), and `/_test/staged`
//! lists the staged bodies meanwhile. This file holds one test, so nothing
//! else stages bodies on its worker. The same edge is checked for
//! `POST /batch` lines.

mod common;

use std::time::Duration;

use common::{delayed_put, staged, wait_staged};
use e2e::{now_ms, pseudo_random_bytes, shared, unique_key, COMMIT_TIMEOUT};
use pipeline_client::{GetOptions, UploadState};
use pipeline_core::config::DEFAULT_INLINE_MESSAGE_MAX_BYTES;
use pipeline_core::id::{sealed_id_len, WriteOp};
use pipeline_core::message::{BodyRef, WriteMessage, MESSAGE_VERSION};
use pipeline_core::meta::ObjectMeta;

/// The largest body whose message for `key` fits the default limit.
fn largest_inline_body(key: &str) -> usize {
    let template = WriteMessage {
        v: MESSAGE_VERSION,
        id: "x".repeat(sealed_id_len(key.len())),
        key: key.to_owned(),
        // Same digit count as the Worker's stamp (13 digits until 2286).
        accepted_ms: now_ms(),
        op: WriteOp::Put,
        size: 0,
        // `/_test/delayed` PUTs carry no metadata headers.
        meta: ObjectMeta::default(),
        body: BodyRef::Empty,
        idempotency_key: None,
        condition: None,
        callback_url: None,
    };
    usize::try_from(template.largest_inline_body(DEFAULT_INLINE_MESSAGE_MAX_BYTES))
        .expect("fits usize")
}

#[test]
fn a_body_at_the_limit_goes_inline_and_one_byte_more_is_staged() {
    let w = shared();
    let c = w.client();
    assert!(
        wait_staged(&c, 0, Duration::from_secs(20)).is_empty(),
        "staged bodies left before the test"
    );

    let key = unique_key("inline-edge");
    let limit = largest_inline_body(&key);
    // Above the old fixed limit (64 KiB), below the base64 bound (95,925).
    assert!((65_536..95_925).contains(&limit), "{limit}");

    // At the limit: inline. Nothing is staged while its send is delayed.
    let at = pseudo_random_bytes(limit, 1);
    let inline = delayed_put(&c, &key, &at, 3);
    assert_eq!(inline.accepted.size, limit as u64);
    assert_eq!(
        staged(&c),
        Vec::<String>::new(),
        "a body of {limit} B was staged"
    );
    let st = c.wait_terminal(inline.id(), COMMIT_TIMEOUT).unwrap();
    assert_eq!(st.state, UploadState::Committed, "{st:?}");
    let obj = c.get_object(&key, &GetOptions::default()).unwrap();
    assert!(
        obj.body == at,
        "stored {} B, not the inline body",
        obj.body.len()
    );

    // One byte more: the message would be over the limit, so the body is
    // staged (the size check, not the Content-Length bound, decides: the
    // body is below 95,925 B), then committed and its staged copy removed.
    let key2 = unique_key("inline-edge");
    let limit2 = largest_inline_body(&key2);
    let over = pseudo_random_bytes(limit2 + 1, 2);
    let staged_write = delayed_put(&c, &key2, &over, 3);
    let listed = staged(&c);
    assert_eq!(
        listed.len(),
        1,
        "a body of {} B: staged {listed:?}",
        limit2 + 1
    );
    let st = c.wait_terminal(staged_write.id(), COMMIT_TIMEOUT).unwrap();
    assert_eq!(st.state, UploadState::Committed, "{st:?}");
    let obj = c.get_object(&key2, &GetOptions::default()).unwrap();
    assert!(
        obj.body == over,
        "stored {} B, not the staged body",
        obj.body.len()
    );
    let left = wait_staged(&c, 0, Duration::from_secs(20));
    assert!(
        left.is_empty(),
        "staged body left after its commit: {left:?}"
    );

    // The same edge in one `POST /batch`: the line at its limit goes
    // inline, the line one byte over is staged (listed right after the
    // answer: the consumer waits max_batch_timeout, 1 s, for more).
    let (k3, k4) = (unique_key("inline-batch"), unique_key("inline-batch"));
    let (b3, b4) = (
        pseudo_random_bytes(largest_inline_body(&k3), 3),
        pseudo_random_bytes(largest_inline_body(&k4) + 1, 4),
    );
    let b64 = |b: &[u8]| match WriteMessage::inline(b) {
        BodyRef::Inline { data } => data,
        _ => String::new(),
    };
    let lines = format!(
        "{}\n{}\n",
        serde_json::json!({"op": "put", "key": k3, "body_base64": b64(&b3)}),
        serde_json::json!({"op": "put", "key": k4, "body_base64": b64(&b4)})
    );
    let r = c
        .raw("POST", "/batch", &[], Some(lines.as_bytes()))
        .expect("POST /batch");
    let listed = staged(&c);
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json().expect("batch JSON");
    assert_eq!(v["accepted"], 2, "{v}");
    assert_eq!(
        listed.len(),
        1,
        "batch lines at and over the edge: staged {listed:?}"
    );
    for (line, (key, body)) in v["results"]
        .as_array()
        .expect("results")
        .iter()
        .zip([(&k3, &b3), (&k4, &b4)])
    {
        let id = line["id"].as_str().expect("id");
        let st = c.wait_terminal(id, COMMIT_TIMEOUT).unwrap();
        assert_eq!(st.state, UploadState::Committed, "{st:?}");
        let obj = c.get_object(key, &GetOptions::default()).unwrap();
        assert!(obj.body == *body, "{key}: stored {} B", obj.body.len());
    }
    let left = wait_staged(&c, 0, Duration::from_secs(20));
    assert!(
        left.is_empty(),
        "staged body left after its commit: {left:?}"
    );
    eprintln!(
        "FIGURES inline-limit: largest inline body {limit} B (key of {} B); {} B staged; \
         batch lines of {} B inline and {} B staged",
        key.len(),
        limit2 + 1,
        b3.len(),
        b4.len()
    );
}
