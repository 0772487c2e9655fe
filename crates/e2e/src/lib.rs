//! Shared helpers of the end-to-end specs in `tests/`.
//!
//! Each file in `tests/` is its own test binary and starts one
//! [`LocalWorker`] for its tests ([`shared`]); tests that need isolated
//! state or restarts start their own. Keys are unique per test
//! ([`unique_key`]), so tests sharing a worker never see each other's data.
//! Writes are awaited with the status long-poll ([`put_committed`],
//! [`wait_all`]), never with sleeps.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};
pub use pipeline_client::harness::{LocalWorker, WorkerOptions};
use pipeline_client::{
    Accepted, Client, ClientError, PutOptions, RawResponse, Stats, UploadState, UploadStatus,
};

/// How long a single write may take to reach a terminal state in the specs.
pub const COMMIT_TIMEOUT: Duration = Duration::from_secs(30);

/// The test binary's name without cargo's hash (e.g. `uploads`).
#[must_use]
pub fn binary_label() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .map(|s| s.split('-').next().unwrap_or("e2e").to_owned())
        .unwrap_or_else(|| "e2e".into())
}

/// The worker shared by the tests of one test binary, started on first use
/// with the default options (`API_TOKEN=test-token`).
///
/// # Panics
///
/// When the worker cannot be started (every test of the file then fails with
/// the harness's message, which includes the log's tail).
pub fn shared() -> &'static LocalWorker {
    static WORKER: OnceLock<Result<LocalWorker, String>> = OnceLock::new();
    match WORKER.get_or_init(|| {
        LocalWorker::start(WorkerOptions::new(&binary_label())).map_err(|e| e.to_string())
    }) {
        Ok(w) => w,
        Err(e) => panic!("starting the shared worker failed: {e}"),
    }
}

/// Starts a worker with `opts`, panicking with the harness's message.
///
/// # Panics
///
/// When the worker cannot be started.
#[must_use]
pub fn start(opts: WorkerOptions) -> LocalWorker {
    LocalWorker::start(opts).unwrap_or_else(|e| panic!("starting a worker failed: {e}"))
}

/// A key no other test (or run) uses: `e2e/<label>/<pid>-<seq>-<nanos>`.
#[must_use]
pub fn unique_key(label: &str) -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "e2e/{label}/{}-{}-{nanos}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// Parses an API time, checking the contract's format: RFC 3339, UTC, with
/// exactly three fractional digits (`2026-01-01T00:00:00.000Z`).
///
/// # Panics
///
/// When the string is not such a time.
#[must_use]
pub fn parse_time(s: &str) -> DateTime<Utc> {
    let frac_ok = s.len() >= 24
        && s.as_bytes().get(19) == Some(&b'.')
        && s[20..23].bytes().all(|b| b.is_ascii_digit())
        && matches!(&s[23..], "Z" | "+00:00");
    assert!(
        frac_ok,
        "time {s:?} is not RFC 3339 UTC with milliseconds (YYYY-MM-DDTHH:MM:SS.mmmZ)"
    );
    DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("time {s:?} is not RFC 3339: {e}"))
        .with_timezone(&Utc)
}

/// An API time in Unix milliseconds (see [`parse_time`]).
///
/// # Panics
///
/// As [`parse_time`].
#[must_use]
pub fn ms(s: &str) -> i64 {
    parse_time(s).timestamp_millis()
}

/// Now, in Unix milliseconds.
#[must_use]
pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// Asserts that `result` is the API error `status`/`code`, returning its headers.
///
/// # Panics
///
/// On any other outcome.
#[track_caller]
pub fn expect_api_error<T: std::fmt::Debug>(
    result: Result<T, ClientError>,
    status: u16,
    code: &str,
) -> pipeline_client::Headers {
    match result {
        Err(ClientError::Api {
            status: s,
            code: c,
            headers,
            ..
        }) if s == status && c == code => headers,
        other => panic!("expected HTTP {status} {code}, got {other:?}"),
    }
}

/// Asserts that a raw answer is the JSON error `status`/`code`.
///
/// # Panics
///
/// On any other answer.
#[track_caller]
pub fn expect_raw_error(resp: &RawResponse, status: u16, code: &str, what: &str) {
    assert_eq!(
        (resp.status, resp.error_code().as_deref()),
        (status, Some(code)),
        "{what}: expected HTTP {status} {code}, got {} {}",
        resp.status,
        resp.text()
    );
}

/// Asynchronously writes `body` to `key` and waits until it is committed.
///
/// # Panics
///
/// When the write is refused or does not commit within [`COMMIT_TIMEOUT`].
pub fn put_committed(
    client: &Client,
    key: &str,
    body: &[u8],
    opts: &PutOptions,
) -> (Accepted, UploadStatus) {
    let accepted = client
        .put_object(key, body, opts)
        .unwrap_or_else(|e| panic!("PUT {key}: {e}"));
    let status = client
        .wait_terminal(&accepted.id, COMMIT_TIMEOUT)
        .unwrap_or_else(|e| panic!("waiting for {} ({key}): {e}", accepted.id));
    assert_eq!(
        status.state,
        UploadState::Committed,
        "write {} to {key} did not commit: {status:?}",
        accepted.id
    );
    (accepted, status)
}

