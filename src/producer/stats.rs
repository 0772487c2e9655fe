//! `accepted` for asynchronous writes: counted before the `202` is sent,
//! so every id given is in `/stats`, even if the runtime dies right after.
//!
//! Each isolate is a stats *source* with a random name and a cumulative
//! count (see `objects::stats_shard`: pushes carry cumulative totals with a
//! growing version, so they never double count). Concurrent requests share
//! pushes: a request waits for the first push that started after its own
//! increment, and one push covers every request that arrived while the
//! previous one was in flight. Under load that is one shard call per round
//! trip, not one per request.

use std::cell::RefCell;

use futures_util::future::{FutureExt, LocalBoxFuture, Shared};
use worker::Env;

use crate::http::{hex, log, random_bytes};
use crate::objects::stats_shard::{self, Push, Totals};

/// A push in flight: the count it carries and its shared completion.
type InFlight = (i64, Shared<LocalBoxFuture<'static, bool>>);

#[derive(Default)]
struct SourceState {
    name: String,
    accepted: i64,
    pushed: i64,
    in_flight: Option<InFlight>,
}

thread_local! {
    static SOURCE: RefCell<SourceState> = RefCell::new(SourceState::default());
}

/// Counts one accepted write and returns once a push that includes it has
/// reached its stats shard (or failed: then the next push carries it).
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
    loop {
        let (pushed, in_flight) = SOURCE.with(|s| {
            let s = s.borrow();
            (s.pushed, s.in_flight.clone())
        });
        if pushed >= target {
            return;
        }
        let (covers, push) = match in_flight {
            Some(f) => f,
            None => start_push(env),
        };
        let ok = push.await;
        if !ok && covers >= target {
            // Counted locally; the next push (any request's) carries it.
            log(serde_json::json!({"level": "warn", "at": "producer.stats", "pushed": false}));
            return;
        }
    }
}

/// Starts a push of the current count; it clears itself when done.
fn start_push(env: &Env) -> InFlight {
    let (source, accepted) = SOURCE.with(|s| {
        let s = s.borrow();
        (s.name.clone(), s.accepted)
    });
    let env = env.clone();
    let push = async move {
        let push = Push {
            source,
            version: accepted,
            totals: Totals {
                accepted,
                ..Totals::default()
            },
        };
        let ok = stats_shard::push(&env, &push).await.is_ok();
        SOURCE.with(|s| {
            let mut s = s.borrow_mut();
            if ok {
                s.pushed = s.pushed.max(accepted);
            }
            s.in_flight = None;
        });
        ok
    }
    .boxed_local()
    .shared();
    let in_flight = (accepted, push);
    SOURCE.with(|s| s.borrow_mut().in_flight = Some(in_flight.clone()));
    in_flight
}
