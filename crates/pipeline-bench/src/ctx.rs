//! What every scenario shares: the client, the run's key prefix, the
//! runtime's process group, and the list of functional failures.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use pipeline_client::{Client, ClientError, Stats, UploadState, UploadStatus};

/// Shared state of a run.
pub struct Ctx {
    /// A client with the token.
    pub client: Client,
    /// Prefix of every key this run writes (`bench/<run id>`).
    pub prefix: String,
    /// The `wrangler dev` process group, when the bench started the Worker.
    pub pgid: Option<i32>,
    /// How long one write may take to reach a terminal state.
    pub commit_timeout: Duration,
    failures: Mutex<Vec<String>>,
}

impl Ctx {
    /// A context.
    #[must_use]
    pub fn new(
        client: Client,
        prefix: String,
        pgid: Option<i32>,
        commit_timeout: Duration,
    ) -> Self {
        Self {
            client,
            prefix,
            pgid,
            commit_timeout,
            failures: Mutex::new(Vec::new()),
        }
    }

    /// Records something functionally broken (a wrong final object, an id
    /// that never ends, a spacing violation): the run then exits non-zero.
    pub fn fail(&self, what: impl Into<String>) {
        let what = what.into();
        eprintln!("FAILURE: {what}");
        if let Ok(mut f) = self.failures.lock() {
            f.push(what);
        }
    }

    /// The failures so far.
    #[must_use]
    pub fn failures(&self) -> Vec<String> {
        self.failures.lock().map(|f| f.clone()).unwrap_or_default()
    }

    /// A key under this run's prefix.
    #[must_use]
    pub fn key(&self, rest: &str) -> String {
        format!("{}/{rest}", self.prefix)
    }

    /// Waits until `/stats` shows nothing in flight, or `timeout`. Returns
    /// the seconds waited and whether it drained.
    #[must_use]
    pub fn wait_drained(&self, timeout: Duration) -> (f64, bool) {
        self.wait_drained_while(timeout, false)
    }

    /// As [`Ctx::wait_drained`], but the wait goes on as long as the
    /// in-flight count keeps falling: it gives up only after `stall` with
    /// no progress. For a backlog whose size is the load's, not fixed (the
    /// batch route accepts thousands of writes the local runtime commits at
    /// about a hundred a second).
    #[must_use]
    pub fn wait_drained_progressing(&self, stall: Duration) -> (f64, bool) {
        self.wait_drained_while(stall, true)
    }

