//! Every setting of the pipeline, its default, and what it trades, in one
//! place. Deploy-time settings come from `wrangler.toml` vars (read through
//! [`Settings::from_vars`]); the rest are constants of the design.

use crate::error::ApiError;

/// `PUBLIC_READS` default: reads need no token. Public reads cache well;
/// set `"false"` to keep keys and bytes to token holders.
pub const DEFAULT_PUBLIC_READS: bool = true;
/// `MAX_UPLOAD_BYTES` default, 100 MiB: the request-body limit of the Free
/// and Pro plans. A larger value only helps on plans that accept more.
pub const DEFAULT_MAX_UPLOAD_BYTES: u64 = 100 * 1024 * 1024;
/// `STATUS_TTL_SECONDS` default, 24 h: how long terminal statuses are kept.
/// Longer costs Durable Object storage; shorter makes late polls 404.
pub const DEFAULT_STATUS_TTL_SECONDS: u64 = 86_400;
/// `SEEN_IDS_TTL_SECONDS` default, 9 days: how long a key's scheduler
/// remembers every write id it took, after its status expired (as a 53-bit
/// fingerprint, or the status row itself where it sits in a table until
/// then), and how long a staged body may wait for its message.
///
/// It must outlast the longest a queue message can live, or a message
/// delivered later is taken for a duplicate and dropped: the upload
/// queue's `message_retention_period` plus the dead letter queue's (both
/// 4 days by default, 14 at most) and a day of margin. A write delivered
/// after its status expired (a consumer paused or failing for a day, a
/// dead letter handled late) is then told apart from a duplicate of one
/// that ended long ago: the first is taken, the second dropped. Longer
/// costs storage (about 30 bytes per write id, and statuses in the table
/// kept this long instead of `STATUS_TTL_SECONDS`); shorter than a
/// message's life loses the writes delivered after it. Never shorter than
/// `STATUS_TTL_SECONDS`.
pub const DEFAULT_SEEN_IDS_TTL_SECONDS: u64 = 9 * 86_400;
/// The largest body read into memory without knowing its size first: a
/// body without `Content-Length` (larger: `411`, per the contract), and
/// the bodies a `?mode=sync` write reads before asking its scheduler
/// (larger ones ask first, so a `429` uploads nothing). 64 KiB.
pub const BUFFERED_BODY_MAX_BYTES: u64 = 64 * 1024;
/// `INLINE_MESSAGE_MAX_BYTES` default: 127,900, the most one queue message
/// holds (128 KB less the queue's ~100 bytes of its own). An async write
/// whose encoded message (body base64, plus key, id and metadata) fits in
/// this many bytes travels inside it; any other is staged in R2 first.
/// With typical metadata that is a body of up to about 95 KB.
///
/// Trade-off: a message over 64 KB is billed as two queue operations for
/// each of its write, read and delete (three extra operations, $1.20 per
/// million messages at the list price of $0.40 per million). Staging the
/// body instead costs an R2 put (Class A, $4.50 per million), an R2 get
/// (Class B, $0.36 per million) and two more R2 round trips before the
/// commit. So the default keeps every body that fits inline. A deployment
/// that wants each message in one 64 KB unit sets 63,900 (bodies up to
/// about 47 KB inline), paying R2 staging for the bodies in between.
pub const DEFAULT_INLINE_MESSAGE_MAX_BYTES: usize = crate::message::MAX_ENCODED_MESSAGE_BYTES;
/// `UPLOAD_QUEUES` default: one upload queue (binding `UPLOADS`). One
/// queue takes about 5,000 messages/s, i.e. 5,000 async writes/s (a
/// `POST /batch` line is one message); a consumer runs up to 250
/// concurrent invocations of up to `max_batch_size` (100) messages. More
/// queues ([`crate::queues`]) raise the write rate by 5,000/s each, at the
/// cost of one binding and one consumer section per queue and one more
/// queue batch send per `POST /batch` that spans them.
pub const DEFAULT_UPLOAD_QUEUES: u32 = 1;
/// The most upload queues `UPLOAD_QUEUES` may name. Each write checks that
/// every one of them is bound (a missing one is an error, never a silent
/// remap that would split a key's writes), so the count stays small.
pub const MAX_UPLOAD_QUEUES: u32 = 64;
/// Tries of one R2 write before its upload is `failed`. More tries ride out
/// longer R2 trouble; each one holds the key's later writes back.
pub const MAX_COMMIT_ATTEMPTS: u32 = 5;
/// Delay of a consumer-side retry of a key's messages when its scheduler
/// could not be reached, per attempt (seconds, capped at 60).
pub const QUEUE_RETRY_BASE_DELAY_SECS: u32 = 2;
/// Longest `?wait=` on the status route (seconds), per the contract.
pub const MAX_STATUS_WAIT_SECS: u32 = 30;

