//! `POST /batch` on the local runtime: each line validated on its own,
//! results in line order, accepted lines exactly like single writes (they
//! commit, with their metadata), refused lines change nothing, whole-batch
//! limits.

use std::time::Duration;

use e2e::{shared, unique_key};
use pipeline_client::{encode_key, Client, GetOptions, RawResponse};

fn b64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn post(c: &Client, body: &str) -> RawResponse {
    c.raw(
        "POST",
        "/batch",
        &[("Content-Type", "application/x-ndjson")],
        Some(body.as_bytes()),
    )
    .unwrap_or_else(|e| panic!("POST /batch: {e}"))
}

fn wait_terminal(c: &Client, id: &str) -> String {
    c.wait_committed(id, Duration::from_secs(60))
        .map(|s| s.state.as_str().to_string())
        .or_else(|_| {
            c.upload_status(id, Some(30))
                .map(|s| s.state.as_str().to_string())
        })
        .unwrap_or_else(|e| panic!("status of {id}: {e}"))
}

#[test]
fn lines_are_accepted_or_refused_each_on_its_own_in_order() {
    let c = shared().client();
    let (a, b, d) = (
        unique_key("batch-a"),
        unique_key("batch-b"),
        unique_key("batch-d"),
    );
    let big = vec![b'z'; 100 * 1024];
    let lines = [
        format!(
            r#"{{"op":"put","key":"{a}","body_base64":"{}","content_type":"text/plain","meta":{{"colour":"blue"}}}}"#,
            b64(b"alpha")
        ),
        r#"{"op":"put","key":"_pipeline/nope","body_base64":"eA=="}"#.to_string(),
        format!(
            r#"{{"op":"put","key":"{b}","body_base64":"{}"}}"#,
            b64(&big)
        ),
        format!(r#"{{"op":"put","key":"{d}","body_base64":"***"}}"#),
        format!(r#"{{"op":"delete","key":"{d}"}}"#),
    ];
    let r = post(&c, &lines.join("\n"));
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json().expect("JSON");
    assert_eq!(v["accepted"], 3, "{v}");
    assert_eq!(v["rejected"], 2, "{v}");
    let res = v["results"].as_array().expect("results");
    assert_eq!(res.len(), 5);
    assert_eq!(res[0]["key"], a.as_str());
    assert_eq!(res[0]["state"], "queued");
    assert_eq!(res[1]["error"]["code"], "invalid_key");
    assert_eq!(res[3]["error"]["code"], "invalid_body");
    assert_eq!(res[3]["key"], d.as_str());
    for i in [0, 2, 4] {
        let id = res[i]["id"].as_str().expect("id");
        assert_eq!(res[i]["status_url"], format!("/uploads/{id}").as_str());
        assert_eq!(wait_terminal(&c, id), "committed", "line {i}");
    }
    let obj = c.get_object(&a, &GetOptions::default()).expect("GET a");
    assert_eq!(obj.body, b"alpha");
    assert_eq!(obj.meta("colour"), Some("blue"));
    let obj = c.get_object(&b, &GetOptions::default()).expect("GET b");
    assert_eq!(obj.body, big, "the staged line");
    let r = c
        .raw("GET", &format!("/objects/{}", encode_key(&d)), &[], None)
        .expect("GET d");
    assert_eq!(
        r.status, 404,
        "the refused put changed nothing, the delete removed nothing there"
    );
}

#[test]
fn repeats_in_one_batch_share_the_first_id() {
    let c = shared().client();
    let k = unique_key("batch-idem");
    let line = format!(
        r#"{{"op":"put","key":"{k}","body_base64":"{}","idempotency_key":"once-{k}"}}"#,
        b64(b"x")
    );
    let r = post(&c, &format!("{line}\n{line}"));
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json().expect("JSON");
    let res = v["results"].as_array().expect("results");
    assert_eq!(res[0]["id"], res[1]["id"], "{v}");
}

#[test]
fn whole_batch_limits_and_auth() {
    let c = shared().client();
    let many = (0..101)
        .map(|i| format!(r#"{{"op":"delete","key":"batch-many/{i}"}}"#))
        .collect::<Vec<_>>()
        .join("\n");
    let r = post(&c, &many);
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(r.error_code().as_deref(), Some("payload_too_large"));
    for bad in ["not json", "[1,2]", ""] {
        let r = post(&c, bad);
        assert_eq!(r.status, 400, "{bad:?}: {}", r.text());
        assert_eq!(r.error_code().as_deref(), Some("invalid_body"));
    }
    let huge = format!(
        r#"{{"op":"put","key":"batch-huge","body_base64":"{}"}}"#,
        "A".repeat(1_100_000)
    );
    let r = post(&c, &huge);
    assert_eq!(r.status, 413, "{}", r.text());
    let anon = shared().anon_client();
    let r = anon
        .raw("POST", "/batch", &[], Some(br#"{"op":"delete","key":"x"}"#))
        .expect("POST");
    assert_eq!(r.status, 401);
    let r = c.raw("GET", "/batch", &[], None).expect("GET /batch");
    assert_eq!(r.status, 405);
}
