//! [`RetryPolicy`]: when and how long the client waits before sending a
//! request again.
//!
//! Only two answers are retried: `429` (`rate_limited`: a synchronous write
//! found the key's one-write-per-second slot taken) and `503`
//! (`queue_unavailable`, `unavailable`, or the local runtime's own "worker
//! restarted" answer). The contract says both leave nothing behind, except
//! that a `503` from a proxy in front of the Worker cannot promise it; so a
//! request whose repeat could make a second write is not retried unless the
//! caller says so (see [`RetryPolicy::retry_non_idempotent`]).
//!
//! The wait before attempt `n + 1` is the server's `Retry-After` when the
//! answer has one (`X-RateLimit-Reset-After-Ms` when present, being more
//! precise), else exponential backoff from [`RetryPolicy::initial_backoff`],
//! doubled per attempt up to [`RetryPolicy::max_backoff`]; either way a
//! random jitter is added, so many clients refused at once do not come back
//! at the same instant. A server that asks for a longer wait than
//! [`RetryPolicy::max_backoff`] gets its error returned instead.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::headers::Headers;

/// When the client retries a refused request, and how long it waits.
///
/// [`RetryPolicy::default`] (used by [`crate::ClientBuilder`]) retries up to
/// 3 times, starting at 250 ms and never waiting more than 10 s at once.
/// [`RetryPolicy::never`] (used by [`crate::Client::new`]) sends every
/// request exactly once.
///
/// # Which requests are retried
///
/// - Reads, listings, status polls, `/stats`, counter reads and resets, and
///   synchronous writes (`?mode=sync`: a `429` or `503` wrote nothing, and a
///   repeated PUT of the same bytes leaves the same object): always.
/// - Asynchronous PUT and DELETE **with** an `Idempotency-Key`: always (the
///   Worker answers a repeat with the first write's id).
/// - Asynchronous PUT and DELETE **without** an `Idempotency-Key`, and
///   counter increments and decrements: never, unless
///   [`RetryPolicy::retry_non_idempotent`] is set. The Worker's own `429`
///   and `503` answers leave nothing behind, but a `503` can also come from a
///   proxy after the Worker took the request; a repeat would then make a
///   second write (a second id) or a second step of the counter.
/// - Bodies given as a one-shot reader ([`crate::Client::put_object_reader`])
///   are never retried: they cannot be read twice.
///
/// ```
/// use std::time::Duration;
/// use pipeline_client::RetryPolicy;
///
/// let policy = RetryPolicy::default()
///     .max_retries(5)
///     .initial_backoff(Duration::from_millis(100))
///     .max_backoff(Duration::from_secs(5));
/// assert_eq!(policy.retries(), 5);
/// assert_eq!(RetryPolicy::never().retries(), 0);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    max_retries: u32,
    initial_backoff: Duration,
    max_backoff: Duration,
    retry_non_idempotent: bool,
}

impl Default for RetryPolicy {
    /// 3 retries, backoff from 250 ms doubling up to 10 s, idempotent
    /// requests only.
    fn default() -> Self {
        Self {
            max_retries: 3,
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(10),
            retry_non_idempotent: false,
        }
    }
}

impl RetryPolicy {
    /// Never retry: every request is sent once and its answer returned.
    #[must_use]
    pub fn never() -> Self {
        Self {
            max_retries: 0,
            ..Self::default()
        }
    }

    /// At most `n` retries after the first attempt (0 disables retries).
    #[must_use]
    pub fn max_retries(mut self, n: u32) -> Self {
        self.max_retries = n;
        self
    }

    /// The backoff before the first retry when the answer has no
    /// `Retry-After`; doubled for each further retry.
    #[must_use]
    pub fn initial_backoff(mut self, d: Duration) -> Self {
        self.initial_backoff = d;
        self
    }

    /// The longest single wait. A `Retry-After` longer than this is not
    /// waited for: the error is returned at once.
    #[must_use]
    pub fn max_backoff(mut self, d: Duration) -> Self {
        self.max_backoff = d;
        self
    }

    /// Also retry requests whose repeat could take effect twice: an
    /// asynchronous PUT or DELETE without an `Idempotency-Key` (a second
    /// write, with a second id) and counter increments and decrements.
    /// Off by default.
    #[must_use]
    pub fn retry_non_idempotent(mut self, yes: bool) -> Self {
        self.retry_non_idempotent = yes;
        self
    }

    /// The configured number of retries.
    #[must_use]
    pub fn retries(&self) -> u32 {
        self.max_retries
    }

    /// Whether a request of this kind may be retried at all.
    pub(crate) fn allows(&self, idempotent: bool) -> bool {
        self.max_retries > 0 && (idempotent || self.retry_non_idempotent)
    }