/// Reads a `?wait=` value (status long-polls and `?after=` reads): whole
/// seconds from 0 to [`MAX_STATUS_WAIT_SECS`].
///
/// # Errors
/// [`ApiError::InvalidParameter`] for anything else (the value is not
/// quoted back).
pub fn parse_wait_secs(value: &str) -> Result<u32, ApiError> {
    value
        .parse::<u32>()
        .ok()
        .filter(|w| *w <= MAX_STATUS_WAIT_SECS)
        .ok_or_else(|| ApiError::InvalidParameter("wait must be an integer from 0 to 30".into()))
}
/// Stats shards: writers spread over them, `/stats` reads them all. More
/// shards spread more load; each `/stats` costs one call per shard.
pub const STATS_SHARDS: u32 = 8;
/// `Idempotency-Key` memory, per the contract: 24 h.
pub const IDEMPOTENCY_TTL_MS: i64 = 24 * 3600 * 1000;

/// `LOG_LEVEL`: the least severe log line that is written. Lines are ranked
/// `debug` < `info` < `warn` < `error`; `off` writes none.
///
/// The default, `info`, keeps the one structured line per request (method,
/// path, status, error code, duration, request id) that `wrangler tail` and
/// Workers Logs show, plus one line per consumer batch. Each line is a
/// `console.log` call: CPU in the Worker and log volume in Workers Logs;
/// under `wrangler dev` about 25 KiB of resident memory and 2.3 ms of CPU
/// in the dev server per line, measured (docs/RELIABILITY.md, "Runtime
/// memory under sustained load"). `warn` keeps only what needs a look
/// (retried keys, refused webhooks) and errors, including every request
/// answered with a 5xx; `off` leaves the Worker silent, also about errors.
/// Lines are not sampled: at `info` every request has its line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum LogLevel {
    /// Everything, including the diagnostic lines of single steps.
    Debug,
    /// The default: one line per request and per consumer batch.
    #[default]
    Info,
    /// Problems that were handled: retries, refusals, dropped events.
    Warn,
    /// Failures: 5xx answers, storage errors, misconfiguration.
    Error,
    /// No lines at all.
    Off,
}

impl LogLevel {
    /// Reads a level name (`debug`, `info`, `warn`, `error`, `off`; any
    /// case, `warning` for `warn`, `none` for `off`).
    ///
    /// # Errors
    /// [`ApiError::Internal`] naming the accepted values.
    pub fn parse(value: &str) -> Result<Self, ApiError> {
        match value.trim().to_ascii_lowercase().as_str() {
            "debug" => Ok(LogLevel::Debug),
            "info" => Ok(LogLevel::Info),
            "warn" | "warning" => Ok(LogLevel::Warn),
            "error" => Ok(LogLevel::Error),
            "off" | "none" => Ok(LogLevel::Off),
            _ => Err(ApiError::Internal(
                "LOG_LEVEL is not one of debug, info, warn, error, off".into(),
            )),
        }
    }

    /// The level a log line names in its `"level"` field; a line without a
    /// known one counts as `info`.
    #[must_use]
    pub fn of_line(level: Option<&str>) -> Self {
        match level {
            Some("debug") => LogLevel::Debug,
            Some("warn") => LogLevel::Warn,
            Some("error") => LogLevel::Error,
            _ => LogLevel::Info,
        }
    }

