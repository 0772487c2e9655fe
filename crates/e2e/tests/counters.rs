//! Counters: strongly consistent Durable Object counters (`docs/API.md`
//! "Counters").

use std::collections::BTreeSet;

use e2e::{expect_api_error, expect_raw_error, shared, start, unique_key, WorkerOptions};
use pipeline_client::Client;

/// A counter name no other test uses (names allow `[A-Za-z0-9._:-]`).
fn unique_counter(label: &str) -> String {
    unique_key(label).replace('/', ":")
}

#[test]
fn never_touched_counter_is_zero() {
    let c = shared().anon_client();
    let name = unique_counter("fresh");
    let got = c.counter(&name).unwrap();
    assert_eq!((got.name.as_str(), got.value), (name.as_str(), 0));
    // Allowed characters and the 256-byte maximum.
    for name in ["a", "A.b_c:d-9", &"z".repeat(256)] {
        assert_eq!(c.counter(name).unwrap().value, 0, "{name}");
    }
}

#[test]
fn two_hundred_concurrent_increments_end_at_exactly_200() {
    let w = shared();
    let name = unique_counter("concurrent");
    let threads = 20;
    let per_thread = 10;
    let values: Vec<i64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                // A client (connection pool) per thread: parallel clients.
                let c = w.client();
                let name = name.clone();
                s.spawn(move || {
                    (0..per_thread)
                        .map(|_| c.increment(&name, None).expect("increment").value)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("incrementing thread panicked"))
            .collect()
    });
    assert_eq!(w.client().counter(&name).unwrap().value, 200);
    // Strong consistency: each increment saw its own new value, 1 to 200.
    let seen: BTreeSet<i64> = values.iter().copied().collect();
    assert_eq!(
        seen,
        (1..=200).collect::<BTreeSet<i64>>(),
        "values returned: {values:?}"
    );
}

#[test]
fn increment_decrement_by_and_reset() {
    let c = shared().client();
    let name = unique_counter("steps");
    let step = |r: Result<pipeline_client::Counter, _>| {
        let got = r.unwrap();
        assert_eq!(got.name, name);
        got.value
    };
    assert_eq!(step(c.increment(&name, None)), 1);
    assert_eq!(step(c.increment(&name, Some(5))), 6);
    assert_eq!(step(c.decrement(&name, None)), 5);
    assert_eq!(step(c.decrement(&name, Some(7))), -2);
    assert_eq!(step(c.increment(&name, Some(-3))), -5);
    assert_eq!(step(c.decrement(&name, Some(-10))), 5);
    assert_eq!(step(c.increment(&name, Some(0))), 5);
    assert_eq!(step(c.counter(&name)), 5);
    // A body without `by` means 1, as does an empty body.
    let r = c
        .raw(
            "POST",
            &format!("/counters/{name}/increment"),
            &[("Content-Type", "application/json")],
            Some(b"{}"),
        )
        .unwrap();
    assert_eq!(
        (r.status, r.json().unwrap()["value"].as_i64()),
        (200, Some(6)),
        "{}",
        r.text()
    );
    c.reset_counter(&name).unwrap();
    assert_eq!(step(c.counter(&name)), 0);
    // Resetting a never-touched counter is fine too.
    c.reset_counter(&unique_counter("never")).unwrap();
    let r = c
        .raw("DELETE", &format!("/counters/{name}"), &[], None)
        .unwrap();
    assert_eq!(r.status, 204);
    assert!(r.body.is_empty(), "204 with a body: {}", r.text());
}

#[test]
fn bad_bodies_are_400_invalid_body_and_change_nothing() {
    let c = shared().client();
    let name = unique_counter("bodies");
    assert_eq!(c.increment(&name, Some(7)).unwrap().value, 7);
    let bodies: [&[u8]; 11] = [
        br#"{"by":"x"}"#,
        br#"{"by":"1"}"#,
        b"not json",
        b"{",
        br#"{"by":1.5}"#,
        br#"{"by":9223372036854775808}"#,
        br#"{"by":-9223372036854775809}"#,
        br#"{"by":true}"#,
        br#"{"by":[1]}"#,
        b"[1]",
        br#""by""#,
    ];
    for action in ["increment", "decrement"] {
        for body in bodies {
            let r = c
                .raw(
                    "POST",
                    &format!("/counters/{name}/{action}"),
                    &[("Content-Type", "application/json")],
                    Some(body),
                )
                .unwrap();
            expect_raw_error(
                &r,
                400,
                "invalid_body",
                &format!("{action} with {}", String::from_utf8_lossy(body)),
            );
        }
    }
    assert_eq!(c.counter(&name).unwrap().value, 7);
}