    /// The wait before retry number `retry` (0-based) after an answer with
    /// `status` and `headers`, or `None` when it must not be retried
    /// (not a `429`/`503`, out of retries, or the server asks for longer
    /// than [`RetryPolicy::max_backoff`]).
    pub(crate) fn delay(&self, retry: u32, status: u16, headers: &Headers) -> Option<Duration> {
        if !matches!(status, 429 | 503) || retry >= self.max_retries {
            return None;
        }
        match server_delay(headers) {
            Some(asked) if asked > self.max_backoff => None,
            // Up to 10 % (at least 50 ms) later than asked, never earlier.
            Some(asked) => {
                let spread = (asked / 10).max(Duration::from_millis(50));
                Some(asked + jitter(spread))
            }
            None => {
                let exp = self
                    .initial_backoff
                    .saturating_mul(2u32.saturating_pow(retry.min(20)))
                    .min(self.max_backoff);
                // "Equal jitter": half fixed, half random.
                Some(exp / 2 + jitter(exp / 2))
            }
        }
    }
}

/// The wait the server asks for: `X-RateLimit-Reset-After-Ms`, else
/// `Retry-After` in whole seconds. An HTTP-date `Retry-After` (never sent
/// by this API) is ignored, so the policy's own backoff applies.
pub(crate) fn server_delay(headers: &Headers) -> Option<Duration> {
    if let Some(ms) = headers
        .get("x-ratelimit-reset-after-ms")
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        return Some(Duration::from_millis(ms));
    }
    headers
        .get("retry-after")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// A uniformly random duration in `[0, max]`. The randomness comes from
/// the standard library's per-process hash keys, which is plenty to spread
/// clients apart and needs no extra crate.
fn jitter(max: Duration) -> Duration {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
    if nanos == 0 {
        return Duration::ZERO;
    }
    let mut h = RandomState::new().build_hasher();
    h.write_u64(SEQ.fetch_add(1, Ordering::Relaxed));
    Duration::from_nanos(h.finish() % (nanos + 1).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none() -> Headers {
        Headers::default()
    }

    #[test]
    fn only_429_and_503_are_retried() {
        let p = RetryPolicy::default();
        for status in [400, 401, 404, 409, 500, 502, 504] {
            assert_eq!(p.delay(0, status, &none()), None, "{status}");
        }
        assert!(p.delay(0, 429, &none()).is_some());
        assert!(p.delay(0, 503, &none()).is_some());
    }

    #[test]
    fn retries_stop_after_the_configured_number() {
        let p = RetryPolicy::default().max_retries(2);
        assert!(p.delay(1, 503, &none()).is_some());
        assert_eq!(p.delay(2, 503, &none()), None);
        assert_eq!(RetryPolicy::never().delay(0, 429, &none()), None);
    }

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let p = RetryPolicy::default()
            .max_retries(10)
            .initial_backoff(Duration::from_millis(100))
            .max_backoff(Duration::from_millis(800));
        for _ in 0..200 {
            let d0 = p.delay(0, 503, &none()).unwrap();
            assert!(d0 >= Duration::from_millis(50) && d0 <= Duration::from_millis(100));
            let d2 = p.delay(2, 503, &none()).unwrap();
            assert!(d2 >= Duration::from_millis(200) && d2 <= Duration::from_millis(400));
            let d9 = p.delay(9, 503, &none()).unwrap();
            assert!(d9 >= Duration::from_millis(400) && d9 <= Duration::from_millis(800));
        }
        // Not every draw is the same: there is jitter.
        let draws: std::collections::BTreeSet<Duration> =
            (0..50).map(|_| p.delay(3, 503, &none()).unwrap()).collect();
        assert!(draws.len() > 1);
    }

    #[test]
    fn retry_after_is_honoured_never_shortened() {
        let p = RetryPolicy::default();
        let h = Headers::new([("Retry-After", "2")]);
        for _ in 0..100 {
            let d = p.delay(0, 429, &h).unwrap();
            assert!(d >= Duration::from_secs(2) && d <= Duration::from_millis(2200));
        }
        // The precise header wins over the rounded-up seconds.
        let h = Headers::new([("Retry-After", "1"), ("X-RateLimit-Reset-After-Ms", "412")]);
        let d = p.delay(0, 429, &h).unwrap();
        assert!(d >= Duration::from_millis(412) && d <= Duration::from_millis(462));
    }

    #[test]
    fn a_longer_retry_after_than_the_cap_returns_the_error() {
        let p = RetryPolicy::default().max_backoff(Duration::from_secs(5));
        assert_eq!(
            p.delay(0, 503, &Headers::new([("Retry-After", "30")])),
            None
        );
        // An HTTP date is not understood: the policy's own backoff applies.
        let h = Headers::new([("Retry-After", "Wed, 21 Oct 2026 07:28:00 GMT")]);
        assert!(p
            .delay(0, 503, &h)
            .is_some_and(|d| d <= Duration::from_millis(250)));
    }

    #[test]
    fn non_idempotent_requests_need_consent() {
        assert!(RetryPolicy::default().allows(true));
        assert!(!RetryPolicy::default().allows(false));
        assert!(RetryPolicy::default()
            .retry_non_idempotent(true)
            .allows(false));
        assert!(!RetryPolicy::never().allows(true));
    }
}
