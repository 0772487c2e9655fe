//! `accepted` for asynchronous writes: counted before the `202` is sent,
//! so every id given is in `/stats`, even if the runtime dies right after.
//!
//! Each isolate is a stats *source* with a random name and a cumulative
//! count (see `objects::stats_shard`: pushes carry cumulative totals with a
//! growing version, so they never double count). Requests share pushes
//! without sharing I/O (the runtime forbids awaiting another request's
//! I/O): one request at a time pushes the isolate's current count; the
//! others wait on their own short timers until a push covering their
//! increment has landed. Under load that is about one shard call per round
//! trip, not one per request.

use std::cell::RefCell;
use std::time::Duration;

use worker::{Delay, Env};

use crate::http::{hex, log, now_ms, random_bytes};
use crate::objects::stats_shard::{self, Push, Totals};

/// How often a waiting request looks whether a push covered it.
const WAIT_STEP_MS: u64 = 2;
/// A push older than this is presumed lost with its request.
const PUSH_STALE_MS: i64 = 1000;
/// Longest a request waits for its count to land before answering anyway
/// (the count stays in memory and the next push carries it).
const MAX_WAIT_MS: i64 = 3000;

#[derive(Default)]
struct SourceState {
    name: String,
    accepted: i64,
    pushed: i64,
    /// When the push in flight started, if one is.
    pushing_since: Option<i64>,
}

thread_local! {
    static SOURCE: RefCell<SourceState> = RefCell::new(SourceState::default());
}

/// What a request should do next.
enum Step {
    Done,
    Push { source: String, accepted: i64 },
    Wait,
}

/// Counts one accepted write and returns once a push that includes it has
/// reached its stats shard (or after [`MAX_WAIT_MS`]).
pub async fn record_accepted(env: &Env) {
    let target = SOURCE.with(|s| {
        let mut s = s.borrow_mut();
        if s.name.is_empty() {
            s.name = format!(
                "producer:{}",
                random_bytes::<12>().map(|b| hex(&b)).unwrap_or_default()
            );
        }
        s.accepted += 1;
        s.accepted
    });
    let give_up = now_ms() + MAX_WAIT_MS;
    while now_ms() < give_up {
        let step = SOURCE.with(|s| {
            let mut s = s.borrow_mut();
            let now = now_ms();
            if s.pushed >= target {
                Step::Done
            } else if s.pushing_since.is_none_or(|t| now - t > PUSH_STALE_MS) {
                s.pushing_since = Some(now);
                Step::Push {
                    source: s.name.clone(),
                    accepted: s.accepted,
                }
            } else {
                Step::Wait
            }
        });
        match step {
            Step::Done => return,
            Step::Wait => Delay::from(Duration::from_millis(WAIT_STEP_MS)).await,
            Step::Push { source, accepted } => {
                let push = Push {
                    source,
                    version: accepted,
                    totals: Totals {
                        accepted,
                        ..Totals::default()
                    },
                };
                let ok = stats_shard::push(env, &push).await.is_ok();
                SOURCE.with(|s| {
                    let mut s = s.borrow_mut();
                    s.pushing_since = None;
                    if ok {
                        s.pushed = s.pushed.max(accepted);
                    }
                });
                if !ok {
                    break;
                }
            }
        }
    }
    log(serde_json::json!({"level": "warn", "at": "producer.stats", "counted": "in memory only"}));
}