/// Ids that were not terminal in time, with their last state.
pub type NotTerminal = Vec<(String, String)>;

/// Waits until every id is terminal, polling from `threads` threads, all
/// before `deadline`. Returns the statuses by id, plus the ids that were not
/// terminal in time (with their last state).
///
/// # Panics
///
/// On an error other than a timeout.
#[must_use]
pub fn wait_all(
    client: &Client,
    ids: &[String],
    deadline: Instant,
    threads: usize,
) -> (HashMap<String, UploadStatus>, NotTerminal) {
    let chunks: Vec<Vec<String>> = (0..threads.max(1))
        .map(|t| {
            ids.iter()
                .skip(t)
                .step_by(threads.max(1))
                .cloned()
                .collect()
        })
        .collect();
    let results: Vec<(Vec<UploadStatus>, NotTerminal)> = std::thread::scope(|s| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                let client = client.clone();
                s.spawn(move || {
                    let mut done = Vec::new();
                    let mut late = Vec::new();
                    for id in chunk {
                        let left = deadline.saturating_duration_since(Instant::now());
                        match client.wait_terminal(&id, left.max(Duration::from_millis(1))) {
                            Ok(st) if Instant::now() <= deadline + Duration::from_millis(500) => {
                                done.push(st);
                            }
                            Ok(st) => {
                                late.push((id, format!("{} (after deadline)", st.state.as_str())))
                            }
                            Err(ClientError::NotTerminal { last_state, .. }) => {
                                late.push((id, last_state));
                            }
                            Err(e) => panic!("status of {id}: {e}"),
                        }
                    }
                    (done, late)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("status poller panicked"))
            .collect()
    });
    let mut statuses = HashMap::new();
    let mut late = Vec::new();
    for (done, l) in results {
        for st in done {
            statuses.insert(st.id.clone(), st);
        }
        late.extend(l);
    }
    (statuses, late)
}

/// How soon a write that ended shows in `/stats` when the client did not
/// learn its end through a status poll (a sync write's answer, a `429`):
/// the key's scheduler pushes from its alarm, at most once a second
/// (docs/API.md, "Operations").
pub const STATS_PUSH_BOUND: Duration = Duration::from_secs(2);

/// Reads `/stats` until `done` holds or [`STATS_PUSH_BOUND`] has passed;
/// the last reading either way.
pub fn stats_within(c: &Client, done: impl Fn(&Stats) -> bool) -> Stats {
    let deadline = Instant::now() + STATS_PUSH_BOUND;
    loop {
        let s = c.stats().expect("GET /stats");
        if done(&s) || Instant::now() >= deadline {
            return s;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `/stats` once the counts of writes that ended without a status poll
/// (sync answers, `429`s, writes no one polled) have all been pushed: two
/// readings [`STATS_PUSH_BOUND`] apart that agree, with nothing in flight.
/// For tests that compare a "before" with an "after".
pub fn stats_settled(c: &Client) -> Stats {
    let mut last = c.stats().expect("GET /stats");
    for _ in 0..10 {
        std::thread::sleep(STATS_PUSH_BOUND);
        let now = c.stats().expect("GET /stats");
        if now == last && now.inflight == 0 {
            return now;
        }
        last = now;
    }
    last
}

/// Deterministic pseudo-random bytes (xorshift64*), for large bodies.
#[must_use]
pub fn pseudo_random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// An ETag without quotes or a weak prefix, for comparing the status's
/// `etag` with the `ETag` header.
#[must_use]
pub fn bare_etag(etag: &str) -> &str {
    etag.trim_start_matches("W/").trim_matches('"')
}

/// The comma-separated tokens of a header value, trimmed and lower-cased.
#[must_use]
pub fn header_tokens(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_must_have_milliseconds_and_utc() {
        assert_eq!(ms("1970-01-01T00:00:01.500Z"), 1500);
        assert_eq!(ms("1970-01-01T00:00:01.500+00:00"), 1500);
        for bad in [
            "1970-01-01T00:00:01Z",
            "1970-01-01T00:00:01.5Z",
            "1970-01-01T01:00:01.500+01:00",
            "yesterday",
        ] {
            assert!(std::panic::catch_unwind(|| ms(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn helpers() {
        assert_eq!(bare_etag("W/\"abc\""), "abc");
        assert_eq!(bare_etag("abc"), "abc");
        assert_eq!(header_tokens(" ETag, Location ,"), vec!["etag", "location"]);
        assert_eq!(pseudo_random_bytes(10, 1), pseudo_random_bytes(10, 1));
        assert_ne!(pseudo_random_bytes(10, 1), pseudo_random_bytes(10, 2));
        assert!(unique_key("x").starts_with("e2e/x/"));
        assert_ne!(unique_key("x"), unique_key("x"));
    }
}