    /// Whether a line of level `line` is written when this is the
    /// configured level. `off` is a threshold only: no line is `off`.
    #[must_use]
    pub fn writes(self, line: LogLevel) -> bool {
        self != LogLevel::Off && line != LogLevel::Off && line >= self
    }

    /// A small number for storing the level in an atomic.
    #[must_use]
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// The inverse of [`LogLevel::as_u8`]; out-of-range values are `info`.
    #[must_use]
    pub fn from_u8(v: u8) -> Self {
        match v {
            0 => LogLevel::Debug,
            2 => LogLevel::Warn,
            3 => LogLevel::Error,
            4 => LogLevel::Off,
            _ => LogLevel::Info,
        }
    }
}

/// Which origins CORS answers for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedOrigins {
    /// `*`: any origin, answered with `*`.
    Any,
    /// Only these origins are echoed; others get no match.
    List(Vec<String>),
}

impl AllowedOrigins {
    /// Parses `ALLOWED_ORIGINS`: `*` (or empty) or a comma-separated list.
    pub fn parse(raw: Option<&str>) -> Self {
        match raw.map(str::trim) {
            None | Some("") | Some("*") => AllowedOrigins::Any,
            Some(list) => AllowedOrigins::List(
                list.split(',')
                    .map(|o| o.trim().trim_end_matches('/').to_string())
                    .filter(|o| !o.is_empty())
                    .collect(),
            ),
        }
    }

    /// The `Access-Control-Allow-Origin` value for a request from `origin`.
    pub fn allow_origin(&self, origin: Option<&str>) -> Option<String> {
        match self {
            AllowedOrigins::Any => Some("*".to_string()),
            AllowedOrigins::List(list) => {
                let origin = origin?;
                list.iter().any(|o| o == origin).then(|| origin.to_string())
            }
        }
    }
}

/// Deploy-time settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub public_reads: bool,
    pub allowed_origins: AllowedOrigins,
    pub max_upload_bytes: u64,
    pub status_ttl_ms: i64,
    /// `SEEN_IDS_TTL_SECONDS` (see [`DEFAULT_SEEN_IDS_TTL_SECONDS`]), never
    /// below `status_ttl_ms`.
    pub seen_ids_ttl_ms: i64,
    /// `PREFER_WAIT_MAX_SECONDS`: the longest a `Prefer: wait` holds a
    /// write's answer (the contract allows up to 60). Longer lets clients
    /// skip polling for slower commits; each held request keeps a Worker
    /// invocation and a Durable Object long-poll open meanwhile.
    pub max_prefer_wait_secs: u32,
    /// `MAX_BATCH_BYTES`: the largest `POST /batch` body (default 1 MiB).
    /// Larger batches amortise more requests; the whole body is read into
    /// memory (its lines are small writes by design).
    pub max_batch_bytes: u64,
    /// `LOG_LEVEL`: see [`LogLevel`] (default `info`).
    pub log_level: LogLevel,
    /// `UPLOAD_QUEUES`: how many upload queues writes are spread over
    /// (see [`DEFAULT_UPLOAD_QUEUES`]).
    pub upload_queues: u32,
    /// `INLINE_MESSAGE_MAX_BYTES`: the largest encoded queue message that
    /// carries its body inline (see [`DEFAULT_INLINE_MESSAGE_MAX_BYTES`]).
    pub inline_message_max_bytes: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            public_reads: DEFAULT_PUBLIC_READS,
            allowed_origins: AllowedOrigins::Any,
            max_upload_bytes: DEFAULT_MAX_UPLOAD_BYTES,
            status_ttl_ms: DEFAULT_STATUS_TTL_SECONDS as i64 * 1000,
            seen_ids_ttl_ms: DEFAULT_SEEN_IDS_TTL_SECONDS as i64 * 1000,
            max_prefer_wait_secs: crate::prefer::MAX_PREFER_WAIT_SECS,
            max_batch_bytes: crate::batch::DEFAULT_MAX_BATCH_BYTES,
            log_level: LogLevel::Info,
            upload_queues: DEFAULT_UPLOAD_QUEUES,
            inline_message_max_bytes: DEFAULT_INLINE_MESSAGE_MAX_BYTES,
        }
    }
}