    fn wait_drained_while(&self, timeout: Duration, progressing: bool) -> (f64, bool) {
        let start = Instant::now();
        let mut low: Option<i64> = None;
        let mut since = Instant::now();
        loop {
            match self.client.stats() {
                Ok(Stats { inflight: 0, .. }) => return (start.elapsed().as_secs_f64(), true),
                Ok(s) if progressing && low.is_none_or(|l| s.inflight < l) => {
                    low = Some(s.inflight);
                    since = Instant::now();
                }
                _ => {}
            }
            if since.elapsed() >= timeout {
                return (start.elapsed().as_secs_f64(), false);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The terminal status of `id` (long-polling up to the commit timeout).
    ///
    /// # Errors
    ///
    /// As [`Client::wait_terminal`].
    pub fn terminal(&self, id: &str) -> Result<UploadStatus, ClientError> {
        self.client.wait_terminal(id, self.commit_timeout)
    }

    /// The terminal status of each of `ids`, long-polled on 8 threads, all
    /// within one commit timeout (so that a stuck pipeline costs one
    /// timeout, not one per id).
    #[must_use]
    pub fn terminal_all(
        &self,
        ids: &[&str],
        label: &str,
    ) -> Vec<Result<UploadStatus, ClientError>> {
        let deadline = Instant::now() + self.commit_timeout;
        crate::load::parallel_map(ids, 8, label, |id| {
            let left = deadline.saturating_duration_since(Instant::now());
            self.client.wait_terminal(id, left)
        })
    }
}

/// Largest share of a route's requests that may fail in the local runtime's
/// own transport (see [`is_runtime_transient`]) before the run counts it
/// as broken.
pub const RUNTIME_ERROR_BUDGET: f64 = 0.05;

/// Whether an error message (from [`pipeline_client::ClientError`] or a
/// raw answer) is a failure of the local runtime's transport rather than
/// an answer of the Worker: no HTTP answer at all, or the `503` that
/// wrangler dev's proxy gives when its fetch to the Worker fails ("Your
/// worker restarted mid-request", also sent when nothing restarted). Such
/// a request never reached, or never left, the Worker's code.
#[must_use]
pub fn is_runtime_transient(msg: &str) -> bool {
    msg.starts_with("transport error") || msg.contains("restarted mid-request")
}

/// At most `max` bytes of `msg` (cut at a character boundary), saying how
/// much was left out: an error answer can be a whole batch's results.
#[must_use]
pub fn excerpt(msg: &str, max: usize) -> String {
    if msg.len() <= max {
        return msg.to_owned();
    }
    let mut end = max;
    while !msg.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} more bytes)", &msg[..end], msg.len() - end)
}

/// How much of an error message a failure line quotes.
const ERROR_EXCERPT_BYTES: usize = 600;

/// Judges a route's failed requests: any answer of the Worker's own that
/// is an error is a functional failure; runtime transport failures are
/// only reported, unless they exceed [`RUNTIME_ERROR_BUDGET`]. Returns how
/// many were runtime transport failures.
pub fn judge_errors(ctx: &Ctx, what: &str, errors: &[&str], requests: usize) -> usize {
    let runtime = errors.iter().filter(|e| is_runtime_transient(e)).count();
    if let Some(e) = errors.iter().find(|e| !is_runtime_transient(e)) {
        ctx.fail(format!(
            "{what}: {} of {requests} requests failed in the Worker; first: {}",
            errors.len() - runtime,
            excerpt(e, ERROR_EXCERPT_BYTES)
        ));
    }
    if runtime > 0 {
        #[allow(clippy::cast_precision_loss)]
        let share = runtime as f64 / requests.max(1) as f64;
        let first = errors
            .iter()
            .find(|e| is_runtime_transient(e))
            .map_or_else(|| "?".to_owned(), |e| excerpt(e, ERROR_EXCERPT_BYTES));
        if share > RUNTIME_ERROR_BUDGET {
            ctx.fail(format!(
                "{what}: {runtime} of {requests} requests lost in the local runtime's transport; first: {first}"
            ));
        } else {
            eprintln!(
                "  note: {what}: {runtime} of {requests} requests lost in the local runtime's transport (not the Worker's answer); first: {first}"
            );
        }
    }
    runtime
}

/// Checks a set of terminal statuses: every one reached a terminal state and
/// none failed. Returns (committed, superseded, failed, not terminal).
pub fn tally(ctx: &Ctx, what: &str, statuses: &[Result<UploadStatus, ClientError>]) -> Tally {
    let mut t = Tally::default();
    for s in statuses {
        match s {
            Ok(st) => match st.state {
                UploadState::Committed => t.committed += 1,
                UploadState::Superseded => t.superseded += 1,
                UploadState::Failed => {
                    t.failed += 1;
                    ctx.fail(format!("{what}: upload {} failed: {:?}", st.id, st.error));
                }
                _ => {
                    t.not_terminal += 1;
                    ctx.fail(format!(
                        "{what}: upload {} still {}",
                        st.id,
                        st.state.as_str()
                    ));
                }
            },
            Err(e) => {
                t.not_terminal += 1;
                ctx.fail(format!("{what}: {e}"));
            }
        }
    }
    t
}

/// Terminal states of a set of uploads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Tally {
    /// Written.
    pub committed: usize,
    /// Made unnecessary by a newer write.
    pub superseded: usize,
    /// Given up.
    pub failed: usize,
    /// Not terminal within the timeout, or the status could not be read.
    pub not_terminal: usize,
}

/// A deterministic body of `size` bytes starting with `marker`, the rest
/// filled from a xorshift stream seeded by the marker (incompressible, so
/// sizes and rates are not flattered by compression anywhere).
#[must_use]
pub fn body(marker: &str, size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(size.max(marker.len()));
    out.extend_from_slice(marker.as_bytes());
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for b in marker.bytes() {
        x = (x ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3);
    }
    while out.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(size.max(marker.len()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_keep_short_messages_and_cut_long_ones_at_a_char_boundary() {
        assert_eq!(excerpt("short", 10), "short");
        assert_eq!(excerpt("abcdef", 4), "abcd… (2 more bytes)");
        // "é" is two bytes: a cut inside it moves back before it.
        assert_eq!(excerpt("aé", 2), "a… (2 more bytes)");
    }

    #[test]
    fn runtime_transport_failures_are_recognised() {
        assert!(is_runtime_transient(
            "transport error: PUT http://x: Connection reset"
        ));
        assert!(is_runtime_transient(
            "unexpected response (HTTP 503): …; body: Your worker restarted mid-request. Please try"
        ));
        assert!(!is_runtime_transient(
            "HTTP 503 queue_unavailable: the upload queue did not take the write"
        ));
        assert!(!is_runtime_transient("HTTP 500 internal: boom"));
    }

    #[test]
    fn bodies_are_deterministic_and_distinct() {
        let a = body("a ", 1024);
        assert_eq!(a.len(), 1024);
        assert!(a.starts_with(b"a "));
        assert_eq!(a, body("a ", 1024));
        assert_ne!(a, body("b ", 1024));
        assert_eq!(body("long marker", 3), b"long marker");
    }
}