#[test]
fn invalid_names_are_400_invalid_name() {
    let c = shared().client();
    let long = "n".repeat(257);
    // Percent-encoded as the client sends them (each a single path segment).
    let names = [
        long.as_str(),
        "a b",
        "a/b",
        "ü",
        "a*b",
        "a!b",
        "a+b",
        "a%b",
        "a,b",
        "a@b",
        "tab\t",
        "#",
    ];
    for name in names {
        let seg = pipeline_client::encode_counter_name(name);
        for (method, path) in [
            ("GET", format!("/counters/{seg}")),
            ("POST", format!("/counters/{seg}/increment")),
            ("POST", format!("/counters/{seg}/decrement")),
            ("DELETE", format!("/counters/{seg}")),
        ] {
            let r = c.raw(method, &path, &[], Some(b"")).unwrap();
            expect_raw_error(&r, 400, "invalid_name", &format!("{method} {path}"));
        }
    }
}

#[test]
fn an_empty_name_is_refused() {
    // `/counters/` and `/counters//increment` name the counter "": either the
    // counter route refuses the name, or no route matches. Never a counter.
    let c = shared().client();
    for (method, path) in [
        ("GET", "/counters/"),
        ("DELETE", "/counters/"),
        ("POST", "/counters//increment"),
        ("POST", "/counters//decrement"),
    ] {
        let r = c.raw(method, path, &[], Some(b"")).unwrap();
        let got = (r.status, r.error_code());
        assert!(
            matches!(got, (400, Some(ref code)) if code == "invalid_name")
                || matches!(got, (404, Some(ref code)) if code == "not_found"),
            "{method} {path}: {} {}",
            r.status,
            r.text()
        );
    }
}

#[test]
fn overflow_is_422_and_changes_nothing() {
    let c = shared().client();
    let up = unique_counter("overflow-up");
    assert_eq!(c.increment(&up, Some(i64::MAX)).unwrap().value, i64::MAX);
    expect_api_error(c.increment(&up, Some(1)), 422, "counter_overflow");
    expect_api_error(c.increment(&up, None), 422, "counter_overflow");
    expect_api_error(c.decrement(&up, Some(-1)), 422, "counter_overflow");
    expect_api_error(c.increment(&up, Some(i64::MAX)), 422, "counter_overflow");
    assert_eq!(c.counter(&up).unwrap().value, i64::MAX);
    assert_eq!(c.decrement(&up, Some(1)).unwrap().value, i64::MAX - 1);

    let down = unique_counter("overflow-down");
    assert_eq!(c.decrement(&down, Some(i64::MAX)).unwrap().value, -i64::MAX);
    assert_eq!(c.decrement(&down, None).unwrap().value, i64::MIN);
    expect_api_error(c.decrement(&down, None), 422, "counter_overflow");
    expect_api_error(c.increment(&down, Some(i64::MIN)), 422, "counter_overflow");
    assert_eq!(c.counter(&down).unwrap().value, i64::MIN);

    // `by = i64::MIN` fits i64, but negating it for a decrement does not.
    let zero = unique_counter("overflow-min");
    expect_api_error(c.decrement(&zero, Some(i64::MIN)), 422, "counter_overflow");
    assert_eq!(c.counter(&zero).unwrap().value, 0);
    assert_eq!(c.increment(&zero, Some(i64::MIN)).unwrap().value, i64::MIN);
}

#[test]
fn value_survives_a_runtime_restart() {
    let mut w = start(WorkerOptions::new("counters-restart"));
    let name = unique_counter("durable");
    let c: Client = w.client();
    assert_eq!(c.increment(&name, Some(41)).unwrap().value, 41);
    assert_eq!(c.increment(&name, None).unwrap().value, 42);
    w.restart().expect("restart on the same state");
    let c = w.client();
    assert_eq!(
        c.counter(&name).unwrap().value,
        42,
        "value lost across a restart"
    );
    assert_eq!(c.increment(&name, None).unwrap().value, 43);
    // And after a crash (SIGKILL of the whole group) too.
    w.kill();
    w.restart().expect("restart after a kill");
    assert_eq!(w.client().counter(&name).unwrap().value, 43);
}