impl Settings {
    /// Reads settings through `var` (the Worker passes its env vars).
    ///
    /// # Errors
    /// [`ApiError::Internal`] naming a var that is set but unparseable, so
    /// a misconfiguration is loud instead of silently defaulted.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, ApiError> {
        let mut s = Settings::default();
        if let Some(v) = var("PUBLIC_READS") {
            s.public_reads = !v.trim().eq_ignore_ascii_case("false");
        }
        s.allowed_origins = AllowedOrigins::parse(var("ALLOWED_ORIGINS").as_deref());
        if let Some(v) = var("MAX_UPLOAD_BYTES") {
            s.max_upload_bytes = v
                .trim()
                .parse()
                .map_err(|_| ApiError::Internal("MAX_UPLOAD_BYTES is not a whole number".into()))?;
        }
        if let Some(v) = var("STATUS_TTL_SECONDS") {
            let secs: i64 = v.trim().parse().map_err(|_| {
                ApiError::Internal("STATUS_TTL_SECONDS is not a whole number".into())
            })?;
            s.status_ttl_ms = secs.max(1).saturating_mul(1000);
        }
        if let Some(v) = var("SEEN_IDS_TTL_SECONDS") {
            let secs: i64 = v.trim().parse().map_err(|_| {
                ApiError::Internal("SEEN_IDS_TTL_SECONDS is not a whole number".into())
            })?;
            s.seen_ids_ttl_ms = secs.max(1).saturating_mul(1000);
        }
        s.seen_ids_ttl_ms = s.seen_ids_ttl_ms.max(s.status_ttl_ms);
        if let Some(v) = var("MAX_BATCH_BYTES") {
            s.max_batch_bytes = v
                .trim()
                .parse()
                .map_err(|_| ApiError::Internal("MAX_BATCH_BYTES is not a whole number".into()))?;
        }
        if let Some(v) = var("LOG_LEVEL").filter(|v| !v.trim().is_empty()) {
            s.log_level = LogLevel::parse(&v)?;
        }
        if let Some(v) = var("PREFER_WAIT_MAX_SECONDS") {
            s.max_prefer_wait_secs = v
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|n| *n <= crate::prefer::MAX_PREFER_WAIT_SECS)
                .ok_or_else(|| {
                    ApiError::Internal(
                        "PREFER_WAIT_MAX_SECONDS is not a whole number from 0 to 60".into(),
                    )
                })?;
        }
        if let Some(v) = var("UPLOAD_QUEUES") {
            s.upload_queues = v
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=MAX_UPLOAD_QUEUES).contains(n))
                .ok_or_else(|| {
                    ApiError::Internal(format!(
                        "UPLOAD_QUEUES is not a whole number from 1 to {MAX_UPLOAD_QUEUES}"
                    ))
                })?;
        }
        if let Some(v) = var("INLINE_MESSAGE_MAX_BYTES") {
            let max = crate::message::MAX_ENCODED_MESSAGE_BYTES;
            s.inline_message_max_bytes = v
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| *n <= max)
                .ok_or_else(|| {
                    ApiError::Internal(format!(
                        "INLINE_MESSAGE_MAX_BYTES is not a whole number from 0 to {max}"
                    ))
                })?;
        }
        Ok(s)
    }

    /// The largest body that may travel inline under
    /// `inline_message_max_bytes` (its base64 alone fills the message);
    /// larger bodies are staged without being read into memory. A body at
    /// or under it still goes inline only if its whole message fits.
    #[must_use]
    pub fn inline_body_bound(&self) -> u64 {
        crate::message::inline_body_bound(self.inline_message_max_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_is_whole_seconds_up_to_thirty() {
        assert_eq!(parse_wait_secs("0").unwrap(), 0);
        assert_eq!(parse_wait_secs("30").unwrap(), 30);
        for bad in ["31", "-1", "1.5", "", "soon"] {
            assert_eq!(
                parse_wait_secs(bad).unwrap_err().code(),
                "invalid_parameter",
                "{bad}"
            );
        }
    }

    #[test]
    fn defaults_apply_when_vars_are_absent() {
        assert_eq!(Settings::from_vars(|_| None).unwrap(), Settings::default());
    }

    #[test]
    fn vars_override_defaults_and_bad_numbers_are_loud() {
        let s = Settings::from_vars(|k| match k {
            "PUBLIC_READS" => Some("false".into()),
            "MAX_UPLOAD_BYTES" => Some("10".into()),
            "ALLOWED_ORIGINS" => Some("https://a.example, https://b.example/".into()),
            _ => None,
        })
        .unwrap();
        assert!(!s.public_reads);
        assert_eq!(s.max_upload_bytes, 10);
        assert!(Settings::from_vars(|k| (k == "MAX_UPLOAD_BYTES").then(|| "x".into())).is_err());
    }

    #[test]
    fn log_level_parses_ranks_and_refuses_unknown_names() {
        let level = |v: &str| Settings::from_vars(|k| (k == "LOG_LEVEL").then(|| v.into()));
        assert_eq!(level("").unwrap().log_level, LogLevel::Info);
        assert_eq!(level(" WARN ").unwrap().log_level, LogLevel::Warn);
        assert_eq!(level("off").unwrap().log_level, LogLevel::Off);
        assert_eq!(level("debug").unwrap().log_level, LogLevel::Debug);
        assert_eq!(level("loud").unwrap_err().code(), "internal_error");
        // The default writes info and above, not debug.
        let info = LogLevel::default();
        assert!(info.writes(LogLevel::Info) && info.writes(LogLevel::Error));
        assert!(!info.writes(LogLevel::Debug));
        // warn drops the per-request info lines but keeps 5xx (error) lines.
        assert!(!LogLevel::Warn.writes(LogLevel::of_line(Some("info"))));
        assert!(LogLevel::Warn.writes(LogLevel::of_line(Some("error"))));
        // off writes nothing, not even errors.
        assert!(!LogLevel::Off.writes(LogLevel::Error));
        // A line without a known level counts as info.
        assert_eq!(LogLevel::of_line(None), LogLevel::Info);
        assert_eq!(LogLevel::of_line(Some("chatty")), LogLevel::Info);
        for l in [
            LogLevel::Debug,
            LogLevel::Info,
            LogLevel::Warn,
            LogLevel::Error,
            LogLevel::Off,
        ] {
            assert_eq!(LogLevel::from_u8(l.as_u8()), l);
        }
    }

    #[test]
    fn upload_queues_default_to_one_and_bad_values_are_loud() {
        assert_eq!(Settings::default().upload_queues, 1);
        let with = |v: &str| {
            let v = v.to_string();
            Settings::from_vars(move |k| (k == "UPLOAD_QUEUES").then(|| v.clone()))
        };
        assert_eq!(with(" 3 ").unwrap().upload_queues, 3);
        assert_eq!(with("64").unwrap().upload_queues, 64);
        for bad in ["0", "65", "-1", "two", "", "1.5"] {
            let e = with(bad).unwrap_err();
            assert_eq!(e.code(), "internal_error", "{bad}");
            assert!(e.to_string().contains("UPLOAD_QUEUES"), "{bad}: {e}");
        }
    }

    #[test]
    fn inline_message_limit_defaults_to_one_full_message_and_is_bounded() {
        let d = Settings::default();
        assert_eq!(d.inline_message_max_bytes, 127_900);
        assert_eq!(d.inline_body_bound(), 95_925);
        let with = |v: &str| {
            let v = v.to_string();
            Settings::from_vars(move |k| (k == "INLINE_MESSAGE_MAX_BYTES").then(|| v.clone()))
        };
        let one_unit = with("63900").unwrap();
        assert_eq!(one_unit.inline_message_max_bytes, 63_900);
        assert_eq!(one_unit.inline_body_bound(), 47_925);
        assert_eq!(with("0").unwrap().inline_body_bound(), 0);
        for bad in ["127901", "128000", "-1", "lots"] {
            assert_eq!(with(bad).unwrap_err().code(), "internal_error", "{bad}");
        }
    }

    #[test]
    fn listed_origins_are_echoed_others_never() {
        let o = AllowedOrigins::parse(Some("https://a.example, https://b.example/"));
        assert_eq!(
            o.allow_origin(Some("https://b.example")).as_deref(),
            Some("https://b.example")
        );
        assert_eq!(o.allow_origin(Some("https://evil.example")), None);
        assert_eq!(o.allow_origin(None), None);
        assert_eq!(
            AllowedOrigins::parse(None)
                .allow_origin(Some("x"))
                .as_deref(),
            Some("*")
        );
    }
}

/// Fuzzing: settings never panic on any var value, and an origin
/// list never reflects an origin it does not list.
#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn any_vars_never_panic(
            public in proptest::option::of("\\PC{0,10}"),
            origins in proptest::option::of("\\PC{0,60}"),
            max in proptest::option::of("\\PC{0,24}"),
            ttl in proptest::option::of("[-0-9]{0,24}"),
            queues in proptest::option::of("[-0-9 a]{0,6}"),
            inline in proptest::option::of("[-0-9 ]{0,8}"),
        ) {
            let s = Settings::from_vars(|k| match k {
                "PUBLIC_READS" => public.clone(),
                "ALLOWED_ORIGINS" => origins.clone(),
                "MAX_UPLOAD_BYTES" => max.clone(),
                "STATUS_TTL_SECONDS" => ttl.clone(),
                "UPLOAD_QUEUES" => queues.clone(),
                "INLINE_MESSAGE_MAX_BYTES" => inline.clone(),
                _ => None,
            });
            // Whatever is accepted is in range: never a value that maps a
            // key to a queue that does not exist or a message over 128 KB.
            if let Ok(s) = s {
                prop_assert!((1..=MAX_UPLOAD_QUEUES).contains(&s.upload_queues));
                prop_assert!(s.inline_message_max_bytes <= crate::message::MAX_ENCODED_MESSAGE_BYTES);
            }
        }

        #[test]
        fn a_list_echoes_only_listed_origins(
            listed in proptest::collection::vec("https://[a-z]{1,8}\\.example(:[0-9]{2,4})?", 1..4),
            origin in "\\PC{0,40}",
        ) {
            let o = AllowedOrigins::parse(Some(&listed.join(",")));
            match o.allow_origin(Some(&origin)) {
                None => prop_assert!(!listed.contains(&origin)),
                Some(v) => {
                    prop_assert_eq!(&v, &origin);
                    prop_assert!(listed.contains(&origin));
                    prop_assert_ne!(v.as_str(), "*");
                }
            }
        }

        #[test]
        fn ttl_is_positive_and_never_overflows(secs in any::<i64>()) {
            let s = Settings::from_vars(|k| (k == "STATUS_TTL_SECONDS").then(|| secs.to_string()));
            let s = s.map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(s.status_ttl_ms >= 1000);
        }

        #[test]
        fn seen_ids_outlive_statuses(ttl in any::<i64>(), seen in any::<i64>()) {
            let s = Settings::from_vars(|k| match k {
                "STATUS_TTL_SECONDS" => Some(ttl.to_string()),
                "SEEN_IDS_TTL_SECONDS" => Some(seen.to_string()),
                _ => None,
            });
            let s = s.map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(s.seen_ids_ttl_ms >= s.status_ttl_ms);
            prop_assert!(s.seen_ids_ttl_ms >= seen.clamp(1, i64::MAX / 1000) * 1000);
        }
    }
}
